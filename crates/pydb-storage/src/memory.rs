//! `MemoryStorage`: the in-memory engine of the roadmap.
//!
//! An ordered map behind a read-write lock. It persists nothing, which
//! makes it the model: every other engine is tested by running the same
//! operations on it and on `MemoryStorage` and asserting that they agree.
//!
//! # The map
//!
//! The map is pydb-index's [`BPlusTreeIndex`], the log engine's index
//! too, with the values inline in its leaves. It used to be std's
//! `BTreeMap`, which is simpler, but what a point read costs on a map
//! larger than the CPU's caches is the cache lines its descent waits for,
//! one after the other, and there `BTreeMap` is poor: a node holds up to
//! 11 keys searched one by one, and each compared key is a separate cache
//! line (64-byte inline slots, often straddling two). A profile of SQL
//! point selects on 100,000 rows counted about 26 L1d misses per select
//! in its descent alone, against 15 for all of SQLite's select.
//! `BPlusTreeIndex` compares 8-byte abbreviations of the keys, eight per
//! cache line, fetched together (its module docs, *Searching a node*), and
//! skips the bytes all keys of a node's range share (*Prefix skipping*):
//! the version keys of a SQL table share their first 17 bytes, which
//! would otherwise make every abbreviation equal. A point read
//! ([`StorageEngine::first_value_in`], one descent for the start of the
//! range, `BPlusTreeIndex::first_in`) reads no key bytes at all, and the
//! value lies in the leaf it searched: see `docs/benchmarks/sql-oltp.md`,
//! "Session 16", for the figures.
//!
//! The keys are `Bytes`, each in its own allocation (a write batch's key
//! is kept as handed in, a reference count; `set` copies it once); the
//! tree reads them only when two abbreviations tie. Values are
//! [`MapBytes`]: up to [`INLINE_BYTES`] bytes (a SQL row of a few columns)
//! inline in the leaf, so a point read that found its key reads the value
//! there, not behind a second pointer; longer ones shared.
//!
//! A write batch goes into the map through one `Inserter` (pydb-index):
//! each key starts from where the last one landed instead of from the
//! root. The transaction layer's commits are batches of version keys in
//! ascending order (a SQL table's new rows one after another, its index
//! entries spread over the index), so most keys land in the leaf of the
//! key before them or the next, and an ascending run fills its leaves
//! whole; see `BPlusTreeIndex`'s *Sorted batches* and
//! `docs/benchmarks/sql-oltp.md`, "Session 17: inserts".
//!
//! # Scans
//!
//! A scan copies the range out in chunks, each under the read lock and
//! found with the map's `range` (a seek, not a filter over the whole map),
//! then continues after the last key it copied. The first chunk is small
//! and each next one twice as large, so a scan that stops after a few keys
//! copies a few keys, and a long scan takes the lock rarely. A chunk's
//! small pairs are copied into one buffer and handed out as slices of it,
//! so a scanned pair costs a copy, not two reference counts in two
//! separate allocations. [`StorageEngine::scan_with`] copies the same
//! chunks into one buffer it reuses and lends the visitor slices of it,
//! with the lock released (the visitor may write): no `Bytes` at all.
//! [`StorageEngine::scan_with_locked`], for a visitor that does not call
//! the engine (the transaction layer's scan, which copies what it keeps
//! into a chunk of its own), copies nothing: it lends the map's own keys
//! and values under the read lock, a bounded number at a time.
//! Like the log engine's scans, it is not a
//! snapshot: it yields every key untouched during the scan once, with a
//! value it held during the scan, which is what the `StorageEngine` trait
//! promises.
//!
//! # Limits
//!
//! Keys and values have the same size limits as in the log engine (64 KiB
//! and 16 MiB by default, [`MemoryStorage::with_limits`] to change them):
//! the model must refuse what the engines refuse, and a limit on keys is
//! what bounds the work of anything that walks a key byte by byte (a glob
//! match, a comparison) on behalf of a client.

use std::ops::Bound;

use bytes::Bytes;
use parking_lot::RwLock;
use pydb_index::{BPlusTreeIndex, Index};

use crate::engine::{
    BatchOp, KeyRange, ReadHint, ScanIter, Stats, StorageEngine, Visit, WriteBatch,
};
use crate::{Error, Result};

/// Keys copied by the first chunk of a scan; each next chunk doubles...
const FIRST_SCAN_CHUNK: usize = 32;
/// ... up to this many.
const MAX_SCAN_CHUNK: usize = 4096;

