//! `SegmentedFile`: one logical log spread over a directory of segment files.
//!
//! An append-only store that never rewrites in place still has to give space
//! back. It does so by whole files: the log is cut into *segments*, each a
//! plain [`File`] named by a zero-padded id and an extension
//! (`000000000007.log`). Exactly one segment, the one with the highest id,
//! is *active* and takes appends; the others are *sealed* and only read.
//! Reclaiming space means writing the live data of some sealed segments into
//! new ones and removing the old files whole (compaction, in
//! `pydb-storage`).
//!
//! ## Invariants
//!
//! - Ids only grow. A new segment gets an id above every id handed out
//!   before, including ids that were [reserved](SegmentedFile::reserve_ids)
//!   for compaction output and never used. So the active segment is always
//!   the one with the highest id, on open as well as while running.
//! - An append never spans two segments. When an append would push the
//!   active segment past the size limit, the segment is rolled first; a
//!   single append larger than the limit goes alone into a fresh segment.
//! - Creating and removing a segment is followed by a sync of the directory
//!   before the operation returns, so that the set of segments a reopen
//!   finds is the set the caller was told about. Installing (a rename) is
//!   the exception: the caller installs several outputs, then syncs once
//!   with [`SegmentedFile::sync_dir`]; until then a power cut may undo them.
//! - Every directory operation (create, rename, remove, list, sync) goes
//!   through the [`FileOpener`], so a fault-injecting opener sees them all
//!   and can undo the ones not yet made durable.
//! - Readers hold segments by `Arc`. [`SegmentedFile::segment`] takes the
//!   map lock only long enough to clone the `Arc`; a segment removed while a
//!   reader holds it stays readable (an unlinked file lives until its last
//!   handle is closed, on Unix), so removal never breaks an in-flight read.
//!
//! ## Output segments with a chosen id
//!
//! Compaction writes a segment under a temporary name
//! ([`SegmentedFile::create_temp`], `<id>.<ext>.tmp`), syncs it, and only
//! then gives it its real name ([`SegmentedFile::install`]): a crash can
//! leave a temp file behind, never a half-written segment under a real name.
//! [`SegmentedFile::remove_temp_files`] clears such leftovers on open.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::{Error, File, FileOpener, MonolithicOpener, Result};

/// The number of decimal digits of a segment id in a file name.
pub const SEGMENT_ID_DIGITS: usize = 12;

/// The suffix of a segment written but not yet installed.
pub const TEMP_SUFFIX: &str = "tmp";

/// A directory of segment files behind one append interface.
#[derive(Debug)]
pub struct SegmentedFile<O: FileOpener> {
    opener: O,
    dir: PathBuf,
    extension: String,
    max_segment_size: u64,
    state: Mutex<State<O::File>>,
}

#[derive(Debug)]
struct State<F> {
    /// Every segment, by id; the last one is the active segment.
    segments: BTreeMap<u64, Arc<F>>,
    /// The id the next new segment gets; above every id handed out so far.
    next_id: u64,
}

impl<O: FileOpener> SegmentedFile<O> {
    /// Opens the segments in `dir` whose names are `<id>.<extension>`,
    /// creating the directory (durably) if needed. Creates no segment: the first
    /// [`SegmentedFile::append`] or [`SegmentedFile::roll`] does.
    ///
    /// A segment whose size exceeds `max_segment_size` is accepted (it holds
    /// one oversized append, or was written with a larger limit).
    pub fn open(
        opener: O,
        dir: impl Into<PathBuf>,
        extension: &str,
        max_segment_size: u64,
    ) -> Result<Self> {
        let dir = dir.into();
        opener.create_dir_all_durable(&dir)?;
        let mut segments = BTreeMap::new();
        for id in ids_in(&opener.list_dir(&dir)?, extension) {
            let file = opener.open(&segment_path(&dir, id, extension), false)?;
            segments.insert(id, Arc::new(file));
        }
        let next_id = segments.keys().next_back().map_or(1, |last| last + 1);
        Ok(Self {
            opener,
            dir,
            extension: extension.to_string(),
            max_segment_size,
            state: Mutex::new(State { segments, next_id }),
        })
    }

    /// The directory holding the segments.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The opener segments are opened with.
    pub fn opener(&self) -> &O {
        &self.opener
    }

    /// The extension of segment file names (without the dot).
    pub fn extension(&self) -> &str {
        &self.extension
    }

    /// The size past which the active segment is rolled.
    pub fn max_segment_size(&self) -> u64 {
        self.max_segment_size
    }

    /// The path of segment `id` (whether or not it exists).
    pub fn segment_path(&self, id: u64) -> PathBuf {
        segment_path(&self.dir, id, &self.extension)
    }

