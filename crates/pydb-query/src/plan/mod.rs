//! Plans: what a query computes, as a tree of operators over bound
//! expressions.
//!
//! The binder ([`crate::bind`]) turns the AST into a [`Plan`] whose
//! expressions ([`Expr`]) name columns by position instead of by name. The
//! rules in [`rules`] then rewrite the tree: they fold constants, push
//! filters down towards the tables, choose an index or a primary-key lookup
//! for a filtered table, and turn joins on equalities into hash joins.
//!
//! One enum serves as both the logical and the physical plan: the binder
//! only builds the logical nodes (`Scan`, `Filter`, `Project`, `Join`,
//! `Aggregate`, `Sort`, `Limit`, ...), and the rules replace some of them by
//! physical choices (`IndexScan`, `IndexOnlyScan`, `ScanBackward`,
//! `PkLookup`, `HashJoin`, `MergeJoin`, `IndexJoin`, `TopN`). Every
//! node knows how many columns its rows have ([`Plan::width`]).
//!
//! Column references carry a *depth*: 0 is the row of the operator that
//! evaluates the expression, 1 the row of the query around a subquery, and
//! so on. That is how a correlated subquery reads its outer row.

pub mod cost;
pub mod decorrelate;
pub mod explain;
pub mod joins;
pub mod prune;
pub mod rules;
pub mod stats;

use std::fmt::Write as _;
use std::sync::Arc;

use crate::ast::{BinaryOp, JoinKind, SetOperator, UnaryOp};
use crate::catalog::{Index, Table};
use crate::func::ScalarFunc;
use crate::store::IndexRange;
use crate::value::{DataType, Value};

/// A bound expression: names resolved to positions.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A constant.
    Literal(Value),
    /// Column `index` of the row `depth` levels out (0: this row).
    Column {
        /// 0 for the current row, 1 for the enclosing query's row, ...
        depth: usize,
        /// The position in that row.
        index: usize,
    },
    /// A prepared statement's `$n` (0-based here).
    Param(usize),
    /// A prefix operator.
    Unary(UnaryOp, Box<Expr>),
    /// An infix operator.
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
    /// `IS [NOT] NULL`.
    IsNull(Box<Expr>, bool),
    /// `[NOT] BETWEEN`.
    Between {
        /// The operand.
        expr: Box<Expr>,
        /// The lower bound.
        low: Box<Expr>,
        /// The upper bound.
        high: Box<Expr>,
        /// `NOT BETWEEN`.
        negated: bool,
    },
    /// `[NOT] IN (list)`.
    InList {
        /// The operand.
        expr: Box<Expr>,
        /// The list.
        list: Vec<Expr>,
        /// `NOT IN`.
        negated: bool,
    },
    /// `[NOT] IN (subquery)`.
    InSubquery {
        /// The operand.
        expr: Box<Expr>,
        /// The subquery.
        subquery: Subquery,
        /// `NOT IN`.
        negated: bool,
    },
    /// `[NOT] EXISTS (subquery)`.
    Exists {
        /// The subquery.
        subquery: Subquery,
        /// `NOT EXISTS`.
        negated: bool,
    },
    /// A scalar subquery: the first column of its first row, or NULL.
    Scalar(Subquery),
    /// `CASE`.
    Case {
        /// The operand of a simple CASE.
        operand: Option<Box<Expr>>,
        /// WHEN/THEN pairs.
        branches: Vec<(Expr, Expr)>,
        /// ELSE.
        else_result: Option<Box<Expr>>,
    },
    /// `CAST`.
    Cast(Box<Expr>, DataType),
    /// A scalar function call.
    Function(ScalarFunc, Vec<Expr>),
    /// `[NOT] LIKE`.
    Like {
        /// The operand.
        expr: Box<Expr>,
        /// The pattern.
        pattern: Box<Expr>,
        /// `NOT LIKE`.
        negated: bool,
    },
}

/// A subquery inside an expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Subquery {
    /// Unique within the statement: the key of the cache that holds an
    /// uncorrelated subquery's result after its first evaluation.
    pub id: usize,
    /// Whether it reads columns of an enclosing query (then it runs again
    /// for every outer row).
    pub correlated: bool,
    /// Its plan.
    pub plan: Box<Plan>,
}

impl Expr {
    /// A column of the current row.
    pub fn col(index: usize) -> Expr {
        Expr::Column { depth: 0, index }
    }

