//! Software GRO: merging received TCP segments back into super-frames.
//!
//! Decapsulated frames arrive a GRO batch at a time (up to 64 datagrams of one outer
//! flow). Consecutive segments of one TCP flow are merged into one super-frame, handed on
//! with the `virtio_net_hdr` the kernel's own GRO would imply: `NEEDS_CSUM`, `GSO_TCPV4/6`,
//! `gso_size` = the first segment's payload length, `csum_start`/`csum_offset`/`hdr_len`,
//! the TCP checksum field holding the pseudo-header sum for the merged length, and the
//! IPv4 total length and header checksum (or the IPv6 payload length) rewritten. One
//! `PACKET_VNET_HDR` write puts it on the container's veth, whose stack accepts it without
//! verifying the checksum again, so every segment's checksum is verified before merging.
//!
//! Merge rules (a subset of `tcp_gro_receive`/`inet_gro_receive`, erring towards not
//! merging): same tag (peer + VNI), Ethernet header, addresses and ports; IPv4 without
//! options or fragmentation, same TOS, TTL and DF, and for non-DF packets consecutive
//! identifications; IPv6 with TCP right after the fixed header, same traffic class, flow
//! label and hop limit; TCP flags exactly ACK or ACK|PSH (PSH ends a run), same ack,
//! window, urgent pointer and options (so equal timestamps), contiguous sequence numbers,
//! every segment as long as the first except a shorter last one (which ends the run); a
//! merged IP packet of at most 65535 bytes.
//!
//! Everything else is emitted as it came, with [`VnetHdr::NONE`], after first flushing the
//! run held for the same flow, so a flow's frames leave in the order they arrived. Frames
//! with a bad checksum are never merged; the receiving stack drops them as it would have.

use wire::checksum;
use wire::ipv4::{self, protocol};
use wire::ipv6;
use wire::tcp::{self, TcpSegment, flags};
use wire::vnet::{F_NEEDS_CSUM, GSO_TCPV4, GSO_TCPV6};
use wire::{VnetHdr, ethernet};

use crate::layout::{IpFamily, IpLayout};

/// Flow slots a [`Coalescer`] has by default: enough for the flows one GRO batch mixes.
pub const DEFAULT_FLOW_SLOTS: usize = 8;

/// The largest IP packet a merged super-frame may hold: IPv4's total-length limit, and
/// what the kernel's GRO stops at (`GRO_LEGACY_MAX_SIZE`).
pub const MAX_SUPER_FRAME_IP_LEN: usize = 65535;

/// Longest link-layer header a mergeable frame may have: Ethernet plus one VLAN tag.
const MAX_L2_LEN: usize = ethernet::HEADER_LEN + ethernet::VLAN_TAG_LEN;

/// Bytes of buffer per flow slot: one maximal super-frame.
const SLOT_CAPACITY: usize = MAX_L2_LEN + MAX_SUPER_FRAME_IP_LEN;

/// What a [`Coalescer`] did, for `weft status` and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CoalesceCounters {
    /// Frames pushed.
    pub frames_in: u64,
    /// TCP segments appended to a run already held (each saves one write).
    pub segments_merged: u64,
    /// Merged super-frames emitted (two or more segments each).
    pub super_frames_out: u64,
    /// Frames emitted as they came: not mergeable, or a run of one.
    pub frames_out_unmerged: u64,
    /// TCP segments whose IP or TCP checksum was wrong (emitted unmerged).
    pub bad_checksum: u64,
    /// Runs flushed early because every slot was busy with other flows.
    pub evictions: u64,
    /// Merged runs dropped because their headers could not be finished. Never expected:
    /// a non-zero value is a bug report.
    pub merge_failures: u64,
}

/// Identity of a TCP flow from one source: segments merge only within one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FlowKey {
    tag: u64,
    /// Ethernet header (with VLAN tag), zero-padded.
    l2: [u8; MAX_L2_LEN],
    /// Source then destination address (IPv4 uses the first 8 bytes).
    addrs: [u8; 32],
    /// Source and destination port.
    ports: [u8; 4],
}

impl FlowKey {
    fn new(tag: u64, frame: &[u8], layout: &IpLayout) -> Self {
        let mut key = Self {
            tag,
            l2: [0; MAX_L2_LEN],
            addrs: [0; 32],
            ports: [0; 4],
        };
        copy_prefix(&mut key.l2, frame.get(..layout.l3).unwrap_or_default());
        copy_prefix(&mut key.addrs, layout.addresses(frame));
        copy_prefix(&mut key.ports, layout.transport(frame));
        key
    }
}