    /// The path segment `id` has while it is written by
    /// [`SegmentedFile::create_temp`], before [`SegmentedFile::install`].
    pub fn temp_path(&self, id: u64) -> PathBuf {
        let mut name = segment_path(&self.dir, id, &self.extension).into_os_string();
        name.push(".");
        name.push(TEMP_SUFFIX);
        PathBuf::from(name)
    }

    /// The ids of every segment, ascending.
    pub fn ids(&self) -> Vec<u64> {
        self.state.lock().segments.keys().copied().collect()
    }

    /// The number of segments.
    pub fn len(&self) -> usize {
        self.state.lock().segments.len()
    }

    /// Whether there is no segment at all.
    pub fn is_empty(&self) -> bool {
        self.state.lock().segments.is_empty()
    }

    /// Segment `id`, if it exists. The returned handle stays readable even
    /// if the segment is removed meanwhile.
    pub fn segment(&self, id: u64) -> Option<Arc<O::File>> {
        self.state.lock().segments.get(&id).cloned()
    }

    /// The active segment (the one with the highest id), if any.
    pub fn active(&self) -> Option<(u64, Arc<O::File>)> {
        let state = self.state.lock();
        state
            .segments
            .iter()
            .next_back()
            .map(|(id, file)| (*id, Arc::clone(file)))
    }

    /// The id the next new segment will get.
    pub fn next_id(&self) -> u64 {
        self.state.lock().next_id
    }

    /// Sets aside `count` ids for segments to be created later with
    /// [`SegmentedFile::create_temp`]. Every segment created afterwards gets
    /// a higher id, so those segments sort below the active one.
    pub fn reserve_ids(&self, count: u64) -> Result<Range<u64>> {
        let mut state = self.state.lock();
        let start = state.next_id;
        let end = start.checked_add(count).ok_or_else(|| Error::Overflow {
            path: self.dir.clone(),
            offset: start,
        })?;
        state.next_id = end;
        Ok(start..end)
    }

    /// Seals the active segment (syncing its data) and creates a new, empty
    /// active segment with the next id. The directory is synced before this
    /// returns, so the new segment survives a crash.
    pub fn roll(&self) -> Result<(u64, Arc<O::File>)> {
        let mut state = self.state.lock();
        self.roll_locked(&mut state)
    }

    fn roll_locked(&self, state: &mut State<O::File>) -> Result<(u64, Arc<O::File>)> {
        if let Some(active) = state.segments.values().next_back() {
            active.sync_data()?;
        }
        let id = state.next_id;
        let path = self.segment_path(id);
        let file = Arc::new(self.opener.open(&path, true)?);
        self.opener.sync_dir(&self.dir)?;
        state.next_id = id + 1;
        state.segments.insert(id, Arc::clone(&file));
        Ok((id, file))
    }

    /// Appends `data` to the active segment, rolling first if the append
    /// would make the segment exceed the size limit (or if there is no
    /// segment yet). Returns the segment id and the offset written at.
    ///
    /// The append is not synced: call [`File::sync_data`] on the segment.
    pub fn append(&self, data: &[u8]) -> Result<(u64, u64)> {
        let mut state = self.state.lock();
        let current = match state.segments.iter().next_back() {
            Some((id, file)) => {
                let len = file.len()?;
                let fits = len
                    .checked_add(data.len() as u64)
                    .is_some_and(|end| end <= self.max_segment_size);
                // An empty segment takes any append: an oversized append
                // goes alone into a fresh segment instead of looping.
                (fits || len == 0).then(|| (*id, Arc::clone(file)))
            }
            None => None,
        };
        let (id, file) = match current {
            Some(current) => current,
            None => self.roll_locked(&mut state)?,
        };
        // Appends are serialized by the state lock, so that a roll cannot
        // slip between the size check and the write.
        let offset = file.append(data)?;
        Ok((id, offset))
    }

    /// Creates (or truncates) the temporary file of segment `id`, for a
    /// segment written whole before it becomes visible. `id` should come
    /// from [`SegmentedFile::reserve_ids`].
    pub fn create_temp(&self, id: u64) -> Result<O::File> {
        let path = self.temp_path(id);
        let file = self.opener.open(&path, true)?;
        file.set_len(0)?;
        Ok(file)
    }

    /// Renames the temporary file of segment `id` to its real name and adds
    /// it to the segments as a sealed segment. The caller has synced the
    /// file's data; the directory is synced by [`SegmentedFile::sync_dir`]
    /// (once for many installs).
    pub fn install(&self, id: u64) -> Result<Arc<O::File>> {
        let temp = self.temp_path(id);
        let path = self.segment_path(id);
        self.opener.rename(&temp, &path)?;
        let file = Arc::new(self.opener.open(&path, false)?);
        self.state.lock().segments.insert(id, Arc::clone(&file));
        Ok(file)
    }

