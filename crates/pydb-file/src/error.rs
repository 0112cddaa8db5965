//! The error type of the file layer.

use std::path::PathBuf;

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
    /// Bytes read back failed their checks (a checksum or an authentication
    /// tag): the file is damaged or was tampered with. Nothing of the
    /// damaged unit is returned.
    #[error("corrupted {path} at offset {offset}: {reason}")]
    Corrupted {
        /// The damaged file.
        path: PathBuf,
        /// The physical offset of the damaged block, chunk or header.
        offset: u64,
        /// What check failed.
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