/// Copies as much of `src` as fits into the start of `dst`.
fn copy_prefix(dst: &mut [u8], src: &[u8]) {
    let n = dst.len().min(src.len());
    if let (Some(d), Some(s)) = (dst.get_mut(..n), src.get(..n)) {
        d.copy_from_slice(s);
    }
}

/// A TCP segment that may join or start a run.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    key: FlowKey,
    layout: IpLayout,
    /// End of the TCP header (start of the payload).
    hdr_end: usize,
    seq: u32,
    flags: u8,
    ident: u16,
}

impl Candidate {
    fn payload_len(&self) -> usize {
        self.layout.end.saturating_sub(self.hdr_end)
    }
}

/// How a pushed frame is handled.
#[derive(Debug)]
enum Classified {
    /// Not a TCP segment with a flow identity (non-IP, UDP, fragments, garbage).
    Other,
    /// TCP that must pass unmerged; `bad_checksum` tells why, for the counter.
    Unmergeable { key: FlowKey, bad_checksum: bool },
    /// A segment that may be merged.
    Mergeable(Candidate),
}

fn classify(tag: u64, frame: &[u8], mtu: usize) -> Classified {
    let Ok(Some(layout)) = IpLayout::parse(frame) else {
        return Classified::Other;
    };
    if layout.protocol != protocol::TCP || layout.fragment {
        return Classified::Other;
    }
    let transport = layout.transport(frame);
    let Ok(tcp) = TcpSegment::new(transport) else {
        return Classified::Other;
    };
    let key = FlowKey::new(tag, frame, &layout);
    let hdr_end = layout.l4 + tcp.header_len();
    let plain_ip = match layout.family {
        IpFamily::V4 => layout.l4 - layout.l3 == ipv4::MIN_HEADER_LEN,
        IpFamily::V6 => true,
    };
    let tcp_flags = tcp.flags();
    let simple_flags = tcp_flags == flags::ACK || tcp_flags == flags::ACK | flags::PSH;
    let oversized = layout.end - layout.l3 > mtu;
    if !plain_ip || !simple_flags || hdr_end >= layout.end || oversized {
        return Classified::Unmergeable {
            key,
            bad_checksum: false,
        };
    }
    let ip_ok = match layout.family {
        IpFamily::V4 => checksum::verifies(frame.get(layout.l3..layout.l4).unwrap_or_default()),
        IpFamily::V6 => true,
    };
    let mut sum = layout.pseudo_header_base(frame, protocol::TCP);
    sum.add_u32(transport.len() as u32);
    sum.add_bytes(transport);
    // A checksum left to offload is as good as a verified one: the merged super-frame
    // gets a fresh partial checksum either way.
    let tcp_ok =
        sum.fold() == 0xffff || super::unfinished::partial_checksum(frame, &layout).is_some();
    if !ip_ok || !tcp_ok {
        return Classified::Unmergeable {
            key,
            bad_checksum: true,
        };
    }
    let ident = match layout.family {
        IpFamily::V4 => frame
            .get(layout.l3 + 4..layout.l3 + 6)
            .map_or(0, |b| u16::from_be_bytes([b[0], b[1]])),
        IpFamily::V6 => 0,
    };
    Classified::Mergeable(Candidate {
        key,
        layout,
        hdr_end,
        seq: tcp.seq(),
        flags: tcp_flags,
        ident,
    })
}

