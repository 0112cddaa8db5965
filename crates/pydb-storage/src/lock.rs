//! `DirLock`: one process at a time per database directory.
//!
//! Two processes appending to the same log would interleave their records
//! and each would keep an index the other invalidates. An advisory lock on
//! `LOCK` in the directory (`flock` through `std::fs::File::try_lock`) makes
//! the second opener fail at once with a clear error. The OS drops the lock
//! when the process dies, even by `kill -9`, so a crash never leaves a stale
//! lock behind.

use std::fs::{OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The name of the lock file inside a database directory.
pub const LOCK_FILE_NAME: &str = "LOCK";

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
        match file.try_lock() {
            Ok(()) => Ok(Self {
                dir: dir.to_path_buf(),
                _file: file,
            }),
            Err(TryLockError::WouldBlock) => Err(Error::Locked {
                dir: dir.to_path_buf(),
                reason: "the database is open in another process (or another handle)".into(),
            }),
            Err(TryLockError::Error(e)) => Err(Error::Locked {
                dir: dir.to_path_buf(),
                reason: e.to_string(),
            }),
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
}
