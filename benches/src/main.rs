//! # pydb-bench: pydb's engines next to real embedded databases
//!
//! Runs the same workloads (in the spirit of RocksDB's `db_bench`) against
//! pydb's engines and against redb, fjall, LMDB, SQLite and, with the
//! `rocksdb` feature, RocksDB, and reports throughput, latency percentiles,
//! bytes on disk, write amplification and peak memory. See `README.md` in
//! this folder for what each workload measures and how each store is set
//! up.
//!
//! ## Process layout
//!
//! The parent process plans the runs and, for every store and workload,
//! re-executes its own binary as `pydb-bench --run-one ...` in a fresh
//! directory. The child opens the store, runs the workload, and prints one
//! JSON [`workload::Row`] on stdout. One process per run isolates the
//! stores from each other (no shared allocator state, page-cache warmth
//! aside) and makes the process-wide counters of `/proc/self` (peak RSS,
//! bytes written) belong to one store and one workload.

mod keys;
mod metrics;
mod plot;
mod report;
mod sql;
mod stores;
mod summary;
mod workload;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};

use crate::keys::KeyDist;
use crate::report::{Report, Skipped, StoreSettings};
use crate::stores::{Result, StoreConfig, StoreKind, WriteMode};
use crate::workload::{Params, Variant, Workload};

/// Compare pydb's storage engines with redb, fjall, LMDB, SQLite (and
/// RocksDB) on the same workloads.
#[derive(Debug, Parser)]
#[command(name = "pydb-bench", version)]
struct Args {
    /// Stores to run, comma-separated (default: all built in, except pydb's
    /// engines on encrypted or compressed files, `pydb-*+enc`/`+lz4`; with
    /// --sql: pydb-memory, sqlite-memory, pydb-btree, sqlite).
    #[arg(long)]
    stores: Option<String>,
    /// Workloads to run, comma-separated (default: all): fillseq,
    /// fillrandom, fillsync, readrandom, readmissing, readseq, scanrandom,
    /// overwrite, deleterandom, mixed, reopen; and `transfer` (transactional
    /// stores only, not in the default list).
    #[arg(long)]
    workloads: Option<String>,
    /// Keys in the database [default: 1000000, 20000 with --quick].
    #[arg(long, short = 'n')]
    num: Option<u64>,
    /// Key size in bytes (at least 8).
    #[arg(long, default_value_t = 16)]
    key_size: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// The fraction of each value that is random: 1.0 does not compress,
    /// 0.5 compresses about 2:1 under lz4.
    #[arg(long, default_value_t = 1.0)]
    value_compressibility: f64,
    /// Durable writes in each fillsync run, over all threads [default:
    /// 10000, 200 with --quick].
    #[arg(long)]
    sync_ops: Option<u64>,
    /// Scans in scanrandom [default: 10000, 1000 with --quick].
    #[arg(long)]
    scan_ops: Option<u64>,
    /// Opens timed by reopen [default: 3].
    #[arg(long, default_value_t = 3)]
    reopen_rounds: u64,
    /// A measured phase stops after this many seconds [default: 120, 5 with
    /// --quick].
    #[arg(long)]
    time_limit: Option<f64>,
    /// Cache budget, in MiB, for stores with their own cache.
    #[arg(long, default_value_t = 256)]
    cache_mb: u64,
    /// Everything small: about a minute for all stores and workloads.
    #[arg(long)]
    quick: bool,
    /// Where the databases are created [default: a temporary directory in
    /// the current directory, i.e. on the same disk].
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Draw ops/s per store and workload to this SVG file.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// The store ratios are relative to [default: pydb-log-btree if run,
    /// else pydb-memory, else the first store].
    #[arg(long)]
    baseline: Option<String>,
    /// List the stores and workloads, then exit.
    #[arg(long)]
    list: bool,
    /// Run nothing: summarize the JSON reports of several runs (same
    /// parameters) as the median and range of each figure.
    #[arg(long, num_args = 1.., value_name = "FILE.json")]
    summarize: Vec<PathBuf>,

