//! The network server: pydb speaking Redis's protocol (RESP2, and RESP3
//! for a connection that asks with `HELLO 3`) over TCP, so that
//! `redis-cli`, `redis-benchmark` and every language's Redis client work
//! with pydb unmodified.
//!
//! ```text
//!   accept thread (this module)        event loops, --event-loops (event_loop.rs)
//!   ---------------------------        ------------------------------------------
//!   listener.accept()  --hand over-->  poll() the loop's sockets (epoll, via mio)
//!   over --maxclients? -> -ERR           ready ones: read -> RequestParser (resp.rs)
//!   SIGTERM -> stop, drain, flush          -> Command::parse -> execute_in(&Db)
//!                                        one commit: the turn's SETs, one fsync
//!                                        then write every served client's replies
//! ```
//!
//! ## From a thread per connection to event loops
//!
//! Until issue 14 the server ran one thread per connection. It read top
//! to bottom (a connection was a loop: read, parse, execute, write), and
//! durability was a plain blocking call: with `--sync always`, fifty
//! clients writing at once were fifty waiting writers, and the WAL's group
//! commit (helped by the transaction layer's commit delay,
//! `wait_for_cohort`) made one `fsync` cover many of them.
//!
//! Two measurements moved it (docs/benchmarks/redis.md): on two cores the
//! fifty threads spent about a fifth of their samples in the scheduler
//! (a wake-up and a context switch per request per client), and group
//! commit could only merge the writers that *happened* to be waiting when
//! a sync started, so pipelined `SET`s with fsync lagged redis-server,
//! which gathers every ready client's writes in one event-loop turn and
//! fsyncs once before any reply (`beforeSleep` in Redis's `server.c`).
//!
//! Now the server does the same, with one loop or a few (the
//! `--event-loops` setting, [`ServerConfig::event_loops`]; by default
//! [`default_event_loops`] for the machine's cores): the accept thread hands each new connection to
//! a loop; a loop waits for readiness on all of its sockets at once, and
//! in each turn reads, parses and answers every ready client, sets the
//! plain `SET`s aside, commits the `SET`s of *all* those clients as one
//! transaction (one append, one `fsync` with `--sync always`), and
//! only then writes the replies. A `+OK` never leaves before its fsync.
//! Other commands run in place, in request order (a connection's `GET`
//! first applies that connection's own pending `SET`s, so it sees them).
//! `INFO persistence` shows the result as `fsyncs_per_write`.
//!
//! The trade-offs, honestly:
//! - **Nothing in a turn may block**, or every client of that loop waits:
//!   the wrong-password delay became a hold released by the loop's timer,
//!   and the write timeout, output limits and idle timeout are timers too,
//!   not socket timeouts. A slow command (a `KEYS` over a large database, a
//!   long `EXEC`) still stalls the clients of its loop, as it stalls all of
//!   Redis; the other loops go on. The loops also wait for their own fsync:
//!   while one syncs, its clients are not read (Redis alike).
//! - **How many loops is a trade.** More loops serve more clients at
//!   once and get more of a busy machine's CPU, but each splits the
//!   turn's writes (fewer per `fsync`, each loop syncing its own) and adds
//!   hand-offs between threads. On two cores one loop halved the server's
//!   context switches and made a third fewer `fsync`s per durable `SET`,
//!   and served more durable `SET`s than two on a quiet machine
//!   (docs/benchmarks/redis.md, sessions 12 and 13). The default is one
//!   loop on up to two cores, else one per core, at most 8
//!   ([`default_event_loops`]); `--event-loops N` overrides it, and
//!   `INFO server` shows `event_loops`.
//! - **Fewer threads means less CPU share on a busy machine.** The kernel
//!   shares the CPU per thread: two loops compete with everything else as
//!   two threads, fifty connection threads as fifty. On a quiet machine the
//!   loops do less work per request (no wake-up per request); on a loaded
//!   one the thread-per-connection server can look faster (see the third
//!   round in docs/benchmarks/redis.md).
//! - **The code is a state machine.** A connection ([`conn`]) keeps its
//!   buffers and where it stopped (waiting for bytes, for the client to
//!   read, for a hold to end), and must read until `WouldBlock` because
//!   readiness is edge-triggered. That is the price of the model.
//!
//! Throughput also comes from what each turn does per connection: it
//! parses *every* complete request in its buffer, answers them in order
//! into one output buffer, and writes it with one `write` (so a pipeline of
//! 16 requests costs one `read` and one `write`), with `TCP_NODELAY` so
//! that replies leave at once.
//!
//! ## Safety rules
//!
//! - Binding to anything but loopback requires a non-empty
//!   `--requirepass`, as Redis's protected mode does: a database open to
//!   the network without a password is a classic way to lose one. The
//!   settings are checked by [`ServerConfig::validate`] before anything
//!   is opened.
//! - A client that does not read its replies is stopped from sending more
//!   (backpressure) and closed past the output limits or the write
//!   timeout ([`conn`]); wrong passwords slow a connection down and close
//!   it after [`conn::MAX_AUTH_FAILURES`]; warnings that clients can
//!   trigger at will are rate-limited ([`ratelog`]).
//! - Every request is bounded (see [`resp`]) and a connection buffers at
//!   most [`ServerConfig::max_query_bytes`]; a malformed request gets an
//!   error reply and that connection is closed; the server goes on.
//! - On SIGINT or SIGTERM ([`shutdown_on_signals`]) the server stops
//!   accepting, shuts the read side of every connection so that its loop
//!   answers what was received and closes it, stops the loops,
//!   flushes the database (`Db::flush`), and returns, which releases the
//!   directory lock.

