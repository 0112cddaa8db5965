//! The physical operators: pull-based iterators over rows.
//!
//! Every operator implements [`Operator`]: `next()` returns the next row,
//! `None` at the end, or an error. A parent pulls rows from its children
//! one at a time (the "Volcano" model), so a pipeline of scan, filter and
//! projection holds one row at a time, and LIMIT stops the whole pipeline
//! early. Some operators must see all their input before they return a
//! row (sort, aggregation, the build side of a hash join, set operations);
//! they *materialize* it and charge its size to a [`MemoryBudget`]: going
//! over [`ExecContext::memory_budget`](crate::exec::ExecContext) fails the
//! statement with [`Error::ResourceLimit`] instead of exhausting memory
//! (each materializing operator has the whole budget, as PostgreSQL gives
//! each sort its `work_mem`).
//!
//! # Per-row costs
//!
//! An analytical query spends its time in the few lines each operator runs
//! per input row, so those lines avoid the heap: a hash join's probe
//! looks the key up where it stands in the row (keys of integers as
//! `i64`s, module `exec::join_table`) and remembers *where* the matching
//! right rows are instead of copying them (see `HashJoin`); the hash
//! aggregation builds the key of each row in one buffer reused for every
//! row (a key is copied only when a new entry goes into the table). Comparisons borrow their
//! operands from the row ([`mod@crate::exec::eval`]). A filter over a
//! table scan is one operator (`FilteredScan`): the store decodes each row
//! into one buffer ([`crate::store::RowCursor`]), the compiled predicate
//! ([`crate::exec::predicate`]) tests it there, and only a row that passes
//! takes an allocation of its own. An aggregation and a projection read
//! their input the same way when it is a scan, a filter over one or a
//! projection over those (a cursor into one reused row, no `Vec` per
//! input row: `cursor`), evaluate their
//! expressions compiled ([`crate::exec::scalar`]: columns and constants
//! borrowed, arithmetic without walking the tree), and an aggregation
//! looks a row's group up by hashing and comparing the key columns where
//! they stand in the row (`GroupTable`).

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::time::Instant;

use crate::ast::{JoinKind, SetOperator};
use crate::catalog::Table;
use crate::error::{Error, Result};
use crate::exec::eval::{Env, eval, eval_predicate};
use crate::exec::join_table::{JoinTable, key_column};
use crate::exec::predicate::Predicate;
use crate::exec::profile::Instrumented;
use crate::exec::scalar::Scalar;
use crate::plan::{AggCall, AggFunc, Expr, Plan, SortKey};
use crate::store::{RowCursor, RowCursorBox, RowIter, RowsIter};
use crate::value::{GroupKey, Row, Value, hash_group_value};

/// A pull-based operator.
pub trait Operator {
    /// The next row, or `None` when there are no more.
    fn next(&mut self) -> Result<Option<Row>>;
}

/// An operator in a box, borrowing the plan and the store for `'a`.
pub type BoxedOperator<'a> = Box<dyn Operator + 'a>;

/// Counts the bytes an operator holds against the statement's budget.
#[derive(Debug)]
pub struct MemoryBudget {
    used: usize,
    limit: usize,
    what: &'static str,
}

impl MemoryBudget {
    fn new(env: &Env<'_>, what: &'static str) -> Self {
        MemoryBudget {
            used: 0,
            limit: env.ctx.memory_budget,
            what,
        }
    }

    /// Adds `row`'s size; fails once the total passes the budget.
    fn charge(&mut self, row: &[Value]) -> Result<()> {
        self.used += 24 + row.iter().map(Value::size_estimate).sum::<usize>();
        if self.used > self.limit {
            return Err(Error::ResourceLimit(format!(
                "{} needs more than {} bytes",
                self.what, self.limit
            )));
        }
        Ok(())
    }
}

/// Builds the operator tree for `plan`. Under EXPLAIN ANALYZE (the
/// environment carries a profile) every operator comes wrapped in one
/// that counts its rows, loops and time ([`super::profile`]).
pub fn build<'a>(plan: &'a Plan, env: &Env<'a>) -> Result<BoxedOperator<'a>> {
    let Some(profile) = env.profile() else {
        return build_node(plan, env);
    };
    let started = Instant::now();
    let op = build_node(plan, env)?;
    Ok(Box::new(Instrumented::new(
        op,
        plan,
        profile.clone(),
        started,
    )))
}

