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
        if self.map.is_empty() {
            return 0;
        }
        // std's BTreeMap allocates nodes of fixed size: a leaf holds up to
        // `CAPACITY` keys and values, an internal node adds `CAPACITY + 1`
        // child pointers. How full the nodes are depends on the insertion
        // order, which the map does not expose; random order leaves them
        // about 3/4 full (measured with `examples/memory.rs`), ascending
        // order only a little over half, so this estimate is low there.
        let leaves = (self.map.len() * 4).div_ceil(CAPACITY * 3);
        // Each internal node has about 9 children (12 edges, 3/4 used), so
        // internal nodes add leaves/9 + leaves/81 + ... ≈ leaves/8.
        let internals = leaves / 8;
        let (leaf, internal) = node_sizes::<V>();
        leaves * leaf + internals * internal + self.key_bytes
    }
}

/// Keys per node in std's BTreeMap (`B = 6`, `CAPACITY = 2B - 1`).
const CAPACITY: usize = 11;

/// The sizes of std's `LeafNode<Bytes, V>` and `InternalNode<Bytes, V>`:
/// a parent pointer, a parent index and a length (`u16` each), the key and
/// value arrays, and for an internal node `CAPACITY + 1` child pointers.
fn node_sizes<V>() -> (usize, usize) {
    use std::mem::{align_of, size_of};
    let align = align_of::<usize>()
        .max(align_of::<Bytes>())
        .max(align_of::<V>());
    let leaf = size_of::<usize>()
        + 2 * size_of::<u16>()
        + CAPACITY * (size_of::<Bytes>() + size_of::<V>());
    let leaf = leaf.next_multiple_of(align);
    (leaf, leaf + (CAPACITY + 1) * size_of::<usize>())
}

#[cfg(test)]
mod tests {
    #[test]
    fn node_sizes_match_std_layout_for_a_location() {
        // 8 + 2 + 2 + 11 * (32 + 24) = 628, rounded to 632; + 12 edges.
        assert_eq!(super::node_sizes::<[u64; 3]>(), (632, 728));
    }
}
