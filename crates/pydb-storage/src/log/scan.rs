//! Range scans over a live index.
//!
//! A scan must not hold the index lock while it reads values (that would
//! stall every writer for as long as the caller takes to consume it), so it
//! works in chunks:
//!
//! - with an ordered index, take up to [`SCAN_CHUNK`] keys of the range under
//!   the read lock, each with its location and an `Arc` of its segment;
//!   release the lock; read the values; continue after the last key
//!   (`Bound::Excluded`);
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

/// Keys taken from the index per acquisition of its read lock.
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
            for (key, location) in state.index.range(start, end).take(SCAN_CHUNK) {
                let segment = self.shared.segment(location)?;
                self.ready.push_back((key.clone(), *location, segment));
                taken += 1;
            }
            match self.ready.back() {
                Some((last, _, _)) if taken == SCAN_CHUNK => {
                    self.next_start = Bound::Excluded(last.clone());
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
        while taken < SCAN_CHUNK {
            let Some(key) = keys.pop_front() else { break };
            taken += 1;
            // Deleted since the keys were collected: skip it.
            if let Some(location) = state.index.get(&key) {
                let segment = self.shared.segment(location)?;
                self.ready.push_back((key, *location, segment));
            }
        }
        if keys.is_empty() {
            self.exhausted = true;
        }
        Ok(())
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
