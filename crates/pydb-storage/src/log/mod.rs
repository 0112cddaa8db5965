//! `AppendOnlyLogStorage`: the append-only log engine (Bitcask).
//!
//! The engine of the original pydb, and of Riak's Bitcask: every write is
//! appended to a log, and an in-memory index maps each key to the place of
//! its latest record. A read is one index lookup and one read of exactly
//! the record's bytes (verified in place in a memory map with the default
//! opener, a `pread` with plain files; see *Reads* below). Values
//! never live in memory; keys do, which bounds the database by RAM for keys
//! and by disk for values.
//!
//! ```text
//!            index (RwLock)                 segments (SegmentedFile)
//!   "apple" -> {seg 3, off 16, len 40}  ->  000000000003.log  sealed, + .hint
//!   "pear"  -> {seg 5, off 80, len 33}  ->  000000000005.log  sealed, + .hint
//!                                           000000000006.log  active: appends
//! ```
//!
//! ## Modules, in the order data flows
//!
//! - [`entry`]: the payload of each record (set, delete, begin, seal).
//! - [`Location`]: what the index stores per key.
//! - `recovery`: rebuilding the index on open, from hints or segments.
//! - [`hint`]: per-segment hint files that make opening fast.
//! - `compaction`: rewriting live data and deleting old segments.
//! - `scan`: range scans over a changing index.
//!
//! ## Segments and sequence numbers
//!
//! Each segment is a `pydb-wal` log file. It starts with a `begin` entry and,
//! once sealed, ends with a `seal` entry; between them are sets and deletes.
//! Every set and delete carries a sequence number (`seq`), assigned under the
//! writer lock and strictly increasing; a batch's entries take consecutive
//! numbers. `begin`/`seal` record the range of sequence numbers the segment
//! *covers*. Two rules follow, and the rest of the engine leans on them:
//!
//! 1. *The latest record of a key is the one with the highest `seq`*, never
//!    the one last in file order. So compaction can copy a record into a new
//!    segment with any id, and a crash that leaves both copies around leaves
//!    two records with the same `seq`, which is harmless.
//! 2. *The covered ranges of the segments tile `1..=last_seq`.* A writer
//!    segment covers from the `seq` current when it was created to the last
//!    one it holds; a compaction output covers exactly the ranges of the
//!    segments it replaced. On open, a hole in the tiling means a segment is
//!    missing, and it is reported instead of silently serving older values.
//!
//! ## Writes: acknowledged means durable
//!
//! A write (a set, a delete, or a batch) is validated, then under the
//! writer mutex: numbered, encoded, appended to the active segment as one
//! `pydb-wal` batch (all or nothing after a crash), and published in the
//! index. The entries are encoded straight into the writer's record buffer
//! (`LogWriter::append_batch_with`), which is kept from one write to the
//! next: key and value are copied once, into the bytes the record checksum
//! is computed over and the file is written from, and a write allocates
//! only the key the index keeps (the active segment's hint entries are
//! kept encoded, see `hint::PendingHint`). (Encoding
//! each entry into a `Vec` of its own outside the mutex, as a first
//! version did, cost five allocations and two more copies per write for a
//! critical section shorter only by a copy of the key and value.)
//!
//! The mutex is released *before* the `fsync`: with
//! [`SyncPolicy::Always`] the writer then waits in `LogWriter::sync_to`,
//! where concurrent writers share one `fsync` (group commit). A write
//! returns `Ok` only once its bytes are durable.
//!
//! Readers are another matter, and the choice is deliberate: a `get` on
//! another thread may see a value *between* its append and its `fsync`, so
//! a reader can observe a write that a crash in the next millisecond would
//! lose. That is the window of most databases that group-commit (Redis with
//! `appendfsync always` serves from memory before the fsync too). If the
//! `fsync` fails, the writer gets the error and the engine is poisoned.
//!
//! A failed sync, and a failed append that could not be cut back off the
//! segment, poison the engine: later writes fail with an error of kind
//! [`ErrorKind::Poisoned`] until the database is reopened, because after a
//! failed `fsync` nobody knows what reached the disk (see `pydb-wal`). A failed append that
//! `pydb-wal` cut back cleanly (a full disk, say) only fails that write:
//! nothing of it is on disk, and the next write may succeed once space
//! returns. A roll to a new segment keeps that promise too: a seal that
//! could not land fails only the write, and a next segment that cannot be
//! started on a full disk is removed again, so the next write retries it
//! behind the sealed, synced segment (see `Shared::roll`). A failed sync
//! of the seal poisons.
//!
//! ## Preallocation
//!
//! On ext4 an `fdatasync` of a file that grew also commits the inode (its
//! size) to the journal: one more write, and a wait for it, on every sync
//! of a log that only ever grows. So the active segment's file is a
//! [`PreallocatedFile`]: zeros are written and synced ahead of its end,
//! [`LogOptions::preallocate`] bytes (default 1 MiB) at a time, and an
//! append overwrites zeros inside a file whose size does not change (the
//! way PostgreSQL zero-fills each WAL segment before using it). On this
//! project's test disk that took a 120-byte append plus `fdatasync` from
//! 67 us to 45 us (median).
//!
//! The size of the file on disk is then not where the log ends. Nothing
//! needs to record the end: a `pydb-wal` record carries its length and a
//! checksum over its offset, and nine zero bytes verify as a record at one
//! offset below 4 GiB only (529,593,178), which preallocated zeros never
//! reach ([`MAX_PREALLOCATED_SEGMENT`]). So after a crash the scan of the
//! last segment stops at the first zero header as it stops at a torn
//! record; what follows the valid end is cut off on open, and it counts as
//! a torn tail (as before, whole) only if a byte of it is nonzero (a torn
//! append); zeros alone are preallocated space. Sealing a segment
//! and a clean close cut the zeros off, so a sealed segment and a closed
//! database hold exactly their records. The directory check
//! ([`verify::verify_dir`]) names zeros after the end of the last segment
//! as preallocated space, and [`repair`] drops them without reporting them
//! as lost data; `pydb inspect` and `pydb check` tell the zeros from a
//! torn append too (`pydb_wal::verify::Report::zero_bytes`).
//!
//! Only a log that syncs every write ([`SyncPolicy::Always`]) is
//! preallocated: that is where the inode's journal commit is paid per
//! sync. A log that syncs rarely or never pays it once per sync at most,
//! and would pay more for the zeros (written once more than the data, and
//! two syncs per step): `pydb-bench`'s unsynced `fillrandom` on the log
//! engine ran at two thirds of its speed with them.
//!
//! ## Reads
//!
//! Under the index read lock, take the key's [`Location`] and an `Arc` of
//! its segment; release; read the record (exactly `len` bytes), verify its
//! CRC, and check that it holds this key at this `seq`. A compaction that
//! deletes the segment meanwhile does not disturb the read: the `Arc` keeps
//! the unlinked file readable.
//!
//! By default ([`AppendOnlyLogStorage::open`]) segments are
//! [`MmapFile`](pydb_file::MmapFile)s, and a read touches the record where
//! it lies: `pydb_wal::visit_record_exact` borrows the record's bytes from
//! the map ([`File::read_with`]), checks the CRC over them, decodes the
//! entry in place, and the engine copies out only the value, into the one
//! allocation a `get` makes. (A first version copied the whole record into
//! a buffer and sliced the value out of it: two allocations, one of them
//! zeroed, and a copy of header and key that were thrown away.)
//!
//! Who owns what, and for how long: the borrow of the map lives only for
//! the call (the visitor cannot keep it: see `File::read_with`), under the
//! map's shared lock; the `Bytes` a `get` returns owns its own copy of the
//! value and points into no map. So nothing a caller holds keeps a segment
//! mapped: compaction may drop and unlink a segment as soon as the reads
//! in flight release their `Arc` of it, and the map may be re-created or
//! truncated at any time after. Handing out `Bytes` that point into the
//! map (`Bytes::from_owner` over an `Arc` of it) would save the copy of
//! the value, but then a value kept by a caller would pin the map, and a
//! map pinned past a truncation is a `SIGBUS`: the copy of a 100-byte
//! value is cheap next to that promise. A caller that only looks at the
//! value calls [`StorageEngine::get_with`] instead, which lends it the
//! value's bytes in the map, inside the same call and under the same
//! shared lock, after the same checks: no allocation and no copy (about
//! 1,390 instructions a read in the benchmark's `readrandom` against
//! 1,600 through `get`, by callgrind).
//!
//! Reading through a map is sound here because a segment only ever grows
//! while the engine runs (appends go through `pwrite`; the map reaches
//! ahead of the length, so a record just appended is read from the map
//! too, but no read touches a byte past the length written; no byte under
//! a record is ever written again, so the bytes the CRC was checked over
//! are the bytes the value is copied from), and the only truncations happen
//! where no read can be in flight: the torn tail and the restart of an
//! empty last segment are cut at open, before the engine exists, and
//! `MmapFile::set_len` lowers its length under an exclusive lock together
//! with the truncation anyway. Other processes are
//! kept out by the directory lock, which the `MmapOpener` holds (a map
//! cannot be opened without it) and lends to the engine. Any other [`FileOpener`] works through
//! [`AppendOnlyLogStorage::open_with`] (e.g. `MonolithicOpener` for plain
//! `pread`s, or a fault-injecting opener in tests).
//!
//! ## Close and reopen
//!
//! Opening rebuilds the index: from the hint file of each sealed segment,
//! and, for the active segment, from the hint a clean close writes for it
//! (after syncing). If the segment grew after that hint (the database was
//! opened and written to again, then crashed), only the bytes after the
//! hinted prefix are scanned; the `open_scanned_bytes` stat says how many.
//!
//! ## Deletes
//!
//! A delete appends a tombstone and removes the key from the index. A
//! delete of a key that is not there writes nothing: every older record of
//! that key is already shadowed by a tombstone.

