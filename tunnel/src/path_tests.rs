use super::*;
use crate::heartbeat::{Heartbeat, HeartbeatKind};
use crate::monitor::{PathMonitor, PathMonitorConfig};

const ME: [u8; 6] = [1, 0, 0, 0, 0, 1];

fn s(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A link whose peer answers every ping instantly while `up(elapsed)` says so.
struct Link<F: Fn(Duration) -> bool> {
    monitor: PathMonitor,
    up: F,
}

impl<F: Fn(Duration) -> bool> Link<F> {
    fn new(t0: Instant, up: F) -> Self {
        Self {
            monitor: PathMonitor::new(ME, PathMonitorConfig::default(), t0),
            up,
        }
    }

    fn step(&mut self, t0: Instant, now: Instant) {
        self.monitor.handle_timeout(now);
        while let Some(hb) = self.monitor.poll_transmit(now) {
            if hb.kind == HeartbeatKind::Ping && (self.up)(now - t0) {
                let pong = Heartbeat {
                    kind: HeartbeatKind::Pong,
                    sender: [2; 6],
                    ..hb
                };
                self.monitor.handle_pong(now, &pong);
            }
        }
    }
}

/// Runs `selector` for `until` of virtual time over the two simulated links; returns every
/// change with its time since start.
fn simulate(
    selector: &mut PathSelector,
    t0: Instant,
    vxlan_up: impl Fn(Duration) -> bool,
    tunnel_up: impl Fn(Duration) -> bool,
    relay: impl Fn(Duration) -> bool,
    until: Duration,
) -> Vec<(Duration, PathChoice)> {
    let mut vx = Link::new(t0, vxlan_up);
    let mut tu = Link::new(t0, tunnel_up);
    let mut now = t0;
    let mut changes = Vec::new();
    while now < t0 + until {
        vx.step(t0, now);
        tu.step(t0, now);
        selector.handle_timeout(now);
        selector.handle_update(now, vx.monitor.state(), tu.monitor.state(), relay(now - t0));
        while let Some(c) = selector.poll_event() {
            assert_ne!(c.from, c.to);
            changes.push((c.at - t0, c.to));
        }
        let next = vx
            .monitor
            .poll_timeout()
            .min(tu.monitor.poll_timeout())
            .min(selector.poll_timeout().unwrap_or(t0 + until));
        now = next.max(now + ms(1));
    }
    changes
}

fn no_password() -> PathPolicy {
    PathPolicy::for_peer(false, "192.0.2.7".parse().unwrap(), &[])
}

fn password_untrusted() -> PathPolicy {
    PathPolicy::for_peer(
        true,
        "192.0.2.7".parse().unwrap(),
        &["10.0.0.0/8".parse().unwrap()],
    )
}

#[test]
fn vxlan_failure_falls_back_within_5s_and_returns_after_the_hold() {
    let t0 = Instant::now();
    let cfg = PathSelectorConfig::default();
    let mut sel = PathSelector::new(no_password(), cfg, t0);
    assert_eq!(sel.choice().path, Path::Vxlan);
    assert_eq!(sel.choice().reason, PathReason::NoPassword);
    let blocked = |t: Duration| t >= s(10) && t < s(30);
    let changes = simulate(&mut sel, t0, |t| !blocked(t), |_| true, |_| true, s(60));
    assert_eq!(changes.len(), 2, "{changes:?}");
    let (fell, enc) = changes[0];
    assert_eq!(enc.path, Path::Encrypted);
    assert_eq!(enc.reason, PathReason::VxlanHeartbeatsFailed);
    assert!(!enc.authenticated);
    assert!(fell > s(10) && fell <= s(15), "fell back at {fell:?}");
    let (back, vx) = changes[1];
    assert_eq!((vx.path, vx.reason), (Path::Vxlan, PathReason::NoPassword));
    // VXLAN answers again from 30 s (first ping then at 30 s at the latest + 1 s).
    assert!(
        back >= s(30) + cfg.hold && back <= s(31) + cfg.hold,
        "back at {back:?}"
    );
}

#[test]
fn flapping_vxlan_does_not_drag_traffic_back() {
    let t0 = Instant::now();
    let cfg = PathSelectorConfig { hold: s(5) };
    let mut sel = PathSelector::new(no_password(), cfg, t0);
    // Blocked from 10 s; then only every 6th ping is answered (up ~3 s, down ~3 s).
    let vxlan = |t: Duration| t < s(10) || (t >= s(20) && t.as_secs().is_multiple_of(6));
    let changes = simulate(&mut sel, t0, vxlan, |_| true, |_| true, s(80));
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0].1.path, Path::Encrypted);
}

