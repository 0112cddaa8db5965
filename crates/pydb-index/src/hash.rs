//! `InMemoryIndex`: a hash map, the index of the original pydb.
//!
//! O(1) point lookups and no order: a range scan over it visits every key.

use std::collections::HashMap;
use std::ops::Bound;

use bytes::Bytes;

use crate::{Index, RangeIter, in_bounds};

/// An unordered hash-map index.
#[derive(Debug, Clone)]
pub struct InMemoryIndex<V> {
    map: HashMap<Bytes, V>,
    key_bytes: usize,
}

impl<V> Default for InMemoryIndex<V> {
    fn default() -> Self {
        Self {
            map: HashMap::new(),
            key_bytes: 0,
        }
    }
}

impl<V> InMemoryIndex<V> {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<V: Send + Sync> Index<V> for InMemoryIndex<V> {
    fn insert(&mut self, key: Bytes, value: V) -> Option<V> {
        let len = key.len();
        let old = self.map.insert(key, value);
        if old.is_none() {
            self.key_bytes += len;
        }
        old
    }

    fn get(&self, key: &[u8]) -> Option<&V> {
        self.map.get(key)
    }

    fn remove(&mut self, key: &[u8]) -> Option<V> {
        let (k, v) = self.map.remove_entry(key)?;
        self.key_bytes -= k.len();
        Some(v)
    }

    fn is_ordered(&self) -> bool {
        false
    }

    fn range<'a>(&'a self, start: Bound<&[u8]>, end: Bound<&[u8]>) -> RangeIter<'a, V> {
        let start = start.map(<[u8]>::to_vec);
        let end = end.map(<[u8]>::to_vec);
        Box::new(self.map.iter().filter(move |(k, _)| {
            in_bounds(
                k,
                start.as_ref().map(Vec::as_slice),
                end.as_ref().map(Vec::as_slice),
            )
        }))
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    fn clear(&mut self) {
        self.map.clear();
        self.key_bytes = 0;
    }

    fn memory_bytes(&self) -> usize {
        // hashbrown keeps one control byte per bucket beside each (key, value)
        // slot; `Bytes` owns its key data in a separate heap allocation.
        let slot = std::mem::size_of::<(Bytes, V)>() + 1;
        self.map.capacity() * slot + self.key_bytes
    }
}
