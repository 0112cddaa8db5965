//! The record format: a file header, then checksummed, length-prefixed records.
//!
//! ```text
//! file header (16 bytes)
//!   0  [u8; 8]  magic  "PYDB-LOG"
//!   8  u32 LE   format version (1)
//!  12  u32 LE   CRC-32 of bytes 0..12
//!
//! record (9 + len bytes)
//!   0  u32 LE   CRC-32 of the record's file offset (u64 LE) followed by
//!               bytes 4..9+len (length, flags and payload)
//!   4  u32 LE   len: payload length, at most MAX_PAYLOAD_LEN
//!   8  u8       flags: bit 0 = BATCH_CONTINUES, other bits zero
//!   9  [u8]     payload
//! ```
//!
//! A batch is a run of records in which every record but the last has
//! `BATCH_CONTINUES` set. A batch is written with one `append`, and recovery
//! keeps it only if its last record is there: a batch is all or nothing.
//!
//! The checksum covers the length, so a damaged length is caught before it
//! is trusted: a reader checks the length against [`MAX_PAYLOAD_LEN`] and
//! against the bytes that are really there before it allocates anything.
//!
//! The checksum also covers the record's *offset* in its file, although the
//! offset is not stored: a record only verifies at the place it was written.
//! This matters for recovery, which tells a torn tail from damage by looking
//! for a valid record after a bad one. A payload may itself contain the bytes
//! of an encoded record (a value that is a pydb log, say); without the offset
//! in the checksum, such a record inside a torn payload would verify and turn
//! an ordinary torn tail into a false report of corruption.

use bytes::Bytes;

/// The magic bytes that open every record-log file.
pub const FILE_MAGIC: [u8; 8] = *b"PYDB-LOG";
/// The newest format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Offset of the magic in the file header.
pub const FILE_MAGIC_OFFSET: usize = 0;
/// Offset of the format version in the file header.
pub const FILE_VERSION_OFFSET: usize = 8;
/// Offset of the header checksum in the file header.
pub const FILE_CRC_OFFSET: usize = 12;
/// Length of the file header; the first record starts here.
pub const FILE_HEADER_LEN: usize = 16;

/// Offset of the checksum in a record header.
pub const CRC_OFFSET: usize = 0;
/// Offset of the payload length in a record header.
pub const LEN_OFFSET: usize = 4;
/// Offset of the flags byte in a record header.
pub const FLAGS_OFFSET: usize = 8;
/// Length of a record header; the payload starts here.
pub const RECORD_HEADER_LEN: usize = 9;

/// The one offset below 4 GiB at which nine zero bytes verify as a record:
/// an empty payload whose checksum, over the offset and the zero length and
/// flags, happens to be 0. A log whose writer puts zeros ahead of its end
/// (a preallocated file) must keep them below this offset, so that a run of
/// zeros after the data is never read as a record; the test
/// `zeros_verify_as_a_record_only_at_the_documented_offset` pins the number.
pub const FIRST_OFFSET_WHERE_ZEROS_VERIFY: u64 = 529_593_178;

/// Flag: more records of the same batch follow this one.
pub const FLAG_BATCH_CONTINUES: u8 = 0b0000_0001;
/// Every flag bit this version knows; any other bit set means damage.
pub const KNOWN_FLAGS: u8 = FLAG_BATCH_CONTINUES;

/// The largest payload a record may carry (64 MiB).
pub const MAX_PAYLOAD_LEN: u32 = 64 << 20;

/// One decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Where the record starts in its file.
    pub offset: u64,
    /// The record's flags.
    pub flags: u8,
    /// The record's payload.
    pub payload: Bytes,
}

impl Record {
    /// Whether more records of the same batch follow.
    pub fn batch_continues(&self) -> bool {
        self.flags & FLAG_BATCH_CONTINUES != 0
    }

    /// The length of the whole record on disk, header included.
    pub fn encoded_len(&self) -> u64 {
        record_len(self.payload.len())
    }
}

/// The on-disk length of a record with a payload of `payload_len` bytes.
pub fn record_len(payload_len: usize) -> u64 {
    (RECORD_HEADER_LEN + payload_len) as u64
}

