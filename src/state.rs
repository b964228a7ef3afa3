//! The router's durable state, and how it is written so a crash never loses or tears it.
//!
//! A router restarted after `weft stop` or `kill -9` re-attaches the endpoints recorded
//! here without touching the containers, re-opens the host's TAP, keeps its peer name and
//! its connect targets. The file is JSON (small, human-readable for bug reports) and is
//! replaced atomically: write a temporary file in the same directory, fsync it, rename it
//! over the old one, fsync the directory.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use ipnet::IpNet;
use mesh::PeerName;
use serde::{Deserialize, Serialize};
use tunnel::Vni;

/// The on-disk format version this build writes and reads.
pub(crate) const FORMAT: u32 = 1;

/// Everything a router must remember across restarts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct State {
    /// On-disk format version.
    pub format: u32,
    /// This router's peer name (MAC-like), random on first launch, then stable.
    pub peer_name: Option<PeerName>,
    /// This router's static X25519 key for the mesh handshake (hex private key), random on
    /// first launch, then stable.
    #[serde(default)]
    pub static_key: Option<String>,
    /// The default network's VNI: set by the first `launch` (`--vni`, else 1) and changed
    /// only by a later `launch --vni`, so a relaunch without `--vni` keeps it. `None` in
    /// state files written before it was saved (they get 1, as they always did).
    #[serde(default, with = "crate::api::codec::vni_opt")]
    pub default_vni: Option<Vni>,
    /// Named networks and their VNIs.
    #[serde(default)]
    pub networks: BTreeMap<String, NetworkSpec>,
    /// Attached containers.
    #[serde(default)]
    pub endpoints: Vec<EndpointRecord>,
    /// Host ports (TAP devices) per network, with the host's addresses on them.
    #[serde(default)]
    pub exposed: BTreeMap<String, ExposedRecord>,
    /// Peers added with `weft connect`, re-dialled after a restart. Peers named on the
    /// `launch` command line are not saved: they apply to that launch only.
    #[serde(default)]
    pub targets: Vec<String>,
}

/// A named network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct NetworkSpec {
    /// Its VXLAN network identifier on the wire (24 bits).
    #[serde(with = "crate::api::codec::vni")]
    pub vni: Vni,
}

/// An attached container: enough to find its veth again and to undo the attach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct EndpointRecord {
    /// The target as the user named it (netns name, pid or path).
    pub target: String,
    /// The namespace file resolved at attach time.
    pub netns_path: PathBuf,
    /// (st_dev, st_ino) of that namespace, to tell it is still the same one.
    pub netns_id: (u64, u64),
    /// The weft network the endpoint belongs to.
    pub network: String,
    /// Interface name inside the container.
    pub ifname: String,
    /// Name of the host end of the veth (in the router's namespace).
    pub host_ifname: String,
    /// The container interface's MAC.
    #[serde(with = "crate::api::codec::mac")]
    pub mac: wire::Mac,
    /// The container interface's addresses.
    pub ips: Vec<IpNet>,
    /// The MTU set on the container interface.
    pub mtu: u32,
    /// The runtime's identity for this endpoint (see `AttachRequest::owner`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// For an endpoint whose container end the runtime moves itself: that end's name
    /// while it is still in the router's namespace (Docker's Join answers it as
    /// `SrcName`). `netns_path` and `netns_id` are then empty: weft never sees the
    /// container's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handover_ifname: Option<String>,
}

/// A host port on a network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ExposedRecord {
    /// The TAP device's name.
    pub tap: String,
    /// The host's addresses on it.
    pub addrs: Vec<IpNet>,
}