/// Keys copied by a chunk of [`StorageEngine::scan_with`] at most: its
/// caller (the transaction layer's scan) stops after a number of entries
/// of its own, and the rest of the chunk it stops in was copied for
/// nothing, so its chunks grow less than a `scan`'s.
const MAX_VISIT_CHUNK: usize = 512;

/// A scanned pair of at most this many bytes (key and value) is copied
/// into the chunk's buffer; a larger one is shared (see
/// `MemoryScan::refill`).
const MAX_COPIED_PAIR: usize = 512;

/// The longest key accepted by default, in bytes (as the log engine's).
const DEFAULT_MAX_KEY_SIZE: usize = 64 << 10;
/// The longest value accepted by default, in bytes (as the log engine's).
const DEFAULT_MAX_VALUE_SIZE: usize = 16 << 20;

/// The longest value stored inline in the map (see `MapBytes`): with its
/// length byte and the enum's tag, a `MapBytes` is 40 bytes, as large as
/// the shared variant (a `Bytes` and the tag) makes it anyway. A SQL row
/// of a few short columns fits (the OLTP benchmark's are 20-odd bytes,
/// an index entry's value is its row's key); 62 bytes (a 64-byte `MapBytes`, a
/// cache line) cost 24 bytes more per entry, 768 per leaf, for rows
/// that rarely need them (see `docs/benchmarks/sql-oltp.md`, "Session
/// 20").
pub const INLINE_BYTES: usize = 38;

const _: () = assert!(std::mem::size_of::<MapBytes>() == 40);
const _: () = assert!(std::mem::size_of::<Option<MapBytes>>() == 40);

/// The map: keys in a B+tree searched by abbreviation (see the module
/// docs), values inline in its leaves.
type Map = BPlusTreeIndex<Value>;

/// A value of the map, inline when short: a point read that finds its key
/// in a leaf reads the value from that leaf, rather than following a
/// pointer to a separate allocation (a second dependent cache miss per
/// read on a map larger than the caches). A SQL row of a few columns is
/// such a value.
type Value = MapBytes;

/// Bytes as the map keeps its values: inline when short, else shared.
#[derive(Clone)]
enum MapBytes {
    /// `bytes[..len]`, `len <= INLINE_BYTES`.
    Inline { len: u8, bytes: [u8; INLINE_BYTES] },
    /// Bytes longer than [`INLINE_BYTES`].
    Shared(Bytes),
}

impl MapBytes {
    /// `bytes` for the map: copied inline when short, else shared.
    fn of(bytes: &Bytes) -> MapBytes {
        Self::inline(bytes).unwrap_or_else(|| MapBytes::Shared(bytes.clone()))
    }

    /// `bytes` for the map, copied.
    fn copy_of(bytes: &[u8]) -> MapBytes {
        Self::inline(bytes).unwrap_or_else(|| MapBytes::Shared(Bytes::copy_from_slice(bytes)))
    }

    fn inline(from: &[u8]) -> Option<MapBytes> {
        let len = u8::try_from(from.len())
            .ok()
            .filter(|&l| usize::from(l) <= INLINE_BYTES)?;
        let mut bytes = [0; INLINE_BYTES];
        bytes.get_mut(..from.len())?.copy_from_slice(from);
        Some(MapBytes::Inline { len, bytes })
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            // `len <= INLINE_BYTES` by construction; `get` keeps that a
            // checked fact rather than an index that could panic.
            MapBytes::Inline { len, bytes } => bytes.get(..usize::from(*len)).unwrap_or(bytes),
            MapBytes::Shared(b) => b,
        }
    }

    /// The bytes as `Bytes`: a copy of inline ones, a clone of shared ones.
    fn to_bytes(&self) -> Bytes {
        match self {
            MapBytes::Inline { .. } => Bytes::copy_from_slice(self.as_slice()),
            MapBytes::Shared(b) => b.clone(),
        }
    }
}

impl std::ops::Deref for MapBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl std::fmt::Debug for MapBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", Bytes::copy_from_slice(self.as_slice()))
    }
}

/// The in-memory engine, and the model the others are checked against.
#[derive(Debug)]
pub struct MemoryStorage {
    map: RwLock<Map>,
    max_key_size: usize,
    max_value_size: usize,
}

impl Default for MemoryStorage {
    fn default() -> Self {
        Self::with_limits(DEFAULT_MAX_KEY_SIZE, DEFAULT_MAX_VALUE_SIZE)
    }
}

