//! One client connection: read requests, answer them in order. A
//! connection belongs to one event loop (`server/event_loop.rs`), which
//! calls `Connection::service` when its socket is ready.
//!
//! ```text
//!   read() ──► input buffer ──► RequestParser ──► Command ──► Reply
//!                 ▲                (every complete         │
//!                 │                 request in it)         ▼
//!                 └───────── write() once ◄──── output buffer
//! ```
//!
//! The connection parses every complete request the input buffer holds
//! before writing, so a pipeline of N requests costs one `read` and one
//! `write`, and replies leave in request order because they are appended
//! in that order. The buffers are reused from request to request. A plain
//! `GET` (the commonest request) is recognised in the input buffer itself
//! (`RequestParser::parse_get`) and its value encoded straight into the
//! output buffer (`Connection::answer_get`): no copy of the request, no
//! argument list, no `Command` and no `Reply` of its own; anything else
//! about it (`MULTI`, before `AUTH`, a malformed request, a failed read)
//! takes the general path. The
//! socket is non-blocking: a read or write that would wait returns, and
//! the connection remembers where it stopped.
//!
//! ## Pipelined SETs share one commit, across clients
//!
//! A run of plain `SET`s is not applied at once: it waits in
//! `pending_sets`, and at the end of the loop's turn the loop commits the
//! pending `SET`s of every client it served as one transaction: one
//! append to the log and, with `--sync always`, one `fsync` for all of
//! them (Redis writes and syncs its append-only file once per event-loop
//! turn, in `beforeSleep`). Only then are their `+OK`s appended, so no
//! reply leaves before its write is durable. This is safe because no
//! reply to any of them has left yet: the clients cannot tell them apart
//! from `SET`s that happened to land together. A run ends at any other
//! command of the same connection, which first applies that connection's
//! run (so that it sees every `SET` before it). If the turn's commit fails
//! as a whole (say one value is over the engine's limit), nothing of it
//! was written, and each connection applies its own `SET`s one by one so
//! that each gets its own reply.
//!
//! A plain `SET key value` is recognised in the input buffer itself
//! (`RequestParser::parse_set`), as a `GET` is, and its key and value are
//! copied straight into `pending_sets` (`server/pending.rs`): no copy of
//! the request, no argument list and no `Command`. Any other form of it
//! (options, inline, `MULTI`, before `AUTH`) goes through `Command::parse`
//! and, if it is a plain `SET` after all, lands in the same place.
//!
//! ## Backpressure and output limits
//!
//! A client can pipeline requests whose replies are far larger than they
//! are (a hundred `GET`s of a 1 MB value is 2 KB in, 100 MB out). Answering
//! everything buffered before writing would hold all those replies in
//! memory while a client that never reads keeps them there. So the
//! connection stops answering once `OUTPUT_FLUSH_AT` (64 KiB) reply bytes
//! wait, and writes them; when the socket takes no more, it stops reading
//! from that client too and asks its loop for writability: the client's
//! own TCP window then stops its requests. The replies held are at most
//! that threshold plus one reply. Three limits end a client that does not
//! read (Redis's `client-output-buffer-limit` and a write timeout), checked
//! by the loop's timer (`Connection::check_timers`):
//! - a hard limit: a reply that makes the waiting bytes exceed it closes
//!   the client at once;
//! - a soft limit and a time: an output buffer over the soft limit for
//!   that long closes the client;
//! - a write timeout: no reply byte accepted for that long closes it.
//!
//! Each closing is logged once, as a warning (rate-limited across clients,
//! see [`super::ratelog`]).
//!
//! ## Password guessing
//!
//! The n-th wrong `AUTH` of a connection is answered after n * 10 ms (a
//! hold: the connection reads and sends nothing until then, while its
//! loop serves the others), and
//! the [`MAX_AUTH_FAILURES`]-th closes the connection: guessing costs a
//! reconnection every ten tries and half a second per connection.
//!
//! Invariants:
//! - at most `OUTPUT_FLUSH_AT` plus one reply's bytes wait in the output
//!   buffer, and a reply over the hard limit is never sent;
//! - the input buffer never exceeds [`ServerConfig::max_query_bytes`]
//!   (a request that would need more is refused and the connection closed);
//! - after a [`ProtocolError`](super::resp::ProtocolError) the connection
//!   sends one error reply and closes: the stream can no longer be framed;
//! - until `AUTH` succeeds (when a password is set) the only commands
//!   served are `AUTH` and `QUIT`, and requests are held to
//!   [`Limits::UNAUTHENTICATED`].
//!
//! [`ServerConfig::max_query_bytes`]: super::ServerConfig::max_query_bytes

