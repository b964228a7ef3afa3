//! Behaviour of the MAC learning table through its public API.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use learning::{MacLearn, MacTable, MacTableConfig, NetworkId, PortId};
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};
use wire::Mac;

const NET: NetworkId = NetworkId(1);
const OTHER_NET: NetworkId = NetworkId(2);
const P1: PortId = PortId(1);
const P2: PortId = PortId(2);

fn mac(n: u8) -> Mac {
    Mac([0x02, 0, 0, 0, 0, n])
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn table(capacity: usize) -> MacTable {
    MacTable::new(
        MacTableConfig {
            max_age: secs(300),
            capacity,
        },
        0x5eed,
    )
}

fn random_mac(rng: &mut ChaCha8Rng) -> Mac {
    let mut b = [0u8; 6];
    rng.fill_bytes(&mut b);
    Mac::local_from_bytes(b)
}

#[test]
fn learns_and_looks_up_within_the_network_only() {
    let t0 = Instant::now();
    let mut t = table(16);
    assert_eq!(t.learn(t0, NET, mac(1), P1), MacLearn::New);
    assert_eq!(t.learn(t0, NET, mac(1), P1), MacLearn::Refreshed);
    assert_eq!(t.lookup(t0, NET, mac(1)), Some(P1));
    assert_eq!(t.lookup(t0, OTHER_NET, mac(1)), None);
    assert_eq!(t.counters().learned, 1);
}

#[test]
fn entries_age_out_after_max_age_and_the_sweep_reclaims_them() {
    let t0 = Instant::now();
    let mut t = table(16);
    t.learn(t0, NET, mac(1), P1);
    t.learn(t0 + secs(200), NET, mac(2), P1);
    // Refreshing keeps an entry alive past the first max_age.
    t.learn(t0 + secs(250), NET, mac(1), P1);
    let at = t0 + secs(520);
    assert_eq!(t.lookup(at, NET, mac(1)), Some(P1));
    assert_eq!(
        t.lookup(at, NET, mac(2)),
        None,
        "expired entries are invisible"
    );
    assert_eq!(t.len(), 2, "not swept yet");

    // Driving the timer as a dataplane would: the expired entry is gone within max_age / 4
    // of expiring (mac(2) expired at 500 s), the live one stays.
    let sweep_bound = t0 + secs(500 + 75);
    let mut swept_at = None;
    while let Some(due) = t.poll_timeout() {
        if due > sweep_bound {
            break;
        }
        t.handle_timeout(due);
        if t.len() == 1 && swept_at.is_none() {
            swept_at = Some(due);
        }
    }
    assert!(swept_at.is_some_and(|s| s >= t0 + secs(500)));
    assert_eq!(t.len(), 1);
    assert_eq!(t.counters().expired, 1);
    let live: Vec<_> = t.entries(at).map(|e| e.mac).collect();
    assert_eq!(live, vec![mac(1)]);
}

#[test]
fn a_move_is_immediate_counted_and_reported() {
    let t0 = Instant::now();
    let mut t = table(16);
    t.learn(t0, NET, mac(1), P1);
    assert_eq!(
        t.learn(t0 + secs(1), NET, mac(1), P2),
        MacLearn::Moved { from: P1 }
    );
    assert_eq!(t.lookup(t0 + secs(1), NET, mac(1)), Some(P2));
    assert_eq!(
        t.learn(t0 + secs(2), NET, mac(1), P1),
        MacLearn::Moved { from: P2 }
    );
    assert_eq!(t.counters().moved, 2);
    assert_eq!(t.counters().learned, 1);
}

#[test]
fn pinned_entries_never_age_but_move_when_seen_elsewhere() {
    let t0 = Instant::now();
    let mut t = table(16);
    assert_eq!(t.pin(t0, NET, mac(1), P1), None);
    let much_later = t0 + secs(10 * 365 * 24 * 3600);
    t.handle_timeout(much_later);
    assert_eq!(t.lookup(much_later, NET, mac(1)), Some(P1));
    assert!(t.is_pinned(much_later, NET, mac(1)));

    // Really seen on another port: moves at once and is an ordinary learned entry there.
    assert_eq!(
        t.learn(much_later, NET, mac(1), P2),
        MacLearn::Moved { from: P1 }
    );
    assert_eq!(t.lookup(much_later, NET, mac(1)), Some(P2));
    assert!(!t.is_pinned(much_later, NET, mac(1)));
    assert_eq!(t.lookup(much_later + secs(300), NET, mac(1)), None);
}

#[test]
fn removal_is_scoped_to_the_port_it_lives_on() {
    let t0 = Instant::now();
    let mut t = table(16);
    t.pin(t0, NET, mac(1), P1);
    t.learn(t0, NET, mac(1), P2);
    // A stale withdrawal for the old port must not remove the newer entry.
    assert!(!t.remove(NET, mac(1), P1));
    assert_eq!(t.lookup(t0, NET, mac(1)), Some(P2));
    assert!(t.remove(NET, mac(1), P2));
    assert_eq!(t.lookup(t0, NET, mac(1)), None);
}

#[test]
fn remove_port_forgets_learned_and_pinned_entries_there_only() {
    let t0 = Instant::now();
    let mut t = table(16);
    t.learn(t0, NET, mac(1), P1);
    t.pin(t0, NET, mac(2), P1);
    t.learn(t0, OTHER_NET, mac(3), P1);
    t.learn(t0, NET, mac(4), P2);
    assert_eq!(t.remove_port(P1), 3);
    assert_eq!(t.lookup(t0, NET, mac(1)), None);
    assert_eq!(t.lookup(t0, NET, mac(2)), None);
    assert_eq!(t.lookup(t0, OTHER_NET, mac(3)), None);
    assert_eq!(t.lookup(t0, NET, mac(4)), Some(P2));
    // Capacity freed by the removal is usable again without evicting.
    for n in 10..25 {
        t.learn(t0, NET, mac(n), P2);
    }
    assert_eq!(t.counters().evicted, 0);
}

#[test]
fn a_random_mac_flood_evicts_oldest_first_counts_it_and_spares_active_stations() {
    let t0 = Instant::now();
    let capacity = 1024;
    let mut t = table(capacity);
    let active = [mac(1), mac(2), mac(3)];
    let pinned = mac(9);
    t.pin(t0, NET, pinned, P1);
    for m in active {
        t.learn(t0, NET, m, P1);
    }

    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let flood: Vec<Mac> = (0..capacity * 20).map(|_| random_mac(&mut rng)).collect();
    let distinct: HashSet<Mac> = flood.iter().copied().collect();
    for (i, m) in flood.iter().enumerate() {
        let now = t0 + Duration::from_millis(i as u64);
        t.learn(now, NET, *m, P2);
        // The real stations keep talking, far less often than the flood.
        if i % 256 == 0 {
            for a in active {
                t.learn(now, NET, a, P1);
            }
        }
    }
    let end = t0 + Duration::from_millis(flood.len() as u64);

    let learned_total = distinct.len() + active.len();
    let c = t.counters();
    assert_eq!(c.learned as usize, learned_total);
    assert_eq!(
        c.evicted as usize,
        learned_total - capacity,
        "every learn beyond the capacity evicts exactly one entry"
    );
    assert_eq!(
        t.len(),
        capacity + 1,
        "capacity learned entries plus the pin"
    );
    for a in active {
        assert_eq!(t.lookup(end, NET, a), Some(P1), "{a} was evicted");
    }
    assert_eq!(t.lookup(end, NET, pinned), Some(P1));
    // The survivors from the flood are the most recently learned ones.
    let newest: HashSet<Mac> = flood.iter().rev().take(capacity / 2).copied().collect();
    for m in &newest {
        assert_eq!(t.lookup(end, NET, *m), Some(P2));
    }
    let oldest = flood[..capacity].iter().filter(|m| !newest.contains(m));
    for m in oldest {
        assert_eq!(t.lookup(end, NET, *m), None);
    }
}

#[test]
fn eviction_order_is_learning_order_without_refreshes() {
    let t0 = Instant::now();
    let mut t = table(4);
    for n in 1..=4 {
        t.learn(t0, NET, mac(n), P1);
    }
    t.learn(t0, NET, mac(5), P1);
    assert_eq!(t.lookup(t0, NET, mac(1)), None);
    t.learn(t0, NET, mac(6), P1);
    assert_eq!(t.lookup(t0, NET, mac(2)), None);
    for n in 3..=6 {
        assert_eq!(t.lookup(t0, NET, mac(n)), Some(P1));
    }
    assert_eq!(t.counters().evicted, 2);
}

#[test]
fn zero_capacity_learns_nothing_but_keeps_pins() {
    let t0 = Instant::now();
    let mut t = table(0);
    t.pin(t0, NET, mac(1), P1);
    assert_eq!(t.learn(t0, NET, mac(2), P1), MacLearn::Refused);
    assert_eq!(t.lookup(t0, NET, mac(2)), None);
    assert_eq!(t.lookup(t0, NET, mac(1)), Some(P1));
    assert_eq!(t.counters().refused, 1);
}
