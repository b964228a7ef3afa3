//! The libnetwork remote driver protocols (NetworkDriver and IpamDriver) as checked types.
//!
//! Docker POSTs JSON to `/<Interface>.<Method>`; [`parse_call`] turns path and body into
//! a [`Call`] whose fields are already checked (ids are Docker ids, addresses parse, pool
//! ids are ones weft issued), so nothing inward of it sees raw protocol text. The answer
//! types serialize to the field names libnetwork reads.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::{IpNet, Ipv4Net};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The content type Docker's plugin client sends and expects.
pub const CONTENT_TYPE: &str = "application/vnd.docker.plugins.v1.2+json";

/// libnetwork's key for the user's `-o` driver options inside `CreateNetwork.Options`.
pub const GENERIC_OPTIONS: &str = "com.docker.network.generic";
/// libnetwork's key for the gateway a pool's `Data` may carry.
pub const GATEWAY_KEY: &str = "com.docker.network.gateway";
/// The driver option Docker defines for a network's MTU.
pub const MTU_OPTION: &str = "com.docker.network.driver.mtu";
/// `RequestAddress` options libnetwork itself adds (not the user's): the kind of address
/// and the endpoint's MAC.
const DOCKER_ADDRESS_OPTIONS: [&str; 2] = [
    "RequestAddressType",
    "com.docker.network.endpoint.macaddress",
];

/// A network or endpoint id as Docker makes them: 1-64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct DockerId(String);

impl DockerId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 digits, as `docker ps` shows them.
    pub fn short(&self) -> &str {
        self.0.get(..12).unwrap_or(&self.0)
    }
}

impl FromStr for DockerId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.is_empty()
            || s.len() > 64
            || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(format!(
                "{:?} is not a Docker id (1-64 lowercase hex digits)",
                s.chars().take(80).collect::<String>()
            ));
        }
        Ok(Self(s.to_string()))
    }
}

impl<'de> Deserialize<'de> for DockerId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for DockerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A pool weft's IPAM driver issued: the subnet containers are addressed in, and the
/// part of it addresses come from (Docker's `--ip-range`), if narrower.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PoolId {
    /// The network's subnet.
    pub pool: Ipv4Net,
    /// The sub-range to allocate in (`--ip-range`), inside `pool`.
    pub range: Option<Ipv4Net>,
}

impl PoolId {
    /// Where new addresses come from.
    pub fn allocation_subnet(&self) -> Ipv4Net {
        self.range.unwrap_or(self.pool)
    }
}

impl fmt::Display for PoolId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.range {
            Some(r) => write!(f, "weft-{}-{r}", self.pool),
            None => write!(f, "weft-{}", self.pool),
        }
    }
}

impl FromStr for PoolId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "{:?} is not a pool weft issued",
                s.chars().take(80).collect::<String>()
            )
        };
        let rest = s.strip_prefix("weft-").ok_or_else(bad)?;
        let mut parts = rest.split('-');
        let pool: Ipv4Net = parts.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
        let range = match parts.next() {
            Some(r) => Some(r.parse::<Ipv4Net>().map_err(|_| bad())?),
            None => None,
        };
        if parts.next().is_some()
            || pool.trunc() != pool
            || range.is_some_and(|r| !pool.contains(&r))
        {
            return Err(bad());
        }
        Ok(Self { pool, range })
    }
}

impl<'de> Deserialize<'de> for PoolId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// What a Docker network's driver options ask of weft.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetworkOptions {
    /// The MTU of the network's container interfaces (`-o com.docker.network.driver.mtu`);
    /// default: weft's overlay MTU.
    pub mtu: Option<u32>,
}

impl NetworkOptions {
    /// Checks the user's `-o` options: weft knows only the MTU, and says so for anything
    /// else rather than silently ignoring what was asked for.
    pub fn from_driver_opts(opts: &BTreeMap<String, String>) -> Result<Self, String> {
        let mut out = Self::default();
        for (key, value) in opts {
            match key.as_str() {
                MTU_OPTION => {
                    let mtu = value
                        .parse::<u32>()
                        .ok()
                        .filter(|m| (576..=65000).contains(m))
                        .ok_or_else(|| {
                            format!(
                                "invalid {MTU_OPTION} {value:?}: must be a number from 576 to 65000"
                            )
                        })?;
                    out.mtu = Some(mtu);
                }
                other => {
                    return Err(format!(
                        "the weft driver has no option {other:?} (it knows only {MTU_OPTION})"
                    ));
                }
            }
        }
        Ok(out)
    }
}

