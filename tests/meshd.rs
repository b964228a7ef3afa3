//! The mesh thread over loopback TCP (no root needed): routers connect, authenticate (or
//! refuse each other with a precise error), agree on tunnel keys, gossip endpoints and
//! routes, survive garbage on the control port, and shut down cleanly.

// This whole crate is test code: its helpers fail the test by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use mesh::{Endpoint, PeerName, SUPPORTED_VERSIONS};
use tunnel::crypto::datagram::{DatagramKind, HEADER_LEN, TAG_LEN};
use tunnel::crypto::handshake::frame_len;
use tunnel::crypto::identity::StaticKeypair;
use tunnel::crypto::session::{SessionConfig, TunnelKeys, TunnelSession};
use tunnel::crypto::{Handshake, HandshakePayload, Role};
use weft::api::report::{ConnectionEncryption, ConnectionState};
use weft::dataplane::{MeshUpdate, MeshUpdates};
use weft::meshd::{Meshd, MeshdConfig, MeshdStatus};

/// Generous: a loaded 2-core machine running debug builds.
const DEADLINE: Duration = Duration::from_secs(20);

const PASSWORD: [u8; 32] = [0x11; 32];
const OTHER_PASSWORD: [u8; 32] = [0x22; 32];

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
}

/// The test's end of a router's `MeshUpdates`.
struct Collector(Sender<MeshUpdate>);

impl MeshUpdates for Collector {
    fn deliver(&self, update: MeshUpdate) -> anyhow::Result<()> {
        self.0
            .send(update)
            .map_err(|_| anyhow::anyhow!("test collector gone"))
    }
}

/// How to start one router.
struct Spec {
    name: u8,
    psk: Option<[u8; 32]>,
    discovery: bool,
    targets: Vec<SocketAddr>,
}

impl Spec {
    fn new(name: u8) -> Self {
        Self {
            name,
            psk: None,
            discovery: true,
            targets: Vec::new(),
        }
    }

    fn psk(mut self, psk: [u8; 32]) -> Self {
        self.psk = Some(psk);
        self
    }

    fn no_discovery(mut self) -> Self {
        self.discovery = false;
        self
    }

    fn dial(mut self, addr: SocketAddr) -> Self {
        self.targets.push(addr);
        self
    }
}

/// A running meshd and everything it reported.
struct Router {
    meshd: Option<Meshd>,
    name: [u8; 6],
    vxlan_port: u16,
    tunnel_port: u16,
    updates: Receiver<MeshUpdate>,
    seen: Vec<MeshUpdate>,
}

fn peer_name(byte: u8) -> [u8; 6] {
    [0x02, 0, 0, 0, 0, byte]
}

impl Router {
    fn start(spec: Spec) -> Self {
        init_tracing();
        let (tx, rx) = crossbeam_channel::unbounded();
        let name = peer_name(spec.name);
        let vxlan_port = 4000 + u16::from(spec.name);
        let tunnel_port = 5000 + u16::from(spec.name);
        let meshd = Meshd::start(
            MeshdConfig {
                listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
                name: PeerName(name),
                nickname: format!("router-{}", spec.name),
                vxlan_port,
                tunnel_port,
                psk: spec.psk,
                static_key: StaticKeypair::generate().unwrap(),
                conn_limit: 64,
                discovery: spec.discovery,
                targets: spec.targets,
            },
            Collector(tx),
        )
        .unwrap();
        Self {
            meshd: Some(meshd),
            name,
            vxlan_port,
            tunnel_port,
            updates: rx,
            seen: Vec::new(),
        }
    }

    fn meshd(&self) -> &Meshd {
        self.meshd.as_ref().unwrap()
    }

    fn addr(&self) -> SocketAddr {
        self.meshd().local_addr()
    }

    fn status(&self) -> MeshdStatus {
        self.meshd().status().unwrap()
    }

    /// Takes in every update delivered so far.
    fn collect(&mut self) {
        self.seen.extend(self.updates.try_iter());
    }

