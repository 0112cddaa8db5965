//! Table statistics: what `ANALYZE` learns about a table's data, and what
//! the cost model ([`super::cost`]) reads to estimate how many rows an
//! operator produces.
//!
//! Per table, the row count and the average stored row width; per column,
//! the number of distinct values, the fraction of NULLs, the most common
//! values with their frequencies, and an equi-depth histogram of the other
//! values (bucket bounds such that each bucket holds about the same number
//! of rows), as PostgreSQL's `pg_statistic` keeps them.
//!
//! # How ANALYZE collects them ([`collect`])
//!
//! Collection is a pure function over the table's rows, so it is tested
//! without a database. The row count is exact (every row is counted).
//! Everything else is computed from a *sample*: the first
//! [`SAMPLE_ROWS`] rows are all kept, and after that each new row replaces
//! a random kept one with probability `SAMPLE_ROWS / rows seen` (reservoir
//! sampling, "algorithm R"), so every row is equally likely to be in the
//! sample however long the table is, and memory stays bounded. A table of
//! at most [`SAMPLE_ROWS`] rows is sampled whole, so its statistics are
//! exact. The random generator has a fixed seed: ANALYZE of the same rows
//! gives the same statistics (and the same plans) every time.
//!
//! Per column, the sample's non-NULL values are sorted and counted:
//!
//! - **distinct**: exact when the sample is the table. Otherwise the
//!   Haas-Stokes estimator PostgreSQL uses, `n*d / (n - f1 + f1*n/N)`
//!   (`n` sampled values, `d` distinct among them, `f1` seen exactly once,
//!   `N` values in the table); when every sampled value is unique the
//!   column is taken to be unique.
//! - **MCVs** (most common values, up to [`MAX_MCV`]): when the sample is
//!   the whole table and has at most [`MAX_MCV`] distinct values, all of
//!   them (the distribution is then known exactly); otherwise the values
//!   more frequent than average, seen at least twice, most frequent
//!   first. Text wider than [`MAX_STATS_TEXT`] bytes is never an MCV.
//! - **histogram** (up to [`MAX_BUCKETS`] buckets): over the sorted
//!   values that are not MCVs, bound `i` is the value at position
//!   `i * (m - 1) / buckets`, so each bucket holds about `m / buckets`
//!   values. Text bounds are cut to [`MAX_STATS_TEXT`] bytes (a prefix
//!   sorts no later than the value, which is good enough to estimate).
//!
//! Example: a column holding 1 in 500 of 1000 rows, NULL in 100, and 2..=401
//! once each has `null_frac = 0.1`, MCV `[(1, 0.5)]`, `distinct = 401`, and a
//! histogram over 2..=401 whose 100 buckets hold 4 values each.
//!
//! Statistics may be stale: rows written after ANALYZE are not in them. The
//! optimizer only uses them to guess sizes, so stale statistics give worse
//! plans, never wrong rows.

use std::cmp::Ordering;

use crate::encoding::encode_row;
use crate::value::{Row, Value};

/// The most rows ANALYZE keeps in its sample (PostgreSQL: 300 x the
/// statistics target of 100).
pub const SAMPLE_ROWS: usize = 30_000;
/// The most common values kept per column.
pub const MAX_MCV: usize = 100;
/// The most histogram buckets per column.
pub const MAX_BUCKETS: usize = 100;
/// Text longer than this (in bytes) is cut in histogram bounds and never
/// kept as an MCV, so that a statistics record stays small.
pub const MAX_STATS_TEXT: usize = 256;

/// What ANALYZE found in one table.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TableStats {
    /// The number of rows.
    pub row_count: u64,
    /// The average size of a stored row in bytes (its encoded row; the
    /// key is not counted), for the cost model's page estimates.
    pub avg_row_bytes: u64,
    /// One entry per column of the table, in column order.
    pub columns: Vec<ColumnStats>,
}

/// What ANALYZE found in one column.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ColumnStats {
    /// The number of distinct non-NULL values.
    pub distinct: u64,
    /// The fraction of rows whose value is NULL (0.0 to 1.0).
    pub null_frac: f64,
    /// The most common values, each with the fraction of rows that hold
    /// it, most frequent first.
    pub mcv: Vec<(Value, f64)>,
    /// Equi-depth histogram bounds over the values not in `mcv`, in
    /// ascending order: `n + 1` bounds delimit `n` buckets of about equal
    /// row counts. Empty when there are too few values.
    pub histogram: Vec<Value>,
}

impl ColumnStats {
    /// The fraction of rows that hold one of the MCVs.
    pub fn mcv_frac(&self) -> f64 {
        self.mcv.iter().map(|(_, f)| f).sum()
    }
}

/// A small deterministic generator (xorshift64*) for reservoir sampling.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Keeps a uniform sample of at most `capacity` rows of a stream.
#[derive(Debug)]
struct Reservoir {
    capacity: usize,
    seen: u64,
    rows: Vec<Row>,
}

