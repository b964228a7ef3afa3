//! The netns throughput harness: weft's data plane against the Linux kernel's, measured in
//! the same run on the same machine.
//!
//! `cargo bench --bench throughput -- [--only S,..] [--streams 1,4] [--duration SECS]
//! [--markdown FILE]` builds each scenario's topology out of network namespaces, measures
//! it with iperf3 (TCP with 1 and N streams, then 64-byte UDP), tears it down, and prints
//! markdown tables in which every weft figure is a ratio of its kernel baseline from the
//! same run. docs/perf/README.md says how to run it and how to read the figures.
//!
//! Contract:
//! - Needs root. Without it the harness says why and exits 0, or 1 under `CI=true`.
//! - Without `--bench` (which `cargo bench` passes) it runs in test mode, as criterion
//!   benches do under `cargo test --benches`: 1-second runs, to prove the harness works.
//! - Everything it makes carries its pid: namespaces are `wfb<pid>-<n>-<role>`, links are
//!   made only inside those namespaces and named `wfb<pid>-<port>` on the hosts. Nothing is
//!   created in the caller's namespace.
//! - Each scenario's [`lab::Lab`] tears down on drop — iperf3 servers, weft routers
//!   (`weft reset`, then SIGKILL by the pidfile's pid), namespaces, temp files — after
//!   success, error or panic. SIGINT/SIGTERM/SIGHUP only set a stop flag that every wait
//!   checks, so teardown still runs. Only SIGKILL of the harness leaves debris.
//! - Every wait checks a condition against a deadline (ping answers, port listens, process
//!   exited); nothing sleeps and hopes, nothing hangs. A scenario that cannot be built or
//!   measured is reported as failed with the reason, and the next one runs.

use std::process::ExitCode;

use clap::Parser as _;

use cli::Args;
use report::{Outcome, Report};

fn main() -> ExitCode {
    let args = Args::parse();
    if !nix::unistd::geteuid().is_root() {
        let why = "throughput needs root: it creates network namespaces, veths, bridges, \
                   vxlan devices and weft routers";
        if std::env::var("CI").as_deref() == Ok("true") {
            eprintln!("{why}, and CI=true: refusing to skip");
            return ExitCode::FAILURE;
        }
        eprintln!("SKIPPED {why}; run it as root (sudo -E cargo bench --bench throughput)");
        return ExitCode::SUCCESS;
    }
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("throughput: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the chosen scenarios in order and reports; the exit code says whether any failed.
fn run(args: &Args) -> anyhow::Result<ExitCode> {
    signals::install()?;
    process::require_tools(&["ip", "iperf3", "ping"])?;
    let plan = args.plan()?;
    let scenarios = args.scenarios();
    if scenarios.is_empty() {
        eprintln!("throughput: no scenario matches --only and the filters; nothing to do");
        return Ok(ExitCode::SUCCESS);
    }
    if !args.bench {
        eprintln!(
            "throughput: test mode (no --bench): {} s runs, to check that the harness works",
            plan.duration
        );
    }
    let mut report = Report::new(report::MachineInfo::collect()?);
    let mut seq = 0;
    'rounds: for round in 1..=plan.repeat {
        for &scenario in &scenarios {
            if signals::stop_requested() {
                break 'rounds;
            }
            if plan.repeat > 1 {
                eprintln!("== {} (round {round}/{})", scenario.name(), plan.repeat);
            } else {
                eprintln!("== {}", scenario.name());
            }
            let outcome = scenarios::run(seq, scenario, &plan);
            seq += 1;
            match &outcome {
                Outcome::Measured(_) => {}
                Outcome::Skipped(why) => eprintln!("   skipped: {why}"),
                Outcome::Failed(why) => eprintln!("   FAILED: {why}"),
            }
            report.push(scenario, round, outcome);
        }
    }
    let text = report.render(&plan);
    println!("{text}");
    if let Some(path) = &args.markdown {
        std::fs::write(path, &text)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
        eprintln!("throughput: wrote {}", path.display());
    }
    if signals::stop_requested() {
        eprintln!("throughput: interrupted; everything it made is torn down");
        return Ok(ExitCode::from(130));
    }
    Ok(if report.any_failed() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

mod cli {
    //! The command line, and the scenarios with their baselines and targets.

    use std::path::PathBuf;

    use clap::{Parser, ValueEnum};

    /// Measure weft against the Linux kernel in network namespaces (iperf3; needs root).
    #[derive(Debug, Parser)]
    #[command(name = "throughput", max_term_width = 100)]
    pub(crate) struct Args {
        /// Seconds each iperf3 run lasts [default: 10, or 1 in test mode].
        #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u32).range(1..=3600))]
        pub(crate) duration: Option<u32>,
        /// Run only these scenarios (comma-separated); they always run in the order listed
        /// here, baselines first.
        #[arg(long, value_enum, value_delimiter = ',', value_name = "SCENARIO")]
        pub(crate) only: Vec<Scenario>,
        /// Parallel TCP stream counts to measure in every scenario (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "1,4", value_name = "N",
              value_parser = clap::value_parser!(u32).range(1..=128))]
        pub(crate) streams: Vec<u32>,
        /// Target rate of the 64-byte UDP run, as iperf3 -b takes it (0 = as fast as the
        /// sender can).
        #[arg(long, default_value = "0", value_name = "RATE", value_parser = parse_bitrate)]
        pub(crate) udp_bitrate: String,
        /// Skip the 64-byte UDP runs.
        #[arg(long)]
        pub(crate) no_udp: bool,
        /// Run the whole list of scenarios this many times and report medians (a noisy
        /// machine needs 3 or more).
        #[arg(long, default_value_t = 1, value_name = "N",
              value_parser = clap::value_parser!(u32).range(1..=100))]
        pub(crate) repeat: u32,
        /// Also write the report, with the machine's details and the command line, to FILE
        /// (for docs/perf/).
        #[arg(long, value_name = "FILE")]
        pub(crate) markdown: Option<PathBuf>,
        /// Passed by `cargo bench`; without it the harness runs in test mode.
        #[arg(long, hide = true)]
        pub(crate) bench: bool,
        /// Run only scenarios whose name contains one of these (like criterion's filters,
        /// so `cargo bench -- FILTER` works across all benches).
        #[arg(value_name = "FILTER")]
        pub(crate) filters: Vec<String>,
    }

    /// What every scenario measures, resolved from the arguments.
    #[derive(Debug, Clone)]
    pub(crate) struct Plan {
        /// Seconds per iperf3 run.
        pub(crate) duration: u32,
        /// TCP stream counts, deduplicated, in the order given.
        pub(crate) streams: Vec<u32>,
        /// iperf3 -b of the UDP run, or `None` to skip it.
        pub(crate) udp_bitrate: Option<String>,
        /// Rounds over all scenarios.
        pub(crate) repeat: u32,
        /// The command line, as a user would type it, for the report.
        pub(crate) command_line: String,
    }

    impl Args {
        /// The measurement plan; test mode shortens the runs.
        pub(crate) fn plan(&self) -> anyhow::Result<Plan> {
            let mut streams = Vec::new();
            for &n in &self.streams {
                if !streams.contains(&n) {
                    streams.push(n);
                }
            }
            if streams.is_empty() {
                anyhow::bail!("--streams needs at least one stream count");
            }
            let default_duration = if self.bench { 10 } else { 1 };
            Ok(Plan {
                duration: self.duration.unwrap_or(default_duration),
                streams,
                udp_bitrate: (!self.no_udp).then(|| self.udp_bitrate.clone()),
                repeat: self.repeat,
                command_line: command_line(),
            })
        }

        /// The scenarios to run, in canonical order.
        pub(crate) fn scenarios(&self) -> Vec<Scenario> {
            Scenario::ALL
                .into_iter()
                .filter(|s| self.only.is_empty() || self.only.contains(s))
                .filter(|s| {
                    self.filters.is_empty() || self.filters.iter().any(|f| s.name().contains(f))
                })
                .collect()
        }
    }

    /// `cargo bench --bench throughput -- ARGS` with the arguments this run got.
    fn command_line() -> String {
        let args: Vec<String> = std::env::args()
            .skip(1)
            .filter(|a| a != "--bench")
            .collect();
        let mut line = String::from("cargo bench --bench throughput");
        if !args.is_empty() {
            line.push_str(" -- ");
            line.push_str(&args.join(" "));
        }
        line
    }

    /// Accepts what iperf3 -b accepts: a number with an optional k/m/g/t suffix.
    fn parse_bitrate(s: &str) -> Result<String, String> {
        let digits = s.trim_end_matches(['k', 'K', 'm', 'M', 'g', 'G', 't', 'T']);
        let suffixes = s.len() - digits.len();
        if suffixes <= 1
            && !digits.is_empty()
            && digits
                .parse::<f64>()
                .is_ok_and(|v| v.is_finite() && v >= 0.0)
        {
            Ok(s.to_owned())
        } else {
            Err(format!(
                "{s:?} is not a rate iperf3 -b accepts (e.g. 0, 500M, 1.5G)"
            ))
        }
    }

    /// A topology with a traffic path through it; each has its own kernel baseline.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
    pub(crate) enum Scenario {
        /// Two containers on one host, joined by a kernel bridge.
        LocalBridge,
        /// Two containers on one host, switched by one weft router.
        LocalWeft,
        /// Two hosts, a kernel bridge and a kernel `vxlan` device on each.
        CrossVxlanKernel,
        /// Two hosts, a weft router on each, userspace VXLAN between them.
        CrossWeft,
        /// Like `cross-weft` with a password, so the encrypted tunnel carries the traffic.
        CrossWeftEncrypted,
    }

    impl Scenario {
        /// Every scenario, baselines before the scenarios measured against them.
        pub(crate) const ALL: [Self; 5] = [
            Self::LocalBridge,
            Self::LocalWeft,
            Self::CrossVxlanKernel,
            Self::CrossWeft,
            Self::CrossWeftEncrypted,
        ];

        /// The name on the command line and in the report.
        pub(crate) fn name(self) -> &'static str {
            match self {
                Self::LocalBridge => "local-bridge",
                Self::LocalWeft => "local-weft",
                Self::CrossVxlanKernel => "cross-vxlan-kernel",
                Self::CrossWeft => "cross-weft",
                Self::CrossWeftEncrypted => "cross-weft-encrypted",
            }
        }

        /// The scenario this one is a ratio of.
        pub(crate) fn baseline(self) -> Option<Self> {
            match self {
                Self::LocalBridge | Self::CrossVxlanKernel => None,
                Self::LocalWeft => Some(Self::LocalBridge),
                Self::CrossWeft => Some(Self::CrossVxlanKernel),
                Self::CrossWeftEncrypted => Some(Self::CrossWeft),
            }
        }

        /// The TCP throughput weft must reach, as a fraction of the baseline's. The goals
        /// are set for one stream (issues 2, 3 and 5); other stream counts are reported
        /// as ratios without a goal.
        pub(crate) fn target(self, streams: u32) -> Option<f64> {
            if streams != 1 {
                return None;
            }
            match self {
                Self::LocalBridge | Self::CrossVxlanKernel => None,
                Self::LocalWeft | Self::CrossWeftEncrypted => Some(0.5),
                Self::CrossWeft => Some(0.4),
            }
        }

        /// Whether weft routers carry the traffic (their CPU time is reported).
        pub(crate) fn uses_weft(self) -> bool {
            matches!(
                self,
                Self::LocalWeft | Self::CrossWeft | Self::CrossWeftEncrypted
            )
        }
    }
}

