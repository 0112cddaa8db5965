//! Guards the documentation against drift: every path and link it names exists, every constant it states matches the code, and every flag and default it documents is one the binaries accept.
//!
//! The documents are README.md, docs/**/*.md, every crates/*/README.md and
//! the benchmark READMEs. Each check collects every problem it finds and
//! fails once with the whole list, so one run shows all the drift.
//!
//! The constants are pinned by [`pins`]: a table of (document, text that
//! must appear in it), where the text is built with `format!` from the
//! constant itself. Renaming a constant breaks the build of this test;
//! changing its value makes the text disappear from the document and fails
//! the test. See docs/guide.md, "Keeping the docs true".

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use pydb::db::{DEFAULT_SYNC_INTERVAL, HISTORY_FILE_NAME};
use pydb::{EngineKind, IndexKind, Options, SyncPolicy};

/// The root of the workspace.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The documents checked, as paths relative to the root.
fn documents() -> Vec<String> {
    let root = root();
    let mut docs = vec![
        "README.md".to_string(),
        "benches/README.md".to_string(),
        "benches/redis/README.md".to_string(),
    ];
    for dir in ["docs", "docs/benchmarks", "docs/adr"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if name.ends_with(".md") {
                docs.push(format!("{dir}/{name}"));
            }
        }
    }
    for entry in std::fs::read_dir(root.join("crates")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let readme = format!("crates/{name}/README.md");
        if root.join(&readme).is_file() {
            docs.push(readme);
        }
    }
    docs.sort();
    docs
}

fn read(doc: &str) -> String {
    std::fs::read_to_string(root().join(doc)).unwrap_or_else(|e| panic!("{doc}: {e}"))
}

/// Fails with every problem found, one per line.
fn assert_none(what: &str, problems: &[String]) {
    assert!(
        problems.is_empty(),
        "{} {what}:\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

// ---------------------------------------------------------------------------
// (a) links and paths

/// The targets of the Markdown links `[text](target)` in `text`.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("](") {
        let after = &rest[i + 2..];
        if let Some(end) = after.find(')') {
            let target = after[..end].split_whitespace().next().unwrap_or_default();
            out.push(target.to_string());
        }
        rest = after;
    }
    out
}

/// The anchors of the headings of a Markdown text, as GitHub makes them:
/// lowercase, punctuation dropped, spaces turned into hyphens.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut in_code = false;
    let mut out = BTreeSet::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code || !line.starts_with('#') {
            continue;
        }
        let heading = line.trim_start_matches('#').trim();
        let slug: String = heading
            .to_lowercase()
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                _ => None,
            })
            .collect();
        out.insert(slug);
    }
    out
}

fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/')
}

/// The repository paths a text mentions: words starting with one of the
/// top-level directories. A path followed by `<`, `{`, `*` or `$` is a pattern
/// (`fuzz/artifacts/<target>`, `docs/*.md`, `run-$i.json`) and is left out.
fn mentioned_paths(text: &str) -> Vec<String> {
    const PREFIXES: [&str; 5] = ["crates/", "docs/", "benches/", "xtask/", "fuzz/"];
    let mut out = Vec::new();
    for (i, c) in text.char_indices() {
        if i > 0 && text[..i].chars().next_back().is_some_and(is_path_char) {
            continue;
        }
        if !c.is_ascii_alphabetic() || !PREFIXES.iter().any(|p| text[i..].starts_with(p)) {
            continue;
        }
        let len = text[i..]
            .find(|c: char| !is_path_char(c))
            .unwrap_or(text.len() - i);
        let next = text[i + len..].chars().next();
        if matches!(next, Some('<' | '{' | '*' | '$')) {
            continue;
        }
        let path = text[i..i + len].trim_end_matches(['.', ',', ':']);
        if path.contains("..") {
            continue;
        }
        out.push(path.to_string());
    }
    out
}

