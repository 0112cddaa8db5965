//! The binder: from the AST to a [`Plan`], resolving every name.
//!
//! Names become positions. A query's FROM clause defines a *scope*: the
//! list of columns its rows have, each with the table (or alias) it came
//! from. Scopes nest: a subquery's scope sits inside its query's, and a
//! column the subquery does not define is looked up outwards; such a
//! reference makes the subquery *correlated* and is bound with a depth
//! (how many scopes out). A subquery with no outer reference is marked
//! uncorrelated, so the executor runs it once and caches the result.
//!
//! Aggregation changes what a row is. Below the `Aggregate` node, rows are
//! FROM rows; above it, rows are the group-by values followed by the
//! aggregates. While binding the SELECT list, HAVING and ORDER BY of an
//! aggregate query, the scope is in *aggregate mode*: an aggregate call
//! becomes a reference to its slot, an expression equal to a GROUP BY
//! expression becomes a reference to that group column, and a bare column
//! that is neither takes its value from one row of the group (SQLite
//! allows that; PostgreSQL refuses it).
//!
//! ORDER BY may name an output column by position (`ORDER BY 2`), by alias,
//! or be any expression over the input; such an expression is computed as
//! a hidden extra output column, sorted on, then dropped.

use std::sync::Arc;

use crate::ast::{
    self, BinaryOp, ExprKind, JoinConstraint, JoinKind, Literal, SelectItem, SetExpr,
};
use crate::catalog::Table;
use crate::error::{Error, Result};
use crate::func::ScalarFunc;
use crate::output::ResultColumn;
use crate::plan::{AggCall, AggFunc, Expr, Plan, SortKey, Subquery};
use crate::store::Store;
use crate::value::{DataType, Value};

/// A bound query: its plan and the columns of its rows.
#[derive(Debug, Clone)]
pub struct BoundQuery {
    /// The plan.
    pub plan: Plan,
    /// The output columns.
    pub columns: Vec<ResultColumn>,
}

/// A column visible in a scope.
#[derive(Debug, Clone)]
struct ScopeColumn {
    /// The table or alias it belongs to (lower case).
    table: Option<String>,
    /// Its name (lower case).
    name: String,
    /// Its type, if known.
    ty: Option<DataType>,
    /// Left out of `*` (the right copy of a USING column).
    hidden: bool,
}

/// The aggregate mode of a scope.
#[derive(Debug, Clone, Default)]
struct AggScope {
    group_exprs: Vec<Expr>,
    aggs: Vec<AggCall>,
    /// Off while binding an aggregate's argument (which reads input rows).
    active: bool,
}

#[derive(Debug, Clone, Default)]
struct Frame {
    columns: Vec<ScopeColumn>,
    agg: Option<AggScope>,
}

/// Views may name views; this caps the nesting so that a cycle errors.
const MAX_VIEW_DEPTH: usize = 32;

/// Resolves names of one statement against a store's catalog.
pub struct Binder<'a> {
    store: &'a dyn Store,
    frames: Vec<Frame>,
    next_subquery_id: usize,
    /// The outermost scope level a column reference reached since the
    /// current subquery began (`usize::MAX`: none).
    min_ref_level: usize,
    view_depth: usize,
    /// The values of `$1`, `$2`, ... when they are known at bind time.
    params: &'a [Value],
}

impl<'a> Binder<'a> {
    /// A binder over `store`'s catalog.
    pub fn new(store: &'a dyn Store) -> Self {
        Binder {
            store,
            frames: Vec::new(),
            next_subquery_id: 0,
            min_ref_level: usize::MAX,
            view_depth: 0,
            params: &[],
        }
    }

    /// The same binder, which writes `$n` as the literal `params[n - 1]`
    /// (a parameter without a value stays a parameter, and fails when
    /// evaluated): PostgreSQL's "custom plan", made for one execution, in
    /// which the optimizer sees the values: `WHERE v BETWEEN $1 AND $2`
    /// becomes an index range, as with constants, and a text value
    /// compared with a number column gets the column's affinity, as a
    /// literal does. A binder without values makes the *generic* plan that
    /// a prepared statement keeps when it is as good (see
    /// [`crate::exec::PlanCache`]).
    pub fn with_params(mut self, params: &'a [Value]) -> Self {
        self.params = params;
        self
    }

    /// Binds a query (SELECT, VALUES, compound) with ORDER BY and LIMIT.
    pub fn bind_query(&mut self, q: &ast::Query) -> Result<BoundQuery> {
        if let SetExpr::Select(sel) = &q.body {
            return self.bind_select(sel, &q.order_by, q.limit.as_ref(), q.offset.as_ref());
        }
        let body = self.bind_set_expr(&q.body)?;
        let mut plan = body.plan;
        if !q.order_by.is_empty() {
            let mut keys = Vec::new();
            for item in &q.order_by {
                let index =
                    self.output_position(&item.expr, &body.columns)?
                        .ok_or_else(|| {
                            Error::Invalid(
                        "ORDER BY term of a compound query does not match any result column".into(),
                    )
                        })?;
                keys.push(sort_key(Expr::col(index), item));
            }
            plan = Plan::Sort {
                input: Box::new(plan),
                keys,
            };
        }
        plan = self.apply_limit(plan, q.limit.as_ref(), q.offset.as_ref())?;
        Ok(BoundQuery {
            plan,
            columns: body.columns,
        })
    }

    /// Binds an expression over the columns of one table (UPDATE and
    /// DELETE).
    pub fn bind_table_expr(&mut self, table: &Table, e: &ast::Expr) -> Result<Expr> {
        self.frames.push(Frame {
            columns: table_columns(table, &table.name),
            agg: None,
        });
        let r = self.bind_expr(e);
        self.frames.pop();
        r
    }

