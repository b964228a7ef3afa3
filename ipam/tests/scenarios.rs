//! Scenario tests of the IPAM core on the deterministic simulator.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use ipam::sim::{NodeId, Sim, SimConfig};
use ipam::{AllocError, Event, InitMode, Outcome, RefuseReason};
use rand::{RngExt, SeedableRng};

fn sim(seed: u64) -> Sim {
    Sim::new(seed, SimConfig::default(), Instant::now())
}

fn done(o: Outcome) -> ipnet::Ipv4Net {
    match o {
        Outcome::Done(a) => a,
        other => panic!("expected Done, got {other:?}"),
    }
}

/// Waits for the answer to a pending request and returns it.
fn answer(
    sim: &mut Sim,
    id: NodeId,
    o: Outcome,
    limit: Duration,
) -> Result<ipnet::Ipv4Net, AllocError> {
    match o {
        Outcome::Done(a) => Ok(a),
        Outcome::Failed(e) => Err(e),
        Outcome::Pending(req) => {
            let ok = sim.run_until(limit, |s| s.answers(id).contains_key(&req));
            assert!(ok, "request {req} on {id} not answered within {limit:?}");
            sim.answers(id)[&req].clone()
        }
    }
}

#[test]
fn a_peer_launched_alone_allocates_at_once() {
    let mut s = sim(1);
    let a = s.add_node(InitMode::Consensus { electors: 1 }).unwrap();
    let first = done(s.allocate(a, "c1", None).unwrap());
    assert_eq!(first.to_string(), "10.32.0.1/16");
    let again = done(s.allocate(a, "c1", None).unwrap());
    assert_eq!(again, first, "idempotent per handle");
    let second = done(s.allocate(a, "c2", None).unwrap());
    assert_eq!(second.to_string(), "10.32.0.2/16");
    s.check().unwrap();
}

#[test]
fn three_peers_with_consensus_agree_and_split_evenly() {
    let mut s = sim(2);
    let ids: Vec<NodeId> = (0..3)
        .map(|_| s.add_node(InitMode::Consensus { electors: 3 }).unwrap())
        .collect();
    s.full_mesh();
    // All three heard: consensus starts without waiting for an allocation.
    assert!(s.run_until(Duration::from_secs(10), |s| {
        ids.iter().all(|i| s.node(*i).unwrap().ring().is_some())
    }));
    let ring = s.node(ids[0]).unwrap().ring().cloned().unwrap();
    assert_eq!(ring.members.len(), 3);
    for i in &ids {
        assert_eq!(s.node(*i).unwrap().ring(), Some(&ring));
        let owned = s.node(*i).unwrap().record().owned.len();
        assert!((21_845..=21_846).contains(&owned), "{i} owns {owned}");
    }
    for (k, i) in ids.iter().enumerate() {
        let o = s.allocate(*i, &format!("c{k}"), None).unwrap();
        assert!(matches!(o, Outcome::Done(_)), "{o:?}");
    }
    s.run_for(Duration::from_secs(1));
    s.check().unwrap();
}

#[test]
fn consensus_starts_when_an_allocation_waits() {
    let mut s = sim(3);
    let a = s.add_node(InitMode::Consensus { electors: 3 }).unwrap();
    let b = s.add_node(InitMode::Consensus { electors: 3 }).unwrap();
    s.link(a, b);
    s.run_for(Duration::from_secs(5));
    assert!(
        s.node(a).unwrap().ring().is_none(),
        "2 of 3 heard: no reason to start yet"
    );
    let o = s.allocate(b, "c1", None).unwrap();
    let got = answer(&mut s, b, o, Duration::from_secs(20)).unwrap();
    s.run_for(Duration::from_millis(100));
    assert!(s.node(a).unwrap().ring().is_some());
    assert_eq!(s.node(a).unwrap().ring().unwrap().members.len(), 2);
    assert!(got.addr().octets()[0] == 10);
    s.check().unwrap();
}

