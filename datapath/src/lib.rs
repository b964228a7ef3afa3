//! weft's data-plane core: everything between the local ports and the tunnel sockets that
//! decides — path choice per peer (VXLAN, the encrypted tunnel, a relay), fallback and
//! recovery, relaying around dead links, flooding along broadcast trees, tunnel packing,
//! PMTU answers, merging peers known by address and by name — with no socket and no clock.
//!
//! The shape is quinn-proto's `Endpoint` and weft's own `switch` and `mesh`: frames,
//! datagrams, commands and `now` go in through [`Core`]'s `handle_*` methods; events come
//! out of [`Core::poll_event`], the next deadline out of [`Core::poll_timeout`]. Transmits
//! come out through a [`Sink`] the caller passes in, smoltcp-style (its `Device`): a
//! transmit borrows the bytes where they were made — the caller's receive buffer, the
//! coalescer's merged run, the segmentation and sealing scratch — and those live only
//! while the core holds them, so handing them over in place is what keeps the frame path
//! free of copies. The weft binary's `src/dataplane` is the shell around this crate: a
//! mio loop and the syscalls, nothing else.
//!
//! Contract:
//! - Pure: no sockets, threads, files or clock reads; time arrives as `Instant`
//!   parameters. `#![forbid(unsafe_code)]`, and this crate cannot reach the binary's
//!   `io` or `sys` modules (it does not depend on it).
//! - The per-frame path allocates nothing after warm-up, takes no lock and batches: one
//!   transmit per local port per receive batch, one per VXLAN source socket for the
//!   batch's small datagrams, one GSO transmit per super-frame, small tunnel frames
//!   packed per peer per batch (`tests/no_alloc.rs`).
//! - Every drop has a [`DropReason`] and a slot in a fixed array; status lists every
//!   reason, zeros too.
//! - Each deadline is reported by the state machine that periodic work drives, as it is
//!   driven ([`Core::handle_timeout`]), so the wait cannot include a machine nothing
//!   drives (the idle password router that spun a core).
//!
//! [`sim`] runs several cores over a simulated underlay (links that drop, block a UDP
//! port, delay and reorder) and simulated containers, deterministically.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod boundary;
mod control;
mod core;
mod drops;
mod egress;
mod events;
mod ingress;
mod local;
mod peers;
mod ports;
mod relay;
pub mod sim;
mod status;
mod timers;
mod transmit;
mod vxlan_out;

pub use boundary::{
    CoreConfig, KnownEndpoint, LocalPortDef, LocalPortKind, MeshUpdate, NetworkDef,
};
pub use core::Core;
pub use drops::{Counter, Counters, DropCounters, DropReason, OwnDrop};
pub use events::{DirectPath, Event};
pub use ports::PortCounters;
pub use status::{PathWhy, PeerCounters, PeerStatus, PortStatus, Status, TableSizes};
pub use transmit::{RxSocket, Sink, Transmit, UdpSource};
