//! The buffer pool: a fixed set of page-sized frames caching the page file.
//!
//! Every page the tree touches goes through here. The pool owns `frames`
//! (the page bytes, each behind its own `RwLock` latch), a page table that
//! says which page sits in which frame, and per-frame bookkeeping: a dirty
//! flag and a reference bit.
//!
//! ```text
//!  page table            frames (pool_bytes / page_size of them)
//!  +-------+-------+     +-----------+-----------+-----------+-----------+
//!  | page  | frame |     | page 17   | page 2    | (empty)   | page 40   |
//!  |  2    |   1   |---->| free      | read x1   |           | free      |
//!  |  17   |   0   |     | ref 1     | ref 1     |           | ref 0     |
//!  |  40   |   3   |     | clean     | dirty     |           | dirty     |
//!  +-------+-------+     +-----------+-----------+-----------+-----------+
//!                                         ^ clock hand sweeps this way ->
//! ```
//!
//! ## The latch is the pin
//!
//! [`BufferPool::fetch`] returns a [`PageRef`]: an RAII guard that holds the
//! frame's read latch, so the page is neither changed nor evicted under it.
//! Dropping it releases the latch. Callers hold at most one `PageRef` at a
//! time (they copy out what they need before they fetch the next page), so
//! a pool of at least [`MIN_FRAMES`] frames never runs out of free frames
//! for long, and no two guards can deadlock.
//!
//! Many buffer pools keep a separate *pin count* that protects a frame from
//! eviction while its latch comes and goes. pydb's guards hold the latch
//! for as long as they would hold a pin, so the latch does both jobs: a
//! lookup pays two atomic read-modify-writes per page (take and release
//! the latch) instead of four.
//!
//! ## Eviction: why clock
//!
//! When a page is not in the pool (a miss), a victim frame is chosen by the
//! *clock* algorithm: a hand sweeps the frames; a latched frame is skipped,
//! a frame whose reference bit is set gets a second chance (the bit is
//! cleared), and the first free, unreferenced frame is the victim. Clock
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
//! ## The hit path takes no lock but the frame's latch
//!
//! A lookup runs thousands of times for every miss, so the hit path is
//! built to touch as little shared state as possible (the same aim as
//! LMDB's lock-free readers and LeanStore's pointer swizzling, reached here
//! in a simpler way):
//!
//! 1. The page table is a *direct map*, [`FrameMap`]: an array indexed by
//!    page number whose entries are atomics holding a frame number. A hit
//!    reads one entry, with no table lock and no hashing (page numbers are
//!    small dense integers chosen by pydb, so an array beats a hash table).
//! 2. It takes the frame's read latch.
//! 3. Under the latch it checks that the frame still holds that page and
//!    that the page was read completely (`Frame::page`, `Frame::loaded`):
//!    the map entry may have been stale, since it was read without a lock.
//!    If not, it lets go and looks again.
//!
//! Changes to the map, and the choice of victims, still happen under the
//! table's `Mutex` (misses, installs, write-backs). The race to close is a
//! reader that latches a frame just as the clock picks it. The clock
//! therefore *claims* a victim by taking its write latch with `try_write`,
//! which never waits: it fails if a reader got there first (the clock moves
//! on), and once it succeeds a reader that comes later waits on the latch
//! and then finds another page in the frame. So the one who claimed a frame
//! may remap and refill it without waiting on anyone while it holds the
//! table lock. `Frame::page` changes only under the write latch.
//!
//! A miss maps the page to its claimed victim, keeps the write latch, and
//! *releases the table* before it reads the page: other fetches (hits and
//! misses) go on meanwhile, and a fetch of the same page waits on the frame
//! latch, not on the table. A frame whose read failed is marked unloaded,
//! so such a waiter retries instead of seeing stale bytes. Writing back a
//! dirty victim still happens under the table lock (it is rare: a
//! checkpoint cleans the pool), which keeps the victim from being re-found
//! while its bytes go to disk.
//!
//! Lock order: the table, then a frame latch; a latch holder never waits
//! for the table. A reader holding a `PageRef` waits for nothing.
//!
//! ## Where the pages live, and what a descent prefetches
//!
//! The frames' pages are not heap blocks of their own but slices of one
//! [`PageArena`](super::arena): a mapping advised to be backed by 2 MiB
//! huge pages, so that the TLB covers the whole pool (see the arena's
//! docs: with 4 KiB pages a random lookup in a tree larger than the TLB's
//! reach waits for a page-table walk on nearly every leaf). It also fixes
//! frame `f`'s page at the arena's page `f`, so its address is known
//! without reading the frame: [`BufferPool::prefetch`] starts a leaf's
//! frame (latch, page number and, for a page of up to
//! [`HEADS_INLINE`](super::heads::HEADS_INLINE) cells, its heads) and its
//! page header and slots loading together, from the last internal level
//! of a descent, before the parent's latch is released. What a leaf
//! search then waits for in turn is only the cell it looks for (which
//! the search prefetches whole, key and value, as soon as the heads have
//! picked it: [`PageView::prefetch_cell`](super::page::PageView::prefetch_cell)).

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use parking_lot::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use pydb_file::File;

