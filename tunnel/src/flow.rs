//! The inner-flow hash that picks a VXLAN datagram's outer UDP source port.
//!
//! Routers spread traffic over equal-cost paths (ECMP) and NICs spread it over receive
//! queues (RSS) by the outer 5-tuple; only the UDP source port varies between a pair of
//! VTEPs, so it must follow the inner flow: one flow always uses one port (no reordering),
//! different flows use different ports (spread). Linux does this in `udp_flow_src_port`
//! with the skb's flow hash mapped into the local port range; weft does the same with its
//! own hash.
//!
//! Flow identity: for IPv4/IPv6 the addresses and protocol, plus the ports for TCP, UDP,
//! UDP-Lite and SCTP unless the packet is a fragment (non-first fragments carry no ports,
//! so every fragment of a datagram hashes alike); for anything else the MAC addresses and
//! EtherType. The hash is deterministic and unkeyed: it only spreads load between hosts
//! that already trust each other's traffic, so a keyed hash would buy nothing.

use std::ops::RangeInclusive;

use wire::ipv4::protocol;

use crate::layout::{IpLayout, macs};

/// The kernel's default local port range, which `udp_flow_src_port` maps into.
pub const DEFAULT_SOURCE_PORTS: RangeInclusive<u16> = 32768..=60999;

/// IP protocol numbers whose first 4 transport bytes are source and destination port.
const PORTED: [u8; 4] = [
    protocol::TCP,
    protocol::UDP,
    132, /* SCTP */
    136, /* UDP-Lite */
];

/// Mixes one 64-bit word into the running state.
#[inline]
fn mix(h: u64, w: u64) -> u64 {
    let x = (h ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^ (x >> 32)
}

/// MurmurHash3's 64-bit finaliser: every input bit affects every output bit.
#[inline]
fn finish(mut h: u64) -> u32 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    (h ^ (h >> 32)) as u32
}

/// Reads up to 8 bytes as a big-endian word (zero-padded).
#[inline]
fn word(bytes: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    let n = bytes.len().min(8);
    if let (Some(d), Some(s)) = (w.get_mut(..n), bytes.get(..n)) {
        d.copy_from_slice(s);
    }
    u64::from_be_bytes(w)
}

/// A 32-bit hash of the flow `inner_frame` belongs to (see the module docs). Any byte
/// sequence is accepted; frames too short to parse hash by whatever MACs they have.
pub fn flow_hash(inner_frame: &[u8]) -> u32 {
    match IpLayout::parse(inner_frame) {
        Ok(Some(ip)) => {
            let mut h = 0x5745_4654; // "WEFT": IP flows
            for chunk in ip.addresses(inner_frame).chunks(8) {
                h = mix(h, word(chunk));
            }
            let ports = if PORTED.contains(&ip.protocol) && !ip.fragment {
                inner_frame.get(ip.l4..ip.l4 + 4).map_or(0, |p| {
                    u64::from(u32::from_be_bytes([p[0], p[1], p[2], p[3]]))
                })
            } else {
                0
            };
            finish(mix(h, u64::from(ip.protocol) << 32 | ports))
        }
        _ => {
            let (dst, src) = macs(inner_frame);
            let ethertype = inner_frame.get(12..14).map_or(0, word) >> 48;
            let h = mix(0x4c32, word(&dst.0) | ethertype);
            finish(mix(h, word(&src.0)))
        }
    }
}

/// Maps a flow hash onto `ports` (inclusive) as `udp_flow_src_port` does: fold the high
/// half into the low, then scale, so every port of the range is equally likely.
pub fn source_port(hash: u32, ports: RangeInclusive<u16>) -> u16 {
    let (lo, hi) = (*ports.start(), *ports.end());
    if hi <= lo {
        return lo;
    }
    let folded = hash ^ (hash << 16);
    let span = u64::from(hi - lo) + 1;
    lo + ((u64::from(folded) * span) >> 32) as u16
}

