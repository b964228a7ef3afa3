//! Per-peer IPAM records: the only state that travels, each written only by its peer.
//!
//! Contract:
//! - A [`PeerRecord`] is written only by `record.peer`. Every protocol step — a gift of
//!   space, a request for space, a claim, a vote, a tombstone, an ack — is a field in the
//!   acting peer's own record, and the other side answers in *its* record.
//! - Records of one peer are totally ordered by `(epoch, version)` ([`PeerRecord::stamp`]);
//!   merging keeps the greater, so gossip is a last-writer-wins map: commutative,
//!   idempotent and insensitive to loss, duplication and reordering.
//! - [`PeerRecord::validate`] checks the invariants a well-behaved owner keeps (sets inside
//!   the range, `used ⊆ owned`, bounded lists); a record that fails is dropped and counted,
//!   never merged.

use std::fmt;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use mesh::PeerName;
use serde::{Deserialize, Serialize};

use crate::addr_set::{AddrRange, AddrSet};
use crate::limits;

/// The identity of a ring: the peers it was initialised with and a nonce that tells two
/// initialisations with the same peers apart (a peer launched alone twice after a reset).
///
/// Two peers with different `RingId`s refuse each other: their space was divided
/// independently, so merging would hand out addresses twice.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RingId {
    /// The initial members, sorted and distinct; each starts with an equal share.
    pub members: Vec<PeerName>,
    /// 0 for `seed=` rings (every peer computes the same id from the same list); random
    /// otherwise.
    pub nonce: u64,
}

/// A ring's 64-bit fingerprint, carried in every record instead of the whole
/// [`RingId`] (whose member list can be long): FNV-1a over the members' bytes and the
/// nonce, stable across versions and platforms.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RingTag(pub u64);

impl fmt::Display for RingTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for RingTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl RingId {
    /// The fingerprint records carry.
    pub fn tag(&self) -> RingTag {
        const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
        const PRIME: u64 = 0x0000_0100_0000_01b3;
        let bytes = self
            .members
            .iter()
            .flat_map(|m| m.0)
            .chain(self.nonce.to_be_bytes());
        RingTag(bytes.fold(OFFSET, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME)))
    }

    /// A ring from `members` (sorted and deduplicated here).
    pub fn new(mut members: Vec<PeerName>, nonce: u64) -> Self {
        members.sort_unstable();
        members.dedup();
        Self { members, nonce }
    }

    /// The share of `range` that `peer` starts with: the `i`-th of `members.len()`
    /// contiguous, nearly equal pieces in name order; empty for non-members.
    pub fn initial_share(&self, range: Ipv4Net, peer: PeerName) -> AddrSet {
        let Ok(i) = self.members.binary_search(&peer) else {
            return AddrSet::new();
        };
        let whole = AddrRange::of_net(range);
        let size = whole.len();
        let k = self.members.len() as u64;
        let i = i as u64;
        let lo = u64::from(whole.start) + size * i / k;
        let hi = u64::from(whole.start) + size * (i + 1) / k;
        match (u32::try_from(lo), u32::try_from(hi.saturating_sub(1))) {
            (Ok(lo), Ok(last)) if hi > u64::from(lo) => AddrRange::new(lo, last)
                .map(AddrSet::from_range)
                .unwrap_or_default(),
            _ => AddrSet::new(),
        }
    }
}

impl fmt::Display for RingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, m) in self.members.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{m}")?;
        }
        write!(f, "] (ring {:016x})", self.nonce)
    }
}

impl fmt::Debug for RingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A Paxos ballot: ordered by round, then by proposer name (so ballots are unique).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Ballot {
    /// The round.
    pub round: u64,
    /// Who proposes it.
    pub proposer: PeerName,
}

/// A ballot with the value voted for in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    /// The ballot.
    pub ballot: Ballot,
    /// The proposed ring.
    pub value: RingId,
}

/// This peer's part in the single-decree Paxos that picks the initial ring.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PaxosState {
    /// Acceptor: the highest ballot promised (phase 1b).
    pub promised: Option<Ballot>,
    /// Acceptor: the last vote accepted (phase 2b).
    pub accepted: Option<Vote>,
    /// Proposer: the ballot being prepared (phase 1a).
    pub prepare: Option<Ballot>,
    /// Proposer: the value asked to be accepted (phase 2a).
    pub proposal: Option<Vote>,
}

