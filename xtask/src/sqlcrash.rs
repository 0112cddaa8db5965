//! `cargo xtask crashtest --target sql`: SQL transactions under SIGKILL.
//!
//! The database has one table with a primary key and two secondary indexes
//! (one of them UNIQUE):
//!
//! ```sql
//! CREATE TABLE items(id INTEGER PRIMARY KEY, grp INTEGER, label TEXT)
//! CREATE INDEX items_grp ON items(grp)
//! CREATE UNIQUE INDEX items_label ON items(label)
//! ```
//!
//! The child's threads run transactions of several statements through a
//! `pydb_query::Session`: `BEGIN`, one `INSERT` per new row (with `grp =
//! -1`), an `UPDATE` that sets `grp = id % 7` on those rows (so that the
//! index entries of the insert are replaced inside the transaction), then
//! `COMMIT`, or, one time in eight, `ROLLBACK`. Before a transaction the
//! child prints `S <txn> C|R <id>...`, after its COMMIT returned `A <txn>`.
//! The parent kills the child at a random moment (the loop is the engine
//! crash test's, `crashtest::ChildRun`), reopens the
//! database and checks:
//!
//! - every acknowledged transaction's rows are there (**lost** if not);
//! - no row of a rolled-back transaction, and no row nobody sent, is there
//!   (**phantom**);
//! - a transaction in flight at the kill is there all or nothing, and every
//!   row has its final values (`grp = id % 7`): no statement of a
//!   transaction is seen without the others (**torn**);
//! - the verifier (`pydb_query::check`) finds every index entry matching
//!   its row and no entry without one, and a count through the `grp` index
//!   equals the count of the table (**inconsistent**).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pydb_query::{Database, Output, Session, Value};
use pydb_txn::{Options, TxnManager};

use crate::crashtest::{ChildArgs, ChildRun, CrashArgs, Rng, join_workers, rounds_root};
use crate::engines;

/// The schema, created when a database is created.
const SCHEMA: &str = "CREATE TABLE items(id INTEGER PRIMARY KEY, grp INTEGER, label TEXT); \
     CREATE INDEX items_grp ON items(grp); \
     CREATE UNIQUE INDEX items_label ON items(label)";

/// The number of `grp` values: a row's final `grp` is `id % GROUPS`.
const GROUPS: i64 = 7;

fn label(id: i64) -> String {
    format!("item-{id}")
}

/// Opens the engine with sync `always`, transactions and SQL over it.
fn open(engine: &str, dir: &Path, gc: bool) -> Result<Database, String> {
    let engine = engines::open(engine, dir).map_err(|e| format!("open: {e}"))?;
    let options = Options {
        gc_interval: gc.then(|| Duration::from_millis(50)),
        ..Options::default()
    };
    let mgr = TxnManager::open(engine, options).map_err(|e| format!("open transactions: {e}"))?;
    Database::new(Arc::new(mgr)).map_err(|e| format!("open SQL: {e}"))
}

/// A transaction as the child announced it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Txn {
    commit: bool,
    ids: Vec<i64>,
}

/// Runs one transaction; on any error rolls back what is open.
fn run_txn(session: &mut Session, txn: &Txn) -> pydb_query::Result<()> {
    let mut script = vec!["BEGIN".to_string()];
    for id in &txn.ids {
        script.push(format!(
            "INSERT INTO items VALUES ({id}, -1, '{}')",
            label(*id)
        ));
    }
    let list: Vec<String> = txn.ids.iter().map(i64::to_string).collect();
    script.push(format!(
        "UPDATE items SET grp = id % {GROUPS} WHERE id IN ({})",
        list.join(", ")
    ));
    script.push(if txn.commit { "COMMIT" } else { "ROLLBACK" }.into());
    for sql in &script {
        if let Err(e) = session.execute(sql) {
            if session.in_transaction() {
                let _ = session.execute("ROLLBACK");
            }
            return Err(e);
        }
    }
    Ok(())
}

