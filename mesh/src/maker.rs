//! The connection maker: which addresses to dial, and when.
//!
//! Contract:
//! - Targets are explicit (`connect`, launch arguments; only `forget` removes them) or
//!   discovered (addresses other peers' records list; replaced wholesale whenever the
//!   topology changes, so targets of departed peers disappear on their own).
//! - A new target is dialled at once; each failure schedules the next attempt after
//!   [`Backoff::delay`] (×1.5 per failure from 1 s, ±50 % jitter from the caller's RNG,
//!   capped); a connection that stayed established for `reset_after` resets the backoff.
//! - Never dialled: an address known to be ours, a target whose peer is already connected,
//!   a target that failed permanently (self-connection, name collision), or anything once
//!   the node's dial budget is spent (the node derives budgets from its limits).
//! - Deterministic: targets are kept in address order and all randomness comes from the
//!   RNG passed in.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::{Rng, RngExt};
use serde::Serialize;

use crate::connection::ConnId;
use crate::peer::PeerName;

/// Retry timing for one target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// Delay after the first failure (before jitter).
    pub initial: Duration,
    /// Growth per further failure.
    pub multiplier: f64,
    /// Upper bound of any delay, jitter included.
    pub max: Duration,
    /// Relative jitter: the delay is scaled by a uniform factor in `1 ± jitter`.
    pub jitter: f64,
    /// A connection established at least this long resets the backoff.
    pub reset_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            multiplier: 1.5,
            max: Duration::from_secs(60),
            jitter: 0.5,
            reset_after: Duration::from_secs(60),
        }
    }
}

impl Backoff {
    /// The un-jittered delay after `failures` consecutive failures (≥ 1), capped at `max`.
    pub fn base_delay(&self, failures: u32) -> Duration {
        let exponent = i32::try_from(failures.saturating_sub(1)).unwrap_or(i32::MAX);
        let secs = self.initial.as_secs_f64() * self.multiplier.max(1.0).powi(exponent);
        let capped = secs.min(self.max.as_secs_f64());
        Duration::try_from_secs_f64(capped).unwrap_or(self.max)
    }

    /// The jittered delay after `failures` consecutive failures: uniform in
    /// `base × [1 - jitter, 1 + jitter]`, then capped at `max`.
    pub fn delay<R: Rng + ?Sized>(&self, failures: u32, rng: &mut R) -> Duration {
        let base = self.base_delay(failures).as_secs_f64();
        let jitter = self.jitter.clamp(0.0, 1.0);
        let factor = if jitter > 0.0 {
            rng.random_range((1.0 - jitter)..=(1.0 + jitter))
        } else {
            1.0
        };
        let secs = (base * factor).min(self.max.as_secs_f64());
        Duration::try_from_secs_f64(secs).unwrap_or(self.max)
    }
}

/// How the maker learned of a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetSource {
    /// Given by the user (`connect`, launch arguments).
    Explicit,
    /// Found in another peer's record.
    Discovered,
}

/// What the maker is doing about a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetState {
    /// A dial or handshake is in progress.
    Connecting,
    /// Its peer is connected (through this or another connection).
    Connected,
    /// The last attempt failed; another is scheduled.
    Retrying,
    /// Due, but not dialled while the connection limit or discovery degree is reached.
    Waiting,
    /// Will not be dialled again (our own address, or a name collision).
    Failed,
}

#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) explicit: bool,
    pub(crate) discovered: bool,
    pub(crate) peer: Option<PeerName>,
    pub(crate) failures: u32,
    pub(crate) attempts: u32,
    pub(crate) next_attempt: Option<Instant>,
    pub(crate) in_flight: bool,
    pub(crate) conn: Option<ConnId>,
    pub(crate) last_error: Option<String>,
    pub(crate) failed: bool,
}

impl Target {
    fn new(now: Instant) -> Self {
        Self {
            explicit: false,
            discovered: false,
            peer: None,
            failures: 0,
            attempts: 0,
            next_attempt: Some(now),
            in_flight: false,
            conn: None,
            last_error: None,
            failed: false,
        }
    }

    fn busy(&self) -> bool {
        self.failed || self.in_flight || self.conn.is_some()
    }

