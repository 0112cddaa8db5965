//! pydb's own engines, through one generic adapter over `StorageEngine`.
//!
//! Every pydb engine implements the same trait, so one [`EngineStore`]
//! wraps them all and adding an engine (or an engine with another index) to
//! the benchmark is one entry in [`stores`], opened through the engine
//! registry (`pydb_storage::registry`). The engine is shared by every
//! thread: the trait promises `Send + Sync` and `&self` methods.

use std::ops::{Bound, ControlFlow};
use std::path::Path;

use bytes::Bytes;
use pydb_file::{CompressedOpener, DataKey, EncryptedOpener, MonolithicOpener};
use pydb_storage::{
    BTreeOptions, EngineConfig, LogOptions, LsmOptions, StorageEngine, WriteBatch, open_engine,
    open_engine_with,
};
use pydb_wal::SyncPolicy;

use pydb_txn::{Isolation, TxnManager};

use super::{Handle, Result, Store, StoreConfig, StoreKind, WriteMode};

/// pydb's engines, one entry per engine and index.
pub fn stores() -> Vec<StoreKind> {
    vec![
        StoreKind {
            name: "pydb-log-btree",
            persistent: true,
            open: |dir, c| open_named("log-btree", dir, c),
            settings: |c| log_settings(c, "BTreeIndex"),
        },
        StoreKind {
            name: "pydb-log-bplustree",
            persistent: true,
            open: |dir, c| open_named("log-bplustree", dir, c),
            settings: |c| log_settings(c, "BPlusTreeIndex (the default)"),
        },
        StoreKind {
            name: "pydb-log-hash",
            persistent: true,
            open: |dir, c| open_named("log-hash", dir, c),
            settings: |c| log_settings(c, "InMemoryIndex (hash)"),
        },
        StoreKind {
            name: "pydb-log-skiplist",
            persistent: true,
            open: |dir, c| open_named("log-skiplist", dir, c),
            settings: |c| log_settings(c, "SkipListIndex"),
        },
        StoreKind {
            name: "pydb-btree",
            persistent: true,
            open: |dir, c| open_named("btree", dir, c),
            settings: |c| {
                let o = btree_options(c);
                format!(
                    "{} B pages, {} MiB buffer pool, SyncPolicy::{:?}, checkpoint when the WAL \
                     holds {}x the dirty pages (at least {} MiB, at most {} MiB)",
                    o.page_size,
                    o.pool_bytes >> 20,
                    o.sync,
                    o.checkpoint_dirty_ratio,
                    o.checkpoint_min_bytes >> 20,
                    o.checkpoint_bytes >> 20
                )
            },
        },
        StoreKind {
            name: "pydb-lsm",
            persistent: true,
            open: |dir, c| open_named("lsm", dir, c),
            settings: |c| {
                let o = lsm_options(c);
                format!(
                    "{} MiB memtable, {} KiB blocks, {} bloom bits/key, {:?} compaction, \
                     block cache {} MiB, SyncPolicy::{:?}",
                    o.memtable_size >> 20,
                    o.block_size >> 10,
                    o.bloom_bits_per_key,
                    o.style,
                    o.block_cache_bytes >> 20,
                    o.sync_policy
                )
            },
        },
        StoreKind {
            name: "pydb-txn-log-btree",
            persistent: true,
            open: |dir, c| open_txn("log-btree", dir, c),
            settings: |c| {
                format!(
                    "pydb-txn (MVCC, serializable transfers) over {}",
                    log_settings(c, "BTreeIndex")
                )
            },
        },
        StoreKind {
            name: "pydb-txn-log-bplustree",
            persistent: true,
            open: |dir, c| open_txn("log-bplustree", dir, c),
            settings: |c| {
                format!(
                    "pydb-txn (MVCC, serializable transfers) over {}",
                    log_settings(c, "BPlusTreeIndex (the default)")
                )
            },
        },
        StoreKind {
            name: "pydb-txn-btree",
            persistent: true,
            open: |dir, c| open_txn("btree", dir, c),
            settings: |c| {
                let o = btree_options(c);
                format!(
                    "pydb-txn (MVCC, serializable transfers) over the B+tree: {} B pages, {} MiB pool, SyncPolicy::{:?}",
                    o.page_size,
                    o.pool_bytes >> 20,
                    o.sync
                )
            },
        },
        // The same engines on encrypted or lz4-compressed files (issue 15's
        // goals compare each with its plain engine). Opt-in: not in the
        // default list.
        StoreKind {
            name: "pydb-log-bplustree+enc",
            persistent: true,
            open: |dir, c| open_decorated("log-bplustree", dir, c, Decorator::Encrypted),
            settings: |c| {
                decorated_settings(log_settings(c, "BPlusTreeIndex"), Decorator::Encrypted)
            },
        },
        StoreKind {
            name: "pydb-btree+enc",
            persistent: true,
            open: |dir, c| open_decorated("btree", dir, c, Decorator::Encrypted),
            settings: |_| {
                decorated_settings("the B+tree, 4096 B pages".into(), Decorator::Encrypted)
            },
        },
        StoreKind {
            name: "pydb-lsm+enc",
            persistent: true,
            open: |dir, c| open_decorated("lsm", dir, c, Decorator::Encrypted),
            settings: |_| decorated_settings("the LSM engine".into(), Decorator::Encrypted),
        },
        StoreKind {
            name: "pydb-log-bplustree+lz4",
            persistent: true,
            open: |dir, c| open_decorated("log-bplustree", dir, c, Decorator::Lz4),
            settings: |c| decorated_settings(log_settings(c, "BPlusTreeIndex"), Decorator::Lz4),
        },
        StoreKind {
            name: "pydb-lsm+lz4",
            persistent: true,
            open: |dir, c| open_decorated("lsm", dir, c, Decorator::Lz4),
            settings: |_| decorated_settings("the LSM engine".into(), Decorator::Lz4),
        },
        StoreKind {
            name: "pydb-memory",
            persistent: false,
            open: |dir, c| open_named("memory", dir, c),
            settings: |_| "BTreeMap behind an RwLock; persists nothing".into(),
        },
    ]
}

