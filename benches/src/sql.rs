//! # `pydb-bench --sql`: the same SQL text on pydb and on SQLite
//!
//! The key-value workloads of the rest of this crate measure storage
//! engines; this mode measures the whole SQL stack: parser, planner,
//! executor, row encoding and the transaction layer of pydb, against
//! SQLite (bundled, through rusqlite) doing the same work.
//!
//! ## What is compared
//!
//! Four stores, each in a fresh directory, one after the other in one
//! process or, with `--isolate`, each in a process of its own (the
//! parent re-executes the binary with `--sql-child` for one store and
//! reads back a [`StoreRun`]); `--repeat` runs them several times, the
//! order reversed every other round:
//!
//! - `pydb-memory` (memory engine) next to `sqlite-memory`
//!   (`:memory:`): nothing reaches a disk, the SQL layers alone are
//!   compared.
//! - `pydb-btree` (B+tree engine, `SyncPolicy::Always`: every commit is
//!   synced before it returns) next to `sqlite` (a file, `journal_mode=WAL`,
//!   `synchronous=FULL`: the WAL is synced at every commit). Both keep
//!   every acknowledged commit through a power loss.
//!
//! Statements are run as drivers run them, by the same rules on both
//! sides: each SQL text (with `?` where values go) is prepared once per
//! connection and cached, then executed with bound parameters: pydb's
//! `Session::prepare` and `Session::execute_prepared`, SQLite's
//! `Connection::prepare_cached`. Parsing is therefore out of the measured
//! loops on both sides. Planning mostly is too: a pydb prepared statement
//! keeps its generic plan when it is the plan its values would get (the
//! point select, the update, the insert; see `pydb_query::exec::PlanCache`),
//! as SQLite reuses the compiled statement; the range select is planned at
//! each execution (its index range needs the values). Only `BEGIN`/`COMMIT` and the TPC-H-like
//! load (`tpchload`, which is not a goal) are sent as plain text, parsed
//! at every call. Rows are read to the last column value on both sides.
//!
//! ## Workloads
//!
//! On `items(id INTEGER PRIMARY KEY, grp, val, name)` with a secondary
//! index on `val` (a permutation of `0..N`): `insert` (N rows, one INSERT
//! each, in transactions of 1,000), `point` (select by primary key),
//! `range` (100 rows through the index on `val`), `update` (of `name`,
//! by key, one autocommitted statement each), `groupby` (100 groups over
//! all N rows, which the updates leave as they are).
//! On a TPC-H-like schema filled by [`Tpch`], our own seeded generator
//! (dates are whole days since 1992-01-01): `join3` (orders, customer,
//! nation with filters), `q1`, `q3`, `q5`, `q6` in the manner of TPC-H.
//! After the load (and before these queries) both sides run `ANALYZE`,
//! untimed: pydb's planner then knows the table sizes (without
//! statistics it assumes 1,000 rows a table and picks index nested loops
//! where hash joins are far cheaper), and SQLite's gets its
//! `sqlite_stat1` by the same statement.
//!
//! Every store must return the same number of rows for every query, in
//! every round and whichever process ran it ([`check_counts`]); a
//! difference fails the run, so a fast wrong answer cannot pass unnoticed.

use std::path::Path;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::stores::Result;
use crate::summary::Spread;

/// The sizes of one `--sql` run.
#[derive(Debug, Clone, Serialize)]
pub struct SqlParams {
    /// Rows in `items`.
    pub rows: u64,
    /// TPC-H-like scale factor (1.0 would be 6M line items).
    pub scale: f64,
    /// Point selects, range selects and updates: at most this many each.
    pub ops: u64,
    /// Times each analytical query runs (the median is reported).
    pub reps: u32,
    /// A measured loop stops after this many seconds.
    pub time_limit_secs: f64,
    /// The workloads to run (`None`: all). `insert` always runs: it loads
    /// the rows the other `items` workloads read.
    pub workloads: Option<Vec<String>>,
}

impl SqlParams {
    /// Whether `workload` is to run.
    fn wants(&self, workload: &str) -> bool {
        self.workloads
            .as_ref()
            .is_none_or(|list| list.iter().any(|w| w == workload))
    }
}

