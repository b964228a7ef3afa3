//! Data-plane keys and the per peer pair AEAD session.
//!
//! [`TunnelKeys`] come out of the control-connection handshake: HKDF-SHA256 over Noise's
//! raw split, salted with the handshake hash, one key per direction, under labels distinct
//! from the control channel's (which uses the split keys as Noise defines them), so the
//! tunnel and control ciphers never share a key.
//!
//! [`TunnelSession`] seals and opens datagrams in place with `ring`'s ChaCha20-Poly1305:
//! nonce = 32 zero bits ‖ the 64-bit counter (little endian), AAD = the 16-byte clear
//! header. Every direction runs in *key epochs*: the sender moves from epoch n to n+1
//! after [`SessionConfig::rekey_after_time`] or [`SessionConfig::rekey_after_messages`],
//! deriving key n+1 = HKDF(key n) (a ratchet: old keys cannot be computed from new ones)
//! and restarting its counter. The epoch's low 8 bits travel in the clear header. The
//! receiver derives the next epochs (up to [`MAX_EPOCH_SKIP`] ahead) on demand, commits
//! to a new epoch only when a datagram of it authenticates, keeps the previous epoch for
//! [`SessionConfig::epoch_grace`] for reordered stragglers, then forgets it. A receiving
//! key that sees no rekey for [`SessionConfig::reject_after_time`] is refused
//! (WireGuard's REJECT_AFTER_TIME). Each epoch has its own [`ReplayWindow`], updated only
//! after the tag verified.
//!
//! Counter exhaustion: the sender rekeys at [`COUNTER_LIMIT`] whatever the configuration,
//! and the receiver refuses counters at or above it; running out of epochs (2^64) stops
//! sending with [`SealError::SessionExhausted`] (a new handshake is needed).
//!
//! The ratchet gives backward secrecy only: whoever holds key n can compute every later
//! key, so recovery from a key compromise needs a new handshake (a new control
//! connection). Per-datagram work allocates nothing; key derivation happens once per epoch.

use std::fmt;
use std::time::{Duration, Instant};

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf;

use super::datagram::{ClearHeader, DatagramKind, HEADER_LEN, TAG_LEN};
use super::drop_reason::TunnelDrop;
use super::replay::ReplayWindow;

/// Length of a tunnel key.
pub const KEY_LEN: usize = 32;

/// How many epochs ahead of its current one a receiver will derive keys for (the sender
/// rekeyed while every datagram of the epochs between was lost).
pub const MAX_EPOCH_SKIP: u8 = 4;

/// No counter at or above this is ever sent: the sender rekeys first (WireGuard's
/// REJECT_AFTER_MESSAGES, 2^64 − 2^13 − 1).
pub const COUNTER_LIMIT: u64 = u64::MAX - (1 << 13);

/// HKDF labels: every derived key has its own, so no two purposes share key material.
const LABEL_I2R: &[u8] = b"weft tunnel v1 initiator to responder";
const LABEL_R2I: &[u8] = b"weft tunnel v1 responder to initiator";
const LABEL_RATCHET: &[u8] = b"weft tunnel v1 next epoch";
const SALT_RATCHET: &[u8] = b"weft tunnel v1 ratchet";
const SALT_TESTING: &[u8] = b"weft tunnel v1 testing";

/// Timers and limits of a [`TunnelSession`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    /// The sender moves to the next key epoch after this long (WireGuard: 120 s).
    pub rekey_after_time: Duration,
    /// ... or after this many datagrams in one epoch (capped at [`COUNTER_LIMIT`]).
    pub rekey_after_messages: u64,
    /// A receiving epoch older than this (since this side first saw it) is refused:
    /// the peer should have rekeyed long before (WireGuard: 180 s).
    pub reject_after_time: Duration,
    /// How long a receiver keeps the previous epoch after the next one authenticated.
    pub epoch_grace: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            rekey_after_time: Duration::from_secs(120),
            rekey_after_messages: 1 << 60,
            reject_after_time: Duration::from_secs(180),
            epoch_grace: Duration::from_secs(10),
        }
    }
}

/// Why a datagram could not be sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The buffer cannot hold the clear header and the tag.
    #[error("datagram buffer shorter than the tunnel header and tag")]
    BufferTooShort,
    /// Every key epoch is used up (2^64 rekeys): the session must be replaced.
    #[error("tunnel session exhausted its key epochs; reconnect to run a new handshake")]
    SessionExhausted,
    /// `ring` refused a key or an operation (never expected with 32-byte keys).
    #[error("the crypto backend refused a tunnel operation")]
    Crypto,
}

