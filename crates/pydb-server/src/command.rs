//! Commands: parsing a tokenized request into a typed [`Command`], and
//! executing it against a [`Db`] to get a [`Reply`].
//!
//! This is the one place that knows what `SET`, `GET` or `RANGE` mean. The
//! shell feeds it lines split by [`crate::tokenize`]; the network server
//! feeds it RESP arrays. Both get the same parsing, the same arity checks,
//! and the same Redis error texts, so they cannot drift.
//!
//! A few commands are about the *connection*, not the data: `AUTH`,
//! `CLIENT` and `QUIT` ([`Command::is_connection_level`]). They are parsed
//! here like the others, but the server's connection answers them; the
//! local shell, which has no connection, answers `AUTH` and `CLIENT` with
//! an error. What a command needs to know about the program running it
//! (`INFO`'s server and client sections, `CONFIG GET`'s port) comes through
//! [`crate::info::Host`].
//!
//! Parsing never touches the database and never fails with anything but a
//! [`CommandError`], which becomes an error reply; the shell (or the
//! connection) then goes on with the next command.

use std::ops::Bound;

use bytes::Bytes;
use pydb_storage::{KeyRange, WriteBatch};

use crate::info::{Host, NoHost};
use crate::reply::Reply;
use pydb::Db;
use pydb::{ExpireCondition, SetCondition, SetExpiry, SetOptions, Ttl};

/// An argument of a request: bytes that can become a [`Bytes`] (cheaply
/// when they already are one, as the server's are).
pub trait Arg: AsRef<[u8]> {
    /// The argument as owned bytes.
    fn to_bytes(&self) -> Bytes;
}

impl Arg for Bytes {
    fn to_bytes(&self) -> Bytes {
        self.clone()
    }
}

impl Arg for Vec<u8> {
    fn to_bytes(&self) -> Bytes {
        Bytes::copy_from_slice(self)
    }
}

impl Arg for &[u8] {
    fn to_bytes(&self) -> Bytes {
        Bytes::copy_from_slice(self)
    }
}

impl Arg for &str {
    fn to_bytes(&self) -> Bytes {
        Bytes::copy_from_slice(self.as_bytes())
    }
}

impl Arg for String {
    fn to_bytes(&self) -> Bytes {
        Bytes::copy_from_slice(self.as_bytes())
    }
}

/// Why a request is not a valid command. The texts are Redis's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// The request is empty.
    #[error("ERR empty command")]
    Empty,
    /// No command has this name. The text names the command and its first
    /// arguments, as Redis's does.
    #[error("ERR unknown command '{name}', with args beginning with: {args}")]
    UnknownCommand {
        /// The name, cut at 128 bytes.
        name: String,
        /// The first arguments, each quoted and followed by a space.
        args: String,
    },
    /// A command has no such subcommand.
    #[error("ERR unknown subcommand '{name}'. Try {command} HELP.")]
    UnknownSubcommand {
        /// The command, upper case.
        command: &'static str,
        /// The subcommand asked for.
        name: String,
    },
    /// The command got too many or too few arguments.
    #[error("ERR wrong number of arguments for '{0}' command")]
    WrongArity(&'static str),
    /// `HELLO` with a protocol version that is not a number.
    #[error("ERR Protocol version is not an integer or out of range")]
    HelloProtocolNotInteger,
    /// `HELLO` with an option it does not know (or missing its values).
    #[error("ERR Syntax error in HELLO option '{0}'")]
    HelloSyntax(String),
    /// A command names the empty key (see [`Command::parse`]).
    #[error("ERR empty keys are not allowed")]
    EmptyKey,
    /// `SELECT` of a database other than 0.
    #[error("ERR DB index is out of range")]
    DbIndexOutOfRange,
    /// `DECRBY` of the one decrement that cannot be negated.
    #[error("ERR decrement would overflow")]
    DecrementOverflow,
    /// A `SCAN` cursor that is not a number.
    #[error("ERR invalid cursor")]
    InvalidCursor,
    /// `CLIENT SETNAME` with a name Redis would refuse.
    #[error("ERR Client names cannot contain spaces, newlines or special characters.")]
    BadClientName,
    /// The arguments do not follow the command's syntax.
    #[error("ERR syntax error")]
    Syntax,
    /// An argument that must be a non-negative integer is not one.
    #[error("ERR value is not an integer or out of range")]
    NotAnInteger,
    /// An expire time that is not positive (`SET`) or does not fit in
    /// 64-bit Unix milliseconds; the command name is lower case.
    #[error("ERR invalid expire time in '{0}' command")]
    InvalidExpireTime(&'static str),
    /// `EXPIRE` with an option it does not know.
    #[error("ERR Unsupported option {0}")]
    UnsupportedOption(String),
    /// `EXPIRE ... NX` with `XX`, `GT` or `LT`.
    #[error("ERR NX and XX, GT or LT options at the same time are not compatible")]
    ExpireNxConflict,
    /// `EXPIRE ... GT LT`.
    #[error("ERR GT and LT options at the same time are not compatible")]
    ExpireGtLtConflict,
    /// The line could not be split into arguments.
    #[error("ERR Protocol error: {0}")]
    Tokenize(#[from] crate::tokenize::TokenizeError),
}

impl From<CommandError> for Reply {
    fn from(e: CommandError) -> Self {
        Reply::Error(e.to_string())
    }
}

/// A parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// `SET key value [NX|XX] [GET] [EX s|PX ms|EXAT s|PXAT ms|KEEPTTL]`:
    /// sets a key (with `NX` only if it has no value, with `XX` only if it
    /// has one; then the reply is nil when nothing was set), with an expiry
    /// or without (a plain `SET` removes the key's deadline). With `GET`
    /// the reply is the old value. `SETEX key s value` and `PSETEX key ms
    /// value` are this with `EX` or `PX`.
    Set {
        /// The command's name, lower case (for its error text).
        name: &'static str,
        /// The key.
        key: Bytes,
        /// The value.
        value: Bytes,
        /// `NX` or `XX`.
        condition: Option<SetCondition>,
        /// The expiry the new value gets.
        expiry: ExpiryArg,
        /// `GET`: reply with the old value.
        get: bool,
    },
    /// `EXPIRE`, `PEXPIRE`, `EXPIREAT`, `PEXPIREAT key n [NX|XX|GT|LT]`:
    /// gives a key a deadline; 1 if it did, 0 if the key is missing or an
    /// option said no. A deadline in the past deletes the key.
    Expire {
        /// The command's name, lower case (for its error text).
        name: &'static str,
        /// The key.
        key: Bytes,
        /// When, as the command gave it.
        when: ExpiryArg,
        /// `NX`, `XX`, `GT`, `LT` (all must hold).
        conditions: Vec<ExpireCondition>,
    },
    /// `TTL key` (seconds, rounded) or `PTTL key` (milliseconds): -2 for a
    /// missing key, -1 for a key without a deadline.
    Ttl {
        /// The key.
        key: Bytes,
        /// `PTTL`: in milliseconds.
        millis: bool,
    },
    /// `PERSIST key`: removes the deadline; 1 if there was one.
    Persist {
        /// The key.
        key: Bytes,
    },
    /// `INCR`, `DECR`, `INCRBY`, `DECRBY`: adds to an integer value,
    /// atomically.
    Incr {
        /// The key.
        key: Bytes,
        /// What to add (negative for the DECR forms).
        delta: i64,
    },
    /// `ECHO message`.
    Echo {
        /// The message.
        message: Bytes,
    },
    /// `SELECT index`: pydb has one database, 0.
    Select {
        /// The index asked for.
        index: i64,
    },
    /// `HELLO [protover [AUTH username password] [SETNAME name]]`: picks
    /// the protocol (2 or 3), optionally authenticating and naming the
    /// connection at once; answers with facts about the server.
    Hello {
        /// The protocol version asked for, if any.
        protocol: Option<i64>,
        /// `AUTH username password`.
        auth: Option<(Bytes, Bytes)>,
        /// `SETNAME name`.
        setname: Option<Bytes>,
    },
    /// `CONFIG SET name value [name value ...]`: changes server settings
    /// at run time (`maxclients`, `timeout`, `requirepass`,
    /// `proto-max-bulk-len`, `write-timeout`, `client-output-buffer-limit`),
    /// all or none.
    ConfigSet {
        /// The names and values, in order.
        pairs: Vec<(Bytes, Bytes)>,
    },
    /// `TYPE key`: `string` for a key that exists (every pydb value is a
    /// string), `none` otherwise.
    Type {
        /// The key.
        key: Bytes,
    },
    /// `FLUSHDB` / `FLUSHALL [ASYNC|SYNC]`: deletes every key, as one
    /// atomic and durable batch.
    FlushDb,
    /// `INFO [section ...]`: what the server and database say about
    /// themselves.
    Info {
        /// The sections asked for (none: the default ones).
        sections: Vec<String>,
    },
    /// `SCAN cursor [MATCH pattern] [COUNT n] [TYPE t]`: keys a page at a
    /// time (see [`crate::keyscan`]).
    Scan {
        /// 0 to start, else a cursor a previous page returned.
        cursor: u64,
        /// A glob keys must match.
        pattern: Option<Bytes>,
        /// How many keys to look at.
        count: usize,
        /// `TYPE`: every pydb value is a `string`; another type matches
        /// nothing.
        only_strings: bool,
    },
    /// `CONFIG GET pattern [pattern ...]`: configuration parameters.
    ConfigGet {
        /// Globs over parameter names.
        patterns: Vec<Bytes>,
    },
    /// `COMMAND`, `COMMAND COUNT`, `COMMAND INFO`, `COMMAND DOCS`: the
    /// command table, for clients that ask.
    CommandTable(TableQuery),
    /// `AUTH [username] password` (connection-level).
    Auth {
        /// The user; pydb knows only `default`.
        username: Option<Bytes>,
        /// The password.
        password: Bytes,
    },
    /// `CLIENT ...` (connection-level).
    Client(ClientCommand),
    /// `GET key`: the value of a key, or nil.
    Get {
        /// The key.
        key: Bytes,
    },
    /// `DEL key [key ...]`: deletes keys; replies with how many existed.
    Del {
        /// The keys, in order.
        keys: Vec<Bytes>,
    },
    /// `EXISTS key [key ...]`: how many of the keys exist (a key named
    /// twice counts twice, as in Redis).
    Exists {
        /// The keys.
        keys: Vec<Bytes>,
    },
    /// `MSET key value [key value ...]`: sets every pair in one atomic batch.
    MSet {
        /// The pairs, in order (a later pair for the same key wins).
        pairs: Vec<(Bytes, Bytes)>,
    },
    /// `MGET key [key ...]`: the values of the keys, nil where missing.
    MGet {
        /// The keys.
        keys: Vec<Bytes>,
    },
    /// `DBSIZE`: the number of keys.
    DbSize,
    /// `PING [message]`: `PONG`, or the message.
    Ping {
        /// The message to echo.
        message: Option<Bytes>,
    },
    /// `RANGE start end [LIMIT n]`: keys from `start` (inclusive, `-` for
    /// the first key) to `end` (exclusive, `+` for past the last key), with
    /// their values, flattened as `key value key value ...`.
    Range {
        /// The lower bound.
        start: Bound<Bytes>,
        /// The upper bound.
        end: Bound<Bytes>,
        /// At most this many keys.
        limit: Option<usize>,
    },
    /// `COMPACT`: reclaims the space of overwritten and deleted data.
    Compact,
    /// `STATS`: the engine's counters, flattened as `name value ...`.
    Stats,
    /// `HELP`: the list of commands.
    Help,
    /// `QUIT` or `EXIT`: ends the session.
    Quit,
    /// `MULTI`: starts queueing commands for one `EXEC` (see
    /// [`crate::multi`]; connection-level).
    Multi,
    /// `EXEC`: runs the queued commands as one transaction.
    Exec,
    /// `DISCARD`: drops the queued commands and the watched keys.
    Discard,
    /// `WATCH key [key ...]`: `EXEC` aborts if one of the keys is modified
    /// from now on.
    Watch {
        /// The keys.
        keys: Vec<Bytes>,
    },
    /// `UNWATCH`: forgets the watched keys.
    Unwatch,
}

/// An expiry as a command gives it, before it is turned into a deadline
/// against the database's clock (at execution, so that relative times
/// count from when the command runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExpiryArg {
    /// No expiry option: the new value never expires.
    None,
    /// `KEEPTTL`: keep the deadline the key had.
    Keep,
    /// `EX`/`PX`/`EXPIRE`/`PEXPIRE`: this many milliseconds from now.
    In(i64),
    /// `EXAT`/`PXAT`/`EXPIREAT`/`PEXPIREAT`: at this Unix-ms instant.
    At(i64),
}

