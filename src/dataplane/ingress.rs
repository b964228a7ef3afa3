//! Frames arriving from other hosts: VXLAN datagrams and encrypted tunnel datagrams,
//! decapsulated or opened, heartbeats consumed, frames switched to local ports, relayed
//! towards their destination, or forwarded down the origin's broadcast tree.

use std::net::SocketAddr;
use std::time::Instant;

use learning::PortId;
use switch::Verdict;
use tunnel::crypto::datagram::{self, ClearHeader, DatagramKind, FrameFlags, FrameHeader};
use tunnel::{Coalescer, Heartbeat};
use wire::VnetHdr;

use super::core::Core;
use super::egress::BROADCAST;
use crate::io::TxFrame;

impl Core {
    /// Decapsulates one VXLAN datagram and finds the remote port of (peer, network) its
    /// frame came in on; heartbeats are consumed here.
    pub(super) fn vxlan_datagram<'a>(
        &mut self,
        src: SocketAddr,
        datagram: &'a [u8],
        now: Instant,
    ) -> Option<(PortId, &'a [u8])> {
        let Some(pi) = self.peers.index_of_ip(src.ip()) else {
            self.counters.bump("drop", "vxlan_unknown_peer");
            return None;
        };
        let (vni, inner) = match tunnel::decap(datagram) {
            Ok(x) => x,
            Err(e) => {
                self.counters.bump("drop", e.name());
                return None;
            }
        };
        let Some(peer) = self.peers.get_mut(pi) else {
            self.counters.bump("drop", "vxlan_unknown_peer");
            return None;
        };
        if !peer.vxlan_allowed() {
            // A password is set and this peer's subnet is not trusted: cleartext from it
            // could be anyone's.
            self.counters.bump("drop", "vxlan_not_allowed");
            return None;
        }
        peer.counters.rx_frames += 1;
        peer.counters.rx_bytes += datagram.len() as u64;
        if tunnel::is_heartbeat(inner) {
            match Heartbeat::decode(inner) {
                Ok(hb) => {
                    if peer.name.is_none() {
                        peer.name = Some(hb.sender);
                    }
                    peer.vxlan.handle_heartbeat(now, &hb);
                    self.timers_now = true;
                }
                Err(_) => self.counters.bump("drop", "heartbeat_malformed"),
            }
            return None;
        }
        let Some(&net) = self.by_vni.get(&vni.get()) else {
            self.counters.bump("drop", "vxlan_unknown_vni");
            return None;
        };
        match peer.ports.get(&net) {
            Some(&p) => Some((p, inner)),
            None => {
                self.counters.bump("drop", "vxlan_unknown_vni");
                None
            }
        }
    }

    /// Opens one tunnel datagram (copied into scratch) and handles what it carries.
    pub(super) fn tunnel_datagram(
        &mut self,
        datagram: &[u8],
        coalescer: &mut Coalescer,
        now: Instant,
    ) {
        let index = match ClearHeader::parse(datagram) {
            Ok(h) => h.receiver_index,
            Err(e) => {
                self.counters.bump("drop", e.name());
                return;
            }
        };
        let Some(pi) = self.peers.index_of_session(index) else {
            self.counters.bump("drop", "tunnel_unknown_session");
            return;
        };
        let mut buf = std::mem::take(&mut self.rx_tun);
        buf.clear();
        buf.extend_from_slice(datagram);
        self.open_tunnel_datagram(pi, &mut buf, coalescer, now);
        self.rx_tun = buf;
    }

    fn open_tunnel_datagram(
        &mut self,
        pi: usize,
        buf: &mut [u8],
        coalescer: &mut Coalescer,
        now: Instant,
    ) {
        let len = buf.len() as u64;
        // A session index outlives its tunnel only between a teardown and the index
        // map's update; what arrives in that gap is still a counted drop.
        let Some(peer) = self.peers.get_mut(pi) else {
            self.counters.bump("drop", "tunnel_unknown_session");
            return;
        };
        let Some(tunnel) = peer.tunnel.as_mut() else {
            self.counters.bump("drop", "tunnel_unknown_session");
            return;
        };
        let opened = match tunnel.session.open(now, buf) {
            Ok(o) => o,
            Err(e) => {
                self.counters.bump("drop", e.name());
                return;
            }
        };
        peer.counters.rx_bytes += len;
        match opened.kind {
            DatagramKind::Heartbeat => match datagram::parse_heartbeat(opened.plaintext) {
                Ok(hb) => {
                    tunnel.monitor.handle_heartbeat(now, &hb);
                    self.timers_now = true;
                }
                Err(e) => self.counters.bump("drop", e.name()),
            },
            DatagramKind::Frames => {
                let plaintext: &[u8] = opened.plaintext;
                for record in datagram::frames(plaintext) {
                    match record {
                        Ok((header, frame)) => self.tunnel_frame(&header, frame, coalescer, now),
                        Err(e) => {
                            self.counters.bump("drop", e.name());
                            break;
                        }
                    }
                }
                if let Some(p) = self.peers.get_mut(pi) {
                    p.counters.rx_frames += 1;
                }
            }
        }
    }

    /// One frame out of the tunnel: delivered here, relayed on, or both (a broadcast, or a
    /// broadcast brought here by a relay to flood on down the origin's tree).
    fn tunnel_frame(
        &mut self,
        header: &FrameHeader,
        frame: &[u8],
        coalescer: &mut Coalescer,
        now: Instant,
    ) {
        let here = header.destination == self.local_name;
        let broadcast = header.destination == BROADCAST;
        if here || broadcast {
            match self.origin_port(header) {
                Some(port) => coalescer.push(
                    u64::from(port.0),
                    frame,
                    &mut |tag, vnet: &VnetHdr, f: &[u8]| {
                        self.deliver(PortId(tag as u32), vnet, f, now);
                    },
                ),
                None => self.counters.bump("drop", "tunnel_unknown_origin"),
            }
        }
        let subtree = here && header.flags.contains(FrameFlags::SUBTREE);
        if here && !subtree {
            return;
        }
        let Ok(mut onward) = header.relayed() else {
            self.counters.bump("drop", "tunnel_ttl_exceeded");
            return;
        };
        let Some(routes) = self.routes.clone() else {
            self.counters.bump("drop", "no_route");
            return;
        };
        let vnet = VnetHdr::NONE;
        if broadcast || subtree {
            onward.destination = BROADCAST;
            onward.flags = onward.flags.without(FrameFlags::SUBTREE);
            let me = mesh::PeerName(self.local_name);
            for child in routes.broadcast_children(mesh::PeerName(header.origin), me) {
                if let Some(ci) = self.peers.index_of_name(&child.0) {
                    self.forward_tunnel(ci, &onward, &vnet, frame, now);
                }
            }
        } else {
            match self.next_hop(header.destination) {
                Some(via) => {
                    self.counters.bump("relay", "frames");
                    self.forward_tunnel(via, &onward, &vnet, frame, now);
                }
                None => self.counters.bump("drop", "no_route"),
            }
        }
    }

    /// The remote port a tunnel frame enters the switch by: its origin's port for its VNI.
    fn origin_port(&self, header: &FrameHeader) -> Option<PortId> {
        let pi = self.peers.index_of_name(&header.origin)?;
        let net = self.by_vni.get(&header.vni.get())?;
        self.peers.get(pi)?.ports.get(net).copied()
    }

    /// Switches a frame that came from a peer and writes it to its local egress ports.
    pub(super) fn deliver(&mut self, ingress: PortId, vnet: &VnetHdr, frame: &[u8], now: Instant) {
        let verdict =
            self.switch
                .handle_frame(now, ingress, frame, &mut self.egress, &mut self.reply);
        if verdict != Verdict::Forward {
            return;
        }
        let vnet_bytes = vnet.to_bytes();
        let egress = std::mem::take(&mut self.egress);
        for &e in &egress {
            if let Some(slot) = self.ports.local_mut(e) {
                slot.send(&[TxFrame {
                    vnet: &vnet_bytes,
                    frame,
                }]);
            }
        }
        self.egress = egress;
    }
}
