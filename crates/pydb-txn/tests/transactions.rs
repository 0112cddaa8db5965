//! Guards the transaction API on every engine: visibility, scans, own
//! writes, as-of reads, garbage collection, recovery of the commit
//! timestamp, locking waits/deadlocks/timeouts, the retry helper, and
//! error messages that name the key or range.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Barrier};
use std::time::Duration;

use bytes::Bytes;
use common::{Db, Kind};
use pydb_txn::{Concurrency, Error, Isolation, LockWait, Options, TxnOptions, TxnScan};
use rstest::rstest;

fn kv(rows: TxnScan<'_>) -> Vec<(String, String)> {
    rows.map(Result::unwrap)
        .map(|(k, v): (Bytes, Bytes)| {
            (
                String::from_utf8(k.to_vec()).unwrap(),
                String::from_utf8(v.to_vec()).unwrap(),
            )
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[rstest]
fn snapshots_see_commits_before_them_and_own_writes(
    #[values(Kind::Memory, Kind::Log, Kind::BTree)] kind: Kind,
) {
    let db = Db::new(kind);
    let mut t1 = db.mgr.begin(Isolation::Snapshot).unwrap();
    t1.set(b"a", b"1").unwrap();
    t1.set(b"a\x00b", b"zero").unwrap();
    assert_eq!(
        t1.get(b"a").unwrap().as_deref(),
        Some(&b"1"[..]),
        "own write"
    );
    let old = db.mgr.begin(Isolation::Snapshot).unwrap();
    let rc = db.mgr.begin(Isolation::ReadCommitted).unwrap();
    assert_eq!(old.get(b"a").unwrap(), None, "uncommitted is invisible");
    let ts = t1.commit().unwrap();
    assert_eq!(ts, db.mgr.last_commit());
    assert_eq!(old.get(b"a").unwrap(), None, "committed after the snapshot");
    assert_eq!(
        rc.get(b"a").unwrap().as_deref(),
        Some(&b"1"[..]),
        "read committed sees it"
    );
    let mut t2 = db.mgr.begin(Isolation::Snapshot).unwrap();
    t2.delete(b"a").unwrap();
    assert_eq!(t2.get(b"a").unwrap(), None, "own delete");
    assert_eq!(
        kv(t2.scan::<&[u8]>(..).unwrap()),
        pairs(&[("a\0b", "zero")])
    );
    t2.commit().unwrap();
    let t3 = db.mgr.begin(Isolation::Snapshot).unwrap();
    assert_eq!(t3.get(b"a").unwrap(), None, "tombstone");
    assert_eq!(t3.get(b"a\x00b").unwrap().as_deref(), Some(&b"zero"[..]));
    assert!(matches!(
        t3.get(b""),
        Err(Error::Storage(pydb_storage::Error::EmptyKey))
    ));
}

#[rstest]
fn scans_respect_bounds_snapshots_and_buffered_writes(
    #[values(Kind::Memory, Kind::Log, Kind::BTree)] kind: Kind,
) {
    let db = Db::new(kind);
    db.mgr
        .transaction(Isolation::Snapshot, |tx| {
            for k in ["a", "ab", "b", "c", "d"] {
                tx.set(k.as_bytes(), k.to_uppercase().as_bytes())?;
            }
            Ok(())
        })
        .unwrap();
    let snapshot = db.mgr.begin(Isolation::Snapshot).unwrap();
    // Newer versions of b and c, a deleted d: invisible to `snapshot`.
    db.mgr
        .transaction(Isolation::Snapshot, |tx| {
            tx.set(b"b", b"B2")?;
            tx.delete(b"d")?;
            tx.set(b"bb", b"BB")
        })
        .unwrap();
    assert_eq!(
        kv(snapshot.scan(&b"ab"[..]..&b"d"[..]).unwrap()),
        pairs(&[("ab", "AB"), ("b", "B"), ("c", "C")])
    );
    let mut tx = db.mgr.begin(Isolation::Snapshot).unwrap();
    tx.set(b"bc", b"mine").unwrap();
    tx.delete(b"c").unwrap();
    assert_eq!(
        kv(tx
            .scan::<&[u8]>((
                std::ops::Bound::Excluded(&b"a"[..]),
                std::ops::Bound::Included(&b"d"[..])
            ))
            .unwrap()),
        pairs(&[("ab", "AB"), ("b", "B2"), ("bb", "BB"), ("bc", "mine")])
    );
    assert_eq!(
        kv(tx.scan(&b"c"[..]..&b"a"[..]).unwrap()),
        vec![],
        "an inverted range is empty"
    );
    assert_eq!(
        kv(tx.scan(&b"a"[..]..=&b"a"[..]).unwrap()),
        pairs(&[("a", "A")])
    );
}

#[rstest]
fn first_committer_wins_and_the_message_names_the_key(
    #[values(Kind::Memory, Kind::BTree)] kind: Kind,
) {
    let db = Db::new(kind);
    let mut t1 = db.mgr.begin(Isolation::Snapshot).unwrap();
    let mut t2 = db.mgr.begin(Isolation::Snapshot).unwrap();
    t1.set(b"hot key", b"1").unwrap();
    t2.set(b"hot key", b"2").unwrap();
    t1.commit().unwrap();
    let err = t2.commit().unwrap_err();
    assert!(matches!(err, Error::WriteConflict { .. }), "{err}");
    assert!(err.is_retryable());
    assert!(err.to_string().contains("'hot key'"), "{err}");
    assert_eq!(db.mgr.stats().write_conflicts, 1);
}

/// Write skew through an empty range: each transaction checks that a
/// range is empty, then inserts into the other's range... and into its
/// own. SSI must abort one; snapshot lets both commit.
#[rstest]
fn ssi_catches_write_skew_through_empty_ranges(
    #[values(Kind::Memory, Kind::Log, Kind::BTree)] kind: Kind,
) {
    let db = Db::new(kind);
    for level in [Isolation::Snapshot, Isolation::Serializable] {
        let (lo, hi) = match level {
            Isolation::Snapshot => ("s/", "s0"),
            _ => ("z/", "z0"),
        };
        let mut t1 = db.mgr.begin(level).unwrap();
        let mut t2 = db.mgr.begin(level).unwrap();
        assert!(
            t1.scan(lo.as_bytes()..hi.as_bytes())
                .unwrap()
                .next()
                .is_none()
        );
        assert!(
            t2.scan(lo.as_bytes()..hi.as_bytes())
                .unwrap()
                .next()
                .is_none()
        );
        t1.set(format!("{lo}1").as_bytes(), b"one").unwrap();
        t2.set(format!("{lo}2").as_bytes(), b"two").unwrap();
        let c1 = t1.commit();
        let c2 = t2.commit();
        match level {
            Isolation::Snapshot => {
                assert!(c1.is_ok() && c2.is_ok(), "snapshot allows write skew");
            }
            _ => {
                assert!(c1.is_ok());
                let err = c2.unwrap_err();
                assert!(matches!(err, Error::SerializationFailure { .. }), "{err}");
                assert!(err.to_string().contains("range ['z/', 'z0')"), "{err}");
            }
        }
    }
}

/// A key read as deleted (a tombstone) counts as read.
#[rstest]
fn ssi_tracks_reads_of_deleted_keys(#[values(Kind::Memory, Kind::BTree)] kind: Kind) {
    let db = Db::new(kind);
    db.mgr
        .transaction(Isolation::Serializable, |tx| {
            tx.set(b"x", b"1")?;
            tx.set(b"y", b"1")
        })
        .unwrap();
    db.mgr
        .transaction(Isolation::Serializable, |tx| {
            tx.delete(b"x")?;
            tx.delete(b"y")
        })
        .unwrap();
    let mut t1 = db.mgr.begin(Isolation::Serializable).unwrap();
    let mut t2 = db.mgr.begin(Isolation::Serializable).unwrap();
    assert_eq!(t1.get(b"x").unwrap(), None);
    assert_eq!(t2.get(b"y").unwrap(), None);
    t1.set(b"y", b"t1").unwrap();
    t2.set(b"x", b"t2").unwrap();
    t1.commit().unwrap();
    assert!(matches!(
        t2.commit(),
        Err(Error::SerializationFailure { .. })
    ));
}

/// `insert_owned_in` writes only a key the transaction sees no value of,
/// and otherwise hands back the value it sees and writes nothing.
#[rstest]
fn insert_writes_only_a_key_it_does_not_see(
    #[values(Kind::Memory, Kind::BTree)] kind: Kind,
    #[values(Isolation::ReadCommitted, Isolation::Snapshot, Isolation::Serializable)]
    level: Isolation,
) {
    use pydb_txn::Keyspace::Kv;
    let db = Db::new(kind);
    db.mgr
        .transaction(level, |tx| {
            tx.set(b"old", b"1")?;
            tx.set(b"gone", b"1")
        })
        .unwrap();
    db.mgr.transaction(level, |tx| tx.delete(b"gone")).unwrap();
    let mut tx = db.mgr.begin(level).unwrap();
    let v = |s: &str| Bytes::from(s.to_owned());
    assert_eq!(tx.insert_owned_in(Kv, b"new", v("n")).unwrap(), None);
    assert_eq!(tx.insert_owned_in(Kv, b"gone", v("g")).unwrap(), None);
    assert_eq!(
        tx.insert_owned_in(Kv, b"old", v("x")).unwrap(),
        Some(v("1")),
        "a committed value"
    );
    assert_eq!(
        tx.insert_owned_in(Kv, b"new", v("x")).unwrap(),
        Some(v("n")),
        "its own write"
    );
    tx.delete(b"new").unwrap();
    assert_eq!(
        tx.insert_owned_in(Kv, b"new", v("again")).unwrap(),
        None,
        "its own delete"
    );
    assert!(tx.insert_owned_in(Kv, b"", v("e")).is_err(), "empty key");
    tx.commit().unwrap();
    let check = db.mgr.begin(Isolation::Snapshot).unwrap();
    assert_eq!(
        kv(check.scan::<&[u8]>(..).unwrap()),
        pairs(&[("gone", "g"), ("new", "again"), ("old", "1")])
    );
    let mut ro = db.mgr.begin_read_only(level).unwrap();
    let err = ro.insert_owned_in(Kv, b"ro", v("r")).unwrap_err();
    assert!(matches!(err, Error::ReadOnly { .. }), "{err}");
}

/// Keys built one after the other in one reused buffer (`SpacedKey::clear`)
/// are each kept as the key they were: the transaction copies every key
/// into its key arena, across several of the arena's chunks, and neither
/// a later key nor a reused buffer changes an earlier one, before or
/// after the commit.
#[rstest]
fn keys_built_in_one_buffer_stay_apart(#[values(Kind::Memory, Kind::BTree)] kind: Kind) {
    use pydb_txn::Keyspace::Sql;
    let db = Db::new(kind);
    let key = |i: usize| format!("row{i:05}{}", "x".repeat(i % 40)).into_bytes();
    let entry = |i: usize| format!("entry{i}").into_bytes();
    let mut tx = db.mgr.begin(Isolation::Serializable).unwrap();
    let mut spaced = pydb_txn::SpacedKey::new(Sql, 0);
    for i in 0..3_000 {
        spaced.clear();
        spaced.append_with(|k| k.extend_from_slice(&key(i)));
        let value = Bytes::from(format!("v{i}"));
        assert_eq!(tx.insert_spaced(&spaced, value).unwrap(), None);
        spaced.clear();
        spaced.append_with(|k| k.extend_from_slice(&entry(i)));
        tx.set_dependent_spaced(&spaced, Bytes::from(format!("e{i}")), &[&key(i)])
            .unwrap();
        tx.set_in(Sql, format!("set{i}").as_bytes(), b"s").unwrap();
    }
    let expected = |i: usize| {
        [
            (key(i), format!("v{i}")),
            (entry(i), format!("e{i}")),
            (format!("set{i}").into_bytes(), "s".to_owned()),
        ]
    };
    for i in 0..3_000 {
        for (k, v) in expected(i) {
            assert_eq!(tx.get_in(Sql, &k).unwrap().as_deref(), Some(v.as_bytes()));
        }
    }
    tx.commit().unwrap();
    let check = db.mgr.begin(Isolation::Snapshot).unwrap();
    let mut all: Vec<(Vec<u8>, String)> = (0..3_000).flat_map(expected).collect();
    all.sort();
    let found: Vec<(Vec<u8>, String)> = check
        .scan_in::<&[u8]>(Sql, ..)
        .unwrap()
        .map(|item| {
            let (k, v) = item.unwrap();
            (k.to_vec(), String::from_utf8(v.to_vec()).unwrap())
        })
        .collect();
    assert_eq!(found, all);
}

/// Two transactions that insert one key: the second to commit loses at
/// every level that checks write-write conflicts (what lets an insert
/// skip recording its read for SSI), and the key holds the winner's value.
#[rstest]
fn concurrent_inserts_of_one_key_conflict(
    #[values(Kind::Memory, Kind::BTree)] kind: Kind,
    #[values(Isolation::Snapshot, Isolation::Serializable)] level: Isolation,
) {
    use pydb_txn::Keyspace::Kv;
    let db = Db::new(kind);
    let mut t1 = db.mgr.begin(level).unwrap();
    let mut t2 = db.mgr.begin(level).unwrap();
    assert_eq!(
        t1.insert_owned_in(Kv, b"k", Bytes::from("1")).unwrap(),
        None
    );
    assert_eq!(
        t2.insert_owned_in(Kv, b"k", Bytes::from("2")).unwrap(),
        None
    );
    t2.commit().unwrap();
    let err = t1.commit().unwrap_err();
    assert!(matches!(err, Error::WriteConflict { .. }), "{err}");
    assert_eq!(db.mgr.get_latest(b"k").unwrap().as_deref(), Some(&b"2"[..]));
}

/// Write skew through inserts: each transaction inserts one key and
/// checks that the other's is absent. SSI must abort one.
#[rstest]
fn ssi_catches_write_skew_between_inserts(#[values(Kind::Memory, Kind::BTree)] kind: Kind) {
    use pydb_txn::Keyspace::Kv;
    let db = Db::new(kind);
    let mut t1 = db.mgr.begin(Isolation::Serializable).unwrap();
    let mut t2 = db.mgr.begin(Isolation::Serializable).unwrap();
    assert_eq!(
        t1.insert_owned_in(Kv, b"a", Bytes::from("1")).unwrap(),
        None
    );
    assert_eq!(
        t2.insert_owned_in(Kv, b"b", Bytes::from("2")).unwrap(),
        None
    );
    assert_eq!(t1.get(b"b").unwrap(), None);
    assert_eq!(t2.get(b"a").unwrap(), None);
    t1.commit().unwrap();
    let err = t2.commit().unwrap_err();
    assert!(matches!(err, Error::SerializationFailure { .. }), "{err}");
}

/// An insert that finds its key taken writes nothing, so its read is an
/// ordinary read that SSI must know of. T1's insert of `a` finds `a` and
/// T1 writes `b`; T2 reads `b` and writes `a`: a cycle, one must abort.
#[rstest]
fn ssi_tracks_an_insert_that_finds_its_key(#[values(Kind::Memory, Kind::BTree)] kind: Kind) {
    use pydb_txn::Keyspace::Kv;
    let db = Db::new(kind);
    db.mgr
        .transaction(Isolation::Serializable, |tx| {
            tx.set(b"a", b"0")?;
            tx.set(b"b", b"0")
        })
        .unwrap();
    let mut t1 = db.mgr.begin(Isolation::Serializable).unwrap();
    let mut t2 = db.mgr.begin(Isolation::Serializable).unwrap();
    assert_eq!(
        t1.insert_owned_in(Kv, b"a", Bytes::from("1")).unwrap(),
        Some(Bytes::from("0"))
    );
    t1.set(b"b", b"1").unwrap();
    assert_eq!(t2.get(b"b").unwrap().as_deref(), Some(&b"0"[..]));
    t2.set(b"a", b"2").unwrap();
    t2.commit().unwrap();
    let err = t1.commit().unwrap_err();
    assert!(matches!(err, Error::SerializationFailure { .. }), "{err}");
}

/// The read-only anomaly (Fekete, O'Neil, O'Neil 2004): a read-only
/// transaction that sees the result of T2 but not of the T1 that T2
/// depends on must not commit.
#[test]
fn ssi_catches_the_read_only_anomaly() {
    let db = Db::new(Kind::Memory);
    db.mgr
        .transaction(Isolation::Serializable, |tx| {
            tx.set(b"checking", b"0")?;
            tx.set(b"savings", b"0")
        })
        .unwrap();
    // T2: withdraws from checking, reading both (it sees savings = 0).
    let mut t2 = db.mgr.begin(Isolation::Serializable).unwrap();
    t2.get(b"checking").unwrap();
    t2.get(b"savings").unwrap();
    // T1: deposits into savings, commits.
    let mut t1 = db.mgr.begin(Isolation::Serializable).unwrap();
    t1.get(b"savings").unwrap();
    t1.set(b"savings", b"20").unwrap();
    t1.commit().unwrap();
    // T3 (read-only) sees T1's deposit but not T2's withdrawal.
    let t3 = db.mgr.begin(Isolation::Serializable).unwrap();
    t3.get(b"checking").unwrap();
    t3.get(b"savings").unwrap();
    let r3 = t3.commit();
    t2.set(b"checking", b"-11").unwrap();
    let r2 = t2.commit();
    assert!(
        r3.is_err() || r2.is_err(),
        "T3 -rw-> T2 -rw-> T1 with T1 committed first: one of them must abort"
    );
}

/// A long run of read-only serializable transactions (a `SELECT` loop)
/// must not pile up in the SSI tracker: every commit looks at every
/// tracked transaction, so a growing list makes each statement slower
/// than the one before.
#[test]
fn ssi_keeps_a_run_of_read_only_commits_small() {
    let db = Db::new(Kind::Memory);
    db.mgr
        .transaction(Isolation::Serializable, |tx| tx.set(b"k0", b"v"))
        .unwrap();
    for i in 0..2000u32 {
        let tx = db.mgr.begin(Isolation::Serializable).unwrap();
        tx.get(format!("k{}", i % 50).as_bytes()).unwrap();
        tx.scan(b"a".as_slice()..b"b".as_slice()).unwrap();
        tx.commit().unwrap();
    }
    let tracked = db.mgr.stats().ssi_tracked;
    assert!(
        tracked <= 2,
        "2000 read-only commits with no write between them left {tracked} tracked transactions"
    );
}

/// Read-only commits folded into one tracker entry still give a later
/// writer its in-edge: R read x and saw W's write of y, T read y before W
/// and now writes x, so R -rw-> T -rw-> W -wr-> R is a cycle and T must
/// abort, whichever read-only transaction's entry holds R's reads.
#[test]
fn ssi_merged_read_only_commits_still_abort_the_pivot() {
    let db = Db::new(Kind::Memory);
    db.mgr
        .transaction(Isolation::Serializable, |tx| {
            tx.set(b"x", b"0")?;
            tx.set(b"y", b"0")
        })
        .unwrap();
    let mut t = db.mgr.begin(Isolation::Serializable).unwrap();
    t.get(b"y").unwrap();
    let mut w = db.mgr.begin(Isolation::Serializable).unwrap();
    w.set(b"y", b"1").unwrap();
    w.commit().unwrap();
    let before = db.mgr.stats().ssi_tracked;
    // An unrelated reader commits first; R's entry is folded into its own.
    let other = db.mgr.begin(Isolation::Serializable).unwrap();
    other.get(b"z").unwrap();
    other.commit().unwrap();
    let r = db.mgr.begin(Isolation::Serializable).unwrap();
    assert_eq!(r.get(b"y").unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(r.get(b"x").unwrap().as_deref(), Some(&b"0"[..]));
    r.commit().unwrap();
    assert_eq!(
        db.mgr.stats().ssi_tracked,
        before + 1,
        "the two read-only commits share one entry"
    );
    t.set(b"x", b"1").unwrap();
    let err = t.commit().unwrap_err();
    assert!(
        matches!(err, Error::SerializationFailure { .. }),
        "T is the pivot of R -rw-> T -rw-> W: {err}"
    );
}

#[rstest]
fn as_of_reads_see_old_commits_until_collected(
    #[values(Kind::Memory, Kind::Log, Kind::BTree)] kind: Kind,
) {
    let db = Db::new(kind);
    let mut stamps = Vec::new();
    for i in 0..5 {
        db.mgr
            .transaction(Isolation::Snapshot, |tx| {
                tx.set(b"k", format!("v{i}").as_bytes())
            })
            .unwrap();
        stamps.push(db.mgr.last_commit());
    }
    for (i, ts) in stamps.iter().enumerate() {
        let tx = db.mgr.begin_as_of(*ts).unwrap();
        assert_eq!(tx.get(b"k").unwrap().unwrap(), format!("v{i}").as_bytes());
        let mut tx = tx;
        assert!(matches!(tx.set(b"k", b"no"), Err(Error::ReadOnly { .. })));
    }
    assert!(matches!(
        db.mgr.begin_as_of(stamps[4] + 1),
        Err(Error::SnapshotInFuture { .. })
    ));
    // A reader at the second commit keeps its versions through a collection.
    let pinned = db.mgr.begin_as_of(stamps[1]).unwrap();
    let report = db.mgr.gc().unwrap();
    assert_eq!(report.watermark, stamps[1]);
    assert_eq!(report.garbage, 1, "only v0 is hidden from every snapshot");
    assert_eq!(pinned.get(b"k").unwrap().unwrap(), &b"v1"[..]);
    assert!(matches!(
        db.mgr.begin_as_of(stamps[0]),
        Err(Error::SnapshotTooOld { .. })
    ));
    drop(pinned);
    let report = db.mgr.gc().unwrap();
    assert_eq!((report.versions, report.garbage), (4, 3));
    let stats = db.mgr.stats();
    assert_eq!((stats.collections, stats.garbage_collected), (2, 4));
    assert_eq!(stats.versions_written, 5);
}

#[rstest]
fn gc_removes_tombstones_and_keeps_what_snapshots_see(
    #[values(Kind::Memory, Kind::Log, Kind::BTree)] kind: Kind,
) {
    let db = Db::new(kind);
    for i in 0..3 {
        db.mgr
            .transaction(Isolation::Snapshot, |tx| {
                tx.set(b"live", format!("{i}").as_bytes())?;
                tx.set(b"dead", b"x")
            })
            .unwrap();
    }
    let before_delete = db.mgr.begin(Isolation::Snapshot).unwrap();
    db.mgr
        .transaction(Isolation::Snapshot, |tx| tx.delete(b"dead"))
        .unwrap();
    let report = db.mgr.gc().unwrap();
    // Kept: live@3, dead@3 (for `before_delete`), the tombstone.
    assert_eq!((report.versions, report.garbage), (7, 4));
    assert_eq!(
        before_delete.get(b"dead").unwrap().as_deref(),
        Some(&b"x"[..])
    );
    drop(before_delete);
    let report = db.mgr.gc().unwrap();
    assert_eq!(
        (report.versions, report.garbage),
        (3, 2),
        "tombstone and what it hid"
    );
    let tx = db.mgr.begin(Isolation::Snapshot).unwrap();
    assert_eq!(kv(tx.scan::<&[u8]>(..).unwrap()), pairs(&[("live", "2")]));
}

#[rstest]
fn reopening_recovers_the_last_commit(#[values(Kind::Log, Kind::BTree)] kind: Kind) {
    let mut db = Db::new(kind);
    for i in 0..4 {
        db.mgr
            .transaction(Isolation::Serializable, |tx| {
                tx.set(b"k", format!("{i}").as_bytes())
            })
            .unwrap();
    }
    let last = db.mgr.last_commit();
    let pending = {
        let mut tx = db.mgr.begin(Isolation::Snapshot).unwrap();
        tx.set(b"k", b"never committed").unwrap();
        tx
    };
    drop(pending);
    db.reopen(common::options());
    assert_eq!(db.mgr.last_commit(), last);
    let tx = db.mgr.begin(Isolation::Snapshot).unwrap();
    assert_eq!(tx.get(b"k").unwrap().as_deref(), Some(&b"3"[..]));
    drop(tx);
    let ts = db
        .mgr
        .transaction(Isolation::Snapshot, |tx| tx.set(b"k", b"after"))
        .map(|()| db.mgr.last_commit())
        .unwrap();
    assert_eq!(ts, last + 1, "timestamps continue after a reopen");
    assert_eq!(
        db.mgr
            .begin_as_of(last)
            .unwrap()
            .get(b"k")
            .unwrap()
            .as_deref(),
        Some(&b"3"[..])
    );
}

#[test]
fn the_retry_helper_retries_conflicts_a_bounded_number_of_times() {
    let db = Db::with_options(
        Kind::Memory,
        Options {
            max_retries: 3,
            ..common::options()
        },
    );
    let mut attempts = 0;
    let err = db
        .mgr
        .transaction(Isolation::Snapshot, |tx| {
            attempts += 1;
            // Someone else commits the same key in between, every time.
            tx.get(b"k")?;
            db.mgr
                .transaction(Isolation::Snapshot, |other| other.set(b"k", b"other"))?;
            tx.set(b"k", b"mine")
        })
        .unwrap_err();
    assert!(matches!(err, Error::WriteConflict { .. }), "{err}");
    assert_eq!(attempts, 4, "one try and three retries");
    // Concurrent increments all land.
    let threads = 4;
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                for _ in 0..25 {
                    // Three retries can run out under contention: go on
                    // until it commits, but only on a retryable error.
                    loop {
                        let done = db.mgr.transaction(Isolation::Serializable, |tx| {
                            let n = tx.get(b"n")?.map_or(0, |v| v[0]);
                            tx.set(b"n", &[n + 1])
                        });
                        match done {
                            Ok(()) => break,
                            Err(e) if e.is_retryable() => continue,
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
            });
        }
    });
    let tx = db.mgr.begin(Isolation::Snapshot).unwrap();
    assert_eq!(tx.get(b"n").unwrap().unwrap()[0], 100);
}

fn locking(wait: LockWait) -> TxnOptions {
    TxnOptions::new(Isolation::Serializable)
        .concurrency(Concurrency::Locking)
        .lock_wait(wait)
}

#[rstest]
fn locking_waits_then_proceeds(#[values(Kind::Memory, Kind::BTree)] kind: Kind) {
    let db = Db::new(kind);
    let wait = LockWait::Timeout(Duration::from_secs(10));
    let mut t1 = db.mgr.begin_with(locking(wait)).unwrap();
    t1.set(b"k", b"t1").unwrap();
    let started = Barrier::new(2);
    std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let t2 = db.mgr.begin_with(locking(wait)).unwrap();
            started.wait();
            // Blocks on t1's exclusive lock, then sees t1's commit.
            let v = t2.get(b"k").unwrap();
            t2.commit().unwrap();
            v
        });
        started.wait();
        std::thread::sleep(Duration::from_millis(50));
        t1.commit().unwrap();
        assert_eq!(reader.join().unwrap().as_deref(), Some(&b"t1"[..]));
    });
    assert_eq!(db.mgr.stats().locks_held, 0);
}

