//! Serializable snapshots of a node's state for `weft status peers|connections` and the
//! metrics endpoint.
//!
//! Contract: plain data, built on demand by `Mesh::status`; times are relative to the
//! `now` passed in (seconds as `f64`), since `Instant` has no meaning outside the process.

use std::net::SocketAddr;

use serde::Serialize;

use crate::connection::{ConnId, ConnectionState, Direction};
use crate::maker::{TargetSource, TargetState};
use crate::peer::{Nickname, PeerName};
use crate::protocol::{ConnectionRecord, VersionRange};

/// Everything `weft status` shows about the mesh.
#[derive(Debug, Clone, Serialize)]
pub struct MeshStatus {
    /// Our name.
    pub name: PeerName,
    /// Our nickname.
    pub nickname: Nickname,
    /// Our incarnation.
    pub uid: u64,
    /// Our topology record's version.
    pub version: u64,
    /// The protocol versions we speak.
    pub protocol: VersionRange,
    /// Digest of our topology view (`name, uid, version` of every record); equal on every
    /// peer once gossip has converged.
    pub topology_fingerprint: String,
    /// Every peer we hold a record of (us first), then placeholders.
    pub peers: Vec<PeerStatus>,
    /// Our live control connections, by id.
    pub connections: Vec<ConnectionStatus>,
    /// The connection maker's targets, by address.
    pub targets: Vec<TargetStatus>,
    /// Counters since start.
    pub counters: MeshCounters,
}

/// One peer as we know it.
#[derive(Debug, Clone, Serialize)]
pub struct PeerStatus {
    /// Its name.
    pub name: PeerName,
    /// Its nickname (`None` for a placeholder).
    pub nickname: Option<Nickname>,
    /// Its incarnation (`None` for a placeholder).
    pub uid: Option<u64>,
    /// Its record's version (`None` for a placeholder).
    pub version: Option<u64>,
    /// Listed by a connection but no record received yet.
    pub placeholder: bool,
    /// The connections its record lists.
    pub connections: Vec<ConnectionRecord>,
    /// Whether we have a route to it over symmetric connections.
    pub reachable: bool,
    /// Our next hop towards it.
    pub next_hop: Option<PeerName>,
    /// Hops from us.
    pub hops: Option<u32>,
    /// How many endpoints it announces.
    pub endpoints: usize,
}

/// One live control connection.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionStatus {
    /// The caller's id.
    pub conn: ConnId,
    /// The peer, once its Hello arrived.
    pub peer: Option<PeerName>,
    /// The peer's nickname, once known.
    pub nickname: Option<Nickname>,
    /// The remote socket address.
    pub remote: SocketAddr,
    /// Who dialled.
    pub direction: Direction,
    /// Pending or established.
    pub state: ConnectionState,
    /// Seconds since it was established (or opened, while pending).
    pub since_secs: f64,
    /// The last non-fatal problem seen on it (e.g. an unknown message type).
    pub last_error: Option<String>,
}

/// One connection-maker target.
#[derive(Debug, Clone, Serialize)]
pub struct TargetStatus {
    /// Where we dial.
    pub addr: SocketAddr,
    /// Explicit (user-given) or discovered (explicit wins when both).
    pub source: TargetSource,
    /// What the maker is doing about it.
    pub state: TargetState,
    /// The peer behind it, when known.
    pub peer: Option<PeerName>,
    /// Dials so far.
    pub attempts: u32,
    /// Seconds until the next dial, when one is scheduled.
    pub next_retry_in_secs: Option<f64>,
    /// Why the last attempt or connection failed.
    pub last_error: Option<String>,
}

/// Counted events: every drop and refusal has a name here.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MeshCounters {
    /// Inbound connections refused by the accept rate limit.
    pub refused_rate_limited: u64,
    /// Connections refused at the connection limit.
    pub refused_conn_limit: u64,
    /// Discovered connections closed to admit a new inbound peer at the limit.
    pub shed_connections: u64,
    /// Connections closed for an oversize frame.
    pub closed_bad_frame: u64,
    /// Connections closed for a malformed message.
    pub closed_malformed: u64,
    /// Connections closed for a message before Hello (or a second Hello).
    pub closed_protocol_violation: u64,
    /// Connections closed because no Hello arrived in time.
    pub closed_handshake_timeout: u64,
    /// Connections closed because the peer went silent.
    pub closed_keepalive_timeout: u64,
    /// Connections to ourselves.
    pub self_connections: u64,
    /// Peer-name collisions.
    pub name_collisions: u64,
    /// Duplicate connections closed.
    pub duplicate_connections: u64,
    /// Messages with unknown tags, skipped.
    pub unknown_messages: u64,
    /// Messages received and decoded.
    pub messages_received: u64,
    /// Control bytes received.
    pub bytes_received: u64,
    /// Control bytes queued for sending.
    pub bytes_sent: u64,
    /// Topology and endpoint records received.
    pub records_received: u64,
    /// Topology and endpoint records sent.
    pub records_sent: u64,
    /// Route table rebuilds.
    pub route_recomputes: u64,
}
