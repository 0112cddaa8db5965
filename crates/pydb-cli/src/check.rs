//! `pydb check`: verify every checksum of every file of a database.
//!
//! It walks each file with the same code as `pydb inspect`
//! ([`crate::inspect`]), printing one line per file instead of every record.
//! A torn tail is reported but is not damage: it is what an interrupted
//! write leaves, and the engine cuts it off on the next open. Anything else
//! that fails a check is damage, and the command exits non-zero, pointing
//! at `pydb repair` as the fix.
//!
//! The database must be closed: the check takes the directory lock, so it
//! never reads a file that a running engine is appending to.
//!
//! A B+tree directory also holds the page file and a `wal/` directory of
//! segments. The page file is checked page by page ([`inspect::btree`]):
//! one invalid meta copy and torn pages that the WAL holds images of are
//! what a crash leaves and recovery repairs, so they are reported as notes,
//! not damage. Each WAL segment is walked like any record log, its payloads
//! decoded as redo records; a torn tail is not damage in the last segment
//! only, since recovery refuses a torn batch in any earlier one.
//!
//! When every file verifies, the database is opened and, if it holds SQL
//! tables, `pydb_query::check` verifies them: every row decodes under its
//! table's schema, and every secondary index holds exactly one entry per
//! row (no missing and no dangling entries). Opening runs recovery like any
//! open, so it is skipped (with a note) when a file has damage, a torn
//! tail, or a note about what recovery would repair: `pydb check` never
//! changes a directory that needs recovery or repair.

use std::io::Write;
use std::path::Path;

use pydb_storage::btree::PAGE_FILE_NAME;
use pydb_storage::btree::wal::WAL_DIR;
use pydb_storage::log::verify::{self as log_verify, FindingKind};
use pydb_storage::{DirLock, LOCK_FILE_NAME};

use crate::decorated::{Stack, StorageArgs};
use crate::inspect::{self, Damage, FileKind, Report};
use pydb::EngineKind;
use pydb::db::HISTORY_FILE_NAME;
use pydb::meta;
use pydb::{Error, Result};

/// What `check` found in a directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckSummary {
    /// One report per file walked.
    pub reports: Vec<Report>,
    /// Notes printed: findings that are not damage but that recovery
    /// repairs on the next open (e.g. torn B+tree pages the WAL holds).
    pub notes: usize,
}

impl CheckSummary {
    /// The reports of the damaged files.
    pub fn damaged(&self) -> impl Iterator<Item = &Report> {
        self.reports.iter().filter(|r| !r.is_ok())
    }

    /// Whether every file verified.
    pub fn is_ok(&self) -> bool {
        self.damaged().next().is_none()
    }
}

/// The advice printed when damage is found.
pub const REPAIR_ADVICE: &str = "run `pydb repair DIR` to keep every batch that verifies \
(it moves what it replaces into DIR/repair-<timestamp>/ and deletes nothing)";

/// The advice printed when a B+tree database is damaged.
pub const BTREE_REPAIR_ADVICE: &str = "run `pydb repair DIR` to rebuild the tree from every \
leaf that verifies (it moves the page file and WAL into DIR/repair-<timestamp>/ and deletes \
nothing)";

/// The advice printed when an LSM database is damaged.
pub const LSM_REPAIR_ADVICE: &str = "run `pydb repair DIR` to rebuild the database from every \
table block and WAL batch that verifies (it moves the old tables, WALs and manifest into \
DIR/repair-<timestamp>/ and deletes nothing)";

/// Checks an LSM database with the engine's own verifier
/// (`pydb_storage::lsm::verify_dir`) and prints its report.
fn check_lsm(dir: &Path, summary: &mut CheckSummary, out: &mut dyn Write) -> Result<()> {
    let write_err = |e| Error::io("<stdout>", e);
    let mut report = Report::new_for(dir, FileKind::LsmDirectory);
    match pydb_storage::lsm::verify_dir(&pydb_file::MonolithicOpener, dir) {
        Ok(found) => {
            write!(out, "{found}").map_err(write_err)?;
            report.records = u64::try_from(found.tables.len()).unwrap_or(u64::MAX);
        }
        Err(e) if e.is_corruption() => {
            writeln!(out, "DAMAGE: {e}").map_err(write_err)?;
            report.damage.push(crate::inspect::Damage {
                offset: 0,
                reason: e.to_string(),
            });
        }
        Err(e) => return Err(e.into()),
    }
    summary.reports.push(report);
    Ok(())
}

