//! The per-frame path allocates nothing once the switch is set up: known unicast, floods,
//! ARP snooping and proxy, group delivery, and learning new MACs up to and beyond the
//! table's capacity (eviction). Measured with a counting global allocator in this binary.

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::*;
use switch::{PortId, PortKind, SwitchConfig, Verdict};
use wire::Mac;

#[test]
fn handle_frame_allocates_nothing_in_steady_state() {
    let mut h = Harness::new(SwitchConfig {
        mac_capacity: 256,
        neighbour_capacity: 256,
        ..SwitchConfig::default()
    });
    for p in 1..=8 {
        h.sw.add_port(PortId(p), NET_A, PortKind::Local);
    }
    h.sw.add_port(PortId(9), NET_A, PortKind::Remote);
    let g = Ipv4Addr::new(239, 5, 5, 5);
    h.sw.add_endpoint(h.now, PortId(2), mac(2), &[ip(2)])
        .unwrap();
    // Membership changes may allocate; they happen before the measurement.
    let _ = h.send(3, &igmp_v2_report((mac(3), ip(3)), g));

    let unicast = data(mac(2), mac(1), 1500);
    let broadcast = data(Mac::BROADCAST, mac(1), 64);
    let request = who_has((mac(1), ip(1)), ip(2));
    let group = to_group((mac(1), ip(1)), g);
    let arp_reply = arp(
        mac(1),
        smoltcp::wire::ArpOperation::Reply,
        (mac(4), ip(4)),
        (mac(1), ip(1)),
    );
    // 1000 distinct sources: four times the capacity, so learning evicts throughout.
    let sources: Vec<Vec<u8>> = (0..1000u32)
        .map(|i| {
            let b = i.to_be_bytes();
            data(mac(2), Mac([0x02, 0x10, b[0], b[1], b[2], b[3]]), 64)
        })
        .collect();
    // Warm up: fill the tables once so their one-time growth is behind us.
    for f in &sources {
        let _ = h.send(5, f);
    }

    // The counter does count in this binary.
    let probe = allocation_counter::measure(|| {
        std::hint::black_box(vec![0u8; 8]);
    });
    assert!(probe.count_total >= 1);

    let info = allocation_counter::measure(|| {
        for round in 0..10 {
            assert_eq!(h.send(1, &unicast), Verdict::Forward);
            assert_eq!(h.send(1, &broadcast), Verdict::Forward);
            assert!(matches!(h.send(1, &request), Verdict::Reply(_)));
            assert_eq!(h.send(1, &group), Verdict::Forward);
            let _ = h.send(4, &arp_reply);
            for f in &sources {
                let _ = h.send(5 + round % 3, f);
            }
            h.advance(Duration::from_millis(10));
        }
    });
    assert_eq!(info.count_total, 0, "{info:?}");
    assert!(h.sw.counters().macs.evicted > 1000);
}
