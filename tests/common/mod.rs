//! The end-to-end test lab: network namespaces as hosts and containers, real veths,
//! real weft routers, real traffic.
//!
//! The lab itself is [`weft::testlab::Lab`] (shared with `weft lab demo` and the
//! throughput bench): every namespace a test makes is named `wt<pid><n>-<short>` and
//! deleted when the [`Lab`] drops, even when the test fails; every router it launched is
//! killed by the pid in its own pidfile. Tests need root; without it they skip, except
//! under `CI=true` where they fail loudly.

#![allow(dead_code, unreachable_pub)]
// Test support: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::fd::AsFd as _;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use weft::api::Endpoint;
use weft::api::client::Client;
use weft::api::report::{PeerReport, StatusReport};
use weft::netlink::Netlink;
use weft::netns;

pub mod docker;

static LAB_SEQ: AtomicU32 = AtomicU32::new(0);

/// Returns false (after saying so) when the test cannot run here; panics under CI.
pub fn require_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test} needs root (network namespaces), and CI=true: refusing to skip");
    }
    eprintln!("SKIPPED {test}: needs root for network namespaces");
    false
}

/// A router's status report, typed; it prints as JSON, for assertion messages.
pub struct Status(pub StatusReport);

impl std::ops::Deref for Status {
    type Target = StatusReport;

    fn deref(&self) -> &StatusReport {
        &self.0
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match serde_json::to_string_pretty(&self.0) {
            Ok(text) => f.write_str(&text),
            Err(e) => write!(f, "{:?} ({e})", self.0),
        }
    }
}

impl Status {
    /// Counter `name`. A name the router does not report fails the test: a misspelled
    /// counter must not read as 0 and pass.
    pub fn counter(&self, name: &str) -> u64 {
        if let Some(v) = self.0.counters.get(name) {
            return *v;
        }
        let group = name.split('.').next().unwrap_or(name);
        let similar: Vec<&str> = self
            .0
            .counters
            .keys()
            .filter(|k| k.starts_with(group))
            .map(String::as_str)
            .collect();
        panic!("the router reports no counter {name:?}; in its group: {similar:?}");
    }

    /// The peer with this name, if the router knows it.
    pub fn peer_named(&self, name: mesh::PeerName) -> Option<&PeerReport> {
        self.0.peers.iter().find(|p| p.name == Some(name))
    }
}

/// Polls `f` until it returns `Some`, or panics with `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A set of namespaces and routers that is torn down on drop ([`weft::testlab::Lab`],
/// with the panicking helpers a test wants).
pub struct Lab {
    inner: weft::testlab::Lab,
}

impl Lab {
    /// A new lab, or `None` when the test must skip (not root, not CI).
    pub fn new(test: &str) -> Option<Self> {
        if !require_root(test) {
            return None;
        }
        let n = LAB_SEQ.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("wt{}{}-", std::process::id(), n);
        let inner = weft::testlab::Lab::new(
            &prefix,
            Path::new(env!("CARGO_BIN_EXE_weft")),
            weft::testlab::Teardown::Kill,
        )
        .expect("create the lab");
        Some(Self { inner })
    }

    /// The full namespace name for a short name.
    pub fn ns(&self, short: &str) -> String {
        self.inner.ns(short)
    }

    /// Creates namespaces (hosts or containers) with loopback up.
    pub fn add_ns(&mut self, shorts: &[&str]) {
        for short in shorts {
            self.inner.add_ns(short).expect("create namespace");
        }
    }

    /// An underlay link between two host namespaces, with an address on each end.
    pub fn link(&mut self, a: &str, a_cidr: &str, b: &str, b_cidr: &str) {
        self.link_mtu(a, a_cidr, b, b_cidr, 1500);
    }

    /// Like [`link`](Self::link) with a chosen MTU.
    pub fn link_mtu(&mut self, a: &str, a_cidr: &str, b: &str, b_cidr: &str, mtu: u32) {
        let (a_if, b_if) = (format!("u-{b}"), format!("u-{a}"));
        self.inner
            .link(
                (a, &a_if, a_cidr.parse().expect("CIDR")),
                (b, &b_if, b_cidr.parse().expect("CIDR")),
                mtu,
            )
            .expect("underlay link");
    }

