//! The B+tree algorithms: lookups, inserts with splits, deletes with
//! merges, and cursors in both directions.
//!
//! ## Writes go through a shadow copy
//!
//! A write (one `set`, `delete` or a whole batch) runs as a [`Txn`]: it reads
//! committed pages from the buffer pool but never changes them. Every page it
//! changes is decoded into a private [`Shadow`] copy and edited there, along
//! with a private copy of the tree's meta fields. Only when the batch is
//! complete does the engine log it and *install* the shadow pages into the
//! pool (see `mod.rs`). So:
//!
//! - a failed write (a key too long, a damaged page met on the way) leaves
//!   nothing behind: the shadow is dropped;
//! - no page can reach the disk before its WAL record exists, since
//!   uncommitted changes are not in the pool at all;
//! - readers see a batch all at once, when it is installed.
//!
//! Each shadow page also remembers how to log it: the list of leaf ops done
//! to it, or "log a full image" when it was created, split, merged, freed, or
//! had not changed since the last checkpoint (see `wal.rs`).
//!
//! ## Splits
//!
//! A leaf that no longer fits after an insert is split in two by bytes, and
//! the parent gets a separator: the first key of the right half, cut just
//! past the byte where it differs from the left half's last key (the
//! shortest key between the halves: `shortest_separator`). A separator
//! need not be a key of the tree; a descent only compares with it, and
//! everything below it is left of it. Short separators make fuller
//! internal pages and a lower tree: keys that share a long prefix (SQL
//! version keys) get separators of about half their length. The parent
//! may split in turn. An internal split moves its middle separator *up*
//! (it is not kept in either half). A root split makes a new root, which
//! is the only way the tree grows taller.
//!
//! ## Merges (and the bound on waste)
//!
//! A page whose cells fill less than a quarter of its space after a delete is
//! merged with a sibling under the same parent when both fit in one page; the
//! right page goes to the free list and its separator leaves the parent,
//! which may underflow in turn. When they do not fit, the sibling is more
//! than three quarters full, so the pair is still more than half full on
//! average and pydb leaves them alone (no redistribution: moving a separator
//! can make the parent overflow, which would make a delete split pages). An
//! internal root left with a single child is removed, the only way the tree
//! shrinks. A non-root leaf is never empty: an empty leaf always fits into
//! its sibling.
//!
//! ## Readers
//!
//! Lookups and cursors hold at most one latched page at a time, and take
//! no tree lock at first: they read the tree optimistically and check a
//! sequence number that every install changes, running again if one
//! overlapped them and taking the tree lock after a few failed tries
//! ([`Published::read`], see [`optimistic`](super::optimistic)). So
//! [`get`], [`first`] and a cursor's refill must stay pure functions of the
//! pages they read. A lookup searches the latched page in place, through
//! the frame's key heads (a binary search over `u32` prefixes, see
//! [`heads`](super::heads), whole keys compared where they lie only among
//! equal heads) and copies only the value out: one allocation per `get`.
//! [`first`] (the first key at or after a bound, which is how the
//! transaction layer reads the newest version of a key) is the same seek,
//! and copies out the key too.
//!
//! A cursor does not keep pages latched between calls, so writers are never
//! blocked by a slow consumer. Its protocol, one refill at a time:
//!
//! 1. Take the tree's sequence number `s` (optimistically, or under the tree
//!    lock after failed tries).
//! 2. Find the leaf: if the last refill ran on the same tree (its number was
//!    `s` too), follow that leaf's sibling link, which it noted; otherwise
//!    descend from the root with the last key handed out, since a link read
//!    before a split or merge may point at a page that changed meaning.
//! 3. Under the leaf's latch, find the slots in range (the first and last
//!    key are tried before any binary search: after a hop the whole leaf is
//!    usually in range), and copy the page's used bytes (header and slots,
//!    then the cells, without the free gap) into the cursor's buffer in two
//!    `memcpy`s. Note the sibling link. Let the latch go.
//! 4. Check that the number is still `s`. If not, throw the copy away (it
//!    may be of a leaf that no longer belongs where the descent found it,
//!    and any error met is not trusted either) and go back to 1.
//!
//! Each `next` then decodes one cell of the copy, checking every length as
//! if the bytes were untrusted, and hands out the key and value as `Bytes`
//! slices of the copy: no decoding of cells nobody asks for (a scan with a
//! limit, seek then next 100, pays nothing for the rest of its last leaf),
//! no per-entry bookkeeping at refill. A value in an overflow chain is read
//! when its entry is handed out, and only if the tree's number is still
//! the copy's: once a batch is installed the chain may have been freed and
//! its pages reused. Otherwise the key is looked up again and its current
//! value returned (or the entry skipped, if it is gone): the key was
//! written during the scan, so either answer is allowed.
//!
//! The buffer is reused by the next refill when no entry handed out still
//! points into it (`BytesMut::reserve` reclaims a buffer it is the only
//! holder of), so a consumer that drops entries as it goes makes a scan
//! allocate one buffer in all; one that keeps entries gets a fresh buffer
//! per leaf and its entries stay valid. The cursor remembers the last key
//! of each leaf it copied (in a small buffer of its own, so as not to pin
//! the copy), so a scan sees every key that is not written during the scan
//! exactly once. (LMDB's cursors go further and hand out pointers into the
//! mapped file, valid until the read transaction ends; pydb's `Bytes` must
//! outlive the cursor, so it copies.)
//!
//! The borrowing scan, `scan_with` ([`Cursor::visit`]), runs the same
//! refills but hands each entry to the caller's closure as two slices of
//! the copy, valid for the call only: no `Bytes` per key and value (each
//! an atomic increment when made and a decrement when dropped), no boxed
//! iterator, and its bounds are borrowed rather than copied. The closure
//! runs with no page latched, as a consumer of the iterator does, so it
//! may call into the engine, writes included; a write only makes the next
//! refill descend from the root again.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;

use bytes::{Bytes, BytesMut};
use pydb_file::File;

use std::sync::atomic::{AtomicBool, Ordering};

use super::meta::{MAX_BTREE_DEPTH, TreeMeta};
use super::optimistic::Published;
use super::page::{
    self, Content, FIRST_DATA_PAGE, HEADER_LEN, Internal, LEAF_CELL_HEADER, Leaf, NO_PAGE, Node,
    OldValue, PageError, PageId, PageType, PageView, SLOT_LEN, Value, ValueRef,
};
use super::pool::{BufferPool, PageRef};
use super::wal::PageOp;
use crate::{Error, Result, Visit};

/// The private copy of a page in a write transaction.
#[derive(Debug, Clone)]
pub enum Body {
    /// The page's bytes, copied from the pool: leaf puts and deletes that
    /// fit edit these in place (no decoding, no allocation per entry).
    Raw(Vec<u8>),
    /// The page decoded: splits, merges, overflow and free-list changes
    /// rebuild whole pages, and are easier to get right on vectors. A
    /// rebuilt leaf is encoded back to bytes when it is written (see
    /// `Txn::write`), so only the other kinds stay decoded.
    Decoded(Content),
}

/// A page read or changed by a write transaction.
#[derive(Debug, Clone)]
pub struct Shadow {
    /// The page's new content.
    pub body: Body,
    /// Page ops to log, or `None` to log a full page image.
    pub ops: Option<Vec<PageOp>>,
    /// Whether the transaction changed it (it may only have read it).
    pub modified: bool,
}

/// A write in progress: private copies of the pages and meta it changes.
#[derive(Debug)]
pub struct Txn<'a, F: File> {
    pub(super) pool: &'a BufferPool<F>,
    /// The tree meta as this transaction will leave it.
    pub meta: TreeMeta,
    /// Whether `meta` changed.
    pub meta_changed: bool,
    /// Pages read or changed, by number.
    pub pages: BTreeMap<PageId, Shadow>,
    /// Pages last changed before this LSN are logged as full images.
    redo_start: u64,
    /// The key of this transaction's last put: a put right after it in
    /// the same leaf is an ascending run (see `put`'s append split).
    last_put: Option<Bytes>,
}

