//! The API's sockets: one thread that accepts, reads and writes every API connection, so
//! that a slow or hostile client never holds up another, while the router still handles
//! the requests one at a time on its own thread.
//!
//! Contract:
//! - Every connection carries one request and one answer (`Connection: close`). Its bytes
//!   are parsed by [`super::http::parse`] as they arrive, within [`Limits::API`]: nothing
//!   is allocated for a body that has not arrived, and a request that cannot be valid is
//!   answered (400, 411, 413, 431, 505) and closed here, without reaching the router.
//! - A client has [`ConnLimits::request_timeout`] from its connect to deliver its whole
//!   request (else 408) and [`ConnLimits::write_timeout`] to take the answer; at most
//!   [`ConnLimits::max_connections`] local and [`ConnLimits::max_metrics_connections`]
//!   metrics connections are open at once, each listener counted on its own, so scrapers
//!   cannot crowd out the runtimes. Past the limit a new connection is answered 503 and
//!   closed.
//! - Complete requests go to the router's thread on a channel ([`ToHandler`]); its
//!   answers come back through [`IoHandle::respond`], which wakes this thread.
//! - Connections from the metrics listener are marked read-only; the router's side
//!   refuses them anything but the read-only requests.
//! - On shutdown the answers already given are still written (for at most
//!   [`SHUTDOWN_FLUSH`]), so the client of `POST /stop` gets its answer.

use std::collections::HashMap;
use std::io::{ErrorKind, Read as _, Write as _};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use crossbeam_channel::{Receiver, Sender, TryRecvError};
use mio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use mio::{Events, Interest, Poll, Token, Waker};

use super::http::{self, HttpRequest, Limits, Parsed};

/// How long and how many: the bounds every connection is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConnLimits {
    /// Time a client has, from its connect, to deliver its whole request.
    pub request_timeout: Duration,
    /// Time a client has to take its answer.
    pub write_timeout: Duration,
    /// Connections open at once on the API socket (a runtime may start 100 pods at once).
    pub max_connections: usize,
    /// Connections open at once on the metrics address.
    pub max_metrics_connections: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            max_connections: 512,
            max_metrics_connections: 32,
        }
    }
}
/// How long a closed connection's late input is read and dropped, so the kernel does not
/// reset the connection (and lose the answer) over unread bytes.
const LINGER: Duration = Duration::from_secs(1);
/// How long shutdown waits for answers still being written.
pub(crate) const SHUTDOWN_FLUSH: Duration = Duration::from_secs(2);
/// Bytes read per `read` call.
const READ_CHUNK: usize = 16 * 1024;

const WAKER: Token = Token(0);
const UNIX: Token = Token(1);
const TCP: Token = Token(2);
const FIRST_CONN: usize = 3;

/// A connection's identity, for the answer to find it (never reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ConnId(Token);

/// What the socket thread hands the router's thread.
#[derive(Debug)]
pub(crate) enum ToHandler {
    /// A whole request.
    Request {
        /// Where the answer goes.
        conn: ConnId,
        /// It came through the metrics address: read-only requests only.
        read_only: bool,
        /// The request.
        request: HttpRequest,
    },
    /// Stop serving (a signal arrived).
    Unblock,
}

enum Command {
    Respond(ConnId, Vec<u8>),
    Shutdown,
}