#[test]
fn an_allocation_waiting_for_consensus_says_who_it_waits_for() {
    let mut s = sim(4);
    let a = s.add_node(InitMode::Consensus { electors: 3 }).unwrap();
    let o = s.allocate(a, "c1", None).unwrap();
    let Outcome::Pending(req) = o else {
        panic!("{o:?}")
    };
    let status = s.node(a).unwrap().status(s.now());
    assert_eq!(status.pending.len(), 1);
    assert!(
        status.pending[0].waiting_for.contains("quorum 2 of 3"),
        "{}",
        status.pending[0].waiting_for
    );
    s.run_for(Duration::from_secs(31));
    let err = s.answers(a)[&req].clone().unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("timed out awaiting consensus"), "{text}");
    assert!(text.contains("waiting for 2 more peers"), "{text}");
}

#[test]
fn independently_seeded_rings_refuse_each_other_on_both_sides() {
    let mut s = sim(5);
    let a = s.add_node(InitMode::Consensus { electors: 1 }).unwrap();
    let b = s.add_node(InitMode::Consensus { electors: 1 }).unwrap();
    s.link(a, b);
    s.run_for(Duration::from_secs(1));
    for (me, other) in [(a, b), (b, a)] {
        let refused = s.events(me).iter().find_map(|e| match e {
            Event::Refuse { peer, reason } if *peer == s.name(other) => Some(reason.clone()),
            _ => None,
        });
        let reason = refused.unwrap_or_else(|| panic!("{me} did not refuse {other}"));
        assert!(matches!(reason, RefuseReason::RingMismatch { .. }));
        assert!(reason.to_string().contains("initialised separately"));
        let status = s.node(me).unwrap().status(s.now());
        assert_eq!(status.refused.len(), 1);
        assert!(
            status.peers.iter().all(|p| p.is_self),
            "no foreign record merged"
        );
    }
    s.check().unwrap_err(); // two rings each owning the whole range: not one ring
}

#[test]
fn different_ranges_refuse_each_other_on_both_sides() {
    let mut s = sim(6);
    let a = s.add_node(InitMode::Consensus { electors: 1 }).unwrap();
    let b = s
        .add_node_with(InitMode::Consensus { electors: 1 }, |c| {
            c.range = "10.40.0.0/16".parse().unwrap();
            c.default_subnet = c.range;
        })
        .unwrap();
    s.link(a, b);
    s.run_for(Duration::from_secs(1));
    let text = |me: NodeId| {
        s.events(me)
            .iter()
            .find_map(|e| match e {
                Event::Refuse { reason, .. } => Some(reason.to_string()),
                _ => None,
            })
            .unwrap()
    };
    assert_eq!(
        text(a),
        "IP allocation range mismatch: ours 10.32.0.0/16, theirs 10.40.0.0/16"
    );
    assert_eq!(
        text(b),
        "IP allocation range mismatch: ours 10.40.0.0/16, theirs 10.32.0.0/16"
    );
}

#[test]
fn a_joining_peer_allocates_from_a_neighbours_space() {
    let mut s = sim(7);
    let a = s.add_node(InitMode::Consensus { electors: 1 }).unwrap();
    let b = s.add_node(InitMode::Consensus { electors: 2 }).unwrap();
    s.link(a, b);
    s.run_for(Duration::from_millis(200));
    assert_eq!(s.node(b).unwrap().ring(), s.node(a).unwrap().ring());
    assert!(s.node(b).unwrap().record().owned.is_empty());
    let o = s.allocate(b, "c1", None).unwrap();
    assert!(matches!(o, Outcome::Pending(_)), "{o:?}");
    let got = answer(&mut s, b, o, Duration::from_secs(5)).unwrap();
    assert!(
        s.node(b)
            .unwrap()
            .record()
            .owned
            .contains(u32::from(got.addr()))
    );
    // Now b has space of its own: the next allocation does not wait.
    assert!(matches!(
        s.allocate(b, "c2", None).unwrap(),
        Outcome::Done(_)
    ));
    s.run_for(Duration::from_secs(1));
    s.check().unwrap();
}

