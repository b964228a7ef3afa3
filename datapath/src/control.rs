//! The control operations on the core: networks, local ports, command-line peers, mesh
//! updates and remote endpoints. None of them runs per frame.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use learning::{NetworkId, PortId};
use mesh::PeerName;
use switch::PortKind;
use tunnel::crypto::datagram::FramePacker;
use tunnel::crypto::session::{SessionConfig, TunnelKeys, TunnelSession};
use tunnel::{PathMonitor, PathMonitorConfig, Vni};

use crate::boundary::{KnownEndpoint, LocalPortDef, MeshUpdate, NetworkDef};
use crate::core::State;
use crate::peers::Tunnel;
use crate::ports::{LocalSlot, PortCounters, RemoteSlot, Slot};

/// Frames one local port may have pending in a batch before they are sent.
const PENDING_CAPACITY: usize = 64;

/// What a mesh peer's control connection brought, for [`State::peer_connected`].
struct Connected<'a> {
    name: PeerName,
    nickname: String,
    addr: IpAddr,
    vxlan_port: u16,
    tunnel_port: u16,
    keys: &'a TunnelKeys,
    local_index: u32,
    remote_index: u32,
}

impl State {
    pub(crate) fn add_network(&mut self, net: NetworkDef) {
        self.by_vni.insert(net.vni, net.id);
        let id = net.id;
        self.networks.insert(id, net);
        let peers: Vec<usize> = self.peers.iter().map(|(i, _)| i).collect();
        for pi in peers {
            self.add_remote_port(pi, id);
        }
    }

    pub(crate) fn remove_network(&mut self, id: NetworkId) {
        if let Some(net) = self.networks.remove(&id) {
            self.by_vni.remove(&net.vni);
        }
        let mut gone = Vec::new();
        for (_, p) in self.peers.iter_mut() {
            if let Some(port) = p.ports.remove(&id) {
                gone.push(port);
            }
        }
        for port in gone {
            self.switch.remove_port(port);
            self.ports.remove(port);
        }
    }

    pub(crate) fn add_local_port(&mut self, port: LocalPortDef, now: Instant) -> PortId {
        let LocalPortDef {
            name,
            kind,
            network,
            endpoint,
        } = port;
        let id = self.ports.insert(Slot::Local(LocalSlot {
            name,
            kind,
            network,
            endpoint: None,
            counters: PortCounters::default(),
            pending: Vec::with_capacity(PENDING_CAPACITY),
        }));
        self.switch.add_port(id, network, PortKind::Local);
        self.set_endpoint(id, endpoint, now);
        id
    }

    pub(crate) fn remove_local_port(&mut self, id: PortId) {
        if self.ports.local(id).is_some() {
            self.switch.remove_port(id);
            self.ports.remove(id);
        }
    }

    fn add_remote_port(&mut self, pi: usize, net: NetworkId) {
        let Some(vni) = self.networks.get(&net).map(|n| n.vni) else {
            return;
        };
        let Some(peer) = self.peers.get(pi) else {
            return;
        };
        if peer.ports.contains_key(&net) {
            return;
        }
        let id = self
            .ports
            .insert(Slot::Remote(RemoteSlot { peer: pi, vni }));
        self.switch.add_port(id, net, PortKind::Remote);
        if let Some(peer) = self.peers.get_mut(pi) {
            peer.ports.insert(net, id);
        }
    }

    fn add_remote_ports(&mut self, pi: usize) {
        let nets: Vec<NetworkId> = self.networks.keys().copied().collect();
        for n in nets {
            self.add_remote_port(pi, n);
        }
    }

    /// Removes the remote ports of a peer entry that is gone.
    fn remove_ports_of(&mut self, peer: crate::peers::Peer) {
        for (_, port) in peer.ports {
            self.switch.remove_port(port);
            self.ports.remove(port);
        }
    }

    /// Forgets a peer entry and everything learned through it.
    fn drop_peer(&mut self, pi: usize) {
        if let Some(peer) = self.peers.remove_index(pi) {
            self.remove_ports_of(peer);
        }
    }