/// Either kind of stream.
#[derive(Debug)]
enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Self::Unix(s) => s.read(buf),
            Self::Tcp(s) => s.read(buf),
        }
    }

    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Self::Unix(s) => s.write(buf),
            Self::Tcp(s) => s.write(buf),
        }
    }

    fn shutdown_write(&self) {
        let _ = match self {
            Self::Unix(s) => s.shutdown(std::net::Shutdown::Write),
            Self::Tcp(s) => s.shutdown(std::net::Shutdown::Write),
        };
    }

    fn source(&mut self) -> &mut dyn mio::event::Source {
        match self {
            Self::Unix(s) => s,
            Self::Tcp(s) => s,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Reading the request until the deadline.
    Reading,
    /// The request is with the router.
    Waiting,
    /// Writing the answer until the deadline.
    Writing,
    /// Answer written; dropping late input until EOF or the deadline.
    Lingering,
}

#[derive(Debug)]
struct Conn {
    stream: Stream,
    read_only: bool,
    stage: Stage,
    deadline: Option<Instant>,
    input: Vec<u8>,
    output: Vec<u8>,
    written: usize,
    continue_sent: bool,
}

/// The listening sockets, bound by the router's thread (so a busy address is its error).
#[derive(Debug)]
pub(crate) struct Listeners {
    /// The API socket.
    pub unix: UnixListener,
    /// The read-only metrics address, if enabled.
    pub tcp: Option<TcpListener>,
}

/// The router's handle on the socket thread.
#[derive(Debug)]
pub(crate) struct IoHandle {
    commands: Sender<Command>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Respond(c, b) => write!(f, "Respond({c:?}, {} bytes)", b.len()),
            Self::Shutdown => f.write_str("Shutdown"),
        }
    }
}

impl IoHandle {
    /// Starts the socket thread; complete requests go to `to_handler`.
    pub(crate) fn start(
        mut listeners: Listeners,
        to_handler: Sender<ToHandler>,
        limits: ConnLimits,
    ) -> anyhow::Result<Self> {
        let poll = Poll::new().context("cannot create the API thread's poll")?;
        let waker = Arc::new(
            Waker::new(poll.registry(), WAKER).context("cannot create the API thread's waker")?,
        );
        poll.registry()
            .register(&mut listeners.unix, UNIX, Interest::READABLE)
            .context("cannot watch the API socket")?;
        if let Some(tcp) = &mut listeners.tcp {
            poll.registry()
                .register(tcp, TCP, Interest::READABLE)
                .context("cannot watch the metrics address")?;
        }
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut io = IoLoop {
            poll,
            limits,
            listeners,
            commands: rx,
            to_handler,
            conns: HashMap::new(),
            next: FIRST_CONN,
            open: [0, 0],
            scratch: vec![0; READ_CHUNK],
            shutting_down: None,
        };
        let thread = std::thread::Builder::new()
            .name("weft-api".into())
            .spawn(move || io.run())
            .context("cannot start the API thread")?;
        Ok(Self {
            commands: tx,
            waker,
            thread: Some(thread),
        })
    }

    /// Sends an answer (a whole HTTP response) to a connection.
    pub(crate) fn respond(&self, conn: ConnId, response: Vec<u8>) {
        if self.commands.send(Command::Respond(conn, response)).is_ok() {
            let _ = self.waker.wake();
        }
    }

    /// Writes the answers still pending (bounded by [`SHUTDOWN_FLUSH`]), closes everything
    /// and waits for the thread to end.
    pub(crate) fn shutdown(&mut self) {
        if let Some(thread) = self.thread.take() {
            if self.commands.send(Command::Shutdown).is_ok() {
                let _ = self.waker.wake();
            }
            if thread.join().is_err() {
                tracing::error!("the API thread panicked");
            }
        }
    }
}

impl Drop for IoHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct IoLoop {
    poll: Poll,
    limits: ConnLimits,
    listeners: Listeners,
    commands: Receiver<Command>,
    to_handler: Sender<ToHandler>,
    conns: HashMap<Token, Conn>,
    next: usize,
    /// Open connections per listener: [unix, tcp].
    open: [usize; 2],
    scratch: Vec<u8>,
    shutting_down: Option<Instant>,
}

impl IoLoop {
    fn run(&mut self) {
        let mut events = Events::with_capacity(256);
        loop {
            let now = Instant::now();
            if let Some(until) = self.shutting_down {
                let writing = self.conns.values().any(|c| c.stage == Stage::Writing);
                if !writing || now >= until {
                    return;
                }
            }
            let timeout = self
                .conns
                .values()
                .filter_map(|c| c.deadline)
                .chain(self.shutting_down)
                .min()
                .map(|d| d.saturating_duration_since(now));
            if let Err(e) = self.poll.poll(&mut events, timeout)
                && e.kind() != ErrorKind::Interrupted
            {
                tracing::error!("the API thread's poll failed, stopping it: {e}");
                return;
            }
            let now = Instant::now();
            for event in &events {
                match event.token() {
                    WAKER => self.commands(now),
                    UNIX | TCP if self.shutting_down.is_some() => {}
                    UNIX => self.accept(false, now),
                    TCP => self.accept(true, now),
                    token => self.ready(token, now),
                }
            }
            self.expire(Instant::now());
        }
    }

