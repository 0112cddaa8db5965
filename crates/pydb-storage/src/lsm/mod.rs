//! `LsmStorage`: the log-structured merge-tree engine (LevelDB, RocksDB,
//! Cassandra, fjall).
//!
//! ## The idea
//!
//! A B+tree updates pages in place: every write is a random write somewhere
//! in the file. An LSM-tree never updates anything in place. Writes go to
//! a sorted buffer in memory (the *memtable*) and to a write-ahead log for
//! durability; when the buffer is full it is written out, sorted, as one
//! immutable file (an *SSTable*) with one sequential write. Reads look at
//! the newest data first and go back in time. Background *compaction*
//! merges tables to keep the number a read must consult small and to drop
//! overwritten and deleted data.
//!
//! ```text
//!   write ──► WAL (NNNNNN.wal, fsync by policy)
//!     │
//!     ▼
//!   memtable (skip list) ──full──► immutable memtable ──flush thread──► L0 table
//!                                                                        │
//!                                       compaction thread: L0 ─► L1 ─► L2 ─► ...
//! ```
//!
//! The trade: writes are cheap and sequential (good for write-heavy
//! loads and for flash), keys need not fit in memory (unlike Bitcask), and
//! reopening reads a small manifest instead of the whole data. The price is
//! paid by reads (several places to look, softened by Bloom filters and a
//! block cache) and by compaction, which rewrites every byte a few times
//! (*write amplification*).
//!
//! ## Sequence numbers and snapshots
//!
//! Every write gets the next sequence number; a batch gets consecutive
//! ones. Entries are never changed, only superseded: a delete writes a
//! *tombstone*, a versioned "no value" (a blind write: it does not need to
//! read the key). A reader at sequence number `s` sees, for each key, the
//! newest version with `seq <= s`. Ordinary reads use the last published
//! number; [`LsmStorage::snapshot`] pins one, and [`LsmStorage::get_at`] /
//! [`LsmStorage::scan_at`] read the database as it was then, however many
//! flushes and compactions run meanwhile (they keep what live snapshots
//! can see).
//!
//! ## Files in the directory
//!
//! - `NNNNNN.wal`: the write-ahead log of one memtable (pydb-wal records).
//! - `NNNNNN.sst`: a table ([`table`]).
//! - `MANIFEST-NNNNNN`: the log of version edits ([`manifest`]).
//! - `CURRENT`: names the live manifest; switched by rename.
//! - `LOCK`: the directory lock.
//!
//! All share one counter of file numbers, so names never collide.
//!
//! ## Invariants that make crashes harmless
//!
//! 1. A write is in the WAL before it is acknowledged (and synced first
//!    with [`SyncPolicy::Always`]). With [`SyncPolicy::Never`], which
//!    promises nothing against a crash, it may instead wait in the WAL
//!    buffer ([`LsmOptions::wal_buffer_size`]), which reaches the WAL
//!    before the memtable is frozen, on `flush` and on close.
//! 2. A table file is complete and synced, and its directory entry synced,
//!    before a manifest edit names it; the edit is synced before the
//!    memtable it came from is dropped and its WAL deleted.
//! 3. Recovery trusts only the manifest named by `CURRENT`: a table no
//!    edit names is an orphan of an interrupted flush or compaction and is
//!    deleted; WALs at or past the manifest's log number are replayed.
//! 4. A table is deleted only once no version lists it (`version.rs`).
//!
//! A clean close (dropping the engine) waits for the frozen memtables'
//! flushes but does not flush the active memtable: its WAL already holds
//! its writes (invariant 1). The next open replays that WAL into a memtable
//! and *adopts* it: the memtable keeps the old WAL as part of its log
//! (`Memtable::older_wals`, covered by the manifest's unchanged log number)
//! and is flushed when full, like any other. So a close and reopen cost one
//! WAL replay and write nothing; writing the memtable out at each close
//! would add up to a memtable's worth of writes that a longer run makes
//! once anyway. Replayed writes larger than one memtable (a crash with
//! frozen memtables) are written to level 0 at open instead.

pub mod block;
pub mod bloom;
mod cache;
mod check;
pub mod compaction;
pub mod manifest;
mod memtable;
pub mod repair;
pub mod table;
mod version;

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::{Condvar, Mutex, RwLock};
use pydb_file::{File, FileOpener, MonolithicOpener};
use pydb_wal::{LogWriter, SyncPolicy};

use crate::engine::{BatchOp, KeyRange, ScanIter, Stats, StorageEngine, WriteBatch};
use crate::{DirLock, Error, Result};

pub use block::decode_block;
pub use check::{DirReport, ManifestReport, describe_manifest, verify_dir};
pub use compaction::CompactionStyle;
pub use manifest::{ManifestState, TableMeta, VersionEdit};
pub use table::{TableProperties, TableReport, describe_table};

use cache::ClockCache;
use compaction::{MergeIter, Pick, Retention, retained, visible};
use manifest::{MAX_LEVELS, manifest_name, read_current, replay_manifest, write_current};
use memtable::{Entry, MemIter, Memtable};
use table::{BlockCache, ReadCounters, TableBuilder, TableOptions};
use version::{Files, TableHandle, Version, table_name};

/// The options of an [`LsmStorage`].
#[derive(Debug, Clone)]
pub struct LsmOptions {
    /// When WAL writes are made durable.
    pub sync_policy: SyncPolicy,
    /// With [`SyncPolicy::Never`], WAL records are gathered in memory up to
    /// this many bytes and handed to the operating system with one write
    /// (a *WAL buffer*, as fjall's journal and RocksDB's `manual_wal_flush`
    /// have). A write then costs no system call, but a crash of the process
    /// (not only of the machine) may lose the writes still in the buffer.
    /// `flush`, a memtable switch and a clean close empty it. 0 writes every
    /// call through. Ignored by the other policies, whose writes must reach
    /// the file to be synced.
    pub wal_buffer_size: usize,
    /// A memtable is frozen and flushed once it holds this many bytes.
    pub memtable_size: usize,
    /// Writes stall while this many frozen memtables wait for their flush.
    pub max_immutable_memtables: usize,
    /// Target size of a data block before compression.
    pub block_size: usize,
    /// Entries between two restart points in a block.
    pub restart_interval: usize,
    /// Bloom filter bits per key.
    pub bloom_bits_per_key: usize,
    /// Whether data blocks are lz4-compressed (when that saves space).
    pub compression: bool,
    /// Leveled or tiered compaction.
    pub style: CompactionStyle,
    /// Level-0 tables (runs, for tiered) that trigger a compaction.
    pub l0_compaction_trigger: usize,
    /// Level-0 tables past which each write is slowed down by 1 ms.
    pub l0_slowdown_trigger: usize,
    /// Level-0 tables past which writes stall until compaction catches up.
    pub l0_stop_trigger: usize,
    /// The target size of level 1 (leveled).
    pub level1_size: u64,
    /// Each level may be this many times larger than the one above.
    pub level_size_ratio: u64,
    /// Compaction outputs are cut at this size (leveled).
    pub target_file_size: u64,
    /// Runs per level that trigger a merge (tiered).
    pub tier_runs: usize,
    /// Bytes over the level targets past which writes slow down.
    pub pending_compaction_slowdown_bytes: u64,
    /// Bytes over the level targets past which writes stall.
    pub pending_compaction_stop_bytes: u64,
    /// The block cache's capacity in bytes.
    pub block_cache_bytes: usize,
    /// How many tables are kept open.
    pub max_open_tables: usize,
    /// The longest key accepted.
    pub max_key_size: usize,
    /// The longest value accepted.
    pub max_value_size: usize,
}

