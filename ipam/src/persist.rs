//! What the shell saves: our own state ([`PersistedState`], written with fsync before any
//! answer or gossip) and a cache of others' records ([`PeerCache`], written lazily).
//!
//! Contract: `PersistedState` holds everything this peer promised anyone — its record (at
//! the version it last gossiped or later) and which handle holds which address — so after
//! `kill -9` at any instant the peer never contradicts what it said. The peer cache only
//! speeds up a restart; losing it loses nothing (records come back by gossip).

use std::collections::BTreeMap;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::handle::Handle;
use crate::record::{PeerRecord, RingId};

/// The format version written; a newer file is refused rather than misread.
pub const PERSIST_FORMAT: u32 = 1;

/// This peer's own IPAM state (the shell stores it as JSON, atomically, with fsync).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistedState {
    /// [`PERSIST_FORMAT`].
    pub format: u32,
    /// Our record, exactly as gossiped.
    pub record: PeerRecord,
    /// The ring (its fingerprint is in `record.ring`).
    #[serde(default)]
    pub ring: Option<RingId>,
    /// Which handle holds which addresses (in our space, or granted by another owner).
    pub handles: BTreeMap<Handle, Vec<Ipv4Net>>,
    /// The next gift seq (monotonic across epochs).
    pub gift_seq: u64,
    /// The next space request / claim seq.
    pub request_seq: u64,
    /// Whether we have ever held another member's record (then a restart waits for the
    /// first exchange of records before allocating new addresses).
    #[serde(default)]
    pub seen_others: bool,
}

/// Others' records as last seen (the shell may write it lazily; see
/// [`crate::Ipam::peer_records_dirty`]).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PeerCache {
    /// [`PERSIST_FORMAT`].
    pub format: u32,
    /// The range the records are for (a cache for another range is ignored).
    pub range: Option<Ipv4Net>,
    /// The records.
    pub records: Vec<PeerRecord>,
}
