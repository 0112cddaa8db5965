//! Node arenas that grow into memory the kernel may back with huge pages.
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
//! # How
//!
//! An arena is a `Vec` of nodes that only grows by [`push`]. When it is
//! full, [`push`] allocates one twice as large, advises it *before the
//! first write* (the kernel picks the page size when a page is first
//! touched: memory already written in 4 KiB pages stays so until a
//! background thread maybe merges it), and moves the nodes over. The same
//! doubling as `Vec::push`, so the same amortized cost: each node is moved
//! about twice over the arena's life.
//!
//! Only the whole 2 MiB-aligned blocks inside the allocation are advised
//! ([`huge_page_span`]): nothing else can become a huge page, and the
//! advice then never touches memory the arena does not own. An arena under
//! 4 MiB has at most one such block and is not worth a system call.
//!
//! The advice is a hint. Where the kernel has no transparent huge pages,
//! has them off, or finds no free 2 MiB of physical memory, the call fails
//! or the fault falls back to 4 KiB pages, and nothing else changes: the
//! error is ignored on purpose. Other systems than Linux get no advice.

/// The size of a huge page on x86-64 and on aarch64 with 4 KiB base
/// pages. Elsewhere a 2 MiB-aligned span is still page-aligned, so the
/// advice stays valid (if less useful).
const HUGE_PAGE: usize = 2 << 20;

/// Arenas smaller than this are not advised: they hold at most one whole
/// huge page.
const ADVISE_FROM: usize = 2 * HUGE_PAGE;

/// Appends `node` to `arena`, growing it (by doubling) into freshly
/// advised memory when it is full. The arena's order and contents are
/// those of `Vec::push`.
pub(crate) fn push<T>(arena: &mut Vec<T>, node: T) {
    if arena.len() == arena.capacity() {
        grow(arena);
    }
    arena.push(node);
}

#[cold]
fn grow<T>(arena: &mut Vec<T>) {
    let capacity = arena.capacity().saturating_mul(2).max(4);
    let mut bigger: Vec<T> = Vec::with_capacity(capacity);
    let bytes = bigger.capacity().saturating_mul(size_of::<T>());
    if bytes >= ADVISE_FROM {
        advise_huge_pages(bigger.as_ptr().addr(), bytes);
    }
    bigger.append(arena);
    *arena = bigger;
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
    fn pushes_across_growth_keep_every_node_in_order() {
        let mut arena = Vec::new();
        let mut capacities = Vec::new();
        // 20,000 nodes of ~1.9 KiB: 38 MiB, past several advised growths.
        for id in 0..20_000 {
            push(&mut arena, node(id));
            if capacities.last() != Some(&arena.capacity()) {
                capacities.push(arena.capacity());
            }
        }
        assert_eq!(arena.len(), 20_000);
        for (i, n) in arena.iter().enumerate() {
            assert_eq!(*n, node(i as u64), "node {i}");
        }
        // Doubling: a handful of growths, not one per push.
        assert!(capacities.len() <= 14, "{capacities:?}");
        assert!(
            capacities.windows(2).all(|w| w[1] == 2 * w[0]),
            "{capacities:?}"
        );
    }

    #[test]
    fn push_onto_an_arena_made_elsewhere_keeps_it() {
        // `clear` and `Default` make arenas with `vec!` / `truncate`: a
        // capacity of any size, full or not.
        let mut arena = vec![node(0), node(1), node(2)];
        arena.truncate(2);
        for id in 2..100 {
            push(&mut arena, node(id));
        }
        assert!(arena.iter().enumerate().all(|(i, n)| *n == node(i as u64)));
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
        let mut arena = Vec::new();
        // 5,000 nodes of ~1.9 KiB: the last growth makes 16 MiB.
        for id in 0..5_000 {
            push(&mut arena, node(id));
        }
        let bytes = arena.capacity() * size_of::<Node>();
        let (start, _) =
            huge_page_span(arena.as_ptr().addr(), bytes).expect("a 16 MiB arena holds a huge page");
        let flags = vm_flags_at(start).expect("the arena's mapping is in /proc/self/smaps");
        // `hg`: the mapping carries MADV_HUGEPAGE.
        assert!(
            flags.split_whitespace().any(|f| f == "hg"),
            "VmFlags:{flags}"
        );
    }
}
