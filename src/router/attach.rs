//! `attach` and `detach`: give a container a veth on a weft network, and take it away.
//!
//! The veth is created with its container end born inside the target namespace under
//! its final name (no transient interface appears there), then configured from a
//! short-lived thread that entered the namespace. The host end gets no address and no
//! IPv6, so the host's own stack stays out of the network; weft reads and writes it
//! with an AF_PACKET socket. Any failure after the veth exists deletes it again. A
//! handover attach (Docker's) differs in two places only: there is no target namespace
//! to resolve, and both ends are made in the router's namespace (`handover.rs`).

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsFd as _;
use std::str::FromStr as _;

use ipnet::IpNet;

use super::{LINK_PREFIX, PortBinding, Router, handover};
use crate::api::{ApiError, AttachRequest, DetachRequest, Endpoint};
use crate::dataplane::{KnownEndpoint, LocalPort, PortHandle};
use crate::io::{PacketPort, PortOptions};
use crate::netlink::{Netlink, NetlinkError};
use crate::netns::{self, NetnsTarget};
use crate::state::EndpointRecord;

/// Interface name inside the container when none is given.
pub(crate) const DEFAULT_IFNAME: &str = "weft0";

/// The host-side name of an endpoint's veth: stable for (namespace, interface, network)
/// and short enough for IFNAMSIZ.
fn host_ifname(netns: (u64, u64), ifname: &str, network: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in netns
        .0
        .to_le_bytes()
        .iter()
        .chain(&netns.1.to_le_bytes())
        .chain(ifname.as_bytes())
        .chain(b"/")
        .chain(network.as_bytes())
    {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{LINK_PREFIX}{:010x}", h & 0xff_ffff_ffff)
}

/// An endpoint as the API shows it, from its record in the state file.
pub(super) fn endpoint_of(record: &EndpointRecord) -> Endpoint {
    Endpoint {
        target: record.target.clone(),
        network: record.network.clone(),
        ifname: record.ifname.clone(),
        host_ifname: record.host_ifname.clone(),
        mac: record.mac,
        ips: record.ips.clone(),
        mtu: record.mtu,
        owner: record.owner.clone(),
        handover_ifname: record.handover_ifname.clone(),
    }
}

/// Deletes a freshly created veth if the attach does not complete.
pub(super) struct VethGuard {
    pub(super) index: Option<u32>,
}

impl Drop for VethGuard {
    fn drop(&mut self) {
        if let Some(index) = self.index
            && let Ok(mut nl) = Netlink::new()
            && let Err(e) = nl.delete_link(index)
        {
            tracing::warn!("cannot delete half-made veth (ifindex {index}): {e}");
        }
    }
}

pub(super) fn netlink_error(context: &str, e: NetlinkError) -> ApiError {
    match e {
        NetlinkError::AlreadyExists { .. } | NetlinkError::AddressExists { .. } => {
            ApiError::conflict(format!("{context}: {e}"))
        }
        NetlinkError::InvalidArgument { .. } => ApiError::bad_request(format!("{context}: {e}")),
        other => ApiError::internal(&anyhow::anyhow!("{context}: {other}")),
    }
}

/// Where the container end of a new veth goes.
enum ContainerSide {
    /// Born inside the target namespace and configured there by weft.
    Netns {
        fd: std::os::fd::OwnedFd,
        id: (u64, u64),
        path: std::path::PathBuf,
    },
    /// Left in the router's namespace, down and unaddressed, under this temporary name,
    /// for the runtime to move into the container (Docker's Join).
    Handover(String),
}

impl Router {
    /// Attaches a container (see the module docs).
    pub(super) fn attach(&mut self, req: &AttachRequest) -> Result<Endpoint, ApiError> {
        // A runtime retrying an ADD gets the endpoint it already has: no second veth,
        // no second address.
        if let Some(owner) = &req.owner {
            if owner.is_empty() || owner.len() > 512 {
                return Err(ApiError::bad_request(
                    "owner must be 1 to 512 bytes of text",
                ));
            }
            if let Some(ep) = self
                .state
                .endpoints
                .iter()
                .find(|e| e.owner.as_ref() == Some(owner))
            {
                return Ok(endpoint_of(ep));
            }
        }
        let side = if req.handover {
            let owner = req.owner.as_deref().ok_or_else(|| {
                ApiError::bad_request(
                    "a handover attach needs an owner (the runtime's endpoint id)",
                )
            })?;
            ContainerSide::Handover(handover::container_ifname(owner))
        } else {
            let target = NetnsTarget::from_str(&req.target)
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            let fd = target
                .open()
                .map_err(|e| ApiError::not_found(e.to_string()))?;
            let id =
                netns::netns_id(fd.as_fd()).map_err(|e| ApiError::internal(&anyhow::anyhow!(e)))?;
            ContainerSide::Netns {
                fd,
                id: (id.dev(), id.ino()),
                path: target.path(),
            }
        };
        let ifname = req
            .ifname
            .clone()
            .unwrap_or_else(|| DEFAULT_IFNAME.to_string());
        crate::netlink::validate_ifname(&ifname).map_err(|reason| {
            ApiError::bad_request(format!("invalid interface name {ifname:?}: {reason}"))
        })?;
        if req.ips.is_empty() {
            return Err(ApiError::bad_request(
                "attach needs at least one --ip CIDR (weft has no IP address management yet)",
            ));
        }
        let (network, net) = self.network_for(req.network.as_deref())?;
        if let ContainerSide::Netns { id, .. } = &side
            && let Some(ep) =
                self.state.endpoints.iter().find(|e| {
                    e.handover_ifname.is_none() && e.netns_id == *id && e.network == network
                })
        {
            return Err(ApiError::conflict(format!(
                "{} is already attached to network {network} as {} ({})",
                req.target, ep.ifname, ep.target
            )));
        }
        for ip in &req.ips {
            if let Some(owner) = self.address_owner(&network, ip.addr()) {
                return Err(ApiError::conflict(format!(
                    "address {} is already in use on network {network} by {owner}",
                    ip.addr()
                )));
            }
        }
        let mac = match req.mac {
            Some(mac) => {
                if !mac.is_valid_source() {
                    return Err(ApiError::bad_request(format!(
                        "MAC {mac} is not a unicast address"
                    )));
                }
                mac
            }
            None => wire::Mac::local_from_bytes(rand::random()),
        };
        let mtu = req.mtu.unwrap_or(self.config.overlay_mtu);

        let mut nl = Netlink::new().map_err(|e| ApiError::internal(&anyhow::anyhow!(e)))?;
        let (host_name, host_index, mut guard) = match &side {
            ContainerSide::Netns { fd, id, .. } => {
                let host_name = host_ifname(*id, &ifname, &network);
                let host_index = nl
                    .create_veth(&host_name, &ifname, fd.as_fd())
                    .map_err(|e| {
                        netlink_error(
                            &format!("cannot create interface {ifname} in {}", req.target),
                            e,
                        )
                    })?;
                (
                    host_name,
                    host_index,
                    VethGuard {
                        index: Some(host_index),
                    },
                )
            }
            ContainerSide::Handover(container_name) => {
                let host_name = handover::host_ifname(req.owner.as_deref().unwrap_or_default());
                let (host_index, guard) =
                    handover::create_pair(&mut nl, &host_name, container_name, mac, mtu)?;
                (host_name, host_index, guard)
            }
        };

        // The host end: no IPv6 (so no link-local address and no stack involvement), the
        // container's MTU so super-frames and MTU-sized frames pass, up.
        crate::netlink::set_link_sysctl(&host_name, "disable_ipv6", "1")
            .map_err(|e| netlink_error("cannot disable IPv6 on the host end", e))?;
        nl.set_mtu(host_index, mtu)
            .map_err(|e| netlink_error("cannot set MTU on the host end", e))?;
        nl.set_up(host_index, true)
            .map_err(|e| netlink_error("cannot bring up the host end", e))?;

        let (netns_path, netns_id, handover_ifname) = match side {
            ContainerSide::Netns { fd, id, path } => {
                let ips = req.ips.clone();
                let cname = ifname.clone();
                netns::run_in_netns(fd.as_fd(), move || {
                    configure_container_end(&cname, mac, mtu, &ips)
                })
                .map_err(|e| ApiError::internal(&anyhow::anyhow!(e)))??;
                (path, id, None)
            }
            ContainerSide::Handover(name) => (std::path::PathBuf::new(), (0, 0), Some(name)),
        };

        let port = PacketPort::open(host_index, &PortOptions::default())
            .map_err(|e| ApiError::internal(&anyhow::anyhow!("cannot open {host_name}: {e}")))?;
        let ipv4s = ipv4_addrs(&req.ips);
        let dp = self.dataplane().map_err(|e| ApiError::internal(&e))?;
        let port_id = dp
            .add_port(LocalPort {
                handle: PortHandle::Veth(port),
                name: host_name.clone(),
                network: net.id,
                endpoint: Some(KnownEndpoint { mac, ips: ipv4s }),
            })
            .map_err(|e| ApiError::internal(&e))?;

        let record = EndpointRecord {
            target: req.target.clone(),
            netns_path,
            netns_id,
            network,
            ifname,
            host_ifname: host_name.clone(),
            mac,
            ips: req.ips.clone(),
            mtu,
            owner: req.owner.clone(),
            handover_ifname,
        };
        self.state.endpoints.push(record.clone());
        if let Err(e) = self.save() {
            self.state.endpoints.pop();
            let _ = self.dataplane().map(|d| d.remove_port(port_id));
            return Err(ApiError::internal(&e));
        }
        guard.index = None;
        self.endpoint_ports
            .insert(host_name, PortBinding { port: port_id });
        self.publish_endpoints();
        tracing::info!(target = %record.target, ifname = %record.ifname, mac = %record.mac, network = %record.network, "attached");
        Ok(endpoint_of(&record))
    }

    /// Which endpoint (or the host) uses `addr` on `network`.
    pub(super) fn address_owner(&self, network: &str, addr: IpAddr) -> Option<String> {
        if let Some(ep) = self
            .state
            .endpoints
            .iter()
            .find(|e| e.network == network && e.ips.iter().any(|i| i.addr() == addr))
        {
            return Some(ep.target.clone());
        }
        self.state
            .exposed
            .get(network)
            .filter(|x| x.addrs.iter().any(|a| a.addr() == addr))
            .map(|_| "the host (weft expose)".to_string())
    }

    /// Detaches the endpoints of a target.
    pub(super) fn detach(&mut self, req: &DetachRequest) -> Result<Vec<Endpoint>, ApiError> {
        // Match by namespace identity when the namespace still exists, so any name of the
        // same container works; fall back to the recorded target text when it is gone.
        let live_id = NetnsTarget::from_str(&req.target)
            .ok()
            .and_then(|t| t.open().ok())
            .and_then(|fd| netns::netns_id(fd.as_fd()).ok())
            .map(|id| (id.dev(), id.ino()));
        let matches = |e: &EndpointRecord| match &req.owner {
            Some(owner) => e.owner.as_ref() == Some(owner),
            None => {
                (live_id == Some(e.netns_id) || e.target == req.target)
                    && req.network.as_ref().is_none_or(|n| *n == e.network)
            }
        };
        let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.state.endpoints)
            .into_iter()
            .partition(matches);
        self.state.endpoints = kept;
        if gone.is_empty() && req.owner.is_some() {
            // Detaching by owner is idempotent: a runtime's repeated DEL succeeds.
            return Ok(gone.iter().map(endpoint_of).collect());
        }
        if gone.is_empty() {
            return Err(ApiError::not_found(format!(
                "{} is not attached{}",
                req.target,
                req.network
                    .as_ref()
                    .map(|n| format!(" to network {n}"))
                    .unwrap_or_default()
            )));
        }
        let mut nl = Netlink::new().map_err(|e| ApiError::internal(&anyhow::anyhow!(e)))?;
        for ep in &gone {
            if let Some(binding) = self.endpoint_ports.remove(&ep.host_ifname)
                && let Ok(dp) = self.dataplane()
            {
                let _ = dp.remove_port(binding.port);
            }
            match nl.link_by_name(&ep.host_ifname) {
                Ok(Some(link)) => {
                    if let Err(e) = nl.delete_link(link.index) {
                        tracing::warn!("cannot delete {}: {e}", ep.host_ifname);
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::warn!("cannot look up {}: {e}", ep.host_ifname),
            }
            tracing::info!(target = %ep.target, ifname = %ep.ifname, "detached");
        }
        self.save().map_err(|e| ApiError::internal(&e))?;
        self.publish_endpoints();
        Ok(gone.iter().map(endpoint_of).collect())
    }

    /// Re-opens the ports of endpoints recorded before a restart. An endpoint whose host
    /// link is gone (its container's namespace was destroyed) is forgotten.
    pub(super) fn restore_endpoints(&mut self) {
        let Ok(mut nl) = Netlink::new() else {
            tracing::error!("cannot open netlink to restore endpoints");
            return;
        };
        let mut kept = Vec::new();
        for ep in std::mem::take(&mut self.state.endpoints) {
            let link = match nl.link_by_name(&ep.host_ifname) {
                Ok(Some(l)) => l,
                Ok(None) => {
                    tracing::warn!(target = %ep.target, "endpoint's veth {} is gone (container removed?); forgetting it", ep.host_ifname);
                    continue;
                }
                Err(e) => {
                    tracing::error!("cannot look up {}: {e}; keeping the record", ep.host_ifname);
                    kept.push(ep);
                    continue;
                }
            };
            let restored = (|| -> anyhow::Result<()> {
                let (_, net) = self
                    .network_for(Some(&ep.network))
                    .map_err(|e| anyhow::anyhow!(e.message))?;
                let mac = ep.mac;
                if !link.up {
                    nl.set_up(link.index, true)?;
                }
                let port = PacketPort::open(link.index, &PortOptions::default())?;
                let id = self.dataplane()?.add_port(LocalPort {
                    handle: PortHandle::Veth(port),
                    name: ep.host_ifname.clone(),
                    network: net.id,
                    endpoint: Some(KnownEndpoint {
                        mac,
                        ips: ipv4_addrs(&ep.ips),
                    }),
                })?;
                self.endpoint_ports
                    .insert(ep.host_ifname.clone(), PortBinding { port: id });
                Ok(())
            })();
            match restored {
                Ok(()) => tracing::info!(target = %ep.target, ifname = %ep.ifname, "re-attached"),
                Err(e) => tracing::error!(target = %ep.target, "cannot re-attach: {e:#}"),
            }
            kept.push(ep);
        }
        self.state.endpoints = kept;
    }
}

/// Configures the container end, from inside the container's namespace.
fn configure_container_end(
    ifname: &str,
    mac: wire::Mac,
    mtu: u32,
    ips: &[IpNet],
) -> Result<(), ApiError> {
    let mut nl = Netlink::new().map_err(|e| ApiError::internal(&anyhow::anyhow!(e)))?;
    let link = nl
        .link_by_name(ifname)
        .map_err(|e| netlink_error("cannot find the new interface", e))?
        .ok_or_else(|| {
            ApiError::internal(&anyhow::anyhow!(
                "interface {ifname} vanished inside the container"
            ))
        })?;
    nl.set_mac(link.index, mac.0)
        .map_err(|e| netlink_error("cannot set MAC", e))?;
    nl.set_mtu(link.index, mtu)
        .map_err(|e| netlink_error("cannot set MTU", e))?;
    for ip in ips {
        nl.add_address(link.index, *ip)
            .map_err(|e| netlink_error(&format!("cannot add address {ip}"), e))?;
    }
    nl.set_up(link.index, true)
        .map_err(|e| netlink_error("cannot bring the interface up", e))?;
    // Multicast needs a route to leave the interface (as Weave's attach adds); a container
    // that already routes 224/4 elsewhere keeps its own.
    let mcast: IpNet =
        IpNet::V4(ipnet::Ipv4Net::new(Ipv4Addr::new(224, 0, 0, 0), 4).unwrap_or_default());
    match nl.add_route(mcast, link.index) {
        Ok(()) | Err(NetlinkError::AlreadyExists { .. }) => {}
        Err(e) => tracing::debug!("no multicast route in the container: {e}"),
    }
    Ok(())
}

/// The IPv4 addresses among `ips` (the ARP proxy answers for these).
pub(super) fn ipv4_addrs(ips: &[IpNet]) -> Vec<Ipv4Addr> {
    ips.iter()
        .filter_map(|n| match n.addr() {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => None,
        })
        .collect()
}
