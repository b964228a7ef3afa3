//! Frames larger than the overlay path: cut them, send them anyway, or tell the sender.
//!
//! The overlay MTU (underlay MTU − [`crate::vxlan::OVERHEAD_V4`], or `--mtu`) bounds the
//! inner IP packet. For each frame leaving towards a peer, [`PmtuGuard::check`] decides:
//!
//! - it fits: send it;
//! - a TCP super-frame: the segmenter cuts it to the path whatever its `gso_size`;
//! - a USO super-frame whose datagrams fit: the segmenter cuts it;
//! - an IPv4 packet without DF that does not fit: send it whole, the UDP socket lets the
//!   kernel fragment the outer datagram (as a kernel vxlan device over a smaller path would);
//! - an IPv4 packet with DF, or any IPv6 packet, that does not fit: drop it and answer with
//!   ICMP "fragmentation needed" / ICMPv6 "packet too big" advertising the overlay MTU,
//!   written into the caller's buffer to send back out of the ingress port, so the
//!   sender's TCP lowers its MSS (RFC 1191, RFC 8201);
//! - too big and nobody may be told (not IP, an ICMP error, a non-first fragment, a
//!   multicast or unspecified source): a counted drop.
//!
//! The guard only counts; it holds no per-destination state and no clock.

use wire::icmp;
use wire::ipv4::protocol;
use wire::vnet::{GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4};
use wire::{EthernetFrame, VnetHdr, WireError, udp};

use crate::layout::{IpFamily, IpLayout};

/// A reply buffer of this many bytes holds any ICMP error [`PmtuGuard::check`] writes.
pub const REPLY_BUFFER_LEN: usize = if icmp::FRAG_NEEDED_MAX_FRAME > icmp::PACKET_TOO_BIG_MAX_FRAME
{
    icmp::FRAG_NEEDED_MAX_FRAME
} else {
    icmp::PACKET_TOO_BIG_MAX_FRAME
};

/// What to do with a frame headed for a path of a given MTU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PmtuVerdict {
    /// It fits: send it as it is.
    Fits,
    /// A super-frame: hand it to [`crate::offload::segment`], which cuts it to the path.
    Segment,
    /// IPv4 without DF, bigger than the path: send it; the outer datagram gets fragmented.
    SendOversized,
    /// Drop the frame and send the ICMP error now in `reply[..len]` back to its sender.
    Reply {
        /// Length of the Ethernet frame written at the start of the reply buffer.
        len: usize,
    },
    /// Drop the frame without telling anyone.
    Drop(PmtuDrop),
}

/// Why a too-big frame was dropped without an ICMP error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PmtuDrop {
    /// Not IP: no protocol to report the MTU with.
    #[error("non-IP frame larger than the overlay MTU")]
    NotIp,
    /// ICMP rules forbid an error here (it is an ICMP error itself, a non-first fragment,
    /// or its source is multicast, broadcast or unspecified).
    #[error("frame larger than the overlay MTU that may not be answered with ICMP")]
    NoErrorAllowed,
    /// A UDP super-frame (USO) without DF whose datagrams exceed the path: datagrams cannot
    /// be cut, and the kernel refuses GSO segments larger than the path.
    #[error("UDP segments larger than the overlay MTU; lower the sender's UDP_SEGMENT size")]
    OversizedDatagrams,
    /// The frame's headers could not be read.
    #[error("malformed frame headers")]
    Malformed,
    /// The caller's reply buffer is smaller than [`REPLY_BUFFER_LEN`].
    #[error("ICMP reply buffer too small")]
    ReplyBufferTooSmall,
}

crate::counted_reasons!(PmtuDrop {
    NotIp => "pmtu_not_ip",
    NoErrorAllowed => "pmtu_no_error_allowed",
    OversizedDatagrams => "pmtu_oversized_datagrams",
    Malformed => "pmtu_malformed",
    ReplyBufferTooSmall => "pmtu_reply_buffer_too_small",
});