    /// Binds an expression with no columns in scope (DEFAULT, LIMIT).
    pub fn bind_constant(&mut self, e: &ast::Expr) -> Result<Expr> {
        self.frames.push(Frame::default());
        let r = self.bind_expr(e);
        self.frames.pop();
        r
    }

    fn apply_limit(
        &mut self,
        plan: Plan,
        limit: Option<&ast::Expr>,
        offset: Option<&ast::Expr>,
    ) -> Result<Plan> {
        if limit.is_none() && offset.is_none() {
            return Ok(plan);
        }
        let count = |b: &mut Self, e: Option<&ast::Expr>| -> Result<Option<i64>> {
            let Some(e) = e else { return Ok(None) };
            let bound = b.bind_constant(e)?;
            match crate::exec::eval::eval_constant(&bound)? {
                Value::Integer(i) => Ok(Some(i)),
                Value::Real(r) if r.fract() == 0.0 => Ok(Some(r as i64)),
                Value::Null => Ok(None),
                _ => Err(Error::TypeMismatch("LIMIT and OFFSET take integers".into())),
            }
        };
        let limit = count(self, limit)?;
        let offset = count(self, offset)?;
        Ok(Plan::Limit {
            input: Box::new(plan),
            // A negative LIMIT means no limit, as in SQLite.
            limit: limit.and_then(|l| u64::try_from(l).ok()),
            offset: offset.map(|o| o.max(0) as u64).unwrap_or(0),
        })
    }

    /// The output column an ORDER BY term names: by position, by alias or
    /// name, or by an expression equal to an output expression.
    fn output_position(
        &mut self,
        e: &ast::Expr,
        columns: &[ResultColumn],
    ) -> Result<Option<usize>> {
        match &e.kind {
            ExprKind::Literal(Literal::Integer(n)) => {
                let n = *n;
                if n < 1 || n as usize > columns.len() {
                    return Err(Error::Invalid(format!(
                        "ORDER BY term out of range - should be between 1 and {}",
                        columns.len()
                    )));
                }
                Ok(Some(n as usize - 1))
            }
            ExprKind::Column {
                table: None,
                column,
            } => Ok(columns.iter().position(|c| column.matches(&c.name))),
            ExprKind::Column {
                table: Some(_),
                column,
            } => Ok(columns.iter().position(|c| column.matches(&c.name))),
            _ => Ok(None),
        }
    }

    fn bind_set_expr(&mut self, body: &SetExpr) -> Result<BoundQuery> {
        match body {
            SetExpr::Select(sel) => self.bind_select(sel, &[], None, None),
            SetExpr::Query(q) => self.bind_query(q),
            SetExpr::Values(rows) => {
                let width = rows.first().map(Vec::len).unwrap_or(0);
                self.frames.push(Frame::default());
                let mut bound = Vec::new();
                let mut result = Ok(());
                for row in rows {
                    if row.len() != width {
                        result = Err(Error::Invalid(
                            "all VALUES must have the same number of terms".into(),
                        ));
                        break;
                    }
                    match row
                        .iter()
                        .map(|e| self.bind_expr(e))
                        .collect::<Result<Vec<_>>>()
                    {
                        Ok(r) => bound.push(r),
                        Err(e) => {
                            result = Err(e);
                            break;
                        }
                    }
                }
                self.frames.pop();
                result?;
                let columns = (0..width)
                    .map(|i| ResultColumn {
                        name: format!("column{}", i + 1),
                        ty: bound
                            .first()
                            .and_then(|r| r.get(i))
                            .and_then(|e| infer_type(e, &[])),
                    })
                    .collect();
                Ok(BoundQuery {
                    plan: Plan::Values { rows: bound, width },
                    columns,
                })
            }
            SetExpr::SetOp {
                op,
                all,
                left,
                right,
            } => {
                let l = self.bind_set_expr(left)?;
                let r = self.bind_set_expr(right)?;
                if l.columns.len() != r.columns.len() {
                    return Err(Error::Invalid(format!(
                        "SELECTs to the left and right of {op:?} do not have the same number of result columns"
                    )));
                }
                Ok(BoundQuery {
                    plan: Plan::SetOp {
                        op: *op,
                        all: *all,
                        left: Box::new(l.plan),
                        right: Box::new(r.plan),
                    },
                    columns: l.columns,
                })
            }
        }
    }

    fn bind_select(
        &mut self,
        sel: &ast::Select,
        order_by: &[ast::OrderByItem],
        limit: Option<&ast::Expr>,
        offset: Option<&ast::Expr>,
    ) -> Result<BoundQuery> {
        // FROM is bound before this SELECT's scope exists: a derived table
        // cannot see its siblings.
        let (input, columns) = self.bind_from(&sel.from)?;
        self.frames.push(Frame { columns, agg: None });
        let result = self.bind_select_body(sel, order_by, input);
        self.frames.pop();
        let (plan, visible, hidden) = result?;
        let mut plan = self.apply_limit(plan, limit, offset)?;
        if hidden > 0 {
            let n = visible.len();
            plan = Plan::Project {
                input: Box::new(plan),
                exprs: (0..n).map(Expr::col).collect(),
            };
        }
        Ok(BoundQuery {
            plan,
            columns: visible,
        })
    }

