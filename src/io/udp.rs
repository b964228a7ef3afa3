//! UDP sockets for the tunnels: GRO receive batches, GSO sends, a pool of
//! source ports that follows the inner flow hash.
//!
//! Built on `quinn-udp` (`UdpSocketState`: recvmmsg, UDP_GRO, UDP_SEGMENT with
//! kernel-support probing). Differences from quinn-udp's defaults, on purpose:
//! - Fragmentation is allowed (`IP_PMTUDISC_DONT`, `IPV6_PMTUDISC_DONT`,
//!   `IPV6_DONTFRAG` 0). quinn-udp sets `IP_PMTUDISC_PROBE` (DF on, path MTU
//!   ignored) and `IPV6_DONTFRAG` for QUIC's own PMTU probing; an overlay must
//!   rather let the kernel fragment an oversize datagram than fail the send.
//!   The overlay MTU keeps normal traffic under the path MTU.
//! - `SO_TIMESTAMPNS` is switched off again (no use, one cmsg per datagram).
//! - GRO and GSO can be switched off ([`UdpOptions`], for `--no-gso`).
//!
//! GSO falls back by itself: when a GSO send fails with EIO or EINVAL (egress
//! device without checksum offload, old kernel), quinn-udp stops offering GSO on
//! that socket and this module resends the remaining datagrams with `sendmmsg`.
//! A segment (plus IP and UDP headers) larger than the egress MTU also yields
//! EINVAL and so turns GSO off on that socket: callers keep `segment_size` at or
//! below the path MTU minus headers.

use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use quinn_udp::{RecvMeta, Transmit, UdpSockRef, UdpSocketState};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::PortError;
use super::packet::{PortOptions, set_buffer_sizes};
use crate::sys;

/// Bytes per receive buffer: one GRO super-buffer. The kernel stops coalescing
/// at `gro_max_size` (64 KiB unless raised by the administrator).
const UDP_SLOT_LEN: usize = 1 << 16;

/// Largest UDP payload one GSO send may carry: 65535 minus IPv4 and UDP headers.
const MAX_GSO_PAYLOAD: usize = 65535 - 20 - 8;

/// Most buffers one receive fills (quinn-udp's recvmmsg batch).
const MAX_RX_BUFFERS: usize = quinn_udp::BATCH_SIZE;

/// Socket options of a tunnel UDP socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpOptions {
    /// Receive buffer in bytes (SO_RCVBUFFORCE, else capped SO_RCVBUF).
    pub rcvbuf: usize,
    /// Send buffer in bytes (SO_SNDBUFFORCE, else capped SO_SNDBUF).
    pub sndbuf: usize,
    /// Use UDP GSO for multi-datagram sends when the kernel supports it (`--no-gso` clears it).
    pub gso: bool,
    /// Ask the kernel to coalesce received datagrams (UDP_GRO).
    pub gro: bool,
}

impl Default for UdpOptions {
    /// 8 MiB buffers, GSO and GRO on.
    fn default() -> Self {
        Self {
            rcvbuf: 8 << 20,
            sndbuf: 8 << 20,
            gso: true,
            gro: true,
        }
    }
}

/// One configured UDP socket plus its quinn-udp state; shared by [`UdpPort`]
/// and every member of a [`UdpSendPool`].
#[derive(Debug)]
struct TunnelSocket {
    socket: UdpSocket,
    state: UdpSocketState,
    local: SocketAddr,
    gso: bool,
}

