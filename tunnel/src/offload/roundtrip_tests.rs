//! The whole cross-host path without sockets: TSO super-frame → [`segment`] behind a VXLAN
//! header → datagrams → [`decap`] → [`Coalescer`] → super-frame, which must carry the
//! original bytes with consistent headers.

use proptest::prelude::*;
use wire::VnetHdr;
use wire::tcp::flags;

use super::{Coalescer, segment};
use crate::testutil::{FrameSpec, pattern, tso_frame};
use crate::vxlan::{Vni, VxlanHeader, decap};

/// Emitted (vnet, frame) pairs for one super-frame sent across.
fn across(spec: &FrameSpec, payload: &[u8], gso: u16, mtu: usize) -> Vec<(VnetHdr, Vec<u8>)> {
    let (vnet, frame) = tso_frame(spec, payload, gso);
    let vni = Vni::new(0x1234).unwrap();
    let mut wire = Vec::new();
    let s = segment(
        &vnet,
        &frame,
        mtu,
        &VxlanHeader::new(vni).to_bytes(),
        &mut wire,
    )
    .unwrap();
    let mut c = Coalescer::new();
    c.set_mtu(mtu);
    let mut out = Vec::new();
    let mut emit = |tag: u64, v: &VnetHdr, f: &[u8]| {
        assert_eq!(tag, u64::from(vni.get()));
        out.push((*v, f.to_vec()));
    };
    for dgram in wire.chunks(s.stride) {
        let (got, inner) = decap(dgram).unwrap();
        assert_eq!(got, vni);
        c.push(u64::from(got.get()), inner, &mut emit);
    }
    c.flush(&mut emit);
    out
}

/// The original super-frame with its checksum finished, for byte comparison.
fn finished(spec: &FrameSpec, payload: &[u8], gso: u16) -> Vec<u8> {
    let (vnet, mut frame) = tso_frame(spec, payload, gso);
    vnet.complete_checksum(&mut frame).unwrap();
    frame
}

#[test]
fn super_frame_survives_the_trip_byte_for_byte() {
    for spec in [
        FrameSpec::v4().with_timestamps(),
        FrameSpec::v6().with_timestamps(),
        FrameSpec::v4(),
    ] {
        let payload = pattern(60_000);
        let out = across(&spec, &payload, 1448, 1500);
        assert_eq!(out.len(), 1);
        let (vnet, mut frame) = out.into_iter().next().unwrap();
        assert!(vnet.is_gso() && vnet.needs_csum());
        let ip_hdr = if spec.v6 { 40 } else { 20 };
        let room = 1500 - ip_hdr - 20 - spec.options.len();
        assert_eq!(usize::from(vnet.gso_size), room.min(1448));
        vnet.complete_checksum(&mut frame).unwrap();
        // Same headers (lengths, ident, seq, flags, checksums) and payload as the original.
        assert_eq!(frame, finished(&spec, &payload, 1448));
    }
}

#[test]
fn psh_super_frame_round_trips_with_psh() {
    let mut spec = FrameSpec::v4();
    spec.flags = flags::ACK | flags::PSH;
    let payload = pattern(20_000);
    let out = across(&spec, &payload, 1000, 1500);
    assert_eq!(out.len(), 1);
    let (vnet, mut frame) = out.into_iter().next().unwrap();
    vnet.complete_checksum(&mut frame).unwrap();
    assert_eq!(frame, finished(&spec, &payload, 1000));
}

#[test]
fn cut_smaller_for_the_path_then_merged_at_the_smaller_size() {
    let spec = FrameSpec::v4().with_timestamps();
    let payload = pattern(30_000);
    let out = across(&spec, &payload, 8948, 1450);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0.gso_size, 1450 - 20 - 32);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random payload sizes, MSS, families, options, PSH/FIN: every payload byte arrives,
    /// in order, in frames whose checksums verify once finished.
    #[test]
    fn segment_then_coalesce_preserves_payload(
        len in 0usize..65_000,
        mss in 1u16..9000,
        mtu in 200usize..9000,
        v6 in any::<bool>(),
        timestamps in any::<bool>(),
        psh in any::<bool>(),
        fin in any::<bool>(),
        seed in any::<u8>(),
    ) {
        let mut spec = if v6 { FrameSpec::v6() } else { FrameSpec::v4() };
        if timestamps {
            spec = spec.with_timestamps();
        }
        spec.seq = u32::MAX - 5000 + u32::from(seed);
        spec.flags = flags::ACK
            | if psh { flags::PSH } else { 0 }
            | if fin { flags::FIN } else { 0 };
        let payload: Vec<u8> = pattern(len).iter().map(|b| b ^ seed).collect();
        let out = across(&spec, &payload, mss, mtu);
        let mut joined = Vec::new();
        let mut next = spec.seq;
        for (vnet, mut frame) in out.clone() {
            vnet.complete_checksum(&mut frame).unwrap();
            let p = etherparse::SlicedPacket::from_ethernet(&frame).unwrap();
            let Some(etherparse::TransportSlice::Tcp(tcp)) = &p.transport else {
                panic!("no TCP")
            };
            let ok = match &p.net {
                Some(etherparse::NetSlice::Ipv4(ip)) => {
                    let h = ip.header().to_header();
                    prop_assert_eq!(h.header_checksum, h.calc_header_checksum());
                    tcp.to_header().calc_checksum_ipv4(&h, tcp.payload()).unwrap()
                }
                Some(etherparse::NetSlice::Ipv6(ip)) => tcp
                    .to_header()
                    .calc_checksum_ipv6(&ip.header().to_header(), tcp.payload())
                    .unwrap(),
                _ => panic!("no IP"),
            };
            prop_assert_eq!(tcp.checksum(), ok);
            prop_assert_eq!(tcp.sequence_number(), next);
            next = next.wrapping_add(tcp.payload().len() as u32);
            joined.extend_from_slice(tcp.payload());
            if vnet.is_gso() {
                prop_assert!(tcp.payload().len() > usize::from(vnet.gso_size));
            }
        }
        prop_assert_eq!(joined, payload);
        // Without FIN (which is never merged) one super-frame carries everything (<64 KiB).
        if !fin {
            prop_assert_eq!(out.len(), 1);
        }
    }
}