/// A page-level error as `Corrupted` at the page's file offset.
pub fn corrupt_at(path: &Path, page_size: usize, id: PageId, e: PageError) -> Error {
    Error::corrupted(
        path,
        u64::from(id) * page_size as u64 + e.offset as u64,
        format!("page {id}: {}", e.reason),
    )
}

/// Where to descend to.
#[derive(Debug, Clone, Copy)]
pub enum Seek<'k> {
    /// The leaf that holds (or would hold) this key.
    Key(&'k [u8]),
    /// The leftmost leaf.
    First,
    /// The rightmost leaf.
    Last,
}

/// Checks that `id` can be a data page of a tree with this meta.
///
/// Inline, with the error built out of line: a lookup checks every page
/// number it follows, and a call per check cost a random `get` about 60
/// instructions when the compiler stopped inlining it.
#[inline]
pub fn check_page_id(path: &Path, meta: &TreeMeta, id: PageId) -> Result<()> {
    if id < FIRST_DATA_PAGE || id >= meta.page_count {
        return Err(page_id_out_of_range(path, meta, id));
    }
    Ok(())
}

/// The error of [`check_page_id`].
#[cold]
fn page_id_out_of_range(path: &Path, meta: &TreeMeta, id: PageId) -> Error {
    Error::corrupted(
        path,
        0,
        format!(
            "page number {id} out of range (page count {})",
            meta.page_count
        ),
    )
}

/// Descends from the root to the leaf for `seek`, one latched page at a time.
pub fn find_leaf<F: File>(pool: &BufferPool<F>, meta: &TreeMeta, seek: Seek<'_>) -> Result<PageId> {
    let path = pool.file().path();
    let ps = pool.page_size();
    let mut id = meta.root;
    // `meta.height` was checked against MAX_BTREE_DEPTH, so a cycle of
    // internal pages cannot keep us here: the level count runs out first.
    for level in 1..meta.height {
        check_page_id(path, meta, id)?;
        let page = pool.fetch(id)?;
        let view =
            PageView::new(&page, PageType::Internal).map_err(|e| corrupt_at(path, ps, id, e))?;
        id = match seek {
            Seek::Key(k) => page
                .heads()
                .child_pos_for(&view, k)
                .and_then(|pos| view.child_at(pos)),
            Seek::First => view.left(),
            Seek::Last => view.child_at(view.count()),
        }
        .map_err(|e| corrupt_at(path, ps, id, e))?;
        // From the last internal level, start the leaf's lines loading
        // while the parent is released (the internal levels are few and
        // stay cached; the leaves are where a lookup waits for memory).
        if level + 1 == meta.height {
            pool.prefetch(id);
        }
    }
    check_page_id(path, meta, id)?;
    Ok(id)
}

/// Reads the value of `len` bytes stored in the chain starting at `first`.
/// The walk is bounded by the page count, so a cycle is an error.
pub fn read_overflow<F: File>(
    pool: &BufferPool<F>,
    meta: &TreeMeta,
    first: PageId,
    len: u32,
) -> Result<Bytes> {
    let mut out = Vec::new();
    read_overflow_into(pool, meta, first, len, &mut out)?;
    Ok(Bytes::from(out))
}

/// [`read_overflow`], the value appended to `out` (a buffer the caller
/// keeps between reads, so that reading a value allocates nothing).
pub fn read_overflow_into<F: File>(
    pool: &BufferPool<F>,
    meta: &TreeMeta,
    first: PageId,
    len: u32,
    out: &mut Vec<u8>,
) -> Result<()> {
    let path = pool.file().path();
    let ps = pool.page_size();
    let base = out.len();
    let mut id = first;
    let mut steps = 0u32;
    while id != NO_PAGE {
        steps += 1;
        if steps > meta.page_count {
            return Err(Error::corrupted(path, 0, "overflow chain has a cycle"));
        }
        check_page_id(path, meta, id)?;
        let page = pool.fetch(id)?;
        match page::decode(&page).map_err(|e| corrupt_at(path, ps, id, e))? {
            Content::Overflow { next, data } => {
                if out.len() - base + data.len() > len as usize {
                    return Err(Error::corrupted(
                        path,
                        pool.offset_of(id),
                        "overflow chain longer than its value",
                    ));
                }
                out.extend_from_slice(&data);
                id = next;
            }
            _ => {
                return Err(Error::corrupted(
                    path,
                    pool.offset_of(id),
                    "overflow chain reaches a page that is not an overflow page",
                ));
            }
        }
    }
    if out.len() - base != len as usize {
        return Err(Error::corrupted(
            path,
            pool.offset_of(first),
            "overflow chain shorter than its value",
        ));
    }
    Ok(())
}

/// A value as a seek found it in its leaf cell: what the caller's closure
/// made of it while the leaf was latched, or the overflow chain that holds
/// it, to be read once the leaf is released (the chain's pages are
/// latched one at a time).
enum CellValue<T> {
    /// The value is in its leaf cell, and this is what the caller's
    /// closure made of it.
    Inline(T),
    /// The value is in an overflow chain of `len` bytes from `first`.
    Overflow { len: u32, first: PageId },
}

/// Descends to `key`'s leaf and finds it there: the one search [`get`] and
/// [`get_into`] share. An inline value is handed to `inline` while its leaf
/// is still latched; an overflow value is left for the caller to read
/// (with the leaf released: the chain's pages are latched one at a time).
fn lookup<F: File, T>(
    pool: &BufferPool<F>,
    meta: &TreeMeta,
    key: &[u8],
    inline: impl FnOnce(&[u8]) -> T,
) -> Result<Option<CellValue<T>>> {
    let path = pool.file().path();
    let ps = pool.page_size();
    let leaf = find_leaf(pool, meta, Seek::Key(key))?;
    let page = pool.fetch(leaf)?;
    let view = PageView::new(&page, PageType::Leaf).map_err(|e| corrupt_at(path, ps, leaf, e))?;
    match page
        .heads()
        .search_leaf(&view, key)
        .map_err(|e| corrupt_at(path, ps, leaf, e))?
    {
        Ok(i) => match view
            .leaf_entry(i)
            .map_err(|e| corrupt_at(path, ps, leaf, e))?
            .1
        {
            ValueRef::Inline(v) => Ok(Some(CellValue::Inline(inline(v)))),
            ValueRef::Overflow { len, first } => Ok(Some(CellValue::Overflow { len, first })),
        },
        Err(_) => Ok(None),
    }
}

/// Looks `key` up.
pub fn get<F: File>(pool: &BufferPool<F>, meta: &TreeMeta, key: &[u8]) -> Result<Option<Bytes>> {
    lookup(pool, meta, key, Bytes::copy_from_slice)?
        .map(|found| owned_value(pool, meta, found))
        .transpose()
}

/// What [`get_into`] did with the value of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Copied {
    /// The key is not in the tree.
    Missing,
    /// The value, this many bytes, is at the start of the buffer.
    Into(usize),
    /// The value does not fit the buffer (or lives in an overflow chain):
    /// read it with [`get`].
    Larger,
}

/// Looks `key` up and copies its value into `buf` if it fits there: a
/// point read that allocates nothing (the engine's `get_with` lends the
/// copy from a buffer on its stack). Like [`get`], it reads only the pages
/// of `meta`'s tree, so the caller may run it again when an install
/// overlaps it; `buf` then holds the last run's copy.
pub fn get_into<F: File>(
    pool: &BufferPool<F>,
    meta: &TreeMeta,
    key: &[u8],
    buf: &mut [u8],
) -> Result<Copied> {
    let copied = lookup(pool, meta, key, |value| {
        let into = buf.get_mut(..value.len())?;
        into.copy_from_slice(value);
        Some(value.len())
    })?;
    Ok(match copied {
        None => Copied::Missing,
        Some(CellValue::Inline(Some(len))) => Copied::Into(len),
        Some(CellValue::Inline(None) | CellValue::Overflow { .. }) => Copied::Larger,
    })
}

