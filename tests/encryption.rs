//! Encryption and fallback with real routers: password peers, what crosses the wire,
//! refused strangers, falling back from blocked VXLAN and back, replayed datagrams.

// Helpers outside #[test] functions fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Capture, Lab, Status, tcp_transfer, wait_for};
use weft::api::report::{DataPath, MeshEncryption};

const H1: &str = "192.168.90.1";
const H2: &str = "192.168.90.2";

/// Two linked hosts, h1 and h2, and two container namespaces, c1 and c2.
fn hosts(test: &str) -> Option<Lab> {
    let mut lab = Lab::new(test)?;
    lab.add_ns(&["h1", "h2", "c1", "c2"]);
    lab.link("h1", &format!("{H1}/24"), "h2", &format!("{H2}/24"));
    Some(lab)
}

/// Writes `password` (with the newline an editor adds) to a file in the lab; its path.
fn password_file(lab: &Lab, name: &str, password: &str) -> String {
    let file = lab.tmp(name);
    std::fs::write(&file, format!("{password}\n")).unwrap();
    file.to_string_lossy().into_owned()
}

/// Attaches c1 to h1 and c2 to h2.
fn attach_containers(lab: &mut Lab) {
    let (c1, c2) = (lab.ns("c1"), lab.ns("c2"));
    lab.weft_ok("h1", &["attach", &c1, "--ip", "10.90.0.1/24"]);
    lab.weft_ok("h2", &["attach", &c2, "--ip", "10.90.0.2/24"]);
}

/// Two hosts with a container each; `passwords` gives each host's password (None: none).
fn pair(test: &str, passwords: [Option<&str>; 2]) -> Option<Lab> {
    let mut lab = hosts(test)?;
    for (host, peer, pw) in [("h1", H2, passwords[0]), ("h2", H1, passwords[1])] {
        let mut args = vec!["launch".to_string(), peer.to_string()];
        if let Some(pw) = pw {
            args.push("--password-file".into());
            args.push(password_file(&lab, &format!("{host}.password"), pw));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        lab.weft_ok(host, &args);
    }
    attach_containers(&mut lab);
    Some(lab)
}

/// Two hosts sharing `password`, once their path is encrypted and c1 reaches c2.
fn encrypted_pair(test: &str, password: &str) -> Option<Lab> {
    let mut lab = pair(test, [Some(password), Some(password)])?;
    wait_for("the encrypted path", Duration::from_secs(20), || {
        (path_to_peer(&lab.status("h1")) == Some(DataPath::Encrypted)).then_some(())
    });
    lab.assert_ping("c1", "10.90.0.2");
    Some(lab)
}

/// The path to the host's one peer (none before the peer is known).
fn path_to_peer(status: &Status) -> Option<DataPath> {
    status.peers.first().map(|p| p.path)
}

#[test]
fn password_peers_talk_and_no_cleartext_crosses_the_underlay() {
    let Some(mut lab) = encrypted_pair("enc_password", "correct horse") else {
        return;
    };
    let (sent, received, n) = tcp_transfer(
        &lab.ns("c1"),
        &lab.ns("c2"),
        Ipv4Addr::new(10, 90, 0, 2),
        5020,
        100 << 20,
    );
    assert_eq!((n, sent), (100 << 20, received));
    // Watch everything that crosses the underlay link, both ways (a capture sees what
    // arrives at its interface), while a marker goes through TCP.
    let mut to_h2 = Capture::start(&lab.ns("h2"), "u-h1");
    let mut to_h1 = Capture::start(&lab.ns("h1"), "u-h2");
    // The positive control: the same capture on the container's side does see the marker.
    let mut inside = Capture::start(&lab.ns("c2"), "weft0");
    let marker = b"WEFT-MARKER-SHOULD-NEVER-BE-SEEN";
    marker_transfer(&lab, marker);
    let has_marker = |f: &Vec<u8>| f.windows(marker.len()).any(|w| w == marker);
    assert!(
        inside.drain().iter().any(has_marker),
        "the control capture missed the marker"
    );
    let mut frames = to_h2.drain().to_vec();
    frames.extend_from_slice(to_h1.drain());
    assert!(
        frames.len() > 10,
        "the capture saw only {} frames",
        frames.len()
    );
    assert!(
        !frames.iter().any(has_marker),
        "the marker crossed the underlay in clear"
    );
    // Nothing went over VXLAN at all.
    assert!(!frames.iter().any(|f| f.len() > 37
        && f[12..14] == [8, 0]
        && f[23] == 17
        && f[36..38] == 4789u16.to_be_bytes()));
    let text = lab.weft_ok("h1", &["status", "connections"]);
    assert!(
        text.contains("authenticated") && text.contains("encrypted"),
        "{text}"
    );
}

/// Routers with nothing to carry sleep until their next deadline. A password router's
/// VXLAN monitor, never driven (cleartext is not allowed), once had a deadline stuck in
/// the past that kept its data-plane thread spinning at a full core.
#[test]
fn idle_password_routers_sleep() {
    let Some(lab) = encrypted_pair("enc_idle", "sleepy") else {
        return;
    };
    // The measurement window itself: CPU used over a fixed stretch of idle time.
    let window = Duration::from_secs(3);
    let before = ["h1", "h2"].map(|h| lab.router_cpu_ticks(h));
    std::thread::sleep(window);
    let after = ["h1", "h2"].map(|h| lab.router_cpu_ticks(h));
    for (i, host) in ["h1", "h2"].iter().enumerate() {
        let busy = (after[i] - before[i]) as f64 / 100.0 / window.as_secs_f64();
        assert!(
            busy < 0.2,
            "idle router {host} kept {:.0}% of a core busy",
            busy * 100.0
        );
    }
}

/// Sends `marker` repeatedly over TCP from c1 to c2.
fn marker_transfer(lab: &Lab, marker: &[u8]) {
    use std::io::{Read as _, Write as _};
    use std::os::fd::AsFd as _;
    let to = weft::netns::NetnsTarget::Name(lab.ns("c2")).open().unwrap();
    let listener = weft::netns::run_in_netns(to.as_fd(), || {
        std::net::TcpListener::bind(("0.0.0.0", 5021))
    })
    .unwrap()
    .unwrap();
    let reader = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut all = Vec::new();
        s.read_to_end(&mut all).unwrap();
        all.len()
    });
    let from = weft::netns::NetnsTarget::Name(lab.ns("c1")).open().unwrap();
    let mut s = weft::netns::run_in_netns(from.as_fd(), || {
        std::net::TcpStream::connect(("10.90.0.2", 5021))
    })
    .unwrap()
    .unwrap();
    for _ in 0..1000 {
        s.write_all(marker).unwrap();
    }
    drop(s);
    assert_eq!(reader.join().unwrap(), 1000 * marker.len());
}

