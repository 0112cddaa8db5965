//! Guards the encrypted and compressed `File` decorators: they behave like a
//! `Vec<u8>` under random operations and reopens, they keep synced bytes
//! across a simulated power cut, and an encrypted file never returns wrong
//! data after flips, block swaps and truncations.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use pydb_file::encrypted::{
    BLOCK_OVERHEAD, BLOCK_SIZE, ENCRYPTED_DATA_AT, ENCRYPTED_HEADER_LEN, SLOT_HEADER_LEN, SLOTS_AT,
    STORED_BLOCK_LEN,
};
use pydb_file::faulty::{FaultKind, injected_fault};
use pydb_file::{
    CompressedFile, CompressedOpener, DataKey, EncryptedFile, EncryptedOpener, Error, FaultyOpener,
    File, FileOpener, MonolithicFile, MonolithicOpener,
};

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<u8>),
    WriteAt(u64, Vec<u8>),
    SetLen(u64),
    Read(u64, usize),
    Sync,
    Reopen,
}

/// Bytes from a small alphabet, so that the compressed file really
/// compresses; lengths cross 4 KiB blocks and small chunks.
fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(0u8..4, 0..300),
        prop::collection::vec(any::<u8>(), 0..6000),
    ]
}

fn op(max_offset: u64) -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => bytes().prop_map(Op::Append),
        3 => (0..max_offset, bytes()).prop_map(|(at, data)| Op::WriteAt(at, data)),
        1 => (0..max_offset).prop_map(Op::SetLen),
        4 => (0..max_offset, 0usize..9000).prop_map(|(at, len)| Op::Read(at, len)),
        1 => Just(Op::Sync),
        1 => Just(Op::Reopen),
    ]
}

fn key() -> DataKey {
    DataKey::from_bytes([42; 32])
}

/// Runs `ops` against a `Vec<u8>` model. `open` (re)opens the file;
/// `in_place` says whether writes inside the file are allowed.
fn check_against_model<F: File>(ops: &[Op], in_place: bool, open: impl Fn() -> F) {
    let mut file = open();
    let mut model: Vec<u8> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        match op {
            Op::Append(data) => {
                assert_eq!(file.append(data).unwrap(), model.len() as u64, "op {i}");
                model.extend_from_slice(data);
            }
            Op::WriteAt(at, data) => {
                let at = *at as usize;
                let result = file.write_at(at as u64, data);
                if data.is_empty() {
                    result.unwrap();
                } else if !in_place && at < model.len() {
                    let err = result.unwrap_err();
                    assert!(matches!(err, Error::Unsupported { .. }), "op {i}: {err}");
                } else {
                    result.unwrap();
                    if model.len() < at + data.len() {
                        model.resize(at + data.len(), 0);
                    }
                    model[at..at + data.len()].copy_from_slice(data);
                }
            }
            Op::SetLen(len) => {
                file.set_len(*len).unwrap();
                model.resize(*len as usize, 0);
            }
            Op::Read(at, len) => {
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
            Op::Sync => file.sync_data().unwrap(),
            Op::Reopen => {
                drop(file);
                file = open();
            }
        }
        assert_eq!(file.len().unwrap(), model.len() as u64, "op {i}");
    }
    let mut all = vec![0u8; model.len()];
    file.read_at(0, &mut all).unwrap();
    assert_eq!(all, model);
}

fn encrypted(path: &Path) -> EncryptedFile<MonolithicFile> {
    EncryptedFile::open(MonolithicFile::create(path).unwrap(), &key()).unwrap()
}

fn compressed(path: &Path, chunk: usize) -> CompressedFile<MonolithicFile> {
    CompressedFile::open_with_chunk_size(MonolithicFile::create(path).unwrap(), chunk).unwrap()
}

fn read_all(file: &impl File) -> Vec<u8> {
    let mut buf = vec![0u8; file.len().unwrap() as usize];
    file.read_at(0, &mut buf).unwrap();
    buf
}

/// A random file's contents: some whole blocks and usually a partial one.
fn contents() -> impl Strategy<Value = Vec<u8>> {
    (BLOCK_SIZE..5 * BLOCK_SIZE, any::<u8>()).prop_map(|(len, seed)| {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect()
    })
}

#[derive(Debug, Clone)]
enum Damage {
    /// XOR one physical byte with a non-zero mask.
    Flip(usize, u8),
    /// Swap two different stored blocks of the file.
    SwapWithin(usize, usize),
    /// Replace a stored block with the same-numbered block of another file
    /// (same key, same length).
    FromOtherFile(usize),
    /// Cut the file at a physical length.
    Truncate(usize),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (any::<prop::sample::Index>(), 1u8..=255)
            .prop_map(|(at, mask)| Damage::Flip(at.index(usize::MAX), mask)),
        (0usize..5, 1usize..5).prop_map(|(a, d)| Damage::SwapWithin(a, a + d)),
        (0usize..5).prop_map(Damage::FromOtherFile),
        any::<prop::sample::Index>().prop_map(|at| Damage::Truncate(at.index(usize::MAX))),
    ]
}