/// Builds the operator of `plan` itself (its inputs through [`build`]).
fn build_node<'a>(plan: &'a Plan, env: &Env<'a>) -> Result<BoxedOperator<'a>> {
    Ok(match plan {
        Plan::Scan { table, columns } => Box::new(TableRows {
            rows: env
                .store
                .scan_columns(table, columns.as_deref().unwrap_or_default())?,
        }),
        Plan::IndexScan {
            table,
            index,
            range,
            reverse,
        } => Box::new(StoreRows {
            rows: if *reverse {
                env.store.index_scan_backward(table, index, range)?
            } else {
                env.store.index_scan(table, index, range)?
            },
        }),
        Plan::IndexOnlyScan {
            table,
            index,
            range,
            reverse,
        } => Box::new(StoreRows {
            rows: env.store.index_only_scan(table, index, range, *reverse)?,
        }),
        Plan::ScanBackward { table } => Box::new(StoreRows {
            rows: env.store.scan_backward(table)?,
        }),
        Plan::PkLookup { table, key } => {
            let key = super::pk_key(key, env)?;
            let row = env.store.get_by_pk(table, &key)?.map(|(_, r)| r);
            Box::new(Materialized {
                rows: row.into_iter().collect::<Vec<_>>().into_iter(),
            })
        }
        Plan::Values { rows, .. } => Box::new(ValuesOp {
            rows,
            pos: 0,
            env: env.clone(),
        }),
        // A filter right over a table scan tests each row in the scan's
        // buffer (`FilteredScan`). Not under EXPLAIN ANALYZE, which counts
        // the scan's rows and the filter's apart.
        Plan::Filter { input, predicate } => match &**input {
            Plan::Scan { table, columns } if env.profile().is_none() => Box::new(FilteredScan {
                rows: FilteredCursor::new(table, columns.as_deref(), predicate, env)?,
                row: Vec::with_capacity(table.columns.len()),
            }),
            _ => Box::new(FilterOp {
                input: build(input, env)?,
                predicate: Predicate::compile(predicate, env),
                env: env.clone(),
            }),
        },
        Plan::Project { input, exprs } => Box::new(ProjectOp {
            rows: ProjectCursor::new(input, exprs, env)?,
        }),
        Plan::Join {
            left,
            right,
            kind,
            on,
        } => Box::new(NestedLoopJoin {
            left: build(left, env)?,
            right: Some(build(right, env)?),
            right_rows: Vec::new(),
            right_width: right.width(),
            kind: *kind,
            on: on.as_ref(),
            env: env.clone(),
            current: None,
            pos: 0,
            matched: false,
            budget: MemoryBudget::new(env, "a nested-loop join"),
        }),
        Plan::HashJoin {
            left,
            right,
            kind,
            left_keys,
            right_keys,
            residual,
        } => {
            let probe_rows = ProbeRows::build(left, env)?;
            let key_columns = probe_rows.key_columns(left_keys);
            Box::new(HashJoin {
                left: probe_rows,
                right: Some(build(right, env)?),
                right_keys,
                left_keys,
                key_columns,
                table: JoinTable::new(left_keys.len()),
                key: GroupKey(Vec::with_capacity(left_keys.len())),
                right_width: right.width(),
                kind: *kind,
                residual: residual.as_ref(),
                env: env.clone(),
                read: Vec::with_capacity(left.width()),
                left_row: Vec::with_capacity(left.width()),
                has_left: false,
                bucket: None,
                pos: 0,
                matched: false,
                budget: MemoryBudget::new(env, "a hash join"),
            })
        }
        Plan::MergeJoin {
            left,
            right,
            kind,
            left_keys,
            right_keys,
            residual,
        } => Box::new(MergeJoinOp {
            left: build(left, env)?,
            right: build(right, env)?,
            left_keys,
            right_keys,
            right_width: right.width(),
            kind: *kind,
            residual: residual.as_ref(),
            env: env.clone(),
            last_left: None,
            last_right: None,
            lookahead: None,
            right_done: false,
            group_key: None,
            group: Vec::new(),
            current: None,
            pos: 0,
            matched: false,
            budget: MemoryBudget::new(env, "a merge join"),
        }),
        Plan::IndexJoin {
            left,
            table,
            index,
            left_key,
            right_filter,
            kind,
            residual,
        } => Box::new(IndexJoinOp {
            left: build(left, env)?,
            table,
            index: index.as_ref(),
            left_key,
            right_filter: right_filter.as_ref(),
            kind: *kind,
            residual: residual.as_ref(),
            env: env.clone(),
            current: None,
            matches: Vec::new(),
            pos: 0,
            matched: false,
        }),
        Plan::SemiJoin {
            left,
            right,
            anti,
            left_keys,
            right_keys,
            residual,
            null_aware,
        } => Box::new(SemiJoinOp {
            left: build(left, env)?,
            right: Some(build(right, env)?),
            anti: *anti,
            left_keys,
            right_keys,
            residual: residual.as_ref(),
            null_aware: *null_aware,
            table: HashMap::new(),
            right_rows: 0,
            right_null_key: false,
            env: env.clone(),
            budget: MemoryBudget::new(env, "a semi-join"),
        }),
        Plan::Aggregate {
            input,
            group_by,
            aggs,
        } => {
            let rows = aggregate(cursor(input, env)?, group_by, aggs, env)?;
            Box::new(Materialized {
                rows: rows.into_iter(),
            })
        }
        Plan::Sort { input, keys } => {
            let rows = sort(build(input, env)?, keys, None, env)?;
            Box::new(Materialized {
                rows: rows.into_iter(),
            })
        }
        Plan::TopN {
            input,
            keys,
            limit,
            offset,
        } => {
            let keep = limit.saturating_add(*offset);
            let rows = sort(build(input, env)?, keys, Some(keep), env)?;
            Box::new(Materialized {
                rows: rows
                    .into_iter()
                    .skip(usize::try_from(*offset).unwrap_or(usize::MAX))
                    .collect::<Vec<_>>()
                    .into_iter(),
            })
        }
        Plan::Limit {
            input,
            limit,
            offset,
        } => Box::new(LimitOp {
            input: build(input, env)?,
            remaining: *limit,
            skip: *offset,
        }),
        Plan::Distinct { input, key_width } => Box::new(DistinctOp {
            input: build(input, env)?,
            key_width: *key_width,
            seen: HashSet::new(),
            budget: MemoryBudget::new(env, "DISTINCT"),
        }),
        Plan::SetOp {
            op,
            all,
            left,
            right,
        } => {
            let rows = set_op(*op, *all, build(left, env)?, build(right, env)?, env)?;
            Box::new(Materialized {
                rows: rows.into_iter(),
            })
        }
    })
}

/// Rows from the store (table scan, index scan).
struct StoreRows<'a> {
    rows: RowIter<'a>,
}

impl Operator for StoreRows<'_> {
    fn next(&mut self) -> Result<Option<Row>> {
        match self.rows.next() {
            Some(Ok((_, row))) => Ok(Some(row)),
            Some(Err(e)) => Err(e),
            None => Ok(None),
        }
    }
}

/// Rows of a table scan, without their keys.
struct TableRows<'a> {
    rows: RowsIter<'a>,
}

impl Operator for TableRows<'_> {
    fn next(&mut self) -> Result<Option<Row>> {
        self.rows.next().transpose()
    }
}

/// Rows already computed.
struct Materialized {
    rows: std::vec::IntoIter<Row>,
}

impl Operator for Materialized {
    fn next(&mut self) -> Result<Option<Row>> {
        Ok(self.rows.next())
    }
}

/// VALUES: each row's expressions evaluated when the row is pulled.
struct ValuesOp<'a> {
    rows: &'a [Vec<Expr>],
    pos: usize,
    env: Env<'a>,
}

impl Operator for ValuesOp<'_> {
    fn next(&mut self) -> Result<Option<Row>> {
        let Some(exprs) = self.rows.get(self.pos) else {
            return Ok(None);
        };
        self.pos += 1;
        exprs
            .iter()
            .map(|e| eval(e, &[], &self.env))
            .collect::<Result<Row>>()
            .map(Some)
    }
}

/// Passes the rows for which the predicate is true.
struct FilterOp<'a> {
    input: BoxedOperator<'a>,
    predicate: Predicate<'a>,
    env: Env<'a>,
}

impl Operator for FilterOp<'_> {
    fn next(&mut self) -> Result<Option<Row>> {
        while let Some(row) = self.input.next()? {
            if self.predicate.holds(&row, &self.env)? {
                return Ok(Some(row));
            }
        }
        Ok(None)
    }
}

/// A table scan and the filter above it as one cursor: each row is
/// decoded into the caller's buffer and tested there. An aggregation reads
/// its input through it without a row of its own per input row; the
/// operator `FilteredScan` hands out the rows that pass.
struct FilteredCursor<'a> {
    rows: RowCursorBox<'a>,
    predicate: Predicate<'a>,
    env: Env<'a>,
}

impl<'a> FilteredCursor<'a> {
    /// The scan of `table` (the `columns` it reads) filtered by
    /// `predicate`; the scan is given the predicate's integer bounds, so
    /// that it drops most rejected rows before they reach the filter.
    fn new(
        table: &Table,
        columns: Option<&[bool]>,
        predicate: &'a Expr,
        env: &Env<'a>,
    ) -> Result<Self> {
        let predicate = Predicate::compile(predicate, env);
        Ok(FilteredCursor {
            rows: env.store.scan_cursor(
                table,
                columns.unwrap_or_default(),
                &predicate.integer_bounds(),
            )?,
            predicate,
            env: env.clone(),
        })
    }
}

