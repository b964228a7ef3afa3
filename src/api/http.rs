//! A bounded HTTP/1.1 request parser for the local API, with no I/O of its own.
//!
//! Contract: [`parse`] looks at the bytes a connection has delivered so far and says
//! whether they hold a whole request, need more, or can never be one. It never allocates
//! more than the request it returns (the body is copied once, and only when all of it has
//! arrived), and it refuses, before any of it has arrived, a head longer than
//! [`Limits::max_head`] or a `Content-Length` above [`Limits::max_body`]: a client that
//! announces 100 GB costs nothing. Every refusal is an [`HttpError`] with the status to
//! answer. The caller owns the socket, the buffer and the clock (the deadlines).
//!
//! What it accepts: `METHOD SP /path[?query] SP HTTP/1.0|1.1`, header lines ending in CRLF
//! (a bare LF is tolerated), `Content-Length` (one value), `Expect: 100-continue`. It
//! refuses `Transfer-Encoding` (411: the API's clients know their body's length) and
//! anything malformed (400). One request per connection: the server answers with
//! `Connection: close`, so pipelining and keep-alive need no state here.

/// How much a request may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The request line and headers, with their line ends.
    pub max_head: usize,
    /// The body (`Content-Length`).
    pub max_body: usize,
    /// Header lines.
    pub max_headers: usize,
}

impl Limits {
    /// The API's limits: its requests are small JSON documents.
    pub const API: Self = Self {
        max_head: 16 * 1024,
        max_body: 256 * 1024,
        max_headers: 64,
    };
}

/// A complete request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// The method, as sent (`GET`, `POST`; case-sensitive, as HTTP says).
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The body (`Content-Length` bytes).
    pub body: Vec<u8>,
}

/// What the bytes so far amount to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// Not a whole request yet. `expect_continue`: the head is complete and asks for
    /// `100 Continue` before it sends the body.
    Partial {
        /// The client waits for `100 Continue`.
        expect_continue: bool,
    },
    /// A whole request.
    Complete(HttpRequest),
}

/// Why the bytes cannot become a request; each has the status to answer with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// Malformed request line, header or length.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// The head is longer than the limit.
    #[error("request headers longer than {0} bytes")]
    HeadTooLarge(usize),
    /// More header lines than the limit.
    #[error("more than {0} request headers")]
    TooManyHeaders(usize),
    /// The announced body is longer than the limit.
    #[error("request body of {len} bytes is longer than the {max}-byte limit")]
    BodyTooLarge {
        /// The announced length (saturated at `u64::MAX`).
        len: u64,
        /// The limit.
        max: usize,
    },
    /// A body without `Content-Length` (e.g. chunked).
    #[error("send the body with a Content-Length (Transfer-Encoding is not supported)")]
    LengthRequired,
    /// Not HTTP/1.0 or 1.1.
    #[error("only HTTP/1.1 and HTTP/1.0 are supported")]
    VersionNotSupported,
}

impl HttpError {
    /// The HTTP status that says so.
    pub fn status(&self) -> u16 {
        match self {
            Self::BadRequest(_) => 400,
            Self::HeadTooLarge(_) | Self::TooManyHeaders(_) => 431,
            Self::BodyTooLarge { .. } => 413,
            Self::LengthRequired => 411,
            Self::VersionNotSupported => 505,
        }
    }
}

/// Longest method name accepted.
const MAX_METHOD: usize = 16;

