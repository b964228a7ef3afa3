//! What the Docker plugin decides for each call: the network driver and the IPAM driver,
//! both thin clients of the router's API.
//!
//! The decisions live here, over two small traits ([`RouterApi`], [`DockerApi`]) so they
//! are tested without a router or a dockerd; the socket server and the real clients are
//! in `serve`. The plugin never attaches or allocates itself: CreateEndpoint asks the
//! router for a handover attach (both veth ends in the router's namespace, the container
//! end for Docker to move), Join names that end, DeleteEndpoint detaches by owner, and the
//! IPAM calls become `/ipam/allocate` and `/ipam/release`.
//!
//! What must survive a plugin restart is kept in a small state file: which weft IPAM
//! handle holds each address Docker was given (Docker's ReleaseAddress names only the
//! address), which owner each Docker endpoint was attached as, and the detaches and
//! releases that could not reach the router yet (retried by [`Plugin::retry_pending`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Mutex;

use ipnet::{IpNet, Ipv4Net};
use serde::{Deserialize, Serialize};

use super::engine::DockerNetwork;
use super::protocol::{
    Activated, AddressGranted, AddressSpaces, Call, CreateEndpoint, CreateNetwork, DockerId,
    EndpointCreated, EndpointRef, GATEWAY_KEY, InterfaceName, InterfaceOut, IpamCapabilities,
    Joined, NetworkCapabilities, NetworkOptions, PoolGranted, PoolId, ReleaseAddress,
    RequestAddress, RequestPool, StaticRoute,
};
use crate::api::AttachRequest;

/// The Docker network `weft launch` creates; it is weft's default network, so
/// `docker run --net weft` and `weft attach` meet.
pub(crate) const DOCKER_NETWORK: &str = "weft";
/// The prefix Docker numbers weft's interfaces with inside containers.
const DST_PREFIX: &str = "eth";
/// The address space weft's IPAM driver names (one: the allocation range).
const ADDRESS_SPACE: &str = "weft";

/// How a call to the router or dockerd failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ApiFailure {
    /// Nothing answered, or the connection broke: worth retrying later.
    #[error("{0}")]
    Unavailable(String),
    /// It answered no.
    #[error("{0}")]
    Refused(String),
}

/// The router's answer about an endpoint (the fields the plugin reads).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct AttachedEndpoint {
    /// Who attached it.
    #[serde(default)]
    pub owner: Option<String>,
    /// The container end's name in the router's namespace (handover attaches).
    #[serde(default)]
    pub handover_ifname: Option<String>,
    /// Its interface name (for handover: the prefix Docker numbers).
    pub ifname: String,
    /// Its MAC.
    pub mac: String,
    /// Its addresses.
    pub ips: Vec<IpNet>,
}

/// What the router says about its IP address management.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IpamView {
    /// The allocation range (`--ipalloc-range`).
    pub range: Option<Ipv4Net>,
    /// Where addresses come from when no subnet is asked for.
    pub default_subnet: Option<Ipv4Net>,
}

/// The router's API as the plugin uses it.
pub(crate) trait RouterApi: Send + Sync {
    /// Whether the router answers.
    fn ping(&self) -> Result<(), ApiFailure>;
    /// `POST /attach`.
    fn attach(&self, req: &AttachRequest) -> Result<AttachedEndpoint, ApiFailure>;
    /// `POST /detach` by owner (idempotent).
    fn detach(&self, owner: &str) -> Result<(), ApiFailure>;
    /// `GET /ps`.
    fn endpoints(&self) -> Result<Vec<AttachedEndpoint>, ApiFailure>;
    /// `POST /network/rm`.
    fn remove_network(&self, name: &str) -> Result<(), ApiFailure>;
    /// `GET /ipam`; `Ok(None)` when the router has no IP address management.
    fn ipam(&self) -> Result<Option<IpamView>, ApiFailure>;
    /// `POST /ipam/allocate`.
    fn allocate(
        &self,
        handle: &str,
        subnet: Ipv4Net,
        address: Option<IpAddr>,
    ) -> Result<IpNet, ApiFailure>;
    /// `POST /ipam/release` (idempotent).
    fn release(&self, handle: &str, address: Option<IpAddr>) -> Result<(), ApiFailure>;
}

