//! Rewrite rules: the optimizer.
//!
//! Each rule takes a plan and returns an equivalent one that is cheaper to
//! run. They run in this order, every rule over the whole tree (and over
//! the plans of subqueries inside expressions):
//!
//! 1. **Constant folding**: an expression that reads no row (`2 * 3 + 1`)
//!    is computed once, here. A filter that is always true disappears; one
//!    that is never true becomes an empty `Values`. An expression whose
//!    evaluation fails (`9223372036854775807 + 1`) is left alone, so the
//!    error comes when, and only if, a row needs it.
//! 2. **Join order**: the inputs of a chain of inner (or comma) joins are
//!    put in an order where each next input shares a condition with the
//!    ones before it, starting from the input with the most conditions of
//!    its own, so that no step is a cross product that a later condition
//!    would have cut down (a projection on top restores the column order).
//!    This is a greedy heuristic, not a cost-based search.
//! 3. **Predicate pushdown**: a filter is split into its AND terms, and
//!    each term moves as far down as the columns it reads allow: through
//!    projections (rewritten in terms of the projection's input), sorts
//!    and DISTINCT, below an aggregation when it reads only group columns,
//!    and into the side of a join that has all its columns. Terms that
//!    read both sides of an inner join become the join's condition. The
//!    right side of a LEFT join is never filtered by WHERE (its NULL rows
//!    must stay to be tested). Terms holding a correlated subquery stay
//!    where they are.
//! 4. **Join selection**: a join whose condition has equalities between an
//!    expression of the left side and one of the right becomes an index
//!    nested-loop join when the right side is a table with an index (or a
//!    one-column primary key) on its key column, as SQLite prefers; else a
//!    hash join. The other terms stay as a residual check.
//! 5. **Index selection**: a filter over a table scan whose terms compare
//!    indexed columns with constants becomes a filter over an index range
//!    scan (equality on a prefix of the index's columns, then a range on
//!    the next one), or a primary-key lookup when every key column is
//!    fixed. The filter stays above: the range narrows the rows read, the
//!    filter still decides.
//! 6. **Top-N**: ORDER BY with a small LIMIT keeps only the rows it
//!    returns, instead of sorting everything.

use std::ops::Bound;
use std::sync::Arc;

use crate::ast::{BinaryOp, JoinKind};
use crate::catalog::Table;
use crate::exec::eval::eval_constant;
use crate::plan::cost::Estimator;
use crate::plan::decorrelate::decorrelate;
use crate::plan::{Expr, Plan};
use crate::store::IndexRange;
use crate::value::Value;

/// The largest LIMIT + OFFSET for which a top-N sort is chosen.
pub const TOP_N_MAX: u64 = 1000;

/// Runs every rule over `plan`; `est` estimates rows and costs where a
/// rule chooses between plans.
pub fn optimize(plan: Plan, est: &Estimator<'_>) -> Plan {
    optimize_with(plan, est, true)
}

/// Optimizes the plan that finds an UPDATE's or DELETE's target rows: the
/// same rules, except those that would change its shape (a filter over one
/// table, whose rows come with their storage keys) into a join.
pub fn optimize_target(plan: Plan, est: &Estimator<'_>) -> Plan {
    optimize_with(plan, est, false)
}

fn optimize_with(plan: Plan, est: &Estimator<'_>, joins_allowed: bool) -> Plan {
    let _ = est;
    let plan = map_plan(plan, &mut |p| fold_plan_constants(p));
    let plan = if joins_allowed {
        decorrelate(plan)
    } else {
        plan
    };
    let plan = map_plan(plan, &mut reorder_joins);
    let plan = push_down(plan);
    let plan = map_plan(plan, &mut choose_join);
    let plan = map_plan(plan, &mut choose_index);
    map_plan(plan, &mut choose_top_n)
}

/// Applies `f` bottom-up to every node, including the plans of subqueries
/// inside the node's expressions.
pub(crate) fn map_plan(plan: Plan, f: &mut dyn FnMut(Plan) -> Plan) -> Plan {
    let mut plan = map_children(plan, &mut |c| map_plan(c, f));
    for_each_expr_mut(&mut plan, &mut |e| map_subqueries(e, f));
    f(plan)
}

