//! Unsafe syscall wrappers: every `unsafe` block of weft lives under this module.
