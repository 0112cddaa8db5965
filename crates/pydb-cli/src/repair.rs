//! `pydb repair`: salvage a damaged log database, like `redis-check-aof --fix`.
//!
//! The engine refuses to open a database whose segments are damaged in the
//! middle, because skipping damage would silently drop acknowledged writes.
//! `repair` is the explicit, reported way to accept that loss: it keeps
//! every batch whose records verify, sets aside everything else, and leaves
//! a directory the engine opens.
//!
//! ## What it does
//!
//! 1. A damaged `PYDB` metadata file of a directory that holds log
//!    segments is moved aside and written anew for the log engine.
//! 2. The plan of what to keep comes from the engine's crate:
//!    [`pydb_storage::log::repair::plan`] walks every segment with
//!    `pydb-wal`'s walker and keeps every batch whose records verify (its
//!    docs give the rules). This module only carries it out.
//! 3. Each segment the plan rewrites is written to `<id>.log.tmp`, synced;
//!    the original is hard-linked into `DIR/repair-<timestamp>/`, the new
//!    file renamed over it, and the directory synced. The original is never
//!    deleted, and a crash at any step leaves either the original or the
//!    new segment under its name (a leftover `.tmp` is removed on the next
//!    open). The hint of a rewritten segment is moved aside: it is stale.
//! 4. Every hint that the verifier ([`pydb_storage::log::verify`]) rejects
//!    is moved aside and rebuilt from its segment by the engine's own code
//!    ([`pydb_storage::log::repair::rebuild_hint`]), as opening would.
//!
//! The database must be closed: repair takes the directory lock. Segment
//! ids are kept (no renumbering is needed: the engine orders by id and
//! checks seq ranges, which step 3 makes consistent).
//!
//! ## B+tree databases
//!
//! 1. The engine is opened once, which replays the WAL (recovery) and
//!    checkpoints it into the page file on close. If it opens and its
//!    invariant check ([`BTreeStorage::check_invariants`]) passes, there is
//!    nothing to repair. If it does not open, the WAL cannot be replayed:
//!    the pages are salvaged as they are on disk, and the old WAL is kept
//!    aside with the rest.
//! 2. The plan comes from the engine's crate: [`pydb_storage::btree::repair::plan`]
//!    keeps every pair of every leaf that verifies and belongs to the tree
//!    (its docs give the rules: walk from the root, scan only under damaged
//!    internal pages, higher page LSN wins, overflow chains checked).
//! 3. The pairs are written with the engine's own API into a fresh tree in
//!    `DIR/repair-<timestamp>.new/` (one write batch per leaf's worth),
//!    checkpointed and closed.
//! 4. The swap: the original page file is hard-linked into
//!    `DIR/repair-<timestamp>/` and its `wal/` moved there (never deleted);
//!    the new `wal/` is moved in and the new page file renamed over the old
//!    one, and the directories are synced. The WAL goes first and the page
//!    file last, so no state pairs the new pages with the old WAL (whose
//!    redo records would be applied to the wrong pages). A crash during the
//!    swap leaves the old page file under its name (with the old, the new
//!    or no WAL next to it) and every original in the aside directory, to
//!    be put back by hand; the swap is not yet tested under power cuts.
//!
//! ## LSM databases
//!
//! 1. The plan comes from the engine's crate: [`pydb_storage::lsm::repair::plan`]
//!    reads the tables and WALs the manifest names (every one in the
//!    directory if the manifest or `CURRENT` is damaged), keeps every data
//!    block and every whole WAL batch that verifies, and keeps the newest
//!    version of each key by sequence number (its docs give the rules). If
//!    the manifest was used and nothing is lost, there is nothing to repair.
//! 2. The newest value of every key is written with the engine's own API
//!    into a fresh database in `DIR/repair-<timestamp>.new/`, flushed to
//!    tables and verified. Its files are numbered above every old file's
//!    number, so the two sets never share a name.
//! 3. The swap: every original (`CURRENT`, manifests, tables, WALs) is
//!    hard-linked into `DIR/repair-<timestamp>/`; the new manifest, tables
//!    and WAL are moved in beside the old ones; the new `CURRENT` is renamed
//!    over the old one (the switch, one atomic rename); then the old files
//!    are removed. A crash before the switch leaves the old database as it
//!    was; after it, the new one (its next open deletes any old file left
//!    as an orphan). An old database without `CURRENT` is never opened as an
//!    empty one meanwhile: the engine refuses a directory without `CURRENT`
//!    that holds tables.
//!
//! An encrypted or compressed LSM database is repaired the same way through
//! its decorators: the plan reads the plaintext (a table block that fails
//! authentication is a lost block; in a WAL it ends what is kept of it),
//! and the new database is written through the same decorators, with the
//! same data key.
//!
//! ## Encrypted and compressed databases
//!
//! Log and B+tree databases are repaired through their decorators, with
//! `--encryption-key-file` when it is encrypted: the plan reads each
//! segment's plaintext ([`pydb_storage::log::repair::plan_with`]; a block
//! that fails authentication ends what is read of that segment, like a torn
//! tail), and the new segments and hints are written through the same
//! decorators, so no plaintext reaches the disk. An encrypted B+tree is
//! repaired the same way: the engine opens it through the decryption, the
//! plan reads its pages' plaintext (a block that fails authentication is a
//! damaged page), and the new tree is written encrypted with the same data
//! key. Refused, unchanged: no key, damaged `PYDB` (it holds the wrapped
//! key), and a
//! compressed segment whose damage stops the compressed layer from opening
//! it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use pydb_file::{
    CompressedOpener, EncryptedOpener, File, FileOpener, MonolithicFile, MonolithicOpener,
    TEMP_SUFFIX,
};
use pydb_storage::DirLock;
use pydb_storage::StorageEngine;
use pydb_storage::btree::wal::WAL_DIR;
use pydb_storage::btree::{BTreeOptions, BTreeStorage, PAGE_FILE_NAME};
use pydb_storage::log::SEGMENT_EXTENSION;
use pydb_storage::log::hint::hint_path;
use pydb_storage::log::repair as log_repair;
pub use pydb_storage::log::repair::Dropped;
use pydb_storage::log::verify as log_verify;
use pydb_storage::lsm::manifest::CURRENT as LSM_CURRENT;
use pydb_storage::lsm::repair as lsm_repair;
use pydb_storage::lsm::{LsmOptions, LsmStorage};

