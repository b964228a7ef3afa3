//! The byte layout of control frames and messages: hand-written, versioned, bounded.
//!
//! Contract:
//! - A frame is a u32 BE body length followed by the body; the body is a u8 tag and the
//!   tag's payload. [`FrameDecoder`] reassembles frames from arbitrary stream chunks and
//!   refuses a frame longer than its configured maximum as soon as the length is read,
//!   before buffering it; it never reserves memory for a *claimed* length.
//! - [`Message::decode`] never panics and never allocates more than the input can hold:
//!   every count is checked against the bytes remaining (times the smallest encoding of one
//!   element) before anything is allocated. Trailing bytes are an error.
//! - `decode(encode(m)) == m` for every message whose fields are in range (nickname
//!   ≤ 64 bytes, VNI ≤ 24 bits, ≤ 65535 IPs per endpoint).
//!
//! Integers are big-endian. Strings are a u8 length plus UTF-8. Addresses are a family byte
//! (4 or 6), the address bytes and (for socket addresses) a u16 port. Booleans are 0 or 1.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::peer::{Nickname, PeerName};
use crate::protocol::{
    ConnectionRecord, Endpoint, EndpointDigest, EndpointRecord, Hello, MAX_VNI, Message,
    PeerDigest, PeerRecord, tag,
};

/// The default largest frame body accepted (4 MiB).
pub const DEFAULT_MAX_FRAME_LEN: usize = 4 * 1024 * 1024;
/// Bytes of the frame length prefix.
pub const FRAME_HEADER_LEN: usize = 4;

const PEER_RECORD_MIN_LEN: usize = 6 + 1 + 8 + 8 + 4;
const CONNECTION_RECORD_MIN_LEN: usize = 6 + 1 + 4 + 2 + 1;
const ENDPOINT_RECORD_MIN_LEN: usize = 6 + 8 + 8 + 4;
const ENDPOINT_MIN_LEN: usize = 4 + 6 + 2;
const IP_MIN_LEN: usize = 1 + 4;
const PEER_DIGEST_LEN: usize = 6 + 8 + 8;
const ENDPOINT_DIGEST_LEN: usize = 6 + 8 + 8;

/// Why a frame body is not a valid message. All but [`DecodeError::UnknownTag`] mean the
/// peer is broken or hostile and the connection should be dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A zero-length frame has no tag.
    #[error("empty frame: every frame must start with a message tag")]
    Empty,
    /// A message type this build does not know (a newer peer); count it and skip it.
    #[error("unknown message tag {0} (sent by a newer weft?); ignored")]
    UnknownTag(u8),
    /// The body ended inside a field.
    #[error("malformed message: it ends inside {field}")]
    Truncated {
        /// The field being read.
        field: &'static str,
    },
    /// Bytes left over after a complete message.
    #[error("malformed {kind} message: {count} unexpected trailing bytes")]
    TrailingBytes {
        /// Message kind.
        kind: &'static str,
        /// Left-over bytes.
        count: usize,
    },
    /// A count claims more elements than the remaining bytes could hold.
    #[error("malformed message: {field} claims {count} entries but only {remaining} bytes remain")]
    CountTooLarge {
        /// The counted field.
        field: &'static str,
        /// The claimed count.
        count: u64,
        /// Bytes left in the body.
        remaining: usize,
    },
    /// A nickname over [`Nickname::MAX_LEN`] bytes.
    #[error("malformed message: nickname of {len} bytes exceeds {max}", max = Nickname::MAX_LEN)]
    NicknameTooLong {
        /// Claimed length.
        len: usize,
    },
    /// A string that is not UTF-8.
    #[error("malformed message: {field} is not valid UTF-8")]
    InvalidUtf8 {
        /// The field.
        field: &'static str,
    },
    /// An address family byte other than 4 or 6.
    #[error("malformed message: address family {0} (expected 4 or 6)")]
    BadAddressFamily(u8),
    /// A boolean byte other than 0 or 1.
    #[error("malformed message: {field} is {value}, expected 0 or 1")]
    BadBool {
        /// The field.
        field: &'static str,
        /// The byte seen.
        value: u8,
    },
    /// A VNI that does not fit 24 bits.
    #[error("malformed message: VNI {0} does not fit in 24 bits")]
    VniOutOfRange(u32),
}

