//! Cardinality and cost estimates: how many rows each operator produces,
//! and what running it costs.
//!
//! The optimizer compares plans by their [`Estimate`]. Every rule that
//! chooses between plans asks [`Estimator::estimate`]; no other module has
//! cost formulas of its own.
//!
//! # Rows (cardinality)
//!
//! A table's row count comes from the statistics `ANALYZE` stores
//! ([`super::stats`]); a table never analyzed is assumed to hold
//! [`DEFAULT_TABLE_ROWS`] rows. A filter keeps `rows x selectivity`, where
//! the selectivity of a predicate is estimated from the statistics of the
//! column it tests. To find those, a column of an operator's input is
//! *traced back* through projections, filters, sorts and joins to the table
//! column it comes from (`Project [#2]` over `Scan t` reads `t`'s third
//! column).
//!
//! - `col = constant`: the constant's frequency if it is a most common
//!   value (MCV); otherwise the rows left over by the MCVs and NULLs,
//!   spread evenly over the other distinct values:
//!   `(1 - sum(mcv) - null_frac) / (distinct - n_mcv)`.
//! - `col < constant` (and `<=`, `>`, `>=`, `BETWEEN`): the MCVs below the
//!   constant, plus the fraction of the histogram below it times the rows
//!   the histogram stands for. Inside a bucket, numbers are interpolated
//!   linearly; text by its first bytes after the bucket bounds' common
//!   prefix, read as a number.
//! - `IS NULL`: `null_frac`. `IN (a, b)`: the sum of the equalities.
//!   `AND` multiplies (columns are assumed independent), except that a
//!   lower and an upper bound on one column are one range, as `BETWEEN`
//!   is (taken apart they would count as unrelated: q5's `o_orderdate >=
//!   730 AND o_orderdate < 1095` kept 0.32 of the rows for 0.15); `OR` is
//!   `x + y - x*y`, `NOT` is `1 - x`.
//! - `a.x = b.y` (a join): `1 / max(ndv(a.x), ndv(b.y))` of the pairs,
//!   times the non-NULL fractions: every row of the side with fewer values
//!   finds its match ("containment"), and filters below the join keep
//!   their own share of the pairs.
//! - `GROUP BY a, b` and `DISTINCT`: the product of the columns' distinct
//!   counts, capped by the input rows.
//!
//! Without statistics the defaults are PostgreSQL's: an equality keeps
//! [`DEFAULT_EQ_SEL`] (1/200) of the rows, unless the column is a
//! one-column primary key or UNIQUE (then one row), a range
//! [`DEFAULT_RANGE_SEL`] (1/3), a column has [`DEFAULT_NUM_DISTINCT`]
//! values.
//!
//! # Cost
//!
//! Cost is in abstract units, where reading one page sequentially costs
//! [`SEQ_PAGE_COST`] = 1 (PostgreSQL's units and constants). A table's pages
//! are `rows x average row bytes / PAGE_SIZE` (4096). Per operator:
//!
//! | operator | cost on top of its inputs |
//! |---|---|
//! | Scan | `pages x SEQ_PAGE_COST + rows x CPU_TUPLE_COST` |
//! | IndexScan | `fetched pages x RANDOM_PAGE_COST + rows x (CPU_INDEX_TUPLE_COST + CPU_TUPLE_COST)` |
//! | IndexOnlyScan | `index pages x SEQ_PAGE_COST + RANDOM_PAGE_COST + rows x (CPU_INDEX_TUPLE_COST + CPU_TUPLE_COST)`: no row fetch; index pages from the entry size (indexed and key columns by type) |
//! | PkLookup | `RANDOM_PAGE_COST + CPU_TUPLE_COST` |
//! | Filter, Project | `input rows x CPU_OPERATOR_COST x operators`, plus subqueries (once, or per row if correlated) |
//! | nested loop Join | `left x right x CPU_OPERATOR_COST + rows x CPU_TUPLE_COST` |
//! | HashJoin | build `right x (CPU_TUPLE_COST + keys x CPU_OPERATOR_COST)`, probe `left x keys x CPU_OPERATOR_COST`, `rows x CPU_TUPLE_COST` |
//! | MergeJoin | `(left + right) x keys x CPU_OPERATOR_COST + rows x CPU_TUPLE_COST` (inputs arrive sorted) |
//! | IndexJoin | `fetched pages x RANDOM_PAGE_COST` for all lookups, `matches x (CPU_INDEX_TUPLE_COST + CPU_TUPLE_COST)`, the right filter on each fetched row and the residual on each pair it passes |
//! | SemiJoin (hash) | as HashJoin; rows: the left rows whose key value the right side holds (or does not, anti) |
//! | Sort | `2 x CPU_OPERATOR_COST x n log2 n` (comparisons); TopN `n log2 k` |
//! | Aggregate, Distinct | `input rows x CPU_OPERATOR_COST x columns + rows x CPU_TUPLE_COST` (hashing) |
//!
//! *Fetched pages* of `n` random row fetches from a table of `t` pages are
//! `2tn / (2t + n)` (PostgreSQL's approximation of Mackert and Lohman):
//! about one random page per row while `n` is small, and never more than
//! the table's pages when `n` is large: once read, a page stays cached (as
//! PostgreSQL assumes for a table that fits in its cache).
//!
//! Estimates are never errors: a store error when reading statistics
//! counts as no statistics, and statistics may be stale, which makes plans
//! worse, never results wrong.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use crate::ast::{BinaryOp, JoinKind, SetOperator, UnaryOp};
use crate::catalog::Table;
use crate::plan::stats::{ColumnStats, TableStats};
use crate::plan::{Expr, Plan};
use crate::store::{IndexRange, Store};
use crate::value::{DataType, Value};

