//! Guards key expiry in the transaction layer: lazy expiry against a model under a manual clock, the active expirer's bounded slices, garbage collection of expired versions only once no running transaction can see them, and deadlines across a power cut.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;
use pydb_storage::{KeyRange, MemoryStorage, StorageEngine};
use pydb_txn::{Isolation, ManualClock, Options, TxnManager};

fn manager(clock: &ManualClock, sample: usize) -> TxnManager {
    let options = Options {
        clock: clock.clone().into(),
        expire_interval: None,
        expire_sample: sample,
        ..common::options()
    };
    TxnManager::open(Arc::new(MemoryStorage::new()), options).unwrap()
}

/// Every engine record (versions and metadata).
fn records(engine: &Arc<dyn StorageEngine>) -> usize {
    engine.scan(KeyRange::all()).unwrap().count()
}

#[derive(Debug, Clone)]
enum Op {
    Set(u8, u8),
    SetExpiring(u8, u8, u64),
    Expire(u8, u64),
    Persist(u8),
    Delete(u8),
    Advance(u64),
    Get(u8),
    Scan,
    Gc,
    ExpireCycle,
}

fn op() -> impl Strategy<Value = Op> {
    let k = 0..4u8;
    prop_oneof![
        2 => (k.clone(), any::<u8>()).prop_map(|(k, v)| Op::Set(k, v)),
        3 => (k.clone(), any::<u8>(), 0..20u64).prop_map(|(k, v, t)| Op::SetExpiring(k, v, t)),
        2 => (k.clone(), 0..20u64).prop_map(|(k, t)| Op::Expire(k, t)),
        1 => k.clone().prop_map(Op::Persist),
        1 => k.clone().prop_map(Op::Delete),
        3 => (0..12u64).prop_map(Op::Advance),
        3 => k.prop_map(Op::Get),
        1 => Just(Op::Scan),
        1 => Just(Op::Gc),
        2 => Just(Op::ExpireCycle),
    ]
}

/// The model: key -> (value, deadline), and the time.
#[derive(Debug, Default)]
struct Model {
    now: u64,
    keys: BTreeMap<u8, (u8, Option<u64>)>,
}

