//! Guards the optimizer's rewrites (subquery decorrelation, index order,
//! index-only scans) against SQLite: each query runs on both over random
//! data with NULLs and duplicates, must give the same rows, and its plan
//! must show the rewrite it is there to exercise.
//!
//! `PYDB_REWRITE_CASES` sets the number of random data sets (default 12).

use std::cmp::Ordering;

mod common;

use common::{Cell, pydb_rows, sqlite_rows};

/// A small seedable generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn cmp_rows(a: &[Cell], b: &[Cell]) -> Ordering {
    a.partial_cmp(b).unwrap_or(Ordering::Equal)
}

/// Three tables of small integers and short texts, with NULLs and many
/// duplicates; `t3` is empty in every third case.
fn setup(rng: &mut Rng, case: u64) -> Vec<String> {
    let mut sql = vec![
        "CREATE TABLE t1(id INTEGER PRIMARY KEY, a INTEGER, b INTEGER, c TEXT)".to_string(),
        "CREATE TABLE t2(id INTEGER PRIMARY KEY, a INTEGER, b INTEGER, c TEXT)".to_string(),
        "CREATE TABLE t3(id INTEGER PRIMARY KEY, a INTEGER, b INTEGER, c TEXT)".to_string(),
        "CREATE INDEX t2_a ON t2(a)".to_string(),
        "CREATE INDEX t1_ab ON t1(a, b)".to_string(),
    ];
    let int = |rng: &mut Rng| match rng.below(6) {
        0 => "NULL".to_string(),
        _ => rng.below(6).to_string(),
    };
    for (table, n) in [
        ("t1", 12),
        ("t2", 10),
        ("t3", if case.is_multiple_of(3) { 0 } else { 6 }),
    ] {
        for id in 0..n {
            let a = int(rng);
            let b = int(rng);
            let c = match rng.below(5) {
                0 => "NULL".to_string(),
                k => format!("'{}'", ["x", "y", "z", "xy"][k as usize - 1]),
            };
            sql.push(format!("INSERT INTO {table} VALUES ({id}, {a}, {b}, {c})"));
        }
    }
    sql
}

