//! The tunnel datagram: what weft's encrypted UDP transport (port 6784) carries.
//!
//! One UDP datagram is a clear header, then the ChaCha20-Poly1305 ciphertext, then its tag:
//!
//! ```text
//! offset  size  field (clear, and authenticated as the AEAD's associated data)
//!  0      1     version (high nibble, 1) | type (low nibble: 1 frames, 2 heartbeat)
//!  1      1     key epoch: low 8 bits of the sender's epoch number
//!  2      1     flags: none defined in version 1 (sent 0, ignored on receipt)
//!  3      1     reserved (sent 0, ignored on receipt)
//!  4      4     receiver session index, little endian (the receiver's handshake choice)
//!  8      8     counter, little endian; the nonce is 4 zero bytes ‖ these 8 bytes
//! 16      n     ciphertext
//! 16+n    16    Poly1305 tag
//! ```
//!
//! A *frames* datagram's plaintext is one or more frame records back to back, exactly
//! filling it:
//!
//! ```text
//! offset  size  field
//!  0      6     origin peer name (the router that took the frame from a local port)
//!  6      6     destination peer name (the router that delivers it; relays forward)
//! 12      1     TTL: hops left; a relay decrements it and drops the frame at 0
//! 13      1     flags: bit 0 = DF, the origin wants "fragmentation needed" rather than
//!               fragmentation (authenticated, so an on-path router cannot flip it;
//!               relays send accordingly); other bits sent 0, ignored
//! 14      3     VNI of the frame's weft network, big endian
//! 17      2     Ethernet frame length, big endian (at least 14)
//! 19      len   the Ethernet frame
//! ```
//!
//! A *heartbeat* datagram's plaintext is exactly the inner frame of a VXLAN-path heartbeat
//! ([`crate::heartbeat`]: zero MACs, EtherType 0x88b5, ping/pong fields, optional padding
//! to probe the path MTU), so the tunnel path is monitored by the same [`PathMonitor`]
//! logic, and a forged pong cannot keep a dead tunnel "up".
//!
//! Sending: [`DatagramBuilder`] packs frames for one peer into a datagram up to a size
//! limit (the path MTU) and seals it in place; [`seal_super_frame`] cuts one TSO
//! super-frame into equal-stride sealed datagrams in one buffer, ready for one UDP GSO
//! send. Receiving: [`TunnelSession::open`], then [`frames`] iterates the records
//! (bounds-checked; an inconsistent record ends the datagram with a named drop).
//!
//! [`PathMonitor`]: crate::monitor::PathMonitor
//! [`TunnelSession::open`]: super::session::TunnelSession::open

use std::ops::Range;
use std::time::Instant;

use wire::VnetHdr;
use wire::ethernet;

use super::drop_reason::TunnelDrop;
use super::session::{SealError, TunnelSession};
use crate::heartbeat::{self, Heartbeat, HeartbeatError};
use crate::layout::IpLayout;
use crate::offload::{SegmentError, Segmented, segment_with_trailer};
use crate::vxlan::{MIN_OVERLAY_MTU, Underlay, Vni};

/// The format version in every clear header.
pub const VERSION: u8 = 1;

/// The tunnel's default UDP port (Weave's sleeve used 6783; weft's TCP control port is
/// 6783, so the tunnel takes the next one).
pub const DEFAULT_PORT: u16 = 6784;

/// Length of the clear header.
pub const HEADER_LEN: usize = 16;

/// Length of the Poly1305 tag after the ciphertext.
pub const TAG_LEN: usize = 16;

/// Length of a frame record's header inside the ciphertext.
pub const FRAME_HEADER_LEN: usize = 19;

/// Hop budget a frame starts with: far more than any sane relay path, small enough that a
/// routing loop dies quickly.
pub const DEFAULT_TTL: u8 = 16;

