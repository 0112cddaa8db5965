//! `Db`: a database directory opened with the engine it was created with.
//!
//! `Db` is what an application (and the `pydb` binary) holds. It picks the
//! storage engine at run time from [`Options`] and keeps it as an
//! `Arc<dyn StorageEngine>`, so the shell, the network server and a
//! test can switch engines without being generic over them. Cloning a `Db`
//! is cheap and shares the engine: threads each take a clone.
//!
//! Opening a persistent engine goes through the directory metadata
//! ([`crate::meta`]) first:
//!
//! 1. a directory without `PYDB` must be empty (or missing): it is then
//!    created as a new database and `PYDB` is written atomically;
//! 2. a directory with `PYDB` is opened only by the engine recorded there,
//!    and only if its format version is not newer than this build's.
//!
//! Those checks run under the directory lock ([`DirLock`]), so two
//! processes cannot both decide to create the same database. The lock is
//! released before the engine opens, because the engine takes it itself and
//! holds it for as long as it is open.
//!
//! The memory engine writes no files: it ignores the directory entirely.
//!
//! ## Read-modify-write
//!
//! `INCR` and `SET NX` read a key and write it depending on what they read;
//! two of them racing on one key must not both read the old value. The
//! engines promise atomic single writes, not that, so `Db` adds it with
//! [`KeyLocks`]: 64 read-write locks, a key hashed to one of them. A
//! read-modify-write ([`Db::incr_by`], [`Db::set_if`]) holds its key's lock
//! *exclusively*; a plain write ([`Db::set`], [`Db::delete`],
//! [`Db::write_batch`]) holds it *shared*. So plain writes never wait for
//! each other (concurrent `SET`s still share an fsync through the WAL's
//! group commit), and no write of any kind lands between the read and the
//! write of an `INCR`. Writes made through [`Db::engine`] directly bypass
//! the locks.

use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::{RwLock, RwLockReadGuard};
pub use pydb_storage::{BatchOp, WriteBatch};
use pydb_storage::{
    DirLock, EngineConfig, KeyRange, LOCK_FILE_NAME, MemoryStorage, Stats, StorageEngine,
    open_engine,
};
pub use pydb_storage::{EngineKind, IndexKind};
pub use pydb_wal::SyncPolicy;

use crate::meta::{self, Metadata};
use crate::{Error, Result};

/// The name of the shell's history file inside a database directory. It is
/// the one file besides the database's own that may be in the directory.
pub const HISTORY_FILE_NAME: &str = ".pydb_history";

/// The interval of [`SyncPolicy::Periodic`] when none is given.
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_millis(100);

/// Parses a sync policy: `always`, `never`, `periodic` (every
/// [`DEFAULT_SYNC_INTERVAL`]) or `periodic:MS`.
pub fn parse_sync_policy(s: &str) -> Result<SyncPolicy> {
    let lower = s.to_ascii_lowercase();
    match lower.as_str() {
        "always" => return Ok(SyncPolicy::Always),
        "never" => return Ok(SyncPolicy::Never),
        "periodic" => return Ok(SyncPolicy::Periodic(DEFAULT_SYNC_INTERVAL)),
        _ => {}
    }
    if let Some(ms) = lower.strip_prefix("periodic:")
        && let Ok(ms) = ms.parse::<u64>()
        && ms > 0
    {
        return Ok(SyncPolicy::Periodic(Duration::from_millis(ms)));
    }
    Err(Error::InvalidArgument(format!(
        "unknown sync policy '{s}' (expected always, periodic, periodic:MS or never)"
    )))
}

/// How to open a database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// The storage engine. Default: [`EngineKind::Log`].
    pub engine: EngineKind,
    /// The in-memory index of the log engine. Default: [`IndexKind::BTree`],
    /// the ordered index, so that range scans stay cheap.
    pub index: IndexKind,
    /// When writes reach the disk. Default: [`SyncPolicy::Always`]: every
    /// write is durable before it returns, so an acknowledged write is never
    /// lost. `Periodic` and `Never` trade that for speed, explicitly.
    pub sync: SyncPolicy,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            engine: EngineKind::Log,
            index: IndexKind::BTree,
            sync: SyncPolicy::Always,
        }
    }
}

