//! A deterministic simulation: three hosts, each with its own `Switch`, joined in a full
//! mesh through remote ports, with smoltcp interfaces as containers doing ARP, ping, TCP
//! and IGMP, plus raw containers that send hand-built frames. Virtual time, no I/O.
//!
//! A frame a switch sends to its remote port for peer P arrives at P's switch on P's remote
//! port for the sender, as VXLAN would carry it. Every frame gets an id, and the sim counts
//! how many switches handled each one, so a loop would show.

// The simulator's helpers are test code: a failed setup step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, ChecksumCapabilities, Device, DeviceCapabilities, Medium};
use smoltcp::socket::{icmp, tcp};
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, HardwareAddress, Icmpv4Packet, Icmpv4Repr, IpAddress, IpCidr,
    PrettyPrinter,
};
use switch::{NetworkId, PortId, PortKind, Switch, SwitchConfig, Verdict};
use wire::Mac;

const NET: NetworkId = NetworkId(1);
const NET2: NetworkId = NetworkId(2);
const HOSTS: usize = 3;

/// A container's end of its veth: frames in, frames out.
#[derive(Default)]
struct Veth {
    rx: VecDeque<Vec<u8>>,
    tx: VecDeque<Vec<u8>>,
}

struct RxToken(Vec<u8>);
struct TxToken<'a>(&'a mut VecDeque<Vec<u8>>);

impl phy::RxToken for RxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = vec![0u8; len];
        let r = f(&mut buf);
        self.0.push_back(buf);
        r
    }
}

impl Device for Veth {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken<'a>;

    fn receive(
        &mut self,
        _now: smoltcp::time::Instant,
    ) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let frame = self.rx.pop_front()?;
        Some((RxToken(frame), TxToken(&mut self.tx)))
    }

    fn transmit(&mut self, _now: smoltcp::time::Instant) -> Option<Self::TxToken<'_>> {
        Some(TxToken(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = 1514;
        caps
    }
}

/// A smoltcp host, or a raw frame sink/source.
enum Stack {
    Smol {
        iface: Box<Interface>,
        sockets: SocketSet<'static>,
    },
    Raw,
}

struct Container {
    name: &'static str,
    host: usize,
    port: PortId,
    network: NetworkId,
    mac: Mac,
    ip: Ipv4Addr,
    veth: Veth,
    stack: Stack,
    /// Ids of every frame delivered to this container.
    received: Vec<u64>,
    /// Source MACs of those frames, in the same order.
    received_from: Vec<Mac>,
    /// Frames delivered to a raw container (smoltcp ones consume theirs).
    raw_rx: Vec<Vec<u8>>,
}

/// What a port of a host's switch leads to.
#[derive(Clone, Copy)]
enum Link {
    Container(usize),
    Peer { host: usize, port: PortId },
}

struct Host {
    sw: Switch,
    links: HashMap<PortId, Link>,
}

struct Sim {
    base: Instant,
    ms: u64,
    hosts: Vec<Host>,
    containers: Vec<Container>,
    /// Frames on their way to a switch: (host, ingress port, id, bytes).
    wire: VecDeque<(usize, PortId, u64, Vec<u8>)>,
    next_id: u64,
    /// How many switches handled each frame id.
    hops: HashMap<u64, usize>,
    egress: Vec<PortId>,
    reply: Vec<u8>,
}

/// The remote port on `host` that leads to `peer` for `network`.
fn remote_port(network: NetworkId, peer: usize) -> PortId {
    PortId(1000 + u32::from(network.0) * 10 + peer as u32)
}

impl Sim {
    fn new() -> Self {
        let base = Instant::now();
        let hosts = (0..HOSTS)
            .map(|h| {
                let config = SwitchConfig {
                    querier_mac: Mac([0x02, 0x77, 0, 0, 0, h as u8 + 1]),
                    hash_seed: h as u64,
                    ..SwitchConfig::default()
                };
                Host {
                    sw: Switch::new(config, base).unwrap(),
                    links: HashMap::new(),
                }
            })
            .collect();
        let mut sim = Self {
            base,
            ms: 0,
            hosts,
            containers: Vec::new(),
            wire: VecDeque::new(),
            next_id: 0,
            hops: HashMap::new(),
            egress: Vec::new(),
            reply: vec![0u8; 1514],
        };
        for network in [NET, NET2] {
            for h in 0..HOSTS {
                for peer in (0..HOSTS).filter(|&p| p != h) {
                    let port = remote_port(network, peer);
                    sim.hosts[h].sw.add_port(port, network, PortKind::Remote);
                    let link = Link::Peer {
                        host: peer,
                        port: remote_port(network, h),
                    };
                    sim.hosts[h].links.insert(port, link);
                }
            }
        }
        sim
    }

