//! The executor: runs one statement against a [`Store`].
//!
//! A query is bound ([`crate::bind`]), optimized ([`crate::plan::rules`])
//! and run by pulling rows from the operator tree ([`operators`]). DML
//! statements find their target rows the same way (a filter over a table,
//! which may become an index scan), *collect* the rows and their keys
//! first, and only then write: an UPDATE that moves rows within the range
//! it scans must not see the rows it has just written (the "Halloween
//! problem"). DDL builds catalog definitions and hands them to the store.
//!
//! EXPLAIN returns the optimized plan as an indented tree, one line per
//! operator, in a single text column `QUERY PLAN`.

pub mod eval;
mod join_table;
pub mod operators;
pub mod predicate;
mod prepared;
pub mod profile;
pub mod scalar;

use std::collections::HashSet;
use std::ops::Bound;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::ast::{self, ObjectKind, Statement};
use crate::bind::{Binder, lookup_table};
use crate::catalog::{Column, Index, Table, View};
use crate::error::{Error, Result};
use crate::output::{Output, ResultColumn, Rows};
use crate::plan::cost::Estimator;
use crate::plan::explain::{
    Actual, Actuals, explain_input, explain_plan, format_actual, format_estimate,
};
use crate::plan::rules::{optimize, optimize_target};
use crate::plan::{Expr, Plan};
use crate::store::{IndexRange, RowKey, Store};
use crate::value::{DataType, Row, Value};

use eval::{Env, eval, eval_predicate};
use operators::build;
pub use prepared::{PlanCache, execute_prepared};
use profile::Profile;

/// What a statement runs with besides the store.
#[derive(Debug, Clone)]
pub struct ExecContext {
    /// The bytes a sort or hash table may hold before it spills or fails.
    pub memory_budget: usize,
    /// The values of `$1`, `$2`, ... of a prepared statement.
    pub params: Vec<Value>,
}

impl Default for ExecContext {
    fn default() -> Self {
        ExecContext {
            memory_budget: 64 << 20,
            params: Vec::new(),
        }
    }
}

/// Runs one statement other than BEGIN, COMMIT and ROLLBACK (which the
/// session handles) against `store`.
pub fn execute(store: &mut dyn Store, stmt: &Statement, ctx: &ExecContext) -> Result<Output> {
    match stmt {
        Statement::Query(q) => {
            let bound = Binder::new(&*store)
                .with_params(&ctx.params)
                .bind_query(q)?;
            let plan = optimize(bound.plan, &Estimator::new(&*store));
            let rows = run(&plan, &*store, ctx)?;
            Ok(Output::Rows(Rows {
                columns: bound.columns.into(),
                rows,
            }))
        }
        Statement::Explain { statement, analyze } => explain(store, statement, *analyze, ctx),
        Statement::Insert(i) => insert(store, i, ctx),
        Statement::Update(u) => update(store, u, ctx),
        Statement::Delete(d) => delete(store, d, ctx),
        Statement::CreateTable(c) => create_table(store, c),
        Statement::CreateIndex(c) => create_index(store, c),
        Statement::CreateView(c) => create_view(store, c),
        Statement::Drop(d) => drop_object(store, d),
        Statement::Reindex { name } => reindex(store, name.as_ref()),
        Statement::Analyze { table } => analyze(store, table.as_ref()),
        Statement::Begin { .. } | Statement::Commit | Statement::Rollback => Err(Error::Invalid(
            "transaction control belongs to the session, not the executor".into(),
        )),
    }
}