impl ExpiryArg {
    /// The Unix-ms deadline, `now_ms` being the time now; `None` when it
    /// does not fit in a signed 64-bit number (Redis's overflow check).
    fn deadline(self, now_ms: u64) -> Option<i64> {
        match self {
            ExpiryArg::In(ms) => i64::try_from(now_ms).ok()?.checked_add(ms),
            ExpiryArg::At(ms) => Some(ms),
            ExpiryArg::None | ExpiryArg::Keep => None,
        }
    }

    /// SET's expiry option as the facade takes it, `now_ms` being the time
    /// now; `Err` holds the reply to a deadline out of range.
    pub(crate) fn set_expiry(self, name: &'static str, now_ms: u64) -> Result<SetExpiry, Reply> {
        Ok(match self {
            ExpiryArg::None => SetExpiry::Clear,
            ExpiryArg::Keep => SetExpiry::Keep,
            at => match at.deadline(now_ms) {
                // Checked positive at parse: a deadline before 1970 cannot
                // be asked for, only one too far.
                Some(ms) if ms > 0 => SetExpiry::At(ms.unsigned_abs()),
                _ => return Err(CommandError::InvalidExpireTime(name).into()),
            },
        })
    }

    /// EXPIRE's deadline (Unix ms), `now_ms` being the time now; `Err`
    /// holds the reply to a deadline out of range. A deadline before 1970
    /// is in the past like any other: the key is deleted.
    pub(crate) fn expire_deadline(self, name: &'static str, now_ms: u64) -> Result<u64, Reply> {
        let Some(deadline) = self.deadline(now_ms) else {
            return Err(CommandError::InvalidExpireTime(name).into());
        };
        Ok(u64::try_from(deadline).unwrap_or(0))
    }
}

/// The reply to a SET that ran: the old value for `SET ... GET`, else OK,
/// or nil when its condition did not hold.
pub(crate) fn set_reply(get: bool, outcome: pydb::SetOutcome) -> Reply {
    match (get, outcome.written) {
        (true, _) => Reply::Bulk(outcome.old),
        (false, true) => Reply::ok(),
        (false, false) => Reply::nil(),
    }
}

/// The reply to TTL (seconds, rounded) or PTTL (milliseconds): -2 for a
/// missing key, -1 for a key without a deadline.
pub(crate) fn ttl_reply(ttl: Ttl, millis: bool) -> Reply {
    Reply::Integer(match ttl {
        Ttl::Missing => -2,
        Ttl::Persistent => -1,
        Ttl::Remaining(ms) => {
            let ms = i64::try_from(ms).unwrap_or(i64::MAX);
            if millis {
                ms
            } else {
                ms.saturating_add(500) / 1000
            }
        }
    })
}

/// What `COMMAND` is asked.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TableQuery {
    /// `COMMAND`: every command.
    All,
    /// `COMMAND COUNT`.
    Count,
    /// `COMMAND INFO [name ...]`.
    Info(Vec<Bytes>),
    /// `COMMAND DOCS [name ...]`.
    Docs(Vec<Bytes>),
}

/// The `CLIENT` subcommands pydb answers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientCommand {
    /// `CLIENT SETNAME name`.
    SetName(Bytes),
    /// `CLIENT GETNAME`.
    GetName,
    /// `CLIENT ID`.
    Id,
    /// `CLIENT SETINFO attribute value` (sent by client libraries on
    /// connect; accepted and ignored).
    SetInfo,
    /// `CLIENT LIST`.
    List,
    /// `CLIENT INFO`.
    Info,
}

