//! RESP2, Redis's wire protocol: parsing requests, encoding replies, and
//! the client's side of both.
//!
//! A request is an array of bulk strings:
//!
//! ```text
//! *3\r\n $3\r\nSET\r\n $1\r\nk\r\n $5\r\nhello\r\n      SET k hello
//! ```
//!
//! or an *inline* command, one line of text split like a shell line (what
//! `telnet` or `nc` send): `SET k hello\r\n`. A reply is one of five types,
//! which are exactly the variants of [`Reply`]:
//!
//! ```text
//! +OK\r\n               status         -ERR message\r\n   error
//! :42\r\n               integer        $5\r\nhello\r\n    bulk ($-1\r\n is nil)
//! *2\r\n:1\r\n:2\r\n    array of replies
//! ```
//!
//! ## Why the request parser keeps state
//!
//! Bytes arrive from the network in pieces of any size. [`RequestParser`]
//! is *incremental*: given the bytes received so far it answers
//! [`Parsed::Incomplete`] (wait for more) or a whole request and how many
//! bytes it took. It remembers how far into the current request it got, so
//! a huge request arriving in thousands of reads is parsed once, not
//! re-parsed from its start on every read.
//!
//! ## Why it is bounded
//!
//! The bytes come from anyone who can connect. Every length is checked
//! against a [`Limits`] field *before* it is trusted: the number of
//! arguments, the length of each bulk string, the length of an inline line
//! or a header line. No `Vec` is sized from a number on the wire without
//! that check, and the connection separately caps the bytes it buffers. A
//! request that breaks a rule is a [`ProtocolError`]: the connection sends
//! it as an error reply and closes, as Redis does, because after a framing
//! error nobody knows where the next request starts.
//!
//! Invariant (unit and property tests below, and the `resp` fuzz target):
//! every proper prefix of a valid request is `Incomplete`, and any split of
//! a stream of encoded requests parses back to the same requests.

use std::ops::Range;

use bytes::Bytes;

use crate::reply::Reply;
use crate::tokenize::tokenize;

/// The bounds a request must stay within.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most arguments in one array request (Redis: 1024 * 1024).
    pub max_args: usize,
    /// The longest bulk string (Redis's `proto-max-bulk-len`, 512 MiB).
    pub max_bulk_len: usize,
    /// The longest inline command or header line (Redis: 64 KiB).
    pub max_inline_len: usize,
}

impl Limits {
    /// Redis's defaults.
    pub const DEFAULT: Limits = Limits {
        max_args: 1024 * 1024,
        max_bulk_len: 512 << 20,
        max_inline_len: 64 << 10,
    };

    /// What a client that has not authenticated yet may send (Redis's
    /// numbers): enough for `AUTH`, too little to make the server buffer
    /// much for a stranger.
    pub const UNAUTHENTICATED: Limits = Limits {
        max_args: 10,
        max_bulk_len: 16 << 10,
        max_inline_len: 64 << 10,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Why a request cannot be parsed. The texts are Redis's; each becomes an
/// `-ERR Protocol error: ...` reply and the connection is closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// An array header is not a number, or is too large.
    #[error("invalid multibulk length")]
    InvalidMultibulkLength,
    /// A bulk header is not a number, is negative, or is too large.
    #[error("invalid bulk length")]
    InvalidBulkLength,
    /// An array element is not a bulk string.
    #[error("expected '$', got '{0}'")]
    ExpectedBulk(char),
    /// A bulk string is not followed by `\r\n`.
    #[error("expected CRLF after bulk string")]
    MissingCrlf,
    /// A header line is longer than any valid header.
    #[error("too big mbulk count string")]
    HeaderTooLong,
    /// An inline command is longer than [`Limits::max_inline_len`].
    #[error("too big inline request")]
    InlineTooLong,
    /// An inline command has an unclosed quote.
    #[error("unbalanced quotes in request")]
    UnbalancedQuotes,
}

impl ProtocolError {
    /// The error reply sent before closing the connection.
    pub fn to_reply(&self) -> Reply {
        Reply::Error(format!("ERR Protocol error: {self}"))
    }
}

/// What [`RequestParser::parse`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// The bytes so far are the start of a request: read more.
    Incomplete,
    /// A whole request: its arguments (empty for a blank line or `*0`,
    /// which Redis ignores), and how many bytes it took.
    Request {
        /// The arguments, command name first.
        args: Vec<Bytes>,
        /// The number of bytes of the buffer the request took.
        consumed: usize,
    },
}

/// The progress of the array request being parsed.
///
/// It holds no argument: only how far the checks got. A partial request
/// of 300,000 one-byte arguments used to keep 300,000 separate `Bytes`
/// (a 32-byte handle and a heap block each, about 12 times the bytes on
/// the wire) while waiting for the rest. Now the waiting costs nothing
/// beyond the connection's input buffer, which is counted against the
/// query limit; when the request is complete, it is copied once and every
/// argument is a slice of that copy.
#[derive(Debug, Default)]
struct Progress {
    /// Bytes of the current request already parsed.
    pos: usize,
    /// How many arguments the array announced, once its header is read.
    expected: Option<usize>,
    /// Where the first argument's header starts.
    first_arg: usize,
    /// How many arguments have been checked so far.
    checked: usize,
}

