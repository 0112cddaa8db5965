//! Guards pydb's SQL against SQLite: random schemas, data and queries within
//! the subset both speak, run on both, must give the same rows.
//!
//! Each case makes two or three tables with random INTEGER, REAL and TEXT
//! columns (some indexed), fills them with small random values and NULLs,
//! and runs random queries: projections of expressions, WHERE with three
//! valued logic, BETWEEN, IN, CASE and the functions, joins, GROUP BY with
//! aggregates, ORDER BY with LIMIT, DISTINCT and set operations. Results are
//! compared as sorted lists unless the query orders every output column;
//! numbers compare by value with a small tolerance (sums of reals may add in
//! another order), so an INTEGER 2 and a REAL 2.0 are equal.
//!
//! The generator stays inside the shared subset on purpose: values are
//! small (no integer overflow, where pydb fails and SQLite turns to REAL),
//! and comparisons are between values of one kind (SQLite's affinity rules
//! for text against numbers are not part of the contract).
//!
//! `PYDB_DIFF_CASES` sets the number of cases (default 40, of 12 queries
//! each), `PYDB_DIFF_SEED` the first seed. A mismatch prints the schema,
//! the data and the query, ready to paste into `pydb sql` and `sqlite3`.

use std::cmp::Ordering;
use std::fmt::Write as _;

mod common;

use common::{Cell, pydb_rows, sqlite_rows};

/// A small seedable generator (xorshift64*), so that a failing case is
/// reproduced from its seed alone.
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
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Int,
    Real,
    Text,
}

#[derive(Debug, Clone)]
struct Column {
    name: String,
    kind: Kind,
}

#[derive(Debug, Clone)]
struct Table {
    name: String,
    columns: Vec<Column>,
}

fn literal(rng: &mut Rng, kind: Kind) -> String {
    match kind {
        Kind::Int => (rng.below(21) as i64 - 10).to_string(),
        Kind::Real => format!("{:.2}", (rng.below(81) as f64 - 40.0) / 4.0),
        Kind::Text => {
            let words = ["'a'", "'b'", "'ab'", "'B'", "'abc'", "''", "'zz'", "'a b'"];
            rng.pick(&words).to_string()
        }
    }
}

fn value(rng: &mut Rng, kind: Kind) -> String {
    if rng.chance(15) {
        "NULL".into()
    } else {
        literal(rng, kind)
    }
}

/// One random case: tables, their data, and the text to create them.
struct Case {
    tables: Vec<Table>,
    setup: Vec<String>,
}

fn make_case(rng: &mut Rng) -> Case {
    let mut tables = Vec::new();
    let mut setup = Vec::new();
    for t in 0..2 + rng.below(2) {
        let name = format!("t{t}");
        let kinds = [Kind::Int, Kind::Int, Kind::Real, Kind::Text];
        let columns: Vec<Column> = (0..2 + rng.below(3))
            .map(|c| Column {
                name: format!("c{c}"),
                kind: *rng.pick(&kinds),
            })
            .collect();
        let defs: Vec<String> = columns
            .iter()
            .map(|c| {
                let ty = match c.kind {
                    Kind::Int => "INTEGER",
                    Kind::Real => "REAL",
                    Kind::Text => "TEXT",
                };
                format!("{} {ty}", c.name)
            })
            .collect();
        setup.push(format!("CREATE TABLE {name}({})", defs.join(", ")));
        for (i, c) in columns.iter().enumerate() {
            if rng.chance(40) {
                setup.push(format!("CREATE INDEX {name}_i{i} ON {name}({})", c.name));
            }
        }
        let rows: Vec<String> = (0..rng.below(25))
            .map(|_| {
                let vals: Vec<String> = columns.iter().map(|c| value(rng, c.kind)).collect();
                format!("({})", vals.join(", "))
            })
            .collect();
        if !rows.is_empty() {
            setup.push(format!("INSERT INTO {name} VALUES {}", rows.join(", ")));
        }
        tables.push(Table { name, columns });
    }
    Case { tables, setup }
}