#[test]
fn every_link_and_path_exists() {
    let root = root();
    let mut problems = Vec::new();
    let mut anchor_cache: BTreeMap<PathBuf, BTreeSet<String>> = BTreeMap::new();
    let mut anchors_of = |path: &Path| {
        anchor_cache
            .entry(path.to_path_buf())
            .or_insert_with(|| anchors(&std::fs::read_to_string(path).unwrap_or_default()))
            .clone()
    };
    let mut checked = 0;
    for doc in documents() {
        let text = read(&doc);
        let doc_path = root.join(&doc);
        let doc_dir = doc_path.parent().unwrap().to_path_buf();
        for link in links(&text) {
            if link.is_empty() || link.contains("://") || link.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (file, anchor) = match link.split_once('#') {
                Some((f, a)) => (f, Some(a)),
                None => (link.as_str(), None),
            };
            let target = if file.is_empty() {
                doc_path.clone()
            } else {
                doc_dir.join(file)
            };
            if !target.exists() {
                problems.push(format!("{doc}: link to {link}: no such file"));
                continue;
            }
            if let Some(anchor) = anchor
                && target.extension().is_some_and(|e| e == "md")
                && !anchors_of(&target).contains(anchor)
            {
                problems.push(format!(
                    "{doc}: link to {link}: no heading with that anchor"
                ));
            }
        }
        for path in mentioned_paths(&text) {
            checked += 1;
            // A crate README may name a path inside its own crate.
            if !root.join(&path).exists() && !doc_dir.join(&path).exists() {
                problems.push(format!("{doc}: mentions {path}, which does not exist"));
            }
        }
    }
    assert!(checked > 200, "only {checked} links and paths found");
    assert_none("links or paths to nothing", &problems);
}

// ---------------------------------------------------------------------------
// (b) constants

/// `bytes` as ASCII (the magics are printable).
fn ascii(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// `bytes` as lowercase hex pairs separated by spaces.
fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn mib(bytes: u64) -> u64 {
    assert_eq!(bytes % (1 << 20), 0, "{bytes} is not a whole number of MiB");
    bytes >> 20
}

/// How the docs name an index in prose.
fn index_words(index: IndexKind) -> &'static str {
    match index {
        IndexKind::Hash => "hash",
        IndexKind::BTree => "B-tree",
        IndexKind::SkipList => "skip list",
        IndexKind::BPlusTree => "B+tree",
    }
}