    fn now(&self) -> Instant {
        self.base + Duration::from_millis(self.ms)
    }

    fn smol_now(&self) -> smoltcp::time::Instant {
        smoltcp::time::Instant::from_millis(self.ms as i64)
    }

    fn attach(
        &mut self,
        name: &'static str,
        host: usize,
        network: NetworkId,
        n: u8,
        ip: Ipv4Addr,
        smol: bool,
    ) -> usize {
        let idx = self.containers.len();
        let port = PortId(idx as u32 + 1);
        let mac = Mac([0x02, 0x42, 0, 0, host as u8, n]);
        let mut veth = Veth::default();
        let stack = if smol {
            let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac.0)));
            config.random_seed = u64::from(n);
            let mut iface = Interface::new(config, &mut veth, self.smol_now());
            iface.update_ip_addrs(|addrs| {
                addrs
                    .push(IpCidr::new(IpAddress::Ipv4(ip), 16))
                    .expect("room for one address");
            });
            Stack::Smol {
                iface: Box::new(iface),
                sockets: SocketSet::new(Vec::new()),
            }
        } else {
            Stack::Raw
        };
        self.hosts[host].sw.add_port(port, network, PortKind::Local);
        self.hosts[host].links.insert(port, Link::Container(idx));
        self.containers.push(Container {
            name,
            host,
            port,
            network,
            mac,
            ip,
            veth,
            stack,
            received: Vec::new(),
            received_from: Vec::new(),
            raw_rx: Vec::new(),
        });
        idx
    }

    /// Tells every switch about container `c`, as attach (its own host) and gossip (the
    /// others) would.
    fn announce(&mut self, c: usize) {
        let (host, port, network, mac, ip) = {
            let k = &self.containers[c];
            (k.host, k.port, k.network, k.mac, k.ip)
        };
        let now = self.now();
        for h in 0..HOSTS {
            let at = if h == host {
                port
            } else {
                remote_port(network, host)
            };
            self.hosts[h].sw.add_endpoint(now, at, mac, &[ip]).unwrap();
        }
    }

    fn sockets(&mut self, c: usize) -> (&mut Interface, &mut SocketSet<'static>) {
        let k = &mut self.containers[c];
        match &mut k.stack {
            Stack::Smol { iface, sockets } => (iface, sockets),
            Stack::Raw => panic!("{} is raw", k.name),
        }
    }

    /// Queues a hand-built frame from raw container `c`.
    fn send_raw(&mut self, c: usize, frame: Vec<u8>) -> u64 {
        let k = &self.containers[c];
        let (host, port) = (k.host, k.port);
        let id = self.next_id;
        self.next_id += 1;
        self.wire.push_back((host, port, id, frame));
        id
    }

    fn deliver(&mut self, host: usize, port: PortId, id: u64, frame: &[u8]) {
        match self.hosts[host].links.get(&port).copied() {
            Some(Link::Container(c)) => {
                let k = &mut self.containers[c];
                k.received.push(id);
                k.received_from.push(Mac(frame
                    .get(6..12)
                    .and_then(|b| b.try_into().ok())
                    .unwrap_or_default()));
                match k.stack {
                    Stack::Smol { .. } => k.veth.rx.push_back(frame.to_vec()),
                    Stack::Raw => k.raw_rx.push(frame.to_vec()),
                }
            }
            Some(Link::Peer { host, port }) => {
                self.wire.push_back((host, port, id, frame.to_vec()))
            }
            None => panic!("host {host} sent to unlinked {port}"),
        }
    }

    /// One millisecond of the world: timers, stacks, then every frame in flight.
    fn step(&mut self) {
        let now = self.now();
        let smol_now = self.smol_now();
        for h in 0..HOSTS {
            if self.hosts[h].sw.poll_timeout().is_some_and(|t| t <= now) {
                self.hosts[h].sw.handle_timeout(now);
            }
            let mut buf = vec![0u8; 1514];
            let mut ports = Vec::new();
            while let Some(n) = self.hosts[h].sw.poll_transmit(now, &mut buf, &mut ports) {
                let id = self.next_id;
                self.next_id += 1;
                for &p in &ports {
                    self.deliver(h, p, id, &buf[..n]);
                }
            }
        }
        for c in 0..self.containers.len() {
            let k = &mut self.containers[c];
            if let Stack::Smol { iface, sockets } = &mut k.stack {
                iface.poll(smol_now, &mut k.veth, sockets);
            }
            while let Some(frame) = self.containers[c].veth.tx.pop_front() {
                self.send_raw(c, frame);
            }
        }
        while let Some((host, port, id, frame)) = self.wire.pop_front() {
            *self.hops.entry(id).or_default() += 1;
            let verdict = self.hosts[host].sw.handle_frame(
                now,
                port,
                &frame,
                &mut self.egress,
                &mut self.reply,
            );
            if std::env::var_os("SIM_TRACE").is_some() {
                eprintln!(
                    "{}ms host {host} {port} #{id} -> {verdict:?} {:?}\n  {}",
                    self.ms,
                    self.egress,
                    PrettyPrinter::<EthernetFrame<&[u8]>>::new("", &frame)
                );
            }
            match verdict {
                Verdict::Forward => {
                    let egress = std::mem::take(&mut self.egress);
                    for &p in &egress {
                        self.deliver(host, p, id, &frame);
                    }
                    self.egress = egress;
                }
                Verdict::Reply(n) => {
                    let reply = self.reply[..n].to_vec();
                    let rid = self.next_id;
                    self.next_id += 1;
                    self.deliver(host, port, rid, &reply);
                }
                Verdict::Drop(_) => {}
            }
        }
    }

    /// Steps until `done` holds or `limit` of virtual time has passed; whether it held.
    fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&mut Self) -> bool) -> bool {
        let end = self.ms + limit.as_millis() as u64;
        while self.ms <= end {
            self.step();
            if done(self) {
                return true;
            }
            self.ms += 1;
        }
        false
    }

    /// Steps through `span` of virtual time, skipping idle stretches to the next deadline.
    fn run_for(&mut self, span: Duration) {
        let end = self.ms + span.as_millis() as u64;
        while self.ms < end {
            self.step();
            let mut next = end;
            for h in &self.hosts {
                if let Some(t) = h.sw.poll_timeout() {
                    next = next.min(t.saturating_duration_since(self.base).as_millis() as u64);
                }
            }
            let smol_now = self.smol_now();
            for k in &mut self.containers {
                if let Stack::Smol { iface, sockets } = &mut k.stack
                    && let Some(t) = iface.poll_at(smol_now, sockets)
                {
                    next = next.min(t.total_millis().max(0) as u64);
                }
                if !k.veth.rx.is_empty() {
                    next = self.ms;
                }
            }
            self.ms = next.max(self.ms + 1);
        }
    }

    /// No frame was handled by more switches than there are hosts.
    fn assert_no_loops(&self) {
        let worst = self.hops.values().copied().max().unwrap_or(0);
        assert!(worst <= HOSTS, "a frame was switched {worst} times");
    }
}

