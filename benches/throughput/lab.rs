
//! [`Lab`]: one scenario's namespaces, links, servers and weft routers, torn down on
//! drop in the reverse order of their making.

use std::fs::OpenOptions;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Context as _;

use crate::process::{self, ChildGuard, OnStop};

/// Deadline of an `ip` command.
const IP_TIMEOUT: Duration = Duration::from_secs(10);
/// Deadline of `weft launch` (which itself waits up to 30 s for the router's API).
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(45);
/// Deadline of the other weft verbs.
const WEFT_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest interface name the kernel takes.
const IFNAME_MAX: usize = 15;

/// The weft binary cargo built for this bench (release profile).
pub(crate) const WEFT: &str = env!("CARGO_BIN_EXE_weft");

/// A weft router the lab launched: where it runs and where its files are.
#[derive(Debug, Clone)]
pub(crate) struct Router {
    /// The host namespace it runs in.
    pub(crate) host: String,
    /// Its `--home`.
    pub(crate) home: PathBuf,
}

impl Router {
    /// The pid in its pidfile (`--home DIR` keeps it in DIR/weft.pid, see src/home.rs).
    pub(crate) fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.home.join("weft.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// The last lines of its log, for error messages.
    pub(crate) fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.home.join("weft.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let start = lines.len().saturating_sub(20);
        lines.get(start..).unwrap_or_default().join("\n")
    }
}

/// One scenario's world. Everything it makes is named with the harness's pid.
#[derive(Debug)]
pub(crate) struct Lab {
    /// `wfb<pid>-<seq>`: namespaces are `<prefix>-<role>`.
    prefix: String,
    /// `wfb<pid>`: links are `<link_prefix>-<port>`.
    link_prefix: String,
    tmp: PathBuf,
    namespaces: Vec<String>,
    servers: Vec<ChildGuard>,
    routers: Vec<Router>,
}

impl Lab {
    /// An empty lab for the `seq`th scenario of this run.
    pub(crate) fn new(seq: usize) -> anyhow::Result<Self> {
        let pid = std::process::id();
        let prefix = format!("wfb{pid}-{seq}");
        let tmp = std::env::temp_dir().join(&prefix);
        std::fs::create_dir_all(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        Ok(Self {
            prefix,
            link_prefix: format!("wfb{pid}"),
            tmp,
            namespaces: Vec::new(),
            servers: Vec::new(),
            routers: Vec::new(),
        })
    }

    /// Creates namespace `<prefix>-<role>` with loopback up; returns its name.
    pub(crate) fn add_ns(&mut self, role: &str) -> anyhow::Result<String> {
        let name = format!("{}-{role}", self.prefix);
        process::run_ok(Command::new("ip").args(["netns", "add", &name]), IP_TIMEOUT)?;
        self.namespaces.push(name.clone());
        self.ip(&name, &["link", "set", "lo", "up"])?;
        Ok(name)
    }

    /// `ip -n NS ARGS`; returns stdout.
    pub(crate) fn ip(&self, ns: &str, args: &[&str]) -> anyhow::Result<String> {
        process::run_ok(Command::new("ip").args(["-n", ns]).args(args), IP_TIMEOUT)
    }

    /// `ip -n NS LINE`, LINE split on whitespace (for long commands whose words,
    /// names included, never contain spaces).
    pub(crate) fn ip_line(&self, ns: &str, line: &str) -> anyhow::Result<String> {
        self.ip(ns, &line.split_whitespace().collect::<Vec<_>>())
    }

    /// `ip netns exec NS ARGV`, to run or spawn.
    pub(crate) fn exec(&self, ns: &str, argv: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns]).args(argv);
        cmd
    }

    /// The name of a link the lab makes on a host: `wfb<pid>-<port>`.
    pub(crate) fn link_name(&self, port: &str) -> anyhow::Result<String> {
        let name = format!("{}-{port}", self.link_prefix);
        if name.len() > IFNAME_MAX {
            anyhow::bail!("link name {name} is longer than {IFNAME_MAX} bytes");
        }
        Ok(name)
    }

