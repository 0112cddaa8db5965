//! Opening a log directory: rebuilding the index and checking the segments.
//!
//! ## Steps
//!
//! 1. Remove leftovers of an interrupted compaction: segment temp files
//!    (`<id>.log.tmp`), hint temp files, and hints whose segment is gone.
//! 2. For every sealed segment (all but the last), load its entries from
//!    its hint file, or, if the hint is missing or fails a check, by
//!    scanning the segment (then rewrite the hint). A sealed segment must be
//!    whole: it starts with `begin`, ends with `seal`, and has no torn tail.
//!    Anything else there is damage, reported with file and offset: an
//!    interrupted append only ever tears the *last* segment, because a
//!    segment is synced and sealed before the next one is created.
//! 3. Scan the last segment and truncate its torn tail; if a clean close
//!    left a hint for it, take the part the hint covers from the hint and
//!    scan only the bytes appended after it (counted in the
//!    stats). An empty or header-only last segment is a crash right after
//!    its creation: it is restarted. A last segment that ends with `seal` is
//!    a crash between sealing and creating the next: a new one is started.
//! 4. Replay every set and delete into the index, keeping per key the entry
//!    with the highest seq. A tombstone with the highest seq removes the
//!    key. Segments are replayed in id order and an equal seq replaces (the
//!    higher id wins), so a compaction output beats the input it copied.
//! 5. Finish an interrupted compaction: a segment whose covered range lies
//!    inside the range of a segment with a higher id is an input whose
//!    output was installed; it is deleted (oldest seq first, as
//!    compaction does: after a crash between two output renames, ids are
//!    not always in seq order).
//! 6. Check that the covered ranges tile `1..=last_seq`: a hole means a
//!    segment file is missing, and opening fails rather than serve stale
//!    values.
//!
//! ## What cannot be detected
//!
//! Losing the *last* segment whole looks exactly like a clean shutdown
//! right after a roll: nothing on disk remembers that it existed. Catching
//! that would need a manifest synced on every roll; the torn-tail rules
//! already cover what a crash can do, so the engine does without.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;
use pydb_file::{File, FileOpener, PreallocatedFile, SegmentedFile};
use pydb_index::Index;
use pydb_wal::{LogWriter, Scanner, TailCut};

use super::entry::{EntryKind, decode_entry};
use super::hint::{self, HintEntry, HintHeader, PendingHint};
use super::{
    HintJob, IndexState, Location, LogOptions, SegmentUsage, SeqRange, WriterState, start_segment,
};
use crate::{Error, Result};

/// What opening found, ready to become the engine's state.
#[derive(Debug)]
pub(crate) struct Recovered<F: File + 'static, I> {
    pub writer: WriterState<F>,
    pub index: IndexState<I>,
    pub torn_tails: u64,
    pub torn_bytes: u64,
    /// Bytes of segments read record by record because no hint covered
    /// them (the rest came from hints).
    pub scanned_bytes: u64,
    /// Hints to (re)write once the engine is up.
    pub hints: Vec<HintJob>,
}

/// The entries of one segment, and the markers that frame them.
#[derive(Debug, Default)]
pub(super) struct Scanned {
    pub(super) begin: Option<u64>,
    pub(super) seal: Option<u64>,
    pub(super) entries: Vec<HintEntry>,
}

/// The index being rebuilt, with the tombstones seen so far.
pub(super) struct Replay<I> {
    pub(super) index: I,
    /// Highest tombstone seq per deleted key, so that an older set met in a
    /// later segment does not come back to life.
    tombstones: HashMap<Bytes, u64>,
}

impl<I: Index<Location>> Replay<I> {
    /// An empty replay into `index` (cleared first).
    pub(super) fn new(mut index: I) -> Self {
        index.clear();
        Self {
            index,
            tombstones: HashMap::new(),
        }
    }
}

