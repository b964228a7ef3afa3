//! One host, several containers, weft's userspace switch between them: real namespaces,
//! veths, routers and traffic.

// Helpers outside #[test] functions fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use common::{Capture, Lab, Status, frames, tcp_transfer, udp_socket_in, wait_for};
use weft::api::report::PortKind;

/// A host `h` with a running router and containers attached with 10.20.0.N/24.
fn host_with_containers(test: &str, containers: &[&str]) -> Option<Lab> {
    let mut lab = Lab::new(test)?;
    let mut names = vec!["h"];
    names.extend_from_slice(containers);
    lab.add_ns(&names);
    lab.weft_ok("h", &["launch"]);
    for (i, c) in containers.iter().enumerate() {
        let ip = format!("10.20.0.{}/24", i + 1);
        let target = lab.ns(c);
        lab.weft_ok("h", &["attach", &target, "--ip", &ip]);
    }
    Some(lab)
}

#[test]
fn three_containers_ping_each_other_and_the_exposed_host() {
    let Some(mut lab) = host_with_containers("three_containers_ping", &["c1", "c2", "c3"]) else {
        return;
    };
    lab.weft_ok("h", &["expose", "10.20.0.254/24"]);
    for from in ["c1", "c2", "c3"] {
        for ip in ["10.20.0.1", "10.20.0.2", "10.20.0.3", "10.20.0.254"] {
            lab.assert_ping(from, ip);
        }
    }
    // And the host reaches every container through its TAP.
    for ip in ["10.20.0.1", "10.20.0.2", "10.20.0.3"] {
        lab.assert_ping("h", ip);
    }
    let ps = lab.weft_ok("h", &["ps"]);
    assert_eq!(ps.lines().count(), 3, "{ps}");
    let metrics = lab.weft_ok("h", &["metrics"]);
    assert!(metrics.contains("weft_up 1"), "{metrics}");
    let frames = metrics
        .lines()
        .filter(|l| l.starts_with("weft_port_frames_total{") && l.contains("direction=\"rx\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum::<u64>();
    assert!(frames > 0, "no received frames in the metrics: {metrics}");
    assert!(
        ps.contains(&lab.ns("c2")) && ps.contains("10.20.0.2/24"),
        "{ps}"
    );
    // The same through the API's types: what the runtime plugins read.
    let eps = lab.ps("h");
    let c2 = eps
        .iter()
        .find(|e| e.target == lab.ns("c2"))
        .unwrap_or_else(|| panic!("no c2 in {eps:?}"));
    assert_eq!(c2.ips, vec!["10.20.0.2/24".parse().unwrap()]);
    assert_eq!(
        (c2.ifname.as_str(), c2.network.as_str()),
        ("weft0", "default")
    );
    assert!(c2.mac.is_valid_source(), "{c2:?}");
    let inside = lab.exec_ok("c2", &["cat", "/sys/class/net/weft0/address"]);
    assert_eq!(inside.trim(), c2.mac.to_string());
}

#[test]
fn arp_requests_for_known_ips_are_answered_by_the_proxy_not_flooded() {
    let Some(mut lab) = host_with_containers("arp_proxy", &["c1", "c2", "c3"]) else {
        return;
    };
    let mut c3 = Capture::start(&lab.ns("c3"), "weft0");
    let mut c2 = Capture::start(&lab.ns("c2"), "weft0");
    let before = lab.status("h").counter("switch.arp_proxied");
    // c1 has never resolved c2: its first ping broadcasts an ARP request for 10.20.0.2.
    lab.assert_ping("c1", "10.20.0.2");
    let after = lab.status("h").counter("switch.arp_proxied");
    assert!(
        after > before,
        "the proxy answered nothing ({before} -> {after})"
    );
    let target = Ipv4Addr::new(10, 20, 0, 2);
    assert_eq!(
        c3.count(|f| frames::arp_request_for(f, target)),
        0,
        "the ARP request leaked to a third container"
    );
    assert_eq!(
        c2.count(|f| frames::arp_request_for(f, target)),
        0,
        "the ARP request was flooded, not proxied"
    );
}

#[test]
fn broadcast_reaches_every_member_of_its_network_and_none_of_another() {
    let Some(mut lab) = Lab::new("broadcast_scope") else {
        return;
    };
    lab.add_ns(&["h", "a1", "a2", "b1", "b2"]);
    lab.weft_ok("h", &["launch"]);
    lab.weft_ok("h", &["network", "add", "blue", "--vni", "4242"]);
    for (c, ip, net) in [
        ("a1", "10.21.0.1/24", "default"),
        ("a2", "10.21.0.2/24", "default"),
        ("b1", "10.21.0.3/24", "blue"),
        ("b2", "10.21.0.4/24", "blue"),
    ] {
        let target = lab.ns(c);
        lab.weft_ok("h", &["attach", &target, "--ip", ip, "--network", net]);
    }
    // The same subnet on both networks: only the network keeps them apart.
    let mut caps: Vec<(&str, Capture)> = ["a2", "b1", "b2"]
        .iter()
        .map(|c| (*c, Capture::start(&lab.ns(c), "weft0")))
        .collect();
    let sender = udp_socket_in(&lab.ns("a1"), SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)));
    sender.set_broadcast(true).unwrap();
    let dest = SocketAddr::from((Ipv4Addr::new(10, 21, 0, 255), 9999));
    wait_for("the broadcast to reach a2", Duration::from_secs(10), || {
        sender.send_to(b"hello network", dest).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let (_, cap) = &mut caps[0];
        (cap.count(|f| frames::is_broadcast(f) && frames::udp_to_port(f, 9999)) > 0).then_some(())
    });
    for (name, cap) in caps.iter_mut().skip(1) {
        assert_eq!(
            cap.count(|f| frames::udp_to_port(f, 9999)),
            0,
            "broadcast crossed into network blue ({name})"
        );
    }
    let status = lab.status("h");
    assert!(
        status
            .networks
            .iter()
            .any(|n| n.name == "blue" && n.vni.get() == 4242),
        "{status}"
    );
}

