//! `MmapFile`: one operating-system file whose reads are served from a
//! memory map.
//!
//! ## Why reads only
//!
//! A read through a map is a `memcpy` out of the page cache: no system call,
//! no kernel entry. Writes are another matter: a store into a writable map
//! reaches the disk whenever the kernel decides, cannot report `ENOSPC` or
//! `EIO` (the process gets `SIGBUS` instead), and gives no way to order
//! writes before a sync. So writes and appends go through `pwrite` on the
//! file descriptor, exactly like [`crate::MonolithicFile`], and the read-only
//! map, which is `MAP_SHARED`, sees them at once: it is a window on the same
//! page cache.
//!
//! ## The map and the length
//!
//! ```text
//!  0                       mapped_len            len
//!  |======== map ===========|------- pread -------|
//! ```
//!
//! - `len` is the file length as this process knows it, like in
//!   `MonolithicFile`. A read past it is [`Error::ReadPastEnd`].
//! - The map covers `0..mapped_len`, and `mapped_len <= len` always: every
//!   mapped byte exists in the file. A read inside the map copies out of it;
//!   a read that reaches past it (bytes appended since the last remap) falls
//!   back to `pread`.
//! - Re-creating the map costs a `mmap`/`munmap` pair and throws away the
//!   page-table entries of the old map, so it is not done on every append:
//!   the map is re-created once the unmapped tail has grown past one eighth
//!   of the mapped length (at least [`MIN_REMAP_STEP`]). The cost of
//!   remapping is then spread over the bytes appended, like a `Vec` growing
//!   by doubling.
//!
//! ## Why the map never outlives the bytes it shows (SIGBUS)
//!
//! If a file shrinks while a map of it is live, touching a mapped page past
//! the new end raises `SIGBUS` and kills the process: no error, no unwinding.
//! pydb rules that out:
//!
//! - the map and `len` live under one `RwLock`; every read holds it shared
//!   for the whole copy, and [`File::set_len`] takes it exclusively, drops
//!   the map *before* it truncates, and maps again afterwards. No reader can
//!   be inside the map while it shrinks;
//! - nothing else in the process truncates the file behind this handle (the
//!   fault-injecting [`crate::FaultyFile`] does so at a simulated power cut,
//!   but only after every handle it wraps has been declared dead, so no read
//!   reaches the inner map again);
//! - other processes are kept out by the directory lock, and that rule is
//!   in the types, not only in this comment: see below.
//!
//! One hazard stays: a disk that fails to read a mapped page also delivers
//! `SIGBUS` rather than an `EIO` error. That is the price of mmap reads,
//! and why [`crate::MonolithicFile`] (plain `pread`) remains available, and
//! is what the B+tree engine and the fault tests use; the log engine maps
//! its segments by default.
//!
//! ## The directory lock as a proof
//!
//! The last rule depends on code outside this file: whoever opens a map
//! must make sure no other pydb process can truncate the file meanwhile.
//! Two ways to say so in Rust were possible:
//!
//! - an `unsafe fn` constructor whose contract says "hold the directory
//!   lock", which every caller (engines, tools, benchmarks, tests) would
//!   discharge with an `unsafe` block and a comment; or
//! - a proof token: opening takes a [`DirLock`] of the directory the file
//!   is in, and the map keeps a clone of it.
//!
//! pydb takes the token. A `DirLock` can only be had by taking the lock
//! ([`DirLock::acquire`]), so a caller who has one has done the work, and
//! the compiler checks that every map was opened by such a caller; the
//! clone held by each [`MmapFile`] means the lock is released only after
//! the last map is gone. [`MmapFile::open`] also checks that the file is
//! inside the locked directory, so a lock of one directory cannot vouch for
//! another. What the token cannot promise is the part no type can: `flock`
//! is advisory, so a program that ignores it (`truncate -s 0` on a segment)
//! can still bring `SIGBUS`, exactly as with SQLite or LMDB.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use memmap2::{Mmap, MmapOptions};
use parking_lot::{Mutex, RwLock};

