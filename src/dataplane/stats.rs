//! What the kernel dropped before weft saw it, read from the sockets and devices and
//! handed to the core's counters: each veth's packet-socket drops and each TAP's device
//! drops (per port), the tunnel sockets' receive-buffer drops.

use datapath::{Core, RxSocket};

use super::PortHandle;
use super::sockets::Sockets;
use crate::io::{TapPort, UdpPort};
use crate::netlink::Netlink;

/// Folds the kernel's drop counts into the core's.
pub(super) fn fold_kernel_drops(
    core: &mut Core,
    io: &mut Sockets,
    vxlan: &UdpPort,
    netlink: &mut Option<Netlink>,
) {
    for (id, port) in io.iter_mut() {
        let n = match &port.handle {
            PortHandle::Veth(p) => p.stats().map_or(0, |s| u64::from(s.drops)),
            PortHandle::Tap(t) => match tap_drops(netlink, t) {
                Some(now) => {
                    let seen = port.kernel_drops_seen.replace(now);
                    now.saturating_sub(seen.unwrap_or(now))
                }
                None => 0,
            },
        };
        if n > 0 {
            core.add_port_kernel_drops(id, n);
        }
    }
    for (socket, sock) in [(RxSocket::Vxlan, vxlan), (RxSocket::Tunnel, &io.tunnel)] {
        match sock.kernel_drops() {
            Ok(n) => core.set_socket_drops(socket, u64::from(n)),
            Err(e) => tracing::debug!("cannot read the drop count of {socket:?}: {e}"),
        }
    }
}

/// A TAP's device drop count (cumulative since the device was made, so across router
/// restarts: callers count differences), through a netlink handle opened on first use.
pub(super) fn tap_drops(netlink: &mut Option<Netlink>, tap: &TapPort) -> Option<u64> {
    if netlink.is_none() {
        match Netlink::new() {
            Ok(nl) => *netlink = Some(nl),
            Err(e) => {
                tracing::debug!("no netlink for TAP statistics: {e}");
                return None;
            }
        }
    }
    match netlink.as_mut()?.link(tap.ifindex()) {
        Ok(link) => link.map(|l| l.drops),
        Err(e) => {
            tracing::debug!(tap = %tap.name(), "cannot read TAP statistics: {e}");
            None
        }
    }
}
