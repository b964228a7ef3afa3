//! What `GET /status` answers: one serde model for the router that fills it, the CLI
//! that prints it, the runtime plugins, and anyone scripting against `--json`.
//!
//! Contract: every state is an enum (serialized as a lowercase word), every address a
//! socket address, every name a checked type; free text appears only where it explains
//! (`reason`, `last_error`, `data_path`). Display strings ("->", "relayed via ...") are
//! made by the CLI from these fields, never stored in them.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;

use mesh::PeerName;
use serde::{Deserialize, Serialize};
use tunnel::Vni;

/// The whole status of a router.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    /// weft's version.
    pub version: String,
    /// The router's peer name (stable across restarts).
    pub name: PeerName,
    /// The router's human-readable name.
    pub nickname: String,
    /// The router's process id.
    pub pid: u32,
    /// Seconds since the router started.
    pub uptime_secs: u64,
    /// MTU of the underlay the tunnels run over.
    pub underlay_mtu: u32,
    /// MTU given to containers.
    pub overlay_mtu: u32,
    /// UDP port VXLAN is received on.
    pub vxlan_port: u16,
    /// How frames are read and written (e.g. "AF_PACKET+vnet_hdr, recvmmsg/sendmmsg; UDP GSO/GRO").
    pub data_path: String,
    /// The weft networks.
    pub networks: Vec<NetworkReport>,
    /// Every switch port: containers, host TAP, peers.
    pub ports: Vec<PortReport>,
    /// Peers (other weft routers or VXLAN endpoints).
    pub peers: Vec<PeerReport>,
    /// Control connections of the peer mesh.
    #[serde(default)]
    pub connections: Vec<ConnectionReport>,
    /// Addresses the router dials (named with `connect`/`launch`, or learned by gossip).
    #[serde(default)]
    pub targets: Vec<TargetReport>,
    /// Whether a mesh password is set (control and tunnel authenticated), or not
    /// (tunnel keys from an unauthenticated exchange: stops passive capture only).
    pub encryption: MeshEncryption,
    /// Sizes of the learning tables.
    pub tables: TableReport,
    /// Every counter of the data plane, by name (drops are named `drop.<reason>`).
    pub counters: BTreeMap<String, u64>,
}

/// How the mesh is protected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MeshEncryption {
    /// A password is set: control and tunnel authenticated and encrypted.
    Password,
    /// No password: the tunnel is encrypted with unauthenticated keys.
    #[default]
    Unauthenticated,
}

impl MeshEncryption {
    /// What it means, in a line.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Password => "password: control and tunnel authenticated and encrypted",
            Self::Unauthenticated => {
                "no password: tunnel encrypted with unauthenticated keys (stops passive capture only)"
            }
        }
    }
}

/// A weft network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkReport {
    /// Its name.
    pub name: String,
    /// Its VXLAN network identifier.
    #[serde(with = "super::codec::vni")]
    pub vni: Vni,
    /// Local endpoints attached to it.
    pub endpoints: usize,
    /// Whether the host has an address on it (`weft expose`).
    pub exposed: Vec<String>,
}

/// One switch port and its traffic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortReport {
    /// Port id inside the switch.
    pub id: u32,
    /// What the port is.
    pub kind: PortKind,
    /// Interface name (host end of the veth, TAP name) or peer address.
    pub name: String,
    /// Its network.
    pub network: String,
    /// Frames received from the port.
    pub rx_frames: u64,
    /// Bytes received from the port.
    pub rx_bytes: u64,
    /// Frames sent to the port.
    pub tx_frames: u64,
    /// Bytes sent to the port.
    pub tx_bytes: u64,
    /// Frames that could not be sent to the port (socket full, refused).
    pub tx_dropped: u64,
    /// Frames the kernel dropped before weft could read them (PACKET_STATISTICS).
    pub kernel_drops: u64,
}

/// What a switch port is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PortKind {
    /// The host end of a container's veth.
    Veth,
    /// The host's TAP device (`weft expose`).
    Tap,
}

impl PortKind {
    /// The word status shows.
    pub fn name(self) -> &'static str {
        match self {
            Self::Veth => "veth",
            Self::Tap => "tap",
        }
    }
}

