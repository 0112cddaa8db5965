//! Key heads: a compact array of key prefixes beside each cached page, so
//! that a binary search compares integers instead of decoding cells.
//!
//! A binary search over a slotted page ([`PageView`]) pays, per probe, a
//! slot read, a cell header decode with its bound checks, and a `memcmp`
//! of two keys: about 80 instructions, and a cache miss on a cell
//! somewhere in the page. Session 8's profile found the two internal
//! searches of a three-level lookup to be 62% of its instructions.
//!
//! The buffer pool keeps, beside the bytes of each cached leaf or internal
//! page, the page's [`Heads`] (LeanStore's "heads", Umbra's "prefix +
//! head"), built by the first search of the page after it was read from
//! disk or changed by an install:
//!
//! ```text
//!  keys of the page            prefix (common to all)   heads (u32, big-endian)
//!  00 00 00 00 00 04 93 e1 7a  00 00 00 00 00           [04 93 e1 7a] -> 0x0493e17a
//!  00 00 00 00 00 04 a0 02 1c                           [04 a0 02 1c] -> 0x04a0021c
//!  00 00 00 00 00 05 11 7f                              [05 11 7f 00] -> 0x05117f00
//! ```
//!
//! The prefix is the longest one shared by the first and the last key (so,
//! keys being sorted, by all of them); a head is the next [`HEAD_LEN`]
//! bytes of a key after the prefix, zero-padded, read as a big-endian
//! integer. Comparing heads as integers agrees with comparing the keys
//! bytewise wherever the heads differ: if `head(a) < head(b)` then
//! `a < b`. Equal heads say nothing (the keys may differ further on, or
//! one may be shorter and padded with zeros), so a search first narrows the
//! heads to the run equal to the search key's head, two binary searches over
//! a dense `u32` array, and compares whole keys only inside that run, which
//! is usually one key or none.
//!
//! A search key that does not start with the prefix is below every key of
//! the page or above every one, decided by one comparison with the prefix.
//!
//! ## Cache lines, not instructions
//!
//! A random lookup in a tree larger than the CPU cache waits for memory on
//! every leaf, so the search is laid out to touch few lines: the prefix,
//! when it is at most [`PREFIX_INLINE`] bytes, and the heads themselves,
//! when the page has at most [`HEADS_INLINE`] cells, are kept inside
//! `Heads` (in the frame, not in heap blocks of their own, so that a
//! descent can prefetch them with the frame: see `HeadArray`), and the
//! run of heads equal to the key's is measured by galloping from where
//! the first binary search ended, not by a second binary search over the
//! rest of the page
//! (see `equal_run`).
//!
//! ## Why in memory and not in the page format
//!
//! The heads are derived from the page bytes, so keeping them out of the
//! file costs nothing on disk, needs no format version, checksum or
//! describer change, and a crash cannot leave them out of date. They live
//! in the frame next to the bytes, behind the same latch. Every change of a
//! frame's bytes (the pool's `fetch` miss path or `install`, both under the
//! write latch) resets them to "not built"; the first reader that searches
//! the page builds them under its read latch (a `OnceLock`: one builder,
//! concurrent readers wait for it). So a reader holding the read latch
//! always sees heads that match the bytes, and a page installed again and
//! again before anyone searches it (a random fill) pays nothing. The cost
//! is 4 bytes per cell of each searched leaf or internal page and one pass
//! over its keys per first search after a change.
//!
//! ## Untrusted bytes
//!
//! The page was verified by its checksum, but a search must still not trust
//! it: the heads are built only if every key decodes and the keys are in
//! strictly ascending order; otherwise the frame has no heads and searches
//! fall back to [`PageView`]'s plain binary search, which reports the
//! damage. A search with heads checks that they belong to a page of the
//! expected type and cell count before using them.

use std::cmp::Ordering;

use super::page::{PResult, PageType, PageView};

/// Bytes of a key (after the page's common prefix) kept in its head.
pub const HEAD_LEN: usize = 4;

/// The heads of one page: its keys' common prefix and one `u32` per cell.
#[derive(Debug, Default, Clone)]
pub struct Heads {
    /// The page type the heads were built for; `None` when the frame has
    /// no heads (not a leaf or internal page, or keys that failed a check).
    kind: Option<PageType>,
    /// The prefix shared by every key of the page.
    prefix: Prefix,
    /// `heads[i]`: the `HEAD_LEN` bytes of key `i` after the prefix (and
    /// the second heads of an internal page's long runs, if it has any).
    heads: HeadArray,
}

