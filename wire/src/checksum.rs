//! The Internet checksum (RFC 1071) and its pseudo headers.
//!
//! One implementation for every header weft fills in: IPv4 headers, TCP/UDP segments cut
//! from super-frames, ICMP errors, IGMP queries. The sum runs 8 bytes at a time with an
//! end-around carry; because 2^16 ≡ 1 (mod 2^16 − 1), folding the 64-bit ones'-complement
//! sum down to 16 bits gives the same result as summing 16-bit words.

use std::net::{Ipv4Addr, Ipv6Addr};

/// A running ones'-complement sum.
///
/// Feed it bytes in order; only the last chunk may have an odd length (an odd chunk
/// in the middle would shift every following word by a byte).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Checksum(u64);

impl Checksum {
    /// An empty sum.
    pub const fn new() -> Self {
        Self(0)
    }

    #[inline]
    fn add64(&mut self, v: u64) {
        let (s, carry) = self.0.overflowing_add(v);
        self.0 = s + u64::from(carry);
    }

    /// Adds a 16-bit word (host order value of a big-endian field).
    #[inline]
    pub fn add_u16(&mut self, v: u16) {
        self.add64(u64::from(v));
    }

    /// Adds a 32-bit word (host order value of a big-endian field).
    #[inline]
    pub fn add_u32(&mut self, v: u32) {
        self.add64(u64::from(v));
    }

    /// Takes a 16-bit word back out of the sum (adds its ones' complement), so a sum over
    /// a header template can have the fields that change per packet replaced cheaply
    /// (RFC 1624's incremental update).
    #[inline]
    pub fn sub_u16(&mut self, v: u16) {
        self.add64(u64::from(!v));
    }

    /// Adds another running sum, as if its bytes had been added here (both must cover
    /// even-length data, except for the very last bytes of the whole sum).
    #[inline]
    pub fn add_sum(&mut self, other: Self) {
        self.add64(other.0);
    }

    /// Adds bytes; see the type's note on odd lengths.
    ///
    /// The hot loop of every segmentation and coalescing pass, so it avoids the carry
    /// chain: 32-bit words in native byte order are added into four independent 64-bit
    /// accumulators (which cannot overflow below 16 GiB of input), and the folded result is
    /// byte-swapped into network order once at the end (RFC 1071 §2(B): the sum is byte-order
    /// independent up to that swap).
    #[inline]
    pub fn add_bytes(&mut self, data: &[u8]) {
        let mut acc = [0u64; 4];
        let mut chunks = data.chunks_exact(16);
        for c in &mut chunks {
            acc[0] += u64::from(u32::from_ne_bytes([c[0], c[1], c[2], c[3]]));
            acc[1] += u64::from(u32::from_ne_bytes([c[4], c[5], c[6], c[7]]));
            acc[2] += u64::from(u32::from_ne_bytes([c[8], c[9], c[10], c[11]]));
            acc[3] += u64::from(u32::from_ne_bytes([c[12], c[13], c[14], c[15]]));
        }
        let rest = chunks.remainder();
        let mut tail = [0u8; 16];
        tail[..rest.len()].copy_from_slice(rest);
        for (i, w) in tail.chunks_exact(4).enumerate() {
            acc[i] += u64::from(u32::from_ne_bytes([w[0], w[1], w[2], w[3]]));
        }
        let native = Self(acc[0]).plus(acc[1]).plus(acc[2]).plus(acc[3]).fold();
        // `native` sums the data read as native-endian words; network order is its swap.
        self.add_u16(u16::from_be(native));
    }

    #[inline]
    fn plus(mut self, v: u64) -> Self {
        self.add64(v);
        self
    }

    /// The folded 16-bit ones'-complement sum (not inverted).
    #[inline]
    pub fn fold(self) -> u16 {
        let mut s = self.0;
        s = (s & 0xffff_ffff) + (s >> 32);
        s = (s & 0xffff_ffff) + (s >> 32);
        s = (s & 0xffff) + (s >> 16);
        s = (s & 0xffff) + (s >> 16);
        s = (s & 0xffff) + (s >> 16);
        s as u16
    }

    /// The value to store in a checksum field: the inverted folded sum.
    #[inline]
    pub fn finish(self) -> u16 {
        !self.fold()
    }
}

/// Checksum of `data` alone, ready to store.
pub fn checksum(data: &[u8]) -> u16 {
    let mut c = Checksum::new();
    c.add_bytes(data);
    c.finish()
}

/// Whether bytes that include their own checksum field sum to all ones.
pub fn verifies(data: &[u8]) -> bool {
    let mut c = Checksum::new();
    c.add_bytes(data);
    c.fold() == 0xffff
}

/// The IPv4 pseudo header for a TCP/UDP checksum over `l4_len` bytes.
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, l4_len: u16) -> Checksum {
    let mut c = Checksum::new();
    c.add_u32(u32::from(src));
    c.add_u32(u32::from(dst));
    c.add_u16(u16::from(protocol));
    c.add_u16(l4_len);
    c
}

/// The IPv6 pseudo header (RFC 8200 §8.1) for an upper-layer checksum over `l4_len` bytes.
pub fn pseudo_header_v6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, l4_len: u32) -> Checksum {
    let mut c = Checksum::new();
    c.add_bytes(&src.octets());
    c.add_bytes(&dst.octets());
    c.add_u32(l4_len);
    c.add_u32(u32::from(next_header));
    c
}

/// RFC 1624 incremental update of a stored checksum when one 16-bit field changes.
pub fn update_u16(stored: u16, old: u16, new: u16) -> u16 {
    let mut c = Checksum::new();
    c.add_u16(!stored);
    c.add_u16(!old);
    c.add_u16(new);
    c.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// RFC 1071's definition, word by word, as the oracle.
    fn reference(data: &[u8]) -> u16 {
        let mut sum: u32 = 0;
        for pair in data.chunks(2) {
            let w = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
            sum += u32::from(w);
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    #[test]
    fn known_ipv4_header() {
        // A header from RFC 1071-style examples: checksum field zeroed.
        let hdr = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&hdr), 0xb861);
    }

    #[test]
    fn update_matches_recompute() {
        let mut hdr = [
            0x45u8, 0, 0, 0x73, 0, 0, 0x40, 0, 0x40, 0x11, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        let c = checksum(&hdr);
        hdr[2..4].copy_from_slice(&0x0500u16.to_be_bytes());
        assert_eq!(update_u16(c, 0x0073, 0x0500), checksum(&hdr));
    }

    proptest! {
        #[test]
        fn matches_reference(data in proptest::collection::vec(any::<u8>(), 0..3000)) {
            prop_assert_eq!(checksum(&data), reference(&data));
        }

        #[test]
        fn chunked_even_prefix_matches(data in proptest::collection::vec(any::<u8>(), 0..600), split in 0usize..300) {
            let split = (split * 2).min(data.len() & !1);
            let mut c = Checksum::new();
            c.add_bytes(&data[..split]);
            c.add_bytes(&data[split..]);
            prop_assert_eq!(c.finish(), reference(&data));
        }
    }
}
