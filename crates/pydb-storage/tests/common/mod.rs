//! Shared harness of the storage tests: every engine x index combination,
//! opened fresh in a temp dir and reopened from the same dir.
//!
//! To run the suites on a new engine or index, add a variant to [`Kind`]
//! and its arm in [`Kind::open`]; then a line `conformance_suite!(...)` in
//! `conformance.rs` and `model_suite!(...)` in `model.rs` (and one in
//! [`for_each_engine!`] for the engine-specific tests).

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use pydb_file::{CompressedOpener, DataKey, EncryptedOpener, MonolithicOpener};
use pydb_index::{BPlusTreeIndex, BTreeIndex, InMemoryIndex, Index, SkipListIndex};
use pydb_storage::{
    AppendOnlyLogStorage, BTreeOptions, BTreeStorage, Location, LogOptions, LsmOptions, LsmStorage,
    MemoryStorage, StorageEngine,
};
use pydb_wal::SyncPolicy;

/// An engine (and index) the suites run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `MemoryStorage`: the model; nothing survives a reopen.
    Memory,
    /// The log engine with the hash-map index.
    LogHash,
    /// The log engine with the B-tree index.
    LogBTree,
    /// The log engine with the skip-list index.
    LogSkipList,
    /// The log engine with the B+tree index (its default).
    LogBPlusTree,
    /// The B+tree page engine.
    BTree,
    /// The LSM-tree engine, with tiny memtables and tables.
    Lsm,
    /// The log engine (B-tree index) over encrypted files.
    LogEncrypted,
    /// The log engine (B-tree index) over lz4-compressed files.
    LogCompressed,
    /// The B+tree page engine over encrypted files.
    BTreeEncrypted,
    /// The LSM-tree engine over encrypted files.
    LsmEncrypted,
    /// The LSM-tree engine over lz4-compressed files.
    LsmCompressed,
}

/// The data key of the encrypted kinds.
pub fn test_key() -> DataKey {
    DataKey::from_bytes([0x5A; 32])
}

/// Every persistent kind, for the model test.
pub const PERSISTENT: &[Kind] = &[
    Kind::LogHash,
    Kind::LogBTree,
    Kind::LogSkipList,
    Kind::LogBPlusTree,
    Kind::BTree,
    Kind::Lsm,
];

/// B+tree options with the same key/value limits as [`test_options`], a
/// 16-frame pool (evictions) and frequent checkpoints.
pub fn btree_options(log: &LogOptions) -> BTreeOptions {
    BTreeOptions {
        page_size: 4096,
        pool_bytes: 16 * 4096,
        sync: log.sync_policy,
        checkpoint_bytes: 64 << 10,
        max_key_len: log.max_key_size,
        max_value_len: log.max_value_size,
        ..BTreeOptions::default()
    }
}

/// LSM options with the same limits as [`test_options`] and a memtable,
/// blocks and tables so small that flushes and compactions happen often.
pub fn lsm_options(log: &LogOptions) -> LsmOptions {
    LsmOptions {
        sync_policy: log.sync_policy,
        memtable_size: 4096,
        block_size: 256,
        restart_interval: 4,
        l0_compaction_trigger: 2,
        l0_slowdown_trigger: 6,
        l0_stop_trigger: 8,
        level1_size: 16 << 10,
        level_size_ratio: 4,
        target_file_size: 4096,
        block_cache_bytes: 16 << 10,
        max_open_tables: 8,
        max_key_size: log.max_key_size,
        max_value_size: log.max_value_size,
        ..LsmOptions::default()
    }
}

/// Options small enough that the tests cross segment boundaries often.
pub fn test_options() -> LogOptions {
    LogOptions {
        sync_policy: SyncPolicy::Always,
        max_segment_size: 2048,
        max_key_size: 512,
        max_value_size: 64 << 10,
        compaction_threshold: 0.5,
        compaction_min_dead_bytes: 1,
        background_compaction: false,
        compaction_interval: Duration::from_millis(20),
        // Small, so that tests with small segments cross preallocation
        // steps and crash inside zeros written ahead of the end.
        preallocate: 512,
    }
}

impl Kind {
    /// Whether data survives a reopen.
    pub fn persistent(self) -> bool {
        self != Kind::Memory
    }

    /// Whether the engine's files are encrypted.
    pub fn encrypted(self) -> bool {
        matches!(
            self,
            Kind::LogEncrypted | Kind::BTreeEncrypted | Kind::LsmEncrypted
        )
    }

    /// Whether this is the B+tree page engine (on any files).
    pub fn is_btree(self) -> bool {
        matches!(self, Kind::BTree | Kind::BTreeEncrypted)
    }

    /// The key and value limits, if the engine has any.
    pub fn limits(self) -> Option<(usize, usize)> {
        let o = test_options();
        Some((o.max_key_size, o.max_value_size))
    }

