//! Sessions: autocommit, BEGIN/COMMIT/ROLLBACK, the failed state,
//! transactional DDL, and two sessions seeing (or fighting) each other.

use std::sync::Arc;

use pydb_storage::MemoryStorage;
use pydb_txn::TxnManager;

use super::*;
use crate::output::Rows;
use crate::value::Value;

fn database() -> Database {
    let engine = Arc::new(MemoryStorage::new());
    let mgr = TxnManager::open(engine, pydb_txn::Options::default()).unwrap();
    Database::new(Arc::new(mgr)).unwrap()
}

fn run(s: &mut Session, sql: &str) -> Vec<Output> {
    s.execute(sql)
        .unwrap_or_else(|e| panic!("{sql}: {e} ({})", e.sqlstate()))
}

fn query(s: &mut Session, sql: &str) -> Vec<Vec<Value>> {
    match run(s, sql).pop() {
        Some(Output::Rows(Rows { rows, .. })) => rows,
        other => panic!("{sql}: {other:?}"),
    }
}

fn error(s: &mut Session, sql: &str) -> Error {
    match s.execute(sql) {
        Err(e) => e,
        Ok(out) => panic!("{sql} succeeded: {out:?}"),
    }
}

fn ints(values: &[i64]) -> Vec<Vec<Value>> {
    values.iter().map(|&i| vec![Value::Integer(i)]).collect()
}

#[test]
fn a_failed_autocommit_statement_leaves_nothing() {
    let db = database();
    let mut s = db.session();
    run(
        &mut s,
        "CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT UNIQUE)",
    );
    let e = error(&mut s, "INSERT INTO t VALUES (1, 'x'), (2, 'y'), (1, 'z')");
    assert_eq!(e.sqlstate(), "23505", "{e}");
    assert_eq!(query(&mut s, "SELECT a FROM t"), ints(&[]));
    assert_eq!(s.status(), TxnStatus::Idle);
    run(
        &mut s,
        "INSERT INTO t VALUES (1, 'x'), (2, NULL), (3, NULL)",
    );
    assert_eq!(
        query(&mut s, "SELECT a FROM t ORDER BY a"),
        ints(&[1, 2, 3])
    );
    assert!(crate::check::check(&db).unwrap().is_ok());
}

#[test]
fn begin_commit_and_rollback() {
    let db = database();
    let mut s = db.session();
    run(&mut s, "CREATE TABLE t (a INTEGER)");
    assert_eq!(
        run(&mut s, "BEGIN; INSERT INTO t VALUES (1); ROLLBACK"),
        vec![
            Output::Done("BEGIN"),
            Output::Affected {
                verb: "INSERT",
                count: 1
            },
            Output::Done("ROLLBACK")
        ]
    );
    assert_eq!(query(&mut s, "SELECT a FROM t"), ints(&[]));
    run(&mut s, "BEGIN");
    assert_eq!(s.status(), TxnStatus::InTransaction);
    run(&mut s, "INSERT INTO t VALUES (2)");
    assert_eq!(query(&mut s, "SELECT a FROM t"), ints(&[2]), "own writes");
    assert_eq!(
        query(&mut db.session(), "SELECT a FROM t"),
        ints(&[]),
        "not before commit"
    );
    run(&mut s, "COMMIT");
    assert_eq!(query(&mut db.session(), "SELECT a FROM t"), ints(&[2]));
    assert!(matches!(error(&mut s, "COMMIT"), Error::Invalid(_)));
    assert!(matches!(error(&mut s, "ROLLBACK"), Error::Invalid(_)));
}

#[test]
fn a_failed_statement_inside_begin_fails_the_transaction() {
    let db = database();
    let mut s = db.session();
    run(&mut s, "CREATE TABLE t (a INTEGER PRIMARY KEY)");
    run(&mut s, "BEGIN; INSERT INTO t VALUES (1)");
    assert_eq!(
        error(&mut s, "INSERT INTO t VALUES (1)").sqlstate(),
        "23505"
    );
    assert_eq!(s.status(), TxnStatus::Failed);
    let e = error(&mut s, "SELECT a FROM t");
    assert!(matches!(e, Error::TransactionAborted), "{e}");
    assert_eq!(e.sqlstate(), "25P02");
    // COMMIT of a failed transaction rolls back.
    assert_eq!(run(&mut s, "COMMIT"), vec![Output::Done("ROLLBACK")]);
    assert_eq!(s.status(), TxnStatus::Idle);
    assert_eq!(query(&mut s, "SELECT a FROM t"), ints(&[]));
    // A syntax error fails it too.
    run(&mut s, "BEGIN; INSERT INTO t VALUES (5)");
    assert_eq!(error(&mut s, "SELEKT 1").sqlstate(), "42601");
    assert_eq!(s.status(), TxnStatus::Failed);
    run(&mut s, "ROLLBACK");
    assert_eq!(query(&mut s, "SELECT a FROM t"), ints(&[]));
}

#[test]
fn ddl_is_transactional() {
    let db = database();
    let mut s = db.session();
    run(
        &mut s,
        "BEGIN; CREATE TABLE t (a INTEGER); INSERT INTO t VALUES (1); CREATE INDEX t_a ON t (a)",
    );
    assert_eq!(query(&mut s, "SELECT a FROM t WHERE a = 1"), ints(&[1]));
    let mut other = db.session();
    assert_eq!(error(&mut other, "SELECT a FROM t").sqlstate(), "42P01");
    run(&mut s, "ROLLBACK");
    assert_eq!(error(&mut s, "SELECT a FROM t").sqlstate(), "42P01");
    // Committed DDL is visible to a session whose cache held the old
    // catalog.
    run(&mut s, "BEGIN; CREATE TABLE t (a INTEGER); COMMIT");
    assert_eq!(query(&mut other, "SELECT a FROM t"), ints(&[]));
    run(&mut other, "DROP TABLE t");
    assert_eq!(error(&mut s, "SELECT a FROM t").sqlstate(), "42P01");
}

