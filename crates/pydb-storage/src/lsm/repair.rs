//! Repairing an LSM directory: the plan of what to salvage, read with the
//! engine's own decoders.
//!
//! The engine refuses to open a directory whose manifest, tables or WALs
//! are damaged, because reading past damage would silently drop or change
//! acknowledged writes. `pydb repair` is the explicit, reported way to
//! accept that loss. This module decides what is kept ([`plan`]); the tool
//! writes it into a fresh database with the engine's API and swaps the
//! files (RocksDB's `RepairDB` is the model: it too salvages tables and
//! logs and builds a new manifest, rather than patching the old one).
//!
//! ## Which files are read
//!
//! - If `CURRENT` and the manifest it names read back whole, the manifest
//!   says which tables are live and which WALs are still needed (numbers at
//!   or past its log number), exactly as opening would. Files it does not
//!   name are orphans of an interrupted flush or compaction: not read.
//! - Otherwise every `*.sst` and `*.wal` in the directory is read. A table
//!   that a finished compaction replaced but had not yet deleted is read
//!   too; its versions are older than the ones that replaced it, so they
//!   lose to them (below), except where the compaction dropped a key
//!   altogether (its newest version was a tombstone at the bottom level):
//!   such a key can come back. The plan says when this fallback was taken.
//!
//! ## What is kept
//!
//! - **Tables:** the footer and index locate the data blocks; each data
//!   block is read and checked on its own (its CRC, its entries, their
//!   order, its last key against the index). A block that fails is lost,
//!   with its key range (after the previous block's last key, up to its own
//!   last key); the other blocks of the table are kept. A table whose footer
//!   or index fails is lost whole: without the index the blocks cannot be
//!   found (a block's length is stored only there). The filter and the
//!   properties are not needed: the data blocks are the truth.
//! - **WALs:** walked with [`pydb_wal::verify::Walker`], which steps over
//!   damage. A read that fails below the log (an encrypted block that
//!   fails authentication) ends what is kept of that WAL, as a torn tail
//!   would. A batch (one `write_batch`, several records) is kept only if
//!   every record of it verifies and decodes; a batch with a record in the
//!   damage is dropped, and so is the first batch after a damaged region,
//!   whose first records may have been in it. A torn tail is dropped, as
//!   recovery drops it.
//! - **The merge:** every version read carries its sequence number, so the
//!   newest version of each key wins whatever file it came from, and a key
//!   whose newest version is a tombstone stays deleted. When a damaged
//!   block held the newest version of a key, an older version from another
//!   table wins instead: the key goes back in time, and the plan lists the
//!   lost key ranges so that the loss is reported, never silent.
//!
//! The plan holds the newest version of every key in memory (as the
//! B+tree's plan holds its pairs): repair is a rare, offline operation.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use pydb_file::{File, FileOpener};
use pydb_wal::record::{FLAG_BATCH_CONTINUES, RECORD_HEADER_LEN};
use pydb_wal::verify::{Step, Walker};

use super::manifest::{ManifestState, manifest_name, read_current};
use super::memtable::Entry;
use super::table::{read_data_block, read_index};
use super::version::table_name;
use super::{decode_wal_entry, file_number};
use crate::Result;

/// Something the plan could not keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lost {
    /// The file it is in.
    pub file: PathBuf,
    /// Where the damage is.
    pub offset: u64,
    /// What failed.
    pub reason: String,
    /// What is lost: a block's key range, a whole table, or WAL batches.
    pub what: String,
}

/// What was read from one table or WAL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSalvage {
    /// The file.
    pub file: PathBuf,
    /// Versions kept (table entries or WAL records).
    pub kept: u64,
    /// Data blocks (tables) or batches (WALs) dropped.
    pub dropped: u64,
}

impl FileSalvage {
    fn nothing_yet(path: &Path) -> Self {
        Self {
            file: path.to_path_buf(),
            kept: 0,
            dropped: 0,
        }
    }
}

/// What to keep of an LSM directory (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// The live manifest's number when it was read whole; `None` when
    /// every table and WAL of the directory was read instead.
    pub manifest: Option<u64>,
    /// Why the manifest was not used, if it was not.
    pub manifest_problem: Option<String>,
    /// Every table read.
    pub tables: Vec<FileSalvage>,
    /// Every WAL read.
    pub wals: Vec<FileSalvage>,
    /// Everything lost, in the order found.
    pub lost: Vec<Lost>,
    /// Versions read, all files together.
    pub versions_read: u64,
    /// The newest value of every key whose newest version is not a
    /// tombstone: the database to write.
    pub pairs: BTreeMap<Bytes, Bytes>,
    /// Keys whose newest version is a tombstone (not written).
    pub deleted_keys: u64,
    /// The largest sequence number read.
    pub last_seq: u64,
}

