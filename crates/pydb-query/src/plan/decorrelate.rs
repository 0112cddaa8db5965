//! Subquery decorrelation: `IN` and `EXISTS` in a WHERE clause become
//! semi-joins and anti-joins.
//!
//! A correlated subquery runs once per outer row:
//!
//! ```text
//! SELECT * FROM customers c
//! WHERE EXISTS (SELECT 1 FROM orders o WHERE o.cust = c.id)
//! ```
//!
//! reads `orders` once for every customer. But the subquery only asks
//! "is there an order whose `cust` equals this `id`?", which is a join
//! that keeps each left row at most once: a *semi-join*. Loaded once into a
//! hash table on `o.cust`, `orders` is read once in all. `NOT EXISTS` is the
//! opposite, an *anti-join*: the left rows with no match.
//!
//! The rule looks at each AND term of a filter:
//!
//! - `[NOT] EXISTS (q)` with `q` correlated: `q` must be a filter (maybe
//!   under a projection, DISTINCT or ORDER BY, which do not change whether
//!   a row exists) over an input that reads no outer column. The filter's
//!   terms that read the outer row become the join condition (equalities
//!   between the two sides become hash keys, the rest a residual check);
//!   the others stay on the right input.
//! - `x IN (q)`: `q` uncorrelated: a semi-join on `x = q's column`. `q`
//!   correlated: as for EXISTS, plus the key `x = q's column` (then the
//!   projection must read no outer column).
//! - `x NOT IN (q)`, `q` uncorrelated: a *NULL-aware* anti-join. SQL's
//!   NOT IN is not "no equal value": `1 NOT IN (2, NULL)` is NULL (the NULL
//!   could be 1), so a row passes only when `q` has no NULL and `x` is not
//!   NULL and no value equals it; and `NULL NOT IN (empty)` is true. A
//!   correlated NOT IN stays a subquery: its NULL rules hold per outer row.
//!
//! A WHERE term keeps a row only when it is *true*, so a term that is NULL
//! or false both drop the row: that is why `IN` may become a plain
//! semi-join (a NULL key matching nothing is the same as NULL). The rule
//! therefore never touches a subquery under OR, NOT (other than `NOT IN` /
//! `NOT EXISTS` themselves), CASE or in a SELECT list, where NULL and false
//! differ; nor one with LIMIT or an aggregate above its correlated filter,
//! where the filter cannot move out.
//!
//! Invariant: the semi-join's output is its left input's rows, in their
//! order, each at most once, so nothing above it changes. The terms of the
//! filter that are not rewritten stay in a filter below the semi-joins,
//! where the join order and predicate pushdown rules still see them.

use crate::ast::{BinaryOp, UnaryOp};
use crate::plan::rules::{columns_of, filter, for_each_expr_mut, map_children, substitute};
use crate::plan::{Expr, Plan};

/// Rewrites the `IN` / `EXISTS` terms of every filter in `plan` (and in
/// its subqueries) into semi-joins and anti-joins where that is exact.
///
/// The walk goes top-down: a subquery is taken apart before the
/// subqueries inside it are rewritten, so that its correlated filter is
/// still a filter (not yet under a semi-join of its own) when it is
/// looked at; the new right inputs are then walked like any other node.
pub fn decorrelate(plan: Plan) -> Plan {
    let mut plan = decorrelate_filter(plan);
    for_each_expr_mut(&mut plan, &mut in_subqueries);
    map_children(plan, &mut decorrelate)
}

fn in_subqueries(e: &mut Expr) {
    let rewrite = |sq: &mut crate::plan::Subquery| {
        let plan = std::mem::replace(
            &mut *sq.plan,
            Plan::Values {
                rows: Vec::new(),
                width: 0,
            },
        );
        *sq.plan = decorrelate(plan);
    };
    match e {
        Expr::InSubquery { expr, subquery, .. } => {
            in_subqueries(expr);
            rewrite(subquery);
        }
        Expr::Exists { subquery, .. } | Expr::Scalar(subquery) => rewrite(subquery),
        _ => e.children_mut(&mut in_subqueries),
    }
}

