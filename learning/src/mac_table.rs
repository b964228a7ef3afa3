//! Where each MAC lives: (network, MAC) → port.
//!
//! Contract:
//! - A MAC seen on a new port moves there at once, is counted as a move and the move is
//!   returned to the caller. (Weave blackholed a MAC that moved *to* a host until its old
//!   entry aged out, weave#3455/#3610; weft trusts the newest evidence.)
//! - Learned entries age out `max_age` (default 300 s) after the MAC last sent a frame:
//!   lookups ignore them at once, and the sweep removes them within `max_age / 4` (at least
//!   1 s) after that.
//! - Pinned entries come from the control plane (a container weft attached, an endpoint a
//!   peer gossiped). They never age, but the data plane's evidence still wins: when the MAC
//!   shows up on another port it moves there and becomes an ordinary learned entry, because
//!   the pin described the old port only. The control plane re-pins if it learns more.
//! - At most `capacity` learned entries (default 16384), evicted least-recently-used first
//!   (CLOCK) in O(1) amortised time, counted.

use std::time::{Duration, Instant};

use wire::Mac;

use crate::aging::{AgingMap, Observed};
use crate::{NetworkId, PortId};

/// Tuning of a [`MacTable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MacTableConfig {
    /// How long a learned MAC stays after its last frame (the 802.1D default, 300 s).
    pub max_age: Duration,
    /// Most learned entries held at once; a MAC flood beyond it evicts.
    pub capacity: usize,
}

impl Default for MacTableConfig {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(300),
            capacity: 16384,
        }
    }
}

/// What learning a source MAC did, so the switch can count and report moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MacLearn {
    /// The MAC was unknown (or had aged out) and now lives on the port.
    New,
    /// The MAC was already on this port.
    Refreshed,
    /// The MAC was on another port and moved to this one at once.
    Moved {
        /// Where it was.
        from: PortId,
    },
    /// The table holds no learned entries (capacity 0); nothing was recorded.
    Refused,
}

/// Counts of table events since it was built, for `weft status` and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MacCounters {
    /// New learned entries.
    pub learned: u64,
    /// MACs that moved to another port.
    pub moved: u64,
    /// Learned entries evicted to stay within the capacity.
    pub evicted: u64,
    /// Learned entries that aged out.
    pub expired: u64,
    /// Learn attempts refused because the capacity is zero.
    pub refused: u64,
}

/// One live entry, for status views.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MacEntry {
    /// The network the MAC belongs to.
    pub network: NetworkId,
    /// The station's address.
    pub mac: Mac,
    /// The port frames for it leave by.
    pub port: PortId,
    /// When it last sent a frame (or was pinned).
    pub last_seen: Instant,
    /// Whether the control plane pinned it (it does not age).
    pub pinned: bool,
}

/// (network, MAC) packed into one word: the hot lookup hashes a single u64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct MacKey(u64);

impl MacKey {
    #[inline]
    fn new(network: NetworkId, mac: Mac) -> Self {
        let m = mac.0;
        Self(u64::from_be_bytes([
            (network.0 >> 8) as u8,
            network.0 as u8,
            m[0],
            m[1],
            m[2],
            m[3],
            m[4],
            m[5],
        ]))
    }

    fn network(self) -> NetworkId {
        NetworkId((self.0 >> 48) as u16)
    }

    fn mac(self) -> Mac {
        let b = self.0.to_be_bytes();
        Mac([b[2], b[3], b[4], b[5], b[6], b[7]])
    }
}

/// The MAC learning table. See the module documentation for its rules.
#[derive(Debug)]
pub struct MacTable {
    map: AgingMap<MacKey, PortId>,
}

impl MacTable {
    /// An empty table; `hash_seed` should be random in production (it keys the hash).
    pub fn new(config: MacTableConfig, hash_seed: u64) -> Self {
        Self {
            map: AgingMap::new(config.capacity, config.max_age, true, hash_seed),
        }
    }

    /// Records that `mac` sent a frame that arrived on `port` at `now`.
    #[inline]
    pub fn learn(&mut self, now: Instant, network: NetworkId, mac: Mac, port: PortId) -> MacLearn {
        match self.map.observe(MacKey::new(network, mac), port, now) {
            Observed::New => MacLearn::New,
            Observed::Refreshed => MacLearn::Refreshed,
            Observed::Changed(from) | Observed::PinnedConflict(from) => MacLearn::Moved { from },
            Observed::Refused => MacLearn::Refused,
        }
    }

    /// The port `mac` lives on, if it is pinned or was seen within `max_age`.
    #[inline]
    pub fn lookup(&self, now: Instant, network: NetworkId, mac: Mac) -> Option<PortId> {
        self.map
            .get(&MacKey::new(network, mac), now)
            .map(|slot| slot.value)
    }

    /// Whether `mac` is pinned (known to the control plane) where it currently lives.
    pub fn is_pinned(&self, now: Instant, network: NetworkId, mac: Mac) -> bool {
        self.map
            .get(&MacKey::new(network, mac), now)
            .is_some_and(|slot| slot.pinned)
    }

    /// Pins `mac` to `port`: an endpoint the control plane knows for sure. Returns the port it
    /// was on before, if any.
    pub fn pin(
        &mut self,
        now: Instant,
        network: NetworkId,
        mac: Mac,
        port: PortId,
    ) -> Option<PortId> {
        self.map.pin(MacKey::new(network, mac), port, now)
    }

    /// Forgets `mac` if it lives on `port` (pinned or learned); returns whether it did.
    ///
    /// Scoped by port so that a stale withdrawal (a peer saying an endpoint left after the
    /// MAC already moved elsewhere) cannot remove the newer entry.
    pub fn remove(&mut self, network: NetworkId, mac: Mac, port: PortId) -> bool {
        let key = MacKey::new(network, mac);
        if self.map.peek(&key).is_some_and(|slot| slot.value == port) {
            self.map.remove(&key);
            return true;
        }
        false
    }

    /// Forgets everything that lives on `port` (a container detached, a peer left).
    /// Returns how many entries went. O(n): control path only.
    pub fn remove_port(&mut self, port: PortId) -> usize {
        self.map.remove_where(|_, slot| slot.value == port)
    }

    /// Forgets every entry of `network`. O(n): control path only.
    pub fn remove_network(&mut self, network: NetworkId) -> usize {
        self.map.remove_where(|key, _| key.network() == network)
    }

    /// Every live entry, in no particular order.
    pub fn entries(&self, now: Instant) -> impl Iterator<Item = MacEntry> + '_ {
        self.map.iter_live(now).map(|(key, slot)| MacEntry {
            network: key.network(),
            mac: key.mac(),
            port: slot.value,
            last_seen: slot.last_seen,
            pinned: slot.pinned,
        })
    }

    /// Entries held, including expired ones the sweep has not removed yet.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the table holds nothing.
    pub fn is_empty(&self) -> bool {
        self.map.len() == 0
    }

    /// How long learned entries live.
    pub fn max_age(&self) -> Duration {
        self.map.max_age()
    }

    /// Counts since the table was built.
    pub fn counters(&self) -> MacCounters {
        let c = self.map.counters();
        MacCounters {
            learned: c.learned,
            moved: c.changed,
            evicted: c.evicted,
            expired: c.expired,
            refused: c.refused,
        }
    }

    /// When the next aging sweep is due, if anything can age.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.map.poll_timeout()
    }

    /// Removes aged-out entries if the sweep is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.map.handle_timeout(now);
    }
}