mod compaction;
pub mod describe;
pub mod entry;
pub mod hint;
mod location;
mod recovery;
pub mod repair;
mod scan;
pub mod verify;

pub use location::Location;
pub use pydb_wal::SyncPolicy;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use pydb_file::{File, FileOpener, MmapOpener, PreallocatedFile, SegmentedFile};
use pydb_index::{BPlusTreeIndex, Index};
use pydb_wal::{LogWriter, record_len};

use crate::engine::{BatchOp, KeyRange, ScanIter, Stats, StorageEngine, WriteBatch};
use crate::{DirLock, Error, ErrorKind, Result};
use entry::{EntryKind, encode_entry, entry_len};
use hint::{HintHeader, PendingHint};

/// The extension of data segment files.
pub const SEGMENT_EXTENSION: &str = "log";

/// The default of [`LogOptions::preallocate`]: 1 MiB of zeros ahead of
/// the end of the active segment.
pub const DEFAULT_PREALLOCATE: u64 = 1 << 20;

/// Segments larger than this are not preallocated: a run of nine zero bytes
/// verifies as an (empty) `pydb-wal` record at one offset below 4 GiB,
/// 529,593,178 (the record checksum covers the offset; see
/// `pydb_wal::FIRST_OFFSET_WHERE_ZEROS_VERIFY`), so zeros must never reach it.
pub const MAX_PREALLOCATED_SEGMENT: u64 = 128 << 20;

