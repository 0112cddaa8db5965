//! Shared harness of the transaction tests: the engines every suite runs
//! on, opened fresh in a scratch directory.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use pydb_file::MonolithicOpener;
use pydb_index::BTreeIndex;
use pydb_storage::{
    AppendOnlyLogStorage, BTreeOptions, BTreeStorage, LogOptions, MemoryStorage, StorageEngine,
};
use pydb_txn::{Options, TxnManager};
use pydb_wal::SyncPolicy;

/// An engine the suites run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `MemoryStorage`.
    Memory,
    /// `AppendOnlyLogStorage` with the B-tree index.
    Log,
    /// `BTreeStorage`.
    BTree,
}

impl Kind {
    /// Every engine.
    pub const ALL: [Kind; 3] = [Kind::Memory, Kind::Log, Kind::BTree];

    /// Opens the engine in `dir`.
    pub fn open(self, dir: &Path) -> Arc<dyn StorageEngine> {
        match self {
            Kind::Memory => Arc::new(MemoryStorage::new()),
            Kind::Log => Arc::new(
                AppendOnlyLogStorage::open_with(
                    dir,
                    MonolithicOpener,
                    BTreeIndex::new(),
                    log_options(),
                )
                .unwrap(),
            ),
            Kind::BTree => Arc::new(BTreeStorage::open(dir, btree_options()).unwrap()),
        }
    }
}

/// Log options: every commit synced, small segments, no background work.
pub fn log_options() -> LogOptions {
    LogOptions {
        sync_policy: SyncPolicy::Always,
        max_segment_size: 1 << 20,
        max_key_size: 1024,
        max_value_size: 64 << 10,
        compaction_threshold: 0.5,
        compaction_min_dead_bytes: 1 << 20,
        background_compaction: false,
        compaction_interval: Duration::from_secs(1),
        preallocate: pydb_storage::log::DEFAULT_PREALLOCATE,
    }
}

/// B+tree options: every commit synced, a small pool.
pub fn btree_options() -> BTreeOptions {
    BTreeOptions {
        page_size: 4096,
        pool_bytes: 64 * 4096,
        sync: SyncPolicy::Always,
        checkpoint_bytes: 1 << 20,
        max_key_len: 1024,
        max_value_len: 64 << 10,
        ..BTreeOptions::default()
    }
}

/// A scratch directory, in memory where the machine has `/dev/shm`.
pub fn scratch() -> tempfile::TempDir {
    tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap()
}

/// Manager options for tests: no background collection (tests collect on
/// demand), short lock waits.
pub fn options() -> Options {
    Options {
        gc_interval: None,
        ..Options::default()
    }
}

/// A manager over a fresh engine of `kind` (keep the dir alive with it).
pub struct Db {
    pub dir: tempfile::TempDir,
    pub kind: Kind,
    pub mgr: TxnManager,
}

impl Db {
    pub fn new(kind: Kind) -> Self {
        Self::with_options(kind, options())
    }

    pub fn with_options(kind: Kind, options: Options) -> Self {
        let dir = scratch();
        let mgr = TxnManager::open(kind.open(dir.path()), options).unwrap();
        Self { dir, kind, mgr }
    }

    /// Closes and reopens the manager and engine (memory: starts empty).
    pub fn reopen(&mut self, options: Options) {
        let dummy = TxnManager::open(Arc::new(MemoryStorage::new()), self::options()).unwrap();
        drop(std::mem::replace(&mut self.mgr, dummy));
        self.mgr = TxnManager::open(self.kind.open(self.dir.path()), options).unwrap();
    }
}
