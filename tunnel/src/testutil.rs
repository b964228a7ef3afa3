//! Frame builders for the unit tests: TCP/UDP frames with complete checksums, and TSO/USO
//! super-frames as the kernel hands them to a `PACKET_VNET_HDR` socket (checksum field
//! holding the pseudo-header sum, `NEEDS_CSUM`, `gso_type`/`gso_size`).

use std::net::{Ipv4Addr, Ipv6Addr};

use wire::VnetHdr;
use wire::checksum::{self, Checksum};
use wire::ethernet::{self, EtherType};
use wire::ipv4::{Ipv4Repr, protocol};
use wire::ipv6::Ipv6Repr;
use wire::tcp::flags;
use wire::vnet;
use wire::{Mac, ipv4};

/// Everything that varies between test frames.
#[derive(Debug, Clone)]
pub(crate) struct FrameSpec {
    pub(crate) v6: bool,
    pub(crate) dst_mac: [u8; 6],
    pub(crate) src_mac: [u8; 6],
    pub(crate) vlan: Option<u16>,
    pub(crate) src_port: u16,
    pub(crate) dst_port: u16,
    pub(crate) seq: u32,
    pub(crate) ack: u32,
    pub(crate) flags: u8,
    pub(crate) window: u16,
    /// TCP options, a multiple of 4 bytes.
    pub(crate) options: Vec<u8>,
    pub(crate) ident: u16,
    pub(crate) df: bool,
    pub(crate) ttl: u8,
    pub(crate) tos: u8,
    /// Last byte of the source address, to make distinct flows.
    pub(crate) host: u8,
}

impl FrameSpec {
    pub(crate) fn v4() -> Self {
        Self {
            v6: false,
            dst_mac: [2, 0, 0, 0, 0, 2],
            src_mac: [2, 0, 0, 0, 0, 1],
            vlan: None,
            src_port: 40000,
            dst_port: 5201,
            seq: 0x1000_0000,
            ack: 0x2000_0000,
            flags: flags::ACK,
            window: 502,
            options: Vec::new(),
            ident: 0x4000,
            df: true,
            ttl: 64,
            tos: 0,
            host: 1,
        }
    }

    pub(crate) fn v6() -> Self {
        Self {
            v6: true,
            ..Self::v4()
        }
    }

    /// Adds a TCP timestamp option (NOP NOP TS), as Linux sends on every segment.
    pub(crate) fn with_timestamps(mut self) -> Self {
        self.options = vec![1, 1, 8, 10, 0, 1, 2, 3, 4, 5, 6, 7];
        self
    }

    pub(crate) fn src_v4(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 32, 0, self.host)
    }

    pub(crate) fn dst_v4(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 32, 0, 200)
    }

    pub(crate) fn src_v6(&self) -> Ipv6Addr {
        Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, u16::from(self.host))
    }

    pub(crate) fn dst_v6(&self) -> Ipv6Addr {
        Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0xc8)
    }

    fn l3(&self) -> usize {
        if self.vlan.is_some() { 18 } else { 14 }
    }

    fn ip_header_len(&self) -> usize {
        if self.v6 { 40 } else { 20 }
    }

    /// Offset of the transport header.
    pub(crate) fn l4(&self) -> usize {
        self.l3() + self.ip_header_len()
    }
}

/// Ethernet + IP headers for `l4_len` transport bytes.
fn write_l2_l3(spec: &FrameSpec, proto: u8, l4_len: usize, f: &mut [u8]) {
    let ethertype = if spec.v6 {
        EtherType::IPV6
    } else {
        EtherType::IPV4
    };
    let l3 = spec.l3();
    if let Some(tci) = spec.vlan {
        ethernet::write_header(f, Mac(spec.dst_mac), Mac(spec.src_mac), EtherType::VLAN).unwrap();
        f[14..16].copy_from_slice(&tci.to_be_bytes());
        f[16..18].copy_from_slice(&ethertype.0.to_be_bytes());
    } else {
        ethernet::write_header(f, Mac(spec.dst_mac), Mac(spec.src_mac), ethertype).unwrap();
    }
    if spec.v6 {
        Ipv6Repr {
            src: spec.src_v6(),
            dst: spec.dst_v6(),
            next_header: proto,
            hop_limit: spec.ttl,
            payload_len: l4_len,
        }
        .write(&mut f[l3..])
        .unwrap();
        f[l3] |= spec.tos >> 4;
        f[l3 + 1] |= spec.tos << 4;
    } else {
        Ipv4Repr {
            src: spec.src_v4(),
            dst: spec.dst_v4(),
            protocol: proto,
            ttl: spec.ttl,
            tos: spec.tos,
            ident: spec.ident,
            dont_fragment: spec.df,
            payload_len: l4_len,
        }
        .write(&mut f[l3..])
        .unwrap();
    }
}

fn pseudo(spec: &FrameSpec, proto: u8, l4_len: usize) -> Checksum {
    if spec.v6 {
        checksum::pseudo_header_v6(spec.src_v6(), spec.dst_v6(), proto, l4_len as u32)
    } else {
        checksum::pseudo_header_v4(spec.src_v4(), spec.dst_v4(), proto, l4_len as u16)
    }
}

