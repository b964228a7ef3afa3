//! Several routers' data-plane cores over a simulated underlay: path choice and fallback,
//! relaying as the last resort, broadcast trees, tunnel packing, PMTU answers, and the
//! idle password router that spun a core.

mod common;

use std::time::Duration;

use common::*;
use datapath::sim::{Sim, SimConfig, TUNNEL_PORT, TransmitKind, VXLAN_PORT};
use datapath::{Event, UdpSource};
use tunnel::path::Path;

/// Long enough for heartbeats to declare a path up or down (3 s timeout) and for the
/// selector's hold (3 s) to let traffic move.
const SETTLE: Duration = Duration::from_secs(8);

/// `n` routers, one host each, the given control connections, routes and endpoints
/// published.
fn mesh(seed: u64, n: usize, edges: &[(usize, usize)], config: &SimConfig) -> Sim {
    let mut sim = Sim::new(seed, n, config);
    for r in 0..n {
        sim.add_host(r, mac(r, 0), ip(r, 0));
    }
    for &(a, b) in edges {
        sim.connect(a, b);
    }
    sim.publish_routes();
    sim.publish_endpoints();
    sim
}

/// Sends frame `seq` from router `a`'s host to router `b`'s and lets it arrive; returns
/// the datagrams it took on VXLAN and in the tunnel from `a` (direct to `b` or not).
fn one_frame(sim: &mut Sim, a: usize, b: usize, seq: u32) -> (usize, usize) {
    let n = sim.routers.len();
    let before: Vec<(usize, usize)> = (0..n)
        .map(|to| {
            (
                sim.delivered(a, to, VXLAN_PORT),
                sim.delivered(a, to, TUNNEL_PORT),
            )
        })
        .collect();
    sim.send(a, 0, &[udp((a, 0), (b, 0), seq, 100)]);
    sim.run_for(Duration::from_millis(50));
    let got = seqs(&sim.take_received(b, 0));
    assert_eq!(
        got,
        vec![seq],
        "router {b} should get frame {seq} exactly once"
    );
    let after: Vec<(usize, usize)> = (0..n)
        .map(|to| {
            (
                sim.delivered(a, to, VXLAN_PORT),
                sim.delivered(a, to, TUNNEL_PORT),
            )
        })
        .collect();
    before
        .iter()
        .zip(&after)
        .fold((0, 0), |(v, t), (x, y)| (v + y.0 - x.0, t + y.1 - x.1))
}

#[test]
fn blocked_vxlan_falls_back_to_the_encrypted_tunnel_and_recovers() {
    let mut sim = mesh(1, 2, &[(0, 1)], &SimConfig::default());
    sim.run_for(SETTLE);
    assert_eq!(path(&sim, 0, 1), Path::Vxlan);
    let (vxlan, tunnel) = one_frame(&mut sim, 0, 1, 1);
    assert_eq!((vxlan, tunnel), (1, 0), "cleartext VXLAN while it works");

    // A firewall drops UDP 4789 between the hosts; the tunnel port still passes.
    sim.block_udp(0, 1, VXLAN_PORT);
    sim.run_for(SETTLE);
    assert_eq!(path(&sim, 0, 1), Path::Encrypted);
    assert_eq!(path(&sim, 1, 0), Path::Encrypted);
    let (vxlan, tunnel) = one_frame(&mut sim, 0, 1, 2);
    assert_eq!((vxlan, tunnel), (0, 1), "the frame takes the tunnel");
    let (vxlan, tunnel) = one_frame(&mut sim, 1, 0, 3);
    assert_eq!((vxlan, tunnel), (0, 1), "and so does the answer");

    // The firewall opens again: VXLAN answers heartbeats, and after the hold traffic
    // moves back to it.
    sim.unblock_udp(0, 1, VXLAN_PORT);
    sim.run_for(SETTLE);
    assert_eq!(path(&sim, 0, 1), Path::Vxlan);
    let (vxlan, tunnel) = one_frame(&mut sim, 0, 1, 4);
    assert_eq!((vxlan, tunnel), (1, 0));

    let moves: Vec<(Path, Path)> = sim.routers[0]
        .events
        .iter()
        .filter_map(|e| match e {
            Event::PathChanged { change, .. } => Some((change.from.path, change.to.path)),
            Event::Heartbeat { .. } => None,
        })
        .collect();
    assert!(moves.contains(&(Path::Vxlan, Path::Encrypted)), "{moves:?}");
    assert!(moves.contains(&(Path::Encrypted, Path::Vxlan)), "{moves:?}");
}

