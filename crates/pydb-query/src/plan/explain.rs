//! EXPLAIN's text: the plan as PostgreSQL prints it, with the optimizer's
//! estimates on every operator and, for EXPLAIN ANALYZE, what really
//! happened.
//!
//! One line per operator, children below their parent behind `->`:
//!
//! ```text
//! Hash Join  (cost=0.00..3050.00 rows=1000 width=5)
//!   Hash Cond: (t1.a = t2.b)
//!   ->  Seq Scan on t1  (cost=0.00..1000.00 rows=1000 width=3)
//!   ->  Seq Scan on t2  (cost=0.00..1000.00 rows=1000 width=2)
//!         Filter: (t2.c > 5)
//! ```
//!
//! - `cost=S..T` is the estimated cost before the first row (S) and of the
//!   whole run (T), in the cost model's abstract units
//!   ([`super::cost::Estimator`]); `rows` the estimated rows out, `width`
//!   the number of columns of those rows (PostgreSQL prints bytes).
//! - The lines under an operator, indented, give its details: the join
//!   condition, the filter, the index range, the sort keys. Column
//!   references print as `table.column` (or as the expression that
//!   computed them) instead of the positions the plan holds.
//! - As in PostgreSQL, a filter and a projection do not get lines of their
//!   own: a Filter prints as a `Filter:` line of the operator below it and
//!   a Project is folded into it (the line's estimate and width are those
//!   of the topmost folded node).
//! - Subqueries print under the operator whose expression holds them:
//!   `InitPlan #n` for one that runs once and is cached (it reads nothing
//!   of the outer row), `SubPlan #n` for a correlated one, which runs again
//!   for each outer row (its `loops` in EXPLAIN ANALYZE say how often).
//!
//! EXPLAIN ANALYZE appends `(actual time=F..L rows=R loops=N)` to each
//! line: the milliseconds to the first row (F) and to the end (L), and the
//! rows, each averaged over the N times the operator was started (`loops`;
//! more than one for a correlated subquery). Times include the operator's
//! inputs. An operator never started prints `(never executed)`. The
//! counters come from the executor ([`crate::exec::profile`]), looked up
//! through an [`Actuals`] function.

use std::time::Duration;

use crate::ast::JoinKind;
use crate::plan::cost::{Estimate, Estimator};
use crate::plan::{AggCall, Expr, Plan, SortKey, Subquery, fmt_expr_with, positional};
use crate::store::IndexRange;

/// What one operator did over a statement, summed over its loops.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Actual {
    /// How many times it was started (and pulled at least once).
    pub loops: u64,
    /// Rows returned, over all loops.
    pub rows: u64,
    /// Time to the first row (or to the end, if none), over all loops.
    pub startup: Duration,
    /// Time to the end, over all loops.
    pub total: Duration,
}

/// Looks up the actual counters of a plan node (EXPLAIN ANALYZE), `None`
/// when it never ran.
pub type Actuals<'a> = &'a dyn Fn(&Plan) -> Option<Actual>;

/// The plan's lines, with estimates, and actual counters if `actuals`.
pub fn explain_plan(plan: &Plan, est: &Estimator<'_>, actuals: Option<Actuals<'_>>) -> Vec<String> {
    print_at(plan, est, actuals, 0)
}

/// The lines of `plan` as the input of another line (an INSERT's,
/// UPDATE's or DELETE's): indented, behind `->`.
pub fn explain_input(
    plan: &Plan,
    est: &Estimator<'_>,
    actuals: Option<Actuals<'_>>,
) -> Vec<String> {
    print_at(plan, est, actuals, 1)
}

fn print_at(
    plan: &Plan,
    est: &Estimator<'_>,
    actuals: Option<Actuals<'_>>,
    indent: usize,
) -> Vec<String> {
    let mut p = Printer {
        est,
        actuals,
        lines: Vec::new(),
    };
    p.node(plan, None, indent, &[]);
    p.lines
}

/// The figures of a line: `  (cost=0.00..12.50 rows=10 width=2)`.
pub fn format_estimate(e: &Estimate, width: usize) -> String {
    let (startup, total) = cost_range(e);
    format!(
        "  (cost={startup:.2}..{total:.2} rows={:.0} width={width})",
        e.rows.max(0.0).round()
    )
}

/// The startup and total cost of an estimate.
fn cost_range(e: &Estimate) -> (f64, f64) {
    (0.0, e.cost)
}