/// The rows assumed for a table that has no statistics.
pub const DEFAULT_TABLE_ROWS: f64 = 1000.0;
/// The selectivity of `col = value` without statistics (PostgreSQL's
/// `DEFAULT_EQ_SEL`).
pub const DEFAULT_EQ_SEL: f64 = 0.005;
/// The selectivity of `col < value` without statistics.
pub const DEFAULT_RANGE_SEL: f64 = 1.0 / 3.0;
/// The selectivity of `LIKE` (patterns are not analyzed), of `EXISTS`, and
/// of conditions the estimator does not understand.
pub const DEFAULT_UNKNOWN_SEL: f64 = 0.1;
/// The distinct values assumed for a column without statistics.
pub const DEFAULT_NUM_DISTINCT: f64 = 200.0;
/// The bytes of a page, to turn row widths into pages.
pub const PAGE_SIZE: f64 = 4096.0;
/// Reading one page in sequence: the unit of cost.
pub const SEQ_PAGE_COST: f64 = 1.0;
/// Reading one page at a random place (an index lookup's row fetch).
/// PostgreSQL's default is 4.0, for spinning disks; 1.1 is what it
/// recommends for SSDs and cached data, which is where pydb's engines
/// (buffer pool, block cache, memory) read from.
pub const RANDOM_PAGE_COST: f64 = 1.1;
/// Handling one row (producing or copying it).
pub const CPU_TUPLE_COST: f64 = 0.01;
/// Handling one index entry.
pub const CPU_INDEX_TUPLE_COST: f64 = 0.005;
/// Evaluating one operator or function, or hashing or comparing one value.
pub const CPU_OPERATOR_COST: f64 = 0.0025;
/// The bytes assumed per index entry (key and row key).
const INDEX_ENTRY_BYTES: f64 = 24.0;

/// The estimated output of one plan node.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// Rows produced.
    pub rows: f64,
    /// The total cost of producing them, the inputs included, in abstract
    /// units.
    pub cost: f64,
}

/// Estimates plans, reading each table's statistics at most once.
pub struct Estimator<'a> {
    store: Option<&'a dyn Store>,
    stats: RefCell<HashMap<u64, Option<Arc<TableStats>>>>,
    /// The values of a prepared statement's parameters when a *generic*
    /// plan is made (see `crate::session`): their types decide whether
    /// `pk = $1` may become a primary-key lookup.
    params: &'a [Value],
}

impl std::fmt::Debug for Estimator<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Estimator").finish_non_exhaustive()
    }
}

/// A column traced back to the table it is read from.
#[derive(Debug, Clone)]
struct Col {
    table: Arc<Table>,
    index: usize,
    stats: Option<Arc<TableStats>>,
}

impl Col {
    fn stats(&self) -> Option<&ColumnStats> {
        self.stats.as_ref()?.columns.get(self.index)
    }

    fn null_frac(&self) -> f64 {
        self.stats().map_or(0.0, |s| s.null_frac)
    }
}

/// One side of a comparison.
enum Operand {
    /// A column of the input.
    Col(Col),
    /// A constant.
    Const(Value),
    /// A value fixed while the predicate runs but unknown when planning
    /// (a parameter or a column of an outer query).
    Unknown,
    /// Anything else (an expression over the row).
    Other,
}

/// The terms of an AND chain, borrowed.
fn conjunct_refs<'e>(e: &'e Expr, out: &mut Vec<&'e Expr>) {
    match e {
        Expr::Binary(BinaryOp::And, a, b) => {
            conjunct_refs(a, out);
            conjunct_refs(b, out);
        }
        e => out.push(e),
    }
}

/// Pages fetched by `n` random row reads from `t` pages (see the module
/// docs).
fn fetched_pages(t: f64, n: f64) -> f64 {
    let t = t.max(1.0);
    if n <= 0.0 {
        0.0
    } else {
        (2.0 * t * n / (2.0 * t + n)).min(t)
    }
}

/// The comparisons of a sort of `n` rows.
fn sort_cost(n: f64, kept: f64) -> f64 {
    2.0 * CPU_OPERATOR_COST * n * kept.max(2.0).log2()
}

/// The operators in an expression (at least one), for its CPU cost.
fn operators(e: &Expr) -> f64 {
    let mut n = 0.0;
    e.children(&mut |c| n += operators(c));
    match e {
        Expr::Literal(_) | Expr::Column { .. } | Expr::Param(_) => n,
        _ => n + 1.0,
    }
}

/// `x` kept between one row (when the input has one) and `max`.
fn clamp_rows(x: f64, max: f64) -> f64 {
    if x.is_nan() {
        return max.min(1.0);
    }
    x.max(1.0).min(max.max(0.0))
}

/// The operator that compares `b op a` as `a op b` does.
fn flip(op: BinaryOp) -> BinaryOp {
    match op {
        BinaryOp::Lt => BinaryOp::Gt,
        BinaryOp::LtEq => BinaryOp::GtEq,
        BinaryOp::Gt => BinaryOp::Lt,
        BinaryOp::GtEq => BinaryOp::LtEq,
        other => other,
    }
}

/// Where `v` falls between `lo` and `hi` (0.0 to 1.0), for interpolation
/// inside a histogram bucket.
fn position(lo: &Value, hi: &Value, v: &Value) -> f64 {
    let f = match (lo.as_f64(), hi.as_f64(), v.as_f64()) {
        (Some(a), Some(b), Some(x)) if !matches!(lo, Value::Text(_)) && b > a => (x - a) / (b - a),
        _ => match (lo, hi, v) {
            (Value::Text(a), Value::Text(b), Value::Text(x)) => {
                // Skip the common prefix of the bounds, then read the next
                // bytes of each as a fraction.
                let common = a.bytes().zip(b.bytes()).take_while(|(p, q)| p == q).count();
                let number = |s: &str| {
                    s.as_bytes()
                        .iter()
                        .skip(common)
                        .chain(std::iter::repeat(&0))
                        .take(6)
                        .fold(0.0, |acc, &byte| acc * 256.0 + f64::from(byte))
                };
                let (a, b, x) = (number(a), number(b), number(x));
                if b > a { (x - a) / (b - a) } else { 0.5 }
            }
            _ => 0.5,
        },
    };
    if f.is_nan() { 0.5 } else { f.clamp(0.0, 1.0) }
}