    /// Binds WHERE .. ORDER BY of a SELECT whose scope is on top; returns
    /// the plan, the visible columns and the number of hidden sort columns.
    fn bind_select_body(
        &mut self,
        sel: &ast::Select,
        order_by: &[ast::OrderByItem],
        mut input: Plan,
    ) -> Result<(Plan, Vec<ResultColumn>, usize)> {
        if let Some(w) = &sel.selection {
            let predicate = self.bind_expr(w)?;
            input = Plan::Filter {
                input: Box::new(input),
                predicate,
            };
        }
        let input_types: Vec<Option<DataType>> = self.top().columns.iter().map(|c| c.ty).collect();

        let aggregate = !sel.group_by.is_empty()
            || sel.having.is_some()
            || sel.projection.iter().any(|i| match i {
                SelectItem::Expr { expr, .. } => has_aggregate(expr),
                _ => false,
            })
            || order_by.iter().any(|o| has_aggregate(&o.expr));

        if aggregate {
            let mut group_exprs = Vec::new();
            for g in &sel.group_by {
                let e = match &g.kind {
                    ExprKind::Literal(Literal::Integer(n)) => {
                        match sel.projection.get((*n as usize).wrapping_sub(1)) {
                            Some(SelectItem::Expr { expr, .. }) => self.bind_expr(expr)?,
                            _ => {
                                return Err(Error::Invalid(format!(
                                    "GROUP BY term out of range - should be between 1 and {}",
                                    sel.projection.len()
                                )));
                            }
                        }
                    }
                    _ => match self.bind_expr(g) {
                        Ok(e) => e,
                        Err(err @ Error::Undefined { .. }) => {
                            // GROUP BY may name an output alias.
                            match self.alias_expr(sel, g) {
                                Some(expr) => self.bind_expr(&expr)?,
                                None => return Err(err),
                            }
                        }
                        Err(e) => return Err(e),
                    },
                };
                group_exprs.push(e);
            }
            self.top_mut().agg = Some(AggScope {
                group_exprs,
                aggs: Vec::new(),
                active: true,
            });
        }

        // The SELECT list.
        let mut exprs = Vec::new();
        let mut visible = Vec::new();
        let mut item_start = Vec::new();
        for item in &sel.projection {
            item_start.push(exprs.len());
            match item {
                SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(_) => {
                    let qualifier = match item {
                        SelectItem::QualifiedWildcard(t) => Some(t.normalized()),
                        _ => None,
                    };
                    let cols: Vec<(usize, ScopeColumn)> = self
                        .top()
                        .columns
                        .iter()
                        .cloned()
                        .enumerate()
                        .filter(|(_, c)| match &qualifier {
                            Some(q) => c.table.as_deref() == Some(q.as_str()),
                            None => !c.hidden,
                        })
                        .collect();
                    if cols.is_empty() {
                        if let Some(q) = qualifier {
                            return Err(Error::Undefined {
                                kind: "table",
                                name: q,
                            });
                        }
                        return Err(Error::Invalid("no tables specified".into()));
                    }
                    for (i, c) in cols {
                        let e = self.map_input_column(i)?;
                        exprs.push(e);
                        visible.push(ResultColumn {
                            name: c.name.clone(),
                            ty: c.ty,
                        });
                    }
                }
                SelectItem::Expr { expr, alias } => {
                    let e = self.bind_expr(expr)?;
                    let name = match alias {
                        Some(a) => a.value.clone(),
                        None => expr_name(expr),
                    };
                    exprs.push(e);
                    visible.push(ResultColumn { name, ty: None });
                }
            }
        }

        let having = match &sel.having {
            Some(h) => Some(self.bind_expr(h)?),
            None => None,
        };

        // ORDER BY: output columns where possible, hidden columns otherwise.
        let mut keys = Vec::new();
        let mut hidden = 0;
        for item in order_by {
            let by_output = match &item.expr.kind {
                ExprKind::Literal(Literal::Integer(_)) => {
                    self.output_position(&item.expr, &visible)?
                }
                ExprKind::Column {
                    table: None,
                    column,
                } => {
                    // An alias wins over an input column of the same name
                    // only when the input has no such column.
                    let alias = sel
                        .projection
                        .iter()
                        .enumerate()
                        .find_map(|(i, it)| match it {
                            SelectItem::Expr { alias: Some(a), .. } if a.matches(&column.value) => {
                                Some(i)
                            }
                            _ => None,
                        });
                    match alias {
                        Some(i) if self.resolve_local(None, column).is_none() => {
                            item_start.get(i).copied()
                        }
                        _ => None,
                    }
                }
                _ => None,
            };
            let index = match by_output {
                Some(i) => i,
                None => {
                    let e = self.bind_expr(&item.expr)?;
                    match exprs[..visible.len()].iter().position(|x| *x == e) {
                        Some(i) => i,
                        None => {
                            exprs.push(e);
                            hidden += 1;
                            exprs.len() - 1
                        }
                    }
                }
            };
            keys.push(sort_key(Expr::col(index), item));
        }

        // Assemble: [Aggregate -> Having] -> Project -> [Distinct] -> [Sort].
        let mut plan = input;
        let proj_input_types: Vec<Option<DataType>>;
        if let Some(agg) = self.top_mut().agg.take() {
            let mut types: Vec<Option<DataType>> = agg
                .group_exprs
                .iter()
                .map(|e| infer_type(e, &input_types))
                .collect();
            types.extend(agg.aggs.iter().map(|a| agg_type(a, &input_types)));
            proj_input_types = types;
            plan = Plan::Aggregate {
                input: Box::new(plan),
                group_by: agg.group_exprs,
                aggs: agg.aggs,
            };
            if let Some(h) = having {
                plan = Plan::Filter {
                    input: Box::new(plan),
                    predicate: h,
                };
            }
        } else {
            proj_input_types = input_types;
        }
        for (col, e) in visible.iter_mut().zip(&exprs) {
            col.ty = infer_type(e, &proj_input_types);
        }
        plan = Plan::Project {
            input: Box::new(plan),
            exprs,
        };
        if sel.distinct {
            plan = Plan::Distinct {
                input: Box::new(plan),
                key_width: visible.len(),
            };
        }
        if !keys.is_empty() {
            plan = Plan::Sort {
                input: Box::new(plan),
                keys,
            };
        }
        Ok((plan, visible, hidden))
    }