#[test]
fn a_peer_with_the_wrong_password_is_refused() {
    let Some(mut lab) = pair("enc_wrong", [Some("one password"), Some("another one")]) else {
        return;
    };
    let text = wait_for(
        "both sides to report the refusal",
        Duration::from_secs(20),
        || {
            let a = lab.weft_ok("h1", &["status", "connections"]);
            let b = lab.weft_ok("h2", &["status", "connections"]);
            (a.contains("password differs") && b.contains("password differs")).then_some(a + &b)
        },
    );
    assert!(!text.contains("established"), "{text}");
    assert!(
        !lab.ping_within("c1", "10.90.0.2", Duration::from_secs(3)),
        "traffic flowed between strangers"
    );
}

#[test]
fn blocked_vxlan_falls_back_to_the_tunnel_and_returns() {
    let Some(mut lab) = pair("enc_fallback", [None, None]) else {
        return;
    };
    wait_for("the VXLAN path", Duration::from_secs(20), || {
        (path_to_peer(&lab.status("h1")) == Some(DataPath::Vxlan)).then_some(())
    });
    lab.assert_ping("c1", "10.90.0.2");
    let stream = Stream::start(&lab, 5030);
    // Drop VXLAN both ways, inside h2's own namespace.
    lab.exec_ok("h2", &["nft", "add table inet wtblock"]);
    lab.exec_ok(
        "h2",
        &[
            "nft",
            "add chain inet wtblock in { type filter hook input priority 0 ; }",
        ],
    );
    lab.exec_ok(
        "h2",
        &[
            "nft",
            "add chain inet wtblock out { type filter hook output priority 0 ; }",
        ],
    );
    lab.exec_ok(
        "h2",
        &["nft", "add rule inet wtblock in udp dport 4789 drop"],
    );
    lab.exec_ok(
        "h2",
        &["nft", "add rule inet wtblock out udp dport 4789 drop"],
    );
    // Timed with a datagram every 20 ms, not a ping a second: to the tens of milliseconds.
    let blocked = Instant::now();
    let after = stream.sent();
    stream.wait_beyond(after, Duration::from_secs(10));
    let took = blocked.elapsed();
    eprintln!("fallback took {took:?}");
    assert!(took <= Duration::from_secs(5), "fallback took {took:?}");
    let status = lab.status("h1");
    assert_eq!(path_to_peer(&status), Some(DataPath::Encrypted), "{status}");
    assert!(
        status.peers[0].reason.contains("vxlan heartbeats failed"),
        "{status}"
    );
    // Unblock: back to VXLAN.
    lab.exec_ok("h2", &["nft", "delete table inet wtblock"]);
    wait_for("the return to VXLAN", Duration::from_secs(20), || {
        (path_to_peer(&lab.status("h1")) == Some(DataPath::Vxlan)).then_some(())
    });
    lab.assert_ping("c1", "10.90.0.2");
}

