//! Just enough HTTP/1.1 to serve Docker's plugin client: one request per connection,
//! bounded before anything is allocated for it.
//!
//! Every answer says `Connection: close`. Docker's client keeps idle connections open
//! with no time limit, and a POST it sends on a connection the server has just closed is
//! not retried, so serving one request per connection is what keeps a call from failing
//! at random; on a unix socket a new connection costs next to nothing.

use std::io::{Read, Write};

/// Largest request head (request line and headers) accepted.
pub const MAX_HEAD: usize = 16 * 1024;
/// Largest request body accepted: libnetwork's requests are a few hundred bytes.
pub const MAX_BODY: usize = 256 * 1024;

/// A request line and the headers that matter here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// `POST`, `GET`, ...
    pub method: String,
    /// The path, without any query.
    pub path: String,
    /// The body's length.
    pub content_length: usize,
}

/// A whole request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Its head.
    pub head: Head,
    /// Its body.
    pub body: Vec<u8>,
}

/// Why a request was refused before it reached the plugin.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The head is longer than [`MAX_HEAD`].
    #[error("request head larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    /// The body is longer than [`MAX_BODY`].
    #[error("request body of {0} bytes is larger than {MAX_BODY}")]
    BodyTooLarge(u64),
    /// Not HTTP/1.x as Docker sends it.
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    /// A chunked (or otherwise encoded) body: Docker sends Content-Length.
    #[error("request bodies must come with Content-Length (no Transfer-Encoding)")]
    LengthRequired,
    /// The client went away or was too slow.
    #[error("reading the request: {0}")]
    Io(#[from] std::io::Error),
}

impl HttpError {
    /// The status code that says so.
    pub fn status(&self) -> u16 {
        match self {
            Self::HeadTooLarge => 431,
            Self::BodyTooLarge(_) => 413,
            Self::LengthRequired => 411,
            Self::Malformed(_) | Self::Io(_) => 400,
        }
    }
}

/// Parses a request head from the start of `buf`: `Ok(None)` while the blank line that
/// ends it has not arrived, else the head and how many bytes of `buf` it took.
pub fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, HttpError> {
    let window = &buf[..buf.len().min(MAX_HEAD)];
    let Some(end) = window.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() >= MAX_HEAD {
            Err(HttpError::HeadTooLarge)
        } else {
            Ok(None)
        };
    };
    let text =
        std::str::from_utf8(&buf[..end]).map_err(|_| HttpError::Malformed("head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpError::Malformed(
            "request line is not METHOD PATH VERSION",
        ));
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(HttpError::Malformed("bad method"));
    }
    if !target.starts_with('/') {
        return Err(HttpError::Malformed("path must start with /"));
    }
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(HttpError::Malformed("not HTTP/1.x"));
    }
    let mut content_length: Option<u64> = None;
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or(HttpError::Malformed("header without a colon"))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let n: u64 = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
                value
                    .parse()
                    .map_err(|_| HttpError::BodyTooLarge(u64::MAX))?
            } else {
                return Err(HttpError::Malformed("bad Content-Length"));
            };
            if content_length.is_some_and(|m| m != n) {
                return Err(HttpError::Malformed("conflicting Content-Length headers"));
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(HttpError::LengthRequired);
        }
    }
    let content_length = content_length.unwrap_or(0);
    if content_length > MAX_BODY as u64 {
        return Err(HttpError::BodyTooLarge(content_length));
    }
    let path = target.split('?').next().unwrap_or_default().to_string();
    Ok(Some((
        Head {
            method: method.to_string(),
            path,
            content_length: content_length as usize,
        },
        end + 4,
    )))
}

/// Reads one request from `stream` (whose read timeout bounds a slow client).
pub fn read_request(stream: &mut impl Read) -> Result<Request, HttpError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let (head, used) = loop {
        if let Some(parsed) = parse_head(&buf)? {
            break parsed;
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(HttpError::Malformed("connection closed inside the head"));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let mut body = buf.split_off(used);
    if body.len() > head.content_length {
        return Err(HttpError::Malformed("more bytes than Content-Length"));
    }
    let missing = head.content_length - body.len();
    body.reserve_exact(missing);
    stream.take(missing as u64).read_to_end(&mut body)?;
    if body.len() != head.content_length {
        return Err(HttpError::Malformed("connection closed inside the body"));
    }
    Ok(Request { head, body })
}

/// Writes a complete answer and says the connection ends with it.
pub fn write_response(
    stream: &mut impl Write,
    status: u16,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        411 => "Length Required",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_requests_parse_whole() {
        let raw = b"POST /NetworkDriver.Join HTTP/1.1\r\nHost: \r\nUser-Agent: Go-http-client/1.1\r\nContent-Length: 2\r\nAccept: application/vnd.docker.plugins.v1.2+json\r\n\r\n{}";
        let req = read_request(&mut &raw[..]).unwrap();
        assert_eq!(req.head.method, "POST");
        assert_eq!(req.head.path, "/NetworkDriver.Join");
        assert_eq!(req.body, b"{}");
        // Arriving a byte at a time makes no difference.
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
                let Some((first, rest)) = self.0.split_first() else {
                    return Ok(0);
                };
                out[0] = *first;
                self.0 = rest;
                Ok(1)
            }
        }
        assert_eq!(read_request(&mut Trickle(raw)).unwrap(), req);
        let no_body =
            read_request(&mut &b"POST /Plugin.Activate?x=1 HTTP/1.1\r\n\r\n"[..]).unwrap();
        assert_eq!(no_body.head.path, "/Plugin.Activate");
        assert!(no_body.body.is_empty());
    }

    #[test]
    fn hostile_requests_are_refused_before_they_are_buffered() {
        let huge = format!(
            "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert!(matches!(
            parse_head(huge.as_bytes()),
            Err(HttpError::BodyTooLarge(_))
        ));
        let overflow = "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n";
        assert!(matches!(
            parse_head(overflow.as_bytes()),
            Err(HttpError::BodyTooLarge(_))
        ));
        let endless = vec![b'a'; MAX_HEAD + 10];
        assert!(matches!(parse_head(&endless), Err(HttpError::HeadTooLarge)));
        // An endless header from a reader: refused once MAX_HEAD bytes are in.
        let mut stream = std::io::repeat(b'x');
        assert!(matches!(
            read_request(&mut stream),
            Err(HttpError::HeadTooLarge)
        ));
        for bad in [
            "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST /x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "POST /x HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            "POST x HTTP/1.1\r\n\r\n",
            "POST /x HTTP/2\r\n\r\n",
            "POST /x HTTP/1.1 extra\r\n\r\n",
            "post /x HTTP/1.1\r\n\r\n",
            "POST /x HTTP/1.1\r\nNoColon\r\n\r\n",
        ] {
            assert!(parse_head(bad.as_bytes()).is_err(), "{bad:?}");
        }
        let short = b"POST /x HTTP/1.1\r\nContent-Length: 10\r\n\r\n{}";
        assert!(
            read_request(&mut &short[..]).is_err(),
            "a truncated body is an error"
        );
        let long = b"POST /x HTTP/1.1\r\nContent-Length: 1\r\n\r\n{}";
        assert!(
            read_request(&mut &long[..]).is_err(),
            "pipelining is not spoken"
        );
        assert_eq!(parse_head(b"POST /x HTTP/1.1\r\n").unwrap(), None);
    }

    #[test]
    fn answers_close_the_connection() {
        let mut out = Vec::new();
        write_response(&mut out, 200, "application/json", b"{}").unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("Connection: close\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n{}"), "{text}");
    }
}
