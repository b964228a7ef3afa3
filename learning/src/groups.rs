//! Which ports want an IPv4 multicast group: (network, group) → member ports, from IGMP
//! snooping.
//!
//! Contract:
//! - A membership lives `membership_interval` (default 260 s = robustness 2 × query
//!   interval 125 s + query response 10 s, RFC 3376 §8.4) after the port's last report.
//! - [`GroupTable::members`] never yields an expired membership, swept or not, and reads a
//!   slice without allocating; members are kept sorted by port, so delivery order is stable.
//! - At most `capacity` groups exist; joins for more are refused and counted (a container
//!   reporting millions of groups cannot grow memory without bound). Memory is allocated
//!   only when membership changes, never per data frame.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use foldhash::fast::FixedState;

use crate::aging::is_fresh;
use crate::{NetworkId, PortId};

/// Tuning of a [`GroupTable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupTableConfig {
    /// How long a membership lives after the last report for it.
    pub membership_interval: Duration,
    /// Most (network, group) entries held at once.
    pub capacity: usize,
}

impl Default for GroupTableConfig {
    fn default() -> Self {
        Self {
            membership_interval: Duration::from_secs(260),
            capacity: 4096,
        }
    }
}

/// One port's membership of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Membership {
    /// The member port.
    pub port: PortId,
    /// When a report for the group last arrived on the port.
    pub last_report: Instant,
}

/// What a report did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupJoin {
    /// The port became a member.
    New,
    /// The port was a member; its membership was refreshed.
    Refreshed,
    /// The table is full of other groups; the join was not recorded.
    Refused,
}

/// Counts of table events since it was built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GroupCounters {
    /// New memberships.
    pub joins: u64,
    /// Memberships ended by a leave (or a v3 record with no wanted source).
    pub leaves: u64,
    /// Memberships that timed out.
    pub expired: u64,
    /// Joins refused because the table was full.
    pub refused: u64,
}

/// One group and its live members, for status views.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    /// The network the group belongs to.
    pub network: NetworkId,
    /// The multicast group.
    pub group: Ipv4Addr,
    /// Member ports, sorted.
    pub ports: Vec<PortId>,
}

/// (network, group) packed into one word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct GroupKey(u64);

impl GroupKey {
    #[inline]
    fn new(network: NetworkId, group: Ipv4Addr) -> Self {
        Self((u64::from(network.0) << 32) | u64::from(group.to_bits()))
    }

    fn network(self) -> NetworkId {
        NetworkId((self.0 >> 32) as u16)
    }

    fn group(self) -> Ipv4Addr {
        Ipv4Addr::from_bits(self.0 as u32)
    }
}

/// The multicast membership table. See the module documentation for its rules.
#[derive(Debug)]
pub struct GroupTable {
    map: HashMap<GroupKey, Vec<Membership>, FixedState>,
    config: GroupTableConfig,
    /// No membership expires before this; the sweep runs then.
    next_expiry: Option<Instant>,
    counters: GroupCounters,
}

impl GroupTable {
    /// An empty table; `hash_seed` should be random in production.
    pub fn new(config: GroupTableConfig, hash_seed: u64) -> Self {
        Self {
            map: HashMap::with_capacity_and_hasher(
                config.capacity.min(1024),
                FixedState::with_seed(hash_seed),
            ),
            config,
            next_expiry: None,
            counters: GroupCounters::default(),
        }
    }

    /// Records a report for `group` from `port` at `now`.
    pub fn join(
        &mut self,
        now: Instant,
        network: NetworkId,
        group: Ipv4Addr,
        port: PortId,
    ) -> GroupJoin {
        let key = GroupKey::new(network, group);
        if !self.map.contains_key(&key) && self.map.len() >= self.config.capacity {
            // Expired groups may be holding the room.
            if self.next_expiry.is_some_and(|due| due <= now) {
                self.sweep(now);
            }
            if self.map.len() >= self.config.capacity {
                self.counters.refused += 1;
                return GroupJoin::Refused;
            }
        }
        let members = self.map.entry(key).or_default();
        let outcome = match members.binary_search_by_key(&port, |m| m.port) {
            Ok(i) => {
                let fresh = members
                    .get(i)
                    .is_some_and(|m| is_fresh(m.last_report, now, self.config.membership_interval));
                if let Some(m) = members.get_mut(i) {
                    m.last_report = now;
                }
                if fresh {
                    GroupJoin::Refreshed
                } else {
                    self.counters.expired += 1;
                    self.counters.joins += 1;
                    GroupJoin::New
                }
            }
            Err(i) => {
                members.insert(
                    i,
                    Membership {
                        port,
                        last_report: now,
                    },
                );
                self.counters.joins += 1;
                GroupJoin::New
            }
        };
        let expires = now.checked_add(self.config.membership_interval);
        self.next_expiry = match (self.next_expiry, expires) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        outcome
    }

