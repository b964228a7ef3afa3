//! What the control plane hands the core: its configuration, networks, local ports,
//! endpoints it knows for sure, and what the mesh learns. Everything is checked before
//! it gets here (a [`Vni`] fits 24 bits, a [`PeerName`] is a peer's), so the frame path
//! never re-checks it.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use learning::NetworkId;
use mesh::PeerName;
use tunnel::crypto::session::TunnelKeys;
use tunnel::{PathMtus, Vni};
use wire::Mac;

/// How the core is set up; fixed for its life.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// This router's peer name: the origin of its tunnel frames and the sender of its
    /// heartbeats.
    pub local_name: PeerName,
    /// The overlay MTUs (one computation, shared with the control plane).
    pub mtu: PathMtus,
    /// A mesh password is set: peers outside `trusted_subnets` get the encrypted tunnel
    /// only, never cleartext VXLAN.
    pub password_set: bool,
    /// Underlay subnets whose peers may use cleartext VXLAN even with a password.
    pub trusted_subnets: Vec<ipnet::IpNet>,
    /// How many VXLAN send sockets the shell has ([`crate::UdpSource::Vxlan`] indexes
    /// them): flows are spread over them by inner flow hash, one socket per flow.
    pub send_sockets: usize,
}

/// A network as the data plane sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkDef {
    /// Switch id.
    pub id: NetworkId,
    /// Name, for status.
    pub name: String,
    /// VXLAN network identifier.
    pub vni: Vni,
}

/// An endpoint the switch knows for sure: its MAC is pinned and its IPs answered by the
/// ARP proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownEndpoint {
    /// The endpoint's MAC.
    pub mac: Mac,
    /// Its IPv4 addresses.
    pub ips: Vec<Ipv4Addr>,
}

/// What kind of device a local port is (the shell owns the device itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalPortKind {
    /// The host end of a container's veth (AF_PACKET).
    Veth,
    /// The host's TAP.
    Tap,
}

impl LocalPortKind {
    /// Its name in status output.
    pub fn name(self) -> &'static str {
        match self {
            Self::Veth => "veth",
            Self::Tap => "tap",
        }
    }
}

/// A local port to add: everything about it but its socket.
#[derive(Debug, Clone)]
pub struct LocalPortDef {
    /// Interface name, for status.
    pub name: String,
    /// Veth or TAP.
    pub kind: LocalPortKind,
    /// The network the port belongs to.
    pub network: NetworkId,
    /// The endpoint behind the port, when weft configured it.
    pub endpoint: Option<KnownEndpoint>,
}

/// What the mesh tells the data plane about peers, routes and remote endpoints.
#[derive(Debug)]
pub enum MeshUpdate {
    /// A control connection finished its handshake and Hello: the peer is a direct
    /// neighbour, and these are the keys of the encrypted tunnel to it.
    PeerConnected {
        /// Its peer name.
        name: PeerName,
        /// Its nickname.
        nickname: String,
        /// Its underlay address (the control connection's remote IP).
        addr: IpAddr,
        /// Its VXLAN port (from its Hello).
        vxlan_port: u16,
        /// Its tunnel port (from its handshake payload).
        tunnel_port: u16,
        /// Tunnel keys from the handshake.
        keys: Box<TunnelKeys>,
        /// The session index datagrams to us carry (ours, announced in the handshake).
        local_index: u32,
        /// The session index datagrams to it carry (its own).
        remote_index: u32,
    },
    /// The control connection to a neighbour closed.
    PeerDisconnected {
        /// Its peer name.
        name: PeerName,
    },
    /// A peer is in the topology (reachable, perhaps only through relays).
    PeerKnown {
        /// Its peer name.
        name: PeerName,
        /// Its nickname.
        nickname: String,
    },
    /// A peer left the mesh (unreachable and forgotten): drop its ports, MACs, endpoints.
    PeerRemoved {
        /// Its peer name.
        name: PeerName,
    },
    /// New routes: unicast next hops and per-origin broadcast trees.
    Routes(Arc<mesh::RouteTable>),
    /// A peer's full set of endpoints (containers and host ports it serves).
    Endpoints {
        /// Its peer name.
        name: PeerName,
        /// The endpoints.
        endpoints: Vec<mesh::Endpoint>,
    },
}
