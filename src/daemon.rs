//! The router process: pidfile lock, logging, signals, the API loop, orderly shutdown.

use anyhow::Context as _;

use crate::api::server::ApiServer;
use crate::home::Home;
use crate::router::{Router, RouterOptions};

/// What the router process runs with, besides the router's own options.
#[derive(Debug, Clone)]
pub(crate) struct DaemonOptions {
    /// What to log: a `tracing` filter (`info`, `debug`, `weft::meshd=trace`, ...).
    pub log_filter: String,
    /// Where the Docker plugin it supervises listens; none: no plugin.
    pub docker_plugin: Option<crate::docker::supervise::PluginPaths>,
    /// Where to serve `/metrics` and the read-only status over TCP, if anywhere.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// The router's options.
    pub router: RouterOptions,
}

/// Runs the router until `weft stop`, SIGTERM or SIGINT.
pub(crate) fn run(home: &Home, options: &DaemonOptions) -> anyhow::Result<()> {
    home.ensure()?;
    // Block the stop signals before any thread exists, so every thread inherits the mask
    // and only the signal thread below ever sees them.
    let signals = crate::sys::signal::block_stop_signals().context("cannot block signals")?;

    crate::logfile::init_logging(&options.log_filter, &home.log_file());
    for dir in home.unsafe_dirs() {
        tracing::warn!("{dir}");
    }
    let lock = crate::pidfile::PidLock::acquire(&home.pidfile())?;
    if let Some(previous) = lock.previous() {
        tracing::warn!(
            "previous router (pid {previous}) did not stop cleanly; recovering its state"
        );
    }
    tracing::info!(version = env!("CARGO_PKG_VERSION"), home = %home.state_dir().display(), "weft router starting");

    let mut router = Router::start(home, &options.router).context("router failed to start")?;
    let api = ApiServer::bind(&home.socket(), options.metrics_addr)?;
    if let Some(addr) = api.metrics_addr() {
        tracing::info!(%addr, "serving /metrics and the read-only status over TCP");
    }
    let unblocker = api.unblocker();
    std::thread::Builder::new()
        .name("weft-signals".into())
        .spawn(move || {
            if let Ok(sig) = signals.wait() {
                tracing::info!("received {sig:?}, stopping");
            }
            unblocker.unblock();
        })
        .context("cannot start signal thread")?;
    let docker_plugin = options.docker_plugin.clone().and_then(|paths| {
        crate::docker::supervise::Supervisor::start(home, paths, options.log_filter.clone())
            .map_err(|e| tracing::error!("{e:#}"))
            .ok()
    });
    tracing::info!(socket = %home.socket().display(), "weft router ready");
    api.serve(&mut router);
    if let Some(s) = docker_plugin {
        s.shutdown();
    }
    drop(api);
    router.shutdown();
    tracing::info!("weft router stopped");
    drop(lock);
    Ok(())
}
