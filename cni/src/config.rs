//! The network configuration on stdin: the CNI keys weft reads, weft's own keys, and
//! the rules each must pass.
//!
//! weft's keys (all optional):
//! - `socket`: the router's API socket (default `/run/weft/weft.sock`).
//! - `network`: the weft network to join (default `default`).
//! - `subnet`: the subnet weft's IPAM allocates from (default: the router's default).
//! - `mtu`: the container interface's MTU (default: the router's overlay MTU).
//! - `gateway`: an address, or `"host"` (the host's `weft expose` address on the
//!   network); with it the container gets a default route through it.
//! - `routes`: extra routes `{dst, gw?}` for the container.
//!
//! Unknown keys are accepted, as the spec asks of plugins in chains (runtimes add
//! `runtimeConfig`, `args`, `capabilities`, `cni.dev/*`).

use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use serde::Deserialize;
use serde_json::Value;

use crate::error::{CniError, ErrorCode};
use crate::result::{CniResult, Dns};
use crate::version::CniVersion;

/// The API socket of a router launched without `--home`.
pub const DEFAULT_SOCKET: &str = "/run/weft/weft.sock";

/// Largest configuration read from stdin: a conflist with a prevResult is a few KiB.
pub const MAX_CONFIG_BYTES: usize = 1 << 20;

/// Where the container's default route points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeftGateway {
    /// A fixed address on the subnet.
    Address(IpAddr),
    /// This host's `weft expose` address on the network (differs per host).
    Host,
}

/// An extra route for the container (`routes` in weft's config or the IPAM answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct RouteSpec {
    /// Destination.
    pub dst: IpNet,
    /// Next hop (default: the gateway, else on-link).
    #[serde(default)]
    pub gw: Option<IpAddr>,
}

/// One still-valid attachment named by GC.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
pub struct Attachment {
    /// `CNI_CONTAINERID` of its ADD.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// `CNI_IFNAME` of its ADD.
    pub ifname: String,
}

/// A checked network configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    /// The spec version of this configuration (and of the result).
    pub cni_version: CniVersion,
    /// The CNI network's name (part of every attachment's identity).
    pub name: String,
    /// The plugin type the runtime ran (`weft-cni` or `weft`).
    pub plugin_type: String,
    /// The router's API socket.
    pub socket: PathBuf,
    /// The weft network.
    pub network: Option<String>,
    /// Subnet for weft's IPAM.
    pub subnet: Option<IpNet>,
    /// MTU of the container interface.
    pub mtu: Option<u32>,
    /// The container's default gateway.
    pub gateway: Option<WeftGateway>,
    /// Extra routes.
    pub routes: Vec<RouteSpec>,
    /// The delegated IPAM plugin's type, when the config names one.
    pub ipam_type: Option<String>,
    /// DNS settings passed through to the result.
    pub dns: Dns,
    /// The result of the plugins before this one in the chain.
    pub prev_result: Option<CniResult>,
    /// GC's still-valid attachments.
    pub valid_attachments: Option<Vec<Attachment>>,
    /// Addresses the runtime asks for (`runtimeConfig.ips`, capability `ips`).
    pub runtime_ips: Vec<IpNet>,
    /// MAC the runtime asks for (`runtimeConfig.mac`, capability `mac`).
    pub runtime_mac: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    cni_version: Option<String>,
    name: Option<String>,
    #[serde(rename = "type")]
    plugin_type: Option<String>,
    socket: Option<PathBuf>,
    network: Option<String>,
    subnet: Option<IpNet>,
    mtu: Option<u32>,
    gateway: Option<String>,
    #[serde(default)]
    routes: Vec<RouteSpec>,
    ipam: Option<Value>,
    #[serde(default)]
    dns: Dns,
    ip_masq: Option<bool>,
    prev_result: Option<Value>,
    runtime_config: Option<RuntimeConfig>,
    #[serde(rename = "cni.dev/valid-attachments")]
    valid_attachments: Option<Vec<Attachment>>,
}

#[derive(Deserialize, Default)]
struct RuntimeConfig {
    #[serde(default)]
    ips: Vec<IpNet>,
    #[serde(default)]
    mac: Option<String>,
}

fn invalid(details: impl Into<String>) -> CniError {
    CniError::new(
        ErrorCode::InvalidConfig,
        "invalid network configuration",
        details,
    )
}

/// The spec's rule for network names (also keeps them usable in paths and owners).
fn validate_name(name: &str) -> Result<(), CniError> {
    let mut chars = name.chars();
    let ok_start = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let ok_rest = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok_start && ok_rest {
        Ok(())
    } else {
        Err(invalid(format!(
            "\"name\" is {name:?}: it must start with a letter or digit and contain only letters, digits, '_', '.', '-'"
        )))
    }
}

fn validate_type(field: &str, t: &str) -> Result<(), CniError> {
    if t.is_empty() || t.contains('/') || t.contains('\\') || t == "." || t == ".." {
        return Err(invalid(format!(
            "{field} is {t:?}: it must be a plugin file name (no '/')"
        )));
    }
    Ok(())
}

