//! Pins the record-log format byte by byte, as `docs/formats.md` draws it.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod common;

use common::MemFile;
use pydb_wal::{LogWriter, SyncPolicy};

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn a_log_of_one_single_record_and_one_batch_of_two_is_byte_for_byte_as_documented() {
    let writer = LogWriter::new(MemFile::new("log", Vec::new()), SyncPolicy::Never).unwrap();
    let single = writer.append(b"hi").unwrap();
    let batch = writer.append_batch(&[b"a", b""]).unwrap();
    assert_eq!((single.start, single.end), (16, 27));
    assert_eq!((batch.start, batch.end), (27, 46));
    let bytes = writer.file().bytes();
    // File header: magic "PYDB-LOG", version 1, CRC-32 of the 12 bytes before
    // (the expected CRCs were computed independently with Python's zlib.crc32).
    assert_eq!(
        hex(&bytes[..16]),
        "50 59 44 42 2d 4c 4f 47 01 00 00 00 96 c0 d1 6e"
    );
    // Record: crc, len = 2, flags = 0, "hi".
    assert_eq!(hex(&bytes[16..27]), "d2 b5 64 9d 02 00 00 00 00 68 69");
    // Batch: "a" with BATCH_CONTINUES (flags = 1), then "" ending the batch.
    assert_eq!(hex(&bytes[27..37]), "6c cd c3 10 01 00 00 00 01 61");
    assert_eq!(hex(&bytes[37..46]), "64 be 25 a1 00 00 00 00 00");
    // Each CRC covers the record's offset (u64 LE), then the bytes from the
    // length to the end of the payload.
    for (start, end) in [(16usize, 27usize), (27, 37), (37, 46)] {
        let stored = u32::from_le_bytes(bytes[start..start + 4].try_into().unwrap());
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&(start as u64).to_le_bytes());
        hasher.update(&bytes[start + 4..end]);
        assert_eq!(stored, hasher.finalize());
    }
}

#[test]
fn append_batch_with_writes_the_same_bytes_as_append_batch() {
    let payloads: [&[u8]; 3] = [b"hi", b"a", b""];
    let by_slices = LogWriter::new(MemFile::new("a", Vec::new()), SyncPolicy::Never).unwrap();
    by_slices.append(payloads[0]).unwrap();
    let batch = by_slices.append_batch(&payloads[1..]).unwrap();

    let by_closure = LogWriter::new(MemFile::new("b", Vec::new()), SyncPolicy::Never).unwrap();
    // A buffer with stale bytes in it: the append must clear it first.
    let mut buf = b"stale".to_vec();
    let single = by_closure
        .append_batch_with(&mut buf, 1, |_, out| out.extend_from_slice(payloads[0]))
        .unwrap();
    assert_eq!((single.start, single.end), (16, 27));
    let with = by_closure
        .append_batch_with(&mut buf, 2, |i, out| out.extend_from_slice(payloads[1 + i]))
        .unwrap();
    assert_eq!(with, batch);
    assert_eq!(
        hex(&by_closure.file().bytes()),
        hex(&by_slices.file().bytes())
    );
    assert_eq!(by_closure.stats(), by_slices.stats());
}
