//! `SkipListIndex`: an ordered index on a skip list, written from scratch
//! because it is the lesson.
//!
//! # The structure
//!
//! A skip list is a sorted linked list with express lanes. Every entry is a
//! node with a *tower* of forward links, one per level. Level 0 links every
//! node in key order; level 1 links only the nodes whose tower reaches level
//! 1, and so on. A search starts at the top of the head tower, runs right
//! while the next key is smaller than the one it wants, and drops one level
//! when the next key would overshoot:
//!
//! ```text
//!           head
//! level 3  [ ]────────────────────────────────────►[31]───────────────────────────► NIL
//! level 2  [ ]──────────────────►[12]─────────────►[31]───────────────────────────► NIL
//! level 1  [ ]──►[ 5]───────────►[12]──────►[20]──►[31]──────────────►[47]────────► NIL
//! level 0  [ ]──►[ 5]──►[ 9]────►[12]─►[17]►[20]──►[31]─►[38]─►[44]──►[47]─►[52]──► NIL
//!
//! search 44: head@3 → 31 (next is NIL: drop) → 31@2 (NIL: drop)
//!            → 31@1 (next 47 > 44: drop) → 31@0 → 38 → 44 found
//! ```
//!
//! Nothing is ever rebalanced: an insert finds the predecessor of the new key
//! at every level (the right-most node it stopped at before dropping), draws
//! a random height for the new tower, and splices it in after those
//! predecessors. A remove unlinks the tower from the same predecessors.
//!
//! # Invariants (checked by [`SkipListIndex::check_invariants`])
//!
//! 1. Level 0 holds every live entry, in strictly ascending key order.
//! 2. Each level is a sorted sub-list of the level below: level `l` holds
//!    exactly the nodes whose tower is taller than `l`.
//! 3. The head is a node without entry whose tower has [`MAX_HEIGHT`]
//!    levels, so any tower fits under it; levels at or above the list's
//!    current height are empty.
//! 4. Tower heights are drawn independently from a geometric distribution:
//!    a tower reaches level `l` with probability `p^l`, `p = 1/4`. This one is
//!    statistical; a unit test checks the histogram of many draws.
//!
//! # Costs, with `p = 1/4`
//!
//! - **Height.** The tallest of `n` towers is expected to be about
//!   `log_{1/p} n = log_4 n = ½·log₂ n` levels: 10 for a million keys.
//! - **Search.** Pugh's analysis bounds the expected number of steps by
//!   `log_{1/p}(n) / p + 1/(1-p)`, here `4·log_4 n + 4/3 = 2·log₂ n + 4/3`:
//!   about 41 key comparisons for a million keys. Every step jumps to a node
//!   far away in memory, so each is a likely cache miss; that is the price a
//!   skip list pays against a B-tree, which compares several keys inside one
//!   node, and it is why a scan along level 0 is slower than a walk through
//!   a B-tree's leaves.
//! - **Space.** A tower has `1/(1-p) = 4/3` links on average.
//!
//! # Why `p = 1/4` and `MAX_HEIGHT = 16`
//!
//! For `p = 1/2` the search bound is `2·log₂ n + 2`, the same order as for
//! `p = 1/4`, but towers average 2 links instead of 4/3. A quarter keeps the
//! search cost and saves a third of the links, at the price of more variance
//! in search time; LevelDB and RocksDB make the same choice (`kBranching = 4`).
//! One random `u64` gives the height: the number of leading pairs of zero
//! bits, each pair being zero with probability 1/4.
//!
//! Pugh's rule sets the maximum height to `log_{1/p} N` for the largest `N`
//! the list will hold. Nodes are addressed by `u32`, so no list here can hold
//! more than 2³² nodes, and `log_4 2³² = 16`. The head's tower of 16 links
//! costs 64 bytes, once. (LevelDB uses 12, right for up to 4¹² = 16 million
//! keys; beyond that its top level gets crowded and searches slow down
//! gradually, without ever being wrong.)
//!
//! # Why databases use skip lists
//!
//! LevelDB's and RocksDB's memtable (the sorted, in-memory buffer of recent
//! writes that is flushed to an SSTable) is a skip list, and so is Redis's
//! sorted set. They are ordered, so a flush or a range scan is a walk along
//! level 0. They are simple: no rotation or split ever moves existing nodes,
//! and an insert only writes the links of its predecessors. That last point
//! is what makes concurrent variants easy: LevelDB lets readers run without a
//! lock while one writer publishes a new node bottom-up with release stores,
//! and RocksDB's `InlineSkipList` and the Java `ConcurrentSkipListMap` insert
//! lock-free with one compare-and-swap per level.
//!
//! # Layout: an arena, not boxes
//!
//! Nodes live in one `Vec` and name each other by `u32` index, as in Pebble's
//! `arenaskl` and Badger's `skl`, which address nodes by `u32` offsets into
//! one arena. A 4-byte index costs half an 8-byte pointer, the
//! borrow checker has nothing to object to (no `unsafe`, no `Rc`), and the
//! whole list is freed in one go. Towers are slices of one shared `Vec<u32>`
//! of links. A removed node's slot goes on a free list for its height and is
//! reused by the next insert that draws that height, so a churning workload
//! does not grow the arena.
//!
//! # Fat links: a search step reads one cache line
//!
//! In a plain arena a search step is a chain of three dependent loads: the
//! current node's link, then the next node, then that node's key bytes,
//! which `Bytes` keeps in their own allocation. Each is a likely cache miss,
//! and a lookup in 300,000 keys makes about 35 steps: the skip list ran at
//! 0.27x the B-tree's lookups.
//!
//! So a link carries what the search needs to decide a step without
//! visiting the node it points to: the next node's index, where *its* tower
//! starts, and the first 8 bytes of its key as a `u64` (an abbreviated key,
//! [`crate::key_prefix`]). A step compares two integers and, if it moves
//! right, continues with the links of the next tower; the node and its key
//! bytes are read only when the prefixes tie (keys that share their first
//! 8 bytes) or when the key is found. A link grows from 4 to 16 bytes, so
//! with 4/3 links per tower a node costs 16 bytes more. The price is upkeep:
//! a link must be rewritten whenever its target changes, which only happens
//! when a node is spliced in or out (a key is never changed in place).
//!
//! # The node settles a tie
//!
//! A search that finds its key still has to confirm the match: the prefixes
//! tie, and a key read through its `Bytes` is one more cache miss after the
//! node's (the key's bytes live in an allocation of their own). So a node
//! also keeps bytes 8..16 of its key as a `u64` (its *tail*); the key's
//! length is inline in its `Bytes` anyway. For keys of up to 16 bytes,
//! prefix, tail and length decide the comparison, as the abbreviations of
//! [`crate::BPlusTreeIndex`] do, and a lookup that hits reads the links on
//! its way and then the one node that holds its value: no key bytes. It
//! costs 8 bytes per node. (`readrandom` on the log engine with this index
//! measured 0.72x the `BTreeMap` index in session 13's quiet rerun, under
//! the 0.7x goal in one run of three; see `docs/benchmarks/logread.md`.)
//!
//! The random generator is a seeded xorshift, so a given sequence of
//! operations always builds the same list and tests are reproducible. Heights
//! do not depend on keys, but someone who knows the seed and the insertion
//! order could pick keys that line up the tall towers badly; seed from an
//! entropy source ([`SkipListIndex::with_seed`]) if keys come from untrusted
//! clients.

