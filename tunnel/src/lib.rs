//! Encapsulation between weft hosts: the pure middle of the cross-host data path.
//!
//! Frames leave a host as VXLAN (RFC 7348) datagrams over UDP and arrive the same way.
//! This crate does everything between the local ports and the UDP socket that needs no
//! socket:
//!
//! - [`vxlan`]: the 8-byte header, byte-for-byte what a Linux vxlan device sends and
//!   accepts, and the encapsulation overhead that sets the overlay MTU.
//! - [`flow`]: the inner-flow hash that picks the outer UDP source port (ECMP/RSS spread).
//! - [`offload`]: cutting a container's TSO/USO super-frames into wire-sized datagrams laid
//!   out for one UDP GSO send ([`offload::segment`]), and merging received TCP segments
//!   back into super-frames for one veth write ([`offload::Coalescer`]).
//! - [`pmtu`]: what to do with a frame bigger than the overlay path (cut it, send it,
//!   or answer with ICMP "fragmentation needed"/"packet too big").
//! - [`heartbeat`] and [`monitor`]: data-path liveness probes between weft peers and the
//!   per-path state machine that turns them into `Up`/`Down`.
//! - [`crypto`]: the encrypted tunnel ("sleeve"): the password KDF, the control
//!   connection's Noise handshake and record layer, data-plane AEAD sessions with replay
//!   window and rekeying, and the tunnel datagram format (several frames per datagram,
//!   relay headers, in-tunnel heartbeats, GSO batches).
//! - [`mtu`]: the overlay MTUs of the VXLAN and encrypted paths, for the control plane
//!   and the data plane alike.
//! - [`path`]: which path (VXLAN, encrypted, relayed, none) carries a peer's frames, and
//!   why.
//!
//! Contract: no I/O, no threads, no clock reads, no randomness (except key generation
//! inside `snow`/`ring`, see [`crypto`]); time arrives as
//! [`std::time::Instant`] parameters, state machines follow quinn-proto's
//! `handle_*`/`poll_*` shape. Nothing here panics on input from the network: malformed
//! input is an error value whose `name()` is a drop-counter key. The per-frame functions
//! write into caller-owned buffers and allocate nothing once those buffers are warm.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod crypto;
pub mod flow;
pub mod heartbeat;
mod layout;
pub mod monitor;
pub mod mtu;
pub mod offload;
pub mod path;
pub mod pmtu;
mod reasons;
pub mod vxlan;

#[cfg(test)]
mod testutil;

pub use flow::{flow_hash, source_port, spread};
pub use heartbeat::{Heartbeat, HeartbeatError, HeartbeatKind, is_heartbeat};
pub use monitor::{PathCounters, PathEvent, PathMonitor, PathMonitorConfig, PathState};
pub use mtu::PathMtus;
pub use offload::{
    CoalesceCounters, Coalescer, SegmentError, Segmented, segment, segment_with_trailer,
};
pub use path::{
    Path, PathChange, PathChoice, PathPolicy, PathReason, PathSelector, PathSelectorConfig,
};
pub use pmtu::{PmtuCounters, PmtuDrop, PmtuGuard, PmtuVerdict};
pub use vxlan::{Underlay, Vni, VxlanError, VxlanHeader, decap};
