//! Frames arriving from other hosts: VXLAN datagrams and encrypted tunnel datagrams,
//! decapsulated or opened, heartbeats consumed, frames switched to local ports, relayed
//! towards their destination, or forwarded down the origin's broadcast tree.

use std::net::SocketAddr;
use std::time::Instant;

use learning::PortId;
use mesh::PeerName;
use switch::Verdict;
use tunnel::crypto::TunnelDrop;
use tunnel::crypto::datagram::{self, ClearHeader, DatagramKind, FrameFlags, FrameHeader};
use tunnel::{Coalescer, Heartbeat, VxlanError};
use wire::{VnetFrame, VnetHdr};

use crate::core::State;
use crate::drops::{Counter, OwnDrop};
use crate::egress::BROADCAST;
use crate::transmit::Sink;

impl State {
    /// Decapsulates one VXLAN datagram and finds the remote port of (peer, network) its
    /// frame came in on; heartbeats are consumed here.
    pub(crate) fn vxlan_datagram<'a>(
        &mut self,
        src: SocketAddr,
        datagram: &'a [u8],
        now: Instant,
    ) -> Option<(PortId, &'a [u8])> {
        let Some(pi) = self.peers.index_of_ip(src.ip()) else {
            self.drops.bump(OwnDrop::VxlanUnknownPeer);
            return None;
        };
        let (vni, inner) = match tunnel::decap(datagram) {
            Ok(x) => x,
            Err(e) => {
                self.drops.bump(e);
                return None;
            }
        };
        let Some(peer) = self.peers.get_mut(pi) else {
            self.drops.bump(OwnDrop::VxlanUnknownPeer);
            return None;
        };
        if !peer.vxlan_allowed() {
            // A password is set and this peer's subnet is not trusted: cleartext from it
            // could be anyone's.
            self.drops.bump(OwnDrop::VxlanNotAllowed);
            return None;
        }
        peer.counters.rx_frames += 1;
        peer.counters.rx_bytes += datagram.len() as u64;
        if tunnel::is_heartbeat(inner) {
            match Heartbeat::decode(inner) {
                Ok(hb) => {
                    peer.vxlan.handle_heartbeat(now, &hb);
                    self.peers.learn_name(pi, PeerName(hb.sender));
                    // A pong is owed, or the path may have come up.
                    self.deadline.due_now();
                }
                Err(e) => self.drops.bump(e),
            }
            return None;
        }
        let port = self
            .by_vni
            .get(&vni)
            .and_then(|net| self.peers.get(pi)?.ports.get(net).copied());
        if port.is_none() {
            self.drops.bump(VxlanError::UnknownVni(vni));
        }
        port.map(|p| (p, inner))
    }

    /// Opens one tunnel datagram (copied into scratch) and handles what it carries.
    pub(crate) fn tunnel_datagram(
        &mut self,
        datagram: &[u8],
        gro: &mut Coalescer,
        now: Instant,
        out: &mut dyn Sink,
    ) {
        let index = match ClearHeader::parse(datagram) {
            Ok(h) => h.receiver_index,
            Err(e) => {
                self.drops.bump(e);
                return;
            }
        };
        let Some(pi) = self.peers.index_of_session(index) else {
            self.drops.bump(TunnelDrop::UnknownSession(index));
            return;
        };
        let mut buf = std::mem::take(&mut self.scratch.rx_tun);
        buf.clear();
        buf.extend_from_slice(datagram);
        self.open_tunnel_datagram(pi, index, &mut buf, gro, now, out);
        self.scratch.rx_tun = buf;
    }

    fn open_tunnel_datagram(
        &mut self,
        pi: usize,
        index: u32,
        buf: &mut [u8],
        gro: &mut Coalescer,
        now: Instant,
        out: &mut dyn Sink,
    ) {
        let len = buf.len() as u64;
        // A session index outlives its tunnel only between a teardown and the index
        // map's update; what arrives in that gap is still a counted drop.
        let Some(tunnel) = self.peers.get_mut(pi).and_then(|p| p.tunnel.as_mut()) else {
            self.drops.bump(TunnelDrop::UnknownSession(index));
            return;
        };
        let opened = match tunnel.session.open(now, buf) {
            Ok(o) => o,
            Err(e) => {
                self.drops.bump(e);
                return;
            }
        };
        match opened.kind {
            DatagramKind::Heartbeat => match datagram::parse_heartbeat(opened.plaintext) {
                Ok(hb) => {
                    tunnel.monitor.handle_heartbeat(now, &hb);
                    self.deadline.due_now();
                }
                Err(e) => self.drops.bump(e),
            },
            DatagramKind::Frames => {
                let plaintext: &[u8] = opened.plaintext;
                for record in datagram::frames(plaintext) {
                    match record {
                        Ok((header, frame)) => self.tunnel_frame(&header, frame, gro, now, out),
                        Err(e) => {
                            self.drops.bump(e);
                            break;
                        }
                    }
                }
                if let Some(p) = self.peers.get_mut(pi) {
                    p.counters.rx_frames += 1;
                }
            }
        }
        if let Some(p) = self.peers.get_mut(pi) {
            p.counters.rx_bytes += len;
        }
    }

    /// One frame out of the tunnel: delivered here, relayed on, or both (a broadcast, or a
    /// broadcast brought here by a relay to flood on down the origin's tree).
    fn tunnel_frame(
        &mut self,
        header: &FrameHeader,
        frame: &[u8],
        gro: &mut Coalescer,
        now: Instant,
        out: &mut dyn Sink,
    ) {
        let destination = PeerName(header.destination);
        let here = destination == self.local_name;
        let broadcast = destination == BROADCAST;
        if here || broadcast {
            match self.origin_port(header) {
                Some(port) => gro.push(u64::from(port.0), frame, &mut |tag, vnet, f| {
                    self.deliver(PortId(tag as u32), vnet, f, now, out);
                }),
                None => self.drops.bump(OwnDrop::TunnelUnknownOrigin),
            }
        }
        let subtree = here && header.flags.contains(FrameFlags::SUBTREE);
        if here && !subtree {
            return;
        }
        let mut onward = match header.relayed() {
            Ok(h) => h,
            Err(e) => {
                self.drops.bump(e);
                return;
            }
        };
        let Some(routes) = self.routes.clone() else {
            self.drops.bump(OwnDrop::NoRoute);
            return;
        };
        let vnet = VnetHdr::NONE;
        if broadcast || subtree {
            onward.destination = BROADCAST.0;
            onward.flags = onward.flags.without(FrameFlags::SUBTREE);
            let origin = PeerName(header.origin);
            for child in routes.broadcast_children(origin, self.local_name) {
                if let Some(ci) = self.peers.index_of_name(child) {
                    self.forward_tunnel(ci, &onward, &vnet, frame, now, out);
                }
            }
        } else {
            match self.next_hop(destination) {
                Some(via) => {
                    self.counters.bump(Counter::RelayFrames);
                    self.forward_tunnel(via, &onward, &vnet, frame, now, out);
                }
                None => self.drops.bump(OwnDrop::NoRoute),
            }
        }
    }

    /// The remote port a tunnel frame enters the switch by: its origin's port for its VNI.
    fn origin_port(&self, header: &FrameHeader) -> Option<PortId> {
        let pi = self.peers.index_of_name(&PeerName(header.origin))?;
        let net = self.by_vni.get(&header.vni)?;
        self.peers.get(pi)?.ports.get(net).copied()
    }

    /// Switches a frame that came from a peer and writes it to its local egress ports.
    pub(crate) fn deliver(
        &mut self,
        ingress: PortId,
        vnet: &VnetHdr,
        frame: &[u8],
        now: Instant,
        out: &mut dyn Sink,
    ) {
        let verdict = self.switch.handle_frame(
            now,
            ingress,
            frame,
            &mut self.scratch.egress,
            &mut self.scratch.reply,
        );
        if verdict != Verdict::Forward {
            return;
        }
        let vnet_bytes = vnet.to_bytes();
        let one = [VnetFrame {
            vnet: &vnet_bytes,
            frame,
        }];
        let egress = std::mem::take(&mut self.scratch.egress);
        for &e in &egress {
            self.ports.send(e, &one, out, &mut self.drops);
        }
        self.scratch.egress = egress;
    }
}
