//! Frames from local ports (containers' veths, the host's TAP): switched in batches,
//! written to local ports with one transmit per port per batch, sent to peers one by one
//! or flooded along the broadcast tree.

use std::time::Instant;

use learning::PortId;
use switch::Verdict;
use wire::{VnetFrame, VnetHdr};

use crate::core::State;
use crate::drops::OwnDrop;
use crate::ports::{RemoteSlot, Slot};
use crate::transmit::Sink;

/// Most frames one local transmit carries (one `sendmmsg`).
const TX_CHUNK: usize = 64;
/// Most remote ports one frame fans out to before the rest are sent without batching
/// into the flood decision (a network with more peers than this floods per peer).
const MAX_REMOTES: usize = 256;

impl State {
    /// Switches one receive batch of a local port and writes every frame out.
    pub(crate) fn switch_local_batch(
        &mut self,
        ingress: PortId,
        frames: &[Option<VnetFrame<'_>>],
        now: Instant,
        out: &mut dyn Sink,
    ) {
        let mut egress = std::mem::take(&mut self.scratch.egress);
        let remote_total = self.remote_port_count(ingress);
        for (i, rx) in frames.iter().enumerate() {
            let Some(rx) = rx else {
                self.drops.bump(OwnDrop::PortFrameTruncated);
                continue;
            };
            let frame = rx.frame;
            if let Some(slot) = self.ports.local_mut(ingress) {
                slot.counters.rx_frames += 1;
                slot.counters.rx_bytes += frame.len() as u64;
            }
            match self.switch.handle_frame(
                now,
                ingress,
                frame,
                &mut egress,
                &mut self.scratch.reply,
            ) {
                Verdict::Forward => {
                    let mut remotes: arrayvec::ArrayVec<RemoteSlot, MAX_REMOTES> =
                        arrayvec::ArrayVec::new();
                    for &e in &egress {
                        match self.ports.get_mut(e) {
                            Some(Slot::Local(l)) => {
                                if l.pending.is_empty() {
                                    self.dirty.push(e);
                                }
                                l.pending.push(i as u16);
                            }
                            Some(Slot::Remote(r)) if remotes.try_push(*r).is_err() => {
                                let r = *r;
                                let vnet = VnetHdr::parse(rx.vnet);
                                self.send_remote(ingress, r, &vnet, frame, now, out);
                            }
                            Some(Slot::Remote(_)) | None => {}
                        }
                    }
                    if !remotes.is_empty() {
                        let vnet = VnetHdr::parse(rx.vnet);
                        if remotes.len() > 1 && remotes.len() == remote_total {
                            self.flood_remote(ingress, &remotes, &vnet, frame, now, out);
                        } else {
                            for r in &remotes {
                                self.send_remote(ingress, *r, &vnet, frame, now, out);
                            }
                        }
                    }
                }
                Verdict::Reply(len) => {
                    if let Some(reply) = self.scratch.reply.get(..len) {
                        let reply = [VnetFrame {
                            vnet: &wire::vnet::NO_OFFLOAD,
                            frame: reply,
                        }];
                        self.ports.send(ingress, &reply, out, &mut self.drops);
                    }
                }
                Verdict::Drop(_) => {}
            }
        }
        self.scratch.egress = egress;
        self.scratch.seg_key = None;
        self.flush_pending(frames, out);
        self.flush_peers(now, out);
    }

    /// How many remote ports the network of local port `id` has (a frame going to all of
    /// them is a flood, which travels along the broadcast tree).
    fn remote_port_count(&self, id: PortId) -> usize {
        let Some(l) = self.ports.local(id) else {
            return 0;
        };
        self.switch
            .flood_set(l.network)
            .map_or(0, |f| f.all().len() - f.local().len())
    }

    /// Writes the frames queued per local port during a batch.
    fn flush_pending(&mut self, frames: &[Option<VnetFrame<'_>>], out: &mut dyn Sink) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for &id in &dirty {
            let Some(slot) = self.ports.local_mut(id) else {
                continue;
            };
            let pending = std::mem::take(&mut slot.pending);
            for chunk in pending.chunks(TX_CHUNK) {
                let batch: arrayvec::ArrayVec<VnetFrame<'_>, TX_CHUNK> = chunk
                    .iter()
                    .filter_map(|&i| frames.get(usize::from(i)).copied().flatten())
                    .collect();
                self.ports.send(id, &batch, out, &mut self.drops);
            }
            if let Some(slot) = self.ports.local_mut(id) {
                slot.pending = pending;
                slot.pending.clear();
            }
        }
        dirty.clear();
        self.dirty = dirty;
    }
}
