//! Describers and the verifier of an LSM directory: what `pydb inspect`
//! and `pydb check` print. They only read: a damaged directory is reported,
//! never repaired or truncated here.
//!
//! - [`describe_table`](super::describe_table): one table, block by block.
//! - [`describe_manifest`]: every edit of a manifest and the state they
//!   build.
//! - [`verify_dir`]: `CURRENT`, the manifest, every table it names (every
//!   block read and checked) and every WAL still needed.

use std::path::{Path, PathBuf};

use pydb_file::{File, FileOpener};

use super::manifest::{ManifestState, VersionEdit, manifest_name, read_current};
use super::table::{TableReport, describe_table};
use super::version::table_name;
use super::{decode_wal_entry, file_number, wal_name};
use crate::{Error, Result};

/// A manifest, edit by edit.
#[derive(Debug, Clone)]
pub struct ManifestReport {
    /// The manifest file.
    pub path: PathBuf,
    /// Each edit with the offset of its record.
    pub edits: Vec<(u64, VersionEdit)>,
    /// The state after the last edit.
    pub state: ManifestState,
    /// Bytes after the last complete record (a torn tail), if any.
    pub torn_bytes: u64,
}

impl std::fmt::Display for ManifestReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "manifest {}", self.path.display())?;
        for (offset, e) in &self.edits {
            write!(f, "  edit at offset {offset}:")?;
            if let Some(v) = e.log_number {
                write!(f, " log_number={v}")?;
            }
            if let Some(v) = e.next_file {
                write!(f, " next_file={v}")?;
            }
            if let Some(v) = e.last_seq {
                write!(f, " last_seq={v}")?;
            }
            for (l, n) in &e.deleted {
                write!(f, " -L{l}:{n}")?;
            }
            for (l, t) in &e.added {
                write!(
                    f,
                    " +L{l}:{}({} bytes, {} entries)",
                    t.number, t.size, t.entries
                )?;
            }
            writeln!(f)?;
        }
        for (level, tables) in self.state.levels.iter().enumerate() {
            if !tables.is_empty() {
                let bytes: u64 = tables.values().map(|t| t.size).sum();
                writeln!(f, "  level {level}: {} tables, {bytes} bytes", tables.len())?;
            }
        }
        writeln!(f, "  torn bytes: {}", self.torn_bytes)
    }
}

/// Decodes every edit of the manifest in `file` without changing it.
pub fn describe_manifest<F: File>(file: &F) -> Result<ManifestReport> {
    let mut state = ManifestState::new();
    let mut edits = Vec::new();
    let mut scanner = pydb_wal::Scanner::new(file)?;
    while let Some(batch) = scanner.next_batch()? {
        for record in batch {
            let edit = VersionEdit::decode(&record.payload).map_err(|(at, reason)| {
                Error::corrupted(
                    file.path(),
                    record.offset + pydb_wal::RECORD_HEADER_LEN as u64 + at,
                    reason,
                )
            })?;
            state
                .apply(&edit)
                .map_err(|reason| Error::corrupted(file.path(), record.offset, reason))?;
            edits.push((record.offset, edit));
        }
    }
    Ok(ManifestReport {
        path: file.path().to_path_buf(),
        edits,
        state,
        torn_bytes: scanner.tail().torn_bytes(),
    })
}

/// What [`verify_dir`] found.
#[derive(Debug, Clone)]
pub struct DirReport {
    /// The live manifest (`None` for a directory without `CURRENT`).
    pub manifest: Option<ManifestReport>,
    /// Every live table, checked block by block.
    pub tables: Vec<TableReport>,
    /// WALs still needed: (number, records, torn bytes).
    pub wals: Vec<(u64, u64, u64)>,
    /// Files no manifest names (left by a crash; the next open deletes them).
    pub orphans: Vec<String>,
}

impl std::fmt::Display for DirReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.manifest {
            Some(m) => write!(f, "{m}")?,
            None => writeln!(f, "no CURRENT: an empty database")?,
        }
        for t in &self.tables {
            writeln!(
                f,
                "table {}: {} blocks, {} entries, ok",
                t.path.display(),
                t.blocks.len(),
                t.properties.entries
            )?;
        }
        for (n, records, torn) in &self.wals {
            writeln!(
                f,
                "wal {}: {records} records, {torn} torn bytes, ok",
                wal_name(*n)
            )?;
        }
        for o in &self.orphans {
            writeln!(f, "orphan {o} (deleted at the next open)")?;
        }
        writeln!(f, "verdict: ok")
    }
}

