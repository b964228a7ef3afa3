//! Relaying as the last resort: which neighbour carries a peer's frames when no direct
//! data path to it works, also for a neighbour whose control connection lives while UDP
//! between us is blocked (its mesh route is the dead link itself), and how a broadcast
//! reaches a tree child behind such a link.

use std::time::Instant;

use mesh::PeerName;
use tunnel::PathState;
use tunnel::crypto::datagram::{FrameFlags, FrameHeader};
use tunnel::path::Path;

use crate::core::State;
use crate::egress::BROADCAST;
use crate::events::Event;
use crate::peers::Peer;

impl State {
    /// Feeds every selector the current monitor states and relays, choosing a relay for
    /// each peer that has (or is about to lose) no direct path. Returns the earliest
    /// moment a selector's choice may change without new input (a hold time running
    /// out): the selectors' part of the next deadline.
    pub(crate) fn refresh_selectors(&mut self, now: Instant) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        for pi in self.peers.indices() {
            let relay = self.peers.get(pi).and_then(|p| self.choose_relay(p));
            let Some(p) = self.peers.get_mut(pi) else {
                continue;
            };
            p.relay = relay;
            p.update_selector(now, relay.is_some());
            let peer = p.name;
            let mut changes = arrayvec::ArrayVec::<_, 8>::new();
            while let Some(change) = p.selector.poll_event() {
                let _ = changes.try_push(change);
            }
            if let Some(t) = p.selector.poll_timeout() {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
            for change in changes {
                self.event(Event::PathChanged {
                    peer,
                    relay,
                    change,
                });
            }
        }
        next
    }

    /// The neighbour to relay `p`'s frames through, if `p` needs one: for a peer beyond
    /// our neighbours, the mesh's next hop (or another common neighbour); for a neighbour
    /// whose direct paths fail, a common neighbour of us both. Only a neighbour whose
    /// tunnel from us works can relay (relayed frames travel in the tunnel).
    fn choose_relay(&self, p: &Peer) -> Option<PeerName> {
        let routes = self.routes.as_ref()?;
        let dst = p.name?;
        let hop = routes.next_hop(dst)?;
        let direct = matches!(p.selector.choice().path, Path::Vxlan | Path::Encrypted);
        if hop == dst && direct && !p.direct_paths_down() {
            return None;
        }
        let usable = |w: PeerName| {
            self.peers
                .index_of_name(&w)
                .and_then(|i| self.peers.get(i))
                .and_then(|q| q.tunnel.as_ref())
                .is_some_and(|t| !matches!(t.monitor.state(), PathState::Down { .. }))
        };
        routes.relay(dst, usable)
    }

    /// The neighbour (peer index) tunnel frames for `dst` go through: the relay chosen for
    /// `dst` while it is relayed, else the mesh's next hop.
    pub(crate) fn next_hop(&self, dst: PeerName) -> Option<usize> {
        let relay = self
            .peers
            .index_of_name(&dst)
            .and_then(|i| self.peers.get(i))
            .filter(|p| p.path() == Path::Relayed)
            .and_then(|p| p.relay);
        let hop = match relay {
            Some(r) => r,
            None => self.routes.as_ref()?.next_hop(dst)?,
        };
        self.peers.index_of_name(&hop)
    }

    /// Where a tunnel frame for neighbour `via` really goes: unchanged, unless it is a
    /// broadcast for a tree child that is relayed — then it goes to the child's relay,
    /// addressed to the child and marked [`FrameFlags::SUBTREE`] so the child floods it
    /// on down the tree.
    pub(crate) fn around_dead_link(
        &self,
        via: usize,
        header: &FrameHeader,
    ) -> (usize, FrameHeader) {
        if header.destination != BROADCAST.0 {
            return (via, *header);
        }
        let Some(child) = self.peers.get(via).filter(|p| p.path() == Path::Relayed) else {
            return (via, *header);
        };
        let (Some(name), Some(relay)) = (child.name, child.relay) else {
            return (via, *header);
        };
        match self.peers.index_of_name(&relay) {
            Some(r) => (
                r,
                FrameHeader {
                    destination: name.0,
                    flags: header.flags.with(FrameFlags::SUBTREE),
                    ..*header
                },
            ),
            None => (via, *header),
        }
    }
}
