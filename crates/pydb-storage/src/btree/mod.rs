//! # `BTreeStorage`: the page-oriented engine
//!
//! A B+tree of fixed-size pages in one file, cached by a buffer pool and
//! protected by a write-ahead log: the design behind PostgreSQL, SQLite,
//! InnoDB, LMDB and redb. Run the same workload on it and on the log engine
//! to see the trade: the B+tree updates pages in place and keeps keys
//! sorted on disk (fast range scans, bounded space, no compaction), at the
//! price of writing a page (and a log record) where the log engine appends
//! one record.
//!
//! ```text
//! dir/
//!   LOCK                 one process at a time (DirLock)
//!   pages                page 0, 1: meta copies; 2..: tree, overflow, free pages
//!   wal/0000000007.log   redo log since the last checkpoint (pydb-wal records)
//! ```
//!
//! The modules follow the data down:
//! - [`tree`]: lookups, inserts with splits, deletes with merges, cursors,
//!   and the write transaction ([`tree::Txn`]) that edits shadow copies;
//! - [`overflow`] and [`freelist`]: large values and page reuse;
//! - [`wal`]: redo records, LSNs and recovery;
//! - [`pool`]: the buffer pool, its clock eviction and the write-ahead rule,
//!   and [`heads`]: the key prefixes it keeps beside each cached page so
//!   that searches compare integers;
//! - [`page`] and [`meta`]: the bytes of every page.
//!
//! ## A write, step by step
//!
//! 1. Take the writer lock (one writer at a time).
//! 2. Run the batch as a [`tree::Txn`]: changed pages are copied out of the
//!    pool and edited privately; readers keep reading the committed tree.
//! 3. Encode the redo records (page ops, or full page images for pages
//!    changed for the first time since the checkpoint, for the new page of
//!    a split, and for merges) and append them to the WAL as one batch. The batch's end
//!    offset is its LSN.
//! 4. Take the tree lock for writing and install the shadow pages, stamped
//!    with that LSN, into the pool: readers see the whole batch at once.
//! 5. Release the writer lock, then (with [`SyncPolicy::Always`]) wait for
//!    the WAL to be durable up to the LSN. Writers that arrive meanwhile
//!    append behind us and share the next `fsync` (group commit).
//!
//! Pages reach the disk later, when evicted or at a checkpoint, and only
//! once the WAL covers them (the write-ahead rule, see [`pool`]).
//!
//! ## Concurrency: the simple scheme and its cost
//!
//! One writer at a time (a mutex), any number of readers. A lookup and a
//! cursor's refill take no lock at all at first: they read the tree
//! optimistically and check a sequence number that every install changes,
//! retrying if one overlapped them, and take the tree lock (`RwLock`) for
//! reading only after a few failed tries ([`optimistic`]). Both latch one
//! page at a time through the pool. The
//! writer holds the tree lock for writing only while it installs finished
//! pages (step 4): a memory copy per changed page, not the WAL write and not
//! the `fsync`. The cost: while a batch is installed, every reader waits or
//! retries (not only readers of the pages it changed), and writers never run
//! in parallel. Latch crabbing
//! (taking page latches top-down and releasing safe ancestors) or B-link
//! trees would let writers proceed on disjoint pages; that is the next step.
//!
//! ## Checkpoints and recovery
//!
//! A checkpoint (when the WAL has grown enough, see below, on
//! [`StorageEngine::compact`] and on close) starts a new WAL segment, writes every dirty page back,
//! syncs the page file, writes the meta page (the other copy) with the new
//! segment's LSN as the checkpoint LSN, syncs it, and deletes the segments
//! older than the *previous* checkpoint. Keeping one checkpoint's worth of
//! extra WAL is what makes the two meta copies worth having: if the newest
//! copy is ever found damaged, the older one is a valid place to start
//! recovery, because the WAL from its checkpoint on still exists and replay
//! by page LSN is idempotent over pages that are newer than it.
//!
//! **When to checkpoint.** A checkpoint costs one write of every dirty
//! page, and after it the first change of each page is logged as a full
//! page image again (the torn-page protection, see [`wal`]). Both costs
//! are proportional to the dirty pages, not to the log, so checkpointing
//! every fixed number of WAL bytes makes a spread-out workload (random
//! inserts over a large tree) pay a page write and a page image for almost
//! every small change: write amplification of 30 and more. pydb instead
//! checkpoints when the WAL holds `checkpoint_dirty_ratio` (default 2) times
//! the bytes of the dirty pages: since the images in it are about one dirty
//! page each, at least half the log is then leaf ops, and the checkpoint's
//! writes are at most as large as the log they retire. Two bounds frame the
//! rule: below `checkpoint_min_bytes` (4 MiB, SQLite's 1,000 pages) no
//! checkpoint is started, so a small hot set overwritten a million times
//! keeps a WAL of a few MiB; past `checkpoint_bytes` (1 GiB, PostgreSQL's
//! `max_wal_size`) one always is, which bounds the WAL and recovery time.
//! Since the dirty pages fit in the pool, the WAL stays below about
//! `checkpoint_dirty_ratio` times the pool size either way.
//!
//! Closing checkpoints once: the segment that checkpoint closes is kept as
//! the older meta copy's starting point, and the next checkpoint after
//! reopening retires it (`docs/formats.md` pins that layout).
//!
//! Opening replays every WAL segment from the checkpoint LSN on. Each
//! record targets one page; a full page image is installed as is, a leaf op
//! is redone only if the page's LSN is older than the record's. So
//! recovery needs no undo (uncommitted batches never reach the WAL or the
//! pages) and can be interrupted and rerun. A torn tail of the last segment
//! (a batch cut short by the crash) is cut off: that batch was never
//! acknowledged. After replay, a checkpoint makes the result durable and
//! starts a fresh segment.

