//! Hint files: a sealed segment's index, so that opening skips the values.
//!
//! Rebuilding the index means reading every record of every segment,
//! values included: with 100-byte values and 16-byte keys that is eight
//! times more bytes than the keys themselves. Bitcask's answer, kept here,
//! is a *hint file* beside every sealed segment (`<id>.hint`) listing each
//! entry's key, kind, sequence number and position, but not its value.
//! Opening reads the hints and touches the segments only where a hint is
//! missing or fails a check.
//!
//! A hint is an optimization, never the truth: it is written after its
//! segment is sealed (to a temp name, synced, renamed, directory synced),
//! and if it is missing, damaged, or disagrees with its segment (another
//! segment id, another segment length, an entry past the segment's end),
//! opening logs a warning, rebuilds it from the segment and goes on. A hint
//! that lies in a way these checks miss cannot make a read return wrong
//! data either: a point read checks the CRC, key and sequence number of the
//! record it lands on.
//!
//! ## Layout (little-endian, see `docs/formats.md`)
//!
//! ```text
//! header (56 bytes)
//!  0  [u8; 8] magic "PYDBHINT"
//!  8  u32     version (1)
//! 12  u64     segment id
//! 20  u64     segment length in bytes when the hint was written
//! 28  u64     first seq the segment covers
//! 36  u64     last seq the segment covers
//! 44  u64     number of entries
//! 52  u32     CRC-32 of bytes 0..52
//!
//! entry (29 + key_len bytes), one per set or delete in the segment
//!  0  u32     CRC-32 of bytes 4..29 + key_len
//!  4  u64     seq
//! 12  u8      kind (1 = set, 2 = delete)
//! 13  u32     key_len
//! 17  u64     offset of the record in the segment
//! 25  u32     record length (header included)
//! 29  [u8]    key
//! ```
//!
//! Each entry has its own CRC so that a check fails at the entry that is
//! damaged; the count in the header catches a hint cut at an entry boundary.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use pydb_file::{File, FileOpener};

use crate::log::entry::EntryKind;
use crate::{Error, Result};

/// The magic bytes that open every hint file.
pub const HINT_MAGIC: [u8; 8] = *b"PYDBHINT";
/// The hint format version this build writes and reads.
pub const HINT_VERSION: u32 = 1;
/// The extension of hint files.
pub const HINT_EXTENSION: &str = "hint";

/// Offset of the magic in the hint header.
pub const MAGIC_OFFSET: usize = 0;
/// Offset of the version in the hint header.
pub const VERSION_OFFSET: usize = 8;
/// Offset of the segment id in the hint header.
pub const SEGMENT_ID_OFFSET: usize = 12;
/// Offset of the segment length in the hint header.
pub const SEGMENT_LEN_OFFSET: usize = 20;
/// Offset of the first covered seq in the hint header.
pub const FIRST_SEQ_OFFSET: usize = 28;
/// Offset of the last covered seq in the hint header.
pub const LAST_SEQ_OFFSET: usize = 36;
/// Offset of the entry count in the hint header.
pub const ENTRY_COUNT_OFFSET: usize = 44;
/// Offset of the header CRC in the hint header.
pub const HEADER_CRC_OFFSET: usize = 52;
/// Length of the hint header; the first entry starts here.
pub const HINT_HEADER_LEN: usize = 56;

/// Offset of the CRC in a hint entry.
pub const ENTRY_CRC_OFFSET: usize = 0;
/// Offset of the seq in a hint entry.
pub const ENTRY_SEQ_OFFSET: usize = 4;
/// Offset of the kind in a hint entry.
pub const ENTRY_KIND_OFFSET: usize = 12;
/// Offset of the key length in a hint entry.
pub const ENTRY_KEY_LEN_OFFSET: usize = 13;
/// Offset of the record offset in a hint entry.
pub const ENTRY_RECORD_OFFSET_OFFSET: usize = 17;
/// Offset of the record length in a hint entry.
pub const ENTRY_RECORD_LEN_OFFSET: usize = 25;
/// Length of the fixed part of a hint entry; the key starts here.
pub const HINT_ENTRY_HEADER_LEN: usize = 29;

