//! Each scenario's topology and the measurements run through it.
//!
//! Client container `c1` (198.18.0.1) sends to server container `c2` (198.18.0.2),
//! addresses from the benchmarking range (RFC 2544). Hosts talk over an underlay
//! veth with 198.19.0.x and MTU 1500. Kernel containers get the MTU weft gives its
//! own (underlay − 50) so every path carries the same frames, and no offload is
//! changed anywhere.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;

use crate::cli::{Plan, Scenario};
use crate::lab::{self, Lab, Router};
use crate::measure::{self, Measurement};
use crate::report::Outcome;
use crate::signals;

const CLIENT_CIDR: &str = "198.18.0.1/24";
const SERVER_CIDR: &str = "198.18.0.2/24";
const SERVER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const HOST1_UNDERLAY: (&str, &str) = ("198.19.0.1/24", "198.19.0.1");
const HOST2_UNDERLAY: (&str, &str) = ("198.19.0.2/24", "198.19.0.2");
/// The underlay MTU of the cross-host scenarios.
pub(crate) const UNDERLAY_MTU: u32 = 1500;
/// IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14: what weft and the kernel both take
/// off the underlay MTU (tunnel's one definition of it).
const VXLAN_OVERHEAD: u32 = tunnel::vxlan::OVERHEAD_V4 as u32;
/// The MTU every container gets (weft's default; the kernel's containers are set to it).
pub(crate) const OVERLAY_MTU: u32 = UNDERLAY_MTU - VXLAN_OVERHEAD;
/// VXLAN network identifier (weft's default network uses 1 too).
const VNI: &str = "1";
/// How long a kernel path may take to pass a ping.
const KERNEL_READY: Duration = Duration::from_secs(10);
/// How long weft may take to form its mesh and pass a ping.
const WEFT_READY: Duration = Duration::from_secs(30);

/// A built scenario: where traffic goes from and to, and who carries it.
#[derive(Debug)]
pub(crate) struct Setup {
    /// The namespace iperf3's client runs in.
    pub(crate) client: String,
    /// The namespace iperf3's server runs in.
    pub(crate) server: String,
    /// The server's overlay address.
    pub(crate) server_ip: Ipv4Addr,
    /// The client's interface MTU, as measured.
    pub(crate) mtu: u32,
    /// The weft routers carrying the traffic (for their CPU time).
    pub(crate) routers: Vec<Router>,
}

/// Builds `scenario`, measures it as `plan` says, tears it down.
pub(crate) fn run(seq: usize, scenario: Scenario, plan: &Plan) -> Outcome {
    if scenario.uses_weft() && !Path::new(lab::WEFT).is_file() {
        return Outcome::Failed(format!(
            "no weft binary at {} (cargo bench builds it; did the build fail?)",
            lab::WEFT
        ));
    }
    if scenario == Scenario::CrossWeftEncrypted {
        match lab::weft_supports_password_file(Path::new(lab::WEFT)) {
            Ok(true) => {}
            Ok(false) => {
                return Outcome::Skipped(
                    "`weft launch` has no --password-file yet; this scenario runs as soon \
                         as it does"
                        .into(),
                );
            }
            Err(e) => {
                return Outcome::Failed(format!("cannot ask weft for its options: {e:#}"));
            }
        }
    }
    let result = Lab::new(seq).and_then(|mut lab| {
        let setup = build(&mut lab, scenario)?;
        measure_all(&mut lab, &setup, plan)
        // `lab` drops here: teardown, also when building or measuring failed.
    });
    match result {
        Ok(m) => Outcome::Measured(m),
        Err(e) if e.is::<signals::Interrupted>() || signals::stop_requested() => {
            Outcome::Failed("interrupted".into())
        }
        Err(e) => Outcome::Failed(format!("{e:#}")),
    }
}