/// One row of the command table: what `COMMAND` tells clients.
#[derive(Debug, Clone, Copy)]
pub struct CommandSpec {
    /// The name, lower case.
    pub name: &'static str,
    /// Redis's arity: the number of arguments including the name, negative
    /// for "at least".
    pub arity: i64,
    /// Flags such as `write`, `readonly`, `fast`.
    pub flags: &'static [&'static str],
    /// Position of the first key (0: none).
    pub first_key: i64,
    /// Position of the last key (-1: the last argument).
    pub last_key: i64,
    /// Step between keys.
    pub step: i64,
    /// Redis's group (`string`, `generic`, `server`, ...).
    pub group: &'static str,
    /// One line about the command.
    pub summary: &'static str,
}

const fn spec(
    name: &'static str,
    arity: i64,
    flags: &'static [&'static str],
    keys: (i64, i64, i64),
    group: &'static str,
    summary: &'static str,
) -> CommandSpec {
    CommandSpec {
        name,
        arity,
        flags,
        first_key: keys.0,
        last_key: keys.1,
        step: keys.2,
        group,
        summary,
    }
}

const NO_KEYS: (i64, i64, i64) = (0, 0, 0);
const ONE_KEY: (i64, i64, i64) = (1, 1, 1);
const ALL_KEYS: (i64, i64, i64) = (1, -1, 1);

/// Every command pydb knows, for `COMMAND`.
pub const COMMANDS: &[CommandSpec] = &[
    spec(
        "set",
        -3,
        &["write", "denyoom"],
        ONE_KEY,
        "string",
        "Sets the string value of a key.",
    ),
    spec(
        "get",
        2,
        &["readonly", "fast"],
        ONE_KEY,
        "string",
        "Returns the string value of a key.",
    ),
    spec(
        "del",
        -2,
        &["write"],
        ALL_KEYS,
        "generic",
        "Deletes one or more keys.",
    ),
    spec(
        "exists",
        -2,
        &["readonly", "fast"],
        ALL_KEYS,
        "generic",
        "Determines whether one or more keys exist.",
    ),
    spec(
        "mset",
        -3,
        &["write", "denyoom"],
        (1, -1, 2),
        "string",
        "Atomically sets several keys.",
    ),
    spec(
        "mget",
        -2,
        &["readonly", "fast"],
        ALL_KEYS,
        "string",
        "Returns the values of several keys.",
    ),
    spec(
        "incr",
        2,
        &["write", "denyoom", "fast"],
        ONE_KEY,
        "string",
        "Increments the integer value of a key by one.",
    ),
    spec(
        "decr",
        2,
        &["write", "denyoom", "fast"],
        ONE_KEY,
        "string",
        "Decrements the integer value of a key by one.",
    ),
    spec(
        "incrby",
        3,
        &["write", "denyoom", "fast"],
        ONE_KEY,
        "string",
        "Increments the integer value of a key by a number.",
    ),
    spec(
        "decrby",
        3,
        &["write", "denyoom", "fast"],
        ONE_KEY,
        "string",
        "Decrements the integer value of a key by a number.",
    ),
    spec(
        "dbsize",
        1,
        &["readonly", "fast"],
        NO_KEYS,
        "server",
        "Returns the number of keys.",
    ),
    spec(
        "scan",
        -2,
        &["readonly"],
        NO_KEYS,
        "generic",
        "Iterates over the keys.",
    ),
    spec(
        "range",
        -3,
        &["readonly"],
        NO_KEYS,
        "pydb",
        "Returns the keys in [start, end) with their values.",
    ),
    spec(
        "compact",
        1,
        &["write"],
        NO_KEYS,
        "pydb",
        "Reclaims the space of old values.",
    ),
    spec(
        "stats",
        1,
        &["readonly"],
        NO_KEYS,
        "pydb",
        "Returns the engine's counters.",
    ),
    spec(
        "ping",
        -1,
        &["fast"],
        NO_KEYS,
        "connection",
        "Returns the server's liveliness response.",
    ),
    spec(
        "echo",
        2,
        &["fast"],
        NO_KEYS,
        "connection",
        "Returns the given string.",
    ),
    spec(
        "select",
        2,
        &["loading", "stale", "fast"],
        NO_KEYS,
        "connection",
        "Changes the selected database (only 0 exists).",
    ),
    spec(
        "auth",
        -2,
        &["noscript", "loading", "stale", "fast", "no_auth"],
        NO_KEYS,
        "connection",
        "Authenticates the connection.",
    ),
    spec(
        "client",
        -2,
        &["loading", "stale"],
        NO_KEYS,
        "connection",
        "Names the connection and lists clients.",
    ),
    spec(
        "quit",
        -1,
        &["loading", "stale", "fast", "no_auth"],
        NO_KEYS,
        "connection",
        "Closes the connection.",
    ),
    spec(
        "info",
        -1,
        &["loading", "stale"],
        NO_KEYS,
        "server",
        "Returns information and statistics about the server.",
    ),
    spec(
        "config",
        -2,
        &["admin", "loading", "stale"],
        NO_KEYS,
        "server",
        "Gets (GET) or changes (SET) configuration parameters.",
    ),
    spec(
        "command",
        -1,
        &["loading", "stale"],
        NO_KEYS,
        "server",
        "Returns detailed information about all commands.",
    ),
    spec(
        "hello",
        -1,
        &["noscript", "loading", "stale", "fast", "no-auth"],
        NO_KEYS,
        "connection",
        "Handshakes with the server: protocol version, AUTH, SETNAME.",
    ),
    spec(
        "type",
        2,
        &["readonly", "fast"],
        ONE_KEY,
        "generic",
        "Determines the type of value stored at a key.",
    ),
    spec(
        "flushdb",
        -1,
        &["write"],
        NO_KEYS,
        "server",
        "Removes all keys (one atomic, durable batch).",
    ),
    spec(
        "flushall",
        -1,
        &["write"],
        NO_KEYS,
        "server",
        "Removes all keys (pydb has one database).",
    ),
    spec(
        "multi",
        1,
        &["noscript", "loading", "stale", "fast", "allow_busy"],
        NO_KEYS,
        "transactions",
        "Starts a transaction.",
    ),
    spec(
        "exec",
        1,
        &["noscript", "loading", "stale", "skip_slowlog"],
        NO_KEYS,
        "transactions",
        "Executes all commands in a transaction (one serializable pydb transaction).",
    ),
    spec(
        "discard",
        1,
        &["noscript", "loading", "stale", "fast", "allow_busy"],
        NO_KEYS,
        "transactions",
        "Discards a transaction.",
    ),
    spec(
        "watch",
        -2,
        &["noscript", "loading", "stale", "fast", "allow_busy"],
        ALL_KEYS,
        "transactions",
        "Monitors changes to keys to determine the execution of a transaction.",
    ),
    spec(
        "unwatch",
        1,
        &["noscript", "loading", "stale", "fast", "allow_busy"],
        NO_KEYS,
        "transactions",
        "Forgets about watched keys of a transaction.",
    ),
    spec(
        "help",
        -1,
        &["loading", "stale"],
        NO_KEYS,
        "pydb",
        "Lists the commands.",
    ),
    spec(
        "setex",
        4,
        &["write", "denyoom"],
        ONE_KEY,
        "string",
        "Sets the value and expiration in seconds of a key.",
    ),
    spec(
        "psetex",
        4,
        &["write", "denyoom"],
        ONE_KEY,
        "string",
        "Sets the value and expiration in milliseconds of a key.",
    ),
    spec(
        "expire",
        -3,
        &["write", "fast"],
        ONE_KEY,
        "generic",
        "Sets the expiration time of a key in seconds.",
    ),
    spec(
        "pexpire",
        -3,
        &["write", "fast"],
        ONE_KEY,
        "generic",
        "Sets the expiration time of a key in milliseconds.",
    ),
    spec(
        "expireat",
        -3,
        &["write", "fast"],
        ONE_KEY,
        "generic",
        "Sets the expiration time of a key to a Unix timestamp.",
    ),
    spec(
        "pexpireat",
        -3,
        &["write", "fast"],
        ONE_KEY,
        "generic",
        "Sets the expiration time of a key to a Unix milliseconds timestamp.",
    ),
    spec(
        "ttl",
        2,
        &["readonly", "fast"],
        ONE_KEY,
        "generic",
        "Returns the expiration time in seconds of a key.",
    ),
    spec(
        "pttl",
        2,
        &["readonly", "fast"],
        ONE_KEY,
        "generic",
        "Returns the expiration time in milliseconds of a key.",
    ),
    spec(
        "persist",
        2,
        &["write", "fast"],
        ONE_KEY,
        "generic",
        "Removes the expiration time of a key.",
    ),
];