/// One measured figure of one store.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SqlResult {
    /// The store.
    pub store: String,
    /// The workload.
    pub workload: String,
    /// Operations (rows inserted, statements, or queries) per second.
    pub ops_per_sec: f64,
    /// Median milliseconds per query (analytical queries), else mean.
    pub ms_per_op: f64,
    /// Operations measured.
    pub ops: u64,
    /// The round of `--repeat` it was measured in (0 for a single run).
    #[serde(default)]
    pub round: u32,
}

/// What one store measured in one round: its figures and, for the
/// cross-store check, the rows each analytical query returned. An
/// isolated child process writes it as JSON for its parent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoreRun {
    /// The store.
    pub store: String,
    /// Its figures.
    pub results: Vec<SqlResult>,
    /// `(workload, rows returned)`, in the order the workloads ran.
    pub counts: Vec<(String, u64)>,
}

/// Everything one `--sql` run measured.
#[derive(Debug, Clone, Serialize)]
pub struct SqlReport {
    /// The sizes.
    pub params: SqlParams,
    /// How each store is set up.
    pub settings: Vec<(String, String)>,
    /// The figures.
    pub results: Vec<SqlResult>,
}

/// The stores, in run order: `(name, settings)`.
pub const STORES: [(&str, &str); 4] = [
    ("pydb-memory", "memory engine, no persistence"),
    ("sqlite-memory", ":memory:, no persistence"),
    (
        "pydb-btree",
        "btree engine, SyncPolicy::Always (sync at every commit)",
    ),
    (
        "sqlite",
        "file, journal_mode=WAL, synchronous=FULL (sync at every commit)",
    ),
];

/// The pairs a ratio is computed for: (pydb store, SQLite store).
pub const PAIRS: [(&str, &str); 2] = [("pydb-memory", "sqlite-memory"), ("pydb-btree", "sqlite")];

/// A parameter value of a prepared statement.
#[derive(Debug, Clone, Copy)]
enum Param<'a> {
    Int(i64),
    Text(&'a str),
}

/// One connection.
trait Conn {
    /// Runs statements (SQL text, parsed at each call) whose rows (if any)
    /// are not needed.
    fn exec(&mut self, sql: &str) -> Result<()>;
    /// Runs one statement with `?` placeholders, prepared at its first use
    /// on this connection and cached, with `params`; reads every value of
    /// every row it returns, and returns the row count.
    fn run(&mut self, sql: &'static str, params: &[Param<'_>]) -> Result<u64>;
}

struct Pydb {
    session: pydb::Session,
    /// Prepared statements, by SQL text, hashed as rusqlite's
    /// `prepare_cached` hashes it (its `LruCache` uses hashbrown's default
    /// hasher, foldhash's fast one): std's SipHash cost about 300
    /// instructions a statement more for the same lookup.
    prepared: std::collections::HashMap<&'static str, pydb::Prepared, foldhash::fast::RandomState>,
    /// The parameter values of the statement being run, in a vector kept
    /// between statements (SQLite binds into its statement's registers,
    /// which are allocated once, too).
    values: Vec<pydb::Value>,
    // Keeps the database open as long as the session runs.
    _db: pydb::Db,
}

impl Pydb {
    fn new(db: pydb::Db) -> Self {
        Pydb {
            session: db.sql_session(),
            prepared: std::collections::HashMap::default(),
            values: Vec::new(),
            _db: db,
        }
    }
}

impl Conn for Pydb {
    fn exec(&mut self, sql: &str) -> Result<()> {
        self.session.execute(sql)?;
        Ok(())
    }

    fn run(&mut self, sql: &'static str, params: &[Param<'_>]) -> Result<u64> {
        let prepared = match self.prepared.get(sql) {
            Some(p) => p,
            None => {
                let p = self.session.prepare(sql)?;
                self.prepared.entry(sql).or_insert(p)
            }
        };
        self.values.clear();
        self.values.extend(params.iter().map(|p| match *p {
            Param::Int(i) => pydb::Value::Integer(i),
            Param::Text(t) => pydb::Value::text(t),
        }));
        let output = self.session.execute_prepared(prepared, &self.values)?;
        let n = match &output {
            pydb::Output::Rows(r) => {
                for row in &r.rows {
                    for v in row {
                        std::hint::black_box(v);
                    }
                }
                r.rows.len() as u64
            }
            _ => 0,
        };
        // Read, so handed back for the next statement to fill, as SQLite's
        // statement keeps its row's registers between steps.
        self.session.recycle(output);
        Ok(n)
    }
}