mod signals {
    //! SIGINT, SIGTERM and SIGHUP become a stop flag, so the harness tears down on its main
    //! thread with every guard still in scope instead of dying halfway through a setup.
    //!
    //! The signals are caught with handlers (signal-hook), not blocked: a blocked mask
    //! would be inherited by every child, iperf3 and the weft routers included.

    use std::sync::atomic::{AtomicBool, Ordering};

    use anyhow::Context as _;
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    use signal_hook::iterator::Signals;

    static STOP: AtomicBool = AtomicBool::new(false);

    /// Why a wait gave up early.
    #[derive(Debug, thiserror::Error)]
    #[error("interrupted by a signal")]
    pub(crate) struct Interrupted;

    /// Installs the handlers and the thread that turns signals into the stop flag.
    pub(crate) fn install() -> anyhow::Result<()> {
        let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])
            .context("cannot install handlers for SIGINT/SIGTERM/SIGHUP")?;
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                for sig in signals.forever() {
                    let name = match sig {
                        SIGINT => "SIGINT",
                        SIGTERM => "SIGTERM",
                        _ => "SIGHUP",
                    };
                    if STOP.swap(true, Ordering::SeqCst) {
                        eprintln!("throughput: {name} again; still tearing down, please wait");
                    } else {
                        eprintln!("throughput: {name}: stopping and tearing everything down");
                    }
                }
            })
            .context("cannot start the signal thread")?;
        Ok(())
    }

    /// Whether a signal asked the harness to stop.
    pub(crate) fn stop_requested() -> bool {
        STOP.load(Ordering::SeqCst)
    }

    /// `Err(Interrupted)` once a stop was requested.
    pub(crate) fn check() -> Result<(), Interrupted> {
        if stop_requested() {
            Err(Interrupted)
        } else {
            Ok(())
        }
    }
}

mod process {
    //! Running commands with deadlines: nothing the harness starts can hang it.

    use std::path::Path;
    use std::process::{Child, Command, ExitStatus, Stdio};
    use std::thread::JoinHandle;
    use std::time::{Duration, Instant};

    use anyhow::Context as _;

    use crate::signals;

    /// How often waits re-check their condition.
    pub(crate) const POLL: Duration = Duration::from_millis(20);

