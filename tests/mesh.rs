//! The peer mesh with real routers: gossip, automatic connections, relaying through a
//! third host, recovery, connect and forget.

// Helpers outside #[test] functions fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::{Lab, tcp_transfer, wait_for};

/// The peer entry of `name` in a status report.
fn peer<'a>(status: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    status["peers"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == name)
}

fn established(status: &serde_json::Value) -> usize {
    status["connections"].as_array().map_or(0, |c| {
        c.iter().filter(|c| c["state"] == "established").count()
    })
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
    let h3_name = lab.status("h3")["name"].as_str().unwrap().to_string();

    // h1 learns h3 through gossip and reaches it through h2.
    let p = wait_for(
        "h1 to learn h3 and relay to it",
        Duration::from_secs(20),
        || {
            let s = lab.status("h1");
            peer(&s, &h3_name)
                .filter(|p| p["path"] == "relayed")
                .cloned()
        },
    );
    assert!(
        p["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("no direct path"),
        "{p}"
    );
    lab.assert_ping("c1", "10.70.0.3");
    let (sent, received, n) = tcp_transfer(&c1, &c3, Ipv4Addr::new(10, 70, 0, 3), 5010, 20 << 20);
    assert_eq!((n, sent), (20 << 20, received));
    assert!(
        lab.status("h2")["counters"]["relay.frames"]
            .as_u64()
            .unwrap_or(0)
            > 0,
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

#[test]
fn a_host_joining_through_one_peer_gets_connected_to_all() {
    let Some(mut lab) = Lab::new("mesh_join") else {
        return;
    };
    lab.add_ns(&["lan", "h1", "h2", "h3", "h4"]);
    // A shared underlay segment (a bridge in the lab's own "lan" namespace).
    lab.exec_ok("lan", &["ip", "link", "add", "br0", "type", "bridge"]);
    lab.exec_ok("lan", &["ip", "link", "set", "br0", "up"]);
    for (i, h) in ["h1", "h2", "h3", "h4"].iter().enumerate() {
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
                &format!("192.168.80.{}/24", i + 1),
                "dev",
                "u0",
            ],
        );
        lab.exec_ok(h, &["ip", "link", "set", "u0", "up"]);
    }
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
    let peers = lab.status("h4")["peers"].as_array().map_or(0, Vec::len);
    assert!(peers >= 3, "h4 knows {peers} peers");
}

#[test]
fn connect_and_forget_change_the_targets_and_survive_restart() {
    let Some(mut lab) = Lab::new("mesh_connect") else {
        return;
    };
    lab.add_ns(&["h1", "h2"]);
    lab.link("h1", "192.168.73.1/24", "h2", "192.168.73.2/24");
    lab.weft_ok("h1", &["launch"]);
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
    // The remembered target brings the connection back after a restart.
    lab.weft_ok("h1", &["stop"]);
    lab.weft_ok("h1", &["launch"]);
    wait_for(
        "the connection after restart",
        Duration::from_secs(20),
        || (established(&lab.status("h1")) == 1).then_some(()),
    );
}

#[test]
fn garbage_on_the_control_port_is_dropped_and_the_router_carries_on() {
    use std::io::Write as _;
    let Some(mut lab) = Lab::new("mesh_garbage") else {
        return;
    };
    lab.add_ns(&["h1", "h2"]);
    lab.link("h1", "192.168.74.1/24", "h2", "192.168.74.2/24");
    lab.weft_ok("h1", &["launch"]);
    let h2 = lab.ns("h2");
    for junk in [
        &b"GET / HTTP/1.0\r\n\r\n"[..],
        b"weft\x00\x09\x00\x09",
        b"weft\x00\x01\x00\x01\xff\xff\xff\xff garbage",
        &[0u8; 4096],
    ] {
        let fd = weft::netns::NetnsTarget::Name(h2.clone()).open().unwrap();
        let mut s = weft::netns::run_in_netns(std::os::fd::AsFd::as_fd(&fd), || {
            std::net::TcpStream::connect(("192.168.74.1", 6783))
        })
        .unwrap()
        .unwrap();
        let _ = s.write_all(junk);
    }
    // A real router still connects, and h1 still answers its API.
    lab.weft_ok("h2", &["launch", "192.168.74.1"]);
    wait_for("a legitimate connection", Duration::from_secs(20), || {
        (established(&lab.status("h1")) == 1).then_some(())
    });
}