/// Opens the engine configuration `name` through the engine registry,
/// with the options of [`log_options`] and [`btree_options`].
fn open_named(name: &str, dir: &Path, config: &StoreConfig) -> Result<Box<dyn Store>> {
    let mut engine_config = EngineConfig::from_name(name)?;
    engine_config.log = log_options(config);
    engine_config.btree = btree_options(config);
    engine_config.lsm = lsm_options(config);
    engine(open_engine(dir, &engine_config)?)
}

/// A `File` decorator under an engine.
#[derive(Clone, Copy)]
enum Decorator {
    /// `EncryptedFile` with a fixed benchmark key (and its block cache).
    Encrypted,
    /// `CompressedFile` (lz4).
    Lz4,
}

fn decorated_settings(engine: String, decorator: Decorator) -> String {
    match decorator {
        Decorator::Encrypted => format!(
            "{engine}, on EncryptedFile (XChaCha20-Poly1305, 4 KiB blocks, a block cache of the \
             cache budget) over MonolithicFile"
        ),
        Decorator::Lz4 => format!(
            "{engine}, on CompressedFile (lz4, 16 KiB chunks, a chunk cache of the cache budget) \
             over MonolithicFile"
        ),
    }
}

/// Opens the engine configuration `name` on decorated files, as a
/// database opened with `--encryption-key-file` or `--compression lz4`
/// does (`MonolithicOpener` underneath, whole 4 KiB pages for an encrypted
/// B+tree).
fn open_decorated(
    name: &str,
    dir: &Path,
    config: &StoreConfig,
    decorator: Decorator,
) -> Result<Box<dyn Store>> {
    let mut engine_config = EngineConfig::from_name(name)?;
    engine_config.log = log_options(config);
    engine_config.btree = btree_options(config);
    engine_config.lsm = lsm_options(config);
    // The benchmark's cache budget, as the B+tree's pool and the LSM's
    // block cache get it (the plain log engine reads through the OS page
    // cache): the decorator's cache of decrypted blocks or decoded chunks.
    let cache = usize::try_from(config.cache_bytes).unwrap_or(usize::MAX);
    match decorator {
        Decorator::Encrypted => {
            engine_config.btree.page_size = engine_config
                .btree
                .page_size
                .max(pydb_file::encrypted::BLOCK_SIZE);
            let key = DataKey::from_bytes([0x5A; 32]);
            let opener = EncryptedOpener::new(MonolithicOpener, key).with_block_cache_bytes(cache);
            engine(open_engine_with(dir, opener, &engine_config)?)
        }
        Decorator::Lz4 => {
            let opener = CompressedOpener::new(MonolithicOpener).with_chunk_cache_bytes(cache);
            engine(open_engine_with(dir, opener, &engine_config)?)
        }
    }
}