    /// Waits until an update (already seen or arriving before the deadline) matches `f`.
    fn wait_update<T>(&mut self, what: &str, mut f: impl FnMut(&MeshUpdate) -> Option<T>) -> T {
        let deadline = Instant::now() + DEADLINE;
        let mut checked = 0;
        loop {
            if let Some(found) = self.seen.get(checked..).unwrap().iter().find_map(&mut f) {
                return found;
            }
            checked = self.seen.len();
            let left = deadline.saturating_duration_since(Instant::now());
            match self.updates.recv_timeout(left) {
                Ok(update) => self.seen.push(update),
                Err(_) => panic!(
                    "router {:02x?}: timed out waiting for {what}; updates so far: {:#?}",
                    self.name, self.seen
                ),
            }
        }
    }

    /// Waits until the status satisfies `f`.
    fn wait_status(&self, what: &str, f: impl Fn(&MeshdStatus) -> bool) -> MeshdStatus {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let status = self.status();
            if f(&status) {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "router {:02x?}: timed out waiting for {what}; status: {:#?}",
                self.name,
                status.connections
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The `PeerConnected` for `peer`: (keys, local_index, remote_index).
    fn connected_to(&mut self, peer: &Self) -> (TunnelKeys, u32, u32) {
        let (name, vxlan_port, tunnel_port) = (peer.name, peer.vxlan_port, peer.tunnel_port);
        self.wait_update("PeerConnected", |u| match u {
            MeshUpdate::PeerConnected {
                name: n,
                nickname,
                addr,
                vxlan_port: v,
                tunnel_port: t,
                keys,
                local_index,
                remote_index,
            } if *n == PeerName(name) => {
                assert_eq!(nickname, &format!("router-{}", name[5]));
                assert_eq!(*addr, IpAddr::V4(Ipv4Addr::LOCALHOST));
                assert_eq!((*v, *t), (vxlan_port, tunnel_port));
                Some(((**keys).clone(), *local_index, *remote_index))
            }
            _ => None,
        })
    }

    fn count_connected(&mut self) -> usize {
        self.collect();
        self.seen
            .iter()
            .filter(|u| matches!(u, MeshUpdate::PeerConnected { .. }))
            .count()
    }

    fn shutdown(&mut self) {
        if let Some(m) = self.meshd.take() {
            m.shutdown();
        }
    }
}

/// Seals `payload` with `from` and opens it with `to`.
fn tunnel_round_trip(from: &mut TunnelSession, to: &mut TunnelSession, payload: &[u8]) {
    let now = Instant::now();
    let mut datagram = vec![0u8; HEADER_LEN + payload.len() + TAG_LEN];
    datagram[HEADER_LEN..HEADER_LEN + payload.len()].copy_from_slice(payload);
    from.seal(now, DatagramKind::Frames, &mut datagram).unwrap();
    let opened = to.open(now, &mut datagram).unwrap();
    assert_eq!(opened.plaintext, payload);
}

/// Connects two routers (`a` dials `b`) and checks the tunnel keys both report agree.
fn connect_and_check_keys(a: &mut Router, b: &mut Router, authenticated: bool) {
    let (ka, a_local, a_remote) = a.connected_to(b);
    let (kb, b_local, b_remote) = b.connected_to(a);
    assert_eq!(ka.authenticated(), authenticated);
    assert_eq!(kb.authenticated(), authenticated);
    assert_ne!(a_local, 0);
    assert_ne!(b_local, 0);
    assert_eq!(
        (a_local, a_remote),
        (b_remote, b_local),
        "session indices must cross"
    );
    let now = Instant::now();
    let mut sa = TunnelSession::new(&ka, a_local, a_remote, SessionConfig::default(), now).unwrap();
    let mut sb = TunnelSession::new(&kb, b_local, b_remote, SessionConfig::default(), now).unwrap();
    tunnel_round_trip(&mut sa, &mut sb, b"from a to b");
    tunnel_round_trip(&mut sb, &mut sa, b"from b to a");

    let encryption = if authenticated {
        ConnectionEncryption::Password
    } else {
        ConnectionEncryption::Unauthenticated
    };
    for (router, other) in [(&*a, b.name), (&*b, a.name)] {
        let status = router.wait_status("an established connection", |s| {
            s.connections
                .iter()
                .any(|c| c.state == ConnectionState::Established && c.peer == Some(PeerName(other)))
        });
        let conn = status
            .connections
            .iter()
            .find(|c| c.peer == Some(PeerName(other)))
            .unwrap();
        assert_eq!(conn.encryption, encryption);
    }
}

#[test]
fn routers_without_password_connect_and_agree_on_tunnel_keys() {
    let mut b = Router::start(Spec::new(2));
    let mut a = Router::start(Spec::new(1).dial(b.addr()));
    connect_and_check_keys(&mut a, &mut b, false);
    let status = a.status();
    let conn = status
        .connections
        .iter()
        .find(|c| c.peer == Some(PeerName(b.name)))
        .unwrap();
    assert!(conn.outbound);
    assert_eq!(conn.remote, b.addr());
}

#[test]
fn routers_with_the_same_password_authenticate() {
    let mut b = Router::start(Spec::new(2).psk(PASSWORD));
    let mut a = Router::start(Spec::new(1).psk(PASSWORD).dial(b.addr()));
    connect_and_check_keys(&mut a, &mut b, true);
}

/// Waits until both routers' status shows a failed connection whose error contains
/// `a_error` (on the dialling router `a`) and `b_error` (on `b`), then checks neither
/// reported a connected peer.
fn expect_refusal(a: &mut Router, b: &mut Router, a_error: &str, b_error: &str) {
    for (router, error) in [(&*a, a_error), (&*b, b_error)] {
        router.wait_status(error, |s| {
            s.connections.iter().any(|c| {
                c.state == ConnectionState::Failed
                    && c.last_error.as_deref().is_some_and(|e| e.contains(error))
            })
        });
    }
    // The dialling side's target remembers why, too.
    let status = a.status();
    let target = status
        .mesh
        .targets
        .iter()
        .find(|t| t.addr == b.addr())
        .unwrap();
    assert!(
        target
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains(a_error)),
        "{target:?}"
    );
    assert_eq!(a.count_connected(), 0);
    assert_eq!(b.count_connected(), 0);
    assert!(
        !b.status()
            .connections
            .iter()
            .any(|c| c.state == ConnectionState::Established)
    );
}

#[test]
fn different_passwords_are_refused_on_both_sides() {
    let mut b = Router::start(Spec::new(2).psk(PASSWORD));
    let mut a = Router::start(Spec::new(1).psk(OTHER_PASSWORD).dial(b.addr()));
    let differs = "authentication failed: the peer's password differs";
    expect_refusal(&mut a, &mut b, differs, differs);
}

#[test]
fn a_password_on_one_side_only_is_named_on_both_sides() {
    let has_none = "this router has a password but the peer has none";
    let requires = "the peer requires a password";
    // The dialler has the password ...
    let mut b = Router::start(Spec::new(2));
    let mut a = Router::start(Spec::new(1).psk(PASSWORD).dial(b.addr()));
    expect_refusal(&mut a, &mut b, has_none, requires);
    // ... and the other way round.
    let mut d = Router::start(Spec::new(4).psk(PASSWORD));
    let mut c = Router::start(Spec::new(3).dial(d.addr()));
    expect_refusal(&mut c, &mut d, requires, has_none);
}

#[test]
fn endpoints_set_on_one_router_reach_the_other() {
    let mut b = Router::start(Spec::new(2));
    let mut a = Router::start(Spec::new(1).dial(b.addr()));
    a.connected_to(&b);
    let endpoints = vec![
        Endpoint {
            vni: 7,
            mac: [0x02, 0xaa, 0, 0, 0, 1],
            ips: vec!["10.32.0.5".parse().unwrap()],
        },
        Endpoint {
            vni: 7,
            mac: [0x02, 0xaa, 0, 0, 0, 2],
            ips: vec!["10.32.0.6".parse().unwrap(), "fd00::6".parse().unwrap()],
        },
    ];
    a.meshd().set_local_endpoints(endpoints.clone()).unwrap();
    let a_name = a.name;
    let got = b.wait_update("A's endpoints", |u| match u {
        MeshUpdate::Endpoints { name, endpoints }
            if *name == PeerName(a_name) && !endpoints.is_empty() =>
        {
            Some(endpoints.clone())
        }
        _ => None,
    });
    assert_eq!(got, endpoints);
    // The router's own endpoints are never reported back to it.
    a.collect();
    assert!(
        !a.seen
            .iter()
            .any(|u| matches!(u, MeshUpdate::Endpoints { name, .. } if *name == PeerName(a_name)))
    );
    // An invalid set is refused with a reason, not dropped silently.
    let bad = vec![Endpoint {
        vni: 1 << 24,
        mac: [0x02, 0, 0, 0, 0, 9],
        ips: Vec::new(),
    }];
    assert!(a.meshd().set_local_endpoints(bad).is_err());
}

#[test]
fn peers_learned_through_gossip_are_routed_through_the_middle() {
    let b = Router::start(Spec::new(2));
    let mut a = Router::start(Spec::new(1).no_discovery().dial(b.addr()));
    let mut c = Router::start(Spec::new(3).no_discovery().dial(b.addr()));
    a.connected_to(&b);
    c.connected_to(&b);
    let (b_name, c_name) = (b.name, c.name);
    let nickname = a.wait_update("C known", |u| match u {
        MeshUpdate::PeerKnown { name, nickname } if *name == PeerName(c_name) => {
            Some(nickname.clone())
        }
        _ => None,
    });
    assert_eq!(nickname, "router-3");
    a.wait_update("a route to C through B", |u| match u {
        MeshUpdate::Routes(routes) => {
            (routes.next_hop(PeerName(c_name)) == Some(PeerName(b_name))).then_some(())
        }
        _ => None,
    });
    // A and C never connect directly: discovery is off on both ends.
    assert!(
        !a.seen.iter().any(
            |u| matches!(u, MeshUpdate::PeerConnected { name, .. } if *name == PeerName(c_name))
        )
    );
    let status = a.status();
    let peer_c = status
        .mesh
        .peers
        .iter()
        .find(|p| p.name == PeerName(c_name))
        .unwrap();
    assert_eq!(peer_c.hops, Some(2));
}

/// Opens a raw TCP connection to `addr`, sends `bytes`, and returns whether the router
/// closed the connection before the deadline (EOF or reset).
fn send_and_expect_close(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream.write_all(bytes).unwrap();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return received,
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return received,
            Err(e) => panic!("the router did not close a connection that sent garbage: {e}"),
        }
    }
}