impl Plan {
    /// Whether the directory needs no repair: the manifest was used and
    /// nothing was lost.
    pub fn is_clean(&self) -> bool {
        self.manifest.is_some() && self.lost.is_empty()
    }
}

/// The newest version seen of each key: `(seq, value or None)`.
type Newest = BTreeMap<Bytes, (u64, Option<Bytes>)>;

fn offer(newest: &mut Newest, entry: Entry) {
    match newest.get_mut(&entry.key) {
        Some(slot) if slot.0 >= entry.seq => {}
        Some(slot) => *slot = (entry.seq, entry.value),
        None => {
            newest.insert(entry.key, (entry.seq, entry.value));
        }
    }
}

/// Works out what `pydb repair` keeps of the LSM database in `dir`,
/// reading every file through `opener`. Reads only; writes nothing.
pub fn plan<O: FileOpener>(opener: &O, dir: &Path) -> Result<Plan> {
    let mut names: Vec<String> = opener
        .list_dir(dir)?
        .into_iter()
        .filter_map(|n| n.into_string().ok())
        .collect();
    names.sort_unstable();
    let mut plan = Plan::default();
    let (tables, wals) = match live_files(opener, dir) {
        Ok(Some((number, state))) => {
            plan.manifest = Some(number);
            let tables: Vec<u64> = state
                .levels
                .iter()
                .flat_map(|l| l.values().map(|t| t.number))
                .collect();
            let wals = numbers_of(&names, "wal")
                .into_iter()
                .filter(|n| *n >= state.log_number)
                .collect();
            (tables, wals)
        }
        Ok(None) => {
            // No CURRENT: a database that never finished its first open
            // has no tables; read whatever is there.
            plan.manifest_problem = Some("no CURRENT file".into());
            (numbers_of(&names, "sst"), numbers_of(&names, "wal"))
        }
        Err(e) => {
            plan.manifest_problem = Some(e.to_string());
            (numbers_of(&names, "sst"), numbers_of(&names, "wal"))
        }
    };
    let mut newest = Newest::new();
    for number in tables {
        let path = dir.join(table_name(number));
        let salvage = salvage_table(opener, &path, &mut newest, &mut plan.lost)?;
        plan.versions_read += salvage.kept;
        plan.tables.push(salvage);
    }
    for number in wals {
        let path = dir.join(super::wal_name(number));
        let salvage = salvage_wal(opener, &path, &mut newest, &mut plan.lost)?;
        plan.versions_read += salvage.kept;
        plan.wals.push(salvage);
    }
    for (key, (seq, value)) in newest {
        plan.last_seq = plan.last_seq.max(seq);
        match value {
            Some(value) => {
                plan.pairs.insert(key, value);
            }
            None => plan.deleted_keys += 1,
        }
    }
    Ok(plan)
}

/// The live manifest's number and the state it builds, if `CURRENT`
/// names one that reads back whole.
fn live_files<O: FileOpener>(opener: &O, dir: &Path) -> Result<Option<(u64, ManifestState)>> {
    let Some(number) = read_current(opener, dir)? else {
        return Ok(None);
    };
    let file = opener.open(&dir.join(manifest_name(number)), false)?;
    let report = super::describe_manifest(&file)?;
    Ok(Some((number, report.state)))
}

/// The numbers of the files named `NNNNNN.<kind>`, ascending.
fn numbers_of(names: &[String], kind: &str) -> Vec<u64> {
    let mut numbers: Vec<u64> = names
        .iter()
        .filter_map(|n| file_number(n))
        .filter(|(_, k)| *k == kind)
        .map(|(n, _)| n)
        .collect();
    numbers.sort_unstable();
    numbers
}

