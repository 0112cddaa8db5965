//! `pydb inspect`: every record of a pydb file, byte by byte, with its
//! checksum verdict; and the walk that `pydb check` runs over every file.
//!
//! The file type comes from its magic, never from its name, so a renamed or
//! stray file is still read correctly. The one exception is the B+tree page
//! file, which starts with a page checksum rather than a magic: it is known
//! by the meta magic inside page 0, or by its name `pages` when page 0 is
//! damaged (see [`btree`]). An LSM table has its magic in its footer, the
//! last bytes of the file, and an LSM manifest is a record log told from a
//! WAL by its name `MANIFEST-NNNNNN`; both are described by the LSM
//! module's own describers (`pydb_storage::lsm`), and this module only
//! prints them. The output is meant to be put next
//! to docs/formats.md: a hex dump (`hexdump -C` style, absolute file
//! offsets) of each header and record, then its fields by name. A test
//! (`tests/formats.rs`) runs `pydb inspect` on freshly written files and
//! compares the output with the examples in docs/formats.md, so the
//! documented layout cannot drift from the code.
//!
//! The walker trusts nothing it reads: every length is checked against the
//! format's limit and the bytes really in the file before it is used, and a
//! damaged record is reported and stepped over, never decoded. Like the
//! WAL's recovery it tells a *torn tail* (bad bytes with no valid record
//! after them: an interrupted write, which recovery cuts off) from *damage*
//! (a bad record followed by valid ones: data lost in the middle).

use std::fmt::Write as _;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use pydb_file::MonolithicFile;
use pydb_wal::record::{
    FILE_CRC_OFFSET, FILE_MAGIC, FILE_VERSION_OFFSET, FLAG_BATCH_CONTINUES, RECORD_HEADER_LEN,
};
use pydb_wal::verify::{HeaderVerdict, Step, Walker};

use pydb_storage::log::SEGMENT_EXTENSION;
use pydb_storage::log::describe::{HintStop, walk_hint};
use pydb_storage::log::entry::{EntryKind, decode_entry};
use pydb_storage::log::hint::{
    ENTRY_COUNT_OFFSET, FIRST_SEQ_OFFSET, HEADER_CRC_OFFSET, HINT_ENTRY_HEADER_LEN,
    HINT_HEADER_LEN, HINT_MAGIC, HINT_VERSION, LAST_SEQ_OFFSET, SEGMENT_ID_OFFSET,
    SEGMENT_LEN_OFFSET, VERSION_OFFSET,
};
use pydb_storage::lsm::table::{FOOTER_LEN, TABLE_MAGIC};

use pydb::meta;
use pydb::{Compression, EngineKind};
use pydb_file::compressed::COMPRESSED_MAGIC;
use pydb_file::encrypted::ENCRYPTED_MAGIC;

use crate::decorated::{self, Stack, StorageArgs};

pub mod btree;
use pydb::{Error, Result};
use pydb_server::tokenize::quote;

/// How many bytes of a record the hex dump shows, and how many bytes of a
/// key, value or payload are printed.
pub const SHOW_BYTES: usize = 64;

/// The kinds of file `pydb inspect` knows, by magic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileKind {
    /// The directory metadata file `PYDB` (magic `PYDBMETA`).
    Metadata,
    /// A record log of `pydb-wal` (magic `PYDB-LOG`). In a directory of
    /// the log engine it is a segment, and its payloads are log entries.
    RecordLog,
    /// A hint file of the log engine (magic `PYDBHINT`).
    Hint,
    /// The page file `pages` of the B+tree engine (meta magic `PYDBTREE`
    /// at byte 20 of page 0).
    BTreePages,
    /// An empty file: the lock file, or a log whose creation was cut short.
    Empty,
    /// A whole LSM database directory, verified by the engine's own
    /// `lsm::verify_dir` (manifest, every live table block by block, WALs).
    LsmDirectory,
    /// An LSM table `NNNNNN.sst` (magic `pydbSST\0` in its footer, the
    /// last bytes of the file), described by `lsm::describe_table`.
    LsmTable,
    /// An LSM manifest `MANIFEST-NNNNNN`: a record log (magic `PYDB-LOG`)
    /// of version edits, described by `lsm::describe_manifest`.
    LsmManifest,
    /// A file stored through the encryption or compression decorator
    /// (magic `PYDBENCF` or `PYDBLZ4F`) whose plaintext is not a kind
    /// this tool walks: its blocks and frames are verified.
    Decorated,
    /// Not a file: the SQL tables and indexes of the database, verified by
    /// `pydb_query::check` through an opened database (every row decodes,
    /// every index entry matches its row and every row its index entries).
    SqlData,
}

impl FileKind {
    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            FileKind::Metadata => "directory metadata",
            FileKind::RecordLog => "record log",
            FileKind::Hint => "hint file",
            FileKind::BTreePages => "B+tree page file",
            FileKind::Empty => "empty file",
            FileKind::LsmDirectory => "LSM database",
            FileKind::LsmTable => "LSM table",
            FileKind::LsmManifest => "LSM manifest",
            FileKind::Decorated => "encrypted or compressed file",
            FileKind::SqlData => "SQL data",
        }
    }
}

