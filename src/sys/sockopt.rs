//! Integer and struct socket options that `socket2` does not expose
//! (PACKET_*, SO_*BUFFORCE, UDP_GRO, IP_MTU_DISCOVER overrides).

use std::io;
use std::mem::{MaybeUninit, size_of};
use std::os::fd::{AsRawFd, BorrowedFd};

use super::cvt;

/// Sets an `int`-valued socket option.
pub(crate) fn set_int(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `fd` is a live descriptor for the duration of the call; the value
    // pointer refers to a local `c_int` and the length passed is exactly its size.
    let ret = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&raw const value).cast::<libc::c_void>(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    cvt(ret).map(drop)
}

/// Reads and resets the AF_PACKET receive counters (`PACKET_STATISTICS`):
/// `(packets, drops)` since the previous read.
pub(crate) fn packet_statistics(fd: BorrowedFd<'_>) -> io::Result<(u32, u32)> {
    let mut stats = MaybeUninit::<libc::tpacket_stats>::zeroed();
    let mut len = size_of::<libc::tpacket_stats>() as libc::socklen_t;
    // SAFETY: `stats` is a zeroed, writable `tpacket_stats` and `len` is its size;
    // the kernel copies at most `len` bytes.
    let ret = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            stats.as_mut_ptr().cast::<libc::c_void>(),
            &raw mut len,
        )
    };
    cvt(ret)?;
    // SAFETY: the struct was zero-initialised (a valid value for two `u32`s) and
    // possibly overwritten by the kernel with plain integers.
    let stats = unsafe { stats.assume_init() };
    Ok((stats.tp_packets, stats.tp_drops))
}