impl DecodeError {
    /// Whether the connection must be dropped (everything except an unknown tag).
    pub fn is_fatal(&self) -> bool {
        !matches!(self, Self::UnknownTag(_))
    }
}

/// Why the frame stream itself is broken; the connection must be dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A frame longer than the configured maximum.
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    TooLong {
        /// Claimed body length.
        len: u64,
        /// Configured maximum.
        max: usize,
    },
}

/// Reassembles length-prefixed frames from a byte stream.
///
/// Invariant: `buf[start..]` holds unconsumed stream bytes; at most one oversize length
/// prefix is ever looked at, after which the decoder stays failed.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    start: usize,
    max_frame_len: usize,
    failed: Option<FrameError>,
}

impl FrameDecoder {
    /// A decoder refusing frame bodies longer than `max_frame_len` bytes.
    pub fn new(max_frame_len: usize) -> Self {
        Self {
            buf: Vec::new(),
            start: 0,
            max_frame_len,
            failed: None,
        }
    }

    /// Appends stream bytes as they arrive (any chunking).
    pub fn push(&mut self, data: &[u8]) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// The next whole frame body, `None` if more bytes are needed, or an error (sticky)
    /// if the stream announced an oversize frame.
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, FrameError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        let pending = self.buf.get(self.start..).unwrap_or_default();
        let Some(&[a, b, c, d]) = pending.get(..FRAME_HEADER_LEN) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([a, b, c, d]);
        let body_len = usize::try_from(len).unwrap_or(usize::MAX);
        if body_len > self.max_frame_len {
            let err = FrameError::TooLong {
                len: u64::from(len),
                max: self.max_frame_len,
            };
            self.failed = Some(err.clone());
            return Err(err);
        }
        let body_start = self.start + FRAME_HEADER_LEN;
        let body_end = body_start + body_len;
        if self.buf.len() < body_end {
            return Ok(None);
        }
        self.start = body_end;
        Ok(self.buf.get(body_start..body_end))
    }

    /// Unconsumed bytes held (for status and tests).
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }
}

/// Appends `message` as one complete frame (length prefix + body).
pub fn encode_frame(message: &Message, out: &mut Vec<u8>) {
    let at = begin_frame(out);
    message.encode(out);
    end_frame(out, at);
}

/// Starts a frame: reserves the length prefix and returns its position.
pub(crate) fn begin_frame(out: &mut Vec<u8>) -> usize {
    let at = out.len();
    out.extend_from_slice(&[0; FRAME_HEADER_LEN]);
    at
}

/// Finishes the frame started at `at` by writing its body length.
pub(crate) fn end_frame(out: &mut [u8], at: usize) {
    let body = out.len().saturating_sub(at + FRAME_HEADER_LEN);
    let len = u32::try_from(body).unwrap_or(u32::MAX).to_be_bytes();
    if let Some(prefix) = out.get_mut(at..at + FRAME_HEADER_LEN) {
        prefix.copy_from_slice(&len);
    }
}