/// What a hint says about its segment as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HintHeader {
    /// The segment the hint describes.
    pub segment_id: u64,
    /// The segment's length when the hint was written.
    pub segment_len: u64,
    /// The first sequence number the segment covers.
    pub first_seq: u64,
    /// The last sequence number the segment covers.
    pub last_seq: u64,
}

/// One set or delete of the segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HintEntry {
    /// The entry's sequence number.
    pub seq: u64,
    /// `Set` or `Delete`.
    pub kind: EntryKind,
    /// The key.
    pub key: Bytes,
    /// Offset of the record in the segment.
    pub offset: u64,
    /// Length of the record, header included.
    pub len: u32,
}

/// The path of the hint of segment `id` in `dir`.
pub fn hint_path(dir: &Path, id: u64) -> PathBuf {
    pydb_file::segment_path(dir, id, HINT_EXTENSION)
}

/// Encodes a whole hint file.
pub fn encode_hint(header: &HintHeader, entries: &[HintEntry]) -> Vec<u8> {
    let keys: usize = entries.iter().map(|e| e.key.len()).sum();
    let mut out =
        Vec::with_capacity(HINT_HEADER_LEN + entries.len() * HINT_ENTRY_HEADER_LEN + keys);
    encode_header(header, entries.len() as u64, &mut out);
    for entry in entries {
        encode_entry(
            entry.seq,
            entry.kind,
            &entry.key,
            entry.offset,
            entry.len,
            &mut out,
        );
    }
    out
}