/// Checks every file of the database in `dir`, printing one line per file
/// and a verdict to `out`. An encrypted database needs its key: use
/// [`check_dir_with`].
pub fn check_dir(dir: &Path, out: &mut dyn Write) -> Result<CheckSummary> {
    check_dir_with(dir, &StorageArgs::default(), out)
}

/// [`check_dir`] with the key file and compression of the command line.
///
/// An encrypted or compressed database is read through its decorators
/// ([`crate::decorated`]): every block is authenticated and every frame
/// checksummed. An LSM database is then verified by the engine's own
/// verifier over the same decorators; in a log or B+tree database each
/// record log is walked record by record through them. The cross-file rules
/// of a plain log directory (hints against segments) are not applied to a
/// decorated one.
pub fn check_dir_with(dir: &Path, args: &StorageArgs, out: &mut dyn Write) -> Result<CheckSummary> {
    let write_err = |e| Error::io("<stdout>", e);
    let kind = std::fs::metadata(dir)
        .map_err(|e| Error::io(dir, e))?
        .file_type();
    if !kind.is_dir() {
        return Err(Error::InvalidArgument(format!(
            "{} is {}, not a directory; pydb check checks a database directory \
             (`pydb inspect FILE` reads one file)",
            dir.display(),
            inspect::special_kind(kind).unwrap_or("a regular file")
        )));
    }
    let meta_path = meta::path_in(dir);
    if meta_path.exists() {
        // Reading a FIFO named PYDB would block.
        inspect::ensure_regular_file(&meta_path)?;
    }
    let metadata = match meta::read(dir) {
        Ok(Some(metadata)) => Some(metadata),
        Ok(None) => {
            return Err(Error::NotADatabase {
                dir: dir.to_path_buf(),
                found: "no PYDB metadata file".into(),
            });
        }
        // Damaged metadata is reported below with the other files.
        Err(e) if e.is_corruption() => None,
        Err(e) => return Err(e),
    };
    let opened_with = metadata.as_ref().map(|m| (m.engine, m.index));
    let lock = DirLock::acquire(dir)?;
    if let Some(m) = &metadata {
        let stack = Stack::new(dir, m, args)?;
        if !stack.is_plain() {
            return check_decorated(dir, m, &stack, out);
        }
    }
    // With damaged metadata, a page file is what tells a B+tree directory.
    let btree = match &metadata {
        Some(m) => m.engine == EngineKind::BTree,
        None => dir.join(PAGE_FILE_NAME).is_file(),
    };
    let lsm = metadata
        .as_ref()
        .is_some_and(|m| m.engine == EngineKind::Lsm);
    match metadata {
        Some(m) => writeln!(
            out,
            "checking {}: {} engine, {} index, format version {}",
            dir.display(),
            m.engine,
            m.index.map_or("no", |i| i.name()),
            m.format_version
        ),
        None => writeln!(out, "checking {}", dir.display()),
    }
    .map_err(write_err)?;

    let mut summary = CheckSummary::default();
    if lsm {
        check_lsm(dir, &mut summary, out)?;
    } else {
        check_files(dir, "", btree, &mut summary, out)?;
    }
    drop(lock);
    if let Some((engine, index)) = opened_with {
        check_sql(dir, engine, index, &mut summary, out)?;
    }

    let damaged: Vec<&Report> = summary.damaged().collect();
    if damaged.is_empty() {
        writeln!(
            out,
            "ok: {} files checked, no damage found",
            summary.reports.len()
        )
        .map_err(write_err)?;
    } else {
        writeln!(
            out,
            "DAMAGE FOUND in {} of {} files.",
            damaged.len(),
            summary.reports.len()
        )
        .map_err(write_err)?;
        // Advise only what `pydb repair` can do.
        let advice = if btree {
            BTREE_REPAIR_ADVICE
        } else if lsm {
            LSM_REPAIR_ADVICE
        } else {
            REPAIR_ADVICE
        };
        writeln!(out, "{advice}.").map_err(write_err)?;
    }
    Ok(summary)
}