#[test]
fn multicast_reaches_group_members_only() {
    let Some(lab) = host_with_containers("multicast_members", &["c1", "c2", "c3"]) else {
        return;
    };
    let group = Ipv4Addr::new(239, 7, 7, 7);
    let member = udp_socket_in(
        &lab.ns("c2"),
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, 7007)),
    );
    member
        .join_multicast_v4(&group, &Ipv4Addr::new(10, 20, 0, 2))
        .unwrap();
    member
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut outsider = Capture::start(&lab.ns("c3"), "weft0");
    let sender = udp_socket_in(
        &lab.ns("c1"),
        SocketAddr::from((Ipv4Addr::new(10, 20, 0, 1), 0)),
    );
    sender.set_multicast_ttl_v4(1).unwrap();
    let mut buf = [0u8; 64];
    // The member's IGMP report has to be snooped first; until then group traffic is dropped.
    wait_for(
        "the group member to receive",
        Duration::from_secs(15),
        || {
            sender.send_to(b"to the group", (group, 7007)).unwrap();
            member.recv_from(&mut buf).ok().map(|_| ())
        },
    );
    for _ in 0..20 {
        sender.send_to(b"to the group", (group, 7007)).unwrap();
    }
    let mut got = 0;
    while member.recv_from(&mut buf).is_ok() {
        got += 1;
    }
    assert!(got >= 15, "the member got {got} of 20");
    assert_eq!(
        outsider.count(|f| frames::udp_to_port(f, 7007)),
        0,
        "a non-member received group traffic"
    );
}

#[test]
fn a_100_mb_tcp_transfer_arrives_intact() {
    let Some(lab) = host_with_containers("tcp_100mb", &["c1", "c2"]) else {
        return;
    };
    let (sent, received, n) = tcp_transfer(
        &lab.ns("c1"),
        &lab.ns("c2"),
        Ipv4Addr::new(10, 20, 0, 2),
        5001,
        100 << 20,
    );
    assert_eq!(n, 100 << 20);
    assert_eq!(sent, received, "the bytes changed on the way");
}

