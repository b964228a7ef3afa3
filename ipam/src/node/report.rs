//! `weft status ipam`: what this peer can do, who owns what, what waits and why.

use std::time::Instant;

use super::{Ipam, Want};
use crate::addr_set::AddrRange;
use crate::error::WaitingFor;
use crate::status::{
    IpamState, IpamStatus, PeerIpamStatus, PendingStatus, RefusedStatus, TakeoverStatus,
};

impl Ipam {
    /// `weft status ipam` (see [`IpamStatus`]).
    pub fn status(&self, now: Instant) -> IpamStatus {
        let range_size = AddrRange::of_net(self.cfg.range).len();
        let pct = |n: u64| 100.0 * n as f64 / range_size as f64;
        let mut peers = Vec::new();
        let mut unreachable_owned = 0;
        let mut unreachable_names = Vec::new();
        for r in self.all_records() {
            let owned = self.owned_by(r).len();
            let removed = self.is_removed(r.peer);
            let reachable = self.is_reachable(r.peer);
            let taken = self.index.inherited.contains_key(&(r.peer, r.epoch));
            if !reachable && !taken && owned > 0 {
                unreachable_owned += owned;
                if !removed {
                    unreachable_names.push(r.peer.to_string());
                }
            }
            peers.push(PeerIpamStatus {
                name: r.peer,
                is_self: r.peer == self.cfg.name,
                epoch: r.epoch,
                owned,
                used: r.used.len(),
                owned_pct: pct(owned),
                used_pct: pct(r.used.len()),
                reachable,
                removed,
                observer: r.observer,
            });
        }
        let hint = (!unreachable_names.is_empty()).then(|| {
            format!(
                "{} unreachable peer(s) own {unreachable_owned} addresses ({}); if one is gone for good, run `weft rmpeer NAME` on one host",
                unreachable_names.len(),
                unreachable_names.join(", ")
            )
        });
        let pending = self
            .pending
            .iter()
            .map(|(id, p)| {
                let (subnet, addr) = match p.want {
                    Want::Alloc { subnet } => (subnet, None),
                    Want::Claim { addr, .. } => (addr.trunc(), Some(addr.addr())),
                };
                PendingStatus {
                    request: *id,
                    handle: p.handle.clone(),
                    subnet,
                    addr,
                    waiting_for: p.waiting.to_string(),
                    waiting: p.waiting.clone(),
                    deadline_in_ms: u64::try_from(
                        p.deadline.saturating_duration_since(now).as_millis(),
                    )
                    .unwrap_or(u64::MAX),
                }
            })
            .collect();
        let takeovers = self
            .index
            .tombstones
            .keys()
            .chain(self.index.inherited.keys())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .filter_map(|&(peer, epoch)| {
                let heir = self.winner(peer, epoch)?;
                let addresses = self
                    .record_of(peer)
                    .and_then(|r| r.at_epoch(epoch))
                    .map_or(0, |r| self.owned_by(r).len());
                Some(TakeoverStatus {
                    removed: peer,
                    epoch,
                    heir,
                    addresses,
                    waiting_for: self.missing_acks(peer, epoch),
                    complete: self.index.inherited.contains_key(&(peer, epoch)),
                })
            })
            .collect();
        let refused = self
            .refused_neighbours()
            .map(|(peer, reason)| RefusedStatus {
                peer,
                reason: reason.to_string(),
            })
            .collect();
        let conflicts = self
            .conflict_list()
            .map(|(addr, owner)| crate::status::ConflictStatus {
                addr,
                handle: self
                    .handles
                    .iter()
                    .find(|(_, nets)| nets.iter().any(|n| n.addr() == addr))
                    .map(|(h, _)| h.clone()),
                owner,
            })
            .collect();
        IpamStatus {
            name: self.cfg.name,
            range: self.cfg.range,
            range_size,
            default_subnet: self.cfg.default_subnet,
            mode: self.cfg.init.to_string(),
            ring: self.ring.clone(),
            state: self.state(),
            peers,
            unreachable_owned,
            hint,
            pending,
            takeovers,
            refused,
            conflicts,
            dropped_records: self.dropped_records,
            dropped_messages: self.dropped_messages,
        }
    }

    fn state(&self) -> IpamState {
        if let Some(heir) = self.removed_by
            && self.me.owned.is_empty()
        {
            return IpamState::Removed { heir };
        }
        if self.me.ring.is_none() {
            if self.me.observer || self.me.electors == 0 {
                return IpamState::AwaitingRing;
            }
            let n = self.me.electors;
            let heard: Vec<_> = self
                .all_records()
                .filter(|r| !r.observer && r.electors == n)
                .map(|r| r.peer)
                .collect();
            let electors = usize::from(n).max(heard.len());
            return IpamState::AwaitingConsensus {
                quorum: electors / 2 + 1,
                electors,
                missing: electors.saturating_sub(heard.len()),
                heard,
            };
        }
        if !self.synced {
            return IpamState::WaitingForFirstSync;
        }
        let from: Vec<_> = self
            .pending
            .values()
            .filter_map(|p| match &p.waiting {
                WaitingFor::Space { donor, .. } => Some(*donor),
                _ => None,
            })
            .collect();
        if !from.is_empty() {
            return IpamState::WaitingForSpace { from };
        }
        IpamState::Ready
    }
}
