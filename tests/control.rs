//! The control plane as a careless user or a hostile neighbour meets it: the API socket
//! and the metrics address under bad and many requests, the router's secrets on disk, a
//! flood on the mesh port, forgetting peers, closed pipes, relaunches after `kill -9`.

// Helpers outside #[test] functions fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsFd as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Lab, NetnsHosts, wait_for};
use weft::api::report::{StatusReport, TargetSource};

/// A host `h` with a router.
fn host(test: &str, extra: &[&str]) -> Option<Lab> {
    let mut lab = Lab::new(test)?;
    lab.add_ns(&["h", "c1"]);
    let mut args = vec!["launch"];
    args.extend_from_slice(extra);
    lab.weft_ok("h", &args);
    Some(lab)
}

/// Writes `bytes` on a fresh API connection (ignoring a write the router cut short) and
/// returns what it answered.
fn raw_api(sock: &Path, bytes: &[u8]) -> String {
    let mut s = UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// One HTTP request to `addr` from inside `ns` (full name); the whole answer.
fn tcp_in(ns: &str, addr: SocketAddr, request: &[u8]) -> std::io::Result<String> {
    let fd = weft::netns::NetnsTarget::Name(ns.to_string())
        .open()
        .unwrap();
    let mut s = weft::netns::run_in_netns(fd.as_fd(), || {
        TcpStream::connect_timeout(&addr, Duration::from_secs(5))
    })
    .unwrap()?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(request)?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

#[test]
fn no_api_request_however_malformed_stops_the_router() {
    let Some(mut lab) = host("api_malformed", &[]) else {
        return;
    };
    let sock = lab.home("h").join("weft.sock");
    let pid = lab.router_pid("h").unwrap();
    // The reproducer from issue 13: 100 GB announced, 2 bytes sent (it aborted the
    // router inside tiny_http).
    let answer = raw_api(
        &sock,
        b"POST /attach HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n{}",
    );
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
    for (bad, status) in [
        (b"\x00\x01\x02garbage\r\n\r\n".to_vec(), "400"),
        (vec![b'A'; 1 << 20], "431"),
        (
            b"POST /attach HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
                .to_vec(),
            "411",
        ),
        (
            b"POST /attach HTTP/1.1\r\nContent-Length: 5\r\n\r\nnope!".to_vec(),
            "400",
        ),
    ] {
        let answer = raw_api(&sock, &bad);
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status} ")),
            "{answer}"
        );
    }
    // Clients that connect and say nothing, or half a request, hold nobody up: a hundred
    // clients at once (a runtime starting pods) are all served meanwhile.
    let idle: Vec<UnixStream> = (0..20)
        .map(|i| {
            let mut s = UnixStream::connect(&sock).unwrap();
            if i % 2 == 0 {
                s.write_all(b"POST /attach HTTP/1.1\r\nContent-Len")
                    .unwrap();
            }
            s
        })
        .collect();
    let started = Instant::now();
    let clients: Vec<_> = (0..100)
        .map(|_| {
            let api = lab.api("h");
            std::thread::spawn(move || api.get::<StatusReport>("/status").map(|s| s.pid))
        })
        .collect();
    for c in clients {
        assert_eq!(c.join().unwrap().unwrap(), pid as u32);
    }
    eprintln!("100 concurrent status requests in {:?}", started.elapsed());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the idle clients held the others up"
    );
    drop(idle);
    // The router lives and still changes things.
    let c1 = lab.ns("c1");
    lab.weft_ok("h", &["attach", &c1, "--ip", "10.60.0.1/24"]);
    assert_eq!(lab.router_pid("h"), Some(pid));
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    assert_eq!(lab.ps("h").len(), 1);
}

