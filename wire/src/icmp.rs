//! The ICMP errors weft synthesises for path-MTU discovery: IPv4 "fragmentation needed"
//! (RFC 792/1191) and ICMPv6 "packet too big" (RFC 4443/8201).
//!
//! When a frame with DF set does not fit the overlay path, the sender's TCP must learn
//! the smaller MTU, or its connection stalls. The error is addressed back to the sender
//! as if the destination had sent it (the overlay has no router address of its own);
//! Linux matches such errors to sockets by the quoted header, not by the error's source.

use crate::WireError;
use crate::checksum;
use crate::ethernet::{self, EtherType, EthernetFrame};
use crate::ipv4::{self, Ipv4Packet, Ipv4Repr, protocol};
use crate::ipv6::{self, Ipv6Packet, Ipv6Repr};

/// How much of the offending IPv4 packet an ICMPv4 error quotes (RFC 1812: enough that
/// the whole error stays within 576 bytes).
const V4_QUOTE_MAX: usize = 576 - ipv4::MIN_HEADER_LEN - 8;

/// Largest frame [`frag_needed_v4`] writes.
pub const FRAG_NEEDED_MAX_FRAME: usize = ethernet::HEADER_LEN + 576;
/// Largest frame [`packet_too_big_v6`] writes.
pub const PACKET_TOO_BIG_MAX_FRAME: usize = ethernet::HEADER_LEN + ipv6::MIN_MTU;

/// ICMPv4 types that are errors themselves; RFC 1122 forbids answering them with errors.
fn is_icmpv4_error(t: u8) -> bool {
    matches!(t, 3 | 4 | 5 | 11 | 12)
}