#[test]
fn an_observer_allocates_by_asking() {
    let mut s = sim(8);
    let a = s.add_node(InitMode::Consensus { electors: 2 }).unwrap();
    let b = s.add_node(InitMode::Consensus { electors: 2 }).unwrap();
    let o = s.add_node(InitMode::Observer).unwrap();
    s.link(a, o);
    s.link(b, o);
    let out = s.allocate(o, "c1", None).unwrap();
    // The observer's wants_ring makes the electors start consensus.
    let got = answer(&mut s, o, out, Duration::from_secs(20)).unwrap();
    let ring = s.node(a).unwrap().ring().cloned().unwrap();
    assert!(
        !ring.members.contains(&s.name(o)),
        "observers never get a share"
    );
    assert!(
        s.node(o)
            .unwrap()
            .record()
            .owned
            .contains(u32::from(got.addr()))
    );
    s.run_for(Duration::from_secs(1));
    s.check().unwrap();
}

#[test]
fn partition_allocate_on_both_sides_heal_no_duplicate() {
    let mut s = sim(9);
    let ids: Vec<NodeId> = (0..3)
        .map(|_| s.add_node(InitMode::Consensus { electors: 3 }).unwrap())
        .collect();
    s.full_mesh();
    s.run_for(Duration::from_secs(5));
    s.partition(&[vec![ids[0]], vec![ids[1], ids[2]]]);
    s.run_for(Duration::from_secs(1));
    let mut got = Vec::new();
    for k in 0..20 {
        for i in &ids {
            let h = format!("{i}-c{k}");
            let o = s.allocate(*i, &h, None).unwrap();
            got.push(answer(&mut s, *i, o, Duration::from_secs(5)).unwrap());
        }
    }
    s.heal();
    s.run_for(Duration::from_secs(2));
    s.check().unwrap();
    let distinct: std::collections::BTreeSet<_> = got.iter().map(|n| n.addr()).collect();
    assert_eq!(distinct.len(), got.len());
}

#[test]
fn claims_in_own_and_others_space() {
    let mut s = sim(10);
    let ids: Vec<NodeId> = (0..2)
        .map(|_| s.add_node(InitMode::Consensus { electors: 2 }).unwrap())
        .collect();
    s.full_mesh();
    s.run_for(Duration::from_secs(5));
    let a_owned = s.node(ids[0]).unwrap().record().owned.clone();
    let in_a: std::net::Ipv4Addr = (a_owned.ranges()[0].start + 10).into();
    let net: ipnet::Ipv4Net = format!("{in_a}/16").parse().unwrap();
    // In a's own space: at once.
    assert_eq!(done(s.claim(ids[0], "x", net).unwrap()), net);
    // The same address elsewhere: refused, naming the holder.
    s.run_for(Duration::from_millis(100));
    let o = s.claim(ids[1], "y", net).unwrap();
    let Outcome::Failed(AllocError::InUseByPeer { peer, .. }) = o else {
        panic!("{o:?}")
    };
    assert_eq!(peer, s.name(ids[0]));
    // A free address in a's space, claimed from b: granted by a.
    let free: std::net::Ipv4Addr = (a_owned.ranges()[0].start + 11).into();
    let net2: ipnet::Ipv4Net = format!("{free}/16").parse().unwrap();
    let o = s.claim(ids[1], "z", net2).unwrap();
    assert_eq!(
        answer(&mut s, ids[1], o, Duration::from_secs(5)).unwrap(),
        net2
    );
    s.run_for(Duration::from_millis(100));
    assert!(
        s.node(ids[0])
            .unwrap()
            .record()
            .used
            .contains(u32::from(free))
    );
    s.check().unwrap();
    // Released: a frees it.
    s.release(ids[1], "z").unwrap();
    s.run_for(Duration::from_millis(200));
    assert!(
        !s.node(ids[0])
            .unwrap()
            .record()
            .used
            .contains(u32::from(free))
    );
    s.check().unwrap();
}