/// Every constant the docs state with a value: the document and the text
/// that must appear in it, built from the constant.
fn pins() -> Vec<(&'static str, String)> {
    use pydb::meta::{
        ENGINE_ID_BTREE, ENGINE_ID_LOG, INDEX_ID_BPLUSTREE, INDEX_ID_BTREE, INDEX_ID_HASH,
        INDEX_ID_NONE, INDEX_ID_SKIPLIST, META_CRC_OFFSET, META_ENCRYPTED_CRC_OFFSET,
        META_ENCRYPTED_LEN, META_FILE_NAME, META_FLAG_ENCRYPTED, META_FLAG_LZ4, META_FLAGS_OFFSET,
        META_FORMAT_VERSION, META_LEN, META_MAGIC, META_RESERVED_OFFSET, META_WRAPPED_KEY_OFFSET,
    };
    use pydb_file::SEGMENT_ID_DIGITS;
    use pydb_file::compressed::DEFAULT_CHUNK_SIZE;
    use pydb_file::keys::{MIN_KEY_MATERIAL_LEN, WRAPPED_KEY_LEN};
    use pydb_server::keyscan::MAX_TABLE_CURSORS;
    use pydb_server::pg::{DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_PG_PORT, SERVER_VERSION};
    use pydb_server::server::DEFAULT_PORT;
    use pydb_server::server::resp::Limits;
    use pydb_storage::btree::{meta, page, wal};
    use pydb_storage::log::{entry, hint};
    use pydb_storage::{BTreeOptions, LOCK_FILE_NAME, LogOptions};
    use pydb_wal::record;

    let defaults = Options::default();
    let log = LogOptions::default();
    let btree = BTreeOptions::default();
    let f = "docs/formats.md";
    let a = "docs/architecture.md";
    let g = "docs/guide.md";
    vec![
        (
            a,
            format!(
                "The first pass after open, and every {}th, walk everything.",
                pydb::txn::FULL_PASS_EVERY
            ),
        ),
        (
            a,
            format!(
                "Values of up to {} bytes (62 until session 20) are still stored in the leaves themselves.",
                pydb_storage::MEMORY_INLINE_BYTES
            ),
        ),
        // The PYDB metadata file.
        (
            f,
            format!("`{}` (`{}`)", ascii(&META_MAGIC), hex(&META_MAGIC)),
        ),
        (f, format!("u32 LE, `{META_FORMAT_VERSION}`")),
        (f, format!("CRC-32 of bytes 0..{META_CRC_OFFSET}")),
        (
            f,
            format!("the file is exactly {META_LEN} bytes in versions 1 and {META_FORMAT_VERSION}"),
        ),
        (
            f,
            format!(
                "|     {META_FLAGS_OFFSET} |    1 | flags            | bit 0 (`{META_FLAG_ENCRYPTED:#04x}`) encrypted, bit 1 (`{META_FLAG_LZ4:#04x}`) lz4"
            ),
        ),
        (
            f,
            format!("|     {META_RESERVED_OFFSET} |    1 | reserved         | zero"),
        ),
        (
            f,
            format!(
                "|     {META_WRAPPED_KEY_OFFSET} |  {WRAPPED_KEY_LEN} | wrapped key      | only when encrypted"
            ),
        ),
        (
            f,
            format!(
                "CRC-32 of bytes 0..{META_CRC_OFFSET} (0..{META_ENCRYPTED_CRC_OFFSET} when encrypted)"
            ),
        ),
        (
            f,
            format!(
                "exactly {META_LEN} bytes in versions 1 and 3 without encryption, {META_ENCRYPTED_LEN} with it"
            ),
        ),
        (
            g,
            format!("lz4\n  frames in {} KiB chunks", DEFAULT_CHUNK_SIZE >> 10),
        ),
        (
            g,
            format!("# any content, at least {MIN_KEY_MATERIAL_LEN} bytes"),
        ),
        (a, format!("reads its {META_LEN}-byte metadata file")),
        (
            a,
            format!(
                "(`{}`, `{}`, `{}`)",
                ascii(&META_MAGIC),
                ascii(&record::FILE_MAGIC),
                ascii(&hint::HINT_MAGIC)
            ),
        ),
        (
            "crates/pydb/src/meta.rs",
            format!("engine id: {ENGINE_ID_LOG} = log, {ENGINE_ID_BTREE} = btree"),
        ),
        (
            "crates/pydb/src/meta.rs",
            format!(
                "index id: {INDEX_ID_NONE} = none, {INDEX_ID_HASH} = hash, {INDEX_ID_BTREE} = btree, {INDEX_ID_SKIPLIST} = skiplist, {INDEX_ID_BPLUSTREE} = bplustree"
            ),
        ),
        ("README.md", format!("the `{META_FILE_NAME}` file in")),
        // The record log.
        (
            f,
            format!(
                "### File header ({} bytes, `FILE_HEADER_LEN`)",
                record::FILE_HEADER_LEN
            ),
        ),
        (
            f,
            format!("ASCII `{}` (`FILE_MAGIC`)", ascii(&record::FILE_MAGIC)),
        ),
        (
            f,
            format!("u32 LE, `FORMAT_VERSION` = {}", record::FORMAT_VERSION),
        ),
        (
            f,
            format!(
                "### Record ({0} + `len` bytes, `RECORD_HEADER_LEN` = {0})",
                record::RECORD_HEADER_LEN
            ),
        ),
        (
            f,
            format!(
                "| {} MiB (2^{} bytes)",
                mib(u64::from(record::MAX_PAYLOAD_LEN)),
                record::MAX_PAYLOAD_LEN.trailing_zeros()
            ),
        ),
        (
            "crates/pydb-wal/README.md",
            format!("({} MiB)", mib(u64::from(record::MAX_PAYLOAD_LEN))),
        ),
        (
            f,
            format!(
                "A file shorter than {} bytes is a log",
                record::FILE_HEADER_LEN
            ),
        ),
        // Log engine entries and segments.
        (
            f,
            format!("{:>2}      4     key_len    u32 LE", entry::KEY_LEN_OFFSET),
        ),
        (
            f,
            format!(
                "{:>2}      4     value_len  u32 LE",
                entry::VALUE_LEN_OFFSET
            ),
        ),
        (
            f,
            format!("{}      key_len          key", entry::ENTRY_HEADER_LEN),
        ),
        (
            f,
            format!("`id`: {SEGMENT_ID_DIGITS} zero-padded decimal digits"),
        ),
        // Hint files.
        (f, format!("header ({} bytes)", hint::HINT_HEADER_LEN)),
        (f, format!("magic \"{}\"", ascii(&hint::HINT_MAGIC))),
        (f, format!("version ({}), u32 LE", hint::HINT_VERSION)),
        (
            f,
            format!("entry ({} + key_len bytes)", hint::HINT_ENTRY_HEADER_LEN),
        ),
        (f, format!("CRC-32 of bytes 0..{}", hint::HEADER_CRC_OFFSET)),
        // The B+tree.
        (
            f,
            format!(
                "a power of two from {} to {}, {} by default",
                page::MIN_PAGE_SIZE,
                page::MAX_PAGE_SIZE,
                page::DEFAULT_PAGE_SIZE
            ),
        ),
        (
            f,
            format!(
                "### Common page header (every page, {} bytes)",
                page::HEADER_LEN
            ),
        ),
        (
            f,
            format!("leaf cell (LEAF_CELL_HEADER = {})", page::LEAF_CELL_HEADER),
        ),
        (
            f,
            format!(
                "internal cell (INTERNAL_CELL_HEADER = {})",
                page::INTERNAL_CELL_HEADER
            ),
        ),
        (f, format!("data pages start at {}", page::FIRST_DATA_PAGE)),
        (
            f,
            format!("page number {} doubles as \"none\"", page::NO_PAGE),
        ),
        (f, format!("magic \"{}\"", ascii(&meta::META_MAGIC))),
        (f, format!("u32 format version ({})", meta::FORMAT_VERSION)),
        (
            f,
            format!("(segment << {}) | end offset", wal::SEGMENT_SHIFT),
        ),
        // The B+tree WAL's split ops: kind numbers and the pinned example.
        (f, format!("kind {}  truncate", wal::REC_LEAF_TRUNCATE)),
        (f, format!("kind {}  leaf links", wal::REC_LEAF_LINK)),
        (
            f,
            format!("kind {}  child insert", wal::REC_INTERNAL_INSERT),
        ),
        (f, {
            let truncate = wal::PageOp::Truncate {
                from: bytes::Bytes::from_static(b"m"),
            };
            let link = wal::PageOp::Link { prev: 5, next: 9 };
            let insert = wal::PageOp::InsertChild {
                pos: 2,
                key: bytes::Bytes::from_static(b"m"),
                child: 9,
            };
            [(6, truncate), (6, link), (3, insert)]
                .iter()
                .map(|(page, op)| hex(&wal::encode_op(*page, op).unwrap()))
                .collect::<Vec<_>>()
                .join("\n")
        }),
        (
            f,
            format!(
                "`{}/<segment>.log` (segment numbers in ten decimal digits,\nstarting at `{}`)",
                wal::WAL_DIR,
                wal::segment_path(Path::new(""), 1)
                    .file_stem()
                    .unwrap()
                    .to_string_lossy()
            ),
        ),
        (
            f,
            format!(
                "holds `{LOCK_FILE_NAME}`, the page file `{}`",
                pydb_storage::btree::PAGE_FILE_NAME
            ),
        ),
        (
            a,
            format!("Every page starts with a {}-byte header", page::HEADER_LEN),
        ),
        (
            "crates/pydb-storage/README.md",
            format!(
                "({} KiB\npages, {} MiB buffer pool)",
                btree.page_size >> 10,
                mib(btree.pool_bytes as u64)
            ),
        ),
        (
            "benches/README.md",
            format!(
                "checkpoint when the WAL holds {}x the dirty pages, at least {} MiB and at most {} MiB of WAL (the engine's default)",
                btree.checkpoint_dirty_ratio,
                mib(btree.checkpoint_min_bytes),
                mib(btree.checkpoint_bytes)
            ),
        ),
        // The log engine's defaults, as the benchmark states them.
        (
            "benches/README.md",
            format!(
                "engine defaults otherwise: {} MiB segments, background compaction at {}% dead bytes",
                mib(log.max_segment_size),
                (log.compaction_threshold * 100.0).round()
            ),
        ),
        // The facade.
        (
            a,
            format!(
                "default: {} engine, {} index, `SyncPolicy::{:?}`",
                defaults.engine,
                index_words(defaults.index),
                defaults.sync
            ),
        ),
        (
            "README.md",
            format!(
                "The default: the append-only {} engine, the {} index, and\n    // every write synced",
                defaults.engine,
                index_words(defaults.index)
            ),
        ),
        (
            g,
            format!(
                "`periodic` (every {} ms)",
                DEFAULT_SYNC_INTERVAL.as_millis()
            ),
        ),
        (g, format!("`DIR/{HISTORY_FILE_NAME}`")),
        (g, format!("`~/{}`", pydb_cli::sql::SQL_HISTORY_FILE_NAME)),
        ("README.md", format!("directory as `{HISTORY_FILE_NAME}`")),
        // The server.
        (
            "README.md",
            format!("# listens on 127.0.0.1:{DEFAULT_PORT}"),
        ),
        (a, format!("in a {MAX_TABLE_CURSORS}-entry table of that")),
        (
            g,
            format!(
                "`{}` ({} MiB)",
                Limits::DEFAULT.max_bulk_len,
                mib(Limits::DEFAULT.max_bulk_len as u64)
            ),
        ),
        // Where unsynced writes wait in the process (docs/durability.md).
        (
            "docs/durability.md",
            format!(
                "`LsmOptions::wal_buffer_size` ({} KiB;",
                pydb_storage::LsmOptions::default().wal_buffer_size >> 10
            ),
        ),
        // The PostgreSQL side.
        (
            g,
            format!("pydb server --pg-bind 127.0.0.1:{DEFAULT_PG_PORT}"),
        ),
        (
            g,
            format!(
                "A message over {} MiB",
                mib(DEFAULT_MAX_MESSAGE_BYTES as u64)
            ),
        ),
        (
            g,
            format!("`server_version` {SERVER_VERSION:?}").replace('"', "`"),
        ),
    ]
}

