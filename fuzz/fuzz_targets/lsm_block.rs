//! Decoding an LSM data or index block (framing, CRC, lz4, prefix
//! compression, restart points) from arbitrary bytes: never panics, and
//! what it accepts is in table order. The CRC is recomputed over the input
//! so that the fuzzer gets past it and reaches the entry decoder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pydb_storage::lsm::decode_block;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    // As written: body, compression byte (0 or 1), crc32.
    let mut framed = body.to_vec();
    framed.push(kind & 1);
    let crc = crc32(&framed);
    framed.extend_from_slice(&crc.to_le_bytes());
    if let Ok(entries) = decode_block(&framed) {
        for pair in entries.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            assert!(a.0 < b.0 || (a.0 == b.0 && a.1 > b.1), "accepted entries out of order");
        }
    }
    // And the raw input, CRC included, must not panic either.
    let _ = decode_block(data);
});

/// CRC-32 (IEEE), bit by bit: the fuzz crate does not depend on crc32fast.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}
