//! What can go wrong, in words a user can act on: allocation errors, what a waiting
//! request waits for, why a peer is refused, why `rmpeer` is refused.

use std::fmt;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use mesh::PeerName;
use serde::{Deserialize, Serialize};

use crate::handle::Handle;
use crate::record::RingId;

/// What a waiting allocation waits for (shown in errors and `weft status ipam`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum WaitingFor {
    /// The initial consensus has not decided yet.
    Consensus {
        /// Electors needed.
        quorum: usize,
        /// Electors configured.
        electors: usize,
        /// Electors heard so far (ourselves included).
        heard: Vec<PeerName>,
    },
    /// An observer (or a peer with no consensus role) waits to learn the ring.
    Ring,
    /// A restarted peer waits for its first exchange of records with any peer.
    FirstSync,
    /// Asking `donor` for space in `subnet`.
    Space {
        /// The donor asked.
        donor: PeerName,
        /// The subnet.
        subnet: Ipv4Net,
    },
    /// Every peer with free space in `subnet` is unreachable.
    Donors {
        /// The subnet.
        subnet: Ipv4Net,
        /// Who owns free space there.
        owners: Vec<PeerName>,
    },
    /// Asking `owner` to grant `addr`.
    Grant {
        /// The address.
        addr: Ipv4Addr,
        /// Its owner.
        owner: PeerName,
    },
    /// Our records do not yet account for all of the subnet (an owner's record has not
    /// reached us).
    Records {
        /// The subnet.
        subnet: Ipv4Net,
    },
    /// No record we hold owns the address yet (our view is still filling in).
    Owner {
        /// The address.
        addr: Ipv4Addr,
    },
    /// The address is in the space of a removed peer whose takeover is not complete.
    Takeover {
        /// The address.
        addr: Ipv4Addr,
        /// The removed peer.
        removed: PeerName,
        /// Its heir.
        heir: PeerName,
    },
}

impl fmt::Display for WaitingFor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Consensus {
                quorum,
                electors,
                heard,
            } => {
                write!(
                    f,
                    "awaiting consensus on the initial IP allocation: quorum {quorum} of {electors}, heard {}",
                    names(heard)
                )?;
                let missing = electors.saturating_sub(heard.len());
                if missing > 0 {
                    write!(
                        f,
                        "; waiting for {missing} more peer{} launched with the same --ipalloc-init",
                        if missing == 1 { "" } else { "s" }
                    )?;
                }
                Ok(())
            }
            Self::Ring => f.write_str(
                "waiting to learn the IP allocation ring from a peer (this peer does not vote)",
            ),
            Self::FirstSync => {
                f.write_str("waiting for the first exchange of IPAM records with a peer")
            }
            Self::Space { donor, subnet } => write!(f, "asking peer {donor} for space in {subnet}"),
            Self::Donors { subnet, owners } => write!(
                f,
                "the free space in {subnet} is owned only by unreachable peers {}",
                names(owners)
            ),
            Self::Grant { addr, owner } => {
                write!(f, "asking peer {owner}, which owns {addr}, to grant it")
            }
            Self::Owner { addr } => write!(f, "waiting to learn which peer owns {addr}"),
            Self::Records { subnet } => {
                write!(
                    f,
                    "waiting for the IPAM records of the peers that own {subnet}"
                )
            }
            Self::Takeover {
                addr,
                removed,
                heir,
            } => write!(
                f,
                "{addr} belongs to removed peer {removed}, whose space peer {heir} has not taken over yet"
            ),
        }
    }
}

