//! The log engine beside the raw file operations it is built on: `set` next
//! to an `append` of the same bytes, `get` next to a `pread` of the same
//! record size, so that the engine's own overhead shows as a ratio.
//!
//! `cargo bench -p pydb-storage --bench log -- --warm-up-time 1 --measurement-time 3`

#![allow(clippy::unwrap_used, missing_docs)]

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use pydb_file::{File, MonolithicFile};
use pydb_storage::log::SyncPolicy;
use pydb_storage::log::entry::ENTRY_HEADER_LEN;
use pydb_storage::{AppendOnlyLogStorage, LogOptions, StorageEngine};
use pydb_wal::RECORD_HEADER_LEN;
use rand::{Rng, SeedableRng, rngs::StdRng};

const KEY_LEN: usize = 16;
const VALUE_LEN: usize = 100;
const KEYS: u64 = 100_000;

fn key(i: u64) -> [u8; KEY_LEN] {
    let mut key = [b'k'; KEY_LEN];
    key[KEY_LEN - 8..].copy_from_slice(&i.to_be_bytes());
    key
}

fn options() -> LogOptions {
    LogOptions {
        sync_policy: SyncPolicy::Never,
        background_compaction: false,
        ..LogOptions::default()
    }
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let value = [0x5a; VALUE_LEN];
    let engine = AppendOnlyLogStorage::open(dir.path().join("db"), options()).unwrap();
    // The bytes one `set` appends: record header, entry header, key, value.
    let record_len = RECORD_HEADER_LEN + ENTRY_HEADER_LEN + KEY_LEN + VALUE_LEN;
    let raw = MonolithicFile::create(dir.path().join("raw")).unwrap();
    let record = vec![0xa5; record_len];

    let mut group = c.benchmark_group("write");
    group.throughput(Throughput::Bytes(record_len as u64));
    let mut next = 0u64;
    group.bench_function("log set (SyncPolicy::Never)", |b| {
        b.iter(|| {
            engine.set(&key(next % KEYS), &value).unwrap();
            next += 1;
        })
    });
    group.bench_function("raw append, same bytes", |b| {
        b.iter(|| raw.append(&record).unwrap());
    });
    group.finish();

    // Make sure every key exists for the reads.
    for i in 0..KEYS {
        engine.set(&key(i), &value).unwrap();
    }
    let raw_len = raw.len().unwrap();
    let records = raw_len / record_len as u64;
    let mut rng = StdRng::seed_from_u64(7);
    let mut group = c.benchmark_group("read");
    group.throughput(Throughput::Bytes(record_len as u64));
    group.bench_function("log get (random existing key)", |b| {
        b.iter_batched(
            || key(rng.random_range(0..KEYS)),
            |k| engine.get(&k).unwrap().unwrap(),
            BatchSize::SmallInput,
        )
    });
    let mut buf = vec![0u8; record_len];
    group.bench_function("raw pread, same size", |b| {
        b.iter_batched(
            || rng.random_range(0..records) * record_len as u64,
            |offset| raw.read_at(offset, &mut buf).unwrap(),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
