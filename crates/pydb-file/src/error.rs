//! The error type of the file layer, and the [`ErrorKind`] every pydb
//! crate classifies its errors by.
//!
//! ## One kind for every crate
//!
//! Each crate has its own error enum, wrapping the errors of the crates
//! below it (so `source()` leads down to the layer that failed). A caller
//! several layers up does not want to walk that chain to decide what to do:
//! it asks `error.kind()`, which every crate's error answers, like the
//! SQLSTATE class PostgreSQL gives a client. The kind says what the caller
//! can do: fix the input, retry, reopen, restore from a backup.
//!
//! ## Variants shared by the layers above
//!
//! Damage (`Corrupted`), a format from a newer build (`UnsupportedVersion`)
//! and a file that refuses writes after a failed sync (`Poisoned`) are
//! defined here once, at the bottom, and wrapped by every layer above. A
//! file layer that checks what it reads (a checksummed, compressed or
//! encrypted file) needs them first; the WAL and the engines reuse them, so
//! that "is this damage?" has one answer, `kind() == Corruption`, whatever
//! layer found it.

use std::path::PathBuf;

/// What a caller can do about an error, the same in every pydb crate.
///
/// Ask any pydb error with its `kind()` method. The enum is
/// `#[non_exhaustive]`: match it with a `_` arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The operating system failed an operation (a disk error, a full disk,
    /// a permission). It may succeed once the cause is fixed.
    Io,
    /// Stored bytes failed a check (checksum, magic, length, a pointer out
    /// of range). Nothing wrong was returned; repair or restore the data.
    Corruption,
    /// A component refuses writes after a failure it cannot undo, such as a
    /// failed `fsync`. Reopen the database: recovery starts from what is
    /// really on disk.
    Poisoned,
    /// The request is not valid (an empty or oversized key, a bad option).
    /// Retrying the same request fails the same way.
    InvalidInput,
    /// The operation lost a race with a concurrent one (a transaction that
    /// read what another one changed). Retrying it may succeed.
    Conflict,
    /// Something that was asked for does not exist (a file, a directory).
    NotFound,
    /// The data needs a feature this build does not have, such as a format
    /// version written by a newer pydb.
    Unsupported,
    /// Another process (or another handle) holds the database directory.
    Locked,
}

impl ErrorKind {
    /// Whether running the same operation again may succeed without any
    /// other change: true for [`ErrorKind::Conflict`] only.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorKind::Conflict)
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ErrorKind::Io => "I/O error",
            ErrorKind::Corruption => "corruption",
            ErrorKind::Poisoned => "poisoned",
            ErrorKind::InvalidInput => "invalid input",
            ErrorKind::Conflict => "conflict",
            ErrorKind::NotFound => "not found",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Locked => "locked",
        })
    }
}

/// Everything that can go wrong in the file layer.
///
/// Every variant names the file it is about, so that an error surfacing
/// three layers up still tells the user *which* file misbehaved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The operating system reported an I/O error.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file the operation was about.
        path: PathBuf,
        /// The error the OS returned.
        #[source]
        source: std::io::Error,
    },
    /// A read asked for bytes past the end of the file.
    #[error("read of {len} bytes at offset {offset} is past the end of {path} ({file_len} bytes)")]
    ReadPastEnd {
        /// The file that was read.
        path: PathBuf,
        /// Where the read started.
        offset: u64,
        /// How many bytes were asked for.
        len: usize,
        /// The length of the file at the time of the read.
        file_len: u64,
    },
    /// An offset or length overflowed `u64` (only reachable with corrupt input).
    #[error("offset arithmetic overflowed on {path} at offset {offset}")]
    Overflow {
        /// The file the operation was about.
        path: PathBuf,
        /// The offset that overflowed.
        offset: u64,
    },
    /// Stored bytes failed a check: a record, page, block or header whose
    /// checksum, magic or length is wrong where it cannot be the torn tail
    /// of an interrupted write. Reported with where the damage is, never
    /// skipped.
    #[error("corrupted {path} at offset {offset}: {reason}")]
    Corrupted {
        /// The damaged file.
        path: PathBuf,
        /// The offset of the damaged record, page or header.
        offset: u64,
        /// What check failed.
        reason: String,
    },
    /// The file's format version is newer than this build understands.
    #[error("{path} has format version {found}; this build reads up to {supported}")]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version in the file.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },
    /// Another process (or another handle in this one) holds the directory
    /// lock ([`crate::DirLock`]).
    #[error("{dir} is locked by another process: {reason}")]
    Locked {
        /// The database directory.
        dir: PathBuf,
        /// What the OS said.
        reason: String,
    },
    /// A write or sync failed earlier; writes are refused until reopen.
    ///
    /// After a failed `fsync` the kernel may have dropped the dirty pages and
    /// cleared the error, so a retried `fsync` can report success for data
    /// that never reached the disk (see [`crate::faulty`], "a lying
    /// `fsync`"). The only safe answer is to stop writing and let the user
    /// reopen the database, which recovers from what is really on disk.
    #[error("{path} is poisoned after a failed write or sync ({reason}); reopen the database")]
    Poisoned {
        /// The file (or database directory) that refuses writes.
        path: PathBuf,
        /// The original failure.
        reason: String,
    },
    /// The operation is not supported by this kind of file (an in-place
    /// write into a compressed file, a format version this build does not
    /// know).
    #[error("unsupported operation on {path}: {reason}")]
    Unsupported {
        /// The file the operation was about.
        path: PathBuf,
        /// What was asked and why it cannot be done.
        reason: String,
    },
    /// A key does not open what it was asked to open: the key file is not
    /// the one the data key was wrapped with, or the key material is unfit.
    /// Nothing on disk was changed.
    #[error("wrong or unusable encryption key: {reason}")]
    WrongKey {
        /// Which check failed.
        reason: String,
    },
}

