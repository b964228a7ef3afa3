//! Behaviour of the IP → MAC neighbour table.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use learning::{NeighbourLearn, NeighbourOrigin, NeighbourTable, NeighbourTableConfig, NetworkId};
use wire::Mac;

const NET: NetworkId = NetworkId(1);
const OTHER_NET: NetworkId = NetworkId(2);

fn mac(n: u8) -> Mac {
    Mac([0x02, 0, 0, 0, 0, n])
}

fn ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, n)
}

fn table(capacity: usize) -> NeighbourTable {
    NeighbourTable::new(
        NeighbourTableConfig {
            max_age: Duration::from_secs(300),
            capacity,
        },
        1,
    )
}

#[test]
fn learned_bindings_age_and_the_newest_claim_wins() {
    let t0 = Instant::now();
    let mut t = table(16);
    assert_eq!(t.learn(t0, NET, ip(1), mac(1)), NeighbourLearn::New);
    assert_eq!(t.lookup(t0, OTHER_NET, ip(1)), None);
    let n = t.lookup(t0, NET, ip(1)).unwrap();
    assert_eq!((n.mac, n.origin), (mac(1), NeighbourOrigin::Learned));
    assert_eq!(
        t.learn(t0, NET, ip(1), mac(2)),
        NeighbourLearn::Rebound { old: mac(1) }
    );
    assert_eq!(t.lookup(t0, NET, ip(1)).unwrap().mac, mac(2));
    assert_eq!(t.lookup(t0 + Duration::from_secs(300), NET, ip(1)), None);
    t.handle_timeout(t0 + Duration::from_secs(400));
    assert!(t.is_empty());
    let c = t.counters();
    assert_eq!((c.learned, c.rebound, c.expired), (1, 1, 1));
}

#[test]
fn static_bindings_never_age_and_are_never_overridden_by_arp() {
    let t0 = Instant::now();
    let mut t = table(16);
    t.learn(t0, NET, ip(1), mac(1));
    // The control plane's word replaces a learned binding.
    assert_eq!(t.add_static(t0, NET, ip(1), mac(7)), Some(mac(1)));
    assert_eq!(
        t.learn(t0, NET, ip(1), mac(8)),
        NeighbourLearn::StaticConflict { static_mac: mac(7) }
    );
    assert_eq!(t.learn(t0, NET, ip(1), mac(7)), NeighbourLearn::Refreshed);
    let later = t0 + Duration::from_secs(1_000_000);
    t.handle_timeout(later);
    let n = t.lookup(later, NET, ip(1)).unwrap();
    assert_eq!((n.mac, n.origin), (mac(7), NeighbourOrigin::Static));
    assert_eq!(t.counters().static_conflicts, 1);
}

#[test]
fn removing_an_endpoint_removes_only_its_static_bindings() {
    let t0 = Instant::now();
    let mut t = table(16);
    t.add_static(t0, NET, ip(1), mac(7));
    t.add_static(t0, NET, ip(2), mac(7));
    t.add_static(t0, OTHER_NET, ip(1), mac(7));
    t.add_static(t0, NET, ip(3), mac(8));
    t.learn(t0, NET, ip(4), mac(7));
    assert_eq!(t.remove_static_for(NET, mac(7)), 2);
    assert_eq!(t.lookup(t0, NET, ip(1)), None);
    assert_eq!(t.lookup(t0, OTHER_NET, ip(1)).unwrap().mac, mac(7));
    assert_eq!(t.lookup(t0, NET, ip(3)).unwrap().mac, mac(8));
    assert_eq!(t.lookup(t0, NET, ip(4)).unwrap().mac, mac(7));
}

#[test]
fn learned_bindings_are_bounded_and_static_ones_are_not_evicted() {
    let t0 = Instant::now();
    let mut t = table(8);
    t.add_static(t0, NET, ip(200), mac(200));
    for n in 0..100u8 {
        t.learn(t0, NET, ip(n), mac(n));
    }
    assert_eq!(t.counters().evicted, 92);
    assert_eq!(t.len(), 9);
    assert_eq!(t.lookup(t0, NET, ip(200)).unwrap().mac, mac(200));
    assert_eq!(t.lookup(t0, NET, ip(99)).unwrap().mac, mac(99));
    assert_eq!(t.lookup(t0, NET, ip(0)), None);
}
