//! The peers the data plane carries frames to, and how each is reached.
//!
//! A peer is another weft router or a plain VXLAN endpoint (a kernel VTEP). It may be
//! known three ways, merged into one entry: named on the command line (`static`: an
//! address, VXLAN always allowed), connected over the mesh (a direct neighbour: a name,
//! an address, tunnel keys), or only gossiped about (a name, reachable through relays).
//! Each entry keeps a heartbeat monitor per direct path and a [`PathSelector`] that
//! picks VXLAN, the encrypted tunnel or a relay from their verdicts and the policy.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use foldhash::fast::FixedState;
use learning::{NetworkId, PortId};
use tunnel::crypto::datagram::FramePacker;
use tunnel::crypto::session::TunnelSession;
use tunnel::path::{Path, PathPolicy, PathSelector, PathSelectorConfig};
use tunnel::{PathMonitor, PathMonitorConfig, PathState};

use crate::api::report::PeerReport;

/// A peer name (the 6 bytes of `mesh::PeerName`).
pub(crate) type Name = [u8; 6];

/// Traffic counters of one peer.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct PeerCounters {
    pub(super) tx_frames: u64,
    pub(super) tx_bytes: u64,
    pub(super) rx_frames: u64,
    pub(super) rx_bytes: u64,
}

/// The encrypted tunnel to a directly connected weft router.
#[derive(Debug)]
pub(super) struct Tunnel {
    pub(super) session: TunnelSession,
    pub(super) addr: SocketAddr,
    pub(super) monitor: PathMonitor,
    /// Small frames waiting to share one datagram until the current batch ends.
    pub(super) packer: FramePacker,
}

/// One peer (see the module docs).
#[derive(Debug)]
pub(super) struct Peer {
    pub(super) name: Option<Name>,
    pub(super) nickname: Option<String>,
    /// Its underlay address and VXLAN port, when a direct path is possible.
    pub(super) vxlan_addr: Option<SocketAddr>,
    /// Named on the command line: VXLAN is used whatever the mesh says (a kernel VTEP has
    /// no mesh).
    pub(super) is_static: bool,
    /// A mesh control connection to it is up.
    pub(super) connected: bool,
    pub(super) vxlan: PathMonitor,
    pub(super) tunnel: Option<Tunnel>,
    pub(super) selector: PathSelector,
    /// Its virtual port per network.
    pub(super) ports: HashMap<NetworkId, PortId, FixedState>,
    pub(super) counters: PeerCounters,
    /// Endpoints it announced, per network, so a new announcement can withdraw old ones.
    pub(super) endpoints: Vec<(NetworkId, wire::Mac)>,
    /// The neighbour its frames are relayed through while it has no direct path.
    pub(super) relay: Option<Name>,
}

impl Peer {
    fn new(local_name: Name, policy: PathPolicy, now: Instant) -> Self {
        Self {
            name: None,
            nickname: None,
            vxlan_addr: None,
            is_static: false,
            connected: false,
            vxlan: PathMonitor::new(local_name, PathMonitorConfig::default(), now),
            tunnel: None,
            selector: PathSelector::new(policy, PathSelectorConfig::default(), now),
            ports: HashMap::default(),
            counters: PeerCounters::default(),
            endpoints: Vec::new(),
            relay: None,
        }
    }

    /// The path frames to this peer take now.
    pub(super) fn path(&self) -> Path {
        if self.is_static && !self.connected {
            // A command-line peer without a mesh connection (a kernel VTEP, or a weft router
            // whose control connection is down): VXLAN is all it has — unless a password
            // forbids cleartext to it.
            return if self.vxlan_usable() {
                Path::Vxlan
            } else {
                Path::None
            };
        }
        self.selector.choice().path
    }

    /// Whether cleartext VXLAN may be exchanged with this peer at all (no password, or a
    /// trusted subnet). Otherwise VXLAN from it is dropped and none is sent to it.
    pub(super) fn vxlan_allowed(&self) -> bool {
        matches!(self.selector.policy(), PathPolicy::CleartextAllowed(_))
    }

