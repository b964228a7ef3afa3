//! The verbs that are thin clients of a running router's API.

use std::fmt::Write as _;

use anyhow::Context as _;

use super::{Command, NetworkCommand, StatusPart};
use crate::api::client::Client;
use crate::api::report::{ConnectionState, DataPath, Direction, StatusReport};
use crate::api::{
    AttachRequest, DetachRequest, Endpoint, ExposeRequest, ForgetAnswer, HideRequest,
    NetworkRequest, PeersRequest,
};
use crate::home::Home;

type Json = serde_json::Value;

/// How long `stop` (and `reset`) wait for a router that accepted the stop to be gone.
pub(super) const STOP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

pub(super) fn run(home: &Home, command: Command) -> anyhow::Result<()> {
    let api = Client::new(&home.socket());
    match command {
        Command::Stop => {
            let _: Json = api.post("/stop", &serde_json::json!({}))?;
            crate::pidfile::wait_gone(&home.pidfile(), STOP_TIMEOUT)?;
            println!("weft router stopped");
        }
        Command::Attach(a) => {
            let req = AttachRequest {
                target: a.target,
                ips: a.ips,
                network: Some(a.network),
                ifname: Some(a.ifname),
                mtu: a.mtu,
                mac: a.mac,
                owner: None,
                handover: false,
            };
            let ep: Endpoint = api.post("/attach", &req)?;
            println!("{}", ps_line(&ep));
        }
        Command::Detach(d) => {
            let gone: Vec<Endpoint> = api.post(
                "/detach",
                &DetachRequest {
                    target: d.target,
                    owner: None,
                    network: d.network,
                },
            )?;
            for ep in gone {
                println!("detached {}", ps_line(&ep));
            }
        }
        Command::Expose(e) => {
            let _: Json = api.post(
                "/expose",
                &ExposeRequest {
                    cidr: e.cidr,
                    network: Some(e.network),
                },
            )?;
        }
        Command::Hide(h) => {
            let _: Json = api.post(
                "/hide",
                &HideRequest {
                    cidr: h.cidr,
                    network: Some(h.network),
                },
            )?;
        }
        Command::Connect(p) => {
            let _: Json = api.post("/connect", &PeersRequest { peers: p.peers })?;
        }
        Command::Forget(p) => {
            let answer: ForgetAnswer = api.post("/forget", &PeersRequest { peers: p.peers })?;
            for name in answer.unknown {
                eprintln!(
                    "weft: warning: {name} is not a peer this router dials; nothing to forget"
                );
            }
        }
        Command::Network(NetworkCommand::Add { name, vni }) => {
            let _: Json = api.post("/network", &NetworkRequest { name, vni })?;
        }
        Command::Network(NetworkCommand::Rm { name }) => {
            let _: Json = api.post("/network/rm", &NetworkRequest { name, vni: None })?;
        }
        Command::Network(NetworkCommand::Ls) => {
            let report: StatusReport = api.get("/status")?;
            print!("{}", format_status(&report, Some(StatusPart::Networks)));
        }
        Command::Status(s) => {
            if s.json {
                let v: Json = api.get("/status")?;
                println!(
                    "{}",
                    serde_json::to_string_pretty(&v).context("cannot print status")?
                );
            } else {
                let report: StatusReport = api.get("/status")?;
                print!("{}", format_status(&report, s.part));
            }
        }
        Command::Ps(p) => {
            let eps: Vec<Endpoint> = api.get("/ps")?;
            if p.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&eps).context("cannot print endpoints")?
                );
            } else {
                for ep in &eps {
                    println!("{}", ps_line(ep));
                }
            }
        }
        Command::Metrics => print!("{}", api.get_text("/metrics")?),
        Command::Launch(_)
        | Command::Reset(_)
        | Command::Lab(_)
        | Command::Cni(_)
        | Command::DockerPlugin(_)
        | Command::Completions { .. } => {
            anyhow::bail!("internal error: verb not handled by the API client")
        }
    }
    Ok(())
}

/// One line of `weft ps`: target, interface, MAC, addresses, network.
fn ps_line(ep: &Endpoint) -> String {
    let ips: Vec<String> = ep.ips.iter().map(ToString::to_string).collect();
    format!(
        "{} {} {} {} {}",
        ep.target,
        ep.ifname,
        ep.mac,
        if ips.is_empty() {
            "-".into()
        } else {
            ips.join(",")
        },
        ep.network
    )
}

/// A path as people read it: "relayed via NAME(NICKNAME)" for a relayed peer, else the
/// path word.
fn path_text(path: DataPath, via: Option<mesh::PeerName>, via_nickname: Option<&str>) -> String {
    match (via, via_nickname) {
        (Some(via), Some(nick)) => format!("{path} via {via}({nick})"),
        (Some(via), None) => format!("{path} via {via}"),
        _ => path.to_string(),
    }
}

