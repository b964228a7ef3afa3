//! rtnetlink operations: veths, links, addresses, MTU, without shelling out to `ip`.
//!
//! Contract:
//! - Synchronous request/response over `netlink-packet-route` + `netlink-sys`
//!   (no async runtime). Every request asks for an ACK and waits for it; an
//!   `NLMSG_ERROR` becomes a [`NetlinkError`] carrying the operation, the errno
//!   and the kernel's extended-ack text when it sends one.
//! - A [`Netlink`] handle works in the network namespace of the thread that
//!   created it, for its whole life (the socket is bound there), whichever
//!   thread uses it later. Create one inside `netns::run_in_netns` to work in
//!   another namespace.
//! - Not for the per-frame path: requests allocate.

mod error;
mod sysctl;

pub use error::NetlinkError;
pub use sysctl::set_link_sysctl;

use std::net::IpAddr;
use std::os::fd::{AsRawFd, BorrowedFd};

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_ACK_TLVS, NLM_F_CAPPED, NLM_F_CREATE, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_EXCL,
    NLM_F_REQUEST, NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload, NlasIterator,
};
use netlink_packet_route::AddressFamily;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo as NlLinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

/// Longest interface name the kernel accepts (IFNAMSIZ minus the NUL).
pub const IFNAME_MAX: usize = 15;

/// `NLMSGERR_ATTR_MSG`: the extended-ack attribute holding the kernel's message.
const NLMSGERR_ATTR_MSG: u16 = 1;

/// How often a dump interrupted by a concurrent change is retried.
const DUMP_RETRIES: usize = 5;

/// Checks a link name the way the kernel's `dev_valid_name` does, so callers get
/// a precise reason instead of a bare EINVAL.
pub fn validate_ifname(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("interface name is empty");
    }
    if name.len() > IFNAME_MAX {
        return Err("interface name is longer than 15 bytes");
    }
    if name == "." || name == ".." {
        return Err("'.' and '..' are not interface names");
    }
    if name
        .bytes()
        .any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace())
    {
        return Err("interface name contains '/', ':', NUL or whitespace");
    }
    Ok(())
}

/// What weft needs to know about a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    /// The ifindex in the handle's namespace.
    pub index: u32,
    /// The interface name.
    pub name: String,
    /// The MTU.
    pub mtu: u32,
    /// The hardware address, when it is a 6-byte MAC.
    pub mac: Option<[u8; 6]>,
    /// The driver kind from IFLA_LINKINFO ("veth", "tun", "bridge", ...); `None`
    /// for devices without one (loopback, physical NICs).
    pub kind: Option<String>,
    /// Administratively up (IFF_UP).
    pub up: bool,
    /// IFLA_LINK: for a veth, the peer's ifindex (in the peer's namespace, which
    /// may differ from this handle's).
    pub peer_index: Option<u32>,
    /// Frames the kernel dropped at the device either way (IFLA_STATS64 `rx_dropped` +
    /// `tx_dropped`) since it was made; for a TAP, mostly what the host sent while
    /// weft's queue was full.
    pub drops: u64,
}

/// A synchronous rtnetlink handle bound to the network namespace it was created in.
#[derive(Debug)]
pub struct Netlink {
    socket: Socket,
    sequence: u32,
    port: u32,
}

impl Netlink {
    /// Opens an rtnetlink socket in the calling thread's network namespace.
    pub fn new() -> Result<Self, NetlinkError> {
        let sock_err = |op| move |source| NetlinkError::Socket { op, source };
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(sock_err("socket"))?;
        let local = socket.bind_auto().map_err(sock_err("bind"))?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(sock_err("connect"))?;
        // Both are optional comforts (readable errors, short ACKs).
        let _ = socket.set_ext_ack(true);
        let _ = socket.set_cap_ack(true);
        Ok(Self {
            socket,
            sequence: 0,
            port: local.port_number(),
        })
    }