/// Equal heads from which a search takes the keys' second heads.
pub const RUN_HEADS_MIN: usize = 4;

/// Second heads for the long runs of equal heads of an internal page.
///
/// One prefix for the whole page says little when the page holds keys of
/// two kinds: the root of a SQL tree holds separators of a table's rows
/// and of its index entries, which share only their first byte, and the
/// rows' separators then all have the same head (the table id's escaped
/// zeros). A search for a row then compares whole keys along a binary
/// search of the run (about six `memcmp`s of 20-byte keys, each behind a
/// cell decode). A run of equal heads is a run of keys in order, so its
/// keys share the common prefix of its first and last key: each key of a
/// long run gets a second head, the `HEAD_LEN` bytes after that run's own
/// prefix, and a search that lands in the run compares the sought key
/// with the run's prefix once and then binary-searches the second heads.
#[derive(Debug, Clone)]
struct RunHeads {
    /// `skip[i]`: the length of the prefix shared by the run of key `i`
    /// (0 for a key outside a long run).
    skip: Vec<u16>,
    /// `heads[i]`: the `HEAD_LEN` bytes of key `i` after `skip[i]`.
    heads: Vec<u32>,
}

/// Where a sought key lies against a run of equal heads.
enum InRun {
    /// Below every key of the run.
    Below,
    /// Above every key of the run.
    Above,
    /// Among the keys `lo..hi` of the page (their second heads equal the
    /// key's): only those need whole keys compared.
    Within(usize, usize),
}

impl RunHeads {
    /// The second heads of the long runs of `heads`, the heads of the
    /// keys of `view`; `None` if no run is long enough.
    fn of(view: &PageView<'_>, heads: &[u32]) -> PResult<Option<Self>> {
        let mut runs: Option<Self> = None;
        let mut start = 0;
        while let Some(&h) = heads.get(start) {
            let len = heads
                .get(start..)
                .map_or(0, |rest| rest.iter().take_while(|&&x| x == h).count());
            let end = start + len.max(1);
            if len >= RUN_HEADS_MIN {
                let runs = runs.get_or_insert_with(|| Self {
                    skip: vec![0; heads.len()],
                    heads: vec![0; heads.len()],
                });
                let skip = common_prefix(view.key(start)?, view.key(end - 1)?);
                // A key is shorter than a page, so its length fits.
                let skip16 = u16::try_from(skip).unwrap_or(u16::MAX);
                for i in start..end {
                    let key = view.key(i)?;
                    if let (Some(s), Some(h)) = (runs.skip.get_mut(i), runs.heads.get_mut(i)) {
                        *s = skip16;
                        *h = head(key.get(skip..).unwrap_or_default());
                    }
                }
            }
            start = end;
        }
        Ok(runs)
    }

    /// Where `key` lies against the keys `lo..hi` of `view`, a run of
    /// equal heads of at least [`RUN_HEADS_MIN`] keys.
    fn narrow(&self, view: &PageView<'_>, lo: usize, hi: usize, key: &[u8]) -> PResult<InRun> {
        let (Some(&skip), Some(run)) = (self.skip.get(lo), self.heads.get(lo..hi)) else {
            return Ok(InRun::Within(lo, hi));
        };
        let skip = usize::from(skip);
        // Every key of the run starts with the first one's `skip` bytes.
        let Some(shared) = view.key(lo)?.get(..skip) else {
            return Ok(InRun::Within(lo, hi));
        };
        match key.get(..skip) {
            Some(start) if start == shared => {
                let h = head(key.get(skip..).unwrap_or_default());
                let from = run.partition_point(|&x| x < h);
                let to = from + equal_run(run.get(from..).unwrap_or_default(), h);
                Ok(InRun::Within(lo + from, lo + to))
            }
            // The key differs from the run's prefix (or is a prefix of it):
            // as it compares with the prefix, it compares with every key.
            _ if key < shared => Ok(InRun::Below),
            _ => Ok(InRun::Above),
        }
    }
}

/// Pages of up to this many cells keep their heads inside the frame
/// (larger ones in a heap block of their own): a leaf of 16-byte keys and
/// 100-byte values in a 4 KiB page holds at most 32.
pub const HEADS_INLINE: usize = 42;

