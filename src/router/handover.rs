//! The handover variant of `attach`: both ends of the veth stay in the router's namespace
//! and the runtime moves the container end into the container itself.
//!
//! Docker needs this: the container's namespace (its SandboxKey) is visible only inside
//! dockerd's mount namespace, so the network driver answers Join with the name of an
//! interface in dockerd's network namespace and libnetwork moves it, renames it and
//! gives it its address. weft prepares that end with the endpoint's MAC and MTU, leaves
//! it down and unaddressed (the host's stack never uses it), and opens the host end as
//! for any other endpoint.

use std::os::fd::AsFd as _;

use super::LINK_PREFIX;
use super::attach::{VethGuard, netlink_error};
use crate::api::ApiError;
use crate::netlink::Netlink;

/// Prefix of the container end's temporary name (distinct from host ends, which are
/// `wf` + 10 hex digits: this one is one character longer).
const HANDOVER_PREFIX: &str = "wfc";

/// A 40-bit FNV-1a digest of a runtime's owner string, for stable interface names.
fn digest(owner: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in owner.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h & 0xff_ffff_ffff
}

/// The host end's name for an owner's endpoint.
pub(super) fn host_ifname(owner: &str) -> String {
    format!("{LINK_PREFIX}{:010x}", digest(owner))
}

/// The container end's temporary name for an owner's endpoint (what Join's `SrcName`
/// reports; the runtime renames it when it moves it).
pub(super) fn container_ifname(owner: &str) -> String {
    format!("{HANDOVER_PREFIX}{:010x}", digest(owner))
}

/// Creates the pair in the router's own namespace and prepares the container end (MAC,
/// MTU, down). Returns the host end's index and a guard that deletes the pair unless the
/// attach completes.
pub(super) fn create_pair(
    nl: &mut Netlink,
    host_name: &str,
    container_name: &str,
    mac: wire::Mac,
    mtu: u32,
) -> Result<(u32, VethGuard), ApiError> {
    let own = std::fs::File::open("/proc/thread-self/ns/net").map_err(|e| {
        ApiError::internal(&anyhow::anyhow!("cannot open the router's namespace: {e}"))
    })?;
    let host_index = nl
        .create_veth(host_name, container_name, own.as_fd())
        .map_err(|e| netlink_error(&format!("cannot create interface {container_name}"), e))?;
    let guard = VethGuard {
        index: Some(host_index),
    };
    let peer = nl
        .link_by_name(container_name)
        .map_err(|e| netlink_error("cannot find the container end", e))?
        .ok_or_else(|| {
            ApiError::internal(&anyhow::anyhow!(
                "the container end {container_name} vanished after it was created"
            ))
        })?;
    nl.set_mac(peer.index, mac.0)
        .map_err(|e| netlink_error("cannot set MAC on the container end", e))?;
    nl.set_mtu(peer.index, mtu)
        .map_err(|e| netlink_error("cannot set MTU on the container end", e))?;
    Ok((host_index, guard))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable_distinct_and_fit_ifnamsiz() {
        let a = "docker/3f2c9a";
        assert_eq!(host_ifname(a), host_ifname(a));
        assert_ne!(host_ifname(a), host_ifname("docker/3f2c9b"));
        assert_ne!(
            host_ifname(a).len(),
            container_ifname(a).len(),
            "host and container ends can never share a name"
        );
        for n in [host_ifname(a), container_ifname(a)] {
            crate::netlink::validate_ifname(&n).unwrap();
        }
    }
}
