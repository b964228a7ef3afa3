//! A deterministic in-process network of [`Mesh`] nodes, for tests and benches.
//!
//! Contract:
//! - Everything is driven by a virtual clock and one seeded RNG: the same seed and the same
//!   calls give the same run, byte for byte.
//! - Connections are in-memory byte pipes: every message goes through the real encoder,
//!   [`crate::FrameDecoder`] and [`crate::Message::decode`] (optionally cut into random
//!   chunks), so the codec is exercised and bytes are counted.
//! - A *round* ([`Sim::step`]) advances the clock by one tick, fires due timers, delivers
//!   everything in flight, then collects every node's output (dials are resolved at once
//!   against the underlay reachability matrix). A message therefore takes one round per
//!   hop, and "rounds to converge" counts gossip hops.
//! - Fault injection: crash/restart a peer, cut/restore a link, block dialling one way,
//!   partition into groups. [`Sim::check`] verifies, per connected component: equal
//!   topology views holding exactly the component's peers at their current versions,
//!   loop-free next hops that reach every peer over real links, broadcast trees that reach
//!   every peer exactly once, and agreeing endpoint records.
//!
//! Node addresses are labels in 127.0.0.0/8; nothing here touches a real network.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::{ConfigError, MeshConfig};
use crate::connection::{CloseReason, ConnId, Direction};
use crate::endpoints::EndpointError;
use crate::node::{Action, Event, Mesh};
use crate::peer::{Nickname, PeerName};
use crate::protocol::{DEFAULT_LISTEN_PORT, Endpoint};
use crate::topology::mix;

/// Index of a simulated peer (stable across crash and restart).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub usize);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "h{}", self.0)
    }
}

/// Why a simulation step or check failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    /// A node's configuration was rejected.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Endpoints were rejected.
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    /// No such node, or it is crashed.
    #[error("node {0} does not exist or is not running")]
    NotRunning(NodeId),
    /// Convergence did not happen within the round budget.
    #[error("not converged after {rounds} rounds: {detail}")]
    NotConverged {
        /// Rounds run.
        rounds: usize,
        /// The last check failure.
        detail: String,
    },
    /// Two nodes of a component disagree on the topology.
    #[error("topology views differ: {0}")]
    Views(String),
    /// Unicast routes are inconsistent.
    #[error("routes broken: {0}")]
    Routes(String),
    /// A broadcast tree misses or duplicates a peer.
    #[error("broadcast tree broken: {0}")]
    Broadcast(String),
    /// Endpoint views disagree with what nodes announced.
    #[error("endpoint views differ: {0}")]
    Endpoints(String),
}

/// What one change cost the mesh ([`Sim::measure_change`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChangeCost {
    /// Rounds (gossip hops) until every live peer agreed.
    pub rounds: usize,
    /// Control bytes a live peer sent, on average.
    pub mean_bytes: f64,
    /// Control bytes of the peer that sent the most.
    pub max_bytes: u64,
}

/// Outcome of one dial attempt, logged for tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialOutcome {
    /// A connection was opened.
    Connected,
    /// The underlay does not let the dialer reach the target.
    Unreachable,
    /// Nothing listens there (crashed or unknown).
    Refused,
    /// The target or the dialer refused (limits).
    Rejected,
}

/// One logged dial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DialRecord {
    /// When.
    pub at: Instant,
    /// Who dialled.
    pub from: NodeId,
    /// Which address.
    pub addr: SocketAddr,
    /// What happened.
    pub outcome: DialOutcome,
}

#[derive(Debug)]
struct SimNode {
    mesh: Option<Mesh>,
    config: MeshConfig,
    targets: Vec<SocketAddr>,
    endpoints: Vec<Endpoint>,
    events: Vec<Event>,
    bytes_sent: u64,
}

#[derive(Debug)]
struct Link {
    /// (node, its connection id) for the dialer and the acceptor.
    ends: [(NodeId, ConnId); 2],
    /// Bytes in flight towards `ends[0]` and `ends[1]`.
    in_flight: [Vec<u8>; 2],
}