impl MemoryStorage {
    /// An empty engine with the default limits.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty engine that refuses keys longer than `max_key_size` and
    /// values longer than `max_value_size` bytes.
    pub fn with_limits(max_key_size: usize, max_value_size: usize) -> Self {
        Self {
            map: RwLock::new(Map::new()),
            max_key_size,
            max_value_size,
        }
    }

    fn check_key(&self, key: &[u8]) -> Result<()> {
        if key.is_empty() {
            return Err(Error::EmptyKey);
        }
        if key.len() > self.max_key_size {
            return Err(Error::KeyTooLarge {
                len: key.len(),
                max: self.max_key_size,
            });
        }
        Ok(())
    }

    /// What `out` makes of the first entry in `start..end`, if any: one
    /// descent of the map, for the start ([`BPlusTreeIndex::first_in`]).
    fn first_entry<T>(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        out: impl FnOnce(&Bytes, &Value) -> T,
    ) -> Option<T> {
        let map = self.map.read();
        map.first_in(start, end).map(|(k, v)| out(k, v))
    }

    fn check_value(&self, value: &[u8]) -> Result<()> {
        if value.len() > self.max_value_size {
            return Err(Error::ValueTooLarge {
                len: value.len(),
                max: self.max_value_size,
            });
        }
        Ok(())
    }

    /// Every key and value of `batch` within the limits: a batch is
    /// refused whole, before anything of it is written.
    fn check_batch(&self, batch: &WriteBatch) -> Result<()> {
        for op in batch.ops() {
            self.check_key(op.key())?;
            if let BatchOp::Set { value, .. } = op {
                self.check_value(value)?;
            }
        }
        Ok(())
    }
}

impl StorageEngine for MemoryStorage {
    fn set(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.check_key(key)?;
        self.check_value(value)?;
        self.map
            .write()
            .insert(Bytes::copy_from_slice(key), Value::copy_of(value));
        Ok(())
    }

    fn get(&self, key: &[u8]) -> Result<Option<Bytes>> {
        Ok(self.map.read().get(key).map(Value::to_bytes))
    }

    fn delete(&self, key: &[u8]) -> Result<bool> {
        self.check_key(key)?;
        Ok(self.map.write().remove(key).is_some())
    }

    fn write_batch(&self, batch: &WriteBatch) -> Result<()> {
        self.check_batch(batch)?;
        let mut map = self.map.write();
        // One cursor for the batch: a commit's keys come sorted, and each
        // insert then starts where the last one landed (see *Sorted
        // batches* in `BPlusTreeIndex`'s docs).
        let mut map = map.inserter();
        for op in batch.ops() {
            match op {
                BatchOp::Set { key, value } => {
                    map.insert(key.clone(), Value::of(value));
                }
                BatchOp::Delete { key } => {
                    map.remove(key);
                }
            }
        }
        Ok(())
    }

    /// The keys are taken as they are, without a clone. A value is
    /// copied, as `set` copies it: the caller's `Bytes` may be a slice of
    /// a larger buffer (the transaction layer's commit encodes all of its
    /// values into one), which a shared value would keep alive.
    fn write_batch_owned(&self, batch: WriteBatch) -> Result<()> {
        self.check_batch(&batch)?;
        let mut map = self.map.write();
        // One cursor for the batch, as in `write_batch`.
        let mut map = map.inserter();
        for op in batch.into_ops() {
            match op {
                BatchOp::Set { key, value } => {
                    map.insert(key, Value::copy_of(&value));
                }
                BatchOp::Delete { key } => {
                    map.remove(&key);
                }
            }
        }
        Ok(())
    }

