//! Plans of prepared statements, made once and run many times.
//!
//! A statement prepared by [`Session::prepare`](crate::Session::prepare)
//! is parsed once; this module keeps its *plan* too, so that running it
//! again with new values skips binding (name resolution against the
//! catalog) and optimization, which for a one-row statement such as
//! `SELECT ... WHERE id = $1` cost more than reading the row.
//!
//! # Generic and custom plans
//!
//! The idea and the words are PostgreSQL's (`plan_cache_mode`): a
//! *custom* plan is made for one execution with the parameter values
//! written in as constants; a *generic* plan keeps `$1`, `$2`, ... as
//! parameters (`Expr::Param`) that the executor reads from the
//! statement's context at run time, so one plan serves every execution.
//! SQLite goes further: `sqlite3_prepare` compiles a statement into a
//! VDBE program once and `sqlite3_bind_*` only fills its registers, so
//! every SQLite statement runs a "generic plan".
//!
//! A generic plan can be worse than a custom one, because the planner
//! knows less: `WHERE val BETWEEN $1 AND $2` cannot become an index range
//! when the bounds are unknown (pydb's index ranges hold constants), so
//! the generic plan scans the table. PostgreSQL compares the generic
//! plan's estimated cost with the custom plans' average after five
//! executions. pydb uses a simpler, exact rule, at the first execution:
//! it makes both plans, writes the values into the generic one, and
//! keeps the generic plan only when the result *is* the custom plan
//! ([`same_plan`]). `WHERE id = $1` passes: the planner turns `pk = $n`
//! into a primary-key lookup whose key is read at run time, when `$n` has
//! the key column's type. When the planner did something with a value
//! that it cannot do with a parameter (an index range, a folded
//! constant, `ORDER BY 2` read as a column number, a text value converted
//! to a number column's type), the plans differ and the statement is
//! marked *custom*: every execution binds and plans with its values, as
//! before, without trying again until the catalog or the types change.
//! A statement with a text value is always custom (see `plan_generic`).
//!
//! # When a kept plan is made again
//!
//! A plan names tables and indexes and holds their definitions, so it is
//! valid for one catalog only. Each entry keeps the [`CatalogToken`] of
//! the catalog it was made against, and the types of the parameter
//! values it was made for (a `TEXT` value where the plan expected an
//! `INTEGER` key must not reach a primary-key lookup: SQL would compare
//! it with the column's affinity, a lookup would miss). At every
//! execution both are checked: another catalog (any CREATE, DROP, ALTER,
//! ANALYZE committed since, or made by this transaction) or other types,
//! and the statement is planned again. A cached plan therefore never runs
//! against a schema it was not made for (PostgreSQL invalidates its
//! cached plans on catalog changes the same way; SQLite's
//! `sqlite3_step` returns `SQLITE_SCHEMA` and re-prepares).
//!
//! Only queries, INSERT, UPDATE and DELETE are kept; a store that gives
//! no catalog token ([`Store::catalog_token`]) keeps nothing.

use std::sync::Arc;

use parking_lot::RwLock;

use super::{
    ExecContext, apply_update, bind_assignments, delete_rows, execute, insert_plan, insert_rows,
    run,
};
use crate::ast::{self, Statement};
use crate::bind::{Binder, lookup_table};
use crate::catalog::Table;
use crate::error::Result;
use crate::output::{Output, ResultColumn, Rows};
use crate::plan::cost::Estimator;
use crate::plan::rules::{for_each_expr_mut, map_children, optimize, optimize_target};
use crate::plan::{Expr, Plan};
use crate::store::{CatalogToken, Store};
use crate::value::{DataType, Row, Value};

/// The kept plan of one prepared statement (empty until its first
/// execution). Shared by clones of the statement.
///
/// Behind a read-write lock: executions read the kept entry (a point read
/// reads it in place, under the read lock, without cloning an `Arc`, each
/// clone and drop being an atomic read-modify-write); only a new plan
/// writes it.
#[derive(Debug, Default)]
pub struct PlanCache {
    entry: RwLock<Option<Arc<Entry>>>,
}

