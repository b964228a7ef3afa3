//! The peer mesh with real routers: gossip, automatic connections, relaying through a
//! third host, recovery, connect and forget.

// Helpers outside #[test] functions fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use common::{Capture, Lab, Status, frames, tcp_transfer, wait_for};
use mesh::PeerName;
use weft::api::report::{ConnectionState, DataPath, Heartbeat, PeerReport};

/// The peer entry of `name` in a status report.
fn peer(status: &Status, name: PeerName) -> Option<&PeerReport> {
    status.peer_named(name)
}

fn established(status: &Status) -> usize {
    status
        .connections
        .iter()
        .filter(|c| c.state == ConnectionState::Established)
        .count()
}

#[test]
fn three_hosts_in_a_line_relay_through_the_middle() {
    let Some(mut lab) = Lab::new("mesh_line") else {
        return;
    };
    lab.add_ns(&["h1", "h2", "h3", "c1", "c3"]);
    // h1 and h3 each share a link with h2 only, and h2 does not route between them: h1
    // cannot reach h3 on the underlay.
    lab.link("h1", "192.168.71.1/24", "h2", "192.168.71.2/24");
    lab.link("h2", "192.168.72.2/24", "h3", "192.168.72.3/24");
    lab.weft_ok("h2", &["launch"]);
    lab.weft_ok("h1", &["launch", "192.168.71.2"]);
    lab.weft_ok("h3", &["launch", "192.168.72.2"]);
    let c1 = lab.ns("c1");
    let c3 = lab.ns("c3");
    lab.weft_ok("h1", &["attach", &c1, "--ip", "10.70.0.1/24"]);
    lab.weft_ok("h3", &["attach", &c3, "--ip", "10.70.0.3/24"]);
    let h3_name = lab.status("h3").name;
    let h2_name = lab.status("h2").name;

    // h1 learns h3 through gossip and reaches it through h2, and says so.
    let p = wait_for(
        "h1 to learn h3 and relay to it",
        Duration::from_secs(20),
        || {
            let s = lab.status("h1");
            peer(&s, h3_name)
                .filter(|p| p.path == DataPath::Relayed)
                .cloned()
        },
    );
    assert!(p.reason.contains("no direct path"), "{p:?}");
    assert_eq!(p.via, Some(h2_name), "{p:?}");
    let text = lab.weft_ok("h1", &["status", "peers"]);
    assert!(text.contains(&format!("relayed via {h2_name}(")), "{text}");
    lab.assert_ping("c1", "10.70.0.3");
    let (sent, received, n) = tcp_transfer(&c1, &c3, Ipv4Addr::new(10, 70, 0, 3), 5010, 20 << 20);
    assert_eq!((n, sent), (20 << 20, received));
    assert!(
        lab.status("h2").counter("relay.frames") > 0,
        "h2 relayed nothing"
    );

    // Cut h2: the relay is gone and so is the traffic; bring it back: traffic recovers.
    lab.kill9("h2");
    assert!(!lab.ping_within("c1", "10.70.0.3", Duration::from_secs(3)));
    lab.weft_ok("h2", &["launch"]);
    assert!(
        lab.ping_within("c1", "10.70.0.3", Duration::from_secs(30)),
        "traffic did not recover after h2 returned"
    );
}

/// Puts `hosts` on one shared underlay segment (a bridge in the lab's own "lan"
/// namespace, which must exist), host i at `<prefix>.<i+1>/24` on its interface `u0`.
fn shared_segment(lab: &mut Lab, hosts: &[&str], prefix: &str) {
    lab.exec_ok("lan", &["ip", "link", "add", "br0", "type", "bridge"]);
    lab.exec_ok("lan", &["ip", "link", "set", "br0", "up"]);
    for (i, h) in hosts.iter().enumerate() {
        let ifname = format!("p{i}");
        let h_ns = lab.ns(h);
        lab.exec_ok(
            "lan",
            &[
                "ip", "link", "add", &ifname, "type", "veth", "peer", "name", "u0", "netns", &h_ns,
            ],
        );
        lab.exec_ok(
            "lan",
            &["ip", "link", "set", &ifname, "master", "br0", "up"],
        );
        lab.exec_ok(
            h,
            &[
                "ip",
                "addr",
                "add",
                &format!("{prefix}.{}/24", i + 1),
                "dev",
                "u0",
            ],
        );
        lab.exec_ok(h, &["ip", "link", "set", "u0", "up"]);
    }
}

