//! How a peer's IPAM is configured (`--ipalloc-range`, `--ipalloc-default-subnet`,
//! `--ipalloc-init`) and its timers, checked before anything starts.

use std::time::Duration;

use ipnet::Ipv4Net;
use mesh::PeerName;
use serde::{Deserialize, Serialize};

use crate::limits;

/// How the initial ownership of the range is decided (`--ipalloc-init`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InitMode {
    /// Single-decree Paxos among `electors` peers (a quorum is `electors / 2 + 1`);
    /// `electors: 1` is a ring of one, owning the whole range at once. Every peer launched
    /// together must use the same number, at least the number of peers launched with
    /// consensus.
    Consensus {
        /// How many electors take part.
        electors: usize,
    },
    /// The ring is these peers' equal shares, no consensus; the same list on every peer.
    Seed(Vec<PeerName>),
    /// Owns nothing, never votes, allocates by asking for space.
    Observer,
}

impl std::fmt::Display for InitMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Consensus { electors } => write!(f, "consensus={electors}"),
            Self::Seed(names) => {
                f.write_str("seed=")?;
                for (i, n) in names.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{n}")?;
                }
                Ok(())
            }
            Self::Observer => f.write_str("observer"),
        }
    }
}

/// Timers of the IPAM node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpamTimers {
    /// How long an allocation may wait (for consensus, space or a grant) when the caller
    /// does not say: the shell passes `now + allocation_deadline` as the deadline.
    pub allocation_deadline: Duration,
    /// A non-lowest elector proposes after this long with no consensus progress; a
    /// proposer retries with a higher ballot after it (±50% jitter).
    pub proposer_retry: Duration,
    /// A space request or claim unanswered this long (donor reachable but silent) moves
    /// on to the next donor, or is asked again.
    pub request_retry: Duration,
    /// Interval of the digest exchange with each neighbour (anti-entropy; a lost message
    /// is repaired within it).
    pub anti_entropy: Duration,
    /// How long a peer must have been unreachable before we ack its removal: what it
    /// sent just before dying (flushed by its kernel) may arrive after the mesh reports
    /// it unreachable, and the ack must cover it.
    pub ack_grace: Duration,
}

impl Default for IpamTimers {
    fn default() -> Self {
        Self {
            allocation_deadline: Duration::from_secs(30),
            proposer_retry: Duration::from_secs(2),
            request_retry: Duration::from_secs(3),
            anti_entropy: Duration::from_secs(60),
            ack_grace: Duration::from_secs(2),
        }
    }
}

/// Everything [`crate::Ipam::new`] needs besides persisted state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpamConfig {
    /// This peer's mesh name.
    pub name: PeerName,
    /// The allocation range (`--ipalloc-range`, default `10.32.0.0/12`).
    pub range: Ipv4Net,
    /// Where `allocate` without a subnet allocates (`--ipalloc-default-subnet`, default the
    /// whole range).
    pub default_subnet: Ipv4Net,
    /// How the initial ownership is decided.
    pub init: InitMode,
    /// Timers.
    pub timers: IpamTimers,
}

impl IpamConfig {
    /// Weft's default range, `10.32.0.0/12` (as Weave's).
    pub fn default_range() -> Ipv4Net {
        Ipv4Net::new(std::net::Ipv4Addr::new(10, 32, 0, 0), 12).unwrap_or_default()
    }

    /// A ring-of-one configuration over `range` (the default subnet is the whole range).
    pub fn new(name: PeerName, range: Ipv4Net) -> Self {
        Self {
            name,
            range,
            default_subnet: range,
            init: InitMode::Consensus { electors: 1 },
            timers: IpamTimers::default(),
        }
    }