/// Whether two byte ranges of two frames are present and equal.
fn same(a: &[u8], b: &[u8], range: std::ops::Range<usize>) -> bool {
    match (a.get(range.clone()), b.get(range)) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

/// One flow's run of merged segments, in a buffer sized once.
#[derive(Debug)]
struct FlowSlot {
    active: bool,
    key: FlowKey,
    /// The first segment's headers followed by every merged payload.
    buf: Vec<u8>,
    layout: IpLayout,
    hdr_end: usize,
    /// Payload length of the first segment: every later one must not exceed it.
    mss: usize,
    segments: u32,
    next_seq: u32,
    last_ident: u16,
    last_used: u64,
}

impl FlowSlot {
    fn new() -> Self {
        Self {
            active: false,
            key: FlowKey {
                tag: 0,
                l2: [0; MAX_L2_LEN],
                addrs: [0; 32],
                ports: [0; 4],
            },
            buf: Vec::with_capacity(SLOT_CAPACITY),
            layout: IpLayout {
                family: IpFamily::V4,
                l3: 0,
                l4: 0,
                end: 0,
                protocol: 0,
                fragment: false,
                first_fragment: true,
                dont_fragment: true,
            },
            hdr_end: 0,
            mss: 0,
            segments: 0,
            next_seq: 0,
            last_ident: 0,
            last_used: 0,
        }
    }

    /// Starts a run with `c`; the caller checked that it does not end a run by itself.
    fn start(&mut self, c: &Candidate, frame: &[u8], now: u64) {
        self.buf.clear();
        self.buf
            .extend_from_slice(frame.get(..c.layout.end).unwrap_or_default());
        self.active = true;
        self.key = c.key;
        self.layout = c.layout;
        self.hdr_end = c.hdr_end;
        self.mss = c.payload_len();
        self.segments = 1;
        self.next_seq = c.seq.wrapping_add(c.payload_len() as u32);
        self.last_ident = c.ident;
        self.last_used = now;
    }

    /// Appends `c` if it continues this run; false leaves the run untouched.
    fn try_append(&mut self, c: &Candidate, frame: &[u8], now: u64) -> bool {
        let Some(payload) = frame.get(c.hdr_end..c.layout.end) else {
            return false;
        };
        let l3 = self.layout.l3;
        let l4 = self.layout.l4;
        let fits = self.buf.len() - l3 + payload.len() <= MAX_SUPER_FRAME_IP_LEN;
        if c.seq != self.next_seq
            || payload.len() > self.mss
            || !fits
            || c.hdr_end != self.hdr_end
            || c.layout.l4 != l4
        {
            return false;
        }
        let ip_same = match self.layout.family {
            IpFamily::V4 => {
                // TOS (ECN marks must not be lost), DF, TTL.
                same(&self.buf, frame, l3 + 1..l3 + 2)
                    && self.buf.get(l3 + 6).map(|b| b & 0x40) == frame.get(l3 + 6).map(|b| b & 0x40)
                    && same(&self.buf, frame, l3 + 8..l3 + 9)
                    && (self.layout.dont_fragment || c.ident == self.last_ident.wrapping_add(1))
            }
            // Version, traffic class, flow label; hop limit.
            IpFamily::V6 => {
                same(&self.buf, frame, l3..l3 + 4) && same(&self.buf, frame, l3 + 7..l3 + 8)
            }
        };
        // Ack and data offset; window; urgent pointer and options.
        let tcp_same = same(&self.buf, frame, l4 + 8..l4 + 13)
            && same(&self.buf, frame, l4 + 14..l4 + 16)
            && same(&self.buf, frame, l4 + 18..self.hdr_end);
        if !ip_same || !tcp_same {
            return false;
        }
        self.buf.extend_from_slice(payload);
        self.next_seq = self.next_seq.wrapping_add(payload.len() as u32);
        self.segments += 1;
        self.last_ident = c.ident;
        self.last_used = now;
        if c.flags & flags::PSH != 0
            && let Some(f) = self.buf.get_mut(l4 + 13)
        {
            *f |= flags::PSH;
        }
        true
    }

    /// Turns a run of two or more segments into a super-frame: lengths, IPv4 header
    /// checksum and the TCP pseudo-header sum; returns its virtio header.
    fn finish_super_frame(&mut self) -> Option<VnetHdr> {
        let l3 = self.layout.l3;
        let l4 = self.layout.l4;
        let ip_len = self.buf.len().checked_sub(l3)?;
        let ip = self.buf.get_mut(l3..)?;
        let gso_type = match self.layout.family {
            IpFamily::V4 => {
                let ident = u16::from_be_bytes([*ip.get(4)?, *ip.get(5)?]);
                ipv4::rewrite_len_ident(ip, u16::try_from(ip_len).ok()?, ident).ok()?;
                GSO_TCPV4
            }
            IpFamily::V6 => {
                let payload = u16::try_from(ip_len.checked_sub(ipv6::HEADER_LEN)?).ok()?;
                ipv6::rewrite_payload_len(ip, payload).ok()?;
                GSO_TCPV6
            }
        };
        let tcp_len = self.buf.len().checked_sub(l4)?;
        let mut pseudo = self.layout.pseudo_header_base(&self.buf, protocol::TCP);
        pseudo.add_u32(tcp_len as u32);
        tcp::set_checksum(self.buf.get_mut(l4..)?, pseudo.fold()).ok()?;
        Some(VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type,
            hdr_len: u16::try_from(self.hdr_end).ok()?,
            gso_size: u16::try_from(self.mss).ok()?,
            csum_start: u16::try_from(l4).ok()?,
            csum_offset: tcp::CHECKSUM_OFFSET as u16,
        })
    }
}

/// Merges consecutive TCP segments per flow into super-frames (see the module docs).
///
/// Holds at most one run per slot; [`Coalescer::flush`] must be called at the end of
/// every receive batch so nothing waits for the next one.
#[derive(Debug)]
pub struct Coalescer {
    slots: Box<[FlowSlot]>,
    /// Push count: orders slots for eviction.
    clock: u64,
    counters: CoalesceCounters,
    /// IP MTU of the ports frames go to (see [`Coalescer::set_mtu`]).
    mtu: usize,
}