    pub(crate) fn state(&self, peer_connected: bool) -> TargetState {
        if self.failed {
            TargetState::Failed
        } else if self.in_flight || self.conn.is_some() {
            if peer_connected && self.conn.is_some() {
                TargetState::Connected
            } else {
                TargetState::Connecting
            }
        } else if peer_connected {
            TargetState::Connected
        } else if self.failures > 0 {
            TargetState::Retrying
        } else {
            TargetState::Waiting
        }
    }
}

/// How many dials the node allows right now.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DialBudget {
    /// For explicit targets (up to the connection limit).
    pub(crate) explicit: usize,
    /// For discovered-only targets (up to the discovery degree).
    pub(crate) discovered: usize,
}

/// The set of targets and their retry state.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionMaker {
    pub(crate) targets: BTreeMap<SocketAddr, Target>,
    our_addrs: BTreeSet<SocketAddr>,
    backoff: Backoff,
}

impl ConnectionMaker {
    pub(crate) fn new(backoff: Backoff) -> Self {
        Self {
            targets: BTreeMap::new(),
            our_addrs: BTreeSet::new(),
            backoff,
        }
    }

    /// Adds an explicit target (dialled at once); re-arms one that failed permanently,
    /// since the user asked again.
    pub(crate) fn connect(&mut self, addr: SocketAddr, now: Instant) {
        let ours = self.our_addrs.contains(&addr);
        let target = self.targets.entry(addr).or_insert_with(|| Target::new(now));
        target.explicit = true;
        if ours {
            target.failed = true;
            target.next_attempt = None;
            target.last_error = Some("this is our own address".to_owned());
        } else if target.failed {
            target.failed = false;
            target.failures = 0;
            target.next_attempt = Some(now);
        }
    }

    /// Drops the explicit mark; the target goes unless it is also discovered.
    pub(crate) fn forget(&mut self, addr: SocketAddr) -> bool {
        let Some(target) = self.targets.get_mut(&addr) else {
            return false;
        };
        let was = target.explicit;
        target.explicit = false;
        if !target.discovered {
            self.targets.remove(&addr);
        }
        was
    }

    /// Replaces the discovered set with `found` (address → owning peer).
    pub(crate) fn set_discovered(&mut self, found: &BTreeMap<SocketAddr, PeerName>, now: Instant) {
        self.targets.retain(|addr, target| {
            target.discovered = found.contains_key(addr);
            target.explicit || target.discovered
        });
        self.add_discovered(found, now);
    }

    /// Adds discovered targets without dropping any.
    pub(crate) fn add_discovered(&mut self, found: &BTreeMap<SocketAddr, PeerName>, now: Instant) {
        for (addr, peer) in found {
            if self.our_addrs.contains(addr) {
                continue;
            }
            let target = self
                .targets
                .entry(*addr)
                .or_insert_with(|| Target::new(now));
            target.discovered = true;
            target.peer = Some(*peer);
        }
    }

    fn dialable(
        &self,
        addr: &SocketAddr,
        target: &Target,
        connected: &impl Fn(PeerName) -> bool,
    ) -> bool {
        !target.busy() && !self.our_addrs.contains(addr) && !target.peer.is_some_and(connected)
    }

    /// Takes the targets due at `now`, within `budget`; marks them in flight. Explicit
    /// targets go first, in address order; discovered ones in an order shuffled by `rng`,
    /// so peers do not all pile onto the same few addresses.
    pub(crate) fn due_dials<R: Rng + ?Sized>(
        &mut self,
        now: Instant,
        mut budget: DialBudget,
        connected: impl Fn(PeerName) -> bool,
        rng: &mut R,
    ) -> Vec<SocketAddr> {
        let mut due = Vec::new();
        for explicit_pass in [true, false] {
            let mut addrs: Vec<SocketAddr> = self
                .targets
                .iter()
                .filter(|(addr, t)| {
                    t.explicit == explicit_pass
                        && t.next_attempt.is_some_and(|at| at <= now)
                        && self.dialable(addr, t, &connected)
                })
                .map(|(addr, _)| *addr)
                .collect();
            if !explicit_pass {
                // Fisher–Yates with the caller's seeded RNG.
                for i in (1..addrs.len()).rev() {
                    addrs.swap(i, rng.random_range(0..=i));
                }
            }
            for addr in addrs {
                let slot = if explicit_pass {
                    &mut budget.explicit
                } else {
                    &mut budget.discovered
                };
                if *slot == 0 {
                    break;
                }
                *slot -= 1;
                // An explicit dial also uses a discovered slot (both count connections).
                if explicit_pass {
                    budget.discovered = budget.discovered.saturating_sub(1);
                }
                if let Some(target) = self.targets.get_mut(&addr) {
                    target.in_flight = true;
                    target.attempts = target.attempts.saturating_add(1);
                    target.next_attempt = None;
                    due.push(addr);
                }
            }
        }
        due
    }

