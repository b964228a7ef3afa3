//! Network namespaces: resolving attach targets, entering them on a short-lived thread.
//!
//! Contract:
//! - `setns(2)` is per thread, so weft never switches the namespace of a
//!   long-lived thread: [`run_in_netns`] runs a closure on a fresh thread that
//!   entered the namespace and is gone afterwards. Sockets, netlink handles and
//!   TAPs opened there stay in that namespace for their whole life, whichever
//!   thread uses them later.
//! - [`NamedNetns`] makes and deletes namespaces exactly as `ip netns add/del`
//!   do (a bind mount of the namespace on `/run/netns/NAME`, with `/run/netns`
//!   made a shared mount point), so `ip netns exec NAME` works on ours and we can
//!   open theirs.
//! - Missing targets are errors that name what was looked for.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;

use crate::sys;

/// Where `ip netns` keeps named namespaces.
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// Why a namespace could not be found, entered, made or removed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetnsError {
    /// The text does not name a namespace target.
    #[error("invalid network namespace target {input:?}: {reason}")]
    InvalidTarget {
        /// What the user gave.
        input: String,
        /// Why it is not acceptable.
        reason: &'static str,
    },
    /// No namespace of that name exists.
    #[error("no network namespace named {name} (no {})", path.display())]
    NoSuchName {
        /// The name looked for.
        name: String,
        /// The file looked for.
        path: PathBuf,
    },
    /// No process with that pid exists.
    #[error("no process {pid}")]
    NoSuchProcess {
        /// The pid looked for.
        pid: u32,
    },
    /// The namespace file does not exist.
    #[error("no network namespace file {}", path.display())]
    NoSuchPath {
        /// The path looked for.
        path: PathBuf,
    },
    /// The file exists but is not a network namespace.
    #[error("{} is not a network namespace", path.display())]
    NotANetns {
        /// The offending path.
        path: PathBuf,
    },
    /// A named namespace of that name already exists.
    #[error("network namespace {name} already exists ({NETNS_RUN_DIR}/{name})")]
    AlreadyExists {
        /// The name.
        name: String,
    },
    /// A syscall failed.
    #[error("{op}: {source}")]
    Io {
        /// What weft was doing.
        op: String,
        /// The kernel's answer.
        #[source]
        source: io::Error,
    },
    /// The helper thread could not be started.
    #[error("cannot start a thread to enter the namespace: {0}")]
    Thread(#[source] io::Error),
}

impl NetnsError {
    fn io(op: impl Into<String>, source: impl Into<io::Error>) -> Self {
        Self::Io {
            op: op.into(),
            source: source.into(),
        }
    }
}

/// What `weft attach TARGET` accepts: a name as `ip netns list` shows it
/// (/run/netns/NAME), a pid (/proc/PID/ns/net), or a path to a netns file.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NetnsTarget {
    /// A named namespace under [`NETNS_RUN_DIR`].
    Name(String),
    /// The namespace of a process.
    Pid(u32),
    /// A namespace file anywhere (a bind mount, `/proc/PID/task/TID/ns/net`, ...).
    Path(PathBuf),
}

impl FromStr for NetnsTarget {
    type Err = NetnsError;

    /// All digits is a pid, anything with a '/' is a path, otherwise a name.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = |reason| {
            Err(NetnsError::InvalidTarget {
                input: s.into(),
                reason,
            })
        };
        if s.is_empty() {
            return invalid("empty");
        }
        if s.bytes().all(|b| b.is_ascii_digit()) {
            return match s.parse::<u32>() {
                Ok(0) => invalid("pid 0 is not a process"),
                Ok(pid) => Ok(Self::Pid(pid)),
                Err(_) => invalid("pid out of range"),
            };
        }
        if s.contains('/') {
            return Ok(Self::Path(PathBuf::from(s)));
        }
        validate_name(s)?;
        Ok(Self::Name(s.into()))
    }
}

impl fmt::Display for NetnsTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Name(name) => f.write_str(name),
            Self::Pid(pid) => write!(f, "{pid}"),
            Self::Path(path) => write!(f, "{}", path.display()),
        }
    }
}

