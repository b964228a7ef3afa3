//! Frames leaving the host: to a peer over VXLAN, over the encrypted tunnel, relayed
//! through a neighbour, or flooded along this router's broadcast tree.

use std::time::Instant;

use learning::PortId;
use mesh::PeerName;
use tunnel::crypto::datagram::{self, DEFAULT_TTL, FrameFlags, FrameHeader, PushError};
use tunnel::path::Path;
use tunnel::{PmtuVerdict, Vni, VxlanHeader};
use wire::{VnetFrame, VnetHdr};

use crate::core::State;
use crate::drops::{Counter, OwnDrop};
use crate::ports::RemoteSlot;
use crate::transmit::{Sink, Transmit, UdpSource};

/// The destination name of a frame flooded along a broadcast tree.
pub(crate) const BROADCAST: PeerName = PeerName([0xff; 6]);

impl State {
    /// Sends a frame that arrived on local port `ingress` to remote port `r`.
    pub(crate) fn send_remote(
        &mut self,
        ingress: PortId,
        r: RemoteSlot,
        vnet: &VnetHdr,
        frame: &[u8],
        now: Instant,
        out: &mut dyn Sink,
    ) {
        let Some(peer) = self.peers.get(r.peer) else {
            self.drops.bump(OwnDrop::NoPeer);
            return;
        };
        match (peer.path(), peer.name) {
            (Path::Vxlan, _) => self.send_vxlan(Some(ingress), r.peer, r.vni, vnet, frame, out),
            (Path::Encrypted | Path::Relayed, None) => self.drops.bump(OwnDrop::NoPeerName),
            (Path::Encrypted, Some(dst)) => {
                self.send_tunnel(Some(ingress), r.peer, dst, r.vni, vnet, frame, now, out);
            }
            (Path::Relayed, Some(dst)) => {
                let Some(via) = self.next_hop(dst) else {
                    self.drops.bump(OwnDrop::NoRoute);
                    return;
                };
                self.send_tunnel(Some(ingress), via, dst, r.vni, vnet, frame, now, out);
            }
            (Path::None, _) => self.drops.bump(OwnDrop::NoPath),
        }
    }

    /// Floods a locally originated frame to every peer of its network. Along this
    /// router's broadcast tree when the mesh has one: a child that is a leaf and has a
    /// working VXLAN path gets plain VXLAN, any other child gets the frame in the tunnel
    /// with the broadcast destination and forwards it to its own children. Peers outside
    /// the mesh (command-line VXLAN endpoints such as kernel VTEPs) get VXLAN copies.
    pub(crate) fn flood_remote(
        &mut self,
        ingress: PortId,
        remotes: &[RemoteSlot],
        vnet: &VnetHdr,
        frame: &[u8],
        now: Instant,
        out: &mut dyn Sink,
    ) {
        let Some(first) = remotes.first() else { return };
        let vni = first.vni;
        let Some(routes) = self.routes.clone() else {
            for r in remotes {
                self.send_remote(ingress, *r, vnet, frame, now, out);
            }
            return;
        };
        let me = self.local_name;
        for child in routes.broadcast_children(me, me) {
            let Some(ci) = self.peers.index_of_name(child) else {
                self.drops.bump(OwnDrop::NoPeer);
                continue;
            };
            let leaf = routes.broadcast_children(me, *child).is_empty();
            let vxlan = self.peers.get(ci).is_some_and(|p| p.path() == Path::Vxlan);
            if leaf && vxlan {
                self.send_vxlan(Some(ingress), ci, vni, vnet, frame, out);
            } else {
                self.send_tunnel(Some(ingress), ci, BROADCAST, vni, vnet, frame, now, out);
            }
        }
        for r in remotes {
            let outside = self.peers.get(r.peer).is_some_and(|p| {
                p.name
                    .is_none_or(|n| !routes.is_reachable(n) || n == self.local_name)
            });
            if outside {
                self.send_remote(ingress, *r, vnet, frame, now, out);
            }
        }
    }