/// One line per command, for `HELP`.
pub const HELP: &[&str] = &[
    "SET key value [NX|XX] [GET] [EX s|PX ms|EXAT t|PXAT t|KEEPTTL]  set a key (NX: only if absent, XX: only if present), with an expiry",
    "SETEX key s value | PSETEX key ms value  set a key that expires in s seconds (ms milliseconds)",
    "GET key                        the value of a key, or (nil)",
    "DEL key [key ...]              delete keys; how many existed",
    "EXISTS key [key ...]           how many of the keys exist",
    "MSET key value [key value ...] set several keys in one atomic batch",
    "MGET key [key ...]             the values of several keys",
    "INCR key | DECR key            add 1 to (or take 1 from) an integer value, atomically",
    "INCRBY key n | DECRBY key n    add n to (or take n from) an integer value, atomically",
    "DBSIZE                         the number of keys",
    "EXPIRE key s | PEXPIRE key ms [NX|XX|GT|LT]  expire a key after s seconds (ms milliseconds)",
    "EXPIREAT key t | PEXPIREAT key t [NX|XX|GT|LT]  expire a key at Unix time t (s or ms)",
    "TTL key | PTTL key             seconds (ms) left; -1 no expiry, -2 no key",
    "PERSIST key                    remove a key's expiry",
    "SCAN cursor [MATCH glob] [COUNT n]  keys a page at a time; 0 starts and ends a scan",
    "ECHO message                   the message",
    "INFO [section ...]             server, clients, stats, persistence, keyspace",
    "CONFIG GET pattern             configuration parameters",
    "SELECT 0                       the one database",
    "PING [message]                 PONG, or the message",
    "RANGE start end [LIMIT n]      keys in [start, end) with values; - and + are open ends",
    "COMPACT                        reclaim the space of old values",
    "STATS                          the engine's counters",
    "MULTI ... EXEC | DISCARD       queue commands, then run them as one transaction (or drop them)",
    "WATCH key [key ...] | UNWATCH  EXEC answers nil if a watched key changed since WATCH",
    "HELP                           this list",
    "AUTH password | CLIENT SETNAME name | CLIENT GETNAME   (on a server connection)",
    "QUIT | EXIT                    leave the shell",
    "Arguments may be quoted: \"a b\" with \\\" \\\\ \\n \\r \\t \\xHH escapes, or 'a b'.",
];

impl Command {
    /// Parses a request: the command name (any case) and its arguments.
    ///
    /// One rule for empty keys: every command that names a key refuses the
    /// empty key with `ERR empty keys are not allowed`, reads as well as
    /// writes. Redis accepts `SET '' x`; pydb's engines refuse empty keys
    /// (`Error::EmptyKey`), and answering `GET ''` with nil while `SET ''`
    /// fails would suggest a key that can never exist. An error on every
    /// command tells a client at once.
    pub fn parse<A: Arg>(args: &[A]) -> Result<Self, CommandError> {
        let (name, rest) = args.split_first().ok_or(CommandError::Empty)?;
        let name = name.as_ref();
        // Command names are short: lower-case them on the stack.
        let mut lower = [0u8; 16];
        let lower = match lower.get_mut(..name.len()) {
            Some(buf) => {
                buf.copy_from_slice(name);
                buf.make_ascii_lowercase();
                &*buf
            }
            None => b"",
        };
        let bytes = |a: &A| a.to_bytes();
        let all = |rest: &[A]| rest.iter().map(bytes).collect::<Vec<_>>();
        let command = match lower {
            b"set" => match rest {
                [key, value, options @ ..] => {
                    let (condition, expiry, get) = parse_set_options(options)?;
                    Command::Set {
                        name: "set",
                        key: bytes(key),
                        value: bytes(value),
                        condition,
                        expiry,
                        get,
                    }
                }
                _ => return Err(CommandError::WrongArity("set")),
            },
            b"setex" | b"psetex" => {
                let (name, unit) = if lower == b"setex" {
                    ("setex", 1000)
                } else {
                    ("psetex", 1)
                };
                let [key, n, value] = rest else {
                    return Err(CommandError::WrongArity(name));
                };
                let n = parse_i64(n.as_ref())?;
                let ms = n
                    .checked_mul(unit)
                    .filter(|_| n > 0)
                    .ok_or(CommandError::InvalidExpireTime(name))?;
                Command::Set {
                    name,
                    key: bytes(key),
                    value: bytes(value),
                    condition: None,
                    expiry: ExpiryArg::In(ms),
                    get: false,
                }
            }
            b"expire" | b"pexpire" | b"expireat" | b"pexpireat" => {
                let name = match lower {
                    b"expire" => "expire",
                    b"pexpire" => "pexpire",
                    b"expireat" => "expireat",
                    _ => "pexpireat",
                };
                parse_expire(name, rest)?
            }
            b"ttl" | b"pttl" => match rest {
                [key] => Command::Ttl {
                    key: bytes(key),
                    millis: lower == b"pttl",
                },
                _ => {
                    return Err(CommandError::WrongArity(if lower == b"ttl" {
                        "ttl"
                    } else {
                        "pttl"
                    }));
                }
            },
            b"persist" => match rest {
                [key] => Command::Persist { key: bytes(key) },
                _ => return Err(CommandError::WrongArity("persist")),
            },
            b"incr" | b"decr" => match rest {
                [key] => Command::Incr {
                    key: bytes(key),
                    delta: if lower == b"incr" { 1 } else { -1 },
                },
                _ => {
                    return Err(CommandError::WrongArity(if lower == b"incr" {
                        "incr"
                    } else {
                        "decr"
                    }));
                }
            },
            b"incrby" | b"decrby" => match rest {
                [key, n] => {
                    let n = parse_i64(n.as_ref())?;
                    let delta = if lower == b"incrby" {
                        n
                    } else {
                        n.checked_neg().ok_or(CommandError::DecrementOverflow)?
                    };
                    Command::Incr {
                        key: bytes(key),
                        delta,
                    }
                }
                _ => {
                    return Err(CommandError::WrongArity(if lower == b"incrby" {
                        "incrby"
                    } else {
                        "decrby"
                    }));
                }
            },
            b"echo" => match rest {
                [message] => Command::Echo {
                    message: bytes(message),
                },
                _ => return Err(CommandError::WrongArity("echo")),
            },
            b"select" => match rest {
                [index] => Command::Select {
                    index: parse_i64(index.as_ref())?,
                },
                _ => return Err(CommandError::WrongArity("select")),
            },
            b"info" => Command::Info {
                sections: rest
                    .iter()
                    .map(|a| String::from_utf8_lossy(a.as_ref()).into_owned())
                    .collect(),
            },
            b"scan" => parse_scan(rest)?,
            b"hello" => parse_hello(rest)?,
            b"type" => match rest {
                [key] => Command::Type { key: bytes(key) },
                _ => return Err(CommandError::WrongArity("type")),
            },
            b"flushdb" | b"flushall" => match rest {
                [] => Command::FlushDb,
                [mode]
                    if mode.as_ref().eq_ignore_ascii_case(b"sync")
                        || mode.as_ref().eq_ignore_ascii_case(b"async") =>
                {
                    Command::FlushDb
                }
                _ => return Err(CommandError::Syntax),
            },
            b"config" => parse_config(rest)?,
            b"command" => Command::CommandTable(parse_command_query(rest)?),
            b"auth" => match rest {
                [password] => Command::Auth {
                    username: None,
                    password: bytes(password),
                },
                [username, password] => Command::Auth {
                    username: Some(bytes(username)),
                    password: bytes(password),
                },
                _ => return Err(CommandError::WrongArity("auth")),
            },
            b"client" => Command::Client(parse_client(rest)?),
            b"get" => match rest {
                [key] => Command::Get { key: bytes(key) },
                _ => return Err(CommandError::WrongArity("get")),
            },
            b"del" => match rest {
                [] => return Err(CommandError::WrongArity("del")),
                _ => Command::Del { keys: all(rest) },
            },
            b"exists" => match rest {
                [] => return Err(CommandError::WrongArity("exists")),
                _ => Command::Exists { keys: all(rest) },
            },
            b"mset" => {
                if rest.is_empty() || rest.len() % 2 != 0 {
                    return Err(CommandError::WrongArity("mset"));
                }
                Command::MSet {
                    pairs: rest
                        .chunks_exact(2)
                        .map(|pair| (bytes(&pair[0]), bytes(&pair[1])))
                        .collect(),
                }
            }
            b"mget" => match rest {
                [] => return Err(CommandError::WrongArity("mget")),
                _ => Command::MGet { keys: all(rest) },
            },
            b"dbsize" => match rest {
                [] => Command::DbSize,
                _ => return Err(CommandError::WrongArity("dbsize")),
            },
            b"ping" => match rest {
                [] => Command::Ping { message: None },
                [message] => Command::Ping {
                    message: Some(bytes(message)),
                },
                _ => return Err(CommandError::WrongArity("ping")),
            },
            b"range" => parse_range(rest)?,
            b"compact" => match rest {
                [] => Command::Compact,
                _ => return Err(CommandError::WrongArity("compact")),
            },
            b"stats" => match rest {
                [] => Command::Stats,
                _ => return Err(CommandError::WrongArity("stats")),
            },
            b"help" => Command::Help,
            b"multi" => match rest {
                [] => Command::Multi,
                _ => return Err(CommandError::WrongArity("multi")),
            },
            b"exec" => match rest {
                [] => Command::Exec,
                _ => return Err(CommandError::WrongArity("exec")),
            },
            b"discard" => match rest {
                [] => Command::Discard,
                _ => return Err(CommandError::WrongArity("discard")),
            },
            b"watch" => match rest {
                [] => return Err(CommandError::WrongArity("watch")),
                _ => Command::Watch { keys: all(rest) },
            },
            b"unwatch" => match rest {
                [] => Command::Unwatch,
                _ => return Err(CommandError::WrongArity("unwatch")),
            },
            b"quit" | b"exit" => Command::Quit,
            _ => return Err(unknown_command(name, rest)),
        };
        if command.keys().any(|key| key.is_empty()) {
            return Err(CommandError::EmptyKey);
        }
        Ok(command)
    }

