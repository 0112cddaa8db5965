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
//! ## A filter in front of the list
//!
//! Most point reads look for a key the newest memtable does not hold (it
//! holds the last few seconds of writes), yet a search of a skip list of
//! hundreds of thousands of keys costs some thirty cache misses before it
//! can say "not here". So each memtable keeps a whole-key filter, as
//! RocksDB's `memtable_whole_key_filtering` does: a Bloom filter whose bits
//! are atomics, set by the writer before it inserts, read by readers with
//! no lock. It is "blocked": the four bits of a key lie in one 64-bit word,
//! so a check costs one cache line. It is sized from the memtable's byte
//! budget ([`KeyFilter::for_budget`]); a memtable that outgrows it (one
//! rebuilt from a long WAL) only gets more false positives, never a wrong
//! answer. A reader sees every bit of every write it may see: the writer
//! sets the bits before it publishes the write's sequence number with a
//! release store, and a reader loads that number with acquire before
//! reading.
//!
//! Scans copy a bounded chunk of entries under the read lock and seek past
//! the last key for the next chunk, so a slow scan never holds the lock.
//! This is consistent for a reader at sequence number `s`: the versions
//! with `seq <= s` of any key never change once written.

use std::ops::Bound;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use bytes::Bytes;
use parking_lot::RwLock;
use pydb_index::{Index, SkipListIndex};

use super::bloom;

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

/// The versions of one key in a memtable, oldest first. Most keys have
/// one version per memtable, so that one lives inline: no allocation.
#[derive(Debug)]
enum Versions {
    One((u64, Option<Bytes>)),
    Many(Vec<(u64, Option<Bytes>)>),
}

impl Versions {
    fn push(&mut self, version: (u64, Option<Bytes>)) {
        match self {
            Versions::One(first) => {
                let first = (first.0, first.1.take());
                *self = Versions::Many(vec![first, version]);
            }
            Versions::Many(all) => all.push(version),
        }
    }

    /// Every version, oldest first.
    fn as_slice(&self) -> &[(u64, Option<Bytes>)] {
        match self {
            Versions::One(one) => std::slice::from_ref(one),
            Versions::Many(all) => all,
        }
    }
}

/// The whole-key filter of a memtable (see the module docs): a blocked
/// Bloom filter of atomic words, four bits per key in one word.
#[derive(Debug)]
pub(crate) struct KeyFilter {
    words: Box<[AtomicU64]>,
}

impl KeyFilter {
    /// Bits per byte of memtable budget: one bit per 16 bytes gives about
    /// 10 bits per key for entries of 160 bytes (a 16-byte key and a
    /// 100-byte value plus bookkeeping), where four bits in one word
    /// make a false positive rate of about 2 %.
    const BYTES_PER_BIT: usize = 16;

    /// The most words a filter takes (32 MiB).
    const MAX_WORDS: usize = 1 << 22;

