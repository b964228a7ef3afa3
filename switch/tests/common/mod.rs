//! Test frames built with smoltcp's `wire` (an implementation independent of `wire`) and a
//! small harness around one `Switch`.

#![allow(dead_code, clippy::expect_used)]

use std::net::Ipv4Addr;
use std::time::Instant;

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, IgmpPacket, IgmpRepr, IgmpVersion, IpProtocol, Ipv4Packet, Ipv4Repr, checksum,
};
use switch::{NetworkId, PortId, PortKind, Switch, SwitchConfig, Verdict};
use wire::Mac;

pub(crate) const NET_A: NetworkId = NetworkId(1);
pub(crate) const NET_B: NetworkId = NetworkId(2);

pub(crate) fn mac(n: u8) -> Mac {
    Mac([0x02, 0, 0, 0, 0, n])
}

pub(crate) fn ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 32, 0, n)
}

fn eth_addr(m: Mac) -> EthernetAddress {
    EthernetAddress(m.0)
}

/// An Ethernet frame with `payload_len` bytes of zero payload.
pub(crate) fn frame(dst: Mac, src: Mac, ethertype: u16, payload_len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; 14 + payload_len];
    EthernetRepr {
        src_addr: eth_addr(src),
        dst_addr: eth_addr(dst),
        ethertype: EthernetProtocol::from(ethertype),
    }
    .emit(&mut EthernetFrame::new_unchecked(&mut buf[..]));
    buf
}

/// A plain IPv4-ethertype unicast/broadcast frame of `len` bytes.
pub(crate) fn data(dst: Mac, src: Mac, len: usize) -> Vec<u8> {
    frame(dst, src, 0x0800, len.saturating_sub(14))
}

/// An ARP message in an Ethernet frame to `eth_dst`.
pub(crate) fn arp(
    eth_dst: Mac,
    op: ArpOperation,
    sender: (Mac, Ipv4Addr),
    target: (Mac, Ipv4Addr),
) -> Vec<u8> {
    let mut buf = frame(eth_dst, sender.0, 0x0806, 28);
    ArpRepr::EthernetIpv4 {
        operation: op,
        source_hardware_addr: eth_addr(sender.0),
        source_protocol_addr: sender.1,
        target_hardware_addr: eth_addr(target.0),
        target_protocol_addr: target.1,
    }
    .emit(&mut ArpPacket::new_unchecked(&mut buf[14..]));
    buf
}

/// A broadcast "who has `target`" from `sender`.
pub(crate) fn who_has(sender: (Mac, Ipv4Addr), target: Ipv4Addr) -> Vec<u8> {
    arp(
        Mac::BROADCAST,
        ArpOperation::Request,
        sender,
        (Mac::ZERO, target),
    )
}

/// An IPv4 packet with `protocol` and `payload` from `src` to `dst`, in a frame.
pub(crate) fn ipv4(
    eth_dst: Mac,
    eth_src: Mac,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: IpProtocol,
    payload: &[u8],
) -> Vec<u8> {
    let mut buf = frame(eth_dst, eth_src, 0x0800, 20 + payload.len());
    Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: protocol,
        payload_len: payload.len(),
        hop_limit: 1,
    }
    .emit(
        &mut Ipv4Packet::new_unchecked(&mut buf[14..]),
        &ChecksumCapabilities::default(),
    );
    buf[34..].copy_from_slice(payload);
    buf
}

/// UDP-ish traffic from `src` to IPv4 multicast `group` (to the group's MAC).
pub(crate) fn to_group(src: (Mac, Ipv4Addr), group: Ipv4Addr) -> Vec<u8> {
    ipv4(
        Mac::from_ipv4_multicast(group),
        src.0,
        src.1,
        group,
        IpProtocol::Udp,
        &[0u8; 16],
    )
}

fn igmp_frame(src: (Mac, Ipv4Addr), ip_dst: Ipv4Addr, igmp: &[u8]) -> Vec<u8> {
    ipv4(
        Mac::from_ipv4_multicast(ip_dst),
        src.0,
        src.1,
        ip_dst,
        IpProtocol::Igmp,
        igmp,
    )
}

/// An IGMPv2 membership report for `group` (sent to the group, as RFC 2236 says).
pub(crate) fn igmp_v2_report(src: (Mac, Ipv4Addr), group: Ipv4Addr) -> Vec<u8> {
    let mut igmp = [0u8; 8];
    IgmpRepr::MembershipReport {
        group_addr: group,
        version: IgmpVersion::Version2,
    }
    .emit(&mut IgmpPacket::new_unchecked(&mut igmp[..]));
    igmp_frame(src, group, &igmp)
}

/// An IGMPv2 leave for `group` (sent to 224.0.0.2).
pub(crate) fn igmp_v2_leave(src: (Mac, Ipv4Addr), group: Ipv4Addr) -> Vec<u8> {
    let mut igmp = [0u8; 8];
    IgmpRepr::LeaveGroup { group_addr: group }.emit(&mut IgmpPacket::new_unchecked(&mut igmp[..]));
    igmp_frame(src, Ipv4Addr::new(224, 0, 0, 2), &igmp)
}

/// An IGMPv3 report (to 224.0.0.22) with one record per `(record type, group)`, no sources.
pub(crate) fn igmp_v3_report(src: (Mac, Ipv4Addr), records: &[(u8, Ipv4Addr)]) -> Vec<u8> {
    let mut igmp = vec![0x22, 0, 0, 0, 0, 0];
    igmp.extend_from_slice(&(records.len() as u16).to_be_bytes());
    for (kind, group) in records {
        igmp.extend_from_slice(&[*kind, 0, 0, 0]);
        igmp.extend_from_slice(&group.octets());
    }
    let c = !checksum::data(&igmp);
    igmp[2..4].copy_from_slice(&c.to_be_bytes());
    igmp_frame(src, Ipv4Addr::new(224, 0, 0, 22), &igmp)
}

/// One switch, reusable egress/reply buffers, and a clock.
pub(crate) struct Harness {
    pub(crate) sw: Switch,
    pub(crate) now: Instant,
    pub(crate) egress: Vec<PortId>,
    pub(crate) reply: Vec<u8>,
}

impl Harness {
    pub(crate) fn new(config: SwitchConfig) -> Self {
        let now = Instant::now();
        Self {
            sw: Switch::new(config, now).expect("valid config"),
            now,
            egress: Vec::with_capacity(64),
            reply: vec![0u8; 1514],
        }
    }

    /// A switch with default config and `ports` as (id, network, kind).
    pub(crate) fn with_ports(ports: &[(u32, NetworkId, PortKind)]) -> Self {
        let mut h = Self::new(SwitchConfig::default());
        for &(p, n, k) in ports {
            h.sw.add_port(PortId(p), n, k);
        }
        h
    }

    pub(crate) fn send(&mut self, ingress: u32, frame: &[u8]) -> Verdict {
        self.sw.handle_frame(
            self.now,
            PortId(ingress),
            frame,
            &mut self.egress,
            &mut self.reply,
        )
    }

    /// The egress ports of the last verdict, as numbers.
    pub(crate) fn out(&self) -> Vec<u32> {
        self.egress.iter().map(|p| p.0).collect()
    }

    pub(crate) fn advance(&mut self, d: std::time::Duration) {
        self.now += d;
    }
}