/// An incremental, bounded parser of requests.
///
/// Contract: every call gets the buffer starting at the same request (the
/// caller removes bytes only after a [`Parsed::Request`], exactly
/// `consumed` of them), possibly with more bytes appended since the last
/// call.
#[derive(Debug, Default)]
pub struct RequestParser {
    limits: Limits,
    progress: Progress,
}

impl RequestParser {
    /// A parser enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            progress: Progress::default(),
        }
    }

    /// Changes the limits (after a client authenticates).
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Parses the next request at the start of `buf`.
    pub fn parse(&mut self, buf: &[u8]) -> Result<Parsed, ProtocolError> {
        let result = match buf.first() {
            None => return Ok(Parsed::Incomplete),
            Some(b'*') => self.parse_array(buf),
            Some(_) => parse_inline(buf, &self.limits),
        };
        // Whatever happened unless we are waiting for more, the next call
        // starts a new request.
        if !matches!(result, Ok(Parsed::Incomplete)) {
            self.progress = Progress::default();
        }
        result
    }

    /// A `GET key` request at the start of `buf`, recognised without
    /// building its arguments: the key's place in `buf` and how many bytes
    /// the request takes. The server's hottest request then costs no
    /// allocation (`parse` copies the request and collects its arguments).
    ///
    /// `None` for anything else: another command, a request not complete
    /// yet, a malformed or over-limit one, the empty key, or a request
    /// `parse` has begun.
    /// The caller then calls [`RequestParser::parse`], which answers all
    /// of those as before; so this never accepts what `parse` refuses, and
    /// what it accepts `parse` would return as `["GET", key]` (a test
    /// checks both on arbitrary input).
    pub fn parse_get(&self, buf: &[u8]) -> Option<(Range<usize>, usize)> {
        /// The bytes of a `GET` request up to its key's header.
        const HEAD: &[u8] = b"*2\r\n$3\r\nGET\r\n";
        let at = self.fast_head(buf, HEAD, 2)?;
        let (key, consumed) = self.bulk_at(buf, at)?;
        // The empty key is left to `Command::parse`, which refuses it.
        (!key.is_empty()).then_some((key, consumed))
    }

    /// A `SET key value` request (no options) at the start of `buf`, as
    /// [`RequestParser::parse_get`] finds a `GET`: the key's and the
    /// value's places in `buf` and how many bytes the request takes, or
    /// `None` for anything else (then [`RequestParser::parse`] answers it
    /// as before). What it accepts `parse` would return as
    /// `["SET", key, value]` with a non-empty key (a test checks it on
    /// arbitrary input).
    pub fn parse_set(&self, buf: &[u8]) -> Option<(Range<usize>, Range<usize>, usize)> {
        /// The bytes of a `SET` request up to its key's header.
        const HEAD: &[u8] = b"*3\r\n$3\r\nSET\r\n";
        let at = self.fast_head(buf, HEAD, 3)?;
        let (key, at) = self.bulk_at(buf, at)?;
        // The empty key is left to `Command::parse`, which refuses it.
        if key.is_empty() {
            return None;
        }
        let (value, consumed) = self.bulk_at(buf, at)?;
        Some((key, value, consumed))
    }

    /// Where the first argument's header starts, if `buf` starts with
    /// `head` (the array header and the command's name, any case) and the
    /// fast paths may be taken: no request half parsed by `parse`, and
    /// `args` arguments within the limits.
    fn fast_head(&self, buf: &[u8], head: &[u8], args: usize) -> Option<usize> {
        if self.progress.expected.is_some() || self.limits.max_args < args {
            return None;
        }
        let start = buf.get(..head.len())?;
        // Clients send names in upper case: one comparison of the bytes
        // first, the case-blind one (byte by byte) only if that fails.
        (start == head || start.eq_ignore_ascii_case(head)).then_some(head.len())
    }

    /// The complete bulk string whose `$` header starts at `buf[at]`,
    /// checked as `parse_array` checks one: its place in `buf` and the
    /// offset just past its CRLF. `None` if it is incomplete, malformed or
    /// over the bulk limit (`parse` then waits or refuses).
    fn bulk_at(&self, buf: &[u8], at: usize) -> Option<(Range<usize>, usize)> {
        let rest = buf.get(at..)?;
        if rest.first() != Some(&b'$') {
            return None;
        }
        let (line, header_len) = header_line(rest, 1, 32).ok()??;
        let len = parse_length(line)
            .and_then(|n| usize::try_from(n).ok())
            .filter(|&n| n <= self.limits.max_bulk_len)?;
        let start = at.checked_add(header_len)?;
        let end = start.checked_add(len)?;
        let next = end.checked_add(2)?;
        (buf.get(end..next)? == b"\r\n").then_some((start..end, next))
    }

    fn parse_array(&mut self, buf: &[u8]) -> Result<Parsed, ProtocolError> {
        let limits = self.limits;
        let progress = &mut self.progress;
        let expected = match progress.expected {
            Some(n) => n,
            None => {
                let Some((line, next)) = header_line(buf, 1, limits.max_inline_len)? else {
                    return Ok(Parsed::Incomplete);
                };
                let n = parse_length(line).ok_or(ProtocolError::InvalidMultibulkLength)?;
                if n <= 0 {
                    // `*0` and `*-1` are empty requests; Redis skips them.
                    return Ok(Parsed::Request {
                        args: Vec::new(),
                        consumed: next,
                    });
                }
                let n = usize::try_from(n)
                    .ok()
                    .filter(|&n| n <= limits.max_args)
                    .ok_or(ProtocolError::InvalidMultibulkLength)?;
                progress.pos = next;
                progress.first_arg = next;
                progress.expected = Some(n);
                n
            }
        };
        while progress.checked < expected {
            let rest = buf.get(progress.pos..).unwrap_or_default();
            let Some(&first) = rest.first() else {
                return Ok(Parsed::Incomplete);
            };
            if first != b'$' {
                return Err(ProtocolError::ExpectedBulk(char::from(first)));
            }
            // A bulk header is `$` and at most 20 digits; a longer line is
            // garbage, whatever follows.
            let Some((line, header_len)) = header_line(rest, 1, 32)? else {
                return Ok(Parsed::Incomplete);
            };
            let len = parse_length(line)
                .and_then(|n| usize::try_from(n).ok())
                .filter(|&n| n <= limits.max_bulk_len)
                .ok_or(ProtocolError::InvalidBulkLength)?;
            // `len <= max_bulk_len`, so this cannot overflow in practice;
            // checked anyway, as every length from the network is.
            let end = header_len
                .checked_add(len)
                .and_then(|e| e.checked_add(2))
                .ok_or(ProtocolError::InvalidBulkLength)?;
            let Some(frame) = rest.get(..end) else {
                return Ok(Parsed::Incomplete);
            };
            if !frame.ends_with(b"\r\n") {
                return Err(ProtocolError::MissingCrlf);
            }
            progress.checked += 1;
            progress.pos += end;
        }
        let request = Bytes::copy_from_slice(buf.get(..progress.pos).unwrap_or_default());
        Ok(Parsed::Request {
            args: split_checked_args(&request, progress.first_arg, expected),
            consumed: progress.pos,
        })
    }
}

