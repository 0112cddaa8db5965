//! Guards the log engine's crash recovery and damage detection: torn tails,
//! truncation at every byte, bit flips, hint files, missing segments,
//! interrupted compactions, and compaction running beside readers/writers.

#![allow(clippy::unwrap_used)]

mod common;

use common::{Model, contents};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use pydb_storage::log::hint::{decode_hint, decode_hint_prefix, encode_hint, hint_path};
use pydb_storage::{AppendOnlyLogStorage, KeyRange, LogOptions, StorageEngine, WriteBatch};

/// One write of a test history.
#[derive(Debug, Clone)]
enum Write {
    Set(&'static str, String),
    Delete(&'static str),
    Batch(Vec<(&'static str, Option<String>)>),
}

fn apply(engine: &dyn StorageEngine, model: &mut Model, write: &Write) {
    match write {
        Write::Set(k, v) => {
            engine.set(k.as_bytes(), v.as_bytes()).unwrap();
            model.insert(k.as_bytes().to_vec(), v.as_bytes().to_vec());
        }
        Write::Delete(k) => {
            engine.delete(k.as_bytes()).unwrap();
            model.remove(k.as_bytes());
        }
        Write::Batch(ops) => {
            let mut batch = WriteBatch::new();
            for (k, v) in ops {
                match v {
                    Some(v) => {
                        batch.set(k.as_bytes().to_vec(), v.clone().into_bytes());
                        model.insert(k.as_bytes().to_vec(), v.as_bytes().to_vec());
                    }
                    None => {
                        batch.delete(k.as_bytes().to_vec());
                        model.remove(k.as_bytes());
                    }
                }
            }
            engine.write_batch(&batch).unwrap();
        }
    }
}

/// A history touching a handful of keys with sets, deletes and batches.
/// Every write changes something, so each one moves the end of the log.
fn history() -> Vec<Write> {
    use Write::*;
    vec![
        Set("apple", "red".into()),
        Set("pear", "green".into()),
        Batch(vec![
            ("plum", Some("purple".into())),
            ("apple", Some("crimson".into())),
        ]),
        Delete("pear"),
        Set("fig", String::new()),
        Batch(vec![
            ("kiwi", Some("brown".into())),
            ("plum", None),
            ("lime", Some("green".into())),
        ]),
        Set("apple", "golden".into()),
        Delete("kiwi"),
        Set("pear", "back".into()),
    ]
}

fn options() -> LogOptions {
    common::test_options()
}

fn one_segment_options() -> LogOptions {
    LogOptions {
        max_segment_size: 1 << 20,
        // These tests take where each write ends from the segment's size
        // on disk and cut or flip every byte of it: no zeros after the
        // data (tests/log_prealloc.rs covers those).
        preallocate: 0,
        ..options()
    }
}

fn open(dir: &Path, options: LogOptions) -> pydb_storage::Result<AppendOnlyLogStorage> {
    AppendOnlyLogStorage::open(dir, options)
}

/// Runs `history` on a fresh database, returning the model after each
/// write and the length of the (single) segment after each write.
fn record_history(dir: &Path, writes: &[Write]) -> (Vec<Model>, Vec<u64>, PathBuf) {
    let engine = open(dir, one_segment_options()).unwrap();
    let segment = engine.segment_path(engine.segment_ids()[0]);
    let mut model = Model::new();
    let mut models = vec![model.clone()];
    let mut ends = vec![std::fs::metadata(&segment).unwrap().len()];
    for write in writes {
        apply(&engine, &mut model, write);
        models.push(model.clone());
        ends.push(std::fs::metadata(&segment).unwrap().len());
    }
    drop(engine);
    assert_eq!(engine_ids(dir), vec![1], "the history fits in one segment");
    (models, ends, segment)
}

fn engine_ids(dir: &Path) -> Vec<u64> {
    pydb_file::list_ids(dir, "log").unwrap()
}

#[test]
fn truncation_at_every_byte_keeps_exactly_the_complete_batches() {
    let source = tempfile::tempdir().unwrap();
    let (models, ends, segment) = record_history(source.path(), &history());
    let bytes = std::fs::read(&segment).unwrap();
    assert_eq!(*ends.last().unwrap(), bytes.len() as u64);
    for cut in 0..=bytes.len() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(segment.file_name().unwrap()), &bytes[..cut]).unwrap();
        let engine = open(dir.path(), one_segment_options())
            .unwrap_or_else(|e| panic!("open after a cut at {cut}: {e}"));
        // The writes whose batch ends at or before the cut survive.
        let survivors = ends.iter().rposition(|&end| end <= cut as u64).unwrap_or(0);
        assert_eq!(contents(&engine), models[survivors], "cut at {cut}");
        if cut as u64 >= ends[0] {
            let torn = cut as u64 - ends[survivors];
            let stats = engine.stats();
            assert_eq!(stats.get("torn_bytes"), Some(torn), "cut at {cut}");
            assert_eq!(stats.get("torn_tails_recovered"), Some(u64::from(torn > 0)));
        }
        // The database goes on after the truncation.
        engine.set(b"after", b"cut").unwrap();
        drop(engine);
        let engine = open(dir.path(), one_segment_options()).unwrap();
        assert_eq!(engine.get(b"after").unwrap().as_deref(), Some(&b"cut"[..]));
    }
}

#[test]
fn a_flipped_bit_anywhere_in_the_active_segment_never_returns_a_wrong_value() {
    let source = tempfile::tempdir().unwrap();
    let (models, ends, segment) = record_history(source.path(), &history());
    let bytes = std::fs::read(&segment).unwrap();
    let everything = models.last().unwrap();
    let keys: Vec<&Vec<u8>> = models.iter().flat_map(|m| m.keys()).collect();
    let mut opened = 0;
    for offset in 0..bytes.len() {
        let mut damaged = bytes.clone();
        damaged[offset] ^= 1 << (offset % 8);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(segment.file_name().unwrap()), &damaged).unwrap();
        let Ok(engine) = open(dir.path(), one_segment_options()) else {
            continue;
        };
        opened += 1;
        // Damage inside the last batch looks like a torn tail and loses that
        // batch only; anywhere else it must have been refused at open.
        let before_damage = &models[ends
            .iter()
            .rposition(|&end| end <= offset as u64)
            .unwrap_or(0)];
        let allowed = [everything, before_damage];
        for key in &keys {
            if let Ok(value) = engine.get(key) {
                let value = value.map(|v| v.to_vec());
                assert!(
                    allowed.iter().any(|m| m.get(*key) == value.as_ref()),
                    "flip at {offset}: {key:?} read {value:?}"
                );
            }
        }
        let scanned: Result<Model, _> = engine
            .scan(KeyRange::all())
            .unwrap()
            .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())))
            .collect();
        if let Ok(scanned) = scanned {
            assert!(
                allowed.contains(&&scanned),
                "flip at {offset}: scan {scanned:?}"
            );
        }
    }
    assert!(
        opened > 0,
        "damage in the last batch is recovered as a torn tail"
    );
}