/// Picks one of `n` items (e.g. send sockets) for a flow hash by multiply-shift: uniform,
/// no division, and a flow always gets the same item. `n` of 0 yields 0.
pub fn spread(hash: u32, n: usize) -> usize {
    let index = (u64::from(hash) * n as u64) >> 32;
    usize::try_from(index).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{FrameSpec, pattern, tcp_frame, udp_frame};

    #[test]
    fn stable_per_flow_whatever_the_payload() {
        let spec = FrameSpec::v4();
        let a = flow_hash(&tcp_frame(&spec, &pattern(10)));
        let mut later = spec.clone();
        later.seq += 12345;
        later.flags |= wire::tcp::flags::PSH;
        assert_eq!(a, flow_hash(&tcp_frame(&later, &pattern(1400))));
        let mut other = spec.clone();
        other.src_port += 1;
        assert_ne!(a, flow_hash(&tcp_frame(&other, &pattern(10))));
        // TCP and UDP with the same ports are different flows.
        assert_ne!(a, flow_hash(&udp_frame(&spec, &pattern(10))));
        let v6 = FrameSpec::v6();
        assert_eq!(
            flow_hash(&tcp_frame(&v6, &[1])),
            flow_hash(&tcp_frame(&v6, &[2; 100]))
        );
    }

    #[test]
    fn fragments_of_a_datagram_hash_alike() {
        let spec = FrameSpec::v4();
        let mut first = udp_frame(&spec, &pattern(100));
        first[14 + 6] = 0x20; // MF, offset 0
        let mut middle = udp_frame(&spec, &pattern(100));
        middle[14 + 6] = 0x20;
        middle[14 + 7] = 0x10; // offset 16 × 8
        middle[34..38].copy_from_slice(&[9, 9, 9, 9]); // payload bytes where ports would be
        assert_eq!(flow_hash(&first), flow_hash(&middle));
    }

    #[test]
    fn non_ip_hashes_by_macs() {
        let mut arp = vec![0u8; 42];
        arp[..6].copy_from_slice(&[0xff; 6]);
        arp[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        let a = flow_hash(&arp);
        arp[30] = 7; // ARP body
        assert_eq!(a, flow_hash(&arp));
        arp[11] = 2;
        assert_ne!(a, flow_hash(&arp));
        // Garbage never panics.
        for n in 0..20 {
            let _ = flow_hash(&vec![0x45; n]);
        }
    }

    #[test]
    fn spreads_flows_evenly_over_ports() {
        const BUCKETS: usize = 64;
        const FLOWS: usize = 64 * 200;
        let mut buckets = [0usize; BUCKETS];
        let mut spec = FrameSpec::v4();
        for i in 0..FLOWS {
            spec.src_port = 30000 + (i % 1000) as u16;
            spec.host = (i / 1000) as u8 + 1;
            let port = source_port(flow_hash(&tcp_frame(&spec, &[])), DEFAULT_SOURCE_PORTS);
            assert!(DEFAULT_SOURCE_PORTS.contains(&port));
            let b = usize::from(port - 32768) * BUCKETS / (60999 - 32768 + 1);
            buckets[b] += 1;
        }
        // Mean 200 per bucket; a uniform hash stays well within ±35% (about 5 sigma).
        for (i, &n) in buckets.iter().enumerate() {
            assert!((130..=270).contains(&n), "bucket {i} has {n}");
        }
    }

    #[test]
    fn source_port_covers_the_range() {
        assert_eq!(source_port(0, 32768..=60999), 32768);
        assert_eq!(source_port(u32::MAX, 100..=100), 100);
        let (lo, hi) = (200, 100);
        assert_eq!(source_port(7, lo..=hi), 200);
        let mut seen = [false; 4];
        for h in 0..1000u32 {
            let p = source_port(h.wrapping_mul(0x9e37_79b9), 10..=13);
            seen[usize::from(p - 10)] = true;
        }
        assert_eq!(seen, [true; 4]);
    }
}