#[test]
fn detach_stops_traffic_and_removes_the_interface() {
    let Some(mut lab) = host_with_containers("detach", &["c1", "c2"]) else {
        return;
    };
    lab.assert_ping("c1", "10.20.0.2");
    let target = lab.ns("c2");
    let out = lab.weft_ok("h", &["detach", &target]);
    assert!(out.contains("detached"), "{out}");
    assert!(
        !lab.ping_within("c1", "10.20.0.2", Duration::from_secs(2)),
        "traffic still flows after detach"
    );
    let links = lab.exec_ok("c2", &["ip", "-br", "link"]);
    assert!(!links.contains("weft0"), "{links}");
    assert_eq!(lab.weft_ok("h", &["ps"]).lines().count(), 1);
    let err = lab.weft_err("h", &["detach", &target]);
    assert!(err.contains("not attached"), "{err}");
}

#[test]
fn kill_9_then_launch_brings_traffic_back_without_touching_the_containers() {
    let Some(mut lab) = host_with_containers("kill9", &["c1", "c2"]) else {
        return;
    };
    lab.weft_ok("h", &["expose", "10.20.0.254/24"]);
    lab.assert_ping("c1", "10.20.0.2");
    let before = lab.exec_ok("c2", &["ip", "-o", "link", "show", "weft0"]);
    let addrs_before = lab.exec_ok("c2", &["ip", "-o", "-4", "addr", "show", "weft0"]);
    lab.kill9("h");
    assert!(
        !lab.ping_within("c1", "10.20.0.2", Duration::from_secs(2)),
        "traffic flowed without a router"
    );
    // The stale pidfile must not stop the relaunch.
    assert!(lab.home("h").join("weft.pid").exists());
    lab.weft_ok("h", &["launch"]);
    lab.assert_ping("c1", "10.20.0.2");
    lab.assert_ping("c2", "10.20.0.254");
    assert_eq!(
        lab.exec_ok("c2", &["ip", "-o", "link", "show", "weft0"]),
        before,
        "the container's interface changed"
    );
    assert_eq!(
        lab.exec_ok("c2", &["ip", "-o", "-4", "addr", "show", "weft0"]),
        addrs_before
    );
    assert_eq!(lab.weft_ok("h", &["ps"]).lines().count(), 2);
}

#[test]
fn a_relaunch_right_after_kill_9_waits_for_the_old_router_instead_of_refusing() {
    // The old router keeps its pidfile lock for a moment after SIGKILL while its
    // threads close the TAP and sockets; a relaunch in that moment is recovery, not a
    // second router.
    let Some(mut lab) = host_with_containers("kill9_relaunch", &["c1", "c2"]) else {
        return;
    };
    lab.weft_ok("h", &["expose", "10.20.0.254/24"]);
    let old = lab.kill9_nowait("h");
    let out = lab.weft_ok("h", &["launch"]);
    assert!(out.contains("weft router started"), "{out}");
    assert_ne!(lab.router_pid("h"), Some(old));
    lab.assert_ping("c1", "10.20.0.2");
    // A router that really runs is still refused, naming itself.
    let err = lab.weft_err("h", &["launch"]);
    assert!(err.contains("already running"), "{err}");
}

#[test]
fn weft_creates_no_bridge_vxlan_or_openvswitch_link() {
    let Some(mut lab) = host_with_containers("link_kinds", &["c1", "c2"]) else {
        return;
    };
    lab.weft_ok("h", &["expose", "10.20.0.254/24"]);
    let kinds = lab.exec_ok("h", &["ip", "-d", "-o", "link", "show"]);
    for line in kinds.lines() {
        for kind in ["bridge ", "vxlan ", "openvswitch", "bond "] {
            assert!(!line.contains(kind), "weft made a {kind} link: {line}");
        }
    }
    let veths = kinds.lines().filter(|l| l.contains("veth")).count();
    assert_eq!(veths, 2, "{kinds}");
    assert!(
        kinds
            .lines()
            .any(|l| l.contains(" weft:") && l.contains("tun")),
        "{kinds}"
    );
}

