//! Sessions: statements inside transactions.
//!
//! A [`Database`] is SQL over one [`TxnManager`]; a [`Session`] is one
//! connection's state, which is mostly the transaction it has open. The
//! rules are PostgreSQL's:
//!
//! - Outside `BEGIN`, every statement is its own transaction
//!   (*autocommit*): it commits when it succeeds and is rolled back,
//!   leaving nothing behind, when it fails.
//! - `BEGIN [ISOLATION LEVEL ...] [READ ONLY]` opens a transaction that
//!   `COMMIT` or `ROLLBACK` ends. (A `BEGIN` inside one is refused, as
//!   SQLite does, and the transaction goes on; `COMMIT` or `ROLLBACK`
//!   outside one is an error.)
//! - A statement that fails inside `BEGIN` puts the session in the
//!   *failed* state: its transaction is rolled back at once, every further
//!   statement is refused ([`Error::TransactionAborted`], SQLSTATE 25P02)
//!   until `ROLLBACK`, and `COMMIT` then answers `ROLLBACK`. Nothing of a
//!   transaction with a failed statement is ever committed, which is what
//!   makes every statement atomic without savepoints.
//! - A transaction that loses to a concurrent one fails with SQLSTATE 40001
//!   ([`Error::is_retryable`]): run it again.
//!
//! # Prepared statements
//!
//! [`Session::prepare`] parses once; [`Session::execute_prepared`] runs
//! the statement with values, in the open transaction or as its own. The
//! statement keeps its plan between executions when a generic plan (`$1`
//! read at run time) is exactly the plan its values would get, and plans
//! again when the catalog changes: PostgreSQL's generic and custom plans,
//! SQLite's prepared programs; see [`crate::exec::PlanCache`]. For a
//! one-row statement planning cost more than running: a point select by
//! primary key ran about twice as fast once it was kept.
//!
//! # Point selects
//!
//! Outside `BEGIN`, a prepared statement whose kept plan reads one row by
//! primary key (`SELECT ... FROM t WHERE pk = $1`) runs without a
//! transaction: one read of the latest commit
//! (`TxnManager::get_latest_into`), which registers no snapshot and is not
//! tracked by SSI. The engine copies the stored row into a buffer the
//! session keeps, and the row is decoded from there: a point select
//! allocates nothing for the key or the stored bytes. A caller that hands
//! each result back once it has read it ([`Session::recycle`], as SQLite's
//! statement keeps its row between steps) lets the next point select fill
//! that result's row list and row instead of allocating new ones; only the
//! columns the statement returns are decoded. An autocommit statement that reads a single row is a
//! transaction of one read, and reading the latest commit is what such a
//! transaction returns at every isolation level: whole commits only, no
//! uncommitted write, and at SERIALIZABLE a transaction that read one
//! version can be placed in the serial order right after the commit that
//! wrote it. The plan must hold for that commit's catalog, which the read
//! checks (see `txnstore::Shared::read_latest_row`); when it cannot tell,
//! the statement runs as a transaction as any other. Inside `BEGIN` a
//! point select reads at its transaction's snapshot, as before.
//!
//! # Isolation levels
//!
//! `SERIALIZABLE` (the default, see [`Database::with_isolation`]) is
//! `pydb-txn`'s serializable snapshot isolation; `REPEATABLE READ` and
//! `SNAPSHOT` are its snapshot isolation. `READ COMMITTED` and
//! `READ UNCOMMITTED` run as snapshot isolation too, a stronger level, as
//! PostgreSQL runs READ UNCOMMITTED as READ COMMITTED: `pydb-txn`'s read
//! committed lets the last writer win *without* a write-write check, and
//! the store relies on that check to keep two concurrent inserts of one
//! primary key or UNIQUE value (or one hidden row id, or one table id)
//! from both committing.

use std::sync::Arc;

use pydb_txn::{Isolation, TxnManager, TxnOptions};

use crate::ast::{IsolationLevel, Statement};
use crate::bind::Binder;
use crate::error::{Error, Result};
use crate::exec::{self, ExecContext, PlanCache};
use crate::output::{Output, ResultColumn, Rows};
use crate::txnstore::{
    KnownLatest, OpenTxn, PointBuffers, Shared, TxnStore, decode_table_columns_into,
};
use crate::value::{Row, Value};

