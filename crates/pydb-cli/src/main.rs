//! The `pydb` command-line tool: the demo, the shell, the server, and the
//! file tools.
//!
//! `pydb` with no subcommand runs the demo. Exit codes: 0 on success, 1 when
//! `check` finds damage, 2 on any other error.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use pydb::db::{HISTORY_FILE_NAME, parse_sync_policy};
use pydb::{Compression, Db, EngineKind, IndexKind, Options, SyncPolicy};
use pydb_server::pg::{PgConfig, PgServer};
use pydb_server::server::{Server, ServerConfig};

/// pydb: a database built from scratch to see, run and measure how storage
/// engines work.
#[derive(Debug, Parser)]
#[command(name = "pydb", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the demo in a temporary directory (the default).
    Demo,
    /// Open a database and type commands (SET, GET, DEL, RANGE, ...; HELP
    /// lists them). Reads one command per line when stdin is not a terminal.
    /// With --connect, sends them to a server instead.
    Shell {
        /// Send the commands to the server at HOST:PORT (pydb's or Redis's)
        /// instead of opening a database.
        #[arg(long, value_name = "HOST:PORT")]
        connect: Option<String>,
        /// The password to AUTH with (with --connect).
        #[arg(long, requires = "connect")]
        password: Option<String>,
        /// The database directory (ignored by the memory engine).
        #[arg(long, default_value = "./pydb-data")]
        dir: PathBuf,
        /// The storage engine: log, btree, lsm or memory.
        #[arg(long, default_value = "log", value_parser = parse_engine)]
        engine: EngineKind,
        /// The in-memory index of the log engine: hash, btree or skiplist.
        #[arg(long, default_value = "btree", value_parser = parse_index)]
        index: IndexKind,
        /// When writes reach the disk: always, periodic, periodic:MS or never.
        #[arg(long, default_value = "always", value_parser = parse_sync)]
        sync: SyncPolicy,
        /// The key file of an encrypted database (at least 32 bytes, any
        /// content). A new database is created encrypted with it.
        #[arg(long, value_name = "PATH")]
        encryption_key_file: Option<PathBuf>,
        /// How a new database compresses its files: none or lz4 (log and lsm
        /// engines). An existing database must be opened with its own.
        #[arg(long, default_value = "none", value_parser = parse_compression)]
        compression: Compression,
    },
    /// Open a database and type SQL, as in psql: statements end with `;`,
    /// \d lists tables, \? lists the meta-commands. When stdin is not a
    /// terminal, prints rows only, values separated by `|`. Exits with 1
    /// if a statement failed (with -c, -f or a pipe).
    Sql {
        /// The database directory (ignored by the memory engine).
        #[arg(long, default_value = "./pydb-data")]
        dir: PathBuf,
        /// The storage engine: log, btree, lsm or memory.
        #[arg(long, default_value = "log", value_parser = parse_engine)]
        engine: EngineKind,
        /// Run these statements (aligned output), then exit.
        #[arg(
            short = 'c',
            long = "command",
            value_name = "SQL",
            conflicts_with = "file"
        )]
        command: Option<String>,
        /// Run the statements of this file (aligned output), then exit.
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// Serve a database over TCP with Redis's protocol (RESP2): redis-cli,
    /// redis-benchmark and Redis client libraries work with it. Logs go to
    /// stderr (RUST_LOG sets the level). SIGINT/SIGTERM shut it down cleanly.
    Server {
        /// The database directory (ignored by the memory engine).
        #[arg(long, default_value = "./pydb-data")]
        dir: PathBuf,
        /// The address to listen on, HOST:PORT (a name such as localhost is
        /// resolved; the first address is used). Anything but loopback
        /// needs a non-empty --requirepass. Port 0 picks a free port
        /// (logged at start).
        #[arg(long, default_value = "127.0.0.1:6380", value_parser = parse_bind)]
        bind: SocketAddr,
        /// The storage engine: log, btree, lsm or memory.
        #[arg(long, default_value = "log", value_parser = parse_engine)]
        engine: EngineKind,
        /// The in-memory index of the log engine: hash, btree or skiplist.
        #[arg(long, default_value = "btree", value_parser = parse_index)]
        index: IndexKind,
        /// When writes reach the disk: always, periodic, periodic:MS or never.
        #[arg(long, default_value = "always", value_parser = parse_sync)]
        sync: SyncPolicy,
        /// The key file of an encrypted database (at least 32 bytes, any
        /// content). A new database is created encrypted with it.
        #[arg(long, value_name = "PATH")]
        encryption_key_file: Option<PathBuf>,
        /// How a new database compresses its files: none or lz4 (log and lsm
        /// engines). An existing database must be opened with its own.
        #[arg(long, default_value = "none", value_parser = parse_compression)]
        compression: Compression,
        /// The password clients must AUTH with.
        #[arg(long)]
        requirepass: Option<String>,
        /// The most clients connected at once (at least 1).
        #[arg(long, default_value_t = 10_000)]
        maxclients: usize,
        /// The longest bulk string (value, key or argument) a request may
        /// carry: 1 byte to 4 GiB.
        #[arg(long, default_value_t = 512 << 20)]
        max_bulk_bytes: usize,
        /// Close clients idle for this many seconds (0: never).
        #[arg(long, default_value_t = 0)]
        timeout: u64,
        /// Close a client that takes no reply bytes for this many seconds
        /// (0: never).
        #[arg(long, default_value_t = 60)]
        write_timeout: u64,
        /// The replies a client that does not read may have waiting, as
        /// Redis's client-output-buffer-limit: "HARD SOFT SECONDS" in
        /// bytes, bytes and seconds. Over HARD, or over SOFT for SECONDS,
        /// the client is closed.
        #[arg(long, default_value = "268435456 67108864 60", value_parser = parse_output_limit)]
        client_output_buffer_limit: (usize, usize, u64),
        /// How many event loops (threads) serve the clients, 1 to 64; 0:
        /// one loop on up to two cores, else one per core, at most 8.
        #[arg(long, default_value_t = 0)]
        event_loops: usize,
        /// Also serve SQL with PostgreSQL's protocol (psql, PostgreSQL
        /// drivers) on HOST:PORT, e.g. 127.0.0.1:5433. The same rules as
        /// --bind: anything but loopback needs --requirepass, which clients
        /// then give as their password (SCRAM-SHA-256).
        #[arg(long, value_name = "HOST:PORT", value_parser = parse_bind)]
        pg_bind: Option<SocketAddr>,
        /// Serve only the PostgreSQL protocol (on --pg-bind), without the
        /// Redis port.
        #[arg(long, requires = "pg_bind")]
        pg_only: bool,
    },
    /// Print every record of a pydb file with its checksum verdict.
    Inspect {
        /// The file: PYDB, a record log, a B+tree page file, ...
        path: PathBuf,
        /// Show only this page of a B+tree page file.
        #[arg(long)]
        page: Option<u32>,
        /// The key file of an encrypted database: with it, every block is
        /// authenticated and the plaintext is shown.
        #[arg(long, value_name = "PATH")]
        encryption_key_file: Option<PathBuf>,
        /// The compression the database was created with (read from its
        /// PYDB file when not given; refused if it differs).
        #[arg(long, value_parser = parse_compression)]
        compression: Option<Compression>,
    },
    /// Verify every checksum of every file of a (closed) database.
    Check {
        /// The database directory.
        dir: PathBuf,
        /// The key file of an encrypted database: with it, every block is
        /// authenticated and the plaintext is shown.
        #[arg(long, value_name = "PATH")]
        encryption_key_file: Option<PathBuf>,
        /// The compression the database was created with (read from its
        /// PYDB file when not given; refused if it differs).
        #[arg(long, value_parser = parse_compression)]
        compression: Option<Compression>,
    },
    /// Salvage a damaged (closed) database: keep every batch that verifies,
    /// move what is replaced into DIR/repair-TIMESTAMP/.
    Repair {
        /// The database directory.
        dir: PathBuf,
        /// The key file of an encrypted database: its segments are read
        /// and rewritten through the decryption (log databases).
        #[arg(long, value_name = "PATH")]
        encryption_key_file: Option<PathBuf>,
    },
    /// Key rotation: rewrap the data key of a (closed) encrypted database
    /// under a new key file. No data file is rewritten; PYDB is replaced
    /// atomically (temporary file, fsync, rename, directory fsync).
    Rekey {
        /// The database directory.
        dir: PathBuf,
        /// The current key file.
        #[arg(long, value_name = "PATH")]
        encryption_key_file: PathBuf,
        /// The new key file (at least 32 bytes, any content).
        #[arg(long, value_name = "PATH")]
        new_key_file: PathBuf,
    },
}

