//! What the CNI end-to-end tests share: libcni's `cnitool` (built by `scripts/cnitool`),
//! a plugin directory holding `weft-cni`, conflists per host, direct plugin invocations
//! for the verbs cnitool lacks (STATUS, GC) and for bad input, and cleanup of what
//! libcni caches outside the lab.

#![allow(dead_code, unreachable_pub)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write as _;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::common::Lab;

/// Where the reference plugins are on Debian (containernetworking-plugins).
pub const DEBIAN_PLUGINS: &str = "/usr/lib/cni";

/// Says why a test cannot run: a failure under CI=true, a skip otherwise.
pub fn unavailable(test: &str, why: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: {why}, and CI=true: refusing to skip");
    }
    eprintln!("SKIPPED {test}: {why}");
}

/// The path of cnitool, built once by `scripts/cnitool`; `None` (after saying why) when it
/// cannot be built here.
pub fn cnitool(test: &str) -> Option<PathBuf> {
    if !Path::new(DEBIAN_PLUGINS).join("host-local").exists() {
        unavailable(
            test,
            "the reference CNI plugins are not installed (apt-get install containernetworking-plugins)",
        );
        return None;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/cnitool");
    let out = Command::new(&script)
        .stdin(Stdio::null())
        .output()
        .expect("run scripts/cnitool");
    if !out.status.success() {
        unavailable(
            test,
            &format!(
                "scripts/cnitool failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
        );
        return None;
    }
    Some(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// A lab with CNI on top: a plugin directory, cnitool, and cleanup of libcni's result
/// cache entries for this lab's containers.
pub struct CniLab {
    lab: Lab,
    /// cnitool's path.
    pub cnitool: PathBuf,
    /// A directory holding `weft-cni` (a link to the weft binary under test).
    pub bin_dir: PathBuf,
}

impl Deref for CniLab {
    type Target = Lab;
    fn deref(&self) -> &Lab {
        &self.lab
    }
}

impl DerefMut for CniLab {
    fn deref_mut(&mut self) -> &mut Lab {
        &mut self.lab
    }
}

impl CniLab {
    /// A lab for a CNI test, or `None` when it must skip.
    pub fn new(test: &str) -> Option<Self> {
        let lab = Lab::new(test)?;
        let cnitool = cnitool(test)?;
        let bin_dir = lab.tmp("cni-bin");
        std::fs::create_dir_all(&bin_dir).unwrap();
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_weft"), bin_dir.join("weft-cni")).unwrap();
        Some(Self {
            lab,
            cnitool,
            bin_dir,
        })
    }

    /// The `CNI_PATH` the clients use: weft first, then the reference plugins.
    pub fn cni_path(&self) -> String {
        format!("{}:{DEBIAN_PLUGINS}", self.bin_dir.display())
    }

    /// Writes `conflist` as host `host`'s configuration directory's only file and returns
    /// the directory (cnitool's `NETCONFPATH`).
    pub fn conf_dir(&self, host: &str, conflist: &serde_json::Value) -> PathBuf {
        let dir = self.tmp(&format!("netconf-{host}"));
        std::fs::create_dir_all(&dir).unwrap();
        let name = conflist["name"].as_str().unwrap();
        std::fs::write(
            dir.join(format!("10-{name}.conflist")),
            conflist.to_string(),
        )
        .unwrap();
        dir
    }

    /// The API socket of `host`'s router.
    pub fn socket(&self, host: &str) -> String {
        self.home(host).join("weft.sock").display().to_string()
    }

    /// Runs `cnitool VERB NET /run/netns/<container>` inside `host` with the given
    /// extra environment (CNI_ARGS, CAP_ARGS, CNI_IFNAME).
    pub fn cnitool_run(
        &self,
        host: &str,
        conf_dir: &Path,
        verb: &str,
        net: &str,
        container: &str,
        env: &[(&str, &str)],
    ) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.ns(host)])
            .arg(&self.cnitool)
            .args([verb, net, &netns_path(&self.ns(container))])
            .env("CNI_PATH", self.cni_path())
            .env("NETCONFPATH", conf_dir)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .expect("run cnitool")
    }

    /// Like [`cnitool_run`](Self::cnitool_run), panicking with the output on failure;
    /// returns stdout parsed as JSON (ADD) or `null` (empty output).
    pub fn cnitool_ok(
        &self,
        host: &str,
        conf_dir: &Path,
        verb: &str,
        net: &str,
        container: &str,
        env: &[(&str, &str)],
    ) -> serde_json::Value {
        let out = self.cnitool_run(host, conf_dir, verb, net, container, env);
        assert!(
            out.status.success(),
            "cnitool {verb} {net} {container} on {host} failed: {}\nstdout: {}\nstderr: {}\nlog:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log(host)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        if text.trim().is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&text).expect("cnitool printed JSON")
        }
    }

    /// Runs weft-cni directly with exactly `env` (plus PATH) and `stdin`; returns the
    /// exit status's success and stdout.
    pub fn invoke(&self, env: &[(&str, &str)], stdin: &str) -> (bool, String) {
        invoke_plugin(&self.bin_dir.join("weft-cni"), env, stdin)
    }
}

impl Drop for CniLab {
    fn drop(&mut self) {
        // libcni caches ADD results by network and container id; cnitool's container
        // ids hash the namespace path, which holds this lab's prefix.
        let prefix = self.ns("");
        if let Ok(dir) = std::fs::read_dir("/var/lib/cni/results") {
            for e in dir.flatten() {
                let keep = std::fs::read_to_string(e.path())
                    .map(|s| !s.contains(&prefix))
                    .unwrap_or(true);
                if !keep {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
}

/// The namespace file of a named namespace.
pub fn netns_path(ns: &str) -> String {
    format!("/run/netns/{ns}")
}

/// Runs a CNI plugin binary with exactly `env` (plus PATH) and `stdin`.
pub fn invoke_plugin(plugin: &Path, env: &[(&str, &str)], stdin: &str) -> (bool, String) {
    let mut child = Command::new(plugin)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the plugin");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The `code` of an error object.
pub fn error_code(stdout: &str) -> u64 {
    let v: serde_json::Value = serde_json::from_str(stdout)
        .unwrap_or_else(|e| panic!("not an error object ({e}): {stdout:?}"));
    v["code"]
        .as_u64()
        .unwrap_or_else(|| panic!("no code in {stdout}"))
}

/// The container addresses of an ADD result.
pub fn result_addresses(result: &serde_json::Value) -> Vec<String> {
    result["ips"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| i["address"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}
