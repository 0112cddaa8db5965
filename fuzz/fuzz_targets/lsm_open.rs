//! Opening the LSM engine on a damaged directory: a valid database whose
//! file chosen by the control byte (table, manifest, WAL or CURRENT) is
//! replaced by the input. Opening, verifying, planning a repair, reading
//! and scanning never panic, and neither a read nor the repair plan returns
//! a value that was never written.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pydb_file::MonolithicOpener;
use pydb_storage::lsm::verify_dir;
use pydb_storage::{KeyRange, LsmOptions, LsmStorage, StorageEngine};

fn options() -> LsmOptions {
    LsmOptions {
        memtable_size: 1024,
        block_size: 128,
        l0_compaction_trigger: 4,
        ..LsmOptions::default()
    }
}

fn written(i: u32) -> (String, String) {
    (format!("key{i:03}"), format!("value{i:03}"))
}

fuzz_target!(|data: &[u8]| {
    let Some(dir) = pydb_fuzz::scratch_dir() else {
        return;
    };
    let Some((control, rest)) = data.split_first() else {
        return;
    };
    {
        let Ok(db) = LsmStorage::open(dir, options()) else {
            return;
        };
        for i in 0..40 {
            let (k, v) = written(i);
            let _ = db.set(k.as_bytes(), v.as_bytes());
        }
        let _ = db.flush_memtable();
        let _ = db.set(b"key999", b"value999");
    }
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    names.retain(|p| p.file_name().is_some_and(|n| n != "LOCK"));
    names.sort();
    if names.is_empty() {
        return;
    }
    let victim = &names[usize::from(*control) % names.len()];
    if std::fs::write(victim, rest).is_err() {
        return;
    }
    let valid = |k: &[u8], v: &[u8]| {
        (0..40).chain([999]).any(|i| {
            let (wk, wv) = written(i);
            wk.as_bytes() == k && wv.as_bytes() == v
        })
    };
    let _ = verify_dir(&MonolithicOpener, dir);
    if let Ok(plan) = pydb_storage::lsm::repair::plan(&MonolithicOpener, dir) {
        for (k, v) in &plan.pairs {
            assert!(valid(k, v), "{k:?} = {v:?} planned but never written");
        }
    }
    let Ok(db) = LsmStorage::open(dir, options()) else {
        return;
    };
    if let Ok(scan) = db.scan(KeyRange::all()) {
        for item in scan.take(100) {
            let Ok((k, v)) = item else { break };
            assert!(valid(&k, &v), "{k:?} = {v:?} was never written");
        }
    }
    for i in 0..40 {
        if let Ok(Some(v)) = db.get(written(i).0.as_bytes()) {
            assert!(valid(written(i).0.as_bytes(), &v));
        }
    }
});