/// (source port, sequence number, payload) of a frame the coalescer emitted, with the
/// checksum finished first for super-frames.
fn open(vnet: &VnetHdr, frame: &[u8]) -> (u16, u32, Vec<u8>) {
    let mut f = frame.to_vec();
    vnet.complete_checksum(&mut f).unwrap();
    let p = etherparse::SlicedPacket::from_ethernet(&f).unwrap();
    let Some(etherparse::TransportSlice::Tcp(tcp)) = &p.transport else {
        panic!("no TCP")
    };
    (
        tcp.source_port(),
        tcp.sequence_number(),
        tcp.payload().to_vec(),
    )
}

/// Every (sequence number, byte) a list of segments carries, in order.
fn bytes_by_seq(segments: &[(u32, Vec<u8>)]) -> Vec<(u32, u8)> {
    segments
        .iter()
        .flat_map(|(seq, p)| {
            p.iter()
                .enumerate()
                .map(move |(i, b)| (seq.wrapping_add(i as u32), *b))
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Arbitrary interleavings of three flows with gaps, reordering, PSH, odd sizes and
    /// corrupted segments: per flow, the bytes (and their sequence numbers) leave in the
    /// order they arrived, nothing is lost, invented or altered, and every super-frame's
    /// headers check out.
    #[test]
    fn coalescer_conserves_each_flows_bytes_in_order(
        steps in proptest::collection::vec(
            (0u16..3, 1usize..1500, 0u8..10, any::<bool>(), any::<bool>()),
            1..120,
        ),
        slots in 1usize..4,
    ) {
        let mut next_seq = [1000u32; 3];
        let mut inputs: Vec<Vec<(u32, Vec<u8>)>> = vec![Vec::new(); 3];
        let mut c = Coalescer::with_slots(slots);
        let mut outputs: Vec<Vec<(u32, Vec<u8>)>> = vec![Vec::new(); 3];
        let mut emit = |_: u64, v: &VnetHdr, f: &[u8]| {
            let (port, seq, payload) = open(v, f);
            if v.is_gso() {
                assert!(payload.len() > usize::from(v.gso_size));
            }
            outputs[usize::from(port - 40000)].push((seq, payload));
        };
        for (flow, len, jump, psh, corrupt) in steps {
            let mut spec = FrameSpec::v4().with_timestamps();
            spec.src_port = 40000 + flow;
            let i = usize::from(flow);
            // Mostly contiguous; sometimes a gap or a step back (reordering).
            spec.seq = match jump {
                0 => next_seq[i].wrapping_add(700),
                1 => next_seq[i].wrapping_sub(len as u32),
                _ => next_seq[i],
            };
            next_seq[i] = spec.seq.wrapping_add(len as u32);
            if psh {
                spec.flags |= flags::PSH;
            }
            let payload: Vec<u8> = pattern(len).iter().map(|b| b ^ flow as u8).collect();
            let mut frame = crate::testutil::tcp_frame(&spec, &payload);
            if corrupt && jump == 9 {
                let at = frame.len() - 1;
                frame[at] ^= 0x10;
            }
            let l = frame.len();
            inputs[i].push((spec.seq, frame[l - len..].to_vec()));
            c.push(u64::from(flow % 2), &frame, &mut emit);
        }
        c.flush(&mut emit);
        for flow in 0..3 {
            prop_assert_eq!(bytes_by_seq(&outputs[flow]), bytes_by_seq(&inputs[flow]));
        }
        prop_assert_eq!(c.pending(), 0);
    }
}