/// A TCP frame; `complete` picks a finished checksum or the pseudo-header sum a
/// checksum-offload frame carries.
fn build_tcp(spec: &FrameSpec, payload: &[u8], complete: bool) -> Vec<u8> {
    assert_eq!(spec.options.len() % 4, 0);
    let tcp_hl = 20 + spec.options.len();
    let l4 = spec.l4();
    let l4_len = tcp_hl + payload.len();
    let mut f = vec![0u8; l4 + l4_len];
    write_l2_l3(spec, protocol::TCP, l4_len, &mut f);
    let t = &mut f[l4..];
    t[0..2].copy_from_slice(&spec.src_port.to_be_bytes());
    t[2..4].copy_from_slice(&spec.dst_port.to_be_bytes());
    t[4..8].copy_from_slice(&spec.seq.to_be_bytes());
    t[8..12].copy_from_slice(&spec.ack.to_be_bytes());
    t[12] = ((tcp_hl / 4) as u8) << 4;
    t[13] = spec.flags;
    t[14..16].copy_from_slice(&spec.window.to_be_bytes());
    t[20..tcp_hl].copy_from_slice(&spec.options);
    t[tcp_hl..].copy_from_slice(payload);
    let ph = pseudo(spec, protocol::TCP, l4_len);
    let value = if complete {
        let mut c = ph;
        c.add_bytes(t);
        c.finish()
    } else {
        ph.fold()
    };
    t[16..18].copy_from_slice(&value.to_be_bytes());
    f
}

/// A wire-ready TCP frame with correct checksums.
pub(crate) fn tcp_frame(spec: &FrameSpec, payload: &[u8]) -> Vec<u8> {
    build_tcp(spec, payload, true)
}

/// A TSO super-frame as a container's stack hands it to its veth.
pub(crate) fn tso_frame(spec: &FrameSpec, payload: &[u8], mss: u16) -> (VnetHdr, Vec<u8>) {
    let f = build_tcp(spec, payload, false);
    let l4 = spec.l4();
    let hdr = VnetHdr {
        flags: vnet::F_NEEDS_CSUM,
        gso_type: if spec.v6 {
            vnet::GSO_TCPV6
        } else {
            vnet::GSO_TCPV4
        },
        hdr_len: (l4 + 20 + spec.options.len()) as u16,
        gso_size: mss,
        csum_start: l4 as u16,
        csum_offset: 16,
    };
    (hdr, f)
}

/// A UDP frame; `complete` as for TCP.
fn build_udp(spec: &FrameSpec, payload: &[u8], complete: bool) -> Vec<u8> {
    let l4 = spec.l4();
    let l4_len = 8 + payload.len();
    let mut f = vec![0u8; l4 + l4_len];
    write_l2_l3(spec, protocol::UDP, l4_len, &mut f);
    let u = &mut f[l4..];
    u[0..2].copy_from_slice(&spec.src_port.to_be_bytes());
    u[2..4].copy_from_slice(&spec.dst_port.to_be_bytes());
    u[4..6].copy_from_slice(&(l4_len.min(0xffff) as u16).to_be_bytes());
    u[8..].copy_from_slice(payload);
    let ph = pseudo(spec, protocol::UDP, l4_len);
    let value = if complete {
        let mut c = ph;
        c.add_bytes(u);
        match c.finish() {
            0 => 0xffff,
            v => v,
        }
    } else {
        ph.fold()
    };
    u[6..8].copy_from_slice(&value.to_be_bytes());
    f
}

/// A wire-ready UDP frame.
pub(crate) fn udp_frame(spec: &FrameSpec, payload: &[u8]) -> Vec<u8> {
    build_udp(spec, payload, true)
}

/// A USO (UDP_SEGMENT) super-frame.
pub(crate) fn uso_frame(spec: &FrameSpec, payload: &[u8], size: u16) -> (VnetHdr, Vec<u8>) {
    let f = build_udp(spec, payload, false);
    let l4 = spec.l4();
    let hdr = VnetHdr {
        flags: vnet::F_NEEDS_CSUM,
        gso_type: vnet::GSO_UDP_L4,
        hdr_len: (l4 + 8) as u16,
        gso_size: size,
        csum_start: l4 as u16,
        csum_offset: 6,
    };
    (hdr, f)
}

/// A payload whose bytes differ by position, so misplaced bytes show.
pub(crate) fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// Sanity: an option-less IPv4 header as the builders write it.
#[test]
fn builders_write_valid_checksums() {
    let spec = FrameSpec::v4().with_timestamps();
    let f = tcp_frame(&spec, &pattern(100));
    let p = etherparse::SlicedPacket::from_ethernet(&f).unwrap();
    let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
        panic!()
    };
    assert_eq!(usize::from(ip.header().ihl()) * 4, ipv4::MIN_HEADER_LEN);
    let Some(etherparse::TransportSlice::Tcp(tcp)) = &p.transport else {
        panic!()
    };
    let expected = tcp
        .to_header()
        .calc_checksum_ipv4(&ip.header().to_header(), tcp.payload())
        .unwrap();
    assert_eq!(tcp.checksum(), expected);
}
