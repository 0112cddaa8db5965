//! # pydb-wal: the checksummed record log
//!
//! The one record format of pydb. The append-only log engine stores its data
//! in it; the B+tree engine uses it as its write-ahead log.
//!
//! - [`record`]: the byte layout of a log file and its records.
//! - [`LogWriter`]: appends records and batches, syncs them by
//!   [`SyncPolicy`], and shares one `fsync` between concurrent writers
//!   (group commit).
//! - [`Scanner`]: reads the log back batch by batch and tells a torn tail
//!   (truncated and counted) from corruption (reported, never skipped).
//! - [`verify`]: walks a log record by record for the file tools, stepping
//!   over damage to the next record that verifies (`pydb inspect`, `check`
//!   and `repair` all use it).

mod error;
mod reader;
pub mod record;
pub mod verify;
mod writer;

pub use error::{Error, Result};
pub use pydb_file::ErrorKind;
pub use reader::{
    Scanner, Tail, TailCut, check_file_header, read_record_at, read_record_exact,
    visit_record_exact,
};
pub use record::{
    FILE_HEADER_LEN, FIRST_OFFSET_WHERE_ZEROS_VERIFY, FORMAT_VERSION, MAX_PAYLOAD_LEN,
    RECORD_HEADER_LEN, Record, record_len,
};
pub use writer::{Appended, LogWriter, SyncPolicy, WriterStats};
