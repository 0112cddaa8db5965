//! Sessions: statements inside transactions (being written; see the task).

use std::sync::Arc;

use pydb_txn::TxnManager;

use crate::error::{Error, Result};
use crate::output::Output;

/// SQL over one database's transaction manager. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Database {
    mgr: Arc<TxnManager>,
}

impl Database {
    /// SQL over `mgr`.
    pub fn new(mgr: Arc<TxnManager>) -> Result<Self> {
        Ok(Database { mgr })
    }

    /// A new session (a connection's state: its open transaction).
    pub fn session(&self) -> Session {
        Session { db: self.clone() }
    }
}

/// A connection's state: the explicit transaction it has open, if any.
/// Outside BEGIN, every statement runs as its own transaction.
#[derive(Debug)]
pub struct Session {
    db: Database,
}

impl Session {
    /// Runs a script of `;`-separated statements, returning one output per
    /// statement; stops at the first error.
    pub fn execute(&mut self, sql: &str) -> Result<Vec<Output>> {
        let _ = (&self.db.mgr, sql);
        Err(Error::Invalid("SQL sessions are not written yet".into()))
    }

    /// Whether an explicit transaction (BEGIN) is open.
    pub fn in_transaction(&self) -> bool {
        false
    }
}