impl TunnelSocket {
    fn bind(addr: SocketAddr, opts: &UdpOptions) -> Result<Self, PortError> {
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))
            .map_err(|e| PortError::io("socket(UDP)", e))?;
        socket.bind(&addr.into()).map_err(|e| match e.kind() {
            io::ErrorKind::AddrInUse => PortError::AddressInUse { addr },
            _ => PortError::io(format!("bind UDP {addr}"), e),
        })?;
        set_buffer_sizes(
            &socket,
            &PortOptions {
                rcvbuf: opts.rcvbuf,
                sndbuf: opts.sndbuf,
            },
        )
        .map_err(|e| PortError::io(format!("socket buffers on UDP {addr}"), e))?;
        let socket = UdpSocket::from(socket);
        let state = UdpSocketState::new(UdpSockRef::from(&socket))
            .map_err(|e| PortError::io(format!("configure UDP {addr}"), e))?;
        allow_fragmentation(socket.as_fd(), addr.is_ipv6())
            .map_err(|e| PortError::io(format!("IP_MTU_DISCOVER on UDP {addr}"), e))?;
        let fd = socket.as_fd();
        // Best effort: quinn-udp turned these on; an error leaves them on, harmlessly.
        let _ = sys::sockopt::set_int(fd, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 0);
        if !opts.gro {
            sys::sockopt::set_int(fd, libc::SOL_UDP, libc::UDP_GRO, 0)
                .map_err(|e| PortError::io(format!("UDP_GRO off on {addr}"), e))?;
        }
        let local = socket
            .local_addr()
            .map_err(|e| PortError::io("getsockname", e))?;
        Ok(Self {
            socket,
            state,
            local,
            gso: opts.gso,
        })
    }

    fn max_gso_segments(&self) -> usize {
        if self.gso {
            self.state.max_gso_segments().max(1)
        } else {
            1
        }
    }

    /// Sends `payload` as datagrams of `segment_size` bytes (last may be shorter).
    fn send(
        &self,
        dest: SocketAddr,
        payload: &[u8],
        segment_size: usize,
    ) -> Result<(), UdpSendError> {
        if segment_size == 0 {
            return Err(UdpSendError::zero_segment_size());
        }
        if payload.len() <= segment_size {
            return self
                .state
                .try_send(
                    UdpSockRef::from(&self.socket),
                    &Transmit {
                        destination: dest,
                        ecn: None,
                        contents: payload,
                        segment_size: None,
                        src_ip: None,
                    },
                )
                .map_err(|source| UdpSendError { sent: 0, source });
        }
        let max_segments = self.max_gso_segments();
        if max_segments <= 1 {
            return self.send_each(dest, payload, segment_size);
        }
        let per_send = max_segments.min(MAX_GSO_PAYLOAD / segment_size).max(1);
        let mut rest = payload;
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(rest.len().min(per_send * segment_size));
            let transmit = Transmit {
                destination: dest,
                ecn: None,
                contents: chunk,
                segment_size: Some(segment_size),
                src_ip: None,
            };
            // Chunks are whole datagrams, so what went out before this one is too.
            let sent = (payload.len() - rest.len()) / segment_size;
            match self
                .state
                .try_send(UdpSockRef::from(&self.socket), &transmit)
            {
                Ok(()) => rest = tail,
                Err(e)
                    if matches!(e.raw_os_error(), Some(libc::EIO | libc::EINVAL))
                        && self.state.max_gso_segments() <= 1 =>
                {
                    tracing::info!(local = %self.local, error = %e, "UDP GSO refused; sending datagrams one by one on this socket");
                    return self
                        .send_each(dest, rest, segment_size)
                        .map_err(|e| UdpSendError {
                            sent: sent + e.sent,
                            source: e.source,
                        });
                }
                Err(source) => return Err(UdpSendError { sent, source }),
            }
        }
        Ok(())
    }

    /// Sends the datagrams with `sendmmsg`, up to 64 per syscall.
    fn send_each(
        &self,
        dest: SocketAddr,
        payload: &[u8],
        segment_size: usize,
    ) -> Result<(), UdpSendError> {
        if segment_size == 0 {
            return Err(UdpSendError::zero_segment_size());
        }
        let mut sent = 0;
        let mut pieces = payload.chunks(segment_size).peekable();
        while pieces.peek().is_some() {
            let msgs: arrayvec::ArrayVec<(SocketAddr, &[u8]), { sys::mmsg::MAX_BATCH }> = pieces
                .by_ref()
                .take(sys::mmsg::MAX_BATCH)
                .map(|p| (dest, p))
                .collect();
            self.send_many(&msgs).map_err(|e| UdpSendError {
                sent: sent + e.sent,
                source: e.source,
            })?;
            sent += msgs.len();
        }
        Ok(())
    }

    /// Sends datagrams of any sizes and destinations with `sendmmsg`, up to 64 per
    /// syscall.
    fn send_many(&self, msgs: &[(SocketAddr, &[u8])]) -> Result<(), UdpSendError> {
        let mut sent = 0;
        for chunk in msgs.chunks(sys::mmsg::MAX_BATCH) {
            let addrs: arrayvec::ArrayVec<SockAddr, { sys::mmsg::MAX_BATCH }> =
                chunk.iter().map(|(a, _)| SockAddr::from(*a)).collect();
            let mut rest: arrayvec::ArrayVec<(&SockAddr, &[u8]), { sys::mmsg::MAX_BATCH }> =
                addrs.iter().zip(chunk).map(|(a, (_, p))| (a, *p)).collect();
            while !rest.is_empty() {
                match sys::mmsg::send_datagrams(self.socket.as_fd(), &rest) {
                    Ok(0) => {
                        return Err(UdpSendError {
                            sent,
                            source: io::Error::from(io::ErrorKind::WriteZero),
                        });
                    }
                    Ok(n) => {
                        sent += n;
                        rest.drain(..n.min(rest.len()));
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(source) => return Err(UdpSendError { sent, source }),
                }
            }
        }
        Ok(())
    }

    /// Datagrams the kernel has dropped on this socket since it was made (`sk_drops`:
    /// the receive buffer was full, or rarely a bad checksum).
    fn kernel_drops(&self) -> io::Result<u32> {
        sys::sockopt::socket_drops(self.socket.as_fd())
    }
}