/// The physical range of block `i` of a file of `len` plaintext bytes
/// written by one append: the last block is in slot 0, the others are
/// whole blocks after the slots.
fn stored_range(i: usize, len: usize) -> std::ops::Range<usize> {
    let blocks = len.div_ceil(BLOCK_SIZE);
    if i + 1 == blocks {
        let start = SLOTS_AT as usize;
        let n = len - i * BLOCK_SIZE;
        start..start + SLOT_HEADER_LEN + BLOCK_OVERHEAD + n
    } else {
        let start = ENCRYPTED_DATA_AT as usize + i * STORED_BLOCK_LEN;
        start..start + STORED_BLOCK_LEN
    }
}

/// Reads every block of `file` and returns how many reads failed, checking
/// that every successful read returned the original bytes.
fn failed_reads(file: &impl File, original: &[u8]) -> usize {
    let len = file.len().unwrap() as usize;
    assert!(len <= original.len(), "the file grew: {len}");
    let mut failures = 0;
    for start in (0..len).step_by(1000) {
        let end = (start + 1000).min(len);
        let mut buf = vec![0u8; end - start];
        match file.read_at(start as u64, &mut buf) {
            Ok(()) => assert_eq!(buf, original[start..end], "wrong data at {start}"),
            Err(Error::Corrupted { .. }) => failures += 1,
            Err(other) => panic!("unexpected error kind: {other}"),
        }
    }
    failures
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn an_encrypted_file_matches_the_model(ops in prop::collection::vec(op(20_000), 1..50)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        check_against_model(&ops, true, || encrypted(&path));
    }

    #[test]
    fn a_compressed_file_matches_the_model(ops in prop::collection::vec(op(20_000), 1..50)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        // Small chunks, so that the operations cross many of them.
        check_against_model(&ops, false, || compressed(&path, 512));
    }

    /// The order a database that wants both uses: the engine's bytes are
    /// compressed first, then encrypted (ciphertext does not compress).
    #[test]
    fn a_compressed_file_over_an_encrypted_file_matches_the_model(
        ops in prop::collection::vec(op(20_000), 1..40),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let opener = CompressedOpener::with_chunk_size(
            EncryptedOpener::new(MonolithicOpener, key()),
            512,
        );
        check_against_model(&ops, false, || opener.open(&path, true).unwrap());
    }

    #[test]
    fn every_damage_to_an_encrypted_file_is_detected_and_no_read_is_wrong(
        original in contents(),
        damage in damage(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let other = dir.path().join("g");
        encrypted(&path).append(&original).unwrap();
        encrypted(&other).append(&original).unwrap();
        let mut raw = std::fs::read(&path).unwrap();
        let physical = raw.len();
        let blocks = original.len().div_ceil(BLOCK_SIZE);
        // Whether the damage must show (an error or a dropped tail), or
        // may legitimately leave a shorter, intact prefix (a cut at a block
        // boundary is indistinguishable from lost unsynced appends).
        let must_show = match damage {
            Damage::Flip(at, mask) => {
                let at = at % physical;
                raw[at] ^= mask;
                // The unused rest of slot 0 and the never-written slot 1
                // hold nothing: a flip there changes nothing.
                !(stored_range(blocks - 1, original.len()).end..ENCRYPTED_DATA_AT as usize)
                    .contains(&at)
            }
            Damage::SwapWithin(a, b) => {
                let (a, b) = (a % blocks, b % blocks);
                let (ra, rb) = (stored_range(a, original.len()), stored_range(b, original.len()));
                if a == b || ra.len() != rb.len() {
                    return Ok(());
                }
                let block_a = raw[ra.clone()].to_vec();
                raw.copy_within(rb.clone(), ra.start);
                raw[rb].copy_from_slice(&block_a);
                true
            }
            Damage::FromOtherFile(i) => {
                let range = stored_range(i % blocks, original.len());
                let theirs = std::fs::read(&other).unwrap();
                raw[range.clone()].copy_from_slice(&theirs[range]);
                true
            }
            Damage::Truncate(at) => {
                let at = at % physical;
                raw.truncate(at);
                // Any cut past the header loses the whole blocks the slot
                // needs, or the slot itself.
                at >= ENCRYPTED_HEADER_LEN
            }
        };
        std::fs::write(&path, &raw).unwrap();
        let Ok(file) = EncryptedFile::open(MonolithicFile::open(&path, false).unwrap(), &key())
        else {
            // Refused at open (a damaged header): detected.
            return Ok(());
        };
        let failures = failed_reads(&file, &original);
        if must_show {
            prop_assert!(
                failures > 0 || file.dropped_tail().is_some(),
                "undetected {damage:?}"
            );
        }
    }

    /// Power cuts at random points of random operation sequences, on both
    /// decorators over `FaultyOpener` (the encrypted one with its last block
    /// sealed by each write or at sync): after reopening, each file holds
    /// exactly what it held at its last sync.
    #[test]
    fn synced_bytes_survive_a_power_cut(
        ops in prop::collection::vec(op(12_000), 1..40),
        compress in any::<bool>(),
        tail_at_sync in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let faulty = FaultyOpener::new(MonolithicOpener, 9);
        let controller = faulty.controller().clone();
        let file: Box<dyn File> = if compress {
            let opener = CompressedOpener::with_chunk_size(faulty, 512);
            let file = opener.open(&path, true).unwrap();
            opener.sync_dir(dir.path()).unwrap();
            Box::new(file)
        } else {
            let opener = EncryptedOpener::new(faulty, key()).with_tail_sealed_at_sync(tail_at_sync);
            let file = opener.open(&path, true).unwrap();
            opener.sync_dir(dir.path()).unwrap();
            Box::new(file)
        };
        let mut model = Vec::new();
        let mut synced = Vec::new();
        for op in &ops {
            match op {
                Op::Append(data) => {
                    file.append(data).unwrap();
                    model.extend_from_slice(data);
                }
                Op::WriteAt(at, data) => {
                    let at = *at as usize;
                    if data.is_empty() || (compress && at < model.len()) {
                        continue;
                    }
                    file.write_at(at as u64, data).unwrap();
                    if model.len() < at + data.len() {
                        model.resize(at + data.len(), 0);
                    }
                    model[at..at + data.len()].copy_from_slice(data);
                }
                Op::SetLen(len) => {
                    file.set_len(*len).unwrap();
                    let shrinks = (*len as usize) < model.len();
                    model.resize(*len as usize, 0);
                    if shrinks && !compress {
                        // An encrypted file syncs when it shrinks.
                        synced.clone_from(&model);
                    }
                }
                Op::Sync | Op::Reopen => {
                    file.sync_data().unwrap();
                    synced.clone_from(&model);
                }
                Op::Read(..) => {}
            }
        }
        controller.power_cut().unwrap();
        drop(file);
        let after = if compress {
            read_all(&compressed(&path, 512))
        } else {
            read_all(&encrypted(&path))
        };
        prop_assert_eq!(after, synced);
    }
}

#[test]
fn a_torn_append_is_cut_and_the_file_goes_on() {
    for compress in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let path: PathBuf = dir.path().join("f");
        let faulty = FaultyOpener::new(MonolithicOpener, 5);
        let controller = faulty.controller().clone();
        let file: Box<dyn File> = if compress {
            Box::new(
                CompressedOpener::with_chunk_size(faulty, 512)
                    .open(&path, true)
                    .unwrap(),
            )
        } else {
            Box::new(
                EncryptedOpener::new(faulty, key())
                    .open(&path, true)
                    .unwrap(),
            )
        };
        file.append(&[1u8; 5000]).unwrap();
        file.sync_data().unwrap();
        controller.tear_nth_write(1);
        // Big enough to reach the disk at once (several blocks or chunks).
        let err = file.append(&[2u8; 9000]).unwrap_err();
        assert_eq!(
            injected_fault(&err).map(|f| f.kind),
            Some(FaultKind::TornWrite)
        );
        // What the WAL does after a failed append: cut back and go on.
        file.set_len(5000).unwrap();
        file.append(b"after").unwrap();
        file.sync_data().unwrap();
        drop(file);
        let reopened = if compress {
            read_all(&compressed(&path, 512))
        } else {
            read_all(&encrypted(&path))
        };
        let mut want = vec![1u8; 5000];
        want.extend_from_slice(b"after");
        assert_eq!(reopened, want, "compress = {compress}");
    }
}

