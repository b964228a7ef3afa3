//! Which data path carries a peer's frames, and why: VXLAN, the encrypted tunnel, a relay
//! through other peers, or none.
//!
//! Policy (from the password and `--trusted-subnets`, see [`PathPolicy::for_peer`]):
//! without a password, or for a peer whose underlay address is in a trusted subnet,
//! VXLAN (cleartext) is allowed; otherwise only the encrypted tunnel is, and a frame for
//! that peer never crosses the underlay in clear.
//!
//! Choice, by preference: VXLAN (when allowed) > encrypted > relayed > none (relaying is
//! the last resort, also for a neighbour whose control connection works while both of its
//! direct data paths fail). A path in use
//! is kept until its heartbeats fail ([`PathState::Down`]); a path not in use is entered
//! once its heartbeats have worked for [`PathSelectorConfig::hold`] (hysteresis: a path
//! that flaps does not drag traffic back and forth), or optimistically while it has
//! never failed (so a new peer starts on VXLAN, and a fallback to a fresh tunnel is
//! immediate). The hold never leaves a peer with no path: when nothing held is usable,
//! any path not down is taken at once (no traffic flows to drag). With the monitor
//! defaults (ping every 1 s, down after 3 s without a pong) a blocked VXLAN path moves to
//! the tunnel within 3 s, and back after VXLAN has answered for the hold time (3 s by
//! default). The router must keep both monitors running whatever the choice, so a
//! recovered path is noticed.
//!
//! Pure: inputs are the two [`PathState`]s, whether a relay route exists, and `now`;
//! outputs are [`PathSelector::choice`], [`PathChange`] events and a hold timer.

use std::collections::VecDeque;
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use ipnet::IpNet;

use crate::monitor::PathState;

/// Changes kept for [`PathSelector::poll_event`]; older ones are dropped first.
const EVENT_QUEUE: usize = 8;

/// A data path to a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Path {
    /// VXLAN over UDP 4789: fast, cleartext.
    Vxlan,
    /// weft's encrypted tunnel over UDP 6784.
    Encrypted,
    /// Hop by hop through other peers (each hop on its own direct path).
    Relayed,
    /// No way to reach the peer now.
    None,
}

impl Path {
    /// The word `weft status connections` shows.
    pub fn name(self) -> &'static str {
        match self {
            Self::Vxlan => "vxlan",
            Self::Encrypted => "encrypted",
            Self::Relayed => "relayed",
            Self::None => "none",
        }
    }
}

/// Why a path was chosen (shown next to it in status).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PathReason {
    /// No mesh password: VXLAN is allowed.
    NoPassword,
    /// A password is set but the peer's underlay address is in this trusted subnet.
    TrustedSubnet(IpNet),
    /// A password is set and the peer is not trusted: encrypted only.
    PasswordSet,
    /// VXLAN is allowed but its heartbeats failed (UDP 4789 blocked, a middlebox).
    VxlanHeartbeatsFailed,
    /// VXLAN is allowed but has not been confirmed working for the hold time.
    VxlanUnconfirmed,
    /// Neither direct path works; a relay route exists.
    NoDirectPath,
    /// The direct paths worked once and their heartbeats have failed since (UDP blocked
    /// both ways while the control connection lives); a relay route exists.
    DirectPathsFailed,
    /// Neither direct path works and no relay route exists.
    Unreachable,
}

impl fmt::Display for PathReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoPassword => f.write_str("no password"),
            Self::TrustedSubnet(net) => write!(f, "trusted subnet {net}"),
            Self::PasswordSet => f.write_str("password set"),
            Self::VxlanHeartbeatsFailed => f.write_str("vxlan heartbeats failed"),
            Self::VxlanUnconfirmed => f.write_str("vxlan not confirmed yet"),
            Self::NoDirectPath => f.write_str("no direct path"),
            Self::DirectPathsFailed => f.write_str("direct path heartbeats failed"),
            Self::Unreachable => f.write_str("no direct path and no relay route"),
        }
    }
}

