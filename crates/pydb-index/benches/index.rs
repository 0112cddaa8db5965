//! Speed of the four indexes side by side: insert, get (hits) and a
//! 100-key range scan, over random 16-byte keys with a 32-byte value (the
//! log engine's location of a record). `get_prefixed` repeats the lookups
//! with keys that share their first bytes (`user:` and a number), as
//! application keys often do.
//!
//! ```text
//! cargo bench -p pydb-index --bench index -- --warm-up-time 1 --measurement-time 3
//! ```
#![expect(
    missing_docs,
    reason = "criterion_group! generates an undocumented pub fn"
)]

use std::hint::black_box;
use std::ops::Bound;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use pydb_index::{BPlusTreeIndex, BTreeIndex, InMemoryIndex, Index, SkipListIndex};

/// Segment, offset, length and sequence number of a record: 32 bytes, the
/// size of the log engine's `Location` (28 bytes of fields, padded).
type Location = (u64, u64, u32, u64);

const _: () = assert!(std::mem::size_of::<Location>() == 32);

/// Keys in the index for every benchmark.
const KEYS: usize = 100_000;

/// Keys a range scan reads.
const SCAN: usize = 100;

/// SplitMix64: reproducible random keys without a dependency.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn random_keys(n: usize, seed: u64) -> Vec<[u8; 16]> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            let mut key = [0u8; 16];
            key[..8].copy_from_slice(&splitmix(&mut state).to_le_bytes());
            key[8..].copy_from_slice(&splitmix(&mut state).to_le_bytes());
            key
        })
        .collect()
}

/// 16-byte keys like `user:04718293645`: the first 8 bytes take only 1000
/// values, so neighbouring keys often tie on them.
fn prefixed_keys(n: usize, seed: u64) -> Vec<[u8; 16]> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            let mut key = [0u8; 16];
            let text = format!("user:{:011}", splitmix(&mut state) % 100_000_000_000);
            key.copy_from_slice(text.as_bytes());
            key
        })
        .collect()
}

fn filled<I: Index<Location> + Default>(keys: &[[u8; 16]]) -> I {
    let mut index = I::default();
    for (i, key) in keys.iter().enumerate() {
        index.insert(Bytes::copy_from_slice(key), (i as u64, 0, 16, i as u64));
    }
    index
}

fn insert<I: Index<Location> + Default>(c: &mut Criterion, name: &str, keys: &[[u8; 16]]) {
    let mut group = c.benchmark_group("insert");
    group.throughput(Throughput::Elements(keys.len() as u64));
    group.sample_size(10);
    // One sample fills an empty index with every key; the key's allocation
    // (`Bytes::copy_from_slice`) is part of an insert in pydb too. Dropping
    // the full index is left out of the timing.
    group.bench_function(name, |b| {
        b.iter_with_large_drop(|| filled::<I>(black_box(keys)))
    });
    group.finish();
}

fn get<I: Index<Location> + Default>(
    c: &mut Criterion,
    group: &str,
    name: &str,
    keys: &[[u8; 16]],
) {
    let index = filled::<I>(keys);
    // Look the keys up in another random order than they were inserted in.
    let mut order: Vec<usize> = (0..keys.len()).collect();
    let mut state = 7;
    for i in (1..order.len()).rev() {
        order.swap(i, (splitmix(&mut state) % (i as u64 + 1)) as usize);
    }
    let mut group = c.benchmark_group(group);
    group.throughput(Throughput::Elements(1));
    let mut next = 0;
    group.bench_function(name, |b| {
        b.iter(|| {
            next = (next + 1) % order.len();
            let found = index.get(black_box(&keys[order[next]]));
            assert!(found.is_some());
            found.map(|location| location.0)
        })
    });
    group.finish();
}

fn range<I: Index<Location> + Default>(c: &mut Criterion, name: &str, keys: &[[u8; 16]]) {
    let index = filled::<I>(keys);
    let mut group = c.benchmark_group("range100");
    group.throughput(Throughput::Elements(SCAN as u64));
    let mut state = 11;
    group.bench_function(name, |b| {
        b.iter_batched(
            // A random 16-byte start, mostly between two keys.
            || {
                random_keys(1, splitmix(&mut state))
                    .pop()
                    .unwrap_or_default()
            },
            |start| {
                index
                    .range(Bound::Included(&start), Bound::Unbounded)
                    .take(SCAN)
                    .map(|(_, location)| location.0)
                    .sum::<u64>()
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    let keys = random_keys(KEYS, 42);
    insert::<InMemoryIndex<Location>>(c, "InMemoryIndex", &keys);
    insert::<BTreeIndex<Location>>(c, "BTreeIndex", &keys);
    insert::<SkipListIndex<Location>>(c, "SkipListIndex", &keys);
    insert::<BPlusTreeIndex<Location>>(c, "BPlusTreeIndex", &keys);
    get::<InMemoryIndex<Location>>(c, "get", "InMemoryIndex", &keys);
    get::<BTreeIndex<Location>>(c, "get", "BTreeIndex", &keys);
    get::<SkipListIndex<Location>>(c, "get", "SkipListIndex", &keys);
    get::<BPlusTreeIndex<Location>>(c, "get", "BPlusTreeIndex", &keys);
    let prefixed = prefixed_keys(KEYS, 42);
    get::<InMemoryIndex<Location>>(c, "get_prefixed", "InMemoryIndex", &prefixed);
    get::<BTreeIndex<Location>>(c, "get_prefixed", "BTreeIndex", &prefixed);
    get::<SkipListIndex<Location>>(c, "get_prefixed", "SkipListIndex", &prefixed);
    get::<BPlusTreeIndex<Location>>(c, "get_prefixed", "BPlusTreeIndex", &prefixed);
    // An unordered index would scan all 100 000 keys for each range.
    range::<BTreeIndex<Location>>(c, "BTreeIndex", &keys);
    range::<SkipListIndex<Location>>(c, "SkipListIndex", &keys);
    range::<BPlusTreeIndex<Location>>(c, "BPlusTreeIndex", &keys);
}

criterion_group!(index, benches);
criterion_main!(index);