#[test]
fn locking_deadlock_aborts_the_youngest() {
    let db = Db::new(Kind::Memory);
    let wait = LockWait::Timeout(Duration::from_secs(10));
    let mut old = db.mgr.begin_with(locking(wait)).unwrap();
    let mut young = db.mgr.begin_with(locking(wait)).unwrap();
    assert!(young.id() > old.id());
    old.set(b"a", b"old").unwrap();
    young.set(b"b", b"young").unwrap();
    std::thread::scope(|s| {
        let waiter = s.spawn(move || {
            // old waits for b...
            old.set(b"b", b"old").unwrap();
            old.commit().unwrap();
        });
        std::thread::sleep(Duration::from_millis(50));
        // ... and young closes the cycle: young is the victim.
        let err = young.set(b"a", b"young").unwrap_err();
        assert!(matches!(err, Error::Deadlock { .. }), "{err}");
        assert!(err.is_retryable());
        assert!(err.to_string().contains("'a'"), "{err}");
        drop(young);
        waiter.join().unwrap();
    });
    let tx = db.mgr.begin(Isolation::Snapshot).unwrap();
    assert_eq!(tx.get(b"b").unwrap().as_deref(), Some(&b"old"[..]));
}

#[test]
fn locking_timeouts_and_no_wait_name_the_resource() {
    let db = Db::new(Kind::Memory);
    let t1 = db.mgr.begin_with(locking(LockWait::NoWait)).unwrap();
    assert!(t1.scan(&b"a"[..]..&b"m"[..]).unwrap().next().is_none());
    let mut t2 = db
        .mgr
        .begin_with(locking(LockWait::Timeout(Duration::from_millis(20))))
        .unwrap();
    let err = t2.set(b"c", b"phantom").unwrap_err();
    assert!(matches!(err, Error::LockTimeout { .. }), "{err}");
    assert!(err.to_string().contains("'c'"), "{err}");
    t2.set(b"x", b"outside the range").unwrap();
    let mut t3 = db.mgr.begin_with(locking(LockWait::NoWait)).unwrap();
    let err = t3.set(b"b", b"phantom").unwrap_err();
    assert!(matches!(err, Error::LockTimeout { .. }), "{err}");
    drop(t1);
    t3.set(b"b", b"now free").unwrap();
}

