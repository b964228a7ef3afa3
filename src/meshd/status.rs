//! What the mesh thread reports for `weft status`: the mesh core's snapshot plus the
//! transport side of every control connection, including recent ones that failed before
//! they were established (a password mismatch must stay visible after the socket closed).
//!
//! Contract: plain data, built on the mesh thread on request; the failure log is bounded
//! ([`FAILURE_LOG_LEN`] entries, one per remote), so a peer retrying forever cannot grow it.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};

use crate::api::report::{ConnectionEncryption, ConnectionState};

/// Failed connections remembered for status.
pub(super) const FAILURE_LOG_LEN: usize = 32;

/// The mesh thread's answer to a status request.
#[derive(Debug, Clone)]
pub struct MeshdStatus {
    /// The mesh core's view: peers, routes, targets, counters.
    pub mesh: mesh::MeshStatus,
    /// Live control connections, then recent ones that failed before being established.
    pub connections: Vec<ConnectionInfo>,
    /// Connections this side closed for a transport failure, by the stage they were in.
    pub closed: TransportCounters,
}

/// Control connections closed by the transport (not by the mesh core), by stage: a
/// connection opened and closed, or one that speaks garbage, shows here, not only in the
/// log. Reported as `mesh.closed_<stage>`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransportCounters {
    /// During the version preamble: not a weft router, no common version, or opened and
    /// closed without a word.
    pub preamble: u64,
    /// During the key exchange: a different password, a corrupt handshake.
    pub handshake: u64,
    /// Once established: a socket error, an undecryptable record, a peer that stopped
    /// reading or closed.
    pub established: u64,
}

impl TransportCounters {
    /// Counts a close in `state`.
    pub(super) fn count(&mut self, state: ConnectionState) {
        match state {
            ConnectionState::Preamble => self.preamble += 1,
            ConnectionState::Handshake => self.handshake += 1,
            ConnectionState::Established => self.established += 1,
            // Dial failures are the connection maker's (it counts and retries them).
            ConnectionState::Connecting | ConnectionState::Failed => {}
        }
    }

    /// The counters by their status names.
    pub fn named(&self) -> [(&'static str, u64); 3] {
        [
            ("mesh.closed_preamble", self.preamble),
            ("mesh.closed_handshake", self.handshake),
            ("mesh.closed_transport", self.established),
        ]
    }
}

/// One control connection as the operator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// The remote TCP address (for outbound connections, the address dialled).
    pub remote: SocketAddr,
    /// Whether this router dialled it.
    pub outbound: bool,
    /// Where it is; `Failed` for a connection that closed before it was established.
    pub state: ConnectionState,
    /// The peer, once its Hello arrived.
    pub peer: Option<mesh::PeerName>,
    /// How it is protected (`Pending` while the key exchange has not finished).
    pub encryption: ConnectionEncryption,
    /// Why it failed, or the last non-fatal problem seen on it.
    pub last_error: Option<String>,
}

/// Which failures replace each other: outbound ones per dialled address, inbound ones per
/// remote IP (their source ports change on every attempt).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FailureKey {
    Outbound(SocketAddr),
    Inbound(IpAddr),
}

impl FailureKey {
    fn of(remote: SocketAddr, outbound: bool) -> Self {
        if outbound {
            Self::Outbound(remote)
        } else {
            Self::Inbound(remote.ip())
        }
    }
}

/// Recent connections that failed before they were established, newest last.
#[derive(Debug, Default)]
pub(super) struct FailureLog {
    entries: VecDeque<(FailureKey, ConnectionInfo)>,
}

impl FailureLog {
    /// Remembers a failure, replacing an older one from the same remote.
    pub(super) fn record(&mut self, remote: SocketAddr, outbound: bool, error: String) {
        let key = FailureKey::of(remote, outbound);
        self.entries.retain(|(k, _)| *k != key);
        if self.entries.len() >= FAILURE_LOG_LEN {
            self.entries.pop_front();
        }
        let info = ConnectionInfo {
            remote,
            outbound,
            state: ConnectionState::Failed,
            peer: None,
            encryption: ConnectionEncryption::Pending,
            last_error: Some(error),
        };
        self.entries.push_back((key, info));
    }

    /// A connection from the same remote got established: its old failure is history.
    pub(super) fn clear(&mut self, remote: SocketAddr, outbound: bool) {
        let key = FailureKey::of(remote, outbound);
        self.entries.retain(|(k, _)| *k != key);
    }

    /// The remembered failures, oldest first.
    pub(super) fn iter(&self) -> impl Iterator<Item = &ConnectionInfo> {
        self.entries.iter().map(|(_, info)| info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_replace_per_remote_and_stay_bounded() {
        let mut log = FailureLog::default();
        let a: SocketAddr = "10.0.0.1:6783".parse().unwrap();
        let a_again: SocketAddr = "10.0.0.1:40000".parse().unwrap();
        log.record(a, false, "first".into());
        log.record(a_again, false, "second".into());
        let errors: Vec<_> = log.iter().map(|i| i.last_error.clone()).collect();
        assert_eq!(errors, vec![Some("second".to_string())]);
        // Outbound failures to the same address are kept apart from inbound ones.
        log.record(a, true, "dialled".into());
        assert_eq!(log.iter().count(), 2);
        log.clear(a_again, false);
        assert_eq!(log.iter().count(), 1);
        for i in 0..(FAILURE_LOG_LEN as u16 + 10) {
            log.record(SocketAddr::from(([10, 0, 1, 1], i)), true, format!("e{i}"));
        }
        assert_eq!(log.iter().count(), FAILURE_LOG_LEN);
        let newest = log.iter().last().and_then(|i| i.last_error.clone());
        assert_eq!(newest, Some(format!("e{}", FAILURE_LOG_LEN + 9)));
    }
}