    fn scan(&self, range: KeyRange) -> Result<ScanIter<'_>> {
        let next_start = range.start.clone();
        Ok(Box::new(MemoryScan {
            map: &self.map,
            end: range.end,
            next_start,
            chunk: FIRST_SCAN_CHUNK,
            buffer: Bytes::new(),
            ready: Vec::new().into_iter(),
            pair_bytes: 0,
            exhausted: false,
        }))
    }

    /// The chunks of [`Self::scan`], handed to `visit` as slices of the
    /// chunk's buffer (one buffer for the whole scan, reused): no `Bytes`
    /// per pair, no boxed iterator. The lock is released before `visit`
    /// runs, which may write to this engine.
    fn scan_with(&self, range: (Bound<&[u8]>, Bound<&[u8]>), visit: &mut Visit<'_>) -> Result<()> {
        let (start, end) = range;
        // After the first chunk, the scan resumes after the last key it
        // copied.
        let mut resume = Resume::default();
        let mut chunk = FIRST_SCAN_CHUNK;
        let mut buffer: Vec<u8> = Vec::new();
        let mut pairs: Vec<Pair> = Vec::new();
        loop {
            let Some(from) = resume.from(start, end) else {
                return Ok(());
            };
            buffer.clear();
            pairs.clear();
            {
                let map = self.map.read();
                // As `MemoryScan::refill`: small pairs copied, large ones
                // shared.
                for (key, value) in map.range_of(from, end).take(chunk) {
                    if pairs.is_empty() {
                        // Room for a chunk of pairs like its first, so
                        // that the buffer is not grown pair by pair. A
                        // buffer too small is replaced, not grown: it is
                        // empty here, and `realloc` would copy its old
                        // bytes for nothing.
                        let room = chunk.saturating_mul(key.len() + value.len() + 8);
                        if buffer.capacity() < room {
                            buffer = Vec::with_capacity(room);
                        }
                        if pairs.capacity() < chunk {
                            pairs = Vec::with_capacity(chunk);
                        }
                    }
                    pairs.push(Pair::copy(&mut buffer, key, value));
                }
            }
            for pair in &pairs {
                let (key, value) = match pair {
                    Pair::Copied { key, value } => (
                        buffer.get(key.clone()).unwrap_or_default(),
                        buffer.get(value.clone()).unwrap_or_default(),
                    ),
                    Pair::Shared(key, value) => (key.as_ref(), value.as_ref()),
                };
                if visit(key, value).is_break() {
                    return Ok(());
                }
            }
            if pairs.len() < chunk {
                return Ok(());
            }
            let last = match pairs.last() {
                Some(Pair::Copied { key, .. }) => buffer.get(key.clone()).unwrap_or_default(),
                Some(Pair::Shared(key, _)) => key.as_ref(),
                None => return Ok(()),
            };
            resume.after(last);
            chunk = (chunk * 2).min(MAX_VISIT_CHUNK);
        }
    }

    fn first(&self, range: KeyRange) -> Result<Option<(Bytes, Bytes)>> {
        let (start, end) = range.as_slices();
        self.first_in(start, end)
    }

    /// Lends the map's own keys and values to the visitor, under the read
    /// lock: nothing is copied. The lock is let go and taken again after
    /// every `MAX_SCAN_CHUNK` entries (the walk resumes after the last
    /// key visited, as `scan_with` does), so a long walk holds off a writer
    /// no longer than a chunk of `scan` does.
    fn scan_with_locked(
        &self,
        range: (Bound<&[u8]>, Bound<&[u8]>),
        visit: &mut Visit<'_>,
    ) -> Result<()> {
        let (start, end) = range;
        let mut resume = Resume::default();
        loop {
            let Some(from) = resume.from(start, end) else {
                return Ok(());
            };
            let map = self.map.read();
            let mut visited = 0;
            let mut last: Option<&Bytes> = None;
            for (key, value) in map.range_of(from, end) {
                if visited == MAX_SCAN_CHUNK {
                    break;
                }
                visited += 1;
                if visit(key, value).is_break() {
                    return Ok(());
                }
                last = Some(key);
            }
            if visited < MAX_SCAN_CHUNK {
                return Ok(());
            }
            let Some(last) = last else {
                return Ok(());
            };
            resume.after(last);
        }
    }

    fn first_in(&self, start: Bound<&[u8]>, end: Bound<&[u8]>) -> Result<Option<(Bytes, Bytes)>> {
        Ok(self.first_entry(start, end, |k, v| (k.clone(), out_value(k, v))))
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }

    fn compact(&self) -> Result<()> {
        Ok(())
    }

    fn stats(&self) -> Stats {
        let map = self.map.read();
        let bytes: usize = map
            .range(Bound::Unbounded, Bound::Unbounded)
            .map(|(k, v)| k.len() + v.len())
            .sum();
        Stats {
            engine: "memory",
            counters: vec![
                ("live_keys", map.len() as u64),
                ("live_bytes", bytes as u64),
            ],
        }
    }

    /// Only the value is copied out; see [`StorageEngine::first_value_in`].
    fn first_value_in(&self, start: Bound<&[u8]>, end: Bound<&[u8]>) -> Result<Option<Bytes>> {
        Ok(self.first_entry(start, end, out_value))
    }

    /// Starts at the map's leaf that `hint` names, when the map has kept
    /// its shape and the leaf's range holds `start`.
    fn first_value_in_hinted(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        hint: &mut ReadHint,
    ) -> Result<Option<Bytes>> {
        let map = self.map.read();
        Ok(map
            .first_in_hinted(start, end, &mut hint.leaf)
            .map(|(k, v)| out_value(k, v)))
    }

    /// The value is copied from the map's leaf into `out` under the read
    /// lock: no `Bytes` is made for it (the SQL point select's read).
    fn first_value_into(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        out: &mut Vec<u8>,
    ) -> Result<bool> {
        out.clear();
        Ok(self
            .first_entry(start, end, |_, value| out.extend_from_slice(value))
            .is_some())
    }
}