    pub(crate) fn add_static_peer(&mut self, addr: SocketAddr, now: Instant) {
        let policy = self.policy_for(Some(addr.ip()));
        let (pi, new) = self
            .peers
            .by_addr_or_new(addr, self.local_name, policy, now);
        if let Some(p) = self.peers.get_mut(pi) {
            p.is_static = true;
        }
        if new {
            tracing::info!(%addr, "peer added");
            self.add_remote_ports(pi);
        }
    }

    pub(crate) fn remove_static_peer(&mut self, addr: SocketAddr) {
        let Some(pi) = self.peers.index_of_ip(addr.ip()) else {
            return;
        };
        let keep = match self.peers.get_mut(pi) {
            Some(p) => {
                p.is_static = false;
                p.connected || p.name.is_some()
            }
            None => true,
        };
        if !keep {
            self.drop_peer(pi);
            tracing::info!(%addr, "peer removed");
        }
    }

    pub(crate) fn set_endpoint(&mut self, id: PortId, ep: Option<KnownEndpoint>, now: Instant) {
        let Some(slot) = self.ports.local_mut(id) else {
            return;
        };
        let old = std::mem::replace(&mut slot.endpoint, ep.clone());
        if let Some(old) = old {
            let _ = self.switch.remove_endpoint(now, id, old.mac);
        }
        if let Some(ep) = ep
            && let Err(e) = self.switch.add_endpoint(now, id, ep.mac, &ep.ips)
        {
            tracing::warn!("cannot pin endpoint {}: {e}", ep.mac);
        }
    }

    pub(crate) fn mesh_update(&mut self, update: MeshUpdate, now: Instant) {
        match update {
            MeshUpdate::PeerKnown { name, nickname } => {
                let policy = self.policy_for(None);
                let (pi, new) = self
                    .peers
                    .by_name_or_new(name, self.local_name, policy, now);
                if let Some(p) = self.peers.get_mut(pi) {
                    p.nickname = Some(nickname);
                }
                if new {
                    self.add_remote_ports(pi);
                }
            }
            MeshUpdate::PeerConnected {
                name,
                nickname,
                addr,
                vxlan_port,
                tunnel_port,
                keys,
                local_index,
                remote_index,
            } => self.peer_connected(
                Connected {
                    name,
                    nickname,
                    addr,
                    vxlan_port,
                    tunnel_port,
                    keys: &keys,
                    local_index,
                    remote_index,
                },
                now,
            ),
            MeshUpdate::PeerDisconnected { name } => {
                if let Some(pi) = self.peers.index_of_name(&name) {
                    if let Some(p) = self.peers.get_mut(pi) {
                        p.connected = false;
                        p.tunnel = None;
                    }
                    self.peers.clear_session_index(pi);
                    tracing::info!(peer = %name, "control connection closed");
                }
            }
            MeshUpdate::PeerRemoved { name } => {
                if let Some(pi) = self.peers.index_of_name(&name) {
                    let is_static = self.peers.get(pi).is_some_and(|p| p.is_static);
                    if is_static {
                        // Keep the command-line peer's VXLAN path; forget what the mesh taught.
                        let mut withdrawn = Vec::new();
                        if let Some(p) = self.peers.get_mut(pi) {
                            p.connected = false;
                            p.tunnel = None;
                            withdrawn = std::mem::take(&mut p.endpoints);
                        }
                        self.peers.clear_session_index(pi);
                        self.withdraw_endpoints(pi, &withdrawn, now);
                    } else {
                        self.drop_peer(pi);
                    }
                    tracing::info!(peer = %name, "peer left the mesh");
                }
            }
            MeshUpdate::Routes(routes) => {
                self.routes = Some(routes);
                self.refresh_selectors(now);
            }
            MeshUpdate::Endpoints { name, endpoints } => {
                self.remote_endpoints(name, &endpoints, now);
            }
        }
    }