    /// Whether a wait gives up when a stop is requested (setup, measuring) or carries on
    /// (teardown, which must finish).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) enum OnStop {
        /// Kill the command and return [`signals::Interrupted`].
        Abort,
        /// Let the command finish (its deadline still applies).
        Continue,
    }

    /// What a finished command printed.
    #[derive(Debug)]
    pub(crate) struct Finished {
        /// How it ended.
        pub(crate) status: ExitStatus,
        /// Its standard output.
        pub(crate) stdout: String,
        /// Its standard error.
        pub(crate) stderr: String,
    }

    /// The command as a shell user would read it, for error messages.
    pub(crate) fn describe(cmd: &Command) -> String {
        std::iter::once(cmd.get_program())
            .chain(cmd.get_args())
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Fails early, naming what to install, when a tool the harness drives is missing.
    pub(crate) fn require_tools(tools: &[&str]) -> anyhow::Result<()> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let missing: Vec<&str> = tools
            .iter()
            .copied()
            .filter(|t| !std::env::split_paths(&path).any(|dir| dir.join(t).is_file()))
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            anyhow::bail!(
                "missing tools: {} (Debian/Ubuntu: apt-get install iproute2 iperf3 iputils-ping)",
                missing.join(", ")
            )
        }
    }

    /// Runs `cmd` to completion, killing it after `timeout` (an error naming the command).
    pub(crate) fn run(
        cmd: &mut Command,
        timeout: Duration,
        on_stop: OnStop,
    ) -> anyhow::Result<Finished> {
        let what = describe(cmd);
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start `{what}`"))?;
        let stdout = drain(child.stdout.take());
        let stderr = drain(child.stderr.take());
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = child
                .try_wait()
                .with_context(|| format!("cannot wait for `{what}`"))?
            {
                break status;
            }
            let interrupted = on_stop == OnStop::Abort && signals::stop_requested();
            if interrupted || Instant::now() > deadline {
                // The reader threads are left to finish on their own: a grandchild may
                // still hold the pipes open.
                let _ = child.kill();
                let _ = child.wait();
                if interrupted {
                    return Err(signals::Interrupted.into());
                }
                anyhow::bail!("`{what}` did not finish within {timeout:?}; killed it");
            }
            std::thread::sleep(POLL);
        };
        Ok(Finished {
            status,
            stdout: joined(stdout),
            stderr: joined(stderr),
        })
    }

    /// Runs `cmd` (aborting on a stop request) and returns its stdout; a non-zero exit is an
    /// error carrying everything it printed.
    pub(crate) fn run_ok(cmd: &mut Command, timeout: Duration) -> anyhow::Result<String> {
        let out = run(cmd, timeout, OnStop::Abort)?;
        if !out.status.success() {
            anyhow::bail!(
                "`{}` failed ({}): {}{}",
                describe(cmd),
                out.status,
                out.stderr.trim(),
                if out.stdout.trim().is_empty() {
                    String::new()
                } else {
                    format!("\nstdout: {}", out.stdout.trim())
                }
            );
        }
        Ok(out.stdout)
    }

    fn drain(pipe: Option<impl std::io::Read + Send + 'static>) -> Option<JoinHandle<Vec<u8>>> {
        let mut pipe = pipe?;
        std::thread::Builder::new()
            .name("pipe-reader".into())
            .spawn(move || {
                let mut buf = Vec::new();
                let _ = pipe.read_to_end(&mut buf);
                buf
            })
            .ok()
    }

    fn joined(reader: Option<JoinHandle<Vec<u8>>>) -> String {
        reader
            .and_then(|r| r.join().ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Polls `check` until it yields a value, failing with `what` after `timeout` (or on a
    /// stop request). `check` may fail outright to end the wait early.
    pub(crate) fn wait_until<T>(
        what: &str,
        timeout: Duration,
        mut check: impl FnMut() -> anyhow::Result<Option<T>>,
    ) -> anyhow::Result<T> {
        let deadline = Instant::now() + timeout;
        loop {
            signals::check()?;
            if let Some(v) = check()? {
                return Ok(v);
            }
            if Instant::now() > deadline {
                anyhow::bail!("timed out after {timeout:?} waiting for {what}");
            }
            std::thread::sleep(POLL);
        }
    }

    /// Whether the process lives (exists and is not a zombie).
    pub(crate) fn alive(pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            stat.rsplit_once(')')
                .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X']))
        })
    }

    /// Whether the process's command line mentions `needle` (so a pid from a stale pidfile
    /// that the system reused for something else is never killed).
    pub(crate) fn cmdline_mentions(pid: u32, needle: &Path) -> bool {
        let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            return false;
        };
        let needle = needle.as_os_str().as_encoded_bytes();
        raw.split(|&b| b == 0).any(|arg| arg == needle)
    }

    /// SIGKILLs a process that is not our child and waits until it is gone.
    pub(crate) fn kill_and_wait(pid: u32, timeout: Duration) -> anyhow::Result<()> {
        let Ok(raw) = i32::try_from(pid) else {
            anyhow::bail!("pid {pid} out of range");
        };
        let target = nix::unistd::Pid::from_raw(raw);
        match nix::sys::signal::kill(target, nix::sys::signal::Signal::SIGKILL) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
            Err(e) => anyhow::bail!("cannot kill pid {pid}: {e}"),
        }
        let deadline = Instant::now() + timeout;
        while alive(pid) {
            if Instant::now() > deadline {
                anyhow::bail!("pid {pid} still alive {timeout:?} after SIGKILL");
            }
            std::thread::sleep(POLL);
        }
        Ok(())
    }

    /// A child that is SIGKILLed and reaped when dropped.
    #[derive(Debug)]
    pub(crate) struct ChildGuard(pub(crate) Child);

    impl Drop for ChildGuard {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

mod lab {
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
                &format!(
                    "link add {link} mtu {mtu} type veth peer name {link} mtu {mtu} netns {b}"
                ),
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
}

mod scenarios {
    //! Each scenario's topology and the measurements run through it.
    //!
    //! Client container `c1` (198.18.0.1) sends to server container `c2` (198.18.0.2),
    //! addresses from the benchmarking range (RFC 2544). Hosts talk over an underlay
    //! veth with 198.19.0.x and MTU 1500. Kernel containers get the MTU weft gives its
    //! own (underlay − 50) so every path carries the same frames, and no offload is
    //! changed anywhere.

    use std::net::Ipv4Addr;
    use std::path::Path;
    use std::time::Duration;

    use anyhow::Context as _;

    use crate::cli::{Plan, Scenario};
    use crate::lab::{self, Lab, Router};
    use crate::measure::{self, Measurement};
    use crate::report::Outcome;
    use crate::signals;

    const CLIENT_CIDR: &str = "198.18.0.1/24";
    const SERVER_CIDR: &str = "198.18.0.2/24";
    const SERVER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
    const HOST1_UNDERLAY: (&str, &str) = ("198.19.0.1/24", "198.19.0.1");
    const HOST2_UNDERLAY: (&str, &str) = ("198.19.0.2/24", "198.19.0.2");
    /// The underlay MTU of the cross-host scenarios.
    pub(crate) const UNDERLAY_MTU: u32 = 1500;
    /// IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14: what weft and the kernel both take
    /// off the underlay MTU.
    const VXLAN_OVERHEAD: u32 = 50;
    /// The MTU every container gets (weft's default; the kernel's containers are set to it).
    pub(crate) const OVERLAY_MTU: u32 = UNDERLAY_MTU - VXLAN_OVERHEAD;
    /// VXLAN network identifier (weft's default network uses 1 too).
    const VNI: &str = "1";
    /// How long a kernel path may take to pass a ping.
    const KERNEL_READY: Duration = Duration::from_secs(10);
    /// How long weft may take to form its mesh and pass a ping.
    const WEFT_READY: Duration = Duration::from_secs(30);

    /// A built scenario: where traffic goes from and to, and who carries it.
    #[derive(Debug)]
    pub(crate) struct Setup {
        /// The namespace iperf3's client runs in.
        pub(crate) client: String,
        /// The namespace iperf3's server runs in.
        pub(crate) server: String,
        /// The server's overlay address.
        pub(crate) server_ip: Ipv4Addr,
        /// The client's interface MTU, as measured.
        pub(crate) mtu: u32,
        /// The weft routers carrying the traffic (for their CPU time).
        pub(crate) routers: Vec<Router>,
    }

    /// Builds `scenario`, measures it as `plan` says, tears it down.
    pub(crate) fn run(seq: usize, scenario: Scenario, plan: &Plan) -> Outcome {
        if scenario.uses_weft() && !Path::new(lab::WEFT).is_file() {
            return Outcome::Failed(format!(
                "no weft binary at {} (cargo bench builds it; did the build fail?)",
                lab::WEFT
            ));
        }
        if scenario == Scenario::CrossWeftEncrypted {
            match lab::weft_supports_password_file(Path::new(lab::WEFT)) {
                Ok(true) => {}
                Ok(false) => {
                    return Outcome::Skipped(
                        "`weft launch` has no --password-file yet; this scenario runs as soon \
                         as it does"
                            .into(),
                    );
                }
                Err(e) => {
                    return Outcome::Failed(format!("cannot ask weft for its options: {e:#}"));
                }
            }
        }
        let result = Lab::new(seq).and_then(|mut lab| {
            let setup = build(&mut lab, scenario)?;
            measure_all(&mut lab, &setup, plan)
            // `lab` drops here: teardown, also when building or measuring failed.
        });
        match result {
            Ok(m) => Outcome::Measured(m),
            Err(e) if e.is::<signals::Interrupted>() || signals::stop_requested() => {
                Outcome::Failed("interrupted".into())
            }
            Err(e) => Outcome::Failed(format!("{e:#}")),
        }
    }

    fn build(lab: &mut Lab, scenario: Scenario) -> anyhow::Result<Setup> {
        eprintln!("   building the topology");
        let setup = match scenario {
            Scenario::LocalBridge => local_bridge(lab)?,
            Scenario::LocalWeft => local_weft(lab)?,
            Scenario::CrossVxlanKernel => cross_vxlan_kernel(lab)?,
            Scenario::CrossWeft => cross_weft(lab, false)?,
            Scenario::CrossWeftEncrypted => cross_weft(lab, true)?,
        };
        let ready = if scenario.uses_weft() {
            WEFT_READY
        } else {
            KERNEL_READY
        };
        lab.wait_ping(&setup.client, setup.server_ip, ready, || {
            lab.routers_alive()
        })
        .with_context(|| {
            if scenario.uses_weft() {
                "weft's data path never passed a ping (is `weft attach` implemented?)"
            } else {
                "the kernel path never passed a ping"
            }
        })?;
        Ok(setup)
    }

    fn measure_all(lab: &mut Lab, setup: &Setup, plan: &Plan) -> anyhow::Result<Measurement> {
        let server = measure::IperfServer::start(lab, setup)?;
        let pids: Vec<u32> = setup.routers.iter().filter_map(Router::pid).collect();
        let routers = (!setup.routers.is_empty()).then_some(pids.as_slice());
        let mut m = Measurement {
            mtu: setup.mtu,
            tcp: Vec::new(),
            udp: None,
            weft_path: None,
        };
        for &streams in &plan.streams {
            let run = server.tcp(lab, setup, streams, plan.duration, routers)?;
            eprintln!("   tcp x{streams}: {:.2} Gbit/s", run.bits_per_second / 1e9);
            m.tcp.push(run);
        }
        if let Some(rate) = &plan.udp_bitrate {
            let run = server.udp(lab, setup, rate, plan.duration, routers)?;
            eprintln!(
                "   udp 64 B: {:.0} packets/s received, {:.1}% lost",
                run.received_pps(),
                run.loss_percent()
            );
            m.udp = Some(run);
        }
        if let Some(router) = setup.routers.first() {
            m.weft_path = Some(weft_path(lab, router));
        }
        Ok(m)
    }

    /// How the router says it carried the traffic (`weft status --json`: each peer's path
    /// and the data path's description), read after the runs so a fallback shows.
    fn weft_path(lab: &Lab, router: &Router) -> String {
        let status = lab
            .weft(router, &["status", "--json"], Duration::from_secs(10))
            .and_then(|json| Ok(serde_json::from_str::<serde_json::Value>(&json)?));
        let status = match status {
            Ok(status) => status,
            Err(e) => return format!("unknown (weft status: {e:#})"),
        };
        let peers: Vec<&str> = status
            .get("peers")
            .and_then(serde_json::Value::as_array)
            .map(|peers| {
                peers
                    .iter()
                    .filter_map(|p| p.get("path").and_then(serde_json::Value::as_str))
                    .collect()
            })
            .unwrap_or_default();
        let data_path = status
            .get("data_path")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("not reported");
        if peers.is_empty() {
            data_path.to_owned()
        } else {
            format!("peer path {}; {data_path}", peers.join(", "))
        }
    }

    /// One host, a kernel bridge, two containers.
    fn local_bridge(lab: &mut Lab) -> anyhow::Result<Setup> {
        let host = lab.add_ns("h1")?;
        let c1 = lab.add_ns("c1")?;
        let c2 = lab.add_ns("c2")?;
        let br = lab.link_name("br")?;
        lab.ip(&host, &["link", "add", &br, "type", "bridge"])?;
        lab.ip(&host, &["link", "set", &br, "up"])?;
        for (container, port, cidr) in [(&c1, "p1", CLIENT_CIDR), (&c2, "p2", SERVER_CIDR)] {
            let port = lab.link_name(port)?;
            lab.container_veth(&host, &port, container, cidr, OVERLAY_MTU)?;
            lab.ip(&host, &["link", "set", &port, "master", &br])?;
        }
        let mtu = lab.mtu(&c1, "eth0")?;
        Ok(Setup {
            client: c1,
            server: c2,
            server_ip: SERVER_IP,
            mtu,
            routers: Vec::new(),
        })
    }

    /// One host, one weft router, two attached containers.
    fn local_weft(lab: &mut Lab) -> anyhow::Result<Setup> {
        let host = lab.add_ns("h1")?;
        let c1 = lab.add_ns("c1")?;
        let c2 = lab.add_ns("c2")?;
        let router = lab.launch_weft(&host, &[], &[])?;
        lab.attach(&router, &c1, CLIENT_CIDR)?;
        lab.attach(&router, &c2, SERVER_CIDR)?;
        let mtu = lab.mtu(&c1, "weft0")?;
        Ok(Setup {
            client: c1,
            server: c2,
            server_ip: SERVER_IP,
            mtu,
            routers: vec![router],
        })
    }

    /// Two hosts, each a kernel bridge with a `vxlan` device whose default destination is
    /// the other host (`remote`, no learning: the static-fdb setup flannel and Docker's
    /// overlay use), dstport 4789.
    fn cross_vxlan_kernel(lab: &mut Lab) -> anyhow::Result<Setup> {
        let (h1, h2, c1, c2) = two_hosts(lab)?;
        let underlay = lab.link_name("u")?;
        let br = lab.link_name("br")?;
        let vx = lab.link_name("vx")?;
        let port = lab.link_name("p")?;
        for (host, container, cidr, local, remote) in [
            (&h1, &c1, CLIENT_CIDR, HOST1_UNDERLAY.1, HOST2_UNDERLAY.1),
            (&h2, &c2, SERVER_CIDR, HOST2_UNDERLAY.1, HOST1_UNDERLAY.1),
        ] {
            lab.ip(host, &["link", "add", &br, "type", "bridge"])?;
            lab.ip(host, &["link", "set", &br, "up"])?;
            lab.ip_line(
                host,
                &format!(
                    "link add {vx} type vxlan id {VNI} local {local} remote {remote} \
                     dstport 4789 dev {underlay} nolearning"
                ),
            )?;
            lab.ip(host, &["link", "set", &vx, "master", &br])?;
            lab.ip(host, &["link", "set", &vx, "up"])?;
            lab.container_veth(host, &port, container, cidr, OVERLAY_MTU)?;
            lab.ip(host, &["link", "set", &port, "master", &br])?;
        }
        let mtu = lab.mtu(&c1, "eth0")?;
        Ok(Setup {
            client: c1,
            server: c2,
            server_ip: SERVER_IP,
            mtu,
            routers: Vec::new(),
        })
    }

    /// Two hosts, a weft router on each pointed at the other, a container on each.
    /// `encrypted` launches both with the same `--password-file`.
    fn cross_weft(lab: &mut Lab, encrypted: bool) -> anyhow::Result<Setup> {
        let (h1, h2, c1, c2) = two_hosts(lab)?;
        let password = lab.tmp_file("password");
        let password_arg = password.to_string_lossy().into_owned();
        let extra: Vec<&str> = if encrypted {
            write_password(&password)?;
            vec!["--password-file", &password_arg]
        } else {
            Vec::new()
        };
        let r1 = lab.launch_weft(&h1, &[HOST2_UNDERLAY.1], &extra)?;
        let r2 = lab.launch_weft(&h2, &[HOST1_UNDERLAY.1], &extra)?;
        lab.attach(&r1, &c1, CLIENT_CIDR)?;
        lab.attach(&r2, &c2, SERVER_CIDR)?;
        let mtu = lab.mtu(&c1, "weft0")?;
        Ok(Setup {
            client: c1,
            server: c2,
            server_ip: SERVER_IP,
            mtu,
            routers: vec![r1, r2],
        })
    }

    /// Hosts h1, h2 joined by the underlay; containers c1, c2 (not yet connected).
    fn two_hosts(lab: &mut Lab) -> anyhow::Result<(String, String, String, String)> {
        let h1 = lab.add_ns("h1")?;
        let h2 = lab.add_ns("h2")?;
        let c1 = lab.add_ns("c1")?;
        let c2 = lab.add_ns("c2")?;
        lab.underlay(
            (&h1, HOST1_UNDERLAY.0),
            (&h2, HOST2_UNDERLAY.0),
            UNDERLAY_MTU,
        )?;
        let h2_ip: Ipv4Addr = HOST2_UNDERLAY.1.parse().context("bad underlay address")?;
        lab.wait_ping(&h1, h2_ip, KERNEL_READY, || Ok(()))
            .context("the underlay between the hosts does not pass a ping")?;
        Ok((h1, h2, c1, c2))
    }

    /// A password file only root can read, as `--password-file` expects.
    fn write_password(path: &Path) -> anyhow::Result<()> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut file = std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        writeln!(file, "weft-throughput-bench-{}", std::process::id())
            .with_context(|| format!("cannot write {}", path.display()))
    }
}

