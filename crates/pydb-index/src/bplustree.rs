//! `BPlusTreeIndex`: a B+tree written here whose nodes keep sixteen bytes
//! of every key inline, the log engine's default ordered index and the
//! memory engine's map.
//!
//! # Why another ordered index
//!
//! `std`'s `BTreeMap<Bytes, V>` ([`crate::BTreeIndex`]) stores each key as a
//! `Bytes`: a pointer to bytes in their own allocation. Every comparison on
//! the way down the tree follows that pointer, so a lookup in a million keys
//! risks a cache miss per key compared, and std's nodes are searched
//! linearly, up to 11 keys each. This tree compares integers instead.
//!
//! # Abbreviated keys
//!
//! Each node holds, next to its keys, the *abbreviation* of every key, in
//! three arrays:
//!
//! - `heads`: bytes 0..8 of the key (after the bytes its node skips,
//!   see *Prefix skipping*) read as a big-endian `u64`
//!   ([`key_prefix`]), zero-padded when the key is shorter;
//! - `tails`: bytes 8..16, the same way;
//! - `lens`: the key's length, capped at [`INLINE_KEY_LEN`] + 1.
//!
//! Head order agrees with key order (if `a < b` then
//! `head(a) <= head(b)`), and so does (head, tail) order: comparing heads
//! decides a comparison unless they are equal, then the tails do. When both
//! are equal and both keys are at most [`INLINE_KEY_LEN`] bytes long, the
//! keys are the same 16 zero-padded bytes, so the shorter one is the other
//! cut before some zero bytes and sorts first: the lengths decide. Only a
//! key longer than 16 bytes that ties on its first 16 sends the comparison
//! to the key's own bytes. PostgreSQL sorts with the same trick
//! ("abbreviated keys"); Umbra and LeanStore keep such prefixes in their
//! B-tree nodes.
//!
//! So a lookup of a key of up to 16 bytes reads no key bytes at all, not
//! even to confirm the match at the end: the search in a node reads a few
//! cache lines of contiguous `u64`s, and a hit reads one more line of
//! tails and one of lengths. The first version of this tree kept only the
//! heads; its profile under `readrandom` (16-byte keys) showed about half
//! of `get`'s samples in following a leaf's `Bytes` to its key for the
//! final `memcmp`, a cache miss per lookup that the tails and lengths
//! remove. The arrays are separate ("structure of arrays") so that the
//! search over heads reads eight of them per cache line.
//!
//! # Searching a node
//!
//! A random lookup in a large tree finds almost no node in the CPU cache,
//! so what a lookup costs is how many cache misses it waits for *one after
//! the other*. A binary search is the worst case: each probe's address
//! depends on the comparison before it, so the four lines of a leaf's 32
//! heads (eight of an inner node's 64) arrive one at a time. The search
//! here (`Abbrevs::position`) counts instead, without branches: first the
//! lines whose last head is below the probe (one load per line, none
//! depending on another, so the CPU fetches all the lines at once), then
//! the heads below the probe in the one line where the answer lies (now in
//! cache). A few more instructions than a binary search, and one wait for
//! memory per node instead of three or four. `Abbrevs` is aligned to a
//! cache line so that a line holds exactly [`HEADS_PER_LINE`] heads.
//!
//! For the same reason a leaf keeps its values inline (`[Option<V>; 32]`)
//! rather than in a `Vec`: the value is then next to the heads just read,
//! usually in the same memory page, instead of in a separate allocation
//! somewhere in the heap that costs its own cache miss and, with a large
//! index, its own TLB miss. (Measured with the log engine's `readrandom`;
//! see `docs/benchmarks/logread.md`, "Session 10".)
//!
//! # Prefix skipping
//!
//! Sixteen bytes tell apart random keys, but not keys that share a long
//! prefix. The SQL layer's version keys all start with the same 17 bytes
//! for one table (keyspace, row tag, the escaped table id), so abbreviations
//! of their first 16 bytes would all be equal, and every comparison would
//! go to the keys' bytes: a cache miss per compared key, worse than
//! `BTreeMap`.
//!
//! So each node abbreviates its keys *after* a number of bytes it skips,
//! its `skip`: bytes that every key of the node's range starts with. A
//! node's range is bounded by the separators around it in its parent and
//! further up (its *fences*), and every key between two fences starts with
//! their common prefix (a key that differed within it would sort outside
//! them). So a node may skip that prefix, and a key searched for in the
//! node, which the descent brought there because it lies in the range,
//! starts with it too: it is abbreviated after the same bytes, and nothing
//! checks the skipped bytes. Ranges only narrow (a split cuts one in two;
//! separators are never removed), so a skip never becomes wrong: a split
//! sets each half's skip from its new fences and abbreviates its keys
//! again. The root and the nodes along the tree's left and right edges
//! have an open side and skip nothing. (LeanStore and Graefe's "prefix
//! truncation" keep the fences in the node; here the descent has them.)
//!
//! A descent takes the sought key's abbreviation again only where a node
//! skips more than the one above (`Probe`). Skips are whole multiples of
//! 8 bytes: random keys share fewer than 8 bytes in any range of a tree
//! that fits in memory, so their nodes skip nothing and their descent pays
//! only a comparison per level. (Skipping every shared byte cost the log
//! engine's 16-byte random keys about 100 instructions per lookup, a new
//! abbreviation near the leaves; see `docs/benchmarks/sql-oltp.md`,
//! "Session 16".)
//! `skip` sits beside `keys` (`repr(C)`), whose length every search reads,
//! so it costs no extra cache line.
//!
//! # A node's own prefix
//!
//! The root and the inner nodes along the tree's open edges share nothing
//! with their range, yet their separators may all start alike: in the
//! memory engine, the root's separators are one SQL table's row keys,
//! equal in their first 16 bytes, so every head in the node was equal and
//! each point select binary-searched the run with whole key comparisons
//! (six `memcmp`s behind pointers, and as many mispredicted branches,
//! at the root alone). So an inner node also skips the whole heads (up to
//! [`OWN_HEADS`]) that all its separators share after the bytes its range
//! shares: its *own prefix*, kept in the node (`Inner::own`, in the cache
//! line that holds `skip`). Its range does not guarantee that a sought key
//! starts with it, so the search first compares the key's bytes there
//! with it (`Inner::own_order`, one or two integer comparisons): a key
//! below it sorts below every separator and goes to the first child, a
//! key above it to the last, and only a key that starts with it is
//! abbreviated after it and searched as usual. A separator inserted
//! outside the own prefix shortens it (the node abbreviates its keys
//! again); a split sets each half's own prefix afresh. Leaves have none:
//! a lookup reaches a leaf on an open edge in one of a few thousand.
//!
//! # The structure
//!
//! ```text
//!                 inner  [ a(k40) ]             separators: abbreviations + keys
//!                       /          \
//!   leaf [k03 k17 k25 k31] ──► [k40 k52 k66] ──► NIL   leaves: abbreviations, keys, values
//! ```
//!
//! - **Leaves** hold up to [`LEAF_CAPACITY`] entries in key order and link
//!   to the next leaf, so a range scan walks the leaves without going back
//!   up the tree.
//! - **Inner nodes** hold up to [`INNER_CAPACITY`] separators and one more
//!   child. Every key under `children[i]` is below `keys[i]`, and every key
//!   under `children[i + 1]` is at or above it: a search takes the child
//!   whose index is the number of separators at or below its key.
//! - Nodes live in two arenas and name each other by `u32` index, as in
//!   the skip list: no `Box` per node. An arena (`arena.rs`) grows in
//!   chunks that never move, so a node is written once, not copied at
//!   every doubling, and each chunk is advised for huge pages: a random
//!   lookup in a large tree would otherwise miss the TLB at its leaf, a
//!   page-table walk that costs more than the search in the leaf (see
//!   `arena.rs`, *TLB reach* and *Why chunks*).
//!
//! A full leaf splits in two halves and hands its parent the first key of
//! the right half as a new separator; a full parent splits the same way and
//! the split can climb to the root, which is the only way the tree grows
//! taller, so every leaf is at the same depth. One exception to halving:
//! an insert past the last key of the right-most leaf (ascending keys, as
//! in `fillseq`) starts a new leaf and leaves the old one full, as
//! PostgreSQL's and SQLite's B-trees do, so a sequential fill packs leaves.
//! An [`Inserter`] does the same in any leaf when a key goes right after
//! the one inserted before it (an ascending run in the middle of the tree:
//! a SQL table's new rows, with the table's index entries after them): the
//! leaf is cut where the key goes, the left part keeping every key below
//! it (at least half), so the run packs its leaves too.
//!
//! # Sorted batches
//!
//! An insert descends from the root: at every level a search among the
//! node's separators, and on the tree's open edges, where nothing is
//! skipped, a binary search with whole key comparisons. A batch of keys
//! in ascending order (the memory engine's write batch: a commit's
//! version keys, sorted) lands again and again in the same leaf or the
//! next, so that descent is mostly repeated work. [`Inserter`] remembers
//! the last insert's path and starts the next one from the deepest node
//! on it whose range (its fences, see *Prefix skipping*) holds the key:
//! two key comparisons when that is the same leaf, a climb of a level or
//! two otherwise. A descent from a node whose range holds the key ends in
//! the leaf a descent from the root ends in, so the result does not depend
//! on the order of the keys, only the cost does. A split changes the
//! nodes on the path, so the next insert after one starts from the root.
//! [`Index::insert`] is the same descent, from the root.
//!
//! # Deletes do not rebalance
//!
//! A remove takes the entry out of its leaf and stops. Leaves are never
//! merged and separators never removed, so a leaf can end up with few or no
//! entries; searches stay correct (separators still bound their children)
//! and scans skip empty leaves. A later insert into the same key range
//! reuses the room. PostgreSQL's nbtree also leaves merging out of the
//! write path (it reclaims only empty pages, in VACUUM). The cost is memory
//! after mass deletes: [`Index::memory_bytes`] keeps counting the leaves,
//! and [`Index::clear`] is what gives it all back.
//!
//! # Invariants (checked by [`BPlusTreeIndex::check_invariants`])
//!
//! 1. Every leaf is at depth `height`; the leaves, followed through `next`
//!    from leaf 0 (always the left-most), hold every entry in strictly
//!    ascending key order.
//! 2. Each separator bounds its children as said above.
//! 3. Every stored abbreviation is the abbreviation of the key beside it,
//!    after the node's `skip`; no leaf skips more bytes than the fences of
//!    its range share, and no inner node more than those (`shared`) and
//!    its own prefix, which every separator in it starts with.

