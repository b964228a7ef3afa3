//! Cost of the IPAM core.
//!
//! `cargo bench -p ipam --bench ipam_core` (criterion): CPU time of one allocation from a
//! peer's own space (allocate, take the persisted state, encode the gossip to two
//! neighbours) with 0, 1000 and 10 000 addresses already allocated there; and of one
//! allocation from a neighbour's space (the request, the donor's gift, the adoption:
//! both nodes' work, messages through the real codec).
//!
//! `cargo bench -p ipam --bench ipam_core -- --report` instead prints deterministic
//! figures from the simulator at 100, 300 and 1000 peers: IPAM state bytes per peer,
//! gossip bytes per allocation (from own space and from a neighbour's), and the virtual
//! latency of an allocation from a neighbour's space. Counts, not timings: the same on
//! any machine.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion};
use ipam::sim::{NodeId, Sim, SimConfig, node_name};
use ipam::{Event, Handle, InitMode, Ipam, IpamConfig, IpamTimers, Outcome};
use ipnet::Ipv4Net;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn range() -> Ipv4Net {
    "10.32.0.0/12".parse().unwrap()
}

fn handle(i: usize) -> Handle {
    Handle::new(format!("h{i}")).unwrap()
}

/// Persist, then encode every transmit (what the shell does after each call).
fn flush(n: &mut Ipam) -> usize {
    let mut bytes = 0;
    if let Some(p) = n.take_persist() {
        black_box(&p);
    }
    while let Some(t) = n.poll_transmit() {
        bytes += t.bytes.len();
    }
    while n.poll_event().is_some() {}
    bytes
}

fn own_space(c: &mut Criterion) {
    let mut group = c.benchmark_group("allocate_own_space");
    for existing in [0usize, 1000, 10_000] {
        let now = Instant::now();
        let mut n = Ipam::new(IpamConfig::new(node_name(0), range()), None, now, 1).unwrap();
        n.handle_neighbour_up(now, node_name(1));
        n.handle_neighbour_up(now, node_name(2));
        let deadline = now + Duration::from_secs(30);
        for i in 0..existing {
            let _ = n.allocate(now, &handle(i), None, deadline);
        }
        flush(&mut n);
        let h = handle(usize::MAX);
        group.bench_with_input(BenchmarkId::from_parameter(existing), &existing, |b, _| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    let out = n.allocate(now, &h, None, deadline);
                    black_box(flush(&mut n));
                    total += start.elapsed();
                    assert!(matches!(out, Outcome::Done(_)));
                    n.release(now, &h, None);
                    flush(&mut n);
                }
                total
            });
        });
    }
    group.finish();
}

/// Delivers messages between `a` and `b` until both are quiet; returns bytes moved.
fn pump(a: &mut Ipam, b: &mut Ipam, now: Instant) -> usize {
    let mut bytes = 0;
    loop {
        let moved = step(a, b, now) + step(b, a, now);
        if moved == 0 {
            return bytes;
        }
        bytes += moved;
    }
}

fn step(from: &mut Ipam, to: &mut Ipam, now: Instant) -> usize {
    let _ = from.take_persist();
    let mut bytes = 0;
    while let Some(t) = from.poll_transmit() {
        bytes += t.bytes.len();
        to.handle_message(now, from.name(), &t.bytes);
    }
    bytes
}

/// A ring of one and a peer that joined it with no space, synced.
fn joined_pair(now: Instant) -> (Ipam, Ipam) {
    let mut a = Ipam::new(IpamConfig::new(node_name(0), range()), None, now, 1).unwrap();
    let mut cb = IpamConfig::new(node_name(1), range());
    cb.init = InitMode::Consensus { electors: 2 };
    let mut b = Ipam::new(cb, None, now, 2).unwrap();
    a.handle_neighbour_up(now, b.name());
    b.handle_neighbour_up(now, a.name());
    pump(&mut a, &mut b, now);
    assert!(b.ring().is_some());
    (a, b)
}

fn from_neighbour(c: &mut Criterion) {
    let now = Instant::now();
    let deadline = now + Duration::from_secs(30);
    let h = handle(1);
    // A fresh pair each time (untimed), so the state does not grow across iterations.
    c.bench_function("allocate_from_neighbour", |bench| {
        bench.iter_batched(
            || joined_pair(now),
            |(mut a, mut b)| {
                let out = b.allocate(now, &h, None, deadline);
                assert!(matches!(out, Outcome::Pending(_)), "{out:?}");
                pump(&mut a, &mut b, now);
                let got = std::iter::from_fn(|| b.poll_event())
                    .any(|e| matches!(e, Event::Allocated { .. }));
                assert!(got);
                (a, b)
            },
            criterion::BatchSize::SmallInput,
        );
    });
}

