//! Decoding LSM manifest edits from arbitrary bytes: never panics, and an
//! edit it accepts re-encodes to an edit that decodes the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pydb_storage::lsm::{ManifestState, VersionEdit};

fuzz_target!(|data: &[u8]| {
    if let Ok(edit) = VersionEdit::decode(data) {
        let again = VersionEdit::decode(&edit.encode()).expect("a re-encoded edit decodes");
        assert_eq!(again, edit);
        let mut state = ManifestState::new();
        let _ = state.apply(&edit);
    }
});
