//! The IPAM node: one per router, in the `handle_*` / `poll_*` shape with `now` passed in.
//!
//! Contract:
//! - Inputs: mesh events ([`Ipam::handle_neighbour_up`], [`Ipam::handle_neighbour_down`],
//!   [`Ipam::handle_reachable`], [`Ipam::handle_message`]), requests ([`Ipam::allocate`],
//!   [`Ipam::claim`], [`Ipam::release`], [`Ipam::retain_handles`], [`Ipam::rmpeer`]) and
//!   timers ([`Ipam::handle_timeout`] at [`Ipam::poll_timeout`]).
//! - Outputs: [`Ipam::take_persist`] first (the shell writes it with fsync), then
//!   [`Ipam::poll_transmit`] and [`Ipam::poll_event`]. While a persist is pending both of
//!   those return `None`, so nothing this peer says can get ahead of its disk. An
//!   [`Outcome::Done`] returned by `allocate`/`claim` must likewise be answered only after
//!   `take_persist` has been written.
//! - Every input ends in one *settle* pass: the node applies every duty its records imply
//!   (answer requests and claims, adopt gifts, vote, ack, take over, complete waiting
//!   requests) until nothing changes, then bumps its record's version once.
//!
//! Submodules: views over the records ([`view`]), gossip ([`gossip`]), requests
//! ([`alloc`]), duties towards other peers ([`duties`]), consensus ([`paxos`]), removal
//! and takeover ([`takeover`]), status ([`report`]).

mod alloc;
mod duties;
mod gossip;
mod paxos;
mod report;
mod takeover;
#[cfg(test)]
mod tests;
mod view;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::Ipv4Addr;
use std::time::Instant;

use ipnet::Ipv4Net;
use mesh::PeerName;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::codec::DecodeError;
use crate::config::{ConfigError, InitMode, IpamConfig};
use crate::error::{AllocError, RefuseReason, WaitingFor};
use crate::handle::{Handle, RequestId};
use crate::persist::{PERSIST_FORMAT, PeerCache, PersistedState};
use crate::record::{Ballot, PeerRecord, RingId};

use gossip::Neighbour;
use view::TakeoverIndex;

/// The answer to an allocation or claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Allocated (answer only after [`Ipam::take_persist`] has been written).
    Done(Ipv4Net),
    /// Waiting; the answer comes as [`Event::Allocated`] or [`Event::Failed`].
    Pending(RequestId),
    /// Refused; nothing changed.
    Failed(AllocError),
}

/// Bytes for one neighbour (an IPAM message; the shell frames it on the mesh).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The neighbour.
    pub to: PeerName,
    /// One encoded [`crate::Message`].
    pub bytes: Vec<u8>,
}

/// Something the shell should know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A waiting request got its address.
    Allocated {
        /// The request.
        request: RequestId,
        /// Who asked.
        handle: Handle,
        /// The address, with its subnet's prefix.
        addr: Ipv4Net,
    },
    /// A waiting request failed.
    Failed {
        /// The request.
        request: RequestId,
        /// Who asked.
        handle: Handle,
        /// Why.
        error: AllocError,
    },
    /// A neighbour's IPAM is incompatible; the shell logs it (and may close the channel).
    /// The neighbour reports the same to its side.
    Refuse {
        /// The neighbour.
        peer: PeerName,
        /// Why.
        reason: RefuseReason,
    },
    /// A neighbour sent a malformed IPAM message: close that connection.
    BadMessage {
        /// The neighbour.
        peer: PeerName,
        /// What was wrong.
        error: DecodeError,
    },
    /// The initial ring was decided (or learnt).
    RingDecided(RingId),
    /// This peer learnt it was removed by `rmpeer`: it dropped its space and rejoined at
    /// `epoch` with none; its handles' addresses are being re-claimed.
    Removed {
        /// The peer that takes over our space.
        heir: PeerName,
        /// Our new epoch.
        epoch: u32,
    },
    /// We completed the takeover of a removed peer's space.
    Inherited {
        /// The removed peer.
        peer: PeerName,
        /// Addresses taken over.
        addresses: u64,
        /// Of those, kept for its containers.
        reserved: u64,
    },
    /// An address a handle holds could not be re-claimed after a removal (or a takeover
    /// found it handed out twice): the shell should report it; the user detaches one side.
    Conflict {
        /// The handle.
        handle: Option<Handle>,
        /// The address.
        addr: Ipv4Addr,
        /// Who else holds it, in words.
        holder: String,
    },
    /// A record of ours newer than our persisted state came back from the network (our
    /// state file was lost or replaced); we adopted it.
    OwnRecordRecovered {
        /// Its version.
        version: u64,
    },
}

