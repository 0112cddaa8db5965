//! The error type of the storage layer.

use std::path::PathBuf;

/// Everything that can go wrong in a storage engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file layer failed.
    #[error(transparent)]
    File(#[from] pydb_file::Error),

    /// The record log failed (this includes a poisoned log).
    #[error(transparent)]
    Wal(#[from] pydb_wal::Error),

    /// Stored data failed a check: reported with the file and offset.
    #[error("corrupted {file} at offset {offset}: {reason}")]
    Corrupted {
        /// The damaged file.
        file: PathBuf,
        /// Where the damage is.
        offset: u64,
        /// What check failed.
        reason: String,
    },

    /// A key is longer than the engine's limit.
    #[error("key of {len} bytes is over the limit of {max} bytes")]
    KeyTooLarge {
        /// The key's length.
        len: usize,
        /// The limit.
        max: usize,
    },

    /// A value is longer than the engine's limit.
    #[error("value of {len} bytes is over the limit of {max} bytes")]
    ValueTooLarge {
        /// The value's length.
        len: usize,
        /// The limit.
        max: usize,
    },

    /// The key is empty; pydb keys are at least one byte.
    #[error("empty keys are not allowed")]
    EmptyKey,

    /// Another process (or another handle in this one) holds the directory.
    #[error("{dir} is locked by another process: {reason}")]
    Locked {
        /// The database directory.
        dir: PathBuf,
        /// What the OS said.
        reason: String,
    },

    /// The engine refuses writes after a failed sync or write.
    #[error("the engine is poisoned after an earlier failure ({reason}); reopen the database")]
    Poisoned {
        /// The original failure.
        reason: String,
    },

    /// An argument (an engine or index name, an option) is not valid.
    #[error("{0}")]
    InvalidArgument(String),

    /// The on-disk state cannot be opened for a reason other than damage.
    #[error("cannot open {path}: {reason}")]
    InvalidDatabase {
        /// The file or directory.
        path: PathBuf,
        /// Why.
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

    /// Whether this error reports damaged data.
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            Error::Corrupted { .. } | Error::Wal(pydb_wal::Error::Corrupted { .. })
        )
    }
}

/// The result type of the storage layer.
pub type Result<T, E = Error> = std::result::Result<T, E>;
