//! The data plane's status snapshot: ports, peers, tables and every counter by name.

use std::collections::BTreeMap;
use std::time::Instant;

use learning::NetworkId;
use tunnel::Coalescer;

use super::DataplaneStatus;
use super::core::Core;
use super::ports::Slot;
use crate::api::report::{PortReport, TableReport};

impl Core {
    /// A snapshot for `weft status`.
    pub(super) fn status(&self, now: Instant, coalescer: &Coalescer) -> DataplaneStatus {
        let net_name = |id: NetworkId| {
            self.networks
                .get(&id)
                .map(|n| n.name.clone())
                .unwrap_or_default()
        };
        let mut ports = Vec::new();
        for (id, slot) in self.ports.iter() {
            if let Slot::Local(l) = slot {
                let c = l.counters;
                ports.push(PortReport {
                    id: id.0,
                    kind: l.kind().into(),
                    name: l.name.clone(),
                    network: net_name(l.network),
                    rx_frames: c.rx_frames,
                    rx_bytes: c.rx_bytes,
                    tx_frames: c.tx_frames,
                    tx_bytes: c.tx_bytes,
                    tx_dropped: c.tx_dropped,
                    kernel_drops: c.kernel_drops,
                });
            }
        }
        let peers = self
            .peers
            .iter()
            .map(|(_, p)| p.report(&self.peers))
            .collect();
        let sc = self.switch.counters();
        let mut counters: BTreeMap<String, u64> = BTreeMap::new();
        for (k, v) in [
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
        ] {
            counters.insert(k.into(), v);
        }
        for (reason, v) in sc.drops.iter() {
            counters.insert(format!("drop.{}", reason.name()), v);
        }
        let cc = coalescer.counters();
        for (k, v) in [
            ("gro.frames_in", cc.frames_in),
            ("gro.segments_merged", cc.segments_merged),
            ("gro.super_frames_out", cc.super_frames_out),
            ("gro.bad_checksum", cc.bad_checksum),
        ] {
            counters.insert(k.into(), v);
        }
        let pc = self.pmtu.counters();
        for (k, v) in [
            ("pmtu.segmented", pc.segment),
            ("pmtu.sent_oversized", pc.sent_oversized),
            ("pmtu.frag_needed_sent", pc.frag_needed),
            ("pmtu.packet_too_big_sent", pc.packet_too_big),
        ] {
            counters.insert(k.into(), v);
        }
        for ((group, name), v) in &self.counters.named {
            counters.insert(format!("{group}.{name}"), *v);
        }
        // Per-port drops (`weft status ports` has them by port), totalled among the drops.
        for (k, v) in [
            (
                "drop.port_send_failed",
                ports.iter().map(|p| p.tx_dropped).sum(),
            ),
            (
                "drop.port_kernel",
                ports.iter().map(|p| p.kernel_drops).sum(),
            ),
        ] {
            counters.insert(k.into(), v);
        }
        DataplaneStatus {
            ports,
            peers,
            tables: TableReport {
                macs: self.switch.mac_entries(now).count(),
                neighbours: self.switch.neighbours(now).count(),
                groups: self.switch.groups(now).count(),
            },
            counters,
            data_path: format!(
                "AF_PACKET + vnet_hdr (TSO super-frames pass whole), recvmmsg/sendmmsg; VXLAN and encrypted tunnel over UDP with {} and GRO",
                if self.gso { "GSO" } else { "no GSO" }
            ),
        }
    }
}