/// An MVCC writer respects a locking reader's shared lock.
#[test]
fn mvcc_commits_respect_locking_readers() {
    let db = Db::new(Kind::Memory);
    let reader = db.mgr.begin_with(locking(LockWait::NoWait)).unwrap();
    assert_eq!(reader.get(b"k").unwrap(), None);
    let mut writer = db
        .mgr
        .begin_with(TxnOptions::new(Isolation::Snapshot).lock_wait(LockWait::NoWait))
        .unwrap();
    writer.set(b"k", b"v").unwrap();
    let err = writer.commit().unwrap_err();
    assert!(matches!(err, Error::LockTimeout { .. }), "{err}");
    assert_eq!(reader.get(b"k").unwrap(), None, "repeatable under the lock");
}

#[test]
fn read_only_transactions_refuse_writes() {
    let db = Db::new(Kind::Memory);
    let mut tx = db.mgr.begin_read_only(Isolation::Serializable).unwrap();
    let err = tx.delete(b"k").unwrap_err();
    assert!(
        matches!(err, Error::ReadOnly { .. }) && !err.is_retryable(),
        "{err}"
    );
    assert_eq!(tx.commit().unwrap(), 0);
}

#[test]
fn concurrent_commits_share_engine_writes() {
    let db = Db::new(Kind::BTree);
    let db = Arc::new(db);
    std::thread::scope(|s| {
        for t in 0..8 {
            let db = &db;
            s.spawn(move || {
                for i in 0..50 {
                    db.mgr
                        .transaction(Isolation::Snapshot, |tx| {
                            tx.set(format!("t{t}/{i}").as_bytes(), b"v")
                        })
                        .unwrap();
                }
            });
        }
    });
    let stats = db.mgr.stats();
    assert_eq!(stats.last_commit, 400);
    assert!(stats.commit_groups <= 400);
    let tx = db.mgr.begin(Isolation::Snapshot).unwrap();
    assert_eq!(tx.scan::<&[u8]>(..).unwrap().count(), 400);
}

