//! Unit tests of the node state machine, driving one or two nodes by hand.

use super::*;
use crate::codec::{DEFAULT_MAX_FRAME_LEN, DecodeError, FrameDecoder};
use crate::peer::Nickname;
use crate::protocol::Endpoint;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

fn name(n: u8) -> PeerName {
    PeerName([2, 0, 0, 0, 0, n])
}

fn addr(n: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, n], 6783))
}

fn config(n: u8) -> MeshConfig {
    let mut config = MeshConfig::new(
        name(n),
        Nickname::truncated(&format!("h{n}")),
        1000 + u64::from(n),
    );
    config.discovery = false;
    config
}

fn node(n: u8, now: Instant) -> Mesh {
    Mesh::new(config(n), now, u64::from(n)).unwrap()
}

fn hello(n: u8, uid: u64, nonce: u64) -> Message {
    Message::Hello(Hello {
        name: name(n),
        nickname: Nickname::truncated("x"),
        uid,
        listen_port: 6783,
        vxlan_port: 4789,
        tunnel_port: 6784,
        features: 0,
        conn_nonce: nonce,
    })
}

fn frame(message: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(message, &mut out);
    out
}

fn actions(mesh: &mut Mesh) -> Vec<Action> {
    std::iter::from_fn(|| mesh.poll_action()).collect()
}

fn events(mesh: &mut Mesh) -> Vec<Event> {
    std::iter::from_fn(|| mesh.poll_event()).collect()
}

/// Decodes every message a node wants to send, per connection.
fn sent(mesh: &mut Mesh) -> Vec<(ConnId, Message)> {
    let mut out = Vec::new();
    while let Some(t) = mesh.poll_transmit() {
        let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME_LEN);
        decoder.push(&t.data);
        while let Some(body) = decoder.next_frame().unwrap() {
            out.push((t.conn, Message::decode(body).unwrap()));
        }
    }
    out
}

fn closes(actions: &[Action]) -> Vec<(ConnId, CloseReason)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Close { conn, reason } => Some((*conn, reason.clone())),
            Action::Dial { .. } => None,
        })
        .collect()
}

/// Two or more nodes wired by hand: `links` maps a connection id to (node, peer conn).
struct Net {
    nodes: Vec<Mesh>,
    /// (node index, conn) ↔ (node index, conn).
    links: Vec<((usize, ConnId), (usize, ConnId))>,
    next: u64,
    now: Instant,
    /// Every transmit pumped: (from node, conn, bytes).
    log: Vec<(usize, ConnId, Vec<u8>)>,
}

impl Net {
    fn new(count: u8, now: Instant) -> Self {
        Self {
            nodes: (1..=count).map(|n| node(n, now)).collect(),
            links: Vec::new(),
            next: 1,
            now,
            log: Vec::new(),
        }
    }

    /// Opens a TCP connection from node `a` to node `b`; returns (a's id, b's id).
    fn open(&mut self, a: usize, b: usize) -> (ConnId, ConnId) {
        let (ca, cb) = (ConnId(self.next), ConnId(self.next + 1));
        self.next += 2;
        let a_ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, u8::try_from(a + 1).unwrap()));
        let b_addr = addr(u8::try_from(b + 1).unwrap());
        self.nodes[b]
            .handle_connection_opened(
                self.now,
                cb,
                Direction::Inbound,
                SocketAddr::new(a_ip, 40000),
            )
            .unwrap();
        self.nodes[a]
            .handle_connection_opened(self.now, ca, Direction::Outbound, b_addr)
            .unwrap();
        self.links.push(((a, ca), (b, cb)));
        (ca, cb)
    }

    fn peer_end(&self, node: usize, conn: ConnId) -> Option<(usize, ConnId)> {
        self.links.iter().find_map(|&(x, y)| {
            if x == (node, conn) {
                Some(y)
            } else if y == (node, conn) {
                Some(x)
            } else {
                None
            }
        })
    }

    /// Moves bytes and closes until nothing changes; returns the close actions seen.
    fn pump(&mut self) -> Vec<(usize, ConnId, CloseReason)> {
        let mut closed = Vec::new();
        for _ in 0..50 {
            let mut progress = false;
            for i in 0..self.nodes.len() {
                while let Some(action) = self.nodes[i].poll_action() {
                    if let Action::Close { conn, reason } = action {
                        progress = true;
                        closed.push((i, conn, reason.clone()));
                        if let Some((j, other)) = self.peer_end(i, conn) {
                            self.links
                                .retain(|&(x, y)| x != (i, conn) && y != (i, conn));
                            self.nodes[j].handle_connection_closed(
                                self.now,
                                other,
                                CloseReason::Transport("closed by peer".into()),
                            );
                        }
                    }
                }
                while let Some(t) = self.nodes[i].poll_transmit() {
                    progress = true;
                    if let Some((j, other)) = self.peer_end(i, t.conn) {
                        self.nodes[j].handle_bytes(self.now, other, &t.data);
                    }
                    self.log.push((i, t.conn, t.data));
                }
            }
            if !progress {
                return closed;
            }
        }
        panic!("network did not settle");
    }
}