    /// The keys the command names (for the empty-key rule).
    fn keys(&self) -> impl Iterator<Item = &Bytes> {
        let keys: Vec<&Bytes> = match self {
            Command::Set { key, .. }
            | Command::Expire { key, .. }
            | Command::Ttl { key, .. }
            | Command::Persist { key }
            | Command::Incr { key, .. }
            | Command::Get { key }
            | Command::Type { key } => vec![key],
            Command::Del { keys }
            | Command::Exists { keys }
            | Command::MGet { keys }
            | Command::Watch { keys } => keys.iter().collect(),
            Command::MSet { pairs } => pairs.iter().map(|(key, _)| key).collect(),
            _ => Vec::new(),
        };
        keys.into_iter()
    }

    /// Tokenizes `line` and parses it. `Ok(None)` for a blank line.
    pub fn parse_line(line: &[u8]) -> Result<Option<Self>, CommandError> {
        let args = crate::tokenize::tokenize(line)?;
        if args.is_empty() {
            return Ok(None);
        }
        Self::parse(&args).map(Some)
    }

    /// Whether the command table flags the command named `name` (any
    /// case) `write`: what `acked_writes` in `INFO` counts.
    pub fn is_write_name(name: &[u8]) -> bool {
        // Stop at the name: every request asks, and a read command would
        // otherwise scan the rest of the table for a `write` flag.
        COMMANDS
            .iter()
            .find(|spec| spec.name.as_bytes().eq_ignore_ascii_case(name))
            .is_some_and(|spec| spec.flags.contains(&"write"))
    }

    /// Whether this command ends the session.
    pub fn is_quit(&self) -> bool {
        matches!(self, Command::Quit)
    }

    /// Whether the connection, not the database, answers this command
    /// (`AUTH`, `CLIENT`, `QUIT`, `HELLO`, `CONFIG SET`, and the
    /// transaction commands, which keep per-connection state).
    pub fn is_connection_level(&self) -> bool {
        matches!(
            self,
            Command::Auth { .. }
                | Command::Client(_)
                | Command::Quit
                | Command::Hello { .. }
                | Command::ConfigSet { .. }
                | Command::Multi
                | Command::Exec
                | Command::Discard
                | Command::Watch { .. }
                | Command::Unwatch
        )
    }

    /// Runs the command against `db`, in the local shell. A failure of the
    /// database becomes an `ERR` reply carrying its message.
    pub fn execute(&self, db: &Db) -> Reply {
        self.execute_in(db, &NoHost)
    }

    /// Runs the command against `db` for `host`, which adds its part to
    /// `INFO` and `CONFIG GET`.
    pub fn execute_in(&self, db: &Db, host: &dyn Host) -> Reply {
        match self.try_execute(db, host) {
            Ok(reply) => reply,
            Err(e) => Reply::err(e),
        }
    }