    /// The link named `name`, if any.
    pub fn link_by_name(&mut self, name: &str) -> Result<Option<LinkInfo>, NetlinkError> {
        let op = "get link by name";
        validate_ifname(name).map_err(|reason| NetlinkError::InvalidArgument {
            op,
            value: name.into(),
            reason,
        })?;
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.into()));
        self.get_link(op, msg)
    }

    /// The link with ifindex `index`, if any.
    pub fn link(&mut self, index: u32) -> Result<Option<LinkInfo>, NetlinkError> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        self.get_link("get link", msg)
    }

    fn get_link(
        &mut self,
        op: &'static str,
        msg: LinkMessage,
    ) -> Result<Option<LinkInfo>, NetlinkError> {
        match self.request(op, RouteNetlinkMessage::GetLink(msg), 0) {
            Ok(replies) => Ok(replies.iter().find_map(|reply| match reply {
                RouteNetlinkMessage::NewLink(link) => Some(link_info(link)),
                _ => None,
            })),
            Err(NetlinkError::Kernel {
                errno: libc::ENODEV,
                ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every link in the namespace (for "weft creates no bridge/vxlan" checks).
    pub fn links(&mut self) -> Result<Vec<LinkInfo>, NetlinkError> {
        let replies = self.dump(
            "list links",
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
        )?;
        Ok(replies
            .iter()
            .filter_map(|reply| match reply {
                RouteNetlinkMessage::NewLink(link) => Some(link_info(link)),
                _ => None,
            })
            .collect())
    }

    /// Creates a veth pair whose peer is born inside `peer_netns` under its final
    /// name (IFLA_NET_NS_FD in the peer's info), so nothing transient appears in the
    /// target. Returns the host-side ifindex.
    pub fn create_veth(
        &mut self,
        name: &str,
        peer_name: &str,
        peer_netns: BorrowedFd<'_>,
    ) -> Result<u32, NetlinkError> {
        let op = "create veth";
        for n in [name, peer_name] {
            validate_ifname(n).map_err(|reason| NetlinkError::InvalidArgument {
                op,
                value: n.into(),
                reason,
            })?;
        }
        let mut peer = LinkMessage::default();
        peer.attributes
            .push(LinkAttribute::IfName(peer_name.into()));
        peer.attributes
            .push(LinkAttribute::NetNsFd(peer_netns.as_raw_fd()));
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.into()));
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            NlLinkInfo::Kind(InfoKind::Veth),
            NlLinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
        ]));
        self.request(
            op,
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .map_err(|e| match e {
            NetlinkError::Kernel {
                errno: libc::EEXIST,
                ..
            } => NetlinkError::AlreadyExists {
                what: format!("link {name} (or its peer {peer_name} in the target namespace)"),
            },
            other => other,
        })?;
        match self.link_by_name(name)? {
            Some(link) => Ok(link.index),
            None => Err(NetlinkError::UnexpectedReply {
                op,
                what: "the new veth vanished before its index could be read",
            }),
        }
    }

    /// Deletes a link (for a veth, both ends).
    pub fn delete_link(&mut self, index: u32) -> Result<(), NetlinkError> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        self.link_request("delete link", index, RouteNetlinkMessage::DelLink(msg))
    }

    /// Sets the link administratively up or down.
    pub fn set_up(&mut self, index: u32, up: bool) -> Result<(), NetlinkError> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.change_mask = LinkFlags::Up;
        if up {
            msg.header.flags = LinkFlags::Up;
        }
        self.link_request("set link up/down", index, RouteNetlinkMessage::SetLink(msg))
    }

    /// Sets the link's MTU.
    pub fn set_mtu(&mut self, index: u32, mtu: u32) -> Result<(), NetlinkError> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(LinkAttribute::Mtu(mtu));
        self.link_request("set MTU", index, RouteNetlinkMessage::SetLink(msg))
    }

    /// Sets the link's MAC address.
    pub fn set_mac(&mut self, index: u32, mac: [u8; 6]) -> Result<(), NetlinkError> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(LinkAttribute::Address(mac.to_vec()));
        self.link_request("set MAC address", index, RouteNetlinkMessage::SetLink(msg))
    }

    /// A request on one existing link: ENODEV becomes `NoSuchDevice`.
    fn link_request(
        &mut self,
        op: &'static str,
        index: u32,
        msg: RouteNetlinkMessage,
    ) -> Result<(), NetlinkError> {
        self.request(op, msg, 0).map(drop).map_err(|e| match e {
            NetlinkError::Kernel {
                errno: libc::ENODEV,
                ..
            } => NetlinkError::NoSuchDevice {
                what: format!("ifindex {index}"),
            },
            other => other,
        })
    }

    /// Adds `addr` (address and prefix length) to the link.
    pub fn add_address(&mut self, index: u32, addr: ipnet::IpNet) -> Result<(), NetlinkError> {
        let msg = address_message(index, addr);
        self.link_request("add address", index, RouteNetlinkMessage::NewAddress(msg))
            .map_err(|e| match e {
                NetlinkError::Kernel {
                    errno: libc::EEXIST,
                    ..
                } => NetlinkError::AddressExists { addr, index },
                other => other,
            })
    }

    /// Removes `addr` from the link.
    pub fn del_address(&mut self, index: u32, addr: ipnet::IpNet) -> Result<(), NetlinkError> {
        let msg = address_message(index, addr);
        self.link_request(
            "delete address",
            index,
            RouteNetlinkMessage::DelAddress(msg),
        )
    }

    /// Every address on every link: `(ifindex, address/prefix)`.
    pub fn addresses(&mut self) -> Result<Vec<(u32, ipnet::IpNet)>, NetlinkError> {
        let replies = self.dump(
            "list addresses",
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
        )?;
        Ok(replies
            .iter()
            .filter_map(|reply| match reply {
                RouteNetlinkMessage::NewAddress(msg) => address_of(msg),
                _ => None,
            })
            .collect())
    }

    /// Adds a direct route to `dst` out of link `oif` in the main table (e.g.
    /// `224.0.0.0/4 dev weft0` inside a container).
    pub fn add_route(&mut self, dst: ipnet::IpNet, oif: u32) -> Result<(), NetlinkError> {
        self.add_route_via(dst, None, oif)
    }

    /// Adds a route to `dst` out of link `oif` in the main table, through `gw` when given
    /// (`ip route add 0.0.0.0/0 via GW dev X`), else on-link.
    pub fn add_route_via(
        &mut self,
        dst: ipnet::IpNet,
        gw: Option<IpAddr>,
        oif: u32,
    ) -> Result<(), NetlinkError> {
        let op = "add route";
        let mut msg = RouteMessage::default();
        msg.header.address_family = family_of(dst.addr());
        msg.header.destination_prefix_length = dst.prefix_len();
        msg.header.table = RouteHeader::RT_TABLE_MAIN;
        msg.header.protocol = RouteProtocol::Boot;
        msg.header.kind = RouteType::Unicast;
        // Without a gateway: on-link, as `ip route add PREFIX dev X` makes it.
        msg.header.scope = match (dst, gw) {
            (ipnet::IpNet::V4(_), None) => RouteScope::Link,
            _ => RouteScope::Universe,
        };
        if dst.prefix_len() > 0 {
            msg.attributes
                .push(RouteAttribute::Destination(RouteAddress::from(
                    dst.network(),
                )));
        }
        if let Some(gw) = gw {
            msg.attributes
                .push(RouteAttribute::Gateway(RouteAddress::from(gw)));
        }
        msg.attributes.push(RouteAttribute::Oif(oif));
        self.request(
            op,
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
        .map_err(|e| match e {
            NetlinkError::Kernel {
                errno: libc::EEXIST,
                ..
            } => NetlinkError::AlreadyExists {
                what: format!("route to {dst}"),
            },
            NetlinkError::Kernel {
                errno: libc::ENODEV,
                ..
            } => NetlinkError::NoSuchDevice {
                what: format!("ifindex {oif}"),
            },
            other => other,
        })
    }

    /// The routes of the main table, both families (what `ip route` and `ip -6 route`
    /// list), for checking that a container's routes are still in place.
    pub fn routes(&mut self) -> Result<Vec<RouteInfo>, NetlinkError> {
        let mut out = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut msg = RouteMessage::default();
            msg.header.address_family = family;
            let replies = self.dump("list routes", RouteNetlinkMessage::GetRoute(msg))?;
            out.extend(replies.iter().filter_map(|reply| match reply {
                RouteNetlinkMessage::NewRoute(m) => route_info(m),
                _ => None,
            }));
        }
        Ok(out)
    }

    /// A dump request, retried when a concurrent change interrupts it.
    fn dump(
        &mut self,
        op: &'static str,
        msg: RouteNetlinkMessage,
    ) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        for _ in 0..DUMP_RETRIES {
            match self.exchange(op, msg.clone(), NLM_F_DUMP)? {
                Exchange::Complete(replies) => return Ok(replies),
                Exchange::Interrupted => continue,
            }
        }
        Err(NetlinkError::UnexpectedReply {
            op,
            what: "dump kept being interrupted by concurrent changes",
        })
    }

    /// A non-dump request; returns the replies that came before the ACK.
    fn request(
        &mut self,
        op: &'static str,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        match self.exchange(op, msg, flags | NLM_F_ACK)? {
            Exchange::Complete(replies) => Ok(replies),
            Exchange::Interrupted => Err(NetlinkError::UnexpectedReply {
                op,
                what: "reply marked interrupted",
            }),
        }
    }

    /// Sends one request and collects replies until its ACK, error or DONE.
    fn exchange(
        &mut self,
        op: &'static str,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Exchange, NetlinkError> {
        self.sequence = self.sequence.wrapping_add(1);
        let sequence = self.sequence;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = sequence;
        let mut request = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        request.finalize();
        let mut buf = vec![0; request.buffer_len()];
        request.serialize(&mut buf);
        self.socket
            .send(&buf, 0)
            .map_err(|source| NetlinkError::Socket { op: "send", source })?;

        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut replies = Vec::new();
        let mut interrupted = false;
        loop {
            let (datagram, _) =
                self.socket
                    .recv_from_full()
                    .map_err(|source| NetlinkError::Socket {
                        op: "receive",
                        source,
                    })?;
            let mut rest = datagram.as_slice();
            while !rest.is_empty() {
                let len = NetlinkBuffer::new_checked(rest)
                    .map_err(|source| NetlinkError::Decode { op, source })?
                    .length() as usize;
                let (bytes, tail) = rest.split_at(len.min(rest.len()));
                rest = tail.get(pad4(len) - len..).unwrap_or(&[]);
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes)
                    .map_err(|source| NetlinkError::Decode { op, source })?;
                if reply.header.sequence_number != sequence
                    || (reply.header.port_number != 0 && reply.header.port_number != self.port)
                {
                    continue; // a late answer to an earlier request
                }
                interrupted |= reply.header.flags & NLM_F_DUMP_INTR != 0;
                match reply.payload {
                    NetlinkPayload::InnerMessage(inner) => replies.push(inner),
                    NetlinkPayload::Done(_) if dump => {
                        return Ok(if interrupted {
                            Exchange::Interrupted
                        } else {
                            Exchange::Complete(replies)
                        });
                    }
                    NetlinkPayload::Error(err) => match err.code {
                        None => return Ok(Exchange::Complete(replies)),
                        Some(code) => {
                            let errno = code.get().saturating_abs();
                            let message = extended_ack_message(reply.header.flags, &err.header)
                                .unwrap_or_else(|| {
                                    std::io::Error::from_raw_os_error(errno).to_string()
                                });
                            return Err(match errno {
                                libc::EPERM | libc::EACCES => NetlinkError::PermissionDenied { op },
                                _ => NetlinkError::Kernel { op, errno, message },
                            });
                        }
                    },
                    _ => {}
                }
            }
        }
    }
}