use super::arena::{PageArena, PageBuf};
use super::heads::Heads;
use super::page::{self, PageId};
use crate::{Error, Result};

/// The smallest pool accepted, in frames.
pub const MIN_FRAMES: usize = 16;

/// The 64-byte lines of one [`Frame`].
const FRAME_LINES: usize = 4;
/// The lines at the start of a page that a descent prefetches: the
/// 32-byte header and the first 48 slots, all of a leaf of 16-byte keys
/// and 100-byte values (at most 32 cells in 4 KiB).
pub const PREFETCH_PAGE_LINES: usize = 2;

/// What the pool asks of the log before it writes a page back.
pub trait WriteAhead: Send + Sync + std::fmt::Debug {
    /// Returns once every log record up to `lsn` is durable.
    fn make_durable(&self, lsn: u64) -> Result<()>;
}

/// Entries in one chunk of the [`FrameMap`] (256 KiB of atomics).
const CHUNK_BITS: u32 = 16;
const CHUNK_LEN: usize = 1 << CHUNK_BITS;
/// A map entry for a page in no frame.
const NO_FRAME: u32 = u32::MAX;

/// The page table: page number -> frame number, as an array of atomics
/// read without any lock.
///
/// Page numbers are 32 bits, so the array is cut into chunks of
/// `CHUNK_LEN` entries made on first use: a file of 40,000 pages needs one
/// chunk. Entries are written only under the pool's table lock; readers
/// treat what they read as a hint and check it against the frame.
#[derive(Debug)]
pub struct FrameMap {
    chunks: Box<[OnceLock<Box<[AtomicU32]>>]>,
}

impl Default for FrameMap {
    fn default() -> Self {
        let n = 1usize << (32 - CHUNK_BITS);
        Self {
            chunks: (0..n).map(|_| OnceLock::new()).collect(),
        }
    }
}

impl FrameMap {
    /// The frame that holds (or held, a moment ago) page `id`.
    pub fn get(&self, id: PageId) -> Option<usize> {
        let chunk = self.chunks.get((id >> CHUNK_BITS) as usize)?.get()?;
        let f = chunk
            .get(id as usize & (CHUNK_LEN - 1))?
            .load(Ordering::Acquire);
        (f != NO_FRAME).then_some(f as usize)
    }

    /// Maps page `id` to `frame` (or to none).
    fn set(&self, id: PageId, frame: Option<usize>) {
        let Some(cell) = self.chunks.get((id >> CHUNK_BITS) as usize) else {
            return;
        };
        if frame.is_none() && cell.get().is_none() {
            return;
        }
        let chunk = cell.get_or_init(|| (0..CHUNK_LEN).map(|_| AtomicU32::new(NO_FRAME)).collect());
        let value = frame.map_or(NO_FRAME, |f| u32::try_from(f).unwrap_or(NO_FRAME));
        if let Some(entry) = chunk.get(id as usize & (CHUNK_LEN - 1)) {
            entry.store(value, Ordering::Release);
        }
    }
}

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