use crate::decorated::{Stack, StorageArgs};
use pydb::Compression;
use pydb::EngineKind;
use pydb::meta;
use pydb::{Error, Result};

/// What `repair` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepairReport {
    /// Segments read.
    pub segments_checked: usize,
    /// Segments written anew (their originals are in the aside directory).
    pub segments_rewritten: usize,
    /// Set and delete records kept.
    pub records_kept: u64,
    /// Every run of dropped bytes, with its offset.
    pub dropped: Vec<Dropped>,
    /// Seq ranges found missing and given up (`first..=last`).
    pub lost_seqs: Vec<(u64, u64)>,
    /// Bytes of the files moved aside.
    pub bytes_moved_aside: u64,
    /// Where the replaced files went, if any were.
    pub aside_dir: Option<PathBuf>,
    /// Hint files that failed their checks: moved aside, and rebuilt from
    /// their segment unless it is the last one.
    pub hints_replaced: usize,
    /// Whether the `PYDB` metadata file was damaged and rebuilt.
    pub metadata_rebuilt: bool,
    /// B+tree: leaves whose pairs were kept.
    pub leaves_kept: u64,
    /// B+tree: pages found damaged.
    pub pages_damaged: usize,
    /// B+tree: pairs dropped because their overflow chain is damaged.
    pub values_lost: usize,
}

impl RepairReport {
    /// Whether repair found nothing to change.
    pub fn was_clean(&self) -> bool {
        self.aside_dir.is_none()
    }
}

/// Repairs the database in `dir`, printing a report to `out`.
pub fn repair_dir(dir: &Path, out: &mut dyn Write) -> Result<RepairReport> {
    repair_dir_with(dir, &StorageArgs::default(), out)
}

