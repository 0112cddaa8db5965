//! The manifest: which tables make up the database, as a log of edits.
//!
//! The set of live tables changes at every flush (a table is added to
//! level 0) and compaction (tables removed, others added). Rewriting a
//! whole list at each change would be slow and, worse, not atomic. Instead
//! each change is one [`VersionEdit`] appended as a record to a pydb-wal
//! log, `MANIFEST-<n>`: checksummed, synced, and recovered like any log
//! (a torn last edit is an edit that never happened). Replaying the edits
//! in order rebuilds the current *version*: the tables of every level.
//!
//! Which manifest is live is named by the `CURRENT` file (one line,
//! `MANIFEST-000007 crc32=b366fa16\n`: the name and its checksum). A new manifest is started at every open, with
//! one edit that describes the whole state, and `CURRENT` is switched to
//! it atomically: write `CURRENT.tmp`, sync it, rename it over `CURRENT`,
//! sync the directory. A crash before the rename leaves the old `CURRENT`
//! and the old manifest, both intact.
//!
//! ## Edit encoding (the payload of one manifest record)
//!
//! A sequence of tagged fields; numbers are LEB128 varints:
//!
//! ```text
//! 1 log_number      WALs numbered below this are flushed and obsolete
//! 2 next_file       the next file number to hand out
//! 3 last_seq        the largest sequence number in any table
//! 4 add table       level, number, size, entries, min_seq, max_seq,
//!                   smallest (len, bytes), largest (len, bytes)
//! 5 delete table    level, number
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use bytes::Bytes;
use pydb_file::{File, FileOpener};

use super::block::{get_varint, put_varint};
use crate::{Error, Result};

/// The number of levels.
pub const MAX_LEVELS: usize = 7;

const TAG_LOG_NUMBER: u64 = 1;
const TAG_NEXT_FILE: u64 = 2;
const TAG_LAST_SEQ: u64 = 3;
const TAG_ADD: u64 = 4;
const TAG_DELETE: u64 = 5;

/// What the manifest knows of one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableMeta {
    /// The file number (`<number>.sst`).
    pub number: u64,
    /// The file size.
    pub size: u64,
    /// Entries in the table.
    pub entries: u64,
    /// Sequence range.
    pub min_seq: u64,
    /// Sequence range.
    pub max_seq: u64,
    /// Smallest key.
    pub smallest: Bytes,
    /// Largest key.
    pub largest: Bytes,
}

impl TableMeta {
    /// Whether the table's key range meets `[lo, hi]`.
    pub fn overlaps(&self, lo: &[u8], hi: &[u8]) -> bool {
        self.smallest.as_ref() <= hi && self.largest.as_ref() >= lo
    }
}

/// One change to the set of tables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VersionEdit {
    /// New log number.
    pub log_number: Option<u64>,
    /// New next file number.
    pub next_file: Option<u64>,
    /// New last sequence number.
    pub last_seq: Option<u64>,
    /// Tables added: (level, meta).
    pub added: Vec<(usize, TableMeta)>,
    /// Tables removed: (level, number).
    pub deleted: Vec<(usize, u64)>,
}

