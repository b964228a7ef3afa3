//! The namespace lab that `weft lab demo`, the end-to-end tests and the throughput bench
//! share: network namespaces as hosts and containers, veths between them, weft routers
//! with a home each, and a teardown that removes all of it, even after a failure.
//!
//! Contract:
//! - Everything is named with the lab's prefix: namespaces are `<prefix><short>`, homes
//!   and files live in `<tmp>/<prefix>`. A lab touches nothing it did not make.
//! - Commands run through `ip netns exec`, as an operator's would, so a namespace's
//!   `/etc/netns/<name>/` files (e.g. its own `hosts`) apply.
//! - Dropping the lab stops every router it ran ([`Teardown`]), kills whatever is still
//!   inside its namespaces (only it started processes there), deletes the namespaces in
//!   the reverse order of their making (their veths go with them) and its directory,
//!   unless [`Lab::keep`] was called.

use std::os::fd::{AsFd as _, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use ipnet::IpNet;

use crate::netlink::Netlink;
use crate::netns::{self, NamedNetns, NetnsTarget};

/// How the lab's routers are stopped when it drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Teardown {
    /// SIGKILL (a crash): fast; the namespaces' deletion removes the links.
    Kill,
    /// `weft reset --force` (the orderly way, which also checks reset), then SIGKILL for
    /// a router that survived it.
    Reset,
}

/// How long teardown waits for a router to go after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// A lab; see the module docs.
#[derive(Debug)]
pub struct Lab {
    prefix: String,
    tmp: PathBuf,
    weft: PathBuf,
    namespaces: Vec<NamedNetns>,
    /// (host short name, home) of every router a command ran for (behind a lock, so
    /// running a command needs no `&mut` and a lab can be shared between threads).
    routers: Mutex<Vec<(String, PathBuf)>>,
    teardown: Teardown,
    keep: bool,
}

