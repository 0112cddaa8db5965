//! PostgreSQL's protocol 3.0 messages: the frontend's decoded, the
//! backend's encoded.
//!
//! Every message after the first is framed the same way: a one-byte type
//! (`'Q'` a query, `'P'` Parse, ...) and a big-endian `i32` length that
//! counts itself but not the type byte, then the body. The first message
//! of a connection has no type byte (only the length and a 32-bit code
//! telling a startup from an SSL, GSS-encryption or cancel request), since
//! it is what says which protocol the client speaks.
//!
//! ```text
//!   startup:  | len: i32 | code: i32 | body ...              |
//!   others:   | type: u8 | len: i32 | body ...               |   len >= 4
//! ```
//!
//! Strings are NUL-terminated; integers are big-endian (network order).
//!
//! Invariants: decoding never panics and never allocates more than the
//! bytes it was given (a count read from the wire is checked against the
//! bytes left before anything is reserved for it); a length under 4 or
//! over the limit is a [`ProtocolError`], after which the stream cannot be
//! framed and the connection is closed. The fuzz target
//! `fuzz/fuzz_targets/pg_protocol.rs` drives [`split_frame`],
//! [`decode_startup`] and [`FrontendMessage::decode`] with arbitrary
//! bytes.

use bytes::{BufMut, BytesMut};

/// The protocol version pydb speaks: 3.0.
pub const PROTOCOL_VERSION: i32 = 196_608;
/// The code of an SSLRequest (answered `'N'`: no TLS).
pub const SSL_REQUEST_CODE: i32 = 80_877_103;
/// The code of a GSSENCRequest (answered `'N'` too).
pub const GSSENC_REQUEST_CODE: i32 = 80_877_104;
/// The code of a CancelRequest.
pub const CANCEL_REQUEST_CODE: i32 = 80_877_102;
/// The longest first message accepted (PostgreSQL's own limit).
pub const MAX_STARTUP_BYTES: usize = 10_000;

/// The type OIDs pydb reports, from PostgreSQL's `pg_type`.
pub mod oid {
    /// `bool`.
    pub const BOOL: u32 = 16;
    /// `int8` (`bigint`): pydb's INTEGER.
    pub const INT8: u32 = 20;
    /// `int2`.
    pub const INT2: u32 = 21;
    /// `int4`.
    pub const INT4: u32 = 23;
    /// `text`: pydb's TEXT, and a column of no known type.
    pub const TEXT: u32 = 25;
    /// `float4`.
    pub const FLOAT4: u32 = 700;
    /// `float8` (`double precision`): pydb's REAL.
    pub const FLOAT8: u32 = 701;
    /// `varchar`.
    pub const VARCHAR: u32 = 1043;
    /// No type given: the server picks.
    pub const UNSPECIFIED: u32 = 0;
}

/// A message that cannot be framed or decoded: the connection answers
/// with an error and closes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ProtocolError(pub String);

fn err<T>(message: impl Into<String>) -> Result<T, ProtocolError> {
    Err(ProtocolError(message.into()))
}

/// A cursor over a message body.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtocolError> {
        if n > self.bytes.len() {
            return err("message too short for its contents");
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, ProtocolError> {
        Ok(self.take(1)?[0])
    }

    fn i16(&mut self) -> Result<i16, ProtocolError> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self) -> Result<i32, ProtocolError> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A count of following items, each at least `min_item` bytes: checked
    /// against the bytes left, so that no forged count reserves memory.
    fn count(&mut self, min_item: usize) -> Result<usize, ProtocolError> {
        let n = self.i16()?;
        let n = usize::try_from(n).or_else(|_| err("negative count"))?;
        if n.saturating_mul(min_item) > self.bytes.len() {
            return err("count larger than the message");
        }
        Ok(n)
    }

    fn cstr(&mut self) -> Result<String, ProtocolError> {
        let Some(nul) = self.bytes.iter().position(|&b| b == 0) else {
            return err("string without its terminating NUL");
        };
        let s = std::str::from_utf8(&self.bytes[..nul])
            .or_else(|_| err("string is not UTF-8"))?
            .to_owned();
        self.bytes = &self.bytes[nul + 1..];
        Ok(s)
    }

    fn finish(&self) -> Result<(), ProtocolError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            err("bytes left over at the end of the message")
        }
    }
}

