//! Whole-mesh behaviour in the deterministic simulator (`mesh::sim`).

// Test helpers outside #[test] fns may unwrap too.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use mesh::sim::{DialOutcome, NodeId, Sim};
use mesh::{Backoff, Endpoint, Event, PeerName, TargetState};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn name(sim: &Sim, id: NodeId) -> PeerName {
    sim.name(id).unwrap()
}

fn endpoint(n: u8) -> Endpoint {
    Endpoint {
        vni: 100,
        mac: [2, 0xee, 0, 0, 0, n],
        ips: vec![IpAddr::V4(Ipv4Addr::new(10, 32, 0, n))],
    }
}

/// Dials from `from` to `to` since `since`, in order.
fn dials(sim: &Sim, from: NodeId, to: NodeId, since: Instant) -> Vec<(Instant, DialOutcome)> {
    let addr = sim.addr(to);
    sim.dial_log()
        .iter()
        .filter(|d| d.from == from && d.addr == addr && d.at >= since)
        .map(|d| (d.at, d.outcome))
        .collect()
}

#[test]
fn line_of_three_relays_backs_off_collects_garbage_and_heals() {
    let mut sim = Sim::new(1, Instant::now());
    let h2 = sim.add_peer(&[]).unwrap();
    let h1 = sim.add_peer(&[h2]).unwrap();
    let h3 = sim.add_peer(&[h2]).unwrap();
    sim.cut(h1, h3);
    let (n1, n2, n3) = (name(&sim, h1), name(&sim, h2), name(&sim, h3));

    sim.run_for(Duration::from_secs(1));
    sim.run_until_converged(50).unwrap();
    let start = sim.now();
    // h1 learnt h3 through gossip and routes to it via h2.
    let mesh1 = sim.mesh(h1).unwrap();
    assert!(mesh1.topology().contains(&n3));
    assert_eq!(mesh1.next_hop(n3), Some(n2));
    assert_eq!(mesh1.routes().hops(n3), Some(2));
    assert!(!mesh1.is_connected(n3));
    assert_eq!(sim.mesh(h3).unwrap().next_hop(n1), Some(n2));

    // The connection maker keeps trying h3 directly, backing off ×1.5 with jitter.
    sim.run_for(Duration::from_secs(120));
    let attempts = dials(&sim, h1, h3, Instant::now() - Duration::from_secs(3600));
    assert!(attempts.len() >= 6, "only {} dials", attempts.len());
    assert!(attempts.iter().all(|(_, o)| *o == DialOutcome::Unreachable));
    let backoff = Backoff::default();
    let slack = Duration::from_millis(20);
    for (k, pair) in attempts.windows(2).enumerate() {
        let gap = pair[1].0 - pair[0].0;
        let base = backoff.base_delay(u32::try_from(k + 1).unwrap());
        assert!(
            gap + slack >= base / 2,
            "retry {k} after {gap:?}, base {base:?}"
        );
        assert!(
            gap <= base.mul_f64(1.5).min(backoff.max) + slack,
            "retry {k} after {gap:?}"
        );
    }
    let first_gap = attempts[1].0 - attempts[0].0;
    let last_gap = attempts[attempts.len() - 1].0 - attempts[attempts.len() - 2].0;
    assert!(
        last_gap > first_gap,
        "backoff did not grow: {first_gap:?} → {last_gap:?}"
    );
    let now = sim.now();
    let status = sim.mesh(h1).unwrap().status(now);
    let target = status
        .targets
        .iter()
        .find(|t| t.addr == sim.addr(h3))
        .unwrap();
    assert_eq!(target.state, TargetState::Retrying);
    assert_eq!(target.last_error.as_deref(), Some("no route to host"));
    assert_eq!(target.attempts as usize, attempts.len());
    let _ = start;

    // Isolate h2: h3 becomes unreachable from h1 and is garbage-collected.
    sim.clear_events();
    sim.cut(h1, h2);
    sim.cut(h2, h3);
    sim.run_until_converged(20).unwrap();
    let mesh1 = sim.mesh(h1).unwrap();
    assert!(!mesh1.topology().contains(&n3));
    assert!(!mesh1.topology().contains(&n2));
    assert_eq!(mesh1.next_hop(n3), None);
    assert!(sim.events(h1).contains(&Event::PeerRemoved(n3)));
    assert!(sim.events(h1).contains(&Event::PeerRemoved(n2)));
    // h3's discovered address is forgotten with it: no more dials to h3.
    let cut_at = sim.now();
    sim.run_for(Duration::from_secs(60));
    assert!(dials(&sim, h1, h3, cut_at).is_empty());

    // Restore h2's links: the explicit targets reconnect and h1 reaches h3 again.
    sim.restore(h1, h2);
    sim.restore(h2, h3);
    sim.run_for(Duration::from_secs(90));
    sim.run_until_converged(50).unwrap();
    let mesh1 = sim.mesh(h1).unwrap();
    assert_eq!(mesh1.next_hop(n3), Some(n2));
    assert!(sim.events(h1).contains(&Event::PeerAdded(n3)));
}