/// Builds a database spread over many sealed segments (with hints) and
/// returns its model.
fn build_many_segments(dir: &Path) -> Model {
    let engine = open(dir, options()).unwrap();
    let mut model = Model::new();
    for round in 0..6 {
        for i in 0..25 {
            let key = format!("key{i:02}");
            let value = format!("value {round} of {i} {}", "x".repeat(i * 3));
            engine.set(key.as_bytes(), value.as_bytes()).unwrap();
            model.insert(key.into_bytes(), value.into_bytes());
        }
        let gone = format!("key{:02}", round * 4);
        engine.delete(gone.as_bytes()).unwrap();
        model.remove(gone.as_bytes());
    }
    assert!(
        engine.segment_ids().len() >= 5,
        "{:?}",
        engine.segment_ids()
    );
    drop(engine);
    model
}

#[test]
fn a_flipped_bit_in_a_sealed_segment_is_an_error_never_a_wrong_value() {
    let source = tempfile::tempdir().unwrap();
    let model = build_many_segments(source.path());
    let ids = engine_ids(source.path());
    // The newest sealed segment holds live records.
    let sealed = pydb_file::segment_path(source.path(), ids[ids.len() - 2], "log");
    let bytes = std::fs::read(&sealed).unwrap();
    let mut errors = 0;
    for offset in (0..bytes.len()).step_by(5) {
        let dir = tempfile::tempdir().unwrap();
        for entry in std::fs::read_dir(source.path()).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
        }
        let mut damaged = bytes.clone();
        damaged[offset] ^= 1 << (offset % 8);
        std::fs::write(dir.path().join(sealed.file_name().unwrap()), &damaged).unwrap();
        let engine = match open(dir.path(), options()) {
            Ok(engine) => engine,
            Err(err) => {
                assert!(err.is_corruption(), "flip at {offset}: {err}");
                errors += 1;
                continue;
            }
        };
        for (key, want) in &model {
            match engine.get(key) {
                Ok(got) => assert_eq!(got.as_deref(), Some(want.as_slice()), "flip at {offset}"),
                Err(err) => {
                    assert!(err.is_corruption(), "flip at {offset}: {err}");
                    errors += 1;
                }
            }
            // The borrowing read lends nothing from a damaged record.
            let mut lent = None;
            match engine.get_with(key, &mut |v| lent = Some(v.to_vec())) {
                Ok(found) => {
                    assert!(found, "flip at {offset}");
                    assert_eq!(lent.as_ref(), Some(want), "flip at {offset}");
                }
                Err(err) => {
                    assert!(err.is_corruption(), "flip at {offset}: {err}");
                    assert_eq!(lent, None, "flip at {offset}: lent a damaged value");
                }
            }
        }
    }
    assert!(
        errors > 0,
        "some flips hit live records and must be reported"
    );
}

