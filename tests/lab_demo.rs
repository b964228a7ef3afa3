//! `weft lab demo`, weft's main job: it runs to the end with containers talking on one host
//! and across hosts, and leaves nothing behind — also when Ctrl-C stops it half way.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead as _, BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::require_root;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The demo's namespaces, by its own naming (`wfdemo<pid><short>`).
const SHORT_NAMES: [&str; 5] = ["h1", "h2", "c1", "c2", "c3"];

/// One `weft lab demo` process, its temp dir of choice (`TMPDIR`), and its stdout lines.
/// Dropping it removes whatever the demo left, so a failing test leaks nothing either.
struct Demo {
    child: Child,
    tmpdir: PathBuf,
    lines: mpsc::Receiver<String>,
    stdout: Vec<String>,
}

impl Demo {
    fn start(test: &str) -> Self {
        let tmpdir = std::env::temp_dir().join(format!("wtdemo{}-{test}", std::process::id()));
        std::fs::create_dir_all(&tmpdir).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_weft"))
            .args(["lab", "demo"])
            .env("TMPDIR", &tmpdir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run weft lab demo");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Self {
            child,
            tmpdir,
            lines,
            stdout: Vec::new(),
        }
    }

    fn prefix(&self) -> String {
        format!("wfdemo{}", self.child.id())
    }

    /// The demo's own directory (its routers' homes live in it).
    fn lab_dir(&self) -> PathBuf {
        self.tmpdir.join(self.prefix())
    }

    /// Reads stdout until a line contains `text`, or panics after `timeout`.
    fn wait_for_line(&mut self, text: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.stdout.iter().any(|l| l.contains(text)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.stdout.push(line),
                Err(e) => panic!(
                    "no line with {text:?} within {timeout:?} ({e}); so far:\n{}",
                    self.stdout.join("\n")
                ),
            }
        }
    }

    /// Waits for the demo to end; returns its status, and all its stdout and stderr.
    fn wait(&mut self, timeout: Duration) -> (ExitStatus, String, String) {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "the demo did not end within {timeout:?}; so far:\n{}",
                self.stdout.join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        self.stdout.extend(self.lines.iter());
        let mut stderr = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut stderr);
        }
        (status, self.stdout.join("\n"), stderr)
    }

    /// Asserts that nothing the demo made is left: namespaces, router processes, files.
    fn assert_nothing_left(&self) {
        let prefix = self.prefix();
        let list = Command::new("ip").args(["netns", "list"]).output().unwrap();
        let list = String::from_utf8_lossy(&list.stdout);
        assert!(
            !list.lines().any(|l| l.starts_with(&prefix)),
            "namespaces left behind:\n{list}"
        );
        let processes = processes_mentioning(&self.lab_dir());
        assert!(processes.is_empty(), "processes left behind: {processes:?}");
        assert!(
            !self.lab_dir().exists(),
            "{} left behind",
            self.lab_dir().display()
        );
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            // SIGTERM lets the demo clean up after itself; SIGKILL if it does not end.
            let pid = Pid::from_raw(self.child.id() as i32);
            let _ = kill(pid, Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(60);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        for pid in processes_mentioning(&self.lab_dir()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        for short in SHORT_NAMES {
            let name = format!("{}{short}", self.prefix());
            if Path::new("/run/netns").join(&name).exists() {
                let _ = Command::new("ip").args(["netns", "delete", &name]).status();
            }
        }
        let _ = std::fs::remove_dir_all(&self.tmpdir);
    }
}

/// Pids whose command line names `dir` (the routers the demo launched run with
/// `--home <dir>/<host>`).
fn processes_mentioning(dir: &Path) -> Vec<i32> {
    let needle = dir.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&needle))
        })
        .collect()
}

#[test]
fn the_demo_shows_containers_talking_and_leaves_nothing_behind() {
    if !require_root("the_demo_shows_containers_talking_and_leaves_nothing_behind") {
        return;
    }
    let mut demo = Demo::start("full");
    let (status, out, err) = demo.wait(Duration::from_secs(300));
    assert!(status.success(), "demo failed: {status}\n{out}\n{err}");
    for expected in [
        "c1 -> c2 (same host): UDP echo in",
        "c1 -> c3 (across hosts, VXLAN): UDP echo in",
        "h1 -> c3 (host h1 to c3): UDP echo in",
        "c1 -> c2 (same host): 64 MiB over TCP at",
        "c1 -> c3 (across hosts): 64 MiB over TCP at",
        "==> cleaning up",
    ] {
        assert!(out.contains(expected), "no {expected:?} in:\n{out}");
    }
    // `weft status` on h1 lists h2 as a peer whose data path works, and ps the containers.
    assert!(out.contains("192.168.77.2"), "{out}");
    for ip in ["10.40.0.1", "10.40.0.2"] {
        assert!(out.contains(ip), "ps lacks {ip}:\n{out}");
    }
    demo.assert_nothing_left();
}

#[test]
fn ctrl_c_stops_the_demo_and_still_removes_the_lab() {
    if !require_root("ctrl_c_stops_the_demo_and_still_removes_the_lab") {
        return;
    }
    let mut demo = Demo::start("interrupted");
    // Routers are running and containers attached once the demo starts their traffic.
    demo.wait_for_line("==> containers talking", Duration::from_secs(120));
    assert!(
        !processes_mentioning(&demo.lab_dir()).is_empty(),
        "no router running to clean up"
    );
    kill(Pid::from_raw(demo.child.id() as i32), Signal::SIGINT).unwrap();
    let (status, out, err) = demo.wait(Duration::from_secs(120));
    assert_eq!(status.code(), Some(130), "{status}\n{out}\n{err}");
    assert!(out.contains("SIGINT: stopping after this step"), "{out}");
    assert!(err.contains("interrupted; the lab was removed"), "{err}");
    assert!(
        !out.contains("==> weft status on h1"),
        "ran on after SIGINT:\n{out}"
    );
    demo.assert_nothing_left();
}