/// The heads of a page's cells, kept inline when they are few.
///
/// In a `Vec` the heads were a heap block of their own, reached through a
/// pointer in the frame: a random lookup waited for the frame's line, and
/// only then could it ask for the heads' line (session 16's profile: the
/// second of the four lines a leaf search waits for in turn). Inline, they
/// sit in the frame's own lines, at an address known from the frame
/// number alone, so a descent prefetches them together with the frame
/// and the page header ([`BufferPool::prefetch`](super::pool::BufferPool::prefetch)).
/// A page with more cells than [`HEADS_INLINE`] (small keys and values, or
/// an internal page) spills to the heap; internal pages are few and stay
/// cached.
#[derive(Debug, Clone)]
enum HeadArray {
    /// `heads[..len]`, `len <= HEADS_INLINE`.
    Inline { len: u8, heads: [u32; HEADS_INLINE] },
    /// More than `HEADS_INLINE` heads, or an internal page's heads with
    /// second heads for its long runs (see [`RunHeads`]), kept here so
    /// that the frame does not grow.
    Heap(Vec<u32>, Option<Box<RunHeads>>),
}

impl Default for HeadArray {
    fn default() -> Self {
        Self::Inline {
            len: 0,
            heads: [0; HEADS_INLINE],
        }
    }
}

impl HeadArray {
    /// An empty array with room for `n` heads, inline if they fit.
    fn with_capacity(n: usize) -> Self {
        if n <= HEADS_INLINE {
            Self::default()
        } else {
            Self::Heap(Vec::with_capacity(n), None)
        }
    }

    fn as_slice(&self) -> &[u32] {
        match self {
            Self::Inline { len, heads } => heads.get(..usize::from(*len)).unwrap_or_default(),
            Self::Heap(v, _) => v,
        }
    }

    /// The second heads of the page's long runs, if it has any.
    fn runs(&self) -> Option<&RunHeads> {
        match self {
            Self::Heap(_, Some(runs)) => Some(runs),
            _ => None,
        }
    }

    /// Keeps `runs` with the heads, moving them to the heap if inline.
    fn set_runs(&mut self, runs: RunHeads) {
        let heads = match std::mem::take(self) {
            Self::Inline { len, heads } => {
                heads.get(..usize::from(len)).unwrap_or_default().to_vec()
            }
            Self::Heap(v, _) => v,
        };
        *self = Self::Heap(heads, Some(Box::new(runs)));
    }

    /// Appends `h`, spilling to the heap when the inline room is full.
    fn push(&mut self, h: u32) {
        match self {
            Self::Inline { len, heads } => match heads.get_mut(usize::from(*len)) {
                Some(slot) => {
                    *slot = h;
                    *len += 1;
                }
                None => {
                    let mut v = heads.to_vec();
                    v.push(h);
                    *self = Self::Heap(v, None);
                }
            },
            Self::Heap(v, _) => v.push(h),
        }
    }

    fn len(&self) -> usize {
        self.as_slice().len()
    }

    /// Whether the heads are inside the `HeadArray` itself.
    fn is_inline(&self) -> bool {
        matches!(self, Self::Inline { .. })
    }
}

/// Prefixes up to this many bytes are kept inside the heads themselves
/// (longer ones in a heap block of their own).
pub const PREFIX_INLINE: usize = 22;

/// A page's common key prefix, kept inline when it is short.
///
/// Every search reads the prefix. In a `Vec` it lived in a small heap
/// block of its own, one more cache line to wait for on each page a lookup
/// touches (session 14's profile of `readrandom`: the leaves do not fit in
/// the cache, so each line of a leaf's bookkeeping is a miss). Inline, it
/// sits in the frame's own lines, which the latch has just brought in.
/// The inline form is as large as a `Vec` (24 bytes), so the frame does
/// not grow; a longer prefix (rare: keys sharing more than 22 bytes
/// across a whole page) spills to the heap.
#[derive(Debug, Clone)]
enum Prefix {
    /// `bytes[..len]`, `len <= PREFIX_INLINE`.
    Inline { len: u8, bytes: [u8; PREFIX_INLINE] },
    /// A prefix longer than `PREFIX_INLINE` bytes.
    Heap(Vec<u8>),
}

impl Default for Prefix {
    fn default() -> Self {
        Self::Inline {
            len: 0,
            bytes: [0; PREFIX_INLINE],
        }
    }
}

