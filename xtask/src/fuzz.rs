//! `cargo xtask fuzz`: run the cargo-fuzz targets in `fuzz/` and report the
//! executions and crashes of each.
//!
//! cargo-fuzz needs nightly compiler flags (`-Zsanitizer`); on the stable
//! toolchain `RUSTC_BOOTSTRAP=1` unlocks them. Each target starts from the
//! seed corpus committed in `fuzz/corpus/<target>` and grows a scratch corpus
//! in `fuzz/corpus-run/<target>` (ignored by git), so a run never rewrites
//! the committed seeds. A crash leaves its input in `fuzz/artifacts/<target>`:
//! turn it into a regression test next to the code it broke.

use std::path::Path;
use std::process::Command;

/// Flags of `cargo xtask fuzz`.
#[derive(clap::Args, Debug, Clone)]
pub struct FuzzArgs {
    /// Run only this target (default: all of them).
    #[arg(long)]
    pub target: Option<String>,
    /// Seconds to fuzz each target.
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
    /// Build with this sanitizer (`address` finds more, `none` builds faster).
    #[arg(long, default_value = "address")]
    pub sanitizer: String,
}

/// The targets, in the order they run.
pub fn targets(root: &Path) -> Result<Vec<String>, String> {
    let dir = root.join("fuzz").join("fuzz_targets");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            name.strip_suffix(".rs").map(str::to_string)
        })
        .collect();
    names.sort();
    Ok(names)
}

fn ensure_cargo_fuzz() -> Result<(), String> {
    let installed = Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if installed {
        return Ok(());
    }
    crate::ci::step(
        "install cargo-fuzz",
        "cargo",
        &["install", "cargo-fuzz", "--locked"],
        &[],
    )
}

/// Runs the targets.
pub fn run(args: &FuzzArgs) -> Result<(), String> {
    let root = crate::workspace_root()?;
    ensure_cargo_fuzz()?;
    let all = targets(&root)?;
    let chosen: Vec<String> = match &args.target {
        Some(t) if all.contains(t) => vec![t.clone()],
        Some(t) => return Err(format!("no fuzz target {t}; targets: {}", all.join(", "))),
        None => all,
    };
    let mut failures = Vec::new();
    let mut report = Vec::new();
    for target in &chosen {
        let seeds = root.join("fuzz/corpus").join(target);
        let scratch = root.join("fuzz/corpus-run").join(target);
        std::fs::create_dir_all(&seeds).map_err(|e| format!("{}: {e}", seeds.display()))?;
        std::fs::create_dir_all(&scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
        let max_time = format!("-max_total_time={}", args.seconds);
        eprintln!("==> fuzz {target} for {} s", args.seconds);
        let output = Command::new("cargo")
            .current_dir(&root)
            .env("RUSTC_BOOTSTRAP", "1")
            .args(["fuzz", "run", "--sanitizer", &args.sanitizer, target])
            .arg(&scratch)
            .arg(&seeds)
            .args(["--", &max_time, "-print_final_stats=1", "-timeout=10"])
            .output()
            .map_err(|e| format!("cargo fuzz: {e}"))?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        let execs = stderr
            .lines()
            .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
            .map(|n| n.trim().to_string())
            .unwrap_or_else(|| "?".into());
        let crashed = !output.status.success();
        if crashed {
            let tail: Vec<&str> = stderr.lines().rev().take(40).collect();
            eprintln!("{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
            failures.push(target.clone());
        }
        report.push(format!(
            "fuzz: target={target} executions={execs} crashes={}",
            u8::from(crashed)
        ));
    }
    for line in &report {
        println!("{line}");
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!("fuzz targets crashed: {}", failures.join(", ")))
    }
}
