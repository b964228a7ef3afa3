//! The peers the data plane carries frames to, and the health of the path to each.

use std::collections::HashMap;

use foldhash::fast::FixedState;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use learning::{NetworkId, PortId};
use tunnel::{PathMonitor, PathMonitorConfig, PathState};

use crate::api::report::PeerReport;

/// Traffic counters of one peer.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct PeerCounters {
    pub(super) tx_frames: u64,
    pub(super) tx_bytes: u64,
    pub(super) rx_frames: u64,
    pub(super) rx_bytes: u64,
}

/// A peer: another weft router or a plain VXLAN endpoint (a kernel VTEP).
#[derive(Debug)]
pub(super) struct Peer {
    pub(super) addr: SocketAddr,
    /// Its peer name, learned from its heartbeats (kernel VTEPs never send any).
    pub(super) name: Option<[u8; 6]>,
    /// Heartbeats over the VXLAN path.
    pub(super) vxlan: PathMonitor,
    /// Its virtual port per network.
    pub(super) ports: HashMap<NetworkId, PortId, FixedState>,
    pub(super) counters: PeerCounters,
}

impl Peer {
    pub(super) fn report(&self) -> PeerReport {
        let (heartbeat, rtt_us, reason) = match self.vxlan.state() {
            PathState::Up { rtt } => (
                "up",
                Some(rtt.as_micros() as u64),
                "vxlan heartbeats answered",
            ),
            PathState::Down { .. } if self.name.is_none() => (
                "down",
                None,
                "no heartbeat answers (not a weft router, e.g. a kernel VTEP: sending anyway)",
            ),
            PathState::Down { .. } => ("down", None, "vxlan heartbeats stopped (sending anyway)"),
            PathState::Unknown => ("unknown", None, "waiting for the first heartbeat answer"),
        };
        PeerReport {
            address: self.addr.to_string(),
            name: self.name.map(|n| wire::Mac(n).to_string()),
            nickname: None,
            path: "vxlan".into(),
            reason: reason.into(),
            heartbeat: heartbeat.into(),
            rtt_us,
            tx_frames: self.counters.tx_frames,
            tx_bytes: self.counters.tx_bytes,
            rx_frames: self.counters.rx_frames,
            rx_bytes: self.counters.rx_bytes,
        }
    }
}

/// All peers, found by index (ports refer to them) or by underlay IP (received datagrams).
#[derive(Debug, Default)]
pub(super) struct Peers {
    slots: Vec<Option<Peer>>,
    by_ip: HashMap<IpAddr, usize, FixedState>,
}

impl Peers {
    /// Adds a peer unless one with that IP exists; returns its index and whether it is new.
    pub(super) fn add(
        &mut self,
        addr: SocketAddr,
        local_name: [u8; 6],
        now: Instant,
    ) -> (usize, bool) {
        if let Some(&i) = self.by_ip.get(&addr.ip()) {
            return (i, false);
        }
        let peer = Peer {
            addr,
            name: None,
            vxlan: PathMonitor::new(local_name, PathMonitorConfig::default(), now),
            ports: HashMap::default(),
            counters: PeerCounters::default(),
        };
        let i = match self.slots.iter().position(Option::is_none) {
            Some(i) => {
                self.slots[i] = Some(peer);
                i
            }
            None => {
                self.slots.push(Some(peer));
                self.slots.len() - 1
            }
        };
        self.by_ip.insert(addr.ip(), i);
        (i, true)
    }

    /// Removes the peer with this IP.
    pub(super) fn remove(&mut self, ip: IpAddr) -> Option<Peer> {
        let i = self.by_ip.remove(&ip)?;
        self.slots.get_mut(i)?.take()
    }

    pub(super) fn index_of(&self, ip: IpAddr) -> Option<usize> {
        self.by_ip.get(&ip).copied()
    }

    pub(super) fn get(&self, i: usize) -> Option<&Peer> {
        self.slots.get(i)?.as_ref()
    }

    pub(super) fn get_mut(&mut self, i: usize) -> Option<&mut Peer> {
        self.slots.get_mut(i)?.as_mut()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (usize, &Peer)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.as_ref().map(|p| (i, p)))
    }

    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = (usize, &mut Peer)> {
        self.slots
            .iter_mut()
            .enumerate()
            .filter_map(|(i, p)| p.as_mut().map(|p| (i, p)))
    }
}