impl PlanCache {
    /// An empty cache.
    pub fn new() -> Self {
        PlanCache::default()
    }

    /// Whether a generic plan is kept (for tests: a custom-only statement
    /// or an empty cache answers `false`).
    pub fn holds_generic_plan(&self) -> bool {
        self.entry
            .read()
            .as_ref()
            .is_some_and(|e| !matches!(e.plan, Kept::Custom))
    }

    /// How many times a plan was made for the cache (for tests: it grows
    /// when the catalog or the parameter types change).
    pub fn plans_made(&self) -> u64 {
        self.entry.read().as_ref().map_or(0, |e| e.generation)
    }

    /// `read` of the kept point read and the catalog it was made against
    /// (the caller checks that this catalog is still current), when the
    /// kept plan is one and was made for parameter values of `params`'
    /// types; `None` otherwise. `read` runs under the cache's read lock: it
    /// must not prepare or execute this statement.
    pub(crate) fn with_point_read<T>(
        &self,
        params: &[Value],
        read: impl FnOnce(&CatalogToken, &PointRead) -> T,
    ) -> Option<T> {
        let slot = self.entry.read();
        let entry = slot.as_ref()?;
        let point = entry.point.as_ref()?;
        let same_types = entry.types.len() == params.len()
            && entry
                .types
                .iter()
                .zip(params)
                .all(|(t, v)| *t == v.data_type());
        same_types.then(|| read(&entry.catalog, point))
    }

    /// The kept plan, if it was made against `catalog` for parameter
    /// values of the types of `params` (compared in place: a hit builds
    /// no list of types).
    fn get(&self, catalog: &CatalogToken, params: &[Value]) -> Option<Arc<Entry>> {
        self.entry
            .read()
            .as_ref()
            .filter(|e| {
                e.catalog.same(catalog)
                    && e.types.len() == params.len()
                    && e.types.iter().zip(params).all(|(t, p)| *t == p.data_type())
            })
            .cloned()
    }
}

#[derive(Debug)]
struct Entry {
    /// The catalog the plan was made against.
    catalog: CatalogToken,
    /// The types of the parameter values it was made for.
    types: Vec<Option<DataType>>,
    plan: Kept,
    /// The plan as a point read, when it is one (see [`PointRead`]).
    point: Option<PointRead>,
    /// Plans made for this cache so far, this one included.
    generation: u64,
}

/// A kept query plan that reads one row by primary key and returns some
/// of its columns: `SELECT a, b FROM t WHERE pk = $1`. Outside `BEGIN`
/// the session runs it without a transaction, as a single read of the
/// latest commit (see `Session::execute_prepared`); everything it needs
/// per execution is here, so that run binds, plans and builds nothing.
#[derive(Debug)]
pub(crate) struct PointRead {
    /// The table read.
    pub(crate) table: Arc<Table>,
    /// The primary key: constants or parameters, in key column order.
    key: Vec<Expr>,
    /// The table columns returned, in output order (`None`: all of them,
    /// in table order).
    pub(crate) outputs: Option<Vec<usize>>,
    /// The table columns `outputs` names, one flag per column (empty:
    /// all of them): the others are not decoded.
    pub(crate) wanted: Vec<bool>,
    /// The result's columns (the kept plan's, shared).
    pub(crate) columns: Arc<[ResultColumn]>,
}