#[test]
fn a_host_joining_through_one_peer_gets_connected_to_all() {
    let Some(mut lab) = Lab::new("mesh_join") else {
        return;
    };
    lab.add_ns(&["lan", "h1", "h2", "h3", "h4"]);
    shared_segment(&mut lab, &["h1", "h2", "h3", "h4"], "192.168.80");
    lab.weft_ok("h1", &["launch"]);
    lab.weft_ok("h2", &["launch", "192.168.80.1"]);
    lab.weft_ok("h3", &["launch", "192.168.80.1"]);
    wait_for(
        "h1..h3 to form a full mesh",
        Duration::from_secs(30),
        || {
            ["h1", "h2", "h3"]
                .iter()
                .all(|h| established(&lab.status(h)) == 2)
                .then_some(())
        },
    );
    // h4 names only h1, and ends up connected to everyone.
    lab.weft_ok("h4", &["launch", "192.168.80.1"]);
    wait_for(
        "h4 to connect to all three",
        Duration::from_secs(30),
        || (established(&lab.status("h4")) == 3).then_some(()),
    );
    let peers = lab.status("h4").peers.len();
    assert!(peers >= 3, "h4 knows {peers} peers");
}

/// h1 and h2 linked at `<prefix>.1` and `<prefix>.2`, with a router running on h1.
fn two_hosts(test: &str, prefix: &str) -> Option<Lab> {
    let mut lab = Lab::new(test)?;
    lab.add_ns(&["h1", "h2"]);
    lab.link(
        "h1",
        &format!("{prefix}.1/24"),
        "h2",
        &format!("{prefix}.2/24"),
    );
    lab.weft_ok("h1", &["launch"]);
    Some(lab)
}

#[test]
fn connect_and_forget_change_the_targets_and_survive_restart() {
    let Some(mut lab) = two_hosts("mesh_connect", "192.168.73") else {
        return;
    };
    lab.weft_ok("h2", &["launch"]);
    lab.weft_ok("h1", &["connect", "192.168.73.2"]);
    wait_for("the connection", Duration::from_secs(20), || {
        (established(&lab.status("h1")) == 1).then_some(())
    });
    // A bogus target is retried and shows its error; forget removes it.
    lab.weft_ok("h1", &["connect", "192.168.73.99"]);
    let text = lab.weft_ok("h1", &["status", "targets"]);
    assert!(text.contains("192.168.73.99"), "{text}");
    lab.weft_ok("h1", &["forget", "192.168.73.99"]);
    let text = lab.weft_ok("h1", &["status", "targets"]);
    assert!(!text.contains("192.168.73.99"), "{text}");
    // The remembered target brings the connection back after a restart, and the router
    // keeps its peer name: h2 sees the same peer, not a new one.
    let name = lab.status("h1").name;
    lab.weft_ok("h1", &["stop"]);
    lab.weft_ok("h1", &["launch"]);
    assert_eq!(lab.status("h1").name, name, "name after stop/launch");
    wait_for(
        "the connection after restart",
        Duration::from_secs(20),
        || (established(&lab.status("h1")) == 1).then_some(()),
    );
    // A crash too.
    lab.kill9("h1");
    lab.weft_ok("h1", &["launch"]);
    assert_eq!(lab.status("h1").name, name, "name after kill -9");
    wait_for("h2 to see h1 again", Duration::from_secs(20), || {
        let s = lab.status("h2");
        (established(&s) == 1 && s.peers.len() == 1).then_some(())
    });
    assert!(peer(&lab.status("h2"), name).is_some());
}

