//! Guards what only the LSM engine promises: snapshot reads through
//! flushes, compactions and reopens; no acknowledged write lost to a power
//! cut at any sync of a flush or compaction; damaged tables reported with
//! file and offset, never read as wrong values; both compaction styles.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use proptest::prelude::*;
use pydb_file::faulty::Op as FileOp;
use pydb_file::{FaultyOpener, FileOpener, MonolithicOpener};
use pydb_storage::lsm::describe_table;
use pydb_storage::{CompactionStyle, Error, KeyRange, LsmOptions, LsmStorage, StorageEngine};
use pydb_wal::SyncPolicy;

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

fn small(style: CompactionStyle) -> LsmOptions {
    LsmOptions {
        memtable_size: 2048,
        block_size: 256,
        restart_interval: 4,
        style,
        l0_compaction_trigger: 2,
        l0_slowdown_trigger: 6,
        l0_stop_trigger: 8,
        level1_size: 8192,
        level_size_ratio: 4,
        target_file_size: 2048,
        tier_runs: 3,
        block_cache_bytes: 8 << 10,
        max_open_tables: 4,
        max_key_size: 64,
        max_value_size: 4096,
        ..LsmOptions::default()
    }
}

fn contents(e: &dyn StorageEngine) -> Model {
    e.scan(KeyRange::all())
        .unwrap()
        .map(|r| {
            let (k, v) = r.unwrap();
            (k.to_vec(), v.to_vec())
        })
        .collect()
}

fn tables(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "sst"))
        .collect();
    out.sort();
    out
}

#[derive(Debug, Clone)]
enum Op {
    Set(u8, u16),
    Delete(u8),
    Snapshot,
    DropSnapshot(usize),
    Flush,
    Compact,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => (0u8..40, any::<u16>()).prop_map(|(k, v)| Op::Set(k, v)),
        4 => (0u8..40).prop_map(Op::Delete),
        2 => Just(Op::Snapshot),
        1 => (0usize..4).prop_map(Op::DropSnapshot),
        1 => Just(Op::Flush),
        1 => Just(Op::Compact),
        1 => Just(Op::Reopen),
    ]
}

fn key(k: u8) -> Vec<u8> {
    format!("key{k:03}").into_bytes()
}

fn value(v: u16) -> Vec<u8> {
    format!("value-{v}-")
        .repeat(1 + usize::from(v % 8))
        .into_bytes()
}

/// Every live snapshot must read exactly the model as it was when taken,
/// by point reads and by scans, whatever ran since.
fn check_snapshot_model(style: CompactionStyle, ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let mut db = Some(LsmStorage::open(dir.path(), small(style)).unwrap());
    let mut model = Model::new();
    let mut snaps: Vec<(pydb_storage::Snapshot, Model)> = Vec::new();
    for op in ops {
        let e = db.as_ref().unwrap();
        match op {
            Op::Set(k, v) => {
                e.set(&key(k), &value(v)).unwrap();
                model.insert(key(k), value(v));
            }
            Op::Delete(k) => {
                assert_eq!(e.delete(&key(k)).unwrap(), model.remove(&key(k)).is_some());
            }
            Op::Snapshot => snaps.push((e.snapshot(), model.clone())),
            Op::DropSnapshot(i) => {
                if i < snaps.len() {
                    snaps.remove(i);
                }
            }
            Op::Flush => e.flush_memtable().unwrap(),
            Op::Compact => e.compact().unwrap(),
            Op::Reopen => {
                snaps.clear();
                drop(db.take());
                db = Some(LsmStorage::open(dir.path(), small(style)).unwrap());
            }
        }
        let e = db.as_ref().unwrap();
        for (snap, then) in &snaps {
            let seen: Model = e
                .scan_at(KeyRange::all(), snap)
                .unwrap()
                .map(|r| {
                    let (k, v) = r.unwrap();
                    (k.to_vec(), v.to_vec())
                })
                .collect();
            assert_eq!(&seen, then, "snapshot at {}", snap.seq());
            for k in (0..40).step_by(7) {
                assert_eq!(
                    e.get_at(&key(k), snap).unwrap().map(|b| b.to_vec()),
                    then.get(&key(k)).cloned()
                );
            }
        }
    }
    let e = db.as_ref().unwrap();
    e.wait_for_compactions().unwrap();
    assert_eq!(contents(e), model);
    drop(snaps);
    drop(db.take());
    let e = LsmStorage::open(dir.path(), small(style)).unwrap();
    assert_eq!(contents(&e), model, "after a final reopen");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn leveled_snapshots_match_the_model(ops in prop::collection::vec(op(), 1..120)) {
        check_snapshot_model(CompactionStyle::Leveled, ops);
    }

    #[test]
    fn tiered_snapshots_match_the_model(ops in prop::collection::vec(op(), 1..120)) {
        check_snapshot_model(CompactionStyle::Tiered, ops);
    }
}

