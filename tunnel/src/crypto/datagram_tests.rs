use super::*;
use crate::crypto::session::{SessionConfig, TunnelKeys};
use crate::heartbeat::HeartbeatKind;
use crate::monitor::{PathMonitor, PathMonitorConfig, PathState};
use crate::offload::Coalescer;
use crate::testutil::{FrameSpec, pattern, tcp_frame, tso_frame};
use std::time::Duration;

const A: [u8; 6] = [0xaa, 1, 2, 3, 4, 5];
const B: [u8; 6] = [0xbb, 1, 2, 3, 4, 5];

fn sessions(now: Instant) -> (TunnelSession, TunnelSession) {
    let (ka, kb) = TunnelKeys::pair_for_testing(&[3; 32]).unwrap();
    let cfg = SessionConfig::default();
    (
        TunnelSession::new(&ka, 10, 20, cfg, now).unwrap(),
        TunnelSession::new(&kb, 20, 10, cfg, now).unwrap(),
    )
}

fn header(vni: u32) -> FrameHeader {
    FrameHeader {
        origin: A,
        destination: B,
        ttl: DEFAULT_TTL,
        flags: FrameFlags::DONT_FRAGMENT,
        vni: Vni::new(vni).unwrap(),
    }
}

fn eth_frame(len: usize, fill: u8) -> Vec<u8> {
    let mut f = vec![fill; len];
    f[12..14].copy_from_slice(&[0x08, 0x06]);
    f
}

