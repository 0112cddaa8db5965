//! Expression evaluation.
//!
//! [`eval`] computes a bound expression over one row. NULL propagates
//! through operators and functions; AND, OR and NOT follow three-valued
//! logic (`NULL AND FALSE` is FALSE, `NULL OR TRUE` is TRUE).
//!
//! Subqueries run here. An uncorrelated subquery has the same result for
//! every row, so its result is kept in the statement's cache under the
//! subquery's id after the first evaluation. A correlated subquery runs
//! again for each row: its plan is started with the current row pushed on
//! the chain of outer rows, where its `depth >= 1` column references look.
//!
//! A filter evaluates its predicate once per row scanned, so the operands
//! of comparisons, BETWEEN and arithmetic are *borrowed* when they are a
//! column of the row or a literal (`operand`): `l_shipdate >= 730` reads
//! both values where they are instead of copying them (for text, a copy
//! touches a shared reference count). The tree is still walked per row
//! here; a filter's predicate is compiled once per run instead
//! ([`crate::exec::predicate`]: flat AND chains, comparisons of a column
//! with a constant), which must give what [`eval_predicate`] gives, and
//! the keys, aggregate arguments and projections of aggregations and
//! projections are compiled too ([`crate::exec::scalar`]), which must give
//! what [`eval`] gives.

use std::borrow::Cow;
use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use crate::ast::{BinaryOp, UnaryOp};
use crate::error::{Error, Result};
use crate::exec::ExecContext;
use crate::exec::operators::build;
use crate::exec::profile::Profile;
use crate::func::like;
use crate::plan::{Expr, Subquery};
use crate::store::Store;
use crate::value::{ArithOp, DataType, GroupKey, Row, Value};

/// The rows of the enclosing queries, innermost first.
#[derive(Debug)]
pub struct OuterRow {
    row: Row,
    parent: Option<Rc<OuterRow>>,
}

/// A cached result of an uncorrelated subquery.
#[derive(Debug)]
enum Cached {
    Scalar(Value),
    Exists(bool),
    InSet {
        set: HashSet<GroupKey>,
        has_null: bool,
    },
}

/// What operators and expressions run with: the store, the context, the
/// chain of outer rows, and the statement's subquery cache.
#[derive(Clone)]
pub struct Env<'a> {
    /// The tables.
    pub store: &'a dyn Store,
    /// Budgets and parameters.
    pub ctx: &'a ExecContext,
    outer: Option<Rc<OuterRow>>,
    cache: Rc<RefCell<HashMap<usize, Rc<Cached>>>>,
    /// EXPLAIN ANALYZE's counters, when it asked for them.
    profile: Option<Rc<Profile>>,
}

impl<'a> Env<'a> {
    /// A fresh environment for one statement.
    pub fn new(store: &'a dyn Store, ctx: &'a ExecContext) -> Self {
        Env {
            store,
            ctx,
            outer: None,
            cache: Rc::new(RefCell::new(HashMap::new())),
            profile: None,
        }
    }

    /// The same environment, counting what every operator built with it
    /// does into `profile` (EXPLAIN ANALYZE).
    pub fn with_profile(mut self, profile: Rc<Profile>) -> Self {
        self.profile = Some(profile);
        self
    }

    /// The counters operators report to, if EXPLAIN ANALYZE asked.
    pub fn profile(&self) -> Option<&Rc<Profile>> {
        self.profile.as_ref()
    }

    fn with_outer(&self, row: &[Value]) -> Env<'a> {
        Env {
            store: self.store,
            ctx: self.ctx,
            outer: Some(Rc::new(OuterRow {
                row: row.to_vec(),
                parent: self.outer.clone(),
            })),
            cache: self.cache.clone(),
            profile: self.profile.clone(),
        }
    }
}

/// Evaluates an expression that reads no row (DEFAULT, LIMIT, folding).
pub fn eval_constant(e: &Expr) -> Result<Value> {
    let ctx = ExecContext::default();
    let store = NoStore;
    eval(e, &[], &Env::new(&store, &ctx))
}

/// Whether `predicate` holds for `row` (NULL counts as not holding).
pub fn eval_predicate(predicate: &Expr, row: &[Value], env: &Env<'_>) -> Result<bool> {
    Ok(eval(predicate, row, env)?.truth() == Some(true))
}

fn boolean(b: Option<bool>) -> Value {
    match b {
        Some(b) => Value::Boolean(b),
        None => Value::Null,
    }
}

fn to_int(v: &Value) -> Option<i64> {
    match v.cast(DataType::Integer) {
        Value::Integer(i) => Some(i),
        _ => None,
    }
}

