//! What this peer owes others, read from their records: adopt gifts addressed to us,
//! answer claims in our space and requests for space, and drop entries of ours that
//! have been answered.

use std::net::Ipv4Addr;

use mesh::PeerName;

use super::Ipam;
use super::view::allocatable;
use crate::addr_set::{AddrRange, AddrSet};
use crate::limits;
use crate::record::{Gift, Grant, NoSpace};

impl Ipam {
    /// The records to examine this pass: the changed ones, or all.
    fn scan_set(&self) -> Vec<PeerName> {
        if self.full_scan {
            self.records.keys().copied().collect()
        } else {
            self.dirty
                .iter()
                .copied()
                .filter(|p| self.records.contains_key(p))
                .collect()
        }
    }

    /// Adopts gifts addressed to us at our epoch, and gifts to peers we took over.
    pub(super) fn adopt_gifts(&mut self) {
        let me = self.cfg.name;
        let epoch = self.me.epoch;
        // (giver, gift, the removed peer@epoch we adopt it for, if not for ourselves)
        let mut found: Vec<(PeerName, Gift, Option<Removed>)> = Vec::new();
        for p in self.scan_set() {
            let Some(rec) = self.records.get(&p) else {
                continue;
            };
            for layer in std::iter::once(rec).chain(rec.retired.iter()) {
                for g in &layer.giving {
                    if g.to == me && g.to_epoch == epoch && g.seq > self.me.adopted_from(p) {
                        found.push((p, g.clone(), None));
                    } else if let Some(inh) = self
                        .me
                        .inherited
                        .iter()
                        .find(|i| i.peer == g.to && i.epoch == g.to_epoch)
                    {
                        let done = inh.gifts.iter().find(|(q, _)| *q == p).map_or(0, |x| x.1);
                        if g.seq > done {
                            found.push((p, g.clone(), Some((g.to, g.to_epoch))));
                        }
                    }
                }
            }
        }
        for (giver, gift, on_behalf) in found {
            let block = AddrSet::from_range(gift.block);
            if !block.is_disjoint(&self.me.owned) {
                // Already adopted (the same gift seen in two layers); never own twice.
                continue;
            }
            self.me.owned = self.me.owned.union(&block);
            match on_behalf {
                None => set_max(&mut self.me.adopted, giver, gift.seq),
                Some((peer, e)) => {
                    if let Some(inh) = self
                        .me
                        .inherited
                        .iter_mut()
                        .find(|i| i.peer == peer && i.epoch == e)
                    {
                        set_max(&mut inh.gifts, giver, gift.seq);
                    }
                }
            }
            self.full_scan = true;
            self.mark();
        }
    }

    /// Answers claims of addresses in our space; withdraws grants whose claim is gone.
    pub(super) fn answer_claims(&mut self) {
        let me = self.cfg.name;
        for p in self.scan_set() {
            let Some(rec) = self.records.get(&p) else {
                continue;
            };
            if rec.peer == me || self.is_removed(p) {
                continue;
            }
            let epoch = rec.epoch;
            let claims: Vec<(Ipv4Addr, u64)> = rec
                .claims
                .iter()
                .filter(|c| self.me.owned.contains(c.addr.into()))
                .map(|c| (c.addr, c.seq))
                .collect();
            for (addr, seq) in claims {
                self.answer_claim(p, epoch, addr, seq);
            }
        }
        self.withdraw_grants();
        self.release_reservations();
    }

    fn answer_claim(&mut self, claimer: PeerName, epoch: u32, addr: Ipv4Addr, seq: u64) {
        let a = u32::from(addr);
        if let Some(i) = self
            .me
            .grants
            .iter()
            .position(|g| g.claimer == claimer && g.addr == addr)
        {
            let g = &mut self.me.grants[i];
            if g.claimer_epoch == epoch && g.seq == seq {
                return;
            }
            if g.granted {
                // The same claimer asks again (a new claim, or its new epoch re-claiming):
                // the address stays its.
                g.claimer_epoch = epoch;
                g.seq = seq;
                self.mark();
                return;
            }
            self.me.grants.remove(i);
            self.mark();
        }
        if !self.synced || self.me.grants.len() >= limits::MAX_LIST {
            return;
        }
        let reserved_for_it = self
            .me
            .reserved
            .iter_mut()
            .find(|r| r.peer == claimer && r.epoch < epoch && r.addrs.contains(a));
        let granted = if let Some(r) = reserved_for_it {
            r.addrs.remove(a);
            true
        } else if self.me.used.contains(a) {
            false
        } else {
            self.me.used.insert(a);
            true
        };
        self.me.grants.push(Grant {
            claimer,
            claimer_epoch: epoch,
            addr,
            seq,
            granted,
        });
        self.mark();
    }

