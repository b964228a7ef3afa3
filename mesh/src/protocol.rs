//! The control protocol's vocabulary: the version preamble and the [`Message`] set.
//!
//! Contract: both ends of a control connection first send an 8-byte preamble (`b"weft"`,
//! u16 BE min version, u16 BE max version) and [`negotiate`] the highest common version;
//! after that the stream is a sequence of frames (see [`crate::codec`]), the first of which
//! must be a [`Message::Hello`]. Every type here is plain data; the byte layout lives in
//! `codec`, and what a message *means* to a node lives in `node`.
//!
//! Message tags: 1 Hello, 2 Keepalive, 3 Topology, 4 Endpoints, 5 Digest. Tags 16..=31 are
//! reserved for the encrypted data path (keys, heartbeats); any tag a node does not know
//! decodes to [`crate::DecodeError::UnknownTag`], which is counted and skipped, so newer
//! peers can add messages without breaking older ones.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use serde::Serialize;

use crate::peer::{Nickname, PeerName};

/// The four magic bytes that open every control connection.
pub const PREAMBLE_MAGIC: [u8; 4] = *b"weft";
/// Length of the version preamble in bytes.
pub const PREAMBLE_LEN: usize = 8;
/// The protocol versions this build speaks.
pub const SUPPORTED_VERSIONS: VersionRange = VersionRange { min: 1, max: 1 };
/// The TCP port of the control plane, as in Weave.
pub const DEFAULT_LISTEN_PORT: u16 = 6783;
/// The IANA VXLAN port.
pub const DEFAULT_VXLAN_PORT: u16 = 4789;
/// The UDP port of the encrypted fallback tunnel.
pub const DEFAULT_TUNNEL_PORT: u16 = 6784;

/// An inclusive range of protocol versions one side speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct VersionRange {
    /// Oldest version spoken.
    pub min: u16,
    /// Newest version spoken.
    pub max: u16,
}

impl fmt::Display for VersionRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..={}", self.min, self.max)
    }
}

impl VersionRange {
    /// The preamble bytes announcing this range.
    pub fn to_preamble(self) -> [u8; PREAMBLE_LEN] {
        let [m0, m1] = self.min.to_be_bytes();
        let [x0, x1] = self.max.to_be_bytes();
        let [a, b, c, d] = PREAMBLE_MAGIC;
        [a, b, c, d, m0, m1, x0, x1]
    }

    /// Parses the remote preamble; `bytes` must hold at least [`PREAMBLE_LEN`] bytes (extra
    /// bytes are ignored: they belong to the frame stream).
    pub fn from_preamble(bytes: &[u8]) -> Result<Self, HandshakeError> {
        let Some(&[a, b, c, d, m0, m1, x0, x1]) = bytes.get(..PREAMBLE_LEN) else {
            return Err(HandshakeError::Truncated { len: bytes.len() });
        };
        if [a, b, c, d] != PREAMBLE_MAGIC {
            return Err(HandshakeError::BadMagic { got: [a, b, c, d] });
        }
        let range = Self {
            min: u16::from_be_bytes([m0, m1]),
            max: u16::from_be_bytes([x0, x1]),
        };
        if range.min > range.max {
            return Err(HandshakeError::EmptyRange { theirs: range });
        }
        Ok(range)
    }
}

/// Why the version preamble failed; shown to the user on both ends.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// The remote did not send a full preamble before the stream ended.
    #[error("the remote closed the connection after {len} of {PREAMBLE_LEN} preamble bytes")]
    Truncated {
        /// Bytes received.
        len: usize,
    },
    /// The remote is not speaking the weft control protocol (wrong port? a Weave router?).
    #[error("the remote is not a weft router: preamble starts with {got:02x?}, expected \"weft\"")]
    BadMagic {
        /// The first four bytes received.
        got: [u8; 4],
    },
    /// The remote announced min > max.
    #[error("the remote announced an empty protocol version range {theirs}")]
    EmptyRange {
        /// The announced range.
        theirs: VersionRange,
    },
    /// No common protocol version: one side must be upgraded.
    #[error(
        "no common protocol version: we speak {ours}, the remote speaks {theirs}; upgrade the older weft"
    )]
    VersionMismatch {
        /// Our range.
        ours: VersionRange,
        /// The remote's range.
        theirs: VersionRange,
    },
}

/// Picks the highest version both ranges contain.
pub fn negotiate(ours: VersionRange, theirs: VersionRange) -> Result<u16, HandshakeError> {
    let low = ours.min.max(theirs.min);
    let high = ours.max.min(theirs.max);
    if low > high || ours.min > ours.max || theirs.min > theirs.max {
        return Err(HandshakeError::VersionMismatch { ours, theirs });
    }
    Ok(high)
}

/// One control connection a peer has established, as listed in its [`PeerRecord`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ConnectionRecord {
    /// The peer at the other end.
    pub peer: PeerName,
    /// That peer's control address as seen from the record's owner: the address dialled for
    /// outbound connections, the remote IP with the peer's announced listen port for inbound
    /// ones. Other peers may dial it (discovery).
    pub addr: SocketAddr,
    /// Whether the record's owner initiated the connection.
    pub outbound: bool,
}

/// A peer's own view of itself, gossiped and merged by `(version, uid)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerRecord {
    /// Whose record this is; only that peer ever changes it.
    pub name: PeerName,
    /// Human label.
    pub nickname: Nickname,
    /// Incarnation of the owner; breaks version ties between incarnations.
    pub uid: u64,
    /// Bumped by the owner on every change; higher wins.
    pub version: u64,
    /// The owner's established control connections.
    pub connections: Vec<ConnectionRecord>,
}

