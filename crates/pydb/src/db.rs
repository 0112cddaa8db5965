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
//!    and only if its format version is this build's: not newer, and not
//!    version 1, from before transactions (see [`meta::META_FORMAT_VERSION`];
//!    it is refused, not migrated).
//!
//! Those checks run under the directory lock ([`DirLock`]), so two
//! processes cannot both decide to create the same database. The lock is
//! released before the engine opens, because the engine takes it itself and
//! holds it for as long as it is open.
//!
//! The memory engine writes no files: it ignores the directory entirely.
//!
//! ## Every read and write is a transaction
//!
//! `Db` keeps its data through a [`TxnManager`] over the engine, so the
//! engine holds *versions* (`key | inverted commit timestamp`, see
//! `pydb-txn`), never plain keys. [`Db::begin`] and [`Db::transaction`]
//! hand out full transactions; the single-key operations are small
//! transactions, each at the weakest level that keeps it correct:
//!
//! | operation | transaction | why |
//! |---|---|---|
//! | `get`, `scan`, `key_count` | read-only, snapshot | one consistent view, never aborts |
//! | `set`, `write_batch` | read committed | a blind write: last writer wins, never aborts |
//! | `delete`, `set_if`, `set_with`, `incr_by`, `expire_at`, `persist` | snapshot, retried | read then write one key: first committer wins, so two `INCR`s never both read the old value |
//! | `ttl` | read-only, snapshot | one read |
//!
//! ## Expiry
//!
//! A key may have a deadline (Unix ms; Redis's `EXPIRE`). It is stored with
//! the value by `pydb-txn` (tag `0x02`, see docs/formats.md), so every
//! engine keeps it across restarts. Reads judge it against the clock of
//! [`Options::clock`] and hide an expired key at once; a background
//! expirer deletes expired keys, and [`Db::compact`] drops their bytes.
//!
//! A read-modify-write that loses a write-write conflict is run again
//! (see [`RMW_ATTEMPTS`]); each conflict means another commit succeeded,
//! so the system always makes progress. Serializable is not needed for
//! them: a one-key transaction cannot take part in write skew that
//! first-committer-wins on that key does not already stop.
//!
//! Writes made through [`Db::engine`] directly bypass the transaction
//! layer and must not be mixed with it: the engine holds version keys.

use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
pub use pydb_storage::{BatchOp, WriteBatch};
use pydb_storage::{
    DirLock, EngineConfig, KeyRange, LOCK_FILE_NAME, MemoryStorage, Stats, StorageEngine,
    open_engine, open_engine_with,
};
pub use pydb_storage::{EngineKind, IndexKind};
pub use pydb_txn::{
    Clock, ClockHandle, Concurrency, Isolation, Keyspace, ManualClock, SystemClock, Transaction,
    TxnManager, TxnOptions, TxnScan, TxnStats,
};
pub use pydb_wal::SyncPolicy;

use pydb_file::encrypted::BLOCK_SIZE as ENCRYPTED_BLOCK_SIZE;
use pydb_file::{CompressedOpener, DataKey, EncryptedOpener, MonolithicOpener, WrappedKey};
pub use pydb_file::{CompressionStats, CompressionTotals, KeyMaterial};

use crate::meta::{self, Metadata};
use crate::{Error, Result};

/// The name of the shell's history file inside a database directory. It is
/// the one file besides the database's own that may be in the directory.
pub const HISTORY_FILE_NAME: &str = ".pydb_history";

/// The interval of [`SyncPolicy::Periodic`] when none is given.
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_millis(100);

/// How often the background expirer runs by default.
pub const DEFAULT_EXPIRE_INTERVAL: Duration = Duration::from_millis(100);

/// How many times a single-key read-modify-write (`delete`, `set_if`,
/// `incr_by`) runs before it gives up with the write conflict. Every lost
/// attempt means another commit on the key succeeded, so this bound is
/// reached only under pathological contention.
pub const RMW_ATTEMPTS: u32 = 10_000;

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

/// How the files of a database are compressed (recorded in `PYDB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    /// Files are stored as the engine writes them. The default.
    #[default]
    None,
    /// Every file is a [`pydb_file::CompressedFile`]: lz4 frames in chunks
    /// with a seek table. Only for engines that never rewrite a file in
    /// place (log, lsm); the B+tree rewrites pages and refuses it.
    Lz4,
}