/// Opens the engine configuration `name` with the transaction layer over it.
fn open_txn(name: &str, dir: &Path, config: &StoreConfig) -> Result<Box<dyn Store>> {
    let mut engine_config = EngineConfig::from_name(name)?;
    engine_config.log = log_options(config);
    engine_config.btree = btree_options(config);
    let engine = open_engine(dir, &engine_config)?;
    let txn = TxnManager::open(engine, pydb_txn::Options::default())?;
    Ok(Box::new(TxnStore { txn }))
}

/// The log engine's options for a workload: its defaults (64 MiB segments,
/// background compaction at 50% dead bytes), with `SyncPolicy::Always`
/// (group commit) when every write must be durable and `SyncPolicy::Never`
/// (appends reach the OS, `flush` syncs) otherwise.
fn log_options(config: &StoreConfig) -> LogOptions {
    LogOptions {
        sync_policy: match config.mode {
            WriteMode::Synced => SyncPolicy::Always,
            WriteMode::Unsynced => SyncPolicy::Never,
        },
        ..LogOptions::default()
    }
}

/// The B+tree's options for a workload: the same cache budget as the peers
/// get for their page caches, and the same sync choice as the log engine.
fn btree_options(config: &StoreConfig) -> BTreeOptions {
    BTreeOptions {
        pool_bytes: usize::try_from(config.cache_bytes).unwrap_or(usize::MAX),
        sync: match config.mode {
            WriteMode::Synced => SyncPolicy::Always,
            WriteMode::Unsynced => SyncPolicy::Never,
        },
        ..BTreeOptions::default()
    }
}

/// The LSM engine's options for a workload: its defaults (leveled
/// compaction, 4 MiB memtable, 10 bloom bits per key), the benchmark's
/// cache budget as block cache, and the same sync choice as the log engine.
fn lsm_options(config: &StoreConfig) -> LsmOptions {
    LsmOptions {
        sync_policy: match config.mode {
            WriteMode::Synced => SyncPolicy::Always,
            WriteMode::Unsynced => SyncPolicy::Never,
        },
        block_cache_bytes: usize::try_from(config.cache_bytes).unwrap_or(usize::MAX),
        ..LsmOptions::default()
    }
}

fn log_settings(config: &StoreConfig, index: &str) -> String {
    let o = log_options(config);
    format!(
        "{index}, SyncPolicy::{:?}, {} MiB segments, background compaction at {:.0}% dead",
        o.sync_policy,
        o.max_segment_size >> 20,
        o.compaction_threshold * 100.0
    )
}

/// Boxes any pydb engine as a [`Store`].
fn engine<E: StorageEngine + 'static>(engine: E) -> Result<Box<dyn Store>> {
    Ok(Box::new(EngineStore { engine }))
}

/// The adapter: a [`StorageEngine`] seen as a benchmark [`Store`].
struct EngineStore<E> {
    engine: E,
}

impl<E: StorageEngine> Store for EngineStore<E> {
    fn handle(&self) -> Result<Box<dyn Handle + '_>> {
        Ok(Box::new(EngineHandle {
            engine: &self.engine,
        }))
    }

    fn flush(&self) -> Result<()> {
        Ok(self.engine.flush()?)
    }
}

struct EngineHandle<'a, E> {
    engine: &'a E,
}