/// The child: run transactions until killed.
pub fn child(args: &ChildArgs) -> Result<(), String> {
    let db = open(&args.engine, &args.dir, true)?;
    let out = Arc::new(crate::crashtest::LineOut::new());
    let mut handles = Vec::new();
    for tid in 0..args.threads {
        let mut session = db.session();
        let out = Arc::clone(&out);
        let seed = args.seed ^ ((tid as u64 + 1) << 32);
        let round = args.round;
        handles.push(std::thread::spawn(move || -> Result<(), String> {
            let mut rng = Rng::new(seed);
            let mut next = 0i64;
            for op in 0u64.. {
                // Ids are unique across rounds and threads: round, thread,
                // then a counter.
                let ids: Vec<i64> = (0..1 + rng.below(4))
                    .map(|_| {
                        next += 1;
                        ((round as i64) << 40) | ((tid as i64) << 32) | next
                    })
                    .collect();
                let txn = Txn {
                    commit: rng.below(8) != 0,
                    ids,
                };
                let id = format!("r{round}.t{tid}.{op}");
                let list: Vec<String> = txn.ids.iter().map(i64::to_string).collect();
                let kind = if txn.commit { "C" } else { "R" };
                out.line(&format!("S {id} {kind} {}", list.join(" ")));
                loop {
                    match run_txn(&mut session, &txn) {
                        Ok(()) => break,
                        Err(e) if e.is_retryable() => continue,
                        Err(e) => return Err(format!("transaction {id}: {e}")),
                    }
                }
                if txn.commit {
                    out.line(&format!("A {id}"));
                }
            }
            Ok(())
        }));
    }
    join_workers(handles, "transaction")?;
    Ok(())
}

/// Totals over all rounds.
#[derive(Debug, Default)]
struct Summary {
    iterations: u64,
    acked_checked: u64,
    rows_checked: u64,
    lost: u64,
    phantom: u64,
    torn: u64,
    inconsistent: u64,
    failed_opens: u64,
}

impl Summary {
    fn passed(&self) -> bool {
        self.lost == 0
            && self.phantom == 0
            && self.torn == 0
            && self.inconsistent == 0
            && self.failed_opens == 0
            && self.acked_checked > 0
    }
}

/// What the children of one directory announced.
#[derive(Debug, Default)]
struct History {
    /// Every transaction sent: id -> transaction.
    sent: BTreeMap<String, Txn>,
    /// The transactions whose COMMIT returned.
    acked: BTreeSet<String>,
}

impl History {
    fn record(&mut self, lines: &[String]) {
        for line in lines {
            let words: Vec<&str> = line.split(' ').collect();
            match words.as_slice() {
                ["S", id, kind @ ("C" | "R"), ids @ ..] => {
                    let ids: Option<Vec<i64>> = ids.iter().map(|i| i.parse().ok()).collect();
                    if let Some(ids) = ids.filter(|ids| !ids.is_empty()) {
                        let commit = *kind == "C";
                        self.sent.insert((*id).to_string(), Txn { commit, ids });
                    }
                }
                ["A", id] if self.sent.contains_key(*id) => {
                    self.acked.insert((*id).to_string());
                }
                _ => {} // a line cut by the kill
            }
        }
    }
}

/// The parent: `args.iterations` kill-and-check rounds.
pub fn run(args: &CrashArgs) -> Result<(), String> {
    engines::check_persistent(&args.engine)?;
    if args.encryption || args.compression != "none" {
        return Err("--encryption and --compression apply to the key-value target only".into());
    }
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let (root, _temp) = rounds_root(args.dir.as_ref())?;
    let started = Instant::now();
    let mut rng = Rng::new(args.seed);
    let mut summary = Summary::default();
    let mut history = History::default();
    for round in 0..args.iterations {
        if args.duration > 0 && started.elapsed() > Duration::from_secs(args.duration) {
            break;
        }
        let dir = root.join("sql");
        if round % 8 == 0 {
            // Start afresh now and then so that databases stay small.
            if dir.exists() {
                std::fs::remove_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            }
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            open(&args.engine, &dir, false)?
                .session()
                .execute(SCHEMA)
                .map_err(|e| format!("create the schema: {e}"))?;
            history = History::default();
        }
        let kill_after = Duration::from_millis(10 + rng.below(args.max_kill_ms.max(1)));
        let child = ChildRun {
            command: "crashtest-sql-child",
            dir: &dir,
            round,
            seed: rng.next_u64(),
        };
        let lines = child.run_until_killed(&exe, args, kill_after)?;
        history.record(&lines);
        check_round(args, &dir, round, &history, &mut summary);
        summary.iterations += 1;
        if round % 50 == 49 {
            eprintln!(
                "crashtest sql: {} rounds, {} acknowledged transactions checked, {} lost, {} phantom ({:.0?})",
                summary.iterations,
                summary.acked_checked,
                summary.lost,
                summary.phantom,
                started.elapsed()
            );
        }
    }
    println!(
        "crashtest sql: engine={} seed={} iterations={} acknowledged_checked={} rows_checked={} lost={} phantom={} torn={} inconsistent={} failed_opens={} elapsed={:.1?}",
        args.engine,
        args.seed,
        summary.iterations,
        summary.acked_checked,
        summary.rows_checked,
        summary.lost,
        summary.phantom,
        summary.torn,
        summary.inconsistent,
        summary.failed_opens,
        started.elapsed()
    );
    if summary.passed() {
        Ok(())
    } else {
        Err("SQL crash test FAILED".into())
    }
}