    /// A veth from `host` (end `host_if`, up, `mtu`) into `container`, where it is
    /// `eth0` with `cidr`, `mtu` and every offload at its default.
    pub(crate) fn container_veth(
        &self,
        host: &str,
        host_if: &str,
        container: &str,
        cidr: &str,
        mtu: u32,
    ) -> anyhow::Result<()> {
        self.ip_line(
            host,
            &format!(
                "link add {host_if} mtu {mtu} type veth peer name eth0 mtu {mtu} \
                     netns {container}"
            ),
        )?;
        self.ip(host, &["link", "set", host_if, "up"])?;
        self.ip(container, &["addr", "add", cidr, "dev", "eth0"])?;
        self.ip(container, &["link", "set", "eth0", "up"])?;
        Ok(())
    }

    /// The underlay between two hosts: a veth named `wfb<pid>-u` on both sides.
    pub(crate) fn underlay(
        &self,
        (a, a_cidr): (&str, &str),
        (b, b_cidr): (&str, &str),
        mtu: u32,
    ) -> anyhow::Result<()> {
        let link = self.link_name("u")?;
        self.ip_line(
            a,
            &format!("link add {link} mtu {mtu} type veth peer name {link} mtu {mtu} netns {b}"),
        )?;
        for (ns, cidr) in [(a, a_cidr), (b, b_cidr)] {
            self.ip(ns, &["addr", "add", cidr, "dev", &link])?;
            self.ip(ns, &["link", "set", &link, "up"])?;
        }
        Ok(())
    }

    /// The MTU of `ifname` inside `ns`.
    pub(crate) fn mtu(&self, ns: &str, ifname: &str) -> anyhow::Result<u32> {
        let json = self.ip(ns, &["-j", "link", "show", "dev", ifname])?;
        let links: serde_json::Value = serde_json::from_str(&json)
            .with_context(|| format!("`ip -j link show` printed no JSON: {json}"))?;
        links
            .pointer("/0/mtu")
            .and_then(serde_json::Value::as_u64)
            .and_then(|m| u32::try_from(m).ok())
            .with_context(|| format!("no MTU for {ifname} in {ns}: {json}"))
    }

    /// Waits until `ping` from `from` reaches `to`. `health` runs between attempts and
    /// may fail the wait early (a router died).
    pub(crate) fn wait_ping(
        &self,
        from: &str,
        to: Ipv4Addr,
        timeout: Duration,
        mut health: impl FnMut() -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let to = to.to_string();
        process::wait_until(&format!("{from} to ping {to}"), timeout, || {
            health()?;
            let out = process::run(
                &mut self.exec(from, &["ping", "-c", "1", "-W", "1", "-q", &to]),
                Duration::from_secs(5),
                OnStop::Abort,
            )?;
            Ok(out.status.success().then_some(()))
        })
    }

