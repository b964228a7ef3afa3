//! UDP headers (RFC 768).

use crate::{WireError, be16};

/// Length of a UDP header.
pub const HEADER_LEN: usize = 8;

/// A checked view of a UDP header and its payload (cut to the header's length field).
#[derive(Debug, Clone, Copy)]
pub struct UdpPacket<'a> {
    buf: &'a [u8],
}

impl<'a> UdpPacket<'a> {
    /// Checks the header and that the length field fits the bytes present.
    pub fn new(buf: &'a [u8]) -> Result<Self, WireError> {
        if buf.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let len = usize::from(be16(buf, 4));
        if len < HEADER_LEN {
            return Err(WireError::Malformed);
        }
        if buf.len() < len {
            return Err(WireError::Truncated);
        }
        Ok(Self { buf: &buf[..len] })
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        be16(self.buf, 0)
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        be16(self.buf, 2)
    }

    /// Checksum field (0 = none, allowed over IPv4).
    pub fn checksum(&self) -> u16 {
        be16(self.buf, 6)
    }

    /// The datagram payload.
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[HEADER_LEN..]
    }
}

/// Writes a UDP header; `len` covers header and payload.
pub fn write_header(
    buf: &mut [u8],
    src_port: u16,
    dst_port: u16,
    len: u16,
    checksum: u16,
) -> Result<usize, WireError> {
    let h = buf.get_mut(..HEADER_LEN).ok_or(WireError::BufferTooSmall)?;
    h[0..2].copy_from_slice(&src_port.to_be_bytes());
    h[2..4].copy_from_slice(&dst_port.to_be_bytes());
    h[4..6].copy_from_slice(&len.to_be_bytes());
    h[6..8].copy_from_slice(&checksum.to_be_bytes());
    Ok(HEADER_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bounds() {
        let mut b = [0u8; 12];
        write_header(&mut b, 1000, 4789, 12, 0).unwrap();
        let u = UdpPacket::new(&b).unwrap();
        assert_eq!(
            (u.src_port(), u.dst_port(), u.payload().len()),
            (1000, 4789, 4)
        );
        b[5] = 13;
        assert_eq!(UdpPacket::new(&b).unwrap_err(), WireError::Truncated);
        b[5] = 7;
        assert_eq!(UdpPacket::new(&b).unwrap_err(), WireError::Malformed);
    }
}
