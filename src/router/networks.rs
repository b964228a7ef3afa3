//! The weft networks of this router and their VNIs.
//!
//! A network is a broadcast domain: frames never cross between networks, and each one
//! travels between hosts under its own VXLAN network identifier. The default network's
//! VNI is set at launch (`--vni`) so an operator can match an existing VTEP; a named
//! network gets its VNI from `weft network add --vni`, or one derived from its name, so
//! that every host that names the same network agrees on it without coordination.

use std::collections::BTreeMap;

use learning::NetworkId;
use tunnel::Vni;

/// The network `attach` and `expose` use when none is named.
pub(crate) const DEFAULT_NETWORK: &str = "default";

/// One network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NetworkEntry {
    /// Its id inside the switch.
    pub id: NetworkId,
    /// Its VNI on the wire.
    pub vni: Vni,
}

/// The registry of networks, by name.
#[derive(Debug, Default)]
pub(crate) struct Networks {
    by_name: BTreeMap<String, NetworkEntry>,
    next_id: u16,
}

/// Why a network cannot be declared.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum NetworkError {
    /// Bad characters or length.
    #[error("invalid network name {0:?}: use 1-32 letters, digits, '.', '_' or '-'")]
    InvalidName(String),
    /// Another network already travels under this VNI.
    #[error("VNI {vni} is already used by network {other}")]
    VniInUse {
        /// The VNI.
        vni: Vni,
        /// The network that has it.
        other: String,
    },
    /// The network exists with a different VNI.
    #[error("network {name} already exists with VNI {vni}")]
    Exists {
        /// The network.
        name: String,
        /// Its VNI.
        vni: Vni,
    },
}

/// Checks a network name.
pub(crate) fn validate_name(name: &str) -> Result<(), NetworkError> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(NetworkError::InvalidName(name.to_string()))
    }
}

/// The VNI a named network gets when none is chosen: FNV-1a of the name folded to 24
/// bits, kept clear of the small numbers operators pick by hand.
pub(crate) fn derived_vni(name: &str) -> Vni {
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    let v = (h ^ (h >> 24)) & Vni::MAX;
    let v = if v < 0x1000 { v + 0x1000 } else { v };
    // In range by construction (0x1000 ..= 2^24 - 1); the fallback is never taken.
    Vni::new(v).unwrap_or(DERIVED_MIN)
}

/// The smallest derived VNI.
const DERIVED_MIN: Vni = crate::api::codec::const_vni(0x1000);

impl Networks {
    /// Declares a network (idempotent when the VNI matches).
    pub(crate) fn add(&mut self, name: &str, vni: Vni) -> Result<NetworkEntry, NetworkError> {
        validate_name(name)?;
        if let Some(e) = self.by_name.get(name) {
            return if e.vni == vni {
                Ok(*e)
            } else {
                Err(NetworkError::Exists {
                    name: name.to_string(),
                    vni: e.vni,
                })
            };
        }
        if let Some((other, _)) = self.by_name.iter().find(|(_, e)| e.vni == vni) {
            return Err(NetworkError::VniInUse {
                vni,
                other: other.clone(),
            });
        }
        let entry = NetworkEntry {
            id: NetworkId(self.next_id),
            vni,
        };
        self.next_id = self.next_id.wrapping_add(1);
        self.by_name.insert(name.to_string(), entry);
        Ok(entry)
    }

    /// Looks a network up by name.
    pub(crate) fn get(&self, name: &str) -> Option<NetworkEntry> {
        self.by_name.get(name).copied()
    }

    /// Forgets a network.
    pub(crate) fn remove(&mut self, name: &str) -> Option<NetworkEntry> {
        self.by_name.remove(name)
    }

    /// All networks, by name.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, NetworkEntry)> {
        self.by_name.iter().map(|(n, e)| (n.as_str(), *e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vni(v: u32) -> Vni {
        Vni::new(v).unwrap()
    }

    #[test]
    fn add_is_idempotent_and_vnis_unique() {
        let mut n = Networks::default();
        let d = n.add(DEFAULT_NETWORK, vni(1)).unwrap();
        assert_eq!(n.add(DEFAULT_NETWORK, vni(1)).unwrap(), d);
        assert!(matches!(
            n.add(DEFAULT_NETWORK, vni(2)),
            Err(NetworkError::Exists { .. })
        ));
        assert!(matches!(
            n.add("blue", vni(1)),
            Err(NetworkError::VniInUse { .. })
        ));
        let b = n.add("blue", derived_vni("blue")).unwrap();
        assert_ne!(b.id, d.id);
        assert!(n.add("bad name", vni(5)).is_err());
    }

    #[test]
    fn derived_vni_is_stable_and_in_range() {
        assert_eq!(derived_vni("blue"), derived_vni("blue"));
        assert_ne!(derived_vni("blue"), derived_vni("green"));
        for name in ["a", "blue", "a-very-long-network-name-0123456"] {
            let v = derived_vni(name).get();
            assert!((0x1000..=0xff_ffff).contains(&v), "{name}: {v}");
        }
    }
}
