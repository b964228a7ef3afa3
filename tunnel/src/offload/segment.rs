//! Userspace TSO/USO: cutting a super-frame into datagrams for one UDP GSO send.
//!
//! Output layout in the caller's `out`: `count` datagrams back to back, each
//! `prefix ‖ Ethernet ‖ IP ‖ TCP/UDP ‖ payload chunk ‖ trailer`, all `stride` bytes long
//! except the last, which may be shorter (the trailer is zeroed room for an AEAD tag, empty
//! for VXLAN): exactly what `UDP_SEGMENT` with `segment_size = stride`
//! expects. The caller splits the buffer into sends of at most the kernel's segment limit
//! (64, or 128 on newer kernels) and 65507 bytes (IPv4; 65527 for IPv6) of UDP payload.
//!
//! Per TCP segment, as Linux's `tcp_gso_segment`/`inet_gso_segment` do: IPv4 total length,
//! identification (+1 per segment) and header checksum, or the IPv6 payload length; TCP
//! sequence number; FIN and PSH only on the last segment, CWR only on the first; and a fully
//! computed TCP checksum (the pseudo-header's address part is summed once per super-frame,
//! then each segment adds its length, header and payload: Tailscale's checksum unwinding).
//! A `gso_size` that would exceed the path MTU is cut smaller: TCP does not care where
//! segments end. UDP datagrams (USO) are cut at exactly `gso_size` because datagram
//! boundaries are the application's; if those do not fit the path, that is an error.

use wire::checksum::Checksum;
use wire::ipv4::{self, protocol};
use wire::ipv6;
use wire::tcp::{self, TcpSegment, flags};
use wire::vnet::{GSO_NONE, GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4};
use wire::{VnetHdr, WireError, udp};

use crate::layout::{IpFamily, IpLayout};

/// Offset of the UDP checksum field within the UDP header (virtio `csum_offset` for UDP).
const UDP_CHECKSUM_OFFSET: usize = 6;

/// Why a frame could not be segmented: each variant is a named drop ([`SegmentError::name`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SegmentError {
    /// A super-frame whose `gso_size` is 0: there is no segment size to cut at.
    #[error("virtio header asks for segmentation with gso_size 0")]
    GsoSizeZero,
    /// A `gso_type` weft does not segment (UFO, or an unknown value).
    #[error("unsupported virtio gso_type {0:#04x} (only TCPv4, TCPv6 and UDP_L4 are segmented)")]
    UnsupportedGsoType(u8),
    /// `csum_start + csum_offset` lies outside the frame.
    #[error("virtio checksum offsets point outside the frame")]
    ChecksumOutOfRange,
    /// The frame is not IP, or not the IP version its `gso_type` names.
    #[error("super-frame's IP version does not match its virtio gso_type")]
    FamilyMismatch,
    /// The IP packet does not carry the transport its `gso_type` names (for IPv6 this
    /// includes extension headers, which weft does not walk).
    #[error("super-frame's transport protocol does not match its virtio gso_type")]
    ProtocolMismatch,
    /// An Ethernet, IP, TCP or UDP header is truncated or has impossible lengths.
    #[error("malformed headers in super-frame: {0}")]
    MalformedHeaders(WireError),
    /// `csum_start`/`csum_offset` disagree with where the IP header says the transport is.
    #[error("virtio csum_start/csum_offset disagree with the packet's headers")]
    HeadersInconsistent,
    /// An IPv4 fragment offered for segmentation.
    #[error("IPv4 fragment offered as a super-frame")]
    Fragment,
    /// The headers alone do not fit the path MTU, so no segment can carry data.
    #[error("frame headers alone exceed the path MTU")]
    HeadersExceedMtu,
    /// A USO super-frame whose datagrams are larger than the path MTU allows.
    #[error("UDP segment size exceeds the path MTU; UDP datagrams cannot be cut smaller")]
    DatagramExceedsMtu,
}