impl Lab {
    /// An empty lab whose names start with `prefix`, running the weft binary at `weft`.
    pub fn new(prefix: &str, weft: &Path, teardown: Teardown) -> anyhow::Result<Self> {
        let tmp = std::env::temp_dir().join(prefix);
        std::fs::create_dir_all(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        Ok(Self {
            prefix: prefix.to_string(),
            tmp,
            weft: weft.to_path_buf(),
            namespaces: Vec::new(),
            routers: Mutex::new(Vec::new()),
            teardown,
            keep: false,
        })
    }

    /// The prefix of every name.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The lab's directory (homes, logs, scratch files).
    pub fn tmp(&self) -> &Path {
        &self.tmp
    }

    /// The full name of namespace `short`.
    pub fn ns(&self, short: &str) -> String {
        format!("{}{short}", self.prefix)
    }

    /// Creates namespace `short` with its loopback up; returns its full name.
    pub fn add_ns(&mut self, short: &str) -> anyhow::Result<String> {
        let name = self.ns(short);
        let ns = NamedNetns::create(&name).with_context(|| format!("create namespace {name}"))?;
        let fd = ns.open()?;
        // Registered before it is configured, so a failure below still removes it.
        self.namespaces.push(ns);
        netns::run_in_netns(fd.as_fd(), || -> anyhow::Result<()> {
            let mut nl = Netlink::new()?;
            let lo = nl.link_by_name("lo")?.context("no lo")?;
            nl.set_up(lo.index, true)?;
            Ok(())
        })??;
        Ok(name)
    }

    /// Opens namespace `short`.
    pub fn ns_fd(&self, short: &str) -> anyhow::Result<OwnedFd> {
        let name = self.ns(short);
        NetnsTarget::Name(name.clone())
            .open()
            .with_context(|| format!("open namespace {name}"))
    }

    /// A veth from `a_if` in `a` to `b_if` in `b` (short names), both ends `mtu` and up.
    pub fn veth(
        &self,
        (a, a_if): (&str, &str),
        (b, b_if): (&str, &str),
        mtu: u32,
    ) -> anyhow::Result<()> {
        let (fa, fb) = (self.ns_fd(a)?, self.ns_fd(b)?);
        netns::run_in_netns(fa.as_fd(), || -> anyhow::Result<()> {
            Netlink::new()?.create_veth(a_if, b_if, fb.as_fd())?;
            Ok(())
        })?
        .with_context(|| format!("veth {a_if} in {a} to {b_if} in {b}"))?;
        for (ns, ifname) in [(a, a_if), (b, b_if)] {
            self.in_ns(ns, |nl| {
                let link = nl
                    .link_by_name(ifname)?
                    .with_context(|| format!("{ifname} missing"))?;
                nl.set_mtu(link.index, mtu)?;
                nl.set_up(link.index, true)?;
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Adds `cidr` to `ifname` in namespace `short`.
    pub fn add_address(&self, short: &str, ifname: &str, cidr: IpNet) -> anyhow::Result<()> {
        self.in_ns(short, |nl| {
            let link = nl
                .link_by_name(ifname)?
                .with_context(|| format!("{ifname} missing"))?;
            nl.add_address(link.index, cidr)?;
            Ok(())
        })
        .with_context(|| format!("add {cidr} to {ifname} in {short}"))
    }

    /// An underlay link between two hosts: a veth with an address on each end.
    pub fn link(
        &self,
        (a, a_if, a_cidr): (&str, &str, IpNet),
        (b, b_if, b_cidr): (&str, &str, IpNet),
        mtu: u32,
    ) -> anyhow::Result<()> {
        self.veth((a, a_if), (b, b_if), mtu)?;
        self.add_address(a, a_if, a_cidr)?;
        self.add_address(b, b_if, b_cidr)
    }

    fn in_ns(
        &self,
        short: &str,
        f: impl FnOnce(&mut Netlink) -> anyhow::Result<()> + Send,
    ) -> anyhow::Result<()> {
        let fd = self.ns_fd(short)?;
        netns::run_in_netns(fd.as_fd(), || f(&mut Netlink::new()?))?
    }

    /// `ip netns exec <namespace> ARGV...`, to run or spawn.
    pub fn exec(&self, short: &str, argv: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns(short)])
            .args(argv)
            .stdin(Stdio::null());
        cmd
    }

    /// The home of the router on `host`.
    pub fn home(&self, host: &str) -> PathBuf {
        self.tmp.join(host)
    }

    /// `weft --home <host's home> ARGS` inside `host`; the router there is the lab's to
    /// stop from now on.
    pub fn weft(&self, host: &str, args: &[&str]) -> Command {
        let home = self.home(host);
        let mut routers = self.routers.lock().unwrap_or_else(PoisonError::into_inner);
        if !routers.iter().any(|(_, h)| *h == home) {
            routers.push((host.to_string(), home.clone()));
        }
        drop(routers);
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns(host)])
            .arg(&self.weft)
            .arg("--home")
            .arg(&home)
            .args(args)
            // A lab's routers are not Docker hosts, even where a dockerd runs, unless the
            // caller says so (`WEFT_NO_DOCKER_PLUGIN=false`, as tests/docker.rs does).
            .env("WEFT_NO_DOCKER_PLUGIN", "true")
            .stdin(Stdio::null());
        cmd
    }

    /// The pid in the pidfile of the router on `host` (stale or not).
    pub fn router_pid(&self, host: &str) -> Option<u32> {
        pidfile_pid(&self.home(host).join("weft.pid"))
    }

    /// Leaves everything in place when the lab drops (`weft lab demo --keep`).
    pub fn keep(&mut self) {
        self.keep = true;
    }

    fn stop_router(&self, host: &str, home: &Path) {
        if self.teardown == Teardown::Reset {
            let reset = self.weft(host, &["reset", "--force"]).output();
            match reset {
                Ok(out) if out.status.success() => {}
                Ok(out) => eprintln!(
                    "lab teardown: `weft reset` on {host} failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
                Err(e) => eprintln!("lab teardown: cannot run `weft reset` on {host}: {e}"),
            }
        }
        // A router reset did not stop (or every router, for Kill), then the Docker plugin
        // it may have started: by their own pidfiles, and only if that pid still is a weft
        // of this home.
        for pidfile in ["weft.pid", "docker-plugin.pid"] {
            if let Some(pid) = pidfile_pid(&home.join(pidfile))
                && cmdline_mentions(pid, home)
            {
                kill_and_wait(pid);
            }
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        let routers = std::mem::take(
            self.routers
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for (host, home) in routers.into_iter().rev() {
            self.stop_router(&host, &home);
        }
        while let Some(ns) = self.namespaces.pop() {
            // Whatever still runs inside was started by this lab (a server, a helper);
            // it would keep the namespace alive, nameless.
            if let Ok(fd) = ns.open() {
                for pid in pids_in(fd.as_fd()) {
                    eprintln!("lab teardown: pid {pid} still in {}; killing it", ns.name());
                    kill_and_wait(pid);
                }
            }
            drop(ns);
        }
        if let Err(e) = std::fs::remove_dir_all(&self.tmp)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            eprintln!("lab teardown: cannot remove {}: {e}", self.tmp.display());
        }
    }
}

fn pidfile_pid(pidfile: &Path) -> Option<u32> {
    std::fs::read_to_string(pidfile).ok()?.trim().parse().ok()
}

/// Whether the process's command line names `needle` (a pid from a stale pidfile that
/// the system gave to something else is never killed).
fn cmdline_mentions(pid: u32, needle: &Path) -> bool {
    let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let needle = needle.as_os_str().as_encoded_bytes();
    raw.split(|&b| b == 0).any(|arg| arg == needle)
}

/// Whether the process exists and is not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X']))
    })
}

/// SIGKILLs `pid` and waits (bounded) until it is gone.
fn kill_and_wait(pid: u32) {
    let Ok(raw) = i32::try_from(pid) else { return };
    if raw == 0 || pid == std::process::id() {
        return;
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(raw),
        nix::sys::signal::Signal::SIGKILL,
    );
    let deadline = std::time::Instant::now() + KILL_WAIT;
    while alive(pid) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    if alive(pid) {
        eprintln!("lab teardown: pid {pid} still alive {KILL_WAIT:?} after SIGKILL");
    }
}

/// The processes whose network namespace is `netns`.
fn pids_in(netns: std::os::fd::BorrowedFd<'_>) -> Vec<u32> {
    let Ok(id) = netns::netns_id(netns) else {
        return Vec::new();
    };
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            use std::os::unix::fs::MetadataExt as _;
            std::fs::metadata(format!("/proc/{pid}/ns/net"))
                .is_ok_and(|m| m.dev() == id.dev() && m.ino() == id.ino())
        })
        .filter(|&pid| alive(pid))
        .collect()
}
