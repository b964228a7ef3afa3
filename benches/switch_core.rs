//! Frames per second through the switch's per-frame decision (`Switch::handle_frame`), with
//! no I/O: the known-unicast (learning-hit) path, a broadcast flood to 8 ports, the ARP
//! proxy, IPv4 group delivery, and learning under a MAC flood (every frame a new source,
//! the table full, so every frame evicts).
//!
//! Run: `cargo bench -p weft --bench switch_core` (add `-- --quick` for a short run).
//! Criterion's "thrpt" column is frames per second.

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use switch::{NetworkId, PortId, PortKind, Switch, SwitchConfig, Verdict};
use wire::Mac;
use wire::arp::{ArpOp, ArpRepr};
use wire::ethernet::{EtherType, write_header};
use wire::ipv4::{Ipv4Repr, protocol};

const NET: NetworkId = NetworkId(1);

/// Unwraps a setup step; a bench whose setup fails reports why and exits.
fn setup<T, E: std::fmt::Display>(r: Result<T, E>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => {
            eprintln!("switch_core bench setup failed: {what}: {e}");
            std::process::exit(2)
        }
    }
}

fn mac(n: u8) -> Mac {
    Mac([0x02, 0x42, 0, 0, 0, n])
}

fn ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 32, 0, n)
}

/// An IPv4/UDP-sized frame of `len` bytes from `src` to `dst`.
fn frame(dst: Mac, src: Mac, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len];
    let _ = write_header(&mut f, dst, src, EtherType::IPV4);
    f
}

/// A switch with 8 local ports and 2 peers in one network, and the stations on ports 1
/// and 2 learned.
fn switch() -> (Switch, Instant) {
    let now = Instant::now();
    let mut sw = setup(Switch::new(SwitchConfig::default(), now), "default config");
    for p in 1..=8 {
        sw.add_port(PortId(p), NET, PortKind::Local);
    }
    for p in 9..=10 {
        sw.add_port(PortId(p), NET, PortKind::Remote);
    }
    let mut egress = Vec::with_capacity(16);
    let mut reply = [0u8; 64];
    for p in 1..=2u8 {
        let _ = sw.handle_frame(
            now,
            PortId(u32::from(p)),
            &frame(Mac::BROADCAST, mac(p), 64),
            &mut egress,
            &mut reply,
        );
    }
    (sw, now)
}

fn bench_paths(c: &mut Criterion) {
    let mut group = c.benchmark_group("switch_core");
    group.throughput(Throughput::Elements(1));

    for len in [64usize, 1500] {
        let (mut sw, now) = switch();
        let f = frame(mac(2), mac(1), len);
        let mut egress = Vec::with_capacity(16);
        let mut reply = [0u8; 64];
        group.bench_with_input(BenchmarkId::new("known_unicast", len), &f, |b, f| {
            b.iter(|| {
                let v = sw.handle_frame(now, PortId(1), black_box(f), &mut egress, &mut reply);
                debug_assert_eq!(v, Verdict::Forward);
                black_box(egress.len())
            })
        });

        let f = frame(Mac::BROADCAST, mac(1), len);
        group.bench_with_input(
            BenchmarkId::new("flood_broadcast_9_ports", len),
            &f,
            |b, f| {
                b.iter(|| {
                    let v = sw.handle_frame(now, PortId(1), black_box(f), &mut egress, &mut reply);
                    debug_assert_eq!(v, Verdict::Forward);
                    black_box(egress.len())
                })
            },
        );
    }

    {
        let (mut sw, now) = switch();
        setup(
            sw.add_endpoint(now, PortId(9), mac(40), &[ip(40)]),
            "endpoint",
        );
        let mut request = [0u8; 42];
        let repr = ArpRepr {
            op: ArpOp::Request,
            sender_mac: mac(1),
            sender_ip: ip(1),
            target_mac: Mac::ZERO,
            target_ip: ip(40),
        };
        setup(
            repr.write_frame(Mac::BROADCAST, &mut request),
            "arp request",
        );
        let mut egress = Vec::with_capacity(16);
        let mut reply = [0u8; 64];
        group.bench_function("arp_proxy_reply", |b| {
            b.iter(|| {
                let v =
                    sw.handle_frame(now, PortId(1), black_box(&request), &mut egress, &mut reply);
                debug_assert!(matches!(v, Verdict::Reply(42)));
                black_box(v)
            })
        });
    }

    {
        let (mut sw, now) = switch();
        let g = Ipv4Addr::new(239, 1, 2, 3);
        // Ports 3 and 4 join with IGMPv2 reports.
        for p in [3u8, 4] {
            let mut report = [0u8; 14 + 20 + 8];
            let _ = write_header(
                &mut report,
                Mac::from_ipv4_multicast(g),
                mac(p),
                EtherType::IPV4,
            );
            let _ = Ipv4Repr {
                src: ip(p),
                dst: g,
                protocol: protocol::IGMP,
                ttl: 1,
                tos: 0,
                ident: 0,
                dont_fragment: false,
                payload_len: 8,
            }
            .write(&mut report[14..]);
            let igmp = &mut report[34..];
            igmp[0] = 0x16;
            igmp[4..8].copy_from_slice(&g.octets());
            let sum = wire::checksum::checksum(igmp);
            igmp[2..4].copy_from_slice(&sum.to_be_bytes());
            let _ = sw.handle_frame(
                now,
                PortId(u32::from(p)),
                &report,
                &mut Vec::new(),
                &mut [0u8; 64],
            );
        }
        let mut data = frame(Mac::from_ipv4_multicast(g), mac(1), 64);
        let _ = Ipv4Repr {
            src: ip(1),
            dst: g,
            protocol: protocol::UDP,
            ttl: 1,
            tos: 0,
            ident: 0,
            dont_fragment: false,
            payload_len: 30,
        }
        .write(&mut data[14..]);
        let mut egress = Vec::with_capacity(16);
        let mut reply = [0u8; 64];
        group.bench_function("group_to_2_members/64", |b| {
            b.iter(|| {
                let v = sw.handle_frame(now, PortId(1), black_box(&data), &mut egress, &mut reply);
                debug_assert_eq!((v, egress.len()), (Verdict::Forward, 2));
                black_box(egress.len())
            })
        });
    }

    {
        let (mut sw, now) = switch();
        let mut f = frame(mac(2), mac(1), 64);
        let mut egress = Vec::with_capacity(16);
        let mut reply = [0u8; 64];
        let mut n = 0u32;
        group.bench_function("mac_flood_learn_and_evict/64", |b| {
            b.iter(|| {
                n = n.wrapping_add(1);
                f[8..12].copy_from_slice(&n.to_be_bytes());
                let v = sw.handle_frame(now, PortId(5), black_box(&f), &mut egress, &mut reply);
                black_box(v)
            })
        });
    }

    group.finish();
}

criterion_group!(benches, bench_paths);
criterion_main!(benches);