/// The first message of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupMessage {
    /// A startup packet: protocol 3.0 and its parameters (`user`,
    /// `database`, `application_name`, ...).
    Startup {
        /// The parameters, in order.
        params: Vec<(String, String)>,
    },
    /// The client asks for TLS (answered `'N'`; it then sends a startup).
    SslRequest,
    /// The client asks for GSS encryption (answered `'N'` too).
    GssEncRequest,
    /// Cancel the query running on the connection with this key.
    Cancel {
        /// The backend's process id (from BackendKeyData).
        pid: i32,
        /// The backend's secret key.
        secret: i32,
    },
}

/// Decodes the body of a first message (after its length).
pub fn decode_startup(body: &[u8]) -> Result<StartupMessage, ProtocolError> {
    let mut r = Reader { bytes: body };
    let code = r.i32()?;
    let message = match code {
        SSL_REQUEST_CODE => StartupMessage::SslRequest,
        GSSENC_REQUEST_CODE => StartupMessage::GssEncRequest,
        CANCEL_REQUEST_CODE => StartupMessage::Cancel {
            pid: r.i32()?,
            secret: r.i32()?,
        },
        PROTOCOL_VERSION => {
            let mut params = Vec::new();
            loop {
                let name = r.cstr()?;
                if name.is_empty() {
                    break;
                }
                params.push((name, r.cstr()?));
            }
            StartupMessage::Startup { params }
        }
        other => {
            return err(format!(
                "unsupported frontend protocol {}.{}: server supports 3.0",
                other >> 16,
                other & 0xffff
            ));
        }
    };
    r.finish()?;
    Ok(message)
}

/// Which object Describe or Close names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A prepared statement (`'S'`).
    Statement,
    /// A portal (`'P'`).
    Portal,
}

/// A message from the client, after the startup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrontendMessage {
    /// `'Q'`: a simple query (one or more statements).
    Query(String),
    /// `'P'`: prepare a statement.
    Parse {
        /// Its name (`""`: the unnamed statement).
        name: String,
        /// The SQL text.
        query: String,
        /// Parameter types given by the client (0: unspecified).
        param_types: Vec<u32>,
    },
    /// `'B'`: bind parameters to a statement, making a portal.
    Bind {
        /// The portal's name.
        portal: String,
        /// The statement's name.
        statement: String,
        /// Format codes of the parameters (0 text, 1 binary): none means
        /// all text, one applies to all.
        param_formats: Vec<i16>,
        /// The parameter values (`None`: NULL).
        params: Vec<Option<Vec<u8>>>,
        /// Format codes of the result columns, same convention.
        result_formats: Vec<i16>,
    },
    /// `'D'`: describe a statement or portal.
    Describe(Target, String),
    /// `'E'`: run a portal, at most `max_rows` rows (0: all).
    Execute {
        /// The portal.
        portal: String,
        /// The most rows to send before PortalSuspended (0: no limit).
        max_rows: i32,
    },
    /// `'C'`: forget a statement or portal.
    Close(Target, String),
    /// `'S'`: end of an extended-protocol batch.
    Sync,
    /// `'H'`: send what is buffered.
    Flush,
    /// `'X'`: the client leaves.
    Terminate,
    /// `'p'`: a password or SASL message, read in the context of the
    /// authentication exchange.
    Password(Vec<u8>),
}

