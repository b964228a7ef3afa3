//! The data plane's state besides the receive buffers: the switch, ports, peers, tunnel
//! sockets, routes; and the control operations on them (ports, networks, peers, mesh
//! updates, remote endpoints).

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use foldhash::fast::FixedState;
use learning::{NetworkId, PortId};
use switch::{PortKind, Switch};
use tunnel::crypto::datagram::FramePacker;
use tunnel::crypto::session::{SessionConfig, TunnelSession};
use tunnel::path::PathPolicy;
use tunnel::{PathMonitor, PathMonitorConfig, PmtuGuard};

use super::peers::{Name, Peers, Tunnel};
use super::ports::{PortTable, RemoteSlot, Slot};
use super::vxlan_out::VxlanQueue;
use super::{KnownEndpoint, MeshUpdate, NetworkDef};
use crate::io::{UdpPort, UdpSendPool};

/// Named counters of the data plane itself (the cores count their own).
#[derive(Debug, Default)]
pub(super) struct EngineCounters {
    pub(super) named: BTreeMap<(&'static str, &'static str), u64>,
}

impl EngineCounters {
    /// Counts one event `group.name` (drops use the group "drop").
    pub(super) fn bump(&mut self, group: &'static str, name: &'static str) {
        *self.named.entry((group, name)).or_insert(0) += 1;
    }
}

/// Everything the per-frame path touches besides the receive buffers.
pub(super) struct Core {
    pub(super) switch: Switch,
    pub(super) ports: PortTable,
    pub(super) peers: Peers,
    pub(super) networks: HashMap<NetworkId, NetworkDef, FixedState>,
    pub(super) by_vni: HashMap<u32, NetworkId, FixedState>,
    pub(super) send_pool: UdpSendPool,
    /// The tunnel socket: receives on 6784 and sends from it (a stable source port keeps
    /// NAT and firewall state simple).
    pub(super) tunnel_sock: UdpPort,
    pub(super) routes: Option<Arc<mesh::RouteTable>>,
    pub(super) pmtu: PmtuGuard,
    pub(super) egress: Vec<PortId>,
    pub(super) reply: Vec<u8>,
    pub(super) icmp: Vec<u8>,
    pub(super) seg: Vec<u8>,
    /// (frame address, frame length, VNI) of what `seg` holds as VXLAN datagrams, so a
    /// flood to several peers segments a super-frame once.
    pub(super) seg_key: Option<(usize, usize, u32)>,
    pub(super) seg_stride: usize,
    pub(super) hb: Vec<u8>,
    /// Scratch for building tunnel datagrams.
    pub(super) tun: Vec<u8>,
    /// Scratch for opening a received tunnel datagram in place.
    pub(super) rx_tun: Vec<u8>,
    /// Ports with frames pending in the current batch.
    pub(super) dirty: Vec<PortId>,
    /// Peers whose tunnel packer holds frames (sealed and sent by `flush_peers`).
    pub(super) tun_dirty: Vec<usize>,
    /// Single VXLAN datagrams of the current batch (sent by `flush_peers`).
    pub(super) vxlan_out: VxlanQueue,
    /// The longest tunnel datagram the path carries: small frames are packed up to it.
    pub(super) tunnel_datagram_max: usize,
    pub(super) counters: EngineCounters,
    /// IP MTU of the VXLAN path (the overlay MTU containers get).
    pub(super) overlay_mtu: usize,
    /// IP MTU of the encrypted path.
    pub(super) tunnel_mtu: usize,
    pub(super) local_name: Name,
    pub(super) password_set: bool,
    pub(super) trusted_subnets: Vec<ipnet::IpNet>,
    pub(super) gso: bool,
    /// Set when a frame changed what the periodic work acts on (a heartbeat came in: a
    /// pong is owed, a path may have come up), so the loop runs it now rather than at the
    /// next deadline; the loop otherwise skips it between deadlines.
    pub(super) timers_now: bool,
}

impl Core {
    /// The path policy for a peer at `ip` (None: only reachable through relays).
    pub(super) fn policy_for(&self, ip: Option<IpAddr>) -> PathPolicy {
        match ip {
            Some(ip) => PathPolicy::for_peer(self.password_set, ip, &self.trusted_subnets),
            None if self.password_set => PathPolicy::EncryptedOnly,
            None => PathPolicy::for_peer(false, IpAddr::from([0, 0, 0, 0]), &[]),
        }
    }

    pub(super) fn add_network(&mut self, net: NetworkDef) {
        self.by_vni.insert(net.vni, net.id);
        let id = net.id;
        self.networks.insert(id, net);
        let peers: Vec<usize> = self.peers.iter().map(|(i, _)| i).collect();
        for pi in peers {
            self.add_remote_port(pi, id);
        }
    }

