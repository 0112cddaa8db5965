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
//! 2. **Decorrelation** ([`super::decorrelate`]): `IN` and `EXISTS`
//!    terms of a WHERE become semi-joins and anti-joins where that is
//!    exact under SQL's NULL rules (not for UPDATE/DELETE targets).
//! 3. **Predicate pushdown**: a filter is split into its AND terms, and
//!    each term moves as far down as the columns it reads allow: through
//!    projections (rewritten in terms of the projection's input), sorts
//!    and DISTINCT, below an aggregation when it reads only group columns,
//!    and into the side of a join that has all its columns. Terms that
//!    read both sides of an inner join become the join's condition. The
//!    right side of a LEFT join is never filtered by WHERE (its NULL rows
//!    must stay to be tested), but is by the join's ON terms that read it
//!    alone (a right row they reject matches nothing, exactly as if it
//!    were not there); ON terms move whether or not a WHERE is above. Terms holding a correlated subquery stay
//!    where they are.
//! 4. **Join planning** ([`super::joins`]): the inputs of each tree of
//!    inner joins are put in the cheapest order the estimator finds
//!    (dynamic programming over subsets up to
//!    [`super::joins::DP_MAX_RELATIONS`] inputs, greedy beyond), and each
//!    join gets the cheapest method: index nested loop, merge, hash, or a
//!    plain nested loop when no equality links the two sides.
//! 5. **Index selection**: a filter over a table scan whose terms compare
//!    indexed columns with constants becomes a filter over an index range
//!    scan (equality on a prefix of the index's columns, then a range on
//!    the next one), or a primary-key lookup when every key column is
//!    fixed. The filter stays above: the range narrows the rows read, the
//!    filter still decides. After ANALYZE an index range is taken only
//!    when the estimator prices it below a full scan.
//! 6. **Index order**: a sort on the scanned index's (or the primary
//!    key's) columns, in order, skipping those an equality fixes, is
//!    dropped: the rows already come in that order; a descending one reads
//!    the scan backward instead.
//! 7. **Projection pruning and covering scans** ([`super::prune`]): joins
//!    carry only the columns read above them, and a scan whose read
//!    columns an index holds reads the index alone (index-only scan);
//!    then the index-order rule looks again, since a covering scan of a
//!    whole index has that index's order.
//! 8. **Top-N**: ORDER BY with a small LIMIT keeps only the rows it
//!    returns, instead of sorting everything.

use std::ops::Bound;
use std::sync::Arc;