/// ` (actual time=0.010..0.200 rows=10 loops=1)`, or ` (never executed)`.
pub fn format_actual(a: Option<Actual>) -> String {
    match a {
        Some(a) if a.loops > 0 => {
            let loops = a.loops as f64;
            let ms = |d: Duration| d.as_secs_f64() * 1000.0 / loops;
            format!(
                " (actual time={:.3}..{:.3} rows={:.0} loops={})",
                ms(a.startup),
                ms(a.total),
                a.rows as f64 / loops,
                a.loops
            )
        }
        _ => " (never executed)".into(),
    }
}

/// The names of a node's output columns, for printing expressions over
/// its rows: `t.a` for a table's column, the expression's text for a
/// computed one, `#i` where nothing better is known.
pub fn column_names(plan: &Plan) -> Vec<String> {
    let table_cols = |t: &crate::catalog::Table| -> Vec<String> {
        t.columns
            .iter()
            .map(|c| format!("{}.{}", t.name, c.name))
            .collect()
    };
    match plan {
        Plan::Scan { table, .. }
        | Plan::ScanBackward { table }
        | Plan::IndexScan { table, .. }
        | Plan::IndexOnlyScan { table, .. }
        | Plan::PkLookup { table, .. } => table_cols(table),
        Plan::Values { width, .. } => (1..=*width).map(|i| format!("column{i}")).collect(),
        Plan::Filter { input, .. }
        | Plan::Sort { input, .. }
        | Plan::TopN { input, .. }
        | Plan::Limit { input, .. }
        | Plan::Distinct { input, .. } => column_names(input),
        Plan::Project { input, exprs } => {
            let names = column_names(input);
            exprs.iter().map(|e| expr_text(e, &names, &[])).collect()
        }
        Plan::Join { left, right, .. }
        | Plan::HashJoin { left, right, .. }
        | Plan::MergeJoin { left, right, .. } => {
            let mut names = column_names(left);
            names.extend(column_names(right));
            names
        }
        Plan::IndexJoin { left, table, .. } => {
            let mut names = column_names(left);
            names.extend(table_cols(table));
            names
        }
        Plan::Aggregate {
            input,
            group_by,
            aggs,
        } => {
            let names = column_names(input);
            let mut out: Vec<String> = group_by.iter().map(|e| expr_text(e, &names, &[])).collect();
            out.extend(aggs.iter().map(|a| agg_text(a, &names)));
            out
        }
        Plan::SetOp { left, .. } | Plan::SemiJoin { left, .. } => column_names(left),
        #[allow(unreachable_patterns)]
        other => (0..other.width()).map(|i| format!("#{i}")).collect(),
    }
}

/// `e` over a row whose columns are `names`, inside queries whose rows are
/// `outer` (innermost last).
fn expr_text(e: &Expr, names: &[String], outer: &[Vec<String>]) -> String {
    let namer = |depth: usize, index: usize| -> String {
        let row = if depth == 0 {
            Some(names)
        } else {
            outer
                .len()
                .checked_sub(depth)
                .and_then(|i| outer.get(i))
                .map(Vec::as_slice)
        };
        row.and_then(|r| r.get(index))
            .cloned()
            .unwrap_or_else(|| positional(depth, index))
    };
    fmt_expr_with(e, &namer)
}

fn agg_text(a: &AggCall, names: &[String]) -> String {
    let func = format!("{:?}", a.func).to_lowercase();
    let arg = a
        .arg
        .as_ref()
        .map(|e| expr_text(e, names, &[]))
        .unwrap_or_else(|| "*".into());
    let distinct = if a.distinct { "DISTINCT " } else { "" };
    format!("{func}({distinct}{arg})")
}

/// The subqueries inside an expression, outermost first (not those inside
/// the subqueries themselves: they print under their own plans).
fn subqueries<'p>(e: &'p Expr, out: &mut Vec<&'p Subquery>) {
    match e {
        Expr::InSubquery { expr, subquery, .. } => {
            subqueries(expr, out);
            out.push(subquery);
        }
        Expr::Exists { subquery, .. } | Expr::Scalar(subquery) => out.push(subquery),
        _ => e.children(&mut |c| subqueries(c, out)),
    }
}

/// One printed node: the operator that names the line, and the Filters
/// and Projects right above it, folded into it (see the module docs).
struct Shown<'p> {
    /// The operator that names the line and whose inputs are the children.
    base: &'p Plan,
    /// The Filters and Projects above `base`, bottom up.
    folded: Vec<&'p Plan>,
}