/// Repairs the database in `dir` with the key of `--encryption-key-file`
/// when it is encrypted (see the module docs), printing a report to `out`.
pub fn repair_dir_with(
    dir: &Path,
    args: &StorageArgs,
    out: &mut dyn Write,
) -> Result<RepairReport> {
    let ids = pydb_file::list_ids(dir, SEGMENT_EXTENSION).map_err(pydb_storage::Error::from)?;
    let metadata = match meta::read(dir) {
        Ok(Some(metadata)) => Some(metadata),
        Ok(None) => {
            return Err(Error::NotADatabase {
                dir: dir.to_path_buf(),
                found: "no PYDB metadata file".into(),
            });
        }
        // Garbage metadata of a directory that holds log segments (and no
        // page file) is rebuilt below: the segments say what it was.
        Err(e) if e.is_corruption() && !ids.is_empty() && !dir.join(PAGE_FILE_NAME).exists() => {
            None
        }
        Err(e) => return Err(e),
    };
    // An encrypted or compressed log database is repaired through its
    // decorators (its segments are read and rewritten as the engine sees
    // them). Refused untouched: damaged metadata (it holds the wrapped key,
    // and rebuilding it would lose it), and the other engines.
    let decorated = match &metadata {
        Some(m) => m.is_encrypted() || m.compression != pydb::Compression::None,
        None => ids.iter().any(|id| {
            let path = pydb_file::segment_path(dir, *id, SEGMENT_EXTENSION);
            let mut head = [0u8; 8];
            std::fs::File::open(&path)
                .and_then(|f| std::os::unix::fs::FileExt::read_exact_at(&f, &mut head, 0))
                .is_ok()
                && crate::decorated::is_decorated(&head)
        }),
    };
    if decorated {
        let stack = match &metadata {
            Some(metadata) => Stack::new(dir, metadata, args)?,
            None => {
                return Err(Error::InvalidArgument(format!(
                    "{} is an encrypted or compressed database with damaged metadata (it holds \
                     the wrapped key and the settings): `pydb repair` cannot read it through its \
                     decorators (`pydb check --encryption-key-file` reports the damage); nothing \
                     was changed",
                    dir.display(),
                )));
            }
        };
        let btree = metadata
            .as_ref()
            .is_some_and(|m| m.engine == EngineKind::BTree);
        let lsm = metadata
            .as_ref()
            .is_some_and(|m| m.engine == EngineKind::Lsm);
        return match (stack.encrypted, stack.compression, stack.data_key) {
            (true, _, None) => Err(Error::KeyRequired {
                dir: dir.to_path_buf(),
            }),
            (true, Compression::None, Some(key)) if lsm => {
                repair_lsm(dir, EncryptedOpener::new(MonolithicOpener, key), out)
            }
            (true, Compression::Lz4, Some(key)) if lsm => repair_lsm(
                dir,
                CompressedOpener::new(EncryptedOpener::new(MonolithicOpener, key)),
                out,
            ),
            (false, _, _) if lsm => repair_lsm(dir, CompressedOpener::new(MonolithicOpener), out),
            // An encrypted B+tree (the B+tree is never compressed: it
            // rewrites pages in place).
            (true, Compression::None, Some(key)) if btree => {
                repair_btree(dir, EncryptedOpener::new(MonolithicOpener, key), out)
            }
            (true, Compression::None, Some(key)) => repair_log(
                dir,
                false,
                &EncryptedOpener::new(MonolithicOpener, key),
                out,
            ),
            (true, Compression::Lz4, Some(key)) => repair_log(
                dir,
                false,
                &CompressedOpener::new(EncryptedOpener::new(MonolithicOpener, key)),
                out,
            ),
            (false, _, _) => repair_log(dir, false, &CompressedOpener::new(MonolithicOpener), out),
        };
    }
    if let Some(metadata) = &metadata
        && metadata.engine == EngineKind::BTree
    {
        return repair_btree(dir, MonolithicOpener, out);
    }
    if let Some(metadata) = &metadata
        && metadata.engine == EngineKind::Lsm
    {
        return repair_lsm(dir, MonolithicOpener, out);
    }
    if let Some(metadata) = &metadata
        && metadata.engine != EngineKind::Log
    {
        return Err(Error::InvalidArgument(format!(
            "repair of a {} database is not implemented yet; `pydb check` reports its damage, \
             and nothing was changed",
            metadata.engine
        )));
    }
    repair_log(dir, metadata.is_none(), &MonolithicOpener, out)
}