#[test]
fn concurrent_writes_to_one_row_fail_with_40001() {
    let db = database();
    let mut setup = db.session();
    run(
        &mut setup,
        "CREATE TABLE acct (id INTEGER PRIMARY KEY, balance INTEGER); INSERT INTO acct VALUES (1, 100)",
    );
    for level in ["REPEATABLE READ", "SERIALIZABLE", "READ COMMITTED"] {
        let (mut a, mut b) = (db.session(), db.session());
        run(&mut a, &format!("BEGIN ISOLATION LEVEL {level}"));
        run(&mut b, &format!("BEGIN ISOLATION LEVEL {level}"));
        run(&mut a, "UPDATE acct SET balance = balance + 1 WHERE id = 1");
        run(
            &mut b,
            "UPDATE acct SET balance = balance + 10 WHERE id = 1",
        );
        run(&mut a, "COMMIT");
        let e = error(&mut b, "COMMIT");
        assert_eq!(e.sqlstate(), "40001", "{level}: {e}");
        assert!(e.is_retryable());
        assert_eq!(b.status(), TxnStatus::Idle);
    }
    assert_eq!(
        query(&mut setup, "SELECT balance FROM acct"),
        ints(&[103]),
        "every winner's increment, no loser's"
    );
}

#[test]
fn write_skew_is_refused_under_serializable_only() {
    for (level, skew_allowed) in [("REPEATABLE READ", true), ("SERIALIZABLE", false)] {
        let db = database();
        let mut setup = db.session();
        run(
            &mut setup,
            "CREATE TABLE doctors (name TEXT PRIMARY KEY, on_call INTEGER); \
             INSERT INTO doctors VALUES ('alice', 1), ('bob', 1)",
        );
        let (mut a, mut b) = (db.session(), db.session());
        for (s, me) in [(&mut a, "alice"), (&mut b, "bob")] {
            run(s, &format!("BEGIN ISOLATION LEVEL {level}"));
            assert_eq!(
                query(s, "SELECT COUNT(*) FROM doctors WHERE on_call = 1"),
                ints(&[2])
            );
            run(
                s,
                &format!("UPDATE doctors SET on_call = 0 WHERE name = '{me}'"),
            );
        }
        run(&mut a, "COMMIT");
        let result = b.execute("COMMIT");
        if skew_allowed {
            assert!(result.is_ok(), "{level}");
        } else {
            let e = result.unwrap_err();
            assert_eq!(e.sqlstate(), "40001", "{e}");
        }
    }
}

#[test]
fn snapshot_reads_do_not_see_later_commits() {
    let db = database();
    let mut a = db.session();
    run(&mut a, "CREATE TABLE t (a INTEGER)");
    run(&mut a, "BEGIN ISOLATION LEVEL REPEATABLE READ");
    assert_eq!(query(&mut a, "SELECT a FROM t"), ints(&[]));
    run(&mut db.session(), "INSERT INTO t VALUES (7)");
    assert_eq!(query(&mut a, "SELECT a FROM t"), ints(&[]));
    run(&mut a, "COMMIT");
    assert_eq!(query(&mut a, "SELECT a FROM t"), ints(&[7]));
}

#[test]
fn read_only_transactions_refuse_writes() {
    let db = database();
    let mut s = db.session();
    run(&mut s, "CREATE TABLE t (a INTEGER); BEGIN READ ONLY");
    assert!(matches!(error(&mut s, "BEGIN"), Error::Invalid(_)));
    assert_eq!(
        s.status(),
        TxnStatus::InTransaction,
        "a nested BEGIN is refused; the transaction goes on"
    );
    assert_eq!(query(&mut s, "SELECT a FROM t"), ints(&[]));
    let e = error(&mut s, "INSERT INTO t VALUES (1)");
    assert_eq!(e.sqlstate(), "25006", "{e}");
    assert_eq!(s.status(), TxnStatus::Failed);
    run(&mut s, "ROLLBACK");
}

#[test]
fn sql_runs_under_two_phase_locking_too() {
    let engine = Arc::new(MemoryStorage::new());
    let options = pydb_txn::Options {
        concurrency: pydb_txn::Concurrency::Locking,
        lock_wait: pydb_txn::LockWait::Timeout(std::time::Duration::from_millis(50)),
        ..pydb_txn::Options::default()
    };
    let db = Database::new(Arc::new(TxnManager::open(engine, options).unwrap())).unwrap();
    let mut setup = db.session();
    run(
        &mut setup,
        "CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT UNIQUE); CREATE INDEX t_b ON t (b)",
    );
    let (mut a, mut b) = (db.session(), db.session());
    run(&mut a, "BEGIN; INSERT INTO t VALUES (1, 'x')");
    run(&mut b, "BEGIN; INSERT INTO t VALUES (2, 'y')");
    // The same key: b waits for a's exclusive lock and gives up.
    let e = error(&mut b, "INSERT INTO t VALUES (1, 'z')");
    assert_eq!(e.sqlstate(), "40001", "{e}");
    run(&mut a, "COMMIT");
    run(&mut b, "ROLLBACK");
    assert_eq!(query(&mut setup, "SELECT a FROM t"), ints(&[1]));
    assert!(crate::check::check(&db).unwrap().is_ok());
}

