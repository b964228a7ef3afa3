//! `recvmmsg`/`sendmmsg` over fixed-size stack arrays: many frames per syscall,
//! no heap allocation per call.
//!
//! The `mmsghdr`/`iovec` arrays are rebuilt on the stack for every call (about
//! 6 KiB for a full batch), because they hold raw pointers into the caller's
//! buffers and so cannot safely outlive one syscall.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr;

use socket2::SockAddr;

use wire::VnetFrame;

/// Most messages handed to one `recvmmsg`/`sendmmsg` call.
pub(crate) const MAX_BATCH: usize = 64;

const EMPTY_IOVEC: libc::iovec = libc::iovec {
    iov_base: ptr::null_mut(),
    iov_len: 0,
};

/// All-zero `mmsghdr` array: null name, no iovecs, no control data.
fn zeroed_headers() -> [libc::mmsghdr; MAX_BATCH] {
    // SAFETY: `mmsghdr` consists of integers and raw pointers only; the all-zero
    // bit pattern is a valid value (null pointers, zero lengths).
    unsafe { std::mem::zeroed() }
}

/// Receives up to `min(lens.len(), truncated.len(), storage.len() / slot_len, MAX_BATCH)`
/// messages without blocking, message `i` into `storage[i * slot_len..][..slot_len]`.
/// Sets `lens[i]` to the bytes stored and `truncated[i]` when the message was larger
/// than its slot. Returns how many messages arrived; `WouldBlock` when none.
pub(crate) fn recv_into_slots(
    fd: BorrowedFd<'_>,
    storage: &mut [u8],
    slot_len: usize,
    lens: &mut [usize],
    truncated: &mut [bool],
) -> io::Result<usize> {
    if slot_len == 0 {
        return Ok(0);
    }
    let mut iovecs = [EMPTY_IOVEC; MAX_BATCH];
    let mut headers = zeroed_headers();
    let mut count = 0;
    for ((slot, iov), hdr) in storage
        .chunks_exact_mut(slot_len)
        .zip(iovecs.iter_mut())
        .zip(headers.iter_mut())
        .take(lens.len().min(truncated.len()))
    {
        iov.iov_base = slot.as_mut_ptr().cast::<libc::c_void>();
        iov.iov_len = slot.len();
        hdr.msg_hdr.msg_iov = iov;
        hdr.msg_hdr.msg_iovlen = 1;
        count += 1;
    }
    if count == 0 {
        return Ok(0);
    }
    // SAFETY: the first `count` headers each point at one iovec that points into a
    // distinct, exclusively borrowed chunk of `storage` of exactly `iov_len` bytes;
    // all of them live until the call returns. A null timeout means "no timeout".
    let ret = unsafe {
        libc::recvmmsg(
            fd.as_raw_fd(),
            headers.as_mut_ptr(),
            count as libc::c_uint,
            libc::MSG_DONTWAIT,
            ptr::null_mut(),
        )
    };
    let received = usize::try_from(ret).map_err(|_| io::Error::last_os_error())?;
    for ((hdr, len), trunc) in headers
        .iter()
        .zip(lens.iter_mut())
        .zip(truncated.iter_mut())
        .take(received)
    {
        *len = (hdr.msg_len as usize).min(slot_len);
        *trunc = hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
    }
    Ok(received)
}

/// Sends up to `MAX_BATCH` frames, each as one message of two iovecs (vnet header,
/// frame), on a bound socket without blocking. Returns how many messages the kernel
/// took; an error means the first message failed.
pub(crate) fn send_frames(fd: BorrowedFd<'_>, frames: &[VnetFrame<'_>]) -> io::Result<usize> {
    let mut iovecs = [EMPTY_IOVEC; 2 * MAX_BATCH];
    let mut headers = zeroed_headers();
    let mut count = 0;
    for ((frame, pair), hdr) in frames
        .iter()
        .zip(iovecs.chunks_exact_mut(2))
        .zip(headers.iter_mut())
    {
        if let [vnet_iov, frame_iov] = pair {
            // The kernel never writes through an iovec passed to sendmmsg, so the
            // const-to-mut cast does not create a write path to shared data.
            vnet_iov.iov_base = frame.vnet.as_ptr().cast_mut().cast::<libc::c_void>();
            vnet_iov.iov_len = frame.vnet.len();
            frame_iov.iov_base = frame.frame.as_ptr().cast_mut().cast::<libc::c_void>();
            frame_iov.iov_len = frame.frame.len();
        }
        hdr.msg_hdr.msg_iov = pair.as_mut_ptr();
        hdr.msg_hdr.msg_iovlen = 2;
        count += 1;
    }
    if count == 0 {
        return Ok(0);
    }
    // SAFETY: the first `count` headers each point at two iovecs describing
    // borrowed slices of `frames` that outlive the call; sendmmsg only reads them.
    let ret = unsafe {
        libc::sendmmsg(
            fd.as_raw_fd(),
            headers.as_mut_ptr(),
            count as libc::c_uint,
            libc::MSG_DONTWAIT,
        )
    };
    usize::try_from(ret).map_err(|_| io::Error::last_os_error())
}

/// Sends up to `MAX_BATCH` datagrams, each `(destination, payload)`, in one
/// `sendmmsg` without blocking. Returns how many the kernel took; an error means
/// the first one failed.
pub(crate) fn send_datagrams(fd: BorrowedFd<'_>, msgs: &[(&SockAddr, &[u8])]) -> io::Result<usize> {
    let mut iovecs = [EMPTY_IOVEC; MAX_BATCH];
    let mut headers = zeroed_headers();
    let mut count = 0;
    for ((&(dest, payload), iov), hdr) in msgs.iter().zip(iovecs.iter_mut()).zip(headers.iter_mut())
    {
        iov.iov_base = payload.as_ptr().cast_mut().cast::<libc::c_void>();
        iov.iov_len = payload.len();
        hdr.msg_hdr.msg_iov = iov;
        hdr.msg_hdr.msg_iovlen = 1;
        hdr.msg_hdr.msg_name = dest.as_ptr().cast_mut().cast::<libc::c_void>();
        hdr.msg_hdr.msg_namelen = dest.len();
        count += 1;
    }
    if count == 0 {
        return Ok(0);
    }
    // SAFETY: every header points at one iovec over a borrowed payload of `msgs` and
    // at its borrowed destination address; all outlive the call, and sendmmsg only
    // reads them.
    let ret = unsafe {
        libc::sendmmsg(
            fd.as_raw_fd(),
            headers.as_mut_ptr(),
            count as libc::c_uint,
            libc::MSG_DONTWAIT,
        )
    };
    usize::try_from(ret).map_err(|_| io::Error::last_os_error())
}
