//! `cargo xtask`: the developer tasks of pydb, runnable the same way locally
//! and in CI.
//!
//! - `cargo xtask ci`: exactly what CI runs (format, lints, docs, tests, a
//!   short crash test, a short fuzz run).

mod ci;

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
    /// Run what CI runs: fmt, clippy, doc, tests, short crash test and fuzz.
    Ci(ci::CiArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Ci(args) => ci::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}
