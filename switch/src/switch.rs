//! The [`Switch`]: ports, endpoints, the per-frame decision, timers and status views.
//!
//! Contract (sans-I/O, quinn-proto's shape): inputs are [`Switch::handle_frame`],
//! [`Switch::handle_timeout`] and the port/endpoint calls; outputs are the returned
//! [`Verdict`], [`Switch::poll_transmit`] (frames the switch originates),
//! [`Switch::poll_event`] and [`Switch::poll_timeout`]. The switch never reads a clock,
//! never does I/O and is fully deterministic given its inputs and `hash_seed`.
//!
//! Forwarding rules, per frame:
//! - The source MAC of every accepted frame is learned on the ingress port (a remote port
//!   stands for one peer, so remote MACs are learned per peer). A move takes effect at once.
//! - Known unicast goes to its one port; to the ingress port is a `Hairpin` drop, from a
//!   remote port to a remote port a `RemoteToRemote` drop (split horizon).
//! - Broadcast and unknown unicast flood to the network's ports except the ingress; from a
//!   remote port, to local ports only. Frames never leave their network.
//! - ARP, IGMP and IPv4 multicast follow the rules in `arp.rs` and `igmp.rs`.
//!
//! The per-frame path allocates nothing (the caller owns and reuses `egress` and `reply`),
//! takes no lock, and hashes only for the port and table lookups.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::time::Instant;

use foldhash::fast::FixedState;
use learning::{
    GroupEntry, GroupTable, GroupTableConfig, MacEntry, MacLearn, MacTable, MacTableConfig,
    NeighbourEntry, NeighbourTable, NeighbourTableConfig, NetworkId, PortId,
};
use wire::Mac;

use crate::classify::{FrameKind, classify};
use crate::config::{ConfigError, SwitchConfig};
use crate::counters::SwitchCounters;
use crate::events::{EventQueue, SwitchEvent};
use crate::ports::{FloodSet, PortInfo, PortKind, PortView};
use crate::verdict::{DropReason, Verdict};

/// How a delivered frame was delivered: decides which counter it adds to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// Known unicast to its one port.
    Unicast,
    /// Unicast to an unknown MAC, flooded.
    UnknownUnicast,
    /// Broadcast, flooded.
    Broadcast,
    /// Multicast that floods.
    Multicast,
    /// IPv4 group traffic to its members.
    Group,
    /// Answered by the ARP proxy with a reply of this length.
    Proxied(usize),
}

/// Misuse of the switch's control API (the data path never returns errors: it drops).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SwitchError {
    /// The call names a port the switch does not have.
    #[error("{0} is not a switch port: add it with add_port first")]
    UnknownPort(PortId),
    /// An endpoint's MAC must be one a station can send from.
    #[error("endpoint MAC {0} is multicast or zero: an endpoint needs a unicast MAC")]
    InvalidEndpointMac(Mac),
    /// An endpoint's address must be a unicast IPv4 address.
    #[error("endpoint address {0} is not a unicast IPv4 address")]
    InvalidEndpointIp(Ipv4Addr),
}

/// The forwarding core of one weft router. See the module documentation.
#[derive(Debug)]
pub struct Switch {
    pub(crate) config: SwitchConfig,
    pub(crate) ports: HashMap<PortId, PortInfo, FixedState>,
    /// Per network, its ports. Ordered so that querier rounds are deterministic.
    pub(crate) networks: BTreeMap<NetworkId, FloodSet>,
    pub(crate) macs: MacTable,
    pub(crate) neighbours: NeighbourTable,
    pub(crate) groups: GroupTable,
    pub(crate) counters: SwitchCounters,
    pub(crate) events: EventQueue,
    /// When the next round of IGMP general queries is due (querier on).
    pub(crate) next_query: Option<Instant>,
    /// Networks still to be sent this round's general query, last one first.
    pub(crate) pending_queries: Vec<NetworkId>,
}

