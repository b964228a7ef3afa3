//! Per-connection state: lifecycle, timers, the inbound frame decoder, the outbound
//! buffer and the pending gossip, plus admission control (accept rate, connection limit).
//!
//! Contract: a connection is `Pending` from `handle_connection_opened` until a valid Hello
//! arrives, then `Established` with the remote's identity. The node closes it (by emitting
//! `Action::Close` and forgetting it) on any protocol violation or timeout; a
//! [`CloseReason`] says why, in words a user can act on.

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::codec::{DecodeError, FrameDecoder, FrameError};
use crate::peer::{Nickname, PeerName};

/// The caller's handle for one control connection (e.g. its socket token).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct ConnId(pub u64);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Who opened the TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// The remote dialled us.
    Inbound,
    /// We dialled the remote.
    Outbound,
}

/// Where a connection is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnectionState {
    /// Opened; waiting for the remote's Hello.
    Pending,
    /// Hello exchanged; part of the topology.
    Established,
}

/// Why a connection was closed (by us or, for [`CloseReason::Transport`], by the caller).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloseReason {
    /// No Hello within the handshake timeout.
    #[error("handshake timeout: no Hello received within {0:?}")]
    HandshakeTimeout(Duration),
    /// Nothing received for the keepalive timeout.
    #[error("keepalive timeout: nothing received for {0:?}")]
    KeepaliveTimeout(Duration),
    /// The frame stream is broken (oversize frame).
    #[error("bad frame: {0}")]
    Frame(FrameError),
    /// A message that does not decode.
    #[error("{0}")]
    Malformed(DecodeError),
    /// The remote sent something other than Hello first.
    #[error("protocol violation: {kind} received before Hello")]
    MessageBeforeHello {
        /// The offending message kind.
        kind: &'static str,
    },
    /// A second Hello on an established connection.
    #[error("protocol violation: second Hello on an established connection")]
    UnexpectedHello,
    /// We connected to ourselves; the address is remembered as ours and never dialled again.
    #[error("connected to ourselves; {0} is our own address and will not be dialled again")]
    SelfConnection(SocketAddr),
    /// Another peer uses the same name with a different uid.
    #[error(
        "peer name collision: two peers use the name {name} (uids {ours:016x} and {theirs:016x}); \
         give each host a unique --name. This address will not be retried"
    )]
    NameCollision {
        /// The contested name.
        name: PeerName,
        /// The uid we know for that name (ours, if the name is ours).
        ours: u64,
        /// The uid the remote announced.
        theirs: u64,
    },
    /// Two connections to the same peer; both ends close the same one.
    #[error("duplicate connection to {0}; keeping the other one")]
    Duplicate(PeerName),
    /// A new peer needed the slot at the connection limit, and this connection was the
    /// least needed (one we dialled to a discovered peer, or one from a well-connected peer).
    #[error(
        "closed to make room for a new peer at the connection limit (it was the least needed one)"
    )]
    Shed,
    /// At the connection limit, a peer already in the mesh gets no slot (newcomers may).
    #[error(
        "connection limit of {0} reached; this peer is already part of the mesh through \
         others (raise --conn-limit to connect more)"
    )]
    ConnectionLimit(usize),
    /// The caller closed or lost the connection (I/O error, EOF, shutdown, ...).
    #[error("{0}")]
    Transport(String),
}

/// Why a new connection was not accepted; the caller must close its socket.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Inbound connections arrive faster than the accept rate limit.
    #[error("too many incoming connections per second (accept rate limit); try again shortly")]
    RateLimited,
    /// At the connection limit.
    #[error("connection limit of {limit} reached; raise --conn-limit or connect fewer peers")]
    ConnectionLimit {
        /// The configured limit.
        limit: usize,
    },
    /// The caller reused a live connection id.
    #[error("connection id {0} is already in use")]
    DuplicateConnId(ConnId),
}

/// A directly connected peer as its Hello described it: what the data plane needs to
/// reach it (underlay IP and UDP ports).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Neighbour {
    /// The peer.
    pub peer: PeerName,
    /// Its nickname.
    pub nickname: Nickname,
    /// Its incarnation.
    pub uid: u64,
    /// The control connection.
    pub conn: ConnId,
    /// Its control address (dialled address, or remote IP with its announced listen port).
    pub listen_addr: SocketAddr,
    /// Its VXLAN port (on `listen_addr`'s IP).
    pub vxlan_port: u16,
    /// Its encrypted-tunnel port (on `listen_addr`'s IP).
    pub tunnel_port: u16,
    /// Its feature bits.
    pub features: u32,
}

/// What a Hello told us about the remote.
#[derive(Debug, Clone)]
pub(crate) struct RemotePeer {
    pub(crate) name: PeerName,
    pub(crate) nickname: Nickname,
    pub(crate) uid: u64,
    pub(crate) nonce: u64,
    pub(crate) listen_addr: SocketAddr,
    pub(crate) vxlan_port: u16,
    pub(crate) tunnel_port: u16,
    pub(crate) features: u32,
}

/// Gossip waiting to be flushed to one neighbour: names whose records to send.
#[derive(Debug, Default, Clone)]
pub(crate) struct PendingGossip {
    pub(crate) peers: BTreeSet<PeerName>,
    pub(crate) endpoints: BTreeSet<PeerName>,
    /// Send our digest (and ask for the peer's when `reply`).
    pub(crate) digest: Option<bool>,
}

