//! Helpers shared by the fuzz targets in `fuzz_targets/`.

use std::path::Path;
use std::sync::LazyLock;

/// One scratch directory for a whole fuzzing run, in memory where the
/// machine has /dev/shm: on ext4, truncating a file and closing it forces a
/// write-back (`auto_da_alloc`), and creating a directory per input would
/// cost more than the code under test.
static SCRATCH: LazyLock<Option<tempfile::TempDir>> = LazyLock::new(|| {
    tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .ok()
});

/// The scratch directory, emptied of what the previous input left, or
/// `None` if none could be created.
pub fn scratch_dir() -> Option<&'static Path> {
    let dir = SCRATCH.as_ref()?.path();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            let _ = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
        }
    }
    Some(dir)
}
