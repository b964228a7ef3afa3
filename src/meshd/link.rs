//! [`ControlLink`]: the transport of one TCP control connection, below the mesh core.
//!
//! Contract: a link turns the raw TCP byte stream into the plaintext the mesh core reads
//! and back, in three stages after the TCP connect: the 8-byte version preamble, the
//! Noise handshake (MODE/NOISE/CONFIRM/REFUSE frames), then encrypted records. Bytes the
//! core wants to send before the handshake is finished wait in a buffer and are sealed
//! once it is. Every failure is a [`LinkError`] (never a panic); a link that failed has
//! already queued whatever the peer should still hear (a REFUSE frame), and the caller
//! closes it. Both buffers are bounded: the outgoing one by [`MAX_OUTGOING`], the
//! handshake inbox by one handshake frame plus one read.

use std::io::{self, Read as _, Write as _};
use std::net::SocketAddr;
use std::time::Instant;

use mesh::protocol::PREAMBLE_LEN;
use mesh::{Direction, PeerName, SUPPORTED_VERSIONS, VersionRange, negotiate};
use mio::net::TcpStream;
use tunnel::crypto::identity::StaticKeypair;
use tunnel::crypto::session::TunnelKeys;
use tunnel::crypto::{
    ControlCipher, ControlError, Handshake, HandshakeError, HandshakePayload, RecordDecoder, Role,
};

use crate::api::report::{ConnectionEncryption, ConnectionState};

/// Bytes queued for one peer beyond which it is considered to have stopped reading.
pub(super) const MAX_OUTGOING: usize = 16 * 1024 * 1024;

/// Why a control connection is being closed by this side.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LinkError {
    /// The TCP connect failed or timed out.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The version preamble failed (not a weft router, or no common version).
    #[error("version preamble failed: {0}")]
    Preamble(mesh::HandshakeError),
    /// The key exchange failed (password mismatch, corruption, ...).
    #[error("{0}")]
    Handshake(HandshakeError),
    /// An encrypted record did not decrypt.
    #[error("{0}")]
    Record(ControlError),
    /// The peer closed the TCP connection.
    #[error("the peer closed the connection during the {0}")]
    PeerClosed(&'static str),
    /// A socket error.
    #[error("socket error: {0}")]
    Io(io::Error),
    /// The peer does not read what we send.
    #[error(
        "the peer stopped reading: more than {} MiB of control traffic queued for it",
        MAX_OUTGOING / (1024 * 1024)
    )]
    Backlog,
}

impl LinkError {
    /// Whether the failure is a configuration problem the operator must see (logged at
    /// warn): a mismatched password or protocol version, a non-weft peer.
    pub(super) fn is_misconfiguration(&self) -> bool {
        matches!(self, Self::Preamble(_) | Self::Handshake(_))
    }
}

/// What the handshake needs from this router; the same for every connection.
pub(super) struct Credentials {
    /// The mesh password's key, if any.
    pub(super) psk: Option<[u8; 32]>,
    /// This router's static key.
    pub(super) static_key: StaticKeypair,
    /// Our encrypted-tunnel UDP port, told to the peer in the handshake payload.
    pub(super) tunnel_port: u16,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password's key stays out of logs.
        f.debug_struct("Credentials")
            .field("password", &self.psk.is_some())
            .field("static_key", &self.static_key)
            .field("tunnel_port", &self.tunnel_port)
            .finish()
    }
}

/// What a finished handshake established about the peer, kept for the data plane.
#[derive(Debug)]
pub(super) struct Secured {
    /// Data-plane keys of this connection, until they are handed to the data plane (no
    /// copy of a secret lingers longer than needed).
    pub(super) tunnel_keys: Option<TunnelKeys>,
    /// The index the peer's tunnel datagrams to us carry (ours).
    pub(super) local_index: u32,
    /// The index our tunnel datagrams to the peer carry (theirs).
    pub(super) remote_index: u32,
    /// The peer's tunnel UDP port.
    pub(super) remote_tunnel_port: u16,
    /// Whether the mesh password authenticated the peer.
    pub(super) authenticated: bool,
}

/// Where a link stands.
#[derive(Debug)]
enum Stage {
    /// Non-blocking TCP connect in flight; given up at the deadline.
    Connecting { deadline: Instant },
    /// Waiting for the peer's 8-byte version preamble.
    Preamble { got: [u8; PREAMBLE_LEN], len: usize },
    /// Noise handshake running; `inbox` holds at most one partial handshake frame.
    Handshake {
        handshake: Box<Handshake>,
        inbox: Vec<u8>,
    },
    /// Encrypted records both ways.
    Established {
        cipher: Box<ControlCipher>,
        decoder: RecordDecoder,
    },
    /// Being closed: flushing what is queued, then discarding input until EOF or the
    /// deadline. The mesh core has already forgotten the connection.
    Closing { deadline: Instant, shut: bool },
}

