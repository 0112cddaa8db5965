//! The error type of the storage layer.
//!
//! Damage, a newer format version and a poisoned engine are the file
//! layer's shared variants, wrapped in [`Error::File`] (or, when the record
//! log found them, in [`Error::Wal`]). Ask [`Error::kind`] what an error
//! means rather than matching its shape: it walks the wrapped errors.

use std::path::PathBuf;

use pydb_file::ErrorKind;

/// Everything that can go wrong in a storage engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file layer failed, or an engine found damage (reported with the
    /// file and offset) or refuses writes after an earlier failure.
    #[error(transparent)]
    File(#[from] pydb_file::Error),

    /// The record log failed (this includes a poisoned log).
    #[error(transparent)]
    Wal(#[from] pydb_wal::Error),

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
    /// A [`pydb_file::Error::Corrupted`] for `file` at `offset`: stored
    /// data failed a check.
    pub fn corrupted(file: impl Into<PathBuf>, offset: u64, reason: impl Into<String>) -> Self {
        Error::File(pydb_file::Error::corrupted(file, offset, reason))
    }

    /// A [`pydb_file::Error::Poisoned`] for the engine in `dir`: it refuses
    /// writes after the failed sync or write `reason`.
    pub fn poisoned(dir: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::File(pydb_file::Error::poisoned(dir, reason))
    }

    /// What the caller can do about this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::File(e) => e.kind(),
            Error::Wal(e) => e.kind(),
            Error::KeyTooLarge { .. }
            | Error::ValueTooLarge { .. }
            | Error::EmptyKey
            | Error::InvalidArgument(_)
            | Error::InvalidDatabase { .. } => ErrorKind::InvalidInput,
        }
    }

    /// Whether this error reports damaged data, found by any layer.
    pub fn is_corruption(&self) -> bool {
        self.kind() == ErrorKind::Corruption
    }
}

/// The result type of the storage layer.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_walks_the_wrapped_errors_to_one_answer() {
        // Damage found by the engine, and by the record log below it: one
        // variant, one kind, whichever layer wrapped it.
        let by_engine = Error::corrupted("pages", 4096, "bad checksum");
        let by_log = Error::from(pydb_wal::Error::corrupted("0001.log", 16, "bad crc"));
        for err in [&by_engine, &by_log] {
            assert_eq!(err.kind(), ErrorKind::Corruption, "{err}");
            assert!(err.is_corruption());
        }
        let poisoned = Error::from(pydb_wal::Error::poisoned("0001.log", "sync failed"));
        assert_eq!(poisoned.kind(), ErrorKind::Poisoned);
        assert_eq!(Error::poisoned("db", "x").kind(), ErrorKind::Poisoned);
        assert_eq!(Error::EmptyKey.kind(), ErrorKind::InvalidInput);
        let too_large = pydb_wal::Error::RecordTooLarge { len: 9, max: 8 };
        assert_eq!(Error::from(too_large).kind(), ErrorKind::InvalidInput);
        let locked = Error::from(pydb_file::Error::Locked {
            dir: "db".into(),
            reason: "held".into(),
        });
        assert_eq!(locked.kind(), ErrorKind::Locked);
        assert!(!locked.kind().is_retryable());
    }
}