/// Columns in scope, qualified: (`alias.col`, kind).
type Scope = Vec<(String, Kind)>;

fn scope_of(table: &Table, alias: &str) -> Scope {
    table
        .columns
        .iter()
        .map(|c| (format!("{alias}.{}", c.name), c.kind))
        .collect()
}

/// An expression of `kind` over `scope`, at most `depth` deep.
fn expr(rng: &mut Rng, scope: &Scope, kind: Kind, depth: u32) -> String {
    let columns: Vec<&String> = scope
        .iter()
        .filter(|(_, k)| *k == kind || (kind == Kind::Real && *k == Kind::Int))
        .map(|(n, _)| n)
        .collect();
    if depth == 0 || rng.chance(40) {
        return if !columns.is_empty() && rng.chance(75) {
            rng.pick(&columns).to_string()
        } else {
            literal(rng, kind)
        };
    }
    let d = depth - 1;
    match kind {
        Kind::Int => match rng.below(7) {
            0 => format!(
                "({} {} {})",
                expr(rng, scope, Kind::Int, d),
                rng.pick(&["+", "-", "*"]),
                expr(rng, scope, Kind::Int, d)
            ),
            1 => format!(
                "({} {} {})",
                expr(rng, scope, Kind::Int, d),
                rng.pick(&["/", "%"]),
                expr(rng, scope, Kind::Int, d)
            ),
            2 => format!("abs({})", expr(rng, scope, Kind::Int, d)),
            3 => format!("length({})", expr(rng, scope, Kind::Text, d)),
            4 => format!(
                "coalesce({}, {})",
                expr(rng, scope, Kind::Int, d),
                literal(rng, Kind::Int)
            ),
            5 => format!(
                "CASE WHEN {} THEN {} ELSE {} END",
                pred(rng, scope, d),
                expr(rng, scope, Kind::Int, d),
                expr(rng, scope, Kind::Int, d)
            ),
            _ => format!("(-{})", expr(rng, scope, Kind::Int, d)),
        },
        Kind::Real => match rng.below(4) {
            0 => format!(
                "({} {} {})",
                expr(rng, scope, Kind::Real, d),
                rng.pick(&["+", "-", "*"]),
                expr(rng, scope, Kind::Real, d)
            ),
            1 => format!("abs({})", expr(rng, scope, Kind::Real, d)),
            2 => format!(
                "nullif({}, {})",
                expr(rng, scope, Kind::Real, d),
                literal(rng, Kind::Real)
            ),
            _ => format!("CAST({} AS REAL)", expr(rng, scope, Kind::Int, d)),
        },
        Kind::Text => match rng.below(5) {
            0 => format!("upper({})", expr(rng, scope, Kind::Text, d)),
            1 => format!("lower({})", expr(rng, scope, Kind::Text, d)),
            2 => format!(
                "substr({}, {}, {})",
                expr(rng, scope, Kind::Text, d),
                1 + rng.below(3),
                rng.below(3)
            ),
            3 => format!(
                "({} || {})",
                expr(rng, scope, Kind::Text, d),
                expr(rng, scope, Kind::Text, d)
            ),
            _ => format!(
                "coalesce({}, {})",
                expr(rng, scope, Kind::Text, d),
                literal(rng, Kind::Text)
            ),
        },
    }
}

/// A condition over `scope`, at most `depth` deep.
fn pred(rng: &mut Rng, scope: &Scope, depth: u32) -> String {
    let kind = *rng.pick(&[Kind::Int, Kind::Int, Kind::Real, Kind::Text]);
    let d = depth.saturating_sub(1);
    match rng.below(if depth == 0 { 4 } else { 7 }) {
        0 | 1 => format!(
            "{} {} {}",
            expr(rng, scope, kind, d),
            rng.pick(&["=", "<>", "<", "<=", ">", ">="]),
            expr(rng, scope, kind, d)
        ),
        2 => format!(
            "{} IS {}NULL",
            expr(rng, scope, kind, d),
            if rng.chance(50) { "NOT " } else { "" }
        ),
        3 => {
            let list: Vec<String> = (0..1 + rng.below(3)).map(|_| value(rng, kind)).collect();
            format!(
                "{} {}IN ({})",
                expr(rng, scope, kind, d),
                if rng.chance(30) { "NOT " } else { "" },
                list.join(", ")
            )
        }
        4 => format!(
            "({} {} {})",
            pred(rng, scope, d),
            rng.pick(&["AND", "OR"]),
            pred(rng, scope, d)
        ),
        5 => format!("NOT ({})", pred(rng, scope, d)),
        _ => format!(
            "{} {}BETWEEN {} AND {}",
            expr(rng, scope, kind, d),
            if rng.chance(30) { "NOT " } else { "" },
            literal(rng, kind),
            literal(rng, kind)
        ),
    }
}

