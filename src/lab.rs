//! `weft lab demo`: weft's main job on an embedded default.
//!
//! Builds two "hosts" (network namespaces joined by an underlay veth) with containers
//! (more namespaces), launches a weft router on each host, attaches the containers,
//! exposes one host, shows the containers talking on one host and across hosts, prints
//! status, and removes everything again (or leaves it with `--keep`). Only namespaces it
//! created are touched; their names start with `wfdemo<pid>`. Ctrl-C (or SIGTERM, SIGHUP)
//! ends the demo after the step in progress and still removes everything.

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::cli::LabDemoArgs;
use crate::netlink::Netlink;
use crate::netns::{self, NamedNetns};

/// The namespaces and routers of a running lab; dropping it tears everything down.
struct DemoLab {
    prefix: String,
    tmp: PathBuf,
    namespaces: Vec<NamedNetns>,
    hosts: Vec<String>,
    keep: bool,
}

impl DemoLab {
    fn ns_name(&self, short: &str) -> String {
        format!("{}{short}", self.prefix)
    }

    fn ns_fd(&self, short: &str) -> anyhow::Result<std::os::fd::OwnedFd> {
        let name = self.ns_name(short);
        netns::NetnsTarget::Name(name.clone())
            .open()
            .with_context(|| format!("open namespace {name}"))
    }

    fn add_ns(&mut self, short: &str) -> anyhow::Result<()> {
        let ns = NamedNetns::create(&self.ns_name(short))
            .with_context(|| format!("create namespace {short}"))?;
        let fd = ns.open()?;
        netns::run_in_netns(fd.as_fd(), || -> anyhow::Result<()> {
            let mut nl = Netlink::new()?;
            let lo = nl.link_by_name("lo")?.context("no lo")?;
            nl.set_up(lo.index, true)?;
            Ok(())
        })??;
        self.namespaces.push(ns);
        Ok(())
    }

    /// An underlay link between two hosts.
    fn underlay(&self, a: &str, a_ip: Ipv4Addr, b: &str, b_ip: Ipv4Addr) -> anyhow::Result<()> {
        let (fa, fb) = (self.ns_fd(a)?, self.ns_fd(b)?);
        netns::run_in_netns(fa.as_fd(), || -> anyhow::Result<()> {
            let mut nl = Netlink::new()?;
            nl.create_veth("underlay0", "underlay0", fb.as_fd())?;
            Ok(())
        })??;
        for (host, ip) in [(&fa, a_ip), (&fb, b_ip)] {
            netns::run_in_netns(host.as_fd(), || -> anyhow::Result<()> {
                let mut nl = Netlink::new()?;
                let l = nl.link_by_name("underlay0")?.context("underlay0 missing")?;
                nl.add_address(l.index, format!("{ip}/24").parse()?)?;
                nl.set_up(l.index, true)?;
                Ok(())
            })??;
        }
        Ok(())
    }

    /// Runs `weft --home <host home> ARGS` inside a host namespace.
    fn weft(&mut self, host: &str, args: &[&str]) -> anyhow::Result<String> {
        if !self.hosts.iter().any(|h| h == host) {
            self.hosts.push(host.to_string());
        }
        let exe = std::env::current_exe().context("cannot find the weft executable")?;
        let mut cmd = Command::new(exe);
        cmd.arg("--home")
            .arg(self.tmp.join(host))
            .args(args)
            // The demo's routers are not Docker hosts, even where a dockerd runs.
            .env("WEFT_NO_DOCKER_PLUGIN", "true")
            .stdin(Stdio::null());
        netns::command_in_netns(&mut cmd, self.ns_fd(host)?);
        let out = cmd.output().context("cannot run weft")?;
        anyhow::ensure!(
            out.status.success(),
            "`weft {}` on {host} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for DemoLab {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        for host in self.hosts.clone() {
            let _ = self.weft(&host, &["reset", "--force"]);
        }
        while let Some(ns) = self.namespaces.pop() {
            drop(ns);
        }
        let _ = std::fs::remove_dir_all(&self.tmp);
    }
}

