//! Files that hold a secret or control the router: the state file (it holds the static
//! X25519 key) and the API socket. They are made 0600 by weft itself, whatever the umask
//! or the mode of the directory they are in, and `launch` warns about a home that others
//! can write (whoever can write the directory can replace them).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

/// The mode of every secret-bearing file.
pub(crate) const PRIVATE_MODE: u32 = 0o600;

/// Creates `path` (which must not exist) with `mode` from its first moment (the umask can
/// only narrow it), so no window exists in which a secret is readable by others.
pub(crate) fn create_with_mode(path: &Path, mode: u32) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
}

/// Makes an existing file (or socket) readable and writable by its owner only.
pub(crate) fn restrict(path: &Path) -> io::Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(PRIVATE_MODE))
}

/// Why a home directory is unsafe, if it is: writable by group or others, or owned by
/// someone else than us.
pub(crate) fn unsafe_dir(dir: &Path) -> Option<String> {
    let meta = std::fs::metadata(dir).ok()?;
    let mode = meta.mode() & 0o7777;
    let euid = nix::unistd::geteuid().as_raw();
    if meta.uid() != euid {
        return Some(format!(
            "{} belongs to uid {}, not to weft's uid {euid}: its owner can replace weft's state and key",
            dir.display(),
            meta.uid()
        ));
    }
    // The sticky bit does not stop a writer from adding files next to ours.
    if mode & 0o022 != 0 {
        return Some(format!(
            "{} has mode {mode:04o}: others can write it and so replace weft's state and key; `chmod go-w {}`",
            dir.display(),
            dir.display()
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(test: &str, mode: u32) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("weft-secrets-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode)).unwrap();
        d
    }

    #[test]
    fn private_files_are_0600_in_an_open_directory() {
        let d = tempdir("open", 0o755);
        let f = d.join("key");
        drop(create_with_mode(&f, PRIVATE_MODE).unwrap());
        assert_eq!(std::fs::metadata(&f).unwrap().mode() & 0o777, PRIVATE_MODE);
        assert!(
            create_with_mode(&f, PRIVATE_MODE).is_err(),
            "never opens an existing file"
        );
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o666)).unwrap();
        restrict(&f).unwrap();
        assert_eq!(std::fs::metadata(&f).unwrap().mode() & 0o777, PRIVATE_MODE);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_directory_others_can_write_is_unsafe() {
        let d = tempdir("dirs", 0o755);
        assert_eq!(unsafe_dir(&d), None);
        for mode in [0o777, 0o775, 0o1777, 0o757] {
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode)).unwrap();
            let why = unsafe_dir(&d).unwrap_or_else(|| panic!("{mode:o} is unsafe"));
            assert!(why.contains("chmod go-w"), "{why}");
        }
        std::fs::remove_dir_all(&d).unwrap();
    }
}
