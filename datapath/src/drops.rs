//! Every reason the data plane drops a frame or datagram, and every other event it counts,
//! each with a fixed slot in an array: counting is an index, not a map lookup (a drop any
//! sender to UDP 4789 can trigger costs a store), and status lists every reason, zeros
//! too, under names that never change.
//!
//! The cores' own reason enums are wrapped, not re-spelled: a VXLAN header the decoder
//! refuses counts as its [`VxlanError`], a frame too big for the path as its
//! [`PmtuDrop`]. The switch counts its own drops ([`switch::DropReason`]); status lists
//! both.

use tunnel::crypto::TunnelDrop;
use tunnel::crypto::datagram::{PushError, SendError};
use tunnel::crypto::session::SealError;
use tunnel::{HeartbeatError, PmtuDrop, SegmentError, VxlanError};

/// The data plane's own drop reasons, those no core owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OwnDrop {
    /// A local port handed over a frame larger than its receive slot, or a runt.
    PortFrameTruncated,
    /// A frame for a peer entry that is gone.
    NoPeer,
    /// The tunnel needs the peer's name, and it has none yet (a command-line peer whose
    /// heartbeats never answered).
    NoPeerName,
    /// No route to the peer (or the routes are not known yet).
    NoRoute,
    /// No path to the peer works, and none may be tried.
    NoPath,
    /// VXLAN chosen for a peer with no underlay address.
    NoVxlanAddress,
    /// VXLAN datagrams the kernel refused (counted per datagram, not per super-frame).
    VxlanSendFailed,
    /// A frame for the tunnel of a peer with no session.
    NoTunnelSession,
    /// Tunnel datagrams the kernel refused.
    TunnelSendFailed,
    /// A tunnel super-frame cut into records longer than a record can describe.
    TunnelSendFrameTooLarge,
    /// An ICMP "too big" answer that could not go back to its port.
    IcmpReplyUnsent,
    /// VXLAN from an address that is no peer of ours.
    VxlanUnknownPeer,
    /// Cleartext VXLAN from a peer that must use the encrypted tunnel (password set,
    /// subnet not trusted).
    VxlanNotAllowed,
    /// A tunnel frame whose origin or VNI has no port here.
    TunnelUnknownOrigin,
    /// Frames a local port refused (its queue was full, or it failed).
    PortSendFailed,
    /// Frames the kernel dropped at a local port before weft read them.
    PortKernel,
    /// Datagrams the kernel dropped on the VXLAN socket (receive buffer full).
    VxlanSocketOverflow,
    /// Datagrams the kernel dropped on the tunnel socket (receive buffer full).
    TunnelSocketOverflow,
}

tunnel::counted_reasons!(OwnDrop {
    PortFrameTruncated => "port_frame_truncated",
    NoPeer => "no_peer",
    NoPeerName => "no_peer_name",
    NoRoute => "no_route",
    NoPath => "no_path",
    NoVxlanAddress => "no_vxlan_address",
    VxlanSendFailed => "vxlan_send_failed",
    NoTunnelSession => "no_tunnel_session",
    TunnelSendFailed => "tunnel_send_failed",
    TunnelSendFrameTooLarge => "tunnel_send_frame_too_large",
    IcmpReplyUnsent => "icmp_reply_unsent",
    VxlanUnknownPeer => "vxlan_unknown_peer",
    VxlanNotAllowed => "vxlan_not_allowed",
    TunnelUnknownOrigin => "tunnel_unknown_origin",
    PortSendFailed => "port_send_failed",
    PortKernel => "port_kernel",
    VxlanSocketOverflow => "vxlan_socket_overflow",
    TunnelSocketOverflow => "tunnel_socket_overflow",
});

/// Why the data plane dropped something: a core's reason, or its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// A received datagram that is not VXLAN weft accepts.
    Vxlan(VxlanError),
    /// A received tunnel datagram (or a frame in it) refused.
    Tunnel(TunnelDrop),
    /// A super-frame that could not be cut for the path.
    Segment(SegmentError),
    /// A tunnel datagram that could not be sealed.
    Seal(SealError),
    /// A frame that could not join a tunnel datagram.
    Push(PushError),
    /// A heartbeat that could not be read or written.
    Heartbeat(HeartbeatError),
    /// A frame too big for the path that may not be answered with ICMP.
    Pmtu(PmtuDrop),
    /// The data plane's own.
    Own(OwnDrop),
}

/// The name tables of [`DropReason`]'s groups, in index order.
const GROUPS: [&[&str]; 8] = [
    VxlanError::NAMES,
    TunnelDrop::NAMES,
    SegmentError::NAMES,
    SealError::NAMES,
    PushError::NAMES,
    HeartbeatError::NAMES,
    PmtuDrop::NAMES,
    OwnDrop::NAMES,
];

