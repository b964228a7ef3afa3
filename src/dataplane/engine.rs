//! The data-plane thread: a mio loop over every port and the VXLAN socket.
//!
//! Per readiness event a port is drained in batches (edge-triggered epoll: a port that
//! still has frames after its budget goes back on a ready queue, so one busy port cannot
//! starve the others). Each batch is switched frame by frame and written out with one
//! batched send per egress port. Nothing on this path allocates: the receive batches,
//! the egress list, the segmentation buffer and the per-port pending lists are reused.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use foldhash::fast::FixedState;
use learning::{NetworkId, PortId};
use mio::{Events, Interest, Poll, Token, Waker};
use switch::{PortKind, Switch, SwitchConfig, Verdict};
use tunnel::{Coalescer, Heartbeat, HeartbeatKind, PmtuGuard, PmtuVerdict, VxlanHeader};
use wire::VnetHdr;

use super::peers::Peers;
use super::ports::{LocalSlot, PortCounters, PortTable, RemoteSlot, Slot};
use super::{
    Command, DataplaneConfig, DataplaneStatus, KnownEndpoint, LocalPort, NetworkDef, PortHandle,
};
use crate::api::report::{PortReport, TableReport};
use crate::io::{RxBatch, TxFrame, UdpPort, UdpRxBatch, UdpSendPool, VNET_HDR_LEN};

const WAKER: Token = Token(usize::MAX);
const VXLAN: Token = Token(usize::MAX - 1);
/// Frames per receive batch on a frame port.
const RX_BATCH: usize = 32;
/// Receive buffers (GRO super-buffers) per batch on the VXLAN socket.
const UDP_RX_BUFFERS: usize = 16;
/// Batches one ready port may receive before the others get their turn.
const BATCHES_PER_TURN: usize = 4;
/// Most frames one sendmmsg carries.
const TX_CHUNK: usize = 64;
/// How often kernel drop counters are folded in (they are 32-bit and reset on read).
const STATS_INTERVAL: Duration = Duration::from_secs(5);

static NO_VNET: [u8; VNET_HDR_LEN] = [0; VNET_HDR_LEN];

/// Named counters of the engine itself (the cores count their own).
#[derive(Debug, Default)]
struct EngineCounters {
    named: BTreeMap<(&'static str, &'static str), u64>,
}

impl EngineCounters {
    /// Counts one event `group.name` (drops use the group "drop").
    fn bump(&mut self, group: &'static str, name: &'static str) {
        *self.named.entry((group, name)).or_insert(0) += 1;
    }
}

/// Everything the per-frame path touches besides the receive buffers.
struct Core {
    switch: Switch,
    ports: PortTable,
    peers: Peers,
    networks: HashMap<NetworkId, NetworkDef, FixedState>,
    by_vni: HashMap<u32, NetworkId, FixedState>,
    send_pool: UdpSendPool,
    pmtu: PmtuGuard,
    egress: Vec<PortId>,
    reply: Vec<u8>,
    icmp: Vec<u8>,
    seg: Vec<u8>,
    /// (frame address, frame length, VNI) of what `seg` holds, so a flood to several
    /// peers segments a super-frame once.
    seg_key: Option<(usize, usize, u32)>,
    seg_stride: usize,
    hb: Vec<u8>,
    /// Ports with frames pending in the current batch.
    dirty: Vec<PortId>,
    counters: EngineCounters,
    overlay_mtu: usize,
    local_name: [u8; 6],
    gso: bool,
}

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
    queued: Vec<bool>,
    vxlan_queued: bool,
    next_stats: Instant,
    core: Core,
    running: bool,
}

