//! The learning tables of weft's switch: where a MAC lives (`MacTable`), which MAC owns an
//! IPv4 address (`NeighbourTable`) and which ports want a multicast group (`GroupTable`).
//!
//! The contract shared by all three:
//! - Pure and deterministic: no I/O, no threads, no clock. Time comes in as `now: Instant`
//!   parameters; expiry is driven by each table's `poll_timeout()` / `handle_timeout(now)`.
//! - Lookups never return an entry that has outlived its age limit, whether or not the
//!   periodic sweep has removed it yet.
//! - Every table is bounded: a flood of new keys evicts (or is refused) in O(1) amortised
//!   time and is counted; it never grows memory without limit or scans the table per frame.
//! - Everything is keyed by [`NetworkId`] first: an entry of one network is never visible
//!   from another.
//! - The hash function is seeded by the caller, so a sender choosing keys cannot predict
//!   collisions (and tests stay deterministic).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod aging;
mod groups;
mod ids;
mod mac_table;
mod neighbour;

pub use groups::{GroupCounters, GroupEntry, GroupJoin, GroupTable, GroupTableConfig, Membership};
pub use ids::{NetworkId, PortId};
pub use mac_table::{MacCounters, MacEntry, MacLearn, MacTable, MacTableConfig};
pub use neighbour::{
    Neighbour, NeighbourCounters, NeighbourEntry, NeighbourLearn, NeighbourOrigin, NeighbourTable,
    NeighbourTableConfig,
};
