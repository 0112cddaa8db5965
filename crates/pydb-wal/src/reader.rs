//! Reading a log back: one record by position, or every batch in order with
//! recovery of a torn tail.
//!
//! ## Torn tail or corruption?
//!
//! A crash in the middle of an append leaves a *torn tail*: the last batch
//! is cut short, or its bytes are garbage (a power cut can leave the file
//! longer than the data that reached it). That is expected, and recovery
//! truncates it. A bad record *followed by valid records* cannot come from an
//! interrupted append, since appends only ever add at the end: it is damage,
//! and it is reported as a corruption error
//! ([`pydb_file::Error::Corrupted`]) rather than skipped, because skipping
//! would silently drop acknowledged writes.
//!
//! So when the scanner meets a bad record it looks for any valid record
//! after it. None: torn tail. One: corruption.
//!
//! ## Zeros after the end
//!
//! A writer may write zeros ahead of the end of its log and sync them, so
//! that a later append does not grow the file (`pydb_file::PreallocatedFile`).
//! After a crash such a log ends in zeros, perhaps behind a torn append.
//! Zeros do not verify as a record (below
//! [`FIRST_OFFSET_WHERE_ZEROS_VERIFY`](crate::record::FIRST_OFFSET_WHERE_ZEROS_VERIFY)),
//! so the scan ends where the data ends, and
//! [`Scanner::truncate_torn_tail`] counts a tail of zeros only apart from a
//! torn write.

use bytes::Bytes;
use pydb_file::File;

use crate::record::{
    Decoded, FILE_HEADER_LEN, HeaderError, RECORD_HEADER_LEN, Record, decode_file_header,
    decode_record,
};
use crate::{Error, Result};

/// How many bytes the scanner reads from the file at a time.
const SCAN_CHUNK: usize = 1 << 20;

/// Checks the file header of a log file.
///
/// An empty file, or one shorter than a header, is reported as `Ok(false)`:
/// a log whose creation was interrupted, with nothing in it. A wrong magic, a
/// bad checksum or a newer version is an error.
pub fn check_file_header<F: File>(file: &F) -> Result<bool> {
    let len = file.len()?;
    if len < FILE_HEADER_LEN as u64 {
        return Ok(false);
    }
    let mut header = [0u8; FILE_HEADER_LEN];
    file.read_at(0, &mut header)?;
    match decode_file_header(&header) {
        Ok(_) => Ok(true),
        Err(HeaderError::NewerVersion(found)) => Err(pydb_file::Error::UnsupportedVersion {
            path: file.path().to_path_buf(),
            found,
            supported: crate::FORMAT_VERSION,
        }
        .into()),
        Err(HeaderError::BadMagic) => Err(Error::corrupted(
            file.path(),
            0,
            "not a pydb log file (bad magic)",
        )),
        Err(HeaderError::BadChecksum) => Err(Error::corrupted(
            file.path(),
            0,
            "file header checksum mismatch",
        )),
        Err(HeaderError::Short) => Ok(false),
    }
}

/// Reads and verifies the record that starts at `offset`.
pub fn read_record_at<F: File>(file: &F, offset: u64) -> Result<Record> {
    let mut header = [0u8; RECORD_HEADER_LEN];
    file.read_at(offset, &mut header).map_err(|e| match e {
        pydb_file::Error::ReadPastEnd { .. } => {
            Error::corrupted(file.path(), offset, "record header past end of file")
        }
        other => other.into(),
    })?;
    let needed = match decode_record(&header, offset) {
        Decoded::Incomplete { needed } => needed,
        Decoded::Record { len, .. } => len,
        Decoded::Invalid(reason) => return Err(Error::corrupted(file.path(), offset, reason)),
    };
    read_record_exact(file, offset, needed)
}

/// Reads and verifies the record of `len` bytes (header included) at
/// `offset`, with one read. Engines that keep record lengths in their index
/// use this for point lookups.
pub fn read_record_exact<F: File + ?Sized>(file: &F, offset: u64, len: usize) -> Result<Record> {
    visit_record_exact(file, offset, len, |flags, payload| Record {
        offset,
        flags,
        payload: Bytes::copy_from_slice(payload),
    })
}