struct Sqlite(rusqlite::Connection);

impl Conn for Sqlite {
    fn exec(&mut self, sql: &str) -> Result<()> {
        self.0.execute_batch(sql)?;
        Ok(())
    }

    fn run(&mut self, sql: &'static str, params: &[Param<'_>]) -> Result<u64> {
        let mut stmt = self.0.prepare_cached(sql)?;
        for (i, p) in params.iter().enumerate() {
            match *p {
                Param::Int(v) => stmt.raw_bind_parameter(i + 1, v)?,
                Param::Text(v) => stmt.raw_bind_parameter(i + 1, v)?,
            }
        }
        let columns = stmt.column_count();
        let mut rows = stmt.raw_query();
        let mut n = 0;
        while let Some(row) = rows.next()? {
            for i in 0..columns {
                std::hint::black_box(row.get_ref(i)?);
            }
            n += 1;
        }
        Ok(n)
    }
}

fn open(store: &str, dir: &Path) -> Result<Box<dyn Conn>> {
    Ok(match store {
        "pydb-memory" => Box::new(Pydb::new(pydb::Db::memory()?)),
        "pydb-btree" => {
            let mut options = pydb::Options::with_engine(pydb::storage::EngineKind::BTree);
            options.sync = pydb::wal::SyncPolicy::Always;
            Box::new(Pydb::new(pydb::Db::open(dir, options)?))
        }
        "sqlite-memory" => Box::new(Sqlite(rusqlite::Connection::open_in_memory()?)),
        "sqlite" => {
            let conn = rusqlite::Connection::open(dir.join("data.sqlite"))?;
            let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(format!("SQLite refused WAL mode (got {mode})").into());
            }
            conn.pragma_update(None, "synchronous", "FULL")?;
            Box::new(Sqlite(conn))
        }
        other => return Err(format!("unknown SQL store {other:?}").into()),
    })
}

/// Our TPC-H-like generator: the shape of TPC-H's tables (fewer columns),
/// seeded, so that every store gets the same rows.
pub struct Tpch {
    /// Customers (150,000 at scale 1).
    pub customers: u64,
    /// Orders (1,500,000 at scale 1), each with 1 to 7 line items.
    pub orders: u64,
    /// Suppliers (10,000 at scale 1).
    pub suppliers: u64,
}

const NATIONS: [(&str, u64); 25] = [
    ("ALGERIA", 0),
    ("ARGENTINA", 1),
    ("BRAZIL", 1),
    ("CANADA", 1),
    ("EGYPT", 4),
    ("ETHIOPIA", 0),
    ("FRANCE", 3),
    ("GERMANY", 3),
    ("INDIA", 2),
    ("INDONESIA", 2),
    ("IRAN", 4),
    ("IRAQ", 4),
    ("JAPAN", 2),
    ("JORDAN", 4),
    ("KENYA", 0),
    ("MOROCCO", 0),
    ("MOZAMBIQUE", 0),
    ("PERU", 1),
    ("CHINA", 2),
    ("ROMANIA", 3),
    ("SAUDI ARABIA", 4),
    ("VIETNAM", 2),
    ("RUSSIA", 3),
    ("UNITED KINGDOM", 3),
    ("UNITED STATES", 1),
];
const REGIONS: [&str; 5] = ["AFRICA", "AMERICA", "ASIA", "EUROPE", "MIDDLE EAST"];
const SEGMENTS: [&str; 5] = [
    "AUTOMOBILE",
    "BUILDING",
    "FURNITURE",
    "HOUSEHOLD",
    "MACHINERY",
];
/// Days from 1992-01-01 to 1998-08-02, TPC-H's last order date.
const LAST_ORDER_DAY: u64 = 2405;