crate::counted_reasons!(SealError {
    BufferTooShort => "seal_buffer_too_short",
    SessionExhausted => "seal_session_exhausted",
    Crypto => "seal_crypto",
});

/// The two data-plane keys of one side of a peer pair, fresh from a handshake.
#[derive(Clone, PartialEq, Eq)]
pub struct TunnelKeys {
    send: [u8; KEY_LEN],
    recv: [u8; KEY_LEN],
    authenticated: bool,
}

impl fmt::Debug for TunnelKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TunnelKeys")
            .field("authenticated", &self.authenticated)
            .finish_non_exhaustive()
    }
}

impl TunnelKeys {
    /// Derives both directions from a finished handshake: `split` is Noise's raw split
    /// (initiator→responder, responder→initiator), `handshake_hash` its transcript hash.
    pub(crate) fn from_handshake(
        split: &([u8; KEY_LEN], [u8; KEY_LEN]),
        handshake_hash: &[u8],
        initiator: bool,
        authenticated: bool,
    ) -> Option<Self> {
        let mut ikm = [0u8; 2 * KEY_LEN];
        ikm[..KEY_LEN].copy_from_slice(&split.0);
        ikm[KEY_LEN..].copy_from_slice(&split.1);
        let i2r = hkdf_sha256(handshake_hash, &ikm, LABEL_I2R)?;
        let r2i = hkdf_sha256(handshake_hash, &ikm, LABEL_R2I)?;
        let (send, recv) = if initiator { (i2r, r2i) } else { (r2i, i2r) };
        Some(Self {
            send,
            recv,
            authenticated,
        })
    }

    /// A matching pair of keys (initiator's, responder's) from a fixed secret, for tests,
    /// fuzzing and benchmarks that need a session without a handshake. Never use it for
    /// real traffic: the keys are only as secret as `secret`.
    pub fn pair_for_testing(secret: &[u8; KEY_LEN]) -> Option<(Self, Self)> {
        let a = hkdf_sha256(SALT_TESTING, secret, LABEL_I2R)?;
        let b = hkdf_sha256(SALT_TESTING, secret, LABEL_R2I)?;
        let ours = Self {
            send: a,
            recv: b,
            authenticated: false,
        };
        let theirs = Self {
            send: b,
            recv: a,
            authenticated: false,
        };
        Some((ours, theirs))
    }

    /// Whether the handshake that produced these keys was authenticated by the mesh
    /// password. Without one the tunnel stops passive capture only; `weft status` says so.
    pub fn authenticated(&self) -> bool {
        self.authenticated
    }
}

/// Datagram counts of one session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionCounters {
    /// Datagrams sealed.
    pub sealed: u64,
    /// Datagrams that authenticated and passed the replay window.
    pub opened: u64,
    /// Times the sending side moved to a new key epoch.
    pub send_rekeys: u64,
    /// Times the receiving side moved to a new key epoch.
    pub recv_rekeys: u64,
}

/// An authentic, fresh datagram, opened in place.
#[derive(Debug)]
pub struct Opened<'a> {
    /// What the plaintext holds.
    pub kind: DatagramKind,
    /// The sender's key epoch it was sealed under.
    pub epoch: u64,
    /// The decrypted payload (frames or a heartbeat), inside the caller's buffer.
    pub plaintext: &'a mut [u8],
}

/// One direction's key in one epoch.
struct EpochKey {
    epoch: u64,
    secret: [u8; KEY_LEN],
    key: LessSafeKey,
}

impl fmt::Debug for EpochKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EpochKey")
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

impl EpochKey {
    fn new(epoch: u64, secret: [u8; KEY_LEN]) -> Option<Self> {
        let key = UnboundKey::new(&CHACHA20_POLY1305, &secret).ok()?;
        Some(Self {
            epoch,
            secret,
            key: LessSafeKey::new(key),
        })
    }

    /// The key of the following epoch (the ratchet step).
    fn next(&self) -> Option<Self> {
        let epoch = self.epoch.checked_add(1)?;
        Self::new(
            epoch,
            hkdf_sha256(SALT_RATCHET, &self.secret, LABEL_RATCHET)?,
        )
    }
}

#[derive(Debug)]
struct SendState {
    key: EpochKey,
    counter: u64,
    started: Instant,
}

#[derive(Debug)]
struct RecvEpoch {
    key: EpochKey,
    window: ReplayWindow,
    since: Instant,
}

/// Which receiving key a datagram's epoch byte selects.
enum EpochSlot {
    Current,
    Previous,
    Ahead(u8),
}

