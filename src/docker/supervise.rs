//! Starting, finding and stopping a home's Docker plugin, and the files it keeps.
//!
//! The plugin is its own process with its own pidfile lock in the router's home. The
//! router runs a [`Supervisor`] thread that starts it when a Docker daemon is reachable
//! and again if it dies; the plugin outlives the router on purpose (a stopped or killed
//! router must not turn Docker's calls into 15-second "plugin not found" waits: the
//! plugin answers them with weft's message). `weft launch` waits for it and creates the
//! Docker network `weft`; `weft reset` removes that network and stops the plugin.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use super::driver::DOCKER_NETWORK;
use super::engine::Engine;
use super::{DEFAULT_SOCKET, DRIVER_NAME};
use crate::home::Home;

/// How often the supervisor looks at dockerd and the plugin.
const CHECK_EVERY: Duration = Duration::from_secs(2);
/// How long `launch` waits for the plugin to answer.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a stop waits for the plugin before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a plugin listens and the spec file (if any) that points Docker there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginPaths {
    /// The plugin's socket.
    pub socket: PathBuf,
    /// `<spec dir>/weft.spec`, unless the socket is Docker's default one.
    pub spec: Option<PathBuf>,
}

impl PluginPaths {
    /// The paths for a socket, with a spec file in `spec_dir` when Docker would not find
    /// the socket by itself.
    pub fn new(socket: PathBuf, spec_dir: &Path) -> Self {
        let spec = (socket != Path::new(DEFAULT_SOCKET))
            .then(|| spec_dir.join(format!("{DRIVER_NAME}.spec")));
        Self { socket, spec }
    }
}

/// The plugin's pidfile (held under an exclusive lock while it runs).
pub(crate) fn pidfile(home: &Home) -> PathBuf {
    home.run_dir().join("docker-plugin.pid")
}

/// The plugin's durable state (see `driver`).
pub(crate) fn state_file(home: &Home) -> PathBuf {
    home.state_dir().join("docker-plugin.json")
}

/// The plugin's log.
pub(crate) fn log_file(home: &Home) -> PathBuf {
    home.state_dir().join("docker-plugin.log")
}

/// Where the running plugin says it listens (for `reset` after a crash).
fn record_file(home: &Home) -> PathBuf {
    home.run_dir().join("docker-plugin.paths.json")
}

/// Records the plugin's paths.
pub(crate) fn write_record(home: &Home, paths: &PluginPaths) -> anyhow::Result<()> {
    let bytes = serde_json::to_vec(paths).context("cannot encode the plugin's paths")?;
    crate::state::write_atomic(&record_file(home), &bytes)
}

/// Forgets the plugin's paths.
pub(crate) fn remove_record(home: &Home) {
    let _ = std::fs::remove_file(record_file(home));
}

fn read_record(home: &Home) -> Option<PluginPaths> {
    serde_json::from_slice(&std::fs::read(record_file(home)).ok()?).ok()
}

/// Removes the plugin's socket and spec file, so Docker finds no plugin there.
pub(crate) fn remove_endpoint_files(paths: &PluginPaths) {
    for path in std::iter::once(&paths.socket).chain(&paths.spec) {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("cannot remove {}: {e}", path.display()),
        }
    }
}

/// The pid of the home's running plugin.
pub(crate) fn running(home: &Home) -> Option<u32> {
    crate::pidfile::running_pid(&pidfile(home)).ok().flatten()
}

/// Starts `weft docker-plugin` for this home, detached, logging to its log file.
fn spawn(home: &Home, paths: &PluginPaths, log_level: &str) -> anyhow::Result<Child> {
    home.ensure()?;
    let log_path = log_file(home);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    // The router's own binary, even when its file was replaced since it started (an
    // upgrade, a rebuild): router and plugin are always the same version.
    let mut cmd = Command::new("/proc/self/exe");
    if *home != Home::new(None) {
        cmd.arg("--home").arg(home.state_dir());
    }
    cmd.arg("docker-plugin")
        .arg("--socket")
        .arg(&paths.socket)
        .arg("--log-level")
        .arg(log_level);
    if let Some(dir) = paths.spec.as_deref().and_then(Path::parent) {
        cmd.arg("--spec-dir").arg(dir);
    }
    use std::os::unix::process::CommandExt as _;
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone().context("cannot duplicate the log handle")?)
        .stderr(log)
        // Its own process group: signals for the router's group are not for it.
        .process_group(0)
        .spawn()
        .context("cannot start the weft Docker plugin")
}

