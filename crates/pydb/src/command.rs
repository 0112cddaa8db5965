//! Commands: parsing a tokenized request into a typed [`Command`], and
//! executing it against a [`Db`] to get a [`Reply`].
//!
//! This is the one place that knows what `SET`, `GET` or `RANGE` mean. The
//! shell feeds it lines split by [`crate::tokenize`]; the network server
//! will feed it RESP arrays. Both get the same parsing, the same arity
//! checks, and the same Redis-style error texts, so they cannot drift.
//!
//! Parsing never touches the database and never fails with anything but a
//! [`CommandError`], which becomes an error reply; the shell (or the
//! connection) then goes on with the next command.

use std::ops::Bound;

use bytes::Bytes;
use pydb_storage::{KeyRange, WriteBatch};

use crate::Db;
use crate::reply::Reply;

/// Why a request is not a valid command. The texts are Redis's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// The request is empty.
    #[error("ERR empty command")]
    Empty,
    /// No command has this name.
    #[error("ERR unknown command '{0}'")]
    UnknownCommand(String),
    /// The command got too many or too few arguments.
    #[error("ERR wrong number of arguments for '{0}' command")]
    WrongArity(&'static str),
    /// The arguments do not follow the command's syntax.
    #[error("ERR syntax error")]
    Syntax,
    /// An argument that must be a non-negative integer is not one.
    #[error("ERR value is not an integer or out of range")]
    NotAnInteger,
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
    /// `SET key value`: sets a key.
    Set {
        /// The key.
        key: Bytes,
        /// The value.
        value: Bytes,
    },
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
}

/// One line per command, for `HELP`.
pub const HELP: &[&str] = &[
    "SET key value                  set a key",
    "GET key                        the value of a key, or (nil)",
    "DEL key [key ...]              delete keys; how many existed",
    "EXISTS key [key ...]           how many of the keys exist",
    "MSET key value [key value ...] set several keys in one atomic batch",
    "MGET key [key ...]             the values of several keys",
    "DBSIZE                         the number of keys",
    "PING [message]                 PONG, or the message",
    "RANGE start end [LIMIT n]      keys in [start, end) with values; - and + are open ends",
    "COMPACT                        reclaim the space of old values",
    "STATS                          the engine's counters",
    "HELP                           this list",
    "QUIT | EXIT                    leave the shell",
    "Arguments may be quoted: \"a b\" with \\\" \\\\ \\n \\r \\t \\xHH escapes, or 'a b'.",
];

impl Command {
    /// Parses a request: the command name (any case) and its arguments.
    pub fn parse<A: AsRef<[u8]>>(args: &[A]) -> Result<Self, CommandError> {
        let (name, rest) = args.split_first().ok_or(CommandError::Empty)?;
        let name = name.as_ref();
        let lower = name.to_ascii_lowercase();
        let bytes = |a: &A| Bytes::copy_from_slice(a.as_ref());
        let all = |rest: &[A]| rest.iter().map(bytes).collect::<Vec<_>>();
        let command = match lower.as_slice() {
            b"set" => match rest {
                [key, value] => Command::Set {
                    key: bytes(key),
                    value: bytes(value),
                },
                [_, _, ..] => return Err(CommandError::Syntax),
                _ => return Err(CommandError::WrongArity("set")),
            },
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
            b"quit" | b"exit" => Command::Quit,
            _ => {
                return Err(CommandError::UnknownCommand(printable_name(name)));
            }
        };
        Ok(command)
    }

    /// Tokenizes `line` and parses it. `Ok(None)` for a blank line.
    pub fn parse_line(line: &[u8]) -> Result<Option<Self>, CommandError> {
        let args = crate::tokenize::tokenize(line)?;
        if args.is_empty() {
            return Ok(None);
        }
        Self::parse(&args).map(Some)
    }

    /// Whether this command ends the session.
    pub fn is_quit(&self) -> bool {
        matches!(self, Command::Quit)
    }

    /// Runs the command against `db`. A failure of the database becomes an
    /// `ERR` reply carrying its message.
    pub fn execute(&self, db: &Db) -> Reply {
        match self.try_execute(db) {
            Ok(reply) => reply,
            Err(e) => Reply::err(e),
        }
    }

    fn try_execute(&self, db: &Db) -> crate::Result<Reply> {
        Ok(match self {
            Command::Set { key, value } => {
                db.set(key, value)?;
                Reply::ok()
            }
            Command::Get { key } => Reply::Bulk(db.get(key)?),
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
                    .collect::<crate::Result<_>>()?,
            ),
            Command::DbSize => {
                // Counting by a scan works for every engine; an engine's own
                // key counter would be O(1) but is not part of the trait.
                let mut count: i64 = 0;
                for item in db.scan::<&[u8]>(..)? {
                    item?;
                    count = count.saturating_add(1);
                }
                Reply::Integer(count)
            }
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
        })
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
        let db = Db::memory();
        assert_eq!(text(&db, "set k v"), "OK\n");
        assert_eq!(text(&db, "GeT k"), "\"v\"\n");
        assert_eq!(text(&db, "PING"), "PONG\n");
        assert_eq!(text(&db, "ping \"hi there\""), "\"hi there\"\n");
    }

    #[test]
    fn errors_have_redis_texts() {
        let db = Db::memory();
        assert_eq!(text(&db, "foo a"), "(error) ERR unknown command 'foo'\n");
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
        let db = Db::memory();
        assert_eq!(text(&db, "mset a 1 b 2 a 3"), "OK\n");
        assert_eq!(text(&db, "exists a a b c"), "(integer) 3\n");
        assert_eq!(text(&db, "mget a b c"), "1) \"3\"\n2) \"2\"\n3) (nil)\n");
        assert_eq!(text(&db, "del a a c"), "(integer) 1\n");
        assert_eq!(text(&db, "dbsize"), "(integer) 1\n");
    }

    #[test]
    fn range_bounds_and_limit() {
        let db = Db::memory();
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
        let db = Db::memory();
        text(&db, "set k v");
        let stats = text(&db, "stats");
        assert!(
            stats.starts_with("1) \"engine\"\n2) \"memory\"\n"),
            "{stats}"
        );
        assert!(stats.contains("\"live_keys\"\n4) (integer) 1\n"), "{stats}");
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
