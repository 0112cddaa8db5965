//! Benchmarks of the B+tree engine: the buffer pool's hit and miss paths
//! next to a raw 4 KiB `pread`, and the tree's set/get/scan next to the log
//! engine, with 16-byte keys and 100-byte values.
//!
//! `cargo bench -p pydb-storage --bench btree -- --warm-up-time 1 --measurement-time 3`

#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use pydb_file::{File, MonolithicFile};
use pydb_storage::btree::SyncPolicy;
use pydb_storage::btree::page::{self, Content, PageId};
use pydb_storage::btree::pool::{BufferPool, WriteAhead};
use pydb_storage::{
    AppendOnlyLogStorage, BTreeOptions, BTreeStorage, KeyRange, LogOptions, StorageEngine,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const PAGE: usize = 4096;
const KEYS: u64 = 100_000;

#[derive(Debug)]
struct NoWal;
impl WriteAhead for NoWal {
    fn make_durable(&self, _lsn: u64) -> pydb_storage::Result<()> {
        Ok(())
    }
}

fn key(i: u64) -> [u8; 16] {
    // Spread keys over the key space like random ids, reproducibly.
    let mixed = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&mixed.to_be_bytes());
    k[8..].copy_from_slice(&i.to_be_bytes());
    k
}

fn pool(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pages");
    let pages: PageId = 1024;
    {
        let file = MonolithicFile::create(&path).unwrap();
        for id in 0..pages {
            let mut buf = page::encode(&Content::Free { next: 0 }, id, PAGE).unwrap();
            page::seal(&mut buf);
            file.write_at(u64::from(id) * PAGE as u64, &buf).unwrap();
        }
        file.sync_data().unwrap();
    }
    let mut group = c.benchmark_group("pool");
    let raw = MonolithicFile::open(&path, false).unwrap();
    let mut buf = vec![0u8; PAGE];
    let mut rng = SmallRng::seed_from_u64(1);
    group.bench_function("raw_pread_4k", |b| {
        b.iter(|| {
            let id = rng.random_range(0..pages);
            raw.read_at(u64::from(id) * PAGE as u64, &mut buf).unwrap();
            black_box(&buf);
        })
    });
    let cached = BufferPool::new(
        MonolithicFile::open(&path, false).unwrap(),
        PAGE,
        64,
        Arc::new(NoWal),
    );
    for id in 0..64 {
        drop(cached.fetch(id).unwrap());
    }
    group.bench_function("fetch_hit", |b| {
        b.iter(|| {
            let id = rng.random_range(0..64);
            let page = cached.fetch(id).unwrap();
            black_box(page[0]);
        })
    });
    // 16 frames over 1024 pages: almost every fetch evicts a page.
    let small = BufferPool::new(
        MonolithicFile::open(&path, false).unwrap(),
        PAGE,
        16,
        Arc::new(NoWal),
    );
    group.bench_function("fetch_miss_evict", |b| {
        b.iter(|| {
            let id = rng.random_range(0..pages);
            let page = small.fetch(id).unwrap();
            black_box(page[0]);
        })
    });
    group.finish();
}

fn engines(c: &mut Criterion) {
    let value = [0x5au8; 100];
    let bdir = tempfile::tempdir().unwrap();
    let btree = BTreeStorage::open(
        bdir.path(),
        BTreeOptions {
            sync: SyncPolicy::Never,
            pool_bytes: 64 << 20,
            ..BTreeOptions::default()
        },
    )
    .unwrap();
    let ldir = tempfile::tempdir().unwrap();
    let log = AppendOnlyLogStorage::open(
        ldir.path(),
        LogOptions {
            sync_policy: SyncPolicy::Never,
            ..LogOptions::default()
        },
    )
    .unwrap();
    for i in 0..KEYS {
        btree.set(&key(i), &value).unwrap();
        log.set(&key(i), &value).unwrap();
    }
    let mut group = c.benchmark_group("tree");
    let mut rng = SmallRng::seed_from_u64(2);
    let mut next = KEYS;
    group.bench_function("btree_set_never", |b| {
        b.iter(|| {
            next += 1;
            btree.set(&key(next), &value).unwrap();
        })
    });
    let mut next_log = KEYS;
    group.bench_function("log_set_never", |b| {
        b.iter(|| {
            next_log += 1;
            log.set(&key(next_log), &value).unwrap();
        })
    });
    group.bench_function("btree_get", |b| {
        b.iter(|| black_box(btree.get(&key(rng.random_range(0..KEYS))).unwrap()))
    });
    group.bench_function("log_get", |b| {
        b.iter(|| black_box(log.get(&key(rng.random_range(0..KEYS))).unwrap()))
    });
    group.bench_function("btree_scan_100", |b| {
        b.iter(|| {
            let start = key(rng.random_range(0..KEYS));
            let n = btree
                .scan(KeyRange::new(start.as_slice()..))
                .unwrap()
                .take(100)
                .count();
            black_box(n)
        })
    });
    group.bench_function("log_scan_100", |b| {
        b.iter(|| {
            let start = key(rng.random_range(0..KEYS));
            let n = log
                .scan(KeyRange::new(start.as_slice()..))
                .unwrap()
                .take(100)
                .count();
            black_box(n)
        })
    });
    group.finish();
}

criterion_group!(benches, pool, engines);
criterion_main!(benches);
