//! The `weft docker-plugin` process: listens where Docker looks, answers each
//! connection's one request from its own thread, retries owed work, and removes its
//! socket and spec file when it stops.

use std::net::IpAddr;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use ipnet::{IpNet, Ipv4Net};
use serde::Deserialize;

use super::driver::{ApiFailure, AttachedEndpoint, DockerApi, IpamView, Plugin, RouterApi};
use super::engine::{DockerNetwork, Engine, EngineError};
use super::http;
use super::protocol::{CONTENT_TYPE, CallError, DockerId, Refusal, parse_call};
use super::supervise::{self, PluginPaths};
use crate::api::client::{Client, ClientError};
use crate::api::{AttachRequest, DetachRequest, NetworkRequest};
use crate::home::Home;

/// Most requests served at once; more are answered 503 at once (Docker retries none of
/// its calls in parallel anywhere near this many).
const MAX_ACTIVE: usize = 32;
/// How long a client has to send its request, and to take the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one router call may take: under Docker's 30 s plugin timeout, so Docker shows
/// weft's message rather than its own.
const ROUTER_TIMEOUT: Duration = Duration::from_secs(25);
/// How often owed detaches and releases are retried.
const RETRY_EVERY: Duration = Duration::from_secs(2);

/// The router's API over its socket.
#[derive(Debug)]
struct RouterClient(Client);

fn failure(e: ClientError) -> ApiFailure {
    match e {
        ClientError::Refused(m) => ApiFailure::Refused(m),
        other => ApiFailure::Unavailable(other.to_string()),
    }
}

#[derive(Deserialize)]
struct IpamStatusView {
    #[serde(default)]
    range: Option<Ipv4Net>,
    #[serde(default)]
    default_subnet: Option<Ipv4Net>,
}

#[derive(Deserialize)]
struct Allocated {
    address: IpNet,
}

impl RouterApi for RouterClient {
    fn ping(&self) -> Result<(), ApiFailure> {
        self.0
            .get::<serde_json::Value>("/ping")
            .map(drop)
            .map_err(failure)
    }

    fn attach(&self, req: &AttachRequest) -> Result<AttachedEndpoint, ApiFailure> {
        self.0.post("/attach", req).map_err(failure)
    }

    fn detach(&self, owner: &str) -> Result<(), ApiFailure> {
        let req = DetachRequest {
            target: String::new(),
            network: None,
            owner: Some(owner.to_string()),
        };
        self.0
            .post::<_, serde_json::Value>("/detach", &req)
            .map(drop)
            .map_err(failure)
    }

    fn endpoints(&self) -> Result<Vec<AttachedEndpoint>, ApiFailure> {
        self.0.get("/ps").map_err(failure)
    }

    fn remove_network(&self, name: &str) -> Result<(), ApiFailure> {
        let req = NetworkRequest {
            name: name.to_string(),
            vni: None,
        };
        self.0
            .post::<_, serde_json::Value>("/network/rm", &req)
            .map(drop)
            .map_err(failure)
    }

    fn ipam(&self) -> Result<Option<IpamView>, ApiFailure> {
        let (status, body) = self.0.exchange("GET", "/ipam", None).map_err(failure)?;
        match status {
            200 => {
                let v: IpamStatusView = serde_json::from_slice(&body).map_err(|e| {
                    ApiFailure::Refused(format!("the router's IPAM status is not understood: {e}"))
                })?;
                Ok(Some(IpamView {
                    range: v.range,
                    default_subnet: v.default_subnet,
                }))
            }
            404 => Ok(None),
            s => Err(ApiFailure::Refused(format!(
                "the router answered {s} for its IPAM status: {}",
                String::from_utf8_lossy(&body)
            ))),
        }
    }

    fn allocate(
        &self,
        handle: &str,
        subnet: Ipv4Net,
        address: Option<IpAddr>,
    ) -> Result<IpNet, ApiFailure> {
        // The exact address goes with its subnet's prefix (`AllocateRequest` in docs/API.md
        // terms: `address` is `IP/prefix`).
        let address =
            match address {
                Some(IpAddr::V4(a)) => Some(Ipv4Net::new(a, subnet.prefix_len()).map_err(|e| {
                    ApiFailure::Refused(format!("{a}/{}: {e}", subnet.prefix_len()))
                })?),
                Some(IpAddr::V6(a)) => {
                    return Err(ApiFailure::Refused(format!(
                        "{a}: weft's IPAM is IPv4 only"
                    )));
                }
                None => None,
            };
        let req = serde_json::json!({ "handle": handle, "subnet": subnet, "address": address });
        self.0
            .post::<_, Allocated>("/ipam/allocate", &req)
            .map(|a| a.address)
            .map_err(failure)
    }

    fn release(&self, handle: &str, address: Option<IpAddr>) -> Result<(), ApiFailure> {
        let req = serde_json::json!({ "handle": handle, "address": address });
        self.0
            .post::<_, serde_json::Value>("/ipam/release", &req)
            .map(drop)
            .map_err(failure)
    }
}

/// dockerd's API.
#[derive(Debug)]
struct DockerClient(Engine);

impl DockerApi for DockerClient {
    fn network(&self, id: &DockerId) -> Result<Option<DockerNetwork>, ApiFailure> {
        self.0.network(id.as_str()).map_err(|e| match e {
            EngineError::Refused { .. } | EngineError::UnsupportedHost(_) => {
                ApiFailure::Refused(e.to_string())
            }
            other => ApiFailure::Unavailable(other.to_string()),
        })
    }
}

