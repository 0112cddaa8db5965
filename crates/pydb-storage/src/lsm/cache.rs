//! The block cache and the open-table cache.
//!
//! A read that reaches a table needs one data block. Keeping recently used,
//! already checked and decompressed blocks in memory saves the `pread`, the
//! CRC and the decompression the next time. The block cache is bounded in
//! *bytes*, not entries (blocks differ in size).
//!
//! The open-table cache keeps a bounded number of tables open (file handle,
//! index, filter, properties): opening a table costs reading three blocks,
//! so it is done once, not per lookup, yet a database with many thousands
//! of tables does not keep thousands of descriptors.
//!
//! ## Why Clock and not exact LRU
//!
//! Every point read that reaches a table looks a block up here, from many
//! threads at once, so a hit must be cheap. Exact LRU must move the entry
//! to the front of a list (or re-key it in an ordered map) on *every* hit,
//! which is a write, so every reader takes an exclusive lock. Clock (the
//! same policy as the B+tree's buffer pool, see the glossary) keeps one
//! *referenced* bit per entry instead:
//!
//! - a hit only sets the bit, an atomic store, under a *shared* lock, so
//!   readers never wait for each other;
//! - an insert past capacity moves a "hand" around the slots: a slot whose
//!   bit is set has the bit cleared (a second chance) and the hand moves on;
//!   the first slot found with the bit clear is evicted.
//!
//! A block used since the hand last passed it survives one more lap: that
//! approximates "least recently used" without any work on a hit. Invariants:
//! `map` names exactly the occupied slots, and `charge` is the sum of their
//! charges.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::RwLock;

/// A cache bounded by a total charge, evicting by the Clock policy.
#[derive(Debug)]
pub(crate) struct ClockCache<K, V> {
    inner: RwLock<ClockInner<K, V>>,
    capacity: usize,
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) evictions: AtomicU64,
}

/// One cached value.
#[derive(Debug)]
struct Slot<K, V> {
    key: K,
    value: Arc<V>,
    charge: usize,
    /// Set by a hit, cleared by the passing hand.
    referenced: AtomicBool,
}

#[derive(Debug)]
struct ClockInner<K, V> {
    /// Where each cached key's slot is.
    map: HashMap<K, usize>,
    /// The clock face; `None` is a free slot (listed in `free`).
    slots: Vec<Option<Slot<K, V>>>,
    free: Vec<usize>,
    /// The next slot the hand looks at.
    hand: usize,
    charge: usize,
}

impl<K: Hash + Eq + Clone, V> ClockCache<K, V> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            inner: RwLock::new(ClockInner {
                map: HashMap::new(),
                slots: Vec::new(),
                free: Vec::new(),
                hand: 0,
                charge: 0,
            }),
            capacity,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    /// The cached value of `key`, marked as referenced.
    pub(crate) fn get(&self, key: &K) -> Option<Arc<V>> {
        let inner = self.inner.read();
        let slot = inner
            .map
            .get(key)
            .and_then(|&i| inner.slots.get(i))
            .and_then(Option::as_ref);
        match slot {
            Some(slot) => {
                // Read before writing: a hot block's bit is usually set
                // already, and a plain load keeps its cache line shared.
                if !slot.referenced.load(Ordering::Relaxed) {
                    slot.referenced.store(true, Ordering::Relaxed);
                }
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(slot.value.clone())
            }
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Adds `value` with `charge`, evicting by Clock while over capacity
    /// (never the value just added).
    pub(crate) fn insert(&self, key: K, value: Arc<V>, charge: usize) {
        if self.capacity == 0 {
            return;
        }
        let mut guard = self.inner.write();
        let inner = &mut *guard;
        let added = match inner.map.get(&key).copied() {
            Some(i) => {
                if let Some(Some(slot)) = inner.slots.get_mut(i) {
                    inner.charge = inner.charge - slot.charge + charge;
                    slot.value = value;
                    slot.charge = charge;
                    *slot.referenced.get_mut() = true;
                }
                i
            }
            None => {
                let slot = Some(Slot {
                    key: key.clone(),
                    value,
                    charge,
                    referenced: AtomicBool::new(false),
                });
                let i = match inner.free.pop() {
                    Some(i) => {
                        inner.slots[i] = slot;
                        i
                    }
                    None => {
                        inner.slots.push(slot);
                        inner.slots.len() - 1
                    }
                };
                inner.map.insert(key, i);
                inner.charge += charge;
                i
            }
        };
        // Two laps at most: the first clears every bit it passes, the
        // second then finds a victim (there is one: more than one entry).
        let mut budget = 2 * inner.slots.len() + 1;
        while inner.charge > self.capacity && inner.map.len() > 1 && budget > 0 {
            budget -= 1;
            let i = inner.hand % inner.slots.len();
            inner.hand = i + 1;
            if i == added {
                continue;
            }
            let Some(slot) = inner.slots.get_mut(i).and_then(Option::as_mut) else {
                continue;
            };
            if std::mem::take(slot.referenced.get_mut()) {
                continue;
            }
            if let Some(victim) = inner.slots[i].take() {
                inner.map.remove(&victim.key);
                inner.free.push(i);
                inner.charge -= victim.charge;
                self.evictions.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Drops every entry whose key matches `pred`.
    pub(crate) fn remove_if(&self, pred: impl Fn(&K) -> bool) {
        let mut guard = self.inner.write();
        let inner = &mut *guard;
        for (i, entry) in inner.slots.iter_mut().enumerate() {
            if entry.as_ref().is_some_and(|s| pred(&s.key))
                && let Some(slot) = entry.take()
            {
                inner.map.remove(&slot.key);
                inner.free.push(i);
                inner.charge -= slot.charge;
            }
        }
    }

    /// The total charge held.
    pub(crate) fn charge(&self) -> usize {
        self.inner.read().charge
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_unreferenced_entries_first_by_bytes() {
        let cache: ClockCache<u32, u32> = ClockCache::new(100);
        cache.insert(1, Arc::new(1), 40);
        cache.insert(2, Arc::new(2), 40);
        assert!(cache.get(&1).is_some()); // 1 gets a second chance, 2 none
        cache.insert(3, Arc::new(3), 40);
        assert!(cache.get(&2).is_none());
        assert!(cache.get(&1).is_some());
        assert!(cache.get(&3).is_some());
        assert_eq!(cache.charge(), 80);
        assert_eq!(cache.evictions.load(Ordering::Relaxed), 1);
        assert_eq!(cache.hits.load(Ordering::Relaxed), 3);
        assert_eq!(cache.misses.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn charge_stays_within_capacity_and_freed_slots_are_reused() {
        let cache: ClockCache<u32, u32> = ClockCache::new(1000);
        for i in 0..10_000u32 {
            cache.insert(i, Arc::new(i), 10 + (i % 7) as usize);
            if i % 3 == 0 {
                assert_eq!(cache.get(&i).as_deref(), Some(&i));
            }
            assert!(cache.charge() <= 1000);
        }
        let inner = cache.inner.read();
        assert_eq!(
            inner.map.len(),
            inner.slots.iter().filter(|s| s.is_some()).count()
        );
        assert!(inner.slots.len() <= 101, "{} slots", inner.slots.len());
        drop(inner);
        cache.remove_if(|k| k % 2 == 0);
        let inner = cache.inner.read();
        assert!(inner.map.keys().all(|k| k % 2 == 1));
        let sum: usize = inner.slots.iter().flatten().map(|s| s.charge).sum();
        assert_eq!(sum, inner.charge);
    }
}
