//! Repairing a log directory: the plan of what to keep and what to
//! rewrite, and the rebuilding of hints, with the engine's own decoders.
//!
//! The engine refuses to open a directory whose segments are damaged in the
//! middle, because skipping damage would silently drop acknowledged writes.
//! `pydb repair` is the explicit, reported way to accept that loss. This
//! module decides *what* to keep ([`plan`]); the tool carries the plan out
//! (writing new segments beside the old ones, moving originals aside) and
//! reports it.
//!
//! ## The plan, per segment (in id order)
//!
//! 1. Walk the segment with [`pydb_wal::verify`], the walker that steps
//!    over damage to the next record that verifies.
//! 2. Keep a batch only if every record of it verifies and decodes as an
//!    entry. The first batch after a damaged region is kept only if the
//!    region can be read as a chain of whole records (their length fields
//!    land exactly on the next good record) whose last one ended its batch;
//!    otherwise its first records may be in the damage, and it is dropped.
//!    (The flags byte of a damaged record is not verified: if the damage is
//!    exactly the batch bit of that byte, a batch tail can survive. That is
//!    the one case where repair can keep part of a batch.)
//! 3. Decide the seq range the segment covers (opening checks that the
//!    ranges tile `1..=last`): from its `begin` and `seal` entries if they
//!    verified; a lost `begin` becomes the seq right after the previous
//!    segment's range; a lost `seal` of a segment that is not the last
//!    becomes the seq right before the next segment's range (or its last
//!    kept seq). A hole between two ranges (a segment missing or lost
//!    whole) is closed by starting the later range earlier: the seqs of the
//!    hole are gone, and the plan says which.
//! 4. If anything was dropped or a range changed, the segment is rebuilt:
//!    the file header, `begin`, the kept records (payload and flags as they
//!    were, re-encoded because a record's checksum covers its offset),
//!    `seal` (unless it is the last segment). Its hint is stale then.
//!
//! ## Hints
//!
//! A hint file is only an index of its segment: the segment is the truth.
//! So a hint that fails its checks is never patched; it is rebuilt from its
//! segment exactly as opening rebuilds it (`scan_sealed`, then
//! [`hint::write_hint`]: a temporary file, synced, renamed over the old
//! name, directory synced). The hint of the *last* segment is not rebuilt:
//! that segment may still grow, and the engine writes its hint on a clean
//! close; the caller moves the bad one aside and opening scans the segment.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use pydb_file::{File, FileOpener, MonolithicOpener};
use pydb_wal::record::{
    FLAG_BATCH_CONTINUES, FLAGS_OFFSET, LEN_OFFSET, RECORD_HEADER_LEN, encode_file_header,
    encode_record,
};
use pydb_wal::verify::{HeaderVerdict, Step, Walker};

use super::SEGMENT_EXTENSION;
use super::entry::{EntryKind, decode_entry, encode_entry};
use super::hint::{self, HintHeader};
use super::recovery;
use crate::Result;

/// A run of bytes that repair does not keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    /// The segment it is in.
    pub file: PathBuf,
    /// Where the run starts.
    pub offset: u64,
    /// How many bytes.
    pub len: u64,
    /// Why.
    pub reason: String,
}

/// What to do with one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentPlan {
    /// The segment's id.
    pub id: u64,
    /// Its file.
    pub path: PathBuf,
    /// The seqs it will cover, `first..=last`.
    pub first_seq: u64,
    /// See `first_seq`.
    pub last_seq: u64,
    /// Set and delete records kept.
    pub records_kept: u64,
    /// The runs of bytes not kept.
    pub dropped: Vec<Dropped>,
    /// The new bytes of the segment, if it must be rewritten; `None`: keep
    /// it as it is.
    pub rewrite: Option<Vec<u8>>,
}

/// What [`plan`] decided for a directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// One plan per segment, in id order.
    pub segments: Vec<SegmentPlan>,
    /// Seq ranges that are in no segment (`first..=last`): given up.
    pub lost_seqs: Vec<(u64, u64)>,
}

/// Reads every segment of the log directory `dir` and decides what repair
/// keeps (see the module docs). Changes nothing.
pub fn plan(dir: &Path) -> Result<Plan> {
    plan_with(dir, &MonolithicOpener)
}

