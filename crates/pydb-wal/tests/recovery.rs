//! Guards recovery: a log cut at any byte yields exactly its complete
//! batches and is truncated there; damage anywhere is reported as
//! `Corrupted` at the damaged record or dropped with the torn tail, and never
//! comes back as a changed payload.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod common;

use common::{MemFile, Written, assert_batches, build_log, sample_batches, scan_all};
use pydb_file::Error as FileError;
use pydb_file::{DirLock, File, FileOpener, MmapOpener, MonolithicOpener};
use pydb_wal::record::{FILE_CRC_OFFSET, FILE_MAGIC, FILE_VERSION_OFFSET};
use pydb_wal::{
    Error, FILE_HEADER_LEN, FORMAT_VERSION, LogWriter, Scanner, SyncPolicy, read_record_at,
    read_record_exact,
};
use rstest::rstest;
use std::sync::Arc;

const HEADER: u64 = FILE_HEADER_LEN as u64;

/// The batches wholly before `cut`, and where the valid log ends.
fn expected_before(written: &[Written], cut: u64) -> (&[Written], u64) {
    if cut < HEADER {
        return (&[], 0);
    }
    let complete = written.iter().take_while(|w| w.end <= cut).count();
    let valid_end = complete.checked_sub(1).map_or(HEADER, |i| written[i].end);
    (&written[..complete], valid_end)
}

/// A log whose writer put zeros ahead of its end (a preallocated file) and
/// crashed: zeros alone after the valid end are not a torn write, a torn
/// batch before them is, counted whole with its zeros; both are cut off.
#[rstest]
#[case::zeros_only(0)]
#[case::a_torn_batch_then_zeros(5)]
fn zeros_after_the_end_are_cut_and_counted_apart_from_a_torn_write(#[case] torn: usize) {
    let (full, written) = build_log(&sample_batches(3));
    let (last, kept) = written.split_last().unwrap();
    let end = last.start as usize;
    let zeros = 4096;
    // The log up to its last batch, that batch's first bytes, then zeros.
    let mut bytes = full[..end + torn].to_vec();
    bytes.resize(bytes.len() + zeros, 0);
    let file = MemFile::new("preallocated", bytes);
    assert_batches(&scan_all(&file).unwrap(), kept, "before the cut");
    let cut = Scanner::new(&file).unwrap().truncate_torn_tail().unwrap();
    assert_eq!(cut.tail.valid_end, end as u64);
    assert_eq!(cut.tail.file_len, (end + torn + zeros) as u64);
    let expected_torn = if torn == 0 { 0 } else { torn + zeros };
    assert_eq!(cut.torn_bytes, expected_torn as u64);
    // The torn batch's bytes may end in zeros of their own: the zeros
    // counted apart are those after its last nonzero byte.
    let torn_nonzero = full[end..end + torn]
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |i| i + 1);
    assert_eq!(cut.zero_bytes, (torn - torn_nonzero + zeros) as u64);
    assert_eq!(file.len().unwrap(), end as u64);
}

#[test]
fn a_cut_at_every_byte_keeps_exactly_the_complete_batches() {
    let (log, written) = build_log(&sample_batches(3));
    for cut in 0..=log.len() as u64 {
        let file = MemFile::new("cut", log[..cut as usize].to_vec());
        let (expected, valid_end) = expected_before(&written, cut);
        let context = format!("cut at {cut}");
        let batches = scan_all(&file).unwrap_or_else(|e| panic!("{context}: {e}"));
        assert_batches(&batches, expected, &context);
        let found = Scanner::new(&file).unwrap().truncate_torn_tail().unwrap();
        assert_eq!(found.tail.valid_end, valid_end, "{context}");
        assert_eq!(found.tail.file_len, cut, "{context}");
        assert_eq!(
            file.len().unwrap(),
            valid_end,
            "{context}: truncated length"
        );
        // The recovered log takes new appends and scans clean.
        let writer = LogWriter::new(file, SyncPolicy::Never).unwrap();
        writer.append(b"after recovery").unwrap();
        let batches = scan_all(writer.file()).unwrap();
        assert_eq!(batches.len(), expected.len() + 1, "{context}");
        assert_eq!(
            batches.last().unwrap()[0].payload.as_ref(),
            b"after recovery"
        );
    }
}