/// Repairs the log database in `dir`, reading and writing its files
/// through `opener` (plain, encrypted and/or compressed).
/// `rebuild_metadata_first` when `PYDB` is damaged (plain databases only).
fn repair_log<O: FileOpener>(
    dir: &Path,
    rebuild_metadata_first: bool,
    opener: &O,
    out: &mut dyn Write,
) -> Result<RepairReport> {
    let write_err = |e| Error::io("<stdout>", e);
    // Refuses (Error::Locked) while the database is open elsewhere.
    let _lock = DirLock::acquire(dir)?;
    writeln!(out, "repairing {}", dir.display()).map_err(write_err)?;
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let aside = dir.join(format!("repair-{stamp}"));
    let mut report = RepairReport::default();
    if rebuild_metadata_first {
        rebuild_metadata(dir, &aside, &mut report)?;
        writeln!(
            out,
            "  {}: damaged; rebuilt for the log engine from its segments",
            meta::META_FILE_NAME
        )
        .map_err(write_err)?;
    }

    let plan = log_repair::plan_with(dir, opener)?;
    report.segments_checked = plan.segments.len();
    report.lost_seqs = plan.lost_seqs;
    for segment in plan.segments {
        report.records_kept += segment.records_kept;
        let Some(new) = &segment.rewrite else {
            writeln!(out, "  segment {:>6}: ok", segment.id).map_err(write_err)?;
            continue;
        };
        std::fs::create_dir_all(&aside).map_err(|e| Error::io(&aside, e))?;
        report.bytes_moved_aside += replace(dir, &aside, &segment.path, new, opener)?;
        let hint = hint_path(dir, segment.id);
        if hint.exists() {
            report.bytes_moved_aside += move_aside(&aside, &hint)?;
        }
        report.segments_rewritten += 1;
        report.aside_dir = Some(aside.clone());
        writeln!(
            out,
            "  segment {:>6}: rewritten, {} records kept, covers seqs {}..={}",
            segment.id, segment.records_kept, segment.first_seq, segment.last_seq
        )
        .map_err(write_err)?;
        for d in &segment.dropped {
            writeln!(
                out,
                "    dropped {} bytes at offset {}: {}",
                d.len, d.offset, d.reason
            )
            .map_err(write_err)?;
        }
        report.dropped.extend(segment.dropped);
    }
    pydb_file::sync_dir(dir).map_err(pydb_storage::Error::from)?;
    rebuild_hints(dir, &aside, &mut report, out, opener)?;

    for (first, last) in &report.lost_seqs {
        writeln!(
            out,
            "  seqs {first}..={last} are in no segment (a segment is missing): given up"
        )
        .map_err(write_err)?;
    }
    let dropped_bytes: u64 = report.dropped.iter().map(|d| d.len).sum();
    writeln!(
        out,
        "{} segments checked, {} rewritten; {} records kept; {} runs of {} bytes dropped",
        report.segments_checked,
        report.segments_rewritten,
        report.records_kept,
        report.dropped.len(),
        dropped_bytes
    )
    .map_err(write_err)?;
    match &report.aside_dir {
        Some(aside) => writeln!(
            out,
            "{} bytes of replaced files moved to {} (nothing was deleted)",
            report.bytes_moved_aside,
            aside.display()
        ),
        None => writeln!(out, "nothing to repair"),
    }
    .map_err(write_err)?;
    Ok(report)
}

/// Pairs written per batch into the new tree: about a leaf's worth.
const PAIRS_PER_BATCH: usize = 64;