/// Computes the statistics of a table of `width` columns from all of its
/// rows (sampling beyond [`SAMPLE_ROWS`], see the module docs).
pub fn collect(rows: impl IntoIterator<Item = Row>, width: usize) -> TableStats {
    collect_with_sample(rows, width, SAMPLE_ROWS)
}

/// [`collect`] with a sample of at most `sample` rows (for tests).
pub fn collect_with_sample(
    rows: impl IntoIterator<Item = Row>,
    width: usize,
    sample: usize,
) -> TableStats {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut reservoir = Reservoir {
        capacity: sample.max(1),
        seen: 0,
        rows: Vec::new(),
    };
    for row in rows {
        reservoir.seen += 1;
        if reservoir.rows.len() < reservoir.capacity {
            reservoir.rows.push(row);
        } else {
            let slot = rng.below(reservoir.seen);
            if let Some(kept) = usize::try_from(slot)
                .ok()
                .and_then(|s| reservoir.rows.get_mut(s))
            {
                *kept = row;
            }
        }
    }
    let total = reservoir.seen;
    let sampled = reservoir.rows.len();
    let whole = total == sampled as u64;
    let bytes: usize = reservoir.rows.iter().map(|r| encode_row(r).len()).sum();
    let avg_row_bytes = if sampled == 0 {
        0
    } else {
        (bytes as f64 / sampled as f64).round() as u64
    };
    let columns = (0..width)
        .map(|c| {
            let values: Vec<&Value> = reservoir
                .rows
                .iter()
                .map(|r| r.get(c).unwrap_or(&Value::Null))
                .collect();
            column_stats(values, total, whole)
        })
        .collect();
    TableStats {
        row_count: total,
        avg_row_bytes,
        columns,
    }
}

/// The statistics of one column from its sampled values (`total`: the
/// rows of the table; `whole`: the sample is the whole table).
fn column_stats(values: Vec<&Value>, total: u64, whole: bool) -> ColumnStats {
    let sampled = values.len();
    if sampled == 0 {
        return ColumnStats::default();
    }
    let mut present: Vec<&Value> = values.into_iter().filter(|v| !v.is_null()).collect();
    let nulls = sampled - present.len();
    let null_frac = nulls as f64 / sampled as f64;
    present.sort_by(|a, b| a.total_cmp(b));
    // Runs of equal values: (value, count), ascending.
    let mut runs: Vec<(&Value, usize)> = Vec::new();
    for v in &present {
        match runs.last_mut() {
            Some((last, n)) if last.total_cmp(v) == Ordering::Equal => *n += 1,
            _ => runs.push((v, 1)),
        }
    }
    let n = present.len();
    let d = runs.len();
    let distinct = if whole {
        d as u64
    } else {
        let singles = runs.iter().filter(|(_, c)| *c == 1).count();
        // Non-NULL values in the table, estimated.
        let big_n = ((1.0 - null_frac) * total as f64).max(n as f64);
        if singles == n {
            big_n.round() as u64
        } else {
            let (n, d, f1) = (n as f64, d as f64, singles as f64);
            let estimate = n * d / (n - f1 + f1 * n / big_n);
            estimate.clamp(d, big_n).round() as u64
        }
    };

    // The most common values.
    let mut candidates: Vec<(&Value, usize)> = runs
        .iter()
        .copied()
        .filter(|(v, _)| !matches!(v, Value::Text(t) if t.len() > MAX_STATS_TEXT))
        .collect();
    let keep_all = whole && d <= MAX_MCV && candidates.len() == d;
    if !keep_all {
        let average = n as f64 / d.max(1) as f64;
        candidates.retain(|(_, c)| *c >= 2 && *c as f64 > average);
    }
    // Most frequent first; ties in value order (stable sort).
    candidates.sort_by_key(|c| std::cmp::Reverse(c.1));
    candidates.truncate(MAX_MCV);
    let mcv: Vec<(Value, f64)> = candidates
        .iter()
        .map(|(v, c)| ((*v).clone(), *c as f64 / sampled as f64))
        .collect();

    // The histogram over the other values.
    let rest: Vec<&Value> = present
        .iter()
        .copied()
        .filter(|v| {
            !candidates
                .iter()
                .any(|(m, _)| m.total_cmp(v) == Ordering::Equal)
        })
        .collect();
    let rest_distinct = d - candidates.len();
    let buckets = MAX_BUCKETS.min(rest_distinct.saturating_sub(1));
    let histogram = if buckets == 0 {
        Vec::new()
    } else {
        (0..=buckets)
            .map(|i| cut_text(rest[i * (rest.len() - 1) / buckets]))
            .collect()
    };
    ColumnStats {
        distinct,
        null_frac,
        mcv,
        histogram,
    }
}

