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

use std::io::Write;
use std::path::Path;

use pydb_storage::{DirLock, LOCK_FILE_NAME};

use crate::db::HISTORY_FILE_NAME;
use crate::inspect::{self, Damage, FileKind, Report};
use crate::meta;
use crate::{Error, Result};

/// What `check` found in a directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckSummary {
    /// One report per file walked.
    pub reports: Vec<Report>,
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

/// Checks every file of the database in `dir`, printing one line per file
/// and a verdict to `out`.
pub fn check_dir(dir: &Path, out: &mut dyn Write) -> Result<CheckSummary> {
    let write_err = |e| Error::io("<stdout>", e);
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
    let _lock = DirLock::acquire(dir)?;
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

    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        names.push(entry.file_name());
    }
    names.sort();

    // The log engine only ever tears its last segment: the others were
    // synced and sealed before the next one was created.
    let last_segment = pydb_file::list_ids(dir, pydb_storage::log::SEGMENT_EXTENSION)
        .map_err(pydb_storage::Error::from)?
        .last()
        .copied();
    let mut summary = CheckSummary::default();
    for name in names {
        let path = dir.join(&name);
        let shown = name.to_string_lossy();
        if name == LOCK_FILE_NAME || name == HISTORY_FILE_NAME {
            writeln!(out, "  {shown:<24} skipped (not data)").map_err(write_err)?;
            continue;
        }
        if shown.ends_with(".tmp") {
            // Written to a temporary name and not yet renamed: a crash
            // interrupted it, and the next open removes it.
            writeln!(
                out,
                "  {shown:<24} skipped (temporary file of an interrupted write)"
            )
            .map_err(write_err)?;
            continue;
        }
        if path.is_dir() {
            writeln!(out, "  {shown:<24} skipped (a directory)").map_err(write_err)?;
            continue;
        }
        let report = match inspect::inspect(&path, &mut std::io::sink()) {
            Ok(report) => report,
            // Unknown magic: in a pydb directory every data file is pydb's,
            // so a file we cannot recognize is a damaged header (or a
            // stranger that does not belong here).
            Err(Error::Corrupted { offset, reason, .. }) => Report {
                path: path.clone(),
                kind: FileKind::Empty,
                records: 0,
                damage: vec![Damage { offset, reason }],
                torn_bytes: 0,
            },
            Err(e) => return Err(e),
        };
        let mut report = report;
        if is_sealed_segment(&shown, last_segment) {
            seal_rules(&mut report);
        }
        let line = describe(&report);
        writeln!(out, "  {shown:<24} {line}").map_err(write_err)?;
        summary.reports.push(report);
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
        writeln!(out, "{REPAIR_ADVICE}.").map_err(write_err)?;
    }
    Ok(summary)
}

/// Whether `name` is a log segment other than the last one.
fn is_sealed_segment(name: &str, last_segment: Option<u64>) -> bool {
    let suffix = format!(".{}", pydb_storage::log::SEGMENT_EXTENSION);
    name.strip_suffix(&suffix)
        .and_then(pydb_file::parse_id)
        .is_some_and(|id| Some(id) != last_segment)
}

/// In a sealed segment a torn tail, or no data at all, is damage: the
/// engine refuses to open it.
fn seal_rules(report: &mut Report) {
    if report.torn_bytes > 0 {
        let len = std::fs::metadata(&report.path).map_or(0, |m| m.len());
        report.damage.push(Damage {
            offset: len.saturating_sub(report.torn_bytes),
            reason: format!(
                "{} bytes that do not verify at the end of a sealed segment (only the last \
                 segment can have a torn tail)",
                report.torn_bytes
            ),
        });
        report.torn_bytes = 0;
    }
    if report.kind == FileKind::Empty && report.damage.is_empty() {
        report.damage.push(Damage {
            offset: 0,
            reason: "empty file in the middle of the segments".into(),
        });
    }
}

/// One line about one file.
fn describe(report: &Report) -> String {
    let unit = if report.kind == FileKind::Hint {
        "entries"
    } else {
        "records"
    };
    let mut line = format!("{}: {} {unit} ok", report.kind.name(), report.records);
    if report.kind == FileKind::Metadata && report.is_ok() {
        line = "directory metadata: ok".into();
    }
    if report.kind == FileKind::Empty && report.is_ok() {
        line = "empty file".into();
    }
    if report.torn_bytes > 0 {
        line.push_str(&format!(
            ", torn tail of {} bytes (an interrupted write; the next open cuts it off)",
            report.torn_bytes
        ));
    }
    for damage in &report.damage {
        line.push_str(&format!(
            "\n    DAMAGED at offset {}: {}",
            damage.offset, damage.reason
        ));
    }
    line
}
