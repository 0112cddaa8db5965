//! `pydb repair`: salvage a damaged log database, like `redis-check-aof --fix`.
//!
//! The engine refuses to open a database whose segments are damaged in the
//! middle, because skipping damage would silently drop acknowledged writes.
//! `repair` is the explicit, reported way to accept that loss: it keeps
//! every batch whose records verify, sets aside everything else, and leaves
//! a directory the engine opens.
//!
//! ## What it does, per segment (in id order)
//!
//! 1. Read the segment and walk it record by record with `pydb-wal`'s
//!    decoder. A record that fails its checksum starts a *damaged region*;
//!    the walk skips forward byte by byte to the next offset where a whole
//!    record verifies, and goes on from there.
//! 2. Keep a batch only if every record of it verifies and decodes as an
//!    entry. The first batch after a damaged region is kept only if the
//!    region can be read as a chain of whole records (their length fields
//!    land exactly on the next good record) whose last one ended its batch;
//!    otherwise its first records may be in the damage, and it is dropped.
//!    (The flags byte of a damaged record is not verified: if the damage is
//!    exactly the batch bit of that byte, a batch tail can survive. That is
//!    the one case where repair can keep part of a batch.)
//! 3. Decide the seq range the segment covers (the engine checks that the
//!    ranges tile `1..=last`): from its `begin` and `seal` entries if they
//!    verified; a lost `begin` becomes the seq right after the previous
//!    segment's range; a lost `seal` of a segment that is not the last
//!    becomes the seq right before the next segment's range (or its last
//!    kept seq). A hole between two ranges (a segment missing or lost
//!    whole) is closed by starting the later range earlier: the seqs of the
//!    hole are gone, and the report says which.
//! 4. If anything was dropped or a range changed, write a new segment: the
//!    file header, `begin`, the kept records (payload and flags as they
//!    were, re-encoded because a record's checksum covers its offset), `seal` (unless
//!    it is the last segment), to `<id>.log.tmp`, fsync, then hard-link the
//!    original into `DIR/repair-<timestamp>/`, rename the new file over the
//!    original and fsync the directory. The original is never deleted, and
//!    a crash at any step leaves either the original or the new segment
//!    under its name (a leftover `.tmp` is removed on the next open).
//! 5. Move the hint file of every rewritten segment aside too: its offsets
//!    are stale, and the engine rebuilds it on open.
//!
//! The database must be closed: repair takes the directory lock. Segment
//! ids are kept (no renumbering is needed: the engine orders by id and
//! checks seq ranges, which step 3 makes consistent).
//!
//! B+tree databases are not repaired yet: the command says so and changes
//! nothing (`pydb check` verifies their pages).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use pydb_file::{File, MonolithicFile, TEMP_SUFFIX};
use pydb_storage::DirLock;
use pydb_storage::btree::PAGE_FILE_NAME;
use pydb_storage::log::SEGMENT_EXTENSION;
use pydb_storage::log::entry::{EntryKind, decode_entry, encode_entry};
use pydb_storage::log::hint::hint_path;
use pydb_storage::log::repair as log_repair;
use pydb_storage::log::verify as log_verify;
use pydb_wal::record::{
    Decoded, FILE_HEADER_LEN, FLAG_BATCH_CONTINUES, FLAGS_OFFSET, LEN_OFFSET, RECORD_HEADER_LEN,
    decode_file_header, decode_record, encode_file_header, encode_record,
};

use pydb::EngineKind;
use pydb::meta;
use pydb::{Error, Result};

/// A run of bytes that repair did not keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    /// The segment it was in.
    pub file: PathBuf,
    /// Where the run starts.
    pub offset: u64,
    /// How many bytes.
    pub len: u64,
    /// Why.
    pub reason: String,
}

/// What `repair` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepairReport {
    /// Segments read.
    pub segments_checked: usize,
    /// Segments written anew (their originals are in the aside directory).
    pub segments_rewritten: usize,
    /// Set and delete records kept.
    pub records_kept: u64,
    /// Every run of dropped bytes, with its offset.
    pub dropped: Vec<Dropped>,
    /// Seq ranges found missing and given up (`first..=last`).
    pub lost_seqs: Vec<(u64, u64)>,
    /// Bytes of the files moved aside.
    pub bytes_moved_aside: u64,
    /// Where the replaced files went, if any were.
    pub aside_dir: Option<PathBuf>,
    /// Hint files that failed their checks: moved aside, and rebuilt from
    /// their segment unless it is the last one.
    pub hints_replaced: usize,
    /// Whether the `PYDB` metadata file was damaged and rebuilt.
    pub metadata_rebuilt: bool,
}

