//! `rmpeer`: tombstones, the ack barrier, the heir's takeover, and a removed peer that
//! comes back.
//!
//! - `rmpeer X` writes `tombstones += (X, X.epoch)`. The winner of `(X, e)` is the peer
//!   that already took it over, else the lowest-named writer of a tombstone for it that is
//!   not itself removed.
//! - Every other live peer acks `(X, e, winner, version of X@e it holds)` once it cannot
//!   reach X (or X has retired epoch `e` itself).
//! - The winner takes over when every live peer acked it and it holds X@e at least at the
//!   highest acked version: X's owned space (minus anything a live record owns), its
//!   grants, its used addresses as reservations (unless released), and from then on any
//!   gift addressed to X@e.
//! - A removed peer that learns of it retires: its final record goes into `retired`, it
//!   starts epoch `e + 1` with no space and re-claims every address its handles hold.

use std::time::Instant;

use mesh::PeerName;

use super::view::owned_of;
use super::{Event, Ipam, RmpeerOutcome};
use crate::addr_set::{AddrRange, AddrSet};
use crate::error::RmpeerError;
use crate::limits;
use crate::record::{Ack, Claim, Inherited, PeerRecord, Reserved, Tombstone};

impl Ipam {
    /// `weft rmpeer`: offers this peer as heir of `peer`'s space. Refused for ourselves, a
    /// reachable peer and an unknown one. Safe to run on several peers at once (the lowest
    /// name wins) and again (idempotent; `free_addresses` then also releases the addresses
    /// kept for its containers).
    pub fn rmpeer(
        &mut self,
        now: Instant,
        peer: PeerName,
        free_addresses: bool,
    ) -> Result<RmpeerOutcome, RmpeerError> {
        if peer == self.cfg.name {
            return Err(RmpeerError::Ourselves);
        }
        if self.reachable.contains(&peer) || self.neighbours.contains_key(&peer) {
            return Err(RmpeerError::Reachable(peer));
        }
        let Some(rec) = self.records.get(&peer) else {
            return Err(RmpeerError::Unknown(peer));
        };
        if self.me.ring.is_none() {
            return Err(RmpeerError::NoRing);
        }
        if !self.synced {
            return Err(RmpeerError::NotSynced);
        }
        let epoch = rec.epoch;
        let key = Tombstone { peer, epoch };
        if self.winner(peer, epoch).is_none() && !self.me.tombstones.contains(&key) {
            if self.me.tombstones.len() >= limits::MAX_PEERS
                || self.me.inherited.len() >= limits::MAX_PEERS
            {
                return Err(RmpeerError::Limit {
                    max: limits::MAX_PEERS,
                });
            }
            self.me.tombstones.push(key);
            self.mark();
        }
        if free_addresses && !self.me.release_reserved.contains(&key) {
            self.me.release_reserved.push(key);
            self.mark();
        }
        self.index_dirty = true;
        self.full_scan = true;
        self.settle(now);
        let rec = self.records.get(&peer).ok_or(RmpeerError::Unknown(peer))?;
        let at = rec.at_epoch(epoch).unwrap_or(rec);
        Ok(RmpeerOutcome {
            peer,
            heir: self.winner(peer, epoch).unwrap_or(self.cfg.name),
            addresses: self.owned_by(at).len(),
            used: at.used.len(),
            waiting_for: self.missing_acks(peer, epoch),
            complete: self.index.inherited.contains_key(&(peer, epoch)),
        })
    }

    /// The live peers whose ack for the winner of `(peer, epoch)` is missing.
    pub(super) fn missing_acks(&self, peer: PeerName, epoch: u32) -> Vec<PeerName> {
        let Some(heir) = self.winner(peer, epoch) else {
            return Vec::new();
        };
        if self.index.inherited.contains_key(&(peer, epoch)) {
            return Vec::new();
        }
        self.all_records()
            .filter(|r| r.peer != peer && r.peer != heir && !self.is_removed(r.peer))
            .filter(|r| {
                !r.acks
                    .iter()
                    .any(|a| a.peer == peer && a.epoch == epoch && a.heir == heir)
            })
            .map(|r| r.peer)
            .collect()
    }

