//! `BTreeIndex`: `std`'s `BTreeMap`, the ordered default.

use std::collections::BTreeMap;
use std::ops::Bound;

use bytes::Bytes;

use crate::{Index, RangeIter};

/// An ordered index on `std::collections::BTreeMap`.
#[derive(Debug, Clone)]
pub struct BTreeIndex<V> {
    map: BTreeMap<Bytes, V>,
    key_bytes: usize,
}

impl<V> Default for BTreeIndex<V> {
    fn default() -> Self {
        Self {
            map: BTreeMap::new(),
            key_bytes: 0,
        }
    }
}

impl<V> BTreeIndex<V> {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<V: Send + Sync> Index<V> for BTreeIndex<V> {
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
        true
    }

    fn range<'a>(&'a self, start: Bound<&[u8]>, end: Bound<&[u8]>) -> RangeIter<'a, V> {
        // An inverted range would make BTreeMap::range panic: yield nothing.
        let inverted = match (start, end) {
            (Bound::Included(s), Bound::Included(e)) => s > e,
            (Bound::Included(s) | Bound::Excluded(s), Bound::Excluded(e))
            | (Bound::Excluded(s), Bound::Included(e)) => s >= e,
            _ => false,
        };
        if inverted {
            return Box::new(std::iter::empty());
        }
        Box::new(self.map.range::<[u8], _>((start, end)))
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    fn clear(&mut self) {
        self.map.clear();
        self.key_bytes = 0;
    }

    fn memory_bytes(&self) -> usize {
        // A BTreeMap leaf holds up to 11 entries; nodes are on average about
        // 2/3 full, so each entry costs its slot times 3/2, plus its key data.
        let slot = std::mem::size_of::<(Bytes, V)>();
        self.map.len() * slot * 3 / 2 + self.key_bytes
    }
}
