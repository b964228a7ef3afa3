//! The control plane of one router: networks, endpoints, the host port, peers, status.
//!
//! It owns the durable [`State`] and keeps it in step with what exists: every change
//! that succeeds is persisted before it is answered, and every change that fails is
//! undone (no half-created veth or TAP stays behind).

mod attach;
mod expose;
mod handover;
mod meshlink;
pub(crate) mod networks;
mod options;
mod report;
mod resolve;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs as _};
use std::time::Instant;

use anyhow::Context as _;
use learning::PortId;
use mesh::PeerName;
use tunnel::Vni;

pub(crate) use options::{PeerSpec, Ports, RouterOptions};

use crate::api::server::{Handler, Request, Response};
use crate::api::{ApiError, ForgetAnswer};
use crate::dataplane::{Dataplane, DataplaneConfig, NetworkDef};
use crate::home::Home;
use crate::io::UdpOptions;
use crate::netlink::Netlink;
use crate::state::State;
use networks::{DEFAULT_NETWORK, Networks};

/// The default network's VNI when `launch --vni` is not given.
pub(crate) const DEFAULT_VNI: Vni = crate::api::codec::const_vni(1);
/// Interface-name prefix of every link weft creates in the router's namespace.
pub(crate) const LINK_PREFIX: &str = "wf";

/// Launch-time settings that do not change while the router runs.
#[derive(Debug, Clone)]
pub(crate) struct RouterConfig {
    /// The router's peer name.
    pub name: PeerName,
    /// Human-readable name.
    pub nickname: String,
    /// Our ports.
    pub ports: Ports,
    /// MTU of the underlay.
    pub underlay_mtu: u32,
    /// MTU given to containers.
    pub overlay_mtu: u32,
    /// A mesh password is set.
    pub password_set: bool,
}

/// A port weft made for an endpoint or the host, by the name of its host-side link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PortBinding {
    port: PortId,
}

/// The router's control plane.
#[derive(Debug)]
pub(crate) struct Router {
    home: Home,
    state: State,
    config: RouterConfig,
    networks: Networks,
    dataplane: Option<Dataplane>,
    /// Ports of attached endpoints, by host-side interface name.
    endpoint_ports: BTreeMap<String, PortBinding>,
    /// Host ports (TAP) by network name.
    host_ports: BTreeMap<String, expose::HostPort>,
    /// The mesh thread (control connections).
    meshd: Option<crate::meshd::Meshd>,
    /// Saved peers whose names did not resolve at launch, still being retried.
    pending_peers: Option<resolve::PendingPeers>,
    /// The peers named at launch or with `connect`, as the user wrote them, and the VXLAN
    /// address each resolved to: status shows what was asked, `forget` needs no lookup.
    asked: BTreeMap<String, SocketAddr>,
    started: Instant,
}