    /// Calls `f` on every direct child expression (not into subqueries).
    pub fn children<'e>(&'e self, f: &mut dyn FnMut(&'e Expr)) {
        match self {
            Expr::Literal(_) | Expr::Column { .. } | Expr::Param(_) => {}
            Expr::Unary(_, e) | Expr::IsNull(e, _) | Expr::Cast(e, _) => f(e),
            Expr::Binary(_, a, b) => {
                f(a);
                f(b);
            }
            Expr::Between {
                expr, low, high, ..
            } => {
                f(expr);
                f(low);
                f(high);
            }
            Expr::InList { expr, list, .. } => {
                f(expr);
                list.iter().for_each(f);
            }
            Expr::InSubquery { expr, .. } => f(expr),
            Expr::Exists { .. } | Expr::Scalar(_) => {}
            Expr::Case {
                operand,
                branches,
                else_result,
            } => {
                if let Some(o) = operand {
                    f(o);
                }
                for (w, t) in branches {
                    f(w);
                    f(t);
                }
                if let Some(e) = else_result {
                    f(e);
                }
            }
            Expr::Function(_, args) => args.iter().for_each(f),
            Expr::Like { expr, pattern, .. } => {
                f(expr);
                f(pattern);
            }
        }
    }

    /// Calls `f` on every direct child expression, mutably.
    pub fn children_mut(&mut self, f: &mut dyn FnMut(&mut Expr)) {
        match self {
            Expr::Literal(_) | Expr::Column { .. } | Expr::Param(_) => {}
            Expr::Unary(_, e) | Expr::IsNull(e, _) | Expr::Cast(e, _) => f(e),
            Expr::Binary(_, a, b) => {
                f(a);
                f(b);
            }
            Expr::Between {
                expr, low, high, ..
            } => {
                f(expr);
                f(low);
                f(high);
            }
            Expr::InList { expr, list, .. } => {
                f(expr);
                list.iter_mut().for_each(f);
            }
            Expr::InSubquery { expr, .. } => f(expr),
            Expr::Exists { .. } | Expr::Scalar(_) => {}
            Expr::Case {
                operand,
                branches,
                else_result,
            } => {
                if let Some(o) = operand {
                    f(o);
                }
                for (w, t) in branches {
                    f(w);
                    f(t);
                }
                if let Some(e) = else_result {
                    f(e);
                }
            }
            Expr::Function(_, args) => args.iter_mut().for_each(f),
            Expr::Like { expr, pattern, .. } => {
                f(expr);
                f(pattern);
            }
        }
    }

    /// Whether the expression, anywhere in it, holds a subquery.
    pub fn has_subquery(&self) -> bool {
        if matches!(
            self,
            Expr::InSubquery { .. } | Expr::Exists { .. } | Expr::Scalar(_)
        ) {
            return true;
        }
        let mut found = false;
        self.children(&mut |c| found |= c.has_subquery());
        found
    }

    /// The positions of the current row's columns that the expression
    /// reads (outside subqueries), or `None` if it also reads outer rows.
    pub fn local_columns(&self, out: &mut Vec<usize>) -> bool {
        match self {
            Expr::Column { depth: 0, index } => {
                out.push(*index);
                true
            }
            Expr::Column { .. } => false,
            _ => {
                let mut ok = true;
                self.children(&mut |c| ok &= c.local_columns(out));
                ok
            }
        }
    }

    /// Whether the value does not depend on any row or parameter.
    pub fn is_constant(&self) -> bool {
        match self {
            Expr::Literal(_) => true,
            Expr::Column { .. }
            | Expr::Param(_)
            | Expr::InSubquery { .. }
            | Expr::Exists { .. }
            | Expr::Scalar(_) => false,
            _ => {
                let mut ok = true;
                self.children(&mut |c| ok &= c.is_constant());
                ok
            }
        }
    }

    /// Adds `delta` to the position of every current-row column (to move
    /// an expression between a join and one of its inputs). Only for
    /// expressions without subqueries.
    pub fn shift_columns(&mut self, delta: isize) {
        if let Expr::Column { depth: 0, index } = self {
            *index = index.saturating_add_signed(delta);
            return;
        }
        self.children_mut(&mut |c| c.shift_columns(delta));
    }