/// dockerd's API as the plugin uses it.
pub(crate) trait DockerApi: Send + Sync {
    /// `GET /networks/{id}`; `Ok(None)` when Docker has no such network.
    fn network(&self, id: &DockerId) -> Result<Option<DockerNetwork>, ApiFailure>;
}

/// Why a call is refused; the message reaches the user through Docker's `Err` field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Refused(pub String);

impl From<ApiFailure> for Refused {
    fn from(f: ApiFailure) -> Self {
        Self(f.to_string())
    }
}

/// Work owed to the router that it could not take when it was asked.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum PendingOp {
    /// Detach an owner's endpoint (DeleteEndpoint while the router was down).
    Detach(String),
    /// Release a handle's address (or all of its addresses): ReleaseAddress while the
    /// router was down, or an allocation the plugin may have crashed in the middle of.
    Release(String, Option<IpAddr>),
}

/// The plugin's durable state (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Saved {
    /// `"<pool id> <address>"` → the IPAM handle that holds it.
    #[serde(default)]
    handles: BTreeMap<String, String>,
    /// Docker endpoint → the owner it was attached as.
    #[serde(default)]
    owners: BTreeMap<DockerId, String>,
    /// Owed work.
    #[serde(default)]
    pending: BTreeSet<PendingOp>,
}

/// What the plugin knows of a Docker network.
#[derive(Debug, Clone, PartialEq, Eq)]
struct NetInfo {
    /// The weft network (`None`: the default network).
    weft: Option<String>,
    options: NetworkOptions,
}

#[derive(Debug, Default)]
struct Shared {
    saved: Saved,
    networks: HashMap<DockerId, NetInfo>,
    /// Handles of allocations in progress (their `Release` safety net must not fire).
    in_flight: BTreeSet<String>,
}

/// The Docker network and IPAM plugin.
pub(crate) struct Plugin {
    router: Box<dyn RouterApi>,
    docker: Box<dyn DockerApi>,
    store: Option<PathBuf>,
    shared: Mutex<Shared>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("store", &self.store)
            .finish()
    }
}

fn key(pool: &PoolId, address: IpAddr) -> String {
    format!("{pool} {address}")
}

/// The MAC of an endpoint Docker gave no MAC: derived from its network and address, as
/// Docker's own bridge derives it from the address, so a container that comes back with
/// the same address (a restart policy, `--ip`) has the same MAC, and the neighbour caches
/// of its peers, and of weft's ARP proxy, stay right.
fn stable_mac(network: Option<&str>, ip: IpAddr) -> wire::Mac {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in network
        .unwrap_or("")
        .bytes()
        .chain(*b"/")
        .chain(ip.to_string().into_bytes())
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let b = h.to_be_bytes();
    wire::Mac::local_from_bytes([b[2], b[3], b[4], b[5], b[6], b[7]])
}

/// The owner of a Docker endpoint whose address weft's IPAM did not hand out.
fn endpoint_owner(endpoint: &DockerId) -> String {
    format!("docker/{endpoint}")
}

