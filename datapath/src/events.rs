//! What the core reports happened, for the shell to log (and the simulator to check).

use std::net::SocketAddr;

use mesh::PeerName;
use tunnel::{PathChange, PathEvent};

/// Which direct path a heartbeat monitor watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectPath {
    /// Cleartext VXLAN.
    Vxlan,
    /// The encrypted tunnel.
    Tunnel,
}

/// One thing that happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A direct path to a peer came up or went down (its heartbeats say so).
    Heartbeat {
        /// The peer's address on that path.
        addr: SocketAddr,
        /// Which path.
        path: DirectPath,
        /// Up or down.
        event: PathEvent,
    },
    /// Frames to a peer take another path.
    PathChanged {
        /// The peer, when it has a name.
        peer: Option<PeerName>,
        /// The neighbour relaying its frames, when the new path is a relay.
        relay: Option<PeerName>,
        /// The choice before and now.
        change: PathChange,
    },
}

/// Events held for [`crate::Core::poll_event`]; older ones are dropped (and counted)
/// when nobody drains them.
pub(crate) const EVENT_QUEUE: usize = 256;
