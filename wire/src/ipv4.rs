//! IPv4 headers (RFC 791).

use std::net::Ipv4Addr;

use crate::checksum::{self, Checksum};
use crate::{WireError, array, be16, put16};

/// Length of an IPv4 header without options.
pub const MIN_HEADER_LEN: usize = 20;

/// IP protocol numbers weft looks at.
pub mod protocol {
    /// ICMP.
    pub const ICMP: u8 = 1;
    /// IGMP.
    pub const IGMP: u8 = 2;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// ICMPv6 (as an IPv6 next header).
    pub const ICMPV6: u8 = 58;
}

/// A checked view of an IPv4 packet: the header length and total length are consistent
/// with the bytes present (trailing Ethernet padding beyond the total length is ignored).
#[derive(Debug, Clone, Copy)]
pub struct Ipv4Packet<'a> {
    buf: &'a [u8],
}

impl<'a> Ipv4Packet<'a> {
    /// Checks version, header length and total length.
    #[inline]
    pub fn new(buf: &'a [u8]) -> Result<Self, WireError> {
        if buf.len() < MIN_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if buf[0] >> 4 != 4 {
            return Err(WireError::Malformed);
        }
        let ihl = usize::from(buf[0] & 0x0f) * 4;
        let total = usize::from(be16(buf, 2));
        if ihl < MIN_HEADER_LEN || total < ihl {
            return Err(WireError::Malformed);
        }
        if buf.len() < total {
            return Err(WireError::Truncated);
        }
        Ok(Self { buf: &buf[..total] })
    }

    /// Header length in bytes (20..=60).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buf[0] & 0x0f) * 4
    }

    /// The DSCP/ECN byte.
    #[inline]
    pub fn tos(&self) -> u8 {
        self.buf[1]
    }

    /// Total length from the header (the view is cut to it).
    #[inline]
    pub fn total_len(&self) -> usize {
        self.buf.len()
    }

    /// Identification.
    #[inline]
    pub fn ident(&self) -> u16 {
        be16(self.buf, 4)
    }

    /// Don't Fragment: the sender asked routers to refuse rather than fragment (PMTU discovery).
    #[inline]
    pub fn dont_fragment(&self) -> bool {
        self.buf[6] & 0x40 != 0
    }

    /// More Fragments or a non-zero offset: this is a piece, not a whole datagram.
    #[inline]
    pub fn is_fragment(&self) -> bool {
        be16(self.buf, 6) & 0x3fff != 0
    }

    /// Only the first fragment (offset zero) carries the transport header.
    #[inline]
    pub fn is_first_fragment(&self) -> bool {
        be16(self.buf, 6) & 0x1fff == 0
    }

    /// Time to live.
    #[inline]
    pub fn ttl(&self) -> u8 {
        self.buf[8]
    }

    /// Transport protocol number.
    #[inline]
    pub fn protocol(&self) -> u8 {
        self.buf[9]
    }

    /// Source address.
    #[inline]
    pub fn src(&self) -> Ipv4Addr {
        Ipv4Addr::from(array::<4>(self.buf, 12))
    }

    /// Destination address.
    #[inline]
    pub fn dst(&self) -> Ipv4Addr {
        Ipv4Addr::from(array::<4>(self.buf, 16))
    }

    /// Whether the header checksum is right.
    pub fn checksum_ok(&self) -> bool {
        checksum::verifies(self.header())
    }

    /// The header bytes, options included.
    #[inline]
    pub fn header(&self) -> &'a [u8] {
        &self.buf[..self.header_len()]
    }

    /// The transport bytes (up to the total length).
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[self.header_len()..]
    }

    /// The whole packet (header and payload, cut to the total length).
    #[inline]
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }

    /// The pseudo-header sum for this packet's transport checksum over `l4_len` bytes.
    pub fn pseudo_header(&self, l4_len: u16) -> Checksum {
        checksum::pseudo_header_v4(self.src(), self.dst(), self.protocol(), l4_len)
    }
}