#[test]
fn flushes_and_compactions_happen_and_keep_everything() {
    for style in [CompactionStyle::Leveled, CompactionStyle::Tiered] {
        let dir = tempfile::tempdir().unwrap();
        let db = LsmStorage::open(dir.path(), small(style)).unwrap();
        let mut model = Model::new();
        for i in 0..3000u32 {
            let (k, v) = (key((i * 7 % 200) as u8), value(i as u16));
            db.set(&k, &v).unwrap();
            model.insert(k, v);
            if i % 5 == 0 {
                let k = key((i * 13 % 200) as u8);
                db.delete(&k).unwrap();
                model.remove(&k);
            }
        }
        db.wait_for_compactions().unwrap();
        let stats = db.stats();
        assert!(stats.get("flushes").unwrap() > 10, "{stats:?}");
        assert!(stats.get("compactions").unwrap() > 2, "{stats:?}");
        assert!(
            db.level_files().iter().skip(1).sum::<usize>() > 0,
            "{:?}",
            db.level_files()
        );
        assert_eq!(contents(&db), model, "{style:?}");
        for (k, v) in &model {
            assert_eq!(db.get(k).unwrap().unwrap(), v.as_slice());
        }
        drop(db);
        let db = LsmStorage::open(dir.path(), small(style)).unwrap();
        assert_eq!(contents(&db), model, "{style:?} after reopen");
    }
}

/// Writers keep going while flushes and compactions run; a snapshot taken
/// mid-way reads the same thing before and after they finish.
#[test]
fn concurrent_writers_with_background_work() {
    let dir = tempfile::tempdir().unwrap();
    let db = LsmStorage::open(dir.path(), small(CompactionStyle::Leveled)).unwrap();
    std::thread::scope(|s| {
        for t in 0..3u32 {
            let db = &db;
            s.spawn(move || {
                for i in 0..400u32 {
                    let k = format!("t{t}-{:03}", i % 150);
                    db.set(k.as_bytes(), format!("{i}").as_bytes()).unwrap();
                }
            });
        }
        let db = &db;
        s.spawn(move || {
            for _ in 0..20 {
                let snap = db.snapshot();
                let a: Vec<(Bytes, Bytes)> = db
                    .scan_at(KeyRange::all(), &snap)
                    .unwrap()
                    .map(Result::unwrap)
                    .collect();
                std::thread::sleep(std::time::Duration::from_millis(2));
                let b: Vec<(Bytes, Bytes)> = db
                    .scan_at(KeyRange::all(), &snap)
                    .unwrap()
                    .map(Result::unwrap)
                    .collect();
                assert_eq!(a, b, "a snapshot changed under flushes and compactions");
            }
        });
    });
    db.wait_for_compactions().unwrap();
    let all = contents(&db);
    assert_eq!(all.len(), 450);
    for t in 0..3 {
        for i in 250..400u32 {
            let k = format!("t{t}-{:03}", i % 150);
            assert_eq!(all[k.as_bytes()], format!("{i}").as_bytes());
        }
    }
}

/// A power cut at the n-th file sync or directory sync of a flush and
/// compaction, for every n: after reopening, every acknowledged write is
/// there and nothing else.
#[test]
fn power_cut_at_every_sync_of_flush_and_compaction() {
    for op in [FileOp::Sync, FileOp::SyncDir, FileOp::Write] {
        let mut n = 1;
        loop {
            let dir = tempfile::tempdir_in("/dev/shm")
                .or_else(|_| tempfile::tempdir())
                .unwrap();
            let opener = FaultyOpener::new(MonolithicOpener, n);
            let controller = opener.controller().clone();
            let mut opts = small(CompactionStyle::Leveled);
            opts.memtable_size = 1 << 20; // flushes only when asked
            let db = LsmStorage::open_with(dir.path(), opener, opts.clone()).unwrap();
            let mut model = Model::new();
            for round in 0..3u32 {
                for i in 0..60u32 {
                    let (k, v) = (
                        key((i * 3 + round) as u8 % 90),
                        value((i + round * 100) as u16),
                    );
                    db.set(&k, &v).unwrap();
                    model.insert(k, v);
                }
                if round < 2 {
                    db.flush_memtable().unwrap();
                }
            }
            db.wait_for_compactions().unwrap();
            controller.fail_nth(op, n);
            let result = db.compact();
            // A failed background flush is retried, so compact() may still
            // succeed: what counts is whether the fault fired.
            let failed = result.is_err();
            let fired = controller.counters().io_errors > 0;
            controller.power_cut().unwrap();
            drop(db);
            let db = LsmStorage::open_with(dir.path(), MonolithicOpener, opts).unwrap();
            assert_eq!(contents(&db), model, "{op:?} #{n} failed: {failed}");
            drop(db);
            let db = LsmStorage::open_with(
                dir.path(),
                MonolithicOpener,
                small(CompactionStyle::Leveled),
            )
            .unwrap();
            assert_eq!(contents(&db), model, "{op:?} #{n}, second reopen");
            if !fired {
                break; // n is past the last operation of that kind
            }
            n += 1;
            assert!(n < 200, "compaction never finished");
        }
        assert!(
            n > 3,
            "{op:?}: only {n} points of failure in a flush and compaction"
        );
    }
}

