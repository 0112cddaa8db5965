//! Guards the power-cut simulation of `FaultyFile`: after any sequence of
//! writes, appends, truncations and syncs, a power cut leaves every file
//! exactly as it was at its last successful sync.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use pydb_file::faulty::{FaultKind, injected_fault};
use pydb_file::{FaultyOpener, File, FileOpener, MmapOpener, MonolithicOpener};

#[derive(Debug, Clone)]
enum Step {
    Append(usize, Vec<u8>),
    WriteAt(usize, u64, Vec<u8>),
    SetLen(usize, u64),
    Sync(usize),
    /// The next write to this file is torn.
    TearNextWrite,
    /// The next sync fails: nothing becomes durable.
    FailNextSync,
}

const FILES: usize = 3;

fn step() -> impl Strategy<Value = Step> {
    let file = 0..FILES;
    let data = prop::collection::vec(any::<u8>(), 1..200);
    prop_oneof![
        4 => (file.clone(), data.clone()).prop_map(|(f, d)| Step::Append(f, d)),
        3 => (file.clone(), 0u64..1500, data).prop_map(|(f, at, d)| Step::WriteAt(f, at, d)),
        1 => (file.clone(), 0u64..1500).prop_map(|(f, len)| Step::SetLen(f, len)),
        2 => file.prop_map(Step::Sync),
        1 => Just(Step::TearNextWrite),
        1 => Just(Step::FailNextSync),
    ]
}

fn apply_write(model: &mut Vec<u8>, at: usize, data: &[u8]) {
    if model.len() < at + data.len() {
        model.resize(at + data.len(), 0);
    }
    model[at..at + data.len()].copy_from_slice(data);
}

fn run<O: FileOpener + Clone>(inner: impl FnOnce(&Path) -> O, seed: u64, steps: &[Step]) {
    let dir = tempfile::tempdir().unwrap();
    let inner = inner(dir.path());
    let opener = FaultyOpener::new(inner.clone(), seed);
    let paths: Vec<PathBuf> = (0..FILES)
        .map(|i| dir.path().join(format!("f{i}")))
        .collect();
    let files: Vec<_> = paths
        .iter()
        .map(|p| opener.open(p, true).unwrap())
        .collect();
    opener.sync_dir(dir.path()).unwrap();
    // What each file holds now, and what it held at its last good sync.
    let mut live = vec![Vec::new(); FILES];
    let mut durable = vec![Vec::new(); FILES];
    for step in steps {
        match step {
            Step::Append(f, data) => match files[*f].append(data) {
                Ok(_) => live[*f].extend_from_slice(data),
                Err(err) => {
                    assert_eq!(
                        injected_fault(&err).map(|i| i.kind),
                        Some(FaultKind::TornWrite)
                    );
                    // A prefix may be there: the model follows the file.
                    live[*f] = std::fs::read(&paths[*f]).unwrap();
                }
            },
            Step::WriteAt(f, at, data) => match files[*f].write_at(*at, data) {
                Ok(()) => apply_write(&mut live[*f], *at as usize, data),
                Err(err) => {
                    assert_eq!(
                        injected_fault(&err).map(|i| i.kind),
                        Some(FaultKind::TornWrite)
                    );
                    live[*f] = std::fs::read(&paths[*f]).unwrap();
                }
            },
            Step::SetLen(f, len) => {
                files[*f].set_len(*len).unwrap();
                live[*f].resize(*len as usize, 0);
            }
            Step::Sync(f) => {
                if files[*f].sync_data().is_ok() {
                    durable[*f] = live[*f].clone();
                }
            }
            Step::TearNextWrite => opener.controller().tear_nth_write(1),
            Step::FailNextSync => opener.controller().fail_nth(pydb_file::faulty::Op::Sync, 1),
        }
    }
    for (f, path) in paths.iter().enumerate() {
        assert_eq!(
            std::fs::read(path).unwrap(),
            live[f],
            "file {f} before the cut"
        );
    }
    opener.controller().power_cut().unwrap();
    for (f, path) in paths.iter().enumerate() {
        assert_eq!(
            std::fs::read(path).unwrap(),
            durable[f],
            "file {f} after the cut"
        );
    }
    // A fresh opener sees the same.
    let fresh = FaultyOpener::new(inner, seed);
    for (f, path) in paths.iter().enumerate() {
        let file = fresh.open(path, false).unwrap();
        assert_eq!(file.len().unwrap(), durable[f].len() as u64);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn power_cut_restores_the_last_synced_state(seed: u64, steps in prop::collection::vec(step(), 1..50)) {
        run(|_| MonolithicOpener, seed, &steps);
    }

    #[test]
    fn power_cut_restores_the_last_synced_state_of_mmap_files(seed: u64, steps in prop::collection::vec(step(), 1..50)) {
        run(|dir| MmapOpener::lock_dir(dir).unwrap(), seed, &steps);
    }
}