/// How often each verdict was given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PmtuCounters {
    /// Frames that fit.
    pub fits: u64,
    /// Super-frames passed to the segmenter.
    pub segment: u64,
    /// IPv4 non-DF frames sent bigger than the path.
    pub sent_oversized: u64,
    /// ICMPv4 "fragmentation needed" errors written.
    pub frag_needed: u64,
    /// ICMPv6 "packet too big" errors written.
    pub packet_too_big: u64,
    /// Frames dropped without an error.
    pub dropped: u64,
}

/// Applies the overlay MTU to outgoing frames and counts the outcomes (see module docs).
#[derive(Debug, Clone, Default)]
pub struct PmtuGuard {
    counters: PmtuCounters,
}

impl PmtuGuard {
    /// A guard with zeroed counters.
    pub fn new() -> Self {
        Self::default()
    }

    /// The counts so far.
    pub fn counters(&self) -> &PmtuCounters {
        &self.counters
    }

    /// Decides what to do with `frame` (with its virtio header `vnet`) on a path whose
    /// overlay MTU is `mtu` bytes of IP packet; ICMP errors are written into `reply`
    /// (at least [`REPLY_BUFFER_LEN`] bytes).
    pub fn check(
        &mut self,
        vnet: &VnetHdr,
        frame: &[u8],
        mtu: usize,
        reply: &mut [u8],
    ) -> PmtuVerdict {
        let verdict = classify(vnet, frame, mtu, reply);
        let c = &mut self.counters;
        match verdict {
            PmtuVerdict::Fits => c.fits += 1,
            PmtuVerdict::Segment => c.segment += 1,
            PmtuVerdict::SendOversized => c.sent_oversized += 1,
            PmtuVerdict::Reply { .. } => match EthernetFrame::new(frame).map(|e| e.ethertype()) {
                Ok(wire::EtherType::IPV6) => c.packet_too_big += 1,
                _ => c.frag_needed += 1,
            },
            PmtuVerdict::Drop(_) => c.dropped += 1,
        }
        verdict
    }
}

fn classify(vnet: &VnetHdr, frame: &[u8], mtu: usize, reply: &mut [u8]) -> PmtuVerdict {
    let layout = match IpLayout::parse(frame) {
        Ok(Some(layout)) => layout,
        Ok(None) => {
            // Not IP: only its size matters.
            let l3 = EthernetFrame::new(frame).map_or(0, |e| e.payload_offset());
            if !vnet.is_gso() && frame.len().saturating_sub(l3) <= mtu {
                return PmtuVerdict::Fits;
            }
            return PmtuVerdict::Drop(PmtuDrop::NotIp);
        }
        Err(_) => return PmtuVerdict::Drop(PmtuDrop::Malformed),
    };
    if vnet.is_gso() {
        return match vnet.gso_kind() {
            GSO_UDP_L4 if layout.protocol == protocol::UDP => {
                let datagram =
                    (layout.l4 - layout.l3) + udp::HEADER_LEN + usize::from(vnet.gso_size);
                if datagram <= mtu || layout.end - layout.l3 <= mtu {
                    PmtuVerdict::Segment
                } else if layout.family == IpFamily::V4 && !layout.dont_fragment {
                    PmtuVerdict::Drop(PmtuDrop::OversizedDatagrams)
                } else {
                    too_big(&layout, frame, mtu, reply)
                }
            }
            // TCP is cut to the path whatever its gso_size.
            GSO_TCPV4 | GSO_TCPV6 => PmtuVerdict::Segment,
            // Inconsistent super-frames: the segmenter reports them as its own named drop.
            _ => PmtuVerdict::Segment,
        };
    }
    if layout.end - layout.l3 <= mtu {
        return PmtuVerdict::Fits;
    }
    if layout.family == IpFamily::V4 && !layout.dont_fragment {
        return PmtuVerdict::SendOversized;
    }
    too_big(&layout, frame, mtu, reply)
}