#[test]
fn a_fourth_peer_joining_via_one_peer_connects_to_all() {
    let mut sim = Sim::new(2, Instant::now());
    let h1 = sim.add_peer(&[]).unwrap();
    let h2 = sim.add_peer(&[h1]).unwrap();
    let h3 = sim.add_peer(&[h1]).unwrap();
    sim.run_for(Duration::from_secs(2));
    sim.run_until_converged(50).unwrap();
    let h4 = sim.add_peer(&[h2]).unwrap();
    sim.run_for(Duration::from_secs(2));
    sim.run_until_converged(50).unwrap();
    for other in [h1, h2, h3] {
        let peer = name(&sim, other);
        assert!(
            sim.mesh(h4).unwrap().is_connected(peer),
            "h4 not connected to {other}"
        );
        assert_eq!(sim.mesh(h4).unwrap().next_hop(peer), Some(peer));
    }
    assert_eq!(sim.established_links().len(), 6, "full mesh of four");
}

#[test]
fn hundred_peers_with_random_joins_leaves_and_cuts_converge_quickly() {
    // Convergence is counted in rounds (one gossip hop each) after a change settles.
    const BOUND: usize = 30;
    let configure = |c: &mut mesh::MeshConfig| {
        c.conn_limit = 24;
        c.discovery_degree = 6;
    };
    let mut sim = Sim::new(3, Instant::now());
    sim.set_record_events(false);
    let mut rng = ChaCha8Rng::seed_from_u64(33);
    let mut worst = 0;
    let mut ids = vec![sim.add_peer_with(&[], configure).unwrap()];
    while ids.len() < 100 {
        for _ in 0..(100 - ids.len()).min(11) {
            let live = sim.live();
            let target = live[rng.random_range(0..live.len())];
            ids.push(sim.add_peer_with(&[target], configure).unwrap());
        }
        let rounds = sim.run_until_converged(BOUND).unwrap();
        worst = worst.max(rounds);
    }
    let mut cut_links = Vec::new();
    let mut crashed = Vec::new();
    for step in 0..30 {
        match rng.random_range(0..4) {
            0 => {
                let live = sim.live();
                let victim = live[rng.random_range(0..live.len())];
                sim.crash(victim);
                crashed.push(victim);
            }
            1 if !crashed.is_empty() => {
                let back = crashed.swap_remove(rng.random_range(0..crashed.len()));
                sim.restart(back).unwrap();
            }
            2 => {
                let links = sim.established_links();
                let (a, b) = links[rng.random_range(0..links.len())];
                sim.cut(a, b);
                cut_links.push((a, b));
            }
            _ => {
                if let Some((a, b)) = cut_links.pop() {
                    sim.restore(a, b);
                }
            }
        }
        let rounds = sim
            .run_until_converged(BOUND)
            .unwrap_or_else(|e| panic!("step {step}: {e}"));
        worst = worst.max(rounds);
        for id in sim.live() {
            let mesh = sim.mesh(id).unwrap();
            assert!(mesh.connection_count() <= mesh.config().conn_limit);
        }
    }
    // Heal everything: the connection makers' retries merge the mesh into one component
    // in which every peer routes to every other.
    for back in crashed {
        sim.restart(back).unwrap();
    }
    sim.heal();
    // Long enough for any retry at the 60 s backoff cap.
    sim.run_for(Duration::from_secs(65));
    sim.run_until_converged(BOUND).unwrap();
    assert_eq!(sim.components().len(), 1);
    assert_eq!(sim.live().len(), 100);
    eprintln!("100 peers: worst convergence {worst} rounds");
}