#[test]
fn rmpeer_on_two_survivors_at_once_then_allocation_within_five_seconds() {
    let cfg = SimConfig {
        range: "10.32.0.0/20".parse().unwrap(),
        ..SimConfig::default()
    };
    let mut s = Sim::new(11, cfg, Instant::now());
    let ids: Vec<NodeId> = (0..4)
        .map(|_| s.add_node(InitMode::Consensus { electors: 4 }).unwrap())
        .collect();
    s.full_mesh();
    s.run_for(Duration::from_secs(5));
    let dead = ids[3];
    let mut dead_addrs = Vec::new();
    for k in 0..5 {
        dead_addrs.push(done(s.allocate(dead, &format!("d{k}"), None).unwrap()).addr());
    }
    s.run_for(Duration::from_secs(1));
    s.kill(dead);
    s.run_for(Duration::from_millis(100));
    let r1 = s.rmpeer(ids[1], dead, false).unwrap().unwrap();
    let r2 = s.rmpeer(ids[2], dead, false).unwrap().unwrap();
    assert_eq!(r1.heir, s.name(ids[1]), "lowest name wins");
    assert!(r2.heir == s.name(ids[1]) || r2.heir == s.name(ids[2]));
    let start = s.now();
    assert!(s.run_until(Duration::from_secs(5), |s| {
        s.node(ids[1])
            .unwrap()
            .status(s.now())
            .takeovers
            .iter()
            .any(|t| t.complete)
    }));
    assert!(s.now() - start < Duration::from_secs(5));
    s.check().unwrap();
    // Exhaust the heir's space entirely: none of the dead peer's addresses comes back.
    let heir = ids[1];
    let mut got = Vec::new();
    while let Outcome::Done(a) = s.allocate(heir, &format!("h{}", got.len()), None).unwrap() {
        got.push(a.addr());
    }
    assert!(got.len() > 1500, "{}", got.len());
    for d in &dead_addrs {
        assert!(!got.contains(d), "{d} of the dead peer handed out again");
    }
    s.check().unwrap();
}

#[test]
fn the_ring_reaches_a_peer_through_one_that_learnt_it_late() {
    let mut s = sim(12);
    let a = s.add_node(InitMode::Consensus { electors: 1 }).unwrap();
    let b = s.add_node(InitMode::Consensus { electors: 3 }).unwrap();
    let c = s.add_node(InitMode::Consensus { electors: 3 }).unwrap();
    s.link(b, c);
    s.run_for(Duration::from_millis(200));
    assert!(s.node(c).unwrap().ring().is_none());
    s.link(a, b);
    assert!(s.run_until(Duration::from_secs(2), |s| {
        s.node(c).unwrap().ring().is_some()
    }));
    assert_eq!(s.node(c).unwrap().ring(), s.node(a).unwrap().ring());
    let o = s.allocate(c, "x", None).unwrap();
    answer(&mut s, c, o, Duration::from_secs(5)).unwrap();
    s.check().unwrap();
}