    /// Run the SQL workloads instead (see `sql.rs`): pydb's SQL layer
    /// next to SQLite on the same SQL text. Uses --num (rows of `items`),
    /// --scale, --sql-ops, --time-limit, --quick, --stores, --workloads
    /// (insert, point, range, update, groupby, tpchload, join3, q1, q3, q5,
    /// q6; insert always runs), --dir and --json.
    #[arg(long)]
    sql: bool,
    /// TPC-H-like scale factor of --sql [default: 0.01, 0.001 with --quick].
    #[arg(long)]
    scale: Option<f64>,
    /// Point selects, range selects and updates of --sql, at most, each
    /// [default: 20000, 500 with --quick].
    #[arg(long)]
    sql_ops: Option<u64>,
    /// Run each --sql store in its own process (this binary re-executed
    /// for one store), so that no store's figure depends on the heap, page
    /// cache or clock that the stores before it left.
    #[arg(long)]
    isolate: bool,
    /// Run the --sql stores this many times, the order reversed every
    /// other round; the table shows each figure's median and range and
    /// each ratio's, taken within rounds.
    #[arg(long, default_value_t = 1)]
    repeat: u32,

    /// Internal: run the one --sql store of --stores in this process and
    /// write what it measured as JSON to this file (used by --isolate).
    #[arg(long, hide = true)]
    sql_child: Option<PathBuf>,

    /// Internal: run one store and workload variant in this process and
    /// print its result as JSON (used by the parent process).
    #[arg(long, hide = true)]
    run_one: bool,
    #[arg(long, hide = true)]
    store: Option<String>,
    #[arg(long, hide = true)]
    workload: Option<String>,
    #[arg(long, hide = true, default_value_t = 1)]
    threads: usize,
    #[arg(long, hide = true, default_value_t = 1)]
    batch: usize,
    #[arg(long, hide = true)]
    read_pct: Option<u8>,
    #[arg(long, hide = true, default_value = "uniform")]
    dist: String,
}

