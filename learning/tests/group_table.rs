//! Behaviour of the multicast group membership table.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use learning::{GroupJoin, GroupTable, GroupTableConfig, NetworkId, PortId};

const NET: NetworkId = NetworkId(1);
const OTHER_NET: NetworkId = NetworkId(2);
const G: Ipv4Addr = Ipv4Addr::new(239, 1, 2, 3);

fn table(capacity: usize) -> GroupTable {
    GroupTable::new(
        GroupTableConfig {
            membership_interval: Duration::from_secs(260),
            capacity,
        },
        3,
    )
}

fn members(t: &GroupTable, now: Instant, net: NetworkId, g: Ipv4Addr) -> Vec<PortId> {
    t.members(now, net, g).collect()
}

#[test]
fn join_leave_and_members_in_port_order() {
    let t0 = Instant::now();
    let mut t = table(16);
    assert_eq!(t.join(t0, NET, G, PortId(5)), GroupJoin::New);
    assert_eq!(t.join(t0, NET, G, PortId(2)), GroupJoin::New);
    assert_eq!(t.join(t0, NET, G, PortId(5)), GroupJoin::Refreshed);
    assert_eq!(members(&t, t0, NET, G), vec![PortId(2), PortId(5)]);
    assert!(members(&t, t0, OTHER_NET, G).is_empty());
    assert!(t.leave(NET, G, PortId(2)));
    assert!(!t.leave(NET, G, PortId(2)));
    assert_eq!(members(&t, t0, NET, G), vec![PortId(5)]);
    assert!(t.leave(NET, G, PortId(5)));
    assert!(t.is_empty());
    let c = t.counters();
    assert_eq!((c.joins, c.leaves), (2, 2));
}

#[test]
fn memberships_expire_after_the_interval_unless_refreshed() {
    let t0 = Instant::now();
    let mut t = table(16);
    t.join(t0, NET, G, PortId(1));
    t.join(t0, NET, G, PortId(2));
    t.join(t0 + Duration::from_secs(200), NET, G, PortId(2));
    let at = t0 + Duration::from_secs(260);
    assert_eq!(
        members(&t, at, NET, G),
        vec![PortId(2)],
        "expired is invisible"
    );
    let due = t.poll_timeout().unwrap();
    assert!(due <= at);
    t.handle_timeout(at);
    assert_eq!(t.memberships(NET, G).len(), 1);
    assert_eq!(t.counters().expired, 1);
    // The next deadline follows the remaining member.
    assert_eq!(t.poll_timeout(), Some(t0 + Duration::from_secs(460)));
    t.handle_timeout(t0 + Duration::from_secs(460));
    assert!(t.is_empty());
    assert_eq!(t.poll_timeout(), None);
}

#[test]
fn remove_port_ends_all_its_memberships() {
    let t0 = Instant::now();
    let mut t = table(16);
    for g in 1..=3u8 {
        t.join(t0, NET, Ipv4Addr::new(239, 0, 0, g), PortId(1));
    }
    t.join(t0, NET, Ipv4Addr::new(239, 0, 0, 1), PortId(2));
    assert_eq!(t.remove_port(PortId(1)), 3);
    assert_eq!(t.len(), 1);
    assert_eq!(
        members(&t, t0, NET, Ipv4Addr::new(239, 0, 0, 1)),
        vec![PortId(2)]
    );
}

#[test]
fn a_full_table_refuses_new_groups_until_room_expires() {
    let t0 = Instant::now();
    let mut t = table(2);
    t.join(t0, NET, Ipv4Addr::new(239, 0, 0, 1), PortId(1));
    t.join(t0, NET, Ipv4Addr::new(239, 0, 0, 2), PortId(1));
    assert_eq!(
        t.join(t0, NET, Ipv4Addr::new(239, 0, 0, 3), PortId(1)),
        GroupJoin::Refused
    );
    // Existing groups still take new members.
    assert_eq!(
        t.join(t0, NET, Ipv4Addr::new(239, 0, 0, 2), PortId(2)),
        GroupJoin::New
    );
    assert_eq!(t.counters().refused, 1);
    let later = t0 + Duration::from_secs(261);
    assert_eq!(
        t.join(later, NET, Ipv4Addr::new(239, 0, 0, 3), PortId(1)),
        GroupJoin::New
    );
}