/// Fields of an option-less IPv4 header to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Repr {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Transport protocol.
    pub protocol: u8,
    /// Time to live.
    pub ttl: u8,
    /// DSCP/ECN byte.
    pub tos: u8,
    /// Identification.
    pub ident: u16,
    /// Don't Fragment.
    pub dont_fragment: bool,
    /// Bytes that follow the header.
    pub payload_len: usize,
}

impl Ipv4Repr {
    /// Writes a 20-byte header with its checksum; returns 20.
    pub fn write(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        let total =
            u16::try_from(MIN_HEADER_LEN + self.payload_len).map_err(|_| WireError::Malformed)?;
        let h = buf
            .get_mut(..MIN_HEADER_LEN)
            .ok_or(WireError::BufferTooSmall)?;
        h[0] = 0x45;
        h[1] = self.tos;
        h[2..4].copy_from_slice(&total.to_be_bytes());
        h[4..6].copy_from_slice(&self.ident.to_be_bytes());
        h[6..8].copy_from_slice(&(if self.dont_fragment { 0x4000u16 } else { 0 }).to_be_bytes());
        h[8] = self.ttl;
        h[9] = self.protocol;
        h[10..12].copy_from_slice(&[0, 0]);
        h[12..16].copy_from_slice(&self.src.octets());
        h[16..20].copy_from_slice(&self.dst.octets());
        let c = checksum::checksum(h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        Ok(MIN_HEADER_LEN)
    }
}

/// Rewrites total length and identification of the header at the start of `header`
/// and recomputes its checksum; used when cutting a super-frame into segments.
pub fn rewrite_len_ident(header: &mut [u8], total_len: u16, ident: u16) -> Result<(), WireError> {
    if header.len() < MIN_HEADER_LEN {
        return Err(WireError::Truncated);
    }
    let ihl = usize::from(header[0] & 0x0f) * 4;
    let h = header.get_mut(..ihl).ok_or(WireError::Truncated)?;
    put16(h, 2, total_len);
    put16(h, 4, ident);
    put16(h, 10, 0);
    let c = checksum::checksum(h);
    put16(h, 10, c);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_parse_and_oracle() {
        let repr = Ipv4Repr {
            src: Ipv4Addr::new(10, 1, 0, 1),
            dst: Ipv4Addr::new(10, 1, 0, 2),
            protocol: protocol::UDP,
            ttl: 64,
            tos: 0,
            ident: 0x1234,
            dont_fragment: true,
            payload_len: 8,
        };
        let mut buf = [0u8; 40];
        repr.write(&mut buf).unwrap();
        let p = Ipv4Packet::new(&buf).unwrap();
        assert_eq!(p.total_len(), 28);
        assert!(p.dont_fragment() && !p.is_fragment());
        assert!(p.checksum_ok());
        assert_eq!(p.src(), repr.src);
        let (h, _) = etherparse::Ipv4Header::from_slice(&buf).unwrap();
        assert_eq!(h.header_checksum, h.calc_header_checksum());
        assert_eq!(h.identification, 0x1234);

        rewrite_len_ident(&mut buf, 30, 7).unwrap();
        let p = Ipv4Packet::new(&buf).unwrap();
        assert_eq!((p.total_len(), p.ident()), (30, 7));
        assert!(p.checksum_ok());
    }

    #[test]
    fn rejects_inconsistent_lengths() {
        let mut buf = [0u8; 20];
        assert_eq!(Ipv4Packet::new(&buf).unwrap_err(), WireError::Malformed);
        buf[0] = 0x45;
        buf[3] = 19;
        assert_eq!(Ipv4Packet::new(&buf).unwrap_err(), WireError::Malformed);
        buf[3] = 21;
        assert_eq!(Ipv4Packet::new(&buf).unwrap_err(), WireError::Truncated);
        buf[0] = 0x44;
        buf[3] = 20;
        assert_eq!(Ipv4Packet::new(&buf).unwrap_err(), WireError::Malformed);
    }
}
