//! Guards `pydb repair`: after damage in the middle of a segment (a flipped
//! byte, a lost begin or seal, a missing segment), check fails, repair keeps
//! exactly the batches whose records verify, check then passes, the log
//! engine opens the directory, and every replaced byte is in the aside
//! directory. Repair refuses a locked (open) database.
//!
//! On a B+tree database (issue 16, W6) repair replays the WAL, keeps every
//! leaf that verifies (and only the damaged leaf's pairs are lost),
//! rebuilds from the leaves when both meta pages are garbage, leaves a
//! clean database alone, lets the higher page LSN win a key claimed twice,
//! and never brings back a deleted key from an old leaf on a freed page.
//!
//! On an LSM database repair loses exactly the keys of a damaged data
//! block, rebuilds a database whose `CURRENT` was lost (which the engine
//! now refuses to open as an empty one), and leaves a clean one alone.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pydb::meta::{self, Metadata};
use pydb::storage::log::hint::hint_path;
use pydb::storage::{AppendOnlyLogStorage, KeyRange, LogOptions, StorageEngine, WriteBatch};
use pydb::{EngineKind, IndexKind, SyncPolicy};
use pydb_cli::repair::{RepairReport, repair_dir};

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

fn options(max_segment_size: u64) -> LogOptions {
    LogOptions {
        sync_policy: SyncPolicy::Always,
        max_segment_size,
        background_compaction: false,
        compaction_interval: Duration::from_secs(60),
        // `build` reads where each write landed from the segment's size on
        // disk, which preallocated zeros would hide.
        preallocate: 0,
        ..LogOptions::default()
    }
}

/// Where one write landed: its segment and byte range.
#[derive(Debug, Clone)]
struct Landed {
    segment: u64,
    start: u64,
    end: u64,
    /// The key/value pairs it set (`None`: deleted).
    ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

/// A database of `writes` sets and batches, with where each write landed.
fn build(dir: &Path, writes: usize, max_segment_size: u64) -> Vec<Landed> {
    meta::write(dir, &Metadata::new(EngineKind::Log, Some(IndexKind::BTree))).unwrap();
    let engine = AppendOnlyLogStorage::open(dir, options(max_segment_size)).unwrap();
    let len_of = |engine: &AppendOnlyLogStorage| {
        let id = *engine.segment_ids().last().unwrap();
        (
            id,
            std::fs::metadata(engine.segment_path(id)).unwrap().len(),
        )
    };
    let mut landed = Vec::new();
    for i in 0..writes {
        let (before_id, before_len) = len_of(&engine);
        let ops: Vec<(Vec<u8>, Option<Vec<u8>>)> = if i % 4 == 3 {
            vec![
                (format!("key{}", i % 13).into_bytes(), None),
                (format!("batch{i}-a").into_bytes(), Some(value(i, 'a'))),
                (format!("batch{i}-b").into_bytes(), Some(value(i, 'b'))),
            ]
        } else {
            vec![(format!("key{}", i % 13).into_bytes(), Some(value(i, 's')))]
        };
        let mut batch = WriteBatch::new();
        for (k, v) in &ops {
            match v {
                Some(v) => batch.set(k.clone(), v.clone()),
                None => batch.delete(k.clone()),
            };
        }
        engine.write_batch(&batch).unwrap();
        let (id, len) = len_of(&engine);
        // A roll puts the write after the new segment's header and begin.
        let start = if id == before_id { before_len } else { 16 + 26 };
        landed.push(Landed {
            segment: id,
            start,
            end: len,
            ops,
        });
    }
    landed
}

fn value(i: usize, tag: char) -> Vec<u8> {
    format!("value {i} {tag} ").repeat(3).into_bytes()
}

/// The state after the writes not in `lost`.
fn model(landed: &[Landed], lost: &[usize]) -> Model {
    let mut model = Model::new();
    for (i, write) in landed.iter().enumerate() {
        if lost.contains(&i) {
            continue;
        }
        for (k, v) in &write.ops {
            match v {
                Some(v) => model.insert(k.clone(), v.clone()),
                None => model.remove(k),
            };
        }
    }
    model
}

fn contents(dir: &Path) -> Model {
    let engine = AppendOnlyLogStorage::open(dir, options(1 << 20)).unwrap();
    engine
        .scan(KeyRange::all())
        .unwrap()
        .map(|item| {
            let (k, v) = item.unwrap();
            (k.to_vec(), v.to_vec())
        })
        .collect()
}

fn segment(dir: &Path, id: u64) -> PathBuf {
    pydb::file::segment_path(dir, id, "log")
}

fn flip(path: &Path, offset: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset as usize] ^= 0x04;
    std::fs::write(path, bytes).unwrap();
}

