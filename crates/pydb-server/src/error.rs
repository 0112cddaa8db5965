//! The error type of the network side.

/// Everything that can go wrong serving or calling a database over the
/// network.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database failed.
    #[error(transparent)]
    Db(#[from] pydb::Error),

    /// A socket or another operating-system resource failed.
    #[error("{what}: {source}")]
    Io {
        /// The address or resource.
        what: String,
        /// What the OS said.
        source: std::io::Error,
    },

    /// A `SCAN` cursor that this server did not hand out (or has
    /// forgotten).
    #[error("invalid cursor")]
    InvalidCursor,

    /// An argument (an option value, an address, a reply) is not valid.
    #[error("{0}")]
    InvalidArgument(String),
}

impl Error {
    /// What the caller can do about this error (the kind shared by every
    /// pydb crate).
    pub fn kind(&self) -> pydb::storage::ErrorKind {
        use pydb::storage::ErrorKind;
        match self {
            Error::Db(e) => e.kind(),
            Error::Io { .. } => ErrorKind::Io,
            Error::InvalidCursor | Error::InvalidArgument(_) => ErrorKind::InvalidInput,
        }
    }

    /// An [`Error::Io`] about `what`.
    pub fn io(what: impl ToString, source: std::io::Error) -> Self {
        Error::Io {
            what: what.to_string(),
            source,
        }
    }
}

impl From<pydb_storage::Error> for Error {
    fn from(e: pydb_storage::Error) -> Self {
        Error::Db(pydb::Error::from(e))
    }
}

/// The result type of the network side.
pub type Result<T, E = Error> = std::result::Result<T, E>;
