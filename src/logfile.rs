//! The router's log file, bounded: when it reaches [`MAX_LOG_BYTES`] it is renamed to
//! `weft.log.1` (replacing the one before) and a fresh `weft.log` begins, so a log holds
//! at most twice that on disk however long the router runs and whatever it is made to
//! log. A router launched in the background has its stdout and stderr on the log; they
//! are moved to the fresh file too, so a panic message lands where the operator looks.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

/// Sets up `tracing` for a weft process (the router, the Docker plugin): to stderr, and
/// when stderr is `log` (the process was started in the background with its output
/// there), through a [`LogFile`] that keeps that file bounded.
pub(crate) fn init_logging(filter: &str, log: &Path) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false);
    let _ = match LogFile::for_stderr(log) {
        Some(log) => builder.with_writer(log).try_init(),
        None => builder.with_writer(io::stderr).try_init(),
    };
}

/// Size at which the log is rotated.
pub(crate) const MAX_LOG_BYTES: u64 = 10 * 1024 * 1024;

/// The name the previous log gets.
pub(crate) fn rotated_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".1");
    path.with_file_name(name)
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    file: File,
    size: u64,
    max: u64,
    redirect_std: bool,
}

/// A log file that rotates itself; a `tracing` writer.
#[derive(Debug)]
pub(crate) struct LogFile {
    inner: Mutex<Inner>,
}

impl LogFile {
    /// The log at `path` (appended to), rotated at `max` bytes. With `redirect_std` the
    /// process's stdout and stderr follow each fresh file.
    pub(crate) fn open(path: &Path, max: u64, redirect_std: bool) -> io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            inner: Mutex::new(Inner {
                path: path.to_path_buf(),
                file,
                size,
                max,
                redirect_std,
            }),
        })
    }

    /// When stderr is the file at `path` (a router `launch` started in the background),
    /// that log, rotated at [`MAX_LOG_BYTES`] with stdout and stderr following it.
    pub(crate) fn for_stderr(path: &Path) -> Option<Self> {
        use std::os::fd::AsFd as _;
        use std::os::unix::fs::MetadataExt as _;
        let stderr = nix::sys::stat::fstat(io::stderr().as_fd()).ok()?;
        let file = std::fs::metadata(path).ok()?;
        let same = stderr.st_dev == file.dev() && stderr.st_ino == file.ino();
        if !same {
            return None;
        }
        Self::open(path, MAX_LOG_BYTES, true).ok()
    }

    fn write_line(&self, buf: &[u8]) -> io::Result<()> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let len = u64::try_from(buf.len()).unwrap_or(u64::MAX);
        if inner.size > 0 && inner.size.saturating_add(len) > inner.max {
            inner.rotate()?;
        }
        inner.file.write_all(buf)?;
        inner.size = inner.size.saturating_add(len);
        Ok(())
    }
}

impl Inner {
    fn rotate(&mut self) -> io::Result<()> {
        std::fs::rename(&self.path, rotated_path(&self.path))?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        if self.redirect_std {
            nix::unistd::dup2_stdout(&file).map_err(io::Error::from)?;
            nix::unistd::dup2_stderr(&file).map_err(io::Error::from)?;
        }
        self.file = file;
        self.size = 0;
        Ok(())
    }
}

/// One event's line, written whole when the formatter finishes it.
#[derive(Debug)]
pub(crate) struct LineWriter<'a> {
    log: &'a LogFile,
    line: Vec<u8>,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.line.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter<'_> {
    fn drop(&mut self) {
        // A log that cannot be written has nowhere to report it.
        let _ = self.log.write_line(&self.line);
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogFile {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            log: self,
            line: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_rotates_at_its_cap_and_keeps_one_old_file() {
        let dir = std::env::temp_dir().join(format!("weft-logfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("weft.log");
        std::fs::write(&path, "from an earlier run\n").unwrap();
        let log = LogFile::open(&path, 1000, false).unwrap();
        let line = format!("{}\n", "x".repeat(99));
        for _ in 0..100 {
            let mut w = tracing_subscriber::fmt::MakeWriter::make_writer(&log);
            w.write_all(line.as_bytes()).unwrap();
        }
        let (now, old) = (
            std::fs::read_to_string(&path).unwrap(),
            std::fs::read_to_string(rotated_path(&path)).unwrap(),
        );
        assert!(
            now.len() <= 1000 && old.len() <= 1000,
            "{} {}",
            now.len(),
            old.len()
        );
        assert!(now.lines().all(|l| l.len() == 99), "whole lines only");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