#[test]
fn bad_input_gets_a_clear_error_and_creates_nothing() {
    let Some(mut lab) = host_with_containers("bad_input", &["c1"]) else {
        return;
    };
    let links_before = lab.exec_ok("h", &["ip", "-o", "link"]);

    let missing = format!("{}-nosuch", lab.ns("x"));
    let err = lab.weft_err("h", &["attach", &missing, "--ip", "10.20.0.9/24"]);
    assert!(
        err.contains("no network namespace") && err.lines().count() == 1,
        "{err}"
    );

    let err = lab.weft_err("h", &["attach", &lab.ns("c1"), "--ip", "10.20.0.300/24"]);
    assert!(
        err.contains("invalid value") || err.contains("invalid"),
        "{err}"
    );

    lab.add_ns(&["c2"]);
    let target = lab.ns("c2");
    let err = lab.weft_err("h", &["attach", &target, "--ip", "10.20.0.1/24"]);
    assert!(
        err.contains("already in use") && err.contains(&lab.ns("c1")),
        "{err}"
    );
    assert!(
        !lab.exec_ok("c2", &["ip", "-br", "link"]).contains("weft0"),
        "a failed attach left an interface behind"
    );

    let err = lab.weft_err("h", &["launch"]);
    assert!(err.contains("already running"), "{err}");

    assert_eq!(
        lab.exec_ok("h", &["ip", "-o", "link"]),
        links_before,
        "a failed command left a link behind"
    );

    lab.weft_ok("h", &["stop"]);
    let err = lab.weft_err("h", &["status"]);
    assert!(err.contains("not running"), "{err}");
}

#[test]
fn reset_removes_every_link_and_state_file() {
    let Some(mut lab) = host_with_containers("reset", &["c1", "c2"]) else {
        return;
    };
    lab.weft_ok("h", &["expose", "10.20.0.254/24"]);
    lab.weft_ok("h", &["reset"]);
    let links = lab.exec_ok("h", &["ip", "-o", "link"]);
    assert_eq!(links.lines().count(), 1, "only lo should remain: {links}");
    assert!(!lab.exec_ok("c1", &["ip", "-br", "link"]).contains("weft0"));
    assert!(!lab.home("h").join("state.json").exists());
}

/// A host `h` with no router yet.
fn bare_host(test: &str) -> Option<Lab> {
    let mut lab = Lab::new(test)?;
    lab.add_ns(&["h"]);
    Some(lab)
}

/// The addresses in `weft status`'s peer list.
fn peer_addresses(status: &Status) -> Vec<String> {
    status
        .peers
        .iter()
        .filter_map(|p| p.address.map(|a| a.to_string()))
        .collect()
}

/// The default network's VNI in `weft status`.
fn default_vni(status: &Status) -> u32 {
    status
        .networks
        .iter()
        .find(|n| n.name == "default")
        .map(|n| n.vni.get())
        .expect("the default network in status")
}

/// Asserts a failed launch said one line and left no router (nor a log, when `started`
/// is false: nothing was even spawned).
fn assert_launch_failed_cleanly(lab: &mut Lab, err: &str, started: bool) {
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
    assert!(err.starts_with("weft: "), "{err}");
    let status = lab.weft_err("h", &["status"]);
    assert!(status.contains("not running"), "{status}");
    assert_eq!(
        lab.home("h").join("weft.log").exists(),
        started,
        "{}",
        lab.log("h")
    );
}

#[test]
fn a_peer_that_does_not_resolve_fails_launch_in_one_line_and_starts_nothing() {
    let Some(mut lab) = bare_host("launch_bad_peer") else {
        return;
    };
    for args in [
        &["launch", "no-such-host.invalid"][..],
        &["launch", "--vni", "5", "--", "no-such-host.invalid"][..],
    ] {
        let err = lab.weft_err("h", args);
        assert!(
            err.contains("cannot resolve peer \"no-such-host.invalid\""),
            "{err}"
        );
        assert_launch_failed_cleanly(&mut lab, &err, false);
    }
}

