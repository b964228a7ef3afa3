//! The encrypted tunnel ("sleeve"): weft's own UDP transport for peers whose traffic must
//! not cross the underlay in clear, or whose VXLAN path is blocked.
//!
//! WireGuard's data plane keyed by a Noise handshake run over the mesh's TCP control
//! connection (Weave's architecture, WireGuard's pieces):
//!
//! - [`password`]: the pre-shared key, Argon2id of the mesh password.
//! - [`identity`]: each router's persisted X25519 static key.
//! - [`handshake`]: the control connection's key exchange (`Noise_XXpsk3` with a password,
//!   `Noise_XX` without), with a clear refusal so both ends learn why a peer was refused.
//! - [`control`]: the record layer that encrypts every control byte after the handshake.
//! - [`session`]: per peer pair data-plane keys, ChaCha20-Poly1305 seal/open in place,
//!   the replay window ([`replay`]) and key epochs (rekeying by ratchet).
//! - [`datagram`]: the tunnel datagram format, packing frames into datagrams, relaying
//!   metadata, in-tunnel heartbeats and TSO super-frames cut into one GSO batch.
//! - [`drop_reason`]: every reason a datagram is refused, as counter names.
//!
//! Contract: no I/O, threads or clock reads; time arrives as `Instant` parameters. The one
//! source of randomness is key generation inside `snow`/`ring` (Noise ephemeral keys and
//! [`identity::StaticKeypair::generate`] use the operating system's RNG through `ring`);
//! session indices come from the caller. Every primitive comes from `ring`, `snow` or
//! `argon2`; nothing here implements one. Nothing panics on input from the network.

pub mod control;
pub mod datagram;
pub mod drop_reason;
pub mod handshake;
pub mod identity;
pub mod password;
pub mod replay;
pub mod session;

pub use control::{ControlCipher, ControlError, RecordDecoder};
pub use datagram::{
    ClearHeader, DatagramBuilder, DatagramKind, FrameFlags, FrameHeader, Frames, PushError,
    SendError, TUNNEL_OVERHEAD, TUNNEL_OVERHEAD_V6, frames, parse_heartbeat, seal_heartbeat,
    seal_super_frame,
};
pub use drop_reason::TunnelDrop;
pub use handshake::{Handshake, HandshakeError, HandshakeOutcome, HandshakePayload, Role};
pub use identity::{KeyError, StaticKeypair};
pub use password::{PasswordError, psk_from_password};
pub use replay::ReplayWindow;
pub use session::{Opened, SealError, SessionConfig, SessionCounters, TunnelKeys, TunnelSession};
