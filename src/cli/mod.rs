//! The `weft` command line: verbs people know from `weave`, each with `--help`.
//!
//! Every verb but `launch`, `reset`, `lab` and `completions` is a thin client of the
//! running router's local API (see [`crate::api`]).

mod client_verbs;
mod launch;
mod reset;

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use ipnet::IpNet;
use tunnel::Vni;

use crate::home::Home;

/// weft: a userspace overlay network for containers. One router per host switches the
/// containers' Ethernet frames itself and carries them between hosts in VXLAN; no kernel
/// module, bridge or vxlan device needed.
#[derive(Debug, Parser)]
#[command(name = "weft", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    /// Keep all of this router's files (state, API socket, pidfile, log) in DIR, so several
    /// routers can run on one machine, one per network namespace.
    /// [default: /var/lib/weft + /run/weft]
    #[arg(long, global = true, env = "WEFT_HOME", value_name = "DIR")]
    pub(crate) home: Option<PathBuf>,

    /// The verb.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the router in the background (returns once its API answers) and re-attach
    /// the endpoints it had before.
    Launch(LaunchArgs),
    /// Stop the router. Attached containers keep their interfaces; `launch` re-attaches them.
    Stop,
    /// Stop the router and remove every link, TAP device and state file weft made.
    Reset(ResetArgs),
    /// Connect a container's network namespace to a weft network.
    Attach(AttachArgs),
    /// Disconnect a container: remove the interface weft gave it.
    Detach(DetachArgs),
    /// Give this host an address on a weft network (through a TAP device).
    Expose(ExposeArgs),
    /// Take the host's address(es) on a weft network away again.
    Hide(HideArgs),
    /// Show the router's status.
    Status(StatusArgs),
    /// List attached endpoints: target, interface, MAC, addresses, network.
    Ps(PsArgs),
    /// Add peers for the router to connect to (they survive restarts).
    Connect(PeersArgs),
    /// Stop connecting to peers (existing connections stay until they break).
    Forget(PeersArgs),
    /// Manage named networks.
    #[command(subcommand)]
    Network(NetworkCommand),
    /// Serve Docker's network and IPAM plugin protocols (the router starts this when a
    /// Docker daemon is reachable; run it by hand only to debug).
    DockerPlugin(DockerPluginArgs),
    /// Print the router's Prometheus metrics.
    Metrics,
    /// Run a self-contained demonstration lab in network namespaces.
    #[command(subcommand)]
    Lab(LabCommand),
    /// The CNI plugin: install it for kubelet, containerd, Podman or cnitool.
    #[command(subcommand)]
    Cni(CniCommand),
    /// Print a shell completion script.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// `weft launch`.
