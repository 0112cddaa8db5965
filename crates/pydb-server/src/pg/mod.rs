//! PostgreSQL's wire protocol (version 3.0) in front of pydb's SQL, so
//! that `psql` and the PostgreSQL drivers of every language connect to
//! `pydb server --pg-bind 127.0.0.1:5433`.
//!
//! ```text
//!   accept loop (this module)        one thread per connection (conn.rs)
//!   -------------------------        -----------------------------------
//!   listener.accept() --spawn-->     startup, auth (scram.rs), then
//!   cancel keys: pid -> flag           read message (codec.rs) -> Session
//!                                      -> encode replies -> write at
//!                                         ReadyForQuery / Flush
//! ```
//!
//! It is built like the Redis side ([`crate::server`]): a thread per
//! connection, for the same reasons (a commit's `fsync` is a blocking wait
//! that group commit shares between waiting threads), with the same
//! safety rules: anything but a loopback address needs a password, and a
//! message over [`PgConfig::max_message_bytes`] or one that does not
//! decode closes the connection after an error. Each connection owns a
//! [`pydb_query::Session`]: its open transaction, if any.
//!
//! With a password, clients authenticate with SCRAM-SHA-256 (any user
//! name: pydb has one password, like Redis's `requirepass`); without, on
//! loopback, every client is trusted.
//!
//! What pydb reports: `server_version` [`SERVER_VERSION`], UTF8, ISO dates;
//! type OIDs int8 (20) for INTEGER, float8 (701) for REAL, text (25) for
//! TEXT and for columns of no known type, bool (16) for BOOLEAN.
//! Parameters of unspecified type are text: drivers that bind numbers
//! should give the types in Parse (`prepare_typed` in Rust's `postgres`).

pub mod codec;
pub mod conn;
pub mod scram;

use std::collections::HashMap;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use pydb::Db;

use crate::{Error, Result};

/// The version pydb claims, so that clients enable protocol 3.0 features.
pub const SERVER_VERSION: &str = "16.0 (pydb)";

/// The port `pydb server --pg-bind` examples use (PostgreSQL's is 5432).
pub const DEFAULT_PG_PORT: u16 = 5433;

/// The longest message accepted by default: 64 MiB.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 << 20;

/// How the PostgreSQL listener runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgConfig {
    /// The address to listen on.
    pub bind: SocketAddr,
    /// The password clients must give (SCRAM-SHA-256); `None` or empty:
    /// trust, allowed on loopback only.
    pub password: Option<String>,
    /// The longest message a client may send, in bytes.
    pub max_message_bytes: usize,
    /// The most clients connected at once.
    pub maxclients: usize,
}

impl PgConfig {
    /// Settings for `bind` with the defaults.
    pub fn new(bind: SocketAddr) -> Self {
        PgConfig {
            bind,
            password: None,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            maxclients: 10_000,
        }
    }

