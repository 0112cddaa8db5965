//! Guards the isolation levels against models, on random single-threaded
//! interleavings of up to three transactions over three keys:
//! - read committed and snapshot against exact models (what each read
//!   returns, which commits fail), so every decision is checked;
//! - serializable (SSI) and strict 2PL by serial replay: the committed
//!   transactions, replayed one after another in some order, must read
//!   what they read and leave what the database holds.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;
use pydb_storage::MemoryStorage;
use pydb_txn::{Concurrency, Isolation, LockWait, Transaction, TxnManager, TxnOptions};

type State = BTreeMap<u8, u8>;

#[derive(Debug, Clone)]
enum Op {
    Begin(usize),
    Get(usize, u8),
    Set(usize, u8, u8),
    Delete(usize, u8),
    Scan(usize),
    Commit(usize),
    Rollback(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let t = 0..3usize;
    let k = 0..3u8;
    prop_oneof![
        2 => t.clone().prop_map(Op::Begin),
        3 => (t.clone(), k.clone()).prop_map(|(t, k)| Op::Get(t, k)),
        3 => (t.clone(), k.clone(), 0..100u8).prop_map(|(t, k, v)| Op::Set(t, k, v)),
        1 => (t.clone(), k).prop_map(|(t, k)| Op::Delete(t, k)),
        1 => t.clone().prop_map(Op::Scan),
        2 => t.clone().prop_map(Op::Commit),
        1 => t.prop_map(Op::Rollback),
    ]
}

/// A step a transaction took and what it observed.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Get(u8, Option<u8>),
    Set(u8, u8),
    Delete(u8),
    Scan(Vec<(u8, u8)>),
}

fn k(key: u8) -> [u8; 1] {
    [b'a' + key]
}

fn setup(mgr: &TxnManager) -> State {
    let mut tx = mgr.begin(Isolation::Serializable).unwrap();
    tx.set(&k(0), &[10]).unwrap();
    tx.set(&k(1), &[20]).unwrap();
    tx.commit().unwrap();
    BTreeMap::from([(0, 10), (1, 20)])
}

fn contents(mgr: &TxnManager) -> State {
    let tx = mgr.begin(Isolation::Snapshot).unwrap();
    decode_scan(tx.scan::<&[u8]>(..).unwrap().map(Result::unwrap).collect())
        .into_iter()
        .collect()
}

fn decode_scan(rows: Vec<(Bytes, Bytes)>) -> Vec<(u8, u8)> {
    rows.into_iter()
        .map(|(key, v)| (key[0] - b'a', v[0]))
        .collect()
}

/// One transaction slot while the interleaving runs.
struct Slot {
    tx: Option<Transaction>,
    steps: Vec<Step>,
    /// Model: the snapshot it began with (snapshot level) and its writes.
    snapshot: State,
    writes: BTreeMap<u8, Option<u8>>,
    /// Model: the model commit count at begin.
    began_at: usize,
    /// Whether another transaction ran at some point during this one.
    overlapped: bool,
}

/// What the run produced: per committed transaction its steps, in commit
/// order; and how many transactions failed that never ran beside another
/// (there must be none: a transaction alone cannot conflict).
struct Run {
    committed: Vec<Vec<Step>>,
    lonely_aborts: usize,
}