impl Options {
    /// The default options with `engine`.
    pub fn with_engine(engine: EngineKind) -> Self {
        Self {
            engine,
            ..Self::default()
        }
    }
}

/// The items of a scan: key and value in ascending key order.
pub type Scan<'a> = Box<dyn Iterator<Item = Result<(Bytes, Bytes)>> + Send + 'a>;

/// An open database.
#[derive(Debug, Clone)]
pub struct Db {
    engine: Arc<dyn StorageEngine>,
    dir: Option<PathBuf>,
    options: Options,
    locks: Arc<KeyLocks>,
}

/// When [`Db::set_if`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetCondition {
    /// Only if the key has no value (`SET ... NX`).
    IfAbsent,
    /// Only if the key has a value (`SET ... XX`).
    IfPresent,
}

/// How many read-write locks `Db` hashes keys onto for `INCR` and
/// `SET NX|XX` (see the module doc, "Read-modify-write").
pub const LOCK_STRIPES: usize = 64;

/// Striped read-write locks over keys (see the module doc): shared for
/// plain writes, exclusive for read-modify-writes.
#[derive(Debug)]
pub struct KeyLocks {
    stripes: [RwLock<()>; LOCK_STRIPES],
}

impl KeyLocks {
    fn new() -> Self {
        Self {
            stripes: std::array::from_fn(|_| RwLock::new(())),
        }
    }

    /// The stripe of `key` (FNV-1a: cheap, and good enough to spread keys).
    fn stripe(key: &[u8]) -> usize {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in key {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        // The modulo keeps the value below 64, so it fits any usize.
        (hash % LOCK_STRIPES as u64) as usize
    }

    fn lock(&self, key: &[u8]) -> &RwLock<()> {
        // `stripe` is below `LOCK_STRIPES`, the length of the array.
        &self.stripes[Self::stripe(key) % LOCK_STRIPES]
    }

    /// Shared guards on the stripes of every key of `keys`, taken in
    /// ascending stripe order so that two batches cannot deadlock.
    fn share_all<'a>(&self, keys: impl Iterator<Item = &'a [u8]>) -> Vec<RwLockReadGuard<'_, ()>> {
        let mut mask: u64 = 0;
        for key in keys {
            mask |= 1 << Self::stripe(key);
        }
        (0..LOCK_STRIPES)
            .filter(|i| mask & (1 << i) != 0)
            .filter_map(|i| self.stripes.get(i).map(RwLock::read))
            .collect()
    }
}

impl Db {
    /// Opens (or creates) the database in `dir` with `options`.
    ///
    /// Fails with [`Error::NotADatabase`] if `dir` holds other files and no
    /// `PYDB`, [`Error::WrongEngine`] if it was created by another engine,
    /// [`Error::UnsupportedVersion`] if a newer pydb wrote it, and
    /// [`Error::Corrupted`] if `PYDB` is damaged. The memory engine ignores
    /// `dir`.
    pub fn open(dir: impl AsRef<Path>, options: Options) -> Result<Self> {
        let dir = dir.as_ref();
        if !options.engine.is_persistent() {
            return Ok(Self::from_engine(
                Arc::new(MemoryStorage::new()),
                None,
                options,
            ));
        }
        prepare_dir(dir, &options)?;
        let engine = open_engine(dir, &engine_config(&options))?;
        Ok(Self::from_engine(engine, Some(dir.to_path_buf()), options))
    }

    /// A new, empty in-memory database.
    pub fn memory() -> Self {
        Self::from_engine(
            Arc::new(MemoryStorage::new()),
            None,
            Options::with_engine(EngineKind::Memory),
        )
    }

    /// Wraps an engine built by the caller (a test's fault-injecting engine,
    /// an engine with custom settings).
    pub fn from_engine(
        engine: Arc<dyn StorageEngine>,
        dir: Option<PathBuf>,
        options: Options,
    ) -> Self {
        Self {
            engine,
            dir,
            options,
            locks: Arc::new(KeyLocks::new()),
        }
    }