impl Tpch {
    /// The table sizes at `scale` (at least one row each).
    pub fn new(scale: f64) -> Self {
        let n = |base: f64| ((base * scale) as u64).max(1);
        Self {
            customers: n(150_000.0),
            orders: n(1_500_000.0),
            suppliers: n(10_000.0),
        }
    }

    /// The schema, then every row as an INSERT statement, in order.
    fn statements(&self, seed: u64) -> (Vec<&'static str>, Vec<String>) {
        let schema = vec![
            "CREATE TABLE region (r_regionkey INTEGER PRIMARY KEY, r_name TEXT)",
            "CREATE TABLE nation (n_nationkey INTEGER PRIMARY KEY, n_name TEXT, n_regionkey INTEGER)",
            "CREATE TABLE supplier (s_suppkey INTEGER PRIMARY KEY, s_name TEXT, s_nationkey INTEGER)",
            "CREATE TABLE customer (c_custkey INTEGER PRIMARY KEY, c_name TEXT, c_nationkey INTEGER, c_mktsegment TEXT)",
            "CREATE TABLE orders (o_orderkey INTEGER PRIMARY KEY, o_custkey INTEGER, o_totalprice REAL, o_orderdate INTEGER, o_shippriority INTEGER)",
            "CREATE TABLE lineitem (l_id INTEGER PRIMARY KEY, l_orderkey INTEGER, l_suppkey INTEGER, l_quantity INTEGER, l_extendedprice REAL, l_discount REAL, l_tax REAL, l_returnflag TEXT, l_linestatus TEXT, l_shipdate INTEGER)",
        ];
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut rows = Vec::new();
        for (i, r) in REGIONS.iter().enumerate() {
            rows.push(format!("INSERT INTO region VALUES ({i}, '{r}')"));
        }
        for (i, (n, r)) in NATIONS.iter().enumerate() {
            rows.push(format!("INSERT INTO nation VALUES ({i}, '{n}', {r})"));
        }
        for s in 0..self.suppliers {
            let nation = rng.random_range(0..25);
            rows.push(format!(
                "INSERT INTO supplier VALUES ({s}, 'Supplier#{s:09}', {nation})"
            ));
        }
        for c in 0..self.customers {
            let nation = rng.random_range(0..25);
            let segment = SEGMENTS[rng.random_range(0..SEGMENTS.len())];
            rows.push(format!(
                "INSERT INTO customer VALUES ({c}, 'Customer#{c:09}', {nation}, '{segment}')"
            ));
        }
        let mut line_id = 0u64;
        for o in 0..self.orders {
            let customer = rng.random_range(0..self.customers);
            let date = rng.random_range(0..=LAST_ORDER_DAY);
            let priority = rng.random_range(0..5);
            let mut total = 0.0;
            let mut lines = Vec::new();
            for _ in 0..rng.random_range(1..=7) {
                let supplier = rng.random_range(0..self.suppliers);
                let quantity: u64 = rng.random_range(1..=50);
                // Whole cents, so that every store sums the same values.
                let price = (quantity * rng.random_range(900..=2000)) as f64;
                let discount = f64::from(rng.random_range(0..=10u32)) / 100.0;
                let tax = f64::from(rng.random_range(0..=8u32)) / 100.0;
                let ship = date + rng.random_range(1..=121);
                // TPC-H: shipped before 1995-06-17 (day 1263) is returned or
                // accepted, later is not yet ('N'); status F before that day.
                let (flag, status) = if ship <= 1263 {
                    (if rng.random_bool(0.5) { "R" } else { "A" }, "F")
                } else {
                    ("N", "O")
                };
                total += price * (1.0 - discount) * (1.0 + tax);
                lines.push(format!(
                    "INSERT INTO lineitem VALUES ({line_id}, {o}, {supplier}, {quantity}, {price:.2}, {discount:.2}, {tax:.2}, '{flag}', '{status}', {ship})"
                ));
                line_id += 1;
            }
            rows.push(format!(
                "INSERT INTO orders VALUES ({o}, {customer}, {total:.2}, {date}, {priority})"
            ));
            rows.extend(lines);
        }
        (schema, rows)
    }
}

