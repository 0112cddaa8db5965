//! Decoding the `PYDB` directory metadata file from arbitrary bytes: never
//! panics, and metadata it accepts re-encodes to exactly the same bytes.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use pydb::meta::{decode, encode};

fuzz_target!(|data: &[u8]| {
    if let Ok(meta) = decode(Path::new("PYDB"), data) {
        let again = encode(&meta).expect("a decoded engine is a persistent one");
        assert_eq!(&again[..], data, "accepted bytes must round-trip");
    }
});