/// ANALYZE: reads every row of the named table (or of every table) in
/// the statement's transaction, computes its statistics
/// ([`crate::plan::stats::collect`]) and stores them, replacing the old
/// ones. A rolled-back ANALYZE leaves the old statistics.
fn analyze(store: &mut dyn Store, table: Option<&ast::Ident>) -> Result<Output> {
    let tables = match table {
        Some(t) => vec![lookup_table(&*store, t)?],
        None => store.tables()?,
    };
    for table in tables {
        // Rows stream into the sample; the first error stops the scan.
        let mut failed = None;
        let rows = store.scan(&table)?.map_while(|r| match r {
            Ok((_, row)) => Some(row),
            Err(e) => {
                failed = Some(e);
                None
            }
        });
        let stats = crate::plan::stats::collect(rows, table.columns.len());
        if let Some(e) = failed {
            return Err(e);
        }
        store.set_table_stats(&table, stats)?;
    }
    Ok(Output::Done("ANALYZE"))
}

/// The values of a primary-key lookup's key: constants, or a generic
/// plan's parameters, read from the statement's context.
pub(crate) fn pk_key(key: &[Expr], env: &Env<'_>) -> Result<Vec<Value>> {
    key.iter().map(|e| eval(e, &[], env)).collect()
}

/// Runs a plan to the end and returns its rows.
pub fn run(plan: &Plan, store: &dyn Store, ctx: &ExecContext) -> Result<Vec<Row>> {
    let env = Env::new(store, ctx);
    let mut op = build(plan, &env)?;
    let mut rows = Vec::new();
    while let Some(row) = op.next()? {
        rows.push(row);
    }
    Ok(rows)
}

/// EXPLAIN [ANALYZE]: the plan's lines (see [`crate::plan::explain`]).
/// With ANALYZE the statement runs (an INSERT, UPDATE or DELETE writes, as
/// in PostgreSQL) with every operator counted, and the lines end with the
/// time spent planning and running.
fn explain(
    store: &mut dyn Store,
    stmt: &Statement,
    analyze: bool,
    ctx: &ExecContext,
) -> Result<Output> {
    let planning = Instant::now();
    let profile = analyze.then(Profile::new);
    let lookup = |p: &Plan| profile.as_ref().and_then(|prof| prof.actual(p));
    let actuals: Option<Actuals<'_>> = profile.as_ref().map(|_| &lookup as Actuals<'_>);
    let mut timings = None;
    let mut lines = Vec::new();
    match stmt {
        Statement::Query(q) => {
            let plan = optimize(
                Binder::new(&*store)
                    .with_params(&ctx.params)
                    .bind_query(q)?
                    .plan,
                &Estimator::new(&*store),
            );
            let planned = planning.elapsed();
            if let Some(p) = &profile {
                let started = Instant::now();
                let env = Env::new(&*store, ctx).with_profile(p.clone());
                drain(build(&plan, &env)?)?;
                timings = Some((planned, started.elapsed()));
            }
            lines = explain_plan(&plan, &Estimator::new(&*store), actuals);
        }
        Statement::Insert(_) | Statement::Update(_) | Statement::Delete(_) => {
            // `positions`: the columns an INSERT fills.
            let (verb, table, positions, plan) = match stmt {
                Statement::Insert(i) => {
                    let (table, positions, plan) = insert_plan(&*store, i)?;
                    ("Insert", table, positions, plan)
                }
                Statement::Update(u) => {
                    let table = lookup_table(&*store, &u.table)?;
                    let plan = target_plan(&*store, &table, u.selection.as_ref(), ctx)?;
                    ("Update", table, Vec::new(), Some(plan))
                }
                Statement::Delete(d) => {
                    let table = lookup_table(&*store, &d.table)?;
                    let plan = target_plan(&*store, &table, d.selection.as_ref(), ctx)?;
                    ("Delete", table, Vec::new(), Some(plan))
                }
                other => {
                    return Err(Error::Invalid(format!(
                        "{} is not a write",
                        statement_tag(other)
                    )));
                }
            };
            let planned = planning.elapsed();
            let mut affected = None;
            if let Some(p) = &profile {
                let started = Instant::now();
                let output = match stmt {
                    Statement::Insert(i) => {
                        insert_rows(store, i, &table, &positions, plan.as_ref(), ctx, Some(p))?
                    }
                    Statement::Update(u) => update_rows(
                        store,
                        u,
                        &table,
                        plan.as_ref().unwrap_or(&EMPTY),
                        ctx,
                        Some(p),
                    )?,
                    _ => delete_rows(store, &table, plan.as_ref().unwrap_or(&EMPTY), ctx, Some(p))?,
                };
                let elapsed = started.elapsed();
                if let Output::Affected { count, .. } = output {
                    affected = Some(Actual {
                        loops: 1,
                        rows: count,
                        startup: elapsed,
                        total: elapsed,
                    });
                }
                timings = Some((planned, elapsed));
            }
            let est = Estimator::new(&*store);
            // Like PostgreSQL's ModifyTable node: the cost of its input,
            // no rows out (there is no RETURNING); ANALYZE reports the rows
            // written.
            let mut figures = plan
                .as_ref()
                .map(|p| est.estimate(p))
                .unwrap_or(est.estimate(&EMPTY));
            figures.rows = 0.0;
            let mut line = format!("{verb} on {}{}", table.name, format_estimate(&figures, 0));
            if analyze {
                line.push_str(&format_actual(affected));
            }
            lines.push(line);
            if let Some(plan) = &plan {
                lines.extend(explain_input(plan, &est, actuals));
            }
        }
        other => lines.push(format!("{} (no plan)", statement_tag(other))),
    }
    if let Some((planned, executed)) = timings {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        lines.push(format!("Planning Time: {:.3} ms", ms(planned)));
        lines.push(format!("Execution Time: {:.3} ms", ms(executed)));
    }
    Ok(Output::Rows(Rows {
        columns: Arc::new([ResultColumn {
            name: "QUERY PLAN".into(),
            ty: Some(DataType::Text),
        }]),
        rows: lines.into_iter().map(|l| vec![Value::text(&l)]).collect(),
    }))
}