#[derive(Debug, Clone, Args)]
pub struct LaunchArgs {
    /// Peers to carry traffic to: `host` or `host:port` (addresses or host names).
    #[arg(value_name = "PEER")]
    pub peers: Vec<String>,
    /// Run in the foreground instead of detaching (logs go to stderr).
    #[arg(long)]
    pub foreground: bool,
    /// VXLAN network identifier of the default network (match it to an existing VTEP).
    /// It is saved: a relaunch without --vni keeps it, and a different --vni changes it
    /// (launch says so; peers must change theirs too). [default: the saved VNI, else 1]
    #[arg(long, value_parser = crate::api::codec::parse_vni)]
    pub vni: Option<Vni>,
    /// UDP port for VXLAN, ours and the peers' (unless a peer names its own).
    #[arg(long, default_value_t = tunnel::vxlan::DEFAULT_PORT)]
    pub vxlan_port: u16,
    /// TCP port of the peer mesh control connections.
    #[arg(long, default_value_t = mesh::protocol::DEFAULT_LISTEN_PORT)]
    pub port: u16,
    /// UDP port of the encrypted tunnel (the fallback and relay path).
    #[arg(long, default_value_t = tunnel::crypto::datagram::DEFAULT_PORT)]
    pub tunnel_port: u16,
    /// Overlay MTU given to containers. [default: underlay MTU minus encapsulation overhead]
    #[arg(long, value_parser = clap::value_parser!(u32).range(576..=65000))]
    pub mtu: Option<u32>,
    /// Human-readable name of this router in `status` [default: the host name].
    #[arg(long)]
    pub nickname: Option<String>,
    /// Log filter (error, warn, info, debug, trace, or a tracing directive).
    #[arg(long, default_value = "info", env = "WEFT_LOG")]
    pub log_level: String,
    /// Do not use UDP segmentation offload (for kernels whose UDP GSO is broken).
    #[arg(long)]
    pub no_gso: bool,
    /// Read the mesh password from FILE: only peers that know it can join, and no frame
    /// crosses the underlay in clear except to trusted subnets. `WEFT_PASSWORD` works too.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Underlay subnets whose peers may use cleartext VXLAN even with a password
    /// (comma-separated CIDRs; both sides must trust each other).
    #[arg(long, value_name = "CIDR,...", value_delimiter = ',')]
    pub trusted_subnets: Vec<IpNet>,
    /// Do not connect to peers learned through gossip (only to the ones named).
    #[arg(long)]
    pub no_discovery: bool,
    /// Most control connections this router keeps.
    #[arg(long, default_value_t = 64)]
    pub conn_limit: usize,
    /// Do not start the Docker plugin, nor create the Docker network `weft`, even when a
    /// Docker daemon is reachable (DOCKER_HOST, else /var/run/docker.sock).
    #[arg(long, env = "WEFT_NO_DOCKER_PLUGIN")]
    pub no_docker_plugin: bool,
    /// Where the Docker plugin listens. Docker finds the default by itself; for any other
    /// path weft writes `weft.spec` into --docker-plugin-spec-dir.
    #[arg(long, value_name = "PATH", default_value = crate::docker::DEFAULT_SOCKET)]
    pub docker_plugin_socket: PathBuf,
    /// Where Docker reads plugin spec files.
    #[arg(long, value_name = "DIR", default_value = crate::docker::DEFAULT_SPEC_DIR)]
    pub docker_plugin_spec_dir: PathBuf,
    /// Serve `/metrics` and the read-only status (GET /status, /ping) over TCP on
    /// ADDR:PORT, for Prometheus; '' turns it off. Nothing that changes the router is
    /// served there.
    #[arg(long, value_name = "ADDR:PORT", default_value = crate::api::DEFAULT_METRICS_ADDR, value_parser = parse_metrics_addr)]
    pub metrics_addr: MetricsAddr,
}

impl LaunchArgs {
    /// Where this launch's Docker plugin listens.
    pub fn docker_plugin_paths(&self) -> crate::docker::supervise::PluginPaths {
        crate::docker::supervise::PluginPaths::new(
            self.docker_plugin_socket.clone(),
            &self.docker_plugin_spec_dir,
        )
    }
}

/// `weft docker-plugin`.
#[derive(Debug, Clone, Args)]
pub struct DockerPluginArgs {
    /// The socket to listen on.
    #[arg(long, value_name = "PATH", default_value = crate::docker::DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Where to write `weft.spec` when the socket is not Docker's default one.
    #[arg(long, value_name = "DIR", default_value = crate::docker::DEFAULT_SPEC_DIR)]
    pub spec_dir: PathBuf,
    /// Log filter (error, warn, info, debug, trace, or a tracing directive).
    #[arg(long, default_value = "info", env = "WEFT_LOG")]
    pub log_level: String,
}

/// `--metrics-addr`: an address, or none (`''`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsAddr(pub Option<std::net::SocketAddr>);

fn parse_metrics_addr(text: &str) -> Result<MetricsAddr, String> {
    if text.trim().is_empty() {
        return Ok(MetricsAddr(None));
    }
    text.parse()
        .map(|a| MetricsAddr(Some(a)))
        .map_err(|_| format!("{text:?} is not ADDR:PORT (e.g. 127.0.0.1:6782), nor '' for off"))
}

/// `weft reset`.
#[derive(Debug, Clone, Args)]
pub struct ResetArgs {
    /// Carry on past errors (e.g. a link that is already gone).
    #[arg(long)]
    pub force: bool,
}

