//! Verifying a closed log directory with the rules opening applies, without
//! changing a byte.
//!
//! `pydb check` must never say "ok" about a directory that the engine then
//! refuses to open, and it must never invent a rule the engine does not
//! keep. So this module does not restate recovery's rules: it calls the
//! same functions recovery (`log/recovery.rs`) calls, in read-only form:
//!
//! - every sealed segment (all but the last) is scanned with
//!   `scan_sealed`: no torn tail, `begin` first, `seal` last, seqs
//!   increasing, every payload a log entry;
//! - its hint is read with [`super::hint::read_hint`], which checks it
//!   against the segment; the last segment's hint with `read_hint_prefix`
//!   and `check_prefix_hint`;
//! - the last segment is scanned like any other; a torn tail there is what
//!   an interrupted append leaves, and opening cuts it off;
//! - the entries are replayed into an index exactly as on open, so that the
//!   inputs of an interrupted compaction are recognised with the same rule
//!   (`interrupted_compaction_inputs`);
//! - the seq ranges must tile `1..=last` (`check_coverage`): a hole means a
//!   segment file is missing.
//!
//! What opening fixes by itself (a torn tail of the last segment, temporary
//! files, stray hints, an interrupted compaction) is a [`FindingKind::Note`].
//! A hint that cannot be used is a [`FindingKind::BadHint`]: opening
//! rebuilds it from its segment, and so does `pydb repair`. Everything else
//! is [`FindingKind::Damage`]: opening fails on it.

use std::path::{Path, PathBuf};

use pydb_file::{File, FileOpener, MonolithicOpener, TEMP_SUFFIX};
use pydb_index::BTreeIndex;
use pydb_wal::Scanner;

use super::SEGMENT_EXTENSION;
use super::hint::{self, HINT_EXTENSION, HintHeader};
use super::recovery::{self, Loaded, Replay};
use crate::{Error, Result};

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FindingKind {
    /// Opening fails on it; only `pydb repair` can act.
    Damage,
    /// A hint file that cannot be used. Opening ignores it and rebuilds it
    /// from its segment; so does `pydb repair`.
    BadHint,
    /// What a crash leaves and opening cleans up by itself.
    Note,
}

/// One thing [`verify_dir`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// How serious it is.
    pub kind: FindingKind,
    /// The file (or, for a missing segment, the directory).
    pub path: PathBuf,
    /// Where in the file.
    pub offset: u64,
    /// What is wrong, in words.
    pub reason: String,
}

/// What [`verify_dir`] found in a directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirReport {
    /// The segment ids found, ascending.
    pub segments: Vec<u64>,
    /// Everything found, in the order it was found.
    pub findings: Vec<Finding>,
}

impl DirReport {
    /// Whether nothing needs repair: no damage and no bad hint.
    pub fn is_ok(&self) -> bool {
        self.findings.iter().all(|f| f.kind == FindingKind::Note)
    }

    /// Whether the engine opens the directory (bad hints it rebuilds).
    pub fn opens(&self) -> bool {
        self.findings.iter().all(|f| f.kind != FindingKind::Damage)
    }

    /// The segments whose hint cannot be used.
    pub fn bad_hints(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.kind == FindingKind::BadHint)
    }

    fn push(&mut self, kind: FindingKind, path: PathBuf, offset: u64, reason: String) {
        self.findings.push(Finding {
            kind,
            path,
            offset,
            reason,
        });
    }

    /// Files a corruption error as damage; any other error is returned.
    fn damage(&mut self, error: Error) -> Result<()> {
        match error {
            Error::File(pydb_file::Error::Corrupted {
                path,
                offset,
                reason,
            })
            | Error::Wal(pydb_wal::Error::File(pydb_file::Error::Corrupted {
                path,
                offset,
                reason,
            })) => {
                self.push(FindingKind::Damage, path, offset, reason);
                Ok(())
            }
            other => Err(other),
        }
    }
}

/// Verifies the log directory `dir` with the rules opening applies (see the
/// module docs). Reads only; the caller holds the directory lock, so no
/// engine writes meanwhile.
pub fn verify_dir(dir: &Path) -> Result<DirReport> {
    verify_dir_with(dir, &MonolithicOpener)
}