/// The defaults are RocksDB's (`write_buffer_size`, `max_bytes_for_level_base`,
/// `target_file_size_base`, `level0_*_trigger`), which fjall shares for the
/// memtable and table sizes: a large memtable and a large level 1 mean fewer
/// flushes and fewer rewrites of level 1 by level-0 compactions, the main
/// source of write amplification. Tests use much smaller sizes to make
/// flushes and compactions happen.
impl Default for LsmOptions {
    fn default() -> Self {
        Self {
            sync_policy: SyncPolicy::Always,
            wal_buffer_size: 32 << 10,
            memtable_size: 64 << 20,
            max_immutable_memtables: 2,
            block_size: 4096,
            restart_interval: 16,
            bloom_bits_per_key: 10,
            compression: false,
            style: CompactionStyle::Leveled,
            l0_compaction_trigger: 4,
            l0_slowdown_trigger: 8,
            l0_stop_trigger: 12,
            level1_size: 256 << 20,
            level_size_ratio: 10,
            target_file_size: 64 << 20,
            tier_runs: 4,
            pending_compaction_slowdown_bytes: 64 << 30,
            pending_compaction_stop_bytes: 256 << 30,
            block_cache_bytes: 32 << 20,
            max_open_tables: 1024,
            max_key_size: 64 << 10,
            max_value_size: 16 << 20,
        }
    }
}

impl LsmOptions {
    fn validate(&self, dir: &Path) -> Result<()> {
        let invalid = |reason: &str| Error::InvalidDatabase {
            path: dir.to_path_buf(),
            reason: reason.into(),
        };
        if self.max_key_size == 0 {
            return Err(invalid("max_key_size must be at least 1"));
        }
        if self
            .max_key_size
            .saturating_add(self.max_value_size)
            .saturating_add(WAL_ENTRY_HEADER)
            > pydb_wal::MAX_PAYLOAD_LEN as usize
        {
            return Err(invalid("a key and value must fit in one WAL record"));
        }
        if self.memtable_size == 0 || self.block_size == 0 || self.target_file_size == 0 {
            return Err(invalid("sizes must be positive"));
        }
        if self.l0_compaction_trigger == 0
            || self.tier_runs < 2
            || self.max_immutable_memtables == 0
            || self.level_size_ratio < 2
            || self.l0_stop_trigger <= self.l0_compaction_trigger
        {
            return Err(invalid("compaction triggers out of range"));
        }
        Ok(())
    }

    fn table_options(&self) -> TableOptions {
        TableOptions {
            block_size: self.block_size,
            restart_interval: self.restart_interval,
            bloom_bits_per_key: self.bloom_bits_per_key,
            lz4: self.compression,
        }
    }
}

/// WAL record payload header: seq u64 LE, kind u8, key length u32 LE.
const WAL_ENTRY_HEADER: usize = 13;
const KIND_DELETE: u8 = 0;
const KIND_SET: u8 = 1;

fn wal_name(number: u64) -> String {
    format!("{number:06}.wal")
}

fn encode_wal_entry(seq: u64, key: &[u8], value: Option<&[u8]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(WAL_ENTRY_HEADER + key.len() + value.map_or(0, <[u8]>::len));
    out.extend_from_slice(&seq.to_le_bytes());
    out.push(if value.is_some() {
        KIND_SET
    } else {
        KIND_DELETE
    });
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(key);
    if let Some(v) = value {
        out.extend_from_slice(v);
    }
    out
}

/// Decodes one WAL record payload into an entry.
pub fn decode_wal_entry(
    payload: &[u8],
) -> std::result::Result<(u64, Bytes, Option<Bytes>), String> {
    let seq = block::read_u64(payload, 0).ok_or("wal entry cut short")?;
    let kind = *payload.get(8).ok_or("wal entry cut short")?;
    let klen = block::read_u32(payload, 9).ok_or("wal entry cut short")? as usize;
    let kend = WAL_ENTRY_HEADER
        .checked_add(klen)
        .filter(|&e| e <= payload.len())
        .ok_or("wal key past the end")?;
    let key = Bytes::copy_from_slice(&payload[WAL_ENTRY_HEADER..kend]);
    if key.is_empty() {
        return Err("empty key in wal".into());
    }
    let value = match kind {
        KIND_SET => Some(Bytes::copy_from_slice(&payload[kend..])),
        KIND_DELETE if kend == payload.len() => None,
        _ => return Err(format!("bad wal entry kind {kind}")),
    };
    Ok((seq, key, value))
}

/// A pinned sequence number: reads through it see the database as it was
/// when it was taken. Compactions keep what it can see until it is dropped.
#[derive(Debug)]
pub struct Snapshot {
    seq: u64,
    registry: Arc<Mutex<BTreeMap<u64, usize>>>,
}

impl Snapshot {
    /// The sequence number it reads at.
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        let mut r = self.registry.lock();
        if let Some(n) = r.get_mut(&self.seq) {
            *n -= 1;
            if *n == 0 {
                r.remove(&self.seq);
            }
        }
    }
}

/// What readers see: the memtables and the table version, swapped as one.
struct SuperVersion<O: FileOpener> {
    mem: Arc<Memtable>,
    /// Frozen memtables, oldest first. Shared, so that taking a copy of
    /// the super version (every read does) allocates nothing.
    imms: Arc<Vec<Arc<Memtable>>>,
    version: Arc<Version<O>>,
}

impl<O: FileOpener> Clone for SuperVersion<O> {
    fn clone(&self) -> Self {
        Self {
            mem: self.mem.clone(),
            imms: self.imms.clone(),
            version: self.version.clone(),
        }
    }
}

struct WriterState<F: File> {
    wal: Arc<LogWriter<F>>,
    last_seq: u64,
    /// Encoded WAL entries not yet handed to `wal` (the WAL buffer, only
    /// with [`SyncPolicy::Never`]); their writes are already in the
    /// memtable.
    buffered: Vec<Vec<u8>>,
    /// The bytes of `buffered`.
    buffered_bytes: usize,
}

struct ManifestWriter<F: File> {
    log: LogWriter<F>,
    state: ManifestState,
}

#[derive(Default)]
struct Counters {
    user_bytes: AtomicU64,
    wal_bytes: AtomicU64,
    bytes_flushed: AtomicU64,
    bytes_compacted: AtomicU64,
    compaction_read_bytes: AtomicU64,
    flushes: AtomicU64,
    compactions: AtomicU64,
    stalls: AtomicU64,
    stall_micros: AtomicU64,
    slowdowns: AtomicU64,
    gets: AtomicU64,
}

/// The kind of the first I/O error in `err`'s chain of sources.
fn io_kind(err: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    let mut next = Some(err);
    while let Some(err) = next {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        next = err.source();
    }
    None
}

#[derive(Default)]
struct BgState {
    shutdown: bool,
    /// Background jobs finished, failed or not: a writer that found an
    /// error waits for the next one, a retry, before giving up.
    attempts: u64,
    /// The last background failure, cleared when a retry succeeds: its
    /// message, and the kind of the I/O error under it if there was one
    /// (so that a writer is told "disk full" as the flush was).
    error: Option<(String, Option<std::io::ErrorKind>)>,
}

struct Shared<O: FileOpener + 'static> {
    opts: LsmOptions,
    dir: PathBuf,
    files: Arc<Files<O>>,
    writer: Mutex<WriterState<O::File>>,
    sv: RwLock<SuperVersion<O>>,
    visible_seq: AtomicU64,
    next_file: AtomicU64,
    manifest: Mutex<ManifestWriter<O::File>>,
    snapshots: Arc<Mutex<BTreeMap<u64, usize>>>,
    bg: Mutex<BgState>,
    /// Wakes the background threads.
    work: Condvar,
    /// Wakes stalled writers and waiters after a flush or compaction.
    done: Condvar,
    /// One compaction at a time (background or manual).
    compacting: Mutex<()>,
    poisoned: Mutex<Option<String>>,
    counters: Counters,
    /// Round-robin compaction pointer per level (leveled): the last key
    /// compacted.
    compact_pointer: Mutex<Vec<Option<Bytes>>>,
}

/// The LSM-tree engine. See the module docs.
pub struct LsmStorage<O: FileOpener + 'static = MonolithicOpener> {
    shared: Arc<Shared<O>>,
    threads: Vec<JoinHandle<()>>,
    _lock: DirLock,
}

impl LsmStorage {
    /// Opens (or creates) the database in `dir` with plain files.
    pub fn open(dir: impl AsRef<Path>, options: LsmOptions) -> Result<Self> {
        Self::open_with(dir, MonolithicOpener, options)
    }
}