    /// Sends a frame to peer `pi` over VXLAN: cut to the path MTU if it is a super-frame,
    /// answered with ICMP (out of `ingress`) if it is too big and must not be fragmented.
    /// A single datagram joins the batch's queue; a super-frame's datagrams leave as one
    /// GSO send, after what the queue holds (a flow's frames keep their order).
    pub(crate) fn send_vxlan(
        &mut self,
        ingress: Option<PortId>,
        pi: usize,
        vni: Vni,
        vnet: &VnetHdr,
        frame: &[u8],
        out: &mut dyn Sink,
    ) {
        let Some(dest) = self.peers.get(pi).and_then(|p| p.vxlan_addr) else {
            self.drops.bump(OwnDrop::NoVxlanAddress);
            return;
        };
        if !self.check_pmtu(ingress, vnet, frame, self.overlay_mtu, out) {
            return;
        }
        let key = (frame.as_ptr() as usize, frame.len(), vni);
        if self.scratch.seg_key != Some(key) {
            let prefix = VxlanHeader::new(vni).to_bytes();
            // A non-DF IPv4 packet bigger than the path is sent whole; the kernel
            // fragments the outer datagram.
            let mtu = if vnet.is_gso() {
                self.overlay_mtu
            } else {
                usize::MAX
            };
            match tunnel::segment(vnet, frame, mtu, &prefix, &mut self.scratch.seg) {
                Ok(s) => {
                    self.scratch.seg_key = Some(key);
                    self.scratch.seg_stride = s.stride;
                }
                Err(e) => {
                    self.scratch.seg_key = None;
                    self.drops.bump(e);
                    return;
                }
            }
        }
        let socket = tunnel::spread(tunnel::flow_hash(frame), self.send_sockets);
        let seg = &self.scratch.seg;
        let stride = self.scratch.seg_stride.max(1);
        let datagrams = seg.len().div_ceil(stride);
        if datagrams == 1 {
            self.vxlan_out.push(socket, dest, pi, seg);
            return;
        }
        // A flow's frames stay in order: what the batch queued goes first.
        self.flush_vxlan(out);
        let seg = &self.scratch.seg;
        let sent = out.transmit(Transmit::Udp {
            from: UdpSource::Vxlan(socket),
            to: dest,
            payload: seg,
            segment_size: stride,
        });
        if let Some(p) = self.peers.get_mut(pi) {
            p.counters.tx_frames += sent.min(datagrams) as u64;
            p.counters.tx_bytes += seg.len().min(sent * stride) as u64;
        }
        // Datagrams, not frames: a super-frame is many, and some may have gone.
        let lost = datagrams.saturating_sub(sent) as u64;
        if lost > 0 {
            self.drops.add(OwnDrop::VxlanSendFailed, lost);
        }
    }

