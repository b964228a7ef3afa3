//! Running commands with deadlines: nothing the harness starts can hang it.

use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::signals;

/// How often waits re-check their condition.
pub(crate) const POLL: Duration = Duration::from_millis(20);

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

/// Runs `cmd` to completion, killing it after `timeout` (an error naming the command) or
/// on a stop request ([`signals::Interrupted`]).
pub(crate) fn run(cmd: &mut Command, timeout: Duration) -> anyhow::Result<Finished> {
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
        let interrupted = signals::stop_requested();
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
    let out = run(cmd, timeout)?;
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

/// A child that is SIGKILLed and reaped when dropped.
#[derive(Debug)]
pub(crate) struct ChildGuard(pub(crate) Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
