//! The control connection's key exchange, sans-I/O.
//!
//! Runs on the TCP control connection right after the mesh preamble. With a mesh password
//! the pattern is `Noise_XXpsk3_25519_ChaChaPoly_BLAKE2s` (the pre-shared key from
//! [`super::password`] enters after the DH tokens, so a passive eavesdropper cannot test
//! password guesses); without one it is `Noise_XX_25519_ChaChaPoly_BLAKE2s`, which stops
//! passive capture only. Both sides exchange static X25519 keys ([`StaticKeypair`]).
//!
//! On the wire every handshake unit is a frame `u16 BE length ‖ kind u8 ‖ data`, the
//! length counting kind and data, at most [`MAX_FRAME_BODY`]:
//!
//! ```text
//! kind 1 MODE     data = 1 byte: 0 no password, 1 password. Both sides send it first,
//!                 so a mismatch is named precisely on both ends.
//! kind 2 NOISE    data = one Noise handshake message (XX: 3 of them).
//! kind 3 CONFIRM  data = a Noise transport message with an empty payload, responder →
//!                 initiator: proof that the responder accepted message 3.
//! kind 4 REFUSE   data = 1 byte reason (1 password differs, 2 handshake corrupted,
//!                 3 malformed), sent in clear before closing.
//! ```
//!
//! ```text
//! initiator                                   responder
//!   MODE, NOISE(msg1: e)            ─────▶
//!                                   ◀─────    MODE
//!                                   ◀─────    NOISE(msg2: e, ee, s, es, payload)
//!   NOISE(msg3: s, se, [psk,] payload) ───▶
//!                                   ◀─────    CONFIRM  (or REFUSE)
//! ```
//!
//! Why the refusal and the confirmation: with a wrong password only the responder can
//! notice (message 3 fails to decrypt), and the initiator has already finished its Noise
//! side. Without word from the responder it would only see the connection close. So the
//! responder answers message 3 with CONFIRM (encrypted, so it also proves the keys match)
//! or with REFUSE, and the initiator counts as finished only after CONFIRM. In general,
//! whichever side detects a failure sends REFUSE once (the caller flushes it with one more
//! [`Handshake::write_message`] before closing); mode mismatches need none, since each
//! side sees the other's MODE. REFUSE is unauthenticated: an active attacker can forge
//! it, but such an attacker can reset the TCP connection anyway.
//!
//! The handshake payloads (inside messages 2 and 3, which Noise encrypts; message 1
//! carries none) are [`HandshakePayload`]s: the sender's receiving session index and its
//! tunnel UDP port, in an extensible encoding.
//!
//! Driving it: call [`Handshake::write_message`] and send what it appends; split incoming
//! bytes with [`frame_len`] and feed each frame to [`Handshake::read_message`]; repeat
//! until [`Handshake::is_finished`], then [`Handshake::finish`]. Bytes after the last
//! handshake frame are already control records for [`super::control::RecordDecoder`].
//! Nothing here panics on any input; every failure is a [`HandshakeError`] whose message
//! tells the operator what to fix.

use snow::params::NoiseParams;

use super::control::ControlCipher;
use super::identity::{KEY_LEN, StaticKeypair};
use super::session::TunnelKeys;

/// Noise pattern with a mesh password.
const PATTERN_PSK: &str = "Noise_XXpsk3_25519_ChaChaPoly_BLAKE2s";
/// Noise pattern without one.
const PATTERN_OPEN: &str = "Noise_XX_25519_ChaChaPoly_BLAKE2s";
/// Bound into the handshake hash: a transcript of another protocol cannot be replayed.
const PROLOGUE: &[u8] = b"weft control handshake v1";

/// Largest frame body (kind + data) accepted or sent; real ones are under 200 bytes.
pub const MAX_FRAME_BODY: usize = 1024;

const FRAME_MODE: u8 = 1;
const FRAME_NOISE: u8 = 2;
const FRAME_CONFIRM: u8 = 3;
const FRAME_REFUSE: u8 = 4;

const MODE_OPEN: u8 = 0;
const MODE_PASSWORD: u8 = 1;