    fn top(&self) -> &Frame {
        // The binder pushes a frame before it binds any expression.
        static EMPTY: Frame = Frame {
            columns: Vec::new(),
            agg: None,
        };
        self.frames.last().unwrap_or(&EMPTY)
    }

    fn top_mut(&mut self) -> &mut Frame {
        if self.frames.is_empty() {
            self.frames.push(Frame::default());
        }
        let last = self.frames.len() - 1;
        &mut self.frames[last]
    }

    /// The expression of the SELECT item whose alias is the bare column
    /// name `g`.
    fn alias_expr(&self, sel: &ast::Select, g: &ast::Expr) -> Option<ast::Expr> {
        let ExprKind::Column {
            table: None,
            column,
        } = &g.kind
        else {
            return None;
        };
        sel.projection.iter().find_map(|it| match it {
            SelectItem::Expr {
                expr,
                alias: Some(a),
            } if a.matches(&column.value) => Some(expr.clone()),
            _ => None,
        })
    }

    /// Column `i` of the current FROM row, as seen from the current mode
    /// (in aggregate mode: a group column or a one-row-of-the-group value).
    fn map_input_column(&mut self, i: usize) -> Result<Expr> {
        let level = self.frames.len() - 1;
        Ok(self.map_column_at(level, i))
    }

    fn map_column_at(&mut self, level: usize, index: usize) -> Expr {
        let depth = self.frames.len() - 1 - level;
        let frame = &mut self.frames[level];
        if let Some(agg) = frame.agg.as_mut().filter(|a| a.active) {
            let plain = Expr::col(index);
            if let Some(k) = agg.group_exprs.iter().position(|g| *g == plain) {
                return Expr::Column { depth, index: k };
            }
            let call = AggCall {
                func: AggFunc::AnyValue,
                arg: Some(plain),
                separator: None,
                distinct: false,
            };
            let j = match agg.aggs.iter().position(|a| *a == call) {
                Some(j) => j,
                None => {
                    agg.aggs.push(call);
                    agg.aggs.len() - 1
                }
            };
            return Expr::Column {
                depth,
                index: agg.group_exprs.len() + j,
            };
        }
        Expr::Column { depth, index }
    }

    /// Finds a column in the innermost scope only.
    fn resolve_local(&self, table: Option<&ast::Ident>, column: &ast::Ident) -> Option<usize> {
        find_in(&self.top().columns, table, column).ok().flatten()
    }

    fn resolve_column(&mut self, table: Option<&ast::Ident>, column: &ast::Ident) -> Result<Expr> {
        for level in (0..self.frames.len()).rev() {
            if let Some(i) = find_in(&self.frames[level].columns, table, column)? {
                self.min_ref_level = self.min_ref_level.min(level);
                return Ok(self.map_column_at(level, i));
            }
        }
        let name = match table {
            Some(t) => format!("{}.{}", t.value, column.value),
            None => column.value.clone(),
        };
        Err(Error::Undefined {
            kind: "column",
            name,
        })
    }

    fn bind_from(&mut self, from: &[ast::TableRef]) -> Result<(Plan, Vec<ScopeColumn>)> {
        let mut acc: Option<(Plan, Vec<ScopeColumn>)> = None;
        for t in from {
            let (plan, cols) = self.bind_table_ref(t)?;
            acc = Some(match acc {
                None => (plan, cols),
                Some((lp, mut lc)) => {
                    lc.extend(cols);
                    (
                        Plan::Join {
                            left: Box::new(lp),
                            right: Box::new(plan),
                            kind: JoinKind::Cross,
                            on: None,
                        },
                        lc,
                    )
                }
            });
        }
        Ok(acc.unwrap_or((
            Plan::Values {
                rows: vec![vec![]],
                width: 0,
            },
            Vec::new(),
        )))
    }