/// The text form of `weft status [PART]`.
pub(crate) fn format_status(r: &StatusReport, part: Option<StatusPart>) -> String {
    let mut o = String::new();
    let want = |p: StatusPart| part.is_none() || part == Some(p);
    if part.is_none() {
        let _ = writeln!(o, "        Version: {}", r.version);
        let _ = writeln!(o, "           Name: {}({})", r.name, r.nickname);
        let _ = writeln!(o, "            Pid: {} (up {}s)", r.pid, r.uptime_secs);
        let _ = writeln!(
            o,
            "            MTU: overlay {} (underlay {})",
            r.overlay_mtu, r.underlay_mtu
        );
        let _ = writeln!(o, "     VXLAN port: {}", r.vxlan_port);
        let _ = writeln!(o, "      Data path: {}", r.data_path);
        let _ = writeln!(o, "     Encryption: {}", r.encryption.describe());
        let established = r
            .connections
            .iter()
            .filter(|c| c.state == ConnectionState::Established)
            .count();
        let _ = writeln!(
            o,
            "    Connections: {} ({} established), {} targets",
            r.connections.len(),
            established,
            r.targets.len()
        );
        let endpoints: usize = r.networks.iter().map(|n| n.endpoints).sum();
        let _ = writeln!(o, "      Endpoints: {endpoints}");
        let up = r.peers.iter().filter(|p| p.path != DataPath::None).count();
        let _ = writeln!(
            o,
            "          Peers: {} ({} with a working path)",
            r.peers.len(),
            up
        );
        let _ = writeln!(
            o,
            "         Tables: {} MACs, {} neighbours, {} multicast groups",
            r.tables.macs, r.tables.neighbours, r.tables.groups
        );
        let drops: u64 = r
            .counters
            .iter()
            .filter(|(k, _)| k.starts_with("drop."))
            .map(|(_, v)| v)
            .sum();
        let _ = writeln!(o, "          Drops: {drops} (weft status drops)");
    }
    if want(StatusPart::Networks) {
        let _ = writeln!(o, "\nNETWORK          VNI       ENDPOINTS  HOST ADDRESSES");
        for n in &r.networks {
            let exposed = if n.exposed.is_empty() {
                "-".to_string()
            } else {
                n.exposed.join(",")
            };
            let _ = writeln!(
                o,
                "{:<16} {:<9} {:<10} {}",
                n.name, n.vni, n.endpoints, exposed
            );
        }
    }
    if want(StatusPart::Peers) && (part.is_some() || !r.peers.is_empty()) {
        let _ = writeln!(
            o,
            "\nPEER                   NAME                        PATH         HEARTBEAT  RTT      TX/RX FRAMES    REASON"
        );
        for p in &r.peers {
            let name = match (&p.name, &p.nickname) {
                (Some(n), Some(k)) => format!("{n}({k})"),
                (Some(n), None) => n.to_string(),
                _ => "-".into(),
            };
            let rtt = p
                .rtt_us
                .map(|u| format!("{:.2}ms", u as f64 / 1000.0))
                .unwrap_or_else(|| "-".into());
            let _ = writeln!(
                o,
                "{:<22} {:<27} {:<12} {:<10} {:<8} {}/{:<10} {}",
                p.address.map_or_else(|| "-".into(), |a| a.to_string()),
                name,
                path_text(p.path, p.via, p.via_nickname.as_deref()),
                p.heartbeat,
                rtt,
                p.tx_frames,
                p.rx_frames,
                p.reason
            );
        }
    }
    if want(StatusPart::Connections) && (part.is_some() || !r.connections.is_empty()) {
        let _ = writeln!(o, "\nCONNECTIONS");
        for c in &r.connections {
            let _ = writeln!(
                o,
                "{} {:<22} {:<12} {:<20} {:<14} {}{}",
                match c.direction {
                    Direction::Outbound => "->",
                    Direction::Inbound => "<-",
                },
                c.address,
                c.state,
                c.peer.map_or_else(|| "-".into(), |p| p.to_string()),
                match (c.path, &c.path_reason) {
                    (Some(path), Some(why)) => format!(
                        "{} ({why})",
                        path_text(path, c.via, c.via_nickname.as_deref())
                    ),
                    (Some(path), None) => path_text(path, c.via, c.via_nickname.as_deref()),
                    (None, _) => "-".into(),
                },
                c.encryption.describe(),
                c.last_error
                    .as_ref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            );
        }
    }
    if want(StatusPart::Targets) && part.is_some() {
        let _ = writeln!(
            o,
            "\nTARGET                 SOURCE      STATE        ATTEMPTS  NEXT RETRY  LAST ERROR"
        );
        for t in &r.targets {
            let retry = t
                .next_retry_secs
                .map(|s| format!("{s:.1}s"))
                .unwrap_or_else(|| "-".into());
            let _ = writeln!(
                o,
                "{:<22} {:<11} {:<12} {:<9} {:<11} {}",
                t.target,
                t.source,
                t.state,
                t.attempts,
                retry,
                t.last_error.as_deref().unwrap_or("-")
            );
        }
    }
    if want(StatusPart::Ports) && part.is_some() {
        let _ = writeln!(
            o,
            "\nPORT  KIND  NAME                    NETWORK          RX FRAMES   TX FRAMES   TX DROPPED  KERNEL DROPS"
        );
        for p in &r.ports {
            let _ = writeln!(
                o,
                "{:<5} {:<5} {:<23} {:<16} {:<11} {:<11} {:<11} {}",
                p.id,
                p.kind,
                p.name,
                p.network,
                p.rx_frames,
                p.tx_frames,
                p.tx_dropped,
                p.kernel_drops
            );
        }
    }
    if want(StatusPart::Drops) && part.is_some() {
        let _ = writeln!(o, "\nCOUNTER                                  VALUE");
        for (k, v) in &r.counters {
            let _ = writeln!(o, "{k:<40} {v}");
        }
    }
    o
}