/// Parses the bytes a connection has delivered so far (see the module docs).
pub fn parse(buf: &[u8], limits: &Limits) -> Result<Parsed, HttpError> {
    let Some(head_len) = head_end(buf, limits.max_head)? else {
        return Ok(Parsed::Partial {
            expect_continue: false,
        });
    };
    let head = buf.get(..head_len).unwrap_or_default();
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let (method, path) = request_line(lines.next().unwrap_or_default())?;
    let mut content_length: Option<u64> = None;
    let mut expect_continue = false;
    let mut count = 0;
    for line in lines.filter(|l| !l.is_empty()) {
        count += 1;
        if count > limits.max_headers {
            return Err(HttpError::TooManyHeaders(limits.max_headers));
        }
        let (name, value) = header(line)?;
        if name.eq_ignore_ascii_case(b"content-length") {
            let len = content_length_value(value)?;
            if content_length.is_some_and(|l| l != len) {
                return Err(HttpError::BadRequest("conflicting Content-Length headers"));
            }
            content_length = Some(len);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            return Err(HttpError::LengthRequired);
        } else if name.eq_ignore_ascii_case(b"expect") {
            if value.eq_ignore_ascii_case(b"100-continue") {
                expect_continue = true;
            } else {
                return Err(HttpError::BadRequest("unsupported Expect header"));
            }
        }
    }
    let len = content_length.unwrap_or(0);
    let body_len = usize::try_from(len)
        .ok()
        .filter(|&l| l <= limits.max_body)
        .ok_or(HttpError::BodyTooLarge {
            len,
            max: limits.max_body,
        })?;
    let rest = buf.get(head_len..).unwrap_or_default();
    match rest.get(..body_len) {
        Some(body) => Ok(Parsed::Complete(HttpRequest {
            method,
            path,
            body: body.to_vec(),
        })),
        None => Ok(Parsed::Partial {
            expect_continue: expect_continue && rest.is_empty(),
        }),
    }
}

/// The length of the head (through its empty line), if it has all arrived; an error once
/// it is longer than `max` without ending.
fn head_end(buf: &[u8], max: usize) -> Result<Option<usize>, HttpError> {
    let window = buf.get(..max.min(buf.len())).unwrap_or_default();
    let mut start = 0;
    for (i, &b) in window.iter().enumerate() {
        if b != b'\n' {
            continue;
        }
        let line = window.get(start..i).unwrap_or_default();
        if line.is_empty() || line == b"\r" {
            if start == 0 {
                return Err(HttpError::BadRequest("empty request line"));
            }
            return Ok(Some(i + 1));
        }
        start = i + 1;
    }
    if buf.len() >= max {
        return Err(HttpError::HeadTooLarge(max));
    }
    Ok(None)
}

fn request_line(line: &[u8]) -> Result<(String, String), HttpError> {
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpError::BadRequest("malformed request line"));
    };
    if method.is_empty() || method.len() > MAX_METHOD || !method.iter().all(|&b| is_tchar(b)) {
        return Err(HttpError::BadRequest("malformed method"));
    }
    if target.first() != Some(&b'/') || !target.iter().all(|&b| b.is_ascii_graphic()) {
        return Err(HttpError::BadRequest("the target must be a path"));
    }
    match version {
        b"HTTP/1.1" | b"HTTP/1.0" => {}
        v if v.starts_with(b"HTTP/") => return Err(HttpError::VersionNotSupported),
        _ => return Err(HttpError::BadRequest("malformed HTTP version")),
    }
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    // Both are ASCII by the checks above.
    Ok((
        String::from_utf8_lossy(method).into_owned(),
        String::from_utf8_lossy(path).into_owned(),
    ))
}

fn header(line: &[u8]) -> Result<(&[u8], &[u8]), HttpError> {
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or(HttpError::BadRequest("header line without a colon"))?;
    let (name, value) = (
        line.get(..colon).unwrap_or_default(),
        line.get(colon + 1..).unwrap_or_default(),
    );
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        // Includes whitespace before the colon, which RFC 9112 says to refuse.
        return Err(HttpError::BadRequest("malformed header name"));
    }
    if value
        .iter()
        .any(|&b| b == 0 || b == b'\r' || (b < 0x20 && b != b'\t') || b == 0x7f)
    {
        return Err(HttpError::BadRequest("control character in a header value"));
    }
    Ok((name, value.trim_ascii()))
}

fn content_length_value(value: &[u8]) -> Result<u64, HttpError> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return Err(HttpError::BadRequest("Content-Length is not a number"));
    }
    // Saturate: any length past u64 is "too large", and says so.
    Ok(value.iter().fold(0u64, |n, &d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

/// RFC 9110 token characters.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The reason phrase of the statuses the API answers with.
pub(crate) fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ if status >= 500 => "Internal Server Error",
        _ => "Error",
    }
}

