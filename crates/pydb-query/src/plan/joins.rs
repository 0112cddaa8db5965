//! Join planning: in which order to join the tables of a query, and how to
//! join each pair.
//!
//! # The order
//!
//! `SELECT ... FROM a, b, c WHERE a.x = b.x AND b.y = c.y` can be run as
//! `(a ⋈ b) ⋈ c`, `(b ⋈ c) ⋈ a`, `a ⋈ (b ⋈ c)`, ... All give the same rows,
//! but not at the same price: joining first the pair whose result is
//! smallest keeps every later step small. This module flattens a tree of
//! inner (and comma) joins into its *relations* (the inputs that are not
//! inner joins themselves) and the AND terms of its conditions, then
//! searches for the cheapest tree, as [`Estimator::estimate`] prices them:
//!
//! - Up to [`DP_MAX_RELATIONS`] relations, **dynamic programming over
//!   subsets** (the DPsub algorithm of System R's successors): the best
//!   plan for each set of relations is built from the best plans of two
//!   disjoint, non-empty halves of the set, trying every split. A split is
//!   only tried when some condition links its halves, so no cross product
//!   is ever built while a condition could join the inputs instead. Trees
//!   may be *bushy* (`(a ⋈ b) ⋈ (c ⋈ d)`), not only left-deep. There are
//!   `3^n` splits in all, 59049 for ten relations, each priced once.
//! - Beyond that, **greedy** (Greedy Operator Ordering): start with one
//!   plan per relation, and join, again and again, the linked pair whose
//!   join is cheapest, until one plan is left. `n^3` prices instead of
//!   `3^n`: planning stays fast, at the price of perhaps missing the best
//!   tree.
//!
//! Both searches price far more joins than they keep. A candidate join is
//! therefore priced without being built around copies of its inputs: it
//! is built around stand-ins, the real inputs are swapped in while the
//! estimator prices it, and swapped out again (`Shape`). Only the
//! winner of each step is built for good.
//!
//! If the conditions do not link all the relations (`FROM a, b` without a
//! condition between them), each linked group is planned on its own and
//! the groups are then joined by cross products, largest first.
//!
//! The joined row's columns come in the new order; a projection on top
//! puts them back in the order the rest of the plan expects.
//!
//! LEFT joins are not reordered (`a LEFT JOIN b` keeps the rows of `a`
//! that match nothing, which depends on which side is which); only their
//! method is chosen. Neither is a join whose condition holds a correlated
//! subquery, which reads the joined row by position.
//!
//! # The method
//!
//! For each join the candidates are:
//!
//! - **index nested loop** (`IndexJoin`): when the right side is a table
//!   with an index (or a one-column primary key) on a key column, each
//!   left row looks its matches up; only the matching right rows are read.
//! - **merge join** (`MergeJoin`): both sides sorted on the keys are walked
//!   side by side. Free when they already come in that order (a scan of a
//!   table by its primary key, an index scan); else a `Sort` goes under
//!   the side that needs it.
//! - **hash join** (`HashJoin`): the right side goes into a hash table.
//! - **nested loop** (`Join`): every pair of rows, the only choice when
//!   the condition has no equality between the two sides (`a.x < b.y`).
//!
//! The cheapest by [`Estimator::estimate`] wins; on a tie, the first in the
//! order above (the ones that hold less in memory).

use std::sync::Arc;

use crate::ast::{BinaryOp, JoinKind};
use crate::catalog::Table;
use crate::plan::cost::{Estimate, Estimator};
use crate::plan::rules::{columns_of, for_each_expr_mut, map_children, movable};
use crate::plan::{Expr, Plan, SortKey};

/// The most relations joined by dynamic programming; more go to the
/// greedy search.
pub const DP_MAX_RELATIONS: usize = 10;

/// The most relations reordered at all (a relation set is a 64-bit mask).
const MAX_RELATIONS: usize = 64;

/// Plans every join in `plan` (and in its subqueries): order and method.
pub fn plan_joins(plan: Plan, est: &Estimator<'_>) -> Plan {
    match plan {
        Plan::Join { kind, .. } if kind != JoinKind::Left && reorderable(&plan) => {
            order_joins(plan, est)
        }
        Plan::Join {
            left,
            right,
            kind,
            on,
        } => {
            let mut terms = on.map(Expr::conjuncts).unwrap_or_default();
            terms.iter_mut().for_each(|t| plan_subqueries(t, est));
            let left = plan_joins(*left, est);
            let right = plan_joins(*right, est);
            let (le, re) = (est.estimate(&left), est.estimate(&right));
            best_method((&left, le), (&right, re), kind, terms, est).0
        }
        other => {
            let mut plan = map_children(other, &mut |c| plan_joins(c, est));
            for_each_expr_mut(&mut plan, &mut |e| plan_subqueries(e, est));
            plan
        }
    }
}

fn plan_subqueries(e: &mut Expr, est: &Estimator<'_>) {
    let plan_one = |p: &mut Box<Plan>| {
        let taken = std::mem::replace(
            &mut **p,
            Plan::Values {
                rows: Vec::new(),
                width: 0,
            },
        );
        **p = plan_joins(taken, est);
    };
    match e {
        Expr::InSubquery { expr, subquery, .. } => {
            plan_subqueries(expr, est);
            plan_one(&mut subquery.plan);
        }
        Expr::Exists { subquery, .. } | Expr::Scalar(subquery) => plan_one(&mut subquery.plan),
        _ => e.children_mut(&mut |c| plan_subqueries(c, est)),
    }
}

/// Whether the inner joins at the top of `plan` may be reordered: their
/// conditions hold no correlated subquery, and there are not too many.
fn reorderable(plan: &Plan) -> bool {
    fn walk(plan: &Plan, count: &mut usize) -> bool {
        match plan {
            Plan::Join {
                left,
                right,
                kind,
                on,
            } if *kind != JoinKind::Left => {
                on.as_ref()
                    .is_none_or(|e| e.clone().conjuncts().iter().all(movable))
                    && walk(left, count)
                    && walk(right, count)
            }
            _ => {
                *count += 1;
                true
            }
        }
    }
    let mut count = 0;
    walk(plan, &mut count) && count <= MAX_RELATIONS
}