#[test]
fn partition_heals_and_views_merge() {
    let mut sim = Sim::new(4, Instant::now());
    let mut ids = vec![sim.add_peer(&[]).unwrap()];
    for i in 1..12 {
        ids.push(sim.add_peer(&[ids[i - 1]]).unwrap());
    }
    sim.run_for(Duration::from_secs(2));
    sim.run_until_converged(60).unwrap();
    let (left, right) = ids.split_at(6);
    sim.partition(&[left, right]);
    sim.run_until_converged(30).unwrap();
    assert_eq!(sim.components().len(), 2);
    let far = name(&sim, right[0]);
    assert!(!sim.mesh(left[0]).unwrap().topology().contains(&far));
    sim.heal();
    // Long enough for any retry at the 60 s backoff cap.
    sim.run_for(Duration::from_secs(65));
    sim.run_until_converged(60).unwrap();
    assert_eq!(sim.components().len(), 1);
    assert!(sim.mesh(left[0]).unwrap().routes().is_reachable(far));
}

#[test]
fn a_restarted_peer_replaces_its_old_incarnation() {
    let mut sim = Sim::new(5, Instant::now());
    let h1 = sim.add_peer(&[]).unwrap();
    let h2 = sim.add_peer(&[h1]).unwrap();
    let h3 = sim.add_peer(&[h1]).unwrap();
    sim.run_for(Duration::from_secs(1));
    sim.run_until_converged(50).unwrap();
    sim.set_endpoints(h3, vec![endpoint(3)]).unwrap();
    sim.run_until_converged(50).unwrap();
    let n3 = name(&sim, h3);
    let old = sim.mesh(h1).unwrap().topology().get(&n3).unwrap().clone();
    // Restart: new uid, record version from 1, no endpoints until announced again.
    sim.restart(h3).unwrap();
    sim.set_endpoints(h3, vec![endpoint(4)]).unwrap();
    sim.run_for(Duration::from_secs(5));
    sim.run_until_converged(50).unwrap();
    let seen = sim.mesh(h1).unwrap().topology().get(&n3).unwrap().clone();
    assert_ne!(seen.uid, old.uid);
    let eps: Vec<_> = sim
        .mesh(h2)
        .unwrap()
        .endpoints()
        .map(|(p, e)| (p, e.to_vec()))
        .collect();
    assert_eq!(eps, vec![(n3, vec![endpoint(4)])]);
}

#[test]
fn endpoints_reach_every_peer_without_flooding_everyone_to_everyone() {
    let mut sim = Sim::new(6, Instant::now());
    let mut ids = vec![sim.add_peer(&[]).unwrap()];
    for i in 1..30u8 {
        let target = ids[usize::from(i) / 2];
        ids.push(
            sim.add_peer_with(&[target], |c| c.discovery_degree = 4)
                .unwrap(),
        );
    }
    sim.run_for(Duration::from_secs(3));
    sim.run_until_converged(100).unwrap();
    sim.reset_bytes();
    sim.set_endpoints(ids[7], vec![endpoint(7), endpoint(8)])
        .unwrap();
    let rounds = sim.run_until_converged(20).unwrap();
    sim.run_until_quiet(20).unwrap();
    // Each peer forwards the record once per neighbour at most: bytes per peer stay
    // proportional to its degree.
    let links = sim.established_links();
    for &id in &ids {
        let degree = links.iter().filter(|(a, b)| *a == id || *b == id).count() as u64;
        assert!(
            sim.bytes_sent(id) <= degree * 200,
            "{id} sent {} bytes with degree {degree}",
            sim.bytes_sent(id)
        );
    }
    assert!(rounds <= 10, "{rounds} rounds");
}

#[test]
fn the_simulation_is_deterministic() {
    let run = || {
        let mut sim = Sim::new(7, Instant::now());
        let mut ids = vec![sim.add_peer(&[]).unwrap()];
        for i in 1..20 {
            ids.push(sim.add_peer(&[ids[i / 3]]).unwrap());
        }
        sim.run_for(Duration::from_secs(40));
        sim.crash(ids[5]);
        sim.run_for(Duration::from_secs(40));
        let fingerprint = sim.mesh(ids[0]).unwrap().topology_fingerprint();
        (
            sim.total_bytes_sent(),
            sim.rounds(),
            fingerprint,
            sim.dial_log().len(),
        )
    };
    assert_eq!(run(), run());
}