/// SQL over one database's transaction manager. Cheap to clone; clones
/// share the catalog cache and the row id allocators, so open one
/// `Database` per transaction manager and clone it.
#[derive(Debug, Clone)]
pub struct Database {
    mgr: Arc<TxnManager>,
    shared: Arc<Shared>,
    isolation: Isolation,
}

impl Database {
    /// SQL over `mgr`, with serializable transactions by default.
    pub fn new(mgr: Arc<TxnManager>) -> Result<Self> {
        Ok(Database {
            shared: Arc::new(Shared::new(mgr.clone())),
            mgr,
            isolation: Isolation::Serializable,
        })
    }

    /// The same database, whose sessions run transactions at `isolation`
    /// when `BEGIN` names no level (and outside `BEGIN`). Read committed
    /// runs as snapshot isolation (see the module docs).
    pub fn with_isolation(mut self, isolation: Isolation) -> Self {
        self.isolation = isolation;
        self
    }

    /// The transaction manager underneath.
    pub fn txn_manager(&self) -> &Arc<TxnManager> {
        &self.mgr
    }

    /// A new session (a connection's state: its open transaction).
    pub fn session(&self) -> Session {
        Session {
            db: self.clone(),
            state: State::Idle,
            ctx: ExecContext::default(),
            known_latest: KnownLatest::default(),
            point_buffers: PointBuffers::default(),
            point_row: Row::new(),
            spare: None,
            spare_params: Vec::new(),
        }
    }
}

/// A statement parsed once, to run many times with different parameter
/// values: see [`Session::prepare`]. It keeps its plan between executions
/// (see [`crate::exec::PlanCache`]); clones share it.
#[derive(Debug, Clone)]
pub struct Prepared {
    statement: Statement,
    plans: Arc<PlanCache>,
}

impl Prepared {
    /// A prepared statement of `statement`, parsed already (a server's
    /// Parse message, which splits and checks the text itself): as
    /// [`Session::prepare`] makes, with no plan kept yet.
    pub fn new(statement: Statement) -> Self {
        Prepared {
            statement,
            plans: Arc::new(PlanCache::new()),
        }
    }

    /// The parsed statement.
    pub fn statement(&self) -> &Statement {
        &self.statement
    }

    /// The plan it keeps between executions.
    pub fn plan_cache(&self) -> &PlanCache {
        &self.plans
    }
}

/// Where a session stands, as PostgreSQL's protocol reports it after each
/// statement (`ReadyForQuery`: `I`, `T` or `E`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxnStatus {
    /// No explicit transaction is open (`I`).
    Idle,
    /// Inside `BEGIN` (`T`).
    InTransaction,
    /// Inside `BEGIN`, after a failed statement: only `ROLLBACK` (or
    /// `COMMIT`, which rolls back) is accepted (`E`).
    Failed,
}

#[derive(Debug)]
enum State {
    Idle,
    Open(Box<OpenTxn>),
    Failed,
}

/// A connection's state: the explicit transaction it has open, if any.
/// Outside BEGIN, every statement runs as its own transaction.
#[derive(Debug)]
pub struct Session {
    db: Database,
    state: State,
    ctx: ExecContext,
    /// The commits at which this session's point selects found their
    /// plan's catalog to be the latest (see `Shared::read_latest_row`).
    known_latest: KnownLatest,
    /// The row key and the stored row of a point select, kept between
    /// statements so that none allocates them.
    point_buffers: PointBuffers,
    /// The row a point select decodes the stored row into.
    point_row: Row,
    /// A finished result handed back by [`Session::recycle`], whose row
    /// list and row the next point select fills instead of allocating.
    spare: Option<Rows>,
    /// The list a prepared statement's parameters are copied into, kept
    /// (emptied) between statements so that none allocates it.
    spare_params: Vec<Value>,
}

/// How many rows' room a recycled row list keeps (see
/// [`Session::recycle`]); a larger list is shrunk, so that a big result
/// handed back does not hold its memory until the session ends.
const SPARE_ROWS: usize = 4;

/// The `pydb-txn` level that runs SQL level `level` (see the module docs).
fn txn_isolation(level: IsolationLevel) -> Isolation {
    match level {
        IsolationLevel::Serializable => Isolation::Serializable,
        IsolationLevel::ReadUncommitted
        | IsolationLevel::ReadCommitted
        | IsolationLevel::RepeatableRead
        | IsolationLevel::Snapshot => Isolation::Snapshot,
    }
}

