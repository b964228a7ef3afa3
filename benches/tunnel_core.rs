//! Micro-benches of the `tunnel` crate's per-frame work, single-threaded, no sockets:
//!
//! - `vxlan`: encapsulate + decapsulate one inner frame (64 B and 1500 B), ns per frame;
//! - `segment`: cut one 64 KiB TCPv4 TSO super-frame into 45 VXLAN datagrams (Gbit/s of
//!   inner TCP payload);
//! - `coalesce`: merge those 45 decapsulated segments back into one super-frame (Gbit/s).
//!
//! Run: `cargo bench -p weft --bench tunnel_core` (numbers in docs/ come from there).
//! Criterion reports bytes/s in GiB/s; × 8.59 gives Gbit/s.

// Bench setup builds known-good frames; failing to must abort the bench loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tunnel::vxlan::{self, Vni, VxlanHeader};
use tunnel::{Coalescer, segment};
use wire::checksum;
use wire::ethernet::{self, EtherType};
use wire::ipv4::{Ipv4Repr, protocol};
use wire::tcp::flags;
use wire::{Mac, VnetHdr, vnet};

/// MSS of a 1500-byte path with TCP timestamps, as Linux picks it.
const MSS: usize = 1448;
/// 45 segments: the size Linux's TCP hands a veth under bulk load (65160 bytes).
const SUPER_PAYLOAD: usize = 45 * MSS;
/// Overlay path MTU (1500 − 50 would cut smaller; use the container MTU the MSS came from).
const PATH_MTU: usize = 1500;

/// A TSO super-frame (TCPv4, timestamps) as a container's stack hands it over.
fn super_frame(payload_len: usize) -> (VnetHdr, Vec<u8>) {
    let tcp_hl = 32;
    let l4_len = tcp_hl + payload_len;
    let mut f = vec![0u8; 14 + 20 + l4_len];
    ethernet::write_header(
        &mut f,
        Mac([2, 0, 0, 0, 0, 2]),
        Mac([2, 0, 0, 0, 0, 1]),
        EtherType::IPV4,
    )
    .unwrap();
    let (src, dst) = (Ipv4Addr::new(10, 32, 0, 1), Ipv4Addr::new(10, 32, 0, 2));
    Ipv4Repr {
        src,
        dst,
        protocol: protocol::TCP,
        ttl: 64,
        tos: 0,
        ident: 1,
        dont_fragment: true,
        payload_len: l4_len,
    }
    .write(&mut f[14..])
    .unwrap();
    let t = &mut f[34..];
    t[0..2].copy_from_slice(&40000u16.to_be_bytes());
    t[2..4].copy_from_slice(&5201u16.to_be_bytes());
    t[4..8].copy_from_slice(&1u32.to_be_bytes());
    t[8..12].copy_from_slice(&1u32.to_be_bytes());
    t[12] = ((tcp_hl / 4) as u8) << 4;
    t[13] = flags::ACK | flags::PSH;
    t[14..16].copy_from_slice(&502u16.to_be_bytes());
    t[20..32].copy_from_slice(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
    for (i, b) in t[tcp_hl..].iter_mut().enumerate() {
        *b = (i * 7) as u8;
    }
    let pseudo = checksum::pseudo_header_v4(src, dst, protocol::TCP, l4_len as u16);
    t[16..18].copy_from_slice(&pseudo.fold().to_be_bytes());
    let hdr = VnetHdr {
        flags: vnet::F_NEEDS_CSUM,
        gso_type: vnet::GSO_TCPV4,
        hdr_len: (34 + tcp_hl) as u16,
        gso_size: MSS as u16,
        csum_start: 34,
        csum_offset: 16,
    };
    (hdr, f)
}

fn bench_vxlan(c: &mut Criterion) {
    let vni = Vni::new(0x12_3456).unwrap();
    let mut group = c.benchmark_group("vxlan");
    for inner_len in [64usize, 1500] {
        let inner = vec![0x5au8; inner_len];
        let mut buf = vec![0u8; inner_len + vxlan::VXLAN_HEADER_LEN];
        group.throughput(Throughput::Elements(1));
        group.bench_function(format!("encap_decap_{inner_len}B"), |b| {
            b.iter(|| {
                let n = vxlan::encapsulate(vni, black_box(&inner), &mut buf).unwrap();
                let (got, frame) = vxlan::decap(black_box(&buf[..n])).unwrap();
                black_box((got, frame.len()))
            })
        });
    }
    group.finish();
}

fn bench_segment(c: &mut Criterion) {
    let (hdr, frame) = super_frame(SUPER_PAYLOAD);
    let prefix = VxlanHeader::new(Vni::new(1).unwrap()).to_bytes();
    let mut out = Vec::new();
    let mut group = c.benchmark_group("segment");
    group.throughput(Throughput::Bytes(SUPER_PAYLOAD as u64));
    group.bench_function("tcpv4_64KiB_mss1448", |b| {
        b.iter(|| {
            let s = segment(&hdr, black_box(&frame), PATH_MTU, &prefix, &mut out).unwrap();
            black_box(s)
        })
    });
    group.finish();
}

fn bench_coalesce(c: &mut Criterion) {
    let (hdr, frame) = super_frame(SUPER_PAYLOAD);
    let mut wire = Vec::new();
    let s = segment(&hdr, &frame, PATH_MTU, &[], &mut wire).unwrap();
    let segments: Vec<&[u8]> = wire.chunks(s.stride).collect();
    assert_eq!(segments.len(), 45);
    let mut coalescer = Coalescer::new();
    let mut group = c.benchmark_group("coalesce");
    group.throughput(Throughput::Bytes(SUPER_PAYLOAD as u64));
    group.bench_function("tcpv4_45x1448", |b| {
        b.iter(|| {
            let mut emitted = 0usize;
            let mut emit = |_: u64, v: &VnetHdr, f: &[u8]| {
                emitted += f.len() + usize::from(v.gso_size);
            };
            for seg in &segments {
                coalescer.push(7, black_box(seg), &mut emit);
            }
            coalescer.flush(&mut emit);
            black_box(emitted)
        })
    });
    group.finish();
    let merged = coalescer.counters();
    assert_eq!(merged.super_frames_out * 44, merged.segments_merged);
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
    targets = bench_vxlan, bench_segment, bench_coalesce
}
criterion_main!(benches);
