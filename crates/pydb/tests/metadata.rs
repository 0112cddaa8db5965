//! Guards the `PYDB` directory metadata: a database is opened only by its own engine, never in a foreign directory, never from a newer format, and damaged metadata is a typed error.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use pydb::meta::{self, META_FILE_NAME, META_LEN, Metadata};
use pydb::{Db, EngineKind, Error, IndexKind, Options};

fn log_options(index: IndexKind) -> Options {
    Options {
        index,
        ..Options::with_engine(EngineKind::Log)
    }
}

#[test]
fn a_new_database_records_its_engine_and_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = Db::open(&path, log_options(IndexKind::Hash)).unwrap();
    db.set("k", "v").unwrap();
    db.close().unwrap();
    let found = meta::read(&path).unwrap().unwrap();
    assert_eq!(found, Metadata::new(EngineKind::Log, Some(IndexKind::Hash)));
    assert_eq!(
        std::fs::read(path.join(META_FILE_NAME)).unwrap().len(),
        META_LEN
    );

    // Any index may reopen a log database (the index is rebuilt in
    // memory); the metadata then records the one in use.
    let db = Db::open(&path, log_options(IndexKind::BTree)).unwrap();
    assert_eq!(db.get("k").unwrap().as_deref(), Some(&b"v"[..]));
    db.close().unwrap();
    let found = meta::read(&path).unwrap().unwrap();
    assert_eq!(found.index, Some(IndexKind::BTree));
}

#[test]
fn another_engine_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    meta::write(dir.path(), &Metadata::new(EngineKind::BTree, None)).unwrap();
    let err = Db::open(dir.path(), Options::default()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::WrongEngine {
                on_disk: EngineKind::BTree,
                asked: EngineKind::Log,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("--engine btree"), "{err}");
}

#[test]
fn a_foreign_directory_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("thesis.tex"), "precious").unwrap();
    let err = Db::open(dir.path(), Options::default()).unwrap_err();
    match &err {
        Error::NotADatabase { found, .. } => assert_eq!(found, "thesis.tex"),
        other => panic!("expected NotADatabase, got {other}"),
    }
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["thesis.tex"], "pydb wrote into a foreign directory");
}

#[test]
fn a_newer_format_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // A future version-4 file, possibly with another layout after byte 12.
    let mut bytes = meta::META_MAGIC.to_vec();
    bytes.extend_from_slice(&4u32.to_le_bytes());
    bytes.extend_from_slice(&[0xAB; 28]);
    std::fs::write(dir.path().join(META_FILE_NAME), bytes).unwrap();
    let err = Db::open(dir.path(), Options::default()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::UnsupportedVersion {
                found: 4,
                supported: 3,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_directory_from_before_transactions_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    // A valid version-1 PYDB (log engine, btree index), as pydb wrote it
    // before its engine held version keys.
    let mut bytes = meta::META_MAGIC.to_vec();
    bytes.extend_from_slice(&1u32.to_le_bytes());
    bytes.extend_from_slice(&[1, 2, 0, 0]);
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    std::fs::write(dir.path().join(META_FILE_NAME), &bytes).unwrap();
    let err = Db::open(dir.path(), Options::default()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::OldFormat {
                found: 1,
                supported: 3,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.kind(), pydb::storage::ErrorKind::Unsupported);
    // Refused, not rewritten: the old file is as it was.
    assert_eq!(
        std::fs::read(dir.path().join(META_FILE_NAME)).unwrap(),
        bytes
    );
}

#[test]
fn damaged_metadata_is_reported_with_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    meta::write(
        dir.path(),
        &Metadata::new(EngineKind::Log, Some(IndexKind::BTree)),
    )
    .unwrap();
    let path = dir.path().join(META_FILE_NAME);
    let good = std::fs::read(&path).unwrap();

    // A flipped engine id: the checksum catches it.
    let mut bad = good.clone();
    bad[meta::META_ENGINE_OFFSET] ^= 0x04;
    std::fs::write(&path, &bad).unwrap();
    let err = Db::open(dir.path(), Options::default()).unwrap_err();
    match &err {
        Error::Corrupted { file, offset, .. } => {
            assert_eq!(file, &path);
            assert_eq!(*offset, meta::META_CRC_OFFSET as u64);
        }
        other => panic!("expected Corrupted, got {other}"),
    }
    assert!(err.is_corruption());

    // A truncated file.
    std::fs::write(&path, &good[..META_LEN - 1]).unwrap();
    let err = Db::open(dir.path(), Options::default()).unwrap_err();
    assert!(err.is_corruption(), "{err}");

    // Not a metadata file at all.
    std::fs::write(&path, b"hello, world, this is not pydb").unwrap();
    let err = Db::open(dir.path(), Options::default()).unwrap_err();
    assert!(err.is_corruption(), "{err}");
}

#[test]
fn a_leftover_temp_file_from_a_crash_does_not_block_creation() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(meta::META_TEMP_FILE_NAME), b"half").unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    db.close().unwrap();
    assert!(!dir.path().join(meta::META_TEMP_FILE_NAME).exists());
    assert!(meta::read(dir.path()).unwrap().is_some());
}

#[test]
fn the_memory_engine_ignores_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("thesis.tex"), "precious").unwrap();
    let db = Db::open(dir.path(), Options::with_engine(EngineKind::Memory)).unwrap();
    db.set("k", "v").unwrap();
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn every_index_opens_reopens_and_records_itself() {
    for index in [
        IndexKind::Hash,
        IndexKind::BTree,
        IndexKind::SkipList,
        IndexKind::BPlusTree,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), log_options(index)).unwrap();
        db.set("k", "v").unwrap();
        db.close().unwrap();
        let found = meta::read(dir.path()).unwrap().unwrap();
        assert_eq!(found.index, Some(index));
        let db = Db::open(dir.path(), log_options(index)).unwrap();
        assert_eq!(db.get("k").unwrap().as_deref(), Some(&b"v"[..]), "{index}");
    }
}
