//! The identifiers every table is keyed by.

use std::fmt;

/// One weft network on this host. Frames never cross from one network to another, so every
/// table lookup is scoped by it. The dataplane maps it to a VXLAN VNI.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default)]
pub struct NetworkId(pub u16);

/// One switch port: a container's veth, the host's TAP, or the virtual port of one peer for
/// one network. Ids are assigned by the dataplane; the switch only compares them.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default)]
pub struct PortId(pub u32);

impl fmt::Display for NetworkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "net{}", self.0)
    }
}

impl fmt::Display for PortId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "port{}", self.0)
    }
}
