//! Guards every persistent engine against the model: random mixes of sets,
//! deletes, batches, reads, scans, reopens and compactions must give the
//! same answers as `MemoryStorage` (the shared `pydb_storage::testing::model`
//! suite, one line per engine).

#![allow(clippy::unwrap_used)]

mod common;

use common::Kind;

pydb_storage::model_suite!(log_hash, Kind::LogHash);
pydb_storage::model_suite!(log_btree, Kind::LogBTree);
pydb_storage::model_suite!(log_skiplist, Kind::LogSkipList);
pydb_storage::model_suite!(log_bplustree, Kind::LogBPlusTree);
pydb_storage::model_suite!(btree, Kind::BTree);
pydb_storage::model_suite!(lsm, Kind::Lsm);
// The engines on the decorators (issue 15: stacked under every suite).
pydb_storage::model_suite!(log_encrypted, Kind::LogEncrypted);
pydb_storage::model_suite!(log_compressed, Kind::LogCompressed);
pydb_storage::model_suite!(btree_encrypted, Kind::BTreeEncrypted);
pydb_storage::model_suite!(lsm_encrypted, Kind::LsmEncrypted);
pydb_storage::model_suite!(lsm_compressed, Kind::LsmCompressed);

#[test]
fn every_persistent_kind_is_covered() {
    // Adding a kind to `common::PERSISTENT` without a line above fails here.
    assert_eq!(
        common::PERSISTENT,
        &[
            Kind::LogHash,
            Kind::LogBTree,
            Kind::LogSkipList,
            Kind::LogBPlusTree,
            Kind::BTree,
            Kind::Lsm
        ]
    );
}