/// Answers one connection's request.
fn serve_connection(mut stream: UnixStream, plugin: &Plugin) {
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let (status, body) = match http::read_request(&mut stream) {
        Err(e) => {
            tracing::debug!("refused a request: {e}");
            (e.status(), refusal(e.to_string()))
        }
        Ok(req) => match parse_call(&req.head.path, &req.body) {
            Err(e @ CallError::UnknownMethod(_)) => (404, refusal(e.to_string())),
            Err(e @ CallError::BadBody { .. }) => {
                tracing::warn!("{e}");
                (400, refusal(e.to_string()))
            }
            Ok(call) => {
                let name = req.head.path.clone();
                match plugin.handle(call) {
                    Ok(v) => {
                        tracing::debug!(call = %name, answer = %v, "answered");
                        (200, serde_json::to_vec(&v).unwrap_or_default())
                    }
                    Err(e) => {
                        tracing::warn!(call = %name, "refused: {e}");
                        // Not 200: libnetwork's IPAM proxy reads a 200's error from
                        // `Error`, its network proxy from `Err`; for any other status
                        // Docker's plugin client reads `Err` for both.
                        (500, refusal(e.0))
                    }
                }
            }
        },
    };
    if let Err(e) = http::write_response(&mut stream, status, CONTENT_TYPE, &body) {
        tracing::debug!("Docker went away before the answer: {e}");
    }
}

fn refusal(err: String) -> Vec<u8> {
    serde_json::to_vec(&Refusal { err }).unwrap_or_default()
}

/// Binds the plugin socket, replacing a stale one (the caller holds the plugin's lock,
/// which proves no other plugin of this home uses it).
fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot remove stale {}", path.display())),
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("cannot listen on {}", path.display()))?;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot restrict {}", path.display()))?;
    Ok(listener)
}

/// Removes the plugin's socket, spec file and paths record when it goes.
struct Files<'a> {
    home: &'a Home,
    paths: &'a PluginPaths,
}

impl Drop for Files<'_> {
    fn drop(&mut self) {
        supervise::remove_endpoint_files(self.paths);
        supervise::remove_record(self.home);
    }
}

/// Runs the plugin until SIGTERM/SIGINT.
pub(crate) fn run(home: &Home, paths: &PluginPaths, log_level: &str) -> anyhow::Result<()> {
    home.ensure()?;
    let signals = crate::sys::signal::block_stop_signals().context("cannot block signals")?;
    crate::logfile::init_logging(log_level, &supervise::log_file(home));
    // Dropped last: the files below go while we still hold it.
    let _lock = crate::pidfile::PidLock::acquire(&supervise::pidfile(home))?;
    let router = RouterClient(Client::new(&home.socket()).with_timeout(ROUTER_TIMEOUT));
    let docker = DockerClient(Engine::from_env()?);
    let plugin = Arc::new(Plugin::new(
        Box::new(router),
        Box::new(docker),
        Some(supervise::state_file(home)),
    )?);
    let listener = bind(&paths.socket)?;
    // From here on, however this ends, Docker must find no socket or spec of ours.
    let _files = Files { home, paths };
    supervise::write_record(home, paths)?;
    if let Some(spec) = &paths.spec {
        if let Some(dir) = spec.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let url = format!("unix://{}\n", paths.socket.display());
        crate::state::write_atomic(spec, url.as_bytes())
            .with_context(|| format!("cannot write the plugin spec {}", spec.display()))?;
    }
    tracing::info!(socket = %paths.socket.display(), spec = ?paths.spec, "weft Docker plugin ready");

    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = Arc::clone(&stop);
        let socket = paths.socket.clone();
        std::thread::Builder::new()
            .name("weft-dk-signals".into())
            .spawn(move || {
                if let Ok(sig) = signals.wait() {
                    tracing::info!("received {sig:?}, stopping");
                }
                stop.store(true, Ordering::SeqCst);
                // Wake the accept loop.
                let _ = UnixStream::connect(&socket);
            })
            .context("cannot start the signal thread")?;
    }
    {
        let stop = Arc::clone(&stop);
        let plugin = Arc::clone(&plugin);
        std::thread::Builder::new()
            .name("weft-dk-retry".into())
            .spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    plugin.retry_pending();
                    std::thread::sleep(RETRY_EVERY);
                }
            })
            .context("cannot start the retry thread")?;
    }
    let active = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let mut stream = match conn {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if active.fetch_add(1, Ordering::SeqCst) >= MAX_ACTIVE {
            active.fetch_sub(1, Ordering::SeqCst);
            let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
            let _ = http::write_response(
                &mut stream,
                503,
                CONTENT_TYPE,
                &refusal("the weft plugin is busy".into()),
            );
            continue;
        }
        let plugin = Arc::clone(&plugin);
        let active_here = Arc::clone(&active);
        let spawned = std::thread::Builder::new()
            .name("weft-dk-call".into())
            .spawn(move || {
                serve_connection(stream, &plugin);
                active_here.fetch_sub(1, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            active.fetch_sub(1, Ordering::SeqCst);
            tracing::error!("cannot start a thread for a call: {e}");
        }
    }
    drop(listener);
    tracing::info!("weft Docker plugin stopped");
    Ok(())
}

/// Whether a plugin answers `Plugin.Activate` on `socket` (what Docker asks first).
pub(crate) fn answers(socket: &Path) -> bool {
    Client::new(socket)
        .with_timeout(Duration::from_secs(2))
        .exchange("POST", "/Plugin.Activate", None)
        .is_ok_and(|(status, body)| {
            status == 200 && body.windows(13).any(|w| w == b"NetworkDriver")
        })
}
