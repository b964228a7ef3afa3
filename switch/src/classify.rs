//! Frame classification: the fixed-offset reads that decide which forwarding rule applies.
//!
//! Contract: [`classify`] reads only through `wire`'s length-checked views, never panics and
//! never allocates, whatever the bytes. It returns either the frame's class or the
//! [`DropReason`] that a malformed frame is dropped for. It knows nothing of ports or tables.
//!
//! Payloads are inspected only where a rule needs them: ARP (snooping and the proxy) and,
//! in IPv4 multicast frames, the IPv4 destination (group traffic is decided by the IP
//! group, not the MAC: 32 groups share each multicast MAC) and IGMP. VLAN-tagged frames
//! are switched by MAC alone: no payload inspection, any multicast floods.

use std::net::Ipv4Addr;

use wire::arp::ArpPacket;
use wire::igmp::IgmpMessage;
use wire::ipv4::{Ipv4Packet, protocol};
use wire::{EtherType, EthernetFrame, Mac};

use crate::verdict::DropReason;

/// A frame's addresses and the rule that applies to it.
#[derive(Debug, Clone, Copy)]
pub struct Classified<'a> {
    /// Destination MAC.
    pub dst: Mac,
    /// Source MAC (always a valid unicast source).
    pub src: Mac,
    /// What kind of frame it is.
    pub kind: FrameKind<'a>,
}

/// The forwarding rule a frame falls under.
#[derive(Debug, Clone, Copy)]
pub enum FrameKind<'a> {
    /// To one station (not ARP, or VLAN-tagged).
    Unicast,
    /// To everyone (not ARP, or VLAN-tagged).
    Broadcast,
    /// An untagged Ethernet/IPv4 ARP packet, broadcast or unicast.
    Arp {
        /// The ARP packet.
        packet: ArpPacket<'a>,
        /// Sent to ff:ff:ff:ff:ff:ff (a proxy candidate) rather than to one station.
        broadcast: bool,
    },
    /// An IGMP message in an IPv4 multicast frame: snooped, then flooded.
    Igmp {
        /// What it says.
        message: IgmpMessage,
        /// The IGMP bytes (for walking v3 records).
        bytes: &'a [u8],
    },
    /// IPv4 traffic to a group outside 224.0.0.0/24: for member ports only.
    Group {
        /// The group.
        group: Ipv4Addr,
    },
    /// Multicast that floods: 224.0.0.0/24, IPv6 (33:33), other multicast, anything tagged.
    FloodMulticast,
}

/// 01:80:c2:00:00:00..=0f, the IEEE 802.1D reserved link-local block.
#[inline]
fn is_bridge_reserved(mac: Mac) -> bool {
    let m = mac.0;
    m[0] == 0x01 && m[1] == 0x80 && m[2] == 0xc2 && m[3] == 0 && m[4] == 0 && m[5] <= 0x0f
}

/// 224.0.0.0/24: local network control, never routed, always flooded.
#[inline]
pub(crate) fn is_link_local_group(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    o[0] == 224 && o[1] == 0 && o[2] == 0
}

/// Classifies one Ethernet frame (no vnet header in front). See the module documentation.
#[inline]
pub fn classify(frame: &[u8]) -> Result<Classified<'_>, DropReason> {
    let eth = EthernetFrame::new(frame).map_err(|_| DropReason::Truncated)?;
    let (dst, src) = (eth.dst(), eth.src());
    if !src.is_valid_source() {
        return Err(DropReason::InvalidSource);
    }
    let tagged = eth.is_vlan_tagged();
    let kind = if dst.is_broadcast() {
        match arp(&eth, tagged)? {
            Some(packet) => FrameKind::Arp {
                packet,
                broadcast: true,
            },
            None => FrameKind::Broadcast,
        }
    } else if dst.is_multicast() {
        if is_bridge_reserved(dst) {
            return Err(DropReason::BridgeReserved);
        }
        if tagged || !dst.is_ipv4_multicast() || eth.ethertype() != EtherType::IPV4 {
            FrameKind::FloodMulticast
        } else {
            ipv4_multicast(eth.payload())?
        }
    } else {
        match arp(&eth, tagged)? {
            Some(packet) => FrameKind::Arp {
                packet,
                broadcast: false,
            },
            None => FrameKind::Unicast,
        }
    };
    Ok(Classified { dst, src, kind })
}

/// The ARP packet of an untagged ARP frame; `None` for anything else.
#[inline]
fn arp<'a>(eth: &EthernetFrame<'a>, tagged: bool) -> Result<Option<ArpPacket<'a>>, DropReason> {
    if tagged || eth.ethertype() != EtherType::ARP {
        return Ok(None);
    }
    ArpPacket::new(eth.payload())
        .map(Some)
        .map_err(|_| DropReason::MalformedArp)
}

/// Classifies the IPv4 packet of an untagged frame sent to an IPv4 multicast MAC.
fn ipv4_multicast(payload: &[u8]) -> Result<FrameKind<'_>, DropReason> {
    let ip = Ipv4Packet::new(payload).map_err(|_| DropReason::MalformedIpv4)?;
    if ip.protocol() == protocol::IGMP && ip.is_first_fragment() {
        let bytes = ip.payload();
        let message = IgmpMessage::parse(bytes).map_err(|_| DropReason::MalformedIgmp)?;
        return Ok(FrameKind::Igmp { message, bytes });
    }
    let group = ip.dst();
    if group.is_multicast() && !is_link_local_group(group) {
        Ok(FrameKind::Group { group })
    } else {
        Ok(FrameKind::FloodMulticast)
    }
}