use std::cmp::Ordering;
use std::ops::Bound;

use bytes::Bytes;

use crate::{Index, RangeIter, key_prefix};

/// The most levels a tower can have: `log_4` of the 2³² nodes a `u32` can
/// address (see the module docs).
pub const MAX_HEIGHT: usize = 16;

/// The seed [`SkipListIndex::new`] uses, so that lists are reproducible.
pub const DEFAULT_SEED: u64 = 0x5EED_0F5C_1F71_5D00;

/// "No node": the end of a level, or of a free list.
const NIL: u32 = u32::MAX;

/// Keys up to this long are compared by the prefix in a link and the tail
/// and length in the node, without reading the key's bytes.
const INLINE_KEY_LEN: usize = 16;

/// Bytes 8..16 of `key` as a big-endian number, zero-padded (0 for a key of
/// at most 8 bytes): the second half of a 16-byte abbreviation, as
/// [`key_prefix`] is the first.
fn key_tail(key: &[u8]) -> u64 {
    key.get(8..).map_or(0, key_prefix)
}

/// The head is always node 0.
const HEAD: u32 = 0;

/// One forward link of a tower: the next node at that level, and what a
/// search needs to decide whether to step to it without reading the node
/// itself (see "Fat links" in the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Link {
    /// The next node, or NIL.
    next: u32,
    /// Where the next node's tower starts in [`SkipListIndex::links`].
    tower: u32,
    /// The first 8 bytes of the next node's key ([`key_prefix`]); 0 for NIL
    /// and free slots.
    prefix: u64,
}

/// The end of a level.
const NIL_LINK: Link = Link {
    next: NIL,
    tower: 0,
    prefix: 0,
};

/// One slot of the arena.
#[derive(Debug, Clone)]
struct Node<V> {
    /// The key and value; `None` for the head and for free slots.
    entry: Option<(Bytes, V)>,
    /// Bytes 8..16 of the key as a big-endian `u64`, zero-padded
    /// ([`key_tail`]); 0 for the head, stale in a free slot. With the prefix in
    /// the link and the key's length (inline in its `Bytes`), it decides a
    /// comparison with a key of up to 16 bytes without reading the key's
    /// bytes (see "The node settles a tie" in the module docs).
    tail: u64,
    /// Where this node's tower starts in [`SkipListIndex::links`].
    tower: u32,
    /// How many levels the tower has, `1..=MAX_HEIGHT`.
    height: u8,
}

