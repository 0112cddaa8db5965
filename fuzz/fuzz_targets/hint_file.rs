//! Decoding a hint file from arbitrary bytes: never panics, and a hint it
//! accepts re-encodes to exactly the bytes it was decoded from.
//!
//! The segment id and length the hint is checked against are taken from the
//! input's own header fields, so that the fuzzer gets past that check and
//! reaches the entries.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pydb_storage::log::hint::{SEGMENT_ID_OFFSET, SEGMENT_LEN_OFFSET, decode_hint, encode_hint};

fn u64_at(data: &[u8], at: usize) -> u64 {
    data.get(at..at + 8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

fuzz_target!(|data: &[u8]| {
    let segment_id = u64_at(data, SEGMENT_ID_OFFSET);
    let segment_len = u64_at(data, SEGMENT_LEN_OFFSET);
    if let Ok((header, entries)) = decode_hint(data, segment_id, segment_len) {
        assert_eq!(
            encode_hint(&header, &entries),
            data,
            "accepted bytes must round-trip"
        );
    }
});