impl VersionEdit {
    /// The record payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (tag, v) in [
            (TAG_LOG_NUMBER, self.log_number),
            (TAG_NEXT_FILE, self.next_file),
            (TAG_LAST_SEQ, self.last_seq),
        ] {
            if let Some(v) = v {
                put_varint(&mut out, tag);
                put_varint(&mut out, v);
            }
        }
        for (level, number) in &self.deleted {
            put_varint(&mut out, TAG_DELETE);
            put_varint(&mut out, *level as u64);
            put_varint(&mut out, *number);
        }
        for (level, t) in &self.added {
            put_varint(&mut out, TAG_ADD);
            for v in [
                *level as u64,
                t.number,
                t.size,
                t.entries,
                t.min_seq,
                t.max_seq,
            ] {
                put_varint(&mut out, v);
            }
            for k in [&t.smallest, &t.largest] {
                put_varint(&mut out, k.len() as u64);
                out.extend_from_slice(k);
            }
        }
        out
    }

    /// Decodes a record payload; errors give the offset inside it.
    pub fn decode(bytes: &[u8]) -> std::result::Result<Self, (u64, String)> {
        let mut edit = Self::default();
        let mut pos = 0usize;
        while pos < bytes.len() {
            let at = pos as u64;
            let mut num = |what: &str| {
                get_varint(bytes, &mut pos).ok_or((at, format!("edit cut short in {what}")))
            };
            let tag = num("tag")?;
            match tag {
                TAG_LOG_NUMBER => edit.log_number = Some(num("log number")?),
                TAG_NEXT_FILE => edit.next_file = Some(num("next file")?),
                TAG_LAST_SEQ => edit.last_seq = Some(num("last seq")?),
                TAG_DELETE => {
                    let level = num("level")?;
                    let number = num("number")?;
                    edit.deleted.push((check_level(level, at)?, number));
                }
                TAG_ADD => {
                    let level = check_level(num("level")?, at)?;
                    let (number, size, entries, min_seq, max_seq) = (
                        num("number")?,
                        num("size")?,
                        num("entries")?,
                        num("seq")?,
                        num("seq")?,
                    );
                    let mut key = || -> std::result::Result<Bytes, (u64, String)> {
                        let len =
                            get_varint(bytes, &mut pos).ok_or((at, "key length".to_string()))?;
                        let end = usize::try_from(len)
                            .ok()
                            .and_then(|l| pos.checked_add(l))
                            .filter(|&e| e <= bytes.len())
                            .ok_or((at, "key past the end of the edit".to_string()))?;
                        let k = Bytes::copy_from_slice(&bytes[pos..end]);
                        pos = end;
                        Ok(k)
                    };
                    let smallest = key()?;
                    let largest = key()?;
                    if smallest > largest || min_seq > max_seq {
                        return Err((at, "table with an inverted range".into()));
                    }
                    edit.added.push((
                        level,
                        TableMeta {
                            number,
                            size,
                            entries,
                            min_seq,
                            max_seq,
                            smallest,
                            largest,
                        },
                    ));
                }
                other => return Err((at, format!("unknown edit tag {other}"))),
            }
        }
        Ok(edit)
    }
}

fn check_level(level: u64, at: u64) -> std::result::Result<usize, (u64, String)> {
    usize::try_from(level)
        .ok()
        .filter(|&l| l < MAX_LEVELS)
        .ok_or((at, format!("level {level} out of range")))
}

/// The state a manifest describes once its edits are replayed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ManifestState {
    /// Tables per level, by number.
    pub levels: Vec<BTreeMap<u64, TableMeta>>,
    /// WALs below this number are obsolete.
    pub log_number: u64,
    /// The next file number.
    pub next_file: u64,
    /// The last sequence number in a table.
    pub last_seq: u64,
    /// Edits replayed.
    pub edits: u64,
}

impl ManifestState {
    /// An empty state.
    pub fn new() -> Self {
        Self {
            levels: vec![BTreeMap::new(); MAX_LEVELS],
            ..Self::default()
        }
    }

    /// Applies one edit; an edit removing a table that is not there is
    /// damage.
    pub fn apply(&mut self, edit: &VersionEdit) -> std::result::Result<(), String> {
        if self.levels.len() != MAX_LEVELS {
            self.levels = vec![BTreeMap::new(); MAX_LEVELS];
        }
        for (level, number) in &edit.deleted {
            if self.levels[*level].remove(number).is_none() {
                return Err(format!(
                    "edit deletes table {number} absent from level {level}"
                ));
            }
        }
        for (level, t) in &edit.added {
            self.levels[*level].insert(t.number, t.clone());
        }
        if let Some(v) = edit.log_number {
            self.log_number = self.log_number.max(v);
        }
        if let Some(v) = edit.next_file {
            self.next_file = self.next_file.max(v);
        }
        if let Some(v) = edit.last_seq {
            self.last_seq = self.last_seq.max(v);
        }
        self.edits += 1;
        Ok(())
    }

    /// One edit that recreates this whole state.
    pub fn snapshot_edit(&self) -> VersionEdit {
        VersionEdit {
            log_number: Some(self.log_number),
            next_file: Some(self.next_file),
            last_seq: Some(self.last_seq),
            added: self
                .levels
                .iter()
                .enumerate()
                .flat_map(|(l, ts)| ts.values().map(move |t| (l, t.clone())))
                .collect(),
            deleted: Vec::new(),
        }
    }
}

