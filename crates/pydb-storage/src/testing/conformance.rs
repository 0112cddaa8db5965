//! The conformance suite: the `StorageEngine` contract as tests, written
//! once and run on every engine (see [`crate::conformance_suite!`]).
//!
//! Each function is one test and panics when the engine breaks the
//! contract. They use only what the trait promises; engine-specific
//! counters are tested next to each engine.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::ops::{Bound, ControlFlow};

use bytes::Bytes;

use super::{TestDb, TestEngine};
use crate::{Error, KeyRange, StorageEngine, WriteBatch};

fn get(engine: &dyn StorageEngine, key: &[u8]) -> Option<Vec<u8>> {
    engine.get(key).unwrap().map(|v| v.to_vec())
}

fn scan(engine: &dyn StorageEngine, range: KeyRange) -> Vec<(Vec<u8>, Vec<u8>)> {
    engine
        .scan(range)
        .unwrap()
        .map(|item| {
            let (k, v) = item.unwrap();
            (k.to_vec(), v.to_vec())
        })
        .collect()
}

fn keys(engine: &dyn StorageEngine, range: KeyRange) -> Vec<Vec<u8>> {
    scan(engine, range).into_iter().map(|(k, _)| k).collect()
}

fn range(start: Bound<&[u8]>, end: Bound<&[u8]>) -> KeyRange {
    let own = |b: Bound<&[u8]>| b.map(Bytes::copy_from_slice);
    KeyRange {
        start: own(start),
        end: own(end),
    }
}

/// Conformance test `set_get`.
pub fn set_get(kind: &dyn TestEngine) {
    let db = TestDb::new(kind);
    let e = db.engine();
    assert_eq!(get(e, b"missing"), None);
    e.set(b"apple", b"red").unwrap();
    e.set(b"pear", b"green").unwrap();
    assert_eq!(get(e, b"apple").as_deref(), Some(&b"red"[..]));
    assert_eq!(get(e, b"pear").as_deref(), Some(&b"green"[..]));
    assert_eq!(get(e, b"appl"), None);
}

/// Conformance test `overwrite`.
pub fn overwrite(kind: &dyn TestEngine) {
    let db = TestDb::new(kind);
    let e = db.engine();
    for i in 0..20u32 {
        e.set(b"k", format!("v{i}").as_bytes()).unwrap();
    }
    assert_eq!(get(e, b"k").as_deref(), Some(&b"v19"[..]));
    assert_eq!(scan(e, KeyRange::all()).len(), 1);
}

/// Conformance test `delete_and_delete_missing`.
pub fn delete_and_delete_missing(kind: &dyn TestEngine) {
    let db = TestDb::new(kind);
    let e = db.engine();
    assert!(!e.delete(b"nothing").unwrap());
    e.set(b"k", b"v").unwrap();
    assert!(e.delete(b"k").unwrap());
    assert_eq!(get(e, b"k"), None);
    assert!(!e.delete(b"k").unwrap());
    e.set(b"k", b"again").unwrap();
    assert_eq!(get(e, b"k").as_deref(), Some(&b"again"[..]));
}

/// Conformance test `empty_key_is_an_error`.
pub fn empty_key_is_an_error(kind: &dyn TestEngine) {
    let db = TestDb::new(kind);
    let e = db.engine();
    assert!(matches!(e.set(b"", b"v"), Err(Error::EmptyKey)));
    assert!(matches!(e.delete(b""), Err(Error::EmptyKey)));
    let mut batch = WriteBatch::new();
    batch.set(&b"ok"[..], &b"v"[..]).set(&b""[..], &b"v"[..]);
    assert!(matches!(e.write_batch(&batch), Err(Error::EmptyKey)));
    assert_eq!(get(e, b"ok"), None, "a failed batch must apply nothing");
}