/// A UDP request/answer between two namespaces, timed.
fn udp_probe(lab: &DemoLab, from: &str, to: &str, to_ip: Ipv4Addr) -> anyhow::Result<Duration> {
    let server_fd = lab.ns_fd(to)?;
    let client_fd = lab.ns_fd(from)?;
    let server = netns::run_in_netns(server_fd.as_fd(), || {
        UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 7777))
    })??;
    server.set_read_timeout(Some(Duration::from_secs(5)))?;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        let mut buf = [0u8; 64];
        let (n, peer) = server.recv_from(&mut buf)?;
        server.send_to(&buf[..n], peer)?;
        Ok(())
    });
    let client = netns::run_in_netns(client_fd.as_fd(), || {
        UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
    })??;
    client.set_read_timeout(Some(Duration::from_millis(500)))?;
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 64];
    loop {
        let start = Instant::now();
        client.send_to(b"weft lab probe", SocketAddr::from((to_ip, 7777)))?;
        match client.recv_from(&mut buf) {
            Ok((n, _)) if &buf[..n] == b"weft lab probe" => {
                let rtt = start.elapsed();
                let _ = echo.join();
                return Ok(rtt);
            }
            _ if Instant::now() < deadline => continue,
            _ => anyhow::bail!("no answer from {to_ip} within 5 s"),
        }
    }
}

/// A TCP transfer between two namespaces; returns bytes per second.
fn tcp_probe(
    lab: &DemoLab,
    from: &str,
    to: &str,
    to_ip: Ipv4Addr,
    bytes: usize,
) -> anyhow::Result<f64> {
    let server_fd = lab.ns_fd(to)?;
    let client_fd = lab.ns_fd(from)?;
    let listener = netns::run_in_netns(server_fd.as_fd(), || {
        TcpListener::bind((Ipv4Addr::UNSPECIFIED, 7778))
    })??;
    let sink = std::thread::spawn(move || -> std::io::Result<usize> {
        let (mut s, _) = listener.accept()?;
        let mut total = 0;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = s.read(&mut buf)?;
            if n == 0 {
                return Ok(total);
            }
            total += n;
        }
    });
    let mut stream = netns::run_in_netns(client_fd.as_fd(), || {
        TcpStream::connect_timeout(&SocketAddr::from((to_ip, 7778)), Duration::from_secs(5))
    })??;
    let chunk = vec![0x5au8; 1 << 16];
    let start = Instant::now();
    let mut sent = 0;
    while sent < bytes {
        let n = chunk.len().min(bytes - sent);
        stream.write_all(&chunk[..n])?;
        sent += n;
    }
    drop(stream);
    let got = sink
        .join()
        .map_err(|_| anyhow::anyhow!("receiver panicked"))??;
    anyhow::ensure!(got == bytes, "sent {bytes} bytes, {got} arrived");
    Ok(bytes as f64 / start.elapsed().as_secs_f64())
}

/// The demo was interrupted by a signal; the lab was removed. `main` exits 130 for it.
#[derive(Debug, thiserror::Error)]
#[error("interrupted; the lab was removed")]
pub struct Interrupted;

/// Blocks the stop signals in this thread (so in every thread and child started after it:
/// the routers the demo launches block them anyway, to read them from a signal thread)
/// and raises the returned flag when one arrives. Without this, Ctrl-C would kill the demo
/// before `DemoLab::drop` and leave namespaces and routers behind.
fn watch_stop_signals() -> anyhow::Result<Arc<AtomicBool>> {
    let signals = crate::daemon::block_stop_signals()?;
    let flag = Arc::new(AtomicBool::new(false));
    let raised = Arc::clone(&flag);
    std::thread::Builder::new()
        .name("weft-lab-signals".into())
        .spawn(move || {
            if let Ok(sig) = signals.wait() {
                println!("\n==> {sig:?}: stopping after this step, then removing the lab");
                raised.store(true, Ordering::SeqCst);
            }
        })
        .context("cannot start the signal thread")?;
    Ok(flag)
}

