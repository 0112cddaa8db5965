//! Guards the durability promise of every persistent engine under injected
//! faults: I/O errors, torn writes, a full disk and a lying `fsync`, then a
//! power cut. After reopening with plain files, the database must hold the
//! state after some prefix of the attempted writes that contains every
//! acknowledged one; a failed sync must poison; a full disk must be a clear
//! error that a write succeeds after once space returns.
//!
//! The suite itself is `pydb_storage::testing::faults`; each engine runs it
//! with one `fault_suite!` line at the bottom: a name, and how to open the
//! engine in `dir` with `opener`.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use pydb_file::{CompressedOpener, EncryptedOpener};
use pydb_index::{BPlusTreeIndex, BTreeIndex, InMemoryIndex, SkipListIndex};
use pydb_storage::{
    AppendOnlyLogStorage, BTreeOptions, BTreeStorage, Location, LogOptions, LsmOptions, LsmStorage,
};
use pydb_wal::SyncPolicy;

/// Log options with small segments (so runs cross rolls and compactions
/// have inputs) and every write synced.
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

/// B+tree options with small pages, a 16-frame pool (evictions write
/// pages between checkpoints) and frequent checkpoints.
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

/// LSM options with a memtable of a few writes, so that flushes and
/// compactions run (in the background) while faults are injected.
fn lsm_options() -> LsmOptions {
    LsmOptions {
        sync_policy: SyncPolicy::Always,
        memtable_size: 1024,
        block_size: 256,
        restart_interval: 4,
        l0_compaction_trigger: 2,
        l0_slowdown_trigger: 6,
        l0_stop_trigger: 8,
        level1_size: 4096,
        level_size_ratio: 4,
        target_file_size: 2048,
        max_key_size: 64,
        max_value_size: 4096,
        ..LsmOptions::default()
    }
}

pydb_storage::fault_suite!(log_btree, |dir, opener| AppendOnlyLogStorage::open_with(
    dir,
    opener,
    BTreeIndex::<Location>::new(),
    log_options()
));
pydb_storage::fault_suite!(log_hash, |dir, opener| AppendOnlyLogStorage::open_with(
    dir,
    opener,
    InMemoryIndex::<Location>::new(),
    log_options()
));
pydb_storage::fault_suite!(log_skiplist, |dir, opener| AppendOnlyLogStorage::open_with(
    dir,
    opener,
    SkipListIndex::<Location>::default(),
    log_options()
));
pydb_storage::fault_suite!(
    log_bplustree,
    |dir, opener| AppendOnlyLogStorage::open_with(
        dir,
        opener,
        BPlusTreeIndex::<Location>::new(),
        log_options()
    )
);
pydb_storage::fault_suite!(btree, |dir, opener| BTreeStorage::open_with(
    dir,
    btree_options(),
    opener
));
pydb_storage::fault_suite!(lsm, |dir, opener| LsmStorage::open_with(
    dir,
    opener,
    lsm_options()
));
pydb_storage::fault_suite!(
    log_encrypted,
    |dir, opener| AppendOnlyLogStorage::open_with(
        dir,
        EncryptedOpener::new(opener, common::test_key()),
        BTreeIndex::<Location>::new(),
        log_options()
    )
);
pydb_storage::fault_suite!(log_compressed, |dir, opener| {
    AppendOnlyLogStorage::open_with(
        dir,
        CompressedOpener::new(opener),
        BTreeIndex::<Location>::new(),
        log_options(),
    )
});
pydb_storage::fault_suite!(btree_encrypted, |dir, opener| BTreeStorage::open_with(
    dir,
    btree_options(),
    EncryptedOpener::new(opener, common::test_key())
));

pydb_storage::fault_suite!(lsm_encrypted, |dir, opener| LsmStorage::open_with(
    dir,
    EncryptedOpener::new(opener, common::test_key()),
    lsm_options()
));
pydb_storage::fault_suite!(lsm_compressed, |dir, opener| LsmStorage::open_with(
    dir,
    CompressedOpener::new(opener),
    lsm_options()
));
// The encrypted opener seals each file's last block at sync by default;
// these run the same faults with it sealed by every write instead.
pydb_storage::fault_suite!(log_encrypted_write_through, |dir, opener| {
    AppendOnlyLogStorage::open_with(
        dir,
        EncryptedOpener::new(opener, common::test_key()).with_tail_sealed_at_sync(false),
        BTreeIndex::<Location>::new(),
        log_options(),
    )
});
pydb_storage::fault_suite!(btree_encrypted_write_through, |dir, opener| {
    BTreeStorage::open_with(
        dir,
        btree_options(),
        EncryptedOpener::new(opener, common::test_key()).with_tail_sealed_at_sync(false),
    )
});