/// One place where a file failed a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// The offset of the bad header or record.
    pub offset: u64,
    /// What check failed.
    pub reason: String,
}

/// What the walk over one file found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The file.
    pub path: PathBuf,
    /// Its kind.
    pub kind: FileKind,
    /// Records (or metadata fields sets) that verified.
    pub records: u64,
    /// Damage: bad data that recovery cannot explain as a torn tail.
    pub damage: Vec<Damage>,
    /// Bytes at the end that an interrupted write left behind; recovery cuts
    /// them off on open. Not damage. Counts `zero_bytes` too.
    pub torn_bytes: u64,
    /// Of `torn_bytes`, the zeros that end the file: space the log engine
    /// writes ahead of its end (preallocation), not an interrupted write.
    pub zero_bytes: u64,
}

impl Report {
    /// An empty report on `path`, to be filled by a verifier.
    pub fn new_for(path: &Path, kind: FileKind) -> Self {
        Self::new(path, kind)
    }

    fn new(path: &Path, kind: FileKind) -> Self {
        Self {
            path: path.to_path_buf(),
            kind,
            records: 0,
            damage: Vec::new(),
            torn_bytes: 0,
            zero_bytes: 0,
        }
    }

    /// Whether the file verified (a torn tail is not damage).
    pub fn is_ok(&self) -> bool {
        self.damage.is_empty()
    }
}

/// A read-only view of a file with a read-ahead window, so that walking a
/// log costs a few large reads rather than two small ones per record.
struct Source {
    path: PathBuf,
    file: std::fs::File,
    len: u64,
    window: Vec<u8>,
    window_start: u64,
}

/// Bytes read ahead at a time.
const WINDOW: usize = 1 << 20;

impl Source {
    fn open(path: &Path) -> Result<Self> {
        // Checked before opening: opening a FIFO for reading blocks until
        // a writer comes.
        ensure_regular_file(path)?;
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        if len == 0 {
            // A file of /proc or /sys says it is empty and still holds
            // bytes: its size cannot be trusted, so neither can a walk.
            let mut probe = [0u8; 1];
            if file.read_at(&mut probe, 0).is_ok_and(|n| n > 0) {
                return Err(Error::InvalidArgument(format!(
                    "{} reports a size of 0 bytes but holds data (a file of a virtual \
                     filesystem such as /proc); pydb reads only regular files",
                    path.display()
                )));
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            file,
            len,
            window: Vec::new(),
            window_start: 0,
        })
    }

    /// The bytes `offset..offset + len`, or fewer if the file ends first.
    fn bytes(&mut self, offset: u64, len: usize) -> Result<&[u8]> {
        let available = self.len.saturating_sub(offset);
        let len = len.min(usize::try_from(available).unwrap_or(usize::MAX));
        let window_end = self.window_start + self.window.len() as u64;
        if offset < self.window_start || offset + len as u64 > window_end {
            let want = len
                .max(WINDOW)
                .min(usize::try_from(available).unwrap_or(usize::MAX));
            self.window.resize(want, 0);
            self.file
                .read_exact_at(&mut self.window, offset)
                .map_err(|e| Error::io(&self.path, e))?;
            self.window_start = offset;
        }
        let local = usize::try_from(offset - self.window_start).unwrap_or(usize::MAX);
        Ok(self.window.get(local..local + len).unwrap_or(&[]))
    }
}

/// What kind of thing `file_type` is, in words, if not a regular file.
pub fn special_kind(file_type: std::fs::FileType) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    if file_type.is_file() {
        None
    } else if file_type.is_dir() {
        Some("a directory")
    } else if file_type.is_fifo() {
        Some("a FIFO")
    } else if file_type.is_char_device() {
        Some("a character device")
    } else if file_type.is_block_device() {
        Some("a block device")
    } else if file_type.is_socket() {
        Some("a socket")
    } else {
        Some("not a regular file")
    }
}

/// Refuses anything but a regular file (following symbolic links): a
/// device never ends, a FIFO blocks the reader, and neither is a pydb file.
pub fn ensure_regular_file(path: &Path) -> Result<()> {
    let metadata = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    match special_kind(metadata.file_type()) {
        None => Ok(()),
        Some(kind) => Err(Error::InvalidArgument(format!(
            "{} is {kind}; pydb inspect reads only regular files{}",
            path.display(),
            if metadata.is_dir() {
                " (`pydb check DIR` checks a database directory)"
            } else {
                ""
            }
        ))),
    }
}