fn ping_socket(sim: &mut Sim, c: usize) -> SocketHandle {
    let (_, sockets) = sim.sockets(c);
    let mut socket = icmp::Socket::new(
        icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; 4], vec![0; 1024]),
        icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; 4], vec![0; 1024]),
    );
    socket.bind(icmp::Endpoint::Ident(0x77)).unwrap();
    sockets.add(socket)
}

fn send_ping(sim: &mut Sim, c: usize, handle: SocketHandle, to: Ipv4Addr, seq: u16) {
    let (_, sockets) = sim.sockets(c);
    let socket = sockets.get_mut::<icmp::Socket<'_>>(handle);
    let repr = Icmpv4Repr::EchoRequest {
        ident: 0x77,
        seq_no: seq,
        data: b"weft",
    };
    let mut buf = vec![0u8; repr.buffer_len()];
    repr.emit(
        &mut Icmpv4Packet::new_unchecked(&mut buf[..]),
        &ChecksumCapabilities::default(),
    );
    socket.send_slice(&buf, IpAddress::Ipv4(to)).unwrap();
}

/// Whether the socket holds an echo reply with `seq`.
fn got_pong(sim: &mut Sim, c: usize, handle: SocketHandle, seq: u16) -> bool {
    let (_, sockets) = sim.sockets(c);
    let socket = sockets.get_mut::<icmp::Socket<'_>>(handle);
    while let Ok((payload, _)) = socket.recv() {
        let packet = Icmpv4Packet::new_unchecked(payload);
        if let Ok(Icmpv4Repr::EchoReply { seq_no, .. }) =
            Icmpv4Repr::parse(&packet, &ChecksumCapabilities::default())
            && seq_no == seq
        {
            return true;
        }
    }
    false
}