impl Prefix {
    /// A prefix of these bytes.
    fn of(bytes: &[u8]) -> Self {
        let mut inline = [0u8; PREFIX_INLINE];
        match (inline.get_mut(..bytes.len()), u8::try_from(bytes.len())) {
            (Some(dst), Ok(len)) => {
                dst.copy_from_slice(bytes);
                Self::Inline { len, bytes: inline }
            }
            _ => Self::Heap(bytes.to_vec()),
        }
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            Self::Inline { len, bytes } => bytes.get(..usize::from(*len)).unwrap_or_default(),
            Self::Heap(v) => v,
        }
    }
}

/// The head of a key's bytes after the common prefix.
///
/// A suffix of at least `HEAD_LEN` bytes (nearly every key searched) is
/// one unaligned load; only a shorter one is copied into a zeroed array,
/// a copy of a length not known at compile time, which is a call to
/// `memcpy` (about 14 instructions a search when every key took it).
fn head(suffix: &[u8]) -> u32 {
    if let Some(b) = suffix.first_chunk::<HEAD_LEN>() {
        return u32::from_be_bytes(*b);
    }
    let mut b = [0u8; HEAD_LEN];
    let n = suffix.len().min(HEAD_LEN);
    if let (Some(dst), Some(src)) = (b.get_mut(..n), suffix.get(..n)) {
        dst.copy_from_slice(src);
    }
    u32::from_be_bytes(b)
}

/// How many heads at the start of `run` equal `h` (`run` is sorted and
/// starts at the first head not below `h`).
///
/// The run is nearly always zero or one head long, so it is measured by
/// galloping from its start (1, 2, 4, ... heads on) and then bisecting
/// the last step: the probes stay on the line the first search ended on.
/// A binary search over all of `run` probed its middle first, a cache
/// line of its own on a leaf the CPU has not cached (session 14: a fifth
/// of `Heads::search`'s samples in `readrandom`).
fn equal_run(run: &[u32], h: u32) -> usize {
    // Invariant: run[..known] all equal `h`; run[bound..] (if bound is in
    // range) starts with a head above it.
    let (mut known, mut step) = (0, 1);
    let bound = loop {
        match run.get(known) {
            Some(&x) if x == h => {
                known += 1;
                let probe = known + step;
                match run.get(probe - 1) {
                    Some(&y) if y == h => {
                        known = probe;
                        step *= 2;
                    }
                    Some(_) => break probe - 1,
                    None => break run.len(),
                }
            }
            _ => return known,
        }
    };
    known
        + run
            .get(known..bound)
            .map_or(0, |r| r.partition_point(|&x| x == h))
}

/// The length of the longest common prefix of `a` and `b`.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

impl Heads {
    /// The heads of the page in `buf` (see [`Heads::rebuild`]).
    pub fn of(buf: &[u8]) -> Self {
        let mut heads = Self::default();
        heads.rebuild(buf);
        heads
    }

    /// Rebuilds the heads for the page in `buf` (reusing the allocations).
    /// Any other page, or a leaf or internal page whose keys do not decode
    /// in strictly ascending order, gets no heads.
    pub fn rebuild(&mut self, buf: &[u8]) {
        self.kind = None;
        self.prefix = Prefix::default();
        self.heads = HeadArray::default();
        let kind = match buf
            .get(super::page::TYPE_OFFSET)
            .copied()
            .and_then(PageType::from_byte)
        {
            Some(k @ (PageType::Leaf | PageType::Internal)) => k,
            _ => return,
        };
        if self.build(buf, kind).is_ok() {
            self.kind = Some(kind);
        } else {
            self.prefix = Prefix::default();
            self.heads = HeadArray::default();
        }
    }

