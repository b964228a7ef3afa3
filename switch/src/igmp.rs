//! IGMP snooping, IPv4 group delivery and the querier.
//!
//! Rules:
//! - IGMP v1/v2/v3 messages are snooped, then flooded, so that every switch on the network
//!   (the remote ones through the peers' ports) learns where members are. A remote port's
//!   membership therefore means "that peer has members".
//! - Joins (v1/v2 reports, v3 records that want traffic) make the ingress port a member of
//!   the group. Groups in 224.0.0.0/24 are not tracked: they always flood.
//! - Leaves (v2 leave, v3 records that want nothing) end a *local* port's membership at
//!   once: a local port is one host, and hosts send a leave only when their last socket
//!   leaves. On a remote port a leave is ignored and the membership ages out, because other
//!   members may remain behind that peer; the cost is at most one membership interval of
//!   traffic the peer's switch drops.
//! - A v3 report with a truncated record is dropped whole (`MalformedIgmp`), not half-applied.
//! - Group traffic (IPv4 multicast outside 224.0.0.0/24) goes to live member ports only,
//!   never back out of the ingress, and from a remote port to local members only. None:
//!   `NoGroupMembers` drop.
//! - As querier the switch sends a general query to the local ports of every network each
//!   query interval (the first one `startup_query_delay` after start), so that hosts keep
//!   refreshing their memberships.

use std::net::Ipv4Addr;
use std::time::Instant;

use learning::PortId;
use wire::WireError;
use wire::igmp::{IgmpMessage, v3_records, write_general_query};

use crate::classify::is_link_local_group;
use crate::ports::{PortInfo, PortKind};
use crate::switch::{Delivery, Switch};
use crate::verdict::DropReason;

/// Max Resp Code of the switch's general queries: 10 s, the RFC 3376 default.
const QUERY_MAX_RESPONSE_DECISECS: u8 = 100;

/// Whether membership of `group` is worth tracking.
fn is_trackable(group: Ipv4Addr) -> bool {
    group.is_multicast() && !is_link_local_group(group)
}

impl Switch {
    /// Applies what an IGMP message says about the ingress port's memberships.
    pub(crate) fn snoop_igmp(
        &mut self,
        now: Instant,
        ingress: PortId,
        info: PortInfo,
        message: IgmpMessage,
        bytes: &[u8],
    ) -> Result<(), DropReason> {
        let local = info.kind == PortKind::Local;
        match message {
            IgmpMessage::Report { group } => {
                if is_trackable(group) {
                    self.groups.join(now, info.network, group, ingress);
                }
            }
            IgmpMessage::Leave { group } => {
                if local {
                    self.groups.leave(info.network, group, ingress);
                }
            }
            IgmpMessage::ReportV3 { .. } => {
                if v3_records(bytes).any(|r| r.is_err()) {
                    return Err(DropReason::MalformedIgmp);
                }
                for record in v3_records(bytes).flatten() {
                    if !is_trackable(record.group) {
                        continue;
                    }
                    if record.member {
                        self.groups.join(now, info.network, record.group, ingress);
                    } else if local {
                        self.groups.leave(info.network, record.group, ingress);
                    }
                }
            }
            IgmpMessage::Query { .. } | IgmpMessage::Other(_) => return Ok(()),
        }
        self.counters.igmp_snooped += 1;
        Ok(())
    }

    /// Sends group traffic to the group's live member ports.
    #[inline]
    pub(crate) fn deliver_to_group(
        &mut self,
        now: Instant,
        ingress: PortId,
        info: PortInfo,
        group: Ipv4Addr,
        egress: &mut Vec<PortId>,
    ) -> Result<Delivery, DropReason> {
        let from_remote = info.kind == PortKind::Remote;
        let set = self.networks.get(&info.network);
        egress.extend(
            self.groups
                .members(now, info.network, group)
                .filter(|&p| p != ingress)
                .filter(|&p| !from_remote || set.is_some_and(|s| s.is_local(p))),
        );
        if egress.is_empty() {
            return Err(DropReason::NoGroupMembers);
        }
        Ok(Delivery::Group)
    }

    /// Starts a round of general queries if one is due.
    pub(crate) fn start_query_round_if_due(&mut self, now: Instant) {
        let Some(due) = self.next_query else {
            return;
        };
        if now < due {
            return;
        }
        self.pending_queries.clear();
        self.pending_queries.extend(
            self.networks
                .iter()
                .rev()
                .filter(|(_, set)| !set.local().is_empty())
                .map(|(&network, _)| network),
        );
        self.next_query = now.checked_add(self.config.query_interval);
    }

    /// The next frame the switch originates: an IGMP general query as querier. Writes it
    /// into `buf`, fills `ports` (cleared first) with where it goes, and returns its length.
    /// Call until it returns `None` after each [`Switch::handle_timeout`].
    pub fn poll_transmit(
        &mut self,
        _now: Instant,
        buf: &mut [u8],
        ports: &mut Vec<PortId>,
    ) -> Option<usize> {
        ports.clear();
        while let Some(network) = self.pending_queries.pop() {
            let Some(set) = self.networks.get(&network) else {
                continue;
            };
            if set.local().is_empty() {
                continue;
            }
            match write_general_query(buf, self.config.querier_mac, QUERY_MAX_RESPONSE_DECISECS) {
                Ok(n) => {
                    ports.extend_from_slice(set.local());
                    self.counters.queries_sent += 1;
                    return Some(n);
                }
                Err(WireError::BufferTooSmall | WireError::Truncated | WireError::Malformed) => {
                    // A buffer this small cannot carry any query; skip the round.
                    self.pending_queries.clear();
                    return None;
                }
            }
        }
        None
    }
}
