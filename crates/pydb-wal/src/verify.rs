//! Verifying a record log record by record, and stepping over damage.
//!
//! [`crate::Scanner`] is what recovery uses: it stops at the first record
//! that is damaged in the middle of a log, because an engine must not open
//! past lost data. The file tools need more: `pydb inspect` shows every
//! record and every bad region, `pydb check` counts them, and `pydb repair`
//! keeps the batches that verify on both sides of the damage. They all walk
//! a log with [`Walker`], the one decoder for that job.
//!
//! ## Resynchronisation
//!
//! When the bytes at an offset do not verify as a record, the walker looks
//! for the next offset, byte by byte, where a whole record verifies. Since
//! a record's checksum covers its own file offset, a record quoted inside a
//! payload never verifies at a foreign offset, so a match is a real record.
//!
//! - A valid record follows: the bytes in between are *damage* (data lost
//!   in the middle of the log), and the walk goes on from that record.
//! - None follows: the bytes from the start of the unfinished batch to the
//!   end are a *torn tail*, what an interrupted append leaves; recovery cuts
//!   it off, so it is not damage. A file that ends in the middle of a batch
//!   (its last record says more follow) has a torn tail too.
//!
//! Invariants: every length is checked against [`MAX_PAYLOAD_LEN`] and the
//! bytes really in the file before it is used, nothing read from the file
//! can make the walker panic, and it reads a large window at a time, so a
//! walk costs a few big reads rather than two small ones per record.

use pydb_file::File;

use crate::record::{
    Decoded, FILE_CRC_OFFSET, FILE_HEADER_LEN, FILE_MAGIC, FILE_MAGIC_OFFSET, FILE_VERSION_OFFSET,
    FLAG_BATCH_CONTINUES, FLAGS_OFFSET, KNOWN_FLAGS, LEN_OFFSET, MAX_PAYLOAD_LEN,
    RECORD_HEADER_LEN, decode_record,
};
use crate::{Error, FORMAT_VERSION, Result};

/// Bytes read ahead at a time.
const WINDOW: usize = 1 << 20;

/// What the file header of a log holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderVerdict {
    /// Fewer bytes than a header: the log's creation was interrupted, and
    /// recovery starts it anew. The whole file is a torn tail.
    Short,
    /// A whole header, read as stored (its checksum may not match).
    Read {
        /// Whether the magic is `PYDB-LOG`.
        magic_ok: bool,
        /// The format version as stored.
        version: u32,
        /// The checksum as stored.
        stored_crc: u32,
        /// The checksum of the bytes it covers.
        computed_crc: u32,
    },
}

/// A record header as stored, before anything verified it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawHeader {
    /// The checksum field.
    pub crc: u32,
    /// The length field.
    pub len: u32,
    /// The flags byte.
    pub flags: u8,
}

impl RawHeader {
    /// Whether the length and flags are ones a writer could have written,
    /// so that the checksum is what failed.
    pub fn plausible(&self) -> bool {
        self.len <= MAX_PAYLOAD_LEN && self.flags & !KNOWN_FLAGS == 0
    }
}

/// One step of a walk, handed to the visitor of [`Walker::walk`].
#[derive(Debug)]
pub enum Step<'a> {
    /// A record that verifies.
    Record {
        /// Its number in the file, from 1.
        index: u64,
        /// Where it starts.
        offset: u64,
        /// Its flags.
        flags: u8,
        /// Its checksum.
        crc: u32,
        /// The whole record, header included.
        bytes: &'a [u8],
    },
    /// Bytes at `offset` that are not a record that verifies.
    Bad {
        /// Where the bad bytes start.
        offset: u64,
        /// What check failed.
        reason: &'a str,
        /// The record header there, if the file holds one.
        header: Option<RawHeader>,
        /// The first bytes there (two record headers' worth at most).
        shown: &'a [u8],
        /// Where the next record that verifies starts: then the bytes in
        /// between are damage. `None`: a torn tail.
        next_valid: Option<u64>,
        /// Where the torn tail starts (the start of the unfinished batch),
        /// when `next_valid` is `None`.
        torn_from: u64,
        /// When `next_valid` is `None`: where the zeros that end the file
        /// start (never before `offset`; the file's length if it does not
        /// end in zeros). The log engine writes zeros ahead of its end
        /// (preallocation), so after a crash they follow the last record:
        /// space, not a torn write.
        zeros_from: u64,
    },
    /// The file ends inside a batch: its records are a torn tail.
    OpenBatch {
        /// Where the unfinished batch starts.
        from: u64,
        /// How many records of it are in the file.
        records: u64,
    },
}

