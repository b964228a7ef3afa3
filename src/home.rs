//! Where a router keeps its files.
//!
//! Everything one router owns lives under one home, so several routers can run on one
//! machine (one per network namespace, which is how labs and tests model hosts):
//! `--home DIR` / `WEFT_HOME` puts all of it in DIR; without it, durable state goes to
//! `/var/lib/weft` and runtime files (API socket, pidfile) to `/run/weft`.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// Default directory for durable state.
pub(crate) const DEFAULT_STATE_DIR: &str = "/var/lib/weft";
/// Default directory for runtime files.
pub(crate) const DEFAULT_RUN_DIR: &str = "/run/weft";

/// The paths of one router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Home {
    state_dir: PathBuf,
    run_dir: PathBuf,
}

impl Home {
    /// One directory for everything (`--home DIR`), or the system defaults.
    pub(crate) fn new(home: Option<&Path>) -> Self {
        match home {
            Some(dir) => Self {
                state_dir: dir.to_path_buf(),
                run_dir: dir.to_path_buf(),
            },
            None => Self {
                state_dir: PathBuf::from(DEFAULT_STATE_DIR),
                run_dir: PathBuf::from(DEFAULT_RUN_DIR),
            },
        }
    }

    /// Creates the directories (mode 0700: the socket is a root-only control plane).
    pub(crate) fn ensure(&self) -> anyhow::Result<()> {
        use std::os::unix::fs::DirBuilderExt as _;
        for dir in [&self.state_dir, &self.run_dir] {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .with_context(|| format!("cannot create weft home directory {}", dir.display()))?;
        }
        Ok(())
    }

    /// Durable state: endpoints, exposed addresses, networks, peer name, connect targets.
    pub(crate) fn state_file(&self) -> PathBuf {
        self.state_dir.join("state.json")
    }

    /// The router's log when it runs in the background.
    pub(crate) fn log_file(&self) -> PathBuf {
        self.state_dir.join("weft.log")
    }

    /// The log before the last rotation (see [`crate::logfile`]).
    pub(crate) fn old_log_file(&self) -> PathBuf {
        crate::logfile::rotated_path(&self.log_file())
    }

    /// The local API (HTTP+JSON) socket.
    pub(crate) fn socket(&self) -> PathBuf {
        self.run_dir.join("weft.sock")
    }

    /// The pidfile, held under an exclusive lock while the router lives.
    pub(crate) fn pidfile(&self) -> PathBuf {
        self.run_dir.join("weft.pid")
    }

    /// Why the home's directories are unsafe (others can write them), one line each;
    /// none when they are fine.
    pub(crate) fn unsafe_dirs(&self) -> Vec<String> {
        let mut dirs = vec![self.state_dir.as_path()];
        if self.run_dir != self.state_dir {
            dirs.push(&self.run_dir);
        }
        dirs.into_iter()
            .filter_map(crate::secrets::unsafe_dir)
            .collect()
    }

    /// The directory of durable state.
    pub(crate) fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The directory of runtime files.
    pub(crate) fn run_dir(&self) -> &Path {
        &self.run_dir
    }
}

/// Removes a file a home holds; one that is already gone is fine (reset is idempotent).
pub(crate) fn remove_if_present(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_dir_or_defaults() {
        let h = Home::new(Some(Path::new("/tmp/x")));
        assert_eq!(h.socket(), Path::new("/tmp/x/weft.sock"));
        assert_eq!(h.state_file(), Path::new("/tmp/x/state.json"));
        let d = Home::new(None);
        assert_eq!(d.socket(), Path::new("/run/weft/weft.sock"));
        assert_eq!(d.state_file(), Path::new("/var/lib/weft/state.json"));
    }
}
