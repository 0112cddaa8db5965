//! The stores under test, all behind two small traits.
//!
//! A [`Store`] is one open database; a [`Handle`] is what one benchmark
//! thread uses to talk to it. The split exists because not every database
//! lets threads share one connection: SQLite wants a connection per thread,
//! while redb, fjall, LMDB and every pydb engine are shared by reference, so
//! their handles are just a borrowed pointer.
//!
//! Every store is registered once in [`registry`] as a [`StoreKind`]: its
//! name, whether it persists anything, how to open it for a [`StoreConfig`],
//! and a one-line description of the settings it runs with (printed in the
//! output so that readers can judge the fairness of the comparison).
//!
//! Invariants every implementation keeps:
//! - with [`WriteMode::Synced`], each `put`/`put_batch`/`delete` is durable
//!   (survives power loss) when it returns; with [`WriteMode::Unsynced`] it
//!   only has to survive a crash of the process, the way each store's own
//!   documentation describes its relaxed mode;
//! - [`Store::flush`] makes everything written so far durable;
//! - dropping a store closes it cleanly, so that reopening the same
//!   directory in the same process works.

mod fjall;
mod lmdb;
mod pydb;
mod redb;
#[cfg(feature = "rocksdb")]
mod rocksdb;
mod sqlite;

use std::path::Path;

/// The error type of the benchmark: every store has its own, and the
/// benchmark only reports them.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// The result type of the benchmark.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How durable each write must be when it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Every write is on stable storage before it returns (fsync/fdatasync).
    Synced,
    /// Writes reach the operating system but are not synced one by one.
    Unsynced,
}

/// Everything a store needs to know to configure itself for a workload.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Durability of each write.
    pub mode: WriteMode,
    /// Memory the store may use for its own page or block cache, in bytes.
    /// Stores that rely on the OS page cache (LMDB, pydb's log) ignore it.
    pub cache_bytes: u64,
    /// An upper bound on the data the workload writes (keys plus values),
    /// used to size LMDB's memory map.
    pub data_bytes_hint: u64,
}

/// One open database.
pub trait Store: Send + Sync {
    /// A handle for the calling thread.
    fn handle(&self) -> Result<Box<dyn Handle + '_>>;

    /// Makes every write so far durable.
    fn flush(&self) -> Result<()>;
}

/// What one benchmark thread does to a store.
pub trait Handle {
    /// Sets `key` to `value`.
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()>;

    /// Sets every pair atomically, in one transaction or write batch.
    fn put_batch(&mut self, pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<()>;

    /// Reads `key`; returns the length of its value, if it has one. The
    /// value's bytes must really have been read (copied or borrowed from the
    /// store), not just located.
    fn get(&mut self, key: &[u8]) -> Result<Option<usize>>;

    /// Deletes `key` (which may be absent).
    fn delete(&mut self, key: &[u8]) -> Result<()>;

    /// Reads up to `limit` pairs in key order from the first key at or after
    /// `start`; returns how many it read.
    fn scan(&mut self, start: &[u8], limit: usize) -> Result<usize>;

    /// Reads every pair in key order, calling `each` with each value's
    /// length.
    fn scan_all(&mut self, each: &mut dyn FnMut(usize)) -> Result<()>;

    /// A transfer: in one read-write transaction, reads `a` and `b` and
    /// writes each the other's value. Returns how many times the store
    /// aborted the transaction on a conflict and it was run again (always 0
    /// for stores that let one writer in at a time). Stores without such
    /// transactions refuse (see [`TRANSACTIONAL`]).
    fn transfer(&mut self, a: &[u8], b: &[u8]) -> Result<u64> {
        let _ = (a, b);
        Err("this store has no multi-key read-write transactions".into())
    }
}

/// How to open a store, and what it is.
#[derive(Clone, Copy)]
pub struct StoreKind {
    /// The name used by `--stores` and in the output.
    pub name: &'static str,
    /// Whether the store writes anything to disk. Stores that do not are
    /// skipped on workloads about durability or reopening.
    pub persistent: bool,
    /// Opens (creating if needed) the store in `dir`.
    pub open: fn(&Path, &StoreConfig) -> Result<Box<dyn Store>>,
    /// The settings the store runs with for `config`, in one line.
    pub settings: fn(&StoreConfig) -> String,
}

impl std::fmt::Debug for StoreKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreKind")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The stores whose handles run [`Handle::transfer`] (read-write
/// transactions over several keys).
pub const TRANSACTIONAL: &[&str] = &[
    "pydb-txn-log-btree",
    "pydb-txn-log-bplustree",
    "pydb-txn-btree",
    "sqlite",
    "redb",
    "lmdb",
];

/// Every store this build knows, pydb's engines first.
pub fn registry() -> Vec<StoreKind> {
    let mut stores = pydb::stores();
    stores.extend([redb::KIND, fjall::KIND, lmdb::KIND, sqlite::KIND]);
    #[cfg(feature = "rocksdb")]
    stores.push(rocksdb::KIND);
    stores
}

/// The stores named in `names` (a comma list), or for `None` every store
/// but pydb's engines on decorated files (`+enc`, `+lz4`: opt-in).
pub fn select(names: Option<&str>) -> Result<Vec<StoreKind>> {
    let all = registry();
    let Some(names) = names else {
        return Ok(all.into_iter().filter(|k| !k.name.contains('+')).collect());
    };
    let mut chosen = Vec::new();
    for name in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        match all.iter().find(|k| k.name == name) {
            Some(kind) => chosen.push(*kind),
            None if name == "rocksdb" => {
                return Err(
                    "rocksdb is not built in: rebuild with `--features rocksdb` to include it"
                        .into(),
                );
            }
            None => {
                let known: Vec<&str> = all.iter().map(|k| k.name).collect();
                return Err(format!("unknown store {name:?}; known: {}", known.join(", ")).into());
            }
        }
    }
    Ok(chosen)
}

/// Looks a store up by exact name.
pub fn find(name: &str) -> Result<StoreKind> {
    registry()
        .into_iter()
        .find(|k| k.name == name)
        .ok_or_else(|| format!("unknown store {name:?}").into())
}
