//! The byte layout of IPAM messages: hand-written, length-checked, bounded (no serde on
//! the wire).
//!
//! Contract:
//! - [`Message::decode`] never panics and never allocates more than the input can hold:
//!   every count is checked against the bytes remaining (times the smallest encoding of
//!   one element) before anything is allocated. Trailing bytes are an error; so are
//!   non-canonical address sets, non-network subnets, unknown flag bits and nesting of
//!   retired records.
//! - `decode(encode(m)) == m` for every message whose lists fit the bounds of
//!   [`crate::limits`] (the node only ever holds such records).
//! - A message is at most [`limits::MAX_MESSAGE_LEN`] bytes; longer input is refused.
//!
//! Integers are big-endian. A peer name is 6 bytes, an address 4, a subnet 4 + a prefix
//! byte. A record starts with fixed fields and a bitmap saying which of its lists are
//! present; each present list is a u16 count and its entries. Address sets are a u32 run
//! count and `(start, end)` pairs.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use mesh::PeerName;

use crate::addr_set::{AddrRange, AddrSet, AddrSetError};
use crate::limits;
use crate::message::{DigestEntry, Message};
use crate::record::{
    Ack, Ballot, Claim, Gift, Grant, Inherited, NoSpace, PaxosState, PeerRecord, Reserved, RingId,
    RingTag, SpaceRequest, Tombstone, Vote,
};

mod tag {
    pub(super) const HELLO: u8 = 1;
    pub(super) const DIGEST: u8 = 2;
    pub(super) const RECORDS: u8 = 3;
    pub(super) const SYNC_DONE: u8 = 4;
}

const NAME: usize = 6;
const NET: usize = 5;
const DIGEST_ENTRY: usize = NAME + 4 + 8;
const RECORD_MIN: usize = NAME + 4 + 8 + NET + 1 + 1 + 2 + 4 + 4 + 4;

/// Why bytes are not a valid IPAM message. All but [`DecodeError::UnknownTag`] mean the
/// neighbour is broken or hostile: drop the message (counted) and the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// No bytes.
    #[error("empty IPAM message")]
    Empty,
    /// A message type this build does not know (a newer peer): ignore it.
    #[error("unknown IPAM message tag {0} (sent by a newer weft?); ignored")]
    UnknownTag(u8),
    /// Over [`limits::MAX_MESSAGE_LEN`].
    #[error("IPAM message of {len} bytes exceeds the {max}-byte limit", max = limits::MAX_MESSAGE_LEN)]
    TooLong {
        /// Its length.
        len: usize,
    },
    /// The input ended inside a field.
    #[error("malformed IPAM message: it ends inside {field}")]
    Truncated {
        /// The field being read.
        field: &'static str,
    },
    /// Bytes left after a complete message.
    #[error("malformed IPAM {kind} message: {count} unexpected trailing bytes")]
    TrailingBytes {
        /// Message kind.
        kind: &'static str,
        /// Left-over bytes.
        count: usize,
    },
    /// A count that the remaining bytes cannot hold, or above its bound.
    #[error("malformed IPAM message: {field} claims {count} entries ({remaining} bytes remain)")]
    CountTooLarge {
        /// The counted field.
        field: &'static str,
        /// The claimed count.
        count: u64,
        /// Bytes left.
        remaining: usize,
    },
    /// A flags byte with unknown bits, or a boolean not 0/1.
    #[error("malformed IPAM message: {field} has invalid value {value:#x}")]
    BadFlags {
        /// The field.
        field: &'static str,
        /// The value seen.
        value: u32,
    },
    /// A prefix length over 32, or a subnet with host bits.
    #[error("malformed IPAM message: {field} is not a valid IPv4 network")]
    BadNet {
        /// The field.
        field: &'static str,
    },
    /// An address set that is not canonical.
    #[error("malformed IPAM message: {field}: {source}")]
    BadSet {
        /// The field.
        field: &'static str,
        /// What is wrong.
        source: AddrSetError,
    },
    /// A retired record inside a retired record.
    #[error("malformed IPAM message: retired records nest")]
    Nested,
}

impl DecodeError {
    /// Whether the connection should be dropped (everything but an unknown tag).
    pub fn is_fatal(&self) -> bool {
        !matches!(self, Self::UnknownTag(_))
    }
}

