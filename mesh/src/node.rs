//! [`Mesh`]: one router's control-plane state machine, in the shape of quinn-proto.
//!
//! Contract:
//! - Inputs are `handle_*` calls carrying `now`; outputs are pulled with
//!   [`Mesh::poll_transmit`], [`Mesh::poll_action`], [`Mesh::poll_event`] and
//!   [`Mesh::poll_timeout`]; [`Mesh::handle_timeout`] must be called once `now` reaches
//!   the polled deadline. No I/O, no clock, no global randomness: the same inputs and seed
//!   give the same outputs.
//! - Work that depends on the whole graph (garbage collection, route rebuild, discovery,
//!   gossip flush, dialling) is deferred to the next `poll_*`/query call and done once,
//!   however many messages arrived in between: no per-message recomputation storms.
//! - Any input from the network is handled without panicking: bad input closes that one
//!   connection with a [`CloseReason`] (an [`Action::Close`]) and bumps a counter.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::codec::encode_frame;
use crate::config::{ConfigError, MeshConfig};
use crate::connection::{
    CloseReason, ConnId, Connection, ConnectionState, Direction, Neighbour, Refused, RemotePeer,
    TokenBucket,
};
use crate::endpoints::{EndpointError, EndpointMerge, EndpointStore};
use crate::gossip::{self, AntiEntropy};
use crate::maker::{ConnectionMaker, DialBudget, TargetSource};
use crate::peer::PeerName;
use crate::protocol::{
    ConnectionRecord, Endpoint, EndpointDigest, EndpointRecord, Hello, Message, PeerDigest,
    PeerRecord, SUPPORTED_VERSIONS,
};
use crate::routes::RouteTable;
use crate::status::{ConnectionStatus, MeshCounters, MeshStatus, PeerStatus, TargetStatus};
use crate::topology::{MergeResult, Topology};

/// How many provisional connections may exceed the limit while their Hello decides.
const OVER_LIMIT_SLACK: usize = 4;

/// Something the caller should know about (for logs, the data plane, the status API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A new [`RouteTable`] is available from [`Mesh::routes`].
    RoutesChanged,
    /// A peer's record arrived for the first time (since it was last removed).
    PeerAdded(PeerName),
    /// A peer became unreachable and was forgotten, endpoints included.
    PeerRemoved(PeerName),
    /// A peer's endpoint record changed or went away.
    EndpointsChanged(PeerName),
    /// A connection completed its Hello.
    ConnectionEstablished {
        /// The connection.
        conn: ConnId,
        /// The peer at the other end.
        peer: PeerName,
    },
    /// A connection is gone (closed by us or reported by the caller).
    ConnectionClosed {
        /// The connection.
        conn: ConnId,
        /// The peer, if its Hello had arrived.
        peer: Option<PeerName>,
        /// Why.
        reason: CloseReason,
    },
}

/// Something the caller must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Open a control connection to `addr`, then report `handle_connection_opened` or
    /// `handle_dial_failed`.
    Dial {
        /// Where to dial.
        addr: SocketAddr,
    },
    /// Close this connection (the node has already forgotten it).
    Close {
        /// The connection.
        conn: ConnId,
        /// Why, for the log.
        reason: CloseReason,
    },
}

/// Bytes to write to one connection: one or more whole frames, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The connection.
    pub conn: ConnId,
    /// Framed bytes.
    pub data: Vec<u8>,
}

/// One router's peer-mesh control plane.
#[derive(Debug)]
pub struct Mesh {
    config: MeshConfig,
    now: Instant,
    rng: ChaCha8Rng,
    topology: Topology,
    endpoints: EndpointStore,
    routes: Arc<RouteTable>,
    conns: BTreeMap<ConnId, Connection>,
    /// The established connection carrying each connected peer.
    peer_conns: HashMap<PeerName, ConnId>,
    maker: ConnectionMaker,
    accept: TokenBucket,
    anti_entropy: AntiEntropy,
    actions: VecDeque<Action>,
    events: VecDeque<Event>,
    counters: MeshCounters,
    /// Set when a record's connection list changed: GC, routes and discovery are due.
    graph_dirty: bool,
    /// Set when any connection has gossip queued.
    gossip_dirty: bool,
    /// Set when dial eligibility may have changed.
    maker_dirty: bool,
    /// Cached earliest dial deadline (valid while `!maker_dirty`).
    maker_deadline: Option<Instant>,
    /// After an established connection is lost, discovered targets are not dialled until
    /// then (about `backoff.initial`, jittered), so the neighbours of a crashed peer do not
    /// all re-dial in the same instant and the loss is gossiped before the replacement.
    replace_hold: Option<Instant>,
    added_since_settle: BTreeSet<PeerName>,
    endpoints_changed: BTreeSet<PeerName>,
    endpoints_dirty: bool,
}