    /// Checks the configuration; every error names the offending value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.range.trunc() != self.range {
            return Err(ConfigError::RangeNotNetwork {
                range: self.range,
                network: self.range.trunc(),
            });
        }
        if self.default_subnet.trunc() != self.default_subnet {
            return Err(ConfigError::SubnetNotNetwork {
                subnet: self.default_subnet,
                network: self.default_subnet.trunc(),
            });
        }
        if !self.range.contains(&self.default_subnet) {
            return Err(ConfigError::DefaultSubnetOutsideRange {
                subnet: self.default_subnet,
                range: self.range,
            });
        }
        match &self.init {
            InitMode::Consensus { electors } => {
                if *electors == 0 || *electors > limits::MAX_PEERS {
                    return Err(ConfigError::Electors {
                        electors: *electors,
                    });
                }
            }
            InitMode::Seed(names) => {
                if names.is_empty() || names.len() > limits::MAX_PEERS {
                    return Err(ConfigError::Seed { len: names.len() });
                }
            }
            InitMode::Observer => {}
        }
        Ok(())
    }
}

/// Why a configuration or persisted state cannot start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The range has host bits set.
    #[error("IP allocation range {range} is not a network address; did you mean {network}?")]
    RangeNotNetwork {
        /// As given.
        range: Ipv4Net,
        /// Its network.
        network: Ipv4Net,
    },
    /// The default subnet has host bits set.
    #[error("default subnet {subnet} is not a network address; did you mean {network}?")]
    SubnetNotNetwork {
        /// As given.
        subnet: Ipv4Net,
        /// Its network.
        network: Ipv4Net,
    },
    /// The default subnet is not inside the range.
    #[error("default subnet {subnet} is not inside the IP allocation range {range}")]
    DefaultSubnetOutsideRange {
        /// The subnet.
        subnet: Ipv4Net,
        /// The range.
        range: Ipv4Net,
    },
    /// `consensus=0` or absurdly many.
    #[error(
        "consensus needs between 1 and {} electors, not {electors}",
        limits::MAX_PEERS
    )]
    Electors {
        /// As given.
        electors: usize,
    },
    /// An empty or oversize seed list.
    #[error(
        "a seed list needs between 1 and {} peer names, not {len}",
        limits::MAX_PEERS
    )]
    Seed {
        /// Its length.
        len: usize,
    },
    /// The persisted state is for another range: changing the range needs `weft reset`.
    #[error(
        "IP allocation range mismatch: this host's saved state uses {persisted}, the launch asks for {configured}; `weft reset` to change it"
    )]
    PersistedRange {
        /// In the saved state.
        persisted: Ipv4Net,
        /// Configured now.
        configured: Ipv4Net,
    },
    /// The persisted state belongs to another peer name.
    #[error("saved IPAM state belongs to peer {persisted}, not to this peer {configured}")]
    PersistedName {
        /// In the saved state.
        persisted: PeerName,
        /// This peer.
        configured: PeerName,
    },
    /// The persisted state is from an unknown format or internally inconsistent.
    #[error("saved IPAM state is unusable: {0}")]
    PersistedInvalid(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(range: &str, subnet: &str) -> IpamConfig {
        let mut c = IpamConfig::new(PeerName([2, 0, 0, 0, 0, 1]), range.parse().unwrap());
        c.default_subnet = subnet.parse().unwrap();
        c
    }

    #[test]
    fn bad_configurations_name_the_value() {
        assert!(cfg("10.32.0.0/12", "10.32.1.0/24").validate().is_ok());
        let e = cfg("10.32.0.1/12", "10.32.0.0/12").validate().unwrap_err();
        assert_eq!(
            e.to_string(),
            "IP allocation range 10.32.0.1/12 is not a network address; did you mean 10.32.0.0/12?"
        );
        let e = cfg("10.32.0.0/12", "10.64.0.0/24").validate().unwrap_err();
        assert!(matches!(e, ConfigError::DefaultSubnetOutsideRange { .. }));
        assert!(e.to_string().contains("10.64.0.0/24"));
        let e = cfg("10.32.0.0/12", "10.0.0.0/8").validate().unwrap_err();
        assert!(matches!(e, ConfigError::DefaultSubnetOutsideRange { .. }));
        let mut c = cfg("10.32.0.0/12", "10.32.0.0/12");
        c.init = InitMode::Consensus { electors: 0 };
        assert!(matches!(c.validate(), Err(ConfigError::Electors { .. })));
        c.init = InitMode::Seed(vec![]);
        assert!(matches!(c.validate(), Err(ConfigError::Seed { .. })));
        assert_eq!(IpamConfig::default_range().to_string(), "10.32.0.0/12");
    }
}
