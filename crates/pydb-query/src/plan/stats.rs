//! Table statistics: what `ANALYZE` learns about a table's data, and what
//! the cost model ([`super::cost`]) reads to estimate how many rows an
//! operator produces.
//!
//! Per table, the row count; per column, the number of distinct values, the
//! fraction of NULLs, the most common values with their frequencies, and an
//! equi-depth histogram of the other values (bucket bounds such that each
//! bucket holds about the same number of rows), as PostgreSQL's
//! `pg_statistic` keeps them.

use crate::value::Value;

/// What ANALYZE found in one table.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TableStats {
    /// The number of rows.
    pub row_count: u64,
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