    fn bind_table_ref(&mut self, t: &ast::TableRef) -> Result<(Plan, Vec<ScopeColumn>)> {
        match t {
            ast::TableRef::Table { name, alias } => {
                let alias_name = alias.as_ref().unwrap_or(name).normalized();
                if let Some(table) = self.store.table(&name.normalized())? {
                    let cols = table_columns(&table, &alias_name);
                    return Ok((
                        Plan::Scan {
                            table,
                            columns: None,
                        },
                        cols,
                    ));
                }
                if let Some(view) = self.store.view(&name.normalized())? {
                    if self.view_depth >= MAX_VIEW_DEPTH {
                        return Err(Error::Invalid(format!(
                            "view {} nests views too deeply (a cycle?)",
                            view.name
                        )));
                    }
                    let stmts = crate::parser::parse(&view.sql)?;
                    let query = match stmts.as_slice() {
                        [ast::Statement::Query(q)] => q,
                        _ => {
                            return Err(Error::Corrupted(format!(
                                "view {} does not hold one query",
                                view.name
                            )));
                        }
                    };
                    // A view sees no scope of the query that uses it.
                    let saved = std::mem::take(&mut self.frames);
                    self.view_depth += 1;
                    let bound = self.bind_query(query);
                    self.view_depth -= 1;
                    self.frames = saved;
                    let bound = bound?;
                    let names: Vec<String> = match &view.columns {
                        Some(c) => c.clone(),
                        None => bound
                            .columns
                            .iter()
                            .map(|c| c.name.to_ascii_lowercase())
                            .collect(),
                    };
                    let cols = names
                        .into_iter()
                        .zip(&bound.columns)
                        .map(|(n, c)| ScopeColumn {
                            table: Some(alias_name.clone()),
                            name: n,
                            ty: c.ty,
                            hidden: false,
                        })
                        .collect();
                    return Ok((bound.plan, cols));
                }
                Err(Error::Undefined {
                    kind: "table",
                    name: name.value.clone(),
                })
            }
            ast::TableRef::Subquery { query, alias } => {
                let bound = self.bind_query(query)?;
                let table = alias.as_ref().map(|a| a.normalized());
                let cols = bound
                    .columns
                    .iter()
                    .map(|c| ScopeColumn {
                        table: table.clone(),
                        name: c.name.to_ascii_lowercase(),
                        ty: c.ty,
                        hidden: false,
                    })
                    .collect();
                Ok((bound.plan, cols))
            }
            ast::TableRef::Join {
                left,
                right,
                kind,
                constraint,
            } => {
                let (lp, lc) = self.bind_table_ref(left)?;
                let (rp, mut rc) = self.bind_table_ref(right)?;
                let left_width = lc.len();
                // USING and NATURAL become equalities; the right copies of
                // the shared columns are left out of `*`.
                let shared: Vec<String> = match constraint {
                    JoinConstraint::Using(cols) => cols.iter().map(|c| c.normalized()).collect(),
                    JoinConstraint::Natural => lc
                        .iter()
                        .filter(|l| rc.iter().any(|r| r.name == l.name))
                        .map(|l| l.name.clone())
                        .collect(),
                    _ => Vec::new(),
                };
                let mut equalities = Vec::new();
                for name in &shared {
                    let li = lc.iter().position(|c| &c.name == name);
                    let ri = rc.iter().position(|c| &c.name == name);
                    let (Some(li), Some(ri)) = (li, ri) else {
                        return Err(Error::Undefined {
                            kind: "column",
                            name: name.clone(),
                        });
                    };
                    rc[ri].hidden = true;
                    equalities.push(Expr::Binary(
                        BinaryOp::Eq,
                        Box::new(Expr::col(li)),
                        Box::new(Expr::col(left_width + ri)),
                    ));
                }
                let mut cols = lc;
                cols.extend(rc);
                let on = match constraint {
                    JoinConstraint::On(e) => {
                        self.frames.push(Frame {
                            columns: cols.clone(),
                            agg: None,
                        });
                        let r = self.bind_expr(e);
                        self.frames.pop();
                        Some(r?)
                    }
                    _ => Expr::and_all(equalities),
                };
                let kind = match (kind, &on) {
                    (JoinKind::Cross, Some(_)) => JoinKind::Inner,
                    (k, _) => *k,
                };
                Ok((
                    Plan::Join {
                        left: Box::new(lp),
                        right: Box::new(rp),
                        kind,
                        on,
                    },
                    cols,
                ))
            }
        }
    }

    fn bind_subquery(&mut self, q: &ast::Query) -> Result<Subquery> {
        let saved = self.min_ref_level;
        self.min_ref_level = usize::MAX;
        let level = self.frames.len();
        let bound = self.bind_query(q);
        let reached = self.min_ref_level;
        self.min_ref_level = saved.min(reached);
        let bound = bound?;
        let id = self.next_subquery_id;
        self.next_subquery_id += 1;
        Ok(Subquery {
            id,
            correlated: reached < level,
            plan: Box::new(bound.plan),
        })
    }

    /// A subquery used as a value or an IN list: it must return one column.
    fn bind_one_column_subquery(&mut self, q: &ast::Query) -> Result<Subquery> {
        let sq = self.bind_subquery(q)?;
        let width = sq.plan.width();
        if width != 1 {
            return Err(Error::Invalid(format!(
                "sub-select returns {width} columns - expected 1"
            )));
        }
        Ok(sq)
    }