/// A tiny deterministic generator (xorshift), so a failing seed replays.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// One seed of the power-cut test: SQL transactions (inserts into a table
/// with a UNIQUE and a secondary index, updates that move index entries,
/// some rolled back) until a write torn at a random point fails a commit;
/// then the power is cut, the database reopened with plain files, and:
/// every acknowledged transaction is there, no rolled-back one, the
/// interrupted one all or nothing, and the verifier finds the indexes in
/// step with the table.
fn power_cut_seed(kind: pydb_storage::EngineKind, seed: u64) {
    use std::collections::BTreeMap;

    use pydb_file::{FaultyOpener, MonolithicOpener};
    use pydb_storage::{EngineConfig, open_engine_with};

    let dir = tempfile::tempdir().unwrap();
    // Every engine syncs every commit by default.
    let config = EngineConfig::new(kind);
    let options = || pydb_txn::Options {
        gc_interval: None,
        ..pydb_txn::Options::default()
    };
    let opener = FaultyOpener::new(MonolithicOpener, seed);
    let controller = opener.controller().clone();
    let engine = open_engine_with(dir.path(), opener, &config).unwrap();
    let db = Database::new(Arc::new(TxnManager::open(engine, options()).unwrap())).unwrap();
    let mut s = db.session();
    run(
        &mut s,
        "CREATE TABLE items (id INTEGER PRIMARY KEY, label TEXT UNIQUE, grp INTEGER); \
         CREATE INDEX items_grp ON items (grp)",
    );
    let mut rng = Rng(seed * 2654435761 + 1);
    controller.tear_nth_write(1 + rng.below(150));
    // id -> (label, grp) as acknowledged; and the interrupted transaction's.
    let mut acked: BTreeMap<i64, (String, i64)> = BTreeMap::new();
    let mut in_flight: BTreeMap<i64, (String, i64)> = BTreeMap::new();
    let mut next_id: i64 = 0;
    for txn in 0.. {
        let mut changes = BTreeMap::new();
        let mut sql = String::from("BEGIN;");
        for _ in 0..2 {
            next_id += 1;
            let row = (format!("l{next_id}"), next_id % 3);
            sql += &format!(
                "INSERT INTO items VALUES ({next_id}, '{}', {});",
                row.0, row.1
            );
            changes.insert(next_id, row);
        }
        if let Some((&id, old)) = acked.iter().nth(rng.below(acked.len() as u64 + 1) as usize) {
            let row = (format!("u{txn}"), old.1 + 3);
            sql += &format!(
                "UPDATE items SET label = '{}', grp = {} WHERE id = {id};",
                row.0, row.1
            );
            changes.insert(id, row);
        }
        let rollback = rng.below(4) == 0;
        let result = s
            .execute(&sql)
            .and_then(|_| s.execute(if rollback { "ROLLBACK" } else { "COMMIT" }));
        match result {
            Ok(_) if rollback => {}
            Ok(_) => acked.extend(changes),
            Err(_) => {
                in_flight = changes;
                break;
            }
        }
    }
    drop(s);
    drop(db);
    controller.power_cut().unwrap();

    let engine = open_engine_with(dir.path(), MonolithicOpener, &config).unwrap();
    let db = Database::new(Arc::new(TxnManager::open(engine, options()).unwrap())).unwrap();
    let context = format!("{kind:?}, seed {seed}");
    let report = crate::check::check(&db).unwrap();
    assert!(report.is_ok(), "{context}: {report:?}");
    let mut found = BTreeMap::new();
    for row in query(&mut db.session(), "SELECT id, label, grp FROM items") {
        match &row[..] {
            [Value::Integer(id), Value::Text(label), Value::Integer(grp)] => {
                found.insert(*id, (label.to_string(), *grp));
            }
            other => panic!("{context}: {other:?}"),
        }
    }
    let mut with_in_flight = acked.clone();
    with_in_flight.extend(in_flight.clone());
    assert!(
        found == acked || found == with_in_flight,
        "{context}: found {found:?}\nacknowledged {acked:?}\ninterrupted {in_flight:?}"
    );
}

#[test]
fn acknowledged_sql_transactions_survive_a_power_cut() {
    for seed in 1..=6 {
        power_cut_seed(pydb_storage::EngineKind::Log, seed);
        power_cut_seed(pydb_storage::EngineKind::BTree, seed);
    }
}

fn prepared_rows(s: &mut Session, p: &Prepared, params: &[Value]) -> Vec<Vec<Value>> {
    match s.execute_prepared(p, params).unwrap() {
        Output::Rows(Rows { rows, .. }) => rows,
        other => panic!("{other:?}"),
    }
}