/// A key over the engine's limit fails its own commit with the engine's
/// error; commits grouped with it and later ones go through.
#[rstest]
fn an_oversized_key_fails_only_its_own_commit(#[values(Kind::Log, Kind::BTree)] kind: Kind) {
    let db = Db::new(kind);
    let huge = vec![b'k'; 4096];
    let barrier = Barrier::new(4);
    std::thread::scope(|s| {
        for t in 0..4u8 {
            let (db, huge, barrier) = (&db, &huge, &barrier);
            s.spawn(move || {
                barrier.wait();
                for i in 0..20u8 {
                    let mut tx = db.mgr.begin(Isolation::Snapshot).unwrap();
                    let bad = t == 0 && i % 2 == 0;
                    if bad {
                        tx.set(huge, b"v").unwrap();
                    } else {
                        tx.set(&[b'a' + t, i], b"v").unwrap();
                    }
                    match tx.commit() {
                        Ok(_) => assert!(!bad),
                        Err(err) => {
                            assert!(bad, "{err}");
                            assert!(
                                matches!(
                                    err,
                                    Error::Storage(pydb_storage::Error::KeyTooLarge { .. })
                                ),
                                "{err}"
                            );
                        }
                    }
                }
            });
        }
    });
    let tx = db.mgr.begin(Isolation::Snapshot).unwrap();
    assert_eq!(tx.scan::<&[u8]>(..).unwrap().count(), 70);
    drop(tx);
    db.mgr
        .transaction(Isolation::Snapshot, |tx| tx.set(b"after", b"ok"))
        .unwrap();
}

