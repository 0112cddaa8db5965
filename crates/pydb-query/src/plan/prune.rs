//! Projection pruning: joins carry only the columns someone reads.
//!
//! A join's output row is its left row followed by its right row, whole.
//! In `SELECT a.x FROM a JOIN b ON a.id = b.aid` the hash table built on
//! `b` would hold every column of `b`, although only `b.aid` is ever read.
//! This rule walks the plan from the root down, computing for each node
//! which of its output columns its parent needs, and puts a narrow
//! `Project` below each join input that would otherwise carry unread
//! columns:
//!
//! ```text
//! Project a.x                      Project #0
//!   HashJoin a.id = b.aid    =>      HashJoin #1 = #2
//!     Scan a  (5 columns)              Project a.x, a.id
//!     Scan b  (4 columns)                Scan a
//!                                      Project b.aid
//!                                        Scan b
//! ```
//!
//! Column positions change, so every expression above a narrowed input is
//! rewritten through a map from old position to new position.
//!
//! Invariants:
//! - The root keeps its output columns, in order: pruning never changes a
//!   query's result, only the width of intermediate rows.
//! - A node whose expressions hold a correlated subquery is left alone with
//!   everything below it: the subquery reads the node's row by position.
//! - The rule runs last, after the physical choices (index, join method,
//!   sort elimination), since a `Project` between a join and its scan
//!   would hide the scan from them.
//!
//! # Covering scans
//!
//! The walk knows, at each table scan, which of the table's columns the
//! query reads. When an index's entries hold all of them (its indexed
//! columns plus the primary key, which every entry carries), the rows need
//! not be fetched: the scan becomes an index-only scan
//! ([`Plan::IndexOnlyScan`], "Index Only Scan" in EXPLAIN, as PostgreSQL
//! says). An index range scan always gains (same rows, same order, one
//! fetch fewer per row); a whole-table scan is replaced only when the
//! estimator prices the index cheaper, and only when nothing above relies
//! on the primary-key order the table scan gives (a merge join, or an
//! ORDER BY the rules dropped because of it): the walk carries that as
//! `ordered`. Columns the index does not hold come out NULL, which is
//! harmless exactly because nothing reads them.
//!
//! # Projection pushdown
//!
//! A table scan that stays a table scan still learns which columns are
//! read: it carries them (`Plan::Scan`'s `columns`, "Scan t reading (a, c)"
//! in the compact plan), and the store decodes only those values of each
//! row, leaving NULL in the others (`Store::scan_columns`). Decoding was
//! most of an analytical query's time (every text value is an
//! allocation); `SELECT COUNT(*)` now builds no value at all. The row
//! keeps its width, so no expression above needs rewriting.

use std::ops::Bound;

use super::cost::Estimator;
use super::rules::{columns_of, map_children, movable};
use super::{Expr, Plan};
use crate::catalog::{Index, Table};
use crate::store::IndexRange;

/// Where each column of a node's old output row is in its new one.
type ColumnMap = Vec<Option<usize>>;

/// Prunes unread columns below joins (see the module docs), without
/// covering scans.
pub fn prune_projections(plan: Plan) -> Plan {
    prune_root(plan, &Cx { est: None })
}

/// Prunes unread columns below joins and turns the table and index scans
/// whose read columns an index holds into covering scans (see the module
/// docs); `est` prices a covering scan of a whole index against a table
/// scan.
pub fn prune_and_cover(plan: Plan, est: &Estimator<'_>) -> Plan {
    prune_root(plan, &Cx { est: Some(est) })
}

/// What the walk carries: the estimator, when covering scans are chosen.
struct Cx<'e, 'a> {
    est: Option<&'e Estimator<'a>>,
}

/// The root's rows are what the query returns, in the order they come:
/// every column is needed, and the order too (a sort the index order made
/// unnecessary is gone).
fn prune_root(plan: Plan, cx: &Cx<'_, '_>) -> Plan {
    let needed = vec![true; plan.width()];
    prune(plan, &needed, true, cx).0
}

fn identity(width: usize) -> ColumnMap {
    (0..width).map(Some).collect()
}

fn mark(needed: &mut [bool], e: &Expr) {
    for c in columns_of(e) {
        if let Some(n) = needed.get_mut(c) {
            *n = true;
        }
    }
}

/// Rewrites `e`'s current-row columns through `map`.
fn remap(e: &mut Expr, map: &ColumnMap) {
    e.map_columns(&|i| map.get(i).copied().flatten().unwrap_or(i));
}