/// Where each group's slots start in the counter array.
const OFFSETS: [usize; 8] = {
    let mut o = [0; 8];
    let mut i = 1;
    while i < o.len() {
        o[i] = o[i - 1] + GROUPS[i - 1].len();
        i += 1;
    }
    o
};

impl DropReason {
    /// How many reasons there are (the counter array's length).
    pub const COUNT: usize = OFFSETS[7] + GROUPS[7].len();

    /// Its group (an index into `GROUPS`) and its index in the group.
    const fn slot(&self) -> (usize, usize) {
        match self {
            Self::Vxlan(e) => (0, e.index()),
            Self::Tunnel(e) => (1, e.index()),
            Self::Segment(e) => (2, e.index()),
            Self::Seal(e) => (3, e.index()),
            Self::Push(e) => (4, e.index()),
            Self::Heartbeat(e) => (5, e.index()),
            Self::Pmtu(e) => (6, e.index()),
            Self::Own(e) => (7, e.index()),
        }
    }

    /// Its counter slot.
    pub const fn index(&self) -> usize {
        let (group, i) = self.slot();
        OFFSETS[group] + i
    }

    /// Its stable counter name (status shows it as `drop.<name>`).
    pub const fn name(&self) -> &'static str {
        match self {
            Self::Vxlan(e) => e.name(),
            Self::Tunnel(e) => e.name(),
            Self::Segment(e) => e.name(),
            Self::Seal(e) => e.name(),
            Self::Push(e) => e.name(),
            Self::Heartbeat(e) => e.name(),
            Self::Pmtu(e) => e.name(),
            Self::Own(e) => e.name(),
        }
    }

    /// Every reason's name, in slot order.
    pub fn names() -> impl Iterator<Item = &'static str> {
        GROUPS.into_iter().flatten().copied()
    }
}

/// `From` for each wrapped reason enum, so `drops.bump(e)` takes a core's error as is.
macro_rules! wraps {
    ($($variant:ident($ty:ty)),+ $(,)?) => {
        $(impl From<$ty> for DropReason {
            fn from(e: $ty) -> Self {
                Self::$variant(e)
            }
        })+
    };
}

wraps!(
    Vxlan(VxlanError),
    Tunnel(TunnelDrop),
    Segment(SegmentError),
    Seal(SealError),
    Push(PushError),
    Heartbeat(HeartbeatError),
    Pmtu(PmtuDrop),
    Own(OwnDrop),
);

impl From<SendError> for DropReason {
    /// A failed tunnel send counts as the core reason beneath it.
    fn from(e: SendError) -> Self {
        match e {
            SendError::Segment(e) => Self::Segment(e),
            SendError::Seal(e) => Self::Seal(e),
            SendError::Heartbeat(e) => Self::Heartbeat(e),
            SendError::FrameTooLarge => Self::Own(OwnDrop::TunnelSendFrameTooLarge),
        }
    }
}

/// One counter per [`DropReason`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropCounters([u64; DropReason::COUNT]);

impl Default for DropCounters {
    fn default() -> Self {
        Self([0; DropReason::COUNT])
    }
}

impl DropCounters {
    /// Counts `n` drops for `reason`.
    #[inline]
    pub fn add(&mut self, reason: impl Into<DropReason>, n: u64) {
        if let Some(c) = self.0.get_mut(reason.into().index()) {
            *c += n;
        }
    }

    /// Counts one drop for `reason`.
    #[inline]
    pub fn bump(&mut self, reason: impl Into<DropReason>) {
        self.add(reason, 1);
    }

    /// Sets a count the kernel keeps for us (e.g. a socket's cumulative drops).
    pub fn set(&mut self, reason: impl Into<DropReason>, value: u64) {
        if let Some(c) = self.0.get_mut(reason.into().index()) {
            *c = value;
        }
    }

    /// Drops counted for `reason`.
    pub fn get(&self, reason: impl Into<DropReason>) -> u64 {
        self.0.get(reason.into().index()).copied().unwrap_or(0)
    }

    /// Every reason's name with its count, zeros too.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        DropReason::names().zip(self.0.iter().copied())
    }

    /// Drops for any reason.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
}

/// What the data plane counts besides drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Counter {
    /// Tunnel frames this router relayed on for others.
    RelayFrames,
    /// VXLAN datagrams that left in a `sendmmsg` with at least one other.
    VxlanBatchedDatagrams,
    /// Frames that shared a tunnel datagram with at least one other.
    TunnelPackedFrames,
    /// Receive errors on local ports.
    PortReceiveErrors,
    /// Receive errors on the VXLAN socket.
    VxlanReceiveErrors,
    /// Receive errors on the tunnel socket.
    TunnelReceiveErrors,
    /// VXLAN heartbeats that could not be encoded.
    HeartbeatEncodeErrors,
    /// VXLAN heartbeats the kernel refused.
    HeartbeatSendErrors,
    /// VXLAN pings sent.
    HeartbeatPingsSent,
    /// Tunnel heartbeats the kernel refused.
    TunnelHeartbeatSendErrors,
    /// Data-plane events lost because nobody drained them.
    EventsLost,
}

