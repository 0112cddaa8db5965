//! The block cache and the open-table cache.
//!
//! A read that reaches a table needs one data block. Keeping recently used,
//! already checked and decompressed blocks in memory saves the `pread`, the
//! CRC and the decompression the next time. The block cache is bounded in
//! *bytes*, not entries (blocks differ in size), and evicts the least
//! recently used block first: a tick counter orders uses, and a `BTreeMap`
//! from tick to block finds the oldest in `O(log n)`.
//!
//! The open-table cache keeps a bounded number of tables open (file handle,
//! index, filter, properties): opening a table costs reading three blocks,
//! so it is done once, not per lookup, yet a database with many thousands
//! of tables does not keep thousands of descriptors.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

/// A least-recently-used cache bounded by a total charge.
#[derive(Debug)]
pub(crate) struct Lru<K, V> {
    inner: Mutex<LruInner<K, V>>,
    capacity: usize,
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) evictions: AtomicU64,
}

#[derive(Debug)]
struct LruInner<K, V> {
    map: HashMap<K, (Arc<V>, u64, usize)>,
    by_tick: BTreeMap<u64, K>,
    tick: u64,
    charge: usize,
}

impl<K: Hash + Eq + Clone, V> Lru<K, V> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(LruInner {
                map: HashMap::new(),
                by_tick: BTreeMap::new(),
                tick: 0,
                charge: 0,
            }),
            capacity,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    /// The cached value of `key`, marked as just used.
    pub(crate) fn get(&self, key: &K) -> Option<Arc<V>> {
        let mut inner = self.inner.lock();
        inner.tick += 1;
        let tick = inner.tick;
        let found = match inner.map.get_mut(key) {
            Some((v, t, _)) => {
                let old = std::mem::replace(t, tick);
                Some((v.clone(), old))
            }
            None => None,
        };
        match found {
            Some((v, old)) => {
                inner.by_tick.remove(&old);
                inner.by_tick.insert(tick, key.clone());
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(v)
            }
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Adds `value` with `charge`, evicting the oldest entries over capacity.
    pub(crate) fn insert(&self, key: K, value: Arc<V>, charge: usize) {
        if self.capacity == 0 {
            return;
        }
        let mut inner = self.inner.lock();
        inner.tick += 1;
        let tick = inner.tick;
        if let Some((_, old_tick, old_charge)) =
            inner.map.insert(key.clone(), (value, tick, charge))
        {
            inner.by_tick.remove(&old_tick);
            inner.charge -= old_charge;
        }
        inner.by_tick.insert(tick, key);
        inner.charge += charge;
        while inner.charge > self.capacity && inner.map.len() > 1 {
            let Some((_, oldest)) = inner.by_tick.pop_first() else {
                break;
            };
            if let Some((_, _, c)) = inner.map.remove(&oldest) {
                inner.charge -= c;
                self.evictions.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Drops every entry whose key matches `pred`.
    pub(crate) fn remove_if(&self, pred: impl Fn(&K) -> bool) {
        let mut inner = self.inner.lock();
        let doomed: Vec<(u64, K)> = inner
            .map
            .iter()
            .filter(|(k, _)| pred(k))
            .map(|(k, (_, t, _))| (*t, k.clone()))
            .collect();
        for (t, k) in doomed {
            inner.by_tick.remove(&t);
            if let Some((_, _, c)) = inner.map.remove(&k) {
                inner.charge -= c;
            }
        }
    }

    /// The total charge held.
    pub(crate) fn charge(&self) -> usize {
        self.inner.lock().charge
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used_by_bytes() {
        let lru: Lru<u32, u32> = Lru::new(100);
        lru.insert(1, Arc::new(1), 40);
        lru.insert(2, Arc::new(2), 40);
        assert!(lru.get(&1).is_some()); // 2 is now the oldest
        lru.insert(3, Arc::new(3), 40);
        assert!(lru.get(&2).is_none());
        assert!(lru.get(&1).is_some());
        assert!(lru.get(&3).is_some());
        assert_eq!(lru.charge(), 80);
        assert_eq!(lru.evictions.load(Ordering::Relaxed), 1);
        assert_eq!(lru.hits.load(Ordering::Relaxed), 3);
        assert_eq!(lru.misses.load(Ordering::Relaxed), 1);
    }
}