/// What a frame's latch protects: the page bytes and the key heads built
/// from them (see [`heads`](super::heads)).
///
/// The heads are built lazily, by the first search that asks for them
/// under a read latch (`OnceLock` lets one of several concurrent readers
/// build them, the others wait for it). Whoever changes `bytes` holds the
/// write latch and resets `heads` to unbuilt before letting go, so under a
/// read latch the heads, once there, always describe the bytes. Lazy
/// because the writer installs many leaves that no one searches before
/// they change again (a random fill): building their heads on every
/// install cost it about 20% more instructions.
#[derive(Debug)]
pub struct FrameData {
    /// The page: `page_size` bytes of the pool's [`PageArena`].
    bytes: PageBuf,
    heads: OnceLock<Heads>,
}

impl FrameData {
    /// Replaces the bytes with `src`; the heads are built again when next
    /// asked for.
    fn fill(&mut self, src: &[u8]) {
        self.bytes.copy_from_slice(src);
        self.heads = OnceLock::new();
    }
}

/// One frame's bookkeeping: everything a hit reads before the page bytes.
///
/// Laid out for the hit path, whose every step on a page that is not in
/// the CPU cache waits for memory: the page number and flags come first,
/// then the latch word, the pointer to the bytes and the heads (with a
/// short prefix and up to
/// [`HEADS_INLINE`](super::heads::HEADS_INLINE) heads inline: see
/// [`Heads`]), 256 bytes in all, and the frame is aligned to 128 bytes.
/// Unaligned in a `Vec` (as before session 14), every other frame
/// straddled two 64-byte lines, one holding the latch and the other the
/// page number checked under it: two misses in sequence. Now a frame is
/// two aligned pairs of lines, which the CPU's adjacent-line prefetcher
/// brings in by pairs and which a descent prefetches together with the
/// page header (see [`BufferPool::prefetch`]). With the heads inline
/// (session 17) a leaf search finds everything up to the cell it looks
/// for in lines whose addresses are known from the frame number alone.
#[derive(Debug)]
#[repr(C, align(128))]
struct Frame {
    /// The page the frame holds (`NO_FRAME` for none): changed only under
    /// the write latch, checked by a fetch under the read latch.
    page: AtomicU32,
    /// Whether `data` holds the page the table maps here: false while the
    /// page is being read (and after a failed read), so that a fetch that
    /// waited on the latch retries instead of using the bytes.
    loaded: AtomicBool,
    /// The clock's second-chance bit, set by every fetch.
    referenced: AtomicBool,
    /// The page bytes (and their heads) behind the frame's latch. A read
    /// latch is also what keeps the frame from being reused: the clock
    /// claims a frame by taking its write latch without waiting, which
    /// fails while anyone reads it.
    data: RwLock<FrameData>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    page: Option<PageId>,
    dirty: bool,
}

/// What only the table lock's holder reads and writes.
#[derive(Debug)]
struct Table {
    slots: Vec<Slot>,
    hand: usize,
}

/// A fixed-size cache of pages of one page file.
#[derive(Debug)]
pub struct BufferPool<F: File> {
    file: F,
    page_size: usize,
    frames: Vec<Frame>,
    /// Page -> frame; written under `table`, read without it.
    map: FrameMap,
    table: Mutex<Table>,
    wal: Arc<dyn WriteAhead>,
    /// Hits, counted in cache-line-sized shards (see [`HitCounter`]).
    hits: HitCounter,
    misses: AtomicU64,
    evictions: AtomicU64,
    writebacks: AtomicU64,
    /// Frames whose slot is dirty; changed only under the table's write
    /// lock, read without it (the engine sizes checkpoints by it).
    dirty: AtomicUsize,
    /// The memory of every frame's page (see [`arena`](super::arena)):
    /// frame `f`'s bytes are its page `f`.
    arena: PageArena,
}

