//! The forwarding rules of one switch, one by one.

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::*;
use smoltcp::wire::ArpOperation;
use switch::{
    DropReason, NeighbourOrigin, NetworkId, PortId, PortKind, SwitchConfig, SwitchEvent, Verdict,
};
use wire::Mac;

use PortKind::{Local, Remote};

/// NET_A: local 1, 2, 3 and remote 10, 11. NET_B: local 4, 5 and remote 12.
fn two_networks() -> Harness {
    Harness::with_ports(&[
        (1, NET_A, Local),
        (2, NET_A, Local),
        (3, NET_A, Local),
        (10, NET_A, Remote),
        (11, NET_A, Remote),
        (4, NET_B, Local),
        (5, NET_B, Local),
        (12, NET_B, Remote),
    ])
}

fn dropped(h: &Harness, reason: DropReason) -> u64 {
    h.sw.counters().drops.get(reason)
}

#[test]
fn unknown_ingress_port_is_a_counted_drop() {
    let mut h = two_networks();
    let v = h.send(99, &data(Mac::BROADCAST, mac(1), 64));
    assert_eq!(v, Verdict::Drop(DropReason::UnknownPort));
    assert!(h.egress.is_empty());
    assert_eq!(dropped(&h, DropReason::UnknownPort), 1);
}

#[test]
fn truncated_frames_are_counted_drops() {
    let mut h = two_networks();
    for len in 0..14 {
        let f = vec![0x02u8; len];
        assert_eq!(h.send(1, &f), Verdict::Drop(DropReason::Truncated));
    }
    // A VLAN tag announced but cut off.
    let mut f = data(Mac::BROADCAST, mac(1), 16);
    f[12..14].copy_from_slice(&0x8100u16.to_be_bytes());
    assert_eq!(h.send(1, &f), Verdict::Drop(DropReason::Truncated));
    assert_eq!(dropped(&h, DropReason::Truncated), 15);
}

#[test]
fn multicast_zero_sources_and_heartbeats_are_invalid_sources_and_not_learned() {
    let mut h = two_networks();
    let group_src = Mac([0x01, 0, 0x5e, 0, 0, 1]);
    for src in [group_src, Mac::BROADCAST, Mac::ZERO] {
        let v = h.send(1, &data(mac(2), src, 64));
        assert_eq!(v, Verdict::Drop(DropReason::InvalidSource));
    }
    let heartbeat = frame(Mac::ZERO, Mac::ZERO, 0x88b5, 46);
    assert_eq!(
        h.send(10, &heartbeat),
        Verdict::Drop(DropReason::InvalidSource)
    );
    assert_eq!(dropped(&h, DropReason::InvalidSource), 4);
    assert_eq!(h.sw.mac_entries(h.now).count(), 0);
}

#[test]
fn broadcast_reaches_every_port_of_its_network_and_none_of_another() {
    let mut h = two_networks();
    assert_eq!(
        h.send(1, &data(Mac::BROADCAST, mac(1), 64)),
        Verdict::Forward
    );
    assert_eq!(h.out(), vec![2, 3, 10, 11]);
    assert_eq!(
        h.send(4, &data(Mac::BROADCAST, mac(4), 64)),
        Verdict::Forward
    );
    assert_eq!(h.out(), vec![5, 12]);
    assert_eq!(h.sw.counters().flooded_broadcast, 2);
}

#[test]
fn unknown_unicast_floods_then_known_unicast_goes_to_one_port() {
    let mut h = two_networks();
    assert_eq!(h.send(1, &data(mac(2), mac(1), 64)), Verdict::Forward);
    assert_eq!(h.out(), vec![2, 3, 10, 11]);
    // mac(2) answers from port 2: both are known now.
    assert_eq!(h.send(2, &data(mac(1), mac(2), 64)), Verdict::Forward);
    assert_eq!(h.out(), vec![1]);
    assert_eq!(h.send(1, &data(mac(2), mac(1), 1500)), Verdict::Forward);
    assert_eq!(h.out(), vec![2]);
    let c = h.sw.counters();
    assert_eq!((c.flooded_unknown_unicast, c.forwarded_unicast), (1, 2));
    assert_eq!(c.macs.learned, 2);
}