/// Bytes the encrypted path adds around an inner IP packet over an IPv4 underlay: outer
/// IPv4 20 + UDP 8 + clear header 16 + frame header 19 + tag 16 + inner Ethernet 14.
/// Like [`crate::vxlan::OVERHEAD_V4`] it counts the inner Ethernet header, so the overlay
/// MTU of the encrypted path is the underlay MTU minus this (1500 → 1407).
pub const TUNNEL_OVERHEAD: usize = 20 + 8 + HEADER_LEN + FRAME_HEADER_LEN + TAG_LEN + 14;

/// The same over an IPv6 underlay (outer header 40): 1500 → 1387.
pub const TUNNEL_OVERHEAD_V6: usize = TUNNEL_OVERHEAD + 20;

/// Datagram bytes around the frames: clear header and tag.
const FIXED_OVERHEAD: usize = HEADER_LEN + TAG_LEN;

/// The encrypted path's overhead on `underlay`.
pub fn overhead(underlay: Underlay) -> usize {
    match underlay {
        Underlay::V4 => TUNNEL_OVERHEAD,
        Underlay::V6 => TUNNEL_OVERHEAD_V6,
    }
}

/// The default overlay MTU of the encrypted path over an underlay path of `underlay_mtu`
/// bytes, or `None` when that leaves less than a minimal IPv4 packet.
pub fn overlay_mtu(underlay: Underlay, underlay_mtu: usize) -> Option<usize> {
    underlay_mtu
        .checked_sub(overhead(underlay))
        .filter(|&mtu| mtu >= MIN_OVERLAY_MTU)
}

/// What a datagram's plaintext holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DatagramKind {
    /// Frame records.
    Frames,
    /// One heartbeat frame.
    Heartbeat,
}

impl DatagramKind {
    fn to_nibble(self) -> u8 {
        match self {
            Self::Frames => 1,
            Self::Heartbeat => 2,
        }
    }

    fn from_nibble(n: u8) -> Option<Self> {
        match n {
            1 => Some(Self::Frames),
            2 => Some(Self::Heartbeat),
            _ => None,
        }
    }
}

/// The clear header's fields (see the module docs for the layout).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClearHeader {
    /// What the plaintext holds.
    pub kind: DatagramKind,
    /// Low 8 bits of the sender's key epoch.
    pub epoch: u8,
    /// The receiver's session index.
    pub receiver_index: u32,
    /// The sender's per-epoch datagram counter (the nonce).
    pub counter: u64,
}

impl ClearHeader {
    /// Writes the header into `head` (exactly [`HEADER_LEN`] bytes; a shorter or longer
    /// slice is left untouched) and returns the bytes, which are also the AEAD's AAD.
    pub fn write(&self, head: &mut [u8]) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0] = (VERSION << 4) | self.kind.to_nibble();
        h[1] = self.epoch;
        h[4..8].copy_from_slice(&self.receiver_index.to_le_bytes());
        h[8..16].copy_from_slice(&self.counter.to_le_bytes());
        if head.len() == HEADER_LEN {
            head.copy_from_slice(&h);
        }
        h
    }

    /// Reads the header at the start of `datagram`.
    pub fn parse(datagram: &[u8]) -> Result<Self, TunnelDrop> {
        let Some(h) = datagram.first_chunk::<HEADER_LEN>() else {
            return Err(TunnelDrop::Truncated);
        };
        let version = h[0] >> 4;
        if version != VERSION {
            return Err(TunnelDrop::UnsupportedVersion(version));
        }
        let kind = DatagramKind::from_nibble(h[0] & 0x0f).ok_or(TunnelDrop::UnknownType(h[0]))?;
        let mut index = [0u8; 4];
        index.copy_from_slice(&h[4..8]);
        let mut counter = [0u8; 8];
        counter.copy_from_slice(&h[8..16]);
        Ok(Self {
            kind,
            epoch: h[1],
            receiver_index: u32::from_le_bytes(index),
            counter: u64::from_le_bytes(counter),
        })
    }
}