fn map_subqueries(e: &mut Expr, f: &mut dyn FnMut(Plan) -> Plan) {
    match e {
        Expr::InSubquery { expr, subquery, .. } => {
            map_subqueries(expr, f);
            let p = std::mem::replace(&mut *subquery.plan, empty(0));
            *subquery.plan = map_plan(p, f);
        }
        Expr::Exists { subquery, .. } | Expr::Scalar(subquery) => {
            let p = std::mem::replace(&mut *subquery.plan, empty(0));
            *subquery.plan = map_plan(p, f);
        }
        _ => e.children_mut(&mut |c| map_subqueries(c, f)),
    }
}

fn empty(width: usize) -> Plan {
    Plan::Values {
        rows: Vec::new(),
        width,
    }
}

/// Rebuilds a node with each input replaced by `f(input)`.
pub(crate) fn map_children(plan: Plan, f: &mut dyn FnMut(Plan) -> Plan) -> Plan {
    let mut b = |p: Box<Plan>| Box::new(f(*p));
    match plan {
        Plan::Filter { input, predicate } => Plan::Filter {
            input: b(input),
            predicate,
        },
        Plan::Project { input, exprs } => Plan::Project {
            input: b(input),
            exprs,
        },
        Plan::Join {
            left,
            right,
            kind,
            on,
        } => Plan::Join {
            left: b(left),
            right: b(right),
            kind,
            on,
        },
        Plan::HashJoin {
            left,
            right,
            kind,
            left_keys,
            right_keys,
            residual,
        } => Plan::HashJoin {
            left: b(left),
            right: b(right),
            kind,
            left_keys,
            right_keys,
            residual,
        },
        Plan::IndexJoin {
            left,
            table,
            index,
            left_key,
            right_filter,
            kind,
            residual,
        } => Plan::IndexJoin {
            left: b(left),
            table,
            index,
            left_key,
            right_filter,
            kind,
            residual,
        },
        Plan::SemiJoin {
            left,
            right,
            anti,
            left_keys,
            right_keys,
            residual,
            null_aware,
        } => Plan::SemiJoin {
            left: b(left),
            right: b(right),
            anti,
            left_keys,
            right_keys,
            residual,
            null_aware,
        },
        Plan::Aggregate {
            input,
            group_by,
            aggs,
        } => Plan::Aggregate {
            input: b(input),
            group_by,
            aggs,
        },
        Plan::Sort { input, keys } => Plan::Sort {
            input: b(input),
            keys,
        },
        Plan::TopN {
            input,
            keys,
            limit,
            offset,
        } => Plan::TopN {
            input: b(input),
            keys,
            limit,
            offset,
        },
        Plan::Limit {
            input,
            limit,
            offset,
        } => Plan::Limit {
            input: b(input),
            limit,
            offset,
        },
        Plan::Distinct { input, key_width } => Plan::Distinct {
            input: b(input),
            key_width,
        },
        Plan::SetOp {
            op,
            all,
            left,
            right,
        } => Plan::SetOp {
            op,
            all,
            left: b(left),
            right: b(right),
        },
        leaf => leaf,
    }
}

/// Calls `f` on each expression held directly by the node.
pub(crate) fn for_each_expr_mut(plan: &mut Plan, f: &mut dyn FnMut(&mut Expr)) {
    match plan {
        Plan::Values { rows, .. } => rows.iter_mut().flatten().for_each(f),
        Plan::Filter { predicate, .. } => f(predicate),
        Plan::Project { exprs, .. } => exprs.iter_mut().for_each(f),
        Plan::Join { on, .. } => on.iter_mut().for_each(f),
        Plan::HashJoin {
            left_keys,
            right_keys,
            residual,
            ..
        }
        | Plan::SemiJoin {
            left_keys,
            right_keys,
            residual,
            ..
        } => {
            left_keys.iter_mut().for_each(&mut *f);
            right_keys.iter_mut().for_each(&mut *f);
            residual.iter_mut().for_each(f);
        }
        Plan::IndexJoin {
            left_key,
            right_filter,
            residual,
            ..
        } => {
            f(left_key);
            right_filter.iter_mut().for_each(&mut *f);
            residual.iter_mut().for_each(f);
        }
        Plan::Aggregate { group_by, aggs, .. } => {
            group_by.iter_mut().for_each(&mut *f);
            for a in aggs {
                a.arg.iter_mut().for_each(&mut *f);
                a.separator.iter_mut().for_each(&mut *f);
            }
        }
        Plan::Sort { keys, .. } | Plan::TopN { keys, .. } => {
            keys.iter_mut().for_each(|k| f(&mut k.expr))
        }
        _ => {}
    }
}

