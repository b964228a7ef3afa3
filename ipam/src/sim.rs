//! A deterministic network of [`Ipam`] nodes, for tests and benches.
//!
//! Contract:
//! - A virtual clock and one seeded RNG drive everything: the same seed and calls give the
//!   same run, byte for byte.
//! - Links are in-order byte pipes with a random delay (so messages reorder across links,
//!   never within one, like TCP). Every message goes through the real codec and is
//!   counted. A *reset* drops a link: its in-flight messages are lost, both ends see
//!   `neighbour_down`, and it comes back after a delay (`neighbour_up`, a fresh sync).
//! - After every call into a node the simulator takes its persist first, then its
//!   transmits and events — the order the shell must keep. A *kill* stops a node between
//!   two calls: what it already sent is delivered (the kernel flushes a dead process's
//!   sockets), what was sent to it is lost, and it restarts from its last
//!   [`PersistedState`] and (possibly stale) peer cache.
//! - Reachability is the connected component over up links; every node hears
//!   `handle_reachable` when its component changes.
//! - [`Sim::check`] verifies the invariants over *every* node's own state, dead nodes
//!   included (their containers may still run): no address held by two handles, owned
//!   spaces disjoint, nothing owned twice or in transit twice, and, once a ring exists,
//!   owned + in transit + awaiting an heir = the range.

use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::fmt;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use mesh::PeerName;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::addr_set::{AddrRange, AddrSet};
use crate::config::{ConfigError, InitMode, IpamConfig, IpamTimers};
use crate::error::{AllocError, RmpeerError};
use crate::handle::{Handle, RequestId};
use crate::node::{Event, Ipam, Outcome, RmpeerOutcome};
use crate::persist::{PeerCache, PersistedState};
use crate::record::{PeerRecord, RingId};

/// Index of a simulated peer (stable across kill and restart).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub usize);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}

/// Why a simulator call or check failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    /// A node's configuration or persisted state was rejected.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// No such node, or it is dead.
    #[error("node {0} does not exist or is not running")]
    NotRunning(NodeId),
    /// A handle the node would refuse.
    #[error("bad handle: {0}")]
    BadHandle(String),
    /// An invariant is broken.
    #[error("invariant broken: {0}")]
    Invariant(String),
}

/// Network and timer parameters.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The allocation range of every node.
    pub range: Ipv4Net,
    /// Shortest one-way delay.
    pub min_delay: Duration,
    /// Longest one-way delay.
    pub max_delay: Duration,
    /// Probability that a message resets its link instead of arriving.
    pub reset_probability: f64,
    /// How long a reset link stays down.
    pub reset_downtime: Duration,
    /// Probability that a node saves its peer cache when it changed (the cache is lazy).
    pub cache_save_probability: f64,
    /// The nodes' timers.
    pub timers: IpamTimers,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            range: "10.32.0.0/16".parse().unwrap_or_default(),
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(20),
            reset_probability: 0.0,
            reset_downtime: Duration::from_millis(200),
            cache_save_probability: 0.5,
            timers: IpamTimers::default(),
        }
    }
}

#[derive(Debug)]
struct SimNode {
    config: IpamConfig,
    ipam: Option<Ipam>,
    persisted: Option<PersistedState>,
    cache: Option<PeerCache>,
    /// Neighbours this node has been told are up.
    up: BTreeSet<usize>,
    /// Its containers are gone for good (`rmpeer --free-addresses` of a dead node).
    gone: bool,
    answers: BTreeMap<RequestId, Result<Ipv4Net, AllocError>>,
    events: Vec<Event>,
    bytes_sent: u64,
}

#[derive(Debug, PartialEq, Eq)]
struct InFlight {
    at: Instant,
    seq: u64,
    from: usize,
    to: usize,
    generation: u64,
    /// Sent by a node that died since: its kernel still delivers it (late, after the
    /// mesh may already report the sender unreachable).
    flush: bool,
    bytes: Vec<u8>,
}