#[test]
fn metrics_and_read_only_status_are_served_on_loopback_tcp_and_nothing_else() {
    let Some(mut lab) = host("metrics_tcp", &[]) else {
        return;
    };
    let ns = lab.ns("h");
    let addr: SocketAddr = weft::api::DEFAULT_METRICS_ADDR.parse().unwrap();
    let metrics = tcp_in(&ns, addr, b"GET /metrics HTTP/1.1\r\nHost: weft\r\n\r\n").unwrap();
    assert!(metrics.starts_with("HTTP/1.1 200 "), "{metrics}");
    assert!(metrics.contains("\r\n\r\n# HELP weft_up"), "{metrics}");
    assert!(metrics.contains("\nweft_up 1\n"), "{metrics}");
    let status = tcp_in(&ns, addr, b"GET /status HTTP/1.1\r\n\r\n").unwrap();
    let body = status
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    let report: StatusReport = serde_json::from_str(body).unwrap();
    assert_eq!(report.pid as i32, lab.router_pid("h").unwrap());
    // Nothing that changes the router, and not the endpoint list either.
    for request in [
        &b"POST /stop HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}"[..],
        b"POST /connect HTTP/1.1\r\nContent-Length: 24\r\n\r\n{\"peers\":[\"192.0.2.1\"]}\n",
        b"GET /ps HTTP/1.1\r\n\r\n",
    ] {
        let answer = tcp_in(&ns, addr, request).unwrap();
        assert!(answer.starts_with("HTTP/1.1 403 "), "{answer}");
    }
    assert!(lab.status("h").targets.is_empty(), "a connect got through");
    // Not on the underlay: loopback only by default.
    let listening = lab.exec_ok("h", &["ss", "-Htln"]);
    assert!(listening.contains("127.0.0.1:6782"), "{listening}");
    // Off when empty.
    lab.weft_ok("h", &["stop"]);
    lab.weft_ok("h", &["launch", "--metrics-addr", ""]);
    let err = tcp_in(&ns, addr, b"GET /metrics HTTP/1.1\r\n\r\n").unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
    let out = lab.weft_ok("h", &["metrics"]);
    assert!(
        out.contains("weft_up 1"),
        "the socket still serves metrics: {out}"
    );
}

#[test]
fn the_private_key_is_never_world_readable_and_an_open_home_is_warned_about() {
    let Some(mut lab) = Lab::new("secrets") else {
        return;
    };
    lab.add_ns(&["h"]);
    let home = lab.home("h");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = lab.weft("h", &["launch"]);
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning") && stderr.contains("others can write it"),
        "{stderr}"
    );
    let state = std::fs::read_to_string(home.join("state.json")).unwrap();
    assert!(state.contains("static_key"), "{state}");
    for file in ["state.json", "weft.sock"] {
        let mode = std::fs::metadata(home.join(file)).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600, "{file} has mode {mode:o}");
    }
    assert!(
        lab.log("h").contains("others can write it"),
        "{}",
        lab.log("h")
    );
    // Every rewrite keeps it private (a connect saves the state).
    lab.weft_ok("h", &["connect", "192.0.2.1"]);
    let mode = std::fs::metadata(home.join("state.json")).unwrap().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn a_connection_flood_on_the_mesh_port_is_counted_not_logged_line_by_line() {
    let Some(mut lab) = host("mesh_flood", &[]) else {
        return;
    };
    let ns = lab.ns("h");
    let log_before = lab.log("h").len();
    let fd = weft::netns::NetnsTarget::Name(ns).open().unwrap();
    let addr: SocketAddr = "127.0.0.1:6783".parse().unwrap();
    let flood = 2000;
    weft::netns::run_in_netns(fd.as_fd(), || {
        for _ in 0..flood {
            if let Ok(s) = TcpStream::connect(addr) {
                drop(s);
            }
        }
    })
    .unwrap();
    let status = wait_for("the closes to be counted", Duration::from_secs(20), || {
        let s = lab.status("h");
        (s.counter("mesh.closed_preamble") + s.counter("mesh.refused_rate_limited") >= flood)
            .then_some(s)
    });
    eprintln!(
        "closed in the preamble: {}, refused by the rate limit: {}",
        status.counter("mesh.closed_preamble"),
        status.counter("mesh.refused_rate_limited")
    );
    let grown = lab.log("h").len() - log_before;
    // A handful of lines one by one (five a minute per kind), not one per connection.
    assert!(
        grown < 4096,
        "the log grew by {grown} bytes:\n{}",
        lab.log("h")
    );
}

