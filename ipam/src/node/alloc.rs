//! Requests: allocate, claim, release, and the progress of waiting requests (asking for
//! space, waiting for grants).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::Instant;

use ipnet::Ipv4Net;
use mesh::PeerName;

use super::view::{allocatable, owned_of};
use super::{Event, Ipam, Outcome, Pending, RequestId, Want};
use crate::addr_set::{AddrRange, AddrSet};
use crate::error::{AllocError, WaitingFor};
use crate::handle::Handle;
use crate::limits;
use crate::record::{Claim, PeerRecord, SpaceRequest};

impl Ipam {
    /// An address for `handle` in `subnet` (`None`: the default subnet), from our own space
    /// at once if we have some, else by asking a peer with space (until `deadline`).
    /// Idempotent: the same handle and subnet get the same address.
    pub fn allocate(
        &mut self,
        now: Instant,
        handle: &Handle,
        subnet: Option<Ipv4Net>,
        deadline: Instant,
    ) -> Outcome {
        let subnet = subnet.unwrap_or(self.cfg.default_subnet);
        if let Err(e) = self.check_subnet(subnet) {
            return Outcome::Failed(e);
        }
        if let Some(held) = self.held_in(handle, subnet) {
            return Outcome::Done(held);
        }
        let want = Want::Alloc { subnet };
        if let Some(id) = self.pending_for(handle, want) {
            return Outcome::Pending(id);
        }
        if let Err(e) = self.check_limits(handle) {
            return Outcome::Failed(e);
        }
        if self.can_allocate()
            && let Some(addr) = self.own_free(subnet)
        {
            let net = self.assign(handle, addr, subnet.prefix_len());
            self.settle(now);
            return Outcome::Done(net);
        }
        self.enqueue(now, handle, want, deadline)
    }

    /// The explicit address `addr` (with its subnet's prefix) for `handle`: taken at once
    /// in our own space, asked of its owner otherwise; refused if someone holds it.
    pub fn claim(
        &mut self,
        now: Instant,
        handle: &Handle,
        addr: Ipv4Net,
        deadline: Instant,
    ) -> Outcome {
        let ip = addr.addr();
        if !self.cfg.range.contains(&ip) {
            return Outcome::Failed(AllocError::AddressOutsideRange {
                addr,
                range: self.cfg.range,
            });
        }
        let subnet = addr.trunc();
        if subnet.prefix_len() <= 30 && (ip == subnet.network() || ip == subnet.broadcast()) {
            return Outcome::Failed(AllocError::AddressReserved { addr: ip, subnet });
        }
        if let Some(held) = self
            .addresses_of(handle)
            .into_iter()
            .find(|n| n.addr() == ip)
        {
            return Outcome::Done(held);
        }
        if let Some(other) = self.local_holder(ip) {
            return Outcome::Failed(AllocError::InUseByHandle {
                addr: ip,
                handle: other.clone(),
            });
        }
        let want = Want::Claim { addr, seq: None };
        if let Some(id) = self.pending_for(handle, want) {
            return Outcome::Pending(id);
        }
        if let Err(e) = self.check_limits(handle) {
            return Outcome::Failed(e);
        }
        if self.can_allocate() {
            match self.claim_now(handle, addr) {
                Ok(Some(net)) => {
                    self.settle(now);
                    return Outcome::Done(net);
                }
                Ok(None) => {}
                Err(e) => return Outcome::Failed(e),
            }
        }
        self.enqueue(now, handle, want, deadline)
    }

    /// Releases `handle`'s addresses (`addr`: only that one); waiting requests of the
    /// handle fail with [`AllocError::Cancelled`]. Returns what was released; idempotent.
    pub fn release(
        &mut self,
        now: Instant,
        handle: &Handle,
        addr: Option<Ipv4Addr>,
    ) -> Vec<Ipv4Net> {
        let released = self.release_inner(handle, addr);
        self.settle(now);
        released
    }

    /// Releases every handle for which `keep` is false (relaunch cleanup, CNI GC);
    /// returns what was released.
    pub fn retain_handles(
        &mut self,
        now: Instant,
        keep: &dyn Fn(&Handle) -> bool,
    ) -> Vec<(Handle, Ipv4Net)> {
        let doomed: BTreeSet<Handle> = self
            .handles
            .keys()
            .chain(self.pending.values().map(|p| &p.handle))
            .filter(|h| !keep(h))
            .cloned()
            .collect();
        let mut out = Vec::new();
        for handle in doomed {
            for net in self.release_inner(&handle, None) {
                out.push((handle.clone(), net));
            }
        }
        self.settle(now);
        out
    }

