//! # pydb
//!
//! The facade crate: [`Db`] opens a database directory with the engine it
//! was created with and hides which engine that is behind
//! `Arc<dyn StorageEngine>`. The `pydb` binary (demo, shell, inspect,
//! check, server) is built on the modules here, so that everything it does
//! can be tested and reused.
//!
//! ```
//! use pydb::{Db, EngineKind, Options};
//!
//! # fn main() -> pydb::Result<()> {
//! let db = Db::open("ignored", Options::with_engine(EngineKind::Memory))?;
//! db.set("hello", "world")?;
//! assert_eq!(db.get("hello")?.as_deref(), Some(&b"world"[..]));
//! # Ok(())
//! # }
//! ```
//!
//! Modules, from the database up to the user:
//! - [`db`]: `Db`, `Options`, and how a directory is opened;
//! - [`meta`]: the `PYDB` metadata file (engine and format version);
//! - [`tokenize`], [`command`], [`reply`]: a command line split into
//!   arguments, parsed into a typed command, executed into a reply, printed
//!   as redis-cli prints it;
//! - [`info`], [`keyscan`], [`glob`]: `INFO` and `CONFIG GET` texts, `SCAN`
//!   cursors, Redis's glob patterns;
//! - [`shell`]: the interactive loop and the pipe loop, on a local
//!   database or, through [`client`], on a server;
//! - [`server`]: the network server speaking Redis's protocol (RESP2);
//! - [`inspect`], [`check`]: reading pydb files record by record;
//! - [`repair`]: salvaging what verifies from a damaged database;
//! - [`demo`]: what `cargo run` shows.

pub mod check;
pub mod client;
pub mod command;
pub mod db;
pub mod demo;
mod error;
pub mod glob;
pub mod info;
pub mod inspect;
pub mod keyscan;
pub mod meta;
pub mod repair;
pub mod reply;
pub mod server;
pub mod shell;
pub mod tokenize;

pub use command::{Command, CommandError};
pub use db::{Db, EngineKind, IndexKind, Options, Scan, SetCondition, SyncPolicy, WriteBatch};
pub use error::{Error, Result};
pub use reply::Reply;

pub use pydb_file as file;
pub use pydb_index as index;
pub use pydb_storage as storage;
pub use pydb_wal as wal;