/// Queries, each with the plan text it must show (empty: any plan).
const QUERIES: &[(&str, &str)] = &[
    // Uncorrelated IN and NOT IN, NULLs on both sides.
    (
        "SELECT id FROM t1 WHERE a IN (SELECT b FROM t2)",
        "Hash Semi Join",
    ),
    (
        "SELECT id FROM t1 WHERE a NOT IN (SELECT b FROM t2)",
        "Null Aware",
    ),
    (
        "SELECT id FROM t1 WHERE a NOT IN (SELECT b FROM t2 WHERE b IS NOT NULL)",
        "Null Aware",
    ),
    (
        "SELECT id FROM t1 WHERE a NOT IN (SELECT a FROM t3)",
        "Null Aware",
    ),
    (
        "SELECT id FROM t1 WHERE a IN (SELECT a FROM t3)",
        "Hash Semi Join",
    ),
    (
        "SELECT id FROM t1 WHERE NOT (a IN (SELECT b FROM t2))",
        "Null Aware",
    ),
    (
        "SELECT id, c FROM t1 WHERE c IN (SELECT c FROM t2 WHERE a > 2)",
        "Hash Semi Join",
    ),
    (
        "SELECT id FROM t1 WHERE a + 1 IN (SELECT DISTINCT b FROM t2) AND b > 1",
        "Hash Semi Join",
    ),
    // Correlated EXISTS and NOT EXISTS: keys, residuals, no keys.
    (
        "SELECT id FROM t1 WHERE EXISTS (SELECT 1 FROM t2 WHERE t2.a = t1.a)",
        "Hash Semi Join",
    ),
    (
        "SELECT id FROM t1 WHERE NOT EXISTS (SELECT 1 FROM t2 WHERE t2.a = t1.a)",
        "Hash Anti Join",
    ),
    (
        "SELECT id FROM t1 WHERE EXISTS (SELECT * FROM t2 WHERE t2.a = t1.a AND t2.b > t1.b)",
        "Join Filter",
    ),
    (
        "SELECT id FROM t1 WHERE NOT EXISTS (SELECT c FROM t2 WHERE t2.b < t1.a)",
        "Nested Loop Anti Join",
    ),
    (
        "SELECT id FROM t1 WHERE EXISTS (SELECT 1 FROM t3 WHERE t3.c = t1.c AND t3.a IS NULL)",
        "Hash Semi Join",
    ),
    (
        "SELECT id FROM t1 WHERE EXISTS (SELECT 1 FROM t2 WHERE t2.a = t1.a ORDER BY t2.b)",
        "Hash Semi Join",
    ),
    (
        "SELECT id FROM t1 WHERE NOT EXISTS (SELECT 1 FROM t2 WHERE t2.a = t1.a AND t2.b = t1.b)",
        "Hash Anti Join",
    ),
    // Correlated IN: a key from the IN plus the correlation.
    (
        "SELECT id FROM t1 WHERE b IN (SELECT t2.b FROM t2 WHERE t2.a = t1.a)",
        "Hash Semi Join",
    ),
    // Correlated NOT IN keeps its subquery (NULL rules per outer row).
    (
        "SELECT id FROM t1 WHERE b NOT IN (SELECT t2.b FROM t2 WHERE t2.a = t1.a)",
        "",
    ),
    // Not rewritten: under OR, with LIMIT, with an aggregate.
    (
        "SELECT id FROM t1 WHERE a IN (SELECT b FROM t2) OR b = 1",
        "",
    ),
    (
        "SELECT id FROM t1 WHERE EXISTS (SELECT 1 FROM t2 WHERE t2.a = t1.a LIMIT 0)",
        "",
    ),
    (
        "SELECT id FROM t1 WHERE EXISTS (SELECT count(*) FROM t2 WHERE t2.a = t1.a)",
        "",
    ),
    (
        "SELECT id FROM t1 WHERE a IN (SELECT max(b) FROM t2 WHERE t2.a = t1.b)",
        "",
    ),
    // Joins and aggregates around a semi-join, nesting.
    (
        "SELECT t1.id, t3.id FROM t1 JOIN t3 ON t1.a = t3.a WHERE EXISTS (SELECT 1 FROM t2 WHERE t2.b = t3.b) AND t1.c IS NOT NULL",
        "Hash Semi Join",
    ),
    (
        "SELECT t1.id, t2.id FROM t1, t2, t3 WHERE t1.a = t2.a AND t2.b = t3.b AND t1.b NOT IN (SELECT a FROM t3 WHERE a IS NOT NULL)",
        "Null Aware",
    ),
    (
        "SELECT a, count(*) FROM t1 WHERE b IN (SELECT a FROM t2) GROUP BY a",
        "Hash Semi Join",
    ),
    (
        "SELECT id FROM t1 WHERE EXISTS (SELECT 1 FROM t2 WHERE t2.a = t1.a AND t2.b IN (SELECT b FROM t3))",
        "Hash Semi Join",
    ),
    (
        "SELECT id FROM t1 WHERE EXISTS (SELECT 1 FROM t2 WHERE t2.a = t1.a AND NOT EXISTS (SELECT 1 FROM t3 WHERE t3.b = t2.b))",
        "Hash Anti Join",
    ),
    (
        "SELECT b, count(*) FROM t1 GROUP BY b HAVING b IN (SELECT a FROM t2)",
        "Hash Semi Join",
    ),
    (
        "SELECT b FROM t1 GROUP BY b HAVING EXISTS (SELECT 1 FROM t2 WHERE t2.a = t1.b)",
        "Hash Semi Join",
    ),
    (
        "SELECT id, (SELECT count(*) FROM t2 WHERE t2.a = t1.a) FROM t1 WHERE EXISTS (SELECT 1 FROM t3 WHERE t3.a = t1.b)",
        "Hash Semi Join",
    ),
    (
        "SELECT x.id FROM t1 AS x LEFT JOIN t2 AS y ON x.a = y.a WHERE y.b IN (SELECT b FROM t3) OR y.b IS NULL",
        "",
    ),
    (
        "SELECT x.id, y.id FROM t1 AS x LEFT JOIN t2 AS y ON x.a = y.a WHERE NOT EXISTS (SELECT 1 FROM t3 WHERE t3.a = y.b)",
        "Hash Anti Join",
    ),
];