/// A counter bumped on every hit by every reader thread. One shared
/// `AtomicU64` would make four readers fight over one cache line on every
/// page they touch; each thread bumps one of `SHARDS` counters on lines of
/// their own instead, and `sum` adds them up (the trick of Linux's per-CPU
/// counters and Java's `LongAdder`).
#[derive(Debug, Default)]
struct HitCounter {
    shards: [PaddedCounter; HitCounter::SHARDS],
}

/// One counter alone on its cache line.
#[derive(Debug, Default)]
#[repr(align(128))]
struct PaddedCounter(AtomicU64);

impl HitCounter {
    const SHARDS: usize = 16;

    fn add_one(&self) {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        thread_local! {
            static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % HitCounter::SHARDS;
        }
        let i = SHARD.with(|s| *s);
        if let Some(c) = self.shards.get(i) {
            c.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn sum(&self) -> u64 {
        self.shards
            .iter()
            .map(|c| c.0.load(Ordering::Relaxed))
            .sum()
    }
}

/// What the lock-free hit path found.
enum Hit<'a> {
    /// The page, latched.
    Found(PageRef<'a>),
    /// The frame's read failed: try again in a moment.
    Busy,
    /// The frame holds another page now: ask the table.
    Moved,
}

/// A read-latched page (so it cannot be evicted or changed while held).
/// Derefs to the page bytes; dropping it releases the latch.
#[derive(Debug)]
pub struct PageRef<'a> {
    guard: RwLockReadGuard<'a, FrameData>,
}

impl PageRef<'_> {
    /// The key heads of the page (none unless it is a leaf or internal
    /// page whose keys checked out).
    pub fn heads(&self) -> &Heads {
        let data = &*self.guard;
        data.heads.get_or_init(|| Heads::of(&data.bytes))
    }

    /// The key heads of the page if a search has built them already, and
    /// `None` if not. For a caller that searches a page once and then
    /// walks its cells anyway (a cursor's seek into a leaf): building the
    /// heads is a pass over every key of the page, more than the one
    /// binary search they would save.
    pub fn built_heads(&self) -> Option<&Heads> {
        self.guard.heads.get()
    }
}

impl std::ops::Deref for PageRef<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.guard.bytes
    }
}

/// A frame claimed by the clock: its write latch, taken without waiting.
type Claim<'a> = RwLockWriteGuard<'a, FrameData>;

impl<F: File> BufferPool<F> {
    /// A pool of `frames` frames (at least [`MIN_FRAMES`]) over `file`.
    pub fn new(file: F, page_size: usize, frames: usize, wal: Arc<dyn WriteAhead>) -> Self {
        let n = frames.max(MIN_FRAMES);
        let (arena, pages) = PageArena::new(page_size, n);
        Self {
            file,
            page_size,
            frames: pages
                .into_iter()
                .map(|bytes| Frame {
                    data: RwLock::new(FrameData {
                        bytes,
                        heads: OnceLock::new(),
                    }),
                    page: AtomicU32::new(NO_FRAME),
                    referenced: AtomicBool::new(false),
                    loaded: AtomicBool::new(false),
                })
                .collect(),
            map: FrameMap::default(),
            table: Mutex::new(Table {
                slots: vec![Slot::default(); n],
                hand: 0,
            }),
            wal,
            hits: HitCounter::default(),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            writebacks: AtomicU64::new(0),
            dirty: AtomicUsize::new(0),
            arena,
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
            hits: self.hits.sum(),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            writebacks: self.writebacks.load(Ordering::Relaxed),
            frames: self.frames.len() as u64,
            dirty: dirty as u64,
        }
    }