impl Ord for InFlight {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// The simulated network (see the module contract).
#[derive(Debug)]
pub struct Sim {
    cfg: SimConfig,
    now: Instant,
    rng: ChaCha8Rng,
    nodes: Vec<SimNode>,
    links: BTreeSet<(usize, usize)>,
    /// Links cut by a partition.
    cut: BTreeSet<(usize, usize)>,
    /// Links down after a reset, until when.
    reset_until: BTreeMap<(usize, usize), Instant>,
    generation: BTreeMap<(usize, usize), u64>,
    /// Last scheduled arrival per directed link (keeps each link in order).
    last_arrival: BTreeMap<(usize, usize), Instant>,
    /// Messages on the wire, earliest first (a min-heap by arrival, then send order).
    in_flight: BinaryHeap<InFlight>,
    /// Each node's next timer, indexed for the event loop.
    timers: BTreeSet<(Instant, usize)>,
    timer_of: Vec<Option<Instant>>,
    /// The peers each node was last told it can reach.
    reach_of: Vec<Vec<usize>>,
    seq: u64,
    bytes_sent: u64,
    messages_sent: u64,
}

fn key(a: usize, b: usize) -> (usize, usize) {
    (a.min(b), a.max(b))
}

/// The simulator's name for node `i`.
pub fn node_name(i: usize) -> PeerName {
    let [_, _, _, _, a, b, c, d] = (i as u64 + 1).to_be_bytes();
    PeerName([2, a, b, c, d, 0])
}

impl Sim {
    /// An empty network starting at `start`.
    pub fn new(seed: u64, cfg: SimConfig, start: Instant) -> Self {
        Self {
            cfg,
            now: start,
            rng: ChaCha8Rng::seed_from_u64(seed),
            nodes: Vec::new(),
            links: BTreeSet::new(),
            cut: BTreeSet::new(),
            reset_until: BTreeMap::new(),
            generation: BTreeMap::new(),
            last_arrival: BTreeMap::new(),
            in_flight: BinaryHeap::new(),
            timers: BTreeSet::new(),
            timer_of: Vec::new(),
            reach_of: Vec::new(),
            seq: 0,
            bytes_sent: 0,
            messages_sent: 0,
        }
    }

    /// The virtual clock.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Number of nodes (dead ones included).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there are no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Node `id`'s peer name.
    pub fn name(&self, id: NodeId) -> PeerName {
        node_name(id.0)
    }

    /// The node by peer name.
    pub fn id_of(&self, name: PeerName) -> Option<NodeId> {
        let [two, a, b, c, d, zero] = name.0;
        let i = usize::try_from(u32::from_be_bytes([a, b, c, d]))
            .ok()?
            .checked_sub(1)?;
        (two == 2 && zero == 0 && i < self.nodes.len()).then_some(NodeId(i))
    }

    /// The running node, if alive.
    pub fn node(&self, id: NodeId) -> Option<&Ipam> {
        self.nodes.get(id.0).and_then(|n| n.ipam.as_ref())
    }

    /// The `(epoch, version)` of node `id`'s last persisted record.
    pub fn persisted_stamp(&self, id: NodeId) -> Option<crate::record::Stamp> {
        self.nodes
            .get(id.0)
            .and_then(|n| n.persisted.as_ref())
            .map(|p| p.record.stamp())
    }

    /// Whether node `by`'s state (its own record and the records it holds, or its
    /// persisted record if dead) shows node `target` removed at `target`'s current epoch
    /// (as `target` last persisted it).
    pub fn knows_removal(&self, by: NodeId, target: NodeId) -> bool {
        let name = self.name(target);
        let Some((epoch, _)) = self.persisted_stamp(target) else {
            return false;
        };
        let shows = |r: &PeerRecord| {
            r.tombstones
                .iter()
                .any(|t| t.peer == name && t.epoch == epoch)
                || std::iter::once(r)
                    .chain(r.retired.iter())
                    .flat_map(|l| l.inherited.iter())
                    .any(|i| i.peer == name && i.epoch == epoch)
        };
        match self.nodes.get(by.0) {
            Some(SimNode {
                ipam: Some(ipam), ..
            }) => ipam.all_records().any(shows),
            Some(SimNode {
                persisted: Some(p), ..
            }) => shows(&p.record),
            _ => false,
        }
    }

    /// Whether the node runs.
    pub fn is_alive(&self, id: NodeId) -> bool {
        self.node(id).is_some()
    }

    /// Every answer node `id` got for waiting requests, by request.
    pub fn answers(&self, id: NodeId) -> &BTreeMap<RequestId, Result<Ipv4Net, AllocError>> {
        static EMPTY: BTreeMap<RequestId, Result<Ipv4Net, AllocError>> = BTreeMap::new();
        self.nodes.get(id.0).map_or(&EMPTY, |n| &n.answers)
    }

