//! `cargo xtask`: the developer tasks of pydb, runnable the same way locally
//! and in CI.
//!
//! - `cargo xtask ci`: what CI runs besides the tests (format, lints, docs,
//!   a short crash test, a short fuzz run).
//! - `cargo xtask crashtest`: kill a writing process with SIGKILL at random
//!   moments and check that no acknowledged write was lost (`--target
//!   bank`: the same for serializable bank transfers; `--target sql`: SQL
//!   transactions with secondary indexes).
//! - `cargo xtask fuzz`: run the cargo-fuzz targets and report executions.
//! - `cargo xtask slt PATH...`: run sqllogictest scripts against pydb's SQL.

mod bank;
mod ci;
mod crashtest;
mod engines;
mod fuzz;
mod shellcrash;
mod slt;
mod sqlcrash;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "pydb developer tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Run what CI runs: fmt, clippy, doc, tests, a short crash test and fuzz run.
    Ci(ci::CiArgs),
    /// Kill a writer with SIGKILL at random moments; check nothing acknowledged is lost.
    Crashtest {
        #[command(flatten)]
        args: crashtest::CrashArgs,
        /// What to kill: `engine` (a child writing through the engine API
        /// from several threads, with compactions), `bank` (serializable
        /// transfers through pydb-txn; the total and every acknowledged
        /// transfer must survive), `shell` (`pydb shell --sync always`
        /// driven through a pipe) or `sql` (SQL transactions on a table with
        /// secondary indexes; committed rows survive, indexes match).
        #[arg(long, default_value = "engine")]
        target: String,
    },
    /// The child process of the engine crash test (internal).
    #[command(hide = true)]
    CrashtestChild(crashtest::ChildArgs),
    /// The child process of the bank-transfer crash test (internal).
    #[command(hide = true)]
    CrashtestBankChild(crashtest::ChildArgs),
    /// The child process of the SQL crash test (internal).
    #[command(hide = true)]
    CrashtestSqlChild(crashtest::ChildArgs),
    /// Run the cargo-fuzz targets and report executions and crashes.
    Fuzz(fuzz::FuzzArgs),
    /// Run sqllogictest scripts (files or directories) against pydb's SQL.
    Slt(slt::SltArgs),
}

/// The root of the workspace (the parent of this crate's directory).
pub fn workspace_root() -> Result<PathBuf, String> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map(PathBuf::from)
        .ok_or_else(|| "xtask has no parent directory".to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Ci(args) => ci::run(&args),
        Task::Crashtest { args, target } => match target.as_str() {
            "engine" => crashtest::run(&args),
            "bank" => bank::run(&args),
            "shell" => build_pydb().and_then(|pydb| shellcrash::run(&args, &pydb)),
            "sql" => sqlcrash::run(&args),
            other => Err(format!(
                "unknown crash test target {other}: engine, bank, shell or sql"
            )),
        },
        Task::CrashtestChild(args) => crashtest::child(&args),
        Task::CrashtestBankChild(args) => bank::child(&args),
        Task::CrashtestSqlChild(args) => sqlcrash::child(&args),
        Task::Fuzz(args) => fuzz::run(&args),
        Task::Slt(args) => slt::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Builds the `pydb` binary in release mode and returns its path.
fn build_pydb() -> Result<PathBuf, String> {
    ci::step(
        "build pydb",
        "cargo",
        &["build", "--release", "--quiet", "-p", "pydb-cli"],
        &[],
    )?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().unwrap_or_default().join("target"));
    Ok(target.join("release").join("pydb"))
}