    /// Replaces the position of every current-row column by `f(position)`
    /// (to follow a reordering of a join's inputs). Only for expressions
    /// without correlated subqueries.
    pub fn map_columns(&mut self, f: &dyn Fn(usize) -> usize) {
        if let Expr::Column { depth: 0, index } = self {
            *index = f(*index);
            return;
        }
        self.children_mut(&mut |c| c.map_columns(f));
    }

    /// Splits a conjunction into its terms.
    pub fn conjuncts(self) -> Vec<Expr> {
        match self {
            Expr::Binary(BinaryOp::And, a, b) => {
                let mut v = a.conjuncts();
                v.extend(b.conjuncts());
                v
            }
            e => vec![e],
        }
    }

    /// Joins terms with AND (`None` for no terms).
    pub fn and_all(terms: Vec<Expr>) -> Option<Expr> {
        terms
            .into_iter()
            .reduce(|a, b| Expr::Binary(BinaryOp::And, Box::new(a), Box::new(b)))
    }
}

/// An aggregate function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggFunc {
    /// `count(x)` (non-NULL values) or `count(*)` (rows).
    Count,
    /// `sum(x)`: integer while the inputs are integers, NULL for none.
    Sum,
    /// `total(x)`: a real sum, 0.0 for none.
    Total,
    /// `avg(x)`: a real.
    Avg,
    /// `min(x)`.
    Min,
    /// `max(x)`.
    Max,
    /// `group_concat(x [, sep])`.
    GroupConcat,
    /// A column that is neither grouped nor aggregated: SQLite takes its
    /// value from one row of the group (here the last one).
    AnyValue,
}

impl AggFunc {
    /// The aggregate named `name`, taking `argc` arguments.
    pub fn lookup(name: &str, argc: usize) -> Option<AggFunc> {
        Some(match name.to_ascii_lowercase().as_str() {
            "count" if argc <= 1 => AggFunc::Count,
            "sum" if argc == 1 => AggFunc::Sum,
            "total" if argc == 1 => AggFunc::Total,
            "avg" if argc == 1 => AggFunc::Avg,
            "min" if argc == 1 => AggFunc::Min,
            "max" if argc == 1 => AggFunc::Max,
            "group_concat" if argc == 1 || argc == 2 => AggFunc::GroupConcat,
            _ => return None,
        })
    }
}

/// One aggregate computed per group.
#[derive(Debug, Clone, PartialEq)]
pub struct AggCall {
    /// The function.
    pub func: AggFunc,
    /// Its argument, over the input row (`None` for `count(*)`).
    pub arg: Option<Expr>,
    /// `group_concat`'s separator.
    pub separator: Option<Expr>,
    /// `DISTINCT` inside the call.
    pub distinct: bool,
}

/// A sort key.
#[derive(Debug, Clone, PartialEq)]
pub struct SortKey {
    /// The value sorted on.
    pub expr: Expr,
    /// Descending.
    pub desc: bool,
    /// NULLs before the other values.
    pub nulls_first: bool,
}