/// A send that lost datagrams: how many went out before `source` stopped it (the caller
/// counts the rest as dropped).
#[derive(Debug, thiserror::Error)]
#[error("{source} (after {sent} datagrams)")]
pub struct UdpSendError {
    /// Whole datagrams sent before the failure.
    pub sent: usize,
    /// Why the rest were not.
    #[source]
    pub source: io::Error,
}

impl UdpSendError {
    /// Nothing sent: a segment size of 0 cannot cut a payload into datagrams.
    fn zero_segment_size() -> Self {
        Self {
            sent: 0,
            source: io::Error::new(
                io::ErrorKind::InvalidInput,
                "UDP segment size must be positive",
            ),
        }
    }
}

/// Forces `IP_PMTUDISC_DONT` (and the IPv6 equivalents) so oversize datagrams
/// are fragmented instead of refused.
fn allow_fragmentation(fd: BorrowedFd<'_>, ipv6: bool) -> io::Result<()> {
    use sys::sockopt::set_int;
    if ipv6 {
        set_int(
            fd,
            libc::IPPROTO_IPV6,
            libc::IPV6_MTU_DISCOVER,
            libc::IPV6_PMTUDISC_DONT,
        )?;
        set_int(fd, libc::IPPROTO_IPV6, libc::IPV6_DONTFRAG, 0)?;
        // Also for IPv4-mapped destinations; fails on v6-only sockets, which is fine.
        let _ = set_int(
            fd,
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_DONT,
        );
        Ok(())
    } else {
        set_int(
            fd,
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_DONT,
        )
    }
}

/// The bound tunnel socket (e.g. UDP 4789): receives with GRO and can send.
#[derive(Debug)]
pub struct UdpPort {
    inner: TunnelSocket,
}

impl UdpPort {
    /// Binds `addr` (SO_REUSEADDR off, so a second router on the same port fails
    /// with [`PortError::AddressInUse`]); non-blocking.
    pub fn bind(addr: SocketAddr, opts: &UdpOptions) -> Result<Self, PortError> {
        Ok(Self {
            inner: TunnelSocket::bind(addr, opts)?,
        })
    }