// ---- 1. constant folding ----

/// Folds the constant parts of an expression.
pub fn fold_expr(e: &mut Expr) {
    e.children_mut(&mut fold_expr);
    if !matches!(e, Expr::Literal(_))
        && e.is_constant()
        && let Ok(v) = eval_constant(e)
    {
        *e = Expr::Literal(v);
    }
}

fn fold_plan_constants(mut plan: Plan) -> Plan {
    for_each_expr_mut(&mut plan, &mut fold_expr);
    match plan {
        Plan::Filter {
            input,
            predicate: Expr::Literal(v),
        } => {
            if v.truth() == Some(true) {
                *input
            } else {
                empty(input.width())
            }
        }
        p => p,
    }
}

// ---- 2. join order ----

/// Flattens a left-deep tree of inner and cross joins into its inputs and
/// the terms of its ON conditions; false if it holds a LEFT join or a join
/// as a right input.
fn flatten_joins(plan: Plan, leaves: &mut Vec<Plan>, terms: &mut Vec<Expr>) -> bool {
    match plan {
        Plan::Join {
            left,
            right,
            kind,
            on,
        } if kind != JoinKind::Left && !matches!(*right, Plan::Join { .. }) => {
            let ok = flatten_joins(*left, leaves, terms);
            leaves.push(*right);
            terms.extend(on.map(Expr::conjuncts).unwrap_or_default());
            ok
        }
        Plan::Join { .. } => false,
        other => {
            leaves.push(other);
            true
        }
    }
}

fn is_inner_join_chain(plan: &Plan) -> bool {
    match plan {
        Plan::Join {
            left, right, kind, ..
        } => {
            let left_ok = match **left {
                Plan::Join { .. } => is_inner_join_chain(left),
                _ => true,
            };
            *kind != JoinKind::Left && !matches!(**right, Plan::Join { .. }) && left_ok
        }
        _ => false,
    }
}

