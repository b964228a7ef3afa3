//! Whether the VXLAN path to one peer works, from heartbeats, in virtual time.
//!
//! One [`PathMonitor`] per peer and path kind (the VXLAN fast path now; the encrypted
//! tunnel later). It pings every `interval`, answers the peer's pings with pongs, and
//! judges the path from pongs:
//!
//! - `Unknown` until the first pong, or until `timeout` has passed since the monitor
//!   started without one (then `Down`, so a path that never worked gets a verdict too);
//! - `Up { rtt }` while the last pong is younger than `timeout`;
//! - `Down { since }` once it is older (`since` = the moment that happened).
//!
//! A pong only counts if it answers a ping still outstanding (same sequence number and
//! echoed timestamp): late or forged pongs are counted and ignored. Pings unanswered after
//! `timeout` count as lost. Defaults (1 s, 3 s) let a fallback switch tunnels within 5 s
//! of heartbeats failing; all timers are configurable.
//!
//! quinn-proto shape: `handle_heartbeat`/`handle_ping`/`handle_pong` and `handle_timeout`
//! take input and time; `poll_transmit`, `poll_event` and `poll_timeout` give output. The
//! monitor never reads a clock: every `Instant` comes from the caller, so tests run
//! timelines in virtual time.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::heartbeat::{Heartbeat, HeartbeatKind};

/// Pongs waiting to be sent; more pings than this between two polls are not answered.
const PONG_QUEUE: usize = 4;

/// State changes kept for [`PathMonitor::poll_event`]; older ones are dropped first.
const EVENT_QUEUE: usize = 8;

/// Most pings tracked as outstanding, whatever the configuration.
const MAX_OUTSTANDING: usize = 1024;

/// Timers and probe size of a [`PathMonitor`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathMonitorConfig {
    /// Time between pings.
    pub interval: Duration,
    /// How long after the last pong (or after start) the path counts as down, and how
    /// long a ping waits for its pong before it counts as lost.
    pub timeout: Duration,
    /// Inner frame length pings and pongs are padded to (0: minimal). Set it to the
    /// overlay MTU + 14 to prove full-size frames pass, as Weave's fastdp heartbeat did.
    pub probe_len: usize,
}

impl Default for PathMonitorConfig {
    /// Ping every second, down after 3 s without a pong, minimal frames.
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(3),
            probe_len: 0,
        }
    }
}

/// What the monitor believes about the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathState {
    /// No verdict yet: no pong, and `timeout` has not passed since start.
    Unknown,
    /// A pong arrived within `timeout`; `rtt` is the latest round-trip time.
    Up {
        /// Round-trip time measured by the latest pong.
        rtt: Duration,
    },
    /// No pong for `timeout`.
    Down {
        /// When the path was declared down.
        since: Instant,
    },
}

/// A change of [`PathState`] between `Up` and `Down` (the fallback logic's input).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathEvent {
    /// The path works (again).
    Up {
        /// Round-trip time of the pong that proved it.
        rtt: Duration,
    },
    /// The path stopped working (or never worked).
    Down {
        /// When it was declared down.
        since: Instant,
    },
}

/// Heartbeat counts for `weft status` and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PathCounters {
    /// Pings handed out by `poll_transmit`.
    pub pings_sent: u64,
    /// Pings received from the peer.
    pub pings_received: u64,
    /// Pongs handed out by `poll_transmit`.
    pub pongs_sent: u64,
    /// Pongs that answered an outstanding ping.
    pub pongs_received: u64,
    /// Pings with no pong within `timeout`.
    pub lost: u64,
    /// Pongs matching no outstanding ping (late, duplicated or forged).
    pub pongs_unmatched: u64,
    /// Pings not answered because the pong queue was full.
    pub pongs_dropped: u64,
}

/// A ping waiting for its pong.
#[derive(Debug, Clone, Copy)]
struct Outstanding {
    seq: u64,
    sent: Instant,
    timestamp_ns: u64,
}

