//! Saved peers (`weft connect HOST`) whose names do not resolve at launch.
//!
//! A name that stopped resolving must not stop a relaunch (after `kill -9` that relaunch is
//! the recovery), so such peers are retried on a background thread with backoff; the API
//! thread picks up the ones that resolved on its next tick and dials them like any other.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use crossbeam_channel::{Receiver, Sender};

/// First retry delay; it doubles up to [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_secs(2);
/// Longest delay between two attempts at a name.
const RETRY_MAX: Duration = Duration::from_secs(60);

/// Names still being resolved, and the addresses of those that have been.
#[derive(Debug)]
pub(super) struct PendingPeers {
    resolved: Receiver<(String, SocketAddr)>,
}

impl PendingPeers {
    /// Starts retrying `specs` (as `resolve_peer` takes them) until each resolves. The
    /// thread ends when all have, or when this handle is gone.
    pub(super) fn start(specs: Vec<String>, default_port: u16) -> anyhow::Result<Self> {
        let (tx, rx) = crossbeam_channel::unbounded();
        std::thread::Builder::new()
            .name("weft-resolve".into())
            .spawn(move || retry(specs, default_port, &tx))
            .context("cannot start the peer-resolving thread")?;
        Ok(Self { resolved: rx })
    }

    /// The (name, address) pairs resolved since the last call.
    pub(super) fn resolved(&self) -> impl Iterator<Item = (String, SocketAddr)> + '_ {
        self.resolved.try_iter()
    }
}

fn retry(mut specs: Vec<String>, default_port: u16, tx: &Sender<(String, SocketAddr)>) {
    let mut delay = RETRY_MIN;
    while !specs.is_empty() {
        std::thread::sleep(delay);
        let mut gone = false;
        specs.retain(|spec| match super::resolve_peer(spec, default_port) {
            Ok(addr) => {
                gone |= tx.send((spec.clone(), addr)).is_err();
                false
            }
            Err(e) => {
                tracing::debug!("saved peer {spec} still does not resolve: {e:#}");
                true
            }
        });
        if gone {
            return;
        }
        delay = (delay * 2).min(RETRY_MAX);
    }
}
