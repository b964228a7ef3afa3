//! The mesh thread: every TCP control connection of the peer mesh (port 6783 by default),
//! driving the pure [`mesh::Mesh`] core and telling the data plane what it learns.
//!
//! Contract:
//! - One thread, one mio loop ([`engine`]): it accepts and dials, runs each connection's
//!   version preamble, Noise handshake and encrypted records ([`link`]), feeds the
//!   plaintext to the core and writes what the core sends, and turns the core's events
//!   into [`MeshUpdate`](crate::dataplane::MeshUpdate)s ([`updates`]).
//! - The router talks to it only through [`Meshd`]: commands on a channel paired with a
//!   `mio::Waker`; requests that need an answer wait a bounded time.
//! - Malformed or hostile input on a control connection closes that connection with a
//!   logged reason; the thread and every other connection carry on. A connection that fails
//!   before it is established stays visible in [`MeshdStatus`] with its error (e.g. a
//!   password mismatch), so the operator can see why a peer never connected.

mod engine;
mod link;
mod status;
mod updates;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use crossbeam_channel::Sender;
use mio::net::TcpListener;
use mio::{Interest, Poll, Waker};
use tunnel::crypto::identity::StaticKeypair;

use crate::dataplane::MeshUpdates;
use engine::{Command, LISTENER, MeshLoop, WAKER};
use link::Credentials;
use updates::UpdateBridge;

pub use status::{ConnectionInfo, MeshdStatus};

/// How long the router waits for the mesh thread to answer a request.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// What the mesh thread is started with.
pub struct MeshdConfig {
    /// Where control connections are accepted (0.0.0.0:6783 by default; port 0 picks one).
    pub listen: SocketAddr,
    /// The router's peer name (persisted by the router).
    pub name: mesh::PeerName,
    /// The router's human-readable name (cut to 64 bytes).
    pub nickname: String,
    /// Our VXLAN UDP port, announced to peers.
    pub vxlan_port: u16,
    /// Our encrypted-tunnel UDP port, announced to peers.
    pub tunnel_port: u16,
    /// Argon2id of the mesh password; `None` runs unauthenticated Noise XX, which stops
    /// passive capture only.
    pub psk: Option<[u8; 32]>,
    /// The router's static X25519 key (persisted by the router).
    pub static_key: StaticKeypair,
    /// Most control connections at once (the core enforces it; default 64).
    pub conn_limit: usize,
    /// Whether to dial peers learned through gossip (default true).
    pub discovery: bool,
    /// Addresses to keep connected to: launch arguments and persisted `weft connect`s.
    pub targets: Vec<SocketAddr>,
}

impl fmt::Debug for MeshdConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The password's key stays out of logs.
        f.debug_struct("MeshdConfig")
            .field("listen", &self.listen)
            .field("name", &self.name)
            .field("nickname", &self.nickname)
            .field("vxlan_port", &self.vxlan_port)
            .field("tunnel_port", &self.tunnel_port)
            .field("password", &self.psk.is_some())
            .field("static_key", &self.static_key)
            .field("conn_limit", &self.conn_limit)
            .field("discovery", &self.discovery)
            .field("targets", &self.targets)
            .finish()
    }
}

/// The router's handle on the mesh thread; dropping it stops the thread like
/// [`Meshd::shutdown`].
#[derive(Debug)]
pub struct Meshd {
    commands: Sender<Command>,
    waker: Arc<Waker>,
    local_addr: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl Meshd {
    /// Binds the listener (a port in use is an error that names it) and starts the thread,
    /// which dials `config.targets` at once and sends what it learns to `updates`.
    pub fn start(config: MeshdConfig, updates: impl MeshUpdates) -> anyhow::Result<Self> {
        let mut listener = TcpListener::bind(config.listen).with_context(|| {
            format!(
                "cannot listen for mesh connections on TCP {} (is another weft router running?)",
                config.listen
            )
        })?;
        let local_addr = listener
            .local_addr()
            .context("cannot read the mesh listener's address")?;
        let name = config.name;
        let mut mesh_config = mesh::MeshConfig::new(
            name,
            mesh::Nickname::truncated(&config.nickname),
            rand::random(),
        );
        mesh_config.listen_port = local_addr.port();
        mesh_config.vxlan_port = config.vxlan_port;
        mesh_config.tunnel_port = config.tunnel_port;
        mesh_config.conn_limit = config.conn_limit;
        mesh_config.discovery = config.discovery;
        let now = Instant::now();
        let mut mesh = mesh::Mesh::new(mesh_config, now, rand::random())
            .context("cannot start the peer mesh")?;
        for addr in &config.targets {
            mesh.connect(now, *addr);
        }

        let poll = Poll::new().context("cannot create the mesh thread's poll")?;
        let waker = Arc::new(
            Waker::new(poll.registry(), WAKER).context("cannot create the mesh thread's waker")?,
        );
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .context("cannot watch the mesh listener")?;
        let (tx, rx) = crossbeam_channel::unbounded();
        let credentials = Credentials {
            psk: config.psk,
            static_key: config.static_key,
            tunnel_port: config.tunnel_port,
        };
        let bridge = UpdateBridge::new(Box::new(updates), name);
        let mesh_loop = MeshLoop::new(poll, rx, listener, mesh, credentials, bridge);
        let thread = std::thread::Builder::new()
            .name("weft-mesh".into())
            .spawn(move || mesh_loop.run())
            .context("cannot start the mesh thread")?;
        tracing::info!(%local_addr, %name, "peer mesh listening");
        Ok(Self {
            commands: tx,
            waker,
            local_addr,
            thread: Some(thread),
        })
    }

    /// The address the listener is bound to (the real port when started with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    fn send(&self, command: Command) -> anyhow::Result<()> {
        self.commands
            .send(command)
            .map_err(|_| anyhow::anyhow!("the mesh thread has stopped"))?;
        self.waker.wake().context("cannot wake the mesh thread")
    }

    fn ask<T>(&self, make: impl FnOnce(Sender<T>) -> Command) -> anyhow::Result<T> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.send(make(tx))?;
        rx.recv_timeout(ANSWER_TIMEOUT).map_err(|_| {
            anyhow::anyhow!("the mesh thread did not answer within {ANSWER_TIMEOUT:?}")
        })
    }

    /// Adds explicit targets (`weft connect`): dialled at once, then kept connected with
    /// backoff.
    pub fn connect(&self, addrs: Vec<SocketAddr>) -> anyhow::Result<()> {
        self.send(Command::Connect(addrs))
    }

    /// Removes explicit targets (`weft forget`); existing connections stay, as in Weave.
    pub fn forget(&self, addrs: Vec<SocketAddr>) -> anyhow::Result<()> {
        self.send(Command::Forget(addrs))
    }

    /// Replaces the endpoints this router announces; an invalid set is refused with the
    /// reason.
    pub fn set_local_endpoints(&self, endpoints: Vec<mesh::Endpoint>) -> anyhow::Result<()> {
        self.ask(|tx| Command::SetLocalEndpoints(endpoints, tx))?
            .context("the mesh refused the local endpoints")
    }

    /// A snapshot of the mesh and of every control connection; answers within
    /// [`ANSWER_TIMEOUT`] or fails.
    pub fn status(&self) -> anyhow::Result<MeshdStatus> {
        self.ask(Command::Status)
    }

    /// Closes every connection and waits for the thread to end.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = self.send(Command::Shutdown);
            if thread.join().is_err() {
                tracing::error!("the mesh thread panicked");
            }
        }
    }
}

impl Drop for Meshd {
    fn drop(&mut self) {
        self.stop();
    }
}