/// What a peer's traffic may use, fixed by configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PathPolicy {
    /// VXLAN allowed, for this reason ([`PathReason::NoPassword`] or
    /// [`PathReason::TrustedSubnet`]).
    CleartextAllowed(PathReason),
    /// A password is set and the peer is untrusted: never cleartext.
    EncryptedOnly,
}

impl PathPolicy {
    /// The policy for a peer at underlay address `peer`.
    pub fn for_peer(password_set: bool, peer: IpAddr, trusted_subnets: &[IpNet]) -> Self {
        if !password_set {
            return Self::CleartextAllowed(PathReason::NoPassword);
        }
        match trusted_subnets.iter().find(|net| net.contains(&peer)) {
            Some(net) => Self::CleartextAllowed(PathReason::TrustedSubnet(*net)),
            None => Self::EncryptedOnly,
        }
    }

    /// Whether a password protects this peer's tunnel keys.
    fn password_set(self) -> bool {
        !matches!(self, Self::CleartextAllowed(PathReason::NoPassword))
    }
}

/// Timers of a [`PathSelector`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathSelectorConfig {
    /// How long a path not in use must have answered heartbeats before traffic moves to it.
    pub hold: Duration,
}

impl Default for PathSelectorConfig {
    fn default() -> Self {
        Self {
            hold: Duration::from_secs(3),
        }
    }
}

/// The current choice for one peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PathChoice {
    /// The path frames take.
    pub path: Path,
    /// Why.
    pub reason: PathReason,
    /// For [`Path::Encrypted`]: whether the tunnel keys are password-authenticated (false:
    /// they stop passive capture only).
    pub authenticated: bool,
}

impl fmt::Display for PathChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.path.name(), self.reason)?;
        if self.path == Path::Encrypted && !self.authenticated {
            f.write_str(" [unauthenticated: stops passive capture only]")?;
        }
        Ok(())
    }
}

/// A change of choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathChange {
    /// The choice before.
    pub from: PathChoice,
    /// The choice now.
    pub to: PathChoice,
    /// When it changed.
    pub at: Instant,
}

/// What the selector knows about one direct path.
#[derive(Debug, Clone, Copy, Default)]
struct Track {
    state: Option<PathState>,
    up_since: Option<Instant>,
    ever_down: bool,
    ever_up: bool,
    /// It went down after having worked (not merely never answered).
    failed_after_up: bool,
}

impl Track {
    fn update(&mut self, now: Instant, state: PathState) {
        match state {
            PathState::Up { .. } => {
                self.up_since.get_or_insert(now);
                self.ever_up = true;
            }
            PathState::Down { .. } => {
                self.up_since = None;
                self.ever_down = true;
                self.failed_after_up |= self.ever_up;
            }
            PathState::Unknown => self.up_since = None,
        }
        self.state = Some(state);
    }

    fn is_down(&self) -> bool {
        matches!(self.state, Some(PathState::Down { .. }))
    }

    /// Whether traffic may move onto this path at `now`.
    fn enterable(&self, now: Instant, hold: Duration) -> bool {
        if self.is_down() {
            return false;
        }
        let held = self.up_since.is_some_and(|t| now >= t + hold);
        held || !self.ever_down
    }
}

/// Path choice for one peer (see the module docs).
#[derive(Debug, Clone)]
pub struct PathSelector {
    config: PathSelectorConfig,
    policy: PathPolicy,
    vxlan: Track,
    tunnel: Track,
    relay_route: bool,
    choice: PathChoice,
    events: VecDeque<PathChange>,
}

impl PathSelector {
    /// A selector for a newly connected peer: it starts on VXLAN where allowed, else on
    /// the encrypted tunnel.
    pub fn new(policy: PathPolicy, config: PathSelectorConfig, now: Instant) -> Self {
        let mut s = Self {
            config,
            policy,
            vxlan: Track::default(),
            tunnel: Track::default(),
            relay_route: false,
            choice: PathChoice {
                path: Path::None,
                reason: PathReason::Unreachable,
                authenticated: policy.password_set(),
            },
            events: VecDeque::with_capacity(EVENT_QUEUE),
        };
        s.choice = s.evaluate(now);
        s
    }

