//! Rate limits for log lines a remote party can trigger, so nobody on the underlay can
//! fill the disk by opening and closing connections (issue 13: 17 MB of log in 10 s).
//!
//! Sans-I/O: the caller passes `now`, asks [`LogLimiter::allow`] before logging an event
//! of some kind, logs the ones it refuses at debug level instead, and emits the summaries
//! [`LogLimiter::poll_summary`] hands out ("N connections refused in the last minute"),
//! waking up for them at [`LogLimiter::poll_timeout`]. Each kind has its own window: the
//! first [`LogLimiter::burst`] events of a window are logged one by one, the rest counted.
//! Memory is bounded by the number of kinds, which the caller names with constants.

use std::time::{Duration, Instant};

/// A kind of event: the words a summary says it in ("mesh connections refused").
pub(crate) type Kind = &'static str;

#[derive(Debug, Clone, Copy)]
struct Window {
    kind: Kind,
    ends: Instant,
    logged: u32,
    suppressed: u64,
}

/// A summary of events not logged one by one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Summary {
    /// What happened.
    pub kind: Kind,
    /// How many times beyond the ones logged.
    pub suppressed: u64,
    /// Over how long.
    pub window: Duration,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (n, unit) = if self.window.as_secs().is_multiple_of(60) && self.window.as_secs() > 0 {
            (self.window.as_secs() / 60, "minute")
        } else {
            (self.window.as_secs(), "second")
        };
        let span = if n == 1 {
            format!("the last {unit}")
        } else {
            format!("the last {n} {unit}s")
        };
        write!(
            f,
            "{} more {} in {span} (not logged one by one; debug logging shows each)",
            self.suppressed, self.kind
        )
    }
}

/// Per-kind windows of logged and suppressed events.
#[derive(Debug, Clone)]
pub(crate) struct LogLimiter {
    window: Duration,
    burst: u32,
    windows: Vec<Window>,
}

impl Default for LogLimiter {
    /// A minute per window, five lines one by one.
    fn default() -> Self {
        Self::new(Duration::from_secs(60), 5)
    }
}

impl LogLimiter {
    /// Windows of `window`, each logging `burst` events one by one.
    pub(crate) fn new(window: Duration, burst: u32) -> Self {
        Self {
            window,
            burst,
            windows: Vec::new(),
        }
    }

    /// Whether to log this event of `kind` now (else log it at debug, it is counted).
    pub(crate) fn allow(&mut self, now: Instant, kind: Kind) -> bool {
        let window = self.window;
        let w = match self.windows.iter_mut().find(|w| w.kind == kind) {
            Some(w) if now < w.ends => w,
            Some(w) if w.suppressed == 0 => {
                // An ended window with nothing to say: start afresh.
                *w = Window {
                    kind,
                    ends: now + window,
                    logged: 0,
                    suppressed: 0,
                };
                w
            }
            Some(w) => w,
            None => {
                self.windows.push(Window {
                    kind,
                    ends: now + window,
                    logged: 0,
                    suppressed: 0,
                });
                let last = self.windows.len() - 1;
                &mut self.windows[last]
            }
        };
        if now >= w.ends {
            // Its summary is due but not yet taken: count this one into it.
            w.suppressed += 1;
            return false;
        }
        if w.logged < self.burst {
            w.logged += 1;
            true
        } else {
            w.suppressed += 1;
            false
        }
    }

    /// A summary that is due (its window ended with events not logged), at most one per
    /// call; call until `None`.
    pub(crate) fn poll_summary(&mut self, now: Instant) -> Option<Summary> {
        let window = self.window;
        let w = self
            .windows
            .iter_mut()
            .find(|w| now >= w.ends && w.suppressed > 0)?;
        let summary = Summary {
            kind: w.kind,
            suppressed: w.suppressed,
            window,
        };
        // The next window starts now, already at its burst: a flood that goes on is
        // summarised minute by minute, not let through five lines at a time.
        *w = Window {
            kind: w.kind,
            ends: now + window,
            logged: self.burst,
            suppressed: 0,
        };
        Some(summary)
    }

    /// When the next summary is due, if one will be.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.windows
            .iter()
            .filter(|w| w.suppressed > 0)
            .map(|w| w.ends)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REFUSED: Kind = "mesh connections refused";
    const CLOSED: Kind = "mesh connections closed before a handshake";

    #[test]
    fn a_flood_logs_a_burst_then_one_summary_per_window() {
        let t0 = Instant::now();
        let mut l = LogLimiter::new(Duration::from_secs(60), 5);
        let logged = (0..10_000)
            .filter(|i| l.allow(t0 + Duration::from_millis(*i), REFUSED))
            .count();
        assert_eq!(logged, 5);
        assert_eq!(l.poll_summary(t0 + Duration::from_secs(30)), None);
        assert_eq!(l.poll_timeout(), Some(t0 + Duration::from_secs(60)));
        let s = l.poll_summary(t0 + Duration::from_secs(60)).unwrap();
        assert_eq!(s.suppressed, 9_995);
        assert_eq!(
            s.to_string(),
            "9995 more mesh connections refused in the last minute (not logged one by one; debug logging shows each)"
        );
        assert_eq!(l.poll_summary(t0 + Duration::from_secs(60)), None);
        // The flood goes on: nothing one by one, one summary a minute.
        let t1 = t0 + Duration::from_secs(61);
        assert!(!l.allow(t1, REFUSED));
        assert_eq!(l.poll_summary(t0 + Duration::from_secs(119)), None);
        assert_eq!(
            l.poll_summary(t0 + Duration::from_secs(120))
                .map(|s| s.suppressed),
            Some(1)
        );
        // Quiet for a window: the next event is logged again.
        assert_eq!(l.poll_timeout(), None);
        assert!(l.allow(t0 + Duration::from_secs(200), REFUSED));
    }

    #[test]
    fn kinds_are_limited_apart() {
        let t0 = Instant::now();
        let mut l = LogLimiter::new(Duration::from_secs(10), 1);
        assert!(l.allow(t0, REFUSED));
        assert!(!l.allow(t0, REFUSED));
        assert!(l.allow(t0, CLOSED));
        let s = l.poll_summary(t0 + Duration::from_secs(10)).unwrap();
        assert_eq!((s.kind, s.suppressed), (REFUSED, 1));
        assert_eq!(
            s.to_string().split(" (").next(),
            Some("1 more mesh connections refused in the last 10 seconds")
        );
        assert_eq!(l.poll_summary(t0 + Duration::from_secs(10)), None);
    }

    #[test]
    fn an_event_after_the_window_before_its_summary_joins_the_summary() {
        let t0 = Instant::now();
        let mut l = LogLimiter::new(Duration::from_secs(10), 1);
        assert!(l.allow(t0, REFUSED));
        assert!(!l.allow(t0, REFUSED));
        assert!(!l.allow(t0 + Duration::from_secs(11), REFUSED));
        assert_eq!(
            l.poll_summary(t0 + Duration::from_secs(11))
                .map(|s| s.suppressed),
            Some(2)
        );
    }
}