#[test]
fn forget_takes_the_names_as_saved_even_when_they_no_longer_resolve() {
    let Some(mut lab) = Lab::new("forget_stale") else {
        return;
    };
    lab.add_ns(&["h"]);
    let hosts = NetnsHosts::new(&lab.ns("h"), "192.0.2.7 weft-gone\n192.0.2.9 weft-other\n");
    lab.weft_ok("h", &["launch"]);
    lab.weft_ok("h", &["connect", "weft-gone", "weft-other", "192.0.2.11"]);
    lab.weft_ok("h", &["stop"]);
    // weft-gone stops resolving: the relaunch keeps retrying it in the background.
    hosts.set("192.0.2.9 weft-other\n");
    lab.weft_ok("h", &["launch"]);
    let targets = lab.weft_ok("h", &["status", "targets"]);
    assert!(targets.contains("weft-gone"), "{targets}");
    // One unknown name among them stops nothing; the stale one goes by its saved name.
    let out = lab.weft(
        "h",
        &["forget", "weft-gone", "no-such-peer.invalid", "weft-other"],
    );
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no-such-peer.invalid"), "{stderr}");
    assert!(!stderr.contains("weft-gone"), "{stderr}");
    let targets = lab.weft_ok("h", &["status", "targets"]);
    assert!(
        !targets.contains("weft-gone") && !targets.contains("weft-other"),
        "{targets}"
    );
    assert!(targets.contains("192.0.2.11"), "{targets}");
    let state = std::fs::read_to_string(lab.home("h").join("state.json")).unwrap();
    assert!(
        !state.contains("weft-gone") && !state.contains("weft-other"),
        "{state}"
    );
    // Gone for good: a relaunch does not retry it.
    lab.weft_ok("h", &["stop"]);
    let before = lab.log("h").len();
    lab.weft_ok("h", &["launch"]);
    assert!(
        !lab.log("h")[before..].contains("weft-gone"),
        "{}",
        lab.log("h")
    );
}

#[test]
fn status_shows_a_target_as_it_was_asked_with_its_port() {
    let Some(mut lab) = host("connect_port", &["192.0.2.20:5000"]) else {
        return;
    };
    lab.weft_ok("h", &["connect", "192.0.2.21:5001", "192.0.2.22"]);
    let status = lab.status("h");
    let asked: Vec<&str> = status
        .targets
        .iter()
        .filter(|t| t.source == TargetSource::Explicit)
        .map(|t| t.target.as_str())
        .collect();
    for want in ["192.0.2.20:5000", "192.0.2.21:5001", "192.0.2.22"] {
        assert!(asked.contains(&want), "{want} not in {asked:?}");
    }
    // The mesh still dials the control port; the peer's VXLAN port is the one asked.
    let dialled: Vec<String> = status
        .targets
        .iter()
        .filter_map(|t| t.address.map(|a| a.to_string()))
        .collect();
    assert!(
        dialled.contains(&"192.0.2.21:6783".to_string()),
        "{dialled:?}"
    );
    assert!(
        status
            .peers
            .iter()
            .any(|p| p.address == Some("192.0.2.21:5001".parse().unwrap())),
        "{status}"
    );
    let text = lab.weft_ok("h", &["status", "targets"]);
    assert!(
        text.lines().any(|l| l.starts_with("192.0.2.21:5001 ")),
        "{text}"
    );
}

#[test]
fn every_verb_exits_quietly_when_its_reader_goes_away() {
    let Some(lab) = host("broken_pipe", &[]) else {
        return;
    };
    let home = lab.home("h");
    for args in [
        &["status", "--json"][..],
        &["status"],
        &["metrics"],
        &["ps", "--json"],
        &["--help"],
        &["completions", "bash"],
    ] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_weft"))
            .arg("--home")
            .arg(&home)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // The reader goes away before weft writes a byte.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("panicked") && stderr.trim().is_empty(),
            "weft {args:?}: {stderr}"
        );
        use std::os::unix::process::ExitStatusExt as _;
        assert!(
            out.status.success() || out.status.signal() == Some(libc::SIGPIPE),
            "weft {args:?}: {:?}",
            out.status
        );
    }
}