fn decorrelate_filter(plan: Plan) -> Plan {
    let Plan::Filter { input, predicate } = plan else {
        return plan;
    };
    let lw = input.width();
    let mut joins = Vec::new();
    let mut rest = Vec::new();
    for term in predicate.conjuncts() {
        match semi_join_for(&term, lw) {
            Some(j) => joins.push(j),
            None => rest.push(term),
        }
    }
    if joins.is_empty() {
        return filter(*input, rest);
    }
    joins
        .into_iter()
        .fold(filter(*input, rest), |left, j| Plan::SemiJoin {
            left: Box::new(left),
            right: Box::new(j.right),
            anti: j.anti,
            left_keys: j.left_keys,
            right_keys: j.right_keys,
            residual: Expr::and_all(j.residual),
            null_aware: j.null_aware,
        })
}

/// A semi-join to put on top of the filter's input.
struct SemiJoinParts {
    right: Plan,
    anti: bool,
    left_keys: Vec<Expr>,
    right_keys: Vec<Expr>,
    residual: Vec<Expr>,
    null_aware: bool,
}

/// The semi-join that replaces `term` (over rows `lw` columns wide), if
/// the rewrite is exact.
fn semi_join_for(term: &Expr, lw: usize) -> Option<SemiJoinParts> {
    match term {
        Expr::Unary(UnaryOp::Not, inner) => match &**inner {
            Expr::Exists { subquery, negated } => semi_join_for(
                &Expr::Exists {
                    subquery: subquery.clone(),
                    negated: !negated,
                },
                lw,
            ),
            Expr::InSubquery {
                expr,
                subquery,
                negated,
            } => semi_join_for(
                &Expr::InSubquery {
                    expr: expr.clone(),
                    subquery: subquery.clone(),
                    negated: !negated,
                },
                lw,
            ),
            _ => None,
        },
        Expr::Exists { subquery, negated } => {
            // An uncorrelated EXISTS is computed once and cached already.
            if !subquery.correlated {
                return None;
            }
            let parts = split_correlated(&subquery.plan, lw, false)?;
            Some(with_keys(
                parts.right,
                *negated,
                Vec::new(),
                parts.terms,
                lw,
            ))
        }
        Expr::InSubquery {
            expr,
            subquery,
            negated,
        } => {
            if expr.has_subquery() {
                return None;
            }
            if !subquery.correlated {
                if subquery.plan.width() != 1 {
                    return None;
                }
                return Some(SemiJoinParts {
                    right: (*subquery.plan).clone(),
                    anti: *negated,
                    left_keys: vec![(**expr).clone()],
                    right_keys: vec![Expr::col(0)],
                    residual: Vec::new(),
                    null_aware: *negated,
                });
            }
            if *negated {
                return None;
            }
            let parts = split_correlated(&subquery.plan, lw, true)?;
            let value = parts.value?;
            Some(with_keys(
                parts.right,
                false,
                vec![((**expr).clone(), value)],
                parts.terms,
                lw,
            ))
        }
        _ => None,
    }
}

/// Sorts the correlated terms (over the combined row) into hash keys (an
/// equality between an expression of the left row and one of the right
/// row) and a residual.
fn with_keys(
    right: Plan,
    anti: bool,
    mut pairs: Vec<(Expr, Expr)>,
    terms: Vec<Expr>,
    lw: usize,
) -> SemiJoinParts {
    let mut residual = Vec::new();
    for term in terms {
        if let Expr::Binary(BinaryOp::Eq, a, b) = &term {
            let side = |e: &Expr| {
                let cols = columns_of(e);
                if cols.is_empty() || e.has_subquery() {
                    None
                } else if cols.iter().all(|c| *c < lw) {
                    Some(true)
                } else if cols.iter().all(|c| *c >= lw) {
                    Some(false)
                } else {
                    None
                }
            };
            let pair = match (side(a), side(b)) {
                (Some(true), Some(false)) => Some(((**a).clone(), (**b).clone())),
                (Some(false), Some(true)) => Some(((**b).clone(), (**a).clone())),
                _ => None,
            };
            if let Some((l, mut r)) = pair {
                r.shift_columns(-(lw as isize));
                pairs.push((l, r));
                continue;
            }
        }
        residual.push(term);
    }
    let (left_keys, right_keys) = pairs.into_iter().unzip();
    SemiJoinParts {
        right,
        anti,
        left_keys,
        right_keys,
        residual,
        null_aware: false,
    }
}

