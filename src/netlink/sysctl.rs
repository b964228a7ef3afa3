//! Per-link sysctls (`/proc/sys/net/<family>/conf/<ifname>/<option>`).

use std::fs::OpenOptions;
use std::io::Write;

use super::{NetlinkError, validate_ifname};

/// Writes the per-link sysctl `key` of `ifname` in the calling thread's network
/// namespace. `key` is `"<family>/<option>"`, e.g. `"ipv4/rp_filter"`, or a bare
/// option meaning IPv6: `"disable_ipv6"` (= `"ipv6/disable_ipv6"`) writes
/// `/proc/sys/net/ipv6/conf/<ifname>/disable_ipv6` (the host-side veth must carry
/// no IPv6 so the host stack stays out of the overlay).
pub fn set_link_sysctl(ifname: &str, key: &str, value: &str) -> Result<(), NetlinkError> {
    let op = "set_link_sysctl";
    validate_ifname(ifname).map_err(|reason| NetlinkError::InvalidArgument {
        op,
        value: ifname.into(),
        reason,
    })?;
    let invalid_key = |reason| NetlinkError::InvalidArgument {
        op,
        value: key.into(),
        reason,
    };
    let (family, option) = key.split_once('/').unwrap_or(("ipv6", key));
    if !matches!(family, "ipv4" | "ipv6") {
        return Err(invalid_key("family must be ipv4 or ipv6"));
    }
    if option.is_empty() || option.contains('/') || option == "." || option == ".." {
        return Err(invalid_key("option must be one path component"));
    }
    let path = format!("/proc/sys/net/{family}/conf/{ifname}/{option}");
    OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|mut file| file.write_all(value.as_bytes()))
        .map_err(|source| NetlinkError::Sysctl { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_keys_are_refused_before_touching_proc() {
        for key in ["", "..", "ipx/forwarding", "ipv6/../x", "ipv6/", "ipv6/a/b"] {
            let err = set_link_sysctl("lo", key, "1").unwrap_err();
            assert!(
                matches!(err, NetlinkError::InvalidArgument { .. }),
                "{key}: {err:?}"
            );
        }
        let err = set_link_sysctl("../all", "ipv6/disable_ipv6", "1").unwrap_err();
        assert!(matches!(err, NetlinkError::InvalidArgument { .. }));
    }
}