/// The plan of nothing: no rows.
static EMPTY: Plan = Plan::Values {
    rows: Vec::new(),
    width: 0,
};

/// Pulls every row of an operator, dropping them.
fn drain(mut op: operators::BoxedOperator<'_>) -> Result<()> {
    while op.next()?.is_some() {}
    Ok(())
}

fn statement_tag(stmt: &Statement) -> &'static str {
    match stmt {
        Statement::CreateTable(_) => "CREATE TABLE",
        Statement::CreateIndex(_) => "CREATE INDEX",
        Statement::CreateView(_) => "CREATE VIEW",
        Statement::Drop(_) => "DROP",
        Statement::Analyze { .. } => "ANALYZE",
        Statement::Reindex { .. } => "REINDEX",
        Statement::Begin { .. } => "BEGIN",
        Statement::Commit => "COMMIT",
        Statement::Rollback => "ROLLBACK",
        Statement::Explain { .. } => "EXPLAIN",
        _ => "STATEMENT",
    }
}

// ---- DML ----

/// The plan that finds the rows an UPDATE or DELETE targets (with the
/// parameters of `ctx` written in, so that `WHERE id = $1` is a lookup).
fn target_plan(
    store: &dyn Store,
    table: &Arc<Table>,
    selection: Option<&ast::Expr>,
    ctx: &ExecContext,
) -> Result<Plan> {
    let scan = Plan::Scan {
        table: table.clone(),
        columns: None,
    };
    let plan = match selection {
        Some(w) => Plan::Filter {
            input: Box::new(scan),
            predicate: Binder::new(store)
                .with_params(&ctx.params)
                .bind_table_expr(table, w)?,
        },
        None => scan,
    };
    Ok(optimize_target(plan, &Estimator::new(store)))
}

