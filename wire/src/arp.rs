//! ARP for IPv4 over Ethernet (RFC 826): the only kind a container network carries.

use std::net::Ipv4Addr;

use crate::ethernet::{self, EtherType};
use crate::{Mac, WireError, array, be16};

/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = 28;
/// Length of a whole ARP frame: Ethernet header plus ARP packet (no padding: veths need none).
pub const FRAME_LEN: usize = ethernet::HEADER_LEN + PACKET_LEN;

/// ARP operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArpOp {
    /// Who has `target_ip`?
    Request,
    /// `sender_ip` is at `sender_mac`.
    Reply,
    /// Any other operation code (RARP, InARP, ...): passed on, never answered.
    Other(u16),
}

/// A checked view of an Ethernet/IPv4 ARP packet (the bytes after the Ethernet header).
#[derive(Debug, Clone, Copy)]
pub struct ArpPacket<'a> {
    buf: &'a [u8],
}

impl<'a> ArpPacket<'a> {
    /// Checks the length and that hardware/protocol are Ethernet/IPv4 with 6/4-byte addresses.
    pub fn new(buf: &'a [u8]) -> Result<Self, WireError> {
        if buf.len() < PACKET_LEN {
            return Err(WireError::Truncated);
        }
        if be16(buf, 0) != 1 || be16(buf, 2) != EtherType::IPV4.0 || buf[4] != 6 || buf[5] != 4 {
            return Err(WireError::Malformed);
        }
        Ok(Self { buf })
    }

    /// The operation.
    pub fn op(&self) -> ArpOp {
        match be16(self.buf, 6) {
            1 => ArpOp::Request,
            2 => ArpOp::Reply,
            other => ArpOp::Other(other),
        }
    }

    /// Sender hardware address.
    pub fn sender_mac(&self) -> Mac {
        Mac(array(self.buf, 8))
    }

    /// Sender protocol address.
    pub fn sender_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(array::<4>(self.buf, 14))
    }

    /// Target hardware address.
    pub fn target_mac(&self) -> Mac {
        Mac(array(self.buf, 18))
    }

    /// Target protocol address.
    pub fn target_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(array::<4>(self.buf, 24))
    }

    /// A gratuitous ARP announces the sender's own binding (sender IP == target IP).
    pub fn is_gratuitous(&self) -> bool {
        self.sender_ip() == self.target_ip()
    }

    /// An ARP probe (RFC 5227) has sender IP 0.0.0.0 and carries no binding to learn.
    pub fn is_probe(&self) -> bool {
        self.sender_ip().is_unspecified()
    }
}

/// Fields of an ARP message to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpRepr {
    /// Request or reply.
    pub op: ArpOp,
    /// Sender hardware address (also the Ethernet source).
    pub sender_mac: Mac,
    /// Sender protocol address.
    pub sender_ip: Ipv4Addr,
    /// Target hardware address.
    pub target_mac: Mac,
    /// Target protocol address.
    pub target_ip: Ipv4Addr,
}

impl ArpRepr {
    /// Writes a whole Ethernet frame carrying this ARP message to `eth_dst`; returns its length.
    pub fn write_frame(&self, eth_dst: Mac, buf: &mut [u8]) -> Result<usize, WireError> {
        let frame = buf.get_mut(..FRAME_LEN).ok_or(WireError::BufferTooSmall)?;
        ethernet::write_header(frame, eth_dst, self.sender_mac, EtherType::ARP)?;
        let p = &mut frame[ethernet::HEADER_LEN..];
        p[0..2].copy_from_slice(&1u16.to_be_bytes());
        p[2..4].copy_from_slice(&EtherType::IPV4.0.to_be_bytes());
        p[4] = 6;
        p[5] = 4;
        let op: u16 = match self.op {
            ArpOp::Request => 1,
            ArpOp::Reply => 2,
            ArpOp::Other(v) => v,
        };
        p[6..8].copy_from_slice(&op.to_be_bytes());
        p[8..14].copy_from_slice(&self.sender_mac.0);
        p[14..18].copy_from_slice(&self.sender_ip.octets());
        p[18..24].copy_from_slice(&self.target_mac.0);
        p[24..28].copy_from_slice(&self.target_ip.octets());
        Ok(FRAME_LEN)
    }

    /// The reply a station owning `target_ip` at `owner` would send to `request`.
    pub fn reply_to(request: &ArpPacket<'_>, owner: Mac) -> Self {
        Self {
            op: ArpOp::Reply,
            sender_mac: owner,
            sender_ip: request.target_ip(),
            target_mac: request.sender_mac(),
            target_ip: request.sender_ip(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EthernetFrame;

    #[test]
    fn build_parse_round_trip_and_oracle() {
        let req = ArpRepr {
            op: ArpOp::Request,
            sender_mac: Mac([2, 0, 0, 0, 0, 1]),
            sender_ip: Ipv4Addr::new(10, 0, 0, 1),
            target_mac: Mac::ZERO,
            target_ip: Ipv4Addr::new(10, 0, 0, 2),
        };
        let mut buf = [0u8; 64];
        let n = req.write_frame(Mac::BROADCAST, &mut buf).unwrap();
        assert_eq!(n, FRAME_LEN);
        let eth = EthernetFrame::new(&buf[..n]).unwrap();
        let arp = ArpPacket::new(eth.payload()).unwrap();
        assert_eq!(arp.op(), ArpOp::Request);
        assert_eq!(arp.target_ip(), Ipv4Addr::new(10, 0, 0, 2));
        assert!(!arp.is_gratuitous());

        // etherparse agrees on every field.
        let sliced = etherparse::SlicedPacket::from_ethernet(&buf[..n]).unwrap();
        let Some(etherparse::NetSlice::Arp(a)) = sliced.net else {
            panic!("not arp")
        };
        assert_eq!(a.sender_hw_addr(), &[2, 0, 0, 0, 0, 1]);
        assert_eq!(a.target_protocol_addr(), &[10, 0, 0, 2]);

        let reply = ArpRepr::reply_to(&arp, Mac([2, 0, 0, 0, 0, 2]));
        let to = arp.sender_mac();
        let mut out = [0u8; 64];
        let n = reply.write_frame(to, &mut out).unwrap();
        let arp = ArpPacket::new(&out[14..n]).unwrap();
        assert_eq!(arp.op(), ArpOp::Reply);
        assert_eq!(arp.sender_ip(), Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(arp.target_mac(), Mac([2, 0, 0, 0, 0, 1]));
    }

    #[test]
    fn rejects_bad() {
        assert_eq!(
            ArpPacket::new(&[0u8; 27]).unwrap_err(),
            WireError::Truncated
        );
        assert_eq!(
            ArpPacket::new(&[0u8; 28]).unwrap_err(),
            WireError::Malformed
        );
        assert!(
            ArpRepr {
                op: ArpOp::Reply,
                sender_mac: Mac::ZERO,
                sender_ip: Ipv4Addr::UNSPECIFIED,
                target_mac: Mac::ZERO,
                target_ip: Ipv4Addr::UNSPECIFIED
            }
            .write_frame(Mac::ZERO, &mut [0u8; 41])
            .is_err()
        );
    }
}
