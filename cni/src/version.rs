//! Spec versions: which ones weft speaks and what differs between them.

use std::fmt;
use std::str::FromStr;

use crate::error::{CniError, ErrorCode};

/// A CNI spec version weft can be configured with. Results are always written in the
/// configuration's version: libcni 1.1 (Debian's cnitool, Podman 4, containerd 1.6)
/// rejects a result newer than it knows, even when the plugin knows more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CniVersion {
    /// 0.3.0: the first version with the rich result (interfaces, ips, routes).
    V0_3_0,
    /// 0.3.1: a typo fix of 0.3.0.
    V0_3_1,
    /// 0.4.0: adds CHECK and `prevResult` on DEL.
    V0_4_0,
    /// 1.0.0: drops `version` from `ips`.
    V1_0_0,
    /// 1.1.0: adds STATUS, GC, interface `mtu`/`socketPath`/`pciID`, route details.
    V1_1_0,
}

/// Every version weft accepts, oldest first (the `VERSION` answer lists these).
pub const SUPPORTED: [CniVersion; 5] = [
    CniVersion::V0_3_0,
    CniVersion::V0_3_1,
    CniVersion::V0_4_0,
    CniVersion::V1_0_0,
    CniVersion::V1_1_0,
];

impl CniVersion {
    /// The newest version, used where the input names none (errors before the config
    /// could be read).
    pub const LATEST: Self = Self::V1_1_0;

    /// The version as the spec writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V0_3_0 => "0.3.0",
            Self::V0_3_1 => "0.3.1",
            Self::V0_4_0 => "0.4.0",
            Self::V1_0_0 => "1.0.0",
            Self::V1_1_0 => "1.1.0",
        }
    }

    /// Whether CHECK exists in this version (0.4.0 on).
    pub fn has_check(self) -> bool {
        self >= Self::V0_4_0
    }

    /// Whether STATUS and GC exist in this version (1.1.0 on).
    pub fn has_status_and_gc(self) -> bool {
        self >= Self::V1_1_0
    }

    /// Whether each entry of a result's `ips` carries `"version": "4"|"6"` (before 1.0.0).
    pub fn ips_carry_version(self) -> bool {
        self < Self::V1_0_0
    }

    /// Whether interfaces carry `mtu` and routes carry `mtu`/`advmss`/... (1.1.0 on).
    pub fn has_v11_fields(self) -> bool {
        self >= Self::V1_1_0
    }
}

impl fmt::Display for CniVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CniVersion {
    type Err = CniError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SUPPORTED
            .iter()
            .copied()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| {
                CniError::new(
                    ErrorCode::IncompatibleVersion,
                    format!("unsupported cniVersion {s:?}"),
                    format!(
                        "weft-cni speaks CNI {}; set \"cniVersion\" in the network configuration to one of them",
                        supported_list()
                    ),
                )
            })
    }
}

fn supported_list() -> String {
    SUPPORTED
        .iter()
        .map(|v| v.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `VERSION` answer: `cniVersion` echoes the input's when weft knows it (the spec:
/// "the value of cniVersion specified on input"), else the newest.
pub fn version_answer(input: Option<&str>) -> serde_json::Value {
    let echoed = input
        .and_then(|s| s.parse::<CniVersion>().ok())
        .unwrap_or(CniVersion::LATEST);
    serde_json::json!({
        "cniVersion": echoed.as_str(),
        "supportedVersions": SUPPORTED.iter().map(|v| v.as_str()).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_order_and_features() {
        for v in SUPPORTED {
            assert_eq!(v.as_str().parse::<CniVersion>().unwrap(), v);
        }
        let e = "0.2.0".parse::<CniVersion>().unwrap_err();
        assert_eq!(e.code, ErrorCode::IncompatibleVersion);
        assert!(e.details.contains("1.0.0"), "{}", e.details);
        assert!("1.0".parse::<CniVersion>().is_err());
        assert!(!CniVersion::V0_3_1.has_check());
        assert!(CniVersion::V0_4_0.has_check());
        assert!(CniVersion::V0_4_0.ips_carry_version());
        assert!(!CniVersion::V1_0_0.ips_carry_version());
        assert!(!CniVersion::V1_0_0.has_status_and_gc());
        assert!(CniVersion::V1_1_0.has_v11_fields());
    }

    #[test]
    fn version_answer_echoes_known_input() {
        let a = version_answer(Some("1.0.0"));
        assert_eq!(a["cniVersion"], "1.0.0");
        assert_eq!(a["supportedVersions"].as_array().unwrap().len(), 5);
        assert_eq!(version_answer(Some("9.9.9"))["cniVersion"], "1.1.0");
        assert_eq!(version_answer(None)["cniVersion"], "1.1.0");
    }
}