impl Default for Coalescer {
    fn default() -> Self {
        Self::new()
    }
}

impl Coalescer {
    /// A coalescer with [`DEFAULT_FLOW_SLOTS`] slots (about 0.5 MiB of buffers).
    pub fn new() -> Self {
        Self::with_slots(DEFAULT_FLOW_SLOTS)
    }

    /// A coalescer with `slots` flow slots (at least 1), each a 64 KiB buffer allocated now.
    pub fn with_slots(slots: usize) -> Self {
        Self {
            slots: (0..slots.max(1)).map(|_| FlowSlot::new()).collect(),
            clock: 0,
            counters: CoalesceCounters::default(),
            mtu: 1500,
        }
    }

    /// Sets the IP MTU of the ports emitted frames go to (default 1500). A received TCP
    /// packet larger than it is a super-frame a peer left unsegmented (a kernel VTEP on a
    /// software underlay): it is passed on whole, marked as a super-frame, never merged.
    pub fn set_mtu(&mut self, mtu: usize) {
        self.mtu = mtu;
    }

    /// What happened so far.
    pub fn counters(&self) -> &CoalesceCounters {
        &self.counters
    }

    /// Runs currently held (emitted by the next [`Coalescer::flush`] at the latest).
    pub fn pending(&self) -> usize {
        self.slots.iter().filter(|s| s.active).count()
    }

    /// Takes one decapsulated frame from source `tag` (peer and VNI: frames of different
    /// tags never merge). Calls `emit(tag, vnet, frame)` for every frame or super-frame
    /// that is complete, possibly several times, possibly not at all (the frame is held).
    pub fn push<F>(&mut self, tag: u64, frame: &[u8], emit: &mut F)
    where
        F: FnMut(u64, &VnetHdr, &[u8]),
    {
        self.counters.frames_in += 1;
        self.clock += 1;
        match classify(tag, frame, self.mtu) {
            Classified::Other => self.pass(tag, frame, emit),
            Classified::Unmergeable { key, bad_checksum } => {
                if bad_checksum {
                    self.counters.bad_checksum += 1;
                }
                if let Some(i) = self.find(&key) {
                    self.flush_slot(i, emit);
                }
                self.pass(tag, frame, emit);
            }
            Classified::Mergeable(c) => self.merge(&c, frame, emit),
        }
    }

    /// Emits every held run. Call at the end of each receive batch.
    pub fn flush<F>(&mut self, emit: &mut F)
    where
        F: FnMut(u64, &VnetHdr, &[u8]),
    {
        for i in 0..self.slots.len() {
            self.flush_slot(i, emit);
        }
    }

    fn merge<F>(&mut self, c: &Candidate, frame: &[u8], emit: &mut F)
    where
        F: FnMut(u64, &VnetHdr, &[u8]),
    {
        let now = self.clock;
        let ends_run = c.flags & flags::PSH != 0;
        if let Some(i) = self.find(&c.key) {
            let Some(slot) = self.slots.get_mut(i) else {
                return self.pass(c.key.tag, frame, emit);
            };
            if slot.try_append(c, frame, now) {
                self.counters.segments_merged += 1;
                if ends_run || c.payload_len() < slot.mss {
                    self.flush_slot(i, emit);
                }
                return;
            }
            self.flush_slot(i, emit);
            return self.start_or_pass(i, c, frame, emit);
        }
        if ends_run {
            return self.pass(c.key.tag, frame, emit);
        }
        let i = self.free_slot(emit);
        self.start_or_pass(i, c, frame, emit);
    }

    /// Starts a run in slot `i` (which is free), unless `c` ends a run by itself.
    fn start_or_pass<F>(&mut self, i: usize, c: &Candidate, frame: &[u8], emit: &mut F)
    where
        F: FnMut(u64, &VnetHdr, &[u8]),
    {
        let now = self.clock;
        match self.slots.get_mut(i) {
            Some(slot) if c.flags & flags::PSH == 0 => slot.start(c, frame, now),
            _ => self.pass(c.key.tag, frame, emit),
        }
    }

    fn pass<F>(&mut self, tag: u64, frame: &[u8], emit: &mut F)
    where
        F: FnMut(u64, &VnetHdr, &[u8]),
    {
        self.counters.frames_out_unmerged += 1;
        emit(tag, &super::unfinished::unfinished(frame, self.mtu), frame);
    }

    fn find(&self, key: &FlowKey) -> Option<usize> {
        self.slots.iter().position(|s| s.active && s.key == *key)
    }