/// An ordered index on a skip list with `p = 1/4` (see the module docs).
#[derive(Debug, Clone)]
pub struct SkipListIndex<V> {
    /// The arena: the head at index 0, then live nodes and free slots.
    nodes: Vec<Node<V>>,
    /// All towers, back to back: node `n`'s link at level `l` is
    /// `links[n.tower + l]`, the next node at that level (or NIL) with its
    /// tower and key prefix. In a free slot, the first link chains to the
    /// next free slot.
    links: Vec<Link>,
    /// `free_slots[h - 1]`: the first free slot whose tower has height `h`.
    free_slots: [u32; MAX_HEIGHT],
    /// Levels in use: the tallest live tower, at least 1. Searches start here
    /// rather than at `MAX_HEIGHT`, so a small list is searched as a small one.
    height: usize,
    /// Live entries.
    len: usize,
    /// Sum of the live keys' lengths.
    key_bytes: usize,
    /// xorshift64* state, never zero.
    rng: u64,
}

impl<V> Default for SkipListIndex<V> {
    fn default() -> Self {
        Self::with_seed(DEFAULT_SEED)
    }
}

impl<V> SkipListIndex<V> {
    /// An empty index seeded with [`DEFAULT_SEED`].
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty index whose tower heights come from `seed` (0 is replaced by
    /// [`DEFAULT_SEED`], because xorshift never leaves the all-zero state).
    pub fn with_seed(seed: u64) -> Self {
        let head = Node {
            entry: None,
            tail: 0,
            tower: 0,
            height: MAX_HEIGHT as u8,
        };
        Self {
            nodes: vec![head],
            links: vec![NIL_LINK; MAX_HEIGHT],
            free_slots: [NIL; MAX_HEIGHT],
            height: 1,
            len: 0,
            key_bytes: 0,
            rng: if seed == 0 { DEFAULT_SEED } else { seed },
        }
    }

    /// The number of levels in use: the tallest tower in the list.
    pub fn height(&self) -> usize {
        self.height
    }

    /// The total number of links in live towers, head excluded; divided by
    /// [`Index::len`] it should come close to 4/3.
    pub fn live_links(&self) -> usize {
        self.nodes
            .iter()
            .filter(|n| n.entry.is_some())
            .map(|n| usize::from(n.height))
            .sum()
    }

    /// Draws a tower height: 1 plus the number of leading pairs of zero bits
    /// of a random `u64`, so each extra level has probability 1/4.
    fn random_height(&mut self) -> usize {
        // xorshift64* (Vigna): three shifts and a multiply. The multiply
        // mixes best into the high bits, which is why the height is read
        // from the leading bits.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let random = self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (1 + random.leading_zeros() as usize / 2).min(MAX_HEIGHT)
    }

    /// `node`'s link at `level`; the end of the level if it has none.
    fn link(&self, node: u32, level: usize) -> Link {
        match self.nodes.get(node as usize) {
            Some(n) if level < usize::from(n.height) => self
                .links
                .get(n.tower as usize + level)
                .copied()
                .unwrap_or(NIL_LINK),
            _ => NIL_LINK,
        }
    }

    /// The node after `node` at `level`, or NIL.
    fn next(&self, node: u32, level: usize) -> u32 {
        self.link(node, level).next
    }

    /// A link to `to`, carrying its tower and key prefix.
    fn link_to(&self, to: u32) -> Link {
        match self.nodes.get(to as usize) {
            Some(n) => Link {
                next: to,
                tower: n.tower,
                prefix: n.entry.as_ref().map_or(0, |(k, _)| key_prefix(k)),
            },
            None => NIL_LINK,
        }
    }

    /// Sets `node`'s link at `level`.
    fn set_link(&mut self, node: u32, level: usize, link: Link) {
        let slot = match self.nodes.get(node as usize) {
            Some(n) if level < usize::from(n.height) => {
                self.links.get_mut(n.tower as usize + level)
            }
            _ => None,
        };
        debug_assert!(slot.is_some(), "link {node}@{level} does not exist");
        if let Some(slot) = slot {
            *slot = link;
        }
    }

    /// Points `node`'s link at `level` to `to`.
    fn set_next(&mut self, node: u32, level: usize, to: u32) {
        self.set_link(node, level, self.link_to(to));
    }

    /// How the key behind `link` compares with `key` (whose prefix is
    /// `kp`), or `None` at the end of a level. The prefix in the link decides
    /// unless it ties, and only then is the node read (see "The node
    /// settles a tie" in the module docs).
    fn compare(&self, link: Link, kp: u64, key: &[u8]) -> Option<Ordering> {
        if link.next == NIL {
            return None;
        }
        match link.prefix.cmp(&kp) {
            Ordering::Equal => self.compare_node(link.next, key),
            unequal => Some(unequal),
        }
    }

    /// How `node`'s key compares with `key`, given that their first 8 bytes
    /// are equal; `None` for NIL, the head and free slots. The node's tail
    /// (bytes 8..16) decides unless it ties; then, if both keys are at most
    /// 16 bytes long, so do their lengths: two such keys equal in their
    /// first 16 zero-padded bytes differ only by trailing zero bytes, and
    /// the shorter sorts first. Only longer keys have their bytes compared.
    fn compare_node(&self, node: u32, key: &[u8]) -> Option<Ordering> {
        let n = self.nodes.get(node as usize)?;
        let (stored, _) = n.entry.as_ref()?;
        Some(n.tail.cmp(&key_tail(key)).then_with(|| {
            if stored.len() <= INLINE_KEY_LEN && key.len() <= INLINE_KEY_LEN {
                stored.len().cmp(&key.len())
            } else {
                stored.as_ref().cmp(key)
            }
        }))
    }

    /// The key and value of `node`; `None` for NIL, the head and free slots,
    /// which is what stops every walk at the end of a level.
    fn entry(&self, node: u32) -> Option<&(Bytes, V)> {
        self.nodes.get(node as usize)?.entry.as_ref()
    }

    fn key(&self, node: u32) -> Option<&[u8]> {
        self.entry(node).map(|(k, _)| k.as_ref())
    }

    /// For each level in use, the last node whose key is below `key`, or
    /// not above it if `past_equal` (the head if there is none). Levels above
    /// the list's height keep the head, which is the predecessor a new,
    /// taller tower needs there.
    fn predecessors(&self, key: &[u8], past_equal: bool) -> [u32; MAX_HEIGHT] {
        let kp = key_prefix(key);
        let mut preds = [HEAD; MAX_HEIGHT];
        // The current node and where its tower starts (the head's at 0).
        let mut at = (HEAD, 0usize);
        for level in (0..self.height).rev() {
            at = self.walk_level(at, level, kp, key, past_equal).0;
            preds[level] = at.0;
        }
        preds
    }

    /// One level of a search. From the node `at.0`, whose tower starts at
    /// `at.1`, follows `level`'s links while the next key is below `key` (or
    /// not above it, if `past_equal`). Gives the last node passed with where
    /// its tower starts, the link the walk stopped at, and how that link's
    /// key compares with `key` (`None` at the end of the level).
    fn walk_level(
        &self,
        mut at: (u32, usize),
        level: usize,
        kp: u64,
        key: &[u8],
        past_equal: bool,
    ) -> ((u32, usize), Link, Option<Ordering>) {
        loop {
            let link = self.links.get(at.1 + level).copied().unwrap_or(NIL_LINK);
            let order = self.compare(link, kp, key);
            match order {
                Some(Ordering::Less) => {}
                Some(Ordering::Equal) if past_equal => {}
                _ => return (at, link, order),
            }
            at = (link.next, link.tower as usize);
        }
    }

    /// Like [`Self::predecessors`] with `past_equal` false, but gives for
    /// each level where the predecessor's link lies in `links` (the head's
    /// for levels above the list's height), so that an insert can splice
    /// without reading the predecessor nodes again.
    fn predecessor_slots(&self, kp: u64, key: &[u8]) -> [usize; MAX_HEIGHT] {
        // The head's tower starts at 0, so its link at level l is slot l.
        let mut slots: [usize; MAX_HEIGHT] = std::array::from_fn(|level| level);
        let mut at = (HEAD, 0usize);
        for level in (0..self.height).rev() {
            at = self.walk_level(at, level, kp, key, false).0;
            slots[level] = at.1 + level;
        }
        slots
    }

    /// The first node whose key is not below `key` (if `past_equal`, above
    /// it), or NIL.
    fn seek(&self, key: &[u8], past_equal: bool) -> u32 {
        self.next(self.predecessors(key, past_equal)[0], 0)
    }

    /// Takes a slot for a tower of `height`: a free one of that height if any,
    /// else a new one at the end of the arena.
    ///
    /// # Panics
    ///
    /// If the arena would need more than `u32::MAX - 1` nodes or links, the
    /// limit of `u32` addressing (hundreds of gigabytes of entries).
    fn allocate(&mut self, key: Bytes, value: V, height: usize) -> u32 {
        let free = self.free_slots[height - 1];
        let tail = key_tail(&key);
        if let Some(node) = self.nodes.get_mut(free as usize) {
            node.entry = Some((key, value));
            node.tail = tail;
            let chained = self.links.get(node.tower as usize).map_or(NIL, |l| l.next);
            self.free_slots[height - 1] = chained;
            return free;
        }
        let id = arena_index(self.nodes.len());
        let tower = arena_index(self.links.len() + height);
        let tower = tower - height as u32;
        self.links.resize(self.links.len() + height, NIL_LINK);
        self.nodes.push(Node {
            entry: Some((key, value)),
            tail,
            tower,
            height: height as u8,
        });
        id
    }

    /// The value of `key`, inserting `make()` first if the key is absent:
    /// one search either way, where `get` then `insert` would search twice.
    /// An LSM memtable uses it to append a version to a key's list.
    ///
    /// # Panics
    ///
    /// As [`Index::insert`], past `u32::MAX - 1` nodes or links.
    pub fn get_or_insert_with(&mut self, key: Bytes, make: impl FnOnce() -> V) -> &mut V {
        let kp = key_prefix(&key);
        let slots = self.predecessor_slots(kp, &key);
        let first = self.links.get(slots[0]).copied().unwrap_or(NIL_LINK);
        // The key is present only if the next node's prefix matches; only
        // then are its key bytes read (a likely cache miss), so a new key
        // costs no visit to its successor's node.
        let node = if first.next != NIL
            && first.prefix == kp
            && self.compare_node(first.next, &key) == Some(Ordering::Equal)
        {
            first.next
        } else {
            let height = self.random_height();
            let key_len = key.len();
            let node = self.allocate(key, make(), height);
            let to_node = self.link_to(node);
            for (level, &slot) in slots.iter().enumerate().take(height) {
                // Splice through the predecessors' links directly: the
                // search already knows where they lie, so no predecessor
                // node is read again.
                if let Some(pred_link) = self.links.get_mut(slot) {
                    let old = std::mem::replace(pred_link, to_node);
                    self.set_link(node, level, old);
                }
            }
            self.height = self.height.max(height);
            self.len += 1;
            self.key_bytes += key_len;
            node
        };
        match self
            .nodes
            .get_mut(node as usize)
            .and_then(|n| n.entry.as_mut())
        {
            Some((_, value)) => value,
            // `node` was found live or just allocated with an entry.
            None => unreachable!("skip list node {node} has no entry"),
        }
    }

    /// Checks every structural invariant listed in the module docs (all but
    /// the statistical one) and returns the first one broken. It walks every
    /// level, O(n · height): for tests and debugging.
    pub fn check_invariants(&self) -> Result<(), String> {
        let head = self.nodes.first().ok_or("the arena has no head")?;
        if head.entry.is_some() || usize::from(head.height) != MAX_HEIGHT || head.tower != 0 {
            return Err("node 0 is not a head of MAX_HEIGHT without entry".into());
        }
        if !(1..=MAX_HEIGHT).contains(&self.height) {
            return Err(format!(
                "list height {} out of 1..={MAX_HEIGHT}",
                self.height
            ));
        }
        // Towers are disjoint slices of `links` laid out in node order.
        let mut end = 0usize;
        for (id, n) in self.nodes.iter().enumerate() {
            if n.height == 0 || usize::from(n.height) > MAX_HEIGHT || n.tower as usize != end {
                return Err(format!("node {id}: bad tower {}+{}", n.tower, n.height));
            }
            end += usize::from(n.height);
        }
        if end != self.links.len() {
            return Err(format!("towers cover {end} links of {}", self.links.len()));
        }
        let live: Vec<&Node<V>> = self.nodes.iter().filter(|n| n.entry.is_some()).collect();
        if live.len() != self.len {
            return Err(format!("{} live nodes, len says {}", live.len(), self.len));
        }
        let tallest = live
            .iter()
            .map(|n| usize::from(n.height))
            .max()
            .unwrap_or(1);
        if tallest != self.height {
            return Err(format!(
                "tallest tower {tallest}, height says {}",
                self.height
            ));
        }
        for level in 0..MAX_HEIGHT {
            // Walk the level; a cycle would exceed the arena's size.
            let (mut count, mut previous, mut previous_node, mut node) =
                (0usize, None::<&[u8]>, HEAD, self.next(HEAD, level));
            while node != NIL {
                let n = self
                    .nodes
                    .get(node as usize)
                    .ok_or(format!("link to {node} outside the arena"))?;
                let Some((key, _)) = &n.entry else {
                    return Err(format!("level {level} links to free slot {node}"));
                };
                if n.tail != key_tail(key) {
                    return Err(format!("node {node} has a stale tail"));
                }
                if usize::from(n.height) <= level {
                    return Err(format!(
                        "node {node} of height {} found at level {level}",
                        n.height
                    ));
                }
                if self.link(previous_node, level) != self.link_to(node) {
                    return Err(format!(
                        "the link to node {node} at level {level} has a stale tower or prefix"
                    ));
                }
                if previous.is_some_and(|p| p >= key.as_ref()) {
                    return Err(format!(
                        "level {level} is not strictly ascending at node {node}"
                    ));
                }
                count += 1;
                if count > self.nodes.len() {
                    return Err(format!("level {level} has a cycle"));
                }
                previous = Some(key);
                previous_node = node;
                node = self.next(node, level);
            }
            let expected = live
                .iter()
                .filter(|n| usize::from(n.height) > level)
                .count();
            if count != expected {
                return Err(format!(
                    "level {level} links {count} nodes of {expected} tall enough"
                ));
            }
        }
        let key_bytes: usize = live
            .iter()
            .filter_map(|n| n.entry.as_ref())
            .map(|(k, _)| k.len())
            .sum();
        if key_bytes != self.key_bytes {
            return Err(format!(
                "keys hold {key_bytes} bytes, key_bytes says {}",
                self.key_bytes
            ));
        }
        // Every other slot is on the free list of its height, exactly once.
        let mut free = 0usize;
        for (h, &first) in self.free_slots.iter().enumerate() {
            let mut slot = first;
            while slot != NIL {
                let n = self
                    .nodes
                    .get(slot as usize)
                    .ok_or(format!("free slot {slot} outside the arena"))?;
                if n.entry.is_some() || usize::from(n.height) != h + 1 || slot == HEAD {
                    return Err(format!("free list {} holds node {slot}", h + 1));
                }
                free += 1;
                if free >= self.nodes.len() {
                    return Err("a free list has a cycle".into());
                }
                slot = self.links.get(n.tower as usize).map_or(NIL, |l| l.next);
            }
        }
        if 1 + self.len + free != self.nodes.len() {
            return Err(format!(
                "{} slots, {} live, {free} free",
                self.nodes.len(),
                self.len
            ));
        }
        Ok(())
    }
}

/// `n` as an arena index.
fn arena_index(n: usize) -> u32 {
    match u32::try_from(n) {
        Ok(i) if i != NIL => i,
        _ => panic!("SkipListIndex is full: u32 addressing holds at most {NIL} nodes and links"),
    }
}

impl<V: Send + Sync> Index<V> for SkipListIndex<V> {
    /// # Panics
    ///
    /// Past `u32::MAX - 1` nodes or links (see the module docs), as `Vec`
    /// panics past `isize::MAX` bytes.
    fn insert(&mut self, key: Bytes, value: V) -> Option<V> {
        let preds = self.predecessors(&key, false);
        // The key is present only if the next node's prefix matches, and
        // the node (not the key's bytes) settles the rest.
        let first = self.link(preds[0], 0);
        if first.next != NIL
            && first.prefix == key_prefix(&key)
            && self.compare_node(first.next, &key) == Some(Ordering::Equal)
            && let Some(Node {
                entry: Some((_, v)),
                ..
            }) = self.nodes.get_mut(first.next as usize)
        {
            return Some(std::mem::replace(v, value));
        }
        let height = self.random_height();
        let key_len = key.len();
        let node = self.allocate(key, value, height);
        // Splice bottom-up. `preds` already holds the head for levels above
        // the old height, so a taller tower hangs off the head there.
        for (level, &pred) in preds.iter().enumerate().take(height) {
            self.set_link(node, level, self.link(pred, level));
            self.set_next(pred, level, node);
        }
        self.height = self.height.max(height);
        self.len += 1;
        self.key_bytes += key_len;
        None
    }

