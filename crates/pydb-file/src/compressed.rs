//! `CompressedFile`: a [`File`] decorator that stores append-only data in
//! lz4-compressed, checksummed chunks.
//!
//! The engine above appends and reads as usual. Underneath, the logical
//! bytes are cut into chunks of 64 KiB; each chunk is compressed on its own
//! (lz4, `lz4_flex`) and stored as a *frame* with its lengths and CRC-32s.
//! An in-memory seek table (frame offsets, built on open by walking the
//! frame headers) takes a logical offset to its frame, so a random read
//! decompresses one chunk, not the file.
//!
//! ## Why only append-only and sealed files
//!
//! Compression makes sizes depend on content: change one byte in the
//! middle of a chunk and its compressed frame may grow, and there is no room
//! for it without moving every frame after it. So [`File::write_at`] into
//! bytes already written is refused with [`Error::Unsupported`]; a write at
//! (or past) the end is an append. That suits the log engine's segments,
//! LSM tables and the WAL, which never rewrite. The B+tree rewrites pages in
//! place and keeps them uncompressed: page-level compression is a different
//! design (InnoDB compresses each page into a smaller fixed slot and keeps a
//! modification log inside it; others map pages through an indirection
//! table), not a decorator under an unchanged engine.
//!
//! ## The tail chunk, durability and torn tails
//!
//! The last chunk is usually partial. Its bytes live in memory, so appends
//! cost a `memcpy` and are readable at once. When the chunk fills, it is
//! compressed and written. [`File::sync_data`] writes the partial chunk as a
//! short frame (rewriting the previous short frame in place) before syncing,
//! so everything appended before a sync is durable, as with a plain file.
//! Dropping the file writes the partial chunk too (without a sync). Unsynced
//! appends of a partial chunk are lost by a kill -9 (a plain file keeps them
//! in the kernel's page cache); the durability contract never promised
//! them.
//!
//! On open, the frames are walked from the header on. A frame header cut
//! short or failing its CRC, a frame longer than the file, or a last frame
//! whose payload fails its CRC is the torn tail of an interrupted write: it
//! is left out of the logical length and reported by
//! [`CompressedFile::dropped_tail`], and the engines see a file that ends
//! early, as they expect after a crash. A sealed frame that fails its
//! payload check when read later is [`Error::Corrupted`] with its offset.
//! As with the encrypted file, rewriting the short last frame in place can,
//! on a real disk that tears that write, lose bytes of the last chunk that
//! were synced before; the simulated power cut does not tear.
//!
//! ## Layout (little-endian)
//!
//! ```text
//! header (24 bytes)
//!   0  [u8; 8]  magic "PYDBLZ4F"
//!   8  u32      version (1)
//!  12  u32      chunk size (uncompressed bytes per chunk, 65536)
//!  16  u32      zero
//!  20  u32      CRC-32 of bytes 0..20
//! frame (one per chunk, back to back from offset 24)
//!   0  u32      CRC-32 of bytes 4..24 of the frame header
//!   4  u32      stored length s (bytes of payload)
//!   8  u32      uncompressed length u (= chunk size, except the last frame)
//!  12  u32      CRC-32 of the payload
//!  16  u8       codec: 0 = stored raw (s = u), 1 = lz4 block (s < u)
//!  17  [u8; 7]  zero
//!  24  [u8; s]  payload
//! ```
//!
//! A chunk that lz4 does not shrink is stored raw, so a frame is never
//! larger than its chunk plus 24 bytes, and incompressible data costs
//! 0.04% at 64 KiB chunks.

use std::path::Path;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::{Error, File, FileOpener, Result};

/// The magic bytes of a compressed file.
pub const COMPRESSED_MAGIC: [u8; 8] = *b"PYDBLZ4F";
/// The compressed-file format version this build writes and reads.
pub const COMPRESSED_VERSION: u32 = 1;
/// Bytes of the file header.
pub const COMPRESSED_HEADER_LEN: usize = 24;
/// Bytes of a frame header.
pub const FRAME_HEADER_LEN: usize = 24;
/// Uncompressed bytes per chunk of a new file.
pub const DEFAULT_CHUNK_SIZE: usize = 64 << 10;
/// The smallest chunk size accepted (tests use small chunks).
pub const MIN_CHUNK_SIZE: usize = 64;
/// The largest chunk size accepted.
pub const MAX_CHUNK_SIZE: usize = 1 << 20;
/// Codec byte: the payload is the chunk itself.
pub const CODEC_RAW: u8 = 0;
/// Codec byte: the payload is an lz4 block.
pub const CODEC_LZ4: u8 = 1;