/// `weft attach`.
#[derive(Debug, Clone, Args)]
pub struct AttachArgs {
    /// The container: a netns name (as `ip netns list` shows), a pid, or a netns path.
    pub target: String,
    /// An address for the container's interface, in CIDR notation (repeatable).
    #[arg(long = "ip", value_name = "CIDR")]
    pub ips: Vec<IpNet>,
    /// The weft network to join.
    #[arg(long, default_value = "default")]
    pub network: String,
    /// Name of the interface inside the container.
    #[arg(long, default_value = "weft0")]
    pub ifname: String,
    /// MTU of the container's interface [default: the overlay MTU].
    #[arg(long, value_parser = clap::value_parser!(u32).range(576..=65000))]
    pub mtu: Option<u32>,
    /// MAC of the container's interface [default: random, locally administered].
    #[arg(long)]
    pub mac: Option<wire::Mac>,
}

/// `weft detach`.
#[derive(Debug, Clone, Args)]
pub struct DetachArgs {
    /// The container, as given to `attach`.
    pub target: String,
    /// Only detach from this network [default: all of the container's weft interfaces].
    #[arg(long)]
    pub network: Option<String>,
}

/// `weft expose`.
#[derive(Debug, Clone, Args)]
pub struct ExposeArgs {
    /// The host's address on the network, in CIDR notation.
    pub cidr: IpNet,
    /// The weft network.
    #[arg(long, default_value = "default")]
    pub network: String,
}

/// `weft hide`.
#[derive(Debug, Clone, Args)]
pub struct HideArgs {
    /// The address to remove [default: all, and the host port with them].
    pub cidr: Option<IpNet>,
    /// The weft network.
    #[arg(long, default_value = "default")]
    pub network: String,
}

/// `weft status`.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Print the full report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Show only one part.
    #[arg(value_enum)]
    pub part: Option<StatusPart>,
}

/// The parts of `weft status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StatusPart {
    /// Peers and their data paths.
    Peers,
    /// Control connections: state, direction, data path, last error.
    Connections,
    /// Addresses the router dials, and how that goes.
    Targets,
    /// Networks and their VNIs.
    Networks,
    /// Ports and their counters.
    Ports,
    /// Drop counters by reason.
    Drops,
}

/// `weft ps`.
#[derive(Debug, Clone, Args)]
pub struct PsArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `weft connect` / `weft forget`.
#[derive(Debug, Clone, Args)]
pub struct PeersArgs {
    /// `host` or `host:port`.
    #[arg(required = true, value_name = "PEER")]
    pub peers: Vec<String>,
}

/// `weft network ...`.
#[derive(Debug, Clone, Subcommand)]
pub enum NetworkCommand {
    /// Declare a named network with a chosen VNI (otherwise one is derived from its name).
    Add {
        /// The network's name.
        name: String,
        /// Its VXLAN network identifier.
        #[arg(long, value_parser = crate::api::codec::parse_vni)]
        vni: Option<Vni>,
    },
    /// List networks and their VNIs.
    Ls,
    /// Remove a named network that has no endpoints.
    Rm {
        /// The network's name.
        name: String,
    },
}

/// `weft cni ...`.
#[derive(Debug, Clone, Subcommand)]
pub enum CniCommand {
    /// Copy this binary to BIN-DIR/weft-cni and write a conflist (weft, then portmap) to
    /// CONF-DIR, both atomically. Runtimes then run weft-cni for the network NAME.
    Install(CniInstallArgs),
}