use std::fmt;
use std::io::{ErrorKind, Read, Write};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use mio::net::TcpStream;
use parking_lot::Mutex;

use super::pending::PendingSets;
use super::resp::{self, Limits, Parsed, Protocol, RequestParser};
use super::{ClientInfo, ServerConfig, Shared};
use crate::command::{ClientCommand, Command};
use crate::info::{Host, Section};
use crate::keyscan::CursorTable;
use crate::multi::{MultiState, Queued, Route};
use crate::reply::Reply;
use pydb::{Db, Isolation};

/// The input buffer's starting size, and the size it shrinks back to after
/// a large request.
const INITIAL_BUFFER: usize = 16 << 10;

/// A connection is closed after this many wrong passwords.
pub const MAX_AUTH_FAILURES: u32 = 10;

/// The pause after the n-th wrong password of a connection: n times this.
const AUTH_FAILURE_DELAY: std::time::Duration = std::time::Duration::from_millis(10);

/// The longest run of pipelined `SET`s applied as one batch.
const MAX_PENDING_SETS: usize = 1024;

/// Once this many reply bytes are waiting, the connection stops answering
/// and writes them before it parses the next request (see the module doc,
/// "Backpressure").
const OUTPUT_FLUSH_AT: usize = 64 << 10;

/// Why a connection ended normally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The client closed its side.
    ClientClosed,
    /// The client sent `QUIT`.
    Quit,
    /// A request broke the protocol or a limit.
    ProtocolError,
    /// The client was idle longer than `--timeout`.
    IdleTimeout,
    /// The replies waiting for the client went over the hard output
    /// limit, or stayed over the soft one for too long.
    OutputLimit,
    /// The client took no reply bytes for longer than the write timeout.
    WriteTimeout,
    /// The client sent [`MAX_AUTH_FAILURES`] wrong passwords.
    TooManyAuthFailures,
}

impl fmt::Display for Ended {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Ended::ClientClosed => "client closed the connection",
            Ended::Quit => "quit",
            Ended::ProtocolError => "protocol error",
            Ended::IdleTimeout => "idle timeout",
            Ended::OutputLimit => "output buffer limit reached",
            Ended::WriteTimeout => "write timeout",
            Ended::TooManyAuthFailures => "too many failed AUTH",
        })
    }
}

/// What to do after a request.
enum Flow {
    /// Read more requests.
    Continue,
    /// Write the replies, then answer the requests still buffered.
    Flush,
    /// Write the replies, then close.
    Close(Ended),
}

/// The state of one connection.
pub(crate) struct Connection {
    stream: TcpStream,
    /// `output[..sent]` has been written to the socket already.
    sent: usize,
    /// Since when more than the soft output limit waits.
    over_soft_since: Option<Instant>,
    /// `service` stopped for backpressure (the socket took no more of the
    /// replies) with requests still buffered or unread. See
    /// [`Connection::needs_service`].
    backpressured: bool,
    /// The last time the socket took reply bytes (the write timeout).
    last_progress: Instant,
    /// The last time the client sent bytes (the idle timeout).
    last_read: Instant,
    /// After a wrong password: nothing is read or sent until then.
    held_until: Option<Instant>,
    /// The client closed its sending side (read returned 0).
    read_closed: bool,
    /// The connection closes once its replies are sent, for this reason.
    closing: Option<Ended>,
    /// The last `answer_buffered` parsed every complete request.
    parsed_all: bool,
    db: Db,
    shared: Arc<Shared>,
    info: Arc<ClientInfo>,
    parser: RequestParser,
    authenticated: bool,
    /// Received bytes: `input[start..end]` is not parsed yet.
    input: Vec<u8>,
    start: usize,
    end: usize,
    /// Encoded replies waiting for the next write.
    output: Vec<u8>,
    /// The run of plain `SET`s not applied yet (see the module doc).
    pending_sets: PendingSets,
    /// This connection's `SCAN` table cursors (see [`crate::keyscan`]).
    scan_cursors: Mutex<CursorTable>,
    /// Wrong passwords sent on this connection.
    auth_failures: u32,
    /// RESP2 until the client asks for RESP3 with `HELLO 3`.
    protocol: Protocol,
    /// The server's settings as of this connection's last request.
    config: Arc<ServerConfig>,
    /// `MULTI`'s queue and `WATCH`'s keys (see [`crate::multi`]).
    multi: MultiState,
    /// Whether the request being answered is a write command (counted in
    /// `acked_writes` once answered without an error).
    answering_write: bool,
}

