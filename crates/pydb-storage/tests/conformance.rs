//! Guards the `StorageEngine` contract on every engine and index: the
//! shared conformance suite (`pydb_storage::testing`), plus the counters
//! each engine keeps and the encrypted files' secrecy.

#![allow(clippy::unwrap_used)]

mod common;

use common::Kind;
use pydb_storage::StorageEngine;
use pydb_storage::testing::TestDb;

fn get(engine: &dyn StorageEngine, key: &[u8]) -> Option<Vec<u8>> {
    engine.get(key).unwrap().map(|v| v.to_vec())
}

fn stats_counters_move(kind: Kind) {
    let db = TestDb::new(&kind);
    let e = db.engine();
    let stat = |name: &str| e.stats().get(name).unwrap();
    if matches!(kind, Kind::Lsm | Kind::LsmEncrypted | Kind::LsmCompressed) {
        return lsm_stats_move(e);
    }
    assert_eq!(stat("live_keys"), 0);
    e.set(b"a", b"1").unwrap();
    e.set(b"b", b"2").unwrap();
    assert_eq!(stat("live_keys"), 2);
    let live = stat("live_bytes");
    assert!(live > 0);
    e.delete(b"a").unwrap();
    assert_eq!(stat("live_keys"), 1);
    assert!(stat("live_bytes") < live);
    if !kind.persistent() {
        return;
    }
    if kind.is_btree() {
        // The B+tree reuses pages as it frees them: no dead bytes, and
        // compaction is a checkpoint.
        assert!(stat("tree_height") >= 1);
        let checkpoints = stat("checkpoints");
        e.compact().unwrap();
        assert_eq!(stat("checkpoints"), checkpoints + 1);
        assert_eq!(stat("live_keys"), 1);
        assert!(stat("pool_hits") + stat("pool_misses") > 0);
        return;
    }
    for i in 0..50u32 {
        e.set(b"b", &i.to_le_bytes()).unwrap();
    }
    assert!(stat("dead_bytes") > 0);
    assert!(stat("total_bytes") > stat("dead_bytes"));
    assert!(stat("segments") >= 1);
    assert!(stat("index_memory_bytes") > 0);
    assert_eq!(stat("compactions"), 0);
    e.compact().unwrap();
    assert_eq!(stat("compactions"), 1);
    assert_eq!(stat("dead_bytes"), 0);
    assert_eq!(stat("live_keys"), 1);
    assert_eq!(stat("torn_tails_recovered"), 0);
}

/// The LSM counts bytes and files, not live keys (that would take a read
/// per write): its counters move with flushes, compactions and reads.
fn lsm_stats_move(e: &dyn pydb_storage::StorageEngine) {
    let stat = |name: &str| e.stats().get(name).unwrap();
    assert_eq!(stat("flushes"), 0);
    for i in 0..400u32 {
        e.set(format!("k{:03}", i % 100).as_bytes(), &[b'v'; 40])
            .unwrap();
    }
    assert!(stat("user_bytes_written") >= 400 * 44);
    e.compact().unwrap();
    assert!(stat("flushes") >= 1);
    assert!(stat("compactions") >= 1);
    assert_eq!(stat("level0_files"), 0);
    assert!(stat("table_bytes") > 0);
    assert!(stat("write_amplification_x100") > 100);
    assert!(get(e, b"k007").is_some());
    assert!(get(e, b"absent").is_none());
    assert!(stat("bloom_checks") >= 1);
    assert!(stat("block_cache_hits") + stat("block_cache_misses") >= 1);
}

/// Every file an encrypted engine writes (segments, hints, WAL, pages) holds
/// none of its keys or values in plaintext.
fn encrypted_files_hold_no_plaintext(kind: Kind) {
    if !kind.encrypted() {
        return;
    }
    let mut db = TestDb::new(&kind);
    for i in 0..300u32 {
        let key = format!("secret-key-{i:04}");
        let value = format!("secret-value-{i:04}-").repeat(4);
        db.engine().set(key.as_bytes(), value.as_bytes()).unwrap();
    }
    db.engine().delete(b"secret-key-0001").unwrap();
    db.engine().compact().unwrap();
    db.reopen();
    assert_eq!(
        get(db.engine(), b"secret-key-0002").unwrap(),
        "secret-value-0002-".repeat(4).as_bytes()
    );
    db.engine()
        .set(b"secret-key-last", b"secret-value-last")
        .unwrap();
    let mut files = vec![db.dir.path().to_path_buf()];
    let mut checked = 0;
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            !bytes.windows(7).any(|w| w == b"secret-"),
            "plaintext in {}",
            path.display()
        );
        checked += 1;
    }
    assert!(checked >= 2, "{checked} files checked");
}