    fn try_execute(&self, db: &Db, host: &dyn Host) -> crate::Result<Reply> {
        Ok(match self {
            Command::Set {
                name,
                key,
                value,
                condition,
                expiry,
                get,
            } => {
                let expiry = match expiry.set_expiry(name, db.now_ms()) {
                    Ok(expiry) => expiry,
                    Err(reply) => return Ok(reply),
                };
                // A blind write (no condition, no GET, no KEEPTTL) needs
                // no read: it stays a read-committed write that never
                // conflicts, as a plain SET always was.
                match (condition, get, expiry) {
                    (None, false, SetExpiry::Clear) => {
                        db.set(key, value)?;
                        return Ok(Reply::ok());
                    }
                    (None, false, SetExpiry::At(deadline)) => {
                        db.set_with_expiry(key, value, deadline)?;
                        return Ok(Reply::ok());
                    }
                    _ => {}
                }
                let options = SetOptions {
                    condition: *condition,
                    expiry,
                };
                set_reply(*get, db.set_with(key, value, options)?)
            }
            Command::Expire {
                name,
                key,
                when,
                conditions,
            } => {
                let deadline = match when.expire_deadline(name, db.now_ms()) {
                    Ok(deadline) => deadline,
                    Err(reply) => return Ok(reply),
                };
                Reply::Integer(i64::from(db.expire_at(key, deadline, conditions)?))
            }
            Command::Ttl { key, millis } => ttl_reply(db.ttl(key)?, *millis),
            Command::Persist { key } => Reply::Integer(i64::from(db.persist(key)?)),
            Command::Incr { key, delta } => Reply::Integer(db.incr_by(key, *delta)?),
            Command::Echo { message } => Reply::Bulk(Some(message.clone())),
            Command::Select { index: 0 } => Reply::ok(),
            Command::Select { .. } => CommandError::DbIndexOutOfRange.into(),
            Command::Info { sections } => {
                Reply::Verbatim(crate::info::render(db, host, sections).into())
            }
            Command::Scan {
                cursor,
                pattern,
                count,
                only_strings,
            } => {
                let page = crate::keyscan::scan_page(
                    db,
                    host.scan_cursors(),
                    *cursor,
                    pattern.as_deref(),
                    *count,
                )?;
                let keys = if *only_strings { page.keys } else { Vec::new() };
                Reply::Array(vec![
                    Reply::bulk(page.cursor.to_string()),
                    Reply::Array(keys.into_iter().map(Reply::bulk).collect()),
                ])
            }
            Command::ConfigGet { patterns } => {
                let mut items = Vec::new();
                let mut params = crate::info::db_config(db);
                params.extend(host.config());
                for (name, value) in params {
                    if patterns
                        .iter()
                        .any(|p| crate::glob::matches(&p.to_ascii_lowercase(), name.as_bytes()))
                    {
                        items.push((Reply::bulk(name), Reply::bulk(value)));
                    }
                }
                Reply::Map(items)
            }
            Command::CommandTable(query) => command_table(query),
            Command::Auth { .. } => Reply::err(
                "AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
            ),
            Command::Client(_) => {
                Reply::err("CLIENT is only meaningful on a connection to a pydb server")
            }
            Command::ConfigSet { .. } => {
                Reply::err("CONFIG SET is only meaningful on a connection to a pydb server")
            }
            Command::Get { key } => Reply::Bulk(db.get(key)?),
            Command::Type { key } => Reply::Status(
                if db.get(key)?.is_some() {
                    "string"
                } else {
                    "none"
                }
                .into(),
            ),
            Command::FlushDb => {
                // One batch: every key goes, or (on failure) none does, and
                // it is durable as any write under the sync policy.
                let mut batch = WriteBatch::new();
                for item in db.scan_range(KeyRange::all())? {
                    let (key, _value) = item?;
                    batch.delete(key);
                }
                if !batch.is_empty() {
                    db.write_batch(&batch)?;
                }
                Reply::ok()
            }
            Command::Hello { protocol, .. } => {
                // The shell speaks RESP2 to itself; the server answers
                // HELLO on the connection.
                match protocol {
                    None | Some(2) => hello_reply(0, 2),
                    Some(_) => noproto(),
                }
            }
            Command::Del { keys } => {
                let mut deleted = 0;
                for key in keys {
                    if db.delete(key)? {
                        deleted += 1;
                    }
                }
                Reply::Integer(deleted)
            }
            Command::Exists { keys } => {
                let mut found = 0;
                for key in keys {
                    if db.get(key)?.is_some() {
                        found += 1;
                    }
                }
                Reply::Integer(found)
            }
            Command::MSet { pairs } => {
                let mut batch = WriteBatch::new();
                for (key, value) in pairs {
                    batch.set(key.clone(), value.clone());
                }
                db.write_batch(&batch)?;
                Reply::ok()
            }
            Command::MGet { keys } => Reply::Array(
                keys.iter()
                    .map(|key| db.get(key).map(Reply::Bulk))
                    .collect::<pydb::Result<_>>()?,
            ),
            Command::DbSize => Reply::Integer(i64::try_from(db.key_count()?).unwrap_or(i64::MAX)),
            Command::Ping { message: None } => Reply::Status("PONG".into()),
            Command::Ping {
                message: Some(message),
            } => Reply::Bulk(Some(message.clone())),
            Command::Range { start, end, limit } => {
                let mut items = Vec::new();
                if !range_is_empty(start, end) {
                    let range = KeyRange {
                        start: start.clone(),
                        end: end.clone(),
                    };
                    let scan = db.scan_range(range)?;
                    for item in scan.take(limit.unwrap_or(usize::MAX)) {
                        let (key, value) = item?;
                        items.push(Reply::Bulk(Some(key)));
                        items.push(Reply::Bulk(Some(value)));
                    }
                }
                Reply::Array(items)
            }
            Command::Compact => {
                db.compact()?;
                Reply::ok()
            }
            Command::Stats => {
                let stats = db.stats();
                let mut items = vec![
                    Reply::bulk(Bytes::from_static(b"engine")),
                    Reply::bulk(Bytes::from_static(stats.engine.as_bytes())),
                ];
                for (name, value) in stats.counters {
                    items.push(Reply::bulk(Bytes::from_static(name.as_bytes())));
                    items.push(Reply::Integer(i64::try_from(value).unwrap_or(i64::MAX)));
                }
                Reply::Array(items)
            }
            Command::Help => Reply::Array(
                HELP.iter()
                    .map(|line| Reply::Status((*line).to_string()))
                    .collect(),
            ),
            Command::Quit => Reply::ok(),
            Command::Multi
            | Command::Exec
            | Command::Discard
            | Command::Watch { .. }
            | Command::Unwatch => Reply::err(
                "MULTI, EXEC, DISCARD, WATCH and UNWATCH are only meaningful on a connection that keeps their state",
            ),
        })
    }
}

/// Parses the options of `SET key value [NX|XX] [GET] [EX s|PX ms|EXAT
/// s|PXAT ms|KEEPTTL]`, in any order, with Redis's rules: a repeated
/// option is fine, conflicting ones (`NX XX`, two kinds of expiry, an
/// expiry with `KEEPTTL`) or an expiry without its number are a syntax
/// error; then the number must be an integer, then positive.
fn parse_set_options<A: AsRef<[u8]>>(
    options: &[A],
) -> Result<(Option<SetCondition>, ExpiryArg, bool), CommandError> {
    #[derive(Clone, Copy, PartialEq)]
    enum Unit {
        InSeconds,
        InMillis,
        AtSeconds,
        AtMillis,
    }
    let mut condition = None;
    let mut get = false;
    let mut keep = false;
    let mut expire: Option<(Unit, &[u8])> = None;
    let mut i = 0;
    while let Some(option) = options.get(i) {
        let option = option.as_ref();
        let next = options.get(i + 1).map(AsRef::as_ref);
        let is = |name: &[u8]| option.eq_ignore_ascii_case(name);
        let unit = if is(b"ex") {
            Some(Unit::InSeconds)
        } else if is(b"px") {
            Some(Unit::InMillis)
        } else if is(b"exat") {
            Some(Unit::AtSeconds)
        } else if is(b"pxat") {
            Some(Unit::AtMillis)
        } else {
            None
        };
        if is(b"nx") && condition != Some(SetCondition::IfPresent) {
            condition = Some(SetCondition::IfAbsent);
        } else if is(b"xx") && condition != Some(SetCondition::IfAbsent) {
            condition = Some(SetCondition::IfPresent);
        } else if is(b"get") {
            get = true;
        } else if is(b"keepttl") && expire.is_none() {
            keep = true;
        } else if let (Some(unit), Some(next)) = (unit, next)
            && !keep
            && expire.is_none_or(|(u, _)| u == unit)
        {
            expire = Some((unit, next));
            i += 1;
        } else {
            return Err(CommandError::Syntax);
        }
        i += 1;
    }
    let expiry = match expire {
        None if keep => ExpiryArg::Keep,
        None => ExpiryArg::None,
        Some((unit, n)) => {
            let n = parse_i64(n)?;
            let invalid = CommandError::InvalidExpireTime("set");
            if n <= 0 {
                return Err(invalid);
            }
            match unit {
                Unit::InSeconds => ExpiryArg::In(n.checked_mul(1000).ok_or(invalid)?),
                Unit::InMillis => ExpiryArg::In(n),
                Unit::AtSeconds => ExpiryArg::At(n.checked_mul(1000).ok_or(invalid)?),
                Unit::AtMillis => ExpiryArg::At(n),
            }
        }
    };
    Ok((condition, expiry, get))
}

/// Parses `EXPIRE|PEXPIRE|EXPIREAT|PEXPIREAT key n [NX|XX|GT|LT ...]`
/// (`name` lower case), checking in Redis's order: the options, then the
/// number, then that it fits once in milliseconds.
fn parse_expire<A: Arg>(name: &'static str, rest: &[A]) -> Result<Command, CommandError> {
    let [key, n, options @ ..] = rest else {
        return Err(CommandError::WrongArity(name));
    };
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for option in options {
        let option = option.as_ref();
        let is = |flag: &[u8]| option.eq_ignore_ascii_case(flag);
        if is(b"nx") {
            nx = true;
        } else if is(b"xx") {
            xx = true;
        } else if is(b"gt") {
            gt = true;
        } else if is(b"lt") {
            lt = true;
        } else {
            return Err(CommandError::UnsupportedOption(printable_name(option)));
        }
    }
    if nx && (xx || gt || lt) {
        return Err(CommandError::ExpireNxConflict);
    }
    if gt && lt {
        return Err(CommandError::ExpireGtLtConflict);
    }
    let n = parse_i64(n.as_ref())?;
    let seconds = name == "expire" || name == "expireat";
    let ms = if seconds {
        n.checked_mul(1000)
            .ok_or(CommandError::InvalidExpireTime(name))?
    } else {
        n
    };
    let when = if name.ends_with("at") {
        ExpiryArg::At(ms)
    } else {
        ExpiryArg::In(ms)
    };
    let conditions = [
        (nx, ExpireCondition::IfNone),
        (xx, ExpireCondition::IfSome),
        (gt, ExpireCondition::IfLater),
        (lt, ExpireCondition::IfEarlier),
    ]
    .into_iter()
    .filter_map(|(on, c)| on.then_some(c))
    .collect();
    Ok(Command::Expire {
        name,
        key: key.to_bytes(),
        when,
        conditions,
    })
}

/// Parses an integer argument (Redis's strict rules).
fn parse_i64(arg: &[u8]) -> Result<i64, CommandError> {
    pydb::db::parse_integer(arg).ok_or(CommandError::NotAnInteger)
}