fn effective(isolation: Isolation) -> Isolation {
    match isolation {
        Isolation::ReadCommitted => Isolation::Snapshot,
        other => other,
    }
}

impl Session {
    /// Runs a script of `;`-separated statements, returning one output per
    /// statement; stops at the first error. A script that does not parse
    /// runs nothing (and, inside `BEGIN`, fails the transaction).
    pub fn execute(&mut self, sql: &str) -> Result<Vec<Output>> {
        let statements = match crate::parser::parse(sql) {
            Ok(statements) => statements,
            Err(e) => {
                self.fail();
                return Err(e);
            }
        };
        let ctx = self.ctx.clone();
        statements
            .iter()
            .map(|statement| self.run_with(statement, &ctx))
            .collect()
    }

    /// Parses `sql`, one statement with `$1`, `$2`, ... (or `?`) where
    /// values go, once: [`Session::execute_prepared`] then runs it with
    /// values, without lexing or parsing it again. This is what drivers do
    /// (SQLite's `prepare`, PostgreSQL's Parse message). Its first
    /// execution also plans it, and keeps the plan when a *generic* plan
    /// (`$1` kept as a parameter) is as good as the one made for the
    /// values; it is planned again when the catalog changes (see
    /// [`crate::exec::PlanCache`] and its module). Parsing touches no
    /// transaction, so a failure here leaves the session as it was.
    pub fn prepare(&self, sql: &str) -> Result<Prepared> {
        let mut statements = crate::parser::parse(sql)?;
        if statements.len() != 1 {
            return Err(Error::Invalid(format!(
                "a prepared statement is one statement, not {}",
                statements.len()
            )));
        }
        Ok(Prepared::new(statements.remove(0)))
    }

    /// Runs a statement made by [`Session::prepare`] with `params` as the
    /// values of `$1`, `$2`, ... (inside the open transaction, or as a
    /// transaction of its own, as [`Session::execute`]).
    pub fn execute_prepared(&mut self, prepared: &Prepared, params: &[Value]) -> Result<Output> {
        if matches!(self.state, State::Idle)
            && matches!(prepared.statement, Statement::Query(_))
            && let Some(output) = self.point_read(prepared, params)?
        {
            return Ok(output);
        }
        let mut kept = std::mem::take(&mut self.spare_params);
        kept.extend_from_slice(params);
        let ctx = ExecContext {
            params: kept,
            memory_budget: self.ctx.memory_budget,
        };
        let output = match &prepared.statement {
            Statement::Begin { .. } | Statement::Commit | Statement::Rollback => {
                self.run_with(&prepared.statement, &ctx)
            }
            statement => self.run_in_transaction(statement, &ctx, Some(&prepared.plans)),
        };
        let mut kept = ctx.params;
        kept.clear();
        self.spare_params = kept;
        output
    }

    /// Runs an autocommit prepared point select without a transaction:
    /// a single read of the latest commit, when the statement's kept plan
    /// reads one row by primary key and its catalog is the latest one
    /// (`None`: not such a statement, or not known; it then runs as a
    /// transaction of its own). See "Point selects" in the module docs.
    fn point_read(&mut self, prepared: &Prepared, params: &[Value]) -> Result<Option<Output>> {
        let Session {
            db,
            known_latest,
            point_buffers,
            point_row,
            spare,
            ..
        } = self;
        let read = prepared.plans.with_point_read(params, |catalog, point| {
            let Some(pk) = point.key_values(params) else {
                return Ok(None);
            };
            let Some(stored) = db.shared.read_latest_row(
                known_latest,
                point_buffers,
                catalog,
                &point.table,
                pk,
            )?
            else {
                return Ok(None);
            };
            // The result is built in the buffers of the last one handed
            // back, if any: no allocation for the list or the row.
            let mut rows = spare.take().unwrap_or_else(|| Rows {
                columns: point.columns.clone(),
                rows: Vec::new(),
            });
            if !Arc::ptr_eq(&rows.columns, &point.columns) {
                rows.columns = point.columns.clone();
            }
            let mut out = rows.rows.pop().unwrap_or_default();
            rows.rows.clear();
            if let Some(bytes) = stored {
                decode_table_columns_into(&point.table, bytes, &point.wanted, point_row)?;
                point.output_row(point_row, &mut out);
                rows.rows.push(out);
            }
            Ok(Some(Output::Rows(rows)))
        });
        read.unwrap_or(Ok(None))
    }