impl Compression {
    /// Every compression, in the order help texts list them.
    pub const ALL: &'static [Compression] = &[Compression::None, Compression::Lz4];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Lz4 => "lz4",
        }
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Compression {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let lower = s.to_ascii_lowercase();
        Compression::ALL
            .iter()
            .copied()
            .find(|c| c.name() == lower)
            .ok_or_else(|| {
                Error::InvalidArgument(format!("unknown compression '{s}' (expected none or lz4)"))
            })
    }
}

/// How to open a database.
#[derive(Debug, Clone)]
pub struct Options {
    /// The storage engine. Default: [`EngineKind::Log`].
    pub engine: EngineKind,
    /// The in-memory index of the log engine. Default:
    /// [`IndexKind::BPlusTree`], an ordered index, so that range scans stay
    /// cheap, and the fastest of the ordered ones at lookups.
    pub index: IndexKind,
    /// When writes reach the disk. Default: [`SyncPolicy::Always`]: every
    /// write is durable before it returns, so an acknowledged write is never
    /// lost. `Periodic` and `Never` trade that for speed, explicitly.
    pub sync: SyncPolicy,
    /// The concurrency control of transactions that do not choose one
    /// (the single-key operations included). Default: [`Concurrency::Mvcc`].
    pub concurrency: Concurrency,
    /// The clock key expiry is judged by. Default: the system clock; tests
    /// pass a [`ManualClock`] to move time by hand.
    pub clock: ClockHandle,
    /// How often the background expirer deletes expired keys (`None`:
    /// never; expired keys are invisible either way, and [`Db::compact`]
    /// drops them). Default: every 100 ms, as Redis's `hz 10`.
    pub expire_interval: Option<Duration>,
    /// The key material (the content of a key file) that encrypts the
    /// database: a new database is created encrypted, an encrypted one
    /// needs it to open. Default: `None`, no encryption. See
    /// [`Options::encryption_key_file`] and [`pydb_file::keys`].
    pub encryption: Option<KeyMaterial>,
    /// How a new database compresses its files; an existing one must be
    /// opened with the compression it was created with. Default:
    /// [`Compression::None`].
    pub compression: Compression,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            engine: EngineKind::Log,
            index: IndexKind::BPlusTree,
            sync: SyncPolicy::Always,
            concurrency: Concurrency::Mvcc,
            clock: ClockHandle::default(),
            expire_interval: Some(DEFAULT_EXPIRE_INTERVAL),
            encryption: None,
            compression: Compression::None,
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

    /// The same options, encrypted with the key material of the key file at
    /// `path` (at least 32 bytes, any content).
    pub fn encryption_key_file(mut self, path: impl AsRef<Path>) -> Result<Self> {
        self.encryption = Some(load_key_file(path.as_ref())?);
        Ok(self)
    }
}

/// Reads a key file: at least [`pydb_file::keys::MIN_KEY_MATERIAL_LEN`]
/// bytes, all of them key material.
pub fn load_key_file(path: &Path) -> Result<KeyMaterial> {
    KeyMaterial::load(path).map_err(|e| match e {
        pydb_file::Error::WrongKey { reason } => Error::InvalidArgument(reason),
        other => other.into(),
    })
}

/// The items of a scan: key and value in ascending key order.
pub type Scan<'a> = Box<dyn Iterator<Item = Result<(Bytes, Bytes)>> + Send + 'a>;

/// An open database.
#[derive(Debug, Clone)]
pub struct Db {
    txn: Arc<TxnManager>,
    sql: pydb_query::Database,
    dir: Option<PathBuf>,
    options: Options,
    storage: StorageInfo,
}

/// How the files of an open database are stored, for `STATS` and `INFO`.
#[derive(Debug, Clone, Default)]
struct StorageInfo {
    /// The id of the data key, when the files are encrypted.
    data_key_id: Option<[u8; 8]>,
    /// The sizes of the compressed files, when they are compressed.
    compression: Option<CompressionTotals>,
}