#[test]
fn the_same_mac_in_two_networks_is_two_stations() {
    let mut h = two_networks();
    let _ = h.send(2, &data(Mac::BROADCAST, mac(7), 64));
    let _ = h.send(5, &data(Mac::BROADCAST, mac(7), 64));
    assert_eq!(h.send(1, &data(mac(7), mac(1), 64)), Verdict::Forward);
    assert_eq!(h.out(), vec![2]);
    assert_eq!(h.send(4, &data(mac(7), mac(4), 64)), Verdict::Forward);
    assert_eq!(h.out(), vec![5]);
}

#[test]
fn a_known_destination_on_the_ingress_port_is_a_hairpin_drop() {
    let mut h = two_networks();
    let _ = h.send(1, &data(Mac::BROADCAST, mac(1), 64));
    let _ = h.send(1, &data(Mac::BROADCAST, mac(9), 64));
    assert_eq!(
        h.send(1, &data(mac(9), mac(1), 64)),
        Verdict::Drop(DropReason::Hairpin)
    );
    assert!(h.egress.is_empty());
}

#[test]
fn split_horizon_frames_from_a_peer_never_go_to_another_peer() {
    let mut h = two_networks();
    // Broadcast and unknown unicast from a peer reach local ports only.
    assert_eq!(
        h.send(10, &data(Mac::BROADCAST, mac(20), 64)),
        Verdict::Forward
    );
    assert_eq!(h.out(), vec![1, 2, 3]);
    assert_eq!(h.send(10, &data(mac(99), mac(20), 64)), Verdict::Forward);
    assert_eq!(h.out(), vec![1, 2, 3]);
    // A MAC known behind peer 11 is not reachable from peer 10 through this switch.
    let _ = h.send(11, &data(Mac::BROADCAST, mac(21), 64));
    assert_eq!(
        h.send(10, &data(mac(21), mac(20), 64)),
        Verdict::Drop(DropReason::RemoteToRemote)
    );
    // Local → remote and remote → local unicast are fine.
    assert_eq!(h.send(1, &data(mac(21), mac(1), 64)), Verdict::Forward);
    assert_eq!(h.out(), vec![11]);
    assert_eq!(h.send(10, &data(mac(1), mac(20), 64)), Verdict::Forward);
    assert_eq!(h.out(), vec![1]);
}

#[test]
fn a_flood_with_nowhere_to_go_is_a_no_egress_drop() {
    // Only peers in the network: a broadcast from one may reach no local port.
    let mut h = Harness::with_ports(&[(10, NET_A, Remote), (11, NET_A, Remote), (1, NET_B, Local)]);
    assert_eq!(
        h.send(10, &data(Mac::BROADCAST, mac(20), 64)),
        Verdict::Drop(DropReason::NoEgress)
    );
    // A network's only port.
    assert_eq!(
        h.send(1, &data(Mac::BROADCAST, mac(1), 64)),
        Verdict::Drop(DropReason::NoEgress)
    );
    assert_eq!(dropped(&h, DropReason::NoEgress), 2);
}

#[test]
fn a_mac_that_moves_from_a_peer_to_a_local_port_is_reachable_at_once() {
    let mut h = two_networks();
    let _ = h.send(10, &data(Mac::BROADCAST, mac(30), 64));
    assert_eq!(h.sw.lookup_mac(h.now, NET_A, mac(30)), Some(PortId(10)));
    h.advance(Duration::from_millis(1));
    // The container now sends from local port 3.
    let _ = h.send(3, &data(Mac::BROADCAST, mac(30), 64));
    assert_eq!(h.send(1, &data(mac(30), mac(1), 64)), Verdict::Forward);
    assert_eq!(h.out(), vec![3]);
    assert_eq!(h.sw.counters().macs.moved, 1);
    assert_eq!(
        h.sw.poll_event(),
        Some(SwitchEvent::MacMoved {
            network: NET_A,
            mac: mac(30),
            from: PortId(10),
            to: PortId(3)
        })
    );
    // And back to the peer: traffic follows at once too.
    let _ = h.send(11, &data(Mac::BROADCAST, mac(30), 64));
    assert_eq!(h.send(1, &data(mac(30), mac(1), 64)), Verdict::Forward);
    assert_eq!(h.out(), vec![11]);
}

