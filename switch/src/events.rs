//! Things the switch noticed that the control plane or the operator may want to know.
//!
//! Contract: the queue is bounded and allocated once; when it is full, further events are
//! counted as lost rather than stored, so a flapping MAC cannot grow memory.

use std::collections::VecDeque;
use std::net::Ipv4Addr;

use learning::{NetworkId, PortId};
use wire::Mac;

/// An event for [`crate::Switch::poll_event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwitchEvent {
    /// A MAC showed up on another port and moved there at once.
    MacMoved {
        /// Its network.
        network: NetworkId,
        /// The station.
        mac: Mac,
        /// Where it lived.
        from: PortId,
        /// Where it lives now.
        to: PortId,
    },
    /// An ARP message claimed an address that a static binding gives to another MAC: an
    /// address conflict or spoofing. The static binding was kept.
    NeighbourConflict {
        /// Its network.
        network: NetworkId,
        /// The contested address.
        ip: Ipv4Addr,
        /// The MAC the control plane vouches for.
        static_mac: Mac,
        /// The MAC that claimed it.
        claimed_by: Mac,
        /// Where the claim came from.
        port: PortId,
    },
}

/// A bounded FIFO of events.
#[derive(Debug)]
pub(crate) struct EventQueue {
    queue: VecDeque<SwitchEvent>,
    capacity: usize,
    lost: u64,
}

impl EventQueue {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            queue: VecDeque::with_capacity(capacity),
            capacity,
            lost: 0,
        }
    }

    pub(crate) fn push(&mut self, event: SwitchEvent) {
        if self.queue.len() < self.capacity {
            self.queue.push_back(event);
        } else {
            self.lost += 1;
        }
    }

    pub(crate) fn pop(&mut self) -> Option<SwitchEvent> {
        self.queue.pop_front()
    }

    pub(crate) fn lost(&self) -> u64 {
        self.lost
    }
}