pub mod conn;
mod event_loop;
mod pending;
pub mod ratelog;
pub mod resp;

use std::collections::HashMap;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::{Condvar, Mutex, RwLock};

use crate::info::Section;
use crate::{Error, Result};
use pydb::Db;

/// The port `pydb server` listens on by default (Redis's is 6379).
pub const DEFAULT_PORT: u16 = 6380;

/// How long shutdown waits for connections to finish their replies before
/// cutting them off.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// How the server runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// The address to listen on.
    pub bind: SocketAddr,
    /// The password clients must send with `AUTH`; `None`: no password.
    pub requirepass: Option<String>,
    /// The most clients connected at once.
    pub maxclients: usize,
    /// The longest bulk string a request may carry.
    pub max_bulk_bytes: usize,
    /// The most bytes a connection buffers for requests not yet complete.
    pub max_query_bytes: usize,
    /// Close a client idle this long; `None`: never.
    pub timeout: Option<Duration>,
    /// Close a client whose replies waiting to be sent would exceed this
    /// many bytes (Redis's `client-output-buffer-limit` hard limit).
    pub output_hard_limit: usize,
    /// Close a client whose waiting replies stay above this many bytes...
    pub output_soft_limit: usize,
    /// ... for this long (the soft limit's time).
    pub output_soft_time: Duration,
    /// Close a client that accepts no reply bytes for this long; `None`:
    /// never.
    pub write_timeout: Option<Duration>,
    /// How many event loops serve the clients; 0: chosen by the number of
    /// cores ([`default_event_loops`]). Fixed once the server runs.
    pub event_loops: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        let max_bulk_bytes = resp::Limits::DEFAULT.max_bulk_len;
        Self {
            bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), DEFAULT_PORT),
            requirepass: None,
            maxclients: 10_000,
            max_bulk_bytes,
            max_query_bytes: query_limit_for(max_bulk_bytes),
            timeout: None,
            output_hard_limit: 256 << 20,
            output_soft_limit: 64 << 20,
            output_soft_time: Duration::from_secs(60),
            write_timeout: Some(Duration::from_secs(60)),
            event_loops: 0,
        }
    }
}

/// The most event loops `--event-loops` accepts. More loops than cores
/// only add hand-offs; this bound catches a typo, not a tuning choice.
pub const MAX_EVENT_LOOPS: usize = 64;

/// The largest `max_bulk_bytes` accepted: 4 GiB. More is not a limit but
/// a typo (no engine stores a value anywhere near it).
pub const MAX_BULK_BYTES_LIMIT: usize = 1 << 32;

