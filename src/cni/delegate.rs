//! Running a delegated plugin (IPAM) as the spec's section 4 says: found in `CNI_PATH`,
//! run with the same environment and the whole configuration on stdin, its stderr
//! passed through to ours, its stdout a result or an error object.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use cni::{CniError, CniResult, CniVersion, ErrorCode, Invocation};

/// A delegated plugin, found on `CNI_PATH`.
#[derive(Debug, Clone)]
pub(super) struct Delegate {
    name: String,
    path: PathBuf,
}

impl Delegate {
    /// Looks `name` up in the invocation's `CNI_PATH`.
    pub(super) fn find(name: &str, inv: &Invocation) -> Result<Self, CniError> {
        inv.path
            .iter()
            .map(|dir| dir.join(name))
            .find(|p| is_executable(p))
            .map(|path| Self {
                name: name.to_string(),
                path,
            })
            .ok_or_else(|| {
                CniError::new(
                    ErrorCode::InvalidConfig,
                    format!("IPAM plugin {name:?} not found"),
                    format!(
                        "no executable {name:?} in CNI_PATH ({}); install it or fix \"ipam.type\"",
                        inv.path
                            .iter()
                            .map(|p| p.display().to_string())
                            .collect::<Vec<_>>()
                            .join(":")
                    ),
                )
            })
    }

    /// Runs the delegate for `command` with our environment, `overrides` on top (GC's
    /// per-attachment DEL), and `config` on stdin; returns its stdout on success.
    pub(super) fn run(
        &self,
        command: &str,
        config: &[u8],
        overrides: &[(&str, &str)],
    ) -> Result<Vec<u8>, CniError> {
        let mut child = Command::new(&self.path)
            .env("CNI_COMMAND", command)
            .envs(overrides.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| {
                CniError::new(
                    ErrorCode::IoFailure,
                    format!("cannot run IPAM plugin {}", self.name),
                    format!("{}: {e}", self.path.display()),
                )
            })?;
        if let Some(mut stdin) = child.stdin.take() {
            // A delegate that exits without reading its stdin is judged by its answer.
            let _ = stdin.write_all(config);
        }
        let out = child.wait_with_output().map_err(|e| {
            CniError::new(
                ErrorCode::IoFailure,
                format!("IPAM plugin {} did not finish", self.name),
                e.to_string(),
            )
        })?;
        if out.status.success() {
            return Ok(out.stdout);
        }
        let (msg, details) = match serde_json::from_slice::<serde_json::Value>(&out.stdout) {
            Ok(v) => (
                v["msg"].as_str().unwrap_or("failed").to_string(),
                format!(
                    "{} (its code {})",
                    v["details"].as_str().unwrap_or_default(),
                    v["code"]
                ),
            ),
            Err(_) => (
                "failed".to_string(),
                String::from_utf8_lossy(&out.stdout).trim().to_string(),
            ),
        };
        Err(CniError::new(
            ErrorCode::DelegateFailed,
            format!("IPAM plugin {} {command}: {msg}", self.name),
            details,
        ))
    }

    /// ADD: the delegate's (abbreviated) result.
    pub(super) fn add(&self, config: &[u8]) -> Result<CniResult, CniError> {
        let out = self.run("ADD", config, &[])?;
        let v: serde_json::Value = serde_json::from_slice(&out).map_err(|e| {
            CniError::new(
                ErrorCode::DecodingFailure,
                format!("cannot decode the answer of IPAM plugin {}", self.name),
                e.to_string(),
            )
        })?;
        CniResult::from_value(&v, &format!("the answer of IPAM plugin {}", self.name))
    }

    /// Whether the delegate speaks `version` (asked with VERSION): STATUS and GC go only
    /// to delegates that know them.
    pub(super) fn speaks(&self, version: CniVersion) -> bool {
        let probe = serde_json::json!({ "cniVersion": version.as_str() }).to_string();
        self.run("VERSION", probe.as_bytes(), &[])
            .ok()
            .and_then(|out| serde_json::from_slice::<serde_json::Value>(&out).ok())
            .and_then(|v| {
                v["supportedVersions"]
                    .as_array()
                    .map(|a| a.iter().any(|s| s.as_str() == Some(version.as_str())))
            })
            .unwrap_or(false)
    }
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