/// A whole response: status line, `Content-Type`, `Content-Length`, `Connection: close`,
/// body.
pub(crate) fn response(status: u16, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reason(status),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// The interim answer to `Expect: 100-continue`.
pub(crate) const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(buf: &[u8]) -> HttpRequest {
        match parse(buf, &Limits::API) {
            Ok(Parsed::Complete(r)) => r,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
        }
    }

    fn partial(buf: &[u8]) -> bool {
        match parse(buf, &Limits::API) {
            Ok(Parsed::Partial { expect_continue }) => expect_continue,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
        }
    }

    fn error(buf: &[u8]) -> u16 {
        match parse(buf, &Limits::API) {
            Err(e) => e.status(),
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
        }
    }

    #[test]
    fn whole_requests_with_and_without_a_body() {
        let r = complete(b"GET /status?x=1 HTTP/1.1\r\nHost: weft\r\n\r\n");
        assert_eq!((r.method.as_str(), r.path.as_str()), ("GET", "/status"));
        assert!(r.body.is_empty());
        let r = complete(b"POST /attach HTTP/1.0\r\ncontent-length: 2\r\n\r\n{}trailing");
        assert_eq!(r.body, b"{}");
        // A bare LF ends lines too.
        let r = complete(b"GET /ping HTTP/1.1\nHost: x\n\n");
        assert_eq!(r.path, "/ping");
    }

    #[test]
    fn a_request_arriving_byte_by_byte_is_partial_until_its_last_byte() {
        let req = b"POST /connect HTTP/1.1\r\nContent-Length: 13\r\n\r\n{\"peers\":[]}\n";
        for n in 0..req.len() {
            assert!(!partial(&req[..n]), "{n}");
        }
        assert_eq!(complete(req).body.len(), 13);
    }

    #[test]
    fn a_huge_content_length_is_refused_before_the_body_arrives() {
        // The issue's reproducer: 100 GB announced, 2 bytes sent.
        let req = b"POST /attach HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n{}";
        assert_eq!(error(req), 413);
        assert_eq!(
            error(b"POST /a HTTP/1.1\r\nContent-Length: 99999999999999999999999999\r\n\r\n"),
            413
        );
        let at_limit = format!(
            "POST /a HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            Limits::API.max_body
        );
        assert!(!partial(at_limit.as_bytes()));
    }

    #[test]
    fn a_head_that_never_ends_is_refused_at_the_limit() {
        let mut req = b"GET /status HTTP/1.1\r\n".to_vec();
        while req.len() < Limits::API.max_head - 20 {
            req.extend_from_slice(b"X-Pad: aaaaaaaaaaaaaaaa\r\n");
        }
        assert!(!partial(&req));
        req.resize(Limits::API.max_head, b'a');
        assert_eq!(error(&req), 431);
        let many: String = (0..=Limits::API.max_headers)
            .map(|i| format!("X-{i}: y\r\n"))
            .collect();
        assert_eq!(
            error(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes()),
            431
        );
    }

    #[test]
    fn malformed_requests_get_the_status_that_says_why() {
        for (req, status) in [
            (&b"\r\n"[..], 400),
            (b"GET /x\r\n\r\n", 400),
            (b"GET x HTTP/1.1\r\n\r\n", 400),
            (b"GET /a b HTTP/1.1\r\n\r\n", 400),
            (b"G\x01T / HTTP/1.1\r\n\r\n", 400),
            (b"GET / HTTP/2.0\r\n\r\n", 505),
            (b"GET / FTP/1.1\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nNoColon\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nContent-Length : 1\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
            (
                b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                400,
            ),
            (b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n", 400),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                411,
            ),
            (b"POST / HTTP/1.1\r\nExpect: magic\r\n\r\n", 400),
        ] {
            assert_eq!(error(req), status, "{:?}", String::from_utf8_lossy(req));
        }
        // The same Content-Length twice is one length.
        let r = complete(b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx");
        assert_eq!(r.body, b"x");
    }

    #[test]
    fn expect_continue_is_reported_while_the_body_has_not_started() {
        let head = b"POST /attach HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n";
        assert!(partial(head));
        let mut started = head.to_vec();
        started.push(b'{');
        assert!(!partial(&started));
        started.push(b'}');
        assert_eq!(complete(&started).body, b"{}");
    }

    #[test]
    fn responses_say_close_and_their_length() {
        let r = response(413, "application/json", b"{}");
        assert_eq!(
            r,
            b"HTTP/1.1 413 Content Too Large\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
        );
    }
}
