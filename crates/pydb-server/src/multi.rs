//! Redis transactions: `MULTI`, `EXEC`, `DISCARD`, `WATCH`, `UNWATCH`.
//!
//! Redis has no rollback and no isolation levels; what it promises is that
//! the commands queued between `MULTI` and `EXEC` run one after the other
//! with nothing of another client in between, and that `EXEC` does nothing
//! (answering a nil array) if a key named by `WATCH` was modified after the
//! `WATCH`. pydb keeps that contract with its own machinery:
//!
//! ```text
//!  WATCH k        remember (k, last commit ts); open a read-only snapshot
//!                 (the guard) so garbage collection keeps every version
//!                 written from now on, deletes included
//!  MULTI          start queueing
//!  SET k v        +QUEUED  (checked like any command first: an unknown
//!  INCR n         +QUEUED   command or a wrong arity answers its error and
//!                           dooms the EXEC, as in Redis)
//!  EXEC           one Serializable pydb transaction:
//!                   1. for each watched (k, ts): last_modified(k) > ts?
//!                      then answer nil, write nothing
//!                   2. run the queued commands against the transaction,
//!                      each reply in its slot (a command's own error, such
//!                      as INCR of a non-number, is its reply, as in Redis)
//!                   3. commit: all of the writes become visible at once
//!                      (one commit timestamp, one engine batch), or none
//! ```
//!
//! ## Why this is Redis's semantics
//!
//! - *Atomic and isolated*: the queued commands read and write one
//!   serializable transaction, so the committed result is that of running
//!   them alone at some instant. If a concurrent commit gets in the way
//!   (a write conflict or an SSI failure), the transaction is run again,
//!   watch check included, a bounded number of times
//!   ([`pydb::txn::Options::max_retries`]); the client never sees it.
//! - *WATCH*: every commit has a timestamp, and every version of a key
//!   carries the timestamp of the commit that wrote it. A key was modified
//!   after the `WATCH` exactly when the newest version the `EXEC`
//!   transaction sees is newer than the last commit at `WATCH` time. Any
//!   write counts, also one that stores the same value, and also a delete
//!   (a tombstone version); a `DEL` of a missing key writes nothing and
//!   does not count, as in Redis. The guard snapshot pins the garbage
//!   collector's watermark at or below the `WATCH`, so a tombstone written
//!   after it cannot be collected before the `EXEC` looks at it. A key
//!   that expires will count as modified the same way, once pydb has
//!   expiry: an expiry is a delete version.
//! - The check reads each watched key inside the serializable transaction,
//!   so a write to it that commits between the check and the commit
//!   either conflicts with the transaction (if it writes the key too) or
//!   is ordered after it: in both cases the history is one where nothing
//!   changed the key between `WATCH` and `EXEC`.
//!
//! ## What differs from Redis
//!
//! - Redis checks only the name and arity of a queued command; the rest
//!   (`SET k v BADOPTION`) fails at `EXEC`. pydb parses the whole command
//!   when it arrives, and does the same split: an unknown command, an
//!   unknown subcommand or a wrong number of arguments dooms the `EXEC`
//!   (`EXECABORT`); any other parse error is queued and becomes that
//!   command's reply in the `EXEC` array.
//! - A failure of the commit itself (say a key over the engine's limit, or
//!   conflicts that outlast the retries) fails the whole `EXEC` with an
//!   error reply, and nothing is written: pydb's `EXEC` is all or nothing,
//!   where Redis would have applied the other commands.
//! - Commands that are not about keys (`INFO`, `SCAN`, `COMPACT`,
//!   `STATS`, ...) run beside the transaction, as they would outside it;
//!   connection commands (`CLIENT`, `AUTH`, `HELLO`, `CONFIG SET`) run
//!   after the commit, by the connection, their replies in their slots.
//! - Holding a `WATCH` holds the guard snapshot: a client that watches and
//!   never calls `EXEC` keeps old versions from being collected until it
//!   does, or `UNWATCH`es, or disconnects.

use bytes::Bytes;
use pydb::{Db, Isolation, Transaction};

use crate::command::{Command, CommandError, set_reply, ttl_reply};
use crate::info::{Host, NoHost};
use crate::reply::Reply;

/// A command waiting for `EXEC`: parsed, or refused with an error that is
/// its reply at `EXEC` (see the module doc).
#[derive(Debug, Clone)]
pub enum Queued {
    /// A command to run.
    Command(Command),
    /// A command whose parsing failed after its name and arity passed.
    Error(Reply),
}