impl RepairReport {
    /// Whether repair found nothing to change.
    pub fn was_clean(&self) -> bool {
        self.aside_dir.is_none()
    }
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

/// Repairs the database in `dir`, printing a report to `out`.
pub fn repair_dir(dir: &Path, out: &mut dyn Write) -> Result<RepairReport> {
    let write_err = |e| Error::io("<stdout>", e);
    let ids = pydb_file::list_ids(dir, SEGMENT_EXTENSION).map_err(pydb_storage::Error::from)?;
    let metadata = match meta::read(dir) {
        Ok(Some(metadata)) => Some(metadata),
        Ok(None) => {
            return Err(Error::NotADatabase {
                dir: dir.to_path_buf(),
                found: "no PYDB metadata file".into(),
            });
        }
        // Garbage metadata of a directory that holds log segments (and no
        // page file) is rebuilt below: the segments say what it was.
        Err(e) if e.is_corruption() && !ids.is_empty() && !dir.join(PAGE_FILE_NAME).exists() => {
            None
        }
        Err(e) => return Err(e),
    };
    if let Some(metadata) = &metadata
        && metadata.engine != EngineKind::Log
    {
        return Err(Error::InvalidArgument(format!(
            "repair of a {} database is not implemented yet; `pydb check` reports its damage, \
             and nothing was changed",
            metadata.engine
        )));
    }
    // Refuses (Error::Locked) while the database is open elsewhere.
    let _lock = DirLock::acquire(dir)?;
    writeln!(out, "repairing {}", dir.display()).map_err(write_err)?;
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let aside = dir.join(format!("repair-{stamp}"));
    let mut report = RepairReport::default();
    if metadata.is_none() {
        rebuild_metadata(dir, &aside, &mut report)?;
        writeln!(
            out,
            "  {}: damaged; rebuilt for the log engine from its segments",
            meta::META_FILE_NAME
        )
        .map_err(write_err)?;
    }

    let mut segments = Vec::with_capacity(ids.len());
    for &id in &ids {
        let path = pydb_file::segment_path(dir, id, SEGMENT_EXTENSION);
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        segments.push(salvage(id, path, Bytes::from(bytes)));
    }
    report.segments_checked = segments.len();
    let ranges = plan_ranges(&segments, &mut report.lost_seqs);

    let last = segments.len().saturating_sub(1);
    for (i, (segment, &(first, last_seq))) in segments.iter().zip(&ranges).enumerate() {
        report.records_kept += segment.batches.iter().map(|b| b.len() as u64).sum::<u64>();
        let is_last = i == last;
        let unchanged = segment.dropped.is_empty()
            && segment.begin == Some(first)
            && (is_last && segment.seal.is_none() || segment.seal == Some(last_seq));
        if unchanged {
            let line = format!("  segment {:>6}: ok", segment.id);
            writeln!(out, "{line}").map_err(write_err)?;
            continue;
        }
        // The last segment stays unsealed (active) unless it was sealed.
        let seal = (!is_last || segment.seal.is_some()).then_some(last_seq);
        let new = rebuild(segment, first, seal);
        std::fs::create_dir_all(&aside).map_err(|e| Error::io(&aside, e))?;
        report.bytes_moved_aside += replace(dir, &aside, &segment.path, &new)?;
        let hint = hint_path(dir, segment.id);
        if hint.exists() {
            report.bytes_moved_aside += move_aside(&aside, &hint)?;
        }
        report.segments_rewritten += 1;
        report.aside_dir = Some(aside.clone());
        let kept: usize = segment.batches.iter().map(Vec::len).sum();
        writeln!(
            out,
            "  segment {:>6}: rewritten, {kept} records kept, covers seqs {first}..={last_seq}",
            segment.id
        )
        .map_err(write_err)?;
        for d in &segment.dropped {
            writeln!(
                out,
                "    dropped {} bytes at offset {}: {}",
                d.len, d.offset, d.reason
            )
            .map_err(write_err)?;
        }
        report.dropped.extend(segment.dropped.iter().cloned());
    }
    pydb_file::sync_dir(dir).map_err(pydb_storage::Error::from)?;
    rebuild_hints(dir, &aside, &mut report, out)?;

    for (first, last) in &report.lost_seqs {
        writeln!(
            out,
            "  seqs {first}..={last} are in no segment (a segment is missing): given up"
        )
        .map_err(write_err)?;
    }
    let dropped_bytes: u64 = report.dropped.iter().map(|d| d.len).sum();
    writeln!(
        out,
        "{} segments checked, {} rewritten; {} records kept; {} runs of {} bytes dropped",
        report.segments_checked,
        report.segments_rewritten,
        report.records_kept,
        report.dropped.len(),
        dropped_bytes
    )
    .map_err(write_err)?;
    match &report.aside_dir {
        Some(aside) => writeln!(
            out,
            "{} bytes of replaced files moved to {} (nothing was deleted)",
            report.bytes_moved_aside,
            aside.display()
        ),
        None => writeln!(out, "nothing to repair"),
    }
    .map_err(write_err)?;
    Ok(report)
}

/// Moves a damaged `PYDB` file aside and writes one for the log engine.
/// The index byte is kept when it names a known index (it is a hint to
/// the engine, not data); otherwise the default index is written.
fn rebuild_metadata(dir: &Path, aside: &Path, report: &mut RepairReport) -> Result<()> {
    let path = meta::path_in(dir);
    let old = std::fs::read(&path).unwrap_or_default();
    let index = old
        .get(meta::META_INDEX_OFFSET)
        .and_then(|&id| meta::index_from_id(id))
        .flatten()
        .unwrap_or(pydb::Options::default().index);
    std::fs::create_dir_all(aside).map_err(|e| Error::io(aside, e))?;
    if path.exists() {
        report.bytes_moved_aside += keep_aside(aside, &path)?;
    }
    meta::write(dir, &meta::Metadata::new(EngineKind::Log, Some(index)))?;
    report.metadata_rebuilt = true;
    report.aside_dir = Some(aside.to_path_buf());
    Ok(())
}

/// Replaces every hint that fails the checks opening applies
/// ([`pydb_storage::log::verify`]): the old one is moved aside, and a sealed
/// segment's hint is rebuilt from the segment by the engine's own code
/// ([`pydb_storage::log::repair::rebuild_hint`]). The last segment's hint
/// is only moved aside: opening scans that segment, and a clean close
/// writes its hint.
fn rebuild_hints(
    dir: &Path,
    aside: &Path,
    report: &mut RepairReport,
    out: &mut dyn Write,
) -> Result<()> {
    let write_err = |e| Error::io("<stdout>", e);
    let verified = log_verify::verify_dir(dir)?;
    let last = verified.segments.last().copied();
    for finding in verified.bad_hints() {
        let Some(id) = finding
            .path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(pydb_file::parse_id)
        else {
            continue;
        };
        std::fs::create_dir_all(aside).map_err(|e| Error::io(aside, e))?;
        report.bytes_moved_aside += move_aside(aside, &finding.path)?;
        report.aside_dir = Some(aside.to_path_buf());
        report.hints_replaced += 1;
        if Some(id) == last {
            writeln!(
                out,
                "  hint {:>9}: damaged ({}); moved aside (the segment is the last: opening \
                 scans it)",
                id, finding.reason
            )
        } else {
            match log_repair::rebuild_hint(dir, id) {
                Ok(_) => writeln!(
                    out,
                    "  hint {:>9}: damaged ({}); rebuilt from its segment",
                    id, finding.reason
                ),
                // The segment itself is damaged beyond what the steps above
                // rewrite: opening reports it; the hint stays aside.
                Err(e) if e.is_corruption() => writeln!(
                    out,
                    "  hint {:>9}: damaged ({}); moved aside, not rebuilt: {e}",
                    id, finding.reason
                ),
                Err(e) => return Err(e.into()),
            }
        }
        .map_err(write_err)?;
    }
    pydb_file::sync_dir(dir).map_err(pydb_storage::Error::from)?;
    Ok(())
}

/// Walks a segment and keeps every whole batch whose records verify.
fn salvage(id: u64, path: PathBuf, bytes: Bytes) -> Salvaged {
    let mut salvaged = Salvaged {
        id,
        path: path.clone(),
        begin: None,
        seal: None,
        batches: Vec::new(),
        dropped: Vec::new(),
    };
    // Adjacent runs (a damaged record and the rest of its batch) are
    // reported as one.
    let drop_run = |offset: usize, end: usize, reason: &str, out: &mut Vec<Dropped>| {
        if let Some(last) = out.last_mut()
            && last.offset + last.len == offset as u64
        {
            last.len += (end - offset) as u64;
        } else if end > offset {
            out.push(Dropped {
                file: path.clone(),
                offset: offset as u64,
                len: (end - offset) as u64,
                reason: reason.to_string(),
            });
        }
    };
    let mut pos = FILE_HEADER_LEN.min(bytes.len());
    if let Err(e) = decode_file_header(&bytes) {
        drop_run(
            0,
            pos,
            &format!("file header: {e:?}"),
            &mut salvaged.dropped,
        );
    }
    let mut batch: Vec<Good> = Vec::new();
    let mut batch_start = pos;
    // Whether the next record may start a batch: false right after a
    // damaged region that did not provably end a batch.
    let mut at_batch_start = true;
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        if let Decoded::Record { flags, len } = decode_record(rest, pos as u64) {
            let payload = bytes.slice(pos + RECORD_HEADER_LEN..pos + len);
            let good = decode_entry(&payload).ok().map(|entry| Good {
                flags,
                payload: payload.clone(),
                kind: entry.kind,
                seq: entry.seq,
            });
            let ends_batch = flags & FLAG_BATCH_CONTINUES == 0;
            match good {
                Some(good) => batch.push(good),
                None => {
                    // Verified bytes that are not an entry: drop the batch.
                    at_batch_start = false;
                }
            }
            pos += len;
            if ends_batch {
                if at_batch_start && !batch.is_empty() {
                    keep(&mut salvaged, std::mem::take(&mut batch));
                } else {
                    drop_run(
                        batch_start,
                        pos,
                        "batch whose start is damaged or not an entry",
                        &mut salvaged.dropped,
                    );
                    batch.clear();
                }
                at_batch_start = true;
                batch_start = pos;
            }
            continue;
        }
        // Damage: the batch in progress is lost; find the next good record.
        let damage_start = batch_start;
        batch.clear();
        let next = (pos + 1..bytes.len()).find(|&at| {
            matches!(
                decode_record(&bytes[at..], at as u64),
                Decoded::Record { .. }
            )
        });
        let end = next.unwrap_or(bytes.len());
        at_batch_start = next.is_some_and(|next| region_ends_batch(&bytes[pos..next]));
        let reason = if next.is_some() {
            "records that fail their checksum"
        } else {
            "torn or damaged tail"
        };
        drop_run(damage_start, end, reason, &mut salvaged.dropped);
        pos = end;
        batch_start = end;
    }
    if !batch.is_empty() {
        drop_run(
            batch_start,
            bytes.len(),
            "batch cut short",
            &mut salvaged.dropped,
        );
    }
    salvaged
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

/// Writes `new` under a temp name, keeps the original in `aside` (a hard
/// link, or a copy where links fail), and renames the new file over the
/// original. Returns the size of the original.
fn replace(dir: &Path, aside: &Path, original: &Path, new: &[u8]) -> Result<u64> {
    let mut temp = original.as_os_str().to_owned();
    temp.push(".");
    temp.push(TEMP_SUFFIX);
    let temp = PathBuf::from(temp);
    let _ = std::fs::remove_file(&temp);
    let file = MonolithicFile::create(&temp).map_err(pydb_storage::Error::from)?;
    file.append(new).map_err(pydb_storage::Error::from)?;
    file.sync_data().map_err(pydb_storage::Error::from)?;
    drop(file);
    let size = keep_aside(aside, original)?;
    std::fs::rename(&temp, original).map_err(|e| Error::io(original, e))?;
    pydb_file::sync_dir(dir).map_err(pydb_storage::Error::from)?;
    Ok(size)
}

/// Puts a durable copy of `path` in `aside`, leaving `path` in place.
fn keep_aside(aside: &Path, path: &Path) -> Result<u64> {
    let name = path
        .file_name()
        .ok_or_else(|| Error::InvalidArgument(format!("{} has no file name", path.display())))?;
    let target = aside.join(name);
    if std::fs::hard_link(path, &target).is_err() {
        std::fs::copy(path, &target).map_err(|e| Error::io(&target, e))?;
        let copy = MonolithicFile::open(&target, false).map_err(pydb_storage::Error::from)?;
        copy.sync_data().map_err(pydb_storage::Error::from)?;
    }
    pydb_file::sync_dir(aside).map_err(pydb_storage::Error::from)?;
    std::fs::metadata(&target)
        .map(|m| m.len())
        .map_err(|e| Error::io(&target, e))
}

/// Moves `path` into `aside`.
fn move_aside(aside: &Path, path: &Path) -> Result<u64> {
    let size = keep_aside(aside, path)?;
    std::fs::remove_file(path).map_err(|e| Error::io(path, e))?;
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

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