/// What Redis's WATCH needs: the commit that last touched a key, deletes
/// included, as a transaction sees it.
#[test]
fn last_modified_reports_the_newest_visible_commit() {
    let db = Db::new(Kind::Memory);
    let watch = db.mgr.last_commit();
    let pin = db.mgr.begin_read_only(Isolation::Snapshot).unwrap();
    let mut tx = db.mgr.begin(Isolation::Serializable).unwrap();
    assert_eq!(tx.last_modified(b"k").unwrap(), None);
    tx.set(b"k", b"v").unwrap();
    assert_eq!(tx.last_modified(b"k").unwrap(), Some(u64::MAX), "own write");
    let set_at = tx.commit().unwrap();
    let deleted_at = {
        let mut tx = db.mgr.begin(Isolation::Snapshot).unwrap();
        tx.delete(b"k").unwrap();
        tx.commit().unwrap()
    };
    db.mgr.gc().unwrap();
    let exec = db.mgr.begin(Isolation::Serializable).unwrap();
    let seen = exec.last_modified(b"k").unwrap();
    assert_eq!(
        seen,
        Some(deleted_at),
        "the pin kept the tombstone through gc"
    );
    assert!(seen.unwrap() > watch && deleted_at > set_at);
    drop(pin);
}

/// Read-modify-writes with `get_for_update` under locking queue up on the
/// exclusive lock instead of deadlocking on upgrades: all of them commit
/// at the first try.
#[test]
fn get_for_update_avoids_upgrade_deadlocks() {
    let db = Db::new(Kind::Memory);
    let wait = LockWait::Timeout(Duration::from_secs(10));
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..20 {
                    let mut tx = db.mgr.begin_with(locking(wait)).unwrap();
                    let n = tx.get_for_update(b"n").unwrap().map_or(0, |v| v[0]);
                    std::thread::yield_now();
                    tx.set(b"n", &[n + 1]).unwrap();
                    tx.commit().unwrap();
                }
            });
        }
    });
    let tx = db.mgr.begin(Isolation::Snapshot).unwrap();
    assert_eq!(tx.get(b"n").unwrap().unwrap()[0], 80);
    assert_eq!(db.mgr.stats().rolled_back, 0);
}

