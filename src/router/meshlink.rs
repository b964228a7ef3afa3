//! The router's side of the peer mesh: its identity and password, the endpoints it
//! announces, and the control connections shown in `weft status`.

use anyhow::Context as _;
use tunnel::crypto::identity::StaticKeypair;

use super::Router;
use crate::api::report::{ConnectionReport, TargetReport};
use crate::cli::LaunchArgs;
use crate::state::State;

/// The environment variable that may carry the mesh password instead of a file.
pub(super) const PASSWORD_ENV: &str = "WEFT_PASSWORD";

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

/// The pre-shared key derived from `--password-file` or `WEFT_PASSWORD`, if either is set.
pub(super) fn password_psk(args: &LaunchArgs) -> anyhow::Result<Option<[u8; 32]>> {
    let password = match (&args.password_file, std::env::var_os(PASSWORD_ENV)) {
        (Some(path), _) => {
            let text = std::fs::read(path)
                .with_context(|| format!("cannot read the password file {}", path.display()))?;
            // A trailing newline is an editor's, not the password's.
            let mut text = text.as_slice();
            while let Some(rest) = text
                .strip_suffix(b"\n")
                .or_else(|| text.strip_suffix(b"\r"))
            {
                text = rest;
            }
            anyhow::ensure!(
                !text.is_empty(),
                "the password file {} is empty",
                path.display()
            );
            text.to_vec()
        }
        (None, Some(env)) => {
            anyhow::ensure!(!env.is_empty(), "{PASSWORD_ENV} is set but empty");
            env.into_encoded_bytes()
        }
        (None, None) => return Ok(None),
    };
    let psk = tunnel::crypto::password::psk_from_password(&password)
        .map_err(|e| anyhow::anyhow!("bad password: {e}"))?;
    Ok(Some(psk))
}

impl Router {
    /// Tells the mesh which endpoints this router serves (containers and host ports), so
    /// other routers answer ARP for them and forward to them without flooding.
    pub(super) fn publish_endpoints(&self) {
        let Some(meshd) = &self.meshd else { return };
        let mut endpoints = Vec::new();
        for ep in &self.state.endpoints {
            let (Some(net), Ok(mac)) =
                (self.networks.get(&ep.network), ep.mac.parse::<wire::Mac>())
            else {
                continue;
            };
            endpoints.push(mesh::Endpoint {
                vni: net.vni,
                mac: mac.0,
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
                vni: net.vni,
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
        let text = |v: serde_json::Result<serde_json::Value>| match v {
            Ok(serde_json::Value::String(s)) => s,
            Ok(other) => other.to_string(),
            Err(_) => String::new(),
        };
        let targets = status
            .mesh
            .targets
            .iter()
            .map(|t| TargetReport {
                address: t.addr.to_string(),
                source: text(serde_json::to_value(t.source)).to_lowercase(),
                state: text(serde_json::to_value(t.state)).to_lowercase(),
                attempts: t.attempts,
                next_retry_secs: t.next_retry_in_secs,
                last_error: t.last_error.clone(),
            })
            .collect();
        let connections = status
            .connections
            .iter()
            .map(|c| {
                let peer = c.peer.map(|n| wire::Mac(n).to_string());
                let report = peer
                    .as_ref()
                    .and_then(|n| peers.iter().find(|p| p.name.as_ref() == Some(n)));
                let path = report
                    .map(|p| format!("{} ({})", p.path_text(), p.reason))
                    .unwrap_or_else(|| "-".into());
                ConnectionReport {
                    direction: if c.outbound { "->".into() } else { "<-".into() },
                    address: c.remote.to_string(),
                    state: c.stage.to_string(),
                    peer,
                    path,
                    via: report.and_then(|p| p.via.clone()),
                    encryption: c.encryption.clone(),
                    last_error: c.last_error.clone(),
                }
            })
            .collect();
        (connections, targets)
    }
}
