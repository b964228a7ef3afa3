//! `weft status ipam` and `/metrics` figures: plain serde data, computed by
//! [`crate::Ipam::status`].

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use mesh::PeerName;
use serde::{Deserialize, Serialize};

use crate::error::WaitingFor;
use crate::handle::{Handle, RequestId};
use crate::record::RingId;

/// The IPAM state of this peer and what it knows of the others.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IpamStatus {
    /// This peer.
    pub name: PeerName,
    /// The allocation range.
    pub range: Ipv4Net,
    /// Addresses in the range.
    pub range_size: u64,
    /// The default subnet.
    pub default_subnet: Ipv4Net,
    /// `--ipalloc-init` as configured (`consensus=3`, `seed=...`, `observer`).
    pub mode: String,
    /// The ring, once decided.
    pub ring: Option<RingId>,
    /// What this peer can do now.
    pub state: IpamState,
    /// Every peer with a record, ourselves included.
    pub peers: Vec<PeerIpamStatus>,
    /// Addresses owned by peers we cannot reach (the `rmpeer` candidates).
    pub unreachable_owned: u64,
    /// A hint for the user, when there is one (e.g. "`weft rmpeer NAME` if it is gone").
    pub hint: Option<String>,
    /// Allocations waiting.
    pub pending: Vec<PendingStatus>,
    /// Removals in progress.
    pub takeovers: Vec<TakeoverStatus>,
    /// Neighbours refused (range or ring mismatch), with the reason.
    pub refused: Vec<RefusedStatus>,
    /// Addresses our containers hold that their owner refused to us after a removal:
    /// another container has the same address (detach one of them).
    pub conflicts: Vec<ConflictStatus>,
    /// Records dropped as malformed or inconsistent since start.
    pub dropped_records: u64,
    /// Messages dropped as malformed since start.
    pub dropped_messages: u64,
}

/// What this peer can do now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum IpamState {
    /// Allocates (from own space at once, else by asking).
    Ready,
    /// Waiting for the initial consensus.
    AwaitingConsensus {
        /// Electors needed.
        quorum: usize,
        /// Electors configured.
        electors: usize,
        /// Electors heard.
        heard: Vec<PeerName>,
        /// Electors not heard yet.
        missing: usize,
    },
    /// An observer that has not learnt the ring yet.
    AwaitingRing,
    /// A restarted peer waiting for its first exchange of records.
    WaitingForFirstSync,
    /// Allocations wait for space from these donors.
    WaitingForSpace {
        /// The donors asked.
        from: Vec<PeerName>,
    },
    /// This peer was removed by `rmpeer` (it rejoined with no space).
    Removed {
        /// Its heir.
        heir: PeerName,
    },
}

/// One peer as this peer sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerIpamStatus {
    /// The peer.
    pub name: PeerName,
    /// Whether it is us.
    pub is_self: bool,
    /// Its epoch (grows each time it rejoined after a removal).
    pub epoch: u32,
    /// Addresses it owns.
    pub owned: u64,
    /// Addresses allocated there.
    pub used: u64,
    /// `owned` as % of the range.
    pub owned_pct: f64,
    /// `used` as % of the range.
    pub used_pct: f64,
    /// Reachable through the mesh now.
    pub reachable: bool,
    /// Removed by `rmpeer` (awaiting its heir, or taken over).
    pub removed: bool,
    /// An observer.
    pub observer: bool,
}

/// A waiting allocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingStatus {
    /// Its id.
    pub request: RequestId,
    /// Who asked.
    pub handle: Handle,
    /// The subnet (allocation) or the address (claim).
    pub subnet: Ipv4Net,
    /// For a claim, the address.
    pub addr: Option<Ipv4Addr>,
    /// What it waits for, in words.
    pub waiting_for: String,
    /// The same, structured.
    pub waiting: WaitingFor,
    /// Milliseconds until its deadline.
    pub deadline_in_ms: u64,
}

/// A removal in progress (or waiting on its barrier).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TakeoverStatus {
    /// The removed peer.
    pub removed: PeerName,
    /// Its epoch.
    pub epoch: u32,
    /// The winning heir.
    pub heir: PeerName,
    /// Addresses it owned.
    pub addresses: u64,
    /// Members whose ack is missing (the heir waits for them).
    pub waiting_for: Vec<PeerName>,
    /// Whether the heir has taken it over.
    pub complete: bool,
}

/// An address held here and handed out elsewhere too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConflictStatus {
    /// The address.
    pub addr: Ipv4Addr,
    /// The handle holding it here.
    pub handle: Option<Handle>,
    /// The peer that gave it to another container.
    pub owner: PeerName,
}

/// A neighbour refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedStatus {
    /// The neighbour.
    pub peer: PeerName,
    /// Why, in words.
    pub reason: String,
}