#[test]
fn a_partial_record_at_the_end_is_truncated_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), one_segment_options()).unwrap();
    engine.set(b"kept", b"value").unwrap();
    let segment = engine.segment_path(1);
    drop(engine);
    let len = std::fs::metadata(&segment).unwrap().len();
    // A record header promising 100 bytes of payload, and 10 of them.
    let mut tail = vec![0xAB, 0xCD, 0xEF, 0x01, 100, 0, 0, 0, 0];
    tail.extend_from_slice(&[7; 10]);
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&segment)
        .unwrap();
    std::io::Write::write_all(&mut file, &tail).unwrap();
    drop(file);
    let engine = open(dir.path(), one_segment_options()).unwrap();
    assert_eq!(engine.get(b"kept").unwrap().as_deref(), Some(&b"value"[..]));
    assert_eq!(engine.stats().get("torn_tails_recovered"), Some(1));
    assert_eq!(engine.stats().get("torn_bytes"), Some(tail.len() as u64));
    assert_eq!(std::fs::metadata(&segment).unwrap().len(), len);
}

#[test]
fn missing_damaged_and_disagreeing_hints_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let model = build_many_segments(dir.path());
    let ids = engine_ids(dir.path());
    let hint = |id: u64| hint_path(dir.path(), id);
    let original: Vec<Vec<u8>> = ids[..3]
        .iter()
        .map(|&id| std::fs::read(hint(id)).unwrap())
        .collect();
    std::fs::remove_file(hint(ids[0])).unwrap();
    let mut damaged = original[1].clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x10;
    std::fs::write(hint(ids[1]), damaged).unwrap();
    // A valid hint, but of another segment.
    std::fs::write(hint(ids[2]), &original[1]).unwrap();

    let engine = open(dir.path(), options()).unwrap();
    assert_eq!(contents(&engine), model);
    for (i, &id) in ids[..3].iter().enumerate() {
        assert_eq!(
            std::fs::read(hint(id)).unwrap(),
            original[i],
            "hint of segment {id} rebuilt"
        );
    }
}

#[test]
fn a_hint_that_lies_about_offsets_makes_reads_fail_not_lie() {
    let dir = tempfile::tempdir().unwrap();
    build_many_segments(dir.path());
    let id = engine_ids(dir.path())[1];
    let path = hint_path(dir.path(), id);
    let segment_len = std::fs::metadata(pydb_file::segment_path(dir.path(), id, "log"))
        .unwrap()
        .len();
    let (header, mut entries) =
        decode_hint(&std::fs::read(&path).unwrap(), id, segment_len).unwrap();
    // Swap where two different keys live: checksums are fine, data is not.
    let (a, b) = (
        0,
        entries
            .iter()
            .position(|e| e.key != entries[0].key)
            .unwrap(),
    );
    let (offset_a, len_a) = (entries[a].offset, entries[a].len);
    entries[a].offset = entries[b].offset;
    entries[a].len = entries[b].len;
    entries[b].offset = offset_a;
    entries[b].len = len_a;
    let (key_a, key_b) = (entries[a].key.clone(), entries[b].key.clone());
    std::fs::write(&path, encode_hint(&header, &entries)).unwrap();

    let engine = open(dir.path(), options()).unwrap();
    for key in [key_a, key_b] {
        if let Some(location) = engine.location(&key).filter(|l| l.segment == id) {
            let err = engine.get(&key).unwrap_err();
            assert!(err.is_corruption(), "{err}");
            assert!(
                err.to_string()
                    .contains(&format!("offset {}", location.offset)),
                "{err}"
            );
        }
    }
}