#[test]
fn peers_launched_naming_just_launched_peers_join_the_existing_ring() {
    // Peer 0 runs alone (a ring of one); 40 peers start at once, each naming one peer
    // started before it (often one just started too, so its N is 2 and it hears its
    // own named peer before the ring reaches either).
    for seed in 0..3 {
        let mut s = sim(100 + seed);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        s.add_node(InitMode::Consensus { electors: 1 }).unwrap();
        let mut links = Vec::new();
        for i in 1..40 {
            let id = s.add_node(InitMode::Consensus { electors: 2 }).unwrap();
            links.push((id, NodeId(rng.random_range(0..i))));
        }
        s.link_many(&links);
        // Everyone allocates at once: 39 peers ask the one peer with space, which halves
        // its space for each; those it cannot serve ask the ones it served.
        let outs: Vec<Outcome> = (0..40)
            .map(|i| s.allocate(NodeId(i), "x", None).unwrap())
            .collect();
        s.run_for(Duration::from_secs(10));
        for (i, o) in outs.into_iter().enumerate() {
            let id = NodeId(i);
            if let Outcome::Pending(req) = o {
                assert!(
                    matches!(s.answers(id).get(&req), Some(Ok(_))),
                    "seed {seed}: {id}: {:?}",
                    s.answers(id).get(&req)
                );
            } else {
                assert!(matches!(o, Outcome::Done(_)), "{o:?}");
            }
        }
        let ring = s.node(NodeId(0)).unwrap().ring().cloned();
        for i in 1..40 {
            let i = NodeId(i);
            assert_eq!(s.node(i).unwrap().ring().cloned(), ring, "seed {seed}: {i}");
            assert!(
                !s.events(i)
                    .iter()
                    .any(|e| matches!(e, Event::Refuse { .. }))
            );
        }
        s.check().unwrap();
    }
}

#[test]
fn a_hundred_peers_asking_one_donor_at_once_all_get_an_address() {
    let mut s = sim(13);
    s.add_node(InitMode::Consensus { electors: 1 }).unwrap();
    let mut links = Vec::new();
    for _ in 1..100 {
        let id = s.add_node(InitMode::Consensus { electors: 2 }).unwrap();
        links.push((id, NodeId(0)));
    }
    s.link_many(&links);
    s.run_for(Duration::from_secs(1));
    let outs: Vec<Outcome> = (0..100)
        .map(|i| s.allocate(NodeId(i), "x", None).unwrap())
        .collect();
    s.run_for(Duration::from_secs(20));
    for (i, o) in outs.into_iter().enumerate() {
        let id = NodeId(i);
        match o {
            Outcome::Pending(req) => assert!(
                matches!(s.answers(id).get(&req), Some(Ok(_))),
                "{id}: {:?}",
                s.answers(id).get(&req)
            ),
            other => assert!(matches!(other, Outcome::Done(_)), "{other:?}"),
        }
    }
    s.check().unwrap();
}

#[test]
fn different_seed_lists_refuse_each_other_on_both_sides_and_the_same_list_joins() {
    let mut s = sim(14);
    let names: Vec<_> = (0..4).map(ipam::sim::node_name).collect();
    let a = s
        .add_node(InitMode::Seed(vec![names[0], names[1]]))
        .unwrap();
    let b = s
        .add_node(InitMode::Seed(vec![names[1], names[2]]))
        .unwrap();
    s.link(a, b);
    s.run_for(Duration::from_secs(1));
    for me in [a, b] {
        let text = s
            .events(me)
            .iter()
            .find_map(|e| match e {
                Event::Refuse { reason, .. } => Some(reason.to_string()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{me} did not refuse"));
        assert!(
            text.starts_with("IP allocation initialised separately"),
            "{text}"
        );
    }
    // Same list: one ring, each seed its half, allocating at once.
    let mut s = sim(15);
    let list = vec![names[0], names[1]];
    let a = s.add_node(InitMode::Seed(list.clone())).unwrap();
    let b = s.add_node(InitMode::Seed(list)).unwrap();
    let c = s.add_node(InitMode::Consensus { electors: 3 }).unwrap();
    assert!(matches!(
        s.allocate(a, "x", None).unwrap(),
        Outcome::Done(_)
    ));
    s.link(a, b);
    s.link(b, c);
    s.run_for(Duration::from_secs(1));
    assert!(
        s.events(a)
            .iter()
            .all(|e| !matches!(e, Event::Refuse { .. }))
    );
    assert_eq!(s.node(c).unwrap().ring(), s.node(a).unwrap().ring());
    assert_eq!(s.node(a).unwrap().record().owned.len(), 32_768);
    s.check().unwrap();
}