/// A deterministic pseudo-random byte stream (xorshift), different per seed.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Runs the preamble and an unauthenticated handshake as an initiator over a blocking
/// socket, like a real peer would, and returns the socket ready for records.
fn handshake_as_fake_peer(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream.write_all(&SUPPORTED_VERSIONS.to_preamble()).unwrap();
    let mut preamble = [0u8; 8];
    stream.read_exact(&mut preamble).unwrap();
    assert_eq!(&preamble[..4], b"weft");
    let key = StaticKeypair::generate().unwrap();
    let payload = HandshakePayload {
        session_index: 9,
        tunnel_port: 1,
        features: 0,
    };
    let mut hs = Handshake::new(Role::Initiator, None, &key, payload).unwrap();
    let mut inbox = Vec::new();
    let mut buf = [0u8; 4096];
    while !hs.is_finished() {
        let mut out = Vec::new();
        hs.write_message(&mut out).unwrap();
        stream.write_all(&out).unwrap();
        loop {
            if let Some(len) = frame_len(&inbox).unwrap()
                && inbox.len() >= len
            {
                let frame: Vec<u8> = inbox.drain(..len).collect();
                hs.read_message(&frame).unwrap();
                break;
            }
            let n = stream.read(&mut buf).unwrap();
            assert_ne!(n, 0, "the router closed during the handshake");
            inbox.extend_from_slice(&buf[..n]);
        }
    }
    stream
}