    /// Makes creations, renames and removals in the directory durable.
    pub fn sync_dir(&self) -> Result<()> {
        self.opener.sync_dir(&self.dir)
    }

    /// Removes the segments `ids`, in the order given, syncing the
    /// directory after each. Handles already given out stay readable.
    ///
    /// The order matters to callers that must never expose an intermediate
    /// state (compaction removes oldest first). A single directory sync at
    /// the end would let the file system persist the removals in any order,
    /// so each one is made durable before the next begins.
    pub fn remove(&self, ids: &[u64]) -> Result<()> {
        for &id in ids {
            self.state.lock().segments.remove(&id);
            self.opener.remove(&self.segment_path(id))?;
            self.sync_dir()?;
        }
        Ok(())
    }

    /// Removes every `<id>.<ext>.tmp` file left by an interrupted
    /// [`SegmentedFile::create_temp`] and syncs the directory. Returns the
    /// paths removed.
    pub fn remove_temp_files(&self) -> Result<Vec<PathBuf>> {
        let suffix = format!(".{}.{TEMP_SUFFIX}", self.extension);
        let mut removed = Vec::new();
        for name in self.opener.list_dir(&self.dir)? {
            let Some(name) = name.to_str() else { continue };
            if name
                .strip_suffix(&suffix)
                .is_some_and(|id| parse_id(id).is_some())
            {
                let path = self.dir.join(name);
                self.opener.remove(&path)?;
                removed.push(path);
            }
        }
        if !removed.is_empty() {
            self.sync_dir()?;
        }
        Ok(removed)
    }

    /// The sum of the lengths of all segments.
    pub fn total_len(&self) -> Result<u64> {
        let files: Vec<Arc<O::File>> = self.state.lock().segments.values().cloned().collect();
        files
            .iter()
            .try_fold(0u64, |sum, f| Ok(sum.saturating_add(f.len()?)))
    }
}

/// The path of segment `id` with `extension` in `dir`.
pub fn segment_path(dir: &Path, id: u64, extension: &str) -> PathBuf {
    dir.join(format!(
        "{id:0width$}.{extension}",
        width = SEGMENT_ID_DIGITS
    ))
}