/// Finds the kind of the file at `path` from its first bytes.
pub fn detect(path: &Path) -> Result<FileKind> {
    let mut source = Source::open(path)?;
    if source.len == 0 {
        return Ok(FileKind::Empty);
    }
    let head = source.bytes(0, 32)?.to_vec();
    let head = head.as_slice();
    let magic = head.get(..8).unwrap_or(head);
    if magic == meta::META_MAGIC {
        Ok(FileKind::Metadata)
    } else if magic == FILE_MAGIC && is_manifest_name(path) {
        Ok(FileKind::LsmManifest)
    } else if magic == FILE_MAGIC {
        Ok(FileKind::RecordLog)
    } else if magic == HINT_MAGIC {
        Ok(FileKind::Hint)
    } else if btree::is_page_file(path, head) {
        Ok(FileKind::BTreePages)
    } else if has_table_footer(&mut source)? {
        Ok(FileKind::LsmTable)
    } else {
        Err(Error::corrupted(
            path,
            0,
            format!("not a pydb file (unknown magic {})", quote(magic)),
        ))
    }
}

/// Whether `path` is named like an LSM manifest (`MANIFEST-` and a number).
/// A manifest is a plain record log, so its name is what tells it from a
/// WAL.
fn is_manifest_name(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("MANIFEST-"))
        .is_some_and(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
}

/// Whether the file ends with an LSM table footer: its magic sits
/// [`TABLE_MAGIC_FROM_END`] bytes before the end of the file.
fn has_table_footer(source: &mut Source) -> Result<bool> {
    let footer_len = FOOTER_LEN as u64;
    if source.len < footer_len {
        return Ok(false);
    }
    let at = source.len - TABLE_MAGIC_FROM_END;
    Ok(source.bytes(at, TABLE_MAGIC.len())? == TABLE_MAGIC)
}

/// How far from the end of a table its footer magic starts: the footer is
/// the last [`FOOTER_LEN`] bytes and holds the magic at bytes 40..48.
const TABLE_MAGIC_FROM_END: u64 = (FOOTER_LEN - 40) as u64;

/// What `pydb inspect` shows; the default is everything.
#[derive(Debug, Clone, Default)]
pub struct InspectOptions {
    /// Show only this page of a B+tree page file (its meta copies are
    /// still summarized in the first lines).
    pub page: Option<u32>,
    /// The key (and compression) of an encrypted or compressed database.
    pub storage: StorageArgs,
}

/// Prints every record of the file at `path` to `out` and returns what the
/// walk found.
pub fn inspect(path: &Path, out: &mut dyn Write) -> Result<Report> {
    inspect_with(path, InspectOptions::default(), out)
}

/// [`inspect`] with options.
pub fn inspect_with(path: &Path, options: InspectOptions, out: &mut dyn Write) -> Result<Report> {
    let head = {
        let mut source = Source::open(path)?;
        source.bytes(0, 8)?.to_vec()
    };
    if decorated::is_decorated(&head) {
        let stack = match Stack::for_file(path, &options.storage)? {
            Some(stack) => stack,
            // A file copied out of its directory: its magic tells the
            // outer layer, and only a compressed file opens without PYDB.
            None => Stack {
                dir: path.parent().unwrap_or(Path::new(".")).to_path_buf(),
                compression: if head == COMPRESSED_MAGIC {
                    Compression::Lz4
                } else {
                    Compression::None
                },
                encrypted: head == ENCRYPTED_MAGIC,
                data_key: None,
            },
        };
        let mut text = String::new();
        let report = inspect_decorated(path, &stack, &mut text)?;
        out.write_all(text.as_bytes())
            .map_err(|e| Error::io("<stdout>", e))?;
        return Ok(report);
    }
    let kind = detect(path)?;
    if options.page.is_some() && kind != FileKind::BTreePages {
        return Err(Error::InvalidArgument(format!(
            "--page applies to a B+tree page file; {} is a {}",
            path.display(),
            kind.name()
        )));
    }
    if kind == FileKind::BTreePages {
        // Written page by page: a page file can be gigabytes.
        return Ok(btree::inspect_page_file(path, options.page, out)?.report);
    }
    let mut text = String::new();
    let report = match kind {
        // Handled above; kept in the match so a new kind must be placed.
        FileKind::BTreePages | FileKind::LsmDirectory | FileKind::Decorated | FileKind::SqlData => {
            Report::new(path, kind)
        }
        FileKind::LsmTable => inspect_lsm_table(path, &mut text)?,
        FileKind::LsmManifest => inspect_lsm_manifest(path, &mut text)?,
        FileKind::Metadata => inspect_metadata(path, &mut text)?,
        FileKind::RecordLog => inspect_record_log(path, &mut text)?,
        FileKind::Hint => inspect_hint(path, &mut text)?,
        FileKind::Empty => {
            text.push_str("empty file (the LOCK file, or a log whose creation was cut short)\n");
            Report::new(path, kind)
        }
    };
    out.write_all(text.as_bytes())
        .map_err(|e| Error::io("<stdout>", e))?;
    Ok(report)
}