#[test]
fn hello_establishes_and_both_records_list_the_edge() {
    let now = Instant::now();
    let mut net = Net::new(2, now);
    let (ca, cb) = net.open(0, 1);
    assert!(net.pump().is_empty());
    assert_eq!(net.nodes[0].connection_peer(ca), Some(name(2)));
    assert_eq!(net.nodes[1].connection_peer(cb), Some(name(1)));
    for (i, other) in [(0, name(2)), (1, name(1))] {
        let routes = net.nodes[i].routes();
        assert_eq!(routes.next_hop(other), Some(other), "node {i}");
        let evs = events(&mut net.nodes[i]);
        assert!(evs.contains(&Event::RoutesChanged));
        assert!(evs.contains(&Event::PeerAdded(other)));
    }
    // The inbound side records the dialler's listen port, not its ephemeral port.
    let record = net.nodes[1].topology().own().connections[0].clone();
    assert_eq!(record.addr, addr(1));
    assert!(!record.outbound);
    let neighbour = net.nodes[1].neighbour(name(1)).unwrap();
    assert_eq!(neighbour.vxlan_port, 4789);
    assert_eq!(neighbour.listen_addr, addr(1));
}

#[test]
fn self_connection_is_refused_and_never_dialled_again() {
    let now = Instant::now();
    let mut mesh = node(1, now);
    mesh.connect(now, addr(1));
    assert_eq!(actions(&mut mesh), vec![Action::Dial { addr: addr(1) }]);
    let (out, inb) = (ConnId(1), ConnId(2));
    mesh.handle_connection_opened(now, out, Direction::Outbound, addr(1))
        .unwrap();
    mesh.handle_connection_opened(
        now,
        inb,
        Direction::Inbound,
        SocketAddr::from(([127, 0, 0, 1], 40000)),
    )
    .unwrap();
    // Cross the two ends.
    for _ in 0..3 {
        while let Some(t) = mesh.poll_transmit() {
            let to = if t.conn == out { inb } else { out };
            mesh.handle_bytes(now, to, &t.data);
        }
    }
    let closed = closes(&actions(&mut mesh));
    assert!(
        closed
            .iter()
            .any(|(c, r)| *c == out && *r == CloseReason::SelfConnection(addr(1)))
    );
    assert!(closed.iter().any(|(c, _)| *c == inb));
    assert_eq!(mesh.counters().self_connections, 1);
    assert_eq!(mesh.our_addrs().collect::<Vec<_>>(), vec![addr(1)]);
    assert!(mesh.topology().own().connections.is_empty());
    // Much later: still no dial to our own address, and no timer spinning for it.
    let later = now + Duration::from_secs(3600);
    mesh.handle_timeout(later);
    assert!(actions(&mut mesh).is_empty());
    let status = mesh.status(later);
    assert_eq!(status.targets[0].state, crate::TargetState::Failed);
}

#[test]
fn name_collisions_are_refused_and_not_retried() {
    let now = Instant::now();
    let mut mesh = node(1, now);
    mesh.connect(now, addr(9));
    assert_eq!(actions(&mut mesh).len(), 1);
    let conn = ConnId(1);
    mesh.handle_connection_opened(now, conn, Direction::Outbound, addr(9))
        .unwrap();
    // The remote claims our name with another uid.
    mesh.handle_bytes(now, conn, &frame(&hello(1, 7, 0)));
    let closed = closes(&actions(&mut mesh));
    assert!(matches!(
        closed.as_slice(),
        [(c, CloseReason::NameCollision { name: n, ours: 1001, theirs: 7 })] if *c == conn && *n == name(1)
    ));
    assert!(closed[0].1.to_string().contains("unique --name"));
    mesh.handle_timeout(now + Duration::from_secs(3600));
    assert!(
        actions(&mut mesh).is_empty(),
        "collisions are never retried"
    );
    assert_eq!(mesh.counters().name_collisions, 1);

    // A second peer using the name of a live neighbour, with another uid.
    let now = Instant::now();
    let mut mesh = node(1, now);
    let peer = SocketAddr::from(([127, 0, 0, 2], 40000));
    mesh.handle_connection_opened(now, ConnId(1), Direction::Inbound, peer)
        .unwrap();
    mesh.handle_bytes(now, ConnId(1), &frame(&hello(2, 50, 1)));
    assert!(mesh.is_connected(name(2)));
    mesh.handle_connection_opened(now, ConnId(2), Direction::Inbound, peer)
        .unwrap();
    mesh.handle_bytes(now, ConnId(2), &frame(&hello(2, 51, 2)));
    let closed = closes(&actions(&mut mesh));
    assert!(matches!(
        closed.as_slice(),
        [(
            ConnId(2),
            CloseReason::NameCollision {
                ours: 50,
                theirs: 51,
                ..
            }
        )]
    ));
    assert_eq!(mesh.connection_peer(ConnId(1)), Some(name(2)));
}