impl PaxosState {
    /// Whether nothing has happened yet.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Space in transit: `block` given by the record's peer to `to` (at `to_epoch`).
///
/// It belongs to the recipient from the moment it is written: the recipient (or, if it
/// is removed, its heir) adopts it; the giver drops the entry when it sees the adoption.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gift {
    /// The addresses given (one contiguous block).
    pub block: AddrRange,
    /// The recipient.
    pub to: PeerName,
    /// The recipient's epoch the gift is for.
    pub to_epoch: u32,
    /// The giver's gift counter (monotonic across the giver's epochs).
    pub seq: u64,
}

/// "Please give me space in `subnet`", asked of `donor`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpaceRequest {
    /// Whom we ask.
    pub donor: PeerName,
    /// Where we need space.
    pub subnet: Ipv4Net,
    /// Our request counter; a donor answers each seq once.
    pub seq: u64,
}

/// "I have no space for your request `seq`", written by a donor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoSpace {
    /// The requester.
    pub requester: PeerName,
    /// The request answered.
    pub seq: u64,
}

/// "Please grant me `addr`": a claim of an explicit address in someone else's space.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// The address.
    pub addr: Ipv4Addr,
    /// Our claim counter (a re-claim after a release is a new claim).
    pub seq: u64,
}

/// An owner's answer to a [`Claim`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// The claimer.
    pub claimer: PeerName,
    /// The claimer's epoch.
    pub claimer_epoch: u32,
    /// The address.
    pub addr: Ipv4Addr,
    /// The claim answered.
    pub seq: u64,
    /// Granted (then `addr` is in the owner's `used`) or refused.
    pub granted: bool,
}

/// "`peer` at `epoch` is removed; I offer myself as heir" (written by `rmpeer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Tombstone {
    /// The removed peer.
    pub peer: PeerName,
    /// Its epoch at removal.
    pub epoch: u32,
}

/// "I know `peer`@`epoch` is removed, `heir` wins, and I hold its record at
/// `seen_version`": one member's part of the takeover barrier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// The removed peer.
    pub peer: PeerName,
    /// Its epoch.
    pub epoch: u32,
    /// The winning heir as this member sees it.
    pub heir: PeerName,
    /// The version of the removed peer's record (at that epoch) this member holds.
    pub seen_version: u64,
}

/// A takeover this peer completed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inherited {
    /// The removed peer.
    pub peer: PeerName,
    /// Its epoch.
    pub epoch: u32,
    /// The version of its record the takeover used.
    pub version: u64,
    /// Per giver, the highest gift seq to the removed peer that we adopted in its place.
    pub gifts: Vec<(PeerName, u64)>,
}

/// Addresses in our `used` that belong to a removed peer's containers: never handed out
/// again until it comes back (and re-claims them) or `rmpeer --free-addresses`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reserved {
    /// The removed peer.
    pub peer: PeerName,
    /// Its epoch.
    pub epoch: u32,
    /// The addresses.
    pub addrs: AddrSet,
}

/// One peer's IPAM state as everyone sees it (see the module contract).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerRecord {
    /// The writer.
    pub peer: PeerName,
    /// Grows when a removed peer rejoins: a new incarnation with no space.
    pub epoch: u32,
    /// Bumped on every change; persisted, so it never goes back.
    pub version: u64,
    /// The allocation range (a record with another range is refused).
    pub range: Ipv4Net,
    /// The fingerprint of the ring this peer belongs to (`None` until consensus decides
    /// or it learns one); the ring itself travels in the hello.
    pub ring: Option<RingTag>,
    /// Owns nothing by choice; never votes.
    pub observer: bool,
    /// An allocation here waits for a ring (makes electors start consensus).
    pub wants_ring: bool,
    /// The consensus size this elector was configured with (0: not an elector).
    pub electors: u16,
    /// Space this peer owns.
    pub owned: AddrSet,
    /// Allocated addresses (`⊆ owned`): own handles, grants to claimers, reservations.
    pub used: AddrSet,
    /// Parts of `used` kept for removed peers' containers.
    pub reserved: Vec<Reserved>,
    /// Space in transit to other peers.
    pub giving: Vec<Gift>,
    /// Per giver, the highest gift seq adopted.
    pub adopted: Vec<(PeerName, u64)>,
    /// Outstanding requests for space.
    pub space_requests: Vec<SpaceRequest>,
    /// Refusals of others' requests.
    pub no_space: Vec<NoSpace>,
    /// Explicit addresses asked of their owners.
    pub claims: Vec<Claim>,
    /// Answers to others' claims in our space.
    pub grants: Vec<Grant>,
    /// `rmpeer`s issued here.
    pub tombstones: Vec<Tombstone>,
    /// Our view of each takeover (the barrier).
    pub acks: Vec<Ack>,
    /// Takeovers completed here.
    pub inherited: Vec<Inherited>,
    /// `rmpeer --free-addresses` asked here: release the removed peer's reserved addresses.
    pub release_reserved: Vec<Tombstone>,
    /// Initial consensus.
    pub paxos: PaxosState,
    /// Our own earlier epochs' final records, kept until their heir has taken them over.
    pub retired: Vec<Self>,
}