    pub(super) fn remove_network(&mut self, id: NetworkId) {
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

    /// Forgets a peer entry and everything learned through it.
    fn drop_peer(&mut self, pi: usize) {
        if let Some(peer) = self.peers.remove_index(pi) {
            for (_, port) in peer.ports {
                self.switch.remove_port(port);
                self.ports.remove(port);
            }
        }
    }

    /// A peer named on the command line (or `weft connect`): VXLAN to its address.
    pub(super) fn add_static_peer(&mut self, addr: SocketAddr, now: Instant) {
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

    pub(super) fn remove_static_peer(&mut self, addr: SocketAddr) {
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

    pub(super) fn set_endpoint(&mut self, id: PortId, ep: Option<KnownEndpoint>, now: Instant) {
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

    /// Applies what the mesh says.
    pub(super) fn mesh_update(&mut self, update: MeshUpdate, now: Instant) {
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
            } => {
                self.peer_connected(
                    name,
                    nickname,
                    addr,
                    vxlan_port,
                    tunnel_port,
                    &keys,
                    local_index,
                    remote_index,
                    now,
                );
            }
            MeshUpdate::PeerDisconnected { name } => {
                if let Some(pi) = self.peers.index_of_name(&name) {
                    if let Some(p) = self.peers.get_mut(pi) {
                        p.connected = false;
                        p.tunnel = None;
                    }
                    self.peers.clear_session_index(pi);
                    tracing::info!(peer = %wire::Mac(name), "control connection closed");
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
                        self.withdraw_endpoints(pi, &withdrawn, now);
                    } else {
                        self.drop_peer(pi);
                    }
                    tracing::info!(peer = %wire::Mac(name), "peer left the mesh");
                }
            }
            MeshUpdate::Routes(routes) => {
                self.routes = Some(routes);
                self.refresh_selectors(now);
            }
            MeshUpdate::Endpoints { name, endpoints } => {
                self.remote_endpoints(name, &endpoints, now)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn peer_connected(
        &mut self,
        name: Name,
        nickname: String,
        addr: IpAddr,
        vxlan_port: u16,
        tunnel_port: u16,
        keys: &tunnel::crypto::session::TunnelKeys,
        local_index: u32,
        remote_index: u32,
        now: Instant,
    ) {
        // One entry per router: merge the entry known by address (command line) with the
        // one known by name (gossip).
        let vxlan_addr = SocketAddr::new(addr, vxlan_port);
        let by_ip = self.peers.index_of_ip(addr);
        let by_name = self.peers.index_of_name(&name);
        let pi = match (by_ip, by_name) {
            (Some(i), Some(j)) if i != j => {
                self.drop_peer(j);
                i
            }
            (Some(i), _) => i,
            (None, Some(j)) => j,
            (None, None) => {
                let policy = self.policy_for(Some(addr));
                self.peers
                    .by_name_or_new(name, self.local_name, policy, now)
                    .0
            }
        };
        if let Some(stale) = self.peers.set_name(pi, name) {
            for (_, port) in stale.ports {
                self.switch.remove_port(port);
                self.ports.remove(port);
            }
        }
        if let Some(stale) = self.peers.set_addr(pi, vxlan_addr) {
            for (_, port) in stale.ports {
                self.switch.remove_port(port);
                self.ports.remove(port);
            }
        }
        let policy = self.policy_for(Some(addr));
        let session = TunnelSession::new(
            keys,
            local_index,
            remote_index,
            SessionConfig::default(),
            now,
        );
        let local = self.local_name;
        let Some(p) = self.peers.get_mut(pi) else {
            return;
        };
        p.nickname = Some(nickname);
        p.connected = true;
        p.selector.set_policy(now, policy);
        match session {
            Ok(session) => {
                p.tunnel = Some(Tunnel {
                    session,
                    addr: SocketAddr::new(addr, tunnel_port),
                    monitor: PathMonitor::new(local, PathMonitorConfig::default(), now),
                    packer: FramePacker::default(),
                });
                self.peers.set_session_index(pi, local_index);
            }
            Err(e) => {
                tracing::error!(peer = %wire::Mac(name), "cannot start the tunnel session: {e}")
            }
        }
        self.add_remote_ports(pi);
        tracing::info!(peer = %wire::Mac(name), %addr, "peer connected");
    }

    /// Replaces a peer's announced endpoints: pins their MACs to its ports and answers ARP
    /// for their IPs, withdrawing the ones it no longer announces.
    fn remote_endpoints(&mut self, name: Name, endpoints: &[mesh::Endpoint], now: Instant) {
        let Some(pi) = self.peers.index_of_name(&name) else {
            return;
        };
        let mut fresh = Vec::new();
        for ep in endpoints {
            let Some(&net) = self.by_vni.get(&ep.vni) else {
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