/// One flushed table of a small database, and the database directory.
fn one_table() -> (tempfile::TempDir, PathBuf, Model) {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = small(CompactionStyle::Leveled);
    opts.memtable_size = 1 << 20;
    opts.compression = true;
    let db = LsmStorage::open(dir.path(), opts).unwrap();
    let mut model = Model::new();
    for i in 0..60u8 {
        db.set(&key(i), &value(u16::from(i))).unwrap();
        model.insert(key(i), value(u16::from(i)));
    }
    db.delete(&key(3)).unwrap();
    model.remove(&key(3));
    db.flush_memtable().unwrap();
    drop(db);
    let t = tables(dir.path());
    assert_eq!(t.len(), 1);
    (dir, t[0].clone(), model)
}

fn names_file(err: &Error, path: &Path) -> bool {
    matches!(err, Error::File(pydb_file::Error::Corrupted { path: file, .. }) if file == path)
}

#[test]
fn a_table_cut_at_every_byte_is_reported_with_its_file() {
    let (_dir, path, _) = one_table();
    let bytes = std::fs::read(&path).unwrap();
    let report = describe_table(MonolithicOpener.open(&path, false).unwrap()).unwrap();
    assert!(report.blocks.len() > 3, "{report}");
    let scratch = tempfile::tempdir().unwrap();
    let cut_path = scratch.path().join("cut.sst");
    for cut in 0..bytes.len() {
        std::fs::write(&cut_path, &bytes[..cut]).unwrap();
        let err = describe_table(MonolithicOpener.open(&cut_path, false).unwrap()).unwrap_err();
        assert!(names_file(&err, &cut_path), "cut at {cut}: {err}");
    }
}

#[test]
fn flipped_bytes_in_a_table_are_errors_never_wrong_values() {
    let (dir, path, model) = one_table();
    let bytes = std::fs::read(&path).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let flip_path = scratch.path().join("flip.sst");
    // Table level: every byte, through the verifier.
    for i in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[i] ^= 0x10;
        std::fs::write(&flip_path, &bad).unwrap();
        let err = describe_table(MonolithicOpener.open(&flip_path, false).unwrap()).unwrap_err();
        assert!(names_file(&err, &flip_path), "flip at {i}: {err}");
    }
    // Engine level: a sample of bytes, through open, get and scan.
    for i in (0..bytes.len()).step_by(5) {
        let mut bad = bytes.clone();
        bad[i] ^= 0x01;
        std::fs::write(&path, &bad).unwrap();
        let mut errors = 0;
        match LsmStorage::open(dir.path(), small(CompactionStyle::Leveled)) {
            Err(err) => {
                assert!(names_file(&err, &path), "flip at {i}: {err}");
                errors += 1;
            }
            Ok(db) => {
                for k in 0..60u8 {
                    match db.get(&key(k)) {
                        Ok(v) => assert_eq!(
                            v.map(|b| b.to_vec()),
                            model.get(&key(k)).cloned(),
                            "flip at {i}"
                        ),
                        Err(err) => {
                            assert!(names_file(&err, &path), "flip at {i}: {err}");
                            errors += 1;
                        }
                    }
                }
                for item in db.scan(KeyRange::all()).unwrap() {
                    match item {
                        Ok((k, v)) => {
                            assert_eq!(model.get(k.as_ref()).map(Vec::as_slice), Some(v.as_ref()))
                        }
                        Err(err) => {
                            assert!(names_file(&err, &path), "flip at {i}: {err}");
                            errors += 1;
                        }
                    }
                }
            }
        }
        assert!(errors > 0, "flip at {i} went unnoticed");
    }
    std::fs::write(&path, &bytes).unwrap();
    let db = LsmStorage::open(dir.path(), small(CompactionStyle::Leveled)).unwrap();
    assert_eq!(contents(&db), model);
}

