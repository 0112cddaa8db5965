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

use std::fs::{OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{Error, Result};

/// The name of the lock file inside a database directory.
pub const LOCK_FILE_NAME: &str = "LOCK";

/// The longest single wait between two attempts to take the lock; the
/// waits double from 1 ms, so a held lock is reported after about 0.25 s.
const MAX_LOCK_RETRY_WAIT: Duration = Duration::from_millis(128);

/// An exclusive lock on a database directory, held until dropped.
#[derive(Debug)]
pub struct DirLock {
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
            .map_err(|e| pydb_file::Error::io(&path, e))?;
        let mut wait = Duration::from_millis(1);
        loop {
            match file.try_lock() {
                Ok(()) => {
                    return Ok(Self {
                        dir: dir.to_path_buf(),
                        _file: file,
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

    /// The locked directory.
    pub fn dir(&self) -> &Path {
        &self.dir
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
        drop(first);
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