impl PendingGossip {
    pub(crate) fn is_empty(&self) -> bool {
        self.peers.is_empty() && self.endpoints.is_empty() && self.digest.is_none()
    }
}

/// One control connection.
#[derive(Debug)]
pub(crate) struct Connection {
    pub(crate) direction: Direction,
    pub(crate) remote: SocketAddr,
    pub(crate) opened_at: Instant,
    pub(crate) established_at: Option<Instant>,
    pub(crate) peer: Option<RemotePeer>,
    pub(crate) our_nonce: u64,
    pub(crate) last_sent: Instant,
    pub(crate) last_recv: Instant,
    pub(crate) decoder: FrameDecoder,
    pub(crate) outbox: Vec<u8>,
    pub(crate) gossip: PendingGossip,
    pub(crate) last_error: Option<String>,
    /// Admitted over the connection limit; the Hello decides whether it stays.
    pub(crate) over_limit: bool,
}

impl Connection {
    pub(crate) fn new(
        direction: Direction,
        remote: SocketAddr,
        now: Instant,
        our_nonce: u64,
        max_frame_len: usize,
    ) -> Self {
        Self {
            direction,
            remote,
            opened_at: now,
            established_at: None,
            peer: None,
            our_nonce,
            last_sent: now,
            last_recv: now,
            decoder: FrameDecoder::new(max_frame_len),
            outbox: Vec::new(),
            gossip: PendingGossip::default(),
            last_error: None,
            over_limit: false,
        }
    }

    pub(crate) fn state(&self) -> ConnectionState {
        if self.established_at.is_some() {
            ConnectionState::Established
        } else {
            ConnectionState::Pending
        }
    }

    pub(crate) fn established_peer(&self) -> Option<PeerName> {
        self.established_at?;
        self.peer.as_ref().map(|p| p.name)
    }

    /// The duplicate-resolution key: the connection with the smaller key survives.
    /// Connections initiated by the smaller name win; among those opened by the same
    /// side, the smaller initiator nonce wins. Both ends compute the same key.
    pub(crate) fn survival_key(&self, me: PeerName) -> Option<(bool, u64)> {
        let peer = self.peer.as_ref()?;
        let (initiator, nonce) = match self.direction {
            Direction::Outbound => (me, self.our_nonce),
            Direction::Inbound => (peer.name, peer.nonce),
        };
        Some((initiator != me.min(peer.name), nonce))
    }
}

/// Token bucket for accepting connections: `burst` at once, then `rate` per second.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    capacity: f64,
    tokens: f64,
    rate: f64,
    last: Instant,
}

impl TokenBucket {
    pub(crate) fn new(burst: u32, rate_per_sec: f64, now: Instant) -> Self {
        Self {
            capacity: f64::from(burst),
            tokens: f64::from(burst),
            rate: rate_per_sec.max(0.0),
            last: now,
        }
    }

    /// Takes one token if available.
    pub(crate) fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_bucket_allows_burst_then_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(20, 20.0, start);
        let granted = (0..30).filter(|_| bucket.try_take(start)).count();
        assert_eq!(granted, 20);
        // 100 ms later: two more tokens (20/s).
        let later = start + Duration::from_millis(100);
        let granted = (0..10).filter(|_| bucket.try_take(later)).count();
        assert_eq!(granted, 2);
        // A long pause refills to the burst, not beyond.
        let much_later = later + Duration::from_secs(60);
        let granted = (0..100).filter(|_| bucket.try_take(much_later)).count();
        assert_eq!(granted, 20);
    }

    #[test]
    fn survival_key_is_symmetric() {
        let a = PeerName([2, 0, 0, 0, 0, 1]);
        let b = PeerName([2, 0, 0, 0, 0, 2]);
        let now = Instant::now();
        let addr = SocketAddr::from(([127, 0, 0, 1], 6783));
        let remote = |name, nonce| RemotePeer {
            name,
            nickname: Nickname::default(),
            uid: 1,
            nonce,
            listen_addr: addr,
            vxlan_port: 0,
            tunnel_port: 0,
            features: 0,
        };
        // Connection c1 initiated by a (nonce 5), c2 initiated by b (nonce 3).
        let mut c1_at_a = Connection::new(Direction::Outbound, addr, now, 5, 1024);
        c1_at_a.peer = Some(remote(b, 9));
        let mut c1_at_b = Connection::new(Direction::Inbound, addr, now, 9, 1024);
        c1_at_b.peer = Some(remote(a, 5));
        let mut c2_at_a = Connection::new(Direction::Inbound, addr, now, 4, 1024);
        c2_at_a.peer = Some(remote(b, 3));
        let mut c2_at_b = Connection::new(Direction::Outbound, addr, now, 3, 1024);
        c2_at_b.peer = Some(remote(a, 4));
        assert_eq!(c1_at_a.survival_key(a), c1_at_b.survival_key(b));
        assert_eq!(c2_at_a.survival_key(a), c2_at_b.survival_key(b));
        // The one initiated by the smaller name (a) survives on both ends.
        assert!(c1_at_a.survival_key(a) < c2_at_a.survival_key(a));
        assert!(c1_at_b.survival_key(b) < c2_at_b.survival_key(b));
    }
}