use crate::ast::{BinaryOp, JoinKind};
use crate::catalog::Table;
use crate::exec::eval::eval_constant;
use crate::plan::cost::Estimator;
use crate::plan::decorrelate::decorrelate;
use crate::plan::joins::plan_joins;
use crate::plan::{Expr, Plan, SortKey};
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
    let plan = map_plan(plan, &mut |p| fold_plan_constants(p));
    let plan = if joins_allowed {
        decorrelate(plan)
    } else {
        plan
    };
    let plan = push_down(plan);
    let plan = plan_joins(plan, est);
    let plan = map_plan(plan, &mut |p| choose_index(p, est));
    let plan = map_plan(plan, &mut skip_sorted_sort);
    // Pruning knows which columns each scan must produce, so it also
    // chooses covering scans; a covering scan of a whole index may give
    // the order a remaining sort wants, hence the second look at sorts.
    let plan = if joins_allowed {
        let plan = super::prune::prune_and_cover(plan, est);
        map_plan(plan, &mut skip_sorted_sort)
    } else {
        plan
    };
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
        Plan::MergeJoin {
            left,
            right,
            kind,
            left_keys,
            right_keys,
            residual,
        } => Plan::MergeJoin {
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
        | Plan::MergeJoin {
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

// ---- 2. predicate pushdown ----

fn push_down(plan: Plan) -> Plan {
    match plan {
        Plan::Filter { input, predicate } => place(*input, predicate.conjuncts()),
        // A join's own ON terms move too, with no WHERE above it: `a LEFT
        // JOIN b ON a.x = b.x AND b.y = 1` filters `b` before the join.
        join @ Plan::Join { .. } => place(join, Vec::new()),
        p => map_children(p, &mut push_down),
    }
}

/// Whether a term may move: it holds no correlated subquery (whose plan
/// would read this row's columns at positions that moving changes).
pub(crate) fn movable(e: &Expr) -> bool {
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

// ---- 4. index selection ----

/// What the terms of a filter say about one column.
#[derive(Default, Clone)]
struct ColumnBounds {
    eq: Option<Value>,
    /// `column = $n` with `$n` of the column's type in the parameter
    /// values the generic plan is made for: the primary-key lookup can
    /// take it (the key is evaluated at run time), an index range cannot.
    eq_param: Option<usize>,
    low: Option<(Value, bool)>,
    high: Option<(Value, bool)>,
}

/// Index or table scan for a filtered table. Without statistics an index
/// that the filter can use is always taken (today's rule); after ANALYZE
/// the two plans are priced and the cheaper one wins: a range that holds
/// most of the table costs a random page read per row, more than reading
/// the whole table in order.
fn choose_index(plan: Plan, est: &Estimator<'_>) -> Plan {
    let Plan::Filter { input, predicate } = plan else {
        return plan;
    };
    let Plan::Scan { table, .. } = *input else {
        return Plan::Filter { input, predicate };
    };
    let bounds = column_bounds(&table, &predicate, est);
    let with = |input: Plan| Plan::Filter {
        input: Box::new(input),
        predicate: predicate.clone(),
    };
    let scan = with(Plan::Scan {
        table: table.clone(),
        columns: None,
    });
    let Some(path) = access_path(&table, &bounds) else {
        return scan;
    };
    let by_cost = matches!(path, Plan::IndexScan { .. }) && est.table_stats(&table).is_some();
    let indexed = with(path);
    if by_cost && est.estimate(&scan).cost < est.estimate(&indexed).cost {
        scan
    } else {
        indexed
    }
}

fn column_bounds(table: &Table, predicate: &Expr, est: &Estimator<'_>) -> Vec<ColumnBounds> {
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
                    (Expr::Column { depth: 0, index }, Expr::Param(p))
                    | (Expr::Param(p), Expr::Column { depth: 0, index })
                        if *op == BinaryOp::Eq =>
                    {
                        if est.param(*p).is_some_and(|v| usable(*index, v)) {
                            bounds[*index].eq_param = Some(*p);
                        }
                        continue;
                    }
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
        let key: Option<Vec<Expr>> = table
            .primary_key
            .iter()
            .map(|c| {
                let b = bounds.get(*c)?;
                match (&b.eq, b.eq_param) {
                    (Some(v), _) => Some(Expr::Literal(v.clone())),
                    (None, Some(p)) => Some(Expr::Param(p)),
                    (None, None) => None,
                }
            })
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
        reverse: false,
    })
}

// ---- index order ----

/// Drops a sort whose input already comes in its order, or would if read
/// backward. The rows of an index range scan come in the index's column
/// order, then primary-key order; those of a table scan in primary-key order (ascending, NULLs
/// first: the store's key order). Filters and projections in between keep
/// the order. The sort is dropped when its keys are plain columns that
/// name, in order, the scan's order columns, where a column that is fixed
/// may be skipped on either side: fixed by an equality filter
/// (`WHERE a = 1 ORDER BY b` over an index on `(a, b)`), or by an index
/// range whose bounds agree on it. All the other keys must go the same
/// way: ascending with NULLs first, or descending with NULLs last, SQLite's
/// default placements; descending keys turn the scan backward (PostgreSQL's
/// "Index Scan Backward").
///
/// An ascending sort is stable, so the rows come out exactly as before,
/// ties included, in index order. Read backward, ties come in descending
/// index order instead, as SQLite's own backward scans give them: SQL
/// leaves the order of ties open. A LIMIT above then reads only the first
/// rows instead of sorting them all (the top-N rule finds no sort to
/// replace).
fn skip_sorted_sort(plan: Plan) -> Plan {
    let Plan::Sort { input, keys } = plan else {
        return plan;
    };
    match scan_order_gives(&input, &keys) {
        Some(false) => *input,
        Some(true) => read_backward(*input),
        None => Plan::Sort { input, keys },
    }
}

/// Whether the scan below `input` (through filters and projections) gives
/// the order of `keys`: `Some(false)` read as it is, `Some(true)` read
/// backward, `None` neither.
fn scan_order_gives(input: &Plan, keys: &[SortKey]) -> Option<bool> {
    if keys.is_empty() {
        return None;
    }
    // The keys as (column, descending), over the current node's row.
    let mut wanted: Vec<(usize, bool)> = keys
        .iter()
        .map(|k| match k.expr {
            Expr::Column { depth: 0, index } if k.nulls_first != k.desc => Some((index, k.desc)),
            _ => None,
        })
        .collect::<Option<_>>()?;
    // Columns every row has the same value in, over the current row.
    let mut fixed: Vec<usize> = Vec::new();
    let mut node = input;
    let order: Vec<usize> = loop {
        match node {
            Plan::Filter { input, predicate } => {
                fixed.extend(equality_columns(predicate));
                node = input;
            }
            Plan::Project { input, exprs } => {
                let down = |c: usize| match exprs.get(c) {
                    Some(Expr::Column { depth: 0, index }) => Some(*index),
                    _ => None,
                };
                wanted = wanted
                    .iter()
                    .map(|(c, d)| down(*c).map(|c| (c, *d)))
                    .collect::<Option<_>>()?;
                fixed = fixed.iter().filter_map(|c| down(*c)).collect();
                node = input;
            }
            Plan::IndexScan {
                table,
                index,
                range,
                reverse: false,
            }
            | Plan::IndexOnlyScan {
                table,
                index,
                range,
                reverse: false,
            } => {
                fixed.extend(index.columns.iter().take(range_fixed_prefix(range)));
                // Entries with equal values are in row-key order: the
                // row key ends the entry's key (a UNIQUE entry without
                // NULLs has no equal neighbour).
                let mut order = index.columns.clone();
                order.extend(&table.primary_key);
                break order;
            }
            Plan::Scan { table, .. } => break table.primary_key.clone(),
            _ => return None,
        }
    };
    let mut order = order.into_iter().filter(|c| !fixed.contains(c));
    let mut direction = None;
    for (col, desc) in wanted {
        if fixed.contains(&col) {
            continue;
        }
        if order.next() != Some(col) || direction.is_some_and(|d| d != desc) {
            return None;
        }
        direction = Some(desc);
    }
    // Every key fixed: any order is the sort's order.
    Some(direction.unwrap_or(false))
}

/// The columns a predicate fixes: `column = constant` terms (a NULL
/// constant matches no row, so it fixes nothing that matters).
fn equality_columns(predicate: &Expr) -> Vec<usize> {
    predicate
        .clone()
        .conjuncts()
        .into_iter()
        .filter_map(|term| match term {
            Expr::Binary(BinaryOp::Eq, a, b) => match (*a, *b) {
                (Expr::Column { depth: 0, index }, Expr::Literal(_))
                | (Expr::Literal(_), Expr::Column { depth: 0, index }) => Some(index),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// How many leading index columns an index range fixes: those on which
/// both bounds hold the same value (the keys between two tuples that
/// agree on a prefix all have that prefix).
fn range_fixed_prefix(range: &IndexRange) -> usize {
    match (&range.start, &range.end) {
        (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b)) => {
            a.iter().zip(b).take_while(|(x, y)| x == y).count()
        }
        _ => 0,
    }
}

/// The same plan with its scan (below filters and projections) read
/// backward.
fn read_backward(plan: Plan) -> Plan {
    match plan {
        Plan::Scan { table, .. } => Plan::ScanBackward { table },
        Plan::IndexScan {
            table,
            index,
            range,
            reverse,
        } => Plan::IndexScan {
            table,
            index,
            range,
            reverse: !reverse,
        },
        Plan::IndexOnlyScan {
            table,
            index,
            range,
            reverse,
        } => Plan::IndexOnlyScan {
            table,
            index,
            range,
            reverse: !reverse,
        },
        p @ (Plan::Filter { .. } | Plan::Project { .. }) => map_children(p, &mut read_backward),
        p => p,
    }
}

// ---- 5. top-N ----

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
