//! weft's peer-mesh control plane, sans-I/O.
//!
//! One [`Mesh`] per router decides everything about the control mesh: what to say on each
//! TCP control connection (port 6783), which peers exist and how to reach them, and whom
//! to dial. The weft binary owns the sockets: it dials and accepts, runs the version
//! preamble ([`negotiate`]) and any encryption, feeds received bytes to
//! [`Mesh::handle_bytes`], writes [`Mesh::poll_transmit`] output, performs
//! [`Mesh::poll_action`] dials and closes, and calls [`Mesh::handle_timeout`] at
//! [`Mesh::poll_timeout`].
//!
//! Contract:
//! - Pure: no sockets, threads, clock reads or global randomness; time arrives as
//!   `Instant` parameters and randomness from the seed given to [`Mesh::new`].
//! - Never panics on input from the network: malformed input is a [`DecodeError`] or
//!   [`FrameError`], closes only the offending connection, and is counted.
//! - Scales to about a thousand peers: gossip sends deltas (bytes per change grow with a
//!   peer's degree, not n²), state sync exchanges digests, route rebuilds are coalesced and
//!   O(n + e), broadcast trees are computed lazily per origin.
//!
//! Modules: identity ([`peer`]), wire format ([`protocol`], [`codec`]), the topology
//! CRDT ([`topology`]), routes ([`routes`]), gossip, connections and the connection
//! maker ([`maker`]), endpoints ([`endpoints`]), configuration ([`MeshConfig`]), the node
//! ([`Mesh`]), status types ([`status`]) and a deterministic simulator ([`sim`]).

#![forbid(unsafe_code)]

pub mod codec;
mod config;
mod connection;
pub mod endpoints;
mod gossip;
pub mod maker;
mod node;
pub mod peer;
pub mod protocol;
pub mod routes;
pub mod sim;
pub mod status;
pub mod topology;

pub use codec::{DEFAULT_MAX_FRAME_LEN, DecodeError, FrameDecoder, FrameError, encode_frame};
pub use config::{ConfigError, MeshConfig, Timers};
pub use connection::{CloseReason, ConnId, ConnectionState, Direction, Neighbour, Refused};
pub use endpoints::EndpointError;
pub use maker::{Backoff, TargetSource, TargetState};
pub use node::{Action, Event, Mesh, Transmit};
pub use peer::{Nickname, NicknameTooLong, ParsePeerNameError, PeerName};
pub use protocol::{
    ConnectionRecord, Endpoint, EndpointDigest, EndpointRecord, HandshakeError, Hello, Message,
    PeerDigest, PeerRecord, SUPPORTED_VERSIONS, VersionRange, negotiate,
};
pub use routes::RouteTable;
pub use status::MeshStatus;