/// An INSERT of one VALUES row is evaluated straight into the stored row
/// (`exec::single_values_row`): the columns' affinity still applies, a
/// subquery sees only the rows before it, OR REPLACE still replaces, and
/// a column list or several rows take the operator path to the same end.
#[test]
fn an_insert_of_one_values_row_stores_what_the_operator_path_stores() {
    let db = database();
    let mut s = db.session();
    run(
        &mut s,
        "CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER, r REAL, s TEXT)",
    );
    let insert = s.prepare("INSERT INTO t VALUES ($1, $2, $3, $4)").unwrap();
    s.execute_prepared(
        &insert,
        &[
            Value::Integer(1),
            Value::text("5"),
            Value::Integer(2),
            Value::Integer(7),
        ],
    )
    .unwrap();
    run(
        &mut s,
        "INSERT INTO t VALUES ((SELECT count(*) FROM t) + 10, 1, 1, 'a')",
    );
    run(&mut s, "INSERT OR REPLACE INTO t VALUES (1, '6', 3, 8)");
    run(&mut s, "INSERT INTO t (s, id) VALUES ('q', 20)");
    run(
        &mut s,
        "INSERT INTO t VALUES (30, '4', 0, 1), (31, 2, 0, 2)",
    );
    assert_eq!(
        query(&mut s, "SELECT * FROM t ORDER BY id"),
        vec![
            vec![
                Value::Integer(1),
                Value::Integer(6),
                Value::Real(3.0),
                Value::text("8")
            ],
            vec![
                Value::Integer(11),
                Value::Integer(1),
                Value::Real(1.0),
                Value::text("a")
            ],
            vec![
                Value::Integer(20),
                Value::Null,
                Value::Null,
                Value::text("q")
            ],
            vec![
                Value::Integer(30),
                Value::Integer(4),
                Value::Real(0.0),
                Value::text("1")
            ],
            vec![
                Value::Integer(31),
                Value::Integer(2),
                Value::Real(0.0),
                Value::text("2")
            ],
        ]
    );
    // A duplicate key is refused on this path too.
    let dup = s.execute_prepared(
        &insert,
        &[
            Value::Integer(1),
            Value::Integer(0),
            Value::Integer(0),
            Value::text("x"),
        ],
    );
    assert!(dup.is_err());
}

#[test]
fn prepared_statements_run_again_with_new_values() {
    let db = database();
    let mut s = db.session();
    run(&mut s, "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)");
    let insert = s.prepare("INSERT INTO t VALUES (?, ?)").unwrap();
    run(&mut s, "BEGIN");
    for (id, name) in [(1, "a"), (2, "b"), (3, "c")] {
        s.execute_prepared(&insert, &[Value::Integer(id), Value::text(name)])
            .unwrap();
    }
    run(&mut s, "COMMIT");
    let select = s.prepare("SELECT name FROM t WHERE id = $1").unwrap();
    assert_eq!(
        prepared_rows(&mut s, &select, &[Value::Integer(2)]),
        vec![vec![Value::text("b")]]
    );
    assert_eq!(
        prepared_rows(&mut s, &select, &[Value::Integer(3)]),
        vec![vec![Value::text("c")]]
    );
    assert!(prepared_rows(&mut s, &select, &[Value::Integer(9)]).is_empty());
    let update = s.prepare("UPDATE t SET name = $2 WHERE id = $1").unwrap();
    s.execute_prepared(&update, &[Value::Integer(1), Value::text("z")])
        .unwrap();
    assert_eq!(
        query(&mut s, "SELECT name FROM t ORDER BY id"),
        vec![
            vec![Value::text("z")],
            vec![Value::text("b")],
            vec![Value::text("c")]
        ]
    );
    // A missing value fails when the statement needs it.
    assert!(s.execute_prepared(&select, &[]).is_err());
    // One statement per prepared statement.
    assert!(s.prepare("SELECT 1; SELECT 2").is_err());
}

#[test]
fn prepared_statement_parameters_are_planned_as_literals() {
    let db = database();
    let mut s = db.session();
    run(&mut s, "CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)");
    run(&mut s, "INSERT INTO t VALUES (1, 10), (2, 20)");
    let explain = s.prepare("EXPLAIN SELECT v FROM t WHERE id = $1").unwrap();
    let lines: Vec<String> = prepared_rows(&mut s, &explain, &[Value::Integer(2)])
        .into_iter()
        .map(|row| match &row[0] {
            Value::Text(t) => t.to_string(),
            other => panic!("{other:?}"),
        })
        .collect();
    let plan = lines.join("\n");
    assert!(plan.contains("Primary Key Lookup on t"), "{plan}");
    assert!(plan.contains("t.id = 2"), "{plan}");
    assert!(!plan.contains("Seq Scan"), "{plan}");
}

#[test]
fn catalog_cache_is_used_only_at_the_snapshot_it_was_checked_at() {
    let db = database();
    let (mut s1, mut s2, mut s3) = (db.session(), db.session(), db.session());
    run(&mut s2, "CREATE TABLE a (x INTEGER)");
    assert!(query(&mut s3, "SELECT * FROM a").is_empty());
    run(&mut s1, "BEGIN READ ONLY");
    run(&mut s2, "CREATE TABLE b (x INTEGER)");
    // s3 checks and caches the catalog at the newer snapshot.
    assert!(query(&mut s3, "SELECT * FROM b").is_empty());
    assert!(query(&mut s3, "SELECT * FROM b").is_empty());
    // s1's snapshot is older: it must not take that catalog.
    assert!(matches!(
        error(&mut s1, "SELECT * FROM b"),
        Error::Undefined { .. }
    ));
    run(&mut s1, "ROLLBACK");
    assert!(query(&mut s1, "SELECT * FROM b").is_empty());
}

// ---- the plan cache of prepared statements (exec/prepared.rs) ----