mod measure {
    //! iperf3 runs and the CPU time spent during them.
    //!
    //! CPU time comes from /proc/stat (the whole machine: user, nice, system, irq,
    //! softirq; not idle, iowait or steal) and /proc/PID/stat (a router's utime + stime,
    //! all its threads), read right before the iperf3 client starts and right after it
    //! exits.

    use std::time::Duration;

    use anyhow::Context as _;
    use serde_json::Value;

    use crate::lab::Lab;
    use crate::process;
    use crate::scenarios::Setup;

    /// The port the iperf3 server listens on (its own namespace, so never taken).
    const PORT: u16 = 5201;
    const PORT_ARG: &str = "5201";
    /// The UDP payload of the small-packet run.
    pub(crate) const UDP_PAYLOAD: u64 = 64;
    /// How long the server may take to listen.
    const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);
    /// How long past its duration an iperf3 client may run (connect, results exchange).
    const CLIENT_SLACK: Duration = Duration::from_secs(30);

    /// CPU seconds spent during one run.
    #[derive(Debug, Clone, Copy)]
    pub(crate) struct CpuUse {
        /// The whole machine (every core, every process, kernel included).
        pub(crate) machine_s: f64,
        /// The weft routers of the scenario; `None` when none runs.
        pub(crate) routers_s: Option<f64>,
    }

    /// One TCP run's result.
    #[derive(Debug, Clone)]
    pub(crate) struct TcpRun {
        /// Parallel streams.
        pub(crate) streams: u32,
        /// Receiver's goodput.
        pub(crate) bits_per_second: f64,
        /// Bytes the receiver got.
        pub(crate) bytes: u64,
        /// The sender's TCP retransmissions.
        pub(crate) retransmits: Option<u64>,
        /// CPU spent meanwhile.
        pub(crate) cpu: CpuUse,
    }

    impl TcpRun {
        /// CPU seconds per Gbit delivered (= cores busy per Gbit/s): `(machine, routers)`.
        pub(crate) fn cpu_per_gbit(&self) -> (Option<f64>, Option<f64>) {
            let gbit = self.bytes as f64 * 8.0 / 1e9;
            let per = |s: f64| (gbit > 0.0).then(|| s / gbit);
            (per(self.cpu.machine_s), self.cpu.routers_s.and_then(per))
        }
    }

    /// One 64-byte UDP run's result, as the receiver saw it.
    #[derive(Debug, Clone)]
    pub(crate) struct UdpRun {
        /// Datagrams the receiver got.
        pub(crate) received: u64,
        /// Datagrams lost on the way.
        pub(crate) lost: u64,
        /// The receiver's measuring interval.
        pub(crate) seconds: f64,
        /// CPU spent meanwhile.
        pub(crate) cpu: CpuUse,
    }

    impl UdpRun {
        /// Datagrams per second the receiver got.
        pub(crate) fn received_pps(&self) -> f64 {
            if self.seconds > 0.0 {
                self.received as f64 / self.seconds
            } else {
                0.0
            }
        }

        /// Lost datagrams, in percent of those sent.
        pub(crate) fn loss_percent(&self) -> f64 {
            let total = self.received + self.lost;
            if total == 0 {
                0.0
            } else {
                self.lost as f64 * 100.0 / total as f64
            }
        }

        /// CPU microseconds per received datagram: `(machine, routers)`.
        pub(crate) fn cpu_per_packet_us(&self) -> (Option<f64>, Option<f64>) {
            let per = |s: f64| (self.received > 0).then(|| s * 1e6 / self.received as f64);
            (per(self.cpu.machine_s), self.cpu.routers_s.and_then(per))
        }
    }

    /// Everything measured in one scenario.
    #[derive(Debug, Clone)]
    pub(crate) struct Measurement {
        /// The containers' MTU.
        pub(crate) mtu: u32,
        /// One entry per stream count.
        pub(crate) tcp: Vec<TcpRun>,
        /// The small-packet run, unless skipped.
        pub(crate) udp: Option<UdpRun>,
        /// For weft scenarios: the path the router reported it used.
        pub(crate) weft_path: Option<String>,
    }

    /// An `iperf3 -s` in the server container, for all runs of a scenario (the lab kills
    /// it at teardown).
    #[derive(Debug)]
    pub(crate) struct IperfServer {
        pid: u32,
    }

    const SERVER_LOG: &str = "iperf3-server.log";

    impl IperfServer {
        /// Starts the server and waits until it listens.
        pub(crate) fn start(lab: &mut Lab, setup: &Setup) -> anyhow::Result<Self> {
            let pid = lab.spawn(&setup.server, &["iperf3", "-s", "-p", PORT_ARG], SERVER_LOG)?;
            let server = Self { pid };
            server.wait_listening(lab)?;
            Ok(server)
        }

        /// Waits until the server listens (again: it re-arms after every test).
        fn wait_listening(&self, lab: &Lab) -> anyhow::Result<()> {
            process::wait_until("iperf3 to listen", LISTEN_TIMEOUT, || {
                if !process::alive(self.pid) {
                    anyhow::bail!("iperf3 -s exited: {}", lab.log(SERVER_LOG).trim());
                }
                listening(self.pid, PORT)
            })
        }

        /// One TCP run with `streams` parallel streams.
        pub(crate) fn tcp(
            &self,
            lab: &Lab,
            setup: &Setup,
            streams: u32,
            duration: u32,
            routers: Option<&[u32]>,
        ) -> anyhow::Result<TcpRun> {
            let streams_arg = streams.to_string();
            let (json, cpu) = self.client(lab, setup, duration, routers, &["-P", &streams_arg])?;
            let received = json
                .pointer("/end/sum_received")
                .context("iperf3 printed no end.sum_received")?;
            Ok(TcpRun {
                streams,
                bits_per_second: f64_at(received, "/bits_per_second")?,
                bytes: u64_at(received, "/bytes")?,
                retransmits: json
                    .pointer("/end/sum_sent/retransmits")
                    .and_then(Value::as_u64),
                cpu,
            })
        }

        /// One UDP run of 64-byte datagrams at `rate` (iperf3 -b).
        pub(crate) fn udp(
            &self,
            lab: &Lab,
            setup: &Setup,
            rate: &str,
            duration: u32,
            routers: Option<&[u32]>,
        ) -> anyhow::Result<UdpRun> {
            let len = UDP_PAYLOAD.to_string();
            let (json, cpu) = self.client(
                lab,
                setup,
                duration,
                routers,
                &["-u", "-l", &len, "-b", rate],
            )?;
            // iperf3 3.x reports the receiver's side as end.sum_received; `packets` counts
            // what the sender numbered, `lost_packets` the gaps the receiver saw.
            let received = json
                .pointer("/end/sum_received")
                .context("iperf3 printed no end.sum_received (iperf3 older than 3.x?)")?;
            let numbered = u64_at(received, "/packets")?;
            let lost = u64_at(received, "/lost_packets")?;
            Ok(UdpRun {
                received: numbered.saturating_sub(lost),
                lost,
                seconds: f64_at(received, "/seconds")?,
                cpu,
            })
        }

        /// Runs the client with `extra` arguments; returns its JSON and the CPU spent.
        fn client(
            &self,
            lab: &Lab,
            setup: &Setup,
            duration: u32,
            routers: Option<&[u32]>,
            extra: &[&str],
        ) -> anyhow::Result<(Value, CpuUse)> {
            self.wait_listening(lab)?;
            let server_ip = setup.server_ip.to_string();
            let duration_arg = duration.to_string();
            let mut argv = vec![
                "iperf3",
                "-c",
                &server_ip,
                "-p",
                PORT_ARG,
                "-J",
                "-t",
                &duration_arg,
                "--connect-timeout",
                "5000",
            ];
            argv.extend_from_slice(extra);
            let mut cmd = lab.exec(&setup.client, &argv);
            let what = process::describe(&cmd);
            let before = CpuCounters::read(routers)?;
            let timeout = Duration::from_secs(duration.into()) + CLIENT_SLACK;
            let out = process::run(&mut cmd, timeout, process::OnStop::Abort)?;
            let after = CpuCounters::read(routers)?;
            let json: Value = serde_json::from_str(&out.stdout).with_context(|| {
                format!(
                    "`{what}` printed no JSON ({}): {}",
                    out.status,
                    out.stderr.trim()
                )
            })?;
            if let Some(error) = json.get("error").and_then(Value::as_str) {
                anyhow::bail!(
                    "`{what}` failed: {error}; server log: {}",
                    lab.log(SERVER_LOG).trim()
                );
            }
            if !out.status.success() {
                anyhow::bail!("`{what}` failed ({}): {}", out.status, out.stderr.trim());
            }
            Ok((json, after.since(&before)?))
        }
    }

    fn f64_at(v: &Value, pointer: &str) -> anyhow::Result<f64> {
        v.pointer(pointer)
            .and_then(Value::as_f64)
            .with_context(|| format!("iperf3 JSON has no number at {pointer}"))
    }

    fn u64_at(v: &Value, pointer: &str) -> anyhow::Result<u64> {
        v.pointer(pointer)
            .and_then(Value::as_u64)
            .with_context(|| format!("iperf3 JSON has no count at {pointer}"))
    }

    /// Whether `pid`'s namespace has a TCP socket listening on `port` (its
    /// /proc/PID/net/tcp{,6} show that process's namespace).
    fn listening(pid: u32, port: u16) -> anyhow::Result<Option<()>> {
        let mut found = false;
        for file in ["tcp", "tcp6"] {
            let path = format!("/proc/{pid}/net/{file}");
            let Ok(table) = std::fs::read_to_string(&path) else {
                continue;
            };
            found |= table.lines().skip(1).any(|line| {
                let mut fields = line.split_whitespace().skip(1);
                let local = fields.next().unwrap_or_default();
                let state = fields.nth(1).unwrap_or_default();
                let local_port = local
                    .rsplit_once(':')
                    .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
                // 0A is TCP_LISTEN.
                local_port == Some(port) && state == "0A"
            });
        }
        Ok(found.then_some(()))
    }

    /// Raw CPU counters at one instant, in clock ticks.
    #[derive(Debug)]
    struct CpuCounters {
        machine: u64,
        routers: Option<u64>,
    }

    impl CpuCounters {
        fn read(routers: Option<&[u32]>) -> anyhow::Result<Self> {
            let routers = match routers {
                None => None,
                Some(pids) => Some(
                    pids.iter()
                        .map(|&pid| process_ticks(pid))
                        .sum::<anyhow::Result<u64>>()?,
                ),
            };
            Ok(Self {
                machine: machine_busy_ticks()?,
                routers,
            })
        }

        fn since(&self, before: &Self) -> anyhow::Result<CpuUse> {
            let hz = clock_ticks_per_second()?;
            let secs = |after: u64, before: u64| after.saturating_sub(before) as f64 / hz;
            Ok(CpuUse {
                machine_s: secs(self.machine, before.machine),
                routers_s: self.routers.zip(before.routers).map(|(a, b)| secs(a, b)),
            })
        }
    }

    /// `sysconf(_SC_CLK_TCK)`: the unit of /proc/stat and /proc/PID/stat.
    fn clock_ticks_per_second() -> anyhow::Result<f64> {
        match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
            Ok(Some(hz)) if hz > 0 => Ok(hz as f64),
            other => anyhow::bail!("cannot read the clock tick rate: {other:?}"),
        }
    }

    /// Busy ticks of the whole machine since boot: user + nice + system + irq + softirq
    /// (guest time is already inside user; idle, iowait and steal are not busy).
    pub(crate) fn machine_busy_ticks() -> anyhow::Result<u64> {
        let stat = std::fs::read_to_string("/proc/stat").context("cannot read /proc/stat")?;
        let line = stat
            .lines()
            .find(|l| l.starts_with("cpu "))
            .context("/proc/stat has no cpu line")?;
        let fields: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .map(|f| f.parse().context("/proc/stat: cpu line has a non-number"))
            .collect::<anyhow::Result<_>>()?;
        let field = |i: usize| fields.get(i).copied().unwrap_or(0);
        // user nice system idle iowait irq softirq steal ...
        Ok(field(0) + field(1) + field(2) + field(5) + field(6))
    }

    /// utime + stime of a process (all its threads), in clock ticks.
    fn process_ticks(pid: u32) -> anyhow::Result<u64> {
        let path = format!("/proc/{pid}/stat");
        let stat = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {path}: did the weft router exit?"))?;
        // Fields after the parenthesised command name start at field 3 (state); utime and
        // stime are fields 14 and 15.
        let rest = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest)
            .with_context(|| format!("{path} is malformed"))?;
        let mut fields = rest.split_whitespace().skip(11);
        let mut next = || -> anyhow::Result<u64> {
            fields
                .next()
                .and_then(|f| f.parse().ok())
                .with_context(|| format!("{path} has no utime/stime"))
        };
        Ok(next()? + next()?)
    }

    /// The share of the machine's CPU that was busy over `window` (before anything runs:
    /// a gauge of how noisy the measurements will be).
    pub(crate) fn background_load(window: Duration) -> anyhow::Result<f64> {
        let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
        let before = machine_busy_ticks()?;
        std::thread::sleep(window);
        let after = machine_busy_ticks()?;
        let busy = after.saturating_sub(before) as f64 / clock_ticks_per_second()?;
        Ok(busy / (window.as_secs_f64() * cores))
    }
}

