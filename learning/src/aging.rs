//! An aging, capacity-bounded map: the one home of the learn / age / evict policy that the
//! MAC table and the neighbour table share.
//!
//! Contract:
//! - An entry is either *learned* (from traffic) or *pinned* (from the control plane).
//!   Learned entries expire `max_age` after they were last seen and at most `capacity` of
//!   them exist. Pinned entries never expire, are never evicted and do not count against
//!   the capacity (the control plane bounds them).
//! - [`AgingMap::get`] never returns an expired learned entry, swept or not.
//! - When a new learned entry would exceed the capacity, one learned entry is evicted. The
//!   victim is chosen by CLOCK (second chance), an O(1)-amortised approximation of least
//!   recently used: learned keys wait in a queue in the order they were learned; a key seen
//!   again since it was queued goes round once more instead of being evicted. Under a flood
//!   of new keys the flood's own never-seen-again entries go first and live stations keep
//!   theirs. Removal is lazy: every queue item carries the stamp it was queued under and is
//!   skipped when the slot no longer carries that stamp. No operation scans the map per key.
//! - No allocation once built: the map and the queue are sized for `capacity` up front and
//!   the queue is compacted before it outgrows that (only pinned entries beyond the
//!   capacity can grow the map, on the control path).
//! - Expiry is swept by `handle_timeout(now)` when `poll_timeout()` says so.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

use foldhash::fast::FixedState;

/// Room for stale queue items beyond the live ones before the queue is compacted.
const QUEUE_SLACK: usize = 64;

/// What one learned observation did to the map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Observed<V> {
    /// The key was unknown (or its entry had expired): a new learned entry.
    New,
    /// Same key, same value: only the age was refreshed.
    Refreshed,
    /// The key now maps to a new value; it mapped to the old one.
    Changed(V),
    /// The key is pinned to another value and pins do not yield in this map.
    PinnedConflict(V),
    /// The capacity is zero: nothing is learned.
    Refused,
}

/// One entry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slot<V> {
    pub(crate) value: V,
    pub(crate) last_seen: Instant,
    pub(crate) pinned: bool,
    /// Seen again since it was queued: gets a second chance before eviction.
    referenced: bool,
    /// Stamp of this slot's live queue item; 0 when not queued (pinned).
    stamp: u64,
}

/// Event counts since the map was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct AgingCounters {
    pub(crate) learned: u64,
    pub(crate) changed: u64,
    pub(crate) evicted: u64,
    pub(crate) expired: u64,
    pub(crate) refused: u64,
    pub(crate) pinned_conflicts: u64,
}

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct AgingMap<K, V> {
    map: HashMap<K, Slot<V>, FixedState>,
    queue: VecDeque<(K, u64)>,
    next_stamp: u64,
    /// Number of learned (non-pinned) slots; equals the number of live queue items.
    learned: usize,
    capacity: usize,
    max_age: Duration,
    sweep_interval: Duration,
    next_sweep: Option<Instant>,
    /// Whether a learned observation may move a pinned key to a new value (MAC moves: yes;
    /// static neighbours: no).
    pins_yield: bool,
    counters: AgingCounters,
}

/// Whether a learned entry last seen at `last_seen` is still valid at `now`.
#[inline]
pub(crate) fn is_fresh(last_seen: Instant, now: Instant, max_age: Duration) -> bool {
    now.saturating_duration_since(last_seen) < max_age
}

impl<K: Copy + Eq + Hash, V: Copy + PartialEq> AgingMap<K, V> {
    /// A map for at most `capacity` learned entries that age after `max_age`.
    pub(crate) fn new(capacity: usize, max_age: Duration, pins_yield: bool, seed: u64) -> Self {
        Self {
            map: HashMap::with_capacity_and_hasher(capacity, FixedState::with_seed(seed)),
            queue: VecDeque::with_capacity(queue_limit(capacity) + 1),
            next_stamp: 1,
            learned: 0,
            capacity,
            max_age,
            sweep_interval: (max_age / 4).max(Duration::from_secs(1)),
            next_sweep: None,
            pins_yield,
            counters: AgingCounters::default(),
        }
    }