impl<'p> Shown<'p> {
    /// The topmost folded node: its estimate and counters are the line's.
    fn top(&self) -> &'p Plan {
        self.folded.last().copied().unwrap_or(self.base)
    }

    fn of(plan: &'p Plan) -> Shown<'p> {
        match plan {
            Plan::Project { input, .. } | Plan::Filter { input, .. } => {
                let mut below = Shown::of(input);
                below.folded.push(plan);
                below
            }
            _ => Shown {
                base: plan,
                folded: Vec::new(),
            },
        }
    }
}

struct Printer<'e, 'a> {
    est: &'e Estimator<'a>,
    actuals: Option<Actuals<'e>>,
    lines: Vec<String>,
}

impl Printer<'_, '_> {
    fn actual(&self, plan: &Plan) -> Option<Actual> {
        self.actuals.and_then(|f| f(plan))
    }

    /// Prints `plan` and everything under it. `indent` counts units of two
    /// spaces, as PostgreSQL counts them; `outer` holds the column names of
    /// the enclosing queries' rows (for a subquery's outer references).
    fn node(
        &mut self,
        plan: &Plan,
        label: Option<String>,
        mut indent: usize,
        outer: &[Vec<String>],
    ) {
        if let Some(label) = label {
            self.lines.push(format!("{}{label}", "  ".repeat(indent)));
            indent += 1;
        }
        let mut line = String::new();
        if indent > 0 {
            line = format!("{}->  ", "  ".repeat(indent));
            indent += 2;
        }
        let shown = Shown::of(plan);
        let top = shown.top();
        let (name, mut details, children, mut subs) = describe(shown.base, outer);
        line.push_str(&name);
        line.push_str(&format_estimate(&self.est.estimate(top), top.width()));
        if self.actuals.is_some() {
            line.push_str(&format_actual(self.actual(top)));
        }
        self.lines.push(line);
        for folded in &shown.folded {
            match folded {
                Plan::Filter { input, predicate } => {
                    let names = column_names(input);
                    details.push(format!("Filter: {}", expr_text(predicate, &names, outer)));
                    subs.push((predicate, names));
                    if let (Some(f), Some(i)) = (self.actual(folded), self.actual(input))
                        && f.loops > 0
                    {
                        let removed = i.rows.saturating_sub(f.rows) as f64 / f.loops as f64;
                        details.push(format!("Rows Removed by Filter: {removed:.0}"));
                    }
                }
                Plan::Project { input, exprs } => {
                    let names = column_names(input);
                    subs.extend(exprs.iter().map(|e| (e, names.clone())));
                }
                _ => {}
            }
        }
        let pad = "  ".repeat(indent + 1);
        for d in details {
            self.lines.push(format!("{pad}{d}"));
        }
        // Subqueries: the cached ones (InitPlans) before the inputs, the
        // correlated ones (SubPlans) after, as PostgreSQL orders them.
        let mut found: Vec<(&Subquery, Vec<String>)> = Vec::new();
        for (e, names) in subs {
            let mut v = Vec::new();
            subqueries(e, &mut v);
            found.extend(v.into_iter().map(|s| (s, names.clone())));
        }
        for (s, names) in found.iter().filter(|(s, _)| !s.correlated) {
            let mut inner = outer.to_vec();
            inner.push(names.clone());
            self.node(
                &s.plan,
                Some(format!("InitPlan #{}", s.id)),
                indent + 1,
                &inner,
            );
        }
        for child in children {
            self.node(child, None, indent + 1, outer);
        }
        for (s, names) in found.iter().filter(|(s, _)| s.correlated) {
            let mut inner = outer.to_vec();
            inner.push(names.clone());
            self.node(
                &s.plan,
                Some(format!("SubPlan #{}", s.id)),
                indent + 1,
                &inner,
            );
        }
    }
}

/// A node's line, its detail lines, its inputs, and the expressions that
/// may hold subqueries (with the names of the row they read).
type Described<'p> = (
    String,
    Vec<String>,
    Vec<&'p Plan>,
    Vec<(&'p Expr, Vec<String>)>,
);

