//! `weft reset`: stop the router and remove everything weft made on this host.

use super::ResetArgs;
use crate::home::Home;

pub(super) fn run(home: &Home, args: &ResetArgs) -> anyhow::Result<()> {
    crate::router::reset(home, args.force)
}