/// The simulated network.
#[derive(Debug)]
pub struct Sim {
    now: Instant,
    tick: Duration,
    rng: ChaCha8Rng,
    fragment: bool,
    record_events: bool,
    nodes: Vec<SimNode>,
    by_addr: HashMap<SocketAddr, NodeId>,
    links: BTreeMap<u64, Link>,
    conn_to_link: HashMap<ConnId, u64>,
    blocked: HashSet<(NodeId, NodeId)>,
    next_conn: u64,
    rounds: usize,
    dial_log: Vec<DialRecord>,
}

fn node_addr(id: NodeId) -> SocketAddr {
    let [_, b, c, d] = u32::try_from(id.0).unwrap_or(u32::MAX).to_be_bytes();
    SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(127, b.wrapping_add(1), c, d)),
        DEFAULT_LISTEN_PORT,
    )
}

impl Sim {
    /// An empty network whose clock starts at `start`, ticking 10 ms per round.
    pub fn new(seed: u64, start: Instant) -> Self {
        Self {
            now: start,
            tick: Duration::from_millis(10),
            rng: ChaCha8Rng::seed_from_u64(seed),
            fragment: true,
            record_events: true,
            nodes: Vec::new(),
            by_addr: HashMap::new(),
            links: BTreeMap::new(),
            conn_to_link: HashMap::new(),
            blocked: HashSet::new(),
            next_conn: 1,
            rounds: 0,
            dial_log: Vec::new(),
        }
    }

    /// Whether deliveries are cut into random chunks (default on).
    pub fn set_fragmentation(&mut self, on: bool) {
        self.fragment = on;
    }

    /// Whether node events are kept for [`Sim::events`] (default on; off saves memory in
    /// large runs).
    pub fn set_record_events(&mut self, on: bool) {
        self.record_events = on;
    }

    /// The virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Rounds run so far.
    pub fn rounds(&self) -> usize {
        self.rounds
    }

    /// Number of nodes ever added.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether no node was added.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// A node's control address.
    pub fn addr(&self, id: NodeId) -> SocketAddr {
        node_addr(id)
    }

    /// A node's peer name.
    pub fn name(&self, id: NodeId) -> Option<PeerName> {
        self.nodes.get(id.0).map(|n| n.config.name)
    }

    /// Whether a node is running.
    pub fn is_live(&self, id: NodeId) -> bool {
        self.nodes.get(id.0).is_some_and(|n| n.mesh.is_some())
    }

    /// Running nodes.
    pub fn live(&self) -> Vec<NodeId> {
        (0..self.nodes.len())
            .map(NodeId)
            .filter(|&id| self.is_live(id))
            .collect()
    }

    /// A running node's mesh.
    pub fn mesh(&mut self, id: NodeId) -> Option<&mut Mesh> {
        self.nodes.get_mut(id.0)?.mesh.as_mut()
    }

    /// Events a node emitted (if recording).
    pub fn events(&self, id: NodeId) -> &[Event] {
        self.nodes.get(id.0).map_or(&[], |n| n.events.as_slice())
    }

    /// Forgets recorded events.
    pub fn clear_events(&mut self) {
        for node in &mut self.nodes {
            node.events.clear();
        }
    }

    /// Every dial so far.
    pub fn dial_log(&self) -> &[DialRecord] {
        &self.dial_log
    }

    /// Control bytes a node has sent since the last [`Sim::reset_bytes`].
    pub fn bytes_sent(&self, id: NodeId) -> u64 {
        self.nodes.get(id.0).map_or(0, |n| n.bytes_sent)
    }

    /// Control bytes all nodes have sent since the last reset.
    pub fn total_bytes_sent(&self) -> u64 {
        self.nodes.iter().map(|n| n.bytes_sent).sum()
    }

    /// Zeroes the byte counters.
    pub fn reset_bytes(&mut self) {
        for node in &mut self.nodes {
            node.bytes_sent = 0;
        }
    }

