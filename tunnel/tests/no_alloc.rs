//! The encrypted tunnel's per-datagram path allocates nothing once its buffers are warm:
//! sealing and opening datagrams, packing frames with `DatagramBuilder`, parsing records,
//! in-tunnel heartbeats, and cutting a TSO super-frame into a sealed GSO batch. Measured
//! with a counting global allocator in this test binary.

// Test setup builds known-good inputs; failing to must fail the test loudly.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use etherparse::PacketBuilder;
use tunnel::crypto::datagram::{
    DatagramBuilder, DatagramKind, FrameFlags, FrameHeader, HEADER_LEN, TAG_LEN, frames,
    parse_heartbeat, seal_heartbeat, seal_super_frame,
};
use tunnel::crypto::session::{SessionConfig, TunnelKeys, TunnelSession};
use tunnel::heartbeat::{Heartbeat, HeartbeatKind};
use tunnel::vxlan::Vni;
use wire::{VnetHdr, vnet};

fn super_frame(payload_len: usize, mss: u16) -> (VnetHdr, Vec<u8>) {
    let payload: Vec<u8> = (0..payload_len).map(|i| (i * 13) as u8).collect();
    let builder = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([10, 32, 0, 1], [10, 32, 0, 2], 64)
        .tcp(40000, 5201, 1, 502)
        .ack(1);
    let mut frame = Vec::new();
    builder.write(&mut frame, &payload).unwrap();
    let hdr = VnetHdr {
        flags: vnet::F_NEEDS_CSUM,
        gso_type: vnet::GSO_TCPV4,
        hdr_len: 54,
        gso_size: mss,
        csum_start: 34,
        csum_offset: 16,
    };
    (hdr, frame)
}

#[test]
fn per_datagram_path_allocates_nothing() {
    let t0 = Instant::now();
    // Rekey every 50 datagrams so epoch changes happen inside the measurement too.
    let cfg = SessionConfig {
        rekey_after_messages: 50,
        ..SessionConfig::default()
    };
    let (ka, kb) = TunnelKeys::pair_for_testing(&[1; 32]).unwrap();
    let mut tx = TunnelSession::new(&ka, 1, 2, cfg, t0).unwrap();
    let mut rx = TunnelSession::new(&kb, 2, 1, cfg, t0).unwrap();
    let header = FrameHeader {
        origin: [1; 6],
        destination: [2; 6],
        ttl: 16,
        flags: FrameFlags::NONE,
        vni: Vni::new(5).unwrap(),
    };
    let small = vec![0x11u8; 200];
    let (vnet_hdr, big) = super_frame(60_000, 1448);
    let ping = Heartbeat {
        kind: HeartbeatKind::Ping,
        sender: [1; 6],
        seq: 1,
        timestamp_ns: 2,
    };
    let mut batch = Vec::with_capacity(16 * 1024);
    let mut gso = Vec::new();
    let mut single = vec![0u8; HEADER_LEN + 1400 + TAG_LEN];

    let mut round = |now: Instant| {
        single.fill(7);
        tx.seal(now, DatagramKind::Frames, &mut single).unwrap();
        assert_eq!(rx.open(now, &mut single).unwrap().plaintext.len(), 1400);

        batch.clear();
        let mut b = DatagramBuilder::begin(&mut batch, 1472);
        while b.push_frame(&header, &small).is_ok() {}
        let r = b.seal(&mut tx, now).unwrap();
        let opened = rx.open(now, &mut batch[r]).unwrap();
        assert_eq!(frames(opened.plaintext).count(), 6);

        batch.clear();
        let r = seal_heartbeat(&mut tx, now, &ping, 1421, &mut batch).unwrap();
        let opened = rx.open(now, &mut batch[r]).unwrap();
        assert_eq!(parse_heartbeat(opened.plaintext).unwrap(), ping);

        let s = seal_super_frame(&mut tx, now, &vnet_hdr, &big, &header, 1407, &mut gso).unwrap();
        for d in gso.chunks_mut(s.stride) {
            let opened = rx.open(now, d).unwrap();
            assert!(frames(opened.plaintext).all(|r| r.is_ok()));
        }
        rx.handle_timeout(now);
    };
    // Warm up: buffers reach their largest size.
    round(t0);

    let probe = allocation_counter::measure(|| {
        std::hint::black_box(vec![0u8; 8]);
    });
    assert!(probe.count_total >= 1, "the counter counts in this binary");

    let info = allocation_counter::measure(|| {
        for i in 1..20 {
            round(t0 + Duration::from_millis(i));
        }
    });
    assert_eq!(info.count_total, 0, "{info:?}");
    assert!(
        tx.counters().send_rekeys > 10,
        "epochs changed during the measurement"
    );
}