/// The first entry whose key is in `start..end` (the engine's `first`): a
/// seek as [`get`] does, through the leaf's key heads, and the entry it
/// lands on. Only the entry is copied out, where a [`Cursor`] would copy
/// the whole leaf for one key. When every key of the leaf is below
/// `start`, the first one in range (if any) begins a later leaf: the walk
/// follows the sibling links, at most page-count times (a cycle errors).
/// Like [`get`], it reads only the pages of `meta`'s tree, so the caller
/// may run it again when an install overlaps it.
pub fn first<F: File>(
    pool: &BufferPool<F>,
    meta: &TreeMeta,
    start: Bound<&[u8]>,
    end: Bound<&[u8]>,
) -> Result<Option<(Bytes, Bytes)>> {
    match first_with(
        pool,
        meta,
        start,
        end,
        Bytes::copy_from_slice,
        Bytes::copy_from_slice,
    )? {
        Some((key, found)) => Ok(Some((key, owned_value(pool, meta, found)?))),
        None => Ok(None),
    }
}

/// The value of [`first`]'s entry, its key not copied out (the engine's
/// `first_value_in`).
pub fn first_value<F: File>(
    pool: &BufferPool<F>,
    meta: &TreeMeta,
    start: Bound<&[u8]>,
    end: Bound<&[u8]>,
) -> Result<Option<Bytes>> {
    match first_with(pool, meta, start, end, |_| (), Bytes::copy_from_slice)? {
        Some(((), found)) => owned_value(pool, meta, found).map(Some),
        None => Ok(None),
    }
}

