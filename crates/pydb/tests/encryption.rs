//! Guards encrypted and compressed databases: the settings are recorded in `PYDB` (version 3), a wrong or missing key is a typed error that changes nothing, no key or value is on disk in plaintext, a version 2 directory still opens, and key rotation survives a crash at any step.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::path::Path;

use pydb::meta::{self, META_ENCRYPTED_LEN, META_FILE_NAME, META_LEN, META_TEMP_FILE_NAME};
use pydb::{Compression, Db, EngineKind, Error, IndexKind, KeyMaterial, Options};

fn key(byte: u8) -> KeyMaterial {
    KeyMaterial::from_bytes(vec![byte; 32]).unwrap()
}

fn encrypted(engine: EngineKind, compression: Compression, material: KeyMaterial) -> Options {
    Options {
        encryption: Some(material),
        compression,
        ..Options::with_engine(engine)
    }
}

/// Every file under `dir`, with its bytes.
fn all_files(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(all_files(&path));
        } else {
            out.push((path.clone(), std::fs::read(&path).unwrap()));
        }
    }
    out
}

/// A value that cannot appear by chance, with its key.
fn marker(i: u32) -> (String, String) {
    (
        format!("secret-key-{i:05}-zebra"),
        format!("plaintext-value-{i:05}-{}", "giraffe".repeat(8)),
    )
}

/// Writes, compacts, reopens and reads back 300 markers.
fn fill_and_check(path: &Path, options: &Options) {
    let db = Db::open(path, options.clone()).unwrap();
    for i in 0..300 {
        let (k, v) = marker(i);
        db.set(&k, &v).unwrap();
    }
    for i in 0..100 {
        db.delete(marker(i).0).unwrap();
    }
    db.compact().unwrap();
    db.close().unwrap();
    let db = Db::open(path, options.clone()).unwrap();
    for i in 0..300 {
        let (k, v) = marker(i);
        let got = db.get(&k).unwrap();
        if i < 100 {
            assert_eq!(got, None, "{k}");
        } else {
            assert_eq!(got.as_deref(), Some(v.as_bytes()), "{k}");
        }
    }
    assert_eq!(db.key_count().unwrap(), 200);
    db.close().unwrap();
}

#[test]
fn no_key_or_value_is_on_disk_in_plaintext_for_any_engine() {
    for engine in [EngineKind::Log, EngineKind::BTree, EngineKind::Lsm] {
        for compression in [Compression::None, Compression::Lz4] {
            if engine == EngineKind::BTree && compression == Compression::Lz4 {
                continue;
            }
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("db");
            fill_and_check(&path, &encrypted(engine, compression, key(1)));
            let files = all_files(&path);
            assert!(files.len() >= 2, "{engine}: {files:?}");
            for (file, bytes) in &files {
                for needle in [&b"secret-key"[..], b"plaintext-value", b"giraffe"] {
                    assert!(
                        !bytes.windows(needle.len()).any(|w| w == needle),
                        "{engine}/{compression}: {} holds {:?} in plaintext",
                        file.display(),
                        String::from_utf8_lossy(needle)
                    );
                }
            }
            let found = meta::read(&path).unwrap().unwrap();
            assert!(found.is_encrypted());
            assert_eq!(found.compression, compression);
            assert_eq!(
                std::fs::read(path.join(META_FILE_NAME)).unwrap().len(),
                META_ENCRYPTED_LEN
            );
        }
    }
}

#[test]
fn the_same_fill_is_readable_without_encryption_as_a_control() {
    // The needle search above can fail: without encryption, it finds them.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    fill_and_check(&path, &Options::with_engine(EngineKind::Log));
    let found = all_files(&path)
        .iter()
        .any(|(_, bytes)| bytes.windows(10).any(|w| w == b"secret-key"));
    assert!(found);
}