    /// Ends `port`'s membership of `group`; returns whether it was a member.
    pub fn leave(&mut self, network: NetworkId, group: Ipv4Addr, port: PortId) -> bool {
        let key = GroupKey::new(network, group);
        let Some(members) = self.map.get_mut(&key) else {
            return false;
        };
        let Ok(i) = members.binary_search_by_key(&port, |m| m.port) else {
            return false;
        };
        members.remove(i);
        if members.is_empty() {
            self.map.remove(&key);
        }
        self.counters.leaves += 1;
        true
    }

    /// The raw memberships of `group`, expired ones included: check
    /// [`GroupTable::is_live`] or use [`GroupTable::members`].
    #[inline]
    pub fn memberships(&self, network: NetworkId, group: Ipv4Addr) -> &[Membership] {
        self.map
            .get(&GroupKey::new(network, group))
            .map_or(&[], Vec::as_slice)
    }

    /// Whether a membership is still within the membership interval at `now`.
    #[inline]
    pub fn is_live(&self, membership: &Membership, now: Instant) -> bool {
        is_fresh(membership.last_report, now, self.config.membership_interval)
    }

    /// The ports that are live members of `group` at `now`, in port order; no allocation.
    #[inline]
    pub fn members(
        &self,
        now: Instant,
        network: NetworkId,
        group: Ipv4Addr,
    ) -> impl Iterator<Item = PortId> + '_ {
        self.memberships(network, group)
            .iter()
            .filter(move |m| self.is_live(m, now))
            .map(|m| m.port)
    }

    /// Ends every membership of `port` (detached, or its peer left); returns how many.
    /// O(n): control path only.
    pub fn remove_port(&mut self, port: PortId) -> usize {
        let mut removed = 0;
        self.map.retain(|_, members| {
            let before = members.len();
            members.retain(|m| m.port != port);
            removed += before - members.len();
            !members.is_empty()
        });
        removed
    }

    /// Forgets every group of `network`. O(n): control path only.
    pub fn remove_network(&mut self, network: NetworkId) -> usize {
        let before = self.map.len();
        self.map.retain(|key, _| key.network() != network);
        before - self.map.len()
    }

    /// Every group with at least one live member, with its live members.
    pub fn groups(&self, now: Instant) -> impl Iterator<Item = GroupEntry> + '_ {
        self.map.iter().filter_map(move |(key, members)| {
            let ports: Vec<PortId> = members
                .iter()
                .filter(|m| self.is_live(m, now))
                .map(|m| m.port)
                .collect();
            (!ports.is_empty()).then(|| GroupEntry {
                network: key.network(),
                group: key.group(),
                ports,
            })
        })
    }

    /// Groups held, including ones whose members all expired but are not swept yet.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the table holds nothing.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Counts since the table was built.
    pub fn counters(&self) -> GroupCounters {
        self.counters
    }

    /// When the earliest membership may expire.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_expiry
    }

    /// Removes expired memberships if one is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.next_expiry.is_some_and(|due| due <= now) {
            self.sweep(now);
        }
    }

    fn sweep(&mut self, now: Instant) {
        let interval = self.config.membership_interval;
        let mut expired = 0u64;
        let mut next: Option<Instant> = None;
        self.map.retain(|_, members| {
            let before = members.len();
            members.retain(|m| is_fresh(m.last_report, now, interval));
            expired += (before - members.len()) as u64;
            for m in members.iter() {
                if let Some(at) = m.last_report.checked_add(interval) {
                    next = Some(next.map_or(at, |n| n.min(at)));
                }
            }
            !members.is_empty()
        });
        self.counters.expired += expired;
        self.next_expiry = next;
    }
}
