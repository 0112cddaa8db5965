//! Guards the B+tree's crash safety: WAL cut at every byte, power cuts at
//! every write of splits, merges and checkpoints, torn pages, flipped bytes.

#![allow(clippy::unwrap_used)]

mod btree_sim;
mod common;

use common::{Model, contents};

use std::path::Path;

use btree_sim::{Crash, SimFs, SimOpener};
use bytes::Bytes;
use pydb_storage::btree::{PageType, describe_page, read_raw_page};
use pydb_storage::{BTreeOptions, BTreeStorage, KeyRange, StorageEngine, WriteBatch};
use pydb_wal::SyncPolicy;

fn options() -> BTreeOptions {
    BTreeOptions {
        page_size: 512,
        pool_bytes: 16 * 512,
        sync: SyncPolicy::Always,
        checkpoint_bytes: 1 << 30,
        ..BTreeOptions::default()
    }
}

fn open(
    dir: &Path,
    fs: &std::sync::Arc<SimFs>,
    options: BTreeOptions,
) -> pydb_storage::Result<BTreeStorage<SimOpener>> {
    BTreeStorage::open_with(dir, options, fs.opener())
}

fn key(i: usize) -> Vec<u8> {
    format!("key-{i:05}").into_bytes()
}

fn value(i: usize, round: usize) -> Vec<u8> {
    let len = match i % 7 {
        0 => 700, // overflow at 512-byte pages
        1 => 0,
        _ => 20 + i % 40,
    };
    let mut v = format!("v{round}-{i}-").into_bytes();
    v.resize(len.max(v.len()), b'a' + (i % 26) as u8);
    v
}

fn apply(model: &mut Model, batch: &WriteBatch) {
    for op in batch.ops() {
        match op {
            pydb_storage::BatchOp::Set { key, value } => {
                model.insert(key.to_vec(), value.to_vec());
            }
            pydb_storage::BatchOp::Delete { key } => {
                model.remove(key.as_ref());
            }
        }
    }
}

fn assert_matches(engine: &BTreeStorage<SimOpener>, model: &Model, what: &str) {
    engine
        .check_invariants()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let got = contents(engine);
    assert_eq!(got.len(), model.len(), "{what}: key count");
    assert!(got == *model, "{what}: contents differ from the model");
    for (k, v) in model {
        assert_eq!(
            engine.get(k).unwrap().as_deref(),
            Some(v.as_slice()),
            "{what}"
        );
    }
}

/// A batch of sets and deletes that makes the tree split (and later merge).
fn batch(round: usize) -> WriteBatch {
    let mut b = WriteBatch::new();
    for j in 0..6 {
        let i = (round * 7 + j * 13) % 60;
        if (round + j) % 4 == 3 {
            b.delete(key(i));
        } else {
            b.set(key(i), value(i, round));
        }
    }
    b
}

#[test]
fn wal_cut_at_every_byte_recovers_exactly_the_complete_batches() {
    let dir = tempfile::tempdir().unwrap();
    let fs = SimFs::new();
    // A pool large enough that no page is written back: cutting the WAL
    // behind a written page is the one state the write-ahead rule excludes.
    let opts = BTreeOptions {
        pool_bytes: 128 * 512,
        ..options()
    };
    let engine = open(dir.path(), &fs, opts.clone()).unwrap();
    let wal_path = dir.path().join("wal").join("0000000001.log");
    let mut states = vec![(fs.bytes(&wal_path).len(), Model::new())];
    let mut model = Model::new();
    for round in 0..10 {
        let b = batch(round);
        engine.write_batch(&b).unwrap();
        apply(&mut model, &b);
        states.push((fs.bytes(&wal_path).len(), model.clone()));
    }
    assert!(
        engine.stats().get("tree_height").unwrap() >= 2,
        "the batches split the root"
    );
    assert_eq!(engine.stats().get("pool_writebacks"), Some(0));
    let crashed = fs.snapshot(Crash::Process);
    drop(engine);
    let wal = crashed.bytes(&wal_path);
    assert_eq!(wal.len(), states.last().unwrap().0);
    eprintln!("cutting a WAL of {} bytes at every byte", wal.len());
    for cut in 0..=wal.len() {
        let fs = crashed.snapshot(Crash::Process);
        fs.set_bytes(&wal_path, wal[..cut].to_vec());
        // A cut inside the file header leaves an empty log.
        let expected = states
            .iter()
            .rev()
            .find(|(end, _)| *end <= cut)
            .map_or(&states[0].1, |(_, m)| m);
        let engine =
            open(dir.path(), &fs, opts.clone()).unwrap_or_else(|e| panic!("cut {cut}: {e}"));
        // Every cut is compared by a scan; the full check (invariants and a
        // get per key) runs around batch boundaries, where states change.
        if states.iter().any(|(end, _)| end.abs_diff(cut) <= 2) {
            assert_matches(&engine, expected, &format!("WAL cut at byte {cut}"));
        } else {
            assert!(contents(&engine) == *expected, "WAL cut at byte {cut}");
        }
    }
}