impl Args {
    fn params(&self) -> Params {
        let pick = |explicit: Option<u64>, quick: u64, full: u64| {
            explicit.unwrap_or(if self.quick { quick } else { full })
        };
        Params {
            num: pick(self.num, 20_000, 1_000_000),
            key_size: self.key_size.max(keys::MIN_KEY_SIZE),
            value_size: self.value_size,
            value_compressibility: self.value_compressibility,
            sync_ops: pick(self.sync_ops, 200, 10_000),
            scan_ops: pick(self.scan_ops, 1_000, 10_000),
            reopen_rounds: self.reopen_rounds,
            time_limit_secs: self
                .time_limit
                .unwrap_or(if self.quick { 5.0 } else { 120.0 }),
            cache_mb: self.cache_mb,
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let outcome = if args.sql {
        run_sql(&args)
    } else if args.run_one {
        run_one(&args)
    } else if !args.summarize.is_empty() {
        run_summary(&args.summarize)
    } else {
        run_all(&args)
    };
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pydb-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--summarize`: medians and ranges of the given reports, on stdout.
fn run_summary(paths: &[PathBuf]) -> Result<ExitCode> {
    let reports = paths
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()).into())
        })
        .collect::<Result<Vec<Report>>>()?;
    print!("{}", summary::summarize(&reports)?.markdown());
    Ok(ExitCode::SUCCESS)
}

/// `--sql`: every SQL store in turn (in this process, or each in a child
/// with `--isolate`), `--repeat` times, then the table.
fn run_sql(args: &Args) -> Result<ExitCode> {
    let p = sql_params(args);
    let temp;
    let base: PathBuf = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => {
            temp = tempfile::Builder::new()
                .prefix(".pydb-bench-sql-")
                .tempdir_in(std::env::current_dir()?)?;
            temp.path().to_path_buf()
        }
    };
    let only: Option<Vec<&str>> = args
        .stores
        .as_deref()
        .map(|s| s.split(',').map(str::trim).collect());
    let stores = sql::select(only.as_deref())?;
    if let Some(out) = &args.sql_child {
        let [store] = stores[..] else {
            return Err("--sql-child needs exactly one store in --stores".into());
        };
        let run = sql::run_one(&p, &base, store)?;
        std::fs::write(out, serde_json::to_string(&run)?)?;
        return Ok(ExitCode::SUCCESS);
    }

    let exe = std::env::current_exe()?;
    let mut runs: Vec<sql::StoreRun> = Vec::new();
    for round in 0..args.repeat.max(1) {
        // Every other round backwards: a store that always ran first (or
        // after the same neighbour) would carry that position's luck.
        let order: Vec<&str> = if round % 2 == 0 {
            stores.clone()
        } else {
            stores.iter().rev().copied().collect()
        };
        for store in order {
            let mut run = if args.isolate {
                run_sql_child(
                    &exe,
                    args,
                    &p,
                    store,
                    &base.join(format!("{round}-{store}")),
                )
                .map_err(|e| format!("{store}: {e}"))?
            } else {
                sql::run_one(&p, &base, store)?
            };
            for r in &mut run.results {
                r.round = round;
            }
            runs.push(run);
            // At once, so that a wrong answer stops the rounds to come.
            sql::check_counts(&runs)?;
        }
    }
    let report = sql::SqlReport::new(&p, runs);
    println!(
        "rows {}, scale {}, ops {}, reps {}, {} round(s){} (ratios: SQLite's time / pydb's, above 1 = pydb faster)",
        p.rows,
        p.scale,
        p.ops,
        p.reps,
        args.repeat.max(1),
        if args.isolate {
            ", a process per store"
        } else {
            ", one process"
        }
    );
    print!("{}", report.table());
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
        println!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// The sizes of `--sql`, from the flags and `--quick`.
fn sql_params(args: &Args) -> sql::SqlParams {
    let q = args.quick;
    sql::SqlParams {
        rows: args.num.unwrap_or(if q { 20_000 } else { 1_000_000 }),
        scale: args.scale.unwrap_or(if q { 0.001 } else { 0.01 }),
        ops: args.sql_ops.unwrap_or(if q { 500 } else { 20_000 }),
        reps: if q { 1 } else { 5 },
        time_limit_secs: args.time_limit.unwrap_or(if q { 5.0 } else { 60.0 }),
        workloads: args
            .workloads
            .as_deref()
            .map(|w| w.split(',').map(|s| s.trim().to_string()).collect()),
    }
}

/// Runs one SQL store in a child process (`--sql-child`) with the sizes
/// of `p`, in a fresh directory `dir`, and reads what it measured.
fn run_sql_child(
    exe: &Path,
    args: &Args,
    p: &sql::SqlParams,
    store: &str,
    dir: &Path,
) -> Result<sql::StoreRun> {
    let out = dir.join("result.json");
    std::fs::create_dir_all(dir)?;
    let mut cmd = Command::new(exe);
    cmd.arg("--sql")
        .args(["--stores", store])
        .args(["--num", &p.rows.to_string()])
        .args(["--scale", &p.scale.to_string()])
        .args(["--sql-ops", &p.ops.to_string()])
        .args(["--time-limit", &p.time_limit_secs.to_string()])
        .arg("--dir")
        .arg(dir)
        .arg("--sql-child")
        .arg(&out);
    if let Some(w) = &args.workloads {
        cmd.args(["--workloads", w]);
    }
    if args.quick {
        // Only the repetitions of the analytical queries are left to it.
        cmd.arg("--quick");
    }
    // The child's progress lines go to this process's stderr as they come.
    let status = cmd.status()?;
    let outcome = if status.success() {
        std::fs::read_to_string(&out)
            .map_err(Into::into)
            .and_then(|text| serde_json::from_str(&text).map_err(Into::into))
    } else {
        Err(format!("child exited with {status}").into())
    };
    let _ = std::fs::remove_dir_all(dir);
    outcome
}

/// The child: one store, one variant, result on stdout.
fn run_one(args: &Args) -> Result<ExitCode> {
    let kind = stores::find(args.store.as_deref().ok_or("--run-one needs --store")?)?;
    let name = args
        .workload
        .as_deref()
        .ok_or("--run-one needs --workload")?;
    let workload = Workload::parse(name).ok_or_else(|| format!("unknown workload {name:?}"))?;
    let dist = KeyDist::parse(&args.dist)
        .ok_or_else(|| format!("unknown key distribution {:?}", args.dist))?;
    let variant = Variant {
        workload,
        threads: args.threads,
        batch: args.batch,
        read_pct: args.read_pct,
        dist,
    };
    let dir = args.dir.as_deref().ok_or("--run-one needs --dir")?;
    std::fs::create_dir_all(dir)?;
    let row = workload::run(&kind, &variant, &args.params(), dir)?;
    println!("{}", serde_json::to_string(&row)?);
    Ok(ExitCode::SUCCESS)
}

/// Why `kind` cannot run `variant`, if it cannot.
fn skip_reason(kind: &StoreKind, variant: &Variant) -> Option<String> {
    if variant.workload == Workload::Transfer && !stores::TRANSACTIONAL.contains(&kind.name) {
        return Some(format!(
            "{} has no multi-key read-write transactions",
            kind.name
        ));
    }
    if kind.persistent {
        return None;
    }
    match variant.workload {
        Workload::FillSync => Some(format!(
            "{} persists nothing: no write can be durable",
            kind.name
        )),
        Workload::Reopen => Some(format!(
            "{} persists nothing: there is nothing to reopen",
            kind.name
        )),
        _ => None,
    }
}

fn select_workloads(list: Option<&str>) -> Result<Vec<Workload>> {
    let Some(list) = list else {
        return Ok(Workload::ALL.to_vec());
    };
    list.split(',')
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .map(|w| {
            Workload::parse(w).ok_or_else(|| {
                let known: Vec<&str> = Workload::ALL.iter().map(|w| w.name()).collect();
                format!("unknown workload {w:?}; known: {}", known.join(", ")).into()
            })
        })
        .collect()
}

/// The parent: plan, run every child, report.
fn run_all(args: &Args) -> Result<ExitCode> {
    let kinds = stores::select(args.stores.as_deref())?;
    let workloads = select_workloads(args.workloads.as_deref())?;
    let variants = workload::plan(&workloads);
    let params = args.params();

    if args.list {
        println!("stores:");
        for k in stores::registry() {
            println!("  {}", k.name);
        }
        println!("workload variants:");
        for v in workload::plan(&Workload::ALL) {
            println!("  {}", v.label());
        }
        return Ok(ExitCode::SUCCESS);
    }
    if kinds.is_empty() || variants.is_empty() {
        return Err("no store or no workload selected".into());
    }

    let baseline = match &args.baseline {
        Some(b) if kinds.iter().any(|k| k.name == b) => b.clone(),
        Some(b) => return Err(format!("baseline {b:?} is not among the selected stores").into()),
        None => ["pydb-log-btree", "pydb-memory"]
            .into_iter()
            .find(|b| kinds.iter().any(|k| k.name == *b))
            .unwrap_or(kinds[0].name)
            .to_string(),
    };

    // The data directory: given, or a temporary one on the disk of the
    // working directory (not /tmp, which may be tmpfs).
    let temp;
    let base: PathBuf = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => {
            temp = tempfile::Builder::new()
                .prefix(".pydb-bench-")
                .tempdir_in(std::env::current_dir()?)?;
            temp.path().to_path_buf()
        }
    };

    let machine = metrics::Machine::describe(&base);
    let settings = kinds
        .iter()
        .map(|k| {
            let config = |mode| StoreConfig {
                mode,
                cache_bytes: params.cache_mb << 20,
                data_bytes_hint: params.num * (params.key_size + params.value_size) as u64,
            };
            StoreSettings {
                store: k.name.to_string(),
                unsynced: (k.settings)(&config(WriteMode::Unsynced)),
                synced: (k.settings)(&config(WriteMode::Synced)),
            }
        })
        .collect();
    let mut report = Report {
        machine,
        params: params.clone(),
        baseline,
        stores: settings,
        results: Vec::new(),
        skipped: Vec::new(),
        failed: Vec::new(),
    };

    let jobs: Vec<(StoreKind, Variant)> = variants
        .iter()
        .flat_map(|v| kinds.iter().map(move |k| (*k, *v)))
        .collect();
    let bar = ProgressBar::new(jobs.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")?
            .progress_chars("=> "),
    );
    let exe = std::env::current_exe()?;
    for (job, (kind, variant)) in jobs.iter().enumerate() {
        let label = variant.label();
        bar.set_message(format!("{} / {label}", kind.name));
        if let Some(reason) = skip_reason(kind, variant) {
            report.skipped.push(Skipped {
                store: kind.name.into(),
                label,
                reason,
            });
            bar.inc(1);
            continue;
        }
        let dir = base.join(format!("{job:03}-{}", kind.name));
        let outcome = run_child(&exe, args, &params, kind, variant, &dir);
        // Each run gets a fresh directory; drop it now to keep the disk
        // (and the page cache) from filling up over the whole run.
        let _ = std::fs::remove_dir_all(&dir);
        match outcome {
            Ok(row) => {
                let line = format!(
                    "{:<16} {:<28} {:>9} ops/s",
                    row.store,
                    row.label,
                    report::si(row.ops_per_sec)
                );
                if bar.is_hidden() {
                    eprintln!("{line}");
                } else {
                    bar.println(line);
                }
                report.results.push(row);
            }
            Err(e) => {
                let line = format!("{} / {label} FAILED: {e}", kind.name);
                if bar.is_hidden() {
                    eprintln!("{line}");
                } else {
                    bar.println(line);
                }
                report.failed.push(Skipped {
                    store: kind.name.into(),
                    label,
                    reason: e.to_string(),
                });
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();

    print!("{}", report.table());
    print!("{}", report.notes());
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
        println!("wrote {}", path.display());
    }
    if let Some(path) = &args.plot {
        if report.results.is_empty() {
            eprintln!("no results: {} not drawn", path.display());
        } else {
            plot::plot(&report, path)?;
            println!("wrote {}", path.display());
        }
    }
    Ok(if report.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Runs one store and variant in a child process and reads its result.
fn run_child(
    exe: &Path,
    args: &Args,
    params: &Params,
    kind: &StoreKind,
    variant: &Variant,
    dir: &Path,
) -> Result<workload::Row> {
    let mut cmd = Command::new(exe);
    cmd.arg("--run-one")
        .args(["--store", kind.name])
        .args(["--workload", variant.workload.name()])
        .args(["--threads", &variant.threads.to_string()])
        .args(["--batch", &variant.batch.to_string()])
        .args(["--dist", variant.dist.name()])
        .args(["--num", &params.num.to_string()])
        .args(["--key-size", &params.key_size.to_string()])
        .args(["--value-size", &params.value_size.to_string()])
        .args([
            "--value-compressibility",
            &params.value_compressibility.to_string(),
        ])
        .args(["--sync-ops", &params.sync_ops.to_string()])
        .args(["--scan-ops", &params.scan_ops.to_string()])
        .args(["--reopen-rounds", &params.reopen_rounds.to_string()])
        .args(["--time-limit", &params.time_limit_secs.to_string()])
        .args(["--cache-mb", &params.cache_mb.to_string()])
        .arg("--dir")
        .arg(dir);
    if let Some(r) = variant.read_pct {
        cmd.args(["--read-pct", &r.to_string()]);
    }
    if args.quick {
        cmd.arg("--quick");
    }
    let out = cmd.output()?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(format!("child exited with {}: {}", out.status, stderr.trim()).into());
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().ok_or("child printed no result")?;
    Ok(serde_json::from_str(line)?)
}
