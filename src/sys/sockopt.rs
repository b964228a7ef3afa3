//! Integer and struct socket options that `socket2` does not expose
//! (PACKET_*, SO_*BUFFORCE, UDP_GRO, IP_MTU_DISCOVER overrides, SO_MEMINFO).

use std::io;
use std::mem::{MaybeUninit, size_of, size_of_val};
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

/// `SO_MEMINFO` (Linux 4.6+), which the `libc` crate does not define for Linux: 55 in
/// asm-generic and every architecture weft builds for except SPARC.
#[cfg(not(any(target_arch = "sparc", target_arch = "sparc64")))]
const SO_MEMINFO: libc::c_int = 55;
#[cfg(any(target_arch = "sparc", target_arch = "sparc64"))]
const SO_MEMINFO: libc::c_int = 0x0039;
/// Entries `SO_MEMINFO` fills (`SK_MEMINFO_VARS`).
const SK_MEMINFO_VARS: usize = 9;

/// The socket's drop count (`SK_MEMINFO_DROPS` of `SO_MEMINFO`, the kernel's `sk_drops`):
/// packets dropped at this socket since it was made, e.g. with its receive buffer full.
pub(crate) fn socket_drops(fd: BorrowedFd<'_>) -> io::Result<u32> {
    let mut info = [0u32; SK_MEMINFO_VARS];
    let mut len = size_of_val(&info) as libc::socklen_t;
    // SAFETY: `info` is a writable array of `len` bytes of plain integers; the kernel
    // copies at most `len` bytes into it and updates `len`.
    let ret = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_MEMINFO,
            info.as_mut_ptr().cast::<libc::c_void>(),
            &raw mut len,
        )
    };
    cvt(ret)?;
    let filled = len as usize / size_of::<u32>();
    match usize::try_from(libc::SK_MEMINFO_DROPS) {
        Ok(i) if i < filled => Ok(info[i]),
        _ => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "SO_MEMINFO has no drop count on this kernel",
        )),
    }
}