/// `text` with every run of whitespace made one space, so that a pinned
/// text may be wrapped differently in the document.
fn normalize(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn every_documented_constant_matches_the_code() {
    let defaults = Options::default();
    // The prose in `pins` describes these defaults in words; a change here
    // must be written there too.
    assert_eq!(defaults.engine, EngineKind::Log);
    assert!(matches!(defaults.sync, SyncPolicy::Always));
    let mut problems = Vec::new();
    let pins = pins();
    for (doc, text) in &pins {
        let content = normalize(&std::fs::read_to_string(root().join(doc)).unwrap());
        if !content.contains(&normalize(text)) {
            problems.push(format!("{doc} does not say {text:?}"));
        }
    }
    assert!(pins.len() > 40, "only {} pins", pins.len());
    assert_none("documented constants differ from the code", &problems);
}

// ---------------------------------------------------------------------------
// (c) flags and defaults

/// A flag as `--help` or the source declares it: its default, if any.
type Flags = BTreeMap<String, Option<String>>;

/// The flags of `pydb SUB --help` with their defaults.
fn help_flags(sub: &str) -> Flags {
    let out = std::process::Command::new(common::pydb_bin())
        .args([sub, "--help"])
        .output()
        .unwrap();
    assert!(out.status.success(), "pydb {sub} --help failed");
    let text = String::from_utf8(out.stdout).unwrap();
    let mut flags = Flags::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let trimmed = line.trim_start();
        let flag_start = if trimmed.starts_with("--") {
            Some(trimmed)
        } else if trimmed.starts_with('-') && trimmed.get(2..4) == Some(", ") {
            trimmed.get(4..)
        } else {
            None
        };
        if let Some(rest) = flag_start.filter(|r| r.starts_with("--")) {
            let name = rest
                .split(|c: char| c.is_whitespace() || c == '=')
                .next()
                .unwrap()
                .to_string();
            flags.insert(name.clone(), None);
            current = Some(name);
        }
        if let (Some(name), Some(i)) = (&current, line.find("[default: ")) {
            let value = line[i + 10..].split(']').next().unwrap().to_string();
            flags.insert(name.clone(), Some(value));
        }
    }
    flags.remove("--help");
    flags.remove("--version");
    flags
}