/// Parses a segment id: exactly [`SEGMENT_ID_DIGITS`] decimal digits.
pub fn parse_id(stem: &str) -> Option<u64> {
    if stem.len() != SEGMENT_ID_DIGITS || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// The ids of the files named `<id>.<extension>` in `dir`, ascending, read
/// with a plain [`MonolithicOpener`] (for tools that look at a directory
/// without opening a database).
pub fn list_ids(dir: &Path, extension: &str) -> Result<Vec<u64>> {
    Ok(ids_in(&MonolithicOpener.list_dir(dir)?, extension))
}

/// The ids among `names` of the form `<id>.<extension>`, ascending.
fn ids_in(names: &[OsString], extension: &str) -> Vec<u64> {
    let suffix = format!(".{extension}");
    let mut ids: Vec<u64> = names
        .iter()
        .filter_map(|name| name.to_str()?.strip_suffix(&suffix).and_then(parse_id))
        .collect();
    ids.sort_unstable();
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path, max: u64) -> SegmentedFile<MonolithicOpener> {
        SegmentedFile::open(MonolithicOpener, dir, "log", max).unwrap()
    }

    fn read(file: &impl File, offset: u64, len: usize) -> Vec<u8> {
        let mut buf = vec![0u8; len];
        file.read_at(offset, &mut buf).unwrap();
        buf
    }

    #[test]
    fn names_are_zero_padded_ids_and_parse_back() {
        let path = segment_path(Path::new("/d"), 7, "log");
        assert_eq!(path, Path::new("/d/000000000007.log"));
        assert_eq!(parse_id("000000000007"), Some(7));
        assert_eq!(parse_id("7"), None);
        assert_eq!(parse_id("00000000000x"), None);
        assert_eq!(parse_id("+00000000007"), None);
    }

    #[test]
    fn appends_roll_over_at_the_size_limit_and_never_span_segments() {
        let dir = tempfile::tempdir().unwrap();
        let segments = open(dir.path(), 10);
        assert!(segments.is_empty());
        assert_eq!(segments.append(b"abcd").unwrap(), (1, 0));
        assert_eq!(segments.append(b"efgh").unwrap(), (1, 4));
        // 8 + 4 > 10: a new segment, even though 2 bytes are left.
        assert_eq!(segments.append(b"ijkl").unwrap(), (2, 0));
        // Larger than the limit: alone in a fresh segment.
        assert_eq!(segments.append(b"0123456789ABCDEF").unwrap(), (3, 0));
        assert_eq!(segments.append(b"x").unwrap(), (4, 0));
        assert_eq!(segments.ids(), vec![1, 2, 3, 4]);
        let s2 = segments.segment(2).unwrap();
        assert_eq!(read(&*s2, 0, 4), b"ijkl");
        assert_eq!(segments.segment(3).unwrap().len().unwrap(), 16);
        assert_eq!(segments.total_len().unwrap(), 8 + 4 + 16 + 1);
    }

    #[test]
    fn reopen_lists_segments_and_keeps_the_last_active() {
        let dir = tempfile::tempdir().unwrap();
        {
            let segments = open(dir.path(), 4);
            segments.append(b"aaaa").unwrap();
            segments.append(b"bb").unwrap();
        }
        // A file with another extension or a malformed name is not a segment.
        std::fs::write(dir.path().join("000000000009.hint"), b"h").unwrap();
        std::fs::write(dir.path().join("12.log"), b"h").unwrap();
        let segments = open(dir.path(), 4);
        assert_eq!(segments.ids(), vec![1, 2]);
        assert_eq!(segments.active().unwrap().0, 2);
        assert_eq!(segments.next_id(), 3);
        assert_eq!(segments.append(b"cc").unwrap(), (2, 2));
    }

    #[test]
    fn reserved_ids_sort_below_the_next_active_segment() {
        let dir = tempfile::tempdir().unwrap();
        let segments = open(dir.path(), 100);
        segments.roll().unwrap();
        let reserved = segments.reserve_ids(2).unwrap();
        assert_eq!(reserved, 2..4);
        let (active, _) = segments.roll().unwrap();
        assert_eq!(active, 4);

        let temp = segments.create_temp(2).unwrap();
        temp.append(b"compacted").unwrap();
        temp.sync_data().unwrap();
        assert!(segments.temp_path(2).exists());
        assert!(
            segments.segment(2).is_none(),
            "a temp segment is not visible"
        );
        let installed = segments.install(2).unwrap();
        segments.sync_dir().unwrap();
        assert_eq!(installed.path(), segments.segment_path(2));
        assert_eq!(read(&*segments.segment(2).unwrap(), 0, 9), b"compacted");
        assert_eq!(segments.ids(), vec![1, 2, 4]);
        assert_eq!(
            segments.active().unwrap().0,
            4,
            "the active segment stays the highest"
        );
    }

    #[test]
    fn removed_segments_stay_readable_through_held_handles() {
        let dir = tempfile::tempdir().unwrap();
        let segments = open(dir.path(), 4);
        segments.append(b"old!").unwrap();
        segments.append(b"new!").unwrap();
        let held = segments.segment(1).unwrap();
        segments.remove(&[1]).unwrap();
        assert!(segments.segment(1).is_none());
        assert!(!segments.segment_path(1).exists());
        assert_eq!(read(&*held, 0, 4), b"old!");
        drop(segments);
        assert_eq!(open(dir.path(), 4).ids(), vec![2]);
    }

    #[test]
    fn temp_files_are_cleaned_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let segments = open(dir.path(), 100);
        segments.append(b"keep").unwrap();
        let temp = segments.create_temp(5).unwrap();
        temp.append(b"half-written").unwrap();
        std::fs::write(dir.path().join("notes.tmp"), b"not ours").unwrap();
        let removed = segments.remove_temp_files().unwrap();
        assert_eq!(removed, vec![segments.temp_path(5)]);
        assert!(dir.path().join("notes.tmp").exists());
        assert_eq!(segments.ids(), vec![1]);
    }

    #[test]
    fn concurrent_appends_each_land_whole_in_one_segment() {
        let dir = tempfile::tempdir().unwrap();
        let segments = Arc::new(open(dir.path(), 64));
        let threads: Vec<_> = (0..4u8)
            .map(|t| {
                let segments = Arc::clone(&segments);
                std::thread::spawn(move || {
                    (0..50u8)
                        .map(|i| {
                            let data = [t, i, t, i, t, i, t, i, t, i];
                            let (id, offset) = segments.append(&data).unwrap();
                            (id, offset, data)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for thread in threads {
            for (id, offset, data) in thread.join().unwrap() {
                assert!(offset + 10 <= 64);
                assert_eq!(read(&*segments.segment(id).unwrap(), offset, 10), data);
            }
        }
    }
}