#[test]
fn garbage_on_the_control_port_closes_only_that_connection() {
    let mut a = Router::start(Spec::new(1));
    let addr = a.addr();
    // Random bytes: the router's own preamble comes back, then the close.
    let got = send_and_expect_close(addr, &noise(1, 4096));
    assert_eq!(got.get(..8), Some(&SUPPORTED_VERSIONS.to_preamble()[..]));
    // Another protocol's preamble.
    send_and_expect_close(addr, b"weave\x00\x01\x00\x02");
    // A weft preamble from a future version with no overlap.
    let future = mesh::VersionRange { min: 90, max: 99 }.to_preamble();
    send_and_expect_close(addr, &future);
    // A valid preamble, then garbage where the handshake should be.
    let mut bytes = SUPPORTED_VERSIONS.to_preamble().to_vec();
    bytes.extend(noise(2, 2048));
    send_and_expect_close(addr, &bytes);
    // A complete handshake, then a record that does not authenticate.
    let mut stream = handshake_as_fake_peer(addr);
    let mut record = vec![0x00, 0x40];
    record.extend(noise(3, 0x40));
    stream.write_all(&record).unwrap();
    let mut rest = Vec::new();
    match stream.read_to_end(&mut rest) {
        Ok(_) => {}
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset),
    }

    // The router still serves real peers, and the status explains the last failure.
    let status = a.wait_status("the bad record in the failure log", |s| {
        s.connections.iter().any(|c| {
            c.state == ConnectionState::Established
                || c.last_error
                    .as_deref()
                    .is_some_and(|e| e.contains("authentication"))
        })
    });
    assert!(
        !status
            .connections
            .iter()
            .any(|c| c.state == ConnectionState::Established)
    );
    let mut b = Router::start(Spec::new(2).dial(addr));
    connect_and_check_keys(&mut b, &mut a, false);
    assert_eq!(a.count_connected(), 1);
}