    fn release_inner(&mut self, handle: &Handle, addr: Option<Ipv4Addr>) -> Vec<Ipv4Net> {
        let cancel: Vec<RequestId> = self
            .pending
            .iter()
            .filter(|(_, p)| {
                p.handle == *handle
                    && match (addr, p.want) {
                        (None, _) => true,
                        (Some(a), Want::Claim { addr: n, .. }) => n.addr() == a,
                        (Some(_), Want::Alloc { .. }) => false,
                    }
            })
            .map(|(id, _)| *id)
            .collect();
        for id in cancel {
            self.fail_pending(id, AllocError::Cancelled);
        }
        let Some(nets) = self.handles.remove(handle) else {
            return Vec::new();
        };
        let (gone, kept): (Vec<Ipv4Net>, Vec<Ipv4Net>) = nets
            .into_iter()
            .partition(|n| addr.is_none_or(|a| n.addr() == a));
        if !kept.is_empty() {
            self.handles.insert(handle.clone(), kept);
        }
        for net in &gone {
            self.free_address(net.addr());
        }
        gone
    }

    /// Returns an address a local handle held to the free pool (or withdraws its claim).
    fn free_address(&mut self, ip: Ipv4Addr) {
        let a = u32::from(ip);
        let granted = self.me.grants.iter().any(|g| g.granted && g.addr == ip);
        let reserved = self.me.reserved.iter().any(|r| r.addrs.contains(a));
        if self.me.owned.contains(a) && !granted && !reserved && self.me.used.remove(a) {
            self.mark();
        }
        let before = self.me.claims.len();
        self.me.claims.retain(|c| c.addr != ip);
        if self.me.claims.len() != before {
            self.mark();
        }
    }

    pub(super) fn can_allocate(&self) -> bool {
        self.me.ring.is_some() && self.synced
    }

    /// What a request waits for while this peer cannot allocate at all.
    fn why_not_ready(&self) -> WaitingFor {
        if self.me.ring.is_some() {
            return WaitingFor::FirstSync;
        }
        if self.me.observer || self.me.electors == 0 {
            return WaitingFor::Ring;
        }
        let n = self.me.electors;
        let heard: Vec<_> = self
            .all_records()
            .filter(|r| !r.observer && r.electors == n)
            .map(|r| r.peer)
            .collect();
        let electors = usize::from(n).max(heard.len());
        WaitingFor::Consensus {
            quorum: electors / 2 + 1,
            electors,
            heard,
        }
    }

    fn check_subnet(&self, subnet: Ipv4Net) -> Result<(), AllocError> {
        if subnet.trunc() != subnet {
            return Err(AllocError::SubnetNotNetwork {
                subnet,
                network: subnet.trunc(),
            });
        }
        if !self.cfg.range.contains(&subnet) {
            return Err(AllocError::SubnetOutsideRange {
                subnet,
                range: self.cfg.range,
            });
        }
        Ok(())
    }

    fn check_limits(&self, handle: &Handle) -> Result<(), AllocError> {
        if !self.handles.contains_key(handle) && self.handles.len() >= limits::MAX_HANDLES {
            return Err(AllocError::Limit {
                what: "handles",
                max: limits::MAX_HANDLES,
            });
        }
        if self.pending.len() >= limits::MAX_PENDING {
            return Err(AllocError::Limit {
                what: "waiting requests",
                max: limits::MAX_PENDING,
            });
        }
        if self.me.claims.len() >= limits::MAX_LIST {
            return Err(AllocError::Limit {
                what: "claims in other peers' space",
                max: limits::MAX_LIST,
            });
        }
        Ok(())
    }

    /// The address `handle` already holds in `subnet`.
    fn held_in(&self, handle: &Handle, subnet: Ipv4Net) -> Option<Ipv4Net> {
        self.handles
            .get(handle)?
            .iter()
            .find(|n| n.prefix_len() == subnet.prefix_len() && subnet.contains(&n.addr()))
            .copied()
    }

    fn local_holder(&self, ip: Ipv4Addr) -> Option<&Handle> {
        self.handles
            .iter()
            .find(|(_, nets)| nets.iter().any(|n| n.addr() == ip))
            .map(|(h, _)| h)
    }

