//! The error type of the transaction layer.
//!
//! Four errors say "another transaction got in the way; run yours again":
//! [`Error::WriteConflict`], [`Error::SerializationFailure`],
//! [`Error::Deadlock`] and [`Error::LockTimeout`]. They answer
//! [`Error::is_retryable`] with `true`, and
//! [`TxnManager::transaction`](crate::TxnManager::transaction) retries them.
//! Every other error is not the caller's bad luck and is not retried.

use std::time::Duration;

/// Everything that can go wrong in a transaction.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Snapshot isolation's first-committer-wins rule: a transaction that
    /// committed after this one's snapshot wrote the same key.
    #[error(
        "write conflict on key {key}: transaction {txn} wrote it, but a concurrent transaction committed a write to it first"
    )]
    WriteConflict {
        /// The transaction that lost.
        txn: u64,
        /// The key, printable.
        key: String,
    },

    /// Serializable snapshot isolation found a dangerous structure of
    /// read-write dependencies that could close a cycle.
    #[error("serialization failure in transaction {txn}: {reason}")]
    SerializationFailure {
        /// The transaction aborted.
        txn: u64,
        /// Which reads and writes form the structure (keys and ranges).
        reason: String,
    },

    /// The lock manager found a cycle of waiting transactions and chose
    /// this one, the youngest in the cycle, as the victim.
    #[error("deadlock: transaction {victim} was chosen as the victim while waiting for {resource}")]
    Deadlock {
        /// The aborted transaction.
        victim: u64,
        /// The lock it was waiting for (a key or a range).
        resource: String,
    },

    /// A lock was not granted in time (a zero wait is the no-wait mode).
    #[error("transaction {txn} gave up waiting for a lock on {resource} after {waited:?}")]
    LockTimeout {
        /// The transaction that waited.
        txn: u64,
        /// The lock (a key or a range).
        resource: String,
        /// How long it waited.
        waited: Duration,
    },

    /// A write in a read-only transaction.
    #[error("transaction {txn} is read-only")]
    ReadOnly {
        /// The transaction.
        txn: u64,
    },

    /// An "as of" read of a commit whose versions were already collected.
    #[error(
        "cannot read as of commit {requested}: versions before commit {horizon} were garbage-collected"
    )]
    SnapshotTooOld {
        /// The commit asked for.
        requested: u64,
        /// The oldest commit that can still be read.
        horizon: u64,
    },

    /// An "as of" read of a commit that has not happened.
    #[error("cannot read as of commit {requested}: the last commit is {latest}")]
    SnapshotInFuture {
        /// The commit asked for.
        requested: u64,
        /// The last published commit.
        latest: u64,
    },

    /// A commit's write to the engine failed; nobody knows whether it
    /// reached the disk, so the manager refuses new work until reopened.
    #[error(
        "the transaction manager is poisoned after a failed commit ({reason}); reopen the database"
    )]
    Poisoned {
        /// The original failure.
        reason: String,
    },

    /// A version key or value in the engine does not decode.
    #[error("corrupted transaction data at engine key {key}: {reason}")]
    Corrupted {
        /// The engine key, printable.
        key: String,
        /// What check failed.
        reason: String,
    },

    /// The storage engine failed.
    #[error(transparent)]
    Storage(#[from] pydb_storage::Error),
}

impl Error {
    /// Whether running the transaction again may succeed: true for write
    /// conflicts, serialization failures, deadlocks and lock timeouts.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::WriteConflict { .. }
                | Error::SerializationFailure { .. }
                | Error::Deadlock { .. }
                | Error::LockTimeout { .. }
        )
    }
}

/// The result type of the transaction layer.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A key as text for messages: printable ASCII as is, other bytes escaped.
pub(crate) fn printable(key: &[u8]) -> String {
    let escaped: String = key.escape_ascii().to_string();
    format!("'{escaped}'")
}