/// What `rmpeer` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RmpeerOutcome {
    /// The removed peer.
    pub peer: PeerName,
    /// Who wins the takeover (the lowest-named peer that ran `rmpeer` on it).
    pub heir: PeerName,
    /// Addresses it owns (taken over once the barrier passes).
    pub addresses: u64,
    /// Of those, allocated to its containers (kept reserved unless `free_addresses`).
    pub used: u64,
    /// Members whose acknowledgement the heir still waits for.
    pub waiting_for: Vec<PeerName>,
    /// Whether the takeover is already complete.
    pub complete: bool,
}

/// A request that waits.
#[derive(Debug, Clone)]
struct Pending {
    handle: Handle,
    want: Want,
    deadline: Instant,
    waiting: WaitingFor,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// Any address in the subnet.
    Alloc { subnet: Ipv4Net },
    /// This address; `seq` once a claim is in our record.
    Claim { addr: Ipv4Net, seq: Option<u64> },
}

/// Per subnet we need space in: who refused, when we asked.
#[derive(Debug, Clone, Default)]
struct Ask {
    tried: BTreeSet<PeerName>,
    retry_at: Option<Instant>,
}

/// The consensus timer: when to (re)propose, and the highest ballot seen when it was set
/// (a proposer that sees no progress since then takes over).
#[derive(Debug, Clone, Copy)]
struct PaxosTimer {
    at: Instant,
    mark: Option<Ballot>,
}

/// One router's IPAM (see the module contract).
#[derive(Debug)]
pub struct Ipam {
    cfg: IpamConfig,
    rng: ChaCha8Rng,
    /// Our record: authoritative for our space.
    me: PeerRecord,
    /// The ring, once decided or learnt (`me.ring` holds its tag).
    ring: Option<RingId>,
    /// Everyone else's latest record.
    records: BTreeMap<PeerName, PeerRecord>,
    handles: BTreeMap<Handle, Vec<Ipv4Net>>,
    gift_seq: u64,
    request_seq: u64,
    seen_others: bool,
    next_request: u64,
    pending: BTreeMap<RequestId, Pending>,
    asks: BTreeMap<Ipv4Net, Ask>,
    /// Donor: the highest request seq answered per requester (volatile: answering twice
    /// after a restart only gives more space).
    answered: BTreeMap<PeerName, u64>,
    neighbours: BTreeMap<PeerName, Neighbour>,
    reachable: BTreeSet<PeerName>,
    /// When each peer we hold a record of was last seen becoming unreachable.
    unreachable_since: BTreeMap<PeerName, Instant>,
    /// Reachability changed since the last settle.
    reach_dirty: bool,
    /// When an ack waiting for [`crate::IpamTimers::ack_grace`] becomes due.
    ack_wakeup: Option<Instant>,
    /// False after a restart in a ring with other members, until the first SyncDone.
    synced: bool,
    paxos_timer: Option<PaxosTimer>,
    removed_by: Option<PeerName>,
    index: TakeoverIndex,
    index_dirty: bool,
    /// Records changed since the last settle (their duties are re-examined).
    dirty: BTreeSet<PeerName>,
    /// Re-examine every record (our space or reachability changed, a timer fired).
    full_scan: bool,
    /// Our record changed in this settle (bump the version once at the end).
    changed: bool,
    /// Changes in the current settle pass (the fixpoint test).
    edits: u64,
    persist_dirty: bool,
    cache_dirty: bool,
    events: VecDeque<Event>,
    /// Standing claims (of addresses our handles hold) that their owner refused:
    /// `(addr, seq)` → who holds it. Reported once, shown in status.
    conflicts: BTreeMap<(Ipv4Addr, u64), PeerName>,
    dropped_records: u64,
    dropped_messages: u64,
}

