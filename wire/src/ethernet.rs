//! Ethernet II frames, with at most one 802.1Q tag.

use crate::{Mac, WireError, array, be16};

/// Length of an untagged Ethernet header.
pub const HEADER_LEN: usize = 14;
/// Length of one 802.1Q tag.
pub const VLAN_TAG_LEN: usize = 4;

/// The EtherTypes weft looks at. A plain `u16` newtype so unknown values pass through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EtherType(pub u16);

impl EtherType {
    /// IPv4.
    pub const IPV4: Self = Self(0x0800);
    /// ARP.
    pub const ARP: Self = Self(0x0806);
    /// IPv6.
    pub const IPV6: Self = Self(0x86dd);
    /// 802.1Q VLAN tag.
    pub const VLAN: Self = Self(0x8100);
    /// 802.1ad service tag.
    pub const QINQ: Self = Self(0x88a8);
    /// IEEE local experimental EtherType 1, used for weft's data-path heartbeats.
    pub const LOCAL_EXPERIMENTAL: Self = Self(0x88b5);
}

/// A checked view of an Ethernet frame.
#[derive(Debug, Clone, Copy)]
pub struct EthernetFrame<'a> {
    buf: &'a [u8],
    /// Offset of the network-layer header (14, or 18 behind one VLAN tag).
    l3: usize,
    ethertype: EtherType,
}

impl<'a> EthernetFrame<'a> {
    /// Checks that the header (and a VLAN tag, if the frame has one) is present.
    #[inline]
    pub fn new(buf: &'a [u8]) -> Result<Self, WireError> {
        if buf.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let outer = EtherType(be16(buf, 12));
        if outer == EtherType::VLAN || outer == EtherType::QINQ {
            if buf.len() < HEADER_LEN + VLAN_TAG_LEN {
                return Err(WireError::Truncated);
            }
            let inner = EtherType(be16(buf, 16));
            return Ok(Self {
                buf,
                l3: HEADER_LEN + VLAN_TAG_LEN,
                ethertype: inner,
            });
        }
        Ok(Self {
            buf,
            l3: HEADER_LEN,
            ethertype: outer,
        })
    }

    /// Destination address.
    #[inline]
    pub fn dst(&self) -> Mac {
        Mac(array(self.buf, 0))
    }

    /// Source address.
    #[inline]
    pub fn src(&self) -> Mac {
        Mac(array(self.buf, 6))
    }

    /// The EtherType of the payload (behind the VLAN tag, if any).
    #[inline]
    pub fn ethertype(&self) -> EtherType {
        self.ethertype
    }

    /// Whether the frame carries an 802.1Q/802.1ad tag.
    #[inline]
    pub fn is_vlan_tagged(&self) -> bool {
        self.l3 != HEADER_LEN
    }

    /// Offset of the network-layer header within the frame.
    #[inline]
    pub fn payload_offset(&self) -> usize {
        self.l3
    }

    /// The network-layer bytes.
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        self.buf.get(self.l3..).unwrap_or_default()
    }

    /// The whole frame.
    #[inline]
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }
}

/// Writes an untagged Ethernet header at the start of `buf`.
pub fn write_header(
    buf: &mut [u8],
    dst: Mac,
    src: Mac,
    ethertype: EtherType,
) -> Result<usize, WireError> {
    let hdr = buf.get_mut(..HEADER_LEN).ok_or(WireError::BufferTooSmall)?;
    hdr[0..6].copy_from_slice(&dst.0);
    hdr[6..12].copy_from_slice(&src.0);
    hdr[12..14].copy_from_slice(&ethertype.0.to_be_bytes());
    Ok(HEADER_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_untagged_and_tagged() {
        let mut f = [0u8; 60];
        write_header(
            &mut f,
            Mac::BROADCAST,
            Mac([2, 0, 0, 0, 0, 1]),
            EtherType::ARP,
        )
        .unwrap();
        let e = EthernetFrame::new(&f).unwrap();
        assert_eq!(e.dst(), Mac::BROADCAST);
        assert_eq!(e.src(), Mac([2, 0, 0, 0, 0, 1]));
        assert_eq!(e.ethertype(), EtherType::ARP);
        assert_eq!(e.payload().len(), 46);

        f[12..14].copy_from_slice(&0x8100u16.to_be_bytes());
        f[16..18].copy_from_slice(&0x0800u16.to_be_bytes());
        let e = EthernetFrame::new(&f).unwrap();
        assert!(e.is_vlan_tagged());
        assert_eq!(e.ethertype(), EtherType::IPV4);
        assert_eq!(e.payload_offset(), 18);
    }

    #[test]
    fn rejects_short() {
        assert_eq!(
            EthernetFrame::new(&[0u8; 13]).unwrap_err(),
            WireError::Truncated
        );
        let mut f = [0u8; 16];
        f[12] = 0x81;
        assert_eq!(EthernetFrame::new(&f).unwrap_err(), WireError::Truncated);
        assert!(write_header(&mut [0u8; 10], Mac::ZERO, Mac::ZERO, EtherType::IPV4).is_err());
    }
}