/// Encodes the file header.
pub fn encode_file_header() -> [u8; FILE_HEADER_LEN] {
    let mut header = [0u8; FILE_HEADER_LEN];
    header[FILE_MAGIC_OFFSET..FILE_VERSION_OFFSET].copy_from_slice(&FILE_MAGIC);
    header[FILE_VERSION_OFFSET..FILE_CRC_OFFSET].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    let crc = crc32fast::hash(&header[..FILE_CRC_OFFSET]);
    header[FILE_CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
    header
}

/// What is wrong with a file header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// Fewer than [`FILE_HEADER_LEN`] bytes: a file cut short while created.
    Short,
    /// The magic is not [`FILE_MAGIC`]: not a pydb log.
    BadMagic,
    /// The header checksum does not verify.
    BadChecksum,
    /// A newer format version than [`FORMAT_VERSION`].
    NewerVersion(u32),
}

/// Checks a file header.
pub fn decode_file_header(bytes: &[u8]) -> Result<u32, HeaderError> {
    let header = bytes.get(..FILE_HEADER_LEN).ok_or(HeaderError::Short)?;
    if header[FILE_MAGIC_OFFSET..FILE_VERSION_OFFSET] != FILE_MAGIC {
        return Err(HeaderError::BadMagic);
    }
    let stored = read_u32(header, FILE_CRC_OFFSET);
    if stored != crc32fast::hash(&header[..FILE_CRC_OFFSET]) {
        return Err(HeaderError::BadChecksum);
    }
    let version = read_u32(header, FILE_VERSION_OFFSET);
    if version > FORMAT_VERSION {
        return Err(HeaderError::NewerVersion(version));
    }
    Ok(version)
}

/// The checksum of a record that starts at `offset` in its file, where
/// `body` is the record's bytes from [`LEN_OFFSET`] to its end.
pub fn record_crc(offset: u64, body: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&offset.to_le_bytes());
    hasher.update(body);
    hasher.finalize()
}

/// Appends the encoding of one record, to be written at file offset
/// `offset`, to `out`.
///
/// The caller has checked `payload.len() <= MAX_PAYLOAD_LEN`.
pub fn encode_record(offset: u64, flags: u8, payload: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0u8; RECORD_HEADER_LEN]);
    out.extend_from_slice(payload);
    finish_record(offset, flags, &mut out[start..]);
}

/// Fills in the header of `record`: a [`RECORD_HEADER_LEN`]-byte header
/// still to be written, followed by the whole payload, to be written at
/// file offset `offset`. The caller has checked the payload's length
/// against [`MAX_PAYLOAD_LEN`] (and `record` is at least a header long).
pub(crate) fn finish_record(offset: u64, flags: u8, record: &mut [u8]) {
    let len = (record.len() - RECORD_HEADER_LEN) as u32;
    record[LEN_OFFSET..FLAGS_OFFSET].copy_from_slice(&len.to_le_bytes());
    record[FLAGS_OFFSET] = flags;
    let crc = record_crc(offset, &record[LEN_OFFSET..]);
    record[CRC_OFFSET..LEN_OFFSET].copy_from_slice(&crc.to_le_bytes());
}

/// The outcome of decoding bytes that should start with a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A whole, verified record of `len` bytes (header included).
    Record {
        /// The flags byte.
        flags: u8,
        /// The payload, as a range of the input: `9..len`.
        len: usize,
    },
    /// The bytes end before the record does: `needed` bytes in total would
    /// be required (at least the header's worth if the length is unknown).
    Incomplete {
        /// Total bytes the record needs, header included.
        needed: usize,
    },
    /// The bytes are not a valid record.
    Invalid(&'static str),
}

/// Decodes the record at the start of `bytes` without trusting any of it.
///
/// `offset` is where `bytes` start in their file: the checksum covers it.
pub fn decode_record(bytes: &[u8], offset: u64) -> Decoded {
    let Some(header) = bytes.get(..RECORD_HEADER_LEN) else {
        return Decoded::Incomplete {
            needed: RECORD_HEADER_LEN,
        };
    };
    let payload_len = read_u32(header, LEN_OFFSET);
    if payload_len > MAX_PAYLOAD_LEN {
        return Decoded::Invalid("record length over the limit");
    }
    let total = RECORD_HEADER_LEN + payload_len as usize;
    let Some(record) = bytes.get(..total) else {
        return Decoded::Incomplete { needed: total };
    };
    let stored = read_u32(record, CRC_OFFSET);
    if stored != record_crc(offset, &record[LEN_OFFSET..]) {
        return Decoded::Invalid("record checksum mismatch");
    }
    let flags = record[FLAGS_OFFSET];
    if flags & !KNOWN_FLAGS != 0 {
        return Decoded::Invalid("unknown record flags");
    }
    Decoded::Record { flags, len: total }
}