/// The transaction state of one connection.
#[derive(Debug, Default)]
pub struct MultiState {
    /// `Some` between `MULTI` and `EXEC`/`DISCARD`: the queued commands.
    queue: Option<Vec<Queued>>,
    /// A queued command was refused: `EXEC` must abort.
    doomed: bool,
    /// The watched keys, each with the last commit timestamp at its
    /// `WATCH`.
    watched: Vec<(Bytes, u64)>,
    /// A read-only snapshot held while keys are watched: it keeps the
    /// watermark at or below every watched timestamp (see the module doc).
    guard: Option<Transaction>,
}

/// What the connection does with a request, given the transaction state.
#[derive(Debug)]
pub enum Route {
    /// Answer with this reply; nothing else to do.
    Reply(Reply),
    /// Run the command as usual (no transaction is being queued).
    Run(Command),
    /// `EXEC`: run these queued commands with [`exec`], checking these
    /// watched keys first.
    Exec {
        /// The queued commands, in order.
        queued: Vec<Queued>,
        /// The watched keys and their timestamps.
        watched: Vec<(Bytes, u64)>,
    },
}

/// How an `EXEC` ended.
#[derive(Debug)]
pub enum ExecOutcome {
    /// A watched key was modified: nothing ran; the reply is a nil array.
    WatchedKeyChanged,
    /// The transaction committed. One reply per queued command, in order;
    /// `None` for a connection-level command, which the caller runs now.
    Committed(Vec<Option<Reply>>),
    /// The transaction could not commit; nothing of it was written.
    Failed(Reply),
}

impl ExecOutcome {
    /// The reply to `EXEC`: a nil array, the error, or one reply per
    /// queued command, running `connection_level` for the slots left open.
    pub fn into_reply(
        self,
        queued: &[Queued],
        mut connection_level: impl FnMut(&Command) -> Reply,
    ) -> Reply {
        match self {
            ExecOutcome::WatchedKeyChanged => Reply::NilArray,
            ExecOutcome::Failed(reply) => reply,
            ExecOutcome::Committed(replies) => Reply::Array(
                replies
                    .into_iter()
                    .zip(queued)
                    .map(|(reply, item)| match (reply, item) {
                        (Some(reply), _) => reply,
                        (None, Queued::Command(command)) => connection_level(command),
                        (None, Queued::Error(reply)) => reply.clone(),
                    })
                    .collect(),
            ),
        }
    }
}

impl MultiState {
    /// A connection's state before any `MULTI` or `WATCH`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether commands are being queued (between `MULTI` and `EXEC`).
    pub fn in_multi(&self) -> bool {
        self.queue.is_some()
    }

    /// Whether any key is watched.
    pub fn is_watching(&self) -> bool {
        !self.watched.is_empty()
    }

    /// Forgets the queue and the watched keys (what `DISCARD`, `EXEC` and a
    /// disconnect do).
    pub fn reset(&mut self) {
        self.queue = None;
        self.doomed = false;
        self.unwatch();
    }

    fn unwatch(&mut self) {
        self.watched.clear();
        self.guard = None;
    }

    /// Routes one request: the transaction commands change the state here,
    /// other commands are queued while in `MULTI` and passed through
    /// otherwise.
    pub fn route(&mut self, db: &Db, parsed: Result<Command, CommandError>) -> Route {
        let command = match parsed {
            Ok(command) => command,
            Err(CommandError::WrongArity("exec")) => {
                // Redis aborts the whole transaction, inside MULTI or not.
                self.reset();
                return Route::Reply(Reply::Error(
                    "EXECABORT Transaction discarded because of: wrong number of arguments for 'exec' command"
                        .into(),
                ));
            }
            Err(e) => {
                let Some(queue) = &mut self.queue else {
                    return Route::Reply(e.into());
                };
                if dooms_exec(&e) {
                    self.doomed = true;
                    return Route::Reply(e.into());
                }
                queue.push(Queued::Error(e.into()));
                return Route::Reply(queued());
            }
        };
        match command {
            Command::Multi if self.in_multi() => {
                Route::Reply(Reply::err("MULTI calls can not be nested"))
            }
            Command::Multi => {
                self.queue = Some(Vec::new());
                Route::Reply(Reply::ok())
            }
            Command::Watch { .. } if self.in_multi() => {
                Route::Reply(Reply::err("WATCH inside MULTI is not allowed"))
            }
            Command::Watch { keys } => Route::Reply(self.watch(db, keys)),
            Command::Unwatch if !self.in_multi() => {
                self.unwatch();
                Route::Reply(Reply::ok())
            }
            Command::Discard if self.in_multi() => {
                self.reset();
                Route::Reply(Reply::ok())
            }
            Command::Discard => Route::Reply(Reply::err("DISCARD without MULTI")),
            Command::Exec => {
                let Some(queue) = self.queue.take() else {
                    return Route::Reply(Reply::err("EXEC without MULTI"));
                };
                let watched = std::mem::take(&mut self.watched);
                // The guard stays until `exec` has begun its transaction;
                // the caller then calls `exec_done`.
                if std::mem::take(&mut self.doomed) {
                    self.guard = None;
                    return Route::Reply(Reply::Error(
                        "EXECABORT Transaction discarded because of previous errors.".into(),
                    ));
                }
                Route::Exec {
                    queued: queue,
                    watched,
                }
            }
            // QUIT is answered at once, in MULTI too (as in Redis).
            Command::Quit => Route::Run(Command::Quit),
            command => match &mut self.queue {
                Some(queue) => {
                    queue.push(Queued::Command(command));
                    Route::Reply(queued())
                }
                None => Route::Run(command),
            },
        }
    }

