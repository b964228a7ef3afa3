//! Frames leaving the host: to a peer over VXLAN, over the encrypted tunnel, relayed
//! through a neighbour, or flooded along this router's broadcast tree.

use std::net::SocketAddr;
use std::time::Instant;

use learning::PortId;
use tunnel::crypto::datagram::{self, DEFAULT_TTL, FrameFlags, FrameHeader, PushError};
use tunnel::path::Path;
use tunnel::{PmtuVerdict, Vni, VxlanHeader};
use wire::VnetHdr;

use super::core::Core;
use super::engine::NO_VNET;
use super::peers::Name;
use super::ports::RemoteSlot;
use crate::io::TxFrame;

/// The destination name of a frame flooded along a broadcast tree.
pub(super) const BROADCAST: Name = [0xff; 6];

impl Core {
    /// Sends a frame that arrived on local port `ingress` to remote port `r`.
    pub(super) fn send_remote(
        &mut self,
        ingress: PortId,
        r: RemoteSlot,
        vnet: &VnetHdr,
        frame: &[u8],
        now: Instant,
    ) {
        let Some(peer) = self.peers.get(r.peer) else {
            self.counters.bump("drop", "no_peer");
            return;
        };
        match (peer.path(), peer.name) {
            (Path::Vxlan, _) => self.send_vxlan(Some(ingress), r.peer, r.vni, vnet, frame),
            (Path::Encrypted | Path::Relayed, None) => {
                self.counters.bump("drop", "no_peer_name");
            }
            (Path::Encrypted, Some(dst)) => {
                self.send_tunnel(Some(ingress), r.peer, dst, r.vni, vnet, frame, now);
            }
            (Path::Relayed, Some(dst)) => {
                let Some(via) = self.next_hop(dst) else {
                    self.counters.bump("drop", "no_route");
                    return;
                };
                self.send_tunnel(Some(ingress), via, dst, r.vni, vnet, frame, now);
            }
            (Path::None, _) => self.counters.bump("drop", "no_path"),
        }
    }

    /// Floods a locally originated frame to every peer of its network. Along this
    /// router's broadcast tree when the mesh has one: a child that is a leaf and has a
    /// working VXLAN path gets plain VXLAN, any other child gets the frame in the tunnel
    /// with the broadcast destination and forwards it to its own children. Peers outside
    /// the mesh (command-line VXLAN endpoints such as kernel VTEPs) get VXLAN copies.
    pub(super) fn flood_remote(
        &mut self,
        ingress: PortId,
        remotes: &[RemoteSlot],
        vnet: &VnetHdr,
        frame: &[u8],
        now: Instant,
    ) {
        let Some(first) = remotes.first() else { return };
        let vni = first.vni;
        let Some(routes) = self.routes.clone() else {
            for r in remotes {
                self.send_remote(ingress, *r, vnet, frame, now);
            }
            return;
        };
        let me = mesh::PeerName(self.local_name);
        for child in routes.broadcast_children(me, me) {
            let Some(ci) = self.peers.index_of_name(&child.0) else {
                self.counters.bump("drop", "no_peer");
                continue;
            };
            let leaf = routes.broadcast_children(me, *child).is_empty();
            let vxlan = self.peers.get(ci).is_some_and(|p| p.path() == Path::Vxlan);
            if leaf && vxlan {
                self.send_vxlan(Some(ingress), ci, vni, vnet, frame);
            } else {
                self.send_tunnel(Some(ingress), ci, BROADCAST, vni, vnet, frame, now);
            }
        }
        for r in remotes {
            let outside = self.peers.get(r.peer).is_some_and(|p| {
                p.name
                    .is_none_or(|n| !routes.is_reachable(mesh::PeerName(n)) || n == self.local_name)
            });
            if outside {
                self.send_remote(ingress, *r, vnet, frame, now);
            }
        }
    }