/// Conformance test `size_limits`.
pub fn size_limits(kind: &dyn TestEngine) {
    let db = TestDb::new(kind);
    let e = db.engine();
    let Some((max_key, max_value)) = kind.limits() else {
        // An engine without limits takes large keys and values.
        e.set(&vec![b'k'; 4096], &vec![1; 1 << 20]).unwrap();
        assert_eq!(get(e, &vec![b'k'; 4096]).unwrap().len(), 1 << 20);
        return;
    };
    e.set(&vec![b'k'; max_key], &vec![7; max_value]).unwrap();
    assert_eq!(get(e, &vec![b'k'; max_key]).unwrap(), vec![7; max_value]);
    let err = e.set(&vec![b'k'; max_key + 1], b"v").unwrap_err();
    assert!(
        matches!(err, Error::KeyTooLarge { len, max } if len == max_key + 1 && max == max_key),
        "{err}"
    );
    let err = e.set(b"k", &vec![0; max_value + 1]).unwrap_err();
    assert!(matches!(err, Error::ValueTooLarge { .. }), "{err}");
    assert!(matches!(
        e.delete(&vec![b'k'; max_key + 1]),
        Err(Error::KeyTooLarge { .. })
    ));
    let mut batch = WriteBatch::new();
    batch
        .set(&b"first"[..], &b"v"[..])
        .set(&b"second"[..], vec![0; max_value + 1]);
    assert!(matches!(
        e.write_batch(&batch),
        Err(Error::ValueTooLarge { .. })
    ));
    assert_eq!(
        get(e, b"first"),
        None,
        "nothing of a rejected batch is written"
    );
}

/// Issue 16 B1: an engine without a key limit let a 200,000-byte key in,
/// and a glob match over it took a server down. Every engine has a limit.
pub fn huge_key_is_refused(kind: &dyn TestEngine) {
    let db = TestDb::new(kind);
    let e = db.engine();
    let key = vec![b'a'; 200_000];
    let err = e.set(&key, b"x").unwrap_err();
    assert!(
        matches!(err, Error::KeyTooLarge { len: 200_000, .. }),
        "{kind:?}: {err}"
    );
    assert_eq!(get(e, &key), None);
}

/// Conformance test `batches_apply_in_order`.
pub fn batches_apply_in_order(kind: &dyn TestEngine) {
    let db = TestDb::new(kind);
    let e = db.engine();
    e.set(b"gone", b"soon").unwrap();
    let mut batch = WriteBatch::new();
    batch
        .set(&b"a"[..], &b"1"[..])
        .set(&b"b"[..], &b"2"[..])
        .set(&b"a"[..], &b"3"[..])
        .delete(&b"gone"[..])
        .delete(&b"b"[..])
        .set(&b"c"[..], &b""[..])
        .delete(&b"never-there"[..]);
    e.write_batch(&batch).unwrap();
    assert_eq!(
        scan(e, KeyRange::all()),
        vec![(b"a".to_vec(), b"3".to_vec()), (b"c".to_vec(), vec![])]
    );
    e.write_batch(&WriteBatch::new()).unwrap();
    assert_eq!(scan(e, KeyRange::all()).len(), 2);
}

/// Conformance test `owned_batches_apply_as_borrowed_ones`: a batch
/// handed over (`write_batch_owned`) applies in order as a borrowed one
/// does, a refused one applies nothing, and a value that is a slice of a
/// larger buffer reads back as the slice, after the buffer is dropped.
pub fn owned_batches_apply_as_borrowed_ones(kind: &dyn TestEngine) {
    let db = TestDb::new(kind);
    let e = db.engine();
    e.set(b"gone", b"soon").unwrap();
    let values = bytes::Bytes::from(vec![9u8; 300]);
    let mut batch = WriteBatch::new();
    batch
        .set(&b"a"[..], &b"1"[..])
        .set(&b"b"[..], values.slice(0..100))
        .set(&b"a"[..], values.slice(100..103))
        .delete(&b"gone"[..])
        .set(&b"c"[..], &b""[..]);
    drop(values);
    e.write_batch_owned(batch).unwrap();
    assert_eq!(
        scan(e, KeyRange::all()),
        vec![
            (b"a".to_vec(), vec![9; 3]),
            (b"b".to_vec(), vec![9; 100]),
            (b"c".to_vec(), vec![])
        ]
    );
    let mut refused = WriteBatch::new();
    refused.set(&b"d"[..], &b"v"[..]).set(&b""[..], &b"v"[..]);
    assert!(matches!(e.write_batch_owned(refused), Err(Error::EmptyKey)));
    assert_eq!(get(e, b"d"), None, "a failed batch must apply nothing");
}