impl Message {
    /// Appends the encoding of `self` to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::Hello { range, ring } => {
                out.push(tag::HELLO);
                put_net(out, *range);
                put_opt_ring(out, ring.as_ref());
            }
            Self::Digest(entries) => {
                out.push(tag::DIGEST);
                let n = entries.len().min(u32::MAX as usize);
                put_u32(out, n as u32);
                for e in entries.iter().take(n) {
                    put_name(out, e.peer);
                    put_u32(out, e.epoch);
                    put_u64(out, e.version);
                }
            }
            Self::Records(records) => {
                out.push(tag::RECORDS);
                let n = records.len().min(u32::MAX as usize);
                put_u32(out, n as u32);
                for r in records.iter().take(n) {
                    put_record(out, r, true);
                }
            }
            Self::SyncDone => out.push(tag::SYNC_DONE),
        }
    }

    /// The encoding as a new buffer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }

    /// Decodes one whole message (see the module contract).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > limits::MAX_MESSAGE_LEN {
            return Err(DecodeError::TooLong { len: bytes.len() });
        }
        let (&t, rest) = bytes.split_first().ok_or(DecodeError::Empty)?;
        let mut r = Reader { buf: rest };
        let (msg, kind) = match t {
            tag::HELLO => {
                let range = r.net("hello range")?;
                let ring = r.opt_ring("hello ring")?;
                (Self::Hello { range, ring }, "Hello")
            }
            tag::DIGEST => {
                let n = r.count32("digest entries", DIGEST_ENTRY, usize::MAX)?;
                let mut entries = Vec::with_capacity(n);
                for _ in 0..n {
                    entries.push(DigestEntry {
                        peer: r.name("digest peer")?,
                        epoch: r.u32("digest epoch")?,
                        version: r.u64("digest version")?,
                    });
                }
                (Self::Digest(entries), "Digest")
            }
            tag::RECORDS => {
                let n = r.count32("records", RECORD_MIN, usize::MAX)?;
                let mut records = Vec::with_capacity(n);
                for _ in 0..n {
                    records.push(r.record(true)?);
                }
                (Self::Records(records), "Records")
            }
            tag::SYNC_DONE => (Self::SyncDone, "SyncDone"),
            other => return Err(DecodeError::UnknownTag(other)),
        };
        if !r.buf.is_empty() {
            return Err(DecodeError::TrailingBytes {
                kind,
                count: r.buf.len(),
            });
        }
        Ok(msg)
    }
}

/// Appends a `Records` message made of borrowed records (the node's push path: no clones).
pub fn encode_records(records: &[&PeerRecord], out: &mut Vec<u8>) {
    out.push(tag::RECORDS);
    let n = records.len().min(u32::MAX as usize);
    put_u32(out, n as u32);
    for r in records.iter().take(n) {
        put_record(out, r, true);
    }
}

/// Encoded size of one record (for batching and state-size figures).
pub fn record_len(record: &PeerRecord) -> usize {
    let mut out = Vec::new();
    put_record(&mut out, record, true);
    out.len()
}

fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_name(out: &mut Vec<u8>, n: PeerName) {
    out.extend_from_slice(&n.0);
}

fn put_addr(out: &mut Vec<u8>, a: Ipv4Addr) {
    out.extend_from_slice(&a.octets());
}

fn put_net(out: &mut Vec<u8>, n: Ipv4Net) {
    put_addr(out, n.addr());
    out.push(n.prefix_len());
}

fn put_set(out: &mut Vec<u8>, s: &AddrSet) {
    let n = s.run_count().min(u32::MAX as usize);
    put_u32(out, n as u32);
    for r in s.ranges().iter().take(n) {
        put_u32(out, r.start);
        put_u32(out, r.end);
    }
}

fn put_ring(out: &mut Vec<u8>, ring: &RingId) {
    let n = ring.members.len().min(usize::from(u16::MAX));
    put_u16(out, n as u16);
    for m in ring.members.iter().take(n) {
        put_name(out, *m);
    }
    put_u64(out, ring.nonce);
}

fn put_opt_ring(out: &mut Vec<u8>, ring: Option<&RingId>) {
    match ring {
        None => out.push(0),
        Some(r) => {
            out.push(1);
            put_ring(out, r);
        }
    }
}