/// Parses `SCAN cursor [MATCH pattern] [COUNT n] [TYPE t]`.
fn parse_scan<A: Arg>(rest: &[A]) -> Result<Command, CommandError> {
    let (cursor, mut options) = rest.split_first().ok_or(CommandError::WrongArity("scan"))?;
    let cursor = std::str::from_utf8(cursor.as_ref())
        .ok()
        .and_then(|c| c.parse::<u64>().ok())
        .ok_or(CommandError::InvalidCursor)?;
    let mut pattern = None;
    let mut count = 10;
    let mut only_strings = true;
    while let [option, value, more @ ..] = options {
        let option = option.as_ref();
        if option.eq_ignore_ascii_case(b"match") {
            pattern = Some(value.to_bytes());
        } else if option.eq_ignore_ascii_case(b"count") {
            let n = parse_i64(value.as_ref())?;
            count = usize::try_from(n)
                .ok()
                .filter(|&n| n >= 1)
                .ok_or(CommandError::Syntax)?;
        } else if option.eq_ignore_ascii_case(b"type") {
            only_strings = value.as_ref().eq_ignore_ascii_case(b"string");
        } else {
            return Err(CommandError::Syntax);
        }
        options = more;
    }
    if !options.is_empty() {
        return Err(CommandError::Syntax);
    }
    Ok(Command::Scan {
        cursor,
        pattern,
        count,
        only_strings,
    })
}

/// Parses `CONFIG GET pattern [pattern ...]` (the only form pydb answers).
fn parse_config<A: Arg>(rest: &[A]) -> Result<Command, CommandError> {
    let (sub, args) = rest
        .split_first()
        .ok_or(CommandError::WrongArity("config"))?;
    if sub.as_ref().eq_ignore_ascii_case(b"set") {
        if args.is_empty() || args.len() % 2 != 0 {
            return Err(CommandError::WrongArity("config|set"));
        }
        return Ok(Command::ConfigSet {
            pairs: args
                .chunks_exact(2)
                .map(|pair| (pair[0].to_bytes(), pair[1].to_bytes()))
                .collect(),
        });
    }
    if !sub.as_ref().eq_ignore_ascii_case(b"get") {
        return Err(CommandError::UnknownSubcommand {
            command: "CONFIG",
            name: printable_name(sub.as_ref()),
        });
    }
    if args.is_empty() {
        return Err(CommandError::WrongArity("config|get"));
    }
    Ok(Command::ConfigGet {
        patterns: args.iter().map(Arg::to_bytes).collect(),
    })
}

/// Parses `COMMAND [COUNT | INFO name ... | DOCS name ...]`.
fn parse_command_query<A: Arg>(rest: &[A]) -> Result<TableQuery, CommandError> {
    let Some((sub, names)) = rest.split_first() else {
        return Ok(TableQuery::All);
    };
    let no_names = names.is_empty();
    let names = || names.iter().map(Arg::to_bytes).collect();
    let sub = sub.as_ref();
    Ok(if sub.eq_ignore_ascii_case(b"count") && no_names {
        TableQuery::Count
    } else if sub.eq_ignore_ascii_case(b"info") {
        TableQuery::Info(names())
    } else if sub.eq_ignore_ascii_case(b"docs") {
        TableQuery::Docs(names())
    } else {
        return Err(CommandError::UnknownSubcommand {
            command: "COMMAND",
            name: printable_name(sub),
        });
    })
}

/// Parses `HELLO [protover [AUTH username password] [SETNAME name]]`.
fn parse_hello<A: Arg>(rest: &[A]) -> Result<Command, CommandError> {
    let Some((version, mut options)) = rest.split_first() else {
        return Ok(Command::Hello {
            protocol: None,
            auth: None,
            setname: None,
        });
    };
    let protocol = std::str::from_utf8(version.as_ref())
        .ok()
        .and_then(|v| v.parse::<i64>().ok())
        .ok_or(CommandError::HelloProtocolNotInteger)?;
    let (mut auth, mut setname) = (None, None);
    loop {
        match options {
            [] => break,
            [option, user, pass, more @ ..] if option.as_ref().eq_ignore_ascii_case(b"auth") => {
                auth = Some((user.to_bytes(), pass.to_bytes()));
                options = more;
            }
            [option, name, more @ ..] if option.as_ref().eq_ignore_ascii_case(b"setname") => {
                setname = Some(name.to_bytes());
                options = more;
            }
            [option, ..] => {
                return Err(CommandError::HelloSyntax(printable_name(option.as_ref())));
            }
        }
    }
    Ok(Command::Hello {
        protocol: Some(protocol),
        auth,
        setname,
    })
}

/// Parses the `CLIENT` subcommands.
fn parse_client<A: Arg>(rest: &[A]) -> Result<ClientCommand, CommandError> {
    let (sub, args) = rest
        .split_first()
        .ok_or(CommandError::WrongArity("client"))?;
    let sub_bytes = sub.as_ref();
    let is = |name: &[u8]| sub_bytes.eq_ignore_ascii_case(name);
    Ok(match args {
        [name] if is(b"setname") => {
            // Redis allows printable ASCII but no space.
            if !name.as_ref().iter().all(|&b| (b'!'..=b'~').contains(&b)) {
                return Err(CommandError::BadClientName);
            }
            ClientCommand::SetName(name.to_bytes())
        }
        [] if is(b"getname") => ClientCommand::GetName,
        [] if is(b"id") => ClientCommand::Id,
        [] if is(b"list") => ClientCommand::List,
        [] if is(b"info") => ClientCommand::Info,
        [_, _] if is(b"setinfo") => ClientCommand::SetInfo,
        _ if is(b"setname") => return Err(CommandError::WrongArity("client|setname")),
        _ if is(b"getname") => return Err(CommandError::WrongArity("client|getname")),
        _ if is(b"setinfo") => return Err(CommandError::WrongArity("client|setinfo")),
        _ => {
            return Err(CommandError::UnknownSubcommand {
                command: "CLIENT",
                name: printable_name(sub_bytes),
            });
        }
    })
}

/// The error `HELLO` gives for a protocol version other than 2 or 3.
pub fn noproto() -> Reply {
    Reply::Error("NOPROTO unsupported protocol version".into())
}

/// The reply to a successful `HELLO`: a map of facts about the server, as
/// Redis 7 sends them.
pub fn hello_reply(client_id: u64, protocol: i64) -> Reply {
    let field = |name: &'static str, value: Reply| (Reply::bulk(name), value);
    Reply::Map(vec![
        field("server", Reply::bulk("redis")),
        field("version", Reply::bulk(crate::info::REDIS_VERSION)),
        field("proto", Reply::Integer(protocol)),
        field(
            "id",
            Reply::Integer(i64::try_from(client_id).unwrap_or(i64::MAX)),
        ),
        field("mode", Reply::bulk("standalone")),
        field("role", Reply::bulk("master")),
        field("modules", Reply::Array(Vec::new())),
    ])
}

/// The reply to `COMMAND ...`.
fn command_table(query: &TableQuery) -> Reply {
    let find = |name: &Bytes| {
        COMMANDS
            .iter()
            .find(|c| c.name.as_bytes().eq_ignore_ascii_case(name))
    };
    let info = |c: &CommandSpec| {
        Reply::Array(vec![
            Reply::bulk(c.name),
            Reply::Integer(c.arity),
            Reply::Array(c.flags.iter().map(|f| Reply::Status((*f).into())).collect()),
            Reply::Integer(c.first_key),
            Reply::Integer(c.last_key),
            Reply::Integer(c.step),
            Reply::Array(Vec::new()),
            Reply::Array(Vec::new()),
            Reply::Array(Vec::new()),
            Reply::Array(Vec::new()),
        ])
    };
    let docs = |c: &CommandSpec| {
        Reply::Array(vec![
            Reply::bulk("summary"),
            Reply::bulk(c.summary),
            Reply::bulk("since"),
            Reply::bulk("1.0.0"),
            Reply::bulk("group"),
            Reply::bulk(c.group),
        ])
    };
    match query {
        TableQuery::All => Reply::Array(COMMANDS.iter().map(info).collect()),
        TableQuery::Count => Reply::Integer(i64::try_from(COMMANDS.len()).unwrap_or(i64::MAX)),
        TableQuery::Info(names) if names.is_empty() => {
            Reply::Array(COMMANDS.iter().map(info).collect())
        }
        TableQuery::Info(names) => Reply::Array(
            names
                .iter()
                .map(|n| find(n).map_or(Reply::nil(), info))
                .collect(),
        ),
        TableQuery::Docs(names) => {
            let chosen: Vec<&CommandSpec> = if names.is_empty() {
                COMMANDS.iter().collect()
            } else {
                names.iter().filter_map(find).collect()
            };
            Reply::Array(
                chosen
                    .into_iter()
                    .flat_map(|c| [Reply::bulk(c.name), docs(c)])
                    .collect(),
            )
        }
    }
}

