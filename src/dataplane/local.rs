//! Frames from local ports (containers' veths, the host's TAP): switched in batches,
//! written to local ports with one batched send per port, sent to peers one by one or
//! flooded along the broadcast tree.

use std::time::Instant;

use learning::PortId;
use switch::Verdict;
use wire::VnetHdr;

use super::core::Core;
use super::engine::NO_VNET;
use super::ports::{RemoteSlot, Slot};
use crate::io::{RxBatch, TxFrame};

/// Most frames one sendmmsg carries.
const TX_CHUNK: usize = 64;
/// Most remote ports one frame fans out to before the rest are sent without batching
/// into the flood decision (a network with more peers than this floods per peer).
const MAX_REMOTES: usize = 256;

impl Core {
    /// Switches one receive batch of a local port and writes every frame out.
    pub(super) fn switch_local_batch(
        &mut self,
        ingress: PortId,
        rx: &RxBatch,
        n: usize,
        now: Instant,
    ) {
        let mut egress = std::mem::take(&mut self.egress);
        let remote_total = self.remote_port_count(ingress);
        for i in 0..n {
            if rx.is_truncated(i) {
                self.counters.bump("drop", "port_frame_truncated");
                continue;
            }
            let frame = rx.frame(i);
            if let Some(slot) = self.ports.local_mut(ingress) {
                slot.counters.rx_frames += 1;
                slot.counters.rx_bytes += frame.len() as u64;
            }
            match self
                .switch
                .handle_frame(now, ingress, frame, &mut egress, &mut self.reply)
            {
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
                                let vnet = VnetHdr::parse(rx.vnet(i));
                                self.send_remote(ingress, r, &vnet, frame, now);
                            }
                            Some(Slot::Remote(_)) => {}
                            None => {}
                        }
                    }
                    if !remotes.is_empty() {
                        let vnet = VnetHdr::parse(rx.vnet(i));
                        if remotes.len() > 1 && remotes.len() == remote_total {
                            self.flood_remote(ingress, &remotes, &vnet, frame, now);
                        } else {
                            for r in &remotes {
                                self.send_remote(ingress, *r, &vnet, frame, now);
                            }
                        }
                    }
                }
                Verdict::Reply(len) => {
                    if let (Some(slot), Some(reply)) =
                        (self.ports.local_mut(ingress), self.reply.get(..len))
                    {
                        slot.send(&[TxFrame {
                            vnet: &NO_VNET,
                            frame: reply,
                        }]);
                    }
                }
                Verdict::Drop(_) => {}
            }
        }
        self.egress = egress;
        self.seg_key = None;
        self.flush_pending(rx);
        self.flush_peers(now);
    }

    /// How many remote ports the network of local port `id` has (a frame going to all of
    /// them is a flood, which travels along the broadcast tree).
    fn remote_port_count(&self, id: PortId) -> usize {
        let Some(Slot::Local(l)) = self.ports.get(id) else {
            return 0;
        };
        self.switch
            .flood_set(l.network)
            .map_or(0, |f| f.all().len() - f.local().len())
    }

    /// Writes the frames queued per local port during a batch.
    fn flush_pending(&mut self, rx: &RxBatch) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for &id in &dirty {
            let Some(slot) = self.ports.local_mut(id) else {
                continue;
            };
            let mut pending = std::mem::take(&mut slot.pending);
            for chunk in pending.chunks(TX_CHUNK) {
                let mut frames: arrayvec::ArrayVec<TxFrame<'_>, TX_CHUNK> =
                    arrayvec::ArrayVec::new();
                for &i in chunk {
                    frames.push(rx.tx_frame(usize::from(i)));
                }
                slot.send(&frames);
            }
            pending.clear();
            slot.pending = pending;
        }
        dirty.clear();
        self.dirty = dirty;
    }
}
