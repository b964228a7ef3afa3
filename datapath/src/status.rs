//! The core's snapshot for `weft status` and `/metrics`, typed: the shell turns it into
//! the API's report.

use std::net::SocketAddr;
use std::time::Instant;

use learning::PortId;
use mesh::PeerName;
use switch::SwitchCounters;
use tunnel::path::{Path, PathChoice};
use tunnel::{CoalesceCounters, PathState, PmtuCounters};

use crate::boundary::LocalPortKind;
use crate::core::State;
use crate::drops::{Counters, DropCounters};
use crate::ports::{PortCounters, Slot};

/// Traffic counters of one peer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerCounters {
    /// Frames (datagrams) sent.
    pub tx_frames: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Frames (datagrams) received.
    pub rx_frames: u64,
    /// Bytes received.
    pub rx_bytes: u64,
}

/// Why a peer's frames take the path they take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathWhy {
    /// The path selector's choice (a mesh peer).
    Chosen(PathChoice),
    /// A command-line peer without a mesh connection: VXLAN is all it has; `heartbeat`
    /// says whether it answers, `named` whether it ever did (a kernel VTEP never does).
    StaticVxlan {
        /// Its VXLAN heartbeat state.
        heartbeat: PathState,
        /// Whether its heartbeats ever named it (a weft router).
        named: bool,
    },
    /// A command-line peer a password forbids cleartext to, waiting for an authenticated
    /// mesh connection.
    NoCleartext,
}

/// One peer in status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    /// Its underlay VXLAN address, when it has one.
    pub addr: Option<SocketAddr>,
    /// Its peer name.
    pub name: Option<PeerName>,
    /// Its nickname.
    pub nickname: Option<String>,
    /// The path its frames take.
    pub path: Path,
    /// Why.
    pub why: PathWhy,
    /// The neighbour relaying its frames, while it is relayed.
    pub via: Option<PeerName>,
    /// That neighbour's nickname.
    pub via_nickname: Option<String>,
    /// Its VXLAN heartbeat state.
    pub heartbeat: PathState,
    /// Its tunnel heartbeat state, when there is a tunnel.
    pub tunnel_heartbeat: Option<PathState>,
    /// Its traffic.
    pub counters: PeerCounters,
}

/// One local port in status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortStatus {
    /// Its switch id.
    pub id: PortId,
    /// Veth or TAP.
    pub kind: LocalPortKind,
    /// Interface name.
    pub name: String,
    /// Its network's name.
    pub network: String,
    /// Its traffic.
    pub counters: PortCounters,
}

/// Table sizes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableSizes {
    /// MAC entries.
    pub macs: usize,
    /// Neighbour (ARP) entries.
    pub neighbours: usize,
    /// Multicast group memberships.
    pub groups: usize,
}

/// A snapshot of the core.
#[derive(Debug, Clone)]
pub struct Status {
    /// Local ports.
    pub ports: Vec<PortStatus>,
    /// Peers.
    pub peers: Vec<PeerStatus>,
    /// Table sizes.
    pub tables: TableSizes,
    /// The switch's counters (its drops among them).
    pub switch: SwitchCounters,
    /// Software GRO.
    pub gro: CoalesceCounters,
    /// Path MTU decisions.
    pub pmtu: PmtuCounters,
    /// The data plane's drops, every reason.
    pub drops: DropCounters,
    /// Its other counters.
    pub counters: Counters,
}

impl Status {
    /// Every counter under its stable name (`drop.<reason>`, `switch.frames`, ...),
    /// every reason listed, zeros too: what `weft status drops` and `/metrics` show.
    pub fn named_counters(&self) -> Vec<(String, u64)> {
        let sc = &self.switch;
        let mut out: Vec<(String, u64)> = [
            ("switch.frames", sc.frames),
            ("switch.forwarded_unicast", sc.forwarded_unicast),
            ("switch.flooded_broadcast", sc.flooded_broadcast),
            ("switch.flooded_unknown_unicast", sc.flooded_unknown_unicast),
            ("switch.flooded_multicast", sc.flooded_multicast),
            ("switch.multicast_to_members", sc.multicast_to_members),
            ("switch.arp_proxied", sc.arp_proxied),
            ("switch.igmp_snooped", sc.igmp_snooped),
            ("switch.queries_sent", sc.queries_sent),
            ("mac.learned", sc.macs.learned),
            ("mac.moved", sc.macs.moved),
            ("mac.evicted", sc.macs.evicted),
            ("mac.expired", sc.macs.expired),
            ("neighbour.learned", sc.neighbours.learned),
            ("neighbour.static_conflicts", sc.neighbours.static_conflicts),
            ("group.joins", sc.groups.joins),
            ("group.leaves", sc.groups.leaves),
            ("group.expired", sc.groups.expired),
            ("gro.frames_in", self.gro.frames_in),
            ("gro.segments_merged", self.gro.segments_merged),
            ("gro.super_frames_out", self.gro.super_frames_out),
            ("gro.bad_checksum", self.gro.bad_checksum),
            ("pmtu.segmented", self.pmtu.segment),
            ("pmtu.sent_oversized", self.pmtu.sent_oversized),
            ("pmtu.frag_needed_sent", self.pmtu.frag_needed),
            ("pmtu.packet_too_big_sent", self.pmtu.packet_too_big),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        out.extend(
            sc.drops
                .iter()
                .map(|(reason, v)| (format!("drop.{}", reason.name()), v)),
        );
        out.extend(
            self.drops
                .iter()
                .map(|(name, v)| (format!("drop.{name}"), v)),
        );
        out.extend(self.counters.iter().map(|(name, v)| (name.to_string(), v)));
        out
    }
}

impl State {
    /// A snapshot for `weft status`.
    pub(crate) fn status(&self, now: Instant, gro: &CoalesceCounters) -> Status {
        let net_name = |id| {
            self.networks
                .get(&id)
                .map(|n| n.name.clone())
                .unwrap_or_default()
        };
        let ports = self
            .ports
            .iter()
            .filter_map(|(id, slot)| match slot {
                Slot::Local(l) => Some(PortStatus {
                    id,
                    kind: l.kind,
                    name: l.name.clone(),
                    network: net_name(l.network),
                    counters: l.counters,
                }),
                Slot::Remote(_) => None,
            })
            .collect();
        Status {
            ports,
            peers: self
                .peers
                .iter()
                .map(|(_, p)| p.status(&self.peers))
                .collect(),
            tables: TableSizes {
                macs: self.switch.mac_entries(now).count(),
                neighbours: self.switch.neighbours(now).count(),
                groups: self.switch.groups(now).count(),
            },
            switch: self.switch.counters(),
            gro: *gro,
            pmtu: *self.pmtu.counters(),
            drops: self.drops.clone(),
            counters: self.counters.clone(),
        }
    }
}
