//! Describing a hint file field by field, for `pydb inspect` and `check`.
//!
//! [`super::hint::decode_hint`] is what opening uses: it accepts a hint or
//! gives one reason to rebuild it. A reader who wants to *see* a hint needs
//! every field as stored, each checksum with the one computed, and where
//! the walk had to stop. [`walk_hint`] gives that, with the layout
//! constants of [`super::hint`], so no tool reads hint bytes itself.
//!
//! The walk trusts nothing: every length is checked against the bytes
//! present, and it stops at the first entry whose checksum fails, because
//! past it the key length (and so the next entry's offset) is unknown.

use super::hint::{
    ENTRY_COUNT_OFFSET, ENTRY_CRC_OFFSET, ENTRY_KEY_LEN_OFFSET, ENTRY_KIND_OFFSET,
    ENTRY_RECORD_LEN_OFFSET, ENTRY_RECORD_OFFSET_OFFSET, ENTRY_SEQ_OFFSET, FIRST_SEQ_OFFSET,
    HEADER_CRC_OFFSET, HINT_ENTRY_HEADER_LEN, HINT_HEADER_LEN, HINT_VERSION, LAST_SEQ_OFFSET,
    SEGMENT_ID_OFFSET, SEGMENT_LEN_OFFSET, VERSION_OFFSET,
};

/// The header fields of a hint, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HintHeaderFields {
    /// The format version.
    pub version: u32,
    /// The segment the hint describes.
    pub segment_id: u64,
    /// The segment's length when the hint was written.
    pub segment_len: u64,
    /// The first seq the segment covers.
    pub first_seq: u64,
    /// The last seq the segment covers.
    pub last_seq: u64,
    /// How many entries the header counts.
    pub entry_count: u64,
    /// The checksum as stored.
    pub stored_crc: u32,
    /// The checksum of the bytes it covers.
    pub computed_crc: u32,
}

/// One entry of a hint, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HintEntryFields {
    /// Its number, from 1.
    pub index: u64,
    /// Where it starts in the hint file.
    pub offset: u64,
    /// Its length in the hint file, key included.
    pub len: usize,
    /// The entry's seq.
    pub seq: u64,
    /// The kind byte (see [`super::entry::EntryKind::from_byte`]).
    pub kind: u8,
    /// The key length.
    pub key_len: u32,
    /// Where the entry's record starts in the segment.
    pub record_offset: u64,
    /// The record's length in the segment.
    pub record_len: u32,
    /// The checksum as stored.
    pub stored_crc: u32,
    /// The checksum of the bytes it covers.
    pub computed_crc: u32,
}

impl HintEntryFields {
    /// Whether the checksum matches.
    pub fn crc_ok(&self) -> bool {
        self.stored_crc == self.computed_crc
    }
}

/// Why a walk stopped before the end of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HintStop {
    /// The file is shorter than a header.
    HeaderCutShort,
    /// The header checksum does not match: no field can be trusted.
    HeaderChecksum,
    /// A version this build does not read.
    UnknownVersion(u32),
    /// Entry `index` at `offset` runs past the end of the file.
    EntryCutShort {
        /// The entry's number.
        index: u64,
        /// Where it starts.
        offset: u64,
    },
    /// Entry `index` failed its checksum (it is the last entry listed).
    EntryChecksum {
        /// The entry's number.
        index: u64,
    },
}

/// What [`walk_hint`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HintWalk {
    /// The header, if the file holds one.
    pub header: Option<HintHeaderFields>,
    /// The entries read, in file order.
    pub entries: Vec<HintEntryFields>,
    /// Why the walk stopped early, if it did.
    pub stop: Option<HintStop>,
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let word: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_le_bytes(word))
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    let word: [u8; 8] = bytes.get(at..at.checked_add(8)?)?.try_into().ok()?;
    Some(u64::from_le_bytes(word))
}

