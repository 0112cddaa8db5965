//! The `StorageEngine` trait: what every engine offers.
//!
//! ## Concurrency promise
//!
//! Engines are `Send + Sync` and every method takes `&self`: any number of
//! threads may read, write and scan at once. Each `set`, `delete` and
//! `write_batch` is atomic and linearizable: once it returns, every later
//! `get` on any thread sees it. A `scan` yields keys in ascending order;
//! each key it yields carries a value that key held at some moment during
//! the scan, and a key that is neither written nor deleted during the scan
//! is yielded exactly once with its value. A scan is not a snapshot: writes
//! that land while it runs may or may not show up (transactions, in
//! `pydb-txn`, are where snapshots come from).

use std::ops::{Bound, ControlFlow, RangeBounds};

use bytes::Bytes;

use crate::Result;

/// One change in a [`WriteBatch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchOp {
    /// Set `key` to `value`.
    Set {
        /// The key.
        key: Bytes,
        /// The new value.
        value: Bytes,
    },
    /// Delete `key`.
    Delete {
        /// The key.
        key: Bytes,
    },
}

impl BatchOp {
    /// The key this operation changes.
    pub fn key(&self) -> &Bytes {
        match self {
            BatchOp::Set { key, .. } | BatchOp::Delete { key } => key,
        }
    }
}

/// A group of changes applied atomically: after a crash, all or none.
/// Later operations on the same key win over earlier ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteBatch {
    ops: Vec<BatchOp>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty batch with room for `ops` operations: a writer that knows
    /// its batch's size (a transaction's commit) saves the vector's
    /// regrowths, each a copy of every operation so far.
    pub fn with_capacity(ops: usize) -> Self {
        Self {
            ops: Vec::with_capacity(ops),
        }
    }

    /// Adds a set.
    pub fn set(&mut self, key: impl Into<Bytes>, value: impl Into<Bytes>) -> &mut Self {
        self.ops.push(BatchOp::Set {
            key: key.into(),
            value: value.into(),
        });
        self
    }

    /// Adds a delete.
    pub fn delete(&mut self, key: impl Into<Bytes>) -> &mut Self {
        self.ops.push(BatchOp::Delete { key: key.into() });
        self
    }

    /// The operations, in order.
    pub fn ops(&self) -> &[BatchOp] {
        &self.ops
    }

    /// The operations, in order, handed over.
    pub fn into_ops(self) -> Vec<BatchOp> {
        self.ops
    }

    /// The number of operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether the batch holds no operation.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

impl FromIterator<BatchOp> for WriteBatch {
    fn from_iter<T: IntoIterator<Item = BatchOp>>(iter: T) -> Self {
        Self {
            ops: iter.into_iter().collect(),
        }
    }
}

/// Where a caller's last hinted read landed, for the next one to start
/// near it ([`StorageEngine::first_value_in_hinted`]). Empty at first;
/// an engine that does not use hints leaves it so.
#[derive(Debug, Clone, Default)]
pub struct ReadHint {
    pub(crate) leaf: pydb_index::LeafHint,
}

/// A range of keys: owned bounds, so that a scan can outlive its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRange {
    /// The lower bound.
    pub start: Bound<Bytes>,
    /// The upper bound.
    pub end: Bound<Bytes>,
}

impl KeyRange {
    /// Every key.
    pub fn all() -> Self {
        Self {
            start: Bound::Unbounded,
            end: Bound::Unbounded,
        }
    }

    /// The keys within `range`, e.g. `KeyRange::new(b"a".as_slice()..b"c".as_slice())`.
    pub fn new<T: AsRef<[u8]>>(range: impl RangeBounds<T>) -> Self {
        let own = |b: Bound<&T>| match b {
            Bound::Included(k) => Bound::Included(Bytes::copy_from_slice(k.as_ref())),
            Bound::Excluded(k) => Bound::Excluded(Bytes::copy_from_slice(k.as_ref())),
            Bound::Unbounded => Bound::Unbounded,
        };
        Self {
            start: own(range.start_bound()),
            end: own(range.end_bound()),
        }
    }

    /// The bounds as borrowed slices.
    pub fn as_slices(&self) -> (Bound<&[u8]>, Bound<&[u8]>) {
        (
            self.start.as_ref().map(|b| b.as_ref()),
            self.end.as_ref().map(|b| b.as_ref()),
        )
    }