/// Flags of a frame record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct FrameFlags(u8);

impl FrameFlags {
    /// The origin wants this frame sent with DF (IPv4 DF set, or IPv6): a hop that cannot
    /// carry it must answer "fragmentation needed"/"packet too big", never fragment.
    pub const DONT_FRAGMENT: Self = Self(0x01);

    /// No flags.
    pub const NONE: Self = Self(0);

    /// A broadcast carried to its destination through a relay, because the destination is
    /// a child in the origin's broadcast tree whose own link from the sender carries no
    /// data: the destination delivers it and forwards it down the tree as if it had come
    /// straight from its parent. A router that does not know the flag only delivers it.
    pub const SUBTREE: Self = Self(0x02);

    /// These flags and `other`'s.
    pub fn with(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// These flags without `other`'s.
    pub fn without(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }

    /// The flags for an outgoing Ethernet `frame` judged from its IP header.
    pub fn for_frame(frame: &[u8]) -> Self {
        match IpLayout::parse(frame) {
            Ok(Some(l)) if l.dont_fragment => Self::DONT_FRAGMENT,
            _ => Self::NONE,
        }
    }

    /// Whether every flag in `other` is set.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// The raw byte.
    pub fn bits(self) -> u8 {
        self.0
    }

    /// Flags from a received byte; unknown bits are kept (and ignored).
    pub fn from_bits(bits: u8) -> Self {
        Self(bits)
    }
}

/// A frame record's header: who the frame is from and for, and how far it may still go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameHeader {
    /// Peer name of the router that captured the frame.
    pub origin: [u8; 6],
    /// Peer name of the router that delivers it.
    pub destination: [u8; 6],
    /// Hops left.
    pub ttl: u8,
    /// DF, SUBTREE and future flags.
    pub flags: FrameFlags,
    /// The weft network the frame belongs to.
    pub vni: Vni,
}

impl FrameHeader {
    /// The header bytes for a frame of `frame_len` bytes.
    pub fn encode(&self, frame_len: u16) -> [u8; FRAME_HEADER_LEN] {
        let mut h = [0u8; FRAME_HEADER_LEN];
        h[0..6].copy_from_slice(&self.origin);
        h[6..12].copy_from_slice(&self.destination);
        h[12] = self.ttl;
        h[13] = self.flags.bits();
        h[14..17].copy_from_slice(&self.vni.get().to_be_bytes()[1..]);
        h[17..19].copy_from_slice(&frame_len.to_be_bytes());
        h
    }

    /// Reads a record header, returning it with the frame length it announces.
    fn decode(h: &[u8; FRAME_HEADER_LEN]) -> Option<(Self, usize)> {
        let mut origin = [0u8; 6];
        origin.copy_from_slice(&h[0..6]);
        let mut destination = [0u8; 6];
        destination.copy_from_slice(&h[6..12]);
        let vni = Vni::new(u32::from_be_bytes([0, h[14], h[15], h[16]]))?;
        let len = usize::from(u16::from_be_bytes([h[17], h[18]]));
        Some((
            Self {
                origin,
                destination,
                ttl: h[12],
                flags: FrameFlags::from_bits(h[13]),
                vni,
            },
            len,
        ))
    }

    /// The header a relay forwards the frame with: TTL one lower, or
    /// [`TunnelDrop::TtlExceeded`] when no hop is left.
    pub fn relayed(&self) -> Result<Self, TunnelDrop> {
        match self.ttl {
            0 | 1 => Err(TunnelDrop::TtlExceeded),
            ttl => Ok(Self {
                ttl: ttl - 1,
                ..*self
            }),
        }
    }
}

/// Iterates the frame records of an opened frames datagram: `Ok((header, frame))` per
/// record; a record that does not fit (or a frame shorter than an Ethernet header) yields
/// one `Err(MalformedFrame)` and ends the iteration (records before it are good: they
/// authenticated with it).
#[derive(Debug, Clone)]
pub struct Frames<'a> {
    rest: &'a [u8],
    failed: bool,
}

