//! The core itself: its state, and its public face — frames, datagrams, commands and
//! time in; transmits, events and the next deadline out.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use foldhash::fast::FixedState;
use learning::{NetworkId, PortId};
use mesh::PeerName;
use switch::{Switch, SwitchConfig};
use tunnel::path::PathPolicy;
use tunnel::{Coalescer, PmtuGuard, Vni};
use wire::VnetFrame;

use crate::boundary::{CoreConfig, KnownEndpoint, LocalPortDef, MeshUpdate, NetworkDef};
use crate::drops::{Counter, Counters, DropCounters, OwnDrop};
use crate::events::{EVENT_QUEUE, Event};
use crate::peers::Peers;
use crate::ports::PortTable;
use crate::status::Status;
use crate::timers::Deadline;
use crate::transmit::{RxSocket, Sink};
use crate::vxlan_out::VxlanQueue;

/// The data plane's decisions for one router (see the crate docs).
#[derive(Debug)]
pub struct Core {
    /// Software GRO of received tunnel traffic; apart from the rest so that what it
    /// emits can be switched by the rest while it holds its runs.
    gro: Coalescer,
    st: State,
}

/// Scratch buffers of the frame path, allocated once.
#[derive(Debug)]
pub(crate) struct Scratch {
    /// The switch's egress list for the frame in hand.
    pub(crate) egress: Vec<PortId>,
    /// The switch's answers (ARP replies, IGMP queries).
    pub(crate) reply: Vec<u8>,
    /// ICMP "too big" answers.
    pub(crate) icmp: Vec<u8>,
    /// VXLAN datagrams of the frame in hand.
    pub(crate) seg: Vec<u8>,
    /// (frame address, frame length, VNI) of what `seg` holds, so a flood to several
    /// peers segments a super-frame once.
    pub(crate) seg_key: Option<(usize, usize, Vni)>,
    pub(crate) seg_stride: usize,
    /// A VXLAN heartbeat.
    pub(crate) hb: Vec<u8>,
    /// Sealed tunnel datagrams of the frame in hand (and heartbeats).
    pub(crate) tun: Vec<u8>,
    /// A received tunnel datagram, opened in place.
    pub(crate) rx_tun: Vec<u8>,
}

/// Everything but the coalescer.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) switch: Switch,
    pub(crate) ports: PortTable,
    pub(crate) peers: Peers,
    pub(crate) networks: HashMap<NetworkId, NetworkDef, FixedState>,
    pub(crate) by_vni: HashMap<Vni, NetworkId, FixedState>,
    pub(crate) routes: Option<Arc<mesh::RouteTable>>,
    pub(crate) pmtu: PmtuGuard,
    pub(crate) scratch: Scratch,
    /// Local ports with frames pending in the current batch.
    pub(crate) dirty: Vec<PortId>,
    /// Peers whose tunnel packer holds frames (sealed and sent by `flush_peers`).
    pub(crate) tun_dirty: Vec<usize>,
    /// Single VXLAN datagrams of the current batch (sent by `flush_peers`).
    pub(crate) vxlan_out: VxlanQueue,
    pub(crate) drops: DropCounters,
    pub(crate) counters: Counters,
    pub(crate) events: VecDeque<Event>,
    pub(crate) deadline: Deadline,
    /// The longest tunnel datagram the path carries: small frames are packed up to it.
    pub(crate) tunnel_datagram_max: usize,
    /// IP MTU of the VXLAN path (the overlay MTU containers get).
    pub(crate) overlay_mtu: usize,
    /// IP MTU of the encrypted path.
    pub(crate) tunnel_mtu: usize,
    pub(crate) local_name: PeerName,
    pub(crate) password_set: bool,
    pub(crate) trusted_subnets: Vec<ipnet::IpNet>,
    pub(crate) send_sockets: usize,
}