    pub(crate) fn max_age(&self) -> Duration {
        self.max_age
    }

    pub(crate) fn counters(&self) -> AgingCounters {
        self.counters
    }

    /// Number of slots, expired-but-unswept ones included.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Number of learned slots, expired-but-unswept ones included.
    #[cfg(test)]
    pub(crate) fn learned_len(&self) -> usize {
        self.learned
    }

    fn live(&self, slot: &Slot<V>, now: Instant) -> bool {
        slot.pinned || is_fresh(slot.last_seen, now, self.max_age)
    }

    /// The slot for `key` if it is pinned or still fresh.
    #[inline]
    pub(crate) fn get(&self, key: &K, now: Instant) -> Option<&Slot<V>> {
        self.map.get(key).filter(|s| self.live(s, now))
    }

    /// The slot for `key` whether or not it has expired.
    pub(crate) fn peek(&self, key: &K) -> Option<&Slot<V>> {
        self.map.get(key)
    }

    /// Records that `key` was seen with `value` at `now`.
    pub(crate) fn observe(&mut self, key: K, value: V, now: Instant) -> Observed<V> {
        let max_age = self.max_age;
        let outcome = match self.map.get_mut(&key) {
            None => Observed::New,
            Some(slot) if !(slot.pinned || is_fresh(slot.last_seen, now, max_age)) => Observed::New,
            Some(slot) if slot.value == value => {
                slot.last_seen = now;
                slot.referenced = true;
                return Observed::Refreshed;
            }
            Some(slot) if slot.pinned => {
                if !self.pins_yield {
                    self.counters.pinned_conflicts += 1;
                    return Observed::PinnedConflict(slot.value);
                }
                // The pin yields: the key becomes a learned entry at the new value below.
                self.counters.changed += 1;
                Observed::Changed(slot.value)
            }
            Some(slot) => {
                let old = slot.value;
                slot.value = value;
                slot.last_seen = now;
                slot.referenced = true;
                self.counters.changed += 1;
                return Observed::Changed(old);
            }
        };
        self.settle_learned(key, value, now, outcome)
    }

    /// Second half of [`Self::observe`]: makes `key` a learned slot holding `value`, queued,
    /// within capacity. Reached for new keys, expired slots and pins that yield.
    fn settle_learned(
        &mut self,
        key: K,
        value: V,
        now: Instant,
        outcome: Observed<V>,
    ) -> Observed<V> {
        if self.capacity == 0 {
            if matches!(outcome, Observed::Changed(_)) {
                // A yielding pin with no room to become learned is forgotten: the key's
                // traffic floods and finds it where it now is.
                self.map.remove(&key);
            }
            self.counters.refused += 1;
            return Observed::Refused;
        }
        self.compact_if_full();
        match self.map.get(&key).map(|s| s.pinned) {
            Some(false) => {
                // An expired learned slot reused in place: it stays counted in `learned`.
                self.counters.expired += 1;
                self.counters.learned += 1;
            }
            pinned_or_absent => {
                if self.learned >= self.capacity {
                    self.evict_one(now);
                }
                self.learned += 1;
                if pinned_or_absent.is_none() {
                    self.counters.learned += 1;
                }
            }
        }
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        self.queue.push_back((key, stamp));
        self.map.insert(
            key,
            Slot {
                value,
                last_seen: now,
                pinned: false,
                referenced: false,
                stamp,
            },
        );
        if self.next_sweep.is_none() {
            self.next_sweep = now.checked_add(self.sweep_interval);
        }
        outcome
    }