    /// The home directory of the router on `host`.
    pub fn home(&self, host: &str) -> PathBuf {
        self.inner.home(host)
    }

    /// Runs a command inside a namespace.
    pub fn exec(&self, ns: &str, argv: &[&str]) -> Output {
        self.inner
            .exec(ns, argv)
            .output()
            .expect("run ip netns exec")
    }

    /// Runs a command inside a namespace and panics (with its output) if it fails.
    pub fn exec_ok(&self, ns: &str, argv: &[&str]) -> String {
        let out = self.exec(ns, argv);
        assert!(
            out.status.success(),
            "`{}` in {ns} failed: {}\nstdout: {}\nstderr: {}",
            argv.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `weft --home <host's home> ARGS` inside the host namespace.
    pub fn weft(&mut self, host: &str, args: &[&str]) -> Output {
        self.weft_env(host, &[], args)
    }

    /// Like [`weft`](Self::weft), with extra environment variables (e.g. `WEFT_PASSWORD`).
    pub fn weft_env(&mut self, host: &str, env: &[(&str, &str)], args: &[&str]) -> Output {
        self.inner
            .weft(host, args)
            .envs(env.iter().copied())
            .output()
            .expect("run weft")
    }

    /// Runs weft and panics with its output if it fails; returns stdout.
    pub fn weft_ok(&mut self, host: &str, args: &[&str]) -> String {
        let out = self.weft(host, args);
        assert!(
            out.status.success(),
            "`weft {}` on {host} failed: {}\nstdout: {}\nstderr: {}\nlog:\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log(host)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs weft expecting failure; returns stderr.
    pub fn weft_err(&mut self, host: &str, args: &[&str]) -> String {
        let out = self.weft(host, args);
        assert!(
            !out.status.success(),
            "`weft {}` on {host} unexpectedly succeeded: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// The router log of a host.
    pub fn log(&self, host: &str) -> String {
        std::fs::read_to_string(self.home(host).join("weft.log")).unwrap_or_default()
    }

    /// The pid of the router running on a host, from its pidfile.
    pub fn router_pid(&self, host: &str) -> Option<i32> {
        self.inner
            .router_pid(host)
            .and_then(|p| i32::try_from(p).ok())
    }

    /// CPU time (user + system, in clock ticks of 1/100 s) a host's router has used.
    pub fn router_cpu_ticks(&self, host: &str) -> u64 {
        let pid = self.router_pid(host).expect("router pid");
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("router stat");
        // Fields after the command name's closing parenthesis start at field 3 (state);
        // utime and stime are fields 14 and 15.
        let rest = &stat[stat.rfind(')').expect("stat format") + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    }

    /// A host's endpoints (`GET /ps`, through the API's types).
    pub fn endpoints(&mut self, host: &str) -> Vec<Endpoint> {
        self.ps(host)
    }

    /// The links weft made in `host` (names starting with `wf`).
    pub fn weft_links(&self, host: &str) -> Vec<String> {
        self.exec_ok(host, &["ip", "-o", "link", "show"])
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_string())
            .filter(|n| n.starts_with("wf"))
            .collect()
    }

    /// A typed client of a host's router API (its socket is a path, so it is reachable
    /// from outside the host's namespace).
    pub fn api(&self, host: &str) -> Client {
        Client::new(&self.home(host).join("weft.sock"))
    }

    /// A host's `GET /status`, read through the API types the CLI and plugins use.
    pub fn status(&mut self, host: &str) -> Status {
        match self.api(host).get::<StatusReport>("/status") {
            Ok(report) => Status(report),
            Err(e) => panic!("GET /status on {host}: {e}\nlog:\n{}", self.log(host)),
        }
    }

    /// A host's `GET /ps`.
    pub fn ps(&mut self, host: &str) -> Vec<Endpoint> {
        match self.api(host).get::<Vec<Endpoint>>("/ps") {
            Ok(eps) => eps,
            Err(e) => panic!("GET /ps on {host}: {e}\nlog:\n{}", self.log(host)),
        }
    }

    /// Kills a host's router with SIGKILL (a crash) and waits until it is gone.
    pub fn kill9(&self, host: &str) {
        let pid = self.kill9_nowait(host);
        wait_for("the router to die", Duration::from_secs(10), || {
            (!Path::new(&format!("/proc/{pid}")).exists() || proc_is_zombie(pid)).then_some(())
        });
        // A zombie leader's other threads may still be closing its files (e.g. TAPs):
        // the router is gone for a relaunch only once its pidfile lock is free.
        weft::pidfile::wait_gone(&self.home(host).join("weft.pid"), Duration::from_secs(10))
            .expect("the killed router's pidfile lock is released");
    }

    /// Sends SIGKILL to a host's router and returns its pid at once, without waiting.
    pub fn kill9_nowait(&self, host: &str) -> i32 {
        let pid = self.router_pid(host).expect("router pid");
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        pid
    }

    /// Whether `ping -c1` from `ns` to `ip` succeeds within `timeout` (retrying).
    pub fn ping_within(&self, ns: &str, ip: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self
                .exec(ns, &["ping", "-c", "1", "-W", "1", ip])
                .status
                .success()
            {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
        }
    }

    /// Asserts that `ns` can ping `ip` within 10 s.
    pub fn assert_ping(&self, ns: &str, ip: &str) {
        assert!(
            self.ping_within(ns, ip, Duration::from_secs(10)),
            "{ns} cannot ping {ip}"
        );
    }

    /// Waits until no IPv6 address in `ns` is still tentative (duplicate address
    /// detection takes about a second after an address is set; until then the kernel
    /// will not send from it), and panics if detection failed for any.
    pub fn wait_ipv6_ready(&self, ns: &str) {
        wait_for(
            &format!("IPv6 duplicate address detection in {ns}"),
            Duration::from_secs(10),
            || {
                let failed = self.exec_ok(ns, &["ip", "-6", "addr", "show", "dadfailed"]);
                assert!(failed.trim().is_empty(), "DAD failed in {ns}: {failed}");
                let tentative = self.exec_ok(ns, &["ip", "-6", "addr", "show", "tentative"]);
                tentative.trim().is_empty().then_some(())
            },
        );
    }

    /// A temp path inside the lab.
    pub fn tmp(&self, name: &str) -> PathBuf {
        self.inner.tmp().join(name)
    }
}

/// The pid in a weft pidfile, if a live process still holds its lock (a stale pidfile's
/// pid may belong to someone else by now).
pub fn pidfile_holder(pidfile: &Path) -> Option<i32> {
    weft::pidfile::running_pid(pidfile)
        .ok()
        .flatten()
        .and_then(|p| i32::try_from(p).ok())
}

fn proc_is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .is_some_and(|rest| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

/// `/etc/netns/NAME/hosts` for a lab namespace: `ip netns exec` mounts it over
/// `/etc/hosts`, so names resolve in that namespace only. Removed on drop (with
/// `/etc/netns` when this made it).
pub struct NetnsHosts {
    dir: PathBuf,
    made_parent: bool,
}

impl NetnsHosts {
    pub fn new(ns: &str, lines: &str) -> Self {
        let parent = Path::new("/etc/netns");
        let made_parent = !parent.exists();
        let dir = parent.join(ns);
        std::fs::create_dir_all(&dir).unwrap();
        let hosts = Self { dir, made_parent };
        hosts.set(lines);
        hosts
    }

    /// Rewrites the file in place: a router that has it mounted sees the change.
    pub fn set(&self, lines: &str) {
        std::fs::write(
            self.dir.join("hosts"),
            format!("127.0.0.1 localhost\n{lines}"),
        )
        .unwrap();
    }
}

impl Drop for NetnsHosts {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        if self.made_parent
            && let Some(parent) = self.dir.parent()
        {
            let _ = std::fs::remove_dir(parent);
        }
    }
}

/// Frames arriving at an interface inside a namespace, read through an AF_PACKET socket
/// (weft's own `PacketPort`), so tests can assert what did and did not reach a container.
pub struct Capture {
    port: weft::io::PacketPort,
    batch: weft::io::RxBatch,
    frames: Vec<Vec<u8>>,
}

impl Capture {
    /// Starts capturing frames received on `ifname` in namespace `ns` (full name).
    pub fn start(ns: &str, ifname: &str) -> Self {
        let fd = netns::NetnsTarget::Name(ns.to_string())
            .open()
            .expect("open namespace");
        let ifname = ifname.to_string();
        let port = netns::run_in_netns(fd.as_fd(), move || {
            let mut nl = Netlink::new().expect("netlink");
            let link = nl
                .link_by_name(&ifname)
                .expect("lookup")
                .expect("interface exists");
            weft::io::PacketPort::open(link.index, &weft::io::PortOptions::default())
                .expect("packet socket")
        })
        .expect("enter namespace");
        Self {
            port,
            batch: weft::io::RxBatch::new(16),
            frames: Vec::new(),
        }
    }

    /// Reads everything received so far.
    pub fn drain(&mut self) -> &[Vec<u8>] {
        use weft::io::FramePort as _;
        while let Ok(n) = self.port.recv_batch(&mut self.batch) {
            if n == 0 {
                break;
            }
            for i in 0..n {
                self.frames.push(self.batch.frame(i).to_vec());
            }
        }
        &self.frames
    }

    /// How many captured frames satisfy `pred`.
    pub fn count(&mut self, pred: impl Fn(&[u8]) -> bool) -> usize {
        self.drain().iter().filter(|f| pred(f)).count()
    }
}

/// Frame predicates for captures.
pub mod frames {
    use std::net::Ipv4Addr;

    /// An ARP request asking for `target`.
    pub fn arp_request_for(f: &[u8], target: Ipv4Addr) -> bool {
        f.len() >= 42
            && f[12..14] == [0x08, 0x06]
            && f[20..22] == [0, 1]
            && f[38..42] == target.octets()
    }

    /// An IPv4 UDP datagram to destination port `port` (no options in the IP header).
    pub fn udp_to_port(f: &[u8], port: u16) -> bool {
        f.len() >= 42 && f[12..14] == [0x08, 0x00] && f[23] == 17 && f[36..38] == port.to_be_bytes()
    }

    /// Sent to the Ethernet broadcast address.
    pub fn is_broadcast(f: &[u8]) -> bool {
        f.len() >= 6 && f[..6] == [0xff; 6]
    }
}

/// A UDP socket bound inside a namespace (full name).
pub fn udp_socket_in(ns: &str, bind: std::net::SocketAddr) -> std::net::UdpSocket {
    let fd = netns::NetnsTarget::Name(ns.to_string())
        .open()
        .expect("open namespace");
    netns::run_in_netns(fd.as_fd(), move || std::net::UdpSocket::bind(bind))
        .expect("enter namespace")
        .expect("bind UDP")
}

/// Sends `total` 64-byte datagrams in bursts of 50 (see [`udp_bursts`]) from container
/// `from` to `dest` in container `to`, asserts that every one arrived and that counter
/// `batch_counter` of `host` moved (the batching under test happened), and returns the
/// host's status and that counter.
pub fn assert_bursts_arrive_batched(
    lab: &mut Lab,
    host: &str,
    [from, to]: [&str; 2],
    dest: std::net::SocketAddr,
    total: usize,
    batch_counter: &str,
) -> (Status, u64) {
    let lost = udp_bursts(&lab.ns(from), &lab.ns(to), dest, total, 50);
    let status = lab.status(host);
    assert_eq!(
        lost, 0,
        "{lost} of {total} datagrams never arrived: {status}"
    );
    let batched = status.counter(batch_counter);
    assert!(batched > 0, "{batch_counter} never moved: {status}");
    (status, batched)
}

/// Sends `total` numbered 64-byte UDP datagrams from `from_ns` to `dest` in `to_ns` (full
/// names) in bursts of `burst`, each burst waited for (5 s at most) before the next, and
/// returns how many never arrived. Back-to-back datagrams land several to one receive
/// batch at the router (what its batching and packing act on), and one burst still fits
/// the receiver's socket buffer, so a loss is weft's. Panics on an altered datagram.
pub fn udp_bursts(
    from_ns: &str,
    to_ns: &str,
    dest: std::net::SocketAddr,
    total: usize,
    burst: usize,
) -> usize {
    let bind: std::net::SocketAddr = (std::net::Ipv4Addr::UNSPECIFIED, dest.port()).into();
    let rx = udp_socket_in(to_ns, bind);
    rx.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let tx = udp_socket_in(from_ns, "0.0.0.0:0".parse().unwrap());
    let mut seen = vec![false; total];
    for first in (0..total).step_by(burst.max(1)) {
        let last = (first + burst).min(total);
        for i in first..last {
            let mut payload = [0x5au8; 64];
            payload[..4].copy_from_slice(&(i as u32).to_be_bytes());
            tx.send_to(&payload, dest).unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while seen[first..last].iter().any(|s| !s) && Instant::now() < deadline {
            let mut buf = [0u8; 128];
            match rx.recv(&mut buf) {
                Ok(64) if buf[4..64].iter().all(|&b| b == 0x5a) => {
                    let i = u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize;
                    if let Some(s) = seen.get_mut(i) {
                        *s = true;
                    }
                }
                Ok(n) => panic!("a datagram of {n} bytes came out altered"),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("receive: {e}"),
            }
        }
    }
    seen.iter().filter(|s| !**s).count()
}

/// Sends `bytes` of deterministic pseudo-random data over TCP from `from_ns` to
/// `to_ip:port` in `to_ns` (full names, or anything `weft attach` takes: a pid, a path)
/// and returns (hash sent, hash received, bytes received).
/// `to_ip` is IPv4 or IPv6; the listener binds the unspecified address of its family.
pub fn tcp_transfer(
    from_ns: &str,
    to_ns: &str,
    to_ip: impl Into<std::net::IpAddr>,
    port: u16,
    bytes: usize,
) -> (u64, u64, usize) {
    use std::hash::Hasher as _;
    use std::io::{Read as _, Write as _};
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
    let to_ip: IpAddr = to_ip.into();
    let any = match to_ip {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let to_fd = to_ns
        .parse::<netns::NetnsTarget>()
        .expect("namespace target")
        .open()
        .expect("open namespace");
    let listener = netns::run_in_netns(to_fd.as_fd(), move || {
        std::net::TcpListener::bind(SocketAddr::new(any, port))
    })
    .expect("enter namespace")
    .expect("listen");
    let receiver = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        s.set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        let mut h = std::collections::hash_map::DefaultHasher::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0;
        loop {
            let n = s.read(&mut buf).expect("read");
            if n == 0 {
                return (h.finish(), total);
            }
            h.write(&buf[..n]);
            total += n;
        }
    });
    let from_fd = from_ns
        .parse::<netns::NetnsTarget>()
        .expect("namespace target")
        .open()
        .expect("open namespace");
    let mut stream = netns::run_in_netns(from_fd.as_fd(), move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match std::net::TcpStream::connect_timeout(
                &SocketAddr::new(to_ip, port),
                Duration::from_secs(2),
            ) {
                Ok(s) => return s,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("connect to {}: {e}", SocketAddr::new(to_ip, port)),
            }
        }
    })
    .expect("enter namespace");
    stream
        .set_write_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut chunk = vec![0u8; 1 << 16];
    let mut sent = 0;
    while sent < bytes {
        for b in chunk.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let v = state.to_le_bytes();
            b.copy_from_slice(&v[..b.len()]);
        }
        let n = chunk.len().min(bytes - sent);
        stream.write_all(&chunk[..n]).expect("write");
        h.write(&chunk[..n]);
        sent += n;
    }
    drop(stream);
    let (got_hash, got) = receiver.join().expect("receiver");
    (h.finish(), got_hash, got)
}
