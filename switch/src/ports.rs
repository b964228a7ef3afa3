//! Ports, their kinds, and the per-network flood sets.
//!
//! Contract: every port belongs to exactly one network, and a network's [`FloodSet`] lists
//! exactly its ports, sorted and without duplicates. Flood sets change only when ports are
//! added or removed, so a flood is a slice copy.

use learning::{NetworkId, PortId};

/// What is behind a port, which decides split horizon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PortKind {
    /// A container's veth or the host's TAP on this host.
    Local,
    /// One peer host's virtual port for one network (frames go over VXLAN). A frame from a
    /// remote port is never sent to another remote port: the mesh relays, not the switch.
    Remote,
}

/// What the switch knows about a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortInfo {
    /// The network the port belongs to.
    pub network: NetworkId,
    /// Local or remote.
    pub kind: PortKind,
}

/// A port as the status view lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortView {
    /// The port.
    pub port: PortId,
    /// Its network and kind.
    pub info: PortInfo,
}

/// The ports of one network, sorted: the egress set of a flood.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FloodSet {
    all: Vec<PortId>,
    local: Vec<PortId>,
}

impl FloodSet {
    /// Adds `port` (idempotent).
    pub(crate) fn insert(&mut self, port: PortId, kind: PortKind) {
        insert_sorted(&mut self.all, port);
        if kind == PortKind::Local {
            insert_sorted(&mut self.local, port);
        }
    }

    /// Removes `port` if present.
    pub(crate) fn remove(&mut self, port: PortId) {
        remove_sorted(&mut self.all, port);
        remove_sorted(&mut self.local, port);
    }

    /// Every port of the network.
    pub fn all(&self) -> &[PortId] {
        &self.all
    }

    /// The network's local ports.
    pub fn local(&self) -> &[PortId] {
        &self.local
    }

    /// Where a flood from a port of `kind` may go (before excluding the ingress itself):
    /// everywhere from a local port, local ports only from a remote one (split horizon).
    #[inline]
    pub fn targets(&self, from: PortKind) -> &[PortId] {
        match from {
            PortKind::Local => &self.all,
            PortKind::Remote => &self.local,
        }
    }

    /// Whether `port` is one of the network's local ports.
    #[inline]
    pub fn is_local(&self, port: PortId) -> bool {
        self.local.binary_search(&port).is_ok()
    }

    /// Whether the network has no ports left.
    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }
}

fn insert_sorted(v: &mut Vec<PortId>, port: PortId) {
    if let Err(i) = v.binary_search(&port) {
        v.insert(i, port);
    }
}

fn remove_sorted(v: &mut Vec<PortId>, port: PortId) {
    if let Ok(i) = v.binary_search(&port) {
        v.remove(i);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flood_set_stays_sorted_deduplicated_and_split() {
        let mut s = FloodSet::default();
        for (p, k) in [
            (5, PortKind::Remote),
            (1, PortKind::Local),
            (3, PortKind::Local),
            (1, PortKind::Local),
        ] {
            s.insert(PortId(p), k);
        }
        assert_eq!(s.all(), &[PortId(1), PortId(3), PortId(5)]);
        assert_eq!(s.targets(PortKind::Remote), &[PortId(1), PortId(3)]);
        assert!(s.is_local(PortId(3)) && !s.is_local(PortId(5)));
        s.remove(PortId(3));
        s.remove(PortId(9));
        assert_eq!(s.all(), &[PortId(1), PortId(5)]);
        assert_eq!(s.local(), &[PortId(1)]);
    }
}