    /// Returns page `id` read-latched, reading it from the page file (and
    /// verifying its checksum and number) on a miss.
    pub fn fetch(&self, id: PageId) -> Result<PageRef<'_>> {
        loop {
            // The hit path: one map read, one latch, no table lock.
            if let Some(f) = self.map.get(id) {
                match self.try_hit(f, id) {
                    Hit::Found(page) => {
                        self.hits.add_one();
                        return Ok(page);
                    }
                    // Its read failed: let the loader unmap it, then look
                    // again.
                    Hit::Busy => {
                        std::thread::yield_now();
                        continue;
                    }
                    // The map entry was stale: fall through to the table.
                    Hit::Moved => {}
                }
            }
            // The miss path: map the page to a victim frame under the table
            // lock, then read it with only the frame latched.
            let mut table = self.table.lock();
            if self.map.get(id).is_some() {
                continue; // loaded by another fetch meanwhile
            }
            let Some((f, mut data)) = self.find_victim(&mut table)? else {
                // Every frame is latched for a moment: let the holders finish.
                drop(table);
                std::thread::yield_now();
                continue;
            };
            let frame = &self.frames[f];
            frame.loaded.store(false, Ordering::Release);
            frame.referenced.store(true, Ordering::Relaxed);
            frame.page.store(id, Ordering::Release);
            table.slots[f] = Slot {
                page: Some(id),
                dirty: false,
            };
            self.map.set(id, Some(f));
            // Fetches of this page now find the frame and wait on its
            // write latch (our claim) until the page is read.
            drop(table);
            if let Err(e) = self.read_page(id, &mut data.bytes) {
                data.heads = OnceLock::new();
                drop(data);
                self.unmap_failed(id, f);
                return Err(e);
            }
            data.heads = OnceLock::new();
            frame.loaded.store(true, Ordering::Release);
            self.misses.fetch_add(1, Ordering::Relaxed);
            return Ok(PageRef {
                guard: RwLockWriteGuard::downgrade(data),
            });
        }
    }

    /// Asks the CPU to start loading what a fetch of page `id` and a
    /// search of it will wait for: its frame's lines (page number, latch,
    /// heads) and the first lines of its bytes (the page header and the
    /// slots), in parallel and without waiting for them.
    ///
    /// A descent calls this for the child it is about to fetch while it
    /// still holds the parent: the child's lines are then on their way
    /// during the parent's release and the child's lookup, instead of
    /// each being waited for in turn (the latch, then the heads, then the
    /// slot the heads' search picks). The addresses need no read of the
    /// frame: the frames are an array, and frame `f`'s page is the arena's
    /// page `f`. Only a hint: the map entry may be stale (the prefetched
    /// lines are then useless, not wrong), and nothing is read or latched.
    pub fn prefetch(&self, id: PageId) {
        if let Some(lines) = self.map.get(id).and_then(|f| self.prefetch_plan(f)) {
            for line in lines {
                prefetch_line(line);
            }
        }
    }

    /// The lines [`Self::prefetch`] asks for, for frame `f`: the frame's
    /// four (all of its bookkeeping, heads included) and the page's first
    /// [`PREFETCH_PAGE_LINES`] (its header and first slots).
    fn prefetch_plan(&self, f: usize) -> Option<[*const u8; FRAME_LINES + PREFETCH_PAGE_LINES]> {
        let frame = std::ptr::from_ref(self.frames.get(f)?).cast::<u8>();
        let page = self.arena.address_of(f, 0)?;
        Some(std::array::from_fn(|i| match i.checked_sub(FRAME_LINES) {
            None => frame.wrapping_add(i * 64),
            Some(line) => page.wrapping_add(line * 64),
        }))
    }

    /// Latches frame `f` if it holds page `id`, read completely.
    fn try_hit(&self, f: usize, id: PageId) -> Hit<'_> {
        let Some(frame) = self.frames.get(f) else {
            return Hit::Moved;
        };
        // Waits only if the frame is claimed or loading (held for writing).
        let guard = frame.data.read();
        // Latched: the frame cannot change pages until we let go. It may
        // already hold another page (the map entry was stale).
        if frame.page.load(Ordering::Acquire) != id {
            return Hit::Moved;
        }
        if !frame.loaded.load(Ordering::Acquire) {
            // Its read failed: the loader unmaps it; look again.
            return Hit::Busy;
        }
        if !frame.referenced.load(Ordering::Relaxed) {
            frame.referenced.store(true, Ordering::Relaxed);
        }
        Hit::Found(PageRef { guard })
    }

    /// Forgets frame `f` as the home of page `id` after reading it failed
    /// (unless an install filled it meanwhile).
    fn unmap_failed(&self, id: PageId, f: usize) {
        let mut table = self.table.lock();
        if self.map.get(id) == Some(f) && !self.frames[f].loaded.load(Ordering::Acquire) {
            self.map.set(id, None);
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
            let mut table = self.table.lock();
            let (f, mut data, claimed) = match self.map.get(id) {
                // A mapped frame may have readers (of its old bytes, which
                // the caller's own locking allows): wait for them.
                Some(f) => (f, self.frames[f].data.write(), false),
                None => match self.find_victim(&mut table)? {
                    Some((f, claim)) => (f, claim, true),
                    None => {
                        drop(table);
                        std::thread::yield_now();
                        continue;
                    }
                },
            };
            let frame = &self.frames[f];
            data.fill(bytes);
            frame.page.store(id, Ordering::Release);
            frame.loaded.store(true, Ordering::Release);
            frame.referenced.store(true, Ordering::Relaxed);
            if !table.slots[f].dirty {
                self.dirty.fetch_add(1, Ordering::Relaxed);
            }
            table.slots[f] = Slot {
                page: Some(id),
                dirty: true,
            };
            if claimed {
                self.map.set(id, Some(f));
            }
            return Ok(());
        }
    }

    /// Picks a frame to reuse by the clock algorithm, writing it back if it
    /// is dirty, and returns it *claimed*: with its write latch, taken
    /// without waiting, which the caller holds while it remaps and refills
    /// the frame. `None` if every frame is latched.
    fn find_victim(&self, table: &mut MutexGuard<'_, Table>) -> Result<Option<(usize, Claim<'_>)>> {
        let n = self.frames.len();
        // Two sweeps: the first may only clear reference bits.
        for _ in 0..2 * n + 1 {
            let f = table.hand;
            table.hand = (f + 1) % n;
            let frame = &self.frames[f];
            // A latched frame is in use (and keeps its reference bit): a
            // frame whose load failed is unmapped but may still be latched
            // by a fetch that waited on it.
            if frame.data.is_locked() {
                continue;
            }
            let slot = table.slots[f];
            if slot.page.is_some() && frame.referenced.swap(false, Ordering::Relaxed) {
                continue;
            }
            // The claim: fails if a reader latched the frame since the check.
            let Some(claim) = frame.data.try_write() else {
                continue;
            };
            let Some(page) = slot.page else {
                return Ok(Some((f, claim)));
            };
            if slot.dirty {
                // On an error the claim is dropped and the frame stays as it
                // was: mapped, dirty.
                self.write_back(page, &claim.bytes)?;
                table.slots[f].dirty = false;
                self.dirty.fetch_sub(1, Ordering::Relaxed);
            }
            self.map.set(page, None);
            table.slots[f] = Slot::default();
            frame.loaded.store(false, Ordering::Release);
            frame.page.store(NO_FRAME, Ordering::Release);
            self.evictions.fetch_add(1, Ordering::Relaxed);
            return Ok(Some((f, claim)));
        }
        Ok(None)
    }

    /// Writes `bytes` (the frame holding `page`) to the page file, after
    /// the WAL up to its LSN is durable.
    fn write_back(&self, page: PageId, bytes: &[u8]) -> Result<()> {
        let mut copy = bytes.to_vec();
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
            let mut table = self.table.lock();
            let slot = table.slots[f];
            if let (Some(page), true) = (slot.page, slot.dirty) {
                self.write_back(page, &self.frames[f].data.read().bytes)?;
                table.slots[f].dirty = false;
                self.dirty.fetch_sub(1, Ordering::Relaxed);
            }
        }
        self.file.sync_data()?;
        Ok(())
    }
}

