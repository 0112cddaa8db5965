//! One PostgreSQL client connection: startup, authentication, then the
//! simple and extended query protocols over a [`pydb_query::Session`].
//!
//! ```text
//!   startup ──► [SSLRequest → 'N'] ──► StartupMessage
//!     ──► auth: trust (no password) | SCRAM-SHA-256 (SASL, Continue, Final)
//!     ──► AuthenticationOk, ParameterStatus*, BackendKeyData, ReadyForQuery 'I'
//!   loop:
//!     Query ──► per statement: RowDescription, DataRow*, CommandComplete
//!               (or EmptyQueryResponse / ErrorResponse) ──► ReadyForQuery
//!     Parse / Bind / Describe / Execute / Close ──► their replies
//!     Sync ──► ReadyForQuery;   Flush ──► write what is buffered
//!     Terminate ──► close
//! ```
//!
//! ## The extended protocol
//!
//! `Parse` turns SQL into a named *prepared statement*; `Bind` gives its
//! parameters values and makes a *portal* (a statement ready to run, with
//! the formats its results go out in); `Execute` runs a portal, at most
//! `max_rows` rows at a time: the remaining rows wait in the portal, and
//! `PortalSuspended` tells the client to ask again. Replies are buffered
//! until `Sync` or `Flush`. After an error, every message up to the next
//! `Sync` is skipped, so that the client's batch fails as a whole, and
//! `Sync` then reports the transaction status.
//!
//! A prepared statement is a [`pydb_query::Prepared`]: it keeps its plan
//! between executions, and an autocommitted point select by primary key
//! runs without a transaction (`Session::execute_prepared`). Every
//! result, once its rows are encoded, is handed back to the session
//! (`Session::recycle`), whose next point select fills that row list and
//! row instead of allocating them, as a client library's statement keeps
//! its row between steps.
//!
//! ## Transaction status
//!
//! `ReadyForQuery` carries `I` (idle), `T` (inside BEGIN) or `E` (inside a
//! failed transaction: only ROLLBACK is accepted), the session's
//! [`TxnStatus`].
//!
//! ## Cancellation
//!
//! A client cancels from a *new* connection that sends the key of this
//! one (BackendKeyData). The server sets this connection's flag, which is
//! checked between statements and between the rows sent: the query then
//! ends with SQLSTATE 57014. A statement that is still computing its rows
//! finishes them first (the executor does not look at the flag).
//!
//! Invariants: a message over the length limit, or one that does not
//! decode, gets one ErrorResponse (08P01) and the connection closes; no
//! byte from the client can make this code panic.

use std::collections::HashMap;
use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use pydb::Db;
use pydb_query::lexer::{TokenKind, tokenize};
use pydb_query::{DataType, Output, ResultColumn, Rows, Session, TxnStatus, Value};

use super::codec::{
    self, Encoder, FrontendMessage, MAX_STARTUP_BYTES, ProtocolError, StartupMessage, Target, oid,
};
use super::scram;
use super::{PgShared, SERVER_VERSION};

/// Output bytes that are written at once while rows are sent.
const OUTPUT_FLUSH_AT: usize = 64 << 10;

/// Why a connection ended.
#[derive(Debug)]
pub(crate) enum Ended {
    /// Terminate, or the client closed the socket.
    Closed,
    /// A cancel request (answered by closing, as PostgreSQL does).
    Cancel,
    /// A protocol violation or failed authentication (the client was told).
    Refused(String),
}

/// A statement prepared with Parse.
#[derive(Debug, Clone)]
struct Prepared {
    /// `None`: the empty query.
    statement: Option<pydb_query::Prepared>,
    /// One type OID per parameter.
    param_types: Vec<u32>,
}

/// A statement bound to parameter values with Bind.
#[derive(Debug)]
struct Portal {
    prepared: Prepared,
    params: Vec<Value>,
    result_formats: Vec<i16>,
    /// After the first Execute: the rows not sent yet and their columns.
    pending: Option<PendingRows>,
    /// After an Execute that ran to the end: its command tag, repeated
    /// (without running again) if the portal is executed again.
    finished: Option<String>,
}