    fn pending_for(&self, handle: &Handle, want: Want) -> Option<RequestId> {
        self.pending
            .iter()
            .find(|(_, p)| {
                p.handle == *handle
                    && match (p.want, want) {
                        (Want::Alloc { subnet: a }, Want::Alloc { subnet: b }) => a == b,
                        (Want::Claim { addr: a, .. }, Want::Claim { addr: b, .. }) => {
                            a.addr() == b.addr()
                        }
                        _ => false,
                    }
            })
            .map(|(id, _)| *id)
    }

    /// The lowest free address of our space in `subnet`.
    pub(super) fn own_free(&self, subnet: Ipv4Net) -> Option<Ipv4Addr> {
        self.me
            .owned
            .first_free(allocatable(subnet), &self.me.used)
            .map(Ipv4Addr::from)
    }

    fn assign(&mut self, handle: &Handle, ip: Ipv4Addr, prefix: u8) -> Ipv4Net {
        self.me.used.insert(u32::from(ip));
        let net = Ipv4Net::new(ip, prefix).unwrap_or_else(|_| Ipv4Net::from(ip));
        self.handles.entry(handle.clone()).or_default().push(net);
        self.mark();
        net
    }

    /// Why `a` in our own `used` cannot be claimed.
    fn holder_error(&self, ip: Ipv4Addr) -> AllocError {
        let a = u32::from(ip);
        if let Some(h) = self.local_holder(ip) {
            return AllocError::InUseByHandle {
                addr: ip,
                handle: h.clone(),
            };
        }
        if let Some(r) = self.me.reserved.iter().find(|r| r.addrs.contains(a)) {
            return AllocError::ReservedForRemoved {
                addr: ip,
                removed: r.peer,
            };
        }
        let peer = self
            .me
            .grants
            .iter()
            .find(|g| g.granted && g.addr == ip)
            .map_or(self.cfg.name, |g| g.claimer);
        AllocError::InUseByPeer { addr: ip, peer }
    }

    /// Whether `owner` holds `ip` used for us (a grant or reservation from an earlier
    /// epoch of ours that a re-claim takes back).
    fn used_for_us(&self, owner: &PeerRecord, ip: Ipv4Addr) -> bool {
        let me = self.cfg.name;
        owner
            .grants
            .iter()
            .any(|g| g.granted && g.addr == ip && g.claimer == me)
            || owner
                .reserved
                .iter()
                .any(|r| r.peer == me && r.epoch < self.me.epoch && r.addrs.contains(ip.into()))
    }

    /// Claims `addr` in our own space, or says it must be asked of its owner (`None`).
    fn claim_now(&mut self, handle: &Handle, addr: Ipv4Net) -> Result<Option<Ipv4Net>, AllocError> {
        let ip = addr.addr();
        let a = u32::from(ip);
        if self.me.owned.contains(a) {
            if self.me.used.contains(a) {
                return Err(self.holder_error(ip));
            }
            return Ok(Some(self.assign(handle, ip, addr.prefix_len())));
        }
        if let Some(owner) = self.owner_of(a) {
            if owner.used.contains(a) && !self.used_for_us(owner, ip) {
                return Err(refusal(owner, ip));
            }
            if !self.is_reachable(owner.peer) {
                return Err(AllocError::OwnerUnreachable {
                    addr: ip,
                    peer: owner.peer,
                });
            }
        }
        Ok(None)
    }

    fn claim_waiting(&self, ip: Ipv4Addr) -> WaitingFor {
        let a = u32::from(ip);
        if let Some(owner) = self.owner_of(a) {
            return WaitingFor::Grant {
                addr: ip,
                owner: owner.peer,
            };
        }
        if let Some((removed, heir)) = self.removed_owner_of(a) {
            return WaitingFor::Takeover {
                addr: ip,
                removed,
                heir,
            };
        }
        if let Some(owner) = self.gift_holding(a) {
            return WaitingFor::Grant { addr: ip, owner };
        }
        WaitingFor::Owner { addr: ip }
    }

