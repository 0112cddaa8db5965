//! Splitting a command line into arguments, and quoting an argument back.
//!
//! The rules are redis-cli's (`sdssplitargs` in Redis), so that a line typed
//! into `redis-cli` means the same thing here:
//!
//! - arguments are separated by whitespace;
//! - `"..."` quotes an argument and understands the escapes `\"`, `\\`,
//!   `\n`, `\r`, `\t`, `\a`, `\b` and `\xHH` (any other `\c` is `c`);
//! - `'...'` quotes an argument with no escape but `\'`;
//! - a closing quote must be followed by whitespace or the end of the line;
//! - outside quotes every byte stands for itself, backslash included, and a
//!   quote starts a quoted part of the same argument (`ab"c d"` is `abc d`).
//!
//! [`quote`] is the inverse: it writes any byte string as a double-quoted
//! argument, printable ASCII as itself and every other byte as an escape. It
//! is also how replies print values, exactly as redis-cli prints them.
//!
//! Invariant (checked by a property test and a fuzz target):
//! `tokenize(quote(x)) == [x]` for every byte string `x`.

/// Why a line could not be split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenizeError {
    /// A quote is not closed, or a closing quote is followed by something
    /// other than whitespace.
    #[error("unbalanced quotes in request")]
    UnbalancedQuotes,
}

/// Whether `b` separates arguments (C's `isspace`).
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// The value of a hex digit.
fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Where the tokenizer is inside an argument.
#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Bare,
    Double,
    Single,
}

/// Splits `line` into arguments by redis-cli's rules.
pub fn tokenize(line: &[u8]) -> Result<Vec<Vec<u8>>, TokenizeError> {
    let mut args = Vec::new();
    let mut pos = 0;
    loop {
        while line.get(pos).is_some_and(|&b| is_space(b)) {
            pos += 1;
        }
        if pos >= line.len() {
            return Ok(args);
        }
        let mut arg = Vec::new();
        let mut state = State::Bare;
        loop {
            let byte = line.get(pos).copied();
            match state {
                State::Bare => match byte {
                    None => break,
                    Some(b) if is_space(b) => break,
                    Some(b'"') => state = State::Double,
                    Some(b'\'') => state = State::Single,
                    Some(b) => arg.push(b),
                },
                State::Double => match byte {
                    None => return Err(TokenizeError::UnbalancedQuotes),
                    Some(b'\\') => {
                        let next = line.get(pos + 1).copied();
                        let hex = (
                            line.get(pos + 2).copied().and_then(hex_value),
                            line.get(pos + 3).copied().and_then(hex_value),
                        );
                        match (next, hex) {
                            (Some(b'x'), (Some(hi), Some(lo))) => {
                                arg.push(hi * 16 + lo);
                                pos += 3;
                            }
                            (Some(c), _) => {
                                arg.push(match c {
                                    b'n' => b'\n',
                                    b'r' => b'\r',
                                    b't' => b'\t',
                                    b'b' => 0x08,
                                    b'a' => 0x07,
                                    other => other,
                                });
                                pos += 1;
                            }
                            // A backslash at the very end: the quote is
                            // never closed.
                            (None, _) => return Err(TokenizeError::UnbalancedQuotes),
                        }
                    }
                    Some(b'"') => {
                        close_quote(line, pos)?;
                        pos += 1;
                        break;
                    }
                    Some(b) => arg.push(b),
                },
                State::Single => match byte {
                    None => return Err(TokenizeError::UnbalancedQuotes),
                    Some(b'\\') if line.get(pos + 1) == Some(&b'\'') => {
                        arg.push(b'\'');
                        pos += 1;
                    }
                    Some(b'\'') => {
                        close_quote(line, pos)?;
                        pos += 1;
                        break;
                    }
                    Some(b) => arg.push(b),
                },
            }
            pos += 1;
        }
        args.push(arg);
    }
}

/// Checks that the closing quote at `pos` ends the argument.
fn close_quote(line: &[u8], pos: usize) -> Result<(), TokenizeError> {
    match line.get(pos + 1) {
        None => Ok(()),
        Some(&b) if is_space(b) => Ok(()),
        Some(_) => Err(TokenizeError::UnbalancedQuotes),
    }
}