pub mod arena;
pub mod check;
pub mod freelist;
pub mod heads;
pub mod meta;
pub mod optimistic;
pub mod overflow;
pub mod page;
pub mod pool;
pub mod repair;
pub mod tree;
pub mod verify;
pub mod wal;

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use pydb_file::{File, FileOpener, MonolithicOpener};
use pydb_wal::LogWriter;

use crate::engine::{BatchOp, KeyRange, ScanIter, Stats, StorageEngine, Visit, WriteBatch};
use crate::{DirLock, Error, Result};

pub use check::TreeShape;
pub use meta::{MAX_BTREE_DEPTH, MetaCopies, MetaPage, TreeMeta, read_meta_copies};
pub use page::{PageInfo, PageType, describe_page};
pub use pool::PoolStats;
pub use pydb_wal::SyncPolicy;
pub use tree::Cursor;

use meta::FORMAT_VERSION;
use optimistic::Published;
use page::{Content, FIRST_DATA_PAGE, Leaf, Node};
use pool::{BufferPool, WriteAhead};
use tree::{Body, Txn, corrupt_at};
use wal::{
    ActiveSegment, ReplayOutcome, WAL_DIR, WalHandle, lsn, lsn_offset, lsn_segment, segment_path,
};

/// The name of the page file inside a database directory.
pub const PAGE_FILE_NAME: &str = "pages";

/// How to open a [`BTreeStorage`].
#[derive(Debug, Clone)]
pub struct BTreeOptions {
    /// Page size for a new database (a power of two, 512 to 32768 bytes).
    /// An existing database keeps the page size it was created with.
    pub page_size: usize,
    /// Bytes of page frames in the buffer pool (at least 16 frames).
    pub pool_bytes: usize,
    /// When the WAL is synced.
    pub sync: SyncPolicy,
    /// Checkpoint when the current WAL segment grows past this many bytes,
    /// whatever else holds: the hard bound on the WAL (PostgreSQL's
    /// `max_wal_size`).
    pub checkpoint_bytes: u64,
    /// Never checkpoint on WAL growth below this many bytes (SQLite's
    /// automatic checkpoint at 1,000 pages is the same idea).
    pub checkpoint_min_bytes: u64,
    /// Between the two bounds, checkpoint once the WAL holds this many
    /// times the bytes of the dirty pages, which is what a checkpoint writes.
    /// Sizing checkpoints by dirty pages keeps their cost a fixed share of
    /// the log: see "Checkpoints and recovery" in the module documentation.
    pub checkpoint_dirty_ratio: u64,
    /// The longest key accepted; capped by what a page holds (a quarter of
    /// the page, see [`page::max_key_len_for`]).
    pub max_key_len: usize,
    /// The longest value accepted.
    pub max_value_len: usize,
}