use std::cmp::Ordering;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};

use bytes::Bytes;

use crate::arena::Arena;
use crate::{Index, RangeIter, key_prefix};

/// Entries per leaf. 32 heads are four cache lines, fetched together by
/// the search (see *Searching a node*).
pub const LEAF_CAPACITY: usize = 32;

/// Separators per inner node (and one more child). Wider than a leaf:
/// an inner node holds no values, and a wider fan-out means fewer levels.
pub const INNER_CAPACITY: usize = 64;

/// Keys up to this long are ordered and matched by their abbreviation
/// alone: a lookup of such a key never reads the key's own bytes.
pub const INLINE_KEY_LEN: usize = 16;

/// Heads per 64-byte cache line: the unit of [`Abbrevs::position`]'s
/// first count. Both capacities are multiples of it.
const HEADS_PER_LINE: usize = 8;

const _: () = assert!(
    LEAF_CAPACITY.is_multiple_of(HEADS_PER_LINE) && INNER_CAPACITY.is_multiple_of(HEADS_PER_LINE)
);

/// The deepest a tree can be: inner nodes never shrink and split in halves
/// of at least `INNER_CAPACITY / 2` separators, so `u32` addressing runs
/// out long before 12 levels of 33 children are filled.
const MAX_DEPTH: usize = 12;

/// Nodes skip prefixes in steps of this many bytes (a head): random keys
/// share less than 8 bytes in any range, so their nodes skip nothing and
/// a descent never takes their abbreviation again (see *Prefix
/// skipping*), while the 17 bytes a SQL table's keys share are skipped
/// 16 at a time.
const SKIP_UNIT: usize = 8;

/// At most this many heads of an inner node's own prefix are skipped
/// (see *A node's own prefix*): the 16 bytes a SQL table's keys share
/// after the keyspace.
const OWN_HEADS: usize = 2;

/// "No node": the end of the leaf chain.
const NIL: u32 = u32::MAX;

/// A key's abbreviation (see the module docs): its first 16 bytes as two
/// big-endian numbers, zero-padded, and its length, capped at
/// `INLINE_KEY_LEN + 1` ("longer than inline").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Abbrev {
    head: u64,
    tail: u64,
    len: u8,
}

impl Abbrev {
    /// The abbreviation of `key` in a node that skips `skip` bytes (see
    /// *Prefix skipping*): of what follows them.
    fn after(key: &[u8], skip: u32) -> Self {
        Self::of(key.get(skip as usize..).unwrap_or_default())
    }

    fn of(key: &[u8]) -> Self {
        Self {
            head: key_prefix(key),
            tail: key.get(8..).map_or(0, key_prefix),
            // At most INLINE_KEY_LEN + 1 = 17: fits a u8.
            len: key.len().min(INLINE_KEY_LEN + 1) as u8,
        }
    }

    /// Whether the abbreviation is the whole key.
    fn is_whole(self) -> bool {
        usize::from(self.len) <= INLINE_KEY_LEN
    }
}

/// The abbreviations of a node's keys, one array per field ("structure of
/// arrays"), so that a binary search over the heads reads only heads:
/// eight per cache line.
///
/// Aligned to a cache line, so that each line holds [`HEADS_PER_LINE`]
/// heads exactly (the nodes, and so their arenas, take the alignment).
#[derive(Debug, Clone)]
#[repr(C, align(64))]
struct Abbrevs<const N: usize> {
    heads: [u64; N],
    tails: [u64; N],
    lens: [u8; N],
}

impl<const N: usize> Abbrevs<N> {
    fn new() -> Self {
        Self {
            heads: [0; N],
            tails: [0; N],
            lens: [0; N],
        }
    }

    fn get(&self, i: usize) -> Abbrev {
        Abbrev {
            head: self.heads[i],
            tail: self.tails[i],
            len: self.lens[i],
        }
    }

    fn set(&mut self, i: usize, abbrev: Abbrev) {
        self.heads[i] = abbrev.head;
        self.tails[i] = abbrev.tail;
        self.lens[i] = abbrev.len;
    }

    /// Shifts slots `pos..len` one to the right and puts `abbrev` at `pos`.
    fn insert_at(&mut self, pos: usize, len: usize, abbrev: Abbrev) {
        self.heads.copy_within(pos..len, pos + 1);
        self.tails.copy_within(pos..len, pos + 1);
        self.lens.copy_within(pos..len, pos + 1);
        self.set(pos, abbrev);
    }

    /// Abbreviates `keys` again after `skip` bytes (a split narrowed the
    /// node's range, see *Prefix skipping*).
    fn recompute(&mut self, keys: &[Bytes], skip: u32) {
        for (i, key) in keys.iter().enumerate() {
            self.set(i, Abbrev::after(key, skip));
        }
    }

    /// Shifts slots `pos + 1..len` one to the left, over `pos`.
    fn remove_at(&mut self, pos: usize, len: usize) {
        self.heads.copy_within(pos + 1..len, pos);
        self.tails.copy_within(pos + 1..len, pos);
        self.lens.copy_within(pos + 1..len, pos);
    }

    /// How the key in slot `i` (`stored`) compares with the key searched
    /// for. The heads decide almost always; the tails next; then, if both
    /// keys are inline, their lengths (of two keys equal in their first 16
    /// zero-padded bytes and no longer than 16, the shorter is a prefix of
    /// the other followed by zeros, so it sorts first); only a long key
    /// makes this read `stored`'s bytes.
    fn compare(&self, i: usize, stored: &Bytes, probe: Abbrev, key: &[u8]) -> Ordering {
        self.heads[i].cmp(&probe.head).then_with(|| {
            self.tails[i].cmp(&probe.tail).then_with(|| {
                let len = self.lens[i];
                if usize::from(len) <= INLINE_KEY_LEN && probe.is_whole() {
                    len.cmp(&probe.len)
                } else {
                    stored.as_ref().cmp(key)
                }
            })
        })
    }

    /// How many of the first `keys.len()` slots sort below `key` (or, if
    /// `past_equal`, at or below it).
    ///
    /// Not a binary search: that is a chain of dependent loads, each probe
    /// waiting for the one before, and a lookup's nodes are rarely in the
    /// CPU cache. Instead two branch-free counts whose loads do not depend
    /// on each other, so that the CPU fetches their cache lines at once
    /// (see *Searching a node* in the module docs): first the lines (of
    /// [`HEADS_PER_LINE`] heads) whose last head is below the probe's, then
    /// the heads below it in the one line where the answer lies. Slots whose
    /// head equals the probe's are then stepped over with the full
    /// comparison (tails, lengths, key bytes); for distinct heads there are
    /// none, or one: the key itself. A longer run is binary-searched.
    fn position(&self, keys: &[Bytes], probe: Abbrev, key: &[u8], past_equal: bool) -> usize {
        let lines = const {
            assert!(N > 0 && N.is_multiple_of(HEADS_PER_LINE));
            N / HEADS_PER_LINE
        };
        let n = keys.len();
        // Lines wholly below the probe. They form a prefix, as heads are
        // sorted; a line that reaches past `n` is never counted whole.
        let mut line = 0;
        for l in 0..lines {
            let last = l * HEADS_PER_LINE + HEADS_PER_LINE - 1;
            line += usize::from(last < n && self.heads[last] < probe.head);
        }
        // The answer lies in line `line`; if every line is below, counting
        // in the last one gives its end.
        let start = line.min(lines - 1) * HEADS_PER_LINE;
        let mut pos = start;
        for i in start..start + HEADS_PER_LINE {
            pos += usize::from(i < n && self.heads[i] < probe.head);
        }
        let go_right = |i: usize| match self.compare(i, &keys[i], probe, key) {
            Ordering::Less => true,
            Ordering::Equal => past_equal,
            Ordering::Greater => false,
        };
        if pos < n && self.heads[pos] == probe.head {
            if pos + 1 < n && self.heads[pos + 1] == probe.head {
                // A run of equal heads: keys that share more bytes than
                // the node skips, as in the nodes along the tree's open
                // edges (see *Prefix skipping*). A binary search over the
                // run with whole comparisons, rather than a walk comparing
                // each.
                let run = self.heads[pos..n].partition_point(|&h| h == probe.head);
                let (mut low, mut high) = (pos, pos + run);
                while low < high {
                    let mid = low + (high - low) / 2;
                    if go_right(mid) {
                        low = mid + 1;
                    } else {
                        high = mid;
                    }
                }
                return low;
            }
            // One equal head: the key itself, or a key sharing its head.
            pos += usize::from(go_right(pos));
        }
        pos
    }

    /// Whether slot `pos` (of `keys`) holds exactly `key`.
    fn matches(&self, keys: &[Bytes], pos: usize, probe: Abbrev, key: &[u8]) -> bool {
        keys.get(pos)
            .is_some_and(|stored| self.compare(pos, stored, probe, key) == Ordering::Equal)
    }
}

/// A leaf: up to [`LEAF_CAPACITY`] entries in key order.
///
/// `repr(C)` keeps `skip` beside `keys`, whose length every search reads:
/// the descent learns the skip without loading another cache line.
#[derive(Debug, Clone)]
#[repr(C)]
struct Leaf<V> {
    /// `abbrevs.get(i)` is `Abbrev::after(&keys[i], skip)`; slots past
    /// `keys.len()` are garbage.
    abbrevs: Abbrevs<LEAF_CAPACITY>,
    keys: Vec<Bytes>,
    /// Bytes every key of the leaf's range starts with, left out of its
    /// abbreviations (see *Prefix skipping*).
    skip: u32,
    /// `values[i]` is `keys[i]`'s value for `i < keys.len()`, `None` past
    /// it. Inline, not a `Vec`: the value a lookup returns then lies in the
    /// leaf it searched, usually in the same memory page, instead of in an
    /// allocation of its own elsewhere in the heap (see *Searching a node*
    /// in the module docs).
    values: [Option<V>; LEAF_CAPACITY],
    /// The leaf to the right, or NIL.
    next: u32,
}

