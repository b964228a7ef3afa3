//! Gossip: what to send each neighbour, and when.
//!
//! Contract:
//! - Deltas: a record that changed here is queued by *name* on every established
//!   connection except the one it came from; queues are sets, so any number of changes
//!   between two flushes collapse into one message carrying each record's latest version.
//!   Per change a peer therefore sends about `degree × record size` bytes, never O(n²).
//! - State sync after Hello: a peer we hold no record of (a newcomer) gets our full state
//!   at once. A peer we already know gets a [`Message::Digest`](crate::Message::Digest)
//!   instead (name, uid, version of every record, 22 bytes each) and answers with exactly
//!   the records we lack or hold older, and vice versa, so reconnecting peers exchange
//!   only differences. Periodic anti-entropy sends a digest asking for a reply to only a
//!   few neighbours chosen with the node's seeded RNG.
//! - Flushing encodes records parents-first (BFS order from us), split into frames of at
//!   most the configured batch size, so a receiver that processes a prefix of a large
//!   batch never garbage-collects a peer whose connecting record is still in flight.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rand::{Rng, RngExt};

use crate::codec::{
    encode_frame, encode_record_frames, endpoint_record_len, peer_record_len, put_endpoint_record,
    put_peer_record,
};
use crate::connection::{ConnId, Connection, PendingGossip};
use crate::endpoints::EndpointStore;
use crate::protocol::{EndpointDigest, EndpointRecord, Message, PeerDigest, PeerRecord, tag};
use crate::status::MeshCounters;
use crate::topology::Topology;

/// When the next anti-entropy exchange is due.
#[derive(Debug, Clone)]
pub(crate) struct AntiEntropy {
    interval: Duration,
    pub(crate) next: Instant,
}

impl AntiEntropy {
    pub(crate) fn new<R: Rng + ?Sized>(interval: Duration, now: Instant, rng: &mut R) -> Self {
        let mut schedule = Self {
            interval,
            next: now,
        };
        schedule.reschedule(now, rng);
        schedule
    }

    /// Schedules the next round one interval (±25 %, so peers drift apart) after `now`.
    pub(crate) fn reschedule<R: Rng + ?Sized>(&mut self, now: Instant, rng: &mut R) {
        let factor: f64 = rng.random_range(0.75..=1.25);
        self.next = now + self.interval.mul_f64(factor);
    }
}

/// Picks up to `k` distinct neighbours uniformly (`candidates` in a deterministic order).
pub(crate) fn pick_neighbours<R: Rng + ?Sized>(
    candidates: &[ConnId],
    k: usize,
    rng: &mut R,
) -> Vec<ConnId> {
    let mut pool = candidates.to_vec();
    let take = k.min(pool.len());
    // Partial Fisher–Yates.
    for i in 0..take {
        let j = rng.random_range(i..pool.len());
        pool.swap(i, j);
    }
    pool.truncate(take);
    pool
}

/// Queues on `pending` every record the digest's sender lacks or holds older, and reports
/// whether the digest showed a stale incarnation of our own records (which the caller then
/// outbids and re-announces). Returns `(topology_bumped, endpoints_bumped)`.
pub(crate) fn answer_digest(
    pending: &mut PendingGossip,
    topology: &mut Topology,
    endpoints: &mut EndpointStore,
    peers: &[PeerDigest],
    endpoint_digests: &[EndpointDigest],
) -> (bool, bool) {
    let me = topology.me();
    let theirs: HashMap<_, _> = peers.iter().map(|d| (d.name, (d.version, d.uid))).collect();
    let topology_bumped = theirs
        .get(&me)
        .is_some_and(|&(version, uid)| topology.outbid_own(uid, version));
    for record in topology.records() {
        let lacks = theirs
            .get(&record.name)
            .is_none_or(|&their| their < (record.version, record.uid));
        if lacks {
            pending.peers.insert(record.name);
        }
    }
    let theirs: HashMap<_, _> = endpoint_digests
        .iter()
        .map(|d| (d.peer, (d.version, d.uid)))
        .collect();
    let endpoints_bumped = theirs
        .get(&me)
        .is_some_and(|&(version, uid)| endpoints.outbid_own(uid, version));
    for record in endpoints.records() {
        let lacks = theirs
            .get(&record.peer)
            .is_none_or(|&their| their < (record.version, record.uid));
        if lacks {
            pending.endpoints.insert(record.peer);
        }
    }
    (topology_bumped, endpoints_bumped)
}