    fn peer_connected(&mut self, c: Connected<'_>, now: Instant) {
        // One entry per router: merge the entry known by address (command line) with the
        // one known by name (gossip).
        let vxlan_addr = SocketAddr::new(c.addr, c.vxlan_port);
        let by_ip = self.peers.index_of_ip(c.addr);
        let by_name = self.peers.index_of_name(&c.name);
        let pi = match (by_ip, by_name) {
            (Some(i), Some(j)) if i != j => {
                self.drop_peer(j);
                i
            }
            (Some(i), _) => i,
            (None, Some(j)) => j,
            (None, None) => {
                let policy = self.policy_for(Some(c.addr));
                self.peers
                    .by_name_or_new(c.name, self.local_name, policy, now)
                    .0
            }
        };
        if let Some(stale) = self.peers.set_name(pi, c.name) {
            self.remove_ports_of(stale);
        }
        if let Some(stale) = self.peers.set_addr(pi, vxlan_addr) {
            self.remove_ports_of(stale);
        }
        let policy = self.policy_for(Some(c.addr));
        let session = TunnelSession::new(
            c.keys,
            c.local_index,
            c.remote_index,
            SessionConfig::default(),
            now,
        );
        let local = self.local_name;
        let Some(p) = self.peers.get_mut(pi) else {
            return;
        };
        p.nickname = Some(c.nickname);
        p.connected = true;
        p.selector.set_policy(now, policy);
        match session {
            Ok(session) => {
                p.tunnel = Some(Tunnel {
                    session,
                    addr: SocketAddr::new(c.addr, c.tunnel_port),
                    monitor: PathMonitor::new(local.0, PathMonitorConfig::default(), now),
                    packer: FramePacker::default(),
                });
                self.peers.set_session_index(pi, c.local_index);
            }
            Err(e) => {
                tracing::error!(peer = %c.name, "cannot start the tunnel session: {e}");
            }
        }
        self.add_remote_ports(pi);
        tracing::info!(peer = %c.name, addr = %c.addr, "peer connected");
    }

    /// Replaces a peer's announced endpoints: pins their MACs to its ports and answers ARP
    /// for their IPs, withdrawing the ones it no longer announces. An endpoint whose VNI
    /// does not fit 24 bits names no network here and is skipped.
    fn remote_endpoints(&mut self, name: PeerName, endpoints: &[mesh::Endpoint], now: Instant) {
        let Some(pi) = self.peers.index_of_name(&name) else {
            return;
        };
        let mut fresh = Vec::new();
        for ep in endpoints {
            let Some(&net) = Vni::new(ep.vni).and_then(|v| self.by_vni.get(&v)) else {
                continue;
            };
            let Some(port) = self.peers.get(pi).and_then(|p| p.ports.get(&net).copied()) else {
                continue;
            };
            let ips: Vec<std::net::Ipv4Addr> = ep
                .ips
                .iter()
                .filter_map(|ip| match ip {
                    IpAddr::V4(v) => Some(*v),
                    IpAddr::V6(_) => None,
                })
                .collect();
            let mac = wire::Mac(ep.mac);
            if let Err(e) = self.switch.add_endpoint(now, port, mac, &ips) {
                tracing::debug!("cannot pin remote endpoint {mac}: {e}");
                continue;
            }
            fresh.push((net, mac));
        }
        let old = self
            .peers
            .get_mut(pi)
            .map(|p| std::mem::replace(&mut p.endpoints, fresh.clone()))
            .unwrap_or_default();
        let gone: Vec<(NetworkId, wire::Mac)> =
            old.into_iter().filter(|e| !fresh.contains(e)).collect();
        self.withdraw_endpoints(pi, &gone, now);
    }

    fn withdraw_endpoints(&mut self, pi: usize, gone: &[(NetworkId, wire::Mac)], now: Instant) {
        for (net, mac) in gone {
            if let Some(port) = self.peers.get(pi).and_then(|p| p.ports.get(net).copied()) {
                let _ = self.switch.remove_endpoint(now, port, *mac);
            }
        }
    }
}