/// What a connection adds to `INFO`, `CONFIG GET` and `SCAN`: the server's
/// sections and settings, and its own cursor table.
struct ConnectionHost<'a> {
    shared: &'a Shared,
    scan_cursors: &'a Mutex<CursorTable>,
}

impl Host for ConnectionHost<'_> {
    fn info_sections(&self) -> Vec<Section> {
        self.shared.info_sections()
    }

    fn config(&self) -> Vec<(&'static str, String)> {
        self.shared.config_params()
    }

    fn scan_cursors(&self) -> &Mutex<CursorTable> {
        self.scan_cursors
    }

    fn acked_writes(&self) -> Option<u64> {
        Some(self.shared.acked_writes.load(Ordering::Relaxed))
    }
}

impl Connection {
    pub(crate) fn new(
        stream: TcpStream,
        db: Db,
        shared: Arc<Shared>,
        info: Arc<ClientInfo>,
    ) -> Self {
        let config = shared.config();
        let authenticated = config.requirepass.is_none();
        let parser = RequestParser::new(limits_for(&config, authenticated));
        let now = Instant::now();
        Self {
            stream,
            sent: 0,
            over_soft_since: None,
            backpressured: false,
            last_progress: now,
            last_read: now,
            held_until: None,
            read_closed: false,
            closing: None,
            parsed_all: false,
            db,
            shared,
            info,
            parser,
            authenticated,
            input: vec![0; INITIAL_BUFFER],
            start: 0,
            end: 0,
            output: Vec::with_capacity(INITIAL_BUFFER),
            pending_sets: PendingSets::default(),
            scan_cursors: Mutex::new(CursorTable::default()),
            auth_failures: 0,
            protocol: Protocol::Resp2,
            config,
            multi: MultiState::new(),
            answering_write: false,
        }
    }

