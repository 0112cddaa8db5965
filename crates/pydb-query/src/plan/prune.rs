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

use super::rules::{columns_of, map_children, movable};
use super::{Expr, Plan};

/// Where each column of a node's old output row is in its new one.
type ColumnMap = Vec<Option<usize>>;

/// Prunes unread columns below joins (see the module docs).
pub fn prune_projections(plan: Plan) -> Plan {
    let needed = vec![true; plan.width()];
    prune(plan, &needed).0
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
/// (every column of their children needed).
fn untouched(plan: Plan) -> (Plan, ColumnMap) {
    let w = plan.width();
    (map_children(plan, &mut prune_projections), identity(w))
}

/// Returns a plan whose rows hold at least the `needed` columns of
/// `plan`'s rows, and where each old column now is.
fn prune(plan: Plan, needed: &[bool]) -> (Plan, ColumnMap) {
    match plan {
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
            let (input, map) = prune(*input, &need);
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
            let (input, map) = narrow(*input, &need);
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
            let (input, map) = prune(*input, &need);
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
            let (input, map) = prune(*input, &need);
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
            let (input, map) = prune(*input, &need);
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
            let (input, map) = prune(*input, needed);
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
            let (left, lmap) = narrow(*left, &need[..lw]);
            let (right, rmap) = narrow(*right, &need[lw..]);
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
        Plan::HashJoin {
            left,
            right,
            kind,
            left_keys,
            right_keys,
            residual,
        } if keys_movable(&left_keys, &right_keys, &residual) => {
            let (left, right, left_keys, right_keys, residual, map) =
                prune_equi(*left, *right, left_keys, right_keys, residual, needed);
            let p = Plan::HashJoin {
                left: Box::new(left),
                right: Box::new(right),
                kind,
                left_keys,
                right_keys,
                residual,
            };
            (p, map)
        }
        Plan::MergeJoin {
            left,
            right,
            kind,
            left_keys,
            right_keys,
            residual,
        } if keys_movable(&left_keys, &right_keys, &residual) => {
            let (left, right, left_keys, right_keys, residual, map) =
                prune_equi(*left, *right, left_keys, right_keys, residual, needed);
            let p = Plan::MergeJoin {
                left: Box::new(left),
                right: Box::new(right),
                kind,
                left_keys,
                right_keys,
                residual,
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
            let (left, right, left_keys, right_keys, residual, map) =
                prune_equi(*left, *right, left_keys, right_keys, residual, &need);
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
            let (left, lmap) = narrow(*left, &lneed);
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
        p => untouched(p),
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
/// row.
fn prune_equi(
    left: Plan,
    right: Plan,
    mut left_keys: Vec<Expr>,
    mut right_keys: Vec<Expr>,
    mut residual: Option<Expr>,
    needed: &[bool],
) -> Equi {
    let lw = left.width();
    let mut need = needed.to_vec();
    residual.iter().for_each(|e| mark(&mut need, e));
    let mut lneed = need[..lw].to_vec();
    left_keys.iter().for_each(|e| mark(&mut lneed, e));
    let mut rneed = need[lw..].to_vec();
    right_keys.iter().for_each(|e| mark(&mut rneed, e));
    let (left, lmap) = narrow(left, &lneed);
    let (right, rmap) = narrow(right, &rneed);
    left_keys.iter_mut().for_each(|e| remap(e, &lmap));
    right_keys.iter_mut().for_each(|e| remap(e, &rmap));
    let map = concat(lmap, left.width(), rmap);
    residual.iter_mut().for_each(|e| remap(e, &map));
    (left, right, left_keys, right_keys, residual, map)
}

/// Prunes `plan`, then drops the columns nobody needs with a `Project` on
/// top (or by trimming the `Project` already there).
fn narrow(plan: Plan, needed: &[bool]) -> (Plan, ColumnMap) {
    let (plan, map) = prune(plan, needed);
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