impl RowCursor for FilteredCursor<'_> {
    fn next_into(&mut self, row: &mut Row) -> Result<bool> {
        while self.rows.next_into(row)? {
            if self.predicate.holds(row, &self.env)? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// The rows of any operator as a [`RowCursor`] (each row moved into the
/// buffer), for an aggregation over something other than a scan.
struct OperatorCursor<'a>(BoxedOperator<'a>);

impl RowCursor for OperatorCursor<'_> {
    fn next_into(&mut self, row: &mut Row) -> Result<bool> {
        match self.0.next()? {
            Some(next) => {
                *row = next;
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

/// The rows of `plan` as a cursor that decodes them into one buffer when
/// `plan` is a table scan, a filter over one or a projection over such a
/// cursor (not under EXPLAIN ANALYZE, which counts the rows of each
/// operator apart), else the rows of its operator.
fn cursor<'a>(plan: &'a Plan, env: &Env<'a>) -> Result<RowCursorBox<'a>> {
    if env.profile().is_none() {
        match plan {
            Plan::Scan { table, columns } => {
                return env
                    .store
                    .scan_cursor(table, columns.as_deref().unwrap_or_default(), &[]);
            }
            Plan::Project { input, exprs } => {
                return Ok(Box::new(ProjectCursor::new(input, exprs, env)?));
            }
            Plan::Filter { input, predicate } => {
                if let Plan::Scan { table, columns } = &**input {
                    return Ok(Box::new(FilteredCursor::new(
                        table,
                        columns.as_deref(),
                        predicate,
                        env,
                    )?));
                }
            }
            _ => {}
        }
    }
    Ok(Box::new(OperatorCursor(build(plan, env)?)))
}

/// A table scan and the filter above it in one operator: each row is
/// decoded into one buffer and tested there, and only a row that passes
/// leaves in a `Vec` of its own (the buffer is handed out and a new one
/// started). A scan that keeps 2% of its rows (q6) allocates for 2%.
struct FilteredScan<'a> {
    rows: FilteredCursor<'a>,
    row: Row,
}

impl Operator for FilteredScan<'_> {
    fn next(&mut self) -> Result<Option<Row>> {
        if self.rows.next_into(&mut self.row)? {
            let width = self.row.len();
            return Ok(Some(std::mem::replace(
                &mut self.row,
                Vec::with_capacity(width),
            )));
        }
        Ok(None)
    }
}

/// A projection as a cursor: the input row is read into the cursor's own
/// buffer (a scan decodes into it, see [`cursor`]) and the output
/// expressions, compiled ([`Scalar`]), are evaluated into the caller's
/// buffer. An aggregation over a projection (the bench's q1 computes its
/// aggregate arguments in one) thus takes no `Vec` per row either.
struct ProjectCursor<'a> {
    input: RowCursorBox<'a>,
    row: Row,
    exprs: Vec<Scalar<'a>>,
    env: Env<'a>,
}

impl<'a> ProjectCursor<'a> {
    fn new(input: &'a Plan, exprs: &'a [Expr], env: &Env<'a>) -> Result<Self> {
        Ok(ProjectCursor {
            input: cursor(input, env)?,
            row: Row::new(),
            exprs: exprs.iter().map(|e| Scalar::compile(e, env)).collect(),
            env: env.clone(),
        })
    }
}

impl RowCursor for ProjectCursor<'_> {
    fn next_into(&mut self, out: &mut Row) -> Result<bool> {
        if !self.input.next_into(&mut self.row)? {
            return Ok(false);
        }
        out.clear();
        out.reserve(self.exprs.len());
        for e in &self.exprs {
            out.push(e.value(&self.row, &self.env)?.into_owned());
        }
        Ok(true)
    }
}

/// Computes one output row per input row ([`ProjectCursor`]); only the
/// output row is new, allocated at its final size.
struct ProjectOp<'a> {
    rows: ProjectCursor<'a>,
}

impl Operator for ProjectOp<'_> {
    fn next(&mut self) -> Result<Option<Row>> {
        let mut out = Vec::with_capacity(self.rows.exprs.len());
        Ok(self.rows.next_into(&mut out)?.then_some(out))
    }
}

/// The next row of `left` joined with one of `candidates[*pos..]` for which
/// `on` holds (every candidate when there is no condition), advancing `pos`
/// past it and setting `matched`; `None` when the candidates run out. The
/// inner loop of every join that pairs a left row with a list of right
/// rows (nested loop, hash, merge and index joins).
fn next_joined(
    left: &[Value],
    candidates: &[Row],
    pos: &mut usize,
    on: Option<&Expr>,
    matched: &mut bool,
    env: &Env<'_>,
) -> Result<Option<Row>> {
    while let Some(right) = candidates.get(*pos) {
        *pos += 1;
        let row = concat_rows(left, right);
        let ok = match on {
            Some(p) => eval_predicate(p, &row, env)?,
            None => true,
        };
        if ok {
            *matched = true;
            return Ok(Some(row));
        }
    }
    Ok(None)
}

fn concat_rows(left: &[Value], right: &[Value]) -> Row {
    let mut row = Vec::with_capacity(left.len() + right.len());
    row.extend_from_slice(left);
    row.extend_from_slice(right);
    row
}

/// Every left row against every right row. The right input is read once
/// into memory (it does not depend on the left row). A LEFT join emits a
/// left row padded with NULLs when no right row matched it.
struct NestedLoopJoin<'a> {
    left: BoxedOperator<'a>,
    right: Option<BoxedOperator<'a>>,
    right_rows: Vec<Row>,
    right_width: usize,
    kind: JoinKind,
    on: Option<&'a Expr>,
    env: Env<'a>,
    current: Option<Row>,
    pos: usize,
    matched: bool,
    budget: MemoryBudget,
}

impl Operator for NestedLoopJoin<'_> {
    fn next(&mut self) -> Result<Option<Row>> {
        if let Some(mut right) = self.right.take() {
            while let Some(r) = right.next()? {
                self.budget.charge(&r)?;
                self.right_rows.push(r);
            }
        }
        loop {
            let Some(left) = &self.current else {
                match self.left.next()? {
                    Some(l) => {
                        self.current = Some(l);
                        self.pos = 0;
                        self.matched = false;
                        continue;
                    }
                    None => return Ok(None),
                }
            };
            if let Some(row) = next_joined(
                left,
                &self.right_rows,
                &mut self.pos,
                self.on,
                &mut self.matched,
                &self.env,
            )? {
                return Ok(Some(row));
            }
            let left = self.current.take().unwrap_or_default();
            if self.kind == JoinKind::Left && !self.matched {
                return Ok(Some(concat_rows(
                    &left,
                    &vec![Value::Null; self.right_width],
                )));
            }
        }
    }
}