/// The rows (with their keys) that a target plan selects. Under EXPLAIN
/// ANALYZE each node counts one loop that returns all its rows at once.
fn collect_targets(plan: &Plan, env: &Env<'_>) -> Result<Vec<(RowKey, Row)>> {
    let started = Instant::now();
    let rows = collect_node(plan, env)?;
    if let Some(p) = env.profile() {
        let elapsed = started.elapsed();
        p.record(plan, rows.len() as u64, elapsed, elapsed);
    }
    Ok(rows)
}

fn collect_node(plan: &Plan, env: &Env<'_>) -> Result<Vec<(RowKey, Row)>> {
    Ok(match plan {
        Plan::Scan { table, .. } => env.store.scan(table)?.collect::<Result<Vec<_>>>()?,
        Plan::IndexScan {
            table,
            index,
            range,
            reverse,
        } => {
            let rows = if *reverse {
                env.store.index_scan_backward(table, index, range)?
            } else {
                env.store.index_scan(table, index, range)?
            };
            rows.collect::<Result<Vec<_>>>()?
        }
        Plan::PkLookup { table, key } => env
            .store
            .get_by_pk(table, &pk_key(key, env)?)?
            .into_iter()
            .collect(),
        Plan::Values { rows, .. } if rows.is_empty() => Vec::new(),
        Plan::Filter { input, predicate } => {
            let mut out = Vec::new();
            for (k, r) in collect_targets(input, env)? {
                if eval_predicate(predicate, &r, env)? {
                    out.push((k, r));
                }
            }
            out
        }
        other => {
            return Err(Error::Invalid(format!(
                "unexpected plan for a DML target: {}",
                other.explain().join("; ")
            )));
        }
    })
}

fn insert(store: &mut dyn Store, ins: &ast::Insert, ctx: &ExecContext) -> Result<Output> {
    let (table, positions, plan) = insert_plan(&*store, ins)?;
    insert_rows(store, ins, &table, &positions, plan.as_ref(), ctx, None)
}

/// An INSERT's table, the positions of the columns it fills, and the plan
/// of its source rows (`None`: one row of defaults).
fn insert_plan(
    store: &dyn Store,
    ins: &ast::Insert,
) -> Result<(Arc<Table>, Vec<usize>, Option<Plan>)> {
    let table = lookup_table(store, &ins.table)?;
    let positions: Vec<usize> = match &ins.columns {
        Some(cols) => {
            let mut seen = HashSet::new();
            let mut out = Vec::new();
            for c in cols {
                let i = table
                    .column_index(&c.value)
                    .ok_or_else(|| Error::Undefined {
                        kind: "column",
                        name: format!("{}.{}", table.name, c.value),
                    })?;
                if !seen.insert(i) {
                    return Err(Error::Duplicate {
                        kind: "column",
                        name: c.value.clone(),
                        what: "is named twice",
                    });
                }
                out.push(i);
            }
            out
        }
        None => (0..table.columns.len()).collect(),
    };
    let plan = match &ins.source {
        Some(q) => {
            let bound = Binder::new(store).bind_query(q)?;
            if bound.columns.len() != positions.len() {
                return Err(Error::Invalid(format!(
                    "table {} has {} columns but {} values were supplied",
                    table.name,
                    positions.len(),
                    bound.columns.len()
                )));
            }
            Some(optimize(bound.plan, &Estimator::new(store)))
        }
        None => None,
    };
    Ok((table, positions, plan))
}