    /// Drops grants whose claim is gone; a granted address becomes free again, except
    /// for a removed claimer's (its containers may still run) unless released.
    fn withdraw_grants(&mut self) {
        let mut freed: Vec<Ipv4Addr> = Vec::new();
        let mut keep = Vec::with_capacity(self.me.grants.len());
        for g in std::mem::take(&mut self.me.grants) {
            let drop = match self.records.get(&g.claimer) {
                None => false,
                Some(c) if c.epoch == g.claimer_epoch => {
                    let still = c.claims.iter().any(|x| x.addr == g.addr && x.seq == g.seq);
                    let released = self.index.release.contains(&(g.claimer, g.claimer_epoch))
                        && self.is_removed(g.claimer);
                    !still || released
                }
                Some(c) if c.epoch > g.claimer_epoch => {
                    // It came back: it re-claims what its containers still hold in its
                    // first record at the new epoch; anything else is free.
                    !g.granted || (self.synced && !c.claims.iter().any(|x| x.addr == g.addr))
                }
                Some(_) => false,
            };
            if drop {
                if g.granted {
                    freed.push(g.addr);
                }
            } else {
                keep.push(g);
            }
        }
        self.me.grants = keep;
        if !freed.is_empty() {
            for addr in freed {
                self.unuse(addr);
            }
            self.mark();
        }
    }

    /// Frees `addr` in our `used` unless something else still holds it.
    fn unuse(&mut self, addr: Ipv4Addr) {
        let a = u32::from(addr);
        let local = self.handles.values().flatten().any(|n| n.addr() == addr);
        let granted = self.me.grants.iter().any(|g| g.granted && g.addr == addr);
        let reserved = self.me.reserved.iter().any(|r| r.addrs.contains(a));
        if !local && !granted && !reserved {
            self.me.used.remove(a);
        }
    }

    /// Releases reservations that `rmpeer --free-addresses` asked for, and those a
    /// returned peer did not re-claim.
    fn release_reservations(&mut self) {
        let mut freed = AddrSet::new();
        let mut reserved = std::mem::take(&mut self.me.reserved);
        for r in &mut reserved {
            if self.index.release.contains(&(r.peer, r.epoch)) {
                freed = freed.union(&r.addrs);
                r.addrs = AddrSet::new();
                continue;
            }
            let Some(current) = self.records.get(&r.peer) else {
                continue;
            };
            if !self.synced || current.epoch <= r.epoch {
                continue;
            }
            let claimed = AddrSet::from_unsorted(
                current
                    .claims
                    .iter()
                    .map(|c| AddrRange::single(c.addr.into()))
                    .collect(),
            );
            let unclaimed = r.addrs.subtract(&claimed);
            r.addrs = r.addrs.intersect(&claimed);
            freed = freed.union(&unclaimed);
        }
        let before = reserved.len();
        reserved.retain(|r| !r.addrs.is_empty());
        let dropped = reserved.len() != before;
        self.me.reserved = reserved;
        if !freed.is_empty() || dropped {
            self.unuse_set(&freed);
            self.mark();
        }
    }

    /// Frees the addresses of `set` in our `used` that nothing else holds.
    fn unuse_set(&mut self, set: &AddrSet) {
        let local = AddrSet::from_unsorted(
            self.handles
                .values()
                .flatten()
                .map(|n| AddrRange::single(n.addr().into()))
                .collect(),
        );
        let granted = AddrSet::from_unsorted(
            self.me
                .grants
                .iter()
                .filter(|g| g.granted)
                .map(|g| AddrRange::single(g.addr.into()))
                .collect(),
        );
        let reserved = self
            .me
            .reserved
            .iter()
            .fold(AddrSet::new(), |acc, r| acc.union(&r.addrs));
        let free = set.subtract(&local).subtract(&granted).subtract(&reserved);
        self.me.used = self.me.used.subtract(&free);
    }

