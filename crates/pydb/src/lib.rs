//! # pydb
//!
//! The facade crate: it re-exports the layers and wires them into a
//! database.

pub use pydb_file as file;
pub use pydb_index as index;
pub use pydb_storage as storage;
pub use pydb_wal as wal;