impl State {
    /// Reads the state file; a missing file is a fresh router. A file that exists but
    /// cannot be read is an error naming the file: silently starting empty would drop
    /// every endpoint the user attached.
    pub(crate) fn load(path: &Path) -> anyhow::Result<Self> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self {
                    format: FORMAT,
                    ..Self::default()
                });
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot read weft state {}", path.display()));
            }
        };
        let state: Self = serde_json::from_slice(&bytes).with_context(|| {
            format!("weft state {} is corrupt; move it aside to start afresh (its endpoints will be forgotten)", path.display())
        })?;
        anyhow::ensure!(
            state.format == FORMAT,
            "weft state {} has format {}, this weft understands {}",
            path.display(),
            state.format,
            FORMAT
        );
        Ok(state)
    }

    /// Writes the state atomically.
    pub(crate) fn save(&self, path: &Path) -> anyhow::Result<()> {
        let mut bytes = serde_json::to_vec_pretty(self).context("cannot encode weft state")?;
        bytes.push(b'\n');
        // It holds the router's private key: readable by its owner only.
        write_atomic_mode(path, &bytes, crate::secrets::PRIVATE_MODE)
    }
}

/// Replaces `path` with `bytes` so that a crash at any moment leaves either the old or the
/// new content, never a torn file; the file is mode 0644 (e.g. a CNI conflist runtimes
/// read).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    write_atomic_mode(path, bytes, 0o644)
}

/// [`write_atomic`] with the file's mode, set from its creation whatever the umask
/// (never wider than the umask allows, and `mode` exactly for a secret's 0600).
fn write_atomic_mode(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp: PathBuf = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| -> anyhow::Result<()> {
        // A temporary file of a crashed writer may still be there: it is ours to replace.
        let _ = std::fs::remove_file(&tmp);
        let mut f = crate::secrets::create_with_mode(&tmp, mode)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        f.write_all(bytes)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        f.sync_all()
            .with_context(|| format!("cannot fsync {}", tmp.display()))?;
        std::fs::rename(&tmp, path)
            .with_context(|| format!("cannot replace {}", path.display()))?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("cannot fsync directory {}", dir.display()))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "weft-state-test-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn missing_is_fresh_and_round_trips() {
        let d = tempdir();
        let p = d.join("state.json");
        let mut s = State::load(&p).unwrap();
        assert_eq!(s.format, FORMAT);
        assert!(s.endpoints.is_empty());
        s.peer_name = Some("02:00:00:00:00:01".parse().unwrap());
        s.networks.insert(
            "blue".into(),
            NetworkSpec {
                vni: Vni::new(42).unwrap(),
            },
        );
        s.endpoints.push(EndpointRecord {
            target: "c1".into(),
            netns_path: "/run/netns/c1".into(),
            netns_id: (4, 4026532000),
            network: "default".into(),
            ifname: "weft0".into(),
            host_ifname: "wfabc".into(),
            mac: "02:00:00:00:00:02".parse().unwrap(),
            ips: vec!["10.2.0.1/24".parse().unwrap()],
            mtu: 1450,
            owner: Some("cni/net/c1/eth0".into()),
            handover_ifname: None,
        });
        s.save(&p).unwrap();
        assert_eq!(State::load(&p).unwrap(), s);
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn the_state_file_is_private_even_in_an_open_directory() {
        use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
        let d = tempdir();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        let p = d.join("state.json");
        // A file an older weft left world-readable is replaced by a private one.
        std::fs::write(&p, br#"{"format": 1}"#).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let s = State {
            static_key: Some("00".repeat(32)),
            ..State::load(&p).unwrap()
        };
        s.save(&p).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn files_from_before_the_default_vni_was_saved_still_load() {
        let d = tempdir();
        let p = d.join("state.json");
        std::fs::write(&p, br#"{"format": 1, "peer_name": "02:00:00:00:00:01"}"#).unwrap();
        let s = State::load(&p).unwrap();
        assert_eq!(s.default_vni, None);
        assert_eq!(
            s.peer_name.map(|n| n.to_string()).as_deref(),
            Some("02:00:00:00:00:01")
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn corrupt_is_an_error_not_a_reset() {
        let d = tempdir();
        let p = d.join("state.json");
        std::fs::write(&p, b"{\"format\": 1, \"endpoints\": [tru").unwrap();
        let err = State::load(&p).unwrap_err();
        assert!(format!("{err:#}").contains("corrupt"), "{err:#}");
        std::fs::write(&p, b"{\"format\": 99}").unwrap();
        assert!(format!("{:#}", State::load(&p).unwrap_err()).contains("format 99"));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
