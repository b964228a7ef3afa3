//! The data plane's port table: what each switch `PortId` is on the outside.
//!
//! Ids are dense indices into a slab, so the per-frame lookup from the switch's verdict
//! to a socket is an array index. Local ports own their socket; remote ports are a
//! (peer, network) pair whose frames leave through the tunnel sockets.

use learning::{NetworkId, PortId};

use super::{KnownEndpoint, PortHandle};
use crate::io::{FramePort, TxFrame};

/// Traffic counters of one port.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct PortCounters {
    pub(super) rx_frames: u64,
    pub(super) rx_bytes: u64,
    pub(super) tx_frames: u64,
    pub(super) tx_bytes: u64,
    pub(super) tx_dropped: u64,
    pub(super) kernel_drops: u64,
    /// A TAP's device drop count when last read (the kernel's count outlives the port).
    pub(super) kernel_drops_seen: Option<u64>,
}

/// A container's veth or the host's TAP.
#[derive(Debug)]
pub(super) struct LocalSlot {
    pub(super) handle: PortHandle,
    pub(super) name: String,
    pub(super) network: NetworkId,
    pub(super) endpoint: Option<KnownEndpoint>,
    pub(super) counters: PortCounters,
    /// Frames of the current receive batch queued for this port (indices into the batch).
    pub(super) pending: Vec<u16>,
}

impl LocalSlot {
    pub(super) fn port(&self) -> &dyn FramePort {
        match &self.handle {
            PortHandle::Veth(p) => p,
            PortHandle::Tap(t) => t,
        }
    }

    pub(super) fn kind(&self) -> &'static str {
        match self.handle {
            PortHandle::Veth(_) => "veth",
            PortHandle::Tap(_) => "tap",
        }
    }

    /// Sends frames and accounts for them; returns how many went out.
    pub(super) fn send(&mut self, frames: &[TxFrame<'_>]) -> usize {
        let sent = match self.port().send_frames(frames) {
            Ok(n) => n,
            Err(e) => {
                tracing::debug!(port = %self.name, "send failed: {e}");
                0
            }
        };
        for f in frames.iter().take(sent) {
            self.counters.tx_frames += 1;
            self.counters.tx_bytes += f.frame.len() as u64;
        }
        self.counters.tx_dropped += (frames.len() - sent) as u64;
        sent
    }
}

/// One peer's virtual port for one network.
#[derive(Debug, Clone, Copy)]
pub(super) struct RemoteSlot {
    pub(super) peer: usize,
    pub(super) vni: u32,
}

/// What a port id stands for.
#[derive(Debug)]
pub(super) enum Slot {
    Local(LocalSlot),
    Remote(RemoteSlot),
}

/// The slab of ports.
#[derive(Debug, Default)]
pub(super) struct PortTable {
    slots: Vec<Option<Slot>>,
    free: Vec<u32>,
}

impl PortTable {
    /// Stores a slot; returns its id (reusing freed ids).
    pub(super) fn insert(&mut self, slot: Slot) -> PortId {
        if let Some(id) = self.free.pop()
            && let Some(s) = self.slots.get_mut(id as usize)
        {
            *s = Some(slot);
            return PortId(id);
        }
        self.slots.push(Some(slot));
        PortId(u32::try_from(self.slots.len() - 1).unwrap_or(u32::MAX))
    }

    /// Removes a slot.
    pub(super) fn remove(&mut self, id: PortId) -> Option<Slot> {
        let slot = self.slots.get_mut(id.0 as usize)?.take();
        if slot.is_some() {
            self.free.push(id.0);
        }
        slot
    }

    pub(super) fn get(&self, id: PortId) -> Option<&Slot> {
        self.slots.get(id.0 as usize)?.as_ref()
    }

    pub(super) fn get_mut(&mut self, id: PortId) -> Option<&mut Slot> {
        self.slots.get_mut(id.0 as usize)?.as_mut()
    }

    pub(super) fn local_mut(&mut self, id: PortId) -> Option<&mut LocalSlot> {
        match self.get_mut(id)? {
            Slot::Local(l) => Some(l),
            Slot::Remote(_) => None,
        }
    }

    /// Every (id, slot).
    pub(super) fn iter(&self) -> impl Iterator<Item = (PortId, &Slot)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|s| (PortId(i as u32), s)))
    }

    /// Every local slot, mutably.
    pub(super) fn locals_mut(&mut self) -> impl Iterator<Item = (PortId, &mut LocalSlot)> {
        self.slots
            .iter_mut()
            .enumerate()
            .filter_map(|(i, s)| match s {
                Some(Slot::Local(l)) => Some((PortId(i as u32), l)),
                _ => None,
            })
    }
}