#[test]
fn garbage_on_the_control_port_is_dropped_and_the_router_carries_on() {
    use std::io::Write as _;
    let Some(mut lab) = two_hosts("mesh_garbage", "192.168.74") else {
        return;
    };
    for junk in [
        &b"GET / HTTP/1.0\r\n\r\n"[..],
        b"weft\x00\x09\x00\x09",
        b"weft\x00\x01\x00\x01\xff\xff\xff\xff garbage",
        &[0u8; 4096],
    ] {
        let mut s = connect_from(&lab, "h2", "192.168.74.1:6783");
        let _ = s.write_all(junk);
    }
    // A real router still connects, and h1 still answers its API.
    lab.weft_ok("h2", &["launch", "192.168.74.1"]);
    wait_for("a legitimate connection", Duration::from_secs(20), || {
        (established(&lab.status("h1")) == 1).then_some(())
    });
}

/// Drops UDP 4789 (VXLAN) and 6784 (the tunnel) between `host` and `peer_ip`, both ways,
/// with nftables inside `host`'s own namespace; the TCP control connection stays up.
fn block_udp(lab: &Lab, host: &str, peer_ip: &str) {
    for cmd in [
        "add table inet wtblock".to_string(),
        "add chain inet wtblock in { type filter hook input priority 0 ; }".into(),
        "add chain inet wtblock out { type filter hook output priority 0 ; }".into(),
        format!("add rule inet wtblock in ip saddr {peer_ip} udp dport {{ 4789, 6784 }} drop"),
        format!("add rule inet wtblock out ip daddr {peer_ip} udp dport {{ 4789, 6784 }} drop"),
    ] {
        lab.exec_ok(host, &["nft", &cmd]);
    }
}

#[test]
fn a_neighbour_behind_blocked_udp_is_relayed_through_a_third_host_and_returns() {
    let Some(mut lab) = Lab::new("mesh_last_resort") else {
        return;
    };
    lab.add_ns(&["lan", "h1", "h2", "h3", "c1", "c3"]);
    shared_segment(&mut lab, &["h1", "h2", "h3"], "192.168.81");
    lab.weft_ok("h1", &["launch"]);
    lab.weft_ok("h2", &["launch", "192.168.81.1"]);
    lab.weft_ok("h3", &["launch", "192.168.81.1"]);
    wait_for("a full mesh", Duration::from_secs(30), || {
        ["h1", "h2", "h3"]
            .iter()
            .all(|h| established(&lab.status(h)) == 2)
            .then_some(())
    });
    let (c1, c3) = (lab.ns("c1"), lab.ns("c3"));
    lab.weft_ok("h1", &["attach", &c1, "--ip", "10.81.0.1/24"]);
    lab.weft_ok("h3", &["attach", &c3, "--ip", "10.81.0.3/24"]);
    let name = |lab: &mut Lab, h: &str| lab.status(h).name;
    let (h1_name, h2_name, h3_name) = (
        name(&mut lab, "h1"),
        name(&mut lab, "h2"),
        name(&mut lab, "h3"),
    );
    let path =
        |lab: &mut Lab, from: &str, to: PeerName| peer(&lab.status(from), to).map(|p| p.path);
    // Direct VXLAN, with heartbeats answered both ways.
    for (from, to) in [("h1", h3_name), ("h3", h1_name)] {
        wait_for("VXLAN heartbeats answered", Duration::from_secs(20), || {
            let s = lab.status(from);
            peer(&s, to)
                .filter(|p| p.path == DataPath::Vxlan && p.heartbeat == Heartbeat::Up)
                .map(drop)
        });
    }
    lab.assert_ping("c1", "10.81.0.3");

    // Both direct data paths between h1 and h3 fail; the control connection lives.
    block_udp(&lab, "h1", "192.168.81.3");
    let blocked = std::time::Instant::now();
    for (from, to) in [("h1", h3_name), ("h3", h1_name)] {
        let p = wait_for(
            &format!("{from} to relay to {to} through h2"),
            Duration::from_secs(15),
            || {
                let s = lab.status(from);
                peer(&s, to)
                    .filter(|p| p.path == DataPath::Relayed)
                    .cloned()
            },
        );
        assert_eq!(p.via, Some(h2_name), "{p:?}");
        assert!(p.reason.contains("direct path heartbeats failed"), "{p:?}");
    }
    eprintln!("relayed after {:?}", blocked.elapsed());
    assert_eq!(
        established(&lab.status("h1")),
        2,
        "the control connection fell"
    );
    let relayed_before = lab.status("h2").counter("relay.frames");
    lab.assert_ping("c1", "10.81.0.3");
    let (sent, received, n) = tcp_transfer(&c1, &c3, Ipv4Addr::new(10, 81, 0, 3), 5011, 4 << 20);
    assert_eq!((n, sent), (4 << 20, received));
    let relayed = lab.status("h2").counter("relay.frames");
    assert!(relayed > relayed_before, "h2 relayed nothing");
    // Broadcasts reach h3 too: h1's tree sends them through h2, to flood on from h3.
    let mut inside = Capture::start(&c3, "weft0");
    let sock = common::udp_socket_in(&c1, SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)));
    sock.set_broadcast(true).unwrap();
    wait_for("a broadcast from c1 at c3", Duration::from_secs(10), || {
        sock.send_to(b"everyone", ("10.81.0.255", 5012)).unwrap();
        (inside.count(|f| frames::is_broadcast(f) && frames::udp_to_port(f, 5012)) > 0)
            .then_some(())
    });
    // Both status views name the relay.
    let text = lab.weft_ok("h1", &["status", "peers"]);
    assert!(text.contains(&format!("relayed via {h2_name}(")), "{text}");
    let text = lab.weft_ok("h1", &["status", "connections"]);
    assert!(text.contains(&format!("relayed via {h2_name}(")), "{text}");
    let conns = lab.status("h1");
    assert!(
        conns
            .connections
            .iter()
            .any(|c| c.peer == Some(h3_name) && c.via == Some(h2_name)),
        "{conns}"
    );

    // The block goes: back to direct VXLAN.
    lab.exec_ok("h1", &["nft", "delete table inet wtblock"]);
    wait_for("direct VXLAN again", Duration::from_secs(20), || {
        (path(&mut lab, "h1", h3_name) == Some(DataPath::Vxlan)).then_some(())
    });
    lab.assert_ping("c1", "10.81.0.3");
}