/// Appends frames carrying `records` under `message_tag`, starting a new frame whenever
/// the current one would pass `soft_limit` body bytes (a single oversized record still
/// gets a frame of its own). Returns the number of frames written.
pub(crate) fn encode_record_frames<T>(
    out: &mut Vec<u8>,
    message_tag: u8,
    records: &[&T],
    soft_limit: usize,
    encoded_len: impl Fn(&T) -> usize,
    put: impl Fn(&T, &mut Vec<u8>),
) -> usize {
    let mut frames = 0;
    let mut rest = records;
    while !rest.is_empty() {
        let at = begin_frame(out);
        out.push(message_tag);
        let count_at = out.len();
        put_u32(out, 0);
        let mut size = 1 + 4;
        let mut count: u32 = 0;
        while let Some((record, tail)) = rest.split_first() {
            let len = encoded_len(record);
            if count > 0 && size + len > soft_limit {
                break;
            }
            put(record, out);
            size += len;
            count += 1;
            rest = tail;
        }
        if let Some(slot) = out.get_mut(count_at..count_at + 4) {
            slot.copy_from_slice(&count.to_be_bytes());
        }
        end_frame(out, at);
        frames += 1;
    }
    frames
}

impl Message {
    /// Appends this message's frame body (tag + payload) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::Hello(hello) => {
                out.push(tag::HELLO);
                put_hello(hello, out);
            }
            Self::Keepalive => out.push(tag::KEEPALIVE),
            Self::Topology(records) => {
                out.push(tag::TOPOLOGY);
                put_len(out, records.len());
                for record in records {
                    put_peer_record(record, out);
                }
            }
            Self::Endpoints(records) => {
                out.push(tag::ENDPOINTS);
                put_len(out, records.len());
                for record in records {
                    put_endpoint_record(record, out);
                }
            }
            Self::Digest {
                reply,
                peers,
                endpoints,
            } => {
                out.push(tag::DIGEST);
                out.push(u8::from(*reply));
                put_len(out, peers.len());
                for digest in peers {
                    out.extend_from_slice(&digest.name.0);
                    put_u64(out, digest.uid);
                    put_u64(out, digest.version);
                }
                put_len(out, endpoints.len());
                for digest in endpoints {
                    out.extend_from_slice(&digest.peer.0);
                    put_u64(out, digest.uid);
                    put_u64(out, digest.version);
                }
            }
        }
    }

    /// Parses one frame body. Never panics; see the module doc for the bounds.
    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader { rest: body };
        let message_tag = r.u8("tag").map_err(|_| DecodeError::Empty)?;
        let message = match message_tag {
            tag::HELLO => Self::Hello(r.hello()?),
            tag::KEEPALIVE => Self::Keepalive,
            tag::TOPOLOGY => {
                let count = r.count("topology records", PEER_RECORD_MIN_LEN)?;
                let mut records = Vec::with_capacity(count);
                for _ in 0..count {
                    records.push(r.peer_record()?);
                }
                Self::Topology(records)
            }
            tag::ENDPOINTS => {
                let count = r.count("endpoint records", ENDPOINT_RECORD_MIN_LEN)?;
                let mut records = Vec::with_capacity(count);
                for _ in 0..count {
                    records.push(r.endpoint_record()?);
                }
                Self::Endpoints(records)
            }
            tag::DIGEST => {
                let reply = r.bool("digest reply flag")?;
                let count = r.count("digest peers", PEER_DIGEST_LEN)?;
                let mut peers = Vec::with_capacity(count);
                for _ in 0..count {
                    peers.push(PeerDigest {
                        name: r.name()?,
                        uid: r.u64("digest uid")?,
                        version: r.u64("digest version")?,
                    });
                }
                let count = r.count("digest endpoints", ENDPOINT_DIGEST_LEN)?;
                let mut endpoints = Vec::with_capacity(count);
                for _ in 0..count {
                    endpoints.push(EndpointDigest {
                        peer: r.name()?,
                        uid: r.u64("digest uid")?,
                        version: r.u64("digest version")?,
                    });
                }
                Self::Digest {
                    reply,
                    peers,
                    endpoints,
                }
            }
            other => return Err(DecodeError::UnknownTag(other)),
        };
        if !r.rest.is_empty() {
            return Err(DecodeError::TrailingBytes {
                kind: message.kind(),
                count: r.rest.len(),
            });
        }
        Ok(message)
    }
}

