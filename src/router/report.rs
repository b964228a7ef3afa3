//! `weft status` and `/metrics`: the router's view joined with the data plane's counters.

use std::fmt::Write as _;

use super::Router;
use crate::api::ApiError;
use crate::api::report::{ConnectionState, MeshEncryption, NetworkReport, StatusReport};

impl Router {
    /// The full status report.
    pub(super) fn status_report(&self) -> Result<StatusReport, ApiError> {
        let dp = self
            .dataplane()
            .and_then(|d| d.status())
            .map_err(|e| ApiError::internal(&e))?;
        let networks = self
            .networks
            .iter()
            .map(|(name, e)| NetworkReport {
                name: name.to_string(),
                vni: e.vni,
                endpoints: self
                    .state
                    .endpoints
                    .iter()
                    .filter(|ep| ep.network == name)
                    .count(),
                exposed: self
                    .state
                    .exposed
                    .get(name)
                    .map(|x| x.addrs.iter().map(ToString::to_string).collect())
                    .unwrap_or_default(),
            })
            .collect();
        let mut counters = dp.counters;
        let (connections, mut targets) = self.mesh_reports(&dp.peers, &mut counters);
        if let Some(pending) = &self.pending_peers {
            targets.extend(pending.reports(|spec| self.state.targets.iter().any(|t| t == spec)));
        }
        Ok(StatusReport {
            version: env!("CARGO_PKG_VERSION").to_string(),
            name: self.config.name,
            nickname: self.config.nickname.clone(),
            pid: std::process::id(),
            uptime_secs: self.started.elapsed().as_secs(),
            underlay_mtu: self.config.underlay_mtu,
            overlay_mtu: self.config.overlay_mtu,
            vxlan_port: self.config.ports.vxlan,
            data_path: dp.data_path,
            networks,
            ports: dp.ports,
            peers: dp.peers,
            connections,
            targets,
            encryption: if self.config.password_set {
                MeshEncryption::Password
            } else {
                MeshEncryption::Unauthenticated
            },
            tables: dp.tables,
            counters,
        })
    }

    /// Prometheus text exposition of the same numbers.
    pub(super) fn metrics(&self) -> Result<String, ApiError> {
        let r = self.status_report()?;
        let mut o = String::new();
        family(
            &mut o,
            "weft_up",
            "Whether the weft router runs.",
            "gauge",
            [(String::new(), 1)],
        );
        family(
            &mut o,
            "weft_endpoints",
            "Attached endpoints per network.",
            "gauge",
            r.networks.iter().map(|n| {
                (
                    format!("network=\"{}\",vni=\"{}\"", n.name, n.vni),
                    n.endpoints as u64,
                )
            }),
        );
        let port = |p: &crate::api::report::PortReport, dir: &str| {
            format!(
                "port=\"{}\",kind=\"{}\",direction=\"{dir}\"",
                p.name,
                p.kind.name()
            )
        };
        family(
            &mut o,
            "weft_port_frames_total",
            "Frames per port and direction.",
            "counter",
            r.ports
                .iter()
                .flat_map(|p| [(port(p, "rx"), p.rx_frames), (port(p, "tx"), p.tx_frames)]),
        );
        family(
            &mut o,
            "weft_port_bytes_total",
            "Bytes per port and direction.",
            "counter",
            r.ports
                .iter()
                .flat_map(|p| [(port(p, "rx"), p.rx_bytes), (port(p, "tx"), p.tx_bytes)]),
        );
        family(
            &mut o,
            "weft_port_dropped_total",
            "Frames dropped per port: weft could not send them (send_failed), or the kernel dropped them at the port before weft read them (kernel).",
            "counter",
            r.ports.iter().flat_map(|p| {
                let labels = |reason: &str| {
                    format!(
                        "port=\"{}\",kind=\"{}\",reason=\"{reason}\"",
                        p.name,
                        p.kind.name()
                    )
                };
                [
                    (labels("send_failed"), p.tx_dropped),
                    (labels("kernel"), p.kernel_drops),
                ]
            }),
        );
        let peer = |p: &crate::api::report::PeerReport, dir: &str| {
            format!(
                "peer=\"{}\",name=\"{}\",direction=\"{dir}\"",
                p.address.map(|a| a.to_string()).unwrap_or_default(),
                p.name.map(|n| n.to_string()).unwrap_or_default()
            )
        };
        family(
            &mut o,
            "weft_peer_frames_total",
            "Frames (datagrams) per peer and direction.",
            "counter",
            r.peers
                .iter()
                .flat_map(|p| [(peer(p, "tx"), p.tx_frames), (peer(p, "rx"), p.rx_frames)]),
        );
        family(
            &mut o,
            "weft_peer_bytes_total",
            "Bytes per peer and direction.",
            "counter",
            r.peers
                .iter()
                .flat_map(|p| [(peer(p, "tx"), p.tx_bytes), (peer(p, "rx"), p.rx_bytes)]),
        );
        family(
            &mut o,
            "weft_connections",
            "Control connections by state.",
            "gauge",
            ConnectionState::ALL.into_iter().map(|state| {
                let n = r.connections.iter().filter(|c| c.state == state).count() as u64;
                (format!("state=\"{}\"", state.name()), n)
            }),
        );
        family(
            &mut o,
            "weft_events_total",
            "Data-plane and mesh events and drops by name.",
            "counter",
            r.counters
                .iter()
                .map(|(k, v)| (format!("event=\"{k}\""), *v)),
        );
        Ok(o)
    }
}

/// Writes one metric family in the Prometheus text format.
fn family(
    o: &mut String,
    name: &str,
    help: &str,
    kind: &str,
    samples: impl IntoIterator<Item = (String, u64)>,
) {
    let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, value) in samples {
        if labels.is_empty() {
            let _ = writeln!(o, "{name} {value}");
        } else {
            let _ = writeln!(o, "{name}{{{labels}}} {value}");
        }
    }
}
