//! Golden plan tests: the EXPLAIN output of a set of queries, compared
//! with the text stored next to them.
//!
//! Every `tests/plans/NAME.sql` holds `;`-separated statements. Each runs
//! as `EXPLAIN statement` on a fresh memory database that
//! `tests/plans/setup.sql` filled (schema, data, ANALYZE); files whose name
//! starts with `analyze` run `EXPLAIN ANALYZE statement` instead, with the
//! times (which vary from run to run) replaced by `T`. The output must
//! equal `tests/plans/NAME.expected`; a mismatch prints a diff.
//!
//! When a plan changes on purpose (a new rule, a better estimate), rewrite
//! the expected files and review the diff in git:
//!
//! ```text
//! UPDATE_GOLDEN=1 cargo test -p pydb-query --test plans
//! ```

#![allow(clippy::unwrap_used)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use pydb_query::lexer::split_statements;
use pydb_query::{Output, Session, Value};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/plans")
}

/// A session on a fresh memory database holding `setup.sql`.
fn session() -> Session {
    let tmp = tempfile::tempdir().unwrap();
    let db = pydb_query::slt::open_database("memory", tmp.path()).unwrap();
    let mut session = db.session();
    let setup = std::fs::read_to_string(dir().join("setup.sql")).unwrap();
    session.execute(&setup).unwrap();
    session
}

/// Replaces the digits after `time=` and `Time: ` by `T`.
fn mask_times(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(at) = ["time=", "Time: "]
        .iter()
        .filter_map(|m| rest.find(m).map(|i| i + m.len()))
        .min()
    {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        // `F..L` or `X`: the run of digits and dots after the marker.
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        out.push_str(if rest[..end].contains("..") {
            "T..T"
        } else {
            "T"
        });
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// The text a `.sql` file produces: each statement, then its plan.
fn produce(name: &str) -> String {
    let script = std::fs::read_to_string(dir().join(format!("{name}.sql"))).unwrap();
    let analyze = name.starts_with("analyze");
    let mut session = session();
    let mut text = String::new();
    for span in split_statements(&script).unwrap() {
        let statement = script[span.start..span.end].trim().trim_end_matches(';');
        let statement: Vec<&str> = statement
            .lines()
            .filter(|l| !l.trim_start().starts_with("--"))
            .collect();
        let statement = statement.join("\n").trim().to_string();
        if statement.is_empty() {
            continue;
        }
        let verb = if analyze {
            "EXPLAIN ANALYZE"
        } else {
            "EXPLAIN"
        };
        let _ = writeln!(text, "-- {statement}");
        match session.execute(&format!("{verb} {statement}")) {
            Ok(mut outputs) => match outputs.pop() {
                Some(Output::Rows(rows)) => {
                    for row in rows.rows {
                        let line = match row.first() {
                            Some(Value::Text(t)) => t.to_string(),
                            other => format!("{other:?}"),
                        };
                        let line = if analyze { mask_times(&line) } else { line };
                        let _ = writeln!(text, "{line}");
                    }
                }
                other => {
                    let _ = writeln!(text, "unexpected output: {other:?}");
                }
            },
            Err(e) => {
                let _ = writeln!(text, "ERROR: {e}");
            }
        }
        text.push('\n');
    }
    text
}

/// A line diff of `expected` and `actual` (`-` expected, `+` actual), by
/// longest common subsequence.
fn diff(expected: &str, actual: &str) -> String {
    let a: Vec<&str> = expected.lines().collect();
    let b: Vec<&str> = actual.lines().collect();
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            i += 1;
            j += 1;
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            let _ = writeln!(out, "+ {}", b[j]);
            j += 1;
        } else {
            let _ = writeln!(out, "- {}", a[i]);
            i += 1;
        }
    }
    out
}

fn check(name: &str) {
    let actual = produce(name);
    let path = dir().join(format!("{name}.expected"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    if expected != actual {
        panic!(
            "the plans of tests/plans/{name}.sql changed (UPDATE_GOLDEN=1 rewrites {}):\n{}",
            path.display(),
            diff(&expected, &actual)
        );
    }
}

macro_rules! golden {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                check(stringify!($name));
            }
        )*

        /// Every `.sql` file (but the setup) has its test above.
        #[test]
        fn every_plan_file_has_a_test() {
            let known = [$(stringify!($name)),*];
            for entry in std::fs::read_dir(dir()).unwrap() {
                let path = entry.unwrap().path();
                let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
                    continue;
                };
                if path.extension().is_some_and(|e| e == "sql") && stem != "setup" {
                    assert!(known.contains(&stem), "tests/plans/{stem}.sql has no test in plans.rs");
                }
            }
        }
    };
}

golden!(
    scans,
    joins,
    aggregates,
    sorts,
    subqueries,
    set_ops,
    analyze_queries,
    analyze_dml,
    covering,
);

#[test]
fn masking_hides_only_times() {
    assert_eq!(
        mask_times(
            "Sort  (cost=0.00..2.00 rows=3 width=2) (actual time=0.112..0.345 rows=2 loops=1)"
        ),
        "Sort  (cost=0.00..2.00 rows=3 width=2) (actual time=T..T rows=2 loops=1)"
    );
    assert_eq!(mask_times("Planning Time: 0.083 ms"), "Planning Time: T ms");
    assert_eq!(mask_times("Filter: (t.a > 1)"), "Filter: (t.a > 1)");
}

#[test]
fn diff_marks_changed_lines() {
    assert_eq!(diff("a\nb\nc\n", "a\nx\nc\n"), "+ x\n- b\n");
    assert_eq!(diff("a\n", "a\n"), "");
}
