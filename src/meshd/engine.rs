//! The mesh thread's event loop: one mio poll over the listener, every control connection
//! and the command waker, driving one [`mesh::Mesh`].
//!
//! Contract:
//! - Every connection the core knows about has exactly one [`ControlLink`] here (token =
//!   `ConnId`, never reused), and every close is reported to the core exactly once: links
//!   that fail on our side through `handle_connection_closed` (or `handle_dial_failed`
//!   before the TCP connect completed); links the core closes through its `Action::Close`.
//! - Edge-triggered: a socket is read until `WouldBlock`, but at most [`READ_BUDGET`] bytes
//!   per turn; one with input left goes to the back of a ready queue, so a busy peer cannot
//!   starve the others. Accepts are bounded the same way.
//! - After every turn the core's outputs are drained: transmits are sealed and written,
//!   events become data-plane updates, actions become dials and closes. Route updates are
//!   coalesced to one per turn.
//! - Nothing from the network panics the thread: every failure closes its one connection
//!   with a logged reason and the loop carries on.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use mesh::{Action, CloseReason, ConnId, Direction, Endpoint, EndpointError, Event, Mesh};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

use super::link::{ControlLink, Credentials, LinkError};
use super::status::{ConnectionInfo, FailureLog, MeshdStatus, TransportCounters};
use super::updates::UpdateBridge;
use crate::ratelog::{Kind, LogLimiter};

/// Log lines anyone who can reach the mesh port can cause, each rate-limited on its own.
const REFUSED: Kind = "mesh connections refused";
const FAILED: Kind = "mesh connections that failed their preamble or handshake";
const CLOSED_EARLY: Kind = "mesh connections closed before they were established";
const ACCEPT_FAILED: Kind = "failures to accept a mesh connection";

/// The listener's token.
pub(super) const LISTENER: Token = Token(0);
/// The command waker's token.
pub(super) const WAKER: Token = Token(1);
/// Tokens (and `ConnId`s) of connections start here and only grow.
const FIRST_CONN: usize = 2;
/// Bytes read per `read` call.
const READ_CHUNK: usize = 64 * 1024;
/// Bytes one connection may read per turn before the others get theirs.
const READ_BUDGET: usize = 4 * READ_CHUNK;
/// Connections accepted per turn.
const ACCEPTS_PER_TURN: usize = 64;
/// A dial that has not connected by then has failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a closing connection may take to deliver its last bytes (a REFUSE frame).
const LINGER: Duration = Duration::from_secs(2);

/// What the router asks of the mesh thread.
#[derive(Debug)]
pub(super) enum Command {
    /// Add explicit targets.
    Connect(Vec<SocketAddr>),
    /// Remove explicit targets.
    Forget(Vec<SocketAddr>),
    /// Replace our announced endpoints; the answer says whether they were valid.
    SetLocalEndpoints(Vec<Endpoint>, Sender<Result<(), EndpointError>>),
    /// Answer with a status snapshot.
    Status(Sender<MeshdStatus>),
    /// Close everything and end the thread.
    Shutdown,
}

/// The mesh thread's state.
#[derive(Debug)]
pub(super) struct MeshLoop {
    poll: Poll,
    commands: Receiver<Command>,
    listener: TcpListener,
    mesh: Mesh,
    credentials: Credentials,
    bridge: UpdateBridge,
    links: HashMap<Token, ControlLink>,
    /// Session indices of live links (each receiving index names one tunnel session).
    indices: HashSet<u32>,
    next_token: usize,
    /// Sockets with input left after their turn.
    ready: VecDeque<Token>,
    queued: HashSet<Token>,
    failures: FailureLog,
    closed: TransportCounters,
    limiter: LogLimiter,
    scratch: Vec<u8>,
    plain: Vec<u8>,
    running: bool,
}

fn conn_id(token: Token) -> ConnId {
    ConnId(token.0 as u64)
}

fn token_of(conn: ConnId) -> Token {
    Token(usize::try_from(conn.0).unwrap_or(usize::MAX))
}

impl MeshLoop {
    pub(super) fn new(
        poll: Poll,
        commands: Receiver<Command>,
        listener: TcpListener,
        mesh: Mesh,
        credentials: Credentials,
        bridge: UpdateBridge,
    ) -> Self {
        Self {
            poll,
            commands,
            listener,
            mesh,
            credentials,
            bridge,
            links: HashMap::new(),
            indices: HashSet::new(),
            next_token: FIRST_CONN,
            ready: VecDeque::new(),
            queued: HashSet::new(),
            failures: FailureLog::default(),
            closed: TransportCounters::default(),
            limiter: LogLimiter::default(),
            scratch: vec![0; READ_CHUNK],
            plain: Vec::new(),
            running: true,
        }
    }