/// The frame records in `plaintext` (an opened [`DatagramKind::Frames`] datagram).
pub fn frames(plaintext: &[u8]) -> Frames<'_> {
    Frames {
        rest: plaintext,
        failed: false,
    }
}

impl<'a> Iterator for Frames<'a> {
    type Item = Result<(FrameHeader, &'a [u8]), TunnelDrop>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        let record = self
            .rest
            .split_first_chunk::<FRAME_HEADER_LEN>()
            .and_then(|(h, tail)| {
                let (header, len) = FrameHeader::decode(h)?;
                if len < ethernet::HEADER_LEN {
                    return None;
                }
                let (frame, rest) = tail.split_at_checked(len)?;
                Some((header, frame, rest))
            });
        match record {
            Some((header, frame, rest)) => {
                self.rest = rest;
                Some(Ok((header, frame)))
            }
            None => {
                self.failed = true;
                Some(Err(TunnelDrop::MalformedFrame))
            }
        }
    }
}

/// Why a frame could not join a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// The datagram has no room left for this frame: seal it and start another.
    #[error("datagram full")]
    Full,
    /// The frame cannot fit even an empty datagram under the limit (PMTU should have
    /// caught it), or exceeds the 65535-byte record length.
    #[error("frame too large for a tunnel datagram under the path MTU")]
    FrameTooLarge,
    /// Shorter than an Ethernet header: not a frame.
    #[error("frame shorter than an Ethernet header")]
    FrameTooShort,
    /// The virtio header's checksum offsets lie outside the frame.
    #[error("checksum offsets outside the frame")]
    BadChecksumOffsets,
}

crate::counted_reasons!(PushError {
    Full => "tunnel_push_full",
    FrameTooLarge => "tunnel_push_frame_too_large",
    FrameTooShort => "tunnel_push_frame_too_short",
    BadChecksumOffsets => "tunnel_push_bad_checksum_offsets",
});

/// Why a datagram batch could not be produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The super-frame could not be segmented.
    #[error(transparent)]
    Segment(#[from] SegmentError),
    /// Sealing failed.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// A segment or frame longer than a record can describe.
    #[error("frame too large for a tunnel datagram")]
    FrameTooLarge,
    /// The heartbeat could not be encoded.
    #[error(transparent)]
    Heartbeat(#[from] HeartbeatError),
}

impl SendError {
    /// A stable counter name for this failure.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Segment(e) => e.name(),
            Self::Seal(e) => e.name(),
            Self::FrameTooLarge => "tunnel_send_frame_too_large",
            Self::Heartbeat(e) => e.name(),
        }
    }
}

/// Packs frames for one peer into one datagram at the end of a caller's buffer, then
/// seals it in place. Datagrams for a `sendmmsg` batch go back to back in one buffer:
/// begin, push until [`PushError::Full`], seal, begin the next. Dropping a builder
/// without sealing removes its partial datagram from the buffer.
#[derive(Debug)]
pub struct DatagramBuilder<'a> {
    out: &'a mut Vec<u8>,
    start: usize,
    limit: usize,
    frames: usize,
    sealed: bool,
}

impl<'a> DatagramBuilder<'a> {
    /// Starts a datagram of at most `max_len` bytes (the UDP payload the path carries:
    /// path MTU − outer IP − UDP) at the end of `out`.
    pub fn begin(out: &'a mut Vec<u8>, max_len: usize) -> Self {
        let start = out.len();
        out.resize(start + HEADER_LEN, 0);
        Self {
            out,
            start,
            limit: max_len,
            frames: 0,
            sealed: false,
        }
    }

