//! # pydb-file: the byte device
//!
//! The bottom layer of pydb. Everything pydb persists goes through the
//! [`File`] trait: a positional byte device in the spirit of a block device,
//! with `len`, `read_at`, `write_at`, `append`, `set_len` and `sync_data`.
//!
//! Every method takes `&self` and there is no cursor: readers on many threads
//! and one writer can share one file without locking each other out, and a
//! decorator (a fault-injecting file, a compressing file) can wrap any
//! implementation without caring who calls it.
//!
//! The durability contract is the one of POSIX `pwrite` + `fdatasync`:
//! bytes written are visible to every reader at once, but survive a power
//! cut only once [`File::sync_data`] has returned `Ok`. Creating, renaming
//! or deleting a file is durable only once its directory has been synced,
//! see [`sync_dir`].

pub mod compressed;
pub mod encrypted;
mod error;
pub mod faulty;
pub mod keys;
mod lock;
mod mmap;
mod monolithic;
mod preallocated;
mod scratch;
mod segmented;

pub use compressed::{
    ChunkCache, CompressedFile, CompressedOpener, CompressionStats, CompressionTotals,
};
pub use encrypted::{EncryptedFile, EncryptedOpener};
pub use error::{Error, ErrorKind, Result};
pub use faulty::{FaultController, FaultyFile, FaultyOpener};
pub use keys::{DataKey, KeyMaterial, WrappedKey};
pub use lock::{DirLock, LOCK_FILE_NAME};
pub use mmap::{MIN_MAP_CAPACITY, MmapFile, MmapOpener};
pub use monolithic::{MonolithicFile, MonolithicOpener, sync_dir};
pub use preallocated::PreallocatedFile;
pub use segmented::{
    SEGMENT_ID_DIGITS, SegmentedFile, TEMP_SUFFIX, list_ids, parse_id, segment_path,
};

use std::path::Path;

/// A positional byte device: the one interface every pydb file implements.
///
/// Implementations must be safe to share between threads: any number of
/// concurrent `read_at` calls may run beside one writer. Callers that write
/// from several threads serialize those writes themselves (the WAL does).
pub trait File: Send + Sync + std::fmt::Debug {
    /// The path of the file, used in error messages and reports.
    fn path(&self) -> &Path;

    /// The current length of the file in bytes.
    fn len(&self) -> Result<u64>;

    /// Whether the file is empty.
    fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Fills `buf` with the bytes at `offset..offset + buf.len()`.
    ///
    /// Returns [`Error::ReadPastEnd`] when the range is not entirely inside
    /// the file; a short read is never returned as success.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()>;

    /// Calls `visit` with the `len` bytes at `offset`, borrowed for the
    /// length of the call: a read without a copy where the file can lend
    /// its bytes (an [`MmapFile`] lends its map), a [`File::read_at`] into
    /// a temporary buffer otherwise (this default). `visit` runs at most
    /// once, and not at all if the read fails; the borrow cannot outlive
    /// it, so the file stays free to remap or truncate afterwards.
    ///
    /// Errors as [`File::read_at`]. As with `read_at`, bytes written
    /// concurrently into the same range may be seen half old, half new: a
    /// caller that checks a checksum inside `visit` and then uses the bytes
    /// relies on nobody writing over them (a log only appends).
    fn read_with(&self, offset: u64, len: usize, visit: &mut dyn FnMut(&[u8])) -> Result<()> {
        // Checked before allocating: `len` may come from damaged bytes.
        let file_len = self.len()?;
        if offset
            .checked_add(len as u64)
            .is_none_or(|end| end > file_len)
        {
            return Err(Error::ReadPastEnd {
                path: self.path().to_path_buf(),
                offset,
                len,
                file_len,
            });
        }
        // A buffer reused by the thread: no allocation or zeroing per read.
        scratch::with_buffer(len, |buf| {
            self.read_at(offset, buf)?;
            visit(buf);
            Ok(())
        })
    }

    /// Writes all of `data` at `offset`, extending the file if needed.
    fn write_at(&self, offset: u64, data: &[u8]) -> Result<()>;

    /// Writes all of `data` at the end of the file and returns the offset
    /// it was written at.
    ///
    /// If the write fails part-way, a prefix of `data` may have reached the
    /// file; the length reported by [`File::len`] afterwards tells how much.
    fn append(&self, data: &[u8]) -> Result<u64>;

