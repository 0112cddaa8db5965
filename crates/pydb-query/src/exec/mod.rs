//! The executor (being written; see the task).

use crate::ast::Statement;
use crate::error::{Error, Result};
use crate::output::Output;
use crate::store::Store;
use crate::value::Value;

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
    let _ = (store, stmt, ctx);
    Err(Error::Invalid("the SQL executor is not written yet".into()))
}
