//! Read-only views over the records: who owns what, who is removed, who wins a takeover.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::Ipv4Net;
use mesh::PeerName;

use super::Ipam;
use crate::addr_set::{AddrRange, AddrSet};
use crate::record::{PeerRecord, RingId};

/// Every removal in the records, indexed (rebuilt when a record with tombstones,
/// inheritances or releases changes, or a peer's epoch does).
#[derive(Debug, Clone, Default)]
pub(super) struct TakeoverIndex {
    /// `(removed, epoch)` → the peers that wrote a tombstone for it.
    pub(super) tombstones: BTreeMap<(PeerName, u32), BTreeSet<PeerName>>,
    /// `(removed, epoch)` → the peer that took it over.
    pub(super) inherited: BTreeMap<(PeerName, u32), PeerName>,
    /// `(removed, epoch)` whose reserved addresses someone asked to release.
    pub(super) release: BTreeSet<(PeerName, u32)>,
}

/// The addresses a subnet hands out: all of it, minus its network and broadcast
/// addresses when it has more than two.
pub(super) fn allocatable(subnet: Ipv4Net) -> AddrRange {
    let all = AddrRange::of_net(subnet);
    if subnet.prefix_len() <= 30 {
        AddrRange {
            start: all.start + 1,
            end: all.end - 1,
        }
    } else {
        all
    }
}

/// The space `rec` owns under `ring`: its `owned` once it joined the ring, else the
/// initial share the ring gives it (nobody else can own that share).
pub(super) fn owned_of(rec: &PeerRecord, ring: Option<&RingId>, range: Ipv4Net) -> AddrSet {
    match (&rec.ring, ring) {
        (None, Some(ring)) if rec.epoch == 0 => ring.initial_share(range, rec.peer),
        _ => rec.owned.clone(),
    }
}

/// Whether the owned space of `rec` (as [`owned_of`]) contains `addr`.
fn owns(rec: &PeerRecord, ring: Option<&RingId>, range: Ipv4Net, addr: u32) -> bool {
    match (&rec.ring, ring) {
        (None, Some(ring)) if rec.epoch == 0 => ring.initial_share(range, rec.peer).contains(addr),
        _ => rec.owned.contains(addr),
    }
}

impl Ipam {
    pub(super) fn rebuild_index(&mut self) {
        let mut index = TakeoverIndex::default();
        for rec in self.all_records() {
            for layer in std::iter::once(rec).chain(rec.retired.iter()) {
                for i in &layer.inherited {
                    index.inherited.insert((i.peer, i.epoch), rec.peer);
                }
            }
            for t in &rec.tombstones {
                index
                    .tombstones
                    .entry((t.peer, t.epoch))
                    .or_default()
                    .insert(rec.peer);
            }
            for t in &rec.release_reserved {
                index.release.insert((t.peer, t.epoch));
            }
        }
        self.index = index;
        self.index_dirty = false;
    }

    /// The current epoch of `peer` as we know it.
    pub(super) fn epoch_of(&self, peer: PeerName) -> Option<u32> {
        self.record_of(peer).map(|r| r.epoch)
    }

    /// Who takes over `peer`@`epoch`: the peer that already did, else the lowest-named
    /// writer of a tombstone for it that is not itself removed.
    pub(super) fn winner(&self, peer: PeerName, epoch: u32) -> Option<PeerName> {
        if let Some(heir) = self.index.inherited.get(&(peer, epoch)) {
            return Some(*heir);
        }
        let issuers = self.index.tombstones.get(&(peer, epoch))?;
        issuers.iter().copied().find(|issuer| {
            let e = self.epoch_of(*issuer).unwrap_or(0);
            *issuer != peer && !self.index.tombstones.contains_key(&(*issuer, e))
        })
    }

    /// Whether `peer` at its current epoch is removed (a valid tombstone or a takeover).
    pub(super) fn is_removed(&self, peer: PeerName) -> bool {
        self.epoch_of(peer)
            .is_some_and(|e| self.winner(peer, e).is_some())
    }

    /// The peers (other than us) whose records count as members for barriers and
    /// donors: not removed.
    pub(super) fn live_others(&self) -> impl Iterator<Item = &PeerRecord> {
        self.records.values().filter(|r| !self.is_removed(r.peer))
    }

    pub(super) fn owned_by(&self, rec: &PeerRecord) -> AddrSet {
        owned_of(rec, self.ring.as_ref(), self.cfg.range)
    }

    /// The free addresses of `rec` inside `within` (from our view of its record).
    pub(super) fn free_in(&self, rec: &PeerRecord, within: AddrRange) -> u64 {
        let owned = self.owned_by(rec).intersect_range(within);
        owned.len() - rec.used.count_in(within).min(owned.len())
    }

    /// The live record whose space holds `addr`, if we know one (ours included).
    pub(super) fn owner_of(&self, addr: u32) -> Option<&PeerRecord> {
        let ring = self.ring.as_ref();
        self.all_records()
            .find(|r| owns(r, ring, self.cfg.range, addr) && !self.is_removed(r.peer))
    }

    /// A removed, not yet taken over peer whose space holds `addr`: `(removed, heir)`.
    pub(super) fn removed_owner_of(&self, addr: u32) -> Option<(PeerName, PeerName)> {
        let ring = self.ring.as_ref();
        self.records
            .values()
            .flat_map(|r| std::iter::once(r).chain(r.retired.iter()))
            .find_map(|r| {
                let heir = self.winner(r.peer, r.epoch)?;
                let taken = self.index.inherited.contains_key(&(r.peer, r.epoch));
                (!taken && owns(r, ring, self.cfg.range, addr)).then_some((r.peer, heir))
            })
    }

    /// A gift in transit holding `addr`: its recipient.
    pub(super) fn gift_holding(&self, addr: u32) -> Option<PeerName> {
        self.all_records()
            .flat_map(|r| r.giving.iter())
            .find(|g| g.block.contains(addr))
            .map(|g| g.to)
    }

    /// Whether `peer` can be reached now (ourselves always).
    pub(super) fn is_reachable(&self, peer: PeerName) -> bool {
        peer == self.cfg.name
            || self.reachable.contains(&peer)
            || self.neighbours.contains_key(&peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocatable_skips_network_and_broadcast_only_when_there_are_hosts() {
        let r = allocatable("10.0.0.0/24".parse().unwrap());
        assert_eq!((r.start, r.end), (0x0a00_0001, 0x0a00_00fe));
        let r = allocatable("10.0.0.0/30".parse().unwrap());
        assert_eq!(r.len(), 2);
        let r = allocatable("10.0.0.0/31".parse().unwrap());
        assert_eq!(r.len(), 2);
        let r = allocatable("10.0.0.7/32".parse().unwrap());
        assert_eq!(r.len(), 1);
    }
}