// The largest end a preallocation can reach: a segment's worth, or one
// oversized record alone in a segment, rounded up by at most one more
// segment's worth. It must stay below the offset where zeros verify.
const _: () = assert!(
    MAX_PREALLOCATED_SEGMENT * 2 + pydb_wal::MAX_PAYLOAD_LEN as u64 + 4096
        < pydb_wal::FIRST_OFFSET_WHERE_ZEROS_VERIFY
);

/// How the log engine behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct LogOptions {
    /// When writes are made durable. With [`SyncPolicy::Always`] (the
    /// default) a write returns only once it is on disk.
    pub sync_policy: SyncPolicy,
    /// The size past which the active segment is sealed and a new one
    /// started. A write never spans two segments.
    pub max_segment_size: u64,
    /// The longest key accepted, in bytes.
    pub max_key_size: usize,
    /// The longest value accepted, in bytes. Key, value and entry header
    /// must fit in one `pydb-wal` record.
    pub max_value_size: usize,
    /// Background compaction runs when dead bytes make up at least this
    /// fraction of all bytes on disk...
    pub compaction_threshold: f64,
    /// ... and there are at least this many dead bytes.
    pub compaction_min_dead_bytes: u64,
    /// Whether a background thread checks the threshold and compacts.
    pub background_compaction: bool,
    /// How often the background thread checks the threshold.
    pub compaction_interval: Duration,
    /// Zeros written ahead of the end of the active segment, in bytes at a
    /// time (0: none). An append that lands inside zeros already synced
    /// does not change the file's size, so its `fdatasync` writes the data
    /// block without a journal commit for the inode (see *Preallocation*
    /// in the module docs). Costs up to this much disk space beyond the
    /// data of the active segment while the database is open (or after a
    /// crash, until the next open); a clean close and a seal cut it off.
    /// The zeros count in the `total_bytes` stat (the size on disk).
    /// Used only with [`SyncPolicy::Always`]: with any other policy the
    /// active segment is not preallocated (see the module docs).
    pub preallocate: u64,
}

impl Default for LogOptions {
    fn default() -> Self {
        Self {
            sync_policy: SyncPolicy::Always,
            max_segment_size: 64 << 20,
            max_key_size: 64 << 10,
            max_value_size: 16 << 20,
            compaction_threshold: 0.5,
            compaction_min_dead_bytes: 16 << 20,
            background_compaction: true,
            compaction_interval: Duration::from_secs(1),
            preallocate: DEFAULT_PREALLOCATE,
        }
    }
}

impl LogOptions {
    fn validate(&self, dir: &Path) -> Result<()> {
        let invalid = |reason: String| Error::InvalidDatabase {
            path: dir.to_path_buf(),
            reason,
        };
        if self.max_key_size == 0 {
            return Err(invalid("max_key_size must be at least 1".into()));
        }
        let largest = self
            .max_key_size
            .checked_add(self.max_value_size)
            .and_then(|kv| kv.checked_add(entry::ENTRY_HEADER_LEN));
        if largest.is_none_or(|len| len > pydb_wal::MAX_PAYLOAD_LEN as usize) {
            return Err(invalid(format!(
                "max_key_size + max_value_size + {} must be at most {} (one log record)",
                entry::ENTRY_HEADER_LEN,
                pydb_wal::MAX_PAYLOAD_LEN
            )));
        }
        if !(self.compaction_threshold > 0.0 && self.compaction_threshold <= 1.0) {
            return Err(invalid("compaction_threshold must be in (0, 1]".into()));
        }
        Ok(())
    }

    /// The active segment `file` wrapped to zero-fill ahead of its end, by
    /// [`LogOptions::preallocate`] bytes at a time, but never more than a
    /// segment; not at all for segments above [`MAX_PREALLOCATED_SEGMENT`],
    /// for files that do not write in place (compressed, encrypted: see
    /// [`FileOpener::writes_in_place`]), or for a log that does not sync
    /// every write.
    pub(crate) fn preallocated<F: File>(
        &self,
        file: F,
        opener: &impl FileOpener,
    ) -> Result<PreallocatedFile<F>> {
        let step = if self.sync_policy == SyncPolicy::Always
            && self.max_segment_size <= MAX_PREALLOCATED_SEGMENT
            && opener.writes_in_place()
        {
            self.preallocate.min(self.max_segment_size)
        } else {
            0
        };
        Ok(PreallocatedFile::new(file, step)?)
    }
}

/// The append-only log engine, generic over the file type (so that tests
/// can inject faults) and over the index (hash map, B-tree, skip list).
pub struct AppendOnlyLogStorage<O = MmapOpener, I = BPlusTreeIndex<Location>>
where
    O: FileOpener + 'static,
    I: Index<Location> + 'static,
{
    shared: Arc<Shared<O, I>>,
    compactor: Option<compaction::Compactor>,
}

impl AppendOnlyLogStorage {
    /// Opens (or creates) the database in `dir` with memory-mapped files
    /// ([`MmapOpener`]: reads copy out of a map, writes use `pwrite`) and
    /// the B-tree index.
    pub fn open(dir: impl AsRef<Path>, options: LogOptions) -> Result<Self> {
        let opener = MmapOpener::lock_dir(dir.as_ref())?;
        Self::open_with(dir, opener, BPlusTreeIndex::new(), options)
    }
}