/// Pings `to` from `c` once a second, as ping(8) does, until a reply arrives; whether one
/// did within `limit`. (smoltcp drops a packet whose next hop it must first resolve, so
/// the first echo can be lost to ARP, as on a real host.)
fn ping_until_reply(sim: &mut Sim, c: usize, to: Ipv4Addr, limit: Duration) -> bool {
    let handle = ping_socket(sim, c);
    let mut seq = 0u16;
    let start = sim.ms;
    sim.run_until(limit, |s| {
        if (s.ms - start).is_multiple_of(1000) {
            seq += 1;
            send_ping(s, c, handle, to, seq);
        }
        got_pong(s, c, handle, seq)
    })
}

fn addr(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 32, 0, n)
}

#[test]
fn ping_across_hosts_with_known_endpoints_never_floods() {
    let mut sim = Sim::new();
    let a1 = sim.attach("a1", 0, NET, 1, addr(1), true);
    let b1 = sim.attach("b1", 1, NET, 1, addr(2), true);
    let c1 = sim.attach("c1", 2, NET, 1, addr(3), true);
    for c in [a1, b1, c1] {
        sim.announce(c);
    }
    assert!(
        ping_until_reply(&mut sim, a1, addr(2), Duration::from_secs(5)),
        "no echo reply"
    );

    // Both ARP requests (a1 for b1, b1 for a1 if it asked) were answered by the local switch.
    let (a, b, c) = (
        sim.hosts[0].sw.counters(),
        sim.hosts[1].sw.counters(),
        sim.hosts[2].sw.counters(),
    );
    assert!(a.arp_proxied >= 1);
    assert_eq!(a.flooded_broadcast + b.flooded_broadcast, 0);
    assert_eq!(a.flooded_unknown_unicast + b.flooded_unknown_unicast, 0);
    assert_eq!(c.frames, 0, "host C's switch never saw a frame");
    let from_containers = sim.containers[c1]
        .received_from
        .iter()
        .filter(|m| sim.containers.iter().any(|k| k.mac == **m));
    assert_eq!(
        from_containers.count(),
        0,
        "c1 got only its querier's queries"
    );
    sim.assert_no_loops();
}

#[test]
fn learning_floods_the_first_arp_once_per_container_then_proxies_and_unicasts() {
    let mut sim = Sim::new();
    let a1 = sim.attach("a1", 0, NET, 1, addr(1), true);
    let a2 = sim.attach("a2", 0, NET, 2, addr(4), true);
    let b1 = sim.attach("b1", 1, NET, 1, addr(2), true);
    let c1 = sim.attach("c1", 2, NET, 1, addr(3), true);
    // A container on another network with an address that also exists in NET.
    let b9 = sim.attach("b9", 1, NET2, 9, addr(3), false);

    assert!(ping_until_reply(
        &mut sim,
        a1,
        addr(3),
        Duration::from_secs(5)
    ));
    // a1's broadcast ARP request reached each other container of NET exactly once, and
    // a2 and b1 saw nothing else.
    let first_request = sim.containers[a2].received[0];
    for c in [a2, b1, c1] {
        let copies = sim.containers[c]
            .received
            .iter()
            .filter(|&&id| id == first_request);
        assert_eq!(copies.count(), 1, "{}", sim.containers[c].name);
    }
    assert_eq!(sim.containers[a2].received.len(), 1);
    assert_eq!(sim.containers[b1].received.len(), 1);
    assert!(sim.containers[b9].received.is_empty(), "networks are apart");

    // Every switch learned a1 and c1 (c1 behind the peer port it came from).
    let now = sim.now();
    let a1_mac = sim.containers[a1].mac;
    let c1_mac = sim.containers[c1].mac;
    assert_eq!(
        sim.hosts[0].sw.lookup_mac(now, NET, c1_mac),
        Some(remote_port(NET, 2))
    );
    assert_eq!(
        sim.hosts[2].sw.lookup_mac(now, NET, a1_mac),
        Some(remote_port(NET, 0))
    );
    assert_eq!(
        sim.hosts[1].sw.lookup_mac(now, NET, a1_mac),
        Some(remote_port(NET, 0))
    );

    // a2 now pings c1: host A answers a2's ARP request from the binding it snooped, so
    // the request never leaves the host. (c1 still has to resolve a2 for its reply.)
    let proxied = sim.hosts[0].sw.counters().arp_proxied;
    assert!(ping_until_reply(
        &mut sim,
        a2,
        addr(3),
        Duration::from_secs(5)
    ));
    assert_eq!(sim.hosts[0].sw.counters().arp_proxied, proxied + 1);
    let a2_mac = sim.containers[a2].mac;
    for c in [a1, b1] {
        assert!(
            !sim.containers[c].received_from.contains(&a2_mac),
            "{} saw a frame from a2",
            sim.containers[c].name
        );
    }
    sim.assert_no_loops();
}

