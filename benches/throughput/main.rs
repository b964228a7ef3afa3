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

mod cli;

mod signals;

mod process;

mod lab;

mod scenarios;

mod measure;

mod report;