#[test]
fn a_missing_middle_segment_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    build_many_segments(dir.path());
    let ids = engine_ids(dir.path());
    std::fs::remove_file(pydb_file::segment_path(dir.path(), ids[2], "log")).unwrap();
    std::fs::remove_file(hint_path(dir.path(), ids[2])).unwrap();
    let err = open(dir.path(), options()).unwrap_err();
    assert!(err.is_corruption(), "{err}");
    assert!(err.to_string().contains("missing"), "{err}");
}

#[test]
fn a_cut_sealed_segment_is_corruption_not_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    build_many_segments(dir.path());
    let ids = engine_ids(dir.path());
    let sealed = pydb_file::segment_path(dir.path(), ids[1], "log");
    let len = std::fs::metadata(&sealed).unwrap().len();
    for cut in [len - 1, len - 30, 40, 20, 0] {
        let copy = tempfile::tempdir().unwrap();
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, copy.path().join(path.file_name().unwrap())).unwrap();
        }
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(copy.path().join(sealed.file_name().unwrap()))
            .unwrap();
        file.set_len(cut).unwrap();
        let err = open(copy.path(), options()).unwrap_err();
        assert!(err.is_corruption(), "cut at {cut}: {err}");
    }
}

#[test]
fn an_empty_last_segment_is_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let model = build_many_segments(dir.path());
    // A value larger than a segment goes alone into a fresh one; then a
    // crash right after that segment's creation, before its header was
    // synced, is the same segment, empty.
    let engine = open(dir.path(), options()).unwrap();
    engine.set(b"big", &vec![1; 3000]).unwrap();
    drop(engine);
    let last = pydb_file::segment_path(dir.path(), *engine_ids(dir.path()).last().unwrap(), "log");
    std::fs::write(&last, b"").unwrap();
    let engine = open(dir.path(), options()).unwrap();
    assert_eq!(contents(&engine), model);
    engine.set(b"new", b"write").unwrap();
    drop(engine);
    let engine = open(dir.path(), options()).unwrap();
    assert_eq!(engine.get(b"new").unwrap().as_deref(), Some(&b"write"[..]));
}

#[test]
fn leftovers_of_an_interrupted_compaction_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let model = build_many_segments(dir.path());
    let leftovers = [
        dir.path().join("000000000999.log.tmp"),
        dir.path().join("000000000999.hint.tmp"),
        dir.path().join("000000000999.hint"),
    ];
    for path in &leftovers {
        std::fs::write(path, b"half written").unwrap();
    }
    let engine = open(dir.path(), options()).unwrap();
    for path in &leftovers {
        assert!(!path.exists(), "{} removed", path.display());
    }
    assert_eq!(contents(&engine), model);
}

#[test]
fn a_second_open_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let first = open(dir.path(), options()).unwrap();
    let err = open(dir.path(), options()).unwrap_err();
    assert_eq!(err.kind(), pydb_storage::ErrorKind::Locked, "{err}");
    drop(first);
    open(dir.path(), options()).unwrap();
}

/// Builds a database where the latest operation on `zombie` is a delete
/// whose set sits in an older segment, then compacts it while holding open
/// handles on the inputs, so that the inputs can be put back as a crash in
/// the middle of compaction would have left them.
fn compaction_crash_fixture() -> (tempfile::TempDir, Model, Vec<(PathBuf, Vec<u8>)>) {
    compaction_crash_fixture_with(20)
}