/// The value of an operand of a comparison or arithmetic: a column of the
/// row or a literal is borrowed where it stands (no clone of its text, no
/// reference count touched), anything else is computed. Comparisons such
/// as `l_shipdate >= 730` run for every row a filter sees, so this is the
/// inner loop of a scan.
fn operand<'r>(e: &'r Expr, row: &'r [Value], env: &Env<'_>) -> Result<Cow<'r, Value>> {
    Ok(match e {
        Expr::Literal(v) => Cow::Borrowed(v),
        Expr::Column { depth: 0, index } => match row.get(*index) {
            Some(v) => Cow::Borrowed(v),
            None => return Err(Error::Invalid(format!("column #{index} is out of the row"))),
        },
        _ => Cow::Owned(eval(e, row, env)?),
    })
}

/// The value of parameter `i` (from 0) in `ctx`.
pub(crate) fn param(ctx: &ExecContext, i: usize) -> Result<Value> {
    ctx.params
        .get(i)
        .cloned()
        .ok_or_else(|| Error::Invalid(format!("no value for parameter ${}", i + 1)))
}

/// Evaluates `e` over `row`.
pub fn eval(e: &Expr, row: &[Value], env: &Env<'_>) -> Result<Value> {
    Ok(match e {
        Expr::Literal(v) => v.clone(),
        Expr::Column { depth: 0, index } => row
            .get(*index)
            .cloned()
            .ok_or_else(|| Error::Invalid(format!("column #{index} is out of the row")))?,
        Expr::Column { depth, index } => {
            let mut outer = env.outer.as_ref();
            for _ in 1..*depth {
                outer = outer.and_then(|o| o.parent.as_ref());
            }
            outer
                .and_then(|o| o.row.get(*index))
                .cloned()
                .ok_or_else(|| {
                    Error::Invalid(format!("outer column {depth}#{index} is not bound"))
                })?
        }
        Expr::Param(i) => param(env.ctx, *i)?,
        Expr::Unary(op, x) => {
            let v = eval(x, row, env)?;
            match op {
                UnaryOp::Neg => v.neg()?,
                UnaryOp::Plus => v,
                UnaryOp::Not => boolean(v.truth().map(|b| !b)),
                UnaryOp::BitNot => match to_int(&v) {
                    Some(i) => Value::Integer(!i),
                    None => Value::Null,
                },
            }
        }
        Expr::Binary(op, a, b) => eval_binary(*op, a, b, row, env)?,
        Expr::IsNull(x, negated) => Value::Boolean(eval(x, row, env)?.is_null() != *negated),
        Expr::Between {
            expr,
            low,
            high,
            negated,
        } => {
            let v = operand(expr, row, env)?;
            let lo = operand(low, row, env)?;
            let hi = operand(high, row, env)?;
            let ge = v.sql_cmp(&lo).map(|o| o != Ordering::Less);
            let le = v.sql_cmp(&hi).map(|o| o != Ordering::Greater);
            let r = and3(ge, le);
            boolean(if *negated { r.map(|b| !b) } else { r })
        }
        Expr::InList {
            expr,
            list,
            negated,
        } => {
            if list.is_empty() {
                return Ok(Value::Boolean(*negated));
            }
            let v = eval(expr, row, env)?;
            if v.is_null() {
                return Ok(Value::Null);
            }
            let mut saw_null = false;
            let mut found = false;
            for item in list {
                let x = eval(item, row, env)?;
                match v.sql_cmp(&x) {
                    Some(Ordering::Equal) => {
                        found = true;
                        break;
                    }
                    None => saw_null = true,
                    _ => {}
                }
            }
            in_result(found, saw_null, *negated)
        }
        Expr::InSubquery {
            expr,
            subquery,
            negated,
        } => {
            let v = eval(expr, row, env)?;
            let cached = subquery_result(subquery, Kind::In, row, env)?;
            let Cached::InSet { set, has_null } = &*cached else {
                return Err(Error::Invalid("subquery cache mismatch".into()));
            };
            // Only a subquery without rows (NULLs are rows too) makes the
            // answer the same for a NULL operand.
            if set.is_empty() && !*has_null {
                return Ok(Value::Boolean(*negated));
            }
            if v.is_null() {
                return Ok(Value::Null);
            }
            let found = set.contains(&GroupKey(vec![v]));
            in_result(found, *has_null, *negated)
        }
        Expr::Exists { subquery, negated } => {
            let cached = subquery_result(subquery, Kind::Exists, row, env)?;
            match &*cached {
                Cached::Exists(b) => Value::Boolean(*b != *negated),
                _ => return Err(Error::Invalid("subquery cache mismatch".into())),
            }
        }
        Expr::Scalar(subquery) => match &*subquery_result(subquery, Kind::Scalar, row, env)? {
            Cached::Scalar(v) => v.clone(),
            _ => return Err(Error::Invalid("subquery cache mismatch".into())),
        },
        Expr::Case {
            operand,
            branches,
            else_result,
        } => {
            let base = match operand {
                Some(o) => Some(eval(o, row, env)?),
                None => None,
            };
            for (when, then) in branches {
                let w = eval(when, row, env)?;
                let hit = match &base {
                    Some(b) => b.sql_cmp(&w) == Some(Ordering::Equal),
                    None => w.truth() == Some(true),
                };
                if hit {
                    return eval(then, row, env);
                }
            }
            match else_result {
                Some(e) => eval(e, row, env)?,
                None => Value::Null,
            }
        }
        Expr::Cast(x, ty) => eval(x, row, env)?.cast(*ty),
        Expr::Function(f, args) => {
            let vals = args
                .iter()
                .map(|a| eval(a, row, env))
                .collect::<Result<Vec<_>>>()?;
            f.call(&vals)?
        }
        Expr::Like {
            expr,
            pattern,
            negated,
        } => {
            let v = eval(expr, row, env)?;
            let p = eval(pattern, row, env)?;
            if v.is_null() || p.is_null() {
                Value::Null
            } else {
                Value::Boolean(like(&v.to_string(), &p.to_string()) != *negated)
            }
        }
    })
}