impl Error {
    /// Wraps an `std::io::Error` with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// A [`Error::Corrupted`] for `path` at `offset`.
    pub fn corrupted(path: impl Into<PathBuf>, offset: u64, reason: impl Into<String>) -> Self {
        Error::Corrupted {
            path: path.into(),
            offset,
            reason: reason.into(),
        }
    }

    /// A [`Error::Poisoned`] for `path`, after the failure `reason`.
    pub fn poisoned(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Poisoned {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// What the caller can do about this error.
    ///
    /// A read past the end and an offset overflow count as corruption: the
    /// offsets pydb reads at come from its own files, so one that points
    /// outside a file means those bytes were damaged.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Io { source, .. } => match source.kind() {
                std::io::ErrorKind::NotFound => ErrorKind::NotFound,
                std::io::ErrorKind::InvalidInput => ErrorKind::InvalidInput,
                _ => ErrorKind::Io,
            },
            Error::ReadPastEnd { .. } | Error::Overflow { .. } | Error::Corrupted { .. } => {
                ErrorKind::Corruption
            }
            Error::UnsupportedVersion { .. } | Error::Unsupported { .. } => ErrorKind::Unsupported,
            Error::WrongKey { .. } => ErrorKind::InvalidInput,
            Error::Poisoned { .. } => ErrorKind::Poisoned,
            Error::Locked { .. } => ErrorKind::Locked,
        }
    }

    /// Whether this error reports damaged data.
    pub fn is_corruption(&self) -> bool {
        self.kind() == ErrorKind::Corruption
    }

    /// The `std::io::ErrorKind` behind this error, if it came from the OS.
    pub fn io_kind(&self) -> Option<std::io::ErrorKind> {
        match self {
            Error::Io { source, .. } => Some(source.kind()),
            _ => None,
        }
    }
}

/// The result type of the file layer.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_variant_has_the_kind_a_caller_acts_on() {
        let io = |kind| Error::io("f", std::io::Error::from(kind));
        assert_eq!(io(std::io::ErrorKind::NotFound).kind(), ErrorKind::NotFound);
        assert_eq!(io(std::io::ErrorKind::StorageFull).kind(), ErrorKind::Io);
        assert_eq!(
            Error::corrupted("f", 7, "bad").kind(),
            ErrorKind::Corruption
        );
        let past_end = Error::ReadPastEnd {
            path: "f".into(),
            offset: 10,
            len: 4,
            file_len: 12,
        };
        assert!(past_end.is_corruption());
        assert_eq!(
            Error::poisoned("f", "sync failed").kind(),
            ErrorKind::Poisoned
        );
        let newer = Error::UnsupportedVersion {
            path: "f".into(),
            found: 9,
            supported: 1,
        };
        assert_eq!(newer.kind(), ErrorKind::Unsupported);
    }

    #[test]
    fn only_a_conflict_is_retryable() {
        let kinds = [
            ErrorKind::Io,
            ErrorKind::Corruption,
            ErrorKind::Poisoned,
            ErrorKind::InvalidInput,
            ErrorKind::Conflict,
            ErrorKind::NotFound,
            ErrorKind::Unsupported,
            ErrorKind::Locked,
        ];
        let retryable: Vec<ErrorKind> = kinds.into_iter().filter(|k| k.is_retryable()).collect();
        assert_eq!(retryable, vec![ErrorKind::Conflict]);
    }
}