/// Heartbeat state machine for one peer's path (see the module docs).
#[derive(Debug, Clone)]
pub struct PathMonitor {
    config: PathMonitorConfig,
    local: [u8; 6],
    /// Monotonic zero for heartbeat timestamps; also when the monitor started.
    epoch: Instant,
    next_ping: Instant,
    next_seq: u64,
    /// Pings tracked at most: enough for every ping that can be younger than `timeout`.
    max_outstanding: usize,
    outstanding: VecDeque<Outstanding>,
    pongs: VecDeque<Heartbeat>,
    events: VecDeque<PathEvent>,
    last_pong: Option<Instant>,
    state: PathState,
    counters: PathCounters,
}

impl PathMonitor {
    /// A monitor for the router named `local` (its peer name goes into every heartbeat),
    /// started at `now`; the first ping is due immediately.
    pub fn new(local: [u8; 6], config: PathMonitorConfig, now: Instant) -> Self {
        let interval = config.interval.max(Duration::from_millis(1));
        let config = PathMonitorConfig { interval, ..config };
        let per_timeout = config.timeout.as_nanos() / interval.as_nanos();
        let tracked = usize::try_from(per_timeout)
            .unwrap_or(MAX_OUTSTANDING)
            .saturating_add(2)
            .min(MAX_OUTSTANDING);
        Self {
            config,
            local,
            epoch: now,
            next_ping: now,
            next_seq: 0,
            max_outstanding: tracked,
            outstanding: VecDeque::with_capacity(tracked),
            pongs: VecDeque::with_capacity(PONG_QUEUE),
            events: VecDeque::with_capacity(EVENT_QUEUE),
            last_pong: None,
            state: PathState::Unknown,
            counters: PathCounters::default(),
        }
    }

    /// The configuration in force (interval raised to at least 1 ms).
    pub fn config(&self) -> &PathMonitorConfig {
        &self.config
    }

    /// The current verdict.
    pub fn state(&self) -> PathState {
        self.state
    }

    /// Heartbeat counts so far.
    pub fn counters(&self) -> &PathCounters {
        &self.counters
    }

    /// Feeds a decoded heartbeat from this peer's path.
    pub fn handle_heartbeat(&mut self, now: Instant, heartbeat: &Heartbeat) {
        match heartbeat.kind {
            HeartbeatKind::Ping => self.handle_ping(now, heartbeat),
            HeartbeatKind::Pong => self.handle_pong(now, heartbeat),
        }
    }

    /// A ping from the peer: queue the pong that answers it.
    pub fn handle_ping(&mut self, _now: Instant, ping: &Heartbeat) {
        self.counters.pings_received += 1;
        if self.pongs.len() >= PONG_QUEUE {
            self.counters.pongs_dropped += 1;
            return;
        }
        self.pongs.push_back(Heartbeat {
            kind: HeartbeatKind::Pong,
            sender: self.local,
            seq: ping.seq,
            timestamp_ns: ping.timestamp_ns,
        });
    }

    /// A pong from the peer: if it answers an outstanding ping, the path is up.
    pub fn handle_pong(&mut self, now: Instant, pong: &Heartbeat) {
        let matching = self
            .outstanding
            .iter()
            .position(|o| o.seq == pong.seq && o.timestamp_ns == pong.timestamp_ns);
        let Some(ping) = matching.and_then(|i| self.outstanding.remove(i)) else {
            self.counters.pongs_unmatched += 1;
            return;
        };
        self.counters.pongs_received += 1;
        let rtt = now.saturating_duration_since(ping.sent);
        self.last_pong = Some(now);
        if !matches!(self.state, PathState::Up { .. }) {
            self.push_event(PathEvent::Up { rtt });
        }
        self.state = PathState::Up { rtt };
    }