/// Runs an INSERT planned by [`insert_plan`].
fn insert_rows(
    store: &mut dyn Store,
    ins: &ast::Insert,
    table: &Arc<Table>,
    positions: &[usize],
    plan: Option<&Plan>,
    ctx: &ExecContext,
    profile: Option<&Rc<Profile>>,
) -> Result<Output> {
    if profile.is_none()
        && let Some(row) = single_values_row(&*store, table, positions, plan, ctx)?
    {
        if ins.replace {
            delete_conflicts(store, table, &row)?;
        }
        store.insert(table, row)?;
        return Ok(Output::Affected {
            verb: "INSERT",
            count: 1,
        });
    }
    // The source rows are computed in full before any is written, so that
    // INSERT INTO t SELECT ... FROM t reads only the old rows.
    let rows = match plan {
        Some(plan) => {
            let mut env = Env::new(&*store, ctx);
            if let Some(p) = profile {
                env = env.with_profile(p.clone());
            }
            let mut op = build(plan, &env)?;
            let mut rows = Vec::new();
            while let Some(row) = op.next()? {
                rows.push(row);
            }
            rows
        }
        None => vec![Vec::new()],
    };
    // `INSERT INTO t VALUES (...)` with a value for every column, in
    // order: each source row becomes the stored row in place, without a
    // row of defaults built and overwritten.
    let every_column_in_order = positions.len() == table.columns.len()
        && positions.iter().enumerate().all(|(i, &p)| i == p);
    let mut count = 0;
    for values in rows {
        let row: Row = if every_column_in_order && values.len() == positions.len() {
            values
                .into_iter()
                .zip(&table.columns)
                .map(|(v, c)| v.apply_affinity(c.ty))
                .collect()
        } else {
            let mut row: Row = table.columns.iter().map(|c| c.default.clone()).collect();
            for (pos, v) in positions.iter().zip(values) {
                row[*pos] = v.apply_affinity(table.columns[*pos].ty);
            }
            row
        };
        if ins.replace {
            delete_conflicts(store, table, &row)?;
        }
        store.insert(table, row)?;
        count += 1;
    }
    Ok(Output::Affected {
        verb: "INSERT",
        count,
    })
}

/// The stored row of `INSERT INTO t VALUES (...)` with one row that has a
/// value for every column, in order (a prepared INSERT's usual shape),
/// evaluated straight into the row with each column's affinity; `None`
/// for any other source. The same values as the operator path of
/// [`insert_rows`] (a `Values` operator, then the affinity applied), with
/// no operator, no vector of source rows and no second row built. One row
/// only: every row of a source is computed before any is written (a
/// subquery in a second row must not see the first), which for a single
/// row is what evaluating it here does.
fn single_values_row(
    store: &dyn Store,
    table: &Table,
    positions: &[usize],
    plan: Option<&Plan>,
    ctx: &ExecContext,
) -> Result<Option<Row>> {
    let Some(Plan::Values { rows, .. }) = plan else {
        return Ok(None);
    };
    let [exprs] = rows.as_slice() else {
        return Ok(None);
    };
    let every_column_in_order = positions.len() == table.columns.len()
        && exprs.len() == positions.len()
        && positions.iter().enumerate().all(|(i, &p)| i == p);
    if !every_column_in_order {
        return Ok(None);
    }
    // A literal or a parameter (a prepared INSERT's every value) is
    // evaluated without an `Env`, whose subquery cache is an allocation
    // per statement; any other expression makes the one `Env` they share.
    let mut env = None;
    exprs
        .iter()
        .zip(&table.columns)
        .map(|(e, c)| {
            let value = match e {
                Expr::Literal(v) => v.clone(),
                Expr::Param(i) => eval::param(ctx, *i)?,
                _ => eval(e, &[], env.get_or_insert_with(|| Env::new(store, ctx)))?,
            };
            Ok(value.apply_affinity(c.ty))
        })
        .collect::<Result<Row>>()
        .map(Some)
}

