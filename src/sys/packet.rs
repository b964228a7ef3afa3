//! AF_PACKET socket addressing: building a `sockaddr_ll` and binding to an ifindex.

use std::io;
use std::mem::size_of;

use socket2::{SockAddr, SockAddrStorage};

/// A `sockaddr_ll` naming interface `ifindex` and the ethertype `protocol`
/// (host order, e.g. `ETH_P_ALL`), as `bind(2)` on a packet socket wants it.
pub(crate) fn link_layer_addr(ifindex: u32, protocol: u16) -> io::Result<SockAddr> {
    let ifindex = libc::c_int::try_from(ifindex)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "ifindex out of range"))?;
    let mut storage = SockAddrStorage::zeroed();
    // SAFETY: `SockAddrStorage` is a zeroed `sockaddr_storage`, larger than and
    // aligned for `sockaddr_ll`, whose all-zero bit pattern is valid.
    let sll = unsafe { storage.view_as::<libc::sockaddr_ll>() };
    sll.sll_family = libc::AF_PACKET as libc::sa_family_t;
    sll.sll_protocol = protocol.to_be();
    sll.sll_ifindex = ifindex;
    // SAFETY: the storage holds a fully initialised `sockaddr_ll` and the length
    // given is exactly its size.
    let addr = unsafe { SockAddr::new(storage, size_of::<libc::sockaddr_ll>() as libc::socklen_t) };
    Ok(addr)
}
