//! weft's forwarding core: given the port a frame arrived on and its bytes, decide where it
//! goes. Pure and sans-I/O (quinn-proto's shape): no sockets, threads, clocks or
//! randomness; the dataplane feeds frames and time in and carries verdicts out.
//!
//! One [`Switch`] per router serves every weft network on the host. Its ports are local
//! veths and the host's TAP ([`PortKind::Local`]) and one virtual port per (peer, network)
//! ([`PortKind::Remote`]); frames never cross networks. It learns MACs (moves take effect
//! at once), floods broadcast and unknown unicast with split horizon, answers ARP for known
//! addresses itself ([`Verdict::Reply`]), snoops IGMP so group traffic reaches members only,
//! and acts as IGMP querier. Every frame it does not deliver gets a named, counted
//! [`DropReason`]; no input bytes can make it panic.
//!
//! The per-frame path ([`Switch::handle_frame`]) reads fixed offsets through `wire`'s checked
//! views, allocates nothing and takes no lock.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod arp;
mod classify;
mod config;
mod counters;
mod events;
mod igmp;
mod ports;
mod switch;
mod verdict;

pub use arp::REPLY_MIN_LEN;
pub use classify::{Classified, FrameKind, classify};
pub use config::{ConfigError, SwitchConfig};
pub use counters::SwitchCounters;
pub use events::SwitchEvent;
pub use learning::{
    GroupEntry, MacEntry, Neighbour, NeighbourEntry, NeighbourOrigin, NetworkId, PortId,
};
pub use ports::{FloodSet, PortInfo, PortKind, PortView};
pub use switch::{Switch, SwitchError};
pub use verdict::{DropCounters, DropReason, Verdict};