/// A TCP connection from inside `host`'s namespace.
fn connect_from(lab: &Lab, host: &str, addr: &str) -> TcpStream {
    let fd = weft::netns::NetnsTarget::Name(lab.ns(host)).open().unwrap();
    let addr: SocketAddr = addr.parse().unwrap();
    weft::netns::run_in_netns(std::os::fd::AsFd::as_fd(&fd), || TcpStream::connect(addr))
        .unwrap()
        .unwrap()
}

#[test]
fn a_half_open_control_connection_is_dropped_at_its_deadline_while_a_real_peer_connects() {
    use std::io::{Read as _, Write as _};
    let Some(mut lab) = two_hosts("mesh_half_open", "192.168.75") else {
        return;
    };
    // One connection says nothing; one sends 3 of the 8 preamble bytes and stops.
    let silent = connect_from(&lab, "h2", "192.168.75.1:6783");
    let mut partial = connect_from(&lab, "h2", "192.168.75.1:6783");
    partial.write_all(b"wef").unwrap();
    let opened = std::time::Instant::now();
    // Meanwhile a real router connects.
    lab.weft_ok("h2", &["launch", "192.168.75.1"]);
    wait_for("a legitimate connection", Duration::from_secs(20), || {
        (established(&lab.status("h1")) == 1).then_some(())
    });
    let open = lab
        .status("h1")
        .connections
        .iter()
        .filter(|c| c.state != ConnectionState::Established && c.last_error.is_none())
        .count();
    assert_eq!(
        open, 2,
        "the half-open connections while the peer connected"
    );
    // h1 closes both (its preamble may come first), after its handshake deadline.
    for mut s in [silent, partial] {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut got = Vec::new();
        match s.read_to_end(&mut got) {
            Ok(_) => {}
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
        }
    }
    let took = opened.elapsed();
    eprintln!("half-open connections closed after {took:?}");
    assert!(took < Duration::from_secs(20), "closed only after {took:?}");
    let status = wait_for("the reasons in status", Duration::from_secs(10), || {
        let s = lab.status("h1");
        let timeouts = s
            .connections
            .iter()
            .filter(|c| {
                c.last_error
                    .as_deref()
                    .is_some_and(|e| e.contains("handshake timeout"))
            })
            .count();
        // The failure log keeps one entry per remote IP.
        (timeouts == 1).then_some(s)
    });
    assert_eq!(established(&status), 1, "{status}");
}