mod report {
    //! The results as markdown: a TCP table, a small-packet UDP table, what was not
    //! measured and why, and the machine they were measured on.

    use std::fmt::Write as _;
    use std::process::Command;
    use std::time::Duration;

    use crate::cli::{Plan, Scenario};
    use crate::measure::{self, Measurement, TcpRun, UdpRun};
    use crate::process;
    use crate::scenarios::{OVERLAY_MTU, UNDERLAY_MTU};

    /// What came of one scenario.
    #[derive(Debug, Clone)]
    pub(crate) enum Outcome {
        /// Built and measured.
        Measured(Measurement),
        /// Not run, on purpose (e.g. the feature does not exist yet).
        Skipped(String),
        /// Could not be built or measured.
        Failed(String),
    }

    /// Facts about the machine, recorded with the results.
    #[derive(Debug, Clone)]
    pub(crate) struct MachineInfo {
        date: String,
        kernel: String,
        cpu: String,
        iperf3: String,
        weft_commit: String,
        background_load: f64,
        loadavg: String,
    }

    impl MachineInfo {
        /// Reads the machine's details and its CPU load over one second.
        pub(crate) fn collect() -> anyhow::Result<Self> {
            let first_line = |mut cmd: Command| {
                process::run_ok(&mut cmd, Duration::from_secs(10))
                    .ok()
                    .and_then(|out| out.lines().next().map(str::to_owned))
                    .unwrap_or_else(|| "unknown".into())
            };
            let mut date = Command::new("date");
            date.args(["-u", "+%Y-%m-%d %H:%M UTC"]);
            let mut iperf3 = Command::new("iperf3");
            iperf3.arg("--version");
            let mut git = Command::new("git");
            git.args([
                "-C",
                env!("CARGO_MANIFEST_DIR"),
                "describe",
                "--always",
                "--dirty",
            ]);
            let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
            let model = cpuinfo
                .lines()
                .find_map(|l| l.strip_prefix("model name"))
                .and_then(|l| l.split_once(':'))
                .map_or("unknown CPU", |(_, m)| m.trim());
            let cores = std::thread::available_parallelism().map_or(1, usize::from);
            Ok(Self {
                date: first_line(date),
                kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                    .map_or_else(|_| "unknown".into(), |k| k.trim().to_owned()),
                cpu: format!("{model} × {cores}"),
                iperf3: first_line(iperf3),
                weft_commit: first_line(git),
                background_load: measure::background_load(Duration::from_secs(1))?,
                loadavg: std::fs::read_to_string("/proc/loadavg")
                    .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
                    .unwrap_or_default(),
            })
        }
    }