    /// `WATCH keys`: remembers each key with the last commit timestamp.
    fn watch(&mut self, db: &Db, keys: Vec<Bytes>) -> Reply {
        if self.guard.is_none() {
            // Begin the guard before reading the timestamp: its snapshot
            // is then at or below every watched timestamp.
            match db.begin_read_only(Isolation::Snapshot) {
                Ok(tx) => self.guard = Some(tx),
                Err(e) => return Reply::err(e),
            }
        }
        let ts = db.last_commit();
        for key in keys {
            // A key watched twice keeps its first (older, stricter) time.
            if !self.watched.iter().any(|(k, _)| *k == key) {
                self.watched.push((key, ts));
            }
        }
        Reply::ok()
    }

    /// Ends what `EXEC` began: drops the guard snapshot.
    pub fn exec_done(&mut self) {
        self.guard = None;
    }

    /// Answers one parsed command for a session that has no connection
    /// (the local shell): the same states and replies as the server, with
    /// connection commands answered as [`Command::execute`] answers them.
    /// `QUIT` is the caller's.
    pub fn answer_local(&mut self, db: &Db, parsed: Result<Command, CommandError>) -> Reply {
        match self.route(db, parsed) {
            Route::Reply(reply) => reply,
            Route::Run(command) => command.execute(db),
            Route::Exec { queued, watched } => {
                let outcome = exec(db, &NoHost, &queued, &watched);
                self.exec_done();
                outcome.into_reply(&queued, |command| command.execute(db))
            }
        }
    }
}

/// Whether a parse error inside `MULTI` dooms the `EXEC` (Redis rejects
/// these when queueing) rather than being queued as the command's reply.
fn dooms_exec(e: &CommandError) -> bool {
    matches!(
        e,
        CommandError::Empty
            | CommandError::UnknownCommand { .. }
            | CommandError::UnknownSubcommand { .. }
            | CommandError::WrongArity(_)
    )
}

fn queued() -> Reply {
    Reply::Status("QUEUED".into())
}

/// Runs an `EXEC`: checks the watched keys and runs the queued commands in
/// one serializable transaction, retried on conflicts (see the module doc).
///
/// A conflict means another commit got in first; the retry waits until
/// that commit is visible, so it either sees a watched key modified (and
/// answers nil) or runs on the newer data. Each retry follows someone
/// else's progress, so the bound ([`pydb::db::RMW_ATTEMPTS`], as for
/// `INCR`) is only a guard against a livelock bug.
pub fn exec(db: &Db, host: &dyn Host, queued: &[Queued], watched: &[(Bytes, u64)]) -> ExecOutcome {
    let mut attempt = 0;
    loop {
        let result = db
            .txn_manager()
            .begin(Isolation::Serializable)
            .and_then(|mut tx| {
                let replies = exec_once(&mut tx, db, host, queued, watched)?;
                tx.commit()?;
                Ok(replies)
            });
        match result {
            Ok(None) => return ExecOutcome::WatchedKeyChanged,
            Ok(Some(replies)) => return ExecOutcome::Committed(replies),
            Err(e) if e.is_retryable() && attempt + 1 < pydb::db::RMW_ATTEMPTS => {
                attempt += 1;
                if let Err(e) = db.txn_manager().wait_for_pending_commits() {
                    return ExecOutcome::Failed(Reply::err(e));
                }
            }
            Err(e) => return ExecOutcome::Failed(Reply::err(e)),
        }
    }
}

