//! The error type of the SQL layer.
//!
//! Every error knows its SQLSTATE ([`Error::sqlstate`]), the five-character
//! code PostgreSQL clients use to tell errors apart: `42601` is a syntax
//! error, `40001` a serialization failure that the client may retry.

use crate::ast::Span;

/// Everything that can go wrong while running SQL.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The text is not valid SQL. `rendered` shows the line with a caret
    /// under the fault.
    #[error("syntax error: {message}\n{rendered}")]
    Syntax {
        /// What was expected or found.
        message: String,
        /// Where, in bytes of the statement text.
        span: Span,
        /// The offending line with a caret under `span`.
        rendered: String,
    },

    /// A name that the catalog does not know (table, column, index, view).
    #[error("{kind} {name} does not exist")]
    Undefined {
        /// "table", "column", "index", "view" or "function".
        kind: &'static str,
        /// The name as written.
        name: String,
    },

    /// A name that is already taken, or a column reference that matches
    /// more than one table.
    #[error("{kind} {name} {what}")]
    Duplicate {
        /// "table", "column", "index" or "view".
        kind: &'static str,
        /// The name.
        name: String,
        /// "already exists" or "is ambiguous".
        what: &'static str,
    },

    /// An operation on values of types it does not accept.
    #[error("type mismatch: {0}")]
    TypeMismatch(String),

    /// Integer arithmetic that does not fit in 64 bits.
    #[error("integer out of range")]
    IntegerOverflow,

    /// Division by zero where the language makes it an error.
    #[error("division by zero")]
    DivisionByZero,

    /// A NOT NULL, UNIQUE or PRIMARY KEY constraint refused a row.
    #[error("{constraint} constraint failed: {detail}")]
    Constraint {
        /// "NOT NULL", "UNIQUE" or "PRIMARY KEY".
        constraint: &'static str,
        /// The table and columns (and the value, where it helps).
        detail: String,
    },

    /// A statement that is valid SQL but that pydb does not run (yet), or
    /// one that makes no sense where it stands (COMMIT without BEGIN).
    #[error("{0}")]
    Invalid(String),

    /// A sort or hash table went over its memory budget and could not
    /// spill.
    #[error("out of memory budget: {0}")]
    ResourceLimit(String),

    /// A row, index entry or catalog record in the engine does not decode.
    #[error("corrupted SQL data: {0}")]
    Corrupted(String),

    /// A statement inside a transaction whose earlier statement failed:
    /// only ROLLBACK (or COMMIT, which rolls back) is accepted.
    #[error("current transaction is aborted, commands ignored until end of transaction block")]
    TransactionAborted,

    /// The transaction layer failed (conflicts are retryable: see
    /// [`Error::is_retryable`]).
    #[error(transparent)]
    Txn(#[from] pydb_txn::Error),

    /// The storage engine failed.
    #[error(transparent)]
    Storage(#[from] pydb_storage::Error),
}

impl Error {
    /// The SQLSTATE code of this error, as PostgreSQL reports it.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            Error::Syntax { .. } => "42601",
            Error::Undefined {
                kind: "table" | "view",
                ..
            } => "42P01",
            Error::Undefined { kind: "column", .. } => "42703",
            Error::Undefined {
                kind: "function", ..
            } => "42883",
            Error::Undefined { .. } => "42704",
            Error::Duplicate {
                what: "is ambiguous",
                ..
            } => "42702",
            Error::Duplicate {
                kind: "table" | "view",
                ..
            } => "42P07",
            Error::Duplicate { .. } => "42710",
            Error::TypeMismatch(_) => "42804",
            Error::IntegerOverflow => "22003",
            Error::DivisionByZero => "22012",
            Error::Constraint {
                constraint: "NOT NULL",
                ..
            } => "23502",
            Error::Constraint { .. } => "23505",
            Error::Invalid(_) => "0A000",
            Error::ResourceLimit(_) => "53200",
            Error::TransactionAborted => "25P02",
            Error::Corrupted(_) => "XX001",
            Error::Txn(pydb_txn::Error::Deadlock { .. }) => "40P01",
            Error::Txn(pydb_txn::Error::ReadOnly { .. }) => "25006",
            Error::Txn(e) if e.is_retryable() => "40001",
            Error::Txn(_) | Error::Storage(_) => "58000",
        }
    }

    /// Whether running the transaction again may succeed (a conflict with
    /// a concurrent transaction).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Txn(e) if e.is_retryable())
    }

    /// The shared error kind: corruption, conflict, bad input, ...
    pub fn kind(&self) -> pydb_storage::ErrorKind {
        use pydb_storage::ErrorKind;
        match self {
            Error::Txn(e) if e.is_retryable() => ErrorKind::Conflict,
            Error::Txn(pydb_txn::Error::Corrupted { .. }) | Error::Corrupted(_) => {
                ErrorKind::Corruption
            }
            Error::Txn(pydb_txn::Error::Storage(e)) | Error::Storage(e) => e.kind(),
            Error::Txn(pydb_txn::Error::Poisoned { .. }) => ErrorKind::Poisoned,
            Error::Txn(_) => ErrorKind::InvalidInput,
            Error::Invalid(_) => ErrorKind::Unsupported,
            Error::ResourceLimit(_) => ErrorKind::Io,
            _ => ErrorKind::InvalidInput,
        }
    }
}

/// The result type of the SQL layer.
pub type Result<T, E = Error> = std::result::Result<T, E>;
