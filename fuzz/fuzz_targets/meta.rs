//! Decoding the `PYDB` directory metadata file from arbitrary bytes: never
//! panics, and metadata it accepts in the current format version re-encodes
//! to exactly the same bytes (an older version is read, then refused or
//! rewritten by `Db::open`, and `encode` always writes the current
//! version). Version 3 files carry flags and, when encrypted, a wrapped key.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use pydb::meta::{META_FORMAT_VERSION, decode, encode};

fuzz_target!(|data: &[u8]| {
    if let Ok(meta) = decode(Path::new("PYDB"), data)
        && meta.format_version == META_FORMAT_VERSION
    {
        let again = encode(&meta).expect("a decoded engine is a persistent one");
        assert_eq!(&again[..], data, "accepted bytes must round-trip");
    }
});