/// Repairs the B+tree database in `dir`, reading and writing its files
/// through `opener` (plain or encrypted; see the module docs).
fn repair_btree<O: FileOpener + Clone + 'static>(
    dir: &Path,
    opener: O,
    out: &mut dyn Write,
) -> Result<RepairReport> {
    let write_err = |e| Error::io("<stdout>", e);
    let storage = pydb_storage::Error::from;
    writeln!(out, "repairing {} (B+tree)", dir.display()).map_err(write_err)?;
    let mut report = RepairReport::default();
    // Step 1: recovery by the engine itself. Refuses (Locked) while the
    // database is open elsewhere.
    let options = BTreeOptions {
        max_key_len: usize::MAX,
        max_value_len: usize::MAX,
        ..BTreeOptions::default()
    };
    let opened = match BTreeStorage::open_with(dir, options.clone(), opener.clone()) {
        Ok(engine) => {
            let invariants = engine.check_invariants();
            drop(engine);
            match invariants {
                Ok(shape) => {
                    writeln!(
                        out,
                        "  the tree verifies: {} keys in {} leaves",
                        shape.keys, shape.leaves
                    )
                    .map_err(write_err)?;
                    writeln!(out, "nothing to repair").map_err(write_err)?;
                    return Ok(report);
                }
                Err(e) if e.is_corruption() => {
                    writeln!(out, "  the engine opens (the WAL is replayed), but: {e}")
                        .map_err(write_err)?;
                }
                Err(e) => return Err(e.into()),
            }
            true
        }
        Err(e) if e.is_corruption() => {
            writeln!(
                out,
                "  the engine does not open ({e}); the WAL is not replayed, the pages are \
                 salvaged as they are"
            )
            .map_err(write_err)?;
            false
        }
        Err(e) => return Err(e.into()),
    };
    let _lock = DirLock::acquire(dir)?;

    // Step 2: the plan.
    let pages_path = dir.join(PAGE_FILE_NAME);
    // Opened as the engine opens it (through the decryption, if any);
    // opening and planning write nothing.
    let file = opener.open(&pages_path, false).map_err(storage)?;
    let plan = pydb_storage::btree::repair::plan(&file)?;
    drop(file);
    writeln!(
        out,
        "  {} pages of {} bytes; {}",
        plan.pages,
        plan.page_size,
        if plan.walked_from_root {
            "walked from the root"
        } else {
            "both meta pages damaged: every page scanned"
        }
    )
    .map_err(write_err)?;
    for bad in &plan.damaged {
        writeln!(
            out,
            "    page {} at offset {}: {}; its pairs are lost{}",
            bad.page,
            bad.offset,
            bad.reason,
            if plan.scanned > 0 {
                " (pages under it are searched by a scan)"
            } else {
                ""
            }
        )
        .map_err(write_err)?;
    }
    for lost in &plan.lost_values {
        writeln!(
            out,
            "    key {} in leaf {}: value dropped: {}",
            crate::inspect::show(&lost.key),
            lost.leaf,
            lost.reason
        )
        .map_err(write_err)?;
    }
    if !plan.walked_from_root && plan.leaves_kept == 0 {
        // Not one leaf verifies (or no page size fits): a rebuild would
        // replace the file with an empty tree. Leave it as it is.
        return Err(Error::corrupted(
            &pages_path,
            0,
            "no valid meta page and no leaf that verifies: nothing to salvage; nothing was changed",
        ));
    }
    report.leaves_kept = plan.leaves_kept;
    report.pages_damaged = plan.damaged.len();
    report.values_lost = plan.lost_values.len();
    report.records_kept = u64::try_from(plan.pairs.len()).unwrap_or(u64::MAX);
    if !opened {
        writeln!(
            out,
            "  the WAL was not replayed: it is moved aside with the page file, and writes \
             after the last checkpoint are lost"
        )
        .map_err(write_err)?;
    }

    // Step 3: the new tree, written with the engine's own API.
    let (aside, new_dir) = repair_dirs(dir)?;
    {
        let fresh = BTreeStorage::open_with(
            &new_dir,
            BTreeOptions {
                page_size: plan.page_size,
                ..options
            },
            opener,
        )?;
        let pairs: Vec<_> = plan.pairs.into_iter().collect();
        for chunk in pairs.chunks(PAIRS_PER_BATCH) {
            let mut batch = pydb_storage::WriteBatch::new();
            for (key, (_, value)) in chunk {
                batch.set(key.clone(), value.clone());
            }
            fresh.write_batch(&batch)?;
        }
        fresh.checkpoint()?;
        fresh.check_invariants()?;
    }

    // Step 4: the swap. The originals go aside, never deleted.
    std::fs::create_dir_all(&aside).map_err(|e| Error::io(&aside, e))?;
    report.bytes_moved_aside += keep_aside(&aside, &pages_path)?;
    let wal = dir.join(WAL_DIR);
    if wal.exists() {
        std::fs::rename(&wal, aside.join(WAL_DIR)).map_err(|e| Error::io(&wal, e))?;
        pydb_file::sync_dir(&aside).map_err(storage)?;
        pydb_file::sync_dir(dir).map_err(storage)?;
    }
    std::fs::rename(new_dir.join(WAL_DIR), &wal).map_err(|e| Error::io(&wal, e))?;
    std::fs::rename(new_dir.join(PAGE_FILE_NAME), &pages_path)
        .map_err(|e| Error::io(&pages_path, e))?;
    pydb_file::sync_dir(dir).map_err(storage)?;
    // Only the new tree's lock file is left in it.
    let _ = std::fs::remove_file(new_dir.join(pydb_storage::LOCK_FILE_NAME));
    let _ = std::fs::remove_dir(&new_dir);
    pydb_file::sync_dir(dir).map_err(storage)?;
    report.aside_dir = Some(aside.clone());
    writeln!(
        out,
        "{} pairs kept from {} leaves; {} pages damaged; {} values dropped",
        report.records_kept, report.leaves_kept, report.pages_damaged, report.values_lost
    )
    .map_err(write_err)?;
    writeln!(
        out,
        "the original page file and WAL were moved to {} (nothing was deleted)",
        aside.display()
    )
    .map_err(write_err)?;
    Ok(report)
}