/// Reads and verifies the record of `len` bytes (header included) at
/// `offset`, then calls `visit` with its flags and its payload, borrowed
/// from the file ([`File::read_with`]): with a memory-mapped file the
/// checksum is computed over the mapped bytes and nothing is copied unless
/// `visit` copies it. `visit` runs only on a record whose checksum and
/// length matched; its result is returned.
///
/// This is what lets a point read copy only the part of a record it
/// returns (the log engine copies the value, not the header and key), and
/// allocate once.
pub fn visit_record_exact<F: File + ?Sized, R>(
    file: &F,
    offset: u64,
    len: usize,
    visit: impl FnOnce(u8, &[u8]) -> R,
) -> Result<R> {
    if len < RECORD_HEADER_LEN || len > crate::record_len(crate::MAX_PAYLOAD_LEN as usize) as usize
    {
        return Err(Error::corrupted(
            file.path(),
            offset,
            "impossible record length",
        ));
    }
    let mut visit = Some(visit);
    let mut outcome = None;
    file.read_with(offset, len, &mut |bytes| {
        if let Some(visit) = visit.take() {
            outcome = Some(match decode_record(bytes, offset) {
                Decoded::Record { flags, len: got } if got == len => {
                    Ok(visit(flags, &bytes[RECORD_HEADER_LEN..len]))
                }
                Decoded::Record { .. } => Err("record length differs from the index"),
                Decoded::Incomplete { .. } => Err("record longer than expected"),
                Decoded::Invalid(reason) => Err(reason),
            });
        }
    })
    .map_err(|e| match e {
        pydb_file::Error::ReadPastEnd { .. } => {
            Error::corrupted(file.path(), offset, "record past end of file")
        }
        other => other.into(),
    })?;
    match outcome {
        Some(Ok(value)) => Ok(value),
        Some(Err(reason)) => Err(Error::corrupted(file.path(), offset, reason)),
        None => Err(Error::corrupted(
            file.path(),
            offset,
            "the file returned no bytes for the record",
        )),
    }
}

/// How a scan ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tail {
    /// Offset just past the last complete batch: where the valid log ends.
    pub valid_end: u64,
    /// The file length when the scan ended.
    pub file_len: u64,
}

impl Tail {
    /// Bytes after the last complete batch: the torn tail of an interrupted
    /// write (zero for a clean log).
    pub fn torn_bytes(&self) -> u64 {
        self.file_len.saturating_sub(self.valid_end)
    }
}

/// What [`Scanner::truncate_torn_tail`] found after the valid end of a log
/// and cut off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TailCut {
    /// Where the scan ended: valid end and file length.
    pub tail: Tail,
    /// Bytes of a torn write: all of those after the valid end if any of
    /// them is nonzero, else 0.
    pub torn_bytes: u64,
    /// Zeros after the last nonzero byte: space written ahead of the end,
    /// not data.
    pub zero_bytes: u64,
}

/// Reads a log batch by batch, from the first record or from an offset.
///
/// Yields complete batches in order. When it returns `Ok(None)`, [`Scanner::tail`]
/// says where the valid log ends; [`Scanner::truncate_torn_tail`] cuts the
/// rest off.
#[derive(Debug)]
pub struct Scanner<'f, F: File> {
    file: &'f F,
    file_len: u64,
    /// Offset of the next record to decode.
    pos: u64,
    /// Offset just past the last complete batch.
    valid_end: u64,
    /// Buffered bytes of the file, starting at `buf_start`.
    buf: Vec<u8>,
    buf_start: u64,
    done: bool,
}

impl<'f, F: File> Scanner<'f, F> {
    /// Scans `file` from its first record. Checks the file header; an empty
    /// file (or one cut short inside its header) scans as an empty log whose
    /// valid end is 0.
    pub fn new(file: &'f F) -> Result<Self> {
        let start = if check_file_header(file)? {
            FILE_HEADER_LEN as u64
        } else {
            0
        };
        let mut scanner = Self::from_offset(file, start)?;
        if start == 0 {
            scanner.done = true;
        }
        Ok(scanner)
    }

    /// Scans `file` from `offset`, which must be the start of a batch.
    ///
    /// An offset past the end of the file is a corruption error: the log is
    /// shorter than the caller knows it to be, so bytes were lost.
    pub fn from_offset(file: &'f F, offset: u64) -> Result<Self> {
        let file_len = file.len()?;
        if offset > file_len {
            return Err(Error::corrupted(
                file.path(),
                offset,
                format!("scan starts past the end of the log ({file_len} bytes)"),
            ));
        }
        Ok(Self {
            file,
            file_len,
            pos: offset,
            valid_end: offset,
            buf: Vec::new(),
            buf_start: offset,
            done: offset >= file_len,
        })
    }

    /// Where the scan stands: valid end of the log and file length.
    pub fn tail(&self) -> Tail {
        Tail {
            valid_end: self.valid_end,
            file_len: self.file_len,
        }
    }