impl Engine {
    pub(super) fn new(
        config: DataplaneConfig,
        commands: Receiver<Command>,
    ) -> anyhow::Result<Self> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let mut vxlan = UdpPort::bind(config.vxlan_bind, &config.udp)?;
        poll.registry()
            .register(&mut vxlan, VXLAN, Interest::READABLE)?;
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
        let mut coalescer = Coalescer::new();
        coalescer.set_mtu(config.overlay_mtu as usize);
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
            queued: Vec::new(),
            vxlan_queued: false,
            next_stats: now + STATS_INTERVAL,
            core: Core {
                switch,
                ports: PortTable::default(),
                peers: Peers::default(),
                networks: HashMap::default(),
                by_vni: HashMap::default(),
                send_pool,
                pmtu: PmtuGuard::new(),
                egress: Vec::with_capacity(64),
                reply: vec![0; tunnel::pmtu::REPLY_BUFFER_LEN.max(switch::REPLY_MIN_LEN)],
                icmp: vec![0; tunnel::pmtu::REPLY_BUFFER_LEN],
                seg: Vec::with_capacity(128 * 1024),
                seg_key: None,
                seg_stride: 0,
                hb: vec![0; 2048],
                dirty: Vec::with_capacity(64),
                counters: EngineCounters::default(),
                overlay_mtu: config.overlay_mtu as usize,
                local_name: config.local_name,
                gso,
            },
            running: true,
        })
    }

    pub(super) fn waker(&self) -> Arc<Waker> {
        Arc::clone(&self.waker)
    }

    /// The loop; returns on `Shutdown` (or when the control plane is gone).
    pub(super) fn run(mut self) {
        while self.running {
            let now = Instant::now();
            let timeout = if self.ready.is_empty() {
                let deadline = self.next_deadline(now);
                Some(deadline.saturating_duration_since(now))
            } else {
                Some(Duration::ZERO)
            };
            if let Err(e) = self.poll.poll(&mut self.events, timeout)
                && e.kind() != std::io::ErrorKind::Interrupted
            {
                tracing::error!("data plane poll failed: {e}");
                return;
            }
            let mut wake = false;
            for ev in self.events.iter() {
                match ev.token() {
                    WAKER => wake = true,
                    VXLAN => {
                        if !self.vxlan_queued {
                            self.vxlan_queued = true;
                            self.ready.push_back(VXLAN);
                        }
                    }
                    t => {
                        if self.queued.len() <= t.0 {
                            self.queued.resize(t.0 + 1, false);
                        }
                        if !self.queued[t.0] {
                            self.queued[t.0] = true;
                            self.ready.push_back(t);
                        }
                    }
                }
            }
            if wake {
                self.handle_commands();
            }
            let now = Instant::now();
            for _ in 0..self.ready.len() {
                let Some(token) = self.ready.pop_front() else {
                    break;
                };
                let drained = if token == VXLAN {
                    self.service_vxlan(now)
                } else {
                    self.service_port(PortId(token.0 as u32), now)
                };
                if drained {
                    if token == VXLAN {
                        self.vxlan_queued = false;
                    } else if let Some(q) = self.queued.get_mut(token.0) {
                        *q = false;
                    }
                } else {
                    self.ready.push_back(token);
                }
            }
            self.handle_timers(Instant::now());
        }
    }

    fn next_deadline(&self, now: Instant) -> Instant {
        let mut d = self.next_stats.min(now + Duration::from_secs(1));
        if let Some(t) = self.core.switch.poll_timeout() {
            d = d.min(t);
        }
        for (_, p) in self.core.peers.iter() {
            d = d.min(p.vxlan.poll_timeout());
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
                let Some((port, inner)) = classify_datagram(core, src, datagram, now) else {
                    continue;
                };
                coalescer.push(
                    u64::from(port.0),
                    inner,
                    &mut |tag, vnet: &VnetHdr, frame: &[u8]| {
                        core_deliver(core, PortId(tag as u32), vnet, frame, now);
                    },
                );
            }
            coalescer.flush(&mut |tag, vnet: &VnetHdr, frame: &[u8]| {
                core_deliver(core, PortId(tag as u32), vnet, frame, now);
            });
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
                    slot.send(&[TxFrame {
                        vnet: &NO_VNET,
                        frame: &buf[..n],
                    }]);
                }
            }
        }
        core.reply = buf;
        core.egress = ports;
        core.heartbeats(now);
        if now >= self.next_stats {
            self.next_stats = now + STATS_INTERVAL;
            core.fold_kernel_stats();
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
                Command::AddNetwork(net) => self.core.add_network(net, now),
                Command::RemoveNetwork(id) => self.core.remove_network(id),
                Command::AddPort(port, reply) => {
                    let id = self.add_port(port, now);
                    let _ = reply.send(id);
                }
                Command::RemovePort(id, reply) => {
                    self.remove_port(id);
                    let _ = reply.send(());
                }
                Command::SetEndpoint(id, ep) => self.core.set_endpoint(id, ep, now),
                Command::AddPeers(addrs) => {
                    for a in addrs {
                        self.core.add_peer(a, now);
                    }
                }
                Command::RemovePeers(addrs) => {
                    for a in addrs {
                        self.core.remove_peer(a);
                    }
                }
                Command::Status(reply) => {
                    self.core.fold_kernel_stats();
                    let _ = reply.send(self.core.status(now, &self.coalescer));
                }
                Command::Shutdown => self.running = false,
            }
        }
    }

    fn add_port(&mut self, port: LocalPort, now: Instant) -> PortId {
        let LocalPort {
            handle,
            name,
            network,
            endpoint,
        } = port;
        let id = self.core.ports.insert(Slot::Local(LocalSlot {
            handle,
            name,
            network,
            endpoint: None,
            counters: PortCounters::default(),
            pending: Vec::with_capacity(RX_BATCH),
        }));
        let token = Token(id.0 as usize);
        if let Some(slot) = self.core.ports.local_mut(id) {
            let registered = match &mut slot.handle {
                PortHandle::Veth(p) => self.poll.registry().register(p, token, Interest::READABLE),
                PortHandle::Tap(t) => self.poll.registry().register(t, token, Interest::READABLE),
            };
            if let Err(e) = registered {
                tracing::error!(port = %slot.name, "cannot register port: {e}");
            }
        }
        self.core.switch.add_port(id, network, PortKind::Local);
        self.core.set_endpoint(id, endpoint, now);
        // Frames may already be waiting (edge-triggered: no event for them).
        if self.queued.len() <= token.0 {
            self.queued.resize(token.0 + 1, false);
        }
        self.queued[token.0] = true;
        self.ready.push_back(token);
        tracing::debug!(port = id.0, "port added");
        id
    }

    fn remove_port(&mut self, id: PortId) {
        self.core.switch.remove_port(id);
        if let Some(Slot::Local(mut l)) = self.core.ports.remove(id) {
            let _ = match &mut l.handle {
                PortHandle::Veth(p) => self.poll.registry().deregister(p),
                PortHandle::Tap(t) => self.poll.registry().deregister(t),
            };
        }
        if let Some(q) = self.queued.get_mut(id.0 as usize) {
            *q = false;
        }
        self.ready.retain(|t| t.0 != id.0 as usize);
    }
}