#[test]
fn learned_macs_age_out_and_flooding_resumes() {
    let mut h = two_networks();
    let _ = h.send(2, &data(Mac::BROADCAST, mac(2), 64));
    h.advance(Duration::from_secs(301));
    assert_eq!(h.send(1, &data(mac(2), mac(1), 64)), Verdict::Forward);
    assert_eq!(h.out(), vec![2, 3, 10, 11]);
}

#[test]
fn endpoints_are_pinned_and_known_without_traffic() {
    let mut h = two_networks();
    h.sw.add_endpoint(h.now, PortId(10), mac(40), &[ip(40)])
        .unwrap();
    h.advance(Duration::from_secs(100_000));
    h.sw.handle_timeout(h.now);
    assert_eq!(h.send(1, &data(mac(40), mac(1), 64)), Verdict::Forward);
    assert_eq!(h.out(), vec![10]);
    let n: Vec<_> = h.sw.neighbours(h.now).collect();
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].neighbour.origin, NeighbourOrigin::Static);
}

#[test]
fn endpoint_api_rejects_bad_input_with_named_errors() {
    let mut h = two_networks();
    let now = h.now;
    assert!(h.sw.add_endpoint(now, PortId(99), mac(1), &[]).is_err());
    assert!(
        h.sw.add_endpoint(now, PortId(1), Mac::BROADCAST, &[])
            .is_err()
    );
    let err =
        h.sw.add_endpoint(
            now,
            PortId(1),
            mac(1),
            &[ip(1), Ipv4Addr::new(224, 0, 0, 5)],
        )
        .unwrap_err();
    assert!(err.to_string().contains("224.0.0.5"), "{err}");
    assert_eq!(h.sw.mac_entries(now).count(), 0, "nothing half-applied");
}

#[test]
fn a_stale_endpoint_withdrawal_does_not_undo_a_move() {
    let mut h = two_networks();
    let now = h.now;
    h.sw.add_endpoint(now, PortId(10), mac(40), &[ip(40)])
        .unwrap();
    // The container migrated here: attach pins it locally.
    h.sw.add_endpoint(now, PortId(3), mac(40), &[ip(40)])
        .unwrap();
    // Then the old peer's withdrawal arrives.
    h.sw.remove_endpoint(now, PortId(10), mac(40)).unwrap();
    assert_eq!(h.sw.lookup_mac(now, NET_A, mac(40)), Some(PortId(3)));
    assert_eq!(h.sw.neighbours(now).count(), 1);
    // The real detach removes both.
    h.sw.remove_endpoint(now, PortId(3), mac(40)).unwrap();
    assert_eq!(h.sw.lookup_mac(now, NET_A, mac(40)), None);
    assert_eq!(h.sw.neighbours(now).count(), 0);
}

#[test]
fn remove_port_forgets_its_macs_memberships_and_flood_entry() {
    let mut h = two_networks();
    let g = Ipv4Addr::new(239, 1, 1, 1);
    let _ = h.send(2, &data(Mac::BROADCAST, mac(2), 64));
    let _ = h.send(2, &igmp_v2_report((mac(2), ip(2)), g));
    h.sw.remove_port(PortId(2));
    assert_eq!(h.sw.lookup_mac(h.now, NET_A, mac(2)), None);
    assert_eq!(h.sw.groups(h.now).count(), 0);
    assert_eq!(
        h.send(1, &data(Mac::BROADCAST, mac(1), 64)),
        Verdict::Forward
    );
    assert_eq!(h.out(), vec![3, 10, 11]);
    assert_eq!(
        h.send(2, &data(Mac::BROADCAST, mac(2), 64)),
        Verdict::Drop(DropReason::UnknownPort)
    );
}

#[test]
fn re_adding_a_port_to_another_network_moves_it_cleanly() {
    let mut h = two_networks();
    let _ = h.send(3, &data(Mac::BROADCAST, mac(3), 64));
    h.sw.add_port(PortId(3), NET_B, Local);
    assert_eq!(h.sw.lookup_mac(h.now, NET_A, mac(3)), None);
    assert_eq!(
        h.send(4, &data(Mac::BROADCAST, mac(4), 64)),
        Verdict::Forward
    );
    assert_eq!(h.out(), vec![3, 5, 12]);
    assert_eq!(
        h.send(1, &data(Mac::BROADCAST, mac(1), 64)),
        Verdict::Forward
    );
    assert_eq!(h.out(), vec![2, 10, 11]);
}

