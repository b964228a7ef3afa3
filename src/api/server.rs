//! The router's side of the local API: typed requests in, JSON answers out, one at a
//! time.
//!
//! The sockets are the [`super::listener`] thread's: it accepts, reads and parses
//! connections concurrently and bounded, and hands complete requests here. The router
//! handles them sequentially on its own thread, so control operations (attach, expose,
//! connect) never race each other, and none of them is on the per-frame path.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use serde::de::DeserializeOwned;

use super::http::{self, HttpRequest};
use super::listener::{ConnLimits, IoHandle, Listeners, ToHandler};
use super::{
    ApiError, AttachRequest, DetachRequest, ErrorBody, ExposeRequest, HideRequest, NetworkRequest,
    PeersRequest,
};

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
pub(crate) enum Response {
    /// `application/json`.
    Json(serde_json::Value),
    /// `text/plain` (metrics).
    Text(String),
}

impl Request {
    /// Whether it only reads: the only requests the metrics address serves.
    pub fn is_read_only(&self) -> bool {
        matches!(self, Self::Ping | Self::Status | Self::Metrics)
    }
}

/// What serves the requests: the router.
pub(crate) trait Handler {
    /// Handles one request.
    fn handle(&mut self, request: Request) -> Result<Response, ApiError>;

    /// Runs about every [`TICK`] between requests, for work the router owes nobody an
    /// answer for (e.g. dialling saved peers whose names resolved late).
    fn tick(&mut self) {}
}

/// How often [`Handler::tick`] runs while no request comes.
pub(crate) const TICK: Duration = Duration::from_secs(1);

/// The listening API socket (and the metrics address, when enabled).
#[derive(Debug)]
pub(crate) struct ApiServer {
    incoming: Receiver<ToHandler>,
    unblock: Sender<ToHandler>,
    io: IoHandle,
    path: PathBuf,
    metrics_addr: Option<SocketAddr>,
}

/// Wakes a blocked [`ApiServer::serve`] from another thread (signal handling).
#[derive(Debug, Clone)]
pub(crate) struct Unblocker(Sender<ToHandler>);

impl Unblocker {
    /// Makes `serve` return.
    pub(crate) fn unblock(&self) {
        let _ = self.0.send(ToHandler::Unblock);
    }
}

impl ApiServer {
    /// Listens on `path`, replacing a stale socket file, and on `metrics` (TCP, read-only
    /// requests only) when given. The caller must hold the home's pidfile lock, which is
    /// what proves no other router still uses that socket.
    pub(crate) fn bind(path: &Path, metrics: Option<SocketAddr>) -> anyhow::Result<Self> {
        Self::bind_with(path, metrics, ConnLimits::default())
    }