use crate::{DirLock, Error, File, FileOpener, Result};

/// The map is re-created once at least this many bytes, or one eighth of
/// the mapped length if that is more, have been appended past it.
pub const MIN_REMAP_STEP: u64 = 1 << 20;

/// One operating-system file behind the [`File`] trait, read through a
/// memory map and written with `pwrite`.
#[derive(Debug)]
pub struct MmapFile {
    path: PathBuf,
    file: std::fs::File,
    /// Serializes the operations that change the length (appends, writes,
    /// `set_len`), so that appends get distinct offsets.
    writer: Mutex<()>,
    /// The length and the map, which change together.
    state: RwLock<MapState>,
    /// The lock of the directory the file is in, held as long as the map
    /// can be: see the module docs.
    _lock: DirLock,
}

#[derive(Debug)]
struct MapState {
    /// The file length as this process knows it.
    len: u64,
    /// A map of `0..mapped_len` with `mapped_len <= len`; `None` when the
    /// file is empty (a map cannot be empty) or mapping failed.
    map: Option<Mmap>,
}

impl MapState {
    fn mapped_len(&self) -> u64 {
        self.map.as_ref().map_or(0, |map| map.len() as u64)
    }
}

impl MmapFile {
    /// Opens the file at `path`, creating it if `create` is set, and maps
    /// it. `lock` must be the lock of a directory that holds `path`: it is
    /// what keeps other pydb processes from truncating the file under the
    /// map (see the module docs).
    pub fn open(path: impl AsRef<Path>, create: bool, lock: &DirLock) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if !lock.covers(&path) {
            return Err(Error::io(
                &path,
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!(
                        "cannot map a file outside the locked directory {}",
                        lock.dir().display()
                    ),
                ),
            ));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        let len = file.metadata().map_err(|e| Error::io(&path, e))?.len();
        let this = Self {
            path,
            file,
            writer: Mutex::new(()),
            state: RwLock::new(MapState { len, map: None }),
            _lock: lock.clone(),
        };
        {
            let mut state = this.state.write();
            this.remap(&mut state);
        }
        Ok(this)
    }

    /// Opens the file at `path`, creating it if it does not exist.
    pub fn create(path: impl AsRef<Path>, lock: &DirLock) -> Result<Self> {
        Self::open(path, true, lock)
    }

    /// How many bytes, from the start of the file, reads can serve from the
    /// map; reads past this go through `pread`.
    pub fn mapped_len(&self) -> u64 {
        self.state.read().mapped_len()
    }

    fn overflow(&self, offset: u64) -> Error {
        Error::Overflow {
            path: self.path.clone(),
            offset,
        }
    }

    /// The length of the file according to the OS, after a failed write
    /// that may have extended it part-way.
    fn os_len_or(&self, fallback: u64) -> u64 {
        self.file.metadata().map_or(fallback, |m| m.len())
    }

    /// Re-creates the map to cover the whole known length. Called with the
    /// state locked exclusively, so no reader is inside the old map.
    ///
    /// A failed `mmap` is not an error: the old map (if it still fits) or
    /// no map at all stays, and reads past it use `pread`.
    fn remap(&self, state: &mut MapState) {
        if state.len == 0 {
            state.map = None;
            return;
        }
        let Ok(len) = usize::try_from(state.len) else {
            return;
        };
        if let Ok(map) = map_file(&self.file, len) {
            state.map = Some(map);
        }
    }

    /// Remaps if the unmapped tail has grown past the remap step.
    fn remap_if_grown(&self, state: &mut MapState) {
        let mapped = state.mapped_len();
        let step = (mapped / 8).max(MIN_REMAP_STEP);
        if state.len.saturating_sub(mapped) >= step {
            self.remap(state);
        }
    }

    /// Checks that `offset..offset + len` lies inside the file, then calls
    /// `read` with the mapped bytes of that range, or `None` if the range
    /// reaches past the map, all under the state lock held shared: `set_len`
    /// cannot shrink the file (and drop the map) while `read` runs, and no
    /// reference into the map outlives it.
    fn with_mapped(
        &self,
        offset: u64,
        len: usize,
        read: impl FnOnce(Option<&[u8]>) -> Result<()>,
    ) -> Result<()> {
        let end = offset
            .checked_add(len as u64)
            .ok_or_else(|| self.overflow(offset))?;
        let state = self.state.read();
        if end > state.len {
            return Err(Error::ReadPastEnd {
                path: self.path.clone(),
                offset,
                len,
                file_len: state.len,
            });
        }
        let mapped = state.map.as_ref().and_then(|map| {
            let start = usize::try_from(offset).ok()?;
            let stop = usize::try_from(end).ok()?;
            map.get(start..stop)
        });
        read(mapped)
    }

    /// Records a new length after a write that ended at `end`.
    fn grow_to(&self, end: u64) {
        let mut state = self.state.write();
        if end > state.len {
            state.len = end;
            self.remap_if_grown(&mut state);
        }
    }
}

