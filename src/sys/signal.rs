//! Signal dispositions a process sets once, at its start.

use std::io;

/// Lets SIGPIPE end the process quietly, as it ends `cat` or `grep`, for a command whose
/// reader may go away (`weft status --json | head`). Rust ignores SIGPIPE, which turns a
/// closed pipe into a panic in `println!`. Never for the router: it writes to sockets
/// whose peers may vanish, and must not die of it.
pub(crate) fn die_on_broken_pipe() -> io::Result<()> {
    // SAFETY: setting a signal's disposition to SIG_DFL installs no handler, so no
    // async-signal-safety requirement arises; the call only changes kernel state.
    let previous = unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    if previous == libc::SIG_ERR {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