// ---------------------------------------------------------------- ARP

#[test]
fn arp_proxy_answers_a_known_address_and_does_not_flood() {
    let mut h = two_networks();
    h.sw.add_endpoint(h.now, PortId(10), mac(40), &[ip(40)])
        .unwrap();
    let v = h.send(1, &who_has((mac(1), ip(1)), ip(40)));
    let Verdict::Reply(n) = v else {
        panic!("expected a proxy reply, got {v:?}")
    };
    assert!(h.egress.is_empty(), "an answered request is not flooded");
    // etherparse, an independent parser, agrees on every field of the reply.
    let p = etherparse::SlicedPacket::from_ethernet(&h.reply[..n]).unwrap();
    let Some(etherparse::LinkSlice::Ethernet2(eth)) = p.link else {
        panic!("not ethernet")
    };
    assert_eq!(eth.destination(), mac(1).0);
    assert_eq!(eth.source(), mac(40).0);
    let Some(etherparse::NetSlice::Arp(a)) = p.net else {
        panic!("not arp")
    };
    assert_eq!(a.operation(), etherparse::ArpOperation::REPLY);
    assert_eq!(a.sender_hw_addr(), &mac(40).0);
    assert_eq!(a.sender_protocol_addr(), &ip(40).octets());
    assert_eq!(a.target_hw_addr(), &mac(1).0);
    assert_eq!(a.target_protocol_addr(), &ip(1).octets());
    let c = h.sw.counters();
    assert_eq!(c.arp_proxied, 1);
    assert_eq!(c.flooded_broadcast, 0);
    // The asker's own binding was learned on the way.
    assert!(
        h.sw.neighbours(h.now)
            .any(|e| e.ip == ip(1) && e.neighbour.mac == mac(1))
    );
}

#[test]
fn arp_proxy_answers_from_learned_bindings_including_gratuitous_arp() {
    let mut h = two_networks();
    // A gratuitous ARP from a container on port 2 announces 10.32.0.2.
    let garp = arp(
        Mac::BROADCAST,
        ArpOperation::Request,
        (mac(2), ip(2)),
        (Mac::ZERO, ip(2)),
    );
    assert_eq!(h.send(2, &garp), Verdict::Forward, "gratuitous ARP floods");
    assert_eq!(h.out(), vec![1, 3, 10, 11]);
    assert!(matches!(
        h.send(1, &who_has((mac(1), ip(1)), ip(2))),
        Verdict::Reply(_)
    ));
    // Once the binding and the MAC age out, requests flood again.
    h.advance(Duration::from_secs(301));
    assert_eq!(
        h.send(1, &who_has((mac(1), ip(1)), ip(2))),
        Verdict::Forward
    );
}

#[test]
fn arp_proxy_stays_silent_where_answering_would_be_wrong() {
    let mut h = two_networks();
    let now = h.now;
    h.sw.add_endpoint(now, PortId(2), mac(2), &[ip(2)]).unwrap();
    h.sw.add_endpoint(now, PortId(1), mac(1), &[ip(1)]).unwrap();

    // From a peer: flooded to local ports, not answered.
    assert_eq!(
        h.send(10, &who_has((mac(20), ip(20)), ip(2))),
        Verdict::Forward
    );
    assert_eq!(h.out(), vec![1, 2, 3]);
    // A probe (sender 0.0.0.0) for a taken address: the owner answers, not the switch.
    let probe = who_has((mac(3), Ipv4Addr::UNSPECIFIED), ip(2));
    assert_eq!(h.send(3, &probe), Verdict::Forward);
    // A gratuitous request for the asker's own address.
    let garp = who_has((mac(1), ip(1)), ip(1));
    assert_eq!(h.send(1, &garp), Verdict::Forward);
    // A unicast request (reachability check) goes to the owner.
    let unicast = arp(
        mac(2),
        ArpOperation::Request,
        (mac(1), ip(1)),
        (mac(2), ip(2)),
    );
    assert_eq!(h.send(1, &unicast), Verdict::Forward);
    assert_eq!(h.out(), vec![2]);
    // The owner on the ingress port answers itself.
    h.sw.add_endpoint(now, PortId(2), mac(8), &[ip(8)]).unwrap();
    assert_eq!(
        h.send(2, &who_has((mac(2), ip(2)), ip(8))),
        Verdict::Forward
    );
    // An unknown address floods.
    assert_eq!(
        h.send(1, &who_has((mac(1), ip(1)), ip(77))),
        Verdict::Forward
    );
    assert_eq!(h.sw.counters().arp_proxied, 0);
    // A learned binding whose MAC location is unknown is not answered.
    let reply = arp(
        mac(1),
        ArpOperation::Reply,
        (mac(50), ip(50)),
        (mac(1), ip(1)),
    );
    let _ = h.send(3, &reply);
    h.sw.remove_port(PortId(3));
    assert_eq!(
        h.send(1, &who_has((mac(1), ip(1)), ip(50))),
        Verdict::Forward
    );
    assert_eq!(h.sw.counters().arp_proxied, 0);
}

