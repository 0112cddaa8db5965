//! The error type of the facade: everything `pydb::Db` and the tools can
//! report.
//!
//! Storage errors are wrapped, not flattened, so `source()` still leads to
//! the layer that failed. The variants added here are about the database
//! *directory*: what is in it, and whether this build can open it.

use std::path::PathBuf;

use crate::db::EngineKind;

/// Everything that can go wrong opening or using a database.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The storage engine failed.
    #[error(transparent)]
    Storage(#[from] pydb_storage::Error),

    /// The transaction layer failed: a conflict (retryable), a read-only
    /// violation, a poisoned manager, an "as of" out of range. Its storage
    /// errors are unwrapped into [`Error::Storage`].
    #[error(transparent)]
    Txn(pydb_txn::Error),

    /// A SQL statement failed: a syntax error, an unknown name, a
    /// constraint, a serialization failure (SQLSTATE `40001`, retryable).
    #[error(transparent)]
    Sql(#[from] pydb_query::Error),

    /// The directory was written by a pydb before transactions (an older
    /// metadata format version), whose engine holds plain keys instead of
    /// version keys.
    #[error(
        "{dir} has format version {found}, written by a pydb without transactions; this build opens only version {supported} (copy the data out with the older pydb, e.g. over the Redis protocol, and load it into a new directory)"
    )]
    OldFormat {
        /// The directory.
        dir: PathBuf,
        /// The version in its metadata.
        found: u32,
        /// The version this build opens.
        supported: u32,
    },

    /// An operating-system call on a path failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },

    /// The directory holds files but no `PYDB` metadata file: it is not a
    /// pydb database, and pydb will not write into it.
    #[error(
        "{dir} is not a pydb database: it is not empty and has no PYDB metadata file (found {found:?})"
    )]
    NotADatabase {
        /// The directory.
        dir: PathBuf,
        /// One of the files found in it.
        found: String,
    },

    /// The database was created by another engine than the one asked for.
    #[error(
        "{dir} is a {on_disk} database; it cannot be opened as {asked} (use --engine {on_disk})"
    )]
    WrongEngine {
        /// The directory.
        dir: PathBuf,
        /// The engine recorded in the metadata.
        on_disk: EngineKind,
        /// The engine asked for.
        asked: EngineKind,
    },

    /// The metadata (or another file) has a newer format version than this
    /// build understands.
    #[error("{path} has format version {found}; this build reads up to version {supported}")]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version in the file.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },

    /// A file of the database failed a check (checksum, magic, length).
    #[error("corrupted {file} at offset {offset}: {reason}")]
    Corrupted {
        /// The damaged file.
        file: PathBuf,
        /// Where the damage is.
        offset: u64,
        /// What check failed.
        reason: String,
    },

    /// The database is encrypted and no key was given.
    #[error(
        "{dir} is encrypted: open it with its key file (--encryption-key-file PATH, or Options::encryption)"
    )]
    KeyRequired {
        /// The directory.
        dir: PathBuf,
    },

    /// The key given does not unwrap the database's data key: another key
    /// file, or a damaged wrapped key. Nothing was read or written.
    #[error("{dir}: wrong encryption key: {reason}")]
    WrongKey {
        /// The directory.
        dir: PathBuf,
        /// What failed.
        reason: String,
    },

    /// The database was created with other storage settings (encryption,
    /// compression) than it is opened with.
    #[error("{dir} cannot be opened with these settings: {reason}")]
    SettingsMismatch {
        /// The directory.
        dir: PathBuf,
        /// Which setting differs, and how to open it.
        reason: String,
    },

    /// A value that must be an integer (for `INCR`) is not one.
    #[error("value is not an integer or out of range")]
    NotAnInteger,

    /// An increment would take an integer out of the `i64` range.
    #[error("increment or decrement would overflow")]
    Overflow,

    /// An argument (an option value, a path) is not valid.
    #[error("{0}")]
    InvalidArgument(String),
}

impl Error {
    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// A [`Error::Corrupted`] for `file` at `offset`.
    pub fn corrupted(file: impl Into<PathBuf>, offset: u64, reason: impl Into<String>) -> Self {
        Error::Corrupted {
            file: file.into(),
            offset,
            reason: reason.into(),
        }
    }

    /// What the caller can do about this error, in the facade or below.
    pub fn kind(&self) -> pydb_storage::ErrorKind {
        use pydb_storage::ErrorKind;
        match self {
            Error::Storage(e) => e.kind(),
            Error::Txn(e) => txn_kind(e),
            Error::Sql(e) => e.kind(),
            Error::OldFormat { .. } => ErrorKind::Unsupported,
            Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                ErrorKind::NotFound
            }
            Error::Io { .. } => ErrorKind::Io,
            Error::UnsupportedVersion { .. } => ErrorKind::Unsupported,
            Error::Corrupted { .. } => ErrorKind::Corruption,
            Error::NotADatabase { .. }
            | Error::WrongEngine { .. }
            | Error::KeyRequired { .. }
            | Error::WrongKey { .. }
            | Error::SettingsMismatch { .. }
            | Error::NotAnInteger
            | Error::Overflow
            | Error::InvalidArgument(_) => ErrorKind::InvalidInput,
        }
    }

    /// Whether running the transaction (or SQL statement) again may
    /// succeed: it lost to a concurrent one.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Txn(e) => e.is_retryable(),
            Error::Sql(e) => e.is_retryable(),
            _ => false,
        }
    }

    /// The SQLSTATE code of a SQL error, as PostgreSQL reports it (`None`
    /// for other errors).
    pub fn sqlstate(&self) -> Option<&'static str> {
        match self {
            Error::Sql(e) => Some(e.sqlstate()),
            _ => None,
        }
    }

    /// Whether this error reports damaged data, in the facade or below.
    pub fn is_corruption(&self) -> bool {
        self.kind() == pydb_storage::ErrorKind::Corruption
    }
}

/// The kind of a transaction-layer error.
fn txn_kind(e: &pydb_txn::Error) -> pydb_storage::ErrorKind {
    use pydb_storage::ErrorKind;
    match e {
        e if e.is_retryable() => ErrorKind::Conflict,
        pydb_txn::Error::Storage(e) => e.kind(),
        pydb_txn::Error::Poisoned { .. } => ErrorKind::Poisoned,
        pydb_txn::Error::Corrupted { .. } => ErrorKind::Corruption,
        _ => ErrorKind::InvalidInput,
    }
}

impl From<pydb_txn::Error> for Error {
    fn from(e: pydb_txn::Error) -> Self {
        match e {
            pydb_txn::Error::Storage(e) => Error::Storage(e),
            e => Error::Txn(e),
        }
    }
}

impl From<pydb_file::Error> for Error {
    fn from(e: pydb_file::Error) -> Self {
        Error::Storage(e.into())
    }
}

/// The result type of the facade.
pub type Result<T, E = Error> = std::result::Result<T, E>;
