//! Opening the B+tree engine on arbitrary files: it opens or errors, never
//! panics (no unchecked slot, offset or link, no endless walk), and every
//! short value a get or scan returns appears verbatim in the input bytes: a
//! page or WAL record that did not verify must never come back as data.
//!
//! Input layout: a control byte, then the bytes of one file. Bit 0 of the
//! control byte clear: the rest is the page file `pages`, and there is no
//! WAL. Bit 0 set: a fresh, empty database is created, and the rest is
//! written, behind a valid file header, as its first WAL segment, so that
//! recovery replays whatever the fuzzer made of it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pydb_storage::btree::wal::segment_path;
use pydb_storage::btree::{PAGE_FILE_NAME, SyncPolicy};
use pydb_storage::{BTreeOptions, BTreeStorage, KeyRange, StorageEngine};
use pydb_wal::record::encode_file_header;

/// Values longer than this may come from overflow chains (several pages
/// joined), so they are not expected verbatim in the input.
const CHECKED_VALUE_LEN: usize = 64;

fn options() -> BTreeOptions {
    BTreeOptions {
        page_size: 512,
        pool_bytes: 32 * 512,
        sync: SyncPolicy::Never,
        ..BTreeOptions::default()
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

fuzz_target!(|data: &[u8]| {
    let Some(dir) = pydb_fuzz::scratch_dir() else {
        return;
    };
    let Some((control, rest)) = data.split_first() else {
        return;
    };
    if control & 1 == 0 {
        if std::fs::write(dir.join(PAGE_FILE_NAME), rest).is_err() {
            return;
        }
    } else {
        match BTreeStorage::open(dir, options()) {
            Ok(engine) => drop(engine),
            Err(_) => return,
        }
        let mut segment = encode_file_header().to_vec();
        segment.extend_from_slice(rest);
        if std::fs::write(segment_path(dir, 1), segment).is_err() {
            return;
        }
    }
    let Ok(engine) = BTreeStorage::open(dir, options()) else {
        return;
    };
    let Ok(scan) = engine.scan(KeyRange::all()) else {
        return;
    };
    for item in scan.take(64) {
        let Ok((key, value)) = item else { break };
        if value.len() <= CHECKED_VALUE_LEN {
            assert!(
                contains(rest, &value),
                "value {value:?} of key {key:?} is not in the input"
            );
        }
        if let Ok(Some(again)) = engine.get(&key) {
            assert_eq!(again, value, "get and scan disagree on {key:?}");
        }
    }
});