/// Maps the first `len` bytes of `file` read-only and shared.
#[expect(
    unsafe_code,
    reason = "memory-mapping a file is unsafe: the mapped bytes can change or vanish underneath"
)]
fn map_file(file: &std::fs::File, len: usize) -> std::io::Result<Mmap> {
    // SAFETY: `Mmap` hands out a `&[u8]` over memory that the kernel backs
    // with the file, so two things could break Rust's rules:
    // - The bytes can change while a `&[u8]` to them is live: another write
    //   to the file shows through the shared map. A reference into the map
    //   lives only while the state lock is held shared (`with_mapped`):
    //   `read_at` copies out of it, and `read_with` lends it to a visitor
    //   whose signature lets no borrow escape the call. So the worst a
    //   concurrent write causes is a mix of old and new bytes, which is the
    //   same as a `pread` racing a `pwrite` and is the caller's business.
    // - If the file shrinks below `len` while the map is live, touching a
    //   page past the new end raises SIGBUS and kills the process. `len` is
    //   at most the file length (the caller holds the state lock exclusively
    //   and `len` only counts bytes that were written), and pydb never
    //   shrinks a file with a live map: `MmapFile::set_len` drops the map
    //   before truncating, under the exclusive lock that every reader also
    //   takes; other pydb processes are kept out by the directory lock,
    //   which `MmapFile::open` demands and the file holds while it lives.
    unsafe { MmapOptions::new().len(len).map(file) }
}

impl File for MmapFile {
    fn path(&self) -> &Path {
        &self.path
    }

    fn len(&self) -> Result<u64> {
        Ok(self.state.read().len)
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.with_mapped(offset, buf.len(), |mapped| match mapped {
            Some(bytes) => {
                buf.copy_from_slice(bytes);
                Ok(())
            }
            // Past the map: bytes appended since the last remap.
            None => self
                .file
                .read_exact_at(buf, offset)
                .map_err(|e| Error::io(&self.path, e)),
        })
    }

