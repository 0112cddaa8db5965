//! Benchmarks of the byte device: appending and reading 116-byte records
//! (the size of a small key-value entry in the log engine) on
//! `MonolithicFile` and `MmapFile`, and the cost of `append` + `fdatasync`.
//!
//! Run with short settings:
//! `cargo bench -p pydb-file --bench file -- --warm-up-time 1 --measurement-time 3`

#![allow(
    clippy::unwrap_used,
    reason = "benchmark code: a failed unwrap is a failed run"
)]
#![allow(
    missing_docs,
    reason = "criterion_group! generates an undocumented pub fn"
)]

use std::hint::black_box;
use std::path::Path;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use pydb_file::{DirLock, File, MmapFile, MonolithicFile};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const RECORD: usize = 116;
/// Records in the file the random reads hit: 11.6 MB, in the page cache.
const READ_RECORDS: u64 = 100_000;
/// Appends past this restart the file, so a long run does not fill the disk.
const APPEND_LIMIT: u64 = 64 << 20;

/// The lock of the directory of `path`, which a map needs (each benchmark
/// maps one file in its own directory).
fn lock_of(path: &Path) -> DirLock {
    DirLock::acquire(path.parent().unwrap()).unwrap()
}

fn open(kind: &str, path: &Path) -> Box<dyn File> {
    match kind {
        "monolithic" => Box::new(MonolithicFile::create(path).unwrap()),
        "mmap" => Box::new(MmapFile::create(path, &lock_of(path)).unwrap()),
        other => panic!("unknown kind {other}"),
    }
}

fn bench_append(c: &mut Criterion) {
    let dir = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
    let record = [0xA5u8; RECORD];
    let mut group = c.benchmark_group("append_116");
    group.throughput(Throughput::Elements(1));
    for kind in ["monolithic", "mmap"] {
        let file = open(kind, &dir.path().join(format!("append-{kind}")));
        group.bench_function(kind, |b| {
            b.iter(|| {
                if file.len().unwrap() > APPEND_LIMIT {
                    file.set_len(0).unwrap();
                }
                black_box(file.append(black_box(&record)).unwrap())
            })
        });
    }
    group.finish();
}

fn bench_random_read(c: &mut Criterion) {
    let dir = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
    let path = dir.path().join("read");
    {
        let file = MonolithicFile::create(&path).unwrap();
        let mut chunk = Vec::with_capacity(RECORD * 1000);
        for i in 0..READ_RECORDS {
            chunk.extend_from_slice(&[(i % 251) as u8; RECORD]);
            if chunk.len() == chunk.capacity() {
                file.append(&chunk).unwrap();
                chunk.clear();
            }
        }
        file.append(&chunk).unwrap();
        file.sync_data().unwrap();
    }
    // The same offsets, in the same order, for both kinds.
    let mut rng = StdRng::seed_from_u64(116);
    let offsets: Vec<u64> = (0..4096)
        .map(|_| rng.random_range(0..READ_RECORDS) * RECORD as u64)
        .collect();
    let mut group = c.benchmark_group("pread_116_random");
    group.throughput(Throughput::Elements(1));
    for kind in ["monolithic", "mmap"] {
        let file: Box<dyn File> = match kind {
            "monolithic" => Box::new(MonolithicFile::open(&path, false).unwrap()),
            _ => Box::new(MmapFile::open(&path, false, &lock_of(&path)).unwrap()),
        };
        let mut buf = [0u8; RECORD];
        let mut next = 0usize;
        group.bench_function(kind, |b| {
            b.iter(|| {
                next = (next + 1) % offsets.len();
                file.read_at(offsets[next], &mut buf).unwrap();
                black_box(&buf);
            })
        });
    }
    group.finish();
}

fn bench_append_sync(c: &mut Criterion) {
    let dir = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
    let record = [0x5Au8; RECORD];
    let mut group = c.benchmark_group("append_116_fdatasync");
    group.throughput(Throughput::Elements(1));
    for kind in ["monolithic", "mmap"] {
        let file = open(kind, &dir.path().join(format!("sync-{kind}")));
        group.bench_with_input(BenchmarkId::from_parameter(kind), &file, |b, file| {
            b.iter(|| {
                file.append(&record).unwrap();
                file.sync_data().unwrap();
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_append, bench_random_read, bench_append_sync);
criterion_main!(benches);
