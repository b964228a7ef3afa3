//! Arbitrary bytes as IPAM messages from a neighbour: decoding, the encode/decode round
//! trip, and a node handling them (before and after the neighbour's hello, with its own
//! space and waiting requests) must never panic, and a node's own state stays valid.

#![no_main]

use std::time::{Duration, Instant};

use ipam::{Handle, InitMode, Ipam, IpamConfig, Message};
use mesh::PeerName;

fn node(now: Instant, hello: bool) -> Option<Ipam> {
    let range = "10.32.0.0/16".parse().ok()?;
    let mut config = IpamConfig::new(PeerName([2, 0, 0, 0, 0, 1]), range);
    config.init = InitMode::Consensus { electors: 1 };
    let mut ipam = Ipam::new(config, None, now, 7).ok()?;
    let deadline = now + Duration::from_secs(30);
    let _ = ipam.allocate(now, &Handle::new("a").ok()?, None, deadline);
    let peer = PeerName([2, 0, 0, 0, 0, 2]);
    ipam.handle_neighbour_up(now, peer);
    if hello {
        let hello = Message::Hello {
            range,
            ring: ipam.ring().cloned(),
        };
        ipam.handle_message(now, peer, &hello.to_bytes());
    }
    drain(&mut ipam);
    Some(ipam)
}

fn drain(ipam: &mut Ipam) {
    let _ = ipam.take_persist();
    while ipam.poll_transmit().is_some() {}
    while ipam.poll_event().is_some() {}
    let _ = ipam.poll_timeout();
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let now = Instant::now();
    // 1. The codec alone, with a round trip.
    if let Ok(message) = Message::decode(data) {
        let encoded = message.to_bytes();
        assert_eq!(Message::decode(&encoded).as_ref(), Ok(&message));
    }
    // 2. The bytes (whole, and split in two messages) from an established neighbour and
    // from one whose hello has not arrived.
    let peer = PeerName([2, 0, 0, 0, 0, 2]);
    let split = data.len() / 2;
    for hello in [true, false] {
        let Some(mut ipam) = node(now, hello) else {
            return;
        };
        for chunk in [data, &data[..split], &data[split..]] {
            ipam.handle_message(now, peer, chunk);
            drain(&mut ipam);
        }
        let later = now + Duration::from_secs(120);
        ipam.handle_timeout(later);
        drain(&mut ipam);
        let _ = ipam.status(later);
        let own = ipam.persisted();
        assert!(own.record.validate(ipam.range()).is_ok());
        let deadline = later + Duration::from_secs(1);
        if let Ok(h) = Handle::new("b") {
            let _ = ipam.allocate(later, &h, None, deadline);
        }
        drain(&mut ipam);
    }
});