/// The flags declared with `#[arg(long ...)]` on the fields of the struct
/// (or enum variant) that starts with the line `start` in the Rust source
/// `path`, with their `default_value(_t)` if any. Clap turns a field
/// `max_kill_ms` into `--max-kill-ms`.
fn source_flags(path: &str, start: &str) -> Flags {
    let text = read(path);
    let body = text
        .split_once(start)
        .unwrap_or_else(|| panic!("{path} has no {start:?}"))
        .1;
    let mut flags = Flags::new();
    let mut pending: Option<Option<String>> = None;
    for line in body.lines() {
        let line = line.trim();
        if line == "}" || line == "}," {
            break;
        }
        if line.starts_with("#[arg(") {
            if !line.contains("long") || line.contains("hide = true") {
                pending = None;
                continue;
            }
            let default = ["default_value_t = ", "default_value = "]
                .iter()
                .find_map(|k| line.split_once(k))
                .map(|(_, v)| {
                    v.split([',', ')'])
                        .next()
                        .unwrap()
                        .trim()
                        .trim_matches('"')
                        .replace('_', "")
                });
            pending = Some(default);
            continue;
        }
        if let Some(default) = pending.take() {
            let field = line
                .trim_start_matches("pub ")
                .split(':')
                .next()
                .unwrap()
                .trim();
            flags.insert(format!("--{}", field.replace('_', "-")), default);
        }
    }
    flags
}

