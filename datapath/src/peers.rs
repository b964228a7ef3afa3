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
use mesh::PeerName;
use tunnel::crypto::datagram::FramePacker;
use tunnel::crypto::session::TunnelSession;
use tunnel::path::{Path, PathPolicy, PathSelector, PathSelectorConfig};
use tunnel::{PathMonitor, PathMonitorConfig, PathState};

use crate::status::{PathWhy, PeerCounters, PeerStatus};

/// The encrypted tunnel to a directly connected weft router.
#[derive(Debug)]
pub(crate) struct Tunnel {
    pub(crate) session: TunnelSession,
    pub(crate) addr: SocketAddr,
    pub(crate) monitor: PathMonitor,
    /// Small frames waiting to share one datagram until the current batch ends.
    pub(crate) packer: FramePacker,
}

/// One peer (see the module docs).
#[derive(Debug)]
pub(crate) struct Peer {
    pub(crate) name: Option<PeerName>,
    pub(crate) nickname: Option<String>,
    /// Its underlay address and VXLAN port, when a direct path is possible.
    pub(crate) vxlan_addr: Option<SocketAddr>,
    /// Named on the command line: VXLAN is used whatever the mesh says (a kernel VTEP has
    /// no mesh).
    pub(crate) is_static: bool,
    /// A mesh control connection to it is up.
    pub(crate) connected: bool,
    pub(crate) vxlan: PathMonitor,
    pub(crate) tunnel: Option<Tunnel>,
    pub(crate) selector: PathSelector,
    /// Its virtual port per network.
    pub(crate) ports: HashMap<NetworkId, PortId, FixedState>,
    pub(crate) counters: PeerCounters,
    /// Endpoints it announced, per network, so a new announcement can withdraw old ones.
    pub(crate) endpoints: Vec<(NetworkId, wire::Mac)>,
    /// The neighbour its frames are relayed through while it has no direct path.
    pub(crate) relay: Option<PeerName>,
}

impl Peer {
    fn new(local_name: PeerName, policy: PathPolicy, now: Instant) -> Self {
        Self {
            name: None,
            nickname: None,
            vxlan_addr: None,
            is_static: false,
            connected: false,
            vxlan: PathMonitor::new(local_name.0, PathMonitorConfig::default(), now),
            tunnel: None,
            selector: PathSelector::new(policy, PathSelectorConfig::default(), now),
            ports: HashMap::default(),
            counters: PeerCounters::default(),
            endpoints: Vec::new(),
            relay: None,
        }
    }

