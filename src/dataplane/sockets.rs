//! The shell's side of every transmit: the core says what to send where, this writes it
//! to the socket it names — nothing else.

use datapath::{Sink, Transmit, UdpSource};
use learning::PortId;

use super::PortHandle;
use crate::io::{FramePort, UdpPort, UdpSendError, UdpSendPool};

/// A local port's device, under the core's id for it.
#[derive(Debug)]
pub(super) struct Port {
    pub(super) handle: PortHandle,
    pub(super) name: String,
    /// A TAP's device drop count when last read (the kernel's count outlives the port).
    pub(super) kernel_drops_seen: Option<u64>,
}

impl Port {
    pub(super) fn frames(&self) -> &dyn FramePort {
        match &self.handle {
            PortHandle::Veth(p) => p,
            PortHandle::Tap(t) => t,
        }
    }
}

/// Every socket frames leave by.
#[derive(Debug)]
pub(super) struct Sockets {
    /// VXLAN send sockets, one per outer source port.
    pub(super) pool: UdpSendPool,
    /// The tunnel socket: receives on 6784 and sends from it.
    pub(super) tunnel: UdpPort,
    /// Local ports by `PortId` (dense: the core allocates ids from a slab).
    pub(super) ports: Vec<Option<Port>>,
}

impl Sockets {
    pub(super) fn port(&self, id: PortId) -> Option<&Port> {
        self.ports.get(id.0 as usize)?.as_ref()
    }

    pub(super) fn insert(&mut self, id: PortId, port: Port) {
        let i = id.0 as usize;
        if self.ports.len() <= i {
            self.ports.resize_with(i + 1, || None);
        }
        if let Some(slot) = self.ports.get_mut(i) {
            *slot = Some(port);
        }
    }

    pub(super) fn remove(&mut self, id: PortId) -> Option<Port> {
        self.ports.get_mut(id.0 as usize)?.take()
    }

    /// Every local port with its id.
    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = (PortId, &mut Port)> {
        self.ports
            .iter_mut()
            .enumerate()
            .filter_map(|(i, p)| p.as_mut().map(|p| (PortId(i as u32), p)))
    }
}

/// How many datagrams a UDP send got out.
fn datagrams_sent(result: Result<(), UdpSendError>, all: usize, what: &str) -> usize {
    match result {
        Ok(()) => all,
        Err(e) => {
            tracing::trace!("{what} send failed: {e}");
            e.sent
        }
    }
}

impl Sink for Sockets {
    fn transmit(&mut self, transmit: Transmit<'_>) -> usize {
        let all = transmit.units();
        match transmit {
            Transmit::Local { port, frames } => {
                let Some(p) = self.port(port) else { return 0 };
                match p.frames().send_frames(frames) {
                    Ok(n) => n,
                    Err(e) => {
                        tracing::debug!(port = %p.name, "send failed: {e}");
                        0
                    }
                }
            }
            Transmit::Udp {
                from,
                to,
                payload,
                segment_size,
            } => {
                let result = match from {
                    UdpSource::Vxlan(i) => self.pool.send_from(i, to, payload, segment_size),
                    UdpSource::Tunnel => self.tunnel.send(to, payload, segment_size),
                };
                datagrams_sent(result, all, "UDP")
            }
            Transmit::UdpBatch { from, datagrams } => {
                let result = match from {
                    UdpSource::Vxlan(i) => self.pool.send_many(i, datagrams),
                    UdpSource::Tunnel => self.tunnel.send_many(datagrams),
                };
                datagrams_sent(result, all, "UDP batch")
            }
        }
    }
}
