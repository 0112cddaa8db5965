//! # pydb-cli: the `pydb` binary
//!
//! The demo, the shell (on a local database or on a server), and the file
//! tools. The binary's `main.rs` only parses arguments and calls these.
//!
//! - [`demo`]: what `cargo run` shows;
//! - [`shell`]: the interactive loop and the pipe loop;
//! - [`sql`]: `pydb sql`, a psql-like shell for SQL;
//! - [`inspect`], [`check`]: reading pydb files record by record;
//! - [`decorated`]: the same through the encryption and compression
//!   decorators, with the database's key;
//! - [`repair`]: salvaging what verifies from a damaged database.

pub mod check;
pub mod decorated;
pub mod demo;
mod error;
pub mod inspect;
pub mod repair;
pub mod shell;
pub mod sql;

pub use error::{Error, Result};
