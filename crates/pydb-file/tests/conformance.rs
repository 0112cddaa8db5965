//! Guards that every `File` implementation behaves like a `Vec<u8>`: the same
//! random sequence of writes, appends, truncations and reads gives the same
//! bytes on `MonolithicFile`, `MmapFile` and `FaultyFile` (with no faults).

#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::path::Path;

use proptest::prelude::*;
use pydb_file::{
    DirLock, Error, FaultController, FaultyFile, FaultyOpener, File, FileOpener, MIN_MAP_CAPACITY,
    MmapFile, MmapOpener, MonolithicFile, MonolithicOpener,
};

#[derive(Debug, Clone)]
enum FileOp {
    Append(Vec<u8>),
    WriteAt(u64, Vec<u8>),
    SetLen(u64),
    Read(u64, usize),
    Sync,
    /// A large append, to push `MmapFile` past its map's capacity.
    BigAppend(u8),
}

fn op() -> impl Strategy<Value = FileOp> {
    prop_oneof![
        4 => prop::collection::vec(any::<u8>(), 0..300).prop_map(FileOp::Append),
        3 => (0u64..3000, prop::collection::vec(any::<u8>(), 0..300))
            .prop_map(|(at, data)| FileOp::WriteAt(at, data)),
        1 => (0u64..3000).prop_map(FileOp::SetLen),
        4 => (0u64..3000, 0usize..400).prop_map(|(at, len)| FileOp::Read(at, len)),
        1 => Just(FileOp::Sync),
        1 => any::<u8>().prop_map(FileOp::BigAppend),
    ]
}

/// Runs `ops` on `file` and on a `Vec<u8>` model, checking every result.
fn check_against_model(file: &impl File, ops: &[FileOp]) {
    let mut model: Vec<u8> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        match op {
            FileOp::Append(data) => {
                assert_eq!(file.append(data).unwrap(), model.len() as u64, "op {i}");
                model.extend_from_slice(data);
            }
            FileOp::BigAppend(byte) => {
                let data = vec![*byte; MIN_MAP_CAPACITY as usize + 1];
                assert_eq!(file.append(&data).unwrap(), model.len() as u64, "op {i}");
                model.extend_from_slice(&data);
            }
            FileOp::WriteAt(at, data) => {
                file.write_at(*at, data).unwrap();
                let at = *at as usize;
                if !data.is_empty() {
                    if model.len() < at + data.len() {
                        model.resize(at + data.len(), 0);
                    }
                    model[at..at + data.len()].copy_from_slice(data);
                }
            }
            FileOp::SetLen(len) => {
                file.set_len(*len).unwrap();
                model.resize(*len as usize, 0);
            }
            FileOp::Read(at, len) => {
                let mut buf = vec![0xEE; *len];
                let result = file.read_at(*at, &mut buf);
                let end = *at as usize + len;
                if end <= model.len() {
                    result.unwrap();
                    assert_eq!(buf, model[*at as usize..end], "op {i}: read {at}+{len}");
                } else {
                    let err = result.unwrap_err();
                    assert!(
                        matches!(err, Error::ReadPastEnd { file_len, .. } if file_len == model.len() as u64),
                        "op {i}: {err}"
                    );
                }
            }
            FileOp::Sync => file.sync_data().unwrap(),
        }
        assert_eq!(file.len().unwrap(), model.len() as u64, "op {i}");
    }
    // The OS agrees with what the handle reports.
    assert_eq!(std::fs::read(file.path()).unwrap(), model);
}

fn fresh(dir: &Path, name: &str) -> std::path::PathBuf {
    dir.join(name)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn monolithic_file_matches_the_model(ops in prop::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        check_against_model(&MonolithicFile::create(fresh(dir.path(), "f")).unwrap(), &ops);
    }

    #[test]
    fn mmap_file_matches_the_model(ops in prop::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let lock = DirLock::acquire(dir.path()).unwrap();
        check_against_model(&MmapFile::create(fresh(dir.path(), "f"), &lock).unwrap(), &ops);
    }

    #[test]
    fn faulty_file_without_faults_matches_the_model(ops in prop::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let opener = FaultyOpener::new(MonolithicOpener, 1);
        check_against_model(&opener.open(&fresh(dir.path(), "f"), true).unwrap(), &ops);
    }

    #[test]
    fn faulty_mmap_file_without_faults_matches_the_model(ops in prop::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let controller = FaultController::new(1);
        let lock = DirLock::acquire(dir.path()).unwrap();
        let inner = MmapFile::create(fresh(dir.path(), "f"), &lock).unwrap();
        check_against_model(&FaultyFile::wrap(inner, &controller).unwrap(), &ops);
    }
}

#[test]
fn an_mmap_file_and_a_monolithic_file_share_the_same_bytes() {
    // Both are views of one OS file: writes through one show in the other.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    let plain = MonolithicFile::create(&path).unwrap();
    plain.append(&[1u8; 8192]).unwrap();
    let lock = DirLock::acquire(dir.path()).unwrap();
    let mapped = MmapFile::open(&path, false, &lock).unwrap();
    assert_eq!(mapped.mapped_len(), 8192);
    plain.write_at(4000, b"shared").unwrap();
    let mut buf = [0u8; 6];
    mapped.read_at(4000, &mut buf).unwrap();
    assert_eq!(&buf, b"shared");
}

#[test]
fn a_power_cut_under_a_map_ahead_is_seen_as_a_dead_handle_not_a_crash() {
    // The map reaches past the file; a power cut then cuts the file below
    // the length the handle knew. No read may touch the pages cut off.
    let dir = tempfile::tempdir().unwrap();
    let lock = DirLock::acquire(dir.path()).unwrap();
    let opener = FaultyOpener::new(MmapOpener::new(&lock), 1);
    let path = dir.path().join("log");
    let file = opener.open(&path, true).unwrap();
    file.append(&[1u8; 5000]).unwrap();
    file.sync_data().unwrap();
    opener.sync_dir(dir.path()).unwrap();
    file.append(&[2u8; 20_000]).unwrap();
    let mut buf = [0u8; 4];
    file.read_at(24_000, &mut buf).unwrap();
    assert_eq!(buf, [2u8; 4]);
    opener.controller().power_cut().unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 5000);
    // The handle is dead: its reads fail instead of reaching the map.
    assert!(file.read_at(24_000, &mut buf).is_err());
    assert!(file.read_with(0, 4, &mut |_| {}).is_err());
    drop(file);
    // A new handle maps the file as it was synced.
    let reopened = MmapFile::open(&path, false, &lock).unwrap();
    assert_eq!(reopened.len().unwrap(), 5000);
    reopened.read_at(4996, &mut buf).unwrap();
    assert_eq!(buf, [1u8; 4]);
    assert!(reopened.read_at(5000, &mut buf).is_err());
}