/// Appends the hint header for `count` entries to `out`.
fn encode_header(header: &HintHeader, count: u64, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&HINT_MAGIC);
    out.extend_from_slice(&HINT_VERSION.to_le_bytes());
    out.extend_from_slice(&header.segment_id.to_le_bytes());
    out.extend_from_slice(&header.segment_len.to_le_bytes());
    out.extend_from_slice(&header.first_seq.to_le_bytes());
    out.extend_from_slice(&header.last_seq.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    let crc = crc32fast::hash(&out[start..start + HEADER_CRC_OFFSET]);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// Appends one encoded hint entry to `out`.
///
/// The fixed part is laid out in an array on the stack and the checksum
/// taken over it and the key, so the buffer grows once per entry: this runs
/// under the writer mutex on every write of the active segment
/// ([`PendingHint::push`]). Most of its cost is the checksum (callgrind:
/// 231 instructions an entry with 16-byte keys, 252 with seven appends).
fn encode_entry(seq: u64, kind: EntryKind, key: &[u8], offset: u64, len: u32, out: &mut Vec<u8>) {
    // The offsets are constants below the array's length: no slice here
    // can be out of bounds.
    let mut head = [0u8; HINT_ENTRY_HEADER_LEN];
    head[ENTRY_SEQ_OFFSET..ENTRY_KIND_OFFSET].copy_from_slice(&seq.to_le_bytes());
    head[ENTRY_KIND_OFFSET] = kind as u8;
    head[ENTRY_KEY_LEN_OFFSET..ENTRY_RECORD_OFFSET_OFFSET]
        .copy_from_slice(&(key.len() as u32).to_le_bytes());
    head[ENTRY_RECORD_OFFSET_OFFSET..ENTRY_RECORD_LEN_OFFSET]
        .copy_from_slice(&offset.to_le_bytes());
    head[ENTRY_RECORD_LEN_OFFSET..HINT_ENTRY_HEADER_LEN].copy_from_slice(&len.to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&head[ENTRY_SEQ_OFFSET..]);
    crc.update(key);
    head[ENTRY_CRC_OFFSET..ENTRY_SEQ_OFFSET].copy_from_slice(&crc.finalize().to_le_bytes());
    out.reserve(head.len() + key.len());
    out.extend_from_slice(&head);
    out.extend_from_slice(key);
}

/// The entries of the active segment's hint, kept *encoded* as they are
/// written: one append to a byte buffer per write, instead of a
/// [`HintEntry`] with its own key (`Bytes`) per write. That spares the
/// write path an allocation (a clone of the index's key would be one: a
/// `Bytes` made from a `Vec` allocates its shared header on first clone),
/// and takes 45 bytes per entry with 16-byte keys instead of about 100
/// (a 64-byte `HintEntry` and that shared header). Sealing or closing the segment puts the header in front and writes
/// the file ([`PendingHint::encode`]).
#[derive(Debug, Clone, Default)]
pub(crate) struct PendingHint {
    entries: Vec<u8>,
    count: u64,
}

impl PendingHint {
    /// The entries of `entries`, encoded (at open, for a segment that goes
    /// on taking writes; and for the hints recovery and compaction write).
    pub(crate) fn from_entries(entries: &[HintEntry]) -> Self {
        let mut pending = Self::default();
        for e in entries {
            pending.push(e.seq, e.kind, &e.key, e.offset, e.len);
        }
        pending
    }

    /// Adds the entry of a set or delete.
    pub(crate) fn push(&mut self, seq: u64, kind: EntryKind, key: &[u8], offset: u64, len: u32) {
        encode_entry(seq, kind, key, offset, len, &mut self.entries);
        self.count += 1;
    }

    /// The whole hint file, with `header` in front.
    pub(crate) fn encode(&self, header: &HintHeader) -> Vec<u8> {
        let mut out = Vec::with_capacity(HINT_HEADER_LEN + self.entries.len());
        encode_header(header, self.count, &mut out);
        out.extend_from_slice(&self.entries);
        out
    }
}

/// Decodes a hint file and checks it against the segment it describes
/// (`segment_id`, whose file is `segment_len` bytes long). Any failure is
/// a reason to rebuild the hint, returned as text for the warning.
pub fn decode_hint(
    bytes: &[u8],
    segment_id: u64,
    segment_len: u64,
) -> Result<(HintHeader, Vec<HintEntry>), String> {
    decode(bytes, segment_id, segment_len, Coverage::Whole)
}

/// Decodes the hint of the *last* segment, which may describe only a
/// prefix of it: the hint written on a clean close, before more appends
/// (or a crash's torn tail) made the segment longer. Accepts a hint whose
/// segment length is at most `segment_len`; every entry must lie inside
/// the length the hint records. The caller scans the rest of the segment.
pub fn decode_hint_prefix(
    bytes: &[u8],
    segment_id: u64,
    segment_len: u64,
) -> Result<(HintHeader, Vec<HintEntry>), String> {
    decode(bytes, segment_id, segment_len, Coverage::Prefix)
}

/// How much of its segment a hint must describe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Coverage {
    /// All of it: a sealed segment never changes.
    Whole,
    /// A prefix: the last segment may have grown since.
    Prefix,
}