/// Decapsulates one datagram and decides whose port it belongs to; heartbeats are
/// consumed here. Returns the remote port of (peer, network) for a data frame.
fn classify_datagram<'a>(
    core: &mut Core,
    src: SocketAddr,
    datagram: &'a [u8],
    now: Instant,
) -> Option<(PortId, &'a [u8])> {
    let Some(pi) = core.peers.index_of(src.ip()) else {
        core.counters.bump("drop", "vxlan_unknown_peer");
        return None;
    };
    let (vni, inner) = match tunnel::decap(datagram) {
        Ok(x) => x,
        Err(e) => {
            core.counters.bump("drop", vxlan_drop_name(&e));
            return None;
        }
    };
    let peer = core.peers.get_mut(pi)?;
    peer.counters.rx_frames += 1;
    peer.counters.rx_bytes += datagram.len() as u64;
    if tunnel::is_heartbeat(inner) {
        match Heartbeat::decode(inner) {
            Ok(hb) => {
                peer.name = Some(hb.sender);
                peer.vxlan.handle_heartbeat(now, &hb);
            }
            Err(_) => core.counters.bump("drop", "heartbeat_malformed"),
        }
        return None;
    }
    let Some(&net) = core.by_vni.get(&vni.get()) else {
        core.counters.bump("drop", "vxlan_unknown_vni");
        return None;
    };
    match peer.ports.get(&net) {
        Some(&p) => Some((p, inner)),
        None => {
            core.counters.bump("drop", "vxlan_unknown_vni");
            None
        }
    }
}

fn vxlan_drop_name(e: &tunnel::VxlanError) -> &'static str {
    e.name()
}

