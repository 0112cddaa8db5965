//! # pydb
//!
//! The library facade: [`Db`] opens a database directory with the engine it
//! was created with and hides which engine that is behind
//! `Arc<dyn StorageEngine>`. It carries no command-line or network code:
//! the Redis side lives in `pydb-server`, the `pydb` binary in `pydb-cli`.
//!
//! ```
//! use pydb::{Db, EngineKind, Options};
//!
//! # fn main() -> pydb::Result<()> {
//! let db = Db::open("ignored", Options::with_engine(EngineKind::Memory))?;
//! db.set("hello", "world")?;
//! assert_eq!(db.get("hello")?.as_deref(), Some(&b"world"[..]));
//! // Move 1 from a to b: both or neither, serializable.
//! db.transaction(pydb::Isolation::Serializable, |tx| {
//!     tx.set(b"a", b"0")?;
//!     tx.set(b"b", b"1")
//! })?;
//! # Ok(())
//! # }
//! ```
//!
//! Modules:
//! - [`db`]: `Db`, `Options`, how a directory is opened, and how every
//!   read and write runs as a transaction of `pydb-txn`;
//! - [`meta`]: the `PYDB` metadata file (engine, format version, and the
//!   encryption and compression settings with the wrapped data key).

pub mod db;
mod error;
pub mod kv;
pub mod meta;

pub use db::{
    ClockHandle, Compression, Concurrency, Db, EngineKind, ExpireCondition, IndexKind, Isolation,
    KeyMaterial, ManualClock, Options, Scan, SetCondition, SetExpiry, SetOptions, SetOutcome,
    SyncPolicy, Transaction, Ttl, TxnOptions, TxnStats, WriteBatch,
};
pub use error::{Error, Result};

pub use pydb_file as file;
pub use pydb_index as index;
pub use pydb_query as query;
pub use pydb_query::{Output, Prepared, ResultColumn, Rows, Session, TxnStatus, Value};
pub use pydb_storage as storage;
pub use pydb_txn as txn;
pub use pydb_wal as wal;