    /// The current choice.
    pub fn choice(&self) -> PathChoice {
        self.choice
    }

    /// The policy in force.
    pub fn policy(&self) -> PathPolicy {
        self.policy
    }

    /// Feeds the latest monitor states and whether a relay route to the peer exists.
    pub fn handle_update(
        &mut self,
        now: Instant,
        vxlan: PathState,
        tunnel: PathState,
        relay_route: bool,
    ) {
        self.vxlan.update(now, vxlan);
        self.tunnel.update(now, tunnel);
        self.relay_route = relay_route;
        self.reselect(now);
    }

    /// Replaces the policy (password or trusted subnets changed).
    pub fn set_policy(&mut self, now: Instant, policy: PathPolicy) {
        self.policy = policy;
        self.reselect(now);
    }

    /// The next choice change, if any.
    pub fn poll_event(&mut self) -> Option<PathChange> {
        self.events.pop_front()
    }

    /// When a hold time runs out and the choice may change without new input.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let hold = self.config.hold;
        [&self.vxlan, &self.tunnel]
            .into_iter()
            .filter_map(|t| t.up_since.map(|s| s + hold))
            .filter(|&t| !self.is_settled_at(t))
            .min()
    }

    /// Re-evaluates at `now` (a hold time may have run out).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.reselect(now);
    }

    /// Whether nothing better than the current choice can come from a hold expiring at
    /// `t` (the current path is already the most preferred that would be entered).
    fn is_settled_at(&self, t: Instant) -> bool {
        self.evaluate(t).path == self.choice.path
    }

    fn reselect(&mut self, now: Instant) {
        let next = self.evaluate(now);
        if next != self.choice {
            if self.events.len() >= EVENT_QUEUE {
                self.events.pop_front();
            }
            self.events.push_back(PathChange {
                from: self.choice,
                to: next,
                at: now,
            });
            self.choice = next;
        }
    }

    fn evaluate(&self, now: Instant) -> PathChoice {
        let held = self.pick(now, true);
        if held.path != Path::None {
            return held;
        }
        // Hysteresis guards flowing traffic; with none flowing, a path that is not down
        // beats no path.
        self.pick(now, false)
    }

    /// The most preferred usable path; `hold`: whether a path not in use must have
    /// answered for the hold time first.
    fn pick(&self, now: Instant, hold: bool) -> PathChoice {
        let current = self.choice.path;
        let usable = |track: &Track, path: Path| {
            if current == path || !hold {
                !track.is_down()
            } else {
                track.enterable(now, self.config.hold)
            }
        };
        let authenticated = self.policy.password_set();
        let choose = |path, reason| PathChoice {
            path,
            reason,
            authenticated,
        };
        if let PathPolicy::CleartextAllowed(reason) = self.policy
            && usable(&self.vxlan, Path::Vxlan)
        {
            return choose(Path::Vxlan, reason);
        }
        if usable(&self.tunnel, Path::Encrypted) {
            let reason = match self.policy {
                PathPolicy::EncryptedOnly => PathReason::PasswordSet,
                PathPolicy::CleartextAllowed(_) if self.vxlan.ever_down => {
                    PathReason::VxlanHeartbeatsFailed
                }
                PathPolicy::CleartextAllowed(_) => PathReason::VxlanUnconfirmed,
            };
            return choose(Path::Encrypted, reason);
        }
        if self.relay_route {
            let vxlan_failed = matches!(self.policy, PathPolicy::CleartextAllowed(_))
                && self.vxlan.failed_after_up;
            let reason = if vxlan_failed || self.tunnel.failed_after_up {
                PathReason::DirectPathsFailed
            } else {
                PathReason::NoDirectPath
            };
            choose(Path::Relayed, reason)
        } else {
            choose(Path::None, PathReason::Unreachable)
        }
    }
}

#[cfg(test)]
#[path = "path_tests.rs"]
mod tests;
