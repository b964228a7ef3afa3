//! `weft reset`: stop the router if it runs, then remove every link and file weft made.
//!
//! A client verb: it asks a running router to stop through the API, then works from the
//! state file alone, so it also cleans up after a router that crashed.

use anyhow::Context as _;

use super::ResetArgs;
use crate::api::client::Client;
use crate::home::Home;
use crate::netlink::Netlink;
use crate::state::State;

/// Removes everything weft made under `home`. With `force`, errors on single items are
/// reported and skipped instead of stopping the reset.
pub(super) fn run(home: &Home, args: &ResetArgs) -> anyhow::Result<()> {
    // The Docker network first, while the plugin can still answer Docker's delete.
    crate::docker::supervise::remove_docker_network(home);
    reset_router(home, args.force)?;
    crate::docker::supervise::reset(home)
}

/// Stops the router (through its API) and removes its links and files.
fn reset_router(home: &Home, force: bool) -> anyhow::Result<()> {
    if crate::pidfile::running_pid(&home.pidfile())?.is_some() {
        let api = Client::new(&home.socket());
        let _: serde_json::Value = api
            .post("/stop", &serde_json::json!({}))
            .context("cannot stop the router")?;
        crate::pidfile::wait_gone(&home.pidfile(), super::client_verbs::STOP_TIMEOUT)?;
    }
    let state = State::load(&home.state_file())?;
    let mut nl = Netlink::new().context("cannot open netlink")?;
    let mut failures = Vec::new();
    let names = state
        .endpoints
        .iter()
        .map(|e| e.host_ifname.clone())
        .chain(state.exposed.values().map(|x| x.tap.clone()));
    for name in names {
        let result = nl.link_by_name(&name).and_then(|l| match l {
            Some(l) => nl.delete_link(l.index),
            None => Ok(()),
        });
        if let Err(e) = result {
            failures.push(format!("{name}: {e}"));
        }
    }
    if !failures.is_empty() && !force {
        anyhow::bail!(
            "reset could not remove: {} (use --force to remove the state anyway)",
            failures.join("; ")
        );
    }
    for f in &failures {
        eprintln!("weft: warning: {f}");
    }
    for path in [
        home.state_file(),
        home.log_file(),
        home.old_log_file(),
        home.socket(),
        home.pidfile(),
    ] {
        crate::home::remove_if_present(&path)?;
    }
    let _ = std::fs::remove_dir(home.state_dir());
    let _ = std::fs::remove_dir(home.run_dir());
    println!(
        "weft reset: removed {} endpoints, {} host ports",
        state.endpoints.len(),
        state.exposed.len()
    );
    Ok(())
}