impl ServerConfig {
    /// Checks the settings, with an error that names the option.
    ///
    /// An empty password counts as no password (as in Redis, where
    /// `requirepass ""` turns authentication off), so it does not open a
    /// non-loopback address: that would let anyone in with `AUTH ""`.
    pub fn validate(&self) -> Result<()> {
        let invalid = |message: String| Err(Error::InvalidArgument(message));
        if self.maxclients == 0 {
            return invalid("--maxclients must be at least 1".into());
        }
        if !(1..=MAX_BULK_BYTES_LIMIT).contains(&self.max_bulk_bytes) {
            return invalid(format!(
                "--max-bulk-bytes must be between 1 and {MAX_BULK_BYTES_LIMIT} (4 GiB), not {}",
                self.max_bulk_bytes
            ));
        }
        if self.max_query_bytes < self.max_bulk_bytes {
            return invalid(format!(
                "the query buffer limit ({}) must be at least --max-bulk-bytes ({})",
                self.max_query_bytes, self.max_bulk_bytes
            ));
        }
        if self.output_hard_limit == 0 || self.output_soft_limit == 0 {
            return invalid("the output buffer limits must be at least 1 byte".into());
        }
        if self.write_timeout.is_some_and(|t| t.is_zero()) {
            return invalid("--write-timeout must be at least 1 second (0: never)".into());
        }
        if self.event_loops > MAX_EVENT_LOOPS {
            return invalid(format!(
                "--event-loops must be between 0 (chosen by the cores) and {MAX_EVENT_LOOPS}, not {}",
                self.event_loops
            ));
        }
        if !self.bind.ip().is_loopback() && self.password().is_none() {
            return invalid(format!(
                "refusing to listen on {} without --requirepass (an empty password is no \
                 password): only loopback addresses may be used without a password (protected \
                 mode, as in Redis)",
                self.bind
            ));
        }
        Ok(())
    }

    /// The password clients must send, if any: an empty one is none.
    pub fn password(&self) -> Option<&str> {
        self.requirepass.as_deref().filter(|p| !p.is_empty())
    }

    /// How many event loops the server runs with these settings:
    /// [`event_loops`](Self::event_loops), or [`default_event_loops`] for
    /// this machine when it is 0.
    pub fn event_loop_count(&self) -> usize {
        if self.event_loops > 0 {
            return self.event_loops;
        }
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        default_event_loops(cores)
    }
}

/// Parses a `client-output-buffer-limit` value as Redis writes it for its
/// one class pydb has, `normal <hard> <soft> <seconds>` (every pydb client
/// is a normal client), or as the `--client-output-buffer-limit` flag
/// takes it, `<hard> <soft> <seconds>`. Bytes are plain numbers.
fn parse_output_buffer_limit(text: &str) -> Option<(usize, usize, u64)> {
    let parts: Vec<&str> = text.split_whitespace().collect();
    let numbers = match parts.as_slice() {
        [class, rest @ ..] if class.eq_ignore_ascii_case("normal") => rest,
        all => all,
    };
    let [hard, soft, secs] = numbers else {
        return None;
    };
    Some((hard.parse().ok()?, soft.parse().ok()?, secs.parse().ok()?))
}

/// The query buffer limit that goes with a bulk limit: room for a request
/// with two values of the largest size (a `SET`), and at least 1 MiB.
pub fn query_limit_for(max_bulk_bytes: usize) -> usize {
    max_bulk_bytes
        .saturating_mul(2)
        .saturating_add(64 << 10)
        .max(1 << 20)
}

/// What every event loop and connection shares with the server.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The settings; `CONFIG SET` swaps in a new version, which each
    /// connection picks up before its next request.
    config: RwLock<Arc<ServerConfig>>,
    pub(crate) local_addr: SocketAddr,
    /// How many event loops serve the clients (`INFO`, `CONFIG GET`).
    event_loops: usize,
    started: Instant,
    next_client_id: AtomicU64,
    /// The connected clients; a connection removes itself when it ends.
    clients: Mutex<HashMap<u64, ClientEntry>>,
    /// Signalled whenever a client leaves (shutdown waits on it).
    client_left: Condvar,
    shutting_down: AtomicBool,
    total_connections: AtomicU64,
    pub(crate) total_commands: AtomicU64,
    /// Write commands answered without an error (`INFO`'s `acked_writes`).
    pub(crate) acked_writes: AtomicU64,
    rejected_connections: AtomicU64,
    /// The warnings that clients can trigger at will, rate-limited.
    pub(crate) noisy_log: ratelog::RateLimitedLog,
}

