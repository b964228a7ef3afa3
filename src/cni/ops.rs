//! ADD, DEL, CHECK, STATUS and GC against the local router's API.
//!
//! Attaching and allocating are the router's: the plugin asks `/attach` (with the
//! attachment's owner, so a repeated ADD answers the same endpoint) and `/detach` by
//! owner (so a repeated DEL succeeds). What the plugin does itself is what CNI adds on
//! top: running a delegated IPAM plugin, installing routes, and writing the result.

use std::net::IpAddr;
use std::path::Path;

use cni::{
    CniError, CniResult, ErrorCode, Interface, Invocation, IpConfig, NetConf, ResultRoute,
    WeftGateway,
};
use ipnet::IpNet;

use super::delegate::Delegate;
use super::netns_ops;
use crate::api::client::{Client, ClientError};
use crate::api::report::StatusReport;
use crate::api::{AttachRequest, DetachRequest, Endpoint};

/// One invocation: its parameters, its configuration (checked and raw) and the router.
#[derive(Debug)]
pub(super) struct Call<'a> {
    pub(super) inv: &'a Invocation,
    pub(super) conf: &'a NetConf,
    /// The configuration exactly as read, for delegates (the spec: the same input).
    pub(super) raw: &'a [u8],
    pub(super) client: Client,
}

/// Where the container's addresses come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Addresses {
    /// Given: by a delegated IPAM plugin, `runtimeConfig.ips` or `CNI_ARGS` `IP=`.
    Explicit(Vec<IpNet>),
    /// weft's IPAM allocates, from `subnet` or the router's default subnet.
    Allocate(Option<IpNet>),
}

fn router_error(e: ClientError) -> CniError {
    match e {
        ClientError::NotRunning(path) => CniError::new(
            ErrorCode::TryAgainLater,
            format!("weft router not running at {}", path.display()),
            format!(
                "nothing answers on {}: start it with `weft launch` (or point \"socket\" in the network configuration at the router's weft.sock)",
                path.display()
            ),
        ),
        ClientError::Refused(message) => CniError::new(
            ErrorCode::RouterFailed,
            "the weft router refused the request",
            message,
        ),
        other @ ClientError::Protocol { .. } => CniError::new(
            ErrorCode::TryAgainLater,
            "cannot talk to the weft router",
            other.to_string(),
        ),
    }
}

/// The (container id, interface) every attachment verb needs; the invocation checked
/// they are present for ADD, DEL and CHECK.
fn ids(inv: &Invocation) -> Result<(&str, &str), CniError> {
    match (inv.container_id.as_deref(), inv.ifname.as_deref()) {
        (Some(c), Some(i)) => Ok((c, i)),
        _ => Err(CniError::new(
            ErrorCode::InvalidEnvironment,
            "invalid environment variables",
            "CNI_CONTAINERID and CNI_IFNAME are required",
        )),
    }
}

fn netns(inv: &Invocation) -> Result<&Path, CniError> {
    inv.netns.as_deref().ok_or_else(|| {
        CniError::new(
            ErrorCode::InvalidEnvironment,
            "invalid environment variable CNI_NETNS",
            "CNI_NETNS is not set",
        )
    })
}

/// The addresses a configuration without a delegated IPAM plugin asks for.
pub(super) fn requested_addresses(inv: &Invocation, conf: &NetConf) -> Result<Addresses, CniError> {
    if !conf.runtime_ips.is_empty() {
        return Ok(Addresses::Explicit(conf.runtime_ips.clone()));
    }
    let Some(arg) = inv.arg("IP") else {
        return Ok(Addresses::Allocate(conf.subnet));
    };
    let mut ips = Vec::new();
    for item in arg.split(',').filter(|s| !s.is_empty()) {
        let net = if item.contains('/') {
            item.parse::<IpNet>().ok()
        } else {
            item.parse::<IpAddr>()
                .ok()
                .zip(conf.subnet)
                .and_then(|(ip, s)| IpNet::new(ip, s.prefix_len()).ok())
        };
        let net = net.ok_or_else(|| {
            CniError::new(
                ErrorCode::InvalidEnvironment,
                "invalid environment variable CNI_ARGS",
                format!(
                    "CNI_ARGS has IP={item}: give IP/PREFIX, or an address inside the configuration's \"subnet\""
                ),
            )
        })?;
        ips.push(net);
    }
    Ok(Addresses::Explicit(ips))
}