/// The rows of the flag table under the heading `heading` in `doc`: flag
/// and the text of its default cell (`–` for none).
fn documented_flags(doc: &str, heading: &str) -> Flags {
    let text = read(doc);
    let section = text
        .split_once(&format!("{heading}\n"))
        .unwrap_or_else(|| panic!("{doc} has no heading {heading}"))
        .1;
    // The section ends at the next heading outside a code block.
    let mut in_code = false;
    let lines = section.lines().take_while(|l| {
        if l.starts_with("```") {
            in_code = !in_code;
        }
        in_code || !l.starts_with('#')
    });
    let mut flags = Flags::new();
    for line in lines.filter(|l| l.starts_with("| `-")) {
        let cells: Vec<&str> = line.split(" | ").collect();
        let flag = cells[0]
            .trim_start_matches("| `")
            .split([' ', '`'])
            .find(|w| w.starts_with("--"))
            .unwrap()
            .to_string();
        let default = cells
            .get(1)
            .map(|c| {
                c.split(" (")
                    .next()
                    .unwrap()
                    .trim()
                    .trim_matches('`')
                    .to_string()
            })
            .filter(|d| d != "–" && !d.is_empty());
        flags.insert(flag, default);
    }
    flags
}

/// Compares documented flags with the real ones, both ways.
fn compare_flags(what: &str, documented: &Flags, real: &Flags, problems: &mut Vec<String>) {
    for (flag, default) in documented {
        match real.get(flag) {
            None => problems.push(format!("{what}: {flag} is documented but does not exist")),
            Some(real_default) if real_default.as_ref().map(|d| d.replace('_', "")) != default.as_ref().map(|d| d.replace('_', "")) => {
                problems.push(format!(
                    "{what}: {flag} is documented with default {default:?}, the code has {real_default:?}"
                ))
            }
            Some(_) => {}
        }
    }
    for flag in real.keys() {
        if !documented.contains_key(flag) {
            problems.push(format!("{what}: {flag} exists but is not documented"));
        }
    }
}

