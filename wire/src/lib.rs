//! Fixed-offset, length-checked views of the packet headers weft reads and writes.
//!
//! The contract, after smoltcp's `wire`: a view is built once with `new` (which checks
//! every length the accessors will rely on); after that no accessor can panic and no
//! accessor allocates. Fields are read by offset from the byte slice, never by casting
//! structs (unaligned references are undefined behaviour). Builders write into caller
//! buffers and return how many bytes they wrote, failing with [`WireError::BufferTooSmall`]
//! rather than panicking.
//!
//! This crate is the one home of packet layouts in weft: the switch (`switch`), the
//! tunnels (`tunnel`) and the I/O edge all read frames through it. It knows nothing of
//! ports, peers or time.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod icmp;
pub mod igmp;
pub mod ipv4;
pub mod ipv6;
mod mac;
pub mod tcp;
pub mod udp;
pub mod vnet;

pub use ethernet::{EtherType, EthernetFrame};
pub use mac::{Mac, MacParseError};
pub use vnet::{VnetFrame, VnetHdr};

/// Why a packet view or builder refused its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The bytes end before a header or a length field says they should.
    #[error("packet truncated")]
    Truncated,
    /// A field holds a value the protocol does not allow (version, header length, ...).
    #[error("malformed packet")]
    Malformed,
    /// A builder was handed a buffer too small for what it must write.
    #[error("output buffer too small")]
    BufferTooSmall,
}

/// Reads a big-endian u16 at `at`; callers have checked the length.
#[inline]
pub(crate) fn be16(buf: &[u8], at: usize) -> u16 {
    match buf.get(at..at + 2) {
        Some(b) => u16::from_be_bytes([b[0], b[1]]),
        None => 0,
    }
}

/// Reads a big-endian u32 at `at`; callers have checked the length.
#[inline]
pub(crate) fn be32(buf: &[u8], at: usize) -> u32 {
    match buf.get(at..at + 4) {
        Some(b) => u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        None => 0,
    }
}

/// Copies `N` bytes at `at`; callers have checked the length.
#[inline]
pub(crate) fn array<const N: usize>(buf: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(b) = buf.get(at..at + N) {
        out.copy_from_slice(b);
    }
    out
}

/// Writes a big-endian u16 at `at`; callers have checked the length.
#[inline]
pub(crate) fn put16(buf: &mut [u8], at: usize, v: u16) {
    if let Some(b) = buf.get_mut(at..at + 2) {
        b.copy_from_slice(&v.to_be_bytes());
    }
}

/// Writes a big-endian u32 at `at`; callers have checked the length.
#[inline]
pub(crate) fn put32(buf: &mut [u8], at: usize, v: u32) {
    if let Some(b) = buf.get_mut(at..at + 4) {
        b.copy_from_slice(&v.to_be_bytes());
    }
}