/// Rejects names that would escape `/run/netns` or that `ip netns` refuses.
fn validate_name(name: &str) -> Result<(), NetnsError> {
    let invalid = |reason| {
        Err(NetnsError::InvalidTarget {
            input: name.into(),
            reason,
        })
    };
    if name.is_empty() {
        return invalid("empty");
    }
    if name == "." || name == ".." {
        return invalid("'.' and '..' are not namespace names");
    }
    if name.contains('/') || name.contains('\0') {
        return invalid("a namespace name cannot contain '/' or NUL");
    }
    if name.len() > 255 {
        return invalid("longer than 255 bytes");
    }
    Ok(())
}

impl NetnsTarget {
    /// The namespace file this target refers to.
    pub fn path(&self) -> PathBuf {
        match self {
            Self::Name(name) => Path::new(NETNS_RUN_DIR).join(name),
            Self::Pid(pid) => PathBuf::from(format!("/proc/{pid}/ns/net")),
            Self::Path(path) => path.clone(),
        }
    }

    /// Opens the namespace; a missing one is an error naming what was looked for
    /// ("no network namespace named c1 (no /run/netns/c1)", "no process 1234"),
    /// and a file that is not a network namespace is refused.
    pub fn open(&self) -> Result<OwnedFd, NetnsError> {
        let path = self.path();
        let file = File::open(&path).map_err(|e| match (e.kind(), self) {
            (io::ErrorKind::NotFound, Self::Name(name)) => NetnsError::NoSuchName {
                name: name.clone(),
                path: path.clone(),
            },
            (io::ErrorKind::NotFound, Self::Pid(pid)) => NetnsError::NoSuchProcess { pid: *pid },
            (io::ErrorKind::NotFound, Self::Path(_)) => {
                NetnsError::NoSuchPath { path: path.clone() }
            }
            _ => NetnsError::io(format!("open {}", path.display()), e),
        })?;
        let fd = OwnedFd::from(file);
        match sys::ns::namespace_type(fd.as_fd()) {
            Ok(kind) if kind == libc::CLONE_NEWNET => Ok(fd),
            Ok(_) => Err(NetnsError::NotANetns { path }),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTTY | libc::EINVAL)) => {
                Err(NetnsError::NotANetns { path })
            }
            Err(e) => Err(NetnsError::io(
                format!("NS_GET_NSTYPE on {}", path.display()),
                e,
            )),
        }
    }
}

/// Identity of a namespace (st_dev, st_ino) so two targets naming the same
/// netns compare equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NetnsId {
    dev: u64,
    ino: u64,
}

impl NetnsId {
    /// The device number of the nsfs file system holding the namespace.
    pub fn dev(&self) -> u64 {
        self.dev
    }

    /// The namespace's inode number, as `net:[INO]` in `/proc/PID/ns/net` shows it.
    pub fn ino(&self) -> u64 {
        self.ino
    }
}

/// The identity of the namespace `fd` refers to.
pub fn netns_id(fd: BorrowedFd<'_>) -> Result<NetnsId, NetnsError> {
    let st = nix::sys::stat::fstat(fd).map_err(|e| NetnsError::io("fstat namespace", e))?;
    Ok(NetnsId {
        dev: st.st_dev,
        ino: st.st_ino,
    })
}

/// The identity of the calling thread's own network namespace.
pub fn current_netns_id() -> Result<NetnsId, NetnsError> {
    let file = File::open("/proc/thread-self/ns/net")
        .map_err(|e| NetnsError::io("open /proc/thread-self/ns/net", e))?;
    netns_id(file.as_fd())
}