#[test]
fn lossy_reordering_links_still_choose_a_path_and_deliver() {
    let mut sim = mesh(7, 2, &[(0, 1)], &SimConfig::default());
    sim.both_ways(0, 1, |l| {
        l.loss = 0.2;
        l.delay = Duration::from_millis(5);
        l.jitter = Duration::from_millis(20);
    });
    sim.run_for(SETTLE);
    // One lost heartbeat in five does not take the path down (the timeout is 3 s).
    assert_eq!(path(&sim, 0, 1), Path::Vxlan);
    let frames: Vec<Vec<u8>> = (0..200).map(|s| udp((0, 0), (1, 0), s, 64)).collect();
    sim.send(0, 0, &frames);
    sim.run_for(Duration::from_secs(1));
    let got = seqs(&sim.take_received(1, 0));
    assert!(
        (120..=190).contains(&got.len()),
        "about 80% arrive: {}",
        got.len()
    );
    let mut sorted = got.clone();
    sorted.sort_unstable();
    assert_ne!(got, sorted, "jitter reorders datagrams");
    sorted.dedup();
    assert_eq!(sorted.len(), got.len(), "nothing arrives twice");
}

#[test]
fn a_neighbour_behind_blocked_udp_is_reached_through_a_third_router() {
    // 0, 1 and 2 all hold control connections, but no UDP passes between 0 and 2.
    let mut sim = mesh(2, 3, &[(0, 1), (1, 2), (0, 2)], &SimConfig::default());
    sim.block_udp(0, 2, VXLAN_PORT);
    sim.block_udp(0, 2, TUNNEL_PORT);
    sim.run_for(SETTLE);
    assert_eq!(path(&sim, 0, 2), Path::Relayed);
    assert_eq!(via(&sim, 0, 2), Some(sim.router(1).name));
    assert_eq!(path(&sim, 2, 0), Path::Relayed);
    assert_eq!(path(&sim, 0, 1), Path::Vxlan, "the relay itself is direct");

    let relayed = counter(&sim, 1, "relay.frames");
    let (vxlan, tunnel) = one_frame(&mut sim, 0, 2, 1);
    assert_eq!((vxlan, tunnel), (0, 1), "one tunnel datagram, to the relay");
    assert!(sim.delivered(0, 1, TUNNEL_PORT) > 0);
    one_frame(&mut sim, 2, 0, 2);
    assert_eq!(counter(&sim, 1, "relay.frames"), relayed + 2);

    // UDP between 0 and 2 is back: they talk directly again.
    sim.unblock_udp(0, 2, VXLAN_PORT);
    sim.unblock_udp(0, 2, TUNNEL_PORT);
    sim.run_for(SETTLE);
    assert_eq!(path(&sim, 0, 2), Path::Vxlan);
    let (vxlan, tunnel) = one_frame(&mut sim, 0, 2, 3);
    assert_eq!((vxlan, tunnel), (1, 0));
    assert_eq!(counter(&sim, 1, "relay.frames"), relayed + 2);
}

#[test]
fn a_peer_beyond_the_neighbours_is_relayed_along_the_route() {
    // A line: 0 - 1 - 2. Router 2 is known to 0 only by gossip.
    let mut sim = mesh(3, 3, &[(0, 1), (1, 2)], &SimConfig::default());
    sim.run_for(SETTLE);
    assert_eq!(path(&sim, 0, 2), Path::Relayed);
    let (_, tunnel) = one_frame(&mut sim, 0, 2, 1);
    assert_eq!(tunnel, 1);
    one_frame(&mut sim, 2, 0, 2);
    assert_eq!(counter(&sim, 1, "relay.frames"), 2);
}