/// The longest compressed file (2^62 bytes), so that offsets cannot
/// overflow.
pub const MAX_LEN: u64 = 1 << 62;

const VERSION_AT: usize = 8;
const CHUNK_SIZE_AT: usize = 12;
const HEADER_CRC_AT: usize = 20;

/// What the torn tail found on open was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DroppedTail {
    /// The physical offset where the valid frames end.
    pub offset: u64,
    /// The physical bytes after it that were left out.
    pub stored_len: u64,
    /// Why the first left-out frame was rejected.
    pub reason: &'static str,
}

/// Logical versus physical size of a compressed file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompressionStats {
    /// Bytes the engine sees.
    pub logical_bytes: u64,
    /// Bytes on disk (header and frames), once buffered bytes are written.
    pub physical_bytes: u64,
    /// Whole chunks stored.
    pub chunks: u64,
    /// Appended bytes held in memory, not yet in any frame on disk.
    pub buffered_bytes: u64,
}

impl CompressionStats {
    /// Physical bytes per logical byte (0.5 = halved); 1.0 when empty.
    pub fn ratio(&self) -> f64 {
        if self.logical_bytes == 0 {
            1.0
        } else {
            self.physical_bytes as f64 / self.logical_bytes as f64
        }
    }
}

/// A whole chunk on disk: the seek table entry.
#[derive(Debug, Clone, Copy)]
struct Frame {
    offset: u64,
    stored_len: u32,
}

#[derive(Debug)]
struct State {
    header_written: bool,
    chunk_size: usize,
    /// The seek table: frame `i` holds logical bytes
    /// `i * chunk_size..(i + 1) * chunk_size`.
    sealed: Vec<Frame>,
    /// Where the frame of the partial last chunk goes.
    sealed_end: u64,
    /// The partial last chunk (shorter than `chunk_size`).
    tail: Vec<u8>,
    /// How many bytes of `tail` the short frame at `sealed_end` holds (0: no
    /// frame there).
    tail_on_disk: usize,
    /// The physical length of that short frame.
    tail_frame_len: u64,
    /// The inner file may hold bytes past the expected end: cut them before
    /// anything else is written or synced.
    trim_needed: bool,
}

impl State {
    fn len(&self) -> u64 {
        self.sealed.len() as u64 * self.chunk_size as u64 + self.tail.len() as u64
    }

    fn physical_end(&self) -> u64 {
        if !self.header_written {
            0
        } else if self.tail_on_disk > 0 {
            self.sealed_end + self.tail_frame_len
        } else {
            self.sealed_end
        }
    }
}

/// A [`File`] stored as lz4-compressed chunks (see the module docs).
pub struct CompressedFile<F: File> {
    inner: F,
    state: RwLock<State>,
    /// The last chunk decompressed, for runs of small sequential reads.
    cache: Mutex<Option<(usize, Arc<Vec<u8>>)>>,
    dropped_tail: Option<DroppedTail>,
}

impl<F: File> std::fmt::Debug for CompressedFile<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompressedFile")
            .field("inner", &self.inner)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

fn le_u32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

fn valid_chunk_size(size: usize) -> bool {
    (MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&size)
}