/// The fraction of the histogram's values below `v`.
fn histogram_below(bounds: &[Value], v: &Value) -> f64 {
    let buckets = bounds.len().saturating_sub(1);
    let (Some(first), Some(last)) = (bounds.first(), bounds.last()) else {
        return 0.5;
    };
    if buckets == 0 {
        return 0.5;
    }
    if v.total_cmp(first) != Ordering::Greater {
        return 0.0;
    }
    if v.total_cmp(last) != Ordering::Less {
        return 1.0;
    }
    // The last bound <= v; it is below the last bound, so i < buckets.
    let i = bounds
        .partition_point(|b| b.total_cmp(v) != Ordering::Greater)
        .saturating_sub(1)
        .min(buckets - 1);
    (i as f64 + position(&bounds[i], &bounds[i + 1], v)) / buckets as f64
}

impl<'a> Estimator<'a> {
    /// An estimator that reads statistics from `store`.
    pub fn new(store: &'a dyn Store) -> Self {
        Estimator {
            store: Some(store),
            stats: RefCell::new(HashMap::new()),
            params: &[],
        }
    }

    /// The same estimator, planning a generic plan for parameter values
    /// like `params` (same types): `pk = $n` becomes a primary-key lookup
    /// when `$n` has the key column's type (see `crate::session`).
    pub fn with_params(mut self, params: &'a [Value]) -> Self {
        self.params = params;
        self
    }

    /// The value the generic plan is made for of parameter `i` (0-based).
    pub(crate) fn param(&self, i: usize) -> Option<&Value> {
        self.params.get(i)
    }

