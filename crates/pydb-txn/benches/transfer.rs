//! The cost of a transaction next to the raw engine: a transfer (read two
//! accounts, write both) as a serializable transaction, at 1 and 8
//! threads, beside the same two reads and one two-key `write_batch` on the
//! engine with no isolation at all. The ratio is the price of MVCC + SSI.
//!
//! `cargo bench -p pydb-txn --bench transfer -- --warm-up-time 1 --measurement-time 3`

#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pydb_storage::log::SyncPolicy;
use pydb_storage::{AppendOnlyLogStorage, LogOptions, StorageEngine, WriteBatch};
use pydb_txn::{Isolation, Options, TxnManager};
use rand::{Rng, SeedableRng, rngs::StdRng};

const ACCOUNTS: u64 = 10_000;

fn account(i: u64) -> [u8; 8] {
    i.to_be_bytes()
}

fn engine(dir: &std::path::Path) -> Arc<dyn StorageEngine> {
    let options = LogOptions {
        sync_policy: SyncPolicy::Never,
        background_compaction: false,
        ..LogOptions::default()
    };
    Arc::new(AppendOnlyLogStorage::open(dir, options).unwrap())
}

/// Runs `per_thread` operations on each of `threads` threads; the time.
fn parallel(threads: u64, per_thread: u64, op: impl Fn(&mut StdRng) + Sync) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let op = &op;
            s.spawn(move || {
                let mut rng = StdRng::seed_from_u64(t);
                for _ in 0..per_thread {
                    op(&mut rng);
                }
            });
        }
    });
    start.elapsed()
}

fn pick(rng: &mut StdRng) -> (u64, u64) {
    let a = rng.random_range(0..ACCOUNTS);
    let b = (a + rng.random_range(1..ACCOUNTS)) % ACCOUNTS;
    (a, b)
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mgr = TxnManager::open(
        engine(&dir.path().join("txn")),
        Options {
            gc_interval: Some(Duration::from_millis(200)),
            ..Options::default()
        },
    )
    .unwrap();
    mgr.transaction(Isolation::Snapshot, |tx| {
        for i in 0..ACCOUNTS {
            tx.set(&account(i), &100u64.to_le_bytes())?;
        }
        Ok(())
    })
    .unwrap();
    let raw = engine(&dir.path().join("raw"));
    for i in 0..ACCOUNTS {
        raw.set(&account(i), &100u64.to_le_bytes()).unwrap();
    }

    let mut group = c.benchmark_group("transfer");
    group.throughput(Throughput::Elements(1));
    for threads in [1u64, 8] {
        group.bench_function(format!("serializable txn, {threads} threads"), |b| {
            b.iter_custom(|iters| {
                parallel(threads, iters.div_ceil(threads), |rng| {
                    let (a, b) = pick(rng);
                    mgr.transaction(Isolation::Serializable, |tx| {
                        let va = u64::from_le_bytes(
                            tx.get(&account(a))?.unwrap()[..].try_into().unwrap(),
                        );
                        let vb = u64::from_le_bytes(
                            tx.get(&account(b))?.unwrap()[..].try_into().unwrap(),
                        );
                        let amount = va.min(1);
                        tx.set(&account(a), &(va - amount).to_le_bytes())?;
                        tx.set(&account(b), &(vb + amount).to_le_bytes())
                    })
                    .unwrap();
                })
            })
        });
        group.bench_function(
            format!("raw engine, no isolation, {threads} threads"),
            |b| {
                b.iter_custom(|iters| {
                    parallel(threads, iters.div_ceil(threads), |rng| {
                        let (a, b) = pick(rng);
                        let va = u64::from_le_bytes(
                            raw.get(&account(a)).unwrap().unwrap()[..]
                                .try_into()
                                .unwrap(),
                        );
                        let vb = u64::from_le_bytes(
                            raw.get(&account(b)).unwrap().unwrap()[..]
                                .try_into()
                                .unwrap(),
                        );
                        let amount = va.min(1);
                        let mut batch = WriteBatch::new();
                        batch.set(account(a).to_vec(), (va - amount).to_le_bytes().to_vec());
                        batch.set(account(b).to_vec(), (vb + amount).to_le_bytes().to_vec());
                        raw.write_batch(&batch).unwrap();
                    })
                })
            },
        );
    }
    group.finish();
    let stats = mgr.stats();
    eprintln!(
        "committed {}, rolled back {}, groups {}, garbage collected {}",
        stats.committed, stats.rolled_back, stats.commit_groups, stats.garbage_collected
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
