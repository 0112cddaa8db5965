//! Guards the facade's SQL: `Db::sql`, `Db::query` and `Db::sql_session`
//! on every engine, across a reopen, beside the key-value commands, with
//! SQL errors passed through (`kind`, `is_retryable`, `sqlstate`).

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use pydb::storage::ErrorKind;
use pydb::{Db, EngineKind, Error, Options, Output, SyncPolicy, TxnStatus, Value};

fn open(dir: &std::path::Path, engine: EngineKind) -> Db {
    let options = Options {
        sync: SyncPolicy::Always,
        ..Options::with_engine(engine)
    };
    Db::open(dir, options).unwrap()
}

fn ints(rows: &[Vec<Value>]) -> Vec<i64> {
    rows.iter()
        .map(|r| match r[..] {
            [Value::Integer(i)] => i,
            _ => panic!("{r:?}"),
        })
        .collect()
}

#[test]
fn every_engine_runs_sql_and_keeps_it_across_a_reopen() {
    for &engine in EngineKind::ALL {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path(), engine);
        let outputs = db
            .sql(
                "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL, score INTEGER); \
                 CREATE INDEX t_score ON t (score); \
                 INSERT INTO t VALUES (1, 'ann', 30), (2, 'bob', 10), (3, 'cy', 20); \
                 UPDATE t SET score = 40 WHERE id = 2; \
                 DELETE FROM t WHERE name = 'cy'",
            )
            .unwrap();
        assert_eq!(outputs.len(), 5, "{engine:?}");
        assert_eq!(
            outputs[2],
            Output::Affected {
                verb: "INSERT",
                count: 3
            }
        );
        // Key-value data and SQL data live in separate keyspaces.
        db.set("t", "kv").unwrap();
        assert_eq!(db.key_count().unwrap(), 1, "{engine:?}");
        let rows = db
            .query("SELECT id FROM t WHERE score > 15 ORDER BY id")
            .unwrap();
        assert_eq!(ints(&rows.rows), vec![1, 2], "{engine:?}");
        if !engine.is_persistent() {
            continue;
        }
        db.close().unwrap();
        let db = open(dir.path(), engine);
        let rows = db.query("SELECT id FROM t ORDER BY score").unwrap();
        assert_eq!(ints(&rows.rows), vec![1, 2], "{engine:?} after reopening");
        let report = pydb::query::check::check(db.sql_database()).unwrap();
        assert!(report.is_ok(), "{engine:?}: {report:?}");
        assert_eq!((report.rows, report.index_entries), (2, 2), "{engine:?}");
        db.close().unwrap();
    }
}

#[test]
fn sql_errors_pass_through_the_facade() {
    let db = Db::memory().unwrap();
    db.sql("CREATE TABLE t (a INTEGER PRIMARY KEY)").unwrap();
    let e = db.sql("INSERT INTO t VALUES (1), (1)").unwrap_err();
    assert!(matches!(e, Error::Sql(_)), "{e}");
    assert_eq!(e.sqlstate(), Some("23505"));
    assert!(!e.is_retryable());
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert_eq!(db.sql("SELEC 1").unwrap_err().sqlstate(), Some("42601"));
    assert!(db.query("INSERT INTO t VALUES (2)").is_err(), "not a query");
    assert!(db.query("SELECT a FROM t").unwrap().rows.len() == 1);

    // A conflict is retryable, and says so through every layer.
    let (mut a, mut b) = (db.sql_session(), db.sql_session());
    a.execute("BEGIN; UPDATE t SET a = 10 WHERE a = 2").unwrap();
    b.execute("BEGIN; UPDATE t SET a = 20 WHERE a = 2").unwrap();
    assert_eq!(b.status(), TxnStatus::InTransaction);
    a.execute("COMMIT").unwrap();
    let e = Error::from(b.execute("COMMIT").unwrap_err());
    assert!(e.is_retryable(), "{e}");
    assert_eq!(e.sqlstate(), Some("40001"));
    assert_eq!(e.kind(), ErrorKind::Conflict);
    assert_eq!(ints(&db.query("SELECT a FROM t").unwrap().rows), vec![10]);
}

#[test]
fn a_begin_left_open_by_a_script_is_rolled_back() {
    let db = Db::memory().unwrap();
    db.sql("CREATE TABLE t (a INTEGER); BEGIN; INSERT INTO t VALUES (1)")
        .unwrap();
    assert!(db.query("SELECT a FROM t").unwrap().rows.is_empty());
}