#[test]
fn every_sync_policy_survives_a_clean_reopen() {
    for policy in [
        SyncPolicy::Always,
        SyncPolicy::Periodic(std::time::Duration::from_millis(5)),
        SyncPolicy::Never,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let opts = LsmOptions {
            sync_policy: policy,
            ..small(CompactionStyle::Leveled)
        };
        let db = LsmStorage::open(dir.path(), opts.clone()).unwrap();
        for i in 0..500u32 {
            db.set(format!("k{i}").as_bytes(), &i.to_le_bytes())
                .unwrap();
        }
        drop(db);
        let db = LsmStorage::open(dir.path(), opts).unwrap();
        assert_eq!(contents(&db).len(), 500, "{policy:?}");
    }
}

/// A directory written with tiered compaction (overlapping runs below
/// level 0) reads the same when reopened with leveled compaction, and back.
#[test]
fn switching_compaction_style_keeps_every_value() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::new();
    for (round, style) in [
        CompactionStyle::Tiered,
        CompactionStyle::Leveled,
        CompactionStyle::Tiered,
    ]
    .into_iter()
    .enumerate()
    {
        let db = LsmStorage::open(dir.path(), small(style)).unwrap();
        assert_eq!(contents(&db), model, "reopened as {style:?}");
        for i in 0..1500u32 {
            let (k, v) = (
                key((i * 11 % 120) as u8),
                value((i + 7 * round as u32) as u16),
            );
            db.set(&k, &v).unwrap();
            model.insert(k, v);
        }
        db.wait_for_compactions().unwrap();
        for (k, v) in &model {
            assert_eq!(db.get(k).unwrap().unwrap(), v.as_slice(), "{style:?}");
        }
    }
}

/// Junk in any one file of a database: opening, verifying and reading
/// give errors or values that were written, never a panic or a value that
/// was not.
#[test]
fn a_damaged_directory_errors_and_never_invents_values() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for trial in 0..40 {
        let dir = tempfile::tempdir_in("/dev/shm")
            .or_else(|_| tempfile::tempdir())
            .unwrap();
        // Every value each key ever had: a damaged WAL tail may roll a key
        // back to an older value, but never to one it did not have.
        let mut written: BTreeMap<Vec<u8>, Vec<Vec<u8>>> = BTreeMap::new();
        {
            let db = LsmStorage::open(dir.path(), small(CompactionStyle::Leveled)).unwrap();
            for i in 0..200u32 {
                let (k, v) = (key((i % 90) as u8), value(i as u16));
                db.set(&k, &v).unwrap();
                written.entry(k).or_default().push(v);
            }
            db.flush_memtable().unwrap();
            db.set(b"wal-only", b"yes").unwrap();
            written
                .entry(b"wal-only".to_vec())
                .or_default()
                .push(b"yes".to_vec());
        }
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().unwrap() != "LOCK")
            .collect();
        files.sort();
        let victim = &files[trial % files.len()];
        let mut bytes = std::fs::read(victim).unwrap();
        match next() % 3 {
            0 if !bytes.is_empty() => {
                let at = (next() as usize) % bytes.len();
                bytes[at] ^= 1 << (next() % 8);
            }
            1 => bytes.truncate((next() as usize) % (bytes.len() + 1)),
            _ => bytes = (0..(next() % 200)).map(|_| next() as u8).collect(),
        }
        std::fs::write(victim, &bytes).unwrap();
        let _ = pydb_storage::lsm::verify_dir(&MonolithicOpener, dir.path());
        let Ok(db) = LsmStorage::open(dir.path(), small(CompactionStyle::Leveled)) else {
            continue;
        };
        if let Ok(scan) = db.scan(KeyRange::all()) {
            for item in scan {
                let Ok((k, v)) = item else { break };
                assert!(
                    written
                        .get(k.as_ref())
                        .is_some_and(|vs| vs.iter().any(|w| w == v.as_ref())),
                    "{} was damaged into {k:?} = {v:?}",
                    victim.display()
                );
            }
        }
    }
}

#[test]
fn limits_too_large_for_a_wal_record_are_refused_not_overflowed() {
    let dir = tempfile::tempdir().unwrap();
    let opts = LsmOptions {
        max_key_size: usize::MAX,
        max_value_size: usize::MAX,
        ..LsmOptions::default()
    };
    let Err(err) = LsmStorage::open(dir.path(), opts) else {
        panic!("refused")
    };
    assert!(matches!(err, Error::InvalidDatabase { .. }), "{err}");
}
