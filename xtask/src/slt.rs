//! `cargo xtask slt [--engine E] PATH...`: run sqllogictest scripts.
//!
//! Each PATH is a script or a directory searched (recursively) for `*.test`
//! and `*.slt` scripts. Every script runs against a fresh database: the
//! memory engine by default, or a persistent engine in a temporary
//! directory. The adapter between the scripts and pydb is
//! `pydb_query::slt` (shared with the crate's own tests); this module only
//! finds files, opens databases and prints:
//!
//! ```text
//! PATH: N passed, M failed (K skipped)      one line per script, with time
//!   <the first failures: location, SQL, expected, got>
//! N passed, M failed                        the total
//! ```
//!
//! The command fails (exit code 1) if any record failed. SQLite's corpus is
//! large (select4.test has 48,000 lines): run it with `--release` (`cargo
//! xtask --release` is not a thing; use `cargo run --release -p xtask --
//! slt ...`), where each script takes seconds rather than minutes.

use std::path::{Path, PathBuf};
use std::time::Instant;

use pydb_query::slt;

use crate::crashtest::TempDir;

/// Flags of `cargo xtask slt`.
#[derive(clap::Args, Debug, Clone)]
pub struct SltArgs {
    /// The engine each script runs on: memory, log, btree or lsm.
    #[arg(long, default_value = "memory")]
    pub engine: String,
    /// Skip scripts whose path contains this text (repeatable), printing a
    /// SKIP line for each.
    #[arg(long)]
    pub skip: Vec<String>,
    /// Scripts, or directories of `*.test` and `*.slt` scripts.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

/// Totals over the scripts run.
#[derive(Debug, Default, Clone, Copy)]
pub struct Totals {
    /// Records that passed.
    pub passed: u64,
    /// Records that failed.
    pub failed: u64,
}

/// Runs every script under `args.paths`; fails if any record failed.
pub fn run(args: &SltArgs) -> Result<(), String> {
    let totals = run_scripts(args)?;
    if totals.failed > 0 {
        Err(format!("slt: {} records failed", totals.failed))
    } else {
        Ok(())
    }
}

/// Runs every script under `args.paths` and returns the totals.
pub fn run_scripts(args: &SltArgs) -> Result<Totals, String> {
    let mut files = Vec::new();
    for path in &args.paths {
        collect(path, &mut files)?;
    }
    if files.is_empty() {
        return Err("slt: no *.test or *.slt scripts under the given paths".into());
    }
    let mut totals = Totals::default();
    for file in files {
        let shown = file.display().to_string();
        if let Some(pattern) = args.skip.iter().find(|p| shown.contains(p.as_str())) {
            println!("{shown}: SKIP (--skip {pattern})");
            continue;
        }
        let started = Instant::now();
        // The temporary directory lives as long as the script's database.
        let temp = TempDir::new()?;
        let dir = temp.0.join("slt");
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let database = slt::open_database(&args.engine, &dir)
            .map_err(|e| format!("{shown}: open {} engine: {e}", args.engine))?;
        let report = slt::run_file(&file, &database)?;
        drop(database);
        println!(
            "{shown}: {} passed, {} failed ({} skipped) [{:.1?}]",
            report.passed,
            report.failed,
            report.skipped,
            started.elapsed()
        );
        for failure in &report.failures {
            println!("  {}", failure.trim_end().replace('\n', "\n  "));
        }
        totals.passed += report.passed;
        totals.failed += report.failed;
    }
    println!("{} passed, {} failed", totals.passed, totals.failed);
    Ok(totals)
}

/// Adds `path` (a script) or the scripts under `path` (a directory), in
/// name order, to `files`.
fn collect(path: &Path, files: &mut Vec<PathBuf>) -> Result<(), String> {
    if !path.is_dir() {
        if !path.exists() {
            return Err(format!("slt: {} does not exist", path.display()));
        }
        files.push(path.to_path_buf());
        return Ok(());
    }
    let mut entries = std::fs::read_dir(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    entries.sort();
    for entry in entries {
        let is_script = entry
            .extension()
            .is_some_and(|ext| ext == "test" || ext == "slt");
        if entry.is_dir() {
            collect(&entry, files)?;
        } else if is_script {
            files.push(entry);
        }
    }
    Ok(())
}