    /// Adds a peer with default configuration that dials `targets` explicitly.
    pub fn add_peer(&mut self, targets: &[NodeId]) -> Result<NodeId, SimError> {
        self.add_peer_with(targets, |_| {})
    }

    /// Adds a peer, letting `configure` adjust its configuration (name, uid and nickname
    /// are chosen by the simulator).
    pub fn add_peer_with(
        &mut self,
        targets: &[NodeId],
        configure: impl FnOnce(&mut MeshConfig),
    ) -> Result<NodeId, SimError> {
        let id = NodeId(self.nodes.len());
        let name = PeerName::random(&mut self.rng);
        let uid = self.rng.next_u64();
        let mut config = MeshConfig::new(name, Nickname::truncated(&id.to_string()), uid);
        configure(&mut config);
        config.name = name;
        config.uid = uid;
        config.listen_port = DEFAULT_LISTEN_PORT;
        let targets: Vec<SocketAddr> = targets.iter().map(|&t| node_addr(t)).collect();
        let mesh = self.start_mesh(&config, &targets)?;
        self.by_addr.insert(node_addr(id), id);
        self.nodes.push(SimNode {
            mesh: Some(mesh),
            config,
            targets,
            endpoints: Vec::new(),
            events: Vec::new(),
            bytes_sent: 0,
        });
        Ok(id)
    }

    fn start_mesh(
        &mut self,
        config: &MeshConfig,
        targets: &[SocketAddr],
    ) -> Result<Mesh, SimError> {
        let mut mesh = Mesh::new(config.clone(), self.now, self.rng.next_u64())?;
        for &addr in targets {
            mesh.connect(self.now, addr);
        }
        Ok(mesh)
    }

    /// Stops a peer abruptly: its connections reset at the other ends.
    pub fn crash(&mut self, id: NodeId) {
        let Some(node) = self.nodes.get_mut(id.0) else {
            return;
        };
        node.mesh = None;
        let doomed: Vec<u64> = self
            .links
            .iter()
            .filter(|(_, l)| l.ends.iter().any(|&(n, _)| n == id))
            .map(|(&k, _)| k)
            .collect();
        for key in doomed {
            self.drop_link(key, None, "connection reset by peer");
        }
    }

    /// Starts a crashed peer again: same name and targets, a new uid (new incarnation),
    /// no endpoints until set again.
    pub fn restart(&mut self, id: NodeId) -> Result<(), SimError> {
        let Some(node) = self.nodes.get(id.0) else {
            return Err(SimError::NotRunning(id));
        };
        if node.mesh.is_some() {
            self.crash(id);
        }
        let uid = self.rng.next_u64();
        let Some(node) = self.nodes.get_mut(id.0) else {
            return Err(SimError::NotRunning(id));
        };
        node.config.uid = uid;
        node.endpoints.clear();
        let config = node.config.clone();
        let targets = node.targets.clone();
        let mesh = self.start_mesh(&config, &targets)?;
        if let Some(node) = self.nodes.get_mut(id.0) {
            node.mesh = Some(mesh);
        }
        Ok(())
    }

    /// Forbids `from` to dial `to` (existing connections stay).
    pub fn block_dial(&mut self, from: NodeId, to: NodeId) {
        self.blocked.insert((from, to));
    }

    /// Breaks the underlay between `a` and `b` both ways and resets their connections.
    pub fn cut(&mut self, a: NodeId, b: NodeId) {
        self.blocked.insert((a, b));
        self.blocked.insert((b, a));
        let doomed: Vec<u64> = self
            .links
            .iter()
            .filter(|(_, l)| {
                let [(x, _), (y, _)] = l.ends;
                (x, y) == (a, b) || (x, y) == (b, a)
            })
            .map(|(&k, _)| k)
            .collect();
        for key in doomed {
            self.drop_link(key, None, "link cut");
        }
    }

    /// Repairs the underlay between `a` and `b` (the connection makers reconnect).
    pub fn restore(&mut self, a: NodeId, b: NodeId) {
        self.blocked.remove(&(a, b));
        self.blocked.remove(&(b, a));
    }

