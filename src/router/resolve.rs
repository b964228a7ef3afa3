//! Saved peers (`weft connect HOST`) whose names do not resolve at launch.
//!
//! A name that stopped resolving must not stop a relaunch (after `kill -9` that relaunch is
//! the recovery), so such peers are retried on a background thread with backoff; the API
//! thread picks up the ones that resolved on its next tick and dials them like any other.
//! Until then they show in `weft status targets` as "resolving", with the last error.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use crossbeam_channel::{Receiver, Sender};

use crate::api::report::{TargetReport, TargetSource, TargetState};

/// First retry delay; it doubles up to [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_secs(2);
/// Longest delay between two attempts at a name.
const RETRY_MAX: Duration = Duration::from_secs(60);

/// How one unresolved name is doing, for `status targets`.
#[derive(Debug, Clone)]
struct Waiting {
    attempts: u32,
    next_attempt: Instant,
    last_error: String,
}

/// The names still unresolved, shared between the retry thread and the status report.
type WaitingMap = Arc<Mutex<BTreeMap<String, Waiting>>>;

/// Names still being resolved, and the addresses of those that have been.
#[derive(Debug)]
pub(super) struct PendingPeers {
    resolved: Receiver<(String, SocketAddr)>,
    waiting: WaitingMap,
}

impl PendingPeers {
    /// Starts retrying `failed` (spec as `resolve_peer` takes it, and the error of the
    /// attempt at launch) until each resolves. The thread ends when all have, or when this
    /// handle is gone.
    pub(super) fn start(failed: Vec<(String, String)>, default_port: u16) -> anyhow::Result<Self> {
        let next_attempt = Instant::now() + RETRY_MIN;
        let waiting: WaitingMap = Arc::new(Mutex::new(
            failed
                .into_iter()
                .map(|(spec, last_error)| {
                    let w = Waiting {
                        attempts: 1,
                        next_attempt,
                        last_error,
                    };
                    (spec, w)
                })
                .collect(),
        ));
        let (tx, rx) = crossbeam_channel::unbounded();
        let shared = Arc::clone(&waiting);
        std::thread::Builder::new()
            .name("weft-resolve".into())
            .spawn(move || retry(&shared, default_port, &tx))
            .context("cannot start the peer-resolving thread")?;
        Ok(Self {
            resolved: rx,
            waiting,
        })
    }

    /// The (name, address) pairs resolved since the last call.
    pub(super) fn resolved(&self) -> impl Iterator<Item = (String, SocketAddr)> + '_ {
        self.resolved.try_iter()
    }

    /// The names still unresolved that `keep` says are still wanted, as status targets.
    pub(super) fn reports(&self, keep: impl Fn(&str) -> bool) -> Vec<TargetReport> {
        let now = Instant::now();
        lock(&self.waiting)
            .iter()
            .filter(|(spec, _)| keep(spec))
            .map(|(spec, w)| TargetReport {
                target: spec.clone(),
                address: None,
                source: TargetSource::Explicit,
                state: TargetState::Resolving,
                attempts: w.attempts,
                next_retry_secs: Some(w.next_attempt.saturating_duration_since(now).as_secs_f64()),
                last_error: Some(w.last_error.clone()),
            })
            .collect()
    }
}

/// The map stays consistent even if a holder panicked: every update is one insert or remove.
fn lock(m: &WaitingMap) -> std::sync::MutexGuard<'_, BTreeMap<String, Waiting>> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn retry(waiting: &WaitingMap, default_port: u16, tx: &Sender<(String, SocketAddr)>) {
    let mut delay = RETRY_MIN;
    loop {
        std::thread::sleep(delay);
        let specs: Vec<String> = lock(waiting).keys().cloned().collect();
        if specs.is_empty() {
            return;
        }
        delay = (delay * 2).min(RETRY_MAX);
        for spec in specs {
            // Resolve without the lock: a lookup can take seconds.
            let result = super::resolve_peer(&spec, default_port);
            let mut map = lock(waiting);
            match result {
                Ok(addr) => {
                    map.remove(&spec);
                    if tx.send((spec, addr)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::debug!("saved peer {spec} still does not resolve: {e:#}");
                    if let Some(w) = map.get_mut(&spec) {
                        w.attempts += 1;
                        w.next_attempt = Instant::now() + delay;
                        w.last_error = format!("{e:#}");
                    }
                }
            }
        }
    }
}
