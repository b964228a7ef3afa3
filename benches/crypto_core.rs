//! Micro-benches of the encrypted tunnel's per-datagram work (`tunnel::crypto`),
//! single-threaded, no sockets:
//!
//! - `aead`: seal then open one datagram in place (ring ChaCha20-Poly1305 with the tunnel
//!   header, counter and replay window), for 1400-byte and 64-byte payloads;
//! - `super_frame`: cut one 64 KiB TCPv4 TSO super-frame into a GSO batch of sealed tunnel
//!   datagrams (`seal_super_frame`), and the same plus opening every datagram and parsing
//!   its frame record (the receive side).
//!
//! Throughput is plaintext bytes per iteration (for `aead`, each byte is sealed and
//! opened once). Run: `cargo bench -p weft --bench crypto_core`. Criterion reports GiB/s;
//! × 8.59 gives Gbit/s.

// Bench setup builds known-good inputs; failing to must abort the bench loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use etherparse::PacketBuilder;
use tunnel::crypto::datagram::{
    DatagramKind, FrameFlags, FrameHeader, HEADER_LEN, TAG_LEN, frames, overlay_mtu,
    seal_super_frame,
};
use tunnel::crypto::session::{SessionConfig, TunnelKeys, TunnelSession};
use tunnel::vxlan::{Underlay, Vni};
use wire::{VnetHdr, vnet};

/// MSS of a 1500-byte container path with TCP timestamps.
const MSS: usize = 1448;
/// 45 segments: what Linux's TCP hands a veth under bulk load.
const SUPER_PAYLOAD: usize = 45 * MSS;

fn sessions(now: Instant) -> (TunnelSession, TunnelSession) {
    let (a, b) = TunnelKeys::pair_for_testing(&[0x5a; 32]).unwrap();
    let cfg = SessionConfig::default();
    (
        TunnelSession::new(&a, 1, 2, cfg, now).unwrap(),
        TunnelSession::new(&b, 2, 1, cfg, now).unwrap(),
    )
}

/// A TCPv4 TSO super-frame with its virtio header, as a container's stack hands it over.
fn super_frame() -> (VnetHdr, Vec<u8>) {
    let payload: Vec<u8> = (0..SUPER_PAYLOAD).map(|i| (i * 7) as u8).collect();
    let builder = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([10, 32, 0, 1], [10, 32, 0, 2], 64)
        .tcp(40000, 5201, 1, 502)
        .ack(1)
        .psh();
    let mut frame = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut frame, &payload).unwrap();
    let hdr = VnetHdr {
        flags: vnet::F_NEEDS_CSUM,
        gso_type: vnet::GSO_TCPV4,
        hdr_len: 54,
        gso_size: MSS as u16,
        csum_start: 34,
        csum_offset: 16,
    };
    (hdr, frame)
}

fn bench_aead(c: &mut Criterion) {
    let now = Instant::now();
    let mut group = c.benchmark_group("aead");
    for len in [1400usize, 64] {
        let (mut tx, mut rx) = sessions(now);
        let mut buf = vec![0x33u8; HEADER_LEN + len + TAG_LEN];
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(format!("seal_open_{len}B"), |b| {
            b.iter(|| {
                tx.seal(now, DatagramKind::Frames, black_box(&mut buf))
                    .unwrap();
                let opened = rx.open(now, black_box(&mut buf)).unwrap();
                black_box(opened.plaintext.len())
            })
        });
    }
    group.finish();
}

fn bench_super_frame(c: &mut Criterion) {
    let now = Instant::now();
    let (hdr, frame) = super_frame();
    let mtu = overlay_mtu(Underlay::V4, 1500).unwrap();
    let header = FrameHeader {
        origin: [1; 6],
        destination: [2; 6],
        ttl: 16,
        flags: FrameFlags::DONT_FRAGMENT,
        vni: Vni::new(7).unwrap(),
    };
    let (mut tx, mut rx) = sessions(now);
    let mut out = Vec::new();
    let s = seal_super_frame(&mut tx, now, &hdr, &frame, &header, mtu, &mut out).unwrap();
    assert_eq!(s.count, SUPER_PAYLOAD.div_ceil(mtu - 40));

    let mut group = c.benchmark_group("super_frame");
    group.throughput(Throughput::Bytes(SUPER_PAYLOAD as u64));
    group.bench_function("seal_gso_batch_64KiB", |b| {
        b.iter(|| {
            let s = seal_super_frame(
                &mut tx,
                now,
                &hdr,
                black_box(&frame),
                &header,
                mtu,
                &mut out,
            )
            .unwrap();
            black_box(s)
        })
    });
    group.bench_function("seal_and_open_gso_batch_64KiB", |b| {
        b.iter(|| {
            let s = seal_super_frame(
                &mut tx,
                now,
                &hdr,
                black_box(&frame),
                &header,
                mtu,
                &mut out,
            )
            .unwrap();
            let mut bytes = 0;
            for dgram in out.chunks_mut(s.stride) {
                let opened = rx.open(now, dgram).unwrap();
                for record in frames(opened.plaintext) {
                    bytes += record.unwrap().1.len();
                }
            }
            black_box(bytes)
        })
    });
    group.finish();
}

fn config() -> Criterion {
    // Short runs: the bench machine is shared.
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_aead, bench_super_frame
}
criterion_main!(benches);