/// [`first_value`] copied into `out` (cleared first), a buffer the caller
/// keeps (the engine's `first_value_into`): whether there was an entry.
/// A point read that reuses its buffer allocates nothing for the value.
pub fn first_value_into<F: File>(
    pool: &BufferPool<F>,
    meta: &TreeMeta,
    start: Bound<&[u8]>,
    end: Bound<&[u8]>,
    out: &mut Vec<u8>,
) -> Result<bool> {
    out.clear();
    let found = first_with(
        pool,
        meta,
        start,
        end,
        |_| (),
        |value| out.extend_from_slice(value),
    )?;
    match found {
        Some(((), CellValue::Inline(()))) => Ok(true),
        Some(((), CellValue::Overflow { len, first })) => {
            read_overflow_into(pool, meta, first, len, out)?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// A value as [`lookup`] or [`first_with`] found it, owned: an inline
/// value already copied out, or its overflow chain read now.
fn owned_value<F: File>(
    pool: &BufferPool<F>,
    meta: &TreeMeta,
    found: CellValue<Bytes>,
) -> Result<Bytes> {
    match found {
        CellValue::Inline(value) => Ok(value),
        CellValue::Overflow { len, first } => read_overflow(pool, meta, first, len),
    }
}

/// The seek [`first`], [`first_value`] and [`first_value_into`] share:
/// the entry's key as `key_of` makes it, and its value as `value_of` makes
/// it from the leaf cell (both run while the leaf is latched), or the
/// overflow chain to read once the leaf is released.
fn first_with<F: File, K, V>(
    pool: &BufferPool<F>,
    meta: &TreeMeta,
    start: Bound<&[u8]>,
    end: Bound<&[u8]>,
    key_of: impl FnOnce(&[u8]) -> K,
    value_of: impl FnOnce(&[u8]) -> V,
) -> Result<Option<(K, CellValue<V>)>> {
    let path = pool.file().path();
    let ps = pool.page_size();
    let seek = match start {
        Bound::Included(k) | Bound::Excluded(k) => Seek::Key(k),
        Bound::Unbounded => Seek::First,
    };
    let mut id = find_leaf(pool, meta, seek)?;
    for _ in 0..meta.page_count {
        check_page_id(path, meta, id)?;
        let page = pool.fetch(id)?;
        let err = |e| corrupt_at(path, ps, id, e);
        let view = PageView::new(&page, PageType::Leaf).map_err(err)?;
        let slot = match start {
            Bound::Unbounded => 0,
            Bound::Included(k) => match page.heads().search_leaf(&view, k).map_err(err)? {
                Ok(i) | Err(i) => i,
            },
            Bound::Excluded(k) => match page.heads().search_leaf(&view, k).map_err(err)? {
                Ok(i) => i + 1,
                Err(i) => i,
            },
        };
        if slot >= view.count() {
            let next = view.right().map_err(err)?;
            if next == NO_PAGE {
                return Ok(None);
            }
            id = next;
            continue;
        }
        let (key, value) = view.leaf_entry(slot).map_err(err)?;
        if !below(key, end) {
            return Ok(None);
        }
        let value = match value {
            ValueRef::Inline(v) => CellValue::Inline(value_of(v)),
            ValueRef::Overflow { len, first } => CellValue::Overflow { len, first },
        };
        return Ok(Some((key_of(key), value)));
    }
    Err(Error::corrupted(path, 0, "leaf sibling links form a cycle"))
}

/// The length of a value, wherever it lives.
fn value_len(value: &Value) -> usize {
    match value {
        Value::Inline(v) => v.len(),
        Value::Overflow { len, .. } => *len as usize,
    }
}

/// The shortest key `s` with `left < s <= right`: the separator a leaf
/// split puts into the parent, `right` cut just past the first byte where
/// it differs from `left` (suffix truncation, as in Bayer and Unterauer's
/// prefix B-trees and PostgreSQL's nbtree). Any such key separates the two
/// leaves (a descent sends keys `>= s` right, and every key of the left
/// leaf is below `s`); the shortest one leaves the most room in the
/// internal pages. SQL version keys share a long prefix and then differ
/// in one or two bytes before a tail of escapes and a timestamp, so a
/// separator is about half a key, an internal page holds about twice as
/// many, and a tree of a few hundred thousand SQL rows is a level lower.
///
/// `left < right` is the caller's promise (the last key of a leaf's left
/// half and the first of its right half); if it does not hold, `right`
/// itself is returned.
fn shortest_separator(left: &Bytes, right: &Bytes) -> Bytes {
    let shared = left
        .iter()
        .zip(right.iter())
        .take_while(|(a, b)| a == b)
        .count();
    match right.get(..=shared) {
        Some(_) if left.as_ref() < right.as_ref() => right.slice(..=shared),
        _ => right.clone(),
    }
}

/// Picks where to cut a run of cells of these sizes so that both halves fit
/// in `cap` bytes and are as even as possible. With `promote`, the cell at
/// the cut moves up to the parent and belongs to neither half (an internal
/// split). Both halves are non-empty.
fn split_at(sizes: &[usize], cap: usize, promote: bool) -> Option<usize> {
    let total: usize = sizes.iter().sum();
    let mut best: Option<(usize, usize)> = None;
    let mut left = 0;
    for (i, size) in sizes.iter().enumerate() {
        if i >= 1 {
            let right = if promote {
                total - left - size
            } else {
                total - left
            };
            let right_nonempty = if promote { i + 1 < sizes.len() } else { true };
            if left <= cap && right <= cap && right_nonempty {
                let worst = left.max(right);
                if best.is_none_or(|(_, w)| worst < w) {
                    best = Some((i, worst));
                }
            }
        }
        left += size;
    }
    best.map(|(i, _)| i)
}

/// The cut of a *run split*: when a new key lands in a full leaf right
/// after the key this transaction put before it (an ascending run, such as
/// a SQL table's new rows, which go in the middle of the one tree that
/// holds every table and index), the leaf is cut right after the new key,
/// so that the left part keeps everything up to it and the keys that
/// follow it in the leaf (another table's, an index's) move right. The
/// run then goes on in the left leaf, which is full: at its next key the
/// new key is last, and the cut falls just before it, the full leaf
/// keeping all it had and the new key starting its right sibling alone.
/// Halving would leave every leaf of the run half full, as the run never
/// comes back to them; this packs them, as SQLite's "quick balance" and
/// PostgreSQL's rightmost split do for a table's last page. The cut is
/// taken only when its left part holds at least half of the bytes; any
/// other put (random keys, a replaced value, a first put) halves as
/// before, so a random fill keeps its shape.
fn run_cut(
    entries: &[page::LeafEntry],
    key: &Bytes,
    last_put: Option<&Bytes>,
    inserted: bool,
    sizes: &[usize],
    cap: usize,
) -> Option<usize> {
    let last_put = last_put.filter(|_| inserted)?;
    let pos = entries
        .binary_search_by(|e| e.key.as_ref().cmp(key.as_ref()))
        .ok()?;
    let before = entries.get(pos.checked_sub(1)?)?;
    if before.key != *last_put {
        return None;
    }
    let total: usize = sizes.iter().sum();
    if pos + 1 == entries.len() {
        // The new key is last: it starts the right sibling alone.
        let left = total - sizes.get(pos)?;
        return (left <= cap && total - left <= cap).then_some(pos);
    }
    let left: usize = sizes.get(..=pos)?.iter().sum();
    (left <= cap && total - left <= cap && 2 * left >= total).then_some(pos + 1)
}

impl<'a, F: File> Txn<'a, F> {
    /// A transaction on top of the committed tree `meta`.
    pub fn new(pool: &'a BufferPool<F>, meta: TreeMeta, redo_start: u64) -> Self {
        Self {
            pool,
            meta,
            meta_changed: false,
            pages: BTreeMap::new(),
            redo_start,
            last_put: None,
        }
    }

    fn path(&self) -> &Path {
        self.pool.file().path()
    }

    fn corrupt(&self, id: PageId, e: PageError) -> Error {
        corrupt_at(self.path(), self.pool.page_size(), id, e)
    }

    fn corrupt_msg(&self, id: PageId, reason: &str) -> Error {
        Error::corrupted(
            self.path(),
            self.pool.offset_of(id),
            format!("page {id}: {reason}"),
        )
    }

    fn page_size(&self) -> usize {
        self.pool.page_size()
    }

    /// The shadow of page `id`, copied from the pool on first use.
    pub(super) fn load(&mut self, id: PageId) -> Result<&mut Shadow> {
        if !self.pages.contains_key(&id) {
            check_page_id(self.path(), &self.meta, id)?;
            let page = self.pool.fetch(id)?;
            let bytes = page.to_vec();
            drop(page);
            // First change since the checkpoint: log the whole page.
            let ops = (page::page_lsn(&bytes) >= self.redo_start).then(Vec::new);
            self.pages.insert(
                id,
                Shadow {
                    body: Body::Raw(bytes),
                    ops,
                    modified: false,
                },
            );
        }
        self.pages
            .get_mut(&id)
            .ok_or_else(|| Error::corrupted("", 0, "shadow page vanished"))
    }

    /// The content of page `id` as this transaction sees it, decoded (and
    /// checked: every slot, every cell, the key order).
    pub(super) fn content(&mut self, id: PageId) -> Result<Content> {
        let decoded = match &self.load(id)?.body {
            Body::Decoded(content) => Ok(content.clone()),
            // One copy of the page that the entries share, rather than a
            // copy of every key and value.
            Body::Raw(bytes) => page::decode_shared(&Bytes::copy_from_slice(bytes)),
        };
        decoded.map_err(|e| self.corrupt(id, e))
    }

    fn leaf(&mut self, id: PageId) -> Result<Leaf> {
        match self.content(id)? {
            Content::Node(Node::Leaf(l)) => Ok(l),
            _ => Err(self.corrupt_msg(id, "expected a leaf")),
        }
    }

    fn internal(&mut self, id: PageId) -> Result<Internal> {
        match self.content(id)? {
            Content::Node(Node::Internal(n)) => Ok(n),
            _ => Err(self.corrupt_msg(id, "expected an internal page")),
        }
    }

    /// Records that leaf `id` was edited in place by `op`.
    fn note_leaf_op(&mut self, id: PageId, op: PageOp) {
        if let Some(shadow) = self.pages.get_mut(&id) {
            shadow.modified = true;
            if let Some(ops) = &mut shadow.ops {
                ops.push(op);
            }
        }
    }

    /// Records new content for page `id`: logged as `ops` (which redo the
    /// change on the page as it was) if the page is logged op by op, as a
    /// full image otherwise (`ops` = `None` forces one).
    pub(super) fn write(&mut self, id: PageId, content: Content, ops: Option<Vec<PageOp>>) {
        let body = match content {
            // A leaf goes back to bytes at once, so that the next puts into
            // it take the in-place path (a bulk insert by ascending key
            // fills the right half of the leaf it just split) instead of
            // copying every decoded entry for each put. A node that does
            // not encode stays decoded: the commit's encode reports it.
            content @ Content::Node(Node::Leaf(_)) => {
                match page::encode(&content, id, self.page_size()) {
                    Ok(bytes) => Body::Raw(bytes),
                    Err(_) => Body::Decoded(content),
                }
            }
            content => Body::Decoded(content),
        };
        let shadow = self.pages.entry(id).or_insert(Shadow {
            body: Body::Decoded(Content::Free { next: NO_PAGE }),
            ops: None,
            modified: true,
        });
        shadow.body = body;
        shadow.modified = true;
        match (ops, &mut shadow.ops) {
            (Some(new), Some(ops)) => ops.extend(new),
            _ => shadow.ops = None,
        }
    }

    fn write_node(&mut self, id: PageId, node: Node) {
        self.write(id, Content::Node(node), None);
    }

    /// Descends to the leaf for `key`, returning the internal pages passed
    /// (with the child position taken in each) and the leaf.
    fn descend(&mut self, key: &[u8]) -> Result<(Vec<(PageId, usize)>, PageId)> {
        let mut path = Vec::with_capacity(self.meta.height as usize);
        let mut id = self.meta.root;
        for _ in 1..self.meta.height {
            let (pos, child) = match self.pages.get(&id) {
                Some(shadow) => match &shadow.body {
                    Body::Decoded(Content::Node(Node::Internal(n))) => {
                        let pos = n.child_pos(key);
                        (pos, n.child_at(pos).unwrap_or(NO_PAGE))
                    }
                    Body::Raw(bytes) => {
                        let found = PageView::new(bytes, PageType::Internal).and_then(|view| {
                            let pos = view.child_pos_for(key)?;
                            Ok((pos, view.child_at(pos)?))
                        });
                        found.map_err(|e| self.corrupt(id, e))?
                    }
                    Body::Decoded(_) => {
                        return Err(self.corrupt_msg(id, "expected an internal page"));
                    }
                },
                None => {
                    // Not changed by this transaction: search it in place.
                    check_page_id(self.path(), &self.meta, id)?;
                    let page = self.pool.fetch(id)?;
                    let view = PageView::new(&page, PageType::Internal)
                        .map_err(|e| self.corrupt(id, e))?;
                    let pos = page
                        .heads()
                        .child_pos_for(&view, key)
                        .map_err(|e| self.corrupt(id, e))?;
                    (pos, view.child_at(pos).map_err(|e| self.corrupt(id, e))?)
                }
            };
            path.push((id, pos));
            id = child;
        }
        Ok((path, id))
    }

    /// Whether a node of this encoded size is under a quarter full.
    fn underfull(&self, encoded_len: usize) -> bool {
        let usable = self.page_size() - HEADER_LEN;
        encoded_len - HEADER_LEN < usable / 4
    }

    /// Whether a value of `value_len` bytes stays in the leaf with this key.
    pub fn fits_inline(&self, key_len: usize, value_len: usize) -> bool {
        SLOT_LEN + LEAF_CELL_HEADER + key_len + value_len <= page::max_cell_len(self.page_size())
    }

    /// Sets `key` to `value`, moving a large value to overflow pages and
    /// freeing the chain of the value it replaces.
    pub fn set(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        let value = if self.fits_inline(key.len(), value.len()) {
            Value::Inline(Bytes::copy_from_slice(value))
        } else {
            let len = u32::try_from(value.len()).map_err(|_| Error::ValueTooLarge {
                len: value.len(),
                max: u32::MAX as usize,
            })?;
            Value::Overflow {
                len,
                first: self.write_overflow(value)?,
            }
        };
        let added = (key.len() + value_len(&value)) as u64;
        let old = self.put(Bytes::copy_from_slice(key), value)?;
        self.meta.live_bytes = self.meta.live_bytes.saturating_add(added);
        match &old {
            Some(old) => {
                let removed = key.len() as u64 + u64::from(old.len);
                self.meta.live_bytes = self.meta.live_bytes.saturating_sub(removed);
            }
            None => self.meta.keys = self.meta.keys.saturating_add(1),
        }
        self.meta_changed = true;
        if let Some(first) = old.and_then(|o| o.overflow) {
            self.free_overflow(first)?;
        }
        Ok(())
    }

    /// Deletes `key`; returns whether it was there.
    pub fn delete(&mut self, key: &[u8]) -> Result<bool> {
        let old = self.remove(key)?;
        let Some(old) = old else {
            return Ok(false);
        };
        let removed = key.len() as u64 + u64::from(old.len);
        self.meta.live_bytes = self.meta.live_bytes.saturating_sub(removed);
        self.meta.keys = self.meta.keys.saturating_sub(1);
        self.meta_changed = true;
        if let Some(first) = old.overflow {
            self.free_overflow(first)?;
        }
        Ok(true)
    }

    /// Inserts or replaces `key`; returns the value replaced.
    fn put(&mut self, key: Bytes, value: Value) -> Result<Option<OldValue>> {
        let (mut path, leaf_id) = self.descend(&key)?;
        let last_put = self.last_put.replace(key.clone());
        // The common case: the leaf has room, and is edited in place.
        let in_place = match &mut self.load(leaf_id)?.body {
            Body::Raw(bytes) => Some(page::leaf_put_in_place(bytes, &key, &value)),
            Body::Decoded(_) => None,
        };
        match in_place {
            Some(Err(e)) => return Err(self.corrupt(leaf_id, e)),
            Some(Ok(Some(old))) => {
                self.note_leaf_op(leaf_id, PageOp::Put { key, value });
                return Ok(old);
            }
            // No room (the page is untouched) or already decoded.
            Some(Ok(None)) | None => {}
        }
        let mut leaf = self.leaf(leaf_id)?;
        let old = leaf
            .put(key.clone(), value.clone())
            .as_ref()
            .map(OldValue::from);
        if leaf.encoded_len() <= self.page_size() {
            self.write(
                leaf_id,
                Content::Node(Node::Leaf(leaf)),
                Some(vec![PageOp::Put { key, value }]),
            );
            return Ok(old);
        }
        // Split: the upper half moves to a new right sibling. The new page
        // is logged whole; the pages around it only as what changed in
        // them (a truncation, the put, new sibling links), which keeps a
        // split's log to about half a page instead of three or four.
        let sizes: Vec<usize> = leaf.entries.iter().map(|e| e.cell_len()).collect();
        let cap = self.page_size() - HEADER_LEN;
        let cut = match run_cut(
            &leaf.entries,
            &key,
            last_put.as_ref(),
            old.is_none(),
            &sizes,
            cap,
        ) {
            Some(cut) => cut,
            None => split_at(&sizes, cap, false)
                .ok_or_else(|| self.corrupt_msg(leaf_id, "leaf cannot be split"))?,
        };
        let right_id = self.alloc()?;
        let right = Leaf {
            prev: leaf_id,
            next: leaf.next,
            entries: leaf.entries.split_off(cut),
        };
        if right.next != NO_PAGE {
            let mut after = self.leaf(right.next)?;
            after.prev = right_id;
            let link = PageOp::Link {
                prev: after.prev,
                next: after.next,
            };
            self.write(
                right.next,
                Content::Node(Node::Leaf(after)),
                Some(vec![link]),
            );
        }
        leaf.next = right_id;
        let (Some(last_left), Some(first_right)) = (leaf.entries.last(), right.entries.first())
        else {
            return Err(self.corrupt_msg(leaf_id, "empty half after a split"));
        };
        let separator = shortest_separator(&last_left.key, &first_right.key);
        let first_right = first_right.key.clone();
        // Redo on the leaf as it was before this put: cut off the upper
        // half, add the new key if it stayed below, relink.
        let mut ops = vec![PageOp::Truncate {
            from: first_right.clone(),
        }];
        if key < first_right {
            ops.push(PageOp::Put { key, value });
        }
        ops.push(PageOp::Link {
            prev: leaf.prev,
            next: leaf.next,
        });
        self.write(leaf_id, Content::Node(Node::Leaf(leaf)), Some(ops));
        self.write_node(right_id, Node::Leaf(right));
        self.insert_separator(&mut path, leaf_id, separator, right_id)?;
        Ok(old)
    }

    /// Adds `(separator, right)` next to `left` in its parent, splitting
    /// upwards as far as needed.
    fn insert_separator(
        &mut self,
        path: &mut Vec<(PageId, usize)>,
        mut left: PageId,
        mut separator: Bytes,
        mut right: PageId,
    ) -> Result<()> {
        loop {
            let Some((parent_id, pos)) = path.pop() else {
                // `left` was the root: grow a new root above it.
                if self.meta.height >= MAX_BTREE_DEPTH {
                    return Err(self.corrupt_msg(left, "tree would exceed MAX_BTREE_DEPTH"));
                }
                let root = self.alloc()?;
                self.write_node(
                    root,
                    Node::Internal(Internal {
                        leftmost: left,
                        entries: vec![(separator, right)],
                    }),
                );
                self.meta.root = root;
                self.meta.height += 1;
                self.meta_changed = true;
                return Ok(());
            };
            let mut parent = self.internal(parent_id)?;
            parent.entries.insert(pos, (separator.clone(), right));
            if parent.encoded_len() <= self.page_size() {
                // A page holds far fewer than 2^16 entries; an impossible
                // position falls back to a full image.
                let op = u16::try_from(pos).ok().map(|pos| {
                    vec![PageOp::InsertChild {
                        pos,
                        key: separator,
                        child: right,
                    }]
                });
                self.write(parent_id, Content::Node(Node::Internal(parent)), op);
                return Ok(());
            }
            let sizes: Vec<usize> = parent
                .entries
                .iter()
                .map(|(k, _)| page::internal_cell_len(k.len()))
                .collect();
            let cut = split_at(&sizes, self.page_size() - HEADER_LEN, true)
                .ok_or_else(|| self.corrupt_msg(parent_id, "internal page cannot be split"))?;
            let mut upper = parent.entries.split_off(cut);
            let (promoted, right_leftmost) = upper.remove(0);
            let new_id = self.alloc()?;
            self.write_node(parent_id, Node::Internal(parent));
            self.write_node(
                new_id,
                Node::Internal(Internal {
                    leftmost: right_leftmost,
                    entries: upper,
                }),
            );
            left = parent_id;
            separator = promoted;
            right = new_id;
        }
    }

    /// Removes `key`; returns its value if it was there.
    fn remove(&mut self, key: &[u8]) -> Result<Option<OldValue>> {
        let (path, leaf_id) = self.descend(key)?;
        let in_place = match &mut self.load(leaf_id)?.body {
            Body::Raw(bytes) => Some(
                page::leaf_delete_in_place(bytes, key)
                    .and_then(|old| Ok((old, page::node_used_len(bytes)?))),
            ),
            Body::Decoded(_) => None,
        };
        match in_place {
            Some(Err(e)) => return Err(self.corrupt(leaf_id, e)),
            Some(Ok((None, _))) => return Ok(None),
            Some(Ok((Some(old), used))) => {
                let key = Bytes::copy_from_slice(key);
                self.note_leaf_op(leaf_id, PageOp::Delete { key });
                if self.underfull(used) {
                    self.rebalance(path)?;
                }
                return Ok(Some(old));
            }
            None => {}
        }
        let mut leaf = self.leaf(leaf_id)?;
        let Some(old) = leaf.remove(key).as_ref().map(OldValue::from) else {
            return Ok(None);
        };
        let underfull = self.underfull(leaf.encoded_len());
        self.write(
            leaf_id,
            Content::Node(Node::Leaf(leaf)),
            Some(vec![PageOp::Delete {
                key: Bytes::copy_from_slice(key),
            }]),
        );
        if underfull {
            self.rebalance(path)?;
        }
        Ok(Some(old))
    }

    /// Merges the underfull child at the end of `path` with a sibling, and
    /// walks up while parents underflow.
    fn rebalance(&mut self, mut path: Vec<(PageId, usize)>) -> Result<()> {
        while let Some((parent_id, pos)) = path.pop() {
            let mut parent = self.internal(parent_id)?;
            if parent.entries.is_empty() {
                return Ok(()); // no sibling to merge with
            }
            // Merge the pair (left_pos, left_pos + 1): the page and its left
            // sibling, or its right sibling if it is the leftmost child.
            let left_pos = pos.saturating_sub(1);
            let (separator, right_id) = parent.entries[left_pos].clone();
            let left_id = parent
                .child_at(left_pos)
                .ok_or_else(|| self.corrupt_msg(parent_id, "child position out of range"))?;
            let merged = match (self.content(left_id)?, self.content(right_id)?) {
                (Content::Node(Node::Leaf(mut l)), Content::Node(Node::Leaf(r))) => {
                    if l.encoded_len() + r.encoded_len() - HEADER_LEN > self.page_size() {
                        false
                    } else {
                        l.entries.extend(r.entries);
                        l.next = r.next;
                        if r.next != NO_PAGE {
                            let mut after = self.leaf(r.next)?;
                            after.prev = left_id;
                            self.write_node(r.next, Node::Leaf(after));
                        }
                        self.write_node(left_id, Node::Leaf(l));
                        true
                    }
                }
                (Content::Node(Node::Internal(mut l)), Content::Node(Node::Internal(r))) => {
                    l.entries.push((separator, r.leftmost));
                    l.entries.extend(r.entries);
                    if l.encoded_len() > self.page_size() {
                        false
                    } else {
                        self.write_node(left_id, Node::Internal(l));
                        true
                    }
                }
                _ => return Err(self.corrupt_msg(parent_id, "siblings of different kinds")),
            };
            if !merged {
                return Ok(());
            }
            self.free(right_id)?;
            parent.entries.remove(left_pos);
            if path.is_empty() && parent.entries.is_empty() {
                // The root is left with one child: the child becomes the root.
                self.meta.root = left_id;
                self.meta.height -= 1;
                self.meta_changed = true;
                self.free(parent_id)?;
                return Ok(());
            }
            let underfull = self.underfull(parent.encoded_len());
            self.write_node(parent_id, Node::Internal(parent));
            if !underfull {
                return Ok(());
            }
        }
        Ok(())
    }
}

/// A cursor over a key range, ascending or descending.
///
/// It holds no page between calls: a refill copies one leaf and lets it go,
/// and the entries are decoded from the copy one at a time as they are
/// asked for (see "Readers" in the module docs for the protocol).
///
/// The bounds are owned (`K = Bytes`) for a scan that outlives its
/// arguments, the [`ScanIter`](crate::ScanIter) of `scan`, or borrowed
/// (`K = &[u8]`) for a scan that runs within one call, `scan_with`.
pub struct Cursor<'a, F: File, K = Bytes> {
    pool: &'a BufferPool<F>,
    tree: &'a parking_lot::RwLock<TreeMeta>,
    published: &'a Published,
    poisoned: &'a AtomicBool,
    /// The range asked for.
    start: Bound<K>,
    end: Bound<K>,
    reverse: bool,
    /// Whether the scan has read a leaf yet: if so, `edge` holds the last
    /// key it will hand out from that leaf, and the scan goes on above it
    /// (below it, descending), whatever `start` (`end`) says.
    moved: bool,
    /// That key, in a buffer of the cursor's own: a slice of `leaf` would
    /// keep the leaf's buffer from being reused.
    edge: Vec<u8>,
    /// The last leaf read: its header and slot array followed by its cells,
    /// without the free gap between them. Entries handed out are slices of
    /// it.
    leaf: Bytes,
    /// The page the copy came from (for error reports).
    leaf_id: PageId,
    /// The page offset of the copy's first cell (no slot may point below it).
    cells_start: usize,
    /// The bytes of the free gap left out: a cell at page offset `o` is at
    /// `o - gap` in the copy.
    gap: usize,
    /// Slots of `leaf` still to hand out: an ascending scan takes `lo` and
    /// moves it up, a descending one takes `hi - 1` and moves `hi` down.
    lo: usize,
    hi: usize,
    /// The sequence number of the tree `leaf` was read from.
    seq: u64,
    /// The leaf after `leaf` in scan order (its sibling link), valid while
    /// the tree's sequence number is still `seq`.
    next_leaf: PageId,
    /// The buffer the next refill copies into. It shares its allocation
    /// with `leaf`; once neither `leaf` nor any entry handed out refers to
    /// it (the usual case: a consumer drops each entry before asking for
    /// the next), `BytesMut::reserve` takes the whole allocation back, and
    /// a refill allocates nothing.
    spare: BytesMut,
    /// No leaf is left to read (the entries of `leaf` may still be).
    done: bool,
}

/// What a refill found: a leaf with entries in range, copied to `spare`.
struct Fill {
    id: PageId,
    lo: usize,
    hi: usize,
    cells_start: usize,
    gap: usize,
    /// The sibling to read next, `NO_PAGE` if the range ends in this leaf.
    next: PageId,
}

impl<F: File, K: AsRef<[u8]>> std::fmt::Debug for Cursor<'_, F, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cursor")
            .field("start", &self.start.as_ref().map(|k| k.as_ref()))
            .field("end", &self.end.as_ref().map(|k| k.as_ref()))
            .field("reverse", &self.reverse)
            .finish_non_exhaustive()
    }
}