tunnel::counted_reasons!(Counter {
    RelayFrames => "relay.frames",
    VxlanBatchedDatagrams => "vxlan.batched_datagrams",
    TunnelPackedFrames => "tunnel.packed_frames",
    PortReceiveErrors => "engine.port_receive_errors",
    VxlanReceiveErrors => "engine.vxlan_receive_errors",
    TunnelReceiveErrors => "engine.tunnel_receive_errors",
    HeartbeatEncodeErrors => "engine.heartbeat_encode_errors",
    HeartbeatSendErrors => "engine.heartbeat_send_errors",
    HeartbeatPingsSent => "engine.heartbeat_pings_sent",
    TunnelHeartbeatSendErrors => "engine.tunnel_heartbeat_send_errors",
    EventsLost => "engine.events_lost",
});

/// One counter per [`Counter`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters([u64; Counter::COUNT]);

impl Counters {
    /// Counts `n` events.
    #[inline]
    pub fn add(&mut self, counter: Counter, n: u64) {
        if let Some(c) = self.0.get_mut(counter.index()) {
            *c += n;
        }
    }

    /// Counts one event.
    #[inline]
    pub fn bump(&mut self, counter: Counter) {
        self.add(counter, 1);
    }

    /// The count.
    pub fn get(&self, counter: Counter) -> u64 {
        self.0.get(counter.index()).copied().unwrap_or(0)
    }

    /// Every counter's full name (`group.name`) with its count, zeros too.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        Counter::NAMES.iter().copied().zip(self.0.iter().copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_group_lies_where_its_offset_says() {
        let names: Vec<_> = DropReason::names().collect();
        assert_eq!(names.len(), DropReason::COUNT);
        let samples = [
            DropReason::Vxlan(VxlanError::ReservedBitsSet),
            DropReason::Tunnel(TunnelDrop::UnknownSession(7)),
            DropReason::Segment(SegmentError::Fragment),
            DropReason::Seal(SealError::Crypto),
            DropReason::Push(PushError::FrameTooShort),
            DropReason::Heartbeat(HeartbeatError::Truncated),
            DropReason::Pmtu(PmtuDrop::NotIp),
            DropReason::Own(OwnDrop::TunnelSocketOverflow),
        ];
        for r in samples {
            assert_eq!(names[r.index()], r.name(), "{r:?}");
        }
        let unique: std::collections::HashSet<_> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "two reasons share a name");
    }

    #[test]
    fn counts_land_in_their_own_slot_and_every_reason_is_listed() {
        let mut c = DropCounters::default();
        c.bump(PmtuDrop::OversizedDatagrams);
        c.add(OwnDrop::VxlanSendFailed, 3);
        c.set(OwnDrop::VxlanSocketOverflow, 9);
        let listed: std::collections::BTreeMap<_, _> = c.iter().collect();
        assert_eq!(listed.len(), DropReason::COUNT);
        assert_eq!(listed["pmtu_oversized_datagrams"], 1);
        assert_eq!(listed["vxlan_send_failed"], 3);
        assert_eq!(listed["vxlan_socket_overflow"], 9);
        assert_eq!(listed["pmtu_not_ip"], 0);
        assert_eq!(c.total(), 13);
    }

    #[test]
    fn names_users_read_are_unchanged() {
        // Counter names the end-to-end tests, dashboards and DESIGN.md rely on.
        let names: Vec<_> = DropReason::names().collect();
        for old in [
            "vxlan_send_failed",
            "tunnel_send_failed",
            "tunnel_replayed",
            "vxlan_socket_overflow",
            "tunnel_socket_overflow",
            "port_kernel",
            "port_send_failed",
            "vxlan_reserved_bits",
            "vxlan_unknown_vni",
            "vxlan_unknown_peer",
            "vxlan_not_allowed",
            "tunnel_unknown_session",
            "tunnel_ttl_exceeded",
            "no_route",
        ] {
            assert!(names.contains(&old), "{old} is gone");
        }
        let counters: Vec<_> = Counter::NAMES.to_vec();
        for old in [
            "relay.frames",
            "vxlan.batched_datagrams",
            "tunnel.packed_frames",
        ] {
            assert!(counters.contains(&old), "{old} is gone");
        }
    }
}