/// The `count` arguments of a request whose every bulk header and CRLF
/// [`RequestParser::parse_array`] has already checked, starting at
/// `first`: slices of `request`, no copies.
fn split_checked_args(request: &Bytes, first: usize, count: usize) -> Vec<Bytes> {
    let mut args = Vec::with_capacity(count);
    let mut pos = first;
    for _ in 0..count {
        let rest = request.get(pos..).unwrap_or_default();
        let Ok(Some((line, header_len))) = header_line(rest, 1, 32) else {
            break;
        };
        let len = parse_length(line)
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(0);
        let start = pos.saturating_add(header_len).min(request.len());
        let end = start.saturating_add(len).min(request.len());
        args.push(request.slice(start..end));
        pos = end + 2;
    }
    args
}

/// Parses an inline command: one line, split by the shell's tokenizer.
fn parse_inline(buf: &[u8], limits: &Limits) -> Result<Parsed, ProtocolError> {
    let Some(newline) = buf.iter().position(|&b| b == b'\n') else {
        if buf.len() > limits.max_inline_len {
            return Err(ProtocolError::InlineTooLong);
        }
        return Ok(Parsed::Incomplete);
    };
    if newline > limits.max_inline_len {
        return Err(ProtocolError::InlineTooLong);
    }
    let line = buf.get(..newline).unwrap_or_default();
    let args = tokenize(line).map_err(|_| ProtocolError::UnbalancedQuotes)?;
    Ok(Parsed::Request {
        args: args.into_iter().map(Bytes::from).collect(),
        consumed: newline + 1,
    })
}

/// Finds the `\r\n`-terminated line that starts `buf` after `skip` type
/// bytes. `Ok(None)` if it is not complete yet; an error if it is already
/// longer than `max_len`. Returns the line (without type byte and CRLF)
/// and the offset just past its CRLF.
fn header_line(
    buf: &[u8],
    skip: usize,
    max_len: usize,
) -> Result<Option<(&[u8], usize)>, ProtocolError> {
    let body = buf.get(skip..).unwrap_or_default();
    let window = body
        .get(..body.len().min(max_len.saturating_add(2)))
        .unwrap_or_default();
    match window.windows(2).position(|w| w == b"\r\n") {
        Some(at) => Ok(Some((body.get(..at).unwrap_or_default(), skip + at + 2))),
        None if body.len() >= max_len.saturating_add(2) => Err(ProtocolError::HeaderTooLong),
        None => Ok(None),
    }
}