    /// The outcomes of a run, in the order the scenarios ran (round after round).
    #[derive(Debug)]
    pub(crate) struct Report {
        machine: MachineInfo,
        outcomes: Vec<(Scenario, u32, Outcome)>,
    }

    /// Median and spread of one figure over the rounds that measured it.
    #[derive(Debug, Clone, Copy)]
    struct Summary {
        median: f64,
        min: f64,
        max: f64,
        rounds: usize,
    }

    impl Summary {
        fn of(values: impl IntoIterator<Item = f64>) -> Option<Self> {
            let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
            v.sort_by(f64::total_cmp);
            let (&min, &max) = (v.first()?, v.last()?);
            let mid = v.len() / 2;
            let median = if v.len() % 2 == 1 {
                *v.get(mid)?
            } else {
                (*v.get(mid - 1)? + *v.get(mid)?) / 2.0
            };
            Some(Self {
                median,
                min,
                max,
                rounds: v.len(),
            })
        }

        /// `median`, plus `[min–max]` when several rounds went into it.
        fn cell(&self, scale: f64, decimals: usize) -> String {
            let median = self.median * scale;
            if self.rounds > 1 {
                let (min, max) = (self.min * scale, self.max * scale);
                format!("{median:.decimals$} [{min:.decimals$}–{max:.decimals$}]")
            } else {
                format!("{median:.decimals$}")
            }
        }
    }