    /// Checks the settings (the same protected mode as the Redis side).
    pub fn validate(&self) -> Result<()> {
        if !self.bind.ip().is_loopback() && self.password().is_none() {
            return Err(Error::InvalidArgument(format!(
                "refusing to listen for PostgreSQL clients on {} without --requirepass: only \
                 loopback addresses may be used without a password",
                self.bind
            )));
        }
        if self.max_message_bytes < 1024 {
            return Err(Error::InvalidArgument(
                "the PostgreSQL message limit must be at least 1024 bytes".into(),
            ));
        }
        if self.maxclients == 0 {
            return Err(Error::InvalidArgument(
                "--maxclients must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// The password, if any: an empty one is none.
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref().filter(|p| !p.is_empty())
    }
}

/// What connection threads share.
#[derive(Debug)]
pub(crate) struct PgShared {
    pub(crate) config: PgConfig,
    pub(crate) scram: Option<scram::ScramSecret>,
    local_addr: SocketAddr,
    shutting_down: AtomicBool,
    next_pid: AtomicI32,
    /// Open connections by pid: their socket (to shut down), their secret
    /// key and cancel flag.
    clients: Mutex<HashMap<i32, Client>>,
}

#[derive(Debug)]
struct Client {
    stream: TcpStream,
    secret: i32,
    cancel: Arc<AtomicBool>,
}

impl PgShared {
    /// A CancelRequest: sets the flag of the connection with this key (a
    /// wrong secret is ignored, as PostgreSQL does).
    pub(crate) fn cancel(&self, pid: i32, secret: i32) {
        if let Some(client) = self.clients.lock().get(&pid)
            && client.secret == secret
        {
            client.cancel.store(true, Ordering::SeqCst);
        }
    }
}

/// Stops a running [`PgServer`].
#[derive(Debug, Clone)]
pub struct PgShutdownHandle {
    shared: Arc<PgShared>,
}

impl PgShutdownHandle {
    /// Stops accepting and closes the connections; [`PgServer::run`]
    /// returns.
    pub fn shutdown(&self) {
        self.shared.shutting_down.store(true, Ordering::SeqCst);
        for client in self.shared.clients.lock().values() {
            let _ = client.stream.shutdown(Shutdown::Both);
        }
        let addr = self.shared.local_addr;
        let wake = if addr.ip().is_unspecified() {
            SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
        } else {
            addr
        };
        let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
    }
}

/// A bound PostgreSQL listener.
#[derive(Debug)]
pub struct PgServer {
    listener: TcpListener,
    db: Db,
    shared: Arc<PgShared>,
}

impl PgServer {
    /// Binds the listening socket (after [`PgConfig::validate`]).
    pub fn bind(db: Db, config: PgConfig) -> Result<Self> {
        config.validate()?;
        let listener =
            TcpListener::bind(config.bind).map_err(|e| Error::io(config.bind.to_string(), e))?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| Error::io(config.bind.to_string(), e))?;
        let scram = config.password().map(scram::ScramSecret::new);
        Ok(PgServer {
            listener,
            db,
            shared: Arc::new(PgShared {
                config,
                scram,
                local_addr,
                shutting_down: AtomicBool::new(false),
                next_pid: AtomicI32::new(1),
                clients: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The address listened on (the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// A handle that stops the server.
    pub fn shutdown_handle(&self) -> PgShutdownHandle {
        PgShutdownHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Accepts clients until shut down.
    pub fn run(self) -> Result<()> {
        tracing::info!(addr = %self.shared.local_addr, "listening for PostgreSQL clients");
        for stream in self.listener.incoming() {
            if self.shared.shutting_down.load(Ordering::SeqCst) {
                break;
            }
            match stream {
                Ok(stream) => self.accept(stream),
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
        Ok(())
    }

    fn accept(&self, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let (Ok(handle), Ok(writer)) = (stream.try_clone(), stream.try_clone()) else {
            return;
        };
        let pid = self.shared.next_pid.fetch_add(1, Ordering::Relaxed);
        let secret: i32 = rand::random();
        let cancel = Arc::new(AtomicBool::new(false));
        {
            let mut clients = self.shared.clients.lock();
            if clients.len() >= self.shared.config.maxclients {
                drop(clients);
                let mut out = codec::Encoder::default();
                out.error("FATAL", "53300", "sorry, too many clients already", None);
                let _ = std::io::Write::write_all(&mut &stream, &out.out);
                return;
            }
            clients.insert(
                pid,
                Client {
                    stream: handle,
                    secret,
                    cancel: Arc::clone(&cancel),
                },
            );
        }
        let shared = Arc::clone(&self.shared);
        let db = self.db.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("pg-{pid}"))
            .spawn(move || {
                let connection = conn::PgConnection::new(
                    stream,
                    writer,
                    db,
                    Arc::clone(&shared),
                    pid,
                    secret,
                    cancel,
                );
                match connection.serve() {
                    Ok(conn::Ended::Refused(why)) => {
                        tracing::info!(pid, %why, "PostgreSQL client refused")
                    }
                    Ok(ended) => tracing::debug!(pid, ?ended, "PostgreSQL client left"),
                    Err(e) => tracing::debug!(pid, error = %e, "PostgreSQL connection error"),
                }
                shared.clients.lock().remove(&pid);
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start a connection thread");
            self.shared.clients.lock().remove(&pid);
        }
    }
}