/// One attempt of an `EXEC` in `tx`: `None` if a watched key changed.
fn exec_once(
    tx: &mut Transaction,
    db: &Db,
    host: &dyn Host,
    queued: &[Queued],
    watched: &[(Bytes, u64)],
) -> pydb::txn::Result<Option<Vec<Option<Reply>>>> {
    for (key, since) in watched {
        if tx.last_modified(key)?.is_some_and(|ts| ts > *since) {
            return Ok(None);
        }
    }
    let mut replies = Vec::with_capacity(queued.len());
    for item in queued {
        replies.push(match item {
            Queued::Error(reply) => Some(reply.clone()),
            Queued::Command(command) if command.is_connection_level() => match command {
                // Nothing to do: EXEC unwatches anyway.
                Command::Unwatch => Some(Reply::ok()),
                _ => None,
            },
            Queued::Command(command) => Some(run(command, tx, db, host)?),
        });
    }
    Ok(Some(replies))
}

/// Runs one queued command against the `EXEC` transaction. An error of
/// the command itself (not an integer, ...) is its reply; an error of the
/// transaction is returned, so the whole `EXEC` is retried or fails.
fn run(
    command: &Command,
    tx: &mut Transaction,
    db: &Db,
    host: &dyn Host,
) -> pydb::txn::Result<Reply> {
    Ok(match command {
        Command::Set {
            name,
            key,
            value,
            condition,
            expiry,
            get,
        } => {
            let expiry = match expiry.set_expiry(name, tx.now_ms()) {
                Ok(expiry) => expiry,
                Err(reply) => return Ok(reply),
            };
            let options = pydb::SetOptions {
                condition: *condition,
                expiry,
            };
            set_reply(*get, pydb::kv::set_with(tx, key, value, options)?)
        }
        Command::Expire {
            name,
            key,
            when,
            conditions,
        } => {
            let deadline = match when.expire_deadline(name, tx.now_ms()) {
                Ok(deadline) => deadline,
                Err(reply) => return Ok(reply),
            };
            Reply::Integer(i64::from(pydb::kv::expire_at(
                tx, key, deadline, conditions,
            )?))
        }
        Command::Ttl { key, millis } => ttl_reply(pydb::kv::ttl(tx, key)?, *millis),
        Command::Persist { key } => Reply::Integer(i64::from(pydb::kv::persist(tx, key)?)),
        Command::Incr { key, delta } => match pydb::kv::incr_by(tx, key, *delta)? {
            Ok(next) => Reply::Integer(next),
            Err(err) => Reply::err(err),
        },
        Command::Get { key } => Reply::Bulk(tx.get(key)?),
        Command::Type { key } => Reply::Status(
            if tx.get(key)?.is_some() {
                "string"
            } else {
                "none"
            }
            .into(),
        ),
        Command::Del { keys } => {
            let mut deleted = 0;
            for key in keys {
                if tx.get(key)?.is_some() {
                    tx.delete(key)?;
                    deleted += 1;
                }
            }
            Reply::Integer(deleted)
        }
        Command::Exists { keys } => {
            let mut found = 0;
            for key in keys {
                if tx.get(key)?.is_some() {
                    found += 1;
                }
            }
            Reply::Integer(found)
        }
        Command::MSet { pairs } => {
            for (key, value) in pairs {
                tx.set(key, value)?;
            }
            Reply::ok()
        }
        Command::MGet { keys } => Reply::Array(
            keys.iter()
                .map(|key| tx.get(key).map(Reply::Bulk))
                .collect::<pydb::txn::Result<_>>()?,
        ),
        Command::DbSize => {
            let mut count: i64 = 0;
            for item in tx.scan::<&[u8]>(..)? {
                item?;
                count = count.saturating_add(1);
            }
            Reply::Integer(count)
        }
        Command::Range { start, end, limit } => {
            let mut items = Vec::new();
            for item in tx
                .scan((start.clone(), end.clone()))?
                .take(limit.unwrap_or(usize::MAX))
            {
                let (key, value) = item?;
                items.push(Reply::Bulk(Some(key)));
                items.push(Reply::Bulk(Some(value)));
            }
            Reply::Array(items)
        }
        Command::FlushDb => {
            let keys = tx
                .scan::<&[u8]>(..)?
                .map(|item| item.map(|(key, _)| key))
                .collect::<pydb::txn::Result<Vec<_>>>()?;
            for key in keys {
                tx.delete(&key)?;
            }
            Reply::ok()
        }
        // Not about keys: as outside a transaction.
        other => other.execute_in(db, host),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(state: &mut MultiState, db: &Db, line: &str) -> Reply {
        let args: Vec<&str> = line.split(' ').collect();
        state.answer_local(db, Command::parse(&args))
    }

    fn status(s: &str) -> Reply {
        Reply::Status(s.into())
    }

    #[test]
    fn a_local_session_queues_and_execs() {
        let db = Db::memory().unwrap();
        let mut s = MultiState::new();
        assert_eq!(run(&mut s, &db, "MULTI"), Reply::ok());
        assert!(s.in_multi());
        assert_eq!(run(&mut s, &db, "SET k 1"), status("QUEUED"));
        assert_eq!(run(&mut s, &db, "INCRBY k 41"), status("QUEUED"));
        assert_eq!(run(&mut s, &db, "CLIENT GETNAME"), status("QUEUED"));
        assert_eq!(db.get("k").unwrap(), None, "nothing runs before EXEC");
        let Reply::Array(replies) = run(&mut s, &db, "EXEC") else {
            panic!("EXEC did not answer an array");
        };
        assert_eq!(replies[..2], [Reply::ok(), Reply::Integer(42)]);
        assert!(replies[2].is_error(), "no connection to name");
        assert!(!s.in_multi());
        assert_eq!(db.get("k").unwrap().as_deref(), Some(&b"42"[..]));
    }

    #[test]
    fn expiry_commands_run_inside_exec_as_outside() {
        let db = Db::memory().unwrap();
        let mut s = MultiState::new();
        run(&mut s, &db, "MULTI");
        for line in [
            "SET k 1 EX 100",
            "INCR k",
            "PTTL k",
            "SET k 5 KEEPTTL GET",
            "PERSIST k",
            "TTL k",
            "PEXPIRE k 0",
            "TTL k",
            "SET k 1 EX 0",
        ] {
            assert_eq!(run(&mut s, &db, line), status("QUEUED"), "{line}");
        }
        let Reply::Array(replies) = run(&mut s, &db, "EXEC") else {
            panic!("EXEC did not answer an array");
        };
        assert_eq!(replies[..2], [Reply::ok(), Reply::Integer(2)]);
        // INCR kept the deadline: about 100 s are left.
        assert!(matches!(replies[2], Reply::Integer(ms) if ms > 90_000 && ms <= 100_000));
        assert_eq!(replies[3], Reply::Bulk(Some(Bytes::from_static(b"2"))));
        assert_eq!(
            replies[4..8],
            [
                Reply::Integer(1),
                Reply::Integer(-1),
                Reply::Integer(1),
                Reply::Integer(-2)
            ]
        );
        assert!(replies[8].is_error(), "EX 0 is an invalid expire time");
        assert_eq!(db.get("k").unwrap(), None, "PEXPIRE 0 deleted the key");
    }

    #[test]
    fn watch_discard_and_execabort_in_a_local_session() {
        let db = Db::memory().unwrap();
        let mut s = MultiState::new();
        assert_eq!(run(&mut s, &db, "WATCH k"), Reply::ok());
        assert!(s.is_watching());
        db.set("k", "changed").unwrap();
        run(&mut s, &db, "MULTI");
        run(&mut s, &db, "SET k mine");
        assert_eq!(run(&mut s, &db, "EXEC"), Reply::NilArray);
        assert!(!s.is_watching(), "EXEC unwatches");
        assert_eq!(db.get("k").unwrap().as_deref(), Some(&b"changed"[..]));

        run(&mut s, &db, "MULTI");
        run(&mut s, &db, "SET k mine");
        assert_eq!(run(&mut s, &db, "DISCARD"), Reply::ok());
        assert_eq!(run(&mut s, &db, "EXEC"), Reply::err("EXEC without MULTI"));

        run(&mut s, &db, "MULTI");
        assert!(run(&mut s, &db, "GET").is_error());
        assert_eq!(
            run(&mut s, &db, "EXEC"),
            Reply::Error("EXECABORT Transaction discarded because of previous errors.".into())
        );
        assert_eq!(db.get("k").unwrap().as_deref(), Some(&b"changed"[..]));
    }
}