impl<V> Leaf<V> {
    fn new() -> Self {
        Self {
            abbrevs: Abbrevs::new(),
            keys: Vec::with_capacity(LEAF_CAPACITY),
            skip: 0,
            values: std::array::from_fn(|_| None),
            next: NIL,
        }
    }

    fn len(&self) -> usize {
        self.keys.len()
    }

    /// The slot of the first key not below `key` (if `past_equal`, above).
    fn position(&self, probe: Abbrev, key: &[u8], past_equal: bool) -> usize {
        self.abbrevs.position(&self.keys, probe, key, past_equal)
    }

    /// Skips `skip` bytes from now on (at least as many as before).
    fn reskip(&mut self, skip: u32) {
        if skip != self.skip {
            self.skip = skip;
            self.abbrevs.recompute(&self.keys, skip);
        }
    }

    /// Inserts at `pos`; the leaf must not be full.
    fn insert_at(&mut self, pos: usize, abbrev: Abbrev, key: Bytes, value: V) {
        let len = self.len();
        self.abbrevs.insert_at(pos, len, abbrev);
        self.keys.insert(pos, key);
        // Slot `len` is `None`; the rotation brings it to `pos`. An append
        // (ascending keys) has nothing to rotate, and skips the call.
        if pos < len {
            self.values[pos..=len].rotate_right(1);
        }
        self.values[pos] = Some(value);
    }
}

/// An inner node: separators and children (see the module docs).
/// `repr(C)` for the reason given at [`Leaf`]: `shared` and `own` follow
/// `skip` in the same cache line.
#[derive(Debug, Clone)]
#[repr(C)]
struct Inner {
    /// `abbrevs.get(i)` is `Abbrev::after(&keys[i], skip)`.
    abbrevs: Abbrevs<INNER_CAPACITY>,
    keys: Vec<Bytes>,
    /// Bytes left out of the abbreviations: the `shared` bytes of the
    /// node's range, then its own prefix (see *A node's own prefix*).
    skip: u32,
    /// Bytes every key of the node's range starts with (a leaf's `skip`):
    /// a sought key the descent brought here starts with them too.
    shared: u32,
    /// The node's own prefix: bytes `shared..skip` of every separator, as
    /// big-endian heads (the first `(skip - shared) / SKIP_UNIT` used).
    /// Nothing guarantees that a sought key starts with them, so the
    /// search compares them with it first (`Inner::own_order`).
    own: [u64; OWN_HEADS],
    /// `keys.len() + 1` of them are used: leaf ids one level above the
    /// leaves, inner ids higher up.
    children: [u32; INNER_CAPACITY + 1],
}

impl Inner {
    fn new() -> Self {
        Self {
            abbrevs: Abbrevs::new(),
            keys: Vec::with_capacity(INNER_CAPACITY),
            skip: 0,
            shared: 0,
            own: [0; OWN_HEADS],
            children: [NIL; INNER_CAPACITY + 1],
        }
    }

    /// The index of the child whose subtree holds `key` (which lies in the
    /// node's range); `probe` is `key`'s abbreviation as the node above
    /// took it. A key outside the node's own prefix sorts below or above
    /// every separator, and goes to the first or the last child without a
    /// search.
    #[inline(always)]
    fn child_index(&self, probe: &mut Probe, key: &[u8]) -> usize {
        if self.skip != self.shared {
            match self.own_order(key) {
                Ordering::Less => return 0,
                Ordering::Greater => return self.keys.len(),
                Ordering::Equal => {}
            }
        }
        self.abbrevs
            .position(&self.keys, probe.at(self.skip, key), key, true)
    }

    /// How `key` (which starts with the node's `shared` bytes) compares
    /// with the node's own prefix: `Equal` when it starts with it, and
    /// otherwise as it compares with every separator. A key that is a
    /// proper prefix of the own prefix sorts below it.
    fn own_order(&self, key: &[u8]) -> Ordering {
        let heads = self.skip.saturating_sub(self.shared) as usize / SKIP_UNIT;
        let mut at = self.shared as usize;
        for &head in self.own.iter().take(heads) {
            let rest = key.get(at..).unwrap_or_default();
            match key_prefix(rest).cmp(&head) {
                Ordering::Equal if rest.len() < SKIP_UNIT => return Ordering::Less,
                Ordering::Equal => at += SKIP_UNIT,
                order => return order,
            }
        }
        Ordering::Equal
    }

    /// Sets the node's skip for a range whose fences share `shared` bytes:
    /// those, then as many whole heads (up to [`OWN_HEADS`]) as every
    /// separator shares after them (see *A node's own prefix*), and
    /// abbreviates the separators again.
    fn settle(&mut self, shared: u32) {
        let from = shared as usize;
        let first = self
            .keys
            .first()
            .and_then(|k| k.get(from..))
            .unwrap_or_default();
        let common = self.keys.iter().fold(first.len(), |n, key| {
            let rest = key.get(from..).unwrap_or_default();
            first[..n]
                .iter()
                .zip(rest)
                .take_while(|(a, b)| a == b)
                .count()
        });
        let heads = (common / SKIP_UNIT).min(OWN_HEADS);
        self.own = [0; OWN_HEADS];
        for (h, head) in self.own.iter_mut().take(heads).enumerate() {
            *head = key_prefix(&first[h * SKIP_UNIT..]);
        }
        self.shared = shared;
        // At most OWN_HEADS * SKIP_UNIT (16) more bytes: no overflow.
        self.skip = shared + (heads * SKIP_UNIT) as u32;
        self.abbrevs.recompute(&self.keys, self.skip);
    }

    /// Inserts separator `key` (which lies in the node's range) at `pos`,
    /// with `child` to its right. A key outside the node's own prefix
    /// shortens it: the node settles again (a split below the tree's
    /// open edges, rarely).
    fn insert_at(&mut self, pos: usize, key: Bytes, child: u32) {
        let outside = self.own_order(&key) != Ordering::Equal;
        let len = self.keys.len();
        self.abbrevs
            .insert_at(pos, len, Abbrev::after(&key, self.skip));
        self.keys.insert(pos, key);
        self.children.copy_within(pos + 1..len + 1, pos + 2);
        self.children[pos + 1] = child;
        if outside {
            self.settle(self.shared);
        }
    }
}

/// A sought key's abbreviation for the skip of the node it was last taken
/// for: taken again only when a node on the way down skips more bytes.
#[derive(Clone, Copy)]
struct Probe {
    skip: u32,
    abbrev: Abbrev,
}

impl Probe {
    fn new(key: &[u8]) -> Self {
        Self {
            skip: 0,
            abbrev: Abbrev::of(key),
        }
    }

    /// `key`'s abbreviation in a node that skips `skip` bytes. Inlined:
    /// in most nodes it is one comparison.
    #[inline(always)]
    fn at(&mut self, skip: u32, key: &[u8]) -> Abbrev {
        if skip != self.skip {
            self.retake(skip, key);
        }
        self.abbrev
    }

    #[cold]
    #[inline(never)]
    fn retake(&mut self, skip: u32, key: &[u8]) {
        *self = Self {
            skip,
            abbrev: Abbrev::after(key, skip),
        };
    }
}

/// The separators that bound the range of the node reached by `path`
/// (each step an inner node and the child taken): the nearest on each
/// side, `None` where the range is open.
fn fences<'a>(
    inners: &'a Arena<Inner>,
    path: &[(u32, usize)],
) -> (Option<&'a Bytes>, Option<&'a Bytes>) {
    let (mut low, mut high) = (None, None);
    for &(node, i) in path.iter().rev() {
        let keys = &inners[node as usize].keys;
        if low.is_none() && i > 0 {
            low = keys.get(i - 1);
        }
        if high.is_none() {
            high = keys.get(i);
        }
        if low.is_some() && high.is_some() {
            break;
        }
    }
    (low, high)
}

/// How many bytes a node whose range runs from `low` up to `high` skips:
/// their common prefix, which every key between them starts with (a key
/// `k` with `low <= k < high` that differed from `low` within the prefix
/// would sort below `low` or above `high`), rounded down to whole heads
/// ([`SKIP_UNIT`]); 0 if either side is open.
fn common_prefix(low: Option<&Bytes>, high: Option<&Bytes>) -> u32 {
    let (Some(low), Some(high)) = (low, high) else {
        return 0;
    };
    let n = low
        .iter()
        .zip(high.iter())
        .take_while(|(a, b)| a == b)
        .count();
    // A smaller skip is always correct, so a huge prefix is cut, not wrapped.
    u32::try_from(n / SKIP_UNIT * SKIP_UNIT).unwrap_or(0)
}

/// A position in the leaf chain; normalized positions never sit past the
/// end of a leaf (they move to the next non-empty leaf, or to NIL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cursor {
    leaf: u32,
    pos: usize,
}

/// An ordered index on a B+tree with inline key abbreviations (see the module
/// docs).
#[derive(Debug, Clone)]
pub struct BPlusTreeIndex<V> {
    /// Leaf 0 is always the left-most leaf.
    leaves: Arena<Leaf<V>>,
    inners: Arena<Inner>,
    /// A leaf id if `height` is 0, else an inner id.
    root: u32,
    /// Inner levels above the leaves.
    height: usize,
    len: usize,
    /// Sum of the live keys' lengths.
    key_bytes: usize,
    /// The tree's shape: a number taken afresh (see [`next_shape`])
    /// whenever a node's range may change (a split, a clear), so that a
    /// [`LeafHint`] of an older shape is never trusted.
    shape: u64,
}

impl<V> Default for BPlusTreeIndex<V> {
    fn default() -> Self {
        Self {
            leaves: Arena::with(Leaf::new()),
            inners: Arena::default(),
            root: 0,
            height: 0,
            len: 0,
            key_bytes: 0,
            shape: next_shape(),
        }
    }
}

/// A number no tree's shape has had in this process (never 0, which a
/// fresh [`LeafHint`] holds). Process-wide rather than per tree: a clone
/// keeps its original's shape, which is right (same nodes, same ranges)
/// until either changes, and then that one takes a number the other can
/// never have.
fn next_shape() -> u64 {
    static SHAPES: AtomicU64 = AtomicU64::new(1);
    SHAPES.fetch_add(1, AtomicOrdering::Relaxed)
}

