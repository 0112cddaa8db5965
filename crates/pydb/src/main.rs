//! The `pydb` command-line tool: the demo, the shell, and the file tools.
//!
//! `pydb` with no subcommand runs the demo. Exit codes: 0 on success, 1 when
//! `check` finds damage, 2 on any other error.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pydb::db::{HISTORY_FILE_NAME, parse_sync_policy};
use pydb::{Db, EngineKind, IndexKind, Options, SyncPolicy};

/// pydb: a database built from scratch to see, run and measure how storage
/// engines work.
#[derive(Debug, Parser)]
#[command(name = "pydb", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the demo in a temporary directory (the default).
    Demo,
    /// Open a database and type commands (SET, GET, DEL, RANGE, ...; HELP
    /// lists them). Reads one command per line when stdin is not a terminal.
    Shell {
        /// The database directory (ignored by the memory engine).
        #[arg(long, default_value = "./pydb-data")]
        dir: PathBuf,
        /// The storage engine: log or memory.
        #[arg(long, default_value = "log", value_parser = parse_engine)]
        engine: EngineKind,
        /// The in-memory index of the log engine: hash, btree or skiplist.
        #[arg(long, default_value = "btree", value_parser = parse_index)]
        index: IndexKind,
        /// When writes reach the disk: always, periodic, periodic:MS or never.
        #[arg(long, default_value = "always", value_parser = parse_sync)]
        sync: SyncPolicy,
    },
    /// Print every record of a pydb file with its checksum verdict.
    Inspect {
        /// The file: PYDB, a record log, ...
        path: PathBuf,
    },
    /// Verify every checksum of every file of a (closed) database.
    Check {
        /// The database directory.
        dir: PathBuf,
    },
    /// Salvage a damaged (closed) database: keep every batch that verifies,
    /// move what is replaced into DIR/repair-<timestamp>/.
    Repair {
        /// The database directory.
        dir: PathBuf,
    },
}

fn parse_engine(s: &str) -> Result<EngineKind, String> {
    s.parse().map_err(|e: pydb::Error| e.to_string())
}

fn parse_index(s: &str) -> Result<IndexKind, String> {
    s.parse().map_err(|e: pydb::Error| e.to_string())
}

fn parse_sync(s: &str) -> Result<SyncPolicy, String> {
    parse_sync_policy(s).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command.unwrap_or(Cmd::Demo)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pydb: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(command: Cmd) -> pydb::Result<ExitCode> {
    let mut stdout = std::io::stdout().lock();
    match command {
        Cmd::Demo => pydb::demo::run(&mut stdout)?,
        Cmd::Shell {
            dir,
            engine,
            index,
            sync,
        } => {
            drop(stdout);
            let options = Options {
                engine,
                index,
                sync,
            };
            let db = Db::open(&dir, options)?;
            let (history, banner) = if engine.is_persistent() {
                (
                    Some(dir.join(HISTORY_FILE_NAME)),
                    format!(
                        "pydb shell: {engine} engine, {index} index, sync {}, in {}",
                        sync_name(sync),
                        dir.display()
                    ),
                )
            } else {
                (
                    None,
                    "pydb shell: memory engine (nothing is saved)".to_string(),
                )
            };
            pydb::shell::run(&db, history, &banner)?;
            db.close()?;
        }
        Cmd::Inspect { path } => {
            let report = pydb::inspect::inspect(&path, &mut stdout)?;
            if !report.is_ok() {
                return Ok(ExitCode::from(1));
            }
        }
        Cmd::Check { dir } => {
            let summary = pydb::check::check_dir(&dir, &mut stdout)?;
            if !summary.is_ok() {
                return Ok(ExitCode::from(1));
            }
        }
        Cmd::Repair { dir } => drop(pydb::repair::repair_dir(&dir, &mut stdout)?),
    }
    Ok(ExitCode::SUCCESS)
}

fn sync_name(sync: SyncPolicy) -> String {
    match sync {
        SyncPolicy::Always => "always".into(),
        SyncPolicy::Never => "never".into(),
        SyncPolicy::Periodic(d) => format!("every {} ms", d.as_millis()),
    }
}