impl Mesh {
    /// Starts a node at `now`; `seed` drives every random choice (jitter, nonces,
    /// anti-entropy neighbours), so a run is reproducible.
    pub fn new(config: MeshConfig, now: Instant, seed: u64) -> Result<Self, ConfigError> {
        config.validate()?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let own = PeerRecord {
            name: config.name,
            nickname: config.nickname.clone(),
            uid: config.uid,
            version: 1,
            connections: Vec::new(),
        };
        let topology = Topology::new(own);
        let anti_entropy = AntiEntropy::new(config.timers.anti_entropy_interval, now, &mut rng);
        Ok(Self {
            now,
            rng,
            endpoints: EndpointStore::new(config.name, config.uid),
            routes: Arc::new(RouteTable::build(&topology)),
            topology,
            conns: BTreeMap::new(),
            peer_conns: HashMap::new(),
            maker: ConnectionMaker::new(config.backoff),
            accept: TokenBucket::new(config.accept_burst, config.accept_rate, now),
            anti_entropy,
            actions: VecDeque::new(),
            events: VecDeque::new(),
            counters: MeshCounters::default(),
            graph_dirty: false,
            gossip_dirty: false,
            maker_dirty: false,
            maker_deadline: None,
            replace_hold: None,
            added_since_settle: BTreeSet::new(),
            endpoints_changed: BTreeSet::new(),
            endpoints_dirty: false,
            config,
        })
    }

    /// Our name.
    pub fn name(&self) -> PeerName {
        self.config.name
    }

    /// Our incarnation.
    pub fn uid(&self) -> u64 {
        self.config.uid
    }

    /// The configuration in force.
    pub fn config(&self) -> &MeshConfig {
        &self.config
    }

    /// Counters since start.
    pub fn counters(&self) -> &MeshCounters {
        &self.counters
    }

    fn advance(&mut self, now: Instant) {
        self.now = self.now.max(now);
    }

    // ----- inputs -------------------------------------------------------------------

    /// Adds an explicit target (`weft connect`, launch arguments); dialled at once.
    pub fn connect(&mut self, now: Instant, addr: SocketAddr) {
        self.advance(now);
        self.maker.connect(addr, self.now);
        self.maker_dirty = true;
    }

    /// Removes an explicit target; an existing connection to it stays (as in Weave).
    /// Returns whether it was an explicit target.
    pub fn forget(&mut self, addr: SocketAddr) -> bool {
        self.maker_dirty = true;
        self.maker.forget(addr)
    }

    /// The caller's dial to `addr` failed (`error` is kept for status).
    pub fn handle_dial_failed(&mut self, now: Instant, addr: SocketAddr, error: String) {
        self.advance(now);
        self.maker.dial_failed(addr, self.now, error, &mut self.rng);
        self.maker_dirty = true;
    }

    /// A TCP connection is up (and its preamble negotiated). On `Ok` our Hello is queued;
    /// on `Err` the caller must close the socket.
    pub fn handle_connection_opened(
        &mut self,
        now: Instant,
        conn: ConnId,
        direction: Direction,
        remote: SocketAddr,
    ) -> Result<(), Refused> {
        self.advance(now);
        self.maker_dirty = true;
        if self.conns.contains_key(&conn) {
            if direction == Direction::Outbound {
                self.maker.dial_failed(
                    remote,
                    self.now,
                    "connection id reused".into(),
                    &mut self.rng,
                );
            }
            return Err(Refused::DuplicateConnId(conn));
        }
        if direction == Direction::Inbound && !self.accept.try_take(self.now) {
            self.counters.refused_rate_limited += 1;
            return Err(Refused::RateLimited);
        }
        let mut over_limit = false;
        if self.conns.len() >= self.config.conn_limit {
            // At the limit, an inbound connection is admitted provisionally if some
            // connection could yield to it; its Hello decides (see `admit_over_limit`), so a
            // full peer can still be joined through (weave#426).
            let provisional = direction == Direction::Inbound
                && self.conns.len() < self.config.conn_limit + OVER_LIMIT_SLACK
                && self.sheddable_connection().is_some();
            if !provisional {
                self.counters.refused_conn_limit += 1;
                let refused = Refused::ConnectionLimit {
                    limit: self.config.conn_limit,
                };
                if direction == Direction::Outbound {
                    self.maker
                        .dial_failed(remote, self.now, refused.to_string(), &mut self.rng);
                }
                return Err(refused);
            }
            over_limit = true;
        }
        if direction == Direction::Outbound {
            self.maker.opened(remote, conn);
        }
        let nonce = self.rng.next_u64();
        let mut connection = Connection::new(
            direction,
            remote,
            self.now,
            nonce,
            self.config.max_frame_len,
        );
        let hello = Message::Hello(Hello {
            name: self.config.name,
            nickname: self.config.nickname.clone(),
            uid: self.config.uid,
            listen_port: self.config.listen_port,
            vxlan_port: self.config.vxlan_port,
            tunnel_port: self.config.tunnel_port,
            features: self.config.features,
            conn_nonce: nonce,
        });
        let before = connection.outbox.len();
        encode_frame(&hello, &mut connection.outbox);
        self.counters.bytes_sent += (connection.outbox.len() - before) as u64;
        connection.over_limit = over_limit;
        self.conns.insert(conn, connection);
        Ok(())
    }