impl PointRead {
    /// The shape of `plan`, if it is a point read: a `PkLookup` whose key
    /// is constants and parameters, under at most a projection of plain
    /// columns.
    fn of(plan: &Plan, columns: &Arc<[ResultColumn]>) -> Option<PointRead> {
        let (lookup, outputs) = match plan {
            Plan::Project { input, exprs } => {
                let outputs = exprs
                    .iter()
                    .map(|e| match e {
                        Expr::Column { depth: 0, index } => Some(*index),
                        _ => None,
                    })
                    .collect::<Option<Vec<_>>>()?;
                (&**input, Some(outputs))
            }
            plan => (plan, None),
        };
        // A projection of every column in table order returns the row.
        let outputs = outputs.filter(|o| !o.iter().copied().eq(0..lookup.width()));
        // The planner keeps the equalities the lookup came from as a
        // filter over it; they hold for the row the key finds (checked at
        // run time: see `key_values`), so they are no work to redo.
        let (lookup, recheck) = match lookup {
            Plan::Filter { input, predicate } => (&**input, Some(predicate)),
            plan => (plan, None),
        };
        let Plan::PkLookup { table, key } = lookup else {
            return None;
        };
        if recheck.is_some_and(|p| !Self::is_key_equality(p, table, key)) {
            return None;
        }
        let plain = key
            .iter()
            .all(|e| matches!(e, Expr::Literal(_) | Expr::Param(_)));
        let width = outputs.as_ref().map_or(table.columns.len(), Vec::len);
        let in_table = outputs
            .as_ref()
            .is_none_or(|o| o.iter().all(|&i| i < table.columns.len()));
        (plain && in_table && !table.primary_key.is_empty() && width == columns.len()).then(|| {
            let wanted = outputs.as_ref().map_or_else(Vec::new, |o| {
                (0..table.columns.len()).map(|c| o.contains(&c)).collect()
            });
            PointRead {
                table: table.clone(),
                key: key.clone(),
                outputs,
                wanted,
                columns: columns.clone(),
            }
        })
    }

    /// Whether `predicate` is a conjunction of `pk column = its key
    /// expression` only.
    fn is_key_equality(predicate: &Expr, table: &Table, key: &[Expr]) -> bool {
        match predicate {
            Expr::Binary(ast::BinaryOp::And, a, b) => {
                Self::is_key_equality(a, table, key) && Self::is_key_equality(b, table, key)
            }
            Expr::Binary(ast::BinaryOp::Eq, a, b) => {
                let pair = match (&**a, &**b) {
                    (Expr::Column { depth: 0, index }, e)
                    | (e, Expr::Column { depth: 0, index }) => Some((*index, e)),
                    _ => None,
                };
                pair.is_some_and(|(column, e)| {
                    table
                        .primary_key
                        .iter()
                        .zip(key)
                        .any(|(&c, k)| c == column && k == e)
                })
            }
            _ => false,
        }
    }

    /// The primary key's values for `params`; `None` when the statement
    /// must take the ordinary path: a parameter is missing (it reports
    /// that), or a value is NULL or NaN, for which `pk = value` is not
    /// true even of the row the key would find.
    ///
    /// The values are borrowed from the plan and `params`: the row key is
    /// encoded straight from them, with no vector of copies in between.
    pub(crate) fn key_values<'a>(
        &'a self,
        params: &'a [Value],
    ) -> Option<impl Iterator<Item = &'a Value> + 'a> {
        let value_of = move |e: &'a Expr| match e {
            Expr::Literal(v) => Some(v),
            Expr::Param(i) => params.get(*i),
            _ => None,
        };
        let usable = |v: Option<&Value>| match v {
            None | Some(Value::Null) => false,
            Some(Value::Real(r)) => !r.is_nan(),
            Some(_) => true,
        };
        // Checked first, so that the iterator (which skips nothing, as
        // every value is there) yields exactly the key's values.
        self.key
            .iter()
            .all(|e| usable(value_of(e)))
            .then(|| self.key.iter().filter_map(value_of))
    }

    /// Writes into `out` the output row made of `row`, a row of the table
    /// decoded with [`PointRead::wanted`]. Both are buffers the session
    /// keeps between statements: when the statement returns the whole row,
    /// they trade places (no value is copied); else `out` gets copies of the
    /// values it returns (a TEXT value's copy shares its bytes).
    pub(crate) fn output_row(&self, row: &mut Row, out: &mut Row) {
        match &self.outputs {
            None => std::mem::swap(row, out),
            Some(outputs) => {
                out.clear();
                out.extend(
                    outputs
                        .iter()
                        .map(|&i| row.get(i).cloned().unwrap_or(Value::Null)),
                );
            }
        }
    }
}

