//! Node arenas that grow in fixed chunks, into memory the kernel may back
//! with huge pages.
//!
//! # Why: TLB reach
//!
//! A CPU translates every virtual address through its TLB, a cache of a
//! few thousand page translations. With 4 KiB pages that covers a few MiB;
//! the B+tree of 300,000 keys keeps about 30 MiB of leaves, so a random
//! lookup misses the TLB at its leaf (and often at the inner node above
//! it), and each miss is a page-table walk: four dependent loads, and on a
//! virtual machine, where each step of the guest's walk is translated
//! through the host's page tables, up to 24. 15 huge pages cover what
//! takes 7,680 small ones. On the VM these benchmarks run on, a lookup in
//! such a tree took about 0.8 of the time in huge pages that it took in
//! 4 KiB pages (`examples/tlb_reach.rs`; `docs/benchmarks/logread.md`,
//! "Session 15").
//!
//! Linux backs anonymous memory with huge pages ("transparent huge
//! pages") everywhere, only where asked with `madvise(MADV_HUGEPAGE)`, or
//! nowhere, as `/sys/kernel/mm/transparent_hugepage/enabled` says; many
//! distributions ship `madvise`, so memory nobody advises gets none.
//!
//! # Why chunks: a node is written once
//!
//! An arena that doubles (as `Vec::push` does) moves every node to the
//! new allocation at each growth: about twice over its life, and each move
//! writes memory the kernel has to hand out zeroed first. For the memory
//! engine's map after a million SQL rows (about 200 MiB of leaves) that
//! was a fifth of the insert's time: the copy, and the kernel clearing
//! the pages the copy lands on (`docs/benchmarks/sql-oltp.md`, "Session
//! 20: the arena"). An [`Arena`] is a list of chunks instead. The first
//! chunk doubles like a `Vec` until it holds [`Arena::CHUNK`] nodes (a
//! small tree costs what it did); every later chunk is allocated at that
//! size and never moves, so a node is written once and each page is
//! cleared once.
//!
//! Node `i` is `chunks[i / CHUNK][i % CHUNK]`, and `CHUNK` is a power of
//! two, so the lookup is a shift and a mask, and one more load from the
//! chunk table, which is small enough to stay in the cache.
//!
//! # Huge pages
//!
//! A chunk is advised *before the first write* (the kernel picks the page
//! size when a page is first touched: memory already written in 4 KiB
//! pages stays so until a background thread maybe merges it). Only the
//! whole 2 MiB-aligned blocks inside the allocation are advised
//! ([`huge_page_span`]): nothing else can become a huge page, and the
//! advice then never touches memory the arena does not own. A full chunk
//! is at least [`CHUNK_BYTES`] (8 MiB), so at least three quarters of it
//! can be huge pages; an allocation under 4 MiB has at most one such block
//! and is not worth a system call.
//!
//! The advice is a hint. Where the kernel has no transparent huge pages,
//! has them off, or finds no free 2 MiB of physical memory, the call fails
//! or the fault falls back to 4 KiB pages, and nothing else changes: the
//! error is ignored on purpose. Other systems than Linux get no advice.

use std::ops::{Index, IndexMut};

/// The size of a huge page on x86-64 and on aarch64 with 4 KiB base
/// pages. Elsewhere a 2 MiB-aligned span is still page-aligned, so the
/// advice stays valid (if less useful).
const HUGE_PAGE: usize = 2 << 20;

/// Arenas smaller than this are not advised: they hold at most one whole
/// huge page.
const ADVISE_FROM: usize = 2 * HUGE_PAGE;

/// A full chunk holds at least this many bytes of nodes (and less than
/// twice as many): at least three quarters of it lies in whole huge pages.
pub(crate) const CHUNK_BYTES: usize = 8 << 20;

/// Nodes of `size` bytes per full chunk: the smallest power of two whose
/// nodes fill [`CHUNK_BYTES`].
const fn chunk_nodes(size: usize) -> usize {
    let size = if size == 0 { 1 } else { size };
    CHUNK_BYTES.div_ceil(size).next_power_of_two()
}

/// Nodes named by index, stored in chunks that never move (see the module
/// docs). Indexed like a `Vec`: `arena[i]`, `arena.get(i)`.
#[derive(Debug, Clone)]
pub(crate) struct Arena<T> {
    /// Every chunk but the last holds exactly [`Self::CHUNK`] nodes; the
    /// last holds 1 to `CHUNK`. No chunk is empty.
    chunks: Vec<Vec<T>>,
}

impl<T> Default for Arena<T> {
    fn default() -> Self {
        Self { chunks: Vec::new() }
    }
}