    /// The earliest moment a dial could become due, considering only target kinds that
    /// have budget.
    pub(crate) fn next_timeout(
        &self,
        budget: DialBudget,
        connected: impl Fn(PeerName) -> bool,
    ) -> Option<Instant> {
        self.targets
            .iter()
            .filter(|(_, t)| {
                if t.explicit {
                    budget.explicit > 0
                } else {
                    budget.discovered > 0
                }
            })
            .filter(|(addr, t)| self.dialable(addr, t, &connected))
            .filter_map(|(_, t)| t.next_attempt)
            .min()
    }

    /// Whether `addr` is an explicit target.
    pub(crate) fn is_explicit(&self, addr: SocketAddr) -> bool {
        self.targets.get(&addr).is_some_and(|t| t.explicit)
    }

    /// Dials issued but not yet resolved (they count towards the connection limit).
    pub(crate) fn in_flight(&self) -> usize {
        self.targets.values().filter(|t| t.in_flight).count()
    }

    fn schedule_retry<R: Rng + ?Sized>(&mut self, addr: SocketAddr, now: Instant, rng: &mut R) {
        let backoff = self.backoff;
        if let Some(target) = self.targets.get_mut(&addr) {
            target.failures = target.failures.saturating_add(1);
            target.next_attempt = Some(now + backoff.delay(target.failures, rng));
        }
    }

    /// The caller could not open a connection to `addr`.
    pub(crate) fn dial_failed<R: Rng + ?Sized>(
        &mut self,
        addr: SocketAddr,
        now: Instant,
        error: String,
        rng: &mut R,
    ) {
        let Some(target) = self.targets.get_mut(&addr) else {
            return;
        };
        if target.failed {
            return;
        }
        target.in_flight = false;
        target.last_error = Some(error);
        self.schedule_retry(addr, now, rng);
    }

    /// An outbound connection to `addr` was opened as `conn`.
    pub(crate) fn opened(&mut self, addr: SocketAddr, conn: ConnId) {
        if let Some(target) = self.targets.get_mut(&addr) {
            target.in_flight = false;
            target.conn = Some(conn);
        }
    }

    /// The connection to `addr` completed its Hello with `peer`.
    pub(crate) fn established(&mut self, addr: SocketAddr, peer: PeerName) {
        if let Some(target) = self.targets.get_mut(&addr) {
            target.peer = Some(peer);
            target.last_error = None;
        }
    }

    /// Our outbound connection `conn` to `addr` closed after being established for
    /// `established_for` (None if it never was).
    pub(crate) fn closed<R: Rng + ?Sized>(
        &mut self,
        addr: SocketAddr,
        conn: ConnId,
        now: Instant,
        established_for: Option<Duration>,
        reason: String,
        rng: &mut R,
    ) {
        let reset_after = self.backoff.reset_after;
        let Some(target) = self.targets.get_mut(&addr) else {
            return;
        };
        if target.conn != Some(conn) {
            return;
        }
        target.conn = None;
        if target.failed {
            return;
        }
        target.last_error = Some(reason);
        if established_for.is_some_and(|lived| lived >= reset_after) {
            target.failures = 0;
            target.next_attempt = Some(now);
        } else {
            self.schedule_retry(addr, now, rng);
        }
    }

