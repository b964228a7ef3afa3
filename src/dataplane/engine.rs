//! The data-plane thread: a mio loop over every port and both tunnel sockets, around the
//! pure core.
//!
//! Per readiness event a port is drained in batches (edge-triggered epoll: a port that
//! still has frames after its budget goes back on a ready queue, so one busy port cannot
//! starve the others). Each batch goes to the core whole, which switches it and hands
//! back one transmit per egress port (or per VXLAN source socket, or per super-frame)
//! that [`Sockets`] writes on the spot. The loop sleeps until the core's deadline or the
//! next kernel statistics read, whichever is first; both are kept by what they time.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use datapath::{Core, CoreConfig, Counter, LocalPortDef, LocalPortKind};
use learning::PortId;
use mio::{Events, Interest, Poll, Token, Waker};
use wire::VnetFrame;

use super::sockets::{Port, Sockets};
use super::{Command, DataplaneConfig, LocalPort, PortHandle, stats};
use crate::io::{RxBatch, UdpPort, UdpRxBatch, UdpSendPool};

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

pub(super) struct Engine {
    poll: Poll,
    events: Events,
    waker: Arc<Waker>,
    commands: Receiver<Command>,
    /// The VXLAN receive socket (sends go from the pool, one socket per source port).
    vxlan: UdpPort,
    io: Sockets,
    rx: RxBatch,
    udp_rx: UdpRxBatch,
    ready: VecDeque<Token>,
    queued: HashMap<Token, bool>,
    next_stats: Instant,
    /// For TAP statistics; opened on first use.
    netlink: Option<crate::netlink::Netlink>,
    gso: bool,
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
        let mut tunnel = UdpPort::bind(config.tunnel_bind, &config.udp)
            .with_context(|| format!("cannot bind the tunnel port {}", config.tunnel_bind))?;
        poll.registry()
            .register(&mut tunnel, TUNNEL, Interest::READABLE)?;
        let pool = UdpSendPool::new(
            config.send_sockets.max(1),
            config.vxlan_bind.ip(),
            &config.udp,
        )?;
        let now = Instant::now();
        let gso = pool.max_gso_segments() > 1;
        let core = Core::new(
            CoreConfig {
                local_name: config.local_name,
                mtu: config.mtu,
                password_set: config.password_set,
                trusted_subnets: config.trusted_subnets,
                send_sockets: pool.len(),
            },
            now,
        )?;
        Ok(Self {
            poll,
            events: Events::with_capacity(256),
            waker,
            commands,
            vxlan,
            io: Sockets {
                pool,
                tunnel,
                ports: Vec::new(),
            },
            rx: RxBatch::new(RX_BATCH),
            udp_rx: UdpRxBatch::new(UDP_RX_BUFFERS),
            ready: VecDeque::new(),
            queued: HashMap::new(),
            next_stats: now + STATS_INTERVAL,
            netlink: None,
            gso,
            core,
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
    /// One clock read per turn, and the core's periodic work only when its deadline
    /// passes (a heartbeat or a command makes it due at once): at line rate the loop turns
    /// hundreds of thousands of times a second, and running it every turn cost a fifth
    /// of the thread's time.
    pub(super) fn run(mut self) {
        let mut now = Instant::now();
        while self.running {
            let timeout = if self.ready.is_empty() {
                self.core
                    .poll_timeout()
                    .min(self.next_stats)
                    .saturating_duration_since(now)
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
            now = Instant::now();
            if wake {
                self.handle_commands(now);
            }
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
            if now >= self.core.poll_timeout() {
                self.core.handle_timeout(now, &mut self.io);
            }
            if now >= self.next_stats {
                self.next_stats = now + STATS_INTERVAL;
                stats::fold_kernel_drops(
                    &mut self.core,
                    &mut self.io,
                    &self.vxlan,
                    &mut self.netlink,
                );
            }
            self.log_events();
        }
    }

    /// Logs what the core reported.
    fn log_events(&mut self) {
        while let Some(event) = self.core.poll_event() {
            match event {
                datapath::Event::Heartbeat { addr, path, event } => {
                    tracing::info!(peer = %addr, "{path:?} path {event:?}");
                }
                datapath::Event::PathChanged {
                    peer,
                    relay,
                    change,
                } => tracing::info!(
                    peer = %peer.map(|n| n.to_string()).unwrap_or_default(),
                    relay = %relay.map(|n| n.to_string()).unwrap_or_default(),
                    "path {} -> {}",
                    change.from,
                    change.to
                ),
            }
        }
    }

    /// Receives up to a few batches from a local port and hands each to the core; true
    /// when drained.
    fn service_port(&mut self, id: PortId, now: Instant) -> bool {
        for _ in 0..BATCHES_PER_TURN {
            let Some(port) = self.io.port(id) else {
                return true;
            };
            let n = match port.frames().recv_batch(&mut self.rx) {
                Ok(0) => return true,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
                Err(e) => {
                    tracing::warn!(port = %port.name, "receive failed: {e}");
                    self.core.count(Counter::PortReceiveErrors);
                    return true;
                }
            };
            let frames: arrayvec::ArrayVec<Option<VnetFrame<'_>>, RX_BATCH> = (0..n.min(RX_BATCH))
                .map(|i| (!self.rx.is_truncated(i)).then(|| self.rx.vnet_frame(i)))
                .collect();
            self.core
                .handle_local_frames(now, id, &frames, &mut self.io);
        }
        false
    }

    /// Receives up to a few batches of VXLAN datagrams; true when drained.
    fn service_vxlan(&mut self, now: Instant) -> bool {
        for _ in 0..BATCHES_PER_TURN {
            match self.vxlan.recv_batch(&mut self.udp_rx) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
                Err(e) => {
                    tracing::warn!("VXLAN receive failed: {e}");
                    self.core.count(Counter::VxlanReceiveErrors);
                    return true;
                }
            }
            self.core
                .handle_vxlan_datagrams(now, self.udp_rx.iter(), &mut self.io);
        }
        false
    }

    /// Receives up to a few batches of tunnel datagrams; true when drained.
    fn service_tunnel(&mut self, now: Instant) -> bool {
        for _ in 0..BATCHES_PER_TURN {
            match self.io.tunnel.recv_batch(&mut self.udp_rx) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
                Err(e) => {
                    tracing::warn!("tunnel receive failed: {e}");
                    self.core.count(Counter::TunnelReceiveErrors);
                    return true;
                }
            }
            self.core.handle_tunnel_datagrams(
                now,
                self.udp_rx.iter().map(|(_, d)| d),
                &mut self.io,
            );
        }
        false
    }

    fn handle_commands(&mut self, now: Instant) {
        loop {
            let cmd = match self.commands.try_recv() {
                Ok(cmd) => cmd,
                Err(crossbeam_channel::TryRecvError::Empty) => break,
                Err(crossbeam_channel::TryRecvError::Disconnected) => {
                    self.running = false;
                    break;
                }
            };
            match cmd {
                Command::Mesh(update) => self.core.handle_mesh(update, now),
                Command::AddNetwork(net) => self.core.add_network(net, now),
                Command::RemoveNetwork(id) => self.core.remove_network(id, now),
                Command::AddPort(port, reply) => {
                    let _ = reply.send(self.add_port(port, now));
                }
                Command::RemovePort(id, reply) => {
                    self.remove_port(id, now);
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
                        self.core.remove_static_peer(a, now);
                    }
                }
                Command::Status(reply) => {
                    stats::fold_kernel_drops(
                        &mut self.core,
                        &mut self.io,
                        &self.vxlan,
                        &mut self.netlink,
                    );
                    let status = self.core.status(now);
                    let _ = reply.send(super::status::report(status, self.gso));
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
            mut handle,
            name,
            network,
            endpoint,
        } = port;
        let (kind, kernel_drops_seen) = match &handle {
            // A TAP's kernel count started before this port (it persists across routers).
            PortHandle::Tap(t) => (LocalPortKind::Tap, stats::tap_drops(&mut self.netlink, t)),
            PortHandle::Veth(_) => (LocalPortKind::Veth, None),
        };
        let id = self.core.add_local_port(
            LocalPortDef {
                name: name.clone(),
                kind,
                network,
                endpoint,
            },
            now,
        );
        let token = Token(id.0 as usize);
        let registered = match &mut handle {
            PortHandle::Veth(p) => self.poll.registry().register(p, token, Interest::READABLE),
            PortHandle::Tap(t) => self.poll.registry().register(t, token, Interest::READABLE),
        };
        if let Err(e) = registered {
            let e = format!("cannot watch port {name}: {e}");
            tracing::error!("{e}");
            self.core.remove_local_port(id, now);
            return Err(e);
        }
        self.io.insert(
            id,
            Port {
                handle,
                name,
                kernel_drops_seen,
            },
        );
        // Frames may already be waiting (edge-triggered: no event for them).
        self.enqueue(token);
        Ok(id)
    }

    fn remove_port(&mut self, id: PortId, now: Instant) {
        self.core.remove_local_port(id, now);
        if let Some(mut port) = self.io.remove(id) {
            let _ = match &mut port.handle {
                PortHandle::Veth(p) => self.poll.registry().deregister(p),
                PortHandle::Tap(t) => self.poll.registry().deregister(t),
            };
        }
        let token = Token(id.0 as usize);
        self.queued.remove(&token);
        self.ready.retain(|t| *t != token);
    }
}
