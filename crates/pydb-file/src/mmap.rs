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
//!  0                              len                 map_capacity
//!  |====== bytes of the file ======|.... not yet written ....|
//!  |<------------------------- one map ---------------------->|
//!         reads: only here         never touched
//! ```
//!
//! - `len` is the file length as this process knows it, like in
//!   `MonolithicFile`. A read past it is [`Error::ReadPastEnd`].
//! - The map is made *ahead* of the length: it covers `0..map_capacity`,
//!   a power of two at least [`MIN_MAP_CAPACITY`] and at least `len`, so
//!   an append lands inside the map and the next read of it is a copy out
//!   of the map with no system call. Linux lets a shared map reach past
//!   the end of its file; the pages past the end simply have nothing
//!   behind them yet, and the `pwrite`s that extend the file fill the very
//!   page-cache pages the map shows.
//! - Once an append passes `map_capacity`, the map is re-created with
//!   twice the capacity (a power of two): a `mmap`/`munmap` pair, and the
//!   page-table entries of the old map are lost, so it happens a handful of
//!   times per file (a 64 MiB log segment: seven times at most), like a
//!   `Vec` growing by doubling.
//! - If `mmap` fails (address space exhausted, say), the old map stays or
//!   there is none, and reads of bytes past it fall back to `pread`.
//!
//! ## Why no read touches a page without bytes (SIGBUS)
//!
//! Touching a page of a shared map that lies wholly past the end of the
//! file raises `SIGBUS` and kills the process: no error, no unwinding. (The
//! rest of the page that holds the last byte reads as zeros.) A map ahead
//! of the length is full of such pages, so the argument is no longer "the
//! map only covers bytes that exist" but:
//!
//! 1. *A read touches only bytes below `len`*: every read checks
//!    `offset + len <= len` (with checked arithmetic) before it borrows
//!    from the map, and copies only that range.
//! 2. *`len` never exceeds the file's real size while a read can see it*:
//!    `len` grows only after a `pwrite` has returned (or, after a failed
//!    one, to what the OS reports), and it shrinks in [`File::set_len`]
//!    together with the truncation, under the exclusive state lock, so no
//!    read runs between the two.
//!
//! Both parts hold under one `RwLock`: every read holds it shared for the
//! whole check-and-copy, and everything that moves `len` or re-creates the
//! map takes it exclusively. For (2) it must also be true that nothing else
//! truncates the file behind this handle:
//!
//! - in this process, only `set_len` truncates (the fault-injecting
//!   [`crate::FaultyFile`] cuts files at a simulated power cut, but only
//!   after declaring every handle it wraps dead, under the lock its reads
//!   take, so no read reaches the inner map again);
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
use std::sync::atomic::{AtomicU64, Ordering};

use memmap2::{Mmap, MmapOptions};
use parking_lot::{Mutex, RwLock};

use crate::{DirLock, Error, File, FileOpener, Result};

/// The smallest map a file gets, however short it is: appends to a new
/// file (a log's active segment) land inside the map until the file
/// reaches this length. It costs address space, not memory: pages past
/// the end of the file are never touched.
pub const MIN_MAP_CAPACITY: u64 = 1 << 20;

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
    /// Reads served by `pread` because the map did not reach their bytes
    /// (only when `mmap` failed): what the tests watch.
    preads: AtomicU64,
    /// The lock of the directory the file is in, held as long as the map
    /// can be: see the module docs.
    _lock: DirLock,
}

#[derive(Debug)]
struct MapState {
    /// The file length as this process knows it: never more than the
    /// file's real size while a reader can see it (see the module docs).
    len: u64,
    /// A map of `0..capacity`, usually past `len`; `None` only if mapping
    /// failed. Only bytes below `len` are ever read from it.
    map: Option<Mmap>,
}

impl MapState {
    fn capacity(&self) -> u64 {
        self.map.as_ref().map_or(0, |map| map.len() as u64)
    }
}