/// INSERT OR REPLACE: deletes the rows that `row` would collide with on
/// the primary key or a UNIQUE index.
fn delete_conflicts(store: &mut dyn Store, table: &Arc<Table>, row: &Row) -> Result<()> {
    let mut victims: Vec<(RowKey, Row)> = Vec::new();
    if !table.primary_key.is_empty() {
        let pk: Vec<Value> = table.primary_key.iter().map(|i| row[*i].clone()).collect();
        if !pk.iter().any(Value::is_null) {
            victims.extend(store.get_by_pk(table, &pk)?);
        }
    }
    for index in table.indexes.iter().filter(|i| i.unique) {
        let key: Vec<Value> = index.columns.iter().map(|i| row[*i].clone()).collect();
        if key.iter().any(Value::is_null) {
            continue;
        }
        let range = IndexRange {
            start: Bound::Included(key.clone()),
            end: Bound::Included(key),
        };
        for hit in store.index_scan(table, index, &range)? {
            victims.push(hit?);
        }
    }
    let mut done = HashSet::new();
    for (k, r) in victims {
        if done.insert(k.clone()) {
            store.delete(table, &k, &r)?;
        }
    }
    Ok(())
}

fn update(store: &mut dyn Store, upd: &ast::Update, ctx: &ExecContext) -> Result<Output> {
    let table = lookup_table(&*store, &upd.table)?;
    let plan = target_plan(&*store, &table, upd.selection.as_ref(), ctx)?;
    update_rows(store, upd, &table, &plan, ctx, None)
}

/// Runs an UPDATE whose target rows `plan` finds.
fn update_rows(
    store: &mut dyn Store,
    upd: &ast::Update,
    table: &Arc<Table>,
    plan: &Plan,
    ctx: &ExecContext,
    profile: Option<&Rc<Profile>>,
) -> Result<Output> {
    let assignments = bind_assignments(&*store, upd, table)?;
    apply_update(store, table, &assignments, plan, ctx, profile)
}

/// An UPDATE's `SET` list, bound: `(column, value expression)`, the last
/// assignment of a column winning.
fn bind_assignments(
    store: &dyn Store,
    upd: &ast::Update,
    table: &Arc<Table>,
) -> Result<Vec<(usize, Expr)>> {
    let mut assignments: Vec<(usize, Expr)> = Vec::new();
    for (col, e) in &upd.assignments {
        let i = table
            .column_index(&col.value)
            .ok_or_else(|| Error::Undefined {
                kind: "column",
                name: format!("{}.{}", table.name, col.value),
            })?;
        let mut bound = Binder::new(store).bind_table_expr(table, e)?;
        crate::plan::rules::fold_expr(&mut bound);
        // A later assignment to the same column wins, as in SQLite.
        assignments.retain(|(j, _)| *j != i);
        assignments.push((i, bound));
    }
    Ok(assignments)
}

/// Runs an UPDATE whose rows `plan` selects and whose `SET` list is
/// bound.
fn apply_update(
    store: &mut dyn Store,
    table: &Arc<Table>,
    assignments: &[(usize, Expr)],
    plan: &Plan,
    ctx: &ExecContext,
    profile: Option<&Rc<Profile>>,
) -> Result<Output> {
    // Phase 1: find the rows and compute their new values (reading only).
    let changes = {
        let mut env = Env::new(&*store, ctx);
        if let Some(p) = profile {
            env = env.with_profile(p.clone());
        }
        let mut changes = Vec::new();
        for (key, old) in collect_targets(plan, &env)? {
            let mut new = old.clone();
            for (i, e) in assignments {
                new[*i] = eval(e, &old, &env)?.apply_affinity(table.columns[*i].ty);
            }
            changes.push((key, old, new));
        }
        changes
    };
    // Phase 2: write.
    let count = changes.len() as u64;
    for (key, old, new) in changes {
        store.update(table, &key, &old, new)?;
    }
    Ok(Output::Affected {
        verb: "UPDATE",
        count,
    })
}

fn delete(store: &mut dyn Store, del: &ast::Delete, ctx: &ExecContext) -> Result<Output> {
    let table = lookup_table(&*store, &del.table)?;
    let plan = target_plan(&*store, &table, del.selection.as_ref(), ctx)?;
    delete_rows(store, &table, &plan, ctx, None)
}