/// Host 0 of router `origin` broadcasts once (and the sim runs until it has spread,
/// without letting time pass, so no heartbeat mixes in); returns how many copies each
/// router's host got and how many datagrams crossed the underlay.
fn broadcast_copies(sim: &mut Sim, origin: usize, seq: u32) -> (Vec<usize>, usize) {
    let before = sim.delivered_total();
    sim.send(origin, 0, &[broadcast((origin, 0), seq)]);
    sim.run_for(Duration::ZERO);
    let copies = (0..sim.routers.len())
        .map(|r| {
            let got = sim.take_received(r, 0);
            got.iter().filter(|f| seq_of(&f.frame) == Some(seq)).count()
        })
        .collect();
    (copies, sim.delivered_total() - before)
}

/// One copy for every router but the origin.
fn once_each(n: usize, origin: usize) -> Vec<usize> {
    (0..n).map(|r| usize::from(r != origin)).collect()
}

#[test]
fn a_broadcast_reaches_every_router_once_along_the_tree() {
    // A ring with a chord: several paths between most pairs. The broadcast tree carries
    // one copy per tree edge: n - 1 datagrams, however the origin would reach each peer
    // on its own (a copy per peer would cross the relays' links again).
    let edges = [(0, 1), (1, 2), (2, 3), (3, 4), (4, 0), (1, 3)];
    let mut sim = mesh(4, 5, &edges, &SimConfig::default());
    sim.run_for(SETTLE);
    for origin in 0..5 {
        let (copies, datagrams) = broadcast_copies(&mut sim, origin, 100 + origin as u32);
        assert_eq!(
            copies,
            once_each(5, origin),
            "broadcast from router {origin}"
        );
        assert_eq!(
            datagrams, 4,
            "one datagram per tree edge, from router {origin}"
        );
    }
    // A line: each router passes it on to the next, once.
    let mut sim = mesh(15, 4, &[(0, 1), (1, 2), (2, 3)], &SimConfig::default());
    sim.run_for(SETTLE);
    let (copies, datagrams) = broadcast_copies(&mut sim, 0, 7);
    assert_eq!(copies, once_each(4, 0));
    assert_eq!(datagrams, 3);
    assert_eq!(
        (1..4)
            .map(|r| sim.delivered(r - 1, r, TUNNEL_PORT) > 0)
            .collect::<Vec<_>>(),
        vec![true; 3]
    );
}

#[test]
fn a_broadcast_reaches_a_tree_child_behind_blocked_udp_once_through_a_relay() {
    let edges = [(0, 1), (1, 2), (2, 3), (3, 4), (4, 0), (1, 3), (0, 2)];
    let mut sim = mesh(5, 5, &edges, &SimConfig::default());
    // Router 1 is a child of 0 in 0's tree, with a child of its own (3); no UDP passes
    // between 0 and 1, and 2 is their common neighbour.
    sim.block_udp(0, 1, VXLAN_PORT);
    sim.block_udp(0, 1, TUNNEL_PORT);
    sim.run_for(SETTLE);
    assert_eq!(path(&sim, 0, 1), Path::Relayed);
    let relayed = counter(&sim, 2, "relay.frames");
    let (copies, datagrams) = broadcast_copies(&mut sim, 0, 1);
    assert_eq!(copies, once_each(5, 0));
    assert_eq!(
        counter(&sim, 2, "relay.frames"),
        relayed + 1,
        "2 carries 1's copy"
    );
    assert_eq!(
        datagrams, 5,
        "the tree's 4 edges, one of them detoured through 2"
    );
    for (seq, origin) in [(2, 1), (3, 3)] {
        let (copies, _) = broadcast_copies(&mut sim, origin, seq);
        assert_eq!(
            copies,
            once_each(5, origin),
            "broadcast from router {origin}"
        );
    }
}

