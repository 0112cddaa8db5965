//! Compaction: merging tables to bound read cost and reclaim space.
//!
//! Every flush adds a table to level 0, and a read may have to look in
//! each of them. Compaction merges tables into fewer, larger, sorted ones
//! further down, dropping versions nobody can read any more. Two styles:
//!
//! ## Leveled (the default; LevelDB, RocksDB)
//!
//! Level 0 holds overlapping tables straight from flushes. Every level
//! below holds disjoint tables, so it is one sorted run, and may hold
//! `ratio` times more bytes than the one above (`base` for level 1).
//!
//! - When level 0 has `l0_trigger` tables, all of them and every level-1
//!   table they overlap are merged into new level-1 tables.
//! - When a level `n >= 1` is over its target size, one of its tables
//!   (taken in turn, round-robin over the key space) and the tables of
//!   level `n + 1` it overlaps are merged into level `n + 1`.
//!
//! A byte is rewritten about `ratio` times per level it descends: write
//! amplification `~ ratio · levels`; but a key lives in at most one table
//! per level, so a read touches at most `L0 + levels` tables, and old
//! versions are dropped soon, so space amplification stays near `1.1`.
//!
//! ## Tiered (Cassandra's size-tiered, RocksDB's universal)
//!
//! Every level holds overlapping runs. When a level has `tier_runs` runs,
//! all of them are merged into one run in the next level. A byte is
//! rewritten once per level: less write amplification, but more runs to
//! search per read and more stale versions kept around (more space).
//!
//! ## What a merge keeps
//!
//! Entries arrive in table order (key ascending, newest first). For each
//! key, the live snapshots cut the sequence numbers into stripes: a reader
//! at snapshot `s` sees the newest version with `seq <= s`. The merge keeps
//! the newest version of each stripe and drops the rest. A tombstone that
//! is the oldest version kept is dropped too when the output is the
//! bottom of the tree for its key range (no older table could hold a
//! version it hides).

use bytes::Bytes;

use super::memtable::Entry;
use crate::Result;

/// Merges sorted sources into one sorted stream (key ascending, newest
/// first), with every version of every key. Sources are few (memtables and
/// tables that overlap a range), so the smallest head is found by a linear
/// pass rather than a heap.
pub(crate) struct MergeIter<I> {
    sources: Vec<I>,
    /// The next item of each source, `None` once it is exhausted.
    heads: Vec<Option<Result<Entry>>>,
}

impl<I: Iterator<Item = Result<Entry>>> MergeIter<I> {
    pub(crate) fn new(mut sources: Vec<I>) -> Self {
        let heads = sources.iter_mut().map(Iterator::next).collect();
        Self { sources, heads }
    }
}

impl<I: Iterator<Item = Result<Entry>>> Iterator for MergeIter<I> {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Result<Entry>> {
        let mut best: Option<(usize, &Entry)> = None;
        let mut error_at = None;
        for (i, head) in self.heads.iter().enumerate() {
            match head {
                None => {}
                Some(Err(_)) => {
                    error_at = Some(i);
                    break;
                }
                Some(Ok(e)) if best.is_none_or(|(_, cur)| e.precedes(cur)) => {
                    best = Some((i, e));
                }
                Some(Ok(_)) => {}
            }
        }
        // An error surfaces at once.
        let i = error_at.or(best.map(|(i, _)| i))?;
        let next = self.sources[i].next();
        std::mem::replace(&mut self.heads[i], next)
    }
}

/// Decides which versions a merge keeps, given the live snapshots.
pub(crate) struct Retention {
    /// Live snapshot sequence numbers, ascending.
    snapshots: Vec<u64>,
    /// Whether tombstones with nothing below them may go.
    bottommost: bool,
}

impl Retention {
    pub(crate) fn new(mut snapshots: Vec<u64>, bottommost: bool) -> Self {
        snapshots.sort_unstable();
        snapshots.dedup();
        Self {
            snapshots,
            bottommost,
        }
    }

    /// The stripe of `seq`: the index of the oldest snapshot that sees it
    /// (`snapshots.len()` for "only the latest state").
    fn stripe(&self, seq: u64) -> usize {
        self.snapshots.partition_point(|&s| s < seq)
    }

    /// The versions of one key (newest first) that must be kept.
    pub(crate) fn keep(&self, versions: Vec<Entry>) -> Vec<Entry> {
        let mut kept: Vec<Entry> = Vec::new();
        let mut last_stripe = None;
        for e in versions {
            let stripe = self.stripe(e.seq);
            if last_stripe != Some(stripe) {
                last_stripe = Some(stripe);
                kept.push(e);
            }
        }
        if self.bottommost && kept.last().is_some_and(|e| e.value.is_none()) {
            kept.pop();
        }
        kept
    }
}

