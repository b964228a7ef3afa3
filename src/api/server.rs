//! The router's side of the local API: parse HTTP into typed requests, hand them to the
//! router one at a time, write JSON answers.
//!
//! Requests are served sequentially on one thread: control operations (attach, expose,
//! connect) then never race each other, and none of them is on the per-frame path.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::de::DeserializeOwned;

use super::{
    ApiError, AttachRequest, DetachRequest, ErrorBody, ExposeRequest, HideRequest, NetworkRequest,
    PeersRequest,
};

/// Largest request body accepted; anything bigger is a client bug or an attack.
const MAX_BODY: u64 = 1 << 20;

/// A parsed API request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Liveness: answers as soon as the API thread runs.
    Ping,
    /// The whole status report.
    Status,
    /// Attached endpoints.
    Ps,
    /// Prometheus text exposition.
    Metrics,
    /// Attach a container.
    Attach(AttachRequest),
    /// Detach a container.
    Detach(DetachRequest),
    /// Give the host an address on a network.
    Expose(ExposeRequest),
    /// Take it away.
    Hide(HideRequest),
    /// Add peers to dial.
    Connect(PeersRequest),
    /// Stop dialling peers.
    Forget(PeersRequest),
    /// Declare a named network.
    AddNetwork(NetworkRequest),
    /// Remove a named network that has no endpoints.
    RemoveNetwork(String),
    /// Stop the router (endpoints stay; a later launch re-attaches them).
    Stop,
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    /// `application/json`.
    Json(serde_json::Value),
    /// `text/plain` (metrics).
    Text(String),
}

/// What serves the requests: the router.
pub trait Handler {
    /// Handles one request.
    fn handle(&mut self, request: Request) -> Result<Response, ApiError>;

    /// Runs about every [`TICK`] between requests, for work the router owes nobody an
    /// answer for (e.g. dialling saved peers whose names resolved late).
    fn tick(&mut self) {}
}

/// How often [`Handler::tick`] runs while no request comes.
pub const TICK: Duration = Duration::from_secs(1);

/// The listening API socket.
pub struct ApiServer {
    server: Arc<tiny_http::Server>,
    stop: Arc<AtomicBool>,
    path: PathBuf,
}

impl std::fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServer")
            .field("path", &self.path)
            .finish()
    }
}

/// Wakes a blocked [`ApiServer::serve`] from another thread (signal handling).
#[derive(Clone)]
pub struct Unblocker {
    server: Arc<tiny_http::Server>,
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for Unblocker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Unblocker")
    }
}

impl Unblocker {
    /// Makes `serve` return.
    pub fn unblock(&self) {
        // The flag first: a wait that times out and one that is unblocked look the same.
        self.stop.store(true, Ordering::SeqCst);
        self.server.unblock();
    }
}

impl ApiServer {
    /// Listens on `path`, replacing a stale socket file. The caller must hold the home's
    /// pidfile lock, which is what proves no other router still uses that socket.
    pub fn bind(path: &Path) -> anyhow::Result<Self> {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot remove stale API socket {}", path.display()));
            }
        }
        let server = tiny_http::Server::http_unix(path)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(|| format!("cannot listen on API socket {}", path.display()))?;
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot restrict API socket {}", path.display()))?;
        Ok(Self {
            server: Arc::new(server),
            stop: Arc::new(AtomicBool::new(false)),
            path: path.to_path_buf(),
        })
    }

    /// A handle that makes `serve` return.
    pub fn unblocker(&self) -> Unblocker {
        Unblocker {
            server: Arc::clone(&self.server),
            stop: Arc::clone(&self.stop),
        }
    }

    /// Serves requests until a `Stop` request has been answered or the server is unblocked,
    /// and ticks the handler every [`TICK`], busy or not.
    pub fn serve(&self, handler: &mut dyn Handler) {
        let mut next_tick = Instant::now() + TICK;
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            match self.server.recv_timeout(wait) {
                Ok(Some(mut http)) => {
                    let request = read_request(&mut http);
                    let stop = matches!(request, Ok(Request::Stop));
                    let answer = request.and_then(|r| handler.handle(r));
                    respond(http, answer);
                    if stop {
                        break;
                    }
                }
                Ok(None) if self.stop.load(Ordering::SeqCst) => break,
                Ok(None) => {}
                Err(e) => {
                    tracing::error!("the API socket failed: {e}");
                    break;
                }
            }
            if Instant::now() >= next_tick {
                handler.tick();
                next_tick = Instant::now() + TICK;
            }
        }
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn read_request(http: &mut tiny_http::Request) -> Result<Request, ApiError> {
    let method = http.method().as_str().to_ascii_uppercase();
    let url = http.url().to_string();
    let path = url.split('?').next().unwrap_or_default().to_string();
    let mut body = Vec::new();
    http.as_reader()
        .take(MAX_BODY + 1)
        .read_to_end(&mut body)
        .map_err(|e| ApiError::bad_request(format!("cannot read request body: {e}")))?;
    if body.len() as u64 > MAX_BODY {
        return Err(ApiError::bad_request("request body too large"));
    }
    parse(&method, &path, &body)
}