    /// Never dial `addr` again (until an explicit `connect`, except for our own address).
    pub(crate) fn mark_failed(&mut self, addr: SocketAddr, reason: String) {
        if let Some(target) = self.targets.get_mut(&addr) {
            target.failed = true;
            target.in_flight = false;
            target.next_attempt = None;
            target.last_error = Some(reason);
        }
    }

    /// Remembers `addr` as one of ours.
    pub(crate) fn mark_ours(&mut self, addr: SocketAddr, reason: String) {
        self.our_addrs.insert(addr);
        self.mark_failed(addr, reason);
    }

    /// Addresses known to be ours.
    pub(crate) fn our_addrs(&self) -> &BTreeSet<SocketAddr> {
        &self.our_addrs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn addr(n: u8) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, n], 6783))
    }

    fn peer(n: u8) -> PeerName {
        PeerName([2, 0, 0, 0, 0, n])
    }

    const OPEN: DialBudget = DialBudget {
        explicit: 64,
        discovered: 64,
    };

    #[test]
    fn backoff_grows_by_half_and_caps() {
        let backoff = Backoff::default();
        assert_eq!(backoff.base_delay(1), Duration::from_secs(1));
        assert_eq!(backoff.base_delay(2), Duration::from_millis(1500));
        assert_eq!(backoff.base_delay(3), Duration::from_millis(2250));
        assert_eq!(backoff.base_delay(30), Duration::from_secs(60));
        assert_eq!(backoff.base_delay(u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn jitter_stays_within_half_either_way_and_under_the_cap() {
        let backoff = Backoff::default();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for failures in 1..40 {
            let base = backoff.base_delay(failures).as_secs_f64();
            let mut low = f64::MAX;
            let mut high: f64 = 0.0;
            for _ in 0..200 {
                let d = backoff.delay(failures, &mut rng).as_secs_f64();
                assert!(d >= base * 0.5 - 1e-9, "{d} < half of {base}");
                assert!(
                    d <= (base * 1.5).min(60.0) + 1e-9,
                    "{d} above bound for {base}"
                );
                low = low.min(d);
                high = high.max(d);
            }
            // The jitter actually spreads the delays.
            assert!(high - low > base * 0.3 || base * 1.5 > 60.0 && high - low > 0.0);
        }
    }

    #[test]
    fn new_targets_dial_at_once_and_failures_back_off() {
        let start = Instant::now();
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let mut maker = ConnectionMaker::new(Backoff::default());
        maker.connect(addr(1), start);
        assert_eq!(
            maker.due_dials(start, OPEN, |_| false, &mut ChaCha8Rng::seed_from_u64(0)),
            vec![addr(1)]
        );
        assert_eq!(maker.in_flight(), 1);
        // In flight: not dialled twice.
        assert!(
            maker
                .due_dials(start, OPEN, |_| false, &mut ChaCha8Rng::seed_from_u64(0))
                .is_empty()
        );
        let mut now = start;
        let mut previous = Duration::ZERO;
        for failure in 1..=8u32 {
            maker.dial_failed(addr(1), now, "refused".into(), &mut rng);
            let next = maker.targets[&addr(1)].next_attempt.unwrap();
            let delay = next - now;
            let base = Backoff::default().base_delay(failure);
            assert!(delay >= base / 2 && delay <= base.mul_f64(1.5));
            if failure > 3 {
                // Three failures later the base has grown 3.4×: larger despite jitter.
                assert!(delay > previous / 3);
            }
            previous = delay;
            assert!(
                maker
                    .due_dials(
                        next - Duration::from_millis(1),
                        OPEN,
                        |_| false,
                        &mut ChaCha8Rng::seed_from_u64(0)
                    )
                    .is_empty()
            );
            assert_eq!(maker.next_timeout(OPEN, |_| false), Some(next));
            now = next;
            assert_eq!(
                maker.due_dials(now, OPEN, |_| false, &mut ChaCha8Rng::seed_from_u64(0)),
                vec![addr(1)]
            );
        }
        assert_eq!(maker.targets[&addr(1)].attempts, 9);
        assert_eq!(
            maker.targets[&addr(1)].last_error.as_deref(),
            Some("refused")
        );
    }

    #[test]
    fn long_lived_connections_reset_the_backoff() {
        let start = Instant::now();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut maker = ConnectionMaker::new(Backoff::default());
        maker.connect(addr(1), start);
        for _ in 0..5 {
            maker.due_dials(start, OPEN, |_| false, &mut ChaCha8Rng::seed_from_u64(0));
            maker.dial_failed(addr(1), start, "x".into(), &mut rng);
            maker.targets.get_mut(&addr(1)).unwrap().next_attempt = Some(start);
        }
        maker.due_dials(start, OPEN, |_| false, &mut ChaCha8Rng::seed_from_u64(0));
        maker.opened(addr(1), ConnId(7));
        maker.established(addr(1), peer(1));
        let later = start + Duration::from_secs(120);
        maker.closed(
            addr(1),
            ConnId(7),
            later,
            Some(Duration::from_secs(90)),
            "eof".into(),
            &mut rng,
        );
        assert_eq!(maker.targets[&addr(1)].failures, 0);
        assert_eq!(maker.targets[&addr(1)].next_attempt, Some(later));
        // A short-lived one backs off instead.
        maker.due_dials(later, OPEN, |_| false, &mut ChaCha8Rng::seed_from_u64(0));
        maker.opened(addr(1), ConnId(8));
        maker.closed(
            addr(1),
            ConnId(8),
            later,
            Some(Duration::from_secs(1)),
            "eof".into(),
            &mut rng,
        );
        assert!(maker.targets[&addr(1)].next_attempt.unwrap() > later);
    }

    #[test]
    fn connected_peers_own_addresses_and_budgets_block_dials() {
        let start = Instant::now();
        let mut maker = ConnectionMaker::new(Backoff::default());
        let mut found = BTreeMap::new();
        found.insert(addr(1), peer(1));
        found.insert(addr(2), peer(2));
        found.insert(addr(3), peer(3));
        maker.set_discovered(&found, start);
        maker.mark_ours(addr(3), "ours".into());
        // Peer 1 is connected already.
        let dials = maker.due_dials(
            start,
            OPEN,
            |p| p == peer(1),
            &mut ChaCha8Rng::seed_from_u64(0),
        );
        assert_eq!(dials, vec![addr(2)]);
        // No budget for discovered targets: nothing, and no timeout to spin on.
        let mut maker2 = ConnectionMaker::new(Backoff::default());
        maker2.set_discovered(&found, start);
        let none = DialBudget {
            explicit: 5,
            discovered: 0,
        };
        assert!(
            maker2
                .due_dials(start, none, |_| false, &mut ChaCha8Rng::seed_from_u64(0))
                .is_empty()
        );
        assert_eq!(maker2.next_timeout(none, |_| false), None);
        // Discovery shrinking removes discovered-only targets, keeps explicit ones.
        maker2.connect(addr(1), start);
        maker2.set_discovered(&BTreeMap::new(), start);
        assert_eq!(
            maker2.targets.keys().copied().collect::<Vec<_>>(),
            vec![addr(1)]
        );
        assert!(maker2.forget(addr(1)));
        assert!(maker2.targets.is_empty());
    }

    #[test]
    fn failed_targets_stay_failed_until_connected_again_explicitly() {
        let start = Instant::now();
        let mut maker = ConnectionMaker::new(Backoff::default());
        maker.connect(addr(1), start);
        maker.due_dials(start, OPEN, |_| false, &mut ChaCha8Rng::seed_from_u64(0));
        maker.mark_failed(addr(1), "collision".into());
        let late = start + Duration::from_secs(3600);
        assert!(
            maker
                .due_dials(late, OPEN, |_| false, &mut ChaCha8Rng::seed_from_u64(0))
                .is_empty()
        );
        assert_eq!(maker.targets[&addr(1)].state(false), TargetState::Failed);
        maker.connect(addr(1), late);
        assert_eq!(
            maker.due_dials(late, OPEN, |_| false, &mut ChaCha8Rng::seed_from_u64(0)),
            vec![addr(1)]
        );
        // Our own address never comes back.
        maker.mark_ours(addr(2), "ours".into());
        maker.connect(addr(2), late);
        assert!(
            maker
                .due_dials(late, OPEN, |_| false, &mut ChaCha8Rng::seed_from_u64(0))
                .is_empty()
        );
    }
}
