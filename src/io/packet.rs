//! AF_PACKET ports on container veths, with virtio-net headers and mmsg batching.
//!
//! A [`PacketPort`] is a `SOCK_RAW`/`ETH_P_ALL` packet socket bound to one
//! ifindex, non-blocking, with:
//! - `PACKET_VNET_HDR`: every frame read or written is prefixed by a 10-byte
//!   `virtio_net_hdr`, so a container's 64 KiB TSO super-frames arrive whole
//!   (`gso_type`/`gso_size` set, `NEEDS_CSUM` with `csum_start`/`csum_offset`)
//!   and can be written whole to another veth. Without the header the kernel
//!   refuses any frame above the MTU (EMSGSIZE) and hands over frames with
//!   unfinished checksums. A frame above the MTU is accepted on send only when
//!   its header says GSO; the kernel segments it (or hands it to the receiving
//!   stack as one GSO skb on a veth).
//! - `PACKET_IGNORE_OUTGOING`: frames the kernel transmits out of the veth are not
//!   read back.
//! - `PACKET_QDISC_BYPASS`: sends go straight to the veth driver (veths have no
//!   queue anyway); such frames are invisible to other packet sockets, so tcpdump
//!   on the host-side veth does not see what weft sends into it.
//! - `SO_RCVBUFFORCE`/`SO_SNDBUFFORCE` (falling back to the capped options without
//!   CAP_NET_ADMIN).
//!
//! The three PACKET_* options combine without trouble on Linux 6.18 (the kernel
//! this was built and tested on); the `io_ports` integration test carries a TCP
//! stream with super-frames above the MTU across two veths with all of them set.
//!
//! The socket is created with protocol 0 (it receives nothing) and only bound
//! to `ETH_P_ALL` on the ifindex after all options are set, so no frame from
//! another interface is ever queued on it.
//!
//! Known limit: a VLAN tag the kernel keeps out of band (tx-vlan-offload on the
//! container's veth) is not reinserted into received frames; that would need
//! `PACKET_AUXDATA` or a TPACKET ring.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use socket2::{Domain, Protocol, Socket, Type};

use super::batch::SLOT_LEN;
use super::{FramePort, PortError, RxBatch, SendFailure, VnetFrame, classify_send_error};
use crate::sys;

/// Socket buffer sizes for a frame port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortOptions {
    /// Receive buffer in bytes (SO_RCVBUFFORCE, else SO_RCVBUF capped by `rmem_max`).
    pub rcvbuf: usize,
    /// Send buffer in bytes (SO_SNDBUFFORCE, else SO_SNDBUF capped by `wmem_max`).
    pub sndbuf: usize,
}

impl Default for PortOptions {
    /// 8 MiB each: room for about a hundred 64 KiB super-frames per direction.
    fn default() -> Self {
        Self {
            rcvbuf: 8 << 20,
            sndbuf: 8 << 20,
        }
    }
}

/// Receive counters of a packet socket since the previous [`PacketPort::stats`] call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PacketStats {
    /// Frames the kernel delivered to the socket (including dropped ones).
    pub packets: u32,
    /// Frames the kernel dropped because the receive buffer was full.
    pub drops: u32,
}

/// An AF_PACKET port bound to one (veth) interface; see the module docs.
#[derive(Debug)]
pub struct PacketPort {
    socket: Socket,
    ifindex: u32,
}