/// The `(epoch, version)` merge order of one peer's records.
pub type Stamp = (u32, u64);

/// Why a record was refused on merge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The record is for another allocation range.
    #[error("record of {peer} is for range {theirs}, ours is {ours}")]
    Range {
        /// Its writer.
        peer: PeerName,
        /// Our range.
        ours: Ipv4Net,
        /// Its range.
        theirs: Ipv4Net,
    },
    /// An invariant of a well-behaved writer is broken.
    #[error("record of {peer} is inconsistent: {what}")]
    Invalid {
        /// Its writer.
        peer: PeerName,
        /// What is wrong.
        what: &'static str,
    },
}

impl PeerRecord {
    /// A fresh record: nothing owned, version 0 (the first write makes it 1).
    pub fn new(peer: PeerName, range: Ipv4Net) -> Self {
        Self {
            peer,
            epoch: 0,
            version: 0,
            range,
            ring: None,
            observer: false,
            wants_ring: false,
            electors: 0,
            owned: AddrSet::new(),
            used: AddrSet::new(),
            reserved: Vec::new(),
            giving: Vec::new(),
            adopted: Vec::new(),
            space_requests: Vec::new(),
            no_space: Vec::new(),
            claims: Vec::new(),
            grants: Vec::new(),
            tombstones: Vec::new(),
            acks: Vec::new(),
            inherited: Vec::new(),
            release_reserved: Vec::new(),
            paxos: PaxosState::default(),
            retired: Vec::new(),
        }
    }

    /// The merge order.
    pub fn stamp(&self) -> Stamp {
        (self.epoch, self.version)
    }

    /// The highest gift seq adopted from `giver`.
    pub fn adopted_from(&self, giver: PeerName) -> u64 {
        self.adopted
            .iter()
            .find(|(g, _)| *g == giver)
            .map_or(0, |&(_, s)| s)
    }

    /// This record's state at `epoch`: itself, or the retired record of that epoch.
    pub fn at_epoch(&self, epoch: u32) -> Option<&Self> {
        if self.epoch == epoch {
            return Some(self);
        }
        self.retired.iter().find(|r| r.epoch == epoch)
    }

    /// Space this peer can allocate from: `owned \ used`.
    pub fn free(&self) -> AddrSet {
        self.owned.subtract(&self.used)
    }

    /// Checks the record against our `range` and the invariants of a correct writer.
    pub fn validate(&self, range: Ipv4Net) -> Result<(), RecordError> {
        if self.range != range {
            return Err(RecordError::Range {
                peer: self.peer,
                ours: range,
                theirs: self.range,
            });
        }
        self.validate_inner(range, true)
    }

