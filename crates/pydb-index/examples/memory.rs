//! Bytes per entry of each index, measured two ways: the index's own
//! [`Index::memory_bytes`] estimate, and the live heap bytes a counting
//! global allocator sees while the index is built.
//!
//! Keys are 16 random bytes; the value is 32 bytes, the size of the log
//! engine's location of a record (segment, offset, length, sequence number:
//! 28 bytes of fields, padded to 32 by the alignment of its `u64`s).
//!
//! ```text
//! cargo run --release -p pydb-index --example memory [-- KEYS]
//! ```
#![expect(
    unsafe_code,
    reason = "a #[global_allocator] must `unsafe impl GlobalAlloc`; it only delegates to System"
)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use pydb_index::{BPlusTreeIndex, BTreeIndex, InMemoryIndex, Index, SkipListIndex};

/// Counts the bytes currently allocated through it, then lets `System` do
/// the work. It sees requested sizes, not malloc's per-chunk headers or
/// rounding, which is also what `memory_bytes` estimates.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards its arguments unchanged to `System`, which
// upholds the `GlobalAlloc` contract; the counter is only bookkeeping and
// never affects what is returned.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as ours, forwarded.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as ours, forwarded.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours, forwarded.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as ours, forwarded.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            LIVE.fetch_add(new_size, Ordering::Relaxed);
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The log engine's location of a record, field for field: 32 bytes.
#[derive(Debug, Clone, Copy)]
#[expect(dead_code, reason = "only its size matters here")]
struct Location {
    segment: u64,
    offset: u64,
    len: u32,
    seq: u64,
}

const _: () = assert!(std::mem::size_of::<Location>() == 32);

/// SplitMix64: a reproducible stream of random keys without a dependency.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Builds an index of `n` keys and returns (memory_bytes, counted bytes).
fn measure<I: Index<Location>>(mut index: I, n: u64, random: bool) -> (usize, usize) {
    let before = LIVE.load(Ordering::Relaxed);
    let mut state = 42;
    for i in 0..n {
        let mut key = [0u8; 16];
        if random {
            key[..8].copy_from_slice(&splitmix(&mut state).to_le_bytes());
            key[8..].copy_from_slice(&splitmix(&mut state).to_le_bytes());
        } else {
            key[8..].copy_from_slice(&i.to_be_bytes());
        }
        let location = Location {
            segment: i,
            offset: i,
            len: 16,
            seq: i,
        };
        index.insert(Bytes::copy_from_slice(&key), location);
    }
    let counted = LIVE.load(Ordering::Relaxed) - before;
    let estimated = index.memory_bytes();
    assert_eq!(index.len() as u64, n, "random keys collided");
    drop(index);
    (estimated, counted)
}

fn main() {
    let n: u64 = match std::env::args().nth(1) {
        Some(arg) => arg
            .parse()
            .unwrap_or_else(|_| panic!("KEYS must be a number, got {arg}")),
        None => 1_000_000,
    };
    println!(
        "{n} keys of 16 bytes, values of {} bytes",
        size_of::<Location>()
    );
    println!();
    println!("| index | key order | memory_bytes / entry | counted / entry | estimate / counted |");
    println!("|---|---|---:|---:|---:|");
    for random in [true, false] {
        let order = if random { "random" } else { "ascending" };
        let rows = [
            ("InMemoryIndex", measure(InMemoryIndex::new(), n, random)),
            ("BTreeIndex", measure(BTreeIndex::new(), n, random)),
            ("SkipListIndex", measure(SkipListIndex::new(), n, random)),
            ("BPlusTreeIndex", measure(BPlusTreeIndex::new(), n, random)),
        ];
        for (name, (estimated, counted)) in rows {
            println!(
                "| {name} | {order} | {:.1} | {:.1} | {:.3} |",
                estimated as f64 / n as f64,
                counted as f64 / n as f64,
                estimated as f64 / counted as f64
            );
        }
    }
}
