//! Fixed-offset, length-checked views of the packet headers weft reads and writes.
