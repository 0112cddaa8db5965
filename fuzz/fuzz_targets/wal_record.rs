//! Decoding one record-log record from arbitrary bytes: never panics, and a
//! record it accepts re-encodes to exactly the bytes it was decoded from.
//! The same bytes, behind a valid file header, go through
//! `pydb_wal::verify`, the walker `pydb inspect`, `check` and `repair` use:
//! it never panics, and damage is only reported where a good record follows.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pydb_wal::record::{
    Decoded, RECORD_HEADER_LEN, decode_file_header, decode_record, encode_file_header,
    encode_record,
};
use pydb_wal::verify::{Step, walk_bytes};

/// Records are decoded as if they started here: the first record of a log.
const OFFSET: u64 = pydb_wal::FILE_HEADER_LEN as u64;

fuzz_target!(|data: &[u8]| {
    let _ = decode_file_header(data);
    if let Decoded::Record { flags, len } = decode_record(data, OFFSET) {
        assert!(len >= RECORD_HEADER_LEN && len <= data.len());
        let mut again = Vec::new();
        encode_record(OFFSET, flags, &data[RECORD_HEADER_LEN..len], &mut again);
        assert_eq!(&again[..], &data[..len], "accepted bytes must round-trip");
    }

    let mut log = encode_file_header().to_vec();
    log.extend_from_slice(data);
    let mut good_bytes = 0u64;
    let report = walk_bytes(&log, &mut |step| {
        if let Step::Record { bytes, .. } = step {
            good_bytes += bytes.len() as u64;
        }
        None
    })
    .expect("a current file header never fails the walk");
    // Records of an unfinished batch are both visited and torn, so the two
    // counts may overlap; each stays inside the input.
    assert!(good_bytes <= data.len() as u64 && report.torn_bytes <= data.len() as u64);
    assert!(report.damage.is_empty() || good_bytes > 0, "damage means a good record follows");
});
