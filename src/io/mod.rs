//! Safe port types over the syscall wrappers: AF_PACKET veth ports, the TAP host port, UDP.
//!
//! Contract:
//! - Every frame crossing a [`FramePort`] carries a 10-byte legacy
//!   `virtio_net_hdr` in front ([`VNET_HDR_LEN`], native-endian). Ports only move
//!   those bytes; the data plane interprets them (`wire::VnetHdr`). Passing the
//!   header through untouched from one port to another carries 64 KiB TSO
//!   super-frames and `CHECKSUM_PARTIAL` frames whole.
//! - Receive and send are non-blocking and batched; buffers are preallocated by
//!   the caller ([`RxBatch`], [`UdpRxBatch`]) and reused, so the per-frame path
//!   allocates nothing.
//! - Every port is a `mio::event::Source`; epoll is edge-triggered, so callers
//!   drain a port until `WouldBlock` (or `Ok(0)`) after each readiness event.
//! - Nothing here panics on what the kernel hands back: runts and truncated
//!   frames are flagged ([`RxBatch::is_truncated`]) for the caller to count.
//!
//! Kernel behaviour observed on Linux 6.18 (and asserted by `tests/io_ports.rs`):
//! - A container's TCP hands its veth GSO super-frames up to ~64 KiB (65226
//!   bytes seen on a 1500-byte MTU). Read through `PACKET_VNET_HDR` and written
//!   unchanged to another veth they are accepted, and the receiving stack takes
//!   them whole (a 20 MiB transfer arrives intact). `PACKET_VNET_HDR`,
//!   `PACKET_IGNORE_OUTGOING` and `PACKET_QDISC_BYPASS` work together.
//! - On send, a frame above the MTU whose header says no GSO fails with
//!   EMSGSIZE, and a header inconsistent with its frame (e.g. GSO TCPv4 with
//!   `gso_size` 0) fails with EINVAL. `send_frames` skips both and sends the
//!   rest of the batch.
//! - With `TUN_F_CSUM` on, frames the host stack sends into the TAP carry
//!   `NEEDS_CSUM` with `csum_start`/`csum_offset` (a plain UDP datagram too).
//!   Their checksums are unfinished, so the data plane completes them before a
//!   frame leaves the host; to a local veth it may pass the header through.

mod batch;
mod error;
mod packet;
mod tap;
mod udp;

pub use batch::{MAX_FRAME_LEN, RxBatch, RxFrames, VNET_HDR_LEN};
pub use error::PortError;
pub use packet::{PacketPort, PacketStats, PortOptions};
pub use tap::{TapOffloads, TapPort};
pub use udp::{UdpDatagrams, UdpOptions, UdpPort, UdpRxBatch, UdpSendError, UdpSendPool};
pub use wire::VnetFrame;

use std::io;
use std::os::fd::AsRawFd;

/// Most frames one `recv_batch`/`send_frames` syscall moves on an AF_PACKET port;
/// larger batches are split into several calls.
pub const MAX_SYSCALL_BATCH: usize = crate::sys::mmsg::MAX_BATCH;

/// What every frame port can do; the data plane holds `Box<dyn FramePort>` or an enum.
pub trait FramePort: AsRawFd {
    /// Receives up to `batch.capacity()` frames without blocking; `Ok(0)` or
    /// `WouldBlock` when none are waiting. `batch.len()` equals the returned count.
    /// Any other error means the port is broken (e.g. ENETDOWN: its veth was
    /// deleted with the container) and should be detached.
    fn recv_batch(&self, batch: &mut RxBatch) -> io::Result<usize>;

    /// Sends frames with as few syscalls as possible and returns how many went out.
    /// Frames the kernel refuses (bad vnet header, oversize without GSO) are skipped
    /// and the rest still sent; when the socket is full the call stops early. The
    /// caller counts `frames.len() - sent` as drops. `Err` only when nothing went out
    /// because the port itself failed (e.g. the link is down).
    fn send_frames(&self, frames: &[VnetFrame<'_>]) -> io::Result<usize>;
}

/// How a failed send of one frame affects the rest of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SendFailure {
    /// This frame was refused; later frames may still go.
    SkipFrame,
    /// The socket is full; stop and report what was sent.
    Full,
    /// The port itself failed; stop and report the error if nothing was sent.
    Port,
}

fn classify_send_error(err: &io::Error) -> SendFailure {
    match err.raw_os_error() {
        Some(libc::EAGAIN | libc::ENOBUFS) => SendFailure::Full,
        Some(libc::EMSGSIZE | libc::EINVAL | libc::EFAULT | libc::EPROTO) => SendFailure::SkipFrame,
        _ if err.kind() == io::ErrorKind::WouldBlock => SendFailure::Full,
        _ => SendFailure::Port,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_errors_are_classified_by_scope() {
        let e = |n| io::Error::from_raw_os_error(n);
        assert_eq!(classify_send_error(&e(libc::EAGAIN)), SendFailure::Full);
        assert_eq!(classify_send_error(&e(libc::ENOBUFS)), SendFailure::Full);
        assert_eq!(
            classify_send_error(&e(libc::EMSGSIZE)),
            SendFailure::SkipFrame
        );
        assert_eq!(
            classify_send_error(&e(libc::EINVAL)),
            SendFailure::SkipFrame
        );
        assert_eq!(classify_send_error(&e(libc::ENETDOWN)), SendFailure::Port);
        assert_eq!(classify_send_error(&e(libc::ENXIO)), SendFailure::Port);
    }
}