    /// Every event node `id` reported (answers included), oldest first.
    pub fn events(&self, id: NodeId) -> &[Event] {
        self.nodes.get(id.0).map_or(&[], |n| n.events.as_slice())
    }

    /// Control bytes sent so far by all nodes.
    pub fn bytes_sent(&self) -> u64 {
        self.bytes_sent
    }

    /// Control bytes sent so far by node `id`.
    pub fn bytes_sent_by(&self, id: NodeId) -> u64 {
        self.nodes.get(id.0).map_or(0, |n| n.bytes_sent)
    }

    /// Messages sent so far.
    pub fn messages_sent(&self) -> u64 {
        self.messages_sent
    }

    /// Adds a node (not linked to anyone yet) and starts it.
    pub fn add_node(&mut self, init: InitMode) -> Result<NodeId, SimError> {
        self.add_node_with(init, |_| {})
    }

    /// [`Sim::add_node`] with a configuration hook.
    pub fn add_node_with(
        &mut self,
        init: InitMode,
        configure: impl FnOnce(&mut IpamConfig),
    ) -> Result<NodeId, SimError> {
        let i = self.nodes.len();
        let mut config = IpamConfig::new(node_name(i), self.cfg.range);
        config.init = init;
        config.timers = self.cfg.timers;
        configure(&mut config);
        let seed = self.rng.random();
        let ipam = Ipam::new(config.clone(), None, self.now, seed)?;
        self.nodes.push(SimNode {
            config,
            ipam: Some(ipam),
            persisted: None,
            cache: None,
            up: BTreeSet::new(),
            gone: false,
            answers: BTreeMap::new(),
            events: Vec::new(),
            bytes_sent: 0,
        });
        self.timer_of.push(None);
        self.reach_of.push(Vec::new());
        self.drain(i);
        Ok(NodeId(i))
    }

    /// Links two nodes (a control connection whenever both run and no cut separates
    /// them).
    pub fn link(&mut self, a: NodeId, b: NodeId) {
        if a != b {
            self.links.insert(key(a.0, b.0));
            self.update_links();
        }
    }

    /// Links many pairs at once (one reachability update).
    pub fn link_many(&mut self, pairs: &[(NodeId, NodeId)]) {
        for &(a, b) in pairs {
            if a != b {
                self.links.insert(key(a.0, b.0));
            }
        }
        self.update_links();
    }

    /// Links every pair of nodes.
    pub fn full_mesh(&mut self) {
        for a in 0..self.nodes.len() {
            for b in a + 1..self.nodes.len() {
                self.links.insert((a, b));
            }
        }
        self.update_links();
    }

    /// Cuts every link between different groups (nodes in no group are cut from all).
    pub fn partition(&mut self, groups: &[Vec<NodeId>]) {
        let group_of = |i: usize| groups.iter().position(|g| g.iter().any(|n| n.0 == i));
        self.cut = self
            .links
            .iter()
            .copied()
            .filter(|&(a, b)| group_of(a).is_none() || group_of(a) != group_of(b))
            .collect();
        self.update_links();
    }

    /// Restores every cut link.
    pub fn heal(&mut self) {
        self.cut.clear();
        self.update_links();
    }

    /// Stops node `id` between two calls (see the module contract).
    pub fn kill(&mut self, id: NodeId) {
        let Some(node) = self.nodes.get_mut(id.0) else {
            return;
        };
        if node.ipam.take().is_none() {
            return;
        }
        // Its sockets are flushed: what it sent still arrives, in order, when due;
        // what was sent to it is lost.
        let in_flight = std::mem::take(&mut self.in_flight);
        self.in_flight = in_flight
            .into_iter()
            .filter(|m| m.to != id.0)
            .map(|mut m| {
                m.flush |= m.from == id.0;
                m
            })
            .collect();
        self.set_timer(id.0, None);
        self.update_links();
    }