/// Leaves `plan` as it is, pruning only below nodes that start afresh
/// (every column of their children needed, and their order).
fn untouched(plan: Plan, cx: &Cx<'_, '_>) -> (Plan, ColumnMap) {
    let w = plan.width();
    (map_children(plan, &mut |c| prune_root(c, cx)), identity(w))
}

/// Returns a plan whose rows hold at least the `needed` columns of
/// `plan`'s rows, and where each old column now is. `ordered`: something
/// above relies on the order the rows come in (a merge join, or a sort
/// that index order replaced), so a scan may not change it.
fn prune(plan: Plan, needed: &[bool], ordered: bool, cx: &Cx<'_, '_>) -> (Plan, ColumnMap) {
    let merge = matches!(plan, Plan::MergeJoin { .. });
    match plan {
        Plan::Scan { .. } | Plan::IndexScan { .. } => (
            read_only(cover(plan, needed, ordered, cx), needed),
            identity(needed.len()),
        ),
        Plan::Project { input, exprs } if exprs.iter().all(movable) => {
            // Outputs nobody reads are dropped (a join reordering's
            // Project restores every column; the parent may read few).
            let mut out: ColumnMap = vec![None; exprs.len()];
            let mut kept = Vec::new();
            for (i, e) in exprs.into_iter().enumerate() {
                if needed.get(i).copied().unwrap_or(true) {
                    out[i] = Some(kept.len());
                    kept.push(e);
                }
            }
            let mut need = vec![false; input.width()];
            kept.iter().for_each(|e| mark(&mut need, e));
            let (input, map) = prune(*input, &need, ordered, cx);
            kept.iter_mut().for_each(|e| remap(e, &map));
            let p = Plan::Project {
                input: Box::new(input),
                exprs: kept,
            };
            (p, out)
        }
        Plan::Aggregate {
            input,
            mut group_by,
            mut aggs,
        } if group_by.iter().all(movable)
            && aggs
                .iter()
                .all(|a| a.arg.iter().chain(a.separator.iter()).all(movable)) =>
        {
            let mut need = vec![false; input.width()];
            group_by.iter().for_each(|e| mark(&mut need, e));
            for a in &aggs {
                a.arg
                    .iter()
                    .chain(a.separator.iter())
                    .for_each(|e| mark(&mut need, e));
            }
            let (input, map) = narrow(*input, &need, false, cx);
            group_by.iter_mut().for_each(|e| remap(e, &map));
            for a in &mut aggs {
                a.arg.iter_mut().for_each(|e| remap(e, &map));
                a.separator.iter_mut().for_each(|e| remap(e, &map));
            }
            let w = group_by.len() + aggs.len();
            let p = Plan::Aggregate {
                input: Box::new(input),
                group_by,
                aggs,
            };
            (p, identity(w))
        }
        Plan::Filter {
            input,
            mut predicate,
        } if movable(&predicate) => {
            let mut need = needed.to_vec();
            mark(&mut need, &predicate);
            let (input, map) = prune(*input, &need, ordered, cx);
            remap(&mut predicate, &map);
            let p = Plan::Filter {
                input: Box::new(input),
                predicate,
            };
            (p, map)
        }
        Plan::Sort { input, mut keys } if keys.iter().all(|k| movable(&k.expr)) => {
            let mut need = needed.to_vec();
            keys.iter().for_each(|k| mark(&mut need, &k.expr));
            let (input, map) = prune(*input, &need, false, cx);
            keys.iter_mut().for_each(|k| remap(&mut k.expr, &map));
            let p = Plan::Sort {
                input: Box::new(input),
                keys,
            };
            (p, map)
        }
        Plan::TopN {
            input,
            mut keys,
            limit,
            offset,
        } if keys.iter().all(|k| movable(&k.expr)) => {
            let mut need = needed.to_vec();
            keys.iter().for_each(|k| mark(&mut need, &k.expr));
            let (input, map) = prune(*input, &need, false, cx);
            keys.iter_mut().for_each(|k| remap(&mut k.expr, &map));
            let p = Plan::TopN {
                input: Box::new(input),
                keys,
                limit,
                offset,
            };
            (p, map)
        }
        Plan::Limit {
            input,
            limit,
            offset,
        } => {
            let (input, map) = prune(*input, needed, ordered, cx);
            let p = Plan::Limit {
                input: Box::new(input),
                limit,
                offset,
            };
            (p, map)
        }
        Plan::Join {
            left,
            right,
            kind,
            mut on,
        } if on.iter().all(movable) => {
            let lw = left.width();
            let mut need = needed.to_vec();
            on.iter().for_each(|e| mark(&mut need, e));
            let (left, lmap) = narrow(*left, &need[..lw], ordered, cx);
            let (right, rmap) = narrow(*right, &need[lw..], false, cx);
            let map = concat(lmap, left.width(), rmap);
            on.iter_mut().for_each(|e| remap(e, &map));
            let p = Plan::Join {
                left: Box::new(left),
                right: Box::new(right),
                kind,
                on,
            };
            (p, map)
        }
        // A merge join needs both inputs in key order; a hash join keeps
        // the probe (left) side's order only when the caller needs it.
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
        } if keys_movable(&left_keys, &right_keys, &residual) => {
            let order = if merge {
                (true, true)
            } else {
                (ordered, false)
            };
            let (left, right, left_keys, right_keys, residual, map) = prune_equi(
                (*left, *right),
                left_keys,
                right_keys,
                residual,
                needed,
                order,
                cx,
            );
            let (left, right) = (Box::new(left), Box::new(right));
            let p = if merge {
                Plan::MergeJoin {
                    left,
                    right,
                    kind,
                    left_keys,
                    right_keys,
                    residual,
                }
            } else {
                Plan::HashJoin {
                    left,
                    right,
                    kind,
                    left_keys,
                    right_keys,
                    residual,
                }
            };
            (p, map)
        }
        Plan::SemiJoin {
            left,
            right,
            anti,
            left_keys,
            right_keys,
            residual,
            null_aware,
        } if keys_movable(&left_keys, &right_keys, &residual) => {
            // The output is the left row; `residual` reads left then right.
            let lw = left.width();
            let mut need = needed.to_vec();
            need.resize(lw + right.width(), false);
            let (left, right, left_keys, right_keys, residual, map) = prune_equi(
                (*left, *right),
                left_keys,
                right_keys,
                residual,
                &need,
                (ordered, false),
                cx,
            );
            let mut map = map;
            map.truncate(lw);
            let p = Plan::SemiJoin {
                left: Box::new(left),
                right: Box::new(right),
                anti,
                left_keys,
                right_keys,
                residual,
                null_aware,
            };
            (p, map)
        }
        Plan::IndexJoin {
            left,
            table,
            index,
            mut left_key,
            right_filter,
            kind,
            mut residual,
        } if movable(&left_key) && residual.iter().all(movable) => {
            // The right row is read whole from the table; only the left
            // input can be narrowed.
            let lw = left.width();
            let mut need = needed.to_vec();
            residual.iter().for_each(|e| mark(&mut need, e));
            let mut lneed = need[..lw].to_vec();
            mark(&mut lneed, &left_key);
            let (left, lmap) = narrow(*left, &lneed, ordered, cx);
            remap(&mut left_key, &lmap);
            let map = concat(lmap, left.width(), identity(table.columns.len()));
            residual.iter_mut().for_each(|e| remap(e, &map));
            let p = Plan::IndexJoin {
                left: Box::new(left),
                table,
                index,
                left_key,
                right_filter,
                kind,
                residual,
            };
            (p, map)
        }
        p => untouched(p, cx),
    }
}