    /// The bound address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local
    }

    /// Receives as many datagrams as are waiting and fit, without blocking; GRO
    /// super-buffers are split by their stride when iterating the batch. Returns
    /// the number of datagrams (`batch.len()`); `WouldBlock` when none.
    pub fn recv_batch(&self, batch: &mut UdpRxBatch) -> io::Result<usize> {
        batch.filled = 0;
        batch.datagrams = 0;
        let buffers = batch.metas.len().min(MAX_RX_BUFFERS);
        let mut chunks = batch.storage.chunks_exact_mut(UDP_SLOT_LEN);
        let mut iovs: [IoSliceMut<'_>; MAX_RX_BUFFERS] =
            std::array::from_fn(|_| IoSliceMut::new(chunks.next().unwrap_or_default()));
        let (Some(iovs), Some(metas)) = (iovs.get_mut(..buffers), batch.metas.get_mut(..buffers))
        else {
            return Ok(0);
        };
        let filled = loop {
            match self
                .inner
                .state
                .recv(UdpSockRef::from(&self.inner.socket), iovs, metas)
            {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => break other?,
            }
        };
        batch.filled = filled.min(buffers);
        batch.datagrams = batch
            .metas
            .iter()
            .take(batch.filled)
            .map(|m| datagrams_in(m.len, m.stride))
            .sum();
        Ok(batch.datagrams)
    }

    /// Sends `payload` (datagrams of `segment_size` bytes, the last may be
    /// shorter) to `dest` from the well-known port; GSO as in [`UdpSendPool::send`].
    pub fn send(
        &self,
        dest: SocketAddr,
        payload: &[u8],
        segment_size: usize,
    ) -> Result<(), UdpSendError> {
        self.inner.send(dest, payload, segment_size)
    }

    /// Sends single datagrams (any sizes, any destinations) with `sendmmsg`, 64 per
    /// syscall. `Err` says how many went out before the rest could not.
    pub fn send_many(&self, msgs: &[(SocketAddr, &[u8])]) -> Result<(), UdpSendError> {
        self.inner.send_many(msgs)
    }

    /// Datagrams the kernel dropped on this socket before weft read them, since it was
    /// bound (receive buffer full; rarely a bad checksum). Cumulative, never reset.
    pub fn kernel_drops(&self) -> io::Result<u32> {
        self.inner.kernel_drops()
    }

    /// Datagrams one GSO send may carry; 1 when GSO is off or unsupported.
    pub fn max_gso_segments(&self) -> usize {
        self.inner.max_gso_segments()
    }
}

impl AsRawFd for UdpPort {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.socket.as_raw_fd()
    }
}

impl AsFd for UdpPort {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.socket.as_fd()
    }
}

impl mio::event::Source for UdpPort {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        SourceFd(&self.as_raw_fd()).register(registry, token, interests)
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        SourceFd(&self.as_raw_fd()).reregister(registry, token, interests)
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        SourceFd(&self.as_raw_fd()).deregister(registry)
    }
}

/// How many datagrams a buffer of `len` bytes with GRO stride `stride` holds
/// (an empty datagram still counts as one).
fn datagrams_in(len: usize, stride: usize) -> usize {
    if len == 0 || stride == 0 {
        1
    } else {
        len.div_ceil(stride)
    }
}

/// Preallocated receive buffers for [`UdpPort::recv_batch`]; reused forever.
///
/// Each buffer holds one GRO super-buffer (up to 64 datagrams of one flow) or
/// one plain datagram; [`iter`](Self::iter) yields the datagrams one by one.
#[derive(Debug)]
pub struct UdpRxBatch {
    storage: Box<[u8]>,
    metas: Box<[RecvMeta]>,
    filled: usize,
    datagrams: usize,
}

impl UdpRxBatch {
    /// Allocates `buffers` receive buffers of 64 KiB (clamped to 1..=32, the
    /// recvmmsg batch), i.e. up to 2 MiB.
    pub fn new(buffers: usize) -> Self {
        let buffers = buffers.clamp(1, MAX_RX_BUFFERS);
        Self {
            storage: vec![0; buffers * UDP_SLOT_LEN].into_boxed_slice(),
            metas: vec![RecvMeta::default(); buffers].into_boxed_slice(),
            filled: 0,
            datagrams: 0,
        }
    }