/// [`plan`] through `opener`: the segments of an encrypted or compressed
/// database are read as the engine sees them (plaintext). A block or frame
/// of the decorator that fails its check ends what is read of that segment
/// there, as a torn tail: the rest is dropped and reported.
pub fn plan_with<O: FileOpener>(dir: &Path, opener: &O) -> Result<Plan> {
    let ids = pydb_file::list_ids(dir, SEGMENT_EXTENSION)?;
    let mut segments = Vec::with_capacity(ids.len());
    for &id in &ids {
        let path = pydb_file::segment_path(dir, id, SEGMENT_EXTENSION);
        let bytes = read_salvageable(opener, &path)?;
        segments.push(salvage(id, path, &bytes)?);
    }
    let mut plan = Plan::default();
    let ranges = plan_ranges(&segments, &mut plan.lost_seqs);
    let last = segments.len().saturating_sub(1);
    for (i, (segment, &(first, last_seq))) in segments.into_iter().zip(&ranges).enumerate() {
        let is_last = i == last;
        let unchanged = segment.dropped.is_empty()
            && segment.begin == Some(first)
            && (is_last && segment.seal.is_none() || segment.seal == Some(last_seq));
        // The last segment stays unsealed (active) unless it was sealed.
        let seal = (!is_last || segment.seal.is_some()).then_some(last_seq);
        let rewrite = (!unchanged).then(|| rebuild(&segment, first, seal));
        plan.segments.push(SegmentPlan {
            id: segment.id,
            path: segment.path,
            first_seq: first,
            last_seq,
            records_kept: segment.batches.iter().map(|b| b.len() as u64).sum(),
            dropped: segment.dropped,
            rewrite,
        });
    }
    Ok(plan)
}

/// One record that verified.
#[derive(Debug, Clone)]
struct Good {
    flags: u8,
    /// The entry, as the record carried it.
    payload: Bytes,
    kind: EntryKind,
    seq: u64,
}

/// What one segment holds after salvage.
#[derive(Debug)]
struct Salvaged {
    id: u64,
    path: PathBuf,
    begin: Option<u64>,
    seal: Option<u64>,
    /// Kept set/delete records, batch by batch, in file order.
    batches: Vec<Vec<Good>>,
    dropped: Vec<Dropped>,
}

impl Salvaged {
    fn data_seqs(&self) -> impl Iterator<Item = u64> + '_ {
        self.batches.iter().flatten().map(|g| g.seq)
    }
}