    /// Lends the mapped bytes themselves, without a copy, when the range
    /// lies inside the map; `pread`s into a buffer past it.
    fn read_with(&self, offset: u64, len: usize, visit: &mut dyn FnMut(&[u8])) -> Result<()> {
        self.with_mapped(offset, len, |mapped| match mapped {
            Some(bytes) => {
                visit(bytes);
                Ok(())
            }
            None => {
                let mut buf = vec![0u8; len];
                self.file
                    .read_exact_at(&mut buf, offset)
                    .map_err(|e| Error::io(&self.path, e))?;
                visit(&buf);
                Ok(())
            }
        })
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> Result<()> {
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or_else(|| self.overflow(offset))?;
        if data.is_empty() {
            // POSIX: writing nothing does not extend the file.
            return Ok(());
        }
        let _writer = self.writer.lock();
        let result = self.file.write_all_at(data, offset);
        // Even a failed write may have extended the file: ask the OS.
        let new_end = match result {
            Ok(()) => end,
            Err(_) => self.os_len_or(0),
        };
        self.grow_to(new_end);
        result.map_err(|e| Error::io(&self.path, e))
    }

    fn append(&self, data: &[u8]) -> Result<u64> {
        let _writer = self.writer.lock();
        let offset = self.state.read().len;
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or_else(|| self.overflow(offset))?;
        let result = self.file.write_all_at(data, offset);
        let new_end = match result {
            Ok(()) => end,
            Err(_) => self.os_len_or(offset),
        };
        self.grow_to(new_end);
        result
            .map(|()| offset)
            .map_err(|e| Error::io(&self.path, e))
    }

    fn set_len(&self, new_len: u64) -> Result<()> {
        let _writer = self.writer.lock();
        let mut state = self.state.write();
        let shrinks_map = new_len < state.mapped_len();
        if shrinks_map {
            // Unmap before the file shrinks: afterwards the old map would
            // reach past the end of the file (SIGBUS on touch).
            state.map = None;
        }
        let result = self.file.set_len(new_len);
        state.len = match result {
            Ok(()) => new_len,
            Err(_) => self.os_len_or(state.len.min(new_len)),
        };
        if shrinks_map || state.map.is_none() {
            self.remap(&mut state);
        } else {
            self.remap_if_grown(&mut state);
        }
        result.map_err(|e| Error::io(&self.path, e))
    }

    fn sync_data(&self) -> Result<()> {
        // The map is read-only: every byte was written with `pwrite`, so
        // `fdatasync` on the descriptor covers all of it (no `msync`).
        self.file.sync_data().map_err(|e| Error::io(&self.path, e))
    }
}

/// Opens [`MmapFile`]s in one locked directory.
///
/// An engine given an `MmapOpener` reuses its lock
/// ([`FileOpener::dir_lock`]) instead of taking the directory lock again.
#[derive(Debug, Clone)]
pub struct MmapOpener {
    lock: DirLock,
}

impl MmapOpener {
    /// An opener for files inside the directory `lock` holds.
    pub fn new(lock: &DirLock) -> Self {
        Self { lock: lock.clone() }
    }

    /// Creates `dir` (durably) if needed, takes its lock, and returns an
    /// opener for the files in it. Fails with [`Error::Locked`] if another
    /// process holds the directory.
    pub fn lock_dir(dir: &Path) -> Result<Self> {
        crate::MonolithicOpener.create_dir_all_durable(dir)?;
        Ok(Self::new(&DirLock::acquire(dir)?))
    }
}

impl FileOpener for MmapOpener {
    type File = MmapFile;

    fn open(&self, path: &Path, create: bool) -> Result<MmapFile> {
        MmapFile::open(path, create, &self.lock)
    }

