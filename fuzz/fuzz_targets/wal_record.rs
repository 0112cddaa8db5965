//! Decoding one record-log record from arbitrary bytes: never panics, and a
//! record it accepts re-encodes to exactly the bytes it was decoded from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pydb_wal::record::{
    Decoded, RECORD_HEADER_LEN, decode_file_header, decode_record, encode_record,
};

fuzz_target!(|data: &[u8]| {
    let _ = decode_file_header(data);
    if let Decoded::Record { flags, len } = decode_record(data) {
        assert!(len >= RECORD_HEADER_LEN && len <= data.len());
        let mut again = Vec::new();
        encode_record(flags, &data[RECORD_HEADER_LEN..len], &mut again);
        assert_eq!(&again[..], &data[..len], "accepted bytes must round-trip");
    }
});