    /// Binds an expression in the innermost scope, in its current mode.
    pub fn bind_expr(&mut self, e: &ast::Expr) -> Result<Expr> {
        let agg_active = self
            .frames
            .last()
            .and_then(|f| f.agg.as_ref())
            .is_some_and(|a| a.active);
        if agg_active {
            if let ExprKind::Function {
                name,
                args,
                distinct,
                star,
            } = &e.kind
                && let Some(func) = aggregate_of(name, args.len(), *star)
            {
                return self.bind_aggregate(func, args, *distinct);
            }
            // An expression equal to a GROUP BY term reads the group column.
            if !matches!(e.kind, ExprKind::Literal(_) | ExprKind::Column { .. })
                && !has_aggregate(e)
                && !has_subquery(e)
            {
                self.set_agg_active(false);
                let plain = self.bind_expr(e);
                self.set_agg_active(true);
                if let Ok(plain) = plain {
                    let groups = self.top().agg.as_ref().map(|a| &a.group_exprs);
                    if let Some(k) = groups.and_then(|g| g.iter().position(|x| *x == plain)) {
                        return Ok(Expr::col(k));
                    }
                }
            }
        }
        let b = |s: &mut Self, e: &ast::Expr| s.bind_expr(e).map(Box::new);
        Ok(match &e.kind {
            ExprKind::Literal(l) => Expr::Literal(match l {
                Literal::Null => Value::Null,
                Literal::Integer(i) => Value::Integer(*i),
                Literal::Real(r) => Value::Real(*r),
                Literal::Text(t) => Value::text(t),
                Literal::Boolean(v) => Value::Boolean(*v),
            }),
            ExprKind::Column { table, column } => self.resolve_column(table.as_ref(), column)?,
            ExprKind::Parameter(n) => {
                let i = (*n as usize).saturating_sub(1);
                match self.params.get(i) {
                    Some(v) => Expr::Literal(v.clone()),
                    None => Expr::Param(i),
                }
            }
            ExprKind::Unary { op, expr } => Expr::Unary(*op, b(self, expr)?),
            ExprKind::Binary { op, left, right } => {
                let (mut l, mut r) = (b(self, left)?, b(self, right)?);
                if is_comparison(*op) {
                    self.apply_comparison_affinity(left, &mut l, right, &mut r);
                }
                Expr::Binary(*op, l, r)
            }
            ExprKind::IsNull { expr, negated } => Expr::IsNull(b(self, expr)?, *negated),
            ExprKind::Between {
                expr,
                low,
                high,
                negated,
            } => Expr::Between {
                expr: b(self, expr)?,
                low: b(self, low)?,
                high: b(self, high)?,
                negated: *negated,
            },
            ExprKind::InList {
                expr,
                list,
                negated,
            } => {
                let operand = b(self, expr)?;
                let ty = self.column_type_of(expr);
                let mut items = Vec::with_capacity(list.len());
                for item in list {
                    let mut x = self.bind_expr(item)?;
                    if let (Some(ty), Expr::Literal(v @ Value::Text(_))) = (ty, &mut x)
                        && ty != DataType::Text
                    {
                        *v = v.apply_affinity(ty);
                    }
                    items.push(x);
                }
                Expr::InList {
                    expr: operand,
                    list: items,
                    negated: *negated,
                }
            }
            ExprKind::InSubquery {
                expr,
                query,
                negated,
            } => Expr::InSubquery {
                expr: b(self, expr)?,
                subquery: self.bind_one_column_subquery(query)?,
                negated: *negated,
            },
            ExprKind::Exists { query, negated } => Expr::Exists {
                subquery: self.bind_subquery(query)?,
                negated: *negated,
            },
            ExprKind::Subquery(q) => Expr::Scalar(self.bind_one_column_subquery(q)?),
            ExprKind::Case {
                operand,
                branches,
                else_result,
            } => Expr::Case {
                operand: match operand {
                    Some(o) => Some(b(self, o)?),
                    None => None,
                },
                branches: branches
                    .iter()
                    .map(|(w, t)| Ok((self.bind_expr(w)?, self.bind_expr(t)?)))
                    .collect::<Result<_>>()?,
                else_result: match else_result {
                    Some(e) => Some(b(self, e)?),
                    None => None,
                },
            },
            ExprKind::Cast { expr, ty } => Expr::Cast(b(self, expr)?, *ty),
            ExprKind::Function {
                name,
                args,
                star,
                distinct,
            } => {
                if aggregate_of(name, args.len(), *star).is_some() {
                    return Err(Error::Invalid(format!(
                        "misuse of aggregate function {}()",
                        name.value
                    )));
                }
                let _ = distinct;
                let f = ScalarFunc::lookup(&name.value, args.len()).ok_or_else(|| {
                    Error::Undefined {
                        kind: "function",
                        name: format!("{}({} arguments)", name.value, args.len()),
                    }
                })?;
                Expr::Function(
                    f,
                    args.iter()
                        .map(|a| self.bind_expr(a))
                        .collect::<Result<_>>()?,
                )
            }
            ExprKind::Like {
                expr,
                pattern,
                negated,
            } => Expr::Like {
                expr: b(self, expr)?,
                pattern: b(self, pattern)?,
                negated: *negated,
            },
        })
    }

    fn set_agg_active(&mut self, active: bool) {
        if let Some(agg) = self.top_mut().agg.as_mut() {
            agg.active = active;
        }
    }

    fn bind_aggregate(
        &mut self,
        func: AggFunc,
        args: &[ast::Expr],
        distinct: bool,
    ) -> Result<Expr> {
        self.set_agg_active(false);
        let bound: Result<Vec<Expr>> = args.iter().map(|a| self.bind_expr(a)).collect();
        self.set_agg_active(true);
        let mut bound = bound?.into_iter();
        let call = AggCall {
            func,
            arg: bound.next(),
            separator: bound.next(),
            distinct,
        };
        let frame = self.top_mut();
        let agg = frame
            .agg
            .as_mut()
            .ok_or_else(|| Error::Invalid("aggregate outside an aggregate query".into()))?;
        let j = match agg.aggs.iter().position(|a| *a == call) {
            Some(j) => j,
            None => {
                agg.aggs.push(call);
                agg.aggs.len() - 1
            }
        };
        Ok(Expr::col(agg.group_exprs.len() + j))
    }

    /// The declared type of `e` if it is a plain column reference.
    fn column_type_of(&self, e: &ast::Expr) -> Option<DataType> {
        let ExprKind::Column { table, column } = &e.kind else {
            return None;
        };
        for frame in self.frames.iter().rev() {
            if let Ok(Some(i)) = find_in(&frame.columns, table.as_ref(), column) {
                return frame.columns[i].ty;
            }
        }
        None
    }