    /// Restarts a dead node from its last persisted state and peer cache.
    pub fn restart(&mut self, id: NodeId) -> Result<(), SimError> {
        let seed = self.rng.random();
        let now = self.now;
        let node = self.nodes.get_mut(id.0).ok_or(SimError::NotRunning(id))?;
        if node.ipam.is_some() {
            return Ok(());
        }
        let ipam = Ipam::with_peer_cache(
            node.config.clone(),
            node.persisted.clone(),
            node.cache.clone(),
            now,
            seed,
        )?;
        node.ipam = Some(ipam);
        node.up.clear();
        self.reach_of[id.0].clear();
        self.drain(id.0);
        self.update_links();
        Ok(())
    }

    /// Marks a dead node's containers as gone for good (they no longer hold addresses).
    pub fn forget_containers(&mut self, id: NodeId) {
        if let Some(n) = self.nodes.get_mut(id.0) {
            n.gone = true;
        }
    }

    fn with_node<T>(
        &mut self,
        id: NodeId,
        f: impl FnOnce(&mut Ipam, Instant) -> T,
    ) -> Result<T, SimError> {
        let now = self.now;
        let ipam = self
            .nodes
            .get_mut(id.0)
            .and_then(|n| n.ipam.as_mut())
            .ok_or(SimError::NotRunning(id))?;
        let out = f(ipam, now);
        self.drain(id.0);
        Ok(out)
    }

    fn handle(text: &str) -> Result<Handle, SimError> {
        Handle::new(text).map_err(|e| SimError::BadHandle(e.to_string()))
    }

    /// `allocate` on node `id` with the default deadline.
    pub fn allocate(
        &mut self,
        id: NodeId,
        handle: &str,
        subnet: Option<Ipv4Net>,
    ) -> Result<Outcome, SimError> {
        let h = Self::handle(handle)?;
        let deadline = self.now + self.cfg.timers.allocation_deadline;
        self.with_node(id, |n, now| n.allocate(now, &h, subnet, deadline))
    }

    /// `claim` on node `id` with the default deadline.
    pub fn claim(&mut self, id: NodeId, handle: &str, addr: Ipv4Net) -> Result<Outcome, SimError> {
        let h = Self::handle(handle)?;
        let deadline = self.now + self.cfg.timers.allocation_deadline;
        self.with_node(id, |n, now| n.claim(now, &h, addr, deadline))
    }

    /// `release` of a handle on node `id`.
    pub fn release(&mut self, id: NodeId, handle: &str) -> Result<Vec<Ipv4Net>, SimError> {
        let h = Self::handle(handle)?;
        self.with_node(id, |n, now| n.release(now, &h, None))
    }

    /// `rmpeer target` on node `on`.
    pub fn rmpeer(
        &mut self,
        on: NodeId,
        target: NodeId,
        free_addresses: bool,
    ) -> Result<Result<RmpeerOutcome, RmpeerError>, SimError> {
        let name = self.name(target);
        self.with_node(on, |n, now| n.rmpeer(now, name, free_addresses))
    }

    /// The addresses `handle` holds on node `id` (from its persisted state if dead).
    pub fn held(&self, id: NodeId, handle: &str) -> Vec<Ipv4Net> {
        let Ok(h) = Self::handle(handle) else {
            return Vec::new();
        };
        let Some(node) = self.nodes.get(id.0) else {
            return Vec::new();
        };
        match (&node.ipam, &node.persisted) {
            (Some(ipam), _) => ipam.addresses_of(&h),
            (None, Some(p)) => p.handles.get(&h).cloned().unwrap_or_default(),
            (None, None) => Vec::new(),
        }
    }