/// The server hands transactions and the manager between threads.
#[test]
fn managers_and_transactions_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<pydb_txn::TxnManager>();
    send::<pydb_txn::Transaction>();
    send_sync::<pydb_txn::Error>();
}

/// Fekete, O'Neil and O'Neil's read-only anomaly: the read-only T1 began
/// while the pivot T2 ran with an older snapshot, so T1 is tracked and
/// T2's commit is refused (T1 -rw-> T2 -rw-> T3, T3 committed before T1's
/// snapshot).
#[test]
fn read_only_anomaly_is_refused_when_an_older_snapshot_runs() {
    let db = Db::new(Kind::Memory);
    db.mgr
        .transaction(Isolation::Serializable, |tx| {
            tx.set(b"checking", b"0")?;
            tx.set(b"savings", b"0")
        })
        .unwrap();
    let mut t2 = db.mgr.begin(Isolation::Serializable).unwrap();
    t2.get(b"checking").unwrap();
    t2.get(b"savings").unwrap();
    let mut t3 = db.mgr.begin(Isolation::Serializable).unwrap();
    t3.set(b"savings", b"20").unwrap();
    t3.commit().unwrap();
    let t1 = db.mgr.begin_read_only(Isolation::Serializable).unwrap();
    assert_eq!(t1.get(b"checking").unwrap().unwrap(), "0");
    assert_eq!(t1.get(b"savings").unwrap().unwrap(), "20");
    t1.commit().unwrap();
    t2.set(b"checking", b"-11").unwrap();
    assert!(matches!(
        t2.commit(),
        Err(Error::SerializationFailure { .. })
    ));
}