impl Model {
    fn live(&self, k: u8) -> Option<(u8, Option<u64>)> {
        self.keys
            .get(&k)
            .copied()
            .filter(|(_, d)| d.is_none_or(|d| self.now <= d))
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Whatever the order of writes, time steps, collections and expiry
    /// cycles, every read sees exactly the model's live keys.
    #[test]
    fn reads_match_a_model_with_a_manual_clock(
        ops in proptest::collection::vec(op(), 1..60),
        sample in 1..6usize,
    ) {
        let clock = ManualClock::new(1_000);
        let mgr = manager(&clock, sample);
        let mut model = Model { now: 1_000, ..Model::default() };
        for op in ops {
            match op {
                Op::Set(k, v) => {
                    mgr.transaction(Isolation::ReadCommitted, |tx| tx.set(&[k], &[v])).unwrap();
                    model.keys.insert(k, (v, None));
                }
                Op::SetExpiring(k, v, ttl) => {
                    let at = model.now + ttl;
                    mgr.transaction(Isolation::ReadCommitted, |tx| {
                        tx.set_with_deadline(&[k], &[v], Some(at))
                    })
                    .unwrap();
                    model.keys.insert(k, (v, Some(at)));
                }
                Op::Expire(k, ttl) => {
                    let at = model.now + ttl;
                    mgr.transaction(Isolation::Snapshot, |tx| {
                        if let Some((v, _)) = tx.get_with_deadline(&[k])? {
                            tx.set_with_deadline(&[k], &v, Some(at))?;
                        }
                        Ok(())
                    })
                    .unwrap();
                    if let Some((v, _)) = model.live(k) {
                        model.keys.insert(k, (v, Some(at)));
                    }
                }
                Op::Persist(k) => {
                    mgr.transaction(Isolation::Snapshot, |tx| {
                        if let Some((v, _)) = tx.get_with_deadline(&[k])? {
                            tx.set(&[k], &v)?;
                        }
                        Ok(())
                    })
                    .unwrap();
                    if let Some((v, _)) = model.live(k) {
                        model.keys.insert(k, (v, None));
                    }
                }
                Op::Delete(k) => {
                    mgr.transaction(Isolation::ReadCommitted, |tx| tx.delete(&[k])).unwrap();
                    model.keys.remove(&k);
                }
                Op::Advance(ms) => {
                    clock.advance(ms);
                    model.now += ms;
                }
                Op::Get(k) => {
                    let tx = mgr.begin_read_only(Isolation::Snapshot).unwrap();
                    let got = tx.get_with_deadline(&[k]).unwrap();
                    let expected = model.live(k).map(|(v, d)| (Bytes::from(vec![v]), d));
                    prop_assert_eq!(got, expected);
                }
                Op::Scan => {
                    let tx = mgr.begin_read_only(Isolation::Snapshot).unwrap();
                    let got: Vec<(Bytes, Bytes)> =
                        tx.scan::<&[u8]>(..).unwrap().collect::<Result<_, _>>().unwrap();
                    let expected: Vec<(Bytes, Bytes)> = (0..4u8)
                        .filter_map(|k| model.live(k).map(|(v, _)| (Bytes::from(vec![k]), Bytes::from(vec![v]))))
                        .collect();
                    prop_assert_eq!(got, expected);
                }
                Op::Gc => {
                    mgr.gc().unwrap();
                }
                Op::ExpireCycle => {
                    let report = mgr.expire_cycle().unwrap();
                    // Bounded work: a cycle stops at the first key past
                    // its sample.
                    prop_assert!(report.versions <= sample as u64 + 64);
                }
            }
        }
        // After a full sweep and a collection, no expired key is left in
        // the engine: one version per live key, plus the metadata.
        loop {
            if mgr.expire_cycle().unwrap().wrapped {
                break;
            }
        }
        mgr.gc().unwrap();
        let live = (0..4u8).filter(|&k| model.live(k).is_some()).count();
        // gc_horizon, and last_commit_ts once anything committed.
        let meta = 1 + usize::from(mgr.last_commit() > 0);
        prop_assert_eq!(records(mgr.engine()), live + meta);
    }
}

#[test]
fn an_expiry_cycle_looks_at_a_bounded_slice_and_wraps() {
    let clock = ManualClock::new(0);
    let mgr = manager(&clock, 3);
    for k in 0..10u8 {
        mgr.transaction(Isolation::ReadCommitted, |tx| {
            tx.set_with_deadline(&[k], b"v", Some(if k % 2 == 0 { 10 } else { 1_000 }))
        })
        .unwrap();
    }
    clock.set(11);
    let mut expired = 0;
    let mut cycles = 0;
    loop {
        let report = mgr.expire_cycle().unwrap();
        assert!(report.versions <= 3, "{report:?}");
        expired += report.expired;
        cycles += 1;
        if report.wrapped {
            break;
        }
    }
    assert_eq!(expired, 5);
    assert_eq!(cycles, 4); // 10 keys, 3 a cycle
    assert_eq!(mgr.stats().expired_keys, 5);
    let tx = mgr.begin_read_only(Isolation::Snapshot).unwrap();
    assert_eq!(tx.scan::<&[u8]>(..).unwrap().count(), 5);
}

#[test]
fn the_expirer_never_deletes_a_key_rewritten_after_it_looked() {
    let clock = ManualClock::new(0);
    let mgr = manager(&clock, 100);
    mgr.transaction(Isolation::ReadCommitted, |tx| {
        tx.set_with_deadline(b"k", b"old", Some(5))
    })
    .unwrap();
    clock.set(6);
    // A client rewrites the key with no deadline; the expirer's own
    // transaction reads it again and leaves it.
    mgr.transaction(Isolation::ReadCommitted, |tx| tx.set(b"k", b"new"))
        .unwrap();
    let report = mgr.expire_cycle().unwrap();
    assert_eq!(report.expired, 0);
    let tx = mgr.begin_read_only(Isolation::Snapshot).unwrap();
    assert_eq!(tx.get(b"k").unwrap().unwrap(), "new");
}

#[test]
fn gc_drops_an_expired_version_once_no_transaction_began_before_its_deadline() {
    let clock = ManualClock::new(0);
    let mgr = manager(&clock, 100);
    mgr.transaction(Isolation::ReadCommitted, |tx| {
        tx.set_with_deadline(b"k", b"v", Some(100))
    })
    .unwrap();
    clock.set(50);
    let reader = mgr.begin_read_only(Isolation::Snapshot).unwrap();
    clock.set(200);
    // The reader began at 50: the value is alive for it, so GC keeps it.
    assert_eq!(mgr.gc().unwrap().garbage, 0);
    assert_eq!(reader.get(b"k").unwrap().unwrap(), "v");
    assert_eq!(reader.now_ms(), 50);
    let later = mgr.begin_read_only(Isolation::Snapshot).unwrap();
    assert_eq!(later.get(b"k").unwrap(), None);
    drop((reader, later));
    assert_eq!(mgr.gc().unwrap().garbage, 1);
    let versions = mgr
        .engine()
        .scan(KeyRange::all())
        .unwrap()
        .filter(|item| item.as_ref().unwrap().0.starts_with(&[0x01]))
        .count();
    assert_eq!(versions, 0);
}

/// Acknowledged deadlines (set, changed, removed) and the expirer's
/// deletes survive a power cut on the log and B+tree engines.
#[test]
fn deadlines_survive_a_power_cut() {
    use pydb_file::{FaultyOpener, MonolithicOpener};
    use pydb_index::BTreeIndex;
    use pydb_storage::{AppendOnlyLogStorage, BTreeStorage};

    type Open = fn(&std::path::Path, FaultyOpener<MonolithicOpener>) -> Arc<dyn StorageEngine>;
    type Reopen = fn(&std::path::Path) -> Arc<dyn StorageEngine>;
    let log: (Open, Reopen) = (
        |dir, opener| {
            Arc::new(
                AppendOnlyLogStorage::open_with(
                    dir,
                    opener,
                    BTreeIndex::new(),
                    common::log_options(),
                )
                .unwrap(),
            )
        },
        |dir| common::Kind::Log.open(dir),
    );
    let btree: (Open, Reopen) = (
        |dir, opener| {
            Arc::new(BTreeStorage::open_with(dir, common::btree_options(), opener).unwrap())
        },
        |dir| common::Kind::BTree.open(dir),
    );
    for (name, (open, reopen)) in [("log", log), ("btree", btree)] {
        let dir = common::scratch();
        let clock = ManualClock::new(1_000);
        let opener = FaultyOpener::new(MonolithicOpener, 7);
        let controller = opener.controller().clone();
        let options = Options {
            clock: clock.clone().into(),
            expire_interval: None,
            ..common::options()
        };
        let mgr = TxnManager::open(open(dir.path(), opener), options.clone()).unwrap();
        let write = |f: &dyn Fn(&mut pydb_txn::Transaction) -> pydb_txn::Result<()>| {
            mgr.transaction(Isolation::Snapshot, |tx| f(tx)).unwrap();
        };
        write(&|tx| tx.set_with_deadline(b"a", b"1", Some(5_000)));
        write(&|tx| tx.set_with_deadline(b"b", b"2", Some(1_500)));
        write(&|tx| tx.set_with_deadline(b"c", b"3", Some(9_000)));
        write(&|tx| tx.set(b"c", b"3")); // PERSIST
        write(&|tx| tx.set_with_deadline(b"a", b"1", Some(7_000))); // EXPIRE again
        clock.set(2_000);
        assert_eq!(mgr.expire_cycle().unwrap().expired, 1, "{name}");
        controller.power_cut().unwrap();
        drop(mgr);

        let mgr = TxnManager::open(reopen(dir.path()), options).unwrap();
        let tx = mgr.begin_read_only(Isolation::Snapshot).unwrap();
        let got = |k: &[u8]| tx.get_with_deadline(k).unwrap();
        assert_eq!(got(b"a"), Some((Bytes::from("1"), Some(7_000))), "{name}");
        assert_eq!(got(b"b"), None, "{name}");
        assert_eq!(got(b"c"), Some((Bytes::from("3"), None)), "{name}");
        // "b" is gone for good: a tombstone, not an expired value that a
        // clock set back could show again.
        clock.set(0);
        let early = mgr.begin_read_only(Isolation::Snapshot).unwrap();
        assert_eq!(early.get(b"b").unwrap(), None, "{name}");
        assert_eq!(early.get(b"a").unwrap().unwrap(), "1");
    }
}