/// The transmits router `r` made during `f`.
fn transmits_during(sim: &mut Sim, r: usize, f: impl FnOnce(&mut Sim)) -> Vec<TransmitKind> {
    let start = sim.routers[r].wire.log.len();
    f(sim);
    sim.routers[r].wire.log[start..]
        .iter()
        .map(|t| t.kind)
        .collect()
}

#[test]
fn small_frames_of_one_batch_share_tunnel_datagrams_and_keep_their_order() {
    // A password: everything goes in the encrypted tunnel.
    let config = SimConfig {
        password: true,
        ..SimConfig::default()
    };
    let mut sim = mesh(6, 2, &[(0, 1)], &config);
    sim.run_for(SETTLE);
    assert_eq!(path(&sim, 0, 1), Path::Encrypted);
    let frames: Vec<Vec<u8>> = (0..40).map(|s| udp((0, 0), (1, 0), s, 16)).collect();
    let sent = transmits_during(&mut sim, 0, |sim| sim.send(0, 0, &frames));
    let datagrams = sent
        .iter()
        .filter(|k| **k == TransmitKind::Udp(UdpSource::Tunnel))
        .count();
    // 40 frames of 58 bytes (77 with their record header) fit three 1407-byte datagrams.
    assert!((1..=3).contains(&datagrams), "{sent:?}");
    sim.run_for(Duration::from_millis(50));
    assert_eq!(seqs(&sim.take_received(1, 0)), (0..40).collect::<Vec<_>>());
    assert_eq!(counter(&sim, 0, "tunnel.packed_frames"), 40);
    // On the receiving side the 40 frames came in as few datagrams.
    assert!(counter(&sim, 1, "drop.tunnel_malformed_frame") == 0);
}

#[test]
fn small_vxlan_datagrams_of_one_batch_leave_in_one_batched_send() {
    let mut sim = mesh(8, 2, &[(0, 1)], &SimConfig::default());
    sim.run_for(SETTLE);
    assert_eq!(path(&sim, 0, 1), Path::Vxlan);
    // One flow: one source socket, so one batched send.
    let frames: Vec<Vec<u8>> = (0..20).map(|s| udp((0, 0), (1, 0), s, 16)).collect();
    let sent = transmits_during(&mut sim, 0, |sim| sim.send(0, 0, &frames));
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(matches!(
        sent[0],
        TransmitKind::UdpBatch(UdpSource::Vxlan(_))
    ));
    sim.run_for(Duration::from_millis(50));
    assert_eq!(seqs(&sim.take_received(1, 0)), (0..20).collect::<Vec<_>>());
    assert_eq!(counter(&sim, 0, "vxlan.batched_datagrams"), 20);
}

#[test]
fn frames_between_local_ports_leave_in_one_send_per_port() {
    let mut sim = Sim::new(9, 1, &SimConfig::default());
    for h in 0..3 {
        sim.add_host(0, mac(0, h), ip(0, h));
    }
    // Host 0 sends to hosts 1 and 2, interleaved, in one batch.
    let frames: Vec<Vec<u8>> = (0..10)
        .map(|s| udp((0, 0), (0, 1 + (s as usize % 2)), s, 16))
        .collect();
    let sent = transmits_during(&mut sim, 0, |sim| sim.send(0, 0, &frames));
    let locals = sent
        .iter()
        .filter(|k| matches!(k, TransmitKind::Local(_)))
        .count();
    assert_eq!(locals, 2, "{sent:?}");
    assert_eq!(seqs(&sim.take_received(0, 1)), vec![0, 2, 4, 6, 8]);
    assert_eq!(seqs(&sim.take_received(0, 2)), vec![1, 3, 5, 7, 9]);
}

/// Parses an ICMP "too big" answer a host got: (ICMPv4 type/code or ICMPv6 type, MTU).
fn too_big(frame: &[u8]) -> Option<(u8, u8, u32)> {
    let sliced = etherparse::SlicedPacket::from_ethernet(frame).ok()?;
    match sliced.transport? {
        etherparse::TransportSlice::Icmpv4(i) => {
            let b = i.bytes5to8();
            let mtu = u32::from(u16::from_be_bytes([b[2], b[3]]));
            Some((i.type_u8(), i.code_u8(), mtu))
        }
        etherparse::TransportSlice::Icmpv6(i) => {
            let b = i.bytes5to8();
            Some((i.type_u8(), i.code_u8(), u32::from_be_bytes(b)))
        }
        _ => None,
    }
}

