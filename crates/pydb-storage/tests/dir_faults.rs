//! Guards directory durability: a power cut that undoes a rename, a removal
//! or a creation whose directory was not synced yet (during log compaction,
//! a B+tree checkpoint, or the creation of the database directory) loses no
//! acknowledged write.
//!
//! Each sweep runs the same workload once to count the directory syncs of
//! the operation under test, then once per sync: that sync fails (so every
//! directory change since the previous one is still pending), the power is
//! cut, and the database is reopened with plain files.

#![allow(clippy::unwrap_used)]

mod common;

use common::{Model, contents};

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use pydb_file::faulty::Op as FileOp;
use pydb_file::{FaultController, FaultyOpener, FileOpener, MonolithicOpener};
use pydb_index::BTreeIndex;
use pydb_storage::{
    AppendOnlyLogStorage, BTreeOptions, BTreeStorage, Location, LogOptions, StorageEngine,
};
use pydb_wal::SyncPolicy;

type Faulty = FaultyOpener<MonolithicOpener>;

fn log_options() -> LogOptions {
    LogOptions {
        sync_policy: SyncPolicy::Always,
        max_segment_size: 1024,
        max_key_size: 64,
        max_value_size: 4096,
        compaction_threshold: 0.5,
        compaction_min_dead_bytes: 1,
        background_compaction: false,
        compaction_interval: Duration::from_secs(1),
        // Less than a segment: faults land before, inside and after the
        // zero-filling of a preallocation step.
        preallocate: 256,
    }
}

fn btree_options() -> BTreeOptions {
    BTreeOptions {
        page_size: 512,
        pool_bytes: 16 * 512,
        sync: SyncPolicy::Always,
        checkpoint_bytes: 4096,
        max_key_len: 64,
        max_value_len: 4096,
        ..BTreeOptions::default()
    }
}

fn open_log<O: FileOpener + 'static>(dir: &Path, opener: O) -> Box<dyn StorageEngine> {
    Box::new(
        AppendOnlyLogStorage::open_with(dir, opener, BTreeIndex::<Location>::new(), log_options())
            .unwrap(),
    )
}

fn open_btree<O: FileOpener + 'static>(dir: &Path, opener: O) -> Box<dyn StorageEngine> {
    Box::new(BTreeStorage::open_with(dir, btree_options(), opener).unwrap())
}

/// Overwrites and deletes over a few keys, every one acknowledged, so that
/// most bytes are dead and a compaction or checkpoint has work to do.
fn workload(db: &dyn StorageEngine) -> Model {
    let mut model = Model::new();
    for i in 0..120u32 {
        let key = format!("key-{}", i % 9).into_bytes();
        if i % 7 == 3 {
            db.delete(&key).unwrap();
            model.remove(&key);
        } else {
            let value = format!("value-{i}-")
                .repeat(1 + (i % 5) as usize)
                .into_bytes();
            db.set(&key, &value).unwrap();
            model.insert(key, value);
        }
    }
    model
}

/// The names of the files in `dir` (recursively, as `sub/name`).
fn files(dir: &Path) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type().unwrap().is_dir() {
            names.extend(
                files(&entry.path())
                    .into_iter()
                    .map(|n| format!("{name}/{n}")),
            );
        } else {
            names.insert(name);
        }
    }
    names
}

/// What one cut found: the files left behind, and the renames and
/// removals the power cut undid.
struct Cut {
    files: BTreeSet<String>,
    renames_lost: u64,
    removes_lost: u64,
}

/// Runs the workload in a fresh `db` directory through faulty files, then
/// `operation` with the `fail_sync`th directory sync failing (none if 0),
/// cuts the power and checks the reopened database. Returns what the cut
/// left, and how many directory syncs `operation` made.
fn run(
    open: fn(&Path, Faulty) -> Box<dyn StorageEngine>,
    reopen: fn(&Path, MonolithicOpener) -> Box<dyn StorageEngine>,
    operation: fn(&dyn StorageEngine),
    fail_sync: u64,
) -> (Cut, u64) {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("db");
    let opener = Faulty::new(MonolithicOpener, fail_sync);
    let controller: FaultController = opener.controller().clone();
    let db = open(&dir, opener);
    let model = workload(&*db);
    let before = controller.counters().dir_syncs;
    if fail_sync > 0 {
        controller.fail_nth(FileOp::SyncDir, fail_sync);
    }
    operation(&*db);
    let syncs = controller.counters().dir_syncs - before;
    controller.power_cut().unwrap();
    drop(db);
    let counters = controller.counters();
    let cut = Cut {
        files: files(&dir),
        renames_lost: counters.renames_lost,
        removes_lost: counters.removes_lost,
    };
    let db = reopen(&dir, MonolithicOpener);
    assert_eq!(
        contents(&*db),
        model,
        "directory sync {fail_sync} failed, then a power cut: acknowledged writes lost"
    );
    // The recovered database takes writes and keeps them.
    db.set(b"after", b"reopen").unwrap();
    drop(db);
    let db = reopen(&dir, MonolithicOpener);
    assert_eq!(db.get(b"after").unwrap().as_deref(), Some(&b"reopen"[..]));
    (cut, syncs)
}