/// Checks an encrypted or compressed database (see [`check_dir_with`]).
fn check_decorated(
    dir: &Path,
    m: &meta::Metadata,
    stack: &Stack,
    out: &mut dyn Write,
) -> Result<CheckSummary> {
    let write_err = |e| Error::io("<stdout>", e);
    if stack.encrypted && stack.data_key.is_none() {
        return Err(Error::KeyRequired {
            dir: dir.to_path_buf(),
        });
    }
    writeln!(
        out,
        "checking {}: {} engine, {} index, format version {}, {}{}",
        dir.display(),
        m.engine,
        m.index.map_or("no", |i| i.name()),
        m.format_version,
        if stack.encrypted {
            "encrypted (the key unwraps the data key)"
        } else {
            "not encrypted"
        },
        match stack.compression {
            pydb::Compression::None => String::new(),
            c => format!(", {c} compression"),
        }
    )
    .map_err(write_err)?;
    let mut summary = CheckSummary::default();
    if m.engine == EngineKind::Lsm {
        let found = match (&stack.data_key, stack.compression) {
            (None, _) => pydb_storage::lsm::verify_dir(
                &pydb_file::CompressedOpener::new(pydb_file::MonolithicOpener),
                dir,
            ),
            (Some(key), pydb::Compression::None) => pydb_storage::lsm::verify_dir(
                &pydb_file::EncryptedOpener::new(pydb_file::MonolithicOpener, key.clone()),
                dir,
            ),
            (Some(key), pydb::Compression::Lz4) => pydb_storage::lsm::verify_dir(
                &pydb_file::CompressedOpener::new(pydb_file::EncryptedOpener::new(
                    pydb_file::MonolithicOpener,
                    key.clone(),
                )),
                dir,
            ),
        };
        let mut report = Report::new_for(dir, FileKind::LsmDirectory);
        match found {
            Ok(found) => {
                write!(out, "{found}").map_err(write_err)?;
                report.records = u64::try_from(found.tables.len()).unwrap_or(u64::MAX);
            }
            Err(e) if e.is_corruption() => {
                writeln!(out, "DAMAGE: {e}").map_err(write_err)?;
                report.damage.push(Damage {
                    offset: 0,
                    reason: e.to_string(),
                });
            }
            Err(e) => return Err(e.into()),
        }
        summary.reports.push(report);
    } else {
        check_decorated_files(dir, "", stack, &mut summary, out)?;
    }
    let damaged = summary.damaged().count();
    if damaged == 0 {
        writeln!(
            out,
            "ok: {} files checked, no damage found",
            summary.reports.len()
        )
        .map_err(write_err)?;
    } else {
        writeln!(
            out,
            "DAMAGE FOUND in {damaged} of {} files. `pydb repair --encryption-key-file` repairs \
             a log or B+tree database through its decorators; for an LSM database, restore a \
             backup.",
            summary.reports.len()
        )
        .map_err(write_err)?;
    }
    Ok(summary)
}

/// Reads every file of `dir` (and its subdirectories) through the
/// decorators; walks the record logs among them.
fn check_decorated_files(
    dir: &Path,
    prefix: &str,
    stack: &Stack,
    summary: &mut CheckSummary,
    out: &mut dyn Write,
) -> Result<()> {
    let write_err = |e| Error::io("<stdout>", e);
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        names.push(entry.map_err(|e| Error::io(dir, e))?.file_name());
    }
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let shown = format!("{prefix}{}", name.to_string_lossy());
        let skip = if prefix.is_empty() && name == meta::META_FILE_NAME {
            Some("the metadata, checked above")
        } else if name == LOCK_FILE_NAME || name == HISTORY_FILE_NAME {
            Some("not data")
        } else if shown.ends_with(".tmp") {
            Some("temporary file of an interrupted write")
        } else if !path.is_file() && !path.is_dir() {
            Some("not a regular file: not read")
        } else {
            None
        };
        if let Some(why) = skip {
            writeln!(out, "  {shown:<24} skipped ({why})").map_err(write_err)?;
            continue;
        }
        if path.is_dir() {
            check_decorated_files(&path, &format!("{shown}/"), stack, summary, out)?;
            continue;
        }
        let mut text = String::new();
        let report = inspect::inspect_decorated(&path, stack, &mut text)?;
        writeln!(out, "  {shown:<24} {}", describe(&report)).map_err(write_err)?;
        summary.reports.push(report);
    }
    Ok(())
}

/// Opens the database and verifies its SQL tables, if it has any, when
/// every file verified and none has a torn tail (opening would cut it).
fn check_sql(
    dir: &Path,
    engine: EngineKind,
    index: Option<pydb::IndexKind>,
    summary: &mut CheckSummary,
    out: &mut dyn Write,
) -> Result<()> {
    let write_err = |e| Error::io("<stdout>", e);
    if !summary.is_ok() || summary.notes > 0 || summary.reports.iter().any(|r| r.torn_bytes > 0) {
        writeln!(
            out,
            "note: SQL data not checked (opening the database would run recovery)"
        )
        .map_err(write_err)?;
        return Ok(());
    }
    let mut options = pydb::Options::with_engine(engine);
    if let Some(index) = index {
        options.index = index;
    }
    options.expire_interval = None;
    let db = pydb::Db::open(dir, options)?;
    let found = pydb::query::check::check(db.sql_database());
    db.close()?;
    let found = found?;
    if found.tables == 0 {
        return Ok(());
    }
    let mut report = Report::new_for(dir, FileKind::SqlData);
    report.records = found.rows;
    report.damage = found
        .problems
        .iter()
        .map(|p| Damage {
            offset: 0,
            reason: p.clone(),
        })
        .collect();
    let mut line = format!(
        "  {:<24} SQL data: {} tables, {} indexes, {} rows, {} index entries",
        "(SQL tables)", found.tables, found.indexes, found.rows, found.index_entries
    );
    if report.is_ok() {
        line.push_str(" ok");
    }
    for problem in &found.problems {
        line.push_str(&format!("\n    DAMAGED: {problem}"));
    }
    writeln!(out, "{line}").map_err(write_err)?;
    summary.reports.push(report);
    Ok(())
}

