//! A deterministic simulator of several routers' data-plane cores over a simulated
//! underlay, with simulated containers on their local ports. No root, no sockets, no
//! clock: time is the simulator's, randomness comes from one seed, and a run with the
//! same seed and the same calls produces the same datagrams in the same order.
//!
//! - Routers get names `02:00:00:00:00:0N` and underlay addresses `192.0.2.N`; a core's
//!   VXLAN send socket `i` sends from port `40000 + i`, its tunnel socket from 6784.
//! - The control plane is played by the simulator: [`Sim::connect`] hands both ends the
//!   `PeerConnected` a finished handshake would (with test keys), [`Sim::publish_routes`]
//!   gossips the topology of the control connections and the routes every router
//!   computes from it, [`Sim::publish_endpoints`] gossips the containers.
//! - Links are directed pairs of routers with their own loss, delay, jitter (which
//!   reorders) and blocked UDP ports; blocking UDP leaves the control connections up, as
//!   a firewall between two hosts that lets TCP through would.
//! - Each router's [`Sink`] records every transmit: frames to local ports land in the
//!   port's [`Host`] (with the batch they came in), datagrams go on the wire.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use learning::{NetworkId, PortId};
use mesh::protocol::{ConnectionRecord, PeerRecord};
use mesh::topology::Topology;
use mesh::{Nickname, PeerName, RouteTable};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tunnel::crypto::session::TunnelKeys;
use tunnel::{PathMtus, Underlay, Vni};
use wire::{Mac, VnetFrame};

use crate::boundary::{
    CoreConfig, KnownEndpoint, LocalPortDef, LocalPortKind, MeshUpdate, NetworkDef,
};
use crate::core::Core;
use crate::events::Event;
use crate::status::Status;
use crate::transmit::{Sink, Transmit, UdpSource};

/// The VXLAN port every simulated router listens on.
pub const VXLAN_PORT: u16 = tunnel::vxlan::DEFAULT_PORT;
/// The tunnel port every simulated router listens on.
pub const TUNNEL_PORT: u16 = tunnel::crypto::datagram::DEFAULT_PORT;
/// The network every router has (VNI 1).
pub const NETWORK: NetworkId = NetworkId(1);
/// Its VNI.
pub const VNI: u32 = 1;
/// Most turns the simulator takes at one instant before it calls a core busy-looping.
const MAX_TURNS_AT_ONCE: usize = 10_000;

/// How routers are set up.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// A mesh password is set on every router.
    pub password: bool,
    /// Underlay subnets trusted with cleartext VXLAN despite the password.
    pub trusted_subnets: Vec<ipnet::IpNet>,
    /// The underlay MTU.
    pub underlay_mtu: usize,
}

impl Default for SimConfig {
    /// No password, a 1500-byte underlay.
    fn default() -> Self {
        Self {
            password: false,
            trusted_subnets: Vec::new(),
            underlay_mtu: 1500,
        }
    }
}

/// A directed link's behaviour.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Link {
    /// Probability that a datagram is lost.
    pub loss: f64,
    /// One-way delay.
    pub delay: Duration,
    /// Extra delay drawn uniformly from `0..=jitter` per datagram: datagrams overtake
    /// each other.
    pub jitter: Duration,
    /// Destination UDP ports whose datagrams never arrive.
    pub blocked: BTreeSet<u16>,
}

/// A frame a local port was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// Its virtio header.
    pub vnet: [u8; wire::vnet::LEN],
    /// The frame.
    pub frame: Vec<u8>,
    /// The transmit it came in: frames of one transmit share a number.
    pub transmit: u64,
}

/// A simulated container on a local port.
#[derive(Debug, Clone)]
pub struct Host {
    /// Its port on its router.
    pub port: PortId,
    /// Its MAC.
    pub mac: Mac,
    /// Its IPv4 address.
    pub ip: Ipv4Addr,
    /// What the router wrote to its port, in order.
    pub received: Vec<Received>,
}

/// A datagram on the simulated wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// Source address.
    pub from: SocketAddr,
    /// Destination address.
    pub to: SocketAddr,
    /// The UDP payload.
    pub payload: Vec<u8>,
}

/// What a router's [`Sink`] saw.
#[derive(Debug)]
pub struct Wire {
    ip: Ipv4Addr,
    hosts: Vec<Host>,
    outgoing: Vec<Datagram>,
    transmits: u64,
    /// Every transmit's kind and size, in order, for tests of batching.
    pub log: Vec<TransmitRecord>,
}