/// Outgoing bytes with a write cursor, so partial writes cost no copying.
#[derive(Debug, Default)]
struct Outgoing {
    bytes: Vec<u8>,
    sent: usize,
}

impl Outgoing {
    fn pending(&self) -> &[u8] {
        self.bytes.get(self.sent..).unwrap_or_default()
    }

    /// Room at the end for more bytes, dropping what was written already.
    fn buf(&mut self) -> &mut Vec<u8> {
        if self.sent > 0 {
            self.bytes.drain(..self.sent.min(self.bytes.len()));
            self.sent = 0;
        }
        &mut self.bytes
    }

    fn advance(&mut self, n: usize) {
        self.sent = (self.sent + n).min(self.bytes.len());
        if self.sent == self.bytes.len() {
            self.bytes.clear();
            self.sent = 0;
        }
    }

    fn len(&self) -> usize {
        self.bytes.len().saturating_sub(self.sent)
    }
}

/// One TCP control connection and its transport state.
#[derive(Debug)]
pub(super) struct ControlLink {
    /// The socket.
    pub(super) stream: TcpStream,
    /// The remote address (for outbound links: the address dialled).
    pub(super) remote: SocketAddr,
    /// Who opened it.
    pub(super) direction: Direction,
    /// The peer, once the mesh core established the connection.
    pub(super) peer: Option<PeerName>,
    /// Set when the handshake finished.
    pub(super) secured: Option<Secured>,
    /// Our receiving session index for this connection (never 0).
    pub(super) session_index: u32,
    stage: Stage,
    out: Outgoing,
    /// Core plaintext waiting for the handshake to finish.
    waiting: Vec<u8>,
}

impl ControlLink {
    /// A link for a dial in flight.
    pub(super) fn connecting(
        stream: TcpStream,
        remote: SocketAddr,
        session_index: u32,
        deadline: Instant,
    ) -> Self {
        Self::new(
            stream,
            remote,
            Direction::Outbound,
            session_index,
            Stage::Connecting { deadline },
        )
    }

    /// A link for an accepted connection; call [`ControlLink::start`] once the core took it.
    pub(super) fn accepted(stream: TcpStream, remote: SocketAddr, session_index: u32) -> Self {
        let stage = Stage::Preamble {
            got: [0; PREAMBLE_LEN],
            len: 0,
        };
        Self::new(stream, remote, Direction::Inbound, session_index, stage)
    }

    fn new(
        stream: TcpStream,
        remote: SocketAddr,
        direction: Direction,
        session_index: u32,
        stage: Stage,
    ) -> Self {
        Self {
            stream,
            remote,
            direction,
            peer: None,
            secured: None,
            session_index,
            stage,
            out: Outgoing::default(),
            waiting: Vec::new(),
        }
    }

    /// The TCP connection is up and the core accepted it: send our preamble.
    pub(super) fn start(&mut self) {
        self.stage = Stage::Preamble {
            got: [0; PREAMBLE_LEN],
            len: 0,
        };
        self.out
            .buf()
            .extend_from_slice(&SUPPORTED_VERSIONS.to_preamble());
    }

    /// The stage's name for `weft status`.
    pub(super) fn state(&self) -> ConnectionState {
        match self.stage {
            Stage::Connecting { .. } => ConnectionState::Connecting,
            Stage::Preamble { .. } => ConnectionState::Preamble,
            Stage::Handshake { .. } => ConnectionState::Handshake,
            Stage::Established { .. } => ConnectionState::Established,
            // Being closed: for status it has ended.
            Stage::Closing { .. } => ConnectionState::Failed,
        }
    }

    /// How the connection is protected, for `weft status`.
    pub(super) fn encryption(&self) -> ConnectionEncryption {
        match &self.secured {
            Some(s) if s.authenticated => ConnectionEncryption::Password,
            Some(_) => ConnectionEncryption::Unauthenticated,
            None => ConnectionEncryption::Pending,
        }
    }

    /// Whether the TCP connect is still in flight.
    pub(super) fn is_connecting(&self) -> bool {
        matches!(self.stage, Stage::Connecting { .. })
    }