/// A correlated subquery taken apart.
struct Correlated {
    /// The subquery's rows without its correlated terms (reads no outer
    /// column).
    right: Plan,
    /// The value the subquery returns, over `right`'s rows (for IN).
    value: Option<Expr>,
    /// The correlated terms, over the combined row: the outer row's
    /// columns first, then `right`'s.
    terms: Vec<Expr>,
}

/// Splits a correlated subquery's plan into an uncorrelated input and the
/// terms that read the outer row (whose columns are `lw` wide), or `None`
/// when its shape does not allow it.
fn split_correlated(plan: &Plan, lw: usize, want_value: bool) -> Option<Correlated> {
    let mut node = plan;
    // The IN value, over the current node's row; `Column 0` above the
    // first projection. EXISTS does not evaluate its SELECT list.
    let mut value = Expr::col(0);
    let mut projected = false;
    // Whether a row exists (and which values there are) does not depend on
    // the order or on duplicates.
    loop {
        match node {
            Plan::Distinct { input, .. } | Plan::Sort { input, .. } => node = input,
            Plan::Project { input, exprs } => {
                if want_value {
                    value = substitute(&value, exprs)?;
                }
                projected = true;
                node = input;
            }
            _ => break,
        }
    }
    if want_value && (!projected || escapes(&value, 0) || value.has_subquery()) {
        return None;
    }
    let Plan::Filter { input, predicate } = node else {
        return None;
    };
    if plan_escapes(input, 0) {
        return None;
    }
    let mut inner = Vec::new();
    let mut terms = Vec::new();
    for term in predicate.clone().conjuncts() {
        if !escapes(&term, 0) {
            inner.push(term);
            continue;
        }
        terms.push(to_combined(&term, lw)?);
    }
    if terms.is_empty() {
        return None;
    }
    Some(Correlated {
        right: filter((**input).clone(), inner),
        value: want_value.then_some(value),
        terms,
    })
}

/// `term` (over the subquery's row, reading the outer row at depth 1)
/// rewritten over the combined row: outer column `i` becomes `i`, inner
/// column `j` becomes `lw + j`. `None` if it holds a subquery or reads a
/// row further out.
fn to_combined(term: &Expr, lw: usize) -> Option<Expr> {
    if term.has_subquery() {
        return None;
    }
    let mut out = term.clone();
    let mut ok = true;
    fn walk(e: &mut Expr, lw: usize, ok: &mut bool) {
        match e {
            Expr::Column { depth, index } => match *depth {
                0 => *index += lw,
                1 => *depth = 0,
                _ => *ok = false,
            },
            _ => e.children_mut(&mut |c| walk(c, lw, ok)),
        }
    }
    walk(&mut out, lw, &mut ok);
    ok.then_some(out)
}

/// Whether `e`, evaluated `level` subqueries deep inside a plan, reads a
/// row outside that plan.
fn escapes(e: &Expr, level: usize) -> bool {
    match e {
        Expr::Column { depth, .. } => *depth > level,
        Expr::InSubquery { expr, subquery, .. } => {
            escapes(expr, level) || plan_escapes(&subquery.plan, level + 1)
        }
        Expr::Exists { subquery, .. } | Expr::Scalar(subquery) => {
            plan_escapes(&subquery.plan, level + 1)
        }
        _ => {
            let mut found = false;
            e.children(&mut |c| found |= escapes(c, level));
            found
        }
    }
}

/// Whether any expression of `plan` (a plan `level` subqueries deep) reads
/// a row outside it.
fn plan_escapes(plan: &Plan, level: usize) -> bool {
    // The traversal of a node's expressions is written once, over owned
    // plans, in the rules: walk a copy.
    fn walk(mut plan: Plan, level: usize, found: &mut bool) -> Plan {
        for_each_expr_mut(&mut plan, &mut |e| *found |= escapes(e, level));
        map_children(plan, &mut |c| walk(c, level, found))
    }
    let mut found = false;
    walk(plan.clone(), level, &mut found);
    found
}

#[cfg(test)]
mod tests;
