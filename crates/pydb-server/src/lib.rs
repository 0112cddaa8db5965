//! # pydb-server: the network side
//!
//! Redis's protocol in front of a [`pydb::Db`]. The same command table
//! serves the network server and the local shell (in `pydb-cli`), so the
//! two cannot drift.
//!
//! Modules, from the wire to the database:
//! - [`server`]: the TCP server, event loops (one on up to two cores, else one per core), and its
//!   protocol parser ([`server::resp`]);
//! - [`tokenize`], [`command`], [`reply`]: a command line split into
//!   arguments, parsed into a typed command, executed into a reply, printed
//!   as redis-cli prints it;
//! - [`multi`]: `MULTI`/`EXEC`/`WATCH`, queued commands run as one
//!   serializable pydb transaction;
//! - [`info`], [`keyscan`], [`glob`]: `INFO` and `CONFIG GET` texts, `SCAN`
//!   cursors, Redis's glob patterns;
//! - [`client`]: a small blocking client, for `pydb shell --connect`;
//! - [`pg`]: PostgreSQL's wire protocol over pydb's SQL (`--pg-bind`),
//!   for `psql` and PostgreSQL drivers.

pub mod client;
pub mod command;
mod error;
pub mod glob;
pub mod info;
pub mod keyscan;
pub mod multi;
pub mod pg;
pub mod reply;
pub mod server;
pub mod tokenize;

pub use command::{Command, CommandError};
pub use error::{Error, Result};
pub use reply::Reply;