fn lines(s: &mut Session, sql: &str) -> String {
    query(s, sql)
        .into_iter()
        .map(|row| match &row[0] {
            Value::Text(t) => t.to_string(),
            other => panic!("{other:?}"),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_point_select_keeps_its_generic_plan_across_values() {
    let db = database();
    let mut s = db.session();
    run(&mut s, "CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)");
    run(&mut s, "INSERT INTO t VALUES (1, 10), (2, 20), (3, 30)");
    let select = s.prepare("SELECT v FROM t WHERE id = $1").unwrap();
    for (id, v) in [(1, 10), (3, 30), (2, 20), (1, 10)] {
        assert_eq!(
            prepared_rows(&mut s, &select, &[Value::Integer(id)]),
            ints(&[v])
        );
    }
    assert!(prepared_rows(&mut s, &select, &[Value::Integer(7)]).is_empty());
    assert!(select.plan_cache().holds_generic_plan());
    assert_eq!(select.plan_cache().plans_made(), 1);
    // Writes are no catalog change: the plan stays, and sees them.
    run(&mut s, "UPDATE t SET v = 11 WHERE id = 1");
    run(&mut s, "INSERT INTO t VALUES (7, 70)");
    assert_eq!(
        prepared_rows(&mut s, &select, &[Value::Integer(1)]),
        ints(&[11])
    );
    assert_eq!(
        prepared_rows(&mut s, &select, &[Value::Integer(7)]),
        ints(&[70])
    );
    assert_eq!(select.plan_cache().plans_made(), 1);
}

#[test]
fn a_cached_plan_is_made_again_after_ddl_and_never_returns_stale_rows() {
    let db = database();
    let mut s = db.session();
    run(&mut s, "CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)");
    run(&mut s, "INSERT INTO t VALUES (1, 10), (2, 20)");
    let select = s.prepare("SELECT * FROM t WHERE id = $1").unwrap();
    let by_v = s.prepare("SELECT id FROM t WHERE v = $1").unwrap();
    assert_eq!(
        prepared_rows(&mut s, &select, &[Value::Integer(2)]),
        vec![vec![Value::Integer(2), Value::Integer(20)]]
    );
    assert_eq!(
        prepared_rows(&mut s, &by_v, &[Value::Integer(20)]),
        ints(&[2])
    );
    let made = select.plan_cache().plans_made();

    // CREATE INDEX: planned again (and the new index may be used).
    run(&mut s, "CREATE INDEX t_v ON t (v)");
    assert_eq!(
        prepared_rows(&mut s, &by_v, &[Value::Integer(10)]),
        ints(&[1])
    );
    assert_eq!(
        prepared_rows(&mut s, &select, &[Value::Integer(1)]).len(),
        1
    );
    assert_eq!(select.plan_cache().plans_made(), made + 1);
    // DROP INDEX: the plan that read the index is not run again.
    run(&mut s, "DROP INDEX t_v");
    assert_eq!(
        prepared_rows(&mut s, &by_v, &[Value::Integer(20)]),
        ints(&[2])
    );

    // DROP TABLE and a new table of the same name with other columns: the
    // statement sees the new table, not the old definition.
    run(&mut s, "DROP TABLE t");
    assert!(matches!(
        s.execute_prepared(&select, &[Value::Integer(1)]),
        Err(Error::Undefined { .. })
    ));
    run(
        &mut s,
        "CREATE TABLE t (id INTEGER PRIMARY KEY, w TEXT, v INTEGER)",
    );
    run(&mut s, "INSERT INTO t VALUES (1, 'one', 100)");
    assert_eq!(
        prepared_rows(&mut s, &select, &[Value::Integer(1)]),
        vec![vec![
            Value::Integer(1),
            Value::text("one"),
            Value::Integer(100)
        ]]
    );
    assert_eq!(
        prepared_rows(&mut s, &by_v, &[Value::Integer(100)]),
        ints(&[1])
    );
    assert!(prepared_rows(&mut s, &by_v, &[Value::Integer(10)]).is_empty());

    // ANALYZE changes the catalog (statistics) too.
    let before = select.plan_cache().plans_made();
    run(&mut s, "ANALYZE t");
    assert_eq!(
        prepared_rows(&mut s, &select, &[Value::Integer(1)]).len(),
        1
    );
    assert_eq!(select.plan_cache().plans_made(), before + 1);
}

#[test]
fn ddl_inside_the_transaction_is_seen_by_a_cached_plan() {
    let db = database();
    let mut s = db.session();
    run(&mut s, "CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)");
    run(&mut s, "INSERT INTO t VALUES (1, 10)");
    let select = s.prepare("SELECT * FROM t WHERE id = $1").unwrap();
    assert_eq!(
        prepared_rows(&mut s, &select, &[Value::Integer(1)]).len(),
        1
    );
    run(&mut s, "BEGIN");
    run(&mut s, "DROP TABLE t");
    run(
        &mut s,
        "CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT, b TEXT)",
    );
    run(&mut s, "INSERT INTO t VALUES (1, 'x', 'y')");
    assert_eq!(
        prepared_rows(&mut s, &select, &[Value::Integer(1)]),
        vec![vec![Value::Integer(1), Value::text("x"), Value::text("y")]]
    );
    run(&mut s, "ROLLBACK");
    // The rolled-back catalog's plan is not used after the rollback.
    assert_eq!(
        prepared_rows(&mut s, &select, &[Value::Integer(1)]),
        vec![vec![Value::Integer(1), Value::Integer(10)]]
    );
}

#[test]
fn parameters_of_every_type_give_the_rows_a_custom_plan_gives() {
    let db = database();
    let mut s = db.session();
    run(
        &mut s,
        "CREATE TABLE i (k INTEGER PRIMARY KEY, v TEXT);
         CREATE TABLE r (k REAL PRIMARY KEY, v TEXT);
         CREATE TABLE t (k TEXT PRIMARY KEY, v TEXT);
         CREATE TABLE b (k BOOLEAN PRIMARY KEY, v TEXT);
         INSERT INTO i VALUES (2, 'i2');
         INSERT INTO r VALUES (2.5, 'r2.5'), (2.0, 'r2');
         INSERT INTO t VALUES ('2', 't2'), ('x', 'tx');
         INSERT INTO b VALUES (TRUE, 'btrue')",
    );
    let values = [
        Value::Integer(2),
        Value::Real(2.0),
        Value::Real(2.5),
        Value::text("2"),
        Value::text("x"),
        Value::Boolean(true),
        Value::Null,
    ];
    for table in ["i", "r", "t", "b"] {
        let sql = format!("SELECT v FROM {table} WHERE k = $1");
        let prepared = s.prepare(&sql).unwrap();
        // Every value twice, in an order that changes types between runs:
        // each answer must be what the same statement with the value
        // written in gives.
        for v in values.iter().chain(values.iter().rev()) {
            let literal = match v {
                Value::Text(t) => format!("'{t}'"),
                Value::Null => "NULL".into(),
                other => other.to_string(),
            };
            let expected = query(&mut s, &sql.replace("$1", &literal));
            assert_eq!(
                prepared_rows(&mut s, &prepared, std::slice::from_ref(v)),
                expected,
                "{sql} with {v:?}"
            );
        }
    }
}

/// A point read encodes its row key straight from the parameters: on a
/// two-column key, each column's value lands in its place, and a NULL in
/// either one finds nothing (`k = NULL` is never true).
#[test]
fn a_point_select_on_a_two_column_key_reads_each_value_and_refuses_null() {
    let db = database();
    let mut s = db.session();
    run(
        &mut s,
        "CREATE TABLE t (a INTEGER, b TEXT, v TEXT, PRIMARY KEY (a, b));
         INSERT INTO t VALUES (1, 'x', '1x'), (1, 'y', '1y'), (2, 'x', '2x')",
    );
    let select = s
        .prepare("SELECT v FROM t WHERE a = $1 AND b = $2")
        .unwrap();
    let cases = [
        (
            Value::Integer(1),
            Value::text("y"),
            vec![vec![Value::text("1y")]],
        ),
        (
            Value::Integer(2),
            Value::text("x"),
            vec![vec![Value::text("2x")]],
        ),
        (Value::Integer(2), Value::text("y"), vec![]),
        (Value::Integer(1), Value::Null, vec![]),
        (Value::Null, Value::text("x"), vec![]),
        (
            Value::Integer(1),
            Value::text("x"),
            vec![vec![Value::text("1x")]],
        ),
    ];
    for (a, b, expected) in cases {
        assert_eq!(
            prepared_rows(&mut s, &select, &[a.clone(), b.clone()]),
            expected,
            "a = {a:?}, b = {b:?}"
        );
    }
}

#[test]
fn a_range_statement_stays_custom_and_uses_its_index() {
    let db = database();
    let mut s = db.session();
    run(&mut s, "CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)");
    run(&mut s, "CREATE INDEX t_v ON t (v)");
    run(&mut s, "INSERT INTO t VALUES (1, 10), (2, 20), (3, 30)");
    let range = s
        .prepare("SELECT id FROM t WHERE v BETWEEN $1 AND $2 ORDER BY id")
        .unwrap();
    assert_eq!(
        prepared_rows(&mut s, &range, &[Value::Integer(15), Value::Integer(30)]),
        ints(&[2, 3])
    );
    assert_eq!(
        prepared_rows(&mut s, &range, &[Value::Integer(0), Value::Integer(10)]),
        ints(&[1])
    );
    // The generic plan would scan the table (its range is unknown): the
    // statement is planned with its values at each execution instead.
    assert!(!range.plan_cache().holds_generic_plan());
    let plan = lines(&mut s, "EXPLAIN SELECT id FROM t WHERE v BETWEEN 15 AND 30");
    assert!(plan.contains("Scan using t_v"), "{plan}");
}

#[test]
fn prepared_writes_keep_their_plans_and_their_constraints() {
    let db = database();
    let mut s = db.session();
    run(
        &mut s,
        "CREATE TABLE t (id INTEGER PRIMARY KEY, n TEXT UNIQUE)",
    );
    let insert = s.prepare("INSERT INTO t VALUES ($1, $2)").unwrap();
    let update = s
        .prepare("UPDATE t SET n = n || '+' WHERE id = $1")
        .unwrap();
    let rename = s.prepare("UPDATE t SET n = $2 WHERE id = $1").unwrap();
    let delete = s.prepare("DELETE FROM t WHERE id = $1").unwrap();
    for id in 1..=3 {
        s.execute_prepared(
            &insert,
            &[Value::Integer(id), Value::text(&format!("n{id}"))],
        )
        .unwrap();
    }
    // Constraints are checked at every execution of a kept plan.
    let dup = s.execute_prepared(&insert, &[Value::Integer(1), Value::text("other")]);
    assert!(dup.is_err());
    let dup = s.execute_prepared(&insert, &[Value::Integer(9), Value::text("n2")]);
    assert!(dup.is_err());
    s.execute_prepared(&update, &[Value::Integer(2)]).unwrap();
    s.execute_prepared(&update, &[Value::Integer(2)]).unwrap();
    s.execute_prepared(&rename, &[Value::Integer(1), Value::text("m1")])
        .unwrap();
    s.execute_prepared(&delete, &[Value::Integer(3)]).unwrap();
    s.execute_prepared(&delete, &[Value::Integer(3)]).unwrap();
    assert_eq!(
        query(&mut s, "SELECT id, n FROM t ORDER BY id"),
        vec![
            vec![Value::Integer(1), Value::text("m1")],
            vec![Value::Integer(2), Value::text("n2++")],
        ]
    );
    assert!(insert.plan_cache().holds_generic_plan());
    assert!(update.plan_cache().holds_generic_plan());
    assert!(delete.plan_cache().holds_generic_plan());
    // A text value is planned with each execution (see `plan_generic`).
    assert!(!rename.plan_cache().holds_generic_plan());
    assert_eq!(update.plan_cache().plans_made(), 1);
    // The kept UPDATE plan is a primary-key lookup, not a scan: it is the
    // plan the values would have chosen.
    let plan = lines(&mut s, "EXPLAIN UPDATE t SET n = 'q' WHERE id = 2");
    assert!(plan.contains("Primary Key Lookup"), "{plan}");
}

// ---- autocommit point selects without a transaction (session.rs) ----

/// Transactions begun so far by `db`'s manager.
fn begun(db: &Database) -> u64 {
    db.txn_manager().stats().begun
}

#[test]
fn an_autocommit_point_select_begins_no_transaction() {
    let db = database();
    let mut s = db.session();
    run(
        &mut s,
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, n INTEGER)",
    );
    run(&mut s, "INSERT INTO t VALUES (1, 'a', 10), (2, 'b', 20)");
    let select = s.prepare("SELECT n, v, id FROM t WHERE id = $1").unwrap();
    let all = s.prepare("SELECT * FROM t WHERE id = $1").unwrap();
    // The first executions plan, in a transaction each.
    prepared_rows(&mut s, &select, &[Value::Integer(1)]);
    prepared_rows(&mut s, &all, &[Value::Integer(1)]);
    let before = begun(&db);
    assert_eq!(
        prepared_rows(&mut s, &select, &[Value::Integer(2)]),
        vec![vec![
            Value::Integer(20),
            Value::text("b"),
            Value::Integer(2)
        ]]
    );
    assert_eq!(
        prepared_rows(&mut s, &all, &[Value::Integer(1)]),
        vec![vec![
            Value::Integer(1),
            Value::text("a"),
            Value::Integer(10)
        ]]
    );
    assert!(prepared_rows(&mut s, &select, &[Value::Integer(3)]).is_empty());
    // Another session's commit is seen by the next read.
    let mut w = db.session();
    run(&mut w, "UPDATE t SET n = 21 WHERE id = 2");
    let after_write = begun(&db);
    assert_eq!(
        prepared_rows(&mut s, &select, &[Value::Integer(2)]),
        vec![vec![
            Value::Integer(21),
            Value::text("b"),
            Value::Integer(2)
        ]]
    );
    assert_eq!(after_write - before, 1, "only the UPDATE began one");
    assert_eq!(begun(&db), after_write, "the point selects began none");
    // The columns are the statement's, one list shared by every
    // execution (not copied per row read).
    let columns = |s: &mut Session| match s.execute_prepared(&select, &[Value::Integer(1)]) {
        Ok(Output::Rows(Rows { columns, .. })) => columns,
        other => panic!("{other:?}"),
    };
    let (first, second) = (columns(&mut s), columns(&mut s));
    let names: Vec<&str> = first.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["n", "v", "id"]);
    assert!(Arc::ptr_eq(&first, &second));
}

/// One execution of `p` with key `id`, handed back to the session with
/// [`Session::recycle`] once read: its column names and rows.
fn recycled_read(s: &mut Session, p: &Prepared, id: i64) -> (Vec<String>, Vec<Vec<Value>>) {
    let out = s.execute_prepared(p, &[Value::Integer(id)]).unwrap();
    let Output::Rows(r) = &out else {
        panic!("{out:?}")
    };
    let read = (
        r.columns.iter().map(|c| c.name.clone()).collect(),
        r.rows.clone(),
    );
    s.recycle(out);
    read
}

#[test]
fn a_recycled_output_never_shows_through_the_next_point_select() {
    let db = database();
    let mut s = db.session();
    run(
        &mut s,
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, n INTEGER, w TEXT)",
    );
    run(
        &mut s,
        "INSERT INTO t VALUES (1, 'aa', 10, 'x'), (2, 'bb', 20, NULL), (3, 'aa', NULL, 'zz')",
    );
    let all = s.prepare("SELECT * FROM t WHERE id = $1").unwrap();
    let some = s.prepare("SELECT n, v FROM t WHERE id = $1").unwrap();
    let (i, t, null) = (Value::Integer, Value::text, Value::Null);
    let all_names = ["id", "v", "n", "w"].map(String::from).to_vec();
    let some_names = ["n", "v"].map(String::from).to_vec();
    // Each output is handed back before the next statement, which must
    // show nothing of it: another row (a text of the same length, NULLs
    // where values were), no row, another statement's columns.
    let reads = [
        (
            &all,
            1,
            &all_names,
            vec![vec![i(1), t("aa"), i(10), t("x")]],
        ),
        (
            &all,
            2,
            &all_names,
            vec![vec![i(2), t("bb"), i(20), null.clone()]],
        ),
        (
            &all,
            3,
            &all_names,
            vec![vec![i(3), t("aa"), null.clone(), t("zz")]],
        ),
        (&all, 4, &all_names, vec![]),
        (
            &all,
            1,
            &all_names,
            vec![vec![i(1), t("aa"), i(10), t("x")]],
        ),
        (&some, 2, &some_names, vec![vec![i(20), t("bb")]]),
        (&some, 3, &some_names, vec![vec![null.clone(), t("aa")]]),
        (&some, 1, &some_names, vec![vec![i(10), t("aa")]]),
        (
            &all,
            2,
            &all_names,
            vec![vec![i(2), t("bb"), i(20), null.clone()]],
        ),
    ];
    for (round, (p, id, names, rows)) in reads.into_iter().enumerate() {
        assert_eq!(
            recycled_read(&mut s, p, id),
            (names.clone(), rows),
            "read {round}"
        );
    }
    // Outputs of any other kind may be handed back too.
    let big = run(&mut s, "SELECT * FROM t").pop().unwrap();
    s.recycle(big);
    assert_eq!(
        recycled_read(&mut s, &some, 2),
        (some_names.clone(), vec![vec![i(20), t("bb")]])
    );
    s.recycle(Output::Done("BEGIN"));
    assert_eq!(
        recycled_read(&mut s, &all, 3),
        (all_names, vec![vec![i(3), t("aa"), null, t("zz")]])
    );
}