/// `NetworkDriver.CreateNetwork`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateNetwork {
    /// The new network.
    pub network: DockerId,
    /// The user's driver options, checked.
    pub options: NetworkOptions,
    /// IPv4 pools (from whichever IPAM driver the network uses).
    pub ipv4_pools: Vec<IpNet>,
}

/// A call that names a network and an endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointRef {
    /// The network.
    pub network: DockerId,
    /// The endpoint.
    pub endpoint: DockerId,
}

/// `NetworkDriver.CreateEndpoint`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateEndpoint {
    /// Which endpoint.
    pub id: EndpointRef,
    /// The addresses Docker's IPAM gave it (none: the driver is to choose).
    pub addresses: Vec<IpNet>,
    /// The MAC Docker chose (none: the driver is to choose).
    pub mac: Option<wire::Mac>,
}

/// `IpamDriver.RequestPool`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestPool {
    /// The subnet asked for (`--subnet`); none: weft's default subnet.
    pub pool: Option<IpNet>,
    /// The sub-range asked for (`--ip-range`).
    pub sub_pool: Option<IpNet>,
    /// The user's `--ipam-opt` options.
    pub options: BTreeMap<String, String>,
    /// An IPv6 pool is wanted.
    pub v6: bool,
}

/// `IpamDriver.RequestAddress`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestAddress {
    /// The pool.
    pub pool: PoolId,
    /// The address asked for (`--ip`, `--gateway`), if any.
    pub address: Option<IpAddr>,
    /// The user's options (libnetwork's own are removed).
    pub options: BTreeMap<String, String>,
}

/// `IpamDriver.ReleaseAddress`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseAddress {
    /// The pool.
    pub pool: PoolId,
    /// The address to release.
    pub address: IpAddr,
}

/// One call from Docker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `Plugin.Activate`: which interfaces we implement.
    Activate,
    /// `NetworkDriver.GetCapabilities`.
    NetworkCapabilities,
    /// `NetworkDriver.CreateNetwork`.
    CreateNetwork(CreateNetwork),
    /// `NetworkDriver.DeleteNetwork`.
    DeleteNetwork(DockerId),
    /// `NetworkDriver.CreateEndpoint`.
    CreateEndpoint(CreateEndpoint),
    /// `NetworkDriver.EndpointOperInfo`.
    EndpointOperInfo(EndpointRef),
    /// `NetworkDriver.DeleteEndpoint`.
    DeleteEndpoint(EndpointRef),
    /// `NetworkDriver.Join`.
    Join(EndpointRef),
    /// `NetworkDriver.Leave`.
    Leave(EndpointRef),
    /// `DiscoverNew`, `DiscoverDelete`, `ProgramExternalConnectivity`,
    /// `RevokeExternalConnectivity`: nothing for weft to do.
    Ignored(&'static str),
    /// `IpamDriver.GetCapabilities`.
    IpamCapabilities,
    /// `IpamDriver.GetDefaultAddressSpaces`.
    DefaultAddressSpaces,
    /// `IpamDriver.RequestPool`.
    RequestPool(RequestPool),
    /// `IpamDriver.ReleasePool`.
    ReleasePool(PoolId),
    /// `IpamDriver.RequestAddress`.
    RequestAddress(RequestAddress),
    /// `IpamDriver.ReleaseAddress`.
    ReleaseAddress(ReleaseAddress),
}