    /// Makes room for one learned slot by removing the CLOCK victim.
    fn evict_one(&mut self, now: Instant) {
        while let Some((key, stamp)) = self.queue.pop_front() {
            let Some(slot) = self.map.get_mut(&key) else {
                continue;
            };
            if slot.stamp != stamp || slot.pinned {
                continue;
            }
            let expired = !is_fresh(slot.last_seen, now, self.max_age);
            if slot.referenced && !expired {
                slot.referenced = false;
                let fresh_stamp = self.next_stamp;
                self.next_stamp += 1;
                slot.stamp = fresh_stamp;
                self.queue.push_back((key, fresh_stamp));
                continue;
            }
            self.map.remove(&key);
            self.learned = self.learned.saturating_sub(1);
            if expired {
                self.counters.expired += 1;
            } else {
                self.counters.evicted += 1;
            }
            return;
        }
    }

    /// Drops stale queue items once they would outgrow the queue's reserved room.
    fn compact_if_full(&mut self) {
        if self.queue.len() < queue_limit(self.capacity) {
            return;
        }
        self.drop_stale_queue_items();
    }

    /// Keeps only the queue items that are their slot's live item.
    fn drop_stale_queue_items(&mut self) {
        let map = &self.map;
        self.queue
            .retain(|(key, stamp)| map.get(key).is_some_and(|s| !s.pinned && s.stamp == *stamp));
    }

    /// Pins `key` to `value`: it no longer ages or counts against the capacity.
    /// Returns the value it had, if any.
    pub(crate) fn pin(&mut self, key: K, value: V, now: Instant) -> Option<V> {
        if let Some(slot) = self.map.get_mut(&key) {
            let old = slot.value;
            if !slot.pinned {
                self.learned = self.learned.saturating_sub(1);
            }
            *slot = Slot {
                value,
                last_seen: now,
                pinned: true,
                referenced: false,
                stamp: 0,
            };
            return Some(old);
        }
        // Keep room for every learned entry still to come, so that pins never make the
        // per-frame learn path grow the map.
        self.map
            .reserve(self.capacity.saturating_sub(self.learned).saturating_add(1));
        self.map.insert(
            key,
            Slot {
                value,
                last_seen: now,
                pinned: true,
                referenced: false,
                stamp: 0,
            },
        );
        None
    }

    /// Removes `key` whatever its kind; returns the slot it had.
    pub(crate) fn remove(&mut self, key: &K) -> Option<Slot<V>> {
        let slot = self.map.remove(key)?;
        if !slot.pinned {
            self.learned = self.learned.saturating_sub(1);
        }
        Some(slot)
    }

    /// Removes every slot for which `doomed` holds; returns how many. O(n): control path only.
    pub(crate) fn remove_where(&mut self, mut doomed: impl FnMut(&K, &Slot<V>) -> bool) -> usize {
        let mut removed = 0;
        let mut removed_learned = 0;
        self.map.retain(|k, s| {
            if doomed(k, s) {
                removed += 1;
                if !s.pinned {
                    removed_learned += 1;
                }
                false
            } else {
                true
            }
        });
        self.learned = self.learned.saturating_sub(removed_learned);
        removed
    }

    /// Every pinned or fresh slot.
    pub(crate) fn iter_live(&self, now: Instant) -> impl Iterator<Item = (&K, &Slot<V>)> + '_ {
        self.map.iter().filter(move |(_, s)| self.live(s, now))
    }

    /// When the next sweep is due, if any learned entry may expire.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.next_sweep
    }

    /// Sweeps expired learned entries if the sweep is due.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        let Some(due) = self.next_sweep else {
            return;
        };
        if now < due {
            return;
        }
        let max_age = self.max_age;
        let expired = self.remove_where(|_, s| !s.pinned && !is_fresh(s.last_seen, now, max_age));
        self.counters.expired += expired as u64;
        if self.queue.len() > self.learned.saturating_mul(2) + QUEUE_SLACK {
            self.drop_stale_queue_items();
        }
        self.next_sweep = if self.learned > 0 {
            now.checked_add(self.sweep_interval)
        } else {
            None
        };
    }
}