/// [`verify_dir`] through `opener`: the files of an encrypted or
/// compressed database are read through their decorators.
pub fn verify_dir_with<O: FileOpener>(dir: &Path, opener: &O) -> Result<DirReport> {
    let ids = pydb_file::list_ids(dir, SEGMENT_EXTENSION)?;
    let mut report = DirReport {
        segments: ids.clone(),
        findings: Vec::new(),
    };
    leftovers(dir, &ids, &mut report)?;

    let mut replay = Replay::new(BTreeIndex::new());
    let mut all: Vec<Loaded> = Vec::new();
    let mut active_id = None;
    let mut every_segment_loaded = true;
    for (position, &id) in ids.iter().enumerate() {
        let path = pydb_file::segment_path(dir, id, SEGMENT_EXTENSION);
        let file = opener.open(&path, false)?;
        let len = file.len()?;
        let is_last = position + 1 == ids.len();
        if !is_last {
            if let Err(reason) = hint::read_hint(opener, dir, id, len) {
                report.push(
                    FindingKind::BadHint,
                    hint::hint_path(dir, id),
                    0,
                    format!("{reason} (opening and repair rebuild it from its segment)"),
                );
            }
            match recovery::scan_sealed(&path, id, &file) {
                Ok((header, entries)) => {
                    all.push(recovery::replay_segment(&mut replay, &header, &entries));
                }
                Err(e) => {
                    report.damage(e)?;
                    every_segment_loaded = false;
                }
            }
            continue;
        }
        // The last segment: scanned whole, its torn tail only noted.
        let scanned = (|| -> Result<_> {
            let mut scanner = Scanner::new(&file)?;
            let scanned = recovery::scan_segment(&file, &mut scanner)?;
            Ok((scanned, scanner.tail()))
        })();
        let (scanned, tail) = match scanned {
            Ok(found) => found,
            Err(e) => {
                report.damage(e)?;
                every_segment_loaded = false;
                continue;
            }
        };
        if tail.torn_bytes() > 0 {
            // Zeros after the data are preallocated space (the engine writes
            // them ahead of the end); only nonzero bytes are a torn write.
            let nonzero_end =
                pydb_wal::verify::last_nonzero_end(&file, tail.valid_end, tail.file_len)?;
            let torn = nonzero_end - tail.valid_end;
            let zeros = tail.file_len - nonzero_end;
            let reason = match (torn, zeros) {
                (0, zeros) => format!(
                    "{zeros} bytes of zeros preallocated after the end of the log (opening cuts them off)"
                ),
                (torn, 0) => {
                    format!("torn tail of {torn} bytes (an interrupted write; opening cuts it off)")
                }
                (torn, zeros) => format!(
                    "torn tail of {torn} bytes, then {zeros} bytes of preallocated zeros (an interrupted write; opening cuts both off)"
                ),
            };
            report.push(FindingKind::Note, path.clone(), tail.valid_end, reason);
        }
        let hint_problem = match hint::read_hint_prefix(opener, dir, id, len) {
            Ok(Some((header, entries))) => {
                recovery::check_prefix_hint(&file, &header, &entries).err()
            }
            Ok(None) => None,
            Err(reason) => Some(reason),
        };
        if let Some(reason) = hint_problem {
            report.push(
                FindingKind::BadHint,
                hint::hint_path(dir, id),
                0,
                format!("{reason} (opening scans the segment instead; repair moves it aside)"),
            );
        }
        let Some(first_seq) = scanned.begin else {
            report.push(
                FindingKind::Note,
                path.clone(),
                0,
                "the last segment holds no begin entry (a crash right after its creation; \
                 opening starts it anew)"
                    .into(),
            );
            continue;
        };
        let last_seq = scanned
            .seal
            .unwrap_or_else(|| scanned.entries.last().map_or(first_seq - 1, |e| e.seq));
        let header = HintHeader {
            segment_id: id,
            segment_len: len,
            first_seq,
            last_seq,
        };
        all.push(recovery::replay_segment(
            &mut replay,
            &header,
            &scanned.entries,
        ));
        if scanned.seal.is_none() {
            active_id = Some(id);
        }
    }

    // The rules over the whole directory need every segment's range.
    if every_segment_loaded {
        let path_of = |id| pydb_file::segment_path(dir, id, SEGMENT_EXTENSION);
        let usage = recovery::segment_usage(&replay.index, &all);
        match recovery::interrupted_compaction_inputs(&path_of, &all, &usage) {
            Ok(redundant) => {
                for &id in &redundant {
                    report.push(
                        FindingKind::Note,
                        path_of(id),
                        0,
                        "the input of an interrupted compaction (opening removes it)".into(),
                    );
                }
                all.retain(|l| !redundant.contains(&l.id));
                if let Err(e) = recovery::check_coverage(dir, &path_of, &all, active_id) {
                    report.damage(e)?;
                }
            }
            Err(e) => report.damage(e)?,
        }
    }
    Ok(report)
}

