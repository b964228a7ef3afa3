//! `weft launch`: start the router in the background and return once its API answers,
//! or run it in the foreground.

use std::fs::File;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use nix::fcntl::{Flock, FlockArg};

use super::LaunchArgs;
use crate::api::client::Client;
use crate::home::Home;

/// How long `launch` waits for a new router's API before giving up.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) fn run(home: &Home, args: LaunchArgs) -> anyhow::Result<()> {
    if args.foreground {
        return crate::daemon::run(home, &args);
    }
    if let Some(pid) = running_pid(home)? {
        anyhow::bail!(
            "weft is already running on this home (pid {pid}, API {}); `weft stop` it first or pick another --home",
            home.socket().display()
        );
    }
    home.ensure()?;
    let log_path = home.log_file();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open log file {}", log_path.display()))?;
    let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
    let exe = std::env::current_exe().context("cannot find the weft executable")?;
    let mut argv: Vec<String> = std::env::args().skip(1).collect();
    argv.push("--foreground".into());
    let mut child = {
        use std::os::unix::process::CommandExt as _;
        Command::new(exe)
            .args(&argv)
            .stdin(Stdio::null())
            .stdout(
                log.try_clone()
                    .context("cannot duplicate log file handle")?,
            )
            .stderr(log)
            // Its own process group: a Ctrl-C at the terminal that ran `launch` must not
            // reach the router.
            .process_group(0)
            .spawn()
            .context("cannot start the weft router process")?
    };
    let api = Client::new(&home.socket());
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(status) = child
            .try_wait()
            .context("cannot watch the router process")?
        {
            let tail = log_tail(&log_path, log_start);
            anyhow::bail!("the weft router exited during startup ({status}):\n{tail}");
        }
        if api.ping() {
            println!(
                "weft router started (pid {}, log {})",
                child.id(),
                log_path.display()
            );
            return Ok(());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let tail = log_tail(&log_path, log_start);
            anyhow::bail!(
                "the weft router did not answer within {}s; it was stopped:\n{tail}",
                READY_TIMEOUT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What the router logged since `from` (its startup), for a failed launch's error message.
fn log_tail(path: &std::path::Path, from: u64) -> String {
    let mut text = String::new();
    if let Ok(mut f) = File::open(path) {
        let _ = f.seek(SeekFrom::Start(from));
        let _ = f.take(16 * 1024).read_to_string(&mut text);
    }
    let text = text.trim_end();
    if text.is_empty() {
        "(no log output)".to_string()
    } else {
        text.to_string()
    }
}

/// The pid of the router that holds this home's pidfile lock, if one is running.
///
/// A pidfile whose lock nobody holds is stale (the router died, e.g. `kill -9`): it does
/// not count as running, and the next launch takes it over.
pub(crate) fn running_pid(home: &Home) -> anyhow::Result<Option<u32>> {
    let path = home.pidfile();
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot open pidfile {}", path.display())),
    };
    match Flock::lock(file, FlockArg::LockSharedNonblock) {
        Ok(_unlocked_on_drop) => Ok(None),
        Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
            let mut text = String::new();
            file.read_to_string(&mut text)
                .with_context(|| format!("cannot read pidfile {}", path.display()))?;
            Ok(Some(text.trim().parse().unwrap_or(0)))
        }
        Err((_, errno)) => Err(anyhow::anyhow!(
            "cannot check pidfile lock {}: {errno}",
            path.display()
        )),
    }
}