#[test]
fn a_restarted_peer_refused_while_its_old_connection_lives_is_retried() {
    let now = Instant::now();
    let mut mesh = node(1, now);
    // Connected to peer 2 (uid 50) through an inbound connection.
    let old = SocketAddr::from(([127, 0, 0, 2], 40000));
    mesh.handle_connection_opened(now, ConnId(1), Direction::Inbound, old)
        .unwrap();
    mesh.handle_bytes(now, ConnId(1), &frame(&hello(2, 50, 1)));
    // We dial peer 2's address and find its new incarnation (uid 51).
    mesh.connect(now, addr(9));
    assert_eq!(actions(&mut mesh).len(), 1);
    mesh.handle_connection_opened(now, ConnId(2), Direction::Outbound, addr(9))
        .unwrap();
    mesh.handle_bytes(now, ConnId(2), &frame(&hello(2, 51, 2)));
    assert!(matches!(
        closes(&actions(&mut mesh)).as_slice(),
        [(
            ConnId(2),
            CloseReason::NameCollision {
                ours: 50,
                theirs: 51,
                ..
            }
        )]
    ));
    // The old connection goes; the target is dialled again.
    mesh.handle_connection_closed(now, ConnId(1), CloseReason::Transport("reset".into()));
    mesh.handle_timeout(now + Duration::from_secs(120));
    assert!(
        actions(&mut mesh)
            .iter()
            .any(|a| matches!(a, Action::Dial { addr: a } if *a == addr(9))),
        "the target was given up"
    );
}

#[test]
fn crossing_duplicates_close_the_same_connection_on_both_ends() {
    for (a, b) in [(0, 1), (1, 0)] {
        let now = Instant::now();
        let mut net = Net::new(2, now);
        // Both dial each other before either Hello arrives.
        let (a_out, b_in) = net.open(a, b);
        let (b_out, a_in) = net.open(b, a);
        let closed = net.pump();
        // Exactly one link survives, the one initiated by the smaller name (node 0).
        let (keep_a, keep_b) = if a == 0 { (a_out, b_in) } else { (a_in, b_out) };
        let (lost_a, lost_b) = if a == 0 { (a_in, b_out) } else { (a_out, b_in) };
        assert_eq!(net.nodes[a].connection_peer(keep_a), net.name_of(b));
        assert_eq!(net.nodes[b].connection_peer(keep_b), net.name_of(a));
        assert_eq!(net.nodes[a].connection_count(), 1);
        assert_eq!(net.nodes[b].connection_count(), 1);
        assert!(
            closed.iter().all(|(_, c, r)| (*c == lost_a || *c == lost_b)
                && matches!(r, CloseReason::Duplicate(_)))
        );
        assert!(!closed.is_empty());
    }
}

#[test]
fn same_side_duplicates_keep_the_smaller_nonce_on_both_ends() {
    let now = Instant::now();
    let mut net = Net::new(2, now);
    let first = net.open(1, 0);
    let second = net.open(1, 0);
    let closed = net.pump();
    assert_eq!(net.nodes[0].connection_count(), 1);
    assert_eq!(net.nodes[1].connection_count(), 1);
    // Whichever survived, both ends agree on it.
    let survivor_at_1 = [first.0, second.0]
        .into_iter()
        .find(|&c| net.nodes[1].connection_peer(c).is_some())
        .unwrap();
    let survivor_at_0 = if survivor_at_1 == first.0 {
        first.1
    } else {
        second.1
    };
    assert_eq!(net.nodes[0].connection_peer(survivor_at_0), Some(name(2)));
    assert!(!closed.is_empty());
    assert!(
        closed
            .iter()
            .all(|(_, _, r)| *r == CloseReason::Duplicate(name(1))
                || *r == CloseReason::Duplicate(name(2))),
        "{closed:?}"
    );
}

