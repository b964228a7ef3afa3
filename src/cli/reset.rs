//! `weft reset`: stop the router and remove everything weft made on this host.

use super::ResetArgs;
use crate::home::Home;

pub(super) fn run(home: &Home, args: &ResetArgs) -> anyhow::Result<()> {
    // The Docker network first, while the plugin can still answer Docker's delete.
    crate::docker::supervise::remove_docker_network(home);
    crate::router::reset(home, args.force)?;
    crate::docker::supervise::reset(home)
}