impl<T> Arena<T> {
    /// Nodes per full chunk, a power of two.
    pub(crate) const CHUNK: usize = chunk_nodes(size_of::<T>());
    /// `log2(CHUNK)`: node `i` lies in chunk `i >> SHIFT`.
    const SHIFT: u32 = Self::CHUNK.trailing_zeros();
    /// The smallest first chunk.
    const FIRST: usize = if Self::CHUNK < 4 { Self::CHUNK } else { 4 };

    /// An arena holding `node` alone.
    pub(crate) fn with(node: T) -> Self {
        let mut arena = Self::default();
        arena.push(node);
        arena
    }

    pub(crate) fn len(&self) -> usize {
        match self.chunks.last() {
            None => 0,
            Some(last) => (self.chunks.len() - 1) * Self::CHUNK + last.len(),
        }
    }

    /// Appends `node`: into the last chunk if it has room (the first chunk
    /// doubles until it holds `CHUNK` nodes), else into a new chunk of
    /// `CHUNK` nodes, advised for huge pages before its first write.
    pub(crate) fn push(&mut self, node: T) {
        match self.chunks.last_mut() {
            Some(last) if last.len() < Self::CHUNK => {
                if last.len() == last.capacity() {
                    grow(last, Self::CHUNK);
                }
                last.push(node);
            }
            _ => {
                let capacity = if self.chunks.is_empty() {
                    Self::FIRST
                } else {
                    Self::CHUNK
                };
                let mut chunk = fresh::<T>(capacity);
                chunk.push(node);
                self.chunks.push(chunk);
            }
        }
    }

    pub(crate) fn get(&self, i: usize) -> Option<&T> {
        self.chunks
            .get(i >> Self::SHIFT)?
            .get(i & (Self::CHUNK - 1))
    }

    pub(crate) fn first_mut(&mut self) -> Option<&mut T> {
        self.chunks.first_mut()?.first_mut()
    }

    /// The nodes in index order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flatten()
    }

    /// Keeps the first `len` nodes (all of them if there are fewer).
    pub(crate) fn truncate(&mut self, len: usize) {
        if len >= self.len() {
            return;
        }
        let keep = len.div_ceil(Self::CHUNK);
        self.chunks.truncate(keep);
        if let Some(last) = self.chunks.last_mut() {
            last.truncate(len - (keep - 1) * Self::CHUNK);
        }
    }

    pub(crate) fn clear(&mut self) {
        self.chunks.clear();
    }

    /// Bytes allocated for nodes (the chunks' capacities).
    pub(crate) fn allocated_bytes(&self) -> usize {
        let nodes: usize = self.chunks.iter().map(Vec::capacity).sum();
        nodes.saturating_mul(size_of::<T>())
    }
}

impl<T> Index<usize> for Arena<T> {
    type Output = T;

    /// # Panics
    ///
    /// If `i` is not below `len()`, as a `Vec` does.
    #[inline]
    fn index(&self, i: usize) -> &T {
        &self.chunks[i >> Self::SHIFT][i & (Self::CHUNK - 1)]
    }
}

impl<T> IndexMut<usize> for Arena<T> {
    #[inline]
    fn index_mut(&mut self, i: usize) -> &mut T {
        &mut self.chunks[i >> Self::SHIFT][i & (Self::CHUNK - 1)]
    }
}

/// An empty chunk with room for `capacity` nodes, advised for huge pages
/// if it is large enough to hold any.
fn fresh<T>(capacity: usize) -> Vec<T> {
    let chunk: Vec<T> = Vec::with_capacity(capacity);
    let bytes = chunk.capacity().saturating_mul(size_of::<T>());
    if bytes >= ADVISE_FROM {
        advise_huge_pages(chunk.as_ptr().addr(), bytes);
    }
    chunk
}

/// Doubles the first chunk's room (at most to `limit` nodes) into freshly
/// advised memory, moving its nodes over.
#[cold]
fn grow<T>(chunk: &mut Vec<T>, limit: usize) {
    let capacity = chunk.capacity().saturating_mul(2).clamp(1, limit.max(1));
    let mut bigger = fresh::<T>(capacity);
    bigger.append(chunk);
    *chunk = bigger;
}

/// The 2 MiB-aligned part of `len` bytes at `addr`, as (start, length):
/// the blocks that could become huge pages, all inside the range. `None`
/// if the range holds no whole block.
pub(crate) fn huge_page_span(addr: usize, len: usize) -> Option<(usize, usize)> {
    let start = addr.checked_next_multiple_of(HUGE_PAGE)?;
    let end = addr.checked_add(len)? / HUGE_PAGE * HUGE_PAGE;
    (end > start).then(|| (start, end - start))
}