impl Net {
    fn name_of(&self, i: usize) -> Option<PeerName> {
        Some(self.nodes[i].name())
    }
}

#[test]
fn connection_limit_and_accept_rate_are_enforced() {
    let now = Instant::now();
    let mut cfg = config(1);
    cfg.conn_limit = 2;
    let mut mesh = Mesh::new(cfg, now, 1).unwrap();
    let remote = SocketAddr::from(([127, 0, 0, 2], 40000));
    mesh.handle_connection_opened(now, ConnId(1), Direction::Inbound, remote)
        .unwrap();
    assert_eq!(
        mesh.handle_connection_opened(now, ConnId(1), Direction::Inbound, remote),
        Err(Refused::DuplicateConnId(ConnId(1)))
    );
    mesh.handle_connection_opened(now, ConnId(2), Direction::Inbound, remote)
        .unwrap();
    assert_eq!(
        mesh.handle_connection_opened(now, ConnId(3), Direction::Inbound, remote),
        Err(Refused::ConnectionLimit { limit: 2 })
    );
    assert_eq!(mesh.counters().refused_conn_limit, 1);

    let mut cfg = config(1);
    cfg.accept_burst = 3;
    cfg.accept_rate = 1.0;
    let mut mesh = Mesh::new(cfg, now, 1).unwrap();
    for i in 0..3 {
        mesh.handle_connection_opened(now, ConnId(i), Direction::Inbound, remote)
            .unwrap();
    }
    assert_eq!(
        mesh.handle_connection_opened(now, ConnId(10), Direction::Inbound, remote),
        Err(Refused::RateLimited)
    );
    // Outbound connections are not rate limited.
    mesh.handle_connection_opened(now, ConnId(11), Direction::Outbound, addr(3))
        .unwrap();
    let later = now + Duration::from_millis(1000);
    mesh.handle_connection_opened(later, ConnId(12), Direction::Inbound, remote)
        .unwrap();
    assert_eq!(mesh.counters().refused_rate_limited, 1);
}

#[test]
fn a_full_peer_sheds_a_discovered_connection_for_a_newcomer() {
    let now = Instant::now();
    let mut cfg = config(1);
    cfg.conn_limit = 2;
    // Any inbound peer with a connection elsewhere counts as well connected.
    cfg.discovery_degree = 0;
    let mut net = Net {
        nodes: vec![
            Mesh::new(cfg, now, 1).unwrap(),
            node(2, now),
            node(3, now),
            node(4, now),
        ],
        links: Vec::new(),
        next: 1,
        now,
        log: Vec::new(),
    };
    // h1 dials h2 explicitly and h3 as if discovered (no target); h2–h3 are connected too.
    net.nodes[0].connect(now, addr(2));
    let _ = actions(&mut net.nodes[0]);
    let (explicit, _) = net.open(0, 1);
    let (discovered, _) = net.open(0, 2);
    net.open(1, 2);
    net.pump();
    assert_eq!(net.nodes[0].connection_count(), 2);
    // h4, a newcomer, dials h1, which is full: admitted provisionally, and at its Hello the
    // discovered connection yields while the explicit one stays.
    let (_, newcomer) = net.open(3, 0);
    assert_eq!(net.nodes[0].connection_count(), 3);
    let closed = net.pump();
    assert!(
        closed.contains(&(0, discovered, CloseReason::Shed)),
        "{closed:?}"
    );
    assert_eq!(net.nodes[0].counters().shed_connections, 1);
    assert_eq!(net.nodes[0].connection_count(), 2);
    assert_eq!(net.nodes[0].connection_peer(explicit), Some(name(2)));
    assert_eq!(net.nodes[0].connection_peer(newcomer), Some(name(4)));
    // h3 is still part of the mesh (through h2) and dials back: it gets no slot, so peers
    // cannot make a full node shed connections over and over.
    assert!(net.nodes[0].topology().contains(&name(3)));
    let (_, again) = net.open(2, 0);
    let closed = net.pump();
    assert!(
        closed.contains(&(0, again, CloseReason::ConnectionLimit(2))),
        "{closed:?}"
    );
    assert_eq!(net.nodes[0].counters().shed_connections, 1);
    assert_eq!(net.nodes[0].connection_peer(newcomer), Some(name(4)));
    assert_eq!(net.nodes[0].connection_count(), 2);
}