    impl Report {
        /// An empty report for this machine.
        pub(crate) fn new(machine: MachineInfo) -> Self {
            Self {
                machine,
                outcomes: Vec::new(),
            }
        }

        /// Records a scenario's outcome in round `round`.
        pub(crate) fn push(&mut self, scenario: Scenario, round: u32, outcome: Outcome) {
            self.outcomes.push((scenario, round, outcome));
        }

        /// Whether any scenario failed in any round (skips are not failures).
        pub(crate) fn any_failed(&self) -> bool {
            self.outcomes
                .iter()
                .any(|(_, _, o)| matches!(o, Outcome::Failed(_)))
        }

        /// The scenarios that were measured at least once, in the order they ran.
        fn measured_scenarios(&self) -> Vec<Scenario> {
            let mut seen = Vec::new();
            for (s, _, o) in &self.outcomes {
                if matches!(o, Outcome::Measured(_)) && !seen.contains(s) {
                    seen.push(*s);
                }
            }
            seen
        }

        /// Every round's measurement of `scenario`.
        fn rounds(&self, scenario: Scenario) -> impl Iterator<Item = &Measurement> {
            self.outcomes.iter().filter_map(move |(s, _, o)| match o {
                Outcome::Measured(m) if *s == scenario => Some(m),
                _ => None,
            })
        }

        fn tcp_runs(&self, scenario: Scenario, streams: u32) -> Vec<&TcpRun> {
            self.rounds(scenario)
                .flat_map(|m| m.tcp.iter().filter(move |r| r.streams == streams))
                .collect()
        }

        fn tcp_median(&self, scenario: Scenario, streams: u32) -> Option<f64> {
            Summary::of(
                self.tcp_runs(scenario, streams)
                    .iter()
                    .map(|r| r.bits_per_second),
            )
            .map(|s| s.median)
        }

        fn udp_runs(&self, scenario: Scenario) -> Vec<&UdpRun> {
            self.rounds(scenario)
                .filter_map(|m| m.udp.as_ref())
                .collect()
        }

        fn udp_median(&self, scenario: Scenario) -> Option<f64> {
            Summary::of(self.udp_runs(scenario).iter().map(|r| r.received_pps())).map(|s| s.median)
        }