/// The three-table join and the TPC-H-like queries: `(name, SQL)`.
pub const QUERIES: [(&str, &str); 5] = [
    (
        "join3",
        "SELECT c_name, o_orderkey, o_totalprice FROM orders \
         JOIN customer ON o_custkey = c_custkey \
         JOIN nation ON c_nationkey = n_nationkey \
         WHERE n_name = 'GERMANY' AND o_orderdate BETWEEN 100 AND 400",
    ),
    (
        "q1",
        "SELECT l_returnflag, l_linestatus, SUM(l_quantity) AS sum_qty, \
         SUM(l_extendedprice) AS sum_base_price, \
         SUM(l_extendedprice * (1 - l_discount)) AS sum_disc_price, \
         SUM(l_extendedprice * (1 - l_discount) * (1 + l_tax)) AS sum_charge, \
         AVG(l_quantity) AS avg_qty, AVG(l_extendedprice) AS avg_price, \
         AVG(l_discount) AS avg_disc, COUNT(*) AS count_order \
         FROM lineitem WHERE l_shipdate <= 2436 \
         GROUP BY l_returnflag, l_linestatus ORDER BY l_returnflag, l_linestatus",
    ),
    (
        "q3",
        "SELECT l_orderkey, SUM(l_extendedprice * (1 - l_discount)) AS revenue, \
         o_orderdate, o_shippriority \
         FROM customer, orders, lineitem \
         WHERE c_mktsegment = 'BUILDING' AND c_custkey = o_custkey \
         AND l_orderkey = o_orderkey AND o_orderdate < 1169 AND l_shipdate > 1169 \
         GROUP BY l_orderkey, o_orderdate, o_shippriority \
         ORDER BY revenue DESC, o_orderdate LIMIT 10",
    ),
    (
        "q5",
        "SELECT n_name, SUM(l_extendedprice * (1 - l_discount)) AS revenue \
         FROM customer, orders, lineitem, supplier, nation, region \
         WHERE c_custkey = o_custkey AND l_orderkey = o_orderkey \
         AND l_suppkey = s_suppkey AND c_nationkey = s_nationkey \
         AND s_nationkey = n_nationkey AND n_regionkey = r_regionkey \
         AND r_name = 'ASIA' AND o_orderdate >= 730 AND o_orderdate < 1095 \
         GROUP BY n_name ORDER BY revenue DESC",
    ),
    (
        "q6",
        "SELECT SUM(l_extendedprice * l_discount) AS revenue FROM lineitem \
         WHERE l_shipdate >= 730 AND l_shipdate < 1095 \
         AND l_discount BETWEEN 0.05 AND 0.07 AND l_quantity < 24",
    ),
];

/// The GROUP BY over `items`.
pub const GROUP_BY: &str =
    "SELECT grp, COUNT(*), SUM(val), MIN(name) FROM items GROUP BY grp ORDER BY grp";

/// Runs `sql` in transactions of `per_txn` statements.
fn load(conn: &mut dyn Conn, sql: &[String], per_txn: usize) -> Result<()> {
    for chunk in sql.chunks(per_txn) {
        conn.exec("BEGIN")?;
        for s in chunk {
            conn.exec(s)?;
        }
        conn.exec("COMMIT")?;
    }
    Ok(())
}

/// `val` of row `id`: a permutation of `0..rows` when 7919 (a prime) does
/// not divide `rows`, so 100 consecutive values are 100 rows.
fn val_of(id: u64, rows: u64) -> u64 {
    (id * 7919) % rows
}

/// Records one figure: workload, operations, elapsed, median ms (if any).
type Push<'a> = dyn FnMut(&str, u64, Duration, Option<f64>) + 'a;