fn reorder_joins(plan: Plan) -> Plan {
    let Plan::Filter { input, predicate } = plan else {
        return plan;
    };
    if !is_inner_join_chain(&input) {
        return Plan::Filter { input, predicate };
    }
    let original = Plan::Filter {
        input: input.clone(),
        predicate: predicate.clone(),
    };
    let mut leaves = Vec::new();
    let mut terms = predicate.conjuncts();
    if !flatten_joins(*input, &mut leaves, &mut terms)
        || leaves.len() < 3
        || !terms.iter().all(movable)
    {
        return original;
    }
    // Where each input's columns start in the joined row.
    let mut offsets = Vec::with_capacity(leaves.len());
    let mut width = 0;
    for l in &leaves {
        offsets.push(width);
        width += l.width();
    }
    let leaf_of = |col: usize| offsets.iter().rposition(|o| *o <= col).unwrap_or(0);
    let term_leaves: Vec<Vec<usize>> = terms
        .iter()
        .map(|t| {
            let mut ls: Vec<usize> = columns_of(t).into_iter().map(leaf_of).collect();
            ls.sort_unstable();
            ls.dedup();
            ls
        })
        .collect();
    let own_terms = |leaf: usize| term_leaves.iter().filter(|ls| **ls == [leaf]).count();
    // Greedy: start with the input that has the most conditions of its
    // own, then take inputs connected to those already taken.
    let mut order: Vec<usize> = Vec::with_capacity(leaves.len());
    let first = (0..leaves.len())
        .max_by_key(|l| (own_terms(*l), std::cmp::Reverse(*l)))
        .unwrap_or(0);
    order.push(first);
    while order.len() < leaves.len() {
        let connected = (0..leaves.len()).filter(|l| !order.contains(l)).find(|l| {
            term_leaves.iter().any(|ls| {
                ls.contains(l) && ls.len() > 1 && ls.iter().all(|x| x == l || order.contains(x))
            })
        });
        let next = connected
            .or_else(|| (0..leaves.len()).find(|l| !order.contains(l)))
            .unwrap_or(0);
        order.push(next);
    }
    if order.iter().enumerate().all(|(i, l)| i == *l) {
        return original;
    }
    // New positions: inputs in the new order, columns in order within each.
    let mut new_pos = vec![0usize; width];
    let mut at = 0;
    for l in &order {
        for c in 0..leaves[*l].width() {
            new_pos[offsets[*l] + c] = at;
            at += 1;
        }
    }
    let mut slots: Vec<Option<Plan>> = leaves.into_iter().map(Some).collect();
    let mut joined: Option<Plan> = None;
    for l in &order {
        let leaf = slots[*l].take().unwrap_or_else(|| empty(0));
        joined = Some(match joined {
            None => leaf,
            Some(acc) => Plan::Join {
                left: Box::new(acc),
                right: Box::new(leaf),
                kind: JoinKind::Cross,
                on: None,
            },
        });
    }
    let Some(joined) = joined else {
        return original;
    };
    let remap = |i: usize| new_pos.get(i).copied().unwrap_or(i);
    let terms: Vec<Expr> = terms
        .into_iter()
        .map(|mut t| {
            t.map_columns(&remap);
            t
        })
        .collect();
    Plan::Project {
        input: Box::new(filter(joined, terms)),
        exprs: (0..width).map(|i| Expr::col(new_pos[i])).collect(),
    }
}

// ---- 3. predicate pushdown ----

fn push_down(plan: Plan) -> Plan {
    match plan {
        Plan::Filter { input, predicate } => place(*input, predicate.conjuncts()),
        p => map_children(p, &mut push_down),
    }
}

/// Whether a term may move: it holds no correlated subquery (whose plan
/// would read this row's columns at positions that moving changes).
fn movable(e: &Expr) -> bool {
    fn correlated(e: &Expr) -> bool {
        match e {
            Expr::InSubquery { expr, subquery, .. } => subquery.correlated || correlated(expr),
            Expr::Exists { subquery, .. } | Expr::Scalar(subquery) => subquery.correlated,
            _ => {
                let mut found = false;
                e.children(&mut |c| found |= correlated(c));
                found
            }
        }
    }
    !correlated(e)
}

pub(crate) fn columns_of(e: &Expr) -> Vec<usize> {
    let mut cols = Vec::new();
    e.local_columns(&mut cols);
    cols
}

pub(crate) fn filter(input: Plan, terms: Vec<Expr>) -> Plan {
    match Expr::and_all(terms) {
        Some(predicate) => Plan::Filter {
            input: Box::new(input),
            predicate,
        },
        None => input,
    }
}

/// Replaces each current-row column `i` by `exprs[i]`.
pub(crate) fn substitute(e: &Expr, exprs: &[Expr]) -> Option<Expr> {
    if let Expr::Column { depth: 0, index } = e {
        return exprs.get(*index).cloned();
    }
    let mut out = e.clone();
    let mut ok = true;
    out.children_mut(&mut |c| match substitute(c, exprs) {
        Some(s) => *c = s,
        None => ok = false,
    });
    ok.then_some(out)
}