impl Switch {
    /// A switch with no ports. Refuses configurations that [`SwitchConfig::validate`] rejects.
    pub fn new(config: SwitchConfig, now: Instant) -> Result<Self, ConfigError> {
        config.validate()?;
        let seed = config.hash_seed;
        Ok(Self {
            ports: HashMap::with_hasher(FixedState::with_seed(seed ^ 0x706f_7274)),
            networks: BTreeMap::new(),
            macs: MacTable::new(
                MacTableConfig {
                    max_age: config.mac_max_age,
                    capacity: config.mac_capacity,
                },
                seed,
            ),
            neighbours: NeighbourTable::new(
                NeighbourTableConfig {
                    max_age: config.neighbour_max_age,
                    capacity: config.neighbour_capacity,
                },
                seed ^ 0x6e65_6967,
            ),
            groups: GroupTable::new(
                GroupTableConfig {
                    membership_interval: config.membership_interval,
                    capacity: config.group_capacity,
                },
                seed ^ 0x6772_6f75,
            ),
            counters: SwitchCounters::default(),
            events: EventQueue::new(config.event_capacity),
            next_query: if config.igmp_querier {
                now.checked_add(config.startup_query_delay)
            } else {
                None
            },
            pending_queries: Vec::new(),
            config,
        })
    }

    /// The configuration the switch runs with.
    pub fn config(&self) -> &SwitchConfig {
        &self.config
    }

    /// Adds `port` to `network`. Adding a port that exists with another network or kind
    /// first removes it (forgetting what was learned there); adding it unchanged does nothing.
    pub fn add_port(&mut self, port: PortId, network: NetworkId, kind: PortKind) {
        let info = PortInfo { network, kind };
        match self.ports.get(&port) {
            Some(existing) if *existing == info => return,
            Some(_) => self.remove_port(port),
            None => {}
        }
        self.ports.insert(port, info);
        self.networks.entry(network).or_default().insert(port, kind);
    }

    /// Removes `port` and everything learned or pinned on it: its MACs and its group
    /// memberships (a container detached, a peer left the network).
    pub fn remove_port(&mut self, port: PortId) {
        let Some(info) = self.ports.remove(&port) else {
            return;
        };
        if let Some(set) = self.networks.get_mut(&info.network) {
            set.remove(port);
            if set.is_empty() {
                self.networks.remove(&info.network);
            }
        }
        self.macs.remove_port(port);
        self.groups.remove_port(port);
    }

    /// An endpoint weft knows for sure (a local container from attach, a remote one from
    /// gossip): pins its MAC to `port` and binds its addresses statically, so unicast and the
    /// ARP proxy work without flooding.
    pub fn add_endpoint(
        &mut self,
        now: Instant,
        port: PortId,
        mac: Mac,
        ips: &[Ipv4Addr],
    ) -> Result<(), SwitchError> {
        let info = *self
            .ports
            .get(&port)
            .ok_or(SwitchError::UnknownPort(port))?;
        if !mac.is_valid_source() {
            return Err(SwitchError::InvalidEndpointMac(mac));
        }
        if let Some(&bad) = ips
            .iter()
            .find(|ip| ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast())
        {
            return Err(SwitchError::InvalidEndpointIp(bad));
        }
        self.macs.pin(now, info.network, mac, port);
        for &ip in ips {
            self.neighbours.add_static(now, info.network, ip, mac);
        }
        Ok(())
    }

    /// The endpoint with `mac` on `port` is gone. Its MAC entry goes if it still lives on
    /// `port`, and its static addresses go unless the MAC is pinned elsewhere now (a newer
    /// endpoint took it over, and a stale withdrawal must not undo that).
    pub fn remove_endpoint(
        &mut self,
        now: Instant,
        port: PortId,
        mac: Mac,
    ) -> Result<(), SwitchError> {
        let info = *self
            .ports
            .get(&port)
            .ok_or(SwitchError::UnknownPort(port))?;
        self.macs.remove(info.network, mac, port);
        if !self.macs.is_pinned(now, info.network, mac) {
            self.neighbours.remove_static_for(info.network, mac);
        }
        Ok(())
    }

