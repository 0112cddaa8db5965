//! The buffer pool's page memory: one anonymous mapping that holds every
//! frame's page, advised to be backed by huge pages.
//!
//! ## Why: TLB reach
//!
//! The CPU translates every virtual address through the TLB, a small cache
//! of page-table entries: about 2,000 entries in a core's second-level TLB.
//! With 4 KiB pages that covers 8 MiB; a random lookup in a tree of 40 MiB
//! of leaves misses it on nearly every leaf and waits for a page-table
//! walk, on a virtual machine a two-level walk of up to 24 memory reads,
//! before it can even start waiting for the leaf's line. With 2 MiB pages
//! the same 2,000 entries cover 4 GiB: a pool of 256 MiB needs 128.
//!
//! When each frame's page was its own `vec![0u8; page_size]`, the pages
//! were 4 KiB blocks scattered over the malloc heap, which the kernel backs
//! with 4 KiB pages. Here they are slices of one mapping of
//! `frames * page_size` bytes, started on a 2 MiB boundary and advised with
//! `MADV_HUGEPAGE`. Linux's transparent huge pages then back it with 2 MiB
//! pages where it can: in `madvise` mode (the common default, and this
//! project's test machine) only memory so advised gets them. Where THP is
//! off, or the kernel has no 2 MiB page free, the advice is ignored and the
//! arena is ordinary memory: nothing but speed depends on it. Whether it
//! took shows as `AnonHugePages` in `/proc/<pid>/smaps_rollup`.
//! PostgreSQL's `huge_pages` setting does the same for its shared buffers
//! (with explicit huge pages, which must be reserved ahead).
//!
//! An anonymous mapping costs nothing until touched, so a 256 MiB pool
//! over a small file uses only the frames the clock has filled (the clock
//! fills frames in order, so those are at the start of the arena), each
//! touched huge page costing 2 MiB.
//!
//! ## Invariants
//!
//! - Every [`PageBuf`] is `page_size` bytes of the arena, and no two
//!   overlap: [`PageArena::new`] hands each range out exactly once. A
//!   `PageBuf` is therefore the only way to its bytes, like a `Box<[u8]>`,
//!   and the borrow rules on it (the frame's latch, in the pool) are the
//!   borrow rules on the bytes.
//! - The arena outlives its `PageBuf`s: the pool owns both, and a
//!   `PageBuf` never touches its bytes when dropped, so the order in which
//!   they are dropped does not matter.
//! - Page `f`'s address is `base + f * page_size`, so the pool can compute
//!   (and prefetch) a frame's page without reading the frame.

use std::ptr::NonNull;

use memmap2::MmapMut;

/// Huge page size the arena's start is aligned to (x86-64 and arm64's
/// transparent huge pages).
pub const HUGE_PAGE: usize = 2 << 20;

/// The memory behind the arena: a mapping, or (if mapping failed) a heap
/// block, zeroed either way.
#[derive(Debug)]
enum Backing {
    Map(MmapMut),
    Heap(Box<[u8]>),
}

/// The page memory of a buffer pool (see the module docs).
#[derive(Debug)]
pub struct PageArena {
    /// Owned only to be unmapped (or freed) last; never read through.
    backing: Backing,
    /// Where page 0 starts: a `HUGE_PAGE` boundary in a mapping.
    base: NonNull<u8>,
    page_size: usize,
    pages: usize,
}

// SAFETY (for both): the arena is never read or written through `base`;
// the pool only computes addresses from it to prefetch (which never
// faults and has no effect on memory). `MmapMut` and `Box<[u8]>` are Send
// and Sync themselves.
#[expect(
    unsafe_code,
    reason = "a raw base pointer makes the arena !Send by default; it is only used for address arithmetic"
)]
unsafe impl Send for PageArena {}
#[expect(
    unsafe_code,
    reason = "a raw base pointer makes the arena !Sync by default; it is only used for address arithmetic"
)]
unsafe impl Sync for PageArena {}

