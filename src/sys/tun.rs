//! TUN/TAP character-device ioctls: attach a TAP by name, vnet header size,
//! offloads, persistence.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::cvt;

/// Longest interface name the kernel accepts (IFNAMSIZ minus the NUL).
pub(crate) const IFNAME_MAX: usize = libc::IFNAMSIZ - 1;

/// `TUNSETIFF`: attaches the open `/dev/net/tun` descriptor to the device `name`
/// (creating it if missing) with `flags` (`IFF_TAP | IFF_NO_PI | ...`). Returns
/// the name the kernel settled on.
pub(crate) fn set_iff(fd: BorrowedFd<'_>, name: &str, flags: libc::c_int) -> io::Result<String> {
    let mut req = empty_ifreq();
    if name.len() > IFNAME_MAX || name.as_bytes().contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "interface name too long or contains NUL",
        ));
    }
    for (dst, src) in req.ifr_name.iter_mut().zip(name.as_bytes()) {
        *dst = *src as libc::c_char;
    }
    req.ifr_ifru.ifru_flags = flags as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes one `ifreq`, which `req` is; the name is
    // NUL-terminated because the array was zeroed and at most IFNAME_MAX bytes copied.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &raw mut req) })?;
    let bytes: Vec<u8> = req
        .ifr_name
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8)
        .collect();
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// `TUNSETVNETHDRSZ`: the size of the virtio-net header prefixed to every frame.
pub(crate) fn set_vnet_hdr_size(fd: BorrowedFd<'_>, size: libc::c_int) -> io::Result<()> {
    // SAFETY: TUNSETVNETHDRSZ reads one `int` through the pointer, a valid local.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETVNETHDRSZ, &raw const size) }).map(drop)
}

/// `TUNSETOFFLOAD`: which `TUN_F_*` offloads the device may hand us (device-wide).
pub(crate) fn set_offload(fd: BorrowedFd<'_>, flags: libc::c_uint) -> io::Result<()> {
    // SAFETY: TUNSETOFFLOAD takes its argument by value, no memory is touched.
    cvt(unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TUNSETOFFLOAD,
            libc::c_ulong::from(flags),
        )
    })
    .map(drop)
}

/// `TUNSETPERSIST`: whether the device outlives the last descriptor attached to it.
pub(crate) fn set_persist(fd: BorrowedFd<'_>, persist: bool) -> io::Result<()> {
    let arg = libc::c_ulong::from(persist);
    // SAFETY: TUNSETPERSIST takes its argument by value, no memory is touched.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETPERSIST, arg) }).map(drop)
}

fn empty_ifreq() -> libc::ifreq {
    // SAFETY: `ifreq` is a byte array plus a union of integers/arrays/pointers;
    // the all-zero bit pattern is a valid value for every member.
    unsafe { std::mem::zeroed() }
}
