//! The IPAM messages exchanged between neighbours over the mesh's control connections.
//!
//! On a new connection each side sends [`Message::Hello`], its own record in
//! [`Message::Records`], then a [`Message::Digest`] of every record it holds. A peer that
//! receives a digest pushes the records the sender lacks, then [`Message::SyncDone`]: since
//! a connection delivers in order, `SyncDone` proves to its receiver that the sender holds
//! the receiver's own record and that the receiver holds everything the sender knew (the
//! "first exchange of records" a restarted peer waits for). Later changes are pushed as
//! `Records`; a periodic `Digest` repairs anything lost.

use ipnet::Ipv4Net;
use mesh::PeerName;

use crate::record::{PeerRecord, RingId};

/// The version of one record a peer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DigestEntry {
    /// Whose record.
    pub peer: PeerName,
    /// Its epoch.
    pub epoch: u32,
    /// Its version.
    pub version: u64,
}

/// One IPAM message (see the module doc for the exchange).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Sent first on every connection: the range and the ring, so a mismatch is refused
    /// before any record is merged.
    Hello {
        /// The sender's range.
        range: Ipv4Net,
        /// The sender's ring, if decided.
        ring: Option<RingId>,
    },
    /// Every record the sender holds, by version.
    Digest(Vec<DigestEntry>),
    /// Records (a push of changes, or the answer to a digest).
    Records(Vec<PeerRecord>),
    /// The answer to a digest is complete.
    SyncDone,
}

impl Message {
    /// A short name for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Hello { .. } => "Hello",
            Self::Digest(_) => "Digest",
            Self::Records(_) => "Records",
            Self::SyncDone => "SyncDone",
        }
    }
}