impl<I: Index<Location>> Replay<I> {
    fn apply(&mut self, segment: u64, entry: &HintEntry) {
        match entry.kind {
            EntryKind::Set => {
                let deleted_later = !self.tombstones.is_empty()
                    && self
                        .tombstones
                        .get(&entry.key)
                        .is_some_and(|&t| t > entry.seq);
                if deleted_later {
                    return;
                }
                let location = Location {
                    segment,
                    offset: entry.offset,
                    len: entry.len,
                    seq: entry.seq,
                };
                // Insert first, and put the old location back in the rare
                // case it was newer: one descent of the index per key
                // instead of a lookup and then an insert.
                if let Some(old) = self.index.insert(entry.key.clone(), location)
                    && old.seq > entry.seq
                {
                    self.index.insert(entry.key.clone(), old);
                }
            }
            _ => {
                let current = self.index.get(&entry.key).map(|l| l.seq);
                if current.is_some_and(|seq| seq < entry.seq) {
                    self.index.remove(&entry.key);
                }
                let tombstone = self
                    .tombstones
                    .entry(entry.key.clone())
                    .or_insert(entry.seq);
                *tombstone = (*tombstone).max(entry.seq);
            }
        }
    }
}

/// One segment as loaded.
#[derive(Debug, Clone, Copy)]
pub(super) struct Loaded {
    pub(super) id: u64,
    pub(super) range: SeqRange,
    pub(super) data_bytes: u64,
}

/// How the last segment was found.
enum Last<F: File + 'static> {
    /// No segment at all, or an empty one to restart.
    Fresh,
    /// The active segment, with its writer and pending hint entries.
    Active {
        loaded: Loaded,
        writer: LogWriter<PreallocatedFile<Arc<F>>>,
        entries: Vec<HintEntry>,
    },
    /// Sealed already: a new active segment must be started.
    Sealed,
}

/// Opens the segments in `segments`, rebuilding `index`.
pub(crate) fn recover<O, I>(
    segments: &SegmentedFile<O>,
    index: I,
    options: &LogOptions,
) -> Result<Recovered<O::File, I>>
where
    O: FileOpener + 'static,
    I: Index<Location>,
{
    let opener = segments.opener();
    let dir = segments.dir();
    for path in segments.remove_temp_files()? {
        tracing::warn!(path = %path.display(), "removed a segment left by an interrupted compaction");
    }
    let ids = segments.ids();
    for path in hint::remove_stray_hints(opener, dir, &ids)? {
        tracing::warn!(path = %path.display(), "removed a stray hint file");
    }

    let mut replay = Replay::new(index);
    let mut loaded: Vec<Loaded> = Vec::new();
    let mut hints = Vec::new();
    let mut torn_tails = 0;
    let mut torn_bytes = 0;
    let mut scanned_bytes = 0;
    let mut last = Last::Fresh;

    for (position, &id) in ids.iter().enumerate() {
        let file = segments.segment(id).ok_or_else(|| {
            Error::corrupted(
                segments.segment_path(id),
                0,
                "segment vanished while opening",
            )
        })?;
        let is_last = position + 1 == ids.len();
        if !is_last {
            let (header, entries, rebuilt) = load_sealed(segments, id, &file)?;
            if rebuilt {
                scanned_bytes += header.segment_len;
            }
            loaded.push(replay_segment(&mut replay, &header, &entries));
            if rebuilt {
                hints.push(HintJob {
                    header,
                    entries: PendingHint::from_entries(&entries),
                });
            }
            continue;
        }
        let (scanned, cut, scanned_from) = scan_last(segments, id, &file)?;
        // Everything after the hinted prefix was read, zeros included.
        scanned_bytes += cut.tail.file_len.saturating_sub(scanned_from);
        if cut.torn_bytes > 0 {
            torn_tails += 1;
            torn_bytes += cut.torn_bytes;
        }
        last = match (scanned.begin, scanned.seal) {
            (None, _) => {
                // Created, but the crash came before its `begin` was synced.
                file.set_len(0)?;
                file.sync_data()?;
                Last::Fresh
            }
            (Some(first), Some(last_seq)) => {
                let header = HintHeader {
                    segment_id: id,
                    segment_len: file.len()?,
                    first_seq: first,
                    last_seq,
                };
                loaded.push(replay_segment(&mut replay, &header, &scanned.entries));
                if !matches!(
                    hint::read_hint(opener, dir, id, header.segment_len),
                    Ok(Some(_))
                ) {
                    hints.push(HintJob {
                        header,
                        entries: PendingHint::from_entries(&scanned.entries),
                    });
                }
                Last::Sealed
            }
            (Some(first), None) => {
                let last_seq = scanned.entries.last().map_or(first - 1, |e| e.seq);
                let header = HintHeader {
                    segment_id: id,
                    segment_len: file.len()?,
                    first_seq: first,
                    last_seq,
                };
                let loaded_last = replay_segment(&mut replay, &header, &scanned.entries);
                let writer = LogWriter::new(
                    options.preallocated(Arc::clone(&file), opener)?,
                    options.sync_policy,
                )?;
                Last::Active {
                    loaded: loaded_last,
                    writer,
                    entries: scanned.entries,
                }
            }
        };
    }

    let index = replay.index;
    drop(replay.tombstones);

    let mut all: Vec<Loaded> = loaded.clone();
    if let Last::Active { loaded, .. } = &last {
        all.push(*loaded);
    }
    let mut usage = segment_usage(&index, &all);
    let redundant = finish_interrupted_compaction(segments, &all, &usage)?;
    all.retain(|l| !redundant.contains(&l.id));
    for id in &redundant {
        usage.remove(id);
    }
    hints.retain(|job| !redundant.contains(&job.header.segment_id));
    let active_id = match &last {
        Last::Active { loaded, .. } => Some(loaded.id),
        _ => None,
    };
    let next_seq = check_coverage(dir, &|id| segments.segment_path(id), &all, active_id)?;

    let sealed: BTreeMap<u64, SeqRange> = loaded
        .iter()
        .filter(|l| !redundant.contains(&l.id))
        .map(|l| (l.id, l.range))
        .collect();
    let writer = match last {
        Last::Active {
            loaded,
            writer,
            entries,
        } => WriterState {
            active_id: loaded.id,
            active: Arc::new(writer),
            active_first_seq: loaded.range.first,
            active_has_data: !entries.is_empty(),
            active_sealed: false,
            next_seq,
            pending_hint: PendingHint::from_entries(&entries),
            record_buf: Vec::new(),
            sealed,
        },
        Last::Fresh | Last::Sealed => {
            let (id, file) = match (&last, segments.active()) {
                // Restart the empty last segment in place.
                (Last::Fresh, Some(active)) => active,
                _ => segments.roll()?,
            };
            let writer = start_segment(
                options.preallocated(file, opener)?,
                options.sync_policy,
                next_seq,
            )?;
            usage.entry(id).or_default();
            WriterState {
                active_id: id,
                active: Arc::new(writer),
                active_first_seq: next_seq,
                active_has_data: false,
                active_sealed: false,
                next_seq,
                pending_hint: PendingHint::default(),
                record_buf: Vec::new(),
                sealed,
            }
        }
    };
    Ok(Recovered {
        writer,
        index: IndexState { index, usage },
        torn_tails,
        torn_bytes,
        scanned_bytes,
        hints,
    })
}

