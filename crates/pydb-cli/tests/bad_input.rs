//! Guards the errors pydb gives on bad input: keys and values over the
//! limit, a segment written by a newer format version, zero-length segment
//! files (fine at the end, damage in the middle). Each error must name what
//! is wrong and, for damage, the file and offset.
//!
//! Covered elsewhere, not repeated here: a directory that is not a
//! database and a newer `PYDB` version (`tests/metadata.rs`); a missing
//! middle segment, hints that disagree with their segment, an empty last
//! segment (`pydb-storage/tests/log_recovery.rs`); a full disk
//! (`pydb-storage/tests/faults.rs`).

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::path::Path;
use std::time::Duration;

use pydb::storage::log::hint::hint_path;
use pydb::storage::{AppendOnlyLogStorage, LogOptions};
use pydb::wal::record::{FILE_CRC_OFFSET, FILE_VERSION_OFFSET, FORMAT_VERSION};
use pydb::{Db, EngineKind, Options, SyncPolicy};

fn options() -> LogOptions {
    LogOptions {
        sync_policy: SyncPolicy::Always,
        max_segment_size: 300,
        background_compaction: false,
        compaction_interval: Duration::from_secs(60),
        ..LogOptions::default()
    }
}

/// A log database spread over several segments; returns the segment ids.
fn build(dir: &Path) -> Vec<u64> {
    let engine = AppendOnlyLogStorage::open(dir, options()).unwrap();
    for i in 0..30 {
        pydb::storage::StorageEngine::set(
            &engine,
            format!("key{i}").as_bytes(),
            format!("value number {i}").as_bytes(),
        )
        .unwrap();
    }
    engine.segment_ids()
}

fn segment(dir: &Path, id: u64) -> std::path::PathBuf {
    pydb::file::segment_path(dir, id, "log")
}

#[test]
fn keys_and_values_over_the_limit_are_refused_with_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::with_engine(EngineKind::Log)).unwrap();
    let limits = LogOptions::default();
    let key = vec![b'k'; limits.max_key_size + 1];
    let err = db.set(&key, b"v").unwrap_err();
    assert_eq!(err.kind(), pydb::storage::ErrorKind::InvalidInput);
    // The engine sees the version key of pydb-txn, a few bytes longer than
    // the user's key, and reports its length.
    let err = err.to_string();
    assert!(
        err.contains(&format!(
            "is over the limit of {} bytes",
            limits.max_key_size
        )),
        "{err}"
    );
    let value = vec![b'v'; limits.max_value_size + 1];
    let err = db.set(b"k", &value).unwrap_err().to_string();
    assert!(
        err.contains(&format!(
            "over the limit of {} bytes",
            limits.max_value_size
        )),
        "{err}"
    );
    let err = db.set(b"", b"v").unwrap_err().to_string();
    assert!(err.contains("empty keys"), "{err}");
    // Nothing was written: the database is still empty and usable.
    assert_eq!(db.get(b"k").unwrap(), None);
    db.set(b"k", b"fits").unwrap();
}

/// Rewrites the format version of a segment's file header (and its CRC, so
/// that the header is valid, just newer).
fn make_newer(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[FILE_VERSION_OFFSET..FILE_CRC_OFFSET]
        .copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    let crc = crc32fast::hash(&bytes[..FILE_CRC_OFFSET]);
    bytes[FILE_CRC_OFFSET..FILE_CRC_OFFSET + 4].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_segment_of_a_newer_format_version_is_refused() {
    for which in ["last", "sealed"] {
        let dir = tempfile::tempdir().unwrap();
        let ids = build(dir.path());
        let id = if which == "last" {
            *ids.last().unwrap()
        } else {
            ids[1]
        };
        make_newer(&segment(dir.path(), id));
        // A newer pydb would also write newer hints; without a hint the
        // segment is read from its header.
        let _ = std::fs::remove_file(hint_path(dir.path(), id));
        let err = AppendOnlyLogStorage::open(dir.path(), options())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("format version {}", FORMAT_VERSION + 1)),
            "{which}: {err}"
        );
        assert!(
            err.contains(&segment(dir.path(), id).display().to_string()),
            "{which}: {err}"
        );
    }
}

#[test]
fn a_zero_length_last_segment_opens() {
    let dir = tempfile::tempdir().unwrap();
    let ids = build(dir.path());
    let last = *ids.last().unwrap();
    // What a crash right after the last segment's creation leaves; here its
    // records go with its bytes, the other segments' stay readable.
    let elsewhere: Vec<(String, Option<bytes::Bytes>)> = {
        let engine = AppendOnlyLogStorage::open(dir.path(), options()).unwrap();
        (0..30)
            .map(|i| format!("key{i}"))
            .filter(|k| {
                engine
                    .location(k.as_bytes())
                    .is_some_and(|l| l.segment != last)
            })
            .map(|k| {
                let v = pydb::storage::StorageEngine::get(&engine, k.as_bytes()).unwrap();
                (k, v)
            })
            .collect()
    };
    assert!(!elsewhere.is_empty());
    std::fs::write(segment(dir.path(), last), b"").unwrap();
    let engine = AppendOnlyLogStorage::open(dir.path(), options()).unwrap();
    for (k, v) in elsewhere {
        assert_eq!(
            pydb::storage::StorageEngine::get(&engine, k.as_bytes()).unwrap(),
            v
        );
    }
    pydb::storage::StorageEngine::set(&engine, b"new", b"write").unwrap();
}

#[test]
fn a_zero_length_middle_segment_is_damage_with_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let ids = build(dir.path());
    assert!(ids.len() >= 3, "{ids:?}");
    let middle = segment(dir.path(), ids[1]);
    std::fs::write(&middle, b"").unwrap();
    let err = AppendOnlyLogStorage::open(dir.path(), options()).unwrap_err();
    assert!(err.is_corruption(), "{err}");
    assert!(
        err.to_string().contains(&middle.display().to_string()),
        "{err}"
    );
}