fn in_result(found: bool, saw_null: bool, negated: bool) -> Value {
    let r = if found {
        Some(true)
    } else if saw_null {
        None
    } else {
        Some(false)
    };
    boolean(if negated { r.map(|b| !b) } else { r })
}

fn and3(a: Option<bool>, b: Option<bool>) -> Option<bool> {
    match (a, b) {
        (Some(false), _) | (_, Some(false)) => Some(false),
        (Some(true), Some(true)) => Some(true),
        _ => None,
    }
}

fn eval_binary(op: BinaryOp, a: &Expr, b: &Expr, row: &[Value], env: &Env<'_>) -> Result<Value> {
    // AND and OR look at the right side only when the left does not decide.
    match op {
        BinaryOp::And => {
            let l = eval(a, row, env)?.truth();
            if l == Some(false) {
                return Ok(Value::Boolean(false));
            }
            let r = eval(b, row, env)?.truth();
            return Ok(boolean(and3(l, r)));
        }
        BinaryOp::Or => {
            let l = eval(a, row, env)?.truth();
            if l == Some(true) {
                return Ok(Value::Boolean(true));
            }
            let r = eval(b, row, env)?.truth();
            return Ok(boolean(match (l, r) {
                (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            }));
        }
        _ => {}
    }
    let l = operand(a, row, env)?;
    let r = operand(b, row, env)?;
    let cmp = |f: fn(Ordering) -> bool| boolean(l.sql_cmp(&r).map(f));
    Ok(match op {
        BinaryOp::Eq => cmp(|o| o == Ordering::Equal),
        BinaryOp::NotEq => cmp(|o| o != Ordering::Equal),
        BinaryOp::Lt => cmp(|o| o == Ordering::Less),
        BinaryOp::LtEq => cmp(|o| o != Ordering::Greater),
        BinaryOp::Gt => cmp(|o| o == Ordering::Greater),
        BinaryOp::GtEq => cmp(|o| o != Ordering::Less),
        BinaryOp::Is | BinaryOp::IsNot => {
            let same = match (l.is_null(), r.is_null()) {
                (true, true) => true,
                (false, false) => l.sql_cmp(&r) == Some(Ordering::Equal),
                _ => false,
            };
            Value::Boolean(same == (op == BinaryOp::Is))
        }
        BinaryOp::Add => l.arith(ArithOp::Add, &r)?,
        BinaryOp::Sub => l.arith(ArithOp::Sub, &r)?,
        BinaryOp::Mul => l.arith(ArithOp::Mul, &r)?,
        BinaryOp::Div => l.arith(ArithOp::Div, &r)?,
        BinaryOp::Mod => l.arith(ArithOp::Rem, &r)?,
        BinaryOp::Concat => l.concat(&r),
        BinaryOp::BitAnd | BinaryOp::BitOr | BinaryOp::ShiftLeft | BinaryOp::ShiftRight => {
            let (Some(x), Some(y)) = (to_int(&l), to_int(&r)) else {
                return Ok(Value::Null);
            };
            Value::Integer(match op {
                BinaryOp::BitAnd => x & y,
                BinaryOp::BitOr => x | y,
                BinaryOp::ShiftLeft => shift(x, y),
                _ => shift(x, y.saturating_neg()),
            })
        }
        BinaryOp::And | BinaryOp::Or => Value::Null,
    })
}

/// `x << n` for any `n` (negative shifts right), as SQLite defines it.
fn shift(x: i64, n: i64) -> i64 {
    if n >= 64 {
        0
    } else if n >= 0 {
        x << n
    } else if n <= -64 {
        if x < 0 { -1 } else { 0 }
    } else {
        x >> (-n)
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Scalar,
    Exists,
    In,
}

fn subquery_result(sq: &Subquery, kind: Kind, row: &[Value], env: &Env<'_>) -> Result<Rc<Cached>> {
    if !sq.correlated
        && let Some(c) = env.cache.borrow().get(&sq.id)
    {
        return Ok(c.clone());
    }
    let sub_env = env.with_outer(row);
    let mut op = build(&sq.plan, &sub_env)?;
    let result = match kind {
        Kind::Scalar => Cached::Scalar(
            op.next()?
                .and_then(|r| r.into_iter().next())
                .unwrap_or(Value::Null),
        ),
        Kind::Exists => Cached::Exists(op.next()?.is_some()),
        Kind::In => {
            let mut set = HashSet::new();
            let mut has_null = false;
            let mut bytes = 0usize;
            while let Some(r) = op.next()? {
                let v = r.into_iter().next().unwrap_or(Value::Null);
                if v.is_null() {
                    has_null = true;
                } else {
                    bytes += v.size_estimate() + 16;
                    if bytes > env.ctx.memory_budget {
                        return Err(Error::ResourceLimit(format!(
                            "IN subquery holds more than {} bytes",
                            env.ctx.memory_budget
                        )));
                    }
                    set.insert(GroupKey(vec![v]));
                }
            }
            Cached::InSet { set, has_null }
        }
    };
    let result = Rc::new(result);
    if !sq.correlated {
        env.cache.borrow_mut().insert(sq.id, result.clone());
    }
    Ok(result)
}

/// A store with no tables, for evaluating constants.
pub(crate) struct NoStore;

impl Store for NoStore {
    fn table(&self, _: &str) -> Result<Option<std::sync::Arc<crate::catalog::Table>>> {
        Ok(None)
    }
    fn view(&self, _: &str) -> Result<Option<std::sync::Arc<crate::catalog::View>>> {
        Ok(None)
    }
    fn tables(&self) -> Result<Vec<std::sync::Arc<crate::catalog::Table>>> {
        Ok(Vec::new())
    }
    fn views(&self) -> Result<Vec<std::sync::Arc<crate::catalog::View>>> {
        Ok(Vec::new())
    }
    fn create_table(
        &mut self,
        _: crate::catalog::Table,
    ) -> Result<std::sync::Arc<crate::catalog::Table>> {
        Err(no_store())
    }
    fn drop_table(&mut self, _: &str) -> Result<()> {
        Err(no_store())
    }
    fn create_index(&mut self, _: crate::catalog::Index) -> Result<()> {
        Err(no_store())
    }
    fn drop_index(&mut self, _: &str) -> Result<()> {
        Err(no_store())
    }
    fn create_view(&mut self, _: crate::catalog::View) -> Result<()> {
        Err(no_store())
    }
    fn drop_view(&mut self, _: &str) -> Result<()> {
        Err(no_store())
    }
    fn scan(&self, _: &crate::catalog::Table) -> Result<crate::store::RowIter<'_>> {
        Err(no_store())
    }
    fn index_scan(
        &self,
        _: &crate::catalog::Table,
        _: &crate::catalog::Index,
        _: &crate::store::IndexRange,
    ) -> Result<crate::store::RowIter<'_>> {
        Err(no_store())
    }
    fn get_by_pk(
        &self,
        _: &crate::catalog::Table,
        _: &[Value],
    ) -> Result<Option<(crate::store::RowKey, Row)>> {
        Err(no_store())
    }
    fn insert(&mut self, _: &crate::catalog::Table, _: Row) -> Result<crate::store::RowKey> {
        Err(no_store())
    }
    fn update(
        &mut self,
        _: &crate::catalog::Table,
        _: &crate::store::RowKey,
        _: &Row,
        _: Row,
    ) -> Result<crate::store::RowKey> {
        Err(no_store())
    }
    fn delete(
        &mut self,
        _: &crate::catalog::Table,
        _: &crate::store::RowKey,
        _: &Row,
    ) -> Result<()> {
        Err(no_store())
    }
}

fn no_store() -> Error {
    Error::Invalid("a constant expression reads no table".into())
}