/// Whether `key` is inside the lower bound `start`.
fn above(key: &[u8], start: Bound<&[u8]>) -> bool {
    match start {
        Bound::Included(s) => key >= s,
        Bound::Excluded(s) => key > s,
        Bound::Unbounded => true,
    }
}

/// Whether `key` is inside the upper bound `end`.
fn below(key: &[u8], end: Bound<&[u8]>) -> bool {
    match end {
        Bound::Included(e) => key <= e,
        Bound::Excluded(e) => key < e,
        Bound::Unbounded => true,
    }
}

/// Where a cursor's seek for `key` lands in a leaf: through the page's
/// key heads if a search already built them, else by the plain binary
/// search. A cursor walks the leaf's cells right after, and a scan's
/// leaves are mostly ones no lookup has searched since they were read in
/// or changed: building their heads (a pass over every key) only to seek
/// once made `readseq` and `scanrandom` slower (see
/// docs/benchmarks/btree.md, session 9).
fn seek_leaf(
    page: &PageRef<'_>,
    view: &PageView<'_>,
    key: &[u8],
) -> page::PResult<Result<usize, usize>> {
    match page.built_heads() {
        Some(heads) => heads.search_leaf(view, key),
        None => view.search_leaf(key),
    }
}

/// The first slot of a leaf whose key is inside the lower bound `start`.
/// The first key is tried before any search: a scan that hops to the next
/// leaf finds all of it in range.
fn first_inside(
    page: &PageRef<'_>,
    view: &PageView<'_>,
    start: Bound<&[u8]>,
) -> page::PResult<usize> {
    if view.count() == 0 || above(view.leaf_key(0)?, start) {
        return Ok(0);
    }
    Ok(match start {
        Bound::Unbounded => 0,
        Bound::Included(k) => match seek_leaf(page, view, k)? {
            Ok(i) | Err(i) => i,
        },
        Bound::Excluded(k) => match seek_leaf(page, view, k)? {
            Ok(i) => i + 1,
            Err(i) => i,
        },
    })
}