#[test]
fn a_replayed_tunnel_datagram_is_dropped() {
    let Some(mut lab) = encrypted_pair("enc_replay", "replay test") else {
        return;
    };
    let rx = common::udp_socket_in(
        &lab.ns("c2"),
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, 5031)),
    );
    rx.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let tx = common::udp_socket_in(&lab.ns("c1"), SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)));
    // One data frame with a marker, of a size nothing else on the wire has: capture the
    // tunnel datagram that carries it, then send that datagram's bytes again.
    let mut wire = Capture::start(&lab.ns("h2"), "u-h1");
    let mut marker = b"WEFT-REPLAY-MARKER".to_vec();
    marker.resize(1000, b'.');
    tx.send_to(&marker, ("10.90.0.2", 5031)).unwrap();
    assert_eq!(recv_until(&rx, b"WEFT-REPLAY-MARKER"), 0, "first delivery");
    let carriers: Vec<Vec<u8>> = wire
        .drain()
        .iter()
        .filter(|f| {
            f.len() > 42 + marker.len()
                && f[12..14] == [8, 0]
                && f[23] == 17
                && f[36..38] == 6784u16.to_be_bytes()
                && f[26..30] == [192, 168, 90, 1]
        })
        .map(|f| f[42..].to_vec())
        .collect();
    assert_eq!(
        carriers.len(),
        1,
        "tunnel datagrams big enough for the marker"
    );
    let before = lab.status("h2").counter("drop.tunnel_replayed");
    let sock = common::udp_socket_in(&lab.ns("h1"), SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)));
    for _ in 0..3 {
        sock.send_to(&carriers[0], (H2, 6784)).unwrap();
    }
    wait_for("the replay counter", Duration::from_secs(10), || {
        (lab.status("h2").counter("drop.tunnel_replayed") >= before + 3).then_some(())
    });
    // A fresh datagram after the replays is the barrier: h2 handles datagrams in order, so
    // a replayed marker delivered to c2 would arrive before it.
    tx.send_to(b"WEFT-AFTER-REPLAY", ("10.90.0.2", 5031))
        .unwrap();
    assert_eq!(
        recv_until(&rx, b"WEFT-AFTER-REPLAY"),
        0,
        "a replayed datagram was delivered to the container"
    );
}

/// Receives on `rx` until a datagram starting with `wanted` arrives (panics after 10 s);
/// returns how many other datagrams came first.
fn recv_until(rx: &UdpSocket, wanted: &[u8]) -> usize {
    let mut buf = [0u8; 2048];
    let mut others = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(
            Instant::now() < deadline,
            "no datagram {:?}",
            String::from_utf8_lossy(wanted)
        );
        match rx.recv(&mut buf) {
            Ok(n) if buf[..n].starts_with(wanted) => return others,
            Ok(_) => others += 1,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("receive: {e}"),
        }
    }
}

/// Numbered UDP datagrams from c1 to c2 every 20 ms, so a test can time an outage far
/// more finely than a ping a second would.
struct Stream {
    rx: UdpSocket,
    sent: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    sender: Option<std::thread::JoinHandle<()>>,
}