impl FrontendMessage {
    /// Decodes the body of a message of type `tag`.
    pub fn decode(tag: u8, body: &[u8]) -> Result<Self, ProtocolError> {
        let mut r = Reader { bytes: body };
        let message = match tag {
            b'Q' => FrontendMessage::Query(r.cstr()?),
            b'P' => {
                let name = r.cstr()?;
                let query = r.cstr()?;
                let n = r.count(4)?;
                let param_types = (0..n)
                    .map(|_| r.i32().map(|t| t as u32))
                    .collect::<Result<_, _>>()?;
                FrontendMessage::Parse {
                    name,
                    query,
                    param_types,
                }
            }
            b'B' => {
                let portal = r.cstr()?;
                let statement = r.cstr()?;
                let n = r.count(2)?;
                let param_formats = (0..n).map(|_| r.i16()).collect::<Result<_, _>>()?;
                let n = r.count(4)?;
                let mut params = Vec::with_capacity(n);
                for _ in 0..n {
                    let len = r.i32()?;
                    params.push(match len {
                        -1 => None,
                        len => {
                            let len = usize::try_from(len).or_else(|_| err("negative length"))?;
                            Some(r.take(len)?.to_vec())
                        }
                    });
                }
                let n = r.count(2)?;
                let result_formats = (0..n).map(|_| r.i16()).collect::<Result<_, _>>()?;
                FrontendMessage::Bind {
                    portal,
                    statement,
                    param_formats,
                    params,
                    result_formats,
                }
            }
            b'D' | b'C' => {
                let target = match r.u8()? {
                    b'S' => Target::Statement,
                    b'P' => Target::Portal,
                    _ => return err("Describe/Close target is neither 'S' nor 'P'"),
                };
                let name = r.cstr()?;
                if tag == b'D' {
                    FrontendMessage::Describe(target, name)
                } else {
                    FrontendMessage::Close(target, name)
                }
            }
            b'E' => FrontendMessage::Execute {
                portal: r.cstr()?,
                max_rows: r.i32()?,
            },
            b'S' => FrontendMessage::Sync,
            b'H' => FrontendMessage::Flush,
            b'X' => FrontendMessage::Terminate,
            b'p' => FrontendMessage::Password(r.take(body.len())?.to_vec()),
            other => {
                return err(format!(
                    "unknown message type {:?}",
                    char::from(other).escape_default().to_string()
                ));
            }
        };
        r.finish()?;
        Ok(message)
    }
}

/// One framed message in a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Its type byte.
    pub tag: u8,
    /// Its body (after the length).
    pub body: &'a [u8],
    /// The bytes it takes in the buffer, type and length included.
    pub total: usize,
}

/// Splits one framed message off the front of `buf`: `Ok(None)` when it is
/// not complete yet. A length under 4 or over `max_len` is an error.
pub fn split_frame(buf: &[u8], max_len: usize) -> Result<Option<Frame<'_>>, ProtocolError> {
    let Some(header) = buf.get(..5) else {
        return Ok(None);
    };
    let tag = header[0];
    let len = frame_len(&header[1..5], max_len)?;
    let total = len + 1;
    Ok(buf.get(5..total).map(|body| Frame { tag, body, total }))
}

/// The length field of a frame (`len` bytes, including itself), checked:
/// returns the whole length (>= 4).
pub fn frame_len(field: &[u8], max_len: usize) -> Result<usize, ProtocolError> {
    let [a, b, c, d] = field else {
        return err("a length field is 4 bytes");
    };
    let len = i32::from_be_bytes([*a, *b, *c, *d]);
    let len = usize::try_from(len).or_else(|_| err(format!("invalid message length {len}")))?;
    if len < 4 {
        return err(format!("invalid message length {len}"));
    }
    if len > max_len {
        return err(format!(
            "message of {len} bytes is over the limit of {max_len} bytes"
        ));
    }
    Ok(len)
}

/// Appends backend messages to an output buffer. Each method writes one
/// whole message.
#[derive(Debug, Default)]
pub struct Encoder {
    /// The bytes to send.
    pub out: BytesMut,
}

impl Encoder {
    /// Writes a message of type `tag` whose body `body` writes.
    fn message(&mut self, tag: u8, body: impl FnOnce(&mut BytesMut)) {
        self.out.put_u8(tag);
        let at = self.out.len();
        self.out.put_i32(0);
        body(&mut self.out);
        let len = i32::try_from(self.out.len() - at).unwrap_or(i32::MAX);
        self.out[at..at + 4].copy_from_slice(&len.to_be_bytes());
    }

    /// `'R'` Authentication with a code and a payload (0 Ok, 10 SASL, 11
    /// SASLContinue, 12 SASLFinal).
    pub fn authentication(&mut self, code: i32, payload: &[u8]) {
        self.message(b'R', |b| {
            b.put_i32(code);
            b.put_slice(payload);
        });
    }

    /// `'S'` ParameterStatus.
    pub fn parameter_status(&mut self, name: &str, value: &str) {
        self.message(b'S', |b| {
            put_cstr(b, name);
            put_cstr(b, value);
        });
    }

    /// `'K'` BackendKeyData: the key that cancels this connection's query.
    pub fn backend_key_data(&mut self, pid: i32, secret: i32) {
        self.message(b'K', |b| {
            b.put_i32(pid);
            b.put_i32(secret);
        });
    }