    /// Hands back an output the caller has finished reading, so that the
    /// session's next point select fills its row list and row (and keeps
    /// a TEXT value's allocation when the new value is the same text)
    /// instead of allocating them: what SQLite's API does for every
    /// statement, whose row is valid until the next step. Optional; a
    /// driver that reads each result before running the next statement
    /// calls it after each one. Any output may be handed back: a query's
    /// rows are kept (at most `SPARE_ROWS` (4) rows' room), the rest
    /// dropped.
    pub fn recycle(&mut self, output: Output) {
        if let Output::Rows(mut rows) = output {
            rows.rows.truncate(1);
            rows.rows.shrink_to(SPARE_ROWS);
            self.spare = Some(rows);
        }
    }

    /// Runs one parsed statement.
    pub fn run(&mut self, statement: &Statement) -> Result<Output> {
        let ctx = self.ctx.clone();
        self.run_with(statement, &ctx)
    }

    /// Runs one parsed statement with `ctx` (a prepared statement's
    /// parameters, a memory budget).
    pub fn run_with(&mut self, statement: &Statement, ctx: &ExecContext) -> Result<Output> {
        match statement {
            Statement::Begin {
                isolation,
                read_only,
            } => self.begin(*isolation, *read_only),
            Statement::Commit => self.commit(),
            Statement::Rollback => self.rollback(),
            _ => self.run_in_transaction(statement, ctx, None),
        }
    }

    /// The execution context statements run with (memory budget,
    /// parameters).
    pub fn exec_context_mut(&mut self) -> &mut ExecContext {
        &mut self.ctx
    }

    /// Whether an explicit transaction (BEGIN) is open, failed or not.
    pub fn in_transaction(&self) -> bool {
        !matches!(self.state, State::Idle)
    }

    /// The columns `statement` would return, without running it: `None`
    /// for a statement that returns no rows. A query is bound (names
    /// resolved against the catalog) inside the open transaction, or in a
    /// transaction of its own that is rolled back; for the PostgreSQL
    /// protocol's `Describe`.
    pub fn describe(&mut self, statement: &Statement) -> Result<Option<Vec<ResultColumn>>> {
        let query = match statement {
            Statement::Query(q) => q,
            Statement::Explain { .. } => {
                return Ok(Some(vec![ResultColumn {
                    name: "QUERY PLAN".into(),
                    ty: Some(crate::value::DataType::Text),
                }]));
            }
            _ => return Ok(None),
        };
        match &mut self.state {
            State::Failed => Err(Error::TransactionAborted),
            State::Open(open) => {
                let store = TxnStore::new(open, &self.db.shared);
                Ok(Some(Binder::new(&store).bind_query(query)?.columns))
            }
            State::Idle => {
                let tx = self
                    .db
                    .mgr
                    .begin_with(TxnOptions::new(effective(self.db.isolation)).read_only())?;
                let mut open = OpenTxn::new(tx);
                let store = TxnStore::new(&mut open, &self.db.shared);
                let columns = Binder::new(&store).bind_query(query)?.columns;
                open.tx.rollback();
                Ok(Some(columns))
            }
        }
    }

    /// The optimized plan of the query `sql` in the compact one-line-per-
    /// node notation of [`crate::plan::Plan::explain`] (unit tests assert
    /// on operator names with it; EXPLAIN prints PostgreSQL's notation).
    #[cfg(test)]
    pub(crate) fn compact_plan(&mut self, sql: &str) -> Result<Vec<String>> {
        let statements = crate::parser::parse(sql)?;
        let Some(Statement::Query(q)) = statements.first() else {
            return Err(Error::Invalid("compact_plan takes a query".into()));
        };
        let tx = self
            .db
            .mgr
            .begin_with(TxnOptions::new(effective(self.db.isolation)).read_only())?;
        let mut open = OpenTxn::new(tx);
        let store = TxnStore::new(&mut open, &self.db.shared);
        let estimator = crate::plan::cost::Estimator::new(&store);
        let plan =
            crate::plan::rules::optimize(Binder::new(&store).bind_query(q)?.plan, &estimator);
        let lines = plan.explain();
        drop(estimator);
        drop(store);
        open.tx.rollback();
        Ok(lines)
    }