fn parse_compression(s: &str) -> Result<Compression, String> {
    s.parse().map_err(|e: pydb::Error| e.to_string())
}

/// Options with the key file and compression of the command line.
fn storage_options(
    options: Options,
    key_file: Option<&std::path::Path>,
    compression: Compression,
) -> pydb::Result<Options> {
    let options = Options {
        compression,
        ..options
    };
    match key_file {
        Some(path) => options.encryption_key_file(path),
        None => Ok(options),
    }
}

fn parse_engine(s: &str) -> Result<EngineKind, String> {
    s.parse().map_err(|e: pydb::storage::Error| e.to_string())
}

fn parse_index(s: &str) -> Result<IndexKind, String> {
    s.parse().map_err(|e: pydb::storage::Error| e.to_string())
}

/// Resolves `HOST:PORT` (a name or an IP address) to the first address.
fn parse_bind(s: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    let mut addrs = s
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve '{s}' (expected HOST:PORT): {e}"))?;
    addrs
        .next()
        .ok_or_else(|| format!("'{s}' resolves to no address"))
}

/// Parses "HARD SOFT SECONDS" (three numbers).
fn parse_output_limit(s: &str) -> Result<(usize, usize, u64), String> {
    let expected = || format!("'{s}' is not \"HARD SOFT SECONDS\" (three whole numbers)");
    let parts: Vec<&str> = s.split_whitespace().collect();
    let [hard, soft, seconds] = parts.as_slice() else {
        return Err(expected());
    };
    let number = |part: &str| part.parse::<usize>().map_err(|_| expected());
    Ok((
        number(hard)?,
        number(soft)?,
        seconds.parse().map_err(|_| expected())?,
    ))
}

