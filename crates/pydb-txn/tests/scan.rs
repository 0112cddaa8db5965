//! Guards the streaming scan (`TxnScan`): it yields exactly what a model
//! of committed data plus own writes holds, for any range, and a manager's
//! scan keeps its snapshot while commits and garbage collection go on.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::ops::{Bound, ControlFlow};

use bytes::Bytes;
use common::{Db, Kind};
use proptest::prelude::*;
use pydb_txn::{Isolation, Keyspace};
use rstest::rstest;

/// A key of a small alphabet, so that ranges, commits and own writes hit
/// the same keys often; `\0` is in it to exercise the escape.
fn key() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(prop_oneof![Just(0u8), Just(b'a'), Just(b'b')], 1..4)
}

/// `Some(value)` sets, `None` deletes.
fn writes() -> impl Strategy<Value = Vec<(Vec<u8>, Option<u8>)>> {
    proptest::collection::vec((key(), proptest::option::of(any::<u8>())), 0..12)
}

fn bound() -> impl Strategy<Value = Bound<Vec<u8>>> {
    prop_oneof![
        Just(Bound::Unbounded),
        key().prop_map(Bound::Included),
        key().prop_map(Bound::Excluded),
    ]
}

fn apply(model: &mut BTreeMap<Vec<u8>, u8>, writes: &[(Vec<u8>, Option<u8>)]) {
    for (k, v) in writes {
        match v {
            Some(v) => model.insert(k.clone(), *v),
            None => model.remove(k),
        };
    }
}

fn in_range(start: &Bound<Vec<u8>>, end: &Bound<Vec<u8>>, k: &[u8]) -> bool {
    let after_start = match start {
        Bound::Included(s) => k >= s.as_slice(),
        Bound::Excluded(s) => k > s.as_slice(),
        Bound::Unbounded => true,
    };
    let before_end = match end {
        Bound::Included(e) => k <= e.as_slice(),
        Bound::Excluded(e) => k < e.as_slice(),
        Bound::Unbounded => true,
    };
    after_start && before_end
}

/// The values of `scan`, read through `next_value_ref` and copied.
fn lent_values(scan: &mut pydb_txn::TxnScan<'_>) -> Vec<Bytes> {
    let mut values = Vec::new();
    while let Some(value) = scan.next_value_ref() {
        values.push(Bytes::copy_from_slice(value.unwrap()));
    }
    values
}

