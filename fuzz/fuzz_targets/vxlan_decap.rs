//! Fuzzes the tunnel crate's receive and send paths with arbitrary bytes:
//!
//! - receive (first byte even): the rest is a sequence of `[len_hi, len_lo, tag, datagram]`
//!   records → `vxlan::decap` → heartbeat check/decode into a `PathMonitor` → `Coalescer`.
//!   Every super-frame the coalescer emits must have a finishable checksum and be cut
//!   back by `segment` without error (the two halves agree on what a super-frame is).
//! - send (first byte odd): 10 bytes of virtio header, 2 bytes of path MTU, then a frame →
//!   `PmtuGuard::check` and `segment`; the output must have the promised GSO layout.
//!
//! Nothing may panic. The coalescer is reused across inputs (its buffers are 512 KiB) but
//! flushed at the end of each, so every input starts from the same empty state.

#![no_main]

use std::cell::RefCell;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use tunnel::heartbeat::{Heartbeat, is_heartbeat};
use tunnel::monitor::{PathMonitor, PathMonitorConfig};
use tunnel::pmtu::{PmtuGuard, REPLY_BUFFER_LEN};
use tunnel::{Coalescer, segment, vxlan};
use wire::VnetHdr;

thread_local! {
    static COALESCER: RefCell<Coalescer> = RefCell::new(Coalescer::new());
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        receive(rest);
    } else {
        send(rest);
    }
});

fn receive(mut rest: &[u8]) {
    let t0 = Instant::now();
    let mut monitor = PathMonitor::new([2, 0, 0, 0, 0, 1], PathMonitorConfig::default(), t0);
    let mut emitted = Vec::new();
    COALESCER.with(|c| {
        let mut c = c.borrow_mut();
        let mut emit = |tag: u64, vnet: &VnetHdr, frame: &[u8]| {
            if vnet.is_gso() {
                emitted.push((tag, *vnet, frame.to_vec()));
            }
        };
        let mut step = 0u64;
        while let [hi, lo, tag, body @ ..] = rest {
            let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(body.len());
            let (dgram, tail) = body.split_at(len);
            rest = tail;
            step += 1;
            let now = t0 + Duration::from_millis(step * 250);
            let Ok((vni, inner)) = vxlan::decap(dgram) else {
                continue;
            };
            if is_heartbeat(inner) {
                if let Ok(hb) = Heartbeat::decode(inner) {
                    monitor.handle_heartbeat(now, &hb);
                }
                monitor.handle_timeout(now);
                while monitor.poll_transmit(now).is_some() {}
                continue;
            }
            c.push(
                u64::from(vni.get()) << 8 | u64::from(*tag),
                inner,
                &mut emit,
            );
        }
        c.flush(&mut emit);
        assert_eq!(c.pending(), 0);
    });
    let mut out = Vec::new();
    for (_, vnet, frame) in emitted {
        assert!(frame.len() <= 18 + tunnel::offload::MAX_SUPER_FRAME_IP_LEN);
        let mut finished = frame.clone();
        vnet.complete_checksum(&mut finished)
            .expect("coalesced super-frame has valid checksum offsets");
        let s = segment(&vnet, &frame, 65535, &[], &mut out)
            .expect("coalesced super-frame can be segmented again");
        assert!(
            s.count >= 2,
            "a merged super-frame holds at least two segments"
        );
    }
}

fn send(rest: &[u8]) {
    let Some((hdr, rest)) = rest.split_first_chunk::<{ wire::vnet::LEN }>() else {
        return;
    };
    let Some((mtu, frame)) = rest.split_first_chunk::<2>() else {
        return;
    };
    let vnet = VnetHdr::parse(hdr);
    let mtu = usize::from(u16::from_be_bytes(*mtu));
    let mut reply = [0u8; REPLY_BUFFER_LEN];
    let _ = PmtuGuard::new().check(&vnet, frame, mtu, &mut reply);
    let prefix = [0x08, 0, 0, 0, 0, 0, 1, 0];
    let mut out = Vec::new();
    if let Ok(s) = segment(&vnet, frame, mtu, &prefix, &mut out) {
        assert!(s.count >= 1 && s.stride >= prefix.len());
        let full = (s.count - 1) * s.stride;
        assert!(
            out.len() > full && out.len() <= full + s.stride,
            "GSO layout broken"
        );
        for dgram in out.chunks(s.stride) {
            assert_eq!(&dgram[..8], &prefix);
        }
    }
}
