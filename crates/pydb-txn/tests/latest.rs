//! Guards `TxnManager::get_latest*`, the read of the latest commit that
//! registers no snapshot: what it sees, and that racing writers and
//! garbage collection never make it return an absent, older or torn value.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::{Db, Kind};
use pydb_txn::{
    ClockHandle, Concurrency, Error, Isolation, Keyspace, LockWait, ManualClock, Options,
};
use rstest::rstest;

#[rstest]
fn a_latest_read_sees_exactly_the_committed_data(
    #[values(Kind::Memory, Kind::Log, Kind::BTree)] kind: Kind,
) {
    let db = Db::new(kind);
    let mgr = &db.mgr;
    assert_eq!(mgr.get_latest(b"k").unwrap(), None);
    mgr.transaction(Isolation::Snapshot, |tx| tx.set(b"k", b"1"))
        .unwrap();
    assert_eq!(mgr.get_latest(b"k").unwrap().unwrap(), &b"1"[..]);
    // An uncommitted write is invisible; once committed, it is the answer.
    let mut tx = mgr.begin(Isolation::Snapshot).unwrap();
    tx.set(b"k", b"2").unwrap();
    assert_eq!(mgr.get_latest(b"k").unwrap().unwrap(), &b"1"[..]);
    tx.commit().unwrap();
    assert_eq!(mgr.get_latest(b"k").unwrap().unwrap(), &b"2"[..]);
    // The spaces are apart, a key with zero bytes is found, and a delete
    // is an absence.
    assert_eq!(mgr.get_latest_in(Keyspace::Sql, b"k").unwrap(), None);
    mgr.transaction(Isolation::Snapshot, |tx| {
        tx.set_in(Keyspace::Sql, b"k", b"row")?;
        tx.set(b"a\x00b", b"zero")
    })
    .unwrap();
    assert_eq!(
        mgr.get_latest_in(Keyspace::Sql, b"k").unwrap().unwrap(),
        &b"row"[..]
    );
    assert_eq!(mgr.get_latest(b"a\x00b").unwrap().unwrap(), &b"zero"[..]);
    assert_eq!(mgr.get_latest(b"a").unwrap(), None);
    mgr.transaction(Isolation::Snapshot, |tx| tx.delete(b"k").map(drop))
        .unwrap();
    assert_eq!(mgr.get_latest(b"k").unwrap(), None);
    assert!(mgr.get_latest(b"").is_err(), "an empty key is refused");
    // It registered nothing: a collection keeps no old version for it.
    assert_eq!(mgr.stats().active, 0);
}

/// `get_latest_into` gives `get_latest_in`'s answers, borrowed from the
/// caller's buffer: one buffer for every read, so that nothing an earlier
/// read left there shows through (a longer value, then a shorter one, an
/// absence), and an expiring version's header (longer than a plain one's)
/// is not part of the value.
#[rstest]
fn a_latest_read_into_a_buffer_answers_as_get_latest_in(
    #[values(Kind::Memory, Kind::Log, Kind::BTree)] kind: Kind,
) {
    let clock = ManualClock::new(1_000);
    let options = Options {
        clock: ClockHandle::new(clock.clone()),
        ..common::options()
    };
    let db = Db::with_options(kind, options);
    let mgr = &db.mgr;
    let mut buf = Vec::new();
    let mut check = |key: &[u8], want: Option<&[u8]>| {
        for space in [Keyspace::Kv, Keyspace::Sql] {
            let got = mgr.get_latest_into(space, key, &mut buf).unwrap();
            assert_eq!(
                got,
                want.filter(|_| space == Keyspace::Kv),
                "{key:?} in {space:?}"
            );
            let owned = mgr.get_latest_in(space, key).unwrap();
            assert_eq!(got, owned.as_deref(), "{key:?} in {space:?}");
        }
    };
    check(b"k", None);
    mgr.transaction(Isolation::Snapshot, |tx| {
        tx.set(b"k", b"a longer value")?;
        tx.set(b"a\x00b", b"zero")?;
        tx.set_with_deadline(b"s", b"v", Some(2_000))
    })
    .unwrap();
    check(b"k", Some(b"a longer value"));
    check(b"s", Some(b"v"));
    check(b"a\x00b", Some(b"zero"));
    check(b"a", None);
    mgr.transaction(Isolation::Snapshot, |tx| tx.set(b"k", b"short"))
        .unwrap();
    check(b"k", Some(b"short"));
    clock.set(2_001);
    check(b"s", None);
    mgr.transaction(Isolation::Snapshot, |tx| tx.delete(b"k").map(drop))
        .unwrap();
    check(b"k", None);
    assert!(mgr.get_latest_into(Keyspace::Kv, b"", &mut buf).is_err());
    assert_eq!(mgr.stats().active, 0);
}

/// A version whose value has no valid tag is reported as corruption of
/// that key: the engine hands the point read the value only, so the error
/// names the key through the bounds the read asked for.
#[rstest]
fn a_damaged_version_is_corruption_of_its_key(
    #[values(Kind::Memory, Kind::Log, Kind::BTree)] kind: Kind,
) {
    use pydb_storage::{KeyRange, StorageEngine};
    let db = Db::new(kind);
    let mgr = &db.mgr;
    mgr.transaction(Isolation::Snapshot, |tx| tx.set(b"victim", b"1"))
        .unwrap();
    let engine = mgr.engine();
    let versions: Vec<_> = engine
        .scan(KeyRange::all())
        .unwrap()
        .map(|entry| entry.unwrap().0)
        .filter(|k| k.windows(6).any(|w| w == b"victim"))
        .collect();
    assert_eq!(versions.len(), 1, "{versions:?}");
    engine.set(&versions[0], b"\x7f").unwrap();
    match mgr.get_latest(b"victim") {
        Err(Error::Corrupted { key, .. }) => assert!(key.contains("victim"), "{key}"),
        other => panic!("expected corruption, got {other:?}"),
    }
    match mgr.get_latest_into(Keyspace::Kv, b"victim", &mut Vec::new()) {
        Err(Error::Corrupted { key, .. }) => assert!(key.contains("victim"), "{key}"),
        other => panic!("expected corruption, got {other:?}"),
    }
}