/// Walks a segment and keeps every whole batch whose records verify.
fn salvage(id: u64, path: PathBuf, bytes: &[u8]) -> Result<Salvaged> {
    let mut salvaged = Salvaged {
        id,
        path: path.clone(),
        begin: None,
        seal: None,
        batches: Vec::new(),
        dropped: Vec::new(),
    };
    let len = bytes.len() as u64;
    // Adjacent runs (a damaged record and the rest of its batch) are
    // reported as one.
    let drop_run = |offset: u64, end: u64, reason: &str, out: &mut Vec<Dropped>| {
        if let Some(last) = out.last_mut()
            && last.offset + last.len == offset
        {
            last.len += end - offset;
        } else if end > offset {
            out.push(Dropped {
                file: path.clone(),
                offset,
                len: end - offset,
                reason: reason.to_string(),
            });
        }
    };
    let walker = Walker::from_bytes(bytes)?;
    let header_end = (pydb_wal::FILE_HEADER_LEN as u64).min(len);
    let header_problem = match walker.header() {
        HeaderVerdict::Short => Some("cut short"),
        HeaderVerdict::Read {
            magic_ok: false, ..
        } => Some("bad magic"),
        HeaderVerdict::Read {
            stored_crc,
            computed_crc,
            ..
        } if stored_crc != computed_crc => Some("checksum mismatch"),
        HeaderVerdict::Read { .. } => None,
    };
    if let Some(problem) = header_problem {
        drop_run(
            0,
            header_end,
            &format!("file header: {problem}"),
            &mut salvaged.dropped,
        );
    }
    let mut batch: Vec<Good> = Vec::new();
    let mut batch_start = header_end;
    // Whether the next record may start a batch: false right after a
    // damaged region that did not provably end a batch.
    let mut at_batch_start = true;
    walker.walk(&mut |step| {
        match step {
            Step::Record {
                offset,
                flags,
                bytes: record,
                ..
            } => {
                let payload =
                    Bytes::copy_from_slice(record.get(RECORD_HEADER_LEN..).unwrap_or(&[]));
                let good = decode_entry(&payload).ok().map(|entry| Good {
                    flags,
                    payload: payload.clone(),
                    kind: entry.kind,
                    seq: entry.seq,
                });
                match good {
                    Some(good) => batch.push(good),
                    // Verified bytes that are not an entry: drop the batch.
                    None => at_batch_start = false,
                }
                let end = offset + record.len() as u64;
                if flags & FLAG_BATCH_CONTINUES == 0 {
                    if at_batch_start && !batch.is_empty() {
                        keep(&mut salvaged, std::mem::take(&mut batch));
                    } else {
                        drop_run(
                            batch_start,
                            end,
                            "batch whose start is damaged or not an entry",
                            &mut salvaged.dropped,
                        );
                        batch.clear();
                    }
                    at_batch_start = true;
                    batch_start = end;
                }
            }
            Step::Bad {
                offset,
                next_valid,
                zeros_from,
                ..
            } => {
                // Damage: the batch in progress is lost.
                batch.clear();
                // Zeros after the last bad byte are space preallocated
                // ahead of the end (see `PreallocatedFile`), not data: only
                // the bytes before them were a torn write.
                let end = next_valid.unwrap_or(zeros_from);
                at_batch_start = next_valid.is_some_and(|next| {
                    let region = usize::try_from(offset).ok().zip(usize::try_from(next).ok());
                    region
                        .and_then(|(from, to)| bytes.get(from..to))
                        .is_some_and(region_ends_batch)
                });
                let reason = if next_valid.is_some() {
                    "records that fail their checksum"
                } else {
                    "torn or damaged tail"
                };
                drop_run(batch_start, end, reason, &mut salvaged.dropped);
                batch_start = end;
            }
            Step::OpenBatch { .. } => {}
        }
        None
    })?;
    if !batch.is_empty() {
        drop_run(batch_start, len, "batch cut short", &mut salvaged.dropped);
    }
    Ok(salvaged)
}

/// Files a verified batch: `begin`/`seal` entries set the range, the rest
/// is data.
fn keep(salvaged: &mut Salvaged, batch: Vec<Good>) {
    let mut data = Vec::with_capacity(batch.len());
    for good in batch {
        match good.kind {
            EntryKind::Begin => {
                salvaged.begin.get_or_insert(good.seq);
            }
            EntryKind::Seal => salvaged.seal = Some(good.seq),
            _ => data.push(good),
        }
    }
    if !data.is_empty() {
        salvaged.batches.push(data);
    }
}

/// Whether a damaged region reads as a chain of whole records (length
/// fields landing exactly on its end) whose last one ended its batch.
fn region_ends_batch(region: &[u8]) -> bool {
    let mut pos = 0usize;
    let mut last_flags = None;
    while pos < region.len() {
        let Some(header) = region.get(pos..pos + RECORD_HEADER_LEN) else {
            return false;
        };
        let mut len_bytes = [0u8; 4];
        len_bytes.copy_from_slice(&header[LEN_OFFSET..LEN_OFFSET + 4]);
        let len = u32::from_le_bytes(len_bytes) as usize;
        let Some(next) = pos
            .checked_add(RECORD_HEADER_LEN)
            .and_then(|p| p.checked_add(len))
        else {
            return false;
        };
        last_flags = Some(header[FLAGS_OFFSET]);
        pos = next;
    }
    pos == region.len() && last_flags.is_some_and(|f| f & FLAG_BATCH_CONTINUES == 0)
}