#[test]
fn a_point_select_inside_begin_keeps_its_snapshot() {
    let db = database().with_isolation(pydb_txn::Isolation::Snapshot);
    let mut s = db.session();
    let mut w = db.session();
    run(&mut s, "CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)");
    run(&mut s, "INSERT INTO t VALUES (1, 1)");
    let select = s.prepare("SELECT v FROM t WHERE id = $1").unwrap();
    assert_eq!(
        prepared_rows(&mut s, &select, &[Value::Integer(1)]),
        ints(&[1])
    );
    run(&mut s, "BEGIN");
    assert_eq!(
        prepared_rows(&mut s, &select, &[Value::Integer(1)]),
        ints(&[1])
    );
    run(&mut w, "UPDATE t SET v = 2 WHERE id = 1");
    assert_eq!(
        prepared_rows(&mut s, &select, &[Value::Integer(1)]),
        ints(&[1])
    );
    run(&mut s, "COMMIT");
    assert_eq!(
        prepared_rows(&mut s, &select, &[Value::Integer(1)]),
        ints(&[2])
    );
}

#[test]
fn a_point_select_follows_another_sessions_ddl() {
    let db = database();
    let mut s = db.session();
    let mut w = db.session();
    run(&mut s, "CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)");
    run(&mut s, "INSERT INTO t VALUES (1, 1)");
    let select = s.prepare("SELECT * FROM t WHERE id = $1").unwrap();
    for _ in 0..2 {
        assert_eq!(
            prepared_rows(&mut s, &select, &[Value::Integer(1)]),
            vec![vec![Value::Integer(1), Value::Integer(1)]]
        );
    }
    run(&mut w, "DROP TABLE t");
    assert!(s.execute_prepared(&select, &[Value::Integer(1)]).is_err());
    run(
        &mut w,
        "CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT, b INTEGER)",
    );
    run(&mut w, "INSERT INTO t VALUES (1, 'x', 7)");
    for _ in 0..2 {
        assert_eq!(
            prepared_rows(&mut s, &select, &[Value::Integer(1)]),
            vec![vec![Value::Integer(1), Value::text("x"), Value::Integer(7)]]
        );
    }
}

