//! `expose` and `hide`: the host's own port on a weft network, a TAP device.
//!
//! The TAP is persistent, so the host's addresses on it survive a router crash and the
//! next router re-attaches to it by name; `hide` (of the last address) and `reset`
//! delete it.

use ipnet::IpNet;

use super::Router;
use super::attach::ipv4_addrs;
use crate::api::server::Response;
use crate::api::{ApiError, ExposeRequest, HideRequest};
use crate::dataplane::{KnownEndpoint, LocalPort, PortHandle};
use crate::io::TapPort;
use crate::netlink::{Netlink, NetlinkError};
use crate::state::ExposedRecord;
use learning::PortId;

/// A host port the router has open.
#[derive(Debug, Clone)]
pub(super) struct HostPort {
    pub(super) port: PortId,
    pub(super) tap: String,
    pub(super) ifindex: u32,
    pub(super) mac: wire::Mac,
}

/// The TAP name of a new host port: `weft` for the default network, `weft-NAME` when that
/// fits IFNAMSIZ, else `weft-` and the name's first four characters followed by six hex
/// digits of its hash, so long names that share a prefix still get distinct TAPs. An
/// existing host port keeps the name in its state record.
pub(crate) fn tap_name(network: &str) -> String {
    if network == super::networks::DEFAULT_NETWORK {
        return "weft".into();
    }
    let name = format!("weft-{network}");
    if name.len() <= crate::netlink::IFNAME_MAX {
        return name;
    }
    let prefix: String = network.chars().take(4).collect();
    format!(
        "weft-{prefix}{:06x}",
        super::networks::derived_vni(network).get()
    )
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(&anyhow::anyhow!("{e}"))
}