    fn get(&self, key: &[u8]) -> Option<&V> {
        // Like `predecessors`, but stops at the first level where the key
        // turns up instead of always descending to level 0. Only `links` is
        // read until a prefix ties: one cache line per step.
        let kp = key_prefix(key);
        let mut at = (HEAD, 0usize);
        for level in (0..self.height).rev() {
            let (passed, link, order) = self.walk_level(at, level, kp, key, false);
            if order == Some(Ordering::Equal) {
                return self.entry(link.next).map(|(_, v)| v);
            }
            at = passed;
        }
        None
    }

    fn remove(&mut self, key: &[u8]) -> Option<V> {
        let preds = self.predecessors(key, false);
        let found = self.next(preds[0], 0);
        if self.key(found) != Some(key) {
            return None;
        }
        let height = usize::from(self.nodes.get(found as usize)?.height);
        for (level, &pred) in preds.iter().enumerate().take(height) {
            self.set_link(pred, level, self.link(found, level));
        }
        // Free the slot: drop the key, chain the slot onto its free list.
        let chained = self.free_slots[height - 1];
        self.set_next(found, 0, chained);
        self.free_slots[height - 1] = found;
        let (key, value) = self.nodes.get_mut(found as usize)?.entry.take()?;
        while self.height > 1 && self.next(HEAD, self.height - 1) == NIL {
            self.height -= 1;
        }
        self.len -= 1;
        self.key_bytes -= key.len();
        Some(value)
    }