impl Router {
    /// Starts the data plane, restores networks, endpoints and host ports from the state
    /// file, and connects to the peers named at launch and remembered from `connect`.
    pub(crate) fn start(home: &Home, options: &RouterOptions) -> anyhow::Result<Self> {
        let mut state = State::load(&home.state_file())?;
        let name = *state
            .peer_name
            .get_or_insert_with(|| PeerName::random(&mut rand::rng()));
        let static_key = meshlink::static_key(&mut state)?;
        let psk = options.psk;
        let ports = options.ports;
        let underlay_mtu = detect_underlay_mtu().unwrap_or(1500);
        // With a password every untrusted peer is reached through the encrypted tunnel,
        // so containers get the MTU that fits it; without one, VXLAN's.
        let mtu = tunnel::PathMtus::new(
            tunnel::Underlay::V4,
            underlay_mtu as usize,
            psk.is_some(),
            options.mtu.map(|m| m as usize),
        );
        let overlay_mtu = u32::try_from(mtu.overlay).unwrap_or(u32::MAX);
        let config = RouterConfig {
            name,
            nickname: options.nickname.clone(),
            ports,
            underlay_mtu,
            overlay_mtu,
            password_set: psk.is_some(),
        };
        tracing::info!(
            name = %config.name,
            nickname = %config.nickname,
            underlay_mtu,
            overlay_mtu,
            encryption = if psk.is_some() { "password" } else { "unauthenticated" },
            "router identity"
        );

        let (vni, replaced) = default_vni(state.default_vni, options.vni);
        if let Some(old) = replaced {
            tracing::warn!(
                %old,
                new = %vni,
                "the default network's VNI changes (launch --vni)"
            );
        }
        state.default_vni = Some(vni);

        // The peers named on this command line resolved at the CLI; a saved one that
        // does not is retried in the background, so one stale name never blocks a
        // relaunch.
        let mut asked = BTreeMap::new();
        let mut peers = Vec::new();
        for p in &options.peers {
            peers.push(p.addr);
            asked.insert(p.spec.clone(), p.addr);
        }
        let mut unresolved = Vec::new();
        for t in &state.targets {
            match resolve_peer(t, ports.vxlan) {
                Ok(a) => {
                    peers.push(a);
                    asked.insert(t.clone(), a);
                }
                Err(e) => {
                    tracing::warn!("saved peer {t}: {e:#}; retrying in the background");
                    unresolved.push((t.clone(), format!("{e:#}")));
                }
            }
        }
        peers.sort();
        peers.dedup();

        let udp = UdpOptions {
            gso: options.gso,
            ..UdpOptions::default()
        };
        let dataplane = Dataplane::start(DataplaneConfig {
            vxlan_bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), ports.vxlan),
            mtu,
            local_name: name,
            udp,
            send_sockets: 16,
            tunnel_bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), ports.tunnel),
            password_set: psk.is_some(),
            trusted_subnets: options.trusted_subnets.clone(),
        })
        .with_context(|| {
            format!(
                "cannot start the data plane (are UDP ports {} and {} free?)",
                ports.vxlan, ports.tunnel
            )
        })?;
        let meshd = crate::meshd::Meshd::start(
            crate::meshd::MeshdConfig {
                listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), ports.mesh),
                name,
                nickname: config.nickname.clone(),
                vxlan_port: ports.vxlan,
                tunnel_port: ports.tunnel,
                psk,
                static_key,
                conn_limit: options.conn_limit,
                discovery: options.discovery,
                targets: peers
                    .iter()
                    .map(|p| SocketAddr::new(p.ip(), ports.mesh))
                    .collect(),
            },
            dataplane.mesh_sink(),
        )
        .with_context(|| {
            format!(
                "cannot start the peer mesh (is TCP port {} free?)",
                ports.mesh
            )
        })?;

        let mut router = Self {
            home: home.clone(),
            state,
            config,
            networks: Networks::default(),
            dataplane: Some(dataplane),
            endpoint_ports: BTreeMap::new(),
            host_ports: BTreeMap::new(),
            meshd: Some(meshd),
            pending_peers: None,
            asked,
            started: Instant::now(),
        };
        router.declare_network(DEFAULT_NETWORK, vni)?;
        let named: Vec<(String, Vni)> = router
            .state
            .networks
            .iter()
            .map(|(n, s)| (n.clone(), s.vni))
            .collect();
        for (n, vni) in named {
            if let Err(e) = router.declare_network(&n, vni) {
                tracing::warn!("cannot restore network {n}: {e:#}");
            }
        }
        router.restore_endpoints();
        router.restore_host_ports();
        router.dataplane()?.add_peers(peers)?;
        if !unresolved.is_empty() {
            router.pending_peers = Some(resolve::PendingPeers::start(unresolved, ports.vxlan)?);
        }
        router.publish_endpoints();
        router.save()?;
        Ok(router)
    }

    /// The mesh (control connection) addresses of peers at these VXLAN addresses.
    fn mesh_addrs(&self, addrs: &[SocketAddr]) -> Vec<SocketAddr> {
        addrs
            .iter()
            .map(|a| SocketAddr::new(a.ip(), self.config.ports.mesh))
            .collect()
    }

    /// Dials peers at these VXLAN addresses: their mesh port, and VXLAN straight away.
    fn add_peer_addrs(&self, addrs: Vec<SocketAddr>) -> anyhow::Result<()> {
        if let Some(m) = &self.meshd {
            m.connect(self.mesh_addrs(&addrs))?;
        }
        self.dataplane()?.add_peers(addrs)
    }

    /// Dials the saved peers whose names have resolved since launch (unless forgotten).
    fn dial_resolved_peers(&mut self) {
        let Some(pending) = &self.pending_peers else {
            return;
        };
        let resolved: Vec<(String, SocketAddr)> = pending
            .resolved()
            .filter(|(spec, _)| self.state.targets.contains(spec))
            .collect();
        let mut addrs = Vec::new();
        for (spec, addr) in resolved {
            tracing::info!(peer = %spec, %addr, "saved peer resolved");
            self.asked.insert(spec, addr);
            addrs.push(addr);
        }
        if !addrs.is_empty()
            && let Err(e) = self.add_peer_addrs(addrs)
        {
            tracing::error!("cannot dial resolved peers: {e:#}");
        }
    }

    fn dataplane(&self) -> anyhow::Result<&Dataplane> {
        self.dataplane.as_ref().context("the data plane is stopped")
    }

    fn save(&self) -> anyhow::Result<()> {
        self.state.save(&self.home.state_file())
    }

    /// Adds a network to the registry and the data plane.
    fn declare_network(&mut self, name: &str, vni: Vni) -> anyhow::Result<networks::NetworkEntry> {
        if let Some(e) = self.networks.get(name)
            && e.vni == vni
        {
            return Ok(e);
        }
        let entry = self.networks.add(name, vni)?;
        self.dataplane()?.add_network(NetworkDef {
            id: entry.id,
            name: name.to_string(),
            vni,
        })?;
        Ok(entry)
    }

    /// The network a request names (default when none), created with a derived VNI if new.
    fn network_for(
        &mut self,
        name: Option<&str>,
    ) -> Result<(String, networks::NetworkEntry), ApiError> {
        let name = name.unwrap_or(DEFAULT_NETWORK).to_string();
        if let Some(e) = self.networks.get(&name) {
            return Ok((name, e));
        }
        networks::validate_name(&name).map_err(|e| ApiError::bad_request(e.to_string()))?;
        let vni = networks::derived_vni(&name);
        let entry = self
            .declare_network(&name, vni)
            .map_err(|e| ApiError::conflict(format!("{e:#}")))?;
        self.state
            .networks
            .insert(name.clone(), crate::state::NetworkSpec { vni });
        Ok((name, entry))
    }

    /// Stops the data plane; endpoints and host ports stay for the next launch.
    pub(crate) fn shutdown(&mut self) {
        if let Some(m) = self.meshd.take() {
            m.shutdown();
        }
        if let Some(dp) = self.dataplane.take() {
            dp.shutdown();
        }
        for (_, hp) in std::mem::take(&mut self.host_ports) {
            drop(hp);
        }
    }

    fn add_network_request(
        &mut self,
        req: &crate::api::NetworkRequest,
    ) -> Result<Response, ApiError> {
        networks::validate_name(&req.name).map_err(|e| ApiError::bad_request(e.to_string()))?;
        let vni = req.vni.unwrap_or_else(|| networks::derived_vni(&req.name));
        let entry = self
            .declare_network(&req.name, vni)
            .map_err(|e| ApiError::conflict(format!("{e:#}")))?;
        if req.name != DEFAULT_NETWORK {
            self.state.networks.insert(
                req.name.clone(),
                crate::state::NetworkSpec { vni: entry.vni },
            );
        }
        self.save().map_err(|e| ApiError::internal(&e))?;
        Ok(Response::Json(
            serde_json::json!({ "name": req.name, "vni": entry.vni.get() }),
        ))
    }

    fn remove_network_request(&mut self, name: &str) -> Result<Response, ApiError> {
        if name == DEFAULT_NETWORK {
            return Err(ApiError::bad_request(
                "the default network cannot be removed",
            ));
        }
        let entry = self
            .networks
            .get(name)
            .ok_or_else(|| ApiError::not_found(format!("no network {name}")))?;
        let users = self
            .state
            .endpoints
            .iter()
            .filter(|e| e.network == name)
            .count();
        if users > 0 || self.host_ports.contains_key(name) {
            return Err(ApiError::conflict(format!(
                "network {name} is in use ({users} endpoints{}); detach them first",
                if self.host_ports.contains_key(name) {
                    ", host port"
                } else {
                    ""
                }
            )));
        }
        self.networks.remove(name);
        self.state.networks.remove(name);
        self.dataplane()
            .and_then(|d| d.remove_network(entry.id))
            .map_err(|e| ApiError::internal(&e))?;
        self.save().map_err(|e| ApiError::internal(&e))?;
        Ok(Response::Json(serde_json::json!({})))
    }

    /// `connect`: every name must resolve (nothing is saved otherwise); then they are
    /// dialled, saved as given, and shown in status as given.
    fn connect_request(&mut self, peers: &[String]) -> Result<Response, ApiError> {
        let mut addrs = Vec::new();
        for p in peers {
            addrs.push(
                resolve_peer(p, self.config.ports.vxlan)
                    .map_err(|e| ApiError::bad_request(format!("{e:#}")))?,
            );
        }
        self.add_peer_addrs(addrs.clone())
            .map_err(|e| ApiError::internal(&e))?;
        for (p, addr) in peers.iter().zip(addrs) {
            self.asked.insert(p.clone(), addr);
            if !self.state.targets.contains(p) {
                self.state.targets.push(p.clone());
            }
        }
        self.save().map_err(|e| ApiError::internal(&e))?;
        Ok(Response::Json(serde_json::json!({})))
    }

    /// `forget`: by the name as saved (or as named at launch), with no lookup needed, so
    /// a name that stopped resolving can still be forgotten; a name that is none of ours
    /// is reported and does not stop the others.
    fn forget_request(&mut self, peers: &[String]) -> Result<Response, ApiError> {
        let mut answer = ForgetAnswer::default();
        let mut addrs = Vec::new();
        for p in peers {
            let saved = self.state.targets.contains(p);
            self.state.targets.retain(|t| t != p);
            // The address it was dialled at; a peer neither saved nor named may still be
            // one we dial (e.g. `forget IP` of a launch peer named by name).
            let addr = self.asked.remove(p).or_else(|| {
                (!saved)
                    .then(|| resolve_peer(p, self.config.ports.vxlan).ok())
                    .flatten()
            });
            match (saved, addr) {
                (false, None) => answer.unknown.push(p.clone()),
                (_, addr) => {
                    addrs.extend(addr);
                    answer.forgotten.push(p.clone());
                }
            }
        }
        if let Some(m) = &self.meshd {
            m.forget(self.mesh_addrs(&addrs))
                .map_err(|e| ApiError::internal(&e))?;
        }
        self.dataplane()
            .and_then(|dp| dp.remove_peers(addrs))
            .map_err(|e| ApiError::internal(&e))?;
        self.save().map_err(|e| ApiError::internal(&e))?;
        serde_json::to_value(answer)
            .map(Response::Json)
            .map_err(|e| ApiError::internal(&anyhow::anyhow!(e)))
    }
}