/// The capacity of a map for a file of `len` bytes: the next power of two,
/// at least [`MIN_MAP_CAPACITY`].
fn capacity_for(len: u64) -> u64 {
    len.max(MIN_MAP_CAPACITY)
        .checked_next_power_of_two()
        .unwrap_or(len)
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
            preads: AtomicU64::new(0),
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
    /// map: the whole length unless mapping failed.
    pub fn mapped_len(&self) -> u64 {
        let state = self.state.read();
        state.len.min(state.capacity())
    }

    /// How far the map reaches, past the length: appends up to here need
    /// no new map.
    pub fn map_capacity(&self) -> u64 {
        self.state.read().capacity()
    }

    /// How many reads since the file was opened were served by `pread`
    /// instead of the map (only when the map could not be made large
    /// enough).
    pub fn pread_fallbacks(&self) -> u64 {
        self.preads.load(Ordering::Relaxed)
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

    /// Re-creates the map with room for the known length and more. Called
    /// with the state locked exclusively, so no reader is inside the old
    /// map.
    ///
    /// A failed `mmap` is not an error: the old map or no map at all stays,
    /// and reads past it use `pread`.
    fn remap(&self, state: &mut MapState) {
        let Ok(capacity) = usize::try_from(capacity_for(state.len)) else {
            return;
        };
        if let Ok(map) = map_file(&self.file, capacity) {
            state.map = Some(map);
        }
    }

    /// Checks that `offset..offset + len` lies inside the file, then calls
    /// `read` with the mapped bytes of that range, or `None` if the range
    /// reaches past the map, all under the state lock held shared: `set_len`
    /// cannot shrink the file (or the map be re-created) while `read` runs,
    /// and no reference into the map outlives it.
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
        // Part 1 of the SIGBUS argument: nothing at or past `len` is read.
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
        if mapped.is_none() {
            self.preads.fetch_add(1, Ordering::Relaxed);
        }
        read(mapped)
    }

    /// Records a new length after a write that ended at `end` (the bytes
    /// are in the file: part 2 of the SIGBUS argument).
    fn grow_to(&self, end: u64) {
        let mut state = self.state.write();
        if end > state.len {
            state.len = end;
            if end > state.capacity() {
                self.remap(&mut state);
            }
        }
    }
}

/// Maps `len` bytes of `file` from its start, read-only and shared; `len`
/// may reach past the end of the file.
#[expect(
    unsafe_code,
    reason = "memory-mapping a file is unsafe: the mapped bytes can change or vanish underneath"
)]
fn map_file(file: &std::fs::File, len: usize) -> std::io::Result<Mmap> {
    // SAFETY: `Mmap` hands out a `&[u8]` over memory that the kernel backs
    // with the file, so three things could break Rust's rules:
    // - The bytes can change while a `&[u8]` to them is live: another write
    //   to the file shows through the shared map. A reference into the map
    //   lives only while the state lock is held shared (`with_mapped`):
    //   `read_at` copies out of it, and `read_with` lends it to a visitor
    //   whose signature lets no borrow escape the call. So the worst a
    //   concurrent write causes is a mix of old and new bytes, which is the
    //   same as a `pread` racing a `pwrite` and is the caller's business.
    // - The map reaches past the end of the file, where touching a page
    //   raises SIGBUS. No reference to those pages is ever made: the only
    //   slices taken from the map are `offset..end` with `end <= len`,
    //   checked under the state lock in `with_mapped`, and `len` counts
    //   only bytes that a `pwrite` has put in the file.
    // - If the file shrinks below `len` while a reader is inside the map,
    //   the same SIGBUS. `MmapFile::set_len` truncates and lowers `len`
    //   under the exclusive lock that every reader takes shared; other
    //   pydb processes are kept out by the directory lock, which
    //   `MmapFile::open` demands and the file holds while it lives.
    unsafe { MmapOptions::new().len(len).map(file) }
}