/// When [`Db::set_if`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetCondition {
    /// Only if the key has no value (`SET ... NX`).
    IfAbsent,
    /// Only if the key has a value (`SET ... XX`).
    IfPresent,
}

/// What [`Db::set_with`] does to the key's expiry deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SetExpiry {
    /// The value never expires (a plain `SET`).
    #[default]
    Clear,
    /// The key keeps the deadline it had, if any (`SET ... KEEPTTL`).
    Keep,
    /// The value expires after this Unix-ms instant (`SET ... PXAT`).
    At(u64),
}

/// How [`Db::set_with`] writes: Redis's `SET` options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SetOptions {
    /// `NX` or `XX`; `None` always writes.
    pub condition: Option<SetCondition>,
    /// The expiry of the new value.
    pub expiry: SetExpiry,
}

/// What [`Db::set_with`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetOutcome {
    /// Whether it wrote (the condition held).
    pub written: bool,
    /// The value the key had before (`SET ... GET`).
    pub old: Option<Bytes>,
}

/// When [`Db::expire_at`] sets a deadline: Redis's `EXPIRE` options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExpireCondition {
    /// Always.
    #[default]
    Always,
    /// Only if the key has no deadline (`NX`).
    IfNone,
    /// Only if the key has a deadline (`XX`).
    IfSome,
    /// Only if the new deadline is later than the current one; no deadline
    /// counts as infinitely late (`GT`).
    IfLater,
    /// Only if the new deadline is earlier than the current one; no
    /// deadline counts as infinitely late (`LT`).
    IfEarlier,
}

/// The time a key has left ([`Db::ttl`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    /// The key has no value (Redis's `-2`).
    Missing,
    /// The key never expires (Redis's `-1`).
    Persistent,
    /// The key expires in this many milliseconds.
    Remaining(u64),
}

impl Db {
    /// Opens (or creates) the database in `dir` with `options`.
    ///
    /// Fails with [`Error::NotADatabase`] if `dir` holds other files and no
    /// `PYDB`, [`Error::WrongEngine`] if it was created by another engine,
    /// [`Error::UnsupportedVersion`] if a newer pydb wrote it,
    /// [`Error::OldFormat`] if a pydb without transactions wrote it, and
    /// [`Error::Corrupted`] if `PYDB` is damaged. The memory engine ignores
    /// `dir`.
    ///
    /// An encrypted database fails with [`Error::KeyRequired`] without
    /// [`Options::encryption`] and [`Error::WrongKey`] with key material
    /// that does not unwrap its data key; a database opened with another
    /// encryption or compression setting than it was created with fails
    /// with [`Error::SettingsMismatch`]. None of these changes anything on
    /// disk.
    pub fn open(dir: impl AsRef<Path>, options: Options) -> Result<Self> {
        let dir = dir.as_ref();
        validate_storage_options(&options)?;
        if !options.engine.is_persistent() {
            return Self::from_engine(Arc::new(MemoryStorage::new()), None, options);
        }
        let (metadata, data_key) = prepare_dir(dir, &options)?;
        let mut config = engine_config(&options);
        let storage = StorageInfo {
            data_key_id: data_key.as_ref().map(DataKey::id),
            compression: None,
        };
        let (engine, storage) = match (data_key, metadata.compression) {
            (None, Compression::None) => (open_engine(dir, &config)?, storage),
            (Some(key), Compression::None) => {
                // Whole pages per encrypted block: a page write seals one
                // block without reading a neighbour, and a torn write damages
                // that page only (see `pydb_file::encrypted`).
                config.btree.page_size = config.btree.page_size.max(ENCRYPTED_BLOCK_SIZE);
                let opener = EncryptedOpener::new(MonolithicOpener, key);
                (open_engine_with(dir, opener, &config)?, storage)
            }
            (None, Compression::Lz4) => {
                let opener = CompressedOpener::new(MonolithicOpener);
                let totals = opener.totals();
                let engine = open_engine_with(dir, opener, &config)?;
                (
                    engine,
                    StorageInfo {
                        compression: Some(totals),
                        ..storage
                    },
                )
            }
            (Some(key), Compression::Lz4) => {
                // Compress first, then encrypt: ciphertext does not compress.
                let opener = CompressedOpener::new(EncryptedOpener::new(MonolithicOpener, key));
                let totals = opener.totals();
                let engine = open_engine_with(dir, opener, &config)?;
                (
                    engine,
                    StorageInfo {
                        compression: Some(totals),
                        ..storage
                    },
                )
            }
        };
        let mut db = Self::from_engine(engine, Some(dir.to_path_buf()), options)?;
        db.storage = storage;
        Ok(db)
    }