impl NetConf {
    /// The `cniVersion` of a configuration that may not parse otherwise, so an error
    /// about it is still written in the version the runtime reads.
    pub fn sniff_version(bytes: &[u8]) -> Option<CniVersion> {
        let v: Value = serde_json::from_slice(bytes).ok()?;
        v.get("cniVersion")?.as_str()?.parse().ok()
    }

    /// Parses and checks the configuration from stdin.
    pub fn parse(bytes: &[u8]) -> Result<Self, CniError> {
        if bytes.len() > MAX_CONFIG_BYTES {
            return Err(invalid(format!(
                "the configuration is {} bytes; at most {MAX_CONFIG_BYTES} are read",
                bytes.len()
            )));
        }
        let value: Value = serde_json::from_slice(bytes).map_err(|e| {
            CniError::new(
                ErrorCode::DecodingFailure,
                "cannot decode the network configuration",
                format!("stdin is not JSON: {e}"),
            )
        })?;
        if !value.is_object() {
            return Err(CniError::new(
                ErrorCode::DecodingFailure,
                "cannot decode the network configuration",
                "stdin must be a JSON object",
            ));
        }
        let raw = Raw::deserialize(&value).map_err(|e| invalid(e.to_string()))?;
        let cni_version = raw
            .cni_version
            .as_deref()
            .ok_or_else(|| invalid("\"cniVersion\" is missing"))?
            .parse::<CniVersion>()?;
        let name = raw.name.ok_or_else(|| invalid("\"name\" is missing"))?;
        validate_name(&name)?;
        let plugin_type = raw
            .plugin_type
            .ok_or_else(|| invalid("\"type\" is missing"))?;
        validate_type("\"type\"", &plugin_type)?;
        let socket = raw.socket.unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET));
        if !socket.is_absolute() {
            return Err(invalid(format!(
                "\"socket\" is {:?}: it must be an absolute path",
                socket.display()
            )));
        }
        if let Some(n) = &raw.network
            && (n.is_empty() || n.len() > 64 || n.contains(['/', '\0']))
        {
            return Err(invalid(format!(
                "\"network\" is {n:?}: it must be a weft network name"
            )));
        }
        if let Some(mtu) = raw.mtu
            && !(576..=65000).contains(&mtu)
        {
            return Err(invalid(format!(
                "\"mtu\" is {mtu}: it must be between 576 and 65000"
            )));
        }
        if raw.ip_masq == Some(true) {
            return Err(CniError::new(
                ErrorCode::UnsupportedField,
                "unsupported field in network configuration",
                "\"ipMasq\": true: weft-cni does not masquerade; chain the reference \"portmap\" plugin or drop the key",
            ));
        }
        let gateway = match raw.gateway.as_deref() {
            None => None,
            Some("host") => Some(WeftGateway::Host),
            Some(s) => Some(WeftGateway::Address(s.parse().map_err(|_| {
                invalid(format!(
                    "\"gateway\" is {s:?}: it must be an IP address or \"host\""
                ))
            })?)),
        };
        if let (Some(WeftGateway::Address(gw)), Some(subnet)) = (gateway, raw.subnet)
            && !subnet.contains(&gw)
        {
            return Err(invalid(format!(
                "\"gateway\" {gw} is not inside \"subnet\" {subnet}"
            )));
        }
        let ipam_type = match raw.ipam {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) if m.is_empty() => None,
            Some(Value::Object(m)) => match m.get("type") {
                Some(Value::String(t)) => {
                    validate_type("\"ipam.type\"", t)?;
                    Some(t.clone())
                }
                _ => return Err(invalid("\"ipam\" has no \"type\" string")),
            },
            Some(_) => return Err(invalid("\"ipam\" must be an object")),
        };
        if ipam_type.is_some() && raw.subnet.is_some() {
            return Err(invalid(
                "both \"ipam\" and \"subnet\" are set: \"subnet\" is for weft's own IPAM; put the range in the \"ipam\" section instead",
            ));
        }
        let prev_result = raw
            .prev_result
            .as_ref()
            .map(|v| CniResult::from_value(v, "prevResult"))
            .transpose()?;
        let runtime = raw.runtime_config.unwrap_or_default();
        Ok(Self {
            cni_version,
            name,
            plugin_type,
            socket,
            network: raw.network,
            subnet: raw.subnet,
            mtu: raw.mtu,
            gateway,
            routes: raw.routes,
            ipam_type,
            dns: raw.dns,
            prev_result,
            valid_attachments: raw.valid_attachments,
            runtime_ips: runtime.ips,
            runtime_mac: runtime.mac,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<NetConf, CniError> {
        NetConf::parse(s.as_bytes())
    }

    #[test]
    fn a_minimal_config_gets_defaults() {
        let c = parse(r#"{"cniVersion":"1.0.0","name":"weftnet","type":"weft-cni"}"#).unwrap();
        assert_eq!(c.cni_version, CniVersion::V1_0_0);
        assert_eq!(c.socket, PathBuf::from(DEFAULT_SOCKET));
        assert_eq!(c.ipam_type, None);
        assert!(c.prev_result.is_none());
    }

    #[test]
    fn weft_keys_and_runtime_keys_are_read() {
        let c = parse(
            r#"{"cniVersion":"1.1.0","name":"n1","type":"weft-cni","socket":"/tmp/h/weft.sock",
                "network":"blue","subnet":"10.40.1.0/24","mtu":1400,"gateway":"10.40.1.1",
                "routes":[{"dst":"10.50.0.0/16"}],"dns":{"nameservers":["10.40.1.53"]},
                "runtimeConfig":{"ips":["10.40.1.9/24"],"mac":"02:00:00:00:00:09","portMappings":[]},
                "capabilities":{"ips":true},"cni.dev/valid-attachments":[{"containerID":"c1","ifname":"eth0"}],
                "prevResult":{"cniVersion":"1.1.0","interfaces":[],"ips":[]},"somethingElse":1}"#,
        )
        .unwrap();
        assert_eq!(c.network.as_deref(), Some("blue"));
        assert_eq!(
            c.gateway,
            Some(WeftGateway::Address("10.40.1.1".parse().unwrap()))
        );
        assert_eq!(c.routes.len(), 1);
        assert_eq!(c.runtime_ips.len(), 1);
        assert_eq!(c.valid_attachments.as_ref().unwrap()[0].container_id, "c1");
        assert!(c.prev_result.is_some());
        let h = parse(r#"{"cniVersion":"1.0.0","name":"n","type":"weft-cni","gateway":"host"}"#)
            .unwrap();
        assert_eq!(h.gateway, Some(WeftGateway::Host));
    }

    #[test]
    fn delegated_ipam_is_recognised() {
        let c = parse(
            r#"{"cniVersion":"0.4.0","name":"n","type":"weft-cni","ipam":{"type":"host-local","subnet":"10.1.0.0/24"}}"#,
        )
        .unwrap();
        assert_eq!(c.ipam_type.as_deref(), Some("host-local"));
        let c = parse(r#"{"cniVersion":"0.4.0","name":"n","type":"weft-cni","ipam":{}}"#).unwrap();
        assert_eq!(c.ipam_type, None);
    }

    #[test]
    fn bad_configs_get_the_right_codes() {
        let code = |s: &str| parse(s).unwrap_err().code;
        assert_eq!(code("{not json"), ErrorCode::DecodingFailure);
        assert_eq!(code("[1,2]"), ErrorCode::DecodingFailure);
        assert_eq!(
            code(r#"{"name":"n","type":"weft-cni"}"#),
            ErrorCode::InvalidConfig
        );
        assert_eq!(
            code(r#"{"cniVersion":"0.2.0","name":"n","type":"weft-cni"}"#),
            ErrorCode::IncompatibleVersion
        );
        assert_eq!(
            code(r#"{"cniVersion":"1.0.0","name":"-n","type":"weft-cni"}"#),
            ErrorCode::InvalidConfig
        );
        assert_eq!(
            code(r#"{"cniVersion":"1.0.0","name":"n","type":"../x"}"#),
            ErrorCode::InvalidConfig
        );
        assert_eq!(
            code(r#"{"cniVersion":"1.0.0","name":"n","type":"w","socket":"rel/weft.sock"}"#),
            ErrorCode::InvalidConfig
        );
        assert_eq!(
            code(r#"{"cniVersion":"1.0.0","name":"n","type":"w","mtu":70000}"#),
            ErrorCode::InvalidConfig
        );
        assert_eq!(
            code(r#"{"cniVersion":"1.0.0","name":"n","type":"w","mtu":"big"}"#),
            ErrorCode::InvalidConfig
        );
        assert_eq!(
            code(r#"{"cniVersion":"1.0.0","name":"n","type":"w","subnet":"10.0.0.0/33"}"#),
            ErrorCode::InvalidConfig
        );
        assert_eq!(
            code(
                r#"{"cniVersion":"1.0.0","name":"n","type":"w","subnet":"10.0.0.0/24","gateway":"10.0.1.1"}"#
            ),
            ErrorCode::InvalidConfig
        );
        assert_eq!(
            code(r#"{"cniVersion":"1.0.0","name":"n","type":"w","ipam":{"x":1}}"#),
            ErrorCode::InvalidConfig
        );
        assert_eq!(
            code(
                r#"{"cniVersion":"1.0.0","name":"n","type":"w","ipam":{"type":"host-local"},"subnet":"10.0.0.0/24"}"#
            ),
            ErrorCode::InvalidConfig
        );
        let e = parse(r#"{"cniVersion":"1.0.0","name":"n","type":"w","ipMasq":true}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::UnsupportedField);
        assert!(e.details.contains("ipMasq"), "{e}");
        assert_eq!(
            code(r#"{"cniVersion":"1.0.0","name":"n","type":"w","prevResult":{"ips":"x"}}"#),
            ErrorCode::DecodingFailure
        );
        assert_eq!(
            NetConf::sniff_version(br#"{"cniVersion":"0.4.0","name":"-"}"#),
            Some(CniVersion::V0_4_0)
        );
    }
}