    /// The engine, for callers that need the trait directly.
    pub fn engine(&self) -> &Arc<dyn StorageEngine> {
        &self.engine
    }

    /// The database directory; `None` for the memory engine.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The options the database was opened with.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Sets `key` to `value`.
    pub fn set(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<()> {
        let key = key.as_ref();
        let _shared = self.locks.lock(key).read();
        Ok(self.engine.set(key, value.as_ref())?)
    }

    /// Sets `key` to `value` if `condition` holds, atomically with respect
    /// to every other write through this `Db`; returns whether it wrote.
    pub fn set_if(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        condition: SetCondition,
    ) -> Result<bool> {
        let key = key.as_ref();
        let _exclusive = self.locks.lock(key).write();
        let present = self.engine.get(key)?.is_some();
        let write = match condition {
            SetCondition::IfAbsent => !present,
            SetCondition::IfPresent => present,
        };
        if write {
            self.engine.set(key, value.as_ref())?;
        }
        Ok(write)
    }

    /// Adds `delta` to the integer stored at `key` (a missing key counts as
    /// 0) and returns the new value, atomically with respect to every other
    /// write through this `Db`.
    ///
    /// Fails with [`Error::NotAnInteger`] if the value is not the decimal
    /// text of a signed 64-bit integer, and with [`Error::Overflow`] if the
    /// sum does not fit; the value is then left unchanged.
    pub fn incr_by(&self, key: impl AsRef<[u8]>, delta: i64) -> Result<i64> {
        let key = key.as_ref();
        let _exclusive = self.locks.lock(key).write();
        let current = match self.engine.get(key)? {
            None => 0,
            Some(value) => parse_integer(&value).ok_or(Error::NotAnInteger)?,
        };
        let next = current.checked_add(delta).ok_or(Error::Overflow)?;
        self.engine.set(key, next.to_string().as_bytes())?;
        Ok(next)
    }

    /// The value of `key`, or `None`.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>> {
        Ok(self.engine.get(key.as_ref())?)
    }

    /// Deletes `key`; returns whether it had a value.
    pub fn delete(&self, key: impl AsRef<[u8]>) -> Result<bool> {
        let key = key.as_ref();
        let _shared = self.locks.lock(key).read();
        Ok(self.engine.delete(key)?)
    }

    /// Applies every operation of `batch` atomically.
    pub fn write_batch(&self, batch: &WriteBatch) -> Result<()> {
        let _shared = self
            .locks
            .share_all(batch.ops().iter().map(|op| op.key().as_ref()));
        Ok(self.engine.write_batch(batch)?)
    }

    /// The number of keys: the engine's `live_keys` counter when it keeps
    /// one, else a count by scan.
    pub fn key_count(&self) -> Result<u64> {
        if let Some(n) = self.stats().get("live_keys") {
            return Ok(n);
        }
        let mut count: u64 = 0;
        for item in self.scan::<&[u8]>(..)? {
            item?;
            count = count.saturating_add(1);
        }
        Ok(count)
    }

    /// The keys in `range` with their values, in ascending key order, e.g.
    /// `db.scan(b"a".as_slice()..b"c".as_slice())` or `db.scan::<&[u8]>(..)`.
    pub fn scan<T: AsRef<[u8]>>(&self, range: impl RangeBounds<T>) -> Result<Scan<'_>> {
        self.scan_range(KeyRange::new(range))
    }

    /// The keys in `range` with their values, in ascending key order.
    pub fn scan_range(&self, range: KeyRange) -> Result<Scan<'_>> {
        let iter = self.engine.scan(range)?;
        Ok(Box::new(iter.map(|item| item.map_err(Error::from))))
    }

    /// Makes every write so far durable, whatever the sync policy.
    pub fn flush(&self) -> Result<()> {
        Ok(self.engine.flush()?)
    }

    /// Reclaims the space of overwritten and deleted data.
    pub fn compact(&self) -> Result<()> {
        Ok(self.engine.compact()?)
    }

    /// The engine's counters.
    pub fn stats(&self) -> Stats {
        self.engine.stats()
    }

    /// Flushes and closes the database. Dropping every clone closes it too,
    /// but without reporting a failed flush.
    pub fn close(self) -> Result<()> {
        self.flush()
    }
}