/// Encodes `chunk` as a frame (lz4 if that shrinks it, raw otherwise).
fn encode_frame(chunk: &[u8]) -> Vec<u8> {
    let compressed = lz4_flex::block::compress(chunk);
    let (codec, payload) = if compressed.len() < chunk.len() {
        (CODEC_LZ4, &compressed[..])
    } else {
        (CODEC_RAW, chunk)
    };
    let mut frame = vec![0u8; FRAME_HEADER_LEN];
    frame[4..8].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    frame[8..12].copy_from_slice(&(chunk.len() as u32).to_le_bytes());
    frame[12..16].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
    frame[16] = codec;
    let crc = crc32fast::hash(&frame[4..FRAME_HEADER_LEN]);
    frame[..4].copy_from_slice(&crc.to_le_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// A frame header that passed its checksum.
#[derive(Debug, Clone, Copy)]
struct FrameHeader {
    stored_len: u32,
    uncompressed_len: u32,
    payload_crc: u32,
    codec: u8,
}

/// Decodes a frame header, or says which check it fails.
fn decode_frame_header(
    header: &[u8; FRAME_HEADER_LEN],
    chunk_size: usize,
) -> std::result::Result<FrameHeader, &'static str> {
    if crc32fast::hash(&header[4..]) != le_u32(header, 0) {
        return Err("frame header checksum mismatch");
    }
    let frame = FrameHeader {
        stored_len: le_u32(header, 4),
        uncompressed_len: le_u32(header, 8),
        payload_crc: le_u32(header, 12),
        codec: header[16],
    };
    let u = frame.uncompressed_len as usize;
    let s = frame.stored_len as usize;
    let sane = u >= 1
        && u <= chunk_size
        && header[17..].iter().all(|&b| b == 0)
        && match frame.codec {
            CODEC_RAW => s == u,
            CODEC_LZ4 => s >= 1 && s < u,
            _ => false,
        };
    if !sane {
        return Err("frame header holds impossible lengths or codec");
    }
    Ok(frame)
}

/// Checks and decompresses a frame's payload.
fn decode_payload(
    frame: &FrameHeader,
    payload: &[u8],
) -> std::result::Result<Vec<u8>, &'static str> {
    if crc32fast::hash(payload) != frame.payload_crc {
        return Err("chunk payload checksum mismatch");
    }
    let mut out = vec![0u8; frame.uncompressed_len as usize];
    match frame.codec {
        CODEC_RAW => out.copy_from_slice(payload),
        _ => match lz4_flex::block::decompress_into(payload, &mut out) {
            Ok(n) if n == out.len() => {}
            _ => return Err("lz4 block does not decompress to its recorded length"),
        },
    }
    Ok(out)
}

impl<F: File> CompressedFile<F> {
    /// Wraps `inner` with the default chunk size for a new file.
    pub fn open(inner: F) -> Result<Self> {
        Self::open_with_chunk_size(inner, DEFAULT_CHUNK_SIZE)
    }

    /// Wraps `inner`; `chunk_size` applies if the file is new (an existing
    /// file keeps the chunk size in its header).
    ///
    /// Walks the frame headers to build the seek table and verifies the last
    /// frame; writes nothing.
    pub fn open_with_chunk_size(inner: F, chunk_size: usize) -> Result<Self> {
        let path = inner.path().to_path_buf();
        if !valid_chunk_size(chunk_size) {
            return Err(Error::Unsupported {
                path,
                reason: format!(
                    "chunk size {chunk_size} outside {MIN_CHUNK_SIZE}..={MAX_CHUNK_SIZE}"
                ),
            });
        }
        let physical = inner.len()?;
        let mut state = State {
            header_written: false,
            chunk_size,
            sealed: Vec::new(),
            sealed_end: COMPRESSED_HEADER_LEN as u64,
            tail: Vec::new(),
            tail_on_disk: 0,
            tail_frame_len: 0,
            trim_needed: physical > 0,
        };
        let mut dropped_tail = None;
        if physical >= COMPRESSED_HEADER_LEN as u64 {
            let mut header = [0u8; COMPRESSED_HEADER_LEN];
            inner.read_at(0, &mut header)?;
            state.chunk_size = check_header(&header, &path)?;
            state.header_written = true;
            state.trim_needed = false;
            dropped_tail = walk_frames(&inner, &mut state, physical)?;
            state.trim_needed = dropped_tail.is_some();
        }
        Ok(Self {
            inner,
            state: RwLock::new(state),
            cache: Mutex::new(None),
            dropped_tail,
        })
    }

    /// The wrapped file.
    pub fn inner(&self) -> &F {
        &self.inner
    }

    /// The torn tail that was left out on open, if any.
    pub fn dropped_tail(&self) -> Option<&DroppedTail> {
        self.dropped_tail.as_ref()
    }

    /// Logical and physical sizes, for `STATS` and `pydb inspect`.
    pub fn stats(&self) -> CompressionStats {
        let state = self.state.read();
        let buffered = state.tail.len() - state.tail_on_disk.min(state.tail.len());
        CompressionStats {
            logical_bytes: state.len(),
            physical_bytes: state.physical_end(),
            chunks: state.sealed.len() as u64,
            buffered_bytes: buffered as u64,
        }
    }