fn check_ok(dir: &Path) -> bool {
    pydb_cli::check::check_dir(dir, &mut std::io::sink())
        .unwrap()
        .is_ok()
}

fn repair(dir: &Path) -> (RepairReport, String) {
    let mut out = Vec::new();
    let report = repair_dir(dir, &mut out).unwrap();
    (report, String::from_utf8(out).unwrap())
}

#[test]
fn flipped_bytes_in_the_middle_of_a_segment_lose_exactly_their_batches() {
    let dir = tempfile::tempdir().unwrap();
    let landed = build(dir.path(), 40, 1 << 20);
    let path = segment(dir.path(), 1);
    let original = std::fs::read(&path).unwrap();
    // One byte inside a single set, one inside a batch of three.
    let damaged = [10usize, 19];
    let flipped: Vec<u64> = damaged
        .iter()
        .map(|&i| (landed[i].start + landed[i].end) / 2)
        .collect();
    for &offset in &flipped {
        flip(&path, offset);
    }
    let damaged_bytes = std::fs::read(&path).unwrap();
    // The engine may open (it loads the active segment's prefix from its
    // hint) and fail only on reading a damaged record; check reads all.
    assert!(!check_ok(dir.path()), "check must find the damage");

    let (report, out) = repair(dir.path());
    assert_eq!(report.segments_checked, 1, "{out}");
    assert_eq!(report.segments_rewritten, 1, "{out}");
    assert_eq!(report.dropped.len(), 2, "{out}");
    for (d, &i) in report.dropped.iter().zip(&damaged) {
        assert_eq!(
            (d.offset, d.offset + d.len),
            (landed[i].start, landed[i].end)
        );
        assert!(out.contains(&format!("at offset {}", d.offset)), "{out}");
    }
    assert!(check_ok(dir.path()), "check passes after repair:\n{out}");
    assert_eq!(contents(dir.path()), model(&landed, &damaged));

    // The damaged original, dropped bytes included, waits in the aside dir.
    let aside = report.aside_dir.clone().unwrap();
    assert!(aside.starts_with(dir.path()));
    assert!(out.contains(&aside.display().to_string()), "{out}");
    let kept = std::fs::read(aside.join(path.file_name().unwrap())).unwrap();
    assert_eq!(kept, damaged_bytes);
    assert_ne!(kept, original);
    assert!(report.bytes_moved_aside >= kept.len() as u64);

    // A repaired database repairs to itself.
    let (again, out) = repair(dir.path());
    assert!(again.was_clean(), "{out}");
    assert!(out.contains("nothing to repair"), "{out}");
}

#[test]
fn a_lost_seal_or_begin_in_a_middle_segment_is_rewritten_and_nothing_else_lost() {
    for which in ["seal", "begin"] {
        let dir = tempfile::tempdir().unwrap();
        let landed = build(dir.path(), 60, 400);
        let ids = pydb::file::list_ids(dir.path(), "log").unwrap();
        assert!(ids.len() >= 4, "{ids:?}");
        let middle = segment(dir.path(), ids[1]);
        let len = std::fs::metadata(&middle).unwrap().len();
        // The seal is the last record (9 + 17 bytes); the begin the first.
        let offset = if which == "seal" { len - 3 } else { 16 + 20 };
        flip(&middle, offset);
        // The engine may still open (it loads sealed segments from their
        // hints), but check reads every record.
        assert!(!check_ok(dir.path()), "{which}");
        let (report, out) = repair(dir.path());
        assert_eq!(report.segments_rewritten, 1, "{which}: {out}");
        assert!(
            !hint_path(dir.path(), ids[1]).exists(),
            "the stale hint is moved aside"
        );
        assert!(check_ok(dir.path()), "{which}: {out}");
        assert_eq!(contents(dir.path()), model(&landed, &[]), "{which}");
    }
}

