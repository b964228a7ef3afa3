//! The topology CRDT: one record per peer, owned and versioned by that peer.
//!
//! Contract:
//! - Only the owner changes its record; everyone else replaces a stored record only with
//!   one that is newer by `(version, uid)`. Merging is therefore commutative, associative
//!   and idempotent, and [`Topology::merge`] reports exactly the names whose stored record
//!   changed (the delta that is worth re-gossiping).
//! - Our own record is never replaced from outside: hearing our name with a version at
//!   least ours (an older incarnation's record still circulating) bumps our version above
//!   it, so our record wins everywhere once re-announced.
//! - [`Topology::collect_garbage`] keeps exactly the records reachable from us by following
//!   the connections records list (one-directional, so a record naming a brand-new peer
//!   keeps it until the new peer's own record arrives); names listed by a kept record but
//!   without a record of their own are *placeholders*. When no connection was removed
//!   since the previous pass, reachability can only have grown, and the pass only explores
//!   from what changed (O(change) instead of O(n + e)); otherwise it recomputes fully.
//! - [`Topology::fingerprint`] is an order-independent digest of the `(name, uid, version)`
//!   set, maintained incrementally, so two nodes can compare views in O(1).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

use crate::peer::PeerName;
use crate::protocol::{ConnectionRecord, PeerDigest, PeerRecord};

/// What merging one incoming record did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeResult {
    /// Older or equal to what we hold: nothing to do, nothing to gossip.
    Unchanged,
    /// A peer we did not hold a record for.
    Added {
        /// Whether the graph of connections changed (it did if the record lists any).
        graph_changed: bool,
    },
    /// A newer record replaced the stored one.
    Replaced {
        /// Whether its connection list differs from the replaced one.
        graph_changed: bool,
    },
    /// The record was an older incarnation of us at a version ≥ ours: we bumped our own
    /// version above it and must re-announce.
    OwnBumped,
}

impl MergeResult {
    /// Whether the stored state changed (and so must be gossiped on).
    pub fn changed(self) -> bool {
        !matches!(self, Self::Unchanged)
    }

    /// Whether routes and reachability may differ now.
    pub fn graph_changed(self) -> bool {
        matches!(
            self,
            Self::Added {
                graph_changed: true
            } | Self::Replaced {
                graph_changed: true
            }
        )
    }
}

/// The merged view of every reachable peer's record, including our own.
#[derive(Debug, Clone)]
pub struct Topology {
    me: PeerName,
    own: PeerRecord,
    /// Everyone else's records (never contains `me`).
    records: BTreeMap<PeerName, PeerRecord>,
    placeholders: BTreeSet<PeerName>,
    /// BFS order from us over listed connections, refreshed by garbage collection; used
    /// to send records parents-first so any prefix of a batch stays reachable.
    rank: HashMap<PeerName, u32>,
    fingerprint: u64,
    /// Records added or that gained connections since the last pass.
    grown: Vec<PeerName>,
    /// Records added since the last pass (judged reachable or not by the next pass).
    added: Vec<PeerName>,
    /// Whether any connection disappeared since the last pass.
    shrunk: bool,
}

/// What a garbage-collection pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcOutcome {
    /// Records dropped as unreachable, in name order.
    pub removed: Vec<PeerName>,
    /// Whether the pass recomputed everything (connections were removed), rather than
    /// only exploring from `grown`.
    pub full: bool,
    /// Kept records that were added or gained connections since the previous pass.
    pub grown: Vec<PeerName>,
}

/// Whether the connection list `new` gained an entry or lost a peer compared to `old`.
fn connection_delta(old: &[ConnectionRecord], new: &[ConnectionRecord]) -> (bool, bool) {
    let gained = new.iter().any(|c| !old.contains(c));
    let lost = old.iter().any(|o| !new.iter().any(|c| c.peer == o.peer));
    (gained, lost)
}

/// Whether `(version, uid)` of `a` beats `b`.
fn newer(a_version: u64, a_uid: u64, b_version: u64, b_uid: u64) -> bool {
    (a_version, a_uid) > (b_version, b_uid)
}