#[test]
fn maker_respects_the_connection_limit() {
    let now = Instant::now();
    let mut cfg = config(1);
    cfg.conn_limit = 2;
    let mut mesh = Mesh::new(cfg, now, 1).unwrap();
    for n in 2..6 {
        mesh.connect(now, addr(n));
    }
    let dials = actions(&mut mesh);
    assert_eq!(dials.len(), 2, "{dials:?}");
    // One dial fails: exactly one replacement is allowed (after its backoff).
    let Action::Dial { addr: failed } = dials[0] else {
        panic!()
    };
    mesh.handle_dial_failed(now, failed, "refused".into());
    let later = now + Duration::from_secs(2);
    mesh.handle_timeout(later);
    let next = actions(&mut mesh);
    assert_eq!(next.len(), 1, "{next:?}");
    // With both slots taken, no timer fires for the waiting targets.
    let deadline = mesh.poll_timeout().unwrap();
    assert!(deadline > later);
}

#[test]
fn keepalives_are_sent_and_silence_times_out() {
    let now = Instant::now();
    let mut net = Net::new(2, now);
    let (ca, _) = net.open(0, 1);
    net.pump();
    let mesh = &mut net.nodes[0];
    let t10 = now + Duration::from_secs(10);
    assert!(mesh.poll_timeout().unwrap() <= t10);
    mesh.handle_timeout(t10);
    let out = sent(mesh);
    assert!(out.contains(&(ca, Message::Keepalive)), "{out:?}");
    // Nothing received for 35 s.
    let t35 = now + Duration::from_secs(35);
    mesh.handle_timeout(t35);
    let closed = closes(&actions(mesh));
    assert_eq!(
        closed,
        vec![(ca, CloseReason::KeepaliveTimeout(Duration::from_secs(35)))]
    );
    assert!(closed[0].1.to_string().contains("keepalive timeout"));
    assert!(!mesh.is_connected(name(2)));
    assert!(events(mesh).contains(&Event::ConnectionClosed {
        conn: ca,
        peer: Some(name(2)),
        reason: CloseReason::KeepaliveTimeout(Duration::from_secs(35)),
    }));
    assert_eq!(mesh.counters().closed_keepalive_timeout, 1);
}

#[test]
fn receiving_anything_defers_the_keepalive_timeout() {
    let now = Instant::now();
    let mut net = Net::new(2, now);
    let (ca, cb) = net.open(0, 1);
    net.pump();
    let t30 = now + Duration::from_secs(30);
    net.nodes[0].handle_bytes(t30, ca, &frame(&Message::Keepalive));
    net.nodes[0].handle_timeout(now + Duration::from_secs(36));
    assert!(closes(&actions(&mut net.nodes[0])).is_empty());
    assert_eq!(net.nodes[0].connection_peer(ca), Some(name(2)));
    let _ = cb;
}

#[test]
fn missing_hello_times_out() {
    let now = Instant::now();
    let mut mesh = node(1, now);
    mesh.handle_connection_opened(now, ConnId(1), Direction::Inbound, addr(2))
        .unwrap();
    assert_eq!(
        mesh.poll_timeout(),
        Some(now + Duration::from_secs(10)).min(mesh.poll_timeout())
    );
    mesh.handle_timeout(now + Duration::from_secs(9));
    assert!(actions(&mut mesh).is_empty());
    mesh.handle_timeout(now + Duration::from_secs(10));
    assert_eq!(
        closes(&actions(&mut mesh)),
        vec![(
            ConnId(1),
            CloseReason::HandshakeTimeout(Duration::from_secs(10))
        )]
    );
    assert_eq!(mesh.counters().closed_handshake_timeout, 1);
}