/// Appends a `hexdump -C` style dump of `bytes`, which start at file offset
/// `base`.
pub fn hex_dump(base: u64, bytes: &[u8], out: &mut String) {
    for (i, line) in bytes.chunks(16).enumerate() {
        let _ = write!(out, "{:08x} ", base + (i * 16) as u64);
        for col in 0..16 {
            if col == 8 {
                out.push(' ');
            }
            match line.get(col) {
                Some(b) => {
                    let _ = write!(out, " {b:02x}");
                }
                None => out.push_str("   "),
            }
        }
        out.push_str("  |");
        for &b in line {
            out.push(if (0x20..0x7f).contains(&b) {
                char::from(b)
            } else {
                '.'
            });
        }
        out.push_str("|\n");
    }
}

/// `bytes` quoted and escaped, cut to [`SHOW_BYTES`] with the full length
/// noted when longer.
pub fn show(bytes: &[u8]) -> String {
    match bytes.get(..SHOW_BYTES) {
        Some(head) if bytes.len() > SHOW_BYTES => {
            format!("{}... ({} bytes)", quote(head), bytes.len())
        }
        _ => quote(bytes),
    }
}

fn inspect_metadata(path: &Path, out: &mut String) -> Result<Report> {
    let mut source = Source::open(path)?;
    let mut report = Report::new(path, FileKind::Metadata);
    // Far more than a metadata file: enough to show what is wrong.
    let bytes = source.bytes(0, 4096)?.to_vec();
    let _ = writeln!(out, "directory metadata, {} bytes", source.len);
    // The whole file when it is as long as an encrypted one, or less.
    let shown = SHOW_BYTES.max(meta::META_ENCRYPTED_LEN);
    hex_dump(0, bytes.get(..shown).unwrap_or(&bytes), out);
    let field = |out: &mut String, offset: usize, name: &str, value: String| {
        let _ = writeln!(out, "{offset:>6}  {name:<15} {value}");
    };
    field(
        out,
        meta::META_MAGIC_OFFSET,
        "magic",
        quote(&meta::META_MAGIC),
    );
    let fields = meta::fields(&bytes);
    if let Some(version) = fields.version {
        field(
            out,
            meta::META_VERSION_OFFSET,
            "format_version",
            version.to_string(),
        );
    }
    if let Some(id) = fields.engine {
        let name = meta::engine_from_id(id).map_or("unknown", |e| e.name());
        field(
            out,
            meta::META_ENGINE_OFFSET,
            "engine",
            format!("{id} ({name})"),
        );
    }
    if let Some(id) = fields.index {
        let name = match meta::index_from_id(id) {
            Some(Some(index)) => index.name(),
            Some(None) => "none",
            None => "unknown",
        };
        field(
            out,
            meta::META_INDEX_OFFSET,
            "index",
            format!("{id} ({name})"),
        );
    }
    if let Some(flags) = fields.flags {
        let mut names = Vec::new();
        if flags & meta::META_FLAG_ENCRYPTED != 0 {
            names.push("encrypted");
        }
        if flags & meta::META_FLAG_LZ4 != 0 {
            names.push("lz4");
        }
        if names.is_empty() {
            names.push("plain");
        }
        field(
            out,
            meta::META_FLAGS_OFFSET,
            "flags",
            format!("{flags:#04x} ({})", names.join(", ")),
        );
    }
    if let Some(reserved) = fields.reserved {
        field(
            out,
            meta::META_RESERVED_OFFSET,
            "reserved",
            format!("{reserved:#04x}"),
        );
    }
    if let Some(id) = fields.data_key_id {
        let id: String = id.iter().map(|b| format!("{b:02x}")).collect();
        field(
            out,
            meta::META_WRAPPED_KEY_OFFSET,
            "wrapped_key",
            format!(
                "{} bytes, data key id {id}",
                pydb_file::keys::WRAPPED_KEY_LEN
            ),
        );
    }
    if let Some(stored) = fields.stored_crc {
        let computed = fields.computed_crc.unwrap_or_default();
        let verdict = if stored == computed {
            "ok".to_string()
        } else {
            format!("BAD (computed {computed:#010x})")
        };
        field(
            out,
            fields.crc_offset,
            "crc32",
            format!("{stored:#010x} {verdict}"),
        );
    }
    match meta::decode(path, &bytes) {
        Ok(_) => {
            report.records = 1;
            out.push_str("verdict: ok\n");
        }
        Err(Error::Corrupted { offset, reason, .. }) => {
            let _ = writeln!(out, "verdict: DAMAGED at offset {offset}: {reason}");
            report.damage.push(Damage { offset, reason });
        }
        Err(e) => {
            let _ = writeln!(out, "verdict: {e}");
            report.damage.push(Damage {
                offset: 0,
                reason: e.to_string(),
            });
        }
    }
    Ok(report)
}

/// Whether the record log at `path` is a segment of the log engine, whose
/// payloads are log entries: it is named `<id>.log` as the engine names its
/// segments, in a directory whose `PYDB` names the log engine. Anything
/// else (a WAL of another engine, a file copied out of its directory) is
/// shown as raw records.
fn holds_log_entries(path: &Path) -> bool {
    let named_as_segment = path.extension().is_some_and(|e| e == SEGMENT_EXTENSION)
        && path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(pydb_file::parse_id)
            .is_some();
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    named_as_segment && matches!(meta::read(dir), Ok(Some(m)) if m.engine == EngineKind::Log)
}