impl Handler for Router {
    fn tick(&mut self) {
        self.dial_resolved_peers();
    }

    fn handle(&mut self, request: Request) -> Result<Response, ApiError> {
        let json = |v: serde_json::Result<serde_json::Value>| {
            v.map(Response::Json)
                .map_err(|e| ApiError::internal(&anyhow::anyhow!(e)))
        };
        match request {
            Request::Ping => Ok(Response::Json(
                serde_json::json!({ "pid": std::process::id() }),
            )),
            Request::Status => json(serde_json::to_value(self.status_report()?)),
            Request::Ps => json(serde_json::to_value(
                self.state
                    .endpoints
                    .iter()
                    .map(attach::endpoint_of)
                    .collect::<Vec<_>>(),
            )),
            Request::Metrics => Ok(Response::Text(self.metrics()?)),
            Request::Attach(req) => json(serde_json::to_value(self.attach(&req)?)),
            Request::Detach(req) => json(serde_json::to_value(self.detach(&req)?)),
            Request::Expose(req) => self.expose(&req),
            Request::Hide(req) => self.hide(&req),
            Request::Connect(req) => self.connect_request(&req.peers),
            Request::Forget(req) => self.forget_request(&req.peers),
            Request::AddNetwork(req) => self.add_network_request(&req),
            Request::RemoveNetwork(name) => self.remove_network_request(&name),
            Request::Stop => Ok(Response::Json(serde_json::json!({}))),
        }
    }
}