/// Runs `f` on a short-lived thread that has entered `netns` (setns is
/// per-thread; never do it on a long-lived thread) and returns its result.
/// A panic in `f` is resumed on the calling thread.
pub fn run_in_netns<T: Send>(
    netns: BorrowedFd<'_>,
    f: impl FnOnce() -> T + Send,
) -> Result<T, NetnsError> {
    std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .name("weft-netns".into())
            .spawn_scoped(scope, move || {
                nix::sched::setns(netns, CloneFlags::CLONE_NEWNET)
                    .map_err(|e| NetnsError::io("setns(CLONE_NEWNET)", e))?;
                Ok(f())
            })
            .map_err(NetnsError::Thread)?;
        match handle.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Makes a `std::process::Command` start inside `netns` (setns between fork and
/// exec), so the lab can start routers "on a host".
pub fn command_in_netns(cmd: &mut Command, netns: OwnedFd) -> &mut Command {
    sys::ns::pre_exec_setns(cmd, netns)
}

/// A named namespace like `ip netns add NAME` makes (bind mount under
/// /run/netns, /run/netns a shared mount point as iproute2 makes it); deleted
/// (umount + unlink) on drop unless [`into_persistent`](Self::into_persistent).
#[derive(Debug)]
pub struct NamedNetns {
    name: String,
    delete_on_drop: bool,
}

impl NamedNetns {
    /// Creates the namespace `name`; fails with [`NetnsError::AlreadyExists`] if
    /// the name is taken.
    pub fn create(name: &str) -> Result<Self, NetnsError> {
        validate_name(name)?;
        prepare_run_dir()?;
        let path = Path::new(NETNS_RUN_DIR).join(name);
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o000)
            .open(&path)
            .map_err(|e| match e.kind() {
                io::ErrorKind::AlreadyExists => NetnsError::AlreadyExists { name: name.into() },
                _ => NetnsError::io(format!("create {}", path.display()), e),
            })?;
        // From here on the mount point exists; drop removes it on any failure.
        let netns = Self {
            name: name.into(),
            delete_on_drop: true,
        };
        let mount_point = path.clone();
        let mounted = std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("weft-netns-add".into())
                .spawn_scoped(scope, move || -> Result<(), NetnsError> {
                    nix::sched::unshare(CloneFlags::CLONE_NEWNET)
                        .map_err(|e| NetnsError::io("unshare(CLONE_NEWNET)", e))?;
                    nix::mount::mount(
                        Some("/proc/thread-self/ns/net"),
                        &mount_point,
                        Some("none"),
                        MsFlags::MS_BIND,
                        None::<&str>,
                    )
                    .map_err(|e| {
                        NetnsError::io(
                            format!("bind mount namespace on {}", mount_point.display()),
                            e,
                        )
                    })
                })
                .map_err(NetnsError::Thread)?
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        });
        mounted?;
        Ok(netns)
    }

    /// The namespace's name (as `ip netns list` shows it).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The bind-mounted namespace file.
    pub fn path(&self) -> PathBuf {
        Path::new(NETNS_RUN_DIR).join(&self.name)
    }

    /// Opens the namespace (for `run_in_netns`, veth peers, `command_in_netns`).
    pub fn open(&self) -> Result<OwnedFd, NetnsError> {
        NetnsTarget::Name(self.name.clone()).open()
    }

    /// Keeps the namespace after this value is dropped.
    pub fn into_persistent(mut self) -> String {
        self.delete_on_drop = false;
        std::mem::take(&mut self.name)
    }

    /// Deletes the named namespace `name` like `ip netns del`: lazy unmount, then
    /// unlink. Processes or sockets still inside keep it alive, nameless.
    pub fn delete(name: &str) -> Result<(), NetnsError> {
        validate_name(name)?;
        let path = Path::new(NETNS_RUN_DIR).join(name);
        if !path.exists() {
            return Err(NetnsError::NoSuchName {
                name: name.into(),
                path,
            });
        }
        match nix::mount::umount2(&path, MntFlags::MNT_DETACH) {
            // EINVAL: not a mount point (a leftover file); still remove it.
            Ok(()) | Err(nix::errno::Errno::EINVAL) => {}
            Err(e) => return Err(NetnsError::io(format!("umount {}", path.display()), e)),
        }
        fs::remove_file(&path).map_err(|e| NetnsError::io(format!("remove {}", path.display()), e))
    }
}

impl Drop for NamedNetns {
    fn drop(&mut self) {
        if self.delete_on_drop
            && let Err(e) = Self::delete(&self.name)
        {
            tracing::warn!(name = %self.name, error = %e, "could not delete network namespace");
        }
    }
}