/// A result being sent: its rows stay in place (encoded from where they
/// are), so that the whole result can be handed back to the session once
/// sent.
#[derive(Debug)]
struct PendingRows {
    rows: Rows,
    /// The first row not sent yet.
    next: usize,
}

/// An error to send as ErrorResponse.
#[derive(Debug)]
struct SqlError {
    code: &'static str,
    message: String,
    position: Option<usize>,
}

impl SqlError {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        SqlError {
            code,
            message: message.into(),
            position: None,
        }
    }

    /// From the SQL layer's error, with the position (1-based, in
    /// characters of `sql`) of a syntax error.
    fn from_query(e: &pydb_query::Error, sql: &str) -> Self {
        match e {
            pydb_query::Error::Syntax { message, span, .. } => SqlError {
                code: e.sqlstate(),
                message: message.clone(),
                position: sql
                    .get(..span.start)
                    .map(|before| before.chars().count() + 1),
            },
            _ => SqlError::new(e.sqlstate(), e.to_string()),
        }
    }

    fn cancelled() -> Self {
        SqlError::new("57014", "canceling statement due to user request")
    }
}

/// One connection's state.
pub(crate) struct PgConnection {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    out: Encoder,
    shared: Arc<PgShared>,
    db: Db,
    pid: i32,
    secret: i32,
    cancel: Arc<AtomicBool>,
    statements: HashMap<String, Prepared>,
    portals: HashMap<String, Portal>,
}

impl PgConnection {
    pub(crate) fn new(
        stream: TcpStream,
        writer: TcpStream,
        db: Db,
        shared: Arc<PgShared>,
        pid: i32,
        secret: i32,
        cancel: Arc<AtomicBool>,
    ) -> Self {
        PgConnection {
            reader: BufReader::new(stream),
            writer,
            out: Encoder::default(),
            shared,
            db,
            pid,
            secret,
            cancel,
            statements: HashMap::new(),
            portals: HashMap::new(),
        }
    }

    /// Serves the connection until it ends.
    pub(crate) fn serve(mut self) -> std::io::Result<Ended> {
        let user = match self.startup()? {
            Ok(user) => user,
            Err(ended) => return Ok(ended),
        };
        if let Some(ended) = self.authenticate(&user)? {
            return Ok(ended);
        }
        self.out.authentication(0, &[]);
        for (name, value) in [
            ("server_version", SERVER_VERSION),
            ("server_encoding", "UTF8"),
            ("client_encoding", "UTF8"),
            ("DateStyle", "ISO, MDY"),
            ("IntervalStyle", "postgres"),
            ("TimeZone", "UTC"),
            ("integer_datetimes", "on"),
            ("standard_conforming_strings", "on"),
            ("is_superuser", "on"),
            ("session_authorization", user.as_str()),
            ("application_name", ""),
        ] {
            self.out.parameter_status(name, value);
        }
        self.out.backend_key_data(self.pid, self.secret);
        let mut session = self.db.sql_session();
        self.out.ready_for_query(status_byte(session.status()));
        self.flush()?;
        self.query_loop(&mut session)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.out.out.is_empty() {
            self.writer.write_all(&self.out.out)?;
            self.out.out.clear();
        }
        Ok(())
    }

    /// Sends an error that ends the connection.
    fn refuse(&mut self, code: &str, message: &str) -> std::io::Result<Ended> {
        self.out.error("FATAL", code, message, None);
        self.flush()?;
        Ok(Ended::Refused(message.to_owned()))
    }