    /// Runs until shutdown (or until the router's handle is dropped).
    pub(super) fn run(mut self) {
        let mut events = Events::with_capacity(256);
        let mut fired: Vec<(Token, bool)> = Vec::with_capacity(256);
        let now = Instant::now();
        self.pump(now);
        while self.running {
            let now = Instant::now();
            let timeout = if self.ready.is_empty() {
                self.next_deadline()
                    .map(|d| d.saturating_duration_since(now))
            } else {
                Some(Duration::ZERO)
            };
            if let Err(e) = self.poll.poll(&mut events, timeout)
                && e.kind() != std::io::ErrorKind::Interrupted
            {
                tracing::error!("the mesh thread's poll failed, stopping it: {e}");
                break;
            }
            fired.clear();
            fired.extend(events.iter().map(|e| (e.token(), e.is_writable())));
            let now = Instant::now();
            let mut wake = false;
            for &(token, writable) in &fired {
                match token {
                    WAKER => wake = true,
                    LISTENER => self.enqueue(LISTENER),
                    token => self.on_socket_event(token, writable, now),
                }
            }
            if wake {
                self.handle_commands(now);
            }
            for _ in 0..self.ready.len() {
                let Some(token) = self.ready.pop_front() else {
                    break;
                };
                let drained = if token == LISTENER {
                    self.accept(now)
                } else {
                    self.read_link(token, now)
                };
                if drained {
                    self.queued.remove(&token);
                } else {
                    self.ready.push_back(token);
                }
            }
            self.on_timers(Instant::now());
            self.pump(Instant::now());
        }
        self.close_all();
    }

    fn enqueue(&mut self, token: Token) {
        if self.queued.insert(token) {
            self.ready.push_back(token);
        }
    }

    /// Readiness on a connection: complete a connect, flush on writability, and queue it
    /// for reading (a closed or failed socket is readable too, so errors surface there).
    fn on_socket_event(&mut self, token: Token, writable: bool, now: Instant) {
        let Some(link) = self.links.get_mut(&token) else {
            return;
        };
        if link.is_connecting() {
            match link.connect_result() {
                Ok(false) => {}
                Ok(true) => self.connected(token, now),
                Err(e) => self.fail(token, e, now),
            }
            return;
        }
        if writable
            && !link.is_closing()
            && let Err(e) = link.flush()
        {
            self.fail(token, e, now);
            return;
        }
        self.enqueue(token);
    }

    // ----- connections --------------------------------------------------------------

    fn new_token(&mut self) -> Token {
        let token = Token(self.next_token);
        self.next_token = self.next_token.saturating_add(1);
        token
    }

    /// A random receiving session index, never 0 and unique among live links.
    fn new_session_index(&mut self) -> u32 {
        loop {
            let index: u32 = rand::random();
            if index != 0 && self.indices.insert(index) {
                return index;
            }
        }
    }

    fn register(&self, stream: &mut TcpStream, token: Token) -> std::io::Result<()> {
        self.poll
            .registry()
            .register(stream, token, Interest::READABLE | Interest::WRITABLE)
    }