fn keys_movable(left: &[Expr], right: &[Expr], residual: &Option<Expr>) -> bool {
    left.iter().chain(right).chain(residual.iter()).all(movable)
}

/// The map of a join's row: the left map, then the right one shifted past
/// the new left width.
fn concat(left: ColumnMap, new_left_width: usize, right: ColumnMap) -> ColumnMap {
    left.into_iter()
        .chain(right.into_iter().map(|m| m.map(|i| i + new_left_width)))
        .collect()
}

type Equi = (Plan, Plan, Vec<Expr>, Vec<Expr>, Option<Expr>, ColumnMap);

/// Narrows both inputs of an equality join; `needed` is over the combined
/// row, `ordered` says whether each input's order is relied on.
fn prune_equi(
    (left, right): (Plan, Plan),
    mut left_keys: Vec<Expr>,
    mut right_keys: Vec<Expr>,
    mut residual: Option<Expr>,
    needed: &[bool],
    ordered: (bool, bool),
    cx: &Cx<'_, '_>,
) -> Equi {
    let lw = left.width();
    let mut need = needed.to_vec();
    residual.iter().for_each(|e| mark(&mut need, e));
    let mut lneed = need[..lw].to_vec();
    left_keys.iter().for_each(|e| mark(&mut lneed, e));
    let mut rneed = need[lw..].to_vec();
    right_keys.iter().for_each(|e| mark(&mut rneed, e));
    let (left, lmap) = narrow(left, &lneed, ordered.0, cx);
    let (right, rmap) = narrow(right, &rneed, ordered.1, cx);
    left_keys.iter_mut().for_each(|e| remap(e, &lmap));
    right_keys.iter_mut().for_each(|e| remap(e, &rmap));
    let map = concat(lmap, left.width(), rmap);
    residual.iter_mut().for_each(|e| remap(e, &map));
    (left, right, left_keys, right_keys, residual, map)
}