/// How many bytes of each loaded segment hold data, and how many of them
/// the rebuilt index still points at.
pub(super) fn segment_usage<I: Index<Location>>(
    index: &I,
    all: &[Loaded],
) -> BTreeMap<u64, SegmentUsage> {
    let mut usage: BTreeMap<u64, SegmentUsage> = all
        .iter()
        .map(|l| {
            let usage = SegmentUsage {
                data_bytes: l.data_bytes,
                live_bytes: 0,
            };
            (l.id, usage)
        })
        .collect();
    for (_, location) in index.range(Bound::Unbounded, Bound::Unbounded) {
        usage.entry(location.segment).or_default().live_bytes += u64::from(location.len);
    }
    usage
}

/// Replays a segment's entries into the index.
pub(super) fn replay_segment<I: Index<Location>>(
    replay: &mut Replay<I>,
    header: &HintHeader,
    entries: &[HintEntry],
) -> Loaded {
    let mut data_bytes = 0;
    for entry in entries {
        replay.apply(header.segment_id, entry);
        data_bytes += u64::from(entry.len);
    }
    Loaded {
        id: header.segment_id,
        range: SeqRange {
            first: header.first_seq,
            last: header.last_seq,
        },
        data_bytes,
    }
}

/// Loads a sealed segment's entries from its hint, or by scanning it when
/// the hint cannot be used. The flag says whether the hint must be
/// rewritten.
fn load_sealed<O: FileOpener>(
    segments: &SegmentedFile<O>,
    id: u64,
    file: &Arc<O::File>,
) -> Result<(HintHeader, Vec<HintEntry>, bool)> {
    let len = file.len()?;
    let path = segments.segment_path(id);
    match hint::read_hint(segments.opener(), segments.dir(), id, len) {
        Ok(Some((header, entries))) => return Ok((header, entries, false)),
        Ok(None) => {
            tracing::warn!(segment = %path.display(), "no hint file; rebuilding it from the segment");
        }
        Err(reason) => {
            tracing::warn!(segment = %path.display(), %reason, "hint file unusable; rebuilding it from the segment");
        }
    }
    let (header, entries) = scan_sealed(&path, id, &**file)?;
    Ok((header, entries, true))
}