impl PacketPort {
    /// Opens a port on `ifindex` in the network namespace of the calling thread.
    pub fn open(ifindex: u32, opts: &PortOptions) -> Result<Self, PortError> {
        let what = |opt: &str| format!("{opt} on packet socket for ifindex {ifindex}");
        let socket = Socket::new(Domain::PACKET, Type::RAW, Some(Protocol::from(0)))
            .map_err(|e| PortError::io(what("socket(AF_PACKET)"), e))?;
        socket
            .set_nonblocking(true)
            .map_err(|e| PortError::io(what("O_NONBLOCK"), e))?;
        let fd = socket.as_fd();
        sys::sockopt::set_int(fd, libc::SOL_PACKET, libc::PACKET_VNET_HDR, 1)
            .map_err(|e| PortError::io(what("PACKET_VNET_HDR"), e))?;
        if let Err(e) = sys::sockopt::set_int(fd, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, 1)
        {
            tracing::warn!(ifindex, error = %e, "PACKET_IGNORE_OUTGOING unsupported; frames the kernel sends out of this veth will be read back");
        }
        if let Err(e) = sys::sockopt::set_int(fd, libc::SOL_PACKET, libc::PACKET_QDISC_BYPASS, 1) {
            tracing::debug!(ifindex, error = %e, "PACKET_QDISC_BYPASS unsupported; sending through the qdisc");
        }
        set_buffer_sizes(&socket, opts).map_err(|e| PortError::io(what("socket buffers"), e))?;
        let protocol = u16::try_from(libc::ETH_P_ALL).unwrap_or(3);
        let addr = sys::packet::link_layer_addr(ifindex, protocol)
            .map_err(|_| PortError::NoSuchInterface { ifindex })?;
        socket.bind(&addr).map_err(|e| match e.raw_os_error() {
            Some(libc::ENODEV | libc::ENXIO) => PortError::NoSuchInterface { ifindex },
            _ => PortError::io(what("bind"), e),
        })?;
        Ok(Self { socket, ifindex })
    }

    /// The interface this port is bound to (in the namespace it was opened in).
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Reads and resets the kernel's receive counters (`PACKET_STATISTICS`).
    pub fn stats(&self) -> io::Result<PacketStats> {
        let (packets, drops) = sys::sockopt::packet_statistics(self.socket.as_fd())?;
        Ok(PacketStats { packets, drops })
    }
}

/// Sets SO_RCVBUF/SO_SNDBUF with the FORCE variants (which pass `net.core.*mem_max`
/// with CAP_NET_ADMIN), falling back to the plain, capped options.
pub(crate) fn set_buffer_sizes(socket: &Socket, opts: &PortOptions) -> io::Result<()> {
    let fd = socket.as_fd();
    let rcv = libc::c_int::try_from(opts.rcvbuf).unwrap_or(libc::c_int::MAX);
    let snd = libc::c_int::try_from(opts.sndbuf).unwrap_or(libc::c_int::MAX);
    if sys::sockopt::set_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, rcv).is_err() {
        socket.set_recv_buffer_size(opts.rcvbuf)?;
    }
    if sys::sockopt::set_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, snd).is_err() {
        socket.set_send_buffer_size(opts.sndbuf)?;
    }
    Ok(())
}

impl FramePort for PacketPort {
    fn recv_batch(&self, batch: &mut RxBatch) -> io::Result<usize> {
        let fd = self.socket.as_fd();
        let (storage, lens, truncated) = batch.receive_buffers();
        let mut total = 0;
        let outcome = loop {
            let (Some(storage), Some(lens), Some(truncated)) = (
                storage.get_mut(total * SLOT_LEN..),
                lens.get_mut(total..),
                truncated.get_mut(total..),
            ) else {
                break Ok(());
            };
            if lens.is_empty() {
                break Ok(());
            }
            let want = lens.len().min(sys::mmsg::MAX_BATCH);
            match sys::mmsg::recv_into_slots(fd, storage, SLOT_LEN, lens, truncated) {
                Ok(n) => {
                    total += n;
                    if n < want {
                        break Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        batch.set_len(total);
        match outcome {
            Err(e) if total == 0 => Err(e),
            _ => Ok(total),
        }
    }

    fn send_frames(&self, frames: &[VnetFrame<'_>]) -> io::Result<usize> {
        let fd = self.socket.as_fd();
        let mut sent = 0;
        let mut next = 0;
        while let Some(rest) = frames.get(next..) {
            if rest.is_empty() {
                break;
            }
            match sys::mmsg::send_frames(fd, rest) {
                Ok(0) => break,
                Ok(n) => {
                    sent += n;
                    next += n;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => match classify_send_error(&e) {
                    SendFailure::SkipFrame => next += 1,
                    SendFailure::Full => break,
                    SendFailure::Port if sent == 0 => return Err(e),
                    SendFailure::Port => break,
                },
            }
        }
        Ok(sent)
    }
}

impl AsRawFd for PacketPort {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

impl AsFd for PacketPort {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

impl mio::event::Source for PacketPort {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        SourceFd(&self.socket.as_raw_fd()).register(registry, token, interests)
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        SourceFd(&self.socket.as_raw_fd()).reregister(registry, token, interests)
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        SourceFd(&self.socket.as_raw_fd()).deregister(registry)
    }
}