/// Queue length at which stale items are compacted away; the queue reserves one more.
fn queue_limit(capacity: usize) -> usize {
    capacity.saturating_mul(2).saturating_add(QUEUE_SLACK)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(capacity: usize) -> AgingMap<u32, u32> {
        AgingMap::new(capacity, Duration::from_secs(300), true, 7)
    }

    #[test]
    fn expired_entries_are_invisible_before_the_sweep_and_gone_after() {
        let t0 = Instant::now();
        let mut m = map(8);
        assert_eq!(m.observe(1, 10, t0), Observed::New);
        assert!(m.get(&1, t0 + Duration::from_secs(299)).is_some());
        assert!(m.get(&1, t0 + Duration::from_secs(300)).is_none());
        assert_eq!(m.len(), 1);
        let due = m.poll_timeout().unwrap();
        assert!(due <= t0 + Duration::from_secs(300));
        m.handle_timeout(t0 + Duration::from_secs(301));
        assert_eq!(m.len(), 0);
        assert_eq!(m.counters().expired, 1);
        assert_eq!(m.poll_timeout(), None);
    }

    #[test]
    fn reusing_an_expired_slot_counts_expiry_and_a_new_learn() {
        let t0 = Instant::now();
        let mut m = map(8);
        m.observe(1, 10, t0);
        let later = t0 + Duration::from_secs(400);
        assert_eq!(m.observe(1, 11, later), Observed::New);
        assert_eq!(m.observe(1, 11, later), Observed::Refreshed);
        assert_eq!(m.counters().expired, 1);
        assert_eq!(m.counters().learned, 2);
        assert_eq!(m.counters().changed, 0);
        assert_eq!(m.learned_len(), 1);
    }

    #[test]
    fn clock_gives_referenced_entries_a_second_chance() {
        let t0 = Instant::now();
        let mut m = map(3);
        for k in 1..=3 {
            m.observe(k, k, t0);
        }
        // 1 is seen again; the next newcomer evicts 2 (oldest unreferenced), not 1.
        m.observe(1, 1, t0);
        m.observe(4, 4, t0);
        assert!(m.get(&1, t0).is_some());
        assert!(m.get(&2, t0).is_none());
        assert_eq!(m.counters().evicted, 1);
        assert_eq!(m.learned_len(), 3);
    }

    #[test]
    fn pins_survive_everything_but_removal_and_do_not_count() {
        let t0 = Instant::now();
        let mut m = map(2);
        m.pin(100, 1, t0);
        for k in 0..50 {
            m.observe(k, k, t0);
        }
        let far = t0 + Duration::from_secs(100_000);
        m.handle_timeout(far);
        assert_eq!(m.get(&100, far).map(|s| s.value), Some(1));
        assert_eq!(m.learned_len(), 0);
        assert!(m.remove(&100).is_some());
    }

    #[test]
    fn queue_never_outgrows_its_reservation_under_churn() {
        let t0 = Instant::now();
        let mut m = map(4);
        let reserved = m.queue.capacity();
        // Keys flapping between values and pins re-queue constantly.
        for i in 0..10_000u32 {
            let k = i % 6;
            m.observe(k, i % 3, t0);
            if i % 7 == 0 {
                m.pin(k, 9, t0);
            }
        }
        assert!(m.queue.len() <= queue_limit(4));
        assert_eq!(m.queue.capacity(), reserved);
        assert!(m.learned_len() <= 4);
    }

    #[test]
    fn zero_capacity_learns_nothing() {
        let t0 = Instant::now();
        let mut m = map(0);
        assert_eq!(m.observe(1, 1, t0), Observed::Refused);
        assert!(m.get(&1, t0).is_none());
        assert_eq!(m.counters().refused, 1);
    }
}