    /// Starts a long-running process in `ns` (output to `<tmp>/<log>`), killed when the
    /// lab drops; returns its pid (`ip netns exec` execs in place, so it is the
    /// program's own).
    pub(crate) fn spawn(&mut self, ns: &str, argv: &[&str], log: &str) -> anyhow::Result<u32> {
        let log_path = self.tmp.join(log);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("cannot open {}", log_path.display()))?;
        let mut cmd = self.exec(ns, argv);
        let what = process::describe(&cmd);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("cannot duplicate a log handle")?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start `{what}`"))?;
        let pid = child.id();
        self.servers.push(ChildGuard(child));
        Ok(pid)
    }

    /// What a process started by [`spawn`](Self::spawn) logged.
    pub(crate) fn log(&self, log: &str) -> String {
        std::fs::read_to_string(self.tmp.join(log)).unwrap_or_default()
    }

    /// A file in the lab's temp dir (removed at teardown).
    pub(crate) fn tmp_file(&self, name: &str) -> PathBuf {
        self.tmp.join(name)
    }

    /// `weft launch PEERS EXTRA` in `host`; returns the router once its API answers.
    pub(crate) fn launch_weft(
        &mut self,
        host: &str,
        peers: &[&str],
        extra: &[&str],
    ) -> anyhow::Result<Router> {
        let router = Router {
            host: host.to_owned(),
            home: self.tmp.join(format!("weft{}", self.routers.len() + 1)),
        };
        // Registered before launching, so a half-started router is torn down too.
        self.routers.push(router.clone());
        let mut args = vec!["launch"];
        args.extend_from_slice(peers);
        args.extend_from_slice(extra);
        self.weft(&router, &args, LAUNCH_TIMEOUT)
            .with_context(|| format!("weft launch on {host} failed"))?;
        if router.pid().is_none() {
            anyhow::bail!(
                "weft launch on {host} succeeded but left no pid in {}",
                router.home.join("weft.pid").display()
            );
        }
        Ok(router)
    }

    /// `weft --home HOME ARGS` inside the router's host; returns stdout.
    pub(crate) fn weft(
        &self,
        router: &Router,
        args: &[&str],
        timeout: Duration,
    ) -> anyhow::Result<String> {
        let mut cmd = self.weft_command(router, args);
        process::run_ok(&mut cmd, timeout).map_err(|e| {
            let log = router.log_tail();
            if log.is_empty() {
                e
            } else {
                e.context(format!("router log ({}):\n{log}", router.home.display()))
            }
        })
    }

    fn weft_command(&self, router: &Router, args: &[&str]) -> Command {
        let mut cmd = self.exec(&router.host, &[WEFT, "--home"]);
        cmd.arg(&router.home).args(args);
        cmd
    }

    /// `weft attach CONTAINER --ip CIDR` through `router`; the container's interface is
    /// weft's default, `weft0`.
    pub(crate) fn attach(
        &self,
        router: &Router,
        container: &str,
        cidr: &str,
    ) -> anyhow::Result<()> {
        self.weft(router, &["attach", container, "--ip", cidr], WEFT_TIMEOUT)
            .with_context(|| format!("weft attach {container} on {} failed", router.host))?;
        Ok(())
    }

    /// Fails, with the router's log, if one of the lab's routers died.
    pub(crate) fn routers_alive(&self) -> anyhow::Result<()> {
        for router in &self.routers {
            if !router.pid().is_some_and(process::alive) {
                anyhow::bail!(
                    "the weft router on {} is not running; its log:\n{}",
                    router.host,
                    router.log_tail()
                );
            }
        }
        Ok(())
    }

    fn stop_router(&self, router: &Router) {
        let pid = router.pid();
        let mut reset = self.weft_command(router, &["reset", "--force"]);
        match process::run(&mut reset, WEFT_TIMEOUT, OnStop::Continue) {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "   teardown: `weft reset` on {} failed ({}): {}",
                router.host,
                out.status,
                out.stderr.trim()
            ),
            Err(e) => eprintln!("   teardown: `weft reset` on {}: {e:#}", router.host),
        }
        let Some(pid) = pid else { return };
        if process::alive(pid)
            && process::cmdline_mentions(pid, &router.home)
            && let Err(e) = process::kill_and_wait(pid, Duration::from_secs(5))
        {
            eprintln!("   teardown: weft router on {}: {e:#}", router.host);
        }
    }

    fn delete_ns(name: &str) {
        // Anything still inside one of our namespaces was started by this harness
        // (a router's helper, an iperf3); it would keep the namespace alive, unnamed.
        let pids = process::run(
            Command::new("ip").args(["netns", "pids", name]),
            IP_TIMEOUT,
            OnStop::Continue,
        )
        .map(|out| out.stdout)
        .unwrap_or_default();
        for pid in pids
            .split_whitespace()
            .filter_map(|p| p.parse::<u32>().ok())
        {
            eprintln!("   teardown: pid {pid} still in {name}; killing it");
            if let Err(e) = process::kill_and_wait(pid, Duration::from_secs(5)) {
                eprintln!("   teardown: {e:#}");
            }
        }
        let del = process::run(
            Command::new("ip").args(["netns", "del", name]),
            IP_TIMEOUT,
            OnStop::Continue,
        );
        match del {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "   teardown: `ip netns del {name}` failed: {}; delete it by hand",
                out.stderr.trim()
            ),
            Err(e) => eprintln!("   teardown: `ip netns del {name}`: {e:#}"),
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.servers.clear();
        for router in self.routers.iter().rev() {
            self.stop_router(router);
        }
        // Containers before hosts: the reverse of creation.
        while let Some(ns) = self.namespaces.pop() {
            Self::delete_ns(&ns);
        }
        if let Err(e) = std::fs::remove_dir_all(&self.tmp)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            eprintln!("   teardown: cannot remove {}: {e}", self.tmp.display());
        }
    }
}

/// Whether the weft binary at `path` knows `weft launch --password-file`.
pub(crate) fn weft_supports_password_file(path: &Path) -> anyhow::Result<bool> {
    let help = process::run_ok(Command::new(path).args(["launch", "--help"]), WEFT_TIMEOUT)?;
    Ok(help.contains("--password-file"))
}