/// Measures one store; `counts` collects `(workload, rows returned)` for
/// the cross-store check.
fn run_store(
    store: &str,
    dir: &Path,
    p: &SqlParams,
    results: &mut Vec<SqlResult>,
    counts: &mut Vec<(String, u64)>,
) -> Result<()> {
    let mut conn = open(store, dir)?;
    let conn = conn.as_mut();
    let limit = Duration::from_secs_f64(p.time_limit_secs);
    let mut push = |workload: &str, ops: u64, elapsed: Duration, ms: Option<f64>| {
        let secs = elapsed.as_secs_f64().max(1e-9);
        results.push(SqlResult {
            store: store.into(),
            workload: workload.into(),
            ops_per_sec: ops as f64 / secs,
            ms_per_op: ms.unwrap_or(secs * 1000.0 / ops.max(1) as f64),
            ops,
            round: 0,
        });
        eprintln!(
            "{store:<14} {workload:<8} {:>12.1} ops/s {:>10.3} ms/op",
            ops as f64 / secs,
            ms.unwrap_or(secs * 1000.0 / ops.max(1) as f64)
        );
    };

    // insert
    conn.exec("CREATE TABLE items (id INTEGER PRIMARY KEY, grp INTEGER, val INTEGER, name TEXT)")?;
    conn.exec("CREATE INDEX items_val ON items (val)")?;
    let names: Vec<String> = (0..p.rows).map(|id| format!("name-{id}")).collect();
    let t = Instant::now();
    for chunk in (0..p.rows).collect::<Vec<_>>().chunks(1000) {
        conn.exec("BEGIN")?;
        for &id in chunk {
            conn.run(
                "INSERT INTO items VALUES (?, ?, ?, ?)",
                &[
                    Param::Int(id as i64),
                    Param::Int((id % 100) as i64),
                    Param::Int(val_of(id, p.rows) as i64),
                    Param::Text(&names[id as usize]),
                ],
            )?;
        }
        conn.exec("COMMIT")?;
    }
    push("insert", p.rows, t.elapsed(), None);
    drop(names);

    let mut rng = SmallRng::seed_from_u64(0x5eed);
    // point
    let (mut n, mut found, t) = (0, 0, Instant::now());
    let ops = if p.wants("point") { p.ops } else { 0 };
    while n < ops && t.elapsed() < limit {
        let id = rng.random_range(0..p.rows);
        found += conn.run(
            "SELECT id, grp, val, name FROM items WHERE id = ?",
            &[Param::Int(id as i64)],
        )?;
        n += 1;
    }
    if ops > 0 {
        push("point", n, t.elapsed(), None);
    }
    if found != n {
        return Err(format!("{store}: {n} point selects found {found} rows").into());
    }

    // range
    let (mut n, mut found, t) = (0, 0, Instant::now());
    let span = p.rows.saturating_sub(100).max(1);
    let ops = if p.wants("range") { p.ops } else { 0 };
    while n < ops && t.elapsed() < limit {
        let v = rng.random_range(0..span);
        found += conn.run(
            "SELECT id, name FROM items WHERE val BETWEEN ? AND ?",
            &[Param::Int(v as i64), Param::Int(v as i64 + 99)],
        )?;
        n += 1;
    }
    if ops > 0 {
        push("range", n, t.elapsed(), None);
    }
    if found != n * 100.min(p.rows) {
        return Err(format!("{store}: {n} range selects found {found} rows").into());
    }

    // update: a column the GROUP BY neither groups nor counts by, so the
    // groups stay the same however many updates a store fits in the time
    // limit (`SET grp = grp + 1` made new groups: 102 on one store, 101 on
    // the other, and a failed row-count check).
    let (mut n, t) = (0, Instant::now());
    let ops = if p.wants("update") { p.ops } else { 0 };
    while n < ops && t.elapsed() < limit {
        let id = rng.random_range(0..p.rows);
        conn.run(
            "UPDATE items SET name = name || '+' WHERE id = ?",
            &[Param::Int(id as i64)],
        )?;
        n += 1;
    }
    if ops > 0 {
        push("update", n, t.elapsed(), None);
    }

    // groupby, then the TPC-H-like queries
    let mut analytical =
        |conn: &mut dyn Conn, name: &str, sql: &'static str, push: &mut Push<'_>| -> Result<()> {
            let mut times = Vec::new();
            let start = Instant::now();
            let mut rows = 0;
            while times.len() < p.reps as usize && (times.is_empty() || start.elapsed() < limit) {
                let t = Instant::now();
                rows = conn.run(sql, &[])?;
                times.push(t.elapsed());
            }
            times.sort();
            let median = times[times.len() / 2].as_secs_f64() * 1000.0;
            push(name, times.len() as u64, start.elapsed(), Some(median));
            counts.push((name.to_string(), rows));
            Ok(())
        };
    if p.wants("groupby") {
        analytical(conn, "groupby", GROUP_BY, &mut push)?;
    }
    let tpch = ["tpchload", "join3", "q1", "q3", "q5", "q6"];
    if !tpch.iter().any(|w| p.wants(w)) {
        return Ok(());
    }

    let (schema, rows) = Tpch::new(p.scale).statements(42);
    for s in schema {
        conn.exec(s)?;
    }
    let t = Instant::now();
    load(conn, &rows, 1000)?;
    push("tpchload", rows.len() as u64, t.elapsed(), None);
    drop(rows);
    // Statistics for both planners, by the same statement (untimed): what
    // a user who cares about analytical plans runs after a bulk load.
    conn.exec("ANALYZE")?;
    for (name, sql) in QUERIES {
        if !p.wants(name) {
            continue;
        }
        analytical(conn, name, sql, &mut push)?;
    }
    Ok(())
}