    /// Sends a frame to peer `pi` over VXLAN: cut to the path MTU if it is a super-frame,
    /// answered with ICMP (out of `ingress`) if it is too big and must not be fragmented.
    pub(super) fn send_vxlan(
        &mut self,
        ingress: Option<PortId>,
        pi: usize,
        vni: u32,
        vnet: &VnetHdr,
        frame: &[u8],
    ) {
        let Some(dest) = self.peers.get(pi).and_then(|p| p.vxlan_addr) else {
            self.counters.bump("drop", "no_vxlan_address");
            return;
        };
        if !self.check_pmtu(ingress, vnet, frame, self.overlay_mtu) {
            return;
        }
        let key = (frame.as_ptr() as usize, frame.len(), vni);
        if self.seg_key != Some(key) {
            let Some(prefix) = Vni::new(vni).map(|v| VxlanHeader::new(v).to_bytes()) else {
                self.counters.bump("drop", "invalid_vni");
                return;
            };
            // A non-DF IPv4 packet bigger than the path is sent whole; the kernel
            // fragments the outer datagram.
            let mtu = if vnet.is_gso() {
                self.overlay_mtu
            } else {
                usize::MAX
            };
            match tunnel::segment(vnet, frame, mtu, &prefix, &mut self.seg) {
                Ok(s) => {
                    self.seg_key = Some(key);
                    self.seg_stride = s.stride;
                }
                Err(e) => {
                    self.seg_key = None;
                    self.counters.bump("drop", e.name());
                    return;
                }
            }
        }
        let hash = tunnel::flow_hash(frame);
        let datagrams = self.seg.len().div_ceil(self.seg_stride.max(1));
        if datagrams == 1 {
            let socket = self.send_pool.socket_for(hash);
            self.vxlan_out.push(socket, dest, pi, &self.seg);
            return;
        }
        // A flow's frames stay in order: what the batch queued goes first.
        self.flush_vxlan();
        match self.send_pool.send(hash, dest, &self.seg, self.seg_stride) {
            Ok(()) => {
                if let Some(p) = self.peers.get_mut(pi) {
                    p.counters.tx_frames += datagrams as u64;
                    p.counters.tx_bytes += self.seg.len() as u64;
                }
            }
            Err(e) => {
                // Datagrams, not frames: a super-frame is many, and some may have gone.
                let lost = datagrams.saturating_sub(e.sent) as u64;
                self.counters.add("drop", "vxlan_send_failed", lost);
                tracing::trace!(%dest, "VXLAN send failed: {e}");
            }
        }
    }