/// `weft cni install`.
#[derive(Debug, Clone, Args)]
pub struct CniInstallArgs {
    /// Where runtimes look for plugins: /opt/cni/bin (kubelet, containerd, CRI-O) or
    /// /usr/lib/cni (Debian's Podman and containernetworking-plugins).
    #[arg(long, default_value = "/opt/cni/bin", value_name = "DIR")]
    pub bin_dir: PathBuf,
    /// Where runtimes read network configurations.
    #[arg(long, default_value = "/etc/cni/net.d", value_name = "DIR")]
    pub conf_dir: PathBuf,
    /// The conflist's file name (runtimes that take the first file sort by name)
    /// [default: 10-NAME.conflist].
    #[arg(long)]
    pub file: Option<String>,
    /// The CNI network name.
    #[arg(long, default_value = "weft")]
    pub name: String,
    /// The spec version of the conflist (1.0.0 is read by libcni 1.1 and later).
    #[arg(long, default_value = "1.0.0")]
    pub cni_version: String,
    /// The router's API socket [default: the plugin's default, /run/weft/weft.sock].
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// The weft network containers join [default: default].
    #[arg(long)]
    pub network: Option<String>,
    /// The subnet weft's IPAM allocates from [default: the router's default subnet].
    #[arg(long, value_name = "CIDR")]
    pub subnet: Option<IpNet>,
    /// The containers' MTU [default: the router's overlay MTU].
    #[arg(long, value_parser = clap::value_parser!(u32).range(576..=65000))]
    pub mtu: Option<u32>,
    /// The containers' default gateway: an address, or "host" for this host's
    /// `weft expose` address on the network.
    #[arg(long)]
    pub gateway: Option<String>,
    /// Do not chain the reference portmap plugin (host ports).
    #[arg(long)]
    pub no_portmap: bool,
}

/// `weft lab ...`.
#[derive(Debug, Clone, Subcommand)]
pub enum LabCommand {
    /// Build two hosts with containers in network namespaces, connect them with weft, show
    /// them talking, print status, and clean everything up.
    Demo(LabDemoArgs),
}

/// `weft lab demo`.
#[derive(Debug, Clone, Args)]
pub struct LabDemoArgs {
    /// Leave the lab running (and print how to clean it up) instead of tearing it down.
    #[arg(long)]
    pub keep: bool,
}

fn cni_install(args: &CniInstallArgs) -> anyhow::Result<()> {
    if let Some(g) = &args.gateway {
        anyhow::ensure!(
            ::cni::valid_gateway(g),
            "--gateway {g:?} must be an IP address or \"host\""
        );
    }
    let spec = ::cni::ConflistSpec {
        name: args.name.clone(),
        cni_version: args
            .cni_version
            .parse()
            .map_err(|e: ::cni::CniError| anyhow::anyhow!("--cni-version: {}", e.details))?,
        plugin_type: crate::cni::PLUGIN_NAME.to_string(),
        socket: args.socket.clone(),
        network: args.network.clone(),
        subnet: args.subnet,
        mtu: args.mtu,
        gateway: args.gateway.clone(),
        portmap: !args.no_portmap,
    };
    let exe = std::env::current_exe().context("cannot find this weft binary")?;
    let file = args
        .file
        .clone()
        .unwrap_or_else(|| format!("10-{}.conflist", args.name));
    let done = crate::cni::install::install(&exe, &args.bin_dir, &args.conf_dir, &file, &spec)?;
    println!("installed {}", done.binary.display());
    println!("installed {}", done.conflist.display());
    Ok(())
}

/// Runs the command line; the binary's `main` maps the error to exit status 1.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let home = Home::new(cli.home.as_deref());
    // A client verb whose reader goes away (`weft status --json | head`) ends quietly;
    // the servers (the router, `launch --foreground`, and the Docker plugin) keep
    // ignoring SIGPIPE: their sockets' peers vanish, and that must not end them.
    let server = matches!(&cli.command, Command::Launch(a) if a.foreground)
        || matches!(&cli.command, Command::DockerPlugin(_));
    if !server {
        crate::sys::signal::die_on_broken_pipe()?;
    }
    match cli.command {
        Command::Launch(args) => launch::run(&home, args),
        Command::Reset(args) => reset::run(&home, &args),
        Command::DockerPlugin(args) => crate::docker::serve::run(
            &home,
            &crate::docker::supervise::PluginPaths::new(args.socket, &args.spec_dir),
            &args.log_level,
        ),
        Command::Lab(LabCommand::Demo(args)) => crate::lab::demo(args.keep),
        Command::Cni(CniCommand::Install(args)) => cni_install(&args),
        Command::Completions { shell } => {
            use clap::CommandFactory as _;
            clap_complete::generate(shell, &mut Cli::command(), "weft", &mut std::io::stdout());
            Ok(())
        }
        other => client_verbs::run(&home, other),
    }
}