    fn is_ordered(&self) -> bool {
        true
    }

    fn range<'a>(&'a self, start: Bound<&[u8]>, end: Bound<&[u8]>) -> RangeIter<'a, V> {
        // Two seeks give the first node in the range and the first node past
        // it; the walk between them needs no key comparison at all.
        let first = match start {
            Bound::Included(s) => self.seek(s, false),
            Bound::Excluded(s) => self.seek(s, true),
            Bound::Unbounded => self.next(HEAD, 0),
        };
        let (stop, first_in_range) = match (end, self.key(first)) {
            (_, None) => (NIL, false),
            (Bound::Included(e), Some(k)) => (self.seek(e, true), k <= e),
            (Bound::Excluded(e), Some(k)) => (self.seek(e, false), k < e),
            (Bound::Unbounded, Some(_)) => (NIL, true),
        };
        // If `first` lies past the end, the range is empty or inverted, and
        // the walk from `first` would never meet `stop`.
        let (next, stop) = if first_in_range {
            (first, stop)
        } else {
            (NIL, NIL)
        };
        Box::new(Range {
            list: self,
            next,
            stop,
        })
    }

    fn len(&self) -> usize {
        self.len
    }

    fn clear(&mut self) {
        // Keep the arena's capacity for the next fill, as `Vec::clear` does.
        self.nodes.truncate(1);
        self.links.clear();
        self.links.resize(MAX_HEIGHT, NIL_LINK);
        self.free_slots = [NIL; MAX_HEIGHT];
        self.height = 1;
        self.len = 0;
        self.key_bytes = 0;
    }

    fn memory_bytes(&self) -> usize {
        // Everything on the heap: the arena and the links as allocated
        // (capacity, not length: free slots and growth room cost memory
        // too), plus the key bytes each `Bytes` owns. A value's own heap
        // data, if it has any, is not seen.
        self.nodes.capacity() * std::mem::size_of::<Node<V>>()
            + self.links.capacity() * std::mem::size_of::<Link>()
            + self.key_bytes
    }
}