impl<O, I> AppendOnlyLogStorage<O, I>
where
    O: FileOpener + 'static,
    I: Index<Location> + 'static,
{
    /// Opens (or creates) the database in `dir`, with files from `opener`
    /// and `index` (which should be empty) as the index.
    ///
    /// Fails with an error of kind [`ErrorKind::Locked`] if the directory is
    /// open elsewhere (an opener that holds the directory's lock, like an
    /// [`MmapOpener`], lends it to the engine), and
    /// with a corruption error if the segments are damaged in a way that is
    /// not the torn tail of a crash.
    pub fn open_with(
        dir: impl AsRef<Path>,
        opener: O,
        index: I,
        options: LogOptions,
    ) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        options.validate(&dir)?;
        opener.create_dir_all_durable(&dir)?;
        let lock = DirLock::acquire_for(&opener, &dir)?;
        let segments =
            SegmentedFile::open(opener, &dir, SEGMENT_EXTENSION, options.max_segment_size)?;
        let recovered = recovery::recover(&segments, index, &options)?;
        let shared = Arc::new(Shared {
            dir,
            options,
            segments,
            writer: Mutex::new(recovered.writer),
            index: RwLock::new(recovered.index),
            compaction: Mutex::new(()),
            poisoned: Mutex::new(None),
            compactions: AtomicU64::new(0),
            sealed_segment_syncs: AtomicU64::new(0),
            torn_tails_recovered: AtomicU64::new(recovered.torn_tails),
            torn_bytes: AtomicU64::new(recovered.torn_bytes),
            rolls_cut_short: AtomicU64::new(0),
            open_scanned_bytes: recovered.scanned_bytes,
            _lock: lock,
        });
        for job in recovered.hints {
            shared.write_hint(&job);
        }
        let compactor = shared
            .options
            .background_compaction
            .then(|| compaction::Compactor::start(Arc::clone(&shared)));
        Ok(Self { shared, compactor })
    }

    /// The database directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The options the engine runs with.
    pub fn options(&self) -> &LogOptions {
        &self.shared.options
    }

    /// The ids of the data segments, ascending (the last one is active).
    pub fn segment_ids(&self) -> Vec<u64> {
        self.shared.segments.ids()
    }

    /// The path of data segment `id`.
    pub fn segment_path(&self, id: u64) -> PathBuf {
        self.shared.segments.segment_path(id)
    }

    /// Where the latest record of `key` is, if the key is live.
    pub fn location(&self, key: &[u8]) -> Option<Location> {
        self.shared.index.read().index.get(key).copied()
    }
}

impl<O, I> std::fmt::Debug for AppendOnlyLogStorage<O, I>
where
    O: FileOpener + 'static,
    I: Index<Location> + 'static,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppendOnlyLogStorage")
            .field("dir", &self.shared.dir)
            .field("segments", &self.shared.segments.ids())
            .field("live_keys", &self.shared.index.read().index.len())
            .finish_non_exhaustive()
    }
}

impl<O, I> Drop for AppendOnlyLogStorage<O, I>
where
    O: FileOpener + 'static,
    I: Index<Location> + 'static,
{
    fn drop(&mut self) {
        // Stop compaction first (it holds the shared state), then make
        // whatever the sync policy left in the page cache durable.
        self.compactor.take();
        match self.shared.flush().and_then(|()| self.shared.trim_active()) {
            Ok(()) => self.shared.write_active_hint(),
            Err(err) => tracing::warn!(%err, "sync on close failed"),
        }
    }
}

impl<O, I> StorageEngine for AppendOnlyLogStorage<O, I>
where
    O: FileOpener + 'static,
    I: Index<Location> + 'static,
{
    fn set(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.shared.check_key(key)?;
        self.shared.check_value(value)?;
        self.shared.write(&[Op::Set(key, value)], false).map(drop)
    }

    fn get(&self, key: &[u8]) -> Result<Option<Bytes>> {
        let Some((location, segment)) = self.shared.locate(key)? else {
            return Ok(None);
        };
        read_value(&*segment, &location, key).map(Some)
    }

    fn delete(&self, key: &[u8]) -> Result<bool> {
        self.shared.check_key(key)?;
        self.shared.write(&[Op::Delete(key)], true)
    }

    fn write_batch(&self, batch: &WriteBatch) -> Result<()> {
        let mut ops = Vec::with_capacity(batch.len());
        for op in batch.ops() {
            self.shared.check_key(op.key())?;
            match op {
                BatchOp::Set { key, value } => {
                    self.shared.check_value(value)?;
                    ops.push(Op::Set(key, value));
                }
                BatchOp::Delete { key } => ops.push(Op::Delete(key)),
            }
        }
        if ops.is_empty() {
            return Ok(());
        }
        self.shared.write(&ops, false).map(drop)
    }

    fn first(&self, range: KeyRange) -> Result<Option<(Bytes, Bytes)>> {
        match self.shared.locate_first(&range) {
            None => self.scan(range)?.next().transpose(),
            Some(found) => match found? {
                None => Ok(None),
                Some((key, location, segment)) => {
                    let value = read_value(&*segment, &location, &key)?;
                    Ok(Some((key, value)))
                }
            },
        }
    }

    fn scan(&self, range: KeyRange) -> Result<ScanIter<'_>> {
        Ok(Box::new(scan::LogScan::new(&self.shared, range)))
    }

    fn flush(&self) -> Result<()> {
        self.shared.flush()
    }

    fn compact(&self) -> Result<()> {
        compaction::compact(&self.shared)
    }

    fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// The value is lent from the segment (its map, when the segment is
    /// memory-mapped) after its record's checksum is verified: no copy.
    fn get_with(&self, key: &[u8], visit: &mut dyn FnMut(&[u8])) -> Result<bool> {
        let Some((location, segment)) = self.shared.locate(key)? else {
            return Ok(false);
        };
        visit_value(&*segment, &location, key, visit)?;
        Ok(true)
    }
}

/// One operation of a write, borrowed from the caller.
#[derive(Debug, Clone, Copy)]
enum Op<'a> {
    Set(&'a [u8], &'a [u8]),
    Delete(&'a [u8]),
}

impl<'a> Op<'a> {
    /// The entry this operation appends: kind, key and value.
    fn parts(self) -> (EntryKind, &'a [u8], &'a [u8]) {
        match self {
            Op::Set(key, value) => (EntryKind::Set, key, value),
            Op::Delete(key) => (EntryKind::Delete, key, &[]),
        }
    }