/// The default network's VNI for a launch given the saved one and `--vni`, and the saved
/// one when `--vni` replaces it: `--vni` wins (the operator asked for it), else the saved
/// VNI, else [`DEFAULT_VNI`].
pub(crate) fn default_vni(saved: Option<Vni>, asked: Option<Vni>) -> (Vni, Option<Vni>) {
    match (saved, asked) {
        (Some(old), Some(new)) if old != new => (new, Some(old)),
        (_, Some(new)) => (new, None),
        (Some(old), None) => (old, None),
        (None, None) => (DEFAULT_VNI, None),
    }
}

/// Resolves `host`, `host:port`, `ip` or `ip:port` (port defaulting to `default_port`).
pub(crate) fn resolve_peer(spec: &str, default_port: u16) -> anyhow::Result<SocketAddr> {
    if let Ok(sa) = spec.parse::<SocketAddr>() {
        return Ok(sa);
    }
    if let Ok(ip) = spec.trim_matches(['[', ']']).parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, default_port));
    }
    let with_port = if spec
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        spec.to_string()
    } else {
        format!("{spec}:{default_port}")
    };
    with_port
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve peer {spec:?}"))?
        .find(SocketAddr::is_ipv4)
        .or_else(|| with_port.to_socket_addrs().ok().and_then(|mut a| a.next()))
        .with_context(|| format!("peer {spec:?} has no address"))
}