impl<O: FileOpener + 'static> std::fmt::Debug for LsmStorage<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LsmStorage")
            .field("dir", &self.shared.dir)
            .field("last_seq", &self.shared.visible_seq.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// The number in a file name like `000012.sst` or `MANIFEST-000003`.
fn file_number(name: &str) -> Option<(u64, &'static str)> {
    if let Some(n) = name.strip_prefix("MANIFEST-") {
        return n.parse().ok().map(|n| (n, "manifest"));
    }
    let (stem, ext) = name.split_once('.')?;
    let n = stem.parse().ok()?;
    match ext {
        "sst" => Some((n, "sst")),
        "wal" => Some((n, "wal")),
        _ => None,
    }
}

/// A directory without `CURRENT` is a new database, unless it holds data:
/// a table, or a WAL with a record in it. (A first open writes its WAL and
/// manifest before `CURRENT`, but no write reaches the WAL before `CURRENT`
/// exists.) Opening that as an empty database would delete every table as
/// an orphan; it is damage, reported as such (`pydb repair` salvages it).
fn refuse_lost_current<O: FileOpener>(opener: &O, dir: &Path, names: &[String]) -> Result<()> {
    for name in names {
        let holds_data = match file_number(name) {
            Some((_, "sst")) => true,
            Some((_, "wal")) => {
                let file = opener.open(&dir.join(name), false)?;
                let report = pydb_wal::verify::verify_file(&file)?;
                report.records > 0 || !report.damage.is_empty()
            }
            _ => false,
        };
        if holds_data {
            return Err(Error::corrupted(
                dir.join(manifest::CURRENT),
                0,
                format!("CURRENT is missing, but the directory holds data ({name})"),
            ));
        }
    }
    Ok(())
}

impl<O: FileOpener + 'static> LsmStorage<O> {
    /// Opens (or creates) the database in `dir`, every file through
    /// `opener`: reads `CURRENT`, replays the manifest, replays the WALs
    /// into a memtable and writes it as a level-0 table, starts a new WAL
    /// and a new manifest, and deletes what no manifest names.
    pub fn open_with(dir: impl AsRef<Path>, opener: O, options: LsmOptions) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        options.validate(&dir)?;
        opener.create_dir_all_durable(&dir)?;
        let lock = DirLock::acquire_for(&opener, &dir)?;
        let names: Vec<String> = opener
            .list_dir(&dir)?
            .into_iter()
            .filter_map(|n| n.into_string().ok())
            .collect();
        let mut state = match read_current(&opener, &dir)? {
            Some(n) => {
                let file = opener.open(&dir.join(manifest_name(n)), false)?;
                replay_manifest(&file, true)?
            }
            None => {
                refuse_lost_current(&opener, &dir, &names)?;
                ManifestState::new()
            }
        };
        let max_seen = names
            .iter()
            .filter_map(|n| file_number(n))
            .map(|(n, _)| n)
            .max();
        let next_file = state.next_file.max(max_seen.map_or(1, |m| m + 1)).max(1);
        let files = Arc::new(Files {
            opener,
            dir: dir.clone(),
            tables: ClockCache::new(options.max_open_tables),
            blocks: Arc::new(BlockCache::new(options.block_cache_bytes)),
            counters: Arc::new(ReadCounters::default()),
        });
        let shared_counters = Counters::default();
        let next_file = AtomicU64::new(next_file);

        // Every table the manifest names must open and match its size.
        for meta in state.levels.iter().flat_map(|l| l.values()) {
            files.table(meta)?;
        }

        // Replay the WALs the manifest does not cover, oldest first.
        let mut wals: Vec<u64> = names
            .iter()
            .filter_map(|n| file_number(n))
            .filter(|(n, kind)| *kind == "wal" && *n >= state.log_number)
            .map(|(n, _)| n)
            .collect();
        wals.sort_unstable();
        // The new WAL's number comes first: the replayed writes may stay in
        // the memtable it logs.
        let wal_number = next_file.fetch_add(1, Ordering::SeqCst);
        let mut recovered = Memtable::new(wal_number, options.memtable_size);
        let mut last_seq = state.last_seq;
        for number in &wals {
            let path = dir.join(wal_name(*number));
            let file = files.opener.open(&path, false)?;
            let mut scanner = pydb_wal::Scanner::new(&file)?;
            while let Some(batch) = scanner.next_batch()? {
                for record in batch {
                    let (seq, key, value) = decode_wal_entry(&record.payload)
                        .map_err(|r| Error::corrupted(&path, record.offset, r))?;
                    last_seq = last_seq.max(seq);
                    recovered.insert(key, seq, value);
                }
            }
            scanner.truncate_torn_tail()?;
            // Writes of an unsynced policy may be only in the page cache
            // (a process crash, not a power cut): the memtable may adopt
            // this WAL, so it must now be as durable as a flushed table.
            file.sync_data()?;
        }
        let tiered = options.style == CompactionStyle::Tiered;
        let tmp_shared_for_build = Builder {
            files: &files,
            opts: &options,
            next_file: &next_file,
        };
        // Replayed writes that fit one memtable stay in it, and their WALs
        // stay on disk as its log (the manifest's log number still covers
        // them), so a close and reopen writes no table. More than that is
        // written to level 0 now, as a crash with frozen memtables leaves.
        let adopt = !recovered.is_empty() && recovered.size() < options.memtable_size;
        let mem = if adopt {
            recovered.older_wals = wals.clone();
            recovered
        } else if recovered.is_empty() {
            recovered
        } else {
            let entries = Arc::new(recovered).entries().map(Ok);
            let metas = tmp_shared_for_build.build_tables(entries, false)?;
            let edit = VersionEdit {
                added: metas.into_iter().map(|m| (0, m)).collect(),
                last_seq: Some(last_seq),
                ..VersionEdit::default()
            };
            state.apply(&edit).map_err(|r| Error::InvalidDatabase {
                path: dir.clone(),
                reason: r,
            })?;
            Memtable::new(wal_number, options.memtable_size)
        };

        // A new WAL, then a new manifest holding the whole state.
        let wal_file = files.opener.open(&dir.join(wal_name(wal_number)), true)?;
        wal_file.set_len(0)?;
        let wal = Arc::new(LogWriter::new(wal_file, options.sync_policy)?);
        let manifest_number = next_file.fetch_add(1, Ordering::SeqCst);
        let manifest_file = files
            .opener
            .open(&dir.join(manifest_name(manifest_number)), true)?;
        manifest_file.set_len(0)?;
        let manifest_log = LogWriter::new(manifest_file, SyncPolicy::Always)?;
        if !adopt {
            state.log_number = wal_number;
        }
        state.next_file = next_file.load(Ordering::SeqCst);
        state.last_seq = state.last_seq.max(last_seq);
        manifest_log.append(&state.snapshot_edit().encode())?;
        files.opener.sync_dir(&dir)?;
        write_current(&files.opener, &dir, manifest_number)?;

        // Build the version, then delete what it does not name.
        let mut version = Version::empty(tiered);
        for (level, tables) in state.levels.iter().enumerate() {
            for meta in tables.values() {
                version.levels[level].push(Arc::new(TableHandle::new(meta.clone(), files.clone())));
            }
        }
        version.sort();
        let live: std::collections::HashSet<u64> = version.numbers().into_iter().collect();
        let names_now: Vec<String> = files
            .opener
            .list_dir(&dir)?
            .into_iter()
            .filter_map(|n| n.into_string().ok())
            .collect();
        for name in &names_now {
            let obsolete = match file_number(name) {
                Some((n, "sst")) => !live.contains(&n),
                Some((n, "wal")) => n != wal_number && !mem.older_wals.contains(&n),
                Some((n, _)) => n != manifest_number,
                None => name == "CURRENT.tmp",
            };
            if obsolete {
                files.opener.remove(&dir.join(name))?;
            }
        }

        let shared = Arc::new(Shared {
            dir,
            files,
            writer: Mutex::new(WriterState {
                wal,
                last_seq: state.last_seq,
                buffered: Vec::new(),
                buffered_bytes: 0,
            }),
            sv: RwLock::new(SuperVersion {
                mem: Arc::new(mem),
                imms: Arc::new(Vec::new()),
                version: Arc::new(version),
            }),
            visible_seq: AtomicU64::new(state.last_seq),
            next_file,
            manifest: Mutex::new(ManifestWriter {
                log: manifest_log,
                state,
            }),
            snapshots: Arc::new(Mutex::new(BTreeMap::new())),
            bg: Mutex::new(BgState::default()),
            work: Condvar::new(),
            done: Condvar::new(),
            compacting: Mutex::new(()),
            poisoned: Mutex::new(None),
            counters: shared_counters,
            compact_pointer: Mutex::new(vec![None; MAX_LEVELS]),
            opts: options,
        });
        // Leveled reads assume one sorted run per level below 0. A directory
        // last compacted as tiered may have several: merge them first, before
        // any reader or background thread runs.
        let needs_merge = shared.opts.style == CompactionStyle::Leveled
            && shared.sv.read().version.has_overlapping_runs();
        if needs_merge {
            // Not `compact_all`: no flush thread runs yet to flush an
            // adopted memtable, and the merge does not need it flushed.
            shared.merge_all_tables()?;
        }
        let mut threads = Vec::new();
        for job in [Job::Flush, Job::Compact] {
            let s = shared.clone();
            let name = match job {
                Job::Flush => "pydb-lsm-flush",
                Job::Compact => "pydb-lsm-compact",
            };
            let handle = std::thread::Builder::new()
                .name(name.into())
                .spawn(move || s.background(job))
                .map_err(|e| pydb_file::Error::io(Path::new(name), e))?;
            threads.push(handle);
        }
        Ok(Self {
            shared,
            threads,
            _lock: lock,
        })
    }

    /// The database directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Pins the current state: reads through the snapshot see it until the
    /// snapshot is dropped.
    pub fn snapshot(&self) -> Snapshot {
        let mut r = self.shared.snapshots.lock();
        let seq = self.shared.visible_seq.load(Ordering::Acquire);
        *r.entry(seq).or_insert(0) += 1;
        Snapshot {
            seq,
            registry: self.shared.snapshots.clone(),
        }
    }

    /// The value of `key` as of `snapshot`.
    pub fn get_at(&self, key: &[u8], snapshot: &Snapshot) -> Result<Option<Bytes>> {
        self.shared.get(key, snapshot.seq)
    }

    /// The keys in `range` as of `snapshot`.
    pub fn scan_at(&self, range: KeyRange, snapshot: &Snapshot) -> Result<ScanIter<'_>> {
        self.shared.scan(range, snapshot.seq)
    }

    /// The last sequence number given to a write.
    pub fn last_seq(&self) -> u64 {
        self.shared.visible_seq.load(Ordering::Acquire)
    }

    /// Freezes the memtable and waits until every frozen memtable is a
    /// level-0 table.
    pub fn flush_memtable(&self) -> Result<()> {
        self.shared.flush_memtable()
    }

    /// Waits until no background compaction is due.
    pub fn wait_for_compactions(&self) -> Result<()> {
        loop {
            self.shared.check_bg_error_for_wait()?;
            let pending = {
                let sv = self.shared.sv.read();
                !sv.imms.is_empty() || self.shared.pick(&sv.version).is_some()
            };
            if !pending {
                // The compaction thread may still be installing its result.
                let _c = self.shared.compacting.lock();
                let sv = self.shared.sv.read();
                if sv.imms.is_empty() && self.shared.pick(&sv.version).is_none() {
                    return Ok(());
                }
                continue;
            }
            self.shared.work.notify_all();
            let mut bg = self.shared.bg.lock();
            self.shared
                .done
                .wait_for(&mut bg, Duration::from_millis(10));
        }
    }

    /// The manifest state (tables per level): for inspection and tests.
    pub fn manifest_state(&self) -> ManifestState {
        self.shared.manifest.lock().state.clone()
    }

    /// The number of tables per level.
    pub fn level_files(&self) -> Vec<usize> {
        self.shared
            .sv
            .read()
            .version
            .levels
            .iter()
            .map(Vec::len)
            .collect()
    }
}

