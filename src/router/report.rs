//! `weft status` and `/metrics`: the router's view joined with the data plane's counters.

use std::fmt::Write as _;

use super::Router;
use crate::api::ApiError;
use crate::api::report::{NetworkReport, StatusReport};

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
        let (connections, targets) = self.mesh_reports(&dp.peers, &mut counters);
        Ok(StatusReport {
            version: env!("CARGO_PKG_VERSION").to_string(),
            name: self.config.name.to_string(),
            nickname: self.config.nickname.clone(),
            pid: std::process::id(),
            uptime_secs: self.started.elapsed().as_secs(),
            underlay_mtu: self.config.underlay_mtu,
            overlay_mtu: self.config.overlay_mtu,
            vxlan_port: self.config.vxlan_port,
            data_path: dp.data_path,
            networks,
            ports: dp.ports,
            peers: dp.peers,
            connections,
            targets,
            encryption: if self.config.password_set {
                "password: control and tunnel authenticated and encrypted".into()
            } else {
                "no password: tunnel encrypted with unauthenticated keys (stops passive capture only)".into()
            },
            tables: dp.tables,
            counters,
        })
    }

    /// Prometheus text exposition of the same numbers.
    pub(super) fn metrics(&self) -> Result<String, ApiError> {
        let r = self.status_report()?;
        let mut o = String::new();
        let _ = writeln!(
            o,
            "# HELP weft_up Whether the weft router runs.\n# TYPE weft_up gauge\nweft_up 1"
        );
        let _ = writeln!(
            o,
            "# HELP weft_endpoints Attached endpoints per network.\n# TYPE weft_endpoints gauge"
        );
        for n in &r.networks {
            let _ = writeln!(
                o,
                "weft_endpoints{{network=\"{}\",vni=\"{}\"}} {}",
                n.name, n.vni, n.endpoints
            );
        }
        let _ = writeln!(
            o,
            "# HELP weft_port_frames_total Frames per port and direction.\n# TYPE weft_port_frames_total counter"
        );
        for p in &r.ports {
            let _ = writeln!(
                o,
                "weft_port_frames_total{{port=\"{}\",kind=\"{}\",direction=\"rx\"}} {}",
                p.name, p.kind, p.rx_frames
            );
            let _ = writeln!(
                o,
                "weft_port_frames_total{{port=\"{}\",kind=\"{}\",direction=\"tx\"}} {}",
                p.name, p.kind, p.tx_frames
            );
        }
        let _ = writeln!(
            o,
            "# HELP weft_port_bytes_total Bytes per port and direction.\n# TYPE weft_port_bytes_total counter"
        );
        for p in &r.ports {
            let _ = writeln!(
                o,
                "weft_port_bytes_total{{port=\"{}\",kind=\"{}\",direction=\"rx\"}} {}",
                p.name, p.kind, p.rx_bytes
            );
            let _ = writeln!(
                o,
                "weft_port_bytes_total{{port=\"{}\",kind=\"{}\",direction=\"tx\"}} {}",
                p.name, p.kind, p.tx_bytes
            );
        }
        let _ = writeln!(
            o,
            "# HELP weft_peer_frames_total Frames per peer and direction.\n# TYPE weft_peer_frames_total counter"
        );
        for p in &r.peers {
            let _ = writeln!(
                o,
                "weft_peer_frames_total{{peer=\"{}\",direction=\"tx\"}} {}",
                p.address, p.tx_frames
            );
            let _ = writeln!(
                o,
                "weft_peer_frames_total{{peer=\"{}\",direction=\"rx\"}} {}",
                p.address, p.rx_frames
            );
        }
        let _ = writeln!(
            o,
            "# HELP weft_events_total Data-plane events and drops by name.\n# TYPE weft_events_total counter"
        );
        for (k, v) in &r.counters {
            let _ = writeln!(o, "weft_events_total{{event=\"{k}\"}} {v}");
        }
        Ok(o)
    }
}
