//! Data-path heartbeats: the frames weft peers exchange inside VXLAN to prove the UDP
//! path works in both directions.
//!
//! A heartbeat is an inner Ethernet frame that no switch forwards: source and destination
//! MAC 00:00:00:00:00:00 (Linux's vxlan driver and bridge drop zero-source frames, so a
//! kernel VTEP peer ignores them), EtherType 0x88b5 (IEEE local experimental), then:
//!
//! ```text
//! offset  size  field
//!  0      4     magic "weft"
//!  4      1     version (1)
//!  5      1     kind: 1 ping, 2 pong
//!  6      6     sender: the sending router's peer name
//! 12      8     sequence number (big endian); a pong echoes the ping's
//! 20      8     timestamp: ns on the pinger's monotonic clock; a pong echoes it
//! 28      ..    zero padding (optional, to probe a path MTU)
//! ```
//!
//! Decoding is bounded: fixed offsets, every length checked, trailing padding ignored.

use wire::ethernet::{self, EtherType};
use wire::{Mac, ethernet::EthernetFrame};

/// First bytes of every heartbeat payload.
pub const MAGIC: [u8; 4] = *b"weft";

/// The format version this code writes and reads.
pub const VERSION: u8 = 1;

/// Payload bytes after the Ethernet header (before padding).
pub const PAYLOAD_LEN: usize = 28;

/// Smallest heartbeat frame: Ethernet header plus payload.
pub const MIN_FRAME_LEN: usize = ethernet::HEADER_LEN + PAYLOAD_LEN;

/// The EtherType heartbeats use.
pub const ETHERTYPE: EtherType = EtherType::LOCAL_EXPERIMENTAL;

/// Whether a heartbeat asks for an answer or is one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HeartbeatKind {
    /// "Are you there?": answer with a pong echoing sequence and timestamp.
    Ping,
    /// The answer to a ping.
    Pong,
}

impl HeartbeatKind {
    fn to_byte(self) -> u8 {
        match self {
            Self::Ping => 1,
            Self::Pong => 2,
        }
    }

    fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(Self::Ping),
            2 => Some(Self::Pong),
            _ => None,
        }
    }
}

/// One decoded heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Heartbeat {
    /// Ping or pong.
    pub kind: HeartbeatKind,
    /// Peer name of the router that sent this frame.
    pub sender: [u8; 6],
    /// The ping's sequence number (echoed in the pong).
    pub seq: u64,
    /// The pinger's send time in ns since its monitor started (echoed in the pong).
    pub timestamp_ns: u64,
}

/// Why a frame that claimed to be a heartbeat could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeartbeatError {
    /// Not a heartbeat at all (addresses, EtherType or magic differ).
    #[error("not a weft heartbeat frame")]
    NotHeartbeat,
    /// A heartbeat shorter than its fixed fields.
    #[error("heartbeat frame truncated")]
    Truncated,
    /// A version this router does not speak: the peer runs a newer weft.
    #[error("heartbeat version {0} not supported (this weft speaks version 1); upgrade weft")]
    UnsupportedVersion(u8),
    /// A kind byte that is neither ping nor pong.
    #[error("unknown heartbeat kind {0}")]
    UnknownKind(u8),
    /// The output buffer cannot hold the frame.
    #[error("buffer too small for the heartbeat frame")]
    BufferTooSmall,
}

crate::counted_reasons!(HeartbeatError {
    NotHeartbeat => "heartbeat_not_heartbeat",
    Truncated => "heartbeat_truncated",
    UnsupportedVersion => "heartbeat_unsupported_version",
    UnknownKind => "heartbeat_unknown_kind",
    BufferTooSmall => "heartbeat_buffer_too_small",
});

/// Whether `inner_frame` is a weft heartbeat (zero MACs, EtherType 0x88b5, magic): frames
/// that pass go to [`Heartbeat::decode`], never to a switch.
pub fn is_heartbeat(inner_frame: &[u8]) -> bool {
    let Ok(eth) = EthernetFrame::new(inner_frame) else {
        return false;
    };
    eth.dst() == Mac::ZERO
        && eth.src() == Mac::ZERO
        && !eth.is_vlan_tagged()
        && eth.ethertype() == ETHERTYPE
        && eth.payload().starts_with(&MAGIC)
}

impl Heartbeat {
    /// Writes this heartbeat as an inner Ethernet frame into `buf`, zero-padded to
    /// `pad_to` bytes if that is longer than [`MIN_FRAME_LEN`]; returns the frame length.
    pub fn encode(&self, pad_to: usize, buf: &mut [u8]) -> Result<usize, HeartbeatError> {
        let len = pad_to.max(MIN_FRAME_LEN);
        let f = buf.get_mut(..len).ok_or(HeartbeatError::BufferTooSmall)?;
        ethernet::write_header(f, Mac::ZERO, Mac::ZERO, ETHERTYPE)
            .map_err(|_| HeartbeatError::BufferTooSmall)?;
        let (_, p) = f.split_at_mut(ethernet::HEADER_LEN);
        p[0..4].copy_from_slice(&MAGIC);
        p[4] = VERSION;
        p[5] = self.kind.to_byte();
        p[6..12].copy_from_slice(&self.sender);
        p[12..20].copy_from_slice(&self.seq.to_be_bytes());
        p[20..28].copy_from_slice(&self.timestamp_ns.to_be_bytes());
        p[28..].fill(0);
        Ok(len)
    }