/// Why a request could not become a [`Call`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// A method weft does not implement: 404, which libnetwork reads as "not supported".
    #[error("weft does not implement {0}")]
    UnknownMethod(String),
    /// The body is not what the method takes.
    #[error("invalid {method} request: {reason}")]
    BadBody {
        /// The method.
        method: &'static str,
        /// What is wrong.
        reason: String,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawCreateNetwork {
    #[serde(rename = "NetworkID")]
    network_id: DockerId,
    #[serde(default)]
    options: serde_json::Map<String, serde_json::Value>,
    #[serde(default, rename = "IPv4Data")]
    ipv4_data: Option<Vec<RawIpamData>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawIpamData {
    pool: IpNet,
}

#[derive(Deserialize)]
struct RawNetworkRef {
    #[serde(rename = "NetworkID")]
    network_id: DockerId,
}

#[derive(Deserialize)]
struct RawEndpointRef {
    #[serde(rename = "NetworkID")]
    network_id: DockerId,
    #[serde(rename = "EndpointID")]
    endpoint_id: DockerId,
}

#[derive(Deserialize)]
struct RawCreateEndpoint {
    #[serde(rename = "NetworkID")]
    network_id: DockerId,
    #[serde(rename = "EndpointID")]
    endpoint_id: DockerId,
    #[serde(default, rename = "Interface")]
    interface: Option<RawInterface>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct RawInterface {
    #[serde(default)]
    address: String,
    #[serde(default, rename = "AddressIPv6")]
    address_ipv6: String,
    #[serde(default)]
    mac_address: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawRequestPool {
    #[serde(default)]
    pool: String,
    #[serde(default)]
    sub_pool: String,
    #[serde(default)]
    options: Option<BTreeMap<String, String>>,
    #[serde(default, rename = "V6")]
    v6: bool,
}

#[derive(Deserialize)]
struct RawPoolRef {
    #[serde(rename = "PoolID")]
    pool_id: PoolId,
}

#[derive(Deserialize)]
struct RawRequestAddress {
    #[serde(rename = "PoolID")]
    pool_id: PoolId,
    #[serde(default, rename = "Address")]
    address: String,
    #[serde(default, rename = "Options")]
    options: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
struct RawReleaseAddress {
    #[serde(rename = "PoolID")]
    pool_id: PoolId,
    #[serde(rename = "Address")]
    address: IpAddr,
}

/// An empty string is "not given" in this protocol.
fn optional<T: FromStr>(text: &str, what: &str) -> Result<Option<T>, String>
where
    T::Err: fmt::Display,
{
    if text.is_empty() {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|e| format!("invalid {what} {text:?}: {e}"))
}

/// Maps a request path and body to a checked call.
pub fn parse_call(path: &str, body: &[u8]) -> Result<Call, CallError> {
    fn json<T: DeserializeOwned>(method: &'static str, body: &[u8]) -> Result<T, CallError> {
        serde_json::from_slice(body).map_err(|e| CallError::BadBody {
            method,
            reason: e.to_string(),
        })
    }
    fn bad(method: &'static str, reason: String) -> CallError {
        CallError::BadBody { method, reason }
    }
    let endpoint_ref = |method| {
        json::<RawEndpointRef>(method, body).map(|r| EndpointRef {
            network: r.network_id,
            endpoint: r.endpoint_id,
        })
    };
    Ok(match path {
        "/Plugin.Activate" => Call::Activate,
        "/NetworkDriver.GetCapabilities" => Call::NetworkCapabilities,
        "/NetworkDriver.CreateNetwork" => {
            const M: &str = "CreateNetwork";
            let raw: RawCreateNetwork = json(M, body)?;
            let generic: BTreeMap<String, String> = match raw.options.get(GENERIC_OPTIONS) {
                None | Some(serde_json::Value::Null) => BTreeMap::new(),
                Some(v) => serde_json::from_value(v.clone())
                    .map_err(|e| bad(M, format!("driver options: {e}")))?,
            };
            Call::CreateNetwork(CreateNetwork {
                network: raw.network_id,
                options: NetworkOptions::from_driver_opts(&generic).map_err(|e| bad(M, e))?,
                ipv4_pools: raw
                    .ipv4_data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|d| d.pool)
                    .collect(),
            })
        }
        "/NetworkDriver.DeleteNetwork" => {
            Call::DeleteNetwork(json::<RawNetworkRef>("DeleteNetwork", body)?.network_id)
        }
        "/NetworkDriver.CreateEndpoint" => {
            const M: &str = "CreateEndpoint";
            let raw: RawCreateEndpoint = json(M, body)?;
            let iface = raw.interface.unwrap_or_default();
            let mut addresses = Vec::new();
            for (text, what) in [
                (&iface.address, "Address"),
                (&iface.address_ipv6, "AddressIPv6"),
            ] {
                if let Some(a) = optional::<IpNet>(text, what).map_err(|e| bad(M, e))? {
                    addresses.push(a);
                }
            }
            let mac =
                optional::<wire::Mac>(&iface.mac_address, "MacAddress").map_err(|e| bad(M, e))?;
            Call::CreateEndpoint(CreateEndpoint {
                id: EndpointRef {
                    network: raw.network_id,
                    endpoint: raw.endpoint_id,
                },
                addresses,
                mac,
            })
        }
        "/NetworkDriver.EndpointOperInfo" => {
            Call::EndpointOperInfo(endpoint_ref("EndpointOperInfo")?)
        }
        "/NetworkDriver.DeleteEndpoint" => Call::DeleteEndpoint(endpoint_ref("DeleteEndpoint")?),
        "/NetworkDriver.Join" => Call::Join(endpoint_ref("Join")?),
        "/NetworkDriver.Leave" => Call::Leave(endpoint_ref("Leave")?),
        "/NetworkDriver.DiscoverNew" => Call::Ignored("DiscoverNew"),
        "/NetworkDriver.DiscoverDelete" => Call::Ignored("DiscoverDelete"),
        "/NetworkDriver.ProgramExternalConnectivity" => {
            Call::Ignored("ProgramExternalConnectivity")
        }
        "/NetworkDriver.RevokeExternalConnectivity" => Call::Ignored("RevokeExternalConnectivity"),
        "/IpamDriver.GetCapabilities" => Call::IpamCapabilities,
        "/IpamDriver.GetDefaultAddressSpaces" => Call::DefaultAddressSpaces,
        "/IpamDriver.RequestPool" => {
            const M: &str = "RequestPool";
            let raw: RawRequestPool = json(M, body)?;
            Call::RequestPool(RequestPool {
                pool: optional(&raw.pool, "Pool").map_err(|e| bad(M, e))?,
                sub_pool: optional(&raw.sub_pool, "SubPool").map_err(|e| bad(M, e))?,
                options: raw.options.unwrap_or_default(),
                v6: raw.v6,
            })
        }
        "/IpamDriver.ReleasePool" => {
            Call::ReleasePool(json::<RawPoolRef>("ReleasePool", body)?.pool_id)
        }
        "/IpamDriver.RequestAddress" => {
            const M: &str = "RequestAddress";
            let raw: RawRequestAddress = json(M, body)?;
            let mut options = raw.options.unwrap_or_default();
            options.retain(|k, _| !DOCKER_ADDRESS_OPTIONS.contains(&k.as_str()));
            Call::RequestAddress(RequestAddress {
                pool: raw.pool_id,
                address: optional(&raw.address, "Address").map_err(|e| bad(M, e))?,
                options,
            })
        }
        "/IpamDriver.ReleaseAddress" => {
            let raw: RawReleaseAddress = json("ReleaseAddress", body)?;
            Call::ReleaseAddress(ReleaseAddress {
                pool: raw.pool_id,
                address: raw.address,
            })
        }
        other => {
            return Err(CallError::UnknownMethod(
                other.chars().take(120).collect::<String>(),
            ));
        }
    })
}

/// `Plugin.Activate`'s answer.
#[derive(Debug, Serialize)]
pub struct Activated {
    /// The plugin interfaces implemented.
    #[serde(rename = "Implements")]
    pub implements: [&'static str; 2],
}

/// `NetworkDriver.GetCapabilities`'s answer.
#[derive(Debug, Serialize)]
pub struct NetworkCapabilities {
    /// `local`: each host's Docker keeps its own networks (the same name on every host
    /// is the same weft network).
    #[serde(rename = "Scope")]
    pub scope: &'static str,
}

/// The interface fields `CreateEndpoint` may answer (only those Docker left empty).
#[derive(Debug, Default, Serialize)]
pub struct InterfaceOut {
    /// The address weft chose.
    #[serde(rename = "Address", skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The MAC weft chose.
    #[serde(rename = "MacAddress", skip_serializing_if = "Option::is_none")]
    pub mac_address: Option<String>,
}

/// `NetworkDriver.CreateEndpoint`'s answer.
#[derive(Debug, Serialize)]
pub struct EndpointCreated {
    /// What weft filled in.
    #[serde(rename = "Interface")]
    pub interface: InterfaceOut,
}

/// The interface Docker is to move into the container.
#[derive(Debug, Serialize)]
pub struct InterfaceName {
    /// Its name in dockerd's (the router's) namespace.
    #[serde(rename = "SrcName")]
    pub src_name: String,
    /// The prefix Docker numbers it with inside the container (`eth` → `eth0`, `eth1`).
    #[serde(rename = "DstPrefix")]
    pub dst_prefix: &'static str,
}

/// A route Docker adds in the container.
#[derive(Debug, Serialize)]
pub struct StaticRoute {
    /// The destination.
    #[serde(rename = "Destination")]
    pub destination: String,
    /// 1: connected (no next hop).
    #[serde(rename = "RouteType")]
    pub route_type: u8,
}

/// `NetworkDriver.Join`'s answer.
#[derive(Debug, Serialize)]
pub struct Joined {
    /// The interface to move.
    #[serde(rename = "InterfaceName")]
    pub interface_name: InterfaceName,
    /// True: weft gives no default gateway and Docker must not add `docker_gwbridge`.
    #[serde(rename = "DisableGatewayService")]
    pub disable_gateway_service: bool,
    /// Extra routes (multicast leaves through weft, as `weft attach` sets up).
    #[serde(rename = "StaticRoutes")]
    pub static_routes: Vec<StaticRoute>,
}

/// `IpamDriver.GetCapabilities`'s answer.
#[derive(Debug, Serialize)]
pub struct IpamCapabilities {
    /// weft's allocation does not depend on the MAC.
    #[serde(rename = "RequiresMACAddress")]
    pub requires_mac_address: bool,
}

/// `IpamDriver.GetDefaultAddressSpaces`'s answer.
#[derive(Debug, Serialize)]
pub struct AddressSpaces {
    /// For local-scope networks.
    #[serde(rename = "LocalDefaultAddressSpace")]
    pub local: &'static str,
    /// For global-scope networks.
    #[serde(rename = "GlobalDefaultAddressSpace")]
    pub global: &'static str,
}

/// `IpamDriver.RequestPool`'s answer.
#[derive(Debug, Serialize)]
pub struct PoolGranted {
    /// The id Docker quotes in later calls.
    #[serde(rename = "PoolID")]
    pub pool_id: String,
    /// The subnet.
    #[serde(rename = "Pool")]
    pub pool: String,
    /// Metadata; weft names a gateway here so Docker does not take an address for one.
    #[serde(rename = "Data")]
    pub data: BTreeMap<&'static str, String>,
}

/// `IpamDriver.RequestAddress`'s answer.
#[derive(Debug, Serialize)]
pub struct AddressGranted {
    /// `IP/prefix` with the pool's prefix.
    #[serde(rename = "Address")]
    pub address: String,
    /// No metadata.
    #[serde(rename = "Data")]
    pub data: BTreeMap<String, String>,
}

/// The body of an answer that refuses the operation (sent with status 500: see `serve`).
#[derive(Debug, Serialize)]
pub struct Refusal {
    /// What went wrong; Docker shows it to the user.
    #[serde(rename = "Err")]
    pub err: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    const NET: &str = "63d668315b84475065b6058f918563cfcb08fa816f8cd9a430b9d0a9697d3e11";
    const EP: &str = "d9f0c7c7a2ec71198039d3ee602b030cfd1415f04d48ce7aeeb96d394c298582";

    #[test]
    fn what_docker_20_10_sends_parses() {
        // Bodies as dockerd 20.10 sent them to a logging plugin on this machine.
        let create = format!(
            r#"{{"NetworkID":"{NET}","Options":{{"com.docker.network.enable_ipv6":false,"com.docker.network.generic":{{"com.docker.network.driver.mtu":"1400"}}}},"IPv4Data":[{{"AddressSpace":"l","Gateway":"10.225.0.0/24","Pool":"10.225.0.0/24"}}],"IPv6Data":[]}}"#
        );
        let Call::CreateNetwork(c) =
            parse_call("/NetworkDriver.CreateNetwork", create.as_bytes()).unwrap()
        else {
            panic!("not CreateNetwork");
        };
        assert_eq!(c.network.as_str(), NET);
        assert_eq!(c.options.mtu, Some(1400));
        assert_eq!(
            c.ipv4_pools,
            vec!["10.225.0.0/24".parse::<IpNet>().unwrap()]
        );

        let ep = format!(
            r#"{{"NetworkID":"{NET}","EndpointID":"{EP}","Interface":{{"Address":"10.225.0.9/24","AddressIPv6":"","MacAddress":"02:42:62:74:17:02"}},"Options":{{"com.docker.network.endpoint.exposedports":[],"com.docker.network.portmap":[]}}}}"#
        );
        let Call::CreateEndpoint(e) =
            parse_call("/NetworkDriver.CreateEndpoint", ep.as_bytes()).unwrap()
        else {
            panic!("not CreateEndpoint");
        };
        assert_eq!(e.id.endpoint.short(), "d9f0c7c7a2ec");
        assert_eq!(e.addresses, vec!["10.225.0.9/24".parse::<IpNet>().unwrap()]);
        assert_eq!(e.mac, Some("02:42:62:74:17:02".parse().unwrap()));

        let ra = r#"{"PoolID":"weft-10.225.0.0/24","Address":"","Options":{"com.docker.network.endpoint.macaddress":"02:42:62:74:17:02"}}"#;
        let Call::RequestAddress(r) =
            parse_call("/IpamDriver.RequestAddress", ra.as_bytes()).unwrap()
        else {
            panic!("not RequestAddress");
        };
        assert_eq!(r.address, None);
        assert!(
            r.options.is_empty(),
            "libnetwork's own options are not the user's"
        );
        let rp = r#"{"AddressSpace":"weft","Pool":"","SubPool":"","Options":{},"V6":false}"#;
        assert_eq!(
            parse_call("/IpamDriver.RequestPool", rp.as_bytes()).unwrap(),
            Call::RequestPool(RequestPool {
                pool: None,
                sub_pool: None,
                options: BTreeMap::new(),
                v6: false
            })
        );
        assert_eq!(parse_call("/Plugin.Activate", b"").unwrap(), Call::Activate);
    }

    #[test]
    fn bad_input_is_refused_with_a_reason() {
        assert!(matches!(
            parse_call("/NetworkDriver.Frobnicate", b"{}"),
            Err(CallError::UnknownMethod(_))
        ));
        for (path, body) in [
            (
                "/NetworkDriver.Join",
                r#"{"NetworkID":"XYZ","EndpointID":"ab"}"#.to_string(),
            ),
            ("/NetworkDriver.Join", "not json".to_string()),
            (
                "/NetworkDriver.CreateNetwork",
                format!(
                    r#"{{"NetworkID":"{NET}","Options":{{"com.docker.network.generic":{{"color":"blue"}}}}}}"#
                ),
            ),
            (
                "/NetworkDriver.CreateEndpoint",
                format!(
                    r#"{{"NetworkID":"{NET}","EndpointID":"{EP}","Interface":{{"Address":"10.0.0.300/24"}}}}"#
                ),
            ),
            (
                "/IpamDriver.RequestAddress",
                r#"{"PoolID":"default-10.0.0.0/24"}"#.to_string(),
            ),
            (
                "/IpamDriver.ReleaseAddress",
                r#"{"PoolID":"weft-10.0.0.0/24","Address":"x"}"#.to_string(),
            ),
        ] {
            let err = parse_call(path, body.as_bytes()).unwrap_err();
            assert!(
                matches!(err, CallError::BadBody { .. }),
                "{path} {body}: {err}"
            );
        }
        let err = parse_call(
            "/NetworkDriver.CreateNetwork",
            format!(r#"{{"NetworkID":"{NET}","Options":{{"com.docker.network.generic":{{"color":"blue"}}}}}}"#).as_bytes(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("no option \"color\""), "{err}");
    }

    #[test]
    fn pool_ids_round_trip_and_reject_what_weft_did_not_issue() {
        for text in ["weft-10.32.0.0/12", "weft-10.32.0.0/12-10.32.1.0/24"] {
            let id: PoolId = text.parse().unwrap();
            assert_eq!(id.to_string(), text);
        }
        let id: PoolId = "weft-10.32.0.0/12-10.32.1.0/24".parse().unwrap();
        assert_eq!(id.allocation_subnet(), "10.32.1.0/24".parse().unwrap());
        for bad in [
            "weft-10.32.0.1/12",
            "weft-10.32.0.0/12-10.64.0.0/24",
            "weft-10.32.0.0/12-10.32.1.0/24-x",
            "10.32.0.0/12",
            "weft-",
        ] {
            assert!(bad.parse::<PoolId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn answers_use_libnetworks_field_names() {
        let j = serde_json::to_value(Joined {
            interface_name: InterfaceName {
                src_name: "wfc0123456789".into(),
                dst_prefix: "eth",
            },
            disable_gateway_service: true,
            static_routes: vec![StaticRoute {
                destination: "224.0.0.0/4".into(),
                route_type: 1,
            }],
        })
        .unwrap();
        assert_eq!(
            j,
            serde_json::json!({"InterfaceName": {"SrcName": "wfc0123456789", "DstPrefix": "eth"},
                "DisableGatewayService": true,
                "StaticRoutes": [{"Destination": "224.0.0.0/4", "RouteType": 1}]})
        );
        let e = serde_json::to_value(EndpointCreated {
            interface: InterfaceOut::default(),
        })
        .unwrap();
        assert_eq!(e, serde_json::json!({"Interface": {}}));
    }
}