    /// An estimator without statistics: every table has the default size.
    pub fn without_stats() -> Estimator<'static> {
        Estimator {
            store: None,
            stats: RefCell::new(HashMap::new()),
            params: &[],
        }
    }

    /// An estimator over the given statistics (by table id) instead of a
    /// store's: for tests, and for planning "what if the tables were this
    /// big".
    pub fn with_stats(stats: impl IntoIterator<Item = (u64, TableStats)>) -> Estimator<'static> {
        Estimator {
            store: None,
            stats: RefCell::new(
                stats
                    .into_iter()
                    .map(|(id, s)| (id, Some(Arc::new(s))))
                    .collect(),
            ),
            params: &[],
        }
    }

    /// The statistics of `table`, if ANALYZE stored some. A store error
    /// counts as no statistics: estimates never fail a query.
    pub fn table_stats(&self, table: &Table) -> Option<Arc<TableStats>> {
        if let Some(known) = self.stats.borrow().get(&table.id) {
            return known.clone();
        }
        let store = self.store?;
        let stats = store.table_stats(table).ok().flatten();
        self.stats.borrow_mut().insert(table.id, stats.clone());
        stats
    }

    /// The number of rows of `table`.
    pub fn table_rows(&self, table: &Table) -> f64 {
        self.table_stats(table)
            .map(|s| s.row_count as f64)
            .unwrap_or(DEFAULT_TABLE_ROWS)
    }

    /// The average bytes of a row of `table`: from the statistics, or
    /// guessed from the column types.
    fn row_bytes(&self, table: &Table) -> f64 {
        match self.table_stats(table) {
            Some(s) if s.avg_row_bytes > 0 => s.avg_row_bytes as f64,
            _ => {
                2.0 + table
                    .columns
                    .iter()
                    .map(|c| match c.ty {
                        DataType::Integer | DataType::Real => 9.0,
                        DataType::Boolean => 1.0,
                        DataType::Text => 24.0,
                    })
                    .sum::<f64>()
            }
        }
    }

    /// The bytes of an entry of an index on `columns` of `table`: the
    /// indexed values and the primary key (or row id), guessed from their
    /// types, plus the engine key's prefix.
    fn entry_bytes(&self, table: &Table, columns: &[usize]) -> f64 {
        // A hidden row id is an INTEGER.
        let key_cols = if table.primary_key.is_empty() {
            11.0
        } else {
            table
                .primary_key
                .iter()
                .map(|c| column_bytes(table, *c))
                .sum()
        };
        let indexed: f64 = columns.iter().map(|c| column_bytes(table, *c)).sum();
        9.0 + indexed + key_cols
    }

    /// The pages `table`'s rows fill.
    fn table_pages(&self, table: &Table) -> f64 {
        (self.table_rows(table) * self.row_bytes(table) / PAGE_SIZE)
            .ceil()
            .max(1.0)
    }

    // ------------------------------------------------ tracing columns

    /// The table column that column `col` of `plan`'s rows is read from.
    fn origin(&self, plan: &Plan, col: usize) -> Option<Col> {
        match plan {
            Plan::Scan { table, .. }
            | Plan::ScanBackward { table }
            | Plan::IndexScan { table, .. }
            | Plan::IndexOnlyScan { table, .. }
            | Plan::PkLookup { table, .. } => (col < table.columns.len()).then(|| Col {
                table: table.clone(),
                index: col,
                stats: self.table_stats(table),
            }),
            Plan::Filter { input, .. }
            | Plan::Sort { input, .. }
            | Plan::TopN { input, .. }
            | Plan::Limit { input, .. }
            | Plan::Distinct { input, .. }
            | Plan::SemiJoin { left: input, .. } => self.origin(input, col),
            Plan::Project { input, exprs } => match exprs.get(col)? {
                Expr::Column { depth: 0, index } => self.origin(input, *index),
                _ => None,
            },
            Plan::Aggregate {
                input, group_by, ..
            } => match group_by.get(col)? {
                Expr::Column { depth: 0, index } => self.origin(input, *index),
                _ => None,
            },
            Plan::Join { left, right, .. }
            | Plan::HashJoin { left, right, .. }
            | Plan::MergeJoin { left, right, .. } => {
                let width = left.width();
                if col < width {
                    self.origin(left, col)
                } else {
                    self.origin(right, col - width)
                }
            }
            Plan::IndexJoin { left, table, .. } => {
                let width = left.width();
                if col < width {
                    self.origin(left, col)
                } else {
                    let index = col - width;
                    (index < table.columns.len()).then(|| Col {
                        table: table.clone(),
                        index,
                        stats: self.table_stats(table),
                    })
                }
            }
            // Set operations mix two inputs; constant rows have no table.
            _ => None,
        }
    }

    /// What `e`, evaluated over `input`'s rows, is to the estimator.
    fn operand(&self, input: &Plan, e: &Expr) -> Operand {
        match e {
            Expr::Column { depth: 0, index } => self
                .origin(input, *index)
                .map_or(Operand::Other, Operand::Col),
            Expr::Literal(v) => Operand::Const(v.clone()),
            Expr::Cast(inner, _) | Expr::Unary(UnaryOp::Plus, inner) => self.operand(input, inner),
            Expr::Unary(UnaryOp::Neg, inner) => match self.operand(input, inner) {
                Operand::Const(v) => v.neg().map_or(Operand::Unknown, Operand::Const),
                Operand::Col(_) | Operand::Other => Operand::Other,
                Operand::Unknown => Operand::Unknown,
            },
            Expr::Param(_) | Expr::Column { .. } => Operand::Unknown,
            e if e.is_constant() => Operand::Unknown,
            _ => Operand::Other,
        }
    }

    /// The distinct non-NULL values of a column.
    fn col_distinct(&self, col: &Col) -> f64 {
        match col.stats() {
            Some(s) => (s.distinct as f64).max(1.0),
            None if self.is_unique(col) => self.table_rows(&col.table),
            None => DEFAULT_NUM_DISTINCT.min(self.table_rows(&col.table)),
        }
    }

    /// Whether the column alone is the primary key or a UNIQUE index.
    fn is_unique(&self, col: &Col) -> bool {
        col.table.primary_key == [col.index]
            || col
                .table
                .indexes
                .iter()
                .any(|i| i.unique && i.columns == [col.index])
    }

    /// The distinct values (NULL counted as one) of `e` over `input`'s
    /// `rows` rows.
    fn distinct_of(&self, input: &Plan, e: &Expr, rows: f64) -> f64 {
        let n = match self.operand(input, e) {
            Operand::Col(col) => {
                self.col_distinct(&col) + if col.null_frac() > 0.0 { 1.0 } else { 0.0 }
            }
            Operand::Const(_) | Operand::Unknown => 1.0,
            Operand::Other => DEFAULT_NUM_DISTINCT,
        };
        n.min(rows).max(1.0)
    }

    /// The groups of rows with equal `exprs` among `rows` rows of `input`.
    fn groups(&self, input: &Plan, exprs: &[Expr], rows: f64) -> f64 {
        if rows < 1.0 {
            return rows.max(0.0);
        }
        exprs
            .iter()
            .map(|e| self.distinct_of(input, e, rows))
            .product::<f64>()
            .min(rows)
            .max(1.0)
    }

    // ---------------------------------------------------- selectivity

    /// The fraction of `input`'s rows for which `predicate` holds.
    pub fn selectivity(&self, input: &Plan, predicate: &Expr) -> f64 {
        let s = self.sel(input, predicate);
        if s.is_nan() { 0.5 } else { s.clamp(0.0, 1.0) }
    }

    fn sel(&self, input: &Plan, p: &Expr) -> f64 {
        match p {
            Expr::Literal(v) => match v.truth() {
                Some(true) => 1.0,
                _ => 0.0,
            },
            Expr::Binary(BinaryOp::And, ..) => self.conjunction(input, p),
            Expr::Binary(BinaryOp::Or, a, b) => {
                let (x, y) = (self.sel(input, a), self.sel(input, b));
                x + y - x * y
            }
            Expr::Unary(UnaryOp::Not, e) => 1.0 - self.sel(input, e),
            Expr::Binary(
                op @ (BinaryOp::Eq
                | BinaryOp::NotEq
                | BinaryOp::Is
                | BinaryOp::IsNot
                | BinaryOp::Lt
                | BinaryOp::LtEq
                | BinaryOp::Gt
                | BinaryOp::GtEq),
                a,
                b,
            ) => self.compare(input, *op, a, b),
            Expr::IsNull(e, negated) => {
                let nulls = match self.operand(input, e) {
                    Operand::Col(col) => col.null_frac(),
                    Operand::Const(v) => f64::from(u8::from(v.is_null())),
                    _ => DEFAULT_EQ_SEL,
                };
                if *negated { 1.0 - nulls } else { nulls }
            }
            Expr::Between {
                expr,
                low,
                high,
                negated,
            } => {
                let (lo, hi) = (self.operand(input, low), self.operand(input, high));
                let (s, nulls) = match (self.operand(input, expr), lo, hi) {
                    (Operand::Col(col), Operand::Const(lo), Operand::Const(hi)) => (
                        self.range(&col, Some((&lo, true)), Some((&hi, true))),
                        col.null_frac(),
                    ),
                    (Operand::Col(col), _, _) => {
                        (DEFAULT_RANGE_SEL * DEFAULT_RANGE_SEL, col.null_frac())
                    }
                    _ => (DEFAULT_RANGE_SEL * DEFAULT_RANGE_SEL, 0.0),
                };
                if *negated { 1.0 - s - nulls } else { s }
            }
            Expr::InList {
                expr,
                list,
                negated,
            } => {
                let nulls = match self.operand(input, expr) {
                    Operand::Col(col) => col.null_frac(),
                    _ => 0.0,
                };
                let s: f64 = list
                    .iter()
                    .map(|item| self.compare(input, BinaryOp::Eq, expr, item))
                    .sum();
                let s = s.min(1.0 - nulls);
                if *negated { 1.0 - s - nulls } else { s }
            }
            _ => DEFAULT_UNKNOWN_SEL,
        }
    }

    /// The selectivity of an AND chain: the product of its terms' (columns
    /// are assumed independent), except that a lower and an upper bound on
    /// one column are priced as one range, as `BETWEEN` is. Taken apart,
    /// `x >= 730 AND x < 1095` would multiply the share of rows above 730
    /// by the share below 1095, as if the two were unrelated: 0.70 x 0.46
    /// = 0.32 of q5's `orders` where the range holds 0.15.
    fn conjunction(&self, input: &Plan, p: &Expr) -> f64 {
        let mut terms = Vec::new();
        conjunct_refs(p, &mut terms);
        // (input column, the column, lower bound?, value, inclusive?)
        let mut bounds: Vec<(usize, Col, bool, Value, bool)> = Vec::new();
        let mut s = 1.0;
        for term in terms {
            match self.bound(input, term) {
                Some(b) => bounds.push(b),
                None => s *= self.sel(input, term),
            }
        }
        let mut paired = vec![false; bounds.len()];
        for i in 0..bounds.len() {
            if paired[i] {
                continue;
            }
            let (pos, col, lower, v, inclusive) = &bounds[i];
            let other = (i + 1..bounds.len())
                .find(|&j| !paired[j] && bounds[j].0 == *pos && bounds[j].2 != *lower);
            s *= match other {
                Some(j) => {
                    paired[j] = true;
                    let (_, _, _, w, w_inclusive) = &bounds[j];
                    let (lo, hi) = if *lower {
                        ((v, *inclusive), (w, *w_inclusive))
                    } else {
                        ((w, *w_inclusive), (v, *inclusive))
                    };
                    self.range(col, Some(lo), Some(hi))
                }
                None if *lower => self.range(col, Some((v, *inclusive)), None),
                None => self.range(col, None, Some((v, *inclusive))),
            };
        }
        s
    }

    /// `term` as a bound on a column of the input (`col < constant` and
    /// the like, either way round, the constant not NULL): the column's
    /// position in the input row, the column, whether it is a lower bound,
    /// the constant and whether the bound is inclusive.
    fn bound(&self, input: &Plan, term: &Expr) -> Option<(usize, Col, bool, Value, bool)> {
        let Expr::Binary(
            op @ (BinaryOp::Lt | BinaryOp::LtEq | BinaryOp::Gt | BinaryOp::GtEq),
            a,
            b,
        ) = term
        else {
            return None;
        };
        let (column, constant, op) = match (&**a, &**b) {
            (Expr::Column { depth: 0, .. }, c) => (&**a, c, *op),
            (c, Expr::Column { depth: 0, .. }) => (&**b, c, flip(*op)),
            _ => return None,
        };
        let Expr::Column { index, .. } = column else {
            return None;
        };
        let (Operand::Col(col), Operand::Const(v)) =
            (self.operand(input, column), self.operand(input, constant))
        else {
            return None;
        };
        if v.is_null() {
            return None;
        }
        let lower = matches!(op, BinaryOp::Gt | BinaryOp::GtEq);
        let inclusive = matches!(op, BinaryOp::LtEq | BinaryOp::GtEq);
        Some((*index, col, lower, v, inclusive))
    }

    /// The selectivity of `a op b` over `input`.
    fn compare(&self, input: &Plan, op: BinaryOp, a: &Expr, b: &Expr) -> f64 {
        use Operand::{Col as C, Const, Unknown};
        match (self.operand(input, a), self.operand(input, b)) {
            (C(col), Const(v)) => self.col_compare(&col, op, &v),
            (Const(v), C(col)) => self.col_compare(&col, flip(op), &v),
            (Const(x), Const(y)) => {
                let holds = match op {
                    BinaryOp::Is => {
                        x.total_cmp(&y) == Ordering::Equal && x.is_null() == y.is_null()
                    }
                    BinaryOp::IsNot => {
                        !(x.total_cmp(&y) == Ordering::Equal && x.is_null() == y.is_null())
                    }
                    _ => x.sql_cmp(&y).is_some_and(|o| match op {
                        BinaryOp::Eq => o == Ordering::Equal,
                        BinaryOp::NotEq => o != Ordering::Equal,
                        BinaryOp::Lt => o == Ordering::Less,
                        BinaryOp::LtEq => o != Ordering::Greater,
                        BinaryOp::Gt => o == Ordering::Greater,
                        _ => o != Ordering::Less,
                    }),
                };
                f64::from(u8::from(holds))
            }
            (C(x), C(y)) => {
                let same = Arc::ptr_eq(&x.table, &y.table) && x.index == y.index;
                let nonnull = (1.0 - x.null_frac()) * (1.0 - y.null_frac());
                let eq = if same {
                    1.0 - x.null_frac()
                } else {
                    nonnull / self.col_distinct(&x).max(self.col_distinct(&y))
                };
                match op {
                    BinaryOp::Eq | BinaryOp::Is => eq,
                    BinaryOp::NotEq | BinaryOp::IsNot => (nonnull - eq).max(0.0),
                    _ => DEFAULT_RANGE_SEL,
                }
            }
            (C(col), Unknown) | (Unknown, C(col)) => {
                let nonnull = 1.0 - col.null_frac();
                let eq = if self.is_unique(&col) {
                    1.0 / self.table_rows(&col.table).max(1.0)
                } else {
                    nonnull / self.col_distinct(&col)
                };
                match op {
                    BinaryOp::Eq | BinaryOp::Is => eq,
                    BinaryOp::NotEq | BinaryOp::IsNot => (nonnull - eq).max(0.0),
                    _ => DEFAULT_RANGE_SEL,
                }
            }
            _ => match op {
                BinaryOp::Eq | BinaryOp::Is => DEFAULT_EQ_SEL,
                BinaryOp::NotEq | BinaryOp::IsNot => 1.0 - DEFAULT_EQ_SEL,
                _ => DEFAULT_RANGE_SEL,
            },
        }
    }

    /// The selectivity of `col op v`.
    fn col_compare(&self, col: &Col, op: BinaryOp, v: &Value) -> f64 {
        let nulls = col.null_frac();
        if v.is_null() {
            return match op {
                BinaryOp::Is => nulls,
                BinaryOp::IsNot => 1.0 - nulls,
                _ => 0.0,
            };
        }
        match op {
            BinaryOp::Eq | BinaryOp::Is => self.eq(col, v),
            BinaryOp::NotEq | BinaryOp::IsNot => (1.0 - nulls - self.eq(col, v)).max(0.0),
            BinaryOp::Lt => self.range(col, None, Some((v, false))),
            BinaryOp::LtEq => self.range(col, None, Some((v, true))),
            BinaryOp::Gt => self.range(col, Some((v, false)), None),
            _ => self.range(col, Some((v, true)), None),
        }
    }

    /// The selectivity of `col = v` (`v` not NULL).
    fn eq(&self, col: &Col, v: &Value) -> f64 {
        let Some(s) = col.stats() else {
            return if self.is_unique(col) {
                1.0 / self.table_rows(&col.table).max(1.0)
            } else {
                DEFAULT_EQ_SEL
            };
        };
        if let Some((_, f)) = s
            .mcv
            .iter()
            .find(|(m, _)| m.total_cmp(v) == Ordering::Equal)
        {
            return *f;
        }
        let rest = (1.0 - s.mcv_frac() - s.null_frac).max(0.0);
        let others = s.distinct.saturating_sub(s.mcv.len() as u64);
        if others == 0 {
            0.0
        } else {
            rest / others as f64
        }
    }

    /// The fraction of rows whose non-NULL value is below `v` (or equal,
    /// when `inclusive`), from the MCVs and the histogram.
    fn below(&self, s: &ColumnStats, v: &Value, inclusive: bool) -> f64 {
        let mcv: f64 = s
            .mcv
            .iter()
            .filter(|(m, _)| match m.total_cmp(v) {
                Ordering::Less => true,
                Ordering::Equal => inclusive,
                Ordering::Greater => false,
            })
            .map(|(_, f)| f)
            .sum();
        let rest = (1.0 - s.mcv_frac() - s.null_frac).max(0.0);
        let histogram = if s.histogram.len() >= 2 {
            histogram_below(&s.histogram, v)
        } else {
            DEFAULT_RANGE_SEL
        };
        mcv + rest * histogram
    }

    /// The selectivity of `lo < col < hi`, each bound optional and
    /// inclusive or not.
    fn range(&self, col: &Col, lo: Option<(&Value, bool)>, hi: Option<(&Value, bool)>) -> f64 {
        let Some(s) = col.stats() else {
            return match (lo, hi) {
                (Some(_), Some(_)) => DEFAULT_RANGE_SEL * DEFAULT_RANGE_SEL,
                (None, None) => 1.0,
                _ => DEFAULT_RANGE_SEL,
            };
        };
        let upper = match hi {
            Some((v, inclusive)) => self.below(s, v, inclusive),
            None => 1.0 - s.null_frac,
        };
        let lower = match lo {
            Some((v, inclusive)) => self.below(s, v, !inclusive),
            None => 0.0,
        };
        (upper - lower).max(0.0)
    }

    /// The rows of `table` an index range yields: its selectivity times
    /// the table's rows, kept between one row and all of them.
    fn index_rows(&self, table: &Arc<Table>, columns: &[usize], range: &IndexRange) -> f64 {
        let all = self.table_rows(table);
        clamp_rows(all * self.index_range(table, columns, range), all)
    }

    /// The selectivity of an index range over `table`.
    fn index_range(&self, table: &Arc<Table>, columns: &[usize], range: &IndexRange) -> f64 {
        use std::ops::Bound;
        let (start, start_inclusive) = match &range.start {
            Bound::Included(v) => (v.as_slice(), true),
            Bound::Excluded(v) => (v.as_slice(), false),
            Bound::Unbounded => (&[][..], true),
        };
        let (end, end_inclusive) = match &range.end {
            Bound::Included(v) => (v.as_slice(), true),
            Bound::Excluded(v) => (v.as_slice(), false),
            Bound::Unbounded => (&[][..], true),
        };
        let mut s = 1.0;
        for (i, &column) in columns.iter().enumerate().take(start.len().max(end.len())) {
            let col = Col {
                table: table.clone(),
                index: column,
                stats: self.table_stats(table),
            };
            // A value before the last of a bound is an equality on a
            // prefix, so inclusive.
            let lo = start
                .get(i)
                .map(|v| (v, i + 1 < start.len() || start_inclusive));
            let hi = end.get(i).map(|v| (v, i + 1 < end.len() || end_inclusive));
            match (lo, hi) {
                (Some((a, true)), Some((b, true))) if a.total_cmp(b) == Ordering::Equal => {
                    s *= if a.is_null() {
                        col.null_frac()
                    } else {
                        self.eq(&col, a)
                    };
                }
                _ => {
                    s *= self.range(&col, lo, hi);
                    break;
                }
            }
        }
        s
    }

    /// The selectivity of a join's equality between `l` over `left`'s
    /// `left_rows` rows and `r` over `right`'s `right_rows` rows.
    fn join_eq(
        &self,
        (left, l, left_rows): (&Plan, &Expr, f64),
        (right, r, right_rows): (&Plan, &Expr, f64),
    ) -> f64 {
        // The distinct counts are the base tables', not capped by the
        // rows a filter leaves: under containment (every value of the side
        // with fewer values is in the other, as a foreign key's are), the
        // unfiltered tables match `1 / max` of their pairs, and a filter on
        // either side removes its share of those pairs independently. (A
        // filter on `customers` leaving 40 of 200 ids leaves 40 values, but
        // the orders do not all point at those 40.) The row counts only
        // bound a side without a traceable column.
        let side = |plan: &Plan, e: &Expr, rows: f64| match self.operand(plan, e) {
            Operand::Col(col) => Some((self.col_distinct(&col), 1.0 - col.null_frac())),
            _ => Some((DEFAULT_NUM_DISTINCT.min(rows.max(1.0)), 1.0)),
        };
        match (side(left, l, left_rows), side(right, r, right_rows)) {
            (Some((a, na)), Some((b, nb))) => na * nb / a.max(b),
            _ => DEFAULT_EQ_SEL,
        }
    }

    // ---------------------------------------------------- estimates

    /// The cost of the subqueries in `e`, run once (uncorrelated) or per
    /// row of `rows` (correlated).
    fn subquery_cost(&self, e: &Expr, rows: f64) -> f64 {
        let own = match e {
            Expr::InSubquery { subquery, .. }
            | Expr::Exists { subquery, .. }
            | Expr::Scalar(subquery) => {
                let once = self.estimate(&subquery.plan).cost;
                if subquery.correlated {
                    once * rows
                } else {
                    once
                }
            }
            _ => 0.0,
        };
        let mut children = 0.0;
        e.children(&mut |c| children += self.subquery_cost(c, rows));
        own + children
    }

    /// The CPU cost of evaluating `e` on `rows` rows, its subqueries
    /// included.
    fn expr_cost(&self, e: &Expr, rows: f64) -> f64 {
        rows * CPU_OPERATOR_COST * operators(e) + self.subquery_cost(e, rows)
    }

    /// The estimated rows and cost of `plan`.
    pub fn estimate(&self, plan: &Plan) -> Estimate {
        let inputs: Vec<Estimate> = plan.inputs().iter().map(|p| self.estimate(p)).collect();
        self.estimate_node(plan, &inputs)
    }

    /// The estimated rows and cost of `plan`, given the estimates of its
    /// inputs (in [`Plan::inputs`] order): [`Estimator::estimate`] without
    /// the walk down the tree, for a planner that prices many nodes over
    /// the same, already estimated, inputs.
    pub fn estimate_node(&self, plan: &Plan, inputs: &[Estimate]) -> Estimate {
        let child_cost: f64 = inputs.iter().map(|e| e.cost).sum();
        let first = inputs.first().map_or(0.0, |e| e.rows);
        let second = inputs.get(1).map_or(0.0, |e| e.rows);
        let (rows, cost) = match plan {
            Plan::Scan { table, .. } | Plan::ScanBackward { table } => {
                let rows = self.table_rows(table);
                (
                    rows,
                    self.table_pages(table) * SEQ_PAGE_COST + rows * CPU_TUPLE_COST,
                )
            }
            Plan::IndexOnlyScan {
                table,
                index,
                range,
                ..
            } => {
                // The index alone: its pages in order, one descent, and no
                // row fetch.
                let rows = self.index_rows(table, &index.columns, range);
                let entry = self.entry_bytes(table, &index.columns);
                let index_pages = (rows * entry / PAGE_SIZE).ceil();
                (
                    rows,
                    index_pages * SEQ_PAGE_COST
                        + RANDOM_PAGE_COST
                        + rows * (CPU_INDEX_TUPLE_COST + CPU_TUPLE_COST),
                )
            }
            Plan::IndexScan {
                table,
                index,
                range,
                ..
            } => {
                let rows = self.index_rows(table, &index.columns, range);
                let index_pages = (rows * INDEX_ENTRY_BYTES / PAGE_SIZE).ceil();
                let pages = fetched_pages(self.table_pages(table), rows) + 1.0;
                (
                    rows,
                    index_pages * SEQ_PAGE_COST
                        + pages * RANDOM_PAGE_COST
                        + rows * (CPU_INDEX_TUPLE_COST + CPU_TUPLE_COST),
                )
            }
            Plan::PkLookup { .. } => (1.0, RANDOM_PAGE_COST + CPU_TUPLE_COST),
            Plan::Values { rows, .. } => {
                let n = rows.len() as f64;
                (n, n * CPU_TUPLE_COST)
            }
            Plan::Filter { input, predicate } => {
                let s = self.selectivity(input, predicate);
                let rows = match &**input {
                    // The rules keep the whole predicate above the access
                    // path that some of its terms chose: those terms hold
                    // for every row already, so count the predicate
                    // against the table instead of against the range.
                    Plan::IndexScan { table, .. }
                    | Plan::IndexOnlyScan { table, .. }
                    | Plan::PkLookup { table, .. } => clamp_rows(self.table_rows(table) * s, first),
                    _ => clamp_rows(first * s, first),
                };
                (rows, self.expr_cost(predicate, first))
            }
            Plan::Project { exprs, .. } => (
                first,
                exprs.iter().map(|e| self.expr_cost(e, first)).sum::<f64>()
                    + first * CPU_TUPLE_COST,
            ),
            Plan::Join { kind, on, .. } => {
                let s = on
                    .as_ref()
                    .map_or(1.0, |on| self.join_on(plan, on, first, second));
                let inner = clamp_rows(first * second * s, first * second);
                let rows = if *kind == JoinKind::Left {
                    inner.max(first)
                } else {
                    inner
                };
                let work = on
                    .as_ref()
                    .map_or(0.0, |on| self.expr_cost(on, first * second));
                (
                    rows,
                    work + first * second * CPU_OPERATOR_COST + rows * CPU_TUPLE_COST,
                )
            }
            Plan::HashJoin {
                left,
                right,
                kind,
                left_keys,
                right_keys,
                residual,
            }
            | Plan::MergeJoin {
                left,
                right,
                kind,
                left_keys,
                right_keys,
                residual,
            } => {
                let keys = left_keys.len().max(1) as f64;
                let mut s: f64 = left_keys
                    .iter()
                    .zip(right_keys)
                    .map(|(l, r)| self.join_eq((left, l, first), (right, r, second)))
                    .product();
                if let Some(residual) = residual {
                    s *= self.selectivity(plan, residual);
                }
                let inner = clamp_rows(first * second * s, first * second);
                let rows = if *kind == JoinKind::Left {
                    inner.max(first)
                } else {
                    inner
                };
                let residual_cost = residual.as_ref().map_or(0.0, |r| self.expr_cost(r, inner));
                let work = if matches!(plan, Plan::HashJoin { .. }) {
                    second * (CPU_TUPLE_COST + keys * CPU_OPERATOR_COST)
                        + first * keys * CPU_OPERATOR_COST
                } else {
                    (first + second) * keys * CPU_OPERATOR_COST
                };
                (rows, work + residual_cost + rows * CPU_TUPLE_COST)
            }
            Plan::IndexJoin {
                left,
                table,
                index,
                left_key,
                right_filter,
                kind,
                residual,
            } => {
                let right = Plan::Scan {
                    table: table.clone(),
                    columns: None,
                };
                let right_rows = self.table_rows(table);
                let column = match index {
                    Some(i) => i.columns.first().copied(),
                    None => table.primary_key.first().copied(),
                };
                let key = Expr::col(column.unwrap_or(0));
                let s = self.join_eq((left, left_key, first), (&right, &key, right_rows));
                // Rows of the right table one lookup finds, before the
                // right filter.
                let matches = right_rows * s;
                let filter = right_filter
                    .as_ref()
                    .map_or(1.0, |f| self.selectivity(&right, f));
                let residual_sel = residual.as_ref().map_or(1.0, |r| self.selectivity(plan, r));
                let inner = clamp_rows(first * matches * filter * residual_sel, first * right_rows);
                let rows = if *kind == JoinKind::Left {
                    inner.max(first)
                } else {
                    inner
                };
                let fetched = first * matches;
                let lookups = if index.is_some() {
                    first + fetched
                } else {
                    first
                };
                let pages = fetched_pages(self.table_pages(table), lookups);
                let filter_cost = right_filter
                    .as_ref()
                    .map_or(0.0, |f| self.expr_cost(f, fetched));
                // The residual is checked on each pair the lookups and the
                // right filter let through, as a hash join's is.
                let residual_cost = residual
                    .as_ref()
                    .map_or(0.0, |r| self.expr_cost(r, first * matches * filter));
                (
                    rows,
                    pages * RANDOM_PAGE_COST
                        + fetched * (CPU_INDEX_TUPLE_COST + CPU_TUPLE_COST)
                        + first * CPU_OPERATOR_COST
                        + filter_cost
                        + residual_cost
                        + rows * CPU_TUPLE_COST,
                )
            }
            Plan::SemiJoin {
                left,
                right,
                anti,
                left_keys,
                right_keys,
                residual,
                ..
            } => {
                // The fraction of left rows that find a match: per key,
                // the share of the left column's values that the right
                // side holds (containment), the right side's distinct
                // values capped by its rows.
                let mut matched: f64 = left_keys
                    .iter()
                    .zip(right_keys)
                    .map(|(l, r)| {
                        let (nd_left, nonnull) = match self.operand(left, l) {
                            Operand::Col(col) => (self.col_distinct(&col), 1.0 - col.null_frac()),
                            _ => (DEFAULT_NUM_DISTINCT.min(first.max(1.0)), 1.0),
                        };
                        let nd_right = match self.operand(right, r) {
                            Operand::Col(col) => self.col_distinct(&col),
                            _ => DEFAULT_NUM_DISTINCT,
                        }
                        .min(second.max(1.0));
                        nonnull * (nd_right / nd_left).min(1.0)
                    })
                    .product();
                if second < 1.0 {
                    matched = 0.0;
                } else if residual.is_some() {
                    matched *= 0.5;
                }
                let rows = if *anti {
                    first * (1.0 - matched)
                } else {
                    first * matched
                };
                let keys = left_keys.len() as f64;
                let work = if left_keys.is_empty() {
                    first * second * CPU_OPERATOR_COST
                } else {
                    second * (CPU_TUPLE_COST + keys * CPU_OPERATOR_COST)
                        + first * keys * CPU_OPERATOR_COST
                };
                let residual_cost = residual.as_ref().map_or(0.0, |r| self.expr_cost(r, first));
                (
                    clamp_rows(rows, first),
                    work + residual_cost + rows * CPU_TUPLE_COST,
                )
            }
            Plan::Aggregate {
                input,
                group_by,
                aggs,
            } => {
                let rows = if group_by.is_empty() {
                    1.0
                } else {
                    self.groups(input, group_by, first)
                };
                let columns = (group_by.len() + aggs.len()).max(1) as f64;
                (
                    rows,
                    first * CPU_OPERATOR_COST * columns + rows * CPU_TUPLE_COST,
                )
            }
            Plan::Distinct { input, key_width } => {
                let keys: Vec<Expr> = (0..*key_width).map(Expr::col).collect();
                let rows = self.groups(input, &keys, first);
                (
                    rows,
                    first * CPU_OPERATOR_COST * keys.len().max(1) as f64 + rows * CPU_TUPLE_COST,
                )
            }
            Plan::Sort { .. } => (first, sort_cost(first, first)),
            Plan::TopN { limit, offset, .. } => {
                let kept = (limit + offset) as f64;
                (
                    (first - *offset as f64).max(0.0).min(*limit as f64),
                    sort_cost(first, kept),
                )
            }
            Plan::Limit { limit, offset, .. } => {
                let after = (first - *offset as f64).max(0.0);
                (limit.map_or(after, |l| after.min(l as f64)), 0.0)
            }
            Plan::SetOp { op, all, .. } => {
                let rows = match op {
                    SetOperator::Union if *all => first + second,
                    SetOperator::Union => first.max(second),
                    SetOperator::Intersect => first.min(second),
                    SetOperator::Except => first,
                };
                (rows, (first + second) * CPU_OPERATOR_COST)
            }
            // A node this estimator does not know yet: its first input's
            // rows, handled once each.
            #[allow(
                unreachable_patterns,
                reason = "other helpers add plan nodes; they get this default until costed"
            )]
            _ => (first, first * CPU_TUPLE_COST),
        };
        Estimate {
            rows,
            cost: child_cost + cost,
        }
    }

    /// The selectivity of a nested-loop join's condition over `join`'s
    /// combined rows: equalities between a left and a right column as
    /// joins, the other terms as filters.
    fn join_on(&self, join: &Plan, on: &Expr, left_rows: f64, right_rows: f64) -> f64 {
        let Plan::Join { left, right, .. } = join else {
            return self.selectivity(join, on);
        };
        let width = left.width();
        on.clone()
            .conjuncts()
            .iter()
            .map(|term| match term {
                Expr::Binary(BinaryOp::Eq, a, b) => match (&**a, &**b) {
                    (Expr::Column { depth: 0, index: x }, Expr::Column { depth: 0, index: y })
                        if (*x < width) != (*y < width) =>
                    {
                        let (l, r) = if *x < width { (*x, *y) } else { (*y, *x) };
                        self.join_eq(
                            (left, &Expr::col(l), left_rows),
                            (right, &Expr::col(r - width), right_rows),
                        )
                    }
                    _ => self.selectivity(join, term),
                },
                _ => self.selectivity(join, term),
            })
            .product()
    }
}

/// The key-encoded bytes of a value of column `col` of `table`, guessed
/// from its type (numbers take 11 bytes, text about 16).
fn column_bytes(table: &Table, col: usize) -> f64 {
    match table.columns.get(col).map(|c| c.ty) {
        Some(DataType::Text) => 16.0,
        _ => 11.0,
    }
}

#[cfg(test)]
mod tests;