    /// [`bind`](Self::bind) with chosen connection limits.
    pub(crate) fn bind_with(
        path: &Path,
        metrics: Option<SocketAddr>,
        limits: ConnLimits,
    ) -> anyhow::Result<Self> {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot remove stale API socket {}", path.display()));
            }
        }
        let unix = mio::net::UnixListener::bind(path)
            .with_context(|| format!("cannot listen on API socket {}", path.display()))?;
        crate::secrets::restrict(path)
            .with_context(|| format!("cannot restrict API socket {}", path.display()))?;
        let tcp = metrics
            .map(|addr| {
                mio::net::TcpListener::bind(addr).with_context(|| {
                    format!("cannot serve metrics on TCP {addr} (is it in use? --metrics-addr '' turns it off)")
                })
            })
            .transpose()?;
        let metrics_addr = tcp.as_ref().and_then(|l| l.local_addr().ok());
        let (tx, rx) = crossbeam_channel::unbounded();
        let io = IoHandle::start(Listeners { unix, tcp }, tx.clone(), limits)?;
        Ok(Self {
            incoming: rx,
            unblock: tx,
            io,
            path: path.to_path_buf(),
            metrics_addr,
        })
    }

    /// Where the metrics address listens (the real port when bound with port 0).
    pub(crate) fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// A handle that makes `serve` return.
    pub(crate) fn unblocker(&self) -> Unblocker {
        Unblocker(self.unblock.clone())
    }

    /// Serves requests until a `Stop` request has been answered or the server is unblocked,
    /// and ticks the handler every [`TICK`], busy or not.
    pub(crate) fn serve(&self, handler: &mut dyn Handler) {
        let mut next_tick = Instant::now() + TICK;
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            match self.incoming.recv_timeout(wait) {
                Ok(ToHandler::Request {
                    conn,
                    read_only,
                    request,
                }) => {
                    let request = route(&request, read_only);
                    let stop = matches!(request, Ok(Request::Stop));
                    let answer = request.and_then(|r| handler.handle(r));
                    self.io.respond(conn, encode(answer));
                    if stop {
                        break;
                    }
                }
                Ok(ToHandler::Unblock) | Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {}
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
        // Answers already given (the one to `stop`) are written before the socket goes.
        self.io.shutdown();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The typed request, or why not; a read-only connection gets only read-only requests.
fn route(request: &HttpRequest, read_only: bool) -> Result<Request, ApiError> {
    let routed = parse(&request.method, &request.path, &request.body)?;
    if read_only && !routed.is_read_only() {
        return Err(ApiError {
            status: 403,
            message: format!(
                "{} {} is not served on the metrics address: only GET /metrics, /status and /ping",
                request.method, request.path
            ),
        });
    }
    Ok(routed)
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

/// The HTTP response for an answer.
fn encode(answer: Result<Response, ApiError>) -> Vec<u8> {
    match answer {
        Ok(Response::Json(v)) => http::response(
            200,
            "application/json",
            &serde_json::to_vec(&v).unwrap_or_default(),
        ),
        Ok(Response::Text(t)) => http::response(200, "text/plain; version=0.0.4", t.as_bytes()),
        Err(e) => http::response(
            e.status,
            "application/json",
            &serde_json::to_vec(&ErrorBody { error: e.message }).unwrap_or_default(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

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
        bound_with(test, None, ConnLimits::default())
    }

    fn bound_with(
        test: &str,
        metrics: Option<SocketAddr>,
        limits: ConnLimits,
    ) -> (PathBuf, PathBuf, ApiServer) {
        let dir = std::env::temp_dir().join(format!("weft-api-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("weft.sock");
        let server = ApiServer::bind_with(&sock, metrics, limits).unwrap();
        (dir, sock, server)
    }

    /// Serves `Echo` on a thread until `/stop`.
    fn echo(server: ApiServer) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || server.serve(&mut Echo))
    }

    /// Writes `bytes` on a fresh connection and reads the answer until the server closes.
    fn raw(sock: &Path, bytes: &[u8]) -> String {
        use std::io::{Read as _, Write as _};
        let mut s = std::os::unix::net::UnixStream::connect(sock).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(bytes).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    fn stop(sock: &Path, server: std::thread::JoinHandle<()>) {
        let _: serde_json::Value = crate::api::client::Client::new(sock)
            .post("/stop", &serde_json::json!({}))
            .unwrap();
        server.join().unwrap();
    }

    #[test]
    fn a_huge_content_length_is_refused_and_the_next_request_served() {
        // The reproducer of issue 13: 100 GB announced, 2 bytes sent. tiny_http tried to
        // allocate it and aborted the router.
        let (dir, sock, server) = bound("huge");
        let t = echo(server);
        let answer = raw(
            &sock,
            b"POST /attach HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n{}",
        );
        assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
        assert!(answer.contains("longer than"), "{answer}");
        let answer = raw(&sock, b"GARBAGE\r\n\r\n");
        assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
        let v: serde_json::Value = crate::api::client::Client::new(&sock)
            .get("/status")
            .unwrap();
        assert_eq!(v["got"], "Status");
        stop(&sock, t);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_slow_client_blocks_no_one_and_times_out() {
        use std::io::{Read as _, Write as _};
        let limits = ConnLimits {
            request_timeout: Duration::from_millis(300),
            ..ConnLimits::default()
        };
        let (dir, sock, server) = bound_with("slow", None, limits);
        let t = echo(server);
        // Half a request, then nothing.
        let mut slow = std::os::unix::net::UnixStream::connect(&sock).unwrap();
        slow.write_all(b"POST /attach HTTP/1.1\r\nContent-Length: 10\r\n\r\n{")
            .unwrap();
        // Others are served meanwhile.
        let start = Instant::now();
        let v: serde_json::Value = crate::api::client::Client::new(&sock)
            .get("/status")
            .unwrap();
        assert_eq!(v["got"], "Status");
        assert!(
            start.elapsed() < Duration::from_millis(300),
            "waited for the slow client"
        );
        // The slow one is told, then closed.
        slow.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut answer = String::new();
        let _ = slow.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
        stop(&sock, t);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn past_the_connection_limit_new_clients_get_503_and_old_ones_carry_on() {
        let limits = ConnLimits {
            max_connections: 4,
            ..ConnLimits::default()
        };
        let (dir, sock, server) = bound_with("limit", None, limits);
        let t = echo(server);
        let idle: Vec<_> = (0..4)
            .map(|_| std::os::unix::net::UnixStream::connect(&sock).unwrap())
            .collect();
        // The server accepts them in its own time: wait until the fifth is refused.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let answer = raw(&sock, b"GET /status HTTP/1.1\r\n\r\n");
            if answer.starts_with("HTTP/1.1 503 ") {
                assert!(answer.contains("too many connections"), "{answer}");
                break;
            }
            assert!(Instant::now() < deadline, "never refused: {answer}");
        }
        drop(idle);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let answer = raw(&sock, b"GET /status HTTP/1.1\r\n\r\n");
            if answer.starts_with("HTTP/1.1 200 ") {
                break;
            }
            assert!(Instant::now() < deadline, "still refused: {answer}");
        }
        stop(&sock, t);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_metrics_address_serves_only_reads() {
        use std::io::{Read as _, Write as _};
        let (dir, sock, server) = bound_with(
            "metrics",
            Some("127.0.0.1:0".parse().unwrap()),
            ConnLimits::default(),
        );
        let addr = server.metrics_addr().unwrap();
        let t = echo(server);
        let get = |req: &[u8]| {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.write_all(req).unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        };
        let answer = get(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(
            answer.starts_with("HTTP/1.1 200 ") && answer.contains("Metrics"),
            "{answer}"
        );
        assert!(get(b"GET /status HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 200 "));
        for refused in [
            &b"POST /stop HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}"[..],
            b"POST /attach HTTP/1.1\r\nContent-Length: 14\r\n\r\n{\"target\":\"x\"}",
            b"GET /ps HTTP/1.1\r\n\r\n",
        ] {
            let answer = get(refused);
            assert!(answer.starts_with("HTTP/1.1 403 "), "{answer}");
        }
        // The router was not stopped over TCP: the socket still answers.
        stop(&sock, t);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn expect_continue_gets_continue_then_the_answer() {
        use std::io::{Read as _, Write as _};
        let (dir, sock, server) = bound("continue");
        let t = echo(server);
        let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(
            b"POST /connect HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 12\r\n\r\n",
        )
        .unwrap();
        let mut interim = [0u8; 25];
        s.read_exact(&mut interim).unwrap();
        assert_eq!(&interim, http::CONTINUE);
        s.write_all(b"{\"peers\":[]}").unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
        stop(&sock, t);
        std::fs::remove_dir_all(&dir).unwrap();
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