/// A walk along level 0 from `next` up to, not including, `stop`.
struct Range<'a, V> {
    list: &'a SkipListIndex<V>,
    next: u32,
    stop: u32,
}

impl<'a, V> Iterator for Range<'a, V> {
    type Item = (&'a Bytes, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        if self.next == self.stop {
            return None;
        }
        let (key, value) = self.list.entry(self.next)?;
        self.next = self.list.next(self.next, 0);
        Some((key, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u32) -> Bytes {
        Bytes::copy_from_slice(&i.to_be_bytes())
    }

    #[test]
    fn get_or_insert_with_agrees_with_a_btreemap_through_removals() {
        // Keys that share their first 8 bytes (prefix ties) and keys that
        // do not, inserted, appended to and removed in a scrambled order,
        // so free slots are reused by the splice that skips the nodes.
        let mut list = SkipListIndex::<Vec<u32>>::new();
        let mut model = std::collections::BTreeMap::<Bytes, Vec<u32>>::new();
        let key_of = |i: u32| {
            let mut k = b"prefix__".to_vec();
            k.extend_from_slice(&(i % 97).to_be_bytes());
            if i.is_multiple_of(3) {
                key(i % 89)
            } else {
                Bytes::from(k)
            }
        };
        for step in 0..5000u32 {
            let i = step.wrapping_mul(2_654_435_761) >> 20;
            let k = key_of(i);
            if step % 5 == 4 {
                assert_eq!(list.remove(&k), model.remove(&k));
            } else {
                list.get_or_insert_with(k.clone(), Vec::new).push(step);
                model.entry(k).or_default().push(step);
            }
            if step.is_multiple_of(250) {
                list.check_invariants().unwrap();
            }
        }
        list.check_invariants().unwrap();
        let listed: Vec<(Bytes, Vec<u32>)> = list
            .range(Bound::Unbounded, Bound::Unbounded)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert_eq!(listed, model.into_iter().collect::<Vec<_>>());
    }

    #[test]
    fn keys_that_tie_on_prefix_and_tail_agree_with_a_btreemap() {
        // Keys that differ only past byte 8, only past byte 16, or only by
        // trailing zero bytes: the tail, the lengths and the key bytes each
        // have to settle some comparison. Inserted in a scrambled order,
        // some removed and reinserted (free slots keep a stale tail).
        let mut keys = Vec::new();
        for len in 0..=20usize {
            for last in [0u8, 1, 0xFF] {
                let mut k = vec![7u8; len];
                if let Some(b) = k.last_mut() {
                    *b = last;
                }
                keys.push(Bytes::from(k));
            }
        }
        let mut list = SkipListIndex::<usize>::new();
        let mut model = std::collections::BTreeMap::<Bytes, usize>::new();
        let n = keys.len();
        for step in 0..4 * n {
            let k = keys[(step * 37) % n].clone();
            if step % 3 == 2 {
                assert_eq!(list.remove(&k), model.remove(&k), "remove {k:?}");
            } else {
                assert_eq!(list.insert(k.clone(), step), model.insert(k, step));
            }
            list.check_invariants().unwrap();
        }
        for k in &keys {
            assert_eq!(list.get(k), model.get(k), "get {k:?}");
            let mut missing = k.to_vec();
            missing.push(0);
            missing.push(0);
            assert_eq!(list.get(&missing), model.get(missing.as_slice()));
        }
        let listed: Vec<(Bytes, usize)> = list
            .range(Bound::Unbounded, Bound::Unbounded)
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        assert_eq!(listed, model.into_iter().collect::<Vec<_>>());
    }

    #[test]
    fn check_invariants_catches_a_stale_tail() {
        let mut list = SkipListIndex::new();
        for i in 0..100u64 {
            list.insert(Bytes::from(format!("key-{i:012}")), i);
        }
        list.check_invariants().expect("a fresh list is valid");
        let node = list.next(HEAD, 0);
        if let Some(n) = list.nodes.get_mut(node as usize) {
            n.tail ^= 1;
        }
        assert!(list.check_invariants().is_err());
    }

    #[test]
    fn tower_heights_are_geometric_with_p_one_quarter() {
        let mut list = SkipListIndex::<()>::new();
        let draws = 1 << 20;
        let mut at_least = [0u32; MAX_HEIGHT + 1];
        for _ in 0..draws {
            let h = list.random_height();
            assert!((1..=MAX_HEIGHT).contains(&h));
            for count in &mut at_least[1..=h] {
                *count += 1;
            }
        }
        // P(height >= l) = (1/4)^(l-1). A count is binomial, so its
        // standard deviation is below sqrt(expected); allow 5 of them.
        for (level, &count) in at_least.iter().enumerate().take(8).skip(1) {
            let expected = draws as f64 / 4f64.powi(level as i32 - 1);
            let off = (f64::from(count) - expected).abs();
            assert!(
                off <= 5.0 * expected.sqrt(),
                "level {level}: {count} vs {expected}"
            );
        }
        // 16 levels need 30 zero bits in a row: 2^-30 per draw, never seen
        // in 2^20 draws unless the cap or the bit counting is wrong.
        assert_eq!(at_least[MAX_HEIGHT], 0);
    }

    #[test]
    fn height_grows_like_log4_and_links_average_four_thirds() {
        let mut list = SkipListIndex::new();
        for i in 0..100_000 {
            list.insert(key(i), i);
        }
        list.check_invariants().expect("invariants");
        // log_4(100 000) ≈ 8.3: the tallest tower lands within a few levels.
        assert!(
            (7..=12).contains(&list.height()),
            "height {}",
            list.height()
        );
        let per_node = list.live_links() as f64 / list.len() as f64;
        assert!(
            (1.30..1.37).contains(&per_node),
            "{per_node} links per node"
        );
    }

    #[test]
    fn same_seed_same_list_other_seed_other_list() {
        let build = |seed| {
            let mut list = SkipListIndex::with_seed(seed);
            for i in 0..1000 {
                list.insert(key(i), i);
            }
            list.nodes.iter().map(|n| n.height).collect::<Vec<_>>()
        };
        assert_eq!(build(7), build(7));
        assert_ne!(build(7), build(8));
        assert_eq!(build(0), build(DEFAULT_SEED));
    }

    #[test]
    fn removed_slots_are_reused_and_height_shrinks() {
        let mut list = SkipListIndex::new();
        for i in 0..1000 {
            list.insert(key(i), i);
        }
        let arena = list.nodes.len();
        for round in 0..20 {
            for i in 0..1000 {
                assert_eq!(list.remove(&key(i)), Some(i + round * 1000));
            }
            assert_eq!(list.height(), 1, "an empty list searches one level");
            list.check_invariants().expect("invariants after removes");
            for i in 0..1000 {
                list.insert(key(i), i + (round + 1) * 1000);
            }
            list.check_invariants().expect("invariants after inserts");
        }
        // Reuse is per height, so a refill may draw a few more towers of
        // some height than were freed; the arena must stay near its size.
        assert!(
            list.nodes.len() < arena + arena / 5,
            "{} slots for 1000 keys",
            list.nodes.len()
        );
    }

    #[test]
    fn check_invariants_catches_a_broken_list() {
        let mut list = SkipListIndex::new();
        for i in 0..100 {
            list.insert(key(i), i);
        }
        list.check_invariants().expect("a fresh list is valid");

        let mut unsorted = list.clone();
        let (first, second) = (
            unsorted.next(HEAD, 0),
            unsorted.next(unsorted.next(HEAD, 0), 0),
        );
        if let Some(Node {
            entry: Some((k, _)),
            ..
        }) = unsorted.nodes.get_mut(first as usize)
        {
            *k = key(1000);
        }
        assert!(unsorted.check_invariants().is_err());

        let mut cycle = list.clone();
        cycle.set_next(second, 0, first);
        assert!(cycle.check_invariants().is_err());

        let mut lost = list.clone();
        lost.set_next(HEAD, 0, second);
        assert!(lost.check_invariants().is_err());

        let mut counted = list;
        counted.len += 1;
        assert!(counted.check_invariants().is_err());
    }

    #[test]
    fn memory_counts_arena_links_and_keys() {
        let mut list = SkipListIndex::<u64>::new();
        for i in 0..1000 {
            list.insert(key(i), u64::from(i));
        }
        let expected = list.nodes.capacity() * std::mem::size_of::<Node<u64>>()
            + list.links.capacity() * 16
            + 1000 * 4;
        assert_eq!(list.memory_bytes(), expected);
    }
}