/// A plan node. See the module docs.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Every row of a table, in key order.
    Scan {
        /// The table.
        table: Arc<Table>,
        /// The columns the query reads, one flag per column of the table,
        /// when it reads not all of them (projection pushdown, set by
        /// [`prune`]): the store need build only those values, the others
        /// come out unspecified (NULL). `None`: every column.
        columns: Option<Vec<bool>>,
    },
    /// The rows of a table whose index key falls in a range (physical).
    IndexScan {
        /// The table.
        table: Arc<Table>,
        /// The index.
        index: Index,
        /// The range, on a prefix of the index's columns.
        range: IndexRange,
        /// Read the range from its end to its start (descending index
        /// order), for an `ORDER BY ... DESC` that the index then gives.
        reverse: bool,
    },
    /// The rows of a table whose index key falls in a range, read from the
    /// index alone (physical): a *covering* or *index-only* scan. An index
    /// entry holds the indexed columns and the row's primary key, so when
    /// a query reads no other column of the table, the rows need not be
    /// fetched. The rows have the table's width, in index order; the
    /// columns an entry does not hold are NULL, and the planner
    /// ([`prune`]) chooses this scan only when nothing above reads them.
    IndexOnlyScan {
        /// The table.
        table: Arc<Table>,
        /// The index.
        index: Index,
        /// The range, on a prefix of the index's columns (unbounded: the
        /// whole index).
        range: IndexRange,
        /// Read the range backward (descending index order).
        reverse: bool,
    },
    /// Every row of a table, in descending primary-key order (physical):
    /// a `Scan` read backward, for `ORDER BY pk DESC`.
    ScanBackward {
        /// The table.
        table: Arc<Table>,
    },
    /// The row of a table with a given primary key, if any (physical).
    PkLookup {
        /// The table.
        table: Arc<Table>,
        /// The key, in primary-key column order: constants, or a prepared
        /// statement's parameters (`Expr::Param`) in a generic plan.
        key: Vec<Expr>,
    },
    /// Constant rows (also a SELECT without FROM: one empty row).
    Values {
        /// The rows.
        rows: Vec<Vec<Expr>>,
        /// Columns per row.
        width: usize,
    },
    /// The rows for which `predicate` is true.
    Filter {
        /// The input.
        input: Box<Plan>,
        /// The condition.
        predicate: Expr,
    },
    /// One output row per input row, computed by `exprs`.
    Project {
        /// The input.
        input: Box<Plan>,
        /// One expression per output column.
        exprs: Vec<Expr>,
    },
    /// A nested-loop join: every left row against every right row; the
    /// output row is the left columns then the right ones.
    Join {
        /// The outer input.
        left: Box<Plan>,
        /// The inner input (read once and kept in memory).
        right: Box<Plan>,
        /// Inner, left outer or cross.
        kind: JoinKind,
        /// The join condition, over the combined row.
        on: Option<Expr>,
    },
    /// A hash join on equalities (physical): the right input is loaded
    /// into a hash table on `right_keys`, then each left row probes it.
    HashJoin {
        /// The probing input.
        left: Box<Plan>,
        /// The input loaded into the hash table.
        right: Box<Plan>,
        /// Inner or left outer.
        kind: JoinKind,
        /// Key expressions over left rows.
        left_keys: Vec<Expr>,
        /// Key expressions over right rows.
        right_keys: Vec<Expr>,
        /// What else must hold, over the combined row.
        residual: Option<Expr>,
    },
    /// A merge join on equalities (physical): both inputs arrive sorted
    /// ascending on their keys (NULLs first, the order of
    /// [`Value::total_cmp`]), by an explicit `Sort` or because they are read
    /// in that order (a primary-key scan); the operator walks them side by
    /// side, holding only the right rows of one key value.
    MergeJoin {
        /// The outer input, sorted on `left_keys`.
        left: Box<Plan>,
        /// The inner input, sorted on `right_keys`.
        right: Box<Plan>,
        /// Inner or left outer.
        kind: JoinKind,
        /// Key expressions over left rows.
        left_keys: Vec<Expr>,
        /// Key expressions over right rows.
        right_keys: Vec<Expr>,
        /// What else must hold, over the combined row.
        residual: Option<Expr>,
    },
    /// An index nested-loop join (physical): for each left row, the right
    /// table's rows whose indexed column equals the left row's key are
    /// fetched through the index (or the primary key), instead of reading
    /// the right table whole.
    IndexJoin {
        /// The outer input.
        left: Box<Plan>,
        /// The right table.
        table: Arc<Table>,
        /// The index whose first column is the join column; `None`: the
        /// table's one-column primary key.
        index: Option<Index>,
        /// The key, over left rows.
        left_key: Expr,
        /// A filter on right rows (terms pushed into the right side).
        right_filter: Option<Expr>,
        /// Inner or left outer.
        kind: JoinKind,
        /// What else must hold, over the combined row.
        residual: Option<Expr>,
    },
    /// A semi-join or an anti-join (physical), what a decorrelated `IN` or
    /// `EXISTS` subquery becomes: each left row passes once, unchanged,
    /// when some right row matches it (semi) or when none does (anti). The
    /// output has the left columns only. With keys, the right input is
    /// loaded into a hash table on `right_keys` (NULL keys never match);
    /// without, every right row is tried (nested loop).
    SemiJoin {
        /// The rows that pass or not.
        left: Box<Plan>,
        /// The rows they are matched against (read once, kept in memory).
        right: Box<Plan>,
        /// Pass the left rows that match no right row (NOT EXISTS, NOT IN).
        anti: bool,
        /// Key expressions over left rows.
        left_keys: Vec<Expr>,
        /// Key expressions over right rows.
        right_keys: Vec<Expr>,
        /// What else a match needs, over the combined row (left then right).
        residual: Option<Expr>,
        /// `NOT IN`'s rules for NULL (only with one key and no residual):
        /// an empty right input passes every left row; otherwise a NULL
        /// right key, or a NULL left key, passes none.
        null_aware: bool,
    },
    /// Groups the input and computes aggregates: output rows are the
    /// group-by values followed by the aggregates.
    Aggregate {
        /// The input.
        input: Box<Plan>,
        /// The grouping expressions (none: one group over all rows).
        group_by: Vec<Expr>,
        /// The aggregates.
        aggs: Vec<AggCall>,
    },
    /// Sorts the input.
    Sort {
        /// The input.
        input: Box<Plan>,
        /// The keys, most significant first.
        keys: Vec<SortKey>,
    },
    /// Sort followed by LIMIT, keeping only `offset + limit` rows in memory
    /// (physical).
    TopN {
        /// The input.
        input: Box<Plan>,
        /// The keys.
        keys: Vec<SortKey>,
        /// Rows kept.
        limit: u64,
        /// Rows skipped first.
        offset: u64,
    },
    /// Skips `offset` rows, then passes at most `limit`.
    Limit {
        /// The input.
        input: Box<Plan>,
        /// The most rows returned (`None`: all).
        limit: Option<u64>,
        /// Rows skipped.
        offset: u64,
    },
    /// Removes duplicate rows, keeping the first of each. Rows are compared
    /// on their first `key_width` columns: the SELECT list, without the
    /// hidden ORDER BY columns that follow it (`SELECT DISTINCT a ... ORDER
    /// BY b` sorts each distinct `a` by the `b` of its first row, as SQLite
    /// does).
    Distinct {
        /// The input.
        input: Box<Plan>,
        /// The leading columns that make a row distinct.
        key_width: usize,
    },
    /// UNION (ALL), INTERSECT, EXCEPT.
    SetOp {
        /// The operator.
        op: SetOperator,
        /// Keep duplicates (UNION ALL).
        all: bool,
        /// The left input.
        left: Box<Plan>,
        /// The right input.
        right: Box<Plan>,
    },
}