/// A planted bug: the log engine with `SyncPolicy::Never` acknowledges
/// writes that only reached the page cache. The fault suite must see them
/// vanish at the power cut, or it checks nothing.
#[test]
fn the_fault_suite_catches_writes_acknowledged_before_they_are_durable() {
    fn open<O: pydb_file::FileOpener + 'static>(
        dir: &std::path::Path,
        opener: O,
    ) -> pydb_storage::testing::faults::Opened {
        let options = LogOptions {
            sync_policy: SyncPolicy::Never,
            ..log_options()
        };
        Ok(Box::new(AppendOnlyLogStorage::open_with(
            dir,
            opener,
            BTreeIndex::<Location>::new(),
            options,
        )?))
    }
    let engine = pydb_storage::testing::faults::FaultEngine {
        name: "log_never_synced",
        faulty: open::<pydb_storage::testing::faults::Faulty>,
        plain: open::<pydb_file::MonolithicOpener>,
    };
    let caught = std::panic::catch_unwind(|| {
        pydb_storage::testing::faults::random_faults_then_power_cut(&engine)
    });
    assert!(
        caught.is_err(),
        "the fault suite missed lost acknowledged writes"
    );
}

/// A roll that gets its seal in but cannot start the next segment (a full
/// disk) fails the write without poisoning the log engine, and leaves a
/// database that is whole in both orders of what comes next: space returns
/// and the next write retries the segment, or the power goes first.
#[test]
fn a_roll_cut_short_by_a_full_disk_is_retried_and_survives_a_power_cut() {
    use pydb_storage::testing::faults::Faulty;
    use pydb_storage::{ErrorKind, StorageEngine};
    use std::collections::BTreeMap;

    fn open<O: pydb_file::FileOpener + 'static>(
        dir: &std::path::Path,
        opener: O,
    ) -> AppendOnlyLogStorage<O, BPlusTreeIndex<Location>> {
        AppendOnlyLogStorage::open_with(dir, opener, BPlusTreeIndex::new(), log_options()).unwrap()
    }
    fn contents(db: &dyn StorageEngine) -> BTreeMap<Vec<u8>, Vec<u8>> {
        db.scan(pydb_storage::KeyRange::all())
            .unwrap()
            .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
            .collect()
    }
    fn segment_files(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                let name = name.to_string_lossy();
                name.ends_with(".log") && !name.contains(".tmp")
            })
            .count()
    }

    let value = vec![b'v'; 90];
    let mut cut_short = 0;
    for power_first in [false, true] {
        // Each fill level and space budget puts the full disk at another
        // point of a roll: nothing fits, the seal (with the 256 bytes of
        // zeros preallocated for it) fits but the next segment's header and
        // its first preallocation do not, or everything fits.
        for (fill, budget) in (6..10u64).flat_map(|f| [0, 256, 300, 600].map(|b| (f, b))) {
            let dir = tempfile::tempdir().unwrap();
            let opener = Faulty::new(pydb_file::MonolithicOpener, fill * 1000 + budget);
            let controller = opener.controller().clone();
            let db = open(dir.path(), opener);
            let mut model = BTreeMap::new();
            for i in 0..fill {
                let key = format!("k{i:03}").into_bytes();
                db.set(&key, &value).unwrap();
                model.insert(key, value.clone());
            }
            controller.set_space_left(Some(budget));
            for attempt in 0..3 {
                let key = format!("full{attempt}").into_bytes();
                match db.set(&key, &value) {
                    Ok(()) => {
                        model.insert(key, value.clone());
                    }
                    Err(err) => {
                        assert_ne!(
                            err.kind(),
                            ErrorKind::Poisoned,
                            "fill {fill}/{budget}: {err}"
                        );
                        assert!(
                            err.to_string().contains("disk full"),
                            "{fill}/{budget}: {err}"
                        );
                    }
                }
            }
            // No half-made segment is left behind a sealed one: every file
            // on disk is a segment the engine knows.
            let known = db.stats().get("segments").unwrap();
            assert_eq!(segment_files(dir.path()) as u64, known, "{fill}/{budget}");
            cut_short += db.stats().get("rolls_cut_short").unwrap();
            if power_first {
                controller.power_cut().unwrap();
            } else {
                controller.set_space_left(None);
                db.set(b"after", &value).unwrap();
                model.insert(b"after".to_vec(), value.clone());
                assert_eq!(contents(&db), model, "fill {fill}: before the power cut");
                controller.power_cut().unwrap();
            }
            drop(db);
            // Every segment is framed as recovery and `pydb check` expect
            // (an entry behind a seal is damage, even where a hint hides it).
            let report = pydb_storage::log::verify::verify_dir(dir.path()).unwrap();
            assert!(report.is_ok(), "{fill}/{budget}: {:?}", report.findings);
            let db = open(dir.path(), pydb_file::MonolithicOpener);
            assert_eq!(
                contents(&db),
                model,
                "fill {fill}, power first {power_first}"
            );
            db.set(b"reopened", &value).unwrap();
        }
    }
    assert!(
        cut_short > 0,
        "no attempt sealed a segment and failed to start the next"
    );
}
