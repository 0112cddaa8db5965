//! Guards the log engine's preallocation: zeros written ahead of the end of
//! the active segment are found as the end after a crash (never as a torn
//! tail or damage), a torn record before them is still cut as a torn tail,
//! reopening appends at the logical end, and check/repair read such a file.

#![allow(clippy::unwrap_used)]

mod common;

use common::{Model, contents};

use std::path::{Path, PathBuf};

use pydb_file::{FaultyOpener, MonolithicOpener};
use pydb_index::BPlusTreeIndex;
use pydb_storage::log::repair;
use pydb_storage::log::verify::{FindingKind, verify_dir};
use pydb_storage::{AppendOnlyLogStorage, LogOptions, StorageEngine};
use pydb_wal::SyncPolicy;

const STEP: u64 = 4096;

fn options() -> LogOptions {
    LogOptions {
        max_segment_size: 1 << 20,
        preallocate: STEP,
        ..common::test_options()
    }
}

fn counter(engine: &dyn StorageEngine, name: &str) -> u64 {
    engine.stats().get(name).unwrap()
}

fn reopen(dir: &Path, options: LogOptions) -> AppendOnlyLogStorage<MonolithicOpener> {
    AppendOnlyLogStorage::open_with(dir, MonolithicOpener, BPlusTreeIndex::new(), options).unwrap()
}

fn write_keys(engine: &dyn StorageEngine, model: &mut Model, range: std::ops::Range<u32>) {
    for i in range {
        // Values end in a nonzero byte, so the data ends where zeros start.
        let (key, value) = (format!("key{i:04}"), format!("value-{i}-x"));
        engine.set(key.as_bytes(), value.as_bytes()).unwrap();
        model.insert(key.into_bytes(), value.into_bytes());
    }
}

fn only_segment(dir: &Path) -> PathBuf {
    let ids = pydb_file::list_ids(dir, "log").unwrap();
    assert_eq!(ids, vec![1], "the writes fit in one segment");
    pydb_file::segment_path(dir, 1, "log")
}

/// The offset just past the last nonzero byte of `bytes`.
fn data_end(bytes: &[u8]) -> usize {
    bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1)
}

/// Writes through fault-injecting files, cuts the power (every write was
/// acknowledged, so synced) and returns the model and the segment's path.
/// The segment is left as a crash leaves it: data, then zeros.
fn crash_with_zeros_after_the_data(dir: &Path) -> (Model, PathBuf) {
    let opener = FaultyOpener::new(MonolithicOpener, 7);
    let controller = opener.controller().clone();
    let engine =
        AppendOnlyLogStorage::open_with(dir, opener, BPlusTreeIndex::new(), options()).unwrap();
    let mut model = Model::new();
    write_keys(&engine, &mut model, 0..150);
    controller.power_cut().unwrap();
    drop(engine);
    let segment = only_segment(dir);
    let bytes = std::fs::read(&segment).unwrap();
    assert_eq!(bytes.len() as u64 % STEP, 0, "the file is whole steps");
    assert!(
        bytes.len() - data_end(&bytes) > 0,
        "zeros lie after the data"
    );
    (model, segment)
}

#[test]
fn a_power_cut_inside_preallocated_zeros_loses_nothing_and_is_no_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (mut model, segment) = crash_with_zeros_after_the_data(dir.path());
    let end = data_end(&std::fs::read(&segment).unwrap()) as u64;

    let engine = reopen(dir.path(), options());
    assert_eq!(contents(&engine), model);
    assert_eq!(counter(&engine, "torn_tails_recovered"), 0);
    assert_eq!(counter(&engine, "torn_bytes"), 0);
    assert_eq!(
        std::fs::metadata(&segment).unwrap().len(),
        end,
        "opening cut the zeros off"
    );
    // Appends go on at the logical end, not behind the zeros.
    write_keys(&engine, &mut model, 150..200);
    drop(engine);
    let engine = reopen(dir.path(), options());
    assert_eq!(contents(&engine), model);
    assert_eq!(counter(&engine, "torn_tails_recovered"), 0);
    drop(engine);
    assert!(verify_dir(dir.path()).unwrap().findings.is_empty());
}

