//! The core's port table: what each switch `PortId` is.
//!
//! Ids are dense indices into a slab, so the per-frame lookup from the switch's verdict
//! to a port is an array index. A local port is a veth or the TAP (its socket is the
//! shell's, under the same id); a remote port is a (peer, network) pair whose frames
//! leave through the tunnel sockets.

use learning::{NetworkId, PortId};
use tunnel::Vni;
use wire::VnetFrame;

use crate::boundary::{KnownEndpoint, LocalPortKind};
use crate::drops::{DropCounters, OwnDrop};
use crate::transmit::{Sink, Transmit};

/// Traffic counters of one local port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortCounters {
    /// Frames received.
    pub rx_frames: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Frames sent.
    pub tx_frames: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Frames the port refused.
    pub tx_dropped: u64,
    /// Frames the kernel dropped at the port before weft read them.
    pub kernel_drops: u64,
}

/// A container's veth or the host's TAP.
#[derive(Debug)]
pub(crate) struct LocalSlot {
    pub(crate) name: String,
    pub(crate) kind: LocalPortKind,
    pub(crate) network: NetworkId,
    pub(crate) endpoint: Option<KnownEndpoint>,
    pub(crate) counters: PortCounters,
    /// Frames of the current receive batch queued for this port (indices into the batch).
    pub(crate) pending: Vec<u16>,
}

/// One peer's virtual port for one network.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RemoteSlot {
    pub(crate) peer: usize,
    pub(crate) vni: Vni,
}

/// What a port id stands for.
#[derive(Debug)]
pub(crate) enum Slot {
    Local(LocalSlot),
    Remote(RemoteSlot),
}

/// The slab of ports.
#[derive(Debug, Default)]
pub(crate) struct PortTable {
    slots: Vec<Option<Slot>>,
    free: Vec<u32>,
}

impl PortTable {
    /// Stores a slot; returns its id (reusing freed ids).
    pub(crate) fn insert(&mut self, slot: Slot) -> PortId {
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
    pub(crate) fn remove(&mut self, id: PortId) -> Option<Slot> {
        let slot = self.slots.get_mut(id.0 as usize)?.take();
        if slot.is_some() {
            self.free.push(id.0);
        }
        slot
    }

    pub(crate) fn get(&self, id: PortId) -> Option<&Slot> {
        self.slots.get(id.0 as usize)?.as_ref()
    }

    pub(crate) fn get_mut(&mut self, id: PortId) -> Option<&mut Slot> {
        self.slots.get_mut(id.0 as usize)?.as_mut()
    }

    pub(crate) fn local(&self, id: PortId) -> Option<&LocalSlot> {
        match self.get(id)? {
            Slot::Local(l) => Some(l),
            Slot::Remote(_) => None,
        }
    }

    pub(crate) fn local_mut(&mut self, id: PortId) -> Option<&mut LocalSlot> {
        match self.get_mut(id)? {
            Slot::Local(l) => Some(l),
            Slot::Remote(_) => None,
        }
    }

    /// Every (id, slot).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (PortId, &Slot)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|s| (PortId(i as u32), s)))
    }

    /// Sends frames to local port `id` and accounts for them (a port that is gone, or
    /// remote, sends nothing); returns how many went out.
    pub(crate) fn send(
        &mut self,
        id: PortId,
        frames: &[VnetFrame<'_>],
        out: &mut dyn Sink,
        drops: &mut DropCounters,
    ) -> usize {
        let Some(slot) = self.local_mut(id) else {
            return 0;
        };
        let sent = out
            .transmit(Transmit::Local { port: id, frames })
            .min(frames.len());
        for f in frames.iter().take(sent) {
            slot.counters.tx_frames += 1;
            slot.counters.tx_bytes += f.frame.len() as u64;
        }
        let lost = (frames.len() - sent) as u64;
        if lost > 0 {
            slot.counters.tx_dropped += lost;
            drops.add(OwnDrop::PortSendFailed, lost);
        }
        sent
    }
}