/// The name of an entry kind, as `pydb inspect` prints it.
fn kind_name(kind: Option<EntryKind>) -> &'static str {
    match kind {
        Some(EntryKind::Set) => "set",
        Some(EntryKind::Delete) => "delete",
        Some(EntryKind::Begin) => "begin",
        Some(EntryKind::Seal) => "seal",
        None => "unknown",
    }
}

/// Prints the log entry in `payload`; returns why it is not one, if so.
fn describe_entry(payload: &[u8], out: &mut String) -> Option<String> {
    match decode_entry(&bytes::Bytes::copy_from_slice(payload)) {
        Ok(e) => {
            let _ = write!(
                out,
                "  entry: seq {}, kind {} ({})",
                e.seq,
                e.kind as u8,
                kind_name(Some(e.kind))
            );
            match e.kind {
                EntryKind::Set => {
                    let _ = write!(out, ", key {}, value {}", show(&e.key), show(&e.value));
                }
                EntryKind::Delete => {
                    let _ = write!(out, ", key {}", show(&e.key));
                }
                EntryKind::Begin | EntryKind::Seal => {}
            }
            out.push('\n');
            None
        }
        Err(err) => {
            let _ = writeln!(out, "  entry: BAD ({err})");
            Some(format!("record holds no valid log entry: {err}"))
        }
    }
}

fn inspect_record_log(path: &Path, out: &mut String) -> Result<Report> {
    let file = MonolithicFile::open_read_only(path).map_err(pydb_storage::Error::from)?;
    inspect_record_log_in(path, &file, out)
}

/// Walks the record log `file` (the file at `path`, or its plaintext
/// through the decorators: offsets are then plaintext offsets).
fn inspect_record_log_in(
    path: &Path,
    file: &dyn pydb_file::File,
    out: &mut String,
) -> Result<Report> {
    let storage = |e: pydb_wal::Error| Error::from(pydb_storage::Error::from(e));
    let walker = Walker::open(file).map_err(storage)?;
    let mut report = Report::new(path, FileKind::RecordLog);
    let file_len = walker.file_len();
    let entries = holds_log_entries(path);
    let redo = if entries {
        None
    } else {
        btree::redo_context(path)
    };
    let _ = writeln!(
        out,
        "record log, {file_len} bytes{}",
        if entries {
            " (a segment of the log engine)"
        } else if redo.is_some() {
            " (a segment of the B+tree WAL)"
        } else {
            ""
        }
    );

    // File header.
    out.push_str("file header at offset 0\n");
    hex_dump(0, walker.header_bytes(), out);
    let field = |out: &mut String, offset: usize, name: &str, value: String| {
        let _ = writeln!(out, "{offset:>6}  {name:<15} {value}");
    };
    field(out, 0, "magic", quote(&FILE_MAGIC));
    match walker.header() {
        HeaderVerdict::Read {
            version,
            stored_crc: stored,
            computed_crc: computed,
            ..
        } => {
            field(
                out,
                FILE_VERSION_OFFSET,
                "format_version",
                version.to_string(),
            );
            if stored == computed {
                field(out, FILE_CRC_OFFSET, "crc32", format!("{stored:#010x} ok"));
            } else {
                field(
                    out,
                    FILE_CRC_OFFSET,
                    "crc32",
                    format!("{stored:#010x} BAD (computed {computed:#010x})"),
                );
            }
            if version > pydb_wal::FORMAT_VERSION {
                let _ = writeln!(
                    out,
                    "format version {version} is newer than this build reads ({}); stopping",
                    pydb_wal::FORMAT_VERSION
                );
                return Err(Error::UnsupportedVersion {
                    path: path.to_path_buf(),
                    found: version,
                    supported: pydb_wal::FORMAT_VERSION,
                });
            }
        }
        HeaderVerdict::Short => {
            // A header cut short: the log's creation was interrupted.
            let _ = writeln!(
                out,
                "file header cut short at {file_len} bytes (creation interrupted; recovery starts the log anew)"
            );
            report.torn_bytes = file_len;
            return Ok(report);
        }
    }

    let walked = walker
        .walk(&mut |step| match step {
            Step::Record {
                index,
                offset: pos,
                flags,
                crc,
                bytes,
            } => {
                let payload = bytes.get(RECORD_HEADER_LEN..).unwrap_or(&[]);
                let _ = writeln!(
                    out,
                    "record {index} at offset {pos}: len {}, flags {flags:#04x} ({}), crc32 {crc:#010x} ok",
                    payload.len(),
                    if flags & FLAG_BATCH_CONTINUES != 0 {
                        "batch continues"
                    } else {
                        "end of batch"
                    },
                );
                hex_dump(pos, bytes.get(..SHOW_BYTES).unwrap_or(bytes), out);
                if bytes.len() > SHOW_BYTES {
                    let _ = writeln!(out, "          ... {} more bytes", bytes.len() - SHOW_BYTES);
                }
                if entries {
                    describe_entry(payload, out)
                } else if let Some(ctx) = redo {
                    btree::describe_redo(payload, ctx, out)
                } else {
                    let _ = writeln!(out, "  payload {}", show(payload));
                    None
                }
            }
            Step::Bad {
                offset: pos,
                reason,
                header,
                shown,
                next_valid,
                torn_from: from,
                zeros_from,
            } => {
                let _ = write!(out, "bad bytes at offset {pos}: {reason}");
                if let Some(h) = header {
                    let _ = write!(
                        out,
                        " (header says len {}, flags {:#04x}, crc32 {:#010x}",
                        h.len, h.flags, h.crc
                    );
                    if h.plausible() {
                        out.push_str(", checksum BAD");
                    }
                    out.push(')');
                }
                out.push('\n');
                hex_dump(pos, shown.get(..SHOW_BYTES).unwrap_or(shown), out);
                match next_valid {
                    Some(next) => {
                        let _ = writeln!(
                            out,
                            "DAMAGED: a valid record follows at offset {next}; {} bytes are lost",
                            next - pos
                        );
                    }
                    // Zeros that end the file are space the log engine
                    // writes ahead of its end (preallocation), not a write
                    // that was cut short; the bytes before them are.
                    None if zeros_from <= from => {
                        let _ = writeln!(
                            out,
                            "preallocated zeros: {} bytes from offset {from} (space written ahead of the end; recovery cuts them off)",
                            file_len - from
                        );
                    }
                    None if zeros_from < file_len => {
                        let _ = writeln!(
                            out,
                            "torn tail: {} bytes from offset {from} (an interrupted write), then {} bytes of preallocated zeros; recovery cuts both off",
                            zeros_from - from,
                            file_len - zeros_from
                        );
                    }
                    None => {
                        let _ = writeln!(
                            out,
                            "torn tail: {} bytes from offset {from} (an interrupted write; recovery cuts them off)",
                            file_len - from
                        );
                    }
                }
                None
            }
            Step::OpenBatch { from, records } => {
                let _ = writeln!(
                    out,
                    "torn tail: the last batch ({records} records from offset {from}) is not closed; recovery drops it"
                );
                None
            }
        })
        .map_err(storage)?;
    report.records = walked.records;
    report.torn_bytes = walked.torn_bytes;
    report.zero_bytes = walked.zero_bytes;
    report.damage = walked
        .damage
        .into_iter()
        .map(|d| Damage {
            offset: d.offset,
            reason: d.reason,
        })
        .collect();
    let _ = write!(
        out,
        "summary: {} records ok, {} damaged, {} torn bytes",
        report.records,
        report.damage.len(),
        report.torn_bytes
    );
    if report.zero_bytes > 0 {
        let _ = write!(out, " ({} of them preallocated zeros)", report.zero_bytes);
    }
    out.push('\n');
    Ok(report)
}

