//! redb: a copy-on-write B+tree in one file, every change a transaction.
//!
//! Configured as redb's documentation describes: one table of byte slices,
//! one write transaction per benchmark call (a batch is one transaction),
//! `Durability::Immediate` (redb's default) when every write must be durable
//! and `Durability::None` otherwise, with an empty `Immediate` commit as the
//! flush. The page cache is set to the benchmark's cache budget instead of
//! redb's default 1 GiB so that every store gets the same memory.

use std::path::Path;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use super::{Handle, Result, Store, StoreConfig, StoreKind, WriteMode};

const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");

pub const KIND: StoreKind = StoreKind {
    name: "redb",
    persistent: true,
    open,
    settings: |c| {
        format!(
            "one txn per call, Durability::{}, cache {} MiB",
            match c.mode {
                WriteMode::Synced => "Immediate",
                WriteMode::Unsynced => "None (flush = empty Immediate commit)",
            },
            c.cache_bytes >> 20
        )
    },
};

fn open(dir: &Path, config: &StoreConfig) -> Result<Box<dyn Store>> {
    let db = Database::builder()
        .set_cache_size(usize::try_from(config.cache_bytes)?)
        .create(dir.join("data.redb"))?;
    // Create the table up front so that readers never race its creation.
    let txn = db.begin_write()?;
    txn.open_table(TABLE)?;
    txn.commit()?;
    Ok(Box::new(RedbStore {
        db,
        durability: match config.mode {
            WriteMode::Synced => Durability::Immediate,
            WriteMode::Unsynced => Durability::None,
        },
    }))
}

struct RedbStore {
    db: Database,
    durability: Durability,
}

impl RedbStore {
    fn write(&self, f: impl FnOnce(&mut redb::Table<&[u8], &[u8]>) -> Result<()>) -> Result<()> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(self.durability)?;
        {
            let mut table = txn.open_table(TABLE)?;
            f(&mut table)?;
        }
        txn.commit()?;
        Ok(())
    }
}

impl Store for RedbStore {
    fn handle(&self) -> Result<Box<dyn Handle + '_>> {
        Ok(Box::new(RedbHandle { store: self }))
    }

    fn flush(&self) -> Result<()> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        txn.commit()?;
        Ok(())
    }
}

struct RedbHandle<'a> {
    store: &'a RedbStore,
}

impl Handle for RedbHandle<'_> {
    fn transfer(&mut self, a: &[u8], b: &[u8]) -> Result<u64> {
        // One write transaction at a time: redb serializes writers.
        self.store.write(|t| {
            let va = t.get(a)?.map(|g| g.value().to_vec()).unwrap_or_default();
            let vb = t.get(b)?.map(|g| g.value().to_vec()).unwrap_or_default();
            t.insert(a, vb.as_slice())?;
            t.insert(b, va.as_slice())?;
            Ok(())
        })?;
        Ok(0)
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.store.write(|t| {
            t.insert(key, value)?;
            Ok(())
        })
    }

    fn put_batch(&mut self, pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        self.store.write(|t| {
            for (k, v) in pairs {
                t.insert(k.as_slice(), v.as_slice())?;
            }
            Ok(())
        })
    }

    fn get(&mut self, key: &[u8]) -> Result<Option<usize>> {
        let txn = self.store.db.begin_read()?;
        let table = txn.open_table(TABLE)?;
        Ok(table
            .get(key)?
            .map(|v| std::hint::black_box(v.value()).len()))
    }

    fn delete(&mut self, key: &[u8]) -> Result<()> {
        self.store.write(|t| {
            t.remove(key)?;
            Ok(())
        })
    }

    fn scan(&mut self, start: &[u8], limit: usize) -> Result<usize> {
        let txn = self.store.db.begin_read()?;
        let table = txn.open_table(TABLE)?;
        let mut read = 0;
        for item in table.range(start..)?.take(limit) {
            let (_, v) = item?;
            std::hint::black_box(v.value());
            read += 1;
        }
        Ok(read)
    }

    fn scan_all(&mut self, each: &mut dyn FnMut(usize)) -> Result<()> {
        let txn = self.store.db.begin_read()?;
        let table = txn.open_table(TABLE)?;
        for item in table.iter()? {
            let (_, v) = item?;
            each(v.value().len());
        }
        Ok(())
    }
}