/// Maps method + path + body to a typed request.
pub fn parse(method: &str, path: &str, body: &[u8]) -> Result<Request, ApiError> {
    fn json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("invalid request JSON: {e}")))
    }
    Ok(match (method, path) {
        ("GET", "/ping") => Request::Ping,
        ("GET", "/status") => Request::Status,
        ("GET", "/ps") => Request::Ps,
        ("GET", "/metrics") => Request::Metrics,
        ("POST", "/attach") => Request::Attach(json(body)?),
        ("POST", "/detach") => Request::Detach(json(body)?),
        ("POST", "/expose") => Request::Expose(json(body)?),
        ("POST", "/hide") => Request::Hide(json(body)?),
        ("POST", "/connect") => Request::Connect(json(body)?),
        ("POST", "/forget") => Request::Forget(json(body)?),
        ("POST", "/network") => Request::AddNetwork(json(body)?),
        ("POST", "/network/rm") => Request::RemoveNetwork(json::<NetworkRequest>(body)?.name),
        ("POST", "/stop") => Request::Stop,
        (m, p) => return Err(ApiError::not_found(format!("no API endpoint {m} {p}"))),
    })
}

fn respond(http: tiny_http::Request, answer: Result<Response, ApiError>) {
    let (status, content_type, body) = match answer {
        Ok(Response::Json(v)) => (
            200,
            "application/json",
            serde_json::to_vec(&v).unwrap_or_default(),
        ),
        Ok(Response::Text(t)) => (200, "text/plain; version=0.0.4", t.into_bytes()),
        Err(e) => (
            e.status,
            "application/json",
            serde_json::to_vec(&ErrorBody { error: e.message }).unwrap_or_default(),
        ),
    };
    let mut response = tiny_http::Response::from_data(body).with_status_code(status);
    if let Ok(h) = tiny_http::Header::from_bytes(&b"Content-Type"[..], content_type.as_bytes()) {
        response.add_header(h);
    }
    if let Err(e) = http.respond(response) {
        tracing::debug!("API client went away before the answer: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_bad_json() {
        assert_eq!(parse("GET", "/status", b""), Ok(Request::Status));
        assert!(matches!(
            parse(
                "POST",
                "/attach",
                br#"{"target":"c1","ips":["10.0.0.1/24"]}"#
            ),
            Ok(Request::Attach(_))
        ));
        let e = parse(
            "POST",
            "/attach",
            br#"{"target":"c1","ips":["10.0.0.300/24"]}"#,
        )
        .unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.message.contains("invalid request JSON"), "{}", e.message);
        assert_eq!(parse("GET", "/nope", b"").unwrap_err().status, 404);
        // A runtime detaches by owner alone (no target).
        match parse("POST", "/detach", br#"{"owner":"cni/n/c1/eth0"}"#) {
            Ok(Request::Detach(d)) => {
                assert_eq!(d.owner.as_deref(), Some("cni/n/c1/eth0"));
                assert!(d.target.is_empty());
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse("POST", "/network/rm", br#"{"name":"blue"}"#),
            Ok(Request::RemoveNetwork("blue".into()))
        );
    }

    struct Echo;
    impl Handler for Echo {
        fn handle(&mut self, request: Request) -> Result<Response, ApiError> {
            match request {
                Request::Attach(a) if a.target == "taken" => {
                    Err(ApiError::conflict("address in use"))
                }
                other => Ok(Response::Json(
                    serde_json::json!({ "got": format!("{other:?}") }),
                )),
            }
        }
    }

    struct Ticker(Arc<std::sync::atomic::AtomicUsize>);
    impl Handler for Ticker {
        fn handle(&mut self, _: Request) -> Result<Response, ApiError> {
            Ok(Response::Json(serde_json::json!({})))
        }
        fn tick(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A server on a fresh socket: (its directory, the socket, the server).
    fn bound(test: &str) -> (PathBuf, PathBuf, ApiServer) {
        let dir = std::env::temp_dir().join(format!("weft-api-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("weft.sock");
        let server = ApiServer::bind(&sock).unwrap();
        (dir, sock, server)
    }

    #[test]
    fn ticks_while_serving_and_stops_when_unblocked() {
        let (dir, sock, server) = bound("tick");
        let unblocker = server.unblocker();
        let ticks = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut handler = Ticker(Arc::clone(&ticks));
        let t = std::thread::spawn(move || server.serve(&mut handler));
        // Requests keep coming: ticks must run anyway.
        let c = crate::api::client::Client::new(&sock);
        let deadline = Instant::now() + 10 * TICK;
        while ticks.load(Ordering::SeqCst) == 0 {
            assert!(Instant::now() < deadline, "no tick within {:?}", 10 * TICK);
            let _: serde_json::Value = c.get("/status").unwrap();
        }
        unblocker.unblock();
        t.join().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn serves_over_a_unix_socket() {
        let (dir, sock, server) = bound("serve");
        let t = std::thread::spawn(move || {
            let mut h = Echo;
            server.serve(&mut h);
        });
        let c = crate::api::client::Client::new(&sock);
        let v: serde_json::Value = c.get("/status").unwrap();
        assert_eq!(v["got"], "Status");
        let req = AttachRequest {
            target: "taken".into(),
            ips: vec![],
            network: None,
            ifname: None,
            mtu: None,
            mac: None,
            owner: None,
            handover: false,
        };
        let err = c.post::<_, serde_json::Value>("/attach", &req).unwrap_err();
        assert_eq!(err.to_string(), "address in use");
        let _: serde_json::Value = c.post("/stop", &serde_json::json!({})).unwrap();
        t.join().unwrap();
        assert!(!sock.exists(), "socket removed when the server goes");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
