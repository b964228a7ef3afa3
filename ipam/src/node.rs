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

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::Ipv4Addr;
use std::time::Instant;

use ipnet::Ipv4Net;
use mesh::PeerName;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::config::{ConfigError, IpamConfig};
use crate::error::{AllocError, RefuseReason, RmpeerError, WaitingFor};
use crate::handle::{Handle, RequestId};
use crate::persist::{PeerCache, PersistedState};
use crate::record::{PeerRecord, RingId};
use crate::status::IpamStatus;

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
    Refuse {
        /// The neighbour.
        peer: PeerName,
        /// Why (the same text shows on the other side).
        reason: RefuseReason,
    },
    /// The initial ring was decided (or learnt).
    RingDecided(RingId),
    /// This peer learnt it was removed by `rmpeer`: it dropped its space and rejoined at
    /// `epoch` with none; its handles' addresses are being re-claimed.
    Removed {
        /// The peer that took over our space.
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
    /// An address a handle holds could not be re-claimed after a removal: someone else
    /// has it. The container and another one share the address until one is detached.
    Conflict {
        /// The handle.
        handle: Handle,
        /// The address.
        addr: Ipv4Addr,
        /// Who holds it, in words.
        holder: String,
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

/// One router's IPAM (see the module contract).
#[derive(Debug)]
pub struct Ipam {
    cfg: IpamConfig,
    rng: ChaCha8Rng,
    me: PeerRecord,
    records: BTreeMap<PeerName, PeerRecord>,
    handles: BTreeMap<Handle, Vec<Ipv4Net>>,
    gift_seq: u64,
    request_seq: u64,
    next_request: u64,
    neighbours: BTreeMap<PeerName, NeighbourState>,
    reachable: BTreeSet<PeerName>,
    persist_dirty: bool,
    cache_dirty: bool,
    events: VecDeque<Event>,
}

#[derive(Debug, Default)]
struct NeighbourState {
    queue: VecDeque<Vec<u8>>,
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
        let _ = (cache, now);
        let me = match persisted {
            Some(p) => p.record,
            None => PeerRecord::new(config.name, config.range),
        };
        Ok(Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
            me,
            cfg: config,
            records: BTreeMap::new(),
            handles: BTreeMap::new(),
            gift_seq: 0,
            request_seq: 0,
            next_request: 1,
            neighbours: BTreeMap::new(),
            reachable: BTreeSet::new(),
            persist_dirty: true,
            cache_dirty: false,
            events: VecDeque::new(),
        })
    }

    /// This peer's name.
    pub fn name(&self) -> PeerName {
        self.cfg.name
    }

    /// The allocation range.
    pub fn range(&self) -> Ipv4Net {
        self.cfg.range
    }

    /// Whether `addr` is inside the range (addresses outside are not managed by IPAM).
    pub fn manages(&self, addr: Ipv4Addr) -> bool {
        self.cfg.range.contains(&addr)
    }

    /// A control connection to `peer` is established: the IPAM hello and state sync start.
    pub fn handle_neighbour_up(&mut self, now: Instant, peer: PeerName) {
        let _ = now;
        self.neighbours.insert(peer, NeighbourState::default());
    }

    /// The control connection to `peer` is gone.
    pub fn handle_neighbour_down(&mut self, now: Instant, peer: PeerName) {
        let _ = now;
        self.neighbours.remove(&peer);
    }

    /// The peers the mesh can route to now (replaces the previous set).
    pub fn handle_reachable(&mut self, now: Instant, peers: &[PeerName]) {
        let _ = now;
        self.reachable = peers
            .iter()
            .copied()
            .filter(|p| *p != self.cfg.name)
            .collect();
    }

    /// An IPAM message from neighbour `from`. Malformed input is counted and dropped.
    pub fn handle_message(&mut self, now: Instant, from: PeerName, bytes: &[u8]) {
        let _ = (now, from, bytes);
    }

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
        let _ = (now, handle, subnet, deadline);
        Outcome::Failed(AllocError::DeadlinePassed {
            waiting_for: WaitingFor::Ring,
        })
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
        let _ = (now, handle, addr, deadline);
        Outcome::Failed(AllocError::DeadlinePassed {
            waiting_for: WaitingFor::Ring,
        })
    }

    /// Releases `handle`'s addresses (`addr`: only that one); waiting requests of the
    /// handle fail with [`AllocError::Cancelled`]. Returns what was released; idempotent.
    pub fn release(
        &mut self,
        now: Instant,
        handle: &Handle,
        addr: Option<Ipv4Addr>,
    ) -> Vec<Ipv4Net> {
        let _ = (now, handle, addr);
        Vec::new()
    }

    /// Releases every handle for which `keep` is false (relaunch cleanup, CNI GC);
    /// returns what was released.
    pub fn retain_handles(
        &mut self,
        now: Instant,
        keep: &dyn Fn(&Handle) -> bool,
    ) -> Vec<(Handle, Ipv4Net)> {
        let _ = (now, keep);
        Vec::new()
    }

    /// The addresses `handle` holds.
    pub fn addresses_of(&self, handle: &Handle) -> Vec<Ipv4Net> {
        self.handles.get(handle).cloned().unwrap_or_default()
    }

    /// Every handle and its addresses.
    pub fn handles(&self) -> &BTreeMap<Handle, Vec<Ipv4Net>> {
        &self.handles
    }

    /// `weft rmpeer`: offers this peer as heir of `peer`'s space. Refused for ourselves, a
    /// reachable peer and an unknown one. Safe to run on several peers at once (the lowest
    /// name wins) and again (idempotent; `free_addresses` then releases the reserved
    /// addresses).
    pub fn rmpeer(
        &mut self,
        now: Instant,
        peer: PeerName,
        free_addresses: bool,
    ) -> Result<RmpeerOutcome, RmpeerError> {
        let _ = (now, free_addresses);
        if peer == self.cfg.name {
            return Err(RmpeerError::Ourselves);
        }
        Err(RmpeerError::Unknown(peer))
    }

    /// The next message for a neighbour (`None` while a persist is pending).
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if self.persist_dirty {
            return None;
        }
        for (peer, n) in &mut self.neighbours {
            if let Some(bytes) = n.queue.pop_front() {
                return Some(Transmit { to: *peer, bytes });
            }
        }
        None
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
        None
    }

    /// Runs what is due at `now`: deadlines, consensus retries, anti-entropy.
    pub fn handle_timeout(&mut self, now: Instant) {
        let _ = now;
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
            format: crate::persist::PERSIST_FORMAT,
            record: self.me.clone(),
            handles: self.handles.clone(),
            gift_seq: self.gift_seq,
            request_seq: self.request_seq,
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
            format: crate::persist::PERSIST_FORMAT,
            range: Some(self.cfg.range),
            records: self.records.values().cloned().collect(),
        }
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

    /// `weft status ipam`.
    pub fn status(&self, now: Instant) -> IpamStatus {
        let _ = (now, &self.rng, self.next_request);
        let range_size = crate::addr_set::AddrRange::of_net(self.cfg.range).len();
        IpamStatus {
            name: self.cfg.name,
            range: self.cfg.range,
            range_size,
            default_subnet: self.cfg.default_subnet,
            mode: self.cfg.init.to_string(),
            ring: self.me.ring.clone(),
            state: crate::status::IpamState::AwaitingRing,
            peers: Vec::new(),
            unreachable_owned: 0,
            hint: None,
            pending: Vec::new(),
            takeovers: Vec::new(),
            refused: Vec::new(),
            dropped_records: 0,
            dropped_messages: 0,
        }
    }
}