    /// Datagrams received by the last `recv_batch`.
    pub fn len(&self) -> usize {
        self.datagrams
    }

    /// True when the last receive produced nothing.
    pub fn is_empty(&self) -> bool {
        self.datagrams == 0
    }

    /// Receive buffers (syscall-level messages) the last receive filled; fewer
    /// than [`len`](Self::len) when GRO coalesced datagrams.
    pub fn buffers_filled(&self) -> usize {
        self.filled
    }

    /// The datagrams of the last receive: `(source address, payload)`, in order.
    pub fn iter(&self) -> UdpDatagrams<'_> {
        UdpDatagrams {
            batch: self,
            buffer: 0,
            offset: 0,
        }
    }
}

/// Iterator over the datagrams of a [`UdpRxBatch`], GRO buffers split by stride.
#[derive(Debug)]
pub struct UdpDatagrams<'a> {
    batch: &'a UdpRxBatch,
    buffer: usize,
    offset: usize,
}

impl<'a> Iterator for UdpDatagrams<'a> {
    type Item = (SocketAddr, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        while self.buffer < self.batch.filled {
            let meta = self.batch.metas.get(self.buffer)?;
            let data = self
                .batch
                .storage
                .get(self.buffer * UDP_SLOT_LEN..)?
                .get(..meta.len.min(UDP_SLOT_LEN))?;
            if data.is_empty() && self.offset == 0 {
                self.buffer += 1;
                return Some((meta.addr, data));
            }
            if self.offset < data.len() {
                let stride = if meta.stride == 0 {
                    data.len()
                } else {
                    meta.stride
                };
                let end = data.len().min(self.offset + stride);
                let datagram = data.get(self.offset..end)?;
                self.offset = end;
                return Some((meta.addr, datagram));
            }
            self.buffer += 1;
            self.offset = 0;
        }
        None
    }
}

/// Send sockets on distinct ephemeral ports, so the outer UDP source port can
/// follow the inner flow hash (as the kernel vxlan driver does) and ECMP/RSS on
/// the path spread flows while each flow keeps one port (no reordering).
#[derive(Debug)]
pub struct UdpSendPool {
    sockets: Vec<TunnelSocket>,
}