#[derive(Debug)]
struct ClientEntry {
    /// A handle on the socket, to shut it down from outside the thread.
    stream: TcpStream,
    info: Arc<ClientInfo>,
}

/// What `CLIENT LIST` shows about a connection.
#[derive(Debug)]
pub(crate) struct ClientInfo {
    pub(crate) id: u64,
    pub(crate) addr: SocketAddr,
    connected_at: Instant,
    pub(crate) name: Mutex<Option<Bytes>>,
}

impl ClientInfo {
    /// The `CLIENT LIST` line of this client.
    pub(crate) fn line(&self) -> String {
        let name = self.name.lock();
        let name = name
            .as_deref()
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        format!(
            "id={} addr={} name={} age={} db=0",
            self.id,
            self.addr,
            name,
            self.connected_at.elapsed().as_secs()
        )
    }
}

impl Shared {
    /// The `CLIENT LIST` text.
    pub(crate) fn client_list(&self) -> String {
        let clients = self.clients.lock();
        let mut infos: Vec<&Arc<ClientInfo>> = clients.values().map(|c| &c.info).collect();
        infos.sort_by_key(|c| c.id);
        infos.iter().map(|c| c.line() + "\n").collect()
    }

    fn remove_client(&self, id: u64) {
        self.clients.lock().remove(&id);
        self.client_left.notify_all();
    }
}

impl Shared {
    /// The server's `INFO` sections (see [`Host::info_sections`]).
    pub(crate) fn info_sections(&self) -> Vec<Section> {
        let uptime = self.started.elapsed().as_secs();
        let connected = self.clients.lock().len();
        vec![
            Section::new("Server")
                .field("tcp_port", self.local_addr.port())
                .field("uptime_in_seconds", uptime)
                .field("uptime_in_days", uptime / 86_400)
                .field("io_model", "event loops")
                .field("event_loops", self.event_loops),
            Section::new("Clients")
                .field("connected_clients", connected)
                .field("maxclients", self.config().maxclients)
                .field("blocked_clients", 0),
            Section::new("Stats")
                .field(
                    "total_connections_received",
                    self.total_connections.load(Ordering::Relaxed),
                )
                .field(
                    "total_commands_processed",
                    self.total_commands.load(Ordering::Relaxed),
                )
                .field(
                    "rejected_connections",
                    self.rejected_connections.load(Ordering::Relaxed),
                ),
        ]
    }