    fn commands(&mut self, now: Instant) {
        loop {
            match self.commands.try_recv() {
                Ok(Command::Respond(conn, response)) => self.respond(conn.0, response, now),
                Ok(Command::Shutdown) | Err(TryRecvError::Disconnected) => {
                    self.begin_shutdown(now);
                    return;
                }
                Err(TryRecvError::Empty) => return,
            }
        }
    }

    fn begin_shutdown(&mut self, now: Instant) {
        if self.shutting_down.is_some() {
            return;
        }
        self.shutting_down = Some(now + SHUTDOWN_FLUSH);
        let _ = self.poll.registry().deregister(&mut self.listeners.unix);
        if let Some(tcp) = &mut self.listeners.tcp {
            let _ = self.poll.registry().deregister(tcp);
        }
        let idle: Vec<Token> = self
            .conns
            .iter()
            .filter(|(_, c)| c.stage != Stage::Writing)
            .map(|(t, _)| *t)
            .collect();
        for token in idle {
            self.close(token);
        }
    }

    fn accept(&mut self, tcp: bool, now: Instant) {
        loop {
            let accepted = if tcp {
                match &self.listeners.tcp {
                    Some(l) => l.accept().map(|(s, _)| Stream::Tcp(s)),
                    None => return,
                }
            } else {
                self.listeners.unix.accept().map(|(s, _)| Stream::Unix(s))
            };
            let mut stream = match accepted {
                Ok(s) => s,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    // E.g. out of file descriptors: the next connection retries.
                    tracing::warn!("cannot accept an API connection: {e}");
                    return;
                }
            };
            let (slot, limit) = if tcp {
                (1, self.limits.max_metrics_connections)
            } else {
                (0, self.limits.max_connections)
            };
            if self.open[slot] >= limit {
                refuse(&mut stream, limit, tcp);
                continue;
            }
            if let Stream::Tcp(s) = &stream {
                let _ = s.set_nodelay(true);
            }
            let token = Token(self.next);
            self.next = self.next.saturating_add(1);
            if let Err(e) = self.poll.registry().register(
                stream.source(),
                token,
                Interest::READABLE | Interest::WRITABLE,
            ) {
                tracing::warn!("cannot watch an API connection: {e}");
                continue;
            }
            self.open[slot] += 1;
            self.conns.insert(
                token,
                Conn {
                    stream,
                    read_only: tcp,
                    stage: Stage::Reading,
                    deadline: Some(now + self.limits.request_timeout),
                    input: Vec::new(),
                    output: Vec::new(),
                    written: 0,
                    continue_sent: false,
                },
            );
            // Data may have arrived with the connect; edge-triggered readiness will not
            // say so again.
            self.ready(token, now);
        }
    }

    fn ready(&mut self, token: Token, now: Instant) {
        let Some(conn) = self.conns.get(&token) else {
            return;
        };
        match conn.stage {
            Stage::Reading => self.read_request(token, now),
            Stage::Writing => self.write(token, now),
            Stage::Lingering => self.linger(token),
            Stage::Waiting => {}
        }
    }

    fn read_request(&mut self, token: Token, now: Instant) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        loop {
            match conn.stream.read(&mut self.scratch) {
                Ok(0) => {
                    // The client went away (or half-closed) before a whole request.
                    let complete = matches!(
                        http::parse(&conn.input, &Limits::API),
                        Ok(Parsed::Complete(_))
                    );
                    if !complete {
                        self.close(token);
                        return;
                    }
                    break;
                }
                Ok(n) => {
                    conn.input
                        .extend_from_slice(self.scratch.get(..n).unwrap_or_default());
                    // Stop reading once the request is decided: the parser has seen
                    // all it needs, and the rest is the client's problem.
                    if !matches!(
                        http::parse(&conn.input, &Limits::API),
                        Ok(Parsed::Partial { .. })
                    ) {
                        break;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::debug!("API connection failed while reading: {e}");
                    self.close(token);
                    return;
                }
            }
        }
        match http::parse(&conn.input, &Limits::API) {
            Ok(Parsed::Partial { expect_continue }) => {
                if expect_continue && !conn.continue_sent {
                    conn.continue_sent = true;
                    // Tiny, and the socket buffer is empty: one write does it; if not,
                    // the client sends its body anyway after a second.
                    let _ = conn.stream.write(http::CONTINUE);
                }
            }
            Ok(Parsed::Complete(request)) => {
                conn.stage = Stage::Waiting;
                conn.deadline = None;
                conn.input = Vec::new();
                let message = ToHandler::Request {
                    conn: ConnId(token),
                    read_only: conn.read_only,
                    request,
                };
                if self.to_handler.send(message).is_err() {
                    self.close(token);
                }
            }
            Err(e) => {
                tracing::debug!("refused an API request: {e}");
                let body = error_body(&e.to_string());
                self.respond(
                    token,
                    http::response(e.status(), "application/json", &body),
                    now,
                );
            }
        }
    }

    fn respond(&mut self, token: Token, response: Vec<u8>, now: Instant) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        conn.stage = Stage::Writing;
        conn.deadline = Some(now + self.limits.write_timeout);
        conn.input = Vec::new();
        conn.output = response;
        conn.written = 0;
        self.write(token, now);
    }

    fn write(&mut self, token: Token, now: Instant) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        while conn.written < conn.output.len() {
            match conn
                .stream
                .write(conn.output.get(conn.written..).unwrap_or_default())
            {
                Ok(0) => {
                    self.close(token);
                    return;
                }
                Ok(n) => conn.written += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::debug!("API client went away before the answer: {e}");
                    self.close(token);
                    return;
                }
            }
        }
        conn.stream.shutdown_write();
        conn.output = Vec::new();
        conn.stage = Stage::Lingering;
        conn.deadline = Some(now + LINGER);
        self.linger(token);
    }

    fn linger(&mut self, token: Token) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        loop {
            match conn.stream.read(&mut self.scratch) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        self.close(token);
    }

    fn expire(&mut self, now: Instant) {
        let due: Vec<Token> = self
            .conns
            .iter()
            .filter(|(_, c)| c.deadline.is_some_and(|d| d <= now))
            .map(|(t, _)| *t)
            .collect();
        for token in due {
            let Some(conn) = self.conns.get(&token) else {
                continue;
            };
            if conn.stage == Stage::Reading {
                tracing::debug!("an API client did not send its request in time");
                let body = error_body(&format!(
                    "the request did not arrive within {:?}",
                    self.limits.request_timeout
                ));
                self.respond(token, http::response(408, "application/json", &body), now);
            } else {
                self.close(token);
            }
        }
    }

    fn close(&mut self, token: Token) {
        if let Some(mut conn) = self.conns.remove(&token) {
            let _ = self.poll.registry().deregister(conn.stream.source());
            let slot = usize::from(conn.read_only);
            self.open[slot] = self.open[slot].saturating_sub(1);
        }
    }
}

/// Answers a connection past the limit with 503 (one non-blocking write; a client that
/// cannot take it at once gets a closed connection) and drops it.
fn refuse(stream: &mut Stream, limit: usize, tcp: bool) {
    tracing::debug!(
        "refused an API connection: {limit} {} connections are open",
        if tcp { "metrics" } else { "API" }
    );
    let body = error_body(&format!("too many connections ({limit} open); try again"));
    let _ = stream.write(&http::response(503, "application/json", &body));
    stream.shutdown_write();
}

/// `{"error": message}`.
pub(crate) fn error_body(message: &str) -> Vec<u8> {
    serde_json::to_vec(&super::ErrorBody {
        error: message.to_string(),
    })
    .unwrap_or_default()
}
