//! Two hosts (namespaces joined by an underlay veth), containers on each, VXLAN that weft
//! builds and parses in userspace between them; and a Linux kernel VTEP as a peer.

// Helpers outside #[test] functions fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use common::{Capture, Lab, frames, tcp_transfer, udp_socket_in, wait_for};
use weft::api::report::Heartbeat;

const H1: &str = "192.168.50.1";
const H2: &str = "192.168.50.2";

/// h1 and h2 with routers peered over the underlay; c1, c2 on h1 and c3, c4 on h2
/// (10.30.0.N/24).
fn two_hosts(test: &str) -> Option<Lab> {
    let mut lab = Lab::new(test)?;
    lab.add_ns(&["h1", "h2", "c1", "c2", "c3", "c4"]);
    lab.link("h1", &format!("{H1}/24"), "h2", &format!("{H2}/24"));
    lab.weft_ok("h1", &["launch", H2]);
    lab.weft_ok("h2", &["launch", H1]);
    for (host, c, ip) in [
        ("h1", "c1", "10.30.0.1/24"),
        ("h1", "c2", "10.30.0.2/24"),
        ("h2", "c3", "10.30.0.3/24"),
        ("h2", "c4", "10.30.0.4/24"),
    ] {
        let target = lab.ns(c);
        lab.weft_ok(host, &["attach", &target, "--ip", ip]);
    }
    Some(lab)
}

#[test]
fn all_pairs_ping_across_two_hosts() {
    let Some(mut lab) = two_hosts("cross_all_pairs") else {
        return;
    };
    for from in ["c1", "c2", "c3", "c4"] {
        for ip in ["10.30.0.1", "10.30.0.2", "10.30.0.3", "10.30.0.4"] {
            lab.assert_ping(from, ip);
        }
    }
    // Each side sees the other as a live weft peer, with its overlay MTU applied.
    let status = lab.status("h1");
    let peer = &status.peers[0];
    assert_eq!(
        peer.address,
        Some(format!("{H2}:4789").parse().unwrap()),
        "{status}"
    );
    wait_for("heartbeats to come up", Duration::from_secs(10), || {
        (lab.status("h1").peers[0].heartbeat == Heartbeat::Up).then_some(())
    });
    assert_eq!(status.overlay_mtu, 1450, "{status}");
    let mtu = lab.exec_ok("c3", &["cat", "/sys/class/net/weft0/mtu"]);
    assert_eq!(mtu.trim(), "1450");
}

#[test]
fn broadcast_and_multicast_cross_hosts_to_members_only() {
    let Some(mut lab) = Lab::new("cross_bcast_mcast") else {
        return;
    };
    lab.add_ns(&["h1", "h2", "c1", "c2", "b3"]);
    lab.link("h1", &format!("{H1}/24"), "h2", &format!("{H2}/24"));
    lab.weft_ok("h1", &["launch", H2]);
    lab.weft_ok("h2", &["launch", H1]);
    for host in ["h1", "h2"] {
        lab.weft_ok(host, &["network", "add", "blue", "--vni", "77"]);
    }
    for (host, c, ip, net) in [
        ("h1", "c1", "10.31.0.1/24", "default"),
        ("h2", "c2", "10.31.0.2/24", "default"),
        ("h2", "b3", "10.31.0.3/24", "blue"),
    ] {
        let target = lab.ns(c);
        lab.weft_ok(host, &["attach", &target, "--ip", ip, "--network", net]);
    }
    // Broadcast from c1 reaches c2 on the other host, never b3 on network blue.
    let mut c2 = Capture::start(&lab.ns("c2"), "weft0");
    let mut b3 = Capture::start(&lab.ns("b3"), "weft0");
    let sender = udp_socket_in(
        &lab.ns("c1"),
        SocketAddr::from((Ipv4Addr::new(10, 31, 0, 1), 0)),
    );
    sender.set_broadcast(true).unwrap();
    wait_for(
        "the broadcast to cross hosts",
        Duration::from_secs(10),
        || {
            sender
                .send_to(b"hello", (Ipv4Addr::new(10, 31, 0, 255), 9998))
                .unwrap();
            std::thread::sleep(Duration::from_millis(50));
            (c2.count(|f| frames::is_broadcast(f) && frames::udp_to_port(f, 9998)) > 0)
                .then_some(())
        },
    );
    assert_eq!(
        b3.count(|f| frames::udp_to_port(f, 9998)),
        0,
        "broadcast leaked into network blue"
    );

    // Multicast: c2 (remote) joins; the group reaches it; b3 sees nothing.
    let group = Ipv4Addr::new(239, 9, 9, 9);
    let member = udp_socket_in(
        &lab.ns("c2"),
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, 7009)),
    );
    member
        .join_multicast_v4(&group, &Ipv4Addr::new(10, 31, 0, 2))
        .unwrap();
    member
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    sender.set_multicast_ttl_v4(1).unwrap();
    let mut buf = [0u8; 32];
    wait_for(
        "the remote member to receive group traffic",
        Duration::from_secs(15),
        || {
            sender.send_to(b"group", (group, 7009)).unwrap();
            member.recv_from(&mut buf).ok().map(|_| ())
        },
    );
    assert_eq!(
        b3.count(|f| frames::udp_to_port(f, 7009)),
        0,
        "group traffic leaked into network blue"
    );
    // The member's host learned the membership through snooping (reports cross the tunnel too).
    assert!(lab.status("h1").counter("switch.multicast_to_members") > 0);
}

