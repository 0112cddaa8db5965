//! The error type of the command-line tool.

/// Everything the `pydb` binary can report.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database failed.
    #[error(transparent)]
    Db(#[from] pydb::Error),

    /// The network side (a server, a client) failed.
    #[error(transparent)]
    Server(#[from] pydb_server::Error),

    /// The terminal, a pipe or another resource failed.
    #[error("{what}: {source}")]
    Io {
        /// The resource.
        what: String,
        /// What the OS said.
        source: std::io::Error,
    },

    /// An argument is not valid.
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
            Error::Server(e) => e.kind(),
            Error::Io { .. } => ErrorKind::Io,
            Error::InvalidArgument(_) => ErrorKind::InvalidInput,
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

/// The result type of the command-line tool.
pub type Result<T, E = Error> = std::result::Result<T, E>;
