//! Unsafe syscall wrappers: every `unsafe` block of weft lives under this module.
//!
//! Contract: each function here is a small, safe-to-call wrapper around one
//! syscall (or one tightly coupled group of syscalls), takes borrowed file
//! descriptors and Rust slices, and returns `io::Result`. No wrapper keeps raw
//! pointers beyond the syscall it makes, and every `unsafe` block carries a
//! `// SAFETY:` note. The safe layers (`crate::io`, `crate::netlink`,
//! `crate::netns`) never call `libc` functions that need `unsafe` themselves.

pub(crate) mod mmsg;
pub(crate) mod ns;
pub(crate) mod packet;
pub(crate) mod signal;
pub(crate) mod sockopt;
pub(crate) mod tun;

use std::io;

/// Turns a `-1`-on-error libc return value into an `io::Result`, reading `errno`.
fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}