    /// The settings now.
    pub(crate) fn config(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.config.read())
    }

    /// `CONFIG SET name value [name value ...]`: all of them or none,
    /// validated together (so no setting can open the server up, e.g. an
    /// empty password on a public address).
    pub(crate) fn config_set(&self, pairs: &[(Bytes, Bytes)]) -> std::result::Result<(), String> {
        let mut current = self.config.write();
        let mut next = ServerConfig::clone(&current);
        for (name, value) in pairs {
            let name_text = String::from_utf8_lossy(name).to_ascii_lowercase();
            let failed = |why: &str| {
                format!(
                    "ERR CONFIG SET failed (possibly related to argument '{name_text}') - {why}"
                )
            };
            let value_text = std::str::from_utf8(value).unwrap_or("");
            let integer = || {
                value_text
                    .parse::<u64>()
                    .map_err(|_| failed("argument couldn't be parsed into an integer"))
            };
            match name_text.as_str() {
                "maxclients" => {
                    next.maxclients = Some(integer()?)
                        .filter(|n| (1..=u64::from(u32::MAX)).contains(n))
                        .and_then(|n| usize::try_from(n).ok())
                        .ok_or_else(|| {
                            failed("argument must be between 1 and 4294967295 inclusive")
                        })?;
                }
                "timeout" => {
                    let secs = integer()?;
                    next.timeout = (secs > 0).then(|| Duration::from_secs(secs));
                }
                "requirepass" => {
                    next.requirepass = (!value.is_empty()).then(|| value_text.to_owned());
                }
                "proto-max-bulk-len" => {
                    next.max_bulk_bytes =
                        usize::try_from(integer()?).map_err(|_| failed("argument is too large"))?;
                    next.max_query_bytes = query_limit_for(next.max_bulk_bytes);
                }
                "write-timeout" => {
                    let secs = integer()?;
                    next.write_timeout = (secs > 0).then(|| Duration::from_secs(secs));
                }
                "client-output-buffer-limit" => {
                    let (hard, soft, secs) = parse_output_buffer_limit(value_text)
                        .ok_or_else(|| failed("argument must be 'normal <hard> <soft> <seconds>' in bytes, bytes and seconds"))?;
                    next.output_hard_limit = hard;
                    next.output_soft_limit = soft;
                    next.output_soft_time = Duration::from_secs(secs);
                }
                "bind"
                | "port"
                | "protected-mode"
                | "client-query-buffer-limit"
                | "event-loops" => {
                    return Err(failed("can't set immutable config"));
                }
                _ => {
                    return Err(format!(
                        "ERR Unknown option or number of arguments for CONFIG SET - '{name_text}'"
                    ));
                }
            }
        }
        next.validate()
            .map_err(|e| format!("ERR CONFIG SET failed - {e}"))?;
        *current = Arc::new(next);
        Ok(())
    }

    /// The server's `CONFIG GET` parameters (see [`Host::config`]).
    pub(crate) fn config_params(&self) -> Vec<(&'static str, String)> {
        let config = self.config();
        vec![
            ("bind", config.bind.ip().to_string()),
            ("port", self.local_addr.port().to_string()),
            ("maxclients", config.maxclients.to_string()),
            ("event-loops", self.event_loops.to_string()),
            (
                "timeout",
                config.timeout.map_or(0, |t| t.as_secs()).to_string(),
            ),
            (
                "requirepass",
                config.requirepass.clone().unwrap_or_default(),
            ),
            ("proto-max-bulk-len", config.max_bulk_bytes.to_string()),
            (
                "client-output-buffer-limit",
                format!(
                    "normal {} {} {}",
                    config.output_hard_limit,
                    config.output_soft_limit,
                    config.output_soft_time.as_secs()
                ),
            ),
            (
                "write-timeout",
                config.write_timeout.map_or(0, |t| t.as_secs()).to_string(),
            ),
            (
                "client-query-buffer-limit",
                config.max_query_bytes.to_string(),
            ),
            (
                "protected-mode",
                if config.requirepass.is_some() {
                    "no"
                } else {
                    "yes"
                }
                .to_string(),
            ),
        ]
    }
}

/// Stops a running server from another thread (a signal handler, a test).
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    shared: Arc<Shared>,
}

impl ShutdownHandle {
    /// Asks the server to shut down; [`Server::run`] then returns.
    pub fn shutdown(&self) {
        self.shared.shutting_down.store(true, Ordering::SeqCst);
        // `accept` blocks; a connection of our own wakes it up to see the
        // flag. A failure means it is awake anyway (or already gone).
        let _ =
            TcpStream::connect_timeout(&wake_addr(self.shared.local_addr), Duration::from_secs(1));
    }
}

/// The address to connect to in order to reach a listener bound to
/// `addr` (a wildcard address is reached through loopback).
fn wake_addr(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port())
}

/// A bound server, ready to [`run`](Server::run).
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    db: Db,
    shared: Arc<Shared>,
}