/// Writes the ICMP error for a packet that may not be fragmented.
fn too_big(layout: &IpLayout, frame: &[u8], mtu: usize, reply: &mut [u8]) -> PmtuVerdict {
    let written = match layout.family {
        IpFamily::V4 => icmp::frag_needed_v4(frame, u16::try_from(mtu).unwrap_or(u16::MAX), reply),
        IpFamily::V6 => {
            icmp::packet_too_big_v6(frame, u32::try_from(mtu).unwrap_or(u32::MAX), reply)
        }
    };
    match written {
        Ok(len) => PmtuVerdict::Reply { len },
        Err(WireError::BufferTooSmall) => PmtuVerdict::Drop(PmtuDrop::ReplyBufferTooSmall),
        Err(_) => PmtuVerdict::Drop(PmtuDrop::NoErrorAllowed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{FrameSpec, pattern, tcp_frame, tso_frame, udp_frame, uso_frame};
    use etherparse::{Icmpv4Type, Icmpv6Type, SlicedPacket, TransportSlice};

    fn check(vnet: &VnetHdr, frame: &[u8], mtu: usize) -> (PmtuVerdict, Vec<u8>) {
        let mut reply = vec![0u8; REPLY_BUFFER_LEN];
        let v = PmtuGuard::new().check(vnet, frame, mtu, &mut reply);
        (v, reply)
    }

    #[test]
    fn fits_up_to_the_mtu_exactly() {
        // 20 IP + 20 TCP + 1410 = 1450.
        let f = tcp_frame(&FrameSpec::v4(), &pattern(1410));
        assert_eq!(check(&VnetHdr::NONE, &f, 1450).0, PmtuVerdict::Fits);
        let f6 = tcp_frame(&FrameSpec::v6(), &pattern(1390));
        assert_eq!(check(&VnetHdr::NONE, &f6, 1450).0, PmtuVerdict::Fits);
    }

    #[test]
    fn ipv4_df_too_big_gets_frag_needed_with_the_overlay_mtu() {
        let spec = FrameSpec::v4();
        let f = tcp_frame(&spec, &pattern(1411));
        let (v, reply) = check(&VnetHdr::NONE, &f, 1450);
        let PmtuVerdict::Reply { len } = v else {
            panic!("{v:?}")
        };
        let p = SlicedPacket::from_ethernet(&reply[..len]).unwrap();
        let Some(TransportSlice::Icmpv4(icmp)) = &p.transport else {
            panic!("not ICMP")
        };
        assert_eq!(
            icmp.icmp_type(),
            Icmpv4Type::DestinationUnreachable(
                etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded {
                    next_hop_mtu: 1450
                }
            )
        );
        // Addressed back to the sender.
        assert_eq!(&reply[..6], &spec.src_mac);
        let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
            panic!()
        };
        assert_eq!(ip.header().destination_addr(), spec.src_v4());
    }

    #[test]
    fn ipv4_without_df_is_sent_oversized() {
        let mut spec = FrameSpec::v4();
        spec.df = false;
        let f = tcp_frame(&spec, &pattern(3000));
        assert_eq!(
            check(&VnetHdr::NONE, &f, 1450).0,
            PmtuVerdict::SendOversized
        );
    }

    #[test]
    fn ipv6_too_big_gets_packet_too_big() {
        let f = tcp_frame(&FrameSpec::v6(), &pattern(1500));
        let (v, reply) = check(&VnetHdr::NONE, &f, 1430);
        let PmtuVerdict::Reply { len } = v else {
            panic!("{v:?}")
        };
        let p = SlicedPacket::from_ethernet(&reply[..len]).unwrap();
        let Some(TransportSlice::Icmpv6(icmp)) = &p.transport else {
            panic!("not ICMPv6")
        };
        assert_eq!(icmp.icmp_type(), Icmpv6Type::PacketTooBig { mtu: 1430 });
    }

    #[test]
    fn super_frames_are_segmented() {
        let (vnet, f) = tso_frame(&FrameSpec::v4(), &pattern(60_000), 8948);
        assert_eq!(check(&vnet, &f, 1450).0, PmtuVerdict::Segment);
        let (vnet, f) = tso_frame(&FrameSpec::v6(), &pattern(60_000), 1428);
        assert_eq!(check(&vnet, &f, 1450).0, PmtuVerdict::Segment);
        let (vnet, f) = uso_frame(&FrameSpec::v4(), &pattern(10_000), 1400);
        assert_eq!(check(&vnet, &f, 1450).0, PmtuVerdict::Segment);
    }

    #[test]
    fn uso_datagrams_too_big() {
        // DF (Linux sets DF on UDP only with PMTU discovery on; our builder sets it).
        let (vnet, f) = uso_frame(&FrameSpec::v4(), &pattern(10_000), 1423);
        assert!(matches!(
            check(&vnet, &f, 1450).0,
            PmtuVerdict::Reply { .. }
        ));
        let mut spec = FrameSpec::v4();
        spec.df = false;
        let (vnet, f) = uso_frame(&spec, &pattern(10_000), 1423);
        assert_eq!(
            check(&vnet, &f, 1450).0,
            PmtuVerdict::Drop(PmtuDrop::OversizedDatagrams)
        );
        let (vnet, f) = uso_frame(&FrameSpec::v6(), &pattern(10_000), 1423);
        assert!(matches!(
            check(&vnet, &f, 1450).0,
            PmtuVerdict::Reply { .. }
        ));
    }

    #[test]
    fn too_big_without_a_permitted_reply_is_dropped() {
        // Non-IP.
        let mut f = tcp_frame(&FrameSpec::v4(), &pattern(2000));
        f[12..14].copy_from_slice(&[0x88, 0xb5]);
        assert_eq!(
            check(&VnetHdr::NONE, &f, 1450).0,
            PmtuVerdict::Drop(PmtuDrop::NotIp)
        );
        f.truncate(100);
        assert_eq!(check(&VnetHdr::NONE, &f, 1450).0, PmtuVerdict::Fits);
        // An ICMP error (type 3) must not be answered with another.
        let mut icmp = udp_frame(&FrameSpec::v4(), &pattern(2000));
        icmp[14 + 9] = protocol::ICMP;
        icmp[14 + 10..14 + 12].copy_from_slice(&[0, 0]);
        let c = wire::checksum::checksum(&icmp[14..34]);
        icmp[24..26].copy_from_slice(&c.to_be_bytes());
        icmp[34] = 3;
        assert_eq!(
            check(&VnetHdr::NONE, &icmp, 1450).0,
            PmtuVerdict::Drop(PmtuDrop::NoErrorAllowed)
        );
        // Garbage.
        assert_eq!(
            check(&VnetHdr::NONE, &[0x45; 10], 1450).0,
            PmtuVerdict::Drop(PmtuDrop::Malformed)
        );
        let mut bad_ip = tcp_frame(&FrameSpec::v4(), &pattern(10));
        bad_ip[14] = 0x44;
        assert_eq!(
            check(&VnetHdr::NONE, &bad_ip, 1450).0,
            PmtuVerdict::Drop(PmtuDrop::Malformed)
        );
    }

    #[test]
    fn small_reply_buffer_is_a_named_drop() {
        let f = tcp_frame(&FrameSpec::v4(), &pattern(2000));
        let mut g = PmtuGuard::new();
        let v = g.check(&VnetHdr::NONE, &f, 1450, &mut [0u8; 100]);
        assert_eq!(v, PmtuVerdict::Drop(PmtuDrop::ReplyBufferTooSmall));
        assert_eq!(g.counters().dropped, 1);
    }

    #[test]
    fn counters_follow_verdicts() {
        let mut g = PmtuGuard::new();
        let mut reply = vec![0u8; REPLY_BUFFER_LEN];
        let small = tcp_frame(&FrameSpec::v4(), &pattern(10));
        let big4 = tcp_frame(&FrameSpec::v4(), &pattern(2000));
        let big6 = tcp_frame(&FrameSpec::v6(), &pattern(2000));
        let mut nodf = FrameSpec::v4();
        nodf.df = false;
        let big_nodf = tcp_frame(&nodf, &pattern(2000));
        let (tso, super_frame) = tso_frame(&FrameSpec::v4(), &pattern(9000), 1448);
        for (v, f) in [
            (VnetHdr::NONE, &small),
            (VnetHdr::NONE, &small),
            (VnetHdr::NONE, &big4),
            (VnetHdr::NONE, &big6),
            (VnetHdr::NONE, &big_nodf),
            (tso, &super_frame),
        ] {
            g.check(&v, f, 1450, &mut reply);
        }
        assert_eq!(
            *g.counters(),
            PmtuCounters {
                fits: 2,
                segment: 1,
                sent_oversized: 1,
                frag_needed: 1,
                packet_too_big: 1,
                dropped: 0,
            }
        );
    }
}