/// Reads a sealed segment record by record and checks its framing: it is
/// not empty, has no torn tail, starts with `begin` and ends with `seal`.
/// Read only: recovery runs it when a hint cannot be used, and
/// [`super::verify`] runs it on every sealed segment.
pub(super) fn scan_sealed<F: File>(
    path: &std::path::Path,
    id: u64,
    file: &F,
) -> Result<(HintHeader, Vec<HintEntry>)> {
    let len = file.len()?;
    if len == 0 {
        return Err(Error::corrupted(
            path,
            0,
            "a sealed (not last) segment is empty",
        ));
    }
    let mut scanner = Scanner::new(file)?;
    let scanned = scan_segment(file, &mut scanner)?;
    let tail = scanner.tail();
    if tail.torn_bytes() > 0 {
        return Err(Error::corrupted(
            path,
            tail.valid_end,
            format!(
                "a sealed (not last) segment ends with {} bytes of an incomplete record",
                tail.torn_bytes()
            ),
        ));
    }
    let first_seq = scanned.begin.ok_or_else(|| {
        Error::corrupted(path, 0, "a sealed (not last) segment has no begin entry")
    })?;
    let last_seq = scanned.seal.ok_or_else(|| {
        Error::corrupted(
            path,
            tail.valid_end,
            "a sealed (not last) segment has no seal entry: it was cut short",
        )
    })?;
    let header = HintHeader {
        segment_id: id,
        segment_len: len,
        first_seq,
        last_seq,
    };
    Ok((header, scanned.entries))
}

/// Reads the last segment and cuts what follows its valid end (see
/// [`Scanner::truncate_torn_tail`]: a torn write, zeros preallocated ahead
/// of the end, or both). The part that a
/// hint describes (written on the last clean close, see
/// `AppendOnlyLogStorage`'s `Drop`) is taken from the hint; only the bytes
/// after it are scanned. Without a usable hint, the whole segment is.
fn scan_last<O: FileOpener>(
    segments: &SegmentedFile<O>,
    id: u64,
    file: &Arc<O::File>,
) -> Result<(Scanned, TailCut, u64)> {
    let path = segments.segment_path(id);
    let len = file.len()?;
    let hinted = match hint::read_hint_prefix(segments.opener(), segments.dir(), id, len) {
        Ok(Some((header, entries))) => match check_prefix_hint(&**file, &header, &entries) {
            Ok(end) => Some((header, entries, end)),
            Err(reason) => {
                tracing::warn!(segment = %path.display(), %reason, "hint of the last segment unusable; scanning it whole");
                None
            }
        },
        Ok(None) => None,
        Err(reason) => {
            tracing::warn!(segment = %path.display(), %reason, "hint of the last segment unusable; scanning it whole");
            None
        }
    };
    if let Some((header, entries, end)) = hinted {
        // The records before `end` were synced before the hint was written,
        // and a segment's bytes are never rewritten, only appended to: they
        // are still what the hint says. Scan what came after.
        let mut scanner = Scanner::from_offset(&**file, end)?;
        let mut scanned = Scanned {
            begin: Some(header.first_seq),
            seal: None,
            entries,
        };
        scan_records(&**file, &mut scanner, &mut scanned)?;
        let cut = scanner.truncate_torn_tail()?;
        return Ok((scanned, cut, end));
    }
    let mut scanner = Scanner::new(&**file)?;
    let scanned = scan_segment(&**file, &mut scanner)?;
    let cut = scanner.truncate_torn_tail()?;
    Ok((scanned, cut, 0))
}