/// The data path a peer's frames take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataPath {
    /// VXLAN over UDP: fast, cleartext.
    Vxlan,
    /// weft's encrypted tunnel.
    Encrypted,
    /// Hop by hop through another peer.
    Relayed,
    /// No way to reach the peer now.
    None,
}

impl DataPath {
    /// The word status shows.
    pub fn name(self) -> &'static str {
        match self {
            Self::Vxlan => "vxlan",
            Self::Encrypted => "encrypted",
            Self::Relayed => "relayed",
            Self::None => "none",
        }
    }
}

impl From<tunnel::path::Path> for DataPath {
    fn from(path: tunnel::path::Path) -> Self {
        match path {
            tunnel::path::Path::Vxlan => Self::Vxlan,
            tunnel::path::Path::Encrypted => Self::Encrypted,
            tunnel::path::Path::Relayed => Self::Relayed,
            tunnel::path::Path::None => Self::None,
        }
    }
}

/// What the heartbeats on a peer's VXLAN path say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Heartbeat {
    /// Answered.
    Up,
    /// No longer (or never) answered.
    Down,
    /// Not known yet (a kernel VTEP never answers).
    Unknown,
}

impl Heartbeat {
    /// The word status shows.
    pub fn name(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Down => "down",
            Self::Unknown => "unknown",
        }
    }
}

/// A peer and the state of the data path to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerReport {
    /// Its underlay VXLAN address, once known (a peer known only from the mesh, and
    /// reached through a relay, may have none).
    pub address: Option<SocketAddr>,
    /// Its peer name, once known.
    pub name: Option<PeerName>,
    /// Its nickname, once known.
    pub nickname: Option<String>,
    /// The path in use.
    pub path: DataPath,
    /// Why that path (e.g. "heartbeats ok", "vxlan heartbeats failed", "no password").
    pub reason: String,
    /// For a relayed peer: the peer name of the neighbour that relays its frames.
    #[serde(default)]
    pub via: Option<PeerName>,
    /// That neighbour's nickname, once known.
    #[serde(default)]
    pub via_nickname: Option<String>,
    /// Heartbeat state of the VXLAN path.
    pub heartbeat: Heartbeat,
    /// Last measured round-trip time in microseconds.
    pub rtt_us: Option<u64>,
    /// Frames and bytes sent to / received from this peer.
    pub tx_frames: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Frames received.
    pub rx_frames: u64,
    /// Bytes received.
    pub rx_bytes: u64,
}

/// Which side opened a control connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// This router dialled.
    Outbound,
    /// The peer dialled.
    Inbound,
}

/// Where a control connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnectionState {
    /// The TCP connect is in flight.
    Connecting,
    /// Exchanging protocol versions.
    Preamble,
    /// The key exchange.
    Handshake,
    /// Up: hello exchanged.
    Established,
    /// Closed before it was established (`last_error` says why).
    Failed,
}

impl ConnectionState {
    /// Every state, for gauges that must list zeros too.
    pub const ALL: [Self; 5] = [
        Self::Established,
        Self::Handshake,
        Self::Preamble,
        Self::Connecting,
        Self::Failed,
    ];

    /// The word status shows.
    pub fn name(self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Preamble => "preamble",
            Self::Handshake => "handshake",
            Self::Established => "established",
            Self::Failed => "failed",
        }
    }
}

/// How one control connection (and the tunnel keys from it) is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnectionEncryption {
    /// Keys from a password-authenticated exchange.
    Password,
    /// Keys from an unauthenticated exchange: stops passive capture only.
    Unauthenticated,
    /// The key exchange has not finished.
    Pending,
}

impl ConnectionEncryption {
    /// What it means, in a few words.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Password => "password (authenticated)",
            Self::Unauthenticated => "unauthenticated (stops passive capture only)",
            Self::Pending => "-",
        }
    }
}

