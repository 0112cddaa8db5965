//! Decoding a log-engine entry (the payload of one segment record) from
//! arbitrary bytes: never panics, and an entry it accepts re-encodes to
//! exactly the bytes it was decoded from.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use pydb_storage::log::entry::{decode_entry, encode_entry};

fuzz_target!(|data: &[u8]| {
    let bytes = Bytes::copy_from_slice(data);
    if let Ok(entry) = decode_entry(&bytes) {
        let mut again = Vec::new();
        encode_entry(entry.seq, entry.kind, &entry.key, &entry.value, &mut again);
        assert_eq!(&again[..], data, "accepted bytes must round-trip");
    }
});