    /// Stream bytes received on `conn` (any chunking). Frames are reassembled and handled
    /// in order; a broken stream closes the connection.
    pub fn handle_bytes(&mut self, now: Instant, conn: ConnId, data: &[u8]) {
        self.advance(now);
        let Some(connection) = self.conns.get_mut(&conn) else {
            return;
        };
        connection.last_recv = self.now;
        connection.decoder.push(data);
        self.counters.bytes_received += data.len() as u64;
        loop {
            let Some(connection) = self.conns.get_mut(&conn) else {
                return;
            };
            let decoded = match connection.decoder.next_frame() {
                Ok(None) => return,
                Ok(Some(body)) => Message::decode(body),
                Err(err) => {
                    self.counters.closed_bad_frame += 1;
                    self.close(conn, CloseReason::Frame(err));
                    return;
                }
            };
            match decoded {
                Ok(message) => self.dispatch(conn, message),
                Err(err) if !err.is_fatal() => {
                    self.counters.unknown_messages += 1;
                    connection.last_error = Some(err.to_string());
                }
                Err(err) => {
                    self.counters.closed_malformed += 1;
                    self.close(conn, CloseReason::Malformed(err));
                    return;
                }
            }
        }
    }

    /// One already-decoded message received on `conn` (for callers that run the codec
    /// themselves).
    pub fn handle_message(&mut self, now: Instant, conn: ConnId, message: Message) {
        self.advance(now);
        let Some(connection) = self.conns.get_mut(&conn) else {
            return;
        };
        connection.last_recv = self.now;
        self.dispatch(conn, message);
    }

    /// The caller closed or lost `conn`. Unknown ids (e.g. ones we closed) are ignored.
    pub fn handle_connection_closed(&mut self, now: Instant, conn: ConnId, reason: CloseReason) {
        self.advance(now);
        self.teardown(conn, reason, false);
    }

    /// Replaces the endpoints we announce; gossiped like topology changes.
    pub fn set_local_endpoints(
        &mut self,
        now: Instant,
        endpoints: Vec<Endpoint>,
    ) -> Result<(), EndpointError> {
        self.advance(now);
        EndpointStore::validate(&endpoints, self.config.max_frame_len)?;
        if self.endpoints.set_local(endpoints) {
            let me = self.config.name;
            self.endpoints_changed.insert(me);
            self.queue_endpoints_except(&[me], None);
        }
        Ok(())
    }

