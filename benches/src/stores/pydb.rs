//! pydb's own engines, through one generic adapter over `StorageEngine`.
//!
//! Every pydb engine implements the same trait, so one [`EngineStore`]
//! wraps them all and adding an engine (or an engine with another index) to
//! the benchmark is one entry in [`stores`]. The engine is shared by every
//! thread: the trait promises `Send + Sync` and `&self` methods.

use bytes::Bytes;
use pydb_storage::{KeyRange, MemoryStorage, StorageEngine, WriteBatch};

use super::{Handle, Result, Store, StoreKind};

/// pydb's engines, one entry per engine and index.
pub fn stores() -> Vec<StoreKind> {
    vec![StoreKind {
        name: "pydb-memory",
        persistent: false,
        open: |_, _| engine(MemoryStorage::new()),
        settings: |_| "BTreeMap behind an RwLock; persists nothing".into(),
    }]
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

    fn get(&mut self, key: &[u8]) -> Result<Option<usize>> {
        Ok(self.engine.get(key)?.map(|v| v.len()))
    }

    fn delete(&mut self, key: &[u8]) -> Result<()> {
        self.engine.delete(key)?;
        Ok(())
    }

    fn scan(&mut self, start: &[u8], limit: usize) -> Result<usize> {
        let mut read = 0;
        for item in self.engine.scan(KeyRange::new(start..))?.take(limit) {
            let (_, v) = item?;
            std::hint::black_box(v);
            read += 1;
        }
        Ok(read)
    }

    fn scan_all(&mut self, each: &mut dyn FnMut(usize)) -> Result<()> {
        for item in self.engine.scan(KeyRange::all())? {
            let (_, v) = item?;
            each(v.len());
        }
        Ok(())
    }
}