crate::counted_reasons!(SegmentError {
    GsoSizeZero => "segment_gso_size_zero",
    UnsupportedGsoType => "segment_unsupported_gso_type",
    ChecksumOutOfRange => "segment_checksum_out_of_range",
    FamilyMismatch => "segment_family_mismatch",
    ProtocolMismatch => "segment_protocol_mismatch",
    MalformedHeaders => "segment_malformed_headers",
    HeadersInconsistent => "segment_headers_inconsistent",
    Fragment => "segment_fragment",
    HeadersExceedMtu => "segment_headers_exceed_mtu",
    DatagramExceedsMtu => "segment_datagram_exceeds_mtu",
});

impl From<WireError> for SegmentError {
    fn from(e: WireError) -> Self {
        Self::MalformedHeaders(e)
    }
}

/// Shape of the datagrams [`segment`] wrote: what a GSO send needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segmented {
    /// Length of every datagram but the last (the GSO `segment_size`); for a single
    /// datagram, its length.
    pub stride: usize,
    /// Number of datagrams (at least 1).
    pub count: usize,
}

/// Cuts `frame` (an Ethernet frame whose unfinished work `vnet` describes) into datagrams
/// of IP packets of at most `mtu` bytes, each behind `prefix` (the VXLAN header), into
/// `out` (cleared first; its capacity is reused, so after the largest super-frame it never
/// reallocates).
///
/// - TCPv4/TCPv6 super-frames: cut at `min(gso_size, what fits mtu)`.
/// - UDP_L4 (USO) super-frames: cut at exactly `gso_size`.
/// - Anything else: one datagram, its checksum finished if `NEEDS_CSUM` asks for it.
///   Whether such a frame fits the path is [`crate::pmtu`]'s question, not this one's.
///
/// On error `out` holds no complete datagram the caller should send.
pub fn segment(
    vnet: &VnetHdr,
    frame: &[u8],
    mtu: usize,
    prefix: &[u8],
    out: &mut Vec<u8>,
) -> Result<Segmented, SegmentError> {
    segment_with_trailer(vnet, frame, mtu, prefix, 0, out)
}

/// [`segment`] with `trailer` zero bytes after every datagram: room the encrypted tunnel
/// fills with each datagram's AEAD tag when it seals the datagrams in place. The stride
/// and the last datagram's length include the trailer.
pub fn segment_with_trailer(
    vnet: &VnetHdr,
    frame: &[u8],
    mtu: usize,
    prefix: &[u8],
    trailer: usize,
    out: &mut Vec<u8>,
) -> Result<Segmented, SegmentError> {
    out.clear();
    let layout = Layout { prefix, trailer };
    let result = match vnet.gso_kind() {
        GSO_NONE => single(vnet, frame, layout, out),
        GSO_TCPV4 => segment_tcp(vnet, frame, mtu, layout, out, IpFamily::V4),
        GSO_TCPV6 => segment_tcp(vnet, frame, mtu, layout, out, IpFamily::V6),
        GSO_UDP_L4 => segment_udp(vnet, frame, mtu, layout, out),
        other => Err(SegmentError::UnsupportedGsoType(other)),
    };
    if result.is_err() {
        out.clear();
    }
    result
}

/// What surrounds every output datagram's inner frame.
#[derive(Clone, Copy)]
struct Layout<'a> {
    prefix: &'a [u8],
    trailer: usize,
}

impl Layout<'_> {
    /// Bytes a datagram adds around its inner frame.
    fn overhead(&self) -> usize {
        self.prefix.len() + self.trailer
    }

    /// Closes the datagram just written: appends the zeroed trailer room.
    fn close(&self, out: &mut Vec<u8>) {
        out.resize(out.len() + self.trailer, 0);
    }
}

/// A frame that is not a super-frame: copied behind the prefix, checksum finished.
fn single(
    vnet: &VnetHdr,
    frame: &[u8],
    layout: Layout<'_>,
    out: &mut Vec<u8>,
) -> Result<Segmented, SegmentError> {
    out.extend_from_slice(layout.prefix);
    out.extend_from_slice(frame);
    if vnet.needs_csum() {
        let copy = out.get_mut(layout.prefix.len()..).unwrap_or_default();
        vnet.complete_checksum(copy)
            .map_err(|_| SegmentError::ChecksumOutOfRange)?;
    }
    layout.close(out);
    Ok(Segmented {
        stride: out.len(),
        count: 1,
    })
}