impl Core {
    /// A core with no ports, networks or peers.
    pub fn new(config: CoreConfig, now: Instant) -> Result<Self, switch::ConfigError> {
        let switch = Switch::new(
            SwitchConfig {
                querier_mac: wire::Mac::local_from_bytes(config.local_name.0),
                ..SwitchConfig::default()
            },
            now,
        )?;
        let overlay_mtu = config.mtu.overlay;
        let tunnel_mtu = config.mtu.tunnel;
        let mut gro = Coalescer::new();
        gro.set_mtu(overlay_mtu);
        Ok(Self {
            gro,
            st: State {
                switch,
                ports: PortTable::default(),
                peers: Peers::default(),
                networks: HashMap::default(),
                by_vni: HashMap::default(),
                routes: None,
                pmtu: PmtuGuard::new(),
                scratch: Scratch {
                    egress: Vec::with_capacity(64),
                    reply: vec![0; tunnel::pmtu::REPLY_BUFFER_LEN.max(switch::REPLY_MIN_LEN)],
                    icmp: vec![0; tunnel::pmtu::REPLY_BUFFER_LEN],
                    seg: Vec::with_capacity(128 * 1024),
                    seg_key: None,
                    seg_stride: 0,
                    hb: vec![0; 2048],
                    tun: Vec::with_capacity(128 * 1024),
                    rx_tun: Vec::with_capacity(64 * 1024),
                },
                dirty: Vec::with_capacity(64),
                tun_dirty: Vec::with_capacity(64),
                vxlan_out: VxlanQueue::new(),
                drops: DropCounters::default(),
                counters: Counters::default(),
                events: VecDeque::with_capacity(EVENT_QUEUE),
                deadline: Deadline::new(now),
                tunnel_datagram_max: tunnel::crypto::datagram::max_datagram_len(tunnel_mtu),
                overlay_mtu,
                tunnel_mtu,
                local_name: config.local_name,
                password_set: config.password_set,
                trusted_subnets: config.trusted_subnets,
                send_sockets: config.send_sockets.max(1),
            },
        })
    }

    // ---- frames in -------------------------------------------------------------------

    /// One receive batch from local port `ingress`: each frame is switched, frames for
    /// local ports leave with one transmit per port, frames for peers are sent, packed or
    /// queued and everything queued leaves before this returns. `None` marks a frame the
    /// port cut short (counted, dropped); transmits refer to `frames` by index, never a
    /// copy.
    pub fn handle_local_frames(
        &mut self,
        now: Instant,
        ingress: PortId,
        frames: &[Option<VnetFrame<'_>>],
        out: &mut dyn Sink,
    ) {
        self.st.deadline.saw(now);
        self.st.switch_local_batch(ingress, frames, now, out);
    }

    /// One receive batch from the VXLAN socket, each datagram with its source address:
    /// decapsulated, heartbeats consumed, TCP segments merged back into super-frames and
    /// switched to local ports.
    pub fn handle_vxlan_datagrams<'a>(
        &mut self,
        now: Instant,
        datagrams: impl IntoIterator<Item = (SocketAddr, &'a [u8])>,
        out: &mut dyn Sink,
    ) {
        let Self { gro, st } = self;
        st.deadline.saw(now);
        for (src, datagram) in datagrams {
            let Some((port, inner)) = st.vxlan_datagram(src, datagram, now) else {
                continue;
            };
            gro.push(u64::from(port.0), inner, &mut |tag, vnet, frame| {
                st.deliver(PortId(tag as u32), vnet, frame, now, out);
            });
        }
        gro.flush(&mut |tag, vnet, frame| {
            st.deliver(PortId(tag as u32), vnet, frame, now, out);
        });
        // Frames relayed on from this batch.
        st.flush_peers(now, out);
    }

    /// One receive batch from the tunnel socket: opened, heartbeats consumed, frames
    /// delivered here, relayed on, or flooded down the origin's broadcast tree.
    pub fn handle_tunnel_datagrams<'a>(
        &mut self,
        now: Instant,
        datagrams: impl IntoIterator<Item = &'a [u8]>,
        out: &mut dyn Sink,
    ) {
        let Self { gro, st } = self;
        st.deadline.saw(now);
        for datagram in datagrams {
            st.tunnel_datagram(datagram, gro, now, out);
        }
        gro.flush(&mut |tag, vnet, frame| {
            st.deliver(PortId(tag as u32), vnet, frame, now, out);
        });
        st.flush_peers(now, out);
    }

    // ---- time --------------------------------------------------------------------------

    /// When [`Core::handle_timeout`] is next due: the earliest deadline of the state
    /// machines it drives, or the last `now` seen when something they act on changed
    /// (a heartbeat arrived, a command came). Never earlier than that `now` after a
    /// `handle_timeout` with nothing new: an idle router sleeps.
    pub fn poll_timeout(&self) -> Instant {
        self.st.deadline.get()
    }

    /// Periodic work: IGMP queries, table sweeps, heartbeats on every direct path, path
    /// choice. Each state machine it drives reports its next deadline here, so
    /// [`Core::poll_timeout`] waits on exactly those.
    pub fn handle_timeout(&mut self, now: Instant, out: &mut dyn Sink) {
        self.st.deadline.saw(now);
        self.st.handle_timeout(now, out);
    }