/// One step of the crash workload.
enum Step {
    Batch(WriteBatch),
    Checkpoint,
}

fn workload() -> Vec<Step> {
    let mut splits = WriteBatch::new();
    for i in 0..40 {
        splits.set(key(i), value(i, 1));
    }
    let mut merges = WriteBatch::new();
    for i in 5..38 {
        merges.delete(key(i));
    }
    let mut overflow = WriteBatch::new();
    overflow.set(key(3), vec![b'x'; 3000]);
    overflow.set(key(100), value(100, 2));
    vec![
        Step::Batch(splits),
        Step::Checkpoint,
        Step::Batch(merges),
        Step::Batch(overflow),
        Step::Checkpoint,
    ]
}

#[test]
fn power_cut_at_every_write_of_splits_merges_and_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    // The starting point: a few keys, cleanly closed.
    let base = SimFs::new();
    let mut base_model = Model::new();
    {
        let engine = open(dir.path(), &base, options()).unwrap();
        for i in 0..10 {
            engine.set(&key(i), &value(i, 0)).unwrap();
            base_model.insert(key(i), value(i, 0));
        }
    }
    let mut crash_point = 1;
    loop {
        let fs = base.snapshot(Crash::PowerCut);
        let engine = open(dir.path(), &fs, options()).unwrap();
        fs.arm(crash_point);
        let mut acked = base_model.clone();
        let mut in_flight: Option<Model> = None;
        for step in workload() {
            let result = match &step {
                Step::Batch(b) => engine.write_batch(b),
                Step::Checkpoint => engine.checkpoint(),
            };
            let mut next = acked.clone();
            if let Step::Batch(b) = &step {
                apply(&mut next, b);
            }
            match result {
                Ok(()) => acked = next,
                Err(_) => {
                    in_flight = Some(next);
                    break;
                }
            }
        }
        drop(engine); // the checkpoint on close is inside the crash window too
        let reached = fs.crashed();
        for crash in [Crash::PowerCut, Crash::Process, Crash::WalLost] {
            let after = fs.snapshot(crash);
            let engine = open(dir.path(), &after, options()).unwrap_or_else(|e| {
                panic!("crash point {crash_point} ({crash:?}): reopen failed: {e}")
            });
            let what = format!("crash point {crash_point} ({crash:?})");
            engine
                .check_invariants()
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            let got = contents(&engine);
            let ok = got == acked || in_flight.as_ref() == Some(&got);
            assert!(
                ok,
                "{what}: state is neither the acknowledged one nor with the in-flight batch"
            );
            for (k, v) in &got {
                assert_eq!(
                    engine.get(k).unwrap().as_deref(),
                    Some(v.as_slice()),
                    "{what}"
                );
            }
        }
        if !reached {
            assert!(crash_point > 20, "the workload ran to its end too early");
            break;
        }
        crash_point += 1;
    }
}

#[test]
fn crash_during_recovery_is_recovered_by_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let fs = SimFs::new();
    let mut model = Model::new();
    {
        let engine = open(dir.path(), &fs, options()).unwrap();
        for round in 0..8 {
            let b = batch(round);
            engine.write_batch(&b).unwrap();
            apply(&mut model, &b);
        }
        // No clean close: the WAL holds everything since creation.
        let crashed = fs.snapshot(Crash::PowerCut);
        std::mem::drop(engine);
        let mut point = 1;
        loop {
            let attempt = crashed.snapshot(Crash::PowerCut);
            attempt.arm(point);
            let opened = open(dir.path(), &attempt, options());
            drop(opened);
            let reached = attempt.crashed();
            let after = attempt.snapshot(Crash::PowerCut);
            let engine = open(dir.path(), &after, options()).unwrap();
            assert_matches(&engine, &model, &format!("recovery crashed at {point}"));
            drop(engine);
            if !reached {
                break;
            }
            point += 1;
        }
    }
}

/// The page numbers of the leaf holding `k`, found by reading every page.
fn leaf_holding(fs: &SimFs, pages: &Path, k: &[u8]) -> u32 {
    let bytes = fs.bytes(pages);
    bytes
        .chunks(512)
        .enumerate()
        .find(|(_, p)| {
            let info = describe_page(p);
            info.page_type == Some(PageType::Leaf) && info.keys.iter().any(|x| x.as_ref() == k)
        })
        .map(|(i, _)| i as u32)
        .expect("a leaf holds the key")
}

