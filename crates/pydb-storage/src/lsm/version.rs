//! Versions: an immutable picture of which tables are live, per level.
//!
//! A flush or compaction never edits the table lists in place: it builds a
//! new [`Version`] and swaps it in. A reader clones an `Arc` of the version
//! current when it starts and reads from that, however long it runs, so it
//! never sees a table half added or removed.
//!
//! ## When a table file is deleted
//!
//! Each table is held by a [`TableHandle`] shared by every version that
//! lists it. A compaction marks its input tables *obsolete*; the file is
//! deleted when the last handle is dropped, which is when the last version
//! listing it is dropped, which is when the last reader (scan, get) that
//! started before the compaction is done. So a table is never deleted
//! under a reader. Snapshots do not pin tables: a compaction keeps every
//! version a live snapshot can see in its output tables (see
//! [`super::compaction`]).
//!
//! ## Search order
//!
//! Newer data always sits in earlier places: memtable, immutable memtables
//! (newest first), level 0 (newest table first), level 1, level 2, ... A
//! point read stops at the first place that has a version of the key
//! visible at its sequence number. In level 0, and in every level under
//! tiered compaction, tables overlap and are searched newest first; in
//! levels >= 1 of leveled compaction tables are disjoint and sorted, so one
//! binary search finds the only table that can hold the key.

use std::ops::Bound;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use pydb_file::FileOpener;

use super::cache::ClockCache;
use super::manifest::{MAX_LEVELS, TableMeta};
use super::memtable::Entry;
use super::table::{BlockCache, ReadCounters, Table, TableIter};
use crate::{Error, Result};

/// The file name of table `number`.
pub(crate) fn table_name(number: u64) -> String {
    format!("{number:06}.sst")
}

/// The files an engine reads: opener, directory and caches.
#[derive(Debug)]
pub(crate) struct Files<O: FileOpener> {
    pub(crate) opener: O,
    pub(crate) dir: PathBuf,
    pub(crate) tables: ClockCache<u64, Table<O::File>>,
    pub(crate) blocks: Arc<BlockCache>,
    pub(crate) counters: Arc<ReadCounters>,
}

impl<O: FileOpener> Files<O> {
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The open table for `meta`, through the open-table cache.
    pub(crate) fn table(&self, meta: &TableMeta) -> Result<Arc<Table<O::File>>> {
        if let Some(t) = self.tables.get(&meta.number) {
            return Ok(t);
        }
        let path = self.path(&table_name(meta.number));
        let file = self.opener.open(&path, false)?;
        let table = Table::open(file, meta.number)?;
        if table.size() != meta.size {
            return Err(Error::corrupted(
                &path,
                table.size(),
                format!(
                    "table is {} bytes, the manifest says {}",
                    table.size(),
                    meta.size
                ),
            ));
        }
        let table = Arc::new(table);
        self.tables.insert(meta.number, table.clone(), 1);
        Ok(table)
    }
}

/// A live table, shared by the versions that list it.
#[derive(Debug)]
pub(crate) struct TableHandle<O: FileOpener> {
    pub(crate) meta: TableMeta,
    files: Arc<Files<O>>,
    obsolete: AtomicBool,
}

impl<O: FileOpener> TableHandle<O> {
    pub(crate) fn new(meta: TableMeta, files: Arc<Files<O>>) -> Self {
        Self {
            meta,
            files,
            obsolete: AtomicBool::new(false),
        }
    }

    /// Marks the table for deletion once no version lists it.
    pub(crate) fn mark_obsolete(&self) {
        self.obsolete.store(true, Ordering::Release);
    }

    pub(crate) fn table(&self) -> Result<Arc<Table<O::File>>> {
        self.files.table(&self.meta)
    }
}

impl<O: FileOpener> Drop for TableHandle<O> {
    fn drop(&mut self) {
        if !self.obsolete.load(Ordering::Acquire) {
            return;
        }
        let number = self.meta.number;
        self.files.tables.remove_if(|n| *n == number);
        self.files.blocks.remove_if(|(n, _)| *n == number);
        // An undone removal (power cut before the directory reached disk)
        // leaves an orphan that the next open deletes: no manifest names it.
        let path = self.files.path(&table_name(number));
        if let Err(e) = self.files.opener.remove(&path) {
            tracing::warn!(file = %path.display(), error = %e, "cannot delete obsolete table");
        }
    }
}

/// The tables of every level.
#[derive(Debug)]
pub(crate) struct Version<O: FileOpener> {
    pub(crate) levels: Vec<Vec<Arc<TableHandle<O>>>>,
    /// Whether levels >= 1 hold overlapping runs (tiered compaction).
    pub(crate) tiered: bool,
}

impl<O: FileOpener> Clone for Version<O> {
    fn clone(&self) -> Self {
        Self {
            levels: self.levels.clone(),
            tiered: self.tiered,
        }
    }
}

