//! `INFO` and `CONFIG GET`: what a database and the program running it say
//! about themselves, in Redis's formats.
//!
//! Some of it is the database's (engine, sync policy, key count); some is
//! the program's (the server's port, clients, commands served). The
//! [`Host`] trait is how the program adds its part: the local shell has
//! nothing to add ([`NoHost`]), the network server adds sections and
//! parameters. Fields of a section that both provide are merged, database
//! first, so `INFO server` shows one `# Server` section.
//!
//! `INFO` text is Redis's: a `# Section` title, `key:value` lines, a blank
//! line between sections, `\r\n` line ends.

use std::sync::LazyLock;

use parking_lot::Mutex;
use pydb::Db;

use crate::keyscan::CursorTable;
use pydb::{EngineKind, SyncPolicy};

/// One `INFO` section: its name as titled (`Server`) and its fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Section {
    /// The title, e.g. `Server`; `INFO server` selects it case-blind.
    pub name: &'static str,
    /// `key:value` fields, in order.
    pub fields: Vec<(String, String)>,
}

impl Section {
    /// An empty section.
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            fields: Vec::new(),
        }
    }

    /// Adds a field.
    pub fn field(mut self, key: impl Into<String>, value: impl ToString) -> Self {
        self.fields.push((key.into(), value.to_string()));
        self
    }
}

/// What the program running the commands adds to `INFO` and `CONFIG GET`.
pub trait Host {
    /// Sections (or fields of the database's sections) to add.
    fn info_sections(&self) -> Vec<Section>;
    /// Configuration parameters to add, `(name, value)`.
    fn config(&self) -> Vec<(&'static str, String)>;
    /// The table of `SCAN` table cursors of this client (see
    /// [`crate::keyscan`]): each server connection has its own.
    fn scan_cursors(&self) -> &Mutex<CursorTable>;
    /// Write commands acknowledged with a success reply, if the host
    /// counts them (the server does): with the engine's `fsync` count it
    /// gives `fsyncs_per_write` in `# Persistence`.
    fn acked_writes(&self) -> Option<u64> {
        None
    }
}

/// The host of the local shell: it adds nothing, and its one user shares
/// one cursor table.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHost;

impl Host for NoHost {
    fn info_sections(&self) -> Vec<Section> {
        Vec::new()
    }
    fn config(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }
    fn scan_cursors(&self) -> &Mutex<CursorTable> {
        static LOCAL_CURSORS: LazyLock<Mutex<CursorTable>> =
            LazyLock::new(|| Mutex::new(CursorTable::default()));
        &LOCAL_CURSORS
    }
}

/// The Redis version pydb reports (`INFO`, `HELLO`): clients pick
/// features by it, and pydb answers the subset of Redis 7.0 it implements.
pub const REDIS_VERSION: &str = "7.0.0";

/// The sections shown by `INFO` without an argument, in order.
const DEFAULT_SECTIONS: &[&str] = &["server", "clients", "stats", "persistence", "keyspace"];

/// Redis's name for a sync policy (`appendfsync`).
pub fn appendfsync(sync: SyncPolicy) -> &'static str {
    match sync {
        SyncPolicy::Always => "always",
        SyncPolicy::Periodic(_) => "everysec",
        SyncPolicy::Never => "no",
    }
}

/// The database's own sections.
pub fn db_sections(db: &Db) -> Vec<Section> {
    let options = db.options();
    let server = Section::new("Server")
        .field("pydb_version", env!("CARGO_PKG_VERSION"))
        // Clients and tools read `redis_version` to pick features; pydb
        // speaks the RESP2 subset of Redis 7.0 that it implements.
        .field("redis_version", REDIS_VERSION)
        .field("redis_mode", "standalone")
        .field("os", std::env::consts::OS)
        .field("arch_bits", usize::BITS)
        .field("process_id", std::process::id())
        .field("engine", options.engine)
        .field("index", options.index)
        .field("encryption", u8::from(db.data_key_id().is_some()))
        .field("compression", options.compression);
    let stats = db.stats();
    let mut persistence = Section::new("Persistence")
        .field("loading", 0)
        .field("engine", stats.engine)
        .field("aof_enabled", u8::from(options.engine.is_persistent()))
        .field("appendfsync", appendfsync(options.sync));
    for (name, value) in &stats.counters {
        persistence = persistence.field(format!("engine_{name}"), value);
    }
    // The engine's log fsyncs since the database was opened (0 for the
    // memory engine, which has no log).
    persistence = persistence.field("wal_fsyncs", wal_fsyncs(&stats));
    let mut keyspace = Section::new("Keyspace");
    match db
        .key_count()
        .and_then(|k| Ok((k, db.expiring_key_count()?)))
    {
        Ok((0, _)) => {}
        // avg_ttl is Redis's running estimate from its expiry sampling;
        // pydb does not keep one, and Redis too reports 0 until it has.
        Ok((keys, expires)) => {
            keyspace = keyspace.field("db0", format!("keys={keys},expires={expires},avg_ttl=0"));
        }
        Err(e) => keyspace = keyspace.field("error", e),
    }
    // The server adds its own counters to this section.
    let expiry = db.txn_manager().stats();
    let stats = Section::new("Stats")
        .field("expired_keys", expiry.expired_keys)
        .field("expire_cycles", expiry.expire_cycles);
    vec![server, stats, persistence, keyspace]
}

