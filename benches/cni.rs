//! CNI ADD/DEL latency of weft-cni against the reference bridge + host-local plugins,
//! both driven by libcni's cnitool in the same run, and the time until 100 concurrent
//! ADDs on one host are all done.
//!
//! `sudo -E cargo bench --bench cni [-- --rounds N]` (default 100 rounds; without
//! `--bench`, as under `cargo test --benches`, 5 rounds and 10 concurrent ADDs, to prove
//! the harness works). Needs root, cnitool (`scripts/cnitool`) and Debian's
//! containernetworking-plugins; without them it says why and exits 0 (1 under CI=true).
//! Everything it makes is named `wfc<pid>-*` and removed on exit, also after a panic.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::fd::AsFd as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Output, Stdio};
use std::time::{Duration, Instant};

use weft::netns::NamedNetns;

const PLUGINS: &str = "/usr/lib/cni";

struct Bench {
    prefix: String,
    tmp: PathBuf,
    netns: Vec<NamedNetns>,
    cnitool: PathBuf,
    router_home: PathBuf,
}

impl Bench {
    fn ns(&self, short: &str) -> String {
        format!("{}-{short}", self.prefix)
    }

    fn add_ns(&mut self, short: &str) {
        let ns = NamedNetns::create(&self.ns(short)).expect("create namespace");
        let fd = ns.open().unwrap();
        weft::netns::run_in_netns(fd.as_fd(), || {
            let mut nl = weft::netlink::Netlink::new().unwrap();
            let lo = nl.link_by_name("lo").unwrap().unwrap();
            nl.set_up(lo.index, true).unwrap();
        })
        .unwrap();
        self.netns.push(ns);
    }