    /// Adds one frame record.
    pub fn push_frame(&mut self, header: &FrameHeader, frame: &[u8]) -> Result<(), PushError> {
        let len = record_fits(frame, self.len(), self.limit)?;
        self.out.extend_from_slice(&header.encode(len));
        self.out.extend_from_slice(frame);
        self.frames += 1;
        Ok(())
    }

    /// Frames pushed so far.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// The datagram's length once sealed, with what has been pushed so far.
    pub fn len(&self) -> usize {
        self.out.len() - self.start + TAG_LEN
    }

    /// Whether no frame has been pushed.
    pub fn is_empty(&self) -> bool {
        self.frames == 0
    }

    /// Seals the datagram with `session` and returns where it lies in the buffer.
    pub fn seal(
        mut self,
        session: &mut TunnelSession,
        now: Instant,
    ) -> Result<Range<usize>, SealError> {
        let start = self.start;
        self.out.resize(self.out.len() + TAG_LEN, 0);
        let end = self.out.len();
        let dgram = self.out.get_mut(start..).ok_or(SealError::BufferTooShort)?;
        session.seal(now, DatagramKind::Frames, dgram)?;
        self.sealed = true;
        Ok(start..end)
    }
}

impl Drop for DatagramBuilder<'_> {
    fn drop(&mut self) {
        if !self.sealed {
            self.out.truncate(self.start);
        }
    }
}

/// Checks that a record for `frame` fits a datagram of `len` bytes so far (tag included)
/// under `limit`, and returns the record's length field.
fn record_fits(frame: &[u8], len: usize, limit: usize) -> Result<u16, PushError> {
    if frame.len() < ethernet::HEADER_LEN {
        return Err(PushError::FrameTooShort);
    }
    let field = u16::try_from(frame.len()).map_err(|_| PushError::FrameTooLarge)?;
    let record = FRAME_HEADER_LEN + frame.len();
    if FIXED_OVERHEAD + record > limit {
        return Err(PushError::FrameTooLarge);
    }
    if len + record > limit {
        return Err(PushError::Full);
    }
    Ok(field)
}

/// The longest datagram the encrypted path sends for an overlay MTU: one frame whose inner
/// IP packet is `overlay_mtu` bytes. Small frames are packed up to this length, so packing
/// never makes a datagram the path would not carry.
pub fn max_datagram_len(overlay_mtu: usize) -> usize {
    FIXED_OVERHEAD + FRAME_HEADER_LEN + ethernet::HEADER_LEN + overlay_mtu
}

/// Frames for one peer gathered across calls into one datagram that is sealed and sent
/// when the sender's batch ends or the next frame does not fit: a burst of small frames
/// (ACKs, 64-byte UDP, ARP) costs one seal and one send per datagram, not per frame. It is
/// [`DatagramBuilder`] with its own buffer, so it can outlive the call that started it.
#[derive(Debug, Default)]
pub struct FramePacker {
    buf: Vec<u8>,
    frames: usize,
}

impl FramePacker {
    /// Adds one frame record to a datagram of at most `max_len` bytes, finishing the
    /// frame's checksum on the way when `vnet` leaves it partial (the peer's kernel
    /// will not). On an error nothing was added.
    pub fn push_frame(
        &mut self,
        header: &FrameHeader,
        vnet: &VnetHdr,
        frame: &[u8],
        max_len: usize,
    ) -> Result<(), PushError> {
        if self.frames == 0 {
            self.buf.clear();
            self.buf.resize(HEADER_LEN, 0);
        }
        let field = record_fits(frame, self.buf.len() + TAG_LEN, max_len)?;
        let start = self.buf.len();
        self.buf.extend_from_slice(&header.encode(field));
        self.buf.extend_from_slice(frame);
        if vnet.needs_csum() {
            let copy = self
                .buf
                .get_mut(start + FRAME_HEADER_LEN..)
                .unwrap_or_default();
            if vnet.complete_checksum(copy).is_err() {
                self.buf.truncate(start);
                return Err(PushError::BadChecksumOffsets);
            }
        }
        self.frames += 1;
        Ok(())
    }