/// A join on equalities: the right input goes into a hash table keyed by
/// its join columns ([`JoinTable`]); each left row looks its key up
/// instead of scanning every right row. NULL keys never match (NULL = NULL
/// is unknown).
///
/// A left row remembers the position of its bucket (the right rows with
/// its key) instead of copying the rows. The left row itself is read into
/// one buffer (`read`): when the left input is a table scan, with or
/// without a filter and a projection of columns over it, each row is
/// decoded into that buffer and tested there ([`ProbeRows`]). When the
/// keys are columns (`key_columns`), the key is looked up where it stands
/// in that buffer, before the projection: a row without a match (most of
/// them: q5 of the SQL bench probes 60,000 line items and joins 75) is
/// neither copied nor projected, and the next row is decoded into the same
/// buffer. Only a row with a match is moved out of the buffer (`left_row`,
/// projected) and only a joined row (left and right values together) is a
/// new `Vec`. The probe side is the big one: the planner builds the table
/// from the smaller input.
struct HashJoin<'a> {
    left: ProbeRows<'a>,
    right: Option<BoxedOperator<'a>>,
    left_keys: &'a [Expr],
    right_keys: &'a [Expr],
    /// Where each left key stands in `read` when every key is a column
    /// (see [`ProbeRows::key_columns`]); `None`: the keys are evaluated
    /// over the projected row.
    key_columns: Option<Vec<usize>>,
    table: JoinTable,
    /// A key built by [`fill_key`] (the build side's, and a probe key of
    /// expressions), reused for every row.
    key: GroupKey,
    right_width: usize,
    kind: JoinKind,
    residual: Option<&'a Expr>,
    env: Env<'a>,
    /// The left row as read, before the projection of [`ProbeRows`].
    read: Row,
    /// The current left row, while `has_left`; its right matches are
    /// `bucket`'s rows from `pos` on.
    left_row: Row,
    has_left: bool,
    /// The bucket of the current left row's key, if the right side has it.
    bucket: Option<usize>,
    pos: usize,
    matched: bool,
    budget: MemoryBudget,
}

/// Where a hash join's left (probe) rows come from. A row is first *read*
/// into the join's buffer ([`ProbeRows::read`]), where its key can be
/// looked up, then *taken* as the row the join outputs
/// ([`ProbeRows::take`]): the projection, if any, is applied only then.
enum ProbeRows<'a> {
    /// Any operator: each row comes in a `Vec` of its own.
    Operator(BoxedOperator<'a>),
    /// A table scan, the filter over it and a projection that keeps some
    /// of its columns (each optional), read as `FilteredScan` reads them:
    /// each row is decoded into the read buffer and tested there, so a row
    /// filtered out costs no allocation.
    Scan {
        rows: RowCursorBox<'a>,
        filter: Option<Predicate<'a>>,
        /// The scanned columns kept, in their new order.
        project: Option<Vec<usize>>,
    },
}

/// The column of each expression of a projection, if all are columns of
/// its input row.
fn column_indexes(exprs: &[Expr]) -> Option<Vec<usize>> {
    exprs
        .iter()
        .map(|e| match e {
            Expr::Column { depth: 0, index } => Some(*index),
            _ => None,
        })
        .collect()
}

impl<'a> ProbeRows<'a> {
    /// The probe rows of `plan`: a scan (under a filter, a projection of
    /// columns, or both) is read through a cursor, except under EXPLAIN
    /// ANALYZE, which counts the rows of each plan node and so needs each
    /// to be its own operator.
    fn build(plan: &'a Plan, env: &Env<'a>) -> Result<Self> {
        if env.profile().is_none() {
            let (below, project) = match plan {
                Plan::Project { input, exprs } => match column_indexes(exprs) {
                    Some(columns) => (&**input, Some(columns)),
                    None => (plan, None),
                },
                other => (other, None),
            };
            let (scan, filter) = match below {
                Plan::Filter { input, predicate } => (&**input, Some(predicate)),
                other => (other, None),
            };
            if let Plan::Scan { table, columns } = scan {
                let filter = filter.map(|p| Predicate::compile(p, env));
                let bounds = filter.as_ref().map(Predicate::integer_bounds);
                return Ok(ProbeRows::Scan {
                    rows: env.store.scan_cursor(
                        table,
                        columns.as_deref().unwrap_or_default(),
                        bounds.as_deref().unwrap_or_default(),
                    )?,
                    filter,
                    project,
                });
            }
        }
        Ok(ProbeRows::Operator(build(plan, env)?))
    }

    /// Where each of `keys` (expressions over the output row) stands in
    /// the row as read, if every key is a column of the output row.
    fn key_columns(&self, keys: &[Expr]) -> Option<Vec<usize>> {
        let columns = column_indexes(keys)?;
        match self {
            ProbeRows::Scan {
                project: Some(project),
                ..
            } => columns.iter().map(|&c| project.get(c).copied()).collect(),
            _ => Some(columns),
        }
    }

    /// Replaces `read` by the next probe row as read (before the
    /// projection); `false` at the end.
    fn read(&mut self, read: &mut Row, env: &Env<'_>) -> Result<bool> {
        match self {
            ProbeRows::Operator(op) => Ok(match op.next()? {
                Some(next) => {
                    *read = next;
                    true
                }
                None => false,
            }),
            ProbeRows::Scan { rows, filter, .. } => {
                next_passing(rows.as_mut(), filter.as_ref(), read, env)
            }
        }
    }

    /// Makes `row` the probe row last read into `read`: its projected
    /// columns, or the row itself (the buffers trade places: `read` then
    /// holds a row of the same width, which the next read overwrites).
    fn take(&self, read: &mut Row, row: &mut Row) -> Result<()> {
        let ProbeRows::Scan {
            project: Some(columns),
            ..
        } = self
        else {
            std::mem::swap(read, row);
            return Ok(());
        };
        row.clear();
        for &c in columns {
            // What `eval` does for the projection's column.
            row.push(key_column(read, c)?.clone());
        }
        Ok(())
    }
}

/// Decodes the next row of `rows` that passes `filter` into `row`; `false`
/// at the end.
fn next_passing(
    rows: &mut (dyn crate::store::RowCursor + '_),
    filter: Option<&Predicate<'_>>,
    row: &mut Row,
    env: &Env<'_>,
) -> Result<bool> {
    while rows.next_into(row)? {
        match filter {
            Some(p) if !p.holds(row, env)? => continue,
            _ => return Ok(true),
        }
    }
    Ok(false)
}

fn key_of(exprs: &[Expr], row: &[Value], env: &Env<'_>) -> Result<Option<GroupKey>> {
    let mut key = Vec::with_capacity(exprs.len());
    for e in exprs {
        let v = eval(e, row, env)?;
        if v.is_null() {
            return Ok(None);
        }
        key.push(v);
    }
    Ok(Some(GroupKey(key)))
}

/// Builds the key of `row` into `key` (its old values dropped); `false`
/// when a value is NULL (the row matches nothing).
fn fill_key(exprs: &[Expr], row: &[Value], env: &Env<'_>, key: &mut GroupKey) -> Result<bool> {
    key.0.clear();
    for e in exprs {
        // A key is most often a column of the row: read it where it
        // stands instead of going through `eval`.
        let column = match e {
            Expr::Column { depth: 0, index } => row.get(*index),
            _ => None,
        };
        let v = match column {
            Some(v) => v.clone(),
            None => eval(e, row, env)?,
        };
        if v.is_null() {
            return Ok(false);
        }
        key.0.push(v);
    }
    Ok(true)
}

impl HashJoin<'_> {
    /// Reads the right input into the table.
    fn build_table(&mut self, mut right: BoxedOperator<'_>) -> Result<()> {
        while let Some(r) = right.next()? {
            if fill_key(self.right_keys, &r, &self.env, &mut self.key)? {
                self.budget.charge(&r)?;
                self.table.insert(&self.key.0, r);
            }
        }
        Ok(())
    }

    /// Hands the build keys' bits to the probe's scan (see
    /// [`crate::store::KeyBits`]), so that it drops the rows whose key has
    /// no match where it decodes them. Only where dropping a row unseen
    /// changes nothing: an inner join (a LEFT join outputs every probe
    /// row), keys that are columns of the scanned row, the table in its
    /// integer form (the bits are those of every build key), and a filter
    /// over the scan that cannot fail (a row it would have failed on must
    /// still reach it).
    fn drop_absent_keys_in_scan(&mut self) {
        if self.kind == JoinKind::Left {
            return;
        }
        let (ProbeRows::Scan { rows, filter, .. }, Some(columns)) =
            (&mut self.left, &self.key_columns)
        else {
            return;
        };
        if filter.as_ref().is_some_and(|f| !f.cannot_fail()) {
            return;
        }
        if let Some(bits) = self.table.key_bits(columns.len()) {
            for (&column, keys) in columns.iter().zip(bits) {
                rows.drop_absent_keys(column, keys);
            }
        }
    }

    /// Reads the next left row and finds its bucket; `false` at the end.
    /// The row is in `left_row` when it has a bucket or the join is a LEFT
    /// join; otherwise it may still be only in `read`.
    fn next_left(&mut self) -> Result<bool> {
        if !self.left.read(&mut self.read, &self.env)? {
            return Ok(false);
        }
        let mut taken = false;
        self.bucket = match &self.key_columns {
            Some(columns) => {
                let read = &self.read;
                self.table
                    .find(columns.len(), |i| key_column(read, columns[i]))?
            }
            None => {
                self.left.take(&mut self.read, &mut self.left_row)?;
                taken = true;
                if fill_key(self.left_keys, &self.left_row, &self.env, &mut self.key)? {
                    let key = &self.key.0;
                    self.table.find(key.len(), |i| key_column(key, i))?
                } else {
                    None
                }
            }
        };
        if !taken && (self.bucket.is_some() || self.kind == JoinKind::Left) {
            self.left.take(&mut self.read, &mut self.left_row)?;
        }
        Ok(true)
    }
}