    fn dir_lock(&self) -> Option<&DirLock> {
        Some(&self.lock)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn read(file: &MmapFile, offset: u64, len: usize) -> Vec<u8> {
        let mut buf = vec![0u8; len];
        file.read_at(offset, &mut buf).unwrap();
        buf
    }

    #[test]
    fn a_map_needs_the_lock_of_its_directory_and_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        let lock = DirLock::acquire(dir.path()).unwrap();
        let err = MmapFile::create(other.path().join("f"), &lock).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::InvalidInput, "{err}");
        let opener = MmapOpener::new(&lock);
        let file = opener.open(&dir.path().join("f"), true).unwrap();
        drop((lock, opener));
        // The map still holds the lock: no other handle can take the
        // directory (and truncate the file) while it lives.
        let err = DirLock::acquire(dir.path()).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Locked);
        drop(file);
        DirLock::acquire(dir.path()).unwrap();
    }

    #[test]
    fn opening_maps_the_whole_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let lock = DirLock::acquire(dir.path()).unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"0123456789").unwrap();
        let file = MmapFile::open(&path, false, &lock).unwrap();
        assert_eq!(file.mapped_len(), 10);
        assert_eq!(read(&file, 3, 4), b"3456");
    }

    #[test]
    fn empty_file_has_no_map_and_reads_past_end_fail() {
        let dir = tempfile::tempdir().unwrap();
        let lock = DirLock::acquire(dir.path()).unwrap();
        let file = MmapFile::create(dir.path().join("f"), &lock).unwrap();
        assert_eq!(file.mapped_len(), 0);
        let err = file.read_at(0, &mut [0u8; 1]).unwrap_err();
        assert!(
            matches!(err, Error::ReadPastEnd { file_len: 0, .. }),
            "{err}"
        );
        // An empty read at the end is fine.
        file.read_at(0, &mut []).unwrap();
    }

    #[test]
    fn small_appends_are_read_through_pread_until_the_remap_step() {
        let dir = tempfile::tempdir().unwrap();
        let lock = DirLock::acquire(dir.path()).unwrap();
        let file = MmapFile::create(dir.path().join("f"), &lock).unwrap();
        assert_eq!(file.append(b"hello").unwrap(), 0);
        assert_eq!(file.append(b"world").unwrap(), 5);
        // Far below MIN_REMAP_STEP: still unmapped, but readable.
        assert_eq!(file.mapped_len(), 0);
        assert_eq!(read(&file, 3, 5), b"lowor");
        // A read that spans the mapped and unmapped parts.
        let big = vec![7u8; MIN_REMAP_STEP as usize];
        file.append(&big).unwrap();
        assert_eq!(file.mapped_len(), 10 + MIN_REMAP_STEP);
        file.append(b"tail").unwrap();
        assert_eq!(file.mapped_len(), 10 + MIN_REMAP_STEP);
        let end = file.len().unwrap();
        assert_eq!(read(&file, end - 6, 6), b"\x07\x07tail");
        assert_eq!(read(&file, 0, 10), b"helloworld");
    }

    #[test]
    fn read_with_lends_the_map_and_preads_past_it() {
        let dir = tempfile::tempdir().unwrap();
        let lock = DirLock::acquire(dir.path()).unwrap();
        let file = MmapFile::create(dir.path().join("f"), &lock).unwrap();
        let big: Vec<u8> = (0..MIN_REMAP_STEP).map(|i| (i % 251) as u8).collect();
        file.append(&big).unwrap();
        file.append(b"tail").unwrap();
        let mapped = file.mapped_len();
        assert_eq!(mapped, MIN_REMAP_STEP);
        let map_start = file.state.read().map.as_ref().unwrap().as_ptr() as usize;
        let lent = |offset: u64, len: usize| {
            let (mut seen, mut calls, mut at) = (Vec::new(), 0, 0usize);
            file.read_with(offset, len, &mut |bytes| {
                seen = bytes.to_vec();
                at = bytes.as_ptr() as usize;
                calls += 1;
            })
            .map(|()| (seen, calls, at))
        };
        // Inside the map: the visitor sees the map's own bytes.
        let (seen, calls, at) = lent(1000, 50).unwrap();
        assert_eq!((seen.as_slice(), calls), (&big[1000..1050], 1));
        assert_eq!(at, map_start + 1000);
        // Across the end of the map: a copy, with the same bytes read_at gives.
        let (seen, calls, at) = lent(mapped - 2, 6).unwrap();
        assert_eq!(
            (seen.as_slice(), calls),
            (read(&file, mapped - 2, 6).as_slice(), 1)
        );
        assert_eq!(&seen[2..], b"tail");
        assert_ne!(at, map_start + mapped as usize - 2);
        // Past the end: an error, and the visitor never runs.
        let err = lent(mapped, 5).unwrap_err();
        assert!(matches!(err, Error::ReadPastEnd { .. }), "{err}");
        assert!(lent(u64::MAX, 2).is_err());
    }

    #[test]
    fn in_place_writes_show_through_the_map() {
        let dir = tempfile::tempdir().unwrap();
        let lock = DirLock::acquire(dir.path()).unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![0u8; 4096]).unwrap();
        let file = MmapFile::open(&path, false, &lock).unwrap();
        assert_eq!(file.mapped_len(), 4096);
        file.write_at(100, b"abc").unwrap();
        assert_eq!(read(&file, 99, 5), b"\0abc\0");
        // A write past the end extends the file; the gap reads as zeros.
        file.write_at(5000, b"xyz").unwrap();
        assert_eq!(file.len().unwrap(), 5003);
        assert_eq!(read(&file, 4999, 4), b"\0xyz");
        // Writing nothing changes nothing.
        file.write_at(9000, b"").unwrap();
        assert_eq!(file.len().unwrap(), 5003);
    }

    #[test]
    fn shrinking_drops_the_map_and_growing_reads_zeros() {
        let dir = tempfile::tempdir().unwrap();
        let lock = DirLock::acquire(dir.path()).unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![9u8; 10_000]).unwrap();
        let file = MmapFile::open(&path, false, &lock).unwrap();
        file.set_len(100).unwrap();
        assert_eq!(file.mapped_len(), 100);
        assert_eq!(file.len().unwrap(), 100);
        let err = file.read_at(99, &mut [0u8; 2]).unwrap_err();
        assert!(
            matches!(err, Error::ReadPastEnd { file_len: 100, .. }),
            "{err}"
        );
        file.set_len(200).unwrap();
        assert_eq!(read(&file, 98, 4), [9, 9, 0, 0]);
        file.set_len(0).unwrap();
        assert_eq!(file.mapped_len(), 0);
        assert_eq!(file.append(b"new").unwrap(), 0);
        assert_eq!(read(&file, 0, 3), b"new");
    }

    #[test]
    fn reopen_sees_synced_appends() {
        let dir = tempfile::tempdir().unwrap();
        let lock = DirLock::acquire(dir.path()).unwrap();
        let path = dir.path().join("f");
        let file = MmapFile::create(&path, &lock).unwrap();
        for i in 0..100u8 {
            file.append(&[i; 116]).unwrap();
        }
        file.sync_data().unwrap();
        drop(file);
        let file = MmapFile::open(&path, false, &lock).unwrap();
        assert_eq!(file.len().unwrap(), 11_600);
        assert_eq!(file.mapped_len(), 11_600);
        assert_eq!(read(&file, 116 * 42, 116), vec![42u8; 116]);
    }

    #[test]
    fn concurrent_readers_see_whole_records_while_one_thread_appends() {
        const RECORD: usize = 4096;
        const RECORDS: u64 = 600;
        let dir = tempfile::tempdir().unwrap();
        let lock = DirLock::acquire(dir.path()).unwrap();
        let file = Arc::new(MmapFile::create(dir.path().join("f"), &lock).unwrap());
        let writer = {
            let file = Arc::clone(&file);
            std::thread::spawn(move || {
                for i in 0..RECORDS {
                    let offset = file.append(&[(i % 251) as u8; RECORD]).unwrap();
                    assert_eq!(offset, i * RECORD as u64);
                }
            })
        };
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let file = Arc::clone(&file);
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; RECORD];
                    let mut checked = 0u64;
                    while checked < RECORDS {
                        let records = file.len().unwrap() / RECORD as u64;
                        for i in checked..records {
                            file.read_at(i * RECORD as u64, &mut buf).unwrap();
                            assert!(buf.iter().all(|&b| b == (i % 251) as u8), "record {i}");
                        }
                        checked = records;
                    }
                })
            })
            .collect();
        writer.join().unwrap();
        for reader in readers {
            reader.join().unwrap();
        }
        // 600 * 4096 = 2.4 MiB: the map has been re-created on the way.
        assert!(file.mapped_len() >= MIN_REMAP_STEP);
    }
}