const REFUSE_AUTH: u8 = 1;
const REFUSE_CORRUPT: u8 = 2;
const REFUSE_MALFORMED: u8 = 3;

/// Which end of the control connection this is: the dialer initiates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Dialed the connection; sends Noise message 1.
    Initiator,
    /// Accepted it.
    Responder,
}

/// Why the handshake failed; the message says what the operator can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// We have a password, the peer has none.
    #[error(
        "this router has a password but the peer has none: give every peer the same \
         --password-file (or WEFT_PASSWORD)"
    )]
    PeerHasNoPassword,
    /// The peer has a password, we have none.
    #[error(
        "the peer requires a password: start this router with --password-file or \
         WEFT_PASSWORD set to the mesh password"
    )]
    PeerRequiresPassword,
    /// Both have passwords, and they differ (seen by the responder on message 3, and by
    /// the initiator through the responder's refusal).
    #[error("authentication failed: the peer's password differs")]
    AuthenticationFailed,
    /// A message failed to decrypt although no password is involved: altered in transit.
    #[error("handshake failed authentication: its messages were altered in transit")]
    Corrupted,
    /// The peer refused our messages as malformed (a weft bug or an incompatible peer).
    #[error(
        "the peer refused this router's handshake as malformed; check both run the same weft version"
    )]
    PeerRejectedMalformed,
    /// The peer refused with a reason this weft does not know.
    #[error("the peer refused the handshake (reason code {0}); it may run a newer weft")]
    PeerRefused(u8),
    /// A frame or Noise message that does not parse.
    #[error("malformed handshake message: {0}")]
    Malformed(&'static str),
    /// A well-formed frame at the wrong moment (reordered, duplicated, or after the end).
    #[error("handshake message out of order: {0}")]
    Unexpected(&'static str),
    /// The handshake already failed; the connection must be closed.
    #[error("the handshake already failed; close the connection")]
    AlreadyFailed,
    /// [`Handshake::finish`] before [`Handshake::is_finished`].
    #[error("the handshake has not finished")]
    NotFinished,
    /// The Noise backend refused to set up (a bad static key, no RNG).
    #[error("handshake setup failed: {0}")]
    Setup(&'static str),
}

impl HandshakeError {
    /// A stable counter name for this failure.
    pub fn name(&self) -> &'static str {
        match self {
            Self::PeerHasNoPassword => "handshake_peer_has_no_password",
            Self::PeerRequiresPassword => "handshake_peer_requires_password",
            Self::AuthenticationFailed => "handshake_authentication_failed",
            Self::Corrupted => "handshake_corrupted",
            Self::PeerRejectedMalformed => "handshake_peer_rejected_malformed",
            Self::PeerRefused(_) => "handshake_peer_refused",
            Self::Malformed(_) => "handshake_malformed",
            Self::Unexpected(_) => "handshake_unexpected",
            Self::AlreadyFailed => "handshake_already_failed",
            Self::NotFinished => "handshake_not_finished",
            Self::Setup(_) => "handshake_setup",
        }
    }

    /// The REFUSE reason to send the peer when this side detected the failure itself.
    fn refusal(self) -> Option<u8> {
        match self {
            Self::AuthenticationFailed => Some(REFUSE_AUTH),
            Self::Corrupted => Some(REFUSE_CORRUPT),
            Self::Malformed(_) | Self::Unexpected(_) => Some(REFUSE_MALFORMED),
            _ => None,
        }
    }
}

/// What each side tells the other inside the encrypted handshake: what the data plane
/// needs to reach it.
///
/// Encoding: `version u8 (1) ‖ session_index u32 BE ‖ tunnel_port u16 BE ‖ features u32 BE`.
/// Later versions only append fields, so a reader takes the fields it knows and ignores
/// the rest (up to [`HandshakePayload::MAX_LEN`] bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HandshakePayload {
    /// The index the sender's tunnel datagrams must carry to reach it (random, chosen by
    /// the sender's caller).
    pub session_index: u32,
    /// The sender's tunnel UDP port.
    pub tunnel_port: u16,
    /// Feature bits (none defined yet; e.g. AES-GCM support later).
    pub features: u32,
}

