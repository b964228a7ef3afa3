//! Spec error objects: a numeric code the runtime acts on, and words a person acts on.

use serde::Serialize;

use crate::version::CniVersion;

/// The spec's well-known error codes (0–99), plus weft's own (100+).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 1: the configuration's `cniVersion` is not one weft speaks.
    IncompatibleVersion,
    /// 2: a field weft does not support; the message names key and value.
    UnsupportedField,
    /// 3: the container (its namespace) is unknown or gone; no cleanup needed.
    UnknownContainer,
    /// 4: a `CNI_*` variable is missing or invalid; the message names it.
    InvalidEnvironment,
    /// 5: reading stdin (or another I/O step) failed.
    IoFailure,
    /// 6: stdin (or a delegate's answer) is not the JSON it must be.
    DecodingFailure,
    /// 7: the configuration does not validate.
    InvalidConfig,
    /// 11: a transient condition (the router is down or busy): try again later.
    TryAgainLater,
    /// 50: STATUS: the plugin cannot serve ADD now.
    NotAvailable,
    /// 51: STATUS: not available, and existing containers may have limited connectivity.
    NotAvailableLimited,
    /// 100: the weft router refused or failed the request (its message says why).
    RouterFailed,
    /// 101: a delegated (IPAM) plugin failed; its own message is in the details.
    DelegateFailed,
    /// 102: CHECK found the container's networking not as ADD left it.
    CheckFailed,
}

impl ErrorCode {
    /// The number the spec (or weft, from 100) gives this code.
    pub fn code(self) -> u32 {
        match self {
            Self::IncompatibleVersion => 1,
            Self::UnsupportedField => 2,
            Self::UnknownContainer => 3,
            Self::InvalidEnvironment => 4,
            Self::IoFailure => 5,
            Self::DecodingFailure => 6,
            Self::InvalidConfig => 7,
            Self::TryAgainLater => 11,
            Self::NotAvailable => 50,
            Self::NotAvailableLimited => 51,
            Self::RouterFailed => 100,
            Self::DelegateFailed => 101,
            Self::CheckFailed => 102,
        }
    }
}

/// A failure as the runtime receives it: code, short message, details.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{msg}: {details}")]
pub struct CniError {
    /// What kind of failure (the runtime may retry on 11).
    pub code: ErrorCode,
    /// A short message characterising the error.
    pub msg: String,
    /// A longer message: what was wrong and what to do about it.
    pub details: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ErrorObject<'a> {
    cni_version: &'static str,
    code: u32,
    msg: &'a str,
    details: &'a str,
}

impl CniError {
    /// An error of `code`.
    pub fn new(code: ErrorCode, msg: impl Into<String>, details: impl Into<String>) -> Self {
        Self {
            code,
            msg: msg.into(),
            details: details.into(),
        }
    }

    /// The spec's error object, in `version` (the configuration's, or the newest when
    /// the configuration could not be read).
    pub fn to_json(&self, version: CniVersion) -> String {
        serde_json::to_string(&ErrorObject {
            cni_version: version.as_str(),
            code: self.code.code(),
            msg: &self.msg,
            details: &self.details,
        })
        .unwrap_or_else(|_| {
            format!(
                "{{\"cniVersion\":\"{}\",\"code\":{},\"msg\":\"error\"}}",
                version.as_str(),
                self.code.code()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_objects_follow_the_spec() {
        let e = CniError::new(
            ErrorCode::TryAgainLater,
            "weft router not running",
            "no router at \"/run/weft/weft.sock\"",
        );
        let v: serde_json::Value = serde_json::from_str(&e.to_json(CniVersion::V1_0_0)).unwrap();
        assert_eq!(v["cniVersion"], "1.0.0");
        assert_eq!(v["code"], 11);
        assert_eq!(v["msg"], "weft router not running");
        assert_eq!(v["details"], "no router at \"/run/weft/weft.sock\"");
        assert_eq!(ErrorCode::NotAvailable.code(), 50);
        assert_eq!(ErrorCode::InvalidConfig.code(), 7);
        assert_eq!(ErrorCode::UnsupportedField.code(), 2);
        assert_eq!(ErrorCode::InvalidEnvironment.code(), 4);
    }
}
