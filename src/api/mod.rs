//! The local API: HTTP+JSON on a unix socket in the router's home.
//!
//! The CLI is a thin client of this API, and the plugins will be too, so every verb
//! is a request type here and every answer a serde type. Errors travel as
//! `{"error": "..."}` with a 4xx/5xx status and are printed by the CLI as they are.

pub mod client;
pub(crate) mod codec;
pub mod http;
pub(crate) mod listener;
pub mod report;
pub mod server;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use tunnel::Vni;

/// Where the read-only status and `/metrics` are served over TCP by default (Weave's
/// status port): loopback only, for a local Prometheus.
pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:6782";

/// `POST /attach`: connect a container's network namespace to a weft network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachRequest {
    /// A netns name (as `ip netns list` shows), a pid, or a netns path.
    pub target: String,
    /// Addresses for the container's interface (CIDR notation).
    #[serde(default)]
    pub ips: Vec<IpNet>,
    /// The weft network (default: "default").
    #[serde(default)]
    pub network: Option<String>,
    /// Interface name inside the container (default: weft0).
    #[serde(default)]
    pub ifname: Option<String>,
    /// MTU override (default: the overlay MTU).
    #[serde(default)]
    pub mtu: Option<u32>,
    /// MAC override (default: random, locally administered).
    #[serde(default, with = "codec::mac_opt")]
    pub mac: Option<wire::Mac>,
    /// The endpoint's identity for a runtime (e.g. `cni/NET/CONTAINER/IFNAME`): an attach
    /// with an owner that already has an endpoint answers that endpoint (idempotent ADD).
    #[serde(default)]
    pub owner: Option<String>,
    /// Leave the container end in the router's namespace, under a temporary name, for the
    /// runtime to move into the container itself (Docker's Join does this: only dockerd
    /// can see the container's namespace). `target` is then only a label, and the
    /// answer's `handover_ifname` names the interface to move.
    #[serde(default)]
    pub handover: bool,
}

/// An attached endpoint: what `/attach` answers, `/detach` answers for each endpoint it
/// removed, and `/ps` lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// The target as the attach named it (netns name, pid or path).
    pub target: String,
    /// The weft network it is on.
    pub network: String,
    /// Its interface name inside the container.
    pub ifname: String,
    /// The host end of its veth, in the router's namespace.
    pub host_ifname: String,
    /// Its interface's MAC.
    #[serde(with = "codec::mac")]
    pub mac: wire::Mac,
    /// Its addresses.
    pub ips: Vec<IpNet>,
    /// Its interface's MTU.
    pub mtu: u32,
    /// The runtime's identity for it (`cni/NET/CONTAINER/IFNAME`), when attached by one.
    #[serde(default)]
    pub owner: Option<String>,
    /// For a handover attach: the container end's name in the router's namespace, for
    /// the runtime to move into the container itself (Docker's Join).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handover_ifname: Option<String>,
}

/// `POST /detach`: undo an attach, by target or by owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DetachRequest {
    /// The target as given to attach (or another name of the same namespace); empty when
    /// detaching by owner.
    #[serde(default)]
    pub target: String,
    /// Detach the endpoint of this owner; none existing is success (idempotent DEL).
    #[serde(default)]
    pub owner: Option<String>,
    /// Only the endpoint on this network (default: all of the target's endpoints).
    #[serde(default)]
    pub network: Option<String>,
}

/// `POST /expose`: give the host an address on a weft network through a TAP port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExposeRequest {
    /// The host's address and prefix on the network.
    pub cidr: IpNet,
    /// The weft network (default: "default").
    #[serde(default)]
    pub network: Option<String>,
}

/// `POST /hide`: take an exposed address (or all of them) away from the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HideRequest {
    /// One address to remove; none removes the host port entirely.
    #[serde(default)]
    pub cidr: Option<IpNet>,
    /// The weft network (default: "default").
    #[serde(default)]
    pub network: Option<String>,
}

/// `POST /connect` and `POST /forget`: change the peers the router dials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeersRequest {
    /// `host[:port]` or `ip[:port]` items.
    pub peers: Vec<String>,
}

/// The answer to `POST /forget`: which of the names were forgotten, and which named no
/// peer of ours (not saved, not named at launch); those do not stop the others.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForgetAnswer {
    /// Forgotten.
    pub forgotten: Vec<String>,
    /// Not a peer this router dials.
    pub unknown: Vec<String>,
}

/// `POST /network`: declare a named network with a chosen VNI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRequest {
    /// Its name.
    pub name: String,
    /// Its VNI (default: derived from the name, the same on every host).
    #[serde(default, with = "codec::vni_opt")]
    pub vni: Option<Vni>,
}

/// The body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong, in words the user can act on.
    pub error: String,
}

/// A request the router refused, with the HTTP status that says whose fault it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// 400 bad request, 404 unknown thing, 409 conflict, 500 router failure.
    pub status: u16,
    /// The message shown to the user.
    pub message: String,
}

impl ApiError {
    /// The caller's request is wrong.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: 400,
            message: message.into(),
        }
    }

    /// The named thing does not exist.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: 404,
            message: message.into(),
        }
    }

    /// The request conflicts with what exists (address in use, name taken).
    pub fn conflict(message: impl Into<String>) -> Self {
        Self {
            status: 409,
            message: message.into(),
        }
    }

    /// The router failed to do something it should have been able to do.
    pub fn internal(err: &anyhow::Error) -> Self {
        Self {
            status: 500,
            message: format!("{err:#}"),
        }
    }
}