/// Collects the relations under a tree of inner joins, and the terms of
/// their conditions with columns numbered in the whole joined row.
fn flatten(plan: Plan, offset: usize, relations: &mut Vec<Plan>, terms: &mut Vec<Expr>) {
    match plan {
        Plan::Join {
            left,
            right,
            kind,
            on,
        } if kind != JoinKind::Left => {
            let lw = left.width();
            flatten(*left, offset, relations, terms);
            flatten(*right, offset + lw, relations, terms);
            for mut t in on.map(Expr::conjuncts).unwrap_or_default() {
                t.shift_columns(offset as isize);
                terms.push(t);
            }
        }
        other => relations.push(other),
    }
}

/// A set of relations, one bit per relation.
type Set = u64;

/// A condition term and the relations it reads.
struct Term {
    /// Over the whole joined row in the original column order.
    expr: Expr,
    relations: Set,
}

/// A plan for a set of relations.
#[derive(Clone)]
struct Rel {
    plan: Plan,
    est: Estimate,
    set: Set,
    /// The relations whose columns the plan's rows hold, in order.
    layout: Vec<usize>,
}

/// What the search needs to know about the relations.
struct Graph<'e, 'a> {
    terms: Vec<Term>,
    /// Per relation: where its columns start in the original row.
    offsets: Vec<usize>,
    widths: Vec<usize>,
    est: &'e Estimator<'a>,
}

impl Graph<'_, '_> {
    /// Whether a term links the two (disjoint) sets.
    fn linked(&self, a: Set, b: Set) -> bool {
        self.terms
            .iter()
            .any(|t| t.relations & a != 0 && t.relations & b != 0 && t.relations & !(a | b) == 0)
    }

    /// The terms that link `a` (left) and `b` (right), over the row of
    /// their join, with that row's layout, and the join's kind (a cross
    /// product when no term links them).
    fn link(&self, a: &Rel, b: &Rel) -> (Vec<Expr>, Vec<usize>, JoinKind) {
        let layout: Vec<usize> = a.layout.iter().chain(&b.layout).copied().collect();
        let pos = self.positions(&layout);
        let set = a.set | b.set;
        let terms: Vec<Expr> = self
            .terms
            .iter()
            .filter(|t| {
                t.relations & a.set != 0 && t.relations & b.set != 0 && t.relations & !set == 0
            })
            .map(|t| {
                let mut e = t.expr.clone();
                e.map_columns(&|c| pos.get(c).copied().unwrap_or(c));
                e
            })
            .collect();
        let kind = if terms.is_empty() {
            JoinKind::Cross
        } else {
            JoinKind::Inner
        };
        (terms, layout, kind)
    }

    /// The cheapest join of `a` (left) and `b` (right) under the terms
    /// that link them (a cross product when none does).
    fn join(&self, a: &Rel, b: &Rel) -> Rel {
        let (terms, layout, kind) = self.link(a, b);
        let (plan, est) = best_method((&a.plan, a.est), (&b.plan, b.est), kind, terms, self.est);
        Rel {
            plan,
            est,
            set: a.set | b.set,
            layout,
        }
    }

    /// The estimate of [`Graph::join`]'s result, without building it: the
    /// candidates borrow the two plans instead of copying them (which,
    /// for the large plans of a many-table join, is most of the work).
    fn join_cost(&self, a: &mut Rel, b: &mut Rel) -> f64 {
        let (terms, _, kind) = self.link(a, b);
        let ((ap, ae), (bp, be)) = ((&mut a.plan, a.est), (&mut b.plan, b.est));
        cheapest((ap, ae), (bp, be), kind, terms, self.est).1.cost
    }

    /// Whether `b ⋈ a` is cheaper than `a ⋈ b` (`a ⋈ b` on a tie), and
    /// the cheaper cost.
    fn either_cost(&self, a: &mut Rel, b: &mut Rel) -> (bool, f64) {
        let ab = self.join_cost(a, b);
        let ba = self.join_cost(b, a);
        if ba < ab { (true, ba) } else { (false, ab) }
    }

    /// Where each original column sits in a row laid out as `layout`
    /// (`usize::MAX` for the columns of relations not in it).
    fn positions(&self, layout: &[usize]) -> Vec<usize> {
        let width =
            self.offsets.last().copied().unwrap_or(0) + self.widths.last().copied().unwrap_or(0);
        let mut pos = vec![usize::MAX; width];
        let mut at = 0;
        for &r in layout {
            for c in 0..self.widths[r] {
                pos[self.offsets[r] + c] = at;
                at += 1;
            }
        }
        pos
    }

    /// Dynamic programming over the subsets of `rels` (all linked).
    fn dp(&self, rels: Vec<Rel>) -> Option<Rel> {
        let k = rels.len();
        let full: usize = (1 << k) - 1;
        let mut best: Vec<Option<Rel>> = vec![None; full + 1];
        for (i, r) in rels.into_iter().enumerate() {
            best[1 << i] = Some(r);
        }
        for s in 1..=full {
            if s.count_ones() < 2 {
                continue;
            }
            // Splits s = s1 + s2 with s1 holding s's lowest relation, so
            // that each unordered split comes once (both orders are tried).
            let low = s & s.wrapping_neg();
            let rest = s ^ low;
            let mut sub = rest.wrapping_sub(1) & rest;
            // The cheapest split, priced without building its join:
            // (left half, right half, cost).
            let mut winner: Option<(usize, usize, f64)> = None;
            loop {
                let s1 = low | sub;
                let s2 = s ^ s1;
                if let (Some(mut a), Some(mut b)) = (best[s1].take(), best[s2].take()) {
                    if self.linked(a.set, b.set) {
                        let (swap, cost) = self.either_cost(&mut a, &mut b);
                        if winner.is_none_or(|(_, _, w)| cost < w) {
                            winner = Some(if swap { (s2, s1, cost) } else { (s1, s2, cost) });
                        }
                    }
                    best[s1] = Some(a);
                    best[s2] = Some(b);
                }
                if sub == 0 {
                    break;
                }
                sub = (sub - 1) & rest;
            }
            best[s] = match winner {
                Some((l, r, _)) => match (&best[l], &best[r]) {
                    (Some(a), Some(b)) => Some(self.join(a, b)),
                    _ => None,
                },
                None => None,
            };
        }
        best[full].take()
    }

