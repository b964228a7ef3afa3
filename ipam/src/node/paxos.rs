//! The initial consensus: single-decree Paxos carried in records.
//!
//! Electors are the non-observer peers configured with the same `consensus=N`. A proposer
//! writes `prepare = b`; every elector that sees a higher ballot than it promised writes
//! `promised = b`; with a quorum (`N/2 + 1`) promised to `b`, the proposer writes
//! `proposal = (b, v)` with `v` the highest-ballot value accepted among them, else the
//! set of electors it hears; electors accept a proposal at least as high as their promise;
//! any peer that sees a quorum accept the same ballot learns `v`. Since an elector's
//! record shows its promise and its last accepted vote together, a promise read from a
//! record carries exactly the phase-1b answer Paxos needs.
//!
//! Liveness: only the lowest-named elector proposes at once; others propose after a
//! jittered timeout with no progress (no higher ballot seen), and a proposer retries with
//! a higher round, so duelling proposers settle.
//!
//! If more electors show up than configured, the quorum grows with them: decisions get
//! harder, never unsafe-er (misconfiguration is still refused later as a ring mismatch).
//! An elector votes only once every neighbour has answered its first digest, so a
//! ring a neighbour already belongs to is learnt (and joined) before a second one can be
//! started.

use std::time::Instant;

use rand::RngExt;

use super::{Event, Ipam, PaxosTimer};
use crate::record::{Ballot, PeerRecord, RingId, Vote};

impl Ipam {
    /// The electors we hear that share our `consensus=N` (ourselves included).
    fn electors(&self) -> Vec<&PeerRecord> {
        let n = self.me.electors;
        self.all_records()
            .filter(|r| !r.observer && r.electors == n && n > 0 && r.ring.is_none())
            .collect()
    }

    fn quorum(&self, heard: usize) -> usize {
        usize::from(self.me.electors).max(heard) / 2 + 1
    }

    /// Whether an allocation here or anywhere waits for the ring, or every elector is
    /// heard (then there is no reason to wait).
    fn consensus_wanted(&self, heard: usize) -> bool {
        heard >= usize::from(self.me.electors)
            || self.me.wants_ring
            || self.records.values().any(|r| r.wants_ring)
            || !self.pending.is_empty()
    }

    /// The value a quorum accepted, if any (the learner).
    pub(super) fn paxos_decided(&self) -> Option<RingId> {
        if self.me.electors == 0 {
            return None;
        }
        let electors = self.electors();
        let quorum = self.quorum(electors.len());
        let mut votes: Vec<&Vote> = electors
            .iter()
            .filter_map(|r| r.paxos.accepted.as_ref())
            .collect();
        votes.sort_by_key(|v| v.ballot);
        votes
            .chunk_by(|a, b| a.ballot == b.ballot)
            .find(|group| group.len() >= quorum)
            .and_then(|group| group.first())
            .map(|v| v.value.clone())
    }