/// How a request ended.
#[derive(Debug)]
enum Exchange {
    Complete(Vec<RouteNetlinkMessage>),
    /// The dump saw a concurrent change (NLM_F_DUMP_INTR) and must be redone.
    Interrupted,
}

fn pad4(len: usize) -> usize {
    len.div_ceil(4) * 4
}

/// The text of an extended ACK (`NLMSGERR_ATTR_MSG`), if the kernel sent one.
/// `payload` is what follows the error code: the echoed request (only its
/// header when `NLM_F_CAPPED`), then attributes when `NLM_F_ACK_TLVS`.
fn extended_ack_message(flags: u16, payload: &[u8]) -> Option<String> {
    if flags & NLM_F_ACK_TLVS == 0 {
        return None;
    }
    let echoed = if flags & NLM_F_CAPPED != 0 {
        16
    } else {
        let len = payload.first_chunk::<4>().map(|b| u32::from_ne_bytes(*b))?;
        pad4(usize::try_from(len).ok()?)
    };
    NlasIterator::new(payload.get(echoed..)?)
        .filter_map(Result::ok)
        .find(|nla| nla.kind() == NLMSGERR_ATTR_MSG)
        .map(|nla| {
            let value = nla.value();
            let text = value.split(|b| *b == 0).next().unwrap_or(value);
            String::from_utf8_lossy(text).into_owned()
        })
}

