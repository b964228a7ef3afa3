//! Endpoint records: which containers (VNI, MAC, IPs) live behind which peer.
//!
//! Contract: like topology records, each peer owns its endpoint record and bumps its
//! version on every change; others keep the newest by `(version, uid)`, so incarnations
//! never tie. Hearing our own name from another incarnation, or at a version above ours,
//! bumps ours above it. A record at version 0 means "nothing announced yet" and is neither
//! gossiped nor summarised. Records of peers that leave the topology are dropped by the
//! node (see [`EndpointStore::retain_peers`]).

use std::collections::BTreeMap;

use crate::codec::endpoints_len;
use crate::peer::PeerName;
use crate::protocol::{Endpoint, EndpointDigest, EndpointRecord, MAX_VNI};

/// Why a local endpoint list cannot be announced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    /// VXLAN VNIs are 24 bits.
    #[error("endpoint {mac} has VNI {vni}, but VNIs must be below 2^24")]
    VniOutOfRange {
        /// The endpoint's MAC, formatted.
        mac: String,
        /// The rejected VNI.
        vni: u32,
    },
    /// The wire format carries at most 65535 addresses per endpoint.
    #[error("endpoint {mac} has {count} IP addresses; at most 65535 are supported")]
    TooManyIps {
        /// The endpoint's MAC, formatted.
        mac: String,
        /// The rejected count.
        count: usize,
    },
    /// The record would not fit one control frame.
    #[error("{count} endpoints need {len} bytes, more than the {max}-byte frame limit")]
    TooLarge {
        /// Number of endpoints.
        count: usize,
        /// Encoded size.
        len: usize,
        /// Frame limit.
        max: usize,
    },
}

/// What merging one incoming endpoint record did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointMerge {
    /// Not newer than what we hold.
    Unchanged,
    /// Stored (new peer or newer version).
    Changed,
    /// An older incarnation of our record: we bumped ours and must re-announce.
    OwnBumped,
}

/// Every known peer's endpoint record, ours included.
#[derive(Debug, Clone)]
pub struct EndpointStore {
    me: PeerName,
    uid: u64,
    records: BTreeMap<PeerName, EndpointRecord>,
    fingerprint: u64,
}

/// A record's share of the fingerprint; unannounced (version 0) records count as absent.
fn record_hash(record: &EndpointRecord) -> u64 {
    if record.version == 0 {
        return 0;
    }
    crate::topology::mix(record.peer, record.uid, record.version)
}

fn format_mac(mac: [u8; 6]) -> String {
    PeerName(mac).to_string()
}

impl EndpointStore {
    /// A store holding our empty, unannounced (version 0) record.
    pub fn new(me: PeerName, uid: u64) -> Self {
        let own = EndpointRecord {
            peer: me,
            uid,
            version: 0,
            endpoints: Vec::new(),
        };
        let fingerprint = record_hash(&own);
        let mut records = BTreeMap::new();
        records.insert(me, own);
        Self {
            me,
            uid,
            records,
            fingerprint,
        }
    }

    /// Checks that `endpoints` can be announced in one frame of `max_frame_len` bytes.
    pub fn validate(endpoints: &[Endpoint], max_frame_len: usize) -> Result<(), EndpointError> {
        for endpoint in endpoints {
            if endpoint.vni > MAX_VNI {
                return Err(EndpointError::VniOutOfRange {
                    mac: format_mac(endpoint.mac),
                    vni: endpoint.vni,
                });
            }
            if endpoint.ips.len() > usize::from(u16::MAX) {
                return Err(EndpointError::TooManyIps {
                    mac: format_mac(endpoint.mac),
                    count: endpoint.ips.len(),
                });
            }
        }
        // Frame body: tag, record count, then the one record.
        let len = 1 + 4 + endpoints_len(endpoints);
        if len > max_frame_len {
            return Err(EndpointError::TooLarge {
                count: endpoints.len(),
                len,
                max: max_frame_len,
            });
        }
        Ok(())
    }

