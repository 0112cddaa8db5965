//! Guards the sync policies: concurrent `Always` writers share syncs (group
//! commit) and all come back after reopen; `Periodic` catches up on its own;
//! `Never` syncs only on request.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::scan_all;
use pydb_file::MonolithicFile;
use pydb_wal::{FILE_HEADER_LEN, LogWriter, SyncPolicy};

const THREADS: usize = 8;
const APPENDS: usize = 200;

/// A 116-byte payload that names its thread and sequence number.
fn record(thread: usize, seq: usize) -> Vec<u8> {
    let mut payload = format!("thread {thread} record {seq} ").into_bytes();
    payload.resize(116, b'.');
    payload
}

#[test]
fn concurrent_always_writers_share_syncs_and_all_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let writer = Arc::new(
        LogWriter::new(MonolithicFile::create(&path).unwrap(), SyncPolicy::Always).unwrap(),
    );
    let threads: Vec<_> = (0..THREADS)
        .map(|thread| {
            let writer = Arc::clone(&writer);
            std::thread::spawn(move || {
                for seq in 0..APPENDS {
                    let appended = writer.append(&record(thread, seq)).unwrap();
                    // Always: durable before append returns.
                    assert!(writer.synced_end() >= appended.end);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let stats = writer.stats();
    let appends = (THREADS * APPENDS) as u64;
    assert_eq!(stats.records, appends);
    assert_eq!(stats.batches, appends);
    assert_eq!(stats.bytes, appends * pydb_wal::record_len(116));
    assert!(stats.syncs >= 1);
    assert!(
        stats.syncs < appends,
        "group commit should share syncs: {} syncs for {appends} appends",
        stats.syncs
    );
    assert_eq!(writer.synced_end(), writer.end());
    drop(writer);

    let file = MonolithicFile::open(&path, false).unwrap();
    let batches = scan_all(&file).unwrap();
    assert_eq!(batches.len(), THREADS * APPENDS);
    let mut next = [0usize; THREADS];
    for batch in &batches {
        assert_eq!(batch.len(), 1);
        let text = String::from_utf8(batch[0].payload.to_vec()).unwrap();
        let words: Vec<&str> = text.split_whitespace().collect();
        let thread: usize = words[1].parse().unwrap();
        let seq: usize = words[3].parse().unwrap();
        // Each thread's records are in its own order, none missing.
        assert_eq!(seq, next[thread], "thread {thread}");
        assert_eq!(batch[0].payload.as_ref(), record(thread, seq).as_slice());
        next[thread] += 1;
    }
    assert_eq!(next, [APPENDS; THREADS]);
}

#[test]
fn periodic_policy_catches_up_on_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let file = MonolithicFile::create(dir.path().join("log")).unwrap();
    let writer = LogWriter::new(file, SyncPolicy::Periodic(Duration::from_millis(20))).unwrap();
    for seq in 0..50 {
        writer.append(&record(0, seq)).unwrap();
    }
    let end = writer.end();
    // Generous: this waits for the flusher, it does not time it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while writer.synced_end() < end && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(writer.synced_end(), end, "the flusher never synced");
    assert!(writer.stats().syncs >= 1);
}

#[test]
fn never_policy_syncs_only_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let file = MonolithicFile::create(dir.path().join("log")).unwrap();
    let writer = LogWriter::new(file, SyncPolicy::Never).unwrap();
    for seq in 0..20 {
        writer.append(&record(0, seq)).unwrap();
    }
    // The header was synced when the log was created; nothing since.
    assert_eq!(writer.synced_end(), FILE_HEADER_LEN as u64);
    assert_eq!(writer.stats().syncs, 0);
    writer.sync().unwrap();
    assert_eq!(writer.synced_end(), writer.end());
    assert_eq!(writer.stats().syncs, 1);
    // Nothing new: a second sync has nothing to do.
    writer.sync().unwrap();
    assert_eq!(writer.stats().syncs, 1);
}