/// Reads `len` bytes at `offset` of `file` with `pread` and lends them to
/// `visit`, in a buffer reused across the calls of a thread: no allocation
/// and no zeroing per read once the buffer is large enough.
pub(crate) fn pread_with(
    file: &std::fs::File,
    path: &Path,
    offset: u64,
    len: usize,
    visit: &mut dyn FnMut(&[u8]),
) -> Result<()> {
    crate::scratch::with_buffer(len, |buf| {
        file.read_exact_at(buf, offset)
            .map_err(|e| Error::io(path, e))?;
        visit(buf);
        Ok(())
    })
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
            // No map reaches these bytes (mapping failed).
            None => self
                .file
                .read_exact_at(buf, offset)
                .map_err(|e| Error::io(&self.path, e)),
        })
    }

    /// Lends the mapped bytes themselves, without a copy; `pread`s into a
    /// reused buffer if no map reaches them.
    fn read_with(&self, offset: u64, len: usize, visit: &mut dyn FnMut(&[u8])) -> Result<()> {
        self.with_mapped(offset, len, |mapped| match mapped {
            Some(bytes) => {
                visit(bytes);
                Ok(())
            }
            None => pread_with(&self.file, &self.path, offset, len, visit),
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
        // Exclusive for the truncation *and* the new `len`: no reader can
        // check against the old length and then touch a page that the
        // truncation took away. The map itself may stay: past `len` it is
        // never read.
        let mut state = self.state.write();
        let result = self.file.set_len(new_len);
        state.len = match result {
            Ok(()) => new_len,
            Err(_) => self.os_len_or(state.len.min(new_len)),
        };
        if state.len > state.capacity() {
            self.remap(&mut state);
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

    fn writes_in_place(&self) -> bool {
        true
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
    fn opening_maps_the_whole_existing_file_and_room_past_it() {
        let dir = tempfile::tempdir().unwrap();
        let lock = DirLock::acquire(dir.path()).unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"0123456789").unwrap();
        let file = MmapFile::open(&path, false, &lock).unwrap();
        assert_eq!(file.mapped_len(), 10);
        assert_eq!(file.map_capacity(), MIN_MAP_CAPACITY);
        assert_eq!(read(&file, 3, 4), b"3456");
        assert_eq!(file.pread_fallbacks(), 0);
    }

    #[test]
    fn the_capacity_is_a_power_of_two_at_least_the_length() {
        assert_eq!(capacity_for(0), MIN_MAP_CAPACITY);
        assert_eq!(capacity_for(MIN_MAP_CAPACITY), MIN_MAP_CAPACITY);
        assert_eq!(capacity_for(MIN_MAP_CAPACITY + 1), 2 * MIN_MAP_CAPACITY);
        assert_eq!(capacity_for(64 << 20), 64 << 20);
        assert_eq!(capacity_for((64 << 20) + 1), 128 << 20);
        // No power of two above: the length itself (mapping will fail and
        // reads use pread, but nothing overflows).
        assert_eq!(capacity_for(u64::MAX), u64::MAX);
    }

    #[test]
    fn empty_file_is_mapped_ahead_and_reads_past_end_fail() {
        let dir = tempfile::tempdir().unwrap();
        let lock = DirLock::acquire(dir.path()).unwrap();
        let file = MmapFile::create(dir.path().join("f"), &lock).unwrap();
        assert_eq!(file.mapped_len(), 0);
        assert_eq!(file.map_capacity(), MIN_MAP_CAPACITY);
        // Inside the map but past the end of the file: an error, not a
        // touch of a page with no bytes behind it (SIGBUS).
        let err = file.read_at(0, &mut [0u8; 1]).unwrap_err();
        assert!(
            matches!(err, Error::ReadPastEnd { file_len: 0, .. }),
            "{err}"
        );
        let err = file.read_at(8192, &mut [0u8; 1]).unwrap_err();
        assert!(matches!(err, Error::ReadPastEnd { .. }), "{err}");
        // An empty read at the end is fine.
        file.read_at(0, &mut []).unwrap();
    }

    #[test]
    fn appends_are_read_from_the_map_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let lock = DirLock::acquire(dir.path()).unwrap();
        let file = MmapFile::create(dir.path().join("f"), &lock).unwrap();
        assert_eq!(file.append(b"hello").unwrap(), 0);
        assert_eq!(file.append(b"world").unwrap(), 5);
        assert_eq!(file.mapped_len(), 10);
        assert_eq!(read(&file, 3, 5), b"lowor");
        // Past the capacity: the map is re-created, twice as large.
        let big = vec![7u8; MIN_MAP_CAPACITY as usize];
        file.append(&big).unwrap();
        assert_eq!(file.map_capacity(), 2 * MIN_MAP_CAPACITY);
        file.append(b"tail").unwrap();
        let end = file.len().unwrap();
        assert_eq!(file.mapped_len(), end);
        assert_eq!(read(&file, end - 6, 6), b"\x07\x07tail");
        assert_eq!(read(&file, 0, 10), b"helloworld");
        // Not one of those reads needed a system call.
        assert_eq!(file.pread_fallbacks(), 0);
    }

    #[test]
    fn read_with_lends_the_map_right_after_an_append() {
        let dir = tempfile::tempdir().unwrap();
        let lock = DirLock::acquire(dir.path()).unwrap();
        let file = MmapFile::create(dir.path().join("f"), &lock).unwrap();
        let data: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        file.append(&data).unwrap();
        let tail_at = file.append(b"tail").unwrap();
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
        // The visitor sees the map's own bytes, the newest too.
        let (seen, calls, at) = lent(1000, 50).unwrap();
        assert_eq!((seen.as_slice(), calls), (&data[1000..1050], 1));
        assert_eq!(at, map_start + 1000);
        let (seen, _, at) = lent(tail_at, 4).unwrap();
        assert_eq!(seen, b"tail");
        assert_eq!(at, map_start + tail_at as usize);
        assert_eq!(file.pread_fallbacks(), 0);
        // Past the end (but inside the map): an error, and the visitor
        // never runs.
        let err = lent(tail_at + 2, 3).unwrap_err();
        assert!(matches!(err, Error::ReadPastEnd { .. }), "{err}");
        assert!(lent(u64::MAX, 2).is_err());
    }

    #[test]
    fn without_a_map_reads_fall_back_to_pread() {
        let dir = tempfile::tempdir().unwrap();
        let lock = DirLock::acquire(dir.path()).unwrap();
        let file = MmapFile::create(dir.path().join("f"), &lock).unwrap();
        file.append(b"0123456789").unwrap();
        // What a failed `mmap` leaves.
        file.state.write().map = None;
        assert_eq!(file.mapped_len(), 0);
        assert_eq!(read(&file, 2, 3), b"234");
        let mut seen = Vec::new();
        file.read_with(4, 4, &mut |bytes| seen = bytes.to_vec())
            .unwrap();
        assert_eq!(seen, b"4567");
        assert_eq!(file.pread_fallbacks(), 2);
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
    fn shrinking_keeps_reads_below_the_new_length_and_growing_reads_zeros() {
        let dir = tempfile::tempdir().unwrap();
        let lock = DirLock::acquire(dir.path()).unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![9u8; 10_000]).unwrap();
        let file = MmapFile::open(&path, false, &lock).unwrap();
        file.set_len(100).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 100);
        assert_eq!(file.mapped_len(), 100);
        assert_eq!(file.len().unwrap(), 100);
        // The bytes cut off are still inside the map, on pages past the end
        // of the file: the read is refused before it touches them.
        let err = file.read_at(99, &mut [0u8; 2]).unwrap_err();
        assert!(
            matches!(err, Error::ReadPastEnd { file_len: 100, .. }),
            "{err}"
        );
        assert!(file.read_at(8192, &mut [0u8; 1]).is_err());
        file.set_len(200).unwrap();
        assert_eq!(read(&file, 98, 4), [9, 9, 0, 0]);
        file.set_len(0).unwrap();
        assert_eq!(file.mapped_len(), 0);
        assert_eq!(file.append(b"new").unwrap(), 0);
        assert_eq!(read(&file, 0, 3), b"new");
        // Growing past the capacity maps again.
        file.set_len(3 * MIN_MAP_CAPACITY).unwrap();
        assert_eq!(file.map_capacity(), 4 * MIN_MAP_CAPACITY);
        assert_eq!(read(&file, 3 * MIN_MAP_CAPACITY - 1, 1), [0]);
        assert_eq!(file.pread_fallbacks(), 0);
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
        assert_eq!(file.map_capacity(), MIN_MAP_CAPACITY);
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
        // 600 * 4096 = 2.4 MiB: the map has been re-created on the way,
        // and every read was served from a map.
        assert_eq!(file.mapped_len(), RECORDS * RECORD as u64);
        assert_eq!(file.map_capacity(), 4 * MIN_MAP_CAPACITY);
        assert_eq!(file.pread_fallbacks(), 0);
    }
}