    fn enqueue(&mut self, now: Instant, handle: &Handle, want: Want, deadline: Instant) -> Outcome {
        let id = RequestId(self.next_request);
        self.next_request += 1;
        let waiting = self.why_not_ready();
        self.pending.insert(
            id,
            Pending {
                handle: handle.clone(),
                want,
                deadline,
                waiting,
            },
        );
        self.edits += 1;
        self.settle(now);
        if let Some(p) = self.pending.get(&id) {
            if deadline <= now {
                let error = AllocError::DeadlinePassed {
                    waiting_for: p.waiting.clone(),
                };
                self.fail_pending(id, error.clone());
                self.take_event_of(id);
                self.settle(now);
                return Outcome::Failed(error);
            }
            return Outcome::Pending(id);
        }
        match self.take_event_of(id) {
            Some(Event::Allocated { addr, .. }) => Outcome::Done(addr),
            Some(Event::Failed { error, .. }) => Outcome::Failed(error),
            _ => Outcome::Failed(AllocError::Cancelled),
        }
    }

    /// Removes and returns the answer event of a request answered synchronously.
    fn take_event_of(&mut self, id: RequestId) -> Option<Event> {
        let pos = self.events.iter().position(|e| {
            matches!(e, Event::Allocated { request, .. } | Event::Failed { request, .. } if *request == id)
        })?;
        self.events.remove(pos)
    }

    fn complete(&mut self, id: RequestId, addr: Ipv4Net) {
        if let Some(p) = self.pending.remove(&id) {
            self.edits += 1;
            self.events.push_back(Event::Allocated {
                request: id,
                handle: p.handle,
                addr,
            });
        }
    }

    pub(super) fn fail_pending(&mut self, id: RequestId, error: AllocError) {
        let Some(p) = self.pending.remove(&id) else {
            return;
        };
        self.edits += 1;
        if let Want::Claim {
            addr,
            seq: Some(seq),
        } = p.want
        {
            let ip = addr.addr();
            self.me.claims.retain(|c| !(c.addr == ip && c.seq == seq));
            self.mark();
        }
        self.events.push_back(Event::Failed {
            request: id,
            handle: p.handle,
            error,
        });
    }

    /// Moves every waiting request as far as it can go now.
    pub(super) fn progress_pending(&mut self, now: Instant) {
        let ids: Vec<RequestId> = self.pending.keys().copied().collect();
        let mut needing: BTreeSet<Ipv4Net> = BTreeSet::new();
        for id in ids {
            let Some(p) = self.pending.get(&id).cloned() else {
                continue;
            };
            if !self.can_allocate() {
                let waiting = self.why_not_ready();
                self.set_waiting(id, waiting);
                continue;
            }
            match p.want {
                Want::Alloc { subnet } => {
                    if let Some(held) = self.held_in(&p.handle, subnet) {
                        self.complete(id, held);
                    } else if let Some(ip) = self.own_free(subnet) {
                        let net = self.assign(&p.handle, ip, subnet.prefix_len());
                        self.complete(id, net);
                    } else {
                        needing.insert(subnet);
                    }
                }
                Want::Claim { addr, seq: None } => match self.claim_now(&p.handle, addr) {
                    Ok(Some(net)) => self.complete(id, net),
                    Err(e) => self.fail_pending(id, e),
                    Ok(None) => {
                        let seq = self.next_seq();
                        self.me.claims.push(Claim {
                            addr: addr.addr(),
                            seq,
                        });
                        self.mark();
                        if let Some(p) = self.pending.get_mut(&id) {
                            p.want = Want::Claim {
                                addr,
                                seq: Some(seq),
                            };
                        }
                        let waiting = self.claim_waiting(addr.addr());
                        self.set_waiting(id, waiting);
                    }
                },
                Want::Claim {
                    addr,
                    seq: Some(seq),
                } => self.progress_claim(id, &p.handle, addr, seq),
            }
        }
        for subnet in &needing {
            match self.seek_space(now, *subnet) {
                Ok(waiting) => {
                    let ids: Vec<RequestId> = self
                        .pending
                        .iter()
                        .filter(|(_, p)| p.want == Want::Alloc { subnet: *subnet })
                        .map(|(id, _)| *id)
                        .collect();
                    for id in ids {
                        self.set_waiting(id, waiting.clone());
                    }
                }
                Err(e) => {
                    let ids: Vec<RequestId> = self
                        .pending
                        .iter()
                        .filter(|(_, p)| p.want == Want::Alloc { subnet: *subnet })
                        .map(|(id, _)| *id)
                        .collect();
                    for id in ids {
                        self.fail_pending(id, e.clone());
                    }
                }
            }
        }
        // Withdraw requests for space nobody waits for any more.
        let before = self.me.space_requests.len();
        self.me
            .space_requests
            .retain(|r| needing.contains(&r.subnet));
        if self.me.space_requests.len() != before {
            self.mark();
        }
        self.asks.retain(|s, _| needing.contains(s));
        let wants_ring = self.me.ring.is_none() && !self.pending.is_empty();
        if self.me.wants_ring != wants_ring {
            self.me.wants_ring = wants_ring;
            self.mark();
        }
    }