    /// The path frames to this peer take now.
    pub(crate) fn path(&self) -> Path {
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
    pub(crate) fn vxlan_allowed(&self) -> bool {
        matches!(self.selector.policy(), PathPolicy::CleartextAllowed(_))
    }

    /// Whether VXLAN can carry frames to this peer at all (it has an address, and
    /// cleartext is allowed): only then is the path probed by heartbeats.
    pub(crate) fn vxlan_usable(&self) -> bool {
        self.vxlan_addr.is_some() && self.vxlan_allowed()
    }

    /// Whether neither direct path (VXLAN where allowed, the tunnel) works now.
    pub(crate) fn direct_paths_down(&self) -> bool {
        let down = |s: PathState| matches!(s, PathState::Down { .. });
        let vxlan = !self.vxlan_usable() || down(self.vxlan.state());
        let tunnel = self.tunnel.as_ref().is_none_or(|t| down(t.monitor.state()));
        vxlan && tunnel
    }

    /// Feeds the monitors' verdicts to the selector.
    pub(crate) fn update_selector(&mut self, now: Instant, relay_route: bool) {
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

    /// Its status; `peers` names the relay of a relayed peer.
    pub(crate) fn status(&self, peers: &Peers) -> PeerStatus {
        let why = if self.is_static && !self.connected && !self.vxlan_allowed() {
            PathWhy::NoCleartext
        } else if self.is_static && !self.connected {
            PathWhy::StaticVxlan {
                heartbeat: self.vxlan.state(),
                named: self.name.is_some(),
            }
        } else {
            PathWhy::Chosen(self.selector.choice())
        };
        let via = self.relay.filter(|_| self.path() == Path::Relayed);
        let via_nickname = via
            .and_then(|r| peers.index_of_name(&r))
            .and_then(|i| peers.get(i))
            .and_then(|p| p.nickname.clone());
        PeerStatus {
            addr: self.vxlan_addr,
            name: self.name,
            nickname: self.nickname.clone(),
            path: self.path(),
            why,
            via,
            via_nickname,
            heartbeat: self.vxlan.state(),
            tunnel_heartbeat: self.tunnel.as_ref().map(|t| t.monitor.state()),
            counters: self.counters,
        }
    }
}

/// All peers, found by index (ports refer to them), underlay IP (received VXLAN), name
/// (mesh updates, tunnel frames) or tunnel session index (received tunnel datagrams).
#[derive(Debug, Default)]
pub(crate) struct Peers {
    slots: Vec<Option<Peer>>,
    by_ip: HashMap<IpAddr, usize, FixedState>,
    by_name: HashMap<PeerName, usize, FixedState>,
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
    pub(crate) fn by_addr_or_new(
        &mut self,
        addr: SocketAddr,
        local: PeerName,
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
    pub(crate) fn by_name_or_new(
        &mut self,
        name: PeerName,
        local: PeerName,
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
    /// named one is dropped and returned so the caller can remove its ports).
    pub(crate) fn set_name(&mut self, i: usize, name: PeerName) -> Option<Peer> {
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

    /// Learns the name of the peer at index `i` from its heartbeats (a command-line peer
    /// that turns out to be a weft router). It is found by that name too unless the mesh
    /// already made an entry for it, which its `PeerConnected` merges with this one.
    pub(crate) fn learn_name(&mut self, i: usize, name: PeerName) {
        if let Some(p) = self.get_mut(i)
            && p.name.is_none()
        {
            p.name = Some(name);
            self.by_name.entry(name).or_insert(i);
        }
    }

    /// Gives peer `i` an underlay address (a mesh peer that connected directly).
    pub(crate) fn set_addr(&mut self, i: usize, addr: SocketAddr) -> Option<Peer> {
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
    pub(crate) fn set_session_index(&mut self, i: usize, index: u32) {
        self.clear_session_index(i);
        self.by_session.insert(index, i);
    }

    /// Forgets peer `i`'s tunnel session index (its control connection closed).
    pub(crate) fn clear_session_index(&mut self, i: usize) {
        self.by_session.retain(|_, &mut j| j != i);
    }

    /// Removes peer `i` and every index pointing at it.
    pub(crate) fn remove_index(&mut self, i: usize) -> Option<Peer> {
        let peer = self.slots.get_mut(i)?.take()?;
        self.by_ip.retain(|_, &mut j| j != i);
        self.by_name.retain(|_, &mut j| j != i);
        self.by_session.retain(|_, &mut j| j != i);
        Some(peer)
    }

    pub(crate) fn index_of_ip(&self, ip: IpAddr) -> Option<usize> {
        self.by_ip.get(&ip).copied()
    }

    pub(crate) fn index_of_name(&self, name: &PeerName) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    pub(crate) fn index_of_session(&self, index: u32) -> Option<usize> {
        self.by_session.get(&index).copied()
    }

    pub(crate) fn get(&self, i: usize) -> Option<&Peer> {
        self.slots.get(i)?.as_ref()
    }

    pub(crate) fn get_mut(&mut self, i: usize) -> Option<&mut Peer> {
        self.slots.get_mut(i)?.as_mut()
    }

    /// Every slot index, for walks that need the whole table between steps.
    pub(crate) fn indices(&self) -> std::ops::Range<usize> {
        0..self.slots.len()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (usize, &Peer)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.as_ref().map(|p| (i, p)))
    }

    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (usize, &mut Peer)> {
        self.slots
            .iter_mut()
            .enumerate()
            .filter_map(|(i, p)| p.as_mut().map(|p| (i, p)))
    }
}
