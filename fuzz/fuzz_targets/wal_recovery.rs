//! Recovery of a record log from arbitrary bytes: the scanner opens or
//! errors, never panics, and every record it returns is a verified record
//! that really is in the file at the offset it claims.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pydb_file::{File, MonolithicFile};
use pydb_wal::Scanner;
use pydb_wal::record::{Decoded, RECORD_HEADER_LEN, decode_record, encode_file_header};

fuzz_target!(|data: &[u8]| {
    let Some(dir) = pydb_fuzz::scratch_dir() else {
        return;
    };
    let Ok(file) = MonolithicFile::create(dir.join("000000000001.log")) else {
        return;
    };
    // The first byte is a control byte: when even, a valid file header is
    // put in front of the rest, so that the fuzzer reaches the records.
    let Some((control, rest)) = data.split_first() else {
        return;
    };
    let mut bytes = Vec::new();
    if control & 1 == 0 {
        bytes.extend_from_slice(&encode_file_header());
    }
    bytes.extend_from_slice(rest);
    if file.append(&bytes).is_err() {
        return;
    }
    let Ok(mut scanner) = Scanner::new(&file) else {
        return;
    };
    loop {
        match scanner.next_batch() {
            Ok(Some(batch)) => {
                for record in batch {
                    let at = record.offset as usize;
                    let on_disk = &bytes[at..];
                    match decode_record(on_disk, record.offset) {
                        Decoded::Record { len, .. } => {
                            assert_eq!(&on_disk[RECORD_HEADER_LEN..len], &record.payload[..]);
                        }
                        other => panic!("scanner returned an unverified record: {other:?}"),
                    }
                }
            }
            Ok(None) | Err(_) => break,
        }
    }
    let tail = scanner.tail();
    assert!(tail.valid_end <= tail.file_len);
});