#[test]
fn a_latest_read_hides_expired_values() {
    let clock = ManualClock::new(1_000);
    let options = Options {
        clock: ClockHandle::new(clock.clone()),
        ..common::options()
    };
    let db = Db::with_options(Kind::Memory, options);
    db.mgr
        .transaction(Isolation::Snapshot, |tx| {
            tx.set_with_deadline(b"s", b"v", Some(2_000))
        })
        .unwrap();
    let (value, deadline) = db
        .mgr
        .get_latest_with_deadline_in(Keyspace::Kv, b"s")
        .unwrap()
        .unwrap();
    assert_eq!((&value[..], deadline), (&b"v"[..], Some(2_000)));
    clock.set(2_001);
    assert_eq!(db.mgr.get_latest(b"s").unwrap(), None);
}

#[test]
fn under_locking_a_latest_read_takes_the_shared_lock() {
    let options = Options {
        concurrency: Concurrency::Locking,
        lock_wait: LockWait::NoWait,
        ..common::options()
    };
    let db = Db::with_options(Kind::Memory, options);
    db.mgr
        .transaction(Isolation::Serializable, |tx| tx.set(b"k", b"1"))
        .unwrap();
    let mut writer = db.mgr.begin(Isolation::Serializable).unwrap();
    writer.set(b"k", b"2").unwrap();
    writer.get_for_update(b"k").unwrap();
    let err = db.mgr.get_latest(b"k").unwrap_err();
    assert!(matches!(err, Error::LockTimeout { .. }), "{err:?}");
    let mut buf = b"stale".to_vec();
    let err = db
        .mgr
        .get_latest_into(Keyspace::Kv, b"k", &mut buf)
        .unwrap_err();
    assert!(matches!(err, Error::LockTimeout { .. }), "{err:?}");
    drop(writer);
    assert_eq!(db.mgr.get_latest(b"k").unwrap().unwrap(), &b"1"[..]);
    let got = db
        .mgr
        .get_latest_into(Keyspace::Kv, b"k", &mut buf)
        .unwrap();
    assert_eq!(got, Some(&b"1"[..]));
}

/// A writer commits 0, 1, 2, ... to one key, one commit each (so the
/// value committed at `ts` is `ts - 1`), while a collector removes every
/// shadowed version as fast as it can. Each latest read must find the key
/// (every older version is garbage the moment a newer one is published,
/// so a read that lost its version to the collector would find nothing),
/// never go backwards, and never be older than what was published before
/// it began nor newer than what was published after it ended.
#[rstest]
fn latest_reads_race_writers_and_the_collector(#[values(Kind::Memory, Kind::Log)] kind: Kind) {
    const COMMITS: u64 = 3_000;
    let db = Arc::new(Db::new(kind));
    db.mgr
        .transaction(Isolation::Snapshot, |tx| tx.set(b"n", b"0"))
        .unwrap();
    let base = db.mgr.last_commit();
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (db, done) = (Arc::clone(&db), Arc::clone(&done));
        std::thread::spawn(move || {
            for i in 1..=COMMITS {
                db.mgr
                    .transaction(Isolation::Snapshot, |tx| {
                        tx.set(b"n", i.to_string().as_bytes())
                    })
                    .unwrap();
            }
            done.store(true, Ordering::Release);
        })
    };
    let collector = {
        let (db, done) = (Arc::clone(&db), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut garbage = 0;
            while !done.load(Ordering::Acquire) {
                garbage += db.mgr.gc().unwrap().garbage;
            }
            garbage
        })
    };
    // One reader takes owned values, the other reads into a buffer it
    // keeps (`get_latest_into`, the SQL point select's read).
    let readers: Vec<_> = [false, true]
        .into_iter()
        .map(|into| {
            let (db, done) = (Arc::clone(&db), Arc::clone(&done));
            std::thread::spawn(move || {
                let mut last = 0u64;
                let mut reads = 0u64;
                let mut buf = Vec::new();
                while !done.load(Ordering::Acquire) {
                    let before = db.mgr.last_commit() - base;
                    let value = if into {
                        let found = db.mgr.get_latest_into(Keyspace::Kv, b"n", &mut buf);
                        found.unwrap().expect("the key exists").to_vec()
                    } else {
                        db.mgr
                            .get_latest(b"n")
                            .unwrap()
                            .expect("the key exists")
                            .to_vec()
                    };
                    let after = db.mgr.last_commit() - base;
                    let n: u64 = std::str::from_utf8(&value).unwrap().parse().unwrap();
                    assert!(n >= last, "went backwards: {n} after {last}");
                    assert!(n >= before, "{n} is older than published {before}");
                    assert!(n <= after, "{n} is newer than published {after}");
                    last = n;
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    writer.join().unwrap();
    let garbage = collector.join().unwrap();
    for reader in readers {
        assert!(reader.join().unwrap() > 0);
    }
    assert!(garbage > 0, "the collector raced the reads");
    assert_eq!(
        db.mgr.get_latest(b"n").unwrap().unwrap(),
        COMMITS.to_string().as_bytes()
    );
}