    /// Whether the link is being closed (the core no longer knows it).
    pub(super) fn is_closing(&self) -> bool {
        matches!(self.stage, Stage::Closing { .. })
    }

    /// The connect or linger deadline, if the link has one.
    pub(super) fn deadline(&self) -> Option<Instant> {
        match self.stage {
            Stage::Connecting { deadline } | Stage::Closing { deadline, .. } => Some(deadline),
            _ => None,
        }
    }

    /// Whether a non-blocking connect finished: `Ok(true)` connected, `Ok(false)` still
    /// in progress, `Err` failed.
    pub(super) fn connect_result(&self) -> Result<bool, LinkError> {
        match self.stream.take_error() {
            Ok(Some(e)) | Err(e) => return Err(LinkError::Connect(e.to_string())),
            Ok(None) => {}
        }
        match self.stream.peer_addr() {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(e) => Err(LinkError::Connect(e.to_string())),
        }
    }

    /// Starts closing: what is queued is still sent (a REFUSE frame, for one), then the
    /// write side is shut and input discarded until the peer closes or `deadline`.
    pub(super) fn begin_close(&mut self, deadline: Instant) {
        if matches!(self.stage, Stage::Connecting { .. }) {
            self.out = Outgoing::default();
        }
        self.waiting = Vec::new();
        self.stage = Stage::Closing {
            deadline,
            shut: false,
        };
    }