/// Places `terms` (filters over `plan`'s rows) as low in `plan` as they go.
fn place(plan: Plan, mut terms: Vec<Expr>) -> Plan {
    match plan {
        Plan::Filter { input, predicate } => {
            terms.extend(predicate.conjuncts());
            place(*input, terms)
        }
        Plan::Join {
            left,
            right,
            kind,
            on,
        } => {
            let lw = left.width();
            let mut to_left = Vec::new();
            let mut to_right = Vec::new();
            let mut at_join = Vec::new();
            let mut above = Vec::new();
            let on_terms = on.map(Expr::conjuncts).unwrap_or_default();
            let inner = kind != JoinKind::Left;
            // WHERE terms, then ON terms: an ON term of a LEFT join may
            // filter only the right input.
            for (term, from_on) in terms
                .into_iter()
                .map(|t| (t, false))
                .chain(on_terms.into_iter().map(|t| (t, true)))
            {
                let cols = columns_of(&term);
                let movable = movable(&term);
                let all_left = cols.iter().all(|c| *c < lw);
                let all_right = cols.iter().all(|c| *c >= lw);
                if movable && all_left && !cols.is_empty() && (inner || !from_on) {
                    to_left.push(term);
                } else if movable && all_right && !cols.is_empty() && (inner || from_on) {
                    let mut t = term;
                    t.shift_columns(-(lw as isize));
                    to_right.push(t);
                } else if inner || from_on {
                    at_join.push(term);
                } else {
                    above.push(term);
                }
            }
            let left = place(*left, to_left);
            let right = place(*right, to_right);
            let on = Expr::and_all(at_join);
            let kind = match (kind, &on) {
                (JoinKind::Cross, Some(_)) => JoinKind::Inner,
                (k, _) => k,
            };
            filter(
                Plan::Join {
                    left: Box::new(left),
                    right: Box::new(right),
                    kind,
                    on,
                },
                above,
            )
        }
        Plan::Project { input, exprs } => {
            let mut below = Vec::new();
            let mut above = Vec::new();
            for term in terms {
                let pushed = movable(&term)
                    .then(|| substitute(&term, &exprs))
                    .flatten()
                    .filter(|t| !t.has_subquery() || movable(t));
                match pushed {
                    Some(t) if !exprs.iter().any(Expr::has_subquery) => below.push(t),
                    _ => above.push(term),
                }
            }
            filter(
                Plan::Project {
                    input: Box::new(place(*input, below)),
                    exprs,
                },
                above,
            )
        }
        Plan::Sort { input, keys } => Plan::Sort {
            input: Box::new(place(*input, terms)),
            keys,
        },
        // A semi-join passes its left rows unchanged: every term filters
        // the left input as well.
        Plan::SemiJoin {
            left,
            right,
            anti,
            left_keys,
            right_keys,
            residual,
            null_aware,
        } => Plan::SemiJoin {
            left: Box::new(place(*left, terms)),
            right: Box::new(push_down(*right)),
            anti,
            left_keys,
            right_keys,
            residual,
            null_aware,
        },
        Plan::Distinct { input, key_width } => Plan::Distinct {
            input: Box::new(place(*input, terms)),
            key_width,
        },
        Plan::Aggregate {
            input,
            group_by,
            aggs,
        } => {
            let n = group_by.len();
            let mut below = Vec::new();
            let mut above = Vec::new();
            for term in terms {
                let cols = columns_of(&term);
                let only_groups = n > 0 && cols.iter().all(|c| *c < n);
                match only_groups
                    .then(|| movable(&term))
                    .filter(|m| *m)
                    .and_then(|_| substitute(&term, &group_by))
                {
                    Some(t) if !group_by.iter().any(Expr::has_subquery) => below.push(t),
                    _ => above.push(term),
                }
            }
            filter(
                Plan::Aggregate {
                    input: Box::new(place(*input, below)),
                    group_by,
                    aggs,
                },
                above,
            )
        }
        other => {
            let other = map_children(other, &mut push_down);
            filter(other, terms)
        }
    }
}

// ---- 4. join selection ----

