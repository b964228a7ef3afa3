//! Periodic work of the data plane: heartbeats on every direct path, and folding the
//! kernel's per-socket drop counters into ours.

use std::time::Instant;

use tunnel::crypto::datagram;
use tunnel::vxlan::VXLAN_HEADER_LEN;
use tunnel::{HeartbeatKind, Vni, VxlanHeader};

use super::PortHandle;
use super::core::{Core, EngineCounters};
use crate::io::{TapPort, UdpPort};
use crate::netlink::Netlink;

impl Core {
    /// Sends due heartbeats (pings and pongs) on the VXLAN path of every peer with an
    /// address, and in the tunnel of every peer with a session.
    pub(super) fn heartbeats(&mut self, now: Instant) {
        let vni = self
            .networks
            .values()
            .map(|n| n.vni)
            .min()
            .and_then(Vni::new);
        let header = vni.map(|v| VxlanHeader::new(v).to_bytes());
        let Self {
            peers,
            hb,
            tun,
            send_pool,
            tunnel_sock,
            counters,
            ..
        } = self;
        for (_, peer) in peers.iter_mut() {
            if let (Some(addr), Some(header), true) = (peer.vxlan_addr, header, peer.vxlan_usable())
            {
                peer.vxlan.handle_timeout(now);
                while let Some(beat) = peer.vxlan.poll_transmit(now) {
                    let Some(body) = hb.get_mut(VXLAN_HEADER_LEN..) else {
                        break;
                    };
                    let pad = peer.vxlan.config().probe_len;
                    let Ok(n) = beat.encode(pad, body) else {
                        counters.bump("engine", "heartbeat_encode_errors");
                        continue;
                    };
                    hb[..VXLAN_HEADER_LEN].copy_from_slice(&header);
                    let len = VXLAN_HEADER_LEN + n;
                    if send_pool.send(0, addr, &hb[..len], len).is_err() {
                        counters.bump("engine", "heartbeat_send_errors");
                    } else if beat.kind == HeartbeatKind::Ping {
                        counters.bump("engine", "heartbeat_pings_sent");
                    }
                }
                while let Some(ev) = peer.vxlan.poll_event() {
                    tracing::info!(peer = %addr, "VXLAN path {ev:?}");
                }
            }
            if let Some(t) = peer.tunnel.as_mut() {
                t.session.handle_timeout(now);
                t.monitor.handle_timeout(now);
                while let Some(beat) = t.monitor.poll_transmit(now) {
                    tun.clear();
                    let pad = t.monitor.config().probe_len;
                    match datagram::seal_heartbeat(&mut t.session, now, &beat, pad, tun) {
                        Ok(range) => {
                            let Some(d) = tun.get(range) else { continue };
                            if tunnel_sock.send(t.addr, d, d.len()).is_err() {
                                counters.bump("engine", "tunnel_heartbeat_send_errors");
                            }
                        }
                        Err(e) => counters.bump("drop", e.name()),
                    }
                }
                while let Some(ev) = t.monitor.poll_event() {
                    tracing::info!(peer = %t.addr, "tunnel path {ev:?}");
                }
            }
        }
    }

    /// Folds what the kernel dropped before weft saw it into our counters: each veth's
    /// packet-socket drops and each TAP's device drops into its port's `kernel_drops`,
    /// and the tunnel sockets' receive-buffer drops into `drop.vxlan_socket_overflow` and
    /// `drop.tunnel_socket_overflow`.
    pub(super) fn fold_kernel_stats(&mut self, vxlan: &UdpPort, netlink: &mut Option<Netlink>) {
        for (_, slot) in self.ports.locals_mut() {
            match &slot.handle {
                PortHandle::Veth(p) => {
                    if let Ok(s) = p.stats() {
                        slot.counters.kernel_drops += u64::from(s.drops);
                    }
                }
                PortHandle::Tap(t) => {
                    if let Some(now) = tap_drops(netlink, t) {
                        let seen = slot.counters.kernel_drops_seen.replace(now);
                        slot.counters.kernel_drops += now.saturating_sub(seen.unwrap_or(now));
                    }
                }
            }
        }
        for (name, sock) in [
            ("vxlan_socket_overflow", vxlan),
            ("tunnel_socket_overflow", &self.tunnel_sock),
        ] {
            match sock.kernel_drops() {
                Ok(n) => self.counters.set("drop", name, u64::from(n)),
                Err(e) => tracing::debug!("cannot read the drop count of {name}: {e}"),
            }
        }
    }
}

/// A TAP's device drop count (cumulative since the device was made, so across router
/// restarts: callers count differences), through a netlink handle opened on first use.
pub(super) fn tap_drops(netlink: &mut Option<Netlink>, tap: &TapPort) -> Option<u64> {
    if netlink.is_none() {
        match Netlink::new() {
            Ok(nl) => *netlink = Some(nl),
            Err(e) => {
                tracing::debug!("no netlink for TAP statistics: {e}");
                return None;
            }
        }
    }
    match netlink.as_mut()?.link(tap.ifindex()) {
        Ok(link) => link.map(|l| l.drops),
        Err(e) => {
            tracing::debug!(tap = %tap.name(), "cannot read TAP statistics: {e}");
            None
        }
    }
}

impl EngineCounters {
    /// Counts `n` events at once (e.g. the datagrams of one failed send).
    pub(super) fn add(&mut self, group: &'static str, name: &'static str, n: u64) {
        *self.named.entry((group, name)).or_insert(0) += n;
    }

    /// Sets a counter the kernel keeps for us (e.g. a socket's drop count).
    pub(super) fn set(&mut self, group: &'static str, name: &'static str, value: u64) {
        self.named.insert((group, name), value);
    }
}