    /// Whether a closing link is done (everything flushed and the peer closed, or an error).
    /// Reads and discards what arrived.
    pub(super) fn drain_closing(&mut self, scratch: &mut [u8]) -> bool {
        if self.flush().is_err() {
            return true;
        }
        let Stage::Closing { shut, .. } = &mut self.stage else {
            return true;
        };
        if self.out.len() == 0 && !*shut {
            *shut = true;
            if self.stream.shutdown(std::net::Shutdown::Write).is_err() {
                return true;
            }
        }
        loop {
            match self.stream.read(scratch) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return true,
            }
        }
    }

    /// Plaintext from the mesh core: sealed at once when the handshake is done, otherwise
    /// kept until it is.
    pub(super) fn send_plain(&mut self, plaintext: &[u8]) -> Result<(), LinkError> {
        match &mut self.stage {
            Stage::Established { cipher, .. } => {
                cipher
                    .seal(plaintext, self.out.buf())
                    .map_err(LinkError::Record)?;
            }
            Stage::Closing { .. } => return Ok(()),
            _ => self.waiting.extend_from_slice(plaintext),
        }
        if self.out.len() + self.waiting.len() > MAX_OUTGOING {
            return Err(LinkError::Backlog);
        }
        Ok(())
    }

    /// Writes queued bytes until the socket would block.
    pub(super) fn flush(&mut self) -> Result<(), LinkError> {
        while !self.out.pending().is_empty() {
            match self.stream.write(self.out.pending()) {
                Ok(0) => return Err(LinkError::Io(io::ErrorKind::WriteZero.into())),
                Ok(n) => self.out.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(LinkError::Io(e)),
            }
        }
        Ok(())
    }

    /// Reads one chunk into `scratch`: `Ok(Some(n))` bytes read, `Ok(None)` nothing more
    /// for now.
    pub(super) fn read_chunk(&mut self, scratch: &mut [u8]) -> Result<Option<usize>, LinkError> {
        loop {
            match self.stream.read(scratch) {
                Ok(0) => return Err(LinkError::PeerClosed(self.stage_phrase())),
                Ok(n) => return Ok(Some(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(LinkError::Io(e)),
            }
        }
    }

    fn stage_phrase(&self) -> &'static str {
        match self.stage {
            Stage::Preamble { .. } => "version preamble",
            Stage::Handshake { .. } => "key exchange",
            _ => "session",
        }
    }

    /// Feeds received stream bytes through the stages; appends decrypted control bytes for
    /// the core to `plain`. On error the link must be closed (any REFUSE is queued).
    pub(super) fn ingest(
        &mut self,
        mut data: &[u8],
        credentials: &Credentials,
        plain: &mut Vec<u8>,
    ) -> Result<(), LinkError> {
        while !data.is_empty() {
            match &mut self.stage {
                Stage::Preamble { got, len } => {
                    let want = PREAMBLE_LEN.saturating_sub(*len).min(data.len());
                    let (head, rest) = data.split_at(want);
                    if let Some(dst) = got.get_mut(*len..*len + want) {
                        dst.copy_from_slice(head);
                    }
                    *len += want;
                    data = rest;
                    if *len == PREAMBLE_LEN {
                        let theirs = VersionRange::from_preamble(got.as_slice())
                            .map_err(LinkError::Preamble)?;
                        negotiate(SUPPORTED_VERSIONS, theirs).map_err(LinkError::Preamble)?;
                        self.begin_handshake(credentials)?;
                    }
                }
                Stage::Handshake { .. } => {
                    let rest = self.handshake_bytes(data)?;
                    // Whatever follows the last handshake frame is already records.
                    if let Stage::Established { cipher, decoder } = &mut self.stage {
                        decoder
                            .decode(cipher, &rest, plain)
                            .map_err(LinkError::Record)?;
                    }
                    return Ok(());
                }
                Stage::Established { cipher, decoder } => {
                    return decoder
                        .decode(cipher, data, plain)
                        .map_err(LinkError::Record);
                }
                // Nothing is read before the connect completes; a closing link discards.
                Stage::Connecting { .. } | Stage::Closing { .. } => return Ok(()),
            }
        }
        Ok(())
    }

    fn begin_handshake(&mut self, credentials: &Credentials) -> Result<(), LinkError> {
        let role = match self.direction {
            Direction::Outbound => Role::Initiator,
            Direction::Inbound => Role::Responder,
        };
        let payload = HandshakePayload {
            session_index: self.session_index,
            tunnel_port: credentials.tunnel_port,
            features: 0,
        };
        let mut handshake = Handshake::new(role, credentials.psk, &credentials.static_key, payload)
            .map_err(LinkError::Handshake)?;
        // MODE goes out first whatever happens next, so a mode mismatch is named on both
        // ends; the initiator's first Noise message goes with it.
        handshake
            .write_message(self.out.buf())
            .map_err(LinkError::Handshake)?;
        self.stage = Stage::Handshake {
            handshake: Box::new(handshake),
            inbox: Vec::new(),
        };
        Ok(())
    }

    /// Runs handshake frames from `data`; returns the bytes after the last handshake frame
    /// once it finished (empty otherwise).
    fn handshake_bytes(&mut self, data: &[u8]) -> Result<Vec<u8>, LinkError> {
        let Stage::Handshake { handshake, inbox } = &mut self.stage else {
            return Ok(Vec::new());
        };
        inbox.extend_from_slice(data);
        while !handshake.is_finished() {
            let len = match tunnel::crypto::handshake::frame_len(inbox) {
                Ok(Some(len)) if len <= inbox.len() => len,
                Ok(_) => return Ok(Vec::new()),
                // A bad length prefix: let the handshake judge it too, so it fails and
                // queues its REFUSE like for any other malformed frame.
                Err(_) => inbox.len().min(2),
            };
            let read = handshake.read_message(inbox.get(..len).unwrap_or_default());
            inbox.drain(..len);
            match read {
                Ok(_) => {}
                Err(e) => return Err(refuse(handshake, &mut self.out, e)),
            }
            // Our next message (msg 2, msg 3 or CONFIRM) is due as soon as theirs arrived.
            if let Err(e) = handshake.write_message(self.out.buf()) {
                return Err(refuse(handshake, &mut self.out, e));
            }
        }
        let rest = std::mem::take(inbox);
        let placeholder = Stage::Preamble {
            got: [0; PREAMBLE_LEN],
            len: 0,
        };
        let Stage::Handshake { handshake, .. } = std::mem::replace(&mut self.stage, placeholder)
        else {
            return Ok(Vec::new());
        };
        let outcome = handshake.finish().map_err(LinkError::Handshake)?;
        self.secured = Some(Secured {
            tunnel_keys: Some(outcome.tunnel_keys),
            local_index: self.session_index,
            remote_index: outcome.remote_payload.session_index,
            remote_tunnel_port: outcome.remote_payload.tunnel_port,
            authenticated: outcome.authenticated,
        });
        let mut cipher = Box::new(outcome.control);
        let waiting = std::mem::take(&mut self.waiting);
        cipher
            .seal(&waiting, self.out.buf())
            .map_err(LinkError::Record)?;
        self.stage = Stage::Established {
            cipher,
            decoder: RecordDecoder::new(),
        };
        Ok(rest)
    }
}

/// A failed handshake: queue the REFUSE frame (if this side detected the failure) for
/// the peer, and return the error.
fn refuse(handshake: &mut Handshake, out: &mut Outgoing, error: HandshakeError) -> LinkError {
    let _ = handshake.write_message(out.buf());
    LinkError::Handshake(error)
}

#[cfg(test)]
#[path = "link_tests.rs"]
mod tests;