/// Runs a DELETE whose target rows `plan` finds.
fn delete_rows(
    store: &mut dyn Store,
    table: &Arc<Table>,
    plan: &Plan,
    ctx: &ExecContext,
    profile: Option<&Rc<Profile>>,
) -> Result<Output> {
    let mut env = Env::new(&*store, ctx);
    if let Some(p) = profile {
        env = env.with_profile(p.clone());
    }
    let targets = collect_targets(plan, &env)?;
    let count = targets.len() as u64;
    for (key, row) in targets {
        store.delete(table, &key, &row)?;
    }
    Ok(Output::Affected {
        verb: "DELETE",
        count,
    })
}

// ---- DDL ----

fn exists(store: &dyn Store, name: &str) -> Result<bool> {
    Ok(store.table(name)?.is_some() || store.view(name)?.is_some())
}

fn create_table(store: &mut dyn Store, c: &ast::CreateTable) -> Result<Output> {
    let name = c.name.normalized();
    if exists(&*store, &name)? {
        if c.if_not_exists {
            return Ok(Output::Done("CREATE TABLE"));
        }
        return Err(Error::Duplicate {
            kind: "table",
            name,
            what: "already exists",
        });
    }
    let mut columns = Vec::new();
    let mut primary_key = Vec::new();
    let mut unique_sets: Vec<Vec<usize>> = Vec::new();
    for (i, def) in c.columns.iter().enumerate() {
        let col_name = def.name.normalized();
        if columns.iter().any(|c: &Column| c.name == col_name) {
            return Err(Error::Duplicate {
                kind: "column",
                name: col_name,
                what: "already exists",
            });
        }
        let default = match &def.default {
            Some(e) => {
                let mut b = Binder::new(&*store).bind_constant(e)?;
                crate::plan::rules::fold_expr(&mut b);
                eval::eval_constant(&b)?.apply_affinity(def.ty)
            }
            None => Value::Null,
        };
        if def.primary_key {
            primary_key.push(i);
        }
        if def.unique {
            unique_sets.push(vec![i]);
        }
        columns.push(Column {
            name: col_name,
            ty: def.ty,
            nullable: !(def.not_null || def.primary_key),
            default,
        });
    }
    let position = |id: &ast::Ident| -> Result<usize> {
        columns
            .iter()
            .position(|c| id.matches(&c.name))
            .ok_or_else(|| Error::Undefined {
                kind: "column",
                name: id.value.clone(),
            })
    };
    for constraint in &c.constraints {
        match constraint {
            ast::TableConstraint::PrimaryKey(cols) => {
                if !primary_key.is_empty() {
                    return Err(Error::Invalid(format!(
                        "table {name} has more than one primary key"
                    )));
                }
                primary_key = cols.iter().map(position).collect::<Result<_>>()?;
            }
            ast::TableConstraint::Unique(cols) => {
                unique_sets.push(cols.iter().map(position).collect::<Result<_>>()?);
            }
        }
    }
    if primary_key.len() > 1 && c.columns.iter().filter(|d| d.primary_key).count() > 1 {
        return Err(Error::Invalid(format!(
            "table {name} has more than one primary key"
        )));
    }
    for i in &primary_key {
        columns[*i].nullable = false;
    }
    let indexes = unique_sets
        .into_iter()
        .enumerate()
        .map(|(n, cols)| Index {
            name: format!("{name}_autoindex_{}", n + 1),
            id: 0,
            table: name.clone(),
            columns: cols,
            unique: true,
        })
        .collect();
    store.create_table(Table {
        name,
        id: 0,
        columns,
        primary_key,
        indexes,
    })?;
    Ok(Output::Done("CREATE TABLE"))
}

fn find_index(store: &dyn Store, name: &str) -> Result<Option<Index>> {
    for t in store.tables()? {
        if let Some(i) = t.indexes.iter().find(|i| i.name == name) {
            return Ok(Some(i.clone()));
        }
    }
    Ok(None)
}