    /// The next heartbeat to send at `now`, if any: pongs first, then a due ping. Encode
    /// it with [`Heartbeat::encode`] padded to `config().probe_len`, behind a VXLAN header.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Heartbeat> {
        if let Some(pong) = self.pongs.pop_front() {
            self.counters.pongs_sent += 1;
            return Some(pong);
        }
        if now < self.next_ping {
            return None;
        }
        // Catch up by at most one interval after a stall, never with a burst.
        self.next_ping += self.config.interval;
        if self.next_ping <= now {
            self.next_ping = now + self.config.interval;
        }
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        let since_epoch = now.saturating_duration_since(self.epoch).as_nanos();
        let timestamp_ns = u64::try_from(since_epoch).unwrap_or(u64::MAX);
        if self.outstanding.len() >= self.max_outstanding {
            self.outstanding.pop_front();
            self.counters.lost += 1;
        }
        self.outstanding.push_back(Outstanding {
            seq,
            sent: now,
            timestamp_ns,
        });
        self.counters.pings_sent += 1;
        Some(Heartbeat {
            kind: HeartbeatKind::Ping,
            sender: self.local,
            seq,
            timestamp_ns,
        })
    }

    /// The next state change, if any happened since the last call.
    pub fn poll_event(&mut self) -> Option<PathEvent> {
        self.events.pop_front()
    }

    /// When [`PathMonitor::handle_timeout`] and [`PathMonitor::poll_transmit`] next have
    /// work: the next ping, a ping's expiry, or the path's down deadline.
    pub fn poll_timeout(&self) -> Instant {
        let mut t = self.next_ping;
        if let Some(o) = self.outstanding.front() {
            t = t.min(o.sent + self.config.timeout);
        }
        if let Some(deadline) = self.down_deadline() {
            t = t.min(deadline);
        }
        t
    }

    /// Advances timers to `now`: expires unanswered pings and declares the path down.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(o) = self.outstanding.front() {
            if o.sent + self.config.timeout > now {
                break;
            }
            self.outstanding.pop_front();
            self.counters.lost += 1;
        }
        if let Some(since) = self.down_deadline().filter(|&d| d <= now) {
            self.state = PathState::Down { since };
            self.push_event(PathEvent::Down { since });
        }
    }

    /// When the path goes down if no pong arrives, unless it is down already.
    fn down_deadline(&self) -> Option<Instant> {
        match self.state {
            PathState::Down { .. } => None,
            PathState::Up { .. } => self.last_pong.map(|t| t + self.config.timeout),
            PathState::Unknown => Some(self.epoch + self.config.timeout),
        }
    }

    fn push_event(&mut self, event: PathEvent) {
        if self.events.len() >= EVENT_QUEUE {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::heartbeat::MIN_FRAME_LEN;

    const A: [u8; 6] = [0xa, 0, 0, 0, 0, 1];
    const B: [u8; 6] = [0xb, 0, 0, 0, 0, 2];

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn pong_for(ping: &Heartbeat) -> Heartbeat {
        Heartbeat {
            kind: HeartbeatKind::Pong,
            sender: B,
            ..*ping
        }
    }

    #[test]
    fn pings_every_interval_and_goes_up_on_pong() {
        let t0 = Instant::now();
        let mut m = PathMonitor::new(A, PathMonitorConfig::default(), t0);
        assert_eq!(m.state(), PathState::Unknown);
        let ping = m.poll_transmit(t0).unwrap();
        assert_eq!(
            (ping.kind, ping.sender, ping.seq, ping.timestamp_ns),
            (HeartbeatKind::Ping, A, 0, 0)
        );
        assert_eq!(m.poll_transmit(t0), None);
        assert_eq!(m.poll_timeout(), t0 + ms(1000));

        m.handle_pong(t0 + ms(12), &pong_for(&ping));
        assert_eq!(m.state(), PathState::Up { rtt: ms(12) });
        assert_eq!(m.poll_event(), Some(PathEvent::Up { rtt: ms(12) }));
        assert_eq!(m.poll_event(), None);

        let second = m.poll_transmit(t0 + ms(1000)).unwrap();
        assert_eq!((second.seq, second.timestamp_ns), (1, 1_000_000_000));
        assert_eq!(m.counters().pings_sent, 2);
        assert_eq!(m.counters().pongs_received, 1);
    }

    #[test]
    fn goes_down_after_timeout_and_recovers() {
        let t0 = Instant::now();
        let mut m = PathMonitor::new(A, PathMonitorConfig::default(), t0);
        let mut now = t0;
        let mut downs = Vec::new();
        let mut ups = 0;
        // Run 20 s of virtual time; the peer stops answering between 5 s and 12 s.
        while now < t0 + ms(20_000) {
            let elapsed = now - t0;
            let answering = elapsed < ms(5_000) || elapsed >= ms(12_000);
            m.handle_timeout(now);
            while let Some(hb) = m.poll_transmit(now) {
                if answering {
                    m.handle_pong(now + ms(5), &pong_for(&hb));
                }
            }
            while let Some(e) = m.poll_event() {
                match e {
                    PathEvent::Down { since } => downs.push(since),
                    PathEvent::Up { .. } => ups += 1,
                }
            }
            now = m.poll_timeout().max(now + ms(1));
        }
        // The last answered ping went out at 4 s (pong at 4.005 s): down at 7.005 s.
        assert_eq!(downs, [t0 + ms(7_005)]);
        assert_eq!(ups, 2);
        assert!(matches!(m.state(), PathState::Up { rtt } if rtt == ms(5)));
        // Pings at 5..=11 s went unanswered.
        assert_eq!(m.counters().lost, 7);
    }

    #[test]
    fn a_path_that_never_works_goes_down_after_timeout() {
        let t0 = Instant::now();
        let mut m = PathMonitor::new(A, PathMonitorConfig::default(), t0);
        m.poll_transmit(t0);
        m.handle_timeout(t0 + ms(2_999));
        assert_eq!(m.state(), PathState::Unknown);
        assert_eq!(m.poll_timeout(), t0 + ms(1_000));
        m.poll_transmit(t0 + ms(1_000));
        m.poll_transmit(t0 + ms(2_000));
        assert_eq!(m.poll_timeout(), t0 + ms(3_000));
        m.handle_timeout(t0 + ms(3_000));
        let down = PathState::Down {
            since: t0 + ms(3_000),
        };
        assert_eq!(m.state(), down);
        assert_eq!(
            m.poll_event(),
            Some(PathEvent::Down {
                since: t0 + ms(3_000)
            })
        );
        // Staying down produces no more events.
        m.handle_timeout(t0 + ms(10_000));
        assert_eq!(m.poll_event(), None);
        assert_eq!(m.state(), down);
    }

    #[test]
    fn answers_pings_with_pongs_first() {
        let t0 = Instant::now();
        let mut m = PathMonitor::new(A, PathMonitorConfig::default(), t0);
        let their_ping = Heartbeat {
            kind: HeartbeatKind::Ping,
            sender: B,
            seq: 77,
            timestamp_ns: 123,
        };
        m.handle_heartbeat(t0, &their_ping);
        let first = m.poll_transmit(t0).unwrap();
        assert_eq!(
            first,
            Heartbeat {
                kind: HeartbeatKind::Pong,
                sender: A,
                seq: 77,
                timestamp_ns: 123
            }
        );
        assert_eq!(
            m.poll_transmit(t0).map(|h| h.kind),
            Some(HeartbeatKind::Ping)
        );
        // A flood of pings is answered only up to the queue size.
        for _ in 0..10 {
            m.handle_ping(t0, &their_ping);
        }
        let mut pongs = 0;
        while m.poll_transmit(t0).is_some() {
            pongs += 1;
        }
        assert_eq!(pongs, PONG_QUEUE);
        assert_eq!(m.counters().pongs_dropped, 10 - PONG_QUEUE as u64);
        // Answering pings alone never makes our path Up.
        assert_eq!(m.state(), PathState::Unknown);
    }

    #[test]
    fn unmatched_pongs_are_ignored() {
        let t0 = Instant::now();
        let mut m = PathMonitor::new(A, PathMonitorConfig::default(), t0);
        let ping = m.poll_transmit(t0).unwrap();
        let wrong_seq = Heartbeat {
            seq: 5,
            ..pong_for(&ping)
        };
        let wrong_ts = Heartbeat {
            timestamp_ns: 1,
            ..pong_for(&ping)
        };
        m.handle_pong(t0 + ms(1), &wrong_seq);
        m.handle_pong(t0 + ms(1), &wrong_ts);
        assert_eq!(m.state(), PathState::Unknown);
        assert_eq!(m.counters().pongs_unmatched, 2);
        // The real pong, and then a duplicate of it.
        m.handle_pong(t0 + ms(2), &pong_for(&ping));
        m.handle_pong(t0 + ms(3), &pong_for(&ping));
        assert_eq!(m.state(), PathState::Up { rtt: ms(2) });
        assert_eq!(m.counters().pongs_unmatched, 3);
        // A pong after its ping expired does not count.
        let late = m.poll_transmit(t0 + ms(1_000)).unwrap();
        m.handle_timeout(t0 + ms(4_000));
        m.handle_pong(t0 + ms(4_001), &pong_for(&late));
        assert!(matches!(m.state(), PathState::Down { .. }));
    }

    #[test]
    fn no_ping_burst_after_a_stall() {
        let t0 = Instant::now();
        let mut m = PathMonitor::new(A, PathMonitorConfig::default(), t0);
        m.poll_transmit(t0);
        let later = t0 + ms(10_500);
        assert!(m.poll_transmit(later).is_some());
        assert!(m.poll_transmit(later).is_none());
        m.handle_timeout(later);
        assert_eq!(m.poll_timeout(), later + ms(1_000));
    }

    #[test]
    fn two_monitors_over_a_lossy_link_in_virtual_time() {
        // A and B exchange encoded heartbeats; the link drops everything from 3 s to 9 s.
        let t0 = Instant::now();
        let cfg = PathMonitorConfig {
            probe_len: 1464,
            ..PathMonitorConfig::default()
        };
        let mut a = PathMonitor::new(A, cfg, t0);
        let mut b = PathMonitor::new(B, cfg, t0 + ms(300));
        let link_up = |t: Instant| t < t0 + ms(3_000) || t >= t0 + ms(9_000);
        let mut now = t0;
        let mut a_events = Vec::new();
        let mut buf = vec![0u8; 2048];
        while now < t0 + ms(15_000) {
            exchange(&mut a, &mut b, now, link_up(now), &mut buf);
            exchange(&mut b, &mut a, now, link_up(now), &mut buf);
            while let Some(e) = a.poll_event() {
                a_events.push((now - t0, e));
            }
            now = a.poll_timeout().min(b.poll_timeout()).max(now + ms(1));
        }
        let kinds: Vec<_> = a_events
            .iter()
            .map(|(_, e)| matches!(e, PathEvent::Up { .. }))
            .collect();
        assert_eq!(kinds, [true, false, true]);
        // Down within 5 s of the link failing, up within 1 s of it healing.
        assert!(a_events[1].0 <= ms(3_000 + 5_000));
        assert!(a_events[2].0 <= ms(9_000 + 1_000));
        assert!(b.counters().lost > 0 && a.counters().lost > 0);
    }

    /// Delivers `from`'s transmits at `now` to `to` if the link is up, through the codec.
    fn exchange(
        from: &mut PathMonitor,
        to: &mut PathMonitor,
        now: Instant,
        up: bool,
        buf: &mut [u8],
    ) {
        from.handle_timeout(now);
        while let Some(hb) = from.poll_transmit(now) {
            let n = hb.encode(from.config().probe_len, buf).unwrap();
            assert!(n == 1464 && n >= MIN_FRAME_LEN);
            if up {
                let got = Heartbeat::decode(&buf[..n]).unwrap();
                to.handle_heartbeat(now, &got);
            }
        }
    }
}