#[test]
fn bad_input_closes_only_that_connection() {
    let now = Instant::now();
    let remote = SocketAddr::from(([127, 0, 0, 2], 40000));
    type Expect = fn(&CloseReason) -> bool;
    let cases: Vec<(Vec<u8>, Expect)> = vec![
        // Garbage: a frame whose body is an invalid Hello.
        (vec![0, 0, 0, 3, 1, 2, 3], |r| {
            matches!(r, CloseReason::Malformed(_))
        }),
        // An oversize length prefix.
        (vec![0xff, 0xff, 0xff, 0xff, 0], |r| {
            matches!(r, CloseReason::Frame(_))
        }),
        // An empty frame.
        (vec![0, 0, 0, 0], |r| {
            matches!(r, CloseReason::Malformed(DecodeError::Empty))
        }),
        // Topology before Hello.
        (frame(&Message::Topology(Vec::new())), |r| {
            matches!(r, CloseReason::MessageBeforeHello { kind: "Topology" })
        }),
        // Hello twice.
        (
            [frame(&hello(3, 3, 3)), frame(&hello(3, 3, 3))].concat(),
            |r| *r == CloseReason::UnexpectedHello,
        ),
    ];
    for (bytes, expected) in cases {
        let mut mesh = node(1, now);
        // A healthy neighbour on another connection.
        mesh.handle_connection_opened(now, ConnId(9), Direction::Inbound, remote)
            .unwrap();
        mesh.handle_bytes(now, ConnId(9), &frame(&hello(2, 2, 2)));
        mesh.handle_connection_opened(now, ConnId(1), Direction::Inbound, remote)
            .unwrap();
        mesh.handle_bytes(now, ConnId(1), &bytes);
        let closed = closes(&actions(&mut mesh));
        assert_eq!(closed.len(), 1, "{closed:?}");
        assert_eq!(closed[0].0, ConnId(1));
        assert!(
            expected(&closed[0].1),
            "unexpected reason {:?}",
            closed[0].1
        );
        // Bytes after the close are ignored; the neighbour is unaffected.
        mesh.handle_bytes(now, ConnId(1), &[1, 2, 3]);
        assert_eq!(mesh.connection_peer(ConnId(9)), Some(name(2)));
    }
}

#[test]
fn unknown_messages_are_counted_and_skipped() {
    let now = Instant::now();
    let mut mesh = node(1, now);
    mesh.handle_connection_opened(now, ConnId(1), Direction::Inbound, addr(2))
        .unwrap();
    let mut bytes = frame(&hello(2, 2, 2));
    bytes.extend_from_slice(&[0, 0, 0, 3, 17, 0xaa, 0xbb]);
    bytes.extend(frame(&Message::Keepalive));
    mesh.handle_bytes(now, ConnId(1), &bytes);
    assert!(closes(&actions(&mut mesh)).is_empty());
    assert_eq!(mesh.counters().unknown_messages, 1);
    let status = mesh.status(now);
    assert!(
        status.connections[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("unknown message tag 17")
    );
}

#[test]
fn many_changes_between_polls_make_one_message_and_one_route_rebuild() {
    let now = Instant::now();
    let mut net = Net::new(3, now);
    net.open(0, 1);
    net.open(1, 2);
    net.pump();
    let rebuilds = net.nodes[1].counters().route_recomputes;
    // Node 0 (h1) hears 50 updates of h3's record, one message each, without polling.
    let mut last = net.nodes[0].topology().get(&name(3)).unwrap().clone();
    let conn = ConnId(1);
    let real = last.connections.clone();
    let mut with_extra = real.clone();
    with_extra.push(ConnectionRecord {
        peer: name(1),
        addr: addr(1),
        outbound: true,
    });
    for i in 0..50 {
        last.version += 1;
        last.connections = if i % 2 == 0 {
            with_extra.clone()
        } else {
            real.clone()
        };
        net.nodes[0].handle_message(now, conn, Message::Topology(vec![last.clone()]));
    }
    let before = net.nodes[0].counters().route_recomputes;
    let out = sent(&mut net.nodes[0]);
    assert_eq!(net.nodes[0].counters().route_recomputes, before + 1);
    // Nothing to forward: the only neighbour is the sender.
    assert!(
        out.iter().all(|(_, m)| !matches!(m, Message::Topology(_))),
        "{out:?}"
    );
    // Node 1 (h2) hears 50 updates of h1's record: forwards one message to h3.
    let mut record = net.nodes[1].topology().get(&name(1)).unwrap().clone();
    let from = net.nodes[1]
        .connected_peers()
        .find(|(p, _)| *p == name(1))
        .unwrap()
        .1;
    for _ in 0..50 {
        record.version += 1;
        net.nodes[1].handle_message(now, from, Message::Topology(vec![record.clone()]));
    }
    let out = sent(&mut net.nodes[1]);
    let topo: Vec<_> = out
        .iter()
        .filter(|(c, m)| *c != from && matches!(m, Message::Topology(_)))
        .collect();
    assert_eq!(topo.len(), 1, "{out:?}");
    let Message::Topology(records) = &topo[0].1 else {
        unreachable!()
    };
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].version, record.version);
    assert!(net.nodes[1].counters().route_recomputes <= rebuilds + 1);
}