/// One transmit a core made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransmitRecord {
    /// Local port, UDP or batched UDP.
    pub kind: TransmitKind,
    /// Frames or datagrams in it.
    pub units: usize,
}

/// What kind of transmit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransmitKind {
    /// Frames to a local port.
    Local(PortId),
    /// A GSO-style send (or one datagram) from a socket.
    Udp(UdpSource),
    /// A `sendmmsg`-style batch from a socket.
    UdpBatch(UdpSource),
}

impl Wire {
    fn source(&self, from: UdpSource) -> SocketAddr {
        let port = match from {
            UdpSource::Vxlan(i) => 40000 + u16::try_from(i).unwrap_or(0),
            UdpSource::Tunnel => TUNNEL_PORT,
        };
        SocketAddr::new(IpAddr::V4(self.ip), port)
    }
}

impl Sink for Wire {
    fn transmit(&mut self, transmit: Transmit<'_>) -> usize {
        self.transmits += 1;
        let units = transmit.units();
        let n = self.transmits;
        match transmit {
            Transmit::Local { port, frames } => {
                self.log.push(TransmitRecord {
                    kind: TransmitKind::Local(port),
                    units,
                });
                let Some(host) = self.hosts.iter_mut().find(|h| h.port == port) else {
                    return 0;
                };
                for f in frames {
                    host.received.push(Received {
                        vnet: *f.vnet,
                        frame: f.frame.to_vec(),
                        transmit: n,
                    });
                }
                frames.len()
            }
            Transmit::Udp {
                from,
                to,
                payload,
                segment_size,
            } => {
                self.log.push(TransmitRecord {
                    kind: TransmitKind::Udp(from),
                    units,
                });
                let src = self.source(from);
                for d in payload.chunks(segment_size.max(1)) {
                    self.outgoing.push(Datagram {
                        from: src,
                        to,
                        payload: d.to_vec(),
                    });
                }
                units
            }
            Transmit::UdpBatch { from, datagrams } => {
                self.log.push(TransmitRecord {
                    kind: TransmitKind::UdpBatch(from),
                    units,
                });
                let src = self.source(from);
                for (to, d) in datagrams {
                    self.outgoing.push(Datagram {
                        from: src,
                        to: *to,
                        payload: d.to_vec(),
                    });
                }
                units
            }
        }
    }
}

/// One simulated router.
#[derive(Debug)]
pub struct Router {
    /// Its data-plane core.
    pub core: Core,
    /// Its peer name.
    pub name: PeerName,
    /// Its underlay address.
    pub ip: Ipv4Addr,
    /// Its local ports and what they saw.
    pub wire: Wire,
    /// Routers it has a control connection to.
    pub neighbours: BTreeSet<usize>,
    /// Every event its core reported, in order.
    pub events: Vec<Event>,
    /// Times its periodic work ran.
    pub timeouts: u64,
}

/// A datagram in flight.
#[derive(Debug)]
struct InFlight {
    at: Instant,
    seq: u64,
    to_router: usize,
    datagram: Datagram,
}

/// The simulator (see the module docs).
#[derive(Debug)]
pub struct Sim {
    now: Instant,
    rng: ChaCha8Rng,
    /// The routers, by index.
    pub routers: Vec<Router>,
    links: Vec<Vec<Link>>,
    in_flight: Vec<InFlight>,
    seq: u64,
    next_session: u32,
    /// Datagrams that reached a router, per (from router, to router, destination port).
    delivered: Vec<(usize, usize, u16)>,
}