    /// Reads the first message (after an SSL request, the second): the
    /// user name, or why the connection ends.
    fn startup(&mut self) -> std::io::Result<Result<String, Ended>> {
        loop {
            let mut len = [0u8; 4];
            if !read_exact_or_eof(&mut self.reader, &mut len)? {
                return Ok(Err(Ended::Closed));
            }
            let message = codec::frame_len(&len, MAX_STARTUP_BYTES)
                .and_then(|len| {
                    let body = read_body(&mut self.reader, len - 4)?;
                    Ok(body)
                })
                .and_then(|body| codec::decode_startup(&body));
            let message = match message {
                Ok(message) => message,
                Err(ProtocolError(why)) => return self.refuse("08P01", &why).map(Err),
            };
            match message {
                StartupMessage::SslRequest | StartupMessage::GssEncRequest => {
                    self.writer.write_all(b"N")?;
                }
                StartupMessage::Cancel { pid, secret } => {
                    self.shared.cancel(pid, secret);
                    return Ok(Err(Ended::Cancel));
                }
                StartupMessage::Startup { params } => {
                    let user = params
                        .iter()
                        .find(|(name, _)| name == "user")
                        .map(|(_, value)| value.clone());
                    return match user {
                        Some(user) => Ok(Ok(user)),
                        None => self
                            .refuse(
                                "28000",
                                "no PostgreSQL user name specified in startup packet",
                            )
                            .map(Err),
                    };
                }
            }
        }
    }

    /// Trust without a password; SCRAM-SHA-256 with one. `Some`: refused.
    fn authenticate(&mut self, user: &str) -> std::io::Result<Option<Ended>> {
        let Some(secret) = self.shared.scram.clone() else {
            return Ok(None);
        };
        let failed = format!("password authentication failed for user \"{user}\"");
        let mut mechanisms = scram::MECHANISM.as_bytes().to_vec();
        mechanisms.extend_from_slice(b"\0\0");
        self.out.authentication(10, &mechanisms);
        self.flush()?;
        // SASLInitialResponse: mechanism, then the client's first message.
        let Some(initial) = self.read_password()? else {
            return Ok(Some(Ended::Closed));
        };
        let client_first = match sasl_initial(&initial) {
            Some(first) => first,
            None => return self.refuse("28P01", &failed).map(Some),
        };
        let (exchange, server_first) = match scram::Exchange::start(&secret, client_first) {
            Ok(started) => started,
            Err(_) => return self.refuse("28P01", &failed).map(Some),
        };
        self.out.authentication(11, server_first.as_bytes());
        self.flush()?;
        let Some(client_final) = self.read_password()? else {
            return Ok(Some(Ended::Closed));
        };
        match exchange.finish(&secret, &client_final) {
            Ok(server_final) => {
                self.out.authentication(12, server_final.as_bytes());
                Ok(None)
            }
            Err(e) => {
                tracing::debug!(pid = self.pid, error = %e, "authentication failed");
                // As conn.rs for AUTH: a pause makes guessing slow.
                std::thread::sleep(std::time::Duration::from_millis(100));
                self.refuse("28P01", &failed).map(Some)
            }
        }
    }

    /// Reads a `'p'` message during authentication; `None`: the client left.
    fn read_password(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        match self.read_message()? {
            Ok(Some(FrontendMessage::Password(bytes))) => Ok(Some(bytes)),
            Ok(None | Some(FrontendMessage::Terminate)) => Ok(None),
            Ok(Some(_)) => {
                self.refuse("08P01", "expected a password message")?;
                Ok(None)
            }
            Err(ProtocolError(why)) => {
                self.refuse("08P01", &why)?;
                Ok(None)
            }
        }
    }

    /// Reads one framed message; `Ok(None)` at the end of the stream.
    fn read_message(&mut self) -> std::io::Result<Result<Option<FrontendMessage>, ProtocolError>> {
        let mut header = [0u8; 5];
        if !read_exact_or_eof(&mut self.reader, &mut header)? {
            return Ok(Ok(None));
        }
        let max = self.shared.config.max_message_bytes;
        let len = match codec::frame_len(&header[1..], max) {
            Ok(len) => len,
            Err(e) => return Ok(Err(e)),
        };
        let body = match read_body(&mut self.reader, len - 4) {
            Ok(body) => body,
            Err(e) => return Ok(Err(e)),
        };
        Ok(FrontendMessage::decode(header[0], &body).map(Some))
    }

