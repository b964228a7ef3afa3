//! SIGINT, SIGTERM and SIGHUP become a stop flag, so the harness tears down on its main
//! thread with every guard still in scope instead of dying halfway through a setup.
//!
//! The signals are caught with handlers (signal-hook), not blocked: a blocked mask
//! would be inherited by every child, iperf3 and the weft routers included.

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

static STOP: AtomicBool = AtomicBool::new(false);

/// Why a wait gave up early.
#[derive(Debug, thiserror::Error)]
#[error("interrupted by a signal")]
pub(crate) struct Interrupted;

/// Installs the handlers and the thread that turns signals into the stop flag.
pub(crate) fn install() -> anyhow::Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])
        .context("cannot install handlers for SIGINT/SIGTERM/SIGHUP")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                let name = match sig {
                    SIGINT => "SIGINT",
                    SIGTERM => "SIGTERM",
                    _ => "SIGHUP",
                };
                if STOP.swap(true, Ordering::SeqCst) {
                    eprintln!("throughput: {name} again; still tearing down, please wait");
                } else {
                    eprintln!("throughput: {name}: stopping and tearing everything down");
                }
            }
        })
        .context("cannot start the signal thread")?;
    Ok(())
}

/// Whether a signal asked the harness to stop.
pub(crate) fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// `Err(Interrupted)` once a stop was requested.
pub(crate) fn check() -> Result<(), Interrupted> {
    if stop_requested() {
        Err(Interrupted)
    } else {
        Ok(())
    }
}