/// Prunes `plan`, then drops the columns nobody needs with a `Project` on
/// top (or by trimming the `Project` already there). `ordered` as for
/// [`prune`].
fn narrow(plan: Plan, needed: &[bool], ordered: bool, cx: &Cx<'_, '_>) -> (Plan, ColumnMap) {
    let (plan, map) = prune(plan, needed, ordered, cx);
    let kept: Vec<usize> = (0..needed.len()).filter(|&i| needed[i]).collect();
    if kept.len() >= plan.width() {
        return (plan, map);
    }
    let mut out: ColumnMap = vec![None; needed.len()];
    for (new, &old) in kept.iter().enumerate() {
        out[old] = Some(new);
    }
    let exprs: Vec<Expr> = kept
        .iter()
        .map(|&old| Expr::Column {
            depth: 0,
            index: map[old].unwrap_or(old),
        })
        .collect();
    let plan = match plan {
        Plan::Project {
            input,
            exprs: inner,
        } => Plan::Project {
            input,
            exprs: exprs
                .iter()
                .map(|e| match e {
                    Expr::Column { index, .. } => inner[*index].clone(),
                    e => e.clone(),
                })
                .collect(),
        },
        p => Plan::Project {
            input: Box::new(p),
            exprs,
        },
    };
    (plan, out)
}

/// A table scan whose rows are read only in part decodes only the
/// `needed` columns (projection pushdown): the others come out NULL,
/// which is harmless for the same reason as in a covering scan.
fn read_only(plan: Plan, needed: &[bool]) -> Plan {
    match plan {
        Plan::Scan {
            table,
            columns: None,
        } if needed.len() == table.columns.len() && needed.contains(&false) => Plan::Scan {
            table,
            columns: Some(needed.to_vec()),
        },
        p => p,
    }
}

// ---- covering scans ----

/// Whether every `needed` column of `table` is one that an entry of
/// `index` holds: an indexed column or a primary-key column.
fn covers(table: &Table, index: &Index, needed: &[bool]) -> bool {
    needed
        .iter()
        .enumerate()
        .all(|(c, n)| !n || index.columns.contains(&c) || table.primary_key.contains(&c))
}

/// The scan that reads `needed` columns of its table most cheaply: an
/// index range scan becomes the covering scan of the same range (same
/// rows, same order, no row fetches); a whole-table scan whose order
/// nothing relies on becomes a covering scan of a whole index, if one
/// holds the columns and the estimator prices it below the table scan
/// (the narrowest index, when several do).
fn cover(plan: Plan, needed: &[bool], ordered: bool, cx: &Cx<'_, '_>) -> Plan {
    let Some(est) = cx.est else {
        return plan;
    };
    match plan {
        Plan::IndexScan {
            table,
            index,
            range,
            reverse,
        } if covers(&table, &index, needed) => Plan::IndexOnlyScan {
            table,
            index,
            range,
            reverse,
        },
        Plan::Scan { table, .. } if !ordered => {
            let scan_cost = est
                .estimate(&Plan::Scan {
                    table: table.clone(),
                    columns: None,
                })
                .cost;
            let whole = IndexRange {
                start: Bound::Unbounded,
                end: Bound::Unbounded,
            };
            let cheapest = table
                .indexes
                .iter()
                .filter(|i| covers(&table, i, needed))
                .map(|index| {
                    let scan = Plan::IndexOnlyScan {
                        table: table.clone(),
                        index: index.clone(),
                        range: whole.clone(),
                        reverse: false,
                    };
                    (est.estimate(&scan).cost, scan)
                })
                .min_by(|a, b| a.0.total_cmp(&b.0));
            match cheapest {
                Some((cost, scan)) if cost < scan_cost => scan,
                _ => Plan::Scan {
                    table,
                    columns: None,
                },
            }
        }
        p => p,
    }
}