impl Call<'_> {
    fn endpoints(&self) -> Result<Vec<Endpoint>, CniError> {
        self.client.get("/ps").map_err(router_error)
    }

    fn endpoint_of(&self, owner: &str) -> Result<Option<Endpoint>, CniError> {
        Ok(self
            .endpoints()?
            .into_iter()
            .find(|e| e.owner.as_deref() == Some(owner)))
    }

    fn detach(&self, owner: &str) -> Result<(), CniError> {
        let req = DetachRequest {
            target: String::new(),
            owner: Some(owner.to_string()),
            network: None,
        };
        self.client
            .post::<_, Vec<Endpoint>>("/detach", &req)
            .map(drop)
            .map_err(router_error)
    }

    fn attach(
        &self,
        netns: &Path,
        ifname: &str,
        owner: &str,
        addresses: &Addresses,
    ) -> Result<Endpoint, CniError> {
        let req = AttachRequest {
            target: netns.to_string_lossy().into_owned(),
            ips: match addresses {
                Addresses::Explicit(ips) => ips.clone(),
                Addresses::Allocate(_) => Vec::new(),
            },
            network: self.conf.network.clone(),
            ifname: Some(ifname.to_string()),
            mtu: self.conf.mtu,
            mac: self
                .conf
                .runtime_mac
                .as_deref()
                .map(|m| {
                    m.parse::<wire::Mac>().map_err(|e| {
                        CniError::new(
                            ErrorCode::InvalidConfig,
                            "invalid runtimeConfig.mac",
                            e.to_string(),
                        )
                    })
                })
                .transpose()?,
            owner: Some(owner.to_string()),
            handover: false,
        };
        let mut body = serde_json::to_value(&req).map_err(|e| {
            CniError::new(
                ErrorCode::IoFailure,
                "cannot encode the attach request",
                e.to_string(),
            )
        })?;
        // weft's IPAM: an empty `ips` allocates from the default subnet, `net:CIDR` from
        // that subnet (docs/API.md).
        if let Addresses::Allocate(Some(subnet)) = addresses {
            body["ips"] = serde_json::json!([format!("net:{subnet}")]);
        }
        self.client.post("/attach", &body).map_err(router_error)
    }

    fn delegate(&self) -> Result<Option<Delegate>, CniError> {
        self.conf
            .ipam_type
            .as_deref()
            .map(|t| Delegate::find(t, self.inv))
            .transpose()
    }

    /// ADD: attach (or find the attachment made before), add routes, answer the result.
    pub(super) fn add(&self) -> Result<CniResult, CniError> {
        let (cid, ifname) = ids(self.inv)?;
        let netns = netns(self.inv)?;
        netns_ops::require_netns(netns)?;
        let owner = cni::owner(&self.conf.name, cid, ifname);
        if let Some(ep) = self.endpoint_of(&owner)? {
            // A repeated ADD: the same endpoint, no second address, no IPAM call.
            let plan = self.route_plan(&ep, None)?;
            return Ok(self.result(&ep, netns, &plan, None));
        }
        let delegate = self.delegate()?;
        let ipam = delegate.as_ref().map(|d| d.add(self.raw)).transpose()?;
        let undo_ipam = || {
            if let Some(d) = &delegate
                && let Err(e) = d.run("DEL", self.raw, &[])
            {
                eprintln!("weft-cni: releasing the IPAM address after a failed ADD: {e}");
            }
        };
        let addresses = match &ipam {
            Some(r) => Addresses::Explicit(r.ips.iter().map(|i| i.address).collect()),
            None => requested_addresses(self.inv, self.conf)?,
        };
        let ep = match self.attach(netns, ifname, &owner, &addresses) {
            Ok(ep) => ep,
            Err(e) => {
                undo_ipam();
                return Err(e);
            }
        };
        let routes = self.route_plan(&ep, ipam.as_ref()).and_then(|plan| {
            let pairs: Vec<_> = plan.routes.iter().map(|r| (r.dst, r.gw)).collect();
            netns_ops::add_routes(netns, ifname, &pairs).map(|()| plan)
        });
        match routes {
            Ok(plan) => Ok(self.result(&ep, netns, &plan, ipam.as_ref())),
            Err(e) => {
                if let Err(d) = self.detach(&owner) {
                    eprintln!("weft-cni: detaching after a failed ADD: {d}");
                }
                undo_ipam();
                Err(e)
            }
        }
    }

    /// DEL: detach by owner (nothing attached is success) and release delegated IPAM.
    pub(super) fn del(&self) -> Result<(), CniError> {
        let (cid, ifname) = ids(self.inv)?;
        self.detach(&cni::owner(&self.conf.name, cid, ifname))?;
        if let Some(d) = self.delegate()? {
            d.run("DEL", self.raw, &[])?;
        }
        Ok(())
    }

    /// CHECK: the router still has the endpoint, and the interface, its addresses and
    /// the result's routes are in the container as `prevResult` says.
    pub(super) fn check(&self) -> Result<(), CniError> {
        let (cid, ifname) = ids(self.inv)?;
        let netns = netns(self.inv)?;
        if !self.conf.cni_version.has_check() {
            return Err(CniError::new(
                ErrorCode::IncompatibleVersion,
                "CHECK is not part of this cniVersion",
                format!(
                    "cniVersion {} has no CHECK (0.4.0 and later do)",
                    self.conf.cni_version
                ),
            ));
        }
        let prev = self.conf.prev_result.as_ref().ok_or_else(|| {
            CniError::new(
                ErrorCode::InvalidConfig,
                "CHECK needs prevResult",
                "the configuration has no \"prevResult\" (the result of the ADD being checked)",
            )
        })?;
        let owner = cni::owner(&self.conf.name, cid, ifname);
        let failed = |msg: String| CniError::new(ErrorCode::CheckFailed, "CHECK failed", msg);
        let ep = self
            .endpoint_of(&owner)?
            .ok_or_else(|| failed(format!("the weft router has no endpoint for {owner}")))?;
        netns_ops::require_netns(netns)?;
        let seen = netns_ops::inspect(netns, ifname)?
            .ok_or_else(|| failed(format!("no interface {ifname} in {}", netns.display())))?;
        if !seen.up {
            return Err(failed(format!("{ifname} is down")));
        }
        let index = prev
            .interfaces
            .iter()
            .position(|i| i.name == ifname && i.sandbox.is_some())
            .ok_or_else(|| {
                failed(format!(
                    "prevResult lists no interface {ifname} in a sandbox"
                ))
            })?;
        let expected = &prev.interfaces[index];
        if let Some(mac) = &expected.mac
            && !mac.eq_ignore_ascii_case(&seen.mac)
        {
            return Err(failed(format!(
                "{ifname} has MAC {}, prevResult says {mac}",
                seen.mac
            )));
        }
        if !ep.mac.to_string().eq_ignore_ascii_case(&seen.mac) {
            return Err(failed(format!(
                "{ifname} has MAC {}, the weft router attached {}",
                seen.mac, ep.mac
            )));
        }
        for ip in prev.ips.iter().filter(|i| i.interface == Some(index)) {
            if !seen.addrs.contains(&ip.address) {
                return Err(failed(format!("{ifname} lacks address {}", ip.address)));
            }
        }
        for r in &prev.routes {
            let present = seen
                .routes
                .iter()
                .any(|s| s.dst == r.dst.trunc() && (r.gw.is_none() || s.gw == r.gw));
            if !present {
                return Err(failed(format!(
                    "route to {}{} is missing",
                    r.dst,
                    r.gw.map(|g| format!(" via {g}")).unwrap_or_default()
                )));
            }
        }
        if let Some(d) = self.delegate()? {
            d.run("CHECK", self.raw, &[])?;
        }
        Ok(())
    }

    /// STATUS: the router answers (else 50), and so does a delegate that knows STATUS.
    pub(super) fn status(&self) -> Result<(), CniError> {
        self.client.get::<serde_json::Value>("/ping").map_err(|e| {
            let e = router_error(e);
            CniError::new(ErrorCode::NotAvailable, e.msg, e.details)
        })?;
        if let Some(d) = self.delegate()?
            && d.speaks(cni::CniVersion::V1_1_0)
        {
            d.run("STATUS", self.raw, &[])?;
        }
        Ok(())
    }

    /// GC: detach this network's attachments that are not in `cni.dev/valid-attachments`,
    /// releasing their delegated addresses; carry on past errors and report the first.
    pub(super) fn gc(&self) -> Result<(), CniError> {
        let valid = self.conf.valid_attachments.clone().unwrap_or_default();
        let delegate = self.delegate()?;
        let mut first_error = None;
        for ep in self.endpoints()? {
            let Some(owner) = ep.owner.as_deref() else {
                continue;
            };
            let Some((cid, ifname)) = cni::parse_owner(&self.conf.name, owner) else {
                continue;
            };
            if valid
                .iter()
                .any(|a| a.container_id == cid && a.ifname == ifname)
            {
                continue;
            }
            let mut result = self.detach(owner);
            if result.is_ok()
                && let Some(d) = &delegate
            {
                result = d
                    .run(
                        "DEL",
                        self.raw,
                        &[("CNI_CONTAINERID", cid), ("CNI_IFNAME", ifname)],
                    )
                    .map(drop);
            }
            if let Err(e) = result {
                eprintln!("weft-cni: GC of {owner}: {e}");
                first_error.get_or_insert(e);
            }
        }
        if let Some(d) = &delegate
            && d.speaks(cni::CniVersion::V1_1_0)
            && let Err(e) = d.run("GC", self.raw, &[])
        {
            first_error.get_or_insert(e);
        }
        first_error.map_or(Ok(()), Err)
    }

    /// The gateway and the routes the container gets.
    fn route_plan(&self, ep: &Endpoint, ipam: Option<&CniResult>) -> Result<RoutePlan, CniError> {
        let gateway = match self.conf.gateway {
            None => ipam.and_then(|r| r.ips.iter().find_map(|i| i.gateway)),
            Some(WeftGateway::Address(a)) => Some(a),
            Some(WeftGateway::Host) => Some(self.host_gateway(ep)?),
        };
        let mut routes: Vec<ResultRoute> = Vec::new();
        let mut push = |dst: IpNet, gw: Option<IpAddr>| {
            if !routes.iter().any(|r| r.dst == dst) {
                routes.push(route(dst, gw));
            }
        };
        for r in &self.conf.routes {
            push(r.dst, r.gw.or(gateway));
        }
        for r in ipam.map(|r| r.routes.as_slice()).unwrap_or_default() {
            push(r.dst, r.gw.or(gateway));
        }
        if self.conf.gateway.is_some()
            && let Some(gw) = gateway
        {
            let default = if gw.is_ipv4() { "0.0.0.0/0" } else { "::/0" };
            if let Ok(dst) = default.parse() {
                push(dst, Some(gw));
            }
        }
        Ok(RoutePlan { gateway, routes })
    }

    /// This host's `weft expose` address on the endpoint's subnet.
    fn host_gateway(&self, ep: &Endpoint) -> Result<IpAddr, CniError> {
        let report: StatusReport = self.client.get("/status").map_err(router_error)?;
        report
            .networks
            .iter()
            .filter(|n| n.name == ep.network)
            .flat_map(|n| n.exposed.iter())
            .filter_map(|a| a.parse::<IpNet>().ok())
            .find(|a| ep.ips.iter().any(|ip| ip.trunc() == a.trunc()))
            .map(|a| a.addr())
            .ok_or_else(|| {
                CniError::new(
                    ErrorCode::InvalidConfig,
                    "no host address to route through",
                    format!(
                        "\"gateway\": \"host\" needs this host's address on weft network {} in the container's subnet: run `weft expose ADDRESS/PREFIX --network {}`",
                        ep.network, ep.network
                    ),
                )
            })
    }

    /// The spec result of an attachment, appended to `prevResult` when there is one.
    fn result(
        &self,
        ep: &Endpoint,
        netns: &Path,
        plan: &RoutePlan,
        ipam: Option<&CniResult>,
    ) -> CniResult {
        let mine = CniResult {
            interfaces: vec![
                Interface {
                    name: ep.host_ifname.clone(),
                    ..Interface::default()
                },
                Interface {
                    name: ep.ifname.clone(),
                    mac: Some(ep.mac.to_string()),
                    mtu: Some(ep.mtu),
                    sandbox: Some(netns.to_string_lossy().into_owned()),
                    ..Interface::default()
                },
            ],
            ips: ep
                .ips
                .iter()
                .map(|address| IpConfig {
                    address: *address,
                    gateway: plan.gateway.filter(|g| address.contains(g)),
                    interface: Some(1),
                })
                .collect(),
            routes: plan.routes.clone(),
            dns: if self.conf.dns.is_empty() {
                ipam.map(|r| r.dns.clone()).unwrap_or_default()
            } else {
                self.conf.dns.clone()
            },
        };
        match &self.conf.prev_result {
            Some(prev) => {
                let mut all = prev.clone();
                all.append(mine);
                all
            }
            None => mine,
        }
    }
}