#[derive(Clone, Copy)]
enum Job {
    Flush,
    Compact,
}

/// Builds tables: shared by recovery (before the engine exists) and by
/// flushes and compactions.
struct Builder<'a, O: FileOpener> {
    files: &'a Files<O>,
    opts: &'a LsmOptions,
    next_file: &'a AtomicU64,
}

impl<O: FileOpener> Builder<'_, O> {
    /// Writes `entries` (table order) into one table, or several cut at the
    /// target size between keys when `split`. Every file is synced, and the
    /// directory too, before this returns.
    fn build_tables(
        &self,
        entries: impl Iterator<Item = Result<Entry>>,
        split: bool,
    ) -> Result<Vec<TableMeta>> {
        let mut created: Vec<u64> = Vec::new();
        let result = self.build_inner(entries, split, &mut created);
        match result {
            Ok(metas) => {
                self.files.opener.sync_dir(&self.files.dir)?;
                Ok(metas)
            }
            Err(e) => {
                for n in created {
                    let _ = self.files.opener.remove(&self.files.path(&table_name(n)));
                }
                Err(e)
            }
        }
    }

    fn build_inner(
        &self,
        entries: impl Iterator<Item = Result<Entry>>,
        split: bool,
        created: &mut Vec<u64>,
    ) -> Result<Vec<TableMeta>> {
        let mut metas = Vec::new();
        let mut current: Option<(u64, TableBuilder<O::File>)> = None;
        for e in entries {
            let e = e?;
            if let Some((_, b)) = &current
                && split
                && b.estimated_len() >= self.opts.target_file_size
                && !b.last_key_is(&e.key)
                && let Some((n, b)) = current.take()
            {
                metas.push(Self::finish(n, b)?);
            }
            if current.is_none() {
                let n = self.next_file.fetch_add(1, Ordering::SeqCst);
                created.push(n);
                let file = self
                    .files
                    .opener
                    .open(&self.files.path(&table_name(n)), true)?;
                file.set_len(0)?;
                current = Some((n, TableBuilder::new(file, self.opts.table_options())));
            }
            if let Some((_, b)) = &mut current {
                b.add(&e)?;
            }
        }
        if let Some((n, b)) = current.take()
            && b.entries() > 0
        {
            metas.push(Self::finish(n, b)?);
        }
        Ok(metas)
    }

    fn finish(number: u64, b: TableBuilder<O::File>) -> Result<TableMeta> {
        let (_, props, size) = b.finish()?;
        Ok(TableMeta {
            number,
            size,
            entries: props.entries,
            min_seq: props.min_seq,
            max_seq: props.max_seq,
            smallest: props.smallest,
            largest: props.largest,
        })
    }
}

