//! The `virtio_net_hdr` that prefixes every frame on weft's ports.
//!
//! With PACKET_VNET_HDR (AF_PACKET) and IFF_VNET_HDR (TAP) the kernel hands a container's
//! TCP segmentation-offload super-frames (up to 64 KiB) and checksum-offload frames to weft
//! whole, and takes them back whole, with this header saying what is unfinished: where the
//! checksum still has to go (`NEEDS_CSUM`) and how to cut the frame into wire-sized segments
//! (`gso_type`/`gso_size`). Between local ports the header passes through untouched; frames
//! leaving the host are finished or cut by the `tunnel` crate.
//!
//! Layout (10 bytes, native endian: legacy virtio on AF_PACKET and on TAP without
//! TUNSETVNETLE): flags u8, gso_type u8, hdr_len u16, gso_size u16, csum_start u16,
//! csum_offset u16.

use crate::WireError;
use crate::checksum::Checksum;

/// Size of `struct virtio_net_hdr`.
pub const LEN: usize = 10;

/// `flags`: the checksum from `csum_start` to the end is unfinished; the field at
/// `csum_start + csum_offset` holds the pseudo-header sum.
pub const F_NEEDS_CSUM: u8 = 1;
/// `flags`: the checksum has been verified (receive side only).
pub const F_DATA_VALID: u8 = 2;

/// `gso_type`: not a super-frame.
pub const GSO_NONE: u8 = 0;
/// `gso_type`: TCP over IPv4.
pub const GSO_TCPV4: u8 = 1;
/// `gso_type`: UDP fragmentation offload (obsolete).
pub const GSO_UDP: u8 = 3;
/// `gso_type`: TCP over IPv6.
pub const GSO_TCPV6: u8 = 4;
/// `gso_type`: UDP segmentation offload (USO, Linux 6.2+).
pub const GSO_UDP_L4: u8 = 5;
/// `gso_type` bit: the TCP super-frame carries ECN (CWR must stay on the first segment only).
pub const GSO_ECN: u8 = 0x80;

/// The raw header bytes that say "nothing unfinished": a complete, wire-sized frame.
pub static NO_OFFLOAD: [u8; LEN] = [0; LEN];

/// One frame with its raw virtio header, borrowed from wherever it lives (a receive
/// buffer, a scratch buffer): how frames cross between the data plane's core, which
/// decides where they go, and the ports, which move them without looking inside.
#[derive(Debug, Clone, Copy)]
pub struct VnetFrame<'a> {
    /// The header the kernel wrote, or the one to write in front of the frame.
    pub vnet: &'a [u8; LEN],
    /// The Ethernet frame.
    pub frame: &'a [u8],
}

/// A parsed `virtio_net_hdr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VnetHdr {
    /// `F_NEEDS_CSUM` / `F_DATA_VALID`.
    pub flags: u8,
    /// `GSO_*`, possibly with `GSO_ECN`.
    pub gso_type: u8,
    /// Length of the headers to repeat on each segment (a hint; may be 0 or wrong from some senders).
    pub hdr_len: u16,
    /// Payload bytes per segment (the MSS for TCP).
    pub gso_size: u16,
    /// Offset of the first byte the unfinished checksum covers (the transport header).
    pub csum_start: u16,
    /// Offset of the checksum field from `csum_start`.
    pub csum_offset: u16,
}

impl VnetHdr {
    /// A header that asks nothing: a complete, wire-sized frame.
    pub const NONE: Self = Self {
        flags: 0,
        gso_type: 0,
        hdr_len: 0,
        gso_size: 0,
        csum_start: 0,
        csum_offset: 0,
    };

    /// Reads the header from its 10 bytes.
    #[inline]
    pub fn parse(b: &[u8; LEN]) -> Self {
        Self {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u16::from_ne_bytes([b[2], b[3]]),
            gso_size: u16::from_ne_bytes([b[4], b[5]]),
            csum_start: u16::from_ne_bytes([b[6], b[7]]),
            csum_offset: u16::from_ne_bytes([b[8], b[9]]),
        }
    }

    /// The 10 bytes of this header.
    #[inline]
    pub fn to_bytes(self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
        b
    }

    /// A super-frame that must be cut into `gso_size` segments before it may leave the host.
    #[inline]
    pub fn is_gso(&self) -> bool {
        self.gso_type & !GSO_ECN != GSO_NONE
    }

    /// The GSO type without the ECN bit.
    #[inline]
    pub fn gso_kind(&self) -> u8 {
        self.gso_type & !GSO_ECN
    }

    /// The transport checksum is unfinished.
    #[inline]
    pub fn needs_csum(&self) -> bool {
        self.flags & F_NEEDS_CSUM != 0
    }

    /// Finishes a partial checksum in place, as a NIC would: sums `frame[csum_start..]`
    /// (whose checksum field holds the pseudo-header sum) and stores the result.
    ///
    /// Only for frames that are not super-frames; a super-frame is cut first.
    pub fn complete_checksum(&self, frame: &mut [u8]) -> Result<(), WireError> {
        if !self.needs_csum() {
            return Ok(());
        }
        let start = usize::from(self.csum_start);
        let field = start + usize::from(self.csum_offset);
        if field + 2 > frame.len() {
            return Err(WireError::Malformed);
        }
        let mut c = Checksum::new();
        c.add_bytes(&frame[start..]);
        let mut value = c.finish();
        // A UDP checksum that computes to zero is sent as all ones (zero means "none").
        if value == 0 && self.csum_offset == 6 {
            value = 0xffff;
        }
        frame[field..field + 2].copy_from_slice(&value.to_be_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip() {
        let h = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4 | GSO_ECN,
            hdr_len: 66,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        };
        assert_eq!(VnetHdr::parse(&h.to_bytes()), h);
        assert!(h.is_gso() && h.needs_csum());
        assert_eq!(h.gso_kind(), GSO_TCPV4);
        assert!(!VnetHdr::NONE.is_gso());
    }

    #[test]
    fn completes_partial_checksum() {
        // A fake "transport" region at offset 4 with its checksum field at +2, seeded with a
        // pseudo-header sum of 0x1234, as the kernel leaves it.
        let mut frame = vec![0xaau8; 4];
        let mut l4 = vec![1u8, 2, 0x12, 0x34, 5, 6, 7, 8, 9];
        frame.append(&mut l4);
        let h = VnetHdr {
            flags: F_NEEDS_CSUM,
            csum_start: 4,
            csum_offset: 2,
            ..VnetHdr::NONE
        };
        h.complete_checksum(&mut frame).unwrap();
        // The finished region plus the pseudo-header sum must verify.
        let mut c = Checksum::new();
        c.add_u16(0x1234);
        let mut region = frame[4..].to_vec();
        region.push(0);
        c.add_bytes(&region);
        assert_eq!(c.fold(), 0xffff);
        let bad = VnetHdr {
            flags: F_NEEDS_CSUM,
            csum_start: 12,
            csum_offset: 2,
            ..VnetHdr::NONE
        };
        assert_eq!(bad.complete_checksum(&mut frame), Err(WireError::Malformed));
    }
}