fn names(list: &[PeerName]) -> String {
    if list.is_empty() {
        return "none".into();
    }
    list.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why an allocation or claim failed. Each message names what the user needs to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    /// No free address anywhere in the subnet.
    #[error("no free address in {subnet}: every address of it is allocated")]
    SubnetExhausted {
        /// The subnet.
        subnet: Ipv4Net,
    },
    /// The subnet is not inside the allocation range.
    #[error("subnet {subnet} is not inside the IP allocation range {range}")]
    SubnetOutsideRange {
        /// The subnet.
        subnet: Ipv4Net,
        /// The range.
        range: Ipv4Net,
    },
    /// The subnet has host bits set.
    #[error("subnet {subnet} is not a network address; did you mean {network}?")]
    SubnetNotNetwork {
        /// As given.
        subnet: Ipv4Net,
        /// Its network.
        network: Ipv4Net,
    },
    /// The address is not managed by IPAM (outside the range).
    #[error("{addr} is outside the IP allocation range {range}; IPAM does not manage it")]
    AddressOutsideRange {
        /// The address.
        addr: Ipv4Net,
        /// The range.
        range: Ipv4Net,
    },
    /// The network or broadcast address of its subnet.
    #[error("{addr} is the network or broadcast address of {subnet}")]
    AddressReserved {
        /// The address.
        addr: Ipv4Addr,
        /// Its subnet.
        subnet: Ipv4Net,
    },
    /// A local handle holds the address.
    #[error("{addr} is already allocated to {handle} on this host")]
    InUseByHandle {
        /// The address.
        addr: Ipv4Addr,
        /// Its holder.
        handle: Handle,
    },
    /// Another peer's container holds the address.
    #[error("{addr} is in use by a container on peer {peer}")]
    InUseByPeer {
        /// The address.
        addr: Ipv4Addr,
        /// The peer whose space it is in (or who claimed it).
        peer: PeerName,
    },
    /// The address is kept for a removed peer's containers.
    #[error(
        "{addr} is kept for the containers of removed peer {removed}; `weft rmpeer --free-addresses {removed}` releases it"
    )]
    ReservedForRemoved {
        /// The address.
        addr: Ipv4Addr,
        /// The removed peer.
        removed: PeerName,
    },
    /// The owner of the address cannot be reached, so it cannot grant it.
    #[error(
        "{addr} is owned by unreachable peer {peer}; wait for it to come back or `weft rmpeer {peer}` if it is gone"
    )]
    OwnerUnreachable {
        /// The address.
        addr: Ipv4Addr,
        /// The owner.
        peer: PeerName,
    },
    /// The deadline passed while waiting.
    #[error("timed out {waiting_for}")]
    DeadlinePassed {
        /// What it was waiting for.
        waiting_for: WaitingFor,
    },
    /// This peer was removed with `rmpeer` and has rejoined with no space.
    #[error("this peer was removed by `rmpeer` (its space went to peer {heir}); retry")]
    Removed {
        /// The heir.
        heir: PeerName,
    },
    /// A neighbour uses another range and nothing else can allocate.
    #[error("cannot allocate: {reason}")]
    Refused {
        /// The refusal.
        reason: RefuseReason,
    },
    /// `release` for the handle came while it waited.
    #[error("released while waiting")]
    Cancelled,
    /// A bound on held state was reached.
    #[error("too many {what} on this peer (at most {max})")]
    Limit {
        /// What.
        what: &'static str,
        /// The bound.
        max: usize,
    },
}

/// Why we refuse a neighbour's IPAM (reported on both sides as [`crate::Event::Refuse`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum RefuseReason {
    /// Different `--ipalloc-range`.
    #[error("IP allocation range mismatch: ours {ours}, theirs {theirs}")]
    RangeMismatch {
        /// Ours.
        ours: Ipv4Net,
        /// Theirs.
        theirs: Ipv4Net,
    },
    /// Two rings initialised independently.
    #[error(
        "IP allocation initialised separately (ours seeded by {ours}, theirs by {theirs}); `weft reset` one side to join them"
    )]
    RingMismatch {
        /// Ours.
        ours: RingId,
        /// Theirs.
        theirs: RingId,
    },
}

/// Why `rmpeer` was refused; nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RmpeerError {
    /// `rmpeer` of ourselves.
    #[error("cannot rmpeer this peer itself; `weft reset` on it instead")]
    Ourselves,
    /// The peer can be reached: it is alive.
    #[error("peer {0} is reachable; stop it first (rmpeer is for peers that are gone)")]
    Reachable(PeerName),
    /// We hold no IPAM record of the peer.
    #[error("peer {0} is unknown to IPAM here")]
    Unknown(PeerName),
    /// A restarted peer has not yet exchanged records, so its view may be stale.
    #[error(
        "IPAM has not exchanged records with any peer since this router started; retry when connected"
    )]
    NotSynced,
    /// No ring yet.
    #[error("IP allocation is not initialised yet (no ring); nothing to take over")]
    NoRing,
    /// The takeover of this peer is decided by a tombstone we cannot outvote any more.
    #[error("too many removals in progress (at most {max})")]
    Limit {
        /// The bound.
        max: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_well() {
        let a = PeerName([2, 0, 0, 0, 0, 1]);
        let w = WaitingFor::Consensus {
            quorum: 2,
            electors: 3,
            heard: vec![a],
        };
        assert_eq!(
            w.to_string(),
            "awaiting consensus on the initial IP allocation: quorum 2 of 3, heard 02:00:00:00:00:01; waiting for 2 more peers launched with the same --ipalloc-init"
        );
        let e = AllocError::DeadlinePassed {
            waiting_for: WaitingFor::Space {
                donor: a,
                subnet: "10.32.0.0/24".parse().unwrap(),
            },
        };
        assert_eq!(
            e.to_string(),
            "timed out asking peer 02:00:00:00:00:01 for space in 10.32.0.0/24"
        );
        let r = RefuseReason::RangeMismatch {
            ours: "10.32.0.0/12".parse().unwrap(),
            theirs: "10.40.0.0/16".parse().unwrap(),
        };
        assert_eq!(
            r.to_string(),
            "IP allocation range mismatch: ours 10.32.0.0/12, theirs 10.40.0.0/16"
        );
        let j = serde_json::to_string(&w).unwrap();
        assert_eq!(serde_json::from_str::<WaitingFor>(&j).unwrap(), w);
    }
}