impl Plan {
    /// The number of columns of the node's rows.
    pub fn width(&self) -> usize {
        match self {
            Plan::Scan { table, .. }
            | Plan::ScanBackward { table }
            | Plan::IndexScan { table, .. }
            | Plan::IndexOnlyScan { table, .. }
            | Plan::PkLookup { table, .. } => table.columns.len(),
            Plan::Values { width, .. } => *width,
            Plan::Filter { input, .. }
            | Plan::Sort { input, .. }
            | Plan::TopN { input, .. }
            | Plan::Limit { input, .. }
            | Plan::Distinct { input, .. } => input.width(),
            Plan::Project { exprs, .. } => exprs.len(),
            Plan::Join { left, right, .. }
            | Plan::HashJoin { left, right, .. }
            | Plan::MergeJoin { left, right, .. } => left.width() + right.width(),
            Plan::IndexJoin { left, table, .. } => left.width() + table.columns.len(),
            Plan::SemiJoin { left, .. } => left.width(),
            Plan::Aggregate { group_by, aggs, .. } => group_by.len() + aggs.len(),
            Plan::SetOp { left, .. } => left.width(),
        }
    }

    /// The plan as an indented tree, one node per line (EXPLAIN's output).
    pub fn explain(&self) -> Vec<String> {
        let mut lines = Vec::new();
        self.explain_into(0, &mut lines);
        lines
    }

