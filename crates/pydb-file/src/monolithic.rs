//! `MonolithicFile`: one operating-system file.
//!
//! Reads and writes are positional (`pread`/`pwrite`), so they need no lock.
//! The only state kept in memory is the length, so that `append` can hand out
//! offsets without asking the OS; it lives under a mutex that also serializes
//! appends with each other.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;

use crate::{Error, File, FileOpener, Result};

/// One operating-system file behind the [`File`] trait.
#[derive(Debug)]
pub struct MonolithicFile {
    path: PathBuf,
    file: std::fs::File,
    /// The length of the file as this process knows it; appends write here.
    len: Mutex<u64>,
}

impl MonolithicFile {
    /// Opens the file at `path`, creating it if `create` is set.
    pub fn open(path: impl AsRef<Path>, create: bool) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        let len = file.metadata().map_err(|e| Error::io(&path, e))?.len();
        Ok(Self {
            path,
            file,
            len: Mutex::new(len),
        })
    }

    /// Opens the file at `path`, creating it if it does not exist.
    pub fn create(path: impl AsRef<Path>) -> Result<Self> {
        Self::open(path, true)
    }

    /// Opens the file at `path` for reading only: every write fails with the
    /// operating system's error. Tools that must never change what they
    /// look at (`pydb inspect`, `pydb check`) open files this way.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
        let len = file.metadata().map_err(|e| Error::io(&path, e))?.len();
        Ok(Self {
            path,
            file,
            len: Mutex::new(len),
        })
    }
}

impl File for MonolithicFile {
    fn path(&self) -> &Path {
        &self.path
    }

    fn len(&self) -> Result<u64> {
        Ok(*self.len.lock())
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let file_len = *self.len.lock();
        let end = offset
            .checked_add(buf.len() as u64)
            .ok_or_else(|| Error::Overflow {
                path: self.path.clone(),
                offset,
            })?;
        if end > file_len {
            return Err(Error::ReadPastEnd {
                path: self.path.clone(),
                offset,
                len: buf.len(),
                file_len,
            });
        }
        self.file
            .read_exact_at(buf, offset)
            .map_err(|e| Error::io(&self.path, e))
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> Result<()> {
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or_else(|| Error::Overflow {
                path: self.path.clone(),
                offset,
            })?;
        if data.is_empty() {
            // POSIX: writing nothing does not extend the file, so the
            // cached length must not move either.
            return Ok(());
        }
        let mut len = self.len.lock();
        let result = self.file.write_all_at(data, offset);
        if end > *len {
            // Even a failed write may have extended the file: ask the OS.
            *len = match result {
                Ok(()) => end,
                Err(_) => self.file.metadata().map(|m| m.len()).unwrap_or(*len),
            };
        }
        result.map_err(|e| Error::io(&self.path, e))
    }

    fn append(&self, data: &[u8]) -> Result<u64> {
        let mut len = self.len.lock();
        let offset = *len;
        match self.file.write_all_at(data, offset) {
            Ok(()) => {
                *len = offset + data.len() as u64;
                Ok(offset)
            }
            Err(e) => {
                *len = self.file.metadata().map(|m| m.len()).unwrap_or(offset);
                Err(Error::io(&self.path, e))
            }
        }
    }

    fn set_len(&self, new_len: u64) -> Result<()> {
        let mut len = self.len.lock();
        self.file
            .set_len(new_len)
            .map_err(|e| Error::io(&self.path, e))?;
        *len = new_len;
        Ok(())
    }

    fn sync_data(&self) -> Result<()> {
        self.file.sync_data().map_err(|e| Error::io(&self.path, e))
    }
}

/// Opens [`MonolithicFile`]s.
#[derive(Debug, Default, Clone, Copy)]
pub struct MonolithicOpener;

impl FileOpener for MonolithicOpener {
    type File = MonolithicFile;

    fn open(&self, path: &Path, create: bool) -> Result<MonolithicFile> {
        MonolithicFile::open(path, create)
    }

    fn writes_in_place(&self) -> bool {
        true
    }
}

/// Syncs a directory, making the creation, renaming or removal of the files
/// in it durable. Without it a new file can vanish after a power cut even
/// though its own data was synced.
pub fn sync_dir(dir: &Path) -> Result<()> {
    let handle = std::fs::File::open(dir).map_err(|e| Error::io(dir, e))?;
    handle.sync_all().map_err(|e| Error::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_returns_offsets_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let file = MonolithicFile::create(dir.path().join("f")).unwrap();
        assert_eq!(file.append(b"hello").unwrap(), 0);
        assert_eq!(file.append(b"world").unwrap(), 5);
        let mut buf = [0u8; 5];
        file.read_at(5, &mut buf).unwrap();
        assert_eq!(&buf, b"world");
        assert_eq!(file.len().unwrap(), 10);
    }

    #[test]
    fn a_read_only_file_reads_and_refuses_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        MonolithicFile::create(&path)
            .unwrap()
            .append(b"abc")
            .unwrap();
        let file = MonolithicFile::open_read_only(&path).unwrap();
        let mut buf = [0u8; 3];
        file.read_at(0, &mut buf).unwrap();
        assert_eq!(&buf, b"abc");
        assert!(file.append(b"d").is_err());
        assert!(file.write_at(0, b"x").is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"abc");
    }

    #[test]
    fn read_past_end_is_an_error_not_a_short_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = MonolithicFile::create(dir.path().join("f")).unwrap();
        file.append(b"abc").unwrap();
        let mut buf = [0u8; 4];
        let err = file.read_at(0, &mut buf).unwrap_err();
        assert!(
            matches!(err, Error::ReadPastEnd { file_len: 3, .. }),
            "{err}"
        );
    }

    #[test]
    fn read_with_copies_and_checks_the_length_first() {
        let dir = tempfile::tempdir().unwrap();
        let file = MonolithicFile::create(dir.path().join("f")).unwrap();
        file.append(b"hello world").unwrap();
        let mut seen = Vec::new();
        file.read_with(6, 5, &mut |bytes| seen.extend_from_slice(bytes))
            .unwrap();
        assert_eq!(seen, b"world");
        // A damaged length past the end fails before any buffer is made
        // (a 1 TiB `vec!` would abort the process) and never visits.
        let err = file
            .read_with(6, 1 << 40, &mut |_| panic!("visited"))
            .unwrap_err();
        assert!(
            matches!(err, Error::ReadPastEnd { file_len: 11, .. }),
            "{err}"
        );
    }

    #[test]
    fn set_len_truncates_and_reopen_sees_the_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = MonolithicFile::create(&path).unwrap();
        file.append(b"0123456789").unwrap();
        file.set_len(4).unwrap();
        file.sync_data().unwrap();
        drop(file);
        let file = MonolithicFile::open(&path, false).unwrap();
        assert_eq!(file.len().unwrap(), 4);
        assert_eq!(file.append(b"x").unwrap(), 4);
    }
}