/// A well-mixed 64-bit hash of a record's identity (splitmix64 finaliser); deterministic
/// across processes so fingerprints can be compared between hosts.
pub(crate) fn mix(name: PeerName, uid: u64, version: u64) -> u64 {
    fn splitmix(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    let [a, b, c, d, e, f] = name.0;
    let name = u64::from_be_bytes([0, 0, a, b, c, d, e, f]);
    splitmix(name ^ splitmix(uid ^ splitmix(version)))
}

impl Topology {
    /// A view holding only our own record (version as given, usually 1).
    pub fn new(own: PeerRecord) -> Self {
        let me = own.name;
        let fingerprint = mix(me, own.uid, own.version);
        let mut rank = HashMap::new();
        rank.insert(me, 0);
        Self {
            me,
            own,
            records: BTreeMap::new(),
            placeholders: BTreeSet::new(),
            rank,
            fingerprint,
            grown: Vec::new(),
            added: Vec::new(),
            // The first pass is a full one (our record may arrive with connections).
            shrunk: true,
        }
    }

    /// Our name.
    pub fn me(&self) -> PeerName {
        self.me
    }

    /// Our own record.
    pub fn own(&self) -> &PeerRecord {
        &self.own
    }

    /// The stored record of `name`, if any.
    pub fn get(&self, name: &PeerName) -> Option<&PeerRecord> {
        if *name == self.me {
            return Some(&self.own);
        }
        self.records.get(name)
    }

    /// Whether we hold a record of `name`.
    pub fn contains(&self, name: &PeerName) -> bool {
        *name == self.me || self.records.contains_key(name)
    }

    /// Every stored record: ours first, then the others ordered by name.
    pub fn records(&self) -> impl Iterator<Item = &PeerRecord> {
        std::iter::once(&self.own).chain(self.records.values())
    }

    /// Number of stored records (ours included).
    pub fn len(&self) -> usize {
        self.records.len() + 1
    }

    /// Always false: our own record is always present.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Names listed by kept records that have no record yet (as of the last GC).
    pub fn placeholders(&self) -> &BTreeSet<PeerName> {
        &self.placeholders
    }

    /// Order-independent digest of the `(name, uid, version)` set.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// Send-order key of `name`: parents before children in BFS from us.
    pub(crate) fn rank(&self, name: &PeerName) -> u32 {
        self.rank.get(name).copied().unwrap_or(u32::MAX)
    }

    /// Handles news of our own name at `(uid, version)` (from a record or a digest): if it
    /// is another incarnation or a version at least ours, bumps our version above it.
    /// Returns whether we bumped.
    pub fn outbid_own(&mut self, uid: u64, version: u64) -> bool {
        let own = &self.own;
        let same_identity = uid == own.uid && version == own.version;
        if same_identity || version < own.version {
            return false;
        }
        self.set_own_version(version.saturating_add(1));
        true
    }

    /// Merges one incoming record.
    pub fn merge(&mut self, record: PeerRecord) -> MergeResult {
        if record.name == self.me {
            return if self.outbid_own(record.uid, record.version) {
                MergeResult::OwnBumped
            } else {
                MergeResult::Unchanged
            };
        }
        match self.records.get_mut(&record.name) {
            None => {
                self.fingerprint ^= mix(record.name, record.uid, record.version);
                let graph_changed = !record.connections.is_empty();
                self.grown.push(record.name);
                self.added.push(record.name);
                self.records.insert(record.name, record);
                MergeResult::Added { graph_changed }
            }
            Some(stored) => {
                if !newer(record.version, record.uid, stored.version, stored.uid) {
                    return MergeResult::Unchanged;
                }
                self.fingerprint ^= mix(stored.name, stored.uid, stored.version)
                    ^ mix(record.name, record.uid, record.version);
                let (gained, lost) = connection_delta(&stored.connections, &record.connections);
                if gained {
                    self.grown.push(record.name);
                }
                self.shrunk |= lost;
                *stored = record;
                MergeResult::Replaced {
                    graph_changed: gained || lost,
                }
            }
        }
    }

    /// Whether the digest entry describes a record newer than ours (or one we lack).
    pub fn is_news(&self, digest: &PeerDigest) -> bool {
        match self.records.get(&digest.name) {
            None => true,
            Some(stored) => newer(digest.version, digest.uid, stored.version, stored.uid),
        }
    }

    /// Summaries of every stored record.
    pub fn digests(&self) -> Vec<PeerDigest> {
        self.records()
            .map(|r| PeerDigest {
                name: r.name,
                uid: r.uid,
                version: r.version,
            })
            .collect()
    }

    fn set_own_version(&mut self, version: u64) {
        let own = &mut self.own;
        self.fingerprint ^= mix(own.name, own.uid, own.version) ^ mix(own.name, own.uid, version);
        own.version = version;
    }

    fn bump_own(&mut self) {
        let next = self.own.version.saturating_add(1);
        self.set_own_version(next);
    }

    /// Adds (or replaces) our connection to `conn.peer` and bumps our version.
    pub fn add_own_connection(&mut self, conn: ConnectionRecord) {
        let own = &mut self.own;
        own.connections.retain(|c| c.peer != conn.peer);
        let at = own.connections.partition_point(|c| c.peer < conn.peer);
        own.connections.insert(at, conn);
        self.grown.push(self.me);
        self.bump_own();
    }

    /// Removes our connection to `peer`; bumps our version if there was one.
    pub fn remove_own_connection(&mut self, peer: PeerName) -> bool {
        let own = &mut self.own;
        let before = own.connections.len();
        own.connections.retain(|c| c.peer != peer);
        let removed = own.connections.len() != before;
        if removed {
            self.shrunk = true;
            self.bump_own();
        }
        removed
    }

    /// Drops every record not reachable from us over listed connections; also refreshes
    /// the placeholders and the send order. O(change) when connections were only added
    /// since the previous pass, O(n + e) otherwise.
    pub fn collect_garbage(&mut self) -> GcOutcome {
        let full = self.shrunk;
        let removed: Vec<PeerName> = if full {
            self.full_pass();
            self.records
                .keys()
                .filter(|name| !self.rank.contains_key(*name))
                .copied()
                .collect()
        } else {
            self.incremental_pass();
            // Only records added since the last pass can be unreached by this one.
            let mut unreached: Vec<PeerName> = self
                .added
                .iter()
                .filter(|name| !self.rank.contains_key(*name))
                .copied()
                .collect();
            unreached.sort_unstable();
            unreached.dedup();
            unreached
        };
        self.shrunk = false;
        self.added.clear();
        for name in &removed {
            if let Some(record) = self.records.remove(name) {
                self.fingerprint ^= mix(record.name, record.uid, record.version);
            }
        }
        let mut grown = std::mem::take(&mut self.grown);
        grown.sort_unstable();
        grown.dedup();
        grown.retain(|name| self.contains(name));
        GcOutcome {
            removed,
            full,
            grown,
        }
    }

    /// BFS from us over everything.
    fn full_pass(&mut self) {
        let mut seen: HashSet<PeerName> = HashSet::with_capacity(self.records.len() * 2);
        let mut rank = HashMap::with_capacity(self.records.len() + 1);
        let mut placeholders = BTreeSet::new();
        let mut queue = VecDeque::from([self.me]);
        seen.insert(self.me);
        while let Some(name) = queue.pop_front() {
            let Some(record) = lookup(&self.own, &self.records, &name) else {
                placeholders.insert(name);
                continue;
            };
            rank.insert(name, u32::try_from(rank.len()).unwrap_or(u32::MAX));
            for conn in &record.connections {
                if seen.insert(conn.peer) {
                    queue.push_back(conn.peer);
                }
            }
        }
        self.rank = rank;
        self.placeholders = placeholders;
    }

    /// BFS only from records that changed, into names not yet reached.
    fn incremental_pass(&mut self) {
        let mut queue = VecDeque::new();
        // A placeholder that got its record is reachable (a reached record lists it).
        for name in &self.added {
            if self.placeholders.remove(name) {
                let next = u32::try_from(self.rank.len()).unwrap_or(u32::MAX);
                self.rank.insert(*name, next);
            }
        }
        for name in &self.grown {
            if self.rank.contains_key(name) {
                queue.push_back(*name);
            }
        }
        while let Some(name) = queue.pop_front() {
            let Some(record) = lookup(&self.own, &self.records, &name) else {
                continue;
            };
            for conn in &record.connections {
                if self.rank.contains_key(&conn.peer) {
                    continue;
                }
                if conn.peer == self.me || self.records.contains_key(&conn.peer) {
                    let next = u32::try_from(self.rank.len()).unwrap_or(u32::MAX);
                    self.rank.insert(conn.peer, next);
                    queue.push_back(conn.peer);
                } else {
                    self.placeholders.insert(conn.peer);
                }
            }
        }
    }
}

/// The record of `name`: ours or a stored one (split borrow for the passes above).
fn lookup<'a>(
    own: &'a PeerRecord,
    records: &'a BTreeMap<PeerName, PeerRecord>,
    name: &PeerName,
) -> Option<&'a PeerRecord> {
    if *name == own.name {
        Some(own)
    } else {
        records.get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::Nickname;
    use std::net::SocketAddr;

    fn name(n: u8) -> PeerName {
        PeerName([2, 0, 0, 0, 0, n])
    }

    fn addr(n: u8) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, n], 6783))
    }

    fn record(n: u8, uid: u64, version: u64, conns: &[u8]) -> PeerRecord {
        PeerRecord {
            name: name(n),
            nickname: Nickname::truncated(&format!("h{n}")),
            uid,
            version,
            connections: conns
                .iter()
                .map(|&c| ConnectionRecord {
                    peer: name(c),
                    addr: addr(c),
                    outbound: true,
                })
                .collect(),
        }
    }

    #[test]
    fn higher_version_wins_and_uid_breaks_ties() {
        let mut topo = Topology::new(record(1, 100, 1, &[2]));
        assert!(matches!(
            topo.merge(record(2, 5, 3, &[1])),
            MergeResult::Added {
                graph_changed: true
            }
        ));
        assert_eq!(topo.merge(record(2, 5, 2, &[])), MergeResult::Unchanged);
        assert_eq!(topo.merge(record(2, 5, 3, &[1])), MergeResult::Unchanged);
        // Same version, higher uid wins; lower uid does not.
        assert_eq!(
            topo.merge(record(2, 6, 3, &[1])),
            MergeResult::Replaced {
                graph_changed: false
            }
        );
        assert_eq!(topo.merge(record(2, 4, 3, &[])), MergeResult::Unchanged);
        assert_eq!(
            topo.merge(record(2, 1, 4, &[])),
            MergeResult::Replaced {
                graph_changed: true
            }
        );
        assert_eq!(topo.get(&name(2)).unwrap().version, 4);
    }

    #[test]
    fn merge_is_order_independent() {
        let updates = [
            record(2, 1, 1, &[1]),
            record(2, 1, 3, &[1, 3]),
            record(3, 9, 2, &[2]),
            record(2, 2, 3, &[1]),
            record(3, 9, 1, &[]),
        ];
        let mut forward = Topology::new(record(1, 100, 1, &[2]));
        let mut backward = Topology::new(record(1, 100, 1, &[2]));
        for r in updates.iter().cloned() {
            forward.merge(r);
        }
        for r in updates.iter().rev().cloned() {
            backward.merge(r);
        }
        assert_eq!(forward.fingerprint(), backward.fingerprint());
        let f: Vec<_> = forward.records().cloned().collect();
        let b: Vec<_> = backward.records().cloned().collect();
        assert_eq!(f, b);
        assert_eq!(forward.get(&name(2)).unwrap().uid, 2);
    }

    #[test]
    fn own_stale_record_bumps_our_version() {
        let mut topo = Topology::new(record(1, 100, 3, &[]));
        // An old incarnation (different uid) at a lower version loses silently.
        assert_eq!(topo.merge(record(1, 7, 2, &[2])), MergeResult::Unchanged);
        // Our own record echoed back: nothing.
        assert_eq!(topo.merge(record(1, 100, 3, &[])), MergeResult::Unchanged);
        // An old incarnation at version 9: we jump to 10 and keep our content and uid.
        assert_eq!(topo.merge(record(1, 7, 9, &[2])), MergeResult::OwnBumped);
        assert_eq!(topo.own().version, 10);
        assert_eq!(topo.own().uid, 100);
        assert!(topo.own().connections.is_empty());
        // Equal version from another incarnation must also bump (it could win on uid).
        assert_eq!(topo.merge(record(1, 999, 10, &[])), MergeResult::OwnBumped);
        assert_eq!(topo.own().version, 11);
        let expected = mix(name(1), 100, 11);
        assert_eq!(topo.fingerprint(), expected);
    }

    #[test]
    fn garbage_collection_keeps_what_we_reach() {
        // 1 -> 2 -> 3, and 4 -> 2 (nobody lists 4), 2 also lists 5 (no record yet).
        let mut topo = Topology::new(record(1, 1, 1, &[2]));
        topo.merge(record(2, 2, 1, &[1, 3, 5]));
        topo.merge(record(3, 3, 1, &[2]));
        topo.merge(record(4, 4, 1, &[2]));
        let removed = topo.collect_garbage().removed;
        assert_eq!(removed, vec![name(4)]);
        assert!(topo.contains(&name(3)));
        assert_eq!(
            topo.placeholders().iter().copied().collect::<Vec<_>>(),
            vec![name(5)]
        );
        // 2 drops 3: 3 becomes unreachable and goes.
        topo.merge(record(2, 2, 2, &[1]));
        let outcome = topo.collect_garbage();
        assert!(outcome.full);
        assert_eq!(outcome.removed, vec![name(3)]);
        assert!(topo.placeholders().is_empty());
        let mut expected = Topology::new(record(1, 1, 1, &[2]));
        expected.merge(record(2, 2, 2, &[1]));
        assert_eq!(topo.fingerprint(), expected.fingerprint());
        // Send order: parents first.
        assert!(topo.rank(&name(1)) < topo.rank(&name(2)));
    }

    proptest::proptest! {
        /// Incremental passes agree with a from-scratch pass after any sequence of merges.
        #[test]
        fn incremental_gc_matches_full_gc(
            ops in proptest::collection::vec(
                (1u8..8, 1u64..6, proptest::collection::vec(1u8..8, 0..4), proptest::bool::ANY),
                1..40,
            )
        ) {
            let mut topo = Topology::new(record(1, 1, 1, &[]));
            for (n, version, conns, own) in ops {
                if own {
                    if conns.is_empty() {
                        topo.remove_own_connection(name(n));
                    } else {
                        topo.add_own_connection(ConnectionRecord {
                            peer: name(n),
                            addr: addr(n),
                            outbound: true,
                        });
                    }
                } else {
                    topo.merge(record(n, u64::from(n), version, &conns));
                }
                let mut reference = topo.clone();
                reference.shrunk = true;
                let expected = reference.collect_garbage();
                let got = topo.collect_garbage();
                let names = |t: &Topology| t.records().map(|r| r.name).collect::<BTreeSet<_>>();
                proptest::prop_assert_eq!(names(&topo), names(&reference));
                proptest::prop_assert_eq!(&topo.placeholders, &reference.placeholders);
                proptest::prop_assert_eq!(got.removed.len(), expected.removed.len());
                proptest::prop_assert_eq!(topo.fingerprint(), reference.fingerprint());
                let mut ranked: Vec<_> = topo.rank.keys().copied().collect();
                ranked.sort_unstable();
                proptest::prop_assert_eq!(ranked, names(&topo).into_iter().collect::<Vec<_>>());
                // Parents first: every reached non-root record is listed by a record ranked
                // before it.
                for r in topo.records() {
                    if r.name == topo.me() {
                        continue;
                    }
                    let rank = topo.rank(&r.name);
                    proptest::prop_assert!(topo.records().any(|p| topo.rank(&p.name) < rank
                        && p.connections.iter().any(|c| c.peer == r.name)));
                }
            }
        }
    }

    #[test]
    fn own_connections_are_sorted_and_bump_version() {
        let mut topo = Topology::new(record(1, 1, 1, &[]));
        topo.add_own_connection(ConnectionRecord {
            peer: name(5),
            addr: addr(5),
            outbound: true,
        });
        topo.add_own_connection(ConnectionRecord {
            peer: name(3),
            addr: addr(3),
            outbound: false,
        });
        assert_eq!(topo.own().version, 3);
        let peers: Vec<_> = topo.own().connections.iter().map(|c| c.peer).collect();
        assert_eq!(peers, vec![name(3), name(5)]);
        assert!(topo.remove_own_connection(name(3)));
        assert!(!topo.remove_own_connection(name(3)));
        assert_eq!(topo.own().version, 4);
    }

    #[test]
    fn digest_news_detection() {
        let mut topo = Topology::new(record(1, 1, 1, &[2]));
        topo.merge(record(2, 2, 5, &[1]));
        let d = |n, uid, version| PeerDigest {
            name: name(n),
            uid,
            version,
        };
        assert!(!topo.is_news(&d(2, 2, 5)));
        assert!(!topo.is_news(&d(2, 2, 4)));
        assert!(topo.is_news(&d(2, 2, 6)));
        assert!(topo.is_news(&d(2, 3, 5)));
        assert!(topo.is_news(&d(9, 1, 1)));
        assert_eq!(topo.digests().len(), 2);
    }
}