impl Plugin {
    /// A plugin over these APIs, keeping its state in `store` (`None`: memory only).
    pub(crate) fn new(
        router: Box<dyn RouterApi>,
        docker: Box<dyn DockerApi>,
        store: Option<PathBuf>,
    ) -> anyhow::Result<Self> {
        let saved = match &store {
            Some(path) => match std::fs::read(path) {
                Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                    anyhow::anyhow!("Docker plugin state {} is corrupt: {e}", path.display())
                })?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Saved::default(),
                Err(e) => {
                    return Err(anyhow::anyhow!(
                        "cannot read Docker plugin state {}: {e}",
                        path.display()
                    ));
                }
            },
            None => Saved::default(),
        };
        Ok(Self {
            router,
            docker,
            store,
            shared: Mutex::new(Shared {
                saved,
                ..Shared::default()
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        // A panic while holding it cannot leave `Shared` torn in a way that matters more
        // than refusing every later call would.
        self.shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Persists the state; a failure refuses the call that needed it.
    fn save(&self, shared: &Shared) -> Result<(), Refused> {
        let Some(path) = &self.store else {
            return Ok(());
        };
        let bytes = serde_json::to_vec_pretty(&shared.saved)
            .map_err(|e| Refused(format!("cannot encode the plugin state: {e}")))?;
        crate::state::write_atomic(path, &bytes)
            .map_err(|e| Refused(format!("cannot save the plugin state: {e:#}")))
    }

    /// Answers one call.
    pub(crate) fn handle(&self, call: Call) -> Result<serde_json::Value, Refused> {
        fn json<T: Serialize>(v: T) -> Result<serde_json::Value, Refused> {
            serde_json::to_value(v).map_err(|e| Refused(format!("cannot encode the answer: {e}")))
        }
        let empty = || Ok(serde_json::json!({}));
        match call {
            Call::Activate => json(Activated {
                implements: ["NetworkDriver", "IpamDriver"],
            }),
            Call::NetworkCapabilities => json(NetworkCapabilities { scope: "local" }),
            Call::CreateNetwork(c) => self.create_network(&c).and_then(|()| empty()),
            Call::DeleteNetwork(id) => {
                self.delete_network(&id);
                empty()
            }
            Call::CreateEndpoint(c) => json(self.create_endpoint(&c)?),
            Call::EndpointOperInfo(_) => Ok(serde_json::json!({ "Value": {} })),
            Call::Join(j) => json(self.join(&j)?),
            Call::Leave(_) | Call::Ignored(_) => empty(),
            Call::DeleteEndpoint(d) => self.delete_endpoint(&d).and_then(|()| empty()),
            Call::IpamCapabilities => json(IpamCapabilities {
                requires_mac_address: false,
            }),
            Call::DefaultAddressSpaces => json(AddressSpaces {
                local: ADDRESS_SPACE,
                global: ADDRESS_SPACE,
            }),
            Call::RequestPool(r) => json(self.request_pool(&r)?),
            Call::ReleasePool(_) => empty(),
            Call::RequestAddress(r) => json(self.request_address(&r)?),
            Call::ReleaseAddress(r) => self.release_address(&r).and_then(|()| empty()),
        }
    }

    fn create_network(&self, c: &CreateNetwork) -> Result<(), Refused> {
        // The options were checked while parsing; refuse now, with weft's message, if
        // the router is down, rather than at the first container.
        self.router.ping().map_err(Refused::from)?;
        if c.ipv4_pools.iter().any(|p| matches!(p, IpNet::V6(_))) {
            return Err(Refused("IPv4 data with an IPv6 pool".into()));
        }
        tracing::info!(network = %c.network.short(), mtu = ?c.options.mtu, "Docker network created");
        Ok(())
    }

    fn delete_network(&self, id: &DockerId) {
        let info = self.lock().networks.remove(id);
        // Only a network this plugin resolved since it started is known by name; the
        // weft network goes if nothing else on this router uses it.
        if let Some(NetInfo {
            weft: Some(name), ..
        }) = info
            && let Err(e) = self.router.remove_network(&name)
        {
            tracing::info!(network = %name, "weft network kept: {e}");
        }
    }

    /// The weft network and options of a Docker network, from dockerd the first time.
    fn network(&self, id: &DockerId) -> Result<NetInfo, Refused> {
        if let Some(n) = self.lock().networks.get(id) {
            return Ok(n.clone());
        }
        let net = self
            .docker
            .network(id)
            .map_err(|e| Refused(format!("cannot look up Docker network {}: {e}", id.short())))?
            .ok_or_else(|| Refused(format!("Docker has no network {}", id.short())))?;
        let options = NetworkOptions::from_driver_opts(&net.options.unwrap_or_default())
            .map_err(|e| Refused(format!("Docker network {}: {e}", net.name)))?;
        let info = NetInfo {
            weft: (net.name != DOCKER_NETWORK).then_some(net.name),
            options,
        };
        self.lock().networks.insert(id.clone(), info.clone());
        Ok(info)
    }

    fn create_endpoint(&self, c: &CreateEndpoint) -> Result<EndpointCreated, Refused> {
        let net = self.network(&c.id.network)?;
        let owner = {
            let shared = self.lock();
            let by_ipam = c.addresses.iter().find_map(|a| {
                shared
                    .saved
                    .handles
                    .iter()
                    .find(|(k, _)| k.rsplit(' ').next() == Some(a.addr().to_string().as_str()))
                    .map(|(_, h)| h.clone())
            });
            by_ipam.unwrap_or_else(|| endpoint_owner(&c.id.endpoint))
        };
        let req = AttachRequest {
            target: format!("docker:{}", c.id.endpoint.short()),
            ips: c.addresses.clone(),
            network: net.weft.clone(),
            ifname: Some(DST_PREFIX.to_string()),
            mtu: net.options.mtu,
            mac: c.mac.or_else(|| {
                let ip = c.addresses.iter().find(|a| a.addr().is_ipv4())?;
                Some(stable_mac(net.weft.as_deref(), ip.addr()))
            }),
            owner: Some(owner.clone()),
            handover: true,
        };
        {
            let mut shared = self.lock();
            shared.saved.owners.insert(c.id.endpoint.clone(), owner);
            self.save(&shared)?;
        }
        let ep = match self.router.attach(&req) {
            Ok(ep) => ep,
            Err(e) => {
                let mut shared = self.lock();
                shared.saved.owners.remove(&c.id.endpoint);
                let _ = self.save(&shared);
                return Err(e.into());
            }
        };
        tracing::info!(endpoint = %c.id.endpoint.short(), network = ?net.weft, ips = ?ep.ips, "endpoint created");
        // Answer only what Docker left empty (libnetwork refuses changes to the rest).
        Ok(EndpointCreated {
            interface: InterfaceOut {
                address: c
                    .addresses
                    .is_empty()
                    .then(|| {
                        ep.ips
                            .iter()
                            .find(|i| i.addr().is_ipv4())
                            .map(ToString::to_string)
                    })
                    .flatten(),
                mac_address: c.mac.is_none().then(|| ep.mac.clone()),
            },
        })
    }

    fn owner_of(&self, endpoint: &DockerId) -> String {
        self.lock()
            .saved
            .owners
            .get(endpoint)
            .cloned()
            .unwrap_or_else(|| endpoint_owner(endpoint))
    }

    fn join(&self, j: &EndpointRef) -> Result<Joined, Refused> {
        let owner = self.owner_of(&j.endpoint);
        let eps = self.router.endpoints().map_err(Refused::from)?;
        let ep = eps
            .iter()
            .find(|e| e.owner.as_deref() == Some(owner.as_str()))
            .ok_or_else(|| {
                Refused(format!(
                    "weft has no endpoint for Docker endpoint {} (was weft reset?); remove and recreate the container",
                    j.endpoint.short()
                ))
            })?;
        let src = ep.handover_ifname.clone().ok_or_else(|| {
            Refused(format!(
                "weft's endpoint for {} was not made for Docker to move",
                j.endpoint.short()
            ))
        })?;
        Ok(Joined {
            interface_name: InterfaceName {
                src_name: src,
                dst_prefix: DST_PREFIX,
            },
            disable_gateway_service: true,
            static_routes: vec![StaticRoute {
                destination: "224.0.0.0/4".into(),
                route_type: 1,
            }],
        })
    }

    fn delete_endpoint(&self, d: &EndpointRef) -> Result<(), Refused> {
        let owner = self.owner_of(&d.endpoint);
        let result = self.router.detach(&owner);
        let mut shared = self.lock();
        shared.saved.owners.remove(&d.endpoint);
        match result {
            Ok(()) => {}
            Err(ApiFailure::Unavailable(e)) => {
                tracing::warn!(%owner, "router unavailable ({e}); the detach is retried");
                shared.saved.pending.insert(PendingOp::Detach(owner));
            }
            Err(ApiFailure::Refused(e)) => {
                let _ = self.save(&shared);
                return Err(Refused(e));
            }
        }
        self.save(&shared)
    }

    fn request_pool(&self, r: &RequestPool) -> Result<PoolGranted, Refused> {
        if r.v6 || matches!(r.pool, Some(IpNet::V6(_))) {
            return Err(Refused(
                "weft's IPAM driver allocates IPv4 only; give IPv6 networks Docker's default IPAM (leave out --ipam-driver weft)".into(),
            ));
        }
        if let Some((k, _)) = r.options.iter().next() {
            return Err(Refused(format!(
                "weft's IPAM driver has no option {k:?} (it takes none)"
            )));
        }
        let ipam = self.router.ipam().map_err(Refused::from)?.ok_or_else(|| {
            Refused("this weft router has no IP address management; use Docker's default IPAM (leave out --ipam-driver weft)".into())
        })?;
        let pool = match r.pool {
            Some(IpNet::V4(p)) => p,
            Some(IpNet::V6(_)) => return Err(Refused("IPv6 pool".into())),
            None => ipam.default_subnet.ok_or_else(|| {
                Refused("weft's IPAM has no default subnet yet; give the network a --subnet".into())
            })?,
        };
        if pool.trunc() != pool {
            return Err(Refused(format!(
                "subnet {pool} is not a network address (did you mean {}?)",
                pool.trunc()
            )));
        }
        if let Some(range) = ipam.range
            && !range.contains(&pool)
        {
            return Err(Refused(format!(
                "subnet {pool} is outside weft's allocation range {range} (weft launch --ipalloc-range)"
            )));
        }
        let range = match r.sub_pool {
            None => None,
            Some(IpNet::V4(s)) if pool.contains(&s) && s.trunc() == s => Some(s),
            Some(s) => {
                return Err(Refused(format!(
                    "IP range {s} is not a network inside subnet {pool}"
                )));
            }
        };
        let id = PoolId { pool, range };
        Ok(PoolGranted {
            pool_id: id.to_string(),
            pool: pool.to_string(),
            // A gateway Docker need not take an address for: weft's containers have no
            // gateway on weft (Join disables the gateway service).
            data: BTreeMap::from([(
                GATEWAY_KEY,
                format!("{}/{}", pool.network(), pool.prefix_len()),
            )]),
        })
    }

    fn request_address(&self, r: &RequestAddress) -> Result<AddressGranted, Refused> {
        if let Some((k, _)) = r.options.iter().next() {
            return Err(Refused(format!(
                "weft's IPAM driver has no address option {k:?}"
            )));
        }
        let granted = |ip: IpAddr| AddressGranted {
            address: format!("{ip}/{}", r.pool.pool.prefix_len()),
            data: BTreeMap::new(),
        };
        if let Some(addr) = r.address {
            let IpAddr::V4(v4) = addr else {
                return Err(Refused(format!("{addr} is not an IPv4 address")));
            };
            if !r.pool.pool.contains(&v4) {
                return Err(Refused(format!("{addr} is not in subnet {}", r.pool.pool)));
            }
            // Deterministic: ReleaseAddress can name it again from the address alone.
            let handle = format!("docker/{}/{addr}", r.pool);
            self.router
                .allocate(&handle, r.pool.pool, Some(addr))
                .map_err(Refused::from)?;
            let mut shared = self.lock();
            shared.saved.handles.insert(key(&r.pool, addr), handle);
            self.save(&shared)?;
            return Ok(granted(addr));
        }
        let handle = format!("docker/{}/{:016x}", r.pool, rand::random::<u64>());
        let net = PendingOp::Release(handle.clone(), None);
        {
            // The safety net goes to disk first: a crash before the answer is recorded
            // leaves the allocation to be released, never lost.
            let mut shared = self.lock();
            shared.in_flight.insert(handle.clone());
            shared.saved.pending.insert(net.clone());
            self.save(&shared)?;
        }
        let result = self
            .router
            .allocate(&handle, r.pool.allocation_subnet(), None);
        let mut shared = self.lock();
        shared.in_flight.remove(&handle);
        match result {
            Ok(IpNet::V4(ip)) if r.pool.pool.contains(&ip.addr()) => {
                shared.saved.pending.remove(&net);
                shared
                    .saved
                    .handles
                    .insert(key(&r.pool, IpAddr::V4(ip.addr())), handle);
                self.save(&shared)?;
                Ok(granted(IpAddr::V4(ip.addr())))
            }
            Ok(ip) => {
                let _ = self.save(&shared);
                Err(Refused(format!(
                    "weft's IPAM gave {ip}, outside subnet {}",
                    r.pool.pool
                )))
            }
            Err(e) => {
                // Nothing was allocated (or the safety net releases it).
                if matches!(e, ApiFailure::Refused(_)) {
                    shared.saved.pending.remove(&net);
                }
                let _ = self.save(&shared);
                Err(e.into())
            }
        }
    }

    fn release_address(&self, r: &ReleaseAddress) -> Result<(), Refused> {
        let k = key(&r.pool, r.address);
        let handle = self
            .lock()
            .saved
            .handles
            .get(&k)
            .cloned()
            .unwrap_or_else(|| format!("docker/{}/{}", r.pool, r.address));
        let result = self.router.release(&handle, Some(r.address));
        let mut shared = self.lock();
        shared.saved.handles.remove(&k);
        match result {
            Ok(()) => {}
            Err(ApiFailure::Unavailable(e)) => {
                tracing::warn!(%handle, "router unavailable ({e}); the release is retried");
                shared
                    .saved
                    .pending
                    .insert(PendingOp::Release(handle, Some(r.address)));
            }
            Err(ApiFailure::Refused(e)) => tracing::warn!(%handle, "release refused: {e}"),
        }
        self.save(&shared)
    }

    /// Retries owed work once; returns how much is still owed.
    pub(crate) fn retry_pending(&self) -> usize {
        let todo: Vec<PendingOp> = {
            let shared = self.lock();
            shared
                .saved
                .pending
                .iter()
                .filter(|op| match op {
                    PendingOp::Release(h, None) => !shared.in_flight.contains(h),
                    _ => true,
                })
                .cloned()
                .collect()
        };
        for op in todo {
            let result = match &op {
                PendingOp::Detach(owner) => self.router.detach(owner),
                PendingOp::Release(handle, addr) => self.router.release(handle, *addr),
            };
            match result {
                Err(ApiFailure::Unavailable(_)) => break,
                Err(ApiFailure::Refused(e)) => {
                    tracing::warn!(?op, "owed work refused, dropped: {e}")
                }
                Ok(()) => tracing::info!(?op, "owed work done"),
            }
            let mut shared = self.lock();
            shared.saved.pending.remove(&op);
            if let Err(e) = self.save(&shared) {
                tracing::error!("{e}");
            }
        }
        self.lock().saved.pending.len()
    }
}

#[cfg(test)]
mod tests;
