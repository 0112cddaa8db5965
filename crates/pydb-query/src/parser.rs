//! The parser: tokens to [`ast`](crate::ast) (being written; see the task).

use crate::ast::Statement;
use crate::error::{Error, Result};

/// Parses a script of `;`-separated statements. Spans are byte offsets in
/// `sql`.
pub fn parse(sql: &str) -> Result<Vec<Statement>> {
    let _ = sql;
    Err(Error::Invalid("the SQL parser is not written yet".into()))
}
