//! Allocation handles (who holds an address) and request ids.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::limits::MAX_HANDLE_LEN;

/// The opaque owner of an allocation: an endpoint identity from `weft attach`, a CNI
/// `container id/ifname`, a Docker endpoint id. Allocations are idempotent per handle.
///
/// Non-empty, at most [`MAX_HANDLE_LEN`] bytes, no control characters (it shows up in
/// errors and status).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Handle(String);

/// Why a string cannot be a [`Handle`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandleError {
    /// Empty.
    #[error("an allocation handle must not be empty")]
    Empty,
    /// Too long.
    #[error("allocation handle of {len} bytes is longer than {MAX_HANDLE_LEN}")]
    TooLong {
        /// Its length.
        len: usize,
    },
    /// Holds a control character.
    #[error("allocation handle contains a control character")]
    Control,
}

impl Handle {
    /// Checks and wraps `text`.
    pub fn new(text: impl Into<String>) -> Result<Self, HandleError> {
        let text = text.into();
        if text.is_empty() {
            return Err(HandleError::Empty);
        }
        if text.len() > MAX_HANDLE_LEN {
            return Err(HandleError::TooLong { len: text.len() });
        }
        if text.chars().any(char::is_control) {
            return Err(HandleError::Control);
        }
        Ok(Self(text))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl Serialize for Handle {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Handle {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Self::new(String::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

/// Identifies a waiting allocation; its answer comes as an [`crate::Event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RequestId(pub u64);

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "request {}", self.0)
    }
}