#[test]
fn a_wrong_or_missing_key_is_a_typed_error_and_changes_nothing() {
    for engine in [EngineKind::Log, EngineKind::BTree, EngineKind::Lsm] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let db = Db::open(&path, encrypted(engine, Compression::None, key(1))).unwrap();
        db.set("k", "v").unwrap();
        db.close().unwrap();
        let before = all_files(&path);

        let err = Db::open(&path, encrypted(engine, Compression::None, key(2))).unwrap_err();
        assert!(matches!(err, Error::WrongKey { .. }), "{engine}: {err}");
        assert!(err.to_string().contains("wrong encryption key"), "{err}");
        let err = Db::open(&path, Options::with_engine(engine)).unwrap_err();
        assert!(matches!(err, Error::KeyRequired { .. }), "{engine}: {err}");
        assert!(err.to_string().contains("--encryption-key-file"), "{err}");
        assert_eq!(all_files(&path), before, "{engine}: a refused open wrote");

        let db = Db::open(&path, encrypted(engine, Compression::None, key(1))).unwrap();
        assert_eq!(db.get("k").unwrap().as_deref(), Some(&b"v"[..]));
        assert_eq!(db.stats().get("encrypted"), Some(1));
    }
}

#[test]
fn settings_that_differ_from_the_directory_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain");
    Db::open(&plain, Options::default())
        .unwrap()
        .close()
        .unwrap();
    let err = Db::open(
        &plain,
        encrypted(EngineKind::Log, Compression::None, key(1)),
    )
    .unwrap_err();
    assert!(matches!(err, Error::SettingsMismatch { .. }), "{err}");
    let err = Db::open(
        &plain,
        Options {
            compression: Compression::Lz4,
            ..Options::default()
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("--compression none"), "{err}");

    let packed = dir.path().join("packed");
    let lz4 = Options {
        compression: Compression::Lz4,
        ..Options::default()
    };
    Db::open(&packed, lz4.clone()).unwrap().close().unwrap();
    let err = Db::open(&packed, Options::default()).unwrap_err();
    assert!(err.to_string().contains("--compression lz4"), "{err}");
    Db::open(&packed, lz4).unwrap().close().unwrap();
}

#[test]
fn lz4_is_refused_for_the_btree_and_nothing_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let err = Db::open(
        &path,
        Options {
            compression: Compression::Lz4,
            ..Options::with_engine(EngineKind::BTree)
        },
    )
    .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert!(
        err.to_string().contains("rewrites its pages in place"),
        "{err}"
    );
    assert!(!path.exists());
}

#[test]
fn compression_is_reported_in_stats_and_halves_compressible_values() {
    for engine in [EngineKind::Log, EngineKind::Lsm] {
        let dir = tempfile::tempdir().unwrap();
        let options = Options {
            compression: Compression::Lz4,
            ..Options::with_engine(engine)
        };
        let db = Db::open(dir.path(), options).unwrap();
        for i in 0..2000u32 {
            db.set(format!("key{i:06}"), format!("{i:08}").repeat(16))
                .unwrap();
        }
        db.flush().unwrap();
        let stats = db.stats();
        let logical = stats.get("compressed_logical_bytes").unwrap();
        let physical = stats.get("compressed_physical_bytes").unwrap();
        assert!(logical > 200_000, "{engine}: {logical}");
        assert!(physical * 2 < logical, "{engine}: {physical} of {logical}");
        let permille = stats.get("compression_ratio_permille").unwrap();
        assert_eq!(permille, (physical * 1000 + logical / 2) / logical);
        assert_eq!(db.compression_stats().unwrap().logical_bytes, logical);
        // Files on disk are what the totals say (the WAL and tables are
        // all compressed; PYDB and LOCK are not).
        let on_disk: u64 = all_files(dir.path())
            .iter()
            .filter(|(p, _)| !p.ends_with(META_FILE_NAME) && !p.ends_with("LOCK"))
            .map(|(_, b)| b.len() as u64)
            .sum();
        assert_eq!(on_disk, physical, "{engine}");
    }
}

#[test]
fn a_version_2_directory_opens_as_plain_and_is_rewritten_as_version_3() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    db.set("k", "v").unwrap();
    db.close().unwrap();
    // Put back the 20 bytes a version 2 build wrote (same engine, index).
    let path = dir.path().join(META_FILE_NAME);
    let mut v2 = std::fs::read(&path).unwrap();
    assert_eq!(v2.len(), META_LEN);
    v2[8..12].copy_from_slice(&2u32.to_le_bytes());
    let crc = crc32fast::hash(&v2[..16]);
    v2[16..20].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&path, &v2).unwrap();
    assert_eq!(meta::read(dir.path()).unwrap().unwrap().format_version, 2);
    // Encryption cannot be switched on for existing data.
    let err = Db::open(
        dir.path(),
        encrypted(EngineKind::Log, Compression::None, key(1)),
    )
    .unwrap_err();
    assert!(matches!(err, Error::SettingsMismatch { .. }), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), v2);

    let db = Db::open(dir.path(), Options::default()).unwrap();
    assert_eq!(db.get("k").unwrap().as_deref(), Some(&b"v"[..]));
    db.close().unwrap();
    let found = meta::read(dir.path()).unwrap().unwrap();
    assert_eq!(found.format_version, 3);
    assert!(!found.is_encrypted());
    assert_eq!(found.compression, Compression::None);
    assert_eq!(found.index, Some(IndexKind::BPlusTree));
}

