//! Node configuration: identity, ports, limits and timers, with weft's defaults.
//!
//! Contract: [`MeshConfig::new`] gives the defaults; `Mesh::new` refuses a configuration
//! that [`MeshConfig::validate`] rejects, so every timer is non-zero and at most a day
//! (deadline arithmetic cannot overflow), limits are non-zero, and the frame and gossip
//! batch sizes are consistent.

use std::time::Duration;

use crate::codec::DEFAULT_MAX_FRAME_LEN;
use crate::maker::Backoff;
use crate::peer::{Nickname, PeerName};
use crate::protocol::{DEFAULT_LISTEN_PORT, DEFAULT_TUNNEL_PORT, DEFAULT_VXLAN_PORT};

/// Timer settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// A connection must deliver its Hello within this long.
    pub handshake_timeout: Duration,
    /// Send a Keepalive after this long without sending anything.
    pub keepalive_interval: Duration,
    /// Close a connection after this long without receiving anything.
    pub keepalive_timeout: Duration,
    /// Period of the anti-entropy digest exchange.
    pub anti_entropy_interval: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
            keepalive_interval: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(35),
            anti_entropy_interval: Duration::from_secs(30),
        }
    }
}

/// Everything a node needs to start; see [`MeshConfig::new`] for the defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct MeshConfig {
    /// Our stable name (persisted by the caller).
    pub name: PeerName,
    /// Our human label.
    pub nickname: Nickname,
    /// Random per process run.
    pub uid: u64,
    /// Our control (TCP) port, announced in Hello.
    pub listen_port: u16,
    /// Our VXLAN (UDP) port, announced in Hello.
    pub vxlan_port: u16,
    /// Our encrypted-tunnel (UDP) port, announced in Hello.
    pub tunnel_port: u16,
    /// Feature bits announced in Hello.
    pub features: u32,
    /// Most control connections at once, inbound and outbound (default 64).
    pub conn_limit: usize,
    /// Whether to dial addresses found in other peers' records (default true).
    pub discovery: bool,
    /// Stop dialling *discovered* targets once we have this many connections (default 24):
    /// a bounded-degree mesh routes through neighbours instead of connecting everyone to
    /// everyone (gossip cost per change grows with degree). Peers end up with between this
    /// and about twice this many connections; keep it well under `conn_limit` so there is
    /// room for inbound and explicit connections (a full peer cannot be joined through).
    pub discovery_degree: usize,
    /// Inbound connections accepted at once before rate limiting (default 20).
    pub accept_burst: u32,
    /// Inbound connections accepted per second after the burst (default 20).
    pub accept_rate: f64,
    /// Timer settings.
    pub timers: Timers,
    /// Connection-maker retry timing.
    pub backoff: Backoff,
    /// Neighbours per anti-entropy round (default 2).
    pub anti_entropy_fanout: usize,
    /// Largest frame body accepted (default 4 MiB).
    pub max_frame_len: usize,
    /// Soft size limit of one outgoing gossip frame (default 1 MiB).
    pub gossip_batch_len: usize,
}

impl MeshConfig {
    /// A configuration with weft's defaults.
    pub fn new(name: PeerName, nickname: Nickname, uid: u64) -> Self {
        Self {
            name,
            nickname,
            uid,
            listen_port: DEFAULT_LISTEN_PORT,
            vxlan_port: DEFAULT_VXLAN_PORT,
            tunnel_port: DEFAULT_TUNNEL_PORT,
            features: 0,
            conn_limit: 64,
            discovery: true,
            discovery_degree: 24,
            accept_burst: 20,
            accept_rate: 20.0,
            timers: Timers::default(),
            backoff: Backoff::default(),
            anti_entropy_fanout: 2,
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            gossip_batch_len: 1024 * 1024,
        }
    }

    /// Checks the invariants listed in the module doc.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |why: String| Err(ConfigError(why));
        if self.conn_limit == 0 {
            return invalid("conn_limit must be at least 1".into());
        }
        let t = &self.timers;
        if t.keepalive_timeout <= t.keepalive_interval {
            return invalid(format!(
                "keepalive_timeout ({:?}) must exceed keepalive_interval ({:?})",
                t.keepalive_timeout, t.keepalive_interval
            ));
        }
        let day = Duration::from_secs(24 * 3600);
        let timers = [
            t.handshake_timeout,
            t.keepalive_interval,
            t.keepalive_timeout,
            t.anti_entropy_interval,
            self.backoff.max,
            self.backoff.reset_after,
        ];
        if timers.iter().any(|d| d.is_zero() || *d > day) {
            return invalid("timers and backoff bounds must be between 0 and one day".into());
        }
        if self.max_frame_len < 1024 || u32::try_from(self.max_frame_len).is_err() {
            return invalid(format!(
                "max_frame_len {} must be between 1 KiB and 4 GiB",
                self.max_frame_len
            ));
        }
        if self.gossip_batch_len == 0 || self.gossip_batch_len > self.max_frame_len / 2 {
            return invalid(format!(
                "gossip_batch_len {} must be between 1 and half of max_frame_len",
                self.gossip_batch_len
            ));
        }
        let b = &self.backoff;
        let sane = b.multiplier.is_finite()
            && b.multiplier >= 1.0
            && (0.0..=1.0).contains(&b.jitter)
            && !b.initial.is_zero()
            && b.max >= b.initial;
        if !sane {
            return invalid(
                "backoff needs multiplier ≥ 1, jitter in 0..=1 and 0 < initial ≤ max".into(),
            );
        }
        if !(self.accept_rate.is_finite() && self.accept_rate >= 0.0) {
            return invalid("accept_rate must be a finite, non-negative number".into());
        }
        Ok(())
    }
}

/// A rejected [`MeshConfig`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid mesh configuration: {0}")]
pub struct ConfigError(pub String);