/// Where [`BPlusTreeIndex::first_in_hinted`] found the leaf of its last
/// key: the leaf and the separators that bound its range, valid while
/// the tree keeps the shape it had then.
///
/// A run of point reads of nearby keys (a SQL INSERT's uniqueness reads,
/// one per row, ascending) lands in one leaf again and again; with a hint
/// a read whose key lies between the fences starts at that leaf instead
/// of descending from the root. Ranges change only by splits (a remove
/// takes no separator out, see *Deletes do not rebalance*), and every
/// split gives the tree a new shape, so a hint of the current shape
/// names the one leaf whose range holds any key between its fences.
#[derive(Debug, Clone, Default)]
pub struct LeafHint {
    shape: u64,
    leaf: u32,
    /// The leaf's range, `low <= key < high`; `None`: open on that side.
    low: Option<Bytes>,
    high: Option<Bytes>,
}

impl LeafHint {
    /// Whether the hint, taken in a tree of shape `shape`, names the leaf
    /// whose range holds `key`.
    fn holds(&self, shape: u64, key: &[u8]) -> bool {
        self.shape == shape
            && self.low.as_ref().is_none_or(|low| low[..] <= *key)
            && self.high.as_ref().is_none_or(|high| *key < high[..])
    }
}

/// `n` as an arena index.
///
/// # Panics
///
/// Past `u32::MAX - 1` nodes (billions of keys).
fn arena_index(n: usize) -> u32 {
    match u32::try_from(n) {
        Ok(i) if i != NIL => i,
        _ => panic!("BPlusTreeIndex is full: u32 addressing holds at most {NIL} nodes"),
    }
}

impl<V> BPlusTreeIndex<V> {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Inner levels above the leaves (0 while everything fits in one leaf).
    pub fn height(&self) -> usize {
        self.height
    }

    /// The first entry whose key lies between `start` and `end`, if any.
    ///
    /// One descent, for `start`, where [`Index::range`] makes two (one per
    /// bound) and boxes an iterator. The found key is checked against `end`
    /// by its abbreviation when `end` shares the prefix its leaf skips (it
    /// does when `start` and `end` agree that far, as the bounds of a point
    /// read do): a point read then reads no key bytes at all.
    pub fn first_in(&self, start: Bound<&[u8]>, end: Bound<&[u8]>) -> Option<(&Bytes, &V)> {
        self.first_in_from(start, end, |s| self.find_leaf(s))
    }

    /// [`BPlusTreeIndex::first_in`], starting at the leaf `hint` names
    /// when its range holds the start bound and the tree has the shape it
    /// had when the hint was taken; otherwise descending from the root
    /// and taking the hint afresh. The same entry either way.
    pub fn first_in_hinted(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        hint: &mut LeafHint,
    ) -> Option<(&Bytes, &V)> {
        self.first_in_from(start, end, |s| {
            if !hint.holds(self.shape, s) {
                *hint = self.find_leaf_fenced(s);
            }
            let leaf = hint.leaf;
            let skip = self.leaves.get(leaf as usize).map_or(0, |l| l.skip);
            (leaf, Abbrev::after(s, skip))
        })
    }

    /// [`BPlusTreeIndex::first_in`] with the start bound's leaf (and its
    /// abbreviation there) found by `find`.
    #[inline(always)]
    fn first_in_from(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        find: impl FnOnce(&[u8]) -> (u32, Abbrev),
    ) -> Option<(&Bytes, &V)> {
        let (cursor, sought) = match start {
            Bound::Included(s) | Bound::Excluded(s) => {
                let (leaf, probe) = find(s);
                let past_equal = matches!(start, Bound::Excluded(_));
                let pos = self.leaves[leaf as usize].position(probe, s, past_equal);
                (self.normalize(Cursor { leaf, pos }), Some((leaf, s)))
            }
            Bound::Unbounded => (self.normalize(Cursor { leaf: 0, pos: 0 }), None),
        };
        let leaf = self.leaves.get(cursor.leaf as usize)?;
        let key = leaf.keys.get(cursor.pos)?;
        let value = leaf.values.get(cursor.pos)?.as_ref()?;
        let (e, included) = match end {
            Bound::Included(e) => (e, true),
            Bound::Excluded(e) => (e, false),
            Bound::Unbounded => return Some((key, value)),
        };
        // `s` lies in the range of the leaf it was sought in, so it starts
        // with the bytes that leaf skips; if `e` starts with them too, the
        // abbreviations compare the rest.
        let skipped = leaf.skip as usize;
        let order = match sought {
            Some((id, s))
                if id == cursor.leaf
                    && s.get(..skipped)
                        .is_some_and(|p| e.get(..skipped) == Some(p)) =>
            {
                let probe = Abbrev::after(e, leaf.skip);
                leaf.abbrevs.compare(cursor.pos, key, probe, e)
            }
            _ => key.as_ref().cmp(e),
        };
        (order == Ordering::Less || (included && order == Ordering::Equal)).then_some((key, value))
    }

    /// The leaf whose key range holds `key`, and `key`'s abbreviation there.
    fn find_leaf(&self, key: &[u8]) -> (u32, Abbrev) {
        let mut probe = Probe::new(key);
        let mut node = self.root;
        for _ in 0..self.height {
            let inner = &self.inners[node as usize];
            node = inner.children[inner.child_index(&mut probe, key)];
        }
        (node, probe.at(self.leaves[node as usize].skip, key))
    }

    /// The leaf whose key range holds `key`, as a hint: with the
    /// separators that bound its range (the nearest on each side on the
    /// way down) and the tree's shape.
    fn find_leaf_fenced(&self, key: &[u8]) -> LeafHint {
        let mut probe = Probe::new(key);
        let mut node = self.root;
        let (mut low, mut high) = (None, None);
        for _ in 0..self.height {
            let inner = &self.inners[node as usize];
            let i = inner.child_index(&mut probe, key);
            if let Some(separator) = i.checked_sub(1).and_then(|j| inner.keys.get(j)) {
                low = Some(separator);
            }
            if let Some(separator) = inner.keys.get(i) {
                high = Some(separator);
            }
            node = inner.children[i];
        }
        LeafHint {
            shape: self.shape,
            leaf: node,
            low: low.cloned(),
            high: high.cloned(),
        }
    }