    /// Greedy: join the cheapest linked pair until one plan is left (a
    /// cross product of the two smallest when no pair is linked).
    ///
    /// Only linked pairs are priced, and a pair's price is kept until one
    /// of its plans is used up: each round prices just the pairs of the
    /// plan it made, about one join per link in all.
    fn greedy(&self, parts: Vec<Rel>) -> Option<Rel> {
        let mut parts: Vec<Option<Rel>> = parts.into_iter().map(Some).collect();
        // Linked pairs (i < j) with the cost of their cheaper join.
        let mut pairs: Vec<(usize, usize, f64)> = Vec::new();
        let price = |parts: &mut [Option<Rel>], i: usize, pairs: &mut Vec<(usize, usize, f64)>| {
            let Some(mut a) = parts[i].take() else { return };
            for (j, b) in parts.iter_mut().enumerate() {
                if let Some(b) = b
                    && j != i
                    && self.linked(a.set, b.set)
                {
                    let (_, cost) = self.either_cost(&mut a, b);
                    pairs.push((i.min(j), i.max(j), cost));
                }
            }
            parts[i] = Some(a);
        };
        for i in 0..parts.len() {
            // Each pair once: from its first part, against later ones.
            let before = pairs.len();
            price(&mut parts, i, &mut pairs);
            let mut k = before;
            while k < pairs.len() {
                if pairs[k].0 != i {
                    pairs.swap_remove(k);
                } else {
                    k += 1;
                }
            }
        }
        loop {
            let left: Vec<usize> = (0..parts.len()).filter(|i| parts[*i].is_some()).collect();
            if left.len() < 2 {
                break;
            }
            let best = pairs
                .iter()
                .copied()
                .reduce(|p, q| if q.2 < p.2 { q } else { p });
            let (i, j) = match best {
                Some((i, j, _)) => (i, j),
                None => {
                    // No link left: cross the two smallest.
                    let mut by_rows = left.clone();
                    by_rows.sort_by(|x, y| {
                        let rows = |k: &usize| parts[*k].as_ref().map_or(0.0, |r| r.est.rows);
                        rows(x).total_cmp(&rows(y))
                    });
                    (by_rows[0], by_rows[1])
                }
            };
            let (Some(mut a), Some(mut b)) = (parts[i].take(), parts[j].take()) else {
                break;
            };
            let (swap, _) = self.either_cost(&mut a, &mut b);
            parts[i] = Some(if swap {
                self.join(&b, &a)
            } else {
                self.join(&a, &b)
            });
            pairs.retain(|(x, y, _)| ![i, j].contains(x) && ![i, j].contains(y));
            price(&mut parts, i, &mut pairs);
        }
        parts.into_iter().flatten().next()
    }
}

/// Reorders a tree of inner joins (see the module docs).
fn order_joins(plan: Plan, est: &Estimator<'_>) -> Plan {
    let width = plan.width();
    let mut relations = Vec::new();
    let mut exprs = Vec::new();
    flatten(plan, 0, &mut relations, &mut exprs);
    let relations: Vec<Plan> = relations.into_iter().map(|r| plan_joins(r, est)).collect();
    exprs.iter_mut().for_each(|t| plan_subqueries(t, est));

    let mut offsets = Vec::with_capacity(relations.len());
    let mut widths = Vec::with_capacity(relations.len());
    let mut at = 0;
    for r in &relations {
        offsets.push(at);
        widths.push(r.width());
        at += r.width();
    }
    let relation_of = |col: usize| offsets.iter().rposition(|o| *o <= col).unwrap_or(0);
    let mut terms = Vec::new();
    let mut constant = Vec::new();
    let mut own: Vec<Vec<Expr>> = vec![Vec::new(); relations.len()];
    for expr in exprs {
        let set: Set = columns_of(&expr)
            .into_iter()
            .fold(0, |s, c| s | 1 << relation_of(c));
        match set.count_ones() {
            0 => constant.push(expr),
            1 => {
                // Pushdown leaves none of these; keep them correct anyway.
                let r = set.trailing_zeros() as usize;
                let mut e = expr;
                e.shift_columns(-(offsets[r] as isize));
                own[r].push(e);
            }
            _ => terms.push(Term {
                expr,
                relations: set,
            }),
        }
    }
    let graph = Graph {
        terms,
        offsets,
        widths,
        est,
    };
    let rels: Vec<Rel> = relations
        .into_iter()
        .zip(own)
        .enumerate()
        .map(|(i, (plan, own))| {
            let plan = match Expr::and_all(own) {
                Some(predicate) => Plan::Filter {
                    input: Box::new(plan),
                    predicate,
                },
                None => plan,
            };
            Rel {
                est: est.estimate(&plan),
                plan,
                set: 1 << i,
                layout: vec![i],
            }
        })
        .collect();

    // The linked groups (connected components of the join graph).
    let mut groups: Vec<Vec<Rel>> = Vec::new();
    let mut group_sets: Vec<Set> = Vec::new();
    for r in rels {
        let mut set = r.set;
        let mut members = vec![r];
        // Merge every group this relation is linked to, directly or
        // through a term spanning several relations.
        loop {
            let linked = group_sets.iter().position(|g| {
                graph
                    .terms
                    .iter()
                    .any(|t| t.relations & set != 0 && t.relations & g != 0)
            });
            match linked {
                Some(i) => {
                    set |= group_sets.remove(i);
                    members.extend(groups.remove(i));
                }
                None => break,
            }
        }
        groups.push(members);
        group_sets.push(set);
    }
    let mut planned: Vec<Rel> = Vec::new();
    for members in groups {
        let fallback = members.clone();
        let rel = if members.len() <= DP_MAX_RELATIONS {
            graph.dp(members).or_else(|| graph.greedy(fallback))
        } else {
            graph.greedy(members)
        };
        planned.extend(rel);
    }
    // Cross products between the groups: largest first, so that the
    // smaller inputs are the ones the nested loops keep in memory.
    planned.sort_by(|a, b| b.est.rows.total_cmp(&a.est.rows));
    let mut joined: Option<Rel> = None;
    for r in planned {
        joined = Some(match joined {
            None => r,
            Some(acc) => graph.join(&acc, &r),
        });
    }
    let Some(joined) = joined else {
        return Plan::Values {
            rows: Vec::new(),
            width,
        };
    };
    let pos = graph.positions(&joined.layout);
    let mut plan = joined.plan;
    if let Some(predicate) = Expr::and_all(constant) {
        plan = Plan::Filter {
            input: Box::new(plan),
            predicate,
        };
    }
    if (0..width).all(|c| pos.get(c) == Some(&c)) {
        return plan;
    }
    Plan::Project {
        input: Box::new(plan),
        exprs: (0..width)
            .map(|c| Expr::col(pos.get(c).copied().unwrap_or(c)))
            .collect(),
    }
}

