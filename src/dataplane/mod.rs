//! The data plane's shell: one thread that owns every port and tunnel socket, runs a mio
//! loop and moves bytes between the sockets and the pure core (`datapath::Core`), which
//! makes every decision.
//!
//! Run to completion: a batch read from a port is handed to the core, which switches it
//! and hands back transmits that this thread writes out on the spot, with buffers
//! allocated once. The control plane (the API thread, the mesh) talks to it only through
//! [`Dataplane`], whose commands travel on a channel paired with a `mio::Waker`; they
//! carry ports, peers and table updates, never frames.

mod engine;
mod sockets;
mod stats;
mod status;

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context as _;
use crossbeam_channel::{Receiver, Sender};
use learning::{NetworkId, PortId};

pub use datapath::{KnownEndpoint, MeshUpdate, NetworkDef};

use crate::api::report::{PeerReport, PortReport, TableReport};
use crate::io::{PacketPort, TapPort, UdpOptions};

/// What the data plane is started with.
#[derive(Debug, Clone)]
pub struct DataplaneConfig {
    /// Where VXLAN is received (0.0.0.0:4789 by default).
    pub vxlan_bind: SocketAddr,
    /// The overlay MTUs (the same computation the control plane gives containers theirs
    /// by): frames bigger than them are cut or answered with ICMP before they leave.
    pub mtu: tunnel::PathMtus,
    /// This router's peer name, carried in data-path heartbeats and tunnel frames.
    pub local_name: mesh::PeerName,
    /// Socket options of the tunnel sockets.
    pub udp: UdpOptions,
    /// How many send sockets spread flows over outer source ports.
    pub send_sockets: usize,
    /// Where the encrypted tunnel is received (0.0.0.0:6784 by default).
    pub tunnel_bind: SocketAddr,
    /// A mesh password is set: peers outside the trusted subnets get the encrypted
    /// tunnel only, never cleartext VXLAN.
    pub password_set: bool,
    /// Underlay subnets whose peers may use cleartext VXLAN even with a password.
    pub trusted_subnets: Vec<ipnet::IpNet>,
}

/// A frame port handed to the data plane.
#[derive(Debug)]
pub enum PortHandle {
    /// The host end of a container's veth.
    Veth(PacketPort),
    /// The host's TAP.
    Tap(TapPort),
}

/// A local port to add.
#[derive(Debug)]
pub struct LocalPort {
    /// The socket or device.
    pub handle: PortHandle,
    /// Interface name, for status.
    pub name: String,
    /// The network the port belongs to.
    pub network: NetworkId,
    /// The endpoint behind the port, when weft configured it.
    pub endpoint: Option<KnownEndpoint>,
}

/// A snapshot of the data plane for `weft status`.
#[derive(Debug, Clone, Default)]
pub struct DataplaneStatus {
    /// Ports and their counters.
    pub ports: Vec<PortReport>,
    /// Peers and their paths.
    pub peers: Vec<PeerReport>,
    /// Table sizes.
    pub tables: TableReport,
    /// Every named counter, every drop reason among them (zeros too).
    pub counters: std::collections::BTreeMap<String, u64>,
    /// How frames move (batching, offloads in use).
    pub data_path: String,
}

/// Where the mesh thread sends what it learns: the data plane ([`MeshSink`]), or a
/// collector in tests.
pub trait MeshUpdates: Send + 'static {
    /// Delivers one update; an error means the receiver is gone.
    fn deliver(&self, update: MeshUpdate) -> anyhow::Result<()>;
}

impl MeshUpdates for MeshSink {
    fn deliver(&self, update: MeshUpdate) -> anyhow::Result<()> {
        self.send(update)
    }
}

/// A handle the mesh thread uses to send [`MeshUpdate`]s straight to the data plane.
#[derive(Debug, Clone)]
pub struct MeshSink {
    commands: Sender<Command>,
    waker: Arc<mio::Waker>,
}

impl MeshSink {
    /// Delivers an update (fails only when the data plane has stopped).
    pub fn send(&self, update: MeshUpdate) -> anyhow::Result<()> {
        self.commands
            .send(Command::Mesh(update))
            .map_err(|_| anyhow::anyhow!("the data-plane thread has stopped"))?;
        self.waker
            .wake()
            .context("cannot wake the data-plane thread")
    }
}