/// Parses a length: an optional `-` and 1 to 19 decimal digits, nothing
/// else (Redis's `string2ll` is as strict).
///
/// Every request carries a few of these, so the digits are folded here
/// rather than through `str::parse` (a UTF-8 check and a generic parser).
/// A negative number is folded downwards, so that `i64::MIN` is read as
/// `str::parse` reads it; overflow is `None`.
fn parse_length(line: &[u8]) -> Option<i64> {
    let (negative, digits) = match line.strip_prefix(b"-") {
        Some(digits) => (true, digits),
        None => (false, line),
    };
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut n: i64 = 0;
    for &byte in digits {
        if !byte.is_ascii_digit() {
            return None;
        }
        let digit = i64::from(byte - b'0');
        n = n.checked_mul(10)?;
        n = if negative {
            n.checked_sub(digit)?
        } else {
            n.checked_add(digit)?
        };
    }
    Some(n)
}

/// The protocol a connection speaks: RESP2 until the client asks for RESP3
/// with `HELLO 3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// RESP2: nil is `$-1`, a map is a flat array.
    #[default]
    Resp2,
    /// RESP3: nil is `_`, a map is `%` followed by its pairs.
    Resp3,
}

/// Appends the RESP2 encoding of `reply` to `out`.
///
/// Status and error texts cannot hold a line break on the wire; any `\r`
/// or `\n` in them is written as a space (Redis does the same).
pub fn encode_reply(reply: &Reply, out: &mut Vec<u8>) {
    encode_reply_as(reply, Protocol::Resp2, out);
}

/// Appends the encoding of `reply` in `protocol` to `out`.
pub fn encode_reply_as(reply: &Reply, protocol: Protocol, out: &mut Vec<u8>) {
    match (reply, protocol) {
        (Reply::Bulk(None) | Reply::NilArray, Protocol::Resp3) => out.extend_from_slice(b"_\r\n"),
        (Reply::Verbatim(text), Protocol::Resp3) => {
            out.push(b'=');
            push_int(
                i64::try_from(text.len().saturating_add(4)).unwrap_or(i64::MAX),
                out,
            );
            out.extend_from_slice(b"\r\ntxt:");
            out.extend_from_slice(text);
            out.extend_from_slice(b"\r\n");
        }
        (Reply::Verbatim(text), Protocol::Resp2) => encode_bulk(text, out),
        (Reply::Map(pairs), Protocol::Resp3) => {
            out.push(b'%');
            push_int(i64::try_from(pairs.len()).unwrap_or(i64::MAX), out);
            out.extend_from_slice(b"\r\n");
            for (key, value) in pairs {
                encode_reply_as(key, protocol, out);
                encode_reply_as(value, protocol, out);
            }
        }
        (Reply::Map(pairs), Protocol::Resp2) => {
            out.push(b'*');
            push_int(
                i64::try_from(pairs.len().saturating_mul(2)).unwrap_or(i64::MAX),
                out,
            );
            out.extend_from_slice(b"\r\n");
            for (key, value) in pairs {
                encode_reply_as(key, protocol, out);
                encode_reply_as(value, protocol, out);
            }
        }
        (Reply::Array(items), _) => {
            out.push(b'*');
            push_int(i64::try_from(items.len()).unwrap_or(i64::MAX), out);
            out.extend_from_slice(b"\r\n");
            for item in items {
                encode_reply_as(item, protocol, out);
            }
        }
        (reply, _) => encode_scalar(reply, out),
    }
}

/// Encodes the replies that RESP2 and RESP3 write alike.
fn encode_scalar(reply: &Reply, out: &mut Vec<u8>) {
    match reply {
        Reply::Status(s) => encode_line(b'+', s, out),
        Reply::Error(e) => encode_line(b'-', e, out),
        Reply::Integer(n) => {
            out.push(b':');
            push_int(*n, out);
            out.extend_from_slice(b"\r\n");
        }
        Reply::Bulk(None) => out.extend_from_slice(b"$-1\r\n"),
        Reply::NilArray => out.extend_from_slice(b"*-1\r\n"),
        Reply::Bulk(Some(value)) => encode_bulk(value, out),
        Reply::Array(_) | Reply::Map(_) | Reply::Verbatim(_) => {
            encode_reply_as(reply, Protocol::Resp2, out);
        }
    }
}

/// Appends a request (an array of bulk strings) to `out`: what a client
/// sends.
pub fn encode_request<A: AsRef<[u8]>>(args: &[A], out: &mut Vec<u8>) {
    out.push(b'*');
    push_int(i64::try_from(args.len()).unwrap_or(i64::MAX), out);
    out.extend_from_slice(b"\r\n");
    for arg in args {
        encode_bulk(arg.as_ref(), out);
    }
}