    /// If a valid tombstone names us at our epoch, retire and rejoin with no space.
    pub(super) fn check_removed(&mut self, _now: Instant) {
        let Some(heir) = self.winner(self.cfg.name, self.me.epoch) else {
            return;
        };
        let mut last = self.me.clone();
        last.retired.clear();
        let mut next = PeerRecord::new(self.cfg.name, self.cfg.range);
        next.epoch = self.me.epoch + 1;
        next.version = self.me.version;
        next.ring.clone_from(&self.me.ring);
        next.observer = self.me.observer;
        next.electors = self.me.electors;
        next.paxos.clone_from(&self.me.paxos);
        next.adopted.clone_from(&self.me.adopted);
        next.tombstones.clone_from(&self.me.tombstones);
        next.acks.clone_from(&self.me.acks);
        next.inherited.clone_from(&self.me.inherited);
        next.release_reserved.clone_from(&self.me.release_reserved);
        next.retired = std::mem::take(&mut self.me.retired);
        if next.retired.len() >= limits::MAX_RETIRED {
            next.retired.remove(0);
        }
        next.retired.push(last);
        // Keep every standing claim and re-claim every address our handles hold.
        next.claims.clone_from(&self.me.claims);
        let held: Vec<std::net::Ipv4Addr> =
            self.handles.values().flatten().map(|n| n.addr()).collect();
        for addr in held {
            if !next.claims.iter().any(|c| c.addr == addr) && next.claims.len() < limits::MAX_LIST {
                let seq = self.next_seq();
                next.claims.push(Claim { addr, seq });
            }
        }
        self.me = next;
        self.removed_by = Some(heir);
        self.answered.clear();
        self.index_dirty = true;
        self.full_scan = true;
        self.mark();
        self.events.push_back(Event::Removed {
            heir,
            epoch: self.me.epoch,
        });
    }

    /// Acks, takeovers we win, repairs after a takeover, and garbage collection of
    /// finished ones.
    pub(super) fn takeover_step(&mut self, now: Instant) {
        if self.index_dirty {
            self.rebuild_index();
        }
        let keys: Vec<(PeerName, u32)> = self
            .index
            .tombstones
            .keys()
            .chain(self.index.inherited.keys())
            .copied()
            .collect();
        for (peer, epoch) in keys {
            if peer == self.cfg.name {
                continue;
            }
            let Some(heir) = self.winner(peer, epoch) else {
                continue;
            };
            let done = self.index.inherited.contains_key(&(peer, epoch));
            if done {
                let before = self.me.acks.len();
                self.me
                    .acks
                    .retain(|a| !(a.peer == peer && a.epoch == epoch));
                if self.me.acks.len() != before {
                    self.mark();
                }
                if heir == self.cfg.name {
                    self.repair_after_takeover(peer, epoch);
                }
                continue;
            }
            if heir == self.cfg.name {
                self.try_take_over(now, peer, epoch);
            } else {
                self.write_ack(now, peer, epoch, heir);
            }
        }
        self.prune_retired();
    }

    /// Our version of X@`epoch` (its current record, or the retired one), 0 if none.
    fn seen_version(&self, peer: PeerName, epoch: u32) -> Option<u64> {
        self.records
            .get(&peer)
            .and_then(|r| r.at_epoch(epoch))
            .map(|r| r.version)
    }

    /// Whether X no longer writes epoch `epoch`: it moved past it, or it has been
    /// unreachable for the ack grace (what it sent before dying has arrived by then).
    fn quiet(&mut self, now: Instant, peer: PeerName, epoch: u32) -> bool {
        if self.epoch_of(peer).is_some_and(|e| e > epoch) {
            return true;
        }
        if self.is_reachable(peer) {
            return false;
        }
        let since = *self.unreachable_since.entry(peer).or_insert(now);
        let due = since + self.cfg.timers.ack_grace;
        if due <= now {
            return true;
        }
        self.ack_wakeup = Some(self.ack_wakeup.map_or(due, |w| w.min(due)));
        false
    }

