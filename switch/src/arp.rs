//! ARP snooping and the ARP proxy.
//!
//! Rules:
//! - Every well-formed ARP message teaches the neighbour table its sender binding (requests,
//!   replies, gratuitous ARP), from local and remote ports alike, except probes (sender
//!   0.0.0.0, RFC 5227), which carry no binding. A claim contradicting a static binding is
//!   refused and reported as [`SwitchEvent::NeighbourConflict`].
//! - A broadcast request from a *local* port is answered by the switch itself when the target
//!   address has a binding: static, or learned, fresh and with its MAC's location known. It
//!   is not answered when the owner sits on the ingress port (it answers itself) or is the
//!   asker. Answered requests are not flooded.
//! - Never answered, always flooded: gratuitous requests and probes (answering would tell the
//!   sender its address is taken: duplicate address detection), requests from remote ports
//!   (the origin host's switch would have answered if it knew), and unicast requests (a
//!   host checking that a neighbour is alive must reach the neighbour itself).

use learning::{NeighbourLearn, NeighbourOrigin, PortId};
use std::time::Instant;
use wire::Mac;
use wire::arp::{ArpOp, ArpPacket, ArpRepr};

use crate::events::SwitchEvent;
use crate::ports::{PortInfo, PortKind};
use crate::switch::Switch;

/// Smallest `reply` buffer in which the switch can build an ARP reply.
pub const REPLY_MIN_LEN: usize = wire::arp::FRAME_LEN;

impl Switch {
    /// Learns the sender binding of an ARP message.
    pub(crate) fn snoop_arp(
        &mut self,
        now: Instant,
        ingress: PortId,
        info: PortInfo,
        arp: &ArpPacket<'_>,
    ) {
        let (ip, mac) = (arp.sender_ip(), arp.sender_mac());
        if arp.is_probe() || !mac.is_valid_source() || ip.is_multicast() || ip.is_broadcast() {
            return;
        }
        if let NeighbourLearn::StaticConflict { static_mac } =
            self.neighbours.learn(now, info.network, ip, mac)
        {
            self.events.push(SwitchEvent::NeighbourConflict {
                network: info.network,
                ip,
                static_mac,
                claimed_by: mac,
                port: ingress,
            });
        }
    }

    /// Builds the proxy's reply into `reply` if the rules allow answering; returns its length.
    pub(crate) fn proxy_arp(
        &mut self,
        now: Instant,
        ingress: PortId,
        info: PortInfo,
        eth_src: Mac,
        arp: &ArpPacket<'_>,
        reply: &mut [u8],
    ) -> Option<usize> {
        if !self.config.arp_proxy
            || info.kind != PortKind::Local
            || arp.op() != ArpOp::Request
            || arp.is_probe()
            || arp.is_gratuitous()
        {
            return None;
        }
        let owner = self.neighbours.lookup(now, info.network, arp.target_ip())?;
        if owner.mac == arp.sender_mac() || owner.mac == eth_src {
            return None;
        }
        match self.macs.lookup(now, info.network, owner.mac) {
            Some(port) if port == ingress => return None,
            None if owner.origin == NeighbourOrigin::Learned => return None,
            _ => {}
        }
        match ArpRepr::reply_to(arp, owner.mac).write_frame(eth_src, reply) {
            Ok(n) => Some(n),
            Err(_) => {
                self.counters.arp_proxy_no_room += 1;
                None
            }
        }
    }
}