/// The stores to run, in [`STORES`] order: all, or those of `only`.
pub fn select(only: Option<&[&str]>) -> Result<Vec<&'static str>> {
    if let Some(bad) = only
        .unwrap_or_default()
        .iter()
        .find(|s| !STORES.iter().any(|(name, _)| name == *s))
    {
        return Err(format!("unknown SQL store {bad:?}").into());
    }
    Ok(STORES
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| only.is_none_or(|only| only.contains(name)))
        .collect())
}

/// Measures `store` in a fresh directory under `base`, in this process,
/// and removes the directory afterwards.
pub fn run_one(p: &SqlParams, base: &Path, store: &str) -> Result<StoreRun> {
    let dir = base.join(store);
    std::fs::create_dir_all(&dir)?;
    let mut run = StoreRun {
        store: store.to_string(),
        results: Vec::new(),
        counts: Vec::new(),
    };
    let outcome = run_store(store, &dir, p, &mut run.results, &mut run.counts);
    let _ = std::fs::remove_dir_all(&dir);
    outcome.map_err(|e| format!("{store}: {e}"))?;
    Ok(run)
}

/// The cross-store check: every run (of every store and round) must
/// return the row counts of the first, or a fast wrong answer would pass.
pub fn check_counts(runs: &[StoreRun]) -> Result<()> {
    let Some((first, rest)) = runs.split_first() else {
        return Ok(());
    };
    match rest.iter().find(|r| r.counts != first.counts) {
        Some(other) => Err(format!(
            "row counts differ: {} {:?}, {} {:?}",
            first.store, first.counts, other.store, other.counts
        )
        .into()),
        None => Ok(()),
    }
}

impl SqlReport {
    /// The report of `runs`, which [`check_counts`] has passed.
    pub fn new(p: &SqlParams, runs: Vec<StoreRun>) -> Self {
        SqlReport {
            params: p.clone(),
            settings: STORES
                .iter()
                .map(|(s, d)| (s.to_string(), d.to_string()))
                .collect(),
            results: runs.into_iter().flat_map(|r| r.results).collect(),
        }
    }

    /// The figures of `store` on `workload`, one per round.
    fn of(&self, store: &str, workload: &str) -> impl Iterator<Item = &SqlResult> {
        self.results
            .iter()
            .filter(move |r| r.store == store && r.workload == workload)
    }

