//! The mesh password → the 32-byte Noise pre-shared key.
//!
//! Argon2id (RFC 9106) with fixed parameters: every peer must derive the same key from the
//! same password, so nothing here may vary per host. The salt is a fixed domain string
//! rather than a random one for the same reason; it separates weft's key from any other
//! use of the password. The cost makes each guess of an offline dictionary attack (possible
//! only for an active attacker holding a handshake transcript: the key enters Noise after
//! the DH tokens) cost [`MEMORY_KIB`] of memory and [`ITERATIONS`] passes.
//!
//! The key is derived once at launch; changing these constants changes every key, so they
//! are part of the protocol (bump the salt's version with them).

use argon2::{Algorithm, Argon2, Params, Version};

/// Argon2id memory cost in KiB: 64 MiB.
pub const MEMORY_KIB: u32 = 64 * 1024;

/// Argon2id passes over the memory.
pub const ITERATIONS: u32 = 3;

/// Argon2id lanes (parallelism): 1, so the result never depends on a host's core count.
pub const LANES: u32 = 1;

/// The fixed salt: a domain string naming weft's mesh key, version 1.
pub const SALT: &[u8] = b"weft-mesh-psk-v1";

/// Length of the derived pre-shared key (Noise's PSK length).
pub const PSK_LEN: usize = 32;

/// Why a password could not become a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    /// An empty password would protect nothing; refuse it rather than run "encrypted".
    #[error("the password is empty: put the mesh password in --password-file or WEFT_PASSWORD")]
    Empty,
    /// The KDF refused its input (a password longer than Argon2's 4 GiB limit).
    #[error("password key derivation failed: {0}")]
    Kdf(String),
}

impl PasswordError {
    /// A stable name for logs and counters.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Empty => "password_empty",
            Self::Kdf(_) => "password_kdf_failed",
        }
    }
}

/// Derives the mesh's pre-shared key from `password` (bytes exactly as given: the caller
/// strips a trailing newline from a password file). Deterministic; takes a few hundred
/// milliseconds in a release build, by design.
pub fn psk_from_password(password: &[u8]) -> Result<[u8; PSK_LEN], PasswordError> {
    derive(password, MEMORY_KIB, ITERATIONS)
}

fn derive(
    password: &[u8],
    memory_kib: u32,
    iterations: u32,
) -> Result<[u8; PSK_LEN], PasswordError> {
    if password.is_empty() {
        return Err(PasswordError::Empty);
    }
    let params = Params::new(memory_kib, iterations, LANES, Some(PSK_LEN))
        .map_err(|e| PasswordError::Kdf(e.to_string()))?;
    let mut psk = [0u8; PSK_LEN];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(password, SALT, &mut psk)
        .map_err(|e| PasswordError::Kdf(e.to_string()))?;
    Ok(psk)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Light parameters so the property tests stay fast in debug builds; the real
    /// parameters are exercised once below.
    fn light(password: &[u8]) -> Result<[u8; PSK_LEN], PasswordError> {
        derive(password, 64, 1)
    }

    #[test]
    fn deterministic_and_password_dependent() {
        assert_eq!(light(b"correct horse"), light(b"correct horse"));
        assert_ne!(light(b"correct horse"), light(b"correct horsf"));
    }

    #[test]
    fn real_parameters_give_their_own_key() {
        // One derivation only: 64 MiB × 3 passes takes seconds in a debug build.
        let real = psk_from_password(b"correct horse").unwrap();
        assert_ne!(real, [0u8; PSK_LEN]);
        assert_ne!(real, light(b"correct horse").unwrap());
    }

    #[test]
    fn empty_password_is_refused() {
        assert_eq!(psk_from_password(b""), Err(PasswordError::Empty));
        assert!(PasswordError::Empty.to_string().contains("--password-file"));
    }

    #[test]
    fn any_bytes_are_accepted() {
        let keys: Vec<_> = [&b"\0"[..], b"\xff\xfe", b"x", &[7u8; 300]]
            .iter()
            .map(|p| light(p).unwrap())
            .collect();
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }
}