#[test]
fn a_busy_vxlan_port_fails_launch_with_the_routers_one_line_error_and_the_log() {
    let Some(mut lab) = bare_host("launch_busy_port") else {
        return;
    };
    let _taken = udp_socket_in(
        &lab.ns("h"),
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, 4789)),
    );
    let err = lab.weft_err("h", &["launch"]);
    let log = lab.home("h").join("weft.log");
    assert!(err.contains("4789") && err.contains("in use"), "{err}");
    assert!(
        err.trim_end().ends_with(&format!("see {}", log.display())),
        "{err}"
    );
    assert_launch_failed_cleanly(&mut lab, &err, true);
}

#[test]
fn peers_after_a_double_dash_are_peers() {
    let Some(mut lab) = bare_host("launch_double_dash") else {
        return;
    };
    lab.weft_ok("h", &["launch", "--vni", "9", "--", "192.0.2.1"]);
    let status = lab.status("h");
    assert!(
        peer_addresses(&status).contains(&"192.0.2.1:4789".to_string()),
        "{status}"
    );
    assert_eq!(default_vni(&status), 9);
}

#[test]
fn a_saved_peer_that_stops_resolving_does_not_block_relaunch_and_is_dialled_once_it_resolves() {
    let Some(mut lab) = host_with_containers("saved_peer_unresolvable", &["c1", "c2"]) else {
        return;
    };
    // The router was launched before the hosts file existed; relaunch with it mounted.
    lab.weft_ok("h", &["stop"]);
    let hosts = common::NetnsHosts::new(&lab.ns("h"), "192.0.2.7 weft-saved-peer\n");
    lab.weft_ok("h", &["launch"]);
    lab.weft_ok("h", &["connect", "weft-saved-peer"]);
    let status = lab.status("h");
    assert!(
        peer_addresses(&status).contains(&"192.0.2.7:4789".to_string()),
        "{status}"
    );

    lab.kill9("h");
    hosts.set("");
    let out = lab.weft_ok("h", &["launch"]);
    assert!(out.contains("weft router started"), "{out}");
    lab.assert_ping("c1", "10.20.0.2");
    assert!(
        lab.log("h").contains("saved peer weft-saved-peer"),
        "{}",
        lab.log("h")
    );
    // An operator sees it waiting, and why, without reading the log.
    let targets = lab.weft_ok("h", &["status", "targets"]);
    let line = targets
        .lines()
        .find(|l| l.starts_with("weft-saved-peer"))
        .unwrap_or_else(|| panic!("no line for the unresolved saved peer:\n{targets}"));
    assert!(line.contains("resolving"), "{targets}");
    assert!(line.contains("cannot resolve peer"), "{targets}");

    // The name resolves again (elsewhere): the router dials it without a relaunch.
    hosts.set("192.0.2.8 weft-saved-peer\n");
    wait_for(
        "the saved peer's new address in the peer list",
        Duration::from_secs(30),
        || {
            peer_addresses(&lab.status("h"))
                .contains(&"192.0.2.8:4789".to_string())
                .then_some(())
        },
    );
    let targets = lab.weft_ok("h", &["status", "targets"]);
    assert!(!targets.contains("resolving"), "{targets}");
}

#[test]
fn the_default_vni_survives_restarts_and_changes_only_when_asked() {
    let Some(mut lab) = bare_host("default_vni_saved") else {
        return;
    };
    lab.weft_ok("h", &["launch", "--vni", "77"]);
    assert_eq!(default_vni(&lab.status("h")), 77);
    lab.weft_ok("h", &["stop"]);
    lab.weft_ok("h", &["launch"]);
    assert_eq!(default_vni(&lab.status("h")), 77, "lost after stop");
    lab.kill9("h");
    let out = lab.weft_ok("h", &["launch", "--vni", "77"]);
    assert!(!out.contains("changed"), "{out}");
    assert_eq!(default_vni(&lab.status("h")), 77, "lost after kill -9");
    lab.weft_ok("h", &["stop"]);
    let out = lab.weft_ok("h", &["launch", "--vni", "78"]);
    assert!(
        out.contains("the default network's VNI changed from 77 to 78"),
        "{out}"
    );
    assert_eq!(default_vni(&lab.status("h")), 78);
    lab.weft_ok("h", &["stop"]);
    lab.weft_ok("h", &["launch"]);
    assert_eq!(default_vni(&lab.status("h")), 78);
}

