//! [`UpdateBridge`]: turns the mesh core's events into [`MeshUpdate`]s for the data plane.
//!
//! Contract:
//! - A `PeerConnected` carries the keys of exactly one connection, the one the core
//!   established; `PeerDisconnected` follows only when the connection whose keys the
//!   data plane holds closed and no other established connection to that peer remains
//!   (a duplicate resolved in favour of a newer connection sends a fresh `PeerConnected`
//!   instead).
//! - Route changes are coalesced: at most one `Routes` per [`UpdateBridge::flush_routes`].
//! - This router's own name never appears in an update.
//! - A receiver that is gone is logged once; the mesh keeps running.

use std::collections::HashMap;

use mesh::{ConnId, Mesh, PeerName};

use super::link::ControlLink;
use crate::dataplane::{MeshUpdate, MeshUpdates};

/// Delivers what the mesh learns to the data plane.
pub(super) struct UpdateBridge {
    sink: Box<dyn MeshUpdates>,
    me: PeerName,
    /// The connection whose keys the data plane holds, per directly connected peer.
    reported: HashMap<PeerName, ConnId>,
    routes_dirty: bool,
    sink_gone: bool,
}

impl std::fmt::Debug for UpdateBridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpdateBridge")
            .field("reported", &self.reported)
            .field("routes_dirty", &self.routes_dirty)
            .finish_non_exhaustive()
    }
}

impl UpdateBridge {
    pub(super) fn new(sink: Box<dyn MeshUpdates>, me: PeerName) -> Self {
        Self {
            sink,
            me,
            reported: HashMap::new(),
            routes_dirty: false,
            sink_gone: false,
        }
    }

    fn deliver(&mut self, update: MeshUpdate) {
        if self.sink_gone {
            return;
        }
        if let Err(e) = self.sink.deliver(update) {
            tracing::warn!("mesh updates are no longer delivered to the data plane: {e:#}");
            self.sink_gone = true;
        }
    }

    /// `conn` completed its Hello with `peer`; `link` is its transport (absent when the
    /// link already failed, in which case its close event follows and nothing is sent).
    /// The link's tunnel keys move to the data plane.
    pub(super) fn connection_established(
        &mut self,
        mesh: &Mesh,
        conn: ConnId,
        peer: PeerName,
        link: Option<&mut ControlLink>,
    ) {
        let Some(link) = link else { return };
        let addr = link.remote.ip();
        let Some(secured) = link.secured.as_mut() else {
            return;
        };
        let (Some(neighbour), Some(keys)) = (mesh.neighbour(peer), secured.tunnel_keys.take())
        else {
            return;
        };
        self.reported.insert(peer, conn);
        self.deliver(MeshUpdate::PeerConnected {
            name: peer,
            nickname: neighbour.nickname.as_str().to_string(),
            addr,
            vxlan_port: neighbour.vxlan_port,
            tunnel_port: secured.remote_tunnel_port,
            keys: Box::new(keys),
            local_index: secured.local_index,
            remote_index: secured.remote_index,
        });
    }

    /// `conn` closed; `peer` is who it led to, if its Hello had arrived.
    pub(super) fn connection_closed(&mut self, mesh: &Mesh, conn: ConnId, peer: Option<PeerName>) {
        let Some(peer) = peer else { return };
        if self.reported.get(&peer) != Some(&conn) {
            return;
        }
        self.reported.remove(&peer);
        // Another established connection to the peer sends its own PeerConnected.
        if !mesh.is_connected(peer) {
            self.deliver(MeshUpdate::PeerDisconnected { name: peer });
        }
    }

    /// A peer's record arrived.
    pub(super) fn peer_added(&mut self, mesh: &mut Mesh, peer: PeerName) {
        if peer == self.me {
            return;
        }
        let nickname = mesh
            .topology()
            .get(&peer)
            .map(|r| r.nickname.as_str().to_string())
            .unwrap_or_default();
        self.deliver(MeshUpdate::PeerKnown {
            name: peer,
            nickname,
        });
    }

    /// A peer left the mesh.
    pub(super) fn peer_removed(&mut self, peer: PeerName) {
        if peer != self.me {
            self.deliver(MeshUpdate::PeerRemoved { name: peer });
        }
    }

    /// A peer's endpoints changed: send its whole current set (empty once gone).
    pub(super) fn endpoints_changed(&mut self, mesh: &mut Mesh, peer: PeerName) {
        if peer == self.me {
            return;
        }
        let endpoints = mesh
            .endpoints()
            .find(|(p, _)| *p == peer)
            .map(|(_, e)| e.to_vec())
            .unwrap_or_default();
        self.deliver(MeshUpdate::Endpoints {
            name: peer,
            endpoints,
        });
    }

    /// Routes changed; sent at the next [`UpdateBridge::flush_routes`].
    pub(super) fn routes_changed(&mut self) {
        self.routes_dirty = true;
    }

    /// Sends the current routes if they changed since the last flush.
    pub(super) fn flush_routes(&mut self, mesh: &mut Mesh) {
        if std::mem::take(&mut self.routes_dirty) {
            let routes = mesh.routes();
            self.deliver(MeshUpdate::Routes(routes));
        }
    }
}