/// A control connection of the peer mesh.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionReport {
    /// Who dialled.
    pub direction: Direction,
    /// The remote TCP address.
    pub address: SocketAddr,
    /// Where the connection is.
    pub state: ConnectionState,
    /// The peer, once its hello arrived.
    pub peer: Option<PeerName>,
    /// The data path to that peer, once the data plane knows it.
    pub path: Option<DataPath>,
    /// Why that path (the peer's `reason`).
    pub path_reason: Option<String>,
    /// For a relayed peer: the neighbour that relays its frames.
    #[serde(default)]
    pub via: Option<PeerName>,
    /// That neighbour's nickname, once known.
    #[serde(default)]
    pub via_nickname: Option<String>,
    /// How the connection (and the tunnel) is protected.
    pub encryption: ConnectionEncryption,
    /// The last error, if any.
    pub last_error: Option<String>,
}

/// How the router learned of an address it dials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetSource {
    /// Named by the user (`launch PEER`, `connect`).
    Explicit,
    /// Learned from another peer (gossip).
    Discovered,
}

impl TargetSource {
    /// The word status shows.
    pub fn name(self) -> &'static str {
        match self {
            Self::Explicit => "explicit",
            Self::Discovered => "discovered",
        }
    }
}

/// What the router is doing about an address it dials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetState {
    /// The name does not resolve yet; retried in the background.
    Resolving,
    /// A dial or handshake is in progress.
    Connecting,
    /// Its peer is connected.
    Connected,
    /// The last attempt failed; another is scheduled.
    Retrying,
    /// Due, but held back by the connection limit or discovery degree.
    Waiting,
    /// Will not be dialled again (our own address, a name collision).
    Failed,
}

impl TargetState {
    /// The word status shows.
    pub fn name(self) -> &'static str {
        match self {
            Self::Resolving => "resolving",
            Self::Connecting => "connecting",
            Self::Connected => "connected",
            Self::Retrying => "retrying",
            Self::Waiting => "waiting",
            Self::Failed => "failed",
        }
    }
}

/// An address the connection maker dials.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetReport {
    /// What was asked (`host`, `host:port` as given to `launch` or `connect`), or the
    /// address for a discovered target.
    pub target: String,
    /// The mesh address dialled; none while the name does not resolve.
    pub address: Option<SocketAddr>,
    /// Named or discovered.
    pub source: TargetSource,
    /// What the router does about it.
    pub state: TargetState,
    /// Dial attempts so far.
    pub attempts: u32,
    /// Seconds until the next attempt, when one is scheduled.
    pub next_retry_secs: Option<f64>,
    /// The last error, if any.
    pub last_error: Option<String>,
}

/// Learning table sizes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableReport {
    /// MAC table entries.
    pub macs: usize,
    /// IP→MAC neighbour entries.
    pub neighbours: usize,
    /// Multicast groups with members.
    pub groups: usize,
}

/// The status words print as themselves (the same words the JSON carries).
macro_rules! display_by_name {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // `pad`, so the columns of `weft status` (`{:<12}`) line up.
                f.pad(self.name())
            }
        }
    )*};
}

display_by_name!(
    PortKind,
    DataPath,
    Heartbeat,
    ConnectionState,
    TargetSource,
    TargetState
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_words_are_the_json_words() {
        fn json<T: Serialize>(v: T) -> String {
            serde_json::to_value(v)
                .unwrap()
                .as_str()
                .unwrap()
                .to_string()
        }
        for p in [PortKind::Veth, PortKind::Tap] {
            assert_eq!(json(p), p.to_string());
        }
        assert_eq!(format!("{:<6}|", PortKind::Tap), "tap   |");
        for p in [
            DataPath::Vxlan,
            DataPath::Encrypted,
            DataPath::Relayed,
            DataPath::None,
        ] {
            assert_eq!(json(p), p.to_string());
        }
        for h in [Heartbeat::Up, Heartbeat::Down, Heartbeat::Unknown] {
            assert_eq!(json(h), h.to_string());
        }
        for c in ConnectionState::ALL {
            assert_eq!(json(c), c.to_string());
        }
        for s in [TargetSource::Explicit, TargetSource::Discovered] {
            assert_eq!(json(s), s.to_string());
        }
        for t in [
            TargetState::Resolving,
            TargetState::Connecting,
            TargetState::Connected,
            TargetState::Retrying,
            TargetState::Waiting,
            TargetState::Failed,
        ] {
            assert_eq!(json(t), t.to_string());
        }
    }
}