    /// Answers requests for space addressed to us: half of our largest free run in the
    /// subnet, or "no space".
    pub(super) fn answer_requests(&mut self) {
        if !self.synced || self.me.ring.is_none() {
            return;
        }
        let me = self.cfg.name;
        let mut todo: Vec<(PeerName, u32, u64, ipnet::Ipv4Net)> = Vec::new();
        for p in self.scan_set() {
            let Some(rec) = self.records.get(&p) else {
                continue;
            };
            if rec.ring != self.me.ring || self.is_removed(p) {
                continue;
            }
            for req in &rec.space_requests {
                if req.donor == me && self.answered.get(&p).is_none_or(|s| *s < req.seq) {
                    todo.push((p, rec.epoch, req.seq, req.subnet));
                }
            }
        }
        for (requester, epoch, seq, subnet) in todo {
            if self.me.giving.len() >= limits::MAX_LIST {
                break;
            }
            let free = self.me.owned.subtract(&self.me.used);
            match free.largest_run(allocatable(subnet)) {
                Some(run) => {
                    let half = run.len() / 2;
                    let block = if half == 0 {
                        run
                    } else {
                        AddrRange {
                            start: run.end - (half as u32 - 1),
                            end: run.end,
                        }
                    };
                    self.me.owned.remove_range(block);
                    self.gift_seq += 1;
                    self.me.giving.push(Gift {
                        block,
                        to: requester,
                        to_epoch: epoch,
                        seq: self.gift_seq,
                    });
                }
                None => {
                    self.me.no_space.retain(|n| n.requester != requester);
                    self.me.no_space.push(NoSpace { requester, seq });
                }
            }
            self.answered.insert(requester, seq);
            self.mark();
        }
    }

    /// Drops our gifts once adopted and our refusals once the request is gone.
    pub(super) fn clean_up_own_lists(&mut self) {
        let me = self.cfg.name;
        let before = self.me.giving.len();
        let giving = std::mem::take(&mut self.me.giving);
        let kept: Vec<Gift> = giving
            .into_iter()
            .filter(|g| !self.gift_adopted(me, g))
            .collect();
        self.me.giving = kept;
        if self.me.giving.len() != before {
            self.mark();
        }
        let before = self.me.no_space.len();
        let no_space = std::mem::take(&mut self.me.no_space);
        let kept: Vec<NoSpace> = no_space
            .into_iter()
            .filter(|n| {
                self.records.get(&n.requester).is_some_and(|r| {
                    r.space_requests
                        .iter()
                        .any(|q| q.donor == me && q.seq == n.seq)
                })
            })
            .collect();
        self.me.no_space = kept;
        if self.me.no_space.len() != before {
            self.mark();
        }
    }

    /// Whether `gift` (from `giver`) was adopted by its recipient or the recipient's heir.
    pub(super) fn gift_adopted(&self, giver: PeerName, gift: &Gift) -> bool {
        let by_recipient = self
            .record_of(gift.to)
            .and_then(|r| r.at_epoch(gift.to_epoch))
            .is_some_and(|r| r.adopted_from(giver) >= gift.seq);
        by_recipient
            || self
                .index
                .inherited
                .get(&(gift.to, gift.to_epoch))
                .and_then(|heir| self.record_of(*heir))
                .is_some_and(|h| {
                    std::iter::once(h)
                        .chain(h.retired.iter())
                        .flat_map(|l| l.inherited.iter())
                        .filter(|i| i.peer == gift.to && i.epoch == gift.to_epoch)
                        .flat_map(|i| i.gifts.iter())
                        .any(|(q, s)| *q == giver && *s >= gift.seq)
                })
    }
}

/// A removed peer at an epoch.
type Removed = (PeerName, u32);

/// Sets `list[key]` to at least `value`.
pub(super) fn set_max(list: &mut Vec<(PeerName, u64)>, key: PeerName, value: u64) {
    match list.iter_mut().find(|(k, _)| *k == key) {
        Some(entry) => entry.1 = entry.1.max(value),
        None => list.push((key, value)),
    }
}