/// Replays the manifest in `file`. A torn last record is cut off (it was
/// never acknowledged); a bad record before good ones, or an edit that
/// does not decode or apply, is corruption.
pub fn replay_manifest<F: File>(file: &F, truncate: bool) -> Result<ManifestState> {
    let mut state = ManifestState::new();
    let mut scanner = pydb_wal::Scanner::new(file)?;
    while let Some(batch) = scanner.next_batch()? {
        for record in batch {
            let edit = VersionEdit::decode(&record.payload).map_err(|(at, reason)| {
                Error::corrupted(
                    file.path(),
                    record.offset + pydb_wal::RECORD_HEADER_LEN as u64 + at,
                    reason,
                )
            })?;
            state
                .apply(&edit)
                .map_err(|reason| Error::corrupted(file.path(), record.offset, reason))?;
        }
    }
    if truncate {
        scanner.truncate_torn_tail()?;
    }
    Ok(state)
}

/// The name of the pointer file.
pub const CURRENT: &str = "CURRENT";

/// The manifest file name for `number`.
pub fn manifest_name(number: u64) -> String {
    format!("MANIFEST-{number:06}")
}

/// The text of `CURRENT` naming manifest `number`: the manifest's name, a
/// space, `crc32=` and the CRC-32 of the name in eight lowercase hex
/// digits, and a newline, e.g. `MANIFEST-000007 crc32=b366fa16\n`.
///
/// The checksum is there for the rule that every persisted record carries
/// one: a flipped digit in the name would otherwise point the database at
/// another manifest. (LevelDB and RocksDB write the bare name.)
pub fn current_text(number: u64) -> String {
    let name = manifest_name(number);
    let crc = crc32fast::hash(name.as_bytes());
    format!("{name} crc32={crc:08x}\n")
}

/// The manifest number that `text` (the whole of a `CURRENT` file) names,
/// or what is wrong with it.
///
/// Two forms are read: the checksummed one that [`current_text`] writes,
/// and the bare `MANIFEST-NNNNNN\n` that pydb wrote before the checksum
/// was added (so a database made then still opens; its next open rewrites
/// `CURRENT` in the checksummed form). A bare name that damage changed to
/// another number names a manifest that is not there (an open deletes every
/// manifest but the live one), and opening it fails.
pub fn parse_current(text: &[u8]) -> std::result::Result<u64, String> {
    let text = std::str::from_utf8(text).map_err(|_| "CURRENT is not text".to_string())?;
    let line = text
        .strip_suffix('\n')
        .ok_or_else(|| format!("CURRENT holds {text:?}: no newline at its end"))?;
    let (name, checksum) = match line.split_once(' ') {
        Some((name, checksum)) => (name, Some(checksum)),
        None => (line, None),
    };
    let number = name
        .strip_prefix("MANIFEST-")
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|n| n.parse::<u64>().ok())
        .ok_or_else(|| format!("CURRENT holds {text:?}: not a manifest's name"))?;
    if let Some(checksum) = checksum {
        let stored = checksum
            .strip_prefix("crc32=")
            .filter(|hex| {
                hex.len() == 8 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            })
            .and_then(|hex| u32::from_str_radix(hex, 16).ok())
            .ok_or_else(|| format!("CURRENT holds {text:?}: not a checksum after the name"))?;
        let actual = crc32fast::hash(name.as_bytes());
        if stored != actual {
            return Err(format!(
                "CURRENT's checksum does not match: {stored:08x} stored, {actual:08x} computed \
                 over {name:?}"
            ));
        }
    }
    Ok(number)
}

/// Reads `CURRENT`: the live manifest's number, or `None` if there is no
/// `CURRENT` (a new database). Damage is corruption of `CURRENT`, at
/// offset 0 (the file is one line).
pub fn read_current<O: FileOpener>(opener: &O, dir: &Path) -> Result<Option<u64>> {
    let path = dir.join(CURRENT);
    let exists = opener
        .list_dir(dir)?
        .iter()
        .any(|n| n.to_str() == Some(CURRENT));
    if !exists {
        return Ok(None);
    }
    let file = opener.open(&path, false)?;
    let len = file.len()?;
    if len > 64 {
        return Err(Error::corrupted(
            &path,
            0,
            format!("CURRENT of {len} bytes"),
        ));
    }
    let mut buf = vec![0u8; len as usize];
    file.read_at(0, &mut buf)?;
    parse_current(&buf)
        .map(Some)
        .map_err(|problem| Error::corrupted(&path, 0, problem))
}

