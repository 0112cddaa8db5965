//! Executor tests: SQL in, rows out, over the memory engine.

use std::sync::Arc;

use crate::error::Error;
use crate::output::Output;
use crate::session::{Database, Session};
use crate::value::Row;

fn session() -> Session {
    let dir = tempfile::tempdir().unwrap();
    let config = pydb_storage::EngineConfig::from_name("memory").unwrap();
    let engine = pydb_storage::open_engine(dir.path(), &config).unwrap();
    let mgr = pydb_txn::TxnManager::open(engine, pydb_txn::Options::default()).unwrap();
    Database::new(Arc::new(mgr)).unwrap().session()
}

fn rows(s: &mut Session, sql: &str) -> Vec<Row> {
    match s.execute(sql).unwrap().pop().unwrap() {
        Output::Rows(r) => r.rows,
        other => panic!("{sql}: expected rows, got {other:?}"),
    }
}

/// The rows printed as one string per row, values joined by spaces.
fn text(s: &mut Session, sql: &str) -> Vec<String> {
    rows(s, sql)
        .iter()
        .map(|r| {
            r.iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// The optimized plan in the compact notation of `Plan::explain` (operator
/// names as the plan enum spells them: `HashJoin`, `IndexScan`, ...).
fn plan(s: &mut Session, sql: &str) -> String {
    s.compact_plan(sql).unwrap().join("\n")
}

fn err(s: &mut Session, sql: &str) -> Error {
    match s.execute(sql) {
        Err(e) => e,
        Ok(out) => panic!("{sql}: expected an error, got {out:?}"),
    }
}

fn t1(s: &mut Session) {
    s.execute(
        "CREATE TABLE t1(a INTEGER, b INTEGER, c TEXT);
         INSERT INTO t1 VALUES (1, 10, 'x'), (2, 20, 'y'), (3, NULL, 'x'), (4, 40, NULL);",
    )
    .unwrap();
}

#[test]
fn selects_filter_project_and_sort_with_nulls() {
    let mut s = session();
    t1(&mut s);
    assert_eq!(
        text(&mut s, "SELECT a, b*2 FROM t1 WHERE b > 10 ORDER BY a DESC"),
        ["4 80", "2 40"]
    );
    assert_eq!(
        text(&mut s, "SELECT b FROM t1 ORDER BY b"),
        ["NULL", "10", "20", "40"]
    );
    assert_eq!(
        text(&mut s, "SELECT b FROM t1 ORDER BY b DESC"),
        ["40", "20", "10", "NULL"]
    );
    assert_eq!(
        text(&mut s, "SELECT a FROM t1 ORDER BY c, a LIMIT 2 OFFSET 1"),
        ["1", "3"]
    );
    assert_eq!(
        text(&mut s, "SELECT a AS z FROM t1 ORDER BY z DESC LIMIT 1"),
        ["4"]
    );
    // NULL sorts first ascending, so the row without b comes first.
    assert_eq!(text(&mut s, "SELECT a FROM t1 ORDER BY -b LIMIT 1"), ["3"]);
    assert_eq!(
        text(
            &mut s,
            "SELECT a FROM t1 WHERE b IS NOT NULL ORDER BY -b LIMIT 1"
        ),
        ["4"]
    );
    assert_eq!(
        text(&mut s, "SELECT 7/2, 7.0/2, 1/0, '3'+4, 2 > 1"),
        ["3 3.5 NULL 7 1"]
    );
    assert_eq!(
        text(&mut s, "SELECT DISTINCT c FROM t1 ORDER BY 1"),
        ["NULL", "x", "y"]
    );
    assert_eq!(
        text(
            &mut s,
            "SELECT a FROM t1 WHERE c IS NULL OR b IS NULL ORDER BY a"
        ),
        ["3", "4"]
    );
    assert_eq!(
        text(&mut s, "SELECT a FROM t1 WHERE b IN (10, 40) ORDER BY a"),
        ["1", "4"]
    );
    assert!(text(&mut s, "SELECT a FROM t1 WHERE b NOT IN (10, NULL)").is_empty());
}

#[test]
fn aggregates_follow_sqlite() {
    let mut s = session();
    t1(&mut s);
    assert_eq!(
        text(
            &mut s,
            "SELECT count(*), count(b), sum(b), avg(b), min(c), max(c) FROM t1"
        ),
        ["4 3 70 23.3333333333333 x y"]
    );
    assert_eq!(
        text(
            &mut s,
            "SELECT c, count(*), sum(a) FROM t1 GROUP BY c HAVING count(*) >= 1 ORDER BY c"
        ),
        ["NULL 1 4", "x 2 4", "y 1 2"]
    );
    assert_eq!(text(&mut s, "SELECT count(DISTINCT c) FROM t1"), ["2"]);
    s.execute("CREATE TABLE e(x INTEGER)").unwrap();
    assert_eq!(
        text(&mut s, "SELECT count(*), sum(x), avg(x), total(x) FROM e"),
        ["0 NULL NULL 0.0"]
    );
    assert!(text(&mut s, "SELECT x, count(*) FROM e GROUP BY x").is_empty());
    s.execute("INSERT INTO e VALUES (9223372036854775807), (1)")
        .unwrap();
    assert!(matches!(
        err(&mut s, "SELECT sum(x) FROM e"),
        Error::IntegerOverflow
    ));
    // A bare column in an aggregate query takes a value from its group.
    assert_eq!(
        text(
            &mut s,
            "SELECT a % 2, b FROM t1 WHERE a < 3 GROUP BY a % 2 ORDER BY 1"
        ),
        ["0 20", "1 10"]
    );
}

/// Group keys that are columns are hashed and compared in the scan's row;
/// other keys are computed and looked up by value. Both must form the same
/// groups: NULLs together, `1` and `1.0` together, text by its bytes.
#[test]
fn group_keys_looked_up_in_the_row_match_computed_keys() {
    let mut s = session();
    s.execute("CREATE TABLE g(id INTEGER PRIMARY KEY, k INTEGER, r REAL, t TEXT, v INTEGER)")
        .unwrap();
    let values: Vec<String> = (0..400)
        .map(|i| {
            let t = match i % 4 {
                0 => "NULL".to_string(),
                1 => "'a'".to_string(),
                _ => format!("'t{}'", i % 5),
            };
            let k = if i % 11 == 0 {
                "NULL".to_string()
            } else {
                (i % 7).to_string()
            };
            format!("({i}, {k}, {}, {t}, {i})", f64::from(i % 3) / 2.0 + 1.0)
        })
        .collect();
    s.execute(&format!("INSERT INTO g VALUES {}", values.join(", ")))
        .unwrap();
    let by_columns = text(
        &mut s,
        "SELECT k, t, r, count(*), sum(v), min(t) FROM g GROUP BY k, t, r ORDER BY 1, 2, 3",
    );
    let computed = text(
        &mut s,
        "SELECT CASE WHEN 1 = 1 THEN k END, CASE WHEN 1 = 1 THEN t END, CASE WHEN 1 = 1 THEN r END, \
         count(*), sum(v), min(t) FROM g \
         GROUP BY CASE WHEN 1 = 1 THEN k END, CASE WHEN 1 = 1 THEN t END, CASE WHEN 1 = 1 THEN r END \
         ORDER BY 1, 2, 3",
    );
    let distinct: std::collections::BTreeSet<(Option<i32>, i32, i32)> = (0..400)
        .map(|i| {
            let t = match i % 4 {
                0 => -1,
                1 => 99,
                _ => i % 5,
            };
            ((i % 11 != 0).then_some(i % 7), t, i % 3)
        })
        .collect();
    assert_eq!(by_columns.len(), distinct.len(), "{by_columns:?}");
    assert_eq!(by_columns, computed);
    // The integer 1 and the real 1.0 are one group, whichever comes first.
    assert_eq!(
        text(
            &mut s,
            "SELECT x, count(*) FROM (SELECT k AS x FROM g WHERE k = 1 UNION ALL SELECT r FROM g WHERE r = 1.0) GROUP BY x"
        )
        .len(),
        1
    );
    // Filtered input, no GROUP BY, and compiled arguments.
    assert_eq!(
        text(
            &mut s,
            "SELECT count(*), sum(v * 2 - 1), sum(k), total(r) FROM g WHERE v < 10 AND k IS NOT NULL"
        ),
        ["9 81 24 13.5"]
    );
}

#[test]
fn subqueries_scalar_exists_in_correlated_and_cached() {
    let mut s = session();
    t1(&mut s);
    let q = "SELECT a, (SELECT count(*) FROM t1 AS x WHERE x.a < t1.a) FROM t1 ORDER BY a";
    assert_eq!(text(&mut s, q), ["1 0", "2 1", "3 2", "4 3"]);
    assert!(plan(&mut s, q).contains("(correlated)"));
    let q = "SELECT a FROM t1 WHERE b > (SELECT avg(b) FROM t1) ORDER BY a";
    assert_eq!(text(&mut s, q), ["4"]);
    assert!(plan(&mut s, q).contains("(cached)"));
    assert_eq!(
        text(
            &mut s,
            "SELECT a FROM t1 WHERE EXISTS (SELECT 1 FROM t1 AS y WHERE y.a = t1.a + 1) ORDER BY a"
        ),
        ["1", "2", "3"]
    );
    assert_eq!(
        text(
            &mut s,
            "SELECT a FROM t1 WHERE a IN (SELECT b / 10 FROM t1) ORDER BY a"
        ),
        ["1", "2", "4"]
    );
    // NULL in the subquery's rows makes NOT IN unknown for non-members.
    assert!(text(&mut s, "SELECT a FROM t1 WHERE a NOT IN (SELECT b FROM t1)").is_empty());
    // More than one row: the first one, as SQLite does.
    assert_eq!(
        text(&mut s, "SELECT (SELECT a FROM t1 ORDER BY a DESC)"),
        ["4"]
    );
    assert_eq!(
        text(&mut s, "SELECT (SELECT a FROM t1 WHERE a > 100)"),
        ["NULL"]
    );
}

#[test]
fn joins_hash_and_nested_loop_agree() {
    let mut s = session();
    t1(&mut s);
    s.execute("CREATE TABLE t2(k INTEGER, v TEXT); INSERT INTO t2 VALUES (1, 'one'), (1, 'uno'), (3, 'three'), (NULL, 'none')")
        .unwrap();
    let hash = "SELECT a, v FROM t1 JOIN t2 ON t1.a = t2.k ORDER BY a, v";
    let nested = "SELECT a, v FROM t1 JOIN t2 ON NOT (t1.a <> t2.k) ORDER BY a, v";
    assert!(plan(&mut s, hash).contains("HashJoin"));
    assert!(plan(&mut s, nested).contains("NestedLoopJoin"));
    assert_eq!(text(&mut s, hash), ["1 one", "1 uno", "3 three"]);
    assert_eq!(text(&mut s, hash), text(&mut s, nested));
    let left = "SELECT a, v FROM t1 LEFT JOIN t2 ON t1.a = t2.k ORDER BY a, v";
    assert_eq!(
        text(&mut s, left),
        ["1 one", "1 uno", "2 NULL", "3 three", "4 NULL"]
    );
    let left_nested = "SELECT a, v FROM t1 LEFT JOIN t2 ON NOT (t1.a <> t2.k) ORDER BY a, v";
    assert_eq!(text(&mut s, left), text(&mut s, left_nested));
    // WHERE on the right side of a LEFT join must run after the join.
    assert_eq!(
        text(
            &mut s,
            "SELECT a FROM t1 LEFT JOIN t2 ON a = k WHERE v IS NULL ORDER BY a"
        ),
        ["2", "4"]
    );
    // A comma join with the equality in WHERE becomes a hash join.
    let comma = "SELECT a, v FROM t1, t2 WHERE k = a AND b < 30 ORDER BY 1, 2";
    assert!(plan(&mut s, comma).contains("HashJoin"));
    assert_eq!(text(&mut s, comma), ["1 one", "1 uno"]);
    assert_eq!(
        text(&mut s, "SELECT count(*) FROM t1 CROSS JOIN t2"),
        ["16"]
    );
    assert!(matches!(
        err(&mut s, "SELECT a FROM t1, t1"),
        Error::Duplicate { .. }
    ));
}

#[test]
fn indexes_and_primary_keys_are_chosen_and_agree_with_scans() {
    let mut s = session();
    s.execute(
        "CREATE TABLE p(id INTEGER PRIMARY KEY, g INTEGER, name TEXT); CREATE INDEX p_g ON p(g)",
    )
    .unwrap();
    for i in 0..50 {
        s.execute(&format!("INSERT INTO p VALUES ({i}, {}, 'n{i}')", i % 7))
            .unwrap();
    }
    let q = "SELECT name FROM p WHERE id = 17";
    assert!(plan(&mut s, q).contains("PkLookup"));
    assert_eq!(text(&mut s, q), ["n17"]);
    let q = "SELECT id FROM p WHERE g = 3 ORDER BY id";
    assert!(
        plan(&mut s, q).contains("Index"),
        "an index range (the rows or the index alone)"
    );
    assert_eq!(
        text(&mut s, q),
        text(&mut s, "SELECT id FROM p WHERE g + 0 = 3 ORDER BY id")
    );
    let q = "SELECT id FROM p WHERE g > 2 AND g <= 4 ORDER BY id";
    assert!(
        plan(&mut s, q).contains("Index"),
        "an index range (the rows or the index alone)"
    );
    assert_eq!(
        text(&mut s, q),
        text(
            &mut s,
            "SELECT id FROM p WHERE g + 0 > 2 AND g + 0 <= 4 ORDER BY id"
        )
    );
    let q = "SELECT id FROM p WHERE g BETWEEN 1 AND 2 ORDER BY id";
    assert_eq!(
        text(&mut s, q),
        text(
            &mut s,
            "SELECT id FROM p WHERE g + 0 BETWEEN 1 AND 2 ORDER BY id"
        )
    );
    // Text compared with an INTEGER column is converted first.
    assert_eq!(text(&mut s, "SELECT name FROM p WHERE id = '5'"), ["n5"]);
}

#[test]
fn top_n_agrees_with_a_full_sort() {
    let mut s = session();
    s.execute("CREATE TABLE n(x INTEGER, y INTEGER)").unwrap();
    for i in 0..200 {
        s.execute(&format!(
            "INSERT INTO n VALUES ({}, {})",
            (i * 37) % 101,
            i % 5
        ))
        .unwrap();
    }
    let q = "SELECT x, y FROM n ORDER BY y, x DESC LIMIT 7 OFFSET 3";
    assert!(plan(&mut s, q).contains("TopN"));
    let all = text(&mut s, "SELECT x, y FROM n ORDER BY y, x DESC");
    assert_eq!(text(&mut s, q), all[3..10].to_vec());
}

#[test]
fn set_operations_and_values() {
    let mut s = session();
    assert_eq!(
        text(&mut s, "SELECT 2 UNION SELECT 1 UNION SELECT 2"),
        ["1", "2"]
    );
    assert_eq!(
        text(&mut s, "SELECT 2 UNION ALL SELECT 1 UNION ALL SELECT 2"),
        ["2", "1", "2"]
    );
    assert_eq!(
        text(&mut s, "VALUES (1), (2), (3) INTERSECT VALUES (3), (2)"),
        ["2", "3"]
    );
    assert_eq!(
        text(
            &mut s,
            "VALUES (1), (2), (3) EXCEPT SELECT 2 ORDER BY 1 DESC"
        ),
        ["3", "1"]
    );
    assert!(matches!(
        err(&mut s, "SELECT 1 UNION SELECT 1, 2"),
        Error::Invalid(_)
    ));
}

#[test]
fn memory_budget_fails_a_statement_instead_of_the_process() {
    let mut s = session();
    s.execute("CREATE TABLE big(x INTEGER, pad TEXT)").unwrap();
    for i in 0..300 {
        s.execute(&format!(
            "INSERT INTO big VALUES ({i}, '{}')",
            "p".repeat(100)
        ))
        .unwrap();
    }
    s.exec_context_mut().memory_budget = 4096;
    for q in [
        "SELECT * FROM big ORDER BY x DESC",
        "SELECT pad, count(*) FROM big GROUP BY x",
        "SELECT DISTINCT x, pad FROM big",
        "SELECT * FROM big UNION SELECT * FROM big",
        "SELECT count(*) FROM big AS a JOIN big AS b ON a.x = b.x",
    ] {
        assert!(matches!(err(&mut s, q), Error::ResourceLimit(_)), "{q}");
    }
    // A streaming query and a small top-N stay within the budget.
    assert_eq!(
        text(&mut s, "SELECT count(*) FROM big WHERE x % 2 = 0"),
        ["150"]
    );
    assert_eq!(
        text(&mut s, "SELECT x FROM big ORDER BY x DESC LIMIT 2"),
        ["299", "298"]
    );
}

#[test]
fn dml_coerces_values_and_collects_before_writing() {
    let mut s = session();
    s.execute("CREATE TABLE d(id INTEGER PRIMARY KEY, n INTEGER DEFAULT 7, r REAL, t TEXT)")
        .unwrap();
    s.execute("INSERT INTO d(id, r, t) VALUES (1, 2, 3), (2.0, '4.5', 'x')")
        .unwrap();
    assert_eq!(
        text(
            &mut s,
            "SELECT id, n, r, t, typeof(id), typeof(r), typeof(t) FROM d ORDER BY id"
        ),
        ["1 7 2.0 3 integer real text", "2 7 4.5 x integer real text"]
    );
    s.execute("INSERT INTO d(id, n) VALUES ('5', '6')").unwrap();
    assert_eq!(text(&mut s, "SELECT n + 1 FROM d WHERE id = 5"), ["7"]);
    // UPDATE sees the old row in every SET expression.
    let out = s
        .execute("UPDATE d SET n = n + 100, r = n WHERE id < 5")
        .unwrap();
    assert_eq!(
        out,
        [Output::Affected {
            verb: "UPDATE",
            count: 2
        }]
    );
    assert_eq!(text(&mut s, "SELECT n, r FROM d WHERE id = 1"), ["107 7.0"]);
    // INSERT ... SELECT from the same table reads only the old rows.
    s.execute("INSERT INTO d(id, n) SELECT id + 10, n FROM d")
        .unwrap();
    assert_eq!(text(&mut s, "SELECT count(*) FROM d"), ["6"]);
    let out = s.execute("DELETE FROM d WHERE id > 10").unwrap();
    assert_eq!(
        out,
        [Output::Affected {
            verb: "DELETE",
            count: 3
        }]
    );
    s.execute("INSERT OR REPLACE INTO d(id, t) VALUES (1, 'new')")
        .unwrap();
    assert_eq!(text(&mut s, "SELECT t, n FROM d WHERE id = 1"), ["new 7"]);
    assert!(matches!(
        err(&mut s, "INSERT INTO d(id) VALUES (1)"),
        Error::Constraint { .. }
    ));
    assert!(matches!(
        err(&mut s, "INSERT INTO d(nope) VALUES (1)"),
        Error::Undefined { kind: "column", .. }
    ));
    assert!(matches!(
        err(&mut s, "INSERT INTO d(id, n) VALUES (1)"),
        Error::Invalid(_)
    ));
}

#[test]
fn ddl_views_and_name_errors() {
    let mut s = session();
    t1(&mut s);
    s.execute("CREATE VIEW v AS SELECT a, b FROM t1 WHERE b IS NOT NULL")
        .unwrap();
    assert_eq!(
        text(&mut s, "SELECT a FROM v WHERE b > 15 ORDER BY a"),
        ["2", "4"]
    );
    assert_eq!(
        text(&mut s, "SELECT v.* FROM v ORDER BY a LIMIT 1"),
        ["1 10"]
    );
    assert!(matches!(
        err(&mut s, "CREATE VIEW v AS SELECT 1"),
        Error::Duplicate { .. }
    ));
    s.execute("CREATE VIEW IF NOT EXISTS v AS SELECT 1")
        .unwrap();
    s.execute("DROP VIEW v").unwrap();
    assert!(matches!(
        err(&mut s, "DROP VIEW v"),
        Error::Undefined { kind: "view", .. }
    ));
    s.execute("DROP VIEW IF EXISTS v").unwrap();
    s.execute("CREATE INDEX i1 ON t1(b)").unwrap();
    assert!(matches!(
        err(&mut s, "CREATE INDEX i1 ON t1(a)"),
        Error::Duplicate { .. }
    ));
    s.execute("DROP INDEX i1").unwrap();
    assert!(matches!(
        err(&mut s, "SELECT nope FROM t1"),
        Error::Undefined { kind: "column", .. }
    ));
    assert!(matches!(
        err(&mut s, "SELECT * FROM nope"),
        Error::Undefined { kind: "table", .. }
    ));
    s.execute("DROP TABLE t1").unwrap();
    assert!(matches!(
        err(&mut s, "DROP TABLE t1"),
        Error::Undefined { .. }
    ));
    s.execute("DROP TABLE IF EXISTS t1").unwrap();
}

#[test]
fn constant_folding_keeps_errors_for_run_time() {
    let mut s = session();
    t1(&mut s);
    let p = plan(&mut s, "SELECT a FROM t1 WHERE b > 2 * 3 + 1");
    assert!(p.contains("(#1 > 7)"), "{p}");
    let p = plan(&mut s, "SELECT a FROM t1 WHERE 1 = 0");
    assert!(!p.contains("Scan"), "{p}");
    // Folding must not raise the overflow of a branch never taken.
    assert_eq!(
        text(
            &mut s,
            "SELECT CASE WHEN 1 THEN 5 ELSE 9223372036854775807 + 1 END"
        ),
        ["5"]
    );
    assert!(matches!(
        err(&mut s, "SELECT 9223372036854775807 + 1"),
        Error::IntegerOverflow
    ));
}

#[test]
fn value_subqueries_must_return_one_column() {
    let mut s = session();
    t1(&mut s);
    for q in [
        "SELECT 1 FROM t1 WHERE 1 IN (SELECT a, b FROM t1)",
        "SELECT 1 FROM t1 WHERE 1 IN (SELECT * FROM t1)",
        "SELECT (SELECT a, b FROM t1)",
    ] {
        assert!(matches!(err(&mut s, q), Error::Invalid(_)), "{q}");
    }
    assert_eq!(text(&mut s, "SELECT EXISTS (SELECT a, b FROM t1)"), ["1"]);
}

#[test]
fn index_joins_agree_with_hash_joins() {
    let mut s = session();
    s.execute(
        "CREATE TABLE o(id INTEGER, cust INTEGER, amount INTEGER);
         CREATE TABLE c(id INTEGER PRIMARY KEY, name TEXT, region INTEGER);
         CREATE INDEX c_region ON c(region);",
    )
    .unwrap();
    for i in 0..30 {
        s.execute(&format!("INSERT INTO c VALUES ({i}, 'c{i}', {})", i % 4))
            .unwrap();
    }
    for i in 0..60 {
        // Some orders name no customer, some a missing one, one a REAL key.
        let cust = match i % 10 {
            0 => "NULL".to_string(),
            1 => "99".to_string(),
            2 => "3.0".to_string(),
            _ => (i % 30).to_string(),
        };
        s.execute(&format!("INSERT INTO o VALUES ({i}, {cust}, {})", i * 10))
            .unwrap();
    }
    let cases = [
        (
            "SELECT o.id, name FROM o JOIN c ON o.cust = c.id WHERE amount > 100 ORDER BY 1",
            "SELECT o.id, name FROM o JOIN c ON o.cust + 0 = c.id + 0 WHERE amount > 100 ORDER BY 1",
            "using primary key",
        ),
        (
            "SELECT o.id, name FROM o LEFT JOIN c ON o.cust = c.id AND c.region <> 1 ORDER BY 1, 2",
            "SELECT o.id, name FROM o LEFT JOIN c ON o.cust + 0 = c.id + 0 AND c.region <> 1 ORDER BY 1, 2",
            "IndexJoin Left",
        ),
        (
            "SELECT o.id, c.id FROM o, c WHERE c.region = o.id AND o.id IN (0, 1, 2, 3, 4) ORDER BY 1, 2",
            "SELECT o.id, c.id FROM o, c WHERE c.region + 0 = o.id + 0 AND o.id IN (0, 1, 2, 3, 4) ORDER BY 1, 2",
            "using c_region",
        ),
    ];
    for (indexed, hashed, expect) in cases {
        let p = plan(&mut s, indexed);
        assert!(p.contains(expect), "{p}");
        assert!(plan(&mut s, hashed).contains("HashJoin"));
        let got = text(&mut s, indexed);
        assert!(!got.is_empty());
        assert_eq!(got, text(&mut s, hashed), "{indexed}");
    }
}

#[test]
fn join_order_avoids_cross_products_and_keeps_results() {
    let mut s = session();
    for t in ["p", "q", "r", "u"] {
        s.execute(&format!("CREATE TABLE {t}(a INTEGER, b INTEGER, x TEXT)"))
            .unwrap();
        for i in 0..10 {
            s.execute(&format!(
                "INSERT INTO {t} VALUES ({i}, {}, '{t}{i}')",
                (i * 3) % 10
            ))
            .unwrap();
        }
    }
    // In FROM order, p and u share no condition: a cross product first.
    let bad = "SELECT p.x, q.x, r.x, u.x FROM p, u, q, r
               WHERE p.a = 6 AND p.b = q.a AND q.b = r.a AND r.b = u.a ORDER BY 1, 2, 3, 4";
    let good = "SELECT p.x, q.x, r.x, u.x FROM p, q, r, u
                WHERE p.a = 6 AND p.b = q.a AND q.b = r.a AND r.b = u.a ORDER BY 1, 2, 3, 4";
    let p = plan(&mut s, bad);
    assert!(!p.contains("NestedLoopJoin"), "{p}");
    assert_eq!(text(&mut s, bad), ["p6 q8 r4 u2"]);
    assert_eq!(text(&mut s, bad), text(&mut s, good));
    // SELECT * keeps the FROM order of the columns.
    let star = text(
        &mut s,
        "SELECT * FROM p, u, q WHERE p.a = 1 AND q.a = p.b AND u.a = q.b",
    );
    assert_eq!(star, ["1 3 p1 9 7 u9 3 9 q3"]);
}

#[test]
fn distinct_compares_the_select_list_only() {
    let mut s = session();
    t1(&mut s);
    // Each distinct c sorts by the b of its first row (for 'x': 10).
    let q = "SELECT DISTINCT c FROM t1 ORDER BY b DESC";
    assert_eq!(text(&mut s, q), ["NULL", "y", "x"]);
    assert!(plan(&mut s, q).contains("Distinct on the first 1 columns"));
}

/// Projection pushdown: a scan decodes only the columns its query reads
/// (the plan says which), and every query returns what the same query
/// over whole rows returns: the rows of `SELECT *`, filtered and
/// projected here.
#[test]
fn scans_decode_only_the_columns_read_and_agree_with_whole_rows() {
    let mut s = session();
    t1(&mut s);
    let all = rows(&mut s, "SELECT a, b, c FROM t1 ORDER BY a");
    let p = plan(&mut s, "SELECT c FROM t1 WHERE a > 1");
    assert!(p.contains("Scan t1 reading (a, c)"), "{p}");
    let want: Vec<Row> = all
        .iter()
        .filter(|r| matches!(r[0], crate::value::Value::Integer(a) if a > 1))
        .map(|r| vec![r[2].clone()])
        .collect();
    assert_eq!(
        rows(&mut s, "SELECT c FROM t1 WHERE a > 1 ORDER BY a"),
        want
    );
    // Nothing read: COUNT(*) needs no value at all.
    let p = plan(&mut s, "SELECT COUNT(*) FROM t1");
    assert!(p.contains("Scan t1 reading ()"), "{p}");
    let count = rows(&mut s, "SELECT COUNT(*) FROM t1");
    assert_eq!(
        count,
        vec![vec![crate::value::Value::Integer(all.len() as i64)]]
    );
    // The same table scanned twice in one statement with different
    // columns (a self-join, a correlated subquery): each scan gets its own.
    let pairs = rows(
        &mut s,
        "SELECT x.c, y.b FROM t1 x JOIN t1 y ON x.a = y.a ORDER BY x.a",
    );
    let want: Vec<Row> = all
        .iter()
        .map(|r| vec![r[2].clone(), r[1].clone()])
        .collect();
    assert_eq!(pairs, want);
    let sub = rows(
        &mut s,
        "SELECT a, (SELECT MAX(y.b) FROM t1 y WHERE y.a <= x.a) FROM t1 x ORDER BY a",
    );
    assert_eq!(sub.len(), all.len());
    for (r, whole) in sub.iter().zip(&all) {
        assert_eq!(r[0], whole[0]);
        let a = &whole[0];
        let max = all
            .iter()
            .filter(|o| o[0].total_cmp(a) != std::cmp::Ordering::Greater)
            .filter(|o| o[1] != crate::value::Value::Null)
            .map(|o| o[1].clone())
            .max_by(|p, q| p.total_cmp(q))
            .unwrap_or(crate::value::Value::Null);
        assert_eq!(r[1], max);
    }
}

#[test]
fn hash_join_probing_a_scan_in_place_agrees_with_a_nested_loop() {
    // The probe side of these hash joins is a table scan (with a filter
    // or not), read into the join's one buffer (`ProbeRows::Scan`): rows
    // with no match, NULL keys, keys with several matches, a residual
    // condition and LEFT joins must come out as a nested loop gives them.
    let mut s = session();
    s.execute("CREATE TABLE big(id INTEGER PRIMARY KEY, k INTEGER, w INTEGER, t TEXT)")
        .unwrap();
    s.execute("CREATE TABLE small(k INTEGER, v TEXT, lim INTEGER)")
        .unwrap();
    let mut insert = String::from("INSERT INTO big VALUES ");
    for i in 0..400 {
        let k = if i % 13 == 0 {
            "NULL".to_string()
        } else {
            (i % 50).to_string()
        };
        if i > 0 {
            insert.push_str(", ");
        }
        insert.push_str(&format!("({i}, {k}, {}, 't{}')", i % 7, i % 3));
    }
    s.execute(&insert).unwrap();
    s.execute(
        "INSERT INTO small VALUES (1, 'a', 3), (1, 'b', 6), (2, 'c', 0), (7, 'd', 9), \
         (NULL, 'n', 1), (49, 'e', 4), (60, 'f', 5)",
    )
    .unwrap();
    s.execute("ANALYZE").unwrap();
    let cases = [
        (
            "SELECT id, v FROM big JOIN small ON big.k = small.k ORDER BY id, v",
            "SELECT id, v FROM big JOIN small ON NOT (big.k <> small.k) ORDER BY id, v",
        ),
        (
            "SELECT id, t, v FROM big JOIN small ON big.k = small.k WHERE w > 2 ORDER BY id, v",
            "SELECT id, t, v FROM big JOIN small ON NOT (big.k <> small.k) WHERE w > 2 ORDER BY id, v",
        ),
        (
            "SELECT id, v FROM big JOIN small ON big.k = small.k AND big.w < small.lim ORDER BY id, v",
            "SELECT id, v FROM big JOIN small ON NOT (big.k <> small.k) AND big.w < small.lim ORDER BY id, v",
        ),
        (
            "SELECT id, v FROM big LEFT JOIN small ON big.k = small.k WHERE big.w <> 3 ORDER BY id, v",
            "SELECT id, v FROM big LEFT JOIN small ON NOT (big.k <> small.k) WHERE big.w <> 3 ORDER BY id, v",
        ),
        (
            "SELECT id, v FROM big LEFT JOIN small ON big.k = small.k AND big.w < small.lim ORDER BY id, v",
            "SELECT id, v FROM big LEFT JOIN small ON NOT (big.k <> small.k) AND big.w < small.lim ORDER BY id, v",
        ),
    ];
    for (hashed, nested) in cases {
        let p = plan(&mut s, hashed);
        assert!(p.contains("HashJoin"), "{hashed}: {p}");
        let got = text(&mut s, hashed);
        assert!(!got.is_empty(), "{hashed}");
        assert_eq!(got, text(&mut s, nested), "{hashed}");
        // EXPLAIN ANALYZE runs the probe side as separate operators.
        s.execute(&format!("EXPLAIN ANALYZE {hashed}")).unwrap();
    }
    // The shape the cases above are about: `big` (filtered and projected)
    // is probed, `small` is built.
    let p = plan(
        &mut s,
        "SELECT id, v FROM big JOIN small ON big.k = small.k WHERE w > 2",
    );
    let (big, small) = (p.find("Scan big").unwrap(), p.find("Scan small").unwrap());
    assert!(p.contains("Filter") && big < small, "{p}");
}

/// A hash join hands its build keys to the probe's scan, which drops the
/// rows whose key has no match (`RowCursor::drop_absent_keys`), but not
/// under a filter that can fail: a probe row without a match on which
/// the filter overflows must still fail the statement, as it did when
/// every row reached the filter.
#[test]
fn a_probe_scan_keeps_the_rows_a_failing_filter_must_see() {
    let mut s = session();
    s.execute("CREATE TABLE big(id INTEGER PRIMARY KEY, k INTEGER)")
        .unwrap();
    s.execute("CREATE TABLE small(k INTEGER, v TEXT)").unwrap();
    let values: Vec<String> = (0..400).map(|i| format!("({i}, {})", i % 50)).collect();
    s.execute(&format!("INSERT INTO big VALUES {}", values.join(", ")))
        .unwrap();
    s.execute("INSERT INTO small VALUES (1, 'a'), (7, 'b'), (49, 'c')")
        .unwrap();
    s.execute("ANALYZE").unwrap();
    // Row 398 (k = 48) has no match, and only it overflows.
    let failing = "SELECT id, v FROM big JOIN small ON big.k = small.k \
                   WHERE CASE WHEN big.id = 398 THEN 9223372036854775807 + big.id ELSE 1 END > 0";
    let p = plan(&mut s, failing);
    let (big, small) = (p.find("Scan big").unwrap(), p.find("Scan small").unwrap());
    assert!(
        p.contains("HashJoin") && p.contains("Filter") && big < small,
        "{p}"
    );
    err(&mut s, failing);
    // A filter that cannot fail: the rows without a match are dropped in
    // the scan, and the answer is the nested loop's.
    let (hashed, nested) = (
        "SELECT id, v FROM big JOIN small ON big.k = small.k WHERE big.id > 20 ORDER BY id",
        "SELECT id, v FROM big JOIN small ON NOT (big.k <> small.k) WHERE big.id > 20 ORDER BY id",
    );
    assert!(plan(&mut s, hashed).contains("HashJoin"));
    let got = text(&mut s, hashed);
    assert_eq!(got.len(), 22, "{got:?}");
    assert_eq!(got, text(&mut s, nested));
}

#[test]
fn hash_joins_on_mixed_keys_agree_with_a_nested_loop_on_random_data() {
    // The join table keys integers as `i64`s and anything else as values
    // (`exec::join_table`), and the probe looks a key up in the scanned
    // row before the projection: on random keys of every type (integers,
    // integral and fractional reals, text that looks like a number, NULL),
    // one and two key columns, keys of expressions (a REAL probed against
    // integers), inner and LEFT joins, with a filter and a projection on
    // the probe side, the rows must be the nested loop's.
    let mut s = session();
    s.execute("CREATE TABLE p(id INTEGER PRIMARY KEY, a INTEGER, b, w INTEGER, t TEXT)")
        .unwrap();
    s.execute("CREATE TABLE q(id INTEGER PRIMARY KEY, a INTEGER, b, v TEXT)")
        .unwrap();
    // A small linear congruential generator: the data is random but the
    // test repeatable.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = |n: u64| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) % n
    };
    let mut key = |mixed: bool| -> String {
        match if mixed { next(8) } else { 0 } {
            1 => "NULL".into(),
            2 => format!("{}.0", next(6)),
            3 => format!("{}.5", next(6)),
            4 => format!("'k{}'", next(3)),
            5 => format!("'{}'", next(6)),
            _ => next(6).to_string(),
        }
    };
    for (table, mixed) in [("p", false), ("q", false), ("p", true), ("q", true)] {
        s.execute("DELETE FROM p").unwrap();
        s.execute("DELETE FROM q").unwrap();
        for id in 0..120 {
            let (a, b) = (key(mixed), key(mixed));
            let extra = if table == "p" {
                format!("{id}, {a}, {b}, {}, 't{}'", id % 5, id % 3)
            } else {
                format!("{id}, {a}, {b}, 'v{id}'")
            };
            s.execute(&format!("INSERT INTO {table} VALUES ({extra})"))
                .unwrap();
            let other = if table == "p" { "q" } else { "p" };
            if id < 15 {
                let (a, b) = (key(true), key(true));
                let extra = if other == "p" {
                    format!("{}, {a}, {b}, {}, 'u'", 1000 + id, id % 5)
                } else {
                    format!("{}, {a}, {b}, 'w'", 1000 + id)
                };
                s.execute(&format!("INSERT INTO {other} VALUES ({extra})"))
                    .unwrap();
            }
        }
        s.execute("ANALYZE").unwrap();
        let cases = [
            (
                "SELECT p.id, q.id FROM p JOIN q ON p.a = q.a ORDER BY 1, 2",
                "SELECT p.id, q.id FROM p JOIN q ON NOT (p.a <> q.a) ORDER BY 1, 2",
            ),
            (
                "SELECT p.id, t, v FROM p JOIN q ON p.a = q.a AND p.b = q.b WHERE w > 1 ORDER BY 1, 3",
                "SELECT p.id, t, v FROM p JOIN q ON NOT (p.a <> q.a) AND NOT (p.b <> q.b) WHERE w > 1 ORDER BY 1, 3",
            ),
            (
                "SELECT p.id, v FROM p LEFT JOIN q ON p.b = q.b WHERE w <> 2 ORDER BY 1, 2",
                "SELECT p.id, v FROM p LEFT JOIN q ON NOT (p.b <> q.b) WHERE w <> 2 ORDER BY 1, 2",
            ),
            (
                "SELECT q.id, t FROM q LEFT JOIN p ON q.a = p.b AND q.b = p.a ORDER BY 1, 2",
                "SELECT q.id, t FROM q LEFT JOIN p ON NOT (q.a <> p.b) AND NOT (q.b <> p.a) ORDER BY 1, 2",
            ),
            (
                "SELECT p.id, q.id FROM p JOIN q ON p.a * 1.0 = q.a ORDER BY 1, 2",
                "SELECT p.id, q.id FROM p JOIN q ON NOT (p.a * 1.0 <> q.a) ORDER BY 1, 2",
            ),
            (
                "SELECT p.id, q.id FROM p LEFT JOIN q ON p.b = q.a * 1.0 ORDER BY 1, 2",
                "SELECT p.id, q.id FROM p LEFT JOIN q ON NOT (p.b <> q.a * 1.0) ORDER BY 1, 2",
            ),
        ];
        for (hashed, nested) in cases {
            let p = plan(&mut s, hashed);
            assert!(p.contains("HashJoin"), "{hashed}: {p}");
            assert!(plan(&mut s, nested).contains("NestedLoopJoin"), "{nested}");
            let got = text(&mut s, hashed);
            assert!(!got.is_empty(), "{hashed}");
            assert_eq!(got, text(&mut s, nested), "{table} {mixed}: {hashed}");
        }
    }
}