    fn query_loop(&mut self, session: &mut Session) -> std::io::Result<Ended> {
        // After an error in the extended protocol: skip until Sync.
        let mut skipping = false;
        loop {
            let message = match self.read_message()? {
                Ok(Some(message)) => message,
                Ok(None) => return Ok(Ended::Closed),
                Err(ProtocolError(why)) => return self.refuse("08P01", &why),
            };
            if skipping && !matches!(message, FrontendMessage::Sync | FrontendMessage::Terminate) {
                continue;
            }
            let outcome = match message {
                FrontendMessage::Terminate => return Ok(Ended::Closed),
                FrontendMessage::Query(sql) => {
                    self.simple_query(session, &sql);
                    self.out.ready_for_query(status_byte(session.status()));
                    self.flush()?;
                    Ok(())
                }
                FrontendMessage::Sync => {
                    skipping = false;
                    // The unnamed portal lives until the end of the batch.
                    self.portals.remove("");
                    self.out.ready_for_query(status_byte(session.status()));
                    self.flush()?;
                    Ok(())
                }
                FrontendMessage::Flush => {
                    self.flush()?;
                    Ok(())
                }
                FrontendMessage::Password(_) => Err(SqlError::new(
                    "08P01",
                    "unexpected password message after authentication",
                )),
                FrontendMessage::Parse {
                    name,
                    query,
                    param_types,
                } => self.parse(name, &query, param_types),
                FrontendMessage::Bind {
                    portal,
                    statement,
                    param_formats,
                    params,
                    result_formats,
                } => self.bind(portal, &statement, &param_formats, params, result_formats),
                FrontendMessage::Describe(target, name) => self.describe(session, target, &name),
                FrontendMessage::Execute { portal, max_rows } => {
                    self.execute(session, &portal, max_rows)
                }
                FrontendMessage::Close(target, name) => {
                    match target {
                        Target::Statement => self.statements.remove(&name).map(drop),
                        Target::Portal => self.portals.remove(&name).map(drop),
                    };
                    self.out.close_complete();
                    Ok(())
                }
            };
            if let Err(e) = outcome {
                self.out.error("ERROR", e.code, &e.message, e.position);
                skipping = true;
            }
        }
    }

    /// A Query message: every statement in turn, stopping at the first
    /// error.
    fn simple_query(&mut self, session: &mut Session, sql: &str) {
        self.cancel.store(false, Ordering::SeqCst);
        let statements = match pydb_query::parser::parse(sql) {
            Ok(statements) => statements,
            Err(e) => {
                // The session's own parse puts an open transaction in the
                // failed state, as any failed statement does.
                let _ = session.execute(sql);
                let e = SqlError::from_query(&e, sql);
                self.out.error("ERROR", e.code, &e.message, e.position);
                return;
            }
        };
        if statements.is_empty() {
            self.out.empty_query();
            return;
        }
        for statement in &statements {
            if self.cancel.load(Ordering::SeqCst) {
                let e = SqlError::cancelled();
                self.out.error("ERROR", e.code, &e.message, None);
                return;
            }
            let outcome = session
                .run(statement)
                .map_err(|e| SqlError::from_query(&e, sql))
                .and_then(|output| self.send_output(output));
            match outcome {
                Ok(sent) => session.recycle(sent),
                Err(e) => {
                    self.out.error("ERROR", e.code, &e.message, e.position);
                    return;
                }
            }
        }
    }

    /// Sends a statement's whole output (simple protocol):
    /// RowDescription, every row and CommandComplete. Returns the output,
    /// sent, for the session to reuse.
    fn send_output(&mut self, output: Output) -> Result<Output, SqlError> {
        match output {
            Output::Rows(rows) => {
                self.row_description(&rows.columns, &[]);
                let mut pending = PendingRows { rows, next: 0 };
                self.send_rows(&mut pending, &[], 0)?;
                Ok(Output::Rows(pending.rows))
            }
            other => {
                self.out.command_complete(&command_tag(&other));
                Ok(other)
            }
        }
    }

