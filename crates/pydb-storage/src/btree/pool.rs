//! The buffer pool: a fixed set of page-sized frames caching the page file.
//!
//! Every page the tree touches goes through here. The pool owns `frames`
//! (the page bytes, each behind its own `RwLock` latch), a page table that
//! says which page sits in which frame, and per-frame bookkeeping: a pin
//! count, a dirty flag and a reference bit.
//!
//! ```text
//!  page table            frames (pool_bytes / page_size of them)
//!  +-------+-------+     +-----------+-----------+-----------+-----------+
//!  | page  | frame |     | page 17   | page 2    | (empty)   | page 40   |
//!  |  2    |   1   |---->| pins 0    | pins 1    |           | pins 0    |
//!  |  17   |   0   |     | ref 1     | ref 1     |           | ref 0     |
//!  |  40   |   3   |     | clean     | dirty     |           | dirty     |
//!  +-------+-------+     +-----------+-----------+-----------+-----------+
//!                                         ^ clock hand sweeps this way ->
//! ```
//!
//! ## Pins and latches
//!
//! [`BufferPool::fetch`] returns a [`PageRef`]: an RAII guard that holds a pin
//! (so the frame is not evicted under it) and the frame's read latch (so it
//! is not changed under it). Dropping it releases both. Callers hold at most
//! one `PageRef` at a time (they copy out what they need before they fetch
//! the next page), so a pool of at least [`MIN_FRAMES`] frames never runs out
//! of unpinned frames for long, and no two guards can deadlock.
//!
//! ## Eviction: why clock
//!
//! When a page is not in the pool (a miss), a victim frame is chosen by the
//! *clock* algorithm: a hand sweeps the frames; a pinned frame is skipped, a
//! frame whose reference bit is set gets a second chance (the bit is
//! cleared), and the first unpinned, unreferenced frame is the victim. Clock
//! approximates LRU at the cost of one bit per frame and no list to update on
//! a hit, which matters because hits are the common path. LRU-K (K = 2)
//! resists sequential-scan flooding better, but needs a history of access
//! times per page and a priority queue; for a teaching engine whose scans are
//! short, clock is the better trade (PostgreSQL uses the same scheme).
//!
//! ## The write-ahead rule
//!
//! A dirty page is written back (on eviction or checkpoint) only after every
//! WAL record up to its page LSN is durable: [`WriteAhead::make_durable`] is
//! called first. Otherwise a crash could leave a page on disk that holds a
//! change whose log record was lost, and recovery could neither redo nor undo
//! it. The page checksum is computed on the copy that is written.
//!
//! ## Locks on the hit path, and I/O outside the page table lock
//!
//! The page table is behind an `RwLock`: a hit takes it for *reading* only
//! long enough to look the page up and raise the frame's pin, then latches
//! the frame. The reference bit and the pin count live in the frame as
//! atomics, so a hit writes no shared table state. The page table hashes
//! page numbers with a multiplicative hash ([`PageIdHasher`]): page numbers
//! are small integers chosen by pydb, not by an attacker, so SipHash's
//! flooding resistance buys nothing here.
//!
//! A miss takes the table for writing to pick a victim and map the page to
//! it, latches the frame for writing, and *releases the table* before it
//! reads the page: other fetches (hits and misses) go on meanwhile, and a
//! fetch of the same page waits on the frame latch, not on the table. A
//! frame whose read failed is marked unloaded, so such a waiter retries
//! instead of seeing stale bytes. Writing back a dirty victim still happens
//! under the table lock (it is rare: a checkpoint cleans the pool), which
//! keeps the victim from being re-found while its bytes go to disk.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use pydb_file::File;

use super::page::{self, PageId};
use crate::{Error, Result};

/// The smallest pool accepted, in frames.
pub const MIN_FRAMES: usize = 16;

/// What the pool asks of the log before it writes a page back.
pub trait WriteAhead: Send + Sync + std::fmt::Debug {
    /// Returns once every log record up to `lsn` is durable.
    fn make_durable(&self, lsn: u64) -> Result<()>;
}

/// A hasher for page numbers: one multiplication (Fibonacci hashing) and a
/// fold of the high bits down, so both the low bits (the bucket) and the
/// high bits (the hash table's tag byte) depend on every bit of the number.
#[derive(Debug, Default, Clone, Copy)]
pub struct PageIdHasher(u64);

const FIB: u64 = 0x9e37_79b9_7f4a_7c15;