#[test]
fn a_missing_middle_segment_is_given_up_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let landed = build(dir.path(), 60, 400);
    let ids = pydb::file::list_ids(dir.path(), "log").unwrap();
    let gone = ids[2];
    std::fs::remove_file(segment(dir.path(), gone)).unwrap();
    std::fs::remove_file(hint_path(dir.path(), gone)).unwrap();
    assert!(AppendOnlyLogStorage::open(dir.path(), options(400)).is_err());
    let (report, out) = repair(dir.path());
    assert_eq!(report.lost_seqs.len(), 1, "{out}");
    assert!(out.contains("a segment is missing"), "{out}");
    let lost: Vec<usize> = (0..landed.len())
        .filter(|&i| landed[i].segment == gone)
        .collect();
    assert!(!lost.is_empty());
    assert_eq!(contents(dir.path()), model(&landed, &lost));
}

#[test]
fn a_torn_tail_is_dropped_and_a_clean_database_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let landed = build(dir.path(), 10, 1 << 20);
    let (report, out) = repair(dir.path());
    assert!(report.was_clean(), "{out}");
    assert!(report.aside_dir.is_none());
    let path = segment(dir.path(), 1);
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 5)
        .unwrap();
    let (report, out) = repair(dir.path());
    assert_eq!(report.dropped.len(), 1, "{out}");
    assert_eq!(report.dropped[0].offset, landed[9].start);
    assert_eq!(contents(dir.path()), model(&landed, &[9]));
}

#[test]
fn repair_refuses_an_open_database() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 3, 1 << 20);
    let engine = AppendOnlyLogStorage::open(dir.path(), options(1 << 20)).unwrap();
    let err = repair_dir(dir.path(), &mut std::io::sink()).unwrap_err();
    assert!(err.to_string().contains("locked"), "{err}");
    drop(engine);
    repair_dir(dir.path(), &mut std::io::sink()).unwrap();
}

#[test]
fn repair_refuses_a_directory_that_is_not_a_database() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"hello").unwrap();
    let err = repair_dir(dir.path(), &mut std::io::sink()).unwrap_err();
    assert!(matches!(err, pydb::Error::NotADatabase { .. }), "{err}");
}

#[test]
fn check_points_at_repair_and_the_cli_repairs() {
    let dir = tempfile::tempdir().unwrap();
    let landed = build(dir.path(), 12, 1 << 20);
    flip(
        &segment(dir.path(), 1),
        (landed[5].start + landed[5].end) / 2,
    );
    let check = assert_cmd::Command::new(common::pydb_bin())
        .arg("check")
        .arg(dir.path())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(1), "{out}");
    assert!(out.contains("pydb repair"), "{out}");
    let repaired = assert_cmd::Command::new(common::pydb_bin())
        .arg("repair")
        .arg(dir.path())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&repaired.stdout);
    assert_eq!(repaired.status.code(), Some(0), "{out}");
    assert!(out.contains("1 rewritten"), "{out}");
    assert!(out.contains("moved to"), "{out}");
    assert_eq!(contents(dir.path()), model(&landed, &[5]));
}

