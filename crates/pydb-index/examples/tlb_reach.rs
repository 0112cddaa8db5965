//! What huge pages do for a random lookup in a large `BPlusTreeIndex`: the
//! same tree twice in one process, once in the arena as the index grew it
//! (advised for huge pages, see `src/arena.rs`) and once as a clone (a plain
//! `Vec` copy, written at once, so in 4 KiB pages where transparent huge
//! pages are in `madvise` mode). Both hold the same nodes in the same
//! layout; only the page size differs. Random gets are timed on each in
//! turn, several rounds, and the time per get is printed with the huge
//! pages of the process (`AnonHugePages` of `/proc/self/smaps_rollup`)
//! before and after the clone.
//!
//! ```text
//! cargo run --release -p pydb-index --example tlb_reach [-- KEYS [ROUNDS]]
//! ```
//!
//! Wall-clock times: only the ratio of two trees measured alternately in
//! one process means anything on a loaded machine.

use std::hint::black_box;
use std::time::Instant;

use bytes::Bytes;
use pydb_index::{BPlusTreeIndex, Index};

/// The log engine's `Location` is 32 bytes; so is this value.
type Location = [u64; 4];

/// SplitMix64: a reproducible stream of random keys without a dependency.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn anon_huge_kib() -> String {
    std::fs::read_to_string("/proc/self/smaps_rollup")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("AnonHugePages:"))
                .map(|l| l.split_whitespace().nth(1).unwrap_or("?").to_string())
        })
        .unwrap_or_else(|| "? (no /proc/self/smaps_rollup)".into())
}

/// Nanoseconds per get over `probes`.
fn time_gets(tree: &BPlusTreeIndex<Location>, probes: &[[u8; 16]]) -> f64 {
    let start = Instant::now();
    let mut found = 0u64;
    for key in probes {
        found += black_box(tree.get(key)).map_or(0, |l| l[0] & 1);
    }
    black_box(found);
    start.elapsed().as_nanos() as f64 / probes.len() as f64
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(300_000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(9);

    let mut state = 42;
    let mut keys = Vec::with_capacity(n as usize);
    let mut tree = BPlusTreeIndex::new();
    for i in 0..n {
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&splitmix(&mut state).to_be_bytes());
        key[8..].copy_from_slice(&splitmix(&mut state).to_be_bytes());
        tree.insert(Bytes::copy_from_slice(&key), [i, i, i, i]);
        keys.push(key);
    }
    println!(
        "{n} keys; AnonHugePages after the fill: {} kB",
        anon_huge_kib()
    );
    let copy = tree.clone();
    println!("AnonHugePages after the clone: {} kB", anon_huge_kib());

    // Probes in random order, a million per timing (or every key once).
    let probes: Vec<[u8; 16]> = (0..1_000_000)
        .map(|_| keys[(splitmix(&mut state) % n) as usize])
        .collect();
    let mut ratios = Vec::new();
    for round in 0..rounds {
        let (advised, plain) = if round % 2 == 0 {
            let a = time_gets(&tree, &probes);
            (a, time_gets(&copy, &probes))
        } else {
            let p = time_gets(&copy, &probes);
            (time_gets(&tree, &probes), p)
        };
        println!(
            "round {round}: grown (advised) {advised:.0} ns/get, clone (4 KiB) {plain:.0} ns/get, ratio {:.3}",
            advised / plain
        );
        ratios.push(advised / plain);
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "advised / clone time per get: median {:.3} (lowest {:.3}, highest {:.3}) over {rounds} rounds",
        ratios[ratios.len() / 2],
        ratios[0],
        ratios[ratios.len() - 1]
    );
}