fn choose_join(plan: Plan) -> Plan {
    let Plan::Join {
        left,
        right,
        kind,
        on: Some(on),
    } = plan
    else {
        return plan;
    };
    let lw = left.width();
    let mut left_keys = Vec::new();
    let mut right_keys = Vec::new();
    let mut residual = Vec::new();
    for term in on.conjuncts() {
        if let Expr::Binary(BinaryOp::Eq, a, b) = &term
            && !a.has_subquery()
            && !b.has_subquery()
        {
            let (ca, cb) = (columns_of(a), columns_of(b));
            let side = |c: &[usize]| {
                if c.is_empty() {
                    None
                } else if c.iter().all(|i| *i < lw) {
                    Some(true)
                } else if c.iter().all(|i| *i >= lw) {
                    Some(false)
                } else {
                    None
                }
            };
            let pair = match (side(&ca), side(&cb)) {
                (Some(true), Some(false)) => Some(((**a).clone(), (**b).clone())),
                (Some(false), Some(true)) => Some(((**b).clone(), (**a).clone())),
                _ => None,
            };
            if let Some((l, mut r)) = pair {
                r.shift_columns(-(lw as isize));
                left_keys.push(l);
                right_keys.push(r);
                continue;
            }
        }
        residual.push(term);
    }
    if left_keys.is_empty() {
        return Plan::Join {
            left,
            right,
            kind,
            on: Expr::and_all(residual),
        };
    }
    // An index on a right key column: look the rows up per left row.
    if let Some((table, right_filter)) = plain_table(&right) {
        for (k, rk) in right_keys.iter().enumerate() {
            let Expr::Column {
                depth: 0,
                index: col,
            } = rk
            else {
                continue;
            };
            let by_pk = table.primary_key == [*col];
            let index = table
                .indexes
                .iter()
                .find(|i| i.columns.first() == Some(col));
            if !by_pk && index.is_none() {
                continue;
            }
            let left_key = left_keys.remove(k);
            right_keys.remove(k);
            // The other equalities are checked on the combined row.
            for (l, mut r) in left_keys.into_iter().zip(right_keys) {
                r.shift_columns(lw as isize);
                residual.push(Expr::Binary(BinaryOp::Eq, Box::new(l), Box::new(r)));
            }
            return Plan::IndexJoin {
                left,
                index: if by_pk { None } else { index.cloned() },
                table,
                left_key,
                right_filter,
                kind,
                residual: Expr::and_all(residual),
            };
        }
    }
    if left_keys.is_empty() {
        return Plan::Join {
            left,
            right,
            kind,
            on: Expr::and_all(residual),
        };
    }
    Plan::HashJoin {
        left,
        right,
        kind,
        left_keys,
        right_keys,
        residual: Expr::and_all(residual),
    }
}

/// The table under a right join input that is a scan, possibly filtered.
fn plain_table(plan: &Plan) -> Option<(Arc<Table>, Option<Expr>)> {
    match plan {
        Plan::Scan { table } => Some((table.clone(), None)),
        Plan::Filter { input, predicate } => match &**input {
            Plan::Scan { table } => Some((table.clone(), Some(predicate.clone()))),
            _ => None,
        },
        _ => None,
    }
}

// ---- 5. index selection ----

/// What the terms of a filter say about one column.
#[derive(Default, Clone)]
struct ColumnBounds {
    eq: Option<Value>,
    low: Option<(Value, bool)>,
    high: Option<(Value, bool)>,
}

fn choose_index(plan: Plan) -> Plan {
    let Plan::Filter { input, predicate } = plan else {
        return plan;
    };
    let Plan::Scan { table } = *input else {
        return Plan::Filter { input, predicate };
    };
    let bounds = column_bounds(&table, &predicate);
    let scan = access_path(&table, &bounds).unwrap_or(Plan::Scan { table });
    Plan::Filter {
        input: Box::new(scan),
        predicate,
    }
}