/// Points `CURRENT` at manifest `number` atomically: temp file, sync,
/// rename, directory sync.
pub fn write_current<O: FileOpener>(opener: &O, dir: &Path, number: u64) -> Result<()> {
    let tmp = dir.join("CURRENT.tmp");
    let file = opener.open(&tmp, true)?;
    file.set_len(0)?;
    file.append(current_text(number).as_bytes())?;
    file.sync_data()?;
    drop(file);
    opener.rename(&tmp, &dir.join(CURRENT))?;
    opener.sync_dir(dir)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_round_trip() {
        let edit = VersionEdit {
            log_number: Some(4),
            next_file: Some(9),
            last_seq: Some(1234),
            added: vec![(
                1,
                TableMeta {
                    number: 7,
                    size: 4096,
                    entries: 10,
                    min_seq: 3,
                    max_seq: 99,
                    smallest: Bytes::from_static(b"a"),
                    largest: Bytes::from_static(b"zz"),
                },
            )],
            deleted: vec![(0, 5), (0, 6)],
        };
        assert_eq!(VersionEdit::decode(&edit.encode()).unwrap(), edit);
        let bytes = edit.encode();
        for cut in 0..bytes.len() {
            let _ = VersionEdit::decode(&bytes[..cut]);
        }
    }

    /// The example in `docs/formats.md` ("CURRENT") and in this module's
    /// docs, pinned.
    #[test]
    fn current_is_the_name_and_its_checksum_as_documented() {
        assert_eq!(current_text(7), "MANIFEST-000007 crc32=b366fa16\n");
        assert_eq!(parse_current(current_text(7).as_bytes()), Ok(7));
        assert_eq!(
            parse_current(current_text(1_234_567).as_bytes()),
            Ok(1_234_567)
        );
    }

    #[test]
    fn a_bare_name_from_before_the_checksum_still_reads() {
        assert_eq!(parse_current(b"MANIFEST-000042\n"), Ok(42));
    }

    /// Every single-bit flip of a checksummed `CURRENT` is refused: none
    /// names another manifest.
    #[test]
    fn every_flipped_bit_is_refused() {
        let good = current_text(7).into_bytes();
        for byte in 0..good.len() {
            for bit in 0..8 {
                let mut bad = good.clone();
                bad[byte] ^= 1 << bit;
                assert!(
                    parse_current(&bad).is_err(),
                    "bit {bit} of byte {byte} flipped: {:?} was accepted",
                    String::from_utf8_lossy(&bad)
                );
            }
        }
    }

    #[test]
    fn damage_is_reported_not_parsed() {
        for bad in [
            &b""[..],
            b"MANIFEST-000007",
            b"MANIFEST-\n",
            b"MANIFEST-+7\n",
            b"MANIFEST-000007 \n",
            b"MANIFEST-000007 crc32=b366fa1\n",
            b"MANIFEST-000007 crc32=b366fa16 \n",
            b"MANIFEST-000007 crc32=B366FA1G\n",
            b"MANIFEST-000008 crc32=b366fa16\n",
            b"\xff\xfe\n",
        ] {
            assert!(parse_current(bad).is_err(), "{bad:?} was accepted");
        }
    }

    /// An open of a database whose `CURRENT` was damaged on disk fails as
    /// corruption of `CURRENT` at offset 0.
    #[test]
    fn a_damaged_current_on_disk_is_corruption_of_that_file() {
        let dir = tempfile::tempdir().unwrap();
        let opener = pydb_file::MonolithicOpener;
        write_current(&opener, dir.path(), 7).unwrap();
        assert_eq!(read_current(&opener, dir.path()).unwrap(), Some(7));
        let path = dir.path().join(CURRENT);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[14] = b'9';
        std::fs::write(&path, &bytes).unwrap();
        let err = read_current(&opener, dir.path()).unwrap_err();
        assert!(err.is_corruption(), "{err}");
        assert!(err.to_string().contains("CURRENT"), "{err}");
    }
}