    /// Whether `key` falls inside the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        let (start, end) = self.as_slices();
        pydb_index::in_bounds(key, start, end)
    }
}

/// The items a scan yields: key and value, in ascending key order.
pub type ScanIter<'a> = Box<dyn Iterator<Item = Result<(Bytes, Bytes)>> + Send + 'a>;

/// What [`StorageEngine::scan_with`] calls with each entry: the key and the
/// value, borrowed for the call only. It returns whether to go on
/// (`ControlFlow::Continue(())`) or stop (`ControlFlow::Break(())`).
pub type Visit<'v> = dyn FnMut(&[u8], &[u8]) -> ControlFlow<()> + 'v;

/// Named counters that describe an engine's state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// The engine's name (`log`, `memory`, `btree`, ...).
    pub engine: &'static str,
    /// Counters in a stable order, e.g. `("live_keys", 3)`.
    pub counters: Vec<(&'static str, u64)>,
}

impl Stats {
    /// The counter called `name`, if the engine reports it.
    pub fn get(&self, name: &str) -> Option<u64> {
        self.counters
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    }
}

/// A key-value storage engine: the interface of the original pydb's
/// `StorageEngine`, in Rust.
pub trait StorageEngine: Send + Sync + std::fmt::Debug {
    /// Sets `key` to `value`.
    fn set(&self, key: &[u8], value: &[u8]) -> Result<()>;

    /// The value of `key`, or `None` if it has none.
    fn get(&self, key: &[u8]) -> Result<Option<Bytes>>;

    /// Deletes `key`; returns whether it had a value.
    ///
    /// The answer costs a read: an engine must look the key up to say
    /// whether it had a value. An LSM-tree would otherwise delete
    /// *blindly*, logging a tombstone without reading anything. For that
    /// blind delete, put the key in a [`WriteBatch`] (`batch.delete(key)`):
    /// a batch returns nothing per key, so the LSM engine never reads for
    /// it. The trait keeps a single `delete` rather than growing a second,
    /// bool-less one, because the batch already is that method.
    fn delete(&self, key: &[u8]) -> Result<bool>;

    /// Applies every operation of `batch` atomically. Deletes in a batch
    /// are blind where the engine allows it (see [`Self::delete`]).
    fn write_batch(&self, batch: &WriteBatch) -> Result<()>;

    /// [`Self::write_batch`] of a batch the caller hands over, with the
    /// same promise. An engine that keeps keys as `Bytes` (the memory
    /// engine's map) takes the batch's keys as they are, where a borrowed
    /// batch's keys must be cloned: a clone of a `Bytes` made from a
    /// vector turns it into a shared buffer, an allocation per key. The
    /// default writes the borrowed batch.
    fn write_batch_owned(&self, batch: WriteBatch) -> Result<()> {
        self.write_batch(&batch)
    }

    /// The keys in `range` with their values, in ascending key order.
    fn scan(&self, range: KeyRange) -> Result<ScanIter<'_>>;

    /// Calls `visit` with each key in `range` and its value, in ascending
    /// key order, until `visit` returns `ControlFlow::Break` or the range
    /// is exhausted: the same entries, under the same concurrency promise,
    /// as [`Self::scan`], but *borrowed*.
    ///
    /// `scan` hands out owned `Bytes`, which outlive the scan; making them
    /// costs an engine that reads pages into a buffer of its own (the
    /// B+tree) a reference count taken and dropped per key and per value.
    /// A caller that only looks at each entry (a count, a sum, a copy into
    /// its own buffer) needs none of that, which is what this method is
    /// for: the slices are valid during the call only (LMDB's cursors give
    /// the same promise, until the next step). The default goes through
    /// `scan`; an engine that can hand out slices of its own buffers
    /// overrides it. `visit` may call into the engine (another read, even
    /// a write): no engine holds a latch or lock while it runs.
    fn scan_with(&self, range: (Bound<&[u8]>, Bound<&[u8]>), visit: &mut Visit<'_>) -> Result<()> {
        let own = |b: Bound<&[u8]>| b.map(Bytes::copy_from_slice);
        let range = KeyRange {
            start: own(range.0),
            end: own(range.1),
        };
        for item in self.scan(range)? {
            let (key, value) = item?;
            if visit(&key, &value).is_break() {
                break;
            }
        }
        Ok(())
    }