#[test]
fn a_hint_with_trailing_zeros_is_rebuilt_by_repair_and_check_agrees() {
    // Issue 16, B3: check failed, repair said "nothing to repair".
    let dir = tempfile::tempdir().unwrap();
    let landed = build(dir.path(), 60, 400);
    let ids = pydb::file::list_ids(dir.path(), "log").unwrap();
    assert!(ids.len() >= 3);
    let hint = hint_path(dir.path(), ids[1]);
    let healthy = std::fs::read(&hint).unwrap();
    let mut bytes = healthy.clone();
    bytes.extend(std::iter::repeat_n(0u8, 5000));
    std::fs::write(&hint, &bytes).unwrap();
    assert!(!check_ok(dir.path()));

    let (report, out) = repair(dir.path());
    assert!(!report.was_clean(), "{out}");
    assert_eq!(report.hints_replaced, 1, "{out}");
    assert!(out.contains("rebuilt from its segment"), "{out}");
    assert_eq!(std::fs::read(&hint).unwrap(), healthy, "{out}");
    let aside = report.aside_dir.unwrap();
    assert_eq!(
        std::fs::read(aside.join(hint.file_name().unwrap())).unwrap(),
        bytes
    );
    assert!(check_ok(dir.path()));
    let (again, out) = repair(dir.path());
    assert!(again.was_clean(), "{out}");
    assert_eq!(contents(dir.path()), model(&landed, &[]));
}

#[test]
fn garbage_metadata_of_a_log_database_is_rebuilt_from_its_segments() {
    // Issue 16, W6: check advised repair, repair could not act.
    let dir = tempfile::tempdir().unwrap();
    let landed = build(dir.path(), 30, 400);
    let path = meta::path_in(dir.path());
    let garbage = b"this is not a PYDB file at all".to_vec();
    std::fs::write(&path, &garbage).unwrap();
    assert!(!check_ok(dir.path()));

    let (report, out) = repair(dir.path());
    assert!(report.metadata_rebuilt, "{out}");
    let aside = report.aside_dir.unwrap();
    assert_eq!(std::fs::read(aside.join("PYDB")).unwrap(), garbage);
    let metadata = meta::read(dir.path()).unwrap().unwrap();
    assert_eq!(metadata.engine, EngineKind::Log);
    assert!(check_ok(dir.path()));
    assert_eq!(contents(dir.path()), model(&landed, &[]));
}

// ---- B+tree databases (issue 16, W6) ----

use pydb::storage::btree::page::{self as btree_page, Content, Node, PageType};

/// The page size of the B+tree databases below (the default).
const PAGE: usize = 4096;

fn btree_key(i: usize) -> String {
    format!("key{i:05}")
}

fn btree_value(i: usize) -> String {
    format!("value {i} {}", "x".repeat(60))
}

/// A closed B+tree database holding `keys`, plus one value large enough
/// for an overflow chain under `big`.
fn make_btree(dir: &Path, keys: impl IntoIterator<Item = usize>, deleted: &[usize]) {
    // `Db` writes the PYDB file; the pairs go to the engine itself, so that
    // the leaves hold the keys as written (a `Db` would store versions).
    pydb::Db::open(dir, pydb::Options::with_engine(EngineKind::BTree))
        .unwrap()
        .close()
        .unwrap();
    let db = btree_engine(dir);
    for i in keys {
        db.set(btree_key(i).as_bytes(), btree_value(i).as_bytes())
            .unwrap();
    }
    db.set(b"big", &vec![b'b'; 3 * PAGE]).unwrap();
    for &i in deleted {
        db.delete(btree_key(i).as_bytes()).unwrap();
    }
    db.flush().unwrap();
}

/// The B+tree engine of `dir`, opened through the registry.
fn btree_engine(dir: &Path) -> std::sync::Arc<dyn StorageEngine> {
    let config = pydb::storage::EngineConfig::new(EngineKind::BTree);
    pydb::storage::open_engine(dir, &config).unwrap()
}

/// Every pair of a B+tree directory, as the engine holds it (the
/// transaction layer's own keys, under 0x00 and 0x01, left out).
fn btree_contents(dir: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let db = btree_engine(dir);
    db.scan(KeyRange::all())
        .unwrap()
        .map(|r| {
            let (k, v) = r.unwrap();
            (k.to_vec(), v.to_vec())
        })
        .filter(|(k, _)| k.first().is_some_and(|b| *b > 1))
        .collect()
}