impl Sim {
    /// `n` routers with one network, no hosts and no connections.
    pub fn new(seed: u64, n: usize, config: &SimConfig) -> Self {
        // The simulator's epoch, its one clock read: from here only the simulator moves
        // time, so runs are deterministic (the cores only see offsets from it).
        #[allow(clippy::disallowed_methods)]
        let now = Instant::now();
        let mtu = PathMtus::new(Underlay::V4, config.underlay_mtu, config.password, None);
        let routers = (0..n)
            .map(|i| {
                let name = PeerName([0x02, 0, 0, 0, 0, (i + 1) as u8]);
                let ip = Ipv4Addr::new(192, 0, 2, (i + 1) as u8);
                let mut core = Core::new(
                    CoreConfig {
                        local_name: name,
                        mtu,
                        password_set: config.password,
                        trusted_subnets: config.trusted_subnets.clone(),
                        send_sockets: 4,
                    },
                    now,
                )
                .unwrap_or_else(|e| unreachable!("default switch config: {e}"));
                core.add_network(
                    NetworkDef {
                        id: NETWORK,
                        name: "default".into(),
                        vni: Vni::new(VNI).unwrap_or_else(|| unreachable!()),
                    },
                    now,
                );
                Router {
                    core,
                    name,
                    ip,
                    wire: Wire {
                        ip,
                        hosts: Vec::new(),
                        outgoing: Vec::new(),
                        transmits: 0,
                        log: Vec::new(),
                    },
                    neighbours: BTreeSet::new(),
                    events: Vec::new(),
                    timeouts: 0,
                }
            })
            .collect();
        Self {
            now,
            rng: ChaCha8Rng::seed_from_u64(seed),
            routers,
            links: vec![vec![Link::default(); n]; n],
            in_flight: Vec::new(),
            seq: 0,
            next_session: 0x1000,
            delivered: Vec::new(),
        }
    }

    /// The simulated time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Router `r`.
    pub fn router(&self, r: usize) -> &Router {
        &self.routers[r]
    }