fn cases() -> u64 {
    std::env::var("PYDB_REWRITE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12)
}

#[test]
fn rewritten_queries_agree_with_sqlite_and_show_their_rewrite() {
    let mut mismatches = Vec::new();
    for case in 0..cases() {
        let mut rng = Rng::new(case + 1);
        let setup = setup(&mut rng, case);
        let dir = tempfile::tempdir().expect("a temporary directory");
        let database = pydb_query::slt::open_database("memory", dir.path()).expect("open pydb");
        let mut session = database.session();
        let sqlite = rusqlite::Connection::open_in_memory().expect("open SQLite");
        for sql in &setup {
            session.execute(sql).expect("pydb setup");
            sqlite.execute_batch(sql).expect("SQLite setup");
        }
        for (sql, shows) in QUERIES {
            let mut ours = pydb_rows(&mut session, sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
            let mut theirs = sqlite_rows(&sqlite, sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
            ours.sort_by(|a, b| cmp_rows(a, b));
            theirs.sort_by(|a, b| cmp_rows(a, b));
            if ours != theirs {
                mismatches.push(format!(
                    "case {case}: {sql}\n  setup: {}\n  pydb:   {ours:?}\n  SQLite: {theirs:?}",
                    setup.join("; ")
                ));
            }
            if case == 0 {
                let plan = pydb_rows(&mut session, &format!("EXPLAIN {sql}"))
                    .expect("EXPLAIN")
                    .into_iter()
                    .map(|r| format!("{r:?}"))
                    .collect::<Vec<_>>()
                    .join("\n");
                assert!(
                    plan.contains(shows),
                    "{sql}: the plan lacks {shows}:\n{plan}"
                );
                let kept = plan.contains("SubPlan") || plan.contains("InitPlan");
                let rewritten = plan.contains("Semi Join") || plan.contains("Anti Join");
                if shows.is_empty() {
                    assert!(kept, "{sql}: the subquery should stay:\n{plan}");
                } else {
                    assert!(rewritten, "{sql}: not rewritten:\n{plan}");
                }
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

fn plan_text(session: &mut pydb_query::Session, sql: &str) -> String {
    pydb_rows(session, &format!("EXPLAIN {sql}"))
        .expect("EXPLAIN")
        .into_iter()
        .map(|r| format!("{r:?}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn after_analyze_an_index_range_over_most_of_the_table_loses_to_a_scan() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let database = pydb_query::slt::open_database("memory", dir.path()).expect("open pydb");
    let mut s = database.session();
    s.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, a INTEGER, b INTEGER)")
        .expect("create");
    s.execute("CREATE INDEX t_a ON t(a)").expect("index a");
    s.execute("CREATE INDEX t_b ON t(b)").expect("index b");
    let values: Vec<String> = (0..600).map(|i| format!("({i}, {i}, {})", i % 3)).collect();
    s.execute(&format!("INSERT INTO t VALUES {}", values.join(", ")))
        .expect("insert");
    let wide = "SELECT count(*), sum(a) FROM t WHERE b >= 0";
    let narrow = "SELECT count(*), sum(b) FROM t WHERE a = 17";
    // Without statistics, any usable index is taken.
    assert!(plan_text(&mut s, wide).contains("Index Scan"));
    let before = (pydb_rows(&mut s, wide), pydb_rows(&mut s, narrow));
    s.execute("ANALYZE").expect("analyze");
    let wide_plan = plan_text(&mut s, wide);
    assert!(
        wide_plan.contains("Seq Scan") && !wide_plan.contains("Index Scan"),
        "{wide_plan}"
    );
    let narrow_plan = plan_text(&mut s, narrow);
    assert!(narrow_plan.contains("Index Scan"), "{narrow_plan}");
    let after = (pydb_rows(&mut s, wide), pydb_rows(&mut s, narrow));
    assert_eq!(before, after);
    assert_eq!(
        after.0,
        Ok(vec![vec![Cell::Num(600.0), Cell::Num(179_700.0)]])
    );
}

/// Ordered queries whose order an index or the primary key gives: the
/// plan must have no sort, the rows must come in order (ties may differ
/// from SQLite's, so they are compared as sets besides).
#[test]
fn index_order_replaces_a_sort() {
    const ORDERED: &[(&str, usize, bool)] = &[
        // (query, leading columns the output is ordered on, sort expected)
        ("SELECT a, b, id FROM t1 WHERE a > 1 ORDER BY a", 1, false),
        (
            "SELECT a, b, c FROM t1 WHERE a >= 2 ORDER BY a, b LIMIT 4",
            2,
            false,
        ),
        ("SELECT a, id FROM t2 WHERE a < 4 ORDER BY a", 1, false),
        ("SELECT id, c FROM t1 ORDER BY id LIMIT 3", 1, false),
        ("SELECT id, c FROM t1 WHERE b > 2 ORDER BY id", 1, false),
        ("SELECT a + 0, id FROM t2 WHERE a < 4 ORDER BY 1", 1, true),
        ("SELECT b, a FROM t1 WHERE a > 1 ORDER BY b", 1, true),
        // Descending: the scan is read backward.
        ("SELECT id FROM t1 ORDER BY id DESC LIMIT 3", 1, false),
        (
            "SELECT id, c FROM t1 WHERE b > 2 ORDER BY id DESC",
            1,
            false,
        ),
        (
            "SELECT a, b, id FROM t1 WHERE a > 1 ORDER BY a DESC",
            1,
            false,
        ),
        (
            "SELECT a, b, c FROM t1 WHERE a >= 2 ORDER BY a DESC, b DESC LIMIT 4",
            2,
            false,
        ),
        (
            "SELECT a, id FROM t2 WHERE a < 4 ORDER BY a DESC LIMIT 3",
            1,
            false,
        ),
        // Mixed directions still sort.
        (
            "SELECT a, b FROM t1 WHERE a > 1 ORDER BY a DESC, b",
            1,
            true,
        ),
        // A column fixed by an equality is skipped, in the index or the
        // sort keys.
        ("SELECT b, c FROM t1 WHERE a = 2 ORDER BY b", 1, false),
        (
            "SELECT b, c FROM t1 WHERE a = 2 ORDER BY b DESC LIMIT 2",
            1,
            false,
        ),
        ("SELECT b, id FROM t1 WHERE a = 3 ORDER BY a, b", 1, false),
        (
            "SELECT b, id FROM t1 WHERE a = 3 AND b > 1 ORDER BY b",
            1,
            false,
        ),
        (
            "SELECT a, id FROM t1 WHERE id = 4 OR a = 1 ORDER BY a",
            1,
            true,
        ),
    ];
    for case in 0..cases() {
        let mut rng = Rng::new(case + 100);
        let setup = setup(&mut rng, case);
        let dir = tempfile::tempdir().expect("a temporary directory");
        let database = pydb_query::slt::open_database("memory", dir.path()).expect("open pydb");
        let mut session = database.session();
        let sqlite = rusqlite::Connection::open_in_memory().expect("open SQLite");
        for sql in &setup {
            session.execute(sql).expect("pydb setup");
            sqlite.execute_batch(sql).expect("SQLite setup");
        }
        for (sql, ordered_on, sorts) in ORDERED {
            let plan = plan_text(&mut session, sql);
            assert_eq!(plan.contains("Sort"), *sorts, "{sql}:\n{plan}");
            let ours = pydb_rows(&mut session, sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
            let theirs = sqlite_rows(&sqlite, sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
            let key = |r: &Vec<Cell>| r[..*ordered_on].to_vec();
            let keys_in_order = |rows: &[Vec<Cell>]| rows.iter().map(key).collect::<Vec<_>>();
            // The leading key's direction (only the leading keys are
            // checked for order).
            let desc = sql
                .split("ORDER BY")
                .nth(1)
                .and_then(|keys| keys.split(',').next())
                .is_some_and(|k| k.contains("DESC"));
            let mut expected_keys = keys_in_order(&ours);
            expected_keys.sort_by(|a, b| {
                let o = cmp_rows(a, b);
                if desc { o.reverse() } else { o }
            });
            assert_eq!(keys_in_order(&ours), expected_keys, "{sql}: out of order");
            assert_eq!(keys_in_order(&ours), keys_in_order(&theirs), "{sql}");
            if !sql.contains("LIMIT") {
                let (mut a, mut b) = (ours.clone(), theirs.clone());
                a.sort_by(|x, y| cmp_rows(x, y));
                b.sort_by(|x, y| cmp_rows(x, y));
                assert_eq!(a, b, "{sql}");
            }
        }
    }
}

/// Queries whose joins, aggregates and sorts read few of their tables'
/// columns: projection pruning narrows the rows below them.
const PRUNED: &[&str] = &[
    "SELECT t1.id FROM t1 JOIN t3 ON t1.b = t3.b",
    "SELECT t3.c, t1.c FROM t1 JOIN t3 ON t1.b = t3.b AND t1.a < t3.a ORDER BY t3.c, t1.c",
    "SELECT t1.a, count(*), sum(t3.a) FROM t1 JOIN t3 ON t1.b = t3.b GROUP BY t1.a",
    "SELECT count(*) FROM t1, t3",
    "SELECT x.id, y.c FROM t1 AS x LEFT JOIN t3 AS y ON x.b = y.b WHERE y.c IS NULL OR x.a > 2",
    "SELECT t1.id, t2.b FROM t1 JOIN t2 ON t1.a = t2.a JOIN t3 ON t2.b = t3.b WHERE t3.c <> 'x'",
    "SELECT t1.c FROM t1 WHERE t1.b IN (SELECT b FROM t3 WHERE t3.a > 1) ORDER BY t1.c LIMIT 5",
    "SELECT t1.id FROM t1 JOIN t3 ON t1.b = t3.b WHERE t1.a NOT IN (SELECT a FROM t2 WHERE a IS NOT NULL)",
    "SELECT t1.id, (SELECT count(*) FROM t2 WHERE t2.a = t1.a) FROM t1 JOIN t3 ON t1.b = t3.b",
    "SELECT DISTINCT t3.c FROM t1 JOIN t3 ON t1.a = t3.a",
    "SELECT t1.a + t3.b FROM t1 JOIN t3 ON t1.id = t3.id ORDER BY 1 LIMIT 3",
];

#[test]
fn pruned_joins_agree_with_sqlite() {
    let mut mismatches = Vec::new();
    for case in 0..cases() {
        let mut rng = Rng::new(case + 101);
        let setup = setup(&mut rng, case);
        let dir = tempfile::tempdir().expect("a temporary directory");
        let database = pydb_query::slt::open_database("memory", dir.path()).expect("open pydb");
        let mut session = database.session();
        let sqlite = rusqlite::Connection::open_in_memory().expect("open SQLite");
        for sql in &setup {
            session.execute(sql).expect("pydb setup");
            sqlite.execute_batch(sql).expect("SQLite setup");
        }
        for sql in PRUNED {
            let mut ours = pydb_rows(&mut session, sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
            let mut theirs = sqlite_rows(&sqlite, sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
            ours.sort_by(|a, b| cmp_rows(a, b));
            theirs.sort_by(|a, b| cmp_rows(a, b));
            if ours != theirs {
                mismatches.push(format!(
                    "case {case}: {sql}\n  pydb:   {ours:?}\n  SQLite: {theirs:?}"
                ));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

#[test]
fn a_hash_join_carries_only_the_columns_read_above_it() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let database = pydb_query::slt::open_database("memory", dir.path()).expect("open pydb");
    let mut session = database.session();
    let mut rng = Rng::new(7);
    for sql in setup(&mut rng, 1) {
        session.execute(&sql).expect("setup");
    }
    let plan = plan_text(&mut session, "SELECT t1.id FROM t1 JOIN t3 ON t1.b = t3.b");
    // Both scans feed the join only what it reads: t1.id and t1.b on one
    // side, t3.b on the other (each table has 4 columns).
    assert!(plan.contains("Hash"), "{plan}");
    let widths: Vec<&str> = plan
        .lines()
        .filter(|l| l.contains("Seq Scan"))
        .filter_map(|l| l.split("width=").nth(1))
        .collect();
    assert_eq!(widths.len(), 2, "{plan}");
    assert!(
        widths.iter().all(|w| !w.starts_with('4')),
        "a scan still carries every column:\n{plan}"
    );
    let count = plan_text(
        &mut session,
        "SELECT count(*) FROM t1 JOIN t3 ON t1.b = t3.b",
    );
    assert!(count.contains("width=1)"), "{count}");
}

/// Queries that read only columns an index holds (its columns and the
/// primary key): the plan must read the index alone, and the rows must be
/// SQLite's.
const COVERED: &[(&str, &str)] = &[
    (
        "SELECT a, b FROM t1 WHERE a > 2",
        "Index Only Scan using t1_ab on t1",
    ),
    (
        "SELECT id, a FROM t2 WHERE a = 3",
        "Index Only Scan using t2_a on t2",
    ),
    (
        "SELECT count(*), sum(b) FROM t1 WHERE a >= 1 AND b < 4",
        "Index Only Scan using t1_ab",
    ),
    (
        "SELECT b, id FROM t1 WHERE a = 2 ORDER BY b DESC",
        "Index Only Scan Backward using t1_ab",
    ),
    (
        "SELECT a, sum(b), count(id) FROM t1 WHERE a BETWEEN 1 AND 4 GROUP BY a",
        "Index Only Scan",
    ),
    (
        "SELECT t2.id FROM t1 JOIN t2 ON t1.id = t2.id WHERE t2.a < 3",
        "Index Only Scan using t2_a",
    ),
    // A column outside the index: the rows are fetched.
    ("SELECT a, c FROM t1 WHERE a > 2", "Index Scan using t1_ab"),
];

#[test]
fn covering_scans_read_the_index_alone_and_agree_with_sqlite() {
    let mut mismatches = Vec::new();
    for case in 0..cases() {
        let mut rng = Rng::new(case + 300);
        let setup = setup(&mut rng, case);
        let dir = tempfile::tempdir().expect("a temporary directory");
        let database = pydb_query::slt::open_database("memory", dir.path()).expect("open pydb");
        let mut session = database.session();
        let sqlite = rusqlite::Connection::open_in_memory().expect("open SQLite");
        for sql in &setup {
            session.execute(sql).expect("pydb setup");
            sqlite.execute_batch(sql).expect("SQLite setup");
        }
        for (sql, shows) in COVERED {
            if case == 0 {
                let plan = plan_text(&mut session, sql);
                assert!(
                    plan.contains(shows),
                    "{sql}: the plan lacks {shows}:\n{plan}"
                );
                if shows.contains("Index Scan") {
                    assert!(!plan.contains("Index Only"), "{sql}:\n{plan}");
                }
            }
            let mut ours = pydb_rows(&mut session, sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
            let mut theirs = sqlite_rows(&sqlite, sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
            if !sql.contains("ORDER BY") {
                ours.sort_by(|a, b| cmp_rows(a, b));
                theirs.sort_by(|a, b| cmp_rows(a, b));
            }
            if ours != theirs {
                mismatches.push(format!(
                    "case {case}: {sql}\n  pydb:   {ours:?}\n  SQLite: {theirs:?}"
                ));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

/// A covering scan gives every value back with its column's type, though
/// the index key forgets it (a REAL 2.0 is stored in the key as the number
/// 2): the rows equal those a table scan reads.
#[test]
fn a_covering_scan_gives_values_their_column_types() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let database = pydb_query::slt::open_database("memory", dir.path()).expect("open pydb");
    let mut s = database.session();
    s.execute("CREATE TABLE r(id INTEGER PRIMARY KEY, x REAL, t TEXT, b BOOLEAN, pad TEXT)")
        .expect("create");
    s.execute("CREATE INDEX r_x ON r(x, t, b)").expect("index");
    s.execute(
        "INSERT INTO r VALUES (1, 2, '2', TRUE, 'p'), (2, 2.5, 'x', FALSE, 'q'), \
         (3, NULL, NULL, NULL, 'r'), (4, -7, 'y', 1, 's'), (5, 3.0, 'z', 0, 't')",
    )
    .expect("insert");
    s.execute("INSERT INTO r(id, x, t, pad) VALUES (6, 9, TRUE, 'u')")
        .expect("a boolean in a text column");
    let rows = |s: &mut pydb_query::Session, sql: &str| match s.execute(sql).expect(sql).pop() {
        Some(pydb_query::Output::Rows(r)) => r.rows,
        other => panic!("{sql}: {other:?}"),
    };
    let covered = "SELECT id, x, t, b FROM r WHERE x > -100.0 ORDER BY id";
    let plan = plan_text(&mut s, covered);
    assert!(plan.contains("Index Only Scan using r_x"), "{plan}");
    let from_index = rows(&mut s, covered);
    let table_scan = "SELECT id, x, t, b FROM r WHERE x + 0 > -100 AND pad <> '' ORDER BY id";
    assert!(plan_text(&mut s, table_scan).contains("Seq Scan on r"));
    let from_table = rows(&mut s, table_scan);
    assert_eq!(from_index.len(), 5);
    // Values compare 2 = 2.0; their debug forms tell the types apart.
    assert_eq!(format!("{from_index:?}"), format!("{from_table:?}"));
    assert!(
        matches!(from_index[0][1], pydb_query::Value::Real(r) if r == 2.0),
        "{:?}",
        from_index[0]
    );
}

/// On a wide table a covering scan of a whole index is cheaper than the
/// table scan; it is not taken where the primary-key order is relied on.
#[test]
fn a_whole_index_covering_scan_replaces_a_wide_table_scan() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let database = pydb_query::slt::open_database("memory", dir.path()).expect("open pydb");
    let mut s = database.session();
    let sqlite = rusqlite::Connection::open_in_memory().expect("open SQLite");
    let mut setup = vec![
        "CREATE TABLE w(id INTEGER PRIMARY KEY, k INTEGER, pad TEXT)".to_string(),
        "CREATE INDEX w_k ON w(k)".to_string(),
    ];
    for i in 0..300 {
        let k = if i % 7 == 0 {
            "NULL".to_string()
        } else {
            ((i * 37) % 50).to_string()
        };
        setup.push(format!(
            "INSERT INTO w VALUES ({i}, {k}, '{}')",
            "x".repeat(200)
        ));
    }
    for sql in &setup {
        s.execute(sql).expect("pydb setup");
        sqlite.execute_batch(sql).expect("SQLite setup");
    }
    s.execute("ANALYZE").expect("analyze");
    for (sql, shows, sorted) in [
        ("SELECT count(*) FROM w", "Index Only Scan using w_k", false),
        (
            "SELECT k, count(*) FROM w GROUP BY k",
            "Index Only Scan using w_k",
            false,
        ),
        (
            "SELECT k, id FROM w ORDER BY k",
            "Index Only Scan using w_k",
            true,
        ),
        ("SELECT id, k FROM w ORDER BY id", "Seq Scan on w", true),
        (
            "SELECT id, k FROM w ORDER BY id DESC LIMIT 5",
            "Seq Scan Backward on w",
            true,
        ),
        (
            "SELECT pad, k FROM w WHERE k + 1 > 40",
            "Seq Scan on w",
            false,
        ),
    ] {
        let plan = plan_text(&mut s, sql);
        assert!(
            plan.contains(shows),
            "{sql}: the plan lacks {shows}:\n{plan}"
        );
        assert!(!plan.contains("Sort"), "{sql}: sorts:\n{plan}");
        let mut ours = pydb_rows(&mut s, sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        let mut theirs = sqlite_rows(&sqlite, sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        let key = |rows: &[Vec<Cell>]| rows.iter().map(|r| r[0].clone()).collect::<Vec<_>>();
        if sorted {
            assert_eq!(key(&ours), key(&theirs), "{sql}: order");
        }
        ours.sort_by(|a, b| cmp_rows(a, b));
        theirs.sort_by(|a, b| cmp_rows(a, b));
        assert_eq!(ours, theirs, "{sql}");
    }
}

/// LEFT joins whose ON terms read only the right side: the terms filter
/// the right input before the join (no `Join Filter` left), and every
/// left row still comes out, NULL-extended when nothing matches.
#[test]
fn left_join_on_terms_filter_the_right_input() {
    const LEFT: &[(&str, bool)] = &[
        // (query, whether a term must stay at the join)
        (
            "SELECT t1.id, t2.id FROM t1 LEFT JOIN t2 ON t1.a = t2.a AND t2.b > 2",
            false,
        ),
        (
            "SELECT t1.id, t2.c FROM t1 LEFT JOIN t2 ON t1.b = t2.b AND t2.c = 'x'",
            false,
        ),
        (
            "SELECT t1.id, t3.id FROM t1 LEFT JOIN t3 ON t1.a = t3.a AND t3.b IS NULL",
            false,
        ),
        (
            "SELECT t1.id, t2.id FROM t1 LEFT JOIN t2 ON t2.b = 1",
            false,
        ),
        (
            "SELECT t1.id FROM t1 LEFT JOIN t2 ON t1.a = t2.a AND t2.b > 2 WHERE t2.id IS NULL",
            false,
        ),
        (
            "SELECT t1.id, t2.id FROM t1 LEFT JOIN t2 ON t1.a = t2.a AND t1.b > 2",
            true,
        ),
    ];
    let mut mismatches = Vec::new();
    for case in 0..cases() {
        let mut rng = Rng::new(case + 500);
        let setup = setup(&mut rng, case);
        let dir = tempfile::tempdir().expect("a temporary directory");
        let database = pydb_query::slt::open_database("memory", dir.path()).expect("open pydb");
        let mut session = database.session();
        let sqlite = rusqlite::Connection::open_in_memory().expect("open SQLite");
        for sql in &setup {
            session.execute(sql).expect("pydb setup");
            sqlite.execute_batch(sql).expect("SQLite setup");
        }
        for (sql, stays) in LEFT {
            if case == 0 {
                let plan = plan_text(&mut session, sql);
                assert!(plan.contains("Left Join"), "{sql}:\n{plan}");
                assert_eq!(plan.contains("Join Filter"), *stays, "{sql}:\n{plan}");
            }
            let mut ours = pydb_rows(&mut session, sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
            let mut theirs = sqlite_rows(&sqlite, sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
            ours.sort_by(|a, b| cmp_rows(a, b));
            theirs.sort_by(|a, b| cmp_rows(a, b));
            if ours != theirs {
                mismatches.push(format!(
                    "case {case}: {sql}\n  pydb:   {ours:?}\n  SQLite: {theirs:?}"
                ));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}