/// [`compaction_crash_fixture`] with `keys` live keys: enough of them make
/// the compaction write several outputs.
fn compaction_crash_fixture_with(
    keys: usize,
) -> (tempfile::TempDir, Model, Vec<(PathBuf, Vec<u8>)>) {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), options()).unwrap();
    let mut model = Model::new();
    engine.set(b"zombie", b"must stay dead").unwrap();
    for round in 0..4 {
        for i in 0..keys {
            let key = format!("k{i:02}");
            let value = format!("round {round} {}", "y".repeat(i % 20 * 5));
            engine.set(key.as_bytes(), value.as_bytes()).unwrap();
            model.insert(key.into_bytes(), value.into_bytes());
        }
        if round == 2 {
            engine.delete(b"zombie").unwrap();
        }
    }
    let inputs: Vec<(PathBuf, std::fs::File)> = engine
        .segment_ids()
        .into_iter()
        .map(|id| {
            let path = engine.segment_path(id);
            let file = std::fs::File::open(&path).unwrap();
            (path, file)
        })
        .collect();
    assert!(inputs.len() >= 4);
    engine.compact().unwrap();
    drop(engine);
    // The unlinked inputs are still readable through the handles, sealed.
    let inputs = inputs
        .into_iter()
        .map(|(path, file)| {
            assert!(!path.exists());
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut &file, &mut bytes).unwrap();
            (path, bytes)
        })
        .collect();
    (dir, model, inputs)
}

fn copy_dir(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, to.path().join(path.file_name().unwrap())).unwrap();
    }
    to
}

#[test]
fn a_crash_while_deleting_compaction_inputs_resurrects_nothing() {
    let (dir, model, inputs) = compaction_crash_fixture();
    let after = engine_ids(dir.path());
    // Inputs are deleted oldest first: a crash leaves a newer suffix.
    for deleted in 0..inputs.len() {
        let crash = copy_dir(dir.path());
        for (path, bytes) in &inputs[deleted..] {
            std::fs::write(crash.path().join(path.file_name().unwrap()), bytes).unwrap();
        }
        let engine = open(crash.path(), options()).unwrap();
        assert_eq!(
            contents(&engine),
            model,
            "{deleted} inputs deleted before the crash"
        );
        assert_eq!(engine.get(b"zombie").unwrap(), None);
        assert_eq!(
            engine.segment_ids(),
            after,
            "reopening finishes the compaction"
        );
    }
}

#[test]
fn a_crash_while_installing_compaction_outputs_loses_nothing() {
    let (dir, model, inputs) = compaction_crash_fixture();
    let input_ids: Vec<u64> = inputs
        .iter()
        .map(|(p, _)| pydb_file::parse_id(p.file_stem().unwrap().to_str().unwrap()).unwrap())
        .collect();
    let ids = engine_ids(dir.path());
    let outputs: Vec<u64> = ids[..ids.len() - 1].to_vec();
    assert!(!outputs.is_empty());
    assert!(
        outputs
            .iter()
            .all(|id| !input_ids.contains(id) && id > input_ids.last().unwrap())
    );
    // Only the first `installed` outputs got their real name.
    for installed in 0..=outputs.len() {
        let crash = copy_dir(dir.path());
        for id in &outputs[installed..] {
            std::fs::remove_file(pydb_file::segment_path(crash.path(), *id, "log")).unwrap();
        }
        for (path, bytes) in &inputs {
            std::fs::write(crash.path().join(path.file_name().unwrap()), bytes).unwrap();
        }
        let engine = open(crash.path(), options()).unwrap();
        assert_eq!(contents(&engine), model, "{installed} outputs installed");
        assert_eq!(engine.get(b"zombie").unwrap(), None);
        engine.compact().unwrap();
        assert_eq!(contents(&engine), model);
    }
}