    /// SQLite compares a numeric column with a text constant after it
    /// converts the text to a number (the column's affinity): `a = '5'`
    /// matches the integer 5.
    fn apply_comparison_affinity(
        &self,
        left_ast: &ast::Expr,
        left: &mut Expr,
        right_ast: &ast::Expr,
        right: &mut Expr,
    ) {
        for (col_ast, other) in [(left_ast, &mut *right), (right_ast, &mut *left)] {
            if let Some(ty @ (DataType::Integer | DataType::Real)) = self.column_type_of(col_ast)
                && let Expr::Literal(v @ Value::Text(_)) = other
            {
                *v = v.apply_affinity(ty);
            }
        }
    }
}

fn is_comparison(op: BinaryOp) -> bool {
    matches!(
        op,
        BinaryOp::Eq
            | BinaryOp::NotEq
            | BinaryOp::Lt
            | BinaryOp::LtEq
            | BinaryOp::Gt
            | BinaryOp::GtEq
    )
}

/// Looks a column up in one scope: `Ok(None)` if absent, an error if more
/// than one table has it.
fn find_in(
    cols: &[ScopeColumn],
    table: Option<&ast::Ident>,
    column: &ast::Ident,
) -> Result<Option<usize>> {
    let mut found = None;
    for (i, c) in cols.iter().enumerate() {
        if !column.matches(&c.name) {
            continue;
        }
        if let Some(t) = table
            && !c.table.as_deref().is_some_and(|n| t.matches(n))
        {
            continue;
        }
        if found.is_some() {
            // The hidden right copy of a USING column is the same value.
            if c.hidden {
                continue;
            }
            return Err(Error::Duplicate {
                kind: "column",
                name: column.value.clone(),
                what: "is ambiguous",
            });
        }
        found = Some(i);
    }
    Ok(found)
}

fn table_columns(table: &Table, alias: &str) -> Vec<ScopeColumn> {
    table
        .columns
        .iter()
        .map(|c| ScopeColumn {
            table: Some(alias.to_string()),
            name: c.name.clone(),
            ty: Some(c.ty),
            hidden: false,
        })
        .collect()
}

fn sort_key(expr: Expr, item: &ast::OrderByItem) -> SortKey {
    SortKey {
        expr,
        desc: item.desc,
        // SQLite: NULL is the smallest value, so first ascending.
        nulls_first: item.nulls_first.unwrap_or(!item.desc),
    }
}

/// The aggregate a call names, if it is one (`min`/`max` with two or more
/// arguments are scalar functions).
fn aggregate_of(name: &ast::Ident, argc: usize, star: bool) -> Option<AggFunc> {
    if star {
        return name.matches("count").then_some(AggFunc::Count);
    }
    AggFunc::lookup(&name.value, argc)
}

/// Whether an expression calls an aggregate outside any subquery.
fn has_aggregate(e: &ast::Expr) -> bool {
    let mut found = false;
    walk_ast(e, &mut |x| {
        if let ExprKind::Function {
            name, args, star, ..
        } = &x.kind
        {
            found |= aggregate_of(name, args.len(), *star).is_some();
        }
    });
    found
}

fn has_subquery(e: &ast::Expr) -> bool {
    let mut found = false;
    walk_ast(e, &mut |x| {
        found |= matches!(
            x.kind,
            ExprKind::Subquery(_) | ExprKind::Exists { .. } | ExprKind::InSubquery { .. }
        );
    });
    found
}

/// Visits `e` and its sub-expressions, not entering subqueries.
fn walk_ast(e: &ast::Expr, f: &mut dyn FnMut(&ast::Expr)) {
    f(e);
    match &e.kind {
        ExprKind::Literal(_) | ExprKind::Column { .. } | ExprKind::Parameter(_) => {}
        ExprKind::Unary { expr, .. }
        | ExprKind::IsNull { expr, .. }
        | ExprKind::Cast { expr, .. }
        | ExprKind::InSubquery { expr, .. } => walk_ast(expr, f),
        ExprKind::Binary { left, right, .. } => {
            walk_ast(left, f);
            walk_ast(right, f);
        }
        ExprKind::Between {
            expr, low, high, ..
        } => {
            walk_ast(expr, f);
            walk_ast(low, f);
            walk_ast(high, f);
        }
        ExprKind::InList { expr, list, .. } => {
            walk_ast(expr, f);
            list.iter().for_each(|x| walk_ast(x, f));
        }
        ExprKind::Exists { .. } | ExprKind::Subquery(_) => {}
        ExprKind::Case {
            operand,
            branches,
            else_result,
        } => {
            if let Some(o) = operand {
                walk_ast(o, f);
            }
            for (w, t) in branches {
                walk_ast(w, f);
                walk_ast(t, f);
            }
            if let Some(x) = else_result {
                walk_ast(x, f);
            }
        }
        ExprKind::Function { args, .. } => args.iter().for_each(|x| walk_ast(x, f)),
        ExprKind::Like { expr, pattern, .. } => {
            walk_ast(expr, f);
            walk_ast(pattern, f);
        }
    }
}

/// The name of an unaliased output column: a column's name, else the
/// expression as text.
fn expr_name(e: &ast::Expr) -> String {
    match &e.kind {
        ExprKind::Column { column, .. } => column.value.clone(),
        _ => ast_text(e),
    }
}

