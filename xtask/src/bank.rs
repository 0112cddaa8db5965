//! `cargo xtask crashtest --target bank`: serializable bank transfers under
//! SIGKILL.
//!
//! The child opens an engine with sync `always` and a `pydb-txn`
//! [`TxnManager`] over it; its threads move money between a few accounts in
//! serializable transactions. Each transfer reads both balances, writes
//! both, and writes a *receipt* key `x/<id>` holding `from to amount`, all
//! in one transaction. Before a transfer the child prints `S <id> <from>
//! <to> <amount>`, after its commit returned `A <id>`. The parent kills the
//! child at a random moment, reopens the database and checks:
//!
//! - the total of the balances is unchanged (no transfer half applied);
//! - every acknowledged transfer has its receipt (**lost** if not);
//! - every receipt belongs to a transfer some child sent (**phantom** if
//!   not), and the balances are exactly the initial ones plus the effects of
//!   the receipts present: a transfer is in the database all or nothing.
//!
//! A transfer sent but not acknowledged (in flight at the kill) may or may
//! not be there; either is correct.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pydb_txn::{Isolation, Options, TxnManager};

use crate::crashtest::{ChildArgs, CrashArgs, Rng, join_workers, rounds_root};
use crate::engines;

/// Accounts in the bank: few, so that transfers conflict and retry.
const ACCOUNTS: u64 = 10;
/// Every account's balance when a database is created.
const INITIAL: i64 = 1_000;

fn account(i: u64) -> String {
    format!("acct{i:02}")
}

/// Opens the engine and the transaction layer over it.
fn open(args_engine: &str, dir: &Path, gc: bool) -> Result<TxnManager, String> {
    let engine = engines::open(args_engine, dir).map_err(|e| format!("open: {e}"))?;
    let options = Options {
        gc_interval: gc.then(|| Duration::from_millis(50)),
        max_retries: 1_000,
        ..Options::default()
    };
    TxnManager::open(engine, options).map_err(|e| format!("open transactions: {e}"))
}

/// A transfer as the child announced it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Transfer {
    from: u64,
    to: u64,
    amount: i64,
}

impl Transfer {
    fn receipt(&self) -> String {
        format!("{} {} {}", self.from, self.to, self.amount)
    }

    fn parse(from: &str, to: &str, amount: &str) -> Option<Self> {
        Some(Self {
            from: from.parse().ok().filter(|a| *a < ACCOUNTS)?,
            to: to.parse().ok().filter(|a| *a < ACCOUNTS)?,
            amount: amount.parse().ok()?,
        })
    }
}

fn parse_balance(key: &str, value: &[u8]) -> pydb_txn::Result<i64> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| pydb_txn::Error::Corrupted {
            key: key.to_string(),
            reason: "balance is not an integer".into(),
        })
}

/// The child: transfer until killed.
pub fn child(args: &ChildArgs) -> Result<(), String> {
    let bank = Arc::new(open(&args.engine, &args.dir, true)?);
    let out = Arc::new(crate::crashtest::LineOut::new());
    let mut handles = Vec::new();
    for tid in 0..args.threads {
        let bank = Arc::clone(&bank);
        let out = Arc::clone(&out);
        let seed = args.seed ^ ((tid as u64 + 1) << 32);
        let round = args.round;
        handles.push(std::thread::spawn(move || -> Result<(), String> {
            let mut rng = Rng::new(seed);
            for op in 0u64.. {
                let from = rng.below(ACCOUNTS);
                let to = (from + 1 + rng.below(ACCOUNTS - 1)) % ACCOUNTS;
                let amount = 1 + rng.below(50) as i64;
                let id = format!("r{round}.t{tid}.{op}");
                out.line(&format!("S {id} {from} {to} {amount}"));
                let transfer = Transfer { from, to, amount };
                bank.transaction(Isolation::Serializable, |tx| {
                    let (fk, tk) = (account(from), account(to));
                    let f = tx.get(fk.as_bytes())?.unwrap_or_default();
                    let t = tx.get(tk.as_bytes())?.unwrap_or_default();
                    let (f, t) = (parse_balance(&fk, &f)?, parse_balance(&tk, &t)?);
                    tx.set(fk.as_bytes(), (f - amount).to_string().as_bytes())?;
                    tx.set(tk.as_bytes(), (t + amount).to_string().as_bytes())?;
                    tx.set(format!("x/{id}").as_bytes(), transfer.receipt().as_bytes())
                })
                .map_err(|e| format!("transfer {id}: {e}"))?;
                out.line(&format!("A {id}"));
            }
            Ok(())
        }));
    }
    join_workers(handles, "transfer")?;
    Ok(())
}

