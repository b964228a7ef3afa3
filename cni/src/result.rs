//! The ADD result: interfaces, addresses, routes and DNS, written in the version the
//! configuration asked for, and read back from any version (`prevResult`, IPAM answers).

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{CniError, ErrorCode};
use crate::version::CniVersion;

/// An interface the attachment made.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Interface {
    /// Its name (inside the sandbox for container interfaces).
    pub name: String,
    /// Its MAC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// Its MTU (1.1.0 on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// The namespace path for container interfaces; absent for host interfaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    /// A socket for the interface, if any (1.1.0 on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket_path: Option<String>,
    /// A PCI device for the interface, if any (1.1.0 on).
    #[serde(default, rename = "pciID", skip_serializing_if = "Option::is_none")]
    pub pci_id: Option<String>,
}

/// An address the attachment assigned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    /// Address and prefix.
    pub address: IpNet,
    /// The subnet's default gateway, if one exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Index into `interfaces` (absent in IPAM plugin answers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

/// A route the attachment made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultRoute {
    /// Destination.
    pub dst: IpNet,
    /// Next hop; none means the `gateway` of the matching `ips` entry, or on-link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
    /// Path MTU (1.1.0 on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// Advertised MSS (1.1.0 on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advmss: Option<u32>,
    /// Route priority (1.1.0 on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    /// Routing table (1.1.0 on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
    /// Scope (1.1.0 on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<u32>,
}

/// DNS settings for the container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    /// Name servers, in priority order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    /// Local domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Search domains.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    /// Resolver options.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Dns {
    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty()
            && self.domain.is_none()
            && self.search.is_empty()
            && self.options.is_empty()
    }
}

/// A success result (of ADD, or of a delegated IPAM plugin's ADD).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniResult {
    /// Interfaces made.
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    /// Addresses assigned.
    #[serde(default)]
    pub ips: Vec<IpConfig>,
    /// Routes made.
    #[serde(default)]
    pub routes: Vec<ResultRoute>,
    /// DNS settings.
    #[serde(default)]
    pub dns: Dns,
}

impl CniResult {
    /// Reads a result of any version weft speaks (the 0.x `ips[].version` is ignored; the
    /// address says its family).
    pub fn from_value(value: &Value, what: &str) -> Result<Self, CniError> {
        Self::deserialize(value).map_err(|e| {
            CniError::new(
                ErrorCode::DecodingFailure,
                format!("cannot decode {what}"),
                format!("{what} is not a CNI result: {e}"),
            )
        })
    }

    /// Appends `other` (this plugin's own part) to a `prevResult`, moving its interface
    /// indexes past the interfaces already there.
    pub fn append(&mut self, other: Self) {
        let base = self.interfaces.len();
        self.interfaces.extend(other.interfaces);
        self.ips.extend(other.ips.into_iter().map(|mut ip| {
            ip.interface = ip.interface.map(|i| i + base);
            ip
        }));
        self.routes.extend(other.routes);
        if self.dns.is_empty() {
            self.dns = other.dns;
        }
    }