/// Checks a hint of the last segment against the segment before trusting
/// it, and returns the offset where its records end (where scanning goes
/// on). The checks are cheap: two point reads and arithmetic.
///
/// - The entries must be contiguous, right after the `begin` record, with
///   strictly increasing seqs: exactly the shape the writer produces. So
///   the end of the last entry is a record (and batch) boundary.
/// - The `begin` record and the last entry's record are read and verified
///   (CRC, kind, seq, key): the hint belongs to this incarnation of the
///   segment, not to a file that was replaced under the same name.
///
/// A hint that passes and still lies could only make a later point read
/// fail its own checks; it can never make a read return a wrong value.
pub(super) fn check_prefix_hint<F: File>(
    file: &F,
    header: &HintHeader,
    entries: &[HintEntry],
) -> std::result::Result<u64, String> {
    let begin_at = pydb_wal::FILE_HEADER_LEN as u64;
    let begin = read_entry(file, begin_at, None)?;
    if begin.kind != EntryKind::Begin || begin.seq != header.first_seq {
        return Err(format!(
            "the segment begins with a {:?} at seq {}, the hint says begin at {}",
            begin.kind, begin.seq, header.first_seq
        ));
    }
    let mut end = begin_at + pydb_wal::record_len(super::entry::ENTRY_HEADER_LEN);
    let mut floor = header.first_seq;
    for (i, entry) in entries.iter().enumerate() {
        if entry.offset != end || entry.seq < floor {
            return Err(format!("entry {i} is not where the previous one ends"));
        }
        end = entry.offset + u64::from(entry.len);
        floor = entry.seq.saturating_add(1);
    }
    if end > header.segment_len {
        return Err("entries run past the length the hint describes".into());
    }
    if let Some(last) = entries.last() {
        let record = read_entry(file, last.offset, Some(last.len))?;
        if record.kind != last.kind || record.seq != last.seq || record.key != last.key {
            return Err("the last entry does not match its record".into());
        }
    }
    Ok(end)
}

/// Reads and decodes the entry of the record at `offset` (of length `len`
/// if known), as a reason to distrust a hint if anything is wrong.
fn read_entry<F: File>(
    file: &F,
    offset: u64,
    len: Option<u32>,
) -> std::result::Result<super::entry::Entry, String> {
    let record = match len {
        Some(len) => pydb_wal::read_record_exact(file, offset, len as usize),
        None => pydb_wal::read_record_at(file, offset),
    }
    .map_err(|e| e.to_string())?;
    decode_entry(&record.payload).map_err(|e| e.to_string())
}

/// Reads every complete batch of a segment, checking the framing: `begin`
/// first, `seal` last if at all, and sets and deletes with strictly
/// increasing seqs inside the covered range.
pub(super) fn scan_segment<F: File>(file: &F, scanner: &mut Scanner<'_, F>) -> Result<Scanned> {
    let mut scanned = Scanned::default();
    scan_records(file, scanner, &mut scanned)?;
    Ok(scanned)
}

/// Scans the batches left in `scanner` into `scanned`, which holds what
/// came before them (nothing, or the entries of a hint).
fn scan_records<F: File>(
    file: &F,
    scanner: &mut Scanner<'_, F>,
    scanned: &mut Scanned,
) -> Result<()> {
    let bad = |offset: u64, reason: &str| Error::corrupted(file.path(), offset, reason);
    while let Some(batch) = scanner.next_batch()? {
        for record in batch {
            let offset = record.offset;
            let entry = decode_entry(&record.payload)
                .map_err(|e| Error::corrupted(file.path(), offset, e.to_string()))?;
            if scanned.seal.is_some() {
                return Err(bad(offset, "entry after the seal entry"));
            }
            match entry.kind {
                EntryKind::Begin if scanned.begin.is_none() && entry.seq > 0 => {
                    scanned.begin = Some(entry.seq);
                }
                EntryKind::Begin => return Err(bad(offset, "misplaced begin entry")),
                _ if scanned.begin.is_none() => {
                    return Err(bad(offset, "segment does not start with a begin entry"));
                }
                EntryKind::Seal => {
                    let floor = scanned.entries.last().map_or(0, |e| e.seq);
                    let first = scanned.begin.unwrap_or(1);
                    if entry.seq < floor || entry.seq.saturating_add(1) < first {
                        return Err(bad(offset, "seal entry does not cover the segment"));
                    }
                    scanned.seal = Some(entry.seq);
                }
                EntryKind::Set | EntryKind::Delete => {
                    let floor = scanned
                        .entries
                        .last()
                        .map_or(scanned.begin.unwrap_or(1), |e| e.seq.saturating_add(1));
                    if entry.seq < floor {
                        return Err(bad(offset, "sequence numbers go backwards"));
                    }
                    scanned.entries.push(HintEntry {
                        seq: entry.seq,
                        kind: entry.kind,
                        key: entry.key,
                        offset,
                        len: record.encoded_len() as u32,
                    });
                }
            }
        }
    }
    Ok(())
}

