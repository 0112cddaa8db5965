//! Guards the keyspaces: the Kv key `a` and the Sql key `a` are two keys
//! to reads, scans, garbage collection, recovery, the write-write check,
//! SSI and the lock manager, while a dependency that crosses spaces is
//! still caught.

#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use common::{Db, Kind};
use pydb_txn::{Concurrency, Error, Isolation, Keyspace, LockWait, Transaction, TxnOptions};
use rstest::rstest;

const KV: Keyspace = Keyspace::Kv;
const SQL: Keyspace = Keyspace::Sql;

/// Every key of `space` the transaction sees, with its value, as text.
fn all(tx: &Transaction, space: Keyspace) -> Vec<(String, String)> {
    tx.scan_in::<&[u8]>(space, ..)
        .unwrap()
        .map(|item| {
            let (k, v): (Bytes, Bytes) = item.unwrap();
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
fn the_same_key_in_two_spaces_is_two_keys(
    #[values(Kind::Memory, Kind::Log, Kind::BTree)] kind: Kind,
) {
    let mut db = Db::new(kind);
    db.mgr
        .transaction(Isolation::Serializable, |tx| {
            tx.set(b"a", b"kv")?;
            tx.set_in(SQL, b"a", b"sql")?;
            tx.set_in(SQL, b"t\x00row", b"row")?;
            tx.set(b"z", b"last kv")
        })
        .unwrap();
    let mut tx = db.mgr.begin(Isolation::Snapshot).unwrap();
    assert_eq!(tx.get(b"a").unwrap().as_deref(), Some(&b"kv"[..]));
    assert_eq!(tx.get_in(KV, b"a").unwrap().as_deref(), Some(&b"kv"[..]));
    assert_eq!(tx.get_in(SQL, b"a").unwrap().as_deref(), Some(&b"sql"[..]));
    assert_eq!(tx.get_in(SQL, b"z").unwrap(), None);
    assert_eq!(all(&tx, KV), pairs(&[("a", "kv"), ("z", "last kv")]));
    assert_eq!(all(&tx, SQL), pairs(&[("a", "sql"), ("t\0row", "row")]));
    // Buffered writes stay in their space too.
    tx.delete_in(SQL, b"a").unwrap();
    tx.set_in(SQL, b"b", b"new row").unwrap();
    tx.set(b"m", b"new kv").unwrap();
    assert_eq!(tx.get(b"a").unwrap().as_deref(), Some(&b"kv"[..]));
    assert_eq!(
        all(&tx, KV),
        pairs(&[("a", "kv"), ("m", "new kv"), ("z", "last kv")])
    );
    assert_eq!(all(&tx, SQL), pairs(&[("b", "new row"), ("t\0row", "row")]));
    tx.commit().unwrap();
    // A collection removes the Sql tombstone and keeps the Kv value.
    db.mgr.gc().unwrap();
    if kind != Kind::Memory {
        db.reopen(common::options());
    }
    let tx = db.mgr.begin(Isolation::Snapshot).unwrap();
    assert_eq!(
        all(&tx, KV),
        pairs(&[("a", "kv"), ("m", "new kv"), ("z", "last kv")])
    );
    assert_eq!(all(&tx, SQL), pairs(&[("b", "new row"), ("t\0row", "row")]));
    let last = db.mgr.last_commit();
    assert_eq!(tx.last_modified_in(SQL, b"b").unwrap(), Some(last));
    assert_eq!(tx.last_modified_in(KV, b"b").unwrap(), None);
    assert_eq!(tx.last_modified_in(KV, b"a").unwrap(), Some(last - 1));
    assert!(tx.get_in(SQL, b"").is_err(), "the empty key is refused");
}

#[test]
fn writes_to_one_key_in_two_spaces_do_not_conflict() {
    let db = Db::new(Kind::Memory);
    let mut t1 = db.mgr.begin(Isolation::Snapshot).unwrap();
    let mut t2 = db.mgr.begin(Isolation::Snapshot).unwrap();
    let mut t3 = db.mgr.begin(Isolation::Snapshot).unwrap();
    t1.set(b"a", b"1").unwrap();
    t2.set_in(SQL, b"a", b"2").unwrap();
    t3.set_in(SQL, b"a", b"3").unwrap();
    t1.commit().unwrap();
    t2.commit().unwrap();
    // The control: the same key in the same space does conflict, and the
    // message names the space.
    let err = t3.commit().unwrap_err();
    assert!(matches!(err, Error::WriteConflict { .. }), "{err}");
    assert!(err.to_string().contains("sql:'a'"), "{err}");
}

/// Write skew inside the Sql space through an empty scanned range is
/// caught; the same pattern with a Kv scan and Sql writes is no anomaly
/// (the writes are outside the scanned range) and commits.
#[rstest]
fn ssi_tracks_ranges_per_space(#[values(Kind::Memory, Kind::BTree)] kind: Kind) {
    let db = Db::new(kind);
    let mut t1 = db.mgr.begin(Isolation::Serializable).unwrap();
    let mut t2 = db.mgr.begin(Isolation::Serializable).unwrap();
    assert!(all(&t1, KV).is_empty());
    assert!(all(&t2, KV).is_empty());
    t1.set_in(SQL, b"r1", b"one").unwrap();
    t2.set_in(SQL, b"r2", b"two").unwrap();
    t1.commit().unwrap();
    t2.commit().unwrap();

    let mut t1 = db.mgr.begin(Isolation::Serializable).unwrap();
    let mut t2 = db.mgr.begin(Isolation::Serializable).unwrap();
    assert!(
        t1.scan_in(SQL, &b"s/"[..]..&b"s0"[..])
            .unwrap()
            .next()
            .is_none()
    );
    assert!(
        t2.scan_in(SQL, &b"s/"[..]..&b"s0"[..])
            .unwrap()
            .next()
            .is_none()
    );
    t1.set_in(SQL, b"s/1", b"one").unwrap();
    t2.set_in(SQL, b"s/2", b"two").unwrap();
    t1.commit().unwrap();
    let err = t2.commit().unwrap_err();
    assert!(matches!(err, Error::SerializationFailure { .. }), "{err}");
    assert!(
        err.to_string().contains("sql range [sql:'s/', sql:'s0')"),
        "{err}"
    );
}

/// A real cycle whose two edges run through different spaces: T1 reads the
/// Kv key x and writes the Sql key y, T2 reads the Sql key y and writes
/// the Kv key x. Serializable must abort one; snapshot lets both through.
#[rstest]
fn ssi_catches_write_skew_across_spaces(#[values(Kind::Memory, Kind::Log)] kind: Kind) {
    let db = Db::new(kind);
    for level in [Isolation::Snapshot, Isolation::Serializable] {
        let mut t1 = db.mgr.begin(level).unwrap();
        let mut t2 = db.mgr.begin(level).unwrap();
        assert_eq!(t1.get_in(KV, b"x").unwrap(), None);
        assert_eq!(t2.get_in(SQL, b"y").unwrap(), None);
        t1.set_in(SQL, b"y", b"t1").unwrap();
        t2.set_in(KV, b"x", b"t2").unwrap();
        t1.commit().unwrap();
        let second = t2.commit();
        match level {
            Isolation::Snapshot => {
                second.unwrap();
            }
            _ => {
                let err = second.unwrap_err();
                assert!(matches!(err, Error::SerializationFailure { .. }), "{err}");
                assert!(err.to_string().contains("sql:'y'"), "{err}");
            }
        }
        // Reset for the next level.
        db.mgr
            .transaction(Isolation::Snapshot, |tx| {
                tx.delete_in(SQL, b"y")?;
                tx.delete_in(KV, b"x")
            })
            .unwrap();
    }
}

/// Under locking, a range lock on every Kv key does not cover Sql keys,
/// and an exclusive Kv key lock does not block the Sql key of the same
/// name; the same key in the same space waits (and times out).
#[test]
fn locks_are_per_space() {
    let db = Db::new(Kind::Memory);
    let locking = || TxnOptions::new(Isolation::Serializable).concurrency(Concurrency::Locking);
    let mut t1 = db
        .mgr
        .begin_with(locking().lock_wait(LockWait::NoWait))
        .unwrap();
    assert!(all(&t1, KV).is_empty());
    t1.set(b"k", b"kv").unwrap();
    let mut t2 = db
        .mgr
        .begin_with(locking().lock_wait(LockWait::NoWait))
        .unwrap();
    t2.set_in(SQL, b"k", b"sql").unwrap();
    t2.set_in(SQL, b"any", b"row").unwrap();
    let err = t2.set(b"phantom", b"v").unwrap_err();
    assert!(matches!(err, Error::LockTimeout { .. }), "{err}");
    assert!(err.to_string().contains("'phantom'"), "{err}");
    t1.commit().unwrap();
    drop(t2);
    let tx = db.mgr.begin(Isolation::Snapshot).unwrap();
    assert_eq!(all(&tx, KV), pairs(&[("k", "kv")]));
    assert!(all(&tx, SQL).is_empty(), "t2 rolled back");
}

/// `set_owned_in` is `set_in` with the value handed over: the same value,
/// in its own space only, read back from the buffer, after commit, and
/// after a reopen; it replaces an expiry deadline like `set_in` does.
#[rstest]
fn an_owned_value_is_set_like_a_copied_one(
    #[values(Kind::Memory, Kind::Log, Kind::BTree)] kind: Kind,
) {
    let mut db = Db::new(kind);
    let mut tx = db.mgr.begin(Isolation::Serializable).unwrap();
    tx.set(b"k\x00ey", b"kv").unwrap();
    tx.set_owned_in(SQL, b"k\x00ey", Bytes::from_static(b"owned"))
        .unwrap();
    tx.set_with_deadline_in(SQL, b"x", b"expiring", Some(1))
        .unwrap();
    tx.set_owned_in(SQL, b"x", Bytes::from(b"kept".to_vec()))
        .unwrap();
    assert_eq!(
        tx.get_in(SQL, b"k\x00ey").unwrap().as_deref(),
        Some(&b"owned"[..])
    );
    assert!(tx.set_owned_in(SQL, b"", Bytes::new()).is_err());
    tx.commit().unwrap();
    if kind != Kind::Memory {
        db.reopen(common::options());
    }
    let tx = db.mgr.begin(Isolation::Snapshot).unwrap();
    assert_eq!(all(&tx, KV), pairs(&[("k\0ey", "kv")]));
    assert_eq!(all(&tx, SQL), pairs(&[("k\0ey", "owned"), ("x", "kept")]));
}
