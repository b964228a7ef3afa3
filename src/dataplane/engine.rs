//! The data-plane thread: a mio loop over every port and both tunnel sockets.
//!
//! Per readiness event a port is drained in batches (edge-triggered epoll: a port that
//! still has frames after its budget goes back on a ready queue, so one busy port cannot
//! starve the others). Each batch is switched frame by frame and written out with one
//! batched send per egress port. Nothing on this path allocates: the receive batches,
//! the egress list, the segmentation buffers and the per-port pending lists are reused.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use learning::PortId;
use mio::{Events, Interest, Poll, Token, Waker};
use switch::{PortKind, Switch, SwitchConfig};
use tunnel::{Coalescer, PmtuGuard};
use wire::VnetHdr;

use super::core::{Core, EngineCounters};
use super::peers::Peers;
use super::ports::{LocalSlot, PortCounters, PortTable, Slot};
use super::{Command, DataplaneConfig, LocalPort, PortHandle};
use crate::io::{RxBatch, UdpPort, UdpRxBatch, UdpSendPool, VNET_HDR_LEN};

const WAKER: Token = Token(usize::MAX);
const VXLAN: Token = Token(usize::MAX - 1);
const TUNNEL: Token = Token(usize::MAX - 2);
/// Frames per receive batch on a frame port.
const RX_BATCH: usize = 32;
/// Receive buffers (GRO super-buffers) per batch on a tunnel socket.
const UDP_RX_BUFFERS: usize = 16;
/// Batches one ready port may receive before the others get their turn.
const BATCHES_PER_TURN: usize = 4;
/// How often kernel drop counters are folded in (they are 32-bit and reset on read).
const STATS_INTERVAL: Duration = Duration::from_secs(5);

/// An all-zero virtio header: a complete, wire-sized frame.
pub(super) static NO_VNET: [u8; VNET_HDR_LEN] = [0; VNET_HDR_LEN];

pub(super) struct Engine {
    poll: Poll,
    events: Events,
    waker: Arc<Waker>,
    commands: Receiver<Command>,
    vxlan: UdpPort,
    rx: RxBatch,
    udp_rx: UdpRxBatch,
    coalescer: Coalescer,
    ready: VecDeque<Token>,
    queued: HashMap<Token, bool>,
    next_stats: Instant,
    /// For TAP statistics; opened on first use.
    netlink: Option<crate::netlink::Netlink>,
    core: Core,
    running: bool,
}