    fn conf_dir(&self, name: &str, conflist: serde_json::Value) -> PathBuf {
        let dir = self.tmp.join(format!("net-{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join(format!("10-{name}.conflist")),
            conflist.to_string(),
        )
        .unwrap();
        dir
    }

    fn cnitool(&self, dir: &Path, verb: &str, net: &str, container: &str, args: &str) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.ns("host")])
            .arg(&self.cnitool)
            .args([verb, net, &format!("/run/netns/{}", self.ns(container))])
            .env(
                "CNI_PATH",
                format!("{}:{PLUGINS}", self.tmp.join("bin").display()),
            )
            .env("NETCONFPATH", dir)
            .env("CNI_ARGS", args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn cnitool_ok(&self, dir: &Path, verb: &str, net: &str, container: &str, args: &str) {
        let out = self.cnitool(dir, verb, net, container, args);
        assert!(
            out.status.success(),
            "cnitool {verb} {net}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        if let Some(pid) = std::fs::read_to_string(self.router_home.join("weft.pid"))
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        while let Some(ns) = self.netns.pop() {
            drop(ns);
        }
        if let Ok(dir) = std::fs::read_dir("/var/lib/cni/results") {
            for e in dir.flatten() {
                if std::fs::read_to_string(e.path()).is_ok_and(|s| s.contains(&self.prefix)) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.tmp);
    }
}

/// Median and 99th percentile of `samples`, in milliseconds.
fn stats(samples: &mut [Duration]) -> (f64, f64) {
    samples.sort();
    let at = |q: f64| {
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples[i].as_secs_f64() * 1000.0
    };
    (at(0.5), at(0.99))
}

fn skip(why: &str) -> ExitCode {
    if std::env::var("CI").as_deref() == Ok("true") {
        eprintln!("cni bench: {why}, and CI=true: refusing to skip");
        return ExitCode::FAILURE;
    }
    eprintln!("SKIPPED cni bench: {why}");
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let bench_mode = args.iter().any(|a| a == "--bench");
    let rounds: usize = args
        .iter()
        .position(|a| a == "--rounds")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(if bench_mode { 100 } else { 5 });
    let concurrent = if bench_mode { 100 } else { 10 };
    if !nix::unistd::geteuid().is_root() {
        return skip("needs root (network namespaces)");
    }
    if !Path::new(PLUGINS).join("bridge").exists() {
        return skip("containernetworking-plugins is not installed");
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/cnitool");
    let out = Command::new(script).output().expect("scripts/cnitool");
    if !out.status.success() {
        return skip(&format!(
            "cannot build cnitool: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let prefix = format!("wfc{}", std::process::id());
    let tmp = std::env::temp_dir().join(format!("weft-bench-{prefix}"));
    std::fs::create_dir_all(tmp.join("bin")).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_weft"), tmp.join("bin/weft-cni")).unwrap();
    let mut b = Bench {
        prefix,
        router_home: tmp.join("router"),
        tmp,
        netns: Vec::new(),
        cnitool: PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()),
    };
    b.add_ns("host");
    b.add_ns("c");
    for i in 0..concurrent {
        b.add_ns(&format!("p{i}"));
    }
    let launched = Command::new("ip")
        .args(["netns", "exec", &b.ns("host")])
        .arg(env!("CARGO_BIN_EXE_weft"))
        .arg("--home")
        .arg(&b.router_home)
        .arg("launch")
        .output()
        .unwrap();
    assert!(launched.status.success(), "{launched:?}");
    let socket = b.router_home.join("weft.sock").display().to_string();
    let ipam = |b: &Bench, name: &str| {
        serde_json::json!({ "type": "host-local", "ranges": [[{ "subnet": "10.74.0.0/16" }]],
            "dataDir": b.tmp.join(format!("ipam-{name}")).display().to_string() })
    };
    let weft_static = b.conf_dir(
        "wstatic",
        serde_json::json!({ "cniVersion": "1.0.0", "name": "wstatic",
        "plugins": [{ "type": "weft-cni", "socket": socket, "subnet": "10.75.0.0/16" }] }),
    );
    let weft_hl = b.conf_dir(
        "whl",
        serde_json::json!({ "cniVersion": "1.0.0", "name": "whl",
        "plugins": [{ "type": "weft-cni", "socket": socket, "ipam": ipam(&b, "whl") }] }),
    );
    let bridge = b.conf_dir(
        "bridge",
        serde_json::json!({ "cniVersion": "1.0.0", "name": "bridge",
        "plugins": [{ "type": "bridge", "bridge": "wfcbr0", "isGateway": true, "ipMasq": false,
                      "ipam": ipam(&b, "bridge") }] }),
    );

    println!("CNI ADD/DEL through cnitool, {rounds} rounds each (ms)\n");
    println!("| plugin | ADD median | ADD p99 | DEL median | DEL p99 | ADD+DEL median |");
    println!("|---|---|---|---|---|---|");
    for (label, dir, net, args) in [
        (
            "weft-cni (address given)",
            &weft_static,
            "wstatic",
            "IP=10.75.0.5",
        ),
        ("weft-cni + host-local", &weft_hl, "whl", ""),
        ("bridge + host-local", &bridge, "bridge", ""),
    ] {
        // One warm-up round (first bridge creation, page cache).
        b.cnitool_ok(dir, "add", net, "c", args);
        b.cnitool_ok(dir, "del", net, "c", args);
        let (mut adds, mut dels, mut both) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            let t0 = Instant::now();
            b.cnitool_ok(dir, "add", net, "c", args);
            let t1 = Instant::now();
            b.cnitool_ok(dir, "del", net, "c", args);
            let t2 = Instant::now();
            adds.push(t1 - t0);
            dels.push(t2 - t1);
            both.push(t2 - t0);
        }
        let (am, ap) = stats(&mut adds);
        let (dm, dp) = stats(&mut dels);
        let (bm, _) = stats(&mut both);
        println!("| {label} | {am:.1} | {ap:.1} | {dm:.1} | {dp:.1} | {bm:.1} |");
    }

    println!("\n{concurrent} concurrent cnitool ADDs on one host: time until all are done\n");
    println!("| plugin | all ADDs done (s) | DELs done (s) |");
    println!("|---|---|---|");
    for (label, dir, net) in [
        ("weft-cni + host-local", &weft_hl, "whl"),
        ("bridge + host-local", &bridge, "bridge"),
    ] {
        let b_ref = &b;
        let run_all = |verb: &'static str| {
            let t0 = Instant::now();
            std::thread::scope(|s| {
                let hs: Vec<_> = (0..concurrent)
                    .map(|i| {
                        s.spawn(move || b_ref.cnitool_ok(dir, verb, net, &format!("p{i}"), ""))
                    })
                    .collect();
                for h in hs {
                    h.join().unwrap();
                }
            });
            t0.elapsed()
        };
        let add = run_all("add");
        let del = run_all("del");
        println!(
            "| {label} | {:.2} | {:.2} |",
            add.as_secs_f64(),
            del.as_secs_f64()
        );
    }
    ExitCode::SUCCESS
}