    /// The entries from `start` to `end` in key order: [`Index::range`]
    /// without the box, so that a caller that knows the tree's type (the
    /// memory engine's scans) gets an iterator the compiler can inline.
    pub fn range_of<'a>(
        &'a self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
    ) -> impl Iterator<Item = (&'a Bytes, &'a V)> + 'a {
        // As in the skip list: seek the first entry in the range and the
        // first one past it, then walk the leaves between them.
        let first = match start {
            Bound::Included(s) => self.seek(s, false),
            Bound::Excluded(s) => self.seek(s, true),
            Bound::Unbounded => self.normalize(Cursor { leaf: 0, pos: 0 }),
        };
        let end_cursor = Cursor { leaf: NIL, pos: 0 };
        let (stop, first_in_range) = match (end, self.entry(first)) {
            (_, None) => (end_cursor, false),
            (Bound::Included(e), Some((k, _))) => (self.seek(e, true), k.as_ref() <= e),
            (Bound::Excluded(e), Some((k, _))) => (self.seek(e, false), k.as_ref() < e),
            (Bound::Unbounded, Some(_)) => (end_cursor, true),
        };
        // An empty or inverted range: `first` lies at or past the end.
        let (next, stop) = if first_in_range {
            (first, stop)
        } else {
            (end_cursor, end_cursor)
        };
        Range::new(self, next, stop)
    }

    /// Moves `cursor` off the end of its leaf, past empty leaves.
    fn normalize(&self, mut cursor: Cursor) -> Cursor {
        while let Some(leaf) = self.leaves.get(cursor.leaf as usize) {
            if cursor.pos < leaf.len() {
                break;
            }
            cursor = Cursor {
                leaf: leaf.next,
                pos: 0,
            };
        }
        cursor
    }

    /// The first entry whose key is not below `key` (if `past_equal`, above
    /// it).
    fn seek(&self, key: &[u8], past_equal: bool) -> Cursor {
        let (leaf, probe) = self.find_leaf(key);
        let pos = self.leaves[leaf as usize].position(probe, key, past_equal);
        self.normalize(Cursor { leaf, pos })
    }

    fn entry(&self, cursor: Cursor) -> Option<(&Bytes, &V)> {
        let leaf = self.leaves.get(cursor.leaf as usize)?;
        Some((
            leaf.keys.get(cursor.pos)?,
            leaf.values.get(cursor.pos)?.as_ref()?,
        ))
    }

    /// Splits full leaf `id`, reached by `path`, while inserting the entry
    /// at `pos` (`abbrev` is its key's in the leaf); returns the separator
    /// and the new right leaf for the parent. `appending`: the insert
    /// before this one put its key right before `pos` in this leaf (see
    /// [`Inserter`]).
    #[allow(clippy::too_many_arguments)]
    fn split_leaf(
        &mut self,
        id: u32,
        path: &[(u32, usize)],
        pos: usize,
        abbrev: Abbrev,
        key: Bytes,
        value: V,
        appending: bool,
    ) -> (Bytes, u32) {
        let right_id = arena_index(self.leaves.len());
        // Every split passes here: the tree's ranges change.
        self.shape = next_shape();
        let (low, high) = fences(&self.inners, path);
        let left = &mut self.leaves[id as usize];
        // Appending past the right-most key, or the next key of an
        // ascending run: cut where the key goes, so that the left leaf
        // keeps every key below it (at least half of them; the rest of a
        // run will fill the right one).
        let run = (pos == LEAF_CAPACITY && left.next == NIL) || appending;
        let mid = if run {
            pos.max(LEAF_CAPACITY / 2)
        } else {
            LEAF_CAPACITY / 2
        };
        let mut right = Leaf::new();
        right.skip = left.skip;
        let moved = LEAF_CAPACITY - mid;
        for i in 0..moved {
            right.abbrevs.set(i, left.abbrevs.get(mid + i));
        }
        right.keys.extend(left.keys.drain(mid..));
        for (to, from) in right.values.iter_mut().zip(&mut left.values[mid..]) {
            *to = from.take();
        }
        right.next = left.next;
        left.next = right_id;
        if pos < mid {
            left.insert_at(pos, abbrev, key, value);
        } else {
            right.insert_at(pos - mid, abbrev, key, value);
        }
        let separator = right.keys[0].clone();
        // Each half's range is narrower than the whole's: it may skip more.
        left.reskip(common_prefix(low, Some(&separator)));
        right.reskip(common_prefix(Some(&separator), high));
        self.leaves.push(right);
        (separator, right_id)
    }

    /// Splits full inner node `id`, reached by `path`, while inserting
    /// separator `key` at `pos` with `child` to its right; returns the
    /// separator pushed up and the new right node.
    fn split_inner(
        &mut self,
        id: u32,
        path: &[(u32, usize)],
        pos: usize,
        key: Bytes,
        child: u32,
    ) -> (Bytes, u32) {
        let right_id = arena_index(self.inners.len());
        // Copies (reference counts), as the node is about to change.
        let (low, high) = fences(&self.inners, path);
        let (low, high) = (low.cloned(), high.cloned());
        let skips = |up: &Bytes| {
            (
                common_prefix(low.as_ref(), Some(up)),
                common_prefix(Some(up), high.as_ref()),
            )
        };
        let node = &mut self.inners[id as usize];
        // Lay out the INNER_CAPACITY + 1 separators in temporaries, then
        // cut; each half is abbreviated again when it settles.
        let mut keys = std::mem::take(&mut node.keys);
        keys.insert(pos, key);
        let mut children = node.children.to_vec();
        children.insert(pos + 1, child);
        let total = keys.len();
        let mid = total / 2;

        // Left keeps separators ..mid and children ..=mid; separator `mid`
        // goes up; the right node takes the rest.
        let mut right = Inner::new();
        let right_len = total - mid - 1;
        right.keys.extend(keys.drain(mid + 1..));
        right.children[..=right_len].copy_from_slice(&children[mid + 1..=total]);
        let up_key = keys.pop().unwrap_or_default();

        keys.shrink_to(INNER_CAPACITY);
        node.keys = keys;
        node.children[..=mid].copy_from_slice(&children[..=mid]);
        node.children[mid + 1..].fill(NIL);
        // As in `split_leaf`: each half's range shares more, and its own
        // prefix may be longer.
        let (left_skip, right_skip) = skips(&up_key);
        node.settle(left_skip);
        right.settle(right_skip);
        self.inners.push(right);
        (up_key, right_id)
    }

    /// Checks the invariants in the module docs; O(n), for tests.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut leaves_seen = Vec::new();
        self.check_node(self.root, self.height, None, None, &mut leaves_seen)?;
        // The chain from leaf 0 visits the leaves left to right.
        let mut chain = Vec::new();
        let mut leaf = 0u32;
        while leaf != NIL {
            chain.push(leaf);
            if chain.len() > self.leaves.len() {
                return Err("the leaf chain has a cycle".into());
            }
            leaf = self
                .leaves
                .get(leaf as usize)
                .ok_or(format!("leaf {leaf} outside the arena"))?
                .next;
        }
        if chain != leaves_seen {
            return Err(format!(
                "leaf chain {chain:?} is not the tree order {leaves_seen:?}"
            ));
        }
        let mut previous: Option<&Bytes> = None;
        let (mut count, mut key_bytes) = (0, 0);
        for &id in &chain {
            let leaf = &self.leaves[id as usize];
            let values = leaf.values.iter().take_while(|v| v.is_some()).count();
            let stray = leaf.values.iter().skip(values).any(Option::is_some);
            if leaf.keys.len() != values || stray || leaf.len() > LEAF_CAPACITY {
                return Err(format!(
                    "leaf {id}: {} keys, {values} values{}",
                    leaf.keys.len(),
                    if stray { " and a value past them" } else { "" }
                ));
            }
            for (i, key) in leaf.keys.iter().enumerate() {
                if leaf.abbrevs.get(i) != Abbrev::after(key, leaf.skip) {
                    return Err(format!("leaf {id} slot {i}: stale abbreviation"));
                }
                if previous.is_some_and(|p| p >= key) {
                    return Err(format!("leaf {id} slot {i}: keys not strictly ascending"));
                }
                previous = Some(key);
                count += 1;
                key_bytes += key.len();
            }
        }
        if count != self.len || key_bytes != self.key_bytes {
            return Err(format!(
                "{count} keys of {key_bytes} bytes, counters say {} and {}",
                self.len, self.key_bytes
            ));
        }
        Ok(())
    }

    /// Checks the subtree at `node` (`level` inner levels above its leaves)
    /// against the bounds `[low, high)` and collects its leaves in order.
    fn check_node(
        &self,
        node: u32,
        level: usize,
        low: Option<&Bytes>,
        high: Option<&Bytes>,
        leaves: &mut Vec<u32>,
    ) -> Result<(), String> {
        if level == 0 {
            let leaf = self
                .leaves
                .get(node as usize)
                .ok_or(format!("leaf {node} outside the arena"))?;
            let outside = leaf
                .keys
                .iter()
                .any(|k| low.is_some_and(|l| k < l) || high.is_some_and(|h| k >= h));
            if outside {
                return Err(format!("leaf {node} holds a key outside its separators"));
            }
            if leaf.skip > common_prefix(low, high) {
                return Err(format!("leaf {node} skips more than its range shares"));
            }
            leaves.push(node);
            return Ok(());
        }
        let inner = self
            .inners
            .get(node as usize)
            .ok_or(format!("inner {node} outside the arena"))?;
        let n = inner.keys.len();
        if n == 0 || n > INNER_CAPACITY {
            return Err(format!("inner {node} has {n} separators"));
        }
        if inner.shared > common_prefix(low, high) {
            return Err(format!("inner {node} skips more than its range shares"));
        }
        let own = inner.skip.checked_sub(inner.shared).map(|b| b as usize);
        if !own.is_some_and(|b| b % SKIP_UNIT == 0 && b / SKIP_UNIT <= OWN_HEADS) {
            return Err(format!(
                "inner {node}: skip {} with {} shared",
                inner.skip, inner.shared
            ));
        }
        for (i, key) in inner.keys.iter().enumerate() {
            if inner.own_order(key) != Ordering::Equal || key.len() < inner.skip as usize {
                return Err(format!(
                    "inner {node} slot {i}: outside the node's own prefix"
                ));
            }
            if inner.abbrevs.get(i) != Abbrev::after(key, inner.skip) {
                return Err(format!("inner {node} slot {i}: stale abbreviation"));
            }
            if i > 0 && inner.keys[i - 1] >= *key {
                return Err(format!("inner {node}: separators not ascending"));
            }
        }
        for i in 0..=n {
            let lo = if i == 0 { low } else { inner.keys.get(i - 1) };
            let hi = if i == n { high } else { inner.keys.get(i) };
            self.check_node(inner.children[i], level - 1, lo, hi, leaves)?;
        }
        Ok(())
    }
}

impl<V> BPlusTreeIndex<V> {
    /// Inserts `key` with `value` by a descent from `node`, at `depth` on
    /// `path` (whose steps above it lead there, and whose range holds
    /// `key`), recording the rest of the way down in `path`. Returns the
    /// value replaced, and where the key landed (leaf and slot), or `None`
    /// when a node split (which changes the nodes on the path).
    /// `after`: where the insert before this one landed, if it was into
    /// this tree as it is. [`Index::insert`] starts it at the root, an
    /// [`Inserter`] lower down.
    ///
    /// # Panics
    ///
    /// Past `u32::MAX - 1` leaves or inner nodes.
    #[inline(always)]
    fn insert_below(
        &mut self,
        path: &mut [(u32, usize); MAX_DEPTH],
        depth: usize,
        mut node: u32,
        key: Bytes,
        value: V,
        after: Option<(u32, usize)>,
    ) -> (Option<V>, Option<(u32, usize)>) {
        let height = self.height;
        let mut probe = Probe::new(&key);
        for step in path.get_mut(depth..height).unwrap_or_default() {
            let inner = &self.inners[node as usize];
            let i = inner.child_index(&mut probe, &key);
            *step = (node, i);
            node = inner.children[i];
        }
        let leaf = &mut self.leaves[node as usize];
        let probe = probe.at(leaf.skip, &key);
        let pos = leaf.position(probe, &key, false);
        if leaf.abbrevs.matches(&leaf.keys, pos, probe, &key) {
            return (leaf.values[pos].replace(value), Some((node, pos)));
        }
        self.len += 1;
        self.key_bytes += key.len();
        if leaf.len() < LEAF_CAPACITY {
            leaf.insert_at(pos, probe, key, value);
            return (None, Some((node, pos)));
        }
        // A run of keys each placed after the last (a sorted batch's rows
        // ascending in the middle of the tree) fills leaves whole.
        let appending = pos > 0 && after == Some((node, pos - 1));
        let mut carry = self.split_leaf(node, &path[..height], pos, probe, key, value, appending);
        for depth in (0..height).rev() {
            let (parent, i) = path[depth];
            let (separator, right) = carry;
            let inner = &mut self.inners[parent as usize];
            if inner.keys.len() < INNER_CAPACITY {
                inner.insert_at(i, separator, right);
                return (None, None);
            }
            carry = self.split_inner(parent, &path[..depth], i, separator, right);
        }
        // The root split: a new root above it, whose range is open (it
        // shares nothing; its one separator is its own prefix, until a
        // separator that differs comes).
        let (separator, right) = carry;
        let mut root = Inner::new();
        root.keys.push(separator);
        root.children[0] = self.root;
        root.children[1] = right;
        root.settle(0);
        self.root = arena_index(self.inners.len());
        self.inners.push(root);
        self.height += 1;
        assert!(
            self.height < MAX_DEPTH,
            "BPlusTreeIndex deeper than {MAX_DEPTH}"
        );
        (None, None)
    }

    /// A cursor for a run of inserts (and removes): each insert starts
    /// from where the last one landed instead of from the root, when the
    /// key lies in that leaf's range or near it (see *Sorted batches*).
    /// Any order of keys is correct; ascending keys are fast.
    pub fn inserter(&mut self) -> Inserter<'_, V> {
        Inserter {
            tree: self,
            path: [(0, 0); MAX_DEPTH],
            known: false,
            landed: None,
        }
    }
}