fn build(lab: &mut Lab, scenario: Scenario) -> anyhow::Result<Setup> {
    eprintln!("   building the topology");
    let setup = match scenario {
        Scenario::LocalBridge => local_bridge(lab)?,
        Scenario::LocalWeft => local_weft(lab)?,
        Scenario::CrossVxlanKernel => cross_vxlan_kernel(lab)?,
        Scenario::CrossWeft => cross_weft(lab, false)?,
        Scenario::CrossWeftEncrypted => cross_weft(lab, true)?,
    };
    let ready = if scenario.uses_weft() {
        WEFT_READY
    } else {
        KERNEL_READY
    };
    lab.wait_ping(&setup.client, setup.server_ip, ready, || {
        lab.routers_alive()
    })
    .with_context(|| {
        if scenario.uses_weft() {
            "weft's data path never passed a ping (is `weft attach` implemented?)"
        } else {
            "the kernel path never passed a ping"
        }
    })?;
    Ok(setup)
}

fn measure_all(lab: &mut Lab, setup: &Setup, plan: &Plan) -> anyhow::Result<Measurement> {
    let server = measure::IperfServer::start(lab, setup)?;
    let pids: Vec<u32> = setup.routers.iter().filter_map(Router::pid).collect();
    let routers = (!setup.routers.is_empty()).then_some(pids.as_slice());
    let mut m = Measurement {
        mtu: setup.mtu,
        tcp: Vec::new(),
        udp: None,
        weft_path: None,
    };
    for &streams in &plan.streams {
        let run = server.tcp(lab, setup, streams, plan.duration, routers)?;
        eprintln!("   tcp x{streams}: {:.2} Gbit/s", run.bits_per_second / 1e9);
        m.tcp.push(run);
    }
    if let Some(rate) = &plan.udp_bitrate {
        let run = server.udp(lab, setup, rate, plan.duration, routers)?;
        eprintln!(
            "   udp 64 B: {:.0} packets/s received, {:.1}% lost",
            run.received_pps(),
            run.loss_percent()
        );
        m.udp = Some(run);
    }
    if let Some(router) = setup.routers.first() {
        m.weft_path = Some(weft_path(lab, router));
    }
    Ok(m)
}