    /// Reads a heartbeat from an inner frame; trailing padding is ignored.
    pub fn decode(inner_frame: &[u8]) -> Result<Self, HeartbeatError> {
        if !is_heartbeat(inner_frame) {
            return Err(HeartbeatError::NotHeartbeat);
        }
        let p = inner_frame
            .get(ethernet::HEADER_LEN..MIN_FRAME_LEN)
            .ok_or(HeartbeatError::Truncated)?;
        let Some(&[_, _, _, _, version, kind]) = p.first_chunk::<6>() else {
            return Err(HeartbeatError::Truncated);
        };
        if version != VERSION {
            return Err(HeartbeatError::UnsupportedVersion(version));
        }
        let kind = HeartbeatKind::from_byte(kind).ok_or(HeartbeatError::UnknownKind(kind))?;
        let field = |at: usize| -> Result<[u8; 8], HeartbeatError> {
            p.get(at..at + 8)
                .and_then(|b| b.try_into().ok())
                .ok_or(HeartbeatError::Truncated)
        };
        let sender = p
            .get(6..12)
            .and_then(|b| b.try_into().ok())
            .ok_or(HeartbeatError::Truncated)?;
        Ok(Self {
            kind,
            sender,
            seq: u64::from_be_bytes(field(12)?),
            timestamp_ns: u64::from_be_bytes(field(20)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vxlan::{Vni, decap, encapsulate};

    fn ping() -> Heartbeat {
        Heartbeat {
            kind: HeartbeatKind::Ping,
            sender: [0x7e, 1, 2, 3, 4, 5],
            seq: 0x0102_0304_0506_0708,
            timestamp_ns: 987_654_321,
        }
    }

    #[test]
    fn round_trip_through_vxlan() {
        let mut inner = [0u8; 64];
        let n = ping().encode(0, &mut inner).unwrap();
        assert_eq!(n, MIN_FRAME_LEN);
        let mut dgram = [0u8; 80];
        let d = encapsulate(Vni::new(9).unwrap(), &inner[..n], &mut dgram).unwrap();
        let (_, frame) = decap(&dgram[..d]).unwrap();
        assert!(is_heartbeat(frame));
        assert_eq!(Heartbeat::decode(frame), Ok(ping()));
        let pong = Heartbeat {
            kind: HeartbeatKind::Pong,
            ..ping()
        };
        pong.encode(0, &mut inner).unwrap();
        assert_eq!(Heartbeat::decode(&inner[..n]), Ok(pong));
    }

    #[test]
    fn exact_layout() {
        let mut f = [0xaau8; MIN_FRAME_LEN];
        ping().encode(0, &mut f).unwrap();
        let mut expected = vec![0u8; 12];
        expected.extend_from_slice(&[0x88, 0xb5]);
        expected.extend_from_slice(b"weft");
        expected.extend_from_slice(&[1, 1, 0x7e, 1, 2, 3, 4, 5]);
        expected.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        expected.extend_from_slice(&987_654_321u64.to_be_bytes());
        assert_eq!(&f[..], &expected[..]);
    }

    #[test]
    fn padding_to_probe_size() {
        let mut f = vec![0xffu8; 1500];
        let n = ping().encode(1464, &mut f).unwrap();
        assert_eq!(n, 1464);
        assert!(f[MIN_FRAME_LEN..n].iter().all(|&b| b == 0));
        assert_eq!(f[n], 0xff);
        assert_eq!(Heartbeat::decode(&f[..n]), Ok(ping()));
        assert_eq!(
            ping().encode(1464, &mut [0u8; 1000]),
            Err(HeartbeatError::BufferTooSmall)
        );
        assert_eq!(
            ping().encode(0, &mut [0u8; 41]),
            Err(HeartbeatError::BufferTooSmall)
        );
    }

    #[test]
    fn rejections() {
        let mut f = [0u8; MIN_FRAME_LEN];
        ping().encode(0, &mut f).unwrap();
        for len in 0..MIN_FRAME_LEN {
            let r = Heartbeat::decode(&f[..len]);
            let expected = if len >= 18 {
                HeartbeatError::Truncated
            } else {
                HeartbeatError::NotHeartbeat
            };
            assert_eq!(r, Err(expected), "len {len}");
        }
        let with = |at: usize, v: u8| {
            let mut g = f;
            g[at] = v;
            g
        };
        // Any non-zero MAC byte, another EtherType or magic: not a heartbeat.
        for at in [0, 5, 6, 11, 12, 13, 14, 17] {
            let g = with(at, 0x01);
            assert!(!is_heartbeat(&g), "byte {at}");
            assert_eq!(Heartbeat::decode(&g), Err(HeartbeatError::NotHeartbeat));
        }
        assert_eq!(
            Heartbeat::decode(&with(18, 2)),
            Err(HeartbeatError::UnsupportedVersion(2))
        );
        assert_eq!(
            Heartbeat::decode(&with(19, 3)),
            Err(HeartbeatError::UnknownKind(3))
        );
        assert_eq!(
            Heartbeat::decode(&with(19, 0)),
            Err(HeartbeatError::UnknownKind(0))
        );
    }
}
