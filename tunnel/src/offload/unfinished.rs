//! Recognising work a sender left to offload in frames received from a peer.
//!
//! A Linux VXLAN endpoint leaves two things to the NIC: the inner TCP/UDP checksum (the
//! field holds only the folded pseudo-header sum, `CHECKSUM_PARTIAL`) and, with UDP tunnel
//! segmentation offload, the cutting of inner TCP super-frames into MTU-sized segments. On
//! a software underlay (a veth between namespaces, as in labs and CI) no NIC ever does
//! either, so such a peer's datagrams reach weft's UDP socket with partial checksums and
//! with inner packets larger than the MTU, and the socket cannot say so. Handed on as they
//! are, the receiving container would drop the first as corrupt and its veth would refuse
//! the second. A checksum field holding exactly the pseudo-header sum is that state, not
//! corruption (random damage lands on that one value with the odds of a checksum
//! collision), and an inner TCP packet bigger than the MTU is a super-frame: both go on
//! with the virtio header that says so, as the kernel's own VXLAN receive path keeps them.

use wire::ipv4::protocol;
use wire::tcp::TcpSegment;
use wire::vnet::{F_NEEDS_CSUM, GSO_TCPV4, GSO_TCPV6, VnetHdr};

use crate::layout::{IpFamily, IpLayout};

/// Offset of the checksum field in a TCP header.
const TCP_CSUM: usize = 16;
/// Offset of the checksum field in a UDP header.
const UDP_CSUM: usize = 6;

/// The virtio header a received frame needs before it goes to a local port whose IP MTU is
/// `mtu`: `NEEDS_CSUM` for a checksum left to offload, a TCP GSO type for a super-frame
/// larger than `mtu`, `NONE` for a finished, wire-sized frame.
pub(crate) fn unfinished(frame: &[u8], mtu: usize) -> VnetHdr {
    let Ok(Some(layout)) = IpLayout::parse(frame) else {
        return VnetHdr::NONE;
    };
    let mut vnet = partial_checksum(frame, &layout).unwrap_or(VnetHdr::NONE);
    if let Some(gso) = oversized_tcp(frame, &layout, mtu) {
        vnet.gso_type = gso.gso_type;
        vnet.gso_size = gso.gso_size;
        vnet.hdr_len = gso.hdr_len;
    }
    vnet
}

/// For a TCP packet larger than `mtu`: its GSO type, the segment size that fits `mtu`, and
/// the header length; `None` for anything else.
pub(crate) fn oversized_tcp(frame: &[u8], layout: &IpLayout, mtu: usize) -> Option<VnetHdr> {
    if layout.protocol != protocol::TCP || layout.fragment || layout.end - layout.l3 <= mtu {
        return None;
    }
    let tcp = TcpSegment::new(layout.transport(frame)).ok()?;
    let headers = layout.l4 - layout.l3 + tcp.header_len();
    let gso_size = u16::try_from(mtu.checked_sub(headers)?)
        .ok()
        .filter(|&s| s > 0)?;
    Some(VnetHdr {
        gso_type: match layout.family {
            IpFamily::V4 => GSO_TCPV4,
            IpFamily::V6 => GSO_TCPV6,
        },
        gso_size,
        hdr_len: u16::try_from(layout.l4 + tcp.header_len()).ok()?,
        ..VnetHdr::NONE
    })
}