/// The pages of type `kind` that verify, with their keys (leaves) in order.
fn pages_of(dir: &Path, kind: PageType) -> Vec<(u32, Vec<Vec<u8>>)> {
    let bytes = std::fs::read(dir.join("pages")).unwrap();
    let mut found = Vec::new();
    for (id, page) in bytes.chunks(PAGE).enumerate().skip(2) {
        let id = id as u32;
        if btree_page::verify(page, id).ok() != Some(kind) {
            continue;
        }
        let keys = match btree_page::decode(page).unwrap() {
            Content::Node(Node::Leaf(leaf)) => {
                leaf.entries.iter().map(|e| e.key.to_vec()).collect()
            }
            _ => Vec::new(),
        };
        found.push((id, keys));
    }
    found
}

fn aside_dirs(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("repair-")
        })
        .collect()
}

#[test]
fn a_flipped_byte_in_a_btree_leaf_loses_that_leaf_only() {
    let dir = tempfile::tempdir().unwrap();
    make_btree(dir.path(), 0..400, &[]);
    let before = btree_contents(dir.path());
    let leaves = pages_of(dir.path(), PageType::Leaf);
    assert!(leaves.len() > 3, "{leaves:?}");
    let (victim, lost) = leaves[leaves.len() / 2].clone();
    assert!(!lost.is_empty());
    flip(
        &dir.path().join("pages"),
        victim as u64 * PAGE as u64 + 1000,
    );
    assert!(!check_ok(dir.path()));

    let (report, out) = repair(dir.path());
    assert_eq!(report.pages_damaged, 1, "{out}");
    assert!(
        out.contains(&format!(
            "page {victim} at offset {}",
            victim as usize * PAGE
        )),
        "{out}"
    );
    assert!(check_ok(dir.path()), "{out}");
    let mut want = before.clone();
    for key in &lost {
        want.remove(key);
    }
    assert_eq!(btree_contents(dir.path()), want, "{out}");
    // The original page file and WAL are kept aside, byte for byte.
    let aside = report.aside_dir.unwrap();
    assert!(aside.join("pages").exists() && aside.join("wal").is_dir());
    assert_eq!(aside_dirs(dir.path()), vec![aside]);
}

#[test]
fn garbage_in_both_btree_meta_pages_is_rebuilt_from_the_leaves() {
    let dir = tempfile::tempdir().unwrap();
    make_btree(dir.path(), 0..400, &[]);
    let before = btree_contents(dir.path());
    let pages = dir.path().join("pages");
    let mut bytes = std::fs::read(&pages).unwrap();
    bytes[..2 * PAGE].fill(0xA5);
    std::fs::write(&pages, bytes).unwrap();
    assert!(!check_ok(dir.path()));

    let (report, out) = repair(dir.path());
    assert!(out.contains("every page scanned"), "{out}");
    assert!(out.contains("does not open"), "{out}");
    assert_eq!(report.records_kept, before.len() as u64, "{out}");
    assert!(check_ok(dir.path()), "{out}");
    assert_eq!(btree_contents(dir.path()), before);
}

#[test]
fn a_clean_btree_database_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    make_btree(dir.path(), 0..300, &[]);
    let pages = std::fs::read(dir.path().join("pages")).unwrap();
    let (report, out) = repair(dir.path());
    assert!(report.was_clean(), "{out}");
    assert!(out.contains("nothing to repair"), "{out}");
    assert!(aside_dirs(dir.path()).is_empty());
    assert_eq!(std::fs::read(dir.path().join("pages")).unwrap(), pages);
}

#[test]
fn deleted_btree_keys_are_not_resurrected_from_freed_pages() {
    // Damage that forces a scan: both meta pages, or the root.
    for damage in ["meta", "root"] {
        let dir = tempfile::tempdir().unwrap();
        let deleted: Vec<usize> = (200..1800).collect();
        make_btree(dir.path(), 0..2000, &deleted);
        let before = btree_contents(dir.path());
        assert_eq!(before.len(), 401);
        assert!(
            !pages_of(dir.path(), PageType::Free).is_empty(),
            "deleting frees pages"
        );
        let internal = pages_of(dir.path(), PageType::Internal);
        let pages = dir.path().join("pages");
        let mut bytes = std::fs::read(&pages).unwrap();
        match damage {
            "meta" => bytes[..2 * PAGE].fill(0),
            _ => {
                // The root: the internal page no other internal page
                // points to; with 401 keys the tree has two levels, so
                // there is one.
                assert_eq!(internal.len(), 1, "{internal:?}");
                bytes[internal[0].0 as usize * PAGE + 100] ^= 0xff;
            }
        }
        std::fs::write(&pages, bytes).unwrap();
        let (_, out) = repair(dir.path());
        assert!(check_ok(dir.path()), "{damage}: {out}");
        assert_eq!(btree_contents(dir.path()), before, "{damage}: {out}");
    }
}