#[test]
fn frames_too_big_for_the_path_are_answered_with_icmp_from_the_core() {
    let mut sim = mesh(10, 2, &[(0, 1)], &SimConfig::default());
    sim.run_for(SETTLE);
    assert_eq!(path(&sim, 0, 1), Path::Vxlan);
    // 1500-byte IPv4 (DF) and IPv6 packets; the overlay carries 1450.
    sim.send(0, 0, &[udp((0, 0), (1, 0), 1, 1500 - 28)]);
    sim.send(0, 0, &[udp6((0, 0), (1, 0), 1500 - 48)]);
    sim.run_for(Duration::from_millis(50));
    let answers: Vec<_> = sim
        .take_received(0, 0)
        .iter()
        .filter_map(|f| too_big(&f.frame))
        .collect();
    assert_eq!(answers, vec![(3, 4, 1450), (2, 0, 1450)]);
    assert!(
        seqs(&sim.take_received(1, 0)).is_empty(),
        "neither went out"
    );
    assert_eq!(counter(&sim, 0, "pmtu.frag_needed_sent"), 1);
    assert_eq!(counter(&sim, 0, "pmtu.packet_too_big_sent"), 1);

    // A non-IP frame too big for the path cannot be answered: its own reason counts.
    let mut frame = vec![0u8; 1600];
    frame[..6].copy_from_slice(&mac(1, 0).0);
    frame[6..12].copy_from_slice(&mac(0, 0).0);
    frame[12..14].copy_from_slice(&0x88b6u16.to_be_bytes());
    sim.send(0, 0, &[frame]);
    assert_eq!(counter(&sim, 0, "drop.pmtu_not_ip"), 1);
}

#[test]
fn the_encrypted_path_answers_with_its_own_smaller_mtu() {
    // Without a password containers get VXLAN's MTU (1450); when VXLAN is blocked the
    // tunnel carries 1407, and a 1450-byte DF packet is answered with that.
    let mut sim = mesh(11, 2, &[(0, 1)], &SimConfig::default());
    sim.block_udp(0, 1, VXLAN_PORT);
    sim.run_for(SETTLE);
    assert_eq!(path(&sim, 0, 1), Path::Encrypted);
    sim.send(0, 0, &[udp((0, 0), (1, 0), 1, 1450 - 28)]);
    let answers: Vec<_> = sim
        .take_received(0, 0)
        .iter()
        .filter_map(|f| too_big(&f.frame))
        .collect();
    assert_eq!(answers, vec![(3, 4, 1407)]);
}

#[test]
fn an_idle_password_router_sleeps_between_deadlines() {
    // A password, and a command-line peer outside any trusted subnet: cleartext to it is
    // forbidden, so its VXLAN monitor is never driven. Nothing else happens.
    let config = SimConfig {
        password: true,
        ..SimConfig::default()
    };
    let mut sim = Sim::new(12, 2, &config);
    sim.add_host(0, mac(0, 0), ip(0, 0));
    sim.add_static_peer(0, 1);
    let mut now = sim.now();
    let core = &mut sim.routers[0].core;
    let mut wakeups = 0;
    for _ in 0..200 {
        let due = core.poll_timeout();
        now = now.max(due);
        core.handle_timeout(now, &mut datapath_sink::Discard);
        wakeups += 1;
        assert!(
            core.poll_timeout() > now,
            "after its periodic work the core must not be due again at once"
        );
    }
    // 200 wakeups cover at least 100 s of idleness (none sooner than twice a second).
    assert!(
        now - sim.now() >= Duration::from_secs(100),
        "{wakeups} wakeups"
    );

    // The simulator agrees: a minute of idleness costs a bounded number of turns (it
    // also fails fast on a core that is due again at once).
    sim.run_for(Duration::from_secs(60));
    assert!(
        sim.routers[0].timeouts <= 130,
        "{}",
        sim.routers[0].timeouts
    );
}

