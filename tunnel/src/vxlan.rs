//! The VXLAN header (RFC 7348) as a Linux vxlan device writes and accepts it.
//!
//! ```text
//!  0               1               2               3
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |R|R|R|R|I|R|R|R|            Reserved (0)                       |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |            VXLAN Network Identifier (VNI)     | Reserved (0)  |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Sending: flags `0x08`, every reserved bit zero, exactly as `vxlan_xmit` does.
//!
//! Receiving follows `vxlan_rcv` in its default configuration (no GBP, GPE or remote
//! checksum offload) rather than the RFC's "ignore reserved bits": the I flag must be set,
//! and every other bit outside the VNI must be zero (the kernel drops such datagrams as
//! `VXLAN_INVALID_HDR`, and since Linux 6.14 checks them against its `reserved_bits`
//! mask, which by default is the same set). The inner frame must hold at least an
//! Ethernet header. Whether the VNI names a network is the caller's lookup; it reports a
//! miss as [`VxlanError::UnknownVni`] so every drop reason has one home.

use std::fmt;

use wire::ethernet;

/// Length of the VXLAN header.
pub const VXLAN_HEADER_LEN: usize = 8;

/// The IANA port for VXLAN; the kernel's default `dstport` since Linux 3.x uses it too.
pub const DEFAULT_PORT: u16 = 4789;

/// Bytes one VXLAN datagram adds around an IP packet over an IPv4 underlay:
/// outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14. The overlay MTU is the
/// underlay MTU minus this (1500 → 1450), as for a kernel vxlan device.
pub const OVERHEAD_V4: usize = 50;

/// The same over an IPv6 underlay (outer IPv6 header 40 instead of 20): 1500 → 1430.
pub const OVERHEAD_V6: usize = 70;

/// The I flag: "a valid VNI follows". The only flag bit a default vxlan device accepts.
const FLAG_VNI: u8 = 0x08;

/// The outer network a VXLAN datagram travels on; it decides the encapsulation overhead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Underlay {
    /// Outer IPv4.
    V4,
    /// Outer IPv6.
    V6,
}

impl Underlay {
    /// Bytes of encapsulation around each inner IP packet.
    pub fn overhead(self) -> usize {
        match self {
            Self::V4 => OVERHEAD_V4,
            Self::V6 => OVERHEAD_V6,
        }
    }

    /// The default overlay MTU for an underlay path of `underlay_mtu` bytes, or `None`
    /// when the underlay is too small to carry even a minimal IPv4 packet (68 bytes)
    /// inside the encapsulation. `--mtu` overrides the result.
    pub fn overlay_mtu(self, underlay_mtu: usize) -> Option<usize> {
        underlay_mtu
            .checked_sub(self.overhead())
            .filter(|&mtu| mtu >= MIN_OVERLAY_MTU)
    }
}

/// The smallest MTU an IPv4 link may have (RFC 791); an overlay below it is useless.
pub const MIN_OVERLAY_MTU: usize = 68;

/// A 24-bit VXLAN network identifier: one per weft network.
///
/// The constructor refuses values above 2^24 − 1, so every `Vni` fits the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Vni(u32);

impl Vni {
    /// The largest VNI.
    pub const MAX: u32 = 0x00ff_ffff;

    /// A VNI, or `None` when `value` does not fit 24 bits.
    pub const fn new(value: u32) -> Option<Self> {
        if value <= Self::MAX {
            Some(Self(value))
        } else {
            None
        }
    }

    /// The numeric value (0..=2^24 − 1).
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for Vni {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Why a received datagram is not a VXLAN frame weft accepts: each variant is a drop
/// reason with a counter name ([`VxlanError::name`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VxlanError {
    /// Fewer than 8 bytes: not even a VXLAN header.
    #[error("datagram shorter than the 8-byte VXLAN header")]
    Truncated,
    /// The I flag is clear: the kernel refuses these as "invalid vxlan flags".
    #[error("VXLAN I flag (0x08) not set; the sender is not speaking plain VXLAN")]
    MissingVniFlag,
    /// A flag or reserved bit is set (GBP, GPE, RCO or garbage), which a default Linux
    /// vxlan device drops; so does weft.
    #[error("VXLAN reserved bits set (extension such as GBP/GPE, not enabled here)")]
    ReservedBitsSet,
    /// The inner frame is shorter than an Ethernet header.
    #[error("VXLAN payload shorter than an Ethernet header")]
    InnerTruncated,
    /// No weft network uses this VNI (reported by the caller's lookup).
    #[error("no network uses VXLAN VNI {0}; check that both peers agree on the network's VNI")]
    UnknownVni(Vni),
    /// The output buffer cannot hold the header (and frame).
    #[error("buffer too small for the VXLAN datagram")]
    BufferTooSmall,
}

crate::counted_reasons!(VxlanError {
    Truncated => "vxlan_truncated",
    MissingVniFlag => "vxlan_missing_vni_flag",
    ReservedBitsSet => "vxlan_reserved_bits",
    InnerTruncated => "vxlan_inner_truncated",
    UnknownVni => "vxlan_unknown_vni",
    BufferTooSmall => "vxlan_buffer_too_small",
});

/// The 8-byte VXLAN header; it is also the `prefix` the segmenter repeats per datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VxlanHeader {
    /// The network the inner frame belongs to.
    pub vni: Vni,
}