    fn write_ack(&mut self, now: Instant, peer: PeerName, epoch: u32, heir: PeerName) {
        if self.is_removed(self.cfg.name) || !self.quiet(now, peer, epoch) {
            return;
        }
        let ack = Ack {
            peer,
            epoch,
            heir,
            seen_version: self.seen_version(peer, epoch).unwrap_or(0),
        };
        let room = self.me.acks.len() < limits::MAX_PEERS;
        match self
            .me
            .acks
            .iter_mut()
            .find(|a| a.peer == peer && a.epoch == epoch)
        {
            Some(a) if *a == ack => {}
            Some(a) => {
                *a = ack;
                self.mark();
            }
            None if room => {
                self.me.acks.push(ack);
                self.mark();
            }
            None => {}
        }
    }

    fn try_take_over(&mut self, now: Instant, peer: PeerName, epoch: u32) {
        if !self.synced
            || !self.missing_acks(peer, epoch).is_empty()
            || !self.quiet(now, peer, epoch)
        {
            return;
        }
        let Some(ours) = self.seen_version(peer, epoch) else {
            return;
        };
        let highest = self
            .records
            .values()
            .flat_map(|r| r.acks.iter())
            .filter(|a| a.peer == peer && a.epoch == epoch)
            .map(|a| a.seen_version)
            .max()
            .unwrap_or(0);
        if ours < highest {
            return;
        }
        let Some(x) = self
            .records
            .get(&peer)
            .and_then(|r| r.at_epoch(epoch))
            .cloned()
        else {
            return;
        };
        self.inherit(&x);
    }

    fn inherit(&mut self, x: &PeerRecord) {
        let ring = self.ring.clone();
        let range = self.cfg.range;
        let mut live = self.me.owned.clone();
        for r in self.records.values() {
            if r.peer != x.peer && !self.is_removed(r.peer) {
                live = live.union(&owned_of(r, ring.as_ref(), range));
            }
        }
        let theirs = owned_of(x, ring.as_ref(), range);
        let take = theirs.subtract(&live);
        if take.len() != theirs.len() {
            self.events.push_back(Event::Conflict {
                handle: None,
                addr: theirs
                    .intersect(&live)
                    .ranges()
                    .first()
                    .map_or(std::net::Ipv4Addr::UNSPECIFIED, |r| r.start.into()),
                holder: format!(
                    "space of removed peer {} is also owned by a live peer; that part stays with it",
                    x.peer
                ),
            });
        }
        let release = self.index.release.contains(&(x.peer, x.epoch));
        let used = x.used.intersect(&take);
        let granted = AddrSet::from_unsorted(
            x.grants
                .iter()
                .filter(|g| g.granted)
                .map(|g| AddrRange::single(g.addr.into()))
                .collect(),
        )
        .intersect(&take);
        let mut carried = AddrSet::new();
        for r in &x.reserved {
            let addrs = r.addrs.intersect(&take);
            if !addrs.is_empty() && !self.index.release.contains(&(r.peer, r.epoch)) {
                carried = carried.union(&addrs);
                self.me.reserved.push(Reserved {
                    peer: r.peer,
                    epoch: r.epoch,
                    addrs,
                });
            }
        }
        let own_containers = used.subtract(&granted).subtract(&carried);
        self.me.owned = self.me.owned.union(&take);
        self.me.used = self.me.used.union(&granted).union(&carried);
        let mut reserved = 0;
        if !release && !own_containers.is_empty() {
            reserved = own_containers.len();
            self.me.used = self.me.used.union(&own_containers);
            self.me.reserved.push(Reserved {
                peer: x.peer,
                epoch: x.epoch,
                addrs: own_containers,
            });
        }
        for g in x
            .grants
            .iter()
            .filter(|g| g.granted && take.contains(g.addr.into()))
        {
            if self.me.grants.len() < limits::MAX_LIST {
                self.me.grants.push(g.clone());
            }
        }
        self.me.inherited.push(Inherited {
            peer: x.peer,
            epoch: x.epoch,
            version: x.version,
            gifts: x.adopted.clone(),
        });
        self.me
            .acks
            .retain(|a| !(a.peer == x.peer && a.epoch == x.epoch));
        self.index_dirty = true;
        self.full_scan = true;
        self.mark();
        self.events.push_back(Event::Inherited {
            peer: x.peer,
            addresses: take.len(),
            reserved,
        });
    }