    /// The chunk size of this file.
    pub fn chunk_size(&self) -> usize {
        self.state.read().chunk_size
    }

    fn corrupted(&self, offset: u64, reason: &str) -> Error {
        Error::Corrupted {
            path: self.inner.path().to_path_buf(),
            offset,
            reason: reason.to_string(),
        }
    }

    /// Reads, checks and decompresses sealed chunk `index`.
    fn sealed_chunk(&self, state: &State, index: usize) -> Result<Arc<Vec<u8>>> {
        if let Some((cached, data)) = &*self.cache.lock()
            && *cached == index
        {
            return Ok(Arc::clone(data));
        }
        let frame = state.sealed[index];
        let mut bytes = vec![0u8; FRAME_HEADER_LEN + frame.stored_len as usize];
        self.inner
            .read_at(frame.offset, &mut bytes)
            .map_err(|e| match e {
                Error::ReadPastEnd { .. } => self.corrupted(frame.offset, "chunk past end of file"),
                other => other,
            })?;
        let mut header = [0u8; FRAME_HEADER_LEN];
        header.copy_from_slice(&bytes[..FRAME_HEADER_LEN]);
        let decoded = decode_frame_header(&header, state.chunk_size)
            .and_then(|h| {
                if h.stored_len != frame.stored_len
                    || h.uncompressed_len as usize != state.chunk_size
                {
                    Err("frame header changed since the file was opened")
                } else {
                    Ok(h)
                }
            })
            .and_then(|h| decode_payload(&h, &bytes[FRAME_HEADER_LEN..]))
            .map_err(|reason| self.corrupted(frame.offset, reason))?;
        let data = Arc::new(decoded);
        *self.cache.lock() = Some((index, Arc::clone(&data)));
        Ok(data)
    }

    fn ensure_header(&self, state: &mut State) -> Result<()> {
        if state.header_written {
            return Ok(());
        }
        let mut header = [0u8; COMPRESSED_HEADER_LEN];
        header[..8].copy_from_slice(&COMPRESSED_MAGIC);
        header[VERSION_AT..CHUNK_SIZE_AT].copy_from_slice(&COMPRESSED_VERSION.to_le_bytes());
        header[CHUNK_SIZE_AT..CHUNK_SIZE_AT + 4]
            .copy_from_slice(&(state.chunk_size as u32).to_le_bytes());
        let crc = crc32fast::hash(&header[..HEADER_CRC_AT]);
        header[HEADER_CRC_AT..].copy_from_slice(&crc.to_le_bytes());
        if state.trim_needed {
            self.inner.set_len(0)?;
            state.trim_needed = false;
        }
        self.inner.write_at(0, &header)?;
        state.header_written = true;
        Ok(())
    }

    fn trim(&self, state: &mut State) -> Result<()> {
        if state.trim_needed {
            self.inner.set_len(state.physical_end())?;
            state.trim_needed = false;
        }
        Ok(())
    }

    /// Writes `frame` at `at`; a failure leaves unknown bytes past the
    /// expected end, so the next write or sync trims first.
    fn write_frame(&self, state: &mut State, at: u64, frame: &[u8]) -> Result<()> {
        self.inner.write_at(at, frame).inspect_err(|_| {
            state.trim_needed = true;
        })
    }

    /// Compresses and writes the full tail chunk as a sealed frame.
    fn seal_tail(&self, state: &mut State) -> Result<()> {
        let frame = encode_frame(&state.tail);
        let at = state.sealed_end;
        let old_end = state.physical_end();
        self.write_frame(state, at, &frame)?;
        state.sealed.push(Frame {
            offset: at,
            stored_len: (frame.len() - FRAME_HEADER_LEN) as u32,
        });
        state.sealed_end = at + frame.len() as u64;
        state.tail.clear();
        state.tail_on_disk = 0;
        state.tail_frame_len = 0;
        if old_end > state.sealed_end {
            // The short frame this chunk replaced was longer than it.
            state.trim_needed = true;
        }
        Ok(())
    }