impl UdpSendPool {
    /// Opens `n` sockets bound to `bind_ip` on kernel-chosen ports (the usual
    /// choice is 16).
    pub fn new(n: usize, bind_ip: IpAddr, opts: &UdpOptions) -> Result<Self, PortError> {
        if n == 0 {
            return Err(PortError::InvalidOption(
                "a UDP send pool needs at least one socket",
            ));
        }
        let sockets = (0..n)
            .map(|_| TunnelSocket::bind(SocketAddr::new(bind_ip, 0), opts))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { sockets })
    }

    /// Number of sockets (distinct source ports) in the pool.
    pub fn len(&self) -> usize {
        self.sockets.len()
    }

    /// Always false: a pool has at least one socket.
    pub fn is_empty(&self) -> bool {
        self.sockets.is_empty()
    }

    /// Sends `payload` (concatenated datagrams of `segment_size` bytes each, the
    /// last may be shorter) to `dest` from the socket picked by `flow_hash`; uses
    /// GSO when there is more than one segment and GSO is on and supported (at
    /// most 64 segments and 64 KiB per syscall), else `sendmmsg` of the pieces.
    /// `Err` (e.g. `WouldBlock` when the socket buffer is full) says how many
    /// datagrams went out before the rest could not.
    pub fn send(
        &self,
        flow_hash: u32,
        dest: SocketAddr,
        payload: &[u8],
        segment_size: usize,
    ) -> Result<(), UdpSendError> {
        self.send_from(self.socket_for(flow_hash), dest, payload, segment_size)
    }

    /// [`Self::send`] from socket `socket` (the core picks it by flow hash itself).
    pub fn send_from(
        &self,
        socket: usize,
        dest: SocketAddr,
        payload: &[u8],
        segment_size: usize,
    ) -> Result<(), UdpSendError> {
        match self.sockets.get(socket) {
            Some(socket) => socket.send(dest, payload, segment_size),
            None => Err(UdpSendError {
                sent: 0,
                source: io::Error::from(io::ErrorKind::NotConnected),
            }),
        }
    }

    /// The socket `flow_hash` maps to ([`tunnel::spread`]: the one mapping the data
    /// plane's core uses too).
    pub fn socket_for(&self, flow_hash: u32) -> usize {
        tunnel::spread(flow_hash, self.sockets.len())
    }

    /// Sends single datagrams (any sizes, any destinations) from socket `socket` with
    /// `sendmmsg`, 64 per syscall: how the small frames of one receive batch leave.
    /// `Err` says how many went out before the rest could not.
    pub fn send_many(
        &self,
        socket: usize,
        msgs: &[(SocketAddr, &[u8])],
    ) -> Result<(), UdpSendError> {
        match self.sockets.get(socket) {
            Some(s) => s.send_many(msgs),
            None => Err(UdpSendError {
                sent: 0,
                source: io::Error::from(io::ErrorKind::NotConnected),
            }),
        }
    }

    /// The outer UDP source port used for `flow_hash`.
    pub fn source_port(&self, flow_hash: u32) -> u16 {
        self.pick(flow_hash).map_or(0, |s| s.local.port())
    }

    /// The smallest GSO segment limit over the pool (1: GSO off or unsupported).
    pub fn max_gso_segments(&self) -> usize {
        self.sockets
            .iter()
            .map(TunnelSocket::max_gso_segments)
            .min()
            .unwrap_or(1)
    }

    /// Maps the hash onto a socket by multiply-shift (uniform, no division).
    fn pick(&self, flow_hash: u32) -> Option<&TunnelSocket> {
        self.sockets.get(self.socket_for(flow_hash))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled_batch(buffers: &[(&[u8], usize)]) -> UdpRxBatch {
        let mut batch = UdpRxBatch::new(buffers.len());
        let addr: SocketAddr = "192.0.2.1:4789".parse().unwrap();
        for (i, (data, stride)) in buffers.iter().enumerate() {
            batch.storage[i * UDP_SLOT_LEN..][..data.len()].copy_from_slice(data);
            let mut meta = RecvMeta::default();
            meta.addr = addr;
            meta.len = data.len();
            meta.stride = *stride;
            batch.metas[i] = meta;
        }
        batch.filled = buffers.len();
        batch.datagrams = buffers.iter().map(|(d, s)| datagrams_in(d.len(), *s)).sum();
        batch
    }

    #[test]
    fn gro_buffers_split_by_stride_with_short_tail() {
        let gro: Vec<u8> = (0..25).collect();
        let plain = [9u8; 7];
        let batch = filled_batch(&[(&gro, 10), (&plain, 7)]);
        let sizes: Vec<usize> = batch.iter().map(|(_, d)| d.len()).collect();
        assert_eq!(sizes, vec![10, 10, 5, 7]);
        assert_eq!(batch.len(), 4);
        assert_eq!(batch.buffers_filled(), 2);
        let joined: Vec<u8> = batch.iter().take(3).flat_map(|(_, d)| d.to_vec()).collect();
        assert_eq!(joined, gro);
    }

    #[test]
    fn empty_datagrams_and_zero_stride_are_single_datagrams() {
        let batch = filled_batch(&[(&[], 0), (&[1, 2, 3], 0)]);
        let sizes: Vec<usize> = batch.iter().map(|(_, d)| d.len()).collect();
        assert_eq!(sizes, vec![0, 3]);
        assert_eq!(batch.len(), 2);
    }

    #[test]
    fn rx_batch_buffers_are_clamped() {
        assert_eq!(UdpRxBatch::new(0).metas.len(), 1);
        assert_eq!(UdpRxBatch::new(1000).metas.len(), MAX_RX_BUFFERS);
    }
}
