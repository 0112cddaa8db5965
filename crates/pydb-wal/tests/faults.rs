//! Guards the WAL against a failing disk: a failed sync poisons the writer,
//! a failed append is rolled back without losing acknowledged records, and a
//! power cut keeps every acknowledged record (checked against a model).

#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::scan_all;
use proptest::prelude::*;
use pydb_file::Error as FileError;
use pydb_file::faulty::{FaultKind, Op, injected_fault};
use pydb_file::{FaultyFile, FaultyOpener, File, FileOpener, MonolithicFile, MonolithicOpener};
use pydb_wal::{Error, ErrorKind, LogWriter, Scanner, SyncPolicy};

type Faulty = FaultyFile<MonolithicFile>;

/// Creates a log through a faulty opener and makes its directory entry
/// durable, as a database does when it creates a file.
fn create_log(
    dir: &Path,
    seed: u64,
    policy: SyncPolicy,
) -> (FaultyOpener<MonolithicOpener>, LogWriter<Faulty>) {
    let opener = FaultyOpener::new(MonolithicOpener, seed);
    let file = opener.open(&dir.join("log"), true).unwrap();
    let writer = LogWriter::new(file, policy).unwrap();
    opener.sync_dir(dir).unwrap();
    (opener, writer)
}

/// Reopens the log the way a database does after a crash: recover the torn
/// tail, then read every batch. Returns each batch's payloads.
fn recover(dir: &Path) -> Vec<Vec<Vec<u8>>> {
    let file = MonolithicFile::open(dir.join("log"), false).unwrap();
    Scanner::new(&file).unwrap().truncate_torn_tail().unwrap();
    scan_all(&file)
        .unwrap()
        .into_iter()
        .map(|batch| batch.into_iter().map(|r| r.payload.to_vec()).collect())
        .collect()
}

fn single(payload: &[u8]) -> Vec<Vec<u8>> {
    vec![payload.to_vec()]
}

fn assert_poisoned(result: pydb_wal::Result<impl std::fmt::Debug>) {
    match result {
        Err(err @ Error::File(FileError::Poisoned { .. })) => {
            assert_eq!(err.kind(), ErrorKind::Poisoned);
            assert!(!err.kind().is_retryable());
        }
        other => panic!("expected Poisoned, got {other:?}"),
    }
}