fn put_u16(out: &mut Vec<u8>, value: u16) {
    out.extend_from_slice(&value.to_be_bytes());
}

fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_be_bytes());
}

fn put_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_be_bytes());
}

/// Writes a collection length as u32; lengths beyond u32 cannot occur within a frame.
fn put_len(out: &mut Vec<u8>, len: usize) {
    put_u32(out, u32::try_from(len).unwrap_or(u32::MAX));
}

fn put_nickname(out: &mut Vec<u8>, nickname: &Nickname) {
    let bytes = nickname.as_str().as_bytes();
    // Nickname guarantees len ≤ 64.
    out.push(u8::try_from(bytes.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(bytes);
}

fn put_ip(out: &mut Vec<u8>, ip: &IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            out.push(4);
            out.extend_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            out.push(6);
            out.extend_from_slice(&v6.octets());
        }
    }
}

fn ip_len(ip: &IpAddr) -> usize {
    match ip {
        IpAddr::V4(_) => 1 + 4,
        IpAddr::V6(_) => 1 + 16,
    }
}

fn put_hello(hello: &Hello, out: &mut Vec<u8>) {
    out.extend_from_slice(&hello.name.0);
    put_nickname(out, &hello.nickname);
    put_u64(out, hello.uid);
    put_u16(out, hello.listen_port);
    put_u16(out, hello.vxlan_port);
    put_u16(out, hello.tunnel_port);
    put_u32(out, hello.features);
    put_u64(out, hello.conn_nonce);
}

/// Appends one topology record.
pub(crate) fn put_peer_record(record: &PeerRecord, out: &mut Vec<u8>) {
    out.extend_from_slice(&record.name.0);
    put_nickname(out, &record.nickname);
    put_u64(out, record.uid);
    put_u64(out, record.version);
    put_len(out, record.connections.len());
    for conn in &record.connections {
        out.extend_from_slice(&conn.peer.0);
        put_ip(out, &conn.addr.ip());
        put_u16(out, conn.addr.port());
        out.push(u8::from(conn.outbound));
    }
}

/// Encoded size of one topology record.
pub(crate) fn peer_record_len(record: &PeerRecord) -> usize {
    let conns: usize = record
        .connections
        .iter()
        .map(|c| 6 + ip_len(&c.addr.ip()) + 2 + 1)
        .sum();
    PEER_RECORD_MIN_LEN + record.nickname.as_str().len() + conns
}

/// Appends one endpoint record.
pub(crate) fn put_endpoint_record(record: &EndpointRecord, out: &mut Vec<u8>) {
    out.extend_from_slice(&record.peer.0);
    put_u64(out, record.uid);
    put_u64(out, record.version);
    put_len(out, record.endpoints.len());
    for endpoint in &record.endpoints {
        put_u32(out, endpoint.vni);
        out.extend_from_slice(&endpoint.mac);
        put_u16(out, u16::try_from(endpoint.ips.len()).unwrap_or(u16::MAX));
        for ip in endpoint.ips.iter().take(usize::from(u16::MAX)) {
            put_ip(out, ip);
        }
    }
}

/// Encoded size of one endpoint record.
pub(crate) fn endpoint_record_len(record: &EndpointRecord) -> usize {
    endpoints_len(&record.endpoints)
}

/// Encoded size of an endpoint record holding `endpoints`.
pub(crate) fn endpoints_len(endpoints: &[Endpoint]) -> usize {
    let body: usize = endpoints
        .iter()
        .map(|e| ENDPOINT_MIN_LEN + e.ips.iter().map(ip_len).sum::<usize>())
        .sum();
    ENDPOINT_RECORD_MIN_LEN + body
}

