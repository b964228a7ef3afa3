//! `docker run` to ping-ready: how long a new container takes to answer on weft's Docker
//! network, against Docker's own bridge network, in the same run on the same dockerd.
//!
//! `cargo bench --bench docker_startup -- [--iterations N]` builds one host namespace
//! with a dockerd (`--bridge=none --iptables=false`, as the tests run it) and a weft
//! router, a weft network (`-d weft --subnet`) with a `weft attach`ed probe namespace, and
//! a user-defined bridge network (Docker's bridge driver; the host namespace holds its
//! gateway). Each iteration times, for each network in turn, from just before
//! `docker run -d --ip A` until the probe's first echo reply from A (a fresh address each
//! time, so neighbour discovery is included), then removes the container untimed. It
//! prints the median and p90 of each as a markdown table.
//!
//! Needs root and Docker (skips, or fails under `CI=true`). Without `--bench` (as under
//! `cargo test --benches`) it runs 2 iterations, to prove it works.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use common::Lab;
use common::docker::{self, Dockerd, IMAGE};

/// One measured network.
struct Network {
    name: &'static str,
    docker_net: &'static str,
    /// The first three octets of its subnet.
    prefix: &'static str,
    /// The namespace the probe pings from (full name).
    probe_ns: String,
    /// Until the first echo reply.
    samples: Vec<Duration>,
    /// Until `docker run -d` returned (the container started, its network set up).
    started: Vec<Duration>,
}

/// Runs `ping` from `ns` until `ip` answers once (10 ms between tries, 10 s at most).
fn until_pingable(ns: &str, ip: &str) -> bool {
    Command::new("ip")
        .args([
            "netns", "exec", ns, "ping", "-n", "-q", "-i", "0.01", "-c", "1", "-w", "10", ip,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let bench = args.iter().any(|a| a == "--bench");
    let iterations: usize = args
        .iter()
        .position(|a| a == "--iterations")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(if bench { 20 } else { 2 });
    if !docker::available("docker_startup") {
        return ExitCode::SUCCESS;
    }
    let Some(mut lab) = Lab::new("docker_startup") else {
        return ExitCode::SUCCESS;
    };
    lab.add_ns(&["h1", "probe"]);
    let dk = Dockerd::start(&lab, "h1", &[]);
    docker::launch(&mut lab, "h1", Some(&dk), &[]);
    dk.create_weft_network("wbench", "10.60.0.0/24", None);
    dk.ok(&[
        "network",
        "create",
        "-d",
        "bridge",
        "--subnet",
        "10.99.2.0/24",
        "wbench-br",
    ]);
    let probe = lab.ns("probe");
    lab.weft_ok(
        "h1",
        &[
            "attach",
            &probe,
            "--ip",
            "10.60.0.2/24",
            "--network",
            "wbench",
        ],
    );
    let mut nets = [
        Network {
            name: "weft (-d weft)",
            docker_net: "wbench",
            prefix: "10.60.0",
            probe_ns: probe,
            samples: Vec::new(),
            started: Vec::new(),
        },
        Network {
            name: "Docker bridge (-d bridge)",
            docker_net: "wbench-br",
            prefix: "10.99.2",
            probe_ns: lab.ns("h1"),
            samples: Vec::new(),
            started: Vec::new(),
        },
    ];
    // One untimed round first: the image's layers and both drivers are warm after it.
    for i in 0..=iterations {
        for net in &mut nets {
            let ip = format!("{}.{}", net.prefix, 10 + i);
            let name = format!("bench-{i}");
            let start = Instant::now();
            dk.ok(&[
                "run",
                "-d",
                "--init",
                "--name",
                &name,
                "--net",
                net.docker_net,
                "--ip",
                &ip,
                IMAGE,
                "sleep",
                "600",
            ]);
            let started = start.elapsed();
            assert!(
                until_pingable(&net.probe_ns, &ip),
                "{name} on {} did not answer within 10 s",
                net.name
            );
            let took = start.elapsed();
            if i > 0 {
                net.samples.push(took);
                net.started.push(started);
            }
            dk.ok(&["rm", "-f", &name]);
        }
    }
    println!("\n`docker run -d` to first echo reply, {iterations} runs each, interleaved:\n");
    println!(
        "| network | runs | ping-ready median | p90 | `docker run -d` returned, median | p90 |"
    );
    println!("|---|---|---|---|---|---|");
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    for net in &mut nets {
        net.samples.sort();
        net.started.sort();
        println!(
            "| {} | {} | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms |",
            net.name,
            net.samples.len(),
            ms(percentile(&net.samples, 0.5)),
            ms(percentile(&net.samples, 0.9)),
            ms(percentile(&net.started, 0.5)),
            ms(percentile(&net.started, 0.9)),
        );
    }
    println!("\n(cargo bench --bench docker_startup -- --iterations {iterations})");
    drop(dk);
    drop(lab);
    ExitCode::SUCCESS
}