/// The database seen by one read-only transaction: balances and receipts.
#[derive(Debug, Default)]
struct State {
    balances: BTreeMap<u64, i64>,
    receipts: BTreeMap<String, String>,
}

fn read_state(bank: &TxnManager) -> Result<State, String> {
    let tx = bank
        .begin_read_only(Isolation::Serializable)
        .map_err(|e| e.to_string())?;
    let mut state = State::default();
    for item in tx.scan::<&[u8]>(..).map_err(|e| e.to_string())? {
        let (k, v) = item.map_err(|e| e.to_string())?;
        let key = String::from_utf8_lossy(&k).into_owned();
        if let Some(id) = key.strip_prefix("x/") {
            let receipt = String::from_utf8_lossy(&v).into_owned();
            state.receipts.insert(id.to_string(), receipt);
        } else if let Some(n) = key.strip_prefix("acct").and_then(|n| n.parse().ok()) {
            let balance = parse_balance(&key, &v).map_err(|e| e.to_string())?;
            state.balances.insert(n, balance);
        } else {
            return Err(format!("unexpected key {key}"));
        }
    }
    Ok(state)
}

/// Creates the accounts of a new bank (one transaction).
fn create_accounts(bank: &TxnManager) -> Result<(), String> {
    bank.transaction(Isolation::Serializable, |tx| {
        for i in 0..ACCOUNTS {
            tx.set(account(i).as_bytes(), INITIAL.to_string().as_bytes())?;
        }
        Ok(())
    })
    .map_err(|e| format!("create accounts: {e}"))
}

/// Totals over all rounds.
#[derive(Debug, Default)]
struct Summary {
    iterations: u64,
    acked_checked: u64,
    lost: u64,
    phantom: u64,
    broken_totals: u64,
    failed_opens: u64,
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
    // Every transfer any child of a directory announced: id -> transfer.
    let mut sent: BTreeMap<String, Transfer> = BTreeMap::new();
    for round in 0..args.iterations {
        if args.duration > 0 && started.elapsed() > Duration::from_secs(args.duration) {
            break;
        }
        let dir = root.join("bank");
        if round % 8 == 0 {
            // Start afresh now and then so that databases stay small.
            if dir.exists() {
                std::fs::remove_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            }
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            create_accounts(&open(&args.engine, &dir, false)?)?;
            sent.clear();
        }
        let kill_after = Duration::from_millis(10 + rng.below(args.max_kill_ms.max(1)));
        let acked = run_child(
            &exe,
            args,
            &dir,
            round,
            rng.next_u64(),
            kill_after,
            &mut sent,
        )?;
        check_round(args, &dir, round, &sent, &acked, &mut summary);
        summary.iterations += 1;
        if round % 50 == 49 {
            eprintln!(
                "crashtest bank: {} rounds, {} acknowledged transfers checked, {} lost, {} phantom ({:.0?})",
                summary.iterations,
                summary.acked_checked,
                summary.lost,
                summary.phantom,
                started.elapsed()
            );
        }
    }
    println!(
        "crashtest bank: engine={} seed={} iterations={} acknowledged_checked={} lost={} phantom={} broken_totals={} failed_opens={} elapsed={:.1?}",
        args.engine,
        args.seed,
        summary.iterations,
        summary.acked_checked,
        summary.lost,
        summary.phantom,
        summary.broken_totals,
        summary.failed_opens,
        started.elapsed()
    );
    let passed = summary.lost == 0
        && summary.phantom == 0
        && summary.broken_totals == 0
        && summary.failed_opens == 0
        && summary.acked_checked > 0;
    if passed {
        Ok(())
    } else {
        Err("bank crash test FAILED".into())
    }
}