/// A bounds-checked cursor over a frame body.
struct Reader<'a> {
    rest: &'a [u8],
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let (head, tail) = self
            .rest
            .split_first_chunk::<N>()
            .ok_or(DecodeError::Truncated { field })?;
        self.rest = tail;
        Ok(*head)
    }

    fn bytes(&mut self, len: usize, field: &'static str) -> Result<&[u8], DecodeError> {
        if self.rest.len() < len {
            return Err(DecodeError::Truncated { field });
        }
        let (head, tail) = self.rest.split_at(len);
        self.rest = tail;
        Ok(head)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        let [b] = self.take::<1>(field)?;
        Ok(b)
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        self.take(field).map(u16::from_be_bytes)
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        self.take(field).map(u32::from_be_bytes)
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        self.take(field).map(u64::from_be_bytes)
    }

    fn bool(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(DecodeError::BadBool { field, value }),
        }
    }

    fn name(&mut self) -> Result<PeerName, DecodeError> {
        self.take("peer name").map(PeerName)
    }

    /// Reads a u32 count and checks that `count` elements of at least `min_len` bytes fit.
    fn count(&mut self, field: &'static str, min_len: usize) -> Result<usize, DecodeError> {
        let count = self.u32(field)?;
        self.check_count(field, u64::from(count), min_len)
    }

    fn check_count(
        &self,
        field: &'static str,
        count: u64,
        min_len: usize,
    ) -> Result<usize, DecodeError> {
        let too_large = || DecodeError::CountTooLarge {
            field,
            count,
            remaining: self.rest.len(),
        };
        let count = usize::try_from(count).map_err(|_| too_large())?;
        let needed = count.checked_mul(min_len).ok_or_else(too_large)?;
        if needed > self.rest.len() {
            return Err(too_large());
        }
        Ok(count)
    }

    fn nickname(&mut self) -> Result<Nickname, DecodeError> {
        let len = usize::from(self.u8("nickname length")?);
        if len > Nickname::MAX_LEN {
            return Err(DecodeError::NicknameTooLong { len });
        }
        let bytes = self.bytes(len, "nickname")?;
        let text = std::str::from_utf8(bytes)
            .map_err(|_| DecodeError::InvalidUtf8 { field: "nickname" })?;
        Nickname::new(text).map_err(|e| DecodeError::NicknameTooLong { len: e.len })
    }

    fn ip(&mut self) -> Result<IpAddr, DecodeError> {
        match self.u8("address family")? {
            4 => Ok(IpAddr::V4(Ipv4Addr::from(self.take::<4>("IPv4 address")?))),
            6 => Ok(IpAddr::V6(Ipv6Addr::from(self.take::<16>("IPv6 address")?))),
            other => Err(DecodeError::BadAddressFamily(other)),
        }
    }

    fn socket_addr(&mut self) -> Result<SocketAddr, DecodeError> {
        let ip = self.ip()?;
        let port = self.u16("port")?;
        Ok(SocketAddr::new(ip, port))
    }

    fn hello(&mut self) -> Result<Hello, DecodeError> {
        Ok(Hello {
            name: self.name()?,
            nickname: self.nickname()?,
            uid: self.u64("uid")?,
            listen_port: self.u16("listen port")?,
            vxlan_port: self.u16("vxlan port")?,
            tunnel_port: self.u16("tunnel port")?,
            features: self.u32("features")?,
            conn_nonce: self.u64("connection nonce")?,
        })
    }

    fn peer_record(&mut self) -> Result<PeerRecord, DecodeError> {
        let name = self.name()?;
        let nickname = self.nickname()?;
        let uid = self.u64("uid")?;
        let version = self.u64("version")?;
        let count = self.count("connections", CONNECTION_RECORD_MIN_LEN)?;
        let mut connections = Vec::with_capacity(count);
        for _ in 0..count {
            connections.push(ConnectionRecord {
                peer: self.name()?,
                addr: self.socket_addr()?,
                outbound: self.bool("outbound flag")?,
            });
        }
        Ok(PeerRecord {
            name,
            nickname,
            uid,
            version,
            connections,
        })
    }

    fn endpoint_record(&mut self) -> Result<EndpointRecord, DecodeError> {
        let peer = self.name()?;
        let uid = self.u64("uid")?;
        let version = self.u64("version")?;
        let count = self.count("endpoints", ENDPOINT_MIN_LEN)?;
        let mut endpoints = Vec::with_capacity(count);
        for _ in 0..count {
            let vni = self.u32("vni")?;
            if vni > MAX_VNI {
                return Err(DecodeError::VniOutOfRange(vni));
            }
            let mac = self.take::<6>("mac")?;
            let ip_count = self.u16("ip count")?;
            let ip_count = self.check_count("ips", u64::from(ip_count), IP_MIN_LEN)?;
            let mut ips = Vec::with_capacity(ip_count);
            for _ in 0..ip_count {
                ips.push(self.ip()?);
            }
            endpoints.push(Endpoint { vni, mac, ips });
        }
        Ok(EndpointRecord {
            peer,
            uid,
            version,
            endpoints,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{SocketAddrV4, SocketAddrV6};

    fn name_strategy() -> impl Strategy<Value = PeerName> {
        any::<[u8; 6]>().prop_map(PeerName)
    }

    fn nickname_strategy() -> impl Strategy<Value = Nickname> {
        "\\PC{0,20}".prop_map(|s| Nickname::truncated(&s))
    }

    fn ip_strategy() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<[u8; 4]>().prop_map(|b| IpAddr::V4(Ipv4Addr::from(b))),
            any::<[u8; 16]>().prop_map(|b| IpAddr::V6(Ipv6Addr::from(b))),
        ]
    }

    fn socket_strategy() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            (any::<[u8; 4]>(), any::<u16>())
                .prop_map(|(b, p)| SocketAddr::V4(SocketAddrV4::new(b.into(), p))),
            (any::<[u8; 16]>(), any::<u16>()).prop_map(|(b, p)| SocketAddr::V6(SocketAddrV6::new(
                b.into(),
                p,
                0,
                0
            ))),
        ]
    }

    fn peer_record_strategy() -> impl Strategy<Value = PeerRecord> {
        (
            name_strategy(),
            nickname_strategy(),
            any::<u64>(),
            any::<u64>(),
            prop::collection::vec(
                (name_strategy(), socket_strategy(), any::<bool>()).prop_map(
                    |(peer, addr, outbound)| ConnectionRecord {
                        peer,
                        addr,
                        outbound,
                    },
                ),
                0..6,
            ),
        )
            .prop_map(|(name, nickname, uid, version, connections)| PeerRecord {
                name,
                nickname,
                uid,
                version,
                connections,
            })
    }

    fn endpoint_record_strategy() -> impl Strategy<Value = EndpointRecord> {
        (
            name_strategy(),
            any::<u64>(),
            any::<u64>(),
            prop::collection::vec(
                (
                    0..=MAX_VNI,
                    any::<[u8; 6]>(),
                    prop::collection::vec(ip_strategy(), 0..4),
                )
                    .prop_map(|(vni, mac, ips)| Endpoint { vni, mac, ips }),
                0..5,
            ),
        )
            .prop_map(|(peer, uid, version, endpoints)| EndpointRecord {
                peer,
                uid,
                version,
                endpoints,
            })
    }

    fn message_strategy() -> impl Strategy<Value = Message> {
        let hello = (
            name_strategy(),
            nickname_strategy(),
            any::<u64>(),
            any::<(u16, u16, u16)>(),
            any::<u32>(),
            any::<u64>(),
        )
            .prop_map(|(name, nickname, uid, ports, features, conn_nonce)| {
                Message::Hello(Hello {
                    name,
                    nickname,
                    uid,
                    listen_port: ports.0,
                    vxlan_port: ports.1,
                    tunnel_port: ports.2,
                    features,
                    conn_nonce,
                })
            });
        let digest = (
            any::<bool>(),
            prop::collection::vec(
                (name_strategy(), any::<u64>(), any::<u64>())
                    .prop_map(|(name, uid, version)| PeerDigest { name, uid, version }),
                0..8,
            ),
            prop::collection::vec(
                (name_strategy(), any::<u64>(), any::<u64>())
                    .prop_map(|(peer, uid, version)| EndpointDigest { peer, uid, version }),
                0..8,
            ),
        )
            .prop_map(|(reply, peers, endpoints)| Message::Digest {
                reply,
                peers,
                endpoints,
            });
        prop_oneof![
            hello,
            Just(Message::Keepalive),
            prop::collection::vec(peer_record_strategy(), 0..5).prop_map(Message::Topology),
            prop::collection::vec(endpoint_record_strategy(), 0..5).prop_map(Message::Endpoints),
            digest,
        ]
    }

    proptest! {
        #[test]
        fn encode_decode_round_trips(message in message_strategy()) {
            let mut body = Vec::new();
            message.encode(&mut body);
            prop_assert_eq!(Message::decode(&body), Ok(message.clone()));
            // The record size helpers agree with the encoder.
            match &message {
                Message::Topology(records) => {
                    let sum: usize = records.iter().map(peer_record_len).sum();
                    prop_assert_eq!(body.len(), 1 + 4 + sum);
                }
                Message::Endpoints(records) => {
                    let sum: usize = records.iter().map(endpoint_record_len).sum();
                    prop_assert_eq!(body.len(), 1 + 4 + sum);
                }
                _ => {}
            }
        }

        #[test]
        fn frames_survive_any_chunking(
            messages in prop::collection::vec(message_strategy(), 1..6),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let mut stream = Vec::new();
            for message in &messages {
                encode_frame(message, &mut stream);
            }
            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
            points.push(0);
            points.push(stream.len());
            points.sort_unstable();
            let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME_LEN);
            let mut decoded = Vec::new();
            for pair in points.windows(2) {
                decoder.push(&stream[pair[0]..pair[1]]);
                while let Some(body) = decoder.next_frame().unwrap() {
                    decoded.push(Message::decode(body).unwrap());
                }
            }
            prop_assert_eq!(decoded, messages);
            prop_assert_eq!(decoder.buffered(), 0);
        }

        #[test]
        fn decode_never_panics(body in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = Message::decode(&body);
        }
    }

    #[test]
    fn oversize_frame_is_refused_before_buffering() {
        let mut decoder = FrameDecoder::new(1024);
        decoder.push(&(u32::MAX).to_be_bytes());
        decoder.push(&[0; 16]);
        let err = decoder.next_frame().unwrap_err();
        assert_eq!(
            err,
            FrameError::TooLong {
                len: u64::from(u32::MAX),
                max: 1024
            }
        );
        // Sticky: the stream cannot be resynchronised.
        assert!(decoder.next_frame().is_err());
        // Nothing near the claimed length was reserved.
        assert!(decoder.buf.capacity() < 4096);
    }

    #[test]
    fn frame_at_exactly_the_limit_is_accepted() {
        let mut decoder = FrameDecoder::new(8);
        decoder.push(&8u32.to_be_bytes());
        decoder.push(&[2; 8]);
        assert_eq!(decoder.next_frame().unwrap(), Some(&[2u8; 8][..]));
    }

    #[test]
    fn huge_counts_are_rejected_without_allocation() {
        let mut body = vec![tag::TOPOLOGY];
        body.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            Message::decode(&body),
            Err(DecodeError::CountTooLarge { count, .. }) if count == u64::from(u32::MAX)
        ));
        let mut body = vec![tag::DIGEST, 0];
        body.extend_from_slice(&1000u32.to_be_bytes());
        body.extend_from_slice(&[0; 100]);
        assert!(matches!(
            Message::decode(&body),
            Err(DecodeError::CountTooLarge { .. })
        ));
    }

    #[test]
    fn malformed_bodies_are_typed_errors() {
        assert_eq!(Message::decode(&[]), Err(DecodeError::Empty));
        assert_eq!(Message::decode(&[200]), Err(DecodeError::UnknownTag(200)));
        assert!(!DecodeError::UnknownTag(200).is_fatal());
        assert_eq!(
            Message::decode(&[tag::KEEPALIVE, 0]),
            Err(DecodeError::TrailingBytes {
                kind: "Keepalive",
                count: 1
            })
        );
        assert!(matches!(
            Message::decode(&[tag::HELLO, 1, 2, 3]),
            Err(DecodeError::Truncated { .. })
        ));
        // Nickname length 65.
        let mut hello = vec![tag::HELLO, 2, 0, 0, 0, 0, 1, 65];
        hello.extend_from_slice(&[b'a'; 65]);
        assert_eq!(
            Message::decode(&hello),
            Err(DecodeError::NicknameTooLong { len: 65 })
        );
        // Invalid UTF-8 nickname.
        let hello = [tag::HELLO, 2, 0, 0, 0, 0, 1, 1, 0xff];
        assert_eq!(
            Message::decode(&hello),
            Err(DecodeError::InvalidUtf8 { field: "nickname" })
        );
        // Bad boolean in a digest.
        assert!(matches!(
            Message::decode(&[tag::DIGEST, 7]),
            Err(DecodeError::BadBool { value: 7, .. })
        ));
        for err in [
            DecodeError::Empty,
            DecodeError::Truncated { field: "x" },
            DecodeError::BadAddressFamily(5),
            DecodeError::VniOutOfRange(1 << 24),
        ] {
            assert!(err.is_fatal());
        }
    }

    #[test]
    fn bad_address_family_and_vni_are_rejected() {
        let record = EndpointRecord {
            peer: PeerName([2, 0, 0, 0, 0, 1]),
            uid: 3,
            version: 1,
            endpoints: vec![Endpoint {
                vni: 5,
                mac: [2, 0, 0, 0, 0, 9],
                ips: vec![IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))],
            }],
        };
        let mut body = Vec::new();
        Message::Endpoints(vec![record]).encode(&mut body);
        // Layout: tag, count(4), peer(6), uid(8), version(8), count(4), vni(4), mac(6),
        // ip count(2), family.
        let family_at = 1 + 4 + 6 + 8 + 8 + 4 + 4 + 6 + 2;
        let mut bad = body.clone();
        bad[family_at] = 5;
        assert_eq!(Message::decode(&bad), Err(DecodeError::BadAddressFamily(5)));
        let vni_at = 1 + 4 + 6 + 8 + 8 + 4;
        let mut bad = body;
        bad[vni_at] = 1;
        assert_eq!(
            Message::decode(&bad),
            Err(DecodeError::VniOutOfRange(0x0100_0005))
        );
    }

    #[test]
    fn record_frames_split_at_the_soft_limit() {
        let records: Vec<PeerRecord> = (0..10u8)
            .map(|i| PeerRecord {
                name: PeerName([2, 0, 0, 0, 0, i]),
                nickname: Nickname::truncated("host"),
                uid: u64::from(i),
                version: 1,
                connections: Vec::new(),
            })
            .collect();
        let refs: Vec<&PeerRecord> = records.iter().collect();
        let one = peer_record_len(&records[0]);
        let mut out = Vec::new();
        let frames = encode_record_frames(
            &mut out,
            tag::TOPOLOGY,
            &refs,
            5 + 3 * one,
            peer_record_len,
            put_peer_record,
        );
        assert_eq!(frames, 4);
        let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME_LEN);
        decoder.push(&out);
        let mut all = Vec::new();
        while let Some(body) = decoder.next_frame().unwrap() {
            let Message::Topology(part) = Message::decode(body).unwrap() else {
                panic!("not topology");
            };
            assert!(part.len() <= 3);
            all.extend(part);
        }
        assert_eq!(all, records);
    }
}
