//! `Reply`: what a command answers, and how redis-cli prints it.
//!
//! The variants are the types of RESP2, Redis's protocol, so that the
//! network server can write a `Reply` on the wire without a second model of
//! replies that could drift from this one. [`Reply::to_text`] is the other
//! encoding: the text redis-cli shows on a terminal (`cliFormatReplyTTY` in
//! Redis), which the shell prints in every mode, so that a user or a program
//! reads the same thing from `pydb shell` and from `redis-cli`.

use std::fmt::Write as _;

use bytes::Bytes;

use crate::tokenize::quote_into;

/// The answer to one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// A status line such as `OK` or `PONG` (RESP simple string).
    Status(String),
    /// A byte string, or `None` for "no value" (RESP bulk string / nil).
    Bulk(Option<Bytes>),
    /// An integer (RESP integer).
    Integer(i64),
    /// A list of replies (RESP array).
    Array(Vec<Reply>),
    /// Text meant for people, such as `INFO` (a RESP3 verbatim string,
    /// `=` with the format `txt:`; in RESP2, a bulk string).
    Verbatim(Bytes),
    /// Pairs of field and value (a RESP3 map; in RESP2, an array of the
    /// fields and values in turn, which is how Redis sends it there).
    Map(Vec<(Reply, Reply)>),
    /// An error; by convention the text starts with a code such as `ERR`
    /// (RESP error).
    Error(String),
    /// The nil array: `EXEC` when a watched key changed (RESP2 `*-1`,
    /// RESP3 null `_`).
    NilArray,
}

impl Reply {
    /// The `OK` status.
    pub fn ok() -> Self {
        Reply::Status("OK".into())
    }

    /// A bulk reply holding `value`.
    pub fn bulk(value: impl Into<Bytes>) -> Self {
        Reply::Bulk(Some(value.into()))
    }

    /// The nil bulk reply.
    pub fn nil() -> Self {
        Reply::Bulk(None)
    }

    /// An `ERR` error with `message`.
    pub fn err(message: impl std::fmt::Display) -> Self {
        Reply::Error(format!("ERR {message}"))
    }

    /// Whether this is an error reply.
    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }

    /// The reply as redis-cli prints it on a terminal, every line ended by
    /// `\n`:
    ///
    /// ```text
    /// OK                   status
    /// "value"              bulk, quoted and escaped
    /// (nil)                nil bulk
    /// (integer) 3          integer
    /// (error) ERR message  error
    /// (empty array)        empty array
    /// 1) "a"               array, one element per line; nested arrays are
    /// 2) 1) "b"            indented under their index, indexes padded to
    ///    2) "c"            the width of the largest one
    /// ```
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        self.write_text("", &mut out);
        out
    }

    /// Appends the text of this reply to `out`; `prefix` is the indentation
    /// of the array this reply is nested in (redis-cli's algorithm).
    fn write_text(&self, prefix: &str, out: &mut String) {
        match self {
            Reply::Status(s) => {
                out.push_str(s);
                out.push('\n');
            }
            Reply::Bulk(Some(value)) | Reply::Verbatim(value) => {
                quote_into(value, out);
                out.push('\n');
            }
            Reply::Bulk(None) | Reply::NilArray => out.push_str("(nil)\n"),
            Reply::Integer(n) => {
                let _ = writeln!(out, "(integer) {n}");
            }
            Reply::Error(e) => {
                let _ = writeln!(out, "(error) {e}");
            }
            Reply::Map(pairs) => Reply::Array(
                pairs
                    .iter()
                    .flat_map(|(k, v)| [k.clone(), v.clone()])
                    .collect(),
            )
            .write_text(prefix, out),
            Reply::Array(items) if items.is_empty() => out.push_str("(empty array)\n"),
            Reply::Array(items) => {
                let width = items.len().to_string().len();
                // Elements nested in this array line up after "N) ".
                let nested = format!("{prefix}{}", " ".repeat(width + 2));
                for (i, item) in items.iter().enumerate() {
                    // The first element follows the parent's "N) " on the
                    // same line; the others start a line with the prefix.
                    if i > 0 {
                        out.push_str(prefix);
                    }
                    let _ = write!(out, "{:>width$}) ", i + 1);
                    item.write_text(&nested, out);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Reply {
        Reply::bulk(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn scalars_print_like_redis_cli() {
        assert_eq!(Reply::ok().to_text(), "OK\n");
        assert_eq!(Reply::Status("PONG".into()).to_text(), "PONG\n");
        assert_eq!(bulk("world").to_text(), "\"world\"\n");
        assert_eq!(bulk("").to_text(), "\"\"\n");
        assert_eq!(Reply::nil().to_text(), "(nil)\n");
        assert_eq!(Reply::Integer(3).to_text(), "(integer) 3\n");
        assert_eq!(Reply::Integer(-7).to_text(), "(integer) -7\n");
        assert_eq!(
            Reply::err("unknown command 'foo'").to_text(),
            "(error) ERR unknown command 'foo'\n"
        );
    }

    #[test]
    fn bulk_values_are_escaped() {
        assert_eq!(
            Reply::bulk(Bytes::from_static(b"a \"q\"\n\x00\xff")).to_text(),
            "\"a \\\"q\\\"\\n\\x00\\xff\"\n"
        );
    }

    #[test]
    fn arrays_number_their_elements() {
        assert_eq!(Reply::Array(vec![]).to_text(), "(empty array)\n");
        let reply = Reply::Array(vec![bulk("a"), Reply::nil(), Reply::Integer(1)]);
        assert_eq!(reply.to_text(), "1) \"a\"\n2) (nil)\n3) (integer) 1\n");
    }

    #[test]
    fn indexes_are_padded_to_the_widest() {
        let reply = Reply::Array((0..10).map(Reply::Integer).collect());
        let text = reply.to_text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], " 1) (integer) 0");
        assert_eq!(lines[8], " 9) (integer) 8");
        assert_eq!(lines[9], "10) (integer) 9");
    }

    #[test]
    fn nested_arrays_are_indented_as_redis_cli_does() {
        // redis-cli prints the reply of e.g. `COMMAND INFO get` this way.
        let reply = Reply::Array(vec![
            bulk("a"),
            Reply::Array(vec![bulk("b"), Reply::Array(vec![bulk("c"), bulk("d")])]),
            Reply::Array(vec![]),
        ]);
        assert_eq!(
            reply.to_text(),
            "1) \"a\"\n\
             2) 1) \"b\"\n\
             \x20  2) 1) \"c\"\n\
             \x20     2) \"d\"\n\
             3) (empty array)\n"
        );
    }

    #[test]
    fn nested_arrays_under_wide_indexes() {
        let mut items: Vec<Reply> = (0..9).map(|_| Reply::nil()).collect();
        items.push(Reply::Array(vec![bulk("x"), bulk("y")]));
        let text = Reply::Array(items).to_text();
        assert!(text.ends_with("10) 1) \"x\"\n    2) \"y\"\n"), "{text}");
    }
}
