//! The memtable: the sorted, in-memory buffer of the newest writes.
//!
//! Every write lands here (after the WAL) and stays until the memtable is
//! full, frozen, and flushed to a level-0 table. It must be ordered (a
//! flush and a scan walk it in key order) and readable by many threads
//! while one writer adds to it.
//!
//! ## One skip list for the whole project
//!
//! The ordered structure is [`pydb_index::SkipListIndex`], the skip list
//! the log engine can already use as its key directory: one piece of code,
//! taught once. That list takes `&mut self` to insert (its arena of nodes
//! may grow and move), so the memtable keeps it behind a reader-writer
//! lock: any number of readers search it at once, and the single writer
//! (writes are serialized by the engine anyway, to hand out sequence
//! numbers in order) holds the write side only for the insert itself. A
//! lock-free skip list (LevelDB's, RocksDB's `InlineSkipList`) would let
//! readers go on during that insert too; it needs raw pointers and
//! `unsafe`, which pydb keeps out of its lessons.
//!
//! ## Versions, not values
//!
//! A key maps to *all* its versions in this memtable, `(seq, value or
//! tombstone)`, oldest first. Old versions stay because a snapshot taken
//! before an overwrite must still read the old value. The flush drops the
//! versions no snapshot can see.
//!
//! Scans copy a bounded chunk of entries under the read lock and seek past
//! the last key for the next chunk, so a slow scan never holds the lock.
//! This is consistent for a reader at sequence number `s`: the versions
//! with `seq <= s` of any key never change once written.

use std::ops::Bound;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use parking_lot::RwLock;
use pydb_index::{Index, SkipListIndex};

/// One version of a key: its sequence number and value (`None`: deleted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) key: Bytes,
    pub(crate) seq: u64,
    pub(crate) value: Option<Bytes>,
}

impl Entry {
    /// Whether `self` comes strictly before `other` in table order: key
    /// ascending, then sequence number descending.
    pub(crate) fn precedes(&self, other: &Entry) -> bool {
        match self.key.cmp(&other.key) {
            std::cmp::Ordering::Less => true,
            std::cmp::Ordering::Equal => self.seq > other.seq,
            std::cmp::Ordering::Greater => false,
        }
    }

    /// Bytes the entry adds to a memtable (key, value, bookkeeping).
    pub(crate) fn charge(key: &[u8], value: Option<&[u8]>) -> usize {
        key.len() + value.map_or(0, <[u8]>::len) + 48
    }
}

/// The versions of one key in a memtable, oldest first.
type Versions = Vec<(u64, Option<Bytes>)>;

/// How many keys a scan copies per visit to the skip list.
const SCAN_CHUNK: usize = 256;

/// A memtable and the WAL file that holds its writes.
#[derive(Debug)]
pub(crate) struct Memtable {
    list: RwLock<SkipListIndex<Versions>>,
    bytes: AtomicUsize,
    /// The number of the WAL file that logs this memtable's writes.
    pub(crate) wal_number: u64,
}

impl Memtable {
    pub(crate) fn new(wal_number: u64) -> Self {
        Self {
            list: RwLock::new(SkipListIndex::new()),
            bytes: AtomicUsize::new(0),
            wal_number,
        }
    }

    /// Adds a version; `seq` must be larger than every earlier one.
    pub(crate) fn insert(&self, key: Bytes, seq: u64, value: Option<Bytes>) {
        self.bytes
            .fetch_add(Entry::charge(&key, value.as_deref()), Ordering::Relaxed);
        // One search: the key's version list is found or created in place.
        // Most keys have one version per memtable: room for exactly one
        // (a plain push would reserve four).
        self.list
            .write()
            .get_or_insert_with(key, || Versions::with_capacity(1))
            .push((seq, value));
    }