#[test]
fn shutdown_closes_every_connection_and_joins() {
    let mut b = Router::start(Spec::new(2));
    let mut a = Router::start(Spec::new(1).dial(b.addr()));
    let mut c = Router::start(Spec::new(3));
    c.meshd().connect(vec![b.addr()]).unwrap();
    a.connected_to(&b);
    c.connected_to(&b);
    let b_addr = b.addr();
    b.shutdown();
    let b_name = b.name;
    for router in [&mut a, &mut c] {
        router.wait_update("B disconnected", |u| {
            matches!(u, MeshUpdate::PeerDisconnected { name } if *name == PeerName(b_name))
                .then_some(())
        });
    }
    // The listener is gone with the thread.
    assert!(TcpStream::connect(b_addr).is_err());
    a.shutdown();
    c.shutdown();
}

#[test]
fn a_port_in_use_is_an_error_that_names_it() {
    let a = Router::start(Spec::new(1));
    let err = Meshd::start(
        MeshdConfig {
            listen: a.addr(),
            name: PeerName(peer_name(9)),
            nickname: "second".into(),
            vxlan_port: 4789,
            tunnel_port: 6784,
            psk: None,
            static_key: StaticKeypair::generate().unwrap(),
            conn_limit: 64,
            discovery: true,
            targets: Vec::new(),
        },
        Collector(crossbeam_channel::unbounded().0),
    )
    .unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains(&a.addr().to_string()), "{text}");
}