        /// The whole report as markdown.
        pub(crate) fn render(&self, plan: &Plan) -> String {
            let mut out = String::new();
            let m = &self.machine;
            let _ = writeln!(out, "# weft throughput, {}\n", m.date);
            let _ = writeln!(out, "- command: `{}`", plan.command_line);
            let _ = writeln!(out, "- weft: `{}`", m.weft_commit);
            let _ = writeln!(out, "- kernel: {}; CPU: {}", m.kernel, m.cpu);
            let _ = writeln!(out, "- {}", m.iperf3);
            let _ = writeln!(
                out,
                "- machine busy before the run: {:.0}% of all cores (load average {})",
                m.background_load * 100.0,
                m.loadavg
            );
            let _ = writeln!(
                out,
                "- {} s per run, {} round(s){}; underlay MTU {UNDERLAY_MTU}, container MTU \
                 {OVERLAY_MTU} unless the table says otherwise; offloads at their defaults\n",
                plan.duration,
                plan.repeat,
                if plan.repeat > 1 {
                    ": every figure is the median [min–max] over the rounds"
                } else {
                    ""
                },
            );
            for scenario in self.measured_scenarios() {
                if let Some(mtu) = self
                    .rounds(scenario)
                    .map(|m| m.mtu)
                    .find(|&m| m != OVERLAY_MTU)
                {
                    let _ = writeln!(
                        out,
                        "**Note:** {} ran with container MTU {mtu}, not {OVERLAY_MTU}: its \
                         comparison is not like for like.\n",
                        scenario.name()
                    );
                }
            }
            self.render_tcp(&mut out, plan);
            self.render_udp(&mut out);
            self.render_weft_paths(&mut out);
            self.render_not_measured(&mut out);
            out.push_str(LEGEND);
            out
        }

        fn render_tcp(&self, out: &mut String, plan: &Plan) {
            out.push_str("## TCP, container to container\n\n");
            out.push_str(
                "| scenario | streams | MTU | Gbit/s | vs baseline | target | \
                 CPU s/Gbit machine | CPU s/Gbit weft | retransmits |\n",
            );
            out.push_str("|---|---:|---:|---:|---|---|---:|---:|---:|\n");
            for scenario in self.measured_scenarios() {
                let mtu = self.rounds(scenario).next().map_or(0, |m| m.mtu);
                for &streams in &plan.streams {
                    let runs = self.tcp_runs(scenario, streams);
                    let Some(gbps) = Summary::of(runs.iter().map(|r| r.bits_per_second)) else {
                        continue;
                    };
                    let ratio = scenario.baseline().and_then(|b| {
                        let base = self.tcp_median(b, streams)?;
                        (base > 0.0).then(|| gbps.median / base)
                    });
                    let (vs, target) = ratio_cells(scenario, ratio, scenario.target(streams));
                    let cpu_machine = Summary::of(runs.iter().filter_map(|r| r.cpu_per_gbit().0));
                    let cpu_weft = Summary::of(runs.iter().filter_map(|r| r.cpu_per_gbit().1));
                    let retransmits =
                        Summary::of(runs.iter().filter_map(|r| r.retransmits.map(|x| x as f64)));
                    let _ = writeln!(
                        out,
                        "| {} | {streams} | {mtu} | {} | {vs} | {target} | {} | {} | {} |",
                        scenario.name(),
                        gbps.cell(1e-9, 2),
                        cell(cpu_machine, 1.0, 3),
                        cell(cpu_weft, 1.0, 3),
                        cell(retransmits, 1.0, 0),
                    );
                }
            }
            out.push('\n');
        }

        fn render_udp(&self, out: &mut String) {
            let scenarios: Vec<Scenario> = self
                .measured_scenarios()
                .into_iter()
                .filter(|s| !self.udp_runs(*s).is_empty())
                .collect();
            if scenarios.is_empty() {
                return;
            }
            let _ = writeln!(
                out,
                "## UDP, {}-byte payloads, receiver's view\n",
                measure::UDP_PAYLOAD
            );
            out.push_str(
                "| scenario | received packets/s | loss % | vs baseline | \
                 CPU µs/packet machine | CPU µs/packet weft |\n",
            );
            out.push_str("|---|---:|---:|---|---:|---:|\n");
            for scenario in scenarios {
                let runs = self.udp_runs(scenario);
                let Some(pps) = Summary::of(runs.iter().map(|r| r.received_pps())) else {
                    continue;
                };
                let ratio = scenario.baseline().and_then(|b| {
                    let base = self.udp_median(b)?;
                    (base > 0.0).then(|| pps.median / base)
                });
                let (vs, _) = ratio_cells(scenario, ratio, None);
                let loss = Summary::of(runs.iter().map(|r| r.loss_percent()));
                let cpu_machine = Summary::of(runs.iter().filter_map(|r| r.cpu_per_packet_us().0));
                let cpu_weft = Summary::of(runs.iter().filter_map(|r| r.cpu_per_packet_us().1));
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {vs} | {} | {} |",
                    scenario.name(),
                    pps.cell(1.0, 0),
                    cell(loss, 1.0, 1),
                    cell(cpu_machine, 1.0, 2),
                    cell(cpu_weft, 1.0, 2),
                );
            }
            out.push('\n');
        }

        fn render_weft_paths(&self, out: &mut String) {
            let mut lines: Vec<String> = Vec::new();
            for (s, _, o) in &self.outcomes {
                if let Outcome::Measured(Measurement {
                    weft_path: Some(path),
                    ..
                }) = o
                {
                    let line = format!("- {}: {path}", s.name());
                    if !lines.contains(&line) {
                        lines.push(line);
                    }
                }
            }
            if !lines.is_empty() {
                out.push_str("## How weft carried the traffic (weft status)\n\n");
                for line in lines {
                    out.push_str(&line);
                    out.push('\n');
                }
                out.push('\n');
            }
        }

        fn render_not_measured(&self, out: &mut String) {
            let mut lines: Vec<String> = Vec::new();
            for (s, round, o) in &self.outcomes {
                let line = match o {
                    Outcome::Measured(_) => continue,
                    Outcome::Skipped(why) => format!("- {} skipped: {why}", s.name()),
                    Outcome::Failed(why) => {
                        // Keep the report readable: the first line; the rest is on stderr.
                        let first = why.lines().next().unwrap_or_default();
                        format!("- {} FAILED (round {round}): {first}", s.name())
                    }
                };
                if !lines.contains(&line) {
                    lines.push(line);
                }
            }
            if !lines.is_empty() {
                out.push_str("## Not measured\n\n");
                for line in lines {
                    out.push_str(&line);
                    out.push('\n');
                }
                out.push('\n');
            }
        }
    }

    /// The "vs baseline" and "target" cells of a row.
    fn ratio_cells(
        scenario: Scenario,
        ratio: Option<f64>,
        target: Option<f64>,
    ) -> (String, String) {
        let Some(base_scenario) = scenario.baseline() else {
            return ("baseline".into(), String::new());
        };
        let Some(ratio) = ratio else {
            return (
                format!("({} not measured)", base_scenario.name()),
                String::new(),
            );
        };
        let vs = format!("{:.0}% of {}", ratio * 100.0, base_scenario.name());
        let target = target.map_or_else(String::new, |t| {
            let verdict = if ratio >= t { "met" } else { "MISSED" };
            format!("≥ {:.0}%: {verdict}", t * 100.0)
        });
        (vs, target)
    }

    fn cell(summary: Option<Summary>, scale: f64, decimals: usize) -> String {
        summary.map_or_else(|| "–".into(), |s| s.cell(scale, decimals))
    }

    const LEGEND: &str = "\
How to read this:
- Gbit/s is the receiver's goodput (iperf3 end.sum_received).
- vs baseline divides by the kernel path measured in this same run (for the encrypted
  tunnel: by weft's own VXLAN); target is the project's goal for that ratio, set for one
  TCP stream (other stream counts show the ratio only).
- CPU s/Gbit is CPU time spent while the client ran, per Gbit delivered (equivalently:
  cores kept busy per Gbit/s). machine counts every core and process from /proc/stat
  (user + nice + system + irq + softirq), so other work on the machine inflates it; weft
  counts only the weft routers (/proc/PID/stat utime + stime).
- UDP: iperf3 -u -l 64 as fast as asked; packets/s is what the receiver got; loss is the
  share of numbered datagrams that never arrived.
";
}