/// Builds an Ethernet frame carrying ICMPv4 type 3 code 4 for `offending` (a whole Ethernet
/// frame with an IPv4 packet), telling its sender that `mtu` is the largest IP packet that fits.
///
/// Returns `Err(Malformed)` for frames that must not get an error: not IPv4, a non-first
/// fragment, an ICMP error, or a sender that is not a unicast address.
pub fn frag_needed_v4(offending: &[u8], mtu: u16, out: &mut [u8]) -> Result<usize, WireError> {
    let eth = EthernetFrame::new(offending)?;
    if eth.ethertype() != EtherType::IPV4 {
        return Err(WireError::Malformed);
    }
    let ip_bytes = eth.payload();
    let ip = Ipv4Packet::new(ip_bytes)?;
    let src = ip.src();
    if src.is_unspecified() || src.is_multicast() || src.is_broadcast() || !ip.is_first_fragment() {
        return Err(WireError::Malformed);
    }
    if ip.protocol() == protocol::ICMP && ip.payload().first().is_some_and(|&t| is_icmpv4_error(t))
    {
        return Err(WireError::Malformed);
    }
    let quote = &ip.as_bytes()[..ip.total_len().min(V4_QUOTE_MAX)];
    let icmp_len = 8 + quote.len();
    let total = ethernet::HEADER_LEN + ipv4::MIN_HEADER_LEN + icmp_len;
    let frame = out.get_mut(..total).ok_or(WireError::BufferTooSmall)?;
    ethernet::write_header(frame, eth.src(), eth.dst(), EtherType::IPV4)?;
    Ipv4Repr {
        src: ip.dst(),
        dst: src,
        protocol: protocol::ICMP,
        ttl: 64,
        tos: 0xc0,
        ident: 0,
        dont_fragment: false,
        payload_len: icmp_len,
    }
    .write(&mut frame[ethernet::HEADER_LEN..])?;
    let icmp = &mut frame[ethernet::HEADER_LEN + ipv4::MIN_HEADER_LEN..];
    icmp[0] = 3;
    icmp[1] = 4;
    icmp[2..6].copy_from_slice(&[0, 0, 0, 0]);
    icmp[6..8].copy_from_slice(&mtu.to_be_bytes());
    icmp[8..].copy_from_slice(quote);
    let c = checksum::checksum(icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    Ok(total)
}

/// Builds an Ethernet frame carrying ICMPv6 "packet too big" for `offending` (a whole
/// Ethernet frame with an IPv6 packet), advertising `mtu`.
///
/// Returns `Err(Malformed)` for frames that must not get an error: not IPv6, an ICMPv6
/// error, or an unspecified/multicast sender.
pub fn packet_too_big_v6(offending: &[u8], mtu: u32, out: &mut [u8]) -> Result<usize, WireError> {
    let eth = EthernetFrame::new(offending)?;
    if eth.ethertype() != EtherType::IPV6 {
        return Err(WireError::Malformed);
    }
    let ip = Ipv6Packet::new(eth.payload())?;
    let src = ip.src();
    if src.is_unspecified() || src.is_multicast() {
        return Err(WireError::Malformed);
    }
    if ip.next_header() == protocol::ICMPV6 && ip.payload().first().is_some_and(|&t| t < 128) {
        return Err(WireError::Malformed);
    }
    let room = ipv6::MIN_MTU - ipv6::HEADER_LEN - 8;
    let quote = &ip.as_bytes()[..ip.as_bytes().len().min(room)];
    let icmp_len = 8 + quote.len();
    let total = ethernet::HEADER_LEN + ipv6::HEADER_LEN + icmp_len;
    let frame = out.get_mut(..total).ok_or(WireError::BufferTooSmall)?;
    ethernet::write_header(frame, eth.src(), eth.dst(), EtherType::IPV6)?;
    let repr = Ipv6Repr {
        src: ip.dst(),
        dst: src,
        next_header: protocol::ICMPV6,
        hop_limit: 64,
        payload_len: icmp_len,
    };
    repr.write(&mut frame[ethernet::HEADER_LEN..])?;
    let icmp = &mut frame[ethernet::HEADER_LEN + ipv6::HEADER_LEN..];
    icmp[0] = 2;
    icmp[1] = 0;
    icmp[2..4].copy_from_slice(&[0, 0]);
    icmp[4..8].copy_from_slice(&mtu.to_be_bytes());
    icmp[8..].copy_from_slice(quote);
    let len32 = u32::try_from(icmp_len).map_err(|_| WireError::Malformed)?;
    let mut c = checksum::pseudo_header_v6(repr.src, repr.dst, protocol::ICMPV6, len32);
    c.add_bytes(icmp);
    let c = c.finish();
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Mac;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn ipv4_frame(len: usize, df: bool, proto: u8) -> Vec<u8> {
        let mut f = vec![0u8; ethernet::HEADER_LEN + len];
        ethernet::write_header(
            &mut f,
            Mac([2, 0, 0, 0, 0, 2]),
            Mac([2, 0, 0, 0, 0, 1]),
            EtherType::IPV4,
        )
        .unwrap();
        Ipv4Repr {
            src: Ipv4Addr::new(10, 0, 0, 1),
            dst: Ipv4Addr::new(10, 0, 0, 2),
            protocol: proto,
            ttl: 64,
            tos: 0,
            ident: 9,
            dont_fragment: df,
            payload_len: len - 20,
        }
        .write(&mut f[14..])
        .unwrap();
        f
    }

    #[test]
    fn frag_needed_quotes_and_checksums() {
        let f = ipv4_frame(1500, true, protocol::TCP);
        let mut out = [0u8; FRAG_NEEDED_MAX_FRAME];
        let n = frag_needed_v4(&f, 1400, &mut out).unwrap();
        assert_eq!(n, FRAG_NEEDED_MAX_FRAME);
        let p = etherparse::SlicedPacket::from_ethernet(&out[..n]).unwrap();
        let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
            panic!()
        };
        assert_eq!(ip.header().destination_addr(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(ip.header().source_addr(), Ipv4Addr::new(10, 0, 0, 2));
        let Some(etherparse::TransportSlice::Icmpv4(icmp)) = &p.transport else {
            panic!()
        };
        assert_eq!(
            icmp.icmp_type(),
            etherparse::Icmpv4Type::DestinationUnreachable(
                etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded {
                    next_hop_mtu: 1400
                }
            )
        );
        assert!(checksum::verifies(&out[34..n]));
        // The eth addresses are swapped: the error goes back to the sender.
        assert_eq!(&out[0..6], &[2, 0, 0, 0, 0, 1]);
    }

    #[test]
    fn never_answers_icmp_errors_or_garbage() {
        let mut f = ipv4_frame(100, true, protocol::ICMP);
        f[34] = 3; // an ICMP error itself
        let mut out = [0u8; FRAG_NEEDED_MAX_FRAME];
        assert_eq!(
            frag_needed_v4(&f, 1400, &mut out),
            Err(WireError::Malformed)
        );
        assert!(frag_needed_v4(&f[..20], 1400, &mut out).is_err());
        let tcp = ipv4_frame(100, true, protocol::TCP);
        assert_eq!(
            frag_needed_v4(&tcp, 1400, &mut [0u8; 40]),
            Err(WireError::BufferTooSmall)
        );
    }

    #[test]
    fn packet_too_big() {
        let mut f = vec![0u8; 14 + 40 + 1400];
        ethernet::write_header(
            &mut f,
            Mac([2, 0, 0, 0, 0, 2]),
            Mac([2, 0, 0, 0, 0, 1]),
            EtherType::IPV6,
        )
        .unwrap();
        let src: Ipv6Addr = "fd00::1".parse().unwrap();
        let dst: Ipv6Addr = "fd00::2".parse().unwrap();
        Ipv6Repr {
            src,
            dst,
            next_header: protocol::TCP,
            hop_limit: 64,
            payload_len: 1400,
        }
        .write(&mut f[14..])
        .unwrap();
        let mut out = [0u8; PACKET_TOO_BIG_MAX_FRAME];
        let n = packet_too_big_v6(&f, 1280, &mut out).unwrap();
        assert_eq!(n, PACKET_TOO_BIG_MAX_FRAME);
        let p = etherparse::SlicedPacket::from_ethernet(&out[..n]).unwrap();
        let Some(etherparse::TransportSlice::Icmpv6(icmp)) = &p.transport else {
            panic!()
        };
        assert_eq!(
            icmp.icmp_type(),
            etherparse::Icmpv6Type::PacketTooBig { mtu: 1280 }
        );
        let ip = Ipv6Packet::new(&out[14..n]).unwrap();
        let mut c = checksum::pseudo_header_v6(ip.src(), ip.dst(), 58, ip.payload_len() as u32);
        c.add_bytes(ip.payload());
        assert_eq!(c.fold(), 0xffff);
    }
}