/// Reads every data block of the table at `path` that verifies.
fn salvage_table<O: FileOpener>(
    opener: &O,
    path: &Path,
    newest: &mut Newest,
    lost: &mut Vec<Lost>,
) -> Result<FileSalvage> {
    let mut salvage = FileSalvage::nothing_yet(path);
    let file = match opener.open(path, false) {
        Ok(file) => file,
        Err(e) => {
            lost.push(Lost {
                file: path.to_path_buf(),
                offset: 0,
                reason: e.to_string(),
                what: "the whole table (it cannot be opened)".into(),
            });
            return Ok(salvage);
        }
    };
    let index = match read_index(&file) {
        Ok(index) => index,
        Err(e) if e.is_corruption() => {
            lost.push(Lost {
                file: path.to_path_buf(),
                offset: corrupted_offset(&e),
                reason: e.to_string(),
                what: "the whole table (its footer or index is damaged)".into(),
            });
            return Ok(salvage);
        }
        Err(e) => return Err(e),
    };
    // The last key of the previous block that verified, for the order check
    // across blocks, and of the previous block at all, for key ranges.
    let mut last_kept: Option<Entry> = None;
    let mut previous_last_key: Option<&Bytes> = None;
    for (last_key, handle) in &index.index {
        let read = read_data_block(&file, *handle, last_key, index.footer_at).and_then(|es| {
            let ordered = es.windows(2).all(|w| w[0].precedes(&w[1]))
                && last_kept
                    .as_ref()
                    .zip(es.first())
                    .is_none_or(|(a, b)| a.precedes(b));
            if ordered {
                Ok(es)
            } else {
                Err(crate::Error::corrupted(
                    path,
                    handle.offset,
                    "entries out of order",
                ))
            }
        });
        match read {
            Ok(entries) => {
                salvage.kept += entries.len() as u64;
                last_kept = entries.last().cloned();
                for entry in entries {
                    offer(newest, entry);
                }
            }
            Err(e) if e.is_corruption() => {
                salvage.dropped += 1;
                lost.push(Lost {
                    file: path.to_path_buf(),
                    offset: handle.offset,
                    reason: e.to_string(),
                    what: match previous_last_key {
                        Some(previous) => format!(
                            "one data block: the versions of the keys after {} up to {}",
                            show(previous),
                            show(last_key)
                        ),
                        None => format!(
                            "one data block: the versions of the keys up to {}",
                            show(last_key)
                        ),
                    },
                });
            }
            Err(e) => return Err(e),
        }
        previous_last_key = Some(last_key);
    }
    Ok(salvage)
}

/// Keeps every whole batch of the WAL at `path` that verifies.
fn salvage_wal<O: FileOpener>(
    opener: &O,
    path: &Path,
    newest: &mut Newest,
    lost: &mut Vec<Lost>,
) -> Result<FileSalvage> {
    let mut salvage = FileSalvage::nothing_yet(path);
    // The readable prefix: a read that fails its check below the log (an
    // encrypted block that fails authentication) ends what is kept of the
    // WAL, as a torn tail would. A WAL holds at most a memtable's worth.
    let bytes = crate::log::repair::read_salvageable(opener, path)?;
    let len = opener.open(path, false)?.len()?;
    if (bytes.len() as u64) < len {
        lost.push(Lost {
            file: path.to_path_buf(),
            offset: bytes.len() as u64,
            reason: "a read fails its check (an encrypted block that fails authentication)".into(),
            what: "the rest of the WAL from this offset".into(),
        });
    }
    let walker = Walker::from_bytes(&bytes)?;
    let mut batch: Vec<Entry> = Vec::new();
    // Whether the records gathered so far may form a whole batch: false
    // after a record that does not decode, and right after a damaged region
    // (the batch's first records may have been in it), until a batch ends.
    let mut whole = true;
    let mut batch_from = 0u64;
    let mut drop_batch = |from: u64, batch: &mut Vec<Entry>, salvage: &mut FileSalvage| {
        salvage.dropped += 1;
        lost.push(Lost {
            file: path.to_path_buf(),
            offset: from,
            reason: "the batch has records in damaged bytes, or one that does not decode".into(),
            what: format!(
                "a batch ({} of its records verified and are dropped with it)",
                batch.len()
            ),
        });
        batch.clear();
    };
    let walked = walker.walk(&mut |step| {
        match step {
            Step::Record {
                offset,
                flags,
                bytes,
                ..
            } => {
                if batch.is_empty() && whole {
                    batch_from = offset;
                }
                match decode_wal_entry(bytes.get(RECORD_HEADER_LEN..).unwrap_or(&[])) {
                    Ok((seq, key, value)) => batch.push(Entry { key, seq, value }),
                    // Verified bytes that are not an entry: the batch goes.
                    Err(_) => {
                        if whole {
                            batch_from = offset;
                        }
                        whole = false;
                    }
                }
                if flags & FLAG_BATCH_CONTINUES == 0 {
                    if whole {
                        salvage.kept += batch.len() as u64;
                        for entry in batch.drain(..) {
                            offer(newest, entry);
                        }
                    } else {
                        drop_batch(batch_from, &mut batch, &mut salvage);
                    }
                    whole = true;
                }
            }
            // Damage: the batch it cuts goes, with its records on both
            // sides, when the next batch end is reached.
            Step::Bad {
                offset,
                next_valid: Some(_),
                ..
            } => {
                if whole && batch.is_empty() {
                    batch_from = offset;
                }
                whole = false;
            }
            // A torn tail, as an interrupted append leaves it: recovery
            // drops it too.
            Step::Bad {
                next_valid: None, ..
            }
            | Step::OpenBatch { .. } => batch.clear(),
        }
        None
    });
    let report = walked?;
    for damage in report.damage {
        lost.push(Lost {
            file: path.to_path_buf(),
            offset: damage.offset,
            reason: damage.reason,
            what: "damaged bytes".into(),
        });
    }
    Ok(salvage)
}

