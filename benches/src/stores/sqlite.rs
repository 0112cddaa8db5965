//! SQLite (through rusqlite, bundled): a B-tree table behind SQL.
//!
//! Configured as SQLite's documentation recommends for an embedded
//! key-value workload: one table `kv(k BLOB PRIMARY KEY, v BLOB) WITHOUT
//! ROWID` (the key is the clustered index, no hidden rowid), write-ahead
//! logging (`journal_mode=WAL`), cached prepared statements, and one
//! connection per thread (a connection must not be shared between threads
//! that run statements at once). `synchronous=FULL` syncs the WAL on every
//! commit; `synchronous=NORMAL` (SQLite's recommendation with WAL) syncs only
//! at checkpoints, so a power loss may undo the last commits but never
//! corrupts the file. The flush is `wal_checkpoint(FULL)`, which syncs the
//! WAL and the database. `cache_size` is the benchmark's cache budget, per
//! connection; writers that find the database busy wait up to 10 s.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{Handle, Result, Store, StoreConfig, StoreKind, WriteMode};

pub const KIND: StoreKind = StoreKind {
    name: "sqlite",
    persistent: true,
    open,
    settings: |c| {
        format!(
            "WAL, synchronous={}, WITHOUT ROWID, prepared stmts, conn per thread, cache {} MiB/conn",
            synchronous(c),
            c.cache_bytes >> 20
        )
    },
};

fn synchronous(config: &StoreConfig) -> &'static str {
    match config.mode {
        WriteMode::Synced => "FULL",
        WriteMode::Unsynced => "NORMAL",
    }
}

fn open(dir: &Path, config: &StoreConfig) -> Result<Box<dyn Store>> {
    let path = dir.join("data.sqlite");
    let main = connect(&path, config)?;
    main.execute_batch("CREATE TABLE IF NOT EXISTS kv (k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID")?;
    Ok(Box::new(SqliteStore {
        path,
        config: config.clone(),
        main: parking_lot::Mutex::new(main),
    }))
}

/// A connection with the benchmark's pragmas.
fn connect(path: &Path, config: &StoreConfig) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    // journal_mode answers with a row, so it is read rather than executed.
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(format!("SQLite refused WAL mode (got {mode})").into());
    }
    conn.pragma_update(None, "synchronous", synchronous(config))?;
    // A negative cache_size is in KiB rather than pages.
    let cache_kib = i64::try_from(config.cache_bytes / 1024)?;
    conn.pragma_update(None, "cache_size", -cache_kib)?;
    Ok(conn)
}

struct SqliteStore {
    path: PathBuf,
    config: StoreConfig,
    /// The connection that created the schema, kept for flushes and so that
    /// the WAL is not checkpointed and deleted between handles.
    main: parking_lot::Mutex<Connection>,
}

impl Store for SqliteStore {
    fn handle(&self) -> Result<Box<dyn Handle + '_>> {
        Ok(Box::new(SqliteHandle {
            conn: connect(&self.path, &self.config)?,
        }))
    }

    fn flush(&self) -> Result<()> {
        let main = self.main.lock();
        main.query_row("PRAGMA wal_checkpoint(FULL)", [], |_| Ok(()))?;
        Ok(())
    }
}

struct SqliteHandle {
    conn: Connection,
}

const PUT: &str = "INSERT OR REPLACE INTO kv (k, v) VALUES (?1, ?2)";

impl Handle for SqliteHandle {
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.conn
            .prepare_cached(PUT)?
            .execute(params![key, value])?;
        Ok(())
    }

    fn put_batch(&mut self, pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        // IMMEDIATE takes the write lock up front, so a busy database is
        // waited for at BEGIN instead of failing halfway through the batch.
        let txn = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut stmt = txn.prepare_cached(PUT)?;
            for (k, v) in pairs {
                stmt.execute(params![k, v])?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    fn get(&mut self, key: &[u8]) -> Result<Option<usize>> {
        let mut stmt = self.conn.prepare_cached("SELECT v FROM kv WHERE k = ?1")?;
        let len = stmt
            .query_row(params![key], |row| {
                Ok(std::hint::black_box(row.get_ref(0)?.as_blob()?).len())
            })
            .optional()?;
        Ok(len)
    }

    fn delete(&mut self, key: &[u8]) -> Result<()> {
        self.conn
            .prepare_cached("DELETE FROM kv WHERE k = ?1")?
            .execute(params![key])?;
        Ok(())
    }

    fn scan(&mut self, start: &[u8], limit: usize) -> Result<usize> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT k, v FROM kv WHERE k >= ?1 ORDER BY k LIMIT ?2")?;
        let mut rows = stmt.query(params![start, i64::try_from(limit)?])?;
        let mut read = 0;
        while let Some(row) = rows.next()? {
            std::hint::black_box(row.get_ref(1)?.as_blob()?);
            read += 1;
        }
        Ok(read)
    }

    fn transfer(&mut self, a: &[u8], b: &[u8]) -> Result<u64> {
        // BEGIN IMMEDIATE: the write lock is taken up front, so the
        // transaction never fails on an upgrade; writers run one at a time.
        let txn = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut get = txn.prepare_cached("SELECT v FROM kv WHERE k = ?1")?;
            let va: Option<Vec<u8>> = get.query_row(params![a], |r| r.get(0)).optional()?;
            let vb: Option<Vec<u8>> = get.query_row(params![b], |r| r.get(0)).optional()?;
            let mut put = txn.prepare_cached(PUT)?;
            put.execute(params![a, vb.unwrap_or_default()])?;
            put.execute(params![b, va.unwrap_or_default()])?;
        }
        txn.commit()?;
        Ok(0)
    }

    fn scan_all(&mut self, each: &mut dyn FnMut(usize)) -> Result<()> {
        let mut stmt = self.conn.prepare_cached("SELECT k, v FROM kv ORDER BY k")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            each(row.get_ref(1)?.as_blob()?.len());
        }
        Ok(())
    }
}