    /// Acceptor and proposer duties, and starting consensus.
    pub(super) fn paxos_step(&mut self, now: Instant) {
        if self.me.ring.is_some() || self.me.observer || self.me.electors == 0 {
            self.paxos_timer = None;
            return;
        }
        // Vote only knowing what every neighbour knows: one of them may already belong
        // to a ring (a peer launched naming a peer that was itself just launched), and
        // joining that ring beats starting a second one.
        if !self.synced_with_all_neighbours() {
            return;
        }
        let electors = self.electors();
        let heard = electors.len();
        let quorum = self.quorum(heard);
        let max_prepare = electors.iter().filter_map(|r| r.paxos.prepare).max();
        let best_proposal = electors
            .iter()
            .filter_map(|r| r.paxos.proposal.as_ref())
            .max_by_key(|v| v.ballot)
            .cloned();
        let my_prepare = self.me.paxos.prepare;
        let promisers: Vec<&PeerRecord> = my_prepare
            .map(|b| {
                electors
                    .iter()
                    .copied()
                    .filter(|r| r.peer != self.cfg.name && r.paxos.promised == Some(b))
                    .collect()
            })
            .unwrap_or_default();
        let prior = promisers
            .iter()
            .filter_map(|r| r.paxos.accepted.as_ref())
            .max_by_key(|v| v.ballot)
            .map(|v| (v.ballot, v.value.clone()));
        let promiser_count = promisers.len();
        let members: Vec<mesh::PeerName> = electors.iter().map(|r| r.peer).collect();
        let lowest = members.iter().min().copied();
        let wanted = self.consensus_wanted(heard);
        drop(promisers);
        drop(electors);

        // Acceptor, phase 1b: promise the highest ballot prepared.
        if max_prepare > self.me.paxos.promised {
            self.me.paxos.promised = max_prepare;
            self.mark();
        }
        // Acceptor, phase 2b: accept the highest proposal not below our promise.
        if let Some(p) = best_proposal
            && Some(p.ballot) >= self.me.paxos.promised
            && self
                .me
                .paxos
                .accepted
                .as_ref()
                .is_none_or(|a| a.ballot < p.ballot)
        {
            self.me.paxos.promised = Some(p.ballot);
            self.me.paxos.accepted = Some(p);
            self.mark();
        }
        // Proposer, phase 2a: with a quorum promised (ourselves included once our own
        // promise above matches), propose.
        if let Some(b) = my_prepare
            && self
                .me
                .paxos
                .proposal
                .as_ref()
                .is_none_or(|p| p.ballot != b)
        {
            let me_promised = self.me.paxos.promised == Some(b);
            let own_prior = self
                .me
                .paxos
                .accepted
                .as_ref()
                .filter(|_| me_promised)
                .map(|v| (v.ballot, v.value.clone()));
            let count = promiser_count + usize::from(me_promised);
            if count >= quorum {
                let value = [prior, own_prior]
                    .into_iter()
                    .flatten()
                    .max_by_key(|(b, _)| *b)
                    .map(|(_, v)| v)
                    .unwrap_or_else(|| RingId::new(members.clone(), self.rng.random()));
                self.me.paxos.proposal = Some(Vote { ballot: b, value });
                self.mark();
            }
        }
        // Starting: the lowest-named elector proposes at once, others after a timeout.
        if wanted && self.me.paxos.prepare.is_none() {
            if lowest == Some(self.cfg.name) {
                self.propose(now);
            } else if self.paxos_timer.is_none() {
                self.arm_paxos_timer(now);
            }
        }
        if self.me.paxos.prepare.is_some() && self.paxos_timer.is_none() {
            self.arm_paxos_timer(now);
        }
    }

    fn highest_ballot_seen(&self) -> Option<Ballot> {
        self.all_records()
            .flat_map(|r| {
                let p = &r.paxos;
                [
                    p.promised,
                    p.prepare,
                    p.accepted.as_ref().map(|v| v.ballot),
                    p.proposal.as_ref().map(|v| v.ballot),
                ]
            })
            .flatten()
            .max()
    }

    fn propose(&mut self, now: Instant) {
        let round = self.highest_ballot_seen().map_or(0, |b| b.round) + 1;
        self.me.paxos.prepare = Some(Ballot {
            round,
            proposer: self.cfg.name,
        });
        self.mark();
        self.arm_paxos_timer(now);
    }

    fn arm_paxos_timer(&mut self, now: Instant) {
        let at = now + self.jitter(self.cfg.timers.proposer_retry);
        self.paxos_timer = Some(PaxosTimer {
            at,
            mark: self.highest_ballot_seen(),
        });
    }

    /// The consensus timer fired: propose (again) if nothing moved since it was armed, or
    /// if our own proposal has not been decided.
    pub(super) fn paxos_timeout(&mut self, now: Instant) {
        let Some(timer) = self.paxos_timer else {
            return;
        };
        if timer.at > now {
            return;
        }
        self.paxos_timer = None;
        if self.me.ring.is_some() {
            return;
        }
        let stalled = self.highest_ballot_seen() == timer.mark;
        let ours = self.me.paxos.prepare.is_some();
        if stalled || ours {
            self.propose(now);
        } else {
            self.arm_paxos_timer(now);
        }
    }

    /// Learns the ring: from a quorum of accepted votes, or from any record that holds
    /// one. A member of the ring takes its initial share.
    pub(super) fn learn_ring(&mut self, _now: Instant) {
        if self.me.ring.is_some() {
            return;
        }
        let learnt = self.paxos_decided().or_else(|| self.neighbour_ring());
        let Some(ring) = learnt else {
            return;
        };
        if self.me.epoch == 0 && self.me.owned.is_empty() && !self.me.observer {
            self.me.owned = ring.initial_share(self.cfg.range, self.cfg.name);
        }
        self.me.ring = Some(ring.tag());
        self.ring = Some(ring.clone());
        self.me.wants_ring = false;
        self.paxos_timer = None;
        self.full_scan = true;
        self.mark();
        self.events.push_back(Event::RingDecided(ring));
        self.refuse_foreign_neighbours();
        self.queue_hello();
    }
}