/// Finds the inputs of an interrupted compaction (segments whose non-empty
/// range lies inside the range of a segment with a higher id), checks that
/// nothing live is in them, and deletes them oldest (by seq) first.
/// Returns their ids.
fn finish_interrupted_compaction<O: FileOpener>(
    segments: &SegmentedFile<O>,
    all: &[Loaded],
    usage: &BTreeMap<u64, SegmentUsage>,
) -> Result<Vec<u64>> {
    let redundant = interrupted_compaction_inputs(&|id| segments.segment_path(id), all, usage)?;
    if !redundant.is_empty() {
        tracing::warn!(
            ?redundant,
            "finishing an interrupted compaction: removing its inputs"
        );
        segments.remove(&redundant)?;
        for &id in &redundant {
            hint::remove_hint(segments.opener(), segments.dir(), id)?;
        }
    }
    Ok(redundant)
}

/// The inputs of an interrupted compaction: segments whose non-empty range
/// lies inside the range of a segment with a higher id, oldest (by seq)
/// first. Fails if one of them still holds the latest value of a key.
/// Changes nothing.
pub(super) fn interrupted_compaction_inputs(
    path_of: &dyn Fn(u64) -> std::path::PathBuf,
    all: &[Loaded],
    usage: &BTreeMap<u64, SegmentUsage>,
) -> Result<Vec<u64>> {
    let mut redundant = Vec::new();
    for segment in all {
        let covered = all
            .iter()
            .any(|other| other.id > segment.id && other.range.contains(&segment.range));
        if !covered {
            continue;
        }
        if usage.get(&segment.id).is_some_and(|u| u.live_bytes > 0) {
            return Err(Error::corrupted(
                path_of(segment.id),
                0,
                "segment is covered by a newer compaction output but still holds the latest \
                 value of some keys",
            ));
        }
        redundant.push((segment.range.first, segment.id));
    }
    // Oldest by seq first, like compaction deletes them: ids need not be
    // in seq order after a crash between two installs.
    redundant.sort_unstable();
    Ok(redundant.into_iter().map(|(_, id)| id).collect())
}

/// Checks that the covered ranges tile `1..=last_seq` and returns the seq
/// the next write gets.
///
/// Sealed segments with an empty range (rolled before any write) cover
/// nothing and are skipped. The active segment comes last and must start
/// right after the others, even when it is empty: otherwise the segment
/// just before it is missing.
pub(super) fn check_coverage(
    dir: &std::path::Path,
    path_of: &dyn Fn(u64) -> std::path::PathBuf,
    all: &[Loaded],
    active_id: Option<u64>,
) -> Result<u64> {
    let mut ranges: Vec<&Loaded> = all
        .iter()
        .filter(|l| !l.range.is_empty() && Some(l.id) != active_id)
        .collect();
    ranges.sort_by_key(|l| (l.range.first, l.range.last, l.id));
    ranges.extend(all.iter().filter(|l| Some(l.id) == active_id));
    let mut expected = 1u64;
    for segment in ranges {
        let SeqRange { first, last } = segment.range;
        if first > expected {
            return Err(Error::corrupted(
                dir,
                0,
                format!(
                    "a segment is missing: no segment holds seqs {expected}..={}; the next \
                     segment, {}, starts at seq {first}",
                    first - 1,
                    path_of(segment.id).display()
                ),
            ));
        }
        if first < expected {
            return Err(Error::corrupted(
                path_of(segment.id),
                0,
                format!("segment covers seqs {first}..={last}, overlapping seqs before {expected}"),
            ));
        }
        expected = expected.max(last.saturating_add(1));
    }
    Ok(expected)
}
