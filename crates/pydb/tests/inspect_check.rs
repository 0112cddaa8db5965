//! Guards `pydb inspect` and `pydb check`: every checksum is verified, damage gives a non-zero exit and points at `pydb repair`, a torn tail is not damage, and unknown files are refused.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use std::path::Path;

use pydb::file::MonolithicFile;
use pydb::meta::{self, Metadata};
use pydb::wal::{LogWriter, SyncPolicy};
use pydb::{EngineKind, IndexKind};

/// A database directory built by hand: metadata plus one record log.
fn make_db(dir: &Path) -> std::path::PathBuf {
    meta::write(dir, &Metadata::new(EngineKind::Log, Some(IndexKind::BTree))).unwrap();
    let log = dir.join("000001.log");
    let writer = LogWriter::new(MonolithicFile::create(&log).unwrap(), SyncPolicy::Always).unwrap();
    for i in 0..10 {
        writer
            .append(format!("record number {i}").as_bytes())
            .unwrap();
    }
    log
}

fn run(args: &[&std::ffi::OsStr]) -> (i32, String, String) {
    let output = assert_cmd::Command::new(common::pydb_bin())
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn check(dir: &Path) -> (i32, String, String) {
    run(&["check".as_ref(), dir.as_os_str()])
}

fn inspect(path: &Path) -> (i32, String, String) {
    run(&["inspect".as_ref(), path.as_os_str()])
}

fn flip(path: &Path, offset: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset] ^= 0x10;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_healthy_database_checks_clean() {
    let dir = tempfile::tempdir().unwrap();
    make_db(dir.path());
    let (code, out, _) = check(dir.path());
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("000001.log"), "{out}");
    assert!(out.contains("record log: 10 records ok"), "{out}");
    assert!(out.contains("directory metadata: ok"), "{out}");
    assert!(out.contains("no damage found"), "{out}");
}

#[test]
fn a_flipped_byte_in_a_record_is_damage() {
    let dir = tempfile::tempdir().unwrap();
    let log = make_db(dir.path());
    // Inside the payload of the third record: 16-byte header, records of
    // 9 + 15 bytes.
    flip(&log, 16 + 2 * 24 + 12);
    let (code, out, _) = check(dir.path());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("DAMAGED at offset 64"), "{out}");
    assert!(out.contains("DAMAGE FOUND in 1 of 2 files"), "{out}");
    assert!(out.contains("pydb repair"), "{out}");

    let (code, out, _) = inspect(&log);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("bad bytes at offset 64: record checksum mismatch"),
        "{out}"
    );
    assert!(out.contains("summary: 9 records ok, 1 damaged"), "{out}");
}

#[test]
fn a_torn_tail_is_reported_but_is_not_damage() {
    let dir = tempfile::tempdir().unwrap();
    let log = make_db(dir.path());
    let mut bytes = std::fs::read(&log).unwrap();
    let len = bytes.len();
    bytes.truncate(len - 5);
    std::fs::write(&log, bytes).unwrap();
    let (code, out, _) = check(dir.path());
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("9 records ok, torn tail of 19 bytes"), "{out}");
}

#[test]
fn damaged_metadata_is_damage() {
    let dir = tempfile::tempdir().unwrap();
    make_db(dir.path());
    flip(&dir.path().join("PYDB"), meta::META_INDEX_OFFSET);
    let (code, out, _) = check(dir.path());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("metadata checksum mismatch"), "{out}");
}

#[test]
fn a_damaged_file_header_is_damage() {
    let dir = tempfile::tempdir().unwrap();
    let log = make_db(dir.path());
    flip(&log, 2);
    let (code, out, _) = check(dir.path());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("not a pydb file"), "{out}");
}

#[test]
fn a_directory_without_metadata_is_not_checked() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = check(dir.path());
    assert_eq!(code, 2, "{out}");
    assert!(err.contains("is not a pydb database"), "{err}");
}

#[test]
fn inspect_refuses_a_file_that_is_not_pydb() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, "just some text").unwrap();
    let (code, _, err) = inspect(&path);
    assert_eq!(code, 2);
    assert!(err.contains("not a pydb file"), "{err}");
}

/// A real log-engine database: data, a compaction (sealed segment and
/// hint), more data in the active segment.
fn make_log_engine_db(dir: &Path) {
    let db = pydb::Db::open(dir, pydb::Options::default()).unwrap();
    for i in 0..50 {
        db.set(format!("key{i}"), format!("value {i}")).unwrap();
    }
    for i in 0..25 {
        db.delete(format!("key{i}")).unwrap();
    }
    db.compact().unwrap();
    db.set("after", "compaction").unwrap();
    db.close().unwrap();
}

#[test]
fn a_log_engine_database_checks_clean() {
    let dir = tempfile::tempdir().unwrap();
    make_log_engine_db(dir.path());
    let (code, out, _) = check(dir.path());
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("000000000002.hint        hint file: 25 entries ok"),
        "{out}"
    );
    assert!(out.contains("no damage found"), "{out}");
}

#[test]
fn a_flipped_byte_in_a_segment_or_a_hint_is_damage() {
    for file in ["000000000002.log", "000000000002.hint"] {
        let dir = tempfile::tempdir().unwrap();
        make_log_engine_db(dir.path());
        let path = dir.path().join(file);
        let len = std::fs::metadata(&path).unwrap().len() as usize;
        flip(&path, len / 2);
        let (code, out, _) = check(dir.path());
        assert_eq!(code, 1, "{file}: {out}");
        assert!(out.contains("DAMAGE FOUND in 1 of"), "{file}: {out}");
        let (code, out, _) = inspect(&path);
        assert_eq!(code, 1, "{file}: {out}");
    }
}

#[test]
fn a_record_that_is_not_a_log_entry_is_damage_in_a_log_engine_directory() {
    // make_db writes records whose payloads are plain text: valid records,
    // but not log entries, which the engine would refuse to open.
    let dir = tempfile::tempdir().unwrap();
    make_db(dir.path());
    let (code, out, _) = check(dir.path());
    // make_db's metadata names the log engine, so its log is a segment.
    assert_eq!(
        code, 0,
        "a healthy plain log is fine outside the engine: {out}"
    );
    std::fs::rename(
        dir.path().join("000001.log"),
        dir.path().join("000000000001.log"),
    )
    .unwrap();
    let (code, out, _) = inspect(&dir.path().join("000000000001.log"));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("entry: BAD"), "{out}");
}