/// Repairs the LSM database in `dir` (see the module docs), reading and
/// writing its files through `opener` (plain, encrypted and/or compressed).
fn repair_lsm<O: FileOpener + Clone + 'static>(
    dir: &Path,
    opener: O,
    out: &mut dyn Write,
) -> Result<RepairReport> {
    let write_err = |e| Error::io("<stdout>", e);
    let storage = pydb_storage::Error::from;
    writeln!(out, "repairing {} (LSM)", dir.display()).map_err(write_err)?;
    let mut report = RepairReport::default();
    // Refuses (Locked) while the database is open elsewhere.
    let _lock = DirLock::acquire(dir)?;

    // Step 1: the plan, from the engine's crate. It only reads.
    let plan = lsm_repair::plan(&opener, dir)?;
    match (&plan.manifest, &plan.manifest_problem) {
        (Some(number), _) => writeln!(
            out,
            "  the manifest (MANIFEST-{number:06}) reads back whole: the tables and WALs it \
             names are read"
        ),
        (None, problem) => writeln!(
            out,
            "  the manifest is not used ({}): every table and WAL in the directory is read",
            problem.as_deref().unwrap_or("unknown")
        ),
    }
    .map_err(write_err)?;
    for lost in &plan.lost {
        writeln!(
            out,
            "    {} at offset {}: {}; lost: {}",
            lost.file.display(),
            lost.offset,
            lost.reason,
            lost.what
        )
        .map_err(write_err)?;
    }
    report.segments_checked = plan.tables.len() + plan.wals.len();
    report.records_kept = u64::try_from(plan.pairs.len()).unwrap_or(u64::MAX);
    if plan.is_clean() {
        writeln!(
            out,
            "  {} keys in {} tables and {} WALs verify",
            plan.pairs.len(),
            plan.tables.len(),
            plan.wals.len()
        )
        .map_err(write_err)?;
        writeln!(out, "nothing to repair").map_err(write_err)?;
        return Ok(report);
    }
    if plan.versions_read == 0 && !plan.lost.is_empty() {
        // Not one version verifies: a rebuild would replace the database
        // with an empty one. Leave it as it is.
        return Err(Error::corrupted(
            dir,
            0,
            "no table block or WAL batch verifies: nothing to salvage; nothing was changed",
        ));
    }

    // Step 2: the new database, written with the engine's own API, with
    // every salvaged pair in a table (nothing left to replay).
    let (aside, new_dir) = repair_dirs(dir)?;
    // The new files are numbered above every old one, so that the two sets
    // can share the directory during the swap: the engine numbers past the
    // largest number it sees, here an empty placeholder manifest (which its
    // open deletes).
    let old_files = lsm_files(dir)?;
    let largest = old_files
        .iter()
        .filter_map(|p| lsm_file_number(p))
        .max()
        .unwrap_or(0);
    std::fs::create_dir_all(&new_dir).map_err(|e| Error::io(&new_dir, e))?;
    let placeholder = new_dir.join(format!("MANIFEST-{largest:06}"));
    std::fs::write(&placeholder, b"").map_err(|e| Error::io(&placeholder, e))?;
    {
        // The limits the old database was opened with are not stored; what
        // it holds fit them, so the new one takes the default limits or the
        // longest key and value salvaged, whichever is larger.
        let defaults = LsmOptions::default();
        let fresh = LsmStorage::open_with(
            &new_dir,
            opener.clone(),
            LsmOptions {
                max_key_size: plan
                    .pairs
                    .keys()
                    .map(|k| k.len())
                    .fold(defaults.max_key_size, usize::max),
                max_value_size: plan
                    .pairs
                    .values()
                    .map(|v| v.len())
                    .fold(defaults.max_value_size, usize::max),
                ..defaults
            },
        )?;
        let pairs: Vec<_> = plan.pairs.iter().collect();
        for chunk in pairs.chunks(PAIRS_PER_BATCH) {
            let mut batch = pydb_storage::WriteBatch::new();
            for (key, value) in chunk {
                batch.set((*key).clone(), (*value).clone());
            }
            fresh.write_batch(&batch)?;
        }
        fresh.flush_memtable()?;
        fresh.wait_for_compactions()?;
    }
    pydb_storage::lsm::verify_dir(&opener, &new_dir)?;
    let new_files = lsm_files(&new_dir)?;
    if let Some(clash) = new_files
        .iter()
        .filter(|p| !p.ends_with(LSM_CURRENT))
        .find(|p| lsm_file_number(p).is_none_or(|n| n <= largest))
    {
        return Err(Error::InvalidArgument(format!(
            "the new database's {} is not numbered above the old files; nothing was changed",
            clash.display()
        )));
    }

    // Step 3: the swap. Every original is kept aside (hard links) first.
    // The new files join the old ones (no name is shared), then `CURRENT`
    // is switched to the new manifest by one rename, and only then are the
    // old files removed. A crash before the switch leaves the old database
    // as it was (a damaged one without `CURRENT` is refused, not opened
    // empty, since it holds tables); after it, the new database, whose open
    // deletes the old files as orphans.
    std::fs::create_dir_all(&aside).map_err(|e| Error::io(&aside, e))?;
    for path in &old_files {
        report.bytes_moved_aside += keep_aside(&aside, path)?;
    }
    for new in new_files.iter().filter(|p| !p.ends_with(LSM_CURRENT)) {
        let target = dir.join(new.file_name().unwrap_or_default());
        std::fs::rename(new, &target).map_err(|e| Error::io(&target, e))?;
    }
    pydb_file::sync_dir(dir).map_err(storage)?;
    let current = dir.join(LSM_CURRENT);
    std::fs::rename(new_dir.join(LSM_CURRENT), &current).map_err(|e| Error::io(&current, e))?;
    pydb_file::sync_dir(dir).map_err(storage)?;
    for path in old_files.iter().filter(|p| !p.ends_with(LSM_CURRENT)) {
        std::fs::remove_file(path).map_err(|e| Error::io(path, e))?;
    }
    // Only the new database's lock file is left in it.
    let _ = std::fs::remove_file(new_dir.join(pydb_storage::LOCK_FILE_NAME));
    let _ = std::fs::remove_dir(&new_dir);
    pydb_file::sync_dir(dir).map_err(storage)?;
    report.aside_dir = Some(aside.clone());
    writeln!(
        out,
        "{} keys kept ({} versions read from {} tables and {} WALs; {} keys deleted); {} \
         damaged places",
        plan.pairs.len(),
        plan.versions_read,
        plan.tables.len(),
        plan.wals.len(),
        plan.deleted_keys,
        plan.lost.len()
    )
    .map_err(write_err)?;
    writeln!(
        out,
        "the original tables, WALs, manifest and CURRENT were moved to {} (nothing was deleted)",
        aside.display()
    )
    .map_err(write_err)?;
    Ok(report)
}