impl Operator for HashJoin<'_> {
    fn next(&mut self) -> Result<Option<Row>> {
        if let Some(right) = self.right.take() {
            self.build_table(right)?;
            self.drop_absent_keys_in_scan();
        }
        loop {
            if !self.has_left {
                if !self.next_left()? {
                    return Ok(None);
                }
                // An inner join has nothing to do for a row without
                // matches: straight on to the next, in the same buffer.
                if self.bucket.is_none() && self.kind != JoinKind::Left {
                    continue;
                }
                self.has_left = true;
                self.pos = 0;
                self.matched = false;
            }
            let candidates = match self.bucket {
                Some(b) => self.table.bucket(b),
                None => &[],
            };
            if let Some(row) = next_joined(
                &self.left_row,
                candidates,
                &mut self.pos,
                self.residual,
                &mut self.matched,
                &self.env,
            )? {
                return Ok(Some(row));
            }
            self.has_left = false;
            if self.kind == JoinKind::Left && !self.matched {
                return Ok(Some(concat_rows(
                    &self.left_row,
                    &vec![Value::Null; self.right_width],
                )));
            }
        }
    }
}

/// A merge join: both inputs come sorted ascending on their keys, so the
/// rows of one key value are next to each other on both sides. The
/// operator reads the left rows in order; for each new left key it moves
/// the right input forward past smaller keys and keeps the right rows with
/// an equal key (the *group*) in memory, which the following left rows
/// with the same key reuse. Nothing else is held: memory is the largest
/// group, not the right input. NULL keys never match.
///
/// Sorted input is the planner's promise; the operator checks it (each
/// key is compared with the previous one anyway), and a key that goes
/// backwards fails the statement instead of silently losing matches.
struct MergeJoinOp<'a> {
    left: BoxedOperator<'a>,
    right: BoxedOperator<'a>,
    left_keys: &'a [Expr],
    right_keys: &'a [Expr],
    right_width: usize,
    kind: JoinKind,
    residual: Option<&'a Expr>,
    env: Env<'a>,
    /// The previous keys read on each side (NULLs included), to check
    /// the order.
    last_left: Option<GroupKey>,
    last_right: Option<GroupKey>,
    /// The next right row not yet placed in a group, with its key.
    lookahead: Option<(GroupKey, Row)>,
    right_done: bool,
    /// The key of `group`: the right rows with that key.
    group_key: Option<GroupKey>,
    group: Vec<Row>,
    current: Option<Row>,
    pos: usize,
    matched: bool,
    budget: MemoryBudget,
}

/// The key of `row` (NULLs included) and whether it holds a NULL.
fn raw_key(exprs: &[Expr], row: &[Value], env: &Env<'_>) -> Result<(GroupKey, bool)> {
    let key = exprs
        .iter()
        .map(|e| eval(e, row, env))
        .collect::<Result<Row>>()?;
    let null = key.iter().any(Value::is_null);
    Ok((GroupKey(key), null))
}

/// Fails when `key` sorts before `last`, then remembers it.
fn check_order(last: &mut Option<GroupKey>, key: &GroupKey, side: &str) -> Result<()> {
    if last.as_ref().is_some_and(|l| l > key) {
        return Err(Error::Invalid(format!(
            "merge join: the {side} input is not sorted on the join keys"
        )));
    }
    *last = Some(key.clone());
    Ok(())
}

impl MergeJoinOp<'_> {
    /// The next right row with a key, or `None` at the end.
    fn next_right(&mut self) -> Result<Option<(GroupKey, Row)>> {
        if let Some(r) = self.lookahead.take() {
            return Ok(Some(r));
        }
        if self.right_done {
            return Ok(None);
        }
        loop {
            let Some(row) = self.right.next()? else {
                self.right_done = true;
                return Ok(None);
            };
            let (key, null) = raw_key(self.right_keys, &row, &self.env)?;
            check_order(&mut self.last_right, &key, "right")?;
            if !null {
                return Ok(Some((key, row)));
            }
        }
    }

    /// Makes `group` the right rows whose key equals `key` (none if no
    /// right row has it), skipping the smaller keys.
    fn seek_group(&mut self, key: &GroupKey) -> Result<()> {
        if self.group_key.as_ref() == Some(key) {
            return Ok(());
        }
        self.group.clear();
        self.budget.used = 0;
        while let Some((k, row)) = self.next_right()? {
            match k.cmp(key) {
                Ordering::Less => continue,
                Ordering::Equal => {
                    self.budget.charge(&row)?;
                    self.group.push(row);
                }
                Ordering::Greater => {
                    self.lookahead = Some((k, row));
                    break;
                }
            }
        }
        self.group_key = Some(key.clone());
        Ok(())
    }
}

impl Operator for MergeJoinOp<'_> {
    fn next(&mut self) -> Result<Option<Row>> {
        loop {
            let Some(left) = &self.current else {
                let Some(l) = self.left.next()? else {
                    return Ok(None);
                };
                let (key, null) = raw_key(self.left_keys, &l, &self.env)?;
                check_order(&mut self.last_left, &key, "left")?;
                self.pos = usize::MAX;
                if !null {
                    self.seek_group(&key)?;
                    self.pos = 0;
                }
                self.current = Some(l);
                self.matched = false;
                continue;
            };
            if let Some(row) = next_joined(
                left,
                &self.group,
                &mut self.pos,
                self.residual,
                &mut self.matched,
                &self.env,
            )? {
                return Ok(Some(row));
            }
            let left = self.current.take().unwrap_or_default();
            if self.kind == JoinKind::Left && !self.matched {
                return Ok(Some(concat_rows(
                    &left,
                    &vec![Value::Null; self.right_width],
                )));
            }
        }
    }
}