/// Reads and checks everything the database in `dir` depends on. The first
/// damage found is an error naming file and offset.
pub fn verify_dir<O: FileOpener>(opener: &O, dir: &Path) -> Result<DirReport> {
    let names: Vec<String> = opener
        .list_dir(dir)?
        .into_iter()
        .filter_map(|n| n.into_string().ok())
        .collect();
    let Some(number) = read_current(opener, dir)? else {
        return Ok(DirReport {
            manifest: None,
            tables: Vec::new(),
            wals: Vec::new(),
            orphans: names
                .into_iter()
                .filter(|n| file_number(n).is_some())
                .collect(),
        });
    };
    let manifest = describe_manifest(&opener.open(&dir.join(manifest_name(number)), false)?)?;
    let mut tables = Vec::new();
    let mut live = std::collections::HashSet::new();
    for meta in manifest.state.levels.iter().flat_map(|l| l.values()) {
        let path = dir.join(table_name(meta.number));
        let report = describe_table(opener.open(&path, false)?)?;
        let size = opener.open(&path, false)?.len()?;
        if size != meta.size {
            return Err(Error::corrupted(
                &path,
                size,
                format!("table is {size} bytes, the manifest says {}", meta.size),
            ));
        }
        live.insert(meta.number);
        tables.push(report);
    }
    let mut wals = Vec::new();
    let mut orphans = Vec::new();
    for name in &names {
        match file_number(name) {
            Some((n, "wal")) if n >= manifest.state.log_number => {
                let path = dir.join(name);
                let file = opener.open(&path, false)?;
                let mut scanner = pydb_wal::Scanner::new(&file)?;
                let mut records = 0;
                while let Some(batch) = scanner.next_batch()? {
                    for r in batch {
                        decode_wal_entry(&r.payload)
                            .map_err(|reason| Error::corrupted(&path, r.offset, reason))?;
                        records += 1;
                    }
                }
                wals.push((n, records, scanner.tail().torn_bytes()));
            }
            Some((n, "sst")) if live.contains(&n) => {}
            Some((n, "manifest")) if n == number => {}
            Some(_) => orphans.push(name.clone()),
            None => {}
        }
    }
    wals.sort_unstable();
    Ok(DirReport {
        manifest: Some(manifest),
        tables,
        wals,
        orphans,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StorageEngine;
    use crate::lsm::{LsmOptions, LsmStorage};
    use pydb_file::MonolithicOpener;

    #[test]
    fn a_healthy_directory_verifies_and_describes_itself() {
        let dir = tempfile::tempdir().unwrap();
        let opts = LsmOptions {
            memtable_size: 2048,
            block_size: 256,
            l0_compaction_trigger: 2,
            ..LsmOptions::default()
        };
        {
            let db = LsmStorage::open(dir.path(), opts.clone()).unwrap();
            for i in 0..300u32 {
                db.set(format!("k{i:04}").as_bytes(), &[b'v'; 30]).unwrap();
            }
            db.flush_memtable().unwrap();
            db.set(b"in-the-wal", b"1").unwrap();
        }
        let report = verify_dir(&MonolithicOpener, dir.path()).unwrap();
        assert!(!report.tables.is_empty());
        assert_eq!(report.wals.len(), 1);
        // A clean close does not flush the active memtable: the last write
        // is only in the live WAL, which the next open adopts.
        assert_eq!(report.wals[0].1, 1, "the live wal holds the last write");
        let tables = report.tables.len();
        let db = LsmStorage::open(dir.path(), opts.clone()).unwrap();
        assert_eq!(db.get(b"in-the-wal").unwrap().as_deref(), Some(&b"1"[..]));
        assert!(db.stats().get("memtable_bytes") > Some(0), "adopted");
        db.set(b"after", b"2").unwrap();
        drop(db);
        let reopened = verify_dir(&MonolithicOpener, dir.path()).unwrap();
        assert_eq!(
            reopened.tables.len(),
            tables,
            "no table written by reopening"
        );
        let records: Vec<u64> = reopened.wals.iter().map(|w| w.1).collect();
        assert_eq!(records, [1, 1], "the adopted wal, then the new one");
        let text = report.to_string();
        assert!(
            text.contains("verdict: ok") && text.contains("+L0:"),
            "{text}"
        );
        let table = &report.tables[0];
        assert!(table.to_string().contains("restart points"));
        // Damage in a table is an error naming it.
        let path = table.path.clone();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[3] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let err = verify_dir(&MonolithicOpener, dir.path()).unwrap_err();
        assert!(
            matches!(&err, Error::File(pydb_file::Error::Corrupted { path: file, .. }) if *file == path),
            "{err}"
        );
    }
}
