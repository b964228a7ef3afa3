//! weft: a userspace overlay network for containers.
//!
//! The `weft` binary is a thin `main` over this library, so the end-to-end
//! tests, the benches and the lab can drive the same code. The pure cores live
//! in their own crates (`wire`, `learning`, `switch`, `tunnel`, `mesh`); this
//! crate holds everything that touches the operating system.

pub mod sys;
pub mod io;
pub mod netlink;
pub mod netns;