fn create_index(store: &mut dyn Store, c: &ast::CreateIndex) -> Result<Output> {
    let name = c.name.normalized();
    if find_index(&*store, &name)?.is_some() {
        if c.if_not_exists {
            return Ok(Output::Done("CREATE INDEX"));
        }
        return Err(Error::Duplicate {
            kind: "index",
            name,
            what: "already exists",
        });
    }
    let table = lookup_table(&*store, &c.table)?;
    let columns = c
        .columns
        .iter()
        .map(|(col, _desc)| {
            table
                .column_index(&col.value)
                .ok_or_else(|| Error::Undefined {
                    kind: "column",
                    name: format!("{}.{}", table.name, col.value),
                })
        })
        .collect::<Result<Vec<_>>>()?;
    store.create_index(Index {
        name,
        id: 0,
        table: table.name.clone(),
        columns,
        unique: c.unique,
    })?;
    Ok(Output::Done("CREATE INDEX"))
}

fn create_view(store: &mut dyn Store, c: &ast::CreateView) -> Result<Output> {
    let name = c.name.normalized();
    if exists(&*store, &name)? {
        if c.if_not_exists {
            return Ok(Output::Done("CREATE VIEW"));
        }
        return Err(Error::Duplicate {
            kind: "view",
            name,
            what: "already exists",
        });
    }
    // Bind once now, so that a view over a missing table fails here.
    let bound = Binder::new(&*store).bind_query(&c.query)?;
    let columns = match &c.columns {
        Some(cols) => {
            if cols.len() != bound.columns.len() {
                return Err(Error::Invalid(format!(
                    "expected {} columns for {name} but got {}",
                    bound.columns.len(),
                    cols.len()
                )));
            }
            Some(cols.iter().map(|c| c.normalized()).collect())
        }
        None => None,
    };
    store.create_view(View {
        name,
        columns,
        sql: c.sql.clone(),
    })?;
    Ok(Output::Done("CREATE VIEW"))
}

fn drop_object(store: &mut dyn Store, d: &ast::Drop) -> Result<Output> {
    let name = d.name.normalized();
    let (found, kind, tag) = match d.kind {
        ObjectKind::Table => (store.table(&name)?.is_some(), "table", "DROP TABLE"),
        ObjectKind::View => (store.view(&name)?.is_some(), "view", "DROP VIEW"),
        ObjectKind::Index => (find_index(&*store, &name)?.is_some(), "index", "DROP INDEX"),
    };
    if !found {
        if d.if_exists {
            return Ok(Output::Done(tag));
        }
        return Err(Error::Undefined {
            kind,
            name: d.name.value.clone(),
        });
    }
    match d.kind {
        ObjectKind::Table => store.drop_table(&name)?,
        ObjectKind::View => store.drop_view(&name)?,
        ObjectKind::Index => store.drop_index(&name)?,
    }
    Ok(Output::Done(tag))
}

/// `REINDEX [name]`: rebuilds index entries from the table's rows, for one
/// index, every index of one table, or every index. Dropping the index and
/// creating it again with the same definition writes every entry afresh
/// (under a new id, so no old entry survives), in the statement's
/// transaction.
fn reindex(store: &mut dyn Store, name: Option<&ast::Ident>) -> Result<Output> {
    let indexes: Vec<Index> = match name {
        None => store
            .tables()?
            .iter()
            .flat_map(|t| t.indexes.clone())
            .collect(),
        Some(name) => {
            let key = name.normalized();
            if let Some(table) = store.table(&key)? {
                table.indexes.clone()
            } else if let Some(index) = find_index(&*store, &key)? {
                vec![index]
            } else {
                return Err(Error::Undefined {
                    kind: "index",
                    name: name.value.clone(),
                });
            }
        }
    };
    for index in indexes {
        store.drop_index(&index.name)?;
        store.create_index(index)?;
    }
    Ok(Output::Done("REINDEX"))
}

#[cfg(test)]
mod tests;
