//! Where the IP and transport headers of an Ethernet frame sit.
//!
//! One checked parse shared by the segmenter, the coalescer, the PMTU guard and the flow
//! hash, built on `wire`'s views. After [`IpLayout::parse`] succeeds, `l3 <= l4 <= end <=
//! frame.len()` holds and the IP header lies within `l3..l4`, so the helpers below only
//! slice inside those bounds (and still use `get` so a misuse returns empty, not a panic).

use wire::checksum::Checksum;
use wire::ethernet::{EtherType, EthernetFrame};
use wire::ipv4::Ipv4Packet;
use wire::ipv6::{self, Ipv6Packet};
use wire::{Mac, WireError};

/// IP version of the packet inside a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IpFamily {
    V4,
    V6,
}

/// Offsets of an IP packet inside an Ethernet frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IpLayout {
    pub(crate) family: IpFamily,
    /// Offset of the IP header (14, or 18 behind a VLAN tag).
    pub(crate) l3: usize,
    /// Offset of the transport header: after the IPv4 header with options, or after the
    /// fixed IPv6 header (extension headers are not walked; see `protocol`).
    pub(crate) l4: usize,
    /// End of the IP packet per its length field; Ethernet padding lies beyond.
    pub(crate) end: usize,
    /// IPv4 protocol, or the IPv6 fixed header's next header (an extension header number
    /// when there are extension headers, so never mistaken for TCP/UDP).
    pub(crate) protocol: u8,
    /// IPv4 More-Fragments or offset set, or an IPv6 Fragment header follows.
    pub(crate) fragment: bool,
    /// IPv4 fragment offset zero (always true for IPv6 here).
    pub(crate) first_fragment: bool,
    /// IPv4 Don't Fragment (IPv6 never fragments in flight: always true).
    pub(crate) dont_fragment: bool,
}

/// IPv6 next-header value of the Fragment extension header.
const IPV6_FRAGMENT: u8 = 44;

impl IpLayout {
    /// Locates the IP packet in `frame`: `Ok(None)` for frames that carry no IP.
    pub(crate) fn parse(frame: &[u8]) -> Result<Option<Self>, WireError> {
        let eth = EthernetFrame::new(frame)?;
        let l3 = eth.payload_offset();
        let ip = eth.payload();
        match eth.ethertype() {
            EtherType::IPV4 => {
                let p = Ipv4Packet::new(ip)?;
                Ok(Some(Self {
                    family: IpFamily::V4,
                    l3,
                    l4: l3 + p.header_len(),
                    end: l3 + p.total_len(),
                    protocol: p.protocol(),
                    fragment: p.is_fragment(),
                    first_fragment: p.is_first_fragment(),
                    dont_fragment: p.dont_fragment(),
                }))
            }
            EtherType::IPV6 => {
                let p = Ipv6Packet::new(ip)?;
                Ok(Some(Self {
                    family: IpFamily::V6,
                    l3,
                    l4: l3 + ipv6::HEADER_LEN,
                    end: l3 + p.as_bytes().len(),
                    protocol: p.next_header(),
                    fragment: p.next_header() == IPV6_FRAGMENT,
                    first_fragment: true,
                    dont_fragment: true,
                }))
            }
            _ => Ok(None),
        }
    }

    /// The source and destination address bytes, back to back (8 or 32 bytes); both the
    /// IPv4 and IPv6 headers store them contiguously.
    pub(crate) fn addresses<'a>(&self, frame: &'a [u8]) -> &'a [u8] {
        let range = match self.family {
            IpFamily::V4 => self.l3 + 12..self.l3 + 20,
            IpFamily::V6 => self.l3 + 8..self.l3 + 40,
        };
        frame.get(range).unwrap_or_default()
    }

    /// The transport pseudo-header sum without its length field: add the transport
    /// length (`add_u32`) per segment to finish it. Summing the address bytes directly is
    /// the same ones'-complement sum as `pseudo_header_v4/v6` (2^16 ≡ 1 mod 2^16 − 1).
    pub(crate) fn pseudo_header_base(&self, frame: &[u8], protocol: u8) -> Checksum {
        let mut c = Checksum::new();
        c.add_bytes(self.addresses(frame));
        c.add_u16(u16::from(protocol));
        c
    }

    /// The transport bytes up to the end of the IP packet.
    pub(crate) fn transport<'a>(&self, frame: &'a [u8]) -> &'a [u8] {
        frame.get(self.l4..self.end).unwrap_or_default()
    }
}

/// Destination and source MAC of a frame already known to hold an Ethernet header.
pub(crate) fn macs(frame: &[u8]) -> (Mac, Mac) {
    match EthernetFrame::new(frame) {
        Ok(e) => (e.dst(), e.src()),
        Err(_) => (Mac::ZERO, Mac::ZERO),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{FrameSpec, tcp_frame};
    use wire::checksum;

    #[test]
    fn locates_v4_and_v6_headers() {
        let f = tcp_frame(&FrameSpec::v4(), &[1, 2, 3]);
        let l = IpLayout::parse(&f).unwrap().unwrap();
        assert_eq!(
            (l.family, l.l3, l.l4, l.end),
            (IpFamily::V4, 14, 34, f.len())
        );
        assert_eq!(l.protocol, 6);
        assert!(!l.fragment && l.dont_fragment);

        let f = tcp_frame(&FrameSpec::v6(), &[1, 2, 3]);
        let l = IpLayout::parse(&f).unwrap().unwrap();
        assert_eq!(
            (l.family, l.l3, l.l4, l.end),
            (IpFamily::V6, 14, 54, f.len())
        );

        let mut arp = f.clone();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(IpLayout::parse(&arp), Ok(None));
        assert!(IpLayout::parse(&f[..20]).is_err());
    }

    #[test]
    fn pseudo_header_base_matches_wire() {
        let f = tcp_frame(&FrameSpec::v4(), &[9; 10]);
        let l = IpLayout::parse(&f).unwrap().unwrap();
        let mut ours = l.pseudo_header_base(&f, 6);
        ours.add_u32(30);
        let spec = FrameSpec::v4();
        let theirs = checksum::pseudo_header_v4(spec.src_v4(), spec.dst_v4(), 6, 30);
        assert_eq!(ours.fold(), theirs.fold());

        let f = tcp_frame(&FrameSpec::v6(), &[9; 10]);
        let l = IpLayout::parse(&f).unwrap().unwrap();
        let mut ours = l.pseudo_header_base(&f, 6);
        ours.add_u32(70_000);
        let spec = FrameSpec::v6();
        let theirs = checksum::pseudo_header_v6(spec.src_v6(), spec.dst_v6(), 6, 70_000);
        assert_eq!(ours.fold(), theirs.fold());
    }
}