    /// Whether VXLAN can carry frames to this peer at all (it has an address, and
    /// cleartext is allowed): only then is the path probed by heartbeats, and only then
    /// may the loop wait on its monitor's deadline (an unprobed monitor's deadline stays
    /// in the past, and waiting on it kept a password router's thread spinning).
    pub(super) fn vxlan_usable(&self) -> bool {
        self.vxlan_addr.is_some() && self.vxlan_allowed()
    }

    /// Whether neither direct path (VXLAN where allowed, the tunnel) works now.
    pub(super) fn direct_paths_down(&self) -> bool {
        let down = |s: PathState| matches!(s, PathState::Down { .. });
        let vxlan = !self.vxlan_usable() || down(self.vxlan.state());
        let tunnel = self.tunnel.as_ref().is_none_or(|t| down(t.monitor.state()));
        vxlan && tunnel
    }

    /// Feeds the monitors' verdicts to the selector.
    pub(super) fn update_selector(&mut self, now: Instant, relay_route: bool) {
        let vxlan = if self.vxlan_addr.is_some() {
            self.vxlan.state()
        } else {
            PathState::Down { since: now }
        };
        let tunnel = self
            .tunnel
            .as_ref()
            .map_or(PathState::Down { since: now }, |t| t.monitor.state());
        self.selector.handle_update(now, vxlan, tunnel, relay_route);
    }

    /// Its line in `weft status`; `peers` names the relay of a relayed peer.
    pub(super) fn report(&self, peers: &Peers) -> PeerReport {
        let (heartbeat, rtt_us) = match self.vxlan.state() {
            PathState::Up { rtt } => ("up", Some(rtt.as_micros() as u64)),
            PathState::Down { .. } => ("down", None),
            PathState::Unknown => ("unknown", None),
        };
        let choice = self.selector.choice();
        let (path, reason) = if self.is_static && !self.connected && !self.vxlan_allowed() {
            let reason = "password set and subnet not trusted: no cleartext; waiting for an authenticated mesh connection";
            (self.path().name().to_string(), reason.to_string())
        } else if self.is_static && !self.connected {
            let reason = match self.vxlan.state() {
                PathState::Up { .. } => "vxlan heartbeats answered (no mesh connection)",
                PathState::Down { .. } if self.name.is_none() => {
                    "no heartbeat answers (not a weft router, e.g. a kernel VTEP: sending anyway)"
                }
                PathState::Down { .. } => "vxlan heartbeats stopped (sending anyway)",
                PathState::Unknown => "waiting for the first heartbeat answer",
            };
            (self.path().name().to_string(), reason.to_string())
        } else {
            let mut reason = choice.reason.to_string();
            if choice.path == Path::Encrypted && !choice.authenticated {
                reason.push_str("; unauthenticated keys: stops passive capture only");
            }
            (choice.path.name().to_string(), reason)
        };
        let relay = self.relay.filter(|_| self.path() == Path::Relayed);
        let via_nickname = relay
            .and_then(|r| peers.index_of_name(&r))
            .and_then(|i| peers.get(i))
            .and_then(|p| p.nickname.clone());
        PeerReport {
            address: self
                .vxlan_addr
                .map(|a| a.to_string())
                .unwrap_or_else(|| "-".into()),
            name: self.name.map(|n| wire::Mac(n).to_string()),
            nickname: self.nickname.clone(),
            path,
            reason,
            via: relay.map(|r| wire::Mac(r).to_string()),
            via_nickname,
            heartbeat: heartbeat.into(),
            rtt_us,
            tx_frames: self.counters.tx_frames,
            tx_bytes: self.counters.tx_bytes,
            rx_frames: self.counters.rx_frames,
            rx_bytes: self.counters.rx_bytes,
        }
    }
}

/// All peers, found by index (ports refer to them), underlay IP (received VXLAN), name
/// (mesh updates, tunnel frames) or tunnel session index (received tunnel datagrams).
#[derive(Debug, Default)]
pub(super) struct Peers {
    slots: Vec<Option<Peer>>,
    by_ip: HashMap<IpAddr, usize, FixedState>,
    by_name: HashMap<Name, usize, FixedState>,
    by_session: HashMap<u32, usize, FixedState>,
}