#[test]
fn check_advises_repair_for_a_damaged_btree_and_the_cli_repairs_it() {
    let dir = tempfile::tempdir().unwrap();
    make_btree(dir.path(), 0..400, &[]);
    let (victim, _) = pages_of(dir.path(), PageType::Leaf)[1].clone();
    flip(
        &dir.path().join("pages"),
        victim as u64 * PAGE as u64 + 1000,
    );
    let check = assert_cmd::Command::new(common::pydb_bin())
        .arg("check")
        .arg(dir.path())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(1), "{out}");
    assert!(
        out.contains("run `pydb repair DIR` to rebuild the tree"),
        "{out}"
    );
    let repaired = assert_cmd::Command::new(common::pydb_bin())
        .arg("repair")
        .arg(dir.path())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&repaired.stdout);
    assert_eq!(repaired.status.code(), Some(0), "{out}");
    assert!(out.contains("moved to"), "{out}");
    assert!(check_ok(dir.path()), "{out}");
}

#[test]
fn a_valid_old_leaf_on_a_freed_page_is_not_read_back() {
    for damage in ["leaf", "root"] {
        let dir = tempfile::tempdir().unwrap();
        make_btree(dir.path(), 0..2000, &[]);
        let pages = dir.path().join("pages");
        let snapshot = std::fs::read(&pages).unwrap();
        let old_leaves = pages_of(dir.path(), PageType::Leaf);
        {
            let db = btree_engine(dir.path());
            for i in 200..1800 {
                db.delete(btree_key(i).as_bytes()).unwrap();
            }
            db.flush().unwrap();
        }
        let before = btree_contents(dir.path());
        // Put an old leaf image back on a page that is now free: its
        // checksum and page number verify, its keys were deleted since.
        let free: Vec<u32> = pages_of(dir.path(), PageType::Free)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        let (stale, keys) = old_leaves
            .iter()
            .find(|(id, keys)| free.contains(id) && keys.iter().any(|k| !before.contains_key(k)))
            .expect("a freed page that held a leaf of deleted keys")
            .clone();
        let mut bytes = std::fs::read(&pages).unwrap();
        let at = stale as usize * PAGE;
        bytes[at..at + PAGE].copy_from_slice(&snapshot[at..at + PAGE]);
        let target = match damage {
            // A live leaf: the walk from the root still verifies.
            "leaf" => pages_of(dir.path(), PageType::Leaf)[0].0,
            // The root: the pages under it are found by a scan, which
            // skips the free list.
            _ => {
                let internal = pages_of(dir.path(), PageType::Internal);
                assert_eq!(internal.len(), 1, "{internal:?}");
                internal[0].0
            }
        };
        bytes[target as usize * PAGE + 100] ^= 0xff;
        std::fs::write(&pages, bytes).unwrap();
        let (_, out) = repair(dir.path());
        assert!(check_ok(dir.path()), "{damage}: {out}");
        let after = btree_contents(dir.path());
        for key in &keys {
            assert!(
                before.contains_key(key) || !after.contains_key(key),
                "{damage}: deleted key {:?} came back: {out}",
                String::from_utf8_lossy(key)
            );
        }
        if damage == "root" {
            assert_eq!(after, before, "{out}");
        }
    }
}