    /// Writes the partial tail chunk as a short frame, if it changed.
    fn flush_tail(&self, state: &mut State) -> Result<()> {
        if state.tail.len() == state.tail_on_disk {
            return self.trim(state);
        }
        self.ensure_header(state)?;
        self.trim(state)?;
        let old_end = state.physical_end();
        if state.tail.is_empty() {
            state.tail_on_disk = 0;
            state.tail_frame_len = 0;
        } else {
            let frame = encode_frame(&state.tail);
            let at = state.sealed_end;
            self.write_frame(state, at, &frame)?;
            state.tail_on_disk = state.tail.len();
            state.tail_frame_len = frame.len() as u64;
        }
        if old_end > state.physical_end() {
            state.trim_needed = true;
        }
        self.trim(state)
    }

    fn append_locked(&self, state: &mut State, data: &[u8]) -> Result<u64> {
        let offset = state.len();
        if offset
            .checked_add(data.len() as u64)
            .is_none_or(|end| end > MAX_LEN)
        {
            return Err(Error::Overflow {
                path: self.inner.path().to_path_buf(),
                offset,
            });
        }
        if data.is_empty() {
            return Ok(offset);
        }
        self.ensure_header(state)?;
        self.trim(state)?;
        let mut rest = data;
        while !rest.is_empty() {
            let take = (state.chunk_size - state.tail.len()).min(rest.len());
            let before = state.tail.len();
            state.tail.extend_from_slice(&rest[..take]);
            if state.tail.len() == state.chunk_size
                && let Err(err) = self.seal_tail(state)
            {
                // What was sealed before stays; this chunk's new bytes go.
                state.tail.truncate(before);
                return Err(err);
            }
            rest = &rest[take..];
        }
        self.trim(state)?;
        Ok(offset)
    }

    fn set_len_locked(&self, state: &mut State, new_len: u64) -> Result<()> {
        let len = state.len();
        if new_len > len {
            let zeros = vec![0u8; state.chunk_size];
            let mut left = new_len - len;
            while left > 0 {
                let step = left.min(zeros.len() as u64) as usize;
                self.append_locked(state, &zeros[..step])?;
                left -= step as u64;
            }
            return Ok(());
        }
        if new_len == len {
            return self.trim(state);
        }
        let chunk = state.chunk_size as u64;
        let sealed_len = state.sealed.len() as u64 * chunk;
        if new_len >= sealed_len {
            state.tail.truncate((new_len - sealed_len) as usize);
        } else {
            let index = (new_len / chunk) as usize;
            let data = self.sealed_chunk(state, index)?;
            *self.cache.lock() = None;
            state.sealed_end = state.sealed[index].offset;
            state.sealed.truncate(index);
            state.tail = data[..(new_len % chunk) as usize].to_vec();
        }
        // The short frame on disk no longer matches: write the new one now
        // and cut the file after it, so that a reopen finds the new length
        // even before the next sync.
        state.tail_on_disk = 0;
        state.tail_frame_len = 0;
        state.trim_needed = true;
        self.flush_tail(state)
    }
}

/// Checks a file header; returns the chunk size.
fn check_header(header: &[u8; COMPRESSED_HEADER_LEN], path: &Path) -> Result<usize> {
    let corrupted = |reason: &str| Error::Corrupted {
        path: path.to_path_buf(),
        offset: 0,
        reason: reason.to_string(),
    };
    if crc32fast::hash(&header[..HEADER_CRC_AT]) != le_u32(header, HEADER_CRC_AT) {
        return Err(corrupted("compressed file header checksum mismatch"));
    }
    if header[..8] != COMPRESSED_MAGIC {
        return Err(corrupted("not a compressed pydb file (bad magic)"));
    }
    let version = le_u32(header, VERSION_AT);
    if version != COMPRESSED_VERSION {
        return Err(Error::Unsupported {
            path: path.to_path_buf(),
            reason: format!(
                "compressed file version {version}; this build reads {COMPRESSED_VERSION}"
            ),
        });
    }
    let chunk_size = le_u32(header, CHUNK_SIZE_AT) as usize;
    if !valid_chunk_size(chunk_size) {
        return Err(corrupted("compressed file header: impossible chunk size"));
    }
    Ok(chunk_size)
}