    /// Accepts pending connections (a bounded number per turn); true when none are left.
    fn accept(&mut self, now: Instant) -> bool {
        for _ in 0..ACCEPTS_PER_TURN {
            match self.listener.accept() {
                Ok((stream, remote)) => self.admit(stream, remote, now),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // E.g. out of file descriptors: the next incoming connection retries.
                    if self.limiter.allow(now, ACCEPT_FAILED) {
                        tracing::warn!("cannot accept a mesh connection: {e}");
                    } else {
                        tracing::debug!("cannot accept a mesh connection: {e}");
                    }
                    return true;
                }
            }
        }
        false
    }

    fn admit(&mut self, mut stream: TcpStream, remote: SocketAddr, now: Instant) {
        let token = self.new_token();
        if let Err(e) = self.register(&mut stream, token) {
            tracing::warn!("cannot watch an accepted mesh connection from {remote}: {e}");
            return;
        }
        if let Err(refused) =
            self.mesh
                .handle_connection_opened(now, conn_id(token), Direction::Inbound, remote)
        {
            if self.limiter.allow(now, REFUSED) {
                tracing::info!("refused a mesh connection from {remote}: {refused}");
            } else {
                tracing::debug!("refused a mesh connection from {remote}: {refused}");
            }
            let _ = self.poll.registry().deregister(&mut stream);
            return;
        }
        let _ = stream.set_nodelay(true);
        let index = self.new_session_index();
        let mut link = ControlLink::accepted(stream, remote, index);
        link.start();
        tracing::debug!(%remote, conn = %conn_id(token), "accepted a mesh connection");
        self.links.insert(token, link);
        self.flush_link(token, now);
        self.enqueue(token);
    }

    fn dial(&mut self, addr: SocketAddr, now: Instant) {
        let mut stream = match TcpStream::connect(addr) {
            Ok(stream) => stream,
            Err(e) => {
                tracing::info!("cannot dial peer {addr}: {e}");
                self.mesh
                    .handle_dial_failed(now, addr, format!("cannot connect: {e}"));
                return;
            }
        };
        let token = self.new_token();
        if let Err(e) = self.register(&mut stream, token) {
            self.mesh
                .handle_dial_failed(now, addr, format!("cannot watch the socket: {e}"));
            return;
        }
        tracing::debug!(%addr, conn = %conn_id(token), "dialling peer");
        let index = self.new_session_index();
        let link = ControlLink::connecting(stream, addr, index, now + CONNECT_TIMEOUT);
        self.links.insert(token, link);
    }

    /// A dial's TCP connect completed.
    fn connected(&mut self, token: Token, now: Instant) {
        let Some(link) = self.links.get_mut(&token) else {
            return;
        };
        let remote = link.remote;
        if let Err(refused) =
            self.mesh
                .handle_connection_opened(now, conn_id(token), Direction::Outbound, remote)
        {
            // The core has recorded the failed attempt for its retry schedule.
            tracing::info!("not using the connection to {remote}: {refused}");
            self.drop_link(token);
            return;
        }
        let _ = link.stream.set_nodelay(true);
        link.start();
        self.flush_link(token, now);
        self.enqueue(token);
    }

    fn flush_link(&mut self, token: Token, now: Instant) {
        let Some(link) = self.links.get_mut(&token) else {
            return;
        };
        if let Err(e) = link.flush() {
            self.fail(token, e, now);
        }
    }

    /// Reads a bounded amount from a link; true when it has nothing more for now.
    fn read_link(&mut self, token: Token, now: Instant) -> bool {
        let mut budget = READ_BUDGET;
        loop {
            let Some(link) = self.links.get_mut(&token) else {
                return true;
            };
            if link.is_closing() {
                if link.drain_closing(&mut self.scratch) {
                    self.drop_link(token);
                }
                return true;
            }
            if link.is_connecting() {
                return true;
            }
            let n = match link.read_chunk(&mut self.scratch) {
                Ok(Some(n)) => n,
                Ok(None) => return true,
                Err(e) => {
                    self.fail(token, e, now);
                    return true;
                }
            };
            let data = self.scratch.get(..n).unwrap_or_default();
            let ingested = link
                .ingest(data, &self.credentials, &mut self.plain)
                .and_then(|()| link.flush());
            if let Err(e) = ingested {
                self.plain.clear();
                self.fail(token, e, now);
                return true;
            }
            if !self.plain.is_empty() {
                tracing::trace!(conn = %conn_id(token), bytes = self.plain.len(), "control bytes in");
                self.mesh.handle_bytes(now, conn_id(token), &self.plain);
                self.plain.clear();
            }
            budget = budget.saturating_sub(n);
            if budget == 0 {
                return false;
            }
        }
    }

    /// Closes a link because of a failure on our side and tells the core.
    fn fail(&mut self, token: Token, error: LinkError, now: Instant) {
        let Some(link) = self.links.get_mut(&token) else {
            return;
        };
        let remote = link.remote;
        if link.is_closing() {
            self.drop_link(token);
            return;
        }
        if link.is_connecting() {
            tracing::info!("cannot dial peer {remote}: {error}");
            self.mesh.handle_dial_failed(now, remote, error.to_string());
            self.drop_link(token);
            return;
        }
        let outbound = link.direction == Direction::Outbound;
        let never_established = link.peer.is_none();
        self.closed.count(link.state());
        // What an established peer does is worth a line each; what anyone can do by
        // connecting (an unestablished inbound connection) is rate-limited.
        let kind = (!outbound && never_established).then(|| {
            if error.is_misconfiguration() {
                FAILED
            } else {
                CLOSED_EARLY
            }
        });
        match (error.is_misconfiguration(), link.peer) {
            _ if kind.is_some_and(|k| !self.limiter.allow(now, k)) => {
                tracing::debug!("mesh connection with {remote} closed: {error}");
            }
            (true, _) => tracing::warn!("mesh connection with {remote} failed: {error}"),
            (false, Some(peer)) => {
                tracing::info!("connection to peer {peer} at {remote} lost: {error}");
            }
            (false, None) => {
                tracing::info!("mesh connection with {remote} closed: {error}");
            }
        }
        if never_established {
            self.failures.record(remote, outbound, error.to_string());
        }
        self.mesh.handle_connection_closed(
            now,
            conn_id(token),
            CloseReason::Transport(error.to_string()),
        );
        self.linger(token, now);
    }

    /// Moves a link the core no longer knows into its closing stage.
    fn linger(&mut self, token: Token, now: Instant) {
        let Some(link) = self.links.get_mut(&token) else {
            return;
        };
        link.begin_close(now + LINGER);
        if link.drain_closing(&mut self.scratch) {
            self.drop_link(token);
        }
    }

    fn drop_link(&mut self, token: Token) {
        if let Some(mut link) = self.links.remove(&token) {
            let _ = self.poll.registry().deregister(&mut link.stream);
            self.indices.remove(&link.session_index);
        }
        self.queued.remove(&token);
    }

    fn close_all(&mut self) {
        let tokens: Vec<Token> = self.links.keys().copied().collect();
        for token in tokens {
            if let Some(link) = self.links.get_mut(&token) {
                let _ = link.flush();
                let _ = link.stream.shutdown(std::net::Shutdown::Both);
            }
            self.drop_link(token);
        }
    }

    // ----- timers -------------------------------------------------------------------

    fn next_deadline(&mut self) -> Option<Instant> {
        let links = self.links.values().filter_map(ControlLink::deadline);
        links
            .chain(self.mesh.poll_timeout())
            .chain(self.limiter.poll_timeout())
            .min()
    }

    fn on_timers(&mut self, now: Instant) {
        if self.mesh.poll_timeout().is_some_and(|at| at <= now) {
            self.mesh.handle_timeout(now);
        }
        while let Some(summary) = self.limiter.poll_summary(now) {
            tracing::info!("{summary}");
        }
        let due: Vec<Token> = self
            .links
            .iter()
            .filter(|(_, l)| l.deadline().is_some_and(|at| at <= now))
            .map(|(&t, _)| t)
            .collect();
        for token in due {
            let Some(link) = self.links.get(&token) else {
                continue;
            };
            if link.is_connecting() {
                let error = format!("no answer within {}s", CONNECT_TIMEOUT.as_secs());
                self.fail(token, LinkError::Connect(error), now);
            } else {
                self.drop_link(token);
            }
        }
    }

    // ----- the core's outputs -------------------------------------------------------

    /// Drains the core: transmits, events, then actions, until it has nothing more.
    fn pump(&mut self, now: Instant) {
        loop {
            let mut progressed = false;
            while let Some(transmit) = self.mesh.poll_transmit() {
                progressed = true;
                let token = token_of(transmit.conn);
                let Some(link) = self.links.get_mut(&token) else {
                    continue;
                };
                tracing::trace!(conn = %transmit.conn, bytes = transmit.data.len(), "control bytes out");
                if let Err(e) = link.send_plain(&transmit.data).and_then(|()| link.flush()) {
                    self.fail(token, e, now);
                }
            }
            // Events before actions: an established connection's keys are still at hand
            // even when the core also decided to close it in the same breath.
            while let Some(event) = self.mesh.poll_event() {
                progressed = true;
                self.on_event(event);
            }
            while let Some(action) = self.mesh.poll_action() {
                progressed = true;
                match action {
                    Action::Dial { addr } => self.dial(addr, now),
                    Action::Close { conn, reason } => self.close_for_core(conn, &reason, now),
                }
            }
            if !progressed {
                break;
            }
        }
        self.bridge.flush_routes(&mut self.mesh);
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::ConnectionEstablished { conn, peer } => {
                let link = self
                    .links
                    .get_mut(&token_of(conn))
                    .filter(|l| !l.is_closing());
                if let Some(link) = link {
                    link.peer = Some(peer);
                    let outbound = link.direction == Direction::Outbound;
                    self.failures.clear(link.remote, outbound);
                    let nickname = self
                        .mesh
                        .neighbour(peer)
                        .map(|n| n.nickname.as_str().to_string())
                        .unwrap_or_default();
                    tracing::info!(
                        "connected to peer {peer} ({nickname}) at {}, {}; encryption: {}",
                        link.remote,
                        if outbound { "outbound" } else { "inbound" },
                        link.encryption().describe()
                    );
                }
                let link = self
                    .links
                    .get_mut(&token_of(conn))
                    .filter(|l| !l.is_closing());
                self.bridge
                    .connection_established(&self.mesh, conn, peer, link);
            }
            Event::ConnectionClosed { conn, peer, reason } => {
                tracing::debug!(conn = %conn, ?peer, "mesh connection closed: {reason}");
                self.bridge.connection_closed(&self.mesh, conn, peer);
            }
            Event::PeerAdded(peer) => {
                tracing::debug!(%peer, "peer joined the mesh");
                self.bridge.peer_added(&mut self.mesh, peer);
            }
            Event::PeerRemoved(peer) => {
                tracing::info!("peer {peer} left the mesh");
                self.bridge.peer_removed(peer);
            }
            Event::EndpointsChanged(peer) => self.bridge.endpoints_changed(&mut self.mesh, peer),
            Event::RoutesChanged => self.bridge.routes_changed(),
        }
    }

    /// The core closed a connection (it has forgotten it already).
    fn close_for_core(&mut self, conn: ConnId, reason: &CloseReason, now: Instant) {
        let token = token_of(conn);
        let Some(link) = self.links.get(&token) else {
            return;
        };
        let remote = link.remote;
        let outbound = link.direction == Direction::Outbound;
        match link.peer {
            Some(peer) => {
                tracing::info!("closing the connection to peer {peer} at {remote}: {reason}");
            }
            None if !outbound && !self.limiter.allow(now, CLOSED_EARLY) => {
                tracing::debug!("closing the mesh connection with {remote}: {reason}");
            }
            None => tracing::info!("closing the mesh connection with {remote}: {reason}"),
        }
        // A duplicate gives way to another connection to the same peer: not a failure.
        if link.peer.is_none() && !matches!(reason, CloseReason::Duplicate(_)) {
            let outbound = link.direction == Direction::Outbound;
            self.failures.record(remote, outbound, reason.to_string());
        }
        self.linger(token, now);
    }

    // ----- commands -----------------------------------------------------------------

    fn handle_commands(&mut self, now: Instant) {
        loop {
            let command = match self.commands.try_recv() {
                Ok(command) => command,
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Disconnected) => {
                    self.running = false;
                    return;
                }
            };
            match command {
                Command::Connect(addrs) => {
                    for addr in addrs {
                        self.mesh.connect(now, addr);
                    }
                }
                Command::Forget(addrs) => {
                    for addr in addrs {
                        self.mesh.forget(addr);
                    }
                }
                Command::SetLocalEndpoints(endpoints, reply) => {
                    let _ = reply.send(self.mesh.set_local_endpoints(now, endpoints));
                }
                Command::Status(reply) => {
                    let _ = reply.send(self.status(now));
                }
                Command::Shutdown => {
                    self.running = false;
                    return;
                }
            }
        }
    }

    fn status(&mut self, now: Instant) -> MeshdStatus {
        let mesh = self.mesh.status(now);
        let mut connections: Vec<(Token, ConnectionInfo)> = self
            .links
            .iter()
            .filter(|(_, l)| !l.is_closing())
            .map(|(&token, l)| {
                let core = mesh.connections.iter().find(|c| c.conn == conn_id(token));
                let info = ConnectionInfo {
                    remote: l.remote,
                    outbound: l.direction == Direction::Outbound,
                    state: l.state(),
                    peer: l.peer.or_else(|| core.and_then(|c| c.peer)),
                    encryption: l.encryption(),
                    last_error: core.and_then(|c| c.last_error.clone()),
                };
                (token, info)
            })
            .collect();
        connections.sort_by_key(|(token, _)| *token);
        let connections = connections
            .into_iter()
            .map(|(_, info)| info)
            .chain(self.failures.iter().cloned())
            .collect();
        MeshdStatus {
            mesh,
            connections,
            closed: self.closed,
        }
    }
}