/// Asks the kernel to back the whole huge pages inside `len` bytes at
/// `addr` (an allocation the caller owns) with huge pages; quietly does
/// nothing where it cannot.
#[cfg(target_os = "linux")]
fn advise_huge_pages(addr: usize, len: usize) {
    let Some((start, span)) = huge_page_span(addr, len) else {
        return;
    };
    #[expect(
        unsafe_code,
        reason = "madvise is a system call; libc exposes it as an unsafe fn"
    )]
    // SAFETY: `start..start + span` lies inside an allocation the caller
    // owns (`huge_page_span` only shrinks the range) and is page-aligned,
    // as madvise requires. MADV_HUGEPAGE changes neither the contents nor
    // the protection of the range, only the page size the kernel may back
    // it with, so no reference into the memory is affected.
    let _ignored_on_purpose = unsafe {
        libc::madvise(
            std::ptr::without_provenance_mut(start),
            span,
            libc::MADV_HUGEPAGE,
        )
    };
}

#[cfg(not(target_os = "linux"))]
fn advise_huge_pages(_addr: usize, _len: usize) {}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node of the size of a B+tree leaf, with its own id and a heap part,
    /// so that a lost, repeated or torn node shows.
    #[derive(Debug, Clone, PartialEq)]
    struct Node {
        id: u64,
        filler: [u64; 240],
        name: String,
    }

    fn node(id: u64) -> Node {
        Node {
            id,
            filler: [id.wrapping_mul(0x9e37_79b9_7f4a_7c15); 240],
            name: format!("node {id}"),
        }
    }

    #[test]
    fn pushes_across_chunks_keep_every_node_in_order() {
        let mut arena = Arena::default();
        let chunk = Arena::<Node>::CHUNK;
        let n = 2 * chunk + 3;
        for id in 0..n as u64 {
            arena.push(node(id));
            assert_eq!(arena.len() as u64, id + 1);
        }
        for i in 0..n {
            assert_eq!(arena[i], node(i as u64), "node {i}");
            assert_eq!(arena.get(i), Some(&node(i as u64)), "node {i}");
        }
        assert_eq!(arena.get(n), None);
        assert!(
            arena
                .iter()
                .eq((0..n as u64).map(node).collect::<Vec<_>>().iter())
        );
        arena[chunk + 1].name = "changed".into();
        assert_eq!(arena[chunk + 1].name, "changed");
        assert_eq!(arena[chunk], node(chunk as u64));
        // Three chunks: two full ones of `CHUNK` nodes and the last.
        assert_eq!(arena.chunks.len(), 3);
        assert_eq!(arena.chunks[2].len(), 3);
    }

    #[test]
    fn a_chunk_holds_a_power_of_two_of_nodes_filling_at_least_chunk_bytes() {
        for size in [1, 24, 1_000, 1_944, 2_688, CHUNK_BYTES, CHUNK_BYTES + 1] {
            let nodes = chunk_nodes(size);
            assert!(nodes.is_power_of_two(), "{size}: {nodes}");
            assert!(nodes * size >= CHUNK_BYTES, "{size}: {nodes}");
            assert!(
                nodes == 1 || (nodes / 2) * size < CHUNK_BYTES,
                "{size}: {nodes}"
            );
        }
        assert_eq!(chunk_nodes(0), CHUNK_BYTES);
        assert_eq!(Arena::<Node>::CHUNK, chunk_nodes(size_of::<Node>()));
    }

    #[test]
    fn nodes_past_the_first_chunk_never_move() {
        let mut arena = Arena::default();
        let chunk = Arena::<Node>::CHUNK;
        for id in 0..chunk as u64 + 1 {
            arena.push(node(id));
        }
        let first: *const Node = &arena[0];
        let second: *const Node = &arena[chunk];
        for id in chunk as u64 + 1..3 * chunk as u64 {
            arena.push(node(id));
        }
        // The point of the chunks: growth moves no node, so none is
        // written twice (a doubling arena would have moved both).
        assert!(std::ptr::eq(first, &arena[0]));
        assert!(std::ptr::eq(second, &arena[chunk]));
        // The first chunk stops at `CHUNK` nodes; later chunks start at it.
        assert_eq!(arena.chunks[0].capacity(), chunk);
        assert!(arena.chunks[1..].iter().all(|c| c.capacity() == chunk));
    }

    #[test]
    fn truncate_and_clear_keep_the_first_nodes() {
        let chunk = Arena::<Node>::CHUNK;
        let n = chunk + 5;
        let fill = || {
            let mut arena = Arena::default();
            for id in 0..n as u64 {
                arena.push(node(id));
            }
            arena
        };
        for keep in [0, 1, chunk - 1, chunk, chunk + 1, n, n + 7] {
            let mut arena = fill();
            arena.truncate(keep);
            assert_eq!(arena.len(), keep.min(n), "keep {keep}");
            assert!(
                arena
                    .iter()
                    .eq((0..keep.min(n) as u64).map(node).collect::<Vec<_>>().iter())
            );
            // Pushes after a truncate continue at the right index.
            arena.push(node(99));
            assert_eq!(arena[keep.min(n)], node(99), "keep {keep}");
        }
        let mut arena = fill();
        arena.clear();
        assert_eq!(arena.len(), 0);
        assert_eq!(arena.get(0), None);
        let mut with = Arena::with(node(7));
        assert_eq!((with.len(), with.first_mut().map(|n| n.id)), (1, Some(7)));
        // A clone (whose last chunk has no spare room) still grows right.
        let mut copy = fill().clone();
        copy.push(node(n as u64));
        assert!(
            copy.iter()
                .eq((0..=n as u64).map(node).collect::<Vec<_>>().iter())
        );
    }

    #[test]
    fn the_span_is_the_whole_huge_pages_inside_the_range() {
        const MIB: usize = 1 << 20;
        // Aligned both ends: all of it.
        assert_eq!(huge_page_span(4 * MIB, 6 * MIB), Some((4 * MIB, 6 * MIB)));
        // Unaligned: shrunk inward at both ends, never past them.
        assert_eq!(
            huge_page_span(4 * MIB + 16, 6 * MIB),
            Some((6 * MIB, 4 * MIB))
        );
        assert_eq!(
            huge_page_span(3 * MIB, 6 * MIB + 4096),
            Some((4 * MIB, 4 * MIB))
        );
        // No whole block inside: nothing to advise.
        assert_eq!(huge_page_span(MIB, 2 * MIB), None);
        assert_eq!(huge_page_span(4 * MIB + 1, 2 * MIB), None);
        assert_eq!(huge_page_span(4096, 0), None);
        // At the top of the address space: no overflow.
        assert_eq!(huge_page_span(usize::MAX - 10, 5), None);
        assert_eq!(huge_page_span(usize::MAX - 3 * MIB, 3 * MIB), None);
        for (addr, len) in [(12_345, 9 * MIB), (2 * MIB - 1, 4 * MIB + 2)] {
            let (start, span) = huge_page_span(addr, len).expect("a block fits");
            assert!(start >= addr && start + span <= addr + len);
            assert!(start.is_multiple_of(HUGE_PAGE) && span.is_multiple_of(HUGE_PAGE));
        }
    }

    #[test]
    fn advising_a_range_with_no_huge_page_or_no_mapping_is_quiet() {
        let small = [0u8; 64];
        advise_huge_pages(small.as_ptr().addr(), small.len());
        // A span no process has mapped (the kernel answers ENOMEM): ignored.
        advise_huge_pages(HUGE_PAGE, 2 * HUGE_PAGE);
        assert_eq!(small, [0u8; 64]);
    }

    /// The `VmFlags` of the mapping that holds `addr`, from
    /// `/proc/self/smaps`.
    #[cfg(target_os = "linux")]
    fn vm_flags_at(addr: usize) -> Option<String> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
        let mut inside = false;
        for line in smaps.lines() {
            let range = line.split_whitespace().next().and_then(|r| {
                let (lo, hi) = r.split_once('-')?;
                Some((
                    usize::from_str_radix(lo, 16).ok()?,
                    usize::from_str_radix(hi, 16).ok()?,
                ))
            });
            if let Some((lo, hi)) = range {
                inside = (lo..hi).contains(&addr);
            } else if inside && let Some(flags) = line.strip_prefix("VmFlags:") {
                return Some(flags.to_string());
            }
        }
        None
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_large_arena_is_advised_for_huge_pages() {
        if !std::path::Path::new("/sys/kernel/mm/transparent_hugepage").exists() {
            return; // no transparent huge pages in this kernel: nothing to see
        }
        let mut arena = Arena::default();
        // Past the first chunk: the second is a full chunk of ~16 MiB.
        let chunk = Arena::<Node>::CHUNK;
        for id in 0..chunk as u64 + 1 {
            arena.push(node(id));
        }
        let second = &arena.chunks[1];
        let bytes = second.capacity() * size_of::<Node>();
        let (start, _) =
            huge_page_span(second.as_ptr().addr(), bytes).expect("a full chunk holds a huge page");
        let flags = vm_flags_at(start).expect("the arena's mapping is in /proc/self/smaps");
        // `hg`: the mapping carries MADV_HUGEPAGE.
        assert!(
            flags.split_whitespace().any(|f| f == "hg"),
            "VmFlags:{flags}"
        );
    }
}