    fn validate_inner(&self, range: Ipv4Net, top: bool) -> Result<(), RecordError> {
        let bad = |what| {
            Err(RecordError::Invalid {
                peer: self.peer,
                what,
            })
        };
        if self.range != range {
            return bad("a retired record has another range");
        }
        let whole = AddrSet::from_net(range);
        if !self.owned.is_subset(&whole) {
            return bad("owned space outside the range");
        }
        if !self.used.is_subset(&self.owned) {
            return bad("used addresses outside owned space");
        }
        if self.owned.run_count() > limits::MAX_RUNS || self.used.run_count() > limits::MAX_RUNS {
            return bad("too many address runs");
        }
        for r in &self.reserved {
            if !r.addrs.is_subset(&self.used) {
                return bad("reserved addresses not in used");
            }
        }
        for g in &self.grants {
            if g.granted && !self.used.contains(u32::from(g.addr)) {
                return bad("granted address not in used");
            }
        }
        let gifts = AddrSet::from_unsorted(self.giving.iter().map(|g| g.block).collect());
        if gifts.len() != self.giving.iter().map(|g| g.block.len()).sum::<u64>() {
            return bad("overlapping gifts");
        }
        if !gifts.is_disjoint(&self.owned) || !gifts.is_subset(&whole) {
            return bad("gift overlaps owned space or leaves the range");
        }
        if self.giving.len() > limits::MAX_LIST
            || self.adopted.len() > limits::MAX_PEERS
            || self.space_requests.len() > limits::MAX_SPACE_REQUESTS
            || self.no_space.len() > limits::MAX_PEERS
            || self.claims.len() > limits::MAX_LIST
            || self.grants.len() > limits::MAX_LIST
            || self.tombstones.len() > limits::MAX_PEERS
            || self.acks.len() > limits::MAX_PEERS
            || self.inherited.len() > limits::MAX_PEERS
            || self.release_reserved.len() > limits::MAX_PEERS
            || self.reserved.len() > limits::MAX_PEERS
        {
            return bad("a list exceeds its bound");
        }
        if top {
            if self.retired.len() > limits::MAX_RETIRED {
                return bad("too many retired epochs");
            }
            for r in &self.retired {
                if r.peer != self.peer || r.epoch >= self.epoch || !r.retired.is_empty() {
                    return bad("retired record of another peer or a later epoch");
                }
                r.validate_inner(range, false)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(i: u8) -> PeerName {
        PeerName([2, 0, 0, 0, 0, i])
    }

    #[test]
    fn initial_shares_tile_the_range() {
        for k in 1..=7u8 {
            let ring = RingId::new((1..=k).rev().map(name).collect(), 9);
            let range: Ipv4Net = "10.0.0.0/29".parse().unwrap();
            let mut all = AddrSet::new();
            let mut total = 0;
            for i in 1..=k {
                let share = ring.initial_share(range, name(i));
                assert!(share.is_disjoint(&all));
                total += share.len();
                all = all.union(&share);
            }
            assert_eq!(total, 8);
            assert_eq!(all, AddrSet::from_net(range));
            assert!(ring.initial_share(range, name(99)).is_empty());
        }
        let ring = RingId::new(vec![name(1)], 0);
        let full: Ipv4Net = "0.0.0.0/0".parse().unwrap();
        assert_eq!(ring.initial_share(full, name(1)).len(), 1 << 32);
    }

    #[test]
    fn the_ring_tag_is_stable_and_tells_rings_apart() {
        // Peers of different versions compare tags: this value must never change.
        let ring = RingId::new(vec![name(2), name(1)], 0x1234);
        assert_eq!(ring.tag(), RingTag(0x6d45_e778_de5d_e4ce), "{}", ring.tag());
        assert_ne!(
            RingId::new(vec![name(1)], 1).tag(),
            RingId::new(vec![name(1)], 2).tag()
        );
        assert_ne!(
            RingId::new(vec![name(1)], 0).tag(),
            RingId::new(vec![name(2)], 0).tag()
        );
    }

    #[test]
    fn validate_catches_broken_invariants() {
        let range: Ipv4Net = "10.0.0.0/24".parse().unwrap();
        let mut rec = PeerRecord::new(name(1), range);
        rec.owned = AddrSet::from_net("10.0.0.0/25".parse().unwrap());
        rec.used.insert(u32::from(Ipv4Addr::new(10, 0, 0, 1)));
        assert!(rec.validate(range).is_ok());
        let other: Ipv4Net = "10.0.1.0/24".parse().unwrap();
        assert!(matches!(
            rec.validate(other),
            Err(RecordError::Range { .. })
        ));
        let mut bad = rec.clone();
        bad.used.insert(u32::from(Ipv4Addr::new(10, 0, 0, 200)));
        assert!(bad.validate(range).is_err());
        let mut bad = rec.clone();
        bad.giving.push(Gift {
            block: AddrRange::single(u32::from(Ipv4Addr::new(10, 0, 0, 3))),
            to: name(2),
            to_epoch: 0,
            seq: 1,
        });
        assert!(
            bad.validate(range).is_err(),
            "a gift must not still be owned"
        );
        let mut bad = rec.clone();
        bad.retired.push(rec.clone());
        assert!(bad.validate(range).is_err(), "retired epoch must be older");
    }
}
