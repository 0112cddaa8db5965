//! SQL from text to rows.
//!
//! A statement travels through five stages, each in its own module:
//!
//! ```text
//! text --lexer--> tokens --parser--> AST --binder--> logical plan
//!      --optimizer rules--> physical plan --executor--> rows
//! ```
//!
//! - [`lexer`] cuts the text into tokens, each with its [`Span`](ast::Span).
//! - [`parser`] is a hand-written recursive-descent parser with precedence
//!   climbing for expressions; it builds the [`ast`].
//! - The binder resolves names against the [`catalog`] and checks types.
//! - The planner builds a logical plan and rewrites it by rules (constant
//!   folding, predicate pushdown, index selection), then picks physical
//!   operators.
//! - The executor runs pull-based operators over a [`Store`](store::Store):
//!   the tables and indexes of one `pydb-txn` transaction.
//!
//! Below the executor, the storage side:
//!
//! - [`encoding`]: the order-preserving key encoding (so that an index
//!   range is an engine range) and the compact row format.
//! - `txnstore` (private): the [`Store`](store::Store) over a `pydb-txn`
//!   transaction: where rows, index entries and catalog records live in
//!   the SQL keyspace, constraint checks, index maintenance, the catalog
//!   cache.
//! - [`session`]: [`Database`] and [`Session`]: BEGIN, COMMIT, ROLLBACK,
//!   autocommit, and the failed state of a transaction.
//! - [`check`]: the verifier of tables against their indexes and catalog.
//!
//! The values and their rules (three-valued logic, comparison, arithmetic,
//! casts) live in [`value`].

pub mod ast;
pub mod bind;
pub mod catalog;
pub mod check;
pub mod describe;
pub mod encoding;
pub mod error;
pub mod exec;
pub mod func;
pub mod lexer;
pub mod output;
pub mod parser;
pub mod plan;
pub mod session;
#[cfg(feature = "slt")]
pub mod slt;
pub mod store;
mod txnstore;
pub mod value;

pub use error::{Error, Result};
pub use output::{Output, ResultColumn, Rows};
pub use session::{Database, Prepared, Session, TxnStatus};
pub use value::{DataType, Row, Value};