    /// A record of X@e newer than the one our takeover used (the barrier's conditions
    /// were not met, e.g. `rmpeer` of a peer that was alive in a partition): keep what it
    /// allocated since reserved where it is still free in our space, report the rest.
    fn repair_after_takeover(&mut self, peer: PeerName, epoch: u32) {
        let Some(x) = self.records.get(&peer).and_then(|r| r.at_epoch(epoch)) else {
            return;
        };
        let Some(i) = self
            .me
            .inherited
            .iter()
            .position(|h| h.peer == peer && h.epoch == epoch)
        else {
            return;
        };
        if x.version <= self.me.inherited[i].version {
            return;
        }
        let version = x.version;
        // Space it gave away after the version we used belongs to the recipient: give
        // it up where we have not used it.
        let me = self.cfg.name;
        let given = AddrSet::from_unsorted(
            x.giving
                .iter()
                .filter(|g| g.to != me)
                .filter(|g| {
                    !self
                        .me
                        .inherited
                        .iter()
                        .any(|i| i.peer == g.to && i.epoch == g.to_epoch)
                })
                .map(|g| g.block)
                .collect(),
        )
        .intersect(&self.me.owned);
        let given_used = given.intersect(&self.me.used);
        let newly = x.used.intersect(&self.me.owned);
        let clash = newly.intersect(&self.me.used);
        let fresh = newly.subtract(&self.me.used);
        self.me.inherited[i].version = version;
        self.me.owned = self.me.owned.subtract(&given.subtract(&given_used));
        for r in given_used.ranges() {
            self.events.push_back(Event::Conflict {
                handle: None,
                addr: r.start.into(),
                holder: format!(
                    "removed peer {peer} had given this space away before its removal, and we allocated from it"
                ),
            });
        }
        if !fresh.is_empty() {
            self.me.used = self.me.used.union(&fresh);
            match self
                .me
                .reserved
                .iter_mut()
                .find(|r| r.peer == peer && r.epoch == epoch)
            {
                Some(r) => r.addrs = r.addrs.union(&fresh),
                None => self.me.reserved.push(Reserved {
                    peer,
                    epoch,
                    addrs: fresh,
                }),
            }
        }
        for r in clash.ranges() {
            let reserved_already = self
                .me
                .reserved
                .iter()
                .any(|x| x.peer == peer && x.epoch == epoch && x.addrs.contains(r.start));
            if !reserved_already {
                self.events.push_back(Event::Conflict {
                    handle: None,
                    addr: r.start.into(),
                    holder: format!(
                        "removed peer {peer} handed it out after its removal, and so did we"
                    ),
                });
            }
        }
        self.mark();
    }

    /// Drops our retired records once taken over and every gift in them adopted.
    fn prune_retired(&mut self) {
        let me = self.cfg.name;
        let keep: Vec<bool> = self
            .me
            .retired
            .iter()
            .map(|r| {
                !self.index.inherited.contains_key(&(me, r.epoch))
                    || r.giving.iter().any(|g| !self.gift_adopted(me, g))
            })
            .collect();
        if keep.iter().all(|k| *k) {
            return;
        }
        let mut it = keep.into_iter();
        self.me.retired.retain(|_| it.next().unwrap_or(true));
        self.index_dirty = true;
        self.mark();
    }
}