#[test]
fn tcp_exchange_through_three_switches_in_virtual_time() {
    let mut sim = Sim::new();
    let a1 = sim.attach("a1", 0, NET, 1, addr(1), true);
    let b1 = sim.attach("b1", 1, NET, 1, addr(2), true);
    let c1 = sim.attach("c1", 2, NET, 1, addr(3), true);
    sim.announce(b1);
    sim.announce(c1);

    let tcp_socket = || {
        tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 16 * 1024]),
            tcp::SocketBuffer::new(vec![0; 16 * 1024]),
        )
    };
    let server = {
        let (_, sockets) = sim.sockets(b1);
        let mut s = tcp_socket();
        s.listen(7000).unwrap();
        sockets.add(s)
    };
    let client = {
        let (iface, sockets) = sim.sockets(c1);
        let mut s = tcp_socket();
        s.connect(iface.context(), (IpAddress::Ipv4(addr(2)), 7000), 49152)
            .unwrap();
        sockets.add(s)
    };

    let payload: Vec<u8> = (0..64 * 1024u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut sent = 0usize;
    let mut got = Vec::new();
    let done = sim.run_until(Duration::from_secs(30), |s| {
        {
            let (_, sockets) = s.sockets(c1);
            let sock = sockets.get_mut::<tcp::Socket<'_>>(client);
            if sock.may_send() && sent < payload.len() {
                sent += sock.send_slice(&payload[sent..]).unwrap();
            }
        }
        let (_, sockets) = s.sockets(b1);
        let sock = sockets.get_mut::<tcp::Socket<'_>>(server);
        let mut buf = [0u8; 4096];
        while let Ok(n) = sock.recv_slice(&mut buf) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        got.len() == payload.len()
    });
    assert!(
        done,
        "only {} of {} bytes arrived",
        got.len(),
        payload.len()
    );
    assert_eq!(got, payload);
    assert!(sim.containers[a1].received.is_empty(), "a1 saw none of it");
    let c = sim.hosts[2].sw.counters();
    assert!(c.forwarded_unicast > 40, "the stream went unicast: {c:?}");
    sim.assert_no_loops();
}

#[test]
fn multicast_reaches_members_on_other_hosts_only_and_survives_querier_rounds() {
    let mut sim = Sim::new();
    let a1 = sim.attach("a1", 0, NET, 1, addr(1), true);
    let sender = sim.attach("a2", 0, NET, 2, addr(4), false);
    let b1 = sim.attach("b1", 1, NET, 1, addr(2), true);
    let c1 = sim.attach("c1", 2, NET, 1, addr(3), true);
    let group = Ipv4Addr::new(239, 1, 2, 3);

    {
        let (iface, _) = sim.sockets(c1);
        iface.join_multicast_group(group).unwrap();
    }
    sim.run_for(Duration::from_millis(50));
    // Every switch knows where the members are: C locally, A and B through C's port.
    let now = sim.now();
    for (h, port) in [
        (0, remote_port(NET, 2)),
        (1, remote_port(NET, 2)),
        (2, sim.containers[c1].port),
    ] {
        let g: Vec<_> = sim.hosts[h].sw.groups(now).collect();
        assert_eq!(g.len(), 1, "host {h}: {g:?}");
        assert_eq!(g[0].ports, vec![port], "host {h}");
    }

    let sender_mac = sim.containers[sender].mac;
    let frame = common::to_group((sender_mac, addr(4)), group);
    let id = sim.send_raw(sender, frame.clone());
    sim.run_for(Duration::from_millis(5));
    assert!(sim.containers[c1].received.contains(&id));
    for c in [a1, b1] {
        assert!(
            !sim.containers[c].received.contains(&id),
            "{}",
            sim.containers[c].name
        );
    }
    assert_eq!(sim.hops[&id], 2, "A and C switched it; B never saw it");

    // Ten minutes on: the queriers kept c1 reporting, so the membership is alive.
    sim.run_for(Duration::from_secs(600));
    assert!(sim.hosts[2].sw.counters().queries_sent >= 4);
    let id = sim.send_raw(sender, frame);
    sim.run_for(Duration::from_millis(5));
    assert!(sim.containers[c1].received.contains(&id));
    assert!(!sim.containers[b1].received.contains(&id));
    sim.assert_no_loops();
}