#[test]
fn password_set_never_uses_vxlan_unless_trusted() {
    let t0 = Instant::now();
    let mut sel = PathSelector::new(password_untrusted(), PathSelectorConfig::default(), t0);
    let first = sel.choice();
    assert_eq!(
        (first.path, first.reason),
        (Path::Encrypted, PathReason::PasswordSet)
    );
    assert!(first.authenticated);
    // VXLAN works perfectly the whole time; the tunnel fails from 20 s to 40 s.
    let tunnel = |t: Duration| t < s(20) || t >= s(40);
    let changes = simulate(&mut sel, t0, |_| true, tunnel, |t| t < s(30), s(70));
    assert!(
        changes.iter().all(|(_, c)| c.path != Path::Vxlan),
        "{changes:?}"
    );
    let paths: Vec<_> = changes.iter().map(|(_, c)| c.path).collect();
    assert_eq!(paths, [Path::Relayed, Path::None, Path::Encrypted]);
    // The tunnel worked before it failed: the reason says so.
    assert_eq!(changes[0].1.reason, PathReason::DirectPathsFailed);
    assert_eq!(changes[1].1.reason, PathReason::Unreachable);
    assert!(changes[0].0 <= s(25));
    // Back on the tunnel as soon as it answers: no path is worse than an unconfirmed one.
    assert!(
        changes[2].0 >= s(40) && changes[2].0 <= s(41),
        "{changes:?}"
    );

    let trusted = PathPolicy::for_peer(
        true,
        "10.1.2.3".parse().unwrap(),
        &["10.0.0.0/8".parse().unwrap()],
    );
    let sel = PathSelector::new(trusted, PathSelectorConfig::default(), t0);
    assert_eq!(sel.choice().path, Path::Vxlan);
    assert_eq!(sel.choice().reason.to_string(), "trusted subnet 10.0.0.0/8");
}

#[test]
fn relay_is_the_last_resort() {
    let t0 = Instant::now();
    let mut sel = PathSelector::new(no_password(), PathSelectorConfig::default(), t0);
    // Nothing direct ever works; a relay route exists from 10 s.
    let changes = simulate(&mut sel, t0, |_| false, |_| false, |t| t >= s(10), s(20));
    let paths: Vec<_> = changes.iter().map(|(t, c)| (c.path, *t)).collect();
    // VXLAN goes down at 3 s; the tunnel (never answered) is down too: none, then relayed.
    assert_eq!(paths.len(), 2, "{paths:?}");
    assert_eq!(paths[0], (Path::None, s(3)));
    assert_eq!(paths[1], (Path::Relayed, s(10)));
    assert_eq!(sel.choice().reason.to_string(), "no direct path");
}

#[test]
fn direct_tunnel_beats_relay_and_vxlan_beats_tunnel() {
    let t0 = Instant::now();
    let mut sel = PathSelector::new(no_password(), PathSelectorConfig::default(), t0);
    let down = PathState::Down { since: t0 };
    let up = PathState::Up { rtt: ms(1) };
    sel.handle_update(t0, down, down, true);
    assert_eq!(sel.choice().path, Path::Relayed);
    // The tunnel answers: entered only after the hold, since it has failed before.
    sel.handle_update(t0 + s(1), down, up, true);
    assert_eq!(sel.choice().path, Path::Relayed);
    assert_eq!(sel.poll_timeout(), Some(t0 + s(4)));
    sel.handle_timeout(t0 + s(4));
    assert_eq!(sel.choice().path, Path::Encrypted);
    assert_eq!(sel.choice().reason, PathReason::VxlanHeartbeatsFailed);
    // VXLAN too: after its own hold.
    sel.handle_update(t0 + s(5), up, up, true);
    assert_eq!(sel.choice().path, Path::Encrypted);
    sel.handle_timeout(t0 + s(8));
    assert_eq!(sel.choice().path, Path::Vxlan);
    assert_eq!(sel.poll_timeout(), None, "nothing better to wait for");
    let events: Vec<_> = std::iter::from_fn(|| sel.poll_event())
        .map(|e| e.to.path)
        .collect();
    assert_eq!(events, [Path::Relayed, Path::Encrypted, Path::Vxlan]);
}