fn describe<'p>(plan: &'p Plan, outer: &[Vec<String>]) -> Described<'p> {
    let mut details = Vec::new();
    let mut subs: Vec<(&'p Expr, Vec<String>)> = Vec::new();
    let text = |e: &Expr, names: &[String]| expr_text(e, names, outer);
    let join_kind = |kind: &JoinKind| match kind {
        JoinKind::Left => " Left Join",
        _ => "",
    };
    let name = match plan {
        Plan::Scan { table, .. } => format!("Seq Scan on {}", table.name),
        Plan::ScanBackward { table } => format!("Seq Scan Backward on {}", table.name),
        Plan::IndexScan {
            table,
            index,
            range,
            reverse,
        }
        | Plan::IndexOnlyScan {
            table,
            index,
            range,
            reverse,
        } => {
            let cols: Vec<String> = index
                .columns
                .iter()
                .map(|i| {
                    table
                        .columns
                        .get(*i)
                        .map(|c| format!("{}.{}", table.name, c.name))
                        .unwrap_or_else(|| format!("#{i}"))
                })
                .collect();
            if let Some(cond) = index_cond(&cols, range) {
                details.push(format!("Index Cond: {cond}"));
            }
            let only = if matches!(plan, Plan::IndexOnlyScan { .. }) {
                " Only"
            } else {
                ""
            };
            let backward = if *reverse { " Backward" } else { "" };
            format!(
                "Index{only} Scan{backward} using {} on {}",
                index.name, table.name
            )
        }
        Plan::PkLookup { table, key } => {
            let terms: Vec<String> = table
                .primary_key
                .iter()
                .zip(key)
                .map(|(i, v)| {
                    let col = table
                        .columns
                        .get(*i)
                        .map(|c| c.name.as_str())
                        .unwrap_or("?");
                    format!("{}.{col} = {}", table.name, fmt_expr_with(v, &positional))
                })
                .collect();
            details.push(format!("Key Cond: ({})", terms.join(" AND ")));
            format!("Primary Key Lookup on {}", table.name)
        }
        Plan::Values { rows, width } => {
            for row in rows {
                subs.extend(row.iter().map(|e| (e, Vec::new())));
            }
            if rows.len() == 1 && *width == 0 {
                "Result".into()
            } else {
                "Values Scan".into()
            }
        }
        Plan::Filter { input, predicate } => {
            let names = column_names(input);
            details.push(format!("Filter: {}", text(predicate, &names)));
            subs.push((predicate, names));
            "Result".into()
        }
        Plan::Project { input, exprs } => {
            let names = column_names(input);
            subs.extend(exprs.iter().map(|e| (e, names.clone())));
            "Result".into()
        }
        Plan::Join { kind, on, .. } => {
            let names = column_names(plan);
            if let Some(on) = on {
                details.push(format!("Join Filter: {}", text(on, &names)));
                subs.push((on, names));
            }
            format!("Nested Loop{}", join_kind(kind))
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
            let method = if matches!(plan, Plan::HashJoin { .. }) {
                "Hash"
            } else {
                "Merge"
            };
            let (ln, rn) = (column_names(left), column_names(right));
            let conds: Vec<String> = left_keys
                .iter()
                .zip(right_keys)
                .map(|(l, r)| format!("{} = {}", text(l, &ln), text(r, &rn)))
                .collect();
            details.push(format!("{method} Cond: ({})", conds.join(" AND ")));
            if let Some(res) = residual {
                let names = column_names(plan);
                details.push(format!("Join Filter: {}", text(res, &names)));
                subs.push((res, names));
            }
            format!("{method}{} Join", join_kind(kind).replace(" Join", ""))
        }
        Plan::SemiJoin {
            left,
            right,
            anti,
            left_keys,
            right_keys,
            residual,
            null_aware,
        } => {
            let (ln, rn) = (column_names(left), column_names(right));
            if !left_keys.is_empty() {
                let conds: Vec<String> = left_keys
                    .iter()
                    .zip(right_keys)
                    .map(|(l, r)| format!("{} = {}", text(l, &ln), text(r, &rn)))
                    .collect();
                details.push(format!("Hash Cond: ({})", conds.join(" AND ")));
            }
            if let Some(res) = residual {
                let mut names = ln.clone();
                names.extend(rn);
                details.push(format!("Join Filter: {}", text(res, &names)));
                subs.push((res, names));
            }
            if *null_aware {
                details.push("Null Aware: NOT IN (a NULL key matches nothing)".into());
            }
            let method = if left_keys.is_empty() {
                "Nested Loop"
            } else {
                "Hash"
            };
            format!("{method} {} Join", if *anti { "Anti" } else { "Semi" })
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
            let ln = column_names(left);
            let col = match index {
                Some(i) => i.columns.first().copied(),
                None => table.primary_key.first().copied(),
            };
            let col = col
                .and_then(|c| table.columns.get(c))
                .map(|c| format!("{}.{}", table.name, c.name))
                .unwrap_or_else(|| "?".into());
            let using = index
                .as_ref()
                .map(|i| i.name.clone())
                .unwrap_or_else(|| "primary key".into());
            details.push(format!("Lookup: {} using {using}", table.name));
            details.push(format!("Index Cond: ({col} = {})", text(left_key, &ln)));
            if let Some(f) = right_filter {
                let names = column_names(&Plan::Scan {
                    table: table.clone(),
                    columns: None,
                });
                details.push(format!("Filter: {}", text(f, &names)));
            }
            if let Some(res) = residual {
                let names = column_names(plan);
                details.push(format!("Join Filter: {}", text(res, &names)));
                subs.push((res, names));
            }
            format!("Index Nested Loop{}", join_kind(kind))
        }
        Plan::Aggregate {
            input,
            group_by,
            aggs,
        } => {
            let names = column_names(input);
            if !group_by.is_empty() {
                let keys: Vec<String> = group_by.iter().map(|e| text(e, &names)).collect();
                details.push(format!("Group Key: {}", keys.join(", ")));
            }
            if !aggs.is_empty() {
                let list: Vec<String> = aggs.iter().map(|a| agg_text(a, &names)).collect();
                details.push(format!("Aggregates: {}", list.join(", ")));
            }
            if group_by.is_empty() {
                "Aggregate".into()
            } else {
                "HashAggregate".into()
            }
        }
        Plan::Sort { input, keys } => {
            details.push(format!(
                "Sort Key: {}",
                sort_keys(keys, &column_names(input), outer)
            ));
            "Sort".into()
        }
        Plan::TopN {
            input,
            keys,
            limit,
            offset,
        } => {
            details.push(format!(
                "Sort Key: {}",
                sort_keys(keys, &column_names(input), outer)
            ));
            details.push(format!("Keep: {limit} rows after {offset}"));
            "Top-N Sort".into()
        }
        Plan::Limit { limit, offset, .. } => {
            let mut parts = Vec::new();
            if let Some(l) = limit {
                parts.push(format!("Limit: {l}"));
            }
            if *offset > 0 {
                parts.push(format!("Offset: {offset}"));
            }
            if !parts.is_empty() {
                details.push(parts.join("  "));
            }
            "Limit".into()
        }
        Plan::Distinct { input, key_width } => {
            if *key_width < input.width() {
                let names = column_names(input);
                let keys = names.get(..*key_width).unwrap_or(&names);
                details.push(format!("Distinct On: {}", keys.join(", ")));
            }
            "Unique".into()
        }
        Plan::SetOp { op, all, .. } => {
            let op = format!("{op:?}");
            if *all { format!("{op} All") } else { op }
        }
        #[allow(unreachable_patterns)]
        other => other.explain().into_iter().next().unwrap_or_default(),
    };
    (name, details, plan.inputs(), subs)
}