/// The cheapest way to join `left` and `right` on `terms` (over the
/// combined row), with its estimate.
fn best_method(
    (left, left_est): (&Plan, Estimate),
    (right, right_est): (&Plan, Estimate),
    kind: JoinKind,
    terms: Vec<Expr>,
    est: &Estimator<'_>,
) -> (Plan, Estimate) {
    let (mut left, mut right) = (left.clone(), right.clone());
    let (winner, e) = cheapest(
        (&mut left, left_est),
        (&mut right, right_est),
        kind,
        terms.clone(),
        est,
    );
    let mut shapes = shapes(&left, &right, kind, terms);
    let mut chosen = if winner < shapes.len() {
        shapes.swap_remove(winner)
    } else {
        Shape {
            plan: Plan::Join {
                left: Box::new(hole(&left)),
                right: Box::new(hole(&right)),
                kind,
                on: None,
            },
            sorted_here: (false, false),
        }
    };
    chosen.exchange(&mut left, &mut right);
    (chosen.plan, e)
}

/// The cheapest of the ways to join `left` and `right` (its position in
/// [`shapes`]' list, and its estimate), priced without copying either
/// input: each candidate borrows them in turn (see [`Shape`]), and gives
/// them back. `known` estimates of the inputs are not computed again.
fn cheapest(
    (left, left_est): (&mut Plan, Estimate),
    (right, right_est): (&mut Plan, Estimate),
    kind: JoinKind,
    terms: Vec<Expr>,
    est: &Estimator<'_>,
) -> (usize, Estimate) {
    let mut best: Option<(usize, Estimate)> = None;
    let shapes = shapes(left, right, kind, terms);
    for (n, mut shape) in shapes.into_iter().enumerate() {
        shape.exchange(left, right);
        let e = shape.price(left_est, right_est, est);
        shape.exchange(left, right);
        if best.as_ref().is_none_or(|(_, b)| e.cost < b.cost) {
            best = Some((n, e));
        }
    }
    best.unwrap_or_else(|| {
        // Unreachable in practice: there is always a nested loop. Price
        // the plain nested loop `best_method` then builds.
        let mut join = Shape {
            plan: Plan::Join {
                left: Box::new(hole(left)),
                right: Box::new(hole(right)),
                kind,
                on: None,
            },
            sorted_here: (false, false),
        };
        join.exchange(left, right);
        let e = join.price(left_est, right_est, est);
        join.exchange(left, right);
        (usize::MAX, e)
    })
}

/// A stand-in for an input while a candidate is built: the candidate's
/// real inputs are swapped in only to price it.
fn hole(like: &Plan) -> Plan {
    hole_of(like.width())
}

/// A stand-in of `width` columns (see [`hole`]).
fn hole_of(width: usize) -> Plan {
    Plan::Values {
        rows: Vec::new(),
        width,
    }
}

/// One way to run a join, built around stand-ins ([`hole`]) for its
/// inputs. [`Shape::exchange`] swaps the real inputs in, and a second call
/// swaps them out again: a planner that prices many candidates over the
/// same, possibly large, inputs never copies them.
struct Shape {
    plan: Plan,
    /// Whether the candidate put a Sort over its left and right input
    /// (then the input's place is under that Sort).
    sorted_here: (bool, bool),
}

impl Shape {
    /// Swaps `left` and `right` with the plan's input places.
    fn exchange(&mut self, left: &mut Plan, right: &mut Plan) {
        fn place(child: &mut Plan, sorted_here: bool) -> &mut Plan {
            if !sorted_here {
                return child;
            }
            match child {
                Plan::Sort { input, .. } => input,
                other => other,
            }
        }
        let (ls, rs) = self.sorted_here;
        match &mut self.plan {
            Plan::Join {
                left: l, right: r, ..
            }
            | Plan::HashJoin {
                left: l, right: r, ..
            }
            | Plan::MergeJoin {
                left: l, right: r, ..
            } => {
                std::mem::swap(place(l, ls), left);
                std::mem::swap(place(r, rs), right);
            }
            Plan::IndexJoin { left: l, .. } => std::mem::swap(&mut **l, left),
            _ => {}
        }
    }