    /// Runs timers due at `now`: handshake and keepalive timeouts, keepalives,
    /// anti-entropy, and dial retries.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
        let now = self.now;
        let timers = self.config.timers;
        let mut to_close = Vec::new();
        let mut keepalive = Vec::new();
        for (&id, conn) in &self.conns {
            match conn.state() {
                ConnectionState::Pending => {
                    if now >= conn.opened_at + timers.handshake_timeout {
                        to_close
                            .push((id, CloseReason::HandshakeTimeout(timers.handshake_timeout)));
                    }
                }
                ConnectionState::Established => {
                    if now >= conn.last_recv + timers.keepalive_timeout {
                        to_close
                            .push((id, CloseReason::KeepaliveTimeout(timers.keepalive_timeout)));
                    } else if now >= conn.last_sent + timers.keepalive_interval {
                        keepalive.push(id);
                    }
                }
            }
        }
        for (id, reason) in to_close {
            match reason {
                CloseReason::HandshakeTimeout(_) => self.counters.closed_handshake_timeout += 1,
                _ => self.counters.closed_keepalive_timeout += 1,
            }
            self.close(id, reason);
        }
        for id in keepalive {
            if let Some(conn) = self.conns.get_mut(&id) {
                let before = conn.outbox.len();
                encode_frame(&Message::Keepalive, &mut conn.outbox);
                self.counters.bytes_sent += (conn.outbox.len() - before) as u64;
                conn.last_sent = now;
            }
        }
        if now >= self.anti_entropy.next {
            let candidates: Vec<ConnId> = self
                .conns
                .iter()
                .filter(|(_, c)| c.state() == ConnectionState::Established)
                .map(|(&id, _)| id)
                .collect();
            let chosen = gossip::pick_neighbours(
                &candidates,
                self.config.anti_entropy_fanout,
                &mut self.rng,
            );
            for id in chosen {
                if let Some(conn) = self.conns.get_mut(&id) {
                    conn.gossip.digest = Some(true);
                    self.gossip_dirty = true;
                }
            }
            self.anti_entropy.reschedule(now, &mut self.rng);
        }
        if self.maker_deadline.is_some_and(|at| at <= now) {
            self.maker_dirty = true;
        }
    }

    // ----- outputs ------------------------------------------------------------------

    /// The next bytes to write, one connection at a time.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.settle();
        let (&conn, connection) = self.conns.iter_mut().find(|(_, c)| !c.outbox.is_empty())?;
        Some(Transmit {
            conn,
            data: std::mem::take(&mut connection.outbox),
        })
    }

    /// The next dial or close to perform.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.settle();
        self.actions.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.settle();
        self.events.pop_front()
    }

    /// When [`Mesh::handle_timeout`] must next be called.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        self.settle();
        let timers = self.config.timers;
        let conn_deadlines = self.conns.values().map(|c| match c.state() {
            ConnectionState::Pending => c.opened_at + timers.handshake_timeout,
            ConnectionState::Established => (c.last_recv + timers.keepalive_timeout)
                .min(c.last_sent + timers.keepalive_interval),
        });
        conn_deadlines
            .chain(std::iter::once(self.anti_entropy.next))
            .chain(self.maker_deadline)
            .min()
    }

    // ----- queries ------------------------------------------------------------------

    /// The current route table (rebuilt first if the topology changed). Cheap to clone
    /// and share with the data-plane thread.
    pub fn routes(&mut self) -> Arc<RouteTable> {
        self.settle();
        Arc::clone(&self.routes)
    }

    /// Our next hop towards `dst`.
    pub fn next_hop(&mut self, dst: PeerName) -> Option<PeerName> {
        self.settle();
        self.routes.next_hop(dst)
    }

    /// Our children in `origin`'s broadcast tree.
    pub fn broadcast_children(&mut self, origin: PeerName) -> Vec<PeerName> {
        self.settle();
        self.routes
            .broadcast_children(origin, self.config.name)
            .to_vec()
    }

    /// The merged topology (garbage-collected first).
    pub fn topology(&mut self) -> &Topology {
        self.settle();
        &self.topology
    }

    /// Every peer's announced endpoints (ours included once announced).
    pub fn endpoints(&mut self) -> impl Iterator<Item = (PeerName, &[Endpoint])> {
        self.settle();
        self.endpoints
            .records()
            .map(|r| (r.peer, r.endpoints.as_slice()))
    }

    /// Digest of the topology view; equal on converged peers.
    pub fn topology_fingerprint(&mut self) -> u64 {
        self.settle();
        self.topology.fingerprint()
    }

    /// Digest of the endpoint view; equal on converged peers.
    pub fn endpoints_fingerprint(&mut self) -> u64 {
        self.settle();
        self.endpoints.fingerprint()
    }

    /// The peer on an established connection.
    pub fn connection_peer(&self, conn: ConnId) -> Option<PeerName> {
        self.conns.get(&conn)?.established_peer()
    }

    /// Whether `peer` is directly connected (established).
    pub fn is_connected(&self, peer: PeerName) -> bool {
        self.peer_conns.contains_key(&peer)
    }

    /// Established connections, by peer name.
    pub fn connected_peers(&self) -> impl Iterator<Item = (PeerName, ConnId)> + '_ {
        self.peer_conns.iter().map(|(&p, &c)| (p, c))
    }

    /// What `peer`'s Hello told us, if it is directly connected.
    pub fn neighbour(&self, peer: PeerName) -> Option<Neighbour> {
        let &conn = self.peer_conns.get(&peer)?;
        let remote = self.conns.get(&conn)?.peer.as_ref()?;
        Some(Neighbour {
            peer,
            nickname: remote.nickname.clone(),
            uid: remote.uid,
            conn,
            listen_addr: remote.listen_addr,
            vxlan_port: remote.vxlan_port,
            tunnel_port: remote.tunnel_port,
            features: remote.features,
        })
    }

    /// Number of live connections (pending and established).
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// A snapshot for `weft status`; ages are relative to `now`.
    pub fn status(&mut self, now: Instant) -> MeshStatus {
        self.settle();
        let secs = |at: Instant| now.saturating_duration_since(at).as_secs_f64();
        let mut peers: Vec<PeerStatus> = self
            .topology
            .records()
            .map(|r| PeerStatus {
                name: r.name,
                nickname: Some(r.nickname.clone()),
                uid: Some(r.uid),
                version: Some(r.version),
                placeholder: false,
                connections: r.connections.clone(),
                reachable: self.routes.is_reachable(r.name),
                next_hop: self.routes.next_hop(r.name),
                hops: self.routes.hops(r.name),
                endpoints: self.endpoints.get(&r.name).map_or(0, |e| e.endpoints.len()),
            })
            .collect();
        peers.extend(self.topology.placeholders().iter().map(|&name| PeerStatus {
            name,
            nickname: None,
            uid: None,
            version: None,
            placeholder: true,
            connections: Vec::new(),
            reachable: false,
            next_hop: None,
            hops: None,
            endpoints: 0,
        }));
        let connections = self
            .conns
            .iter()
            .map(|(&conn, c)| ConnectionStatus {
                conn,
                peer: c.peer.as_ref().map(|p| p.name),
                nickname: c.peer.as_ref().map(|p| p.nickname.clone()),
                remote: c.remote,
                direction: c.direction,
                state: c.state(),
                since_secs: secs(c.established_at.unwrap_or(c.opened_at)),
                last_error: c.last_error.clone(),
            })
            .collect();
        let targets = self
            .maker
            .targets
            .iter()
            .map(|(&addr, t)| {
                let state = t.state(t.peer.is_some_and(|p| self.peer_conns.contains_key(&p)));
                TargetStatus {
                    addr,
                    source: if t.explicit {
                        TargetSource::Explicit
                    } else {
                        TargetSource::Discovered
                    },
                    state,
                    peer: t.peer,
                    attempts: t.attempts,
                    // A connected target is not retried, whatever timer it still holds.
                    next_retry_in_secs: t
                        .next_attempt
                        .filter(|_| state != crate::maker::TargetState::Connected)
                        .map(|at| at.saturating_duration_since(now).as_secs_f64()),
                    last_error: t.last_error.clone(),
                }
            })
            .collect();
        let own = self.topology.own();
        MeshStatus {
            name: own.name,
            nickname: own.nickname.clone(),
            uid: own.uid,
            version: own.version,
            protocol: SUPPORTED_VERSIONS,
            topology_fingerprint: format!("{:016x}", self.topology.fingerprint()),
            peers,
            connections,
            targets,
            counters: self.counters.clone(),
        }
    }

    // ----- message handling ---------------------------------------------------------

    fn dispatch(&mut self, conn: ConnId, message: Message) {
        self.counters.messages_received += 1;
        let Some(connection) = self.conns.get(&conn) else {
            return;
        };
        let established = connection.state() == ConnectionState::Established;
        match message {
            Message::Hello(hello) if !established => self.on_hello(conn, hello),
            Message::Hello(_) => {
                self.counters.closed_protocol_violation += 1;
                self.close(conn, CloseReason::UnexpectedHello);
            }
            other if !established => {
                self.counters.closed_protocol_violation += 1;
                self.close(conn, CloseReason::MessageBeforeHello { kind: other.kind() });
            }
            Message::Keepalive => {}
            Message::Topology(records) => self.on_topology(conn, records),
            Message::Endpoints(records) => self.on_endpoints(conn, records),
            Message::Digest {
                reply,
                peers,
                endpoints,
            } => self.on_digest(conn, reply, &peers, &endpoints),
        }
    }

    fn on_hello(&mut self, conn: ConnId, hello: Hello) {
        let me = self.config.name;
        let Some(connection) = self.conns.get(&conn) else {
            return;
        };
        let (direction, remote) = (connection.direction, connection.remote);
        if hello.name == me {
            if hello.uid == self.config.uid {
                self.counters.self_connections += 1;
                // The Hello carries the nonce we sent on the dialling end, so the inbound
                // end can find which dialled address is ours, whatever order Hellos arrive.
                let dialled = if direction == Direction::Outbound {
                    Some((conn, remote))
                } else {
                    self.conns
                        .iter()
                        .find(|(_, c)| {
                            c.direction == Direction::Outbound && c.our_nonce == hello.conn_nonce
                        })
                        .map(|(&id, c)| (id, c.remote))
                };
                let ours = dialled.map_or(remote, |(_, addr)| addr);
                let reason = CloseReason::SelfConnection(ours);
                if let Some((dial_conn, dialled_addr)) = dialled {
                    self.maker.mark_ours(dialled_addr, reason.to_string());
                    self.close(dial_conn, reason.clone());
                }
                self.close(conn, reason);
            } else {
                self.collision(conn, direction, remote, me, self.config.uid, hello.uid);
            }
            return;
        }
        let existing = self.peer_conns.get(&hello.name).copied();
        if let Some(existing_uid) = existing
            .and_then(|id| self.conns.get(&id))
            .and_then(|c| c.peer.as_ref())
            .map(|p| p.uid)
            && existing_uid != hello.uid
        {
            self.collision(conn, direction, remote, hello.name, existing_uid, hello.uid);
            return;
        }
        if self.conns.get(&conn).is_some_and(|c| c.over_limit) && !self.admit_over_limit(hello.name)
        {
            self.counters.refused_conn_limit += 1;
            self.close(conn, CloseReason::ConnectionLimit(self.config.conn_limit));
            return;
        }
        let listen_addr = match direction {
            Direction::Outbound => remote,
            Direction::Inbound if hello.listen_port != 0 => {
                SocketAddr::new(remote.ip(), hello.listen_port)
            }
            Direction::Inbound => remote,
        };
        let name = hello.name;
        if let Some(connection) = self.conns.get_mut(&conn) {
            connection.peer = Some(RemotePeer {
                name,
                nickname: hello.nickname,
                uid: hello.uid,
                nonce: hello.conn_nonce,
                listen_addr,
                vxlan_port: hello.vxlan_port,
                tunnel_port: hello.tunnel_port,
                features: hello.features,
            });
        }
        if let Some(existing) = existing {
            let key = |id: ConnId| self.conns.get(&id).and_then(|c| c.survival_key(me));
            self.counters.duplicate_connections += 1;
            if key(conn) < key(existing) {
                self.close(existing, CloseReason::Duplicate(name));
            } else {
                self.close(conn, CloseReason::Duplicate(name));
                return;
            }
        }
        // State sync: a peer we already know gets our digest and then only what it lacks;
        // a newcomer (most likely empty-handed) gets everything at once, saving a round.
        let newcomer = !self.topology.contains(&name);
        let Some(connection) = self.conns.get_mut(&conn) else {
            return;
        };
        connection.established_at = Some(self.now);
        if newcomer {
            connection
                .gossip
                .peers
                .extend(self.topology.records().map(|r| r.name));
            connection
                .gossip
                .endpoints
                .extend(self.endpoints.records().map(|r| r.peer));
        } else {
            connection.gossip.digest = Some(false);
        }
        self.peer_conns.insert(name, conn);
        if direction == Direction::Outbound {
            self.maker.established(remote, name);
        } else {
            // The peer listens at (its address, its listen port): a target there is this
            // peer, connected now, so it needs no dial of its own. Without this a target
            // whose first dial failed (the peer was not up yet) is redialled after the
            // peer connected to us, and the duplicate replaces a working connection and
            // its tunnel session.
            self.maker.established(listen_addr, name);
        }
        self.maker_dirty = true;
        self.topology.add_own_connection(ConnectionRecord {
            peer: name,
            addr: listen_addr,
            outbound: direction == Direction::Outbound,
        });
        self.graph_dirty = true;
        self.queue_peers_except(&[me], None);
        self.events
            .push_back(Event::ConnectionEstablished { conn, peer: name });
    }

    fn collision(
        &mut self,
        conn: ConnId,
        direction: Direction,
        remote: SocketAddr,
        name: PeerName,
        ours: u64,
        theirs: u64,
    ) {
        self.counters.name_collisions += 1;
        let reason = CloseReason::NameCollision { name, ours, theirs };
        if direction == Direction::Outbound {
            if name == self.config.name {
                // Someone else uses our name: retrying cannot help until an operator acts.
                self.maker.mark_failed(remote, reason.to_string());
            } else {
                // Most often the peer restarted (a new incarnation) while our connection
                // to the old one has not timed out yet: retry with backoff, and the dial
                // succeeds once keepalives have closed the stale connection.
                self.maker
                    .dial_failed(remote, self.now, reason.to_string(), &mut self.rng);
                self.maker_dirty = true;
            }
        }
        self.close(conn, reason);
    }

    fn on_topology(&mut self, from: ConnId, records: Vec<PeerRecord>) {
        self.counters.records_received += records.len() as u64;
        let mut changed = Vec::new();
        let mut own_bumped = false;
        for record in records {
            let name = record.name;
            match self.topology.merge(record) {
                MergeResult::Unchanged => {}
                MergeResult::OwnBumped => own_bumped = true,
                result => {
                    if result.graph_changed() {
                        self.graph_dirty = true;
                    }
                    if matches!(result, MergeResult::Added { .. }) {
                        self.added_since_settle.insert(name);
                        // A record without connections cannot make anyone reachable, but
                        // it still needs a GC pass to be judged.
                        self.graph_dirty = true;
                    }
                    changed.push(name);
                }
            }
        }
        for name in changed {
            self.queue_record_delta(name, from);
        }
        if own_bumped {
            self.queue_peers_except(&[self.config.name], None);
        }
    }

    /// Queues the changed record of `owner` on every established connection that may
    /// lack it: not the one it came from, not the owner itself (same incarnation), and not
    /// the owner's own neighbours as its record lists them, because an owner always sends
    /// each new version of its record to every connection that version lists.
    fn queue_record_delta(&mut self, owner: PeerName, from: ConnId) {
        let Some(record) = self.topology.get(&owner) else {
            return;
        };
        let uid = record.uid;
        let served: Vec<PeerName> = record.connections.iter().map(|c| c.peer).collect();
        for (&id, conn) in &mut self.conns {
            if id == from {
                continue;
            }
            let Some(remote) = conn.peer.as_ref().filter(|_| conn.established_at.is_some()) else {
                continue;
            };
            let owner_itself = remote.name == owner && remote.uid == uid;
            if owner_itself || served.contains(&remote.name) {
                continue;
            }
            conn.gossip.peers.insert(owner);
            self.gossip_dirty = true;
        }
    }

    fn on_endpoints(&mut self, from: ConnId, records: Vec<EndpointRecord>) {
        self.counters.records_received += records.len() as u64;
        let mut changed = Vec::new();
        let mut own_bumped = false;
        for record in records {
            let peer = record.peer;
            match self.endpoints.merge(record) {
                EndpointMerge::Unchanged => {}
                EndpointMerge::OwnBumped => own_bumped = true,
                EndpointMerge::Changed => {
                    self.endpoints_changed.insert(peer);
                    changed.push(peer);
                }
            }
        }
        if !changed.is_empty() {
            self.endpoints_dirty = true;
        }
        self.queue_endpoints_except(&changed, Some(from));
        if own_bumped {
            self.queue_endpoints_except(&[self.config.name], None);
        }
    }

    fn on_digest(
        &mut self,
        from: ConnId,
        reply: bool,
        peers: &[PeerDigest],
        endpoints: &[EndpointDigest],
    ) {
        let Some(connection) = self.conns.get_mut(&from) else {
            return;
        };
        let (topology_bumped, endpoints_bumped) = gossip::answer_digest(
            &mut connection.gossip,
            &mut self.topology,
            &mut self.endpoints,
            peers,
            endpoints,
        );
        if reply {
            connection.gossip.digest = Some(false);
        }
        self.gossip_dirty = true;
        let me = self.config.name;
        if topology_bumped {
            self.queue_peers_except(&[me], None);
        }
        if endpoints_bumped {
            self.queue_endpoints_except(&[me], None);
        }
    }

    // ----- gossip queueing ----------------------------------------------------------

    fn queue_peers_except(&mut self, names: &[PeerName], except: Option<ConnId>) {
        if names.is_empty() {
            return;
        }
        for (&id, conn) in &mut self.conns {
            if Some(id) != except && conn.state() == ConnectionState::Established {
                conn.gossip.peers.extend(names.iter().copied());
                self.gossip_dirty = true;
            }
        }
    }

    fn queue_endpoints_except(&mut self, names: &[PeerName], except: Option<ConnId>) {
        if names.is_empty() {
            return;
        }
        for (&id, conn) in &mut self.conns {
            if Some(id) != except && conn.state() == ConnectionState::Established {
                conn.gossip.endpoints.extend(names.iter().copied());
                self.gossip_dirty = true;
            }
        }
    }

    // ----- closing ------------------------------------------------------------------

    /// Decides a provisional (over-limit) connection from `name`: a newcomer (a peer we
    /// know nothing of) gets the slot of the least needed connection; a peer already in
    /// the mesh does not, so peers that dial a full node again cannot make it shed
    /// connections over and over.
    fn admit_over_limit(&mut self, name: PeerName) -> bool {
        let known = self.topology.contains(&name) || self.topology.placeholders().contains(&name);
        if known {
            return false;
        }
        let Some(victim) = self.sheddable_connection() else {
            return false;
        };
        self.counters.shed_connections += 1;
        self.close(victim, CloseReason::Shed);
        true
    }

    /// A connection that can yield to a newcomer at the connection limit: the newest one
    /// we dialled to a merely discovered peer; failing that, the inbound one from the peer
    /// with the most connections, if it has more than `discovery_degree` (it stays well
    /// connected). `None` if every connection matters more than a newcomer.
    fn sheddable_connection(&self) -> Option<ConnId> {
        let established = || {
            self.conns
                .iter()
                .filter(|(_, c)| c.established_at.is_some())
        };
        let discovered = established()
            .filter(|(_, c)| {
                c.direction == Direction::Outbound && !self.maker.is_explicit(c.remote)
            })
            .max_by_key(|(id, c)| (c.established_at, **id))
            .map(|(&id, _)| id);
        discovered.or_else(|| {
            established()
                .filter(|(_, c)| c.direction == Direction::Inbound)
                .filter_map(|(&id, c)| {
                    let peer = c.peer.as_ref()?.name;
                    let degree = self.topology.get(&peer)?.connections.len();
                    (degree > self.config.discovery_degree).then_some((degree, id))
                })
                .max()
                .map(|(_, id)| id)
        })
    }

    /// Closes `conn` on our initiative.
    fn close(&mut self, conn: ConnId, reason: CloseReason) {
        self.teardown(conn, reason, true);
    }

    fn teardown(&mut self, conn: ConnId, reason: CloseReason, ours: bool) {
        let Some(connection) = self.conns.remove(&conn) else {
            return;
        };
        self.maker_dirty = true;
        if ours {
            self.actions.push_back(Action::Close {
                conn,
                reason: reason.clone(),
            });
        }
        let peer = connection.peer.as_ref().map(|p| p.name);
        if let Some(name) = connection.established_peer()
            && self.peer_conns.get(&name) == Some(&conn)
        {
            let hold = self
                .config
                .backoff
                .initial
                .mul_f64(self.rng.random_range(0.5..=1.5));
            self.replace_hold = Some(self.now + hold);
            self.peer_conns.remove(&name);
            if self.topology.remove_own_connection(name) {
                self.graph_dirty = true;
                self.queue_peers_except(&[self.config.name], None);
            }
        }
        if connection.direction == Direction::Outbound {
            let lived = connection
                .established_at
                .map(|at| self.now.saturating_duration_since(at));
            self.maker.closed(
                connection.remote,
                conn,
                self.now,
                lived,
                reason.to_string(),
                &mut self.rng,
            );
        }
        self.events
            .push_back(Event::ConnectionClosed { conn, peer, reason });
    }

    // ----- deferred work ------------------------------------------------------------

    /// Does the graph-wide work owed since the last call, once.
    fn settle(&mut self) {
        if self.graph_dirty {
            self.graph_dirty = false;
            let outcome = self.topology.collect_garbage();
            for name in &outcome.removed {
                if !self.added_since_settle.remove(name) {
                    self.events.push_back(Event::PeerRemoved(*name));
                }
            }
            if !outcome.removed.is_empty() {
                self.endpoints_dirty = true;
            }
            self.rebuild_routes();
            if self.config.discovery {
                if outcome.full {
                    self.update_discovery(None);
                } else {
                    self.update_discovery(Some(&outcome.grown));
                }
            }
        }
        for name in std::mem::take(&mut self.added_since_settle) {
            if self.topology.contains(&name) {
                self.events.push_back(Event::PeerAdded(name));
            }
        }
        let mut dropped = Vec::new();
        if self.endpoints_dirty {
            self.endpoints_dirty = false;
            let topology = &self.topology;
            dropped = self.endpoints.retain_peers(|p| topology.contains(p));
        }
        let changed = std::mem::take(&mut self.endpoints_changed);
        for peer in changed {
            if self.endpoints.get(&peer).is_some() && !dropped.contains(&peer) {
                self.events.push_back(Event::EndpointsChanged(peer));
            }
        }
        for peer in dropped {
            self.events.push_back(Event::EndpointsChanged(peer));
        }
        if self.gossip_dirty {
            self.gossip_dirty = false;
            for conn in self.conns.values_mut() {
                if conn.state() == ConnectionState::Established {
                    gossip::flush(
                        conn,
                        &self.topology,
                        &self.endpoints,
                        self.config.gossip_batch_len,
                        &mut self.counters,
                        self.now,
                    );
                }
            }
        }
        if self.maker_dirty {
            self.maker_dirty = false;
            self.run_maker();
        }
    }

    fn rebuild_routes(&mut self) {
        let table = RouteTable::build(&self.topology);
        self.counters.route_recomputes += 1;
        if table != *self.routes {
            self.routes = Arc::new(table);
            self.events.push_back(Event::RoutesChanged);
        }
    }

    /// Refreshes discovered targets: from every record (`None`), or only adds those listed
    /// by the records in `grown` (nothing can have disappeared then).
    fn update_discovery(&mut self, grown: Option<&[PeerName]>) {
        let me = self.config.name;
        let mut found = BTreeMap::new();
        let mut scan = |record: &PeerRecord| {
            if record.name == me {
                return;
            }
            for conn in &record.connections {
                if conn.peer != me {
                    found.insert(conn.addr, conn.peer);
                }
            }
        };
        match grown {
            None => self.topology.records().for_each(&mut scan),
            Some(names) => names
                .iter()
                .filter_map(|n| self.topology.get(n))
                .for_each(&mut scan),
        }
        if grown.is_none() {
            self.maker.set_discovered(&found, self.now);
        } else {
            self.maker.add_discovered(&found, self.now);
        }
        self.maker_dirty = true;
    }

    fn budget(&self) -> DialBudget {
        let used = self.conns.len() + self.maker.in_flight();
        let held = self.replace_hold.is_some_and(|until| self.now < until);
        DialBudget {
            explicit: self.config.conn_limit.saturating_sub(used),
            discovered: if held {
                0
            } else {
                self.config
                    .discovery_degree
                    .min(self.config.conn_limit)
                    .saturating_sub(used)
            },
        }
    }

    fn run_maker(&mut self) {
        let peer_conns = &self.peer_conns;
        let connected = |p: PeerName| peer_conns.contains_key(&p);
        let budget = self.budget();
        let dials = self
            .maker
            .due_dials(self.now, budget, connected, &mut self.rng);
        for addr in dials {
            self.actions.push_back(Action::Dial { addr });
        }
        let budget = self.budget();
        let peer_conns = &self.peer_conns;
        let next = self
            .maker
            .next_timeout(budget, |p: PeerName| peer_conns.contains_key(&p));
        let hold = self.replace_hold.filter(|&until| self.now < until);
        self.maker_deadline = next.into_iter().chain(hold).min();
    }

    /// Addresses known to be ours (learned from self-connections).
    pub fn our_addrs(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.maker.our_addrs().iter().copied()
    }
}

#[cfg(test)]
#[path = "node_tests.rs"]
mod tests;