impl Ipam {
    /// Starts the node at `now` from `persisted` (our own state after a restart, or `None`
    /// on first launch); `seed` drives every random choice (ring nonce, jitter).
    pub fn new(
        config: IpamConfig,
        persisted: Option<PersistedState>,
        now: Instant,
        seed: u64,
    ) -> Result<Self, ConfigError> {
        Self::with_peer_cache(config, persisted, None, now, seed)
    }

    /// [`Ipam::new`] that also loads the cache of others' records saved earlier (from
    /// [`Ipam::peer_records`]); a cache for another range is ignored.
    pub fn with_peer_cache(
        config: IpamConfig,
        persisted: Option<PersistedState>,
        cache: Option<PeerCache>,
        now: Instant,
        seed: u64,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let restarted = persisted.is_some();
        let (me, ring, handles, gift_seq, request_seq, seen_others) = match persisted {
            Some(p) => {
                check_persisted(&config, &p)?;
                (
                    p.record,
                    p.ring,
                    p.handles,
                    p.gift_seq,
                    p.request_seq,
                    p.seen_others,
                )
            }
            None => {
                let mut me = PeerRecord::new(config.name, config.range);
                let mut ring = None;
                match &config.init {
                    InitMode::Consensus { electors } => {
                        me.electors = u16::try_from(*electors).unwrap_or(u16::MAX);
                    }
                    InitMode::Seed(names) => {
                        let seeded = RingId::new(names.clone(), 0);
                        me.owned = seeded.initial_share(config.range, config.name);
                        me.ring = Some(seeded.tag());
                        ring = Some(seeded);
                    }
                    InitMode::Observer => me.observer = true,
                }
                (me, ring, BTreeMap::new(), 0, 0, false)
            }
        };
        let mut ipam = Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
            me,
            ring,
            cfg: config,
            records: BTreeMap::new(),
            handles,
            gift_seq,
            request_seq,
            seen_others,
            next_request: 1,
            pending: BTreeMap::new(),
            asks: BTreeMap::new(),
            answered: BTreeMap::new(),
            neighbours: BTreeMap::new(),
            reachable: BTreeSet::new(),
            unreachable_since: BTreeMap::new(),
            ack_wakeup: None,
            reach_dirty: true,
            synced: true,
            paxos_timer: None,
            removed_by: None,
            index: TakeoverIndex::default(),
            index_dirty: true,
            dirty: BTreeSet::new(),
            full_scan: true,
            changed: !restarted,
            edits: 0,
            persist_dirty: !restarted,
            cache_dirty: false,
            events: VecDeque::new(),
            conflicts: BTreeMap::new(),
            dropped_records: 0,
            dropped_messages: 0,
        };
        if let Some(cache) = cache
            && cache.range == Some(ipam.cfg.range)
        {
            for record in cache.records {
                ipam.merge_record(None, record);
            }
            ipam.cache_dirty = false;
        }
        if restarted {
            ipam.synced = !ipam.has_other_members();
            ipam.drop_orphan_claims();
        }
        ipam.settle(now);
        Ok(ipam)
    }

    /// This peer's name.
    pub fn name(&self) -> PeerName {
        self.cfg.name
    }

    /// The allocation range.
    pub fn range(&self) -> Ipv4Net {
        self.cfg.range
    }

    /// The default subnet.
    pub fn default_subnet(&self) -> Ipv4Net {
        self.cfg.default_subnet
    }

    /// Whether `addr` is inside the range (addresses outside are not managed by IPAM).
    pub fn manages(&self, addr: Ipv4Addr) -> bool {
        self.cfg.range.contains(&addr)
    }

    /// The addresses `handle` holds.
    pub fn addresses_of(&self, handle: &Handle) -> Vec<Ipv4Net> {
        self.handles.get(handle).cloned().unwrap_or_default()
    }

    /// Every handle and its addresses.
    pub fn handles(&self) -> &BTreeMap<Handle, Vec<Ipv4Net>> {
        &self.handles
    }

    /// Whether this peer can hand out new addresses now (a ring exists and, after a
    /// restart, the first exchange of records happened).
    pub fn is_ready(&self) -> bool {
        self.can_allocate()
    }

    /// The ring, once decided or learnt.
    pub fn ring(&self) -> Option<&RingId> {
        self.ring.as_ref()
    }

    /// Our own record as gossiped.
    pub fn record(&self) -> &PeerRecord {
        &self.me
    }

    /// The record of `peer` we hold (ours included).
    pub fn record_of(&self, peer: PeerName) -> Option<&PeerRecord> {
        if peer == self.cfg.name {
            Some(&self.me)
        } else {
            self.records.get(&peer)
        }
    }

    /// Every record we hold, ours first.
    pub fn all_records(&self) -> impl Iterator<Item = &PeerRecord> {
        std::iter::once(&self.me).chain(self.records.values())
    }

    /// The next event (`None` while a persist is pending).
    pub fn poll_event(&mut self) -> Option<Event> {
        if self.persist_dirty {
            return None;
        }
        self.events.pop_front()
    }

    /// When [`Ipam::handle_timeout`] should next run; never in the past once it ran.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let pending = self.pending.values().map(|p| p.deadline);
        let asks = self.asks.values().filter_map(|a| a.retry_at);
        let paxos = self.paxos_timer.map(|t| t.at);
        let digests = self.neighbours.values().map(|n| n.next_digest);
        pending
            .chain(asks)
            .chain(paxos)
            .chain(digests)
            .chain(self.ack_wakeup)
            .min()
    }

    /// Runs what is due at `now`: deadlines, consensus retries, request retries,
    /// anti-entropy digests.
    pub fn handle_timeout(&mut self, now: Instant) {
        let expired: Vec<RequestId> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some(p) = self.pending.get(&id) {
                let error = AllocError::DeadlinePassed {
                    waiting_for: p.waiting.clone(),
                };
                self.fail_pending(id, error);
            }
        }
        self.paxos_timeout(now);
        self.gossip_timeout(now);
        self.full_scan = true;
        self.settle(now);
        // A retry whose duty could not run (nothing to ask any more) must not stay due.
        for ask in self.asks.values_mut() {
            if ask.retry_at.is_some_and(|t| t <= now) {
                ask.retry_at = None;
            }
        }
    }

    /// Our state to write (atomically, with fsync) when it changed; `None` otherwise.
    /// Write it before sending transmits or answering requests.
    pub fn take_persist(&mut self) -> Option<PersistedState> {
        if !self.persist_dirty {
            return None;
        }
        self.persist_dirty = false;
        Some(self.persisted())
    }

    /// The state as it would be persisted now (for tests and the simulator).
    pub fn persisted(&self) -> PersistedState {
        PersistedState {
            format: PERSIST_FORMAT,
            record: self.me.clone(),
            ring: self.ring.clone(),
            handles: self.handles.clone(),
            gift_seq: self.gift_seq,
            request_seq: self.request_seq,
            seen_others: self.seen_others,
        }
    }

    /// Whether others' records changed since the last call (then save
    /// [`Ipam::peer_records`], lazily).
    pub fn peer_records_dirty(&mut self) -> bool {
        std::mem::take(&mut self.cache_dirty)
    }

    /// The cache of others' records to save.
    pub fn peer_records(&self) -> PeerCache {
        PeerCache {
            format: PERSIST_FORMAT,
            range: Some(self.cfg.range),
            records: self.records.values().cloned().collect(),
        }
    }

    /// Records a change to our own record (or to what we must persist).
    fn mark(&mut self) {
        self.changed = true;
        self.edits += 1;
    }

    /// Applies every duty until nothing changes, then publishes our record once.
    fn settle(&mut self, now: Instant) {
        const MAX_PASSES: usize = 32;
        self.ack_wakeup = None;
        if std::mem::take(&mut self.reach_dirty) {
            self.note_reachability(now);
        }
        for _ in 0..MAX_PASSES {
            let before = self.edits;
            if self.index_dirty {
                self.rebuild_index();
            }
            self.check_removed(now);
            self.learn_ring(now);
            self.paxos_step(now);
            self.adopt_gifts();
            self.takeover_step(now);
            self.answer_claims();
            self.answer_requests();
            self.clean_up_own_lists();
            self.progress_pending(now);
            self.check_standing_claims();
            if self.edits == before {
                break;
            }
        }
        self.dirty.clear();
        self.full_scan = false;
        if std::mem::take(&mut self.changed) {
            self.me.version += 1;
            self.persist_dirty = true;
            self.queue_own_record();
        }
    }

    /// Starts the unreachability clock of peers that just became unreachable.
    fn note_reachability(&mut self, now: Instant) {
        let peers: Vec<PeerName> = self.records.keys().copied().collect();
        for p in peers {
            if self.is_reachable(p) {
                self.unreachable_since.remove(&p);
            } else {
                self.unreachable_since.entry(p).or_insert(now);
            }
        }
    }

    /// Whether the ring (as we know it) has members other than us.
    fn has_other_members(&self) -> bool {
        self.seen_others
            || !self.records.is_empty()
            || self
                .ring
                .as_ref()
                .is_some_and(|r| r.members.iter().any(|m| *m != self.cfg.name))
    }

    /// After a restart, a claim in our record whose handle is gone (the request that made
    /// it died with the process) is withdrawn.
    fn drop_orphan_claims(&mut self) {
        let held: BTreeSet<Ipv4Addr> = self.handles.values().flatten().map(|n| n.addr()).collect();
        let before = self.me.claims.len();
        self.me.claims.retain(|c| held.contains(&c.addr));
        if self.me.claims.len() != before {
            self.mark();
        }
    }

    fn next_seq(&mut self) -> u64 {
        self.request_seq += 1;
        self.request_seq
    }
}