    /// The next thing that happened (a path came up or went down, traffic moved), if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.st.events.pop_front()
    }

    // ---- commands ----------------------------------------------------------------------

    /// Declares a network: every peer gets a port on it.
    pub fn add_network(&mut self, net: NetworkDef, now: Instant) {
        self.st.changed(now);
        self.st.add_network(net);
    }

    /// Forgets a network and the peers' ports on it (its local ports must be gone).
    pub fn remove_network(&mut self, id: NetworkId, now: Instant) {
        self.st.changed(now);
        self.st.remove_network(id);
    }

    /// Adds a local port; the shell receives from its device under the returned id.
    pub fn add_local_port(&mut self, port: LocalPortDef, now: Instant) -> PortId {
        self.st.changed(now);
        self.st.add_local_port(port, now)
    }

    /// Removes a local port and everything learned on it.
    pub fn remove_local_port(&mut self, id: PortId, now: Instant) {
        self.st.changed(now);
        self.st.remove_local_port(id);
    }

    /// Replaces what the switch knows for sure about the endpoint behind a local port.
    pub fn set_endpoint(&mut self, id: PortId, endpoint: Option<KnownEndpoint>, now: Instant) {
        self.st.changed(now);
        self.st.set_endpoint(id, endpoint, now);
    }

    /// A peer named on the command line (or `weft connect`): VXLAN to its address.
    pub fn add_static_peer(&mut self, addr: SocketAddr, now: Instant) {
        self.st.changed(now);
        self.st.add_static_peer(addr, now);
    }

    /// Forgets a command-line peer (the mesh may still know it).
    pub fn remove_static_peer(&mut self, addr: SocketAddr, now: Instant) {
        self.st.changed(now);
        self.st.remove_static_peer(addr);
    }

    /// Applies what the mesh says.
    pub fn handle_mesh(&mut self, update: MeshUpdate, now: Instant) {
        self.st.changed(now);
        self.st.mesh_update(update, now);
    }

    // ---- what only the shell sees ------------------------------------------------------

    /// Counts an event only the shell sees (a receive error).
    pub fn count(&mut self, counter: Counter) {
        self.st.counters.bump(counter);
    }

    /// Adds frames the kernel dropped at local port `id` before weft read them.
    pub fn add_port_kernel_drops(&mut self, id: PortId, n: u64) {
        if let Some(slot) = self.st.ports.local_mut(id) {
            slot.counters.kernel_drops += n;
            self.st.drops.add(OwnDrop::PortKernel, n);
        }
    }

    /// Records the kernel's cumulative receive-buffer drops of a receiving socket.
    pub fn set_socket_drops(&mut self, socket: RxSocket, total: u64) {
        let reason = match socket {
            RxSocket::Vxlan => OwnDrop::VxlanSocketOverflow,
            RxSocket::Tunnel => OwnDrop::TunnelSocketOverflow,
        };
        self.st.drops.set(reason, total);
    }

    /// A snapshot for status and metrics.
    pub fn status(&self, now: Instant) -> Status {
        self.st.status(now, self.gro.counters())
    }

    /// How many frames and datagrams were dropped, for any reason of the data plane's
    /// own (the switch's excluded).
    pub fn drops(&self) -> &DropCounters {
        &self.st.drops
    }

    /// The data plane's other counters.
    pub fn counters(&self) -> &Counters {
        &self.st.counters
    }
}

impl State {
    /// Something periodic work acts on changed (routes, peers, sessions, ports): it runs
    /// at once, so paths are chosen again.
    pub(crate) fn changed(&mut self, now: Instant) {
        self.deadline.saw(now);
        self.deadline.due_now();
    }

    /// The path policy for a peer at `ip` (None: only reachable through relays).
    pub(crate) fn policy_for(&self, ip: Option<std::net::IpAddr>) -> PathPolicy {
        match ip {
            Some(ip) => PathPolicy::for_peer(self.password_set, ip, &self.trusted_subnets),
            None if self.password_set => PathPolicy::EncryptedOnly,
            None => PathPolicy::for_peer(false, std::net::IpAddr::from([0, 0, 0, 0]), &[]),
        }
    }

    /// Queues an event.
    pub(crate) fn event(&mut self, event: Event) {
        push_event(&mut self.events, &mut self.counters, event);
    }
}

/// Queues an event, dropping (and counting) the oldest when nobody drains them.
pub(crate) fn push_event(events: &mut VecDeque<Event>, counters: &mut Counters, event: Event) {
    if events.len() >= EVENT_QUEUE {
        events.pop_front();
        counters.bump(Counter::EventsLost);
    }
    events.push_back(event);
}
