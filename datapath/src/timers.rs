//! Periodic work and its deadline, side by side: every state machine `handle_timeout`
//! drives reports its next deadline as it is driven, and only those make up
//! [`crate::Core::poll_timeout`]. A machine the work does not drive (the VXLAN monitor of a
//! peer cleartext is forbidden to) cannot hold the loop awake: its deadline is never
//! read. That was the bug of an idle password router that spun a core.

use std::time::{Duration, Instant};

use tunnel::crypto::datagram;
use tunnel::vxlan::VXLAN_HEADER_LEN;
use tunnel::{HeartbeatKind, VxlanHeader};
use wire::VnetFrame;

use crate::core::{State, push_event};
use crate::drops::Counter;
use crate::events::{DirectPath, Event};
use crate::transmit::{Sink, Transmit, UdpSource};

/// The longest the core sleeps even when no machine has a deadline sooner.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(1);

/// When periodic work is next due.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline {
    /// The earliest deadline of what the last `handle_timeout` drove.
    next: Instant,
    /// Something the work acts on changed since: due at once.
    due: bool,
    /// The latest `now` any call brought (the core reads no clock).
    now: Instant,
}

impl Deadline {
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            next: now,
            due: true,
            now,
        }
    }

    /// Notes the caller's clock.
    pub(crate) fn saw(&mut self, now: Instant) {
        self.now = self.now.max(now);
    }

    /// Makes the work due at once (a heartbeat arrived, a command changed peers).
    pub(crate) fn due_now(&mut self) {
        self.due = true;
    }

    /// When the work is due.
    pub(crate) fn get(&self) -> Instant {
        if self.due { self.now } else { self.next }
    }

    /// The work ran at `now`; `next` is the earliest deadline of what it drove.
    fn ran(&mut self, now: Instant, next: Instant) {
        self.next = next;
        self.due = false;
        self.now = self.now.max(now);
    }
}

/// Folds an optional deadline into the earliest one.
fn earliest(a: Instant, b: Option<Instant>) -> Instant {
    b.map_or(a, |b| a.min(b))
}

impl State {
    /// Runs the periodic work and records its next deadline.
    pub(crate) fn handle_timeout(&mut self, now: Instant, out: &mut dyn Sink) {
        let mut next = now + MAX_WAIT;
        next = earliest(next, self.switch_timers(now, out));
        next = earliest(next, self.heartbeats(now, out));
        next = earliest(next, self.refresh_selectors(now));
        self.deadline.ran(now, next);
    }

    /// The switch's sweeps and IGMP queries (to local ports); its next deadline.
    fn switch_timers(&mut self, now: Instant, out: &mut dyn Sink) -> Option<Instant> {
        self.switch.handle_timeout(now);
        let mut egress = std::mem::take(&mut self.scratch.egress);
        let mut buf = std::mem::take(&mut self.scratch.reply);
        egress.clear();
        while let Some(n) = self.switch.poll_transmit(now, &mut buf, &mut egress) {
            if let Some(query) = buf.get(..n) {
                let one = [VnetFrame {
                    vnet: &wire::vnet::NO_OFFLOAD,
                    frame: query,
                }];
                for &p in &egress {
                    self.ports.send(p, &one, out, &mut self.drops);
                }
            }
        }
        self.scratch.reply = buf;
        self.scratch.egress = egress;
        self.switch.poll_timeout()
    }

    /// Sends due heartbeats (pings and pongs) on the VXLAN path of every peer VXLAN may
    /// carry frames to, and in the tunnel of every peer with a session; returns the
    /// earliest deadline of the monitors and sessions it drove.
    fn heartbeats(&mut self, now: Instant, out: &mut dyn Sink) -> Option<Instant> {
        // Heartbeats travel in the lowest VNI; with no network there is no VXLAN path.
        let header = self
            .networks
            .values()
            .map(|n| n.vni)
            .min()
            .map(|v| VxlanHeader::new(v).to_bytes());
        let mut next: Option<Instant> = None;
        let mut fold = |t: Instant| next = Some(next.map_or(t, |n: Instant| n.min(t)));
        let Self {
            peers,
            scratch,
            counters,
            drops,
            events,
            ..
        } = self;
        for (_, peer) in peers.iter_mut() {
            if let (Some(addr), Some(header), true) = (peer.vxlan_addr, header, peer.vxlan_usable())
            {
                peer.vxlan.handle_timeout(now);
                while let Some(beat) = peer.vxlan.poll_transmit(now) {
                    let hb = &mut scratch.hb;
                    let Some(body) = hb.get_mut(VXLAN_HEADER_LEN..) else {
                        break;
                    };
                    let pad = peer.vxlan.config().probe_len;
                    let Ok(n) = beat.encode(pad, body) else {
                        counters.bump(Counter::HeartbeatEncodeErrors);
                        continue;
                    };
                    hb[..VXLAN_HEADER_LEN].copy_from_slice(&header);
                    let len = VXLAN_HEADER_LEN + n;
                    let sent = out.transmit(Transmit::Udp {
                        from: UdpSource::Vxlan(0),
                        to: addr,
                        payload: &hb[..len],
                        segment_size: len,
                    });
                    if sent == 0 {
                        counters.bump(Counter::HeartbeatSendErrors);
                    } else if beat.kind == HeartbeatKind::Ping {
                        counters.bump(Counter::HeartbeatPingsSent);
                    }
                }
                while let Some(event) = peer.vxlan.poll_event() {
                    let e = Event::Heartbeat {
                        addr,
                        path: DirectPath::Vxlan,
                        event,
                    };
                    push_event(events, counters, e);
                }
                fold(peer.vxlan.poll_timeout());
            }
            if let Some(t) = peer.tunnel.as_mut() {
                t.session.handle_timeout(now);
                t.monitor.handle_timeout(now);
                while let Some(beat) = t.monitor.poll_transmit(now) {
                    let tun = &mut scratch.tun;
                    tun.clear();
                    let pad = t.monitor.config().probe_len;
                    match datagram::seal_heartbeat(&mut t.session, now, &beat, pad, tun) {
                        Ok(range) => {
                            let Some(d) = tun.get(range) else { continue };
                            let sent = out.transmit(Transmit::Udp {
                                from: UdpSource::Tunnel,
                                to: t.addr,
                                payload: d,
                                segment_size: d.len().max(1),
                            });
                            if sent == 0 {
                                counters.bump(Counter::TunnelHeartbeatSendErrors);
                            }
                        }
                        Err(e) => drops.bump(e),
                    }
                }
                while let Some(event) = t.monitor.poll_event() {
                    let e = Event::Heartbeat {
                        addr: t.addr,
                        path: DirectPath::Tunnel,
                        event,
                    };
                    push_event(events, counters, e);
                }
                fold(t.monitor.poll_timeout());
                if let Some(s) = t.session.poll_timeout() {
                    fold(s);
                }
            }
        }
        next
    }
}