    /// Replaces our endpoint list and bumps our version. Returns whether it differed.
    pub fn set_local(&mut self, mut endpoints: Vec<Endpoint>) -> bool {
        endpoints.sort();
        endpoints.dedup();
        let me = self.me;
        let Some(own) = self.records.get_mut(&me) else {
            return false;
        };
        if own.endpoints == endpoints && own.version > 0 {
            return false;
        }
        self.fingerprint ^= record_hash(own);
        own.endpoints = endpoints;
        own.version = own.version.saturating_add(1);
        self.fingerprint ^= record_hash(own);
        true
    }

    /// Handles news of our own record at `(uid, version)`: another incarnation at a
    /// version ≥ ours, or any version above ours, makes us bump above it.
    pub fn outbid_own(&mut self, uid: u64, version: u64) -> bool {
        let me = self.me;
        let Some(own) = self.records.get_mut(&me) else {
            return false;
        };
        let echo = uid == self.uid && version == own.version;
        if echo || version < own.version {
            return false;
        }
        self.fingerprint ^= record_hash(own);
        own.version = version.saturating_add(1);
        self.fingerprint ^= record_hash(own);
        true
    }

    /// Merges one incoming record.
    pub fn merge(&mut self, record: EndpointRecord) -> EndpointMerge {
        if record.peer == self.me {
            return if self.outbid_own(record.uid, record.version) {
                EndpointMerge::OwnBumped
            } else {
                EndpointMerge::Unchanged
            };
        }
        if record.version == 0 {
            return EndpointMerge::Unchanged;
        }
        match self.records.get_mut(&record.peer) {
            Some(stored) => {
                if (record.version, record.uid) <= (stored.version, stored.uid) {
                    return EndpointMerge::Unchanged;
                }
                self.fingerprint ^= record_hash(stored) ^ record_hash(&record);
                *stored = record;
                EndpointMerge::Changed
            }
            None => {
                self.fingerprint ^= record_hash(&record);
                self.records.insert(record.peer, record);
                EndpointMerge::Changed
            }
        }
    }

    /// The stored record of `peer`.
    pub fn get(&self, peer: &PeerName) -> Option<&EndpointRecord> {
        self.records.get(peer)
    }

    /// Every announced (version > 0) record.
    pub fn records(&self) -> impl Iterator<Item = &EndpointRecord> {
        self.records.values().filter(|r| r.version > 0)
    }

    /// Whether the digest entry is newer than what we hold.
    pub fn is_news(&self, digest: &EndpointDigest) -> bool {
        self.records
            .get(&digest.peer)
            .is_none_or(|r| (digest.version, digest.uid) > (r.version, r.uid))
    }

    /// Summaries of every announced record.
    pub fn digests(&self) -> Vec<EndpointDigest> {
        self.records()
            .map(|r| EndpointDigest {
                peer: r.peer,
                uid: r.uid,
                version: r.version,
            })
            .collect()
    }

    /// Drops records of peers for which `keep` is false (never ours); returns the dropped
    /// peers that had announced something.
    pub fn retain_peers(&mut self, mut keep: impl FnMut(&PeerName) -> bool) -> Vec<PeerName> {
        let me = self.me;
        let mut dropped = Vec::new();
        let mut fingerprint = self.fingerprint;
        self.records.retain(|peer, record| {
            if *peer == me || keep(peer) {
                return true;
            }
            fingerprint ^= record_hash(record);
            if !record.endpoints.is_empty() {
                dropped.push(*peer);
            }
            false
        });
        self.fingerprint = fingerprint;
        dropped
    }

