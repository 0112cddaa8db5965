//! The output: the JSON report and the terminal table.
//!
//! The JSON file is the record of a run (machine, parameters, every store's
//! settings, every result, what was skipped and why); the table is the same
//! results for a human, grouped by workload, with each store's throughput
//! as a ratio to the baseline store's on the same workload.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::metrics::Machine;
use crate::workload::{Params, Row};

/// Everything a run produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// Where the run happened.
    pub machine: Machine,
    /// The sizes of the run.
    pub params: Params,
    /// The store every ratio is relative to.
    pub baseline: String,
    /// Each store and its settings.
    pub stores: Vec<StoreSettings>,
    /// One row per store and workload variant that ran.
    pub results: Vec<Row>,
    /// Store and workload pairs that were not run, with the reason.
    pub skipped: Vec<Skipped>,
    /// Store and workload pairs that failed, with the error.
    pub failed: Vec<Skipped>,
}

/// How a store was configured, for each kind of workload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoreSettings {
    /// The store's name.
    pub store: String,
    /// Settings for workloads whose writes need not be durable one by one.
    pub unsynced: String,
    /// Settings for `fillsync`, where every write is durable.
    pub synced: String,
}

/// A store and workload variant that produced no result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Skipped {
    /// The store's name.
    pub store: String,
    /// The variant's label.
    pub label: String,
    /// Why.
    pub reason: String,
}

/// `x` with a k/M/G suffix, three significant digits.
pub fn si(x: f64) -> String {
    let (v, unit) = if x >= 1e9 {
        (x / 1e9, "G")
    } else if x >= 1e6 {
        (x / 1e6, "M")
    } else if x >= 1e3 {
        (x / 1e3, "k")
    } else {
        (x, "")
    };
    if v >= 100.0 {
        format!("{v:.0}{unit}")
    } else if v >= 10.0 {
        format!("{v:.1}{unit}")
    } else {
        format!("{v:.2}{unit}")
    }
}

/// A duration in microseconds, in the unit that reads best.
fn latency(us: f64) -> String {
    if us >= 1e6 {
        format!("{:.2}s", us / 1e6)
    } else if us >= 1e3 {
        format!("{:.2}ms", us / 1e3)
    } else {
        format!("{us:.1}µs")
    }
}

/// Bytes in binary units.
fn bytes(b: u64) -> String {
    let b = b as f64;
    if b >= (1u64 << 30) as f64 {
        format!("{:.2}GiB", b / (1u64 << 30) as f64)
    } else if b >= (1u64 << 20) as f64 {
        format!("{:.1}MiB", b / (1u64 << 20) as f64)
    } else if b >= 1024.0 {
        format!("{:.0}KiB", b / 1024.0)
    } else {
        format!("{b:.0}B")
    }
}

impl Report {
    /// The results as a terminal table, one block per workload variant.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let header = [
            "store", "ops/s", "vs base", "p50", "p99", "p99.9", "disk", "w-amp", "peak RSS",
        ];
        let mut labels: Vec<&str> = Vec::new();
        for r in &self.results {
            if !labels.contains(&r.label.as_str()) {
                labels.push(&r.label);
            }
        }
        for label in labels {
            let rows: Vec<&Row> = self.results.iter().filter(|r| r.label == label).collect();
            let base = rows
                .iter()
                .find(|r| r.store == self.baseline)
                .map(|r| r.ops_per_sec);
            let mut lines: Vec<[String; 9]> = Vec::new();
            for r in rows {
                let ratio = match base {
                    Some(b) if b > 0.0 => format!("{:.2}x", r.ops_per_sec / b),
                    _ => "-".into(),
                };
                let mut store = r.store.clone();
                if r.stopped_early {
                    store.push('*');
                }
                lines.push([
                    store,
                    si(r.ops_per_sec),
                    ratio,
                    latency(r.p50_us),
                    latency(r.p99_us),
                    latency(r.p999_us),
                    bytes(r.disk_bytes),
                    r.write_amp
                        .map_or_else(|| "-".into(), |w| format!("{w:.2}")),
                    r.peak_rss_bytes.map_or_else(|| "-".into(), bytes),
                ]);
            }
            let mut widths = header.map(str::len);
            for line in &lines {
                for (w, cell) in widths.iter_mut().zip(line) {
                    *w = (*w).max(cell.chars().count());
                }
            }
            let _ = writeln!(out, "\n== {label} ==");
            let row = |cells: &[String]| {
                let mut s = String::new();
                for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
                    let pad = w.saturating_sub(cell.chars().count());
                    if i == 0 {
                        s.push_str(cell);
                        s.push_str(&" ".repeat(pad));
                    } else {
                        s.push_str("  ");
                        s.push_str(&" ".repeat(pad));
                        s.push_str(cell);
                    }
                }
                s
            };
            let _ = writeln!(out, "{}", row(&header.map(String::from)));
            for line in &lines {
                let _ = writeln!(out, "{}", row(line));
            }
        }
        if self.results.iter().any(|r| r.stopped_early) {
            let _ = writeln!(
                out,
                "\n* stopped at the time limit ({} s) before finishing its calls",
                self.params.time_limit_secs
            );
        }
        out
    }

    /// The settings, skips and failures, as text for the terminal.
    pub fn notes(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "\nStore settings (unsynced workloads | fillsync):");
        for s in &self.stores {
            let _ = writeln!(out, "  {:<14} {}", s.store, s.unsynced);
            let _ = writeln!(out, "  {:<14} {}", "", s.synced);
        }
        if !self.skipped.is_empty() {
            let _ = writeln!(out, "\nSkipped:");
            for s in &self.skipped {
                let _ = writeln!(out, "  {} / {}: {}", s.store, s.label, s.reason);
            }
        }
        if !self.failed.is_empty() {
            let _ = writeln!(out, "\nFAILED:");
            for s in &self.failed {
                let _ = writeln!(out, "  {} / {}: {}", s.store, s.label, s.reason);
            }
        }
        let m = &self.machine;
        let _ = writeln!(
            out,
            "\n{} keys of {} B, values of {} B; baseline {}; {} ({} cores), kernel {}, {} on {}",
            self.params.num,
            self.params.key_size,
            self.params.value_size,
            self.baseline,
            m.cpu_model,
            m.cores,
            m.kernel,
            m.filesystem,
            m.data_dir
        );
        if !m.io_accounting {
            let _ = writeln!(
                out,
                "write amplification not available: /proc/self/io is missing on this system"
            );
        }
        if !m.rss_accounting {
            let _ = writeln!(
                out,
                "peak RSS not available: /proc/self/status has no VmHWM on this system"
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn si_suffixes() {
        assert_eq!(si(999.0), "999");
        assert_eq!(si(1234.0), "1.23k");
        assert_eq!(si(45_600.0), "45.6k");
        assert_eq!(si(2_500_000.0), "2.50M");
    }
}