impl Hasher for PageIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u32` is used for page numbers; this keeps any other
        // key type correct, if slower.
        for b in bytes {
            self.write_u32(u32::from(*b) ^ (self.0 as u32));
        }
    }

    fn write_u32(&mut self, n: u32) {
        let h = (u64::from(n) ^ self.0).wrapping_mul(FIB);
        self.0 = h ^ (h >> 32);
    }
}

type PageTable = HashMap<PageId, usize, BuildHasherDefault<PageIdHasher>>;

/// The pool's counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Fetches served from a frame.
    pub hits: u64,
    /// Fetches that had to read the page file.
    pub misses: u64,
    /// Pages pushed out to make room.
    pub evictions: u64,
    /// Dirty pages written to the page file (eviction or checkpoint).
    pub writebacks: u64,
    /// Frames in the pool.
    pub frames: u64,
    /// Frames holding a page changed since it was last written.
    pub dirty: u64,
}

#[derive(Debug)]
struct Frame {
    data: RwLock<Box<[u8]>>,
    /// Raised under the page table lock (read or write), lowered by
    /// `PageRef::drop` or a failed load. A pinned frame is never reused.
    pins: AtomicU32,
    /// The clock's second-chance bit, set by every fetch.
    referenced: AtomicBool,
    /// Whether `data` holds the page the table maps here: false while the
    /// page is being read (and after a failed read), so that a fetch that
    /// waited on the latch retries instead of using the bytes.
    loaded: AtomicBool,
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    page: Option<PageId>,
    dirty: bool,
}

#[derive(Debug)]
struct Table {
    pages: PageTable,
    slots: Vec<Slot>,
    hand: usize,
}

/// A fixed-size cache of pages of one page file.
#[derive(Debug)]
pub struct BufferPool<F: File> {
    file: F,
    page_size: usize,
    frames: Vec<Frame>,
    table: RwLock<Table>,
    wal: Arc<dyn WriteAhead>,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
    writebacks: AtomicU64,
    /// Frames whose slot is dirty; changed only under the table's write
    /// lock, read without it (the engine sizes checkpoints by it).
    dirty: AtomicUsize,
}

/// A pinned, read-latched page. Derefs to the page bytes.
#[derive(Debug)]
pub struct PageRef<'a> {
    frame: &'a Frame,
    guard: Option<RwLockReadGuard<'a, Box<[u8]>>>,
}

impl std::ops::Deref for PageRef<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.guard {
            Some(g) => g,
            None => &[],
        }
    }
}

impl Drop for PageRef<'_> {
    fn drop(&mut self) {
        // Release the latch before the pin: once the pin is gone an evictor
        // may take the frame, and it must find the latch free.
        self.guard.take();
        self.frame.pins.fetch_sub(1, Ordering::AcqRel);
    }
}

impl<F: File> BufferPool<F> {
    /// A pool of `frames` frames (at least [`MIN_FRAMES`]) over `file`.
    pub fn new(file: F, page_size: usize, frames: usize, wal: Arc<dyn WriteAhead>) -> Self {
        let n = frames.max(MIN_FRAMES);
        let mut pages = PageTable::default();
        pages.reserve(n);
        Self {
            file,
            page_size,
            frames: (0..n)
                .map(|_| Frame {
                    data: RwLock::new(vec![0u8; page_size].into_boxed_slice()),
                    pins: AtomicU32::new(0),
                    referenced: AtomicBool::new(false),
                    loaded: AtomicBool::new(false),
                })
                .collect(),
            table: RwLock::new(Table {
                pages,
                slots: vec![Slot::default(); n],
                hand: 0,
            }),
            wal,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            writebacks: AtomicU64::new(0),
            dirty: AtomicUsize::new(0),
        }
    }

    /// The page file.
    pub fn file(&self) -> &F {
        &self.file
    }

    /// The page size.
    pub fn page_size(&self) -> usize {
        self.page_size
    }

    /// The file offset of page `id`.
    pub fn offset_of(&self, id: PageId) -> u64 {
        u64::from(id) * self.page_size as u64
    }

    /// Frames holding a page changed since it was last written: what the
    /// next checkpoint will write. Read without locks, so it may be a batch
    /// behind.
    pub fn dirty_pages(&self) -> usize {
        self.dirty.load(Ordering::Relaxed)
    }

    /// The counters.
    pub fn stats(&self) -> PoolStats {
        let dirty = self.dirty_pages();
        PoolStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            writebacks: self.writebacks.load(Ordering::Relaxed),
            frames: self.frames.len() as u64,
            dirty: dirty as u64,
        }
    }

    /// Pins page `id` and returns it read-latched, reading it from the page
    /// file (and verifying its checksum and number) on a miss.
    pub fn fetch(&self, id: PageId) -> Result<PageRef<'_>> {
        loop {
            // The hit path: a shared table lock, one pin, one latch.
            let hit = {
                let table = self.table.read();
                table.pages.get(&id).map(|&f| {
                    let frame = &self.frames[f];
                    frame.pins.fetch_add(1, Ordering::AcqRel);
                    frame
                })
            };
            if let Some(frame) = hit {
                if !frame.referenced.load(Ordering::Relaxed) {
                    frame.referenced.store(true, Ordering::Relaxed);
                }
                let guard = frame.data.read();
                if frame.loaded.load(Ordering::Acquire) {
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    return Ok(PageRef {
                        frame,
                        guard: Some(guard),
                    });
                }
                // Its read failed: the loader unmaps it; look again.
                drop(guard);
                frame.pins.fetch_sub(1, Ordering::AcqRel);
                std::thread::yield_now();
                continue;
            }
            // The miss path: map the page to a victim frame under the
            // exclusive table lock, then read it with only the frame latched.
            let mut table = self.table.write();
            if table.pages.contains_key(&id) {
                continue; // loaded by another fetch meanwhile
            }
            let Some(f) = self.find_victim(&mut table)? else {
                // Every frame is pinned for a moment: let the holders finish.
                drop(table);
                std::thread::yield_now();
                continue;
            };
            let frame = &self.frames[f];
            // Unpinned, so nobody holds the latch: this does not wait.
            let mut data = frame.data.write();
            frame.loaded.store(false, Ordering::Release);
            frame.referenced.store(true, Ordering::Relaxed);
            frame.pins.fetch_add(1, Ordering::AcqRel);
            table.pages.insert(id, f);
            table.slots[f] = Slot {
                page: Some(id),
                dirty: false,
            };
            drop(table);
            if let Err(e) = self.read_page(id, &mut data) {
                drop(data);
                self.unmap_failed(id, f);
                frame.pins.fetch_sub(1, Ordering::AcqRel);
                return Err(e);
            }
            frame.loaded.store(true, Ordering::Release);
            self.misses.fetch_add(1, Ordering::Relaxed);
            return Ok(PageRef {
                frame,
                guard: Some(RwLockWriteGuard::downgrade(data)),
            });
        }
    }

    /// Forgets frame `f` as the home of page `id` after reading it failed
    /// (unless an install filled it meanwhile).
    fn unmap_failed(&self, id: PageId, f: usize) {
        let mut table = self.table.write();
        if table.pages.get(&id) == Some(&f) && !self.frames[f].loaded.load(Ordering::Acquire) {
            table.pages.remove(&id);
            table.slots[f] = Slot::default();
        }
    }

    /// Reads and verifies page `id` from the file into `buf`.
    fn read_page(&self, id: PageId, buf: &mut [u8]) -> Result<()> {
        let offset = self.offset_of(id);
        self.file.read_at(offset, buf).map_err(|e| match e {
            pydb_file::Error::ReadPastEnd { .. } => Error::corrupted(
                self.file.path(),
                offset,
                format!("page {id} is past the end of the page file"),
            ),
            other => other.into(),
        })?;
        page::verify(buf, id).map_err(|e| {
            Error::corrupted(
                self.file.path(),
                offset + e.offset as u64,
                format!("page {id}: {}", e.reason),
            )
        })?;
        Ok(())
    }

    /// Places `bytes` as the new content of page `id` and marks it dirty,
    /// without reading the page file: used to publish a committed change
    /// and by recovery to restore a full page image (whatever is on disk,
    /// torn or not, is replaced).
    ///
    /// The caller guarantees no reader holds this page (the engine installs
    /// under its tree lock, recovery runs alone).
    pub fn install(&self, id: PageId, bytes: &[u8]) -> Result<()> {
        if bytes.len() != self.page_size {
            return Err(Error::corrupted(
                self.file.path(),
                self.offset_of(id),
                "page image of the wrong size",
            ));
        }
        loop {
            let mut table = self.table.write();
            let f = match table.pages.get(&id) {
                Some(&f) => f,
                None => match self.find_victim(&mut table)? {
                    Some(f) => {
                        table.pages.insert(id, f);
                        f
                    }
                    None => {
                        drop(table);
                        std::thread::yield_now();
                        continue;
                    }
                },
            };
            let frame = &self.frames[f];
            frame.data.write().copy_from_slice(bytes);
            frame.loaded.store(true, Ordering::Release);
            frame.referenced.store(true, Ordering::Relaxed);
            if !table.slots[f].dirty {
                self.dirty.fetch_add(1, Ordering::Relaxed);
            }
            table.slots[f] = Slot {
                page: Some(id),
                dirty: true,
            };
            return Ok(());
        }
    }

    /// Picks a frame to reuse by the clock algorithm, writing it back if it
    /// is dirty. `None` if every frame is pinned.
    fn find_victim(&self, table: &mut Table) -> Result<Option<usize>> {
        let n = self.frames.len();
        // Two sweeps: the first may only clear reference bits.
        for _ in 0..2 * n + 1 {
            let f = table.hand;
            table.hand = (f + 1) % n;
            let frame = &self.frames[f];
            // Pins first: a frame whose load failed is unmapped but may
            // still be pinned by a fetch that waited on it.
            if frame.pins.load(Ordering::Acquire) > 0 {
                continue;
            }
            let slot = table.slots[f];
            let Some(page) = slot.page else {
                return Ok(Some(f));
            };
            if frame.referenced.swap(false, Ordering::Relaxed) {
                continue;
            }
            if slot.dirty {
                self.write_back(f, page)?;
                table.slots[f].dirty = false;
                self.dirty.fetch_sub(1, Ordering::Relaxed);
            }
            table.pages.remove(&page);
            table.slots[f] = Slot::default();
            frame.loaded.store(false, Ordering::Release);
            self.evictions.fetch_add(1, Ordering::Relaxed);
            return Ok(Some(f));
        }
        Ok(None)
    }

    /// Writes frame `f` (holding `page`) to the page file, after the WAL up
    /// to its LSN is durable.
    fn write_back(&self, f: usize, page: PageId) -> Result<()> {
        let mut copy = self.frames[f].data.read().to_vec();
        self.wal.make_durable(page::page_lsn(&copy))?;
        page::seal(&mut copy);
        self.file.write_at(self.offset_of(page), &copy)?;
        self.writebacks.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Writes back every dirty page and syncs the page file: the heart of a
    /// checkpoint. Fetches may run meanwhile; the caller keeps writers out.
    pub fn flush_all(&self) -> Result<()> {
        for f in 0..self.frames.len() {
            let mut table = self.table.write();
            let slot = table.slots[f];
            if let (Some(page), true) = (slot.page, slot.dirty) {
                self.write_back(f, page)?;
                table.slots[f].dirty = false;
                self.dirty.fetch_sub(1, Ordering::Relaxed);
            }
        }
        self.file.sync_data()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::btree::page::{Content, encode, set_page_lsn};

    #[derive(Debug, Default)]
    struct Recorder(parking_lot::Mutex<Vec<u64>>);
    impl WriteAhead for Recorder {
        fn make_durable(&self, lsn: u64) -> Result<()> {
            self.0.lock().push(lsn);
            Ok(())
        }
    }

    fn free_page(id: PageId, lsn: u64) -> Vec<u8> {
        let mut buf = encode(&Content::Free { next: 0 }, id, 512).unwrap();
        set_page_lsn(&mut buf, lsn);
        buf
    }

    #[test]
    fn eviction_writes_back_after_the_wal_and_reads_verify() {
        let dir = tempfile::tempdir().unwrap();
        let file = pydb_file::MonolithicFile::create(dir.path().join("p")).unwrap();
        let wal = Arc::new(Recorder::default());
        let pool = BufferPool::new(file, 512, 16, wal.clone());
        for id in 2..40 {
            pool.install(id, &free_page(id, 100 + u64::from(id)))
                .unwrap();
        }
        let stats = pool.stats();
        assert_eq!(stats.evictions, 40 - 2 - 16);
        assert_eq!(stats.writebacks, stats.evictions);
        // Each write-back asked the WAL for its page's LSN first.
        assert_eq!(wal.0.lock()[0], 102);
        // An evicted page comes back from disk, checksum verified.
        let page = pool.fetch(2).unwrap();
        assert_eq!(page::page_lsn(&page), 102);
        drop(page);
        assert_eq!(pool.stats().misses, 1);
        pool.fetch(2).unwrap();
        assert_eq!(pool.stats().hits, 1);
        // A damaged page on disk is an error, never bytes.
        pool.flush_all().unwrap();
        pool.file().write_at(512 * 3 + 100, &[0xee]).unwrap();
        for id in 20..40 {
            pool.fetch(id).unwrap();
        }
        let err = pool.fetch(3).unwrap_err();
        assert!(err.is_corruption(), "{err}");
    }

    #[test]
    fn pinned_frames_are_not_evicted() {
        let dir = tempfile::tempdir().unwrap();
        let file = pydb_file::MonolithicFile::create(dir.path().join("p")).unwrap();
        let pool = BufferPool::new(file, 512, 16, Arc::new(Recorder::default()));
        for id in 2..18 {
            pool.install(id, &free_page(id, 1)).unwrap();
        }
        pool.flush_all().unwrap();
        let pinned = pool.fetch(2).unwrap();
        for id in 3..40 {
            pool.install(id, &free_page(id, 1)).unwrap();
        }
        assert_eq!(page::get_u32(&pinned, page::PAGE_ID_OFFSET).unwrap(), 2);
        assert_eq!(pool.stats().hits, 1);
    }
}