/// A random query over the case's tables, and whether its ORDER BY fixes
/// the order of the rows.
fn query(rng: &mut Rng, case: &Case) -> (String, bool) {
    let t = rng.pick(&case.tables).clone();
    let mut scope = scope_of(&t, "x");
    let mut from = format!("{} AS x", t.name);
    if rng.chance(35) {
        let u = rng.pick(&case.tables).clone();
        let uscope = scope_of(&u, "y");
        let join = *rng.pick(&["JOIN", "LEFT JOIN", "CROSS JOIN", ","]);
        let mut both = scope.clone();
        both.extend(uscope.iter().cloned());
        if join == "CROSS JOIN" || join == "," {
            from = format!("{from} {join} {} AS y", u.name);
        } else {
            // Join on an equality between columns of one kind when there is
            // one, else on any condition.
            let on = scope
                .iter()
                .find_map(|(a, k)| {
                    uscope
                        .iter()
                        .find(|(_, l)| l == k)
                        .map(|(b, _)| format!("{a} = {b}"))
                })
                .unwrap_or_else(|| pred(rng, &both, 1));
            from = format!("{from} {join} {} AS y ON {on}", u.name);
        }
        scope = both;
    }
    let filter = if rng.chance(70) {
        format!(" WHERE {}", pred(rng, &scope, 2))
    } else {
        String::new()
    };
    match rng.below(10) {
        // GROUP BY a column, with aggregates.
        0..=2 => {
            let (key, _) = rng.pick(&scope).clone();
            let numeric: Vec<String> = scope
                .iter()
                .filter(|(_, k)| *k != Kind::Text)
                .map(|(n, _)| n.clone())
                .collect();
            let mut items = vec![key.clone(), "count(*)".to_string()];
            for _ in 0..1 + rng.below(3) {
                let (col, kind) = rng.pick(&scope).clone();
                let f = if kind == Kind::Text || numeric.is_empty() {
                    *rng.pick(&["min", "max", "count"])
                } else {
                    *rng.pick(&["sum", "avg", "min", "max", "count"])
                };
                items.push(format!("{f}({col})"));
            }
            if rng.chance(20) {
                items.push(format!("count(DISTINCT {key})"));
            }
            let having = if rng.chance(30) {
                format!(" HAVING count(*) > {}", rng.below(3))
            } else {
                String::new()
            };
            let sql = format!(
                "SELECT {} FROM {from}{filter} GROUP BY {key}{having}",
                items.join(", ")
            );
            (sql, false)
        }
        // Set operations over two projections of one kind.
        3 => {
            let kind = *rng.pick(&[Kind::Int, Kind::Text]);
            let op = *rng.pick(&["UNION", "UNION ALL", "INTERSECT", "EXCEPT"]);
            let a = expr(rng, &scope, kind, 1);
            let b = expr(rng, &scope, kind, 1);
            let sql =
                format!("SELECT {a} FROM {from}{filter} {op} SELECT {b} FROM {from} ORDER BY 1");
            (sql, true)
        }
        // A projection, maybe DISTINCT, maybe ordered on every column with
        // a LIMIT.
        _ => {
            let items: Vec<String> = (0..1 + rng.below(3))
                .map(|_| {
                    let kind = *rng.pick(&[Kind::Int, Kind::Int, Kind::Real, Kind::Text]);
                    expr(rng, &scope, kind, 2)
                })
                .collect();
            let distinct = if rng.chance(20) { "DISTINCT " } else { "" };
            let mut sql = format!("SELECT {distinct}{} FROM {from}{filter}", items.join(", "));
            let ordered = rng.chance(40);
            if ordered {
                let order: Vec<String> = (1..=items.len())
                    .map(|i| format!("{i}{}", if rng.chance(50) { " DESC" } else { "" }))
                    .collect();
                let _ = write!(sql, " ORDER BY {}", order.join(", "));
                if rng.chance(50) {
                    let _ = write!(sql, " LIMIT {}", rng.below(6));
                    if rng.chance(50) {
                        let _ = write!(sql, " OFFSET {}", rng.below(4));
                    }
                }
            }
            (sql, ordered)
        }
    }
}

