//! # pydb-storage: the engines
//!
//! The [`StorageEngine`] trait and its implementations:
//! - [`MemoryStorage`]: everything in a `BTreeMap`; the model the others are
//!   tested against.
//! - [`AppendOnlyLogStorage`]: Bitcask, an append-only log of records in
//!   `pydb-wal` with an in-memory index of where each key's latest value is.
//! - [`BTreeStorage`]: a B+tree of pages with a buffer pool and a
//!   write-ahead log, the page-oriented design of PostgreSQL and SQLite.
//! - [`LsmStorage`]: a log-structured merge-tree (memtable, SSTables,
//!   leveled or tiered compaction), the design of LevelDB and RocksDB.
//!
//! [`registry`] opens any of them by name: the one place an engine is
//! registered.

pub mod btree;
mod engine;
mod error;
pub mod log;
pub mod lsm;
mod memory;
pub mod registry;
#[cfg(feature = "testing")]
pub mod testing;

pub use btree::{BTreeOptions, BTreeStorage};
pub use engine::{BatchOp, KeyRange, ReadHint, ScanIter, Stats, StorageEngine, Visit, WriteBatch};
pub use error::{Error, Result};
pub use log::{AppendOnlyLogStorage, Location, LogOptions};
pub use lsm::{CompactionStyle, LsmOptions, LsmStorage, Snapshot};
/// The longest value the memory engine keeps inline in its map's leaves.
pub use memory::INLINE_BYTES as MEMORY_INLINE_BYTES;
pub use memory::MemoryStorage;
pub use pydb_file::ErrorKind;
pub use pydb_file::{DirLock, LOCK_FILE_NAME};
pub use registry::{EngineConfig, EngineKind, IndexKind, open_engine, open_engine_with};