    /// The length of its encoded entry (the record's payload).
    fn entry_len(self) -> usize {
        let (_, key, value) = self.parts();
        entry_len(key.len(), value.len())
    }
}

/// The largest record buffer the writer keeps between writes (see
/// `WriterState::record_buf`); a larger one, grown by a large batch or
/// value, is freed after its write.
const RECORD_BUF_KEPT: usize = 1 << 20;

/// The range of sequence numbers a segment covers: `first..=last`, empty
/// when `last < first`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SeqRange {
    pub first: u64,
    pub last: u64,
}

impl SeqRange {
    fn is_empty(&self) -> bool {
        self.last < self.first
    }

    /// Whether every seq of `other` is in `self` (both non-empty).
    fn contains(&self, other: &SeqRange) -> bool {
        !self.is_empty()
            && !other.is_empty()
            && self.first <= other.first
            && other.last <= self.last
    }
}

/// The writer's state, under the writer mutex.
#[derive(Debug)]
pub(crate) struct WriterState<F: File + 'static> {
    /// The id of the active segment.
    active_id: u64,
    /// The active segment's log writer; cloned out of the lock so that a
    /// writer can wait for its fsync without holding the lock. Its file
    /// zero-fills ahead of the end (see *Preallocation*).
    active: Arc<LogWriter<PreallocatedFile<Arc<F>>>>,
    /// The first seq the active segment covers.
    active_first_seq: u64,
    /// Whether the active segment holds any set or delete.
    active_has_data: bool,
    /// Whether the active segment already ends with its seal: a roll got
    /// the seal in and synced, then could not start the next segment (a
    /// full disk). Nothing may be appended to it; the next write (or
    /// compaction) starts the next segment first. See [`Shared::roll`].
    active_sealed: bool,
    /// The seq the next write gets.
    next_seq: u64,
    /// The sets and deletes of the active segment, for its hint file,
    /// encoded as they are written.
    pending_hint: PendingHint,
    /// Where a write's records are encoded before they are appended, kept
    /// from one write to the next so that a write allocates no buffer
    /// (up to [`RECORD_BUF_KEPT`] bytes of it).
    record_buf: Vec<u8>,
    /// The covered range of every sealed segment.
    sealed: BTreeMap<u64, SeqRange>,
}

/// How much of a segment is data, and how much of that is live.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SegmentUsage {
    /// Bytes of set and delete records in the segment.
    pub data_bytes: u64,
    /// Bytes of the records the index points at.
    pub live_bytes: u64,
}

/// The index and the per-segment usage, under one lock so that they agree.
#[derive(Debug)]
pub(crate) struct IndexState<I> {
    index: I,
    usage: BTreeMap<u64, SegmentUsage>,
}

impl<I: Index<Location>> IndexState<I> {
    /// Points `key` at `location`, keeping the usage counts right.
    fn insert(&mut self, key: Bytes, location: Location) {
        self.usage.entry(location.segment).or_default().live_bytes += u64::from(location.len);
        if let Some(old) = self.index.insert(key, location) {
            self.release(&old);
        }
    }

    /// Removes `key`, keeping the usage counts right.
    fn remove(&mut self, key: &[u8]) -> Option<Location> {
        let old = self.index.remove(key)?;
        self.release(&old);
        Some(old)
    }

    fn release(&mut self, old: &Location) {
        if let Some(usage) = self.usage.get_mut(&old.segment) {
            usage.live_bytes = usage.live_bytes.saturating_sub(u64::from(old.len));
        }
    }
}

/// A hint to write once the locks are released.
#[derive(Debug)]
pub(crate) struct HintJob {
    header: HintHeader,
    entries: PendingHint,
}

/// Everything the engine's threads share.
#[derive(Debug)]
pub(crate) struct Shared<O: FileOpener + 'static, I> {
    dir: PathBuf,
    options: LogOptions,
    segments: SegmentedFile<O>,
    writer: Mutex<WriterState<O::File>>,
    index: RwLock<IndexState<I>>,
    /// Held for the whole of a compaction: one at a time.
    compaction: Mutex<()>,
    /// Why writes are refused, after a failed append or sync.
    poisoned: Mutex<Option<String>>,
    compactions: AtomicU64,
    /// `fdatasync` calls of the segments' writers before the active one
    /// (each segment has its own writer, whose counters start at zero).
    sealed_segment_syncs: AtomicU64,
    torn_tails_recovered: AtomicU64,
    torn_bytes: AtomicU64,
    /// Rolls whose next segment could not be started on a full disk (the
    /// sealed segment stays active until a later write starts it).
    rolls_cut_short: AtomicU64,
    /// Bytes of segments the last open had to scan (not covered by hints).
    open_scanned_bytes: u64,
    _lock: DirLock,
}

