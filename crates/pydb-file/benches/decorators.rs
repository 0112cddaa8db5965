//! Benchmarks of the `File` decorators against the plain file they wrap:
//! appending and randomly reading 116-byte records (half random, half
//! zeros: lz4 about halves them) on `MonolithicFile`, `EncryptedFile` (its
//! last block sealed by each append, or at sync) and `CompressedFile`. The setup prints the compressed file's size ratio.
//!
//! Run with short settings:
//! `cargo bench -p pydb-file --bench decorators -- --warm-up-time 1 --measurement-time 3`

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

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pydb_file::{CompressedFile, DataKey, EncryptedFile, File, MonolithicFile};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

const RECORD: usize = 116;
/// Records in the file the random reads hit: 11.6 MB of plaintext.
const READ_RECORDS: u64 = 100_000;
/// Appends past this restart the file, so a long run does not fill the disk.
const APPEND_LIMIT: u64 = 64 << 20;
const KINDS: [&str; 4] = ["plain", "encrypted", "encrypted_tail_at_sync", "compressed"];

fn open(kind: &str, path: &Path) -> Box<dyn File> {
    let inner = MonolithicFile::create(path).unwrap();
    match kind {
        "plain" => Box::new(inner),
        "encrypted" => Box::new(EncryptedFile::open(inner, &DataKey::from_bytes([1; 32])).unwrap()),
        "encrypted_tail_at_sync" => Box::new(
            EncryptedFile::open(inner, &DataKey::from_bytes([1; 32]))
                .unwrap()
                .with_tail_sealed_at_sync(true),
        ),
        "compressed" => Box::new(CompressedFile::open(inner).unwrap()),
        other => panic!("unknown kind {other}"),
    }
}

/// A record that lz4 about halves: random bytes, then zeros.
fn record(rng: &mut StdRng) -> [u8; RECORD] {
    let mut record = [0u8; RECORD];
    rng.fill_bytes(&mut record[..RECORD / 2]);
    record
}

fn bench_append(c: &mut Criterion) {
    let dir = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
    let mut rng = StdRng::seed_from_u64(7);
    let records: Vec<[u8; RECORD]> = (0..1024).map(|_| record(&mut rng)).collect();
    let mut group = c.benchmark_group("decorated_append_116");
    group.throughput(Throughput::Elements(1));
    for kind in KINDS {
        let file = open(kind, &dir.path().join(format!("append-{kind}")));
        let mut i = 0;
        group.bench_function(kind, |b| {
            b.iter(|| {
                if file.len().unwrap() > APPEND_LIMIT {
                    file.set_len(0).unwrap();
                }
                i = (i + 1) % records.len();
                black_box(file.append(black_box(&records[i])).unwrap())
            })
        });
    }
    group.finish();
}

fn bench_random_read(c: &mut Criterion) {
    let dir = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
    let mut rng = StdRng::seed_from_u64(116);
    let mut files = Vec::new();
    for kind in KINDS {
        let path = dir.path().join(format!("read-{kind}"));
        let file = open(kind, &path);
        let mut data_rng = StdRng::seed_from_u64(1);
        // Appended one record at a time, as the log engine does.
        for _ in 0..READ_RECORDS {
            file.append(&record(&mut data_rng)).unwrap();
        }
        file.sync_data().unwrap();
        let physical = std::fs::metadata(&path).unwrap().len();
        eprintln!(
            "{kind}: {} logical bytes, {physical} on disk ({:.3}x)",
            file.len().unwrap(),
            physical as f64 / file.len().unwrap() as f64
        );
        files.push((kind, file));
    }
    // The same offsets, in the same order, for every kind.
    let offsets: Vec<u64> = (0..4096)
        .map(|_| rng.random_range(0..READ_RECORDS) * RECORD as u64)
        .collect();
    let mut group = c.benchmark_group("decorated_pread_116_random");
    group.throughput(Throughput::Elements(1));
    for (kind, file) in &files {
        let mut i = 0;
        let mut buf = [0u8; RECORD];
        group.bench_function(*kind, |b| {
            b.iter(|| {
                i = (i + 1) % offsets.len();
                file.read_at(offsets[i], &mut buf).unwrap();
                black_box(buf[0])
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_append, bench_random_read);
criterion_main!(benches);
