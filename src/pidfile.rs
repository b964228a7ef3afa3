//! The one home of a router's pidfile: the lock that says "a router runs on this home",
//! the pid of the one that does, and waiting for it to go.
//!
//! Contract: a router holds an exclusive `flock` on its pidfile for its whole life, with
//! its pid written inside. The kernel drops the lock when the process dies however it
//! dies, so a pidfile left by `kill -9` is stale, not "running": whoever checks takes the
//! lock (shared, for a look) to tell. The lock, not the file's existence or its pid, is
//! the truth; the pid is for messages and signals.
//!
//! A process killed with `kill -9` keeps the lock for a moment after its pid is a zombie
//! (its other threads are still closing files, e.g. TAP devices): [`PidLock::acquire`]
//! waits for such a holder instead of calling it "already running".

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// How long [`PidLock::acquire`] waits for a holder that is exiting (a zombie, or gone
/// from `/proc`) to release the lock.
pub(crate) const EXIT_WAIT: Duration = Duration::from_secs(5);

/// How long [`PidLock::acquire`] waits for a holder that still looks alive: `kill -9`
/// followed at once by a launch can see the old router before the signal landed.
pub(crate) const ALIVE_GRACE: Duration = Duration::from_millis(500);

/// How often a wait looks again.
const POLL: Duration = Duration::from_millis(20);

/// Why a pidfile operation failed, in words that say what to do.
#[derive(Debug, thiserror::Error)]
pub enum PidfileError {
    /// Another router holds the lock and is not going away.
    #[error(
        "weft is already running on this home (pid {pid}, pidfile {}); `weft stop` it first or pick another --home",
        path.display()
    )]
    Running {
        /// The holder's pid (0 when its pidfile does not say).
        pid: u32,
        /// The pidfile.
        path: PathBuf,
    },
    /// The router did not release the lock within the wait.
    #[error("the weft router (pid {pid}) is still running after {}s", waited.as_secs())]
    StillRunning {
        /// The holder's pid.
        pid: u32,
        /// How long we waited.
        waited: Duration,
    },
    /// The pidfile cannot be opened, read, written or locked.
    #[error("pidfile {}: {what}: {source}", path.display())]
    Io {
        /// The pidfile.
        path: PathBuf,
        /// What we tried.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

fn io_error(path: &Path, what: &'static str) -> impl FnOnce(std::io::Error) -> PidfileError {
    let path = path.to_path_buf();
    move |source| PidfileError::Io { path, what, source }
}

fn errno_error(path: &Path, what: &'static str, errno: Errno) -> PidfileError {
    PidfileError::Io {
        path: path.to_path_buf(),
        what,
        source: std::io::Error::from(errno),
    }
}

/// The exclusive lock on a home's pidfile, held for the router's whole life; dropping it
/// removes the pidfile (a clean stop leaves none behind).
#[derive(Debug)]
pub(crate) struct PidLock {
    _lock: Flock<File>,
    path: PathBuf,
    /// The pid a stale pidfile named: a router that did not stop cleanly.
    previous: Option<u32>,
}

impl PidLock {
    /// Takes the lock and writes our pid. A holder that is exiting is waited for (up to
    /// [`EXIT_WAIT`]), one that looks alive for [`ALIVE_GRACE`]; then it is
    /// [`PidfileError::Running`].
    pub(crate) fn acquire(path: &Path) -> Result<Self, PidfileError> {
        let mut lock = wait_unlocked(path, || {
            loop {
                let file = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(path)
                    .map_err(io_error(path, "cannot open"))?;
                let lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                    Ok(lock) => lock,
                    Err((_, Errno::EWOULDBLOCK)) => return Ok(None),
                    Err((_, errno)) => return Err(errno_error(path, "cannot lock", errno)),
                };
                // The router we waited for removes its pidfile before it lets go of the
                // lock: a lock on that removed file proves nothing. Lock what the path
                // names now.
                if same_file(&lock, path) {
                    return Ok(Some(lock));
                }
            }
        })?;
        let mut text = String::new();
        lock.read_to_string(&mut text)
            .map_err(io_error(path, "cannot read"))?;
        let previous = text.trim().parse().ok();
        lock.set_len(0).map_err(io_error(path, "cannot truncate"))?;
        // The file offset is past the old content: write from the start.
        std::io::Seek::rewind(&mut *lock).map_err(io_error(path, "cannot rewind"))?;
        writeln!(lock, "{}", std::process::id()).map_err(io_error(path, "cannot write"))?;
        lock.sync_all().map_err(io_error(path, "cannot sync"))?;
        Ok(Self {
            _lock: lock,
            path: path.to_path_buf(),
            previous,
        })
    }

    /// The pid of the router that held the pidfile before and did not remove it: it
    /// crashed or was killed, and its state is being recovered.
    pub(crate) fn previous(&self) -> Option<u32> {
        self.previous
    }
}

impl Drop for PidLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Fails with [`PidfileError::Running`] when a router runs on this pidfile, after waiting
/// for one that is exiting like [`PidLock::acquire`] does; takes nothing.
pub(crate) fn ensure_not_running(path: &Path) -> Result<(), PidfileError> {
    wait_unlocked(path, || Ok(running_pid(path)?.is_none().then_some(())))
}

