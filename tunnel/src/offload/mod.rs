//! Segmentation and coalescing offload in userspace: where bulk TCP throughput is won.
//!
//! A container's TCP hands its veth 64 KiB TSO super-frames; the UDP socket can send up to
//! 64 equal-size datagrams per `sendmsg` (UDP GSO) and receive as many per read (UDP GRO).
//! [`segment`] turns one super-frame into wire-sized `prefix ‖ inner segment` datagrams laid
//! out back to back for one GSO send, with every header and checksum finished as a NIC's
//! TSO would. [`Coalescer`] does the receive side, like the kernel's GRO: consecutive TCP
//! segments of one flow become one super-frame that a veth accepts whole, with the
//! checksum left to offload (`NEEDS_CSUM`).
//!
//! Invariants: neither side panics or slices out of bounds on any input; malformed input is
//! a [`SegmentError`] (a named drop) or, on receive, a frame passed on unmerged for the
//! receiving stack to judge. After warm-up neither allocates per frame: the segmenter
//! writes into a caller-owned `Vec` it only clears, the coalescer into buffers it sized at
//! construction.

mod coalesce;
mod segment;
mod unfinished;

pub use coalesce::{CoalesceCounters, Coalescer, DEFAULT_FLOW_SLOTS, MAX_SUPER_FRAME_IP_LEN};
pub use segment::{SegmentError, Segmented, segment, segment_with_trailer};

#[cfg(test)]
mod roundtrip_tests;
