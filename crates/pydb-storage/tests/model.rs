//! Guards every persistent engine against the model: random mixes of sets,
//! deletes, batches, reads, scans, reopens and compactions must give the
//! same answers as `MemoryStorage`.

#![allow(clippy::unwrap_used)]

mod common;

use std::ops::Bound;

use bytes::Bytes;
use common::Kind;
use proptest::prelude::*;
use pydb_storage::{KeyRange, MemoryStorage, StorageEngine, WriteBatch};

#[derive(Debug, Clone)]
enum Op {
    Set(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    /// (is_set, key, value)
    Batch(Vec<(bool, Vec<u8>, Vec<u8>)>),
    Get(Vec<u8>),
    Scan(Bound<Vec<u8>>, Bound<Vec<u8>>),
    Reopen,
    Compact,
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    // A small alphabet, so that keys collide and overwrite each other.
    prop::collection::vec(prop::sample::select(vec![b'a', b'b', 0u8, 0xff]), 1..4)
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => prop::collection::vec(any::<u8>(), 0..24),
        // Now and then a value large enough to fill a test segment fast.
        1 => prop::collection::vec(any::<u8>(), 500..900),
    ]
}

fn bound() -> impl Strategy<Value = Bound<Vec<u8>>> {
    prop_oneof![
        Just(Bound::Unbounded),
        key().prop_map(Bound::Included),
        key().prop_map(Bound::Excluded),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (key(), value()).prop_map(|(k, v)| Op::Set(k, v)),
        3 => key().prop_map(Op::Delete),
        2 => prop::collection::vec((any::<bool>(), key(), value()), 0..6).prop_map(Op::Batch),
        4 => key().prop_map(Op::Get),
        2 => (bound(), bound()).prop_map(|(s, e)| Op::Scan(s, e)),
        1 => Just(Op::Reopen),
        1 => Just(Op::Compact),
    ]
}

fn collect(engine: &dyn StorageEngine, range: KeyRange) -> Vec<(Bytes, Bytes)> {
    engine.scan(range).unwrap().map(Result::unwrap).collect()
}

fn run(kind: Kind, ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let model = MemoryStorage::new();
    let mut engine = Some(kind.open(dir.path()).unwrap());
    for op in ops {
        let e = engine.as_deref().unwrap();
        match op {
            Op::Set(k, v) => {
                model.set(&k, &v).unwrap();
                e.set(&k, &v).unwrap();
            }
            Op::Delete(k) => assert_eq!(
                e.delete(&k).unwrap(),
                model.delete(&k).unwrap(),
                "delete {k:?}"
            ),
            Op::Batch(ops) => {
                let batch: WriteBatch = ops
                    .into_iter()
                    .map(|(is_set, k, v)| {
                        if is_set {
                            pydb_storage::BatchOp::Set {
                                key: k.into(),
                                value: v.into(),
                            }
                        } else {
                            pydb_storage::BatchOp::Delete { key: k.into() }
                        }
                    })
                    .collect();
                model.write_batch(&batch).unwrap();
                e.write_batch(&batch).unwrap();
            }
            Op::Get(k) => assert_eq!(e.get(&k).unwrap(), model.get(&k).unwrap(), "get {k:?}"),
            Op::Scan(start, end) => {
                let range = KeyRange {
                    start: start.map(Bytes::from),
                    end: end.map(Bytes::from),
                };
                assert_eq!(
                    collect(e, range.clone()),
                    collect(&model, range.clone()),
                    "scan {range:?}"
                );
            }
            Op::Reopen => {
                drop(engine.take());
                engine = Some(kind.open(dir.path()).unwrap());
            }
            Op::Compact => e.compact().unwrap(),
        }
    }
    let e = engine.as_deref().unwrap();
    assert_eq!(
        collect(e, KeyRange::all()),
        collect(&model, KeyRange::all())
    );
    drop(engine.take());
    let e = kind.open(dir.path()).unwrap();
    assert_eq!(
        collect(&*e, KeyRange::all()),
        collect(&model, KeyRange::all()),
        "after a final reopen"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn log_hash_matches_the_model(ops in prop::collection::vec(op(), 1..50)) {
        run(Kind::LogHash, ops);
    }

    #[test]
    fn log_btree_matches_the_model(ops in prop::collection::vec(op(), 1..50)) {
        run(Kind::LogBTree, ops);
    }

    #[test]
    fn log_skiplist_matches_the_model(ops in prop::collection::vec(op(), 1..50)) {
        run(Kind::LogSkipList, ops);
    }

    #[test]
    fn btree_matches_the_model(ops in prop::collection::vec(op(), 1..50)) {
        run(Kind::BTree, ops);
    }

    #[test]
    fn lsm_matches_the_model(ops in prop::collection::vec(op(), 1..50)) {
        run(Kind::Lsm, ops);
    }
}

#[test]
fn every_persistent_kind_is_covered() {
    // Adding a kind to `common::PERSISTENT` without a test above fails here.
    assert_eq!(
        common::PERSISTENT,
        &[
            Kind::LogHash,
            Kind::LogBTree,
            Kind::LogSkipList,
            Kind::BTree,
            Kind::Lsm
        ]
    );
}