    /// Sends rows of `pending` from its next one; `true` when every row is
    /// sent (then CommandComplete), `false` when `max_rows` (0: all) ran
    /// out first (then PortalSuspended, and the rest waits).
    fn send_rows(
        &mut self,
        pending: &mut PendingRows,
        formats: &[i16],
        max_rows: i32,
    ) -> Result<bool, SqlError> {
        let limit = u64::try_from(max_rows).ok().filter(|&n| n > 0);
        let mut this_time = 0u64;
        let types: Vec<u32> = pending.rows.columns.iter().map(type_oid).collect();
        loop {
            if limit.is_some_and(|limit| this_time >= limit) {
                if pending.next >= pending.rows.rows.len() {
                    break;
                }
                self.out.portal_suspended();
                return Ok(false);
            }
            let Some(row) = pending.rows.rows.get(pending.next) else {
                break;
            };
            pending.next += 1;
            if self.cancel.load(Ordering::SeqCst) {
                return Err(SqlError::cancelled());
            }
            let values = row
                .iter()
                .enumerate()
                .map(|(i, value)| {
                    let ty = types.get(i).copied().unwrap_or(oid::TEXT);
                    encode_value(value, ty, format_of(formats, i))
                })
                .collect::<Result<Vec<_>, _>>()?;
            self.out.data_row(&values);
            this_time += 1;
            // Rows go out as they are encoded, not all at the end: memory
            // stays bounded, and a client that does not read blocks this
            // write (and can still cancel).
            if self.out.out.len() >= OUTPUT_FLUSH_AT {
                self.flush()
                    .map_err(|e| SqlError::new("08006", format!("sending rows: {e}")))?;
            }
        }
        self.out.command_complete(&format!("SELECT {this_time}"));
        Ok(true)
    }