    /// The result as `version` writes it.
    pub fn to_json(&self, version: CniVersion) -> Value {
        let mut out = Map::new();
        out.insert("cniVersion".into(), version.as_str().into());
        let interfaces: Vec<Value> = self
            .interfaces
            .iter()
            .map(|i| {
                let mut i = i.clone();
                if !version.has_v11_fields() {
                    i.mtu = None;
                    i.socket_path = None;
                    i.pci_id = None;
                }
                serde_json::to_value(i).unwrap_or(Value::Null)
            })
            .collect();
        out.insert("interfaces".into(), interfaces.into());
        let ips: Vec<Value> = self
            .ips
            .iter()
            .map(|ip| {
                let mut v = serde_json::to_value(ip).unwrap_or(Value::Null);
                if version.ips_carry_version()
                    && let Some(obj) = v.as_object_mut()
                {
                    let family = if ip.address.addr().is_ipv4() {
                        "4"
                    } else {
                        "6"
                    };
                    obj.insert("version".into(), family.into());
                }
                v
            })
            .collect();
        out.insert("ips".into(), ips.into());
        let routes: Vec<Value> = self
            .routes
            .iter()
            .map(|r| {
                let mut r = r.clone();
                if !version.has_v11_fields() {
                    r.mtu = None;
                    r.advmss = None;
                    r.priority = None;
                    r.table = None;
                    r.scope = None;
                }
                serde_json::to_value(r).unwrap_or(Value::Null)
            })
            .collect();
        out.insert("routes".into(), routes.into());
        out.insert(
            "dns".into(),
            serde_json::to_value(&self.dns).unwrap_or_default(),
        );
        Value::Object(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CniResult {
        CniResult {
            interfaces: vec![Interface {
                name: "eth0".into(),
                mac: Some("02:00:00:00:00:01".into()),
                mtu: Some(1410),
                sandbox: Some("/run/netns/c1".into()),
                ..Interface::default()
            }],
            ips: vec![IpConfig {
                address: "10.40.0.2/24".parse().unwrap(),
                gateway: Some("10.40.0.1".parse().unwrap()),
                interface: Some(0),
            }],
            routes: vec![ResultRoute {
                dst: "0.0.0.0/0".parse().unwrap(),
                gw: None,
                mtu: Some(1400),
                advmss: None,
                priority: None,
                table: None,
                scope: None,
            }],
            dns: Dns::default(),
        }
    }

    #[test]
    fn each_version_gets_its_own_shape() {
        let r = sample();
        let v04 = r.to_json(CniVersion::V0_4_0);
        assert_eq!(v04["cniVersion"], "0.4.0");
        assert_eq!(v04["ips"][0]["version"], "4");
        assert!(v04["interfaces"][0].get("mtu").is_none());
        assert!(v04["routes"][0].get("mtu").is_none());
        let v10 = r.to_json(CniVersion::V1_0_0);
        assert!(v10["ips"][0].get("version").is_none());
        assert!(v10["interfaces"][0].get("mtu").is_none());
        let v11 = r.to_json(CniVersion::V1_1_0);
        assert_eq!(v11["interfaces"][0]["mtu"], 1410);
        assert_eq!(v11["routes"][0]["mtu"], 1400);
        assert_eq!(v11["ips"][0]["interface"], 0);
        // Every version reads back to the same result (minus what it cannot carry).
        let back = CniResult::from_value(&v11, "prevResult").unwrap();
        assert_eq!(back, r);
        let back = CniResult::from_value(&v04, "prevResult").unwrap();
        assert_eq!(back.ips, r.ips);
    }

    #[test]
    fn appending_shifts_interface_indexes() {
        let mut prev = sample();
        prev.dns.nameservers.push("10.0.0.53".into());
        let mut mine = sample();
        mine.interfaces[0].name = "net1".into();
        prev.append(mine);
        assert_eq!(prev.interfaces.len(), 2);
        assert_eq!(prev.ips[1].interface, Some(1));
        assert_eq!(prev.dns.nameservers, vec!["10.0.0.53".to_string()]);
    }

    #[test]
    fn ipam_answers_and_garbage() {
        let ipam: Value = serde_json::json!({
            "cniVersion": "0.4.0",
            "ips": [{"version": "4", "address": "10.1.0.5/24", "gateway": "10.1.0.1"}],
            "dns": {}
        });
        let r = CniResult::from_value(&ipam, "the IPAM answer").unwrap();
        assert_eq!(r.ips[0].interface, None);
        let bad = serde_json::json!({"ips": [{"address": "10.1.0.500/24"}]});
        let e = CniResult::from_value(&bad, "prevResult").unwrap_err();
        assert_eq!(e.code, ErrorCode::DecodingFailure);
    }
}