    /// The per-frame decision for `frame` (an Ethernet frame, without vnet header) that
    /// arrived on `ingress`.
    ///
    /// `egress` is cleared and, for [`Verdict::Forward`], filled with the ports to send the
    /// frame to; for [`Verdict::Reply`]`(n)`, `reply[..n]` goes back out of `ingress`. Both
    /// are caller-owned and reused, so the call allocates nothing. `reply` should hold at
    /// least [`crate::REPLY_MIN_LEN`] bytes, or ARP requests are flooded rather than answered.
    pub fn handle_frame(
        &mut self,
        now: Instant,
        ingress: PortId,
        frame: &[u8],
        egress: &mut Vec<PortId>,
        reply: &mut [u8],
    ) -> Verdict {
        egress.clear();
        self.counters.frames += 1;
        match self.decide(now, ingress, frame, egress, reply) {
            Ok(delivery) => {
                let c = &mut self.counters;
                match delivery {
                    Delivery::Unicast => c.forwarded_unicast += 1,
                    Delivery::UnknownUnicast => c.flooded_unknown_unicast += 1,
                    Delivery::Broadcast => c.flooded_broadcast += 1,
                    Delivery::Multicast => c.flooded_multicast += 1,
                    Delivery::Group => c.multicast_to_members += 1,
                    Delivery::Proxied(_) => c.arp_proxied += 1,
                }
                match delivery {
                    Delivery::Proxied(n) => Verdict::Reply(n),
                    _ => Verdict::Forward,
                }
            }
            Err(reason) => {
                self.counters.drops.add(reason);
                egress.clear();
                Verdict::Drop(reason)
            }
        }
    }

    fn decide(
        &mut self,
        now: Instant,
        ingress: PortId,
        frame: &[u8],
        egress: &mut Vec<PortId>,
        reply: &mut [u8],
    ) -> Result<Delivery, DropReason> {
        let info = *self.ports.get(&ingress).ok_or(DropReason::UnknownPort)?;
        let frame = classify(frame)?;
        self.learn_source(now, ingress, info.network, frame.src);
        match frame.kind {
            FrameKind::Unicast => self.forward_unicast(now, ingress, info, frame.dst, egress),
            FrameKind::Broadcast => self.flood(ingress, info, egress, Delivery::Broadcast),
            FrameKind::Arp { packet, broadcast } => {
                self.snoop_arp(now, ingress, info, &packet);
                if !broadcast {
                    return self.forward_unicast(now, ingress, info, frame.dst, egress);
                }
                if let Some(n) = self.proxy_arp(now, ingress, info, frame.src, &packet, reply) {
                    return Ok(Delivery::Proxied(n));
                }
                self.flood(ingress, info, egress, Delivery::Broadcast)
            }
            FrameKind::Igmp { message, bytes } => {
                if self.config.igmp_snooping {
                    self.snoop_igmp(now, ingress, info, message, bytes)?;
                }
                self.flood(ingress, info, egress, Delivery::Multicast)
            }
            FrameKind::Group { group } if self.config.igmp_snooping => {
                self.deliver_to_group(now, ingress, info, group, egress)
            }
            FrameKind::Group { .. } | FrameKind::FloodMulticast => {
                self.flood(ingress, info, egress, Delivery::Multicast)
            }
        }
    }

    #[inline]
    fn learn_source(&mut self, now: Instant, ingress: PortId, network: NetworkId, src: Mac) {
        if let MacLearn::Moved { from } = self.macs.learn(now, network, src, ingress) {
            self.events.push(SwitchEvent::MacMoved {
                network,
                mac: src,
                from,
                to: ingress,
            });
        }
    }