/// Refuses persisted state that is not ours or cannot be right.
fn check_persisted(config: &IpamConfig, p: &PersistedState) -> Result<(), ConfigError> {
    if p.format > PERSIST_FORMAT {
        return Err(ConfigError::PersistedInvalid(format!(
            "format {} is newer than this weft understands ({PERSIST_FORMAT})",
            p.format
        )));
    }
    if p.record.peer != config.name {
        return Err(ConfigError::PersistedName {
            persisted: p.record.peer,
            configured: config.name,
        });
    }
    if p.record.range != config.range {
        return Err(ConfigError::PersistedRange {
            persisted: p.record.range,
            configured: config.range,
        });
    }
    p.record
        .validate(config.range)
        .map_err(|e| ConfigError::PersistedInvalid(e.to_string()))?;
    if p.record.ring != p.ring.as_ref().map(RingId::tag) {
        return Err(ConfigError::PersistedInvalid(
            "the saved ring does not match the record's ring fingerprint".into(),
        ));
    }
    for (handle, addrs) in &p.handles {
        if let Some(a) = addrs.iter().find(|a| !config.range.contains(&a.addr())) {
            return Err(ConfigError::PersistedInvalid(format!(
                "handle {handle} holds {a}, outside the range"
            )));
        }
    }
    Ok(())
}