    /// Serves what the client's socket has for us (called by the event
    /// loop on a readiness event, and when a hold ends): first writes the
    /// replies still waiting; then, unless the client is not reading them,
    /// answers every complete buffered request and reads more, until the
    /// socket has nothing more (`WouldBlock`, or a read shorter than the
    /// room it had: edge-triggered readiness reports a socket when bytes
    /// arrive, so it must be read dry).
    ///
    /// Plain `SET`s stay in `pending_sets`: the event loop applies the
    /// pending `SET`s of all its connections as one batch after the
    /// turn's reads ([`Connection::take_pending_sets`]).
    ///
    /// `hung_up`: the readiness event said the client closed its side
    /// (EPOLLRDHUP); then the socket is read to its end even after a
    /// short read, or the end would never be seen (no new edge follows).
    pub(crate) fn service(&mut self, hung_up: bool) -> std::io::Result<()> {
        if self.closing.is_some() || self.held_until.is_some() {
            return Ok(());
        }
        self.refresh_config();
        if !self.write_some()? {
            self.backpressured = true;
            return Ok(());
        }
        self.backpressured = false;
        // Whether the last read came back short: the socket was emptied
        // then, and bytes that arrive later raise a new readiness edge
        // (epoll reports every arrival), so reading again only to hear
        // `WouldBlock` would cost a system call per request.
        let mut drained = false;
        loop {
            let flow = self.answer_buffered();
            if self.output.len() > self.config.output_hard_limit {
                self.warn_output_limit("hard");
                self.output.clear();
                self.sent = 0;
                self.closing = Some(Ended::OutputLimit);
                return Ok(());
            }
            match flow {
                Flow::Close(reason) => {
                    self.closing = Some(reason);
                    return Ok(());
                }
                // Backpressure: write before answering more; a client
                // that does not read is not read from either.
                Flow::Flush => {
                    if !self.write_some()? {
                        self.backpressured = true;
                        return Ok(());
                    }
                    continue;
                }
                Flow::Continue => {}
            }
            if self.held_until.is_some() || self.read_closed || drained {
                return Ok(());
            }
            if let Some(reason) = self.make_room() {
                self.closing = Some(reason);
                return Ok(());
            }
            let free = self.input.get_mut(self.end..).unwrap_or_default();
            let room = free.len();
            match self.stream.read(free) {
                Ok(0) => {
                    self.read_closed = true;
                    return Ok(());
                }
                Ok(n) => {
                    drained = n < room && !hung_up;
                    self.end += n;
                    self.last_read = Instant::now();
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes as much of the waiting replies as the socket takes now.
    /// Returns whether all of them left. A held connection (after a wrong
    /// password) writes nothing until its hold ends.
    pub(crate) fn write_some(&mut self) -> std::io::Result<bool> {
        if self.held_until.is_some() {
            return Ok(false);
        }
        while let Some(pending) = self.output.get(self.sent..).filter(|p| !p.is_empty()) {
            match self.stream.write(pending) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.sent += n;
                    self.last_progress = Instant::now();
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        self.output.clear();
        self.sent = 0;
        self.over_soft_since = None;
        // After a large reply, give the memory back.
        if self.output.capacity() > 4 * OUTPUT_FLUSH_AT {
            self.output = Vec::with_capacity(INITIAL_BUFFER);
        }
        Ok(true)
    }

    /// Whether replies are waiting for the socket to take them.
    pub(crate) fn has_output(&self) -> bool {
        self.sent < self.output.len()
    }

    /// Whether the loop must serve this connection again without waiting
    /// for an event: `service` stopped for backpressure, leaving requests
    /// in the input buffer (or unread in the socket), and the waiting
    /// replies have since left through a later [`Connection::write_some`].
    /// No readiness edge reports that case: the client sent its bytes
    /// long ago, and with no output left the loop stops watching for
    /// writability. Without this the connection stalled for good, holding
    /// its client's requests unanswered (and escaping the write timeout and
    /// the output limits, which count only waiting replies).
    pub(crate) fn needs_service(&self) -> bool {
        self.backpressured && !self.has_output() && self.closing.is_none()
    }

    /// Why the connection is over, once nothing is left to send: it was
    /// told to close, or the client closed its side and every request it
    /// sent has been answered.
    pub(crate) fn finished(&self) -> Option<Ended> {
        if self.has_output() || self.held_until.is_some() {
            return None;
        }
        if let Some(reason) = self.closing {
            return Some(reason);
        }
        let answered_all = self.pending_sets.is_empty() && self.parsed_all;
        (self.read_closed && answered_all).then_some(Ended::ClientClosed)
    }

    /// The checks that depend on time (run by the event loop a few times
    /// a second, and when a hold is due): the end of a hold, the idle
    /// timeout, the write timeout and the soft output limit. Returns why
    /// the connection must close now, if it must; `Ok(true)` when the hold
    /// just ended, so that the loop serves the connection again.
    pub(crate) fn check_timers(&mut self, now: Instant) -> std::result::Result<bool, Ended> {
        if let Some(until) = self.held_until {
            if now < until {
                return Ok(false);
            }
            self.held_until = None;
            return Ok(true);
        }
        if self.has_output() {
            // The memory held for this client is the whole buffer (it is
            // freed only once all of it has left), sent part included.
            if self.output.len() > self.config.output_soft_limit {
                let since = *self.over_soft_since.get_or_insert(now);
                if now.duration_since(since) >= self.config.output_soft_time {
                    self.warn_output_limit("soft");
                    return Err(Ended::OutputLimit);
                }
            } else {
                self.over_soft_since = None;
            }
            if self
                .config
                .write_timeout
                .is_some_and(|t| now.duration_since(self.last_progress) >= t)
            {
                return Err(Ended::WriteTimeout);
            }
        } else if self
            .config
            .timeout
            .is_some_and(|t| now.duration_since(self.last_read) >= t)
        {
            return Err(Ended::IdleTimeout);
        }
        Ok(false)
    }

    /// When this connection's hold (after a wrong password) ends.
    pub(crate) fn held_until(&self) -> Option<Instant> {
        self.held_until
    }

    /// The socket, to register with the event loop's poll.
    pub(crate) fn stream_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// The client's id.
    pub(crate) fn id(&self) -> u64 {
        self.info.id
    }

    /// The `SET`s waiting for the turn's commit.
    pub(crate) fn pending_sets(&self) -> &PendingSets {
        &self.pending_sets
    }

    /// After the turn's commit: appends the replies of this connection's
    /// pending `SET`s (`+OK` each, when the commit that held them was
    /// written) or applies them on their own (when it failed as a whole,
    /// so that each gets its own reply, as without batching).
    pub(crate) fn take_pending_sets(&mut self, batch_written: bool) {
        let n = self.pending_sets.len();
        if n == 0 {
            return;
        }
        if !batch_written {
            self.apply_pending_sets();
            return;
        }
        self.shared
            .acked_writes
            .fetch_add(n as u64, Ordering::Relaxed);
        for _ in 0..n {
            self.output.extend_from_slice(b"+OK\r\n");
        }
        self.pending_sets.clear();
    }

    /// Picks up settings changed by `CONFIG SET` (from any connection).
    fn refresh_config(&mut self) {
        let now = self.shared.config();
        if !Arc::ptr_eq(&now, &self.config) {
            self.parser.set_limits(limits_for(&now, self.authenticated));
            self.config = now;
        }
    }

    /// Logs that this client is closed for its output buffer.
    fn warn_output_limit(&self, which: &str) {
        let config = &self.config;
        let Some(suppressed) = self.shared.noisy_log.admit("output limit") else {
            return;
        };
        tracing::warn!(
            suppressed,
            id = self.info.id,
            peer = %self.info.addr,
            waiting = self.output.len(),
            hard = config.output_hard_limit,
            soft = config.output_soft_limit,
            soft_seconds = config.output_soft_time.as_secs(),
            "closing client: replies over the {which} output buffer limit"
        );
    }

    /// Parses and answers every complete request in the input buffer.
    /// The run of plain `SET`s at the end stays pending: the event loop
    /// applies it with the other connections' (see the module doc).
    fn answer_buffered(&mut self) -> Flow {
        self.parsed_all = false;
        let mut commands = 0;
        let flow = loop {
            let pending = self.input.get(self.start..self.end).unwrap_or_default();
            // The fast paths of a plain `GET` (see `answer_get`) and a
            // plain `SET` (set aside, as `answer` would).
            let fast = self.authenticated && !self.multi.in_multi();
            if fast && let Some((key, consumed)) = self.parser.parse_get(pending) {
                let key = self.start + key.start..self.start + key.end;
                self.start += consumed;
                commands += 1;
                self.answer_get(key);
                if self.output.len() >= OUTPUT_FLUSH_AT {
                    break Flow::Flush;
                }
                continue;
            }
            if fast && let Some((key, value, consumed)) = self.parser.parse_set(pending) {
                self.pending_sets.push(
                    pending.get(key).unwrap_or_default(),
                    pending.get(value).unwrap_or_default(),
                );
                self.start += consumed;
                commands += 1;
                if self.pending_sets.len() >= MAX_PENDING_SETS {
                    self.apply_pending_sets();
                    if self.output.len() >= OUTPUT_FLUSH_AT {
                        break Flow::Flush;
                    }
                }
                continue;
            }
            match self.parser.parse(pending) {
                Ok(Parsed::Incomplete) => {
                    self.parsed_all = true;
                    break Flow::Continue;
                }
                Ok(Parsed::Request { args, consumed }) => {
                    self.start += consumed;
                    if args.is_empty() {
                        continue;
                    }
                    commands += 1;
                    if let Flow::Close(reason) = self.answer(&args) {
                        break Flow::Close(reason);
                    }
                    // A wrong password holds the connection: nothing more
                    // is answered (nor sent) until the hold ends.
                    if self.held_until.is_some() {
                        break Flow::Continue;
                    }
                    if self.output.len() >= OUTPUT_FLUSH_AT {
                        break Flow::Flush;
                    }
                }
                Err(e) => {
                    tracing::debug!(id = self.info.id, error = %e, "protocol error");
                    self.apply_pending_sets();
                    resp::encode_reply(&e.to_reply(), &mut self.output);
                    break Flow::Close(Ended::ProtocolError);
                }
            }
        };
        if commands > 0 {
            self.shared
                .total_commands
                .fetch_add(commands, Ordering::Relaxed);
        }
        flow
    }

    /// Makes room in the input buffer for the next read: moves the
    /// unparsed bytes to the front, grows it up to the query limit, or
    /// refuses a request that would not fit.
    fn make_room(&mut self) -> Option<Ended> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            // After a large request, give the memory back.
            if self.input.len() > 4 * INITIAL_BUFFER {
                self.input = vec![0; INITIAL_BUFFER];
            }
        }
        if self.end < self.input.len() {
            return None;
        }
        if self.start > 0 {
            self.input.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            return None;
        }
        let limit = self.config.max_query_bytes;
        if self.input.len() >= limit {
            let reply = Reply::Error(format!(
                "ERR Protocol error: request larger than the query buffer limit ({limit} bytes)"
            ));
            self.apply_pending_sets();
            resp::encode_reply(&reply, &mut self.output);
            return Some(Ended::ProtocolError);
        }
        let grown = self.input.len().saturating_mul(2).min(limit);
        self.input.resize(grown, 0);
        None
    }

    /// Answers a `GET` whose key is `self.input[key]`, found by
    /// [`RequestParser::parse_get`] outside `MULTI` once authenticated:
    /// the same reply as `answer` would give through `Command::parse`,
    /// `MultiState::route` and `Command::execute_in`, without building the
    /// request's arguments, the command or a reply of its own. A read
    /// that fails takes that general path (`Command::execute_in`), so that
    /// its error reply is written in one place.
    fn answer_get(&mut self, key: std::ops::Range<usize>) {
        self.answering_write = false;
        // A GET must see the SETs sent before it.
        self.apply_pending_sets();
        let key = self.input.get(key).unwrap_or_default();
        match self.db.get(key) {
            Ok(value) => {
                resp::encode_reply_as(&Reply::Bulk(value), self.protocol, &mut self.output);
            }
            Err(_) => {
                let command = Command::Get {
                    key: Bytes::copy_from_slice(key),
                };
                self.answer_command(Ok(command));
            }
        }
    }

    /// Answers one request into the output buffer.
    fn answer(&mut self, args: &[Bytes]) -> Flow {
        self.answering_write = args
            .first()
            .is_some_and(|name| Command::is_write_name(name));
        let command = match Command::parse(args) {
            // Not while queueing for EXEC: then a SET is queued.
            Ok(Command::Set {
                name: "set",
                key,
                value,
                condition: None,
                expiry: crate::command::ExpiryArg::None,
                get: false,
            }) if self.authenticated && !self.multi.in_multi() => {
                self.pending_sets.push(&key, &value);
                if self.pending_sets.len() >= MAX_PENDING_SETS {
                    self.apply_pending_sets();
                }
                return Flow::Continue;
            }
            other => other,
        };
        // Any other reply must come after the SETs sent before it, and
        // any other command must see them.
        self.apply_pending_sets();
        if !self.authenticated {
            return self.answer_command(command);
        }
        match self.multi.route(&self.db, command) {
            Route::Reply(reply) => {
                self.reply(&reply);
                Flow::Continue
            }
            Route::Run(command) => self.answer_command(Ok(command)),
            Route::Exec { queued, watched } => {
                self.exec(&queued, &watched);
                Flow::Continue
            }
        }
    }

    /// `EXEC`: runs the queued commands as one transaction (see
    /// [`crate::multi`]), then the connection-level ones among them.
    fn exec(&mut self, queued: &[Queued], watched: &[(Bytes, u64)]) {
        let host = ConnectionHost {
            shared: &self.shared,
            scan_cursors: &self.scan_cursors,
        };
        let outcome = crate::multi::exec(&self.db, &host, queued, watched);
        self.multi.exec_done();
        let reply = outcome.into_reply(queued, |command| {
            self.answer_connection_level(command.clone())
        });
        // A transaction that ran is one commit: one acknowledged write.
        if matches!(reply, Reply::Array(_)) {
            self.shared.acked_writes.fetch_add(1, Ordering::Relaxed);
        }
        self.reply(&reply);
    }

    /// Answers a command outside a transaction.
    fn answer_command(&mut self, command: Result<Command, crate::CommandError>) -> Flow {
        let command = match command {
            Ok(command) => command,
            Err(e) => {
                resp::encode_reply(&e.into(), &mut self.output);
                return Flow::Continue;
            }
        };
        if !self.authenticated
            && !matches!(
                command,
                Command::Auth { .. } | Command::Quit | Command::Hello { .. }
            )
        {
            self.reply(&Reply::Error("NOAUTH Authentication required.".into()));
            return Flow::Continue;
        }
        match command {
            Command::Quit => {
                self.reply(&Reply::ok());
                return Flow::Close(Ended::Quit);
            }
            command if command.is_connection_level() => {
                let reply = self.answer_connection_level(command);
                self.reply(&reply);
                if self.auth_failures >= MAX_AUTH_FAILURES {
                    return Flow::Close(Ended::TooManyAuthFailures);
                }
            }
            command => {
                let host = ConnectionHost {
                    shared: &self.shared,
                    scan_cursors: &self.scan_cursors,
                };
                let reply = command.execute_in(&self.db, &host);
                if self.answering_write {
                    self.count_write(&reply);
                }
                self.reply(&reply);
            }
        }
        Flow::Continue
    }

    /// The reply to a command the connection answers itself (`AUTH`,
    /// `CLIENT`, `CONFIG SET`, `HELLO`), outside `MULTI` or at `EXEC`.
    fn answer_connection_level(&mut self, command: Command) -> Reply {
        match command {
            Command::Auth { username, password } => self.auth(username.as_deref(), &password),
            Command::Client(sub) => self.client(sub),
            Command::ConfigSet { pairs } => match self.shared.config_set(&pairs) {
                Ok(()) => Reply::ok(),
                Err(e) => Reply::Error(e),
            },
            Command::Hello {
                protocol,
                auth,
                setname,
            } => self.hello(protocol, auth, setname),
            // The transaction commands reach here only before AUTH, and
            // QUIT is answered by the caller.
            Command::Multi
            | Command::Exec
            | Command::Discard
            | Command::Watch { .. }
            | Command::Unwatch
            | Command::Quit => Reply::Error("NOAUTH Authentication required.".into()),
            command => {
                let host = ConnectionHost {
                    shared: &self.shared,
                    scan_cursors: &self.scan_cursors,
                };
                command.execute_in(&self.db, &host)
            }
        }
    }

    /// Applies the pending run of `SET`s and appends their replies: one
    /// transaction for all of them, or, for one `SET` or when that
    /// transaction fails as a whole, one per `SET` (so that each gets its
    /// own reply, the error included).
    fn apply_pending_sets(&mut self) {
        let written = match self.pending_sets.len() {
            0 => return,
            1 => false,
            _ => {
                let pending = &self.pending_sets;
                self.db
                    .transaction(Isolation::ReadCommitted, |tx| pending.write_into(tx))
                    .is_ok()
            }
        };
        if written {
            self.take_pending_sets(true);
            return;
        }
        let pending = std::mem::take(&mut self.pending_sets);
        for (key, value) in pending.iter() {
            let reply = match self.db.set(key, value) {
                Ok(()) => Reply::ok(),
                Err(e) => Reply::err(e),
            };
            self.count_write(&reply);
            self.reply(&reply);
        }
        // Keep the buffers for the next run.
        self.pending_sets = pending;
        self.pending_sets.clear();
    }

    /// Counts an answered write command in `acked_writes`, unless its
    /// reply is an error (nothing was written then).
    fn count_write(&self, reply: &Reply) {
        if !reply.is_error() {
            self.shared.acked_writes.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn reply(&mut self, reply: &Reply) {
        resp::encode_reply_as(reply, self.protocol, &mut self.output);
    }

    /// `HELLO [protover [AUTH username password] [SETNAME name]]`, as
    /// Redis 7 answers it: the version is checked first, then AUTH, then
    /// the name; nothing changes unless all of them succeed.
    fn hello(
        &mut self,
        protocol: Option<i64>,
        auth: Option<(Bytes, Bytes)>,
        setname: Option<Bytes>,
    ) -> Reply {
        let protocol = match protocol {
            None => self.protocol,
            Some(2) => Protocol::Resp2,
            Some(3) => Protocol::Resp3,
            Some(_) => return crate::command::noproto(),
        };
        if let Some((username, password)) = auth {
            if self.config.requirepass.is_none() {
                // Redis's default user has no password then: it accepts
                // any, and knows no other user.
                if username.as_ref() != b"default" {
                    return wrongpass();
                }
            } else {
                let reply = self.auth(Some(&username), &password);
                if reply.is_error() {
                    return reply;
                }
            }
        } else if !self.authenticated {
            return Reply::Error(
                "NOAUTH HELLO must be called with the client already authenticated, otherwise \
                 the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the \
                 client and select the RESP protocol version at the same time"
                    .into(),
            );
        }
        if let Some(name) = setname {
            let reply = self.client(ClientCommand::SetName(name));
            if reply.is_error() {
                return reply;
            }
        }
        self.protocol = protocol;
        let version = match protocol {
            Protocol::Resp2 => 2,
            Protocol::Resp3 => 3,
        };
        crate::command::hello_reply(self.info.id, version)
    }

    /// `AUTH [username] password`.
    fn auth(&mut self, username: Option<&[u8]>, password: &[u8]) -> Reply {
        let Some(expected) = &self.config.requirepass else {
            return Command::Auth {
                username: None,
                password: Bytes::new(),
            }
            .execute(&self.db);
        };
        let user_ok = username.is_none_or(|u| u == b"default");
        if user_ok && constant_time_eq(expected.as_bytes(), password) {
            self.authenticated = true;
            self.parser
                .set_limits(limits_for(&self.config, self.authenticated));
            Reply::ok()
        } else {
            self.auth_failures += 1;
            if let Some(suppressed) = self.shared.noisy_log.admit("failed AUTH") {
                tracing::warn!(
                    id = self.info.id,
                    peer = %self.info.addr,
                    failures = self.auth_failures,
                    suppressed,
                    "failed AUTH"
                );
            }
            // Slow guessing down: each failure on this connection costs
            // longer, and the connection ends after a few.
            // (A hold, not a sleep: the event loop serves other clients
            // meanwhile.)
            self.held_until =
                Some(Instant::now() + AUTH_FAILURE_DELAY.saturating_mul(self.auth_failures));
            wrongpass()
        }
    }

    /// The `CLIENT` subcommands.
    fn client(&mut self, sub: ClientCommand) -> Reply {
        match sub {
            ClientCommand::SetName(name) => {
                *self.info.name.lock() = (!name.is_empty()).then_some(name);
                Reply::ok()
            }
            ClientCommand::GetName => Reply::Bulk(self.info.name.lock().clone()),
            ClientCommand::Id => Reply::Integer(i64::try_from(self.info.id).unwrap_or(i64::MAX)),
            ClientCommand::SetInfo => Reply::ok(),
            ClientCommand::List => Reply::Verbatim(self.shared.client_list().into()),
            ClientCommand::Info => Reply::Verbatim((self.info.line() + "\n").into()),
            // `ClientCommand` is non-exhaustive for other crates only.
            #[allow(unreachable_patterns)]
            _ => Reply::err("unsupported CLIENT subcommand"),
        }
    }
}

/// Redis's reply to a wrong user name or password.
fn wrongpass() -> Reply {
    Reply::Error("WRONGPASS invalid username-password pair or user is disabled.".into())
}

/// The request limits of a client, depending on whether it has
/// authenticated.
fn limits_for(config: &ServerConfig, authenticated: bool) -> Limits {
    let max_bulk_len = config.max_bulk_bytes;
    if authenticated {
        Limits {
            max_bulk_len,
            ..Limits::DEFAULT
        }
    } else {
        Limits {
            max_bulk_len: max_bulk_len.min(Limits::UNAUTHENTICATED.max_bulk_len),
            ..Limits::UNAUTHENTICATED
        }
    }
}

/// Compares two byte strings in time that depends on their lengths only,
/// not on where they first differ (so a wrong password does not leak, by
/// timing, how much of it was right).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stall behind a flaky `server_abuse` test: `service` stops for
    /// backpressure with `GET`s still buffered, then the waiting replies
    /// leave through a later `write_some` (the loop's end-of-turn write)
    /// instead of a writability event. The connection must then say that
    /// it needs serving, and serving it must answer the rest.
    #[test]
    fn replies_that_leave_after_a_pause_ask_for_service_again() {
        let db = Db::memory().unwrap();
        db.set(b"big", vec![b'x'; 1 << 20]).unwrap();
        let config = ServerConfig {
            bind: "127.0.0.1:0".parse().unwrap(),
            ..Default::default()
        };
        let server = super::super::Server::bind(db.clone(), config).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (stream, addr) = listener.accept().unwrap();
        stream.set_nonblocking(true).unwrap();
        let info = Arc::new(ClientInfo {
            id: 1,
            addr,
            connected_at: Instant::now(),
            name: Mutex::new(None),
        });
        let mut conn = Connection::new(
            TcpStream::from_std(stream),
            db,
            Arc::clone(&server.shared),
            info,
        );
        let gets = 16;
        let reply_len = format!("${}\r\n", 1 << 20).len() + (1 << 20) + 2;
        let expected = gets * reply_len;
        client
            .write_all(&b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n".repeat(gets))
            .unwrap();
        client.set_nonblocking(true).unwrap();
        let mut received = 0;
        let mut buffer = vec![0; 1 << 20];
        let mut drain = |client: &mut std::net::TcpStream| loop {
            match client.read(&mut buffer) {
                Ok(0) => panic!("the server closed the connection"),
                Ok(n) => received += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return received,
                Err(e) => panic!("{e}"),
            }
        };
        let deadline = Instant::now() + std::time::Duration::from_secs(30);
        // Serve until the socket takes no more: a pause with replies waiting.
        while !conn.has_output() {
            assert!(Instant::now() < deadline, "the requests never arrived");
            conn.service(false).unwrap();
        }
        assert!(
            !conn.needs_service(),
            "replies still wait: writability says when"
        );
        // The client reads; the waiting replies leave through `write_some`
        // alone, as at the end of the loop's turn.
        loop {
            assert!(Instant::now() < deadline, "the replies never left");
            drain(&mut client);
            if conn.write_some().unwrap() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(
            drain(&mut client) < expected,
            "some GETs were still buffered"
        );
        assert!(
            conn.needs_service(),
            "the buffered GETs would never be answered"
        );
        // Serving it again answers them all.
        while drain(&mut client) < expected {
            assert!(Instant::now() < deadline, "the rest was never answered");
            if conn.needs_service() || conn.has_output() {
                conn.service(false).unwrap();
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(drain(&mut client), expected);
        assert!(!conn.needs_service());
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secre"));
        assert!(constant_time_eq(b"", b""));
    }
}
