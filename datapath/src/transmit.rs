//! What the core hands the shell to send, and the one call the shell implements.
//!
//! The core calls [`Sink::transmit`] while the bytes it sends still live where they were
//! made: a frame in the shell's receive buffer, a super-frame the coalescer merged, the
//! segmentation or sealing scratch. So nothing is copied to be queued, and every
//! transmit is already a batch: the frames of one receive batch for one port, the small
//! VXLAN datagrams of one batch for one source socket, a super-frame's datagrams as one
//! GSO send.

use std::net::SocketAddr;

use learning::PortId;
use wire::VnetFrame;

/// A socket on the underlay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UdpSource {
    /// VXLAN send socket `n` of [`crate::CoreConfig::send_sockets`] (each on its own
    /// ephemeral source port, so flows spread over ECMP/RSS).
    Vxlan(usize),
    /// The tunnel socket (a stable source port keeps NAT and firewall state simple).
    Tunnel,
}

/// A socket datagrams arrive on (the shell reads the kernel's drop count of each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RxSocket {
    /// The VXLAN socket (UDP 4789).
    Vxlan,
    /// The tunnel socket (UDP 6784).
    Tunnel,
}

/// One send.
#[derive(Debug, Clone, Copy)]
pub enum Transmit<'a> {
    /// Frames to one local port, in order, with their virtio headers (one `sendmmsg`).
    Local {
        /// The port.
        port: PortId,
        /// The frames.
        frames: &'a [VnetFrame<'a>],
    },
    /// `payload` cut into datagrams of `segment_size` bytes (the last may be shorter) to
    /// `to`: one UDP GSO send when there are several.
    Udp {
        /// The socket to send from.
        from: UdpSource,
        /// The destination.
        to: SocketAddr,
        /// The datagrams, back to back.
        payload: &'a [u8],
        /// Every datagram's length but the last's.
        segment_size: usize,
    },
    /// Single datagrams of any sizes and destinations from one socket (one `sendmmsg`).
    UdpBatch {
        /// The socket to send from.
        from: UdpSource,
        /// (destination, datagram) pairs.
        datagrams: &'a [(SocketAddr, &'a [u8])],
    },
}

impl Transmit<'_> {
    /// How many frames or datagrams it carries: what [`Sink::transmit`] returns when all
    /// of it went out.
    pub fn units(&self) -> usize {
        match self {
            Self::Local { frames, .. } => frames.len(),
            Self::Udp {
                payload,
                segment_size,
                ..
            } => payload.len().div_ceil((*segment_size).max(1)).max(1),
            Self::UdpBatch { datagrams, .. } => datagrams.len(),
        }
    }
}

/// Where transmits go: the shell's sockets, or a simulated network.
pub trait Sink {
    /// Sends `transmit` now and returns how many of its [`Transmit::units`] went out, in
    /// order (the core counts the rest as dropped). Never blocks.
    fn transmit(&mut self, transmit: Transmit<'_>) -> usize;
}