    /// A free slot, evicting the least recently used run if all are busy.
    fn free_slot<F>(&mut self, emit: &mut F) -> usize
    where
        F: FnMut(u64, &VnetHdr, &[u8]),
    {
        if let Some(i) = self.slots.iter().position(|s| !s.active) {
            return i;
        }
        let lru = self
            .slots
            .iter()
            .enumerate()
            .min_by_key(|(_, s)| s.last_used)
            .map_or(0, |(i, _)| i);
        self.counters.evictions += 1;
        self.flush_slot(lru, emit);
        lru
    }

    fn flush_slot<F>(&mut self, i: usize, emit: &mut F)
    where
        F: FnMut(u64, &VnetHdr, &[u8]),
    {
        let mtu = self.mtu;
        let Some(slot) = self.slots.get_mut(i) else {
            return;
        };
        if !slot.active {
            return;
        }
        slot.active = false;
        let tag = slot.key.tag;
        if slot.segments == 1 {
            // A run of one is the segment as it came (minus Ethernet padding).
            self.counters.frames_out_unmerged += 1;
            emit(
                tag,
                &super::unfinished::unfinished(&slot.buf, mtu),
                &slot.buf,
            );
        } else if let Some(vnet) = slot.finish_super_frame() {
            self.counters.super_frames_out += 1;
            emit(tag, &vnet, &slot.buf);
        } else {
            // Unreachable by construction (lengths are bounded when appending); a run whose
            // headers cannot be finished must not leave with stale lengths.
            debug_assert!(false, "merged run could not be finished");
            self.counters.merge_failures += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{FrameSpec, pattern, tcp_frame, udp_frame};

    /// One emitted frame.
    #[derive(Debug, Clone)]
    struct Out {
        tag: u64,
        vnet: VnetHdr,
        frame: Vec<u8>,
    }

    fn collect(c: &mut Coalescer, input: &[(u64, Vec<u8>)]) -> Vec<Out> {
        let mut out = Vec::new();
        let mut emit = |tag: u64, vnet: &VnetHdr, frame: &[u8]| {
            out.push(Out {
                tag,
                vnet: *vnet,
                frame: frame.to_vec(),
            })
        };
        for (tag, f) in input {
            c.push(*tag, f, &mut emit);
        }
        c.flush(&mut emit);
        assert_eq!(c.pending(), 0);
        out
    }

    /// `n` consecutive segments of `len` bytes each starting at `spec.seq`.
    fn segments(spec: &FrameSpec, n: usize, len: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| {
                let mut s = spec.clone();
                s.seq = spec.seq.wrapping_add((i * len) as u32);
                s.ident = spec.ident.wrapping_add(i as u16);
                tcp_frame(&s, &pattern(len * (i + 1))[len * i..])
            })
            .collect()
    }

    fn tagged(tag: u64, frames: Vec<Vec<u8>>) -> Vec<(u64, Vec<u8>)> {
        frames.into_iter().map(|f| (tag, f)).collect()
    }

    /// Finishes a super-frame's checksum as the receiving kernel would and checks it
    /// with etherparse; returns (seq, payload).
    fn open_super_frame(o: &Out) -> (u32, Vec<u8>) {
        let mut f = o.frame.clone();
        o.vnet.complete_checksum(&mut f).unwrap();
        let p = etherparse::SlicedPacket::from_ethernet(&f).unwrap();
        let Some(etherparse::TransportSlice::Tcp(tcp)) = &p.transport else {
            panic!("no TCP")
        };
        match &p.net {
            Some(etherparse::NetSlice::Ipv4(ip)) => {
                let h = ip.header().to_header();
                assert_eq!(h.header_checksum, h.calc_header_checksum());
                assert_eq!(usize::from(h.total_len), f.len() - 14);
                assert_eq!(
                    tcp.checksum(),
                    tcp.to_header()
                        .calc_checksum_ipv4(&h, tcp.payload())
                        .unwrap()
                );
            }
            Some(etherparse::NetSlice::Ipv6(ip)) => {
                let h = ip.header().to_header();
                assert_eq!(usize::from(h.payload_length), f.len() - 54);
                assert_eq!(
                    tcp.checksum(),
                    tcp.to_header()
                        .calc_checksum_ipv6(&h, tcp.payload())
                        .unwrap()
                );
            }
            _ => panic!("no IP"),
        }
        (tcp.sequence_number(), tcp.payload().to_vec())
    }

    /// Source port, sequence number and payload of any emitted frame.
    fn open_any(o: &Out) -> (u16, u32, Vec<u8>) {
        let port = u16::from_be_bytes([o.frame[34], o.frame[35]]);
        if o.vnet.is_gso() {
            let (seq, payload) = open_super_frame(o);
            return (port, seq, payload);
        }
        let p = etherparse::SlicedPacket::from_ethernet(&o.frame).unwrap();
        let Some(etherparse::TransportSlice::Tcp(t)) = p.transport else {
            panic!("no TCP")
        };
        (t.source_port(), t.sequence_number(), t.payload().to_vec())
    }

    #[test]
    fn merges_consecutive_segments_into_one_super_frame() {
        for v6 in [false, true] {
            let spec = if v6 {
                FrameSpec::v6().with_timestamps()
            } else {
                FrameSpec::v4().with_timestamps()
            };
            let mut c = Coalescer::new();
            let out = collect(&mut c, &tagged(7, segments(&spec, 10, 1000)));
            assert_eq!(out.len(), 1);
            let o = &out[0];
            assert_eq!(o.tag, 7);
            let l4 = spec.l4() as u16;
            assert_eq!(
                o.vnet,
                VnetHdr {
                    flags: F_NEEDS_CSUM,
                    gso_type: if v6 { GSO_TCPV6 } else { GSO_TCPV4 },
                    hdr_len: l4 + 32,
                    gso_size: 1000,
                    csum_start: l4,
                    csum_offset: 16,
                }
            );
            let (seq, payload) = open_super_frame(o);
            assert_eq!(seq, spec.seq);
            assert_eq!(payload, pattern(10_000));
            assert_eq!(c.counters().segments_merged, 9);
            assert_eq!(c.counters().super_frames_out, 1);
        }
    }

    #[test]
    fn short_segment_and_psh_end_a_run() {
        let spec = FrameSpec::v4();
        let mut frames = segments(&spec, 3, 1000);
        // A short fourth segment ends the first run...
        let mut s = spec.clone();
        s.seq = spec.seq + 3000;
        s.ident = spec.ident + 3;
        frames.push(tcp_frame(&s, &[1; 500]));
        // ...and a following full segment starts a new one, closed by PSH.
        s.seq += 500;
        s.ident += 1;
        frames.push(tcp_frame(&s, &[2; 1000]));
        s.seq += 1000;
        s.ident += 1;
        s.flags = flags::ACK | flags::PSH;
        frames.push(tcp_frame(&s, &[3; 1000]));
        let mut c = Coalescer::new();
        let mut emitted = 0;
        let mut first_flushed_before_end = false;
        let mut emit = |_: u64, v: &VnetHdr, _: &[u8]| {
            emitted += 1;
            first_flushed_before_end |= v.gso_size == 1000;
        };
        for f in &frames {
            c.push(1, f, &mut emit);
        }
        // Both runs ended on their own, before any flush.
        assert_eq!(emitted, 2);
        assert!(first_flushed_before_end);
        assert_eq!(c.pending(), 0);

        let out = collect(&mut Coalescer::new(), &tagged(1, frames));
        assert_eq!(out.len(), 2);
        assert_eq!(open_super_frame(&out[0]).1.len(), 3500);
        let (seq, payload) = open_super_frame(&out[1]);
        assert_eq!((seq, payload.len()), (spec.seq + 3500, 2000));
        // PSH of the last segment survives on the merged header.
        assert_eq!(out[1].frame[14 + 20 + 13], flags::ACK | flags::PSH);
        assert_eq!(out[0].frame[14 + 20 + 13], flags::ACK);
    }

    #[test]
    fn longer_segment_after_first_is_not_merged() {
        let spec = FrameSpec::v4();
        let mut s = spec.clone();
        let a = tcp_frame(&s, &[1; 500]);
        s.seq += 500;
        s.ident += 1;
        let b = tcp_frame(&s, &[2; 1000]);
        let out = collect(&mut Coalescer::new(), &[(1, a.clone()), (1, b.clone())]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].frame, a);
        assert_eq!(out[1].frame, b);
        assert!(out.iter().all(|o| o.vnet == VnetHdr::NONE));
    }