#[test]
fn our_stale_record_is_outbid_and_reannounced() {
    let now = Instant::now();
    let mut net = Net::new(2, now);
    net.open(0, 1);
    net.pump();
    let own = net.nodes[0].topology().own().clone();
    let mut old = own.clone();
    old.uid = 1; // A previous incarnation...
    old.version = own.version + 10; // ...that got further.
    let conn = net.nodes[0].connected_peers().next().unwrap().1;
    net.nodes[0].handle_message(now, conn, Message::Topology(vec![old]));
    net.log.clear();
    net.pump();
    let (_, _, data) = net
        .log
        .iter()
        .find(|(from, _, _)| *from == 0)
        .expect("re-announced");
    let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME_LEN);
    decoder.push(data);
    let Ok(Message::Topology(records)) = Message::decode(decoder.next_frame().unwrap().unwrap())
    else {
        panic!("not a topology message");
    };
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].version, own.version + 11);
    assert_eq!(records[0].uid, own.uid);
    assert_eq!(
        net.nodes[1].topology().get(&name(1)).unwrap().version,
        own.version + 11
    );
}

#[test]
fn endpoints_are_gossiped_and_dropped_with_their_peer() {
    let now = Instant::now();
    let mut net = Net::new(3, now);
    net.open(0, 1);
    let (c12, _) = net.open(1, 2);
    net.pump();
    let ep = Endpoint {
        vni: 7,
        mac: [2, 0, 0, 0, 9, 9],
        ips: vec![IpAddr::V4(Ipv4Addr::new(10, 40, 0, 3))],
    };
    net.nodes[2]
        .set_local_endpoints(now, vec![ep.clone()])
        .unwrap();
    net.pump();
    let seen: Vec<_> = net.nodes[0]
        .endpoints()
        .map(|(p, e)| (p, e.to_vec()))
        .collect();
    assert_eq!(seen, vec![(name(3), vec![ep])]);
    assert!(events(&mut net.nodes[0]).contains(&Event::EndpointsChanged(name(3))));
    // h2–h3 goes away: h1 garbage-collects h3 and its endpoints.
    net.nodes[1].handle_connection_closed(now, c12, CloseReason::Transport("eof".into()));
    let other = net.peer_end(1, c12).unwrap();
    net.nodes[2].handle_connection_closed(now, other.1, CloseReason::Transport("eof".into()));
    net.pump();
    assert_eq!(net.nodes[0].endpoints().count(), 0);
    let evs = events(&mut net.nodes[0]);
    assert!(evs.contains(&Event::PeerRemoved(name(3))), "{evs:?}");
    assert!(evs.contains(&Event::EndpointsChanged(name(3))));
    assert!(!net.nodes[0].topology().contains(&name(3)));
    // Invalid endpoints are refused with an error, not a panic.
    let mut bad = Endpoint {
        vni: 1 << 24,
        mac: [0; 6],
        ips: Vec::new(),
    };
    assert!(
        net.nodes[0]
            .set_local_endpoints(now, vec![bad.clone()])
            .is_err()
    );
    bad.vni = 1;
    assert!(net.nodes[0].set_local_endpoints(now, vec![bad]).is_ok());
}

#[test]
fn anti_entropy_asks_few_neighbours_and_repairs_a_lost_update() {
    let now = Instant::now();
    let mut net = Net::new(4, now);
    for other in 1..4 {
        net.open(0, other);
    }
    net.pump();
    // h3 announces an endpoint; h1 receives it but its forwards to h2 and h4 are lost.
    let ep = Endpoint {
        vni: 1,
        mac: [2, 0, 0, 0, 3, 3],
        ips: Vec::new(),
    };
    net.nodes[2].set_local_endpoints(now, vec![ep]).unwrap();
    while let Some(t) = net.nodes[2].poll_transmit() {
        let (j, other) = net.peer_end(2, t.conn).unwrap();
        net.nodes[j].handle_bytes(now, other, &t.data);
    }
    let _ = sent(&mut net.nodes[0]);
    let knows = |net: &mut Net, i: usize| net.nodes[i].endpoints().any(|(p, _)| p == name(3));
    assert!(knows(&mut net, 0));
    assert!(!knows(&mut net, 1) && !knows(&mut net, 3));
    // Let time pass; every node runs its timers (keepalives keep the links up).
    let mut periods = 0;
    while !(knows(&mut net, 1) && knows(&mut net, 3)) {
        let t = net
            .nodes
            .iter_mut()
            .filter_map(Mesh::poll_timeout)
            .min()
            .unwrap();
        net.now = t;
        for mesh in &mut net.nodes {
            mesh.handle_timeout(t);
        }
        net.log.clear();
        net.pump();
        let asked = net
            .log
            .iter()
            .filter(|(from, _, data)| {
                *from == 0 && {
                    let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME_LEN);
                    decoder.push(data);
                    let mut found = false;
                    while let Some(body) = decoder.next_frame().unwrap() {
                        found |= matches!(
                            Message::decode(body),
                            Ok(Message::Digest { reply: true, .. })
                        );
                    }
                    found
                }
            })
            .count();
        assert!(asked <= 2, "anti-entropy asked {asked} neighbours at once");
        periods += 1;
        assert!(
            t < now + Duration::from_secs(600),
            "not repaired after 10 minutes"
        );
    }
    assert!(net.nodes.iter().all(|m| m.connection_count() >= 1));
    assert!(periods > 1);
}

