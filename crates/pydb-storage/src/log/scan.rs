//! Range scans over a live index.
//!
//! A scan must not hold the index lock while it reads values (that would
//! stall every writer for as long as the caller takes to consume it), so it
//! works in chunks:
//!
//! - with an ordered index, take a chunk of keys of the range under the
//!   read lock, each with its location and an `Arc` of its segment; release
//!   the lock; read the values; continue after the last key
//!   (`Bound::Excluded`). The first chunk is small ([`FIRST_SCAN_CHUNK`])
//!   and each next one twice as large, up to [`SCAN_CHUNK`]: a scan that
//!   stops after a few keys (a page of results) locates a few keys, and a
//!   long scan still takes the lock rarely;
//! - with an unordered index (a hash map), collect the matching keys once,
//!   sort them, then look them up a chunk at a time the same way.
//!
//! What a concurrent scan sees: every key yielded carries a value it held
//! at some moment during the scan (the value at the time its chunk was
//! taken); a key written or deleted during the scan may or may not show up
//! in its new state; a key untouched during the scan shows up exactly once.
//! Compaction cannot break a scan: segments are held by `Arc`, so a location
//! taken before the segment was deleted still reads the same bytes.

use std::collections::VecDeque;
use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;
use pydb_file::FileOpener;
use pydb_index::Index;

use super::{Location, Shared, read_value};
use crate::Result;
use crate::engine::KeyRange;

/// Keys taken from the index by the first acquisition of its read lock...
pub const FIRST_SCAN_CHUNK: usize = 16;
/// ... and at most, per acquisition, as the chunks double.
pub const SCAN_CHUNK: usize = 256;

/// A scan over an [`super::AppendOnlyLogStorage`].
pub(crate) struct LogScan<'a, O: FileOpener + 'static, I> {
    shared: &'a Shared<O, I>,
    range: KeyRange,
    /// Where the next chunk starts (ordered indexes).
    next_start: Bound<Bytes>,
    /// The keys still to look up, sorted (unordered indexes); `None` until
    /// the first chunk is taken.
    sorted_keys: Option<VecDeque<Bytes>>,
    /// Keys located and ready to be read.
    ready: VecDeque<(Bytes, Location, Arc<O::File>)>,
    /// How many keys the next chunk takes.
    chunk: usize,
    /// The index has no more keys for this scan.
    exhausted: bool,
}

impl<'a, O, I> LogScan<'a, O, I>
where
    O: FileOpener + 'static,
    I: Index<Location> + 'static,
{
    pub(crate) fn new(shared: &'a Shared<O, I>, range: KeyRange) -> Self {
        let next_start = range.start.clone();
        Self {
            shared,
            range,
            next_start,
            sorted_keys: None,
            ready: VecDeque::new(),
            chunk: FIRST_SCAN_CHUNK,
            exhausted: false,
        }
    }

    /// Takes the next chunk of keys under the index read lock.
    fn refill(&mut self) -> Result<()> {
        let state = self.shared.index.read();
        if state.index.is_ordered() {
            let start = self.next_start.as_ref().map(|b| b.as_ref());
            let end = self.range.end.as_ref().map(|b| b.as_ref());
            let mut taken = 0;
            let mut segments = SegmentCache::default();
            for (key, location) in state.index.range(start, end).take(self.chunk) {
                let segment = segments.get(self.shared, location)?;
                self.ready.push_back((key.clone(), *location, segment));
                taken += 1;
            }
            match self.ready.back() {
                Some((last, _, _)) if taken == self.chunk => {
                    self.next_start = Bound::Excluded(last.clone());
                    self.chunk = (self.chunk * 2).min(SCAN_CHUNK);
                }
                _ => self.exhausted = true,
            }
            return Ok(());
        }
        let keys = self.sorted_keys.get_or_insert_with(|| {
            let (start, end) = self.range.as_slices();
            let mut keys: Vec<Bytes> = state
                .index
                .range(start, end)
                .map(|(k, _)| k.clone())
                .collect();
            keys.sort_unstable();
            keys.into()
        });
        let mut taken = 0;
        let mut segments = SegmentCache::default();
        while taken < SCAN_CHUNK {
            let Some(key) = keys.pop_front() else { break };
            taken += 1;
            // Deleted since the keys were collected: skip it.
            if let Some(location) = state.index.get(&key) {
                let segment = segments.get(self.shared, location)?;
                self.ready.push_back((key, *location, segment));
            }
        }
        if keys.is_empty() {
            self.exhausted = true;
        }
        Ok(())
    }
}

/// The segment of the previous key of a chunk: neighbouring keys mostly
/// live in the same segment, and reusing its `Arc` saves a lookup (and a
/// lock) per key in the segment map.
struct SegmentCache<F> {
    last: Option<(u64, Arc<F>)>,
}

impl<F> Default for SegmentCache<F> {
    fn default() -> Self {
        Self { last: None }
    }
}

impl<F> SegmentCache<F> {
    fn get<O, I>(&mut self, shared: &Shared<O, I>, location: &Location) -> Result<Arc<F>>
    where
        O: FileOpener<File = F> + 'static,
        I: Index<Location> + 'static,
    {
        if let Some((id, segment)) = &self.last
            && *id == location.segment
        {
            return Ok(Arc::clone(segment));
        }
        let segment = shared.segment(location)?;
        self.last = Some((location.segment, Arc::clone(&segment)));
        Ok(segment)
    }
}

impl<O, I> Iterator for LogScan<'_, O, I>
where
    O: FileOpener + 'static,
    I: Index<Location> + 'static,
{
    type Item = Result<(Bytes, Bytes)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some((key, location, segment)) = self.ready.pop_front() {
                return Some(read_value(&*segment, &location, &key).map(|value| (key, value)));
            }
            if self.exhausted {
                return None;
            }
            if let Err(err) = self.refill() {
                self.exhausted = true;
                return Some(Err(err));
            }
        }
    }
}
