//! No bytes can make the switch panic, and every verdict keeps its invariants: seeded random
//! frames and mutations of well-formed ones, from every kind of port, with time passing.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};
use switch::{NetworkId, PortId, PortKind, SwitchConfig, Verdict};
use wire::Mac;

#[test]
fn random_and_mutated_frames_never_panic_and_keep_verdict_invariants() {
    let mut h = Harness::new(SwitchConfig {
        mac_capacity: 64,
        neighbour_capacity: 64,
        group_capacity: 16,
        ..SwitchConfig::default()
    });
    let ports: [(u32, NetworkId, PortKind); 6] = [
        (1, NET_A, PortKind::Local),
        (2, NET_A, PortKind::Local),
        (3, NET_A, PortKind::Remote),
        (4, NET_A, PortKind::Remote),
        (5, NET_B, PortKind::Local),
        (6, NET_B, PortKind::Remote),
    ];
    let info: HashMap<u32, (NetworkId, PortKind)> =
        ports.iter().map(|&(p, n, k)| (p, (n, k))).collect();
    for &(p, n, k) in &ports {
        h.sw.add_port(PortId(p), n, k);
    }
    let seeds = [
        data(Mac::BROADCAST, mac(1), 64),
        data(mac(2), mac(1), 128),
        who_has((mac(1), ip(1)), ip(2)),
        to_group((mac(1), ip(1)), std::net::Ipv4Addr::new(239, 1, 1, 1)),
        igmp_v2_report((mac(1), ip(1)), std::net::Ipv4Addr::new(239, 1, 1, 1)),
        igmp_v3_report(
            (mac(1), ip(1)),
            &[(4, std::net::Ipv4Addr::new(239, 2, 2, 2))],
        ),
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut forwarded = 0u32;
    for i in 0..50_000u32 {
        let mut frame = if i % 2 == 0 {
            let len = (rng.next_u32() % 120) as usize;
            let mut f = vec![0u8; len];
            rng.fill_bytes(&mut f);
            f
        } else {
            let mut f = seeds[(rng.next_u32() as usize) % seeds.len()].clone();
            for _ in 0..(rng.next_u32() % 4) {
                let at = (rng.next_u32() as usize) % f.len();
                f[at] = rng.next_u32() as u8;
            }
            let cut = (rng.next_u32() as usize) % (f.len() + 8);
            f.truncate(cut);
            f
        };
        if i % 5 == 0 && frame.len() >= 12 {
            // Keep a valid unicast source often enough to reach the deeper rules.
            frame[6] = 0x02;
        }
        let ingress = 1 + rng.next_u32() % 7; // 7 is not a port
        let v = h.send(ingress, &frame);
        match v {
            Verdict::Forward => {
                forwarded += 1;
                let (net, kind) = info[&ingress];
                assert!(!h.egress.is_empty());
                for p in h.out() {
                    assert_ne!(p, ingress);
                    let (pn, pk) = info[&p];
                    assert_eq!(pn, net, "crossed networks");
                    assert!(
                        kind == PortKind::Local || pk == PortKind::Local,
                        "split horizon"
                    );
                }
            }
            Verdict::Reply(n) => {
                assert!(n <= h.reply.len());
                assert!(h.egress.is_empty());
            }
            Verdict::Drop(_) => assert!(h.egress.is_empty()),
        }
        if i % 1000 == 0 {
            h.advance(Duration::from_secs(u64::from(rng.next_u32() % 200)));
            if h.sw.poll_timeout().is_some_and(|t| t <= h.now) {
                h.sw.handle_timeout(h.now);
            }
            let mut buf = [0u8; 128];
            let mut out = Vec::new();
            while h.sw.poll_transmit(h.now, &mut buf, &mut out).is_some() {}
        }
    }
    let c = h.sw.counters();
    assert_eq!(c.frames, 50_000);
    // Every frame is counted exactly once: delivered one way, or dropped for one reason.
    let delivered = c.forwarded_unicast
        + c.flooded_unknown_unicast
        + c.flooded_broadcast
        + c.flooded_multicast
        + c.multicast_to_members
        + c.arp_proxied;
    assert_eq!(delivered + c.drops.total(), c.frames);
    assert!(
        forwarded > 1000,
        "the mutations reached the forwarding rules"
    );
    assert!(c.drops.total() > 1000);
    assert!(
        c.macs.evicted > 0,
        "the random sources overflowed the MAC table"
    );
    assert!(h.sw.mac_entries(h.now).count() <= 64);
}