/// What a scan of a log damaged at byte `at` must give: an error naming the
/// damaged record, or (damage in the last record: a torn tail) every batch
/// but the last.
fn check_damage(log: &[u8], written: &[Written], at: usize, damaged: Vec<u8>) {
    let file = MemFile::new("damaged", damaged);
    let context = format!("damage at byte {at}");
    let result = scan_all(&file);
    let record_start = written
        .iter()
        .flat_map(|w| w.record_offsets.iter().copied())
        .rfind(|&offset| offset <= at as u64);
    let last_record = written
        .last()
        .and_then(|w| w.record_offsets.last().copied());
    match record_start {
        None => {
            // Inside the file header.
            let err = result.expect_err(&context);
            assert!(
                matches!(&err, Error::File(FileError::Corrupted { path: f, offset: 0, .. }) if f == file.path()),
                "{context}: {err}"
            );
        }
        Some(start) if Some(start) == last_record => {
            // The last record: indistinguishable from a torn tail.
            let batches = result.unwrap_or_else(|e| panic!("{context}: {e}"));
            assert_batches(&batches, &written[..written.len() - 1], &context);
            let cut = Scanner::new(&file).unwrap().truncate_torn_tail().unwrap();
            assert_eq!(
                cut.tail.valid_end,
                written[written.len() - 1].start,
                "{context}"
            );
        }
        Some(start) => {
            let err = result.expect_err(&context);
            assert!(
                matches!(&err, Error::File(FileError::Corrupted { path: f, offset, .. }) if f == file.path() && *offset == start),
                "{context}: expected Corrupted at {start}, got {err}"
            );
            // Recovery refuses too, and leaves the file alone.
            let err = Scanner::new(&file)
                .unwrap()
                .truncate_torn_tail()
                .unwrap_err();
            assert!(
                matches!(err, Error::File(FileError::Corrupted { .. })),
                "{context}: {err}"
            );
            assert_eq!(file.len().unwrap(), log.len() as u64, "{context}");
        }
    }
}

#[test]
fn every_bit_flip_is_reported_or_dropped_with_the_tail() {
    let (log, written) = build_log(&sample_batches(1));
    for at in 0..log.len() {
        for bit in 0..8 {
            let mut damaged = log.clone();
            damaged[at] ^= 1 << bit;
            check_damage(&log, &written, at, damaged);
        }
    }
}

#[test]
fn every_byte_overwrite_of_a_larger_log_is_reported_or_dropped_with_the_tail() {
    let (log, written) = build_log(&sample_batches(40));
    assert!(log.len() > 4000, "the larger log should be larger");
    let headers: Vec<u64> = written
        .iter()
        .flat_map(|w| w.record_offsets.iter().copied())
        .collect();
    let in_a_header = |at: u64| at < HEADER || headers.iter().any(|&h| (h..h + 9).contains(&at));
    for at in 0..log.len() {
        let mut damaged = log.clone();
        damaged[at] = !damaged[at];
        check_damage(&log, &written, at, damaged);
        // Headers (checksums, lengths, flags) get a second kind of damage.
        if in_a_header(at as u64) {
            let mut damaged = log.clone();
            damaged[at] = damaged[at].wrapping_add(0x5B);
            check_damage(&log, &written, at, damaged);
        }
    }
}

fn open_any(kind: &str, path: &std::path::Path, create: bool) -> Arc<dyn File> {
    match kind {
        "monolithic" => Arc::new(MonolithicOpener.open(path, create).unwrap()),
        "mmap" => {
            let dir = path.parent().unwrap();
            let opener = MmapOpener::new(&DirLock::acquire(dir).unwrap());
            Arc::new(opener.open(path, create).unwrap())
        }
        other => panic!("unknown file kind {other}"),
    }
}

#[rstest]
#[case::monolithic("monolithic")]
#[case::mmap("mmap")]
fn a_bad_record_in_the_middle_is_corruption_with_its_offset(#[case] kind: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let (log, written) = build_log(&sample_batches(2));
    std::fs::write(&path, &log).unwrap();
    // Damage the payload of the second record of batch 2 (0-based).
    let target = written[2].record_offsets[1];
    let mut damaged = log.clone();
    damaged[target as usize + pydb_wal::RECORD_HEADER_LEN + 3] ^= 0x40;
    std::fs::write(&path, &damaged).unwrap();

    let file = open_any(kind, &path, false);
    let mut scanner = Scanner::new(&file).unwrap();
    let first = scanner.next_batch().unwrap().unwrap();
    assert_eq!(first[0].payload.as_ref(), written[0].payloads[0].as_slice());
    scanner.next_batch().unwrap().unwrap();
    let err = scanner.next_batch().unwrap_err();
    match &err {
        Error::File(FileError::Corrupted {
            path: f, offset, ..
        }) => {
            assert_eq!(f, &path);
            assert_eq!(*offset, target);
        }
        other => panic!("expected Corrupted, got {other}"),
    }
    let err = Scanner::new(&file)
        .unwrap()
        .truncate_torn_tail()
        .unwrap_err();
    assert!(
        matches!(err, Error::File(FileError::Corrupted { offset, .. }) if offset == target),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&path).unwrap(),
        damaged,
        "corruption must not be truncated away"
    );
}