impl Stream {
    fn start(lab: &Lab, port: u16) -> Self {
        let rx = common::udp_socket_in(
            &lab.ns("c2"),
            SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)),
        );
        rx.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let tx = common::udp_socket_in(&lab.ns("c1"), SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)));
        let sent = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let sender = {
            let (sent, stop) = (Arc::clone(&sent), Arc::clone(&stop));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let seq = sent.fetch_add(1, Ordering::SeqCst) + 1;
                    // A full socket buffer or an unreachable moment is the outage itself.
                    let _ = tx.send_to(&seq.to_be_bytes(), ("10.90.0.2", port));
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        Self {
            rx,
            sent,
            stop,
            sender: Some(sender),
        }
    }

    /// How many datagrams have been sent so far.
    fn sent(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }

    /// Waits until a datagram numbered above `seq` arrives (panics after `timeout`).
    fn wait_beyond(&self, seq: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 64];
        loop {
            assert!(
                Instant::now() < deadline,
                "no datagram beyond {seq} within {timeout:?}"
            );
            match self.rx.recv(&mut buf) {
                Ok(8) if u64::from_be_bytes(buf[..8].try_into().unwrap()) > seq => return,
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => panic!("receive: {e}"),
            }
        }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.sender.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn weft_password_in_the_environment_works_like_a_password_file() {
    let Some(mut lab) = hosts("enc_env") else {
        return;
    };
    let file = password_file(&lab, "pw", "from the environment");
    lab.weft_ok("h1", &["launch", H2, "--password-file", &file]);
    // An empty variable is a clear error, not "no password".
    let out = lab.weft_env("h2", &[("WEFT_PASSWORD", "")], &["launch", H1]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("WEFT_PASSWORD is set but empty"), "{err}");
    let out = lab.weft_env(
        "h2",
        &[("WEFT_PASSWORD", "from the environment")],
        &["launch", H1],
    );
    assert!(out.status.success(), "{out:?}\n{}", lab.log("h2"));
    attach_containers(&mut lab);
    // Only the same password on both sides gives an authenticated, encrypted path.
    wait_for("the encrypted path", Duration::from_secs(20), || {
        (path_to_peer(&lab.status("h2")) == Some(DataPath::Encrypted)).then_some(())
    });
    let status = lab.status("h2");
    assert_eq!(status.encryption, MeshEncryption::Password, "{status}");
    let text = lab.weft_ok("h2", &["status", "connections"]);
    assert!(text.contains("password (authenticated)"), "{text}");
    lab.assert_ping("c2", "10.90.0.1");
}

#[test]
fn trusted_subnets_keep_vxlan_with_a_password() {
    let Some(mut lab) = hosts("enc_trusted") else {
        return;
    };
    let file = password_file(&lab, "pw", "trusted");
    for (host, peer) in [("h1", H2), ("h2", H1)] {
        lab.weft_ok(
            host,
            &[
                "launch",
                peer,
                "--password-file",
                &file,
                "--trusted-subnets",
                "192.168.90.0/24",
            ],
        );
    }
    attach_containers(&mut lab);
    wait_for("the VXLAN path", Duration::from_secs(20), || {
        (path_to_peer(&lab.status("h1")) == Some(DataPath::Vxlan)).then_some(())
    });
    let status = lab.status("h1");
    assert!(
        status.peers[0].reason.contains("trusted subnet"),
        "{status}"
    );
    lab.assert_ping("c1", "10.90.0.2");
}

#[test]
fn bursts_of_small_frames_share_tunnel_datagrams_and_every_frame_arrives() {
    let Some(mut lab) = encrypted_pair("enc_packing", "pack") else {
        return;
    };
    const TOTAL: usize = 2000;
    // tunnel.packed_frames: frames that shared a tunnel datagram with at least one other.
    let (status, packed) = common::assert_bursts_arrive_batched(
        &mut lab,
        "h1",
        ["c1", "c2"],
        "10.90.0.2:5031".parse().unwrap(),
        TOTAL,
        "tunnel.packed_frames",
    );
    assert_eq!(path_to_peer(&status), Some(DataPath::Encrypted), "{status}");
    eprintln!("{packed} of {TOTAL} frames travelled in shared datagrams");
}