/// Walks the frames after the header, filling the seek table and the tail.
/// Returns the torn tail, if one was found.
fn walk_frames<F: File>(
    inner: &F,
    state: &mut State,
    physical: u64,
) -> Result<Option<DroppedTail>> {
    let mut pos = COMPRESSED_HEADER_LEN as u64;
    let torn = |pos: u64, reason| {
        Ok(Some(DroppedTail {
            offset: pos,
            stored_len: physical - pos,
            reason,
        }))
    };
    while pos < physical {
        if physical - pos < FRAME_HEADER_LEN as u64 {
            return torn(pos, "frame header cut short");
        }
        let mut header = [0u8; FRAME_HEADER_LEN];
        inner.read_at(pos, &mut header)?;
        let frame = match decode_frame_header(&header, state.chunk_size) {
            Ok(frame) => frame,
            Err(reason) => return torn(pos, reason),
        };
        let frame_len = FRAME_HEADER_LEN as u64 + u64::from(frame.stored_len);
        if physical - pos < frame_len {
            return torn(pos, "frame cut short");
        }
        let is_last = physical - pos == frame_len;
        let is_partial = frame.uncompressed_len as usize != state.chunk_size;
        if is_last || is_partial {
            // The last frame is verified now: if it is torn, the length
            // must not count it.
            let mut payload = vec![0u8; frame.stored_len as usize];
            inner.read_at(pos + FRAME_HEADER_LEN as u64, &mut payload)?;
            let data = match decode_payload(&frame, &payload) {
                Ok(data) => data,
                Err(reason) => return torn(pos, reason),
            };
            if is_partial {
                state.sealed_end = pos;
                state.tail = data;
                state.tail_on_disk = state.tail.len();
                state.tail_frame_len = frame_len;
                if !is_last {
                    return torn(pos + frame_len, "bytes after the short last frame");
                }
                return Ok(None);
            }
        }
        state.sealed.push(Frame {
            offset: pos,
            stored_len: frame.stored_len,
        });
        pos += frame_len;
        state.sealed_end = pos;
    }
    Ok(None)
}

impl<F: File> File for CompressedFile<F> {
    fn path(&self) -> &Path {
        self.inner.path()
    }

    fn len(&self) -> Result<u64> {
        Ok(self.state.read().len())
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let state = self.state.read();
        let len = state.len();
        let end = offset
            .checked_add(buf.len() as u64)
            .ok_or_else(|| Error::Overflow {
                path: self.inner.path().to_path_buf(),
                offset,
            })?;
        if end > len {
            return Err(Error::ReadPastEnd {
                path: self.inner.path().to_path_buf(),
                offset,
                len: buf.len(),
                file_len: len,
            });
        }
        let chunk = state.chunk_size as u64;
        let mut pos = offset;
        while pos < end {
            let index = (pos / chunk) as usize;
            let start = index as u64 * chunk;
            let sealed;
            let bytes: &[u8] = if index < state.sealed.len() {
                sealed = self.sealed_chunk(&state, index)?;
                &sealed
            } else {
                &state.tail
            };
            let to = end.min(start + bytes.len() as u64);
            buf[(pos - offset) as usize..(to - offset) as usize]
                .copy_from_slice(&bytes[(pos - start) as usize..(to - start) as usize]);
            pos = to;
        }
        Ok(())
    }

    /// Appends when `offset` is at or past the end (zeros fill the gap);
    /// anything else is [`Error::Unsupported`]: a compressed file is never
    /// rewritten in place.
    fn write_at(&self, offset: u64, data: &[u8]) -> Result<()> {
        let mut state = self.state.write();
        let len = state.len();
        if data.is_empty() {
            return Ok(());
        }
        if offset < len {
            return Err(Error::Unsupported {
                path: self.inner.path().to_path_buf(),
                reason: format!(
                    "in-place write of {} bytes at offset {offset} into a compressed file of {len} bytes; compressed files only take appends",
                    data.len()
                ),
            });
        }
        if offset > len {
            self.set_len_locked(&mut state, offset)?;
        }
        self.append_locked(&mut state, data).map(|_| ())
    }

    fn append(&self, data: &[u8]) -> Result<u64> {
        let mut state = self.state.write();
        self.append_locked(&mut state, data)
    }

    fn set_len(&self, len: u64) -> Result<()> {
        let mut state = self.state.write();
        self.set_len_locked(&mut state, len)
    }

    fn sync_data(&self) -> Result<()> {
        {
            let mut state = self.state.write();
            self.flush_tail(&mut state)?;
        }
        // No lock across the fsync: appends continue in memory meanwhile.
        self.inner.sync_data()
    }
}