/// A run of inserts into a [`BPlusTreeIndex`] that remembers the path of
/// the last one (see *Sorted batches* in the module docs). It holds the
/// tree mutably borrowed, so nothing else changes the tree under the path
/// it remembers.
pub struct Inserter<'a, V> {
    tree: &'a mut BPlusTreeIndex<V>,
    /// The last insert's way down: each inner node and the child taken
    /// (the first `tree.height` steps).
    path: [(u32, usize); MAX_DEPTH],
    /// Whether `path` is the tree's current path to a leaf: false before
    /// the first insert, and after a split (which moves keys between nodes
    /// and may add a level).
    known: bool,
    /// The leaf and slot the last insert put its key in (`None` after a
    /// split): a key placed right after it is part of an ascending run,
    /// and a leaf it fills is cut where the key goes (see `split_leaf`).
    landed: Option<(u32, usize)>,
}

impl<V> Inserter<'_, V> {
    /// The node at `depth` on the remembered path (0: the root; the tree's
    /// height: the leaf).
    fn node_at(&self, depth: usize) -> u32 {
        match depth.checked_sub(1) {
            None => self.tree.root,
            Some(above) => {
                let (inner, child) = self.path[above];
                self.tree.inners[inner as usize].children[child]
            }
        }
    }

    /// The deepest node on the remembered path whose range holds `key`:
    /// its depth (0, the root, holds every key). The leaf's range is
    /// checked first, then its parent's, and so on up: a batch of
    /// ascending keys mostly stays in a leaf or moves to the next.
    fn deepest_holding(&self, key: &[u8]) -> usize {
        if !self.known {
            return 0;
        }
        (1..=self.tree.height)
            .rev()
            .find(|&depth| {
                let (low, high) = fences(&self.tree.inners, &self.path[..depth]);
                low.is_none_or(|low| low.as_ref() <= key)
                    && high.is_none_or(|high| key < high.as_ref())
            })
            .unwrap_or(0)
    }

    /// Inserts `key` with `value`; returns the value it replaced, if any.
    /// The same as [`Index::insert`], without a descent from the root
    /// when the key lies near the last one.
    ///
    /// # Panics
    ///
    /// Past `u32::MAX - 1` leaves or inner nodes.
    pub fn insert(&mut self, key: Bytes, value: V) -> Option<V> {
        // Descending from a node whose range holds the key reaches the
        // leaf a descent from the root reaches: the separators above it
        // would send the key the same way.
        let start = self.deepest_holding(&key);
        let node = self.node_at(start);
        let (old, landed) =
            self.tree
                .insert_below(&mut self.path, start, node, key, value, self.landed);
        // A split moves keys to a new node: the path is no longer known.
        self.known = landed.is_some();
        self.landed = landed;
        old
    }

    /// Removes `key`; returns its value, if it was there. A remove takes
    /// the entry out of its leaf and changes no separator (see *Deletes do
    /// not rebalance*), so the remembered path stays the tree's; but it may
    /// shift the slots of the leaf the last insert landed in, so the next
    /// insert does not count as the next key of a run.
    pub fn remove(&mut self, key: &[u8]) -> Option<V>
    where
        V: Send + Sync,
    {
        self.landed = None;
        self.tree.remove(key)
    }
}

impl<V: Send + Sync> Index<V> for BPlusTreeIndex<V> {
    /// # Panics
    ///
    /// Past `u32::MAX - 1` leaves or inner nodes.
    fn insert(&mut self, key: Bytes, value: V) -> Option<V> {
        let mut path = [(0u32, 0usize); MAX_DEPTH];
        self.insert_below(&mut path, 0, self.root, key, value, None)
            .0
    }

    fn get(&self, key: &[u8]) -> Option<&V> {
        let (id, probe) = self.find_leaf(key);
        let leaf = &self.leaves[id as usize];
        let pos = leaf.position(probe, key, false);
        if leaf.abbrevs.matches(&leaf.keys, pos, probe, key) {
            leaf.values.get(pos).and_then(Option::as_ref)
        } else {
            None
        }
    }

    fn remove(&mut self, key: &[u8]) -> Option<V> {
        let (id, probe) = self.find_leaf(key);
        let leaf = &mut self.leaves[id as usize];
        let pos = leaf.position(probe, key, false);
        if !leaf.abbrevs.matches(&leaf.keys, pos, probe, key) {
            return None;
        }
        let len = leaf.len();
        leaf.abbrevs.remove_at(pos, len);
        let removed = leaf.keys.remove(pos);
        let value = leaf.values[pos].take();
        // The `None` just left at `pos` moves to the end.
        leaf.values[pos..len].rotate_left(1);
        self.len -= 1;
        self.key_bytes -= removed.len();
        value
    }

    fn is_ordered(&self) -> bool {
        true
    }

    fn range<'a>(&'a self, start: Bound<&[u8]>, end: Bound<&[u8]>) -> RangeIter<'a, V> {
        Box::new(self.range_of(start, end))
    }

    fn len(&self) -> usize {
        self.len
    }

    fn clear(&mut self) {
        self.leaves.truncate(1);
        if let Some(leaf) = self.leaves.first_mut() {
            leaf.keys.clear();
            leaf.values.fill_with(|| None);
            leaf.next = NIL;
            leaf.skip = 0;
        }
        self.inners.clear();
        self.root = 0;
        self.height = 0;
        self.len = 0;
        self.key_bytes = 0;
        self.shape = next_shape();
    }

    fn memory_bytes(&self) -> usize {
        use std::mem::size_of;
        // The arenas as allocated, each node's key, value and separator
        // vectors by capacity, and the key bytes. A separator shares its
        // key's allocation (a `Bytes` clone), so it adds no key bytes; it can
        // keep a removed key's bytes alive, which this does not count.
        let leaf_vecs: usize = self
            .leaves
            .iter()
            .map(|l| l.keys.capacity() * size_of::<Bytes>())
            .sum();
        let inner_vecs: usize = self
            .inners
            .iter()
            .map(|n| n.keys.capacity() * size_of::<Bytes>())
            .sum();
        self.leaves.allocated_bytes()
            + self.inners.allocated_bytes()
            + leaf_vecs
            + inner_vecs
            + self.key_bytes
    }
}

/// A walk along the leaves from `next` up to, not including, `stop`.
struct Range<'a, V> {
    tree: &'a BPlusTreeIndex<V>,
    /// The leaf `next` lies in (`None` at the end of the chain): held, so
    /// that a step within a leaf does not look the leaf up in the arena
    /// again; the arena is read once a leaf.
    leaf: Option<&'a Leaf<V>>,
    next: Cursor,
    stop: Cursor,
}

impl<'a, V> Range<'a, V> {
    fn new(tree: &'a BPlusTreeIndex<V>, next: Cursor, stop: Cursor) -> Self {
        Self {
            tree,
            leaf: tree.leaves.get(next.leaf as usize),
            next,
            stop,
        }
    }
}

impl<'a, V> Iterator for Range<'a, V> {
    type Item = (&'a Bytes, &'a V);

    /// Inlined into the scans that call it: a step within a leaf is a
    /// few instructions; the step to the next leaf is a call.
    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.next == self.stop {
            return None;
        }
        let leaf = self.leaf?;
        let pos = self.next.pos;
        let item = (leaf.keys.get(pos)?, leaf.values.get(pos)?.as_ref()?);
        if pos + 1 < leaf.len() {
            self.next.pos = pos + 1;
        } else {
            self.next_leaf(leaf.next);
        }
        Some(item)
    }
}