#[test]
fn a_torn_record_followed_by_zeros_is_cut_as_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (model, segment) = crash_with_zeros_after_the_data(dir.path());
    let mut bytes = std::fs::read(&segment).unwrap();
    let end = data_end(&bytes);
    // Half a record's worth of garbage where the next append would go,
    // zeros after it: an append torn by the crash.
    let torn = [0x5a_u8; 20];
    bytes[end..end + torn.len()].copy_from_slice(&torn);
    std::fs::write(&segment, &bytes).unwrap();

    let report = verify_dir(dir.path()).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.findings.len(), 1);
    assert!(
        report.findings[0]
            .reason
            .starts_with("torn tail of 20 bytes, then"),
        "{}",
        report.findings[0].reason
    );

    let engine = reopen(dir.path(), options());
    assert_eq!(contents(&engine), model);
    assert_eq!(counter(&engine, "torn_tails_recovered"), 1);
    // Counted whole, zeros included: where the torn write stopped is not
    // knowable (its own bytes may end in zeros).
    assert_eq!(counter(&engine, "torn_bytes"), (bytes.len() - end) as u64);
    assert_eq!(std::fs::metadata(&segment).unwrap().len(), end as u64);
}

#[test]
fn check_and_repair_read_zeros_after_the_end_as_preallocated_space() {
    let dir = tempfile::tempdir().unwrap();
    let (model, segment) = crash_with_zeros_after_the_data(dir.path());
    let bytes = std::fs::read(&segment).unwrap();
    let zeros = bytes.len() - data_end(&bytes);

    let report = verify_dir(dir.path()).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.findings.len(), 1);
    assert_eq!(report.findings[0].kind, FindingKind::Note);
    assert_eq!(
        report.findings[0].reason,
        format!(
            "{zeros} bytes of zeros preallocated after the end of the log (opening cuts them off)"
        )
    );
    let plan = repair::plan(dir.path()).unwrap();
    assert!(plan.lost_seqs.is_empty());
    for segment in &plan.segments {
        assert!(
            segment.dropped.is_empty(),
            "zeros are not data: {segment:?}"
        );
    }
    assert_eq!(contents(&reopen(dir.path(), options())), model);
}

#[test]
fn a_clean_close_and_every_seal_leave_segments_exactly_their_records() {
    let dir = tempfile::tempdir().unwrap();
    let small = LogOptions {
        max_segment_size: 2048,
        preallocate: 1024,
        ..options()
    };
    let engine = reopen(dir.path(), small.clone());
    let mut model = Model::new();
    write_keys(&engine, &mut model, 0..300);
    let active = engine.segment_path(*engine.segment_ids().last().unwrap());
    assert!(engine.segment_ids().len() > 3, "the writes cross rolls");
    drop(engine);
    // A sealed segment with zeros after its seal, or an active one with
    // zeros after its data, would be a finding.
    let report = verify_dir(dir.path()).unwrap();
    assert!(report.findings.is_empty(), "{report:?}");
    let bytes = std::fs::read(&active).unwrap();
    assert_eq!(
        data_end(&bytes),
        bytes.len(),
        "no zeros after a clean close"
    );
    let engine = reopen(dir.path(), small);
    assert_eq!(contents(&engine), model);
    assert_eq!(counter(&engine, "open_scanned_bytes"), 0, "hints cover all");
}

/// Without preallocation the segment holds exactly its data: when it is
/// turned off (a step of 0), and for a log that does not sync every write,
/// where zeros would cost more than they save.
#[rstest::rstest]
#[case::turned_off(SyncPolicy::Always, 0)]
#[case::never_synced(SyncPolicy::Never, STEP)]
#[case::synced_periodically(SyncPolicy::Periodic(std::time::Duration::from_secs(60)), STEP)]
fn without_preallocation_the_file_is_its_data(
    #[case] sync_policy: SyncPolicy,
    #[case] preallocate: u64,
) {
    let dir = tempfile::tempdir().unwrap();
    let engine = reopen(
        dir.path(),
        LogOptions {
            sync_policy,
            preallocate,
            ..options()
        },
    );
    let mut model = Model::new();
    write_keys(&engine, &mut model, 0..20);
    let segment = only_segment(dir.path());
    let bytes = std::fs::read(&segment).unwrap();
    assert_eq!(data_end(&bytes), bytes.len());
    assert_eq!(contents(&engine), model);
}