/// The `fsync` calls of the engine's write-ahead log, from its counters.
fn wal_fsyncs(stats: &pydb::storage::Stats) -> u64 {
    stats
        .counters
        .iter()
        .find(|(name, _)| *name == "wal_syncs")
        .map_or(0, |(_, value)| *value)
}

/// `fsyncs / writes` with three decimals (`0.000` before any write).
///
/// Below 1, one `fsync` covered several acknowledged writes: group commit
/// at work. Both counts start when the database is opened, so a count of
/// `fsync`s includes the few that opening and rolling segments cost.
pub fn fsyncs_per_write(fsyncs: u64, writes: u64) -> String {
    if writes == 0 {
        return "0.000".into();
    }
    format!("{:.3}", fsyncs as f64 / writes as f64)
}

/// Renders `INFO [section ...]`: the default sections without arguments,
/// every section for `all` or `everything`.
pub fn render(db: &Db, host: &dyn Host, wanted: &[String]) -> String {
    let mut sections = db_sections(db);
    if let Some(writes) = host.acked_writes()
        && let Some(persistence) = sections.iter_mut().find(|s| s.name == "Persistence")
    {
        let fsyncs = persistence
            .fields
            .iter()
            .find(|(key, _)| key == "wal_fsyncs")
            .and_then(|(_, value)| value.parse().ok())
            .unwrap_or(0);
        persistence.fields.extend([
            ("acked_writes".to_string(), writes.to_string()),
            (
                "fsyncs_per_write".to_string(),
                fsyncs_per_write(fsyncs, writes),
            ),
        ]);
    }
    for extra in host.info_sections() {
        match sections.iter_mut().find(|s| s.name == extra.name) {
            Some(section) => section.fields.extend(extra.fields),
            None => sections.push(extra),
        }
    }
    let everything = wanted.is_empty()
        || wanted
            .iter()
            .any(|w| w.eq_ignore_ascii_case("all") || w.eq_ignore_ascii_case("everything"));
    let chosen = |name: &str| {
        if wanted.is_empty() {
            DEFAULT_SECTIONS
                .iter()
                .any(|d| d.eq_ignore_ascii_case(name))
        } else {
            everything
                || wanted.iter().any(|w| w.eq_ignore_ascii_case(name))
                || wanted.iter().any(|w| w.eq_ignore_ascii_case("default"))
                    && DEFAULT_SECTIONS
                        .iter()
                        .any(|d| d.eq_ignore_ascii_case(name))
        }
    };
    // Sections in Redis's order, whoever provided them.
    let rank = |name: &str| {
        DEFAULT_SECTIONS
            .iter()
            .position(|d| d.eq_ignore_ascii_case(name))
            .unwrap_or(DEFAULT_SECTIONS.len())
    };
    sections.sort_by_key(|s| rank(s.name));
    let mut out = String::new();
    for section in sections.iter().filter(|s| chosen(s.name)) {
        if !out.is_empty() {
            out.push_str("\r\n");
        }
        out.push_str("# ");
        out.push_str(section.name);
        out.push_str("\r\n");
        for (key, value) in &section.fields {
            out.push_str(key);
            out.push(':');
            out.push_str(value);
            out.push_str("\r\n");
        }
    }
    out
}

/// The configuration parameters of the database, as `CONFIG GET` names
/// them.
pub fn db_config(db: &Db) -> Vec<(&'static str, String)> {
    let options = db.options();
    let persistent = options.engine.is_persistent();
    vec![
        // No snapshots: durability comes from the log.
        ("save", String::new()),
        (
            "appendonly",
            if persistent { "yes" } else { "no" }.to_string(),
        ),
        ("appendfsync", appendfsync(options.sync).to_string()),
        ("databases", "1".to_string()),
        (
            "dir",
            db.dir()
                .map(|d| d.display().to_string())
                .unwrap_or_default(),
        ),
        ("pydb-engine", options.engine.to_string()),
        (
            "pydb-index",
            if options.engine == EngineKind::Log {
                options.index.to_string()
            } else {
                String::new()
            },
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    struct TestHost;
    impl Host for TestHost {
        fn info_sections(&self) -> Vec<Section> {
            vec![
                Section::new("Server").field("tcp_port", 6380),
                Section::new("Clients").field("connected_clients", 2),
            ]
        }
        fn config(&self) -> Vec<(&'static str, String)> {
            Vec::new()
        }
        fn scan_cursors(&self) -> &Mutex<CursorTable> {
            NoHost.scan_cursors()
        }
    }

    #[test]
    fn info_has_redis_shape_and_merges_host_fields() {
        let db = Db::memory().unwrap();
        db.set("k", "v").unwrap();
        let text = render(&db, &TestHost, &[]);
        assert!(text.starts_with("# Server\r\npydb_version:"), "{text}");
        assert!(
            text.contains("tcp_port:6380\r\n\r\n# Clients\r\nconnected_clients:2\r\n"),
            "{text}"
        );
        assert!(
            text.contains("# Keyspace\r\ndb0:keys=1,expires=0,avg_ttl=0\r\n"),
            "{text}"
        );
        let only = render(&db, &TestHost, &["KEYSPACE".into()]);
        assert_eq!(only, "# Keyspace\r\ndb0:keys=1,expires=0,avg_ttl=0\r\n");
        assert_eq!(render(&db, &NoHost, &["nope".into()]), "");
    }
}