/// A crash between two output renames leaves segment ids out of seq order:
/// the inputs of the outputs not installed (low ids, newer seqs) survive
/// next to an installed output (a higher id, older seqs). The next
/// compaction must still write outputs that a reopen accepts, and a crash
/// while it deletes its inputs must leave a state that reopens too.
#[test]
fn compacting_after_a_crash_between_output_renames_keeps_the_directory_openable() {
    let (dir, fixture_model, inputs) = compaction_crash_fixture_with(60);
    let ids = engine_ids(dir.path());
    let outputs: Vec<u64> = ids[..ids.len() - 1].to_vec();
    assert!(
        outputs.len() >= 2,
        "the fixture compacts into several outputs"
    );
    for installed in 1..outputs.len() {
        let mut model = fixture_model.clone();
        let crash = copy_dir(dir.path());
        for id in &outputs[installed..] {
            std::fs::remove_file(pydb_file::segment_path(crash.path(), *id, "log")).unwrap();
        }
        for (path, bytes) in &inputs {
            std::fs::write(crash.path().join(path.file_name().unwrap()), bytes).unwrap();
        }
        let engine = open(crash.path(), options()).unwrap();
        assert_eq!(contents(&engine), model, "{installed} outputs installed");
        // Some surviving input has a lower id than an installed output but
        // holds newer seqs: ids are no longer in seq order.
        let surviving = engine.segment_ids();
        assert!(
            surviving.iter().any(|id| id < &outputs[0]),
            "an input survives next to output {}",
            outputs[0]
        );
        // Overwrite keys from every era so that compaction has work.
        for i in (0..60).step_by(3) {
            let key = format!("k{i:02}");
            engine.set(key.as_bytes(), b"after the crash").unwrap();
            model.insert(key.into_bytes(), b"after the crash".to_vec());
        }
        // Keep handles on the inputs of this compaction, to put them back.
        let second_inputs: Vec<(u64, std::fs::File)> = engine
            .segment_ids()
            .into_iter()
            .map(|id| (id, std::fs::File::open(engine.segment_path(id)).unwrap()))
            .collect();
        engine.compact().unwrap();
        assert_eq!(contents(&engine), model);
        drop(engine);
        let compacted = copy_dir(crash.path());
        let engine = open(compacted.path(), options())
            .unwrap_or_else(|e| panic!("{installed} installed, reopen after compaction: {e}"));
        assert_eq!(contents(&engine), model);
        assert_eq!(engine.get(b"zombie").unwrap(), None);
        drop(engine);
        // A crash while the second compaction deletes its inputs: the
        // inputs still on disk must be the newest ones by seq, whatever
        // their ids, and each such state must reopen with the same data.
        let mut by_age: Vec<(u64, Vec<u8>, u64)> = second_inputs
            .into_iter()
            .filter(|(id, _)| !engine_ids(crash.path()).contains(id))
            .map(|(id, file)| {
                let mut bytes = Vec::new();
                std::io::Read::read_to_end(&mut &file, &mut bytes).unwrap();
                let first = first_seq(&bytes);
                (id, bytes, first)
            })
            .collect();
        by_age.sort_by_key(|(id, _, first)| (*first, *id));
        for deleted in 0..by_age.len() {
            let again = copy_dir(crash.path());
            for (id, bytes, _) in &by_age[deleted..] {
                std::fs::write(pydb_file::segment_path(again.path(), *id, "log"), bytes).unwrap();
            }
            let engine = open(again.path(), options()).unwrap_or_else(|e| {
                panic!("{installed} installed, {deleted} second inputs deleted: {e}")
            });
            assert_eq!(contents(&engine), model);
            assert_eq!(engine.get(b"zombie").unwrap(), None);
        }
    }
}

/// The seq of a segment's `begin` entry (the first record after the log
/// header: 4-byte crc, 4-byte length, 1 flag byte, then the entry whose
/// first field is the seq, little-endian).
fn first_seq(segment: &[u8]) -> u64 {
    let at = 16 + 9;
    u64::from_le_bytes(segment[at..at + 8].try_into().unwrap())
}

