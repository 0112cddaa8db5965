//! Log entries: what one record of a log segment carries.
//!
//! Every record payload in a segment is one entry, with a hand-written
//! little-endian layout (documented in `docs/formats.md`):
//!
//! ```text
//!  0  u64 LE  seq        sequence number (see below)
//!  8  u8      kind       1 = set, 2 = delete (tombstone),
//!                        3 = begin (first record of a segment),
//!                        4 = seal (last record of a sealed segment)
//!  9  u32 LE  key_len
//! 13  u32 LE  value_len
//! 17  [u8]    key        key_len bytes
//!     [u8]    value      value_len bytes
//! ```
//!
//! The record around it (`pydb-wal`) already carries the CRC, so the entry
//! has none of its own. Decoding trusts nothing: every length is checked
//! against the bytes really there, and any mismatch is a typed
//! [`EntryError`], never a panic.
//!
//! ## Sequence numbers
//!
//! A set or delete carries the sequence number of the write, strictly
//! increasing over the life of the database (the entries of one batch take
//! consecutive numbers). Recovery decides which record of a key is the
//! latest by the highest `seq`, never by where the record sits, which is
//! what lets compaction copy records into new segments freely.
//!
//! `begin` and `seal` carry no key: their `seq` is the first and the last
//! sequence number the segment *covers*. The covered ranges of all segments
//! must tile `1..=last` without a gap; a gap means a segment is missing
//! (see the recovery module).

use bytes::Bytes;

/// Offset of the sequence number in an entry.
pub const SEQ_OFFSET: usize = 0;
/// Offset of the kind byte in an entry.
pub const KIND_OFFSET: usize = 8;
/// Offset of the key length in an entry.
pub const KEY_LEN_OFFSET: usize = 9;
/// Offset of the value length in an entry.
pub const VALUE_LEN_OFFSET: usize = 13;
/// Length of the fixed part of an entry; the key starts here.
pub const ENTRY_HEADER_LEN: usize = 17;

/// What an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum EntryKind {
    /// The key takes the value.
    Set = 1,
    /// The key is deleted (a tombstone).
    Delete = 2,
    /// First record of a segment; `seq` is the first sequence number the
    /// segment covers.
    Begin = 3,
    /// Last record of a sealed segment; `seq` is the last sequence number
    /// the segment covers.
    Seal = 4,
}

impl EntryKind {
    /// The kind stored as `byte`, if it is one.
    pub fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(EntryKind::Set),
            2 => Some(EntryKind::Delete),
            3 => Some(EntryKind::Begin),
            4 => Some(EntryKind::Seal),
            _ => None,
        }
    }

    /// Whether the entry is about a key (a set or a delete).
    pub fn is_data(self) -> bool {
        matches!(self, EntryKind::Set | EntryKind::Delete)
    }
}

/// One decoded entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The sequence number (for `Begin`/`Seal`, the covered range's bound).
    pub seq: u64,
    /// What the entry records.
    pub kind: EntryKind,
    /// The key (empty for `Begin`/`Seal`).
    pub key: Bytes,
    /// The value (empty unless `Set`).
    pub value: Bytes,
}

/// Why bytes are not a valid entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EntryError {
    /// Fewer bytes than the fixed header.
    #[error("entry of {len} bytes is shorter than its {ENTRY_HEADER_LEN}-byte header")]
    Short {
        /// The payload length.
        len: usize,
    },
    /// The kind byte is not a known kind.
    #[error("unknown entry kind {0}")]
    UnknownKind(u8),
    /// The key and value lengths do not add up to the payload length.
    #[error("entry lengths (key {key_len}, value {value_len}) do not match its {len} bytes")]
    LengthMismatch {
        /// The stored key length.
        key_len: u32,
        /// The stored value length.
        value_len: u32,
        /// The payload length.
        len: usize,
    },
    /// A kind that carries no key or no value has one.
    #[error("a {0:?} entry carries a key or value it should not have")]
    UnexpectedData(EntryKind),
}

/// The encoded length of an entry with these key and value lengths.
pub fn entry_len(key_len: usize, value_len: usize) -> usize {
    ENTRY_HEADER_LEN + key_len + value_len
}

/// Appends the encoding of an entry to `out`. The caller has checked that
/// key and value lengths fit in `u32` (the engine's limits are far lower).
pub fn encode_entry(seq: u64, kind: EntryKind, key: &[u8], value: &[u8], out: &mut Vec<u8>) {
    out.reserve(entry_len(key.len(), value.len()));
    out.extend_from_slice(&seq.to_le_bytes());
    out.push(kind as u8);
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(value);
}

/// Decodes an entry. Key and value are slices of `payload` (no copy).
pub fn decode_entry(payload: &Bytes) -> Result<Entry, EntryError> {
    let entry = decode_entry_ref(payload)?;
    Ok(Entry {
        seq: entry.seq,
        kind: entry.kind,
        key: payload.slice_ref(entry.key),
        value: payload.slice_ref(entry.value),
    })
}