    /// The candidate's estimate (inputs swapped in), from the inputs'
    /// known estimates: only a Sort the candidate added is priced anew.
    fn price(&self, left_est: Estimate, right_est: Estimate, est: &Estimator<'_>) -> Estimate {
        let (ls, rs) = self.sorted_here;
        let input = |child: &Plan, sorted_here: bool, known: Estimate| {
            if sorted_here {
                est.estimate_node(child, &[known])
            } else {
                known
            }
        };
        let inputs = match &self.plan {
            Plan::IndexJoin { .. } => vec![left_est],
            Plan::Join {
                left: l, right: r, ..
            }
            | Plan::HashJoin {
                left: l, right: r, ..
            }
            | Plan::MergeJoin {
                left: l, right: r, ..
            } => vec![input(l, ls, left_est), input(r, rs, right_est)],
            other => return est.estimate(other),
        };
        est.estimate_node(&self.plan, &inputs)
    }
}

/// The equalities between the two sides, split out of the terms.
struct Keys {
    left: Vec<Expr>,
    /// Over right rows.
    right: Vec<Expr>,
    residual: Vec<Expr>,
}

fn split_keys(terms: Vec<Expr>, lw: usize) -> Keys {
    let mut keys = Keys {
        left: Vec::new(),
        right: Vec::new(),
        residual: Vec::new(),
    };
    for term in terms {
        if let Expr::Binary(BinaryOp::Eq, a, b) = &term
            && !a.has_subquery()
            && !b.has_subquery()
        {
            let side = |e: &Expr| {
                let c = columns_of(e);
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
            let pair = match (side(a), side(b)) {
                (Some(true), Some(false)) => Some(((**a).clone(), (**b).clone())),
                (Some(false), Some(true)) => Some(((**b).clone(), (**a).clone())),
                _ => None,
            };
            if let Some((l, mut r)) = pair {
                r.shift_columns(-(lw as isize));
                keys.left.push(l);
                keys.right.push(r);
                continue;
            }
        }
        keys.residual.push(term);
    }
    keys
}

/// Every way to run the join, in the order preferred on a tie, around
/// stand-ins for the inputs (see [`Shape`]).
fn shapes(left: &Plan, right: &Plan, kind: JoinKind, terms: Vec<Expr>) -> Vec<Shape> {
    // Widths and orders walk the inputs: once each, not per candidate.
    let (lw, rw) = (left.width(), right.width());
    let keys = split_keys(terms, lw);
    let plain = |plan: Plan| Shape {
        plan,
        sorted_here: (false, false),
    };
    if keys.left.is_empty() {
        let on = Expr::and_all(keys.residual);
        let kind = match (kind, &on) {
            (JoinKind::Cross, Some(_)) => JoinKind::Inner,
            (k, _) => k,
        };
        return vec![plain(Plan::Join {
            left: Box::new(hole_of(lw)),
            right: Box::new(hole_of(rw)),
            kind,
            on,
        })];
    }
    let kind = if kind == JoinKind::Cross {
        JoinKind::Inner
    } else {
        kind
    };
    let mut out = Vec::new();
    if let Some(p) = index_join(lw, right, kind, &keys) {
        out.push(plain(p));
    }
    // Merge join: key pairs in the order the left side is sorted in, if
    // it is; then a Sort under each side that does not already come in
    // that order.
    let left_order = sorted_on(left);
    let (lk, rk) = align_keys(&left_order, &keys);
    let left_sorted = order_gives(&left_order, &lk);
    let right_sorted = order_gives(&sorted_on(right), &rk);
    let sorted = |width: usize, keys: &[Expr], already: bool| {
        if already {
            hole_of(width)
        } else {
            Plan::Sort {
                input: Box::new(hole_of(width)),
                keys: keys
                    .iter()
                    .map(|k| SortKey {
                        expr: k.clone(),
                        desc: false,
                        nulls_first: true,
                    })
                    .collect(),
            }
        }
    };
    let merge = Shape {
        plan: Plan::MergeJoin {
            left: Box::new(sorted(lw, &lk, left_sorted)),
            right: Box::new(sorted(rw, &rk, right_sorted)),
            kind,
            left_keys: lk,
            right_keys: rk,
            residual: Expr::and_all(keys.residual.clone()),
        },
        sorted_here: (!left_sorted, !right_sorted),
    };
    let hash = plain(Plan::HashJoin {
        left: Box::new(hole_of(lw)),
        right: Box::new(hole_of(rw)),
        kind,
        left_keys: keys.left,
        right_keys: keys.right,
        residual: Expr::and_all(keys.residual),
    });
    if left_sorted && right_sorted {
        out.push(merge);
        out.push(hash);
    } else {
        out.push(hash);
        out.push(merge);
    }
    out
}

/// An index nested-loop join (around a stand-in for its left input of
/// `lw` columns), when the right side is a table (maybe filtered) with an
/// index or a one-column primary key on a key column.
fn index_join(lw: usize, right: &Plan, kind: JoinKind, keys: &Keys) -> Option<Plan> {
    let (table, right_filter) = plain_table(right)?;
    for (k, rk) in keys.right.iter().enumerate() {
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
        // The other equalities are checked on the combined row.
        let mut residual = keys.residual.clone();
        for (i, (l, r)) in keys.left.iter().zip(&keys.right).enumerate() {
            if i != k {
                let mut r = r.clone();
                r.shift_columns(lw as isize);
                residual.push(Expr::Binary(BinaryOp::Eq, Box::new(l.clone()), Box::new(r)));
            }
        }
        return Some(Plan::IndexJoin {
            left: Box::new(hole_of(lw)),
            index: if by_pk { None } else { index.cloned() },
            table,
            left_key: keys.left[k].clone(),
            right_filter,
            kind,
            residual: Expr::and_all(residual),
        });
    }
    None
}

/// The table under a right join input that is a scan, possibly filtered.
fn plain_table(plan: &Plan) -> Option<(Arc<Table>, Option<Expr>)> {
    match plan {
        Plan::Scan { table, .. } => Some((table.clone(), None)),
        Plan::Filter { input, predicate } => match &**input {
            Plan::Scan { table, .. } => Some((table.clone(), Some(predicate.clone()))),
            _ => None,
        },
        _ => None,
    }
}

/// The columns the rows of `plan` are known to be sorted on, most
/// significant first, ascending in [`crate::value::Value::total_cmp`]'s
/// order (NULLs first): the order keys are stored in.
pub fn sorted_on(plan: &Plan) -> Vec<usize> {
    match plan {
        Plan::Scan { table, .. } => table.primary_key.clone(),
        Plan::IndexScan {
            index,
            reverse: false,
            ..
        }
        | Plan::IndexOnlyScan {
            index,
            reverse: false,
            ..
        } => index.columns.clone(),
        Plan::Filter { input, .. } | Plan::Limit { input, .. } => sorted_on(input),
        // The joins that read the left side in order keep its order.
        Plan::Join { left, .. }
        | Plan::HashJoin { left, .. }
        | Plan::MergeJoin { left, .. }
        | Plan::IndexJoin { left, .. } => sorted_on(left),
        Plan::Project { input, exprs } => sorted_on(input)
            .into_iter()
            .map_while(|c| exprs.iter().position(|e| *e == Expr::col(c)))
            .collect(),
        Plan::Sort { keys, .. } => keys
            .iter()
            .map_while(|k| match k.expr {
                Expr::Column { depth: 0, index } if !k.desc && k.nulls_first => Some(index),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Whether rows sorted on the columns `order` are sorted on `keys`
/// (plain columns that are a prefix of that order).
fn order_gives(order: &[usize], keys: &[Expr]) -> bool {
    keys.len() <= order.len() && keys.iter().zip(order).all(|(k, c)| *k == Expr::col(*c))
}

/// The key pairs reordered so that the left keys follow the left side's
/// sort order as far as they can.
fn align_keys(order: &[usize], keys: &Keys) -> (Vec<Expr>, Vec<Expr>) {
    let mut pairs: Vec<(Expr, Expr)> = keys
        .left
        .iter()
        .cloned()
        .zip(keys.right.iter().cloned())
        .collect();
    let rank = |e: &Expr| {
        order
            .iter()
            .position(|c| *e == Expr::col(*c))
            .unwrap_or(usize::MAX)
    };
    pairs.sort_by_key(|(l, _)| rank(l));
    pairs.into_iter().unzip()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::*;
    use crate::catalog::{Column, Index};
    use crate::exec::ExecContext;
    use crate::exec::eval::NoStore;
    use crate::plan::rules::optimize;
    use crate::plan::stats::{ColumnStats, TableStats};
    use crate::value::{DataType, Value};

    /// A table of INTEGER columns `cols`, with a primary key on the
    /// columns `pk` and one index per entry of `indexed`.
    fn table(id: u64, name: &str, cols: &[&str], pk: &[usize], indexed: &[usize]) -> Arc<Table> {
        Arc::new(Table {
            name: name.into(),
            id,
            columns: cols
                .iter()
                .map(|c| Column {
                    name: (*c).into(),
                    ty: DataType::Integer,
                    nullable: true,
                    default: Value::Null,
                })
                .collect(),
            primary_key: pk.to_vec(),
            indexes: indexed
                .iter()
                .map(|c| Index {
                    name: format!("{name}_{}", cols[*c]),
                    id: id * 100 + *c as u64,
                    table: name.into(),
                    columns: vec![*c],
                    unique: false,
                })
                .collect(),
        })
    }

    /// Statistics: `rows` rows, column `i` with `distinct[i]` values.
    fn stats(rows: u64, distinct: &[u64]) -> TableStats {
        TableStats {
            row_count: rows,
            columns: distinct
                .iter()
                .map(|d| ColumnStats {
                    distinct: *d,
                    ..ColumnStats::default()
                })
                .collect(),
            ..TableStats::default()
        }
    }

    fn eq(a: usize, b: usize) -> Expr {
        Expr::Binary(BinaryOp::Eq, Box::new(Expr::col(a)), Box::new(Expr::col(b)))
    }

    /// `FROM t1, t2, ... WHERE terms`, as the binder builds it.
    fn from_where(tables: &[&Arc<Table>], terms: Vec<Expr>) -> Plan {
        let joined = tables
            .iter()
            .map(|t| Plan::Scan {
                table: (*t).clone(),
                columns: None,
            })
            .reduce(|acc, t| Plan::Join {
                left: Box::new(acc),
                right: Box::new(t),
                kind: JoinKind::Cross,
                on: None,
            })
            .unwrap();
        match Expr::and_all(terms) {
            Some(predicate) => Plan::Filter {
                input: Box::new(joined),
                predicate,
            },
            None => joined,
        }
    }

    /// The tables in the order the plan reads them: leftmost input first.
    fn read_order(plan: &Plan, out: &mut Vec<String>) {
        match plan {
            Plan::Scan { table, .. }
            | Plan::ScanBackward { table }
            | Plan::IndexScan { table, .. }
            | Plan::IndexOnlyScan { table, .. }
            | Plan::PkLookup { table, .. } => out.push(table.name.clone()),
            Plan::IndexJoin { left, table, .. } => {
                read_order(left, out);
                out.push(table.name.clone());
            }
            other => other.inputs().into_iter().for_each(|p| read_order(p, out)),
        }
    }

    fn order_of(plan: &Plan) -> Vec<String> {
        let mut out = Vec::new();
        read_order(plan, &mut out);
        out
    }

    fn explain(plan: &Plan) -> String {
        plan.explain().join("\n")
    }

    #[test]
    fn chain_starts_from_the_small_end_and_follows_the_indexes() {
        // a (10 rows) - b (1000) - c (100000), written biggest first:
        // FROM c, b, a WHERE a.x = b.x AND b.y = c.y.
        let a = table(1, "a", &["x", "y"], &[], &[]);
        let b = table(2, "b", &["x", "y"], &[], &[0]);
        let c = table(3, "c", &["y", "z"], &[], &[0]);
        let est = Estimator::with_stats([
            (1, stats(10, &[10, 10])),
            (2, stats(1000, &[1000, 100])),
            (3, stats(100_000, &[100, 100_000])),
        ]);
        // Row: c.y c.z | b.x b.y | a.x a.y
        let plan = optimize(from_where(&[&c, &b, &a], vec![eq(4, 2), eq(3, 0)]), &est);
        assert_eq!(order_of(&plan), ["a", "b", "c"], "{}", explain(&plan));
        let text = explain(&plan);
        assert!(text.contains("IndexJoin Inner b using b_x"), "{text}");
        assert!(text.contains("IndexJoin Inner c using c_y"), "{text}");
        // The projection on top restores FROM's column order.
        assert_eq!(plan.width(), 6);
        let Plan::Project { exprs, .. } = &plan else {
            panic!("expected a projection on top:\n{text}");
        };
        // c's columns come last in the new order (a: 0-1, b: 2-3, c: 4-5).
        assert_eq!(exprs[0], Expr::col(4));
        assert_eq!(exprs[4], Expr::col(0));
    }

    #[test]
    fn star_starts_from_the_filtered_dimension() {
        // The fact table f references three dimensions; only d1 is
        // filtered, and f has an index on its d1 column.
        let f = table(10, "f", &["d1", "d2", "d3", "v"], &[], &[0]);
        let d1 = table(11, "d1", &["id", "name"], &[0], &[]);
        let d2 = table(12, "d2", &["id", "name"], &[0], &[]);
        let d3 = table(13, "d3", &["id", "name"], &[0], &[]);
        let est = Estimator::with_stats([
            (10, stats(100_000, &[10, 1000, 100, 100_000])),
            (11, stats(10, &[10, 10])),
            (12, stats(1000, &[1000, 1000])),
            (13, stats(100, &[100, 100])),
        ]);
        // Row: f 0-3 | d2 4-5 | d3 6-7 | d1 8-9
        let name_is_x = Expr::Binary(
            BinaryOp::Eq,
            Box::new(Expr::col(9)),
            Box::new(Expr::Literal(Value::text("x"))),
        );
        let plan = optimize(
            from_where(
                &[&f, &d2, &d3, &d1],
                vec![eq(0, 8), eq(1, 4), eq(2, 6), name_is_x],
            ),
            &est,
        );
        let text = explain(&plan);
        let order = order_of(&plan);
        assert_eq!(&order[..2], ["d1", "f"], "{text}");
        assert!(text.contains("IndexJoin Inner f using f_d1"), "{text}");
        // d2 and d3 are then joined by hash or by primary-key lookups,
        // whichever the cost model prices lower (10,000 lookups into a
        // 1000-row table cost more than hashing it once).
        assert!(text.contains("Join Inner") && text.contains("d2"), "{text}");
        assert!(!text.contains("NestedLoopJoin"), "{text}");
    }

    /// Six tables in a chain t0 - t1 - ... - t5, listed so that no two
    /// neighbours in FROM are linked.
    fn scrambled_chain(n: usize) -> (Vec<Arc<Table>>, Plan) {
        let tables: Vec<Arc<Table>> = (0..n)
            .map(|i| table(100 + i as u64, &format!("t{i}"), &["a", "b"], &[], &[]))
            .collect();
        // Evens first, then odds: t0, t2, t4, ..., t1, t3, ...
        let order: Vec<usize> = (0..n).step_by(2).chain((1..n).step_by(2)).collect();
        let at = |t: usize| 2 * order.iter().position(|x| *x == t).unwrap();
        // t_i.b = t_{i+1}.a
        let terms = (0..n - 1).map(|i| eq(at(i) + 1, at(i + 1))).collect();
        let listed: Vec<&Arc<Table>> = order.iter().map(|i| &tables[*i]).collect();
        let plan = from_where(&listed, terms);
        (tables, plan)
    }

    #[test]
    fn no_cross_product_while_a_condition_links_the_inputs() {
        let (_, plan) = scrambled_chain(6);
        let plan = optimize(plan, &Estimator::without_stats());
        let text = explain(&plan);
        assert!(!text.contains("NestedLoopJoin"), "{text}");
        assert_eq!(text.matches("Join Inner").count(), 5, "{text}");
        assert_eq!(plan.width(), 12);
    }

    #[test]
    fn unlinked_inputs_are_crossed_once() {
        // FROM a, b, c WHERE a.x = c.x: b is linked to nothing.
        let a = table(1, "a", &["x"], &[], &[]);
        let b = table(2, "b", &["x"], &[], &[]);
        let c = table(3, "c", &["x"], &[], &[]);
        let plan = optimize(
            from_where(&[&a, &b, &c], vec![eq(0, 2)]),
            &Estimator::without_stats(),
        );
        let text = explain(&plan);
        assert_eq!(text.matches("NestedLoopJoin Cross").count(), 1, "{text}");
        assert_eq!(text.matches("Join Inner").count(), 1, "{text}");
    }

    #[test]
    fn fourteen_relations_plan_greedily_into_a_valid_tree() {
        let n = 14;
        assert!(n > DP_MAX_RELATIONS);
        let (tables, plan) = scrambled_chain(n);
        let est = Estimator::with_stats(
            tables
                .iter()
                .enumerate()
                .map(|(i, t)| (t.id, stats(10 * (i as u64 + 1), &[10, 10]))),
        );
        let plan = optimize(plan, &est);
        let text = explain(&plan);
        assert!(!text.contains("NestedLoopJoin"), "{text}");
        assert_eq!(text.matches("Join Inner").count(), n - 1, "{text}");
        let mut order = order_of(&plan);
        order.sort();
        let mut want: Vec<String> = tables.iter().map(|t| t.name.clone()).collect();
        want.sort();
        assert_eq!(order, want, "every table read once:\n{text}");
        assert_eq!(plan.width(), 2 * n);
    }

    #[test]
    fn ten_relations_plan_by_dynamic_programming() {
        // A star of nine dimensions around a fact table: 2^9 linked
        // subsets hold the fact table, each planned once.
        let mut cols: Vec<String> = (1..10).map(|i| format!("d{i}")).collect();
        cols.push("v".into());
        let col_refs: Vec<&str> = cols.iter().map(String::as_str).collect();
        let f = table(50, "f", &col_refs, &[], &[]);
        let dims: Vec<Arc<Table>> = (1..10)
            .map(|i| table(50 + i, &format!("d{i}"), &["id", "name"], &[], &[]))
            .collect();
        let mut listed: Vec<&Arc<Table>> = dims.iter().collect();
        listed.push(&f);
        // Row: d1..d9 (2 columns each, 0-17), f (18-27).
        let terms = (0..9).map(|i| eq(18 + i, 2 * i)).collect();
        let est = Estimator::with_stats(
            dims.iter()
                .enumerate()
                .map(|(i, d)| (d.id, stats(10 + 100 * i as u64, &[10, 10])))
                .chain([(f.id, stats(100_000, &[10; 10]))]),
        );
        let plan = optimize(from_where(&listed, terms), &est);
        let text = explain(&plan);
        assert!(!text.contains("NestedLoopJoin"), "{text}");
        assert_eq!(text.matches("Join Inner").count(), 9, "{text}");
        assert_eq!(plan.width(), 28);
    }

    #[test]
    fn merge_join_reads_primary_key_order_without_sorting() {
        // p's and q's two-column keys both start with id: both scans come
        // sorted on it, and neither has an index for a lookup on id alone.
        let p = table(1, "p", &["id", "v"], &[0, 1], &[]);
        let q = table(2, "q", &["id", "k", "w"], &[0, 1], &[]);
        let plan = optimize(
            from_where(&[&p, &q], vec![eq(0, 2)]),
            &Estimator::without_stats(),
        );
        let text = explain(&plan);
        assert!(
            text.contains("MergeJoin Inner left=(#0) right=(#0)"),
            "{text}"
        );
        assert!(!text.contains("Sort"), "{text}");
    }

    #[test]
    fn left_joins_keep_their_sides() {
        let a = table(1, "a", &["x"], &[], &[]);
        let b = table(2, "b", &["x"], &[], &[]);
        let plan = Plan::Join {
            left: Box::new(Plan::Scan {
                table: b.clone(),
                columns: None,
            }),
            right: Box::new(Plan::Scan {
                table: a.clone(),
                columns: None,
            }),
            kind: JoinKind::Left,
            on: Some(eq(0, 1)),
        };
        let est = Estimator::with_stats([(1, stats(10, &[10])), (2, stats(100_000, &[10]))]);
        let plan = optimize(plan, &est);
        assert_eq!(order_of(&plan), ["b", "a"], "{}", explain(&plan));
        assert!(explain(&plan).contains("Join Left"));
    }

    fn values(rows: &[(Option<i64>, i64)]) -> Plan {
        let lit = |v: Option<i64>| Expr::Literal(v.map(Value::Integer).unwrap_or(Value::Null));
        Plan::Values {
            rows: rows
                .iter()
                .map(|(k, v)| vec![lit(*k), lit(Some(*v))])
                .collect(),
            width: 2,
        }
    }

    fn sorted_by_key(p: Plan) -> Plan {
        Plan::Sort {
            input: Box::new(p),
            keys: vec![SortKey {
                expr: Expr::col(0),
                desc: false,
                nulls_first: true,
            }],
        }
    }

    fn run_sorted(plan: &Plan) -> Vec<Vec<Value>> {
        let mut rows = crate::exec::run(plan, &NoStore, &ExecContext::default()).unwrap();
        rows.sort_by(|a, b| {
            crate::value::GroupKey(a.clone()).cmp(&crate::value::GroupKey(b.clone()))
        });
        rows
    }

    #[test]
    fn merge_join_refuses_input_that_is_not_sorted() {
        let left = values(&[(Some(2), 0), (Some(1), 0)]);
        let right = values(&[(Some(1), 0), (Some(2), 0)]);
        let plan = Plan::MergeJoin {
            left: Box::new(left),
            right: Box::new(right),
            kind: JoinKind::Inner,
            left_keys: vec![Expr::col(0)],
            right_keys: vec![Expr::col(0)],
            residual: None,
        };
        let err = crate::exec::run(&plan, &NoStore, &ExecContext::default()).unwrap_err();
        assert!(err.to_string().contains("not sorted"), "{err}");
    }

    fn rows_strategy() -> impl Strategy<Value = Vec<(Option<i64>, i64)>> {
        prop::collection::vec((prop::option::weighted(0.8, 0i64..5), 0i64..4), 0..12)
    }

    proptest! {
        /// Merge join and hash join give exactly the nested loop's rows,
        /// inner and left, with and without a residual condition, NULL
        /// keys and duplicate keys on both sides included.
        #[test]
        fn merge_and_hash_join_equal_nested_loop(
            left in rows_strategy(),
            right in rows_strategy(),
            left_join in any::<bool>(),
            with_residual in any::<bool>(),
        ) {
            let kind = if left_join { JoinKind::Left } else { JoinKind::Inner };
            // Residual over the combined row: left.v <= right.v.
            let residual = with_residual.then(|| Expr::Binary(
                BinaryOp::LtEq,
                Box::new(Expr::col(1)),
                Box::new(Expr::col(3)),
            ));
            let on = Expr::and_all([Some(eq(0, 2)), residual.clone()].into_iter().flatten().collect());
            let nested = Plan::Join {
                left: Box::new(values(&left)),
                right: Box::new(values(&right)),
                kind,
                on,
            };
            let merge = Plan::MergeJoin {
                left: Box::new(sorted_by_key(values(&left))),
                right: Box::new(sorted_by_key(values(&right))),
                kind,
                left_keys: vec![Expr::col(0)],
                right_keys: vec![Expr::col(0)],
                residual: residual.clone(),
            };
            let hash = Plan::HashJoin {
                left: Box::new(values(&left)),
                right: Box::new(values(&right)),
                kind,
                left_keys: vec![Expr::col(0)],
                right_keys: vec![Expr::col(0)],
                residual,
            };
            let want = run_sorted(&nested);
            prop_assert_eq!(&run_sorted(&merge), &want);
            prop_assert_eq!(&run_sorted(&hash), &want);
        }
    }
}