/// The error for an unknown command, with Redis's text: the name and the
/// first arguments, quoted, up to about 128 bytes.
fn unknown_command<A: AsRef<[u8]>>(name: &[u8], rest: &[A]) -> CommandError {
    let mut args = String::new();
    for arg in rest {
        if args.len() >= 128 {
            break;
        }
        let room = 128 - args.len();
        let arg = arg.as_ref();
        let shown = arg.get(..room).unwrap_or(arg);
        args.push('\'');
        args.push_str(&String::from_utf8_lossy(shown));
        args.push_str("' ");
    }
    CommandError::UnknownCommand {
        name: printable_name(name),
        args,
    }
}

/// Parses the arguments of `RANGE start end [LIMIT n]`.
fn parse_range<A: AsRef<[u8]>>(rest: &[A]) -> Result<Command, CommandError> {
    let (start, end, options) = match rest {
        [start, end, options @ ..] => (start.as_ref(), end.as_ref(), options),
        _ => return Err(CommandError::WrongArity("range")),
    };
    let limit = match options {
        [] => None,
        [keyword, n] if keyword.as_ref().eq_ignore_ascii_case(b"limit") => Some(
            std::str::from_utf8(n.as_ref())
                .ok()
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or(CommandError::NotAnInteger)?,
        ),
        _ => return Err(CommandError::Syntax),
    };
    let start = match start {
        b"-" => Bound::Unbounded,
        key => Bound::Included(Bytes::copy_from_slice(key)),
    };
    let end = match end {
        b"+" => Bound::Unbounded,
        key => Bound::Excluded(Bytes::copy_from_slice(key)),
    };
    Ok(Command::Range { start, end, limit })
}

/// Whether no key can fall between `start` and `end`. Checked before the
/// engine sees the range: ordered maps (`BTreeMap::range`) panic on a range
/// whose start is after its end, and a user can type one.
fn range_is_empty(start: &Bound<Bytes>, end: &Bound<Bytes>) -> bool {
    match (start, end) {
        (Bound::Included(s), Bound::Excluded(e)) | (Bound::Excluded(s), Bound::Included(e)) => {
            s >= e
        }
        (Bound::Excluded(s), Bound::Excluded(e)) => s >= e,
        (Bound::Included(s), Bound::Included(e)) => s > e,
        _ => false,
    }
}

/// The command name as it appears in an error: lossy UTF-8, cut short so a
/// huge bogus request does not produce a huge reply.
fn printable_name(name: &[u8]) -> String {
    const MAX: usize = 128;
    let shown = name.get(..MAX).unwrap_or(name);
    String::from_utf8_lossy(shown).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_write_flag_is_found_by_name_in_any_case() {
        let mut names: Vec<&str> = COMMANDS.iter().map(|spec| spec.name).collect();
        let all = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all, "one spec per name");
        assert!(Command::is_write_name(b"set"));
        assert!(Command::is_write_name(b"SeT"));
        assert!(Command::is_write_name(b"DEL"));
        assert!(!Command::is_write_name(b"GET"));
        assert!(!Command::is_write_name(b"ping"));
        assert!(!Command::is_write_name(b"nosuchcommand"));
    }

    fn run(db: &Db, line: &str) -> Reply {
        match Command::parse_line(line.as_bytes()) {
            Ok(Some(command)) => command.execute(db),
            Ok(None) => panic!("blank line"),
            Err(e) => e.into(),
        }
    }

    fn text(db: &Db, line: &str) -> String {
        run(db, line).to_text()
    }

    #[test]
    fn names_are_case_insensitive() {
        let db = Db::memory().unwrap();
        assert_eq!(text(&db, "set k v"), "OK\n");
        assert_eq!(text(&db, "GeT k"), "\"v\"\n");
        assert_eq!(text(&db, "PING"), "PONG\n");
        assert_eq!(text(&db, "ping \"hi there\""), "\"hi there\"\n");
    }

    #[test]
    fn errors_have_redis_texts() {
        let db = Db::memory().unwrap();
        assert_eq!(
            text(&db, "foo a \"b c\""),
            "(error) ERR unknown command 'foo', with args beginning with: 'a' 'b c' \n"
        );
        assert_eq!(
            text(&db, "foo"),
            "(error) ERR unknown command 'foo', with args beginning with: \n"
        );
        assert_eq!(
            text(&db, "GET"),
            "(error) ERR wrong number of arguments for 'get' command\n"
        );
        assert_eq!(
            text(&db, "get a b"),
            "(error) ERR wrong number of arguments for 'get' command\n"
        );
        assert_eq!(text(&db, "set a b c"), "(error) ERR syntax error\n");
        assert_eq!(
            text(&db, "mset a b c"),
            "(error) ERR wrong number of arguments for 'mset' command\n"
        );
        assert_eq!(
            text(&db, "set \"a b"),
            "(error) ERR Protocol error: unbalanced quotes in request\n"
        );
        assert_eq!(
            text(&db, "range a b limit x"),
            "(error) ERR value is not an integer or out of range\n"
        );
        assert_eq!(text(&db, "range a b top 3"), "(error) ERR syntax error\n");
        assert_eq!(
            text(&db, "set \"\" v"),
            "(error) ERR empty keys are not allowed\n"
        );
    }

    #[test]
    fn del_exists_mset_mget_count_like_redis() {
        let db = Db::memory().unwrap();
        assert_eq!(text(&db, "mset a 1 b 2 a 3"), "OK\n");
        assert_eq!(text(&db, "exists a a b c"), "(integer) 3\n");
        assert_eq!(text(&db, "mget a b c"), "1) \"3\"\n2) \"2\"\n3) (nil)\n");
        assert_eq!(text(&db, "del a a c"), "(integer) 1\n");
        assert_eq!(text(&db, "dbsize"), "(integer) 1\n");
    }

    #[test]
    fn range_bounds_and_limit() {
        let db = Db::memory().unwrap();
        text(&db, "mset a 1 b 2 c 3 d 4");
        assert_eq!(
            text(&db, "range b d"),
            "1) \"b\"\n2) \"2\"\n3) \"c\"\n4) \"3\"\n"
        );
        assert_eq!(text(&db, "range - + limit 1"), "1) \"a\"\n2) \"1\"\n");
        assert_eq!(
            text(&db, "range c +"),
            "1) \"c\"\n2) \"3\"\n3) \"d\"\n4) \"4\"\n"
        );
        assert_eq!(text(&db, "range d b"), "(empty array)\n");
        assert_eq!(text(&db, "range b b"), "(empty array)\n");
        assert_eq!(text(&db, "range - + LIMIT 0"), "(empty array)\n");
    }

    #[test]
    fn stats_and_help_are_arrays() {
        let db = Db::memory().unwrap();
        text(&db, "set k v");
        let stats = text(&db, "stats");
        // More than nine items: redis-cli pads the indices to one width.
        assert!(
            stats.starts_with(" 1) \"engine\"\n 2) \"memory\"\n"),
            "{stats}"
        );
        assert!(
            stats.contains("\"live_keys\"\n 4) (integer) 1\n"),
            "{stats}"
        );
        let help = text(&db, "help");
        assert!(help.contains(") SET key value"), "{help}");
    }

    #[test]
    fn quit_and_exit_end_the_session() {
        for line in ["quit", "EXIT"] {
            assert!(
                Command::parse_line(line.as_bytes())
                    .unwrap()
                    .unwrap()
                    .is_quit()
            );
        }
        assert_eq!(Command::parse_line(b"   ").unwrap(), None);
    }
}