    /// A Markdown table: per workload, each store's figure and the
    /// pydb/SQLite ratios (above 1: pydb is faster). With several rounds
    /// (`--repeat`), each cell is the median with the lowest and highest
    /// round in brackets, and a ratio is taken within each round before
    /// its median is (as `--summarize` does for the key-value runs).
    pub fn table(&self) -> String {
        let mut workloads: Vec<&str> = Vec::new();
        for r in &self.results {
            if !workloads.contains(&r.workload.as_str()) {
                workloads.push(&r.workload);
            }
        }
        let cell = |values: &[f64], digits: usize, unit: &str| match Spread::of(values) {
            None => " - |".to_string(),
            Some(s) if s.runs == 1 => format!(" {:.digits$}{unit} |", s.median),
            Some(s) => format!(
                " {:.digits$}{unit} ({:.digits$}–{:.digits$}) |",
                s.median, s.min, s.max
            ),
        };
        let mut out = String::from("| workload | unit |");
        for (s, _) in STORES {
            out += &format!(" {s} |");
        }
        for (a, b) in PAIRS {
            out += &format!(" {a} / {b} |");
        }
        out += "\n|---|---|";
        out += &"---:|".repeat(STORES.len() + PAIRS.len());
        out += "\n";
        for w in workloads {
            let per_query = !matches!(w, "insert" | "point" | "range" | "update" | "tpchload");
            out += &format!("| {w} | {} |", if per_query { "ms/query" } else { "ops/s" });
            for (s, _) in STORES {
                if per_query {
                    let ms: Vec<f64> = self.of(s, w).map(|r| r.ms_per_op).collect();
                    out += &cell(&ms, 2, "");
                } else {
                    let ops: Vec<f64> = self.of(s, w).map(|r| r.ops_per_sec).collect();
                    out += &cell(&ops, 0, "");
                }
            }
            for (a, b) in PAIRS {
                // Speed ratio: SQLite's time over pydb's, within a round.
                let ratios: Vec<f64> = self
                    .of(a, w)
                    .filter(|x| x.ms_per_op > 0.0)
                    .filter_map(|x| {
                        let y = self.of(b, w).find(|y| y.round == x.round)?;
                        Some(y.ms_per_op / x.ms_per_op)
                    })
                    .collect();
                out += &cell(&ratios, 2, "x");
            }
            out += "\n";
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_run(store: &str, round: u32, ms: f64, groups: u64) -> StoreRun {
        StoreRun {
            store: store.into(),
            results: vec![SqlResult {
                store: store.into(),
                workload: "groupby".into(),
                ops_per_sec: 1000.0 / ms,
                ms_per_op: ms,
                ops: 5,
                round,
            }],
            counts: vec![("groupby".into(), groups)],
        }
    }

    #[test]
    fn a_store_with_other_row_counts_fails_the_check() {
        let same = [
            store_run("pydb-memory", 0, 1.0, 100),
            store_run("sqlite-memory", 0, 1.0, 100),
            store_run("sqlite-memory", 1, 1.0, 100),
        ];
        check_counts(&same).unwrap();
        // One store, in a later round, finds a group more.
        let mut planted = same.to_vec();
        planted.push(store_run("pydb-memory", 1, 1.0, 101));
        let e = check_counts(&planted).unwrap_err().to_string();
        assert!(e.contains("row counts differ") && e.contains("101"), "{e}");
        assert!(select(Some(&["sqlite", "nosuch"])).is_err());
        assert_eq!(
            select(Some(&["sqlite", "pydb-memory"])).unwrap(),
            ["pydb-memory", "sqlite"]
        );
    }

    #[test]
    fn rounds_give_medians_and_ratios_taken_within_a_round() {
        let p = SqlParams {
            rows: 1,
            scale: 0.001,
            ops: 1,
            reps: 1,
            time_limit_secs: 1.0,
            workloads: None,
        };
        let one = SqlReport::new(&p, vec![store_run("pydb-memory", 0, 2.0, 1)]);
        assert!(one.table().contains("| groupby | ms/query | 2.00 | - |"));
        // pydb 2, 4, 8 ms; SQLite 1, 4, 4 ms: ratios 0.5, 1.0, 0.5 within
        // the rounds (the ratio of the medians would be 1.0).
        let runs = [(2.0, 1.0), (4.0, 4.0), (8.0, 4.0)]
            .iter()
            .enumerate()
            .flat_map(|(round, &(pydb, sqlite))| {
                [
                    store_run("pydb-memory", round as u32, pydb, 1),
                    store_run("sqlite-memory", round as u32, sqlite, 1),
                ]
            })
            .collect();
        let table = SqlReport::new(&p, runs).table();
        assert!(
            table.contains(
                "| 4.00 (2.00–8.00) | 4.00 (1.00–4.00) | - | - | 0.50x (0.50–1.00) | - |"
            ),
            "{table}"
        );
    }
}