#[test]
fn a_failed_sync_fails_the_append_and_poisons_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let (opener, writer) = create_log(dir.path(), 1, SyncPolicy::Always);
    writer.append(b"acknowledged").unwrap();
    opener.controller().fail_nth(Op::Sync, 1);
    let err = writer.append(b"not acknowledged").unwrap_err();
    assert!(
        matches!(err, Error::File(FileError::Poisoned { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("sync failed"), "{err}");
    // No retry, ever: a retried fsync may report success for lost pages.
    let syncs = opener.controller().counters().syncs;
    assert_poisoned(writer.append(b"later"));
    assert_poisoned(writer.append_batch(&[b"a", b"b"]));
    assert_poisoned(writer.append_batch_unsynced(&[b"c"]));
    assert_poisoned(writer.sync());
    assert_eq!(
        opener.controller().counters().syncs,
        syncs,
        "a poisoned writer synced again"
    );
    drop(writer);
    opener.controller().power_cut().unwrap();
    assert_eq!(recover(dir.path()), vec![single(b"acknowledged")]);
}

#[test]
fn a_poisoned_writer_does_not_trust_a_lying_sync() {
    // The kernel dropped the pages and cleared the error: a retry would
    // "succeed". The writer must not acknowledge anything after the failure.
    let dir = tempfile::tempdir().unwrap();
    let (opener, writer) = create_log(dir.path(), 1, SyncPolicy::Never);
    opener.controller().set_lying_sync_after_failure(true);
    writer.append(b"one").unwrap();
    writer.sync().unwrap();
    writer.append(b"two").unwrap();
    opener.controller().fail_nth(Op::Sync, 1);
    writer.sync().unwrap_err();
    assert_poisoned(writer.sync());
    assert_poisoned(writer.append(b"three"));
    assert_eq!(opener.controller().counters().lying_syncs, 0);
    opener.controller().power_cut().unwrap();
    assert_eq!(recover(dir.path()), vec![single(b"one")]);
}

#[test]
fn a_disk_full_append_is_rolled_back_and_writes_resume_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let (opener, writer) = create_log(dir.path(), 1, SyncPolicy::Always);
    writer.append(b"first").unwrap();
    writer.append(b"second").unwrap();
    let end = writer.end();
    opener.controller().set_space_left(Some(50));
    let err = writer.append(&[7u8; 200]).unwrap_err();
    let Error::File(file_err) = &err else {
        panic!("expected a file error, got {err}");
    };
    assert_eq!(
        injected_fault(file_err).map(|f| f.kind),
        Some(FaultKind::DiskFull)
    );
    assert_eq!(file_err.io_kind(), Some(std::io::ErrorKind::StorageFull));
    // The prefix that fitted was cut off again.
    assert_eq!(writer.end(), end);
    assert_eq!(writer.file().len().unwrap(), end);
    assert_eq!(
        std::fs::metadata(dir.path().join("log")).unwrap().len(),
        end
    );
    // A small record fits in the space that truncation gave back.
    writer.append(b"small").unwrap();
    writer.append(&[8u8; 200]).unwrap_err();
    opener.controller().set_space_left(None);
    writer.append(b"after space returned").unwrap();
    assert_eq!(opener.controller().counters().disk_full, 2);
    let expected = vec![
        single(b"first"),
        single(b"second"),
        single(b"small"),
        single(b"after space returned"),
    ];
    assert_eq!(recover(dir.path()), expected);
    let file = MonolithicFile::open(dir.path().join("log"), false).unwrap();
    let cut = Scanner::new(&file).unwrap().truncate_torn_tail().unwrap();
    assert_eq!(cut.torn_bytes, 0, "the log should scan clean");
    drop(writer);
    opener.controller().power_cut().unwrap();
    assert_eq!(recover(dir.path()), expected);
}

#[test]
fn a_torn_append_is_rolled_back() {
    let dir = tempfile::tempdir().unwrap();
    let (opener, writer) = create_log(dir.path(), 9, SyncPolicy::Always);
    writer.append(b"before").unwrap();
    let end = writer.end();
    opener.controller().tear_nth_write(1);
    writer
        .append_batch(&[&[1u8; 300], &[2u8; 300]])
        .unwrap_err();
    assert_eq!(writer.file().len().unwrap(), end);
    writer.append(b"after").unwrap();
    assert_eq!(
        recover(dir.path()),
        vec![single(b"before"), single(b"after")]
    );
}

#[test]
fn a_torn_append_that_cannot_be_rolled_back_poisons_and_recovery_cuts_it() {
    let dir = tempfile::tempdir().unwrap();
    let (opener, writer) = create_log(dir.path(), 9, SyncPolicy::Always);
    writer.append(b"before").unwrap();
    opener.controller().tear_nth_write(1);
    opener.controller().fail_nth(Op::SetLen, 1);
    writer
        .append_batch(&[&[1u8; 300], &[2u8; 300]])
        .unwrap_err();
    assert_poisoned(writer.append(b"after"));
    drop(writer);
    // No power cut: the torn prefix is still in the file, and recovery
    // treats it as the torn tail it is.
    assert_eq!(recover(dir.path()), vec![single(b"before")]);
}

#[test]
fn a_power_cut_keeps_every_acknowledged_append_and_drops_unsynced_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (opener, writer) = create_log(dir.path(), 1, SyncPolicy::Always);
    let acknowledged: Vec<Vec<Vec<u8>>> = (0..50)
        .map(|i| vec![format!("record {i}").into_bytes(); 1 + i % 3])
        .collect();
    for batch in &acknowledged {
        let refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
        writer.append_batch(&refs).unwrap();
    }
    // Appended but never synced: a power cut may drop it.
    writer.append_batch_unsynced(&[b"unsynced"]).unwrap();
    opener.controller().power_cut().unwrap();
    assert_poisoned_or_dead(writer.append(b"after the cut"));
    assert_eq!(recover(dir.path()), acknowledged);
}

fn assert_poisoned_or_dead(result: pydb_wal::Result<impl std::fmt::Debug>) {
    match result {
        Err(Error::File(FileError::Poisoned { .. })) => {}
        Err(Error::File(err)) => {
            assert_eq!(
                injected_fault(&err).map(|f| f.kind),
                Some(FaultKind::PowerCut)
            );
        }
        other => panic!("expected an error after the power cut, got {other:?}"),
    }
}