    /// Sends a frame in the encrypted tunnel to neighbour `via`, addressed to `dst` (the
    /// neighbour itself, a peer beyond it, or [`BROADCAST`]), from this router.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn send_tunnel(
        &mut self,
        ingress: Option<PortId>,
        via: usize,
        dst: Name,
        vni: u32,
        vnet: &VnetHdr,
        frame: &[u8],
        now: Instant,
    ) {
        let Some(vni) = Vni::new(vni) else {
            self.counters.bump("drop", "invalid_vni");
            return;
        };
        if !self.check_pmtu(ingress, vnet, frame, self.tunnel_mtu) {
            return;
        }
        let header = FrameHeader {
            origin: self.local_name,
            destination: dst,
            ttl: DEFAULT_TTL,
            flags: FrameFlags::for_frame(frame),
            vni,
        };
        self.forward_tunnel(via, &header, vnet, frame, now);
    }

    /// Sends a frame record to neighbour `via`: a single frame joins the datagram packed
    /// for `via` during this batch (sealed and sent by `flush_peers`), a super-frame
    /// becomes one GSO batch of sealed datagrams.
    pub(super) fn forward_tunnel(
        &mut self,
        via: usize,
        header: &FrameHeader,
        vnet: &VnetHdr,
        frame: &[u8],
        now: Instant,
    ) {
        let (via, header) = self.around_dead_link(via, header);
        if !vnet.is_gso() && self.pack_tunnel(via, &header, vnet, frame, now) {
            return;
        }
        // Frames of a flow stay in order: what waits for this peer goes first.
        self.flush_tunnel_peer(via, now);
        let Some(peer) = self.peers.get_mut(via) else {
            self.counters.bump("drop", "no_peer");
            return;
        };
        let Some(tunnel) = peer.tunnel.as_mut() else {
            self.counters.bump("drop", "no_tunnel_session");
            return;
        };
        let addr: SocketAddr = tunnel.addr;
        let sealed = datagram::seal_super_frame(
            &mut tunnel.session,
            now,
            vnet,
            frame,
            &header,
            self.tunnel_mtu,
            &mut self.tun,
        );
        let seg = match sealed {
            Ok(s) => s,
            Err(e) => {
                self.counters.bump("drop", e.name());
                return;
            }
        };
        match self.tunnel_sock.send(addr, &self.tun, seg.stride) {
            Ok(()) => {
                peer.counters.tx_frames += seg.count as u64;
                peer.counters.tx_bytes += self.tun.len() as u64;
            }
            Err(e) => {
                let lost = seg.count.saturating_sub(e.sent) as u64;
                self.counters.add("drop", "tunnel_send_failed", lost);
                tracing::trace!(%addr, "tunnel send failed: {e}");
            }
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
                Err(PushError::Full) if first_try => self.flush_tunnel_peer(via, now),
                Err(e @ (PushError::FrameTooShort | PushError::BadChecksumOffsets)) => {
                    // Not sendable either way: counted, and done with.
                    self.counters.bump("drop", e.name());
                    return true;
                }
                Err(PushError::Full | PushError::FrameTooLarge) => return false,
            }
        }
        false
    }

    /// Sends what the current batch left waiting for peers: the queued VXLAN datagrams,
    /// and the tunnel datagrams it packed, sealed now.
    pub(super) fn flush_peers(&mut self, now: Instant) {
        self.flush_vxlan();
        let dirty = std::mem::take(&mut self.tun_dirty);
        for &pi in &dirty {
            self.flush_tunnel_peer(pi, now);
        }
        self.tun_dirty = dirty;
        self.tun_dirty.clear();
    }

    /// Sends the queued VXLAN datagrams, one `sendmmsg` per source socket.
    fn flush_vxlan(&mut self) {
        if self.vxlan_out.is_empty() {
            return;
        }
        let Self {
            vxlan_out,
            send_pool,
            peers,
            counters,
            ..
        } = self;
        let done = vxlan_out.flush(send_pool, |pi, len| {
            if let Some(p) = peers.get_mut(pi) {
                p.counters.tx_frames += 1;
                p.counters.tx_bytes += len as u64;
            }
        });
        if done.lost > 0 {
            counters.add("drop", "vxlan_send_failed", done.lost as u64);
        }
        if done.batched > 0 {
            counters.add("vxlan", "batched_datagrams", done.batched as u64);
        }
    }

    /// Seals and sends the frames waiting for peer `pi`, if any.
    fn flush_tunnel_peer(&mut self, pi: usize, now: Instant) {
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
                self.counters.add("drop", e.name(), frames);
                return;
            }
        };
        match self.tunnel_sock.send(addr, dgram, dgram.len()) {
            Ok(()) => {
                peer.counters.tx_frames += frames;
                peer.counters.tx_bytes += dgram.len() as u64;
                if frames > 1 {
                    self.counters.add("tunnel", "packed_frames", frames);
                }
            }
            Err(e) => {
                self.counters.add("drop", "tunnel_send_failed", frames);
                tracing::trace!(%addr, "tunnel send failed: {e}");
            }
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
    ) -> bool {
        let Some(ingress) = ingress else { return true };
        match self.pmtu.check(vnet, frame, mtu, &mut self.icmp) {
            PmtuVerdict::Fits | PmtuVerdict::Segment | PmtuVerdict::SendOversized => true,
            PmtuVerdict::Reply { len } => {
                if let (Some(slot), Some(icmp)) =
                    (self.ports.local_mut(ingress), self.icmp.get(..len))
                {
                    slot.send(&[TxFrame {
                        vnet: &NO_VNET,
                        frame: icmp,
                    }]);
                } else {
                    self.counters.bump("drop", "icmp_reply_unsent");
                }
                false
            }
            PmtuVerdict::Drop(_) => {
                self.counters.bump("drop", "pmtu");
                false
            }
        }
    }
}