    /// The first key in `range` with its value: `scan(range).next()`.
    ///
    /// A point read of the newest version of a key in a multi-version
    /// store (pydb-txn) is exactly this: the first key at or after
    /// `key | snapshot`. The default builds a whole scan for one item; an
    /// engine whose scan sets up more than it needs for one key (the log
    /// engine takes a chunk of 16 keys from its index) overrides it.
    fn first(&self, range: KeyRange) -> Result<Option<(Bytes, Bytes)>> {
        self.scan(range)?.next().transpose()
    }

    /// [`Self::first`] of the range from `start` to `end`, bounds borrowed.
    ///
    /// For a caller that builds its bounds in a buffer of its own: the
    /// transaction layer's point read builds both on the stack, so a read
    /// of one key makes no `KeyRange` of owned bytes (two allocations, two
    /// frees). The default makes that range and calls `first`; an engine
    /// whose `first` only borrows the bounds anyway (memory, B+tree)
    /// answers here and has `first` call this.
    fn first_in(&self, start: Bound<&[u8]>, end: Bound<&[u8]>) -> Result<Option<(Bytes, Bytes)>> {
        self.first(KeyRange {
            start: start.map(Bytes::copy_from_slice),
            end: end.map(Bytes::copy_from_slice),
        })
    }

    /// Makes every write so far durable, whatever the sync policy.
    fn flush(&self) -> Result<()>;

    /// Reclaims space taken by overwritten and deleted data. Engines with
    /// nothing to reclaim return `Ok(())`.
    fn compact(&self) -> Result<()>;

    /// The engine's counters.
    fn stats(&self) -> Stats;