#[test]
fn clear_header_layout_is_exact() {
    let h = ClearHeader {
        kind: DatagramKind::Heartbeat,
        epoch: 0x7f,
        receiver_index: 0x0403_0201,
        counter: 0x0c0b_0a09_0807_0605,
    };
    let mut buf = [0xffu8; HEADER_LEN];
    let aad = h.write(&mut buf);
    assert_eq!(buf, aad);
    assert_eq!(
        buf,
        [0x12, 0x7f, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
    );
    assert_eq!(ClearHeader::parse(&buf), Ok(h));
    assert_eq!(ClearHeader::parse(&buf[..15]), Err(TunnelDrop::Truncated));
    let mut v2 = buf;
    v2[0] = 0x21;
    assert_eq!(
        ClearHeader::parse(&v2),
        Err(TunnelDrop::UnsupportedVersion(2))
    );
    let mut t = buf;
    t[0] = 0x13;
    assert_eq!(ClearHeader::parse(&t), Err(TunnelDrop::UnknownType(0x13)));
}

#[test]
fn frame_header_layout_is_exact() {
    let h = header(0x0a0b0c);
    let b = h.encode(0x0102);
    assert_eq!(&b[0..6], &A);
    assert_eq!(&b[6..12], &B);
    assert_eq!(b[12..], [DEFAULT_TTL, 1, 0x0a, 0x0b, 0x0c, 1, 2]);
}

#[test]
fn several_frames_share_a_datagram_and_come_back_out() {
    let t0 = Instant::now();
    let (mut a, mut b) = sessions(t0);
    let input: Vec<(FrameHeader, Vec<u8>)> = (0..5u8)
        .map(|i| {
            (
                header(100 + u32::from(i)),
                eth_frame(60 + usize::from(i) * 100, i),
            )
        })
        .collect();
    let mut buf = Vec::new();
    let mut builder = DatagramBuilder::begin(&mut buf, 1472);
    for (h, f) in &input {
        builder.push_frame(h, f).unwrap();
    }
    assert_eq!(builder.frames(), 5);
    let expected_len = HEADER_LEN
        + TAG_LEN
        + input
            .iter()
            .map(|(_, f)| FRAME_HEADER_LEN + f.len())
            .sum::<usize>();
    assert_eq!(builder.len(), expected_len);
    let range = builder.seal(&mut a, t0).unwrap();
    assert_eq!(range, 0..expected_len);

    let opened = b.open(t0, &mut buf[range]).unwrap();
    assert_eq!(opened.kind, DatagramKind::Frames);
    let out: Vec<_> = frames(opened.plaintext)
        .map(|r| r.map(|(h, f)| (h, f.to_vec())))
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(out, input);
}

#[test]
fn builder_respects_the_size_limit() {
    let t0 = Instant::now();
    let (mut a, mut b) = sessions(t0);
    let limit = 1000;
    let frame = eth_frame(290, 1);
    let mut buf = vec![0xee; 7]; // bytes already in the batch buffer stay untouched
    let mut builder = DatagramBuilder::begin(&mut buf, limit);
    let mut pushed = 0;
    loop {
        match builder.push_frame(&header(1), &frame) {
            Ok(()) => pushed += 1,
            Err(e) => {
                assert_eq!(e, PushError::Full);
                break;
            }
        }
    }
    assert_eq!(
        pushed,
        (limit - HEADER_LEN - TAG_LEN) / (FRAME_HEADER_LEN + 290)
    );
    assert!(builder.len() <= limit);
    // A small frame still fits the rest.
    builder.push_frame(&header(1), &eth_frame(14, 2)).unwrap();
    assert_eq!(
        builder.push_frame(&header(1), &[0u8; 13]),
        Err(PushError::FrameTooShort)
    );
    assert_eq!(
        builder.push_frame(&header(1), &eth_frame(limit, 2)),
        Err(PushError::FrameTooLarge)
    );
    let r = builder.seal(&mut a, t0).unwrap();
    assert_eq!(&buf[..7], &[0xee; 7]);
    assert!(r.len() <= limit);
    // A second datagram back to back in the same buffer.
    let mut builder = DatagramBuilder::begin(&mut buf, limit);
    builder.push_frame(&header(2), &frame).unwrap();
    let r2 = builder.seal(&mut a, t0).unwrap();
    assert_eq!(r2.start, r.end);
    let n1 = frames(b.open(t0, &mut buf[r.clone()]).unwrap().plaintext).count();
    assert_eq!(n1, pushed + 1);
    let second = b.open(t0, &mut buf[r2]).unwrap();
    let (h, f) = frames(second.plaintext).next().unwrap().unwrap();
    assert_eq!((h.vni.get(), f), (2, &frame[..]));
}

#[test]
fn abandoned_builder_leaves_no_bytes() {
    let mut buf = vec![1, 2, 3];
    {
        let mut builder = DatagramBuilder::begin(&mut buf, 1400);
        builder.push_frame(&header(1), &eth_frame(100, 0)).unwrap();
    }
    assert_eq!(buf, [1, 2, 3]);
}

#[test]
fn frame_parser_is_bounds_checked() {
    let mut plain = Vec::new();
    plain.extend_from_slice(&header(5).encode(20));
    plain.extend_from_slice(&eth_frame(20, 9));
    let good = plain.clone();
    // Every truncation of a second record: the first comes out, then one error, then end.
    let mut second = header(6).encode(30).to_vec();
    second.extend_from_slice(&eth_frame(30, 8));
    for cut in 1..second.len() {
        let mut p = good.clone();
        p.extend_from_slice(&second[..cut]);
        let got: Vec<_> = frames(&p).collect();
        assert_eq!(got.len(), 2, "cut {cut}");
        assert!(got[0].is_ok());
        assert_eq!(got[1], Err(TunnelDrop::MalformedFrame));
    }
    // A frame length below an Ethernet header, a VNI that cannot be (never: 24 bits), and
    // an empty plaintext.
    let mut p = header(5).encode(13).to_vec();
    p.extend_from_slice(&[0; 13]);
    assert_eq!(
        frames(&p).collect::<Vec<_>>(),
        [Err(TunnelDrop::MalformedFrame)]
    );
    assert_eq!(frames(&[]).count(), 0);
    // Length longer than what is there.
    let mut p = header(5).encode(1000).to_vec();
    p.extend_from_slice(&[0; 100]);
    assert_eq!(
        frames(&p).collect::<Vec<_>>(),
        [Err(TunnelDrop::MalformedFrame)]
    );
}

#[test]
fn relaying_decrements_ttl_until_exceeded() {
    let mut h = header(1);
    h.ttl = 3;
    let h = h.relayed().unwrap();
    assert_eq!(h.ttl, 2);
    let h = h.relayed().unwrap();
    assert_eq!(h.ttl, 1);
    assert_eq!(h.relayed(), Err(TunnelDrop::TtlExceeded));
    assert_eq!(
        FrameHeader { ttl: 0, ..h }.relayed(),
        Err(TunnelDrop::TtlExceeded)
    );
}

#[test]
fn relay_decrypts_and_reencrypts_hop_by_hop() {
    // A → R → B: R opens with its A session, re-seals for B with its B session.
    let t0 = Instant::now();
    let (mut a_r, mut r_a) = sessions(t0);
    let (ka, kb) = TunnelKeys::pair_for_testing(&[4; 32]).unwrap();
    let cfg = SessionConfig::default();
    let mut r_b = TunnelSession::new(&ka, 30, 40, cfg, t0).unwrap();
    let mut b_r = TunnelSession::new(&kb, 40, 30, cfg, t0).unwrap();
    let frame = eth_frame(200, 7);
    let mut buf = Vec::new();
    let mut builder = DatagramBuilder::begin(&mut buf, 1400);
    builder.push_frame(&header(9), &frame).unwrap();
    let r = builder.seal(&mut a_r, t0).unwrap();

    let mut relay_out = Vec::new();
    let opened = r_a.open(t0, &mut buf[r]).unwrap();
    for record in frames(opened.plaintext) {
        let (h, f) = record.unwrap();
        assert_eq!(h.destination, B);
        let mut fwd = DatagramBuilder::begin(&mut relay_out, 1400);
        fwd.push_frame(&h.relayed().unwrap(), f).unwrap();
        fwd.seal(&mut r_b, t0).unwrap();
    }
    let delivered = b_r.open(t0, &mut relay_out).unwrap();
    let (h, f) = frames(delivered.plaintext).next().unwrap().unwrap();
    assert_eq!((h.origin, h.destination, h.ttl), (A, B, DEFAULT_TTL - 1));
    assert!(
        h.flags.contains(FrameFlags::DONT_FRAGMENT),
        "DF survives the relay"
    );
    assert_eq!(f, &frame[..]);
}

#[test]
fn df_flag_follows_the_inner_ip_header() {
    let mut spec = FrameSpec::v4();
    spec.df = true;
    assert_eq!(
        FrameFlags::for_frame(&tcp_frame(&spec, b"x")),
        FrameFlags::DONT_FRAGMENT
    );
    spec.df = false;
    assert_eq!(
        FrameFlags::for_frame(&tcp_frame(&spec, b"x")),
        FrameFlags::NONE
    );
    assert_eq!(
        FrameFlags::for_frame(&tcp_frame(&FrameSpec::v6(), b"x")),
        FrameFlags::DONT_FRAGMENT
    );
    assert_eq!(FrameFlags::for_frame(&eth_frame(60, 0)), FrameFlags::NONE);
    assert!(FrameFlags::from_bits(0xff).contains(FrameFlags::DONT_FRAGMENT));
    let both = FrameFlags::DONT_FRAGMENT.with(FrameFlags::SUBTREE);
    assert!(both.contains(FrameFlags::SUBTREE) && both.contains(FrameFlags::DONT_FRAGMENT));
    assert!(!FrameFlags::DONT_FRAGMENT.contains(FrameFlags::SUBTREE));
    assert_eq!(FrameFlags::from_bits(both.bits()), both);
    assert_eq!(both.without(FrameFlags::SUBTREE), FrameFlags::DONT_FRAGMENT);
}

#[test]
fn super_frame_becomes_one_gso_batch_of_sealed_datagrams() {
    let t0 = Instant::now();
    let (mut a, mut b) = sessions(t0);
    let spec = FrameSpec::v4();
    let payload = pattern(60_000);
    let (vnet, frame) = tso_frame(&spec, &payload, 1448);
    let mtu = overlay_mtu(Underlay::V4, 1500).unwrap();
    assert_eq!(mtu, 1407);
    let mut out = Vec::new();
    let seg = seal_super_frame(&mut a, t0, &vnet, &frame, &header(77), mtu, &mut out).unwrap();
    let mss = mtu - 40;
    assert_eq!(seg.count, payload.len().div_ceil(mss));
    assert_eq!(
        seg.stride,
        HEADER_LEN + FRAME_HEADER_LEN + 14 + mtu + TAG_LEN
    );
    assert_eq!(
        seg.stride,
        1500 - 28,
        "a full datagram exactly fills a 1500-byte path"
    );
    let last = out.len() - (seg.count - 1) * seg.stride;
    assert!(last > HEADER_LEN + FRAME_HEADER_LEN + TAG_LEN && last <= seg.stride);

    // Every datagram opens once, holds one record of one segment; coalescing the segments
    // gives back the original payload.
    let mut coalescer = Coalescer::new();
    let mut merged = Vec::new();
    for (i, dgram) in out.chunks_mut(seg.stride).enumerate() {
        let copy = dgram.to_vec();
        let opened = b.open(t0, dgram).unwrap();
        let records: Vec<_> = frames(opened.plaintext).collect::<Result<_, _>>().unwrap();
        assert_eq!(records.len(), 1, "datagram {i}");
        let (h, inner) = records[0];
        assert_eq!(h, header(77));
        assert!(inner.len() <= mtu + 14);
        coalescer.push(1, inner, &mut |_, _, f| merged.push(f.to_vec()));
        let mut again = copy;
        assert_eq!(b.open(t0, &mut again).err(), Some(TunnelDrop::Replayed));
    }
    coalescer.flush(&mut |_, _, f| merged.push(f.to_vec()));
    let l4 = 14 + 20 + 20;
    let joined: Vec<u8> = merged.iter().flat_map(|f| f[l4..].to_vec()).collect();
    assert_eq!(joined, payload);
    assert_eq!(b.counters().opened as usize, seg.count);
}

#[test]
fn super_frame_errors_leave_nothing_to_send() {
    let t0 = Instant::now();
    let (mut a, _) = sessions(t0);
    let (mut vnet, frame) = tso_frame(&FrameSpec::v4(), &pattern(5000), 1000);
    vnet.gso_size = 0;
    let mut out = vec![1, 2, 3];
    let e = seal_super_frame(&mut a, t0, &vnet, &frame, &header(1), 1400, &mut out).unwrap_err();
    assert_eq!(e, SendError::Segment(SegmentError::GsoSizeZero));
    assert!(out.is_empty());
    assert_eq!(e.name(), "segment_gso_size_zero");
    assert_eq!(a.counters().sealed, 0);
}

#[test]
fn single_frame_through_the_gso_path() {
    let t0 = Instant::now();
    let (mut a, mut b) = sessions(t0);
    let frame = tcp_frame(&FrameSpec::v4(), &pattern(500));
    let mut out = Vec::new();
    let seg = seal_super_frame(
        &mut a,
        t0,
        &VnetHdr::NONE,
        &frame,
        &header(3),
        1407,
        &mut out,
    )
    .unwrap();
    assert_eq!((seg.count, seg.stride), (1, out.len()));
    let opened = b.open(t0, &mut out).unwrap();
    let (_, f) = frames(opened.plaintext).next().unwrap().unwrap();
    assert_eq!(f, &frame[..]);
}

#[test]
fn overheads() {
    assert_eq!(TUNNEL_OVERHEAD, 93);
    assert_eq!(TUNNEL_OVERHEAD_V6, 113);
    assert_eq!(overlay_mtu(Underlay::V6, 1500), Some(1387));
    assert_eq!(overlay_mtu(Underlay::V4, 160), None);
    assert_eq!(overlay_mtu(Underlay::V4, 93 + 68), Some(68));
}

#[test]
fn heartbeats_through_the_tunnel_drive_path_monitors() {
    // Two monitors exchange sealed heartbeats; the link drops everything from 4 s to 10 s.
    let t0 = Instant::now();
    let (mut sa, mut sb) = sessions(t0);
    let cfg = PathMonitorConfig {
        probe_len: 1407 + 14,
        ..PathMonitorConfig::default()
    };
    let mut ma = PathMonitor::new(A, cfg, t0);
    let mut mb = PathMonitor::new(B, cfg, t0);
    let up = |t: Instant| t < t0 + Duration::from_secs(4) || t >= t0 + Duration::from_secs(10);
    let mut now = t0;
    let mut states = Vec::new();
    let mut buf = Vec::new();
    while now < t0 + Duration::from_secs(16) {
        exchange(&mut ma, &mut sa, &mut mb, &mut sb, now, up(now), &mut buf);
        exchange(&mut mb, &mut sb, &mut ma, &mut sa, now, up(now), &mut buf);
        states.push((now, ma.state()));
        now = ma
            .poll_timeout()
            .min(mb.poll_timeout())
            .max(now + Duration::from_millis(1));
    }
    let down_at = states
        .iter()
        .find(|(_, s)| matches!(s, PathState::Down { .. }))
        .unwrap()
        .0;
    assert!(down_at > t0 + Duration::from_secs(4) && down_at <= t0 + Duration::from_secs(8));
    assert!(matches!(states.last().unwrap().1, PathState::Up { .. }));
    assert!(sa.counters().sealed > 10 && sb.counters().opened > 5);
}

fn exchange(
    from: &mut PathMonitor,
    seal: &mut TunnelSession,
    to: &mut PathMonitor,
    open: &mut TunnelSession,
    now: Instant,
    link_up: bool,
    buf: &mut Vec<u8>,
) {
    from.handle_timeout(now);
    while let Some(hb) = from.poll_transmit(now) {
        buf.clear();
        let r = seal_heartbeat(seal, now, &hb, from.config().probe_len, buf).unwrap();
        assert_eq!(r.len(), HEADER_LEN + 1421 + TAG_LEN);
        if link_up {
            let opened = open.open(now, &mut buf[r]).unwrap();
            assert_eq!(opened.kind, DatagramKind::Heartbeat);
            let got = parse_heartbeat(opened.plaintext).unwrap();
            assert_eq!(got.kind, hb.kind);
            to.handle_heartbeat(now, &got);
        }
    }
}

#[test]
fn heartbeat_parse_errors_are_named() {
    assert_eq!(
        parse_heartbeat(&[0; 10]),
        Err(TunnelDrop::MalformedHeartbeat)
    );
    let hb = Heartbeat {
        kind: HeartbeatKind::Ping,
        sender: A,
        seq: 1,
        timestamp_ns: 2,
    };
    let mut f = [0u8; 64];
    let n = hb.encode(0, &mut f).unwrap();
    assert_eq!(parse_heartbeat(&f[..n]), Ok(hb));
}

#[test]
fn packer_gathers_frames_across_calls_finishes_partial_checksums_and_stops_at_the_path() {
    let t0 = Instant::now();
    let (mut a, mut b) = sessions(t0);
    let spec = FrameSpec::v4();
    let payload = pattern(40);
    // A container's UDP frame with the checksum left to offload, as its veth hands it over.
    let (mut partial, frame) = crate::testutil::uso_frame(&spec, &payload, 1400);
    partial.gso_type = wire::vnet::GSO_NONE;
    partial.gso_size = 0;
    let finished = crate::testutil::udp_frame(&spec, &payload);
    assert_ne!(frame, finished);

    let max = max_datagram_len(1407);
    let mut packer = FramePacker::default();
    assert!(packer.is_empty());
    let mut sent = 0;
    loop {
        match packer.push_frame(&header(7), &partial, &frame, max) {
            Ok(()) => sent += 1,
            Err(e) => {
                assert_eq!(e, PushError::Full);
                break;
            }
        }
    }
    let record = FRAME_HEADER_LEN + frame.len();
    assert_eq!(sent, (max - HEADER_LEN - TAG_LEN) / record);
    assert_eq!(packer.frames(), sent);
    let mut dgram = packer.seal(&mut a, t0).unwrap().to_vec();
    assert!(packer.is_empty());
    assert!(dgram.len() <= max);
    let opened = b.open(t0, &mut dgram).unwrap();
    let out: Vec<_> = frames(opened.plaintext)
        .map(|r| r.unwrap().1.to_vec())
        .collect();
    assert_eq!(out.len(), sent);
    assert!(out.iter().all(|f| *f == finished), "checksum not finished");

    // The next datagram starts afresh, and a frame too big for the path is refused whole.
    packer
        .push_frame(&header(7), &VnetHdr::NONE, &frame, max)
        .unwrap();
    let big = eth_frame(max, 1);
    assert_eq!(
        packer.push_frame(&header(7), &VnetHdr::NONE, &big, max),
        Err(PushError::FrameTooLarge)
    );
    assert_eq!(
        packer.push_frame(&header(7), &VnetHdr::NONE, &frame[..10], max),
        Err(PushError::FrameTooShort)
    );
    let mut bad = partial;
    bad.csum_start = 2000;
    assert_eq!(
        packer.push_frame(&header(7), &bad, &frame, max),
        Err(PushError::BadChecksumOffsets)
    );
    assert_eq!(packer.frames(), 1);
    let mut dgram = packer.seal(&mut a, t0).unwrap().to_vec();
    let opened = b.open(t0, &mut dgram).unwrap();
    assert_eq!(frames(opened.plaintext).count(), 1);
    assert!(packer.is_empty());
}

#[test]
fn the_longest_datagram_is_one_full_size_frame() {
    let t0 = Instant::now();
    let (mut a, _) = sessions(t0);
    let mut packer = FramePacker::default();
    let max = max_datagram_len(1407);
    packer
        .push_frame(&header(1), &VnetHdr::NONE, &eth_frame(1407 + 14, 1), max)
        .unwrap();
    assert_eq!(packer.seal(&mut a, t0).unwrap().len(), max);
    assert_eq!(max + 28, 1500, "an IPv4 underlay of MTU 1500 carries it");
}