#[test]
fn the_leaf_with_the_higher_page_lsn_wins_a_key_claimed_twice() {
    let dir = tempfile::tempdir().unwrap();
    make_btree(dir.path(), 0..2000, &[]);
    let pages = dir.path().join("pages");
    let snapshot = std::fs::read(&pages).unwrap();
    let (old_leaf, old_keys) = pages_of(dir.path(), PageType::Leaf)[0].clone();
    {
        let db = btree_engine(dir.path());
        for i in 1000..2000 {
            db.delete(btree_key(i).as_bytes()).unwrap();
        }
        for i in 0..1000 {
            db.set(btree_key(i).as_bytes(), format!("new {i}").as_bytes())
                .unwrap();
        }
        db.flush().unwrap();
    }
    let before = btree_contents(dir.path());
    // The old image of the first leaf (old values, lower LSN), moved onto
    // a free page and sealed there so that it verifies.
    let free = pages_of(dir.path(), PageType::Free)[0].0;
    let mut image = snapshot[old_leaf as usize * PAGE..(old_leaf as usize + 1) * PAGE].to_vec();
    image[16..20].copy_from_slice(&free.to_le_bytes());
    btree_page::seal(&mut image);
    assert!(btree_page::verify(&image, free).is_ok());
    let mut bytes = std::fs::read(&pages).unwrap();
    bytes[free as usize * PAGE..(free as usize + 1) * PAGE].copy_from_slice(&image);
    // Both meta pages gone: the free list is unknown, every page scanned.
    bytes[..2 * PAGE].fill(0);
    std::fs::write(&pages, bytes).unwrap();
    let (_, out) = repair(dir.path());
    assert!(out.contains("every page scanned"), "{out}");
    assert!(check_ok(dir.path()), "{out}");
    let after = btree_contents(dir.path());
    for key in &old_keys {
        assert_eq!(after.get(key), before.get(key), "{out}");
    }
    assert_eq!(after, before, "{out}");
}