/// The encrypted tunnel between this router and one peer (see the module docs).
#[derive(Debug)]
pub struct TunnelSession {
    config: SessionConfig,
    local_index: u32,
    remote_index: u32,
    authenticated: bool,
    send: SendState,
    current: RecvEpoch,
    /// The epoch before `current` and when it is forgotten.
    previous: Option<(RecvEpoch, Instant)>,
    counters: SessionCounters,
}

impl TunnelSession {
    /// A session from handshake `keys`. `local_index` is the receiving session index this
    /// side announced in its handshake payload (datagrams to us carry it); `remote_index`
    /// is the peer's (datagrams we send carry it).
    pub fn new(
        keys: &TunnelKeys,
        local_index: u32,
        remote_index: u32,
        config: SessionConfig,
        now: Instant,
    ) -> Result<Self, SealError> {
        let send = EpochKey::new(0, keys.send).ok_or(SealError::Crypto)?;
        let recv = EpochKey::new(0, keys.recv).ok_or(SealError::Crypto)?;
        Ok(Self {
            config,
            local_index,
            remote_index,
            authenticated: keys.authenticated,
            send: SendState {
                key: send,
                counter: 0,
                started: now,
            },
            current: RecvEpoch {
                key: recv,
                window: ReplayWindow::new(),
                since: now,
            },
            previous: None,
            counters: SessionCounters::default(),
        })
    }

    /// The index datagrams to this side carry.
    pub fn local_index(&self) -> u32 {
        self.local_index
    }

    /// The index this side puts into datagrams for the peer.
    pub fn remote_index(&self) -> u32 {
        self.remote_index
    }

    /// Whether the keys came from a password-authenticated handshake.
    pub fn authenticated(&self) -> bool {
        self.authenticated
    }

    /// The sending side's current key epoch.
    pub fn send_epoch(&self) -> u64 {
        self.send.key.epoch
    }

    /// The receiving side's current key epoch.
    pub fn recv_epoch(&self) -> u64 {
        self.current.key.epoch
    }

    /// Datagram and rekey counts.
    pub fn counters(&self) -> &SessionCounters {
        &self.counters
    }

    /// Seals `datagram` in place: `datagram` = 16 bytes of room for the clear header ‖
    /// plaintext ‖ 16 bytes of room for the tag. Writes the header (this session's
    /// remote index, the current epoch and the next counter) and the tag; rekeys first
    /// if the epoch is due.
    pub fn seal(
        &mut self,
        now: Instant,
        kind: DatagramKind,
        datagram: &mut [u8],
    ) -> Result<(), SealError> {
        let body_end = datagram
            .len()
            .checked_sub(TAG_LEN)
            .filter(|&end| end >= HEADER_LEN)
            .ok_or(SealError::BufferTooShort)?;
        self.rekey_send_if_due(now)?;
        let counter = self.send.counter;
        self.send.counter += 1;
        let header = ClearHeader {
            kind,
            epoch: self.send.key.epoch as u8,
            receiver_index: self.remote_index,
            counter,
        };
        let (head, rest) = datagram.split_at_mut(HEADER_LEN);
        let aad = header.write(head);
        let (body, tag_room) = rest.split_at_mut(body_end - HEADER_LEN);
        let tag = self
            .send
            .key
            .key
            .seal_in_place_separate_tag(nonce(counter), Aad::from(aad), body)
            .map_err(|_| SealError::Crypto)?;
        tag_room.copy_from_slice(tag.as_ref());
        self.counters.sealed += 1;
        Ok(())
    }

