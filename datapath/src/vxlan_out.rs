//! The single VXLAN datagrams of one receive batch, queued and sent together with one
//! transmit (`sendmmsg`) per source socket when the batch ends: small frames (ACKs, small
//! UDP, ARP) cost a share of a syscall rather than one each. VXLAN carries one frame per
//! datagram, so this is the VXLAN path's counterpart of the tunnel's frame packing.

use std::net::SocketAddr;

use crate::transmit::{Sink, Transmit, UdpSource};

/// Most datagrams one batched transmit carries (the shell's `sendmmsg` batch).
pub(crate) const MAX_BATCH: usize = 64;

/// One queued datagram: `buf[start..start + len]`, for `dest` from send socket `socket`,
/// sent on behalf of peer index `peer`.
#[derive(Debug, Clone, Copy)]
struct Queued {
    socket: usize,
    start: usize,
    len: usize,
    dest: SocketAddr,
    peer: usize,
}

/// What one flush did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Flushed {
    /// Datagrams that went out in a transmit together with at least one other.
    pub(crate) batched: usize,
    /// Datagrams the kernel refused (socket buffer full, no route...).
    pub(crate) lost: usize,
}

/// Datagrams waiting for the end of the batch, back to back in one reused buffer.
#[derive(Debug)]
pub(crate) struct VxlanQueue {
    buf: Vec<u8>,
    msgs: Vec<Queued>,
}

impl VxlanQueue {
    /// An empty queue with room for a full receive batch of MTU-sized datagrams.
    pub(crate) fn new() -> Self {
        Self {
            buf: Vec::with_capacity(MAX_BATCH * 1600),
            msgs: Vec::with_capacity(MAX_BATCH),
        }
    }

    /// Whether nothing waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.msgs.is_empty()
    }

    /// Queues one datagram (copied out of the segmentation scratch, which the next frame
    /// reuses).
    pub(crate) fn push(&mut self, socket: usize, dest: SocketAddr, peer: usize, datagram: &[u8]) {
        let start = self.buf.len();
        self.buf.extend_from_slice(datagram);
        self.msgs.push(Queued {
            socket,
            start,
            len: datagram.len(),
            dest,
            peer,
        });
    }

    /// Sends everything queued, socket by socket and in queue order within a socket (a
    /// flow always maps to one socket, so its datagrams keep their order), and empties
    /// the queue. `on_sent(peer, len)` runs for every datagram the kernel took.
    pub(crate) fn flush(
        &mut self,
        out: &mut dyn Sink,
        mut on_sent: impl FnMut(usize, usize),
    ) -> Flushed {
        let mut done = Flushed::default();
        // Unstable sort without allocation; `start` keeps the queue order within a socket.
        self.msgs.sort_unstable_by_key(|m| (m.socket, m.start));
        for run in self.msgs.chunk_by(|a, b| a.socket == b.socket) {
            for chunk in run.chunks(MAX_BATCH) {
                let msgs: arrayvec::ArrayVec<(SocketAddr, &[u8]), MAX_BATCH> = chunk
                    .iter()
                    .map(|m| {
                        (
                            m.dest,
                            self.buf.get(m.start..m.start + m.len).unwrap_or_default(),
                        )
                    })
                    .collect();
                let socket = chunk.first().map_or(0, |m| m.socket);
                let sent = out
                    .transmit(Transmit::UdpBatch {
                        from: UdpSource::Vxlan(socket),
                        datagrams: &msgs,
                    })
                    .min(chunk.len());
                for m in chunk.iter().take(sent) {
                    on_sent(m.peer, m.len);
                }
                done.lost += chunk.len() - sent;
                if chunk.len() > 1 {
                    done.batched += sent;
                }
            }
        }
        self.msgs.clear();
        self.buf.clear();
        done
    }
}