/// One place where a log failed a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// The offset of the bad header or record.
    pub offset: u64,
    /// What check failed.
    pub reason: String,
}

/// What a walk over a log found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The file's length.
    pub file_len: u64,
    /// Records that verified (and whose payload the visitor accepted).
    pub records: u64,
    /// Damage: bad bytes that a torn tail cannot explain.
    pub damage: Vec<Damage>,
    /// Bytes at the end that an interrupted write left; not damage.
    /// Counts the zeros below too.
    pub torn_bytes: u64,
    /// Of `torn_bytes`, the zeros that end the file: space written ahead of
    /// the log's end (the log engine's preallocation), which opening cuts
    /// off as it cuts a torn tail.
    pub zero_bytes: u64,
}

impl Report {
    /// Whether the log verified (a torn tail is not damage).
    pub fn is_ok(&self) -> bool {
        self.damage.is_empty()
    }
}

/// Where the walked bytes are.
enum Origin<'f> {
    /// A file, read through a window.
    File(&'f dyn File),
    /// Bytes already in memory.
    Memory(&'f [u8]),
}

/// A read-only window over a file (or a slice).
struct Source<'f> {
    origin: Origin<'f>,
    len: u64,
    window: Vec<u8>,
    window_start: u64,
}

impl Source<'_> {
    /// The bytes `offset..offset + len`, or fewer if the file ends first.
    fn bytes(&mut self, offset: u64, len: usize) -> Result<&[u8]> {
        let available = usize::try_from(self.len.saturating_sub(offset)).unwrap_or(usize::MAX);
        let len = len.min(available);
        let file = match self.origin {
            Origin::Memory(bytes) => {
                let start = usize::try_from(offset).unwrap_or(usize::MAX);
                return Ok(bytes
                    .get(start..)
                    .and_then(|rest| rest.get(..len))
                    .unwrap_or(&[]));
            }
            Origin::File(file) => file,
        };
        let window_end = self.window_start + self.window.len() as u64;
        if offset < self.window_start || offset + len as u64 > window_end {
            self.window.resize(len.max(WINDOW).min(available), 0);
            file.read_at(offset, &mut self.window)?;
            self.window_start = offset;
        }
        let local = usize::try_from(offset - self.window_start).unwrap_or(usize::MAX);
        Ok(self.window.get(local..local + len).unwrap_or(&[]))
    }

    /// What the bytes at `offset` are: a record that verifies (its flags
    /// and length on disk), or why not. Reads exactly as much as the
    /// (checked) length says.
    fn record_at(&mut self, offset: u64) -> Result<std::result::Result<(u8, usize), String>> {
        let mut needed = RECORD_HEADER_LEN;
        loop {
            let bytes = self.bytes(offset, needed)?;
            let got = bytes.len();
            match decode_record(bytes, offset) {
                Decoded::Record { flags, len } => return Ok(Ok((flags, len))),
                Decoded::Invalid(reason) => return Ok(Err(reason.into())),
                // The header's checked length asks for more than we read:
                // read that much, unless the file ends first.
                Decoded::Incomplete { needed: more } if got == needed && more > needed => {
                    needed = more;
                }
                Decoded::Incomplete { .. } if got < RECORD_HEADER_LEN => {
                    return Ok(Err(format!(
                        "{got} bytes left, too few for a record header"
                    )));
                }
                Decoded::Incomplete { needed: more } => {
                    return Ok(Err(format!(
                        "record of {more} bytes runs past the end of the file"
                    )));
                }
            }
        }
    }

    /// Where the bytes `start..end` stop holding anything but zeros: the
    /// end of their last nonzero byte, or `start` if all are zeros.
    fn last_nonzero_end(&mut self, start: u64, end: u64) -> Result<u64> {
        let mut found = start;
        let mut at = start;
        while at < end {
            let n = usize::try_from(end - at).map_or(WINDOW, |n| n.min(WINDOW));
            let chunk = self.bytes(at, n)?;
            if chunk.is_empty() {
                break;
            }
            if let Some(i) = chunk.iter().rposition(|&b| b != 0) {
                found = at + i as u64 + 1;
            }
            at += chunk.len() as u64;
        }
        Ok(found)
    }

    fn next_valid_record(&mut self, bad: u64) -> Result<Option<u64>> {
        let mut offset = bad + 1;
        while offset + RECORD_HEADER_LEN as u64 <= self.len {
            if self.record_at(offset)?.is_ok() {
                return Ok(Some(offset));
            }
            offset += 1;
        }
        Ok(None)
    }
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let word: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_le_bytes(word))
}