/// One container (or host port) a router serves, announced so other routers can answer ARP
/// and forward unicast without flooding.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Endpoint {
    /// The VXLAN network identifier (24 bits).
    pub vni: u32,
    /// The endpoint's MAC address.
    pub mac: [u8; 6],
    /// The endpoint's IP addresses.
    pub ips: Vec<IpAddr>,
}

/// The largest valid VNI (VXLAN carries 24 bits).
pub const MAX_VNI: u32 = 0x00ff_ffff;

/// A peer's announced endpoints, merged by `(version, uid)` (owner-only writes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndpointRecord {
    /// The announcing peer.
    pub peer: PeerName,
    /// The announcing peer's incarnation; breaks version ties between incarnations.
    pub uid: u64,
    /// Bumped by the owner on every change; higher wins.
    pub version: u64,
    /// The peer's local endpoints.
    pub endpoints: Vec<Endpoint>,
}

/// A topology record's identity and version, for anti-entropy summaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerDigest {
    /// Record owner.
    pub name: PeerName,
    /// Owner incarnation.
    pub uid: u64,
    /// Record version.
    pub version: u64,
}

/// An endpoint record's identity and version, for anti-entropy summaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointDigest {
    /// Record owner.
    pub peer: PeerName,
    /// Owner incarnation.
    pub uid: u64,
    /// Record version.
    pub version: u64,
}

/// The first message on every connection: who we are and where our data path listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// Sender's name.
    pub name: PeerName,
    /// Sender's nickname.
    pub nickname: Nickname,
    /// Sender's incarnation.
    pub uid: u64,
    /// Sender's control (TCP) port, so inbound connections can be recorded as dialable.
    pub listen_port: u16,
    /// Sender's VXLAN (UDP) port.
    pub vxlan_port: u16,
    /// Sender's encrypted-tunnel (UDP) port.
    pub tunnel_port: u16,
    /// Feature bits (none defined yet; unknown bits are ignored).
    pub features: u32,
    /// Random per connection; breaks ties between duplicate connections opened by the same
    /// side, so both ends close the same one.
    pub conn_nonce: u64,
}

/// A control message (one frame body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Identity; must be first, exactly once.
    Hello(Hello),
    /// Sent after a quiet period so the other end knows we are alive.
    Keepalive,
    /// Topology records (a delta, or the answer to a [`Message::Digest`]).
    Topology(Vec<PeerRecord>),
    /// Endpoint records (a delta, or the answer to a [`Message::Digest`]).
    Endpoints(Vec<EndpointRecord>),
    /// A summary of every record the sender holds; the receiver pushes whatever the sender
    /// lacks (anti-entropy, and the state sync after Hello).
    Digest {
        /// Whether the receiver should answer with its own digest (so the exchange is
        /// two-way); never set on an answer, so exchanges cannot ping-pong.
        reply: bool,
        /// Topology record versions.
        peers: Vec<PeerDigest>,
        /// Endpoint record versions.
        endpoints: Vec<EndpointDigest>,
    },
}

/// Frame-body tags; see the module doc for the reserved ranges.
pub(crate) mod tag {
    pub(crate) const HELLO: u8 = 1;
    pub(crate) const KEEPALIVE: u8 = 2;
    pub(crate) const TOPOLOGY: u8 = 3;
    pub(crate) const ENDPOINTS: u8 = 4;
    pub(crate) const DIGEST: u8 = 5;
}

impl Message {
    /// A short name for logs and close reasons.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Hello(_) => "Hello",
            Self::Keepalive => "Keepalive",
            Self::Topology(_) => "Topology",
            Self::Endpoints(_) => "Endpoints",
            Self::Digest { .. } => "Digest",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(min: u16, max: u16) -> VersionRange {
        VersionRange { min, max }
    }

    #[test]
    fn negotiate_picks_highest_common_version() {
        assert_eq!(negotiate(range(1, 3), range(2, 5)), Ok(3));
        assert_eq!(negotiate(range(2, 5), range(1, 3)), Ok(3));
        assert_eq!(negotiate(range(1, 1), range(1, 1)), Ok(1));
        assert_eq!(negotiate(range(1, 9), range(4, 4)), Ok(4));
    }

    #[test]
    fn negotiate_without_overlap_names_both_ranges() {
        let err = negotiate(range(1, 2), range(3, 4)).unwrap_err();
        assert_eq!(
            err,
            HandshakeError::VersionMismatch {
                ours: range(1, 2),
                theirs: range(3, 4)
            }
        );
        let text = err.to_string();
        assert!(text.contains("1..=2") && text.contains("3..=4"), "{text}");
    }

    #[test]
    fn preamble_round_trips_and_rejects_garbage() {
        let bytes = range(1, 7).to_preamble();
        assert_eq!(&bytes[..4], b"weft");
        assert_eq!(VersionRange::from_preamble(&bytes), Ok(range(1, 7)));
        assert_eq!(
            VersionRange::from_preamble(&bytes[..5]),
            Err(HandshakeError::Truncated { len: 5 })
        );
        assert!(matches!(
            VersionRange::from_preamble(b"weave\x00\x01\x00\x02"),
            Err(HandshakeError::BadMagic { .. })
        ));
        assert!(matches!(
            VersionRange::from_preamble(&range(3, 2).to_preamble()),
            Err(HandshakeError::EmptyRange { .. })
        ));
    }
}