/// Creates /run/netns and makes it a shared mount point (bind-mounting it on
/// itself first if it is not a mount point), as iproute2 does, so namespace
/// mounts propagate into mount namespaces made later (e.g. `ip netns exec`).
fn prepare_run_dir() -> Result<(), NetnsError> {
    let dir = Path::new(NETNS_RUN_DIR);
    fs::create_dir_all(dir).map_err(|e| NetnsError::io(format!("create {NETNS_RUN_DIR}"), e))?;
    let shared = MsFlags::MS_SHARED | MsFlags::MS_REC;
    match nix::mount::mount(None::<&str>, dir, Some("none"), shared, None::<&str>) {
        Ok(()) => return Ok(()),
        Err(nix::errno::Errno::EINVAL) => {}
        Err(e) => return Err(NetnsError::io(format!("make {NETNS_RUN_DIR} shared"), e)),
    }
    nix::mount::mount(
        Some(dir),
        dir,
        Some("none"),
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| NetnsError::io(format!("bind mount {NETNS_RUN_DIR} on itself"), e))?;
    nix::mount::mount(None::<&str>, dir, Some("none"), shared, None::<&str>)
        .map_err(|e| NetnsError::io(format!("make {NETNS_RUN_DIR} shared"), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_by_shape() {
        assert_eq!(
            "1234".parse::<NetnsTarget>().unwrap(),
            NetnsTarget::Pid(1234)
        );
        assert_eq!(
            "c1".parse::<NetnsTarget>().unwrap(),
            NetnsTarget::Name("c1".into())
        );
        assert_eq!(
            "/var/run/docker/netns/abc".parse::<NetnsTarget>().unwrap(),
            NetnsTarget::Path("/var/run/docker/netns/abc".into())
        );
        assert_eq!(
            "./ns".parse::<NetnsTarget>().unwrap(),
            NetnsTarget::Path("./ns".into())
        );
        assert_eq!(
            "c-1.x".parse::<NetnsTarget>().unwrap(),
            NetnsTarget::Name("c-1.x".into())
        );
    }

    #[test]
    fn bad_targets_are_rejected_with_a_reason() {
        for bad in ["", "..", ".", "0", "99999999999999", "a\0b"] {
            let err = bad.parse::<NetnsTarget>().unwrap_err();
            assert!(
                matches!(err, NetnsError::InvalidTarget { .. }),
                "{bad:?} gave {err:?}"
            );
        }
    }

    #[test]
    fn target_paths() {
        assert_eq!(
            NetnsTarget::Name("c1".into()).path(),
            Path::new("/run/netns/c1")
        );
        assert_eq!(NetnsTarget::Pid(42).path(), Path::new("/proc/42/ns/net"));
        assert_eq!(NetnsTarget::Path("/x/y".into()).path(), Path::new("/x/y"));
        assert_eq!(NetnsTarget::Pid(42).to_string(), "42");
    }

    #[test]
    fn missing_targets_name_what_was_looked_for() {
        let name = format!("weft-missing-{}", std::process::id());
        let err = NetnsTarget::Name(name.clone()).open().unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("no network namespace named {name} (no /run/netns/{name})")
        );
        // pid_max is at most 2^22, so this pid cannot exist.
        let err = NetnsTarget::Pid(4_194_304 + 7).open().unwrap_err();
        assert_eq!(err.to_string(), "no process 4194311");
    }

    #[test]
    fn a_regular_file_is_not_a_netns() {
        let err = NetnsTarget::Path("/proc/self/status".into())
            .open()
            .unwrap_err();
        assert!(matches!(err, NetnsError::NotANetns { .. }), "{err:?}");
    }

    #[test]
    fn own_namespace_has_a_stable_identity() {
        let a = NetnsTarget::Path("/proc/self/ns/net".into())
            .open()
            .unwrap();
        let b = NetnsTarget::Pid(std::process::id()).open().unwrap();
        assert_eq!(netns_id(a.as_fd()).unwrap(), netns_id(b.as_fd()).unwrap());
        let id = current_netns_id().unwrap();
        assert_eq!(netns_id(a.as_fd()).unwrap(), id);
        let link = fs::read_link("/proc/self/ns/net").unwrap();
        assert_eq!(link.to_string_lossy(), format!("net:[{}]", id.ino()));
    }
}
