//! The core's typed snapshot as the API reports it.

use datapath::{PathWhy, PeerStatus, Status};
use tunnel::PathState;
use tunnel::path::Path;

use super::DataplaneStatus;
use crate::api::report::{DataPath, Heartbeat, PeerReport, PortKind, PortReport, TableReport};

/// The API's view of a core snapshot; `gso` says whether UDP GSO is in use.
pub(super) fn report(status: Status, gso: bool) -> DataplaneStatus {
    let counters = status.named_counters().into_iter().collect();
    DataplaneStatus {
        ports: status
            .ports
            .into_iter()
            .map(|p| PortReport {
                id: p.id.0,
                kind: match p.kind {
                    datapath::LocalPortKind::Veth => PortKind::Veth,
                    datapath::LocalPortKind::Tap => PortKind::Tap,
                },
                name: p.name,
                network: p.network,
                rx_frames: p.counters.rx_frames,
                rx_bytes: p.counters.rx_bytes,
                tx_frames: p.counters.tx_frames,
                tx_bytes: p.counters.tx_bytes,
                tx_dropped: p.counters.tx_dropped,
                kernel_drops: p.counters.kernel_drops,
            })
            .collect(),
        peers: status.peers.into_iter().map(peer).collect(),
        tables: TableReport {
            macs: status.tables.macs,
            neighbours: status.tables.neighbours,
            groups: status.tables.groups,
        },
        counters,
        data_path: format!(
            "AF_PACKET + vnet_hdr (TSO super-frames pass whole), recvmmsg/sendmmsg; VXLAN and encrypted tunnel over UDP with {} and GRO",
            if gso { "GSO" } else { "no GSO" }
        ),
    }
}

/// Why a peer's frames take their path, in words.
fn reason(why: PathWhy) -> String {
    match why {
        PathWhy::NoCleartext => "password set and subnet not trusted: no cleartext; waiting for an authenticated mesh connection".into(),
        PathWhy::StaticVxlan { heartbeat, named } => match heartbeat {
            PathState::Up { .. } => "vxlan heartbeats answered (no mesh connection)",
            PathState::Down { .. } if !named => {
                "no heartbeat answers (not a weft router, e.g. a kernel VTEP: sending anyway)"
            }
            PathState::Down { .. } => "vxlan heartbeats stopped (sending anyway)",
            PathState::Unknown => "waiting for the first heartbeat answer",
        }
        .into(),
        PathWhy::Chosen(choice) => {
            let mut reason = choice.reason.to_string();
            if choice.path == Path::Encrypted && !choice.authenticated {
                reason.push_str("; unauthenticated keys: stops passive capture only");
            }
            reason
        }
    }
}

fn peer(p: PeerStatus) -> PeerReport {
    let (heartbeat, rtt_us) = match p.heartbeat {
        PathState::Up { rtt } => (Heartbeat::Up, Some(rtt.as_micros() as u64)),
        PathState::Down { .. } => (Heartbeat::Down, None),
        PathState::Unknown => (Heartbeat::Unknown, None),
    };
    PeerReport {
        address: p.addr,
        name: p.name,
        nickname: p.nickname,
        path: DataPath::from(p.path),
        reason: reason(p.why),
        via: p.via,
        via_nickname: p.via_nickname,
        heartbeat,
        rtt_us,
        tx_frames: p.counters.tx_frames,
        tx_bytes: p.counters.tx_bytes,
        rx_frames: p.counters.rx_frames,
        rx_bytes: p.counters.rx_bytes,
    }
}