impl<O: FileOpener + 'static> Shared<O> {
    fn builder(&self) -> Builder<'_, O> {
        Builder {
            files: &self.files,
            opts: &self.opts,
            next_file: &self.next_file,
        }
    }

    fn check_poisoned(&self) -> Result<()> {
        match &*self.poisoned.lock() {
            Some(reason) => Err(Error::poisoned(&self.dir, reason.clone())),
            None => Ok(()),
        }
    }

    fn poison(&self, err: &Error) {
        self.poisoned.lock().get_or_insert_with(|| err.to_string());
    }

    fn current(&self) -> SuperVersion<O> {
        self.sv.read().clone()
    }

    fn check_limits(&self, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        if key.is_empty() {
            return Err(Error::EmptyKey);
        }
        if key.len() > self.opts.max_key_size {
            return Err(Error::KeyTooLarge {
                len: key.len(),
                max: self.opts.max_key_size,
            });
        }
        if let Some(v) = value
            && v.len() > self.opts.max_value_size
        {
            return Err(Error::ValueTooLarge {
                len: v.len(),
                max: self.opts.max_value_size,
            });
        }
        Ok(())
    }

    // ---- the read path -------------------------------------------------

    fn get(&self, key: &[u8], seq: u64) -> Result<Option<Bytes>> {
        self.counters.gets.fetch_add(1, Ordering::Relaxed);
        // One hash serves every memtable's filter and every table's.
        let key_hash = bloom::hash(key);
        // The memtables are searched under the super version's read lock (a
        // memtable search does no I/O and waits for nothing but one insert),
        // so a read that ends there clones no `Arc`. Only the table version
        // is taken out of the lock, because reading a table may wait for
        // the disk and must not hold up a flush that swaps the version.
        let version = {
            let sv = self.sv.read();
            if let Some(v) = sv.mem.get(key, key_hash, seq) {
                return Ok(v);
            }
            for imm in sv.imms.iter().rev() {
                if let Some(v) = imm.get(key, key_hash, seq) {
                    return Ok(v);
                }
            }
            sv.version.clone()
        };
        Ok(version.get(key, key_hash, seq, &self.files)?.flatten())
    }

    fn scan(&self, range: KeyRange, seq: u64) -> Result<ScanIter<'_>> {
        let sv = self.current();
        let mut sources: Vec<Box<dyn Iterator<Item = Result<Entry>> + Send>> = Vec::new();
        for mem in std::iter::once(&sv.mem).chain(sv.imms.iter().rev()) {
            sources.push(Box::new(
                MemIter::new(mem.clone(), range.start.clone(), range.end.clone()).map(Ok),
            ));
        }
        sources.extend(sv.version.iters(&range.start, &range.end, &self.files)?);
        let version = sv.version.clone();
        let iter = visible(MergeIter::new(sources), seq);
        // The version travels with the iterator: its tables stay on disk
        // until the scan is dropped.
        Ok(Box::new(iter.inspect(move |_| {
            let _pin = &version;
        })))
    }

    // ---- the write path ------------------------------------------------

    /// Applies `ops` atomically. With `only_if_present`, the single op is a
    /// delete that is skipped (returning false) when the key has no value.
    /// The ops are moved into the memtable, not cloned: a clone of a
    /// `Bytes` made from a `Vec` allocates its shared header.
    fn write(&self, ops: Vec<(Bytes, Option<Bytes>)>, only_if_present: bool) -> Result<bool> {
        self.check_poisoned()?;
        for (k, v) in &ops {
            self.check_limits(k, v.as_deref())?;
        }
        if ops.is_empty() {
            return Ok(true);
        }
        self.throttle();
        let mut w = self.writer.lock();
        self.check_poisoned()?;
        if only_if_present {
            let seq = self.visible_seq.load(Ordering::Acquire);
            if self.get(&ops[0].0, seq)?.is_none() {
                return Ok(false);
            }
        }
        self.make_room(&mut w)?;
        let first = w.last_seq + 1;
        let mut payloads: Vec<Vec<u8>> = ops
            .iter()
            .enumerate()
            .map(|(i, (k, v))| encode_wal_entry(first + i as u64, k, v.as_deref()))
            .collect();
        let wal = w.wal.clone();
        let buffer = self.opts.sync_policy == SyncPolicy::Never && self.opts.wal_buffer_size > 0;
        let appended = if buffer {
            // The WAL buffer: the entries wait in memory and go to the file
            // with the ones after them, in order, once the buffer is full.
            w.buffered_bytes += payloads.iter().map(|p| p.len()).sum::<usize>();
            w.buffered.append(&mut payloads);
            if w.buffered_bytes >= self.opts.wal_buffer_size {
                self.drain_wal_buffer(&mut w)?;
            }
            None
        } else {
            let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
            Some(wal.append_batch_unsynced(&refs).inspect_err(|e| {
                if e.kind() == pydb_wal::ErrorKind::Poisoned {
                    self.poisoned.lock().get_or_insert_with(|| e.to_string());
                }
            })?)
        };
        let mem = self.sv.read().mem.clone();
        let mut user_bytes = 0;
        let count = ops.len() as u64;
        for (seq, (k, v)) in (first..).zip(ops) {
            user_bytes += k.len() + v.as_ref().map_or(0, Bytes::len);
            mem.insert(k, seq, v);
        }
        w.last_seq = first + count - 1;
        self.visible_seq.store(w.last_seq, Ordering::Release);
        drop(w);
        self.counters
            .user_bytes
            .fetch_add(user_bytes as u64, Ordering::Relaxed);
        let Some(appended) = appended else {
            return Ok(true);
        };
        self.counters
            .wal_bytes
            .fetch_add(appended.end - appended.start, Ordering::Relaxed);
        if self.opts.sync_policy == SyncPolicy::Always {
            // Group commit: concurrent writers share one fdatasync.
            wal.sync_to(appended.end).map_err(|e| {
                let e = Error::from(e);
                self.poison(&e);
                e
            })?;
        }
        Ok(true)
    }

    /// Hands the WAL buffer to the WAL file with one write (one batch of
    /// records: a torn tail loses the whole group, none of which was
    /// promised durable). The writes in it were acknowledged and are in the
    /// memtable, so a failure here poisons the engine: it must not go on
    /// acknowledging writes while earlier ones are missing from the WAL.
    fn drain_wal_buffer(&self, w: &mut WriterState<O::File>) -> Result<()> {
        if w.buffered.is_empty() {
            return Ok(());
        }
        let refs: Vec<&[u8]> = w.buffered.iter().map(Vec::as_slice).collect();
        let appended = w.wal.append_batch_unsynced(&refs).map_err(|e| {
            let e = Error::from(e);
            self.poison(&e);
            e
        })?;
        w.buffered.clear();
        w.buffered_bytes = 0;
        self.counters
            .wal_bytes
            .fetch_add(appended.end - appended.start, Ordering::Relaxed);
        Ok(())
    }

    /// Level-0 files and bytes over the level targets.
    fn pressure(&self) -> (usize, u64) {
        let sv = self.sv.read();
        let sizes = sv.version.level_sizes();
        let mut pending = 0u64;
        if sizes[0].0 >= self.opts.l0_compaction_trigger {
            pending += sizes[0].1;
        }
        for (level, (_, bytes)) in sizes.iter().enumerate().skip(1) {
            pending += bytes.saturating_sub(self.level_target(level));
        }
        (sizes[0].0, pending)
    }

    /// Slows a write down by 1 ms when level 0 or the compaction debt is
    /// past the slowdown mark, so compaction can catch up before a stall.
    fn throttle(&self) {
        let (l0, pending) = self.pressure();
        if l0 >= self.opts.l0_slowdown_trigger
            || pending >= self.opts.pending_compaction_slowdown_bytes
        {
            self.counters.slowdowns.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Makes sure the memtable has room, freezing it when full; stalls
    /// while level 0 is at the stop mark or the frozen memtables wait.
    fn make_room(&self, w: &mut WriterState<O::File>) -> Result<()> {
        let mut stalled: Option<Instant> = None;
        let result = loop {
            let (l0, pending) = self.pressure();
            let (mem_size, imms) = {
                let sv = self.sv.read();
                (sv.mem.size(), sv.imms.len())
            };
            let must_wait = l0 >= self.opts.l0_stop_trigger
                || pending >= self.opts.pending_compaction_stop_bytes
                || (mem_size >= self.opts.memtable_size
                    && imms >= self.opts.max_immutable_memtables);
            if must_wait {
                if stalled.is_none() {
                    stalled = Some(Instant::now());
                    self.counters.stalls.fetch_add(1, Ordering::Relaxed);
                }
                if let Err(e) = self.check_bg_error_for_wait() {
                    break Err(e);
                }
                self.work.notify_all();
                let mut bg = self.bg.lock();
                self.done.wait_for(&mut bg, Duration::from_millis(10));
                continue;
            }
            if mem_size >= self.opts.memtable_size {
                break self.rotate(w);
            }
            break Ok(());
        };
        if let Some(t) = stalled {
            self.counters
                .stall_micros
                .fetch_add(t.elapsed().as_micros() as u64, Ordering::Relaxed);
        }
        result
    }

    /// A background failure reported to a writer that would otherwise wait
    /// for the background thread forever.
    ///
    /// A failure may be over (a full disk with space again), so the writer
    /// first asks for one more attempt and waits for it, briefly.
    fn check_bg_error_for_wait(&self) -> Result<()> {
        self.check_poisoned()?;
        let mut bg = self.bg.lock();
        if bg.error.is_some() {
            let seen = bg.attempts;
            self.work.notify_all();
            let deadline = Instant::now() + Duration::from_millis(200);
            while bg.attempts == seen && !bg.shutdown {
                if self.done.wait_until(&mut bg, deadline).timed_out() {
                    break;
                }
            }
        }
        match &bg.error {
            Some((reason, Some(kind))) => Err(Error::File(pydb_file::Error::io(
                self.dir.clone(),
                std::io::Error::new(*kind, format!("background work is failing: {reason}")),
            ))),
            Some((reason, None)) => Err(Error::InvalidDatabase {
                path: self.dir.clone(),
                reason: format!("background work is failing: {reason}"),
            }),
            None => Ok(()),
        }
    }

    /// Freezes the memtable: a new WAL (created and its directory entry
    /// synced), the old WAL synced (so no later write can be durable while
    /// an earlier one is not), and a new empty memtable.
    fn rotate(&self, w: &mut WriterState<O::File>) -> Result<()> {
        let number = self.next_file.fetch_add(1, Ordering::SeqCst);
        let path = self.dir.join(wal_name(number));
        let created = (|| {
            let file = self.files.opener.open(&path, true)?;
            file.set_len(0)?;
            let wal = LogWriter::new(file, self.opts.sync_policy)?;
            self.files.opener.sync_dir(&self.dir)?;
            Ok::<_, Error>(wal)
        })();
        let wal = match created {
            Ok(wal) => wal,
            Err(e) => {
                let _ = self.files.opener.remove(&path);
                return Err(e);
            }
        };
        self.drain_wal_buffer(w)?;
        w.wal.sync().map_err(|e| {
            let e = Error::from(e);
            self.poison(&e);
            e
        })?;
        w.wal = Arc::new(wal);
        {
            let mut sv = self.sv.write();
            let old = std::mem::replace(
                &mut sv.mem,
                Arc::new(Memtable::new(number, self.opts.memtable_size)),
            );
            Arc::make_mut(&mut sv.imms).push(old);
        }
        self.work.notify_all();
        Ok(())
    }

    fn flush_memtable(&self) -> Result<()> {
        {
            let mut w = self.writer.lock();
            self.check_poisoned()?;
            if !self.sv.read().mem.is_empty() {
                self.rotate(&mut w)?;
            }
        }
        self.wait_for_frozen()
    }

    /// Waits until every frozen memtable is flushed.
    fn wait_for_frozen(&self) -> Result<()> {
        loop {
            if self.sv.read().imms.is_empty() {
                return Ok(());
            }
            self.check_bg_error_for_wait()?;
            self.work.notify_all();
            let mut bg = self.bg.lock();
            self.done.wait_for(&mut bg, Duration::from_millis(10));
        }
    }

    // ---- background work -----------------------------------------------

    fn background(&self, job: Job) {
        loop {
            {
                let mut bg = self.bg.lock();
                if bg.shutdown {
                    return;
                }
                self.work.wait_for(&mut bg, Duration::from_millis(50));
                if bg.shutdown {
                    return;
                }
            }
            if self.poisoned.lock().is_some() {
                continue;
            }
            let result = match job {
                Job::Flush => self.flush_all(),
                Job::Compact => self.compact_due(),
            };
            let mut bg = self.bg.lock();
            bg.attempts += 1;
            match result {
                Ok(()) => {
                    bg.error = None;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "background lsm work failed; will retry");
                    bg.error = Some((e.to_string(), io_kind(&e)));
                    if e.kind() == crate::ErrorKind::Poisoned {
                        self.poison(&e);
                    }
                }
            }
            drop(bg);
            self.done.notify_all();
        }
    }

    /// Flushes every frozen memtable, oldest first.
    fn flush_all(&self) -> Result<()> {
        loop {
            let Some(imm) = self.sv.read().imms.first().cloned() else {
                return Ok(());
            };
            self.flush_one(&imm)?;
            self.work.notify_all();
            self.done.notify_all();
        }
    }

    fn live_snapshots(&self) -> Vec<u64> {
        self.snapshots.lock().keys().copied().collect()
    }

    fn flush_one(&self, imm: &Arc<Memtable>) -> Result<()> {
        let retention = Retention::new(self.live_snapshots(), false);
        let entries = retained(imm.entries().map(Ok), retention);
        let metas = self.builder().build_tables(entries, false)?;
        let flushed: u64 = metas.iter().map(|m| m.size).sum();
        let next_log = {
            let sv = self.sv.read();
            sv.imms.get(1).unwrap_or(&sv.mem).wal_number
        };
        let edit = VersionEdit {
            log_number: Some(next_log),
            next_file: Some(self.next_file.load(Ordering::SeqCst)),
            last_seq: metas.iter().map(|m| m.max_seq).max(),
            added: metas.iter().map(|m| (0, m.clone())).collect(),
            deleted: Vec::new(),
        };
        self.log_and_apply(&edit, Some(imm))?;
        self.counters
            .bytes_flushed
            .fetch_add(flushed, Ordering::Relaxed);
        self.counters.flushes.fetch_add(1, Ordering::Relaxed);
        // A removal undone by a power cut leaves a WAL below the log
        // number: the next open deletes it without reading it.
        for number in imm.older_wals.iter().chain([&imm.wal_number]) {
            let wal = self.dir.join(wal_name(*number));
            if let Err(e) = self.files.opener.remove(&wal) {
                tracing::warn!(file = %wal.display(), error = %e, "cannot delete flushed wal");
            }
        }
        Ok(())
    }

    /// Appends `edit` to the manifest (synced), then installs the new
    /// version, dropping the flushed memtable in the same step.
    ///
    /// If the append fails, the tables written for the edit stay on disk:
    /// a failed sync may still have made the edit durable, and deleting
    /// tables it names would lose data. The next open deletes them if no
    /// manifest names them.
    ///
    /// A failed manifest sync poisons the engine (see pydb-wal's writer).
    fn log_and_apply(&self, edit: &VersionEdit, flushed: Option<&Arc<Memtable>>) -> Result<()> {
        let mut m = self.manifest.lock();
        let mut next_state = m.state.clone();
        next_state
            .apply(edit)
            .map_err(|r| Error::corrupted(&self.dir, 0, r))?;
        m.log.append(&edit.encode()).inspect_err(|e| {
            if e.kind() == pydb_wal::ErrorKind::Poisoned {
                self.poisoned.lock().get_or_insert_with(|| e.to_string());
            }
        })?;
        m.state = next_state;
        let added = edit
            .added
            .iter()
            .map(|(l, meta)| {
                (
                    *l,
                    Arc::new(TableHandle::new(meta.clone(), self.files.clone())),
                )
            })
            .collect();
        let mut sv = self.sv.write();
        for (level, number) in &edit.deleted {
            if let Some(t) = sv.version.levels[*level]
                .iter()
                .find(|t| t.meta.number == *number)
            {
                t.mark_obsolete();
            }
        }
        sv.version = Arc::new(sv.version.apply(&edit.deleted, added));
        if let Some(imm) = flushed
            && sv.imms.first().is_some_and(|f| Arc::ptr_eq(f, imm))
        {
            Arc::make_mut(&mut sv.imms).remove(0);
        }
        Ok(())
    }

    /// The target size of `level` (leveled).
    fn level_target(&self, level: usize) -> u64 {
        let mut t = self.opts.level1_size;
        for _ in 1..level {
            t = t.saturating_mul(self.opts.level_size_ratio);
        }
        t
    }

    /// Chooses the next compaction, if one is due.
    fn pick(&self, v: &Version<O>) -> Option<Pick> {
        let levels = &v.levels;
        match self.opts.style {
            CompactionStyle::Tiered => {
                for (level, runs) in levels.iter().enumerate() {
                    let trigger = if level == 0 {
                        self.opts.l0_compaction_trigger
                    } else {
                        self.opts.tier_runs
                    };
                    if runs.len() >= trigger {
                        let output_level = (level + 1).min(MAX_LEVELS - 1);
                        return Some(Pick {
                            inputs: runs.iter().map(|t| (level, t.meta.number)).collect(),
                            output_level,
                            split: false,
                        });
                    }
                }
                None
            }
            CompactionStyle::Leveled => {
                if levels[0].len() >= self.opts.l0_compaction_trigger {
                    let lo = levels[0].iter().map(|t| &t.meta.smallest).min()?.clone();
                    let hi = levels[0].iter().map(|t| &t.meta.largest).max()?.clone();
                    let mut inputs: Vec<(usize, u64)> =
                        levels[0].iter().map(|t| (0, t.meta.number)).collect();
                    inputs.extend(
                        levels[1]
                            .iter()
                            .filter(|t| t.meta.overlaps(&lo, &hi))
                            .map(|t| (1, t.meta.number)),
                    );
                    return Some(Pick {
                        inputs,
                        output_level: 1,
                        split: true,
                    });
                }
                let mut best: Option<(f64, usize)> = None;
                for (level, tables) in levels.iter().enumerate().take(MAX_LEVELS - 1).skip(1) {
                    let bytes: u64 = tables.iter().map(|t| t.meta.size).sum();
                    let score = bytes as f64 / self.level_target(level) as f64;
                    if score > 1.0 && best.is_none_or(|(s, _)| score > s) {
                        best = Some((score, level));
                    }
                }
                let (_, level) = best?;
                let pointer = self.compact_pointer.lock()[level].clone();
                let file = levels[level]
                    .iter()
                    .find(|t| pointer.as_ref().is_none_or(|p| t.meta.smallest > *p))
                    .or_else(|| levels[level].first())?;
                let mut inputs = vec![(level, file.meta.number)];
                inputs.extend(
                    levels[level + 1]
                        .iter()
                        .filter(|t| t.meta.overlaps(&file.meta.smallest, &file.meta.largest))
                        .map(|t| (level + 1, t.meta.number)),
                );
                Some(Pick {
                    inputs,
                    output_level: level + 1,
                    split: true,
                })
            }
        }
    }

    fn compact_due(&self) -> Result<()> {
        let _c = self.compacting.lock();
        loop {
            let version = self.sv.read().version.clone();
            let Some(pick) = self.pick(&version) else {
                return Ok(());
            };
            self.run_compaction(&version, &pick)?;
            self.done.notify_all();
        }
    }

    /// Merges the inputs of `pick` into new tables of its output level.
    fn run_compaction(&self, version: &Version<O>, pick: &Pick) -> Result<()> {
        let inputs: Vec<Arc<TableHandle<O>>> = pick
            .inputs
            .iter()
            .filter_map(|(l, n)| {
                version.levels[*l]
                    .iter()
                    .find(|t| t.meta.number == *n)
                    .cloned()
            })
            .collect();
        let Some(lo) = inputs.iter().map(|t| t.meta.smallest.clone()).min() else {
            return Ok(());
        };
        let hi = inputs
            .iter()
            .map(|t| t.meta.largest.clone())
            .max()
            .unwrap_or_default();
        let input_numbers: std::collections::HashSet<u64> =
            inputs.iter().map(|t| t.meta.number).collect();
        let bottommost = version.levels[pick.output_level..]
            .iter()
            .flatten()
            .all(|t| input_numbers.contains(&t.meta.number) || !t.meta.overlaps(&lo, &hi));
        let mut sources = Vec::new();
        for t in &inputs {
            sources.push(table::TableIter::new(
                t.table()?,
                None,
                self.files.counters.clone(),
                Bound::Unbounded,
                Bound::Unbounded,
            ));
        }
        let retention = Retention::new(self.live_snapshots(), bottommost);
        let metas = self
            .builder()
            .build_tables(retained(MergeIter::new(sources), retention), pick.split)?;
        let edit = VersionEdit {
            next_file: Some(self.next_file.load(Ordering::SeqCst)),
            added: metas
                .iter()
                .map(|m| (pick.output_level, m.clone()))
                .collect(),
            deleted: pick.inputs.clone(),
            ..VersionEdit::default()
        };
        self.log_and_apply(&edit, None)?;
        if let Some((level, _)) = pick.inputs.first()
            && *level >= 1
        {
            self.compact_pointer.lock()[*level] = Some(inputs[0].meta.largest.clone());
        }
        self.counters.compactions.fetch_add(1, Ordering::Relaxed);
        self.counters
            .bytes_compacted
            .fetch_add(metas.iter().map(|m| m.size).sum(), Ordering::Relaxed);
        self.counters
            .compaction_read_bytes
            .fetch_add(inputs.iter().map(|t| t.meta.size).sum(), Ordering::Relaxed);
        Ok(())
    }

    /// Flushes the memtable and merges every table into one sorted run at
    /// the bottom level: reclaims all space taken by old versions and
    /// tombstones no snapshot needs.
    fn compact_all(&self) -> Result<()> {
        self.flush_memtable()?;
        self.merge_all_tables()
    }

    /// Merges every table into one sorted run at the bottom level (the
    /// memtables, newer than every table, are left alone).
    fn merge_all_tables(&self) -> Result<()> {
        let _c = self.compacting.lock();
        let version = self.sv.read().version.clone();
        let inputs: Vec<(usize, u64)> = version
            .levels
            .iter()
            .enumerate()
            .flat_map(|(l, ts)| ts.iter().map(move |t| (l, t.meta.number)))
            .collect();
        if inputs.is_empty() {
            return Ok(());
        }
        let deepest = version
            .levels
            .iter()
            .rposition(|ts| !ts.is_empty())
            .unwrap_or(0)
            .max(1);
        let pick = Pick {
            inputs,
            output_level: deepest,
            split: self.opts.style == CompactionStyle::Leveled,
        };
        self.run_compaction(&version, &pick)
    }

    fn stats(&self) -> Stats {
        let sv = self.current();
        let mut counters: Vec<(&'static str, u64)> = Vec::new();
        const FILES: [&str; MAX_LEVELS] = [
            "level0_files",
            "level1_files",
            "level2_files",
            "level3_files",
            "level4_files",
            "level5_files",
            "level6_files",
        ];
        const BYTES: [&str; MAX_LEVELS] = [
            "level0_bytes",
            "level1_bytes",
            "level2_bytes",
            "level3_bytes",
            "level4_bytes",
            "level5_bytes",
            "level6_bytes",
        ];
        let sizes = sv.version.level_sizes();
        let mut total_bytes = 0;
        for (level, (files, bytes)) in sizes.iter().enumerate() {
            counters.push((FILES[level], *files as u64));
            counters.push((BYTES[level], *bytes));
            total_bytes += bytes;
        }
        let c = &self.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let user = load(&c.user_bytes);
        let written = load(&c.wal_bytes) + load(&c.bytes_flushed) + load(&c.bytes_compacted);
        let blocks = &self.files.blocks;
        let (hits, misses) = (load(&blocks.hits), load(&blocks.misses));
        let rc = &self.files.counters;
        counters.extend([
            ("table_bytes", total_bytes),
            ("memtable_bytes", sv.mem.size() as u64),
            ("immutable_memtables", sv.imms.len() as u64),
            (
                "immutable_bytes",
                sv.imms.iter().map(|m| m.size() as u64).sum(),
            ),
            ("last_seq", self.visible_seq.load(Ordering::Relaxed)),
            (
                "live_snapshots",
                self.snapshots.lock().values().sum::<usize>() as u64,
            ),
            ("user_bytes_written", user),
            ("wal_bytes_written", load(&c.wal_bytes)),
            ("bytes_flushed", load(&c.bytes_flushed)),
            ("bytes_compacted", load(&c.bytes_compacted)),
            ("compaction_bytes_read", load(&c.compaction_read_bytes)),
            (
                "write_amplification_x100",
                (written * 100).checked_div(user).unwrap_or(0),
            ),
            ("flushes", load(&c.flushes)),
            ("compactions", load(&c.compactions)),
            ("stalls", load(&c.stalls)),
            ("stall_micros", load(&c.stall_micros)),
            ("slowdowns", load(&c.slowdowns)),
            ("block_cache_bytes", blocks.charge() as u64),
            ("block_cache_hits", hits),
            ("block_cache_misses", misses),
            ("block_cache_evictions", load(&blocks.evictions)),
            (
                "block_cache_hit_rate_pct",
                (hits * 100).checked_div(hits + misses).unwrap_or(0),
            ),
            ("table_cache_hits", load(&self.files.tables.hits)),
            ("table_cache_misses", load(&self.files.tables.misses)),
            ("blocks_read", load(&rc.blocks_read)),
            ("bloom_checks", load(&rc.bloom_checks)),
            ("bloom_negatives", load(&rc.bloom_negatives)),
            ("bloom_false_positives", load(&rc.bloom_false_positives)),
            ("gets", load(&c.gets)),
        ]);
        Stats {
            engine: "lsm",
            counters,
        }
    }
}

impl<O: FileOpener + 'static> Drop for LsmStorage<O> {
    fn drop(&mut self) {
        // A clean close lets the frozen memtables finish their flush (so
        // the next open replays at most one memtable's WAL) but does not
        // flush the active one: its WAL holds every write, and the next
        // open adopts that WAL with its memtable instead of writing a table
        // (as fjall and RocksDB do; a flush here would write up to 64 MiB
        // a longer run writes once anyway). If the wait fails, the WALs
        // still hold every write and the next open replays them.
        if self.shared.poisoned.lock().is_none()
            && let Err(e) = self.shared.wait_for_frozen()
        {
            tracing::warn!(error = %e, "cannot flush frozen memtables on close; their WALs keep their writes");
        }
        self.shared.bg.lock().shutdown = true;
        self.shared.work.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        // A clean close leaves nothing unsynced, whatever the policy.
        let mut w = self.shared.writer.lock();
        if self.shared.drain_wal_buffer(&mut w).is_ok() {
            let _ = w.wal.sync();
        }
    }
}