fn column_bounds(table: &Table, predicate: &Expr) -> Vec<ColumnBounds> {
    let mut bounds = vec![ColumnBounds::default(); table.columns.len()];
    // A constant usable against column `i`: same type as the column, so
    // that the store's key order is the comparison's order.
    let usable = |i: usize, v: &Value| -> bool {
        !v.is_null()
            && table
                .columns
                .get(i)
                .is_some_and(|c| v.data_type() == Some(c.ty))
    };
    for term in predicate.clone().conjuncts() {
        match &term {
            Expr::Binary(op, a, b) => {
                let (col, val, op) = match (&**a, &**b) {
                    (Expr::Column { depth: 0, index }, Expr::Literal(v)) => (*index, v, *op),
                    (Expr::Literal(v), Expr::Column { depth: 0, index }) => (*index, v, flip(*op)),
                    _ => continue,
                };
                if !usable(col, val) {
                    continue;
                }
                let b = &mut bounds[col];
                match op {
                    BinaryOp::Eq => b.eq = Some(val.clone()),
                    BinaryOp::Gt => b.low = Some((val.clone(), false)),
                    BinaryOp::GtEq => b.low = Some((val.clone(), true)),
                    BinaryOp::Lt => b.high = Some((val.clone(), false)),
                    BinaryOp::LtEq => b.high = Some((val.clone(), true)),
                    _ => {}
                }
            }
            Expr::Between {
                expr,
                low,
                high,
                negated: false,
            } => {
                if let (Expr::Column { depth: 0, index }, Expr::Literal(lo), Expr::Literal(hi)) =
                    (&**expr, &**low, &**high)
                    && usable(*index, lo)
                    && usable(*index, hi)
                {
                    bounds[*index].low = Some((lo.clone(), true));
                    bounds[*index].high = Some((hi.clone(), true));
                }
            }
            _ => {}
        }
    }
    bounds
}

fn flip(op: BinaryOp) -> BinaryOp {
    match op {
        BinaryOp::Lt => BinaryOp::Gt,
        BinaryOp::LtEq => BinaryOp::GtEq,
        BinaryOp::Gt => BinaryOp::Lt,
        BinaryOp::GtEq => BinaryOp::LtEq,
        o => o,
    }
}

/// The cheapest access path the bounds allow, if better than a scan.
fn access_path(table: &Arc<Table>, bounds: &[ColumnBounds]) -> Option<Plan> {
    if !table.primary_key.is_empty() {
        let key: Option<Vec<Value>> = table
            .primary_key
            .iter()
            .map(|c| bounds.get(*c).and_then(|b| b.eq.clone()))
            .collect();
        if let Some(key) = key {
            return Some(Plan::PkLookup {
                table: table.clone(),
                key,
            });
        }
    }
    let mut best: Option<(usize, IndexRange, &crate::catalog::Index)> = None;
    for index in &table.indexes {
        let mut prefix = Vec::new();
        for c in &index.columns {
            match bounds.get(*c).and_then(|b| b.eq.clone()) {
                Some(v) => prefix.push(v),
                None => break,
            }
        }
        let next = index.columns.get(prefix.len()).and_then(|c| bounds.get(*c));
        let (low, high) = next
            .map(|b| (b.low.clone(), b.high.clone()))
            .unwrap_or((None, None));
        let score = prefix.len() * 4 + usize::from(low.is_some()) + usize::from(high.is_some());
        if score == 0 {
            continue;
        }
        let with = |v: Option<(Value, bool)>, unbounded_prefix: &Vec<Value>| -> Bound<Vec<Value>> {
            match v {
                Some((v, inclusive)) => {
                    let mut k = prefix.clone();
                    k.push(v);
                    if inclusive {
                        Bound::Included(k)
                    } else {
                        Bound::Excluded(k)
                    }
                }
                None if unbounded_prefix.is_empty() => Bound::Unbounded,
                None => Bound::Included(unbounded_prefix.clone()),
            }
        };
        let range = IndexRange {
            start: with(low, &prefix),
            end: with(high, &prefix),
        };
        if best.as_ref().is_none_or(|(s, _, _)| score > *s) {
            best = Some((score, range, index));
        }
    }
    best.map(|(_, range, index)| Plan::IndexScan {
        table: table.clone(),
        index: index.clone(),
        range,
    })
}

// ---- 6. top-N ----

fn choose_top_n(plan: Plan) -> Plan {
    match plan {
        Plan::Limit {
            input,
            limit: Some(limit),
            offset,
        } if limit.saturating_add(offset) <= TOP_N_MAX => match *input {
            Plan::Sort { input, keys } => Plan::TopN {
                input,
                keys,
                limit,
                offset,
            },
            other => Plan::Limit {
                input: Box::new(other),
                limit: Some(limit),
                offset,
            },
        },
        p => p,
    }
}
