//! What a router is started with: the one config boundary between the command line and
//! the server.
//!
//! The CLI builds [`RouterOptions`] from its flags, the environment and the files they
//! name (the password is read and turned into a key there), resolving what must be
//! resolved at launch; the router and the daemon never see a clap type or read the
//! environment. Every field is already checked: a value that reaches here is used as is.

use std::fmt;
use std::net::SocketAddr;

use ipnet::IpNet;
use tunnel::Vni;

/// A peer named on the command line (`launch PEER`, `connect PEER`): the text as the
/// user wrote it, for status and the state file, and the VXLAN address it resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PeerSpec {
    /// As given: `host`, `host:port`, `ip` or `ip:port`.
    pub spec: String,
    /// Its VXLAN address (the port defaults to ours).
    pub addr: SocketAddr,
}

/// The UDP and TCP ports a router uses (and assumes its peers use unless they say).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ports {
    /// VXLAN (UDP), ours and the peers' default.
    pub vxlan: u16,
    /// The peer mesh's control connections (TCP).
    pub mesh: u16,
    /// The encrypted tunnel (UDP).
    pub tunnel: u16,
}

impl Default for Ports {
    fn default() -> Self {
        Self {
            vxlan: tunnel::vxlan::DEFAULT_PORT,
            mesh: mesh::protocol::DEFAULT_LISTEN_PORT,
            tunnel: tunnel::crypto::datagram::DEFAULT_PORT,
        }
    }
}

/// Launch-time settings of a router, checked and resolved by the CLI.
#[derive(Clone)]
pub(crate) struct RouterOptions {
    /// Peers named at launch (not saved: they apply to this launch only).
    pub peers: Vec<PeerSpec>,
    /// The default network's VNI, when `--vni` asks for one (else the saved one, else 1).
    pub vni: Option<Vni>,
    /// Our ports.
    pub ports: Ports,
    /// The overlay MTU containers get, when `--mtu` overrides the one derived from the
    /// underlay.
    pub mtu: Option<u32>,
    /// The router's human-readable name.
    pub nickname: String,
    /// Whether UDP segmentation offload may be used.
    pub gso: bool,
    /// The mesh password's key (Argon2id of the password), if a password is set.
    pub psk: Option<[u8; 32]>,
    /// Underlay subnets whose peers may use cleartext VXLAN even with a password.
    pub trusted_subnets: Vec<IpNet>,
    /// Whether to dial peers learned through gossip.
    pub discovery: bool,
    /// Most control connections at once.
    pub conn_limit: usize,
}

impl fmt::Debug for RouterOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The password's key stays out of logs.
        f.debug_struct("RouterOptions")
            .field("peers", &self.peers)
            .field("vni", &self.vni)
            .field("ports", &self.ports)
            .field("mtu", &self.mtu)
            .field("nickname", &self.nickname)
            .field("gso", &self.gso)
            .field("password", &self.psk.is_some())
            .field("trusted_subnets", &self.trusted_subnets)
            .field("discovery", &self.discovery)
            .field("conn_limit", &self.conn_limit)
            .finish()
    }
}