    /// Opens `datagram` in place if it is authentic and fresh; otherwise names the drop.
    /// State (replay window, key epoch) changes only for a datagram that authenticated.
    pub fn open<'a>(
        &mut self,
        now: Instant,
        datagram: &'a mut [u8],
    ) -> Result<Opened<'a>, TunnelDrop> {
        if datagram.len() < HEADER_LEN + TAG_LEN {
            return Err(TunnelDrop::Truncated);
        }
        let header = ClearHeader::parse(datagram)?;
        if header.receiver_index != self.local_index {
            return Err(TunnelDrop::UnknownSession(header.receiver_index));
        }
        if header.counter >= COUNTER_LIMIT {
            return Err(TunnelDrop::CounterLimit);
        }
        let (head, sealed) = datagram.split_at_mut(HEADER_LEN);
        let aad: [u8; HEADER_LEN] = head.try_into().map_err(|_| TunnelDrop::Truncated)?;
        let counter = header.counter;
        let plaintext = match self.select_epoch(now, header.epoch)? {
            EpochSlot::Current => {
                let cur = &mut self.current;
                if now.saturating_duration_since(cur.since) >= self.config.reject_after_time {
                    return Err(TunnelDrop::KeyExpired);
                }
                cur.window.check(counter)?;
                let p = open_with(&cur.key, counter, aad, sealed)?;
                cur.window.accept(counter)?;
                p
            }
            EpochSlot::Previous => {
                let Some((prev, _)) = self.previous.as_mut() else {
                    return Err(TunnelDrop::StaleEpoch);
                };
                prev.window.check(counter)?;
                let p = open_with(&prev.key, counter, aad, sealed)?;
                prev.window.accept(counter)?;
                p
            }
            EpochSlot::Ahead(steps) => {
                let mut key = self.current.key.next().ok_or(TunnelDrop::UnknownEpoch)?;
                for _ in 1..steps {
                    key = key.next().ok_or(TunnelDrop::UnknownEpoch)?;
                }
                let p = open_with(&key, counter, aad, sealed)?;
                let mut window = ReplayWindow::new();
                window.accept(counter)?;
                let old = std::mem::replace(
                    &mut self.current,
                    RecvEpoch {
                        key,
                        window,
                        since: now,
                    },
                );
                self.previous = Some((old, now + self.config.epoch_grace));
                self.counters.recv_rekeys += 1;
                p
            }
        };
        self.counters.opened += 1;
        Ok(Opened {
            kind: header.kind,
            epoch: self.slot_epoch(header.epoch),
            plaintext,
        })
    }

    /// When [`TunnelSession::handle_timeout`] next has work: forgetting the previous
    /// receiving epoch.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.previous.as_ref().map(|(_, until)| *until)
    }

    /// Forgets the previous receiving epoch once its grace period is over.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self
            .previous
            .as_ref()
            .is_some_and(|(_, until)| now >= *until)
        {
            self.previous = None;
        }
    }

    /// Which receiving key the header's epoch byte selects, or why none does.
    fn select_epoch(&mut self, now: Instant, epoch: u8) -> Result<EpochSlot, TunnelDrop> {
        if epoch == self.current.key.epoch as u8 {
            return Ok(EpochSlot::Current);
        }
        if let Some((prev, until)) = &self.previous
            && epoch == prev.key.epoch as u8
        {
            if now < *until {
                return Ok(EpochSlot::Previous);
            }
            self.previous = None;
            return Err(TunnelDrop::StaleEpoch);
        }
        match epoch.wrapping_sub(self.current.key.epoch as u8) {
            ahead @ 1..=MAX_EPOCH_SKIP => Ok(EpochSlot::Ahead(ahead)),
            ahead if ahead >= 128 => Err(TunnelDrop::StaleEpoch),
            _ => Err(TunnelDrop::UnknownEpoch),
        }
    }

    /// The full epoch number of an opened datagram's epoch byte (now current or previous).
    fn slot_epoch(&self, epoch: u8) -> u64 {
        match &self.previous {
            Some((prev, _)) if prev.key.epoch as u8 == epoch => prev.key.epoch,
            _ => self.current.key.epoch,
        }
    }

    fn rekey_send_if_due(&mut self, now: Instant) -> Result<(), SealError> {
        let limit = self.config.rekey_after_messages.min(COUNTER_LIMIT);
        let age = now.saturating_duration_since(self.send.started);
        if self.send.counter < limit && age < self.config.rekey_after_time {
            return Ok(());
        }
        if self.send.key.epoch == u64::MAX {
            return Err(SealError::SessionExhausted);
        }
        self.send.key = self.send.key.next().ok_or(SealError::Crypto)?;
        self.send.counter = 0;
        self.send.started = now;
        self.counters.send_rekeys += 1;
        Ok(())
    }
}

fn nonce(counter: u64) -> Nonce {
    let mut n = [0u8; NONCE_LEN];
    n[4..].copy_from_slice(&counter.to_le_bytes());
    Nonce::assume_unique_for_key(n)
}

fn open_with<'a>(
    key: &EpochKey,
    counter: u64,
    aad: [u8; HEADER_LEN],
    sealed: &'a mut [u8],
) -> Result<&'a mut [u8], TunnelDrop> {
    key.key
        .open_in_place(nonce(counter), Aad::from(aad), sealed)
        .map_err(|_| TunnelDrop::BadTag)
}

/// HKDF-SHA256 (RFC 5869) extract-then-expand to one 32-byte key.
fn hkdf_sha256(salt: &[u8], ikm: &[u8], info: &[u8]) -> Option<[u8; KEY_LEN]> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(ikm);
    let info = [info];
    let okm = prk.expand(&info, hkdf::HKDF_SHA256).ok()?;
    let mut out = [0u8; KEY_LEN];
    okm.fill(&mut out).ok()?;
    Some(out)
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
