//! Decorrelation unit tests: statements whose plans must keep their shape
//! (UPDATE and DELETE targets), and the NULL cases of IN and NOT IN, each
//! checked against the same term kept as a subquery (`OR 0` stops the
//! rewrite without changing the term's truth).

use std::sync::Arc;

use crate::output::Output;
use crate::session::{Database, Session};

fn session() -> Session {
    let dir = tempfile::tempdir().unwrap();
    let config = pydb_storage::EngineConfig::from_name("memory").unwrap();
    let engine = pydb_storage::open_engine(dir.path(), &config).unwrap();
    let mgr = pydb_txn::TxnManager::open(engine, pydb_txn::Options::default()).unwrap();
    let mut s = Database::new(Arc::new(mgr)).unwrap().session();
    s.execute(
        "CREATE TABLE t(a INTEGER, b INTEGER);
         INSERT INTO t VALUES (1, 1), (2, NULL), (NULL, 3), (4, 4), (4, 4);
         CREATE TABLE u(x INTEGER, y INTEGER);
         INSERT INTO u VALUES (1, 10), (1, 11), (NULL, 12), (4, 13);
         CREATE TABLE n(x INTEGER);
         INSERT INTO n VALUES (NULL);
         CREATE TABLE e(x INTEGER);",
    )
    .unwrap();
    s
}

fn text(s: &mut Session, sql: &str) -> Vec<String> {
    match s.execute(sql).unwrap().pop().unwrap() {
        Output::Rows(r) => r
            .rows
            .iter()
            .map(|r| {
                r.iter()
                    .map(|v| v.to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect(),
        other => panic!("{sql}: expected rows, got {other:?}"),
    }
}

fn plan(s: &mut Session, sql: &str) -> String {
    text(s, &format!("EXPLAIN {sql}")).join("\n")
}

/// The rows of `SELECT a, b FROM t WHERE <term>`, rewritten and not.
fn both(s: &mut Session, term: &str) -> (Vec<String>, Vec<String>) {
    let rewritten = format!("SELECT a, b FROM t WHERE {term}");
    let kept = format!("SELECT a, b FROM t WHERE ({term}) OR 0");
    let p = plan(s, &rewritten);
    assert!(
        p.contains("Semi Join") || p.contains("Anti Join"),
        "{rewritten} not rewritten:\n{p}"
    );
    let k = plan(s, &kept);
    assert!(
        !k.contains("Semi Join") && !k.contains("Anti Join"),
        "{kept} rewritten:\n{k}"
    );
    (text(s, &rewritten), text(s, &kept))
}

#[test]
fn in_and_not_in_keep_sql_null_rules() {
    let mut s = session();
    for term in [
        "a IN (SELECT x FROM u)",
        "a NOT IN (SELECT x FROM u)",
        "a NOT IN (SELECT x FROM u WHERE x IS NOT NULL)",
        "a NOT IN (SELECT x FROM n)",
        "a NOT IN (SELECT x FROM e)",
        "a IN (SELECT x FROM e)",
        "a IN (SELECT x FROM n)",
        "EXISTS (SELECT 1 FROM u WHERE u.x = t.a)",
        "NOT EXISTS (SELECT 1 FROM u WHERE u.x = t.a)",
        "NOT EXISTS (SELECT 1 FROM u WHERE u.x = t.a AND u.y > 10)",
        "b IN (SELECT y - 9 FROM u WHERE u.x = t.a)",
    ] {
        let (rewritten, kept) = both(&mut s, term);
        assert_eq!(rewritten, kept, "{term}");
    }
    // The expected rows, spelled out once: a NULL operand or a NULL in
    // the subquery makes NOT IN unknown, an empty subquery makes it true.
    assert_eq!(
        text(&mut s, "SELECT a FROM t WHERE a NOT IN (SELECT x FROM u)"),
        Vec::<String>::new()
    );
    assert_eq!(
        text(&mut s, "SELECT a FROM t WHERE a NOT IN (SELECT x FROM e)").len(),
        5
    );
    assert_eq!(
        text(
            &mut s,
            "SELECT a FROM t WHERE a NOT IN (SELECT x FROM u WHERE x IS NOT NULL)"
        ),
        vec!["2".to_string()]
    );
    // Duplicates on the right do not duplicate left rows.
    assert_eq!(
        text(&mut s, "SELECT a FROM t WHERE a IN (SELECT x FROM u)"),
        vec!["1", "4", "4"]
    );
}

#[test]
fn update_and_delete_with_subqueries_keep_their_target_plan() {
    let mut s = session();
    s.execute("UPDATE t SET b = 0 WHERE a IN (SELECT x FROM u)")
        .unwrap();
    assert_eq!(
        text(&mut s, "SELECT a FROM t WHERE b = 0 ORDER BY a"),
        vec!["1", "4", "4"]
    );
    s.execute("DELETE FROM t WHERE NOT EXISTS (SELECT 1 FROM u WHERE u.x = t.a)")
        .unwrap();
    assert_eq!(
        text(&mut s, "SELECT a FROM t ORDER BY a"),
        vec!["1", "4", "4"]
    );
}