    /// Known unicast to its port; unknown unicast floods.
    #[inline]
    pub(crate) fn forward_unicast(
        &mut self,
        now: Instant,
        ingress: PortId,
        info: PortInfo,
        dst: Mac,
        egress: &mut Vec<PortId>,
    ) -> Result<Delivery, DropReason> {
        let Some(port) = self.macs.lookup(now, info.network, dst) else {
            return self.flood(ingress, info, egress, Delivery::UnknownUnicast);
        };
        if port == ingress {
            return Err(DropReason::Hairpin);
        }
        if info.kind == PortKind::Remote
            && self
                .ports
                .get(&port)
                .is_some_and(|p| p.kind == PortKind::Remote)
        {
            return Err(DropReason::RemoteToRemote);
        }
        egress.push(port);
        Ok(Delivery::Unicast)
    }

    /// Every port of the ingress's network but the ingress itself; local ports only when the
    /// ingress is remote. Reports `kind` when anything was sent.
    #[inline]
    pub(crate) fn flood(
        &self,
        ingress: PortId,
        info: PortInfo,
        egress: &mut Vec<PortId>,
        kind: Delivery,
    ) -> Result<Delivery, DropReason> {
        if let Some(set) = self.networks.get(&info.network) {
            egress.extend(
                set.targets(info.kind)
                    .iter()
                    .copied()
                    .filter(|&p| p != ingress),
            );
        }
        if egress.is_empty() {
            Err(DropReason::NoEgress)
        } else {
            Ok(kind)
        }
    }

    /// The next event, if any: MAC moves and neighbour conflicts, oldest first.
    pub fn poll_event(&mut self) -> Option<SwitchEvent> {
        self.events.pop()
    }

    /// When [`Switch::handle_timeout`] should next be called, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.macs.poll_timeout(),
            self.neighbours.poll_timeout(),
            self.groups.poll_timeout(),
            self.next_query,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Runs what is due at `now`: table sweeps and, as querier, the next query round (its
    /// frames then come out of [`Switch::poll_transmit`]).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.macs.handle_timeout(now);
        self.neighbours.handle_timeout(now);
        self.groups.handle_timeout(now);
        self.start_query_round_if_due(now);
    }

    /// A snapshot of every counter.
    pub fn counters(&self) -> SwitchCounters {
        SwitchCounters {
            events_lost: self.events.lost(),
            macs: self.macs.counters(),
            neighbours: self.neighbours.counters(),
            groups: self.groups.counters(),
            ..self.counters
        }
    }

    /// Where `mac` lives in `network` now, if known.
    pub fn lookup_mac(&self, now: Instant, network: NetworkId, mac: Mac) -> Option<PortId> {
        self.macs.lookup(now, network, mac)
    }

    /// Every port, in port order.
    pub fn ports(&self) -> impl Iterator<Item = PortView> + '_ {
        let mut ports: Vec<PortView> = self
            .ports
            .iter()
            .map(|(&port, &info)| PortView { port, info })
            .collect();
        ports.sort_by_key(|p| p.port);
        ports.into_iter()
    }

    /// The ports of `network`, if it has any.
    pub fn flood_set(&self, network: NetworkId) -> Option<&FloodSet> {
        self.networks.get(&network)
    }

    /// Every live MAC entry (status view), in no particular order.
    pub fn mac_entries(&self, now: Instant) -> impl Iterator<Item = MacEntry> + '_ {
        self.macs.entries(now)
    }

    /// Every live IP → MAC binding (status view), in no particular order.
    pub fn neighbours(&self, now: Instant) -> impl Iterator<Item = NeighbourEntry> + '_ {
        self.neighbours.entries(now)
    }

    /// Every multicast group with live members (status view), in no particular order.
    pub fn groups(&self, now: Instant) -> impl Iterator<Item = GroupEntry> + '_ {
        self.groups.groups(now)
    }
}