impl Server {
    /// Binds the listening socket. Refuses invalid settings
    /// ([`ServerConfig::validate`]), among them a non-loopback address
    /// without a password (protected mode).
    pub fn bind(db: Db, mut config: ServerConfig) -> Result<Self> {
        config.validate()?;
        // From here on, `requirepass` is `Some` only for a real password.
        config.requirepass = config.password().map(str::to_owned);
        let listener =
            TcpListener::bind(config.bind).map_err(|e| Error::io(config.bind.to_string(), e))?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| Error::io(config.bind.to_string(), e))?;
        let event_loops = config.event_loop_count();
        let shared = Arc::new(Shared {
            config: RwLock::new(Arc::new(config)),
            local_addr,
            event_loops,
            started: Instant::now(),
            next_client_id: AtomicU64::new(1),
            clients: Mutex::new(HashMap::new()),
            client_left: Condvar::new(),
            shutting_down: AtomicBool::new(false),
            total_connections: AtomicU64::new(0),
            total_commands: AtomicU64::new(0),
            acked_writes: AtomicU64::new(0),
            rejected_connections: AtomicU64::new(0),
            noisy_log: ratelog::RateLimitedLog::default(),
        });
        Ok(Self {
            listener,
            db,
            shared,
        })
    }

    /// The address the server listens on (with the real port when bound to
    /// port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// A handle that stops the server.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Accepts and serves clients until shut down; then drains the
    /// connections and flushes the database.
    pub fn run(self) -> Result<()> {
        let Server {
            listener,
            db,
            shared,
        } = self;
        let count = shared.event_loops;
        let mut handles = Vec::with_capacity(count);
        let mut threads = Vec::with_capacity(count);
        for n in 0..count {
            let (event_loop, handle) = event_loop::EventLoop::new(db.clone(), Arc::clone(&shared))
                .map_err(|e| Error::io("<event loop>", e))?;
            let thread = std::thread::Builder::new()
                .name(format!("event-loop-{n}"))
                .spawn(move || event_loop.run())
                .map_err(|e| Error::io("<event loop>", e))?;
            handles.push(handle);
            threads.push(thread);
        }
        tracing::info!(event_loops = count, "serving clients from event loops");
        tracing::info!(addr = %shared.local_addr, "listening");
        for stream in listener.incoming() {
            if shared.shutting_down.load(Ordering::SeqCst) {
                break;
            }
            match stream {
                Ok(stream) => accept(&shared, &db, &handles, stream),
                // A client that gave up before we accepted it, or a
                // passing shortage of file descriptors: log and go on.
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
        drop(listener);
        tracing::info!("shutting down: no new connections");
        drain(&shared);
        for handle in &handles {
            handle.stop();
        }
        for thread in threads {
            if thread.join().is_err() {
                tracing::error!("an event loop panicked");
            }
        }
        db.flush()?;
        tracing::info!("database flushed; bye");
        Ok(())
    }
}

/// How many event loops serve the clients by default on a machine with
/// `cores` cores: one on up to two cores, else one per core, at most 8.
///
/// Each loop gathers its clients' writes into one commit per turn; a
/// second loop keeps another core busy while the first waits for an
/// `fsync`, but splits the turn's writes (each loop syncs its own) and adds
/// hand-offs between threads. On two cores shared with the clients, one
/// loop did less work per durable `SET` (half the context switches, a
/// third fewer `fsync`s per write) and, on a quiet machine, served more
/// durable `SET`s than two in two series of three runs (sessions 12 and
/// 13 in docs/benchmarks/redis.md). So a machine of one or two cores runs
/// one loop; `--event-loops N` overrides it.
pub fn default_event_loops(cores: usize) -> usize {
    if cores <= 2 { 1 } else { cores.min(8) }
}

/// Registers a new connection and hands it to an event loop, or turns it
/// away.
fn accept(shared: &Arc<Shared>, db: &Db, loops: &[event_loop::LoopHandle], mut stream: TcpStream) {
    let peer = match stream.peer_addr() {
        Ok(peer) => peer,
        Err(_) => return,
    };
    shared.total_connections.fetch_add(1, Ordering::Relaxed);
    let mut clients = shared.clients.lock();
    if clients.len() >= shared.config().maxclients {
        drop(clients);
        shared.rejected_connections.fetch_add(1, Ordering::Relaxed);
        if let Some(suppressed) = shared.noisy_log.admit("maxclients") {
            tracing::warn!(%peer, suppressed, "rejected: max number of clients reached");
        }
        let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
        let _ = stream.write_all(b"-ERR max number of clients reached\r\n");
        return;
    }
    let id = shared.next_client_id.fetch_add(1, Ordering::Relaxed);
    // Replies must leave as soon as they are written: Nagle's algorithm
    // would hold a small reply back waiting for an ACK.
    let prepared = stream
        .set_nodelay(true)
        .and_then(|()| stream.set_nonblocking(true))
        .and_then(|()| stream.try_clone());
    let handle = match prepared {
        Ok(handle) => handle,
        Err(e) => {
            tracing::warn!(%peer, error = %e, "cannot register the connection");
            return;
        }
    };
    let info = Arc::new(ClientInfo {
        id,
        addr: peer,
        connected_at: Instant::now(),
        name: Mutex::new(None),
    });
    clients.insert(
        id,
        ClientEntry {
            stream: handle,
            info: Arc::clone(&info),
        },
    );
    drop(clients);
    tracing::debug!(id, %peer, "connected");
    let connection = conn::Connection::new(
        mio::net::TcpStream::from_std(stream),
        db.clone(),
        Arc::clone(shared),
        info,
    );
    let chosen = usize::try_from(id).unwrap_or(0) % loops.len().max(1);
    let handed = loops
        .get(chosen)
        .map(|event_loop| event_loop.hand_over(connection));
    if !matches!(handed, Some(Ok(()))) {
        tracing::warn!(%peer, "cannot hand the connection to an event loop");
        shared.remove_client(id);
    }
}

/// Lets every connection finish: stop their reads (its loop still answers
/// what it received and writes the replies), wait, then cut off the
/// stragglers.
fn drain(shared: &Shared) {
    let mut clients = shared.clients.lock();
    for client in clients.values() {
        let _ = client.stream.shutdown(Shutdown::Read);
    }
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    while !clients.is_empty() {
        if shared
            .client_left
            .wait_until(&mut clients, deadline)
            .timed_out()
        {
            tracing::warn!(left = clients.len(), "clients still busy; closing them");
            for client in clients.values() {
                let _ = client.stream.shutdown(Shutdown::Both);
            }
            let again = Instant::now() + DRAIN_TIMEOUT;
            while !clients.is_empty() {
                if shared
                    .client_left
                    .wait_until(&mut clients, again)
                    .timed_out()
                {
                    return;
                }
            }
            return;
        }
    }
}

/// Shuts the server down on SIGINT or SIGTERM (from a thread that waits
/// for them).
pub fn shutdown_on_signals(handle: ShutdownHandle) -> Result<()> {
    on_shutdown_signal(move || handle.shutdown())
}

/// Calls `stop` on the first SIGINT or SIGTERM (from a thread that waits
/// for them): for a process that runs more than one listener.
pub fn on_shutdown_signal(stop: impl FnOnce() + Send + 'static) -> Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .map_err(|e| Error::io("<signals>", e))?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                tracing::info!(signal, "signal received");
                stop();
            }
        })
        .map_err(|e| Error::io("<signals>", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_loops_zero_means_the_default_for_the_cores_and_too_many_is_refused() {
        let auto = ServerConfig::default();
        assert_eq!(auto.event_loops, 0);
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        assert_eq!(auto.event_loop_count(), default_event_loops(cores));
        let three = ServerConfig {
            event_loops: 3,
            ..ServerConfig::default()
        };
        assert_eq!(three.event_loop_count(), 3);
        assert!(three.validate().is_ok());
        let most = ServerConfig {
            event_loops: MAX_EVENT_LOOPS,
            ..ServerConfig::default()
        };
        assert!(most.validate().is_ok());
        let too_many = ServerConfig {
            event_loops: MAX_EVENT_LOOPS + 1,
            ..ServerConfig::default()
        };
        let message = too_many.validate().unwrap_err().to_string();
        assert!(message.contains("--event-loops"), "{message}");
    }

    #[test]
    fn the_default_number_of_loops_is_one_on_two_cores_else_one_per_core_at_most_eight() {
        for (cores, loops) in [
            (0, 1),
            (1, 1),
            (2, 1),
            (3, 3),
            (4, 4),
            (8, 8),
            (16, 8),
            (256, 8),
        ] {
            assert_eq!(default_event_loops(cores), loops, "{cores} cores");
        }
    }
}