    /// A filter for a memtable of `budget` bytes.
    pub(crate) fn for_budget(budget: usize) -> Self {
        let words = (budget / Self::BYTES_PER_BIT / 64)
            .clamp(1, Self::MAX_WORDS)
            .next_power_of_two();
        Self {
            words: (0..words).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// The word and the mask of the four bits of `hash`: the word from the
    /// low bits, the bits from four 6-bit fields of the high 24 bits (the
    /// word index never uses more than 22 low bits, so they are disjoint).
    fn probe(&self, hash: u64) -> (usize, u64) {
        let word = (hash as usize) & (self.words.len() - 1);
        let mask = (0..4).fold(0u64, |m, i| m | 1 << ((hash >> (40 + 6 * i)) & 63));
        (word, mask)
    }

    fn add(&self, hash: u64) {
        let (word, mask) = self.probe(hash);
        if let Some(w) = self.words.get(word) {
            w.fetch_or(mask, Ordering::Relaxed);
        }
    }

    /// False only if no key with this hash was added.
    pub(crate) fn may_contain(&self, hash: u64) -> bool {
        let (word, mask) = self.probe(hash);
        self.words
            .get(word)
            .is_none_or(|w| w.load(Ordering::Relaxed) & mask == mask)
    }
}

/// How many keys a scan copies per visit to the skip list.
const SCAN_CHUNK: usize = 256;

/// A memtable and the WAL file that holds its writes.
#[derive(Debug)]
pub(crate) struct Memtable {
    list: RwLock<SkipListIndex<Versions>>,
    filter: KeyFilter,
    bytes: AtomicUsize,
    /// The number of the WAL file that logs this memtable's writes.
    pub(crate) wal_number: u64,
}

impl Memtable {
    /// An empty memtable whose filter is sized for `budget` bytes (the
    /// memtable size at which it is frozen).
    pub(crate) fn new(wal_number: u64, budget: usize) -> Self {
        Self {
            list: RwLock::new(SkipListIndex::new()),
            filter: KeyFilter::for_budget(budget),
            bytes: AtomicUsize::new(0),
            wal_number,
        }
    }

    /// Adds a version; `seq` must be larger than every earlier one. The
    /// caller publishes `seq` (with a release store) only after this
    /// returns, which is what makes the filter bits visible to readers.
    pub(crate) fn insert(&self, key: Bytes, seq: u64, value: Option<Bytes>) {
        self.bytes
            .fetch_add(Entry::charge(&key, value.as_deref()), Ordering::Relaxed);
        self.filter.add(bloom::hash(&key));
        // One search: the key's version list is found or created in place.
        let mut version = Some((seq, value));
        let mut list = self.list.write();
        let versions =
            list.get_or_insert_with(key, || Versions::One(version.take().unwrap_or((seq, None))));
        if let Some(version) = version {
            versions.push(version);
        }
    }

    /// The newest version of `key` with `seq <= snapshot`: `Some(None)` is
    /// a tombstone, `None` means the memtable knows nothing of the key.
    /// `key_hash` is [`bloom::hash`] of the key.
    pub(crate) fn get(&self, key: &[u8], key_hash: u64, snapshot: u64) -> Option<Option<Bytes>> {
        if !self.filter.may_contain(key_hash) {
            return None;
        }
        let list = self.list.read();
        let versions = list.get(key)?;
        versions
            .as_slice()
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
            for (seq, value) in versions.as_slice().iter().rev() {
                out.push(Entry {
                    key: key.clone(),
                    seq: *seq,
                    value: value.clone(),
                });
            }
        }
        out
    }

    /// Every entry in table order (for a flush), a chunk at a time: a
    /// flush never holds a copy of the whole memtable, which would double
    /// its memory at the moment it is written out.
    pub(crate) fn entries(self: &std::sync::Arc<Self>) -> MemIter {
        MemIter::new(self.clone(), Bound::Unbounded, Bound::Unbounded)
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
        let m = Memtable::new(1, 1 << 20);
        m.insert(Bytes::from_static(b"k"), 1, Some(Bytes::from_static(b"v1")));
        m.insert(Bytes::from_static(b"k"), 3, None);
        m.insert(Bytes::from_static(b"k"), 5, Some(Bytes::from_static(b"v5")));
        let h = bloom::hash(b"k");
        assert_eq!(m.get(b"k", h, 0), None);
        assert_eq!(m.get(b"k", h, 2), Some(Some(Bytes::from_static(b"v1"))));
        assert_eq!(m.get(b"k", h, 4), Some(None));
        assert_eq!(m.get(b"k", h, 9), Some(Some(Bytes::from_static(b"v5"))));
        let all: Vec<Entry> = std::sync::Arc::new(m).entries().collect();
        assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![5, 3, 1]);
    }

    #[test]
    fn the_key_filter_has_no_false_negatives_and_few_false_positives() {
        // A 64 KiB budget: 4096 bits for about 400 entries of 160 bytes.
        let m = Memtable::new(1, 64 << 10);
        let key = |i: u32| Bytes::copy_from_slice(format!("key{i:08}").as_bytes());
        for i in 0..400 {
            m.insert(key(i), u64::from(i) + 1, Some(Bytes::from_static(b"v")));
        }
        for i in 0..400 {
            let k = key(i);
            assert!(
                m.filter.may_contain(bloom::hash(&k)),
                "key {i} filtered out"
            );
            assert!(m.get(&k, bloom::hash(&k), u64::MAX).is_some());
        }
        let positives = (400..20_400)
            .filter(|&i| m.filter.may_contain(bloom::hash(&key(i))))
            .count();
        // 10 bits per key, 4 bits in one word: about 2 %; 5 % bounds it.
        assert!(positives < 1000, "{positives} false positives in 20000");
        assert!(m.get(&key(400), bloom::hash(&key(400)), u64::MAX).is_none());
    }

    #[test]
    fn a_memtable_past_its_budget_still_finds_every_key() {
        let m = Memtable::new(1, 1);
        for i in 0..2000u32 {
            m.insert(
                Bytes::copy_from_slice(&i.to_be_bytes()),
                u64::from(i) + 1,
                None,
            );
        }
        for i in 0..2000u32 {
            let k = i.to_be_bytes();
            assert_eq!(m.get(&k, bloom::hash(&k), u64::MAX), Some(None));
        }
    }

    #[test]
    fn chunked_iteration_sees_every_key_once() {
        let m = std::sync::Arc::new(Memtable::new(1, 1 << 20));
        for i in 0..1000u32 {
            m.insert(Bytes::copy_from_slice(&i.to_be_bytes()), u64::from(i), None);
        }
        let keys: Vec<_> = MemIter::new(m, Bound::Unbounded, Bound::Unbounded).collect();
        assert_eq!(keys.len(), 1000);
        assert!(keys.windows(2).all(|w| w[0].precedes(&w[1])));
    }
}