    /// `'Z'` ReadyForQuery with the transaction status `I`, `T` or `E`.
    pub fn ready_for_query(&mut self, status: u8) {
        self.message(b'Z', |b| b.put_u8(status));
    }

    /// `'T'` RowDescription: (name, type OID, format code) per column.
    pub fn row_description(&mut self, columns: &[(String, u32, i16)]) {
        self.message(b'T', |b| {
            b.put_i16(i16::try_from(columns.len()).unwrap_or(i16::MAX));
            for (name, type_oid, format) in columns {
                put_cstr(b, name);
                b.put_i32(0); // table OID: none
                b.put_i16(0); // column number: none
                b.put_u32(*type_oid);
                b.put_i16(type_size(*type_oid));
                b.put_i32(-1); // type modifier: none
                b.put_i16(*format);
            }
        });
    }

    /// `'D'` DataRow (`None`: NULL).
    pub fn data_row(&mut self, values: &[Option<Vec<u8>>]) {
        self.message(b'D', |b| {
            b.put_i16(i16::try_from(values.len()).unwrap_or(i16::MAX));
            for value in values {
                match value {
                    None => b.put_i32(-1),
                    Some(v) => {
                        b.put_i32(i32::try_from(v.len()).unwrap_or(i32::MAX));
                        b.put_slice(v);
                    }
                }
            }
        });
    }

    /// `'C'` CommandComplete with its tag (`SELECT 3`, `INSERT 0 1`, ...).
    pub fn command_complete(&mut self, tag: &str) {
        self.message(b'C', |b| put_cstr(b, tag));
    }

    /// `'I'` EmptyQueryResponse.
    pub fn empty_query(&mut self) {
        self.message(b'I', |_| {});
    }

    /// `'E'` ErrorResponse: severity, SQLSTATE, message, and the 1-based
    /// character position in the query when known.
    pub fn error(&mut self, severity: &str, code: &str, text: &str, position: Option<usize>) {
        self.message(b'E', |b| {
            for (field, value) in [
                (b'S', severity),
                (b'V', severity),
                (b'C', code),
                (b'M', text),
            ] {
                b.put_u8(field);
                put_cstr(b, value);
            }
            if let Some(position) = position {
                b.put_u8(b'P');
                put_cstr(b, &position.to_string());
            }
            b.put_u8(0);
        });
    }

    /// `'1'` ParseComplete.
    pub fn parse_complete(&mut self) {
        self.message(b'1', |_| {});
    }

    /// `'2'` BindComplete.
    pub fn bind_complete(&mut self) {
        self.message(b'2', |_| {});
    }

    /// `'3'` CloseComplete.
    pub fn close_complete(&mut self) {
        self.message(b'3', |_| {});
    }

    /// `'n'` NoData: the statement returns no rows.
    pub fn no_data(&mut self) {
        self.message(b'n', |_| {});
    }

    /// `'s'` PortalSuspended: Execute's row limit was reached.
    pub fn portal_suspended(&mut self) {
        self.message(b's', |_| {});
    }

    /// `'t'` ParameterDescription: the type OID of each parameter.
    pub fn parameter_description(&mut self, types: &[u32]) {
        self.message(b't', |b| {
            b.put_i16(i16::try_from(types.len()).unwrap_or(i16::MAX));
            for t in types {
                b.put_u32(*t);
            }
        });
    }
}

fn put_cstr(b: &mut BytesMut, s: &str) {
    // A NUL inside would end the string early and shift every field
    // after it: cut it there instead.
    let s = s.split('\0').next().unwrap_or("");
    b.put_slice(s.as_bytes());
    b.put_u8(0);
}