#[test]
fn key_rotation_rewraps_without_touching_data_and_is_crash_safe() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let options = |k: u8| encrypted(EngineKind::Log, Compression::Lz4, key(k));
    let db = Db::open(&path, options(1)).unwrap();
    db.set("k", "v").unwrap();
    let key_id = db.data_key_id().unwrap();
    db.close().unwrap();
    let data_before: Vec<_> = all_files(&path)
        .into_iter()
        .filter(|(p, _)| !p.ends_with(META_FILE_NAME))
        .collect();
    let old_meta = std::fs::read(path.join(META_FILE_NAME)).unwrap();

    // A rotation with the wrong current key is refused and writes nothing.
    let err = pydb::db::rotate_key(&path, &key(9), &key(2)).unwrap_err();
    assert!(matches!(err, Error::WrongKey { .. }), "{err}");
    assert_eq!(std::fs::read(path.join(META_FILE_NAME)).unwrap(), old_meta);

    assert_eq!(
        pydb::db::rotate_key(&path, &key(1), &key(2)).unwrap(),
        key_id
    );
    let new_meta = std::fs::read(path.join(META_FILE_NAME)).unwrap();
    assert_ne!(new_meta, old_meta);
    let data_after: Vec<_> = all_files(&path)
        .into_iter()
        .filter(|(p, _)| !p.ends_with(META_FILE_NAME))
        .collect();
    assert_eq!(data_after, data_before, "rotation rewrote data files");
    assert!(matches!(
        Db::open(&path, options(1)).unwrap_err(),
        Error::WrongKey { .. }
    ));
    let db = Db::open(&path, options(2)).unwrap();
    assert_eq!(db.get("k").unwrap().as_deref(), Some(&b"v"[..]));
    assert_eq!(db.data_key_id(), Some(key_id));
    db.close().unwrap();

    // The states a crash can leave, step by step (temp written and synced,
    // then renamed, then the directory synced): before the rename, the
    // old PYDB stands and a PYDB.tmp with the new wrapping lies beside it.
    // It is removed on open, and the old key still opens the database.
    std::fs::write(path.join(META_FILE_NAME), &old_meta).unwrap();
    std::fs::write(path.join(META_TEMP_FILE_NAME), &new_meta).unwrap();
    let db = Db::open(&path, options(1)).unwrap();
    assert_eq!(db.get("k").unwrap().as_deref(), Some(&b"v"[..]));
    db.close().unwrap();
    assert!(!path.join(META_TEMP_FILE_NAME).exists());
    // A torn temp file (cut anywhere) is removed the same way.
    for cut in [0, 1, 20, META_ENCRYPTED_LEN - 1] {
        std::fs::write(path.join(META_TEMP_FILE_NAME), &new_meta[..cut]).unwrap();
        let db = Db::open(&path, options(1)).unwrap();
        db.close().unwrap();
    }
    // After the rename, the new key opens it and the old one does not.
    std::fs::write(path.join(META_FILE_NAME), &new_meta).unwrap();
    assert!(Db::open(&path, options(1)).is_err());
    Db::open(&path, options(2)).unwrap().close().unwrap();
    // Rotating a database that is open is refused (the directory lock).
    let db = Db::open(&path, options(2)).unwrap();
    assert!(pydb::db::rotate_key(&path, &key(2), &key(3)).is_err());
    drop(db);
}

#[test]
fn key_files_load_through_options() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, "a passphrase of at least thirty-two bytes\n").unwrap();
    let options = Options::default().encryption_key_file(&key_file).unwrap();
    let db = Db::open(dir.path().join("db"), options.clone()).unwrap();
    db.set("k", "v").unwrap();
    db.close().unwrap();
    Db::open(dir.path().join("db"), options).unwrap();
    std::fs::write(&key_file, "short").unwrap();
    let err = Options::default()
        .encryption_key_file(&key_file)
        .unwrap_err();
    assert!(err.to_string().contains("at least 32"), "{err}");
}