impl Engine {
    pub(super) fn new(
        config: DataplaneConfig,
        commands: Receiver<Command>,
    ) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let mut vxlan = UdpPort::bind(config.vxlan_bind, &config.udp)
            .with_context(|| format!("cannot bind the VXLAN port {}", config.vxlan_bind))?;
        poll.registry()
            .register(&mut vxlan, VXLAN, Interest::READABLE)?;
        let mut tunnel_sock = UdpPort::bind(config.tunnel_bind, &config.udp)
            .with_context(|| format!("cannot bind the tunnel port {}", config.tunnel_bind))?;
        poll.registry()
            .register(&mut tunnel_sock, TUNNEL, Interest::READABLE)?;
        let send_pool = UdpSendPool::new(
            config.send_sockets.max(1),
            config.vxlan_bind.ip(),
            &config.udp,
        )?;
        let now = Instant::now();
        let switch = Switch::new(
            SwitchConfig {
                querier_mac: wire::Mac::local_from_bytes(config.local_name),
                ..SwitchConfig::default()
            },
            now,
        )?;
        let gso = send_pool.max_gso_segments() > 1;
        let overlay_mtu = config.overlay_mtu as usize;
        let underlay = tunnel::Underlay::V4;
        let tunnel_mtu =
            tunnel::crypto::datagram::overlay_mtu(underlay, config.underlay_mtu as usize)
                .unwrap_or(overlay_mtu)
                .min(overlay_mtu);
        let mut coalescer = Coalescer::new();
        coalescer.set_mtu(overlay_mtu);
        Ok(Self {
            poll,
            events: Events::with_capacity(256),
            waker,
            commands,
            vxlan,
            rx: RxBatch::new(RX_BATCH),
            udp_rx: UdpRxBatch::new(UDP_RX_BUFFERS),
            coalescer,
            ready: VecDeque::new(),
            queued: HashMap::new(),
            next_stats: now + STATS_INTERVAL,
            netlink: None,
            core: Core {
                switch,
                ports: PortTable::default(),
                peers: Peers::default(),
                networks: HashMap::default(),
                by_vni: HashMap::default(),
                send_pool,
                tunnel_sock,
                routes: None,
                pmtu: PmtuGuard::new(),
                egress: Vec::with_capacity(64),
                reply: vec![0; tunnel::pmtu::REPLY_BUFFER_LEN.max(switch::REPLY_MIN_LEN)],
                icmp: vec![0; tunnel::pmtu::REPLY_BUFFER_LEN],
                seg: Vec::with_capacity(128 * 1024),
                seg_key: None,
                seg_stride: 0,
                hb: vec![0; 2048],
                tun: Vec::with_capacity(128 * 1024),
                rx_tun: Vec::with_capacity(64 * 1024),
                dirty: Vec::with_capacity(64),
                tun_dirty: Vec::with_capacity(64),
                vxlan_out: super::vxlan_out::VxlanQueue::new(),
                tunnel_datagram_max: tunnel::crypto::datagram::max_datagram_len(tunnel_mtu),
                counters: EngineCounters::default(),
                overlay_mtu,
                tunnel_mtu,
                local_name: config.local_name,
                password_set: config.password_set,
                trusted_subnets: config.trusted_subnets,
                gso,
                timers_now: true,
            },
            running: true,
        })
    }

    pub(super) fn waker(&self) -> Arc<Waker> {
        Arc::clone(&self.waker)
    }

    fn enqueue(&mut self, token: Token) {
        let queued = self.queued.entry(token).or_insert(false);
        if !*queued {
            *queued = true;
            self.ready.push_back(token);
        }
    }

    /// The loop; returns on `Shutdown` (or when the control plane is gone).
    ///
    /// One clock read per turn, and the periodic work (heartbeats, path choice, table
    /// sweeps) only when its deadline passes or something it acts on changed: at line
    /// rate the loop turns hundreds of thousands of times a second, and doing both every
    /// turn cost a fifth of the thread's time.
    pub(super) fn run(mut self) {
        let mut now = Instant::now();
        let mut timers_due = now;
        while self.running {
            let timeout = if self.ready.is_empty() {
                timers_due.saturating_duration_since(now)
            } else {
                Duration::ZERO
            };
            if let Err(e) = self.poll.poll(&mut self.events, Some(timeout))
                && e.kind() != std::io::ErrorKind::Interrupted
            {
                tracing::error!("data plane poll failed: {e}");
                return;
            }
            let mut wake = false;
            let tokens: arrayvec::ArrayVec<Token, 256> =
                self.events.iter().map(mio::event::Event::token).collect();
            for token in tokens {
                if token == WAKER {
                    wake = true;
                } else {
                    self.enqueue(token);
                }
            }
            if wake {
                self.handle_commands();
                // Routes, peers and sessions may have changed: paths are chosen again.
                self.core.timers_now = true;
            }
            now = Instant::now();
            for _ in 0..self.ready.len() {
                let Some(token) = self.ready.pop_front() else {
                    break;
                };
                let drained = match token {
                    VXLAN => self.service_vxlan(now),
                    TUNNEL => self.service_tunnel(now),
                    t => self.service_port(PortId(t.0 as u32), now),
                };
                if drained {
                    self.queued.insert(token, false);
                } else {
                    self.ready.push_back(token);
                }
            }
            if self.core.timers_now || now >= timers_due {
                self.core.timers_now = false;
                self.handle_timers(now);
                timers_due = self.next_deadline(now);
            }
            // Nothing waits in a packer across iterations: commands (a peer leaving, a new
            // session) may change the peers at the top of the next one.
            self.core.flush_peers(now);
        }
    }

    fn next_deadline(&self, now: Instant) -> Instant {
        let mut d = self.next_stats.min(now + Duration::from_secs(1));
        if let Some(t) = self.core.switch.poll_timeout() {
            d = d.min(t);
        }
        for (_, p) in self.core.peers.iter() {
            // Only monitors `heartbeats` drives: another's deadline never moves on.
            if p.vxlan_usable() && !self.core.networks.is_empty() {
                d = d.min(p.vxlan.poll_timeout());
            }
            if let Some(t) = &p.tunnel {
                d = d.min(t.monitor.poll_timeout());
                if let Some(s) = t.session.poll_timeout() {
                    d = d.min(s);
                }
            }
            if let Some(s) = p.selector.poll_timeout() {
                d = d.min(s);
            }
        }
        d
    }

    /// Receives and switches up to a few batches from a local port; true when drained.
    fn service_port(&mut self, id: PortId, now: Instant) -> bool {
        for _ in 0..BATCHES_PER_TURN {
            let Some(slot) = self.core.ports.local_mut(id) else {
                return true;
            };
            let n = match slot.port().recv_batch(&mut self.rx) {
                Ok(0) => return true,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
                Err(e) => {
                    tracing::warn!(port = %slot.name, "receive failed: {e}");
                    self.core.counters.bump("engine", "port_receive_errors");
                    return true;
                }
            };
            self.core.switch_local_batch(id, &self.rx, n, now);
        }
        false
    }

    /// Receives and decapsulates up to a few batches of VXLAN datagrams; true when drained.
    fn service_vxlan(&mut self, now: Instant) -> bool {
        let Self {
            vxlan,
            udp_rx,
            coalescer,
            core,
            ..
        } = self;
        for _ in 0..BATCHES_PER_TURN {
            match vxlan.recv_batch(udp_rx) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
                Err(e) => {
                    tracing::warn!("VXLAN receive failed: {e}");
                    core.counters.bump("engine", "vxlan_receive_errors");
                    return true;
                }
            }
            for (src, datagram) in udp_rx.iter() {
                let Some((port, inner)) = core.vxlan_datagram(src, datagram, now) else {
                    continue;
                };
                coalescer.push(
                    u64::from(port.0),
                    inner,
                    &mut |tag, vnet: &VnetHdr, frame: &[u8]| {
                        core.deliver(PortId(tag as u32), vnet, frame, now);
                    },
                );
            }
            coalescer.flush(&mut |tag, vnet: &VnetHdr, frame: &[u8]| {
                core.deliver(PortId(tag as u32), vnet, frame, now);
            });
            // Frames relayed on from this batch.
            core.flush_peers(now);
        }
        false
    }

    /// Receives and opens up to a few batches of tunnel datagrams; true when drained.
    fn service_tunnel(&mut self, now: Instant) -> bool {
        let Self {
            udp_rx,
            coalescer,
            core,
            ..
        } = self;
        for _ in 0..BATCHES_PER_TURN {
            match core.tunnel_sock.recv_batch(udp_rx) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
                Err(e) => {
                    tracing::warn!("tunnel receive failed: {e}");
                    core.counters.bump("engine", "tunnel_receive_errors");
                    return true;
                }
            }
            for (_, datagram) in udp_rx.iter() {
                core.tunnel_datagram(datagram, coalescer, now);
            }
            coalescer.flush(&mut |tag, vnet: &VnetHdr, frame: &[u8]| {
                core.deliver(PortId(tag as u32), vnet, frame, now);
            });
            // Frames relayed on from this batch.
            core.flush_peers(now);
        }
        false
    }

    fn handle_timers(&mut self, now: Instant) {
        let core = &mut self.core;
        core.switch.handle_timeout(now);
        core.egress.clear();
        let mut buf = std::mem::take(&mut core.reply);
        let mut ports = std::mem::take(&mut core.egress);
        while let Some(n) = core.switch.poll_transmit(now, &mut buf, &mut ports) {
            for &p in &ports {
                if let Some(slot) = core.ports.local_mut(p) {
                    slot.send(&[crate::io::TxFrame {
                        vnet: &NO_VNET,
                        frame: &buf[..n],
                    }]);
                }
            }
        }
        core.reply = buf;
        core.egress = ports;
        core.heartbeats(now);
        core.refresh_selectors(now);
        if now >= self.next_stats {
            self.next_stats = now + STATS_INTERVAL;
            core.fold_kernel_stats(&self.vxlan, &mut self.netlink);
        }
    }

    fn handle_commands(&mut self) {
        loop {
            let cmd = match self.commands.try_recv() {
                Ok(cmd) => cmd,
                Err(crossbeam_channel::TryRecvError::Empty) => break,
                Err(crossbeam_channel::TryRecvError::Disconnected) => {
                    self.running = false;
                    break;
                }
            };
            let now = Instant::now();
            match cmd {
                Command::Mesh(update) => self.core.mesh_update(update, now),
                Command::AddNetwork(net) => self.core.add_network(net),
                Command::RemoveNetwork(id) => self.core.remove_network(id),
                Command::AddPort(port, reply) => {
                    let _ = reply.send(self.add_port(port, now));
                }
                Command::RemovePort(id, reply) => {
                    self.remove_port(id);
                    let _ = reply.send(());
                }
                Command::SetEndpoint(id, ep) => self.core.set_endpoint(id, ep, now),
                Command::AddPeers(addrs) => {
                    for a in addrs {
                        self.core.add_static_peer(a, now);
                    }
                }
                Command::RemovePeers(addrs) => {
                    for a in addrs {
                        self.core.remove_static_peer(a);
                    }
                }
                Command::Status(reply) => {
                    self.core.fold_kernel_stats(&self.vxlan, &mut self.netlink);
                    let _ = reply.send(self.core.status(now, &self.coalescer));
                }
                Command::Shutdown => self.running = false,
            }
        }
    }

    /// Adds a local port and starts receiving from it; a port that cannot be watched is
    /// not added (its socket closes) and the error goes back to the caller, who undoes the
    /// rest of the attach.
    fn add_port(&mut self, port: LocalPort, now: Instant) -> Result<PortId, String> {
        let LocalPort {
            handle,
            name,
            network,
            endpoint,
        } = port;
        // A TAP's kernel count started before this port (it persists across routers).
        let kernel_drops_seen = match &handle {
            PortHandle::Tap(t) => super::timers::tap_drops(&mut self.netlink, t),
            PortHandle::Veth(_) => None,
        };
        let id = self.core.ports.insert(Slot::Local(LocalSlot {
            handle,
            name,
            network,
            endpoint: None,
            counters: PortCounters {
                kernel_drops_seen,
                ..PortCounters::default()
            },
            pending: Vec::with_capacity(RX_BATCH),
        }));
        let token = Token(id.0 as usize);
        if let Some(slot) = self.core.ports.local_mut(id) {
            let registered = match &mut slot.handle {
                PortHandle::Veth(p) => self.poll.registry().register(p, token, Interest::READABLE),
                PortHandle::Tap(t) => self.poll.registry().register(t, token, Interest::READABLE),
            };
            if let Err(e) = registered {
                let e = format!("cannot watch port {}: {e}", slot.name);
                tracing::error!("{e}");
                self.core.ports.remove(id);
                return Err(e);
            }
        }
        self.core.switch.add_port(id, network, PortKind::Local);
        self.core.set_endpoint(id, endpoint, now);
        // Frames may already be waiting (edge-triggered: no event for them).
        self.enqueue(token);
        Ok(id)
    }

    fn remove_port(&mut self, id: PortId) {
        self.core.switch.remove_port(id);
        if let Some(Slot::Local(mut l)) = self.core.ports.remove(id) {
            let _ = match &mut l.handle {
                PortHandle::Veth(p) => self.poll.registry().deregister(p),
                PortHandle::Tap(t) => self.poll.registry().deregister(t),
            };
        }
        let token = Token(id.0 as usize);
        self.queued.remove(&token);
        self.ready.retain(|t| *t != token);
    }
}
