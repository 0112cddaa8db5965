//! Opening the log engine on arbitrary segment files: it opens or errors,
//! never panics, and every value a scan or get returns is one that a record
//! of the input holds under a verified checksum. A value whose checksum did
//! not verify must never come back as data.
//!
//! Input layout: a control byte, then the bytes of the segments. Bit 0 of
//! the control byte clear: a valid file header is put in front of the first
//! segment (so the fuzzer reaches the records). Bit 1 set: the rest is split
//! into two segments at the position given by the next two bytes.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use pydb_storage::log::SEGMENT_EXTENSION;
use pydb_storage::{AppendOnlyLogStorage, KeyRange, LogOptions, StorageEngine};
use pydb_wal::SyncPolicy;
use pydb_wal::record::{Decoded, RECORD_HEADER_LEN, decode_record, encode_file_header};

fn options() -> LogOptions {
    LogOptions {
        sync_policy: SyncPolicy::Never,
        max_segment_size: 1 << 20,
        max_key_size: 1 << 10,
        max_value_size: 1 << 16,
        background_compaction: false,
        compaction_interval: Duration::from_secs(60),
        ..LogOptions::default()
    }
}

/// Whether `segment` holds, at `offset`, a verified record of `len` bytes
/// whose payload ends with `value`.
fn verified_record_holds(segment: &[u8], offset: u64, len: u32, value: &[u8]) -> bool {
    let Some(bytes) = usize::try_from(offset).ok().and_then(|o| segment.get(o..)) else {
        return false;
    };
    match decode_record(bytes, offset) {
        Decoded::Record { len: got, .. } if got == len as usize => {
            bytes[RECORD_HEADER_LEN..got].ends_with(value)
        }
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(dir) = pydb_fuzz::scratch_dir() else {
        return;
    };
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let (first, second) = if control & 2 != 0 && rest.len() >= 2 {
        let at = usize::from(u16::from_le_bytes([rest[0], rest[1]]));
        let rest = &rest[2..];
        let at = at.min(rest.len());
        (&rest[..at], Some(&rest[at..]))
    } else {
        (rest, None)
    };
    let mut segments = Vec::new();
    let mut one = Vec::new();
    if control & 1 == 0 {
        one.extend_from_slice(&encode_file_header());
    }
    one.extend_from_slice(first);
    segments.push(one);
    if let Some(second) = second {
        let mut two = encode_file_header().to_vec();
        two.extend_from_slice(second);
        segments.push(two);
    }
    for (i, bytes) in segments.iter().enumerate() {
        let path = pydb_file::segment_path(dir, i as u64 + 1, SEGMENT_EXTENSION);
        if std::fs::write(&path, bytes).is_err() {
            return;
        }
    }
    let Ok(engine) = AppendOnlyLogStorage::open(dir, options()) else {
        return;
    };
    let Ok(scan) = engine.scan(KeyRange::all()) else {
        return;
    };
    for item in scan {
        let Ok((key, value)) = item else { continue };
        let location = engine
            .location(&key)
            .expect("a scanned key is in the index");
        let segment = usize::try_from(location.segment)
            .ok()
            .and_then(|id| segments.get(id.checked_sub(1)?))
            .expect("the value lives in one of the input segments");
        assert!(
            verified_record_holds(segment, location.offset, location.len, &value),
            "a value that no verified record of the input holds"
        );
        if let Ok(Some(got)) = engine.get(&key) {
            assert_eq!(got, value, "get and scan disagree");
        }
    }
});
