//! `DirLock`: one process at a time per database directory.
//!
//! Two processes appending to the same log would interleave their records
//! and each would keep an index the other invalidates. An advisory lock on
//! `LOCK` in the directory (`flock` through `std::fs::File::try_lock`) makes
//! the second opener fail with a clear error. The OS drops the lock when
//! the process dies, even by `kill -9`, so a crash never leaves a stale lock
//! behind.
//!
//! A `flock` belongs to the open file description, and `fork` duplicates
//! every descriptor of the process, close-on-exec ones included, until the
//! child calls `exec`. So when another thread of this process spawns a
//! program at the moment a database is closed and reopened, the child can
//! hold the old lock for a few microseconds. `acquire` therefore retries for
//! a short, bounded time before it reports [`Error::Locked`]; a lock really
//! held by another process is reported after that wait.
//!
//! ## A lock you can hold is a proof
//!
//! The lock lives in the file layer, not in the engines, because it is what
//! makes [`crate::MmapFile`] safe: a map of a file that another process
//! truncates kills this process with `SIGBUS`. So mapping a file takes a
//! `&DirLock` of the directory it is in ([`crate::MmapOpener::new`]), the
//! map keeps a clone of the lock, and the lock is released only when the
//! last clone is dropped: no map outlives it.
//!
//! `flock` is advisory: it keeps out every pydb process, not a program that
//! ignores it (`truncate -s 0` on a segment). That is the same bargain
//! SQLite and LMDB make.

use std::fs::{OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::{Error, FileOpener, Result};

/// The name of the lock file inside a database directory.
pub const LOCK_FILE_NAME: &str = "LOCK";

/// The longest single wait between two attempts to take the lock; the
/// waits double from 1 ms, so a held lock is reported after about 0.25 s.
const MAX_LOCK_RETRY_WAIT: Duration = Duration::from_millis(128);

/// An exclusive lock on a database directory, held until the last clone
/// is dropped.
///
/// Cloning is cheap (an `Arc`): every memory-mapped file of the directory
/// holds a clone, so that the lock outlives the maps that rely on it.
#[derive(Debug, Clone)]
pub struct DirLock {
    inner: Arc<Held>,
}

#[derive(Debug)]
struct Held {
    dir: PathBuf,
    // Keeping the file open keeps the lock; dropping it releases the lock.
    _file: std::fs::File,
}

impl DirLock {
    /// Locks `dir`, creating the lock file if needed.
    pub fn acquire(dir: &Path) -> Result<Self> {
        let path = dir.join(LOCK_FILE_NAME);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        let mut wait = Duration::from_millis(1);
        loop {
            match file.try_lock() {
                Ok(()) => {
                    return Ok(Self {
                        inner: Arc::new(Held {
                            dir: dir.to_path_buf(),
                            _file: file,
                        }),
                    });
                }
                Err(TryLockError::WouldBlock) if wait <= MAX_LOCK_RETRY_WAIT => {
                    std::thread::sleep(wait);
                    wait *= 2;
                }
                Err(TryLockError::WouldBlock) => {
                    return Err(Error::Locked {
                        dir: dir.to_path_buf(),
                        reason: "the database is open in another process (or another handle)"
                            .into(),
                    });
                }
                Err(TryLockError::Error(e)) => {
                    return Err(Error::Locked {
                        dir: dir.to_path_buf(),
                        reason: e.to_string(),
                    });
                }
            }
        }
    }

    /// The lock of `dir` for an engine opening its files with `opener`: the
    /// one the opener holds ([`FileOpener::dir_lock`], e.g. an
    /// [`crate::MmapOpener`]'s), or else a newly acquired one. An opener
    /// holding the lock of another directory is refused: its maps would
    /// not be protected by the lock other processes take.
    pub fn acquire_for<O: FileOpener>(opener: &O, dir: &Path) -> Result<Self> {
        let Some(held) = opener.dir_lock() else {
            return Self::acquire(dir);
        };
        let same = match (
            std::fs::canonicalize(held.dir()),
            std::fs::canonicalize(dir),
        ) {
            (Ok(a), Ok(b)) => a == b,
            _ => held.dir() == dir,
        };
        if !same {
            return Err(Error::io(
                dir,
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!(
                        "the opener holds the lock of {}, not of this directory",
                        held.dir().display()
                    ),
                ),
            ));
        }
        Ok(held.clone())
    }

    /// The locked directory, as it was given to [`DirLock::acquire`].
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Whether `path` is inside the locked directory (at any depth). Paths
    /// are compared as given, then, failing that, with their directories
    /// resolved (`.`, `..`, symbolic links).
    pub fn covers(&self, path: &Path) -> bool {
        if path.starts_with(self.dir()) {
            return true;
        }
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        match (
            std::fs::canonicalize(parent),
            std::fs::canonicalize(self.dir()),
        ) {
            (Ok(parent), Ok(dir)) => parent.starts_with(dir),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_fails_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirLock::acquire(dir.path()).unwrap();
        let err = DirLock::acquire(dir.path()).unwrap_err();
        assert!(matches!(err, Error::Locked { .. }), "{err}");
        assert_eq!(err.kind(), crate::ErrorKind::Locked);
        // A clone holds the lock too.
        let clone = first.clone();
        drop(first);
        DirLock::acquire(dir.path()).unwrap_err();
        drop(clone);
        DirLock::acquire(dir.path()).unwrap();
    }

    #[test]
    fn a_lock_released_within_the_retry_window_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirLock::acquire(dir.path()).unwrap();
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            drop(first);
        });
        // Without the retry this fails: the lock is held when we start.
        DirLock::acquire(dir.path()).unwrap();
        release.join().unwrap();
    }
}