fn put_ballot(out: &mut Vec<u8>, b: Ballot) {
    put_u64(out, b.round);
    put_name(out, b.proposer);
}

fn put_vote(out: &mut Vec<u8>, v: &Vote) {
    put_ballot(out, v.ballot);
    put_ring(out, &v.value);
}

/// Writes a u16 count and each of (at most u16::MAX of) `items`.
fn put_list<T>(out: &mut Vec<u8>, items: &[T], mut each: impl FnMut(&mut Vec<u8>, &T)) {
    let n = items.len().min(usize::from(u16::MAX));
    put_u16(out, n as u16);
    for item in items.iter().take(n) {
        each(out, item);
    }
}

mod list {
    pub(super) const RESERVED: u32 = 1 << 0;
    pub(super) const GIVING: u32 = 1 << 1;
    pub(super) const ADOPTED: u32 = 1 << 2;
    pub(super) const SPACE_REQUESTS: u32 = 1 << 3;
    pub(super) const NO_SPACE: u32 = 1 << 4;
    pub(super) const CLAIMS: u32 = 1 << 5;
    pub(super) const GRANTS: u32 = 1 << 6;
    pub(super) const TOMBSTONES: u32 = 1 << 7;
    pub(super) const ACKS: u32 = 1 << 8;
    pub(super) const INHERITED: u32 = 1 << 9;
    pub(super) const RELEASE_RESERVED: u32 = 1 << 10;
    pub(super) const PAXOS: u32 = 1 << 11;
    pub(super) const RETIRED: u32 = 1 << 12;
    pub(super) const ALL: u32 = (1 << 13) - 1;
}

const FLAG_OBSERVER: u8 = 1;
const FLAG_WANTS_RING: u8 = 2;

fn put_record(out: &mut Vec<u8>, r: &PeerRecord, top: bool) {
    put_name(out, r.peer);
    put_u32(out, r.epoch);
    put_u64(out, r.version);
    put_net(out, r.range);
    match r.ring {
        None => out.push(0),
        Some(tag) => {
            out.push(1);
            put_u64(out, tag.0);
        }
    }
    out.push(
        if r.observer { FLAG_OBSERVER } else { 0 } | if r.wants_ring { FLAG_WANTS_RING } else { 0 },
    );
    put_u16(out, r.electors);
    let retired: &[PeerRecord] = if top { &r.retired } else { &[] };
    let present = [
        (list::RESERVED, !r.reserved.is_empty()),
        (list::GIVING, !r.giving.is_empty()),
        (list::ADOPTED, !r.adopted.is_empty()),
        (list::SPACE_REQUESTS, !r.space_requests.is_empty()),
        (list::NO_SPACE, !r.no_space.is_empty()),
        (list::CLAIMS, !r.claims.is_empty()),
        (list::GRANTS, !r.grants.is_empty()),
        (list::TOMBSTONES, !r.tombstones.is_empty()),
        (list::ACKS, !r.acks.is_empty()),
        (list::INHERITED, !r.inherited.is_empty()),
        (list::RELEASE_RESERVED, !r.release_reserved.is_empty()),
        (list::PAXOS, !r.paxos.is_empty()),
        (list::RETIRED, !retired.is_empty()),
    ]
    .iter()
    .filter(|(_, p)| *p)
    .fold(0, |acc, (bit, _)| acc | bit);
    put_u32(out, present);
    put_set(out, &r.owned);
    put_set(out, &r.used);
    if present & list::RESERVED != 0 {
        put_list(out, &r.reserved, |out, x| {
            put_name(out, x.peer);
            put_u32(out, x.epoch);
            put_set(out, &x.addrs);
        });
    }
    if present & list::GIVING != 0 {
        put_list(out, &r.giving, |out, g| {
            put_u32(out, g.block.start);
            put_u32(out, g.block.end);
            put_name(out, g.to);
            put_u32(out, g.to_epoch);
            put_u64(out, g.seq);
        });
    }
    if present & list::ADOPTED != 0 {
        put_list(out, &r.adopted, |out, &(p, s)| {
            put_name(out, p);
            put_u64(out, s);
        });
    }
    if present & list::SPACE_REQUESTS != 0 {
        put_list(out, &r.space_requests, |out, s| {
            put_name(out, s.donor);
            put_net(out, s.subnet);
            put_u64(out, s.seq);
        });
    }
    if present & list::NO_SPACE != 0 {
        put_list(out, &r.no_space, |out, n| {
            put_name(out, n.requester);
            put_u64(out, n.seq);
        });
    }
    if present & list::CLAIMS != 0 {
        put_list(out, &r.claims, |out, c| {
            put_addr(out, c.addr);
            put_u64(out, c.seq);
        });
    }
    if present & list::GRANTS != 0 {
        put_list(out, &r.grants, |out, g| {
            put_name(out, g.claimer);
            put_u32(out, g.claimer_epoch);
            put_addr(out, g.addr);
            put_u64(out, g.seq);
            out.push(u8::from(g.granted));
        });
    }
    if present & list::TOMBSTONES != 0 {
        put_list(out, &r.tombstones, put_tombstone);
    }
    if present & list::ACKS != 0 {
        put_list(out, &r.acks, |out, a| {
            put_name(out, a.peer);
            put_u32(out, a.epoch);
            put_name(out, a.heir);
            put_u64(out, a.seen_version);
        });
    }
    if present & list::INHERITED != 0 {
        put_list(out, &r.inherited, |out, i| {
            put_name(out, i.peer);
            put_u32(out, i.epoch);
            put_u64(out, i.version);
            put_list(out, &i.gifts, |out, &(p, s)| {
                put_name(out, p);
                put_u64(out, s);
            });
        });
    }
    if present & list::RELEASE_RESERVED != 0 {
        put_list(out, &r.release_reserved, put_tombstone);
    }
    if present & list::PAXOS != 0 {
        let p = &r.paxos;
        let bits = u8::from(p.promised.is_some())
            | u8::from(p.accepted.is_some()) << 1
            | u8::from(p.prepare.is_some()) << 2
            | u8::from(p.proposal.is_some()) << 3;
        out.push(bits);
        if let Some(b) = p.promised {
            put_ballot(out, b);
        }
        if let Some(v) = &p.accepted {
            put_vote(out, v);
        }
        if let Some(b) = p.prepare {
            put_ballot(out, b);
        }
        if let Some(v) = &p.proposal {
            put_vote(out, v);
        }
    }
    if present & list::RETIRED != 0 {
        put_list(out, retired, |out, x| put_record(out, x, false));
    }
}