    fn explain_into(&self, depth: usize, lines: &mut Vec<String>) {
        let pad = "  ".repeat(depth);
        let mut subqueries: Vec<Subquery> = Vec::new();
        let line = match self {
            Plan::Scan {
                table,
                columns: None,
            } => format!("Scan {}", table.name),
            Plan::Scan {
                table,
                columns: Some(read),
            } => {
                let names: Vec<&str> = table
                    .columns
                    .iter()
                    .zip(read)
                    .filter(|(_, r)| **r)
                    .map(|(c, _)| c.name.as_str())
                    .collect();
                format!("Scan {} reading ({})", table.name, names.join(", "))
            }
            Plan::ScanBackward { table } => format!("ScanBackward {}", table.name),
            Plan::IndexScan {
                table,
                index,
                range,
                reverse,
            } => format!(
                "IndexScan{} {} using {} {}",
                if *reverse { "Backward" } else { "" },
                table.name,
                index.name,
                fmt_range(range)
            ),
            Plan::IndexOnlyScan {
                table,
                index,
                range,
                reverse,
            } => format!(
                "IndexOnlyScan{} {} using {} {}",
                if *reverse { "Backward" } else { "" },
                table.name,
                index.name,
                fmt_range(range)
            ),
            Plan::PkLookup { table, key } => format!(
                "PkLookup {} key=({})",
                table.name,
                key.iter()
                    .map(|e| match e {
                        Expr::Literal(v) => v.to_string(),
                        e => fmt_expr(e),
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Plan::Values { rows, width } => format!("Values rows={} columns={}", rows.len(), width),
            Plan::Filter { predicate, .. } => {
                collect_subqueries(predicate, &mut subqueries);
                format!("Filter {}", fmt_expr(predicate))
            }
            Plan::Project { exprs, .. } => {
                exprs
                    .iter()
                    .for_each(|e| collect_subqueries(e, &mut subqueries));
                format!("Project {}", fmt_list(exprs))
            }
            Plan::Join { kind, on, .. } => format!(
                "NestedLoopJoin {:?}{}",
                kind,
                on.as_ref()
                    .map(|e| format!(" on {}", fmt_expr(e)))
                    .unwrap_or_default()
            ),
            Plan::HashJoin {
                kind,
                left_keys,
                right_keys,
                residual,
                ..
            } => format!(
                "HashJoin {:?} left=({}) right=({}){}",
                kind,
                fmt_list(left_keys),
                fmt_list(right_keys),
                residual
                    .as_ref()
                    .map(|e| format!(" residual {}", fmt_expr(e)))
                    .unwrap_or_default()
            ),
            Plan::MergeJoin {
                kind,
                left_keys,
                right_keys,
                residual,
                ..
            } => format!(
                "MergeJoin {:?} left=({}) right=({}){}",
                kind,
                fmt_list(left_keys),
                fmt_list(right_keys),
                residual
                    .as_ref()
                    .map(|e| format!(" residual {}", fmt_expr(e)))
                    .unwrap_or_default()
            ),
            Plan::IndexJoin {
                table,
                index,
                left_key,
                right_filter,
                kind,
                residual,
                ..
            } => format!(
                "IndexJoin {:?} {} using {} key={}{}{}",
                kind,
                table.name,
                index
                    .as_ref()
                    .map(|i| i.name.clone())
                    .unwrap_or_else(|| "primary key".into()),
                fmt_expr(left_key),
                right_filter
                    .as_ref()
                    .map(|e| format!(" filter {}", fmt_expr(e)))
                    .unwrap_or_default(),
                residual
                    .as_ref()
                    .map(|e| format!(" residual {}", fmt_expr(e)))
                    .unwrap_or_default()
            ),
            Plan::SemiJoin {
                anti,
                left_keys,
                right_keys,
                residual,
                null_aware,
                ..
            } => {
                let what = match (*null_aware, *anti) {
                    (true, _) => "NullAwareAntiJoin",
                    (false, true) => "AntiJoin",
                    (false, false) => "SemiJoin",
                };
                let method = if left_keys.is_empty() {
                    "NestedLoop"
                } else {
                    "Hash"
                };
                format!(
                    "{method}{what} left=({}) right=({}){}",
                    fmt_list(left_keys),
                    fmt_list(right_keys),
                    residual
                        .as_ref()
                        .map(|e| format!(" residual {}", fmt_expr(e)))
                        .unwrap_or_default()
                )
            }
            Plan::Aggregate { group_by, aggs, .. } => format!(
                "HashAggregate group=({}) aggs=({})",
                fmt_list(group_by),
                aggs.iter()
                    .map(|a| format!(
                        "{:?}({}{})",
                        a.func,
                        if a.distinct { "DISTINCT " } else { "" },
                        a.arg.as_ref().map(fmt_expr).unwrap_or_else(|| "*".into())
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Plan::Sort { keys, .. } => format!("Sort {}", fmt_keys(keys)),
            Plan::TopN {
                keys,
                limit,
                offset,
                ..
            } => format!("TopN limit={limit} offset={offset} {}", fmt_keys(keys)),
            Plan::Limit { limit, offset, .. } => format!(
                "Limit {} offset={offset}",
                limit.map(|l| l.to_string()).unwrap_or_else(|| "all".into())
            ),
            Plan::Distinct { input, key_width } => {
                if *key_width < input.width() {
                    format!("Distinct on the first {key_width} columns")
                } else {
                    "Distinct".to_string()
                }
            }
            Plan::SetOp { op, all, .. } => {
                format!("{:?}{}", op, if *all { " ALL" } else { "" })
            }
        };
        lines.push(format!("{pad}{line}"));
        for s in subqueries {
            lines.push(format!(
                "{pad}  Subquery #{}{}",
                s.id,
                if s.correlated {
                    " (correlated)"
                } else {
                    " (cached)"
                }
            ));
            s.plan.explain_into(depth + 2, lines);
        }
        for child in self.inputs() {
            child.explain_into(depth + 1, lines);
        }
    }

    /// The node's inputs.
    pub fn inputs(&self) -> Vec<&Plan> {
        match self {
            Plan::Scan { .. }
            | Plan::ScanBackward { .. }
            | Plan::IndexScan { .. }
            | Plan::IndexOnlyScan { .. }
            | Plan::PkLookup { .. }
            | Plan::Values { .. } => {
                vec![]
            }
            Plan::Filter { input, .. }
            | Plan::Project { input, .. }
            | Plan::Aggregate { input, .. }
            | Plan::Sort { input, .. }
            | Plan::TopN { input, .. }
            | Plan::Limit { input, .. }
            | Plan::Distinct { input, .. } => vec![input],
            Plan::IndexJoin { left, .. } => vec![left],
            Plan::Join { left, right, .. }
            | Plan::HashJoin { left, right, .. }
            | Plan::MergeJoin { left, right, .. }
            | Plan::SemiJoin { left, right, .. }
            | Plan::SetOp { left, right, .. } => vec![left, right],
        }
    }
}

fn collect_subqueries(e: &Expr, out: &mut Vec<Subquery>) {
    match e {
        Expr::InSubquery { expr, subquery, .. } => {
            collect_subqueries(expr, out);
            out.push(subquery.clone());
        }
        Expr::Exists { subquery, .. } | Expr::Scalar(subquery) => out.push(subquery.clone()),
        _ => e.children(&mut |c| collect_subqueries(c, out)),
    }
}

fn fmt_range(r: &IndexRange) -> String {
    use std::ops::Bound;
    let vals = |v: &Vec<Value>| {
        v.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let start = match &r.start {
        Bound::Included(v) => format!("[{}", vals(v)),
        Bound::Excluded(v) => format!("({}", vals(v)),
        Bound::Unbounded => "(-inf".into(),
    };
    let end = match &r.end {
        Bound::Included(v) => format!("{}]", vals(v)),
        Bound::Excluded(v) => format!("{})", vals(v)),
        Bound::Unbounded => "+inf)".into(),
    };
    format!("{start} .. {end}")
}

fn fmt_keys(keys: &[SortKey]) -> String {
    keys.iter()
        .map(|k| format!("{}{}", fmt_expr(&k.expr), if k.desc { " DESC" } else { "" }))
        .collect::<Vec<_>>()
        .join(", ")
}

fn fmt_list(exprs: &[Expr]) -> String {
    fmt_list_with(exprs, &positional)
}

fn fmt_list_with(exprs: &[Expr], names: ColumnNamer<'_>) -> String {
    exprs
        .iter()
        .map(|e| fmt_expr_with(e, names))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How an expression printer names a column reference, given its `depth`
/// and `index` (as in [`Expr::Column`]).
pub type ColumnNamer<'n> = &'n dyn Fn(usize, usize) -> String;

/// Names columns by position: `#3` is column 3 of the row, `outer1#3`
/// column 3 of the enclosing query's row.
pub fn positional(depth: usize, index: usize) -> String {
    if depth == 0 {
        format!("#{index}")
    } else {
        format!("outer{depth}#{index}")
    }
}

/// An expression in EXPLAIN's notation: `#3` is column 3 of the row,
/// `outer1#3` column 3 of the enclosing query's row.
pub fn fmt_expr(e: &Expr) -> String {
    fmt_expr_with(e, &positional)
}

/// An expression with its column references named by `names` (EXPLAIN
/// prints `t.a` where the plan holds a position).
pub fn fmt_expr_with(e: &Expr, names: ColumnNamer<'_>) -> String {
    let mut s = String::new();
    write_expr(e, &mut s, names);
    s
}

fn write_expr(e: &Expr, s: &mut String, names: ColumnNamer<'_>) {
    match e {
        Expr::Literal(Value::Text(t)) => {
            let _ = write!(s, "'{}'", t.replace('\'', "''"));
        }
        Expr::Literal(v) => {
            let _ = write!(s, "{v}");
        }
        Expr::Column { depth, index } => s.push_str(&names(*depth, *index)),
        Expr::Param(i) => {
            let _ = write!(s, "${}", i + 1);
        }
        Expr::Unary(op, e) => {
            s.push_str(match op {
                UnaryOp::Neg => "-",
                UnaryOp::Plus => "+",
                UnaryOp::Not => "NOT ",
                UnaryOp::BitNot => "~",
            });
            write_expr(e, s, names);
        }
        Expr::Binary(op, a, b) => {
            s.push('(');
            write_expr(a, s, names);
            let _ = write!(s, " {} ", binop_str(*op));
            write_expr(b, s, names);
            s.push(')');
        }
        Expr::IsNull(e, negated) => {
            write_expr(e, s, names);
            s.push_str(if *negated { " IS NOT NULL" } else { " IS NULL" });
        }
        Expr::Between {
            expr,
            low,
            high,
            negated,
        } => {
            write_expr(expr, s, names);
            s.push_str(if *negated {
                " NOT BETWEEN "
            } else {
                " BETWEEN "
            });
            write_expr(low, s, names);
            s.push_str(" AND ");
            write_expr(high, s, names);
        }
        Expr::InList {
            expr,
            list,
            negated,
        } => {
            write_expr(expr, s, names);
            let _ = write!(
                s,
                "{} ({})",
                if *negated { " NOT IN" } else { " IN" },
                fmt_list_with(list, names)
            );
        }
        Expr::InSubquery {
            expr,
            subquery,
            negated,
        } => {
            write_expr(expr, s, names);
            let _ = write!(
                s,
                "{} (subquery #{})",
                if *negated { " NOT IN" } else { " IN" },
                subquery.id
            );
        }
        Expr::Exists { subquery, negated } => {
            let _ = write!(
                s,
                "{}EXISTS (subquery #{})",
                if *negated { "NOT " } else { "" },
                subquery.id
            );
        }
        Expr::Scalar(subquery) => {
            let _ = write!(s, "(subquery #{})", subquery.id);
        }
        Expr::Case {
            operand,
            branches,
            else_result,
        } => {
            s.push_str("CASE");
            if let Some(o) = operand {
                s.push(' ');
                write_expr(o, s, names);
            }
            for (w, t) in branches {
                s.push_str(" WHEN ");
                write_expr(w, s, names);
                s.push_str(" THEN ");
                write_expr(t, s, names);
            }
            if let Some(e) = else_result {
                s.push_str(" ELSE ");
                write_expr(e, s, names);
            }
            s.push_str(" END");
        }
        Expr::Cast(e, ty) => {
            s.push_str("CAST(");
            write_expr(e, s, names);
            let _ = write!(s, " AS {ty})");
        }
        Expr::Function(f, args) => {
            let _ = write!(s, "{}({})", f.name(), fmt_list_with(args, names));
        }
        Expr::Like {
            expr,
            pattern,
            negated,
        } => {
            write_expr(expr, s, names);
            s.push_str(if *negated { " NOT LIKE " } else { " LIKE " });
            write_expr(pattern, s, names);
        }
    }
}

/// The SQL spelling of an infix operator.
pub fn binop_str(op: BinaryOp) -> &'static str {
    match op {
        BinaryOp::Or => "OR",
        BinaryOp::And => "AND",
        BinaryOp::Eq => "=",
        BinaryOp::NotEq => "<>",
        BinaryOp::Is => "IS",
        BinaryOp::IsNot => "IS NOT",
        BinaryOp::Lt => "<",
        BinaryOp::LtEq => "<=",
        BinaryOp::Gt => ">",
        BinaryOp::GtEq => ">=",
        BinaryOp::Add => "+",
        BinaryOp::Sub => "-",
        BinaryOp::Mul => "*",
        BinaryOp::Div => "/",
        BinaryOp::Mod => "%",
        BinaryOp::Concat => "||",
        BinaryOp::BitAnd => "&",
        BinaryOp::BitOr => "|",
        BinaryOp::ShiftLeft => "<<",
        BinaryOp::ShiftRight => ">>",
    }
}
