//! # pydb-index: where a key lives
//!
//! An [`Index`] maps a key to a small value that says where the key's data
//! lives: for the append-only log engine, the segment and offset of the
//! record that holds the latest value. The index is kept in memory and
//! rebuilt on open (from hint files where they exist), so its cost per entry
//! bounds how many keys a database can hold.
//!
//! Four implementations sit behind the one trait:
//! - [`InMemoryIndex`]: a hash map. Fastest point lookups and inserts; no
//!   order, so a range scan visits every key.
//! - [`BTreeIndex`]: `std`'s `BTreeMap`. Ordered; each key compared on the
//!   way down is a pointer to follow.
//! - [`SkipListIndex`]: a skip list written here, because it is the lesson:
//!   the structure of LevelDB's and RocksDB's memtables. Ordered.
//! - [`BPlusTreeIndex`]: a B+tree written here that keeps each key's first
//!   16 bytes and its length inline in its nodes ([`key_prefix`],
//!   "abbreviated keys"), so a lookup compares integers in contiguous arrays. Ordered, and the log
//!   engine's default.
//!
//! An index is a plain single-threaded structure (`&mut self` to change it);
//! the engine that owns it puts it behind a lock. Every index passes one
//! conformance suite (`tests/suite.rs`) and a property test against a
//! `BTreeMap` model (`tests/model.rs`).

mod arena;
mod bplustree;
mod btree;
mod hash;
pub mod skiplist;

pub use bplustree::{BPlusTreeIndex, Inserter, LeafHint};
pub use btree::BTreeIndex;
pub use hash::InMemoryIndex;
pub use skiplist::SkipListIndex;

use std::ops::Bound;

use bytes::Bytes;

/// The items of an index range iteration: key and value, by reference.
pub type RangeIter<'a, V> = Box<dyn Iterator<Item = (&'a Bytes, &'a V)> + 'a>;

/// A map from keys to the location of their data.
///
/// Keys are compared as byte strings (lexicographically, as `[u8]` orders
/// them). `V` is meant to be small and `Copy`-like, such as a file position;
/// [`Index::memory_bytes`] counts it by its inline size.
pub trait Index<V>: Send + Sync {
    /// Inserts or replaces the value of `key`, returning the previous one.
    /// On replace, the stored key is kept.
    fn insert(&mut self, key: Bytes, value: V) -> Option<V>;

    /// The value of `key`, if present.
    fn get(&self, key: &[u8]) -> Option<&V>;

    /// Removes `key`, returning its value if it was present.
    fn remove(&mut self, key: &[u8]) -> Option<V>;

    /// Whether iteration with [`Index::range`] yields keys in ascending order.
    fn is_ordered(&self) -> bool;

    /// The entries whose keys fall between `start` and `end`.
    ///
    /// An ordered index yields them in ascending key order; an unordered one
    /// ([`Index::is_ordered`] is false) yields them in no particular order and
    /// may have to visit every entry to find them. An empty or inverted range
    /// (`start` after `end`) yields nothing; it never panics.
    fn range<'a>(&'a self, start: Bound<&[u8]>, end: Bound<&[u8]>) -> RangeIter<'a, V>;

    /// The number of keys.
    fn len(&self) -> usize;

    /// Whether the index holds no key.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes every key. An implementation may keep its allocated capacity,
    /// as `Vec::clear` does, so [`Index::memory_bytes`] need not drop to 0.
    fn clear(&mut self);

    /// An estimate of the heap memory the index uses, in bytes, counting the
    /// keys, the values and the structure's own overhead (allocated capacity,
    /// not just what is filled). It counts the bytes requested from the
    /// allocator, not the allocator's own bookkeeping; `examples/memory.rs`
    /// checks it against a counting allocator.
    fn memory_bytes(&self) -> usize;
}

/// Whether `key` lies between `start` and `end`.
pub fn in_bounds(key: &[u8], start: Bound<&[u8]>, end: Bound<&[u8]>) -> bool {
    let after_start = match start {
        Bound::Included(s) => key >= s,
        Bound::Excluded(s) => key > s,
        Bound::Unbounded => true,
    };
    let before_end = match end {
        Bound::Included(e) => key <= e,
        Bound::Excluded(e) => key < e,
        Bound::Unbounded => true,
    };
    after_start && before_end
}

/// The first 8 bytes of `key` as a big-endian number, zero-padded: an
/// abbreviated key. If `a < b` then `key_prefix(a) <= key_prefix(b)`, so
/// unequal prefixes order two keys without reading them; equal ones say
/// nothing, and the full keys decide.
pub fn key_prefix(key: &[u8]) -> u64 {
    let mut buf = [0u8; 8];
    let n = key.len().min(8);
    buf[..n].copy_from_slice(&key[..n]);
    u64::from_be_bytes(buf)
}