    /// A new, empty in-memory database.
    pub fn memory() -> Result<Self> {
        Self::from_engine(
            Arc::new(MemoryStorage::new()),
            None,
            Options::with_engine(EngineKind::Memory),
        )
    }

    /// Wraps an engine built by the caller (a test's fault-injecting engine,
    /// an engine with custom settings) in the transaction layer. The engine
    /// must be empty or hold only what a `Db` wrote.
    pub fn from_engine(
        engine: Arc<dyn StorageEngine>,
        dir: Option<PathBuf>,
        options: Options,
    ) -> Result<Self> {
        let txn_options = pydb_txn::Options {
            concurrency: options.concurrency,
            clock: options.clock.clone(),
            expire_interval: options.expire_interval,
            ..pydb_txn::Options::default()
        };
        let txn = Arc::new(TxnManager::open(engine, txn_options)?);
        Ok(Self {
            sql: pydb_query::Database::new(txn.clone())?,
            txn,
            dir,
            options,
            storage: StorageInfo::default(),
        })
    }

    /// Runs a script of `;`-separated SQL statements in a session of its
    /// own, returning one output per statement. Outside `BEGIN`, each
    /// statement is its own serializable transaction; a `BEGIN` left open
    /// at the end of the script is rolled back. Stops at the first error
    /// ([`Error::Sql`], whose [`sqlstate`](Error::sqlstate) tells a
    /// retryable serialization failure, `40001`, from the rest).
    ///
    /// ```
    /// # fn main() -> pydb::Result<()> {
    /// let db = pydb::Db::memory()?;
    /// db.sql("CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT); INSERT INTO t VALUES (1, 'one')")?;
    /// let rows = db.query("SELECT b FROM t WHERE a = 1")?;
    /// assert_eq!(rows.rows, vec![vec![pydb::Value::Text("one".into())]]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn sql(&self, sql: &str) -> Result<Vec<pydb_query::Output>> {
        Ok(self.sql.session().execute(sql)?)
    }

    /// Runs SQL (as [`Db::sql`]) and returns the rows of its last
    /// statement, which must be a query.
    pub fn query(&self, sql: &str) -> Result<pydb_query::Rows> {
        match self.sql(sql)?.pop() {
            Some(pydb_query::Output::Rows(rows)) => Ok(rows),
            _ => Err(Error::Sql(pydb_query::Error::Invalid(
                "Db::query needs a script whose last statement returns rows".into(),
            ))),
        }
    }

    /// A SQL session: a connection's state, for `BEGIN ... COMMIT` across
    /// several calls.
    pub fn sql_session(&self) -> pydb_query::Session {
        self.sql.session()
    }

    /// The SQL database (sessions share its catalog cache), for sessions
    /// with another default isolation level
    /// ([`pydb_query::Database::with_isolation`]) or the SQL verifier
    /// ([`pydb_query::check::check`]).
    pub fn sql_database(&self) -> &pydb_query::Database {
        &self.sql
    }

    /// The engine, for callers that need the trait directly. It holds
    /// version keys (see `pydb-txn`), not the keys the user wrote.
    pub fn engine(&self) -> &Arc<dyn StorageEngine> {
        self.txn.engine()
    }

    /// The transaction manager over the engine.
    pub fn txn_manager(&self) -> &TxnManager {
        &self.txn
    }

    /// The database directory; `None` for the memory engine.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The options the database was opened with.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Begins a read-write transaction at `isolation`. Dropping it without
    /// a commit rolls it back.
    pub fn begin(&self, isolation: Isolation) -> Result<Transaction> {
        Ok(self.txn.begin(isolation)?)
    }

    /// Begins a read-only transaction at `isolation`.
    pub fn begin_read_only(&self, isolation: Isolation) -> Result<Transaction> {
        Ok(self.txn.begin_read_only(isolation)?)
    }

    /// Begins a read-only transaction that sees the database as of commit
    /// `ts` (see [`Db::last_commit`]), while its versions are kept.
    pub fn begin_as_of(&self, ts: u64) -> Result<Transaction> {
        Ok(self.txn.begin_as_of(ts)?)
    }

    /// Begins a transaction with `options`.
    pub fn begin_with(&self, options: TxnOptions) -> Result<Transaction> {
        Ok(self.txn.begin_with(options)?)
    }

    /// Runs `f` in a transaction at `isolation` and commits it, running it
    /// again (a bounded number of times) when it fails with a retryable
    /// error: a write conflict, a serialization failure, a deadlock or a
    /// lock timeout.
    pub fn transaction<T>(
        &self,
        isolation: Isolation,
        f: impl FnMut(&mut Transaction) -> pydb_txn::Result<T>,
    ) -> Result<T> {
        Ok(self.txn.transaction(isolation, f)?)
    }

    /// The last commit timestamp (what [`Db::begin_as_of`] takes).
    pub fn last_commit(&self) -> u64 {
        self.txn.last_commit()
    }

    /// Runs a one-key read-modify-write `f` at snapshot isolation until it
    /// commits (see the module doc). `f` returns `Ok(Err(_))` for a user
    /// error (not an integer): nothing is written and it is not retried.
    fn read_modify_write<T>(
        &self,
        mut f: impl FnMut(&mut Transaction) -> pydb_txn::Result<Result<T>>,
    ) -> Result<T> {
        let mut attempt: u32 = 0;
        loop {
            let outcome = self.txn.begin(Isolation::Snapshot).and_then(|mut tx| {
                let value = f(&mut tx)?;
                tx.commit()?;
                Ok(value)
            });
            match outcome {
                Ok(value) => return value,
                Err(e) if e.is_retryable() && attempt + 1 < RMW_ATTEMPTS => {
                    attempt += 1;
                    // Let the winner's group commit finish before trying
                    // again, rather than spinning on the same snapshot.
                    self.txn.wait_for_pending_commits()?;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The time now on the database's clock (Unix ms): what expiry deadlines
    /// are compared with.
    pub fn now_ms(&self) -> u64 {
        self.txn.now_ms()
    }

    /// Sets `key` to `value`, expiring after `deadline_ms` (Unix ms). A
    /// deadline already past leaves the key without a value.
    pub fn set_with_expiry(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        deadline_ms: u64,
    ) -> Result<()> {
        let (key, value) = (key.as_ref(), value.as_ref());
        self.transaction(Isolation::ReadCommitted, |tx| {
            tx.set_with_deadline(key, value, Some(deadline_ms))
        })
    }

    /// Redis's `SET` with its options, as one transaction: writes `value`
    /// if `options.condition` holds, with the expiry `options.expiry`, and
    /// reports the old value (for `SET ... GET`).
    pub fn set_with(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        options: SetOptions,
    ) -> Result<SetOutcome> {
        let (key, value) = (key.as_ref(), value.as_ref());
        self.read_modify_write(|tx| crate::kv::set_with(tx, key, value, options).map(Ok))
    }

    /// Gives `key` the deadline `deadline_ms` (Unix ms) if every one of
    /// `conditions` holds (none: always), keeping its value; returns
    /// whether it did (Redis's `PEXPIREAT`). A missing key is left alone
    /// (`false`); a deadline at or before now deletes the key at once
    /// (`true`), as Redis does.
    pub fn expire_at(
        &self,
        key: impl AsRef<[u8]>,
        deadline_ms: u64,
        conditions: &[ExpireCondition],
    ) -> Result<bool> {
        let key = key.as_ref();
        self.read_modify_write(|tx| crate::kv::expire_at(tx, key, deadline_ms, conditions).map(Ok))
    }

    /// Removes the deadline of `key`; returns whether it had one (Redis's
    /// `PERSIST`).
    pub fn persist(&self, key: impl AsRef<[u8]>) -> Result<bool> {
        let key = key.as_ref();
        self.read_modify_write(|tx| crate::kv::persist(tx, key).map(Ok))
    }

    /// How long `key` has left (Redis's `PTTL`).
    pub fn ttl(&self, key: impl AsRef<[u8]>) -> Result<Ttl> {
        let tx = self.txn.begin_read_only(Isolation::Snapshot)?;
        Ok(crate::kv::ttl(&tx, key.as_ref())?)
    }

    /// Sets `key` to `value`, without a deadline (one it had is removed).
    pub fn set(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<()> {
        let (key, value) = (key.as_ref(), value.as_ref());
        self.transaction(Isolation::ReadCommitted, |tx| tx.set(key, value))
    }

    /// Sets `key` to `value` (without a deadline) if `condition` holds,
    /// atomically; returns whether it wrote.
    pub fn set_if(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        condition: SetCondition,
    ) -> Result<bool> {
        let (key, value) = (key.as_ref(), value.as_ref());
        self.read_modify_write(|tx| {
            let present = tx.get(key)?.is_some();
            let write = match condition {
                SetCondition::IfAbsent => !present,
                SetCondition::IfPresent => present,
            };
            if write {
                tx.set(key, value)?;
            }
            Ok(Ok(write))
        })
    }

    /// Adds `delta` to the integer stored at `key` (a missing key counts as
    /// 0) and returns the new value, atomically. The key keeps its expiry
    /// deadline.
    ///
    /// Fails with [`Error::NotAnInteger`] if the value is not the decimal
    /// text of a signed 64-bit integer, and with [`Error::Overflow`] if the
    /// sum does not fit; the value is then left unchanged.
    pub fn incr_by(&self, key: impl AsRef<[u8]>, delta: i64) -> Result<i64> {
        let key = key.as_ref();
        self.read_modify_write(|tx| crate::kv::incr_by(tx, key, delta))
    }

    /// The value of `key` as of the latest commit, or `None`.
    ///
    /// A read of one key needs no snapshot transaction: it is
    /// [`TxnManager::get_latest`](pydb_txn::TxnManager::get_latest), which
    /// reads the latest commit without registering a snapshot (the server's
    /// `GET`, where registering cost more than the read).
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>> {
        Ok(self.txn.get_latest(key.as_ref())?)
    }

    /// Deletes `key`; returns whether it had a value.
    pub fn delete(&self, key: impl AsRef<[u8]>) -> Result<bool> {
        let key = key.as_ref();
        self.read_modify_write(|tx| {
            let present = tx.get(key)?.is_some();
            if present {
                tx.delete(key)?;
            }
            Ok(Ok(present))
        })
    }

    /// Applies every operation of `batch` atomically (one transaction).
    pub fn write_batch(&self, batch: &WriteBatch) -> Result<()> {
        self.transaction(Isolation::ReadCommitted, |tx| {
            for op in batch.ops() {
                match op {
                    BatchOp::Set { key, value } => tx.set(key, value)?,
                    BatchOp::Delete { key } => tx.delete(key)?,
                }
            }
            Ok(())
        })
    }

    /// The number of keys, counted by a scan of one snapshot (the engine's
    /// `live_keys` counts versions, not keys). Exact, expiry included: an
    /// expired key is not counted even before the expirer deletes it
    /// (Redis's `DBSIZE` counts such keys until they are collected).
    pub fn key_count(&self) -> Result<u64> {
        // A stream: counting holds one key at a time, not the database.
        let mut count = 0;
        for item in self.txn.scan::<&[u8]>(..)? {
            item?;
            count += 1;
        }
        Ok(count)
    }

    /// The number of keys with an expiry deadline that has not passed
    /// (Redis's `expires=` in `INFO keyspace`), by a scan of one snapshot.
    pub fn expiring_key_count(&self) -> Result<u64> {
        let tx = self.txn.begin_read_only(Isolation::Snapshot)?;
        let items = tx.scan_with_deadlines::<&[u8]>(..)?;
        Ok(items.iter().filter(|(_, _, d)| d.is_some()).count() as u64)
    }

    /// The keys in `range` with their values, in ascending key order, e.g.
    /// `db.scan(b"a".as_slice()..b"c".as_slice())` or `db.scan::<&[u8]>(..)`.
    /// The items come from one snapshot.
    pub fn scan<T: AsRef<[u8]>>(&self, range: impl RangeBounds<T>) -> Result<Scan<'_>> {
        self.scan_range(KeyRange::new(range))
    }

    /// The keys in `range` with their values, in ascending key order.
    pub fn scan_range(&self, range: KeyRange) -> Result<Scan<'_>> {
        let items = self.txn.scan((range.start, range.end))?;
        Ok(Box::new(items.map(|item| item.map_err(Error::from))))
    }

    /// Makes every write so far durable, whatever the sync policy.
    pub fn flush(&self) -> Result<()> {
        Ok(self.engine().flush()?)
    }

    /// Collects the garbage versions, then reclaims the engine's space of
    /// overwritten and deleted data.
    pub fn compact(&self) -> Result<()> {
        self.txn.gc()?;
        Ok(self.engine().compact()?)
    }

    /// The engine's counters, then the transaction layer's (`txn_*`).
    pub fn stats(&self) -> Stats {
        let mut stats = self.engine().stats();
        // The engine counts records: every version of every key, and the
        // transaction layer's metadata. Users count keys: `live_keys` is
        // the number of keys a snapshot sees (a scan, as `DBSIZE`).
        for (name, _) in stats.counters.iter_mut() {
            if *name == "live_keys" {
                *name = "engine_live_records";
            }
        }
        if let Ok(keys) = self.key_count() {
            stats.counters.insert(0, ("live_keys", keys));
        }
        let t = self.txn.stats();
        stats.counters.extend([
            ("txn_last_commit", t.last_commit),
            ("txn_active", t.active),
            ("txn_committed", t.committed),
            ("txn_rolled_back", t.rolled_back),
            ("txn_write_conflicts", t.write_conflicts),
            ("txn_serialization_failures", t.serialization_failures),
            ("txn_commit_groups", t.commit_groups),
            ("txn_versions_written", t.versions_written),
            (
                "txn_versions_at_last_collection",
                t.versions_at_last_collection,
            ),
            ("txn_garbage_collected", t.garbage_collected),
            ("txn_collections", t.collections),
            ("txn_watermark", t.watermark),
            ("txn_expired_keys", t.expired_keys),
            ("txn_expire_cycles", t.expire_cycles),
        ]);
        stats
            .counters
            .push(("encrypted", u64::from(self.storage.data_key_id.is_some())));
        if let Some(totals) = &self.storage.compression {
            let sizes = totals.stats();
            stats.counters.extend([
                ("compressed_logical_bytes", sizes.logical_bytes),
                ("compressed_physical_bytes", sizes.physical_bytes),
                // Physical bytes per 1000 logical ones: 500 is halved.
                (
                    "compression_ratio_permille",
                    (sizes.ratio() * 1000.0).round() as u64,
                ),
            ]);
        }
        stats
    }

    /// The id of the data key that encrypts the database's files (a public
    /// fingerprint, see [`DataKey::id`]); `None` when not encrypted.
    pub fn data_key_id(&self) -> Option<[u8; 8]> {
        self.storage.data_key_id
    }

    /// The logical and physical sizes of the compressed files this database
    /// has opened; `None` when it is not compressed.
    pub fn compression_stats(&self) -> Option<CompressionStats> {
        self.storage
            .compression
            .as_ref()
            .map(CompressionTotals::stats)
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

/// Refuses settings that cannot work, before anything is created: the
/// memory engine writes no files to encrypt or compress, and the B+tree
/// rewrites pages in place, which a compressed file refuses.
fn validate_storage_options(options: &Options) -> Result<()> {
    if !options.engine.is_persistent()
        && (options.encryption.is_some() || options.compression != Compression::None)
    {
        return Err(Error::InvalidArgument(
            "the memory engine writes no files: encryption and compression do not apply".into(),
        ));
    }
    if options.engine == EngineKind::BTree && options.compression != Compression::None {
        return Err(Error::InvalidArgument(
            "the btree engine rewrites its pages in place, which a compressed file cannot do: \
             use --compression lz4 with the log or lsm engine (page-level compression is a \
             different design)"
                .into(),
        ));
    }
    Ok(())
}

/// Checks (or creates) the directory and its metadata for a persistent
/// engine, under the directory lock. Returns the metadata and, for an
/// encrypted database, its unwrapped data key.
///
/// Every check that can fail (engine, settings, key) runs before `PYDB` is
/// rewritten, so a refused open changes nothing on disk.
fn prepare_dir(dir: &Path, options: &Options) -> Result<(Metadata, Option<DataKey>)> {
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
            let (data_key, wrapped_key) = match &options.encryption {
                Some(material) => {
                    let (key, wrapped) = WrappedKey::generate(material);
                    (Some(key), Some(wrapped))
                }
                None => (None, None),
            };
            let created = Metadata {
                compression: options.compression,
                wrapped_key,
                ..Metadata::new(options.engine, index)
            };
            meta::write(dir, &created)?;
            Ok((created, data_key))
        }
        Some(found) => {
            if found.format_version < meta::META_OLDEST_OPENABLE_VERSION {
                return Err(Error::OldFormat {
                    dir: dir.to_path_buf(),
                    found: found.format_version,
                    supported: meta::META_FORMAT_VERSION,
                });
            }
            if found.engine != options.engine {
                return Err(Error::WrongEngine {
                    dir: dir.to_path_buf(),
                    on_disk: found.engine,
                    asked: options.engine,
                });
            }
            if found.compression != options.compression {
                return Err(Error::SettingsMismatch {
                    dir: dir.to_path_buf(),
                    reason: format!(
                        "it was created with compression {}, and is opened with {} (use --compression {})",
                        found.compression, options.compression, found.compression
                    ),
                });
            }
            let data_key = match (&found.wrapped_key, &options.encryption) {
                (Some(wrapped), Some(material)) => {
                    Some(wrapped.unwrap(material).map_err(|e| Error::WrongKey {
                        dir: dir.to_path_buf(),
                        reason: e.to_string(),
                    })?)
                }
                (Some(_), None) => {
                    return Err(Error::KeyRequired {
                        dir: dir.to_path_buf(),
                    });
                }
                (None, Some(_)) => {
                    return Err(Error::SettingsMismatch {
                        dir: dir.to_path_buf(),
                        reason: "it is not encrypted, and an encryption key was given \
                                 (open it without --encryption-key-file)"
                            .into(),
                    });
                }
                (None, None) => None,
            };
            // The index lives in memory and is rebuilt on every open, so
            // any index can open any log database; the metadata records the
            // one used last, for `pydb inspect`. An older version (2) is
            // rewritten as the current one, with no flags.
            if found.index != index || found.format_version != meta::META_FORMAT_VERSION {
                let updated = Metadata {
                    format_version: meta::META_FORMAT_VERSION,
                    index,
                    ..found
                };
                meta::write(dir, &updated)?;
                return Ok((updated, data_key));
            }
            Ok((found, data_key))
        }
    }
}

/// Key rotation: rewraps the data key of the closed, encrypted database in
/// `dir` with the key material `new`, after unwrapping it with `old`.
/// Returns the data key's id, which does not change.
///
/// No data file is touched: only the 112-byte wrapped key in `PYDB`
/// changes, through [`meta::write`] (a temporary file, fsync, rename, fsync
/// of the directory). A crash leaves the old `PYDB`, which the old key file
/// opens, or the new one, which the new key file opens; never neither.
pub fn rotate_key(dir: &Path, old: &KeyMaterial, new: &KeyMaterial) -> Result<[u8; 8]> {
    let _lock = DirLock::acquire(dir)?;
    meta::remove_stale_temp(dir)?;
    let found = meta::read(dir)?.ok_or_else(|| Error::NotADatabase {
        dir: dir.to_path_buf(),
        found: "no PYDB metadata file".into(),
    })?;
    let wrapped = found
        .wrapped_key
        .as_ref()
        .ok_or_else(|| Error::SettingsMismatch {
            dir: dir.to_path_buf(),
            reason: "it is not encrypted: there is no data key to rewrap".into(),
        })?;
    let rotated = wrapped.rewrap(old, new).map_err(|e| Error::WrongKey {
        dir: dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    let key_id = rotated.key_id();
    meta::write(
        dir,
        &Metadata {
            format_version: meta::META_FORMAT_VERSION,
            wrapped_key: Some(rotated),
            ..found
        },
    )?;
    Ok(key_id)
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
        let db = Db::memory().unwrap();
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
