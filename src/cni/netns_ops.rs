//! What the plugin itself does inside the container's namespace: install the routes the
//! configuration or the IPAM plugin asks for (attaching is the router's), and look at
//! the interface, addresses and routes for CHECK.

use std::net::IpAddr;
use std::os::fd::AsFd as _;
use std::path::Path;
use std::str::FromStr as _;

use cni::{CniError, ErrorCode};
use ipnet::IpNet;

use crate::netlink::{Netlink, NetlinkError, RouteInfo};
use crate::netns::NetnsTarget;

/// What CHECK sees of one interface inside the container.
#[derive(Debug, Clone)]
pub(super) struct Seen {
    pub(super) mac: String,
    pub(super) up: bool,
    pub(super) addrs: Vec<IpNet>,
    pub(super) routes: Vec<RouteInfo>,
}

fn container_error(netns: &Path, e: impl std::fmt::Display) -> CniError {
    CniError::new(
        ErrorCode::UnknownContainer,
        "container network namespace unavailable",
        format!("{}: {e}", netns.display()),
    )
}

fn netlink_failure(what: &str, e: NetlinkError) -> CniError {
    CniError::new(ErrorCode::IoFailure, what.to_string(), e.to_string())
}

/// Runs `f` with a netlink handle inside the namespace at `netns`.
fn in_netns<T: Send>(
    netns: &Path,
    f: impl FnOnce(&mut Netlink) -> Result<T, CniError> + Send,
) -> Result<T, CniError> {
    let target =
        NetnsTarget::from_str(&netns.to_string_lossy()).map_err(|e| container_error(netns, e))?;
    let fd = target.open().map_err(|e| container_error(netns, e))?;
    crate::netns::run_in_netns(fd.as_fd(), move || {
        let mut nl = Netlink::new().map_err(|e| netlink_failure("cannot open netlink", e))?;
        f(&mut nl)
    })
    .map_err(|e| container_error(netns, e))?
}

/// Checks that `netns` is an existing network namespace.
pub(super) fn require_netns(netns: &Path) -> Result<(), CniError> {
    let target =
        NetnsTarget::from_str(&netns.to_string_lossy()).map_err(|e| container_error(netns, e))?;
    target
        .open()
        .map(drop)
        .map_err(|e| container_error(netns, e))
}

/// Adds `routes` (destination, next hop) out of `ifname` inside the container; one
/// that already exists is left as it is.
pub(super) fn add_routes(
    netns: &Path,
    ifname: &str,
    routes: &[(IpNet, Option<IpAddr>)],
) -> Result<(), CniError> {
    if routes.is_empty() {
        return Ok(());
    }
    let ifname = ifname.to_string();
    let routes = routes.to_vec();
    in_netns(netns, move |nl| {
        let link = nl
            .link_by_name(&ifname)
            .map_err(|e| netlink_failure("cannot find the interface", e))?
            .ok_or_else(|| {
                CniError::new(
                    ErrorCode::RouterFailed,
                    "interface missing after attach",
                    format!("no {ifname} in the container"),
                )
            })?;
        for (dst, gw) in routes {
            match nl.add_route_via(dst, gw, link.index) {
                Ok(()) | Err(NetlinkError::AlreadyExists { .. }) => {}
                Err(e) => {
                    return Err(CniError::new(
                        ErrorCode::InvalidConfig,
                        format!("cannot add route to {dst}"),
                        format!(
                            "{e}{}",
                            gw.map(|g| format!(" (via {g}: is it on the interface's subnet?)"))
                                .unwrap_or_default()
                        ),
                    ));
                }
            }
        }
        Ok(())
    })
}

/// The interface `ifname` inside the container as it is now, or `None` if it is gone.
pub(super) fn inspect(netns: &Path, ifname: &str) -> Result<Option<Seen>, CniError> {
    let ifname = ifname.to_string();
    in_netns(netns, move |nl| {
        let Some(link) = nl
            .link_by_name(&ifname)
            .map_err(|e| netlink_failure("cannot look up the interface", e))?
        else {
            return Ok(None);
        };
        let addrs = nl
            .addresses()
            .map_err(|e| netlink_failure("cannot list addresses", e))?
            .into_iter()
            .filter(|(i, _)| *i == link.index)
            .map(|(_, a)| a)
            .collect();
        let routes = nl
            .routes()
            .map_err(|e| netlink_failure("cannot list routes", e))?;
        Ok(Some(Seen {
            mac: link
                .mac
                .map(|m| wire::Mac(m).to_string())
                .unwrap_or_default(),
            up: link.up,
            addrs,
            routes,
        }))
    })
}
