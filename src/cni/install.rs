//! `weft cni install`: put the plugin binary and a conflist where a kubelet (through
//! containerd or CRI-O), Podman or cnitool looks: `/opt/cni/bin` and `/etc/cni/net.d` by
//! default, Debian's `/usr/lib/cni` with `--bin-dir`. Both files are replaced
//! atomically, so a runtime never runs half a binary or reads half a list.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use cni::ConflistSpec;

use super::PLUGIN_NAME;

/// What `install` wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// The plugin binary.
    pub binary: PathBuf,
    /// The conflist.
    pub conflist: PathBuf,
}

/// Copies `exe` to `bin_dir/weft-cni` and writes `spec` to `conf_dir/file`.
pub fn install(
    exe: &Path,
    bin_dir: &Path,
    conf_dir: &Path,
    file: &str,
    spec: &ConflistSpec,
) -> anyhow::Result<Installed> {
    anyhow::ensure!(
        !file.contains('/') && (file.ends_with(".conflist") || file.ends_with(".conf")),
        "the conflist file name {file:?} must end in .conflist and contain no '/'"
    );
    cni::NetConf::parse(spec.plugin_config().to_string().as_bytes())
        .map_err(|e| anyhow::anyhow!("the configuration would be refused: {e}"))?;
    for dir in [bin_dir, conf_dir] {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let binary = bin_dir.join(PLUGIN_NAME);
    let tmp = bin_dir.join(format!(".{PLUGIN_NAME}.tmp.{}", std::process::id()));
    let copied = (|| -> anyhow::Result<()> {
        std::fs::copy(exe, &tmp)
            .with_context(|| format!("cannot copy {} to {}", exe.display(), tmp.display()))?;
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("cannot make {} executable", tmp.display()))?;
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .with_context(|| format!("cannot fsync {}", tmp.display()))?;
        std::fs::rename(&tmp, &binary)
            .with_context(|| format!("cannot replace {}", binary.display()))
    })();
    if copied.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    copied?;
    let conflist = conf_dir.join(file);
    let mut bytes = serde_json::to_vec_pretty(&spec.to_json())?;
    bytes.push(b'\n');
    crate::state::write_atomic(&conflist, &bytes)?;
    Ok(Installed { binary, conflist })
}