impl<E: StorageEngine> Handle for EngineHandle<'_, E> {
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        Ok(self.engine.set(key, value)?)
    }

    fn put_batch(&mut self, pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        let mut batch = WriteBatch::new();
        for (k, v) in pairs {
            batch.set(Bytes::copy_from_slice(k), Bytes::copy_from_slice(v));
        }
        Ok(self.engine.write_batch(&batch)?)
    }

    /// Through the borrowing point read, `get_with`: the value is looked
    /// at in place, as the LMDB adapter reads it in the map.
    fn get(&mut self, key: &[u8]) -> Result<Option<usize>> {
        let mut len = 0;
        let found = self.engine.get_with(key, &mut |v| {
            len = std::hint::black_box(v).len();
        })?;
        Ok(found.then_some(len))
    }

    fn delete(&mut self, key: &[u8]) -> Result<()> {
        self.engine.delete(key)?;
        Ok(())
    }

    /// Through the borrowing scan, `scan_with`: each value is looked at
    /// in place, as the LMDB adapter reads it in the map.
    fn scan(&mut self, start: &[u8], limit: usize) -> Result<usize> {
        let mut read = 0;
        if limit == 0 {
            return Ok(0);
        }
        self.engine
            .scan_with((Bound::Included(start), Bound::Unbounded), &mut |_, v| {
                std::hint::black_box(v);
                read += 1;
                if read < limit {
                    ControlFlow::Continue(())
                } else {
                    ControlFlow::Break(())
                }
            })?;
        Ok(read)
    }

    fn scan_all(&mut self, each: &mut dyn FnMut(usize)) -> Result<()> {
        self.engine
            .scan_with((Bound::Unbounded, Bound::Unbounded), &mut |_, v| {
                each(v.len());
                ControlFlow::Continue(())
            })?;
        Ok(())
    }
}

/// pydb's engines through the transaction layer: every call is a
/// transaction, and `transfer` a serializable one, run again on a conflict.
struct TxnStore {
    txn: TxnManager,
}

impl Store for TxnStore {
    fn handle(&self) -> Result<Box<dyn Handle + '_>> {
        Ok(Box::new(TxnHandle { txn: &self.txn }))
    }

    fn flush(&self) -> Result<()> {
        Ok(self.txn.engine().flush()?)
    }
}

struct TxnHandle<'a> {
    txn: &'a TxnManager,
}

impl Handle for TxnHandle<'_> {
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        Ok(self
            .txn
            .transaction(Isolation::ReadCommitted, |tx| tx.set(key, value))?)
    }

    fn put_batch(&mut self, pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        Ok(self.txn.transaction(Isolation::ReadCommitted, |tx| {
            pairs.iter().try_for_each(|(k, v)| tx.set(k, v))
        })?)
    }

    fn get(&mut self, key: &[u8]) -> Result<Option<usize>> {
        let tx = self.txn.begin_read_only(Isolation::Snapshot)?;
        Ok(tx.get(key)?.map(|v| v.len()))
    }

    fn delete(&mut self, key: &[u8]) -> Result<()> {
        Ok(self
            .txn
            .transaction(Isolation::ReadCommitted, |tx| tx.delete(key))?)
    }

    fn scan(&mut self, start: &[u8], limit: usize) -> Result<usize> {
        let tx = self.txn.begin_read_only(Isolation::Snapshot)?;
        let mut n = 0;
        for item in tx.scan(start..)?.take(limit) {
            std::hint::black_box(item?);
            n += 1;
        }
        Ok(n)
    }

    fn scan_all(&mut self, each: &mut dyn FnMut(usize)) -> Result<()> {
        let tx = self.txn.begin_read_only(Isolation::Snapshot)?;
        for item in tx.scan::<&[u8]>(..)? {
            let (_, v) = item?;
            each(v.len());
        }
        Ok(())
    }

    fn transfer(&mut self, a: &[u8], b: &[u8]) -> Result<u64> {
        let mut aborts = 0;
        loop {
            let outcome = self.txn.begin(Isolation::Serializable).and_then(|mut tx| {
                let va = tx.get(a)?.unwrap_or_default();
                let vb = tx.get(b)?.unwrap_or_default();
                tx.set(a, &vb)?;
                tx.set(b, &va)?;
                tx.commit()
            });
            match outcome {
                Ok(_) => return Ok(aborts),
                Err(e) if e.is_retryable() => aborts += 1,
                Err(e) => return Err(e.into()),
            }
        }
    }
}