/// Runs the demo.
pub fn demo(args: &LabDemoArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        nix::unistd::geteuid().is_root(),
        "weft lab demo needs root (it creates network namespaces)"
    );
    let interrupted = watch_stop_signals()?;
    let prefix = format!("wfdemo{}", std::process::id());
    let tmp = std::env::temp_dir().join(&prefix);
    std::fs::create_dir_all(&tmp)?;
    let mut lab = DemoLab {
        prefix,
        tmp,
        namespaces: Vec::new(),
        hosts: Vec::new(),
        keep: args.keep,
    };
    let step = |s: &str| -> Result<(), Interrupted> {
        if interrupted.load(Ordering::SeqCst) {
            return Err(Interrupted);
        }
        println!("\n==> {s}");
        Ok(())
    };

    let result = run_steps(&mut lab, &step);
    if interrupted.load(Ordering::SeqCst) {
        // Whatever the step in progress made of the signal, the user asked to stop: the
        // lab goes, even with --keep.
        lab.keep = false;
        return Err(Interrupted.into());
    }
    result?;

    if args.keep {
        println!(
            "\nThe lab is still running (namespaces {p}h1 {p}h2 {p}c1 {p}c2 {p}c3; homes under {t}). Clean up with:\n  for h in h1 h2; do ip netns exec {p}$h weft --home {t}/$h reset; done\n  for n in h1 h2 c1 c2 c3; do ip netns delete {p}$n; done; rm -r {t}",
            p = lab.prefix,
            t = lab.tmp.display(),
        );
    } else {
        println!("\n==> cleaning up");
    }
    Ok(())
}

/// The demo's steps; `step` announces each one, or stops the demo if a signal came.
fn run_steps(
    lab: &mut DemoLab,
    step: &dyn Fn(&str) -> Result<(), Interrupted>,
) -> anyhow::Result<()> {
    step("building two hosts joined by an underlay link (192.168.77.0/24), and three containers")?;
    for ns in ["h1", "h2", "c1", "c2", "c3"] {
        lab.add_ns(ns)?;
    }
    lab.underlay(
        "h1",
        Ipv4Addr::new(192, 168, 77, 1),
        "h2",
        Ipv4Addr::new(192, 168, 77, 2),
    )?;

    step("launching a weft router on each host, each naming the other as its peer")?;
    print!("h1: {}", lab.weft("h1", &["launch", "192.168.77.2"])?);
    print!("h2: {}", lab.weft("h2", &["launch", "192.168.77.1"])?);

    step("attaching c1, c2 to h1 and c3 to h2 on the default network (10.40.0.0/24)")?;
    let c = |n: &str, lab: &DemoLab| lab.ns_name(n);
    for (host, ctr, ip) in [
        ("h1", "c1", "10.40.0.1/24"),
        ("h1", "c2", "10.40.0.2/24"),
        ("h2", "c3", "10.40.0.3/24"),
    ] {
        let name = c(ctr, lab);
        print!(
            "{host}: {}",
            lab.weft(host, &["attach", &name, "--ip", ip])?
        );
    }
    step("exposing host h1 on the network as 10.40.0.254")?;
    lab.weft("h1", &["expose", "10.40.0.254/24"])?;

    step("containers talking")?;
    for (from, to, ip, what) in [
        ("c1", "c2", Ipv4Addr::new(10, 40, 0, 2), "same host"),
        (
            "c1",
            "c3",
            Ipv4Addr::new(10, 40, 0, 3),
            "across hosts, VXLAN",
        ),
        ("h1", "c3", Ipv4Addr::new(10, 40, 0, 3), "host h1 to c3"),
    ] {
        let rtt = udp_probe(lab, from, to, ip)?;
        println!(
            "  {from} -> {to} ({what}): UDP echo in {:.2} ms",
            rtt.as_secs_f64() * 1e3
        );
    }
    for (from, to, ip, what) in [
        ("c1", "c2", Ipv4Addr::new(10, 40, 0, 2), "same host"),
        ("c1", "c3", Ipv4Addr::new(10, 40, 0, 3), "across hosts"),
    ] {
        let rate = tcp_probe(lab, from, to, ip, 64 << 20)?;
        println!(
            "  {from} -> {to} ({what}): 64 MiB over TCP at {:.2} Gbit/s",
            rate * 8.0 / 1e9
        );
    }

    step("weft status on h1")?;
    print!("{}", lab.weft("h1", &["status"])?);
    step("weft ps on h1")?;
    print!("{}", lab.weft("h1", &["ps"])?);

    Ok(())
}