impl<V> Range<'_, V> {
    /// Moves to the first entry of leaf `next` or of a later non-empty
    /// leaf (the end of the chain if there is none).
    #[inline(never)]
    fn next_leaf(&mut self, next: u32) {
        self.next = self.tree.normalize(Cursor { leaf: next, pos: 0 });
        self.leaf = self.tree.leaves.get(self.next.leaf as usize);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u32) -> Bytes {
        Bytes::copy_from_slice(&i.to_be_bytes())
    }

    fn as_ref(bound: &Bound<Vec<u8>>) -> Bound<&[u8]> {
        bound.as_ref().map(Vec::as_slice)
    }

    #[test]
    fn prefixes_order_like_keys() {
        let keys: [&[u8]; 7] = [
            b"",
            b"\0",
            b"a",
            b"a\0",
            b"abcdefgh",
            b"abcdefgh\0",
            b"abcdefgi",
        ];
        for w in keys.windows(2) {
            assert!(key_prefix(w[0]) <= key_prefix(w[1]), "{w:?}");
        }
        assert_eq!(key_prefix(b"\x01\x02"), 0x0102_0000_0000_0000);
    }

    #[test]
    fn abbreviations_compare_like_keys() {
        // Keys around the 8- and 16-byte boundaries, with zero bytes where
        // padding would be, so that ties on heads, tails and lengths occur.
        let mut keys: Vec<Vec<u8>> = Vec::new();
        for len in [0, 1, 7, 8, 9, 15, 16, 17, 24] {
            for fill in [0u8, 1, 0xff] {
                let mut k = vec![b'k'; len];
                if let Some(last) = k.last_mut() {
                    *last = fill;
                }
                keys.push(k.clone());
                k.push(0);
                keys.push(k);
            }
        }
        let mut abbrevs = Abbrevs::<1>::new();
        for stored in &keys {
            abbrevs.set(0, Abbrev::of(stored));
            let stored_bytes = Bytes::copy_from_slice(stored);
            for probe in &keys {
                assert_eq!(
                    abbrevs.compare(0, &stored_bytes, Abbrev::of(probe), probe),
                    stored.cmp(probe),
                    "{stored:?} vs {probe:?}"
                );
            }
        }
    }

    #[test]
    fn position_agrees_with_a_linear_search() {
        // Every fill of a node, keys with few distinct heads (so that runs
        // of equal heads cross cache-line boundaries) and probes between,
        // on and around them.
        let mut state = 7u32;
        let mut next = |m: u32| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state % m
        };
        for n in 0..=LEAF_CAPACITY {
            let mut keys: Vec<Vec<u8>> = (0..n)
                .map(|_| {
                    let mut k = vec![b'h', next(3) as u8];
                    k.resize(8 + next(12) as usize, next(256) as u8);
                    k
                })
                .collect();
            keys.sort();
            keys.dedup();
            let mut abbrevs = Abbrevs::<LEAF_CAPACITY>::new();
            // Garbage past the keys must not matter.
            abbrevs.heads.fill(u64::MAX / 3);
            for (i, k) in keys.iter().enumerate() {
                abbrevs.set(i, Abbrev::of(k));
            }
            let stored: Vec<Bytes> = keys.iter().map(|k| Bytes::copy_from_slice(k)).collect();
            let mut probes = keys.clone();
            probes.extend(keys.iter().map(|k| [k.as_slice(), b"\0"].concat()));
            probes.extend([vec![], vec![b'h'], vec![b'h', 9], vec![0xff; 20]]);
            for probe in &probes {
                for past_equal in [false, true] {
                    let expected = keys
                        .iter()
                        .filter(|k| k.as_slice() < probe.as_slice() || (past_equal && *k == probe))
                        .count();
                    let got = abbrevs.position(&stored, Abbrev::of(probe), probe, past_equal);
                    assert_eq!(
                        got, expected,
                        "n {n}, probe {probe:?}, past_equal {past_equal}"
                    );
                }
            }
        }
    }

    #[test]
    fn random_inserts_and_removes_agree_with_a_btreemap() {
        let mut tree = BPlusTreeIndex::new();
        let mut model = std::collections::BTreeMap::new();
        let mut state = 1u32;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state % 20_000
        };
        for round in 0..3 {
            for _ in 0..30_000 {
                let k = next();
                assert_eq!(
                    tree.insert(key(k), k + round),
                    model.insert(key(k), k + round)
                );
            }
            tree.check_invariants().expect("after inserts");
            assert!(tree.height() >= 2, "height {}", tree.height());
            for _ in 0..25_000 {
                let k = next();
                assert_eq!(tree.remove(&key(k)), model.remove(&key(k)));
            }
            assert_same(&tree, &model);
        }
    }

    /// Values of 2 KiB make a leaf of about 64 KiB, so an arena chunk
    /// holds a few hundred leaves and these inserts span several chunks:
    /// nodes past the first chunk are found, split and chained as before.
    #[test]
    fn a_tree_spread_over_many_arena_chunks_agrees_with_a_btreemap() {
        type Big = [u8; 2048];
        let chunk = Arena::<Leaf<Big>>::CHUNK;
        assert!(chunk <= 256, "{chunk} leaves a chunk");
        let value = |k: u32| -> Big { std::array::from_fn(|i| (k as usize + i) as u8) };
        let mut tree = BPlusTreeIndex::<Big>::new();
        let mut model = std::collections::BTreeMap::new();
        let mut state = 7u32;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let k = state % 50_000;
            assert_eq!(
                tree.insert(key(k), value(k)),
                model.insert(key(k), value(k))
            );
        }
        assert!(
            tree.leaves.len() > 3 * chunk,
            "{} leaves",
            tree.leaves.len()
        );
        tree.check_invariants().expect("many chunks");
        assert!(
            tree.range(Bound::Unbounded, Bound::Unbounded)
                .map(|(k, v)| (k.clone(), *v))
                .eq(model.clone())
        );
        for (k, v) in model.iter().step_by(97) {
            assert_eq!(tree.get(k), Some(v));
        }
        tree.clear();
        assert_eq!(
            (tree.len(), tree.leaves.len(), tree.inners.len()),
            (0, 1, 0)
        );
        tree.insert(key(1), value(1));
        assert_eq!(tree.get(&key(1)), Some(&value(1)));
    }

    /// A SQL-like key: 20 bytes every key shares (so nodes skip), then `i`,
    /// then a tail with a `salt`.
    fn sql_like_key(i: u32, salt: u8) -> Bytes {
        let mut k = vec![2, 1, 0, 0xFF, 0, 0xFF, 0, 0xFF, 0, 0xFF];
        k.extend_from_slice(&[0, 0xFF, 0, 0xFF, 0, 0xFF, 0, 7, 0x80, 0]);
        k.extend_from_slice(&i.to_be_bytes());
        k.extend_from_slice(&[0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, salt]);
        Bytes::from(k)
    }

    /// Applies `ops` (a key, and whether to remove it rather than insert
    /// it) through one `Inserter`, to the tree and to the model alike.
    fn apply_batch(
        tree: &mut BPlusTreeIndex<u32>,
        model: &mut std::collections::BTreeMap<Bytes, u32>,
        ops: &[(Bytes, bool)],
        value: u32,
    ) {
        let mut inserter = tree.inserter();
        for (key, remove) in ops {
            if *remove {
                assert_eq!(inserter.remove(key), model.remove(key), "remove {key:?}");
            } else {
                assert_eq!(
                    inserter.insert(key.clone(), value),
                    model.insert(key.clone(), value),
                    "insert {key:?}"
                );
            }
        }
    }

    fn assert_same(tree: &BPlusTreeIndex<u32>, model: &std::collections::BTreeMap<Bytes, u32>) {
        tree.check_invariants().expect("invariants");
        let all: Vec<(Bytes, u32)> = tree
            .range(Bound::Unbounded, Bound::Unbounded)
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        let expected: Vec<(Bytes, u32)> = model.iter().map(|(k, v)| (k.clone(), *v)).collect();
        assert_eq!(all, expected);
    }

    /// Batches shaped like the memory engine's commits of SQL inserts:
    /// ascending row keys, index entries spread over the whole table (in
    /// ascending order within the batch, as a sorted write batch has them),
    /// and a key below them all at the end of each batch (the last-commit
    /// key). The inserter must start from the remembered leaf, climb, and
    /// fall back to the root, across splits of every level.
    #[test]
    fn an_inserter_over_sorted_batches_agrees_with_a_btreemap() {
        let mut tree = BPlusTreeIndex::new();
        let mut model = std::collections::BTreeMap::new();
        let rows = 40_000u32;
        for (batch, ids) in (0..rows).collect::<Vec<_>>().chunks(1_000).enumerate() {
            let mut ops: Vec<(Bytes, bool)> =
                ids.iter().map(|&id| (sql_like_key(id, 1), false)).collect();
            let mut entries: Vec<u32> = ids
                .iter()
                .map(|&id| id.wrapping_mul(7_919) % rows)
                .collect();
            entries.sort_unstable();
            ops.extend(entries.into_iter().map(|v| (sql_like_key(v, 2), false)));
            // Rewrites of keys already there, and a few removes.
            ops.extend((0..20).map(|i| (sql_like_key(i * 31, 2), batch % 3 == 0)));
            ops.push((Bytes::from_static(b"\x00last"), false));
            apply_batch(&mut tree, &mut model, &ops, batch as u32);
        }
        assert!(tree.height() >= 2, "height {}", tree.height());
        assert_same(&tree, &model);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

        /// Any order: batches sorted or not, inserts and removes mixed, of
        /// keys that share a long prefix or none, onto a tree that grows
        /// past one level.
        #[test]
        fn an_inserter_in_any_order_agrees_with_a_btreemap(
            batches in proptest::collection::vec(
                (
                    proptest::collection::vec((0u32..3_000, 0u8..3, 0u8..8), 0..600),
                    proptest::bool::ANY,
                ),
                1..10,
            )
        ) {
            let mut tree = BPlusTreeIndex::new();
            let mut model = std::collections::BTreeMap::new();
            for (round, (picks, sorted)) in batches.into_iter().enumerate() {
                let mut ops: Vec<(Bytes, bool)> = picks
                    .into_iter()
                    .map(|(i, salt, what)| {
                        let key = if what == 0 { key(i) } else { sql_like_key(i, salt) };
                        (key, what == 1)
                    })
                    .collect();
                if sorted {
                    ops.sort();
                }
                apply_batch(&mut tree, &mut model, &ops, round as u32);
                assert_same(&tree, &model);
            }
        }
    }

    /// A hint kept across reads and across batches that split the tree
    /// (and across a clone that splits on its own) finds what a read from
    /// the root finds: a stale hint is never trusted.
    #[test]
    fn hinted_reads_agree_with_reads_from_the_root() {
        let mut tree = BPlusTreeIndex::new();
        let mut model = std::collections::BTreeMap::new();
        let mut hint = LeafHint::default();
        let mut state = 7u32;
        let mut next = |m: u32| {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (state >> 8) % m
        };
        let check = |tree: &BPlusTreeIndex<u32>, hint: &mut LeafHint, i: u32, salt: u8| {
            let k = sql_like_key(i, salt);
            let mut end = k.to_vec();
            end.extend_from_slice(&[0xFF; 4]);
            for (start, end) in [
                (Bound::Included(&k[..]), Bound::Included(&k[..])),
                (Bound::Excluded(&k[..]), Bound::Excluded(&end[..])),
                (Bound::Included(&k[..]), Bound::Unbounded),
            ] {
                assert_eq!(
                    tree.first_in_hinted(start, end, hint),
                    tree.first_in(start, end),
                    "key {i} {salt}"
                );
            }
        };
        for round in 0..40u32 {
            let ops: Vec<(Bytes, bool)> = (0..200)
                .map(|_| (sql_like_key(next(4_000), next(3) as u8), next(8) == 0))
                .collect();
            apply_batch(&mut tree, &mut model, &ops, round);
            for i in 0..300 {
                // Ascending reads (one leaf after another) and random ones.
                check(&tree, &mut hint, round * 100 + i, 1);
                check(&tree, &mut hint, next(4_100), next(3) as u8);
            }
        }
        assert!(tree.height() >= 2);
        let mut clone = tree.clone();
        check(&tree, &mut hint, 1_000, 1);
        let ops: Vec<(Bytes, bool)> = (0..2_000)
            .map(|i| (sql_like_key(1_000, 3 + (i % 200) as u8), false))
            .collect();
        let mut clone_model = model.clone();
        apply_batch(&mut clone, &mut clone_model, &ops, 99);
        check(&clone, &mut hint, 1_000, 100);
        check(&tree, &mut hint, 1_000, 100);
        clone.clear();
        check(&clone, &mut hint, 1_000, 1);
    }

    /// Keys that share their first 20 bytes (as a SQL table's version keys
    /// share 17), then differ in 4, then end in 8 more: nodes must skip the
    /// shared bytes (16 of them, whole heads), and every read (`get`, `range`, `first_in` with every
    /// kind of bound, some outside the shared prefix) must agree with a
    /// `BTreeMap` through inserts, removes and splits.
    #[test]
    fn long_shared_prefixes_agree_with_a_btreemap() {
        let long_key = |i: u32, salt: u8| -> Bytes {
            let mut k = vec![2, 1, 0, 0xFF, 0, 0xFF, 0, 0xFF, 0, 0xFF];
            k.extend_from_slice(&[0, 0xFF, 0, 0xFF, 0, 0xFF, 0, 7, 0x80, 0]);
            k.extend_from_slice(&i.to_be_bytes());
            k.extend_from_slice(&[0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, salt]);
            Bytes::from(k)
        };
        let mut tree = BPlusTreeIndex::new();
        let mut model = std::collections::BTreeMap::new();
        let mut state = 3u32;
        let mut next = |m: u32| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state % m
        };
        for round in 0..2u32 {
            for _ in 0..20_000 {
                let k = long_key(next(5_000), next(3) as u8);
                assert_eq!(tree.insert(k.clone(), round), model.insert(k, round));
            }
            tree.check_invariants().expect("after inserts");
            assert!(
                tree.leaves.iter().filter(|l| l.skip >= 16).count() * 2 > tree.leaves.len(),
                "most leaves skip the shared prefix"
            );
            for _ in 0..8_000 {
                let k = long_key(next(5_000), next(3) as u8);
                assert_eq!(tree.remove(&k), model.remove(&k));
            }
            tree.check_invariants().expect("after removes");
            for _ in 0..3_000 {
                let a = long_key(next(5_100), next(4) as u8);
                // Ends near `a` (in the same leaf, sharing its prefix),
                // far from it, and outside the shared prefix.
                let b = match next(3) {
                    0 => long_key(u32::from_be_bytes(a[20..24].try_into().unwrap()), 0xFF),
                    1 => long_key(next(5_100), next(4) as u8),
                    _ => Bytes::from_static(&[2, 1, 0, 0xFF, 1]),
                };
                assert_eq!(tree.get(&a), model.get(&a));
                let bound = |key: &Bytes, kind: u32| match kind {
                    0 => Bound::Included(key.to_vec()),
                    1 => Bound::Excluded(key.to_vec()),
                    _ => Bound::Unbounded,
                };
                let (start, end) = (bound(&a, next(3)), bound(&b, next(3)));
                // An inverted range holds no key: `in_bounds` says so too.
                let expected = model
                    .iter()
                    .find(|(k, _)| crate::in_bounds(k, as_ref(&start), as_ref(&end)))
                    .map(|(k, v)| (k.clone(), *v));
                let got = tree
                    .first_in(as_ref(&start), as_ref(&end))
                    .map(|(k, v)| (k.clone(), *v));
                assert_eq!(got, expected, "{start:?}..{end:?}");
                let ranged = tree
                    .range(as_ref(&start), as_ref(&end))
                    .next()
                    .map(|(k, v)| (k.clone(), *v));
                assert_eq!(ranged, expected, "{start:?}..{end:?}");
            }
        }
    }

    /// The nodes on the tree's open edges share nothing with their range
    /// and skip their separators' own prefix instead: lookups of keys
    /// inside it, below it, above it and cut short within it, and
    /// separators outside it that shorten it, against a `BTreeMap`.
    #[test]
    fn an_inner_node_s_own_prefix_agrees_with_a_btreemap() {
        let mut tree = BPlusTreeIndex::new();
        let mut model = std::collections::BTreeMap::new();
        for i in 0..20_000u32 {
            let k = sql_like_key(i * 2, 0);
            assert_eq!(tree.insert(k.clone(), i), model.insert(k, i));
        }
        let root = &tree.inners[tree.root as usize];
        assert_eq!((root.shared, root.skip), (0, 16), "the root skips 16 bytes");
        let base = sql_like_key(0, 0);
        let near = |cut: usize, last: u8| -> Bytes {
            let mut k = base[..cut].to_vec();
            k.push(last);
            Bytes::from(k)
        };
        // Outside the 16 shared bytes: below, above, cut short, and the
        // prefix itself, then keys inside it between the stored ones.
        let mut probes: Vec<Bytes> = vec![
            Bytes::from_static(&[1]),
            Bytes::from_static(&[3]),
            base.slice(..7),
            base.slice(..8),
            base.slice(..12),
            base.slice(..16),
            base.slice(..17),
            near(3, 0),
            near(3, 0xFF),
            near(9, 0xFE),
            near(9, 0xFF),
            near(15, 6),
            near(15, 8),
        ];
        probes.extend((0..200).map(|i| sql_like_key(i * 199, 1)));
        let check = |tree: &BPlusTreeIndex<u32>, model: &std::collections::BTreeMap<Bytes, u32>| {
            assert_same(tree, model);
            for p in &probes {
                assert_eq!(tree.get(p), model.get(p), "get {p:?}");
                for start in [Bound::Included(p.as_ref()), Bound::Excluded(p.as_ref())] {
                    let expected = model
                        .range::<[u8], _>((start, Bound::Unbounded))
                        .next()
                        .map(|(k, v)| (k.clone(), *v));
                    let got = tree.first_in(start, Bound::Unbounded);
                    assert_eq!(got.map(|(k, v)| (k.clone(), *v)), expected, "{start:?}");
                }
            }
        };
        check(&tree, &model);
        // Keys above the shared bytes, enough to split leaves and send
        // separators outside the root's own prefix, then keys below.
        for (n, k) in (0..3_000u32)
            .map(|i| {
                near(9, 0xFF)
                    .iter()
                    .copied()
                    .chain(i.to_be_bytes())
                    .collect::<Vec<u8>>()
            })
            .chain((0..3_000u32).map(|i| [&[2, 0][..], &i.to_be_bytes()].concat()))
            .enumerate()
        {
            let k = Bytes::from(k);
            assert_eq!(tree.insert(k.clone(), n as u32), model.insert(k, n as u32));
        }
        let root = &tree.inners[tree.root as usize];
        assert_eq!(root.skip, root.shared, "the own prefix is gone");
        check(&tree, &model);
    }

    #[test]
    fn ascending_inserts_pack_leaves_full() {
        let mut tree = BPlusTreeIndex::new();
        for i in 0..10 * LEAF_CAPACITY as u32 {
            tree.insert(key(i), i);
        }
        tree.check_invariants().expect("invariants");
        assert_eq!(tree.leaves.len(), 10, "{} leaves", tree.leaves.len());
        let mut tree = BPlusTreeIndex::new();
        for i in (0..10 * LEAF_CAPACITY as u32).rev() {
            tree.insert(key(i), i);
        }
        tree.check_invariants().expect("invariants");
        assert!(tree.leaves.len() >= 19, "{} leaves", tree.leaves.len());
    }

    /// An ascending run through an `Inserter` into the middle of the tree
    /// (a larger key already there, so no leaf it fills is the right-most)
    /// leaves its leaves full, as appends at the right edge do.
    #[test]
    fn an_ascending_run_in_the_middle_packs_leaves_full() {
        let mut tree = BPlusTreeIndex::new();
        tree.insert(key(u32::MAX), 0);
        let mut inserter = tree.inserter();
        for i in 0..10 * LEAF_CAPACITY as u32 {
            inserter.insert(key(i), i);
        }
        tree.check_invariants().expect("invariants");
        assert!(tree.leaves.len() <= 12, "{} leaves", tree.leaves.len());
    }

    #[test]
    fn check_invariants_catches_a_broken_tree() {
        let mut tree = BPlusTreeIndex::new();
        for i in 0..1000 {
            tree.insert(key(i), i);
        }
        tree.check_invariants().expect("valid");
        let mut stale = tree.clone();
        stale.leaves[3].abbrevs.heads[0] ^= 1;
        assert!(stale.check_invariants().is_err());
        let mut stale = tree.clone();
        stale.leaves[3].abbrevs.tails[1] ^= 1;
        assert!(stale.check_invariants().is_err());
        let mut stale = tree.clone();
        stale.leaves[3].abbrevs.lens[2] ^= 1;
        assert!(stale.check_invariants().is_err());
        let mut swapped = tree.clone();
        swapped.leaves[2].keys.swap(0, 1);
        assert!(swapped.check_invariants().is_err());
        // A skip past what the range's fences share, with abbreviations
        // consistent with it: only the skip check can tell.
        let mut skipping = tree.clone();
        let leaf = &mut skipping.leaves[3];
        leaf.reskip(leaf.skip + 1);
        assert!(skipping.check_invariants().is_err());
        let mut skipping = tree.clone();
        let inner = &mut skipping.inners[0];
        inner.settle(inner.shared + 1);
        assert!(skipping.check_invariants().is_err());
        // An own prefix that a separator does not start with, the
        // abbreviations consistent with the skip: only the prefix check
        // can tell.
        let mut tree = BPlusTreeIndex::new();
        for i in 0..5_000 {
            tree.insert(sql_like_key(i, 0), i);
        }
        tree.check_invariants().expect("valid");
        let mut foreign = tree.clone();
        let root = &mut foreign.inners[foreign.root as usize];
        assert!(root.skip > root.shared, "the root skips its own prefix");
        root.own[1] ^= 1;
        assert!(foreign.check_invariants().is_err());
        let mut counted = tree;
        counted.len += 1;
        assert!(counted.check_invariants().is_err());
    }

    #[test]
    fn memory_counts_nodes_vectors_and_keys() {
        let mut tree = BPlusTreeIndex::<u64>::new();
        for i in 0..1000 {
            tree.insert(key(i), u64::from(i));
        }
        let leaves = tree.leaves.len();
        let inners = tree.inners.len();
        // Both arenas are still in their first chunk, which doubles from 4.
        let allocated = |n: usize| n.next_power_of_two().max(4);
        let expected = allocated(leaves) * std::mem::size_of::<Leaf<u64>>()
            + allocated(inners) * std::mem::size_of::<Inner>()
            + leaves * LEAF_CAPACITY * 32
            + inners * INNER_CAPACITY * 32
            + 1000 * 4;
        assert_eq!(tree.memory_bytes(), expected);
    }
}
