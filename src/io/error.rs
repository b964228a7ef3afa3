//! Errors opening and configuring ports, with messages an operator can act on.

use std::io;
use std::net::SocketAddr;

/// Why a port could not be opened or configured.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PortError {
    /// A syscall failed while setting up the port.
    #[error("{op}: {source}")]
    Io {
        /// What weft was doing, e.g. "PACKET_VNET_HDR on ifindex 7".
        op: String,
        /// The kernel's answer.
        #[source]
        source: io::Error,
    },
    /// The operation needs privileges the process does not have.
    #[error("{op}: permission denied (needs CAP_NET_ADMIN and CAP_NET_RAW; run as root)")]
    PermissionDenied {
        /// What weft was doing.
        op: String,
    },
    /// No interface has this index in the current network namespace.
    #[error("no network interface with index {ifindex} in this network namespace")]
    NoSuchInterface {
        /// The index looked for.
        ifindex: u32,
    },
    /// The TUN/TAP driver is missing.
    #[error("/dev/net/tun is missing: load the tun module or create the device node")]
    NoTunDevice,
    /// The TAP exists and another process holds it open.
    #[error("TAP device {name} is in use by another process (is another weft router running?)")]
    TapBusy {
        /// The device name.
        name: String,
    },
    /// The name belongs to an interface that is not a TAP.
    #[error("interface {name} exists and is not a TAP device; pick another name or delete it")]
    NotATap {
        /// The device name.
        name: String,
    },
    /// An interface name the kernel would reject.
    #[error("invalid interface name {name:?}: {reason}")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// Another socket already holds this UDP address.
    #[error(
        "UDP address {addr} is already in use (another weft router, or another program on this port?)"
    )]
    AddressInUse {
        /// The address that could not be bound.
        addr: SocketAddr,
    },
    /// A port option was out of range.
    #[error("invalid port option: {0}")]
    InvalidOption(&'static str),
}

impl PortError {
    /// Wraps `source` with context, mapping EPERM/EACCES to `PermissionDenied`.
    pub(crate) fn io(op: impl Into<String>, source: io::Error) -> Self {
        match source.raw_os_error() {
            Some(libc::EPERM | libc::EACCES) => Self::PermissionDenied { op: op.into() },
            _ => Self::Io {
                op: op.into(),
                source,
            },
        }
    }
}