/// How the router says it carried the traffic (`weft status --json`: each peer's path
/// and the data path's description), read after the runs so a fallback shows.
fn weft_path(lab: &Lab, router: &Router) -> String {
    let status = lab
        .weft(router, &["status", "--json"], Duration::from_secs(10))
        .and_then(|json| Ok(serde_json::from_str::<serde_json::Value>(&json)?));
    let status = match status {
        Ok(status) => status,
        Err(e) => return format!("unknown (weft status: {e:#})"),
    };
    let peers: Vec<&str> = status
        .get("peers")
        .and_then(serde_json::Value::as_array)
        .map(|peers| {
            peers
                .iter()
                .filter_map(|p| p.get("path").and_then(serde_json::Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    let data_path = status
        .get("data_path")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("not reported");
    if peers.is_empty() {
        data_path.to_owned()
    } else {
        format!("peer path {}; {data_path}", peers.join(", "))
    }
}

/// One host, a kernel bridge, two containers.
fn local_bridge(lab: &mut Lab) -> anyhow::Result<Setup> {
    let host = lab.add_ns("h1")?;
    let c1 = lab.add_ns("c1")?;
    let c2 = lab.add_ns("c2")?;
    let br = lab.link_name("br")?;
    lab.ip(&host, &["link", "add", &br, "type", "bridge"])?;
    lab.ip(&host, &["link", "set", &br, "up"])?;
    for (container, port, cidr) in [(&c1, "p1", CLIENT_CIDR), (&c2, "p2", SERVER_CIDR)] {
        let port = lab.link_name(port)?;
        lab.container_veth(&host, &port, container, cidr, OVERLAY_MTU)?;
        lab.ip(&host, &["link", "set", &port, "master", &br])?;
    }
    let mtu = lab.mtu(&c1, "eth0")?;
    Ok(Setup {
        client: c1,
        server: c2,
        server_ip: SERVER_IP,
        mtu,
        routers: Vec::new(),
    })
}

/// One host, one weft router, two attached containers.
fn local_weft(lab: &mut Lab) -> anyhow::Result<Setup> {
    let host = lab.add_ns("h1")?;
    let c1 = lab.add_ns("c1")?;
    let c2 = lab.add_ns("c2")?;
    let router = lab.launch_weft(&host, &[], &[])?;
    lab.attach(&router, &c1, CLIENT_CIDR)?;
    lab.attach(&router, &c2, SERVER_CIDR)?;
    let mtu = lab.mtu(&c1, "weft0")?;
    Ok(Setup {
        client: c1,
        server: c2,
        server_ip: SERVER_IP,
        mtu,
        routers: vec![router],
    })
}

/// Two hosts, each a kernel bridge with a `vxlan` device whose default destination is
/// the other host (`remote`, no learning: the static-fdb setup flannel and Docker's
/// overlay use), dstport 4789.
fn cross_vxlan_kernel(lab: &mut Lab) -> anyhow::Result<Setup> {
    let (h1, h2, c1, c2) = two_hosts(lab)?;
    let underlay = lab.link_name("u")?;
    let br = lab.link_name("br")?;
    let vx = lab.link_name("vx")?;
    let port = lab.link_name("p")?;
    for (host, container, cidr, local, remote) in [
        (&h1, &c1, CLIENT_CIDR, HOST1_UNDERLAY.1, HOST2_UNDERLAY.1),
        (&h2, &c2, SERVER_CIDR, HOST2_UNDERLAY.1, HOST1_UNDERLAY.1),
    ] {
        lab.ip(host, &["link", "add", &br, "type", "bridge"])?;
        lab.ip(host, &["link", "set", &br, "up"])?;
        lab.ip_line(
            host,
            &format!(
                "link add {vx} type vxlan id {VNI} local {local} remote {remote} \
                     dstport 4789 dev {underlay} nolearning"
            ),
        )?;
        lab.ip(host, &["link", "set", &vx, "master", &br])?;
        lab.ip(host, &["link", "set", &vx, "up"])?;
        lab.container_veth(host, &port, container, cidr, OVERLAY_MTU)?;
        lab.ip(host, &["link", "set", &port, "master", &br])?;
    }
    let mtu = lab.mtu(&c1, "eth0")?;
    Ok(Setup {
        client: c1,
        server: c2,
        server_ip: SERVER_IP,
        mtu,
        routers: Vec::new(),
    })
}

/// Two hosts, a weft router on each pointed at the other, a container on each.
/// `encrypted` launches both with the same `--password-file`.
fn cross_weft(lab: &mut Lab, encrypted: bool) -> anyhow::Result<Setup> {
    let (h1, h2, c1, c2) = two_hosts(lab)?;
    let password = lab.tmp_file("password");
    let password_arg = password.to_string_lossy().into_owned();
    let extra: Vec<&str> = if encrypted {
        write_password(&password)?;
        vec!["--password-file", &password_arg]
    } else {
        Vec::new()
    };
    let r1 = lab.launch_weft(&h1, &[HOST2_UNDERLAY.1], &extra)?;
    let r2 = lab.launch_weft(&h2, &[HOST1_UNDERLAY.1], &extra)?;
    lab.attach(&r1, &c1, CLIENT_CIDR)?;
    lab.attach(&r2, &c2, SERVER_CIDR)?;
    let mtu = lab.mtu(&c1, "weft0")?;
    Ok(Setup {
        client: c1,
        server: c2,
        server_ip: SERVER_IP,
        mtu,
        routers: vec![r1, r2],
    })
}

/// Hosts h1, h2 joined by the underlay; containers c1, c2 (not yet connected).
fn two_hosts(lab: &mut Lab) -> anyhow::Result<(String, String, String, String)> {
    let h1 = lab.add_ns("h1")?;
    let h2 = lab.add_ns("h2")?;
    let c1 = lab.add_ns("c1")?;
    let c2 = lab.add_ns("c2")?;
    lab.underlay(
        (&h1, HOST1_UNDERLAY.0),
        (&h2, HOST2_UNDERLAY.0),
        UNDERLAY_MTU,
    )?;
    let h2_ip: Ipv4Addr = HOST2_UNDERLAY.1.parse().context("bad underlay address")?;
    lab.wait_ping(&h1, h2_ip, KERNEL_READY, || Ok(()))
        .context("the underlay between the hosts does not pass a ping")?;
    Ok((h1, h2, c1, c2))
}

/// A password file only root can read, as `--password-file` expects.
fn write_password(path: &Path) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    writeln!(file, "weft-throughput-bench-{}", std::process::id())
        .with_context(|| format!("cannot write {}", path.display()))
}