/// `v`, with text cut to at most [`MAX_STATS_TEXT`] bytes (at a character
/// boundary).
fn cut_text(v: &Value) -> Value {
    match v {
        Value::Text(t) if t.len() > MAX_STATS_TEXT => {
            let mut end = MAX_STATS_TEXT;
            while !t.is_char_boundary(end) {
                end -= 1;
            }
            Value::text(&t[..end])
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(i: i64) -> Value {
        Value::Integer(i)
    }

    /// The module docs' example: 500 ones, 100 NULLs, 2..=401 once each.
    fn skewed() -> Vec<Row> {
        let mut rows: Vec<Row> = Vec::new();
        rows.extend((0..500).map(|_| vec![int(1)]));
        rows.extend((0..100).map(|_| vec![Value::Null]));
        rows.extend((2..=401).map(|i| vec![int(i)]));
        rows
    }

    #[test]
    fn skewed_column_has_one_mcv_nulls_and_an_equi_depth_histogram() {
        let stats = collect(skewed(), 1);
        assert_eq!(stats.row_count, 1000);
        let c = &stats.columns[0];
        assert_eq!(c.distinct, 401);
        assert!((c.null_frac - 0.1).abs() < 1e-9);
        assert_eq!(c.mcv, vec![(int(1), 0.5)]);
        assert_eq!(c.histogram.len(), MAX_BUCKETS + 1);
        assert_eq!(c.histogram.first(), Some(&int(2)));
        assert_eq!(c.histogram.last(), Some(&int(401)));
        // Equi-depth: every bucket spans about 4 of the 400 values.
        for pair in c.histogram.windows(2) {
            let (Value::Integer(a), Value::Integer(b)) = (&pair[0], &pair[1]) else {
                panic!("integer bounds");
            };
            assert!((3..=5).contains(&(b - a)), "bucket {a}..{b}");
        }
    }

    #[test]
    fn equi_depth_means_equal_counts_not_equal_widths() {
        // 900 values in 0..9, then 100 values spread over 1000..100000.
        let mut rows: Vec<Row> = (0..900)
            .map(|i| vec![Value::Real(i as f64 / 100.0)])
            .collect();
        rows.extend((0..100).map(|i| vec![Value::Real(1000.0 + i as f64 * 990.0)]));
        let c = &collect(rows, 1).columns[0];
        assert!(c.mcv.is_empty(), "all values are unique");
        assert_eq!(c.histogram.len(), MAX_BUCKETS + 1);
        // 90% of the rows are below 9.0, so 90% of the bounds are.
        let small = c
            .histogram
            .iter()
            .filter(|v| v.as_f64().is_some_and(|x| x < 9.0))
            .count();
        assert!((89..=92).contains(&small), "{small} bounds below 9");
    }

    #[test]
    fn few_distinct_values_are_all_mcvs_with_exact_frequencies() {
        let rows: Vec<Row> = (0..1000)
            .map(|i| vec![Value::text(["a", "b", "c"][i % 4 % 3]), int(i as i64)])
            .collect();
        let stats = collect(rows, 2);
        let c = &stats.columns[0];
        assert_eq!(c.distinct, 3);
        assert!(c.histogram.is_empty());
        // i % 4 % 3: 0 -> a, 1 -> b, 2 -> c, 3 -> a: a is half.
        assert_eq!(c.mcv[0], (Value::text("a"), 0.5));
        assert!((c.mcv_frac() - 1.0).abs() < 1e-9);
        // The unique column: no MCVs, 1000 distinct.
        assert_eq!(stats.columns[1].distinct, 1000);
        assert!(stats.columns[1].mcv.is_empty());
        assert!(stats.avg_row_bytes >= 4, "{}", stats.avg_row_bytes);
    }

    #[test]
    fn sampling_keeps_memory_bounded_and_estimates_distinct() {
        // 20000 rows, 500 values each 40 times; and a unique column.
        let rows = (0..20_000).map(|i| vec![int(i % 500), int(i)]);
        let stats = collect_with_sample(rows, 2, 2000);
        assert_eq!(stats.row_count, 20_000);
        let d = stats.columns[0].distinct as f64;
        assert!((250.0..=1000.0).contains(&d), "distinct {d}");
        let u = stats.columns[1].distinct as f64;
        assert!((10_000.0..=20_000.0).contains(&u), "distinct {u}");
    }

    #[test]
    fn empty_tables_and_long_text() {
        let stats = collect(Vec::<Row>::new(), 2);
        assert_eq!(stats.row_count, 0);
        assert_eq!(stats.columns, vec![ColumnStats::default(); 2]);
        let long = "x".repeat(1000);
        let rows: Vec<Row> = (0..10)
            .map(|i| vec![Value::text(&format!("{long}{i}"))])
            .collect();
        let c = &collect(rows, 1).columns[0];
        assert!(c.mcv.is_empty(), "long text is never an MCV");
        assert!(
            c.histogram
                .iter()
                .all(|v| matches!(v, Value::Text(t) if t.len() <= MAX_STATS_TEXT))
        );
    }
}