/// The value of the entry `key`, `value` as `first` hands it out. A small
/// value is copied, as a scan copies it: its bytes are read right after
/// anyway, while a clone would also touch the reference count in a
/// separate allocation (a second cache miss, and two atomic updates).
fn out_value(key: &Bytes, value: &Value) -> Bytes {
    if key.len() + value.len() <= MAX_COPIED_PAIR {
        Bytes::copy_from_slice(value)
    } else {
        value.to_bytes()
    }
}

/// A scan over a [`MemoryStorage`], copying the range out a chunk at a time.
struct MemoryScan<'a> {
    map: &'a RwLock<Map>,
    end: Bound<Bytes>,
    /// Where the next chunk starts.
    next_start: Bound<Bytes>,
    /// How many pairs the next chunk copies.
    chunk: usize,
    /// The buffer the current chunk's small pairs were copied to.
    buffer: Bytes,
    /// The current chunk's pairs not yet handed out: each becomes a pair
    /// of `Bytes` only when it is (no second list of them is built).
    ready: std::vec::IntoIter<Pair>,
    /// The bytes per copied pair of the last chunk: the next buffer is
    /// allocated at about its size at once, rather than grown (and
    /// copied again) as it fills.
    pair_bytes: usize,
    exhausted: bool,
}

/// A pair of a chunk being copied out: the spans of the chunk's buffer
/// it was copied to, or the map's own (large) key and value.
enum Pair {
    Copied {
        key: std::ops::Range<usize>,
        value: std::ops::Range<usize>,
    },
    Shared(Bytes, Bytes),
}

impl Pair {
    /// Copies a small pair to the end of `buffer` and returns its spans
    /// there; a large one (over `MAX_COPIED_PAIR` bytes) is shared instead.
    fn copy(buffer: &mut Vec<u8>, key: &Bytes, value: &Value) -> Pair {
        if key.len() + value.len() <= MAX_COPIED_PAIR {
            let key_start = buffer.len();
            buffer.extend_from_slice(key);
            let value_start = buffer.len();
            buffer.extend_from_slice(value);
            Pair::Copied {
                key: key_start..value_start,
                value: value_start..buffer.len(),
            }
        } else {
            Pair::Shared(key.clone(), value.to_bytes())
        }
    }
}

impl MemoryScan<'_> {
    fn refill(&mut self) {
        if is_empty_range(
            self.next_start.as_ref().map(|b| b.as_ref()),
            self.end.as_ref().map(|b| b.as_ref()),
        ) {
            self.exhausted = true;
            return;
        }
        let map = self.map.read();
        let range = map.range_of(
            self.next_start.as_ref().map(|b| b.as_ref()),
            self.end.as_ref().map(|b| b.as_ref()),
        );
        // Small pairs are copied into one buffer per chunk and handed out
        // as slices of it: a copy of a few dozen bytes, already in cache
        // since the map was just read there, costs less than two clones,
        // whose reference counts sit in two more allocations (two more
        // cache misses, and two atomic updates now and two when the
        // caller drops them). Large values are shared, not copied.
        let mut buffer = Vec::with_capacity(self.chunk.saturating_mul(self.pair_bytes));
        let mut pairs = Vec::with_capacity(self.chunk);
        for (key, value) in range.take(self.chunk) {
            pairs.push(Pair::copy(&mut buffer, key, value));
        }
        drop(map);
        // A little over the mean, so that a chunk like the last fits.
        self.pair_bytes = (buffer.len() / pairs.len().max(1)) * 9 / 8 + 1;
        self.buffer = Bytes::from(buffer);
        let last = match pairs.last() {
            Some(Pair::Copied { key, .. }) => Some(self.buffer.slice(key.clone())),
            Some(Pair::Shared(key, _)) => Some(key.clone()),
            None => None,
        };
        match last {
            Some(last) if pairs.len() == self.chunk => {
                self.next_start = Bound::Excluded(last);
                self.chunk = (self.chunk * 2).min(MAX_SCAN_CHUNK);
            }
            _ => self.exhausted = true,
        }
        self.ready = pairs.into_iter();
    }
}

