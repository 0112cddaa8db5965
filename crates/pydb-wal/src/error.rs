//! The error type of the WAL layer.
//!
//! Damage, a newer format version and a poisoned log are the file layer's
//! shared variants ([`pydb_file::Error::Corrupted`],
//! [`pydb_file::Error::UnsupportedVersion`], [`pydb_file::Error::Poisoned`]),
//! wrapped in [`Error::File`]; ask [`Error::kind`] rather than matching
//! their shape.

use std::path::PathBuf;

use pydb_file::ErrorKind;

/// Everything that can go wrong reading or writing a record log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file layer failed, or found damage, a newer format version, or
    /// a log poisoned by an earlier failed sync (see [`Error::kind`]).
    #[error(transparent)]
    File(#[from] pydb_file::Error),

    /// A record payload is larger than [`crate::MAX_PAYLOAD_LEN`].
    #[error("record of {len} bytes is over the limit of {max} bytes")]
    RecordTooLarge {
        /// The payload length asked for.
        len: usize,
        /// The limit.
        max: u32,
    },
}

impl Error {
    /// A [`pydb_file::Error::Corrupted`] for the log `file` at `offset`: a
    /// record or file header failed its checks at a place where it cannot
    /// be the torn tail of an interrupted write.
    pub fn corrupted(file: impl Into<PathBuf>, offset: u64, reason: impl Into<String>) -> Self {
        Error::File(pydb_file::Error::corrupted(file, offset, reason))
    }

    /// A [`pydb_file::Error::Poisoned`] for the log `file`.
    pub fn poisoned(file: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::File(pydb_file::Error::poisoned(file, reason))
    }

    /// What the caller can do about this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::File(e) => e.kind(),
            Error::RecordTooLarge { .. } => ErrorKind::InvalidInput,
        }
    }

    /// Whether this error reports damaged data.
    pub fn is_corruption(&self) -> bool {
        self.kind() == ErrorKind::Corruption
    }
}

/// The result type of the WAL layer.
pub type Result<T, E = Error> = std::result::Result<T, E>;