    /// The next complete batch, `Ok(None)` at the end of the valid log, or
    /// a corruption error if a bad record has valid records after it.
    pub fn next_batch(&mut self) -> Result<Option<Vec<Record>>> {
        if self.done {
            return Ok(None);
        }
        let mut batch = Vec::new();
        loop {
            if self.pos >= self.file_len {
                // End of file inside a batch: the batch is torn.
                self.done = true;
                return Ok(None);
            }
            match self.decode_at(self.pos)? {
                Some(record) => {
                    self.pos += record.encoded_len();
                    let continues = record.batch_continues();
                    batch.push(record);
                    if !continues {
                        self.valid_end = self.pos;
                        return Ok(Some(batch));
                    }
                }
                None => {
                    let bad = self.pos;
                    if let Some(next) = self.find_valid_record_after(bad)? {
                        return Err(Error::corrupted(
                            self.file.path(),
                            bad,
                            format!("bad record followed by a valid record at offset {next}"),
                        ));
                    }
                    self.done = true;
                    return Ok(None);
                }
            }
        }
    }

    /// Scans to the end, then truncates the file to the end of the last
    /// complete batch and syncs it. Returns what was found after that end.
    ///
    /// What follows the valid end is a torn write, zeros written ahead of
    /// the end (a preallocated file whose writer did not close it), or a
    /// torn write followed by zeros. A tail with any nonzero byte is torn,
    /// and counted whole: a torn record's own bytes may end in zeros, so
    /// where the torn write stops and the zeros begin cannot be known. A
    /// tail of zeros only is not a torn write. Zeros are never taken for a
    /// record below [`crate::record::FIRST_OFFSET_WHERE_ZEROS_VERIFY`].
    pub fn truncate_torn_tail(mut self) -> Result<TailCut> {
        while self.next_batch()?.is_some() {}
        let tail = self.tail();
        if tail.torn_bytes() == 0 {
            return Ok(TailCut {
                tail,
                torn_bytes: 0,
                zero_bytes: 0,
            });
        }
        let nonzero_end =
            crate::verify::last_nonzero_end(self.file, tail.valid_end, tail.file_len)?;
        let torn = nonzero_end > tail.valid_end;
        let cut = TailCut {
            tail,
            torn_bytes: if torn { tail.torn_bytes() } else { 0 },
            zero_bytes: tail.file_len - nonzero_end,
        };
        if torn {
            tracing::warn!(
                file = %self.file.path().display(),
                offset = tail.valid_end,
                bytes = cut.torn_bytes,
                zeros = cut.zero_bytes,
                "truncating torn tail of log"
            );
        } else {
            tracing::debug!(
                file = %self.file.path().display(),
                offset = tail.valid_end,
                zeros = cut.zero_bytes,
                "cutting preallocated zeros after the end of the log"
            );
        }
        self.file.set_len(tail.valid_end)?;
        self.file.sync_data()?;
        Ok(cut)
    }

    /// Decodes the record at `offset`, or `None` if the bytes there are not
    /// a whole, valid record.
    fn decode_at(&mut self, offset: u64) -> Result<Option<Record>> {
        let mut needed = RECORD_HEADER_LEN;
        loop {
            let available = self.file_len - offset;
            if (needed as u64) > available {
                return Ok(None);
            }
            self.fill(offset, needed)?;
            let local = (offset - self.buf_start) as usize;
            match decode_record(&self.buf[local..], offset) {
                Decoded::Record { flags, len } => {
                    let payload =
                        Bytes::copy_from_slice(&self.buf[local + RECORD_HEADER_LEN..local + len]);
                    return Ok(Some(Record {
                        offset,
                        flags,
                        payload,
                    }));
                }
                Decoded::Incomplete { needed: more } if more > needed => needed = more,
                Decoded::Incomplete { .. } | Decoded::Invalid(_) => return Ok(None),
            }
        }
    }

    /// Makes sure `buf` holds the bytes `offset..offset + len` (or up to the
    /// end of the file), reading ahead by a chunk.
    fn fill(&mut self, offset: u64, len: usize) -> Result<()> {
        let buf_end = self.buf_start + self.buf.len() as u64;
        if offset >= self.buf_start && offset + len as u64 <= buf_end {
            return Ok(());
        }
        let want = len.max(SCAN_CHUNK) as u64;
        let read_len = want.min(self.file_len - offset) as usize;
        self.buf.resize(read_len, 0);
        self.file.read_at(offset, &mut self.buf)?;
        self.buf_start = offset;
        Ok(())
    }

    /// The offset of the first valid record strictly after `bad`, if any.
    fn find_valid_record_after(&mut self, bad: u64) -> Result<Option<u64>> {
        let mut offset = bad + 1;
        while offset + RECORD_HEADER_LEN as u64 <= self.file_len {
            if self.decode_at(offset)?.is_some() {
                return Ok(Some(offset));
            }
            offset += 1;
        }
        Ok(None)
    }
}