fn sort_keys(keys: &[SortKey], names: &[String], outer: &[Vec<String>]) -> String {
    keys.iter()
        .map(|k| {
            let mut s = expr_text(&k.expr, names, outer);
            if k.desc {
                s.push_str(" DESC");
            }
            // SQLite's order puts NULLs first ascending, last descending.
            if k.nulls_first == k.desc {
                s.push_str(if k.nulls_first {
                    " NULLS FIRST"
                } else {
                    " NULLS LAST"
                });
            }
            s
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn literal(v: &crate::value::Value) -> String {
    fmt_expr_with(&Expr::Literal(v.clone()), &positional)
}

/// An index range as a condition on the index's leading columns:
/// `(t.a = 5)`, `((t.a, t.b) >= (1, 2) AND (t.a, t.b) < (1, 9))`.
fn index_cond(cols: &[String], range: &IndexRange) -> Option<String> {
    use std::ops::Bound;
    let side = |vals: &[crate::value::Value], op: &str| -> String {
        let n = vals.len().min(cols.len());
        let list = |items: Vec<String>| {
            if items.len() == 1 {
                items.concat()
            } else {
                format!("({})", items.join(", "))
            }
        };
        format!(
            "{} {op} {}",
            list(cols.get(..n).unwrap_or(cols).to_vec()),
            list(vals.iter().take(n).map(literal).collect())
        )
    };
    if let (Bound::Included(a), Bound::Included(b)) = (&range.start, &range.end)
        && a == b
    {
        return Some(format!("({})", side(a, "=")));
    }
    let mut terms = Vec::new();
    match &range.start {
        Bound::Included(v) => terms.push(side(v, ">=")),
        Bound::Excluded(v) => terms.push(side(v, ">")),
        Bound::Unbounded => {}
    }
    match &range.end {
        Bound::Included(v) => terms.push(side(v, "<=")),
        Bound::Excluded(v) => terms.push(side(v, "<")),
        Bound::Unbounded => {}
    }
    (!terms.is_empty()).then(|| format!("({})", terms.join(" AND ")))
}
