//! The router's side of the peer mesh: its static key, the endpoints it announces, and
//! the control connections and dial targets shown in `weft status`.

use std::net::SocketAddr;

use tunnel::crypto::identity::StaticKeypair;

use super::Router;
use crate::api::report::{ConnectionReport, Direction, TargetReport, TargetSource, TargetState};
use crate::state::State;

/// The router's static handshake key, generated and persisted on first launch.
pub(super) fn static_key(state: &mut State) -> anyhow::Result<StaticKeypair> {
    if let Some(hex) = &state.static_key {
        return StaticKeypair::from_hex(hex)
            .map_err(|e| anyhow::anyhow!("weft state has an invalid static key: {e}"));
    }
    let key = StaticKeypair::generate()
        .map_err(|e| anyhow::anyhow!("cannot generate a static key: {e}"))?;
    state.static_key = Some(key.to_hex());
    Ok(key)
}

impl Router {
    /// Tells the mesh which endpoints this router serves (containers and host ports), so
    /// other routers answer ARP for them and forward to them without flooding.
    pub(super) fn publish_endpoints(&self) {
        let Some(meshd) = &self.meshd else { return };
        let mut endpoints = Vec::new();
        for ep in &self.state.endpoints {
            let Some(net) = self.networks.get(&ep.network) else {
                continue;
            };
            endpoints.push(mesh::Endpoint {
                vni: net.vni.get(),
                mac: ep.mac.0,
                ips: ep.ips.iter().map(ipnet::IpNet::addr).collect(),
            });
        }
        for (network, hp) in &self.host_ports {
            let Some(net) = self.networks.get(network) else {
                continue;
            };
            let ips = self
                .state
                .exposed
                .get(network)
                .map(|x| x.addrs.iter().map(ipnet::IpNet::addr).collect())
                .unwrap_or_default();
            endpoints.push(mesh::Endpoint {
                vni: net.vni.get(),
                mac: hp.mac.0,
                ips,
            });
        }
        if let Err(e) = meshd.set_local_endpoints(endpoints) {
            tracing::warn!("cannot announce endpoints to the mesh: {e:#}");
        }
    }

    /// The mesh's part of `weft status`: control connections (with the data path each
    /// peer's traffic takes), dial targets, and the mesh counters.
    pub(super) fn mesh_reports(
        &self,
        peers: &[crate::api::report::PeerReport],
        counters: &mut std::collections::BTreeMap<String, u64>,
    ) -> (Vec<ConnectionReport>, Vec<TargetReport>) {
        let Some(meshd) = &self.meshd else {
            return (Vec::new(), Vec::new());
        };
        let status = match meshd.status() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("mesh status unavailable: {e:#}");
                return (Vec::new(), Vec::new());
            }
        };
        if let Ok(serde_json::Value::Object(map)) = serde_json::to_value(&status.mesh.counters) {
            for (k, v) in map {
                if let Some(v) = v.as_u64() {
                    counters.insert(format!("mesh.{k}"), v);
                }
            }
        }
        for (name, v) in status.closed.named() {
            counters.insert(name.to_string(), v);
        }
        let targets = status
            .mesh
            .targets
            .iter()
            .map(|t| TargetReport {
                target: self
                    .asked
                    .iter()
                    .find(|(_, a)| SocketAddr::new(a.ip(), self.config.ports.mesh) == t.addr)
                    .map_or_else(|| t.addr.to_string(), |(spec, _)| spec.clone()),
                address: Some(t.addr),
                source: match t.source {
                    mesh::TargetSource::Explicit => TargetSource::Explicit,
                    mesh::TargetSource::Discovered => TargetSource::Discovered,
                },
                state: match t.state {
                    mesh::TargetState::Connecting => TargetState::Connecting,
                    mesh::TargetState::Connected => TargetState::Connected,
                    mesh::TargetState::Retrying => TargetState::Retrying,
                    mesh::TargetState::Waiting => TargetState::Waiting,
                    mesh::TargetState::Failed => TargetState::Failed,
                },
                attempts: t.attempts,
                next_retry_secs: t.next_retry_in_secs,
                last_error: t.last_error.clone(),
            })
            .collect();
        let connections = status
            .connections
            .iter()
            .map(|c| {
                let report = c
                    .peer
                    .and_then(|n| peers.iter().find(|p| p.name == Some(n)));
                ConnectionReport {
                    direction: if c.outbound {
                        Direction::Outbound
                    } else {
                        Direction::Inbound
                    },
                    address: c.remote,
                    state: c.state,
                    peer: c.peer,
                    path: report.map(|p| p.path),
                    path_reason: report.map(|p| p.reason.clone()),
                    via: report.and_then(|p| p.via),
                    via_nickname: report.and_then(|p| p.via_nickname.clone()),
                    encryption: c.encryption,
                    last_error: c.last_error.clone(),
                }
            })
            .collect();
        (connections, targets)
    }
}
