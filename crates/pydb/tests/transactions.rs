//! Guards the facade's transactions: `Db::begin`/`transaction`/as-of reads,
//! single-key operations that stay atomic under concurrency without key
//! locks, and the txn counters in `Db::stats`.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use pydb::{Db, EngineKind, Error, Isolation, Options, SetCondition, SyncPolicy};

/// Every engine, persistent ones in a fresh directory with sync `never`
/// (these tests are about isolation, not durability).
fn every_engine(test: impl Fn(&Db)) {
    for engine in [EngineKind::Memory, EngineKind::Log, EngineKind::BTree] {
        let dir = tempfile::tempdir().unwrap();
        let options = Options {
            sync: SyncPolicy::Never,
            ..Options::with_engine(engine)
        };
        let db = Db::open(dir.path(), options).unwrap();
        test(&db);
        db.close().unwrap();
    }
}

#[test]
fn a_transaction_is_invisible_until_commit_and_gone_after_rollback() {
    every_engine(|db| {
        db.set("a", "1").unwrap();
        let mut tx = db.begin(Isolation::Serializable).unwrap();
        tx.set(b"a", b"2").unwrap();
        tx.set(b"b", b"3").unwrap();
        assert_eq!(db.get("a").unwrap().unwrap(), "1");
        assert_eq!(db.get("b").unwrap(), None);
        tx.commit().unwrap();
        assert_eq!(db.get("a").unwrap().unwrap(), "2");
        assert_eq!(db.get("b").unwrap().unwrap(), "3");

        let mut tx = db.begin(Isolation::Snapshot).unwrap();
        tx.delete(b"a").unwrap();
        tx.rollback();
        let mut dropped = db.begin(Isolation::ReadCommitted).unwrap();
        dropped.set(b"c", b"9").unwrap();
        drop(dropped);
        assert_eq!(db.get("a").unwrap().unwrap(), "2");
        assert_eq!(db.get("c").unwrap(), None);
        assert_eq!(db.key_count().unwrap(), 2);
    });
}

#[test]
fn as_of_reads_an_earlier_commit_and_read_only_refuses_writes() {
    every_engine(|db| {
        // Keep the old versions alive with an open reader pinned at them.
        db.set("k", "old").unwrap();
        let then = db.last_commit();
        let pin = db.begin_as_of(then).unwrap();
        db.set("k", "new").unwrap();
        db.compact().unwrap();
        let past = db.begin_as_of(then).unwrap();
        assert_eq!(past.get(b"k").unwrap().unwrap(), "old");
        assert_eq!(pin.get(b"k").unwrap().unwrap(), "old");
        assert_eq!(db.get("k").unwrap().unwrap(), "new");
        let mut ro = db.begin_read_only(Isolation::Snapshot).unwrap();
        assert!(ro.set(b"k", b"x").is_err());
        let future = db.begin_as_of(db.last_commit() + 5).unwrap_err();
        assert!(matches!(future, Error::Txn(_)), "{future}");
    });
}

#[test]
fn transfers_keep_the_total_under_concurrency() {
    every_engine(|db| {
        const ACCOUNTS: u64 = 8;
        for a in 0..ACCOUNTS {
            db.set(format!("acct{a}"), "100").unwrap();
        }
        std::thread::scope(|s| {
            for t in 0..4u64 {
                s.spawn(move || {
                    for i in 0..50u64 {
                        let from = format!("acct{}", (t + i) % ACCOUNTS);
                        let to = format!("acct{}", (t * 3 + i * 5 + 1) % ACCOUNTS);
                        if from == to {
                            continue;
                        }
                        db.transaction(Isolation::Serializable, |tx| {
                            let read = |tx: &mut pydb::Transaction, k: &str| {
                                tx.get(k.as_bytes()).map(|v| {
                                    pydb::db::parse_integer(&v.unwrap_or_default()).unwrap()
                                })
                            };
                            let (f, t) = (read(tx, &from)?, read(tx, &to)?);
                            tx.set(from.as_bytes(), (f - 1).to_string().as_bytes())?;
                            tx.set(to.as_bytes(), (t + 1).to_string().as_bytes())
                        })
                        .unwrap();
                    }
                });
            }
        });
        let total: i64 = db
            .scan::<&[u8]>(..)
            .unwrap()
            .map(|item| pydb::db::parse_integer(&item.unwrap().1).unwrap())
            .sum();
        assert_eq!(total, 100 * ACCOUNTS as i64);
    });
}

#[test]
fn incr_set_nx_and_delete_stay_atomic_without_key_locks() {
    every_engine(|db| {
        let winners = AtomicU64::new(0);
        let deleted = AtomicU64::new(0);
        db.set("victim", "x").unwrap();
        std::thread::scope(|s| {
            for t in 0..6 {
                let (winners, deleted) = (&winners, &deleted);
                s.spawn(move || {
                    for _ in 0..100 {
                        db.incr_by("counter", 1).unwrap();
                    }
                    if db
                        .set_if("lock", format!("owner {t}"), SetCondition::IfAbsent)
                        .unwrap()
                    {
                        winners.fetch_add(1, Ordering::Relaxed);
                    }
                    if db.delete("victim").unwrap() {
                        deleted.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });
        assert_eq!(db.get("counter").unwrap().unwrap(), "600");
        assert_eq!(winners.load(Ordering::Relaxed), 1);
        assert_eq!(deleted.load(Ordering::Relaxed), 1);
        assert!(matches!(
            db.incr_by("lock", 1).unwrap_err(),
            Error::NotAnInteger
        ));
    });
}

#[test]
fn stats_carry_the_txn_counters_and_key_count_counts_keys() {
    every_engine(|db| {
        for i in 0..5 {
            db.set("same", format!("{i}")).unwrap();
        }
        db.set("other", "1").unwrap();
        assert_eq!(db.key_count().unwrap(), 2);
        let stats = db.stats();
        assert!(stats.get("txn_versions_written").unwrap() >= 6);
        assert!(stats.get("txn_last_commit").unwrap() >= 6);
        db.compact().unwrap();
        let stats = db.stats();
        assert!(stats.get("txn_collections").unwrap() >= 1);
        assert!(stats.get("txn_garbage_collected").unwrap() >= 4);
        assert_eq!(db.get("same").unwrap().unwrap(), "4");
    });
}

#[test]
fn commits_survive_a_reopen() {
    for engine in [EngineKind::Log, EngineKind::BTree] {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), Options::with_engine(engine)).unwrap();
        db.transaction(Isolation::Serializable, |tx| {
            tx.set(b"x", b"1")?;
            tx.set(b"y", b"2")
        })
        .unwrap();
        db.incr_by("n", 41).unwrap();
        db.delete("y").unwrap();
        let last = db.last_commit();
        db.close().unwrap();
        let db = Arc::new(Db::open(dir.path(), Options::with_engine(engine)).unwrap());
        assert_eq!(db.last_commit(), last);
        assert_eq!(db.get("x").unwrap().unwrap(), "1");
        assert_eq!(db.get("y").unwrap(), None);
        assert_eq!(db.incr_by("n", 1).unwrap(), 42);
    }
}