impl VxlanHeader {
    /// The header for `vni`.
    pub const fn new(vni: Vni) -> Self {
        Self { vni }
    }

    /// The header bytes as the kernel sends them: flags 0x08, VNI, zeros elsewhere.
    pub const fn to_bytes(self) -> [u8; VXLAN_HEADER_LEN] {
        let v = self.vni.0.to_be_bytes();
        [FLAG_VNI, 0, 0, 0, v[1], v[2], v[3], 0]
    }

    /// Writes the header at the start of `buf`; returns 8.
    pub fn write(self, buf: &mut [u8]) -> Result<usize, VxlanError> {
        let dst = buf
            .get_mut(..VXLAN_HEADER_LEN)
            .ok_or(VxlanError::BufferTooSmall)?;
        dst.copy_from_slice(&self.to_bytes());
        Ok(VXLAN_HEADER_LEN)
    }
}

/// Splits a received VXLAN datagram (the UDP payload) into its VNI and inner frame,
/// accepting exactly what a default Linux vxlan device accepts (see the module docs).
pub fn decap(datagram: &[u8]) -> Result<(Vni, &[u8]), VxlanError> {
    let (Some(header), Some(inner)) = (
        datagram.first_chunk::<VXLAN_HEADER_LEN>(),
        datagram.get(VXLAN_HEADER_LEN..),
    ) else {
        return Err(VxlanError::Truncated);
    };
    let [flags, r1, r2, r3, v0, v1, v2, r4] = *header;
    if flags & FLAG_VNI == 0 {
        return Err(VxlanError::MissingVniFlag);
    }
    if flags != FLAG_VNI || r1 != 0 || r2 != 0 || r3 != 0 || r4 != 0 {
        return Err(VxlanError::ReservedBitsSet);
    }
    if inner.len() < ethernet::HEADER_LEN {
        return Err(VxlanError::InnerTruncated);
    }
    let vni = Vni(u32::from_be_bytes([0, v0, v1, v2]));
    Ok((vni, inner))
}