    /// Opens the engine in `dir` with `options` (ignored by memory).
    pub fn open_with(
        self,
        dir: &Path,
        options: LogOptions,
    ) -> pydb_storage::Result<Box<dyn StorageEngine>> {
        fn log<I: Index<Location> + Default + 'static>(
            dir: &Path,
            options: LogOptions,
        ) -> pydb_storage::Result<Box<dyn StorageEngine>> {
            let engine =
                AppendOnlyLogStorage::open_with(dir, MonolithicOpener, I::default(), options)?;
            Ok(Box::new(engine))
        }
        let btree_encrypted = |dir: &Path, options: &LogOptions| {
            let opener = EncryptedOpener::new(MonolithicOpener, test_key());
            let engine = BTreeStorage::open_with(dir, btree_options(options), opener)?;
            Ok::<Box<dyn StorageEngine>, pydb_storage::Error>(Box::new(engine))
        };
        match self {
            Kind::Memory => Ok(Box::new(MemoryStorage::with_limits(
                options.max_key_size,
                options.max_value_size,
            ))),
            Kind::LogHash => log::<InMemoryIndex<Location>>(dir, options),
            Kind::LogBTree => log::<BTreeIndex<Location>>(dir, options),
            Kind::LogSkipList => log::<SkipListIndex<Location>>(dir, options),
            Kind::LogBPlusTree => log::<BPlusTreeIndex<Location>>(dir, options),
            Kind::BTree => Ok(Box::new(BTreeStorage::open(dir, btree_options(&options))?)),
            Kind::Lsm => Ok(Box::new(LsmStorage::open(dir, lsm_options(&options))?)),
            Kind::LogEncrypted => Ok(Box::new(AppendOnlyLogStorage::open_with(
                dir,
                EncryptedOpener::new(MonolithicOpener, test_key()),
                BTreeIndex::<Location>::default(),
                options,
            )?)),
            Kind::LogCompressed => Ok(Box::new(AppendOnlyLogStorage::open_with(
                dir,
                CompressedOpener::new(MonolithicOpener),
                BTreeIndex::<Location>::default(),
                options,
            )?)),
            Kind::BTreeEncrypted => btree_encrypted(dir, &options),
            Kind::LsmEncrypted => Ok(Box::new(LsmStorage::open_with(
                dir,
                EncryptedOpener::new(MonolithicOpener, test_key()),
                lsm_options(&options),
            )?)),
            Kind::LsmCompressed => Ok(Box::new(LsmStorage::open_with(
                dir,
                CompressedOpener::new(MonolithicOpener),
                lsm_options(&options),
            )?)),
        }
    }

    /// Opens the engine in `dir` with the test options.
    pub fn open(self, dir: &Path) -> pydb_storage::Result<Box<dyn StorageEngine>> {
        self.open_with(dir, test_options())
    }
}

impl pydb_storage::testing::TestEngine for Kind {
    fn open(&self, dir: &Path) -> pydb_storage::Result<Box<dyn StorageEngine>> {
        Kind::open(*self, dir)
    }

    fn persistent(&self) -> bool {
        Kind::persistent(*self)
    }

    fn limits(&self) -> Option<(usize, usize)> {
        Kind::limits(*self)
    }
}

/// Instantiates every listed test function (each taking a [`Kind`]) once
/// per engine, in a module per engine.
#[macro_export]
macro_rules! for_each_engine {
    ($($test:ident),* $(,)?) => {
        mod memory {
            $(#[test] fn $test() { super::$test(super::common::Kind::Memory) })*
        }
        mod log_hash {
            $(#[test] fn $test() { super::$test(super::common::Kind::LogHash) })*
        }
        mod log_btree {
            $(#[test] fn $test() { super::$test(super::common::Kind::LogBTree) })*
        }
        mod log_skiplist {
            $(#[test] fn $test() { super::$test(super::common::Kind::LogSkipList) })*
        }
        mod log_bplustree {
            $(#[test] fn $test() { super::$test(super::common::Kind::LogBPlusTree) })*
        }
        mod btree {
            $(#[test] fn $test() { super::$test(super::common::Kind::BTree) })*
        }
        mod lsm {
            $(#[test] fn $test() { super::$test(super::common::Kind::Lsm) })*
        }
        mod log_encrypted {
            $(#[test] fn $test() { super::$test(super::common::Kind::LogEncrypted) })*
        }
        mod log_compressed {
            $(#[test] fn $test() { super::$test(super::common::Kind::LogCompressed) })*
        }
        mod btree_encrypted {
            $(#[test] fn $test() { super::$test(super::common::Kind::BTreeEncrypted) })*
        }
        mod lsm_encrypted {
            $(#[test] fn $test() { super::$test(super::common::Kind::LsmEncrypted) })*
        }
        mod lsm_compressed {
            $(#[test] fn $test() { super::$test(super::common::Kind::LsmCompressed) })*
        }
    };
}

/// What the tests compare engines with: every key and value, in order.
pub type Model = BTreeMap<Vec<u8>, Vec<u8>>;

/// Everything `engine` holds, read with one full scan.
pub fn contents(engine: &dyn StorageEngine) -> Model {
    engine
        .scan(pydb_storage::KeyRange::all())
        .unwrap()
        .map(|item| {
            let (k, v) = item.unwrap();
            (k.to_vec(), v.to_vec())
        })
        .collect()
}