#[test]
fn openers_delegate_directory_operations() {
    let dir = tempfile::tempdir().unwrap();
    let opener = EncryptedOpener::new(CompressedOpener::new(MonolithicOpener), key());
    let sub = dir.path().join("sub");
    opener.create_dir_all(&sub).unwrap();
    let file = opener.open(&sub.join("a"), true).unwrap();
    file.append(b"stacked").unwrap();
    file.sync_data().unwrap();
    drop(file);
    opener.sync_dir(&sub).unwrap();
    opener.rename(&sub.join("a"), &sub.join("b")).unwrap();
    assert_eq!(opener.list_dir(&sub).unwrap(), vec!["b"]);
    assert_eq!(
        read_all(&opener.open(&sub.join("b"), false).unwrap()),
        b"stacked"
    );
    opener.remove(&sub.join("b")).unwrap();
    assert!(opener.list_dir(&sub).unwrap().is_empty());
}

/// A torn reseal of the last block, whose sectors reach the disk before the
/// power goes, must not lose the bytes of that block synced before: the new
/// version goes to the slot that does not hold the synced one.
#[test]
fn a_torn_reseal_that_survives_a_power_cut_loses_no_synced_byte() {
    for (synced_len, append_len) in [(5000usize, 100usize), (100, 100), (4000, 300), (4096, 10)] {
        for tail_at_sync in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("f");
            let faulty = FaultyOpener::new(MonolithicOpener, 11);
            let controller = faulty.controller().clone();
            controller.set_torn_writes_survive_power_cut(true);
            let opener = EncryptedOpener::new(faulty, key()).with_tail_sealed_at_sync(tail_at_sync);
            let file = opener.open(&path, true).unwrap();
            opener.sync_dir(dir.path()).unwrap();
            file.append(&vec![7u8; synced_len]).unwrap();
            file.sync_data().unwrap();
            // Every write of the next append (the slot write) is torn.
            controller.tear_writes_with_probability(1.0);
            let result = file
                .append(&vec![8u8; append_len])
                .and_then(|_| file.sync_data());
            assert!(result.is_err(), "the torn write must fail");
            assert!(controller.counters().torn_writes > 0);
            controller.power_cut().unwrap();
            drop(file);
            assert_eq!(
                read_all(&encrypted(&path)),
                vec![7u8; synced_len],
                "synced {synced_len}, appended {append_len}, at sync {tail_at_sync}"
            );
        }
    }
}

