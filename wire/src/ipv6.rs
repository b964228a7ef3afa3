//! IPv6 fixed headers (RFC 8200). Extension headers are not walked: weft only needs the
//! fixed header to quote packets in ICMPv6 errors and to cut TCP super-frames whose
//! transport header offset the kernel already told us (virtio `csum_start`).

use std::net::Ipv6Addr;

use crate::{WireError, array, be16};

/// Length of the fixed IPv6 header.
pub const HEADER_LEN: usize = 40;
/// The minimum link MTU every IPv6 link must carry; ICMPv6 errors never exceed it.
pub const MIN_MTU: usize = 1280;

/// A checked view of an IPv6 packet, cut to its payload length.
#[derive(Debug, Clone, Copy)]
pub struct Ipv6Packet<'a> {
    buf: &'a [u8],
}

impl<'a> Ipv6Packet<'a> {
    /// Checks version and payload length (jumbograms, payload length 0 with data, are refused).
    pub fn new(buf: &'a [u8]) -> Result<Self, WireError> {
        if buf.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if buf[0] >> 4 != 6 {
            return Err(WireError::Malformed);
        }
        let total = HEADER_LEN + usize::from(be16(buf, 4));
        if buf.len() < total {
            return Err(WireError::Truncated);
        }
        Ok(Self { buf: &buf[..total] })
    }

    /// Payload length from the header.
    pub fn payload_len(&self) -> usize {
        self.buf.len() - HEADER_LEN
    }

    /// Next header (transport protocol when there are no extension headers).
    pub fn next_header(&self) -> u8 {
        self.buf[6]
    }

    /// Hop limit.
    pub fn hop_limit(&self) -> u8 {
        self.buf[7]
    }

    /// Source address.
    pub fn src(&self) -> Ipv6Addr {
        Ipv6Addr::from(array::<16>(self.buf, 8))
    }

    /// Destination address.
    pub fn dst(&self) -> Ipv6Addr {
        Ipv6Addr::from(array::<16>(self.buf, 24))
    }

    /// The bytes after the fixed header.
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[HEADER_LEN..]
    }

    /// The whole packet, cut to the payload length.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }
}

/// Fields of a fixed IPv6 header to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Repr {
    /// Source address.
    pub src: Ipv6Addr,
    /// Destination address.
    pub dst: Ipv6Addr,
    /// Next header.
    pub next_header: u8,
    /// Hop limit.
    pub hop_limit: u8,
    /// Bytes that follow the header.
    pub payload_len: usize,
}

impl Ipv6Repr {
    /// Writes the 40-byte header; returns 40.
    pub fn write(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        let len = u16::try_from(self.payload_len).map_err(|_| WireError::Malformed)?;
        let h = buf.get_mut(..HEADER_LEN).ok_or(WireError::BufferTooSmall)?;
        h[0..4].copy_from_slice(&[0x60, 0, 0, 0]);
        h[4..6].copy_from_slice(&len.to_be_bytes());
        h[6] = self.next_header;
        h[7] = self.hop_limit;
        h[8..24].copy_from_slice(&self.src.octets());
        h[24..40].copy_from_slice(&self.dst.octets());
        Ok(HEADER_LEN)
    }
}

/// Rewrites the payload length of the fixed header at the start of `header`.
pub fn rewrite_payload_len(header: &mut [u8], payload_len: u16) -> Result<(), WireError> {
    let h = header.get_mut(4..6).ok_or(WireError::Truncated)?;
    h.copy_from_slice(&payload_len.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let r = Ipv6Repr {
            src: "fd00::1".parse().unwrap(),
            dst: "fd00::2".parse().unwrap(),
            next_header: 58,
            hop_limit: 64,
            payload_len: 4,
        };
        let mut buf = [0u8; 48];
        r.write(&mut buf).unwrap();
        let p = Ipv6Packet::new(&buf).unwrap();
        assert_eq!(p.payload_len(), 4);
        assert_eq!(p.src(), r.src);
        assert_eq!(p.as_bytes().len(), 44);
        assert_eq!(
            Ipv6Packet::new(&buf[..43]).unwrap_err(),
            WireError::Truncated
        );
        buf[0] = 0x40;
        assert_eq!(Ipv6Packet::new(&buf).unwrap_err(), WireError::Malformed);
    }
}
