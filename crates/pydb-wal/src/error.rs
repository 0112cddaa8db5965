//! The error type of the WAL layer.

use std::path::PathBuf;

/// Everything that can go wrong reading or writing a record log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file layer failed.
    #[error(transparent)]
    File(#[from] pydb_file::Error),

    /// A record or file header failed its checks at a place where it cannot
    /// be the torn tail of an interrupted write: the data is damaged.
    #[error("corrupted log {file} at offset {offset}: {reason}")]
    Corrupted {
        /// The damaged file.
        file: PathBuf,
        /// The offset of the damaged record or header.
        offset: u64,
        /// What check failed.
        reason: String,
    },

    /// A record payload is larger than [`crate::MAX_PAYLOAD_LEN`].
    #[error("record of {len} bytes is over the limit of {max} bytes")]
    RecordTooLarge {
        /// The payload length asked for.
        len: usize,
        /// The limit.
        max: u32,
    },

    /// The file's format version is newer than this build understands.
    #[error("{file} has format version {found}; this build reads up to {supported}")]
    UnsupportedVersion {
        /// The file.
        file: PathBuf,
        /// The version in the file.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },

    /// A sync failed earlier; the log refuses all further writes.
    ///
    /// After a failed `fsync` the kernel may have dropped the dirty pages and
    /// cleared the error, so a retried `fsync` can report success for data
    /// that never reached the disk. The only safe answer is to stop writing
    /// and let the user reopen the database, which recovers from what is
    /// really on disk.
    #[error("log {file} is poisoned after a failed write or sync ({reason}); reopen the database")]
    Poisoned {
        /// The log file.
        file: PathBuf,
        /// The original failure.
        reason: String,
    },
}

impl Error {
    /// A [`Error::Corrupted`] for `file` at `offset`.
    pub fn corrupted(file: impl Into<PathBuf>, offset: u64, reason: impl Into<String>) -> Self {
        Error::Corrupted {
            file: file.into(),
            offset,
            reason: reason.into(),
        }
    }
}

/// The result type of the WAL layer.
pub type Result<T, E = Error> = std::result::Result<T, E>;