    /// Runs the network for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while let Some(next) = self.next_event_time() {
            if next > end {
                break;
            }
            self.now = self.now.max(next);
            self.step_at_now();
        }
        self.now = end;
        self.step_at_now();
    }

    /// Runs until `done` holds (checked after every step) or `limit` of virtual time
    /// passed; returns whether it held.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Self) -> bool) -> bool {
        let end = self.now + limit;
        loop {
            if done(self) {
                return true;
            }
            let Some(next) = self.next_event_time() else {
                return done(self);
            };
            if next > end {
                self.now = end;
                return done(self);
            }
            self.now = self.now.max(next);
            self.step_at_now();
        }
    }

    fn next_event_time(&self) -> Option<Instant> {
        let msg = self.in_flight.peek().map(|m| m.at);
        let timers = self.timers.first().map(|(t, _)| *t);
        let resets = self.reset_until.values().copied().min();
        [msg, timers, resets].into_iter().flatten().min()
    }

    fn step_at_now(&mut self) {
        let now = self.now;
        let before = self.reset_until.len();
        self.reset_until.retain(|_, t| *t > now);
        if self.reset_until.len() != before {
            self.update_links();
        }
        while self.in_flight.peek().is_some_and(|m| m.at <= now) {
            let Some(m) = self.in_flight.pop() else { break };
            let k = key(m.from, m.to);
            let current = self.generation.get(&k).copied().unwrap_or(0);
            let flushed = m.flush
                && !self.cut.contains(&k)
                && !self.reset_until.contains_key(&k)
                && self.nodes.get(m.to).is_some_and(|n| n.ipam.is_some());
            if flushed || (current == m.generation && self.link_up(m.from, m.to)) {
                self.deliver(m.from, m.to, &m.bytes);
            }
        }
        while let Some(&(at, i)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.remove(&(at, i));
            self.timer_of[i] = None;
            if let Some(ipam) = self.nodes[i].ipam.as_mut() {
                ipam.handle_timeout(now);
                debug_assert!(
                    ipam.poll_timeout().is_none_or(|t| t > now),
                    "poll_timeout in the past after handle_timeout"
                );
            }
            self.drain(i);
        }
    }

    fn set_timer(&mut self, i: usize, at: Option<Instant>) {
        if let Some(old) = self.timer_of[i].take() {
            self.timers.remove(&(old, i));
        }
        if let Some(at) = at {
            self.timers.insert((at, i));
            self.timer_of[i] = Some(at);
        }
    }

    fn deliver(&mut self, from: usize, to: usize, bytes: &[u8]) {
        let now = self.now;
        let from_name = node_name(from);
        if let Some(ipam) = self.nodes.get_mut(to).and_then(|n| n.ipam.as_mut()) {
            ipam.handle_message(now, from_name, bytes);
            self.drain(to);
        }
    }

    fn link_up(&self, a: usize, b: usize) -> bool {
        let k = key(a, b);
        self.links.contains(&k)
            && !self.cut.contains(&k)
            && !self.reset_until.contains_key(&k)
            && self.nodes.get(a).is_some_and(|n| n.ipam.is_some())
            && self.nodes.get(b).is_some_and(|n| n.ipam.is_some())
    }

    /// Brings neighbour relations and reachability in line with links, cuts and deaths.
    fn update_links(&mut self) {
        let now = self.now;
        for &(a, b) in &self.links.clone() {
            let up = self.link_up(a, b);
            for (x, y) in [(a, b), (b, a)] {
                let was = self.nodes[x].up.contains(&y);
                if up && !was {
                    self.nodes[x].up.insert(y);
                    if let Some(ipam) = self.nodes[x].ipam.as_mut() {
                        ipam.handle_neighbour_up(now, node_name(y));
                    }
                } else if !up && was {
                    self.nodes[x].up.remove(&y);
                    *self.generation.entry(key(x, y)).or_default() += 1;
                    if let Some(ipam) = self.nodes[x].ipam.as_mut() {
                        ipam.handle_neighbour_down(now, node_name(y));
                    }
                }
            }
        }
        // Reachability: connected components over up links.
        let n = self.nodes.len();
        let mut comp: Vec<Option<usize>> = vec![None; n];
        for start in 0..n {
            if comp[start].is_some() || self.nodes[start].ipam.is_none() {
                continue;
            }
            comp[start] = Some(start);
            let mut stack = vec![start];
            while let Some(x) = stack.pop() {
                for &y in &self.nodes[x].up {
                    if comp[y].is_none() && self.link_up(x, y) {
                        comp[y] = Some(start);
                        stack.push(y);
                    }
                }
            }
        }
        let mut members: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (j, c) in comp.iter().enumerate() {
            if let Some(c) = c {
                members.entry(*c).or_default().push(j);
            }
        }
        for (i, c) in comp.iter().enumerate() {
            let Some(c) = c else {
                self.reach_of[i].clear();
                continue;
            };
            let reach: Vec<usize> = members[c].iter().copied().filter(|&j| j != i).collect();
            if reach == self.reach_of[i] {
                continue;
            }
            let peers: Vec<PeerName> = reach.iter().map(|&j| node_name(j)).collect();
            self.reach_of[i] = reach;
            if let Some(ipam) = self.nodes[i].ipam.as_mut() {
                ipam.handle_reachable(now, &peers);
            }
        }
        for i in 0..n {
            self.drain(i);
        }
    }

    /// Persist first, then transmits and events: the order the shell keeps.
    fn drain(&mut self, i: usize) {
        let save_cache = self
            .rng
            .random_bool(self.cfg.cache_save_probability.clamp(0.0, 1.0));
        let mut sends = Vec::new();
        {
            let node = &mut self.nodes[i];
            let Some(ipam) = node.ipam.as_mut() else {
                return;
            };
            if let Some(p) = ipam.take_persist() {
                node.persisted = Some(p);
            }
            if save_cache && ipam.peer_records_dirty() {
                node.cache = Some(ipam.peer_records());
            }
            while let Some(t) = ipam.poll_transmit() {
                sends.push(t);
            }
            while let Some(e) = ipam.poll_event() {
                match &e {
                    Event::Allocated { request, addr, .. } => {
                        node.answers.insert(*request, Ok(*addr));
                    }
                    Event::Failed { request, error, .. } => {
                        node.answers.insert(*request, Err(error.clone()));
                    }
                    _ => {}
                }
                node.events.push(e);
            }
        }
        let next = self.nodes[i].ipam.as_ref().and_then(Ipam::poll_timeout);
        if next != self.timer_of[i] {
            self.set_timer(i, next);
        }
        for t in sends {
            let Some(to) = self.id_of(t.to).map(|n| n.0) else {
                continue;
            };
            self.bytes_sent += t.bytes.len() as u64;
            self.messages_sent += 1;
            self.nodes[i].bytes_sent += t.bytes.len() as u64;
            if !self.link_up(i, to) {
                continue;
            }
            let k = key(i, to);
            if self.cfg.reset_probability > 0.0 && self.rng.random_bool(self.cfg.reset_probability)
            {
                self.reset_until
                    .insert(k, self.now + self.cfg.reset_downtime);
                self.update_links();
                continue;
            }
            let span = self.cfg.max_delay.saturating_sub(self.cfg.min_delay);
            let delay = self.cfg.min_delay + span.mul_f64(self.rng.random_range(0.0..=1.0));
            let last = self.last_arrival.get(&(i, to)).copied().unwrap_or(self.now);
            let at = (self.now + delay).max(last);
            self.last_arrival.insert((i, to), at);
            self.seq += 1;
            self.in_flight.push(InFlight {
                at,
                seq: self.seq,
                from: i,
                to,
                generation: self.generation.get(&k).copied().unwrap_or(0),
                flush: false,
                bytes: t.bytes,
            });
        }
    }

    /// Each node's own authoritative state: the live node's, or the dead one's persisted.
    fn own_states(&self) -> Vec<(usize, PersistedState)> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| match &n.ipam {
                Some(ipam) => Some((i, ipam.persisted())),
                None => n.persisted.clone().map(|p| (i, p)),
            })
            .collect()
    }

    /// Verifies the invariants (see the module contract).
    pub fn check(&self) -> Result<(), SimError> {
        let states = self.own_states();
        let bad = |s: String| Err(SimError::Invariant(s));
        // 1. No address held by two handles anywhere.
        let mut holders: BTreeMap<Ipv4Addr, (usize, &Handle)> = BTreeMap::new();
        for (i, s) in &states {
            if self.nodes[*i].gone {
                continue;
            }
            for (h, nets) in &s.handles {
                for n in nets {
                    if let Some((j, other)) = holders.insert(n.addr(), (*i, h)) {
                        return bad(format!(
                            "{} held by {h} on {} and by {other} on {}",
                            n.addr(),
                            NodeId(*i),
                            NodeId(j)
                        ));
                    }
                }
            }
        }
        // 2. Ownership: disjoint; 3. nothing lost.
        let records: Vec<&PeerRecord> = states.iter().map(|(_, s)| &s.record).collect();
        let ring: Option<RingId> = states.iter().find_map(|(_, s)| s.ring.clone());
        let inherited: BTreeMap<(PeerName, u32), &PeerRecord> = records
            .iter()
            .flat_map(|r| {
                std::iter::once(*r)
                    .chain(r.retired.iter())
                    .flat_map(move |l| l.inherited.iter().map(move |i| ((i.peer, i.epoch), *r)))
            })
            .collect();
        let layer = |peer: PeerName, epoch: u32| {
            records
                .iter()
                .find(|r| r.peer == peer)
                .and_then(|r| r.at_epoch(epoch))
        };
        let mut pieces: Vec<(String, AddrSet)> = Vec::new();
        for r in &records {
            for l in std::iter::once(*r).chain(r.retired.iter()) {
                if !inherited.contains_key(&(l.peer, l.epoch)) {
                    let owned = match (&l.ring, &ring) {
                        (None, Some(ring)) if l.epoch == 0 => {
                            ring.initial_share(self.cfg.range, l.peer)
                        }
                        _ => l.owned.clone(),
                    };
                    pieces.push((format!("owned by {}@{}", l.peer, l.epoch), owned));
                }
                for g in &l.giving {
                    let by_recipient =
                        layer(g.to, g.to_epoch).is_some_and(|x| x.adopted_from(l.peer) >= g.seq);
                    let by_heir = inherited.get(&(g.to, g.to_epoch)).is_some_and(|h| {
                        std::iter::once(*h)
                            .chain(h.retired.iter())
                            .flat_map(|x| x.inherited.iter())
                            .filter(|i| i.peer == g.to && i.epoch == g.to_epoch)
                            .flat_map(|i| i.gifts.iter())
                            .any(|(q, s)| *q == l.peer && *s >= g.seq)
                    });
                    if !by_recipient && !by_heir {
                        pieces.push((
                            format!(
                                "in transit {}@{} -> {}@{}",
                                l.peer, l.epoch, g.to, g.to_epoch
                            ),
                            AddrSet::from_range(g.block),
                        ));
                    }
                }
            }
        }
        let mut all = AddrSet::new();
        let mut whose: Vec<(String, AddrSet)> = Vec::new();
        for (label, set) in pieces {
            if !all.is_disjoint(&set) {
                let clash = all.intersect(&set);
                let other = whose
                    .iter()
                    .find(|(_, s)| !s.is_disjoint(&clash))
                    .map_or("?", |(l, _)| l.as_str());
                return bad(format!("{clash} is {label} and {other}"));
            }
            all = all.union(&set);
            whose.push((label, set));
        }
        if ring.is_some() && all != AddrSet::from_net(self.cfg.range) {
            let lost = AddrSet::from_net(self.cfg.range).subtract(&all);
            return bad(format!("space lost: {lost}"));
        }
        // 4. Each handle's address is accounted for in its node's record.
        for (i, s) in &states {
            for (h, nets) in &s.handles {
                for n in nets {
                    let a = u32::from(n.addr());
                    let own = s.record.owned.contains(a) && s.record.used.contains(a);
                    let claimed = s.record.claims.iter().any(|c| c.addr == n.addr());
                    if !own && !claimed {
                        return bad(format!(
                            "{} of {h} on {} is neither used in its space nor claimed",
                            n.addr(),
                            NodeId(*i)
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Encoded bytes of the IPAM state node `id` holds (its records, ours included).
    pub fn state_bytes(&self, id: NodeId) -> usize {
        self.node(id)
            .map_or(0, |n| n.all_records().map(crate::codec::record_len).sum())
    }

    /// Whether every live node holds every other live node's current record.
    pub fn converged(&self) -> bool {
        if !self.in_flight.is_empty() {
            return false;
        }
        let live: Vec<&Ipam> = self.nodes.iter().filter_map(|n| n.ipam.as_ref()).collect();
        live.iter().all(|a| {
            live.iter().all(|b| {
                a.record_of(b.name())
                    .is_some_and(|r| r.stamp() == b.record().stamp())
            })
        })
    }

    /// The set of addresses every live node's handles hold (for tests).
    pub fn all_held(&self) -> BTreeSet<Ipv4Addr> {
        self.own_states()
            .iter()
            .flat_map(|(_, s)| {
                s.handles
                    .values()
                    .flatten()
                    .map(|n| n.addr())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Free addresses the ring has in `subnet`, summed over live nodes' own records.
    pub fn free_in(&self, subnet: Ipv4Net) -> u64 {
        let r = AddrRange::of_net(subnet);
        self.nodes
            .iter()
            .filter_map(|n| n.ipam.as_ref())
            .map(|n| n.record().free().count_in(r))
            .sum()
    }
}