/// Checks the parts of a super-frame common to TCP and UDP and returns its layout.
fn super_frame_layout(
    vnet: &VnetHdr,
    frame: &[u8],
    family: Option<IpFamily>,
    transport: u8,
    csum_offset: usize,
) -> Result<IpLayout, SegmentError> {
    if vnet.gso_size == 0 {
        return Err(SegmentError::GsoSizeZero);
    }
    let layout = IpLayout::parse(frame)?.ok_or(SegmentError::FamilyMismatch)?;
    if family.is_some_and(|f| f != layout.family) {
        return Err(SegmentError::FamilyMismatch);
    }
    if layout.fragment {
        return Err(SegmentError::Fragment);
    }
    if layout.protocol != transport {
        return Err(SegmentError::ProtocolMismatch);
    }
    if vnet.needs_csum() {
        let start = usize::from(vnet.csum_start);
        let field = start + usize::from(vnet.csum_offset);
        if field + 2 > frame.len() {
            return Err(SegmentError::ChecksumOutOfRange);
        }
        if start != layout.l4 || usize::from(vnet.csum_offset) != csum_offset {
            return Err(SegmentError::HeadersInconsistent);
        }
    }
    Ok(layout)
}

/// Writes the IP length (and for IPv4 the identification and header checksum) of one
/// segment whose IP packet is `ip_len` bytes.
fn fix_ip_header(
    seg: &mut [u8],
    layout: &IpLayout,
    ip_len: usize,
    ident: u16,
) -> Result<(), SegmentError> {
    let ip = seg.get_mut(layout.l3..).ok_or(WireError::Truncated)?;
    match layout.family {
        IpFamily::V4 => {
            let total = u16::try_from(ip_len).map_err(|_| WireError::Malformed)?;
            ipv4::rewrite_len_ident(ip, total, ident)?;
        }
        IpFamily::V6 => {
            let payload = ip_len
                .checked_sub(ipv6::HEADER_LEN)
                .and_then(|p| u16::try_from(p).ok())
                .ok_or(WireError::Malformed)?;
            ipv6::rewrite_payload_len(ip, payload)?;
        }
    }
    Ok(())
}

/// The IPv4 identification of the super-frame (0 for IPv6, which has none).
fn base_ident(frame: &[u8], layout: &IpLayout) -> u16 {
    match layout.family {
        IpFamily::V4 => frame
            .get(layout.l3 + 4..layout.l3 + 6)
            .map_or(0, |b| u16::from_be_bytes([b[0], b[1]])),
        IpFamily::V6 => 0,
    }
}

fn segment_tcp(
    vnet: &VnetHdr,
    frame: &[u8],
    mtu: usize,
    dgram: Layout<'_>,
    out: &mut Vec<u8>,
    family: IpFamily,
) -> Result<Segmented, SegmentError> {
    let layout = super_frame_layout(
        vnet,
        frame,
        Some(family),
        protocol::TCP,
        tcp::CHECKSUM_OFFSET,
    )?;
    let tcp = TcpSegment::new(layout.transport(frame))?;
    let hdr_end = layout.l4 + tcp.header_len();
    let header = frame.get(..hdr_end).ok_or(WireError::Truncated)?;
    let payload = frame.get(hdr_end..layout.end).ok_or(WireError::Truncated)?;
    let ip_headers = hdr_end - layout.l3;
    let room = mtu
        .checked_sub(ip_headers)
        .filter(|&r| r > 0)
        .ok_or(SegmentError::HeadersExceedMtu)?;
    let mss = usize::from(vnet.gso_size).min(room);
    let count = payload.len().div_ceil(mss).max(1);

    let seq = tcp.seq();
    let tcp_flags = tcp.flags();
    let ident = base_ident(frame, &layout);
    let pseudo = layout.pseudo_header_base(frame, protocol::TCP);
    let tcp_hl = tcp.header_len();

    let mut chunks = payload.chunks(mss);
    for i in 0..count {
        let chunk = chunks.next().unwrap_or_default();
        out.extend_from_slice(dgram.prefix);
        let seg_start = out.len();
        out.extend_from_slice(header);
        out.extend_from_slice(chunk);
        let seg = out.get_mut(seg_start..).unwrap_or_default();

        fix_ip_header(
            seg,
            &layout,
            ip_headers + chunk.len(),
            ident.wrapping_add(i as u16),
        )?;

        let mut f = tcp_flags;
        if i + 1 < count {
            f &= !(flags::FIN | flags::PSH);
        }
        if i > 0 {
            f &= !flags::CWR;
        }
        let t = seg.get_mut(layout.l4..).ok_or(WireError::Truncated)?;
        tcp::set_seq(t, seq.wrapping_add((i * mss) as u32))?;
        tcp::set_flags(t, f)?;
        tcp::set_checksum(t, 0)?;
        let mut c = pseudo;
        c.add_u32((tcp_hl + chunk.len()) as u32);
        // Header then payload: only the last chunk summed may have an odd length.
        c.add_bytes(t.get(..tcp_hl).unwrap_or_default());
        c.add_bytes(chunk);
        tcp::set_checksum(t, c.finish())?;
        dgram.close(out);
    }
    let stride = if count == 1 {
        out.len()
    } else {
        dgram.overhead() + hdr_end + mss
    };
    Ok(Segmented { stride, count })
}