#[test]
fn arp_proxy_can_be_turned_off() {
    let mut h = Harness::new(SwitchConfig {
        arp_proxy: false,
        ..SwitchConfig::default()
    });
    h.sw.add_port(PortId(1), NET_A, Local);
    h.sw.add_port(PortId(2), NET_A, Local);
    h.sw.add_endpoint(h.now, PortId(2), mac(2), &[ip(2)])
        .unwrap();
    assert_eq!(
        h.send(1, &who_has((mac(1), ip(1)), ip(2))),
        Verdict::Forward
    );
    assert_eq!(h.out(), vec![2]);
}

#[test]
fn a_too_small_reply_buffer_floods_instead_and_is_counted() {
    let mut h = two_networks();
    h.sw.add_endpoint(h.now, PortId(2), mac(2), &[ip(2)])
        .unwrap();
    let req = who_has((mac(1), ip(1)), ip(2));
    let mut small = [0u8; switch::REPLY_MIN_LEN - 1];
    let v =
        h.sw.handle_frame(h.now, PortId(1), &req, &mut h.egress, &mut small);
    assert_eq!(v, Verdict::Forward);
    assert_eq!(h.sw.counters().arp_proxy_no_room, 1);
}

#[test]
fn arp_claims_against_static_bindings_are_refused_and_reported() {
    let mut h = two_networks();
    h.sw.add_endpoint(h.now, PortId(2), mac(2), &[ip(2)])
        .unwrap();
    let spoof = arp(
        mac(1),
        ArpOperation::Reply,
        (mac(66), ip(2)),
        (mac(1), ip(1)),
    );
    let _ = h.send(3, &spoof);
    assert_eq!(
        h.sw.poll_event(),
        Some(SwitchEvent::NeighbourConflict {
            network: NET_A,
            ip: ip(2),
            static_mac: mac(2),
            claimed_by: mac(66),
            port: PortId(3),
        })
    );
    // The proxy still answers with the vouched-for MAC.
    let Verdict::Reply(n) = h.send(1, &who_has((mac(1), ip(1)), ip(2))) else {
        panic!("no proxy reply")
    };
    assert_eq!(&h.reply[22..28], &mac(2).0);
    assert!(n >= 42);
}

#[test]
fn malformed_arp_is_a_counted_drop() {
    let mut h = two_networks();
    let mut f = who_has((mac(1), ip(1)), ip(2));
    f[14] = 9; // hardware type
    assert_eq!(h.send(1, &f), Verdict::Drop(DropReason::MalformedArp));
    let short = &who_has((mac(1), ip(1)), ip(2))[..30];
    assert_eq!(h.send(1, short), Verdict::Drop(DropReason::MalformedArp));
    assert_eq!(dropped(&h, DropReason::MalformedArp), 2);
}

// ---------------------------------------------------------------- multicast

const G1: Ipv4Addr = Ipv4Addr::new(239, 1, 2, 3);
/// Shares G1's MAC (01:00:5e:01:02:03): only the IP tells them apart.
const G1_ALIAS: Ipv4Addr = Ipv4Addr::new(239, 129, 2, 3);