#[test]
fn a_power_cut_during_concurrent_group_commits_keeps_every_acknowledged_append() {
    const THREADS: usize = 4;
    let dir = tempfile::tempdir().unwrap();
    let (opener, writer) = create_log(dir.path(), 1, SyncPolicy::Always);
    let writer = Arc::new(writer);
    let acked_enough = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..THREADS)
        .map(|thread| {
            let writer = Arc::clone(&writer);
            let acked_enough = Arc::clone(&acked_enough);
            std::thread::spawn(move || {
                let mut acked = 0usize;
                loop {
                    let payload = format!("{thread}:{acked}");
                    match writer.append(payload.as_bytes()) {
                        Ok(_) => acked += 1,
                        Err(_) => return acked,
                    }
                    if acked == 100 {
                        acked_enough.store(true, Ordering::SeqCst);
                    }
                }
            })
        })
        .collect();
    while !acked_enough.load(Ordering::SeqCst) {
        std::thread::yield_now();
    }
    opener.controller().power_cut().unwrap();
    let acked: Vec<usize> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let mut present = [0usize; THREADS];
    for batch in recover(dir.path()) {
        let text = String::from_utf8(batch[0].clone()).unwrap();
        let (thread, seq) = text.split_once(':').unwrap();
        let (thread, seq): (usize, usize) = (thread.parse().unwrap(), seq.parse().unwrap());
        // Each thread's records survive as a prefix of what it wrote...
        assert_eq!(seq, present[thread], "thread {thread}");
        present[thread] += 1;
    }
    for thread in 0..THREADS {
        // ...that holds at least every record it was told is durable.
        assert!(
            present[thread] >= acked[thread],
            "thread {thread}: {} acknowledged, {} survived",
            acked[thread],
            present[thread]
        );
        // At most the one in flight at the cut was durable but unacknowledged.
        assert!(present[thread] <= acked[thread] + 1, "thread {thread}");
    }
}

/// One step of the model test.
#[derive(Debug, Clone)]
enum Step {
    Append(Vec<Vec<u8>>),
    Sync,
    TearNextWrite,
    FillDiskAfter(u64),
    FreeDisk,
    FailNextSync,
    PowerCut,
}

fn step() -> impl Strategy<Value = Step> {
    let batch = prop::collection::vec(prop::collection::vec(any::<u8>(), 0..120), 1..4);
    prop_oneof![
        8 => batch.prop_map(Step::Append),
        2 => Just(Step::Sync),
        1 => Just(Step::TearNextWrite),
        1 => (0u64..300).prop_map(Step::FillDiskAfter),
        1 => Just(Step::FreeDisk),
        1 => Just(Step::FailNextSync),
        1 => Just(Step::PowerCut),
    ]
}

/// Runs `steps` against a log on a faulty disk and a model of what is
/// durable; after each power cut (and at the end) recovery must find exactly
/// the model's durable batches, which hold every acknowledged one.
fn run_model(policy: SyncPolicy, seed: u64, steps: &[Step]) {
    let dir = tempfile::tempdir().unwrap();
    let (mut opener, mut writer) = create_log(dir.path(), seed, policy);
    // The worst disk: after a failed sync, later syncs lie. Only a writer
    // that never retries keeps its promises on it.
    opener.controller().set_lying_sync_after_failure(true);
    let mut durable: Vec<Vec<Vec<u8>>> = Vec::new();
    let mut unsynced: Vec<Vec<Vec<u8>>> = Vec::new();
    let mut poisoned = false;
    let steps = steps.iter().chain(std::iter::once(&Step::PowerCut));
    for step in steps {
        match step {
            Step::Append(batch) => {
                let refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
                match writer.append_batch(&refs) {
                    Ok(_) if policy == SyncPolicy::Always => durable.push(batch.clone()),
                    Ok(_) => unsynced.push(batch.clone()),
                    Err(Error::File(FileError::Poisoned { .. })) => poisoned = true,
                    Err(err) => assert!(!poisoned, "{err}"),
                }
            }
            Step::Sync => match writer.sync() {
                Ok(()) => durable.append(&mut unsynced),
                Err(_) => poisoned = true,
            },
            Step::TearNextWrite => opener.controller().tear_nth_write(1),
            Step::FillDiskAfter(bytes) => opener.controller().set_space_left(Some(*bytes)),
            Step::FreeDisk => opener.controller().set_space_left(None),
            Step::FailNextSync => opener.controller().fail_nth(Op::Sync, 1),
            Step::PowerCut => {
                opener.controller().power_cut().unwrap();
                unsynced.clear();
                assert_eq!(recover(dir.path()), durable, "after a power cut");
                // Restart: a fresh process, a fresh disk controller.
                opener = FaultyOpener::new(MonolithicOpener, seed.wrapping_add(1));
                opener.controller().set_lying_sync_after_failure(true);
                let file = opener.open(&dir.path().join("log"), false).unwrap();
                writer = LogWriter::new(file, policy).unwrap();
                poisoned = false;
            }
        }
        if poisoned {
            assert_poisoned(writer.append(b"x"));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn recovery_matches_the_model_with_synced_appends(seed: u64, steps in prop::collection::vec(step(), 1..40)) {
        run_model(SyncPolicy::Always, seed, &steps);
    }

    #[test]
    fn recovery_matches_the_model_with_explicit_syncs(seed: u64, steps in prop::collection::vec(step(), 1..40)) {
        run_model(SyncPolicy::Never, seed, &steps);
    }
}