/// The subcommands of `pydb` that the guide documents.
const SUBCOMMANDS: [&str; 8] = [
    "demo", "shell", "sql", "server", "inspect", "check", "repair", "rekey",
];

#[test]
fn the_guide_documents_every_pydb_flag_with_its_default() {
    let mut problems = Vec::new();
    for sub in SUBCOMMANDS {
        let documented = documented_flags("docs/guide.md", &format!("### `pydb {sub}`"));
        compare_flags(
            &format!("pydb {sub}"),
            &documented,
            &help_flags(sub),
            &mut problems,
        );
    }
    // The subcommands themselves: every one in `pydb --help` has a section.
    let out = std::process::Command::new(common::pydb_bin())
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    let commands = help
        .split_once("Commands:")
        .unwrap()
        .1
        .split("\n\n")
        .next()
        .unwrap();
    for line in commands.lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        if !name.is_empty() && name != "help" && !SUBCOMMANDS.contains(&name) {
            problems.push(format!(
                "pydb {name} exists but docs/guide.md has no section for it"
            ));
        }
    }
    assert_none(
        "differences between docs/guide.md and `pydb --help`",
        &problems,
    );
}

#[test]
fn xtask_and_bench_flags_are_declared_with_their_documented_defaults() {
    let mut problems = Vec::new();
    let mut crashtest = source_flags("xtask/src/crashtest.rs", "pub struct CrashArgs {");
    crashtest.extend(source_flags("xtask/src/main.rs", "    Crashtest {"));
    let tasks: [(&str, Flags); 4] = [
        ("crashtest", crashtest),
        (
            "slt",
            source_flags("xtask/src/slt.rs", "pub struct SltArgs {"),
        ),
        (
            "fuzz",
            source_flags("xtask/src/fuzz.rs", "pub struct FuzzArgs {"),
        ),
        ("ci", source_flags("xtask/src/ci.rs", "pub struct CiArgs {")),
    ];
    for (task, real) in &tasks {
        let documented = documented_flags("docs/guide.md", &format!("### `cargo xtask {task}`"));
        compare_flags(
            &format!("cargo xtask {task}"),
            &documented,
            real,
            &mut problems,
        );
    }
    // pydb-bench: every flag of its table exists, and every flag exists in
    // the table. Its defaults depend on --quick, so the table states them
    // in words and only the flags are compared.
    let real: Flags = source_flags("benches/src/main.rs", "struct Args {")
        .into_keys()
        .map(|k| (k, None))
        .collect();
    let documented: Flags = documented_flags("benches/README.md", "## Running it")
        .into_keys()
        .map(|k| (k, None))
        .collect();
    compare_flags("pydb-bench", &documented, &real, &mut problems);
    assert_none(
        "differences between the docs and the xtask/pydb-bench sources",
        &problems,
    );
}