/// Reads a little-endian `u32` at `at`; the caller guarantees the bounds.
fn read_u32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The checksum a record header of nine zero bytes would need at
    /// `offset` to verify (its stored checksum is 0).
    fn zero_record_crc(offset: u64) -> u32 {
        record_crc(offset, &[0u8; RECORD_HEADER_LEN - LEN_OFFSET])
    }

    /// CRC-32 over a message of fixed length is affine in the message bits,
    /// so the offsets below 2^32 where zeros verify are the solutions of 32
    /// linear equations in 32 unknowns over GF(2). Solving them shows there
    /// is exactly one, and which.
    #[test]
    fn zeros_verify_as_a_record_only_at_the_documented_offset() {
        let base = zero_record_crc(0);
        // Gaussian elimination: basis[b] = (vector with top bit b, offsets mask).
        let mut basis: [Option<(u32, u64)>; 32] = [None; 32];
        for bit in 0..32 {
            let (mut v, mut m) = (zero_record_crc(1 << bit) ^ base, 1u64 << bit);
            for b in (0..32).rev() {
                if v >> b & 1 == 1
                    && let Some((bv, bm)) = basis[b]
                {
                    v ^= bv;
                    m ^= bm;
                }
            }
            if v != 0 {
                basis[31 - v.leading_zeros() as usize] = Some((v, m));
            }
        }
        assert!(
            basis.iter().all(Option::is_some),
            "rank 32: one solution at most"
        );
        let (mut v, mut offset) = (base, 0u64);
        for b in (0..32).rev() {
            if v >> b & 1 == 1
                && let Some((bv, bm)) = basis[b]
            {
                v ^= bv;
                offset ^= bm;
            }
        }
        assert_eq!(v, 0);
        assert_eq!(offset, FIRST_OFFSET_WHERE_ZEROS_VERIFY);
        assert_eq!(zero_record_crc(offset), 0);
        assert_ne!(zero_record_crc(offset - 1), 0);
        let zeros = [0u8; RECORD_HEADER_LEN];
        assert!(matches!(
            decode_record(&zeros, offset),
            Decoded::Record { .. }
        ));
        assert!(!matches!(
            decode_record(&zeros, offset - 1),
            Decoded::Record { .. }
        ));
    }

    #[test]
    fn record_round_trips() {
        let mut out = Vec::new();
        encode_record(16, FLAG_BATCH_CONTINUES, b"payload", &mut out);
        assert_eq!(out.len(), RECORD_HEADER_LEN + 7);
        assert_eq!(
            decode_record(&out, 16),
            Decoded::Record {
                flags: FLAG_BATCH_CONTINUES,
                len: out.len()
            }
        );
    }

    #[test]
    fn a_record_verifies_only_at_the_offset_it_was_written_for() {
        let mut out = Vec::new();
        encode_record(16, 0, b"payload", &mut out);
        for other in [0, 15, 17, 16 + 4096, u64::MAX] {
            assert_eq!(
                decode_record(&out, other),
                Decoded::Invalid("record checksum mismatch"),
                "verified at {other}"
            );
        }
    }

    #[test]
    fn every_truncation_is_incomplete_and_every_bit_flip_is_invalid() {
        let mut out = Vec::new();
        encode_record(16, 0, b"some payload", &mut out);
        for cut in 0..out.len() {
            assert!(
                matches!(decode_record(&out[..cut], 16), Decoded::Incomplete { .. }),
                "cut at {cut}"
            );
        }
        for byte in 0..out.len() {
            for bit in 0..8 {
                let mut damaged = out.clone();
                damaged[byte] ^= 1 << bit;
                assert!(
                    !matches!(decode_record(&damaged, 16), Decoded::Record { .. }),
                    "flip of bit {bit} in byte {byte} went unnoticed"
                );
            }
        }
    }

    #[test]
    fn header_checks_magic_checksum_and_version() {
        let header = encode_file_header();
        assert_eq!(decode_file_header(&header), Ok(FORMAT_VERSION));
        assert_eq!(decode_file_header(&header[..10]), Err(HeaderError::Short));
        let mut bad = header;
        bad[0] = b'X';
        assert_eq!(decode_file_header(&bad), Err(HeaderError::BadMagic));
        let mut bad = header;
        bad[FILE_VERSION_OFFSET] ^= 1;
        assert_eq!(decode_file_header(&bad), Err(HeaderError::BadChecksum));
        let mut newer = header;
        newer[FILE_VERSION_OFFSET..FILE_CRC_OFFSET].copy_from_slice(&2u32.to_le_bytes());
        let crc = crc32fast::hash(&newer[..FILE_CRC_OFFSET]);
        newer[FILE_CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            decode_file_header(&newer),
            Err(HeaderError::NewerVersion(2))
        );
    }
}