/// The static type of a bound expression over rows of `input` types.
pub(crate) fn infer_type(e: &Expr, input: &[Option<DataType>]) -> Option<DataType> {
    use BinaryOp::*;
    match e {
        Expr::Literal(v) => v.data_type(),
        Expr::Column { depth: 0, index } => input.get(*index).copied().flatten(),
        Expr::Column { .. } | Expr::Param(_) => None,
        Expr::Unary(crate::ast::UnaryOp::Not, _) => Some(DataType::Boolean),
        Expr::Unary(_, x) => infer_type(x, input),
        Expr::Binary(op, a, b) => match op {
            Add | Sub | Mul | Div | Mod => match (infer_type(a, input), infer_type(b, input)) {
                (Some(DataType::Real), _) | (_, Some(DataType::Real)) => Some(DataType::Real),
                (Some(_), Some(_)) => Some(DataType::Integer),
                _ => None,
            },
            Concat => Some(DataType::Text),
            BitAnd | BitOr | ShiftLeft | ShiftRight => Some(DataType::Integer),
            _ => Some(DataType::Boolean),
        },
        Expr::IsNull(..) | Expr::Between { .. } | Expr::InList { .. } | Expr::InSubquery { .. } => {
            Some(DataType::Boolean)
        }
        Expr::Exists { .. } | Expr::Like { .. } => Some(DataType::Boolean),
        Expr::Scalar(_) => None,
        Expr::Case {
            branches,
            else_result,
            ..
        } => branches
            .iter()
            .map(|(_, t)| t)
            .chain(else_result.as_deref())
            .find_map(|t| infer_type(t, input)),
        Expr::Cast(_, ty) => Some(*ty),
        Expr::Function(f, args) => match f {
            ScalarFunc::Length => Some(DataType::Integer),
            ScalarFunc::Upper | ScalarFunc::Lower | ScalarFunc::Substr | ScalarFunc::TypeOf => {
                Some(DataType::Text)
            }
            ScalarFunc::Round => Some(DataType::Real),
            _ => args.iter().find_map(|a| infer_type(a, input)),
        },
    }
}

fn agg_type(a: &AggCall, input: &[Option<DataType>]) -> Option<DataType> {
    let arg = a.arg.as_ref().and_then(|e| infer_type(e, input));
    match a.func {
        AggFunc::Count => Some(DataType::Integer),
        AggFunc::Avg | AggFunc::Total => Some(DataType::Real),
        AggFunc::Sum => match arg {
            Some(DataType::Integer) | Some(DataType::Boolean) => Some(DataType::Integer),
            Some(_) => Some(DataType::Real),
            None => None,
        },
        AggFunc::GroupConcat => Some(DataType::Text),
        AggFunc::Min | AggFunc::Max | AggFunc::AnyValue => arg,
    }
}

/// The table a statement names, or an "unknown table" error.
pub(crate) fn lookup_table(store: &dyn Store, name: &ast::Ident) -> Result<Arc<Table>> {
    store
        .table(&name.normalized())?
        .ok_or_else(|| Error::Undefined {
            kind: "table",
            name: name.value.clone(),
        })
}

/// An expression printed back as SQL (the name of an unaliased result
/// column, as SQLite names it after the text written).
pub(crate) fn ast_text(e: &ast::Expr) -> String {
    use crate::plan::binop_str;
    let t = ast_text;
    match &e.kind {
        ExprKind::Literal(l) => match l {
            Literal::Null => "NULL".into(),
            Literal::Integer(i) => i.to_string(),
            Literal::Real(r) => Value::Real(*r).to_string(),
            Literal::Text(s) => format!("'{}'", s.replace('\'', "''")),
            Literal::Boolean(b) => if *b { "TRUE" } else { "FALSE" }.into(),
        },
        ExprKind::Column { table, column } => match table {
            Some(tb) => format!("{}.{}", tb.value, column.value),
            None => column.value.clone(),
        },
        ExprKind::Parameter(n) => format!("${n}"),
        ExprKind::Unary { op, expr } => {
            let o = match op {
                ast::UnaryOp::Neg => "-",
                ast::UnaryOp::Plus => "+",
                ast::UnaryOp::Not => "NOT ",
                ast::UnaryOp::BitNot => "~",
            };
            format!("{o}{}", t(expr))
        }
        ExprKind::Binary { op, left, right } => {
            format!("{}{}{}", t(left), binop_str(*op), t(right))
        }
        ExprKind::IsNull { expr, negated } => {
            format!("{} IS {}NULL", t(expr), if *negated { "NOT " } else { "" })
        }
        ExprKind::Between {
            expr,
            low,
            high,
            negated,
        } => format!(
            "{} {}BETWEEN {} AND {}",
            t(expr),
            if *negated { "NOT " } else { "" },
            t(low),
            t(high)
        ),
        ExprKind::InList {
            expr,
            list,
            negated,
        } => format!(
            "{} {}IN ({})",
            t(expr),
            if *negated { "NOT " } else { "" },
            list.iter().map(t).collect::<Vec<_>>().join(",")
        ),
        ExprKind::InSubquery { expr, negated, .. } => {
            format!(
                "{} {}IN (SELECT ...)",
                t(expr),
                if *negated { "NOT " } else { "" }
            )
        }
        ExprKind::Exists { negated, .. } => {
            format!("{}EXISTS (SELECT ...)", if *negated { "NOT " } else { "" })
        }
        ExprKind::Subquery(_) => "(SELECT ...)".into(),
        ExprKind::Case { .. } => "CASE ... END".into(),
        ExprKind::Cast { expr, ty } => format!("CAST({} AS {ty})", t(expr)),
        ExprKind::Function {
            name,
            args,
            distinct,
            star,
        } => {
            if *star {
                format!("{}(*)", name.value)
            } else {
                format!(
                    "{}({}{})",
                    name.value,
                    if *distinct { "DISTINCT " } else { "" },
                    args.iter().map(t).collect::<Vec<_>>().join(",")
                )
            }
        }
        ExprKind::Like {
            expr,
            pattern,
            negated,
        } => format!(
            "{} {}LIKE {}",
            t(expr),
            if *negated { "NOT " } else { "" },
            t(pattern)
        ),
    }
}
