//! weft: a userspace overlay network for containers.
//!
//! The `weft` binary is a thin `main` over this library, so the end-to-end tests, the
//! benches and the lab drive the same code. The pure cores live in their own crates
//! (`wire`, `learning`, `switch`, `tunnel`, `mesh`, `datapath`); this crate holds
//! everything that touches the operating system, and the wiring between the cores.

pub mod api;
pub mod cli;
pub mod cni;
pub mod daemon;
pub mod dataplane;
pub mod docker;
pub mod home;
pub mod io;
pub mod lab;
pub mod logfile;
pub mod meshd;
pub mod netlink;
pub mod netns;
pub mod pidfile;
pub mod ratelog;
pub mod router;
pub mod secrets;
pub mod state;
pub mod sys;
pub mod testlab;