/// The first column of every row of a query's one output, as integers.
fn integers(session: &mut Session, sql: &str) -> Result<Vec<Vec<i64>>, String> {
    let outputs = session.execute(sql).map_err(|e| format!("{sql}: {e}"))?;
    let Some(Output::Rows(rows)) = outputs.into_iter().last() else {
        return Err(format!("{sql}: no rows"));
    };
    rows.rows
        .iter()
        .map(|row| {
            row.iter()
                .map(|v| match v {
                    Value::Integer(i) => Ok(*i),
                    other => Err(format!("{sql}: {other:?} is not an integer")),
                })
                .collect()
        })
        .collect()
}

/// The rows of the table: id -> (grp, label).
fn read_items(session: &mut Session) -> Result<BTreeMap<i64, (i64, String)>, String> {
    let sql = "SELECT id, grp, label FROM items";
    let outputs = session.execute(sql).map_err(|e| format!("{sql}: {e}"))?;
    let Some(Output::Rows(rows)) = outputs.into_iter().last() else {
        return Err(format!("{sql}: no rows"));
    };
    let mut items = BTreeMap::new();
    for row in rows.rows {
        match row.as_slice() {
            [Value::Integer(id), Value::Integer(grp), Value::Text(label)] => {
                items.insert(*id, (*grp, label.to_string()));
            }
            other => return Err(format!("{sql}: unexpected row {other:?}")),
        }
    }
    Ok(items)
}

fn check_round(args: &CrashArgs, dir: &Path, round: u64, history: &History, summary: &mut Summary) {
    let opened = open(&args.engine, dir, false).and_then(|db| {
        let mut session = db.session();
        let items = read_items(&mut session)?;
        Ok((db, session, items))
    });
    let (db, mut session, items) = match opened {
        Ok(opened) => opened,
        Err(e) => {
            eprintln!("round {round}: FAILED to reopen and read: {e}");
            summary.failed_opens += 1;
            return;
        }
    };
    summary.rows_checked += items.len() as u64;
    // Which transaction sent each id.
    let mut owner: BTreeMap<i64, &str> = BTreeMap::new();
    for (txn, sent) in &history.sent {
        for id in &sent.ids {
            owner.insert(*id, txn);
        }
    }
    for txn in &history.acked {
        summary.acked_checked += 1;
        let Some(sent) = history.sent.get(txn) else {
            continue;
        };
        for id in &sent.ids {
            if !items.contains_key(id) {
                eprintln!("round {round}: LOST row {id} of acknowledged transaction {txn}");
                summary.lost += 1;
            }
        }
    }
    for (id, (grp, text)) in &items {
        match owner.get(id).and_then(|txn| history.sent.get(*txn)) {
            Some(sent) if sent.commit => {}
            Some(_) => {
                eprintln!("round {round}: PHANTOM row {id} of a rolled-back transaction");
                summary.phantom += 1;
            }
            None => {
                eprintln!("round {round}: PHANTOM row {id} that no transaction sent");
                summary.phantom += 1;
            }
        }
        if *grp != id % GROUPS || *text != label(*id) {
            eprintln!("round {round}: TORN row {id}: grp {grp}, label {text}");
            summary.torn += 1;
        }
    }
    for (txn, sent) in &history.sent {
        let present = sent.ids.iter().filter(|id| items.contains_key(id)).count();
        if present != 0 && present != sent.ids.len() {
            eprintln!(
                "round {round}: TORN transaction {txn}: {present} of {} rows",
                sent.ids.len()
            );
            summary.torn += 1;
        }
    }
    match pydb_query::check::check(&db) {
        Ok(report) if report.is_ok() => {}
        Ok(report) => {
            for problem in &report.problems {
                eprintln!("round {round}: INCONSISTENT: {problem}");
            }
            summary.inconsistent += 1;
        }
        Err(e) => {
            eprintln!("round {round}: the verifier failed: {e}");
            summary.inconsistent += 1;
        }
    }
    // The same count through the grp index (an equality the planner serves
    // from the index) and through the table.
    let mut through_index = 0;
    for g in 0..GROUPS {
        let sql = format!("SELECT count(*) FROM items WHERE grp = {g}");
        match integers(&mut session, &sql) {
            Ok(rows) => through_index += rows.first().and_then(|r| r.first()).copied().unwrap_or(0),
            Err(e) => {
                eprintln!("round {round}: {e}");
                summary.inconsistent += 1;
                return;
            }
        }
    }
    if through_index != items.len() as i64 {
        eprintln!(
            "round {round}: INCONSISTENT: {through_index} rows through the grp index, {} in the table",
            items.len()
        );
        summary.inconsistent += 1;
    }
}
