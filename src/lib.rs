//! weft: a userspace overlay network for containers.
//!
//! The `weft` binary is a thin `main` over this library, so the end-to-end tests, the
//! benches and the lab drive the same code. The pure cores live in their own crates
//! (`wire`, `learning`, `switch`, `tunnel`, `mesh`, `datapath`); this crate holds
//! everything that touches the operating system, and the wiring between the cores.
//!
//! Only what the binary, the tests, the benches and the fuzz targets use is public;
//! the rest is `pub(crate)`, so rustc reports what nothing uses.

pub mod api;
pub mod cli;
pub mod cni;
pub(crate) mod daemon;
pub mod dataplane;
pub mod docker;
pub(crate) mod home;
pub mod io;
pub mod lab;
pub(crate) mod logfile;
pub mod meshd;
pub mod netlink;
pub mod netns;
pub mod pidfile;
pub(crate) mod ratelog;
pub(crate) mod router;
pub(crate) mod secrets;
pub(crate) mod state;
pub(crate) mod sys;
pub mod testlab;
