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
        let out = process::run(&mut cmd, timeout)?;
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
