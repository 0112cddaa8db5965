//! What running a statement returns.

use std::sync::Arc;

use crate::value::{DataType, Row};

/// A column of a result.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultColumn {
    /// Its name: the alias, the column's name, or the expression's text.
    pub name: String,
    /// Its type, when the binder knows it (NULL literals have none).
    pub ty: Option<DataType>,
}

/// The rows a query returns, with their columns.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Rows {
    /// The columns. Shared: a prepared statement's kept plan hands the
    /// same list to every execution instead of copying its names.
    pub columns: Arc<[ResultColumn]>,
    /// The rows, one value per column.
    pub rows: Vec<Row>,
}

/// The outcome of one statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// A query's rows (also EXPLAIN's, as one `QUERY PLAN` text column).
    Rows(Rows),
    /// INSERT, UPDATE or DELETE: how many rows they touched.
    Affected {
        /// `"INSERT"`, `"UPDATE"` or `"DELETE"`.
        verb: &'static str,
        /// The number of rows.
        count: u64,
    },
    /// Any other statement, with its command tag as PostgreSQL names it
    /// (`"CREATE TABLE"`, `"BEGIN"`, `"COMMIT"`, `"ROLLBACK"`, ...).
    Done(&'static str),
}