impl Iterator for MemoryScan<'_> {
    type Item = Result<(Bytes, Bytes)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(pair) = self.ready.next() {
                return Some(Ok(match pair {
                    Pair::Copied { key, value } => {
                        (self.buffer.slice(key), self.buffer.slice(value))
                    }
                    Pair::Shared(key, value) => (key, value),
                }));
            }
            if self.exhausted {
                return None;
            }
            self.refill();
        }
    }
}

/// Where a scan that lets go of its lock between chunks picks up again:
/// after the last key it handed out. `scan_with` and `scan_with_locked`
/// keep one each.
#[derive(Default)]
struct Resume {
    last: Vec<u8>,
    started: bool,
}

impl Resume {
    /// The lower bound of the next chunk (`start` for the first), or `None`
    /// when nothing of the range is left.
    fn from<'a>(&'a self, start: Bound<&'a [u8]>, end: Bound<&[u8]>) -> Option<Bound<&'a [u8]>> {
        let from = if self.started {
            Bound::Excluded(self.last.as_slice())
        } else {
            start
        };
        (!is_empty_range(from, end)).then_some(from)
    }

    /// Records the last key of a chunk.
    fn after(&mut self, key: &[u8]) {
        self.last.clear();
        self.last.extend_from_slice(key);
        self.started = true;
    }
}

/// Whether no key can lie between `start` and `end` whatever the map
/// holds (a start above the end, or equal bounds both excluded): a scan
/// ends there without a descent of the map.
fn is_empty_range(start: Bound<&[u8]>, end: Bound<&[u8]>) -> bool {
    let (s, s_excluded) = match start {
        Bound::Included(s) => (s, false),
        Bound::Excluded(s) => (s, true),
        Bound::Unbounded => return false,
    };
    let (e, e_excluded) = match end {
        Bound::Included(e) => (e, false),
        Bound::Excluded(e) => (e, true),
        Bound::Unbounded => return false,
    };
    s > e || (s == e && (s_excluded || e_excluded))
}

#[cfg(test)]
mod tests {
    use std::ops::ControlFlow;

    use super::*;

    fn keys(engine: &MemoryStorage, range: KeyRange) -> Vec<Bytes> {
        engine
            .scan(range)
            .unwrap()
            .map(|item| item.unwrap().0)
            .collect()
    }

    /// A batch handed over keeps no share of its values' buffer: the
    /// commit's values are slices of one buffer per group, which a map
    /// sharing a long value would keep alive whole.
    #[test]
    fn an_owned_batch_keeps_no_share_of_its_values() {
        let engine = MemoryStorage::new();
        let values = Bytes::from(vec![5u8; 4 * INLINE_BYTES]);
        let mut batch = WriteBatch::new();
        batch
            .set(&b"long"[..], values.slice(..2 * INLINE_BYTES))
            .set(
                &b"short"[..],
                values.slice(2 * INLINE_BYTES..2 * INLINE_BYTES + 3),
            );
        engine.write_batch_owned(batch).unwrap();
        assert!(values.is_unique(), "the map shares the values' buffer");
        assert_eq!(
            engine.get(b"long").unwrap().unwrap(),
            vec![5u8; 2 * INLINE_BYTES]
        );
        assert_eq!(engine.get(b"short").unwrap().unwrap(), vec![5u8; 3]);
    }

    #[test]
    fn scans_cross_chunk_boundaries_and_respect_bounds() {
        let engine = MemoryStorage::new();
        let n = FIRST_SCAN_CHUNK * 5 + 3;
        for i in 0..n as u32 {
            engine.set(&i.to_be_bytes(), b"v").unwrap();
        }
        let all = keys(&engine, KeyRange::all());
        let expected: Vec<Bytes> = (0..n as u32)
            .map(|i| Bytes::copy_from_slice(&i.to_be_bytes()))
            .collect();
        assert_eq!(all, expected);
        let a = 7u32.to_be_bytes();
        let b = 100u32.to_be_bytes();
        assert_eq!(
            keys(&engine, KeyRange::new(a.as_slice()..b.as_slice())),
            expected[7..100]
        );
        assert_eq!(
            keys(&engine, KeyRange::new(a.as_slice()..=b.as_slice())),
            expected[7..=100]
        );
    }