/// Every directory sync of `operation` fails in turn; returns the cuts.
fn sweep(
    open: fn(&Path, Faulty) -> Box<dyn StorageEngine>,
    reopen: fn(&Path, MonolithicOpener) -> Box<dyn StorageEngine>,
    operation: fn(&dyn StorageEngine),
) -> Vec<Cut> {
    let (_, syncs) = run(open, reopen, operation, 0);
    assert!(syncs >= 2, "the operation syncs directories ({syncs})");
    (1..=syncs)
        .map(|n| run(open, reopen, operation, n).0)
        .collect()
}

/// A failed compaction poisons the engine or is only logged: either way it
/// must not lose data, so its result is not checked here.
fn compact(db: &dyn StorageEngine) {
    let _ = db.compact();
}

#[test]
fn log_compaction_loses_unsynced_renames_and_removals_but_no_write() {
    let cuts = sweep(open_log, open_log, compact);
    // A lost rename of a compaction output leaves its temp file behind
    // under its old name; reopening removes it.
    assert!(
        cuts.iter()
            .any(|c| c.renames_lost > 0 && c.files.iter().any(|f| f.ends_with(".log.tmp"))),
        "no cut undid the install of a compaction output: {:?}",
        cuts.iter().map(|c| &c.files).collect::<Vec<_>>()
    );
    // A lost removal leaves a compaction input beside the outputs: more
    // segments than a finished compaction leaves.
    let finished = run(open_log, open_log, compact, 0).0.files;
    let segments = |files: &BTreeSet<String>| files.iter().filter(|f| f.ends_with(".log")).count();
    assert!(
        cuts.iter()
            .any(|c| c.removes_lost > 0 && segments(&c.files) > segments(&finished)),
        "no cut undid the removal of a compaction input"
    );
}

#[test]
fn btree_checkpoint_loses_unsynced_removals_but_no_write() {
    let checkpoint = |db: &dyn StorageEngine| {
        let _ = db.compact();
    };
    let cuts = sweep(open_btree, open_btree, checkpoint);
    let finished = run(open_btree, open_btree, checkpoint, 0).0.files;
    let wal = |files: &BTreeSet<String>| files.iter().filter(|f| f.starts_with("wal/")).count();
    // The last sync of a checkpoint makes the removal of old WAL segments
    // durable; when it fails, they come back, and reopening removes them.
    assert!(
        cuts.iter()
            .any(|c| c.removes_lost > 0 && wal(&c.files) > wal(&finished)),
        "no cut undid the removal of a WAL segment: {:?} vs {finished:?}",
        cuts.iter().map(|c| &c.files).collect::<Vec<_>>()
    );
}

/// The database directory is created durably: a power cut right after the
/// first acknowledged write keeps it, and the write, even when the
/// directory and its parent were new.
#[test]
fn a_new_database_directory_survives_a_power_cut() {
    for (name, open, reopen) in [
        (
            "log",
            open_log::<Faulty> as fn(&Path, Faulty) -> Box<dyn StorageEngine>,
            open_log::<MonolithicOpener> as fn(&Path, MonolithicOpener) -> Box<dyn StorageEngine>,
        ),
        (
            "btree",
            open_btree::<Faulty>,
            open_btree::<MonolithicOpener>,
        ),
    ] {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("new/db");
        let opener = Faulty::new(MonolithicOpener, 1);
        let controller = opener.controller().clone();
        let db = open(&dir, opener);
        db.set(b"first", b"write").unwrap();
        controller.power_cut().unwrap();
        drop(db);
        assert!(dir.exists(), "{name}: the database directory vanished");
        let db = reopen(&dir, MonolithicOpener);
        assert_eq!(
            db.get(b"first").unwrap().as_deref(),
            Some(&b"write"[..]),
            "{name}"
        );
    }
}