    #[test]
    fn interleaved_flows_each_merge() {
        let a = FrameSpec::v4();
        let mut b = FrameSpec::v4();
        b.host = 2;
        b.src_port = 40001;
        let sa = segments(&a, 6, 1200);
        let sb = segments(&b, 6, 1200);
        let mut input = Vec::new();
        for (x, y) in sa.into_iter().zip(sb) {
            input.push((1, x));
            input.push((1, y));
        }
        let out = collect(&mut Coalescer::new(), &input);
        assert_eq!(out.len(), 2);
        for o in &out {
            assert_eq!(open_super_frame(o).1, pattern(7200));
        }
    }

    #[test]
    fn tags_never_mix() {
        let spec = FrameSpec::v4();
        let segs = segments(&spec, 4, 1000);
        // The same flow's segments alternately from two sources.
        let input: Vec<_> = segs
            .into_iter()
            .enumerate()
            .map(|(i, f)| (i as u64 % 2, f))
            .collect();
        let out = collect(&mut Coalescer::new(), &input);
        // Within each tag the segments are not contiguous, so nothing merges.
        assert_eq!(out.len(), 4);
        assert!(out.iter().all(|o| o.vnet == VnetHdr::NONE));
        // Order within a tag is kept.
        let tag0: Vec<_> = out
            .iter()
            .filter(|o| o.tag == 0)
            .map(|o| o.frame.clone())
            .collect();
        assert_eq!(tag0, [input[0].1.clone(), input[2].1.clone()]);
    }