#[test]
fn a_100_mb_tcp_transfer_across_hosts_arrives_intact() {
    let Some(mut lab) = two_hosts("cross_tcp_100mb") else {
        return;
    };
    let (sent, received, n) = tcp_transfer(
        &lab.ns("c1"),
        &lab.ns("c3"),
        Ipv4Addr::new(10, 30, 0, 3),
        5002,
        100 << 20,
    );
    assert_eq!(n, 100 << 20);
    assert_eq!(sent, received, "the bytes changed on the way");
    // The bulk went as cut super-frames and came back coalesced.
    let s1 = lab.status("h1");
    let s2 = lab.status("h2");
    assert!(s1.counter("pmtu.segmented") > 0, "{s1}");
    assert!(s2.counter("gro.super_frames_out") > 0, "{s2}");
}

#[test]
fn a_host_restart_recovers() {
    let Some(mut lab) = two_hosts("cross_restart") else {
        return;
    };
    lab.assert_ping("c1", "10.30.0.3");
    lab.kill9("h2");
    assert!(!lab.ping_within("c1", "10.30.0.3", Duration::from_secs(2)));
    lab.weft_ok("h2", &["launch", H1]);
    lab.assert_ping("c1", "10.30.0.3");
    lab.assert_ping("c4", "10.30.0.2");
}

#[test]
fn a_kernel_vxlan_host_interoperates() {
    let Some(mut lab) = Lab::new("kernel_vtep") else {
        return;
    };
    lab.add_ns(&["h1", "k2", "c1", "c3"]);
    lab.link("h1", &format!("{H1}/24"), "k2", &format!("{H2}/24"));
    // k2 is a plain Linux VXLAN host, configured as flannel or Docker's overlay would:
    // a bridge, a vxlan device on the weft VNI, a static flood entry towards h1.
    let c3 = lab.ns("c3");
    for cmd in [
        vec!["ip", "link", "add", "br0", "type", "bridge"],
        vec!["ip", "link", "set", "br0", "up"],
        vec![
            "ip",
            "link",
            "add",
            "vx0",
            "type",
            "vxlan",
            "id",
            "1",
            "dstport",
            "4789",
            "local",
            H2,
            "nolearning",
        ],
        vec!["ip", "link", "set", "vx0", "master", "br0", "up"],
        vec![
            "bridge",
            "fdb",
            "append",
            "00:00:00:00:00:00",
            "dev",
            "vx0",
            "dst",
            H1,
        ],
        vec![
            "ip", "link", "add", "v3", "type", "veth", "peer", "name", "eth0", "netns", &c3,
        ],
        vec!["ip", "link", "set", "v3", "master", "br0", "up"],
    ] {
        lab.exec_ok("k2", &cmd);
    }
    lab.exec_ok("c3", &["ip", "addr", "add", "10.32.0.3/24", "dev", "eth0"]);
    lab.exec_ok("c3", &["ip", "link", "set", "eth0", "mtu", "1450", "up"]);
    lab.weft_ok("h1", &["launch", H2]);
    let c1 = lab.ns("c1");
    lab.weft_ok("h1", &["attach", &c1, "--ip", "10.32.0.1/24"]);
    lab.assert_ping("c1", "10.32.0.3");
    lab.assert_ping("c3", "10.32.0.1");
    let (sent, received, n) = tcp_transfer(
        &lab.ns("c1"),
        &c3,
        Ipv4Addr::new(10, 32, 0, 3),
        5003,
        20 << 20,
    );
    assert_eq!((n, sent), (20 << 20, received));
    let (sent, received, n) = tcp_transfer(
        &c3,
        &lab.ns("c1"),
        Ipv4Addr::new(10, 32, 0, 1),
        5004,
        20 << 20,
    );
    assert_eq!((n, sent), (20 << 20, received));
    // A kernel VTEP never answers weft's heartbeats; status says so rather than hiding it.
    let peer = wait_for("the heartbeat verdict", Duration::from_secs(10), || {
        let p = lab.status("h1").peers[0].clone();
        (p.heartbeat == Heartbeat::Down).then_some(p)
    });
    assert!(peer.reason.contains("kernel VTEP"), "{peer:?}");
}