/// One past the last slot of a leaf whose key is inside the upper bound
/// `end` (the last key is tried first, as in [`first_inside`]).
fn end_inside(page: &PageRef<'_>, view: &PageView<'_>, end: Bound<&[u8]>) -> page::PResult<usize> {
    let n = view.count();
    if n == 0 || below(view.leaf_key(n - 1)?, end) {
        return Ok(n);
    }
    Ok(match end {
        Bound::Unbounded => n,
        Bound::Included(k) => match seek_leaf(page, view, k)? {
            Ok(i) => i + 1,
            Err(i) => i,
        },
        Bound::Excluded(k) => match seek_leaf(page, view, k)? {
            Ok(i) | Err(i) => i,
        },
    })
}

fn poisoned_error(path: &Path) -> Error {
    Error::poisoned(path, "an earlier write failed half-way")
}

impl<'a, F: File, K: AsRef<[u8]>> Cursor<'a, F, K> {
    /// A cursor over `start..end`.
    pub fn new(
        pool: &'a BufferPool<F>,
        tree: &'a parking_lot::RwLock<TreeMeta>,
        published: &'a Published,
        poisoned: &'a AtomicBool,
        start: Bound<K>,
        end: Bound<K>,
        reverse: bool,
    ) -> Self {
        Self {
            pool,
            tree,
            published,
            poisoned,
            start,
            end,
            reverse,
            moved: false,
            edge: Vec::new(),
            leaf: Bytes::new(),
            leaf_id: NO_PAGE,
            cells_start: 0,
            gap: 0,
            lo: 0,
            hi: 0,
            seq: 0,
            next_leaf: NO_PAGE,
            spare: BytesMut::new(),
            done: false,
        }
    }

