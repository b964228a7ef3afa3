//! Scale of the mesh control plane.
//!
//! `cargo bench -p mesh --bench scale` measures (criterion) the work one topology change
//! costs a node at 100, 300 and 1000 peers: rebuilding the route table alone, and the whole
//! deferred pass a `Mesh` runs after a changed record arrives (garbage collection, route
//! rebuild, discovery, gossip queueing).
//!
//! `cargo bench -p mesh --bench scale -- --report` instead prints a deterministic table from
//! the simulator: rounds to converge and gossip bytes per peer for a few kinds of change at
//! 100, 300 and 1000 peers. It is a count, not a timing, so it is the same on any machine.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion};
use mesh::sim::{ChangeCost, NodeId, Sim};
use mesh::topology::Topology;
use mesh::{
    ConnId, ConnectionRecord, Direction, Endpoint, Hello, Mesh, MeshConfig, Message, Nickname,
    PeerName, PeerRecord, RouteTable,
};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

const SIZES: [usize; 3] = [100, 300, 1000];
/// Average connections per peer in the synthetic graphs.
const DEGREE: usize = 8;

fn name(i: usize) -> PeerName {
    let [_, _, _, _, a, b, c, d] = (i as u64 + 1).to_be_bytes();
    PeerName([2, 0, a, b, c, d])
}

fn addr(i: usize) -> SocketAddr {
    let [_, b, c, d] = (i as u32).to_be_bytes();
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, b + 1, c, d)), 6783)
}

/// A connected random graph: a ring plus random chords, `DEGREE` edges per peer on average.
fn graph(n: usize, seed: u64) -> Vec<BTreeSet<usize>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut adj = vec![BTreeSet::new(); n];
    for i in 0..n {
        let j = (i + 1) % n;
        adj[i].insert(j);
        adj[j].insert(i);
    }
    while adj.iter().map(BTreeSet::len).sum::<usize>() < n * DEGREE {
        let (a, b) = (rng.random_range(0..n), rng.random_range(0..n));
        if a != b {
            adj[a].insert(b);
            adj[b].insert(a);
        }
    }
    adj
}

fn record(i: usize, version: u64, neighbours: &BTreeSet<usize>) -> PeerRecord {
    PeerRecord {
        name: name(i),
        nickname: Nickname::truncated(&format!("host-{i}")),
        uid: i as u64,
        version,
        connections: neighbours
            .iter()
            .map(|&j| ConnectionRecord {
                peer: name(j),
                addr: addr(j),
                outbound: i < j,
            })
            .collect(),
    }
}

fn topology(adj: &[BTreeSet<usize>]) -> Topology {
    let mut topo = Topology::new(record(0, 1, &adj[0]));
    for (i, neighbours) in adj.iter().enumerate().skip(1) {
        topo.merge(record(i, 1, neighbours));
    }
    topo
}

/// A node (peer 0) connected to peer 1 that has learnt every record of `adj`.
fn node(adj: &[BTreeSet<usize>], now: Instant) -> (Mesh, ConnId) {
    let mut config = MeshConfig::new(name(0), Nickname::truncated("host-0"), 0);
    config.conn_limit = 64;
    let mut mesh = Mesh::new(config, now, 1).unwrap();
    let conn = ConnId(1);
    mesh.handle_connection_opened(now, conn, Direction::Outbound, addr(1))
        .unwrap();
    mesh.handle_message(
        now,
        conn,
        Message::Hello(Hello {
            name: name(1),
            nickname: Nickname::truncated("host-1"),
            uid: 1,
            listen_port: 6783,
            vxlan_port: 4789,
            tunnel_port: 6784,
            features: 0,
            conn_nonce: 7,
        }),
    );
    let mut records: Vec<PeerRecord> = (1..adj.len()).map(|i| record(i, 1, &adj[i])).collect();
    // Peer 1 must list us for the edge to be symmetric.
    records[0].connections.push(ConnectionRecord {
        peer: name(0),
        addr: addr(0),
        outbound: false,
    });
    mesh.handle_message(now, conn, Message::Topology(records));
    while mesh.poll_transmit().is_some()
        || mesh.poll_action().is_some()
        || mesh.poll_event().is_some()
    {}
    (mesh, conn)
}

