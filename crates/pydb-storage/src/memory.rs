//! `MemoryStorage`: the in-memory engine of the roadmap.
//!
//! A `BTreeMap` behind a read-write lock. It persists nothing, which makes it
//! the model: every other engine is tested by running the same operations on
//! it and on `MemoryStorage` and asserting that they agree.

use std::collections::BTreeMap;

use bytes::Bytes;
use parking_lot::RwLock;

use crate::engine::{BatchOp, KeyRange, ScanIter, Stats, StorageEngine, WriteBatch};
use crate::{Error, Result};

/// The in-memory engine, and the model the others are checked against.
#[derive(Debug, Default)]
pub struct MemoryStorage {
    map: RwLock<BTreeMap<Bytes, Bytes>>,
}

impl MemoryStorage {
    /// An empty engine.
    pub fn new() -> Self {
        Self::default()
    }
}

fn check_key(key: &[u8]) -> Result<()> {
    if key.is_empty() {
        return Err(Error::EmptyKey);
    }
    Ok(())
}

impl StorageEngine for MemoryStorage {
    fn set(&self, key: &[u8], value: &[u8]) -> Result<()> {
        check_key(key)?;
        self.map
            .write()
            .insert(Bytes::copy_from_slice(key), Bytes::copy_from_slice(value));
        Ok(())
    }

    fn get(&self, key: &[u8]) -> Result<Option<Bytes>> {
        Ok(self.map.read().get(key).cloned())
    }

    fn delete(&self, key: &[u8]) -> Result<bool> {
        check_key(key)?;
        Ok(self.map.write().remove(key).is_some())
    }

    fn write_batch(&self, batch: &WriteBatch) -> Result<()> {
        for op in batch.ops() {
            check_key(op.key())?;
        }
        let mut map = self.map.write();
        for op in batch.ops() {
            match op {
                BatchOp::Set { key, value } => {
                    map.insert(key.clone(), value.clone());
                }
                BatchOp::Delete { key } => {
                    map.remove(key);
                }
            }
        }
        Ok(())
    }

    fn scan(&self, range: KeyRange) -> Result<ScanIter<'_>> {
        // Copy the range out under the read lock: the scan is a snapshot,
        // which is more than the trait promises and what a model should do.
        let map = self.map.read();
        let items: Vec<Result<(Bytes, Bytes)>> = map
            .iter()
            .filter(|(k, _)| range.contains(k))
            .map(|(k, v)| Ok((k.clone(), v.clone())))
            .collect();
        Ok(Box::new(items.into_iter()))
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }

    fn compact(&self) -> Result<()> {
        Ok(())
    }

    fn stats(&self) -> Stats {
        let map = self.map.read();
        let bytes: usize = map.iter().map(|(k, v)| k.len() + v.len()).sum();
        Stats {
            engine: "memory",
            counters: vec![
                ("live_keys", map.len() as u64),
                ("live_bytes", bytes as u64),
            ],
        }
    }
}