    /// The lower bound still to scan: the range's, or above the last leaf
    /// read in an ascending scan.
    fn lower(&self) -> Bound<&[u8]> {
        if self.moved && !self.reverse {
            return Bound::Excluded(&self.edge);
        }
        self.start.as_ref().map(|k| k.as_ref())
    }

    /// The upper bound still to scan: the range's, or below the last leaf
    /// read in a descending scan.
    fn upper(&self) -> Bound<&[u8]> {
        if self.moved && self.reverse {
            return Bound::Excluded(&self.edge);
        }
        self.end.as_ref().map(|k| k.as_ref())
    }

    /// Copies the next leaf that has entries in range.
    fn refill(&mut self) -> Result<()> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(poisoned_error(self.pool.file().path()));
        }
        // Every entry of the last leaf was handed out: let go of it, so
        // that (unless the caller kept one of them) the copy below reuses
        // its buffer.
        self.leaf = Bytes::new();
        let (published, tree) = (self.published, self.tree);
        let found = published.read(tree, |meta, seq| {
            self.read_leaf(meta, seq).map(|f| f.map(|f| (f, seq)))
        })?;
        let Some((fill, seq)) = found else {
            self.done = true;
            return Ok(());
        };
        self.leaf = self.spare.split().freeze();
        self.leaf_id = fill.id;
        self.cells_start = fill.cells_start;
        self.gap = fill.gap;
        self.lo = fill.lo;
        self.hi = fill.hi;
        self.seq = seq;
        self.next_leaf = fill.next;
        self.done = fill.next == NO_PAGE;
        // The scan goes on past the last key it will hand out from here.
        let last = if self.reverse { fill.lo } else { fill.hi - 1 };
        // (Taken out of `self` while `key` borrows the copy.)
        let mut edge = std::mem::take(&mut self.edge);
        edge.clear();
        let key = self.cell(last).map(|(key, _)| key);
        edge.extend_from_slice(key.map_err(|e| self.corrupt(e))?);
        self.edge = edge;
        self.moved = true;
        Ok(())
    }

    /// One try at a refill against the tree `meta`, whose sequence number
    /// is `seq`: finds the next leaf with entries in range and copies it to
    /// `spare`, or returns `None` if there is none. It changes nothing else
    /// (it may run again if an install overlaps it).
    fn read_leaf(&mut self, meta: &TreeMeta, seq: u64) -> Result<Option<Fill>> {
        let path = self.pool.file().path();
        let ps = self.pool.page_size();
        // The sibling link read by the last refill holds if the tree is the
        // same one; otherwise the leaf it names may have been split, merged
        // or freed since, and the scan descends again from the root.
        let mut id = if self.moved && seq == self.seq {
            self.next_leaf
        } else {
            let bound = if self.reverse {
                self.upper()
            } else {
                self.lower()
            };
            let seek = match bound {
                Bound::Included(k) | Bound::Excluded(k) => Seek::Key(k),
                Bound::Unbounded if self.reverse => Seek::Last,
                Bound::Unbounded => Seek::First,
            };
            find_leaf(self.pool, meta, seek)?
        };
        // Sibling links are walked at most page-count times: a cycle errors.
        for _ in 0..meta.page_count {
            check_page_id(path, meta, id)?;
            let page = self.pool.fetch(id)?;
            let err = |e| corrupt_at(path, ps, id, e);
            let view = PageView::new(&page, PageType::Leaf).map_err(err)?;
            let lo = first_inside(&page, &view, self.lower()).map_err(err)?;
            let hi = end_inside(&page, &view, self.upper()).map_err(err)?;
            // Whether the range ends in this leaf: a bound cuts it short.
            let ends_here = if self.reverse {
                lo > 0
            } else {
                hi < view.count()
            };
            let next = match ends_here {
                true => NO_PAGE,
                false if self.reverse => view.left().map_err(err)?,
                false => view.right().map_err(err)?,
            };
            if lo < hi {
                // One copy of the page's used bytes: the header and slots,
                // then the cells (the free gap between them is left out).
                let (slots_end, cells_start) = (view.slots_end(), view.cells_start());
                let (Some(head), Some(cells)) = (page.get(..slots_end), page.get(cells_start..))
                else {
                    return Err(Error::corrupted(path, self.pool.offset_of(id), "cell area"));
                };
                self.spare.clear();
                // A whole page, so that one buffer fits every later leaf.
                self.spare.reserve(ps);
                self.spare.extend_from_slice(head);
                self.spare.extend_from_slice(cells);
                return Ok(Some(Fill {
                    id,
                    lo,
                    hi,
                    cells_start,
                    gap: cells_start - slots_end,
                    next,
                }));
            }
            if next == NO_PAGE {
                return Ok(None);
            }
            id = next;
        }
        Err(Error::corrupted(path, 0, "leaf sibling links form a cycle"))
    }

    /// The key and value of slot `i` of the leaf copy, as slices of it.
    /// The copy's bytes were checked when the page was read (checksum) or
    /// written (the writer's own encoding), but every length is checked
    /// again here: nothing is indexed blindly.
    fn cell(&self, i: usize) -> page::PResult<(&[u8], ValueRef<'_>)> {
        let leaf: &[u8] = &self.leaf;
        let slot_at = HEADER_LEN + i * SLOT_LEN;
        let at = page::get_u16(leaf, slot_at)? as usize;
        let cell = match at.checked_sub(self.gap) {
            Some(pos) if at >= self.cells_start => leaf.get(pos..),
            _ => None,
        };
        let Some(cell) = cell else {
            return Err(PageError {
                offset: slot_at,
                reason: "slot points outside the cell area",
            });
        };
        let (key, value, _) = page::decode_leaf_cell(cell, at)?;
        Ok((key, value))
    }

    /// A damaged cell of the leaf copy, at its place in the page file.
    fn corrupt(&self, e: PageError) -> Error {
        let path = self.pool.file().path();
        corrupt_at(path, self.pool.page_size(), self.leaf_id, e)
    }

    /// The entry in slot `i` of the leaf copy, or `None` if it holds a
    /// large value whose key was deleted since the copy was made.
    fn entry(&self, i: usize) -> Result<Option<(Bytes, Bytes)>> {
        let (key, value) = self.cell(i).map_err(|e| self.corrupt(e))?;
        // `slice_ref` of a slice that `cell` cut from `leaf` itself: a
        // reference count, no copy.
        let value = match value {
            ValueRef::Inline(v) => self.leaf.slice_ref(v),
            ValueRef::Overflow { len, first } => {
                let Some(v) = self.overflow_value(key, len, first)? else {
                    return Ok(None);
                };
                v
            }
        };
        Ok(Some((self.leaf.slice_ref(key), value)))
    }

    /// The next slot of the leaf copy to hand out, if any is left.
    fn next_slot(&mut self) -> Option<usize> {
        if self.lo >= self.hi {
            return None;
        }
        Some(if self.reverse {
            self.hi -= 1;
            self.hi
        } else {
            self.lo += 1;
            self.lo - 1
        })
    }

    /// Calls `visit` with each entry left, borrowed from the leaf copy,
    /// until it says stop: the borrowing scan (`scan_with`). The same
    /// refills as the iterator, without a `Bytes` per key and value (two
    /// atomic reference-count updates each). No page is latched while
    /// `visit` runs, so it may call into the engine.
    pub fn visit(mut self, visit: &mut Visit<'_>) -> Result<()> {
        loop {
            while let Some(i) = self.next_slot() {
                let (key, value) = self.cell(i).map_err(|e| self.corrupt(e))?;
                let flow = match value {
                    ValueRef::Inline(v) => visit(key, v),
                    ValueRef::Overflow { len, first } => {
                        match self.overflow_value(key, len, first)? {
                            Some(v) => visit(key, &v),
                            None => continue,
                        }
                    }
                };
                if flow.is_break() {
                    return Ok(());
                }
            }
            if self.done {
                return Ok(());
            }
            self.refill()?;
        }
    }

    /// The value of `key`, which the leaf copy says is `len` bytes in the
    /// overflow chain at `first`. The chain is read only if the tree is
    /// still the one the copy came from: once a batch is installed, the
    /// chain may have been freed and its pages reused. Otherwise the key
    /// is looked up again, and its value now (`None` if it was deleted)
    /// is returned: if the key was written during the scan, either answer
    /// is allowed, and if it was not, the value is the same.
    fn overflow_value(&self, key: &[u8], len: u32, first: PageId) -> Result<Option<Bytes>> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(poisoned_error(self.pool.file().path()));
        }
        self.published.read(self.tree, |meta, seq| {
            if seq == self.seq {
                read_overflow(self.pool, meta, first, len).map(Some)
            } else {
                get(self.pool, meta, key)
            }
        })
    }
}