#[test]
fn a_point_select_never_sees_half_a_commit_or_an_uncommitted_write() {
    // A writer moves two rows forward together in each transaction, and
    // writes a negative value that it rolls back in between; a reader
    // reads one row, then the other, with autocommit point selects. Row 2
    // read after row 1 is never behind it (it would be if a commit could
    // be seen half-way), and no negative value is ever seen.
    const ROUNDS: i64 = 300;
    let db = database();
    let mut s = db.session();
    run(&mut s, "CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)");
    run(&mut s, "INSERT INTO t VALUES (1, 0), (2, 0)");
    let writer = {
        let db = db.clone();
        std::thread::spawn(move || {
            let mut w = db.session();
            for i in 1..=ROUNDS {
                run(&mut w, "BEGIN");
                run(&mut w, "UPDATE t SET v = -1 WHERE id = 1");
                run(&mut w, "ROLLBACK");
                run(&mut w, "BEGIN");
                run(&mut w, &format!("UPDATE t SET v = {i} WHERE id = 1"));
                run(&mut w, &format!("UPDATE t SET v = {i} WHERE id = 2"));
                run(&mut w, "COMMIT");
            }
        })
    };
    let select = s.prepare("SELECT v FROM t WHERE id = $1").unwrap();
    let read = |s: &mut Session, id: i64| match prepared_rows(s, &select, &[Value::Integer(id)])
        .as_slice()
    {
        [row] => match row.as_slice() {
            [Value::Integer(v)] => *v,
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    };
    let mut last = 0;
    loop {
        let first = read(&mut s, 1);
        let second = read(&mut s, 2);
        assert!(
            first >= 0 && second >= 0,
            "an uncommitted write: {first}, {second}"
        );
        assert!(
            second >= first,
            "half a commit: row 1 at {first}, row 2 at {second}"
        );
        assert!(first >= last, "time went back: {last}, then {first}");
        last = first;
        // A writer that failed ends the loop too (its panic is raised by
        // the join below), rather than leave the reader waiting.
        if second == ROUNDS || writer.is_finished() {
            break;
        }
    }
    writer.join().unwrap();
    assert_eq!(read(&mut s, 1), ROUNDS);
}