impl<O: FileOpener + 'static> StorageEngine for LsmStorage<O> {
    fn set(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.shared
            .write(
                vec![(
                    Bytes::copy_from_slice(key),
                    Some(Bytes::copy_from_slice(value)),
                )],
                false,
            )
            .map(|_| ())
    }

    fn get(&self, key: &[u8]) -> Result<Option<Bytes>> {
        self.shared
            .get(key, self.shared.visible_seq.load(Ordering::Acquire))
    }

    fn delete(&self, key: &[u8]) -> Result<bool> {
        self.shared
            .write(vec![(Bytes::copy_from_slice(key), None)], true)
    }

    fn write_batch(&self, batch: &WriteBatch) -> Result<()> {
        let ops: Vec<(Bytes, Option<Bytes>)> = batch
            .ops()
            .iter()
            .map(|op| match op {
                BatchOp::Set { key, value } => (key.clone(), Some(value.clone())),
                BatchOp::Delete { key } => (key.clone(), None),
            })
            .collect();
        self.shared.write(ops, false).map(|_| ())
    }

    fn scan(&self, range: KeyRange) -> Result<ScanIter<'_>> {
        self.shared
            .scan(range, self.shared.visible_seq.load(Ordering::Acquire))
    }

    fn flush(&self) -> Result<()> {
        self.shared.check_poisoned()?;
        let wal = {
            let mut w = self.shared.writer.lock();
            self.shared.drain_wal_buffer(&mut w)?;
            w.wal.clone()
        };
        wal.sync().map_err(|e| {
            let e = Error::from(e);
            self.shared.poison(&e);
            e
        })
    }

    fn compact(&self) -> Result<()> {
        self.shared.check_poisoned()?;
        self.shared.compact_all()
    }

    fn stats(&self) -> Stats {
        self.shared.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The WAL entry example of docs/formats.md, byte for byte.
    #[test]
    fn wal_entry_layout_is_pinned() {
        let bytes = encode_wal_entry(258, b"ab", Some(b"xyz"));
        assert_eq!(
            bytes,
            [
                2, 1, 0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 0, b'a', b'b', b'x', b'y', b'z'
            ]
        );
        let (seq, key, value) = decode_wal_entry(&bytes).unwrap();
        assert_eq!(
            (seq, key.as_ref(), value.as_deref()),
            (258, &b"ab"[..], Some(&b"xyz"[..]))
        );
        let tombstone = encode_wal_entry(7, b"k", None);
        assert_eq!(decode_wal_entry(&tombstone).unwrap().2, None);
        for cut in 0..bytes.len() {
            assert!(decode_wal_entry(&bytes[..cut]).is_err() || cut >= WAL_ENTRY_HEADER + 2);
        }
    }

    /// The entries of every WAL file in `dir`, in file order.
    fn wal_entries(dir: &Path) -> Vec<u64> {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "wal"))
            .collect();
        names.sort();
        let mut seqs = Vec::new();
        for path in names {
            let file = MonolithicOpener.open(&path, false).unwrap();
            let mut scanner = pydb_wal::Scanner::new(&file).unwrap();
            while let Some(batch) = scanner.next_batch().unwrap() {
                for r in batch {
                    seqs.push(decode_wal_entry(&r.payload).unwrap().0);
                }
            }
        }
        seqs
    }

    /// With `SyncPolicy::Never` the WAL buffer holds writes back until it
    /// is full (then one write hands them over, in order), and `flush`
    /// empties it; with `Always` every write is in the file when it
    /// returns.
    #[test]
    fn the_wal_buffer_holds_writes_until_full_or_flushed() {
        for (policy, buffer) in [(SyncPolicy::Never, 300), (SyncPolicy::Always, 300)] {
            let dir = tempfile::tempdir().unwrap();
            let opts = LsmOptions {
                sync_policy: policy,
                wal_buffer_size: buffer,
                ..LsmOptions::default()
            };
            let db = LsmStorage::open(dir.path(), opts).unwrap();
            // Each entry is 13 + 2 + 20 = 35 bytes: the 9th passes 300.
            for i in 0..10u8 {
                db.set(&[b'k', i], &[i; 20]).unwrap();
                assert_eq!(db.get(&[b'k', i]).unwrap().unwrap(), &[i; 20][..]);
            }
            let logged = wal_entries(dir.path());
            if policy == SyncPolicy::Never {
                assert_eq!(logged, (1..=9).collect::<Vec<_>>(), "one drain of 9");
            } else {
                assert_eq!(logged, (1..=10).collect::<Vec<_>>());
            }
            db.flush().unwrap();
            assert_eq!(wal_entries(dir.path()), (1..=10).collect::<Vec<_>>());
            drop(db);
            let db = LsmStorage::open(dir.path(), LsmOptions::default()).unwrap();
            assert_eq!(db.scan(KeyRange::all()).unwrap().count(), 10);
        }
    }

    /// A database whose `CURRENT` is the bare name pydb wrote before the
    /// name carried a checksum opens with its data, and the open rewrites
    /// `CURRENT` in the checksummed form.
    #[test]
    fn a_current_from_before_its_checksum_opens_and_is_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let db = LsmStorage::open(dir.path(), LsmOptions::default()).unwrap();
        db.set(b"k", b"v").unwrap();
        db.flush().unwrap();
        drop(db);
        let path = dir.path().join(manifest::CURRENT);
        let number = manifest::parse_current(&std::fs::read(&path).unwrap()).unwrap();
        std::fs::write(&path, format!("{}\n", manifest_name(number))).unwrap();
        let db = LsmStorage::open(dir.path(), LsmOptions::default()).unwrap();
        assert_eq!(db.get(b"k").unwrap().unwrap(), &b"v"[..]);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(" crc32="), "CURRENT left as {text:?}");
    }

    /// A delete in a write batch is blind: a tombstone is logged without a
    /// read, even for a key that never existed; `delete` reads to answer.
    #[test]
    fn a_batch_delete_writes_a_tombstone_without_reading() {
        let dir = tempfile::tempdir().unwrap();
        let opts = LsmOptions {
            sync_policy: SyncPolicy::Never,
            ..LsmOptions::default()
        };
        let db = LsmStorage::open(dir.path(), opts).unwrap();
        db.set(b"k", b"v").unwrap();
        let stat = |db: &LsmStorage, name: &str| db.stats().get(name).unwrap();
        let (gets, seq) = (stat(&db, "gets"), stat(&db, "last_seq"));
        let mut batch = WriteBatch::new();
        batch.delete(&b"k"[..]).delete(&b"never-written"[..]);
        db.write_batch(&batch).unwrap();
        assert_eq!(stat(&db, "gets"), gets, "a batch delete reads nothing");
        assert_eq!(stat(&db, "last_seq"), seq + 2, "two tombstones logged");
        assert_eq!(db.get(b"k").unwrap(), None);
        // `delete` must say whether the key had a value, so it reads.
        let gets = stat(&db, "gets");
        assert!(!db.delete(b"k").unwrap());
        assert_eq!(stat(&db, "gets"), gets + 1, "delete reads the key");
        assert_eq!(stat(&db, "last_seq"), seq + 2, "no tombstone for nothing");
    }
}