/// Notes the leftovers that opening removes: temporary segments and hints,
/// and hints whose segment is gone (the same names
/// [`pydb_file::SegmentedFile::remove_temp_files`] and
/// [`hint::remove_stray_hints`] match).
fn leftovers(dir: &Path, ids: &[u64], report: &mut DirReport) -> Result<()> {
    let temp_suffixes = [
        format!(".{SEGMENT_EXTENSION}.{TEMP_SUFFIX}"),
        format!(".{HINT_EXTENSION}.{TEMP_SUFFIX}"),
    ];
    let hint_suffix = format!(".{HINT_EXTENSION}");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| pydb_file::Error::io(dir, e))? {
        let entry = entry.map_err(|e| pydb_file::Error::io(dir, e))?;
        names.push(entry.file_name());
    }
    names.sort();
    for name in names {
        let Some(name) = name.to_str() else { continue };
        let temp = temp_suffixes.iter().any(|s| {
            name.strip_suffix(s.as_str())
                .and_then(pydb_file::parse_id)
                .is_some()
        });
        let stray_hint = name
            .strip_suffix(&hint_suffix)
            .and_then(pydb_file::parse_id)
            .is_some_and(|id| ids.binary_search(&id).is_err());
        let reason = if temp {
            "temporary file of an interrupted write (opening removes it)"
        } else if stray_hint {
            "hint of a segment that is not there (opening removes it)"
        } else {
            continue;
        };
        report.push(FindingKind::Note, dir.join(name), 0, reason.into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

    use super::*;
    use crate::StorageEngine;
    use crate::log::{AppendOnlyLogStorage, LogOptions};

    fn options() -> LogOptions {
        LogOptions {
            max_segment_size: 300,
            background_compaction: false,
            ..LogOptions::default()
        }
    }

    fn three_segments(dir: &Path) -> Vec<u64> {
        let engine = AppendOnlyLogStorage::open(dir, options()).unwrap();
        while engine.segment_ids().len() < 3 {
            engine.set(b"key", &[b'v'; 40]).unwrap();
        }
        drop(engine);
        pydb_file::list_ids(dir, SEGMENT_EXTENSION).unwrap()
    }

    #[test]
    fn a_healthy_directory_verifies() {
        let dir = tempfile::tempdir().unwrap();
        three_segments(dir.path());
        let report = verify_dir(dir.path()).unwrap();
        assert!(report.is_ok(), "{report:?}");
    }

    #[test]
    fn a_missing_middle_segment_is_damage_as_opening_says() {
        for remove_hint in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let ids = three_segments(dir.path());
            std::fs::remove_file(pydb_file::segment_path(dir.path(), ids[1], "log")).unwrap();
            if remove_hint {
                std::fs::remove_file(hint::hint_path(dir.path(), ids[1])).unwrap();
            }
            let report = verify_dir(dir.path()).unwrap();
            assert!(!report.opens(), "{report:?}");
            assert!(
                report
                    .findings
                    .iter()
                    .any(|f| f.reason.contains("a segment is missing")),
                "{report:?}"
            );
            assert!(AppendOnlyLogStorage::open(dir.path(), options()).is_err());
        }
    }

    #[test]
    fn a_hint_with_trailing_zeros_is_a_bad_hint_that_opening_rebuilds() {
        let dir = tempfile::tempdir().unwrap();
        let ids = three_segments(dir.path());
        let hint = hint::hint_path(dir.path(), ids[0]);
        let mut bytes = std::fs::read(&hint).unwrap();
        bytes.extend(std::iter::repeat_n(0u8, 5000));
        std::fs::write(&hint, bytes).unwrap();
        let report = verify_dir(dir.path()).unwrap();
        assert!(report.opens(), "{report:?}");
        assert_eq!(report.bad_hints().count(), 1, "{report:?}");
    }
}