for_each_engine!(stats_counters_move, encrypted_files_hold_no_plaintext);

// The shared conformance suite (`pydb_storage::testing::conformance`), one
// line per engine, as an engine in any crate runs it.
pydb_storage::conformance_suite!(memory_contract, crate::common::Kind::Memory);
pydb_storage::conformance_suite!(log_hash_contract, crate::common::Kind::LogHash);
pydb_storage::conformance_suite!(log_btree_contract, crate::common::Kind::LogBTree);
pydb_storage::conformance_suite!(log_skiplist_contract, crate::common::Kind::LogSkipList);
pydb_storage::conformance_suite!(log_bplustree_contract, crate::common::Kind::LogBPlusTree);
pydb_storage::conformance_suite!(btree_contract, crate::common::Kind::BTree);
pydb_storage::conformance_suite!(lsm_contract, crate::common::Kind::Lsm);
pydb_storage::conformance_suite!(log_encrypted_contract, crate::common::Kind::LogEncrypted);
pydb_storage::conformance_suite!(log_compressed_contract, crate::common::Kind::LogCompressed);
pydb_storage::conformance_suite!(
    btree_encrypted_contract,
    crate::common::Kind::BTreeEncrypted
);
pydb_storage::conformance_suite!(lsm_encrypted_contract, crate::common::Kind::LsmEncrypted);
pydb_storage::conformance_suite!(lsm_compressed_contract, crate::common::Kind::LsmCompressed);

/// A planted bug: an engine whose `delete` forgets to delete. The shared
/// suite must catch it, or it checks nothing.
#[derive(Debug, Default)]
struct ForgetsDeletes(pydb_storage::MemoryStorage);

impl StorageEngine for ForgetsDeletes {
    fn set(&self, key: &[u8], value: &[u8]) -> pydb_storage::Result<()> {
        self.0.set(key, value)
    }
    fn get(&self, key: &[u8]) -> pydb_storage::Result<Option<bytes::Bytes>> {
        self.0.get(key)
    }
    fn delete(&self, key: &[u8]) -> pydb_storage::Result<bool> {
        Ok(self.0.get(key)?.is_some())
    }
    fn write_batch(&self, batch: &pydb_storage::WriteBatch) -> pydb_storage::Result<()> {
        self.0.write_batch(batch)
    }
    fn scan(
        &self,
        range: pydb_storage::KeyRange,
    ) -> pydb_storage::Result<pydb_storage::ScanIter<'_>> {
        self.0.scan(range)
    }
    fn flush(&self) -> pydb_storage::Result<()> {
        self.0.flush()
    }
    fn compact(&self) -> pydb_storage::Result<()> {
        self.0.compact()
    }
    fn stats(&self) -> pydb_storage::Stats {
        self.0.stats()
    }
}

#[derive(Debug)]
struct Forgetful;

impl pydb_storage::testing::TestEngine for Forgetful {
    fn open(&self, _dir: &std::path::Path) -> pydb_storage::Result<Box<dyn StorageEngine>> {
        Ok(Box::new(ForgetsDeletes::default()))
    }
    fn persistent(&self) -> bool {
        false
    }
}

#[test]
fn the_shared_suites_catch_a_planted_bug() {
    let caught = std::panic::catch_unwind(|| {
        pydb_storage::testing::conformance::delete_and_delete_missing(&Forgetful)
    });
    assert!(
        caught.is_err(),
        "the conformance suite missed a delete that deletes nothing"
    );
    let caught = std::panic::catch_unwind(|| pydb_storage::testing::model::check(&Forgetful, 40));
    assert!(
        caught.is_err(),
        "the model test missed a delete that deletes nothing"
    );
}