/// c1 on h1 claims an MTU of 1500 although the path carries 1450 inside VXLAN; c3 on h2
/// has the overlay MTU. A ping from c1 that fits c1's link but not the path, and may not
/// be fragmented (IPv4 DF; any IPv6), gets weft's ICMP error (`error` in ping's words,
/// counted as `counter_name`) with the overlay MTU; c1's kernel learns the path MTU from
/// it; and a TCP transfer to c3 completes intact.
fn too_big_for_the_overlay(
    test: &str,
    (c1_cidr, c3_cidr): (&str, &str),
    error: &str,
    counter_name: &str,
    port: u16,
) {
    let Some(mut lab) = Lab::new(test) else {
        return;
    };
    lab.add_ns(&["h1", "h2", "c1", "c3"]);
    lab.link("h1", &format!("{H1}/24"), "h2", &format!("{H2}/24"));
    lab.weft_ok("h1", &["launch", H2]);
    lab.weft_ok("h2", &["launch", H1]);
    let c1 = lab.ns("c1");
    lab.weft_ok("h1", &["attach", &c1, "--ip", c1_cidr, "--mtu", "1500"]);
    let c3 = lab.ns("c3");
    lab.weft_ok("h2", &["attach", &c3, "--ip", c3_cidr]);
    let to: IpAddr = c3_cidr.split('/').next().unwrap().parse().unwrap();
    let (family, headers) = if to.is_ipv6() {
        // The kernel sends from an address only once duplicate address detection is done.
        lab.wait_ipv6_ready("c1");
        lab.wait_ipv6_ready("c3");
        ("-6", 40 + 8)
    } else {
        ("-4", 20 + 8)
    };
    let ip = to.to_string();
    // Over IPv6 this needs neighbour discovery, solicited-node multicast (33:33:ff:..),
    // across the hosts.
    lab.assert_ping("c1", &ip);
    let size = (1500 - headers).to_string();
    let ping = [
        "ping", family, "-c", "1", "-W", "2", "-M", "do", "-s", &size, &ip,
    ];
    let out = lab.exec("c1", &ping);
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains(error) && text.contains("1450"),
        "no {error:?} with mtu 1450: {text}"
    );
    let status = lab.status("h1");
    assert!(status.counter(counter_name) >= 1, "{status}");
    // The kernel learned the path MTU from it.
    let route = lab.exec_ok("c1", &["ip", family, "route", "get", &ip]);
    assert!(route.contains("mtu 1450"), "{route}");
    let (sent, received, n) = tcp_transfer(&c1, &c3, to, port, 20 << 20);
    assert_eq!((n, sent), (20 << 20, received));
}

#[test]
fn a_df_packet_too_big_for_the_overlay_gets_frag_needed_and_tcp_still_completes() {
    too_big_for_the_overlay(
        "pmtu",
        ("10.33.0.1/24", "10.33.0.3/24"),
        "Frag needed",
        "pmtu.frag_needed_sent",
        5005,
    );
}

#[test]
fn an_ipv6_packet_too_big_for_the_overlay_gets_packet_too_big_and_tcp_still_completes() {
    // IPv6 only (ULA), no IPv4 address on either container.
    too_big_for_the_overlay(
        "pmtu6",
        ("fd5a:33::1/64", "fd5a:33::3/64"),
        "Packet too big",
        "pmtu.packet_too_big_sent",
        5006,
    );
}

#[test]
fn bursts_of_small_frames_leave_in_batches_and_every_frame_arrives() {
    let Some(mut lab) = two_hosts("cross_vxlan_batches") else {
        return;
    };
    lab.assert_ping("c1", "10.30.0.3");
    const TOTAL: usize = 2000;
    // vxlan.batched_datagrams: datagrams that left in a sendmmsg with at least one other.
    let (status, batched) = common::assert_bursts_arrive_batched(
        &mut lab,
        "h1",
        ["c1", "c3"],
        "10.30.0.3:5041".parse().unwrap(),
        TOTAL,
        "vxlan.batched_datagrams",
    );
    assert_eq!(status.counter("drop.vxlan_send_failed"), 0, "{status}");
    eprintln!("{batched} of {TOTAL} datagrams left in shared sendmmsg calls");
}