#[test]
fn group_traffic_reaches_members_only_decided_by_ip_not_mac() {
    let mut h = two_networks();
    assert_eq!(
        h.send(2, &igmp_v2_report((mac(2), ip(2)), G1)),
        Verdict::Forward
    );
    assert_eq!(h.out(), vec![1, 3, 10, 11], "IGMP itself floods");
    assert_eq!(h.send(1, &to_group((mac(1), ip(1)), G1)), Verdict::Forward);
    assert_eq!(h.out(), vec![2]);
    assert_eq!(
        Mac::from_ipv4_multicast(G1),
        Mac::from_ipv4_multicast(G1_ALIAS)
    );
    assert_eq!(
        h.send(1, &to_group((mac(1), ip(1)), G1_ALIAS)),
        Verdict::Drop(DropReason::NoGroupMembers)
    );
    let c = h.sw.counters();
    assert_eq!((c.multicast_to_members, c.igmp_snooped), (1, 1));
    assert_eq!(dropped(&h, DropReason::NoGroupMembers), 1);
}

#[test]
fn link_local_groups_flood_and_are_not_tracked() {
    let mut h = two_networks();
    let mdns = Ipv4Addr::new(224, 0, 0, 251);
    assert_eq!(
        h.send(1, &to_group((mac(1), ip(1)), mdns)),
        Verdict::Forward
    );
    assert_eq!(h.out(), vec![2, 3, 10, 11]);
    let _ = h.send(2, &igmp_v2_report((mac(2), ip(2)), mdns));
    assert_eq!(h.sw.groups(h.now).count(), 0);
    assert_eq!(
        h.send(1, &to_group((mac(1), ip(1)), mdns)),
        Verdict::Forward
    );
    assert_eq!(h.out(), vec![2, 3, 10, 11]);
}

#[test]
fn group_traffic_from_a_peer_reaches_local_members_only() {
    let mut h = two_networks();
    let _ = h.send(2, &igmp_v2_report((mac(2), ip(2)), G1));
    let _ = h.send(11, &igmp_v2_report((mac(21), ip(21)), G1));
    // From a local port: the local member and the peer with members.
    assert_eq!(h.send(1, &to_group((mac(1), ip(1)), G1)), Verdict::Forward);
    assert_eq!(h.out(), vec![2, 11]);
    // From peer 10: the local member only.
    assert_eq!(
        h.send(10, &to_group((mac(20), ip(20)), G1)),
        Verdict::Forward
    );
    assert_eq!(h.out(), vec![2]);
    // From the peer that has the members: local member only, never back.
    assert_eq!(
        h.send(11, &to_group((mac(21), ip(21)), G1)),
        Verdict::Forward
    );
    assert_eq!(h.out(), vec![2]);
    // The only member sending to its own group: nobody else to reach.
    let _ = h.send(2, &igmp_v2_leave((mac(2), ip(2)), G1));
    assert_eq!(
        h.send(11, &to_group((mac(21), ip(21)), G1)),
        Verdict::Drop(DropReason::NoGroupMembers)
    );
}

#[test]
fn leaves_end_local_memberships_at_once_but_remote_ones_age() {
    let mut h = two_networks();
    let _ = h.send(2, &igmp_v2_report((mac(2), ip(2)), G1));
    let _ = h.send(10, &igmp_v2_report((mac(20), ip(20)), G1));
    let _ = h.send(2, &igmp_v2_leave((mac(2), ip(2)), G1));
    let _ = h.send(10, &igmp_v2_leave((mac(20), ip(20)), G1));
    assert_eq!(h.send(1, &to_group((mac(1), ip(1)), G1)), Verdict::Forward);
    assert_eq!(
        h.out(),
        vec![10],
        "another member may remain behind the peer"
    );
    h.advance(Duration::from_secs(260));
    h.sw.handle_timeout(h.now);
    assert_eq!(
        h.send(1, &to_group((mac(1), ip(1)), G1)),
        Verdict::Drop(DropReason::NoGroupMembers)
    );
    assert_eq!(h.sw.counters().groups.expired, 1);
}

#[test]
fn igmp_v3_records_join_and_leave() {
    let mut h = two_networks();
    let g2 = Ipv4Addr::new(239, 9, 9, 9);
    // CHANGE_TO_EXCLUDE {} = join G1 and g2.
    let _ = h.send(3, &igmp_v3_report((mac(3), ip(3)), &[(4, G1), (2, g2)]));
    assert_eq!(h.send(1, &to_group((mac(1), ip(1)), g2)), Verdict::Forward);
    assert_eq!(h.out(), vec![3]);
    // CHANGE_TO_INCLUDE {} = leave g2.
    let _ = h.send(3, &igmp_v3_report((mac(3), ip(3)), &[(3, g2)]));
    assert_eq!(
        h.send(1, &to_group((mac(1), ip(1)), g2)),
        Verdict::Drop(DropReason::NoGroupMembers)
    );
    assert_eq!(h.send(1, &to_group((mac(1), ip(1)), G1)), Verdict::Forward);
    assert_eq!(h.out(), vec![3]);
}