    #[test]
    fn reordered_segments_keep_order_and_bytes() {
        let spec = FrameSpec::v4();
        let segs = segments(&spec, 6, 1000);
        let order = [0, 1, 3, 2, 4, 5];
        let input: Vec<_> = order.iter().map(|&i| (1, segs[i].clone())).collect();
        let out = collect(&mut Coalescer::new(), &input);
        // Runs: [0,1] [3] [2] [4,5]: each run starts where the previous was cut.
        let runs: Vec<_> = out
            .iter()
            .map(|o| {
                let (_, seq, payload) = open_any(o);
                (seq, payload)
            })
            .collect();
        let seqs: Vec<_> = runs.iter().map(|(s, p)| (s - spec.seq, p.len())).collect();
        assert_eq!(seqs, [(0, 2000), (3000, 1000), (2000, 1000), (4000, 2000)]);
        // No byte lost or changed.
        let mut bytes = vec![0u8; 6000];
        for (s, p) in runs {
            let at = (s - spec.seq) as usize;
            bytes[at..at + p.len()].copy_from_slice(&p);
        }
        assert_eq!(bytes, pattern(6000));
    }

    #[test]
    fn corrupted_segment_is_not_merged() {
        let spec = FrameSpec::v4();
        let mut segs = segments(&spec, 5, 1000);
        let bad_payload_byte = 14 + 20 + 20 + 10;
        segs[2][bad_payload_byte] ^= 0x55;
        let bad = segs[2].clone();
        let out = collect(&mut Coalescer::new(), &tagged(1, segs));
        assert_eq!(out.len(), 3);
        assert_eq!(open_super_frame(&out[0]).1, pattern(2000));
        // The corrupted one is passed on untouched, in order, for the stack to drop.
        assert_eq!(out[1].vnet, VnetHdr::NONE);
        assert_eq!(out[1].frame, bad);
        // Segments after it cannot join the run before it; they form their own.
        assert_eq!(open_super_frame(&out[2]).0, spec.seq + 3000);

        // A bad IPv4 header checksum is not merged either.
        let mut segs = segments(&spec, 3, 1000);
        segs[1][14 + 10] ^= 1;
        let mut c = Coalescer::new();
        let out = collect(&mut c, &tagged(1, segs));
        assert_eq!(out.len(), 3);
        assert_eq!(c.counters().bad_checksum, 1);
    }

    #[test]
    fn unmergeable_tcp_flushes_its_flow_first() {
        let spec = FrameSpec::v4();
        let mut input = tagged(1, segments(&spec, 3, 1000));
        // A FIN without data, then a pure ACK, from the same flow.
        let mut fin = spec.clone();
        fin.seq += 3000;
        fin.flags = flags::ACK | flags::FIN;
        input.push((1, tcp_frame(&fin, &[])));
        let mut other_flow = spec.clone();
        other_flow.src_port = 1;
        let unrelated = segments(&other_flow, 2, 1000);
        input.insert(1, (1, unrelated[0].clone()));
        let out = collect(&mut Coalescer::new(), &input);
        // The first flow's run leaves before its FIN; the other flow is flushed at the end.
        assert_eq!(out.len(), 3);
        assert_eq!(open_super_frame(&out[0]).1.len(), 3000);
        assert_eq!(out[1].frame[14 + 20 + 13], flags::ACK | flags::FIN);
        assert_eq!(out[2].frame, unrelated[0]);
    }

    #[test]
    fn weird_flags_and_headers_pass_unmerged() {
        let base = FrameSpec::v4();
        for f in [
            flags::SYN | flags::ACK,
            flags::ACK | flags::URG,
            flags::ACK | flags::RST,
            flags::ACK | flags::CWR,
            flags::ACK | flags::ECE,
            flags::ACK | flags::FIN,
            0,
        ] {
            let mut s = base.clone();
            s.flags = f;
            let out = collect(&mut Coalescer::new(), &tagged(1, segments(&s, 3, 100)));
            assert_eq!(out.len(), 3, "flags {f:#x}");
        }
        // Different windows, TTLs, TOS or timestamps between segments: no merge.
        let segs = segments(&base.clone().with_timestamps(), 2, 100);
        let tweaks: [(usize, u8); 4] = [
            (14 + 20 + 15, 1),     // window
            (14 + 8, 1),           // TTL
            (14 + 1, 1),           // TOS (ECN)
            (14 + 20 + 20 + 5, 1), // TSval
        ];
        for (at, x) in tweaks {
            let mut b = segs[1].clone();
            b[at] ^= x;
            fix_checksums(&mut b);
            let out = collect(&mut Coalescer::new(), &[(1, segs[0].clone()), (1, b)]);
            assert_eq!(out.len(), 2, "byte {at}");
        }
        // UDP and ARP pass straight through.
        let u = udp_frame(&base, &[1; 100]);
        let out = collect(&mut Coalescer::new(), &[(1, u.clone())]);
        assert_eq!(out[0].frame, u);
    }