/// Encodes `conn`'s pending gossip into its outbox and clears it.
pub(crate) fn flush(
    conn: &mut Connection,
    topology: &Topology,
    endpoints: &EndpointStore,
    batch_len: usize,
    counters: &mut MeshCounters,
    now: Instant,
) {
    if conn.gossip.is_empty() {
        return;
    }
    let pending = std::mem::take(&mut conn.gossip);
    let before = conn.outbox.len();
    if let Some(reply) = pending.digest {
        let digest = Message::Digest {
            reply,
            peers: topology.digests(),
            endpoints: endpoints.digests(),
        };
        encode_frame(&digest, &mut conn.outbox);
    }
    if !pending.peers.is_empty() {
        let mut records: Vec<&PeerRecord> = pending
            .peers
            .iter()
            .filter_map(|name| topology.get(name))
            .collect();
        records.sort_by_key(|r| (topology.rank(&r.name), r.name));
        counters.records_sent += records.len() as u64;
        encode_record_frames(
            &mut conn.outbox,
            tag::TOPOLOGY,
            &records,
            batch_len,
            peer_record_len,
            put_peer_record,
        );
    }
    if !pending.endpoints.is_empty() {
        let records: Vec<&EndpointRecord> = pending
            .endpoints
            .iter()
            .filter_map(|peer| endpoints.get(peer))
            .filter(|r| r.version > 0)
            .collect();
        counters.records_sent += records.len() as u64;
        encode_record_frames(
            &mut conn.outbox,
            tag::ENDPOINTS,
            &records,
            batch_len,
            endpoint_record_len,
            put_endpoint_record,
        );
    }
    let written = conn.outbox.len() - before;
    if written > 0 {
        counters.bytes_sent += written as u64;
        conn.last_sent = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::{Nickname, PeerName};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use std::collections::BTreeSet;

    fn name(n: u8) -> PeerName {
        PeerName([2, 0, 0, 0, 0, n])
    }

    fn record(n: u8, uid: u64, version: u64) -> PeerRecord {
        PeerRecord {
            name: name(n),
            nickname: Nickname::default(),
            uid,
            version,
            connections: Vec::new(),
        }
    }

    #[test]
    fn neighbour_choice_is_bounded_distinct_and_seeded() {
        let conns: Vec<ConnId> = (0..10).map(ConnId).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut seen = BTreeSet::new();
        for _ in 0..200 {
            let picked = pick_neighbours(&conns, 2, &mut rng);
            assert_eq!(picked.len(), 2);
            assert_ne!(picked[0], picked[1]);
            seen.extend(picked);
        }
        assert_eq!(seen.len(), 10, "every neighbour gets picked eventually");
        assert_eq!(pick_neighbours(&conns[..1], 2, &mut rng), vec![ConnId(0)]);
        let a = pick_neighbours(&conns, 3, &mut ChaCha8Rng::seed_from_u64(9));
        let b = pick_neighbours(&conns, 3, &mut ChaCha8Rng::seed_from_u64(9));
        assert_eq!(a, b);
    }

    #[test]
    fn digest_answer_sends_only_what_the_sender_lacks() {
        let mut topology = Topology::new(record(1, 10, 4));
        topology.merge(record(2, 20, 3));
        topology.merge(record(3, 30, 7));
        let mut endpoints = EndpointStore::new(name(1), 10);
        let d = |n, uid, version| PeerDigest {
            name: name(n),
            uid,
            version,
        };
        let mut pending = PendingGossip::default();
        // They have us (same), 2 older, 3 newer, and 9 which we lack.
        let (bumped, _) = answer_digest(
            &mut pending,
            &mut topology,
            &mut endpoints,
            &[d(1, 10, 4), d(2, 20, 2), d(3, 30, 8), d(9, 1, 1)],
            &[],
        );
        assert!(!bumped);
        assert_eq!(
            pending.peers.iter().copied().collect::<Vec<_>>(),
            vec![name(2)]
        );
        // A digest holding an older incarnation of us at a higher version: we outbid it
        // and send our record.
        let mut pending = PendingGossip::default();
        let (bumped, _) = answer_digest(
            &mut pending,
            &mut topology,
            &mut endpoints,
            &[d(1, 99, 6), d(2, 20, 3), d(3, 30, 7)],
            &[],
        );
        assert!(bumped);
        assert_eq!(topology.own().version, 7);
        assert_eq!(
            pending.peers.iter().copied().collect::<Vec<_>>(),
            vec![name(1)]
        );
    }

    #[test]
    fn anti_entropy_interval_is_jittered_around_the_setting() {
        let now = Instant::now();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut schedule = AntiEntropy::new(Duration::from_secs(30), now, &mut rng);
        for _ in 0..50 {
            let delay = schedule.next - now;
            assert!(
                delay >= Duration::from_millis(22_500) && delay <= Duration::from_millis(37_500)
            );
            schedule.reschedule(now, &mut rng);
        }
    }
}