    /// The locked scan lets the lock go every `MAX_SCAN_CHUNK` entries
    /// and resumes after the last key visited: across those breaks it
    /// visits every key once, in order, stops when told, and a write
    /// between two visits (here, by another thread, so it must wait for
    /// the lock to be let go) is not lost or doubled.
    #[test]
    fn the_locked_scan_resumes_across_its_lock_breaks() {
        let engine = MemoryStorage::new();
        let n = MAX_SCAN_CHUNK * 2 + 7;
        for i in 0..n as u32 {
            engine.set(&i.to_be_bytes(), &i.to_le_bytes()).unwrap();
        }
        let mut seen = Vec::new();
        engine
            .scan_with_locked((Bound::Unbounded, Bound::Unbounded), &mut |k, v| {
                let i = u32::from_be_bytes(k.try_into().unwrap());
                assert_eq!(v, i.to_le_bytes());
                seen.push(i);
                ControlFlow::Continue(())
            })
            .unwrap();
        assert_eq!(seen, (0..n as u32).collect::<Vec<_>>());
        // Stopping right at a lock break, and just after one.
        for limit in [MAX_SCAN_CHUNK, MAX_SCAN_CHUNK + 1] {
            let mut count = 0;
            engine
                .scan_with_locked((Bound::Unbounded, Bound::Unbounded), &mut |_, _| {
                    count += 1;
                    if count == limit {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                })
                .unwrap();
            assert_eq!(count, limit);
        }
        // A writer thread adds keys past the end while the scan runs; the
        // scan sees each original key exactly once.
        std::thread::scope(|s| {
            let writer = s.spawn(|| {
                for i in 0..100u32 {
                    engine
                        .set(&(n as u32 + 1000 + i).to_be_bytes(), b"late")
                        .unwrap();
                }
            });
            let mut originals = 0;
            engine
                .scan_with_locked((Bound::Unbounded, Bound::Unbounded), &mut |k, _| {
                    if u32::from_be_bytes(k.try_into().unwrap()) < n as u32 {
                        originals += 1;
                    }
                    ControlFlow::Continue(())
                })
                .unwrap();
            writer.join().unwrap();
            assert_eq!(originals, n);
        });
    }

    /// Small pairs come out of the chunk's buffer, large ones shared;
    /// both must come out whole and in order, across chunks.
    #[test]
    fn copied_and_shared_pairs_come_out_whole() {
        let engine = MemoryStorage::new();
        let n = FIRST_SCAN_CHUNK * 3 + 5;
        let value = |i: usize| {
            vec![
                i as u8;
                if i.is_multiple_of(7) {
                    MAX_COPIED_PAIR
                } else {
                    i % 50
                }
            ]
        };
        for i in 0..n {
            engine.set(&(i as u32).to_be_bytes(), &value(i)).unwrap();
        }
        let got: Vec<(Bytes, Bytes)> = engine
            .scan(KeyRange::all())
            .unwrap()
            .map(|item| item.unwrap())
            .collect();
        assert_eq!(got.len(), n);
        for (i, (k, v)) in got.iter().enumerate() {
            assert_eq!(&k[..], &(i as u32).to_be_bytes()[..]);
            assert_eq!(&v[..], &value(i)[..]);
        }
    }

    /// Keys of 1 to 200 bytes (shorter and longer than the tree's 16-byte
    /// abbreviation), sharing long prefixes, with values inline and shared,
    /// written by `set` and by batches: the map orders, finds, hands out
    /// and deletes them as their bytes.
    #[test]
    fn keys_and_values_of_every_length_order_and_compare_as_their_bytes() {
        assert_eq!(
            std::mem::size_of::<Value>(),
            40,
            "a value is as large as its shared variant, no larger"
        );
        let engine = MemoryStorage::new();
        let mut model = std::collections::BTreeMap::new();
        let mut batch = WriteBatch::new();
        for len in [1, 2, INLINE_BYTES - 1, INLINE_BYTES, INLINE_BYTES + 1, 200] {
            for last in [0u8, 1, 0xff] {
                let mut key = vec![7u8; len];
                if let Some(l) = key.last_mut() {
                    *l = last;
                }
                // The longest keys get values too large to copy out.
                let value = vec![last; if len == 200 { MAX_COPIED_PAIR } else { len % 5 }];
                if last == 1 {
                    batch.set(key.clone(), value.clone());
                } else {
                    engine.set(&key, &value).unwrap();
                }
                model.insert(key, value);
            }
        }
        engine.write_batch(&batch).unwrap();
        let scanned: Vec<(Vec<u8>, Vec<u8>)> = engine
            .scan(KeyRange::all())
            .unwrap()
            .map(|item| item.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
            .collect();
        let expected: Vec<(Vec<u8>, Vec<u8>)> = model.clone().into_iter().collect();
        assert_eq!(scanned, expected);
        for (key, value) in &model {
            assert_eq!(engine.get(key).unwrap().as_deref(), Some(&value[..]));
            let first = engine
                .first_in(Bound::Included(key), Bound::Unbounded)
                .unwrap()
                .map(|(k, v)| (k.to_vec(), v.to_vec()));
            assert_eq!(first, Some((key.clone(), value.clone())));
        }
        let mut deletes = WriteBatch::new();
        for key in model.keys().step_by(2) {
            deletes.delete(key.clone());
        }
        engine.write_batch(&deletes).unwrap();
        let left = keys(&engine, KeyRange::all());
        let expected: Vec<Bytes> = model
            .keys()
            .skip(1)
            .step_by(2)
            .map(|k| Bytes::copy_from_slice(k))
            .collect();
        assert_eq!(left, expected);
    }

    #[test]
    fn inverted_and_empty_bounds_yield_nothing_instead_of_panicking() {
        let engine = MemoryStorage::new();
        for key in [b"a", b"b", b"c"] {
            engine.set(key, b"v").unwrap();
        }
        let b = Bytes::from_static(b"b");
        let c = Bytes::from_static(b"c");
        let cases = [
            (Bound::Excluded(b.clone()), Bound::Excluded(b.clone())),
            (Bound::Included(b.clone()), Bound::Excluded(b.clone())),
            (Bound::Excluded(b.clone()), Bound::Included(b.clone())),
            (Bound::Included(c.clone()), Bound::Included(b.clone())),
            (Bound::Excluded(c.clone()), Bound::Excluded(b.clone())),
        ];
        for (start, end) in cases {
            let range = KeyRange { start, end };
            assert!(keys(&engine, range.clone()).is_empty(), "{range:?}");
        }
        let range = KeyRange {
            start: Bound::Included(b.clone()),
            end: Bound::Included(b.clone()),
        };
        assert_eq!(keys(&engine, range), vec![b]);
    }

    /// Values on both sides of `INLINE_BYTES`, written by `set` and by a
    /// batch, overwritten from inline to shared and back, come out whole
    /// through every read (`get`, `first_in`, `first_value_in`, the scans).
    #[test]
    fn inline_and_shared_values_come_out_whole() {
        let engine = MemoryStorage::new();
        let value_of = |len: usize, salt: u8| -> Vec<u8> {
            (0..len)
                .map(|i| (i as u8).wrapping_mul(31) ^ salt)
                .collect()
        };
        let lens = [
            0,
            1,
            INLINE_BYTES - 1,
            INLINE_BYTES,
            INLINE_BYTES + 1,
            300,
            1000,
        ];
        let mut model = std::collections::BTreeMap::new();
        for (round, salt) in [0x11u8, 0x5A, 0xC3].into_iter().enumerate() {
            let mut batch = WriteBatch::new();
            for i in 0..lens.len() {
                // Each round gives a key another length than the last.
                let len = lens[(i + round) % lens.len()];
                let key = vec![b'k', i as u8];
                let value = value_of(len, salt);
                if i % 2 == 0 {
                    engine.set(&key, &value).unwrap();
                } else {
                    batch.set(key.clone(), value.clone());
                }
                model.insert(key, value);
            }
            engine.write_batch(&batch).unwrap();
            for (key, value) in &model {
                assert_eq!(engine.get(key).unwrap().as_deref(), Some(&value[..]));
                let bound = || Bound::Included(&key[..]);
                let first = engine.first_in(bound(), bound()).unwrap();
                assert_eq!(first.map(|(_, v)| v.to_vec()).as_ref(), Some(value));
                let first = engine.first_value_in(bound(), bound()).unwrap();
                assert_eq!(first.as_deref(), Some(&value[..]));
            }
            let expected: Vec<(Vec<u8>, Vec<u8>)> = model.clone().into_iter().collect();
            let scanned: Vec<(Vec<u8>, Vec<u8>)> = engine
                .scan(KeyRange::all())
                .unwrap()
                .map(|item| item.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
                .collect();
            assert_eq!(scanned, expected);
            let mut visited = Vec::new();
            engine
                .scan_with_locked((Bound::Unbounded, Bound::Unbounded), &mut |k, v| {
                    visited.push((k.to_vec(), v.to_vec()));
                    ControlFlow::Continue(())
                })
                .unwrap();
            assert_eq!(visited, expected);
            let live: u64 = expected
                .iter()
                .map(|(k, v)| (k.len() + v.len()) as u64)
                .sum();
            assert!(engine.stats().counters.contains(&("live_bytes", live)));
        }
    }
}