    /// Where the session stands, for the PostgreSQL protocol.
    pub fn status(&self) -> TxnStatus {
        match self.state {
            State::Idle => TxnStatus::Idle,
            State::Open(_) => TxnStatus::InTransaction,
            State::Failed => TxnStatus::Failed,
        }
    }

    /// A failed statement inside `BEGIN`: roll back now, refuse until
    /// `ROLLBACK`.
    fn fail(&mut self) {
        match std::mem::replace(&mut self.state, State::Idle) {
            State::Open(open) => {
                open.tx.rollback();
                self.state = State::Failed;
            }
            State::Failed => self.state = State::Failed,
            State::Idle => {}
        }
    }

    fn begin(&mut self, level: Option<IsolationLevel>, read_only: bool) -> Result<Output> {
        match self.state {
            State::Idle => {}
            // As SQLite: refused, and the open transaction goes on.
            State::Open(_) => {
                return Err(Error::Invalid(
                    "there is already a transaction in progress".into(),
                ));
            }
            State::Failed => return Err(Error::TransactionAborted),
        }
        let isolation = level.map_or(effective(self.db.isolation), txn_isolation);
        let mut options = TxnOptions::new(isolation);
        if read_only {
            options = options.read_only();
        }
        let tx = self.db.mgr.begin_with(options)?;
        self.state = State::Open(Box::new(OpenTxn::new(tx)));
        Ok(Output::Done("BEGIN"))
    }

    fn commit(&mut self) -> Result<Output> {
        match std::mem::replace(&mut self.state, State::Idle) {
            State::Idle => Err(Error::Invalid("there is no transaction in progress".into())),
            State::Failed => Ok(Output::Done("ROLLBACK")),
            State::Open(open) => {
                open.tx.commit()?;
                Ok(Output::Done("COMMIT"))
            }
        }
    }

    fn rollback(&mut self) -> Result<Output> {
        match std::mem::replace(&mut self.state, State::Idle) {
            State::Idle => Err(Error::Invalid("there is no transaction in progress".into())),
            State::Failed => Ok(Output::Done("ROLLBACK")),
            State::Open(open) => {
                open.tx.rollback();
                Ok(Output::Done("ROLLBACK"))
            }
        }
    }

    /// Runs a statement other than BEGIN, COMMIT or ROLLBACK, with the
    /// plan `plans` keeps for a prepared statement.
    fn run_in_transaction(
        &mut self,
        statement: &Statement,
        ctx: &ExecContext,
        plans: Option<&PlanCache>,
    ) -> Result<Output> {
        let execute = |store: &mut TxnStore<'_>| match plans {
            Some(plans) => exec::execute_prepared(store, statement, ctx, plans),
            None => exec::execute(store, statement, ctx),
        };
        match &mut self.state {
            State::Failed => Err(Error::TransactionAborted),
            State::Open(open) => {
                let mut store = TxnStore::new(open, &self.db.shared);
                let result = execute(&mut store);
                store.keep_catalog();
                if result.is_err() {
                    self.fail();
                }
                result
            }
            State::Idle => {
                // A query on its own is a read-only transaction: it never
                // writes, and a read-only serializable transaction that
                // begins on a quiet database skips SSI's bookkeeping (see
                // `pydb_txn`'s `Transaction::begin`).
                let mut options = TxnOptions::new(effective(self.db.isolation));
                if matches!(statement, Statement::Query(_)) {
                    options = options.read_only();
                }
                let tx = self.db.mgr.begin_with(options)?;
                let mut open = OpenTxn::new(tx);
                let mut store = TxnStore::new(&mut open, &self.db.shared);
                let output = execute(&mut store)?;
                // A prepared point select hands its catalog on, so that
                // its next executions can skip the transaction.
                if matches!(statement, Statement::Query(_))
                    && plans.is_some_and(|p| p.with_point_read(&ctx.params, |_, _| ()).is_some())
                {
                    store.share_latest_catalog()?;
                }
                open.tx.commit()?;
                Ok(output)
            }
        }
    }
}

#[cfg(test)]
mod tests;
