//! TCP headers (RFC 9293): the fields a segmenter and a coalescer touch.

use crate::{WireError, be16, be32, put16, put32};

/// Length of a TCP header without options.
pub const MIN_HEADER_LEN: usize = 20;

/// TCP flag bits (the low byte of offset 12..14).
pub mod flags {
    /// No more data from sender.
    pub const FIN: u8 = 0x01;
    /// Synchronize sequence numbers.
    pub const SYN: u8 = 0x02;
    /// Reset the connection.
    pub const RST: u8 = 0x04;
    /// Push.
    pub const PSH: u8 = 0x08;
    /// Acknowledgment field significant.
    pub const ACK: u8 = 0x10;
    /// Urgent pointer field significant.
    pub const URG: u8 = 0x20;
    /// ECN-Echo.
    pub const ECE: u8 = 0x40;
    /// Congestion Window Reduced.
    pub const CWR: u8 = 0x80;
}

/// Offset of the checksum field within the TCP header (virtio `csum_offset` for TCP).
pub const CHECKSUM_OFFSET: usize = 16;

/// A checked view of a TCP segment: the data offset is sane and within the bytes.
#[derive(Debug, Clone, Copy)]
pub struct TcpSegment<'a> {
    buf: &'a [u8],
}

impl<'a> TcpSegment<'a> {
    /// Checks the data offset against the bytes present.
    pub fn new(buf: &'a [u8]) -> Result<Self, WireError> {
        if buf.len() < MIN_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let hl = usize::from(buf[12] >> 4) * 4;
        if hl < MIN_HEADER_LEN {
            return Err(WireError::Malformed);
        }
        if buf.len() < hl {
            return Err(WireError::Truncated);
        }
        Ok(Self { buf })
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        be16(self.buf, 0)
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        be16(self.buf, 2)
    }

    /// Sequence number.
    pub fn seq(&self) -> u32 {
        be32(self.buf, 4)
    }

    /// Acknowledgment number.
    pub fn ack(&self) -> u32 {
        be32(self.buf, 8)
    }

    /// Header length with options.
    pub fn header_len(&self) -> usize {
        usize::from(self.buf[12] >> 4) * 4
    }

    /// The flag byte (see [`flags`]).
    pub fn flags(&self) -> u8 {
        self.buf[13]
    }

    /// Receive window.
    pub fn window(&self) -> u16 {
        be16(self.buf, 14)
    }

    /// The options bytes.
    pub fn options(&self) -> &'a [u8] {
        &self.buf[MIN_HEADER_LEN..self.header_len()]
    }

    /// The data after the header.
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[self.header_len()..]
    }
}

/// Sets the sequence number of the TCP header at the start of `tcp`.
pub fn set_seq(tcp: &mut [u8], seq: u32) -> Result<(), WireError> {
    if tcp.len() < MIN_HEADER_LEN {
        return Err(WireError::Truncated);
    }
    put32(tcp, 4, seq);
    Ok(())
}

/// Sets the flag byte of the TCP header at the start of `tcp`.
pub fn set_flags(tcp: &mut [u8], value: u8) -> Result<(), WireError> {
    let b = tcp.get_mut(13).ok_or(WireError::Truncated)?;
    *b = value;
    Ok(())
}

/// Sets the checksum field of the TCP header at the start of `tcp`.
pub fn set_checksum(tcp: &mut [u8], value: u16) -> Result<(), WireError> {
    if tcp.len() < MIN_HEADER_LEN {
        return Err(WireError::Truncated);
    }
    put16(tcp, CHECKSUM_OFFSET, value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_mutate() {
        let mut b = [0u8; 32];
        b[12] = 8 << 4; // 32-byte header
        b[13] = flags::ACK | flags::PSH;
        let s = TcpSegment::new(&b).unwrap();
        assert_eq!(s.header_len(), 32);
        assert_eq!(s.options().len(), 12);
        assert!(s.payload().is_empty());
        set_seq(&mut b, 0xdead_beef).unwrap();
        assert_eq!(TcpSegment::new(&b).unwrap().seq(), 0xdead_beef);
        b[12] = 9 << 4;
        assert_eq!(TcpSegment::new(&b).unwrap_err(), WireError::Truncated);
        b[12] = 4 << 4;
        assert_eq!(TcpSegment::new(&b).unwrap_err(), WireError::Malformed);
    }
}