impl Router {
    /// Opens (or re-opens) a network's TAP `name`, configures it and adds it to the switch.
    fn open_host_port(
        &mut self,
        network: &str,
        name: &str,
        addrs: &[IpNet],
    ) -> anyhow::Result<HostPort> {
        let (_, net) = self
            .network_for(Some(network))
            .map_err(|e| anyhow::anyhow!(e.message))?;
        let name = name.to_string();
        let tap = TapPort::open(&name)?;
        let ifindex = tap.ifindex();
        let mut nl = Netlink::new()?;
        let undo = |nl: &mut Netlink| {
            let _ = nl.delete_link(ifindex);
        };
        let configured = (|| -> anyhow::Result<wire::Mac> {
            nl.set_mtu(ifindex, self.config.overlay_mtu)?;
            for a in addrs {
                match nl.add_address(ifindex, *a) {
                    Ok(()) | Err(NetlinkError::AddressExists { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            nl.set_up(ifindex, true)?;
            let link = nl
                .link(ifindex)?
                .ok_or_else(|| anyhow::anyhow!("TAP {name} vanished"))?;
            link.mac
                .map(wire::Mac)
                .ok_or_else(|| anyhow::anyhow!("TAP {name} has no MAC"))
        })();
        let mac = match configured {
            Ok(m) => m,
            Err(e) => {
                drop(tap);
                undo(&mut nl);
                return Err(e);
            }
        };
        let port = self.dataplane()?.add_port(LocalPort {
            handle: PortHandle::Tap(tap),
            name: name.clone(),
            network: net.id,
            endpoint: Some(KnownEndpoint {
                mac,
                ips: ipv4_addrs(addrs),
            }),
        });
        let port = match port {
            Ok(p) => p,
            Err(e) => {
                undo(&mut nl);
                return Err(e);
            }
        };
        Ok(HostPort {
            port,
            tap: name,
            ifindex,
            mac,
        })
    }

    /// `weft expose CIDR [--network N]`.
    pub(super) fn expose(&mut self, req: &ExposeRequest) -> Result<Response, ApiError> {
        let (network, _) = self.network_for(req.network.as_deref())?;
        let record = self.state.exposed.get(&network);
        let tap = record.map_or_else(|| tap_name(&network), |x| x.tap.clone());
        if let Some(owner) = self.address_owner(&network, req.cidr.addr()) {
            if record.is_some_and(|x| x.addrs.contains(&req.cidr)) {
                return Ok(Response::Json(serde_json::json!({ "tap": tap })));
            }
            return Err(ApiError::conflict(format!(
                "address {} is already in use on network {network} by {owner}",
                req.cidr.addr()
            )));
        }
        if let Some((other, _)) = self
            .state
            .exposed
            .iter()
            .find(|(n, x)| **n != network && x.tap == tap)
        {
            return Err(ApiError::conflict(format!(
                "TAP name {tap} is already the host port of network {other}"
            )));
        }
        let mut addrs = record.map(|x| x.addrs.clone()).unwrap_or_default();
        if let Some(hp) = self.host_ports.get(&network).cloned() {
            let mut nl = Netlink::new().map_err(internal)?;
            nl.add_address(hp.ifindex, req.cidr).map_err(|e| match e {
                NetlinkError::AddressExists { .. } => ApiError::conflict(e.to_string()),
                other => internal(other),
            })?;
            addrs.push(req.cidr);
            self.dataplane()
                .and_then(|d| {
                    d.set_endpoint(
                        hp.port,
                        Some(KnownEndpoint {
                            mac: hp.mac,
                            ips: ipv4_addrs(&addrs),
                        }),
                    )
                })
                .map_err(|e| ApiError::internal(&e))?;
        } else {
            addrs.push(req.cidr);
            let hp = self
                .open_host_port(&network, &tap, &addrs)
                .map_err(|e| ApiError::internal(&e))?;
            self.host_ports.insert(network.clone(), hp);
        }
        self.state.exposed.insert(
            network.clone(),
            ExposedRecord {
                tap: tap.clone(),
                addrs,
            },
        );
        self.save().map_err(|e| ApiError::internal(&e))?;
        self.publish_endpoints();
        tracing::info!(%network, cidr = %req.cidr, %tap, "exposed");
        Ok(Response::Json(serde_json::json!({ "tap": tap })))
    }

    /// `weft hide [CIDR] [--network N]`.
    pub(super) fn hide(&mut self, req: &HideRequest) -> Result<Response, ApiError> {
        let network = req
            .network
            .clone()
            .unwrap_or_else(|| super::networks::DEFAULT_NETWORK.into());
        let Some(record) = self.state.exposed.get(&network).cloned() else {
            return Err(ApiError::not_found(format!(
                "the host has no address on network {network}"
            )));
        };
        let mut remaining = record.addrs.clone();
        if let Some(cidr) = req.cidr {
            if !remaining.contains(&cidr) {
                return Err(ApiError::not_found(format!(
                    "the host does not have {cidr} on network {network}"
                )));
            }
            remaining.retain(|a| *a != cidr);
        } else {
            remaining.clear();
        }
        let mut nl = Netlink::new().map_err(internal)?;
        let hp = self.host_ports.get(&network).cloned();
        if remaining.is_empty() {
            if let Some(hp) = &hp {
                let _ = self.dataplane().map(|d| d.remove_port(hp.port));
                self.host_ports.remove(&network);
            }
            if let Ok(Some(link)) = nl.link_by_name(&record.tap) {
                nl.delete_link(link.index).map_err(internal)?;
            }
            self.state.exposed.remove(&network);
        } else if let (Some(hp), Some(cidr)) = (hp, req.cidr) {
            match nl.del_address(hp.ifindex, cidr) {
                Ok(()) | Err(NetlinkError::NoSuchDevice { .. }) => {}
                Err(e) => return Err(internal(e)),
            }
            self.dataplane()
                .and_then(|d| {
                    d.set_endpoint(
                        hp.port,
                        Some(KnownEndpoint {
                            mac: hp.mac,
                            ips: ipv4_addrs(&remaining),
                        }),
                    )
                })
                .map_err(|e| ApiError::internal(&e))?;
            self.state.exposed.insert(
                network.clone(),
                ExposedRecord {
                    tap: record.tap.clone(),
                    addrs: remaining,
                },
            );
        }
        self.save().map_err(|e| ApiError::internal(&e))?;
        self.publish_endpoints();
        tracing::info!(%network, "hidden");
        Ok(Response::Json(serde_json::json!({})))
    }

    /// Re-opens host ports recorded before a restart.
    pub(super) fn restore_host_ports(&mut self) {
        let records: Vec<(String, ExposedRecord)> = self
            .state
            .exposed
            .iter()
            .map(|(n, r)| (n.clone(), r.clone()))
            .collect();
        for (network, record) in records {
            match self.open_host_port(&network, &record.tap, &record.addrs) {
                Ok(hp) => {
                    tracing::info!(%network, tap = %hp.tap, "host port restored");
                    self.host_ports.insert(network, hp);
                }
                Err(e) => tracing::error!(%network, "cannot restore host port: {e:#}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_network_names_sharing_a_prefix_get_distinct_taps() {
        assert_eq!(tap_name("default"), "weft");
        assert_eq!(tap_name("blue"), "weft-blue");
        assert_eq!(tap_name("0123456789"), "weft-0123456789");
        let a = tap_name("production-frontend");
        let b = tap_name("production-backend");
        assert_ne!(a, b);
        for t in [&a, &b] {
            assert_eq!(t.len(), crate::netlink::IFNAME_MAX, "{t}");
            assert!(t.starts_with("weft-prod"), "{t}");
            assert!(crate::netlink::validate_ifname(t).is_ok(), "{t}");
        }
        assert_eq!(tap_name("production-frontend"), a, "stable");
    }
}