/// A generic plan, per kind of statement, with what binding found.
#[derive(Debug)]
enum Kept {
    Query {
        plan: Plan,
        /// Shared with every execution's [`Rows`].
        columns: Arc<[ResultColumn]>,
    },
    Insert {
        table: Arc<Table>,
        positions: Vec<usize>,
        plan: Option<Plan>,
    },
    Update {
        table: Arc<Table>,
        assignments: Vec<(usize, Expr)>,
        plan: Plan,
    },
    Delete {
        table: Arc<Table>,
        plan: Plan,
    },
    /// The generic plan is not the custom one: plan every execution.
    Custom,
}

/// Runs `stmt`, a prepared statement, with `ctx.params`, through the plan
/// `cache` keeps (made at the first execution, made again when the
/// catalog or the parameter types change; see the module docs).
pub fn execute_prepared(
    store: &mut dyn Store,
    stmt: &Statement,
    ctx: &ExecContext,
    cache: &PlanCache,
) -> Result<Output> {
    if !matches!(
        stmt,
        Statement::Query(_) | Statement::Insert(_) | Statement::Update(_) | Statement::Delete(_)
    ) {
        return execute(store, stmt, ctx);
    }
    let Some(catalog) = store.catalog_token()? else {
        return execute(store, stmt, ctx);
    };
    let entry = match cache.get(&catalog, &ctx.params) {
        Some(entry) => entry,
        None => {
            let types = ctx.params.iter().map(Value::data_type).collect();
            let plan = plan_generic(&*store, stmt, &ctx.params)?;
            let point = match &plan {
                Kept::Query { plan, columns } => PointRead::of(plan, columns),
                _ => None,
            };
            let mut slot = cache.entry.write();
            let entry = Arc::new(Entry {
                catalog,
                types,
                plan,
                point,
                generation: slot.as_ref().map_or(0, |e| e.generation) + 1,
            });
            *slot = Some(entry.clone());
            entry
        }
    };
    match (&entry.plan, stmt) {
        (Kept::Query { plan, columns }, _) => Ok(Output::Rows(Rows {
            columns: columns.clone(),
            rows: run(plan, &*store, ctx)?,
        })),
        (
            Kept::Insert {
                table,
                positions,
                plan,
            },
            Statement::Insert(ins),
        ) => insert_rows(store, ins, table, positions, plan.as_ref(), ctx, None),
        (
            Kept::Update {
                table,
                assignments,
                plan,
            },
            _,
        ) => apply_update(store, table, assignments, plan, ctx, None),
        (Kept::Delete { table, plan }, _) => delete_rows(store, table, plan, ctx, None),
        _ => execute(store, stmt, ctx),
    }
}