/// The gateway and routes of one attachment.
#[derive(Debug, Clone)]
struct RoutePlan {
    gateway: Option<IpAddr>,
    routes: Vec<ResultRoute>,
}

fn route(dst: IpNet, gw: Option<IpAddr>) -> ResultRoute {
    ResultRoute {
        dst,
        gw,
        mtu: None,
        advmss: None,
        priority: None,
        table: None,
        scope: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inv(args: &str) -> Invocation {
        Invocation::from_env([
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_NETNS", "/run/netns/x"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_ARGS", args),
        ])
        .unwrap()
    }

    fn conf(extra: &str) -> NetConf {
        NetConf::parse(
            format!(r#"{{"cniVersion":"1.0.0","name":"n","type":"weft-cni"{extra}}}"#).as_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn addresses_come_from_the_runtime_the_args_or_weft_ipam() {
        assert_eq!(
            requested_addresses(&inv(""), &conf("")).unwrap(),
            Addresses::Allocate(None)
        );
        let subnet = r#","subnet":"10.40.2.0/24""#;
        assert_eq!(
            requested_addresses(&inv(""), &conf(subnet)).unwrap(),
            Addresses::Allocate(Some("10.40.2.0/24".parse().unwrap()))
        );
        assert_eq!(
            requested_addresses(&inv("IgnoreUnknown=1;IP=10.40.2.7"), &conf(subnet)).unwrap(),
            Addresses::Explicit(vec!["10.40.2.7/24".parse().unwrap()])
        );
        assert_eq!(
            requested_addresses(&inv("IP=10.9.0.1/16"), &conf("")).unwrap(),
            Addresses::Explicit(vec!["10.9.0.1/16".parse().unwrap()])
        );
        let e = requested_addresses(&inv("IP=10.9.0.1"), &conf("")).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidEnvironment);
        let rt = r#","runtimeConfig":{"ips":["10.1.1.1/24"]}"#;
        assert_eq!(
            requested_addresses(&inv("IP=10.9.0.1/16"), &conf(rt)).unwrap(),
            Addresses::Explicit(vec!["10.1.1.1/24".parse().unwrap()])
        );
    }

    #[test]
    fn a_router_that_is_not_running_means_try_again_later() {
        let e = router_error(ClientError::NotRunning("/run/weft/weft.sock".into()));
        assert_eq!(e.code, ErrorCode::TryAgainLater);
        assert_eq!(e.msg, "weft router not running at /run/weft/weft.sock");
        assert!(e.details.contains("weft launch"), "{}", e.details);
    }
}