/// Writes `header ‖ inner` into `out`; returns the datagram length. For single frames
/// (ARP, broadcasts, heartbeats); bulk traffic goes through [`crate::offload::segment`].
pub fn encapsulate(vni: Vni, inner: &[u8], out: &mut [u8]) -> Result<usize, VxlanError> {
    let total = VXLAN_HEADER_LEN + inner.len();
    let dst = out.get_mut(..total).ok_or(VxlanError::BufferTooSmall)?;
    let (head, body) = dst.split_at_mut(VXLAN_HEADER_LEN);
    head.copy_from_slice(&VxlanHeader::new(vni).to_bytes());
    body.copy_from_slice(inner);
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vni(v: u32) -> Vni {
        Vni::new(v).unwrap()
    }

    fn inner_frame() -> Vec<u8> {
        let mut f = vec![0u8; 60];
        f[..6].copy_from_slice(&[0xff; 6]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[12..14].copy_from_slice(&[0x08, 0x06]);
        f
    }

    #[test]
    fn vni_is_24_bits() {
        assert_eq!(Vni::new(0).map(Vni::get), Some(0));
        assert_eq!(Vni::new(0xff_ffff).map(Vni::get), Some(0xff_ffff));
        assert_eq!(Vni::new(0x100_0000), None);
        assert_eq!(Vni::new(u32::MAX), None);
        assert_eq!(vni(42).to_string(), "42");
    }

    #[test]
    fn round_trip() {
        let inner = inner_frame();
        let mut out = [0u8; 128];
        for v in [0, 1, 0x12_3456, Vni::MAX] {
            let n = encapsulate(vni(v), &inner, &mut out).unwrap();
            assert_eq!(n, 8 + inner.len());
            let (got, frame) = decap(&out[..n]).unwrap();
            assert_eq!(got, vni(v));
            assert_eq!(frame, &inner[..]);
        }
    }

    /// The RFC 7348 §5 layout built by hand: flags byte 0x08, 24 reserved bits, the VNI in
    /// bytes 4..7 most significant first, 8 reserved bits.
    #[test]
    fn header_bytes_match_rfc_layout() {
        let v: u32 = 0x00ab_cdef;
        let mut expected = [0u8; 8];
        expected[0] = 1 << 3; // I flag: bit 4 of the first octet counting from the MSB at 0
        expected[4] = (v >> 16) as u8;
        expected[5] = (v >> 8) as u8;
        expected[6] = v as u8;
        assert_eq!(VxlanHeader::new(vni(v)).to_bytes(), expected);
        let mut buf = [0xeeu8; 10];
        assert_eq!(VxlanHeader::new(vni(v)).write(&mut buf), Ok(8));
        assert_eq!(&buf[..8], &expected);
        assert_eq!(buf[8..], [0xee, 0xee]);
        assert_eq!(
            VxlanHeader::new(vni(v)).write(&mut [0u8; 7]),
            Err(VxlanError::BufferTooSmall)
        );
    }

    /// The whole outer datagram as etherparse sees it: our UDP payload must sit right
    /// after an outer UDP header to port 4789, with the inner frame right after 8 bytes.
    #[test]
    fn datagram_parses_as_udp_to_4789_with_vxlan_payload() {
        let inner = inner_frame();
        let mut payload = [0u8; 128];
        let n = encapsulate(vni(7), &inner, &mut payload).unwrap();
        let builder = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 9], [2, 0, 0, 0, 0, 8])
            .ipv4([192, 0, 2, 1], [192, 0, 2, 2], 64)
            .udp(40000, DEFAULT_PORT);
        let mut outer = Vec::new();
        builder.write(&mut outer, &payload[..n]).unwrap();
        let p = etherparse::SlicedPacket::from_ethernet(&outer).unwrap();
        let Some(etherparse::TransportSlice::Udp(udp)) = p.transport else {
            panic!("not UDP")
        };
        assert_eq!(udp.destination_port(), 4789);
        // Outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8 around the inner frame: the inner IP
        // packet grew by OVERHEAD_V4 (which counts the inner Ethernet header instead).
        assert_eq!(outer.len(), inner.len() + OVERHEAD_V4);
        let (got, frame) = decap(udp.payload()).unwrap();
        assert_eq!(got, vni(7));
        let inner_eth = etherparse::Ethernet2Slice::from_slice_without_fcs(frame).unwrap();
        assert_eq!(inner_eth.destination(), [0xff; 6]);
        assert_eq!(inner_eth.ether_type(), etherparse::EtherType::ARP);
    }

    #[test]
    fn decap_rejections() {
        let inner = inner_frame();
        let mut ok = vec![0x08, 0, 0, 0, 0, 0, 5, 0];
        ok.extend_from_slice(&inner);
        assert!(decap(&ok).is_ok());

        for len in 0..8 {
            assert_eq!(decap(&ok[..len]), Err(VxlanError::Truncated));
        }
        // Header present, inner frame shorter than 14 bytes.
        assert_eq!(decap(&ok[..8 + 13]), Err(VxlanError::InnerTruncated));
        assert_eq!(decap(&ok[..8]), Err(VxlanError::InnerTruncated));
        assert_eq!(decap(&ok[..8 + 14]).map(|(v, _)| v), Ok(vni(5)));

        let mutate = |at: usize, val: u8| {
            let mut d = ok.clone();
            d[at] = val;
            decap(&d).map(|(v, inner)| (v, inner.len()))
        };
        assert_eq!(mutate(0, 0x00), Err(VxlanError::MissingVniFlag));
        // The I flag clear wins over other bits, as in vxlan_rcv.
        assert_eq!(mutate(0, 0x80), Err(VxlanError::MissingVniFlag));
        // Any other flag bit with I set: GBP (0x80), GPE/ver bits, RCO (0x20), ...
        for flag in [0x01u8, 0x02, 0x04, 0x10, 0x20, 0x40, 0x80] {
            assert_eq!(
                mutate(0, 0x08 | flag),
                Err(VxlanError::ReservedBitsSet),
                "{flag:#x}"
            );
        }
        for at in [1, 2, 3, 7] {
            assert_eq!(mutate(at, 1), Err(VxlanError::ReservedBitsSet), "byte {at}");
        }
        // The VNI bytes themselves may hold anything.
        assert_eq!(mutate(4, 0xff).map(|(v, _)| v.get()), Ok(0xff_0005));
    }

    #[test]
    fn error_names_are_distinct() {
        let all = [
            VxlanError::Truncated,
            VxlanError::MissingVniFlag,
            VxlanError::ReservedBitsSet,
            VxlanError::InnerTruncated,
            VxlanError::UnknownVni(vni(1)),
            VxlanError::BufferTooSmall,
        ];
        let mut names: Vec<_> = all.iter().map(VxlanError::name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all.len());
    }

    #[test]
    fn overlay_mtu_defaults() {
        assert_eq!(Underlay::V4.overlay_mtu(1500), Some(1450));
        assert_eq!(Underlay::V6.overlay_mtu(1500), Some(1430));
        assert_eq!(Underlay::V4.overlay_mtu(9000), Some(8950));
        assert_eq!(Underlay::V4.overlay_mtu(117), None);
        assert_eq!(Underlay::V4.overlay_mtu(118), Some(68));
        assert_eq!(Underlay::V6.overlay_mtu(10), None);
    }
}
