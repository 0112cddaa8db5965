//! Guards docs/formats.md against drift: `pydb inspect` on freshly written files must print exactly the examples the document shows.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use std::path::Path;

use pydb::file::MonolithicFile;
use pydb::meta::Metadata;
use pydb::storage::{BTreeOptions, BTreeStorage, EngineConfig, StorageEngine, open_engine};
use pydb::wal::{LogWriter, SyncPolicy};
use pydb::{Db, EngineKind, IndexKind, Options};

/// The output lines of the example after `<!-- inspect-example: NAME -->` in
/// docs/formats.md (the `$ pydb inspect` line removed).
fn documented_example(name: &str) -> String {
    let doc_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/formats.md");
    let doc = std::fs::read_to_string(&doc_path).unwrap();
    let marker = format!("<!-- inspect-example: {name} -->");
    let after = doc
        .split_once(&marker)
        .unwrap_or_else(|| panic!("docs/formats.md has no {marker}"))
        .1;
    let block = after
        .split_once("```text\n")
        .expect("a ```text block after the marker")
        .1
        .split_once("```")
        .expect("the block is closed")
        .0;
    let mut lines = block.lines();
    let command = lines.next().unwrap_or_default();
    assert!(command.starts_with("$ pydb inspect "), "{command}");
    lines.map(|l| format!("{l}\n")).collect()
}

/// What `pydb inspect path` prints.
fn inspect(path: &Path) -> String {
    inspect_with(&[], path)
}

/// What `pydb inspect ARGS path` prints.
fn inspect_with(args: &[&str], path: &Path) -> String {
    let output = assert_cmd::Command::new(common::pydb_bin())
        .arg("inspect")
        .args(args)
        .arg(path)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    String::from_utf8(output).unwrap()
}

/// Replaces the output lines of example `name` in docs/formats.md with
/// `actual`, keeping the `$ pydb inspect` line.
fn update_example(name: &str, actual: &str) {
    let doc_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/formats.md");
    let doc = std::fs::read_to_string(&doc_path).unwrap();
    let marker = format!("<!-- inspect-example: {name} -->");
    let (before, after) = doc.split_once(&marker).unwrap();
    let (gap, block) = after.split_once("```text\n").unwrap();
    let (body, rest) = block.split_once("```").unwrap();
    let command = body.lines().next().unwrap_or_default();
    let updated = format!("{before}{marker}{gap}```text\n{command}\n{actual}```{rest}");
    std::fs::write(&doc_path, updated).unwrap();
}

/// Compares `actual` with the documented example `name`; with
/// `PYDB_UPDATE_DOCS=1` in the environment, rewrites the document instead
/// (after a deliberate format change; review the diff before committing).
fn assert_same(name: &str, actual: &str) {
    if std::env::var_os("PYDB_UPDATE_DOCS").is_some() {
        update_example(name, actual);
        return;
    }
    let documented = documented_example(name);
    assert_eq!(
        actual, documented,
        "`pydb inspect` output for '{name}' differs from docs/formats.md;\n\
         if the format changed on purpose, update the document.\n--- actual ---\n{actual}"
    );
}

#[test]
fn metadata_example_matches_a_fresh_database() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        index: IndexKind::BTree,
        ..Options::with_engine(EngineKind::Log)
    };
    Db::open(dir.path(), options).unwrap().close().unwrap();
    assert_same("metadata", &inspect(&dir.path().join("PYDB")));
}

#[test]
fn record_log_example_matches_a_fresh_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wal.log");
    let writer =
        LogWriter::new(MonolithicFile::create(&path).unwrap(), SyncPolicy::Always).unwrap();
    writer.append(b"hello").unwrap();
    writer
        .append_batch(&[b"first of a batch", b"last of a batch"])
        .unwrap();
    drop(writer);
    assert_same("record-log", &inspect(&path));
}

/// A log database with known content: a set, then a batch of two sets and
/// a delete; then (for the hint) a compaction, which seals the live data
/// into segment 2 with its hint.
fn make_log_db(dir: &Path, compact: bool) {
    // The engine itself, not `Db`: `Db` writes version keys of the
    // transaction layer, and these examples show the engine's own records.
    pydb::meta::write(dir, &Metadata::new(EngineKind::Log, Some(IndexKind::BTree))).unwrap();
    let mut config = EngineConfig::new(EngineKind::Log).with_sync(SyncPolicy::Always);
    config.index = IndexKind::BTree;
    let engine = open_engine(dir, &config).unwrap();
    engine.set(b"hello", b"world").unwrap();
    let mut batch = pydb::WriteBatch::new();
    batch.set("a", "1").set("b", "2").delete("hello");
    engine.write_batch(&batch).unwrap();
    if compact {
        engine.compact().unwrap();
    }
    engine.flush().unwrap();
}

#[test]
fn log_segment_example_matches_a_fresh_database() {
    let dir = tempfile::tempdir().unwrap();
    make_log_db(dir.path(), false);
    assert_same(
        "log-segment",
        &inspect(&dir.path().join("000000000001.log")),
    );
}

#[test]
fn hint_example_matches_a_fresh_compaction() {
    let dir = tempfile::tempdir().unwrap();
    make_log_db(dir.path(), true);
    assert_same("hint", &inspect(&dir.path().join("000000000002.hint")));
}

/// A tiny B+tree of 512-byte pages: three sets (one value too large for a
/// leaf cell, so it goes to an overflow page) and a delete, each its own
/// write, then a clean close (a checkpoint: pages written, a new WAL
/// segment started; the first segment, which holds the writes, is kept
/// for the older meta copy).
fn make_btree(dir: &Path) {
    let options = BTreeOptions {
        page_size: 512,
        ..BTreeOptions::default()
    };
    let tree = BTreeStorage::open(dir, options).unwrap();
    tree.set(b"apple", b"red").unwrap();
    tree.set(b"banana", b"yellow").unwrap();
    tree.set(b"cherry", &[b'c'; 200]).unwrap();
    tree.delete(b"banana").unwrap();
    drop(tree);
}

#[test]
fn btree_page_examples_match_a_fresh_tree() {
    let dir = tempfile::tempdir().unwrap();
    make_btree(dir.path());
    let pages = dir.path().join("pages");
    assert_same("btree-meta", &inspect_with(&["--page", "0"], &pages));
    assert_same("btree-leaf", &inspect_with(&["--page", "2"], &pages));
}

#[test]
fn btree_wal_example_matches_a_fresh_tree() {
    let dir = tempfile::tempdir().unwrap();
    make_btree(dir.path());
    assert_same(
        "btree-wal",
        &inspect(&dir.path().join("wal").join("0000000001.log")),
    );
}