/// Walks a log record by record. Open it, look at its header, then
/// [`Walker::walk`].
pub struct Walker<'f> {
    source: Source<'f>,
    header_bytes: Vec<u8>,
    header: HeaderVerdict,
}

impl<'f> Walker<'f> {
    /// Reads the file header of `file`.
    pub fn open(file: &'f dyn File) -> Result<Self> {
        Self::start(Source {
            origin: Origin::File(file),
            len: file.len()?,
            window: Vec::new(),
            window_start: 0,
        })
    }

    /// Reads the file header of a log held in memory.
    pub fn from_bytes(bytes: &'f [u8]) -> Result<Self> {
        Self::start(Source {
            origin: Origin::Memory(bytes),
            len: bytes.len() as u64,
            window: Vec::new(),
            window_start: 0,
        })
    }

    fn start(mut source: Source<'f>) -> Result<Self> {
        let header_bytes = source.bytes(0, FILE_HEADER_LEN)?.to_vec();
        let header = match (
            header_bytes.get(..FILE_CRC_OFFSET),
            read_u32(&header_bytes, FILE_VERSION_OFFSET),
            read_u32(&header_bytes, FILE_CRC_OFFSET),
        ) {
            (Some(covered), Some(version), Some(stored_crc)) => HeaderVerdict::Read {
                magic_ok: header_bytes.get(FILE_MAGIC_OFFSET..FILE_VERSION_OFFSET)
                    == Some(&FILE_MAGIC[..]),
                version,
                stored_crc,
                computed_crc: crc32fast::hash(covered),
            },
            _ => HeaderVerdict::Short,
        };
        Ok(Self {
            source,
            header_bytes,
            header,
        })
    }

    /// The file's length.
    pub fn file_len(&self) -> u64 {
        self.source.len
    }

    /// The bytes of the file header (fewer if the file is shorter).
    pub fn header_bytes(&self) -> &[u8] {
        &self.header_bytes
    }

    /// What the file header holds.
    pub fn header(&self) -> HeaderVerdict {
        self.header
    }