    /// Truncates or extends the file to `len` bytes.
    fn set_len(&self, len: u64) -> Result<()>;

    /// Makes every byte written so far durable (POSIX `fdatasync`).
    fn sync_data(&self) -> Result<()>;
}

/// Opens files of one kind and changes directories (create, rename, remove,
/// list, sync), so that a layer that manages many files (a segmented log,
/// an LSM tree) can be generic over the file type.
///
/// Every directory operation of the layers above goes through here, never
/// through `std::fs`: that is what lets a fault-injecting opener undo the
/// renames and removals a power cut would lose. A fault-injecting opener
/// hands out files that share one fault plan; a plain opener hands out
/// [`MonolithicFile`]s.
pub trait FileOpener: Send + Sync + std::fmt::Debug {
    /// The kind of file this opener produces.
    type File: File;

    /// Opens the file at `path`, creating it (empty) if `create` is true and
    /// it does not exist.
    fn open(&self, path: &Path, create: bool) -> Result<Self::File>;

    /// Removes the file at `path`. The caller syncs the directory.
    fn remove(&self, path: &Path) -> Result<()> {
        std::fs::remove_file(path).map_err(|e| Error::io(path, e))
    }

    /// Renames `from` to `to`, replacing `to` if it exists (POSIX
    /// `rename`, atomic on one file system). The caller syncs the directory:
    /// until then a power cut may undo the rename.
    fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        std::fs::rename(from, to).map_err(|e| Error::io(from, e))
    }

    /// Creates `dir` and its missing parents. The caller syncs the parent
    /// directory if the creation must survive a power cut.
    fn create_dir_all(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))
    }

    /// Creates `dir` and its missing parents, then syncs the parent of each
    /// directory it created, top down, so that the whole path survives a
    /// power cut once this returns. Engines create their directories with
    /// this: a database directory whose own entry is lost takes every
    /// acknowledged write inside it along.
    fn create_dir_all_durable(&self, dir: &Path) -> Result<()> {
        let missing: Vec<&Path> = dir
            .ancestors()
            .take_while(|a| !a.as_os_str().is_empty() && matches!(a.try_exists(), Ok(false)))
            .collect();
        self.create_dir_all(dir)?;
        for created in missing.iter().rev() {
            let parent = match created.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            self.sync_dir(parent)?;
        }
        Ok(())
    }

    /// The names of the entries in `dir`, sorted, so that callers see a
    /// directory in the same order on every run.
    fn list_dir(&self, dir: &Path) -> Result<Vec<std::ffi::OsString>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
            names.push(entry.map_err(|e| Error::io(dir, e))?.file_name());
        }
        names.sort();
        Ok(names)
    }

    /// The exclusive lock of a directory this opener holds, if any (an
    /// [`MmapOpener`] does). An engine opening that directory reuses it
    /// instead of taking the lock a second time, which would fail.
    fn dir_lock(&self) -> Option<&DirLock> {
        None
    }

    /// Whether a write inside one of this opener's files changes those
    /// bytes on disk and nothing else, as with a plain file. Only then do
    /// zeros written ahead of the end ([`PreallocatedFile`]) spare a later
    /// append's sync the size change; a compressing or encrypting file
    /// rewrites its own frames or blocks (and may refuse in-place writes),
    /// so the default is `false`.
    fn writes_in_place(&self) -> bool {
        false
    }

    /// Makes the creation, renaming and removal of entries in `dir` durable.
    fn sync_dir(&self, dir: &Path) -> Result<()> {
        sync_dir(dir)
    }
}

impl<T: File + ?Sized> File for std::sync::Arc<T> {
    fn path(&self) -> &Path {
        (**self).path()
    }
    fn len(&self) -> Result<u64> {
        (**self).len()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        (**self).read_at(offset, buf)
    }
    fn read_with(&self, offset: u64, len: usize, visit: &mut dyn FnMut(&[u8])) -> Result<()> {
        (**self).read_with(offset, len, visit)
    }
    fn write_at(&self, offset: u64, data: &[u8]) -> Result<()> {
        (**self).write_at(offset, data)
    }
    fn append(&self, data: &[u8]) -> Result<u64> {
        (**self).append(data)
    }
    fn set_len(&self, len: u64) -> Result<()> {
        (**self).set_len(len)
    }
    fn sync_data(&self) -> Result<()> {
        (**self).sync_data()
    }
}