/// Switches a frame that came from a peer and writes it to its local egress ports.
fn core_deliver(core: &mut Core, ingress: PortId, vnet: &VnetHdr, frame: &[u8], now: Instant) {
    let verdict = core
        .switch
        .handle_frame(now, ingress, frame, &mut core.egress, &mut core.reply);
    if verdict != Verdict::Forward {
        return;
    }
    let vnet_bytes = vnet.to_bytes();
    let egress = std::mem::take(&mut core.egress);
    for &e in &egress {
        if let Some(slot) = core.ports.local_mut(e) {
            slot.send(&[TxFrame {
                vnet: &vnet_bytes,
                frame,
            }]);
        }
    }
    core.egress = egress;
}

impl Core {
    fn add_network(&mut self, net: NetworkDef, now: Instant) {
        self.by_vni.insert(net.vni, net.id);
        let id = net.id;
        self.networks.insert(id, net);
        let peers: Vec<usize> = self.peers.iter().map(|(i, _)| i).collect();
        for pi in peers {
            self.add_remote_port(pi, id, now);
        }
    }

    fn remove_network(&mut self, id: NetworkId) {
        if let Some(net) = self.networks.remove(&id) {
            self.by_vni.remove(&net.vni);
        }
        let mut gone = Vec::new();
        for (_, p) in self.peers.iter_mut() {
            if let Some(port) = p.ports.remove(&id) {
                gone.push(port);
            }
        }
        for port in gone {
            self.switch.remove_port(port);
            self.ports.remove(port);
        }
    }

    fn add_remote_port(&mut self, pi: usize, net: NetworkId, _now: Instant) {
        let Some(vni) = self.networks.get(&net).map(|n| n.vni) else {
            return;
        };
        let Some(peer) = self.peers.get(pi) else {
            return;
        };
        if peer.ports.contains_key(&net) {
            return;
        }
        let id = self
            .ports
            .insert(Slot::Remote(RemoteSlot { peer: pi, vni }));
        self.switch.add_port(id, net, PortKind::Remote);
        if let Some(peer) = self.peers.get_mut(pi) {
            peer.ports.insert(net, id);
        }
    }

    fn add_peer(&mut self, addr: SocketAddr, now: Instant) {
        let (pi, new) = self.peers.add(addr, self.local_name, now);
        if new {
            tracing::info!(%addr, "peer added");
            let nets: Vec<NetworkId> = self.networks.keys().copied().collect();
            for n in nets {
                self.add_remote_port(pi, n, now);
            }
        }
    }

    fn remove_peer(&mut self, addr: SocketAddr) {
        if let Some(peer) = self.peers.remove(addr.ip()) {
            for (_, port) in peer.ports {
                self.switch.remove_port(port);
                self.ports.remove(port);
            }
            tracing::info!(%addr, "peer removed");
        }
    }

    fn set_endpoint(&mut self, id: PortId, ep: Option<KnownEndpoint>, now: Instant) {
        let Some(slot) = self.ports.local_mut(id) else {
            return;
        };
        let old = std::mem::replace(&mut slot.endpoint, ep.clone());
        if let Some(old) = old {
            let _ = self.switch.remove_endpoint(now, id, old.mac);
        }
        if let Some(ep) = ep
            && let Err(e) = self.switch.add_endpoint(now, id, ep.mac, &ep.ips)
        {
            tracing::warn!("cannot pin endpoint {}: {e}", ep.mac);
        }
    }