/// An index nested-loop join: each left row's key is looked up in the
/// right table's index (or primary key). Nothing is held in memory beyond
/// the matches of one left row, and only the matching right rows are read:
/// the join of choice when the left side is small and the right one large.
struct IndexJoinOp<'a> {
    left: BoxedOperator<'a>,
    table: &'a crate::catalog::Table,
    index: Option<&'a crate::catalog::Index>,
    left_key: &'a Expr,
    right_filter: Option<&'a Expr>,
    kind: JoinKind,
    residual: Option<&'a Expr>,
    env: Env<'a>,
    current: Option<Row>,
    matches: Vec<Row>,
    pos: usize,
    matched: bool,
}

impl IndexJoinOp<'_> {
    /// The right rows whose join column equals `key`.
    fn lookup(&self, key: Value) -> Result<Vec<Row>> {
        if key.is_null() {
            return Ok(Vec::new());
        }
        let rows: Vec<Row> = match self.index {
            Some(index) => {
                let range = crate::store::IndexRange {
                    start: std::ops::Bound::Included(vec![key.clone()]),
                    end: std::ops::Bound::Included(vec![key]),
                };
                self.env
                    .store
                    .index_scan(self.table, index, &range)?
                    .map(|r| r.map(|(_, row)| row))
                    .collect::<Result<_>>()?
            }
            None => self
                .env
                .store
                .get_by_pk(self.table, &[key])?
                .map(|(_, row)| row)
                .into_iter()
                .collect(),
        };
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let keep = match self.right_filter {
                Some(p) => eval_predicate(p, &row, &self.env)?,
                None => true,
            };
            if keep {
                out.push(row);
            }
        }
        Ok(out)
    }
}

impl Operator for IndexJoinOp<'_> {
    fn next(&mut self) -> Result<Option<Row>> {
        loop {
            let Some(left) = &self.current else {
                match self.left.next()? {
                    Some(l) => {
                        let key = eval(self.left_key, &l, &self.env)?;
                        self.matches = self.lookup(key)?;
                        self.current = Some(l);
                        self.pos = 0;
                        self.matched = false;
                        continue;
                    }
                    None => return Ok(None),
                }
            };
            if let Some(row) = next_joined(
                left,
                &self.matches,
                &mut self.pos,
                self.residual,
                &mut self.matched,
                &self.env,
            )? {
                return Ok(Some(row));
            }
            let left = self.current.take().unwrap_or_default();
            if self.kind == JoinKind::Left && !self.matched {
                return Ok(Some(concat_rows(
                    &left,
                    &vec![Value::Null; self.table.columns.len()],
                )));
            }
        }
    }
}

/// A semi-join or anti-join: a left row passes, once, when some right row
/// matches it (semi) or when none does (anti). The right input is read on
/// the first left row (an empty left side never runs it) into a hash table
/// on its keys; without keys all right rows sit under one empty key and
/// each is tried, a nested loop. Unlike a join, a left row never comes out
/// twice, however many right rows match: that is what makes `IN` and
/// `EXISTS` a semi-join rather than a join.
///
/// The NULL-aware anti-join implements `x NOT IN (subquery)` as a WHERE
/// term: it is true only when no value equals `x` and none is NULL (a NULL
/// could be equal), and `x` is not NULL; over an empty subquery it is true
/// even for a NULL `x`.
struct SemiJoinOp<'a> {
    left: BoxedOperator<'a>,
    right: Option<BoxedOperator<'a>>,
    anti: bool,
    left_keys: &'a [Expr],
    right_keys: &'a [Expr],
    residual: Option<&'a Expr>,
    null_aware: bool,
    table: HashMap<GroupKey, Vec<Row>>,
    right_rows: usize,
    right_null_key: bool,
    env: Env<'a>,
    budget: MemoryBudget,
}

impl SemiJoinOp<'_> {
    fn load_right(&mut self, mut right: BoxedOperator<'_>) -> Result<()> {
        while let Some(r) = right.next()? {
            self.right_rows += 1;
            match key_of(self.right_keys, &r, &self.env)? {
                Some(k) => {
                    self.budget.charge(&r)?;
                    self.table.entry(k).or_default().push(r);
                }
                None => self.right_null_key = true,
            }
        }
        Ok(())
    }

    /// Whether some right row matches `left`.
    fn matches(&self, left: &[Value]) -> Result<bool> {
        let Some(key) = key_of(self.left_keys, left, &self.env)? else {
            return Ok(false);
        };
        let Some(candidates) = self.table.get(&key) else {
            return Ok(false);
        };
        let Some(residual) = self.residual else {
            return Ok(!candidates.is_empty());
        };
        for r in candidates {
            if eval_predicate(residual, &concat_rows(left, r), &self.env)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn passes(&self, left: &[Value]) -> Result<bool> {
        if self.null_aware {
            if self.right_rows == 0 {
                return Ok(true);
            }
            if self.right_null_key || key_of(self.left_keys, left, &self.env)?.is_none() {
                return Ok(false);
            }
        }
        Ok(self.matches(left)? != self.anti)
    }
}

impl Operator for SemiJoinOp<'_> {
    fn next(&mut self) -> Result<Option<Row>> {
        while let Some(row) = self.left.next()? {
            if let Some(right) = self.right.take() {
                self.load_right(right)?;
            }
            if self.passes(&row)? {
                return Ok(Some(row));
            }
        }
        Ok(None)
    }
}

/// Skips `skip` rows, then passes at most `remaining`.
struct LimitOp<'a> {
    input: BoxedOperator<'a>,
    remaining: Option<u64>,
    skip: u64,
}

impl Operator for LimitOp<'_> {
    fn next(&mut self) -> Result<Option<Row>> {
        if self.remaining == Some(0) {
            return Ok(None);
        }
        while self.skip > 0 {
            if self.input.next()?.is_none() {
                return Ok(None);
            }
            self.skip -= 1;
        }
        let row = self.input.next()?;
        if row.is_some()
            && let Some(r) = self.remaining.as_mut()
        {
            *r -= 1;
        }
        Ok(row)
    }
}

/// Passes the first row of each set of equal rows.
struct DistinctOp<'a> {
    input: BoxedOperator<'a>,
    key_width: usize,
    seen: HashSet<GroupKey>,
    budget: MemoryBudget,
}

impl Operator for DistinctOp<'_> {
    fn next(&mut self) -> Result<Option<Row>> {
        while let Some(row) = self.input.next()? {
            let width = self.key_width.min(row.len());
            let key = GroupKey(row[..width].to_vec());
            if !self.seen.contains(&key) {
                self.budget.charge(&key.0)?;
                self.seen.insert(key);
                return Ok(Some(row));
            }
        }
        Ok(None)
    }
}