/// The power-cut model once more, now with torn writes whose sectors
/// survive: appends, writes into the last block, cuts and syncs, each write
/// torn with some probability; after a failed write the file goes on, as a
/// log does. After the power cut, the file holds exactly its last synced
/// contents (version 1 lost synced bytes of the last block here).
fn log_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => bytes().prop_map(Op::Append),
        2 => (0u64..5000, bytes()).prop_map(|(back, data)| Op::WriteAt(back, data)),
        1 => (0u64..6000).prop_map(Op::SetLen),
        2 => Just(Op::Sync),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn synced_bytes_survive_torn_writes_that_reach_the_disk(
        ops in prop::collection::vec(log_op(), 1..40),
        seed in any::<u64>(),
        tail_at_sync in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let faulty = FaultyOpener::new(MonolithicOpener, seed);
        let controller = faulty.controller().clone();
        controller.set_torn_writes_survive_power_cut(true);
        let opener = EncryptedOpener::new(faulty, key()).with_tail_sealed_at_sync(tail_at_sync);
        let file = opener.open(&path, true).unwrap();
        opener.sync_dir(dir.path()).unwrap();
        // The header is durable before the first tear (a torn header of a
        // file never synced is a file that was never created).
        file.append(b"start").unwrap();
        file.sync_data().unwrap();
        controller.tear_writes_with_probability(0.25);
        let mut model: Vec<u8> = b"start".to_vec();
        let mut synced = model.clone();
        for op in &ops {
            match op {
                Op::Append(data) => {
                    if file.append(data).is_ok() {
                        model.extend_from_slice(data);
                    }
                }
                Op::WriteAt(back, data) => {
                    // Only into the last block or past the end: a torn
                    // in-place write of an earlier whole block damages it,
                    // as a torn page of a plain file is damaged.
                    let last_block = model.len().saturating_sub(1) / BLOCK_SIZE * BLOCK_SIZE;
                    let at = (model.len().saturating_sub(*back as usize)).max(last_block);
                    if data.is_empty() || file.write_at(at as u64, data).is_err() {
                        continue;
                    }
                    if model.len() < at + data.len() {
                        model.resize(at + data.len(), 0);
                    }
                    model[at..at + data.len()].copy_from_slice(data);
                }
                Op::SetLen(len) => {
                    let shrinks = (*len as usize) < model.len();
                    if file.set_len(*len).is_ok() {
                        model.resize(*len as usize, 0);
                        if shrinks {
                            // An encrypted file syncs when it shrinks.
                            synced.clone_from(&model);
                        }
                    }
                }
                Op::Sync => {
                    if file.sync_data().is_ok() {
                        synced.clone_from(&model);
                    }
                }
                Op::Read(..) | Op::Reopen => {}
            }
            // What the file says it holds is the model, torn writes or not.
            prop_assert_eq!(file.len().unwrap(), model.len() as u64);
        }
        controller.power_cut().unwrap();
        drop(file);
        prop_assert_eq!(read_all(&encrypted(&path)), synced);
    }
}