/// Writes `arg` as a double-quoted argument, the way redis-cli prints a
/// value: printable ASCII as itself, `"` and `\` escaped, `\n \r \t \a \b`
/// by name, every other byte as `\xhh`.
pub fn quote(arg: &[u8]) -> String {
    let mut out = String::with_capacity(arg.len() + 2);
    quote_into(arg, &mut out);
    out
}

/// Appends the quoted form of `arg` to `out` (see [`quote`]).
pub fn quote_into(arg: &[u8], out: &mut String) {
    out.push('"');
    for &b in arg {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'"' => out.push_str("\\\""),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x07 => out.push_str("\\a"),
            0x08 => out.push_str("\\b"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.push_str("\\x");
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0x0f)]));
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn split(line: &str) -> Vec<String> {
        tokenize(line.as_bytes())
            .unwrap()
            .into_iter()
            .map(|a| String::from_utf8(a).unwrap())
            .collect()
    }

    #[test]
    fn splits_on_whitespace() {
        assert_eq!(split("  SET  k\tv \r\n"), ["SET", "k", "v"]);
        assert!(split("").is_empty());
        assert!(split("   \t ").is_empty());
    }

    #[test]
    fn double_quotes_understand_escapes() {
        assert_eq!(split(r#"set "a b" "c\"d""#), ["set", "a b", "c\"d"]);
        assert_eq!(split(r#""\\ \n\r\t""#), ["\\ \n\r\t"]);
        assert_eq!(split(r#""\x41\x7a\x7A""#), ["Azz"]);
        assert_eq!(split(r#""\q""#), ["q"]);
        // An incomplete \x escape is an x.
        assert_eq!(split(r#""\x4""#), ["x4"]);
        assert_eq!(
            tokenize(br#""\xff\x00""#).unwrap(),
            vec![vec![0xffu8, 0x00]]
        );
        assert_eq!(split(r#""""#), [""]);
    }

    #[test]
    fn single_quotes_only_escape_the_quote() {
        assert_eq!(split(r"'a \n b'"), [r"a \n b"]);
        assert_eq!(split(r"'it\'s'"), ["it's"]);
        assert_eq!(split("''"), [""]);
    }

    #[test]
    fn bare_arguments_keep_backslashes_and_join_quoted_parts() {
        assert_eq!(split(r"a\nb"), [r"a\nb"]);
        assert_eq!(split(r#"ab"c d""#), ["abc d"]);
    }

    #[test]
    fn bad_quoting_is_an_error() {
        for line in [
            r#"set "k v"#,
            r#"set "k"v"#,
            "set 'k",
            "set 'k'v",
            r#""abc\"#,
            r#"""#,
        ] {
            assert_eq!(
                tokenize(line.as_bytes()),
                Err(TokenizeError::UnbalancedQuotes),
                "{line}"
            );
        }
    }

    #[test]
    fn quote_escapes_like_redis_cli() {
        assert_eq!(quote(b"hello"), r#""hello""#);
        assert_eq!(quote(b""), r#""""#);
        assert_eq!(quote(b"a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(quote(b"\n\r\t\x07\x08"), r#""\n\r\t\a\b""#);
        assert_eq!(quote(b"\x00\x7f\xff"), r#""\x00\x7f\xff""#);
        assert_eq!(quote("é".as_bytes()), r#""\xc3\xa9""#);
    }

    proptest! {
        #[test]
        fn quote_round_trips(arg in proptest::collection::vec(any::<u8>(), 0..64)) {
            let quoted = quote(&arg);
            prop_assert_eq!(tokenize(quoted.as_bytes()).unwrap(), vec![arg]);
        }

        #[test]
        fn quoted_arguments_join_into_a_line(
            args in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..16), 0..8)
        ) {
            let line: Vec<String> = args.iter().map(|a| quote(a)).collect();
            prop_assert_eq!(tokenize(line.join(" ").as_bytes()).unwrap(), args);
        }

        #[test]
        fn tokenize_never_panics(line in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = tokenize(&line);
        }
    }
}
