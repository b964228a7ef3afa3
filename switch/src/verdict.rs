//! What the switch decided about a frame, and the named reasons it drops frames.
//!
//! Contract: every frame the switch does not deliver gets exactly one [`DropReason`], and
//! every reason has its own counter and a stable `name()` for status output and metrics.

/// The decision for one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Verdict {
    /// Send the frame, unchanged, to every port in `egress` (never empty).
    Forward,
    /// Send `reply[..n]` back out of the ingress port; the frame itself goes nowhere
    /// (an ARP request the switch answered).
    Reply(usize),
    /// Discard the frame, for the reason given.
    Drop(DropReason),
}

/// Why a frame was discarded. Each is counted separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The ingress port was never added (or was removed).
    UnknownPort,
    /// Shorter than an Ethernet header, or than its VLAN tag.
    Truncated,
    /// The source MAC is multicast or zero: no station sends from it. This includes weft's
    /// own data-path heartbeats (zero source, EtherType 0x88b5), which the dataplane
    /// consumes before the switch.
    InvalidSource,
    /// The destination is known to live on the ingress port itself.
    Hairpin,
    /// Split horizon: a frame from a peer is never sent on to another peer here.
    RemoteToRemote,
    /// IPv4 group traffic with no member port it may reach.
    NoGroupMembers,
    /// A flood with nowhere to go (the ingress is the network's only eligible port).
    NoEgress,
    /// An ARP frame that is not a well-formed Ethernet/IPv4 ARP packet.
    MalformedArp,
    /// An IPv4 multicast frame whose IPv4 header is broken.
    MalformedIpv4,
    /// An IGMP message that is truncated or fails its checksum.
    MalformedIgmp,
    /// 01:80:c2:00:00:0x (STP, LACP, 802.1X...): link-local to one segment; 802.1D bridges
    /// never forward these.
    BridgeReserved,
}

impl DropReason {
    /// Every reason, in counter order.
    pub const ALL: [Self; 11] = [
        Self::UnknownPort,
        Self::Truncated,
        Self::InvalidSource,
        Self::Hairpin,
        Self::RemoteToRemote,
        Self::NoGroupMembers,
        Self::NoEgress,
        Self::MalformedArp,
        Self::MalformedIpv4,
        Self::MalformedIgmp,
        Self::BridgeReserved,
    ];

    /// Stable snake_case name for status output and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Self::UnknownPort => "unknown_port",
            Self::Truncated => "truncated",
            Self::InvalidSource => "invalid_source",
            Self::Hairpin => "hairpin",
            Self::RemoteToRemote => "remote_to_remote",
            Self::NoGroupMembers => "no_group_members",
            Self::NoEgress => "no_egress",
            Self::MalformedArp => "malformed_arp",
            Self::MalformedIpv4 => "malformed_ipv4",
            Self::MalformedIgmp => "malformed_igmp",
            Self::BridgeReserved => "bridge_reserved",
        }
    }

    /// Position in [`DropReason::ALL`] and in the counter array.
    #[inline]
    fn index(self) -> usize {
        self as usize
    }
}

/// One counter per [`DropReason`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DropCounters([u64; DropReason::ALL.len()]);

impl DropCounters {
    /// Frames dropped for `reason`.
    pub fn get(&self, reason: DropReason) -> u64 {
        self.0.get(reason.index()).copied().unwrap_or(0)
    }

    /// Every reason with its count.
    pub fn iter(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL.iter().map(|&r| (r, self.get(r)))
    }

    /// Frames dropped for any reason.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    #[inline]
    pub(crate) fn add(&mut self, reason: DropReason) {
        if let Some(c) = self.0.get_mut(reason.index()) {
            *c += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_its_own_counter_and_name() {
        let mut c = DropCounters::default();
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
            for _ in 0..=i {
                c.add(*r);
            }
        }
        for (i, (r, n)) in c.iter().enumerate() {
            assert_eq!(n, i as u64 + 1, "{}", r.name());
        }
        let names: std::collections::HashSet<_> =
            DropReason::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(names.len(), DropReason::ALL.len());
    }
}