    fn row_description(&mut self, columns: &[ResultColumn], formats: &[i16]) {
        let described: Vec<(String, u32, i16)> = columns
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.clone(), type_oid(c), format_of(formats, i)))
            .collect();
        self.out.row_description(&described);
    }

    fn parse(&mut self, name: String, sql: &str, given: Vec<u32>) -> Result<(), SqlError> {
        if !name.is_empty() && self.statements.contains_key(&name) {
            return Err(SqlError::new(
                "42P05",
                format!("prepared statement \"{name}\" already exists"),
            ));
        }
        let mut statements =
            pydb_query::parser::parse(sql).map_err(|e| SqlError::from_query(&e, sql))?;
        if statements.len() > 1 {
            return Err(SqlError::new(
                "42601",
                "cannot insert multiple commands into a prepared statement",
            ));
        }
        let count = parameter_count(sql).max(given.len());
        let param_types = (0..count)
            .map(|i| match given.get(i) {
                Some(&t) if t != oid::UNSPECIFIED => t,
                _ => oid::TEXT,
            })
            .collect();
        self.statements.insert(
            name,
            Prepared {
                statement: statements.pop().map(pydb_query::Prepared::new),
                param_types,
            },
        );
        self.out.parse_complete();
        Ok(())
    }

    fn bind(
        &mut self,
        portal: String,
        statement: &str,
        formats: &[i16],
        params: Vec<Option<Vec<u8>>>,
        result_formats: Vec<i16>,
    ) -> Result<(), SqlError> {
        let prepared = self.statements.get(statement).cloned().ok_or_else(|| {
            SqlError::new(
                "26000",
                format!("prepared statement \"{statement}\" does not exist"),
            )
        })?;
        if params.len() != prepared.param_types.len() {
            return Err(SqlError::new(
                "08P01",
                format!(
                    "bind message supplies {} parameters, but prepared statement \"{statement}\" requires {}",
                    params.len(),
                    prepared.param_types.len()
                ),
            ));
        }
        if formats.len() > 1 && formats.len() != params.len() {
            return Err(SqlError::new("08P01", "wrong number of parameter formats"));
        }
        let values = params
            .iter()
            .enumerate()
            .map(|(i, bytes)| match bytes {
                None => Ok(Value::Null),
                Some(bytes) => decode_param(bytes, prepared.param_types[i], format_of(formats, i))
                    .map_err(|why| SqlError::new("22P02", format!("parameter ${}: {why}", i + 1))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.portals.insert(
            portal,
            Portal {
                prepared,
                params: values,
                result_formats,
                pending: None,
                finished: None,
            },
        );
        self.out.bind_complete();
        Ok(())
    }

    fn describe(
        &mut self,
        session: &mut Session,
        target: Target,
        name: &str,
    ) -> Result<(), SqlError> {
        let (prepared, formats) = match target {
            Target::Statement => {
                let prepared = self.statements.get(name).cloned().ok_or_else(|| {
                    SqlError::new(
                        "26000",
                        format!("prepared statement \"{name}\" does not exist"),
                    )
                })?;
                self.out.parameter_description(&prepared.param_types);
                (prepared, Vec::new())
            }
            Target::Portal => {
                let portal = self.portals.get(name).ok_or_else(|| {
                    SqlError::new("34000", format!("portal \"{name}\" does not exist"))
                })?;
                (portal.prepared.clone(), portal.result_formats.clone())
            }
        };
        let columns = match &prepared.statement {
            None => None,
            Some(statement) => session
                .describe(statement.statement())
                .map_err(|e| SqlError::new(e.sqlstate(), e.to_string()))?,
        };
        match columns {
            Some(columns) => self.row_description(&columns, &formats),
            None => self.out.no_data(),
        }
        Ok(())
    }

    fn execute(
        &mut self,
        session: &mut Session,
        name: &str,
        max_rows: i32,
    ) -> Result<(), SqlError> {
        let mut portal = self
            .portals
            .remove(name)
            .ok_or_else(|| SqlError::new("34000", format!("portal \"{name}\" does not exist")))?;
        let formats = portal.result_formats.clone();
        let outcome = self.execute_portal(session, &mut portal, &formats, max_rows);
        self.portals.insert(name.to_owned(), portal);
        outcome
    }

    fn execute_portal(
        &mut self,
        session: &mut Session,
        portal: &mut Portal,
        formats: &[i16],
        max_rows: i32,
    ) -> Result<(), SqlError> {
        if let Some(tag) = &portal.finished {
            self.out.command_complete(tag);
            return Ok(());
        }
        let mut pending = match portal.pending.take() {
            // A suspended portal: the next rows.
            Some(pending) => pending,
            None => {
                self.cancel.store(false, Ordering::SeqCst);
                let Some(statement) = &portal.prepared.statement else {
                    self.out.empty_query();
                    return Ok(());
                };
                let output = session
                    .execute_prepared(statement, &portal.params)
                    .map_err(|e| SqlError::new(e.sqlstate(), e.to_string()))?;
                match output {
                    Output::Rows(rows) => PendingRows { rows, next: 0 },
                    other => {
                        let tag = command_tag(&other);
                        self.out.command_complete(&tag);
                        portal.finished = Some(tag);
                        return Ok(());
                    }
                }
            }
        };
        if self.send_rows(&mut pending, formats, max_rows)? {
            portal.finished = Some("SELECT 0".into());
            session.recycle(Output::Rows(pending.rows));
        } else {
            portal.pending = Some(pending);
        }
        Ok(())
    }
}

/// Reads exactly `buf.len()` bytes; `false` at a clean end of stream
/// before the first byte.
fn read_exact_or_eof(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Reads a body of `len` bytes, growing the buffer only as bytes arrive
/// (a length field alone does not make the server allocate).
fn read_body(reader: &mut impl Read, len: usize) -> Result<Vec<u8>, ProtocolError> {
    let mut body = Vec::new();
    let got = reader
        .take(len as u64)
        .read_to_end(&mut body)
        .map_err(|e| ProtocolError(format!("reading a message: {e}")))?;
    if got != len {
        return Err(ProtocolError("connection closed inside a message".into()));
    }
    Ok(body)
}

/// The client's first SCRAM message out of a SASLInitialResponse.
fn sasl_initial(bytes: &[u8]) -> Option<&[u8]> {
    let nul = bytes.iter().position(|&b| b == 0)?;
    if &bytes[..nul] != scram::MECHANISM.as_bytes() {
        return None;
    }
    let rest = bytes.get(nul + 1..)?;
    let len = i32::from_be_bytes(rest.get(..4)?.try_into().ok()?);
    let data = rest.get(4..)?;
    (usize::try_from(len).ok()? == data.len()).then_some(data)
}

/// The number of parameters a statement takes: the largest `$n`, or the
/// number of `?`, whichever is more.
fn parameter_count(sql: &str) -> usize {
    let Ok(tokens) = tokenize(sql) else {
        return 0;
    };
    let mut numbered = 0u32;
    let mut anonymous = 0u32;
    for token in tokens {
        match token.kind {
            TokenKind::Parameter(Some(n)) => numbered = numbered.max(n),
            TokenKind::Parameter(None) => anonymous += 1,
            _ => {}
        }
    }
    numbered.max(anonymous) as usize
}

/// The CommandComplete tag of a statement without rows (PostgreSQL's
/// INSERT tag still carries the OID field of old, always 0).
fn command_tag(output: &Output) -> String {
    match output {
        Output::Rows(rows) => format!("SELECT {}", rows.rows.len()),
        Output::Affected {
            verb: "INSERT",
            count,
        } => format!("INSERT 0 {count}"),
        Output::Affected { verb, count } => format!("{verb} {count}"),
        Output::Done(tag) => (*tag).to_owned(),
    }
}

fn status_byte(status: TxnStatus) -> u8 {
    match status {
        TxnStatus::Idle => b'I',
        TxnStatus::InTransaction => b'T',
        TxnStatus::Failed => b'E',
    }
}

/// The format code of column or parameter `i`: none given means text, one
/// applies to all.
fn format_of(formats: &[i16], i: usize) -> i16 {
    match formats {
        [] => 0,
        [one] => *one,
        many => many.get(i).copied().unwrap_or(0),
    }
}

/// The type OID of a result column.
fn type_oid(column: &ResultColumn) -> u32 {
    match column.ty {
        Some(DataType::Integer) => oid::INT8,
        Some(DataType::Real) => oid::FLOAT8,
        Some(DataType::Boolean) => oid::BOOL,
        Some(DataType::Text) | None => oid::TEXT,
    }
}

/// PostgreSQL's text form of a float8.
fn float_text(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else {
        f.to_string()
    }
}

/// A value as the column's type in `format` (0 text, 1 binary); `None`
/// is NULL. SQL values need not match their column's declared type (as in
/// SQLite), so binary output converts where no information is lost.
fn encode_value(value: &Value, ty: u32, format: i16) -> Result<Option<Vec<u8>>, SqlError> {
    let text = |value: &Value| match value {
        Value::Null => None,
        Value::Integer(i) => Some(i.to_string()),
        Value::Real(f) => Some(float_text(*f)),
        Value::Text(t) => Some(t.to_string()),
        Value::Boolean(b) => Some(if *b { "t" } else { "f" }.to_string()),
    };
    if format == 0 {
        return Ok(text(value).map(String::into_bytes));
    }
    if format != 1 {
        return Err(SqlError::new(
            "08P01",
            format!("unknown format code {format}"),
        ));
    }
    let mismatch = || {
        SqlError::new(
            "22P03",
            format!("value {value} does not fit its column's binary type (OID {ty})"),
        )
    };
    Ok(Some(match (ty, value) {
        (_, Value::Null) => return Ok(None),
        (oid::INT8, Value::Integer(i)) => i.to_be_bytes().to_vec(),
        (oid::INT8, Value::Boolean(b)) => i64::from(*b).to_be_bytes().to_vec(),
        (oid::INT8, Value::Real(f)) if f.fract() == 0.0 && f.abs() < 9.0e18 => {
            (*f as i64).to_be_bytes().to_vec()
        }
        (oid::FLOAT8, Value::Real(f)) => f.to_be_bytes().to_vec(),
        (oid::FLOAT8, Value::Integer(i)) => (*i as f64).to_be_bytes().to_vec(),
        (oid::BOOL, Value::Boolean(b)) => vec![u8::from(*b)],
        (oid::BOOL, Value::Integer(i)) => vec![u8::from(*i != 0)],
        (oid::TEXT, v) => text(v).unwrap_or_default().into_bytes(),
        _ => return Err(mismatch()),
    }))
}

/// A parameter value sent in `format` for a parameter of type `ty`.
fn decode_param(bytes: &[u8], ty: u32, format: i16) -> Result<Value, String> {
    if format == 1 {
        let fixed = |n: usize| -> Result<&[u8], String> {
            if bytes.len() == n {
                Ok(bytes)
            } else {
                Err(format!("expected {n} bytes, got {}", bytes.len()))
            }
        };
        return Ok(match ty {
            oid::INT8 => Value::Integer(i64::from_be_bytes(
                fixed(8)?.try_into().map_err(|_| "bad int8")?,
            )),
            oid::INT4 => Value::Integer(i64::from(i32::from_be_bytes(
                fixed(4)?.try_into().map_err(|_| "bad int4")?,
            ))),
            oid::INT2 => Value::Integer(i64::from(i16::from_be_bytes(
                fixed(2)?.try_into().map_err(|_| "bad int2")?,
            ))),
            oid::FLOAT8 => Value::Real(f64::from_be_bytes(
                fixed(8)?.try_into().map_err(|_| "bad float8")?,
            )),
            oid::FLOAT4 => Value::Real(f64::from(f32::from_be_bytes(
                fixed(4)?.try_into().map_err(|_| "bad float4")?,
            ))),
            oid::BOOL => Value::Boolean(fixed(1)?[0] != 0),
            _ => Value::Text(
                std::str::from_utf8(bytes)
                    .map_err(|_| "text is not UTF-8")?
                    .into(),
            ),
        });
    }
    if format != 0 {
        return Err(format!("unknown format code {format}"));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| "text is not UTF-8")?;
    let invalid = |what: &str| format!("invalid input syntax for type {what}: \"{text}\"");
    Ok(match ty {
        oid::INT8 | oid::INT4 | oid::INT2 => {
            Value::Integer(text.trim().parse().map_err(|_| invalid("bigint"))?)
        }
        oid::FLOAT8 | oid::FLOAT4 => Value::Real(
            text.trim()
                .parse()
                .map_err(|_| invalid("double precision"))?,
        ),
        oid::BOOL => match text.trim().to_ascii_lowercase().as_str() {
            "t" | "true" | "on" | "yes" | "y" | "1" => Value::Boolean(true),
            "f" | "false" | "off" | "no" | "n" | "0" => Value::Boolean(false),
            _ => return Err(invalid("boolean")),
        },
        _ => Value::Text(text.into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_counted_by_number_and_by_question_mark() {
        assert_eq!(parameter_count("SELECT 1"), 0);
        assert_eq!(parameter_count("SELECT $2, $1"), 2);
        assert_eq!(parameter_count("SELECT ?, ?, ?"), 3);
        assert_eq!(parameter_count("SELECT '$1'"), 0);
    }

    #[test]
    fn values_round_trip_through_binary_and_text() {
        for (value, ty) in [
            (Value::Integer(-5), oid::INT8),
            (Value::Real(2.5), oid::FLOAT8),
            (Value::Boolean(true), oid::BOOL),
            (Value::Text("héllo".into()), oid::TEXT),
        ] {
            for format in [0, 1] {
                let bytes = encode_value(&value, ty, format).unwrap().unwrap();
                assert_eq!(decode_param(&bytes, ty, format), Ok(value.clone()));
            }
        }
        assert_eq!(encode_value(&Value::Null, oid::INT8, 1).unwrap(), None);
        assert!(encode_value(&Value::Text("x".into()), oid::INT8, 1).is_err());
        assert!(decode_param(b"12x", oid::INT8, 0).is_err());
        assert!(decode_param(&[0; 3], oid::INT8, 1).is_err());
        assert_eq!(
            decode_param(&7i32.to_be_bytes(), oid::INT4, 1),
            Ok(Value::Integer(7))
        );
    }

    #[test]
    fn sasl_initial_response_is_checked() {
        let mut ok = b"SCRAM-SHA-256\0".to_vec();
        ok.extend_from_slice(&3i32.to_be_bytes());
        ok.extend_from_slice(b"abc");
        assert_eq!(sasl_initial(&ok), Some(&b"abc"[..]));
        let mut wrong_len = b"SCRAM-SHA-256\0".to_vec();
        wrong_len.extend_from_slice(&9i32.to_be_bytes());
        assert_eq!(sasl_initial(&wrong_len), None);
        assert_eq!(sasl_initial(b"PLAIN\0\0\0\0\0"), None);
    }
}
