//! [`Lab`]: one scenario's namespaces, links, servers and weft routers, torn down on
//! drop in the reverse order of their making. Namespaces, links, routers and teardown
//! are weft's own [`testlab::Lab`] (the one the end-to-end tests and `weft lab demo`
//! use); this adds servers, deadlines, stop requests and the bench's naming.

use std::fs::OpenOptions;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Context as _;
use weft::testlab;

use crate::process::{self, ChildGuard};
use crate::signals;

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
    /// `wfb<pid>`: links are `<link_prefix>-<port>`.
    link_prefix: String,
    servers: Vec<ChildGuard>,
    routers: Vec<Router>,
    /// Namespaces `wfb<pid>-<seq>-<role>` with their links, the routers (`weft reset`,
    /// then SIGKILL), the temp dir; dropped after the servers.
    inner: testlab::Lab,
}

impl Lab {
    /// An empty lab for the `seq`th scenario of this run.
    pub(crate) fn new(seq: usize) -> anyhow::Result<Self> {
        let pid = std::process::id();
        let inner = testlab::Lab::new(
            &format!("wfb{pid}-{seq}-"),
            Path::new(WEFT),
            testlab::Teardown::Reset,
        )?;
        Ok(Self {
            link_prefix: format!("wfb{pid}"),
            servers: Vec::new(),
            routers: Vec::new(),
            inner,
        })
    }

    /// The role of one of this lab's namespaces, from its full name.
    fn role<'a>(&self, ns: &'a str) -> anyhow::Result<&'a str> {
        ns.strip_prefix(self.inner.prefix())
            .with_context(|| format!("{ns} is not a namespace of this lab"))
    }

    /// Creates namespace `<prefix>-<role>` with loopback up; returns its name.
    pub(crate) fn add_ns(&mut self, role: &str) -> anyhow::Result<String> {
        signals::check()?;
        self.inner.add_ns(role)
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
        match self.role(ns) {
            Ok(role) => self.inner.exec(role, argv),
            // Not one of ours: run it as named (it fails, saying so) rather than elsewhere.
            Err(_) => {
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", ns]).args(argv);
                cmd
            }
        }
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
        signals::check()?;
        let (host, container) = (self.role(host)?, self.role(container)?);
        self.inner.veth((host, host_if), (container, "eth0"), mtu)?;
        self.inner.add_address(container, "eth0", cidr.parse()?)
    }

    /// The underlay between two hosts: a veth named `wfb<pid>-u` on both sides.
    pub(crate) fn underlay(
        &self,
        (a, a_cidr): (&str, &str),
        (b, b_cidr): (&str, &str),
        mtu: u32,
    ) -> anyhow::Result<()> {
        signals::check()?;
        let link = self.link_name("u")?;
        self.inner.link(
            (self.role(a)?, &link, a_cidr.parse()?),
            (self.role(b)?, &link, b_cidr.parse()?),
            mtu,
        )
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
            )?;
            Ok(out.status.success().then_some(()))
        })
    }

    /// Starts a long-running process in `ns` (output to `<tmp>/<log>`), killed when the
    /// lab drops; returns its pid (`ip netns exec` execs in place, so it is the
    /// program's own).
    pub(crate) fn spawn(&mut self, ns: &str, argv: &[&str], log: &str) -> anyhow::Result<u32> {
        let log_path = self.inner.tmp().join(log);
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
        std::fs::read_to_string(self.inner.tmp().join(log)).unwrap_or_default()
    }

    /// A file in the lab's temp dir (removed at teardown).
    pub(crate) fn tmp_file(&self, name: &str) -> PathBuf {
        self.inner.tmp().join(name)
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
            home: self.inner.home(self.role(host)?),
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
        let mut cmd = self.inner.weft(self.role(&router.host)?, args);
        process::run_ok(&mut cmd, timeout).map_err(|e| {
            let log = router.log_tail();
            if log.is_empty() {
                e
            } else {
                e.context(format!("router log ({}):\n{log}", router.home.display()))
            }
        })
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
}

impl Drop for Lab {
    fn drop(&mut self) {
        // The servers first; `inner` then resets the routers, kills what is left in the
        // namespaces, removes them (containers before hosts) and the temp dir.
        self.servers.clear();
    }
}

/// Whether the weft binary at `path` knows `weft launch --password-file`.
pub(crate) fn weft_supports_password_file(path: &Path) -> anyhow::Result<bool> {
    let help = process::run_ok(Command::new(path).args(["launch", "--help"]), WEFT_TIMEOUT)?;
    Ok(help.contains("--password-file"))
}