/// The values of `scan`, handed in batches of `max` by
/// `next_values_with` and copied; every batch but the last is full.
fn batched_values(scan: &mut pydb_txn::TxnScan<'_>, max: usize) -> Vec<Bytes> {
    let mut values = Vec::new();
    loop {
        let before = values.len();
        let handed = scan
            .next_values_with(max, |value| {
                values.push(Bytes::copy_from_slice(value));
                ControlFlow::Continue(())
            })
            .unwrap();
        assert_eq!(handed, values.len() - before);
        assert!(handed <= max);
        if handed < max {
            // The end: nothing more, however often it is asked.
            assert_eq!(
                scan.next_values_with(max, |_| ControlFlow::Continue(()))
                    .unwrap(),
                0
            );
            return values;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Several commits (old versions and tombstones underneath), then a
    /// transaction with its own sets and deletes, scans a random range in
    /// both spaces (with its keys, and the values alone); a Sql commit of
    /// the same keys must change nothing.
    #[test]
    fn a_scan_is_the_model_of_commits_and_own_writes(
        commits in proptest::collection::vec(writes(), 0..4),
        sql in writes(),
        own in writes(),
        start in bound(),
        end in bound(),
        batch in 1usize..5,
    ) {
        let db = Db::new(Kind::Memory);
        let mut model = BTreeMap::new();
        for commit in &commits {
            db.mgr.transaction(Isolation::Snapshot, |tx| {
                for (k, v) in commit {
                    match v {
                        Some(v) => tx.set(k, &[*v])?,
                        None => tx.delete(k)?,
                    }
                }
                Ok(())
            }).unwrap();
            apply(&mut model, commit);
        }
        db.mgr.transaction(Isolation::Snapshot, |tx| {
            for (k, v) in &sql {
                match v {
                    Some(v) => tx.set_in(Keyspace::Sql, k, &[v.wrapping_add(1)])?,
                    None => tx.delete_in(Keyspace::Sql, k)?,
                }
            }
            Ok(())
        }).unwrap();
        // Without own writes, the lent values walk the versions alone:
        // the committed model's values in the range.
        let committed: Vec<Bytes> = model
            .iter()
            .filter(|(k, _)| in_range(&start, &end, k))
            .map(|(_, v)| Bytes::copy_from_slice(&[*v]))
            .collect();
        let range = (start.as_ref().map(Vec::as_slice), end.as_ref().map(Vec::as_slice));
        let reader = db.mgr.begin(Isolation::Serializable).unwrap();
        prop_assert_eq!(lent_values(&mut reader.scan::<&[u8]>(range).unwrap()), committed.clone());
        prop_assert_eq!(batched_values(&mut reader.scan::<&[u8]>(range).unwrap(), batch), committed);
        drop(reader);
        let mut tx = db.mgr.begin(Isolation::Serializable).unwrap();
        for (k, v) in &own {
            match v {
                Some(v) => tx.set(k, &[*v]).unwrap(),
                None => tx.delete(k).unwrap(),
            }
        }
        apply(&mut model, &own);
        let expected: Vec<(Bytes, Bytes)> = model
            .iter()
            .filter(|(k, _)| in_range(&start, &end, k))
            .map(|(k, v)| (Bytes::copy_from_slice(k), Bytes::copy_from_slice(&[*v])))
            .collect();
        let range = (start.as_ref().map(Vec::as_slice), end.as_ref().map(Vec::as_slice));
        let got: Vec<(Bytes, Bytes)> = tx.scan::<&[u8]>(range).unwrap().map(Result::unwrap).collect();
        // The values alone, without building the keys: the same values.
        let mut values = tx.scan::<&[u8]>(range).unwrap();
        let values: Vec<Bytes> = std::iter::from_fn(|| values.next_value()).map(Result::unwrap).collect();
        let expected_values: Vec<Bytes> = expected.iter().map(|(_, v)| v.clone()).collect();
        prop_assert_eq!(&values, &expected_values);
        // Lent, with the own writes merged: the same values again.
        prop_assert_eq!(lent_values(&mut tx.scan::<&[u8]>(range).unwrap()), expected_values.clone());
        // Handed in batches, with the own writes merged: the same again.
        prop_assert_eq!(batched_values(&mut tx.scan::<&[u8]>(range).unwrap(), batch), expected_values);
        prop_assert_eq!(got, expected);
        let total = tx.scan_in::<&[u8]>(Keyspace::Kv, ..).unwrap().count();
        prop_assert_eq!(total, model.len());
    }
}

/// A table scan's lent values (`next_value_ref`, the executor's path) are
/// exactly its snapshot's, while other transactions commit updates (new
/// versions above the snapshot's), deletes and inserts between its reads.
#[rstest]
fn a_lent_scan_sees_exactly_its_snapshot_beside_commits(
    #[values(Kind::Memory, Kind::Log, Kind::BTree)] kind: Kind,
) {
    let db = Db::new(kind);
    let n = 200;
    let key = |i: usize| format!("row{i:04}").into_bytes();
    db.mgr
        .transaction(Isolation::Snapshot, |tx| {
            (0..n).try_for_each(|i| tx.set_in(Keyspace::Sql, &key(2 * i), &[1, i as u8]))
        })
        .unwrap();
    // One older version under half of the keys.
    db.mgr
        .transaction(Isolation::Snapshot, |tx| {
            (0..n)
                .step_by(2)
                .try_for_each(|i| tx.set_in(Keyspace::Sql, &key(2 * i), &[2, i as u8]))
        })
        .unwrap();
    let expected: Vec<Vec<u8>> = (0..n)
        .map(|i| vec![if i % 2 == 0 { 2 } else { 1 }, i as u8])
        .collect();
    let reader = db.mgr.begin(Isolation::Snapshot).unwrap();
    let mut scan = reader.scan_in::<&[u8]>(Keyspace::Sql, ..).unwrap();
    let mut got = Vec::new();
    while let Some(value) = scan.next_value_ref() {
        got.push(value.unwrap().to_vec());
        let i = got.len();
        // Behind, at and ahead of the scan: an update, a delete, an insert.
        db.mgr
            .transaction(Isolation::Snapshot, |tx| {
                tx.set_in(Keyspace::Sql, &key(2 * ((i * 7) % n)), &[9])?;
                tx.delete_in(Keyspace::Sql, &key(2 * ((i * 13) % n)))?;
                tx.set_in(Keyspace::Sql, &key(2 * ((i * 3) % n) + 1), &[8])
            })
            .unwrap();
    }
    assert_eq!(got, expected);
}

/// The scan reads the engine a chunk of visible versions at a time and
/// resumes after the last version key it visited: with thousands of keys
/// (chunks of 32, 64, ... visible versions), each with older versions,
/// newer ones above the snapshot, tombstones and expired values, the
/// values read lent, owned and with their keys (the three mixed in one
/// scan) are exactly the snapshot's.
#[rstest]
fn a_chunked_scan_is_its_snapshot_across_chunks(
    #[values(Kind::Memory, Kind::Log, Kind::BTree)] kind: Kind,
) {
    let db = Db::new(kind);
    let n = 3000;
    let key = |i: usize| format!("k{i:05}").into_bytes();
    let value = |round: u8, i: usize| vec![round, (i % 251) as u8, (i / 251) as u8];
    let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    // Three rounds: every key set, then a third of them updated, then
    // every fifth deleted and every seventh set to expire at once.
    db.mgr
        .transaction(Isolation::Snapshot, |tx| {
            (0..n).try_for_each(|i| tx.set_in(Keyspace::Sql, &key(i), &value(1, i)))
        })
        .unwrap();
    (0..n).for_each(|i| {
        model.insert(key(i), value(1, i));
    });
    db.mgr
        .transaction(Isolation::Snapshot, |tx| {
            (0..n)
                .step_by(3)
                .try_for_each(|i| tx.set_in(Keyspace::Sql, &key(i), &value(2, i)))
        })
        .unwrap();
    (0..n).step_by(3).for_each(|i| {
        model.insert(key(i), value(2, i));
    });
    db.mgr
        .transaction(Isolation::Snapshot, |tx| {
            for i in (0..n).step_by(5) {
                tx.delete_in(Keyspace::Sql, &key(i))?;
            }
            for i in (1..n).step_by(7) {
                tx.set_with_deadline_in(Keyspace::Sql, &key(i), &value(3, i), Some(1))?;
            }
            Ok(())
        })
        .unwrap();
    (0..n).step_by(5).for_each(|i| {
        model.remove(&key(i));
    });
    (1..n).step_by(7).for_each(|i| {
        model.remove(&key(i));
    });
    let reader = db.mgr.begin(Isolation::Snapshot).unwrap();
    // Above the reader's snapshot: invisible to it.
    db.mgr
        .transaction(Isolation::Snapshot, |tx| {
            (0..n)
                .step_by(2)
                .try_for_each(|i| tx.set_in(Keyspace::Sql, &key(i), &value(4, i)))
        })
        .unwrap();
    let expected: Vec<Vec<u8>> = model.values().cloned().collect();
    assert!(expected.len() > 1000);
    let mut scan = reader.scan_in::<&[u8]>(Keyspace::Sql, ..).unwrap();
    let mut got = Vec::new();
    while let Some(v) = scan.next_value_ref() {
        got.push(v.unwrap().to_vec());
    }
    assert_eq!(got, expected);
    // Mixed: lent, owned value, key and value, in turns.
    let mut scan = reader.scan_in::<&[u8]>(Keyspace::Sql, ..).unwrap();
    let mut got = Vec::new();
    for turn in 0.. {
        let next = match turn % 4 {
            0 => scan.next_value_ref().map(|v| v.unwrap().to_vec()),
            1 => scan.next_value().map(|v| v.unwrap().to_vec()),
            2 => scan.next().map(|item| {
                let (k, v) = item.unwrap();
                assert_eq!(model.get(&k[..]), Some(&v.to_vec()), "{k:?}");
                v.to_vec()
            }),
            _ => {
                // A batch of 1 to 97 values, straight from the engine
                // once the chunk the other reads left is used up.
                let handed = scan
                    .next_values_with(turn % 97 + 1, |v| {
                        got.push(v.to_vec());
                        ControlFlow::Continue(())
                    })
                    .unwrap();
                if handed == 0 { None } else { continue }
            }
        };
        match next {
            Some(v) => got.push(v),
            None => break,
        }
    }
    assert_eq!(got, expected);
    // Lent in batches alone, with commits between them.
    let mut scan = reader.scan_in::<&[u8]>(Keyspace::Sql, ..).unwrap();
    let mut got = Vec::new();
    for round in 0.. {
        let handed = scan
            .next_values_with(round % 300 + 1, |v| {
                got.push(v.to_vec());
                ControlFlow::Continue(())
            })
            .unwrap();
        if handed == 0 {
            break;
        }
        db.mgr
            .transaction(Isolation::Snapshot, |tx| {
                tx.set_in(Keyspace::Sql, &key((round * 7) % n), &value(5, round))?;
                tx.delete_in(Keyspace::Sql, &key((round * 11) % n))
            })
            .unwrap();
    }
    assert_eq!(got, expected);
    // A range starting and ending inside the keys.
    let (a, b) = (key(1234), key(2345));
    let mut scan = reader
        .scan_in::<&[u8]>(Keyspace::Sql, a.as_slice()..b.as_slice())
        .unwrap();
    let in_range: Vec<Vec<u8>> = model
        .range(a.clone()..b.clone())
        .map(|(_, v)| v.clone())
        .collect();
    let mut got = Vec::new();
    while let Some(v) = scan.next_value_ref() {
        got.push(v.unwrap().to_vec());
    }
    assert_eq!(got, in_range);
}

/// A chunk's buffer is the one before it, taken back and emptied, when
/// nothing holds a slice of it. Values of falling lengths (the longest
/// first, so that a stale tail of an earlier chunk would show), with
/// commits between reads, are exactly the snapshot's when read lent; and
/// keys and values handed out as `Bytes` (which keep their chunk's
/// buffer from being taken back) still hold their bytes after every
/// later chunk has been read.
#[rstest]
fn reused_chunk_buffers_carry_nothing_over(
    #[values(Kind::Memory, Kind::Log, Kind::BTree)] kind: Kind,
) {
    let db = Db::new(kind);
    let n = 2500;
    let key = |i: usize| format!("r{i:05}").into_bytes();
    let value = |i: usize| vec![(i % 251) as u8; (n - i) / 25 + i % 3];
    db.mgr
        .transaction(Isolation::Snapshot, |tx| {
            (0..n).try_for_each(|i| tx.set_in(Keyspace::Sql, &key(i), &value(i)))
        })
        .unwrap();
    let expected: Vec<Vec<u8>> = (0..n).map(value).collect();
    let reader = db.mgr.begin(Isolation::Snapshot).unwrap();
    let commit_beside = |i: usize| {
        db.mgr
            .transaction(Isolation::Snapshot, |tx| {
                tx.set_in(Keyspace::Sql, &key((i * 7) % n), &[0xee; 300])?;
                tx.delete_in(Keyspace::Sql, &key((i * 11) % n))
            })
            .unwrap();
    };
    let mut scan = reader.scan_in::<&[u8]>(Keyspace::Sql, ..).unwrap();
    let mut got = Vec::new();
    while let Some(v) = scan.next_value_ref() {
        got.push(v.unwrap().to_vec());
        if got.len() % 50 == 0 {
            commit_beside(got.len());
        }
    }
    assert_eq!(got, expected);
    // Held `Bytes` of every third entry, read with keys; checked at the end.
    let scan = reader.scan_in::<&[u8]>(Keyspace::Sql, ..).unwrap();
    let mut held = Vec::new();
    let mut count = 0;
    for item in scan {
        let (k, v) = item.unwrap();
        if count % 3 == 0 {
            held.push((count, k, v));
        }
        count += 1;
        if count % 50 == 0 {
            commit_beside(count + n);
        }
    }
    assert_eq!(count, n);
    for (i, k, v) in held {
        assert_eq!(&k[..], &key(i)[..]);
        assert_eq!(&v[..], &value(i)[..], "{i}");
    }
}

/// A consumer that breaks ends the batch after the value it was given,
/// and the next batch goes on just after it: with breaks at values
/// chosen all over the scan (inside the engine's walk and inside a chunk
/// left by a keyed read), every value is handed exactly once, in order.
#[rstest]
fn a_break_ends_a_batch_after_its_value(#[values(Kind::Memory, Kind::BTree)] kind: Kind) {
    let db = Db::new(kind);
    let n = 600usize;
    let key = |i: usize| format!("b{i:04}").into_bytes();
    db.mgr
        .transaction(Isolation::Snapshot, |tx| {
            (0..n).try_for_each(|i| tx.set_in(Keyspace::Sql, &key(i), &i.to_le_bytes()))
        })
        .unwrap();
    let reader = db.mgr.begin(Isolation::Snapshot).unwrap();
    let mut scan = reader.scan_in::<&[u8]>(Keyspace::Sql, ..).unwrap();
    let mut got = Vec::new();
    for round in 0.. {
        if round % 5 == 4 {
            // A keyed read: the rest of its chunk is handed next.
            match scan.next() {
                Some(item) => got.push(usize::from_le_bytes(
                    item.unwrap().1[..].try_into().unwrap(),
                )),
                None => break,
            }
            continue;
        }
        let before = got.len();
        let handed = scan
            .next_values_with(100, |v| {
                let i = usize::from_le_bytes(v.try_into().unwrap());
                got.push(i);
                if i % 7 == 3 {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
            .unwrap();
        assert_eq!(handed, got.len() - before);
        // Nothing after a break in the same batch.
        let batch = &got[before..];
        let breaks = batch.iter().filter(|&&i| i % 7 == 3).count();
        assert!(breaks == 0 || (breaks == 1 && batch.last().is_some_and(|i| i % 7 == 3)));
        if let Some(&last) = got.last().filter(|_| handed > 0 && handed < 100) {
            // A short batch ends at a break or at the end of the scan.
            assert!(last % 7 == 3 || last == n - 1, "{last}");
        }
        if handed == 0 {
            break;
        }
    }
    assert_eq!(got, (0..n).collect::<Vec<_>>());
}

/// A manager's scan is one snapshot, streamed: what commits and a garbage
/// collection do after it started never shows, and its snapshot holds
/// the watermark until it is dropped.
#[rstest]
fn a_streaming_scan_keeps_its_snapshot(#[values(Kind::Memory, Kind::Log, Kind::BTree)] kind: Kind) {
    let db = Db::new(kind);
    let n = 300;
    db.mgr
        .transaction(Isolation::Snapshot, |tx| {
            (0..n).try_for_each(|i| tx.set(format!("k{i:03}").as_bytes(), b"v1"))
        })
        .unwrap();
    let mut scan = db.mgr.scan::<&[u8]>(..).unwrap();
    let first: Vec<_> = scan.by_ref().take(10).map(Result::unwrap).collect();
    assert_eq!(first.len(), 10);
    assert_eq!(&first[0].0[..], b"k000");
    db.mgr
        .transaction(Isolation::Snapshot, |tx| {
            (0..n).try_for_each(|i| tx.delete(format!("k{i:03}").as_bytes()))?;
            tx.set(b"k999", b"new")
        })
        .unwrap();
    let report = db.mgr.gc().unwrap();
    assert_eq!(report.garbage, 0, "the scan's snapshot keeps every version");
    assert_eq!(db.mgr.stats().active, 1);
    let rest: Vec<_> = scan.map(Result::unwrap).collect();
    assert_eq!(rest.len(), n - 10);
    assert!(
        rest.iter()
            .all(|(k, v)| &v[..] == b"v1" && &k[..] != b"k999")
    );
    assert_eq!(db.mgr.stats().active, 0, "the scan ended its transaction");
    let report = db.mgr.gc().unwrap();
    assert_eq!(
        report.garbage,
        2 * n as u64,
        "values and tombstones collected"
    );
    assert_eq!(db.mgr.scan::<&[u8]>(..).unwrap().count(), 1);
}