#[test]
fn readers_and_a_writer_agree_with_the_model_while_compaction_runs() {
    let dir = tempfile::tempdir().unwrap();
    let opts = LogOptions {
        sync_policy: pydb_storage::log::SyncPolicy::Never,
        ..options()
    };
    let engine = open(dir.path(), opts.clone()).unwrap();
    const KEYS: u64 = 40;
    const ROUNDS: u64 = 30;
    // The newest version written per key; readers may see any version up
    // to it (or none), never one from the future or of another key.
    let written: Arc<Vec<AtomicU64>> = Arc::new((0..KEYS).map(|_| AtomicU64::new(0)).collect());
    let done = AtomicBool::new(false);
    let key = |k: u64| format!("key{k:03}");
    let value = |k: u64, v: u64| format!("{}={v}:{}", key(k), "z".repeat((k * 7 % 50) as usize));
    let mut model = Model::new();
    std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::Acquire) {
                engine.compact().unwrap();
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        for reader in 0..2u64 {
            let (engine, written, done) = (&engine, &written, &done);
            s.spawn(move || {
                let mut k = reader;
                while !done.load(Ordering::Acquire) {
                    k = (k * 31 + 7) % KEYS;
                    let got = engine.get(key(k).as_bytes()).unwrap();
                    let newest = written[k as usize].load(Ordering::Acquire);
                    if let Some(got) = got {
                        let text = std::str::from_utf8(&got).unwrap();
                        let (prefix, rest) = text.split_once('=').unwrap();
                        assert_eq!(prefix, key(k));
                        let version: u64 = rest.split(':').next().unwrap().parse().unwrap();
                        assert!(
                            version <= newest,
                            "{text} before version {newest} was written"
                        );
                        assert_eq!(got, value(k, version).as_bytes());
                    }
                    for item in engine.scan(KeyRange::all()).unwrap().take(5) {
                        let (k, v) = item.unwrap();
                        assert!(v.starts_with(&k));
                    }
                }
            });
        }
        for round in 1..=ROUNDS {
            for k in 0..KEYS {
                if (k + round) % 9 == 0 {
                    engine.delete(key(k).as_bytes()).unwrap();
                    model.remove(key(k).as_bytes());
                } else {
                    written[k as usize].store(round, Ordering::Release);
                    engine
                        .set(key(k).as_bytes(), value(k, round).as_bytes())
                        .unwrap();
                    model.insert(key(k).into_bytes(), value(k, round).into_bytes());
                }
            }
        }
        done.store(true, Ordering::Release);
    });
    assert_eq!(contents(&engine), model);
    assert!(engine.stats().get("compactions").unwrap() > 0);
    drop(engine);
    let engine = open(dir.path(), opts).unwrap();
    assert_eq!(contents(&engine), model);
}