/// Every `pydb SUB ... --flag` (or `cargo run --release -- SUB ... --flag`)
/// written on one line anywhere in the docs uses a flag `SUB` has.
#[test]
fn every_pydb_flag_named_in_the_docs_exists() {
    let help: BTreeMap<&str, Flags> = SUBCOMMANDS.iter().map(|s| (*s, help_flags(s))).collect();
    let mut problems = Vec::new();
    let mut seen = 0;
    for doc in documents() {
        for line in read(&doc).lines() {
            let words: Vec<&str> = line
                .split(|c: char| c.is_whitespace() || c == '`' || c == '(' || c == ')')
                .filter(|w| !w.is_empty())
                .collect();
            for (i, w) in words.iter().enumerate() {
                let sub = match (*w, words.get(i + 1)) {
                    ("pydb", Some(s)) | ("--", Some(s)) if help.contains_key(*s) => *s,
                    _ => continue,
                };
                // The flags up to the next command on the line.
                for word in words[i + 2..]
                    .iter()
                    .take_while(|w| !matches!(**w, "pydb" | "|" | "#" | "cargo" | "redis-cli"))
                {
                    if let Some(flag) = word.strip_prefix("--").filter(|f| !f.is_empty()) {
                        let flag =
                            format!("--{}", flag.split(['=', ',', '.', ';']).next().unwrap());
                        seen += 1;
                        if !help[sub].contains_key(&flag) {
                            problems.push(format!("{doc}: `pydb {sub} {flag}`: no such flag"));
                        }
                    }
                }
            }
        }
    }
    assert!(seen > 10, "only {seen} flags found in the docs");
    assert_none("flags the docs name that pydb does not have", &problems);
}

/// The README states the shell's and the server's defaults in prose; they
/// must be the ones `--help` prints.
#[test]
fn readme_defaults_are_the_binary_defaults() {
    let shell = help_flags("shell");
    let server = help_flags("server");
    let default = |flags: &Flags, flag: &str| -> String {
        flags
            .get(flag)
            .cloned()
            .flatten()
            .unwrap_or_else(|| panic!("{flag} has no default"))
    };
    let bulk: u64 = default(&server, "--max-bulk-bytes").parse().unwrap();
    let mut needles = vec![
        format!("`--dir DIR` (default `{}`)", default(&shell, "--dir")),
        format!("(default `{}`: every write", default(&shell, "--sync")),
        format!(
            "`--bind HOST:PORT` (default `{}`,",
            default(&server, "--bind")
        ),
        format!(
            "`--maxclients N` (default {},",
            default(&server, "--maxclients")
        ),
        format!("`--max-bulk-bytes N` (default {} MiB,", mib(bulk)),
        format!(
            "long; default {}, 0 never)",
            default(&server, "--write-timeout")
        ),
        format!(
            "(default `{}`, as Redis's)",
            default(&server, "--client-output-buffer-limit")
        ),
        format!(
            "clients; {}, the default, never does)",
            default(&server, "--timeout")
        ),
    ];
    let engines: Vec<&str> = pydb::EngineKind::ALL.iter().map(|e| e.name()).collect();
    needles.push(format!("`--engine {}`", engines.join("|")));
    let readme = normalize(&read("README.md"));
    let problems: Vec<String> = needles
        .iter()
        .filter(|n| !readme.contains(&normalize(n)))
        .map(|n| format!("README.md does not say {n:?}"))
        .collect();
    assert_none("README defaults differ from `pydb --help`", &problems);
}

/// The `rust-version = "..."` of a Cargo.toml.
fn rust_version(manifest: &str) -> String {
    read(manifest)
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or_else(|| panic!("{manifest} has no rust-version"))
        .to_string()
}

/// The Rust versions the docs ask for are the ones the manifests declare.
#[test]
fn documented_rust_versions_are_the_manifests() {
    let workspace = rust_version("Cargo.toml");
    let bench = rust_version("benches/Cargo.toml");
    let needles = [
        ("README.md", format!("Rust {workspace} or newer")),
        ("docs/guide.md", format!("**Rust {workspace} or newer**")),
        ("docs/guide.md", format!("needs **Rust {bench}**")),
    ];
    let problems: Vec<String> = needles
        .iter()
        .filter(|(doc, n)| !normalize(&read(doc)).contains(&normalize(n)))
        .map(|(doc, n)| format!("{doc} does not say {n:?}"))
        .collect();
    assert_none("Rust versions differ from the manifests", &problems);
}
