//! weft's IP address management with no server, sans-I/O.
//!
//! The allocation range is owned in pieces by peers. All state is a set of per-peer
//! records, each written only by its peer and merged by `(epoch, version)`; transfers of
//! space, claims of explicit addresses, the initial consensus and `rmpeer` takeovers are
//! all fields in the acting peer's own record (see `docs/IPAM.md`). One [`Ipam`] per router
//! decides everything; the shell persists [`PersistedState`] (fsync) before it sends what
//! [`Ipam::poll_transmit`] returns or answers a request, carries messages over the mesh,
//! and calls [`Ipam::handle_timeout`] at [`Ipam::poll_timeout`].
//!
//! Contract:
//! - **No address is ever handed out twice** across restarts from persisted state,
//!   partitions, rejoins and `rmpeer` (the conditions are in `docs/IPAM.md`), and no space
//!   is lost: owned + in transit + awaiting an heir = the range.
//! - Pure: no sockets, files, threads, clock reads or global randomness; `now` and the
//!   seed come in.
//! - Never panics on input from the network: malformed messages are a [`DecodeError`]
//!   (counted, the connection should be closed), inconsistent records are dropped and
//!   counted.
//!
//! Modules: address sets ([`addr_set`]), records ([`record`]), messages and their codec
//! ([`message`], [`codec`]), configuration ([`config`]), errors ([`error`]), handles
//! ([`handle`]), persistence ([`persist`]), status ([`status`]), bounds ([`limits`]), the
//! node ([`Ipam`]) and a deterministic simulator ([`sim`]).

#![forbid(unsafe_code)]

pub mod addr_set;
pub mod codec;
pub mod config;
pub mod error;
pub mod handle;
pub mod limits;
pub mod message;
mod node;
pub mod persist;
pub mod record;
pub mod sim;
pub mod status;

pub use addr_set::{AddrRange, AddrSet};
pub use codec::DecodeError;
pub use config::{ConfigError, InitMode, IpamConfig, IpamTimers};
pub use error::{AllocError, RefuseReason, RmpeerError, WaitingFor};
pub use handle::{Handle, HandleError, RequestId};
pub use message::Message;
pub use node::{Event, Ipam, Outcome, RmpeerOutcome, Transmit};
pub use persist::{PeerCache, PersistedState};
pub use record::{PeerRecord, RingId};
pub use status::IpamStatus;