    fn build(&mut self, buf: &[u8], kind: PageType) -> PResult<()> {
        let view = PageView::new(buf, kind)?;
        let n = view.count();
        if n > 0 {
            let first = view.key(0)?;
            let last = view.key(n - 1)?;
            let len = common_prefix(first, last);
            self.prefix = Prefix::of(first.get(..len).unwrap_or_default());
        }
        self.heads = HeadArray::with_capacity(n);
        let out_of_order = super::page::PageError {
            offset: super::page::HEADER_LEN,
            reason: "keys out of order",
        };
        let prefix = self.prefix.as_slice();
        let mut prev: Option<(&[u8], u32)> = None;
        for i in 0..n {
            let key = view.key(i)?;
            // Every key lies between the first and the last, so it starts
            // with their common prefix; a key that does not is out of order.
            let Some(suffix) = key.strip_prefix(prefix) else {
                return Err(out_of_order);
            };
            let h = head(suffix);
            // A larger head proves the order by itself; only equal heads
            // need the whole keys compared.
            if let Some((p, ph)) = prev
                && (h < ph || (h == ph && p >= key))
            {
                return Err(out_of_order);
            }
            self.heads.push(h);
            prev = Some((key, h));
        }
        // Internal pages only: a leaf's heads stay inline in its frame,
        // where a descent prefetches them (see `HeadArray`).
        if kind == PageType::Internal
            && let Some(runs) = RunHeads::of(&view, self.heads.as_slice())?
        {
            self.heads.set_runs(runs);
        }
        Ok(())
    }

    /// The heads, if they describe `view`, a page of type `kind`.
    fn describing(&self, view: &PageView<'_>, kind: PageType) -> Option<&[u32]> {
        let heads = self.heads.as_slice();
        (self.kind == Some(kind) && heads.len() == view.count()).then_some(heads)
    }