    /// A claim our handle stands on (a re-claim after a removal) that its owner refused:
    /// someone else has the address. Reported once as [`Event::Conflict`].
    pub(super) fn check_standing_claims(&mut self) {
        let me = self.cfg.name;
        let epoch = self.me.epoch;
        let waiting: BTreeSet<u64> = self
            .pending
            .values()
            .filter_map(|p| match p.want {
                Want::Claim { seq, .. } => seq,
                Want::Alloc { .. } => None,
            })
            .collect();
        let mut found = Vec::new();
        for c in &self.me.claims {
            if waiting.contains(&c.seq) || self.conflicts.contains_key(&(c.addr, c.seq)) {
                continue;
            }
            let refused_by = self.records.values().find_map(|r| {
                r.grants
                    .iter()
                    .any(|g| {
                        g.claimer == me
                            && g.claimer_epoch == epoch
                            && g.addr == c.addr
                            && g.seq == c.seq
                            && !g.granted
                    })
                    .then_some(r.peer)
            });
            if let Some(owner) = refused_by {
                found.push((c.addr, c.seq, owner));
            }
        }
        for (addr, seq, owner) in found {
            self.conflicts.insert((addr, seq), owner);
            self.events.push_back(Event::Conflict {
                handle: self.local_holder(addr).cloned(),
                addr,
                holder: format!("peer {owner} has handed it out to another container"),
            });
        }
        let claims = &self.me.claims;
        self.conflicts
            .retain(|(addr, seq), _| claims.iter().any(|c| c.addr == *addr && c.seq == *seq));
    }

