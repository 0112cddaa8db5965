//! fjall: an LSM-tree (journal, memtable, sorted tables, compaction).
//!
//! Configured as fjall's README describes: one keyspace, plain
//! `insert`/`remove`, which write the journal to OS buffers (fjall's and
//! RocksDB's default durability). When every write must be durable, each
//! call is a write batch committed with `PersistMode::SyncData`, fjall's
//! per-write durability, which issues `fdatasync` like pydb's log does.
//! The block cache is the benchmark's cache budget (fjall's default is
//! 32 MiB; its docs advise sizing it to the data set when that fits).
//! Values are stored with fjall's default LZ4 compression; the benchmark's
//! values are random bytes, so compression cannot flatter it.

use std::path::Path;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use super::{Handle, Result, Store, StoreConfig, StoreKind, WriteMode};

pub const KIND: StoreKind = StoreKind {
    name: "fjall",
    persistent: true,
    open,
    settings: |c| {
        format!(
            "one keyspace, {}, cache {} MiB",
            match c.mode {
                WriteMode::Synced => "batch per call with PersistMode::SyncData",
                WriteMode::Unsynced => "insert (journal to OS buffers), flush = persist(SyncAll)",
            },
            c.cache_bytes >> 20
        )
    },
};

fn open(dir: &Path, config: &StoreConfig) -> Result<Box<dyn Store>> {
    let db = Database::builder(dir)
        .cache_size(config.cache_bytes)
        .open()?;
    let kv = db.keyspace("kv", KeyspaceCreateOptions::default)?;
    Ok(Box::new(FjallStore {
        db,
        kv,
        synced: config.mode == WriteMode::Synced,
    }))
}

struct FjallStore {
    db: Database,
    kv: Keyspace,
    synced: bool,
}

impl Store for FjallStore {
    fn handle(&self) -> Result<Box<dyn Handle + '_>> {
        Ok(Box::new(FjallHandle { store: self }))
    }

    fn flush(&self) -> Result<()> {
        Ok(self.db.persist(PersistMode::SyncAll)?)
    }
}

struct FjallHandle<'a> {
    store: &'a FjallStore,
}

impl FjallHandle<'_> {
    fn batch(&self) -> fjall::OwnedWriteBatch {
        let batch = self.store.db.batch();
        if self.store.synced {
            batch.durability(Some(PersistMode::SyncData))
        } else {
            batch
        }
    }
}

impl Handle for FjallHandle<'_> {
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        if self.store.synced {
            let mut batch = self.batch();
            batch.insert(&self.store.kv, key, value);
            batch.commit()?;
        } else {
            self.store.kv.insert(key, value)?;
        }
        Ok(())
    }

    fn put_batch(&mut self, pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        let mut batch = self.batch();
        for (k, v) in pairs {
            batch.insert(&self.store.kv, k.as_slice(), v.as_slice());
        }
        batch.commit()?;
        Ok(())
    }

    fn get(&mut self, key: &[u8]) -> Result<Option<usize>> {
        Ok(self.store.kv.get(key)?.map(|v| v.len()))
    }

    fn delete(&mut self, key: &[u8]) -> Result<()> {
        if self.store.synced {
            let mut batch = self.batch();
            batch.remove(&self.store.kv, key);
            batch.commit()?;
        } else {
            self.store.kv.remove(key)?;
        }
        Ok(())
    }

    fn scan(&mut self, start: &[u8], limit: usize) -> Result<usize> {
        let mut read = 0;
        for guard in self.store.kv.range(start..).take(limit) {
            let (_, v) = guard.into_inner()?;
            std::hint::black_box(v);
            read += 1;
        }
        Ok(read)
    }

    fn scan_all(&mut self, each: &mut dyn FnMut(usize)) -> Result<()> {
        for guard in self.store.kv.iter() {
            let (_, v) = guard.into_inner()?;
            each(v.len());
        }
        Ok(())
    }
}