impl Default for BTreeOptions {
    fn default() -> Self {
        Self {
            page_size: page::DEFAULT_PAGE_SIZE,
            pool_bytes: 16 << 20,
            sync: SyncPolicy::Always,
            checkpoint_bytes: 1 << 30,
            checkpoint_min_bytes: 4 << 20,
            checkpoint_dirty_ratio: 2,
            max_key_len: 1024,
            max_value_len: 16 << 20,
        }
    }
}

#[derive(Debug)]
struct WriterState {
    /// The oldest WAL segment that may still be on disk.
    oldest_segment: u64,
    /// The WAL segment recovery would start from.
    checkpoint_segment: u64,
    /// Generation of the meta page last written.
    generation: u64,
}

/// The B+tree engine. See the module documentation.
#[derive(Debug)]
pub struct BTreeStorage<O: FileOpener + 'static = MonolithicOpener>
where
    O::File: 'static,
{
    dir: PathBuf,
    opener: O,
    options: BTreeOptions,
    max_key_len: usize,
    pool: BufferPool<O::File>,
    wal: Arc<WalHandle<O::File>>,
    /// The committed tree's meta fields; its lock is the tree lock.
    tree: RwLock<TreeMeta>,
    /// The same meta behind a sequence number that an install makes odd:
    /// what lets a `get` run without the tree lock (see [`optimistic`]).
    published: Published,
    writer: Mutex<WriterState>,
    poisoned: AtomicBool,
    poison_reason: Mutex<Option<String>>,
    checkpoints: AtomicU64,
    recovered_batches: u64,
    _lock: DirLock,
}

impl BTreeStorage<MonolithicOpener> {
    /// Opens (or creates) the database in `dir`.
    pub fn open(dir: impl AsRef<Path>, options: BTreeOptions) -> Result<Self> {
        Self::open_with(dir, options, MonolithicOpener)
    }
}

/// Writes a new page file: both meta copies and an empty root leaf.
fn create_page_file<F: File>(file: &F, page_size: usize) -> Result<()> {
    let tree = TreeMeta {
        root: FIRST_DATA_PAGE,
        height: 1,
        free_head: 0,
        free_count: 0,
        page_count: FIRST_DATA_PAGE + 1,
        keys: 0,
        live_bytes: 0,
    };
    let mut meta = MetaPage {
        copy: 0,
        page_size: page_size as u32,
        version: FORMAT_VERSION,
        generation: 1,
        tree,
        checkpoint_lsn: lsn(1, 0),
    };
    let mut buf = meta.encode();
    meta.copy = 1;
    meta.generation = 0;
    buf.extend_from_slice(&meta.encode());
    let mut root = page::encode(
        &Content::Node(Node::Leaf(Leaf::default())),
        FIRST_DATA_PAGE,
        page_size,
    )
    .map_err(|e| corrupt_at(file.path(), page_size, FIRST_DATA_PAGE, e))?;
    page::seal(&mut root);
    buf.extend_from_slice(&root);
    file.write_at(0, &buf)?;
    file.sync_data()?;
    Ok(())
}

fn not_found(e: &pydb_file::Error) -> bool {
    e.io_kind() == Some(std::io::ErrorKind::NotFound)
}