/// `pg_type.typlen` of the types pydb reports (-1: variable length).
fn type_size(type_oid: u32) -> i16 {
    match type_oid {
        oid::BOOL => 1,
        oid::INT2 => 2,
        oid::INT4 | oid::FLOAT4 => 4,
        oid::INT8 | oid::FLOAT8 => 8,
        _ => -1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn startup_with_parameters() {
        let mut body = PROTOCOL_VERSION.to_be_bytes().to_vec();
        body.extend_from_slice(b"user\0alice\0database\0db\0\0");
        assert_eq!(
            decode_startup(&body),
            Ok(StartupMessage::Startup {
                params: vec![
                    ("user".into(), "alice".into()),
                    ("database".into(), "db".into())
                ]
            })
        );
        assert_eq!(
            decode_startup(&SSL_REQUEST_CODE.to_be_bytes()),
            Ok(StartupMessage::SslRequest)
        );
        let mut cancel = CANCEL_REQUEST_CODE.to_be_bytes().to_vec();
        cancel.extend_from_slice(&7i32.to_be_bytes());
        cancel.extend_from_slice(&(-9i32).to_be_bytes());
        assert_eq!(
            decode_startup(&cancel),
            Ok(StartupMessage::Cancel { pid: 7, secret: -9 })
        );
        // Protocol 2.0, and a parameter without its value.
        assert!(decode_startup(&0x0002_0000i32.to_be_bytes()).is_err());
        let mut cut = PROTOCOL_VERSION.to_be_bytes().to_vec();
        cut.extend_from_slice(b"user\0");
        assert!(decode_startup(&cut).is_err());
    }

    #[test]
    fn frames_split_and_lengths_checked() {
        let bytes = frame(b'Q', b"SELECT 1\0");
        assert_eq!(split_frame(&bytes[..7], 100), Ok(None));
        let frame = split_frame(&bytes, 100).unwrap().unwrap();
        assert_eq!(
            frame,
            Frame {
                tag: b'Q',
                body: &b"SELECT 1\0"[..],
                total: bytes.len()
            }
        );
        assert_eq!(
            FrontendMessage::decode(frame.tag, frame.body),
            Ok(FrontendMessage::Query("SELECT 1".into()))
        );
        // Over the limit, under 4, negative.
        assert!(split_frame(&bytes, 8).is_err());
        assert!(split_frame(&[b'Q', 0, 0, 0, 3], 100).is_err());
        assert!(split_frame(&[b'Q', 0xff, 0xff, 0xff, 0xff], 100).is_err());
    }

    #[test]
    fn bind_with_null_and_binary_parameters() {
        let mut body = b"p1\0s1\0".to_vec();
        body.extend_from_slice(&1i16.to_be_bytes());
        body.extend_from_slice(&1i16.to_be_bytes());
        body.extend_from_slice(&2i16.to_be_bytes());
        body.extend_from_slice(&8i32.to_be_bytes());
        body.extend_from_slice(&42i64.to_be_bytes());
        body.extend_from_slice(&(-1i32).to_be_bytes());
        body.extend_from_slice(&0i16.to_be_bytes());
        assert_eq!(
            FrontendMessage::decode(b'B', &body),
            Ok(FrontendMessage::Bind {
                portal: "p1".into(),
                statement: "s1".into(),
                param_formats: vec![1],
                params: vec![Some(42i64.to_be_bytes().to_vec()), None],
                result_formats: vec![],
            })
        );
        // A parameter longer than the message, and a forged count.
        let mut long = b"\0\0".to_vec();
        long.extend_from_slice(&0i16.to_be_bytes());
        long.extend_from_slice(&1i16.to_be_bytes());
        long.extend_from_slice(&1000i32.to_be_bytes());
        assert!(FrontendMessage::decode(b'B', &long).is_err());
        let mut forged = b"\0\0".to_vec();
        forged.extend_from_slice(&i16::MAX.to_be_bytes());
        assert!(FrontendMessage::decode(b'B', &forged).is_err());
    }

    #[test]
    fn unknown_types_and_trailing_bytes_are_errors() {
        assert!(FrontendMessage::decode(b'?', b"").is_err());
        assert!(FrontendMessage::decode(b'S', b"x").is_err());
        assert!(FrontendMessage::decode(b'D', b"Xname\0").is_err());
        assert!(FrontendMessage::decode(b'Q', b"no nul").is_err());
        assert_eq!(
            FrontendMessage::decode(b'E', b"\0\0\0\0\x05"),
            Ok(FrontendMessage::Execute {
                portal: String::new(),
                max_rows: 5
            })
        );
    }

    #[test]
    fn encoded_messages_carry_their_length() {
        let mut e = Encoder::default();
        e.ready_for_query(b'I');
        e.command_complete("SELECT 1");
        assert_eq!(&e.out[..6], &[b'Z', 0, 0, 0, 5, b'I']);
        assert_eq!(&e.out[6..11], &[b'C', 0, 0, 0, 13]);
        assert_eq!(&e.out[11..], b"SELECT 1\0");
    }
}
