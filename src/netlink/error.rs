//! Netlink errors: the operation, the errno and the kernel's own words.

use std::io;

/// Why an rtnetlink request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetlinkError {
    /// Opening, sending on or receiving from the netlink socket failed.
    #[error("netlink socket: {op}: {source}")]
    Socket {
        /// What weft was doing.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The object to create exists already.
    #[error("{what} already exists")]
    AlreadyExists {
        /// What was being created, e.g. "link veth0 (or its peer c1eth0 in the target namespace)".
        what: String,
    },
    /// The link named by the request does not exist.
    #[error("no such network device: {what}")]
    NoSuchDevice {
        /// The link looked for, e.g. "ifindex 7".
        what: String,
    },
    /// The address is already configured on the link.
    #[error("address {addr} already exists on ifindex {index}")]
    AddressExists {
        /// The address.
        addr: ipnet::IpNet,
        /// The link.
        index: u32,
    },
    /// The process lacks CAP_NET_ADMIN in this namespace.
    #[error("{op}: permission denied (needs CAP_NET_ADMIN; run as root)")]
    PermissionDenied {
        /// The refused operation.
        op: &'static str,
    },
    /// An argument was rejected before anything was sent.
    #[error("{op}: invalid argument {value:?}: {reason}")]
    InvalidArgument {
        /// The operation.
        op: &'static str,
        /// The rejected value.
        value: String,
        /// Why.
        reason: &'static str,
    },
    /// The kernel refused the request.
    #[error("{op}: {message} (errno {errno})")]
    Kernel {
        /// The operation.
        op: &'static str,
        /// The positive errno.
        errno: i32,
        /// The kernel's extended-ack message when it gave one, else strerror.
        message: String,
    },
    /// A reply could not be decoded.
    #[error("{op}: cannot decode the kernel's reply: {source}")]
    Decode {
        /// The operation.
        op: &'static str,
        /// The decoder's complaint.
        #[source]
        source: netlink_packet_core::DecodeError,
    },
    /// The kernel's reply did not have the expected shape.
    #[error("{op}: unexpected reply: {what}")]
    UnexpectedReply {
        /// The operation.
        op: &'static str,
        /// What was wrong.
        what: &'static str,
    },
    /// Writing a sysctl failed.
    #[error("sysctl {path}: {source}")]
    Sysctl {
        /// The /proc/sys file.
        path: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}
