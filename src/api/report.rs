//! What `GET /status` and `GET /ps` answer: one serde model for the router that fills
//! it, the CLI that prints it, and anyone scripting against `--json`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The whole status of a router.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    /// weft's version.
    pub version: String,
    /// The router's peer name (stable across restarts).
    pub name: String,
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
    #[serde(default)]
    pub encryption: String,
    /// Sizes of the learning tables.
    pub tables: TableReport,
    /// Every counter of the data plane, by name (drops are named `drop.<reason>`).
    pub counters: BTreeMap<String, u64>,
}

/// A weft network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkReport {
    /// Its name.
    pub name: String,
    /// Its VXLAN network identifier.
    pub vni: u32,
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
    /// "veth", "tap" or "peer".
    pub kind: String,
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

/// A peer and the state of the data path to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerReport {
    /// Its underlay address (ip:port).
    pub address: String,
    /// Its peer name, once known.
    pub name: Option<String>,
    /// Its nickname, once known.
    pub nickname: Option<String>,
    /// The path in use: "vxlan", "encrypted", "relayed", or "none".
    pub path: String,
    /// Why that path (e.g. "heartbeats ok", "vxlan heartbeats failed", "no password").
    pub reason: String,
    /// For a relayed peer: the peer name of the neighbour that relays its frames.
    #[serde(default)]
    pub via: Option<String>,
    /// That neighbour's nickname, once known.
    #[serde(default)]
    pub via_nickname: Option<String>,
    /// Heartbeat state of the VXLAN path: "up", "down", "unknown" (a kernel VTEP never answers).
    pub heartbeat: String,
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

impl PeerReport {
    /// The path as people read it: "relayed via NAME(NICKNAME)" for a relayed peer, else
    /// the path word.
    pub fn path_text(&self) -> String {
        match (&self.via, &self.via_nickname) {
            (Some(via), Some(nick)) => format!("{} via {via}({nick})", self.path),
            (Some(via), None) => format!("{} via {via}", self.path),
            _ => self.path.clone(),
        }
    }
}

/// A control connection of the peer mesh.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionReport {
    /// "->" outbound, "<-" inbound.
    pub direction: String,
    /// Remote address.
    pub address: String,
    /// pending, established, retrying, failed...
    pub state: String,
    /// The peer, once its hello arrived.
    pub peer: Option<String>,
    /// Data path to that peer, and why (e.g. "relayed via NAME(NICKNAME) (direct path
    /// heartbeats failed)").
    pub path: String,
    /// For a relayed peer: the peer name of the neighbour that relays its frames.
    #[serde(default)]
    pub via: Option<String>,
    /// Whether the connection (and tunnel) is encrypted, and how.
    pub encryption: String,
    /// The last error, if any.
    pub last_error: Option<String>,
}

/// An address the connection maker dials.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetReport {
    /// ip:port.
    pub address: String,
    /// "explicit" (named) or "discovered" (gossip).
    pub source: String,
    /// connecting, connected, retrying, failed...
    pub state: String,
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