impl HandshakePayload {
    /// Encoded length of version 1.
    pub const LEN: usize = 11;
    /// Longest payload accepted.
    pub const MAX_LEN: usize = 256;
    const VERSION: u8 = 1;

    /// The wire form.
    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0] = Self::VERSION;
        b[1..5].copy_from_slice(&self.session_index.to_be_bytes());
        b[5..7].copy_from_slice(&self.tunnel_port.to_be_bytes());
        b[7..11].copy_from_slice(&self.features.to_be_bytes());
        b
    }

    /// Reads a payload; longer (newer) payloads keep their known prefix.
    pub fn decode(bytes: &[u8]) -> Result<Self, HandshakeError> {
        if bytes.len() > Self::MAX_LEN {
            return Err(HandshakeError::Malformed("handshake payload too long"));
        }
        let Some(b) = bytes.first_chunk::<{ Self::LEN }>() else {
            return Err(HandshakeError::Malformed("handshake payload truncated"));
        };
        if b[0] == 0 {
            return Err(HandshakeError::Malformed("handshake payload version 0"));
        }
        Ok(Self {
            session_index: u32::from_be_bytes([b[1], b[2], b[3], b[4]]),
            tunnel_port: u16::from_be_bytes([b[5], b[6]]),
            features: u32::from_be_bytes([b[7], b[8], b[9], b[10]]),
        })
    }
}

/// Everything a finished handshake yields.
#[derive(Debug)]
pub struct HandshakeOutcome {
    /// Encrypts and decrypts every later control byte.
    pub control: ControlCipher,
    /// The data-plane keys for [`super::session::TunnelSession`].
    pub tunnel_keys: TunnelKeys,
    /// The peer's static public key (proven by the handshake).
    pub remote_static: [u8; KEY_LEN],
    /// What the peer told us.
    pub remote_payload: HandshakePayload,
    /// Whether the mesh password authenticated the peer (false: passive protection only).
    pub authenticated: bool,
}

/// Where the handshake stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    SendMsg1,
    AwaitMsg1,
    SendMsg2,
    AwaitMsg2,
    SendMsg3,
    AwaitMsg3,
    SendConfirm,
    AwaitConfirm,
    Finished,
    Failed,
}

/// One side of the key exchange (see the module docs).
pub struct Handshake {
    role: Role,
    password: bool,
    noise: Option<snow::HandshakeState>,
    transport: Option<snow::TransportState>,
    tunnel_keys: Option<TunnelKeys>,
    remote_static: Option<[u8; KEY_LEN]>,
    local_payload: HandshakePayload,
    remote_payload: Option<HandshakePayload>,
    step: Step,
    mode_sent: bool,
    peer_mode_seen: bool,
    refusal: Option<u8>,
}

impl std::fmt::Debug for Handshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handshake")
            .field("role", &self.role)
            .field("password", &self.password)
            .field("step", &self.step)
            .finish_non_exhaustive()
    }
}

/// The Noise parameters for a mesh with (`true`) or without a password.
pub(crate) fn noise_params(password: bool) -> Result<NoiseParams, HandshakeError> {
    let name = if password { PATTERN_PSK } else { PATTERN_OPEN };
    name.parse()
        .map_err(|_| HandshakeError::Setup("snow does not support weft's Noise pattern"))
}

/// The total length (prefix included) of the frame starting `stream`, once its 2-byte
/// prefix is there; an over-long frame is an error before any of it is buffered.
pub fn frame_len(stream: &[u8]) -> Result<Option<usize>, HandshakeError> {
    let Some(&[hi, lo]) = stream.first_chunk::<2>() else {
        return Ok(None);
    };
    let body = usize::from(u16::from_be_bytes([hi, lo]));
    if body == 0 || body > MAX_FRAME_BODY {
        return Err(HandshakeError::Malformed(
            "handshake frame length out of range",
        ));
    }
    Ok(Some(2 + body))
}

fn push_frame(out: &mut Vec<u8>, kind: u8, data: &[u8]) {
    let body = (1 + data.len()) as u16;
    out.extend_from_slice(&body.to_be_bytes());
    out.push(kind);
    out.extend_from_slice(data);
}

