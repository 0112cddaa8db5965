//! Medians of repeated runs: `pydb-bench --summarize a.json b.json c.json`.
//!
//! One run of a benchmark on a shared machine moves by tens of percent, so
//! a figure worth quoting is the median of several runs with its spread.
//! This module reads the JSON reports of runs made with the same
//! parameters and prints, for every workload variant and store, the median
//! ops/s with the lowest and highest run, and the same for the ratio to the
//! baseline store. A ratio is taken *within* each run (both stores measured
//! minutes apart on the same machine) and then the median of those ratios
//! is reported; it is not the ratio of two medians.
//!
//! Runs must agree on their parameters (keys, sizes, time limit, cache) and
//! baseline: a median over different experiments would mean nothing, so a
//! mismatch is an error. A store or variant missing from some runs (it
//! failed there) is summarized over the runs that have it, and the count is
//! shown.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::report::{Report, si};
use crate::stores::Result;

/// The median, lowest and highest of a set of figures, and how many.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    /// The middle value (the mean of the two middle ones for an even count).
    pub median: f64,
    /// The lowest value.
    pub min: f64,
    /// The highest value.
    pub max: f64,
    /// How many values.
    pub runs: usize,
}

impl Spread {
    /// The spread of `values`; `None` if there are none.
    pub fn of(values: &[f64]) -> Option<Spread> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Spread {
            median,
            min: v[0],
            max: v[n - 1],
            runs: n,
        })
    }
}

/// Every variant and store of a set of runs, summarized.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The number of runs read.
    pub runs: usize,
    /// The baseline store of the ratios.
    pub baseline: String,
    /// The stores, in the order of the first run.
    pub stores: Vec<String>,
    /// The variant labels, in the order they first appear.
    pub labels: Vec<String>,
    /// ops/s per (label, store).
    pub ops: BTreeMap<(String, String), Spread>,
    /// Ratio to the baseline per (label, store), taken within each run.
    pub ratio: BTreeMap<(String, String), Spread>,
    /// (label, store) pairs that hit the time limit in at least one run.
    pub stopped_early: BTreeMap<(String, String), usize>,
}

/// Summarizes `reports`, which must share their parameters and baseline.
pub fn summarize(reports: &[Report]) -> Result<Summary> {
    let first = reports.first().ok_or("no report to summarize")?;
    let params = serde_json::to_string(&first.params)?;
    for (i, r) in reports.iter().enumerate().skip(1) {
        if serde_json::to_string(&r.params)? != params {
            return Err(format!(
                "run {} has other parameters than run 1 ({} vs {params}): medians would mix experiments",
                i + 1,
                serde_json::to_string(&r.params)?
            )
            .into());
        }
        if r.baseline != first.baseline {
            return Err(format!(
                "run {} has baseline {:?}, run 1 has {:?}",
                i + 1,
                r.baseline,
                first.baseline
            )
            .into());
        }
    }

    let mut stores: Vec<String> = Vec::new();
    let mut labels: Vec<String> = Vec::new();
    let mut ops: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
    let mut ratio: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
    let mut stopped_early: BTreeMap<(String, String), usize> = BTreeMap::new();
    for report in reports {
        for s in &report.stores {
            if !stores.contains(&s.store) {
                stores.push(s.store.clone());
            }
        }
        for row in &report.results {
            if !labels.contains(&row.label) {
                labels.push(row.label.clone());
            }
            let key = (row.label.clone(), row.store.clone());
            ops.entry(key.clone()).or_default().push(row.ops_per_sec);
            if row.stopped_early {
                *stopped_early.entry(key.clone()).or_default() += 1;
            }
            let base = report
                .results
                .iter()
                .find(|b| b.label == row.label && b.store == report.baseline);
            if let Some(base) = base
                && base.ops_per_sec > 0.0
            {
                ratio
                    .entry(key)
                    .or_default()
                    .push(row.ops_per_sec / base.ops_per_sec);
            }
        }
    }
    let spreads = |m: BTreeMap<(String, String), Vec<f64>>| {
        m.into_iter()
            .filter_map(|(k, v)| Spread::of(&v).map(|s| (k, s)))
            .collect()
    };
    Ok(Summary {
        runs: reports.len(),
        baseline: first.baseline.clone(),
        stores,
        labels,
        ops: spreads(ops),
        ratio: spreads(ratio),
        stopped_early,
    })
}

