//! Namespace syscalls that `nix` leaves `unsafe`: asking a namespace file for its
//! type, and entering a namespace between `fork` and `exec`.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use super::cvt;

/// `NS_GET_NSTYPE`: the `CLONE_NEW*` type of the namespace `fd` refers to.
/// Fails with `ENOTTY`/`EINVAL` when `fd` is not a namespace file.
pub(crate) fn namespace_type(fd: BorrowedFd<'_>) -> io::Result<libc::c_int> {
    // SAFETY: NS_GET_NSTYPE takes no argument and touches no user memory.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::NS_GET_NSTYPE) })
}

/// Makes `cmd`'s child call `setns(netns, CLONE_NEWNET)` after `fork` and before
/// `exec`. The descriptor is owned by the hook (and so by `cmd`) and stays open
/// until `cmd` is dropped; it is close-on-exec, so the program never sees it.
pub(crate) fn pre_exec_setns(cmd: &mut Command, netns: OwnedFd) -> &mut Command {
    let hook = move || -> io::Result<()> {
        // SAFETY (of the syscall): `netns` is alive for as long as the hook is.
        cvt(unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) }).map(drop)
    };
    // SAFETY: the hook runs in the forked child before exec and only calls
    // setns(2), which is async-signal-safe; it allocates nothing (errors come
    // from `last_os_error`, a plain integer) and takes no locks.
    unsafe { cmd.pre_exec(hook) }
}