/// Turns what an LSM describer returned into a report: its text and an ok
/// verdict, or the damage it found (file and offset) as a verdict line.
/// Errors other than damage (I/O) are passed up.
fn lsm_verdict<T: std::fmt::Display>(
    path: &Path,
    kind: FileKind,
    described: pydb_storage::Result<T>,
    records: impl FnOnce(&T) -> u64,
    out: &mut String,
) -> Result<Report> {
    let mut report = Report::new(path, kind);
    match described {
        Ok(found) => {
            let _ = write!(out, "{found}");
            report.records = records(&found);
            out.push_str("verdict: ok\n");
        }
        Err(e) if e.is_corruption() => {
            let (offset, reason) = match &e {
                pydb_storage::Error::File(pydb_file::Error::Corrupted {
                    offset, reason, ..
                })
                | pydb_storage::Error::Wal(pydb_wal::Error::File(pydb_file::Error::Corrupted {
                    offset,
                    reason,
                    ..
                })) => (*offset, reason.clone()),
                _ => (0, e.to_string()),
            };
            let _ = writeln!(out, "verdict: DAMAGED at offset {offset}: {reason}");
            report.damage.push(Damage { offset, reason });
        }
        Err(e) => return Err(e.into()),
    }
    Ok(report)
}

/// Shows an encrypted or compressed file: its decorator layers (see
/// [`Stack::describe`]), then, with the key, its plaintext as a record log
/// or an LSM file when it is one. Every block and frame is read, so damage
/// anywhere in the file is reported with its offset.
pub fn inspect_decorated(path: &Path, stack: &Stack, out: &mut String) -> Result<Report> {
    let mut report = Report::new(path, FileKind::Decorated);
    let damaged = |mut report: Report, e: Error, out: &mut String| {
        let _ = writeln!(out, "DAMAGED: {e}");
        let offset = match &e {
            Error::Corrupted { offset, .. } => *offset,
            _ => 0,
        };
        report.damage.push(Damage {
            offset,
            reason: e.to_string(),
        });
        report
    };
    let file = match stack.describe(path, out) {
        Ok(Some(file)) => file,
        Ok(None) => return Ok(report),
        Err(e) if e.is_corruption() => return Ok(damaged(report, e, out)),
        Err(e) => return Err(e),
    };
    match decorated::read_through(&*file) {
        Ok(bytes) => report.records = bytes,
        Err(e) if e.is_corruption() => return Ok(damaged(report, e, out)),
        Err(e) => return Err(e),
    }
    let storage = |e: pydb_file::Error| Error::from(pydb_storage::Error::from(e));
    let len = file.len().map_err(storage)?;
    let mut head = vec![0u8; len.min(8) as usize];
    file.read_at(0, &mut head).map_err(storage)?;
    let table_footer = len >= FOOTER_LEN as u64 && {
        let mut magic = [0u8; 8];
        file.read_at(len - TABLE_MAGIC_FROM_END, &mut magic)
            .map_err(storage)?;
        magic == TABLE_MAGIC
    };
    if head == FILE_MAGIC && is_manifest_name(path) {
        let _ = writeln!(out, "plaintext: LSM manifest, {len} bytes");
        lsm_verdict(
            path,
            FileKind::LsmManifest,
            pydb_storage::lsm::describe_manifest(&file),
            |m| u64::try_from(m.edits.len()).unwrap_or(u64::MAX),
            out,
        )
    } else if head == FILE_MAGIC {
        out.push_str("plaintext (offsets below are plaintext offsets):\n");
        inspect_record_log_in(path, &*file, out)
    } else if table_footer {
        let _ = writeln!(out, "plaintext: LSM table, {len} bytes");
        lsm_verdict(
            path,
            FileKind::LsmTable,
            pydb_storage::lsm::describe_table(file),
            |t| t.properties.entries,
            out,
        )
    } else {
        let _ = writeln!(
            out,
            "plaintext: {len} bytes, every block and frame verified (records of this kind \
             are not shown through a decorator: pydb inspect walks record logs and LSM files)"
        );
        Ok(report)
    }
}