/// The MTU of the underlay: the smallest MTU among up, addressed, non-loopback links that
/// weft did not create itself.
fn detect_underlay_mtu() -> Option<u32> {
    let mut nl = Netlink::new().ok()?;
    let links = nl.links().ok()?;
    let addrs = nl.addresses().ok()?;
    links
        .iter()
        .filter(|l| {
            l.up && l.name != "lo"
                && !l.name.starts_with(LINK_PREFIX)
                && !l.name.starts_with("weft")
        })
        .filter(|l| {
            addrs
                .iter()
                .any(|(i, a)| *i == l.index && !a.addr().is_loopback())
        })
        .map(|l| l.mtu)
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_resolve_with_default_port() {
        assert_eq!(
            resolve_peer("10.0.0.2", 4789).unwrap(),
            "10.0.0.2:4789".parse().unwrap()
        );
        assert_eq!(
            resolve_peer("10.0.0.2:5000", 4789).unwrap(),
            "10.0.0.2:5000".parse().unwrap()
        );
        assert_eq!(resolve_peer("localhost", 4789).unwrap().port(), 4789);
        assert!(resolve_peer("no-such-host.invalid", 4789).is_err());
    }

    #[test]
    fn the_default_vni_is_saved_and_changed_only_by_an_explicit_vni() {
        let (v7, v9) = (Vni::new(7).unwrap(), Vni::new(9).unwrap());
        assert_eq!(default_vni(None, None), (DEFAULT_VNI, None));
        assert_eq!(default_vni(None, Some(v7)), (v7, None));
        assert_eq!(default_vni(Some(v7), None), (v7, None));
        assert_eq!(default_vni(Some(v7), Some(v7)), (v7, None));
        assert_eq!(default_vni(Some(v7), Some(v9)), (v9, Some(v7)));
    }
}