fn decode(
    bytes: &[u8],
    segment_id: u64,
    segment_len: u64,
    coverage: Coverage,
) -> Result<(HintHeader, Vec<HintEntry>), String> {
    let header = bytes
        .get(..HINT_HEADER_LEN)
        .ok_or("shorter than its header")?;
    if header[MAGIC_OFFSET..VERSION_OFFSET] != HINT_MAGIC {
        return Err("bad magic".into());
    }
    if u32_at(header, HEADER_CRC_OFFSET) != crc32fast::hash(&header[..HEADER_CRC_OFFSET]) {
        return Err("header checksum mismatch".into());
    }
    let version = u32_at(header, VERSION_OFFSET);
    if version != HINT_VERSION {
        return Err(format!("unknown version {version}"));
    }
    let hint = HintHeader {
        segment_id: u64_at(header, SEGMENT_ID_OFFSET),
        segment_len: u64_at(header, SEGMENT_LEN_OFFSET),
        first_seq: u64_at(header, FIRST_SEQ_OFFSET),
        last_seq: u64_at(header, LAST_SEQ_OFFSET),
    };
    if hint.segment_id != segment_id {
        return Err(format!("describes segment {}", hint.segment_id));
    }
    let fits = match coverage {
        Coverage::Whole => hint.segment_len == segment_len,
        Coverage::Prefix => hint.segment_len <= segment_len,
    };
    if !fits {
        return Err(format!(
            "describes a segment of {} bytes, the segment has {segment_len}",
            hint.segment_len
        ));
    }
    // Entries are checked against the length the hint describes: bytes
    // appended after it was written are not the hint's business.
    let segment_len = hint.segment_len;
    let count = u64_at(header, ENTRY_COUNT_OFFSET);
    // Never trust a count to size an allocation: each entry takes at least
    // its fixed header, so the bytes present bound the real count.
    let max_count = (bytes.len() / HINT_ENTRY_HEADER_LEN) as u64;
    if count > max_count {
        return Err(format!("claims {count} entries, room for {max_count}"));
    }
    let mut entries = Vec::with_capacity(count as usize);
    let mut pos = HINT_HEADER_LEN;
    let min_record = (pydb_wal::RECORD_HEADER_LEN + super::entry::ENTRY_HEADER_LEN) as u64;
    for index in 0..count {
        let fixed = bytes
            .get(pos..pos + HINT_ENTRY_HEADER_LEN)
            .ok_or_else(|| format!("entry {index} cut short"))?;
        let key_len = u32_at(fixed, ENTRY_KEY_LEN_OFFSET) as usize;
        let end = (pos + HINT_ENTRY_HEADER_LEN)
            .checked_add(key_len)
            .ok_or_else(|| format!("entry {index} key length overflows"))?;
        let whole = bytes
            .get(pos..end)
            .ok_or_else(|| format!("entry {index} key cut short"))?;
        if u32_at(whole, ENTRY_CRC_OFFSET) != crc32fast::hash(&whole[ENTRY_SEQ_OFFSET..]) {
            return Err(format!("entry {index} checksum mismatch"));
        }
        let kind = match EntryKind::from_byte(whole[ENTRY_KIND_OFFSET]) {
            Some(kind) if kind.is_data() => kind,
            _ => return Err(format!("entry {index} has a bad kind")),
        };
        let entry = HintEntry {
            seq: u64_at(whole, ENTRY_SEQ_OFFSET),
            kind,
            key: Bytes::copy_from_slice(&whole[HINT_ENTRY_HEADER_LEN..]),
            offset: u64_at(whole, ENTRY_RECORD_OFFSET_OFFSET),
            len: u32_at(whole, ENTRY_RECORD_LEN_OFFSET),
        };
        let record_end = entry.offset.checked_add(u64::from(entry.len));
        if entry.offset < pydb_wal::FILE_HEADER_LEN as u64
            || record_end.is_none_or(|end| end > segment_len)
            || u64::from(entry.len) < min_record + key_len as u64
        {
            return Err(format!(
                "entry {index} points at {}..+{}, outside the segment",
                entry.offset, entry.len
            ));
        }
        if entry.seq < hint.first_seq || entry.seq > hint.last_seq {
            return Err(format!(
                "entry {index} seq {} outside the segment's range",
                entry.seq
            ));
        }
        entries.push(entry);
        pos = end;
    }
    if pos != bytes.len() {
        return Err(format!("{} bytes after the last entry", bytes.len() - pos));
    }
    Ok((hint, entries))
}

/// Writes the hint of a segment: to `<id>.hint.tmp`, synced, renamed to
/// `<id>.hint`, directory synced. A crash leaves either the old state or
/// the complete hint, never a torn one under the real name.
pub fn write_hint<O: FileOpener>(
    opener: &O,
    dir: &Path,
    header: &HintHeader,
    entries: &[HintEntry],
) -> Result<()> {
    write_hint_bytes(
        opener,
        dir,
        header.segment_id,
        &encode_hint(header, entries),
    )
}

/// Writes an encoded hint file for segment `segment_id`: to a temp name,
/// synced, renamed, directory synced.
pub(crate) fn write_hint_bytes<O: FileOpener>(
    opener: &O,
    dir: &Path,
    segment_id: u64,
    bytes: &[u8],
) -> Result<()> {
    let path = hint_path(dir, segment_id);
    let temp = temp_hint_path(dir, segment_id);
    let file = opener.open(&temp, true)?;
    file.set_len(0)?;
    file.append(bytes)?;
    file.sync_data()?;
    drop(file);
    opener.rename(&temp, &path)?;
    opener.sync_dir(dir)?;
    Ok(())
}

