//! weft's CNI plugin: the `weft` binary run as `weft-cni` (or with `CNI_COMMAND` set and
//! no arguments, as a runtime runs a plugin), and `weft cni install`.
//!
//! The decisions about input and output are in the pure `cni` crate; this module is the
//! edge: it reads the environment and stdin, talks to the router ([`ops`]), runs
//! delegated plugins ([`delegate`]), looks into namespaces ([`netns_ops`]) and writes the
//! result or the spec error object on stdout (and a line for people on stderr).

mod delegate;
pub mod install;
mod netns_ops;
mod ops;

use std::ffi::OsStr;
use std::io::{Read as _, Write as _};
use std::path::Path;

use cni::{CniError, CniVersion, Command, ErrorCode, Invocation, MAX_CONFIG_BYTES, NetConf};

use crate::api::client::Client;

/// The plugin's file name when installed (the conflist's `type`).
pub const PLUGIN_NAME: &str = "weft-cni";

/// Whether this process is a CNI plugin invocation: run as `weft-cni`, or run with no
/// arguments while `CNI_COMMAND` is set (how runtimes run a plugin installed as `weft`).
pub fn invoked_as_plugin(argv0: &OsStr, argc: usize, cni_command: bool) -> bool {
    Path::new(argv0).file_name() == Some(OsStr::new(PLUGIN_NAME)) || (argc == 1 && cni_command)
}

/// What one invocation printed and whether it succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// stdout: the result, the version answer, an error object, or nothing.
    pub stdout: String,
    /// The error, for stderr and the exit status.
    pub error: Option<CniError>,
}

/// Runs one invocation from this process's environment and stdin; the exit status is
/// 0 on success and 1 on any error (the error object is on stdout).
pub fn run_plugin() -> std::process::ExitCode {
    let env = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
    let mut stdin = Vec::new();
    let read = std::io::stdin()
        .take(MAX_CONFIG_BYTES as u64 + 1)
        .read_to_end(&mut stdin);
    let outcome = match read {
        Ok(_) => execute(env, &stdin),
        Err(e) => failure(
            CniVersion::LATEST,
            CniError::new(ErrorCode::IoFailure, "cannot read stdin", e.to_string()),
        ),
    };
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(outcome.stdout.as_bytes());
    let _ = out.flush();
    match outcome.error {
        None => std::process::ExitCode::SUCCESS,
        Some(e) => {
            eprintln!("weft-cni: {}: {}", e.msg, e.details);
            std::process::ExitCode::FAILURE
        }
    }
}

fn failure(version: CniVersion, error: CniError) -> Outcome {
    Outcome {
        stdout: format!("{}\n", error.to_json(version)),
        error: Some(error),
    }
}

/// Runs one invocation given its environment and stdin.
pub fn execute<I, K, V>(env: I, stdin: &[u8]) -> Outcome
where
    I: IntoIterator<Item = (K, V)>,
    K: Into<String>,
    V: Into<String>,
{
    let version = NetConf::sniff_version(stdin).unwrap_or(CniVersion::LATEST);
    let inv = match Invocation::from_env(env) {
        Ok(i) => i,
        Err(e) => return failure(version, e),
    };
    if inv.command == Command::Version {
        let asked = serde_json::from_slice::<serde_json::Value>(stdin)
            .ok()
            .and_then(|v| v.get("cniVersion")?.as_str().map(str::to_string));
        return Outcome {
            stdout: format!("{}\n", cni::version_answer(asked.as_deref())),
            error: None,
        };
    }
    let conf = match NetConf::parse(stdin) {
        Ok(c) => c,
        Err(e) => return failure(version, e),
    };
    let version = conf.cni_version;
    if matches!(inv.command, Command::Status | Command::Gc) && !version.has_status_and_gc() {
        return failure(
            version,
            CniError::new(
                ErrorCode::IncompatibleVersion,
                format!("{} is not part of this cniVersion", inv.command),
                format!("cniVersion {version} has no {} (1.1.0 has)", inv.command),
            ),
        );
    }
    let call = ops::Call {
        inv: &inv,
        conf: &conf,
        raw: stdin,
        client: Client::new(&conf.socket),
    };
    let done = match inv.command {
        Command::Add => call.add().map(|r| format!("{}\n", r.to_json(version))),
        Command::Del => call.del().map(|()| String::new()),
        Command::Check => call.check().map(|()| String::new()),
        Command::Status => call.status().map(|()| String::new()),
        Command::Gc => call.gc().map(|()| String::new()),
        Command::Version => Ok(String::new()),
    };
    match done {
        Ok(stdout) => Outcome {
            stdout,
            error: None,
        },
        Err(e) => failure(version, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(env: &[(&str, &str)], stdin: &str) -> Outcome {
        execute(env.iter().map(|(k, v)| (*k, *v)), stdin.as_bytes())
    }

    fn error_code(o: &Outcome) -> u64 {
        let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
        v["code"].as_u64().unwrap()
    }

    #[test]
    fn plugin_mode_is_recognised() {
        assert!(invoked_as_plugin(
            OsStr::new("/opt/cni/bin/weft-cni"),
            1,
            false
        ));
        assert!(invoked_as_plugin(OsStr::new("weft"), 1, true));
        assert!(!invoked_as_plugin(OsStr::new("weft"), 2, true));
        assert!(!invoked_as_plugin(OsStr::new("weft"), 1, false));
    }

    #[test]
    fn version_needs_no_config() {
        let o = run(&[("CNI_COMMAND", "VERSION")], r#"{"cniVersion":"0.4.0"}"#);
        assert!(o.error.is_none());
        let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
        assert_eq!(v["cniVersion"], "0.4.0");
        assert!(run(&[("CNI_COMMAND", "VERSION")], "").error.is_none());
    }

    #[test]
    fn bad_input_is_a_spec_error_in_the_configs_version() {
        let o = run(&[], r#"{"cniVersion":"1.0.0"}"#);
        assert_eq!(error_code(&o), 4);
        assert!(
            o.stdout.contains("\"cniVersion\":\"1.0.0\""),
            "{}",
            o.stdout
        );
        let o = run(&[("CNI_COMMAND", "STATUS")], "{oops");
        assert_eq!(error_code(&o), 6);
        let conf10 = r#"{"cniVersion":"1.0.0","name":"n","type":"weft-cni"}"#;
        let o = run(&[("CNI_COMMAND", "GC")], conf10);
        assert_eq!(error_code(&o), 1, "GC is 1.1.0 only: {}", o.stdout);
    }

    #[test]
    fn a_router_that_is_down_is_code_11_and_status_50() {
        let conf = r#"{"cniVersion":"1.1.0","name":"n","type":"weft-cni","socket":"/nonexistent/weft.sock"}"#;
        let o = run(&[("CNI_COMMAND", "STATUS")], conf);
        assert_eq!(error_code(&o), 50);
        let o = run(
            &[
                ("CNI_COMMAND", "DEL"),
                ("CNI_CONTAINERID", "c1"),
                ("CNI_IFNAME", "eth0"),
            ],
            conf,
        );
        assert_eq!(error_code(&o), 11, "{}", o.stdout);
        assert!(o.stdout.contains("weft launch"), "{}", o.stdout);
    }
}