fn encode_bulk(value: &[u8], out: &mut Vec<u8>) {
    out.push(b'$');
    push_int(i64::try_from(value.len()).unwrap_or(i64::MAX), out);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn encode_line(kind: u8, text: &str, out: &mut Vec<u8>) {
    out.push(kind);
    out.extend(
        text.bytes()
            .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
    out.extend_from_slice(b"\r\n");
}

/// Writes `n` in decimal without going through `fmt` (this runs for every
/// reply).
fn push_int(n: i64, out: &mut Vec<u8>) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = n.unsigned_abs();
    loop {
        at -= 1;
        // `rest % 10 < 10`, so the cast keeps the value.
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if n < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&digits[at..]);
}

/// How deep a reply may nest on the client side: deeper is refused rather
/// than followed (a recursion bound, as redb bounds B-tree depth).
pub const MAX_REPLY_DEPTH: usize = 64;

/// Why a reply from a server cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplyError {
    /// The bytes are not a RESP2 reply.
    #[error("invalid reply from the server: {0}")]
    Invalid(&'static str),
}

/// Decodes one reply from the start of `buf`: `Ok(None)` if more bytes are
/// needed, else the reply and the bytes it took. Used by the shell's
/// client; bounded by `limits` (array and bulk lengths) and
/// [`MAX_REPLY_DEPTH`], like the request parser.
pub fn decode_reply(buf: &[u8], limits: &Limits) -> Result<Option<(Reply, usize)>, ReplyError> {
    decode_at(buf, limits, 0)
}

fn decode_at(
    buf: &[u8],
    limits: &Limits,
    depth: usize,
) -> Result<Option<(Reply, usize)>, ReplyError> {
    if depth > MAX_REPLY_DEPTH {
        return Err(ReplyError::Invalid("nested too deep"));
    }
    let Some(&kind) = buf.first() else {
        return Ok(None);
    };
    let line = header_line(buf, 1, usize::MAX / 4).map_err(|_| ReplyError::Invalid("line"))?;
    let Some((line, next)) = line else {
        return Ok(None);
    };
    let text = || String::from_utf8_lossy(line).into_owned();
    let length = || parse_length(line).ok_or(ReplyError::Invalid("bad length"));
    Ok(Some(match kind {
        b'+' => (Reply::Status(text()), next),
        b'-' => (Reply::Error(text()), next),
        b':' => (Reply::Integer(length()?), next),
        b'$' => {
            let n = length()?;
            if n < 0 {
                return Ok(Some((Reply::Bulk(None), next)));
            }
            let n = usize::try_from(n)
                .ok()
                .filter(|&n| n <= limits.max_bulk_len)
                .ok_or(ReplyError::Invalid("bulk too long"))?;
            let end = next + n + 2;
            let Some(frame) = buf.get(next..end) else {
                return Ok(None);
            };
            if !frame.ends_with(b"\r\n") {
                return Err(ReplyError::Invalid("bulk without CRLF"));
            }
            let value = Bytes::copy_from_slice(frame.get(..n).unwrap_or_default());
            (Reply::Bulk(Some(value)), end)
        }
        b'*' => {
            let n = length()?;
            if n < 0 {
                // A nil array (Redis sends it for timeouts): shown as nil.
                return Ok(Some((Reply::Bulk(None), next)));
            }
            let n = usize::try_from(n)
                .ok()
                .filter(|&n| n <= limits.max_args)
                .ok_or(ReplyError::Invalid("array too long"))?;
            let mut items = Vec::with_capacity(n.min(1024));
            let mut pos = next;
            for _ in 0..n {
                let rest = buf.get(pos..).unwrap_or_default();
                let Some((item, used)) = decode_at(rest, limits, depth + 1)? else {
                    return Ok(None);
                };
                items.push(item);
                pos += used;
            }
            (Reply::Array(items), pos)
        }
        _ => return Err(ReplyError::Invalid("unknown type byte")),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn args(list: &[&str]) -> Vec<Bytes> {
        list.iter()
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect()
    }

    fn parse_all(buf: &[u8]) -> Result<Vec<Vec<Bytes>>, ProtocolError> {
        let mut parser = RequestParser::default();
        let mut out = Vec::new();
        let mut pos = 0;
        loop {
            match parser.parse(&buf[pos..])? {
                Parsed::Incomplete => return Ok(out),
                Parsed::Request { args, consumed } => {
                    out.push(args);
                    pos += consumed;
                }
            }
        }
    }

    fn request(list: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_request(list, &mut out);
        out
    }

    #[test]
    fn parses_an_array_request() {
        let buf = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n";
        assert_eq!(request(&["SET", "k", "hello"]), buf.to_vec());
        let mut parser = RequestParser::default();
        assert_eq!(
            parser.parse(buf).unwrap(),
            Parsed::Request {
                args: args(&["SET", "k", "hello"]),
                consumed: buf.len()
            }
        );
    }

    #[test]
    fn parse_length_reads_the_ends_of_i64() {
        assert_eq!(parse_length(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_length(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_length(b"9223372036854775808"), None);
        assert_eq!(parse_length(b"-9223372036854775809"), None);
        assert_eq!(parse_length(b"-0"), Some(0));
        assert_eq!(parse_length(b"007"), Some(7));
        for bad in [
            &b""[..],
            b"-",
            b"+1",
            b"1 ",
            b"--1",
            b"12345678901234567890",
        ] {
            assert_eq!(parse_length(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn parse_get_finds_a_whole_get_and_nothing_else() {
        let get = request(&["gEt", "key"]);
        let parser = RequestParser::default();
        assert_eq!(parser.parse_get(&get), Some((17..20, get.len())));
        // With what follows it in a pipeline.
        let mut two = get.clone();
        two.extend_from_slice(&request(&["GET", "x"]));
        assert_eq!(parser.parse_get(&two), Some((17..20, get.len())));
        for cut in 0..get.len() {
            assert_eq!(parser.parse_get(&get[..cut]), None, "prefix of {cut}");
        }
        for other in [
            request(&["GET", ""]),
            request(&["GET"]),
            request(&["GET", "k", "v"]),
            request(&["GETSET", "k", "v"]),
            request(&["SET", "k", "v"]),
            b"GET key\r\n".to_vec(),
            b"*2\r\n$3\r\nGET\r\n$3\r\nkeyXY".to_vec(),
            b"*2\r\n$3\r\nGET\r\n$x\r\nk\r\n".to_vec(),
            b"*2\r\n$3\r\nGET\r\n$-1\r\n".to_vec(),
        ] {
            assert_eq!(parser.parse_get(&other), None, "{other:?}");
        }
        // Over the bulk limit: `parse` refuses it, so must `parse_get`.
        let small = RequestParser::new(Limits {
            max_bulk_len: 2,
            ..Limits::default()
        });
        assert_eq!(small.parse_get(&get), None);
        // A request `parse` has begun is `parse`'s to finish.
        let mut begun = RequestParser::default();
        assert_eq!(begun.parse(&get[..6]).unwrap(), Parsed::Incomplete);
        assert_eq!(begun.parse_get(&get), None);
    }

    #[test]
    fn parse_set_finds_a_whole_set_and_nothing_else() {
        let set = request(&["sEt", "key", "value"]);
        let parser = RequestParser::default();
        assert_eq!(parser.parse_set(&set), Some((17..20, 26..31, set.len())));
        // With what follows it in a pipeline, and an empty value.
        let mut two = set.clone();
        two.extend_from_slice(&request(&["SET", "x", "y"]));
        assert_eq!(parser.parse_set(&two), Some((17..20, 26..31, set.len())));
        let empty = request(&["SET", "k", ""]);
        assert_eq!(
            parser.parse_set(&empty),
            Some((17..18, 24..24, empty.len()))
        );
        for cut in 0..set.len() {
            assert_eq!(parser.parse_set(&set[..cut]), None, "prefix of {cut}");
        }
        for other in [
            request(&["SET", "", "v"]),
            request(&["SET", "k"]),
            request(&["SET", "k", "v", "NX"]),
            request(&["SETNX", "k", "v"]),
            request(&["GET", "k"]),
            b"SET key value\r\n".to_vec(),
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nvX".to_vec(),
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$x\r\nv\r\n".to_vec(),
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$-1\r\n".to_vec(),
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n:1\r\n".to_vec(),
        ] {
            assert_eq!(parser.parse_set(&other), None, "{other:?}");
        }
        // Over the bulk limit (the value): `parse` refuses it, so must
        // `parse_set`.
        let small = RequestParser::new(Limits {
            max_bulk_len: 3,
            ..Limits::default()
        });
        assert_eq!(small.parse_set(&set), None);
        // A request `parse` has begun is `parse`'s to finish.
        let mut begun = RequestParser::default();
        assert_eq!(begun.parse(&set[..6]).unwrap(), Parsed::Incomplete);
        assert_eq!(begun.parse_set(&set), None);
    }

    #[test]
    fn every_proper_prefix_is_incomplete() {
        for frame in [
            request(&["SET", "key", "a value with \r\n inside"]),
            request(&["PING"]),
            request(&["GET", ""]),
            b"SET k \"v w\"\r\n".to_vec(),
        ] {
            // A fresh parser per prefix, and one parser fed growing
            // prefixes (as a connection does): both must wait.
            let mut growing = RequestParser::default();
            for cut in 0..frame.len() {
                let prefix = &frame[..cut];
                assert_eq!(
                    RequestParser::default().parse(prefix).unwrap(),
                    Parsed::Incomplete,
                    "{:?}",
                    String::from_utf8_lossy(prefix)
                );
                assert_eq!(growing.parse(prefix).unwrap(), Parsed::Incomplete);
            }
            let Parsed::Request { consumed, .. } = growing.parse(&frame).unwrap() else {
                panic!("complete frame not parsed");
            };
            assert_eq!(consumed, frame.len());
        }
    }

    #[test]
    fn inline_commands_use_the_shell_tokenizer() {
        assert_eq!(
            parse_all(b"set k \"a b\"\r\nGET k\n\r\n").unwrap(),
            vec![args(&["set", "k", "a b"]), args(&["GET", "k"]), vec![]]
        );
        assert_eq!(
            parse_all(b"set \"k\r\n"),
            Err(ProtocolError::UnbalancedQuotes)
        );
    }

    #[test]
    fn empty_arrays_are_skipped_requests() {
        assert_eq!(
            parse_all(b"*0\r\n*-1\r\n").unwrap(),
            vec![args(&[]), args(&[])]
        );
    }

    #[test]
    fn malformed_requests_are_errors() {
        let cases: &[(&[u8], ProtocolError)] = &[
            (b"*x\r\n", ProtocolError::InvalidMultibulkLength),
            (b"*1x\r\n", ProtocolError::InvalidMultibulkLength),
            (b"*\r\n", ProtocolError::InvalidMultibulkLength),
            (
                b"*99999999999999999999\r\n",
                ProtocolError::InvalidMultibulkLength,
            ),
            (b"*2000000\r\n", ProtocolError::InvalidMultibulkLength),
            (b"*1\r\n:1\r\n", ProtocolError::ExpectedBulk(':')),
            (b"*1\r\n$-1\r\n", ProtocolError::InvalidBulkLength),
            (b"*1\r\n$x\r\n", ProtocolError::InvalidBulkLength),
            (b"*1\r\n$+3\r\n", ProtocolError::InvalidBulkLength),
            (b"*1\r\n$999999999999\r\n", ProtocolError::InvalidBulkLength),
            (b"*1\r\n$3\r\nabcde\r\n", ProtocolError::MissingCrlf),
        ];
        for (buf, expected) in cases {
            assert_eq!(
                parse_all(buf).as_ref(),
                Err(expected),
                "{:?}",
                String::from_utf8_lossy(buf)
            );
        }
    }

    #[test]
    fn limits_are_enforced_before_allocating() {
        let limits = Limits {
            max_args: 2,
            max_bulk_len: 4,
            max_inline_len: 8,
        };
        let mut parser = RequestParser::new(limits);
        assert_eq!(
            parser.parse(b"*3\r\n"),
            Err(ProtocolError::InvalidMultibulkLength)
        );
        assert_eq!(
            parser.parse(b"*1\r\n$5\r\n"),
            Err(ProtocolError::InvalidBulkLength)
        );
        assert_eq!(
            parser.parse(b"*1\r\n$4\r\nabcd\r\n").unwrap(),
            Parsed::Request {
                args: args(&["abcd"]),
                consumed: 14
            }
        );
        assert_eq!(
            parser.parse(b"123456789"),
            Err(ProtocolError::InlineTooLong)
        );
        assert_eq!(
            parser.parse(b"*123456789012"),
            Err(ProtocolError::HeaderTooLong)
        );
        // A bulk header line longer than any number is garbage at once.
        assert_eq!(
            RequestParser::default().parse(b"*1\r\n$0000000000000000000000000000000000"),
            Err(ProtocolError::HeaderTooLong)
        );
    }

    #[test]
    fn replies_encode_as_redis_does() {
        let reply = Reply::Array(vec![
            Reply::ok(),
            Reply::Error("ERR bad\r\nthing".into()),
            Reply::Integer(-42),
            Reply::Integer(i64::MIN),
            Reply::nil(),
            Reply::bulk(Bytes::from_static(b"a\r\nb")),
            Reply::Array(vec![]),
        ]);
        let mut out = Vec::new();
        encode_reply(&reply, &mut out);
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            "*7\r\n+OK\r\n-ERR bad  thing\r\n:-42\r\n:-9223372036854775808\r\n$-1\r\n$4\r\na\r\nb\r\n*0\r\n"
        );
        // And the client decodes it back (the error text lost its CRLF).
        let (decoded, used) = decode_reply(&out, &Limits::DEFAULT).unwrap().unwrap();
        assert_eq!(used, out.len());
        let Reply::Array(items) = decoded else {
            panic!("not an array")
        };
        assert_eq!(items[1], Reply::Error("ERR bad  thing".into()));
        assert_eq!(items[3], Reply::Integer(i64::MIN));
        for cut in 0..out.len() {
            assert_eq!(decode_reply(&out[..cut], &Limits::DEFAULT).unwrap(), None);
        }
    }

    #[test]
    fn deep_replies_are_refused() {
        let buf = "*1\r\n".repeat(MAX_REPLY_DEPTH + 2);
        assert!(decode_reply(buf.as_bytes(), &Limits::DEFAULT).is_err());
    }

    fn arb_request() -> impl Strategy<Value = Vec<Vec<u8>>> {
        proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..20), 1..6)
    }

    proptest! {
        #[test]
        fn split_streams_parse_back(
            requests in proptest::collection::vec(arb_request(), 1..8),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
        ) {
            let mut stream = Vec::new();
            for r in &requests {
                encode_request(r, &mut stream);
            }
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
            cuts.push(stream.len());
            cuts.sort_unstable();
            // Feed the stream as a connection would: the buffer grows piece
            // by piece, and parsed requests are removed from its front.
            let mut parser = RequestParser::default();
            let mut buffer: Vec<u8> = Vec::new();
            let mut fed = 0;
            let mut parsed = Vec::new();
            for cut in cuts {
                buffer.extend_from_slice(&stream[fed..cut]);
                fed = cut;
                while let Parsed::Request { args, consumed } = parser.parse(&buffer).unwrap() {
                    parsed.push(args.into_iter().map(|a| a.to_vec()).collect::<Vec<_>>());
                    buffer.drain(..consumed);
                }
            }
            prop_assert!(buffer.is_empty());
            prop_assert_eq!(parsed, requests);
        }

        /// `parse_get` accepts exactly the requests `parse` reads as a
        /// `GET` of a non-empty key, with the same key and length, also
        /// for bytes that only start like one.
        #[test]
        fn parse_get_agrees_with_parse(
            upper in proptest::collection::vec(any::<bool>(), 3),
            tail in proptest::collection::vec(
                prop::sample::select(b"0123\r\n$k-*".to_vec()), 0..24),
        ) {
            let mut buf = b"*2\r\n$3\r\n".to_vec();
            for (c, up) in b"get".iter().zip(&upper) {
                buf.push(if *up { c.to_ascii_uppercase() } else { *c });
            }
            buf.extend_from_slice(b"\r\n$");
            buf.extend_from_slice(&tail);
            let fast = RequestParser::default().parse_get(&buf);
            let general = RequestParser::default().parse(&buf);
            let is_get = match &general {
                Ok(Parsed::Request { args, consumed }) if args.len() == 2
                    && !args[1].is_empty() => Some((args[1].clone(), *consumed)),
                _ => None,
            };
            match (fast, is_get) {
                (None, None) => {}
                (Some((key, consumed)), Some((arg, general_consumed))) => {
                    prop_assert_eq!(&buf[key], &arg[..]);
                    prop_assert_eq!(consumed, general_consumed);
                }
                (fast, _) => prop_assert!(false, "parse_get {:?}, parse {:?}", fast, general),
            }
        }

        /// `parse_set` accepts exactly the requests `parse` reads as a
        /// `SET` of a non-empty key without options, with the same key,
        /// value and length, also for bytes that only start like one.
        #[test]
        fn parse_set_agrees_with_parse(
            upper in proptest::collection::vec(any::<bool>(), 3),
            tail in proptest::collection::vec(
                prop::sample::select(b"0123\r\n$k-*".to_vec()), 0..32),
        ) {
            let mut buf = b"*3\r\n$3\r\n".to_vec();
            for (c, up) in b"set".iter().zip(&upper) {
                buf.push(if *up { c.to_ascii_uppercase() } else { *c });
            }
            buf.extend_from_slice(b"\r\n$");
            buf.extend_from_slice(&tail);
            let fast = RequestParser::default().parse_set(&buf);
            let general = RequestParser::default().parse(&buf);
            let is_set = match &general {
                Ok(Parsed::Request { args, consumed }) if args.len() == 3
                    && !args[1].is_empty() => Some((args[1].clone(), args[2].clone(), *consumed)),
                _ => None,
            };
            match (fast, is_set) {
                (None, None) => {}
                (Some((key, value, consumed)), Some((k, v, general_consumed))) => {
                    prop_assert_eq!(&buf[key], &k[..]);
                    prop_assert_eq!(&buf[value], &v[..]);
                    prop_assert_eq!(consumed, general_consumed);
                }
                (fast, _) => prop_assert!(false, "parse_set {:?}, parse {:?}", fast, general),
            }
        }

        /// `parse_length` reads what the strict `str::parse` it replaced
        /// read (an optional `-`, 1 to 19 digits), and nothing else.
        #[test]
        fn parse_length_is_strict_str_parse(
            line in proptest::collection::vec(
                prop::sample::select(b"0123456789-+ x".to_vec()), 0..22),
        ) {
            let digits = line.strip_prefix(b"-").unwrap_or(&line);
            let strict = (!digits.is_empty()
                && digits.len() <= 19
                && digits.iter().all(u8::is_ascii_digit))
            .then(|| std::str::from_utf8(&line).ok()?.parse::<i64>().ok())
            .flatten();
            prop_assert_eq!(parse_length(&line), strict);
        }

        #[test]
        fn parser_never_panics(buf in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse_all(&buf);
            let _ = decode_reply(&buf, &Limits::DEFAULT);
        }
    }
}