    /// Walks every record, calling `visit` for each step. For a
    /// [`Step::Record`], `visit` may return a reason why its payload is
    /// not valid for the log's user (a log entry, a redo record): the
    /// record then counts as damage. A file header with a newer version is
    /// [`pydb_file::Error::UnsupportedVersion`]: its records are not read.
    pub fn walk(mut self, visit: &mut dyn FnMut(Step<'_>) -> Option<String>) -> Result<Report> {
        let file_len = self.source.len;
        let mut report = Report {
            file_len,
            records: 0,
            damage: Vec::new(),
            torn_bytes: 0,
            zero_bytes: 0,
        };
        match self.header {
            HeaderVerdict::Short => {
                report.torn_bytes = file_len;
                return Ok(report);
            }
            HeaderVerdict::Read {
                magic_ok,
                version,
                stored_crc,
                computed_crc,
            } => {
                if !magic_ok {
                    report.damage.push(Damage {
                        offset: 0,
                        reason: "not a pydb log file (bad magic)".into(),
                    });
                }
                if stored_crc != computed_crc {
                    report.damage.push(Damage {
                        offset: 0,
                        reason: "file header checksum mismatch".into(),
                    });
                }
                if version > FORMAT_VERSION {
                    let file = match self.source.origin {
                        Origin::File(file) => file.path().to_path_buf(),
                        Origin::Memory(_) => "<memory>".into(),
                    };
                    return Err(Error::File(pydb_file::Error::UnsupportedVersion {
                        path: file,
                        found: version,
                        supported: FORMAT_VERSION,
                    }));
                }
            }
        }

        let source = &mut self.source;
        let mut pos = FILE_HEADER_LEN as u64;
        let mut batch_start: Option<u64> = None;
        let mut batch_records = 0u64;
        let mut index = 0u64;
        while pos < file_len {
            match source.record_at(pos)? {
                Ok((flags, total)) => {
                    index += 1;
                    let bytes = source.bytes(pos, total)?;
                    let crc = read_u32(bytes, 0).unwrap_or_default();
                    let verdict = visit(Step::Record {
                        index,
                        offset: pos,
                        flags,
                        crc,
                        bytes,
                    });
                    match verdict {
                        Some(reason) => report.damage.push(Damage {
                            offset: pos,
                            reason,
                        }),
                        None => report.records += 1,
                    }
                    if flags & FLAG_BATCH_CONTINUES != 0 {
                        batch_start.get_or_insert(pos);
                        batch_records += 1;
                    } else {
                        batch_start = None;
                        batch_records = 0;
                    }
                    pos += total as u64;
                }
                Err(reason) => {
                    let head = source.bytes(pos, RECORD_HEADER_LEN)?;
                    let header = match (
                        read_u32(head, 0),
                        read_u32(head, LEN_OFFSET),
                        head.get(FLAGS_OFFSET).copied(),
                    ) {
                        (Some(crc), Some(len), Some(flags)) => Some(RawHeader { crc, len, flags }),
                        _ => None,
                    };
                    let shown = source.bytes(pos, RECORD_HEADER_LEN * 2)?.to_vec();
                    let next_valid = source.next_valid_record(pos)?;
                    let torn_from = batch_start.unwrap_or(pos);
                    let zeros_from = match next_valid {
                        Some(_) => file_len,
                        None => source.last_nonzero_end(pos, file_len)?,
                    };
                    visit(Step::Bad {
                        offset: pos,
                        reason: &reason,
                        header,
                        shown: &shown,
                        next_valid,
                        torn_from,
                        zeros_from,
                    });
                    batch_start = None;
                    batch_records = 0;
                    match next_valid {
                        Some(next) => {
                            report.damage.push(Damage {
                                offset: pos,
                                reason: format!(
                                    "{reason}; a valid record follows at offset {next}"
                                ),
                            });
                            pos = next;
                        }
                        None => {
                            report.torn_bytes = file_len - torn_from;
                            report.zero_bytes = file_len - zeros_from;
                            pos = file_len;
                        }
                    }
                }
            }
        }
        if let Some(from) = batch_start {
            report.torn_bytes = file_len - from;
            visit(Step::OpenBatch {
                from,
                records: batch_records,
            });
        }
        Ok(report)
    }
}

/// Where the bytes `start..end` of `file` stop holding anything but
/// zeros: the end of their last nonzero byte, or `start` if all are zeros.
/// What follows is space written ahead of a log's end (see
/// [`Report::zero_bytes`]).
pub fn last_nonzero_end(file: &dyn File, start: u64, end: u64) -> Result<u64> {
    let mut source = Source {
        origin: Origin::File(file),
        len: end,
        window: Vec::new(),
        window_start: 0,
    };
    source.last_nonzero_end(start, end)
}

/// Verifies the log `file` (see the module docs) without looking into
/// payloads.
pub fn verify_file(file: &dyn File) -> Result<Report> {
    Walker::open(file)?.walk(&mut |_| None)
}

/// Walks a log held in memory, as [`Walker::walk`] does: for the fuzz
/// target and for tools that already hold the bytes.
pub fn walk_bytes(
    bytes: &[u8],
    visit: &mut dyn FnMut(Step<'_>) -> Option<String>,
) -> Result<Report> {
    Walker::from_bytes(bytes)?.walk(visit)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

    use super::*;
    use crate::record::{encode_file_header, encode_record};

    fn log(records: &[(u8, &[u8])]) -> Vec<u8> {
        let mut out = encode_file_header().to_vec();
        for (flags, payload) in records {
            encode_record(out.len() as u64, *flags, payload, &mut out);
        }
        out
    }

    #[test]
    fn damage_in_the_middle_is_stepped_over_and_reported() {
        let mut bytes = log(&[(0, b"one"), (0, b"two"), (0, b"three")]);
        // The payload of the second record (16 + 12 + 9).
        bytes[16 + 12 + 9] ^= 1;
        let mut seen = Vec::new();
        let report = walk_bytes(&bytes, &mut |step| {
            if let Step::Record { offset, .. } = step {
                seen.push(offset);
            }
            None
        })
        .unwrap();
        assert_eq!(report.records, 2);
        assert_eq!(report.damage.len(), 1);
        assert_eq!(report.damage[0].offset, 28);
        assert!(report.damage[0].reason.contains("follows at offset 40"));
        assert_eq!(seen, vec![16, 40]);
        assert_eq!(report.torn_bytes, 0);
    }

    #[test]
    fn a_torn_batch_is_a_torn_tail_from_its_start() {
        let bytes = log(&[(0, b"one"), (FLAG_BATCH_CONTINUES, b"two")]);
        let report = walk_bytes(&bytes, &mut |_| None).unwrap();
        assert!(report.is_ok());
        assert_eq!(report.torn_bytes, 12);
        let mut cut = log(&[(0, b"one"), (FLAG_BATCH_CONTINUES, b"two"), (0, b"3")]);
        cut.truncate(cut.len() - 1);
        let report = walk_bytes(&cut, &mut |_| None).unwrap();
        assert!(report.is_ok());
        assert_eq!(report.torn_bytes, 12 + 9);
    }

    #[test]
    fn zeros_that_end_the_file_are_counted_apart_from_a_torn_write() {
        // Zeros alone after the last record: all of the tail is zeros.
        let mut bytes = log(&[(0, b"one"), (0, b"two")]);
        let end = bytes.len() as u64;
        bytes.resize(bytes.len() + 100, 0);
        let mut zeros_at = None;
        let report = walk_bytes(&bytes, &mut |step| {
            if let Step::Bad {
                torn_from,
                zeros_from,
                ..
            } = step
            {
                zeros_at = Some((torn_from, zeros_from));
            }
            None
        })
        .unwrap();
        assert!(report.is_ok());
        assert_eq!((report.torn_bytes, report.zero_bytes), (100, 100));
        assert_eq!(zeros_at, Some((end, end)));

        // A record cut short, then zeros: only the zeros after its last
        // byte are counted as zeros.
        let mut cut = log(&[(0, b"one"), (0, b"two")]);
        cut.truncate(cut.len() - 1);
        let torn_from = 16 + 12;
        let nonzero_end = cut.len() as u64;
        cut.resize(cut.len() + 50, 0);
        let report = walk_bytes(&cut, &mut |_| None).unwrap();
        assert!(report.is_ok());
        assert_eq!(report.torn_bytes, cut.len() as u64 - torn_from);
        assert_eq!(report.zero_bytes, cut.len() as u64 - nonzero_end);

        // No zeros: none counted.
        let report = walk_bytes(
            &log(&[(0, b"one"), (FLAG_BATCH_CONTINUES, b"two")]),
            &mut |_| None,
        )
        .unwrap();
        assert_eq!((report.torn_bytes, report.zero_bytes), (12, 0));
    }

    #[test]
    fn a_rejected_payload_is_damage_and_every_prefix_never_panics() {
        let bytes = log(&[(0, b"good"), (0, b"bad")]);
        let report = walk_bytes(&bytes, &mut |step| match step {
            Step::Record { bytes, .. } if bytes.ends_with(b"bad") => Some("no".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!((report.records, report.damage.len()), (1, 1));
        for len in 0..bytes.len() {
            let report = walk_bytes(&bytes[..len], &mut |_| None).unwrap();
            assert!(report.is_ok(), "{len}: {report:?}");
        }
    }
}