#[test]
fn policy_and_display() {
    let peer = "10.9.8.7".parse().unwrap();
    let nets: Vec<IpNet> = vec![
        "192.168.0.0/16".parse().unwrap(),
        "10.0.0.0/8".parse().unwrap(),
    ];
    assert_eq!(
        PathPolicy::for_peer(false, peer, &nets),
        PathPolicy::CleartextAllowed(PathReason::NoPassword)
    );
    assert_eq!(
        PathPolicy::for_peer(true, peer, &nets),
        PathPolicy::CleartextAllowed(PathReason::TrustedSubnet(nets[1]))
    );
    assert_eq!(
        PathPolicy::for_peer(true, "11.0.0.1".parse().unwrap(), &nets),
        PathPolicy::EncryptedOnly
    );
    let v6: IpNet = "fd00::/8".parse().unwrap();
    assert_eq!(
        PathPolicy::for_peer(true, "fd12::1".parse().unwrap(), &[v6]),
        PathPolicy::CleartextAllowed(PathReason::TrustedSubnet(v6))
    );
    let reasons = [
        (PathReason::NoPassword, "no password"),
        (PathReason::PasswordSet, "password set"),
        (PathReason::VxlanHeartbeatsFailed, "vxlan heartbeats failed"),
        (PathReason::NoDirectPath, "no direct path"),
        (
            PathReason::DirectPathsFailed,
            "direct path heartbeats failed",
        ),
    ];
    for (r, text) in reasons {
        assert_eq!(r.to_string(), text);
    }
    let open = PathChoice {
        path: Path::Encrypted,
        reason: PathReason::VxlanHeartbeatsFailed,
        authenticated: false,
    };
    assert_eq!(
        open.to_string(),
        "encrypted (vxlan heartbeats failed) [unauthenticated: stops passive capture only]"
    );
    let auth = PathChoice {
        authenticated: true,
        reason: PathReason::PasswordSet,
        ..open
    };
    assert_eq!(auth.to_string(), "encrypted (password set)");
    assert_eq!(Path::Relayed.name(), "relayed");
}

#[test]
fn changing_policy_to_password_leaves_vxlan_at_once() {
    let t0 = Instant::now();
    let mut sel = PathSelector::new(no_password(), PathSelectorConfig::default(), t0);
    let up = PathState::Up { rtt: ms(1) };
    sel.handle_update(t0, up, up, false);
    assert_eq!(sel.choice().path, Path::Vxlan);
    sel.set_policy(t0 + s(1), password_untrusted());
    assert_eq!(sel.choice().path, Path::Encrypted);
    assert_eq!(
        sel.poll_event().map(|e| e.to.reason),
        Some(PathReason::PasswordSet)
    );
}

#[test]
fn a_neighbour_whose_direct_paths_both_fail_is_relayed_and_returns() {
    let t0 = Instant::now();
    let cfg = PathSelectorConfig::default();
    let mut sel = PathSelector::new(no_password(), cfg, t0);
    // UDP is blocked both ways from 10 s to 30 s: VXLAN and the tunnel fail together, and
    // a common neighbour offers a relay the whole time.
    let blocked = |t: Duration| t >= s(10) && t < s(30);
    let changes = simulate(
        &mut sel,
        t0,
        |t| !blocked(t),
        |t| !blocked(t),
        |_| true,
        s(60),
    );
    let seen: Vec<_> = changes
        .iter()
        .map(|(t, c)| (c.path, c.reason, *t))
        .collect();
    assert_eq!(seen.len(), 2, "{seen:?}");
    let (path, reason, fell) = seen[0];
    assert_eq!(
        (path, reason),
        (Path::Relayed, PathReason::DirectPathsFailed)
    );
    assert!(fell > s(10) && fell <= s(13), "relayed at {fell:?}");
    // Back to VXLAN once it has answered for the hold time; never through "none".
    let (path, _, back) = seen[1];
    assert_eq!(path, Path::Vxlan);
    assert!(
        back >= s(30) + cfg.hold && back <= s(31) + cfg.hold,
        "back at {back:?}"
    );
}

#[test]
fn a_fallback_never_waits_for_the_hold_when_the_alternative_is_no_path() {
    let t0 = Instant::now();
    let cfg = PathSelectorConfig::default();
    let mut sel = PathSelector::new(no_password(), cfg, t0);
    let up = PathState::Up { rtt: ms(1) };
    let down = PathState::Down { since: t0 };
    // The tunnel did not exist at first (fed as down), then answers from 1 s; VXLAN fails
    // at 2 s, before the tunnel has answered for the hold time.
    sel.handle_update(t0, up, down, false);
    sel.handle_update(t0 + s(1), up, up, false);
    sel.handle_update(t0 + s(2), down, up, false);
    assert_eq!(sel.choice().path, Path::Encrypted);
    let events: Vec<_> = std::iter::from_fn(|| sel.poll_event())
        .map(|e| e.to.path)
        .collect();
    assert_eq!(events, [Path::Encrypted], "no detour through none");
    // With a relay to carry traffic meanwhile, the hold applies as before.
    let mut sel = PathSelector::new(no_password(), cfg, t0);
    sel.handle_update(t0, up, down, true);
    sel.handle_update(t0 + s(1), up, up, true);
    sel.handle_update(t0 + s(2), down, up, true);
    assert_eq!(sel.choice().path, Path::Relayed);
    sel.handle_timeout(t0 + s(4));
    assert_eq!(sel.choice().path, Path::Encrypted);
}
