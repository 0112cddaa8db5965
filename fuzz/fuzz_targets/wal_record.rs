//! Decoding one record-log record from arbitrary bytes: never panics, and a
//! record it accepts re-encodes to exactly the bytes it was decoded from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pydb_wal::record::{
    Decoded, RECORD_HEADER_LEN, decode_file_header, decode_record, encode_record,
};

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
});