    /// Calls `visit` with the value of `key`, *borrowed*, if the key has
    /// one; returns whether it had. The point read's counterpart of
    /// [`Self::scan_with`]: [`Self::get`] hands out owned `Bytes`, which
    /// an engine that reads its values from its files (the log engine,
    /// from a segment's map) must allocate and copy into for every read.
    /// A caller that only looks at the value (its length, a copy into a
    /// reply buffer of its own) needs neither. LMDB's `get` makes the same
    /// promise: the slice is valid during the call only.
    ///
    /// `visit` runs at most once, and only on a value whose checksum has
    /// been verified. It may run while the engine holds a read latch (the
    /// log engine lends the bytes of its segment's map under the map's read
    /// lock), so unlike `scan_with`'s visitor it must not call into the
    /// engine. The default goes through `get`; an engine that can lend
    /// its bytes overrides it.
    fn get_with(&self, key: &[u8], visit: &mut dyn FnMut(&[u8])) -> Result<bool> {
        match self.get(key)? {
            Some(value) => {
                visit(&value);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The value of [`Self::first_in`]'s entry, without its key.
    ///
    /// The transaction layer's point read asks for a range that holds the
    /// versions of one key only, so it knows the key it finds and needs
    /// the value alone; handing the key out as well costs an allocation, a
    /// copy and a free on every read. The default calls `first_in` and
    /// drops the key; an engine that copies its entries out (memory,
    /// B+tree) copies only the value.
    fn first_value_in(&self, start: Bound<&[u8]>, end: Bound<&[u8]>) -> Result<Option<Bytes>> {
        Ok(self.first_in(start, end)?.map(|(_, value)| value))
    }

    /// [`Self::first_value_in`] for a caller that reads keys near each
    /// other again and again (SQL's uniqueness read, one per inserted
    /// row): `hint` remembers where the last read landed, and an engine
    /// that can start there does (the memory engine starts at the leaf
    /// of its map that the hint names while the map keeps its shape; see
    /// `BPlusTreeIndex::first_in_hinted` in pydb-index). The same value
    /// either way: a hint only saves work. The default ignores it.
    fn first_value_in_hinted(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        hint: &mut ReadHint,
    ) -> Result<Option<Bytes>> {
        let _ = hint;
        self.first_value_in(start, end)
    }

    /// [`Self::first_value_in`], the value copied into `out`: `out` is
    /// cleared, then holds the value if there is one; returns whether
    /// there is.
    ///
    /// A caller that decodes the value and drops it (a SQL point select
    /// decodes the row) and reads again and again can keep `out` between
    /// reads: then a read allocates nothing and frees nothing, where an
    /// owned `Bytes` costs an allocation and a free each time. (A value
    /// lent under the engine's latch would save the copy too, but the
    /// B+tree's optimistic read may run twice, and a decoder must not
    /// report an error from bytes a writer was changing.) The default
    /// copies what `first_value_in` returns; an engine that copies its
    /// entries out (B+tree) copies the value straight into `out`.
    fn first_value_into(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        out: &mut Vec<u8>,
    ) -> Result<bool> {
        out.clear();
        match self.first_value_in(start, end)? {
            Some(value) => {
                out.extend_from_slice(&value);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// [`Self::scan_with`] for a visitor that does not call into the
    /// engine: the same entries, in the same order, under the same
    /// concurrency promise, but `visit` may run while the engine holds a
    /// read lock or latch, as [`Self::get_with`]'s visitor does.
    ///
    /// `scan_with` must let its visitor read and write the engine, so an
    /// engine that keeps its entries behind a lock (the memory engine's
    /// map) first copies a chunk of them out and lends the copy with the
    /// lock released. A visitor that only looks at each entry and copies
    /// what it keeps into a buffer of its own (the transaction layer's
    /// scan) needs no such copy: the engine can lend its own bytes. A
    /// visitor that calls the engine here may deadlock. The default calls
    /// `scan_with`, which is correct for every visitor; an engine whose
    /// `scan_with` copies to release a lock overrides it.
    fn scan_with_locked(
        &self,
        range: (Bound<&[u8]>, Bound<&[u8]>),
        visit: &mut Visit<'_>,
    ) -> Result<()> {
        self.scan_with(range, visit)
    }
}

/// A shared engine is an engine: what the registry hands out
/// (`Arc<dyn StorageEngine>`) can go wherever an engine is expected.
impl<E: StorageEngine + ?Sized> StorageEngine for std::sync::Arc<E> {
    fn set(&self, key: &[u8], value: &[u8]) -> Result<()> {
        (**self).set(key, value)
    }
    fn get(&self, key: &[u8]) -> Result<Option<Bytes>> {
        (**self).get(key)
    }
    fn delete(&self, key: &[u8]) -> Result<bool> {
        (**self).delete(key)
    }
    fn write_batch(&self, batch: &WriteBatch) -> Result<()> {
        (**self).write_batch(batch)
    }
    fn write_batch_owned(&self, batch: WriteBatch) -> Result<()> {
        (**self).write_batch_owned(batch)
    }
    fn scan(&self, range: KeyRange) -> Result<ScanIter<'_>> {
        (**self).scan(range)
    }
    fn scan_with(&self, range: (Bound<&[u8]>, Bound<&[u8]>), visit: &mut Visit<'_>) -> Result<()> {
        (**self).scan_with(range, visit)
    }
    fn first(&self, range: KeyRange) -> Result<Option<(Bytes, Bytes)>> {
        (**self).first(range)
    }
    fn first_in(&self, start: Bound<&[u8]>, end: Bound<&[u8]>) -> Result<Option<(Bytes, Bytes)>> {
        (**self).first_in(start, end)
    }
    fn flush(&self) -> Result<()> {
        (**self).flush()
    }
    fn compact(&self) -> Result<()> {
        (**self).compact()
    }
    fn stats(&self) -> Stats {
        (**self).stats()
    }
    fn get_with(&self, key: &[u8], visit: &mut dyn FnMut(&[u8])) -> Result<bool> {
        (**self).get_with(key, visit)
    }
    fn first_value_in(&self, start: Bound<&[u8]>, end: Bound<&[u8]>) -> Result<Option<Bytes>> {
        (**self).first_value_in(start, end)
    }
    fn first_value_in_hinted(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        hint: &mut ReadHint,
    ) -> Result<Option<Bytes>> {
        (**self).first_value_in_hinted(start, end, hint)
    }
    fn first_value_into(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        out: &mut Vec<u8>,
    ) -> Result<bool> {
        (**self).first_value_into(start, end, out)
    }
    fn scan_with_locked(
        &self,
        range: (Bound<&[u8]>, Bound<&[u8]>),
        visit: &mut Visit<'_>,
    ) -> Result<()> {
        (**self).scan_with_locked(range, visit)
    }
}