impl<F: File> Drop for CompressedFile<F> {
    fn drop(&mut self) {
        // Hand the buffered partial chunk to the OS, as a plain file's
        // unsynced writes would be; a failure here has no one to report to,
        // and only concerns bytes that were never synced.
        let mut state = self.state.write();
        if state.tail.len() != state.tail_on_disk {
            let _ = self.flush_tail(&mut state);
        }
    }
}

/// Opens [`CompressedFile`]s over the files of another opener. Directory
/// operations go to the inner opener unchanged.
#[derive(Debug, Clone)]
pub struct CompressedOpener<O> {
    inner: O,
    chunk_size: usize,
}

impl<O> CompressedOpener<O> {
    /// Compresses the files of `inner` with the default chunk size.
    pub fn new(inner: O) -> Self {
        Self::with_chunk_size(inner, DEFAULT_CHUNK_SIZE)
    }

    /// Compresses the new files of `inner` with `chunk_size`-byte chunks.
    pub fn with_chunk_size(inner: O, chunk_size: usize) -> Self {
        Self { inner, chunk_size }
    }

    /// The wrapped opener.
    pub fn inner(&self) -> &O {
        &self.inner
    }
}

impl<O: FileOpener> FileOpener for CompressedOpener<O> {
    type File = CompressedFile<O::File>;

    fn open(&self, path: &Path, create: bool) -> Result<Self::File> {
        CompressedFile::open_with_chunk_size(self.inner.open(path, create)?, self.chunk_size)
    }

    fn remove(&self, path: &Path) -> Result<()> {
        self.inner.remove(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        self.inner.rename(from, to)
    }

    fn create_dir_all(&self, dir: &Path) -> Result<()> {
        self.inner.create_dir_all(dir)
    }

    fn list_dir(&self, dir: &Path) -> Result<Vec<std::ffi::OsString>> {
        self.inner.list_dir(dir)
    }

    fn sync_dir(&self, dir: &Path) -> Result<()> {
        self.inner.sync_dir(dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MonolithicFile;

    fn open(path: &Path, chunk: usize) -> CompressedFile<MonolithicFile> {
        CompressedFile::open_with_chunk_size(MonolithicFile::create(path).unwrap(), chunk).unwrap()
    }

    fn read_all(file: &impl File) -> Vec<u8> {
        let mut buf = vec![0u8; file.len().unwrap() as usize];
        file.read_at(0, &mut buf).unwrap();
        buf
    }

    /// Text-like bytes that lz4 halves or better.
    fn compressible(len: usize, seed: u32) -> Vec<u8> {
        let words: [&[u8]; 6] = [
            b"alpha ", b"beta ", b"gamma ", b"delta ", b"key:", b"value;",
        ];
        let mut out = Vec::with_capacity(len);
        let mut x = seed.wrapping_mul(2_654_435_761).max(1);
        while out.len() < len {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            out.extend_from_slice(words[(x % 6) as usize]);
            out.push(b'0' + (x >> 8) as u8 % 10);
        }
        out.truncate(len);
        out
    }

    #[test]
    fn the_header_and_frames_are_as_documented() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = open(&path, 4096);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            0,
            "open writes nothing"
        );
        let data = compressible(4096 + 100, 1);
        file.append(&data).unwrap();
        file.sync_data().unwrap();
        let raw = std::fs::read(&path).unwrap();
        assert_eq!(&raw[..8], b"PYDBLZ4F");
        assert_eq!(raw[8..12], 1u32.to_le_bytes());
        assert_eq!(raw[12..16], 4096u32.to_le_bytes());
        assert_eq!(raw[20..24], crc32fast::hash(&raw[..20]).to_le_bytes());
        // Frame 0: a whole chunk, lz4.
        let frame = &raw[24..];
        let stored = le_u32(frame, 4) as usize;
        assert_eq!(le_u32(frame, 8), 4096);
        assert_eq!(frame[16], CODEC_LZ4);
        assert!(stored < 4096 / 2, "{stored}");
        assert_eq!(le_u32(frame, 0), crc32fast::hash(&frame[4..24]));
        assert_eq!(le_u32(frame, 12), crc32fast::hash(&frame[24..24 + stored]));
        // Frame 1: the short last chunk, written by the sync.
        let last = &frame[24 + stored..];
        assert_eq!(le_u32(last, 8), 100);
        assert_eq!(24 + le_u32(last, 4) as usize, last.len());
        drop(file);
        assert_eq!(read_all(&open(&path, 4096)), data);
    }

    #[test]
    fn in_place_writes_are_refused_and_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let file = open(&dir.path().join("f"), 256);
        file.append(&[1u8; 1000]).unwrap();
        for at in [0, 255, 256, 999] {
            let err = file.write_at(at, b"xy").unwrap_err();
            assert!(matches!(err, Error::Unsupported { .. }), "{err}");
        }
        assert_eq!(read_all(&file), vec![1u8; 1000]);
        // At or past the end, a write is an append (zeros fill the gap).
        file.write_at(1000, b"ab").unwrap();
        file.write_at(1010, b"cd").unwrap();
        let mut want = vec![1u8; 1000];
        want.extend_from_slice(b"ab\0\0\0\0\0\0\0\0cd");
        assert_eq!(read_all(&file), want);
    }