/// Parses an integer value as Redis does (`string2ll`): the canonical
/// decimal text of an `i64`, so no sign but `-`, no leading zero, no space.
pub fn parse_integer(text: &[u8]) -> Option<i64> {
    if text.is_empty() || text.len() > 20 {
        return None;
    }
    let n: i64 = std::str::from_utf8(text).ok()?.parse().ok()?;
    // `parse` accepts `+1` and `007`; the canonical form does not.
    (n.to_string().as_bytes() == text).then_some(n)
}

/// Checks (or creates) the directory and its metadata for a persistent
/// engine, under the directory lock.
fn prepare_dir(dir: &Path, options: &Options) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    // Before anything is written (even the lock file), make sure this is a
    // pydb directory or an empty one.
    if meta::read(dir)?.is_none() {
        ensure_empty(dir)?;
    }
    let _lock = DirLock::acquire(dir)?;
    meta::remove_stale_temp(dir)?;
    let index = options.engine.uses_index().then_some(options.index);
    match meta::read(dir)? {
        None => {
            ensure_empty(dir)?;
            meta::write(dir, &Metadata::new(options.engine, index))?;
        }
        Some(found) => {
            if found.engine != options.engine {
                return Err(Error::WrongEngine {
                    dir: dir.to_path_buf(),
                    on_disk: found.engine,
                    asked: options.engine,
                });
            }
            // The index lives in memory and is rebuilt on every open, so
            // any index can open any log database; the metadata records the
            // one used last, for `pydb inspect`.
            if found.index != index || found.format_version != meta::META_FORMAT_VERSION {
                meta::write(dir, &Metadata::new(options.engine, index))?;
            }
        }
    }
    Ok(())
}

/// Fails with [`Error::NotADatabase`] unless `dir` holds nothing but files
/// pydb itself may leave in a directory before `PYDB` exists.
fn ensure_empty(dir: &Path) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        let ignorable = [LOCK_FILE_NAME, meta::META_TEMP_FILE_NAME, HISTORY_FILE_NAME];
        if !ignorable.iter().any(|n| name == *n) {
            return Err(Error::NotADatabase {
                dir: dir.to_path_buf(),
                found: name.to_string_lossy().into_owned(),
            });
        }
    }
    Ok(())
}

/// The registry's configuration for `options`: each engine's defaults,
/// with the sync policy asked for.
fn engine_config(options: &Options) -> EngineConfig {
    let mut config = EngineConfig::new(options.engine).with_sync(options.sync);
    config.index = options.index;
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_policies_parse() {
        assert_eq!(parse_sync_policy("always").unwrap(), SyncPolicy::Always);
        assert_eq!(parse_sync_policy("NEVER").unwrap(), SyncPolicy::Never);
        assert_eq!(
            parse_sync_policy("periodic").unwrap(),
            SyncPolicy::Periodic(DEFAULT_SYNC_INTERVAL)
        );
        assert_eq!(
            parse_sync_policy("periodic:25").unwrap(),
            SyncPolicy::Periodic(Duration::from_millis(25))
        );
        assert!(parse_sync_policy("periodic:0").is_err());
        assert!(parse_sync_policy("sometimes").is_err());
    }

    #[test]
    fn memory_db_does_what_it_is_told() {
        let db = Db::memory();
        db.set("a", "1").unwrap();
        db.set("b", "2").unwrap();
        assert_eq!(db.get("a").unwrap().unwrap(), "1");
        assert!(db.delete("a").unwrap());
        assert!(!db.delete("a").unwrap());
        let mut batch = WriteBatch::new();
        batch.set("c", "3").delete("b");
        db.write_batch(&batch).unwrap();
        let items: Vec<_> = db
            .scan::<&[u8]>(..)
            .unwrap()
            .collect::<Result<_>>()
            .unwrap();
        assert_eq!(items, vec![(Bytes::from("c"), Bytes::from("3"))]);
    }

    #[test]
    fn memory_engine_writes_no_files() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), Options::with_engine(EngineKind::Memory)).unwrap();
        db.set("k", "v").unwrap();
        db.close().unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
