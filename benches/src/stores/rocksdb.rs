//! RocksDB (optional feature `rocksdb`): the reference LSM-tree.
//!
//! Configured as RocksDB's tuning guide starts: `create_if_missing`,
//! `increase_parallelism` to the machine's cores, level-style compaction
//! with the default memtable budget, an LRU block cache of the benchmark's
//! cache budget, and no compression (the crate is built without compression
//! libraries; the benchmark's values are random bytes anyway). Writes go
//! through the WAL; `WriteOptions::set_sync(true)` for durable workloads
//! (RocksDB's per-write durability), the default (WAL to OS buffers)
//! otherwise, with `flush_wal(true)` as the flush.

use std::path::Path;

use rocksdb::{
    BlockBasedOptions, Cache, DB, DBCompressionType, Direction, IteratorMode, Options, WriteBatch,
    WriteOptions,
};

use super::{Handle, Result, Store, StoreConfig, StoreKind, WriteMode};

pub const KIND: StoreKind = StoreKind {
    name: "rocksdb",
    persistent: true,
    open,
    settings: |c| {
        format!(
            "level compaction, no compression, WAL {}, block cache {} MiB",
            match c.mode {
                WriteMode::Synced => "sync=true per write",
                WriteMode::Unsynced => "unsynced, flush = flush_wal(true)",
            },
            c.cache_bytes >> 20
        )
    },
};

fn open(dir: &Path, config: &StoreConfig) -> Result<Box<dyn Store>> {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut options = Options::default();
    options.create_if_missing(true);
    options.increase_parallelism(i32::try_from(cores)?);
    options.optimize_level_style_compaction(512 * 1024 * 1024);
    options.set_compression_type(DBCompressionType::None);
    let cache = Cache::new_lru_cache(usize::try_from(config.cache_bytes)?);
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(&cache);
    options.set_block_based_table_factory(&table);
    let db = DB::open(&options, dir)?;
    let mut write = WriteOptions::default();
    write.set_sync(config.mode == WriteMode::Synced);
    Ok(Box::new(RocksStore { db, write }))
}

struct RocksStore {
    db: DB,
    write: WriteOptions,
}

impl Store for RocksStore {
    fn handle(&self) -> Result<Box<dyn Handle + '_>> {
        Ok(Box::new(RocksHandle { store: self }))
    }

    fn flush(&self) -> Result<()> {
        Ok(self.db.flush_wal(true)?)
    }
}

struct RocksHandle<'a> {
    store: &'a RocksStore,
}

impl Handle for RocksHandle<'_> {
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        Ok(self.store.db.put_opt(key, value, &self.store.write)?)
    }

    fn put_batch(&mut self, pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        let mut batch = WriteBatch::default();
        for (k, v) in pairs {
            batch.put(k, v);
        }
        Ok(self.store.db.write_opt(batch, &self.store.write)?)
    }

    fn get(&mut self, key: &[u8]) -> Result<Option<usize>> {
        Ok(self
            .store
            .db
            .get_pinned(key)?
            .map(|v| std::hint::black_box(&*v).len()))
    }

    fn delete(&mut self, key: &[u8]) -> Result<()> {
        Ok(self.store.db.delete_opt(key, &self.store.write)?)
    }

    fn scan(&mut self, start: &[u8], limit: usize) -> Result<usize> {
        let mut read = 0;
        let mode = IteratorMode::From(start, Direction::Forward);
        for item in self.store.db.iterator(mode).take(limit) {
            let (_, v) = item?;
            std::hint::black_box(v);
            read += 1;
        }
        Ok(read)
    }

    fn scan_all(&mut self, each: &mut dyn FnMut(usize)) -> Result<()> {
        for item in self.store.db.iterator(IteratorMode::Start) {
            let (_, v) = item?;
            each(v.len());
        }
        Ok(())
    }
}