    /// Standing claims refused by their owner (see [`Ipam::check_standing_claims`]).
    pub(super) fn conflict_list(&self) -> impl Iterator<Item = (Ipv4Addr, PeerName)> + '_ {
        self.conflicts
            .iter()
            .map(|((addr, _), owner)| (*addr, *owner))
    }

    fn set_waiting(&mut self, id: RequestId, waiting: WaitingFor) {
        if let Some(p) = self.pending.get_mut(&id) {
            p.waiting = waiting;
        }
    }

    /// A claim in our record: granted, refused, or still waiting.
    fn progress_claim(&mut self, id: RequestId, handle: &Handle, addr: Ipv4Net, seq: u64) {
        let ip = addr.addr();
        let a = u32::from(ip);
        if self.me.owned.contains(a) {
            // The space came to us meanwhile (a gift or a takeover).
            self.me.claims.retain(|c| !(c.addr == ip && c.seq == seq));
            self.mark();
            if let Some(p) = self.pending.get_mut(&id) {
                p.want = Want::Claim { addr, seq: None };
            }
            match self.claim_now(handle, addr) {
                Ok(Some(net)) => self.complete(id, net),
                Err(e) => self.fail_pending(id, e),
                Ok(None) => {}
            }
            return;
        }
        let me = self.cfg.name;
        let epoch = self.me.epoch;
        let answer = self.records.values().find_map(|r| {
            r.grants
                .iter()
                .find(|g| {
                    g.claimer == me && g.claimer_epoch == epoch && g.addr == ip && g.seq == seq
                })
                .map(|g| (r.peer, g.granted))
        });
        match answer {
            Some((_, true)) => {
                self.handles.entry(handle.clone()).or_default().push(addr);
                self.persist_dirty = true;
                self.complete(id, addr);
            }
            Some((owner, false)) => {
                let error = self.records.get(&owner).map_or(
                    AllocError::InUseByPeer {
                        addr: ip,
                        peer: owner,
                    },
                    |r| refusal(r, ip),
                );
                self.fail_pending(id, error);
            }
            None => {
                let waiting = self.claim_waiting(ip);
                self.set_waiting(id, waiting);
            }
        }
    }

    /// Keeps one request for space in `subnet` open with the best donor.
    fn seek_space(&mut self, now: Instant, subnet: Ipv4Net) -> Result<WaitingFor, AllocError> {
        let within = allocatable(subnet);
        let me = self.cfg.name;
        let retry = self.cfg.timers.request_retry;
        let ask = self.asks.entry(subnet).or_default().clone();
        if let Some(req) = self
            .me
            .space_requests
            .iter()
            .find(|r| r.subnet == subnet)
            .cloned()
        {
            let donor = self.records.get(&req.donor);
            let refused = donor.is_some_and(|d| {
                d.no_space
                    .iter()
                    .any(|n| n.requester == me && n.seq == req.seq)
            });
            let gone =
                donor.is_none() || !self.is_reachable(req.donor) || self.is_removed(req.donor);
            let timed_out = ask.retry_at.is_some_and(|t| t <= now);
            if !(refused || gone || timed_out) {
                return Ok(WaitingFor::Space {
                    donor: req.donor,
                    subnet,
                });
            }
            if refused && let Some(a) = self.asks.get_mut(&subnet) {
                a.tried.insert(req.donor);
            }
            self.me.space_requests.retain(|r| r.subnet != subnet);
            self.mark();
        }
        let tried = self
            .asks
            .get(&subnet)
            .map(|a| a.tried.clone())
            .unwrap_or_default();
        // Space in transit counts as its recipient's: it adopts it before answering.
        let mut in_transit: BTreeMap<PeerName, u64> = BTreeMap::new();
        for r in self.all_records() {
            for g in &r.giving {
                if g.to != me && !self.gift_adopted(r.peer, g) {
                    let n = g.block.intersect(within).map_or(0, AddrRange::len);
                    *in_transit.entry(g.to).or_default() += n;
                }
            }
        }
        let mut with_space: Vec<(u64, PeerName)> = self
            .live_others()
            .filter(|r| !tried.contains(&r.peer))
            .map(|r| {
                let transit = in_transit.get(&r.peer).copied().unwrap_or(0);
                (self.free_in(r, within) + transit, r.peer)
            })
            .filter(|(free, _)| *free > 0)
            .collect();
        with_space.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let best = with_space
            .iter()
            .map(|(_, p)| *p)
            .find(|p| self.is_reachable(*p));
        if let Some(donor) = best {
            if self.me.space_requests.len() >= limits::MAX_SPACE_REQUESTS {
                return Ok(WaitingFor::Space { donor, subnet });
            }
            let seq = self.next_seq();
            self.me
                .space_requests
                .push(SpaceRequest { donor, subnet, seq });
            self.mark();
            if let Some(a) = self.asks.get_mut(&subnet) {
                a.retry_at = Some(now + retry);
            }
            return Ok(WaitingFor::Space { donor, subnet });
        }
        if let Some(a) = self.asks.get_mut(&subnet) {
            a.retry_at = None;
        }
        let mut owners: Vec<PeerName> = with_space.into_iter().map(|(_, p)| p).collect();
        let removed: Vec<PeerName> = self
            .records
            .values()
            .filter(|r| self.is_removed(r.peer))
            .filter(|r| !self.index.inherited.contains_key(&(r.peer, r.epoch)))
            .filter(|r| self.free_in(r, within) > 0)
            .map(|r| r.peer)
            .collect();
        owners.extend(removed);
        if owners.is_empty() {
            // Exhausted only if our records account for all of the subnet; else some
            // owner's record has not reached us yet.
            let ring = self.ring.as_ref();
            let known = self
                .all_records()
                .flat_map(|r| std::iter::once(r).chain(r.retired.iter()))
                .fold(AddrSet::new(), |acc, r| {
                    let gifts = AddrSet::from_unsorted(r.giving.iter().map(|g| g.block).collect());
                    acc.union(&owned_of(r, ring, self.cfg.range)).union(&gifts)
                });
            if AddrSet::from_range(within).is_subset(&known) {
                return Err(AllocError::SubnetExhausted { subnet });
            }
            return Ok(WaitingFor::Records { subnet });
        }
        Ok(WaitingFor::Donors { subnet, owners })
    }
}

/// Why `owner` holds `ip`: kept for a removed peer's containers, or in use there.
fn refusal(owner: &PeerRecord, ip: Ipv4Addr) -> AllocError {
    match owner.reserved.iter().find(|r| r.addrs.contains(ip.into())) {
        Some(r) => AllocError::ReservedForRemoved {
            addr: ip,
            removed: r.peer,
        },
        None => AllocError::InUseByPeer {
            addr: ip,
            peer: owner.peer,
        },
    }
}