fn run(
    ops: &[Op],
    options: TxnOptions,
    exact: Option<Isolation>,
) -> Result<(Run, TxnManager, State), TestCaseError> {
    let mgr = TxnManager::open(Arc::new(MemoryStorage::new()), common::options()).unwrap();
    let mut model = setup(&mgr);
    // Model history: for each model commit, the keys it wrote.
    let mut commits: Vec<Vec<u8>> = Vec::new();
    let mut slots: Vec<Option<Slot>> = (0..3).map(|_| None).collect();
    let mut committed = Vec::new();
    let mut lonely_aborts = 0;
    let overlay = |base: &State, writes: &BTreeMap<u8, Option<u8>>| {
        let mut s = base.clone();
        for (key, v) in writes {
            match v {
                Some(v) => s.insert(*key, *v),
                None => s.remove(key),
            };
        }
        s
    };
    let all_ops = ops
        .iter()
        .cloned()
        .chain((0..3).map(Op::Commit))
        .collect::<Vec<_>>();
    for op in all_ops {
        let t = match op {
            Op::Begin(t)
            | Op::Get(t, _)
            | Op::Set(t, _, _)
            | Op::Delete(t, _)
            | Op::Scan(t)
            | Op::Commit(t)
            | Op::Rollback(t) => t,
        };
        if let Op::Begin(_) = op {
            if slots[t].is_none() {
                let mut others = false;
                for other in slots.iter_mut().flatten().filter(|s| s.tx.is_some()) {
                    other.overlapped = true;
                    others = true;
                }
                slots[t] = Some(Slot {
                    overlapped: others,
                    tx: Some(mgr.begin_with(options.clone()).unwrap()),
                    steps: Vec::new(),
                    snapshot: model.clone(),
                    writes: BTreeMap::new(),
                    began_at: commits.len(),
                });
            }
            continue;
        }
        let Some(slot) = slots[t].as_mut() else {
            continue;
        };
        let Some(tx) = slot.tx.as_mut() else { continue };
        // The exact models' view of this transaction's reads.
        let view = match exact {
            Some(Isolation::ReadCommitted) => overlay(&model, &slot.writes),
            _ => overlay(&slot.snapshot, &slot.writes),
        };
        let result: pydb_txn::Result<()> = match op {
            Op::Get(_, key) => tx.get(&k(key)).map(|v| {
                let got = v.map(|v| v[0]);
                if exact.is_some() {
                    assert_eq!(got, view.get(&key).copied(), "get {key} in txn {t}");
                }
                slot.steps.push(Step::Get(key, got));
            }),
            Op::Set(_, key, v) => tx.set(&k(key), &[v]).map(|()| {
                slot.writes.insert(key, Some(v));
                slot.steps.push(Step::Set(key, v));
            }),
            Op::Delete(_, key) => tx.delete(&k(key)).map(|()| {
                slot.writes.insert(key, None);
                slot.steps.push(Step::Delete(key));
            }),
            Op::Scan(_) => tx
                .scan::<&[u8]>(..)
                .and_then(Iterator::collect)
                .map(|rows| {
                    let rows = decode_scan(rows);
                    if exact.is_some() {
                        let expected: Vec<(u8, u8)> = view.iter().map(|(a, b)| (*a, *b)).collect();
                        assert_eq!(rows, expected, "scan in txn {t}");
                    }
                    slot.steps.push(Step::Scan(rows));
                }),
            Op::Rollback(_) => {
                slots[t].as_mut().unwrap().tx.take().unwrap().rollback();
                Ok(())
            }
            Op::Commit(_) => {
                let tx = slot.tx.take().unwrap();
                let result = tx.commit().map(drop);
                if let Some(level) = exact {
                    let conflict = level == Isolation::Snapshot
                        && commits[slot.began_at..]
                            .iter()
                            .any(|written| written.iter().any(|key| slot.writes.contains_key(key)));
                    prop_assert_eq!(
                        result.is_err(),
                        conflict,
                        "commit of txn {} ({:?})",
                        t,
                        result
                    );
                }
                if result.is_ok() {
                    model = overlay(&model, &slot.writes);
                    if !slot.writes.is_empty() {
                        commits.push(slot.writes.keys().copied().collect());
                    }
                    committed.push(std::mem::take(&mut slot.steps));
                }
                result
            }
            Op::Begin(_) => unreachable!(),
        };
        if let Err(err) = result {
            prop_assert!(err.is_retryable(), "{}", err);
            if !slots[t].as_ref().unwrap().overlapped {
                lonely_aborts += 1;
            }
            slots[t].as_mut().unwrap().tx = None;
        }
    }
    Ok((
        Run {
            committed,
            lonely_aborts,
        },
        mgr,
        model,
    ))
}

/// Replays `order` serially from the initial state; `Some(final state)`
/// if every read matches.
fn replay(txns: &[&Vec<Step>]) -> Option<State> {
    let mut state: State = BTreeMap::from([(0, 10), (1, 20)]);
    for steps in txns {
        for step in *steps {
            match step {
                Step::Get(key, seen) => {
                    if state.get(key).copied() != *seen {
                        return None;
                    }
                }
                Step::Scan(rows) => {
                    let now: Vec<(u8, u8)> = state.iter().map(|(a, b)| (*a, *b)).collect();
                    if &now != rows {
                        return None;
                    }
                }
                Step::Set(key, v) => {
                    state.insert(*key, *v);
                }
                Step::Delete(key) => {
                    state.remove(key);
                }
            }
        }
    }
    Some(state)
}

fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![vec![]];
    }
    let mut out = Vec::new();
    for p in permutations(n - 1) {
        for i in 0..=p.len() {
            let mut q = p.clone();
            q.insert(i, n - 1);
            out.push(q);
        }
    }
    out
}

fn serializable(run: &Run, actual: &State) -> bool {
    permutations(run.committed.len()).into_iter().any(|order| {
        let txns: Vec<&Vec<Step>> = order.iter().map(|&i| &run.committed[i]).collect();
        replay(&txns).as_ref() == Some(actual)
    })
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(op(), 1..24)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn read_committed_matches_its_model(ops in ops()) {
        let (_, mgr, model) = run(&ops, TxnOptions::new(Isolation::ReadCommitted), Some(Isolation::ReadCommitted))?;
        let model: Vec<(u8, u8)> = model.into_iter().collect();
        prop_assert_eq!(contents_vec(&mgr), model);
    }

    #[test]
    fn snapshot_matches_its_model(ops in ops()) {
        let (_, mgr, model) = run(&ops, TxnOptions::new(Isolation::Snapshot), Some(Isolation::Snapshot))?;
        let model: Vec<(u8, u8)> = model.into_iter().collect();
        prop_assert_eq!(contents_vec(&mgr), model);
    }

    #[test]
    fn serializable_is_equivalent_to_a_serial_order(ops in ops()) {
        let (run, mgr, _) = run(&ops, TxnOptions::new(Isolation::Serializable), None)?;
        let actual = contents(&mgr);
        prop_assert!(serializable(&run, &actual), "no serial order explains {:?}", run.committed);
        prop_assert_eq!(run.lonely_aborts, 0);
    }

    #[test]
    fn two_phase_locking_is_equivalent_to_a_serial_order(ops in ops()) {
        let options = TxnOptions::new(Isolation::ReadCommitted)
            .concurrency(Concurrency::Locking)
            .lock_wait(LockWait::NoWait);
        let (run, mgr, _) = run(&ops, options, None)?;
        let actual = contents(&mgr);
        prop_assert!(serializable(&run, &actual), "no serial order explains {:?}", run.committed);
        prop_assert_eq!(run.lonely_aborts, 0);
    }
}

fn contents_vec(mgr: &TxnManager) -> Vec<(u8, u8)> {
    contents(mgr).into_iter().collect()
}
