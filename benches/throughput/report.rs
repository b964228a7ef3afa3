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
fn ratio_cells(scenario: Scenario, ratio: Option<f64>, target: Option<f64>) -> (String, String) {
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
