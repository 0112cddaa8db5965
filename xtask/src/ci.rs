//! `cargo xtask ci`: the checks CI runs, in the order that fails fastest:
//! format, lints, docs, tests, a short crash test of every persistent engine,
//! a short bank-transfer crash test (transactions) on the log and B+tree
//! engines, a short SQL crash test on the same two, SQLite's sqllogictest
//! corpus (select1-5 and evidence/, when it is found next to the project),
//! and a short run of every fuzz target (the SQL parser's `sql_parse`
//! among them).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The scripts of SQLite's corpus CI runs, relative to the corpus directory.
pub const SLT_CORPUS: &[&str] = &[
    "select1.test",
    "select2.test",
    "select3.test",
    "select4.test",
    "select5.test",
    "evidence",
];

/// Scripts of the corpus left out, with the reason: pydb has no triggers
/// (issue 12 lets them go).
pub const SLT_SKIPPED: &[(&str, &str)] = &[
    ("slt_lang_createtrigger", "no triggers"),
    ("slt_lang_droptrigger", "no triggers"),
];

/// Where SQLite's sqllogictest corpus is: `../shared/sqllogictest` next to
/// the repository, or `/work/shared/sqllogictest`.
pub fn slt_corpus_dir(root: &Path) -> Option<PathBuf> {
    [
        root.join("..").join("shared").join("sqllogictest"),
        PathBuf::from("/work/shared/sqllogictest"),
    ]
    .into_iter()
    .find(|dir| dir.join("select1.test").is_file())
}

/// Runs the corpus with a release build of `cargo xtask slt` (a debug
/// build takes minutes per script), or prints a SKIP line if it is absent.
fn slt_corpus(root: &Path) -> Result<(), String> {
    let Some(dir) = slt_corpus_dir(root) else {
        eprintln!(
            "==> sqllogictest corpus: SKIP (not found at ../shared/sqllogictest or /work/shared/sqllogictest)"
        );
        return Ok(());
    };
    let mut args: Vec<String> = ["run", "--release", "--quiet", "-p", "xtask", "--", "slt"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for (name, why) in SLT_SKIPPED {
        eprintln!("==> sqllogictest corpus: skipping {name} ({why})");
        args.push("--skip".into());
        args.push((*name).to_string());
    }
    for script in SLT_CORPUS {
        args.push(dir.join(script).display().to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    step("sqllogictest corpus", "cargo", &args, &[])
}

/// Flags of `cargo xtask ci`.
#[derive(clap::Args)]
pub struct CiArgs {
    /// Skip `cargo test --workspace` (CI runs it separately, as the README's
    /// test command).
    #[arg(long)]
    pub no_test: bool,
    /// Seconds to fuzz each target.
    #[arg(long, default_value_t = 5)]
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
            encryption: false,
            compression: "none".into(),
            key_file: None,
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
            encryption: false,
            compression: "none".into(),
            key_file: None,
        })?;
    }
    for engine in ["log", "btree"] {
        eprintln!("==> crash test: SQL transactions on {engine}");
        crate::sqlcrash::run(&crate::crashtest::CrashArgs {
            iterations: 15,
            seed: 1,
            engine: engine.to_string(),
            duration: 60,
            threads: 4,
            max_kill_ms: 300,
            dir: None,
            encryption: false,
            compression: "none".into(),
            key_file: None,
        })?;
    }
    // The engines on encrypted and compressed files: short runs, to keep
    // CI's time small (the decorators' own fault tests run with the tests).
    for (engine, encryption, compression) in [
        ("log", true, "none"),
        ("lsm", true, "none"),
        ("log", false, "lz4"),
    ] {
        eprintln!("==> crash test: {engine}, encryption {encryption}, compression {compression}");
        crate::crashtest::run(&crate::crashtest::CrashArgs {
            iterations: 10,
            seed: 1,
            engine: engine.to_string(),
            duration: 30,
            threads: 4,
            max_kill_ms: 300,
            dir: None,
            encryption,
            compression: compression.into(),
            key_file: None,
        })?;
    }
    slt_corpus(&crate::workspace_root()?)?;
    eprintln!("==> fuzz: every target briefly");
    crate::fuzz::run(&crate::fuzz::FuzzArgs {
        target: None,
        seconds: args.fuzz_seconds,
        sanitizer: "none".into(),
    })?;
    Ok(())
}