/// What `check` says about one directory entry.
enum Entry {
    /// Not checked, and why.
    Skipped(&'static str),
    /// Walked: the report, and notes that are not damage.
    Checked(Report, Vec<String>),
}

/// Checks the files of `dir` (shown with `prefix`) into `summary`; in a
/// B+tree directory, descends into `wal/`.
fn check_files(
    dir: &Path,
    prefix: &str,
    btree: bool,
    summary: &mut CheckSummary,
    out: &mut dyn Write,
) -> Result<()> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        names.push(entry.file_name());
    }
    names.sort();

    let mut entries = Vec::new();
    for name in names {
        let path = dir.join(&name);
        let shown = format!("{prefix}{}", name.to_string_lossy());
        if prefix.is_empty() && btree && name == WAL_DIR && path.is_dir() {
            entries.push((shown, Entry::Skipped("the B+tree WAL, checked below")));
            continue;
        }
        let entry = if name == LOCK_FILE_NAME || name == HISTORY_FILE_NAME {
            Entry::Skipped("not data")
        } else if shown.ends_with(".tmp") {
            // Written to a temporary name and not yet renamed: a crash
            // interrupted it, and the next open removes it.
            Entry::Skipped("temporary file of an interrupted write")
        } else if path.is_dir() {
            Entry::Skipped("a directory")
        } else if !path.is_file() {
            // Opening a FIFO would block; a device never ends.
            Entry::Skipped("not a regular file (a FIFO, device or socket): not read")
        } else {
            check_file(&path)?
        };
        entries.push((shown, entry));
    }

    let mut dir_reports = Vec::new();
    if prefix.is_empty() && !btree {
        dir_reports = apply_log_rules(dir, &mut entries)?;
    }
    if prefix == format!("{WAL_DIR}/") {
        // Recovery's own rule (`btree::verify::torn_tail_rule`): a torn
        // batch is an interrupted write only in the last segment.
        let last_log = entries
            .iter()
            .rposition(|(_, e)| matches!(e, Entry::Checked(r, _) if r.kind == FileKind::RecordLog));
        for (i, (_, entry)) in entries.iter_mut().enumerate() {
            if let Entry::Checked(report, _) = entry
                && report.kind == FileKind::RecordLog
            {
                let len = std::fs::metadata(&report.path)
                    .map_err(|e| Error::io(&report.path, e))?
                    .len();
                let valid_end = len.saturating_sub(report.torn_bytes);
                if let Some(damage) = pydb_storage::btree::verify::torn_tail_rule(
                    &report.path,
                    valid_end,
                    report.torn_bytes,
                    Some(i) == last_log,
                ) {
                    report.torn_bytes = 0;
                    report.zero_bytes = 0;
                    report.damage.push(Damage {
                        offset: valid_end,
                        reason: format!("{damage} (recovery refuses it)"),
                    });
                }
            }
        }
    }

    let write_err = |e| Error::io("<stdout>", e);
    for (shown, entry) in entries {
        match entry {
            Entry::Skipped(why) => {
                writeln!(out, "  {shown:<24} skipped ({why})").map_err(write_err)?;
            }
            Entry::Checked(report, notes) => {
                let mut line = describe(&report);
                summary.notes += notes.len();
                for note in notes {
                    line.push_str(&format!("\n    note: {note}"));
                }
                writeln!(out, "  {shown:<24} {line}").map_err(write_err)?;
                summary.reports.push(report);
            }
        }
    }
    for report in dir_reports {
        let shown = "(the directory)";
        for damage in &report.damage {
            writeln!(out, "  {shown:<24} DAMAGED: {}", damage.reason).map_err(write_err)?;
        }
        summary.reports.push(report);
    }
    if btree && prefix.is_empty() && dir.join(WAL_DIR).is_dir() {
        check_files(
            &dir.join(WAL_DIR),
            &format!("{WAL_DIR}/"),
            btree,
            summary,
            out,
        )?;
    }
    Ok(())
}