    /// Recomputes IPv4 header and TCP checksums after a test edits a frame.
    fn fix_checksums(f: &mut [u8]) {
        f[14 + 10..14 + 12].copy_from_slice(&[0, 0]);
        let c = checksum::checksum(&f[14..34]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
        let layout = IpLayout::parse(f).unwrap().unwrap();
        f[34 + 16..34 + 18].copy_from_slice(&[0, 0]);
        let mut s = layout.pseudo_header_base(f, 6);
        s.add_u32((layout.end - 34) as u32);
        s.add_bytes(&f[34..layout.end]);
        let v = s.finish();
        f[34 + 16..34 + 18].copy_from_slice(&v.to_be_bytes());
    }

    #[test]
    fn non_df_needs_consecutive_idents() {
        let mut spec = FrameSpec::v4();
        spec.df = false;
        let segs = segments(&spec, 3, 1000);
        assert_eq!(collect(&mut Coalescer::new(), &tagged(1, segs)).len(), 1);
        let mut s = spec.clone();
        let a = tcp_frame(&s, &[1; 1000]);
        s.seq += 1000;
        s.ident += 5;
        let b = tcp_frame(&s, &[1; 1000]);
        assert_eq!(collect(&mut Coalescer::new(), &[(1, a), (1, b)]).len(), 2);
        // With DF the identification may jump.
        let mut s = FrameSpec::v4();
        let a = tcp_frame(&s, &[1; 1000]);
        s.seq += 1000;
        s.ident += 5;
        let b = tcp_frame(&s, &[1; 1000]);
        assert_eq!(collect(&mut Coalescer::new(), &[(1, a), (1, b)]).len(), 1);
    }

    #[test]
    fn merged_size_is_bounded() {
        let spec = FrameSpec::v4();
        // 100 × 1000 bytes: the IP packet may hold at most 65535 − 40 = 65495 payload bytes.
        let out = collect(
            &mut Coalescer::new(),
            &tagged(1, segments(&spec, 100, 1000)),
        );
        assert_eq!(out.len(), 2);
        let first = open_super_frame(&out[0]).1.len();
        assert_eq!(first, 65_000);
        assert!(out[0].frame.len() - 14 <= MAX_SUPER_FRAME_IP_LEN);
        assert_eq!(open_super_frame(&out[1]).1.len(), 35_000);
    }

    #[test]
    fn eviction_when_slots_run_out() {
        let mut input = Vec::new();
        for round in 0..3 {
            for flow in 0..4u16 {
                let mut s = FrameSpec::v4();
                s.src_port = 1000 + flow;
                s.seq += round * 1000;
                s.ident += round as u16;
                input.push((1, tcp_frame(&s, &[flow as u8; 1000])));
            }
        }
        let mut c = Coalescer::with_slots(2);
        let out = collect(&mut c, &input);
        assert!(c.counters().evictions > 0);
        // Whatever merged, every flow's bytes arrive complete and in order.
        for flow in 0..4u16 {
            let mut next = FrameSpec::v4().seq;
            for o in &out {
                let (port, seq, payload) = open_any(o);
                if port != 1000 + flow {
                    continue;
                }
                assert_eq!(seq, next, "flow {flow}");
                assert!(payload.iter().all(|&b| b == flow as u8));
                next += payload.len() as u32;
            }
            assert_eq!(next - FrameSpec::v4().seq, 3000, "flow {flow}");
        }
        assert_eq!(c.counters().frames_in, 12);
    }

    #[test]
    fn buffers_do_not_grow() {
        let mut c = Coalescer::with_slots(1);
        let caps: Vec<_> = c.slots.iter().map(|s| s.buf.capacity()).collect();
        let spec = FrameSpec::v4();
        let out = collect(&mut c, &tagged(1, segments(&spec, 200, 1448)));
        assert!(out.len() >= 4);
        let after: Vec<_> = c.slots.iter().map(|s| s.buf.capacity()).collect();
        assert_eq!(caps, after);
    }
}