/// One decoded entry, borrowed from the bytes it was decoded from (a point
/// read decodes the record in place, in the segment's memory map, and
/// copies only the value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryRef<'a> {
    /// The sequence number (for `Begin`/`Seal`, the covered range's bound).
    pub seq: u64,
    /// What the entry records.
    pub kind: EntryKind,
    /// The key (empty for `Begin`/`Seal`).
    pub key: &'a [u8],
    /// The value (empty unless `Set`).
    pub value: &'a [u8],
}

/// Decodes an entry without copying: key and value borrow from `payload`.
/// The one decoder of the format ([`decode_entry`] wraps it).
pub fn decode_entry_ref(payload: &[u8]) -> Result<EntryRef<'_>, EntryError> {
    let header = payload
        .get(..ENTRY_HEADER_LEN)
        .ok_or(EntryError::Short { len: payload.len() })?;
    let seq = u64::from_le_bytes(field(header, SEQ_OFFSET));
    let kind_byte = header[KIND_OFFSET];
    let kind = EntryKind::from_byte(kind_byte).ok_or(EntryError::UnknownKind(kind_byte))?;
    let key_len = u32::from_le_bytes(field(header, KEY_LEN_OFFSET));
    let value_len = u32::from_le_bytes(field(header, VALUE_LEN_OFFSET));
    let body = payload.len() - ENTRY_HEADER_LEN;
    let mismatch = EntryError::LengthMismatch {
        key_len,
        value_len,
        len: payload.len(),
    };
    // u32 + u32 cannot overflow u64; compare there, then convert.
    if u64::from(key_len) + u64::from(value_len) != body as u64 {
        return Err(mismatch);
    }
    let key_end = ENTRY_HEADER_LEN + key_len as usize;
    let allowed = match kind {
        EntryKind::Set => true,
        EntryKind::Delete => value_len == 0,
        EntryKind::Begin | EntryKind::Seal => key_len == 0 && value_len == 0,
    };
    if !allowed {
        return Err(EntryError::UnexpectedData(kind));
    }
    Ok(EntryRef {
        seq,
        kind,
        key: &payload[ENTRY_HEADER_LEN..key_end],
        value: &payload[key_end..],
    })
}

/// The `N` bytes at `at`; the caller guarantees the bounds.
fn field<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[at..at + N]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(seq: u64, kind: EntryKind, key: &[u8], value: &[u8]) -> Bytes {
        let mut out = Vec::new();
        encode_entry(seq, kind, key, value, &mut out);
        Bytes::from(out)
    }

    #[test]
    fn layout_is_pinned_byte_by_byte() {
        let bytes = encoded(0x0102, EntryKind::Set, b"ab", b"xyz");
        assert_eq!(
            bytes.as_ref(),
            [
                0x02, 0x01, 0, 0, 0, 0, 0, 0, // seq
                1, // kind = set
                2, 0, 0, 0, // key_len
                3, 0, 0, 0, // value_len
                b'a', b'b', b'x', b'y', b'z',
            ]
        );
    }

    #[test]
    fn every_kind_round_trips() {
        for (kind, key, value) in [
            (EntryKind::Set, &b"key"[..], &b"value"[..]),
            (EntryKind::Set, b"k", b""),
            (EntryKind::Delete, b"key", b""),
            (EntryKind::Begin, b"", b""),
            (EntryKind::Seal, b"", b""),
        ] {
            let entry = decode_entry(&encoded(42, kind, key, value)).unwrap();
            assert_eq!(
                entry,
                Entry {
                    seq: 42,
                    kind,
                    key: Bytes::copy_from_slice(key),
                    value: Bytes::copy_from_slice(value),
                }
            );
        }
    }

    #[test]
    fn damaged_entries_are_typed_errors() {
        let good = encoded(1, EntryKind::Set, b"key", b"value");
        for cut in 0..good.len() {
            assert!(decode_entry(&good.slice(..cut)).is_err(), "cut at {cut}");
        }
        let mut bad = good.to_vec();
        bad[KIND_OFFSET] = 9;
        assert_eq!(
            decode_entry(&Bytes::from(bad)),
            Err(EntryError::UnknownKind(9))
        );
        let mut bad = good.to_vec();
        bad[KEY_LEN_OFFSET..KEY_LEN_OFFSET + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decode_entry(&Bytes::from(bad)),
            Err(EntryError::LengthMismatch { .. })
        ));
        let tombstone_with_value = encoded(1, EntryKind::Delete, b"k", b"v");
        assert_eq!(
            decode_entry(&tombstone_with_value),
            Err(EntryError::UnexpectedData(EntryKind::Delete))
        );
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let _ = decode_entry(&Bytes::from(bytes));
        }
    }
}