#[test]
fn malformed_igmp_and_ipv4_in_multicast_frames_are_counted_drops() {
    let mut h = two_networks();
    let mut bad_sum = igmp_v2_report((mac(2), ip(2)), G1);
    let last = bad_sum.len() - 1;
    bad_sum[last] ^= 0xff;
    assert_eq!(
        h.send(2, &bad_sum),
        Verdict::Drop(DropReason::MalformedIgmp)
    );
    // A v3 report claiming a second record that is not there: nothing is applied.
    let mut v3 = igmp_v3_report((mac(2), ip(2)), &[(4, G1)]);
    v3[34 + 7] = 2;
    let c = !smoltcp::wire::checksum::data(&{
        let mut b = v3[34..].to_vec();
        b[2] = 0;
        b[3] = 0;
        b
    });
    v3[36..38].copy_from_slice(&c.to_be_bytes());
    assert_eq!(h.send(2, &v3), Verdict::Drop(DropReason::MalformedIgmp));
    assert_eq!(h.sw.groups(h.now).count(), 0);
    let mut bad_ip = to_group((mac(1), ip(1)), G1);
    bad_ip[14] = 0x65; // version 6 in an IPv4 frame
    assert_eq!(h.send(1, &bad_ip), Verdict::Drop(DropReason::MalformedIpv4));
    assert_eq!(dropped(&h, DropReason::MalformedIgmp), 2);
    assert_eq!(dropped(&h, DropReason::MalformedIpv4), 1);
}

#[test]
fn snooping_off_floods_all_multicast() {
    let mut h = Harness::new(SwitchConfig {
        igmp_snooping: false,
        ..SwitchConfig::default()
    });
    for p in 1..=3 {
        h.sw.add_port(PortId(p), NET_A, Local);
    }
    assert_eq!(h.send(1, &to_group((mac(1), ip(1)), G1)), Verdict::Forward);
    assert_eq!(h.out(), vec![2, 3]);
}

#[test]
fn ipv6_and_other_multicast_flood_but_bridge_reserved_frames_stop_here() {
    let mut h = two_networks();
    let nd = frame(Mac([0x33, 0x33, 0xff, 0, 0, 1]), mac(1), 0x86dd, 60);
    assert_eq!(h.send(1, &nd), Verdict::Forward);
    assert_eq!(h.out(), vec![2, 3, 10, 11]);
    let other = frame(
        Mac([0x01, 0x00, 0x0c, 0xcc, 0xcc, 0xcc]),
        mac(1),
        0x2000,
        46,
    );
    assert_eq!(h.send(1, &other), Verdict::Forward);
    let stp = frame(Mac([0x01, 0x80, 0xc2, 0, 0, 0]), mac(1), 0x0026, 46);
    assert_eq!(h.send(1, &stp), Verdict::Drop(DropReason::BridgeReserved));
    assert_eq!(h.sw.counters().flooded_multicast, 2);
}

#[test]
fn vlan_tagged_frames_are_switched_by_mac_alone() {
    let mut h = two_networks();
    h.sw.add_endpoint(h.now, PortId(2), mac(2), &[ip(2)])
        .unwrap();
    let tag = |f: Vec<u8>| {
        let mut t = f[..12].to_vec();
        t.extend_from_slice(&[0x81, 0x00, 0x00, 0x2a]);
        t.extend_from_slice(&f[12..]);
        t
    };
    // A tagged ARP request is not proxied (the reply would be untagged): it floods.
    assert_eq!(
        h.send(1, &tag(who_has((mac(1), ip(1)), ip(2)))),
        Verdict::Forward
    );
    assert_eq!(h.out(), vec![2, 3, 10, 11]);
    assert_eq!(h.send(1, &tag(data(mac(2), mac(1), 64))), Verdict::Forward);
    assert_eq!(h.out(), vec![2]);
    // Tagged group traffic floods: its IP header is not read.
    assert_eq!(
        h.send(1, &tag(to_group((mac(1), ip(1)), G1))),
        Verdict::Forward
    );
    assert_eq!(h.out(), vec![2, 3, 10, 11]);
    // QinQ too; and a tag alone (18 bytes) is a frame like any other.
    let mut q = tag(data(mac(2), mac(1), 64));
    q[12..14].copy_from_slice(&0x88a8u16.to_be_bytes());
    assert_eq!(h.send(1, &q), Verdict::Forward);
    assert_eq!(h.send(1, &q[..18]), Verdict::Forward);
}