fn put_tombstone(out: &mut Vec<u8>, t: &Tombstone) {
    put_name(out, t.peer);
    put_u32(out, t.epoch);
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated { field });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, field)?);
        Ok(a)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(field)?[0])
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    fn name(&mut self, field: &'static str) -> Result<PeerName, DecodeError> {
        Ok(PeerName(self.array(field)?))
    }

    fn addr(&mut self, field: &'static str) -> Result<Ipv4Addr, DecodeError> {
        Ok(Ipv4Addr::from(self.array::<4>(field)?))
    }

    fn bool(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(DecodeError::BadFlags {
                field,
                value: u32::from(v),
            }),
        }
    }

    fn net(&mut self, field: &'static str) -> Result<Ipv4Net, DecodeError> {
        let addr = self.addr(field)?;
        let prefix = self.u8(field)?;
        let net = Ipv4Net::new(addr, prefix).map_err(|_| DecodeError::BadNet { field })?;
        if net.trunc() != net {
            return Err(DecodeError::BadNet { field });
        }
        Ok(net)
    }

    fn check_count(
        &self,
        field: &'static str,
        count: usize,
        min_len: usize,
        max: usize,
    ) -> Result<usize, DecodeError> {
        let fits = count
            .checked_mul(min_len.max(1))
            .is_some_and(|need| need <= self.buf.len());
        if !fits || count > max {
            return Err(DecodeError::CountTooLarge {
                field,
                count: count as u64,
                remaining: self.buf.len(),
            });
        }
        Ok(count)
    }

    fn count16(
        &mut self,
        field: &'static str,
        min_len: usize,
        max: usize,
    ) -> Result<usize, DecodeError> {
        let n = usize::from(self.u16(field)?);
        self.check_count(field, n, min_len, max)
    }

    fn count32(
        &mut self,
        field: &'static str,
        min_len: usize,
        max: usize,
    ) -> Result<usize, DecodeError> {
        let n = usize::try_from(self.u32(field)?).unwrap_or(usize::MAX);
        self.check_count(field, n, min_len, max)
    }

    fn list<T>(
        &mut self,
        field: &'static str,
        min_len: usize,
        max: usize,
        mut each: impl FnMut(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        let n = self.count16(field, min_len, max)?;
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(each(self)?);
        }
        Ok(v)
    }

    fn set(&mut self, field: &'static str) -> Result<AddrSet, DecodeError> {
        let n = self.count32(field, 8, limits::MAX_RUNS)?;
        let mut ranges = Vec::with_capacity(n);
        for _ in 0..n {
            ranges.push(AddrRange {
                start: self.u32(field)?,
                end: self.u32(field)?,
            });
        }
        AddrSet::from_ranges(ranges).map_err(|source| DecodeError::BadSet { field, source })
    }

    fn range(&mut self, field: &'static str) -> Result<AddrRange, DecodeError> {
        let start = self.u32(field)?;
        let end = self.u32(field)?;
        AddrRange::new(start, end).ok_or_else(|| DecodeError::BadSet {
            field,
            source: AddrSetError::Reversed {
                start: start.into(),
                end: end.into(),
            },
        })
    }

    fn ring(&mut self, field: &'static str) -> Result<RingId, DecodeError> {
        let n = self.count16(field, NAME, limits::MAX_PEERS)?;
        let mut members = Vec::with_capacity(n);
        for _ in 0..n {
            members.push(self.name(field)?);
        }
        let nonce = self.u64(field)?;
        Ok(RingId { members, nonce })
    }

    fn opt_ring(&mut self, field: &'static str) -> Result<Option<RingId>, DecodeError> {
        if self.bool(field)? {
            Ok(Some(self.ring(field)?))
        } else {
            Ok(None)
        }
    }

    fn ballot(&mut self, field: &'static str) -> Result<Ballot, DecodeError> {
        Ok(Ballot {
            round: self.u64(field)?,
            proposer: self.name(field)?,
        })
    }

    fn vote(&mut self, field: &'static str) -> Result<Vote, DecodeError> {
        Ok(Vote {
            ballot: self.ballot(field)?,
            value: self.ring(field)?,
        })
    }

    fn tombstone(&mut self) -> Result<Tombstone, DecodeError> {
        Ok(Tombstone {
            peer: self.name("tombstone peer")?,
            epoch: self.u32("tombstone epoch")?,
        })
    }

    fn record(&mut self, top: bool) -> Result<PeerRecord, DecodeError> {
        let peer = self.name("record peer")?;
        let epoch = self.u32("record epoch")?;
        let version = self.u64("record version")?;
        let range = self.net("record range")?;
        let ring = if self.bool("record ring")? {
            Some(RingTag(self.u64("record ring")?))
        } else {
            None
        };
        let flags = self.u8("record flags")?;
        if flags & !(FLAG_OBSERVER | FLAG_WANTS_RING) != 0 {
            return Err(DecodeError::BadFlags {
                field: "record flags",
                value: u32::from(flags),
            });
        }
        let electors = self.u16("record electors")?;
        let present = self.u32("record lists")?;
        if present & !list::ALL != 0 {
            return Err(DecodeError::BadFlags {
                field: "record lists",
                value: present,
            });
        }
        let has = |bit: u32| present & bit != 0;
        let mut rec = PeerRecord::new(peer, range);
        rec.epoch = epoch;
        rec.version = version;
        rec.ring = ring;
        rec.observer = flags & FLAG_OBSERVER != 0;
        rec.wants_ring = flags & FLAG_WANTS_RING != 0;
        rec.electors = electors;
        rec.owned = self.set("owned")?;
        rec.used = self.set("used")?;
        if has(list::RESERVED) {
            rec.reserved = self.list("reserved", NAME + 4 + 4, limits::MAX_PEERS, |r| {
                Ok(Reserved {
                    peer: r.name("reserved peer")?,
                    epoch: r.u32("reserved epoch")?,
                    addrs: r.set("reserved addresses")?,
                })
            })?;
        }
        if has(list::GIVING) {
            rec.giving = self.list("giving", 8 + NAME + 4 + 8, limits::MAX_LIST, |r| {
                Ok(Gift {
                    block: r.range("gift block")?,
                    to: r.name("gift recipient")?,
                    to_epoch: r.u32("gift epoch")?,
                    seq: r.u64("gift seq")?,
                })
            })?;
        }
        if has(list::ADOPTED) {
            rec.adopted = self.list("adopted", NAME + 8, limits::MAX_PEERS, |r| {
                Ok((r.name("adopted giver")?, r.u64("adopted seq")?))
            })?;
        }
        if has(list::SPACE_REQUESTS) {
            rec.space_requests = self.list(
                "space requests",
                NAME + NET + 8,
                limits::MAX_SPACE_REQUESTS,
                |r| {
                    Ok(SpaceRequest {
                        donor: r.name("request donor")?,
                        subnet: r.net("request subnet")?,
                        seq: r.u64("request seq")?,
                    })
                },
            )?;
        }
        if has(list::NO_SPACE) {
            rec.no_space = self.list("no space", NAME + 8, limits::MAX_PEERS, |r| {
                Ok(NoSpace {
                    requester: r.name("no-space requester")?,
                    seq: r.u64("no-space seq")?,
                })
            })?;
        }
        if has(list::CLAIMS) {
            rec.claims = self.list("claims", 4 + 8, limits::MAX_LIST, |r| {
                Ok(Claim {
                    addr: r.addr("claim address")?,
                    seq: r.u64("claim seq")?,
                })
            })?;
        }
        if has(list::GRANTS) {
            rec.grants = self.list("grants", NAME + 4 + 4 + 8 + 1, limits::MAX_LIST, |r| {
                Ok(Grant {
                    claimer: r.name("grant claimer")?,
                    claimer_epoch: r.u32("grant epoch")?,
                    addr: r.addr("grant address")?,
                    seq: r.u64("grant seq")?,
                    granted: r.bool("grant granted")?,
                })
            })?;
        }
        if has(list::TOMBSTONES) {
            rec.tombstones =
                self.list("tombstones", NAME + 4, limits::MAX_PEERS, Self::tombstone)?;
        }
        if has(list::ACKS) {
            rec.acks = self.list("acks", NAME + 4 + NAME + 8, limits::MAX_PEERS, |r| {
                Ok(Ack {
                    peer: r.name("ack peer")?,
                    epoch: r.u32("ack epoch")?,
                    heir: r.name("ack heir")?,
                    seen_version: r.u64("ack version")?,
                })
            })?;
        }
        if has(list::INHERITED) {
            rec.inherited = self.list("inherited", NAME + 4 + 8 + 2, limits::MAX_PEERS, |r| {
                Ok(Inherited {
                    peer: r.name("inherited peer")?,
                    epoch: r.u32("inherited epoch")?,
                    version: r.u64("inherited version")?,
                    gifts: r.list("inherited gifts", NAME + 8, limits::MAX_PEERS, |r| {
                        Ok((r.name("inherited giver")?, r.u64("inherited seq")?))
                    })?,
                })
            })?;
        }
        if has(list::RELEASE_RESERVED) {
            rec.release_reserved = self.list(
                "release reserved",
                NAME + 4,
                limits::MAX_PEERS,
                Self::tombstone,
            )?;
        }
        if has(list::PAXOS) {
            let bits = self.u8("paxos fields")?;
            if bits & !0x0f != 0 {
                return Err(DecodeError::BadFlags {
                    field: "paxos fields",
                    value: u32::from(bits),
                });
            }
            let mut p = PaxosState::default();
            if bits & 1 != 0 {
                p.promised = Some(self.ballot("paxos promised")?);
            }
            if bits & 2 != 0 {
                p.accepted = Some(self.vote("paxos accepted")?);
            }
            if bits & 4 != 0 {
                p.prepare = Some(self.ballot("paxos prepare")?);
            }
            if bits & 8 != 0 {
                p.proposal = Some(self.vote("paxos proposal")?);
            }
            rec.paxos = p;
        }
        if has(list::RETIRED) {
            if !top {
                return Err(DecodeError::Nested);
            }
            rec.retired = self.list("retired", RECORD_MIN, limits::MAX_RETIRED, |r| {
                r.record(false)
            })?;
        }
        Ok(rec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(i: u8) -> PeerName {
        PeerName([2, 0, 0, 0, 0, i])
    }

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    /// A record with every list present.
    pub(crate) fn full_record() -> PeerRecord {
        let range = net("10.32.0.0/12");
        let ring = RingId::new(vec![name(1), name(2), name(3)], 77);
        let mut r = PeerRecord::new(name(1), range);
        r.epoch = 2;
        r.version = 99;
        r.ring = Some(ring.tag());
        r.observer = true;
        r.wants_ring = true;
        r.electors = 3;
        r.owned = AddrSet::from_net(net("10.32.0.0/24"));
        r.used = AddrSet::from_unsorted(vec![
            AddrRange::single(0x0a20_0001),
            AddrRange::single(0x0a20_0005),
        ]);
        r.reserved = vec![Reserved {
            peer: name(4),
            epoch: 0,
            addrs: AddrSet::from_range(AddrRange::single(0x0a20_0005)),
        }];
        r.giving = vec![Gift {
            block: AddrRange::new(0x0a20_0100, 0x0a20_01ff).unwrap(),
            to: name(2),
            to_epoch: 0,
            seq: 4,
        }];
        r.adopted = vec![(name(3), 8)];
        r.space_requests = vec![SpaceRequest {
            donor: name(2),
            subnet: net("10.32.1.0/24"),
            seq: 3,
        }];
        r.no_space = vec![NoSpace {
            requester: name(3),
            seq: 1,
        }];
        r.claims = vec![Claim {
            addr: Ipv4Addr::new(10, 40, 0, 9),
            seq: 5,
        }];
        r.grants = vec![Grant {
            claimer: name(3),
            claimer_epoch: 1,
            addr: Ipv4Addr::new(10, 32, 0, 1),
            seq: 2,
            granted: true,
        }];
        r.tombstones = vec![Tombstone {
            peer: name(4),
            epoch: 0,
        }];
        r.acks = vec![Ack {
            peer: name(4),
            epoch: 0,
            heir: name(1),
            seen_version: 17,
        }];
        r.inherited = vec![Inherited {
            peer: name(5),
            epoch: 1,
            version: 3,
            gifts: vec![(name(2), 6)],
        }];
        r.release_reserved = vec![Tombstone {
            peer: name(5),
            epoch: 1,
        }];
        let b = Ballot {
            round: 3,
            proposer: name(2),
        };
        r.paxos = PaxosState {
            promised: Some(b),
            accepted: Some(Vote {
                ballot: b,
                value: ring.clone(),
            }),
            prepare: Some(b),
            proposal: Some(Vote {
                ballot: b,
                value: ring,
            }),
        };
        let mut old = PeerRecord::new(name(1), range);
        old.epoch = 1;
        old.version = 40;
        old.owned = AddrSet::from_net(net("10.33.0.0/16"));
        r.retired = vec![old];
        r
    }

    fn all_messages() -> Vec<Message> {
        let full = full_record();
        vec![
            Message::Hello {
                range: net("10.32.0.0/12"),
                ring: None,
            },
            Message::Hello {
                range: net("0.0.0.0/0"),
                ring: full.paxos.proposal.as_ref().map(|v| v.value.clone()),
            },
            Message::Digest(vec![]),
            Message::Digest(vec![DigestEntry {
                peer: name(9),
                epoch: 1,
                version: u64::MAX,
            }]),
            Message::Records(vec![]),
            Message::Records(vec![PeerRecord::new(name(3), net("10.32.0.0/12"))]),
            Message::Records(vec![PeerRecord::new(name(2), net("10.32.0.0/12")), full]),
            Message::SyncDone,
        ]
    }

    /// Writes one file per message to `$IPAM_FUZZ_SEEDS` (a seed corpus for
    /// `fuzz/fuzz_targets/ipam_message.rs`): `IPAM_FUZZ_SEEDS=fuzz/corpus/ipam_message
    /// cargo test -p ipam --lib dump_fuzz_seeds -- --ignored`.
    #[test]
    #[ignore = "writes files; run by hand to seed the fuzzer"]
    fn dump_fuzz_seeds() {
        let Ok(dir) = std::env::var("IPAM_FUZZ_SEEDS") else {
            return;
        };
        std::fs::create_dir_all(&dir).unwrap();
        for (i, m) in all_messages().iter().enumerate() {
            std::fs::write(format!("{dir}/seed-{i}"), m.to_bytes()).unwrap();
        }
    }

    #[test]
    fn every_message_round_trips() {
        for m in all_messages() {
            let bytes = m.to_bytes();
            assert_eq!(Message::decode(&bytes), Ok(m.clone()), "{}", m.kind());
        }
    }

    #[test]
    fn every_truncation_and_extension_is_refused() {
        for m in all_messages() {
            let bytes = m.to_bytes();
            for cut in 0..bytes.len() {
                let e = Message::decode(&bytes[..cut]).unwrap_err();
                assert!(e.is_fatal(), "{}: cut at {cut}: {e}", m.kind());
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(matches!(
                Message::decode(&longer),
                Err(DecodeError::TrailingBytes { .. })
            ));
        }
    }

    #[test]
    fn garbage_is_a_clear_error() {
        assert_eq!(Message::decode(&[]), Err(DecodeError::Empty));
        assert_eq!(Message::decode(&[200]), Err(DecodeError::UnknownTag(200)));
        assert!(!DecodeError::UnknownTag(200).is_fatal());
        // A digest claiming four billion entries allocates nothing.
        let e = Message::decode(&[tag::DIGEST, 0xff, 0xff, 0xff, 0xff]).unwrap_err();
        assert!(matches!(e, DecodeError::CountTooLarge { .. }));
        // A range with host bits.
        let e = Message::decode(&[tag::HELLO, 10, 32, 0, 1, 12, 0]).unwrap_err();
        assert_eq!(
            e,
            DecodeError::BadNet {
                field: "hello range"
            }
        );
        let e = Message::decode(&[tag::HELLO, 10, 32, 0, 0, 33, 0]).unwrap_err();
        assert_eq!(
            e,
            DecodeError::BadNet {
                field: "hello range"
            }
        );
        let e = Message::decode(&[tag::HELLO, 10, 32, 0, 0, 12, 2]).unwrap_err();
        assert!(matches!(e, DecodeError::BadFlags { .. }));
        let too_long = vec![tag::SYNC_DONE; limits::MAX_MESSAGE_LEN + 1];
        assert!(matches!(
            Message::decode(&too_long),
            Err(DecodeError::TooLong { .. })
        ));
    }

    #[test]
    fn non_canonical_sets_and_nesting_are_refused() {
        let mut r = PeerRecord::new(name(1), net("10.32.0.0/12"));
        r.owned = AddrSet::from_unsorted(vec![
            AddrRange::new(0x0a20_0000, 0x0a20_0001).unwrap(),
            AddrRange::new(0x0a20_0005, 0x0a20_0006).unwrap(),
        ]);
        let mut bytes = Message::Records(vec![r.clone()]).to_bytes();
        // Make the second run start inside the first: find and patch its start.
        let pos = bytes
            .windows(4)
            .position(|w| w == 0x0a20_0005u32.to_be_bytes())
            .unwrap();
        bytes[pos..pos + 4].copy_from_slice(&0x0a20_0001u32.to_be_bytes());
        assert!(matches!(
            Message::decode(&bytes),
            Err(DecodeError::BadSet { field: "owned", .. })
        ));
        // A retired record that carries its own retired list.
        let mut inner = r.clone();
        inner
            .retired
            .push(PeerRecord::new(name(1), net("10.32.0.0/12")));
        let mut out = Vec::new();
        out.push(tag::RECORDS);
        put_u32(&mut out, 1);
        // Encode `r` with a retired record encoded as top-level (so it nests).
        let mut outer = r;
        outer.retired = vec![];
        let mut rec = Vec::new();
        put_record(&mut rec, &outer, true);
        // Set the RETIRED bit and append a nested record that itself has RETIRED set.
        let lists_at = 6 + 4 + 8 + 5 + 1 + 1 + 2;
        let mut lists = u32::from_be_bytes(rec[lists_at..lists_at + 4].try_into().unwrap());
        lists |= list::RETIRED;
        rec[lists_at..lists_at + 4].copy_from_slice(&lists.to_be_bytes());
        put_u16(&mut rec, 1);
        put_record(&mut rec, &inner, true);
        out.extend_from_slice(&rec);
        assert_eq!(Message::decode(&out), Err(DecodeError::Nested));
    }
}