impl<F: File, K: AsRef<[u8]>> Iterator for Cursor<'_, F, K> {
    type Item = Result<(Bytes, Bytes)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(i) = self.next_slot() {
                match self.entry(i) {
                    Ok(Some(entry)) => return Some(Ok(entry)),
                    Ok(None) => continue,
                    Err(e) => {
                        self.done = true;
                        self.hi = self.lo;
                        return Some(Err(e));
                    }
                }
            }
            if self.done {
                return None;
            }
            if let Err(e) = self.refill() {
                self.done = true;
                self.hi = self.lo;
                return Some(Err(e));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_point_balances_and_respects_the_page() {
        assert_eq!(split_at(&[10, 10, 10, 10], 25, false), Some(2));
        assert_eq!(split_at(&[30, 5, 5, 5], 40, false), Some(1));
        assert_eq!(split_at(&[10, 10, 10, 10, 10], 25, true), Some(2));
        assert_eq!(split_at(&[10, 10], 5, false), None);
        // A promoted cut never leaves the right half empty.
        assert_eq!(split_at(&[10, 10], 100, true), None);
    }

    /// Whether `s` separates `left` from `right` and no shorter prefix of
    /// `right` does.
    fn shortest_between(left: &[u8], s: &[u8], right: &[u8]) -> bool {
        left < s && s <= right && right.starts_with(s) && !(0..s.len()).any(|n| left < &right[..n])
    }

    #[test]
    fn a_split_s_separator_is_the_shortest_key_between_the_halves() {
        let b = |s: &[u8]| Bytes::copy_from_slice(s);
        let cases: &[(&[u8], &[u8], &[u8])] = &[
            (b"abc", b"abd", b"abd"),
            (b"abc", b"abdzzz", b"abd"),
            (b"ab", b"abc", b"abc"),
            (b"ab", b"ab\x00", b"ab\x00"),
            (b"a", b"b", b"b"),
            (b"", b"a", b"a"),
            (b"a\xffzz", b"b\x00\x00", b"b"),
            // A SQL version key: the next row differs in the 21st byte.
            (
                b"\x02\x02\x00\xff\x00\xff\x00\xff\x00\xff\x00\xff\x00\xff\x00\xff\x01\x02\xc0\x90\xf4\x00\xff\xff\xfb",
                b"\x02\x02\x00\xff\x00\xff\x00\xff\x00\xff\x00\xff\x00\xff\x00\xff\x01\x02\xc0\x90\xf5\x00\xff\xff\xfa",
                b"\x02\x02\x00\xff\x00\xff\x00\xff\x00\xff\x00\xff\x00\xff\x00\xff\x01\x02\xc0\x90\xf5",
            ),
        ];
        for &(left, right, want) in cases {
            let s = shortest_separator(&b(left), &b(right));
            assert_eq!(&s[..], want, "{left:?} | {right:?}");
            assert!(shortest_between(left, &s, right), "{left:?} | {right:?}");
        }
        // Every ordered pair of short keys over a small alphabet (zero
        // bytes, which also pad, included).
        let alphabet = [0u8, 1, 0xff];
        let mut keys = vec![Vec::new()];
        for len in 1..=3 {
            let mut more = Vec::new();
            for k in keys.iter().filter(|k| k.len() == len - 1) {
                for &c in &alphabet {
                    let mut k = k.clone();
                    k.push(c);
                    more.push(k);
                }
            }
            keys.extend(more);
        }
        for left in &keys {
            for right in keys.iter().filter(|r| left < *r) {
                let s = shortest_separator(&b(left), &b(right));
                assert!(
                    shortest_between(left, &s, right),
                    "{left:?} | {right:?} -> {s:?}"
                );
            }
        }
        // Not ordered: the right key as it is.
        assert_eq!(&shortest_separator(&b(b"b"), &b(b"a"))[..], b"a");
        assert_eq!(&shortest_separator(&b(b"a"), &b(b"a"))[..], b"a");
    }
}