/// Walks one file.
fn check_file(path: &Path) -> Result<Entry> {
    let kind = match inspect::detect(path) {
        Ok(kind) => kind,
        // Unknown magic: in a pydb directory every data file is pydb's,
        // so a file we cannot recognize is a damaged header (or a
        // stranger that does not belong here).
        Err(Error::Corrupted { offset, reason, .. }) => {
            let report = Report {
                path: path.to_path_buf(),
                kind: FileKind::Empty,
                records: 0,
                damage: vec![Damage { offset, reason }],
                torn_bytes: 0,
                zero_bytes: 0,
            };
            return Ok(Entry::Checked(report, Vec::new()));
        }
        Err(e) => return Err(e),
    };
    if kind == FileKind::BTreePages {
        let found = inspect::btree::inspect_page_file(path, None, &mut std::io::sink())?;
        let mut notes = found.notes;
        if !found.restored.is_empty() {
            notes.push(format!(
                "pages {:?} fail their checks, but the WAL holds full images of them: \
                 recovery rewrites them on open (torn page writes)",
                found.restored
            ));
        }
        return Ok(Entry::Checked(found.report, notes));
    }
    let report = inspect::inspect(path, &mut std::io::sink())?;
    Ok(Entry::Checked(report, Vec::new()))
}

/// Applies the rules the log engine keeps when it opens `dir`
/// ([`pydb_storage::log::verify`]): a sealed segment cut short or framed
/// wrongly, a missing segment, a hint that disagrees with its segment. Each
/// finding is filed with the file it names, unless the walk of that file
/// already reported damage; a finding about the directory itself (a
/// missing segment) gets a report of its own.
fn apply_log_rules(dir: &Path, entries: &mut [(String, Entry)]) -> Result<Vec<Report>> {
    let verified = log_verify::verify_dir(dir)?;
    let mut dir_reports = Vec::new();
    for finding in verified.findings {
        let named = entries.iter_mut().find_map(|(_, entry)| match entry {
            Entry::Checked(report, notes) if report.path == finding.path => Some((report, notes)),
            _ => None,
        });
        match (finding.kind, named) {
            (FindingKind::Note, Some((report, notes))) => {
                // The walk reports torn tails itself.
                if report.torn_bytes == 0 {
                    notes.push(finding.reason);
                }
            }
            (FindingKind::Note, None) => {}
            (_, Some((report, _))) => {
                if report.is_ok() {
                    // Bytes the walk took for a torn tail, in a segment
                    // where opening allows none.
                    report.torn_bytes = 0;
                    report.zero_bytes = 0;
                    report.damage.push(Damage {
                        offset: finding.offset,
                        reason: finding.reason,
                    });
                }
            }
            (_, None) => dir_reports.push(Report {
                path: finding.path,
                kind: FileKind::Empty,
                records: 0,
                damage: vec![Damage {
                    offset: finding.offset,
                    reason: finding.reason,
                }],
                torn_bytes: 0,
                zero_bytes: 0,
            }),
        }
    }
    Ok(dir_reports)
}

/// One line about one file.
fn describe(report: &Report) -> String {
    let unit = match report.kind {
        FileKind::Hint => "entries",
        FileKind::BTreePages => "pages",
        FileKind::Decorated => "plaintext bytes",
        _ => "records",
    };
    let mut line = format!("{}: {} {unit} ok", report.kind.name(), report.records);
    if report.kind == FileKind::Metadata && report.is_ok() {
        line = "directory metadata: ok".into();
    }
    if report.kind == FileKind::Empty && report.is_ok() {
        line = "empty file".into();
    }
    let torn = report.torn_bytes.saturating_sub(report.zero_bytes);
    let zeros = report.torn_bytes - torn;
    match (torn, zeros) {
        (0, 0) => {}
        (0, zeros) => line.push_str(&format!(
            ", {zeros} bytes of preallocated zeros after the end (the next open cuts them off)"
        )),
        (torn, 0) => line.push_str(&format!(
            ", torn tail of {torn} bytes (an interrupted write; the next open cuts it off)"
        )),
        (torn, zeros) => line.push_str(&format!(
            ", torn tail of {torn} bytes (an interrupted write), then {zeros} bytes of preallocated zeros (the next open cuts both off)"
        )),
    }
    for damage in &report.damage {
        line.push_str(&format!(
            "\n    DAMAGED at offset {}: {}",
            damage.offset, damage.reason
        ));
    }
    line
}