#[test]
fn background_compaction_runs_past_the_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(
        dir.path(),
        LogOptions {
            background_compaction: true,
            compaction_interval: Duration::from_millis(10),
            compaction_min_dead_bytes: 4096,
            ..options()
        },
    )
    .unwrap();
    for i in 0..400u32 {
        engine
            .set(format!("k{}", i % 10).as_bytes(), &[i as u8; 64])
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while engine.stats().get("compactions").unwrap() == 0 {
        assert!(
            Instant::now() < deadline,
            "no background compaction: {:?}",
            engine.stats()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    for i in 390..400u32 {
        assert_eq!(
            engine.get(format!("k{}", i % 10).as_bytes()).unwrap(),
            Some(Bytes::from(vec![i as u8; 64]))
        );
    }
}

/// Runs `history` on a fresh one-segment database and closes it cleanly,
/// which leaves a hint for the active segment. Returns the model, the
/// segment path and the hint bytes.
fn closed_with_active_hint(dir: &Path, writes: &[Write]) -> (Model, PathBuf, Vec<u8>) {
    let engine = open(dir, one_segment_options()).unwrap();
    let mut model = Model::new();
    for write in writes {
        apply(&engine, &mut model, write);
    }
    let segment = engine.segment_path(engine.segment_ids()[0]);
    drop(engine);
    let hint = std::fs::read(hint_path(dir, 1)).expect("a clean close writes a hint");
    let len = std::fs::metadata(&segment).unwrap().len();
    let (header, entries) = decode_hint_prefix(&hint, 1, len).unwrap();
    assert_eq!(header.segment_len, len, "the hint covers the whole segment");
    assert!(!entries.is_empty());
    (model, segment, hint)
}

#[test]
fn a_clean_close_hints_the_active_segment_and_reopen_scans_only_what_follows() {
    let dir = tempfile::tempdir().unwrap();
    let (mut model, segment, hint) = closed_with_active_hint(dir.path(), &history());
    let hinted_len = std::fs::metadata(&segment).unwrap().len();

    // Reopen from the hint, write more, and "crash" (copy the directory
    // while the engine is open): the hint now covers a prefix only.
    let engine = open(dir.path(), one_segment_options()).unwrap();
    assert_eq!(contents(&engine), model);
    assert_eq!(
        engine.stats().get("open_scanned_bytes"),
        Some(0),
        "the hint covers the whole segment: nothing is scanned"
    );
    let more = [
        Write::Set("quince", "yellow".into()),
        Write::Delete("apple"),
        Write::Batch(vec![("fig", Some("ripe".into())), ("lime", None)]),
    ];
    let mut models = vec![model.clone()];
    let mut ends = vec![hinted_len];
    for write in &more {
        apply(&engine, &mut model, write);
        models.push(model.clone());
        ends.push(std::fs::metadata(&segment).unwrap().len());
    }
    let crashed = copy_dir(dir.path());
    drop(engine);
    assert_eq!(std::fs::read(hint_path(crashed.path(), 1)).unwrap(), hint);
    let name = segment.file_name().unwrap();
    let bytes = std::fs::read(crashed.path().join(name)).unwrap();

    // Every cut of the unhinted tail keeps exactly the complete batches,
    // with the hinted prefix read from the hint.
    for cut in hinted_len as usize..=bytes.len() {
        let dir = copy_dir(crashed.path());
        std::fs::write(dir.path().join(name), &bytes[..cut]).unwrap();
        let engine = open(dir.path(), one_segment_options())
            .unwrap_or_else(|e| panic!("open after a cut at {cut}: {e}"));
        let survivors = ends.iter().rposition(|&end| end <= cut as u64).unwrap();
        assert_eq!(contents(&engine), models[survivors], "cut at {cut}");
        assert_eq!(
            engine.stats().get("open_scanned_bytes"),
            Some(cut as u64 - hinted_len),
            "only the bytes after the hinted prefix are scanned (cut at {cut})"
        );
        assert_eq!(
            engine.stats().get("torn_bytes"),
            Some(cut as u64 - ends[survivors]),
            "cut at {cut}"
        );
    }
}

#[test]
fn a_damaged_stale_or_foreign_active_hint_is_never_believed() {
    let source = tempfile::tempdir().unwrap();
    let (model, segment, hint) = closed_with_active_hint(source.path(), &history());
    let name = segment.file_name().unwrap();
    let segment_bytes = std::fs::read(&segment).unwrap();
    let len = segment_bytes.len() as u64;
    let check = |hint_bytes: &[u8], segment_bytes: &[u8], expected: &Model, what: &str| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(name), segment_bytes).unwrap();
        std::fs::write(hint_path(dir.path(), 1), hint_bytes).unwrap();
        let engine =
            open(dir.path(), one_segment_options()).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(&contents(&engine), expected, "{what}");
        assert_eq!(
            engine.stats().get("open_scanned_bytes"),
            Some(segment_bytes.len() as u64),
            "{what}: the hint is refused and the segment scanned whole"
        );
    };

    // Cut anywhere: the hint's own checks refuse it, the segment is scanned.
    for cut in 0..hint.len() {
        check(
            &hint[..cut],
            &segment_bytes,
            &model,
            &format!("hint cut at {cut}"),
        );
    }

    // A segment shorter than the hint says (its tail lost): refused.
    let survivors = {
        let (models, ends, _) = record_history(tempfile::tempdir().unwrap().path(), &history());
        let cut = ends[ends.len() - 2];
        (models[models.len() - 2].clone(), cut)
    };
    check(
        &hint,
        &segment_bytes[..survivors.1 as usize],
        &survivors.0,
        "segment shorter than the hint",
    );

    // Checksums fine, offsets wrong: the entries are not contiguous.
    let (header, mut entries) = decode_hint_prefix(&hint, 1, len).unwrap();
    entries[1].offset += 1;
    check(
        &encode_hint(&header, &entries),
        &segment_bytes,
        &model,
        "shifted entry",
    );

    // Checksums fine, the last entry names another key.
    let (header, mut entries) = decode_hint_prefix(&hint, 1, len).unwrap();
    let last = entries.len() - 1;
    entries[last].key = Bytes::from_static(b"zzz-not-there");
    check(
        &encode_hint(&header, &entries),
        &segment_bytes,
        &model,
        "wrong last key",
    );

    // The hint of another incarnation of segment 1: another history, same
    // id, same first seq. Its entries must not be applied to this segment.
    let other = tempfile::tempdir().unwrap();
    let other_writes = vec![
        Write::Set("apple", "other".into()),
        Write::Batch(vec![("pear", Some("x".into())), ("plum", Some("y".into()))]),
        Write::Set("kiwi", "z".into()),
    ];
    let (_, _, other_hint) = closed_with_active_hint(other.path(), &other_writes);
    check(
        &other_hint,
        &segment_bytes,
        &model,
        "hint of another segment 1",
    );
}