impl<O, I> Shared<O, I>
where
    O: FileOpener + 'static,
    I: Index<Location> + 'static,
{
    fn check_key(&self, key: &[u8]) -> Result<()> {
        if key.is_empty() {
            return Err(Error::EmptyKey);
        }
        if key.len() > self.options.max_key_size {
            return Err(Error::KeyTooLarge {
                len: key.len(),
                max: self.options.max_key_size,
            });
        }
        Ok(())
    }

    fn check_value(&self, value: &[u8]) -> Result<()> {
        if value.len() > self.options.max_value_size {
            return Err(Error::ValueTooLarge {
                len: value.len(),
                max: self.options.max_value_size,
            });
        }
        Ok(())
    }

    fn check_poisoned(&self) -> Result<()> {
        match &*self.poisoned.lock() {
            Some(reason) => Err(Error::poisoned(&self.dir, reason.clone())),
            None => Ok(()),
        }
    }

    fn poison(&self, err: &Error) {
        tracing::error!(%err, "log engine poisoned; reopen the database");
        self.poisoned.lock().get_or_insert_with(|| err.to_string());
    }

    /// Judges a failed append: `pydb-wal` cuts a failed append back off the
    /// file, so if the active segment ends exactly where the writer says,
    /// nothing of the batch is on disk or in the index and the engine can
    /// take the next write (a full disk must not need a reopen once space
    /// returns). Anything else (the truncation failed too, or the length
    /// cannot even be read, or the log refused the append because it is
    /// poisoned itself) poisons the engine. Returns `err` for `?`.
    fn poison_unless_rolled_back(&self, writer: &WriterState<O::File>, err: Error) -> Error {
        let log_poisoned = err.kind() == ErrorKind::Poisoned;
        let rolled_back = !log_poisoned
            && writer
                .active
                .file()
                .len()
                .is_ok_and(|len| len == writer.active.end());
        if !rolled_back {
            self.poison(&err);
        }
        err
    }

    /// Runs `f`; if it fails, poisons the engine and returns the error.
    fn poison_on_error<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        f().inspect_err(|err| self.poison(err))
    }

    /// The location and segment of `key`, taken together under the index
    /// read lock so that compaction cannot delete the segment in between.
    fn locate(&self, key: &[u8]) -> Result<Option<(Location, Arc<O::File>)>> {
        let state = self.index.read();
        let Some(location) = state.index.get(key).copied() else {
            return Ok(None);
        };
        let segment = self.segment(&location)?;
        Ok(Some((location, segment)))
    }

    /// The first key in `range` with its location and segment, under one
    /// index read lock (as [`Shared::locate`]); `None` as the outer result
    /// when the index is unordered (hash), which cannot answer it.
    #[expect(clippy::type_complexity, reason = "a private helper's one-off tuple")]
    fn locate_first(
        &self,
        range: &KeyRange,
    ) -> Option<Result<Option<(Bytes, Location, Arc<O::File>)>>> {
        let state = self.index.read();
        if !state.index.is_ordered() {
            return None;
        }
        let (start, end) = range.as_slices();
        let Some((key, location)) = state.index.range(start, end).next() else {
            return Some(Ok(None));
        };
        let location = *location;
        Some(
            self.segment(&location)
                .map(|segment| Some((key.clone(), location, segment))),
        )
    }

    fn segment(&self, location: &Location) -> Result<Arc<O::File>> {
        self.segments.segment(location.segment).ok_or_else(|| {
            Error::corrupted(
                self.segments.segment_path(location.segment),
                location.offset,
                "the index points into a segment that does not exist",
            )
        })
    }

    /// Appends `ops` as one batch and publishes them in the index.
    ///
    /// With `only_if_present` (a single delete), nothing is written if the
    /// key is not in the index, and the result says whether it was: the
    /// check is made under the writer mutex, so two racing deletes of one
    /// key cannot both report that they removed it.
    fn write(&self, ops: &[Op<'_>], only_if_present: bool) -> Result<bool> {
        let batch_len: u64 = ops.iter().map(|op| record_len(op.entry_len())).sum();

        let mut guard = self.writer.lock();
        let writer = &mut *guard;
        self.check_poisoned()?;
        if only_if_present {
            let key = match ops {
                [Op::Delete(key)] => *key,
                _ => {
                    return Err(Error::InvalidDatabase {
                        path: self.dir.clone(),
                        reason: "internal: only_if_present applies to one delete".into(),
                    });
                }
            };
            if self.index.read().index.get(key).is_none() {
                // Every older record of the key is already shadowed by a
                // tombstone: there is nothing to write.
                return Ok(false);
            }
        }
        let sealed_hint = self.roll_if_full(writer, batch_len)?;
        // Each entry is encoded straight into the record buffer, numbered
        // as it goes: one copy of key and value, into the bytes the
        // checksum covers and the file is written from (see *Writes*).
        let first_seq = writer.next_seq;
        let appended =
            writer
                .active
                .append_batch_with(&mut writer.record_buf, ops.len(), |i, out| {
                    let (kind, key, value) = ops[i].parts();
                    encode_entry(first_seq + i as u64, kind, key, value, out);
                });
        // A large batch's buffer is not kept for the next small write.
        if writer.record_buf.capacity() > RECORD_BUF_KEPT {
            writer.record_buf = Vec::new();
        }
        let appended =
            appended.map_err(|err| self.poison_unless_rolled_back(writer, err.into()))?;
        writer.next_seq += ops.len() as u64;
        writer.active_has_data = true;

        let segment = writer.active_id;
        let location_of = |i: usize, offset: u64| Location {
            segment,
            offset,
            len: record_len(ops[i].entry_len()) as u32,
            seq: first_seq + i as u64,
        };
        // The hint entries are encoded before the index lock is taken, so
        // readers do not wait for their checksums.
        let mut offset = appended.start;
        for (i, op) in ops.iter().enumerate() {
            let (kind, key, _) = op.parts();
            let location = location_of(i, offset);
            offset += u64::from(location.len);
            writer
                .pending_hint
                .push(location.seq, kind, key, location.offset, location.len);
        }
        let mut offset = appended.start;
        {
            let mut state = self.index.write();
            state.usage.entry(segment).or_default().data_bytes += batch_len;
            for (i, op) in ops.iter().enumerate() {
                let (kind, key, _) = op.parts();
                let location = location_of(i, offset);
                offset += u64::from(location.len);
                match kind {
                    EntryKind::Set => state.insert(Bytes::copy_from_slice(key), location),
                    _ => {
                        state.remove(key);
                    }
                }
            }
        }
        let active = Arc::clone(&writer.active);
        drop(guard);

        if let Some(job) = sealed_hint {
            self.write_hint(&job);
        }
        if self.options.sync_policy == SyncPolicy::Always {
            // Outside the writer mutex: writers that arrive meanwhile append
            // behind us and share the next fsync (group commit).
            self.poison_on_error(|| Ok(active.sync_to(appended.end)?))?;
        }
        Ok(true)
    }

    /// Rolls the active segment if a batch of `batch_len` bytes would make
    /// it exceed the size limit. A segment without data takes any batch, so
    /// a batch larger than the limit goes alone into a fresh segment.
    fn roll_if_full(
        &self,
        writer: &mut WriterState<O::File>,
        batch_len: u64,
    ) -> Result<Option<HintJob>> {
        if writer.active_sealed {
            return self.roll(writer).map(Some);
        }
        let end = writer.active.end();
        let fits = end
            .checked_add(batch_len)
            .is_some_and(|e| e <= self.options.max_segment_size);
        if fits || !writer.active_has_data {
            return Ok(None);
        }
        self.roll(writer).map(Some)
    }

    /// Seals the active segment and starts a new one. Returns the hint of
    /// the sealed segment, to be written once the writer mutex is released.
    ///
    /// Order matters: the seal entry is synced before the new segment
    /// exists, so a sealed segment on disk is always complete, and a crash
    /// can never leave unsynced data behind a newer segment.
    ///
    /// A roll is two steps, and they fail differently:
    /// 1. [`Shared::seal_active`]: a seal that could not be appended and
    ///    was cut back off leaves the segment as it was (still active,
    ///    unsealed), which fails the write without poisoning. A failure
    ///    after the seal is in the file (its sync) poisons.
    /// 2. [`Shared::start_next_segment`]: creating, preallocating and
    ///    starting the next segment. On a full disk this fails *without*
    ///    poisoning: the sealed segment is complete and synced, the
    ///    half-made next one is removed, and the writer remembers that its
    ///    active segment is sealed (`active_sealed`), so the next write
    ///    tries step 2 again instead of appending behind the seal. A full
    ///    disk thus needs no reopen once space returns, at a roll as on any
    ///    other append. Any other failure in step 2 poisons.
    fn roll(&self, writer: &mut WriterState<O::File>) -> Result<HintJob> {
        if !writer.active_sealed {
            self.seal_active(writer)?;
        }
        self.start_next_segment(writer)
    }

    /// Step 1 of a roll: appends the seal entry to the active segment,
    /// syncs it and cuts the preallocated zeros after it.
    fn seal_active(&self, writer: &mut WriterState<O::File>) -> Result<()> {
        let last_seq = writer.next_seq - 1;
        let mut seal = Vec::new();
        encode_entry(last_seq, EntryKind::Seal, b"", b"", &mut seal);
        writer
            .active
            .append_batch_unsynced(&[&seal])
            .map_err(|err| self.poison_unless_rolled_back(writer, err.into()))?;
        // A write appended behind a seal would make the segment unreadable,
        // so from here on the segment takes nothing more.
        writer.active_sealed = true;
        self.poison_on_error(|| {
            writer.active.sync()?;
            // A sealed segment holds exactly its records: recovery reads a
            // sealed segment as whole, with nothing after its seal.
            writer.active.file().trim()?;
            Ok(())
        })
    }

    /// Step 2 of a roll: creates the next segment and makes it the active
    /// one. A full disk fails this without poisoning (see [`Shared::roll`]).
    fn start_next_segment(&self, writer: &mut WriterState<O::File>) -> Result<HintJob> {
        let mut created = None;
        let started = self
            .segments
            .roll()
            .map_err(Error::from)
            .and_then(|(id, file)| {
                created = Some(id);
                let file = self.options.preallocated(file, self.segments.opener())?;
                Ok((
                    id,
                    start_segment(file, self.options.sync_policy, writer.next_seq)?,
                ))
            });
        let (id, active) = match started {
            Ok(started) => started,
            Err(err) if is_disk_full(&err) => {
                // Nothing of the next segment is needed: remove what was
                // made of it, so that the retry starts from a clean slate
                // and recovery never meets a half-made segment behind the
                // sealed one. A failed removal poisons.
                if let Some(id) = created {
                    self.poison_on_error(|| Ok(self.segments.remove(&[id])?))?;
                }
                self.rolls_cut_short.fetch_add(1, Ordering::Relaxed);
                return Err(err);
            }
            Err(err) => {
                self.poison(&err);
                return Err(err);
            }
        };
        let sealed_id = writer.active_id;
        let sealed_len = writer.active.end();
        let range = SeqRange {
            first: writer.active_first_seq,
            last: writer.next_seq - 1,
        };
        writer.sealed.insert(sealed_id, range);
        self.sealed_segment_syncs
            .fetch_add(writer.active.stats().syncs, Ordering::Relaxed);
        writer.active = Arc::new(active);
        writer.active_id = id;
        writer.active_first_seq = writer.next_seq;
        writer.active_has_data = false;
        writer.active_sealed = false;
        Ok(HintJob {
            header: HintHeader {
                segment_id: sealed_id,
                segment_len: sealed_len,
                first_seq: range.first,
                last_seq: range.last,
            },
            entries: std::mem::take(&mut writer.pending_hint),
        })
    }

    /// Writes a hint file. A failure is only logged: hints are a cache, and
    /// opening rebuilds a missing one from its segment.
    fn write_hint(&self, job: &HintJob) {
        let bytes = job.entries.encode(&job.header);
        if let Err(err) = hint::write_hint_bytes(
            self.segments.opener(),
            &self.dir,
            job.header.segment_id,
            &bytes,
        ) {
            tracing::warn!(%err, segment = job.header.segment_id, "could not write hint file");
        }
    }

    /// Writes a hint for the active segment, on a clean close, so that the
    /// next open reads its keys from the hint instead of scanning its values.
    ///
    /// Called after a successful `flush`: every byte the hint describes is
    /// durable before the hint exists. If the database is opened again and
    /// written to, the segment grows past the length the hint records; the
    /// next open then takes the hinted prefix from the hint and scans only
    /// the rest (see `recovery`), and sealing the segment replaces the hint.
    fn write_active_hint(&self) {
        if self.check_poisoned().is_err() {
            return;
        }
        let job = {
            let mut writer = self.writer.lock();
            if !writer.active_has_data {
                return;
            }
            HintJob {
                header: HintHeader {
                    segment_id: writer.active_id,
                    segment_len: writer.active.end(),
                    first_seq: writer.active_first_seq,
                    last_seq: writer.next_seq - 1,
                },
                entries: std::mem::take(&mut writer.pending_hint),
            }
        };
        self.write_hint(&job);
    }

    fn flush(&self) -> Result<()> {
        let active = Arc::clone(&self.writer.lock().active);
        self.poison_on_error(|| Ok(active.sync()?))
    }

    /// Cuts the zeros preallocated after the active segment's end, on a
    /// clean close: a closed database's files hold exactly their records.
    fn trim_active(&self) -> Result<()> {
        let writer = self.writer.lock();
        self.poison_on_error(|| Ok(writer.active.file().trim()?))
    }

    /// Dead and total bytes, for the compaction trigger and the stats.
    fn garbage(&self) -> (u64, u64) {
        let state = self.index.read();
        let dead = state
            .usage
            .values()
            .map(|u| u.data_bytes.saturating_sub(u.live_bytes))
            .sum();
        drop(state);
        let total = self.segments.total_len().unwrap_or(0);
        (dead, total)
    }

    fn needs_compaction(&self) -> bool {
        let (dead, total) = self.garbage();
        dead >= self.options.compaction_min_dead_bytes
            && total > 0
            && dead as f64 >= self.options.compaction_threshold * total as f64
    }

    fn stats(&self) -> Stats {
        let (live_keys, live_bytes, index_memory) = {
            let state = self.index.read();
            let live: u64 = state.usage.values().map(|u| u.live_bytes).sum();
            (
                state.index.len() as u64,
                live,
                state.index.memory_bytes() as u64,
            )
        };
        let (dead, total) = self.garbage();
        // Read the sealed count under the writer lock, so that a roll
        // between the two reads cannot count a segment twice or not at all.
        let wal_syncs = {
            let writer = self.writer.lock();
            self.sealed_segment_syncs.load(Ordering::Relaxed) + writer.active.stats().syncs
        };
        Stats {
            engine: "log",
            counters: vec![
                ("live_keys", live_keys),
                ("live_bytes", live_bytes),
                ("dead_bytes", dead),
                ("total_bytes", total),
                ("segments", self.segments.len() as u64),
                ("compactions", self.compactions.load(Ordering::Relaxed)),
                // fdatasync calls of the log (group commit shares one
                // among the writers waiting at that moment).
                ("wal_syncs", wal_syncs),
                (
                    "torn_tails_recovered",
                    self.torn_tails_recovered.load(Ordering::Relaxed),
                ),
                ("torn_bytes", self.torn_bytes.load(Ordering::Relaxed)),
                (
                    "rolls_cut_short",
                    self.rolls_cut_short.load(Ordering::Relaxed),
                ),
                ("open_scanned_bytes", self.open_scanned_bytes),
                ("index_memory_bytes", index_memory),
            ],
        }
    }
}

