//! The network configuration list `weft cni install` writes for kubelet, containerd,
//! Podman and cnitool: weft first, the reference `portmap` after it for host ports.

use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use serde_json::{Map, Value};

use crate::version::CniVersion;

/// What goes into the conflist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConflistSpec {
    /// The CNI network name (runtimes select networks by it).
    pub name: String,
    /// The spec version; 1.0.0 is what Debian's libcni, Podman 4 and containerd 1.6 read.
    pub cni_version: CniVersion,
    /// The plugin binary's name in the plugin directory.
    pub plugin_type: String,
    /// The router's API socket, when not the default.
    pub socket: Option<PathBuf>,
    /// The weft network, when not `default`.
    pub network: Option<String>,
    /// weft IPAM's subnet, when not the router's default.
    pub subnet: Option<IpNet>,
    /// The container MTU, when not the router's overlay MTU.
    pub mtu: Option<u32>,
    /// The default gateway: an address or `host`.
    pub gateway: Option<String>,
    /// Chain the reference `portmap` plugin (host ports, `hostPort` in Kubernetes).
    pub portmap: bool,
}

impl ConflistSpec {
    /// The conflist as JSON.
    pub fn to_json(&self) -> Value {
        let mut weft = Map::new();
        weft.insert("type".into(), self.plugin_type.clone().into());
        if let Some(s) = &self.socket {
            weft.insert("socket".into(), s.to_string_lossy().into_owned().into());
        }
        if let Some(n) = &self.network {
            weft.insert("network".into(), n.clone().into());
        }
        if let Some(s) = &self.subnet {
            weft.insert("subnet".into(), s.to_string().into());
        }
        if let Some(m) = self.mtu {
            weft.insert("mtu".into(), m.into());
        }
        if let Some(g) = &self.gateway {
            weft.insert("gateway".into(), g.clone().into());
        }
        let mut plugins = vec![Value::Object(weft)];
        if self.portmap {
            plugins.push(serde_json::json!({
                "type": "portmap",
                "capabilities": { "portMappings": true }
            }));
        }
        serde_json::json!({
            "cniVersion": self.cni_version.as_str(),
            "name": self.name,
            "plugins": plugins,
        })
    }

    /// The configuration the runtime hands weft for this list (its plugin object with
    /// `name` and `cniVersion`), to check a generated list before installing it.
    pub fn plugin_config(&self) -> Value {
        let mut v = self.to_json()["plugins"][0].clone();
        if let Some(o) = v.as_object_mut() {
            o.insert("name".into(), self.name.clone().into());
            o.insert("cniVersion".into(), self.cni_version.as_str().into());
        }
        v
    }
}

/// Whether `gateway` is an address or `host` (as the plugin will accept it).
pub fn valid_gateway(gateway: &str) -> bool {
    gateway == "host" || gateway.parse::<IpAddr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NetConf;

    #[test]
    fn the_installed_list_is_one_the_plugin_accepts() {
        let spec = ConflistSpec {
            name: "weft".into(),
            cni_version: CniVersion::V1_0_0,
            plugin_type: "weft-cni".into(),
            socket: Some("/run/weft/weft.sock".into()),
            network: None,
            subnet: Some("10.32.0.0/12".parse().unwrap()),
            mtu: Some(1376),
            gateway: Some("host".into()),
            portmap: true,
        };
        let v = spec.to_json();
        assert_eq!(v["plugins"][1]["type"], "portmap");
        assert_eq!(v["plugins"][0]["subnet"], "10.32.0.0/12");
        let conf = NetConf::parse(spec.plugin_config().to_string().as_bytes()).unwrap();
        assert_eq!(conf.name, "weft");
        assert_eq!(conf.mtu, Some(1376));
        assert!(valid_gateway("10.0.0.1") && valid_gateway("host") && !valid_gateway("x"));
    }
}