fn segment_udp(
    vnet: &VnetHdr,
    frame: &[u8],
    mtu: usize,
    dgram: Layout<'_>,
    out: &mut Vec<u8>,
) -> Result<Segmented, SegmentError> {
    let layout = super_frame_layout(vnet, frame, None, protocol::UDP, UDP_CHECKSUM_OFFSET)?;
    let hdr_end = layout.l4 + udp::HEADER_LEN;
    if hdr_end > layout.end {
        return Err(WireError::Truncated.into());
    }
    let header = frame.get(..hdr_end).ok_or(WireError::Truncated)?;
    let payload = frame.get(hdr_end..layout.end).ok_or(WireError::Truncated)?;
    let ip_headers = hdr_end - layout.l3;
    let size = usize::from(vnet.gso_size);
    if ip_headers + size.min(payload.len()) > mtu {
        return Err(SegmentError::DatagramExceedsMtu);
    }
    let count = payload.len().div_ceil(size).max(1);
    let ident = base_ident(frame, &layout);
    let pseudo = layout.pseudo_header_base(frame, protocol::UDP);

    let mut chunks = payload.chunks(size);
    for i in 0..count {
        let chunk = chunks.next().unwrap_or_default();
        out.extend_from_slice(dgram.prefix);
        let seg_start = out.len();
        out.extend_from_slice(header);
        out.extend_from_slice(chunk);
        let seg = out.get_mut(seg_start..).unwrap_or_default();
        fix_ip_header(
            seg,
            &layout,
            ip_headers + chunk.len(),
            ident.wrapping_add(i as u16),
        )?;
        let udp_len = udp::HEADER_LEN + chunk.len();
        let u = seg
            .get_mut(layout.l4..layout.l4 + udp::HEADER_LEN)
            .ok_or(WireError::Truncated)?;
        u[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
        u[6..8].copy_from_slice(&[0, 0]);
        let mut c: Checksum = pseudo;
        c.add_u32(udp_len as u32);
        c.add_bytes(u);
        c.add_bytes(chunk);
        // A computed zero goes on the wire as all ones: zero means "no checksum".
        let value = match c.finish() {
            0 => 0xffff,
            v => v,
        };
        u[6..8].copy_from_slice(&value.to_be_bytes());
        dgram.close(out);
    }
    let stride = if count == 1 {
        out.len()
    } else {
        dgram.overhead() + hdr_end + size
    };
    Ok(Segmented { stride, count })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{FrameSpec, pattern, tcp_frame, tso_frame, udp_frame, uso_frame};
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};
    use wire::vnet::{F_NEEDS_CSUM, GSO_ECN, GSO_UDP};

    const PREFIX: [u8; 8] = [0x08, 0, 0, 0, 0, 0, 42, 0];

    /// What etherparse reads from one datagram: (ip total/payload len, seq, flags, payload).
    struct Seen {
        seq: u32,
        flags: u8,
        ident: Option<u16>,
        payload: Vec<u8>,
    }

    /// Parses every datagram with etherparse, checks lengths and checksums, returns fields.
    fn check_datagrams(out: &[u8], s: Segmented, mtu: usize) -> Vec<Seen> {
        let mut seen = Vec::new();
        let mut rest = out;
        for i in 0..s.count {
            let take = if i + 1 == s.count {
                rest.len()
            } else {
                s.stride
            };
            assert!(take <= s.stride, "datagram {i} longer than the stride");
            let (dgram, tail) = rest.split_at(take);
            rest = tail;
            assert_eq!(&dgram[..8], &PREFIX);
            let frame = &dgram[8..];
            let p = SlicedPacket::from_ethernet(frame).unwrap();
            let ip_len = match &p.net {
                Some(NetSlice::Ipv4(ip)) => {
                    let h = ip.header().to_header();
                    assert_eq!(h.header_checksum, h.calc_header_checksum(), "ip csum {i}");
                    usize::from(ip.header().total_len())
                }
                Some(NetSlice::Ipv6(ip)) => 40 + usize::from(ip.header().payload_length()),
                _ => panic!("no IP"),
            };
            assert_eq!(ip_len, frame.len() - 14, "IP length of datagram {i}");
            assert!(ip_len <= mtu, "datagram {i}: {ip_len} > mtu {mtu}");
            let Some(TransportSlice::Tcp(tcp)) = &p.transport else {
                panic!("no TCP")
            };
            let expected = match &p.net {
                Some(NetSlice::Ipv4(ip)) => tcp
                    .to_header()
                    .calc_checksum_ipv4(&ip.header().to_header(), tcp.payload())
                    .unwrap(),
                Some(NetSlice::Ipv6(ip)) => tcp
                    .to_header()
                    .calc_checksum_ipv6(&ip.header().to_header(), tcp.payload())
                    .unwrap(),
                _ => unreachable!(),
            };
            assert_eq!(tcp.checksum(), expected, "tcp checksum of datagram {i}");
            let ident = match &p.net {
                Some(NetSlice::Ipv4(ip)) => Some(ip.header().identification()),
                _ => None,
            };
            seen.push(Seen {
                seq: tcp.sequence_number(),
                flags: frame[14 + if ident.is_some() { 20 } else { 40 } + 13],
                ident,
                payload: tcp.payload().to_vec(),
            });
        }
        assert!(rest.is_empty());
        seen
    }

    fn run_tcp(spec: &FrameSpec, len: usize, gso: u16, mtu: usize) -> (Segmented, Vec<Seen>) {
        let payload = pattern(len);
        let (vnet, frame) = tso_frame(spec, &payload, gso);
        let mut out = Vec::new();
        let s = segment(&vnet, &frame, mtu, &PREFIX, &mut out).unwrap();
        let seen = check_datagrams(&out, s, mtu);
        let joined: Vec<u8> = seen.iter().flat_map(|s| s.payload.clone()).collect();
        assert_eq!(joined, payload);
        (s, seen)
    }

    #[test]
    fn tcpv4_segments_at_mss_with_last_short() {
        let spec = FrameSpec::v4();
        let (s, seen) = run_tcp(&spec, 10_000, 1448, 1500);
        assert_eq!(s.count, 7); // 6 × 1448 + 1312
        assert_eq!(s.stride, 8 + 14 + 20 + 20 + 1448);
        for (i, seg) in seen.iter().enumerate() {
            assert_eq!(seg.seq, spec.seq.wrapping_add((i * 1448) as u32));
            assert_eq!(seg.ident, Some(spec.ident.wrapping_add(i as u16)));
            assert_eq!(seg.payload.len(), if i < 6 { 1448 } else { 1312 });
        }
    }

    #[test]
    fn tcpv6_with_timestamps_various_mss() {
        for mss in [1u16, 7, 536, 1000, 1428] {
            let spec = FrameSpec::v6().with_timestamps();
            let (s, seen) = run_tcp(&spec, 5_001, mss, 1500);
            let per = usize::from(mss);
            assert_eq!(s.count, 5_001usize.div_ceil(per), "mss {mss}");
            for (i, seg) in seen.iter().enumerate() {
                assert_eq!(seg.seq, spec.seq.wrapping_add((i * per) as u32));
                assert_eq!(seg.ident, None);
            }
        }
    }

    #[test]
    fn sequence_numbers_wrap() {
        let mut spec = FrameSpec::v4();
        spec.seq = u32::MAX - 100;
        let (_, seen) = run_tcp(&spec, 3000, 1000, 1500);
        assert_eq!(seen[1].seq, 899);
        assert_eq!(seen[2].seq, 1899);
    }

    #[test]
    fn ident_wraps() {
        let mut spec = FrameSpec::v4();
        spec.ident = u16::MAX;
        let (_, seen) = run_tcp(&spec, 3000, 1000, 1500);
        assert_eq!(
            seen.iter().map(|s| s.ident).collect::<Vec<_>>(),
            [Some(u16::MAX), Some(0), Some(1)]
        );
    }

    #[test]
    fn fin_psh_last_cwr_first() {
        for v6 in [false, true] {
            let mut spec = if v6 { FrameSpec::v6() } else { FrameSpec::v4() };
            spec.flags = flags::ACK | flags::PSH | flags::FIN | flags::CWR | flags::ECE;
            let (s, seen) = run_tcp(&spec, 4000, 1000, 1500);
            assert_eq!(s.count, 4);
            let all = flags::ACK | flags::ECE;
            assert_eq!(seen[0].flags, all | flags::CWR);
            assert_eq!(seen[1].flags, all);
            assert_eq!(seen[2].flags, all);
            assert_eq!(seen[3].flags, all | flags::PSH | flags::FIN);
        }
    }

    #[test]
    fn single_segment_keeps_all_flags() {
        let mut spec = FrameSpec::v4();
        spec.flags = flags::ACK | flags::PSH | flags::FIN | flags::CWR;
        let (s, seen) = run_tcp(&spec, 100, 1448, 1500);
        assert_eq!(s.count, 1);
        assert_eq!(s.stride, 8 + 14 + 20 + 20 + 100);
        assert_eq!(seen[0].flags, spec.flags);
    }

    #[test]
    fn gso_size_larger_than_path_is_cut_smaller() {
        // gso_size 8948 (jumbo MSS) over a 1450-byte overlay path: 1450 − 20 − 32 = 1398.
        let spec = FrameSpec::v4().with_timestamps();
        let (s, seen) = run_tcp(&spec, 20_000, 8948, 1450);
        assert_eq!(s.stride, 8 + 14 + 1450);
        assert_eq!(s.count, 20_000usize.div_ceil(1398));
        assert!(seen.iter().all(|s| s.payload.len() <= 1398));
        let (s, _) = run_tcp(&FrameSpec::v6(), 20_000, 8948, 1280);
        assert_eq!(s.stride, 8 + 14 + 1280);
    }

    #[test]
    fn vlan_tagged_super_frame() {
        let mut spec = FrameSpec::v4();
        spec.vlan = Some(100);
        let (vnet, frame) = tso_frame(&spec, &pattern(3000), 1448);
        let mut out = Vec::new();
        let s = segment(&vnet, &frame, 1500, &[], &mut out).unwrap();
        assert_eq!(s.count, 3);
        assert_eq!(s.stride, 18 + 20 + 20 + 1448);
        let first = &out[..s.stride];
        let p = SlicedPacket::from_ethernet(first).unwrap();
        assert!(p.vlan().is_some());
        assert!(matches!(p.transport, Some(TransportSlice::Tcp(_))));
    }

    #[test]
    fn maximal_super_frame() {
        // The largest IPv4 super-frame: total length 65535.
        let spec = FrameSpec::v4().with_timestamps();
        let (s, seen) = run_tcp(&spec, 65535 - 20 - 32, 1448, 1500);
        assert_eq!(s.count, 46);
        assert_eq!(seen.len(), 46);
    }

    #[test]
    fn output_buffer_is_reused() {
        let spec = FrameSpec::v4();
        let (vnet, frame) = tso_frame(&spec, &pattern(60_000), 1448);
        let mut out = Vec::new();
        segment(&vnet, &frame, 1500, &PREFIX, &mut out).unwrap();
        let cap = out.capacity();
        for _ in 0..3 {
            segment(&vnet, &frame, 1500, &PREFIX, &mut out).unwrap();
        }
        assert_eq!(out.capacity(), cap);
    }

    #[test]
    fn non_gso_frame_gets_checksum_completed() {
        let spec = FrameSpec::v4();
        let (mut vnet, frame) = tso_frame(&spec, &pattern(333), 1448);
        vnet.gso_type = GSO_NONE;
        vnet.gso_size = 0;
        let mut out = Vec::new();
        let s = segment(&vnet, &frame, 1500, &PREFIX, &mut out).unwrap();
        assert_eq!(
            s,
            Segmented {
                stride: 8 + frame.len(),
                count: 1
            }
        );
        // Identical to the frame built with a complete checksum.
        assert_eq!(&out[8..], &tcp_frame(&spec, &pattern(333))[..]);
        // A complete frame without NEEDS_CSUM is copied untouched.
        let done = tcp_frame(&spec, &pattern(10));
        segment(&VnetHdr::NONE, &done, 1500, &PREFIX, &mut out).unwrap();
        assert_eq!(&out[8..], &done[..]);
    }

    #[test]
    fn uso_segments_into_datagrams() {
        for v6 in [false, true] {
            let spec = if v6 { FrameSpec::v6() } else { FrameSpec::v4() };
            let payload = pattern(4000);
            let (vnet, frame) = uso_frame(&spec, &payload, 1200);
            let mut out = Vec::new();
            let s = segment(&vnet, &frame, 1500, &[], &mut out).unwrap();
            assert_eq!(s.count, 4);
            let l4 = spec.l4();
            assert_eq!(s.stride, l4 + 8 + 1200);
            let mut joined = Vec::new();
            for (i, dgram) in out.chunks(s.stride).enumerate() {
                let mut one = spec.clone();
                one.ident = spec.ident.wrapping_add(i as u16);
                let chunk = &payload[i * 1200..((i + 1) * 1200).min(4000)];
                // Byte-identical to a UDP datagram built directly (lengths, checksum, ident).
                assert_eq!(dgram, &udp_frame(&one, chunk)[..], "datagram {i}");
                joined.extend_from_slice(chunk);
            }
            assert_eq!(joined, payload);
        }
    }

    #[test]
    fn uso_refuses_datagrams_beyond_the_path() {
        let (vnet, frame) = uso_frame(&FrameSpec::v4(), &pattern(4000), 1473);
        let mut out = Vec::new();
        assert_eq!(
            segment(&vnet, &frame, 1500, &[], &mut out),
            Err(SegmentError::DatagramExceedsMtu)
        );
        assert!(out.is_empty());
        // 1472 + 8 + 20 = 1500 fits exactly.
        let (vnet, frame) = uso_frame(&FrameSpec::v4(), &pattern(4000), 1472);
        assert!(segment(&vnet, &frame, 1500, &[], &mut out).is_ok());
    }

    #[test]
    fn malformed_super_frames_are_named_drops() {
        let spec = FrameSpec::v4();
        let (good, frame) = tso_frame(&spec, &pattern(3000), 1448);
        let mut out = Vec::new();
        let mut run = |vnet: VnetHdr, frame: &[u8]| segment(&vnet, frame, 1500, &PREFIX, &mut out);

        assert_eq!(
            run(
                VnetHdr {
                    gso_size: 0,
                    ..good
                },
                &frame
            ),
            Err(SegmentError::GsoSizeZero)
        );
        assert_eq!(
            run(
                VnetHdr {
                    gso_type: GSO_UDP,
                    ..good
                },
                &frame
            ),
            Err(SegmentError::UnsupportedGsoType(GSO_UDP))
        );
        assert_eq!(
            run(
                VnetHdr {
                    gso_type: 0x42,
                    ..good
                },
                &frame
            ),
            Err(SegmentError::UnsupportedGsoType(0x42))
        );
        assert_eq!(
            run(
                VnetHdr {
                    gso_type: GSO_TCPV6,
                    ..good
                },
                &frame
            ),
            Err(SegmentError::FamilyMismatch)
        );
        assert_eq!(
            run(
                VnetHdr {
                    csum_start: 60_000,
                    ..good
                },
                &frame
            ),
            Err(SegmentError::ChecksumOutOfRange)
        );
        assert_eq!(
            run(
                VnetHdr {
                    csum_start: 30,
                    ..good
                },
                &frame
            ),
            Err(SegmentError::HeadersInconsistent)
        );
        assert_eq!(
            run(
                VnetHdr {
                    csum_offset: 6,
                    ..good
                },
                &frame
            ),
            Err(SegmentError::HeadersInconsistent)
        );
        // Not TCP under a TCP gso_type.
        let (_, udp) = uso_frame(&spec, &pattern(3000), 1000);
        assert_eq!(
            run(VnetHdr { flags: 0, ..good }, &udp),
            Err(SegmentError::ProtocolMismatch)
        );
        // Not IP at all.
        let mut arp = frame.clone();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(run(good, &arp), Err(SegmentError::FamilyMismatch));
        // A fragment.
        let mut frag = frame.clone();
        frag[14 + 6] |= 0x20;
        assert_eq!(run(good, &frag), Err(SegmentError::Fragment));
        // IP total length beyond the bytes present.
        assert_eq!(
            run(good, &frame[..frame.len() - 1]),
            Err(SegmentError::MalformedHeaders(WireError::Truncated))
        );
        // TCP data offset past the end of the packet.
        let short = tso_frame(&spec, &[], 1448).1;
        let mut short_doff = short.clone();
        short_doff[14 + 20 + 12] = 0xf0;
        assert_eq!(
            run(good, &short_doff),
            Err(SegmentError::MalformedHeaders(WireError::Truncated))
        );
        let mut tiny_doff = frame.clone();
        tiny_doff[14 + 20 + 12] = 0x40;
        assert_eq!(
            run(good, &tiny_doff),
            Err(SegmentError::MalformedHeaders(WireError::Malformed))
        );
        // Headers alone larger than the path.
        assert_eq!(
            segment(&good, &frame, 40, &PREFIX, &mut out),
            Err(SegmentError::HeadersExceedMtu)
        );
        assert!(out.is_empty());
        // Checksum-offload frame with offsets outside the frame.
        let bad = VnetHdr {
            flags: F_NEEDS_CSUM,
            csum_start: 100,
            csum_offset: 16,
            ..VnetHdr::NONE
        };
        assert_eq!(
            segment(&bad, &frame[..80], 1500, &PREFIX, &mut out),
            Err(SegmentError::ChecksumOutOfRange)
        );
    }

    #[test]
    fn ecn_bit_and_missing_needs_csum_are_accepted() {
        let spec = FrameSpec::v4();
        let (vnet, frame) = tso_frame(&spec, &pattern(3000), 1448);
        let mut out = Vec::new();
        let ecn = VnetHdr {
            gso_type: GSO_TCPV4 | GSO_ECN,
            ..vnet
        };
        let s = segment(&ecn, &frame, 1500, &PREFIX, &mut out).unwrap();
        check_datagrams(&out, s, 1500);
        // Without NEEDS_CSUM the transport header is found from the IP header.
        let plain = VnetHdr {
            flags: 0,
            csum_start: 0,
            csum_offset: 0,
            ..vnet
        };
        let s = segment(&plain, &frame, 1500, &PREFIX, &mut out).unwrap();
        assert_eq!(s.count, 3);
        check_datagrams(&out, s, 1500);
    }

    #[test]
    fn error_names_are_distinct() {
        let all = [
            SegmentError::GsoSizeZero,
            SegmentError::UnsupportedGsoType(3),
            SegmentError::ChecksumOutOfRange,
            SegmentError::FamilyMismatch,
            SegmentError::ProtocolMismatch,
            SegmentError::MalformedHeaders(WireError::Truncated),
            SegmentError::HeadersInconsistent,
            SegmentError::Fragment,
            SegmentError::HeadersExceedMtu,
            SegmentError::DatagramExceedsMtu,
        ];
        let mut names: Vec<_> = all.iter().map(SegmentError::name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all.len());
    }
}
