//! `cargo xtask ci`: the checks CI runs, in the order that fails fastest:
//! format, lints, docs, tests, a short crash test of every persistent engine,
//! a short bank-transfer crash test (transactions) on the log and B+tree
//! engines, and a short run of every fuzz target.

use std::process::Command;

/// Flags of `cargo xtask ci`.
#[derive(clap::Args)]
pub struct CiArgs {
    /// Skip `cargo test --workspace` (CI runs it separately, as the README's
    /// test command).
    #[arg(long)]
    pub no_test: bool,
    /// Seconds to fuzz each target.
    #[arg(long, default_value_t = 10)]
    pub fuzz_seconds: u64,
}

/// Runs one command, echoing it, and fails if it fails.
pub fn step(name: &str, program: &str, args: &[&str], env: &[(&str, &str)]) -> Result<(), String> {
    eprintln!("==> {name}: {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .status()
        .map_err(|e| format!("{name}: could not start {program}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{name} failed ({status})"))
    }
}

/// Runs every check.
pub fn run(args: &CiArgs) -> Result<(), String> {
    step("format", "cargo", &["fmt", "--all", "--check"], &[])?;
    step(
        "lints",
        "cargo",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    )?;
    step(
        "docs",
        "cargo",
        &["doc", "--workspace", "--no-deps"],
        &[("RUSTDOCFLAGS", "-D warnings")],
    )?;
    if !args.no_test {
        step("tests", "cargo", &["test", "--workspace"], &[])?;
    }
    for engine in crate::engines::PERSISTENT {
        eprintln!("==> crash test: {engine}");
        crate::crashtest::run(&crate::crashtest::CrashArgs {
            iterations: 25,
            seed: 1,
            engine: (*engine).to_string(),
            duration: 60,
            threads: 4,
            max_kill_ms: 300,
            dir: None,
        })?;
    }
    for engine in ["log", "btree"] {
        eprintln!("==> crash test: bank transfers on {engine}");
        crate::bank::run(&crate::crashtest::CrashArgs {
            iterations: 25,
            seed: 1,
            engine: engine.to_string(),
            duration: 60,
            threads: 4,
            max_kill_ms: 300,
            dir: None,
        })?;
    }
    eprintln!("==> fuzz: every target briefly");
    crate::fuzz::run(&crate::fuzz::FuzzArgs {
        target: None,
        seconds: args.fuzz_seconds,
        sanitizer: "none".into(),
    })?;
    Ok(())
}