#[test]
fn torn_page_is_repaired_from_its_full_page_image() {
    let dir = tempfile::tempdir().unwrap();
    let pages = dir.path().join("pages");
    let fs = SimFs::new();
    let mut model = Model::new();
    let engine = open(dir.path(), &fs, options()).unwrap();
    for i in 0..40 {
        engine.set(&key(i), &value(i, 0)).unwrap();
        model.insert(key(i), value(i, 0));
    }
    engine.checkpoint().unwrap();
    // First change to this leaf since the checkpoint: logged as a full image.
    engine.set(&key(20), b"after the checkpoint").unwrap();
    model.insert(key(20), b"after the checkpoint".to_vec());
    let crashed = fs.snapshot(Crash::PowerCut);
    drop(engine);

    // The page write-back was torn: half new, half garbage.
    let leaf = leaf_holding(&crashed, &pages, &key(20)) as usize;
    let mut bytes = crashed.bytes(&pages);
    for b in &mut bytes[leaf * 512 + 256..leaf * 512 + 512] {
        *b = 0xA5;
    }
    crashed.set_bytes(&pages, bytes.clone());
    let engine = open(dir.path(), &crashed, options()).unwrap();
    assert!(engine.recovered_batches() >= 1);
    assert_matches(&engine, &model, "after a torn page");
    drop(engine);

    // Without a WAL to repair it, the same damage is an error, not data.
    let clean = crashed.snapshot(Crash::Process);
    let leaf = leaf_holding(&clean, &pages, &key(20)) as usize;
    let mut bytes = clean.bytes(&pages);
    for b in &mut bytes[leaf * 512 + 256..leaf * 512 + 512] {
        *b = 0xA5;
    }
    clean.set_bytes(&pages, bytes);
    let engine = open(dir.path(), &clean, options()).unwrap();
    let err = engine.get(&key(20)).unwrap_err();
    assert!(err.is_corruption(), "{err}");
}

#[test]
fn flipped_bytes_in_the_page_file_give_errors_never_wrong_values() {
    let dir = tempfile::tempdir().unwrap();
    let pages = dir.path().join("pages");
    let fs = SimFs::new();
    let mut model = Model::new();
    {
        let engine = open(dir.path(), &fs, options()).unwrap();
        for i in 0..80 {
            engine.set(&key(i), &value(i, 0)).unwrap();
            model.insert(key(i), value(i, 0));
        }
        engine.checkpoint().unwrap();
        for i in 0..80 {
            engine.set(&key(i), &value(i, 1)).unwrap();
            model.insert(key(i), value(i, 1));
        }
    } // closed with a checkpoint: the WAL cannot repair anything
    let clean = fs.snapshot(Crash::PowerCut);
    let bytes = clean.bytes(&pages);
    let page_count = bytes.len() / 512;
    assert!(page_count > 20);
    let mut checked = 0;
    let mut errors = 0;
    for page in 0..page_count {
        for offset in (0..512).step_by(37).chain([4, 6, 8, 16, 20, 24, 28, 32]) {
            let damaged = clean.snapshot(Crash::PowerCut);
            let mut b = bytes.clone();
            b[page * 512 + offset] ^= 0x04;
            damaged.set_bytes(&pages, b);
            let engine = match open(dir.path(), &damaged, options()) {
                Ok(e) => e,
                Err(e) => {
                    assert!(e.is_corruption(), "page {page} byte {offset}: {e}");
                    errors += 1;
                    continue;
                }
            };
            for (k, v) in &model {
                match engine.get(k) {
                    Ok(got) => assert_eq!(
                        got.as_deref(),
                        Some(v.as_slice()),
                        "page {page} byte {offset}"
                    ),
                    Err(e) => {
                        assert!(e.is_corruption(), "page {page} byte {offset}: {e}");
                        errors += 1;
                    }
                }
            }
            let mut expected = model.iter();
            for item in engine.scan(KeyRange::all()).unwrap() {
                match item {
                    Ok((k, v)) => {
                        let (ek, ev) = expected.next().expect("no extra keys");
                        assert_eq!((k.as_ref(), v.as_ref()), (ek.as_slice(), ev.as_slice()));
                    }
                    Err(e) => {
                        assert!(e.is_corruption(), "{e}");
                        break;
                    }
                }
            }
            checked += 1;
        }
    }
    assert!(
        checked > 100 && errors > 100,
        "checked {checked}, errors {errors}"
    );
}

#[test]
fn reopen_with_real_files_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::new();
    for round in 0..3 {
        let engine = BTreeStorage::open(dir.path(), options()).unwrap();
        for i in 0..200 {
            let k = key(i * 3 + round);
            engine.set(&k, &value(i, round)).unwrap();
            model.insert(k, value(i, round));
        }
        let shape = engine.check_invariants().unwrap();
        assert_eq!(shape.keys as usize, model.len());
        assert_eq!(contents(&engine), model);
    }
    let engine = BTreeStorage::open(dir.path(), options()).unwrap();
    assert_eq!(contents(&engine), model);
    let meta_file = pydb_file::MonolithicFile::open(dir.path().join("pages"), false).unwrap();
    let raw = read_raw_page(&meta_file, 512, 0).unwrap();
    assert_eq!(describe_page(&raw).page_type, Some(PageType::Meta));
    let _ = Bytes::new();
}
