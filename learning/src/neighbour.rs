//! Which MAC owns an IPv4 address: (network, IPv4) → MAC, what the ARP proxy answers from.
//!
//! Contract:
//! - Static bindings come from endpoints weft knows (attach, gossip). They never age, and a
//!   learned binding never overrides one: an ARP claim that contradicts a static binding is
//!   refused and counted (an address conflict or a spoofing attempt), so the proxy keeps
//!   answering with the address the control plane vouches for.
//! - Learned bindings come from ARP snooping (sender bindings, gratuitous ARP). They age out
//!   after `max_age`, the newest claim wins, and at most `capacity` exist (CLOCK eviction,
//!   O(1) amortised, counted), like the MAC table.
//! - IPv6 neighbour discovery is out of scope: it is multicast and simply floods.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use wire::Mac;

use crate::NetworkId;
use crate::aging::{AgingMap, Observed};

/// Tuning of a [`NeighbourTable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighbourTableConfig {
    /// How long a learned binding stays after its last ARP message.
    pub max_age: Duration,
    /// Most learned bindings held at once.
    pub capacity: usize,
}

impl Default for NeighbourTableConfig {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(300),
            capacity: 16384,
        }
    }
}

/// Where a binding came from, which decides whether traffic may change it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NeighbourOrigin {
    /// From an endpoint the control plane knows; never aged, never overridden by ARP.
    Static,
    /// From ARP snooping; ages, the newest claim wins.
    Learned,
}

/// A binding as a lookup returns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Neighbour {
    /// The address's owner.
    pub mac: Mac,
    /// Static or learned.
    pub origin: NeighbourOrigin,
    /// When it was last confirmed.
    pub last_seen: Instant,
}

/// What snooping one ARP sender binding did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NeighbourLearn {
    /// A new learned binding.
    New,
    /// The binding was already known (static or learned); a learned one was refreshed.
    Refreshed,
    /// A learned binding now points at a new MAC (the address moved to another station).
    Rebound {
        /// The MAC it pointed at before.
        old: Mac,
    },
    /// The claim contradicts a static binding and was refused.
    StaticConflict {
        /// The MAC the static binding keeps.
        static_mac: Mac,
    },
    /// The table holds no learned bindings (capacity 0).
    Refused,
}

/// Counts of table events since it was built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NeighbourCounters {
    /// New learned bindings.
    pub learned: u64,
    /// Learned bindings that moved to another MAC.
    pub rebound: u64,
    /// Learned bindings evicted to stay within the capacity.
    pub evicted: u64,
    /// Learned bindings that aged out.
    pub expired: u64,
    /// ARP claims refused because they contradict a static binding.
    pub static_conflicts: u64,
    /// Learn attempts refused because the capacity is zero.
    pub refused: u64,
}

/// One live binding, for status views.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighbourEntry {
    /// The network the address belongs to.
    pub network: NetworkId,
    /// The address.
    pub ip: Ipv4Addr,
    /// Its owner and origin.
    pub neighbour: Neighbour,
}

/// (network, IPv4) packed into one word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct NeighbourKey(u64);

impl NeighbourKey {
    #[inline]
    fn new(network: NetworkId, ip: Ipv4Addr) -> Self {
        Self((u64::from(network.0) << 32) | u64::from(ip.to_bits()))
    }

    fn network(self) -> NetworkId {
        NetworkId((self.0 >> 32) as u16)
    }

    fn ip(self) -> Ipv4Addr {
        Ipv4Addr::from_bits(self.0 as u32)
    }
}

/// The IP → MAC table. See the module documentation for its rules.
#[derive(Debug)]
pub struct NeighbourTable {
    map: AgingMap<NeighbourKey, Mac>,
}

impl NeighbourTable {
    /// An empty table; `hash_seed` should be random in production.
    pub fn new(config: NeighbourTableConfig, hash_seed: u64) -> Self {
        Self {
            map: AgingMap::new(config.capacity, config.max_age, false, hash_seed),
        }
    }

    /// Records an ARP sender binding `ip` → `mac` seen at `now`.
    pub fn learn(
        &mut self,
        now: Instant,
        network: NetworkId,
        ip: Ipv4Addr,
        mac: Mac,
    ) -> NeighbourLearn {
        match self.map.observe(NeighbourKey::new(network, ip), mac, now) {
            Observed::New => NeighbourLearn::New,
            Observed::Refreshed => NeighbourLearn::Refreshed,
            Observed::Changed(old) => NeighbourLearn::Rebound { old },
            Observed::PinnedConflict(static_mac) => NeighbourLearn::StaticConflict { static_mac },
            Observed::Refused => NeighbourLearn::Refused,
        }
    }

    /// Binds `ip` to `mac` statically (an endpoint weft knows); returns the MAC it had.
    pub fn add_static(
        &mut self,
        now: Instant,
        network: NetworkId,
        ip: Ipv4Addr,
        mac: Mac,
    ) -> Option<Mac> {
        self.map.pin(NeighbourKey::new(network, ip), mac, now)
    }

    /// Removes every static binding of `network` that points at `mac` (its endpoint is gone);
    /// returns how many. O(n): control path only.
    pub fn remove_static_for(&mut self, network: NetworkId, mac: Mac) -> usize {
        self.map
            .remove_where(|key, slot| slot.pinned && slot.value == mac && key.network() == network)
    }

    /// Removes the binding of `ip` whatever its origin; returns its MAC.
    pub fn remove(&mut self, network: NetworkId, ip: Ipv4Addr) -> Option<Mac> {
        self.map
            .remove(&NeighbourKey::new(network, ip))
            .map(|slot| slot.value)
    }

    /// Forgets every binding of `network`. O(n): control path only.
    pub fn remove_network(&mut self, network: NetworkId) -> usize {
        self.map.remove_where(|key, _| key.network() == network)
    }

    /// The owner of `ip`: a static binding, or a learned one seen within `max_age`.
    #[inline]
    pub fn lookup(&self, now: Instant, network: NetworkId, ip: Ipv4Addr) -> Option<Neighbour> {
        self.map
            .get(&NeighbourKey::new(network, ip), now)
            .map(|slot| Neighbour {
                mac: slot.value,
                origin: origin(slot.pinned),
                last_seen: slot.last_seen,
            })
    }

    /// Every live binding, in no particular order.
    pub fn entries(&self, now: Instant) -> impl Iterator<Item = NeighbourEntry> + '_ {
        self.map.iter_live(now).map(|(key, slot)| NeighbourEntry {
            network: key.network(),
            ip: key.ip(),
            neighbour: Neighbour {
                mac: slot.value,
                origin: origin(slot.pinned),
                last_seen: slot.last_seen,
            },
        })
    }

    /// Bindings held, including expired ones the sweep has not removed yet.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the table holds nothing.
    pub fn is_empty(&self) -> bool {
        self.map.len() == 0
    }

    /// Counts since the table was built.
    pub fn counters(&self) -> NeighbourCounters {
        let c = self.map.counters();
        NeighbourCounters {
            learned: c.learned,
            rebound: c.changed,
            evicted: c.evicted,
            expired: c.expired,
            static_conflicts: c.pinned_conflicts,
            refused: c.refused,
        }
    }

    /// When the next aging sweep is due, if anything can age.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.map.poll_timeout()
    }

    /// Removes aged-out bindings if the sweep is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.map.handle_timeout(now);
    }
}

fn origin(pinned: bool) -> NeighbourOrigin {
    if pinned {
        NeighbourOrigin::Static
    } else {
        NeighbourOrigin::Learned
    }
}
