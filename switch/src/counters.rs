//! What the switch has done, for `weft status` and Prometheus.

use learning::{GroupCounters, MacCounters, NeighbourCounters};

use crate::verdict::DropCounters;

/// A snapshot of every switch counter, the tables' included. Monotonic since start.
///
/// Every frame is counted once: `frames` equals the sum of the six delivery counters
/// (`forwarded_unicast` to `arp_proxied`) plus `drops.total()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SwitchCounters {
    /// Frames handed to [`crate::Switch::handle_frame`].
    pub frames: u64,
    /// Known-unicast frames sent to their one port.
    pub forwarded_unicast: u64,
    /// Broadcast frames flooded in their network.
    pub flooded_broadcast: u64,
    /// Unicast frames to an unknown MAC flooded in their network.
    pub flooded_unknown_unicast: u64,
    /// Multicast flooded: link-local IPv4 groups (224.0.0.0/24), IGMP itself, IPv6 and
    /// other multicast, and all multicast when snooping is off.
    pub flooded_multicast: u64,
    /// IPv4 group frames sent to member ports only.
    pub multicast_to_members: u64,
    /// ARP requests the switch answered itself instead of flooding them.
    pub arp_proxied: u64,
    /// ARP requests that could have been answered but the reply buffer was too small
    /// (they were flooded instead).
    pub arp_proxy_no_room: u64,
    /// IGMP messages snooped.
    pub igmp_snooped: u64,
    /// IGMP general queries sent as querier (one per network per round).
    pub queries_sent: u64,
    /// Events not delivered because the event queue was full.
    pub events_lost: u64,
    /// Drops, one counter per reason.
    pub drops: DropCounters,
    /// The MAC table's counters (learned, moved, evicted, expired).
    pub macs: MacCounters,
    /// The neighbour table's counters.
    pub neighbours: NeighbourCounters,
    /// The group table's counters.
    pub groups: GroupCounters,
}