/// A route of the main table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteInfo {
    /// Destination (`0.0.0.0/0` or `::/0` for a default route).
    pub dst: ipnet::IpNet,
    /// Next hop, if any.
    pub gw: Option<IpAddr>,
    /// Outgoing link.
    pub oif: Option<u32>,
}

fn route_info(msg: &RouteMessage) -> Option<RouteInfo> {
    if msg.header.table != RouteHeader::RT_TABLE_MAIN || msg.header.kind != RouteType::Unicast {
        return None;
    }
    let ip = |a: &RouteAddress| match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    };
    let mut dst = None;
    let mut gw = None;
    let mut oif = None;
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Destination(a) => dst = ip(a),
            RouteAttribute::Gateway(a) => gw = ip(a),
            RouteAttribute::Oif(i) => oif = Some(*i),
            _ => {}
        }
    }
    let unspecified = match msg.header.address_family {
        AddressFamily::Inet => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        AddressFamily::Inet6 => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        _ => return None,
    };
    let dst = ipnet::IpNet::new(
        dst.unwrap_or(unspecified),
        msg.header.destination_prefix_length,
    )
    .ok()?;
    Some(RouteInfo { dst, gw, oif })
}

fn family_of(ip: IpAddr) -> AddressFamily {
    match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

fn address_message(index: u32, addr: ipnet::IpNet) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.family = family_of(addr.addr());
    msg.header.prefix_len = addr.prefix_len();
    msg.header.index = index;
    msg.attributes.push(AddressAttribute::Local(addr.addr()));
    msg.attributes.push(AddressAttribute::Address(addr.addr()));
    msg
}

