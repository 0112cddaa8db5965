//! Join planning end to end: queries whose joins the planner reorders and
//! runs by different methods give SQLite's rows.
//!
//! Every query runs on pydb and on SQLite (rusqlite) over the same data;
//! the rows are compared as sorted lists of integers. EXPLAIN checks that
//! the plan under test is the one meant (a merge join, no cross product).

use pydb_query::{Output, Session, Value};

fn open() -> (tempfile::TempDir, Session, rusqlite::Connection) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let database = pydb_query::slt::open_database("memory", dir.path()).expect("open pydb");
    let session = database.session();
    let sqlite = rusqlite::Connection::open_in_memory().expect("open SQLite");
    (dir, session, sqlite)
}

fn both(session: &mut Session, sqlite: &rusqlite::Connection, sql: &str) {
    session
        .execute(sql)
        .unwrap_or_else(|e| panic!("pydb refused {sql}: {e}"));
    sqlite
        .execute_batch(sql)
        .unwrap_or_else(|e| panic!("SQLite refused {sql}: {e}"));
}

/// The rows as integers (NULL as `None`), sorted.
fn pydb_rows(session: &mut Session, sql: &str) -> Vec<Vec<Option<i64>>> {
    let out = session
        .execute(sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .pop();
    let Some(Output::Rows(rows)) = out else {
        panic!("{sql}: no rows");
    };
    let mut rows: Vec<Vec<Option<i64>>> = rows
        .rows
        .iter()
        .map(|r| {
            r.iter()
                .map(|v| match v {
                    Value::Null => None,
                    Value::Integer(i) => Some(*i),
                    other => panic!("{sql}: not an integer: {other:?}"),
                })
                .collect()
        })
        .collect();
    rows.sort();
    rows
}

fn sqlite_rows(sqlite: &rusqlite::Connection, sql: &str) -> Vec<Vec<Option<i64>>> {
    let mut stmt = sqlite.prepare(sql).expect("SQLite prepares");
    let n = stmt.column_count();
    let mut rows: Vec<Vec<Option<i64>>> = stmt
        .query_map([], |row| {
            (0..n).map(|i| row.get::<_, Option<i64>>(i)).collect()
        })
        .expect("SQLite runs")
        .map(|r| r.expect("a row"))
        .collect();
    rows.sort();
    rows
}

fn explain(session: &mut Session, sql: &str) -> String {
    let out = session
        .execute(&format!("EXPLAIN {sql}"))
        .unwrap_or_else(|e| panic!("EXPLAIN {sql}: {e}"))
        .pop();
    let Some(Output::Rows(rows)) = out else {
        panic!("EXPLAIN {sql}: no rows");
    };
    rows.rows
        .iter()
        .map(|r| {
            r.iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn agree(session: &mut Session, sqlite: &rusqlite::Connection, sql: &str) -> usize {
    let ours = pydb_rows(session, sql);
    let theirs = sqlite_rows(sqlite, sql);
    assert_eq!(ours, theirs, "{sql}\nplan:\n{}", explain(session, sql));
    ours.len()
}

#[test]
fn fourteen_table_chain_agrees_with_sqlite() {
    let (_dir, mut session, sqlite) = open();
    let n = 14;
    for i in 0..n {
        both(
            &mut session,
            &sqlite,
            &format!("CREATE TABLE t{i}(a INTEGER, b INTEGER)"),
        );
        // Table i: a in 0..6, b = (a * (i + 1)) % 5, one NULL row.
        let rows: Vec<String> = (0..6)
            .map(|a| format!("({a}, {})", (a * (i + 1)) % 5))
            .chain(["(NULL, 1)".to_string()])
            .collect();
        both(
            &mut session,
            &sqlite,
            &format!("INSERT INTO t{i} VALUES {}", rows.join(", ")),
        );
    }
    // Listed out of order: evens then odds; linked t_i.b = t_{i+1}.a.
    let from: Vec<String> = (0..n)
        .step_by(2)
        .chain((1..n).step_by(2))
        .map(|i| format!("t{i}"))
        .collect();
    let terms: Vec<String> = (0..n - 1)
        .map(|i| format!("t{i}.b = t{}.a", i + 1))
        .collect();
    let sql = format!(
        "SELECT t0.a, t{}.b FROM {} WHERE {}",
        n - 1,
        from.join(", "),
        terms.join(" AND ")
    );
    let plan = explain(&mut session, &sql);
    assert!(!plan.contains("Nested Loop"), "{plan}");
    assert!(agree(&mut session, &sqlite, &sql) > 0);
    let count = format!(
        "SELECT count(*) FROM {} WHERE {}",
        from.join(", "),
        terms.join(" AND ")
    );
    agree(&mut session, &sqlite, &count);
}

#[test]
fn merge_join_on_primary_key_order_agrees_with_sqlite() {
    let (_dir, mut session, sqlite) = open();
    both(
        &mut session,
        &sqlite,
        "CREATE TABLE p(id INTEGER, v INTEGER, PRIMARY KEY (id, v));
         CREATE TABLE q(id INTEGER, k INTEGER, w INTEGER, PRIMARY KEY (id, k));",
    );
    for i in 0..40 {
        both(
            &mut session,
            &sqlite,
            &format!(
                "INSERT INTO p VALUES ({}, {i}); INSERT INTO q VALUES ({}, {i}, {});",
                i % 7,
                (i * 3) % 11,
                i % 4
            ),
        );
    }
    for sql in [
        "SELECT p.id, p.v, q.k, q.w FROM p JOIN q ON p.id = q.id",
        "SELECT p.id, p.v, q.k FROM p JOIN q ON p.id = q.id AND p.v < q.k",
        "SELECT p.id, p.v, q.k FROM p LEFT JOIN q ON p.id = q.id AND q.w = 1",
        "SELECT p.id, q.k FROM p, q WHERE q.id = p.id AND q.w > 1",
    ] {
        let plan = explain(&mut session, sql);
        assert!(plan.starts_with("Merge "), "{sql}\n{plan}");
        assert!(!plan.contains("Sort"), "{sql}\n{plan}");
        assert!(agree(&mut session, &sqlite, sql) > 0, "{sql}");
    }
}

#[test]
fn star_and_chain_joins_agree_with_sqlite() {
    let (_dir, mut session, sqlite) = open();
    both(
        &mut session,
        &sqlite,
        "CREATE TABLE f(d1 INTEGER, d2 INTEGER, d3 INTEGER, v INTEGER);
         CREATE INDEX f_d1 ON f(d1);
         CREATE TABLE d1(id INTEGER PRIMARY KEY, x INTEGER);
         CREATE TABLE d2(id INTEGER PRIMARY KEY, x INTEGER);
         CREATE TABLE d3(id INTEGER, x INTEGER);",
    );
    for i in 0..60 {
        both(
            &mut session,
            &sqlite,
            &format!(
                "INSERT INTO f VALUES ({}, {}, {}, {i})",
                i % 5,
                i % 9,
                if i % 13 == 0 {
                    "NULL".to_string()
                } else {
                    (i % 4).to_string()
                }
            ),
        );
    }
    for i in 0..9 {
        both(
            &mut session,
            &sqlite,
            &format!(
                "INSERT INTO d1 VALUES ({i}, {}); INSERT INTO d2 VALUES ({i}, {}); INSERT INTO d3 VALUES ({}, {i});",
                i % 2,
                i % 3,
                i % 4
            ),
        );
    }
    for sql in [
        "SELECT f.v, d1.x, d2.x, d3.x FROM d3, d2, f, d1 WHERE f.d1 = d1.id AND f.d2 = d2.id AND f.d3 = d3.id",
        "SELECT f.v, d2.x FROM d2, d1, f WHERE f.d1 = d1.id AND f.d2 = d2.id AND d1.x = 1",
        "SELECT d1.id, d2.id, d3.id FROM d1, d2, d3 WHERE d1.x = d2.x AND d2.id = d3.id",
        "SELECT f.v, d3.x FROM f LEFT JOIN d3 ON f.d3 = d3.id, d1 WHERE f.d1 = d1.id",
        "SELECT count(*) FROM d1, d2 WHERE d1.x < d2.x",
    ] {
        agree(&mut session, &sqlite, sql);
    }
}
