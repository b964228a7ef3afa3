//! Peer identity: the stable [`PeerName`], the human [`Nickname`], and the per-run uid.
//!
//! Contract: a `PeerName` is six bytes chosen once per host and persisted by the caller;
//! it is never derived from machine ids (cloned VMs share those, weave#2427/#3438).
//! A `Nickname` is at most [`Nickname::MAX_LEN`] bytes of UTF-8, so it always fits the wire
//! format. The uid (a plain `u64`) is random per process run and tells incarnations of the
//! same name apart.

use std::fmt;
use std::str::FromStr;

use rand::Rng;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A peer's stable 48-bit name, shown like a MAC address (`aa:bb:cc:dd:ee:ff`).
///
/// Ordering is byte-wise; routes and duplicate-connection resolution break ties with it,
/// so every peer must order names the same way.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PeerName(pub [u8; 6]);

impl PeerName {
    /// Draws a fresh name from the caller's RNG with the locally-administered, unicast
    /// bit pattern, so it can never equal a vendor-assigned MAC.
    pub fn random<R: Rng + ?Sized>(rng: &mut R) -> Self {
        let mut bytes = [0u8; 6];
        rng.fill_bytes(&mut bytes);
        bytes[0] = (bytes[0] | 0x02) & !0x01;
        Self(bytes)
    }

    /// The raw bytes, as they appear on the wire.
    pub fn octets(self) -> [u8; 6] {
        self.0
    }
}

impl fmt::Display for PeerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl fmt::Debug for PeerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a string is not a [`PeerName`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid peer name {input:?}: expected six hex bytes separated by ':', like 0a:1b:2c:3d:4e:5f"
)]
pub struct ParsePeerNameError {
    /// The rejected text (truncated to 64 bytes so a huge input does not bloat the error).
    pub input: String,
}

impl FromStr for PeerName {
    type Err = ParsePeerNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParsePeerNameError {
            input: truncate_str(s, 64).to_owned(),
        };
        let mut bytes = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut bytes {
            let part = parts.next().ok_or_else(err)?;
            if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(err());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| err())?;
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(Self(bytes))
    }
}

impl Serialize for PeerName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PeerName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A human-readable peer label (the host name by default), bounded so it always fits the
/// wire format's one-byte length.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize)]
#[serde(transparent)]
pub struct Nickname(String);

/// Why a string cannot be a [`Nickname`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("nickname is {len} bytes long; at most {max} bytes are allowed", max = Nickname::MAX_LEN)]
pub struct NicknameTooLong {
    /// The rejected length in bytes.
    pub len: usize,
}

impl Nickname {
    /// The longest nickname in bytes (UTF-8).
    pub const MAX_LEN: usize = 64;

    /// Accepts `text` if it fits [`Self::MAX_LEN`].
    pub fn new(text: impl Into<String>) -> Result<Self, NicknameTooLong> {
        let text = text.into();
        if text.len() > Self::MAX_LEN {
            return Err(NicknameTooLong { len: text.len() });
        }
        Ok(Self(text))
    }

    /// Cuts `text` to at most [`Self::MAX_LEN`] bytes on a character boundary; for host
    /// names, which the user did not choose with this limit in mind.
    pub fn truncated(text: &str) -> Self {
        Self(truncate_str(text, Self::MAX_LEN).to_owned())
    }

    /// The nickname text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Nickname {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Nickname {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// The longest prefix of `text` of at most `max` bytes that ends on a char boundary.
fn truncate_str(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn display_and_parse_round_trip() {
        let name = PeerName([0x0a, 0x1b, 0x2c, 0x3d, 0x4e, 0xff]);
        let text = name.to_string();
        assert_eq!(text, "0a:1b:2c:3d:4e:ff");
        assert_eq!(text.parse::<PeerName>(), Ok(name));
        assert_eq!("0A:1B:2C:3D:4E:FF".parse::<PeerName>(), Ok(name));
    }

    #[test]
    fn parse_rejects_malformed_names() {
        for bad in [
            "",
            "0a:1b:2c:3d:4e",
            "0a:1b:2c:3d:4e:5f:60",
            "0a:1b:2c:3d:4e:5",
            "0a:1b:2c:3d:4e:5g",
            "0a-1b-2c-3d-4e-5f",
            "+a:1b:2c:3d:4e:5f",
            "é0:1b:2c:3d:4e:5f",
        ] {
            assert!(bad.parse::<PeerName>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn random_names_are_local_unicast_and_differ() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let names: Vec<PeerName> = (0..64).map(|_| PeerName::random(&mut rng)).collect();
        for name in &names {
            assert_eq!(name.0[0] & 0x02, 0x02, "{name} not locally administered");
            assert_eq!(name.0[0] & 0x01, 0x00, "{name} is multicast");
        }
        let distinct: std::collections::BTreeSet<_> = names.iter().collect();
        assert_eq!(distinct.len(), names.len());
    }

    #[test]
    fn nickname_is_bounded() {
        assert!(Nickname::new("a".repeat(Nickname::MAX_LEN)).is_ok());
        assert_eq!(
            Nickname::new("a".repeat(Nickname::MAX_LEN + 1)),
            Err(NicknameTooLong {
                len: Nickname::MAX_LEN + 1
            })
        );
        // 'é' is two bytes: truncation must not split it.
        let long = "é".repeat(Nickname::MAX_LEN);
        let cut = Nickname::truncated(&long);
        assert!(cut.as_str().len() <= Nickname::MAX_LEN);
        assert_eq!(cut.as_str().chars().count(), Nickname::MAX_LEN / 2);
    }

    #[test]
    fn peer_name_serializes_as_text() {
        let name = PeerName([2, 0, 0, 0, 0, 1]);
        let json = serde_json::to_string(&name).unwrap();
        assert_eq!(json, "\"02:00:00:00:00:01\"");
        let back: PeerName = serde_json::from_str(&json).unwrap();
        assert_eq!(back, name);
    }
}