/// Conformance test `scan_bounds`.
pub fn scan_bounds(kind: &dyn TestEngine) {
    let db = TestDb::new(kind);
    let e = db.engine();
    for key in [&b"b"[..], b"d", b"f", b"h"] {
        e.set(key, key).unwrap();
    }
    use Bound::{Excluded as X, Included as I, Unbounded as U};
    type Case<'a> = (Bound<&'a [u8]>, Bound<&'a [u8]>, &'a [&'a [u8]]);
    let cases: &[Case] = &[
        (U, U, &[b"b", b"d", b"f", b"h"]),
        (I(b"d"), U, &[b"d", b"f", b"h"]),
        (X(b"d"), U, &[b"f", b"h"]),
        (U, I(b"f"), &[b"b", b"d", b"f"]),
        (U, X(b"f"), &[b"b", b"d"]),
        (I(b"d"), I(b"f"), &[b"d", b"f"]),
        (X(b"d"), X(b"h"), &[b"f"]),
        (I(b"c"), X(b"g"), &[b"d", b"f"]),
        (X(b"a"), I(b"z"), &[b"b", b"d", b"f", b"h"]),
        (I(b"d"), I(b"d"), &[b"d"]),
        (I(b"d"), X(b"d"), &[]),
        (X(b"d"), I(b"d"), &[]),
        (I(b"f"), I(b"d"), &[]),
        (X(b"f"), X(b"d"), &[]),
        (I(b"x"), U, &[]),
    ];
    for (start, end, want) in cases {
        let want: Vec<Vec<u8>> = want.iter().map(|k| k.to_vec()).collect();
        assert_eq!(keys(e, range(*start, *end)), want, "{start:?}..{end:?}");
        // `first` is `scan(..).next()`, however the engine answers it.
        let first = e.first(range(*start, *end)).unwrap();
        let want_first = want.first().map(|k| (k.clone(), k.clone()));
        assert_eq!(
            first.map(|(k, v)| (k.to_vec(), v.to_vec())),
            want_first,
            "first of {start:?}..{end:?}"
        );
        let first_in = e.first_in(*start, *end).unwrap();
        assert_eq!(
            first_in.map(|(k, v)| (k.to_vec(), v.to_vec())),
            want_first,
            "first_in of {start:?}..{end:?}"
        );
        let first_value = e.first_value_in(*start, *end).unwrap();
        assert_eq!(
            first_value.map(|v| v.to_vec()),
            want.first().cloned(),
            "first_value_in of {start:?}..{end:?}"
        );
        // Into a buffer holding an earlier value: cleared first.
        let mut buf = b"earlier".to_vec();
        let found = e.first_value_into(*start, *end, &mut buf).unwrap();
        assert_eq!(
            found.then_some(buf),
            want.first().cloned(),
            "first_value_into of {start:?}..{end:?}"
        );
    }
    let values = scan(e, KeyRange::new(&b"c"[..]..&b"e"[..]));
    assert_eq!(values, vec![(b"d".to_vec(), b"d".to_vec())]);
    // A hinted read finds what a plain one finds, with one hint kept
    // across every case and across writes that reshape the engine.
    let mut hint = crate::ReadHint::default();
    for (start, end, want) in cases {
        let found = e.first_value_in_hinted(*start, *end, &mut hint).unwrap();
        assert_eq!(
            found.map(|v| v.to_vec()),
            want.first().map(|k| k.to_vec()),
            "first_value_in_hinted of {start:?}..{end:?}"
        );
    }
    for round in 0..4u32 {
        for i in 0..100u32 {
            let key = format!("k{:05}", i * 4 + round);
            e.set(key.as_bytes(), key.as_bytes()).unwrap();
        }
        for i in 0..420u32 {
            let key = format!("k{i:05}");
            let end = format!("k{i:05}~");
            let (start, end) = (I(key.as_bytes()), X(end.as_bytes()));
            assert_eq!(
                e.first_value_in_hinted(start, end, &mut hint).unwrap(),
                e.first_value_in(start, end).unwrap(),
                "hinted read of {key} after round {round}"
            );
        }
    }
}

/// Conformance test `scan_after_deletes_and_across_chunks`.
pub fn scan_after_deletes_and_across_chunks(kind: &dyn TestEngine) {
    let db = TestDb::new(kind);
    let e = db.engine();
    // More keys than one scan chunk, so that continuing after a chunk is
    // exercised.
    for i in 0..700u32 {
        e.set(format!("key{i:04}").as_bytes(), &i.to_le_bytes())
            .unwrap();
    }
    for i in (0..700u32).filter(|i| i % 3 == 0) {
        assert!(e.delete(format!("key{i:04}").as_bytes()).unwrap());
    }
    let all = scan(e, KeyRange::all());
    let want: Vec<(Vec<u8>, Vec<u8>)> = (0..700u32)
        .filter(|i| i % 3 != 0)
        .map(|i| (format!("key{i:04}").into_bytes(), i.to_le_bytes().to_vec()))
        .collect();
    assert_eq!(all, want);
    let part = keys(e, KeyRange::new(&b"key0100"[..]..=&b"key0110"[..]));
    // key0100..=key0110 minus the multiples of 3 (102, 105, 108).
    assert_eq!(part.len(), 8);
    // `first` skips deleted keys: key0102 is gone, key0103 is next.
    let first = e
        .first(KeyRange::new(&b"key0102"[..]..&b"key0200"[..]))
        .unwrap()
        .unwrap();
    assert_eq!(first.0.as_ref(), b"key0103");
    assert_eq!(first.1.as_ref(), 103u32.to_le_bytes());
    assert!(e.first(KeyRange::new(&b"key0699"[..]..)).unwrap().is_none());
}

/// Every entry of `range` through the borrowing scan, `scan_with` (or
/// `scan_with_locked` when `locked`), stopping after `limit` entries.
fn scan_visiting(
    engine: &dyn StorageEngine,
    range: (Bound<&[u8]>, Bound<&[u8]>),
    limit: usize,
    locked: bool,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    let mut visit = |k: &[u8], v: &[u8]| {
        out.push((k.to_vec(), v.to_vec()));
        if out.len() < limit {
            ControlFlow::Continue(())
        } else {
            ControlFlow::Break(())
        }
    };
    if locked {
        engine.scan_with_locked(range, &mut visit).unwrap();
    } else {
        engine.scan_with(range, &mut visit).unwrap();
    }
    out
}

/// Conformance test `scan_with_agrees_with_scan`: the borrowing scan
/// (and `scan_with_locked`, for a visitor that does not call the engine)
/// yields what `scan` yields, for every kind of bound, stops when the
/// visitor says so, and `scan_with` lets the visitor read and write the
/// engine.
pub fn scan_with_agrees_with_scan(kind: &dyn TestEngine) {
    let db = TestDb::new(kind);
    let e = db.engine();
    // Values from empty to a few hundred bytes, so that a page-based
    // engine spreads them over many pages, and a few large ones (in an
    // overflow chain of the B+tree).
    let big = kind.limits().map_or(20_000, |(_, max)| max.min(20_000));
    for i in 0..700u32 {
        let len = if i % 97 == 5 {
            big
        } else {
            (i as usize * 7) % 300
        };
        let value: Vec<u8> = (0..len).map(|j| (i as usize + j) as u8).collect();
        e.set(format!("key{i:04}").as_bytes(), &value).unwrap();
    }
    for i in (0..700u32).filter(|i| i % 3 == 0) {
        assert!(e.delete(format!("key{i:04}").as_bytes()).unwrap());
    }
    use Bound::{Excluded as X, Included as I, Unbounded as U};
    type Bounds<'a> = (Bound<&'a [u8]>, Bound<&'a [u8]>);
    let bounds: &[Bounds] = &[
        (U, U),
        (I(b"key0100"), U),
        (X(b"key0100"), U),
        (I(b"key0102"), I(b"key0350")),
        (X(b"key0101"), X(b"key0350")),
        (U, I(b"key0007")),
        (U, X(b"key0008")),
        (I(b"key0050"), I(b"key0050")),
        (I(b"key0050"), X(b"key0050")),
        (I(b"key0400"), I(b"key0300")),
        (I(b"a"), I(b"key0001")),
        (I(b"key0699"), U),
        (X(b"key0699"), U),
        (I(b"zzz"), U),
    ];
    for &(start, end) in bounds {
        let want = scan(e, range(start, end));
        for locked in [false, true] {
            assert_eq!(
                scan_visiting(e, (start, end), usize::MAX, locked),
                want,
                "{start:?}..{end:?} locked {locked}"
            );
            // Stopping early: exactly the first `limit` entries.
            for limit in [1, 2, 3, 50, 101, 466, 467] {
                let got = scan_visiting(e, (start, end), limit, locked);
                assert_eq!(
                    got,
                    want[..limit.min(want.len())],
                    "{start:?}..{end:?} limit {limit} locked {locked}"
                );
            }
        }
    }
    // The visitor may read and write the engine while the scan runs.
    // Writes land outside the range scanned, so the answer is known.
    let mut seen = Vec::new();
    let mut n = 0u32;
    e.scan_with((I(b"key0100"), X(b"key0500")), &mut |k, v| {
        assert_eq!(get(e, k).as_deref(), Some(v), "{k:?}");
        e.set(format!("other{n:04}").as_bytes(), v).unwrap();
        n += 1;
        seen.push(k.to_vec());
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(
        seen,
        keys(e, KeyRange::new(&b"key0100"[..]..&b"key0500"[..]))
    );
    assert_eq!(
        keys(e, KeyRange::new(&b"other"[..]..&b"otherz"[..])).len(),
        seen.len()
    );
}

/// What `get_with` lends for `key`, and how many times it called its
/// visitor (once for a key that has a value, never for a missing one).
fn get_with(engine: &dyn StorageEngine, key: &[u8]) -> (Option<Vec<u8>>, usize) {
    let (mut seen, mut calls) = (None, 0);
    let found = engine
        .get_with(key, &mut |v| {
            seen = Some(v.to_vec());
            calls += 1;
        })
        .unwrap();
    assert_eq!(
        found,
        seen.is_some(),
        "get_with's answer and its visits disagree"
    );
    (seen, calls)
}

/// Conformance test `get_with_agrees_with_get`: the borrowing point read
/// lends exactly the value `get` returns, once, for live keys,
/// overwritten, deleted and missing ones, values large and empty, after a
/// compaction and a reopen.
pub fn get_with_agrees_with_get(kind: &dyn TestEngine) {
    let mut db = TestDb::new(kind);
    let big = vec![7u8; 5000];
    {
        let e = db.engine();
        for i in 0..300u32 {
            e.set(format!("key{i:04}").as_bytes(), format!("v{i}").as_bytes())
                .unwrap();
        }
        for i in (0..300u32).step_by(3) {
            e.set(
                format!("key{i:04}").as_bytes(),
                format!("new{i}").as_bytes(),
            )
            .unwrap();
        }
        for i in (0..300u32).step_by(7) {
            e.delete(format!("key{i:04}").as_bytes()).unwrap();
        }
        e.set(b"big", &big).unwrap();
        e.set(b"empty", b"").unwrap();
    }
    let check = |e: &dyn StorageEngine| {
        for i in 0..310u32 {
            let key = format!("key{i:04}");
            let want = get(e, key.as_bytes());
            let (got, calls) = get_with(e, key.as_bytes());
            assert_eq!(got, want, "{key}");
            assert_eq!(calls, usize::from(want.is_some()), "{key}: visits");
        }
        assert_eq!(get_with(e, b"big"), (Some(big.clone()), 1));
        assert_eq!(get_with(e, b"empty"), (Some(Vec::new()), 1));
        assert_eq!(get_with(e, b"missing"), (None, 0));
        assert_eq!(get_with(e, b"ke"), (None, 0));
    };
    check(db.engine());
    db.engine().compact().unwrap();
    check(db.engine());
    if db.reopen() {
        check(db.engine());
    }
}

/// Conformance test `binary_keys_and_values`.
pub fn binary_keys_and_values(kind: &dyn TestEngine) {
    let db = TestDb::new(kind);
    let e = db.engine();
    let pairs: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (vec![0], vec![]),
        (vec![0, 0], vec![0xff; 3]),
        (vec![0xff], vec![0]),
        (vec![0xff, 0x00, 0x7f], b"\r\n\0".to_vec()),
        ("ключ".as_bytes().to_vec(), "значение".as_bytes().to_vec()),
    ];
    for (k, v) in &pairs {
        e.set(k, v).unwrap();
    }
    for (k, v) in &pairs {
        assert_eq!(get(e, k).as_ref(), Some(v), "{k:?}");
    }
    let mut sorted = pairs.clone();
    sorted.sort();
    assert_eq!(scan(e, KeyRange::all()), sorted);
}

/// Conformance test `large_values`.
pub fn large_values(kind: &dyn TestEngine) {
    let mut db = TestDb::new(kind);
    let size = kind.limits().map_or(1 << 20, |(_, max)| max);
    // Larger than a segment: each goes alone into a fresh one.
    let big: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    db.engine().set(b"big1", &big).unwrap();
    db.engine().set(b"small", b"s").unwrap();
    db.engine().set(b"big2", &big[..size / 2]).unwrap();
    db.reopen();
    let e = db.engine();
    assert_eq!(get(e, b"big1").unwrap(), big);
    assert_eq!(get(e, b"big2").unwrap(), &big[..size / 2]);
    assert_eq!(get(e, b"small").unwrap(), b"s");
}

/// Conformance test `persistence_across_reopen`.
pub fn persistence_across_reopen(kind: &dyn TestEngine) {
    let mut db = TestDb::new(kind);
    let e = db.engine();
    for i in 0..200u32 {
        e.set(format!("k{i}").as_bytes(), format!("v{i}").as_bytes())
            .unwrap();
    }
    for i in 0..50u32 {
        e.delete(format!("k{i}").as_bytes()).unwrap();
    }
    let mut batch = WriteBatch::new();
    batch.set(&b"k0"[..], &b"back"[..]).delete(&b"k199"[..]);
    e.write_batch(&batch).unwrap();
    let before = scan(e, KeyRange::all());
    if !db.reopen() {
        return;
    }
    assert_eq!(scan(db.engine(), KeyRange::all()), before);
    // Writes after a reopen continue the history.
    db.engine().set(b"k1", b"new").unwrap();
    db.engine().delete(b"k0").unwrap();
    db.reopen();
    assert_eq!(get(db.engine(), b"k1").as_deref(), Some(&b"new"[..]));
    assert_eq!(get(db.engine(), b"k0"), None);
    // k1 came back (it was deleted), k0 went.
    assert_eq!(scan(db.engine(), KeyRange::all()).len(), before.len());
}

/// Conformance test `compaction_preserves_data`.
pub fn compaction_preserves_data(kind: &dyn TestEngine) {
    let mut db = TestDb::new(kind);
    let e = db.engine();
    for round in 0..5u32 {
        for i in 0..60u32 {
            e.set(
                format!("k{i:02}").as_bytes(),
                format!("r{round}-{i}").as_bytes(),
            )
            .unwrap();
        }
    }
    for i in (0..60u32).step_by(4) {
        e.delete(format!("k{i:02}").as_bytes()).unwrap();
    }
    let before = scan(e, KeyRange::all());
    e.compact().unwrap();
    assert_eq!(scan(e, KeyRange::all()), before);
    e.set(b"after", b"compaction").unwrap();
    e.compact().unwrap();
    e.compact().unwrap();
    db.reopen();
    let mut want = before;
    want.insert(0, (b"after".to_vec(), b"compaction".to_vec()));
    assert_eq!(scan(db.engine(), KeyRange::all()), want);
    for i in (0..60u32).step_by(4) {
        assert_eq!(get(db.engine(), format!("k{i:02}").as_bytes()), None);
    }
}

/// Conformance test `concurrent_writers_and_readers`.
pub fn concurrent_writers_and_readers(kind: &dyn TestEngine) {
    let db = TestDb::new(kind);
    let e = db.engine();
    std::thread::scope(|s| {
        for t in 0..4u32 {
            s.spawn(move || {
                for i in 0..100u32 {
                    let key = format!("t{t}-{i:03}");
                    e.set(key.as_bytes(), key.as_bytes()).unwrap();
                    assert_eq!(get(e, key.as_bytes()).unwrap(), key.as_bytes());
                }
            });
        }
    });
    assert_eq!(scan(e, KeyRange::all()).len(), 400);
}

/// If the engine reports `live_keys`, the counter follows sets and deletes.
pub fn live_keys_counter_follows_writes(kind: &dyn TestEngine) {
    let db = TestDb::new(kind);
    let e = db.engine();
    let live = || e.stats().get("live_keys");
    if live().is_none() {
        return;
    }
    assert_eq!(live(), Some(0));
    e.set(b"a", b"1").unwrap();
    e.set(b"b", b"2").unwrap();
    e.set(b"b", b"3").unwrap();
    assert_eq!(live(), Some(2));
    e.delete(b"a").unwrap();
    assert_eq!(live(), Some(1));
}
