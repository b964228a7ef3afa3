//! Test frames built with etherparse (an implementation independent of `wire`) and
//! small helpers over the simulator.

#![allow(dead_code, clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::net::{Ipv4Addr, Ipv6Addr};

use datapath::sim::{Received, Sim};
use etherparse::PacketBuilder;
use mesh::PeerName;
use tunnel::path::Path;
use wire::Mac;

/// Host `h`'s MAC on router `r`.
pub(crate) fn mac(r: usize, h: usize) -> Mac {
    Mac([0x0a, 0, 0, 0, r as u8, h as u8])
}

/// Host `h`'s IPv4 address on router `r`.
pub(crate) fn ip(r: usize, h: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 32, r as u8, h as u8 + 1)
}

/// Host `h`'s IPv6 address on router `r`.
pub(crate) fn ip6(r: usize, h: usize) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, r as u16, h as u16 + 1)
}

/// A UDP datagram from `from` to `to` ((router, host) pairs) in an Ethernet frame, its
/// payload `len` bytes starting with `seq` (DF set, as Linux sends UDP).
pub(crate) fn udp(from: (usize, usize), to: (usize, usize), seq: u32, len: usize) -> Vec<u8> {
    let mut payload = vec![0u8; len.max(4)];
    payload[..4].copy_from_slice(&seq.to_be_bytes());
    let builder = PacketBuilder::ethernet2(mac(from.0, from.1).0, mac(to.0, to.1).0)
        .ipv4(ip(from.0, from.1).octets(), ip(to.0, to.1).octets(), 64)
        .udp(5000, 6000);
    let mut frame = Vec::new();
    builder.write(&mut frame, &payload).expect("frame builds");
    frame
}

/// The same over IPv6.
pub(crate) fn udp6(from: (usize, usize), to: (usize, usize), len: usize) -> Vec<u8> {
    let payload = vec![0u8; len];
    let builder = PacketBuilder::ethernet2(mac(from.0, from.1).0, mac(to.0, to.1).0)
        .ipv6(ip6(from.0, from.1).octets(), ip6(to.0, to.1).octets(), 64)
        .udp(5000, 6000);
    let mut frame = Vec::new();
    builder.write(&mut frame, &payload).expect("frame builds");
    frame
}

/// A broadcast UDP datagram from `from`, payload starting with `seq`.
pub(crate) fn broadcast(from: (usize, usize), seq: u32) -> Vec<u8> {
    let builder = PacketBuilder::ethernet2(mac(from.0, from.1).0, [0xff; 6])
        .ipv4(ip(from.0, from.1).octets(), [255, 255, 255, 255], 64)
        .udp(5000, 6000);
    let mut frame = Vec::new();
    builder
        .write(&mut frame, &seq.to_be_bytes())
        .expect("frame builds");
    frame
}

/// The sequence number a test frame carries (its UDP payload's first 4 bytes).
pub(crate) fn seq_of(frame: &[u8]) -> Option<u32> {
    let sliced = etherparse::SlicedPacket::from_ethernet(frame).ok()?;
    let payload = match sliced.transport? {
        etherparse::TransportSlice::Udp(u) => u.payload().to_vec(),
        _ => return None,
    };
    Some(u32::from_be_bytes(payload.get(..4)?.try_into().ok()?))
}

/// The sequence numbers of what a host received, in order.
pub(crate) fn seqs(received: &[Received]) -> Vec<u32> {
    received.iter().filter_map(|r| seq_of(&r.frame)).collect()
}

/// Router `r`'s path to router `to`.
pub(crate) fn path(sim: &Sim, r: usize, to: usize) -> Path {
    let name = sim.router(to).name;
    sim.status(r)
        .peers
        .iter()
        .find(|p| p.name == Some(name))
        .map_or(Path::None, |p| p.path)
}

/// The neighbour router `r` relays frames for `to` through, if any.
pub(crate) fn via(sim: &Sim, r: usize, to: usize) -> Option<PeerName> {
    let name = sim.router(to).name;
    sim.status(r)
        .peers
        .iter()
        .find(|p| p.name == Some(name))
        .and_then(|p| p.via)
}

/// Router `r`'s counter or drop by its status name (`drop.x`, `relay.frames`...);
/// panics on a name that does not exist, so a misspelling cannot read as 0.
pub(crate) fn counter(sim: &Sim, r: usize, name: &str) -> u64 {
    sim.status(r)
        .named_counters()
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no counter named {name}"))
}