/// Control messages to the data-plane thread.
pub(crate) enum Command {
    Mesh(MeshUpdate),
    AddNetwork(NetworkDef),
    RemoveNetwork(NetworkId),
    AddPort(LocalPort, Sender<Result<PortId, String>>),
    RemovePort(PortId, Sender<()>),
    SetEndpoint(PortId, Option<KnownEndpoint>),
    AddPeers(Vec<SocketAddr>),
    RemovePeers(Vec<SocketAddr>),
    Status(Sender<DataplaneStatus>),
    Shutdown,
}

/// The control plane's handle on the data-plane thread.
#[derive(Debug)]
pub struct Dataplane {
    commands: Sender<Command>,
    waker: Arc<mio::Waker>,
    thread: Option<JoinHandle<()>>,
}

/// How long the control plane waits for the data plane to answer a command.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

impl Dataplane {
    /// Binds the tunnel sockets and starts the thread. Fails (with the port named) if the
    /// VXLAN port is taken.
    pub fn start(config: DataplaneConfig) -> anyhow::Result<Self> {
        let (tx, rx): (Sender<Command>, Receiver<Command>) = crossbeam_channel::unbounded();
        let engine = engine::Engine::new(config, rx)?;
        let waker = engine.waker();
        let thread = std::thread::Builder::new()
            .name("weft-dataplane".into())
            .spawn(move || engine.run())
            .context("cannot start the data-plane thread")?;
        Ok(Self {
            commands: tx,
            waker,
            thread: Some(thread),
        })
    }

    fn send(&self, cmd: Command) -> anyhow::Result<()> {
        self.commands
            .send(cmd)
            .map_err(|_| anyhow::anyhow!("the data-plane thread has stopped"))?;
        self.waker
            .wake()
            .context("cannot wake the data-plane thread")
    }

    fn ask<T>(&self, make: impl FnOnce(Sender<T>) -> Command) -> anyhow::Result<T> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.send(make(tx))?;
        rx.recv_timeout(ANSWER_TIMEOUT)
            .map_err(|_| anyhow::anyhow!("the data plane did not answer"))
    }

    /// Declares a network.
    pub fn add_network(&self, net: NetworkDef) -> anyhow::Result<()> {
        self.send(Command::AddNetwork(net))
    }

    /// Forgets a network (its ports must be gone).
    pub fn remove_network(&self, id: NetworkId) -> anyhow::Result<()> {
        self.send(Command::RemoveNetwork(id))
    }

    /// Adds a local port; returns its switch id, or why the data plane could not take it.
    pub fn add_port(&self, port: LocalPort) -> anyhow::Result<PortId> {
        self.ask(|tx| Command::AddPort(port, tx))?
            .map_err(|e| anyhow::anyhow!("the data plane refused the port: {e}"))
    }

    /// Removes a port and everything learned on it; returns once the socket is closed.
    pub fn remove_port(&self, id: PortId) -> anyhow::Result<()> {
        self.ask(|tx| Command::RemovePort(id, tx))
    }

    /// Replaces what the switch knows for sure about the endpoint behind a port.
    pub fn set_endpoint(&self, id: PortId, endpoint: Option<KnownEndpoint>) -> anyhow::Result<()> {
        self.send(Command::SetEndpoint(id, endpoint))
    }

    /// Adds VXLAN peers.
    pub fn add_peers(&self, peers: Vec<SocketAddr>) -> anyhow::Result<()> {
        self.send(Command::AddPeers(peers))
    }

    /// Removes VXLAN peers.
    pub fn remove_peers(&self, peers: Vec<SocketAddr>) -> anyhow::Result<()> {
        self.send(Command::RemovePeers(peers))
    }

    /// A handle for the mesh thread.
    pub fn mesh_sink(&self) -> MeshSink {
        MeshSink {
            commands: self.commands.clone(),
            waker: Arc::clone(&self.waker),
        }
    }

    /// A status snapshot.
    pub fn status(&self) -> anyhow::Result<DataplaneStatus> {
        self.ask(Command::Status)
    }

    /// Stops the thread and waits for it.
    pub fn shutdown(mut self) {
        let _ = self.send(Command::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = self.commands.send(Command::Shutdown);
            let _ = self.waker.wake();
            let _ = t.join();
        }
    }
}