fn sort(rows: &mut [Vec<Cell>]) {
    rows.sort_by(|a, b| {
        a.iter()
            .zip(b)
            .map(|(x, y)| x.cmp(y))
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    });
}

fn same_rows(a: &[Vec<Cell>], b: &[Vec<Cell>]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.len() == y.len() && x.iter().zip(y).all(|(p, q)| p.same(q)))
}

/// A result for a mismatch report: its first 20 rows.
fn shown(result: &Result<Vec<Vec<Cell>>, String>) -> String {
    match result {
        Ok(rows) if rows.len() > 20 => format!("{} rows, first 20: {:?}", rows.len(), &rows[..20]),
        Ok(rows) => format!("{} rows: {rows:?}", rows.len()),
        Err(e) => format!("error: {e}"),
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn random_queries_agree_with_sqlite() {
    const QUERIES_PER_CASE: usize = 12;
    let cases = env_u64("PYDB_DIFF_CASES", 40);
    let first_seed = env_u64("PYDB_DIFF_SEED", 1);
    let mut mismatches = Vec::new();
    let mut compared = 0;
    let mut both_failed = 0;
    for seed in first_seed..first_seed + cases {
        let mut rng = Rng::new(seed);
        let case = make_case(&mut rng);
        let dir = tempfile::tempdir().expect("a temporary directory");
        let database = pydb_query::slt::open_database("memory", dir.path()).expect("open pydb");
        let mut session = database.session();
        let sqlite = rusqlite::Connection::open_in_memory().expect("open SQLite");
        for sql in &case.setup {
            session
                .execute(sql)
                .unwrap_or_else(|e| panic!("seed {seed}: pydb refused {sql}: {e}"));
            sqlite
                .execute_batch(sql)
                .unwrap_or_else(|e| panic!("seed {seed}: SQLite refused {sql}: {e}"));
        }
        for _ in 0..QUERIES_PER_CASE {
            let (sql, ordered) = query(&mut rng, &case);
            let (ours, theirs) = (pydb_rows(&mut session, &sql), sqlite_rows(&sqlite, &sql));
            let agree = match (ours.clone(), theirs.clone()) {
                (Ok(mut a), Ok(mut b)) => {
                    compared += 1;
                    if !ordered {
                        sort(&mut a);
                        sort(&mut b);
                    }
                    same_rows(&a, &b)
                }
                (Err(_), Err(_)) => {
                    both_failed += 1;
                    true
                }
                _ => false,
            };
            if !agree {
                mismatches.push(format!(
                    "seed {seed}\n-- schema and data:\n{};\n-- query:\n{sql};\n-- pydb:   {}\n-- SQLite: {}",
                    case.setup.join(";\n"),
                    shown(&ours),
                    shown(&theirs)
                ));
            }
        }
    }
    println!(
        "{cases} cases: {compared} queries compared, {both_failed} refused by both, {} mismatches",
        mismatches.len()
    );
    for m in mismatches.iter().take(5) {
        println!("MISMATCH {m}\n");
    }
    assert!(
        mismatches.is_empty(),
        "{} queries disagree with SQLite (see above)",
        mismatches.len()
    );
    assert!(
        compared > cases,
        "too few queries ran on both databases: {compared}"
    );
}
