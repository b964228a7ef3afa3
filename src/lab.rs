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
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::netns;
use crate::testlab::{self, Teardown};

/// The demo's lab: the shared [`testlab::Lab`] (hosts and containers as namespaces,
/// routers torn down with `weft reset` when it drops) and what the demo runs in it.
struct DemoLab {
    lab: testlab::Lab,
}

impl DemoLab {
    fn ns_name(&self, short: &str) -> String {
        self.lab.ns(short)
    }

    fn ns_fd(&self, short: &str) -> anyhow::Result<std::os::fd::OwnedFd> {
        self.lab.ns_fd(short)
    }

    fn add_ns(&mut self, short: &str) -> anyhow::Result<()> {
        self.lab.add_ns(short)?;
        Ok(())
    }

    /// An underlay link between two hosts.
    fn underlay(&self, a: &str, a_ip: Ipv4Addr, b: &str, b_ip: Ipv4Addr) -> anyhow::Result<()> {
        let cidr =
            |ip: Ipv4Addr| -> anyhow::Result<ipnet::IpNet> { Ok(format!("{ip}/24").parse()?) };
        self.lab.link(
            (a, "underlay0", cidr(a_ip)?),
            (b, "underlay0", cidr(b_ip)?),
            1500,
        )
    }

    /// Runs `weft --home <host home> ARGS` inside a host namespace.
    fn weft(&mut self, host: &str, args: &[&str]) -> anyhow::Result<String> {
        let out = self
            .lab
            .weft(host, args)
            .output()
            .context("cannot run weft (through `ip netns exec`: is iproute2 installed?)")?;
        anyhow::ensure!(
            out.status.success(),
            "`weft {}` on {host} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
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
    let signals = crate::sys::signal::block_stop_signals().context("cannot block signals")?;
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

/// Runs the demo; with `keep` the lab stays up afterwards (and says how to remove it).
pub(crate) fn demo(keep: bool) -> anyhow::Result<()> {
    anyhow::ensure!(
        nix::unistd::geteuid().is_root(),
        "weft lab demo needs root (it creates network namespaces)"
    );
    let interrupted = watch_stop_signals()?;
    let prefix = format!("wfdemo{}", std::process::id());
    let exe = std::env::current_exe().context("cannot find the weft executable")?;
    let mut lab = DemoLab {
        lab: testlab::Lab::new(&prefix, &exe, Teardown::Reset)?,
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
        return Err(Interrupted.into());
    }
    result?;

    if keep {
        lab.lab.keep();
        println!(
            "\nThe lab is still running (namespaces {p}h1 {p}h2 {p}c1 {p}c2 {p}c3; homes under {t}). Clean up with:\n  for h in h1 h2; do ip netns exec {p}$h weft --home {t}/$h reset; done\n  for n in h1 h2 c1 c2 c3; do ip netns delete {p}$n; done; rm -r {t}",
            p = lab.lab.prefix(),
            t = lab.lab.tmp().display(),
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
