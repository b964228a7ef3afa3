//! A router's long-term X25519 identity for the Noise handshake.
//!
//! Generated once (by `snow` with `ring`'s system RNG) and persisted by the router as the
//! 64 hex digits of the private key; the public key is always recomputed from the private
//! one, so a stored file cannot hold a mismatched pair. The public key is what peers see
//! at the end of the handshake (and what gossip can bind to a peer name). `Debug` never
//! prints the private key.

use std::fmt;

use snow::params::DHChoice;
use snow::resolvers::{CryptoResolver, DefaultResolver};

/// Length of an X25519 key.
pub const KEY_LEN: usize = 32;

/// Why a stored key could not be loaded or a key generated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The stored text is not 64 hex digits.
    #[error(
        "the router key file must hold 64 hex digits (an X25519 private key); delete it to \
         generate a new key"
    )]
    BadHex,
    /// The crypto backend could not produce a key (no system RNG).
    #[error("could not generate an X25519 key: {0}")]
    Backend(&'static str),
}

impl KeyError {
    /// A stable name for logs and counters.
    pub fn name(&self) -> &'static str {
        match self {
            Self::BadHex => "key_bad_hex",
            Self::Backend(_) => "key_backend",
        }
    }
}

/// An X25519 key pair whose public half always matches its private half.
#[derive(Clone, PartialEq, Eq)]
pub struct StaticKeypair {
    private: [u8; KEY_LEN],
    public: [u8; KEY_LEN],
}

impl fmt::Debug for StaticKeypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticKeypair")
            .field("public", &hex(&self.public))
            .finish_non_exhaustive()
    }
}

impl StaticKeypair {
    /// A fresh key pair from the system RNG.
    pub fn generate() -> Result<Self, KeyError> {
        let params = super::handshake::noise_params(false)
            .map_err(|_| KeyError::Backend("snow does not support X25519"))?;
        let builder = snow::Builder::new(params);
        let pair = builder
            .generate_keypair()
            .map_err(|_| KeyError::Backend("snow could not generate a keypair"))?;
        let private = <[u8; KEY_LEN]>::try_from(pair.private.as_slice())
            .map_err(|_| KeyError::Backend("unexpected private key length"))?;
        Self::from_private(private)
    }

    /// The pair for a known private key (public key recomputed by X25519).
    pub fn from_private(private: [u8; KEY_LEN]) -> Result<Self, KeyError> {
        let mut dh = DefaultResolver
            .resolve_dh(&DHChoice::Curve25519)
            .ok_or(KeyError::Backend("no X25519 implementation"))?;
        dh.set(&private);
        let public = <[u8; KEY_LEN]>::try_from(dh.pubkey())
            .map_err(|_| KeyError::Backend("unexpected public key length"))?;
        Ok(Self { private, public })
    }

    /// The private key, for handing to the Noise handshake.
    pub fn private(&self) -> &[u8; KEY_LEN] {
        &self.private
    }

    /// The public key peers learn in the handshake.
    pub fn public(&self) -> &[u8; KEY_LEN] {
        &self.public
    }

    /// The persisted form: the private key as 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex(&self.private)
    }

    /// Loads the persisted form; surrounding whitespace (a trailing newline) is ignored.
    pub fn from_hex(text: &str) -> Result<Self, KeyError> {
        let text = text.trim();
        let digits = text.as_bytes();
        if digits.len() != 2 * KEY_LEN {
            return Err(KeyError::BadHex);
        }
        let mut private = [0u8; KEY_LEN];
        for (byte, pair) in private.iter_mut().zip(digits.chunks_exact(2)) {
            let [hi, lo] = pair else {
                return Err(KeyError::BadHex);
            };
            *byte = (nibble(*hi)? << 4) | nibble(*lo)?;
        }
        Self::from_private(private)
    }
}

/// Lowercase hex of `bytes` (also used to show public keys in status and logs).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

fn nibble(digit: u8) -> Result<u8, KeyError> {
    match digit {
        b'0'..=b'9' => Ok(digit - b'0'),
        b'a'..=b'f' => Ok(digit - b'a' + 10),
        b'A'..=b'F' => Ok(digit - b'A' + 10),
        _ => Err(KeyError::BadHex),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_persist_load_round_trip() {
        let k = StaticKeypair::generate().unwrap();
        let text = k.to_hex();
        assert_eq!(text.len(), 64);
        assert_eq!(StaticKeypair::from_hex(&format!("{text}\n")).unwrap(), k);
        assert_eq!(
            StaticKeypair::from_hex(&text.to_uppercase()).unwrap(),
            k,
            "upper case accepted"
        );
        let other = StaticKeypair::generate().unwrap();
        assert_ne!(other.public(), k.public());
        assert!(
            !format!("{k:?}").contains(&text),
            "Debug leaks the private key"
        );
    }

    #[test]
    fn public_key_matches_rfc7748_vector() {
        // RFC 7748 §6.1, Alice's key pair.
        let private = "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a";
        let public = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a";
        let k = StaticKeypair::from_hex(private).unwrap();
        assert_eq!(hex(k.public()), public);
    }

    #[test]
    fn bad_hex_is_refused() {
        for bad in [
            "",
            "00",
            &"g".repeat(64),
            &"0".repeat(63),
            &"0".repeat(66),
            "é",
        ] {
            assert_eq!(
                StaticKeypair::from_hex(bad),
                Err(KeyError::BadHex),
                "{bad:?}"
            );
        }
    }
}
