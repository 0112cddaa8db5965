//! `cargo xtask ci`: the checks CI runs, in the order that fails fastest.

use std::process::Command;

/// Flags of `cargo xtask ci`.
#[derive(clap::Args)]
pub struct CiArgs {
    /// Skip `cargo test --workspace` (CI runs it separately, as the README's
    /// test command).
    #[arg(long)]
    pub no_test: bool,
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
    Ok(())
}
