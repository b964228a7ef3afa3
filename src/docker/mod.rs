//! The Docker network and IPAM plugin: `docker run --net weft` on every host.
//!
//! A `weft docker-plugin` process speaks libnetwork's remote NetworkDriver and IpamDriver
//! protocols on a unix socket Docker discovers (`/run/docker/plugins/weft.sock`, or any
//! socket named by a spec file in `/etc/docker/plugins/weft.spec`), and turns each call
//! into calls of the router's API: it is a client, like the CLI, and never attaches or
//! allocates itself. It is its own process so a slow call (an allocation waiting for the
//! mesh) never blocks the router's API thread, and so it answers Docker with weft's
//! message when the router is down. The router starts it when a Docker daemon is
//! reachable and starts it again if it dies (see [`supervise`]); `weft launch` then
//! creates the Docker network `weft`.
//!
//! - [`protocol`]: the protocol's calls and answers as checked types.
//! - [`driver`]: what each call does (pure of sockets: tested with fakes).
//! - [`http`]: bounded HTTP/1.1, one request per connection.
//! - [`engine`]: the few calls weft makes to dockerd.
//! - [`serve`]: the process: socket, spec file, threads, the real clients.
//! - [`supervise`]: starting, finding and stopping the process.

pub(crate) mod driver;
pub mod engine;
pub mod http;
pub mod protocol;
pub(crate) mod serve;
pub(crate) mod supervise;

/// The driver's name in Docker (`-d weft`, `--ipam-driver weft`).
pub const DRIVER_NAME: &str = "weft";
/// Where Docker looks for plugin sockets (its name is the driver's).
pub const DEFAULT_SOCKET: &str = "/run/docker/plugins/weft.sock";
/// Where Docker looks for plugin spec files; weft writes `weft.spec` there when its
/// socket is anywhere but [`DEFAULT_SOCKET`].
pub const DEFAULT_SPEC_DIR: &str = "/etc/docker/plugins";