/// The generic plan of `stmt` for parameter values like `params`, if it
/// has the custom plan's shape; else [`Kept::Custom`]. An error of the
/// custom planning is the statement's error; a generic plan that cannot
/// be made (a parameter where binding needs a constant) is not one.
fn plan_generic(store: &dyn Store, stmt: &Statement, params: &[Value]) -> Result<Kept> {
    // A text value compared with a number column is converted by the
    // binder when it is a constant (SQLite's affinity: `a = '5'` matches
    // 5), which a parameter read at run time would not be: whether the
    // conversion happens depends on the column, not only on the value's
    // type, so a statement with a text value is planned every time.
    // (INSERT binds its values as parameters already, and converts them
    // to the column's type when it writes the row.)
    let has_text = params.iter().any(|v| matches!(v, Value::Text(_)));
    if has_text && !matches!(stmt, Statement::Insert(_)) {
        return Ok(Kept::Custom);
    }
    let generic_est = Estimator::new(store).with_params(params);
    let custom_est = Estimator::new(store);
    Ok(match stmt {
        Statement::Query(q) => {
            let custom = Binder::new(store).with_params(params).bind_query(q)?;
            let Ok(generic) = Binder::new(store).bind_query(q) else {
                return Ok(Kept::Custom);
            };
            let same_names = generic.columns.len() == custom.columns.len()
                && generic
                    .columns
                    .iter()
                    .zip(&custom.columns)
                    .all(|(g, c)| g.name == c.name);
            let custom_plan = optimize(custom.plan, &custom_est);
            let generic_plan = optimize(generic.plan, &generic_est);
            if !same_names || !same_plan(&generic_plan, &custom_plan, params) {
                return Ok(Kept::Custom);
            }
            Kept::Query {
                plan: generic_plan,
                // The custom binding's: a column that is a parameter has
                // its value's type, the same at every execution of this
                // entry (the types are part of its key).
                columns: custom.columns.into(),
            }
        }
        Statement::Insert(ins) => {
            // INSERT binds its source without the values already: its
            // plan is generic as it is.
            let (table, positions, plan) = insert_plan(store, ins)?;
            Kept::Insert {
                table,
                positions,
                plan,
            }
        }
        Statement::Update(upd) => {
            let table = lookup_table(store, &upd.table)?;
            let assignments = bind_assignments(store, upd, &table)?;
            match target_plans(store, &table, upd.selection.as_ref(), params)? {
                Some(plan) => Kept::Update {
                    table,
                    assignments,
                    plan,
                },
                None => Kept::Custom,
            }
        }
        Statement::Delete(del) => {
            let table = lookup_table(store, &del.table)?;
            match target_plans(store, &table, del.selection.as_ref(), params)? {
                Some(plan) => Kept::Delete { table, plan },
                None => Kept::Custom,
            }
        }
        _ => Kept::Custom,
    })
}

/// The generic plan of an UPDATE's or DELETE's target rows, if it has the
/// custom plan's shape.
fn target_plans(
    store: &dyn Store,
    table: &Arc<Table>,
    selection: Option<&ast::Expr>,
    params: &[Value],
) -> Result<Option<Plan>> {
    // `custom`: the values written in as constants; else kept as
    // parameters, with the planner told their types.
    let make = |custom: bool| -> Result<Plan> {
        let scan = Plan::Scan {
            table: table.clone(),
            columns: None,
        };
        let plan = match selection {
            None => scan,
            Some(w) => {
                let binder = Binder::new(store);
                let mut binder = if custom {
                    binder.with_params(params)
                } else {
                    binder
                };
                Plan::Filter {
                    input: Box::new(scan),
                    predicate: binder.bind_table_expr(table, w)?,
                }
            }
        };
        let est = Estimator::new(store);
        let est = if custom { est } else { est.with_params(params) };
        Ok(optimize_target(plan, &est))
    };
    let custom = make(true)?;
    let Ok(generic) = make(false) else {
        return Ok(None);
    };
    Ok(same_plan(&generic, &custom, params).then_some(generic))
}

/// Whether the generic plan, with `params` written into it, *is* the
/// custom plan made for `params`: then both compute the same thing for
/// these values, and the generic one, which reads the parameters at run
/// time, computes for any other values of the same types what the
/// planner would have made for them (it only moves on from there by
/// transformations that hold for every value). When the planner did
/// something with a value that it could not do with a parameter (fold
/// it, choose an index range on it, read `ORDER BY 2` as a column
/// number), the plans differ and the statement stays custom.
pub(crate) fn same_plan(generic: &Plan, custom: &Plan, params: &[Value]) -> bool {
    instantiate(generic.clone(), params) == *custom
}

/// `plan` with each `$n` replaced by the constant `params[n - 1]`.
fn instantiate(plan: Plan, params: &[Value]) -> Plan {
    let mut plan = map_children(plan, &mut |child| instantiate(child, params));
    let mut substitute = |e: &mut Expr| write_params(e, params);
    for_each_expr_mut(&mut plan, &mut substitute);
    if let Plan::PkLookup { key, .. } = &mut plan {
        key.iter_mut().for_each(substitute);
    }
    plan
}

fn write_params(e: &mut Expr, params: &[Value]) {
    match e {
        Expr::Param(i) => {
            if let Some(v) = params.get(*i) {
                *e = Expr::Literal(v.clone());
            }
        }
        e => e.children_mut(&mut |child| write_params(child, params)),
    }
}