/// A ring of one joined by `n - 1` peers, 100 at a time, each through a random peer of
/// an earlier batch; then chords to an average degree of about 8; then every peer allocates once
/// (the joiners by asking for space).
fn scale_sim(n: usize, seed: u64) -> Sim {
    let cfg = SimConfig {
        range: range(),
        cache_save_probability: 0.0,
        timers: IpamTimers {
            // Anti-entropy is reported separately (a digest per neighbour per interval).
            anti_entropy: Duration::from_secs(3600),
            ..IpamTimers::default()
        },
        ..SimConfig::default()
    };
    let mut sim = Sim::new(seed, cfg, Instant::now());
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    sim.add_node(InitMode::Consensus { electors: 1 }).unwrap();
    while sim.len() < n {
        let mut links = Vec::new();
        let earlier = sim.len();
        for _ in 0..(n - sim.len()).min(100) {
            // Launched naming a peer that already runs (and knows the ring).
            let via = NodeId(rng.random_range(0..earlier));
            let id = sim.add_node(InitMode::Consensus { electors: 2 }).unwrap();
            links.push((id, via));
        }
        sim.link_many(&links);
        sim.run_for(Duration::from_secs(1));
    }
    let mut chords = Vec::new();
    while chords.len() < n * 3 {
        let (a, b) = (rng.random_range(0..n), rng.random_range(0..n));
        if a != b {
            chords.push((NodeId(a), NodeId(b)));
        }
    }
    sim.link_many(&chords);
    sim.run_for(Duration::from_secs(2));
    for batch in (0..n).collect::<Vec<_>>().chunks(100) {
        for &i in batch {
            sim.allocate(NodeId(i), "warm", None).unwrap();
        }
        sim.run_for(Duration::from_secs(2));
    }
    assert!(
        sim.run_until(Duration::from_secs(60), Sim::converged),
        "no convergence"
    );
    sim.check().unwrap();
    sim
}

fn report() {
    println!("IPAM at scale (deterministic simulator, seed 42, one-way delay 1-20 ms).");
    println!("A ring of one joined by the others (100 at a time, each through a random peer of");
    println!(
        "an earlier batch), chords to an average degree of about 8, every peer allocated once (joiners"
    );
    println!("by asking for space). State = encoded records a peer holds. Gossip = all IPAM");
    println!("bytes every peer sent for one allocation until every peer holds every record.");
    println!();
    println!(
        "| peers | state bytes/peer | bytes/record | gossip bytes/alloc, own space (total, per peer) | gossip bytes/alloc, neighbour's space (total, per peer) | virtual latency from neighbour | digest bytes/neighbour/interval |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for n in [100usize, 300, 1000] {
        let started = Instant::now();
        let mut sim = scale_sim(n, 42);
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let live: Vec<NodeId> = (0..n).map(NodeId).collect();
        let state: usize = live.iter().map(|i| sim.state_bytes(*i)).sum();
        let per_peer = state as f64 / n as f64;
        let per_record = per_peer / n as f64;
        // From own space.
        let k = 20;
        let before = sim.bytes_sent();
        let with_space: Vec<NodeId> = live
            .iter()
            .copied()
            .filter(|i| sim.node(*i).unwrap().record().free().len() > 2)
            .collect();
        for j in 0..k {
            let who = with_space[rng.random_range(0..with_space.len())];
            let o = sim.allocate(who, &format!("own{j}"), None).unwrap();
            assert!(matches!(o, Outcome::Done(_)), "{o:?}");
        }
        assert!(sim.run_until(Duration::from_secs(60), Sim::converged));
        let own = (sim.bytes_sent() - before) as f64 / f64::from(k);
        // From a neighbour's space: in a /28 the peer owns nothing of.
        let base = u32::from(range().network());
        let mut latency = Duration::ZERO;
        let before = sim.bytes_sent();
        let k2 = 10;
        for j in 0..k2 {
            let who = live[rng.random_range(0..n)];
            let owned = sim.node(who).unwrap().record().owned.clone();
            let subnet = (1..65_000u32)
                .map(|s| Ipv4Net::new((base + 16 * s).into(), 28).unwrap())
                .find(|s| owned.count_in(ipam::AddrRange::of_net(*s)) == 0)
                .unwrap();
            let start = sim.now();
            let o = sim.allocate(who, &format!("nb{j}"), Some(subnet)).unwrap();
            let Outcome::Pending(req) = o else {
                panic!("{o:?}")
            };
            assert!(sim.run_until(Duration::from_secs(10), |s| {
                s.answers(who).contains_key(&req)
            }));
            assert!(sim.answers(who)[&req].is_ok());
            latency += sim.now() - start;
            assert!(sim.run_until(Duration::from_secs(60), Sim::converged));
        }
        let from_nb = (sim.bytes_sent() - before) as f64 / f64::from(k2);
        let digest = 1 + 4 + 18 * n;
        sim.check().unwrap();
        println!(
            "| {n} | {per_peer:.0} | {per_record:.0} | {own:.0} ({:.0}) | {from_nb:.0} ({:.0}) | {:.0} ms | {digest} |",
            own / n as f64,
            from_nb / n as f64,
            latency.as_secs_f64() * 1000.0 / f64::from(k2),
        );
        eprintln!("({n} peers simulated in {:.1?})", started.elapsed());
    }
}

fn main() {
    if std::env::args().any(|arg| arg == "--report") {
        report();
        return;
    }
    let mut criterion = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    own_space(&mut criterion);
    from_neighbour(&mut criterion);
    criterion.final_summary();
}
