//! Signal dispositions a process sets once, at its start.

use std::io;

use nix::sys::signal::{SigSet, Signal};

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

/// Blocks SIGTERM, SIGINT and SIGHUP in the calling thread (and so in the threads and
/// children it starts later) and returns the set, for one thread to `wait` on: the way to
/// turn "stop" into an orderly shutdown rather than a death that skips every cleanup.
pub(crate) fn block_stop_signals() -> io::Result<SigSet> {
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGHUP);
    signals.thread_block().map_err(io::Error::from)?;
    Ok(signals)
}