#[test]
fn two_long_network_names_with_one_prefix_get_their_own_taps() {
    let Some(mut lab) = Lab::new("long_network_taps") else {
        return;
    };
    lab.add_ns(&["h", "c1", "c2"]);
    lab.weft_ok("h", &["launch"]);
    let nets = [
        ("production-frontend", "c1", "10.30.0"),
        ("production-backend", "c2", "10.31.0"),
    ];
    for (net, c, subnet) in nets {
        let target = lab.ns(c);
        let ip = format!("{subnet}.1/24");
        lab.weft_ok("h", &["attach", &target, "--ip", &ip, "--network", net]);
        let host = format!("{subnet}.254/24");
        lab.weft_ok("h", &["expose", &host, "--network", net]);
    }
    let taps = |lab: &Lab| {
        let links = lab.exec_ok("h", &["ip", "-o", "link", "show", "type", "tun"]);
        let mut names: Vec<String> = links
            .lines()
            .filter_map(|l| Some(l.split(": ").nth(1)?.to_string()))
            .collect();
        names.sort();
        names
    };
    let before = taps(&lab);
    assert_eq!(before.len(), 2, "{before:?}");
    assert!(
        before.iter().all(|t| t.starts_with("weft-prod")),
        "{before:?}"
    );
    let check = |lab: &Lab| {
        for (_, c, subnet) in nets {
            lab.assert_ping(c, &format!("{subnet}.254"));
            lab.assert_ping("h", &format!("{subnet}.1"));
        }
    };
    check(&lab);
    // A crash and relaunch re-opens both by their saved names.
    lab.kill9("h");
    lab.weft_ok("h", &["launch"]);
    check(&lab);
    assert_eq!(taps(&lab), before);
}

#[test]
fn kernel_drops_at_the_vxlan_socket_and_the_tap_are_counted() {
    let Some(mut lab) = host_with_containers("kernel_drops", &["c1"]) else {
        return;
    };
    lab.weft_ok("h", &["expose", "10.20.0.254/24"]);
    let drops = lab.weft_ok("h", &["status", "drops"]);
    for name in [
        "drop.vxlan_socket_overflow",
        "drop.tunnel_socket_overflow",
        "drop.port_kernel",
        "drop.port_send_failed",
    ] {
        assert!(drops.contains(name), "{name} missing: {drops}");
    }
    // Stop the router (our own child, by pid) and overrun what it would have read.
    let pid = nix::unistd::Pid::from_raw(lab.router_pid("h").unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let ns = lab.ns("h");
    let to_vxlan = udp_socket_in(&ns, SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
    let to_tap = udp_socket_in(&ns, SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)));
    to_tap.set_broadcast(true).unwrap();
    let broadcast = SocketAddr::from((Ipv4Addr::new(10, 20, 0, 255), 9999));
    // 28 MB: more than the socket's 8 MiB receive buffer (16 MiB as the kernel counts).
    for _ in 0..20_000 {
        let _ = to_vxlan.send_to(&[0u8; 1400], (Ipv4Addr::LOCALHOST, 4789));
    }
    for _ in 0..5_000 {
        let _ = to_tap.send_to(b"into a full TAP queue", broadcast);
    }
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    wait_for(
        "socket and TAP drops in the status",
        Duration::from_secs(20),
        || {
            let s = lab.status("h");
            let tap_drops = s
                .ports
                .iter()
                .find(|p| p.kind == PortKind::Tap)?
                .kernel_drops;
            (s.counter("drop.vxlan_socket_overflow") > 0 && tap_drops > 0).then_some(())
        },
    );
    let metrics = lab.weft_ok("h", &["metrics"]);
    assert!(
        metrics.contains("weft_port_dropped_total{port=\"weft\",kind=\"tap\",reason=\"kernel\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("event=\"drop.vxlan_socket_overflow\""),
        "{metrics}"
    );
}
