//! Every reason the receive side refuses a tunnel datagram or a frame inside one.
//!
//! One flat enum (boringtun's `WireGuardError` shape): each variant is a named, counted
//! drop (`name()` is the counter key) and never a panic. A datagram is refused as a whole
//! before decryption (header checks, replay pre-check) or at the tag check; a frame inside
//! an authentic datagram is refused on its own (malformed inner header, TTL exceeded).

/// Why a received tunnel datagram (or a frame in it) was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum TunnelDrop {
    /// Shorter than the clear header plus the tag: cannot be a tunnel datagram.
    #[error("tunnel datagram truncated")]
    Truncated,
    /// A header version this weft does not speak (the peer runs a newer weft).
    #[error("tunnel datagram version {0} not supported (this weft speaks version 1)")]
    UnsupportedVersion(u8),
    /// A message type this weft does not know.
    #[error("unknown tunnel datagram type {0}")]
    UnknownType(u8),
    /// The receiver session index names no session here (stale peer, or noise).
    #[error("tunnel datagram for unknown session index {0:#010x}")]
    UnknownSession(u32),
    /// A key epoch too far ahead of the current one to be a rekey.
    #[error("tunnel datagram from an unknown key epoch")]
    UnknownEpoch,
    /// A key epoch this side has already forgotten (a straggler past the grace period).
    #[error("tunnel datagram from a forgotten key epoch")]
    StaleEpoch,
    /// The epoch's key is older than the hard limit and the peer never rekeyed.
    #[error("tunnel key expired without a rekey")]
    KeyExpired,
    /// The counter was already accepted: a replay (or a duplicate from the network).
    #[error("replayed tunnel datagram")]
    Replayed,
    /// The counter lies behind the replay window: too old to tell whether it is a replay.
    #[error("tunnel datagram too old for the replay window")]
    TooOld,
    /// The counter is at the limit no honest sender reaches without rekeying.
    #[error("tunnel datagram counter beyond the rekey limit")]
    CounterLimit,
    /// The authentication tag did not verify: forged, tampered with, or keyed differently.
    #[error("tunnel datagram failed authentication (forged or tampered)")]
    BadTag,
    /// An authentic datagram whose inner frame headers or lengths are inconsistent.
    #[error("malformed frame inside a tunnel datagram")]
    MalformedFrame,
    /// A relayed frame whose TTL ran out: a routing loop, or a path longer than the TTL.
    #[error("relayed frame TTL exceeded")]
    TtlExceeded,
    /// An in-tunnel heartbeat that does not decode.
    #[error("malformed in-tunnel heartbeat")]
    MalformedHeartbeat,
}

crate::counted_reasons!(TunnelDrop {
    Truncated => "tunnel_truncated",
    UnsupportedVersion => "tunnel_unsupported_version",
    UnknownType => "tunnel_unknown_type",
    UnknownSession => "tunnel_unknown_session",
    UnknownEpoch => "tunnel_unknown_epoch",
    StaleEpoch => "tunnel_stale_epoch",
    KeyExpired => "tunnel_key_expired",
    Replayed => "tunnel_replayed",
    TooOld => "tunnel_too_old",
    CounterLimit => "tunnel_counter_limit",
    BadTag => "tunnel_bad_tag",
    MalformedFrame => "tunnel_malformed_frame",
    TtlExceeded => "tunnel_ttl_exceeded",
    MalformedHeartbeat => "tunnel_malformed_heartbeat",
});

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_are_unique_and_prefixed() {
        let all = [
            TunnelDrop::Truncated,
            TunnelDrop::UnsupportedVersion(2),
            TunnelDrop::UnknownType(9),
            TunnelDrop::UnknownSession(1),
            TunnelDrop::UnknownEpoch,
            TunnelDrop::StaleEpoch,
            TunnelDrop::KeyExpired,
            TunnelDrop::Replayed,
            TunnelDrop::TooOld,
            TunnelDrop::CounterLimit,
            TunnelDrop::BadTag,
            TunnelDrop::MalformedFrame,
            TunnelDrop::TtlExceeded,
            TunnelDrop::MalformedHeartbeat,
        ];
        let names: HashSet<_> = all.iter().map(TunnelDrop::name).collect();
        assert_eq!(names.len(), all.len());
        assert!(names.iter().all(|n| n.starts_with("tunnel_")));
    }
}
