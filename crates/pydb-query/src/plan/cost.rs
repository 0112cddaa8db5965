//! Cardinality and cost estimates: how many rows each operator produces,
//! and what running it costs.
//!
//! The optimizer compares plans by their [`Estimate`]. Row counts come from
//! the statistics `ANALYZE` stores ([`super::stats`]); a table never
//! analyzed is assumed to hold [`DEFAULT_TABLE_ROWS`] rows.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use crate::ast::BinaryOp;
use crate::catalog::Table;
use crate::plan::stats::TableStats;
use crate::plan::{Expr, Plan};
use crate::store::Store;

/// The rows assumed for a table that has no statistics.
pub const DEFAULT_TABLE_ROWS: f64 = 1000.0;

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
}

impl std::fmt::Debug for Estimator<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Estimator").finish_non_exhaustive()
    }
}

impl<'a> Estimator<'a> {
    /// An estimator that reads statistics from `store`.
    pub fn new(store: &'a dyn Store) -> Self {
        Estimator {
            store: Some(store),
            stats: RefCell::new(HashMap::new()),
        }
    }

    /// An estimator without statistics: every table has the default size.
    pub fn without_stats() -> Estimator<'static> {
        Estimator {
            store: None,
            stats: RefCell::new(HashMap::new()),
        }
    }

    /// The statistics of `table`, if ANALYZE stored some. A store error
    /// counts as no statistics: estimates never fail a query.
    pub fn table_stats(&self, table: &Table) -> Option<Arc<TableStats>> {
        let store = self.store?;
        self.stats
            .borrow_mut()
            .entry(table.id)
            .or_insert_with(|| store.table_stats(table).ok().flatten())
            .clone()
    }

    /// The number of rows of `table`.
    pub fn table_rows(&self, table: &Table) -> f64 {
        self.table_stats(table)
            .map(|s| s.row_count as f64)
            .unwrap_or(DEFAULT_TABLE_ROWS)
    }

    /// The fraction of `input`'s rows for which `predicate` holds.
    pub fn selectivity(&self, input: &Plan, predicate: &Expr) -> f64 {
        let _ = input;
        match predicate {
            Expr::Binary(BinaryOp::And, a, b) => {
                self.selectivity(input, a) * self.selectivity(input, b)
            }
            Expr::Binary(BinaryOp::Or, a, b) => {
                let (x, y) = (self.selectivity(input, a), self.selectivity(input, b));
                x + y - x * y
            }
            Expr::Binary(BinaryOp::Eq | BinaryOp::Is, _, _) => 0.005,
            Expr::Binary(BinaryOp::Lt | BinaryOp::LtEq | BinaryOp::Gt | BinaryOp::GtEq, _, _) => {
                1.0 / 3.0
            }
            _ => 0.5,
        }
    }

    /// The estimated rows and cost of `plan`.
    pub fn estimate(&self, plan: &Plan) -> Estimate {
        let inputs: Vec<Estimate> = plan.inputs().iter().map(|p| self.estimate(p)).collect();
        let child_cost: f64 = inputs.iter().map(|e| e.cost).sum();
        let first = inputs.first().map(|e| e.rows).unwrap_or(0.0);
        let rows = match plan {
            Plan::Scan { table } => self.table_rows(table),
            Plan::IndexScan { table, .. } => (self.table_rows(table) * 0.1).max(1.0),
            Plan::PkLookup { .. } => 1.0,
            Plan::Values { rows, .. } => rows.len() as f64,
            Plan::Filter { input, predicate } => first * self.selectivity(input, predicate),
            Plan::Join {
                left, right, on, ..
            } => {
                let r = inputs.get(1).map(|e| e.rows).unwrap_or(0.0);
                let _ = (left, right);
                first * r * on.as_ref().map(|_| 0.1).unwrap_or(1.0)
            }
            Plan::HashJoin { .. } => first.max(inputs.get(1).map(|e| e.rows).unwrap_or(0.0)),
            Plan::IndexJoin { .. } => first,
            Plan::SemiJoin { .. } => first * 0.5,
            Plan::Aggregate { group_by, .. } => {
                if group_by.is_empty() {
                    1.0
                } else {
                    (first / 10.0).max(1.0)
                }
            }
            Plan::TopN { limit, offset, .. } => first.min((limit + offset) as f64),
            Plan::Limit { limit, .. } => limit.map(|l| first.min(l as f64)).unwrap_or(first),
            Plan::SetOp { .. } => inputs.iter().map(|e| e.rows).sum(),
            Plan::Project { .. } | Plan::Sort { .. } | Plan::Distinct { .. } => first,
        };
        Estimate {
            rows,
            cost: child_cost + rows,
        }
    }
}