#[test]
fn poll_timeout_never_spins() {
    let now = Instant::now();
    let mut net = Net::new(3, now);
    net.open(0, 1);
    net.pump();
    net.nodes[0].connect(now, addr(3));
    let _ = actions(&mut net.nodes[0]);
    net.nodes[0].handle_dial_failed(now, addr(3), "refused".into());
    let mut t = now;
    for _ in 0..100 {
        let next = net.nodes[0].poll_timeout().unwrap();
        assert!(next > t, "timer did not advance");
        t = next;
        net.nodes[0].handle_timeout(t);
        for action in actions(&mut net.nodes[0]) {
            if let Action::Dial { addr } = action {
                net.nodes[0].handle_dial_failed(t, addr, "refused".into());
            }
        }
        // Keep node 0's link alive.
        let conn = net.nodes[0].connected_peers().next().map(|(_, c)| c);
        if let Some(conn) = conn {
            net.nodes[0].handle_bytes(t, conn, &frame(&Message::Keepalive));
        }
        let _ = sent(&mut net.nodes[0]);
    }
}

#[test]
fn status_serializes_for_the_cli() {
    let now = Instant::now();
    let mut net = Net::new(2, now);
    net.open(0, 1);
    net.pump();
    net.nodes[0].connect(now, addr(7));
    let status = net.nodes[0].status(now + Duration::from_secs(3));
    let json = serde_json::to_value(&status).unwrap();
    assert_eq!(json["name"], "02:00:00:00:00:01");
    assert_eq!(json["peers"].as_array().unwrap().len(), 2);
    assert_eq!(json["connections"][0]["state"], "established");
    assert_eq!(json["connections"][0]["direction"], "outbound");
    assert_eq!(json["connections"][0]["since_secs"], 3.0);
    let target = json["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["addr"] == "127.0.0.7:6783")
        .unwrap();
    assert_eq!(target["source"], "explicit");
    assert_eq!(target["state"], "connecting");
    assert_eq!(json["peers"][1]["next_hop"], "02:00:00:00:00:02");
}

#[test]
fn config_is_validated() {
    let mut cfg = config(1);
    cfg.conn_limit = 0;
    assert!(Mesh::new(cfg, Instant::now(), 0).is_err());
    let mut cfg = config(1);
    cfg.timers.keepalive_timeout = cfg.timers.keepalive_interval;
    let err = Mesh::new(cfg, Instant::now(), 0).unwrap_err();
    assert!(err.to_string().contains("keepalive_timeout"));
    let mut cfg = config(1);
    cfg.gossip_batch_len = cfg.max_frame_len;
    assert!(Mesh::new(cfg, Instant::now(), 0).is_err());
}

#[test]
fn a_target_whose_peer_connected_to_us_is_not_redialled() {
    let now = Instant::now();
    let mut net = Net::new(2, now);
    // Node 0 names node 1, which is not up yet: the first dial fails and a retry waits.
    net.nodes[0].connect(now, addr(2));
    assert_eq!(
        actions(&mut net.nodes[0]),
        vec![Action::Dial { addr: addr(2) }]
    );
    net.nodes[0].handle_dial_failed(now, addr(2), "refused".into());
    // Node 1 comes up and connects to node 0 first.
    net.open(1, 0);
    assert!(net.pump().is_empty());
    assert_eq!(net.nodes[0].connection_count(), 1);
    // After the retry was due (at most 1.5 s), within the keepalive timeout: no dial, and
    // the target counts as connected.
    let later = now + Duration::from_secs(5);
    net.nodes[0].handle_timeout(later);
    let dials: Vec<_> = actions(&mut net.nodes[0])
        .into_iter()
        .filter(|a| matches!(a, Action::Dial { .. }))
        .collect();
    assert!(dials.is_empty(), "{dials:?}");
    let status = net.nodes[0].status(later);
    assert_eq!(status.targets[0].state, crate::TargetState::Connected);
    assert_eq!(status.targets[0].next_retry_in_secs, None);
}