mod datapath_sink {
    use datapath::{Sink, Transmit};

    /// Takes every transmit and sends nothing anywhere.
    pub(super) struct Discard;

    impl Sink for Discard {
        fn transmit(&mut self, t: Transmit<'_>) -> usize {
            t.units()
        }
    }
}

#[test]
fn a_password_router_never_sends_or_takes_cleartext_from_untrusted_peers() {
    let config = SimConfig {
        password: true,
        ..SimConfig::default()
    };
    let mut sim = mesh(13, 2, &[(0, 1)], &config);
    sim.run_for(SETTLE);
    assert_eq!(
        sim.delivered(0, 1, VXLAN_PORT),
        0,
        "no VXLAN heartbeats either"
    );
    one_frame(&mut sim, 0, 1, 1);
    assert_eq!(sim.delivered(0, 1, VXLAN_PORT), 0);
}

#[test]
fn the_simulation_is_deterministic() {
    let run = || {
        let mut sim = mesh(14, 3, &[(0, 1), (1, 2)], &SimConfig::default());
        sim.both_ways(0, 1, |l| {
            l.loss = 0.1;
            l.jitter = Duration::from_millis(10);
        });
        sim.run_for(SETTLE);
        let frames: Vec<Vec<u8>> = (0..50).map(|s| udp((0, 0), (2, 0), s, 32)).collect();
        sim.send(0, 0, &frames);
        sim.run_for(Duration::from_secs(1));
        seqs(&sim.take_received(2, 0))
    };
    assert_eq!(run(), run());
}

#[test]
fn a_router_known_by_address_and_by_name_is_one_peer() {
    let mut sim = Sim::new(16, 4, &SimConfig::default());
    for r in 0..4 {
        sim.add_host(r, mac(r, 0), ip(r, 0));
    }
    // 3 is named on 0's command line but never answers (as a kernel VTEP would not:
    // 3 does not know 0, so it drops 0's VXLAN).
    sim.add_static_peer(0, 3);
    // 0 learns of 1 by gossip (through 2) before anyone names 1 on a command line.
    sim.connect(0, 2);
    sim.connect(1, 2);
    sim.publish_routes();
    sim.add_static_peer(0, 1);
    sim.add_static_peer(1, 0);
    sim.run_for(SETTLE);
    let status = sim.status(0);
    let three = status
        .peers
        .iter()
        .find(|p| p.addr == Some(sim.vxlan_addr(3)))
        .expect("peer 3");
    assert_eq!(three.name, None, "no heartbeat ever named it");
    assert!(matches!(three.heartbeat, tunnel::PathState::Down { .. }));
    assert!(matches!(
        three.why,
        datapath::PathWhy::StaticVxlan { named: false, .. }
    ));
    assert_eq!(three.path, Path::Vxlan, "sending anyway");
    let by_address = status
        .peers
        .iter()
        .find(|p| p.addr == Some(sim.vxlan_addr(1)))
        .expect("peer 1 by address");
    assert_eq!(
        by_address.name,
        Some(sim.router(1).name),
        "its heartbeats named it"
    );

    // The control connection comes up: the entry known by address and the one known by
    // name become one, with both.
    sim.connect(0, 1);
    sim.publish_routes();
    sim.publish_endpoints();
    sim.run_for(SETTLE);
    let status = sim.status(0);
    let ones: Vec<_> = status
        .peers
        .iter()
        .filter(|p| p.name == Some(sim.router(1).name))
        .collect();
    assert_eq!(ones.len(), 1, "{ones:?}");
    assert_eq!(ones[0].addr, Some(sim.vxlan_addr(1)));
    assert_eq!(ones[0].path, Path::Vxlan);
    assert_eq!(status.peers.len(), 3);
    one_frame(&mut sim, 0, 1, 1);
    one_frame(&mut sim, 1, 0, 2);
}