fn inspect_lsm_table(path: &Path, out: &mut String) -> Result<Report> {
    let file = MonolithicFile::open_read_only(path).map_err(pydb_storage::Error::from)?;
    let len = pydb_file::File::len(&file).map_err(pydb_storage::Error::from)?;
    let _ = writeln!(out, "LSM table, {len} bytes");
    lsm_verdict(
        path,
        FileKind::LsmTable,
        pydb_storage::lsm::describe_table(file),
        |t| t.properties.entries,
        out,
    )
}

fn inspect_lsm_manifest(path: &Path, out: &mut String) -> Result<Report> {
    let file = MonolithicFile::open_read_only(path).map_err(pydb_storage::Error::from)?;
    let len = pydb_file::File::len(&file).map_err(pydb_storage::Error::from)?;
    let _ = writeln!(
        out,
        "LSM manifest, {len} bytes (a record log of version edits)"
    );
    lsm_verdict(
        path,
        FileKind::LsmManifest,
        pydb_storage::lsm::describe_manifest(&file),
        |m| u64::try_from(m.edits.len()).unwrap_or(u64::MAX),
        out,
    )
}

fn inspect_hint(path: &Path, out: &mut String) -> Result<Report> {
    let mut source = Source::open(path)?;
    let mut report = Report::new(path, FileKind::Hint);
    let file_len = source.len;
    let bytes = source
        .bytes(0, usize::try_from(file_len).unwrap_or(usize::MAX))?
        .to_vec();
    let walk = walk_hint(&bytes);
    let _ = writeln!(out, "hint file, {file_len} bytes");
    let header = bytes.get(..HINT_HEADER_LEN).unwrap_or(&bytes);
    out.push_str("header at offset 0\n");
    hex_dump(0, header, out);
    let field = |out: &mut String, offset: usize, name: &str, value: String| {
        let _ = writeln!(out, "{offset:>6}  {name:<15} {value}");
    };
    let Some(fields) = walk.header else {
        let _ = writeln!(out, "DAMAGED: the header is cut short");
        report.damage.push(Damage {
            offset: 0,
            reason: format!("hint of {file_len} bytes is shorter than its header"),
        });
        return Ok(report);
    };
    field(out, 0, "magic", quote(&HINT_MAGIC));
    field(out, VERSION_OFFSET, "version", fields.version.to_string());
    for (at, name, value) in [
        (SEGMENT_ID_OFFSET, "segment_id", fields.segment_id),
        (SEGMENT_LEN_OFFSET, "segment_len", fields.segment_len),
        (FIRST_SEQ_OFFSET, "first_seq", fields.first_seq),
        (LAST_SEQ_OFFSET, "last_seq", fields.last_seq),
        (ENTRY_COUNT_OFFSET, "entries", fields.entry_count),
    ] {
        field(out, at, name, value.to_string());
    }
    let (stored, computed) = (fields.stored_crc, fields.computed_crc);
    if walk.stop == Some(HintStop::HeaderChecksum) {
        field(
            out,
            HEADER_CRC_OFFSET,
            "crc32",
            format!("{stored:#010x} BAD (computed {computed:#010x})"),
        );
        let _ = writeln!(out, "DAMAGED: header checksum mismatch; entries not read");
        report.damage.push(Damage {
            offset: HEADER_CRC_OFFSET as u64,
            reason: "hint header checksum mismatch".into(),
        });
        return Ok(report);
    }
    field(
        out,
        HEADER_CRC_OFFSET,
        "crc32",
        format!("{stored:#010x} ok"),
    );
    if let Some(HintStop::UnknownVersion(version)) = walk.stop {
        let _ = writeln!(out, "unknown hint version {version}; entries not read");
        return Err(Error::UnsupportedVersion {
            path: path.to_path_buf(),
            found: version,
            supported: HINT_VERSION,
        });
    }

    for entry in &walk.entries {
        let (index, pos) = (entry.index, entry.offset);
        let start = usize::try_from(pos).unwrap_or(usize::MAX);
        let whole = bytes
            .get(start..)
            .and_then(|rest| rest.get(..entry.len))
            .unwrap_or(&[]);
        let verdict = if entry.crc_ok() {
            "ok".to_string()
        } else {
            format!("BAD (computed {:#010x})", entry.computed_crc)
        };
        let _ = writeln!(
            out,
            "entry {index} at offset {pos}: seq {}, kind {} ({}), key_len {}, record at {} (len {}), crc32 {:#010x} {verdict}",
            entry.seq,
            entry.kind,
            kind_name(EntryKind::from_byte(entry.kind)),
            entry.key_len,
            entry.record_offset,
            entry.record_len,
            entry.stored_crc,
        );
        hex_dump(pos, whole.get(..SHOW_BYTES).unwrap_or(whole), out);
        if whole.len() > SHOW_BYTES {
            let _ = writeln!(out, "          ... {} more bytes", whole.len() - SHOW_BYTES);
        }
        let _ = writeln!(
            out,
            "  key {}",
            show(whole.get(HINT_ENTRY_HEADER_LEN..).unwrap_or(&[]))
        );
        if !entry.crc_ok() {
            // The key length is not trustworthy past a bad checksum: the
            // next entry cannot be found reliably.
            let _ = writeln!(
                out,
                "DAMAGED: entry {index} checksum mismatch; the rest is not read"
            );
            report.damage.push(Damage {
                offset: pos,
                reason: format!("hint entry {index} checksum mismatch"),
            });
        } else if !EntryKind::from_byte(entry.kind).is_some_and(EntryKind::is_data) {
            let _ = writeln!(
                out,
                "DAMAGED: entry {index} has kind {}, not set or delete",
                entry.kind
            );
            report.damage.push(Damage {
                offset: pos,
                reason: format!(
                    "hint entry {index} has kind {}, not set or delete",
                    entry.kind
                ),
            });
        } else {
            report.records += 1;
        }
    }
    if let Some(HintStop::EntryCutShort { index, offset: pos }) = walk.stop {
        let start = usize::try_from(pos).unwrap_or(usize::MAX);
        let fixed = bytes
            .get(start..)
            .map(|rest| rest.get(..HINT_ENTRY_HEADER_LEN).unwrap_or(rest))
            .unwrap_or(&[]);
        let _ = writeln!(
            out,
            "DAMAGED: entry {index} at offset {pos} runs past the end of the file"
        );
        hex_dump(pos, fixed, out);
        report.damage.push(Damage {
            offset: pos,
            reason: format!("hint entry {index} cut short"),
        });
    }
    let count = fields.entry_count;
    if report.is_ok() && report.records != count {
        let _ = writeln!(
            out,
            "DAMAGED: the header counts {count} entries, the file holds {}",
            report.records
        );
        report.damage.push(Damage {
            offset: ENTRY_COUNT_OFFSET as u64,
            reason: format!(
                "hint header counts {count} entries, the file holds {}",
                report.records
            ),
        });
    }
    let _ = writeln!(
        out,
        "summary: {} entries ok, {} damaged",
        report.records,
        report.damage.len()
    );
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_dump_matches_hexdump_c() {
        let mut out = String::new();
        hex_dump(16, b"PYDBMETA\x01\x00\x00\x00\x01\x02\x00\x00abc", &mut out);
        assert_eq!(
            out,
            "00000010  50 59 44 42 4d 45 54 41  01 00 00 00 01 02 00 00  |PYDBMETA........|\n\
             00000020  61 62 63                                          |abc|\n"
        );
    }

    #[test]
    fn show_cuts_long_values() {
        assert_eq!(show(b"ab"), "\"ab\"");
        let long = vec![b'x'; 100];
        let shown = show(&long);
        assert!(shown.ends_with("... (100 bytes)"), "{shown}");
    }
}