fn address_of(msg: &AddressMessage) -> Option<(u32, ipnet::IpNet)> {
    // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer on
    // point-to-point links and the only one given for IPv6.
    let local = msg.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(ip) => Some(*ip),
        _ => None,
    });
    let address = msg.attributes.iter().find_map(|a| match a {
        AddressAttribute::Address(ip) => Some(*ip),
        _ => None,
    });
    let ip = local.or(address)?;
    let net = ipnet::IpNet::new(ip, msg.header.prefix_len).ok()?;
    Some((msg.header.index, net))
}

fn link_info(msg: &LinkMessage) -> LinkInfo {
    let mut info = LinkInfo {
        index: msg.header.index,
        name: String::new(),
        mtu: 0,
        mac: None,
        kind: None,
        up: msg.header.flags.contains(LinkFlags::Up),
        peer_index: None,
        drops: 0,
    };
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(name) => info.name.clone_from(name),
            LinkAttribute::Mtu(mtu) => info.mtu = *mtu,
            LinkAttribute::Address(bytes) => {
                info.mac = bytes.as_slice().try_into().ok();
            }
            LinkAttribute::Link(peer) => info.peer_index = Some(*peer),
            LinkAttribute::Stats64(stats) => {
                info.drops = stats.rx_dropped.saturating_add(stats.tx_dropped);
            }
            LinkAttribute::LinkInfo(infos) => {
                info.kind = infos.iter().find_map(|i| match i {
                    NlLinkInfo::Kind(kind) => Some(kind.to_string()),
                    _ => None,
                });
            }
            _ => {}
        }
    }
    info
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_follow_kernel_rules() {
        assert!(validate_ifname("veth0").is_ok());
        assert!(validate_ifname("a23456789012345").is_ok());
        for bad in ["", ".", "..", "a234567890123456", "a/b", "a b", "a:b"] {
            assert!(validate_ifname(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn extended_ack_text_is_extracted() {
        // Capped echo: 16-byte header, then NLMSGERR_ATTR_MSG "bad peer\0".
        let mut payload = vec![0u8; 16];
        let text = b"bad peer\0";
        let nla_len = 4 + text.len();
        payload.extend_from_slice(&(nla_len as u16).to_ne_bytes());
        payload.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
        payload.extend_from_slice(text);
        payload.resize(16 + pad4(nla_len), 0);
        let flags = NLM_F_CAPPED | NLM_F_ACK_TLVS;
        assert_eq!(
            extended_ack_message(flags, &payload).as_deref(),
            Some("bad peer")
        );
        assert_eq!(extended_ack_message(NLM_F_CAPPED, &payload), None);
        assert_eq!(extended_ack_message(flags, &payload[..3]), None);
    }

    #[test]
    fn link_messages_become_link_info() {
        let mut msg = LinkMessage::default();
        msg.header.index = 7;
        msg.header.flags = LinkFlags::Up;
        let mut stats = netlink_packet_route::link::Stats64::default();
        stats.rx_dropped = 2;
        stats.tx_dropped = 5;
        msg.attributes = vec![
            LinkAttribute::IfName("veth7".into()),
            LinkAttribute::Mtu(1376),
            LinkAttribute::Address(vec![2, 0, 0, 0, 0, 7]),
            LinkAttribute::Link(3),
            LinkAttribute::LinkInfo(vec![NlLinkInfo::Kind(InfoKind::Veth)]),
            LinkAttribute::Stats64(stats),
        ];
        let info = link_info(&msg);
        assert_eq!(
            info,
            LinkInfo {
                index: 7,
                name: "veth7".into(),
                mtu: 1376,
                mac: Some([2, 0, 0, 0, 0, 7]),
                kind: Some("veth".into()),
                up: true,
                peer_index: Some(3),
                drops: 7,
            }
        );
    }

    #[test]
    fn addresses_prefer_local() {
        let mut msg = address_message(4, "10.1.2.3/24".parse().unwrap());
        assert_eq!(address_of(&msg), Some((4, "10.1.2.3/24".parse().unwrap())));
        msg.attributes = vec![AddressAttribute::Address("fd00::1".parse().unwrap())];
        msg.header.prefix_len = 64;
        assert_eq!(address_of(&msg), Some((4, "fd00::1/64".parse().unwrap())));
    }
}