/// A read-only transaction that began when no older snapshot was in use
/// is not tracked by SSI (a safe snapshot): it gives no writer an
/// in-edge, so a writer that would only have been a pivot through it
/// commits. (Serial order: the reader, the writer, then T3.)
#[test]
fn read_only_transaction_with_a_safe_snapshot_is_not_tracked() {
    let db = Db::new(Kind::Memory);
    db.mgr
        .transaction(Isolation::Serializable, |tx| {
            tx.set(b"x", b"0")?;
            tx.set(b"y", b"0")
        })
        .unwrap();
    let reader = db.mgr.begin_read_only(Isolation::Serializable).unwrap();
    assert_eq!(reader.get(b"x").unwrap().unwrap(), "0");
    let mut writer = db.mgr.begin(Isolation::Serializable).unwrap();
    writer.get(b"y").unwrap();
    let mut t3 = db.mgr.begin(Isolation::Serializable).unwrap();
    t3.set(b"y", b"1").unwrap();
    t3.commit().unwrap();
    writer.set(b"x", b"1").unwrap();
    writer.commit().unwrap();
    reader.commit().unwrap();

    // The same with a reader that may write: it is tracked, and the
    // writer is refused as a pivot (a false positive SSI accepts).
    let reader = db.mgr.begin(Isolation::Serializable).unwrap();
    reader.get(b"x").unwrap();
    let mut writer = db.mgr.begin(Isolation::Serializable).unwrap();
    writer.get(b"y").unwrap();
    let mut t3 = db.mgr.begin(Isolation::Serializable).unwrap();
    t3.set(b"y", b"2").unwrap();
    t3.commit().unwrap();
    writer.set(b"x", b"2").unwrap();
    assert!(matches!(
        writer.commit(),
        Err(Error::SerializationFailure { .. })
    ));
    reader.commit().unwrap();
}