impl<O: FileOpener + 'static> BTreeStorage<O>
where
    O::File: 'static,
{
    /// Opens (or creates) the database in `dir`, with files from `opener`
    /// (tests pass a fault-injecting one). Replays the WAL if the last run
    /// did not end with a checkpoint.
    pub fn open_with(dir: impl AsRef<Path>, options: BTreeOptions, opener: O) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        if !page::valid_page_size(options.page_size) {
            return Err(Error::InvalidDatabase {
                path: dir,
                reason: format!(
                    "page size {} is not a power of two between {} and {}",
                    options.page_size,
                    page::MIN_PAGE_SIZE,
                    page::MAX_PAGE_SIZE
                ),
            });
        }
        let wal_dir = dir.join(WAL_DIR);
        opener.create_dir_all_durable(&wal_dir)?;
        let lock = DirLock::acquire_for(&opener, &dir)?;

        let pages_path = dir.join(PAGE_FILE_NAME);
        let file = opener.open(&pages_path, true)?;
        if file.len()? == 0 {
            create_page_file(&file, options.page_size)?;
            opener.sync_dir(&dir)?;
        }
        let copies = meta::read_meta_copies(&file)?;
        let meta = meta::read_current(&file, &pages_path)?;
        // Either valid copy must stay recoverable: keep the WAL back to the
        // older copy's checkpoint.
        let oldest_kept = [&copies.copy0, &copies.copy1]
            .into_iter()
            .filter_map(|c| c.as_ref().ok())
            .map(|m| lsn_segment(m.checkpoint_lsn))
            .min()
            .unwrap_or(0)
            .max(1);
        let page_size = meta.page_size as usize;
        let checkpoint_segment = lsn_segment(meta.checkpoint_lsn);
        if checkpoint_segment == 0 || lsn_offset(meta.checkpoint_lsn) != 0 {
            return Err(Error::corrupted(
                &pages_path,
                0,
                "meta page has an invalid checkpoint LSN",
            ));
        }

        let wal = Arc::new(WalHandle {
            active: RwLock::new(None),
        });
        let pool = BufferPool::new(file, page_size, options.pool_bytes / page_size, wal.clone());

        // Segments older than both checkpoints are left over from a crash
        // between writing the meta page and deleting them.
        let mut stale = oldest_kept.min(checkpoint_segment);
        while stale > 1 {
            stale -= 1;
            match opener.remove(&segment_path(&dir, stale)) {
                Ok(()) => {}
                Err(e) if not_found(&e) => break,
                Err(e) => return Err(e.into()),
            }
        }

        // Redo every segment from the checkpoint on.
        let mut tree = meta.tree;
        let mut replayed = 0;
        let mut segment = checkpoint_segment;
        let mut last: Option<(u64, O::File, ReplayOutcome)> = None;
        loop {
            let path = segment_path(&dir, segment);
            let file = match opener.open(&path, false) {
                Ok(f) => f,
                Err(e) if not_found(&e) => break,
                Err(e) => return Err(e.into()),
            };
            if let Some((prev, _, outcome)) = &last
                && let Some(damage) = verify::torn_tail_rule(
                    &segment_path(&dir, *prev),
                    outcome.valid_end,
                    outcome.torn_bytes,
                    false,
                )
            {
                return Err(damage);
            }
            // Pages rebuilt from these records may be written back during
            // replay: the records must be durable first.
            file.sync_data()?;
            let outcome = wal::replay_segment(&file, segment, &pool, &mut tree)?;
            replayed += outcome.batches;
            last = Some((segment, file, outcome));
            segment += 1;
        }
        let (active_segment, wal_file, created) = match last {
            Some((segment, file, outcome)) => {
                if outcome.torn_bytes > 0 {
                    tracing::warn!(
                        segment,
                        offset = outcome.valid_end,
                        bytes = outcome.torn_bytes,
                        "truncating the torn tail of the B+tree WAL"
                    );
                    file.set_len(outcome.valid_end)?;
                    file.sync_data()?;
                }
                (segment, file, false)
            }
            None => {
                let file = opener.open(&segment_path(&dir, checkpoint_segment), true)?;
                (checkpoint_segment, file, true)
            }
        };
        let writer = LogWriter::new(wal_file, options.sync)?;
        if created {
            opener.sync_dir(&wal_dir)?;
        }
        *wal.active.write() = Some(ActiveSegment {
            segment: active_segment,
            writer,
        });
        tree.check().map_err(|reason| {
            Error::corrupted(
                &pages_path,
                0,
                format!("tree meta after recovery: {reason}"),
            )
        })?;

        let max_key_len = options.max_key_len.min(page::max_key_len_for(page_size));
        let engine = Self {
            dir,
            opener,
            options,
            max_key_len,
            pool,
            wal,
            tree: RwLock::new(tree),
            published: Published::new(&tree),
            writer: Mutex::new(WriterState {
                oldest_segment: oldest_kept.min(checkpoint_segment),
                checkpoint_segment,
                generation: meta.generation,
            }),
            poisoned: AtomicBool::new(false),
            poison_reason: Mutex::new(None),
            checkpoints: AtomicU64::new(0),
            recovered_batches: replayed,
            _lock: lock,
        };
        if replayed > 0 {
            engine.checkpoint()?;
        }
        Ok(engine)
    }

    /// The database directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The page size of this database.
    pub fn page_size(&self) -> usize {
        self.pool.page_size()
    }

    /// The longest key accepted.
    pub fn max_key_len(&self) -> usize {
        self.max_key_len
    }

    /// Batches redone from the WAL when this handle was opened.
    pub fn recovered_batches(&self) -> u64 {
        self.recovered_batches
    }

    /// The committed tree's meta fields.
    pub fn tree_meta(&self) -> TreeMeta {
        *self.tree.read()
    }

    /// The buffer pool's counters.
    pub fn pool_stats(&self) -> PoolStats {
        self.pool.stats()
    }

    /// A cursor over `range`, descending when `reverse` is set.
    pub fn cursor(&self, range: KeyRange, reverse: bool) -> Cursor<'_, O::File> {
        Cursor::new(
            &self.pool,
            &self.tree,
            &self.published,
            &self.poisoned,
            range.start,
            range.end,
            reverse,
        )
    }

    /// The keys in `range` with their values, in *descending* key order.
    pub fn scan_rev(&self, range: KeyRange) -> Result<ScanIter<'_>> {
        self.check_poisoned()?;
        Ok(Box::new(self.cursor(range, true)))
    }

    /// Writes a checkpoint now: dirty pages to disk, a new meta page, old
    /// WAL segments deleted.
    pub fn checkpoint(&self) -> Result<()> {
        self.check_poisoned()?;
        let mut writer = self.writer.lock();
        self.checkpoint_locked(&mut writer)
    }

    fn check_poisoned(&self) -> Result<()> {
        if self.poisoned.load(Ordering::Acquire) {
            let reason = self.poison_reason.lock().clone();
            return Err(Error::poisoned(
                &self.dir,
                reason.unwrap_or_else(|| "an earlier failure".into()),
            ));
        }
        Ok(())
    }

    /// Refuses every further operation: the pool may be behind the log, or
    /// the page file may have lost writes it reported done (a failed
    /// `fsync`). Reopening recovers from what is really on disk.
    fn poison(&self, err: &Error) {
        self.poison_reason
            .lock()
            .get_or_insert_with(|| err.to_string());
        self.poisoned.store(true, Ordering::Release);
    }

    fn check_key(&self, key: &[u8]) -> Result<()> {
        if key.is_empty() {
            return Err(Error::EmptyKey);
        }
        if key.len() > self.max_key_len {
            return Err(Error::KeyTooLarge {
                len: key.len(),
                max: self.max_key_len,
            });
        }
        Ok(())
    }

    fn check_value(&self, value: &[u8]) -> Result<()> {
        let max = self.options.max_value_len.min(u32::MAX as usize);
        if value.len() > max {
            return Err(Error::ValueTooLarge {
                len: value.len(),
                max,
            });
        }
        Ok(())
    }

    /// Runs `body` as one atomic write: logged as one WAL batch, installed
    /// at once, durable on return under [`SyncPolicy::Always`].
    fn write<R>(&self, body: impl FnOnce(&mut Txn<'_, O::File>) -> Result<R>) -> Result<R> {
        self.check_poisoned()?;
        let mut writer = self.writer.lock();
        self.check_poisoned()?;
        let meta = *self.tree.read();
        let mut txn = Txn::new(&self.pool, meta, lsn(writer.checkpoint_segment, 0));
        let result = body(&mut txn)?;
        let committed = self.commit(txn)?;
        if self.checkpoint_due() {
            self.checkpoint_locked(&mut writer)?;
        }
        drop(writer);
        if let (Some(batch_lsn), SyncPolicy::Always) = (committed, self.options.sync) {
            // Outside the writer lock, so that the next writers can append
            // and share this fsync (group commit).
            if let Err(e) = self.wal.make_durable(batch_lsn) {
                self.poison(&e);
                return Err(e);
            }
        }
        Ok(result)
    }

    /// Logs a finished transaction and installs its pages; returns the
    /// batch LSN, or `None` if it changed nothing.
    fn commit(&self, txn: Txn<'_, O::File>) -> Result<Option<u64>> {
        let ps = self.pool.page_size();
        let path = self.pool.file().path();
        let Txn {
            pages,
            meta,
            meta_changed,
            ..
        } = txn;
        // Every record goes into one buffer, its end noted: one allocation
        // for the batch rather than one per record.
        let mut records = Vec::new();
        let mut ends = Vec::new();
        let mut installs = Vec::new();
        for (id, shadow) in pages {
            if !shadow.modified {
                continue;
            }
            let bytes = match shadow.body {
                // Edited in place: already the page's bytes.
                Body::Raw(bytes) => bytes,
                Body::Decoded(content) => {
                    page::encode(&content, id, ps).map_err(|e| corrupt_at(path, ps, id, e))?
                }
            };
            match &shadow.ops {
                None => {
                    wal::append_image(&mut records, id, &bytes);
                    ends.push(records.len());
                }
                Some(ops) => {
                    for op in ops {
                        wal::append_op(&mut records, id, op)
                            .map_err(|e| corrupt_at(path, ps, id, e))?;
                        ends.push(records.len());
                    }
                }
            }
            installs.push((id, bytes));
        }
        if meta_changed {
            wal::append_meta(&mut records, &meta);
            ends.push(records.len());
        }
        if ends.is_empty() {
            return Ok(None);
        }
        let mut start = 0;
        let payloads: Vec<&[u8]> = ends
            .iter()
            .map(|&end| {
                let payload = records.get(start..end).unwrap_or_default();
                start = end;
                payload
            })
            .collect();
        let batch_lsn = {
            let active = self.wal.active.read();
            let active = active
                .as_ref()
                .ok_or_else(|| Error::corrupted(&self.dir, 0, "no active WAL segment"))?;
            let appended = active.writer.append_batch_unsynced(&payloads)?;
            lsn(active.segment, appended.end)
        };
        // The batch is in the log: if installing fails now, the pool is
        // behind the log, and only a reopen (which replays it) can fix that.
        let installed = {
            let mut tree = self.tree.write();
            // Optimistic readers (lookups, cursor refills) that overlap
            // these installs will retry.
            self.published.begin_write();
            let installed = installs.into_iter().try_for_each(|(id, mut bytes)| {
                page::set_page_lsn(&mut bytes, batch_lsn);
                self.pool.install(id, &bytes)
            });
            if installed.is_ok() {
                *tree = meta;
            }
            // Even after a failed install: the engine is poisoned below,
            // and lookups check that before they look at the tree.
            self.published.end_write(&tree);
            installed
        };
        if let Err(e) = installed {
            self.poison(&e);
            return Err(e);
        }
        Ok(Some(batch_lsn))
    }

    /// Whether the WAL has grown enough to pay for a checkpoint: past the
    /// hard bound, or past the floor and `checkpoint_dirty_ratio` times the
    /// dirty pages a checkpoint would write.
    fn checkpoint_due(&self) -> bool {
        let wal = self.wal_len();
        let o = &self.options;
        if wal >= o.checkpoint_bytes.min(wal::MAX_SEGMENT_LEN / 2) {
            return true;
        }
        let dirty = self.pool.dirty_pages() as u64 * self.pool.page_size() as u64;
        wal >= o.checkpoint_min_bytes && wal >= dirty.saturating_mul(o.checkpoint_dirty_ratio)
    }

    /// Bytes in the active WAL segment.
    fn wal_len(&self) -> u64 {
        self.wal
            .active
            .read()
            .as_ref()
            .map_or(0, |a| a.writer.end())
    }

    fn checkpoint_locked(&self, writer: &mut WriterState) -> Result<()> {
        let result = self.checkpoint_inner(writer);
        if let Err(e) = &result {
            self.poison(e);
        }
        result
    }

    fn checkpoint_inner(&self, writer: &mut WriterState) -> Result<()> {
        let wal_dir = self.dir.join(WAL_DIR);
        // 1. A new segment; the old one is synced in full first, so that
        //    every page LSN in it counts as durable from now on.
        let new_segment = {
            let mut active = self.wal.active.write();
            let current = active
                .as_ref()
                .ok_or_else(|| Error::corrupted(&self.dir, 0, "no active WAL segment"))?;
            current.writer.sync()?;
            let segment = current.segment + 1;
            let file = self.opener.open(&segment_path(&self.dir, segment), true)?;
            file.set_len(0)?;
            let new_writer = LogWriter::new(file, self.options.sync)?;
            self.opener.sync_dir(&wal_dir)?;
            *active = Some(ActiveSegment {
                segment,
                writer: new_writer,
            });
            segment
        };
        // 2. Every dirty page to disk, and the page file synced.
        self.pool.flush_all()?;
        // 3. The meta page, into the copy not holding the current one.
        let generation = writer.generation + 1;
        let meta = MetaPage {
            copy: (generation % 2) as u32,
            page_size: self.pool.page_size() as u32,
            version: FORMAT_VERSION,
            generation,
            tree: *self.tree.read(),
            checkpoint_lsn: lsn(new_segment, 0),
        };
        let file = self.pool.file();
        file.write_at(self.pool.offset_of(meta.copy), &meta.encode())?;
        file.sync_data()?;
        let previous_checkpoint = writer.checkpoint_segment;
        writer.generation = generation;
        writer.checkpoint_segment = new_segment;
        // 4. The WAL before the *previous* checkpoint is no longer needed.
        //    The segments since then stay: the other meta copy starts there,
        //    and if the new copy is ever found damaged, recovery falls back
        //    to it and replays them (page LSNs make that safe).
        for segment in writer.oldest_segment..previous_checkpoint {
            match self.opener.remove(&segment_path(&self.dir, segment)) {
                Ok(()) => {}
                Err(e) if not_found(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        writer.oldest_segment = previous_checkpoint;
        self.opener.sync_dir(&wal_dir)?;
        self.checkpoints.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

impl<O: FileOpener + 'static> StorageEngine for BTreeStorage<O>
where
    O::File: 'static,
{
    fn set(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.check_key(key)?;
        self.check_value(value)?;
        self.write(|txn| txn.set(key, value))
    }

    fn get(&self, key: &[u8]) -> Result<Option<Bytes>> {
        self.check_poisoned()?;
        if key.is_empty() || key.len() > self.max_key_len {
            return Ok(None);
        }
        // Optimistically first: no lock, the answer kept only if no batch
        // was installed meanwhile (see `optimistic`).
        self.published
            .read(&self.tree, |meta, _| tree::get(&self.pool, meta, key))
    }

    fn delete(&self, key: &[u8]) -> Result<bool> {
        self.check_key(key)?;
        self.write(|txn| txn.delete(key))
    }

    fn write_batch(&self, batch: &WriteBatch) -> Result<()> {
        for op in batch.ops() {
            self.check_key(op.key())?;
            if let BatchOp::Set { value, .. } = op {
                self.check_value(value)?;
            }
        }
        if batch.is_empty() {
            return Ok(());
        }
        self.write(|txn| {
            for op in batch.ops() {
                match op {
                    BatchOp::Set { key, value } => txn.set(key, value)?,
                    BatchOp::Delete { key } => {
                        txn.delete(key)?;
                    }
                }
            }
            Ok(())
        })
    }

    fn scan(&self, range: KeyRange) -> Result<ScanIter<'_>> {
        self.check_poisoned()?;
        Ok(Box::new(self.cursor(range, false)))
    }

    /// The cursor's refills, with each entry handed to `visit` as slices
    /// of the leaf copy (see `tree.rs`, "Readers"): no `Bytes` per entry,
    /// no boxed iterator, and the bounds are borrowed, not copied.
    fn scan_with(&self, range: (Bound<&[u8]>, Bound<&[u8]>), visit: &mut Visit<'_>) -> Result<()> {
        self.check_poisoned()?;
        Cursor::new(
            &self.pool,
            &self.tree,
            &self.published,
            &self.poisoned,
            range.0,
            range.1,
            false,
        )
        .visit(visit)
    }

    fn first(&self, range: KeyRange) -> Result<Option<(Bytes, Bytes)>> {
        let (start, end) = range.as_slices();
        self.first_in(start, end)
    }

    /// One seek that copies out one entry, where a scan's cursor copies
    /// the leaf (see [`tree::first`]); optimistic like [`Self::get`].
    fn first_in(&self, start: Bound<&[u8]>, end: Bound<&[u8]>) -> Result<Option<(Bytes, Bytes)>> {
        self.check_poisoned()?;
        self.published.read(&self.tree, |meta, _| {
            tree::first(&self.pool, meta, start, end)
        })
    }

    fn flush(&self) -> Result<()> {
        self.check_poisoned()?;
        let active = self.wal.active.read();
        if let Some(active) = active.as_ref() {
            active.writer.sync()?;
        }
        Ok(())
    }

    /// A checkpoint: pages are reused through the free list as they are
    /// freed, so there is nothing else to reclaim.
    fn compact(&self) -> Result<()> {
        self.checkpoint()
    }

    fn stats(&self) -> Stats {
        let pool = self.pool.stats();
        let meta = *self.tree.read();
        let (wal_bytes, wal_syncs) = self
            .wal
            .active
            .read()
            .as_ref()
            .map_or((0, 0), |a| (a.writer.end(), a.writer.stats().syncs));
        Stats {
            engine: "btree",
            counters: vec![
                ("live_keys", meta.keys),
                ("live_bytes", meta.live_bytes),
                ("page_size", self.pool.page_size() as u64),
                ("pages", u64::from(meta.page_count)),
                ("free_pages", u64::from(meta.free_count)),
                ("tree_height", u64::from(meta.height)),
                ("pool_frames", pool.frames),
                ("pool_hits", pool.hits),
                ("pool_misses", pool.misses),
                ("pool_evictions", pool.evictions),
                ("pool_writebacks", pool.writebacks),
                ("pool_dirty", pool.dirty),
                ("wal_bytes", wal_bytes),
                ("wal_syncs", wal_syncs),
                ("checkpoints", self.checkpoints.load(Ordering::Relaxed)),
                ("recovered_batches", self.recovered_batches),
            ],
        }
    }

    /// A value of up to [`GET_WITH_STACK`] bytes is copied from its leaf
    /// into a buffer on the stack and lent from there: no allocation. It
    /// cannot be lent from the leaf itself, because the optimistic read may
    /// run again (an install overlapped it), and the visitor must run once,
    /// on an answer that holds. A larger value goes through `get`.
    fn get_with(&self, key: &[u8], visit: &mut dyn FnMut(&[u8])) -> Result<bool> {
        self.check_poisoned()?;
        if key.is_empty() || key.len() > self.max_key_len {
            return Ok(false);
        }
        let mut buf = [0u8; GET_WITH_STACK];
        let copied = self.published.read(&self.tree, |meta, _| {
            tree::get_into(&self.pool, meta, key, &mut buf)
        })?;
        match copied {
            tree::Copied::Missing => Ok(false),
            tree::Copied::Into(len) => {
                visit(&buf[..len]);
                Ok(true)
            }
            tree::Copied::Larger => match self.get(key)? {
                Some(value) => {
                    visit(&value);
                    Ok(true)
                }
                None => Ok(false),
            },
        }
    }

    /// [`Self::first_in`] without copying the key out (see
    /// [`tree::first_value`]).
    fn first_value_in(&self, start: Bound<&[u8]>, end: Bound<&[u8]>) -> Result<Option<Bytes>> {
        self.check_poisoned()?;
        self.published.read(&self.tree, |meta, _| {
            tree::first_value(&self.pool, meta, start, end)
        })
    }

    /// The value copied from its leaf into `out` (see
    /// [`tree::first_value_into`]); a rerun of the optimistic read starts
    /// `out` again.
    fn first_value_into(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        out: &mut Vec<u8>,
    ) -> Result<bool> {
        self.check_poisoned()?;
        self.published.read(&self.tree, |meta, _| {
            tree::first_value_into(&self.pool, meta, start, end, out)
        })
    }
}

/// The largest value [`BTreeStorage`]'s `get_with` lends from a copy on
/// its stack; a larger one is read as `get` reads it.
pub const GET_WITH_STACK: usize = 512;

impl<O: FileOpener + 'static> Drop for BTreeStorage<O>
where
    O::File: 'static,
{
    /// Closes with a checkpoint, so that the next open has no WAL to replay.
    /// Errors are only logged: the WAL still holds everything.
    fn drop(&mut self) {
        if self.poisoned.load(Ordering::Acquire) {
            return;
        }
        let logged = self.wal_len() > pydb_wal::FILE_HEADER_LEN as u64;
        let result = if logged { self.checkpoint() } else { Ok(()) };
        if let Err(e) = result {
            tracing::warn!(%e, "checkpoint on close failed; the WAL will be replayed on open");
        }
    }
}

/// Reads page `id` of a page file as raw bytes, without checks, for
/// `pydb inspect` (pair it with [`describe_page`]).
pub fn read_raw_page<F: File>(file: &F, page_size: usize, id: page::PageId) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; page_size];
    file.read_at(u64::from(id) * page_size as u64, &mut buf)?;
    Ok(buf)
}
