//! What B+tree recovery would decide about a closed directory, read-only,
//! for `pydb check` and `pydb inspect`: the rules live here, next to
//! recovery, so that the tools cannot drift from it.
//!
//! - [`torn_tail_rule`]: a torn batch is an interrupted write only at the
//!   end of the *last* WAL segment; anywhere else it is damage (recovery
//!   refuses to open).
//! - [`pages_with_wal_images`]: a page that fails its checks is not damage
//!   when a WAL segment replayed on open holds a full image of it: recovery
//!   installs the image without reading the page (a torn page write).

use std::collections::BTreeSet;
use std::path::Path;

use pydb_file::MonolithicFile;

use super::page::PageId;
use super::wal::{WalRecord, decode_record, segment_path};
use crate::Error;

/// The error recovery gives for a WAL segment at `path` whose valid batches
/// end at `valid_end` and are followed by `torn_bytes` bytes, or `None` if
/// recovery accepts it. Only the last segment can end in a torn batch:
/// older ones were synced in full before the next one was created.
pub fn torn_tail_rule(
    path: &Path,
    valid_end: u64,
    torn_bytes: u64,
    is_last: bool,
) -> Option<Error> {
    (torn_bytes > 0 && !is_last).then(|| {
        Error::corrupted(
            path,
            valid_end,
            "damaged batch in a WAL segment that is not the last",
        )
    })
}

/// The pages that the WAL segments of the database in `dir` replayed on
/// open (from `from_segment` on,
/// as long as they follow each other) hold full images of. Only complete
/// batches count: recovery drops a torn one. A segment that cannot be
/// scanned ends the search; its own check reports why.
pub fn pages_with_wal_images(dir: &Path, from_segment: u64, page_size: usize) -> BTreeSet<PageId> {
    let mut pages = BTreeSet::new();
    let mut segment = from_segment;
    loop {
        let Ok(file) = MonolithicFile::open_read_only(segment_path(dir, segment)) else {
            break;
        };
        let Ok(mut scanner) = pydb_wal::Scanner::new(&file) else {
            break;
        };
        while let Ok(Some(batch)) = scanner.next_batch() {
            for record in batch {
                if let Ok(WalRecord::Image { page, .. }) = decode_record(&record.payload, page_size)
                {
                    pages.insert(page);
                }
            }
        }
        segment += 1;
    }
    pages
}
