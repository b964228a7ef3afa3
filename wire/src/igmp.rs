//! IGMP v1/v2/v3 (RFC 1112, 2236, 3376): what a snooping switch reads, and the general
//! query it sends as querier so that hosts keep reporting their memberships.

use std::net::Ipv4Addr;

use crate::checksum;
use crate::ethernet::{self, EtherType};
use crate::ipv4::protocol;
use crate::{Mac, WireError, array, be16};

/// All-systems group: general queries go here.
pub const ALL_SYSTEMS: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 1);
/// IGMPv3 reports go here.
pub const ALL_V3_ROUTERS: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 22);

/// What an IGMP message says about membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IgmpMessage {
    /// A membership query (general when `group` is 0.0.0.0).
    Query {
        /// The group asked about.
        group: Ipv4Addr,
    },
    /// A v1 or v2 report: the sender is a member of `group`.
    Report {
        /// The group joined.
        group: Ipv4Addr,
    },
    /// A v2 leave: the sender left `group`.
    Leave {
        /// The group left.
        group: Ipv4Addr,
    },
    /// A v3 report: walk its records with [`v3_records`].
    ReportV3 {
        /// Number of group records the report claims.
        records: u16,
    },
    /// Any other type (DVMRP, mtrace, ...): flooded, not snooped.
    Other(u8),
}

impl IgmpMessage {
    /// Parses the IGMP bytes (the IPv4 payload); checks length and checksum.
    pub fn parse(buf: &[u8]) -> Result<Self, WireError> {
        if buf.len() < 8 {
            return Err(WireError::Truncated);
        }
        if !checksum::verifies(buf) {
            return Err(WireError::Malformed);
        }
        let group = Ipv4Addr::from(array::<4>(buf, 4));
        Ok(match buf[0] {
            0x11 => Self::Query { group },
            0x12 | 0x16 => Self::Report { group },
            0x17 => Self::Leave { group },
            0x22 => Self::ReportV3 {
                records: be16(buf, 6),
            },
            other => Self::Other(other),
        })
    }
}

/// One group record of a v3 report, reduced to what snooping needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupRecord {
    /// The multicast group.
    pub group: Ipv4Addr,
    /// Whether the sender wants traffic for the group after this record.
    ///
    /// EXCLUDE modes (any sources) and INCLUDE/ALLOW with sources mean "member";
    /// INCLUDE/TO_IN with no sources, and BLOCK that leaves nothing, mean "not a member".
    pub member: bool,
}

/// Iterates the group records of a v3 report (`buf` = the IGMP bytes).
///
/// Yields `Err(Truncated)` once and stops if a record runs past the end.
pub fn v3_records(buf: &[u8]) -> impl Iterator<Item = Result<GroupRecord, WireError>> + '_ {
    let count = usize::from(be16(buf, 6));
    let mut at = 8usize;
    let mut left = if buf.len() >= 8 { count } else { 0 };
    std::iter::from_fn(move || {
        if left == 0 {
            return None;
        }
        left -= 1;
        let Some(head) = buf.get(at..at + 8) else {
            left = 0;
            return Some(Err(WireError::Truncated));
        };
        let record_type = head[0];
        let aux_words = usize::from(head[1]);
        let sources = usize::from(u16::from_be_bytes([head[2], head[3]]));
        let group = Ipv4Addr::new(head[4], head[5], head[6], head[7]);
        let len = 8 + sources * 4 + aux_words * 4;
        if buf.len() < at + len {
            left = 0;
            return Some(Err(WireError::Truncated));
        }
        at += len;
        let member = match record_type {
            // MODE_IS_INCLUDE, CHANGE_TO_INCLUDE_MODE: member only if some sources are wanted.
            1 | 3 => sources > 0,
            // MODE_IS_EXCLUDE, CHANGE_TO_EXCLUDE_MODE: member (all but the listed sources).
            2 | 4 => true,
            // ALLOW_NEW_SOURCES: member of those sources.
            5 => sources > 0,
            // BLOCK_OLD_SOURCES: cannot tell without per-source state; keep membership.
            6 => true,
            _ => true,
        };
        Some(Ok(GroupRecord { group, member }))
    })
}

/// Length of the general query frame [`write_general_query`] builds.
pub const GENERAL_QUERY_FRAME_LEN: usize = ethernet::HEADER_LEN + 24 + 12;