impl PageArena {
    /// An arena of `pages` pages of `page_size` bytes, and the pages, each
    /// handed out once. The arena must be kept (by whoever keeps the
    /// pages) for as long as the pages are used.
    pub fn new(page_size: usize, pages: usize) -> (Self, Vec<PageBuf>) {
        let len = page_size.saturating_mul(pages).max(1);
        let (mut backing, start) = match MmapMut::map_anon(len.saturating_add(HUGE_PAGE)) {
            Ok(map) => {
                // Start on a huge page boundary, so that the first 2 MiB of
                // pages can be one huge page too.
                let skew = map.as_ptr() as usize % HUGE_PAGE;
                let start = (HUGE_PAGE - skew) % HUGE_PAGE;
                #[cfg(target_os = "linux")]
                {
                    // Only a hint: where THP is off it fails or does
                    // nothing, and the pages are ordinary memory.
                    let _ = map.advise(memmap2::Advice::HugePage);
                }
                (Backing::Map(map), start)
            }
            // No mapping: ordinary heap memory (calloc'ed, so untouched
            // until used); everything works, only without the advice.
            Err(_) => (Backing::Heap(vec![0u8; len].into_boxed_slice()), 0),
        };
        let whole: &mut [u8] = match &mut backing {
            Backing::Map(map) => map,
            Backing::Heap(heap) => heap,
        };
        let area = &mut whole[start..start + len];
        let base = NonNull::from(&mut *area).cast::<u8>();
        let bufs = area
            .chunks_exact_mut(page_size.max(1))
            .take(pages)
            .map(|page| PageBuf {
                ptr: NonNull::from(&mut *page).cast::<u8>(),
                len: page.len(),
            })
            .collect();
        let arena = Self {
            backing,
            base,
            page_size,
            pages,
        };
        (arena, bufs)
    }

    /// The address of page `f`'s byte `offset` (for a prefetch: nothing
    /// may be read or written through it). `None` out of range.
    pub fn address_of(&self, f: usize, offset: usize) -> Option<*const u8> {
        if f >= self.pages || offset >= self.page_size {
            return None;
        }
        Some(
            self.base
                .as_ptr()
                .cast_const()
                .wrapping_add(f * self.page_size + offset),
        )
    }

    /// Whether the arena is a mapping advised to use huge pages (not
    /// whether the kernel took the advice: see `/proc/<pid>/smaps_rollup`).
    pub fn is_mapped(&self) -> bool {
        matches!(self.backing, Backing::Map(_))
    }
}

/// One frame's page: `page_size` bytes of a [`PageArena`], owned alone
/// (see the module's invariants); derefs to the bytes like a `Box<[u8]>`.
#[derive(Debug)]
pub struct PageBuf {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY (for both): a `PageBuf` is the only way to its bytes (the arena
// hands each range out once and never reads through its base), so it is
// as safe to send or share between threads as the `Box<[u8]>` it stands
// for: `&PageBuf` gives `&[u8]`, and `&mut [u8]` needs `&mut PageBuf`.
#[expect(
    unsafe_code,
    reason = "a raw pointer makes PageBuf !Send by default; it owns its bytes alone, as a Box does"
)]
unsafe impl Send for PageBuf {}
#[expect(
    unsafe_code,
    reason = "a raw pointer makes PageBuf !Sync by default; it owns its bytes alone, as a Box does"
)]
unsafe impl Sync for PageBuf {}

impl std::ops::Deref for PageBuf {
    type Target = [u8];
    #[expect(
        unsafe_code,
        reason = "the page's bytes are a range of the arena's mapping, reached by pointer"
    )]
    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr..ptr + len` lies inside the arena's live memory
        // (the arena outlives the pool's frames, see the module docs), was
        // zero-initialized by the mapping (or calloc), and no `&mut` to
        // it exists while `&self` does: only `deref_mut` makes one, from
        // `&mut self`, and no other `PageBuf` covers these bytes.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl std::ops::DerefMut for PageBuf {
    #[expect(
        unsafe_code,
        reason = "the page's bytes are a range of the arena's mapping, reached by pointer"
    )]
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as for `deref`; `&mut self` proves no other reference to
        // these bytes is live.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_is_its_own_range_of_the_arena() {
        // 600 pages of 4 KiB: more than one huge page, so a page that
        // overlapped its neighbour or strayed from `address_of` would show.
        let (arena, mut pages) = PageArena::new(4096, 600);
        assert_eq!(pages.len(), 600);
        for (f, page) in pages.iter_mut().enumerate() {
            assert_eq!(page.len(), 4096);
            assert!(page.iter().all(|&b| b == 0), "fresh pages are zeroed");
            assert_eq!(arena.address_of(f, 0), Some(page.as_ptr()));
            assert_eq!(
                arena.address_of(f, 4095),
                Some(page.as_ptr().wrapping_add(4095))
            );
            page.fill(f as u8);
        }
        for (f, page) in pages.iter().enumerate() {
            assert!(
                page.iter().all(|&b| b == f as u8),
                "page {f} was overwritten"
            );
        }
        assert_eq!(arena.address_of(600, 0), None);
        assert_eq!(arena.address_of(0, 4096), None);
        if arena.is_mapped() {
            assert_eq!(pages[0].as_ptr() as usize % HUGE_PAGE, 0);
        }
    }
}