/// Groups a sorted stream into the versions of each key, applies the
/// retention rule, and yields what is kept.
pub(crate) fn retained<I: Iterator<Item = Result<Entry>>>(
    merged: I,
    retention: Retention,
) -> impl Iterator<Item = Result<Entry>> {
    let mut merged = merged.peekable();
    let mut out: std::vec::IntoIter<Entry> = Vec::new().into_iter();
    std::iter::from_fn(move || {
        loop {
            if let Some(e) = out.next() {
                return Some(Ok(e));
            }
            let first = match merged.next()? {
                Ok(e) => e,
                Err(err) => return Some(Err(err)),
            };
            let mut versions = vec![first];
            while let Some(Ok(next)) = merged.peek() {
                if next.key != versions[0].key {
                    break;
                }
                if let Some(Ok(e)) = merged.next() {
                    versions.push(e);
                }
            }
            out = retention.keep(versions).into_iter();
        }
    })
}

/// A scan's view of a merged stream: for each key, the newest version with
/// `seq <= snapshot`, tombstones hidden.
pub(crate) fn visible<I: Iterator<Item = Result<Entry>>>(
    merged: I,
    snapshot: u64,
) -> impl Iterator<Item = Result<(Bytes, Bytes)>> {
    let mut last_key: Option<Bytes> = None;
    merged.filter_map(move |item| {
        let e = match item {
            Ok(e) => e,
            Err(err) => return Some(Err(err)),
        };
        if e.seq > snapshot || last_key.as_ref() == Some(&e.key) {
            return None;
        }
        last_key = Some(e.key.clone());
        e.value.map(|v| Ok((e.key, v)))
    })
}

/// How the engine compacts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompactionStyle {
    /// Leveled: one sorted run per level below 0.
    Leveled,
    /// Tiered: overlapping runs per level, merged `tier_runs` at a time.
    Tiered,
}

/// A chosen compaction: input tables by level, and the output level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pick {
    pub(crate) inputs: Vec<(usize, u64)>,
    pub(crate) output_level: usize,
    /// Whether outputs are cut at the target file size.
    pub(crate) split: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(key: &str, seq: u64, value: Option<&str>) -> Entry {
        Entry {
            key: Bytes::copy_from_slice(key.as_bytes()),
            seq,
            value: value.map(|v| Bytes::copy_from_slice(v.as_bytes())),
        }
    }

    #[test]
    fn retention_keeps_one_version_per_snapshot_stripe() {
        let versions = vec![
            e("k", 9, Some("9")),
            e("k", 7, Some("7")),
            e("k", 4, None),
            e("k", 2, Some("2")),
        ];
        // No snapshot: only the newest.
        let kept = Retention::new(vec![], false).keep(versions.clone());
        assert_eq!(kept.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![9]);
        // A snapshot at 5 sees the tombstone at 4; one at 3 sees 2.
        let kept = Retention::new(vec![5, 3], false).keep(versions.clone());
        assert_eq!(
            kept.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![9, 4, 2]
        );
        // At the bottom, a tombstone kept last goes.
        let kept = Retention::new(vec![5], true).keep(versions);
        assert_eq!(kept.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![9]);
        let kept = Retention::new(vec![], true).keep(vec![e("k", 3, None), e("k", 1, Some("1"))]);
        assert!(kept.is_empty());
    }

    #[test]
    fn merge_orders_by_key_then_newest_first() {
        let a = vec![Ok(e("a", 5, Some("x"))), Ok(e("c", 1, Some("x")))];
        let b = vec![Ok(e("a", 7, None)), Ok(e("b", 2, Some("x")))];
        let merged: Vec<Entry> = MergeIter::new(vec![a.into_iter(), b.into_iter()])
            .map(Result::unwrap)
            .collect();
        let got: Vec<(String, u64)> = merged
            .iter()
            .map(|e| (String::from_utf8_lossy(&e.key).into_owned(), e.seq))
            .collect();
        assert_eq!(
            got,
            vec![
                ("a".into(), 7),
                ("a".into(), 5),
                ("b".into(), 2),
                ("c".into(), 1)
            ]
        );
        let vis: Vec<_> = visible(merged.into_iter().map(Ok), 6)
            .map(Result::unwrap)
            .collect();
        assert_eq!(vis.len(), 3, "a@5 visible at 6, b, c");
    }
}