    #[test]
    fn lz4_halves_compressible_data_and_reports_the_ratio() {
        let dir = tempfile::tempdir().unwrap();
        let file = open(&dir.path().join("f"), DEFAULT_CHUNK_SIZE);
        file.append(&compressible(1 << 20, 7)).unwrap();
        file.sync_data().unwrap();
        let stats = file.stats();
        assert_eq!(stats.logical_bytes, 1 << 20);
        assert_eq!(stats.chunks, 16);
        assert_eq!(stats.buffered_bytes, 0);
        assert_eq!(
            stats.physical_bytes,
            std::fs::metadata(file.path()).unwrap().len()
        );
        assert!(stats.ratio() < 0.55, "{}", stats.ratio());
        // Incompressible data is stored raw: 24 bytes per chunk more.
        let noise = open(&dir.path().join("g"), DEFAULT_CHUNK_SIZE);
        let bytes: Vec<u8> = (0..1u32 << 18)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        noise.append(&bytes).unwrap();
        noise.sync_data().unwrap();
        assert!(noise.stats().ratio() < 1.001, "{}", noise.stats().ratio());
    }

    #[test]
    fn appends_are_readable_before_any_frame_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = open(&path, 4096);
        file.append(b"buffered").unwrap();
        assert_eq!(read_all(&file), b"buffered");
        assert_eq!(file.stats().buffered_bytes, 8);
        drop(file);
        // Dropping the file wrote the partial chunk.
        assert_eq!(read_all(&open(&path, 4096)), b"buffered");
    }

    #[test]
    fn set_len_truncates_into_sealed_chunks_and_extends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = open(&path, 256);
        let data = compressible(2000, 3);
        file.append(&data).unwrap();
        file.set_len(700).unwrap();
        assert_eq!(read_all(&file), data[..700]);
        // The shorter length is on disk at once, not only after a sync.
        let reopened = open(&path, 256);
        assert_eq!(read_all(&reopened), data[..700]);
        drop(reopened);
        file.set_len(1000).unwrap();
        file.append(b"end").unwrap();
        let mut want = data[..700].to_vec();
        want.resize(1000, 0);
        want.extend_from_slice(b"end");
        assert_eq!(read_all(&file), want);
        file.set_len(512).unwrap();
        file.set_len(0).unwrap();
        assert_eq!(file.len().unwrap(), 0);
        drop(file);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 24);
    }

    #[test]
    fn a_torn_last_frame_is_left_out_and_a_damaged_sealed_frame_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = open(&path, 256);
        let data = compressible(1000, 5);
        file.append(&data).unwrap();
        file.sync_data().unwrap();
        drop(file);
        let raw = std::fs::read(&path).unwrap();
        for cut in 1..40 {
            std::fs::write(&path, &raw[..raw.len() - cut]).unwrap();
            let file = open(&path, 256);
            assert_eq!(file.len().unwrap(), 768, "cut {cut}");
            assert!(file.dropped_tail().is_some());
            assert_eq!(read_all(&file), data[..768]);
        }
        let mut bad = raw.clone();
        bad[24 + 30] ^= 0x10;
        std::fs::write(&path, &bad).unwrap();
        let file = open(&path, 256);
        let err = file.read_at(0, &mut [0u8; 4]).unwrap_err();
        assert!(matches!(err, Error::Corrupted { offset: 24, .. }), "{err}");
    }
}