/// The range each segment will cover, so that the ranges tile `1..=last`
/// (see the module docs, step 3). Holes are recorded in `lost`.
fn plan_ranges(segments: &[Salvaged], lost: &mut Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    let mut ranges = Vec::with_capacity(segments.len());
    let mut expected = 1u64;
    for (i, segment) in segments.iter().enumerate() {
        let min_data = segment.data_seqs().min();
        let max_data = segment.data_seqs().max();
        let mut first = segment.begin.unwrap_or(expected);
        if first > expected {
            // A hole: seqs expected..first are in no segment.
            lost.push((expected, first - 1));
            first = expected;
        }
        // Kept data must lie inside the range.
        if let Some(min) = min_data {
            first = first.min(min);
        }
        let next_first = segments.get(i + 1).and_then(|s| s.begin);
        let mut last = match (segment.seal, next_first) {
            (Some(seal), _) => seal,
            (None, Some(next)) if next > first => next - 1,
            _ => max_data.unwrap_or(first.saturating_sub(1)),
        };
        if let Some(max) = max_data {
            last = last.max(max);
        }
        ranges.push((first, last));
        if last >= first {
            expected = expected.max(last + 1);
        }
    }
    ranges
}

/// The bytes of a repaired segment.
fn rebuild(segment: &Salvaged, first: u64, seal: Option<u64>) -> Vec<u8> {
    let mut out = encode_file_header().to_vec();
    let mut entry = Vec::new();
    encode_entry(first, EntryKind::Begin, b"", b"", &mut entry);
    encode_record(out.len() as u64, 0, &entry, &mut out);
    // Each record's checksum covers its offset, so a kept record is
    // re-encoded at its new place (its payload and flags unchanged).
    for good in segment.batches.iter().flatten() {
        encode_record(out.len() as u64, good.flags, &good.payload, &mut out);
    }
    if let Some(last) = seal {
        entry.clear();
        encode_entry(last, EntryKind::Seal, b"", b"", &mut entry);
        encode_record(out.len() as u64, 0, &entry, &mut out);
    }
    out
}

/// Rebuilds the hint of the sealed segment `id` of `dir` from the segment,
/// replacing the hint file if there is one. Fails (with the segment's file
/// and offset) if the segment itself is damaged: then there is nothing to
/// rebuild from, and the segment needs repair first. Returns the header
/// written.
pub fn rebuild_hint(dir: &Path, id: u64) -> Result<HintHeader> {
    rebuild_hint_with(dir, id, &MonolithicOpener)
}

/// [`rebuild_hint`] through `opener` (the hint is written through it too).
pub fn rebuild_hint_with<O: FileOpener>(dir: &Path, id: u64, opener: &O) -> Result<HintHeader> {
    let path = pydb_file::segment_path(dir, id, SEGMENT_EXTENSION);
    let file = opener.open(&path, false)?;
    let (header, entries) = recovery::scan_sealed(&path, id, &file)?;
    hint::write_hint(opener, dir, &header, &entries)?;
    Ok(header)
}

/// The plaintext of the file at `path` as `opener` reads it, up to the
/// first block (or frame) that fails its check: decorated damage becomes a
/// shorter file, whose cut the salvage reports like any torn tail.
pub(crate) fn read_salvageable<O: FileOpener>(opener: &O, path: &Path) -> Result<Vec<u8>> {
    let file = opener.open(path, false)?;
    let len = usize::try_from(file.len()?).map_err(|_| pydb_file::Error::Overflow {
        path: path.to_path_buf(),
        offset: 0,
    })?;
    let mut bytes = vec![0u8; len];
    if file.read_at(0, &mut bytes).is_ok() {
        return Ok(bytes);
    }
    // Find the readable prefix 4 KiB at a time (the encrypted block size).
    const STEP: usize = 4096;
    let mut good = 0;
    while good < len {
        let end = (good + STEP).min(len);
        if file.read_at(good as u64, &mut bytes[good..end]).is_err() {
            break;
        }
        good = end;
    }
    bytes.truncate(good);
    Ok(bytes)
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

    #[test]
    fn a_damaged_region_of_whole_records_tells_whether_it_ended_a_batch() {
        let mut region = Vec::new();
        encode_record(0, FLAG_BATCH_CONTINUES, b"abc", &mut region);
        encode_record(12, 0, b"defg", &mut region);
        assert!(region_ends_batch(&region));
        let mut continues = Vec::new();
        encode_record(0, FLAG_BATCH_CONTINUES, b"abc", &mut continues);
        assert!(!region_ends_batch(&continues));
        assert!(!region_ends_batch(&region[..region.len() - 1]));
        assert!(!region_ends_batch(b""));
    }
}