fn parse_sync(s: &str) -> Result<SyncPolicy, String> {
    parse_sync_policy(s).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command.unwrap_or(Cmd::Demo)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pydb: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(command: Cmd) -> pydb_cli::Result<ExitCode> {
    let mut stdout = std::io::stdout().lock();
    match command {
        Cmd::Demo => pydb_cli::demo::run(&mut stdout)?,
        Cmd::Shell {
            connect: Some(addr),
            password,
            ..
        } => {
            drop(stdout);
            let mut client = pydb_server::client::Client::connect(&addr)?;
            if let Some(password) = password {
                let reply = client.call(&[b"AUTH".as_slice(), password.as_bytes()])?;
                if reply.is_error() {
                    return Err(pydb_cli::Error::InvalidArgument(format!(
                        "{addr}: {}",
                        reply.to_text().trim_end()
                    )));
                }
            }
            let banner = format!("pydb shell: connected to {addr}");
            pydb_cli::shell::run(&mut pydb_cli::shell::Remote::new(client), None, &banner)?;
        }
        Cmd::Shell {
            connect: None,
            dir,
            engine,
            index,
            sync,
            encryption_key_file,
            compression,
            ..
        } => {
            drop(stdout);
            let options = Options {
                engine,
                index,
                sync,
                ..Options::default()
            };
            let options = storage_options(options, encryption_key_file.as_deref(), compression)?;
            let db = Db::open(&dir, options)?;
            let (history, banner) = if engine.is_persistent() {
                (
                    Some(dir.join(HISTORY_FILE_NAME)),
                    format!(
                        "pydb shell: {engine} engine, {index} index, sync {}{}, in {}",
                        sync_name(sync),
                        storage_name(&db),
                        dir.display()
                    ),
                )
            } else {
                (
                    None,
                    "pydb shell: memory engine (nothing is saved)".to_string(),
                )
            };
            pydb_cli::shell::run(&mut pydb_cli::shell::Local::new(&db), history, &banner)?;
            db.close()?;
        }
        Cmd::Sql {
            dir,
            engine,
            command,
            file,
        } => {
            let script = match (&command, &file) {
                (Some(sql), _) => Some(sql.clone()),
                (None, Some(path)) => Some(
                    std::fs::read_to_string(path)
                        .map_err(|e| pydb_cli::Error::io(path.display(), e))?,
                ),
                (None, None) => None,
            };
            let options = Options {
                engine,
                ..Options::default()
            };
            let db = Db::open(&dir, options)?;
            let ok = match script {
                Some(script) => {
                    pydb_cli::sql::run_script(&db, &script, &mut stdout, &mut std::io::stderr())?
                }
                None => {
                    drop(stdout);
                    let banner = if engine.is_persistent() {
                        format!("pydb sql: {engine} engine, in {}", dir.display())
                    } else {
                        "pydb sql: memory engine (nothing is saved)".to_string()
                    };
                    pydb_cli::sql::run(&db, &banner)?
                }
            };
            db.close()?;
            if !ok {
                return Ok(ExitCode::from(1));
            }
        }
        Cmd::Server {
            dir,
            bind,
            engine,
            index,
            sync,
            encryption_key_file,
            compression,
            requirepass,
            maxclients,
            max_bulk_bytes,
            timeout,
            write_timeout,
            client_output_buffer_limit: (output_hard_limit, output_soft_limit, soft_seconds),
            event_loops,
            pg_bind,
            pg_only,
        } => {
            drop(stdout);
            init_logging();
            let config = ServerConfig {
                bind,
                requirepass: requirepass.clone(),
                maxclients,
                max_bulk_bytes,
                max_query_bytes: pydb_server::server::query_limit_for(max_bulk_bytes),
                timeout: (timeout > 0).then(|| Duration::from_secs(timeout)),
                output_hard_limit,
                output_soft_limit,
                output_soft_time: Duration::from_secs(soft_seconds),
                write_timeout: (write_timeout > 0).then(|| Duration::from_secs(write_timeout)),
                event_loops,
            };
            let pg_config = pg_bind.map(|addr| PgConfig {
                password: requirepass,
                maxclients,
                ..PgConfig::new(addr)
            });
            // Before opening the database: a bad option must not take
            // the directory lock or create files.
            if !pg_only {
                config.validate()?;
            }
            if let Some(pg_config) = &pg_config {
                pg_config.validate()?;
            }
            let options = Options {
                engine,
                index,
                sync,
                ..Options::default()
            };
            let options = storage_options(options, encryption_key_file.as_deref(), compression)?;
            let db = Db::open(&dir, options)?;
            tracing::info!(
                %engine, %index, sync = %sync_name(sync), dir = %dir.display(),
                storage = %storage_name(&db),
                "database open"
            );
            let server = (!pg_only)
                .then(|| Server::bind(db.clone(), config))
                .transpose()?;
            let pg_server = pg_config
                .map(|pg_config| PgServer::bind(db.clone(), pg_config))
                .transpose()?;
            let redis_on_signal = server.as_ref().map(Server::shutdown_handle);
            let pg_stop = pg_server.as_ref().map(PgServer::shutdown_handle);
            let pg_on_signal = pg_stop.clone();
            pydb_server::server::on_shutdown_signal(move || {
                if let Some(handle) = redis_on_signal {
                    handle.shutdown();
                }
                if let Some(handle) = pg_on_signal {
                    handle.shutdown();
                }
            })?;
            let pg_thread = pg_server
                .map(|pg| {
                    std::thread::Builder::new()
                        .name("pg-accept".into())
                        .spawn(move || pg.run())
                        .map_err(|e| pydb_server::Error::io("<pg thread>", e))
                })
                .transpose()?;
            // The Redis side returns on a signal; then the PostgreSQL side
            // is stopped too (if it runs alone, it returns on the signal).
            let served = match server {
                Some(server) => {
                    let served = server.run();
                    if let Some(handle) = pg_stop {
                        handle.shutdown();
                    }
                    served
                }
                None => Ok(()),
            };
            if let Some(thread) = pg_thread {
                match thread.join() {
                    Ok(result) => result?,
                    Err(_) => tracing::error!("the PostgreSQL listener panicked"),
                }
            }
            served?;
            db.flush()?;
        }
        Cmd::Inspect {
            path,
            page,
            encryption_key_file,
            compression,
        } => {
            let options = pydb_cli::inspect::InspectOptions {
                page,
                storage: pydb_cli::decorated::StorageArgs::load(
                    encryption_key_file.as_deref(),
                    compression,
                )?,
            };
            let report = pydb_cli::inspect::inspect_with(&path, options, &mut stdout)?;
            if !report.is_ok() {
                return Ok(ExitCode::from(1));
            }
        }
        Cmd::Check {
            dir,
            encryption_key_file,
            compression,
        } => {
            let storage = pydb_cli::decorated::StorageArgs::load(
                encryption_key_file.as_deref(),
                compression,
            )?;
            let summary = pydb_cli::check::check_dir_with(&dir, &storage, &mut stdout)?;
            if !summary.is_ok() {
                return Ok(ExitCode::from(1));
            }
        }
        Cmd::Repair {
            dir,
            encryption_key_file,
        } => {
            let storage =
                pydb_cli::decorated::StorageArgs::load(encryption_key_file.as_deref(), None)?;
            drop(pydb_cli::repair::repair_dir_with(
                &dir,
                &storage,
                &mut stdout,
            )?);
        }
        Cmd::Rekey {
            dir,
            encryption_key_file,
            new_key_file,
        } => {
            use std::io::Write;
            let old = pydb::db::load_key_file(&encryption_key_file)?;
            let new = pydb::db::load_key_file(&new_key_file)?;
            let id = pydb::db::rotate_key(&dir, &old, &new)?;
            let id: String = id.iter().map(|b| format!("{b:02x}")).collect();
            writeln!(
                stdout,
                "rewrapped data key {id} of {} under {}; the old key file no longer opens it",
                dir.display(),
                new_key_file.display()
            )
            .map_err(|e| pydb::Error::io("<stdout>", e))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Logs to stderr, filtered by `RUST_LOG` (default: `info`).
fn init_logging() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// ", encrypted (data key ID), lz4" or "" for a plain database.
fn storage_name(db: &Db) -> String {
    let mut text = String::new();
    if let Some(id) = db.data_key_id() {
        let id: String = id.iter().map(|b| format!("{b:02x}")).collect();
        text.push_str(&format!(", encrypted (data key {id})"));
    }
    if db.options().compression != Compression::None {
        text.push_str(&format!(", {} compression", db.options().compression));
    }
    text
}

fn sync_name(sync: SyncPolicy) -> String {
    match sync {
        SyncPolicy::Always => "always".into(),
        SyncPolicy::Never => "never".into(),
        SyncPolicy::Periodic(d) => format!("every {} ms", d.as_millis()),
    }
}