    /// Frames waiting.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// Whether no frame is waiting.
    pub fn is_empty(&self) -> bool {
        self.frames == 0
    }

    /// Seals the waiting frames into one datagram with `session` and returns it (valid
    /// until the next push). The packer is empty afterwards, also when sealing fails: the
    /// caller counts those frames as dropped.
    pub fn seal(&mut self, session: &mut TunnelSession, now: Instant) -> Result<&[u8], SealError> {
        self.frames = 0;
        self.buf.resize(self.buf.len() + TAG_LEN, 0);
        session.seal(now, DatagramKind::Frames, &mut self.buf)?;
        Ok(&self.buf)
    }
}

/// Appends a sealed heartbeat datagram to `out` (the heartbeat frame padded to `pad_to`
/// bytes, as [`Heartbeat::encode`] does) and returns where it lies.
pub fn seal_heartbeat(
    session: &mut TunnelSession,
    now: Instant,
    heartbeat: &Heartbeat,
    pad_to: usize,
    out: &mut Vec<u8>,
) -> Result<Range<usize>, SendError> {
    let start = out.len();
    let frame_len = pad_to.max(heartbeat::MIN_FRAME_LEN);
    out.resize(start + HEADER_LEN + frame_len + TAG_LEN, 0);
    let result = (|| {
        let dgram = out.get_mut(start..).ok_or(SealError::BufferTooShort)?;
        let body = dgram
            .get_mut(HEADER_LEN..HEADER_LEN + frame_len)
            .ok_or(SealError::BufferTooShort)?;
        heartbeat.encode(pad_to, body)?;
        session.seal(now, DatagramKind::Heartbeat, dgram)?;
        Ok(start..out.len())
    })();
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// Decodes the heartbeat of an opened [`DatagramKind::Heartbeat`] datagram.
pub fn parse_heartbeat(plaintext: &[u8]) -> Result<Heartbeat, TunnelDrop> {
    Heartbeat::decode(plaintext).map_err(|_| TunnelDrop::MalformedHeartbeat)
}

/// Cuts one outgoing frame for one peer (a TSO/USO super-frame, or a single frame whose
/// checksum `vnet` leaves unfinished) into sealed datagrams in `out` (cleared first):
/// `count` datagrams of `stride` bytes back to back (the last may be shorter), each one
/// frame record whose inner IP packet is at most `overlay_mtu` bytes, ready for one UDP
/// GSO send with `segment_size = stride`. Every datagram gets its own counter.
pub fn seal_super_frame(
    session: &mut TunnelSession,
    now: Instant,
    vnet: &VnetHdr,
    frame: &[u8],
    header: &FrameHeader,
    overlay_mtu: usize,
    out: &mut Vec<u8>,
) -> Result<Segmented, SendError> {
    const PREFIX_LEN: usize = HEADER_LEN + FRAME_HEADER_LEN;
    let mut prefix = [0u8; PREFIX_LEN];
    prefix[HEADER_LEN..].copy_from_slice(&header.encode(0));
    let segmented = segment_with_trailer(vnet, frame, overlay_mtu, &prefix, TAG_LEN, out)?;
    let result = (|| {
        for dgram in out.chunks_mut(segmented.stride.max(1)) {
            let inner = dgram
                .len()
                .checked_sub(PREFIX_LEN + TAG_LEN)
                .and_then(|n| u16::try_from(n).ok())
                .ok_or(SendError::FrameTooLarge)?;
            if let Some(len_field) = dgram.get_mut(PREFIX_LEN - 2..PREFIX_LEN) {
                len_field.copy_from_slice(&inner.to_be_bytes());
            }
            session.seal(now, DatagramKind::Frames, dgram)?;
        }
        Ok(segmented)
    })();
    if result.is_err() {
        out.clear();
    }
    result
}

#[cfg(test)]
#[path = "datagram_tests.rs"]
mod tests;