#[rstest]
#[case::monolithic("monolithic")]
#[case::mmap("mmap")]
fn an_empty_file_and_a_file_cut_inside_its_header_recover_as_empty_logs(#[case] kind: &str) {
    let dir = tempfile::tempdir().unwrap();
    let header = pydb_wal::record::encode_file_header();
    for cut in [0, 1, 8, FILE_HEADER_LEN - 1] {
        let path = dir.path().join(format!("log-{cut}"));
        std::fs::write(&path, &header[..cut]).unwrap();
        let file = open_any(kind, &path, false);
        assert!(scan_all(&file).unwrap().is_empty(), "cut {cut}");
        let found = Scanner::new(&file).unwrap().truncate_torn_tail().unwrap();
        assert_eq!((found.tail.valid_end, found.tail.file_len), (0, cut as u64));
        assert_eq!(file.len().unwrap(), 0);
        let writer = LogWriter::new(file, SyncPolicy::Always).unwrap();
        writer.append(b"first").unwrap();
        drop(writer);
        let file = open_any(kind, &path, false);
        let batches = scan_all(&file).unwrap();
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0][0].payload.as_ref(), b"first");
        assert_eq!(batches[0][0].offset, HEADER);
    }
}

fn header_with(magic: [u8; 8], version: u32) -> Vec<u8> {
    let mut header = vec![0u8; FILE_HEADER_LEN];
    header[..8].copy_from_slice(&magic);
    header[FILE_VERSION_OFFSET..FILE_CRC_OFFSET].copy_from_slice(&version.to_le_bytes());
    let crc = crc32fast::hash(&header[..FILE_CRC_OFFSET]);
    header[FILE_CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
    header
}

#[test]
fn a_newer_version_is_unsupported_not_corrupted() {
    let file = MemFile::new("newer", header_with(FILE_MAGIC, FORMAT_VERSION + 1));
    let err = Scanner::new(&file).unwrap_err();
    match err {
        Error::File(FileError::UnsupportedVersion {
            found, supported, ..
        }) => {
            assert_eq!(found, FORMAT_VERSION + 1);
            assert_eq!(supported, FORMAT_VERSION);
        }
        other => panic!("expected UnsupportedVersion, got {other}"),
    }
}

#[test]
fn a_wrong_magic_is_corruption_at_offset_zero() {
    let mut log = header_with(*b"SQLite f", FORMAT_VERSION);
    log.extend_from_slice(&[0u8; 100]);
    let file = MemFile::new("other", log);
    let err = Scanner::new(&file).unwrap_err();
    assert!(
        matches!(err, Error::File(FileError::Corrupted { offset: 0, .. })),
        "{err}"
    );
    // A header whose checksum does not match is corruption as well.
    let mut bad = header_with(FILE_MAGIC, FORMAT_VERSION);
    bad[FILE_CRC_OFFSET] ^= 1;
    let err = Scanner::new(&MemFile::new("bad crc", bad)).unwrap_err();
    assert!(
        matches!(err, Error::File(FileError::Corrupted { offset: 0, .. })),
        "{err}"
    );
}

#[test]
fn point_reads_of_damaged_records_are_corruption_never_a_wrong_payload() {
    let (log, written) = build_log(&sample_batches(2));
    let all: Vec<(u64, &Vec<u8>)> = written
        .iter()
        .flat_map(|w| w.record_offsets.iter().copied().zip(&w.payloads))
        .collect();
    // Undamaged: every record reads back, both ways.
    let file = MemFile::new("log", log.clone());
    for &(offset, payload) in &all {
        let len = pydb_wal::record_len(payload.len()) as usize;
        assert_eq!(
            read_record_at(&file, offset).unwrap().payload.as_ref(),
            payload.as_slice()
        );
        assert_eq!(
            read_record_exact(&file, offset, len)
                .unwrap()
                .payload
                .as_ref(),
            payload.as_slice()
        );
        // A wrong length from a stale index is caught.
        for wrong in [len - 1, len + 1] {
            let err = read_record_exact(&file, offset, wrong).unwrap_err();
            assert!(
                matches!(err, Error::File(FileError::Corrupted { .. })),
                "len {wrong} at {offset}: {err}"
            );
        }
    }
    // An offset that is not the start of a record is never read as one.
    let starts: Vec<u64> = all.iter().map(|&(offset, _)| offset).collect();
    for offset in HEADER..log.len() as u64 + 4 {
        if starts.contains(&offset) {
            continue;
        }
        let err = read_record_at(&file, offset).unwrap_err();
        assert!(
            matches!(err, Error::File(FileError::Corrupted { offset: o, .. }) if o == offset),
            "offset {offset}: {err}"
        );
    }
    // Every byte of a record damaged: both reads report it.
    let (offset, payload) = all[3];
    let len = pydb_wal::record_len(payload.len()) as usize;
    for at in offset as usize..offset as usize + len {
        let mut damaged = log.clone();
        damaged[at] ^= 0x10;
        let file = MemFile::new("damaged", damaged);
        let err = read_record_at(&file, offset).unwrap_err();
        assert!(
            matches!(err, Error::File(FileError::Corrupted { offset: o, .. }) if o == offset),
            "byte {at}: {err}"
        );
        let err = read_record_exact(&file, offset, len).unwrap_err();
        assert!(
            matches!(err, Error::File(FileError::Corrupted { offset: o, .. }) if o == offset),
            "byte {at}: {err}"
        );
    }
}

#[test]
fn scanning_from_an_offset_past_the_end_is_corruption_not_a_file_extension() {
    let (log, written) = build_log(&sample_batches(1));
    let file = MemFile::new("log", log.clone());
    // From a batch boundary: the batches after it.
    let batches = {
        let mut scanner = Scanner::from_offset(&file, written[5].start).unwrap();
        let mut batches = Vec::new();
        while let Some(batch) = scanner.next_batch().unwrap() {
            batches.push(batch);
        }
        batches
    };
    assert_batches(&batches, &written[5..], "from batch 5");
    // From the very end: nothing, and nothing torn.
    let cut = Scanner::from_offset(&file, log.len() as u64)
        .unwrap()
        .truncate_torn_tail()
        .unwrap();
    assert_eq!(cut.torn_bytes, 0);
    // Past the end: the log is shorter than the caller believes.
    let err = Scanner::from_offset(&file, log.len() as u64 + 100).unwrap_err();
    assert!(
        matches!(err, Error::File(FileError::Corrupted { offset, .. }) if offset == log.len() as u64 + 100),
        "{err}"
    );
    assert_eq!(
        file.len().unwrap(),
        log.len() as u64,
        "the file must not grow"
    );
}

#[test]
fn a_writer_refuses_a_file_that_was_not_recovered() {
    let header = pydb_wal::record::encode_file_header();
    // Cut inside its header: writing records behind it would make them
    // unreadable (the next scan would see a bad header).
    let err = LogWriter::new(
        MemFile::new("short", header[..9].to_vec()),
        SyncPolicy::Never,
    )
    .unwrap_err();
    assert!(
        matches!(err, Error::File(FileError::Corrupted { offset: 0, .. })),
        "{err}"
    );
    let mut other = vec![0u8; 64];
    other[..8].copy_from_slice(b"NOT-PYDB");
    let err = LogWriter::new(MemFile::new("other", other), SyncPolicy::Never).unwrap_err();
    assert!(
        matches!(err, Error::File(FileError::Corrupted { offset: 0, .. })),
        "{err}"
    );
    // A recovered log is fine.
    let (log, written) = build_log(&sample_batches(1));
    let writer = LogWriter::new(MemFile::new("log", log), SyncPolicy::Never).unwrap();
    assert_eq!(writer.end(), written.last().unwrap().end);
}

/// The search for "a valid record after the bad one" also looks inside the
/// torn record's own payload. A payload that embeds an encoded record (here:
/// the first record of another log, as a user's value might) must not turn
/// an ordinary torn tail into `Corrupted`: each record's checksum covers its
/// own offset, so the embedded record does not verify where it lies.
#[test]
fn a_torn_record_whose_payload_embeds_a_record_is_still_a_torn_tail() {
    let mut embedded = Vec::new();
    let first_record = pydb_wal::FILE_HEADER_LEN as u64;
    pydb_wal::record::encode_record(first_record, 0, b"inner", &mut embedded);
    let mut payload = vec![1u8; 10];
    payload.extend_from_slice(&embedded);
    payload.extend_from_slice(&[2u8; 50]);
    let (log, written) = build_log(&[vec![b"first".to_vec()], vec![payload]]);
    // Cut inside the second record, after the embedded one.
    let file = MemFile::new("cut", log[..log.len() - 20].to_vec());
    let batches = scan_all(&file).unwrap();
    assert_batches(&batches, &written[..1], "torn second record");
}
