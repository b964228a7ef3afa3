//! The per-frame path allocates nothing once the core is warm: local frames switched to
//! VXLAN (queued and batched), to the encrypted tunnel (packed and sealed), floods along
//! the broadcast tree, and received datagrams decapsulated or opened and delivered.
//! Measured with a counting global allocator in this binary; the sink copies into
//! buffers allocated before the measurement, as a kernel would.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use datapath::sim::{Sim, SimConfig, TUNNEL_PORT, VXLAN_PORT};
use datapath::{Sink, Transmit};
use tunnel::path::Path;

/// Copies every datagram into preallocated slots; counts local frames.
struct Capture {
    slots: Vec<(SocketAddr, SocketAddr, Vec<u8>)>,
    used: usize,
    local_frames: usize,
}

impl Capture {
    fn new() -> Self {
        let any = SocketAddr::from(([0, 0, 0, 0], 0));
        Self {
            slots: (0..256)
                .map(|_| (any, any, Vec::with_capacity(2048)))
                .collect(),
            used: 0,
            local_frames: 0,
        }
    }

    fn push(&mut self, from: SocketAddr, to: SocketAddr, d: &[u8]) {
        if let Some(slot) = self.slots.get_mut(self.used) {
            slot.0 = from;
            slot.1 = to;
            slot.2.clear();
            slot.2.extend_from_slice(d);
            self.used += 1;
        }
    }

    fn to_port(&self, port: u16) -> impl Iterator<Item = (SocketAddr, &[u8])> {
        self.slots[..self.used]
            .iter()
            .filter(move |(_, to, _)| to.port() == port)
            .map(|(from, _, d)| (*from, d.as_slice()))
    }
}

impl Sink for Capture {
    fn transmit(&mut self, t: Transmit<'_>) -> usize {
        let units = t.units();
        let from = SocketAddr::from(([192, 0, 2, 1], 40000));
        match t {
            Transmit::Local { frames, .. } => self.local_frames += frames.len(),
            Transmit::Udp {
                to,
                payload,
                segment_size,
                ..
            } => {
                for d in payload.chunks(segment_size.max(1)) {
                    self.push(from, to, d);
                }
            }
            Transmit::UdpBatch { datagrams, .. } => {
                for (to, d) in datagrams {
                    self.push(from, *to, d);
                }
            }
        }
        units
    }
}

/// Two routers with two hosts each, settled on their path.
fn settled(config: &SimConfig) -> Sim {
    let mut sim = Sim::new(21, 2, config);
    for r in 0..2 {
        sim.add_host(r, mac(r, 0), ip(r, 0));
        sim.add_host(r, mac(r, 1), ip(r, 1));
    }
    sim.connect(0, 1);
    sim.publish_routes();
    sim.publish_endpoints();
    sim.run_for(Duration::from_secs(8));
    sim
}

/// One round: router 0's host 0 sends a batch (small and MTU-sized unicast to both
/// remote hosts, a local frame, a broadcast) and router 1 receives what went out.
/// Returns (datagrams, frames delivered to router 1's hosts).
fn round(sim: &mut Sim, batch: &[Vec<u8>], cap: &mut Capture, rx: &mut Capture) -> (usize, usize) {
    let now = sim.now();
    cap.used = 0;
    rx.used = 0;
    rx.local_frames = 0;
    let port = sim.host(0, 0).port;
    let mut views = [None; 16];
    for (v, f) in views.iter_mut().zip(batch) {
        *v = Some(wire::VnetFrame {
            vnet: &wire::vnet::NO_OFFLOAD,
            frame: f,
        });
    }
    let views = &views[..batch.len()];
    sim.routers[0]
        .core
        .handle_local_frames(now, port, views, cap);
    let core = &mut sim.routers[1].core;
    core.handle_vxlan_datagrams(now, cap.to_port(VXLAN_PORT), rx);
    core.handle_tunnel_datagrams(now, cap.to_port(TUNNEL_PORT).map(|(_, d)| d), rx);
    (cap.used, rx.local_frames)
}

fn batch() -> Vec<Vec<u8>> {
    let mut b: Vec<Vec<u8>> = (0..6)
        .map(|s| udp((0, 0), (1, (s % 2) as usize), s, 16))
        .collect();
    b.push(udp((0, 0), (1, 0), 6, 1300));
    b.push(udp((0, 0), (1, 1), 7, 1300));
    b.push(udp((0, 0), (0, 1), 8, 64));
    b.push(broadcast((0, 0), 9));
    b
}

fn assert_no_alloc(config: SimConfig, expect: Path) {
    let mut sim = settled(&config);
    assert_eq!(path(&sim, 0, 1), expect);
    let (mut cap, mut rx) = (Capture::new(), Capture::new());
    let batch = batch();
    // Warm up: every buffer reaches its size. 8 unicast frames and a broadcast to two
    // hosts arrive on router 1.
    for _ in 0..4 {
        let (sent, delivered) = round(&mut sim, &batch, &mut cap, &mut rx);
        assert!(
            sent >= 1 && delivered == 10,
            "{sent} datagrams, {delivered} delivered"
        );
    }
    let probe = allocation_counter::measure(|| {
        std::hint::black_box(vec![0u8; 8]);
    });
    assert!(probe.count_total >= 1, "the counter counts in this binary");
    let info = allocation_counter::measure(|| {
        for _ in 0..50 {
            let (_, delivered) = round(&mut sim, &batch, &mut cap, &mut rx);
            assert_eq!(delivered, 10);
        }
    });
    assert_eq!(info.count_total, 0, "{info:?}");
}

#[test]
fn vxlan_path_allocates_nothing_per_frame() {
    assert_no_alloc(SimConfig::default(), Path::Vxlan);
}

#[test]
fn tunnel_path_allocates_nothing_per_frame() {
    let config = SimConfig {
        password: true,
        ..SimConfig::default()
    };
    assert_no_alloc(config, Path::Encrypted);
}