/// Sets `keys` through `pydb shell` and kills it: the writes are
/// acknowledged and in the WAL, and no checkpoint put them in the pages.
fn crash_after_writes(dir: &Path, keys: &[String]) {
    use std::io::{BufRead, BufReader, Write};
    let mut child = std::process::Command::new(common::pydb_bin())
        .args(["shell", "--engine", "btree", "--dir"])
        .arg(dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut replies = BufReader::new(child.stdout.take().unwrap());
    for key in keys {
        writeln!(stdin, "SET {key} walvalue").unwrap();
        stdin.flush().unwrap();
        let mut reply = String::new();
        replies.read_line(&mut reply).unwrap();
        assert_eq!(reply.trim_end(), "OK");
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn btree_repair_replays_the_wal_before_salvaging() {
    let dir = tempfile::tempdir().unwrap();
    make_btree(dir.path(), 0..400, &[]);
    let leaves = pages_of(dir.path(), PageType::Leaf);
    // A leaf in the middle is damaged; the writes only in the WAL go to
    // keys before every other ("aaa..."), in the first leaf.
    let (victim, lost) = leaves
        .iter()
        .find(|(_, keys)| keys.first().is_some_and(|k| k.starts_with(b"key002")))
        .unwrap()
        .clone();
    let wal_keys: Vec<String> = (0..5).map(|i| format!("aaa{i}")).collect();
    crash_after_writes(dir.path(), &wal_keys);
    flip(
        &dir.path().join("pages"),
        victim as u64 * PAGE as u64 + 1000,
    );

    let (report, out) = repair(dir.path());
    assert!(
        out.contains("the engine opens (the WAL is replayed)"),
        "{out}"
    );
    assert_eq!(report.pages_damaged, 1, "{out}");
    assert!(check_ok(dir.path()), "{out}");
    let after = btree_contents(dir.path());
    for key in &lost {
        assert!(!after.contains_key(key));
    }
    assert_eq!(after.len(), 401 - lost.len(), "{out}");
    // The shell wrote through `Db`: its keys are versions, read back
    // through `Db` (which does not see the raw pairs above).
    let db = pydb::Db::open(dir.path(), pydb::Options::with_engine(EngineKind::BTree)).unwrap();
    for key in &wal_keys {
        assert_eq!(
            db.get(key).unwrap().as_deref(),
            Some(&b"walvalue"[..]),
            "{out}"
        );
    }
    db.close().unwrap();
}

/// An LSM database of `n` keys over several tables (the last writes stay
/// in the WAL); returns the model.
fn make_lsm(dir: &Path, n: usize) -> Model {
    let db = pydb::Db::open(dir, pydb::Options::with_engine(EngineKind::Lsm)).unwrap();
    let mut model = Model::new();
    for i in 0..n {
        let (k, v) = (
            format!("key{i:05}"),
            format!("value{i}-{}", "v".repeat(i % 50)),
        );
        db.set(k.as_bytes(), v.as_bytes()).unwrap();
        model.insert(k.into_bytes(), v.into_bytes());
    }
    db.compact().unwrap();
    for i in (0..n).step_by(3) {
        db.delete(format!("key{i:05}").as_bytes()).unwrap();
        model.remove(format!("key{i:05}").as_bytes());
    }
    db.close().unwrap();
    model
}

fn lsm_contents(dir: &Path) -> Model {
    let db = pydb::Db::open(dir, pydb::Options::with_engine(EngineKind::Lsm)).unwrap();
    let out = db
        .scan_range(KeyRange::all())
        .unwrap()
        .map(|r| {
            let (k, v) = r.unwrap();
            (k.to_vec(), v.to_vec())
        })
        .collect();
    db.close().unwrap();
    out
}

fn lsm_tables(dir: &Path) -> Vec<PathBuf> {
    let mut tables: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sst"))
        .collect();
    tables.sort();
    tables
}

#[test]
fn a_flipped_byte_in_an_lsm_table_loses_that_block_only() {
    let dir = tempfile::tempdir().unwrap();
    let model = make_lsm(dir.path(), 3000);
    let table = lsm_tables(dir.path()).into_iter().next().unwrap();
    flip(&table, 6000);
    assert!(!check_ok(dir.path()));

    let (report, out) = repair(dir.path());
    assert!(out.contains("at offset"), "{out}");
    assert!(out.contains("lost: one data block"), "{out}");
    assert!(check_ok(dir.path()), "{out}");
    let after = lsm_contents(dir.path());
    // Every key kept has its value, and the ones lost are one run of
    // neighbours (one block's worth), not scattered.
    assert!(after.iter().all(|(k, v)| model.get(k) == Some(v)));
    let missing: Vec<&Vec<u8>> = model.keys().filter(|k| !after.contains_key(*k)).collect();
    assert!(
        !missing.is_empty() && missing.len() < 200,
        "{}",
        missing.len()
    );
    let first = model.keys().position(|k| k == missing[0]).unwrap();
    let run: Vec<&Vec<u8>> = model.keys().skip(first).take(missing.len()).collect();
    assert_eq!(missing, run, "the lost keys are one block's neighbours");
    // The engine's pairs: the facade keeps versions of each key in it.
    assert!(report.records_kept as usize >= after.len());
    // The originals are kept aside, the damaged table among them.
    let aside = report.aside_dir.unwrap();
    assert!(aside.join(table.file_name().unwrap()).exists());
    assert!(aside.join("CURRENT").exists());
}

#[test]
fn an_lsm_database_that_lost_current_is_refused_and_then_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let model = make_lsm(dir.path(), 1500);
    std::fs::remove_file(dir.path().join("CURRENT")).unwrap();
    let Err(err) = pydb::Db::open(dir.path(), pydb::Options::with_engine(EngineKind::Lsm)) else {
        panic!("refused, not opened empty")
    };
    assert!(err.is_corruption(), "{err}");
    assert!(!lsm_tables(dir.path()).is_empty(), "no table was deleted");

    let (report, out) = repair(dir.path());
    assert!(out.contains("no CURRENT file"), "{out}");
    assert!(!report.was_clean());
    assert!(check_ok(dir.path()), "{out}");
    assert_eq!(lsm_contents(dir.path()), model);
}

#[test]
fn a_clean_lsm_database_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let model = make_lsm(dir.path(), 500);
    let (report, out) = repair(dir.path());
    assert!(report.was_clean(), "{out}");
    assert!(out.contains("nothing to repair"), "{out}");
    assert!(aside_dirs(dir.path()).is_empty());
    assert_eq!(lsm_contents(dir.path()), model);
}