impl Peers {
    fn insert(&mut self, peer: Peer) -> usize {
        match self.slots.iter().position(Option::is_none) {
            Some(i) => {
                self.slots[i] = Some(peer);
                i
            }
            None => {
                self.slots.push(Some(peer));
                self.slots.len() - 1
            }
        }
    }

    /// The peer at this underlay IP, created if new; true when created.
    pub(super) fn by_addr_or_new(
        &mut self,
        addr: SocketAddr,
        local: Name,
        policy: PathPolicy,
        now: Instant,
    ) -> (usize, bool) {
        if let Some(&i) = self.by_ip.get(&addr.ip()) {
            return (i, false);
        }
        let mut peer = Peer::new(local, policy, now);
        peer.vxlan_addr = Some(addr);
        let i = self.insert(peer);
        self.by_ip.insert(addr.ip(), i);
        (i, true)
    }

    /// The peer with this name, created if new; true when created.
    pub(super) fn by_name_or_new(
        &mut self,
        name: Name,
        local: Name,
        policy: PathPolicy,
        now: Instant,
    ) -> (usize, bool) {
        if let Some(&i) = self.by_name.get(&name) {
            return (i, false);
        }
        let mut peer = Peer::new(local, policy, now);
        peer.name = Some(name);
        let i = self.insert(peer);
        self.by_name.insert(name, i);
        (i, true)
    }

    /// Names peer `i` (merging the entries if another one already has the name: the
    /// named one is dropped and its index returned so the caller can move its ports).
    pub(super) fn set_name(&mut self, i: usize, name: Name) -> Option<Peer> {
        let other = match self.by_name.get(&name) {
            Some(&j) if j != i => self.remove_index(j),
            _ => None,
        };
        if let Some(p) = self.get_mut(i)
            && let Some(old) = p.name.replace(name)
            && old != name
        {
            self.by_name.remove(&old);
        }
        self.by_name.insert(name, i);
        other
    }

    /// Gives peer `i` an underlay address (a mesh peer that connected directly).
    pub(super) fn set_addr(&mut self, i: usize, addr: SocketAddr) -> Option<Peer> {
        let other = match self.by_ip.get(&addr.ip()) {
            Some(&j) if j != i => self.remove_index(j),
            _ => None,
        };
        if let Some(p) = self.get_mut(i)
            && let Some(old) = p.vxlan_addr.replace(addr)
            && old.ip() != addr.ip()
        {
            self.by_ip.remove(&old.ip());
        }
        self.by_ip.insert(addr.ip(), i);
        other
    }

    /// Registers the tunnel session index datagrams to us from peer `i` carry.
    pub(super) fn set_session_index(&mut self, i: usize, index: u32) {
        self.clear_session_index(i);
        self.by_session.insert(index, i);
    }

    /// Forgets peer `i`'s tunnel session index (its control connection closed).
    pub(super) fn clear_session_index(&mut self, i: usize) {
        self.by_session.retain(|_, &mut j| j != i);
    }

    /// Removes peer `i` and every index pointing at it.
    pub(super) fn remove_index(&mut self, i: usize) -> Option<Peer> {
        let peer = self.slots.get_mut(i)?.take()?;
        self.by_ip.retain(|_, &mut j| j != i);
        self.by_name.retain(|_, &mut j| j != i);
        self.by_session.retain(|_, &mut j| j != i);
        Some(peer)
    }

    pub(super) fn index_of_ip(&self, ip: IpAddr) -> Option<usize> {
        self.by_ip.get(&ip).copied()
    }

    pub(super) fn index_of_name(&self, name: &Name) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    pub(super) fn index_of_session(&self, index: u32) -> Option<usize> {
        self.by_session.get(&index).copied()
    }

    pub(super) fn get(&self, i: usize) -> Option<&Peer> {
        self.slots.get(i)?.as_ref()
    }

    pub(super) fn get_mut(&mut self, i: usize) -> Option<&mut Peer> {
        self.slots.get_mut(i)?.as_mut()
    }

    /// Every slot index, for walks that need the whole table between steps.
    pub(super) fn indices(&self) -> std::ops::Range<usize> {
        0..self.slots.len()
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