/// Starts a fresh segment: the log file header, then a `begin` entry
/// saying which seq the segment covers from, both synced.
fn start_segment<G: File + 'static>(
    file: G,
    policy: SyncPolicy,
    first_seq: u64,
) -> Result<LogWriter<G>> {
    let writer = LogWriter::new(file, policy)?;
    let mut begin = Vec::new();
    encode_entry(first_seq, EntryKind::Begin, b"", b"", &mut begin);
    writer.append_batch_unsynced(&[&begin])?;
    writer.sync()?;
    Ok(writer)
}

/// Whether `err` says, somewhere in its chain, that the disk is full
/// (`ENOSPC`): the one failure a roll can wait out without poisoning.
fn is_disk_full(err: &Error) -> bool {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(err) = next {
        if err
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::StorageFull)
        {
            return true;
        }
        next = err.source();
    }
    false
}

/// Reads the value at `location` and checks that the record really is the
/// set of `key` with the expected seq: a damaged index or hint can make a
/// read fail, never return another key's or another version's value.
///
/// The record is verified and decoded where it lies (in the segment's map,
/// with the default opener: see *Reads* in the module docs), and only the
/// value is copied out, into the one allocation a read makes.
fn read_value<F: File>(segment: &F, location: &Location, key: &[u8]) -> Result<Bytes> {
    let mut value = Bytes::new();
    visit_value(segment, location, key, &mut |v| {
        value = Bytes::copy_from_slice(v)
    })?;
    Ok(value)
}

/// Calls `visit` with the value of the set record at `location`, borrowed
/// from `segment`, once the record's checksum has been verified and the
/// record is the set of `key` at the location's sequence number. Anything
/// else is corruption, reported with the segment and offset.
fn visit_value<F: File>(
    segment: &F,
    location: &Location,
    key: &[u8],
    visit: &mut dyn FnMut(&[u8]),
) -> Result<()> {
    let checked = pydb_wal::visit_record_exact(
        segment,
        location.offset,
        location.len as usize,
        |_flags, payload| {
            let entry = entry::decode_entry_ref(payload).map_err(|e| e.to_string())?;
            if entry.kind != EntryKind::Set || entry.key != key || entry.seq != location.seq {
                return Err(format!(
                    "expected the set of a key at seq {}, found a {:?} at seq {}",
                    location.seq, entry.kind, entry.seq
                ));
            }
            visit(entry.value);
            Ok(())
        },
    )?;
    checked.map_err(|reason| Error::corrupted(segment.path(), location.offset, reason))
}
