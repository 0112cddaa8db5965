//! Benchmarks of the record log: unsynced appends, and synced appends from
//! 1 to 16 threads (group commit) next to a raw `append` + `fdatasync` loop
//! on a `MonolithicFile` in the same directory, so on the same disk.
//!
//! Every sample writes a fresh log of `iters` 116-byte records and reports
//! the time per record, so the figures are records per second.
//!
//! Run with short settings:
//! `cargo bench -p pydb-wal --bench wal -- --warm-up-time 1 --measurement-time 3`

#![allow(
    clippy::unwrap_used,
    reason = "benchmark code: a failed unwrap is a failed run"
)]
#![allow(
    missing_docs,
    reason = "criterion_group! generates an undocumented pub fn"
)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use pydb_file::{File, MonolithicFile};
use pydb_wal::{LogWriter, SyncPolicy};

const RECORD: [u8; 116] = [0x42; 116];
const THREADS: [u64; 5] = [1, 2, 4, 8, 16];

/// A fresh, empty log in `dir` (the file of the previous sample removed).
fn fresh_log(dir: &Path, policy: SyncPolicy) -> LogWriter<MonolithicFile> {
    let path = dir.join("log");
    let _ = std::fs::remove_file(&path);
    LogWriter::new(MonolithicFile::create(&path).unwrap(), policy).unwrap()
}

fn bench_unsynced(c: &mut Criterion) {
    let dir = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
    let mut group = c.benchmark_group("wal_append_never");
    group.throughput(Throughput::Elements(1));
    group.bench_function("116B", |b| {
        b.iter_custom(|iters| {
            let writer = fresh_log(dir.path(), SyncPolicy::Never);
            let start = Instant::now();
            for _ in 0..iters {
                writer.append(&RECORD).unwrap();
            }
            start.elapsed()
        })
    });
    group.finish();
}

/// Records, syncs and time of every sample of one configuration, to print
/// how many records each `fdatasync` covered: a count that, unlike the
/// times, does not depend on how fast the disk is at the moment.
#[derive(Default)]
struct SyncShare {
    records: u64,
    syncs: u64,
    elapsed: Duration,
}

/// `iters` synced appends spread over `threads` threads; wall-clock time.
fn synced_appends(dir: &Path, threads: u64, iters: u64, share: &mut SyncShare) -> Duration {
    let writer = Arc::new(fresh_log(dir, SyncPolicy::Always));
    let per_thread = iters.div_ceil(threads);
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let writer = Arc::clone(&writer);
            std::thread::spawn(move || {
                for _ in 0..per_thread {
                    writer.append(&RECORD).unwrap();
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    let elapsed = start.elapsed();
    let stats = writer.stats();
    share.records += stats.records;
    share.syncs += stats.syncs;
    share.elapsed += elapsed;
    // Report per record actually written (per_thread * threads >= iters).
    elapsed.mul_f64(iters as f64 / (per_thread * threads) as f64)
}

fn bench_group_commit(c: &mut Criterion) {
    let dir = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
    let mut group = c.benchmark_group("wal_append_always");
    group.throughput(Throughput::Elements(1));
    group.sample_size(20);
    group.bench_function("raw_append_fdatasync", |b| {
        b.iter_custom(|iters| {
            let path = dir.path().join("raw");
            let _ = std::fs::remove_file(&path);
            let file = MonolithicFile::create(&path).unwrap();
            let start = Instant::now();
            for _ in 0..iters {
                file.append(&RECORD).unwrap();
                file.sync_data().unwrap();
            }
            start.elapsed()
        })
    });
    for threads in THREADS {
        let mut share = SyncShare::default();
        group.bench_with_input(
            BenchmarkId::new("threads", threads),
            &threads,
            |b, &threads| {
                b.iter_custom(|iters| synced_appends(dir.path(), threads, iters, &mut share))
            },
        );
        // The time per sync shows whether the disk itself got faster or
        // slower between configurations (it does, on a shared machine).
        println!(
            "wal_append_always/threads/{threads}: {:.2} records per fdatasync, {:.0} µs per fdatasync \
             ({} records, {} syncs)",
            share.records as f64 / share.syncs.max(1) as f64,
            share.elapsed.as_secs_f64() * 1e6 / share.syncs.max(1) as f64,
            share.records,
            share.syncs
        );
    }
    group.finish();
}

criterion_group!(benches, bench_unsynced, bench_group_commit);
criterion_main!(benches);