    /// Searches `view` (a page of type `kind`, the one the heads were built
    /// from) for `key`: `Ok(i)` if key `i` equals it, `Err(i)` for the
    /// position where it would go. `None` if the heads do not describe the
    /// page: the caller searches it without them.
    pub fn search(
        &self,
        view: &PageView<'_>,
        kind: PageType,
        key: &[u8],
    ) -> Option<PResult<Result<usize, usize>>> {
        let heads = self.describing(view, kind)?;
        let prefix = self.prefix.as_slice();
        let Some(suffix) = key.strip_prefix(prefix) else {
            // Below or above every key of the page, which all start with
            // the prefix.
            return Some(Ok(Err(if key < prefix { 0 } else { heads.len() })));
        };
        let h = head(suffix);
        // Keys before `lo` have smaller heads, so they are smaller keys;
        // keys from `hi` on are larger. Only `lo..hi` needs whole keys.
        let lo = heads.partition_point(|&x| x < h);
        let run = heads.get(lo..).unwrap_or_default();
        let (mut lo, mut hi) = (lo, lo + equal_run(run, h));
        if hi - lo >= RUN_HEADS_MIN
            && let Some(runs) = self.heads.runs()
        {
            match runs.narrow(view, lo, hi, key) {
                Err(e) => return Some(Err(e)),
                Ok(InRun::Below) => return Some(Ok(Err(lo))),
                Ok(InRun::Above) => return Some(Ok(Err(hi))),
                Ok(InRun::Within(from, to)) => (lo, hi) = (from, to),
            }
        }
        // A leaf's sought cell holds the value too, a line or two past its
        // key: ask for them all before waiting for the key (the run is
        // nearly always one cell, the first one probed). Internal pages
        // stay cached, so they are not worth the instructions.
        if kind == PageType::Leaf && lo < hi {
            view.prefetch_cell(lo + (hi - lo) / 2);
        }
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match view.key(mid) {
                Err(e) => return Some(Err(e)),
                Ok(k) => match k.cmp(key) {
                    Ordering::Less => lo = mid + 1,
                    Ordering::Greater => hi = mid,
                    Ordering::Equal => return Some(Ok(Ok(mid))),
                },
            }
        }
        Some(Ok(Err(lo)))
    }

    /// [`PageView::search_leaf`], through the heads when they describe the
    /// page.
    pub fn search_leaf(&self, view: &PageView<'_>, key: &[u8]) -> PResult<Result<usize, usize>> {
        match self.search(view, PageType::Leaf, key) {
            Some(r) => r,
            None => view.search_leaf(key),
        }
    }

    /// [`PageView::child_pos_for`], through the heads when they describe
    /// the page.
    pub fn child_pos_for(&self, view: &PageView<'_>, key: &[u8]) -> PResult<usize> {
        match self.search(view, PageType::Internal, key) {
            // Separators are strictly ascending: those `<= key` are the
            // ones before the position, plus an equal one.
            Some(r) => r.map(|r| match r {
                Ok(i) => i + 1,
                Err(i) => i,
            }),
            None => view.child_pos_for(key),
        }
    }

    /// The cells with heads (0 when the frame has none).
    pub fn len(&self) -> usize {
        self.heads.len()
    }

    /// Whether the frame has no heads (or its page no cells).
    pub fn is_empty(&self) -> bool {
        self.heads.len() == 0
    }

    /// Whether the heads are kept inline (in the frame, for a frame's
    /// heads), not in a heap block.
    pub fn is_inline(&self) -> bool {
        self.heads.is_inline()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::btree::page::{Content, Internal, Leaf, Node, Value, encode};
    use bytes::Bytes;

    /// A tiny deterministic generator (xorshift).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Random sorted, distinct keys drawn from a small alphabet with a
    /// shared prefix, so that equal heads, keys that are prefixes of
    /// others, zero bytes (equal to the padding) and the empty key all
    /// occur. The shared prefix is short, or at, just below or above the
    /// longest one kept inline, or long.
    fn keys(rng: &mut Rng, n: usize) -> Vec<Vec<u8>> {
        let lens = [
            0,
            1,
            2,
            3,
            4,
            5,
            PREFIX_INLINE - 1,
            PREFIX_INLINE,
            PREFIX_INLINE + 1,
            40,
        ];
        let prefix_len = lens[rng.below(lens.len() as u64) as usize];
        let mut set = std::collections::BTreeSet::new();
        if rng.below(4) == 0 {
            set.insert(Vec::new());
        }
        while set.len() < n {
            let mut k = vec![7u8; prefix_len];
            let len = rng.below(12) as usize;
            for _ in 0..len {
                k.push([0u8, 1, 2, 255][rng.below(4) as usize]);
            }
            set.insert(k);
        }
        set.into_iter().collect()
    }

    /// Search keys: the page's keys, and random neighbours of them.
    fn probes(rng: &mut Rng, keys: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let mut out: Vec<Vec<u8>> = keys.to_vec();
        out.push(Vec::new());
        out.push(vec![255; 20]);
        for _ in 0..200 {
            let mut k = match keys.get(rng.below(keys.len().max(1) as u64) as usize) {
                Some(k) => k.clone(),
                None => Vec::new(),
            };
            match rng.below(4) {
                0 => k.push([0u8, 1, 255][rng.below(3) as usize]),
                1 => {
                    k.pop();
                }
                2 => {
                    if let Some(b) = k.last_mut() {
                        *b = b.wrapping_add(1);
                    }
                }
                _ => {
                    let at = rng.below(k.len() as u64 + 1) as usize;
                    k.truncate(at);
                    k.push(rng.below(256) as u8);
                }
            }
            out.push(k);
        }
        out
    }

    /// The heads' search of `p` finds what the page's plain search finds.
    fn assert_same_search(
        heads: &Heads,
        view: &PageView<'_>,
        leaf: bool,
        ks: &[Vec<u8>],
        p: &[u8],
    ) {
        if leaf {
            assert_eq!(
                heads.search_leaf(view, p).unwrap(),
                view.search_leaf(p).unwrap(),
                "keys {ks:?}, probe {p:?}"
            );
        } else {
            assert_eq!(
                heads.child_pos_for(view, p).unwrap(),
                view.child_pos_for(p).unwrap(),
                "keys {ks:?}, probe {p:?}"
            );
        }
    }

    /// A 4 KiB page holding `ks`: a leaf (each valued "v") or an internal
    /// page (children from 100 up).
    fn page_of(ks: &[Vec<u8>], leaf: bool) -> Vec<u8> {
        let content = if leaf {
            let mut l = Leaf::default();
            for k in ks {
                l.put(
                    Bytes::from(k.clone()),
                    Value::Inline(Bytes::from_static(b"v")),
                );
            }
            Content::Node(Node::Leaf(l))
        } else {
            Content::Node(Node::Internal(Internal {
                leftmost: 100,
                entries: (0u32..)
                    .zip(ks)
                    .map(|(c, k)| (Bytes::from(k.clone()), 101 + c))
                    .collect(),
            }))
        };
        encode(&content, 9, 4096).unwrap()
    }

    #[test]
    fn heads_agree_with_a_plain_binary_search_on_random_pages() {
        let mut rng = Rng(0x1234_5678_9abc_def1);
        let mut heads = Heads::default();
        let mut searched_with_heads = 0;
        let (mut longest_inline, mut spilled) = (0, 0);
        let (mut most_heads_inline, mut heads_spilled) = (0, 0);
        for round in 0..600 {
            // Around HEADS_INLINE cells, so that both forms of the head
            // array, and the largest inline one, are searched.
            let n = rng.below(HEADS_INLINE as u64 + 10) as usize;
            let ks = keys(&mut rng, n);
            let leaf = round % 2 == 0;
            let buf = page_of(&ks, leaf);
            heads.rebuild(&buf);
            assert_eq!(heads.len(), ks.len());
            // The prefix kept is the keys' common prefix, in either form.
            if let (Some(first), Some(last)) = (ks.first(), ks.last()) {
                let common = &first[..common_prefix(first, last)];
                assert_eq!(heads.prefix.as_slice(), common, "keys {ks:?}");
            }
            match &heads.prefix {
                Prefix::Inline { len, .. } => {
                    longest_inline = longest_inline.max(usize::from(*len));
                }
                Prefix::Heap(_) => spilled += 1,
            }
            // Inline unless too many, or an internal page with second heads.
            assert_eq!(
                heads.is_inline(),
                ks.len() <= HEADS_INLINE && heads.heads.runs().is_none()
            );
            if heads.is_inline() {
                most_heads_inline = most_heads_inline.max(heads.len());
            } else {
                heads_spilled += 1;
            }
            let kind = if leaf {
                PageType::Leaf
            } else {
                PageType::Internal
            };
            let view = PageView::new(&buf, kind).unwrap();
            for p in probes(&mut rng, &ks) {
                assert_same_search(&heads, &view, leaf, &ks, &p);
                searched_with_heads += usize::from(heads.search(&view, kind, &p).is_some());
            }
        }
        // The heads were used, not bypassed, with prefixes of both forms.
        assert!(searched_with_heads > 20_000, "{searched_with_heads}");
        assert_eq!(longest_inline, PREFIX_INLINE);
        assert!(spilled > 10, "{spilled}");
        assert_eq!(most_heads_inline, HEADS_INLINE);
        assert!(heads_spilled > 10, "{heads_spilled}");
    }

    /// Keys of two or three kinds, each kind a long prefix of its own
    /// (like a SQL tree's rows and index entries, whose separators share
    /// only their first byte), then a few bytes that differ, then a tail
    /// the kind's keys share (an escape, a timestamp): long runs of equal
    /// heads whose keys share much more than the page's prefix.
    fn kinds_of_keys(rng: &mut Rng, n: usize) -> Vec<Vec<u8>> {
        let kinds = 2 + rng.below(2) as u8;
        let prefix_len = [1, 3, 9, 17][rng.below(4) as usize];
        let tail_len = rng.below(10) as usize;
        let mut set = std::collections::BTreeSet::new();
        while set.len() < n {
            let kind = rng.below(u64::from(kinds)) as u8;
            let mut k = vec![2u8, kind];
            k.extend((0..prefix_len).map(|i| if i % 2 == 0 { 0 } else { 0xff }));
            // Cut short here and there, as a separator is.
            let differing = 1 + rng.below(3) as usize;
            k.extend((0..differing).map(|_| [0u8, 1, 0x80, 0xff][rng.below(4) as usize]));
            if rng.below(3) > 0 {
                k.extend(std::iter::repeat_n(0xff, tail_len));
            }
            set.insert(k);
        }
        set.into_iter().collect()
    }

    #[test]
    fn runs_of_equal_heads_are_searched_by_their_second_heads() {
        let mut rng = Rng(0x0bad_5eed_1234_5678);
        let mut heads = Heads::default();
        let (mut pages_with_runs, mut narrowed) = (0, 0);
        for round in 0..300 {
            let n = 8 + rng.below(80) as usize;
            let ks = kinds_of_keys(&mut rng, n);
            let leaf = round % 3 == 0;
            let buf = page_of(&ks, leaf);
            heads.rebuild(&buf);
            pages_with_runs += usize::from(heads.heads.runs().is_some());
            let kind = if leaf {
                PageType::Leaf
            } else {
                PageType::Internal
            };
            let view = PageView::new(&buf, kind).unwrap();
            let mut ps = probes(&mut rng, &ks);
            // Every key cut at every length, and cut then raised or
            // lowered there: probes that stop or differ inside a run's
            // own prefix.
            for k in ks.iter().step_by(3) {
                for at in 0..=k.len() {
                    ps.push(k[..at].to_vec());
                    if let Some(&b) = k.get(at) {
                        ps.push([&k[..at], &[b.wrapping_add(1)]].concat());
                        ps.push([&k[..at], &[b.wrapping_sub(1)], &[0xff; 3]].concat());
                    }
                }
            }
            for p in ps {
                assert_same_search(&heads, &view, leaf, &ks, &p);
                if let (Some(runs), Some(suffix)) =
                    (heads.heads.runs(), p.strip_prefix(heads.prefix.as_slice()))
                {
                    let hs = heads.heads.as_slice();
                    let h = head(suffix);
                    let lo = hs.partition_point(|&x| x < h);
                    let hi = lo + equal_run(&hs[lo..], h);
                    if hi - lo >= RUN_HEADS_MIN {
                        narrowed += usize::from(matches!(
                            runs.narrow(&view, lo, hi, &p).unwrap(),
                            InRun::Within(from, to) if to - from < hi - lo
                        ));
                    }
                }
            }
        }
        // The second heads were built and did narrow searches.
        assert!(pages_with_runs > 150, "{pages_with_runs}");
        assert!(narrowed > 5_000, "{narrowed}");
    }

    #[test]
    fn a_head_array_spills_to_the_heap_when_full_and_keeps_every_head() {
        let mut a = HeadArray::default();
        for h in 0..HEADS_INLINE as u32 + 5 {
            a.push(h * 3);
            assert_eq!(a.is_inline(), a.len() <= HEADS_INLINE);
            assert!(a.as_slice().iter().copied().eq((0..=h).map(|x| x * 3)));
        }
        assert!(HeadArray::with_capacity(HEADS_INLINE).is_inline());
        assert!(!HeadArray::with_capacity(HEADS_INLINE + 1).is_inline());
    }

    #[test]
    fn the_equal_run_is_measured_exactly_at_every_length() {
        // Runs of every length from 0 to 70, alone, after smaller heads
        // and before larger ones, against a count one by one.
        for len in 0..70 {
            for after in [0, 1, 5, 64] {
                let mut run = vec![7u32; len];
                run.extend((0..after).map(|i| 8 + i));
                let naive = run.iter().take_while(|&&x| x == 7).count();
                assert_eq!(equal_run(&run, 7), naive, "len {len}, after {after}");
                assert_eq!(naive, len);
            }
        }
        assert_eq!(equal_run(&[], 7), 0);
        assert_eq!(equal_run(&[9, 9], 7), 0);
    }

    #[test]
    fn heads_of_the_wrong_page_are_not_used() {
        let mut l = Leaf::default();
        for k in ["a", "b", "c"] {
            l.put(Bytes::from(k), Value::Inline(Bytes::from_static(b"v")));
        }
        let leaf = encode(&Content::Node(Node::Leaf(l)), 9, 512).unwrap();
        let mut heads = Heads::default();
        heads.rebuild(&leaf);
        let view = PageView::new(&leaf, PageType::Leaf).unwrap();
        // Built for a leaf: not used for an internal search.
        assert!(heads.search(&view, PageType::Internal, b"b").is_none());
        assert_eq!(heads.search_leaf(&view, b"b").unwrap(), Ok(1));
        // Keys out of order: no heads, and the plain search still answers.
        let internal = encode(
            &Content::Node(Node::Internal(Internal {
                leftmost: 1,
                entries: vec![(Bytes::from("b"), 2), (Bytes::from("a"), 3)],
            })),
            9,
            512,
        )
        .unwrap();
        heads.rebuild(&internal);
        assert!(heads.is_empty());
        let view = PageView::new(&internal, PageType::Internal).unwrap();
        assert!(heads.search(&view, PageType::Internal, b"b").is_none());
        // A free page has none either; garbage never panics.
        heads.rebuild(&encode(&Content::Free { next: 0 }, 9, 512).unwrap());
        assert!(heads.is_empty());
        let mut rng = Rng(99);
        for _ in 0..2000 {
            let mut buf = leaf.clone();
            for _ in 0..4 {
                let at = rng.below(buf.len() as u64) as usize;
                buf[at] = rng.next() as u8;
            }
            heads.rebuild(&buf);
            if let Ok(view) = PageView::new(&buf, PageType::Leaf) {
                let _ = heads.search_leaf(&view, b"b");
            }
        }
    }
}
