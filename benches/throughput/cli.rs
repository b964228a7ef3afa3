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
