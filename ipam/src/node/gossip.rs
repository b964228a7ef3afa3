//! Gossip with neighbours: hello and refusal, digests, pushing and forwarding records, and
//! merging what arrives.
//!
//! Per neighbour, an ordered queue of control items; records to send are a set (so many
//! changes to one record between two sends cost one send of its latest version) flushed
//! at the first `Flush` item still queued. Order matters for the first-sync proof: our own
//! record is queued before our digest, so the neighbour's `SyncDone` (its answer to that
//! digest) shows it holds our record.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use mesh::PeerName;
use rand::RngExt;

use super::{Event, Ipam, Transmit};
use crate::codec;
use crate::error::RefuseReason;
use crate::limits;
use crate::message::{DigestEntry, Message};
use crate::record::{PeerRecord, RingId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Out {
    Hello,
    Flush,
    Digest,
    SyncDone,
}

#[derive(Debug)]
pub(super) struct Neighbour {
    queue: VecDeque<Out>,
    records: BTreeSet<PeerName>,
    /// Its hello arrived (messages before it are refused).
    hello: bool,
    /// Its ring as last heard (hello or its own record).
    ring: Option<RingId>,
    refused: Option<RefuseReason>,
    /// Its answer to our first digest arrived: we hold everything it held then.
    synced: bool,
    pub(super) next_digest: Instant,
}

impl Neighbour {
    fn push_records(&mut self, peer: PeerName) {
        if self.refused.is_some() {
            return;
        }
        self.records.insert(peer);
        if self.queue.back() != Some(&Out::Flush) {
            self.queue.push_back(Out::Flush);
        }
    }
}

impl Ipam {
    /// A control connection to `peer` is established: the IPAM hello and state sync start.
    pub fn handle_neighbour_up(&mut self, now: Instant, peer: PeerName) {
        if peer == self.cfg.name {
            return;
        }
        let jitter = self.jitter(self.cfg.timers.anti_entropy);
        let mut n = Neighbour {
            queue: VecDeque::from([Out::Hello]),
            records: BTreeSet::new(),
            hello: false,
            ring: None,
            refused: None,
            synced: false,
            next_digest: now + jitter,
        };
        n.push_records(self.cfg.name);
        n.queue.push_back(Out::Digest);
        self.neighbours.insert(peer, n);
        self.full_scan = true;
        self.reach_dirty = true;
        self.settle(now);
    }

    /// The control connection to `peer` is gone.
    pub fn handle_neighbour_down(&mut self, now: Instant, peer: PeerName) {
        if self.neighbours.remove(&peer).is_some() {
            self.full_scan = true;
            self.reach_dirty = true;
            self.settle(now);
        }
    }

    /// The peers the mesh can route to now (replaces the previous set).
    pub fn handle_reachable(&mut self, now: Instant, peers: &[PeerName]) {
        let reachable: BTreeSet<PeerName> = peers
            .iter()
            .copied()
            .filter(|p| *p != self.cfg.name)
            .collect();
        if reachable != self.reachable {
            self.reachable = reachable;
            self.full_scan = true;
            self.reach_dirty = true;
            self.settle(now);
        }
    }

    /// An IPAM message from neighbour `from`. A malformed one is counted and reported as
    /// [`Event::BadMessage`] (close that connection); nothing else changes.
    pub fn handle_message(&mut self, now: Instant, from: PeerName, bytes: &[u8]) {
        let Some(n) = self.neighbours.get(&from) else {
            self.dropped_messages += 1;
            return;
        };
        if n.refused.is_some() {
            return;
        }
        let hello_seen = n.hello;
        let message = match Message::decode(bytes) {
            Ok(m) => m,
            Err(error) => {
                self.dropped_messages += 1;
                if error.is_fatal() {
                    self.events
                        .push_back(Event::BadMessage { peer: from, error });
                }
                return;
            }
        };
        if !hello_seen && !matches!(message, Message::Hello { .. }) {
            self.dropped_messages += 1;
            return;
        }
        match message {
            Message::Hello { range, ring } => self.on_hello(from, range, ring),
            Message::Digest(entries) => self.on_digest(from, &entries),
            Message::Records(records) => {
                for record in records {
                    self.merge_record(Some(from), record);
                }
            }
            Message::SyncDone => {
                if let Some(n) = self.neighbours.get_mut(&from) {
                    n.synced = true;
                }
                if !self.synced {
                    self.synced = true;
                    self.full_scan = true;
                }
            }
        }
        self.settle(now);
    }

    /// The next message for a neighbour (`None` while a persist is pending).
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if self.persist_dirty {
            return None;
        }
        let peers: Vec<PeerName> = self
            .neighbours
            .iter()
            .filter(|(_, n)| !n.queue.is_empty())
            .map(|(p, _)| *p)
            .collect();
        for peer in peers {
            if let Some(bytes) = self.next_bytes_for(peer) {
                return Some(Transmit { to: peer, bytes });
            }
        }
        None
    }

    fn next_bytes_for(&mut self, peer: PeerName) -> Option<Vec<u8>> {
        loop {
            let n = self.neighbours.get_mut(&peer)?;
            let item = *n.queue.front()?;
            match item {
                Out::Hello => {
                    n.queue.pop_front();
                    let m = Message::Hello {
                        range: self.cfg.range,
                        ring: self.ring.clone(),
                    };
                    return Some(m.to_bytes());
                }
                Out::SyncDone => {
                    n.queue.pop_front();
                    return Some(Message::SyncDone.to_bytes());
                }
                Out::Digest => {
                    n.queue.pop_front();
                    let entries = self
                        .all_records()
                        .map(|r| DigestEntry {
                            peer: r.peer,
                            epoch: r.epoch,
                            version: r.version,
                        })
                        .collect();
                    return Some(Message::Digest(entries).to_bytes());
                }
                Out::Flush => {
                    if n.records.is_empty() {
                        n.queue.pop_front();
                        continue;
                    }
                    let mut waiting = std::mem::take(&mut n.records);
                    let mut batch: Vec<PeerName> = Vec::new();
                    let mut size = 0;
                    while let Some(p) = waiting.pop_first() {
                        let len = self.record_of(p).map_or(0, codec::record_len);
                        if len == 0 {
                            continue;
                        }
                        if !batch.is_empty() && size + len > limits::TARGET_MESSAGE_LEN {
                            waiting.insert(p);
                            break;
                        }
                        size += len;
                        batch.push(p);
                    }
                    if let Some(n) = self.neighbours.get_mut(&peer) {
                        n.records.append(&mut waiting);
                    }
                    let records: Vec<&PeerRecord> =
                        batch.iter().filter_map(|p| self.record_of(*p)).collect();
                    if records.is_empty() {
                        continue;
                    }
                    let mut out = Vec::with_capacity(size + 5);
                    codec::encode_records(&records, &mut out);
                    return Some(out);
                }
            }
        }
    }

    fn on_hello(&mut self, from: PeerName, range: ipnet::Ipv4Net, ring: Option<RingId>) {
        let reason = if range != self.cfg.range {
            Some(RefuseReason::RangeMismatch {
                ours: self.cfg.range,
                theirs: range,
            })
        } else {
            self.ring_mismatch(ring.as_ref())
        };
        if let Some(n) = self.neighbours.get_mut(&from) {
            n.hello = true;
            n.ring = ring;
        }
        if let Some(reason) = reason {
            self.refuse(from, reason);
        }
    }

    fn ring_mismatch(&self, theirs: Option<&RingId>) -> Option<RefuseReason> {
        match (&self.ring, theirs) {
            (Some(ours), Some(theirs)) if ours != theirs => Some(RefuseReason::RingMismatch {
                ours: ours.clone(),
                theirs: theirs.clone(),
            }),
            _ => None,
        }
    }

    pub(super) fn refuse(&mut self, peer: PeerName, reason: RefuseReason) {
        if let Some(n) = self.neighbours.get_mut(&peer)
            && n.refused.is_none()
        {
            n.queue.clear();
            n.records.clear();
            n.refused = Some(reason.clone());
            self.events.push_back(Event::Refuse { peer, reason });
        }
    }

    /// After our ring was decided: refuse neighbours that belong to another ring.
    pub(super) fn refuse_foreign_neighbours(&mut self) {
        let foreign: Vec<(PeerName, RefuseReason)> = self
            .neighbours
            .iter()
            .filter(|(_, n)| n.refused.is_none())
            .filter_map(|(p, n)| self.ring_mismatch(n.ring.as_ref()).map(|r| (*p, r)))
            .collect();
        for (peer, reason) in foreign {
            self.refuse(peer, reason);
        }
        let ours = self.me.ring;
        let before = self.records.len();
        self.records
            .retain(|_, r| r.ring.is_none() || r.ring == ours);
        if self.records.len() != before {
            self.cache_dirty = true;
            self.index_dirty = true;
            self.full_scan = true;
        }
    }

    /// Refused neighbours and why (for status).
    pub(super) fn refused_neighbours(&self) -> impl Iterator<Item = (PeerName, &RefuseReason)> {
        self.neighbours
            .iter()
            .filter_map(|(p, n)| n.refused.as_ref().map(|r| (*p, r)))
    }

    fn on_digest(&mut self, from: PeerName, entries: &[DigestEntry]) {
        if entries.len() > 2 * limits::MAX_PEERS {
            self.dropped_messages += 1;
            return;
        }
        let theirs: BTreeMap<PeerName, (u32, u64)> = entries
            .iter()
            .map(|e| (e.peer, (e.epoch, e.version)))
            .collect();
        let lacking: Vec<PeerName> = self
            .all_records()
            .filter(|r| theirs.get(&r.peer).is_none_or(|s| *s < r.stamp()))
            .map(|r| r.peer)
            .collect();
        if let Some(n) = self.neighbours.get_mut(&from) {
            for p in lacking {
                n.push_records(p);
            }
            n.queue.push_back(Out::SyncDone);
        }
    }

    /// Merges a record from `from` (`None`: the cache). Returns whether it was news.
    pub(super) fn merge_record(&mut self, from: Option<PeerName>, record: PeerRecord) -> bool {
        if record.validate(self.cfg.range).is_err() {
            self.dropped_records += 1;
            return false;
        }
        if record.peer == self.cfg.name {
            return self.merge_own_record(record);
        }
        if let (Some(ours), Some(theirs)) = (self.me.ring, record.ring)
            && ours != theirs
        {
            // Another ring's record (the refusal itself comes with its writer's hello).
            self.dropped_records += 1;
            return false;
        }
        let old = self.records.get(&record.peer);
        if old.is_some_and(|o| o.stamp() >= record.stamp()) {
            return false;
        }
        if old.is_none() && self.records.len() >= limits::MAX_PEERS {
            self.dropped_records += 1;
            return false;
        }
        let takeover_related = |r: &PeerRecord| {
            !r.tombstones.is_empty()
                || !r.inherited.is_empty()
                || !r.release_reserved.is_empty()
                || r.retired.iter().any(|x| !x.inherited.is_empty())
        };
        // The index holds only tombstones, takeovers and releases (winners are computed
        // from it and current epochs), so only records carrying those change it.
        if old.is_some_and(takeover_related) || takeover_related(&record) {
            self.index_dirty = true;
        }
        let peer = record.peer;
        self.records.insert(peer, record);
        self.cache_dirty = true;
        self.dirty.insert(peer);
        if !self.seen_others {
            self.seen_others = true;
            self.persist_dirty = true;
        }
        for (p, n) in &mut self.neighbours {
            if Some(*p) != from {
                n.push_records(peer);
            }
        }
        true
    }

    /// Someone holds a newer record of ours than we do: our state was lost or replaced.
    /// We continue from it (so our versions never repeat) and keep its used addresses
    /// used, though no handle holds them here.
    fn merge_own_record(&mut self, record: PeerRecord) -> bool {
        if record.stamp() <= self.me.stamp() {
            return false;
        }
        let version = record.version;
        self.me = record;
        self.index_dirty = true;
        self.full_scan = true;
        self.mark();
        self.events.push_back(Event::OwnRecordRecovered { version });
        true
    }

    /// The ring a neighbour announced, to learn it from (any one: if two neighbours
    /// announce different rings, the other is refused once we joined one).
    pub(super) fn neighbour_ring(&self) -> Option<RingId> {
        self.neighbours
            .values()
            .filter(|n| n.refused.is_none())
            .find_map(|n| n.ring.clone())
    }

    /// Whether every neighbour answered our first digest (so we know any ring they
    /// knew when they answered).
    pub(super) fn synced_with_all_neighbours(&self) -> bool {
        self.neighbours
            .values()
            .all(|n| n.synced || n.refused.is_some())
    }

    /// Announces our (new) ring to every neighbour.
    pub(super) fn queue_hello(&mut self) {
        for n in self.neighbours.values_mut() {
            if n.refused.is_none() {
                n.queue.push_back(Out::Hello);
            }
        }
    }

    /// Queues our record (after a change) to every neighbour.
    pub(super) fn queue_own_record(&mut self) {
        let me = self.cfg.name;
        for n in self.neighbours.values_mut() {
            n.push_records(me);
        }
    }

    pub(super) fn gossip_timeout(&mut self, now: Instant) {
        let interval = self.cfg.timers.anti_entropy;
        let due: Vec<PeerName> = self
            .neighbours
            .iter()
            .filter(|(_, n)| n.next_digest <= now)
            .map(|(p, _)| *p)
            .collect();
        for p in due {
            let next = now + self.jitter(interval);
            if let Some(n) = self.neighbours.get_mut(&p) {
                n.next_digest = next;
                if n.refused.is_none() && n.hello {
                    n.queue.push_back(Out::Digest);
                }
            }
        }
    }

    /// `base` scaled by a random factor in [0.5, 1.5] (never zero).
    pub(super) fn jitter(&mut self, base: Duration) -> Duration {
        base.mul_f64(self.rng.random_range(0.5..=1.5))
            .max(Duration::from_millis(1))
    }
}