impl Handshake {
    /// One side of a handshake. `psk` is the mesh key from
    /// [`super::password::psk_from_password`], or `None` without a password; `payload`
    /// is what the peer will learn from us.
    pub fn new(
        role: Role,
        psk: Option<[u8; 32]>,
        local_static: &StaticKeypair,
        payload: HandshakePayload,
    ) -> Result<Self, HandshakeError> {
        let setup = |_| HandshakeError::Setup("snow refused the handshake parameters");
        let mut builder = snow::Builder::new(noise_params(psk.is_some())?)
            .local_private_key(local_static.private())
            .map_err(setup)?
            .prologue(PROLOGUE)
            .map_err(setup)?;
        if let Some(psk) = psk.as_ref() {
            builder = builder.psk(3, psk).map_err(setup)?;
        }
        let (noise, step) = match role {
            Role::Initiator => (builder.build_initiator().map_err(setup)?, Step::SendMsg1),
            Role::Responder => (builder.build_responder().map_err(setup)?, Step::AwaitMsg1),
        };
        Ok(Self {
            role,
            password: psk.is_some(),
            noise: Some(noise),
            transport: None,
            tunnel_keys: None,
            remote_static: None,
            local_payload: payload,
            remote_payload: None,
            step,
            mode_sent: false,
            peer_mode_seen: false,
            refusal: None,
        })
    }

    /// Appends every frame due now to `out` (possibly none): MODE first, then the next
    /// Noise message or CONFIRM when it is our turn; after a failure, the REFUSE to send
    /// before closing.
    pub fn write_message(&mut self, out: &mut Vec<u8>) -> Result<(), HandshakeError> {
        if let Some(code) = self.refusal.take() {
            push_frame(out, FRAME_REFUSE, &[code]);
            return Ok(());
        }
        if self.step == Step::Failed {
            return Ok(());
        }
        if !self.mode_sent {
            let mode = if self.password {
                MODE_PASSWORD
            } else {
                MODE_OPEN
            };
            push_frame(out, FRAME_MODE, &[mode]);
            self.mode_sent = true;
        }
        let mut buf = [0u8; MAX_FRAME_BODY];
        let result = match self.step {
            Step::SendMsg1 => self.write_noise(&[], &mut buf, Step::AwaitMsg2),
            Step::SendMsg2 => {
                let payload = self.local_payload.encode();
                self.write_noise(&payload, &mut buf, Step::AwaitMsg3)
            }
            Step::SendMsg3 => {
                let payload = self.local_payload.encode();
                self.write_noise(&payload, &mut buf, Step::AwaitConfirm)
                    .and_then(|n| self.complete_noise().map(|()| n))
            }
            Step::SendConfirm => {
                let transport = self.transport.as_mut().ok_or(HandshakeError::NotFinished)?;
                let n = transport
                    .write_message(&[], &mut buf)
                    .map_err(|_| HandshakeError::Setup("could not seal the confirmation"))?;
                self.step = Step::Finished;
                let data = buf.get(..n).unwrap_or_default();
                push_frame(out, FRAME_CONFIRM, data);
                return Ok(());
            }
            _ => return Ok(()),
        };
        match result {
            Ok(n) => {
                push_frame(out, FRAME_NOISE, buf.get(..n).unwrap_or_default());
                Ok(())
            }
            Err(e) => {
                self.step = Step::Failed;
                Err(e)
            }
        }
    }

    /// Feeds one complete frame (2-byte prefix included; see [`frame_len`]). Returns the
    /// peer's payload when the message carrying it arrives (once). After an error the
    /// handshake is failed: call [`Handshake::write_message`] once more to get the
    /// REFUSE frame (if any), send it, and close.
    pub fn read_message(
        &mut self,
        frame: &[u8],
    ) -> Result<Option<HandshakePayload>, HandshakeError> {
        match self.read_frame(frame) {
            Ok(payload) => Ok(payload),
            Err((error, refuse)) => {
                if self.step != Step::Failed {
                    self.step = Step::Failed;
                    self.refusal = refuse.then(|| error.refusal()).flatten();
                }
                Err(error)
            }
        }
    }

