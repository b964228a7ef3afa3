//! The pure half of weft's CNI plugin (CNI spec 1.1): everything decided from the
//! runtime's input without touching the system.
//!
//! A runtime (kubelet through containerd, Podman, `cnitool`) runs the plugin binary with
//! `CNI_*` environment variables and a network configuration on stdin, and reads a result
//! or an error object from stdout. This crate turns those inputs into checked types
//! ([`Invocation`], [`NetConf`]) or a spec error ([`CniError`] with its [`ErrorCode`]),
//! negotiates the spec version ([`CniVersion`]) and renders results in the version the
//! configuration asked for ([`CniResult::to_json`]). The weft binary does the I/O: it
//! talks to the router, runs delegated IPAM plugins and inspects namespaces.
//!
//! Contract: no I/O, no panics on any input; every rejection names the field or
//! variable at fault, as the spec requires for codes 2 and 4.

#![forbid(unsafe_code)]

mod config;
mod conflist;
mod error;
mod invocation;
mod result;
mod version;

pub use config::{Attachment, DEFAULT_SOCKET, MAX_CONFIG_BYTES, NetConf, RouteSpec, WeftGateway};
pub use conflist::{ConflistSpec, valid_gateway};
pub use error::{CniError, ErrorCode};
pub use invocation::{Command, Invocation, parse_cni_args};
pub use result::{CniResult, Dns, Interface, IpConfig, ResultRoute};
pub use version::{CniVersion, SUPPORTED, version_answer};

/// The allocation handle and endpoint identity weft's router keeps for one CNI
/// attachment: the spec keys state by (network name, container id, interface).
pub fn owner(network: &str, container_id: &str, ifname: &str) -> String {
    format!("{}{container_id}/{ifname}", owner_prefix(network))
}

/// What every [`owner`] of one CNI network starts with (GC lists by it).
pub fn owner_prefix(network: &str) -> String {
    format!("cni/{network}/")
}

/// The (container id, interface) of an owner of `network`, or `None` when the owner
/// belongs to another network or to something that is not CNI.
pub fn parse_owner<'a>(network: &str, owner: &'a str) -> Option<(&'a str, &'a str)> {
    let rest = owner.strip_prefix(&owner_prefix(network))?;
    let (cid, ifname) = rest.rsplit_once('/')?;
    (!cid.is_empty() && !ifname.is_empty()).then_some((cid, ifname))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_round_trip_and_stay_in_their_network() {
        let o = owner("weftnet", "abc123", "eth0");
        assert_eq!(o, "cni/weftnet/abc123/eth0");
        assert_eq!(parse_owner("weftnet", &o), Some(("abc123", "eth0")));
        assert_eq!(parse_owner("other", &o), None);
        assert_eq!(parse_owner("weftnet", "cni/weftnet/"), None);
        assert_eq!(parse_owner("weftnet", "docker/ep1"), None);
    }
}