    /// Order-independent digest of the `(peer, uid, version)` set, for comparing views.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn name(n: u8) -> PeerName {
        PeerName([2, 0, 0, 0, 0, n])
    }

    fn endpoint(n: u8) -> Endpoint {
        Endpoint {
            vni: 42,
            mac: [2, 0, 0, 0, 1, n],
            ips: vec![IpAddr::V4(Ipv4Addr::new(10, 32, 0, n))],
        }
    }

    fn rec(peer: u8, uid: u64, version: u64, eps: &[u8]) -> EndpointRecord {
        EndpointRecord {
            peer: name(peer),
            uid,
            version,
            endpoints: eps.iter().map(|&n| endpoint(n)).collect(),
        }
    }

    #[test]
    fn newest_version_wins_and_uid_breaks_ties() {
        let mut store = EndpointStore::new(name(1), 100);
        assert_eq!(store.merge(rec(2, 5, 2, &[1])), EndpointMerge::Changed);
        assert_eq!(store.merge(rec(2, 5, 1, &[1, 2])), EndpointMerge::Unchanged);
        assert_eq!(store.merge(rec(2, 5, 2, &[1])), EndpointMerge::Unchanged);
        assert_eq!(store.merge(rec(2, 5, 3, &[])), EndpointMerge::Changed);
        assert!(store.get(&name(2)).unwrap().endpoints.is_empty());
        assert_eq!(store.merge(rec(2, 4, 3, &[7])), EndpointMerge::Unchanged);
        assert_eq!(store.merge(rec(2, 6, 3, &[7])), EndpointMerge::Changed);
        assert_eq!(store.merge(rec(3, 6, 0, &[7])), EndpointMerge::Unchanged);
        // Order independence.
        let updates = [rec(3, 1, 5, &[1]), rec(3, 2, 5, &[2]), rec(3, 1, 4, &[3])];
        let mut a = EndpointStore::new(name(1), 100);
        let mut b = EndpointStore::new(name(1), 100);
        for u in updates.iter().cloned() {
            a.merge(u);
        }
        for u in updates.iter().rev().cloned() {
            b.merge(u);
        }
        assert_eq!(a.get(&name(3)), b.get(&name(3)));
        assert_eq!(a.fingerprint(), b.fingerprint());
    }

    #[test]
    fn local_changes_bump_and_stale_own_records_are_outbid() {
        let mut store = EndpointStore::new(name(1), 100);
        assert_eq!(store.records().count(), 0, "version 0 is unannounced");
        assert!(store.set_local(vec![endpoint(2), endpoint(1), endpoint(2)]));
        assert_eq!(store.get(&name(1)).unwrap().version, 1);
        assert_eq!(
            store.get(&name(1)).unwrap().endpoints,
            vec![endpoint(1), endpoint(2)]
        );
        assert!(!store.set_local(vec![endpoint(1), endpoint(2)]));
        // Echo of our own record: nothing.
        assert_eq!(
            store.merge(rec(1, 100, 1, &[1, 2])),
            EndpointMerge::Unchanged
        );
        // A previous incarnation announced version 7.
        assert_eq!(store.merge(rec(1, 9, 7, &[9])), EndpointMerge::OwnBumped);
        let own = store.get(&name(1)).unwrap();
        assert_eq!(own.version, 8);
        assert_eq!(own.uid, 100);
        assert_eq!(own.endpoints, vec![endpoint(1), endpoint(2)]);
        // Another incarnation at our exact version must be outbid too.
        assert!(store.outbid_own(9, 8));
        assert_eq!(store.get(&name(1)).unwrap().version, 9);
        assert!(!store.outbid_own(9, 3));
    }

    #[test]
    fn retain_drops_departed_peers_but_never_us() {
        let mut store = EndpointStore::new(name(1), 100);
        store.set_local(vec![endpoint(1)]);
        store.merge(rec(2, 2, 1, &[2]));
        store.merge(rec(3, 3, 1, &[]));
        let dropped = store.retain_peers(|p| *p == name(9));
        assert_eq!(dropped, vec![name(2)]);
        assert!(store.get(&name(1)).is_some());
        assert!(store.get(&name(3)).is_none());
        let mut fresh = EndpointStore::new(name(1), 100);
        fresh.set_local(vec![endpoint(1)]);
        assert_eq!(store.fingerprint(), fresh.fingerprint());
    }

    #[test]
    fn validation_rejects_out_of_range_input() {
        let mut bad = endpoint(1);
        bad.vni = MAX_VNI + 1;
        assert!(matches!(
            EndpointStore::validate(&[bad], 1 << 20),
            Err(EndpointError::VniOutOfRange { .. })
        ));
        let many: Vec<Endpoint> = (0..100).map(endpoint).collect();
        assert!(matches!(
            EndpointStore::validate(&many, 500),
            Err(EndpointError::TooLarge { .. })
        ));
        assert!(EndpointStore::validate(&many, 1 << 20).is_ok());
    }
}