    /// Switches one receive batch of a local port and writes every frame out.
    fn switch_local_batch(&mut self, ingress: PortId, rx: &RxBatch, n: usize, now: Instant) {
        let mut egress = std::mem::take(&mut self.egress);
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
                    for &e in &egress {
                        match self.ports.get_mut(e) {
                            Some(Slot::Local(l)) => {
                                if l.pending.is_empty() {
                                    self.dirty.push(e);
                                }
                                l.pending.push(i as u16);
                            }
                            Some(Slot::Remote(r)) => {
                                let r = *r;
                                let vnet = VnetHdr::parse(rx.vnet(i));
                                self.send_remote(ingress, r, &vnet, frame);
                            }
                            None => {}
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
    }

    /// Writes the frames queued per local port during a batch.
    fn flush_pending(&mut self, rx: &RxBatch) {
        let dirty = std::mem::take(&mut self.dirty);
        for &id in &dirty {
            let Some(slot) = self.ports.local_mut(id) else {
                continue;
            };
            let pending = std::mem::take(&mut slot.pending);
            for chunk in pending.chunks(TX_CHUNK) {
                let mut frames: arrayvec::ArrayVec<TxFrame<'_>, TX_CHUNK> =
                    arrayvec::ArrayVec::new();
                for &i in chunk {
                    frames.push(rx.tx_frame(usize::from(i)));
                }
                slot.send(&frames);
            }
            let mut pending = pending;
            pending.clear();
            slot.pending = pending;
        }
        let mut dirty = dirty;
        dirty.clear();
        self.dirty = dirty;
    }

    /// Sends a frame to a peer over VXLAN: cut to the path MTU if it is a super-frame,
    /// answered with ICMP if it is too big and must not be fragmented.
    fn send_remote(&mut self, ingress: PortId, r: RemoteSlot, vnet: &VnetHdr, frame: &[u8]) {
        let Some(dest) = self.peers.get(r.peer).map(|p| p.addr) else {
            return;
        };
        match self
            .pmtu
            .check(vnet, frame, self.overlay_mtu, &mut self.icmp)
        {
            PmtuVerdict::Fits | PmtuVerdict::Segment | PmtuVerdict::SendOversized => {}
            PmtuVerdict::Reply { len } => {
                if let (Some(slot), Some(icmp)) =
                    (self.ports.local_mut(ingress), self.icmp.get(..len))
                {
                    slot.send(&[TxFrame {
                        vnet: &NO_VNET,
                        frame: icmp,
                    }]);
                }
                return;
            }
            PmtuVerdict::Drop(_) => {
                self.counters.bump("drop", "pmtu");
                return;
            }
        }
        let key = (frame.as_ptr() as usize, frame.len(), r.vni);
        if self.seg_key != Some(key) {
            let prefix = tunnel::vxlan::Vni::new(r.vni).map(|v| VxlanHeader::new(v).to_bytes());
            let Some(prefix) = prefix else { return };
            // A non-DF IPv4 packet bigger than the path is sent whole; the kernel
            // fragments the outer datagram.
            let mtu = if vnet.is_gso() {
                self.overlay_mtu
            } else {
                usize::MAX
            };
            match tunnel::segment(vnet, frame, mtu, &prefix, &mut self.seg) {
                Ok(s) => {
                    self.seg_key = Some(key);
                    self.seg_stride = s.stride;
                }
                Err(e) => {
                    self.seg_key = None;
                    self.counters.bump("drop", e.name());
                    return;
                }
            }
        }
        let hash = tunnel::flow_hash(frame);
        let datagrams = self.seg.len().div_ceil(self.seg_stride.max(1));
        match self.send_pool.send(hash, dest, &self.seg, self.seg_stride) {
            Ok(()) => {
                if let Some(p) = self.peers.get_mut(r.peer) {
                    p.counters.tx_frames += datagrams as u64;
                    p.counters.tx_bytes += self.seg.len() as u64;
                }
            }
            Err(e) => {
                self.counters.bump("drop", "vxlan_send_failed");
                tracing::trace!(%dest, "VXLAN send failed: {e}");
            }
        }
    }

    /// Sends due heartbeats (pings and pongs) to every peer over VXLAN.
    fn heartbeats(&mut self, now: Instant) {
        let vni = self
            .networks
            .values()
            .map(|n| n.vni)
            .min()
            .and_then(tunnel::vxlan::Vni::new);
        let Some(vni) = vni else { return };
        let header = VxlanHeader::new(vni).to_bytes();
        let Self {
            peers,
            hb,
            send_pool,
            counters,
            ..
        } = self;
        for (_, peer) in peers.iter_mut() {
            peer.vxlan.handle_timeout(now);
            while let Some(beat) = peer.vxlan.poll_transmit(now) {
                let Some(body) = hb.get_mut(tunnel::vxlan::VXLAN_HEADER_LEN..) else {
                    break;
                };
                let pad = peer.vxlan.config().probe_len;
                let Ok(n) = beat.encode(pad, body) else {
                    counters.bump("engine", "heartbeat_encode_errors");
                    continue;
                };
                hb[..tunnel::vxlan::VXLAN_HEADER_LEN].copy_from_slice(&header);
                let len = tunnel::vxlan::VXLAN_HEADER_LEN + n;
                if send_pool.send(0, peer.addr, &hb[..len], len).is_err() {
                    counters.bump("engine", "heartbeat_send_errors");
                } else if beat.kind == HeartbeatKind::Ping {
                    counters.bump("engine", "heartbeat_pings_sent");
                }
            }
            while let Some(ev) = peer.vxlan.poll_event() {
                tracing::info!(peer = %peer.addr, "VXLAN path {ev:?}");
            }
        }
    }

    fn fold_kernel_stats(&mut self) {
        for (_, slot) in self.ports.locals_mut() {
            if let PortHandle::Veth(p) = &slot.handle
                && let Ok(s) = p.stats()
            {
                slot.counters.kernel_drops += u64::from(s.drops);
            }
        }
    }

    fn status(&self, now: Instant, coalescer: &Coalescer) -> DataplaneStatus {
        let net_name = |id: NetworkId| {
            self.networks
                .get(&id)
                .map(|n| n.name.clone())
                .unwrap_or_default()
        };
        let mut ports = Vec::new();
        for (id, slot) in self.ports.iter() {
            if let Slot::Local(l) = slot {
                let c = l.counters;
                ports.push(PortReport {
                    id: id.0,
                    kind: l.kind().into(),
                    name: l.name.clone(),
                    network: net_name(l.network),
                    rx_frames: c.rx_frames,
                    rx_bytes: c.rx_bytes,
                    tx_frames: c.tx_frames,
                    tx_bytes: c.tx_bytes,
                    tx_dropped: c.tx_dropped,
                    kernel_drops: c.kernel_drops,
                });
            }
        }
        let peers = self.peers.iter().map(|(_, p)| p.report()).collect();
        let sc = self.switch.counters();
        let mut counters: BTreeMap<String, u64> = BTreeMap::new();
        for (k, v) in [
            ("switch.frames", sc.frames),
            ("switch.forwarded_unicast", sc.forwarded_unicast),
            ("switch.flooded_broadcast", sc.flooded_broadcast),
            ("switch.flooded_unknown_unicast", sc.flooded_unknown_unicast),
            ("switch.flooded_multicast", sc.flooded_multicast),
            ("switch.multicast_to_members", sc.multicast_to_members),
            ("switch.arp_proxied", sc.arp_proxied),
            ("switch.igmp_snooped", sc.igmp_snooped),
            ("switch.queries_sent", sc.queries_sent),
            ("mac.learned", sc.macs.learned),
            ("mac.moved", sc.macs.moved),
            ("mac.evicted", sc.macs.evicted),
            ("mac.expired", sc.macs.expired),
            ("neighbour.learned", sc.neighbours.learned),
            ("neighbour.static_conflicts", sc.neighbours.static_conflicts),
            ("group.joins", sc.groups.joins),
            ("group.leaves", sc.groups.leaves),
            ("group.expired", sc.groups.expired),
        ] {
            counters.insert(k.into(), v);
        }
        for (reason, v) in sc.drops.iter() {
            counters.insert(format!("drop.{}", reason.name()), v);
        }
        let cc = coalescer.counters();
        for (k, v) in [
            ("gro.frames_in", cc.frames_in),
            ("gro.segments_merged", cc.segments_merged),
            ("gro.super_frames_out", cc.super_frames_out),
            ("gro.bad_checksum", cc.bad_checksum),
        ] {
            counters.insert(k.into(), v);
        }
        let pc = self.pmtu.counters();
        for (k, v) in [
            ("pmtu.segmented", pc.segment),
            ("pmtu.sent_oversized", pc.sent_oversized),
            ("pmtu.frag_needed_sent", pc.frag_needed),
            ("pmtu.packet_too_big_sent", pc.packet_too_big),
        ] {
            counters.insert(k.into(), v);
        }
        for ((group, name), v) in &self.counters.named {
            counters.insert(format!("{group}.{name}"), *v);
        }
        DataplaneStatus {
            ports,
            peers,
            tables: TableReport {
                macs: self.switch.mac_entries(now).count(),
                neighbours: self.switch.neighbours(now).count(),
                groups: self.switch.groups(now).count(),
            },
            counters,
            data_path: format!(
                "AF_PACKET + vnet_hdr (TSO super-frames pass whole), recvmmsg/sendmmsg; VXLAN over UDP with {} and GRO",
                if self.gso { "GSO" } else { "no GSO" }
            ),
        }
    }
}
