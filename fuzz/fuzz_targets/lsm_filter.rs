//! Decoding an LSM Bloom filter block from arbitrary bytes: never panics,
//! and a filter it accepts answers lookups without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pydb_storage::lsm::bloom::{BloomFilter, hash};

fuzz_target!(|data: &[u8]| {
    if let Ok(filter) = BloomFilter::decode(data) {
        let _ = filter.may_contain(hash(data));
        let _ = filter.may_contain(hash(b"key"));
        assert_eq!(filter.encode(), data, "accepted bytes must round-trip");
    }
});