    /// Router `r`'s VXLAN address.
    pub fn vxlan_addr(&self, r: usize) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.routers[r].ip), VXLAN_PORT)
    }

    /// Adds a container with `mac`/`ip` on a new local port of router `r`; returns its
    /// index among `r`'s hosts.
    pub fn add_host(&mut self, r: usize, mac: Mac, ip: Ipv4Addr) -> usize {
        let now = self.now;
        let router = &mut self.routers[r];
        let port = router.core.add_local_port(
            LocalPortDef {
                name: format!("veth{}", router.wire.hosts.len()),
                kind: LocalPortKind::Veth,
                network: NETWORK,
                endpoint: Some(KnownEndpoint { mac, ips: vec![ip] }),
            },
            now,
        );
        router.wire.hosts.push(Host {
            port,
            mac,
            ip,
            received: Vec::new(),
        });
        router.wire.hosts.len() - 1
    }

    /// Host `h` of router `r`.
    pub fn host(&self, r: usize, h: usize) -> &Host {
        &self.routers[r].wire.hosts[h]
    }

    /// Takes what host `h` of router `r` received so far.
    pub fn take_received(&mut self, r: usize, h: usize) -> Vec<Received> {
        std::mem::take(&mut self.routers[r].wire.hosts[h].received)
    }

    /// Router `a` names router `b` on its command line (VXLAN to its address).
    pub fn add_static_peer(&mut self, a: usize, b: usize) {
        let addr = self.vxlan_addr(b);
        let now = self.now;
        self.routers[a].core.add_static_peer(addr, now);
    }

    /// A control connection between `a` and `b` completes its handshake: both get the
    /// `PeerConnected` the mesh would send, with matching tunnel keys.
    pub fn connect(&mut self, a: usize, b: usize) {
        let mut secret = [0u8; 32];
        secret[0] = a as u8;
        secret[1] = b as u8;
        let Some((ka, kb)) = TunnelKeys::pair_for_testing(&secret) else {
            unreachable!("test keys derive");
        };
        let (ia, ib) = (self.next_session, self.next_session + 1);
        self.next_session += 2;
        let now = self.now;
        for (me, other, keys, local, remote) in [(a, b, ka, ia, ib), (b, a, kb, ib, ia)] {
            let peer = &self.routers[other];
            let update = MeshUpdate::PeerConnected {
                name: peer.name,
                nickname: format!("r{other}"),
                addr: IpAddr::V4(peer.ip),
                vxlan_port: VXLAN_PORT,
                tunnel_port: TUNNEL_PORT,
                keys: Box::new(keys),
                local_index: local,
                remote_index: remote,
            };
            self.routers[me].core.handle_mesh(update, now);
            self.routers[me].neighbours.insert(other);
        }
    }

    /// The control connection between `a` and `b` closes.
    pub fn disconnect(&mut self, a: usize, b: usize) {
        let now = self.now;
        for (me, other) in [(a, b), (b, a)] {
            let name = self.routers[other].name;
            self.routers[me]
                .core
                .handle_mesh(MeshUpdate::PeerDisconnected { name }, now);
            self.routers[me].neighbours.remove(&other);
        }
    }

    /// Gossips the topology of the control connections: every router learns every router
    /// it can reach (`PeerKnown`) and the routes it computes from the same graph.
    pub fn publish_routes(&mut self) {
        let records: Vec<PeerRecord> = self
            .routers
            .iter()
            .enumerate()
            .map(|(i, r)| PeerRecord {
                name: r.name,
                nickname: Nickname::default(),
                uid: i as u64 + 1,
                version: 1,
                connections: r
                    .neighbours
                    .iter()
                    .map(|&n| ConnectionRecord {
                        peer: self.routers[n].name,
                        addr: SocketAddr::new(IpAddr::V4(self.routers[n].ip), 6783),
                        outbound: i < n,
                    })
                    .collect(),
            })
            .collect();
        let now = self.now;
        for (i, own) in records.iter().enumerate() {
            let mut topology = Topology::new(own.clone());
            for (j, rec) in records.iter().enumerate() {
                if i != j {
                    topology.merge(rec.clone());
                }
            }
            let routes = Arc::new(RouteTable::build(&topology));
            for (j, other) in records.iter().enumerate() {
                if i != j && routes.is_reachable(other.name) {
                    self.routers[i].core.handle_mesh(
                        MeshUpdate::PeerKnown {
                            name: other.name,
                            nickname: format!("r{j}"),
                        },
                        now,
                    );
                }
            }
            self.routers[i]
                .core
                .handle_mesh(MeshUpdate::Routes(routes), now);
        }
    }

    /// Gossips every router's containers to every other router.
    pub fn publish_endpoints(&mut self) {
        let now = self.now;
        let all: Vec<(PeerName, Vec<mesh::Endpoint>)> = self
            .routers
            .iter()
            .map(|r| {
                let eps = r
                    .wire
                    .hosts
                    .iter()
                    .map(|h| mesh::Endpoint {
                        vni: VNI,
                        mac: h.mac.0,
                        ips: vec![IpAddr::V4(h.ip)],
                    })
                    .collect();
                (r.name, eps)
            })
            .collect();
        for (i, router) in self.routers.iter_mut().enumerate() {
            for (j, (name, endpoints)) in all.iter().enumerate() {
                if i != j {
                    router.core.handle_mesh(
                        MeshUpdate::Endpoints {
                            name: *name,
                            endpoints: endpoints.clone(),
                        },
                        now,
                    );
                }
            }
        }
    }

    /// The directed link from `a` to `b`.
    pub fn link(&mut self, a: usize, b: usize) -> &mut Link {
        &mut self.links[a][b]
    }

    /// Applies `f` to both directions between `a` and `b`.
    pub fn both_ways(&mut self, a: usize, b: usize, f: impl Fn(&mut Link)) {
        f(&mut self.links[a][b]);
        f(&mut self.links[b][a]);
    }

    /// Blocks UDP to `port` between `a` and `b`, both ways.
    pub fn block_udp(&mut self, a: usize, b: usize, port: u16) {
        self.both_ways(a, b, |l| {
            l.blocked.insert(port);
        });
    }

    /// Lets UDP to `port` pass between `a` and `b` again.
    pub fn unblock_udp(&mut self, a: usize, b: usize, port: u16) {
        self.both_ways(a, b, |l| {
            l.blocked.remove(&port);
        });
    }

    /// Host `h` of router `r` sends `frames` (no offloads), all in one receive batch.
    pub fn send(&mut self, r: usize, h: usize, frames: &[Vec<u8>]) {
        let none = wire::vnet::NO_OFFLOAD;
        let batch: Vec<(&[u8; wire::vnet::LEN], &[u8])> =
            frames.iter().map(|f| (&none, f.as_slice())).collect();
        self.send_with_vnet(r, h, &batch);
    }

    /// Host `h` of router `r` sends frames with their virtio headers, in one batch.
    pub fn send_with_vnet(
        &mut self,
        r: usize,
        h: usize,
        frames: &[(&[u8; wire::vnet::LEN], &[u8])],
    ) {
        let now = self.now;
        let batch: Vec<Option<VnetFrame<'_>>> = frames
            .iter()
            .map(|(vnet, frame)| Some(VnetFrame { vnet, frame }))
            .collect();
        let router = &mut self.routers[r];
        let port = router.wire.hosts[h].port;
        router
            .core
            .handle_local_frames(now, port, &batch, &mut router.wire);
        self.after_call(r);
    }

    /// Runs until `d` has passed: delivers datagrams when they arrive (each router's
    /// arrivals at one instant as one receive batch per socket) and runs each core's
    /// periodic work when its deadline comes.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        let mut turns_at_now = 0;
        loop {
            let next = self.next_instant();
            let Some(next) = next.filter(|&t| t <= end) else {
                self.now = end;
                break;
            };
            if next <= self.now {
                turns_at_now += 1;
                assert!(
                    turns_at_now < MAX_TURNS_AT_ONCE,
                    "a core keeps asking to run at the same instant (busy loop)"
                );
            } else {
                turns_at_now = 0;
                self.now = next;
            }
            self.turn();
        }
    }

    /// The next instant anything is due: an arrival or a core's deadline.
    fn next_instant(&self) -> Option<Instant> {
        let arrival = self.in_flight.iter().map(|f| f.at).min();
        let timer = self.routers.iter().map(|r| r.core.poll_timeout()).min();
        match (arrival, timer) {
            (Some(a), Some(t)) => Some(a.min(t)),
            (a, t) => a.or(t),
        }
    }

    /// Delivers what has arrived by now, then runs the due timers.
    fn turn(&mut self) {
        let now = self.now;
        let mut due: Vec<InFlight> = Vec::new();
        let mut i = 0;
        while i < self.in_flight.len() {
            if self.in_flight[i].at <= now {
                due.push(self.in_flight.swap_remove(i));
            } else {
                i += 1;
            }
        }
        due.sort_by_key(|f| (f.at, f.seq));
        for r in 0..self.routers.len() {
            for port in [VXLAN_PORT, TUNNEL_PORT] {
                let batch: Vec<&InFlight> = due
                    .iter()
                    .filter(|f| f.to_router == r && f.datagram.to.port() == port)
                    .collect();
                if batch.is_empty() {
                    continue;
                }
                for f in &batch {
                    if let Some(from) = self.router_at(f.datagram.from.ip()) {
                        self.delivered.push((from, r, port));
                    }
                }
                let router = &mut self.routers[r];
                if port == VXLAN_PORT {
                    let datagrams = batch
                        .iter()
                        .map(|f| (f.datagram.from, f.datagram.payload.as_slice()));
                    router
                        .core
                        .handle_vxlan_datagrams(now, datagrams, &mut router.wire);
                } else {
                    let datagrams = batch.iter().map(|f| f.datagram.payload.as_slice());
                    router
                        .core
                        .handle_tunnel_datagrams(now, datagrams, &mut router.wire);
                }
                self.after_call(r);
            }
        }
        for r in 0..self.routers.len() {
            let router = &mut self.routers[r];
            if router.core.poll_timeout() <= now {
                router.core.handle_timeout(now, &mut router.wire);
                router.timeouts += 1;
                self.after_call(r);
            }
        }
    }

    /// Collects a router's events and puts its datagrams on the wire.
    fn after_call(&mut self, r: usize) {
        while let Some(e) = self.routers[r].core.poll_event() {
            self.routers[r].events.push(e);
        }
        let outgoing = std::mem::take(&mut self.routers[r].wire.outgoing);
        for datagram in outgoing {
            let Some(to) = self.router_at(datagram.to.ip()) else {
                continue;
            };
            let link = &self.links[r][to];
            if link.blocked.contains(&datagram.to.port()) {
                continue;
            }
            if link.loss > 0.0 && self.rng.random::<f64>() < link.loss {
                continue;
            }
            let mut delay = link.delay;
            if !link.jitter.is_zero() {
                let extra = self.rng.random_range(0..=link.jitter.as_micros() as u64);
                delay += Duration::from_micros(extra);
            }
            self.seq += 1;
            self.in_flight.push(InFlight {
                at: self.now + delay,
                seq: self.seq,
                to_router: to,
                datagram,
            });
        }
    }

    fn router_at(&self, ip: IpAddr) -> Option<usize> {
        self.routers.iter().position(|r| IpAddr::V4(r.ip) == ip)
    }

    /// Datagrams that reached router `to` from router `from` on `port` so far.
    pub fn delivered(&self, from: usize, to: usize, port: u16) -> usize {
        self.delivered
            .iter()
            .filter(|&&d| d == (from, to, port))
            .count()
    }

    /// Datagrams that reached any router so far.
    pub fn delivered_total(&self) -> usize {
        self.delivered.len()
    }

    /// Router `r`'s status.
    pub fn status(&self, r: usize) -> Status {
        self.routers[r].core.status(self.now)
    }
}