/// The virtio header that marks `frame`'s transport checksum as left to offload, when its
/// checksum field holds exactly the pseudo-header sum; `None` otherwise.
pub(crate) fn partial_checksum(frame: &[u8], layout: &IpLayout) -> Option<VnetHdr> {
    if layout.fragment {
        return None;
    }
    let offset = match layout.protocol {
        protocol::TCP => TCP_CSUM,
        protocol::UDP => UDP_CSUM,
        _ => return None,
    };
    let transport = layout.transport(frame);
    let field = transport
        .get(offset..offset + 2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))?;
    let len = u32::try_from(transport.len()).ok()?;
    let mut pseudo = layout.pseudo_header_base(frame, layout.protocol);
    pseudo.add_u32(len);
    if field != pseudo.fold() {
        return None;
    }
    Some(VnetHdr {
        flags: F_NEEDS_CSUM,
        csum_start: u16::try_from(layout.l4).ok()?,
        csum_offset: offset as u16,
        ..VnetHdr::NONE
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offload::Coalescer;
    use crate::testutil::{FrameSpec, tcp_frame};

    /// Replaces a finished TCP checksum with the pseudo-header sum, as a sender that
    /// offloads its checksum leaves it.
    fn make_partial(frame: &mut [u8]) -> IpLayout {
        let layout = IpLayout::parse(frame).unwrap().unwrap();
        let mut pseudo = layout.pseudo_header_base(frame, protocol::TCP);
        pseudo.add_u32(layout.transport(frame).len() as u32);
        let at = layout.l4 + TCP_CSUM;
        frame[at..at + 2].copy_from_slice(&pseudo.fold().to_be_bytes());
        layout
    }

    #[test]
    fn recognises_partial_and_leaves_finished_alone() {
        for spec in [FrameSpec::v4(), FrameSpec::v6()] {
            let finished = tcp_frame(&spec, b"some payload bytes");
            let layout = IpLayout::parse(&finished).unwrap().unwrap();
            assert_eq!(partial_checksum(&finished, &layout), None);
            let mut partial = finished.clone();
            let layout = make_partial(&mut partial);
            let vnet = partial_checksum(&partial, &layout).expect("partial");
            assert_eq!(
                (usize::from(vnet.csum_start), vnet.csum_offset),
                (layout.l4, 16)
            );
            // Finishing it as a NIC would gives back the sender's bytes exactly.
            vnet.complete_checksum(&mut partial).unwrap();
            assert_eq!(partial, finished);
        }
    }

    #[test]
    fn an_oversized_tcp_packet_becomes_a_super_frame() {
        let spec = FrameSpec::v4();
        let mut frame = tcp_frame(&spec, &[7u8; 4000]);
        let layout = make_partial(&mut frame);
        let vnet = unfinished(&frame, 1450);
        assert!(vnet.needs_csum() && vnet.is_gso(), "{vnet:?}");
        assert_eq!(vnet.gso_kind(), GSO_TCPV4);
        let headers = layout.l4 - layout.l3
            + TcpSegment::new(layout.transport(&frame))
                .unwrap()
                .header_len();
        assert_eq!(usize::from(vnet.gso_size), 1450 - headers);
        // Cutting it as a NIC would yields wire-sized segments that verify.
        let mut out = Vec::new();
        let s = crate::offload::segment(&vnet, &frame, 1450, &[], &mut out).unwrap();
        assert!(s.count >= 3);
        // A packet that fits stays as it is; a finished one gets no NEEDS_CSUM.
        let small = tcp_frame(&spec, &[1u8; 100]);
        assert_eq!(unfinished(&small, 1450), VnetHdr::NONE);
        let big_finished = tcp_frame(&spec, &[7u8; 4000]);
        let v = unfinished(&big_finished, 1450);
        assert!(v.is_gso() && !v.needs_csum());
    }

    #[test]
    fn coalescer_passes_partial_frames_with_needs_csum() {
        let mut frame = tcp_frame(&FrameSpec::v4(), b"x");
        make_partial(&mut frame);
        let mut c = Coalescer::new();
        let mut out = Vec::new();
        let mut emit = |_: u64, v: &VnetHdr, f: &[u8]| out.push((*v, f.to_vec()));
        c.push(1, &frame, &mut emit);
        c.flush(&mut emit);
        assert_eq!(out.len(), 1);
        assert!(out[0].0.needs_csum(), "{:?}", out[0].0);
        assert_eq!(c.counters().bad_checksum, 0);
    }
}
