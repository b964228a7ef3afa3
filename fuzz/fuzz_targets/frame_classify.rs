//! Arbitrary bytes as frames from arbitrary ports into a `Switch` with a few ports in two
//! networks: it must never panic, and every verdict must keep its invariants.
//!
//! Input: records of `[selector][len][len bytes of frame]...`. The selector's low 3 bits
//! pick the ingress (1..=6 are ports, 0 and 7 are not), its high bits how far time moves
//! first. A fresh switch per input keeps every crash reproducible from its input alone.

#![no_main]

use std::net::Ipv4Addr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use switch::{DropReason, NetworkId, PortId, PortKind, Switch, SwitchConfig, Verdict, classify};
use wire::Mac;

const PORTS: [(u32, u16, PortKind); 6] = [
    (1, 1, PortKind::Local),
    (2, 1, PortKind::Local),
    (3, 1, PortKind::Remote),
    (4, 1, PortKind::Remote),
    (5, 2, PortKind::Local),
    (6, 2, PortKind::Remote),
];

fn port_info(p: u32) -> Option<(u16, PortKind)> {
    PORTS
        .iter()
        .find(|(id, _, _)| *id == p)
        .map(|&(_, n, k)| (n, k))
}

fn start() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

fuzz_target!(|data: &[u8]| {
    let mut now = start();
    let config = SwitchConfig {
        mac_capacity: 8,
        neighbour_capacity: 8,
        group_capacity: 4,
        ..SwitchConfig::default()
    };
    let Ok(mut sw) = Switch::new(config, now) else {
        return;
    };
    for (p, n, k) in PORTS {
        sw.add_port(PortId(p), NetworkId(n), k);
    }
    let _ = sw.add_endpoint(
        now,
        PortId(3),
        Mac([2, 0, 0, 0, 0, 3]),
        &[Ipv4Addr::new(10, 0, 0, 3)],
    );
    let mut egress = Vec::with_capacity(8);
    let mut reply = [0u8; 64];
    let mut tx = [0u8; 128];
    let mut rest = data;
    while let [selector, len, tail @ ..] = rest {
        let take = usize::from(*len).min(tail.len());
        let (frame, next) = tail.split_at(take);
        rest = next;

        now += Duration::from_secs(u64::from(selector >> 3) * 10);
        if sw.poll_timeout().is_some_and(|t| t <= now) {
            sw.handle_timeout(now);
            while sw.poll_transmit(now, &mut tx, &mut egress).is_some() {}
        }

        let ingress = u32::from(selector & 7);
        let verdict = sw.handle_frame(now, PortId(ingress), frame, &mut egress, &mut reply);
        let Some((network, kind)) = port_info(ingress) else {
            assert_eq!(verdict, Verdict::Drop(DropReason::UnknownPort));
            continue;
        };
        // The switch's verdict agrees with the stand-alone classifier on malformed frames.
        if let Err(reason) = classify(frame) {
            assert_eq!(verdict, Verdict::Drop(reason));
        }
        match verdict {
            Verdict::Forward => {
                assert!(!egress.is_empty());
                for p in &egress {
                    assert_ne!(p.0, ingress, "sent back out of its ingress");
                    let (n, k) = port_info(p.0).unwrap_or_else(|| panic!("unknown egress {p:?}"));
                    assert_eq!(n, network, "crossed networks");
                    assert!(
                        kind == PortKind::Local || k == PortKind::Local,
                        "split horizon"
                    );
                }
            }
            Verdict::Reply(n) => {
                assert!(egress.is_empty());
                assert!(n <= reply.len());
                assert_eq!(kind, PortKind::Local, "proxied a request from a peer");
            }
            Verdict::Drop(_) => assert!(egress.is_empty()),
        }
        while sw.poll_event().is_some() {}
    }
    let c = sw.counters();
    assert_eq!(
        c.frames,
        c.drops.total()
            + c.forwarded_unicast
            + c.flooded_broadcast
            + c.flooded_unknown_unicast
            + c.flooded_multicast
            + c.multicast_to_members
            + c.arp_proxied
    );
});