/// Reads and checks the hint of segment `segment_id`. `Ok(None)` when there
/// is no hint file; `Err(reason)` when it exists but cannot be used.
pub fn read_hint<O: FileOpener>(
    opener: &O,
    dir: &Path,
    segment_id: u64,
    segment_len: u64,
) -> Result<Option<(HintHeader, Vec<HintEntry>)>, String> {
    read(opener, dir, segment_id, segment_len, Coverage::Whole)
}

/// Reads and checks the hint of the last segment `segment_id`, which may
/// describe a prefix of it (see [`decode_hint_prefix`]).
pub fn read_hint_prefix<O: FileOpener>(
    opener: &O,
    dir: &Path,
    segment_id: u64,
    segment_len: u64,
) -> Result<Option<(HintHeader, Vec<HintEntry>)>, String> {
    read(opener, dir, segment_id, segment_len, Coverage::Prefix)
}

fn read<O: FileOpener>(
    opener: &O,
    dir: &Path,
    segment_id: u64,
    segment_len: u64,
    coverage: Coverage,
) -> Result<Option<(HintHeader, Vec<HintEntry>)>, String> {
    let path = hint_path(dir, segment_id);
    let file = match opener.open(&path, false) {
        Ok(file) => file,
        Err(e) if e.io_kind() == Some(std::io::ErrorKind::NotFound) => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let len = file.len().map_err(|e| e.to_string())?;
    let len = usize::try_from(len).map_err(|_| "hint larger than memory".to_string())?;
    let mut bytes = vec![0u8; len];
    file.read_at(0, &mut bytes).map_err(|e| e.to_string())?;
    decode(&bytes, segment_id, segment_len, coverage).map(Some)
}

/// Removes the hint of `segment_id` if it exists.
pub fn remove_hint<O: FileOpener>(opener: &O, dir: &Path, segment_id: u64) -> Result<()> {
    let path = hint_path(dir, segment_id);
    match opener.remove(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.io_kind() == Some(std::io::ErrorKind::NotFound) => Ok(()),
        Err(e) => Err(Error::from(e)),
    }
}

fn temp_hint_path(dir: &Path, id: u64) -> PathBuf {
    let mut name = hint_path(dir, id).into_os_string();
    name.push(".");
    name.push(pydb_file::TEMP_SUFFIX);
    PathBuf::from(name)
}

/// Removes hint temp files left by a crash and hints whose segment is
/// gone (e.g. compaction output that never got installed). Returns the
/// paths removed.
pub fn remove_stray_hints<O: FileOpener>(
    opener: &O,
    dir: &Path,
    segment_ids: &[u64],
) -> Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    let temp_suffix = format!(".{HINT_EXTENSION}.{}", pydb_file::TEMP_SUFFIX);
    for name in opener.list_dir(dir)? {
        let Some(name) = name.to_str() else { continue };
        let stray = if let Some(stem) = name.strip_suffix(&temp_suffix) {
            pydb_file::parse_id(stem).is_some()
        } else if let Some(stem) = name.strip_suffix(&format!(".{HINT_EXTENSION}")) {
            pydb_file::parse_id(stem).is_some_and(|id| segment_ids.binary_search(&id).is_err())
        } else {
            false
        };
        if stray {
            let path = dir.join(name);
            opener.remove(&path)?;
            removed.push(path);
        }
    }
    if !removed.is_empty() {
        opener.sync_dir(dir)?;
    }
    Ok(removed)
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (HintHeader, Vec<HintEntry>) {
        let header = HintHeader {
            segment_id: 3,
            segment_len: 1000,
            first_seq: 10,
            last_seq: 20,
        };
        let entries = vec![
            HintEntry {
                seq: 10,
                kind: EntryKind::Set,
                key: Bytes::from_static(b"apple"),
                offset: 16,
                len: 40,
            },
            HintEntry {
                seq: 12,
                kind: EntryKind::Delete,
                key: Bytes::from_static(b"pear"),
                offset: 56,
                len: 30,
            },
        ];
        (header, entries)
    }

    #[test]
    fn layout_is_pinned() {
        let (header, entries) = sample();
        let bytes = encode_hint(&header, &entries[..1]);
        assert_eq!(bytes.len(), HINT_HEADER_LEN + HINT_ENTRY_HEADER_LEN + 5);
        assert_eq!(&bytes[..8], b"PYDBHINT");
        assert_eq!(u32_at(&bytes, VERSION_OFFSET), 1);
        assert_eq!(u64_at(&bytes, SEGMENT_ID_OFFSET), 3);
        assert_eq!(u64_at(&bytes, SEGMENT_LEN_OFFSET), 1000);
        assert_eq!(u64_at(&bytes, FIRST_SEQ_OFFSET), 10);
        assert_eq!(u64_at(&bytes, LAST_SEQ_OFFSET), 20);
        assert_eq!(u64_at(&bytes, ENTRY_COUNT_OFFSET), 1);
        let entry = &bytes[HINT_HEADER_LEN..];
        assert_eq!(u64_at(entry, ENTRY_SEQ_OFFSET), 10);
        assert_eq!(entry[ENTRY_KIND_OFFSET], 1);
        assert_eq!(u32_at(entry, ENTRY_KEY_LEN_OFFSET), 5);
        assert_eq!(u64_at(entry, ENTRY_RECORD_OFFSET_OFFSET), 16);
        assert_eq!(u32_at(entry, ENTRY_RECORD_LEN_OFFSET), 40);
        assert_eq!(&entry[HINT_ENTRY_HEADER_LEN..], b"apple");
    }

    #[test]
    fn round_trips_and_checks_against_the_segment() {
        let (header, entries) = sample();
        let bytes = encode_hint(&header, &entries);
        assert_eq!(decode_hint(&bytes, 3, 1000).unwrap(), (header, entries));
        assert!(
            decode_hint(&bytes, 4, 1000)
                .unwrap_err()
                .contains("segment 3")
        );
        assert!(decode_hint(&bytes, 3, 999).is_err());
    }

    #[test]
    fn every_truncation_and_every_bit_flip_is_caught() {
        let (header, entries) = sample();
        let bytes = encode_hint(&header, &entries);
        for cut in 0..bytes.len() {
            assert!(decode_hint(&bytes[..cut], 3, 1000).is_err(), "cut at {cut}");
        }
        for byte in 0..bytes.len() {
            for bit in 0..8 {
                let mut damaged = bytes.clone();
                damaged[byte] ^= 1 << bit;
                assert!(
                    decode_hint(&damaged, 3, 1000).is_err(),
                    "flip of bit {bit} in byte {byte} went unnoticed"
                );
            }
        }
    }

    #[test]
    fn a_prefix_hint_accepts_a_longer_segment_only() {
        let (header, entries) = sample();
        let bytes = encode_hint(&header, &entries);
        assert_eq!(
            decode_hint_prefix(&bytes, 3, 5000).unwrap(),
            (header, entries.clone())
        );
        assert!(decode_hint_prefix(&bytes, 3, 1000).is_ok());
        assert!(
            decode_hint_prefix(&bytes, 3, 999).is_err(),
            "the segment shrank"
        );
        assert!(
            decode_hint(&bytes, 3, 5000).is_err(),
            "a sealed hint is exact"
        );
        // Entries must lie inside the length the hint describes, even when
        // the segment is longer now.
        let mut past = entries;
        past[1].offset = 990;
        let bytes = encode_hint(&header, &past);
        assert!(decode_hint_prefix(&bytes, 3, 5000).is_err());
    }

    #[test]
    fn entries_pointing_outside_the_segment_are_rejected() {
        let (header, mut entries) = sample();
        entries[1].offset = 990;
        let bytes = encode_hint(&header, &entries);
        assert!(
            decode_hint(&bytes, 3, 1000)
                .unwrap_err()
                .contains("outside")
        );
    }
}