/// Runs `attempt` until it gets the lock (`Some`): while the holder is exiting for up to
/// [`EXIT_WAIT`], while it looks alive for [`ALIVE_GRACE`]; then the holder is running.
fn wait_unlocked<T>(
    path: &Path,
    mut attempt: impl FnMut() -> Result<Option<T>, PidfileError>,
) -> Result<T, PidfileError> {
    let start = Instant::now();
    loop {
        if let Some(got) = attempt()? {
            return Ok(got);
        }
        let pid = read_pid(path).unwrap_or(0);
        let limit = if process_exiting(pid) {
            EXIT_WAIT
        } else {
            ALIVE_GRACE
        };
        if start.elapsed() >= limit {
            return Err(PidfileError::Running {
                pid,
                path: path.to_path_buf(),
            });
        }
        std::thread::sleep(POLL);
    }
}

/// The pid of the router that holds the lock on `path`, if one does.
///
/// A pidfile whose lock nobody holds is stale (the router died, e.g. `kill -9`): it does
/// not count as running. A holder whose pid the file does not say is reported as 0.
pub fn running_pid(path: &Path) -> Result<Option<u32>, PidfileError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(path, "cannot open")(e)),
    };
    match Flock::lock(file, FlockArg::LockSharedNonblock) {
        Ok(_unlocked_on_drop) => Ok(None),
        Err((mut file, Errno::EWOULDBLOCK)) => {
            let mut text = String::new();
            file.read_to_string(&mut text)
                .map_err(io_error(path, "cannot read"))?;
            Ok(Some(text.trim().parse().unwrap_or(0)))
        }
        Err((_, errno)) => Err(errno_error(path, "cannot check the lock of", errno)),
    }
}

/// Waits until no router holds the lock on `path` (after a stop request, or a kill), at
/// most `timeout`, so `stop; launch` never races a router that is still tearing down.
pub fn wait_gone(path: &Path, timeout: Duration) -> Result<(), PidfileError> {
    let start = Instant::now();
    loop {
        let Some(pid) = running_pid(path)? else {
            return Ok(());
        };
        if start.elapsed() >= timeout {
            return Err(PidfileError::StillRunning {
                pid,
                waited: timeout,
            });
        }
        std::thread::sleep(POLL);
    }
}

/// Whether `file` is the file `path` names (not one removed since it was opened).
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// The pid a pidfile names, if it names one.
fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Whether `pid` is gone or a zombie: a lock it still holds is about to be released.
fn process_exiting(pid: u32) -> bool {
    if pid == 0 {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name's closing parenthesis.
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| matches!(rest.trim_start().chars().next(), Some('Z' | 'X'))),
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(test: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("weft-pidfile-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// A pid that names no process: a child that has been reaped.
    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }

    /// Holds the lock on `path` from another open file (as another process would), with
    /// `pid` written in it, until `release` elapses.
    fn hold(path: &Path, pid: u32, release: Duration) -> std::thread::JoinHandle<()> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .unwrap();
        let mut lock = Flock::lock(file, FlockArg::LockExclusiveNonblock).unwrap();
        writeln!(lock, "{pid}").unwrap();
        std::thread::spawn(move || {
            std::thread::sleep(release);
            drop(lock);
        })
    }

    #[test]
    fn a_lock_held_by_a_live_router_is_running_and_released_on_drop() {
        let dir = tempdir("live");
        let path = dir.join("weft.pid");
        assert_eq!(running_pid(&path).unwrap(), None);
        let lock = PidLock::acquire(&path).unwrap();
        assert_eq!(lock.previous(), None);
        assert_eq!(running_pid(&path).unwrap(), Some(std::process::id()));
        // We are alive: a second router is refused after the grace, naming us.
        let start = Instant::now();
        match PidLock::acquire(&path) {
            Err(PidfileError::Running { pid, .. }) => assert_eq!(pid, std::process::id()),
            other => panic!("a second lock: {other:?}"),
        }
        assert!(matches!(
            ensure_not_running(&path),
            Err(PidfileError::Running { .. })
        ));
        assert!(
            start.elapsed() < EXIT_WAIT,
            "a live holder is not waited for"
        );
        assert!(wait_gone(&path, Duration::from_millis(50)).is_err());
        drop(lock);
        assert!(!path.exists(), "a clean stop removes the pidfile");
        wait_gone(&path, Duration::ZERO).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_stale_pidfile_is_not_running_and_is_taken_over() {
        let dir = tempdir("stale");
        let path = dir.join("weft.pid");
        std::fs::write(&path, "4242\n").unwrap();
        assert_eq!(running_pid(&path).unwrap(), None);
        let lock = PidLock::acquire(&path).unwrap();
        assert_eq!(lock.previous(), Some(4242));
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("{}\n", std::process::id()));
        drop(lock);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_holder_that_is_exiting_is_waited_for() {
        // After `kill -9` the old router's pid is gone (or a zombie) while its last
        // threads still hold the lock: the relaunch waits instead of refusing.
        let dir = tempdir("exiting");
        let path = dir.join("weft.pid");
        let holder = hold(&path, dead_pid(), ALIVE_GRACE + Duration::from_millis(300));
        ensure_not_running(&path).expect("a launch waits for an exiting holder");
        holder.join().unwrap();
        let holder = hold(&path, dead_pid(), ALIVE_GRACE + Duration::from_millis(300));
        let lock = PidLock::acquire(&path).expect("the router waits for an exiting holder");
        holder.join().unwrap();
        drop(lock);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
