//! Repairing what [`super::verify`] finds, with the engine's own code.
//!
//! A hint file is only an index of its segment: the segment is the truth.
//! So a hint that fails its checks is never patched; it is rebuilt from its
//! segment exactly as opening rebuilds it (`scan_sealed`, then
//! [`hint::write_hint`]: a temporary file, synced, renamed over the old
//! name, directory synced). The hint of the *last* segment is not rebuilt:
//! that segment may still grow, and the engine writes its hint on a clean
//! close; the caller moves the bad one aside and opening scans the segment.

use std::path::Path;

use pydb_file::MonolithicOpener;

use super::SEGMENT_EXTENSION;
use super::hint::{self, HintHeader};
use super::recovery;
use crate::Result;

/// Rebuilds the hint of the sealed segment `id` of `dir` from the segment,
/// replacing the hint file if there is one. Fails (with the segment's file
/// and offset) if the segment itself is damaged: then there is nothing to
/// rebuild from, and the segment needs repair first. Returns the header
/// written.
pub fn rebuild_hint(dir: &Path, id: u64) -> Result<HintHeader> {
    let opener = MonolithicOpener;
    let path = pydb_file::segment_path(dir, id, SEGMENT_EXTENSION);
    let file = pydb_file::FileOpener::open(&opener, &path, false)?;
    let (header, entries) = recovery::scan_sealed(&path, id, &file)?;
    hint::write_hint(&opener, dir, &header, &entries)?;
    Ok(header)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

    use super::*;
    use crate::StorageEngine;
    use crate::log::verify::verify_dir;
    use crate::log::{AppendOnlyLogStorage, LogOptions};

    #[test]
    fn a_rebuilt_hint_is_the_one_the_engine_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let options = LogOptions {
            max_segment_size: 300,
            background_compaction: false,
            ..LogOptions::default()
        };
        let engine = AppendOnlyLogStorage::open(dir.path(), options).unwrap();
        let mut i = 0u32;
        while engine.segment_ids().len() < 2 {
            engine.set(&i.to_le_bytes(), &[b'v'; 30]).unwrap();
            i += 1;
        }
        drop(engine);
        let first = pydb_file::list_ids(dir.path(), SEGMENT_EXTENSION).unwrap()[0];
        let path = hint::hint_path(dir.path(), first);
        let written = std::fs::read(&path).unwrap();
        std::fs::write(&path, b"garbage").unwrap();
        assert_eq!(verify_dir(dir.path()).unwrap().bad_hints().count(), 1);
        rebuild_hint(dir.path(), first).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), written);
        assert!(verify_dir(dir.path()).unwrap().is_ok());
    }
}