impl Summary {
    /// Two Markdown tables: median ops/s with the range over the runs, and
    /// the median ratio to the baseline with its range.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Median ops/s of {} runs, with the lowest and highest run in brackets \
             (`*`: stopped at the time limit in at least one run; `(n runs)`: \
             fewer runs had a result):\n",
            self.runs
        );
        self.table(&mut out, &self.ops, |s| {
            format!("{} ({}–{})", si(s.median), si(s.min), si(s.max))
        });
        let _ = writeln!(
            out,
            "\nMedian ratio to `{}` (taken within each run), with the lowest and highest run:\n",
            self.baseline
        );
        self.table(&mut out, &self.ratio, |s| {
            format!("{:.2}x ({:.2}–{:.2})", s.median, s.min, s.max)
        });
        out
    }

    fn table(
        &self,
        out: &mut String,
        cells: &BTreeMap<(String, String), Spread>,
        show: impl Fn(&Spread) -> String,
    ) {
        let _ = writeln!(out, "| workload | {} |", self.stores.join(" | "));
        let _ = writeln!(out, "|---|{}", "---:|".repeat(self.stores.len()));
        for label in &self.labels {
            let _ = write!(out, "| {label} |");
            for store in &self.stores {
                let key = (label.clone(), store.clone());
                let cell = match cells.get(&key) {
                    None => "–".to_string(),
                    Some(s) => {
                        let mut c = show(s);
                        if self.stopped_early.contains_key(&key) {
                            c.push('*');
                        }
                        if s.runs < self.runs {
                            let _ = write!(c, " ({} runs)", s.runs);
                        }
                        c
                    }
                };
                let _ = write!(out, " {cell} |");
            }
            out.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_of_odd_and_even_counts() {
        let s = Spread::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.runs), (2.0, 1.0, 3.0, 3));
        let s = Spread::of(&[4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.5, 1.0, 4.0));
        assert!(Spread::of(&[]).is_none());
        assert!(Spread::of(&[f64::NAN]).is_none());
    }

    /// A report with `ops` per (label, store), baseline "a".
    fn report(num: u64, rows: &[(&str, &str, f64)]) -> Report {
        let stores: Vec<_> = ["a", "b"]
            .iter()
            .map(|s| serde_json::json!({"store": s, "unsynced": "", "synced": ""}))
            .collect();
        let results: Vec<_> = rows
            .iter()
            .map(|(label, store, ops)| {
                serde_json::json!({
                    "store": store, "workload": label, "label": label, "threads": 1,
                    "batch": 1, "key_dist": "uniform", "read_pct": null, "synced": false,
                    "ops": 1, "secs": 1.0, "ops_per_sec": ops, "p50_us": 1.0,
                    "p99_us": 1.0, "p999_us": 1.0, "disk_bytes": 0, "write_amp": null,
                    "io_write_bytes": null, "user_bytes": 0, "peak_rss_bytes": null,
                    "stopped_early": *ops < 10.0, "settings": ""
                })
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "machine": {
                "cpu_model": "x", "cores": 1, "memory_bytes": 1, "kernel": "x", "os": "x",
                "data_dir": "x", "filesystem": "x", "filesystem_source": "x",
                "date_utc": "x", "io_accounting": false, "rss_accounting": false
            },
            "params": {
                "num": num, "key_size": 16, "value_size": 100, "sync_ops": 1,
                "scan_ops": 1, "reopen_rounds": 1, "time_limit_secs": 1.0, "cache_mb": 1
            },
            "baseline": "a",
            "stores": stores,
            "results": results,
            "skipped": [],
            "failed": []
        }))
        .unwrap()
    }

    #[test]
    fn medians_and_ratios_within_each_run() {
        let runs = [
            report(10, &[("fill", "a", 100.0), ("fill", "b", 300.0)]),
            report(10, &[("fill", "a", 200.0), ("fill", "b", 200.0)]),
            report(10, &[("fill", "a", 400.0), ("fill", "b", 2000.0)]),
        ];
        let s = summarize(&runs).unwrap();
        let key = |store: &str| ("fill".to_string(), store.to_string());
        let b = s.ops[&key("b")];
        assert_eq!((b.median, b.min, b.max, b.runs), (300.0, 200.0, 2000.0, 3));
        // Ratios per run: 3.0, 1.0, 5.0; the median is 3.0, not 300 / 200.
        let r = s.ratio[&key("b")];
        assert_eq!((r.median, r.min, r.max), (3.0, 1.0, 5.0));
        assert_eq!(s.ratio[&key("a")].median, 1.0);
        let md = s.markdown();
        assert!(
            md.contains("| fill | 200 (100–400) | 300 (200–2.00k) |"),
            "{md}"
        );
        assert!(
            md.contains("| fill | 1.00x (1.00–1.00) | 3.00x (1.00–5.00) |"),
            "{md}"
        );
    }

    #[test]
    fn missing_results_and_time_limits_are_marked() {
        let runs = [
            report(10, &[("fill", "a", 100.0), ("fill", "b", 5.0)]),
            report(10, &[("fill", "a", 100.0)]),
        ];
        let md = summarize(&runs).unwrap().markdown();
        assert!(md.contains("5.00 (5.00–5.00)* (1 runs)"), "{md}");
    }

    #[test]
    fn runs_with_other_parameters_are_refused() {
        let runs = [
            report(10, &[("fill", "a", 1.0)]),
            report(20, &[("fill", "a", 1.0)]),
        ];
        let err = summarize(&runs).unwrap_err().to_string();
        assert!(err.contains("other parameters"), "{err}");
        assert!(summarize(&[]).is_err());
    }
}