    /// Whether the handshake completed on this side; then [`Handshake::finish`].
    pub fn is_finished(&self) -> bool {
        self.step == Step::Finished
    }

    /// Whether this side has a password (the mode it announces).
    pub fn has_password(&self) -> bool {
        self.password
    }

    /// The keys and facts of a finished handshake.
    pub fn finish(self) -> Result<HandshakeOutcome, HandshakeError> {
        if self.step != Step::Finished {
            return Err(HandshakeError::NotFinished);
        }
        let (Some(transport), Some(tunnel_keys), Some(remote_static), Some(remote_payload)) = (
            self.transport,
            self.tunnel_keys,
            self.remote_static,
            self.remote_payload,
        ) else {
            return Err(HandshakeError::NotFinished);
        };
        Ok(HandshakeOutcome {
            control: ControlCipher::new(transport),
            tunnel_keys,
            remote_static,
            remote_payload,
            authenticated: self.password,
        })
    }

    /// Reads one frame; on error, whether this side should send a REFUSE.
    fn read_frame(
        &mut self,
        frame: &[u8],
    ) -> Result<Option<HandshakePayload>, (HandshakeError, bool)> {
        let local = |e| (e, true);
        match self.step {
            Step::Failed => return Err((HandshakeError::AlreadyFailed, false)),
            Step::Finished => {
                return Err(local(HandshakeError::Unexpected(
                    "handshake frame after the handshake finished",
                )));
            }
            _ => {}
        }
        let total = frame_len(frame).map_err(local)?;
        if total != Some(frame.len()) {
            return Err(local(HandshakeError::Malformed(
                "handshake frame length does not match its prefix",
            )));
        }
        let Some((&kind, data)) = frame.get(2..).and_then(|b| b.split_first()) else {
            return Err(local(HandshakeError::Malformed("empty handshake frame")));
        };
        match kind {
            FRAME_REFUSE => Err((refusal_error(data), false)),
            FRAME_MODE => self.read_mode(data).map(|()| None),
            FRAME_NOISE => self.read_noise(data).map_err(local),
            FRAME_CONFIRM => self.read_confirm(data).map(|()| None).map_err(local),
            _ => Err(local(HandshakeError::Malformed(
                "unknown handshake frame kind",
            ))),
        }
    }

    fn read_mode(&mut self, data: &[u8]) -> Result<(), (HandshakeError, bool)> {
        if self.peer_mode_seen {
            return Err((HandshakeError::Unexpected("second MODE frame"), true));
        }
        let peer_password = match data {
            [MODE_OPEN] => false,
            [MODE_PASSWORD] => true,
            _ => return Err((HandshakeError::Malformed("bad MODE frame"), true)),
        };
        self.peer_mode_seen = true;
        match (self.password, peer_password) {
            (true, false) => Err((HandshakeError::PeerHasNoPassword, false)),
            (false, true) => Err((HandshakeError::PeerRequiresPassword, false)),
            _ => Ok(()),
        }
    }

    fn read_noise(&mut self, data: &[u8]) -> Result<Option<HandshakePayload>, HandshakeError> {
        if !self.peer_mode_seen {
            return Err(HandshakeError::Unexpected(
                "Noise message before the peer's MODE",
            ));
        }
        let noise = self.noise.as_mut().ok_or(HandshakeError::Unexpected(
            "Noise message after the Noise handshake",
        ))?;
        let mut payload = [0u8; MAX_FRAME_BODY];
        match self.step {
            Step::AwaitMsg1 => {
                let n = noise
                    .read_message(data, &mut payload)
                    .map_err(|_| HandshakeError::Malformed("bad Noise message 1"))?;
                if n != 0 {
                    return Err(HandshakeError::Malformed(
                        "Noise message 1 carries a payload",
                    ));
                }
                self.step = Step::SendMsg2;
                Ok(None)
            }
            Step::AwaitMsg2 => {
                let n = noise
                    .read_message(data, &mut payload)
                    .map_err(|e| noise_read_error(e, HandshakeError::Corrupted))?;
                let p = HandshakePayload::decode(payload.get(..n).unwrap_or_default())?;
                self.remote_payload = Some(p);
                self.step = Step::SendMsg3;
                Ok(Some(p))
            }
            Step::AwaitMsg3 => {
                let wrong_key = if self.password {
                    HandshakeError::AuthenticationFailed
                } else {
                    HandshakeError::Corrupted
                };
                let n = noise
                    .read_message(data, &mut payload)
                    .map_err(|e| noise_read_error(e, wrong_key))?;
                let p = HandshakePayload::decode(payload.get(..n).unwrap_or_default())?;
                self.remote_payload = Some(p);
                self.complete_noise()?;
                self.step = Step::SendConfirm;
                Ok(Some(p))
            }
            _ => Err(HandshakeError::Unexpected(
                "Noise message when none was due",
            )),
        }
    }