    /// The newest version of `key` with `seq <= snapshot`: `Some(None)` is
    /// a tombstone, `None` means the memtable knows nothing of the key.
    pub(crate) fn get(&self, key: &[u8], snapshot: u64) -> Option<Option<Bytes>> {
        let list = self.list.read();
        let versions = list.get(key)?;
        versions
            .iter()
            .rev()
            .find(|(seq, _)| *seq <= snapshot)
            .map(|(_, v)| v.clone())
    }

    /// Approximate bytes held.
    pub(crate) fn size(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.list.read().is_empty()
    }

    /// Up to `SCAN_CHUNK` keys from `start` on (all versions, in table
    /// order), stopping at `end`.
    pub(crate) fn chunk(&self, start: Bound<&[u8]>, end: Bound<&[u8]>) -> Vec<Entry> {
        let list = self.list.read();
        let mut out = Vec::new();
        for (key, versions) in list.range(start, end).take(SCAN_CHUNK) {
            for (seq, value) in versions.iter().rev() {
                out.push(Entry {
                    key: key.clone(),
                    seq: *seq,
                    value: value.clone(),
                });
            }
        }
        out
    }

    /// Every entry in table order (for a flush).
    pub(crate) fn entries(&self) -> Vec<Entry> {
        let mut out = Vec::new();
        let mut start: Bound<Bytes> = Bound::Unbounded;
        loop {
            let chunk = self.chunk(start.as_ref().map(|b| b.as_ref()), Bound::Unbounded);
            let Some(last) = chunk.last() else {
                return out;
            };
            start = Bound::Excluded(last.key.clone());
            out.extend(chunk);
        }
    }
}

/// Iterates a memtable chunk by chunk, all versions in table order.
pub(crate) struct MemIter {
    mem: std::sync::Arc<Memtable>,
    next_start: Option<Bound<Bytes>>,
    end: Bound<Bytes>,
    buf: std::vec::IntoIter<Entry>,
}

impl MemIter {
    pub(crate) fn new(
        mem: std::sync::Arc<Memtable>,
        start: Bound<Bytes>,
        end: Bound<Bytes>,
    ) -> Self {
        Self {
            mem,
            next_start: Some(start),
            end,
            buf: Vec::new().into_iter(),
        }
    }
}

impl Iterator for MemIter {
    type Item = Entry;

    fn next(&mut self) -> Option<Entry> {
        loop {
            if let Some(e) = self.buf.next() {
                return Some(e);
            }
            let start = self.next_start.take()?;
            let chunk = self.mem.chunk(
                start.as_ref().map(|b| b.as_ref()),
                self.end.as_ref().map(|b| b.as_ref()),
            );
            if let Some(last) = chunk.last() {
                self.next_start = Some(Bound::Excluded(last.key.clone()));
            }
            self.buf = chunk.into_iter();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_see_old_versions() {
        let m = Memtable::new(1);
        m.insert(Bytes::from_static(b"k"), 1, Some(Bytes::from_static(b"v1")));
        m.insert(Bytes::from_static(b"k"), 3, None);
        m.insert(Bytes::from_static(b"k"), 5, Some(Bytes::from_static(b"v5")));
        assert_eq!(m.get(b"k", 0), None);
        assert_eq!(m.get(b"k", 2), Some(Some(Bytes::from_static(b"v1"))));
        assert_eq!(m.get(b"k", 4), Some(None));
        assert_eq!(m.get(b"k", 9), Some(Some(Bytes::from_static(b"v5"))));
        let all = m.entries();
        assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![5, 3, 1]);
    }

    #[test]
    fn chunked_iteration_sees_every_key_once() {
        let m = std::sync::Arc::new(Memtable::new(1));
        for i in 0..1000u32 {
            m.insert(Bytes::copy_from_slice(&i.to_be_bytes()), u64::from(i), None);
        }
        let keys: Vec<_> = MemIter::new(m, Bound::Unbounded, Bound::Unbounded).collect();
        assert_eq!(keys.len(), 1000);
        assert!(keys.windows(2).all(|w| w[0].precedes(&w[1])));
    }
}