/// The aside directory (`DIR/repair-<timestamp>/`) and the directory the
/// new database is built in (`DIR/repair-<timestamp>.new/`); neither may
/// exist yet.
fn repair_dirs(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let aside = dir.join(format!("repair-{stamp}"));
    let new_dir = dir.join(format!("repair-{stamp}.new"));
    if new_dir.exists() || aside.exists() {
        return Err(Error::InvalidArgument(format!(
            "{} or {} already exists; try again in a second",
            new_dir.display(),
            aside.display()
        )));
    }
    Ok((aside, new_dir))
}

/// The files of an LSM database in `dir`: `CURRENT`, manifests, tables and
/// WALs (not `PYDB`, `LOCK` or anything else).
fn lsm_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let ours = name == LSM_CURRENT
            || name.starts_with("MANIFEST-")
            || name.ends_with(".sst")
            || name.ends_with(".wal");
        if ours && entry.file_type().is_ok_and(|t| t.is_file()) {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

/// The number in an LSM file name (`000012.sst`, `MANIFEST-000003`).
fn lsm_file_number(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    let digits = match name.strip_prefix("MANIFEST-") {
        Some(n) => n,
        None => name.split_once('.')?.0,
    };
    digits.parse().ok()
}

/// Moves a damaged `PYDB` file aside and writes one for the log engine.
/// The index byte is kept when it names a known index (it is a hint to
/// the engine, not data); otherwise the default index is written.
fn rebuild_metadata(dir: &Path, aside: &Path, report: &mut RepairReport) -> Result<()> {
    let path = meta::path_in(dir);
    let old = std::fs::read(&path).unwrap_or_default();
    let index = old
        .get(meta::META_INDEX_OFFSET)
        .and_then(|&id| meta::index_from_id(id))
        .flatten()
        .unwrap_or(pydb::Options::default().index);
    std::fs::create_dir_all(aside).map_err(|e| Error::io(aside, e))?;
    if path.exists() {
        report.bytes_moved_aside += keep_aside(aside, &path)?;
    }
    meta::write(dir, &meta::Metadata::new(EngineKind::Log, Some(index)))?;
    report.metadata_rebuilt = true;
    report.aside_dir = Some(aside.to_path_buf());
    Ok(())
}

/// Replaces every hint that fails the checks opening applies
/// ([`pydb_storage::log::verify`]): the old one is moved aside, and a sealed
/// segment's hint is rebuilt from the segment by the engine's own code
/// ([`pydb_storage::log::repair::rebuild_hint`]). The last segment's hint
/// is only moved aside: opening scans that segment, and a clean close
/// writes its hint.
fn rebuild_hints<O: FileOpener>(
    dir: &Path,
    aside: &Path,
    report: &mut RepairReport,
    out: &mut dyn Write,
    opener: &O,
) -> Result<()> {
    let write_err = |e| Error::io("<stdout>", e);
    let verified = log_verify::verify_dir_with(dir, opener)?;
    let last = verified.segments.last().copied();
    for finding in verified.bad_hints() {
        let Some(id) = finding
            .path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(pydb_file::parse_id)
        else {
            continue;
        };
        std::fs::create_dir_all(aside).map_err(|e| Error::io(aside, e))?;
        report.bytes_moved_aside += move_aside(aside, &finding.path)?;
        report.aside_dir = Some(aside.to_path_buf());
        report.hints_replaced += 1;
        if Some(id) == last {
            writeln!(
                out,
                "  hint {:>9}: damaged ({}); moved aside (the segment is the last: opening \
                 scans it)",
                id, finding.reason
            )
        } else {
            match log_repair::rebuild_hint_with(dir, id, opener) {
                Ok(_) => writeln!(
                    out,
                    "  hint {:>9}: damaged ({}); rebuilt from its segment",
                    id, finding.reason
                ),
                // The segment itself is damaged beyond what the steps above
                // rewrite: opening reports it; the hint stays aside.
                Err(e) if e.is_corruption() => writeln!(
                    out,
                    "  hint {:>9}: damaged ({}); moved aside, not rebuilt: {e}",
                    id, finding.reason
                ),
                Err(e) => return Err(e.into()),
            }
        }
        .map_err(write_err)?;
    }
    pydb_file::sync_dir(dir).map_err(pydb_storage::Error::from)?;
    Ok(())
}

/// Writes `new` under a temp name, keeps the original in `aside` (a hard
/// link, or a copy where links fail), and renames the new file over the
/// original. Returns the size of the original.
fn replace<O: FileOpener>(
    dir: &Path,
    aside: &Path,
    original: &Path,
    new: &[u8],
    opener: &O,
) -> Result<u64> {
    let mut temp = original.as_os_str().to_owned();
    temp.push(".");
    temp.push(TEMP_SUFFIX);
    let temp = PathBuf::from(temp);
    let _ = std::fs::remove_file(&temp);
    let file = opener
        .open(&temp, true)
        .map_err(pydb_storage::Error::from)?;
    file.append(new).map_err(pydb_storage::Error::from)?;
    file.sync_data().map_err(pydb_storage::Error::from)?;
    drop(file);
    let size = keep_aside(aside, original)?;
    std::fs::rename(&temp, original).map_err(|e| Error::io(original, e))?;
    pydb_file::sync_dir(dir).map_err(pydb_storage::Error::from)?;
    Ok(size)
}

/// Puts a durable copy of `path` in `aside`, leaving `path` in place.
fn keep_aside(aside: &Path, path: &Path) -> Result<u64> {
    let name = path
        .file_name()
        .ok_or_else(|| Error::InvalidArgument(format!("{} has no file name", path.display())))?;
    let target = aside.join(name);
    if std::fs::hard_link(path, &target).is_err() {
        std::fs::copy(path, &target).map_err(|e| Error::io(&target, e))?;
        let copy = MonolithicFile::open(&target, false).map_err(pydb_storage::Error::from)?;
        copy.sync_data().map_err(pydb_storage::Error::from)?;
    }
    pydb_file::sync_dir(aside).map_err(pydb_storage::Error::from)?;
    std::fs::metadata(&target)
        .map(|m| m.len())
        .map_err(|e| Error::io(&target, e))
}

/// Moves `path` into `aside`.
fn move_aside(aside: &Path, path: &Path) -> Result<u64> {
    let size = keep_aside(aside, path)?;
    std::fs::remove_file(path).map_err(|e| Error::io(path, e))?;
    Ok(size)
}