    /// Sends a frame in the encrypted tunnel to neighbour `via`, addressed to `dst` (the
    /// neighbour itself, a peer beyond it, or [`BROADCAST`]), from this router.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn send_tunnel(
        &mut self,
        ingress: Option<PortId>,
        via: usize,
        dst: PeerName,
        vni: Vni,
        vnet: &VnetHdr,
        frame: &[u8],
        now: Instant,
        out: &mut dyn Sink,
    ) {
        if !self.check_pmtu(ingress, vnet, frame, self.tunnel_mtu, out) {
            return;
        }
        let header = FrameHeader {
            origin: self.local_name.0,
            destination: dst.0,
            ttl: DEFAULT_TTL,
            flags: FrameFlags::for_frame(frame),
            vni,
        };
        self.forward_tunnel(via, &header, vnet, frame, now, out);
    }

    /// Sends a frame record to neighbour `via`: a single frame joins the datagram packed
    /// for `via` during this batch (sealed and sent by `flush_peers`), a super-frame
    /// becomes one GSO batch of sealed datagrams.
    pub(crate) fn forward_tunnel(
        &mut self,
        via: usize,
        header: &FrameHeader,
        vnet: &VnetHdr,
        frame: &[u8],
        now: Instant,
        out: &mut dyn Sink,
    ) {
        let (via, header) = self.around_dead_link(via, header);
        if !vnet.is_gso() && self.pack_tunnel(via, &header, vnet, frame, now, out) {
            return;
        }
        // Frames of a flow stay in order: what waits for this peer goes first.
        self.flush_tunnel_peer(via, now, out);
        let Some(peer) = self.peers.get_mut(via) else {
            self.drops.bump(OwnDrop::NoPeer);
            return;
        };
        let Some(tunnel) = peer.tunnel.as_mut() else {
            self.drops.bump(OwnDrop::NoTunnelSession);
            return;
        };
        let sealed = datagram::seal_super_frame(
            &mut tunnel.session,
            now,
            vnet,
            frame,
            &header,
            self.tunnel_mtu,
            &mut self.scratch.tun,
        );
        let seg = match sealed {
            Ok(s) => s,
            Err(e) => {
                self.drops.bump(e);
                return;
            }
        };
        let sent = out.transmit(Transmit::Udp {
            from: UdpSource::Tunnel,
            to: tunnel.addr,
            payload: &self.scratch.tun,
            segment_size: seg.stride,
        });
        peer.counters.tx_frames += sent.min(seg.count) as u64;
        peer.counters.tx_bytes += self.scratch.tun.len().min(sent * seg.stride) as u64;
        let lost = seg.count.saturating_sub(sent) as u64;
        if lost > 0 {
            self.drops.add(OwnDrop::TunnelSendFailed, lost);
        }
    }

    /// Adds a single frame to `via`'s datagram in the making (sealing the full one first);
    /// false when it must go on its own (too big to share: the oversized path sends it).
    fn pack_tunnel(
        &mut self,
        via: usize,
        header: &FrameHeader,
        vnet: &VnetHdr,
        frame: &[u8],
        now: Instant,
        out: &mut dyn Sink,
    ) -> bool {
        for first_try in [true, false] {
            let Some(tunnel) = self.peers.get_mut(via).and_then(|p| p.tunnel.as_mut()) else {
                return false;
            };
            let was_empty = tunnel.packer.is_empty();
            match tunnel
                .packer
                .push_frame(header, vnet, frame, self.tunnel_datagram_max)
            {
                Ok(()) => {
                    if was_empty {
                        self.tun_dirty.push(via);
                    }
                    return true;
                }
                Err(PushError::Full) if first_try => self.flush_tunnel_peer(via, now, out),
                Err(e @ (PushError::FrameTooShort | PushError::BadChecksumOffsets)) => {
                    // Not sendable either way: counted, and done with.
                    self.drops.bump(e);
                    return true;
                }
                Err(PushError::Full | PushError::FrameTooLarge) => return false,
            }
        }
        false
    }

    /// Sends what the current batch left waiting for peers: the queued VXLAN datagrams,
    /// and the tunnel datagrams it packed, sealed now. Every entry point that may queue
    /// or pack ends here, so nothing waits across calls.
    pub(crate) fn flush_peers(&mut self, now: Instant, out: &mut dyn Sink) {
        self.flush_vxlan(out);
        let dirty = std::mem::take(&mut self.tun_dirty);
        for &pi in &dirty {
            self.flush_tunnel_peer(pi, now, out);
        }
        self.tun_dirty = dirty;
        self.tun_dirty.clear();
    }

    /// Sends the queued VXLAN datagrams, one transmit per source socket.
    fn flush_vxlan(&mut self, out: &mut dyn Sink) {
        if self.vxlan_out.is_empty() {
            return;
        }
        let Self {
            vxlan_out, peers, ..
        } = self;
        let done = vxlan_out.flush(out, |pi, len| {
            if let Some(p) = peers.get_mut(pi) {
                p.counters.tx_frames += 1;
                p.counters.tx_bytes += len as u64;
            }
        });
        if done.lost > 0 {
            self.drops.add(OwnDrop::VxlanSendFailed, done.lost as u64);
        }
        if done.batched > 0 {
            self.counters
                .add(Counter::VxlanBatchedDatagrams, done.batched as u64);
        }
    }

    /// Seals and sends the frames waiting for peer `pi`, if any.
    fn flush_tunnel_peer(&mut self, pi: usize, now: Instant, out: &mut dyn Sink) {
        let Some(peer) = self.peers.get_mut(pi) else {
            return;
        };
        let Some(tunnel) = peer.tunnel.as_mut() else {
            return;
        };
        let frames = tunnel.packer.frames() as u64;
        if frames == 0 {
            return;
        }
        let addr = tunnel.addr;
        let dgram = match tunnel.packer.seal(&mut tunnel.session, now) {
            Ok(d) => d,
            Err(e) => {
                self.drops.add(e, frames);
                return;
            }
        };
        let sent = out.transmit(Transmit::Udp {
            from: UdpSource::Tunnel,
            to: addr,
            payload: dgram,
            segment_size: dgram.len().max(1),
        });
        if sent > 0 {
            peer.counters.tx_frames += frames;
            peer.counters.tx_bytes += dgram.len() as u64;
            if frames > 1 {
                self.counters.add(Counter::TunnelPackedFrames, frames);
            }
        } else {
            self.drops.add(OwnDrop::TunnelSendFailed, frames);
        }
    }

    /// Applies the path MTU to a frame from a local port: false when the frame must not
    /// go (an ICMP error was sent back out of `ingress` instead, or it was dropped).
    fn check_pmtu(
        &mut self,
        ingress: Option<PortId>,
        vnet: &VnetHdr,
        frame: &[u8],
        mtu: usize,
        out: &mut dyn Sink,
    ) -> bool {
        let Some(ingress) = ingress else { return true };
        match self.pmtu.check(vnet, frame, mtu, &mut self.scratch.icmp) {
            PmtuVerdict::Fits | PmtuVerdict::Segment | PmtuVerdict::SendOversized => true,
            PmtuVerdict::Reply { len } => {
                match self.scratch.icmp.get(..len) {
                    Some(icmp) if self.ports.local(ingress).is_some() => {
                        let reply = [VnetFrame {
                            vnet: &wire::vnet::NO_OFFLOAD,
                            frame: icmp,
                        }];
                        self.ports.send(ingress, &reply, out, &mut self.drops);
                    }
                    _ => self.drops.bump(OwnDrop::IcmpReplyUnsent),
                }
                false
            }
            PmtuVerdict::Drop(reason) => {
                self.drops.bump(reason);
                false
            }
        }
    }
}