/// Reads the header and entries of the hint file `bytes` as stored (see
/// the module docs). Never panics.
pub fn walk_hint(bytes: &[u8]) -> HintWalk {
    let mut walk = HintWalk {
        header: None,
        entries: Vec::new(),
        stop: None,
    };
    let Some(header) = bytes.get(..HINT_HEADER_LEN) else {
        walk.stop = Some(HintStop::HeaderCutShort);
        return walk;
    };
    let u64_field = |at| u64_at(header, at).unwrap_or_default();
    let fields = HintHeaderFields {
        version: u32_at(header, VERSION_OFFSET).unwrap_or_default(),
        segment_id: u64_field(SEGMENT_ID_OFFSET),
        segment_len: u64_field(SEGMENT_LEN_OFFSET),
        first_seq: u64_field(FIRST_SEQ_OFFSET),
        last_seq: u64_field(LAST_SEQ_OFFSET),
        entry_count: u64_field(ENTRY_COUNT_OFFSET),
        stored_crc: u32_at(header, HEADER_CRC_OFFSET).unwrap_or_default(),
        computed_crc: crc32fast::hash(header.get(..HEADER_CRC_OFFSET).unwrap_or_default()),
    };
    walk.header = Some(fields);
    if fields.stored_crc != fields.computed_crc {
        walk.stop = Some(HintStop::HeaderChecksum);
        return walk;
    }
    if fields.version != HINT_VERSION {
        walk.stop = Some(HintStop::UnknownVersion(fields.version));
        return walk;
    }
    let mut pos = HINT_HEADER_LEN;
    let mut index = 0u64;
    while pos < bytes.len() {
        index += 1;
        let whole = bytes
            .get(pos..)
            .and_then(|rest| u32_at(rest, ENTRY_KEY_LEN_OFFSET))
            .and_then(|key_len| HINT_ENTRY_HEADER_LEN.checked_add(key_len as usize))
            .and_then(|total| bytes.get(pos..pos.checked_add(total)?));
        let Some(whole) = whole else {
            walk.stop = Some(HintStop::EntryCutShort {
                index,
                offset: pos as u64,
            });
            break;
        };
        let entry = HintEntryFields {
            index,
            offset: pos as u64,
            len: whole.len(),
            seq: u64_at(whole, ENTRY_SEQ_OFFSET).unwrap_or_default(),
            kind: whole.get(ENTRY_KIND_OFFSET).copied().unwrap_or_default(),
            key_len: u32_at(whole, ENTRY_KEY_LEN_OFFSET).unwrap_or_default(),
            record_offset: u64_at(whole, ENTRY_RECORD_OFFSET_OFFSET).unwrap_or_default(),
            record_len: u32_at(whole, ENTRY_RECORD_LEN_OFFSET).unwrap_or_default(),
            stored_crc: u32_at(whole, ENTRY_CRC_OFFSET).unwrap_or_default(),
            computed_crc: crc32fast::hash(whole.get(ENTRY_SEQ_OFFSET..).unwrap_or_default()),
        };
        walk.entries.push(entry);
        if !entry.crc_ok() {
            walk.stop = Some(HintStop::EntryChecksum { index });
            break;
        }
        pos += whole.len();
    }
    walk
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

    use bytes::Bytes;

    use super::*;
    use crate::log::entry::EntryKind;
    use crate::log::hint::{HintEntry, HintHeader, encode_hint};

    fn hint() -> Vec<u8> {
        let header = HintHeader {
            segment_id: 3,
            segment_len: 500,
            first_seq: 10,
            last_seq: 11,
        };
        let entries: Vec<HintEntry> = (0..2)
            .map(|i| HintEntry {
                seq: 10 + i,
                kind: EntryKind::Set,
                key: Bytes::from(format!("key{i}")),
                offset: 42 + 40 * i,
                len: 40,
            })
            .collect();
        encode_hint(&header, &entries)
    }

    #[test]
    fn a_healthy_hint_is_read_field_by_field() {
        let walk = walk_hint(&hint());
        assert_eq!(walk.stop, None);
        let header = walk.header.unwrap();
        assert_eq!((header.segment_id, header.entry_count), (3, 2));
        assert_eq!(walk.entries.len(), 2);
        assert_eq!(walk.entries[1].seq, 11);
        assert_eq!(walk.entries[1].record_offset, 82);
    }

    #[test]
    fn trailing_zeros_stop_at_a_checksum_and_no_prefix_panics() {
        let mut bytes = hint();
        let len = bytes.len();
        bytes.extend(std::iter::repeat_n(0u8, 5000));
        let walk = walk_hint(&bytes);
        assert_eq!(walk.stop, Some(HintStop::EntryChecksum { index: 3 }));
        assert_eq!(walk.entries[2].offset, len as u64);
        for cut in 0..len {
            let _ = walk_hint(&bytes[..cut]);
        }
    }
}