// ---------------------------------------------------------------- querier and timers

#[test]
fn querier_sends_general_queries_to_local_ports_of_each_network() {
    let mut h = two_networks();
    let mut buf = vec![0u8; 1514];
    let mut ports = Vec::new();
    assert_eq!(h.sw.poll_transmit(h.now, &mut buf, &mut ports), None);
    let due = h.sw.poll_timeout().unwrap();
    assert_eq!(due, h.now + Duration::from_secs(1));
    h.now = due;
    h.sw.handle_timeout(h.now);

    let mut sent = Vec::new();
    while let Some(n) = h.sw.poll_transmit(h.now, &mut buf, &mut ports) {
        let p = etherparse::SlicedPacket::from_ethernet(&buf[..n]).unwrap();
        let Some(etherparse::NetSlice::Ipv4(ip4)) = p.net else {
            panic!("not ipv4")
        };
        assert_eq!(ip4.header().destination(), [224, 0, 0, 1]);
        assert_eq!(ip4.header().protocol(), etherparse::IpNumber::IGMP);
        assert_eq!(
            ip4.payload().payload.first(),
            Some(&0x11),
            "a membership query"
        );
        sent.push(ports.iter().map(|p| p.0).collect::<Vec<_>>());
    }
    assert_eq!(sent, vec![vec![1, 2, 3], vec![4, 5]]);
    assert_eq!(h.sw.counters().queries_sent, 2);
    // The next round is one query interval later.
    assert_eq!(h.sw.poll_timeout(), Some(h.now + Duration::from_secs(125)));
}

#[test]
fn no_querier_no_query_timer() {
    let mut h = Harness::new(SwitchConfig {
        igmp_querier: false,
        ..SwitchConfig::default()
    });
    h.sw.add_port(PortId(1), NET_A, Local);
    assert_eq!(h.sw.poll_timeout(), None);
    let _ = h.send(1, &data(Mac::BROADCAST, mac(1), 64));
    // Only the MAC table's sweep is pending now.
    let due = h.sw.poll_timeout().unwrap();
    assert!(due > h.now && due <= h.now + Duration::from_secs(300));
}

#[test]
fn an_invalid_config_is_refused() {
    let bad = SwitchConfig {
        membership_interval: Duration::from_millis(10),
        ..SwitchConfig::default()
    };
    assert!(switch::Switch::new(bad, std::time::Instant::now()).is_err());
}

#[test]
fn every_verdict_keeps_the_egress_invariants_and_networks_apart() {
    // Networks of the ports, to check that nothing crosses.
    let mut h = two_networks();
    let net_of = |p: u32| -> NetworkId {
        if matches!(p, 4 | 5 | 12) {
            NET_B
        } else {
            NET_A
        }
    };
    let frames = [
        data(Mac::BROADCAST, mac(1), 64),
        data(mac(2), mac(1), 64),
        who_has((mac(1), ip(1)), ip(2)),
        to_group((mac(1), ip(1)), G1),
        igmp_v2_report((mac(1), ip(1)), G1),
    ];
    for ingress in [1, 2, 3, 4, 5, 10, 11, 12] {
        for f in &frames {
            match h.send(ingress, f) {
                Verdict::Forward => {
                    assert!(!h.egress.is_empty());
                    assert!(!h.egress.contains(&PortId(ingress)));
                    assert!(h.out().iter().all(|&p| net_of(p) == net_of(ingress)));
                }
                Verdict::Reply(n) => assert!(n <= h.reply.len() && h.egress.is_empty()),
                Verdict::Drop(_) => assert!(h.egress.is_empty()),
            }
        }
    }
}