/// Writes a whole Ethernet frame with an IGMPv3 general query from `src_mac`.
///
/// Sent from 0.0.0.0 with TTL 1 and the Router Alert option, as a snooping switch's
/// querier does, so hosts answer with reports that refresh the switch's group table.
/// `max_resp_decisecs` is the Max Resp Code (values below 128 are literal).
pub fn write_general_query(
    buf: &mut [u8],
    src_mac: Mac,
    max_resp_decisecs: u8,
) -> Result<usize, WireError> {
    let frame = buf
        .get_mut(..GENERAL_QUERY_FRAME_LEN)
        .ok_or(WireError::BufferTooSmall)?;
    ethernet::write_header(
        frame,
        Mac::from_ipv4_multicast(ALL_SYSTEMS),
        src_mac,
        EtherType::IPV4,
    )?;
    let ip = &mut frame[ethernet::HEADER_LEN..];
    let total: u16 = 24 + 12;
    ip[0] = 0x46; // version 4, 24-byte header (Router Alert option)
    ip[1] = 0xc0; // internetwork control
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[4..8].copy_from_slice(&[0, 0, 0x40, 0]);
    ip[8] = 1;
    ip[9] = protocol::IGMP;
    ip[10..12].copy_from_slice(&[0, 0]);
    ip[12..16].copy_from_slice(&Ipv4Addr::UNSPECIFIED.octets());
    ip[16..20].copy_from_slice(&ALL_SYSTEMS.octets());
    ip[20..24].copy_from_slice(&[0x94, 0x04, 0, 0]);
    let c = checksum::checksum(&ip[..24]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let igmp = &mut ip[24..36];
    igmp[0] = 0x11;
    igmp[1] = max_resp_decisecs.min(127);
    igmp[2..4].copy_from_slice(&[0, 0]);
    igmp[4..8].copy_from_slice(&Ipv4Addr::UNSPECIFIED.octets());
    igmp[8] = 2; // S = 0, QRV = 2
    igmp[9] = 125; // QQIC: 125 s
    igmp[10..12].copy_from_slice(&[0, 0]);
    let c = checksum::checksum(igmp);
    igmp[2..4].copy_from_slice(&c.to_be_bytes());
    Ok(GENERAL_QUERY_FRAME_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EthernetFrame;
    use crate::ipv4::Ipv4Packet;

    fn with_checksum(mut b: Vec<u8>) -> Vec<u8> {
        b[2] = 0;
        b[3] = 0;
        let c = checksum::checksum(&b);
        b[2..4].copy_from_slice(&c.to_be_bytes());
        b
    }

    #[test]
    fn v2_messages() {
        let report = with_checksum(vec![0x16, 0, 0, 0, 239, 1, 2, 3]);
        assert_eq!(
            IgmpMessage::parse(&report),
            Ok(IgmpMessage::Report {
                group: Ipv4Addr::new(239, 1, 2, 3)
            })
        );
        let leave = with_checksum(vec![0x17, 0, 0, 0, 239, 1, 2, 3]);
        assert_eq!(
            IgmpMessage::parse(&leave),
            Ok(IgmpMessage::Leave {
                group: Ipv4Addr::new(239, 1, 2, 3)
            })
        );
        let mut bad = report.clone();
        bad[7] ^= 1;
        assert_eq!(IgmpMessage::parse(&bad), Err(WireError::Malformed));
        assert_eq!(IgmpMessage::parse(&report[..7]), Err(WireError::Truncated));
    }

    #[test]
    fn v3_report_records() {
        // Two records: EXCLUDE {} for 239.1.1.1 (join), TO_INCLUDE {} for 239.2.2.2 (leave),
        // then a third claimed record that is missing.
        let mut b = vec![0x22, 0, 0, 0, 0, 0, 0, 3];
        b.extend_from_slice(&[4, 0, 0, 0, 239, 1, 1, 1]);
        b.extend_from_slice(&[3, 0, 0, 0, 239, 2, 2, 2]);
        let b = with_checksum(b);
        assert_eq!(
            IgmpMessage::parse(&b),
            Ok(IgmpMessage::ReportV3 { records: 3 })
        );
        let recs: Vec<_> = v3_records(&b).collect();
        assert_eq!(recs.len(), 3);
        assert_eq!(
            recs[0],
            Ok(GroupRecord {
                group: Ipv4Addr::new(239, 1, 1, 1),
                member: true
            })
        );
        assert_eq!(
            recs[1],
            Ok(GroupRecord {
                group: Ipv4Addr::new(239, 2, 2, 2),
                member: false
            })
        );
        assert_eq!(recs[2], Err(WireError::Truncated));
    }

    #[test]
    fn general_query_is_well_formed() {
        let mut buf = [0u8; 64];
        let n = write_general_query(&mut buf, Mac([2, 0, 0, 0, 0, 9]), 100).unwrap();
        let eth = EthernetFrame::new(&buf[..n]).unwrap();
        assert_eq!(eth.dst().to_string(), "01:00:5e:00:00:01");
        let ip = Ipv4Packet::new(eth.payload()).unwrap();
        assert!(ip.checksum_ok());
        assert_eq!(
            (ip.ttl(), ip.protocol(), ip.dst()),
            (1, protocol::IGMP, ALL_SYSTEMS)
        );
        assert_eq!(
            IgmpMessage::parse(ip.payload()),
            Ok(IgmpMessage::Query {
                group: Ipv4Addr::UNSPECIFIED
            })
        );
        assert_eq!(ip.payload().len(), 12);
    }
}