    fn read_confirm(&mut self, data: &[u8]) -> Result<(), HandshakeError> {
        if self.step != Step::AwaitConfirm {
            return Err(HandshakeError::Unexpected("CONFIRM when none was due"));
        }
        let transport = self.transport.as_mut().ok_or(HandshakeError::Unexpected(
            "CONFIRM before the Noise handshake ended",
        ))?;
        let mut payload = [0u8; MAX_FRAME_BODY];
        let n = transport
            .read_message(data, &mut payload)
            .map_err(|_| HandshakeError::Corrupted)?;
        if n != 0 {
            return Err(HandshakeError::Malformed("CONFIRM carries a payload"));
        }
        self.step = Step::Finished;
        Ok(())
    }

    /// Writes the next Noise message into `buf` and moves to `next`.
    fn write_noise(
        &mut self,
        payload: &[u8],
        buf: &mut [u8],
        next: Step,
    ) -> Result<usize, HandshakeError> {
        let noise = self
            .noise
            .as_mut()
            .ok_or(HandshakeError::Setup("Noise state missing"))?;
        let n = noise
            .write_message(payload, buf)
            .map_err(|_| HandshakeError::Setup("could not write a Noise message"))?;
        self.step = next;
        Ok(n)
    }

    /// The Noise handshake is complete: derive the tunnel keys and the control transport.
    fn complete_noise(&mut self) -> Result<(), HandshakeError> {
        let mut noise = self
            .noise
            .take()
            .ok_or(HandshakeError::Setup("Noise state missing"))?;
        let remote: [u8; KEY_LEN] = noise
            .get_remote_static()
            .and_then(|k| k.try_into().ok())
            .ok_or(HandshakeError::Malformed("peer sent no static key"))?;
        let split = noise.dangerously_get_raw_split();
        let keys = TunnelKeys::from_handshake(
            &split,
            noise.get_handshake_hash(),
            self.role == Role::Initiator,
            self.password,
        )
        .ok_or(HandshakeError::Setup("tunnel key derivation failed"))?;
        let transport = noise
            .into_transport_mode()
            .map_err(|_| HandshakeError::Setup("Noise did not finish"))?;
        self.remote_static = Some(remote);
        self.tunnel_keys = Some(keys);
        self.transport = Some(transport);
        Ok(())
    }
}

/// The error for a Noise message that would not open: a decryption failure means keys
/// differ (`wrong_key`), anything else a malformed message.
fn noise_read_error(e: snow::Error, wrong_key: HandshakeError) -> HandshakeError {
    match e {
        snow::Error::Decrypt => wrong_key,
        _ => HandshakeError::Malformed("bad Noise message"),
    }
}

fn refusal_error(data: &[u8]) -> HandshakeError {
    match data {
        [REFUSE_AUTH] => HandshakeError::AuthenticationFailed,
        [REFUSE_CORRUPT] => HandshakeError::Corrupted,
        [REFUSE_MALFORMED] => HandshakeError::PeerRejectedMalformed,
        [code] => HandshakeError::PeerRefused(*code),
        _ => HandshakeError::Malformed("bad REFUSE frame"),
    }
}

#[cfg(test)]
#[path = "handshake_tests.rs"]
mod tests;