    /// Cuts every pair of nodes in different groups.
    pub fn partition(&mut self, groups: &[&[NodeId]]) {
        for (i, left) in groups.iter().enumerate() {
            for right in groups.iter().skip(i + 1) {
                for &a in *left {
                    for &b in *right {
                        self.cut(a, b);
                    }
                }
            }
        }
    }

    /// Repairs every cut and block.
    pub fn heal(&mut self) {
        self.blocked.clear();
    }

    /// Sets the endpoints a node announces.
    pub fn set_endpoints(&mut self, id: NodeId, endpoints: Vec<Endpoint>) -> Result<(), SimError> {
        let now = self.now;
        let node = self.nodes.get_mut(id.0).ok_or(SimError::NotRunning(id))?;
        let mesh = node.mesh.as_mut().ok_or(SimError::NotRunning(id))?;
        mesh.set_local_endpoints(now, endpoints.clone())?;
        let mut sorted = endpoints;
        sorted.sort();
        sorted.dedup();
        node.endpoints = sorted;
        Ok(())
    }

    /// Pairs of nodes with a connection both ends consider established.
    pub fn established_links(&self) -> Vec<(NodeId, NodeId)> {
        let mut out = Vec::new();
        for link in self.links.values() {
            let [(a, ca), (b, cb)] = link.ends;
            let up = |id: NodeId, conn: ConnId| {
                self.nodes
                    .get(id.0)
                    .and_then(|n| n.mesh.as_ref())
                    .and_then(|m| m.connection_peer(conn))
                    .is_some()
            };
            if a != b && up(a, ca) && up(b, cb) {
                out.push((a.min(b), a.max(b)));
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    // ----- running --------------------------------------------------------------------

    /// One round: tick the clock, fire timers, deliver everything in flight, collect all
    /// output.
    pub fn step(&mut self) {
        self.now += self.tick;
        self.rounds += 1;
        let now = self.now;
        for node in &mut self.nodes {
            if let Some(mesh) = node.mesh.as_mut()
                && mesh.poll_timeout().is_some_and(|at| at <= now)
            {
                mesh.handle_timeout(now);
            }
        }
        self.deliver();
        self.collect();
    }

    fn deliver(&mut self) {
        let now = self.now;
        let keys: Vec<u64> = self.links.keys().copied().collect();
        for key in keys {
            for side in 0..2 {
                let Some(link) = self.links.get_mut(&key) else {
                    break;
                };
                let Some(buf) = link.in_flight.get_mut(side) else {
                    continue;
                };
                if buf.is_empty() {
                    continue;
                }
                let data = std::mem::take(buf);
                let Some(&(id, conn)) = link.ends.get(side) else {
                    continue;
                };
                let cuts = if self.fragment && data.len() > 1 {
                    let a = self.rng.random_range(0..data.len());
                    let b = self.rng.random_range(0..data.len());
                    [a.min(b), a.max(b)]
                } else {
                    [data.len(), data.len()]
                };
                let Some(mesh) = self.nodes.get_mut(id.0).and_then(|n| n.mesh.as_mut()) else {
                    continue;
                };
                let (head, rest) = data.split_at(cuts[0]);
                let (middle, tail) = rest.split_at(cuts[1] - cuts[0]);
                for piece in [head, middle, tail] {
                    if !piece.is_empty() {
                        mesh.handle_bytes(now, conn, piece);
                    }
                }
            }
        }
    }

    /// Drains every node's actions, transmits and events until nothing new appears.
    fn collect(&mut self) {
        for _pass in 0..32 {
            let mut progress = false;
            for index in 0..self.nodes.len() {
                progress |= self.drain(NodeId(index));
            }
            if !progress {
                break;
            }
        }
    }

    fn drain(&mut self, id: NodeId) -> bool {
        let mut progress = false;
        loop {
            let Some(mesh) = self.nodes.get_mut(id.0).and_then(|n| n.mesh.as_mut()) else {
                return progress;
            };
            let Some(action) = mesh.poll_action() else {
                break;
            };
            progress = true;
            match action {
                Action::Dial { addr } => self.dial(id, addr),
                Action::Close { conn, reason } => {
                    if let Some(&key) = self.conn_to_link.get(&conn) {
                        self.drop_link(key, Some(conn), &format!("closed by peer: {reason}"));
                    }
                }
            }
        }
        let Some(node) = self.nodes.get_mut(id.0) else {
            return progress;
        };
        let Some(mesh) = node.mesh.as_mut() else {
            return progress;
        };
        while let Some(transmit) = mesh.poll_transmit() {
            progress = true;
            node.bytes_sent += transmit.data.len() as u64;
            let Some(link) = self
                .conn_to_link
                .get(&transmit.conn)
                .and_then(|key| self.links.get_mut(key))
            else {
                continue;
            };
            // Send towards the other end.
            let to = usize::from(link.ends.first().is_some_and(|&(_, c)| c == transmit.conn));
            if let Some(buf) = link.in_flight.get_mut(to) {
                buf.extend_from_slice(&transmit.data);
            }
        }
        while let Some(event) = mesh.poll_event() {
            if self.record_events {
                node.events.push(event);
            }
        }
        progress
    }

    fn dial(&mut self, from: NodeId, addr: SocketAddr) {
        let now = self.now;
        let target = self.by_addr.get(&addr).copied();
        let outcome = match target {
            Some(to) if self.blocked.contains(&(from, to)) => {
                Err((DialOutcome::Unreachable, "no route to host".to_owned()))
            }
            Some(to) if self.is_live(to) => Ok(to),
            _ => Err((DialOutcome::Refused, "connection refused".to_owned())),
        };
        let result = outcome.and_then(|to| {
            let ours = ConnId(self.next_conn);
            let theirs = ConnId(self.next_conn + 1);
            self.next_conn += 2;
            let ephemeral = SocketAddr::new(
                node_addr(from).ip(),
                40_000 + u16::try_from(ours.0 % 20_000).unwrap_or(0),
            );
            let Some(acceptor) = self.nodes.get_mut(to.0).and_then(|n| n.mesh.as_mut()) else {
                return Err((DialOutcome::Refused, "connection refused".to_owned()));
            };
            if let Err(e) =
                acceptor.handle_connection_opened(now, theirs, Direction::Inbound, ephemeral)
            {
                return Err((
                    DialOutcome::Rejected,
                    format!("connection closed by peer: {e}"),
                ));
            }
            let Some(dialer) = self.nodes.get_mut(from.0).and_then(|n| n.mesh.as_mut()) else {
                return Err((DialOutcome::Refused, "dialer gone".to_owned()));
            };
            if dialer
                .handle_connection_opened(now, ours, Direction::Outbound, addr)
                .is_err()
            {
                if let Some(acceptor) = self.nodes.get_mut(to.0).and_then(|n| n.mesh.as_mut()) {
                    acceptor.handle_connection_closed(
                        now,
                        theirs,
                        CloseReason::Transport("connection reset by peer".into()),
                    );
                }
                return Ok(None);
            }
            let key = ours.0;
            self.links.insert(
                key,
                Link {
                    ends: [(from, ours), (to, theirs)],
                    in_flight: [Vec::new(), Vec::new()],
                },
            );
            self.conn_to_link.insert(ours, key);
            self.conn_to_link.insert(theirs, key);
            Ok(Some(()))
        });
        let outcome = match result {
            Ok(Some(())) => DialOutcome::Connected,
            Ok(None) => DialOutcome::Rejected,
            Err((outcome, error)) => {
                if let Some(mesh) = self.nodes.get_mut(from.0).and_then(|n| n.mesh.as_mut()) {
                    mesh.handle_dial_failed(now, addr, error);
                }
                outcome
            }
        };
        self.dial_log.push(DialRecord {
            at: now,
            from,
            addr,
            outcome,
        });
    }

    /// Removes a link; tells every end except `closed_by` (which closed it itself).
    fn drop_link(&mut self, key: u64, closed_by: Option<ConnId>, why: &str) {
        let Some(link) = self.links.remove(&key) else {
            return;
        };
        let now = self.now;
        for (id, conn) in link.ends {
            self.conn_to_link.remove(&conn);
            if Some(conn) == closed_by {
                continue;
            }
            if let Some(mesh) = self.nodes.get_mut(id.0).and_then(|n| n.mesh.as_mut()) {
                mesh.handle_connection_closed(now, conn, CloseReason::Transport(why.to_owned()));
            }
        }
    }

    /// Whether no bytes are in flight.
    pub fn is_quiet(&self) -> bool {
        self.links
            .values()
            .all(|l| l.in_flight.iter().all(Vec::is_empty))
    }

    /// Runs rounds for `duration` of virtual time, jumping the clock to the next timer
    /// whenever nothing is in flight.
    pub fn run_for(&mut self, duration: Duration) {
        let end = self.now + duration;
        while self.now < end {
            if self.is_quiet() {
                let next = self
                    .nodes
                    .iter_mut()
                    .filter_map(|n| n.mesh.as_mut())
                    .filter_map(Mesh::poll_timeout)
                    .min();
                let target = next.map_or(end, |at| at.min(end));
                if target > self.now + self.tick {
                    self.now = target - self.tick;
                }
            }
            self.step();
        }
    }

    /// Whether some connection has not completed its Hello on both ends.
    pub fn has_pending_links(&self) -> bool {
        self.links.values().any(|link| {
            link.ends.iter().any(|&(id, conn)| {
                self.nodes
                    .get(id.0)
                    .and_then(|n| n.mesh.as_ref())
                    .is_some_and(|m| m.connection_peer(conn).is_none())
            })
        })
    }

    /// Runs rounds until no handshake is pending and [`Sim::check`] passes; returns the
    /// rounds it took. (Pending handshakes matter: a peer whose first connection is still
    /// opening is a component of its own, trivially "converged".)
    pub fn run_until_converged(&mut self, max_rounds: usize) -> Result<usize, SimError> {
        let mut detail = String::from("no round run");
        for round in 1..=max_rounds {
            self.step();
            if self.has_pending_links() {
                detail = "handshakes still pending".into();
                continue;
            }
            match self.quick_check() {
                Ok(()) => {
                    self.check()?;
                    return Ok(round);
                }
                Err(e) => detail = e.to_string(),
            }
        }
        Err(SimError::NotConverged {
            rounds: max_rounds,
            detail,
        })
    }

    /// Measures one change the way the scale report and the 1000-peer test count it:
    /// lets earlier changes play out (`settle` of virtual time, then convergence), applies
    /// `change`, and counts rounds until every live peer agrees — one component, no
    /// handshake pending, [`Sim::check`] passing — within `max_rounds`. Bytes are counted
    /// from the change until `tail` rounds after agreement, so late duplicates count too.
    pub fn measure_change(
        &mut self,
        settle: Duration,
        tail: usize,
        max_rounds: usize,
        change: impl FnOnce(&mut Self),
    ) -> Result<ChangeCost, SimError> {
        self.run_for(settle);
        // Settling is not what is measured: give it a generous bound of its own.
        self.run_until_converged(max_rounds.max(1000))?;
        self.reset_bytes();
        change(self);
        let mut agreed = None;
        let mut rounds = 0;
        let mut detail = String::new();
        while agreed.is_none_or(|at| rounds < at + tail) {
            self.step();
            rounds += 1;
            if agreed.is_none() {
                let verdict = if self.has_pending_links() {
                    Err("handshakes still pending".to_owned())
                } else if self.components().len() != 1 {
                    Err("more than one component".to_owned())
                } else {
                    self.quick_check()
                        .and_then(|()| self.check())
                        .map_err(|e| e.to_string())
                };
                match verdict {
                    Ok(()) => agreed = Some(rounds),
                    Err(e) => detail = e,
                }
            }
            if agreed.is_none() && rounds >= max_rounds {
                return Err(SimError::NotConverged { rounds, detail });
            }
        }
        let live = self.live();
        let bytes: Vec<u64> = live.iter().map(|&id| self.bytes_sent(id)).collect();
        Ok(ChangeCost {
            rounds: agreed.unwrap_or(rounds),
            mean_bytes: bytes.iter().sum::<u64>() as f64 / live.len().max(1) as f64,
            max_bytes: bytes.iter().copied().max().unwrap_or(0),
        })
    }

    /// Runs rounds until nothing is in flight; returns the rounds it took.
    pub fn run_until_quiet(&mut self, max_rounds: usize) -> Result<usize, SimError> {
        for round in 1..=max_rounds {
            self.step();
            if self.is_quiet() {
                return Ok(round);
            }
        }
        Err(SimError::NotConverged {
            rounds: max_rounds,
            detail: "bytes still in flight".into(),
        })
    }

    // ----- checking -------------------------------------------------------------------

    /// Connected components of running nodes over established links.
    pub fn components(&self) -> Vec<Vec<NodeId>> {
        let n = self.nodes.len();
        let mut parent: Vec<usize> = (0..n).collect();
        fn find(parent: &mut [usize], mut x: usize) -> usize {
            while let Some(&p) = parent.get(x) {
                if p == x {
                    break;
                }
                let grand = parent.get(p).copied().unwrap_or(p);
                if let Some(slot) = parent.get_mut(x) {
                    *slot = grand;
                }
                x = p;
            }
            x
        }
        for (a, b) in self.established_links() {
            let ra = find(&mut parent, a.0);
            let rb = find(&mut parent, b.0);
            if let Some(slot) = parent.get_mut(ra) {
                *slot = rb;
            }
        }
        let mut groups: BTreeMap<usize, Vec<NodeId>> = BTreeMap::new();
        for id in self.live() {
            let root = find(&mut parent, id.0);
            groups.entry(root).or_default().push(id);
        }
        groups.into_values().collect()
    }

    /// O(n) per component: every node's topology fingerprint equals the fingerprint of
    /// the component's own records, and endpoint fingerprints agree.
    pub fn quick_check(&mut self) -> Result<(), SimError> {
        for component in self.components() {
            let mut expected = 0;
            for &id in &component {
                if let Some(mesh) = self.mesh(id) {
                    let own = mesh.topology().own();
                    expected ^= mix(own.name, own.uid, own.version);
                }
            }
            let mut endpoint_prints = Vec::new();
            for &id in &component {
                let Some(mesh) = self.mesh(id) else {
                    continue;
                };
                if mesh.topology_fingerprint() != expected {
                    return Err(SimError::Views(format!(
                        "{id} has not seen every current record of its component"
                    )));
                }
                endpoint_prints.push(mesh.endpoints_fingerprint());
            }
            if endpoint_prints.windows(2).any(|w| w.first() != w.get(1)) {
                return Err(SimError::Endpoints("endpoint fingerprints differ".into()));
            }
        }
        Ok(())
    }

    /// The full consistency check described in the module doc.
    pub fn check(&mut self) -> Result<(), SimError> {
        let links = self.established_links();
        let mut neighbours: HashMap<PeerName, HashSet<PeerName>> = HashMap::new();
        for &(a, b) in &links {
            if let (Some(na), Some(nb)) = (self.name(a), self.name(b)) {
                neighbours.entry(na).or_default().insert(nb);
                neighbours.entry(nb).or_default().insert(na);
            }
        }
        for component in self.components() {
            self.check_views(&component)?;
            self.check_routes(&component, &neighbours)?;
            self.check_broadcast(&component, &neighbours)?;
            self.check_endpoints(&component)?;
        }
        Ok(())
    }

    fn check_views(&mut self, component: &[NodeId]) -> Result<(), SimError> {
        let mut truth: BTreeMap<PeerName, (u64, u64)> = BTreeMap::new();
        for &id in component {
            let Some(mesh) = self.mesh(id) else {
                continue;
            };
            let own = mesh.topology().own();
            truth.insert(own.name, (own.uid, own.version));
        }
        for &id in component {
            let Some(mesh) = self.mesh(id) else {
                continue;
            };
            let view: BTreeMap<PeerName, (u64, u64)> = mesh
                .topology()
                .records()
                .map(|r| (r.name, (r.uid, r.version)))
                .collect();
            if view != truth {
                let missing = truth.keys().filter(|k| !view.contains_key(k)).count();
                let extra = view.keys().filter(|k| !truth.contains_key(k)).count();
                return Err(SimError::Views(format!(
                    "{id} holds {} records ({missing} missing, {extra} extra, others stale?) \
                     for a component of {}",
                    view.len(),
                    truth.len()
                )));
            }
        }
        Ok(())
    }

    fn check_routes(
        &mut self,
        component: &[NodeId],
        neighbours: &HashMap<PeerName, HashSet<PeerName>>,
    ) -> Result<(), SimError> {
        let mut tables = HashMap::new();
        for &id in component {
            if let Some(mesh) = self.mesh(id) {
                tables.insert(mesh.name(), mesh.routes());
            }
        }
        let names: Vec<PeerName> = tables.keys().copied().collect();
        for &src in &names {
            for &dst in &names {
                let mut at = src;
                let mut steps = 0;
                while at != dst {
                    let hop = tables
                        .get(&at)
                        .and_then(|t| t.next_hop(dst))
                        .ok_or_else(|| SimError::Routes(format!("{at} has no route to {dst}")))?;
                    if !neighbours.get(&at).is_some_and(|s| s.contains(&hop)) {
                        return Err(SimError::Routes(format!(
                            "{at} routes to {dst} via {hop}, which is not connected to it"
                        )));
                    }
                    at = hop;
                    steps += 1;
                    if steps > names.len() {
                        return Err(SimError::Routes(format!("loop from {src} to {dst}")));
                    }
                }
            }
        }
        Ok(())
    }

    fn check_broadcast(
        &mut self,
        component: &[NodeId],
        neighbours: &HashMap<PeerName, HashSet<PeerName>>,
    ) -> Result<(), SimError> {
        let mut tables = Vec::new();
        for &id in component {
            if let Some(mesh) = self.mesh(id) {
                tables.push((mesh.name(), mesh.routes()));
            }
        }
        let step = (tables.len() / 8).max(1);
        let origins: Vec<PeerName> = tables.iter().step_by(step).map(|(n, _)| *n).collect();
        for origin in origins {
            let mut reached: HashMap<PeerName, usize> = HashMap::new();
            for (at, table) in &tables {
                for child in table.broadcast_children(origin, *at) {
                    if !neighbours.get(at).is_some_and(|s| s.contains(child)) {
                        return Err(SimError::Broadcast(format!(
                            "{at} forwards {origin}'s broadcasts to {child}, not a neighbour"
                        )));
                    }
                    *reached.entry(*child).or_default() += 1;
                }
            }
            for (name, _) in &tables {
                let expected = usize::from(*name != origin);
                let got = reached.get(name).copied().unwrap_or(0);
                if got != expected {
                    return Err(SimError::Broadcast(format!(
                        "{origin}'s broadcast reaches {name} {got} times"
                    )));
                }
            }
        }
        Ok(())
    }

    fn check_endpoints(&mut self, component: &[NodeId]) -> Result<(), SimError> {
        let mut truth: BTreeMap<PeerName, Vec<Endpoint>> = BTreeMap::new();
        for &id in component {
            if let Some(node) = self.nodes.get(id.0)
                && !node.endpoints.is_empty()
            {
                truth.insert(node.config.name, node.endpoints.clone());
            }
        }
        for &id in component {
            let Some(mesh) = self.mesh(id) else {
                continue;
            };
            let view: BTreeMap<PeerName, Vec<Endpoint>> = mesh
                .endpoints()
                .filter(|(_, eps)| !eps.is_empty())
                .map(|(p, eps)| (p, eps.to_vec()))
                .collect();
            if view != truth {
                return Err(SimError::Endpoints(format!(
                    "{id} knows endpoints of {} peers, expected {}",
                    view.len(),
                    truth.len()
                )));
            }
        }
        Ok(())
    }
}