/// Starts loading the cache line holding `addr` into every cache level
/// (a hint: it never faults, whatever `addr` is, and reads nothing).
#[cfg(target_arch = "x86_64")]
#[expect(
    unsafe_code,
    reason = "`_mm_prefetch` is a `#[target_feature(enable = \"sse\")]` intrinsic"
)]
pub(super) fn prefetch_line(addr: *const u8) {
    use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
    // SAFETY: the intrinsic needs SSE, which every x86-64 CPU has (it is
    // in the target's baseline); and a prefetch never faults nor touches
    // memory, whatever `addr` is.
    unsafe { _mm_prefetch::<_MM_HINT_T0>(addr.cast::<i8>()) }
}

/// Elsewhere a prefetch is left to the hardware.
#[cfg(not(target_arch = "x86_64"))]
pub(super) fn prefetch_line(_addr: *const u8) {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::btree::page::{Content, PageType, PageView, encode, set_page_lsn};

    #[derive(Debug, Default)]
    struct Recorder(parking_lot::Mutex<Vec<u64>>);
    impl WriteAhead for Recorder {
        fn make_durable(&self, lsn: u64) -> Result<()> {
            self.0.lock().push(lsn);
            Ok(())
        }
    }

    #[test]
    fn a_frame_is_two_aligned_pairs_of_cache_lines() {
        // What a hit reads before the page bytes (page number, flags,
        // latch, bytes pointer, heads) must not grow past the frame's
        // lines: a larger frame would spread them over lines the
        // prefetch does not ask for.
        assert_eq!(std::mem::size_of::<Frame>(), FRAME_LINES * 64);
        assert_eq!(std::mem::align_of::<Frame>(), 128);
        // The page number and the latch word are on the first line.
        assert!(std::mem::offset_of!(Frame, data) + 8 <= 64);
    }

    #[test]
    fn the_prefetch_covers_every_line_a_leaf_search_reads_before_the_cell() {
        // A leaf search reads the frame (latch, page number, heads), the
        // page header and the slot its heads' search picks, and only then
        // the cell. Everything before the cell must be in the lines the
        // descent prefetches, or the search waits for it in turn.
        let dir = tempfile::tempdir().unwrap();
        let file = pydb_file::MonolithicFile::create(dir.path().join("p")).unwrap();
        let pool = BufferPool::new(file, 4096, 16, Arc::new(Recorder::default()));
        let leaf = crate::btree::page::benchmark_leaf(5);
        pool.install(5, &leaf).unwrap();
        let f = pool.map.get(5).unwrap();
        let lines: Vec<usize> = pool
            .prefetch_plan(f)
            .unwrap()
            .into_iter()
            .map(|line| line as usize)
            .collect();
        let covered = |from: usize, len: usize| {
            (from / 64..=(from + len - 1) / 64).all(|line| lines.iter().any(|l| l / 64 == line))
        };
        let page = pool.fetch(5).unwrap();
        let heads = page.heads();
        assert_eq!(heads.len(), 32);
        assert!(heads.is_inline(), "a full leaf's heads fit in the frame");
        // The whole frame: its bookkeeping and the heads inside it.
        let frame = std::ptr::from_ref(&pool.frames[f]) as usize;
        let heads_at = std::ptr::from_ref(heads) as usize;
        assert!(heads_at >= frame && heads_at + std::mem::size_of::<Heads>() <= frame + 256);
        assert!(covered(frame, std::mem::size_of::<Frame>()));
        // The header and every slot of the page.
        let view = PageView::new(&page, PageType::Leaf).unwrap();
        assert!(covered(page.as_ptr() as usize, view.slots_end()));
        // Nothing else: no line twice, none beyond these.
        let mut distinct = lines.iter().map(|l| l / 64).collect::<Vec<_>>();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), lines.len());
        assert_eq!(lines.len(), FRAME_LINES + PREFETCH_PAGE_LINES);
        // A frame past the pool has no lines to prefetch.
        assert!(pool.prefetch_plan(16).is_none());
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
    fn heads_follow_the_bytes_through_installs_and_evictions() {
        use crate::btree::page::{Leaf, Node, PageType, PageView, Value};
        let dir = tempfile::tempdir().unwrap();
        let file = pydb_file::MonolithicFile::create(dir.path().join("p")).unwrap();
        let pool = BufferPool::new(file, 512, 16, Arc::new(Recorder::default()));
        let leaf = |keys: &[&str]| {
            let mut l = Leaf::default();
            for k in keys {
                l.put(
                    bytes::Bytes::copy_from_slice(k.as_bytes()),
                    Value::Inline(bytes::Bytes::from_static(b"v")),
                );
            }
            encode(&Content::Node(Node::Leaf(l)), 2, 512).unwrap()
        };
        let search = |key: &str| {
            let page = pool.fetch(2).unwrap();
            let view = PageView::new(&page, PageType::Leaf).unwrap();
            page.heads().search_leaf(&view, key.as_bytes()).unwrap()
        };
        let built = || pool.fetch(2).unwrap().built_heads().is_some();
        pool.install(2, &leaf(&["k1", "k3"])).unwrap();
        assert!(!built(), "an install leaves the heads to the first search");
        assert_eq!(search("k3"), Ok(1));
        assert!(built());
        // New bytes, new heads: the old ones (built by the search above,
        // for as many keys) would look for "k3" at 1 and not find it.
        pool.install(2, &leaf(&["k3", "k4"])).unwrap();
        assert!(!built());
        assert_eq!(search("k3"), Ok(0));
        assert_eq!(search("k1"), Err(0));
        // Evicted and read back from disk: heads built from the read bytes.
        pool.flush_all().unwrap();
        for id in 3..40 {
            pool.install(id, &free_page(id, 1)).unwrap();
        }
        assert!(pool.stats().evictions > 0);
        assert_eq!(search("k4"), Ok(1));
        assert_eq!(pool.stats().misses, 1);
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

    #[test]
    fn fetches_racing_evictions_always_see_the_page_they_asked_for() {
        // 16 frames, 64 pages, 4 threads: almost every fetch evicts, so
        // the lock-free hit path keeps meeting frames the clock is
        // claiming and map entries that went stale.
        let dir = tempfile::tempdir().unwrap();
        let file = pydb_file::MonolithicFile::create(dir.path().join("p")).unwrap();
        let pool = BufferPool::new(file, 512, 16, Arc::new(Recorder::default()));
        for id in 2..66 {
            pool.install(id, &free_page(id, u64::from(id))).unwrap();
        }
        pool.flush_all().unwrap();
        std::thread::scope(|s| {
            for t in 0..4u32 {
                let pool = &pool;
                s.spawn(move || {
                    let mut x = 0x9e37_79b9u32.wrapping_mul(t + 1);
                    for _ in 0..20_000 {
                        x ^= x << 13;
                        x ^= x >> 17;
                        x ^= x << 5;
                        let id = 2 + x % 64;
                        let page = pool.fetch(id).unwrap();
                        assert_eq!(page::get_u32(&page, page::PAGE_ID_OFFSET).unwrap(), id);
                        assert_eq!(page::page_lsn(&page), u64::from(id));
                    }
                });
            }
        });
        let stats = pool.stats();
        assert_eq!(stats.hits + stats.misses, 80_000);
        assert!(stats.evictions > 0);
        // No frame is left latched or claimed.
        for frame in &pool.frames {
            assert!(!frame.data.is_locked());
        }
    }
}