/// What one step of churn does to the 1000-peer mesh.
#[derive(Debug, Clone, Copy)]
enum Churn {
    Join,
    Leave,
    Return,
    Cut,
    Restore,
    Endpoints,
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "minutes in a debug build; scripts/test (--release) runs it"
)]
fn thousand_peers_with_random_joins_leaves_and_cuts_converge_in_under_ten_rounds() {
    // The bar: every view converges, 1000 peers in under 10 gossip rounds.
    const BOUND: usize = 10;
    let mut sim = Sim::new(8, Instant::now());
    sim.set_record_events(false);
    sim.set_fragmentation(false);
    let mut rng = ChaCha8Rng::seed_from_u64(88);
    let configure = |c: &mut mesh::MeshConfig| {
        c.conn_limit = 24;
        c.discovery_degree = 6;
    };
    let mut ids = vec![sim.add_peer_with(&[], configure).unwrap()];
    while ids.len() < 1000 {
        for _ in 0..100 {
            let target = ids[rng.random_range(0..ids.len())];
            ids.push(sim.add_peer_with(&[target], configure).unwrap());
        }
        sim.run_for(Duration::from_secs(1));
    }
    // Joining at 100 peers a second makes full peers shed connections, and the shed
    // peers redial their named targets with backoff (capped at 60 s, ±50%): let that
    // tail play out so each step below measures its own change.
    sim.run_for(Duration::from_secs(90));
    sim.run_until_converged(400).unwrap();
    assert_eq!(sim.components().len(), 1);

    let mut crashed: Vec<NodeId> = Vec::new();
    let mut cut: Vec<(NodeId, NodeId)> = Vec::new();
    let mut worst = 0;
    let mut log = Vec::new();
    for step in 0..14u8 {
        // Every kind at least twice, then at random.
        let kinds = [
            Churn::Join,
            Churn::Leave,
            Churn::Cut,
            Churn::Endpoints,
            Churn::Return,
            Churn::Restore,
        ];
        let kind = kinds
            .get(usize::from(step))
            .or_else(|| kinds.get(usize::from(step) - kinds.len()))
            .copied()
            .unwrap_or_else(|| kinds[rng.random_range(0..kinds.len())]);
        let live = sim.live();
        let pick = rng.random_range(0..live.len());
        let link_pick = rng.random_range(0..1000usize);
        let cost = sim
            .measure_change(Duration::from_secs(3), 0, BOUND, |sim| match kind {
                Churn::Join => {
                    let id = sim.add_peer_with(&[live[pick]], configure).unwrap();
                    ids.push(id);
                }
                Churn::Leave => {
                    sim.crash(live[pick]);
                    crashed.push(live[pick]);
                }
                Churn::Return => {
                    if let Some(back) = crashed.pop() {
                        sim.restart(back).unwrap();
                    }
                }
                Churn::Cut => {
                    let links = sim.established_links();
                    let (a, b) = links[link_pick % links.len()];
                    sim.cut(a, b);
                    cut.push((a, b));
                }
                Churn::Restore => {
                    if let Some((a, b)) = cut.pop() {
                        sim.restore(a, b);
                    }
                }
                Churn::Endpoints => {
                    sim.set_endpoints(live[pick], vec![endpoint(step)]).unwrap();
                }
            })
            .unwrap_or_else(|e| panic!("step {step} ({kind:?}): {e}"));
        assert!(
            cost.rounds < BOUND,
            "step {step} ({kind:?}) took {} rounds",
            cost.rounds
        );
        worst = worst.max(cost.rounds);
        log.push(format!("{kind:?}: {}", cost.rounds));
    }
    for id in sim.live() {
        let mesh = sim.mesh(id).unwrap();
        assert!(mesh.connection_count() <= mesh.config().conn_limit);
    }
    eprintln!(
        "1000 peers: worst convergence {worst} rounds ({})",
        log.join(", ")
    );
}
