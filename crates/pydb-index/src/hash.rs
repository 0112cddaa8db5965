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
        let buckets = buckets_for_capacity(self.map.capacity());
        if buckets == 0 {
            return self.key_bytes;
        }
        // std's HashMap is hashbrown: one allocation holding a power-of-two
        // number of (key, value) slots, then one control byte per bucket
        // plus one extra SIMD group of control bytes so that a probe never
        // wraps mid-group. `Bytes` owns its key data in a separate
        // allocation. This mirrors hashbrown's `TableLayout`; it is not a
        // std guarantee, and `examples/memory.rs` checks it.
        let slots = buckets * std::mem::size_of::<(Bytes, V)>();
        let slots = slots.next_multiple_of(GROUP_WIDTH);
        slots + buckets + GROUP_WIDTH + self.key_bytes
    }
}

/// hashbrown's control-byte group: 16 bytes with SSE2, which x86-64 has.
const GROUP_WIDTH: usize = 16;

/// The bucket count behind a hashbrown capacity. The table keeps its load
/// factor at 7/8 (below 8 buckets, all but one bucket are usable), so this
/// inverts that. Tombstones left by removes can lower the reported capacity,
/// so after heavy churn this may undercount.
fn buckets_for_capacity(capacity: usize) -> usize {
    match capacity {
        0 => 0,
        1..8 => (capacity + 1).next_power_of_two(),
        _ => (capacity / 7 * 8).next_power_of_two(),
    }
}

#[cfg(test)]
mod tests {
    use super::buckets_for_capacity;

    #[test]
    fn buckets_invert_the_load_factor() {
        for (capacity, buckets) in [
            (0, 0),
            (3, 4),
            (7, 8),
            (14, 16),
            (28, 32),
            (917_504, 1 << 20),
        ] {
            assert_eq!(
                buckets_for_capacity(capacity),
                buckets,
                "capacity {capacity}"
            );
        }
    }
}