impl<O: FileOpener> Version<O> {
    pub(crate) fn empty(tiered: bool) -> Self {
        Self {
            levels: vec![Vec::new(); MAX_LEVELS],
            tiered,
        }
    }

    /// Whether the tables of `level` may overlap.
    pub(crate) fn overlapping(&self, level: usize) -> bool {
        level == 0 || self.tiered
    }

    /// Puts each level in search order (see the module docs).
    pub(crate) fn sort(&mut self) {
        for level in 0..self.levels.len() {
            if self.overlapping(level) {
                self.levels[level].sort_by_key(|t| std::cmp::Reverse(t.meta.number));
            } else {
                self.levels[level].sort_by(|a, b| a.meta.smallest.cmp(&b.meta.smallest));
            }
        }
    }

    /// Whether two tables of a level >= 1 overlap: a directory last written
    /// with tiered compaction, opened with leveled.
    pub(crate) fn has_overlapping_runs(&self) -> bool {
        self.levels.iter().skip(1).any(|tables| {
            let mut ranges: Vec<(&Bytes, &Bytes)> = tables
                .iter()
                .map(|t| (&t.meta.smallest, &t.meta.largest))
                .collect();
            ranges.sort();
            ranges.windows(2).any(|w| w[1].0 <= w[0].1)
        })
    }

    /// Applies removals and additions and sorts.
    pub(crate) fn apply(
        &self,
        deleted: &[(usize, u64)],
        added: Vec<(usize, Arc<TableHandle<O>>)>,
    ) -> Self {
        let mut next = self.clone();
        for (level, number) in deleted {
            next.levels[*level].retain(|t| t.meta.number != *number);
        }
        for (level, t) in added {
            next.levels[level].push(t);
        }
        next.sort();
        next
    }

    /// The newest version of `key` visible at `snapshot` in the tables.
    /// `key_hash` is [`super::bloom::hash`] of the key.
    pub(crate) fn get(
        &self,
        key: &[u8],
        key_hash: u64,
        snapshot: u64,
        files: &Files<O>,
    ) -> Result<Option<Option<Bytes>>> {
        for (level, tables) in self.levels.iter().enumerate() {
            if self.overlapping(level) {
                for t in tables {
                    if t.meta.smallest.as_ref() <= key
                        && key <= t.meta.largest.as_ref()
                        && let Some(v) = Self::lookup(t, key, key_hash, snapshot, files)?
                    {
                        return Ok(Some(v));
                    }
                }
            } else {
                let i = tables.partition_point(|t| t.meta.largest.as_ref() < key);
                if let Some(t) = tables.get(i)
                    && t.meta.smallest.as_ref() <= key
                    && let Some(v) = Self::lookup(t, key, key_hash, snapshot, files)?
                {
                    return Ok(Some(v));
                }
            }
        }
        Ok(None)
    }

    fn lookup(
        t: &TableHandle<O>,
        key: &[u8],
        key_hash: u64,
        snapshot: u64,
        files: &Files<O>,
    ) -> Result<Option<Option<Bytes>>> {
        let table = t.table()?;
        let versions = table.versions_of(key, key_hash, &files.blocks, &files.counters)?;
        Ok(versions
            .into_iter()
            .find(|e| e.seq <= snapshot)
            .map(|e| e.value))
    }

    /// Iterators over every table that may hold keys in the range.
    pub(crate) fn iters(
        &self,
        start: &Bound<Bytes>,
        end: &Bound<Bytes>,
        files: &Arc<Files<O>>,
    ) -> Result<Vec<Box<dyn Iterator<Item = Result<Entry>> + Send>>>
    where
        O: 'static,
    {
        let mut out: Vec<Box<dyn Iterator<Item = Result<Entry>> + Send>> = Vec::new();
        for t in self.levels.iter().flatten() {
            let below = match start {
                Bound::Included(s) => t.meta.largest < *s,
                Bound::Excluded(s) => t.meta.largest <= *s,
                Bound::Unbounded => false,
            };
            let above = match end {
                Bound::Included(e) => t.meta.smallest > *e,
                Bound::Excluded(e) => t.meta.smallest >= *e,
                Bound::Unbounded => false,
            };
            if below || above {
                continue;
            }
            let table = t.table()?;
            out.push(Box::new(TableIter::new(
                table,
                Some(files.blocks.clone()),
                files.counters.clone(),
                start.clone(),
                end.clone(),
            )));
        }
        Ok(out)
    }

    /// File count and bytes of each level.
    pub(crate) fn level_sizes(&self) -> Vec<(usize, u64)> {
        self.levels
            .iter()
            .map(|ts| (ts.len(), ts.iter().map(|t| t.meta.size).sum()))
            .collect()
    }

    /// Every table number in the version.
    pub(crate) fn numbers(&self) -> Vec<u64> {
        self.levels
            .iter()
            .flatten()
            .map(|t| t.meta.number)
            .collect()
    }
}
