//! The model property test: random operations on an engine and on
//! [`MemoryStorage`], which must agree (see [`crate::model_suite!`]).

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::ops::Bound;

use bytes::Bytes;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use super::TestEngine;
use crate::{KeyRange, MemoryStorage, StorageEngine, WriteBatch};

/// One step of a model run.
#[derive(Debug, Clone)]
pub enum Op {
    /// `set(key, value)`.
    Set(Vec<u8>, Vec<u8>),
    /// `delete(key)`; both must say whether the key had a value.
    Delete(Vec<u8>),
    /// (is_set, key, value)
    Batch(Vec<(bool, Vec<u8>, Vec<u8>)>),
    /// `get(key)`.
    Get(Vec<u8>),
    /// `scan(start..end)`.
    Scan(Bound<Vec<u8>>, Bound<Vec<u8>>),
    /// Close and reopen the engine (persistent engines only).
    Reopen,
    /// `compact()`.
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

/// Random operations, with keys from a tiny alphabet so that they collide.
pub fn op() -> impl Strategy<Value = Op> {
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

/// Runs `ops` on `kind` and on the model, comparing every answer, then
/// compares the whole contents, also after a final reopen.
pub fn run(kind: &dyn TestEngine, ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let model = MemoryStorage::new();
    let mut engine = Some(kind.open(dir.path()).unwrap());
    let persistent = kind.persistent();
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
                            crate::BatchOp::Set {
                                key: k.into(),
                                value: v.into(),
                            }
                        } else {
                            crate::BatchOp::Delete { key: k.into() }
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
            // An engine that persists nothing has nothing to reopen.
            Op::Reopen if !persistent => {}
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
    if !persistent {
        return;
    }
    drop(engine.take());
    let e = kind.open(dir.path()).unwrap();
    assert_eq!(
        collect(&*e, KeyRange::all()),
        collect(&model, KeyRange::all()),
        "after a final reopen"
    );
}

/// Runs `cases` random operation sequences (1 to 50 operations each) on
/// `kind` against the model; a failure is shrunk and reported by proptest.
pub fn check(kind: &dyn TestEngine, cases: u32) {
    let mut runner = TestRunner::new(Config {
        cases,
        ..Config::default()
    });
    let result = runner.run(&prop::collection::vec(op(), 1..50), |ops| {
        run(kind, ops);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{kind:?} disagrees with the model: {e}");
    }
}