/// Runs one child until `kill_after`, records the transfers it announced in
/// `sent`, and returns the ids it acknowledged.
fn run_child(
    exe: &Path,
    args: &CrashArgs,
    dir: &Path,
    round: u64,
    seed: u64,
    kill_after: Duration,
    sent: &mut BTreeMap<String, Transfer>,
) -> Result<Vec<String>, String> {
    let child = crate::crashtest::ChildRun {
        command: "crashtest-bank-child",
        dir,
        round,
        seed,
    };
    let lines = child.run_until_killed(exe, args, kill_after)?;
    let mut acked = Vec::new();
    for line in lines {
        match line.split(' ').collect::<Vec<_>>().as_slice() {
            ["S", id, from, to, amount] => {
                if let Some(t) = Transfer::parse(from, to, amount) {
                    sent.insert((*id).to_string(), t);
                }
            }
            ["A", id] if sent.contains_key(*id) => acked.push((*id).to_string()),
            _ => {} // a line cut by the kill
        }
    }
    Ok(acked)
}

fn check_round(
    args: &CrashArgs,
    dir: &Path,
    round: u64,
    sent: &BTreeMap<String, Transfer>,
    acked: &[String],
    summary: &mut Summary,
) {
    let state = match open(&args.engine, dir, false).and_then(|bank| read_state(&bank)) {
        Ok(state) => state,
        Err(e) => {
            eprintln!("round {round}: FAILED to reopen: {e}");
            summary.failed_opens += 1;
            keep_evidence(args, dir, round);
            return;
        }
    };
    summary.acked_checked += acked.len() as u64;
    for id in acked {
        if !state.receipts.contains_key(id) {
            eprintln!("round {round}: LOST acknowledged transfer {id}");
            summary.lost += 1;
        }
    }
    // The balances must be exactly what the receipts present add up to.
    let mut expected: BTreeMap<u64, i64> = (0..ACCOUNTS).map(|a| (a, INITIAL)).collect();
    let mut seen = HashSet::new();
    for (id, receipt) in &state.receipts {
        match sent.get(id) {
            Some(t) if t.receipt() == *receipt => {
                *expected.entry(t.from).or_default() -= t.amount;
                *expected.entry(t.to).or_default() += t.amount;
                seen.insert(id);
            }
            _ => {
                eprintln!("round {round}: PHANTOM receipt {id} = {receipt}");
                summary.phantom += 1;
            }
        }
    }
    let total: i64 = state.balances.values().sum();
    if total != INITIAL * ACCOUNTS as i64 || state.balances.len() as u64 != ACCOUNTS {
        eprintln!(
            "round {round}: BROKEN total {total} over {} accounts",
            state.balances.len()
        );
        summary.broken_totals += 1;
    }
    if state.balances != expected {
        eprintln!(
            "round {round}: PHANTOM balances {:?}, the receipts present give {expected:?}",
            state.balances
        );
        summary.phantom += 1;
    }
}

/// With `--dir`, copies a directory that failed to reopen next to it
/// (`failed-round-N`), before later rounds change or remove it.
fn keep_evidence(args: &CrashArgs, dir: &Path, round: u64) {
    let Some(root) = &args.dir else { return };
    let copy = root.join(format!("failed-round-{round}"));
    match Command::new("cp").arg("-a").arg(dir).arg(&copy).status() {
        Ok(status) if status.success() => {
            eprintln!("round {round}: the directory is kept in {}", copy.display());
        }
        other => eprintln!("round {round}: could not keep the directory: {other:?}"),
    }
}