fn route_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("route_table_build");
    for n in SIZES {
        let topo = topology(&graph(n, 1));
        group.bench_with_input(BenchmarkId::from_parameter(n), &topo, |b, topo| {
            b.iter(|| black_box(RouteTable::build(black_box(topo))));
        });
    }
    group.finish();

    let mut group = c.benchmark_group("mesh_change_settle");
    for n in SIZES {
        let adj = graph(n, 2);
        let now = Instant::now();
        let (mut mesh, conn) = node(&adj, now);
        let mut version = 1;
        let mut toggle = false;
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| {
                // Peer n/2 alternately drops and regains one connection: one changed record,
                // then the node's deferred pass (full GC on a drop, incremental on a gain).
                version += 1;
                toggle = !toggle;
                let who = n / 2;
                let mut neighbours = adj[who].clone();
                if toggle {
                    let first = *neighbours.iter().next().unwrap();
                    neighbours.remove(&first);
                }
                let changed = record(who, version, &neighbours);
                mesh.handle_message(now, conn, Message::Topology(vec![changed]));
                black_box(mesh.routes());
                while mesh.poll_event().is_some() {}
            });
        });
    }
    group.finish();
}

fn endpoint(n: u8) -> Endpoint {
    Endpoint {
        vni: 1,
        mac: [2, 0xee, 0, 0, 0, n],
        ips: vec![IpAddr::V4(Ipv4Addr::new(10, 32, 0, n))],
    }
}

/// Lets earlier changes play out (replacement dials wait about a second), applies
/// `change` and counts rounds until every live peer agrees; bytes until 20 rounds later.
fn measure(sim: &mut Sim, change: impl FnOnce(&mut Sim)) -> ChangeCost {
    sim.measure_change(Duration::from_secs(3), 20, 1000, change)
        .unwrap()
}

fn report() {
    println!("Mesh convergence after one change (deterministic simulator, seed 42).");
    println!("Peers use conn_limit 24, discovery_degree 6 and join 100 at a time, one second");
    println!("apart, each through one random earlier peer; then 90 s for the redials of shed");
    println!("connections to play out. One round = one gossip hop (10 ms virtual). Rounds count");
    println!("until every peer holds every current record and routes, broadcast trees and");
    println!("endpoint views agree. Bytes = all control bytes a peer sent, frames included,");
    println!("from the change until 20 rounds after agreement.");
    println!();
    println!(
        "| peers | avg degree | change | rounds to agree | bytes/peer (mean) | bytes/peer (max) |"
    );
    println!("|---:|---:|---|---:|---:|---:|");
    for n in SIZES {
        let started = Instant::now();
        let configure = |c: &mut MeshConfig| {
            c.conn_limit = 24;
            c.discovery_degree = 6;
        };
        let mut sim = Sim::new(42, Instant::now());
        sim.set_record_events(false);
        sim.set_fragmentation(false);
        let mut rng = ChaCha8Rng::seed_from_u64(42);
        let mut ids: Vec<NodeId> = vec![sim.add_peer_with(&[], configure).unwrap()];
        while ids.len() < n {
            for _ in 0..(n - ids.len()).min(100) {
                let target = ids[rng.random_range(0..ids.len())];
                ids.push(sim.add_peer_with(&[target], configure).unwrap());
            }
            sim.run_for(Duration::from_secs(1));
        }
        // Let the joins' tail play out: full peers shed connections and the shed peers
        // redial their named targets with backoff (capped at 60 s, ±50%).
        sim.run_for(Duration::from_secs(90));
        sim.run_until_converged(1000).unwrap();
        assert_eq!(sim.components().len(), 1, "{n} peers did not form one mesh");
        let degree = 2.0 * sim.established_links().len() as f64 / n as f64;
        let row = |change: &str, m: ChangeCost| {
            println!(
                "| {n} | {degree:.1} | {change} | {} | {:.0} | {} |",
                m.rounds, m.mean_bytes, m.max_bytes
            );
        };
        let m = measure(&mut sim, |_| {});
        row("none (background: keepalives, anti-entropy)", m);
        let who = ids[n / 2];
        let m = measure(&mut sim, |sim| {
            sim.set_endpoints(who, vec![endpoint(1), endpoint(2)])
                .unwrap();
        });
        row("endpoints of one peer", m);
        let (a, b) = sim.established_links()[n / 3];
        let m = measure(&mut sim, |sim| sim.cut(a, b));
        row("one link cut", m);
        let victim = ids[n / 4];
        let m = measure(&mut sim, |sim| sim.crash(victim));
        row("one peer crashes", m);
        let via = ids[n / 5];
        let m = measure(&mut sim, |sim| {
            sim.add_peer_with(&[via], configure).unwrap();
        });
        row("one peer joins", m);
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
    route_benches(&mut criterion);
    criterion.final_summary();
}