/// The router's thread that keeps the home's plugin running while dockerd is reachable.
#[derive(Debug)]
pub(crate) struct Supervisor {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Supervisor {
    /// Starts watching; the first look is immediate.
    pub(crate) fn start(
        home: &Home,
        paths: PluginPaths,
        log_level: String,
    ) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let home = home.clone();
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("weft-dk-supervise".into())
            .spawn(move || {
                let mut child: Option<Child> = None;
                let mut said_unreachable = false;
                while !flag.load(Ordering::SeqCst) {
                    // Reap a plugin that exited (it is our child until we go).
                    if let Some(c) = &mut child
                        && let Ok(Some(status)) = c.try_wait()
                    {
                        tracing::warn!("the Docker plugin exited ({status}); see {}", log_file(&home).display());
                        child = None;
                    }
                    if running(&home).is_none() {
                        match Engine::from_env() {
                            Ok(engine) if engine.ping() => {
                                said_unreachable = false;
                                match spawn(&home, &paths, &log_level) {
                                    Ok(c) => {
                                        tracing::info!(pid = c.id(), socket = %paths.socket.display(), "started the Docker plugin");
                                        child = Some(c);
                                    }
                                    Err(e) => tracing::error!("{e:#}"),
                                }
                            }
                            Ok(engine) if !said_unreachable => {
                                said_unreachable = true;
                                tracing::info!(
                                    "no Docker daemon answers on {}: the Docker plugin starts when one does",
                                    engine.socket().display()
                                );
                            }
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!("no Docker plugin: {e}");
                                return;
                            }
                        }
                    }
                    let until = Instant::now() + CHECK_EVERY;
                    while Instant::now() < until && !flag.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            })
            .context("cannot start the Docker plugin supervisor")?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops watching; the plugin keeps running.
    pub(crate) fn shutdown(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// After `launch`: when dockerd is reachable, waits for the plugin and makes sure the
/// Docker network `weft` exists. Problems are reported, not fatal: the router runs.
pub(crate) fn after_launch(home: &Home, paths: &PluginPaths) {
    let engine = match Engine::from_env() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("weft: no Docker plugin: {e}");
            return;
        }
    };
    if !engine.ping() {
        return;
    }
    let deadline = Instant::now() + READY_TIMEOUT;
    while !super::serve::answers(&paths.socket) {
        if Instant::now() > deadline {
            eprintln!(
                "weft: warning: the Docker plugin did not answer on {} within {}s; see {}",
                paths.socket.display(),
                READY_TIMEOUT.as_secs(),
                log_file(home).display()
            );
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    match engine.network(DOCKER_NETWORK) {
        Ok(Some(n)) if n.driver == DRIVER_NAME => {}
        Ok(Some(n)) => eprintln!(
            "weft: warning: Docker already has a network {DOCKER_NETWORK} with driver {}; `docker run --net {DOCKER_NETWORK}` does not use weft",
            n.driver
        ),
        Ok(None) => match engine.create_network(DOCKER_NETWORK, DRIVER_NAME, DRIVER_NAME) {
            Ok(()) => println!("Docker network {DOCKER_NETWORK} created (driver {DRIVER_NAME})"),
            Err(e) => {
                eprintln!("weft: warning: cannot create the Docker network {DOCKER_NETWORK}: {e}")
            }
        },
        Err(e) => {
            eprintln!("weft: warning: cannot look up the Docker network {DOCKER_NETWORK}: {e}")
        }
    }
}

/// For `reset`, while router and plugin still run: removes the Docker network `weft`
/// (Docker refuses while containers use it; that is reported and left).
pub(crate) fn remove_docker_network(home: &Home) {
    if running(home).is_none() {
        return;
    }
    let Ok(engine) = Engine::from_env() else {
        return;
    };
    match engine.network(DOCKER_NETWORK) {
        Ok(Some(n)) if n.driver == DRIVER_NAME => match engine.remove_network(DOCKER_NETWORK) {
            Ok(()) => println!("Docker network {DOCKER_NETWORK} removed"),
            Err(e) => {
                eprintln!("weft: warning: cannot remove the Docker network {DOCKER_NETWORK}: {e}")
            }
        },
        _ => {}
    }
}

/// For `reset`, after the router stopped: stops the plugin and removes its files.
pub(crate) fn reset(home: &Home) -> anyhow::Result<()> {
    if let Some(pid) = running(home) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap_or(0));
        let gone_within = |t: Duration| crate::pidfile::wait_gone(&pidfile(home), t).is_ok();
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        if !gone_within(STOP_TIMEOUT) {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            anyhow::ensure!(
                gone_within(STOP_TIMEOUT),
                "the Docker plugin (pid {pid}) did not stop"
            );
        }
    }
    if let Some(paths) = read_record(home) {
        remove_endpoint_files(&paths);
    }
    for path in [
        record_file(home),
        pidfile(home),
        state_file(home),
        log_file(home),
    ] {
        crate::home::remove_if_present(&path)?;
    }
    let _ = std::fs::remove_dir(home.state_dir());
    let _ = std::fs::remove_dir(home.run_dir());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_file_only_where_docker_would_not_find_the_socket() {
        let d = Path::new("/etc/docker/plugins");
        assert_eq!(PluginPaths::new(DEFAULT_SOCKET.into(), d).spec, None);
        assert_eq!(
            PluginPaths::new("/tmp/h1/weft-docker.sock".into(), d).spec,
            Some(PathBuf::from("/etc/docker/plugins/weft.spec"))
        );
    }
}
