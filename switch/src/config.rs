//! The switch's tuning knobs, their defaults, and the checks that keep them sane.

use std::time::Duration;

use wire::Mac;

/// Everything a [`crate::Switch`] can be tuned by. `Default` gives the documented defaults;
/// [`SwitchConfig::validate`] refuses values that would make the switch misbehave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SwitchConfig {
    /// How long a learned MAC stays after its last frame (default 300 s, as 802.1D).
    pub mac_max_age: Duration,
    /// Most learned MACs held at once (default 16384); beyond it the least recently used go.
    pub mac_capacity: usize,
    /// How long an ARP-learned IP → MAC binding stays (default 300 s).
    pub neighbour_max_age: Duration,
    /// Most ARP-learned bindings held at once (default 16384).
    pub neighbour_capacity: usize,
    /// How long a group membership lives after the last report (default 260 s = robustness
    /// 2 × query interval + 10 s response time, RFC 3376).
    pub membership_interval: Duration,
    /// Most multicast groups tracked at once (default 4096); joins beyond it are refused.
    pub group_capacity: usize,
    /// Answer ARP requests for known addresses instead of flooding them (default on).
    pub arp_proxy: bool,
    /// Send IPv4 group traffic only to member ports (default on). Off: multicast floods
    /// like broadcast, as in Weave.
    pub igmp_snooping: bool,
    /// Send IGMP general queries to local ports so hosts keep reporting (default on). Without
    /// a querier, memberships time out while hosts are still members.
    pub igmp_querier: bool,
    /// Time between general queries (default 125 s, RFC 3376).
    pub query_interval: Duration,
    /// Delay before the first general query after start (default 1 s), so memberships of
    /// containers that outlived a restart are relearned quickly.
    pub startup_query_delay: Duration,
    /// Source MAC of the switch's own frames (IGMP queries). Must be a valid unicast source.
    pub querier_mac: Mac,
    /// Seed of the tables' hash function. Production passes a random value so that no sender
    /// can pick colliding MACs; tests pass a constant to stay deterministic.
    pub hash_seed: u64,
    /// Most undelivered [`crate::SwitchEvent`]s kept; further ones are counted as lost.
    pub event_capacity: usize,
}

impl Default for SwitchConfig {
    fn default() -> Self {
        Self {
            mac_max_age: Duration::from_secs(300),
            mac_capacity: 16384,
            neighbour_max_age: Duration::from_secs(300),
            neighbour_capacity: 16384,
            membership_interval: Duration::from_secs(260),
            group_capacity: 4096,
            arp_proxy: true,
            igmp_snooping: true,
            igmp_querier: true,
            query_interval: Duration::from_secs(125),
            startup_query_delay: Duration::from_secs(1),
            // Locally administered; the router replaces it with one derived from its name.
            querier_mac: Mac([0x02, 0x77, 0x65, 0x66, 0x74, 0x01]),
            hash_seed: 0,
            event_capacity: 256,
        }
    }
}

/// A configuration value the switch cannot work with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// An age or interval below one second would make the switch forget everything or spin
    /// on its timers.
    #[error("{field} is {value:?}: it must be at least 1 s")]
    TooShort {
        /// The offending setting.
        field: &'static str,
        /// Its value.
        value: Duration,
    },
    /// Hosts answer queries only every query interval, so memberships must outlive it.
    #[error(
        "membership_interval ({membership:?}) must be longer than query_interval ({query:?}), \
         or memberships expire between queries"
    )]
    MembershipShorterThanQuery {
        /// The membership interval.
        membership: Duration,
        /// The query interval.
        query: Duration,
    },
    /// The querier's frames need a source address a station may use.
    #[error("querier_mac {0} is not a unicast address: use a locally administered one like 02:..")]
    InvalidQuerierMac(Mac),
}

impl SwitchConfig {
    /// Checks the values; the switch refuses to start with any of these errors.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let second = Duration::from_secs(1);
        for (field, value) in [
            ("mac_max_age", self.mac_max_age),
            ("neighbour_max_age", self.neighbour_max_age),
            ("membership_interval", self.membership_interval),
            ("query_interval", self.query_interval),
        ] {
            if value < second {
                return Err(ConfigError::TooShort { field, value });
            }
        }
        if self.igmp_querier {
            if self.membership_interval <= self.query_interval {
                return Err(ConfigError::MembershipShorterThanQuery {
                    membership: self.membership_interval,
                    query: self.query_interval,
                });
            }
            if !self.querier_mac.is_valid_source() {
                return Err(ConfigError::InvalidQuerierMac(self.querier_mac));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        assert_eq!(SwitchConfig::default().validate(), Ok(()));
        let c = SwitchConfig {
            mac_max_age: Duration::ZERO,
            ..SwitchConfig::default()
        };
        let err = c.validate().unwrap_err();
        assert!(err.to_string().contains("mac_max_age"));
        let c = SwitchConfig {
            query_interval: Duration::from_secs(300),
            ..SwitchConfig::default()
        };
        assert!(matches!(
            c.validate(),
            Err(ConfigError::MembershipShorterThanQuery { .. })
        ));
        let c = SwitchConfig {
            querier_mac: Mac::BROADCAST,
            ..SwitchConfig::default()
        };
        assert_eq!(
            c.validate(),
            Err(ConfigError::InvalidQuerierMac(Mac::BROADCAST))
        );
    }
}
