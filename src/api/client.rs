//! A minimal HTTP/1.1 client over the router's unix socket, for the CLI.
//!
//! Each call opens a connection, sends one request with `Connection: close`, and reads
//! the answer to the end: the API is local and low-rate, so simplicity beats pooling.

use std::io::Read as _;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::ErrorBody;

/// Why a call to the router failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens on the socket: the router is not running on this home.
    #[error("weft is not running (no router answers on {0}); start it with `weft launch`")]
    NotRunning(PathBuf),
    /// The router answered with an error.
    #[error("{0}")]
    Refused(String),
    /// The connection broke or the answer was not HTTP/JSON.
    #[error("talking to the weft router on {path}: {message}")]
    Protocol {
        /// The socket.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// A client of one router's API.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
    timeout: Duration,
}

impl Client {
    /// A client for the API socket at `socket`.
    pub fn new(socket: &Path) -> Self {
        Self {
            socket: socket.to_path_buf(),
            timeout: Duration::from_secs(60),
        }
    }

    /// Whether a router answers at all (used by `launch` to wait for readiness).
    pub fn ping(&self) -> bool {
        self.request("GET", "/ping", None).is_ok()
    }

    /// `GET path`, decoding the JSON answer.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let body = self.request("GET", path, None)?;
        self.decode(&body)
    }

    /// `GET path`, returning the body as text (e.g. `/metrics`).
    pub fn get_text(&self, path: &str) -> Result<String, ClientError> {
        let body = self.request("GET", path, None)?;
        String::from_utf8(body).map_err(|e| self.protocol(e.to_string()))
    }

    /// `POST path` with a JSON body, decoding the JSON answer.
    pub fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let bytes = serde_json::to_vec(body).map_err(|e| self.protocol(e.to_string()))?;
        let answer = self.request("POST", path, Some(&bytes))?;
        self.decode(&answer)
    }

    fn decode<T: DeserializeOwned>(&self, body: &[u8]) -> Result<T, ClientError> {
        serde_json::from_slice(body).map_err(|e| self.protocol(format!("bad answer: {e}")))
    }

    fn protocol(&self, message: String) -> ClientError {
        ClientError::Protocol {
            path: self.socket.clone(),
            message,
        }
    }

    fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<Vec<u8>, ClientError> {
        let (status, payload) = self.exchange(method, path, body)?;
        if (200..300).contains(&status) {
            return Ok(payload);
        }
        let message = serde_json::from_slice::<ErrorBody>(&payload)
            .map(|e| e.error)
            .unwrap_or_else(|_| format!("HTTP {status}: {}", String::from_utf8_lossy(&payload)));
        Err(ClientError::Refused(message))
    }

    /// Sends one request and returns the answer's status and body as they are, for
    /// callers of servers whose errors are not weft's `{"error"}` (Docker's API).
    pub fn exchange(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<(u16, Vec<u8>), ClientError> {
        let mut stream = match UnixStream::connect(&self.socket) {
            Ok(s) => s,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                return Err(ClientError::NotRunning(self.socket.clone()));
            }
            Err(e) => return Err(self.protocol(e.to_string())),
        };
        let io = |e: std::io::Error| self.protocol(e.to_string());
        stream.set_read_timeout(Some(self.timeout)).map_err(io)?;
        stream.set_write_timeout(Some(self.timeout)).map_err(io)?;
        let body = body.unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: weft\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        // A router that refuses the request (too large, say) answers and closes before
        // it has all: its answer says more than the failed write.
        let sent = send_all(&stream, head.as_bytes()).and_then(|()| send_all(&stream, body));
        let mut answer = Vec::new();
        let read = stream.read_to_end(&mut answer);
        if answer.is_empty() {
            sent.map_err(io)?;
            read.map_err(io)?;
        }
        split_response(&answer).ok_or_else(|| self.protocol("malformed HTTP answer".into()))
    }

    /// The same client with another time limit per call.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// Writes all of `bytes` with MSG_NOSIGNAL: the CLI lets SIGPIPE end it quietly when its
/// stdout reader goes away, and a router that closes the API connection early (a refused
/// request) must give an error message, not that silent end.
fn send_all(stream: &UnixStream, mut bytes: &[u8]) -> std::io::Result<()> {
    let socket = socket2::SockRef::from(stream);
    while !bytes.is_empty() {
        match socket.send_with_flags(bytes, libc::MSG_NOSIGNAL) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = bytes.get(n..).unwrap_or_default(),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Splits an HTTP/1.x response into its status code and body (chunked bodies decoded).
fn split_response(answer: &[u8]) -> Option<(u16, Vec<u8>)> {
    let end = answer.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(answer.get(..end)?).ok()?;
    let body = answer.get(end + 4..)?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if !chunked {
        return Some((status, body.to_vec()));
    }
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let nl = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_str = std::str::from_utf8(rest.get(..nl)?).ok()?;
        let size = usize::from_str_radix(size_str.split(';').next()?.trim(), 16).ok()?;
        rest = rest.get(nl + 2..)?;
        if size == 0 {
            return Some((status, out));
        }
        out.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked() {
        let plain = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(split_response(plain), Some((200, b"{}".to_vec())));
        let chunked = b"HTTP/1.1 409 Conflict\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(split_response(chunked), Some((409, b"abcde".to_vec())));
        assert_eq!(split_response(b"garbage"), None);
        assert_eq!(
            split_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
            None
        );
    }

    #[test]
    fn missing_socket_means_not_running() {
        let c = Client::new(Path::new("/nonexistent/weft.sock"));
        assert!(matches!(
            c.get::<serde_json::Value>("/status"),
            Err(ClientError::NotRunning(_))
        ));
        assert!(!c.ping());
    }
}