/// The offset a corruption error names (0 if it names none).
fn corrupted_offset(e: &crate::Error) -> u64 {
    match e {
        crate::Error::File(pydb_file::Error::Corrupted { offset, .. }) => *offset,
        _ => 0,
    }
}

/// A key for a report: text if it is printable, else hex.
fn show(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(text) if !text.chars().any(char::is_control) => format!("{text:?}"),
        _ => format!(
            "0x{}",
            key.iter().map(|b| format!("{b:02x}")).collect::<String>()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lsm::{LsmOptions, LsmStorage, decode_block, verify_dir};
    use crate::{StorageEngine, WriteBatch};
    use pydb_file::MonolithicOpener;

    type Model = BTreeMap<Bytes, Bytes>;

    fn small() -> LsmOptions {
        LsmOptions {
            memtable_size: 4096,
            block_size: 256,
            l0_compaction_trigger: 2,
            ..LsmOptions::default()
        }
    }

    fn key(i: usize) -> Bytes {
        Bytes::from(format!("key{i:05}"))
    }

    fn value(i: usize, round: usize) -> Bytes {
        Bytes::from(format!("value-{i}-{round}-{}", "x".repeat(i % 17)))
    }

    fn flip(path: &Path, offset: u64) {
        let mut bytes = std::fs::read(path).unwrap();
        bytes[offset as usize] ^= 0x40;
        std::fs::write(path, &bytes).unwrap();
    }

    /// Writes, overwrites and deletes over several flushes and compactions,
    /// leaving the last writes in the WAL; returns what a reader sees.
    fn churn(dir: &Path) -> Model {
        let mut model = Model::new();
        let db = LsmStorage::open(dir, small()).unwrap();
        for round in 0..3 {
            for i in (round..400).step_by(round + 1) {
                if i % 7 == round {
                    db.delete(&key(i)).unwrap();
                    model.remove(&key(i));
                } else {
                    db.set(&key(i), &value(i, round)).unwrap();
                    model.insert(key(i), value(i, round));
                }
            }
        }
        db.wait_for_compactions().unwrap();
        // Newer versions in one level-0 table above the compacted levels
        // (the manifest lists level 0 first: newest first, oldest last).
        for i in (0..400).step_by(20) {
            if i % 40 == 0 {
                db.delete(&key(i)).unwrap();
                model.remove(&key(i));
            } else {
                db.set(&key(i), &value(i, 9)).unwrap();
                model.insert(key(i), value(i, 9));
            }
        }
        db.flush_memtable().unwrap();
        db.wait_for_compactions().unwrap();
        assert_eq!(db.level_files()[0], 1, "{:?}", db.level_files());
        db.set(&key(1), b"in the wal").unwrap();
        model.insert(key(1), Bytes::from_static(b"in the wal"));
        model
    }

    fn plan_of(dir: &Path) -> Plan {
        plan(&MonolithicOpener, dir).unwrap()
    }

    #[test]
    fn a_healthy_directory_plans_exactly_what_a_reader_sees() {
        let dir = tempfile::tempdir().unwrap();
        let model = churn(dir.path());
        let plan = plan_of(dir.path());
        assert!(plan.is_clean(), "{:?}", plan.lost);
        assert!(!plan.tables.is_empty() && !plan.wals.is_empty());
        assert_eq!(plan.pairs, model);
        assert!(
            plan.deleted_keys > 0,
            "tombstones read and obeyed: {:?}",
            plan.tables
        );
    }

    /// The table, offset and last key of each data block of every live table.
    fn data_blocks(dir: &Path) -> Vec<(PathBuf, u64, Bytes)> {
        let report = verify_dir(&MonolithicOpener, dir).unwrap();
        let mut out = Vec::new();
        for table in report.tables {
            let bytes = std::fs::read(&table.path).unwrap();
            for (handle, _, _) in &table.blocks {
                let start = handle.offset as usize;
                let framed = &bytes[start..start + handle.len as usize + 5];
                let last = decode_block(framed).unwrap().last().unwrap().0.clone();
                out.push((table.path.clone(), handle.offset, last));
            }
        }
        out
    }

    #[test]
    fn a_damaged_data_block_loses_its_key_range_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        // Every key written once, so no other table holds an older version.
        let mut model = Model::new();
        {
            let db = LsmStorage::open(dir.path(), small()).unwrap();
            for i in 0..500 {
                db.set(&key(i), &value(i, 0)).unwrap();
                model.insert(key(i), value(i, 0));
            }
            db.flush_memtable().unwrap();
            db.wait_for_compactions().unwrap();
        }
        let blocks = data_blocks(dir.path());
        let (victim, before) = (1..blocks.len())
            .find(|&i| blocks[i].0 == blocks[i - 1].0)
            .map(|i| (&blocks[i], &blocks[i - 1]))
            .expect("a table of two blocks or more");
        flip(&victim.0, victim.1 + 3);
        assert!(verify_dir(&MonolithicOpener, dir.path()).is_err());

        let plan = plan_of(dir.path());
        assert_eq!(plan.lost.len(), 1, "{:?}", plan.lost);
        let lost = &plan.lost[0];
        assert_eq!((&lost.file, lost.offset), (&victim.0, victim.1));
        assert!(lost.what.contains(&show(&victim.2)), "{}", lost.what);
        model.retain(|k, _| *k <= before.2 || *k > victim.2);
        assert_eq!(plan.pairs, model);
        assert!(!plan.is_clean());
    }

    #[test]
    fn a_damaged_manifest_reads_every_table_and_wal() {
        let dir = tempfile::tempdir().unwrap();
        let model = churn(dir.path());
        let current = read_current(&MonolithicOpener, dir.path())
            .unwrap()
            .unwrap();
        let manifest = dir.path().join(manifest_name(current));
        let len = std::fs::metadata(&manifest).unwrap().len();
        flip(&manifest, len / 2);
        let plan = plan_of(dir.path());
        assert_eq!(plan.manifest, None);
        assert!(plan.manifest_problem.is_some());
        assert_eq!(plan.pairs, model);
    }

    #[test]
    fn a_missing_current_is_refused_by_open_and_salvaged_by_the_plan() {
        let dir = tempfile::tempdir().unwrap();
        let model = churn(dir.path());
        std::fs::remove_file(dir.path().join("CURRENT")).unwrap();
        let Err(err) = LsmStorage::open(dir.path(), small()) else {
            panic!("refused")
        };
        assert!(err.is_corruption(), "{err}");
        assert!(
            std::fs::read_dir(dir.path()).unwrap().any(|e| e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".sst")),
            "nothing was deleted"
        );
        let plan = plan_of(dir.path());
        assert_eq!(plan.manifest_problem.as_deref(), Some("no CURRENT file"));
        assert_eq!(plan.pairs, model);
    }

    #[test]
    fn a_wal_batch_is_kept_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let opts = LsmOptions {
            memtable_size: 1 << 20,
            ..LsmOptions::default()
        };
        let batches: Vec<Vec<usize>> = (0..50).map(|b| vec![3 * b, 3 * b + 1, 3 * b + 2]).collect();
        {
            let db = LsmStorage::open(dir.path(), opts).unwrap();
            for keys in &batches {
                let mut batch = WriteBatch::new();
                for &i in keys {
                    batch.set(key(i), value(i, 0));
                }
                db.write_batch(&batch).unwrap();
            }
        }
        let wal = plan_of(dir.path()).wals[0].file.clone();
        // The offsets of the records, in order: batch b is records 3b..3b+3.
        let file = MonolithicOpener.open(&wal, false).unwrap();
        let mut offsets = Vec::new();
        Walker::open(&file)
            .unwrap()
            .walk(&mut |step| {
                if let Step::Record { offset, .. } = step {
                    offsets.push(offset);
                }
                None
            })
            .unwrap();
        assert_eq!(offsets.len(), 150);
        // The payload of the middle record of batch 20.
        flip(&wal, offsets[3 * 20 + 1] + RECORD_HEADER_LEN as u64 + 2);

        let plan = plan_of(dir.path());
        let model: Model = batches
            .iter()
            .enumerate()
            .filter(|(b, _)| *b != 20)
            .flat_map(|(_, keys)| keys.iter().map(|&i| (key(i), value(i, 0))))
            .collect();
        assert_eq!(plan.pairs, model, "batch 20 lost whole, every other kept");
        assert_eq!(plan.wals[0].dropped, 1);
        assert!(plan.lost.iter().all(|l| l.file == wal));
    }
}