/// Compares two rows of sort-key values.
fn compare_keys(a: &[Value], b: &[Value], keys: &[SortKey]) -> Ordering {
    for ((x, y), k) in a.iter().zip(b).zip(keys) {
        let o = match (x.is_null(), y.is_null()) {
            (true, true) => Ordering::Equal,
            (true, false) => {
                if k.nulls_first {
                    Ordering::Less
                } else {
                    Ordering::Greater
                }
            }
            (false, true) => {
                if k.nulls_first {
                    Ordering::Greater
                } else {
                    Ordering::Less
                }
            }
            (false, false) => {
                let o = x.total_cmp(y);
                if k.desc { o.reverse() } else { o }
            }
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

/// Sorts the input (stable: equal rows keep their input order). With
/// `keep`, only the first `keep` rows are kept in memory while reading:
/// a top-N sort for ORDER BY ... LIMIT.
fn sort(
    mut input: BoxedOperator<'_>,
    keys: &[SortKey],
    keep: Option<u64>,
    env: &Env<'_>,
) -> Result<Vec<Row>> {
    let mut budget = MemoryBudget::new(env, "a sort");
    let mut rows: Vec<(Row, Row)> = Vec::new();
    let keep = keep.map(|k| usize::try_from(k).unwrap_or(usize::MAX));
    while let Some(row) = input.next()? {
        let key = keys
            .iter()
            .map(|k| eval(&k.expr, &row, env))
            .collect::<Result<Row>>()?;
        match keep {
            Some(n) => {
                if n == 0 {
                    continue;
                }
                // Insert after every row that sorts before or with it, so
                // that equal rows keep their input order.
                let at =
                    rows.partition_point(|(k, _)| compare_keys(k, &key, keys) != Ordering::Greater);
                if at >= n {
                    continue;
                }
                if rows.len() < n {
                    budget.charge(&row)?;
                }
                rows.insert(at, (key, row));
                rows.truncate(n);
            }
            None => {
                budget.charge(&row)?;
                rows.push((key, row));
            }
        }
    }
    if keep.is_none() {
        rows.sort_by(|a, b| compare_keys(&a.0, &b.0, keys));
    }
    Ok(rows.into_iter().map(|(_, r)| r).collect())
}

/// The running state of one aggregate in one group.
#[derive(Debug, Clone)]
enum AggState {
    Count(i64),
    Sum {
        int: i64,
        real: f64,
        is_real: bool,
        any: bool,
    },
    Avg {
        sum: f64,
        count: i64,
    },
    MinMax(Option<Value>),
    Concat(Option<String>),
    Any(Value),
}

fn new_state(call: &AggCall) -> AggState {
    match call.func {
        AggFunc::Count => AggState::Count(0),
        AggFunc::Sum | AggFunc::Total => AggState::Sum {
            int: 0,
            real: 0.0,
            is_real: false,
            any: false,
        },
        AggFunc::Avg => AggState::Avg { sum: 0.0, count: 0 },
        AggFunc::Min | AggFunc::Max => AggState::MinMax(None),
        AggFunc::GroupConcat => AggState::Concat(None),
        AggFunc::AnyValue => AggState::Any(Value::Null),
    }
}

fn update_state(
    state: &mut AggState,
    call: &AggCall,
    v: &Value,
    sep: Option<&Value>,
) -> Result<()> {
    if call.func == AggFunc::AnyValue {
        *state = AggState::Any(v.clone());
        return Ok(());
    }
    if v.is_null() && call.arg.is_some() {
        return Ok(());
    }
    match state {
        AggState::Count(n) => *n += 1,
        AggState::Sum {
            int,
            real,
            is_real,
            any,
        } => {
            *any = true;
            match v.to_number() {
                Value::Integer(i) if !*is_real && call.func == AggFunc::Sum => {
                    *int = int.checked_add(i).ok_or(Error::IntegerOverflow)?;
                }
                n => {
                    if !*is_real {
                        *real = *int as f64;
                        *is_real = true;
                    }
                    *real += n.as_f64().unwrap_or(0.0);
                }
            }
        }
        AggState::Avg { sum, count } => {
            *sum += v.to_number().as_f64().unwrap_or(0.0);
            *count += 1;
        }
        AggState::MinMax(best) => {
            let better = match best {
                None => true,
                Some(b) => {
                    let o = v.total_cmp(b);
                    if call.func == AggFunc::Min {
                        o == Ordering::Less
                    } else {
                        o == Ordering::Greater
                    }
                }
            };
            if better {
                *best = Some(v.clone());
            }
        }
        AggState::Concat(acc) => {
            let sep = sep.map(|s| s.to_string()).unwrap_or_else(|| ",".into());
            match acc {
                Some(s) => {
                    s.push_str(&sep);
                    s.push_str(&v.to_string());
                }
                None => *acc = Some(v.to_string()),
            }
        }
        AggState::Any(_) => {}
    }
    Ok(())
}

fn finish_state(state: AggState, call: &AggCall) -> Value {
    match state {
        AggState::Count(n) => Value::Integer(n),
        AggState::Sum {
            int,
            real,
            is_real,
            any,
        } => {
            if call.func == AggFunc::Total {
                Value::Real(if is_real { real } else { int as f64 })
            } else if !any {
                Value::Null
            } else if is_real {
                Value::Real(real)
            } else {
                Value::Integer(int)
            }
        }
        AggState::Avg { sum, count } => {
            if count == 0 {
                Value::Null
            } else {
                Value::Real(sum / count as f64)
            }
        }
        AggState::MinMax(v) => v.unwrap_or(Value::Null),
        AggState::Concat(s) => s.map(|s| Value::text(&s)).unwrap_or(Value::Null),
        AggState::Any(v) => v,
    }
}

struct Group {
    key: Row,
    states: Vec<AggState>,
    distinct: Vec<HashSet<GroupKey>>,
}

/// A hasher for keys that are hashes already (a group key's keyed SipHash,
/// see [`aggregate`]): it hands them on as they are.
#[derive(Default)]
struct HashIsKey(u64);

impl Hasher for HashIsKey {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used; anything else still mixes its bytes in.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// The groups of an aggregation, found from each row's key.
///
/// When every GROUP BY key is a column of the input row (the usual case:
/// `GROUP BY l_returnflag, l_linestatus`), a row's key is hashed and
/// compared where it stands in the row buffer and copied only for a new
/// group: `by_hash` maps a key's hash to the last group created with that
/// hash, and `same_hash` chains each group to the one created before it
/// with the same hash. The hash is the one [`GroupKey`] uses, with a
/// random SipHash key per aggregation (keys are user data). Otherwise each
/// row's key is computed into one reused buffer and looked up by value.
struct GroupTable<'a> {
    groups: Vec<Group>,
    /// The key's columns in the row, when every key is a column.
    columns: Option<Vec<usize>>,
    hasher: RandomState,
    by_hash: HashMap<u64, usize, BuildHasherDefault<HashIsKey>>,
    same_hash: Vec<Option<usize>>,
    /// The keys' expressions, when some key is not a column.
    keys: Vec<Scalar<'a>>,
    key: GroupKey,
    by_key: HashMap<GroupKey, usize>,
}

impl<'a> GroupTable<'a> {
    fn new(group_by: &'a [Expr], env: &Env<'a>) -> Self {
        let keys: Vec<Scalar<'a>> = group_by.iter().map(|e| Scalar::compile(e, env)).collect();
        let columns = keys
            .iter()
            .map(|k| match k {
                Scalar::Column(c) => Some(*c),
                _ => None,
            })
            .collect();
        GroupTable {
            groups: Vec::new(),
            columns,
            hasher: RandomState::new(),
            by_hash: HashMap::default(),
            same_hash: Vec::new(),
            keys,
            key: GroupKey(Vec::with_capacity(group_by.len())),
            by_key: HashMap::new(),
        }
    }

    /// The index in `groups` of `row`'s group; `None` if it has none yet,
    /// and then its key (in `self.key` when the keys are not all columns)
    /// is ready for [`GroupTable::insert`].
    fn find(&mut self, row: &[Value], env: &Env<'_>) -> Result<(Option<usize>, u64)> {
        let Some(columns) = &self.columns else {
            self.key.0.clear();
            for e in &self.keys {
                self.key.0.push(e.value(row, env)?.into_owned());
            }
            return Ok((self.by_key.get(&self.key).copied(), 0));
        };
        let mut state = self.hasher.build_hasher();
        for &c in columns {
            hash_group_value(column_of(row, c)?, &mut state);
        }
        let hash = state.finish();
        let mut candidate = self.by_hash.get(&hash).copied();
        while let Some(g) = candidate {
            let key = &self.groups[g].key;
            let same = key.len() == columns.len()
                && key.iter().zip(columns).all(|(k, &c)| {
                    row.get(c)
                        .is_some_and(|v| k.total_cmp(v) == Ordering::Equal)
                });
            if same {
                return Ok((Some(g), hash));
            }
            candidate = self.same_hash[g];
        }
        Ok((None, hash))
    }

    /// Adds the group of `row`, which [`GroupTable::find`] (returning
    /// `hash`) did not find, and returns its index.
    fn insert(
        &mut self,
        row: &[Value],
        hash: u64,
        group: impl FnOnce(Row) -> Group,
    ) -> Result<usize> {
        let g = self.groups.len();
        match &self.columns {
            Some(columns) => {
                let key = columns
                    .iter()
                    .map(|&c| column_of(row, c).cloned())
                    .collect::<Result<Row>>()?;
                self.groups.push(group(key));
                self.same_hash.push(self.by_hash.insert(hash, g));
            }
            None => {
                self.groups.push(group(self.key.0.clone()));
                self.by_key.insert(self.key.clone(), g);
            }
        }
        Ok(g)
    }
}

/// Column `index` of `row`, with `eval`'s error when the row is too short
/// (a planner bug, never a user's).
fn column_of(row: &[Value], index: usize) -> Result<&Value> {
    row.get(index)
        .ok_or_else(|| Error::Invalid(format!("column #{index} is out of the row")))
}

/// Hash aggregation: one hash-table entry per group, updated row by row.
/// Groups come out in the order of their keys (as SQLite's sorter-based
/// grouping returns them). Without GROUP BY there is exactly one group,
/// even over no rows: `count(*)` of an empty table is one row saying 0.
///
/// The input is read through a cursor into one row buffer reused for
/// every row (a scan, or a filter over one, decodes into it: no `Vec` per
/// input row); the keys are looked up in that buffer ([`GroupTable`]) and
/// the arguments are compiled expressions ([`Scalar`]) that borrow the
/// columns they read from it.
fn aggregate(
    mut input: RowCursorBox<'_>,
    group_by: &[Expr],
    aggs: &[AggCall],
    env: &Env<'_>,
) -> Result<Vec<Row>> {
    let mut budget = MemoryBudget::new(env, "an aggregation");
    let mut table = GroupTable::new(group_by, env);
    let args: Vec<Option<Scalar<'_>>> = aggs
        .iter()
        .map(|c| c.arg.as_ref().map(|e| Scalar::compile(e, env)))
        .collect();
    let fresh = |key: Row| Group {
        key,
        states: aggs.iter().map(new_state).collect(),
        distinct: aggs.iter().map(|_| HashSet::new()).collect(),
    };
    if group_by.is_empty() {
        table.groups.push(fresh(Vec::new()));
    }
    let mut row = Row::new();
    let count_star = Value::Integer(1);
    while input.next_into(&mut row)? {
        let g = if group_by.is_empty() {
            0
        } else {
            match table.find(&row, env)? {
                (Some(g), _) => g,
                (None, hash) => {
                    let g = table.insert(&row, hash, fresh)?;
                    budget.charge(&table.groups[g].key)?;
                    budget.charge(&vec![Value::Null; aggs.len()])?;
                    g
                }
            }
        };
        let group = &mut table.groups[g];
        for (i, (call, arg)) in aggs.iter().zip(&args).enumerate() {
            let v = match arg {
                Some(e) => e.value(&row, env)?,
                None => Cow::Borrowed(&count_star),
            };
            if call.distinct {
                if v.is_null() {
                    continue;
                }
                let k = GroupKey(vec![v.clone().into_owned()]);
                if group.distinct[i].contains(&k) {
                    continue;
                }
                budget.charge(&k.0)?;
                group.distinct[i].insert(k);
            }
            let sep = match &call.separator {
                Some(e) => Some(eval(e, &row, env)?),
                None => None,
            };
            update_state(&mut group.states[i], call, &v, sep.as_ref())?;
        }
    }
    let mut groups = table.groups;
    if !group_by.is_empty() {
        groups.sort_by_key(|a| GroupKey(a.key.clone()));
    }
    Ok(groups
        .into_iter()
        .map(|g| {
            let mut row = g.key;
            row.extend(
                g.states
                    .into_iter()
                    .zip(aggs)
                    .map(|(s, c)| finish_state(s, c)),
            );
            row
        })
        .collect())
}

/// UNION (ALL), INTERSECT, EXCEPT. UNION ALL concatenates; the others
/// remove duplicates and return rows in sorted order, as SQLite does.
fn set_op(
    op: SetOperator,
    all: bool,
    mut left: BoxedOperator<'_>,
    mut right: BoxedOperator<'_>,
    env: &Env<'_>,
) -> Result<Vec<Row>> {
    let mut budget = MemoryBudget::new(env, "a set operation");
    if op == SetOperator::Union && all {
        let mut rows = Vec::new();
        while let Some(r) = left.next()? {
            budget.charge(&r)?;
            rows.push(r);
        }
        while let Some(r) = right.next()? {
            budget.charge(&r)?;
            rows.push(r);
        }
        return Ok(rows);
    }
    let mut result: BTreeSet<GroupKey> = BTreeSet::new();
    while let Some(r) = left.next()? {
        budget.charge(&r)?;
        result.insert(GroupKey(r));
    }
    match op {
        SetOperator::Union => {
            while let Some(r) = right.next()? {
                budget.charge(&r)?;
                result.insert(GroupKey(r));
            }
        }
        SetOperator::Intersect => {
            let mut both = BTreeSet::new();
            while let Some(r) = right.next()? {
                let k = GroupKey(r);
                if result.contains(&k) {
                    both.insert(k);
                }
            }
            result = both;
        }
        SetOperator::Except => {
            while let Some(r) = right.next()? {
                result.remove(&GroupKey(r));
            }
        }
    }
    Ok(result.into_iter().map(|k| k.0).collect())
}
