//! `CompressedFile`: a [`File`] decorator that stores append-only data as
//! lz4-compressed, checksummed frames, grouped in chunks with a seek table.
//!
//! The engine above appends and reads as usual. Underneath, the logical
//! bytes are cut into chunks of 16 KiB. Every append becomes one *frame*
//! per chunk it touches: its bytes compressed with lz4 (`lz4_flex`), using
//! the bytes of the same chunk before it as the dictionary, and stored with
//! its lengths and a CRC-32. So a small record that repeats what the chunk
//! already holds costs a few bytes, as in RocksDB's streaming WAL
//! compression. An in-memory seek table (where each chunk's first frame
//! starts, built on open) takes a logical offset to its chunk, so a random
//! read decompresses the frames of one chunk, never the whole file, and
//! within the chunk only the frames up to the last byte it wants (a frame
//! may refer back to any byte before it in its chunk, so the frames before
//! it must be decoded too; that is why chunks are small).
//!
//! A random read that misses decodes a whole chunk, and the opener's
//! [`ChunkCache`] (shared by its files, bounded, 8 MiB by default) keeps it,
//! so the next read in that chunk is a copy: without it, every random read
//! of a log engine's record would decode, on average, half a chunk of
//! small frames. A whole chunk never changes until `set_len` cuts into it,
//! which removes its entries first, under the file's write lock.
//!
//! The chunk size trades reads against space: a read decodes on average
//! half a chunk, and the first frame of every chunk is compressed without
//! a dictionary. 16 KiB is the dictionary an append uses anyway, so
//! smaller chunks lose little compression, and a random read decodes a
//! quarter of what 64 KiB chunks cost.
//!
//! ## Nothing written is ever rewritten
//!
//! Frames are only ever appended, and `set_len` only cuts the file. So a
//! compressed file has a plain file's durability, byte for byte: an
//! unsynced or torn append can damage nothing that was synced, a failed
//! write fails the append that made it (the WAL cuts it off and goes on),
//! and every append reaches the operating system before it returns (kill -9
//! loses nothing). The price is a 12-byte frame header per append per chunk,
//! and the CPU of compressing each append on its own (the dictionary is the
//! last 16 KiB of the chunk, to bound that cost).
//!
//! ## Why only append-only and sealed files
//!
//! Compression makes sizes depend on content: change one byte in the
//! middle of a chunk and its frames change size and meaning (later frames
//! refer back to earlier bytes), with no room to grow without moving every
//! frame after it. So [`File::write_at`] into bytes already written is
//! refused with [`Error::Unsupported`]; a write at (or past) the end is an
//! append. That suits the log engine's segments, LSM tables and the WAL,
//! which never rewrite. The B+tree rewrites pages in place and keeps them
//! uncompressed: page-level compression is a different design (InnoDB
//! compresses each page into a smaller fixed slot and keeps a modification
//! log inside it; others map pages through an indirection table), not a
//! decorator under an unchanged engine.
//!
//! ## Torn tails
//!
//! On open, the frames are walked from the header on, each checked against
//! its CRC. The first frame that is cut short or fails its checks ends the
//! valid data. If no valid frame follows it, it is the torn tail of an
//! interrupted append: it is left out of the logical length and reported by
//! [`CompressedFile::dropped_tail`], the engines see a file that ends early
//! (as they expect after a crash), and the next write cuts it off. If a
//! valid frame does follow, the file is damaged, not torn, and opening it is
//! [`Error::Corrupted`]: cutting there would drop data that was synced. A
//! frame damaged after the file was opened is [`Error::Corrupted`] when read.
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
//! frame (back to back from offset 24)
//!   0  u32      CRC-32 of the frame's file offset (u64 LE, not stored),
//!               then of bytes 4..12 and the payload
//!   4  u32      bits 0..31: stored length s; bit 31: codec
//!               (0 = raw, s = u; 1 = lz4 block whose dictionary is the
//!               bytes of the chunk before this frame, at most 64 KiB)
//!   8  u32      uncompressed length u (>= 1)
//!  12  [u8; s]  payload
//! ```
//!
//! A frame never crosses a chunk boundary: chunk `k` holds logical bytes
//! `k * chunk_size..(k + 1) * chunk_size` and is made of the frames whose
//! `u` add up to it. A frame that lz4 does not shrink is stored raw.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};

use crate::{Error, File, FileOpener, Result};

/// The magic bytes of a compressed file.
pub const COMPRESSED_MAGIC: [u8; 8] = *b"PYDBLZ4F";
/// The compressed-file format version this build writes and reads.
pub const COMPRESSED_VERSION: u32 = 1;
/// Bytes of the file header.
pub const COMPRESSED_HEADER_LEN: usize = 24;
/// Bytes of a frame header.
pub const FRAME_HEADER_LEN: usize = 12;
/// Uncompressed bytes per chunk of a new file.
pub const DEFAULT_CHUNK_SIZE: usize = 16 << 10;
/// The smallest chunk size accepted (tests use small chunks).
pub const MIN_CHUNK_SIZE: usize = 64;
/// The largest chunk size accepted.
pub const MAX_CHUNK_SIZE: usize = 1 << 20;
/// The bit of a frame's length word that marks an lz4 payload.
pub const CODEC_LZ4_BIT: u32 = 1 << 31;
/// The longest compressed file (2^62 bytes), so that offsets cannot
/// overflow.
pub const MAX_LEN: u64 = 1 << 62;

/// How far back lz4 can refer (its window), and so the largest useful
/// dictionary when decoding.
const LZ4_WINDOW: usize = 64 << 10;
/// The dictionary an append is compressed with: the last bytes of its
/// chunk. lz4 hashes the whole dictionary on every call, so it is kept
/// smaller than the window.
const APPEND_DICT_LEN: usize = 16 << 10;
/// Bytes read at a time while walking the frames on open.
const WALK_READ: usize = 1 << 20;
/// After a bad frame, at most this many following bytes are searched for a
/// valid frame; a longer remainder is reported as corruption outright.
const MAX_TAIL_SCAN: u64 = 16 << 20;

const VERSION_AT: usize = 8;
const CHUNK_SIZE_AT: usize = 12;
const HEADER_CRC_AT: usize = 20;

/// The chunk cache a [`CompressedOpener`] shares among its files by
/// default: 8 MiB of decoded chunks.
pub const DEFAULT_CHUNK_CACHE_BYTES: usize = 8 << 20;

/// Gives every opened [`CompressedFile`] its own key in a [`ChunkCache`].
static NEXT_FILE_SERIAL: AtomicU64 = AtomicU64::new(1);

/// Decoded whole chunks, shared by the files of one [`CompressedOpener`]
/// (see the module docs): a random read of a cached chunk costs a copy
/// instead of a read and the decoding of up to a chunk of frames. Keyed by
/// a number given to each opened file and the chunk's index; bounded by
/// bytes, oldest entry out first.
///
/// Invariant: an entry is the decoded content of that whole chunk as it is
/// now. Whole chunks are never rewritten; `set_len` removes the entries of
/// the chunks it cuts (under the file's write lock) before it changes them.
pub struct ChunkCache {
    capacity_bytes: usize,
    chunks: Mutex<CachedChunks>,
}

#[derive(Default)]
struct CachedChunks {
    map: HashMap<(u64, usize), Arc<Vec<u8>>>,
    /// Insertion order, for eviction; may name entries already removed.
    order: VecDeque<(u64, usize)>,
    bytes: usize,
    hits: u64,
    misses: u64,
}

impl ChunkCache {
    /// A cache of at most `bytes` of decoded chunks.
    pub fn new(bytes: usize) -> Self {
        Self {
            capacity_bytes: bytes,
            chunks: Mutex::new(CachedChunks::default()),
        }
    }

    /// Hits and misses so far.
    pub fn hits_and_misses(&self) -> (u64, u64) {
        let chunks = self.chunks.lock();
        (chunks.hits, chunks.misses)
    }

    fn get(&self, file: u64, index: usize) -> Option<Arc<Vec<u8>>> {
        let mut chunks = self.chunks.lock();
        let found = chunks.map.get(&(file, index)).cloned();
        match found {
            Some(_) => chunks.hits += 1,
            None => chunks.misses += 1,
        }
        found
    }

    fn insert(&self, file: u64, index: usize, data: &Arc<Vec<u8>>) {
        if data.len() > self.capacity_bytes {
            return;
        }
        let mut chunks = self.chunks.lock();
        while chunks.bytes + data.len() > self.capacity_bytes {
            let Some(old) = chunks.order.pop_front() else {
                break;
            };
            if let Some(gone) = chunks.map.remove(&old) {
                chunks.bytes -= gone.len();
            }
        }
        match chunks.map.insert((file, index), Arc::clone(data)) {
            Some(old) => chunks.bytes -= old.len(),
            None => chunks.order.push_back((file, index)),
        }
        chunks.bytes += data.len();
        // Keep the order queue from growing without bound when entries are
        // removed by cuts.
        if chunks.order.len() > 2 * chunks.map.len() + 64 {
            let CachedChunks { map, order, .. } = &mut *chunks;
            order.retain(|key| map.contains_key(key));
        }
    }

    /// Removes the entries of `file` for chunks `from` and after.
    fn remove_from(&self, file: u64, from: usize) {
        let mut chunks = self.chunks.lock();
        let CachedChunks { map, bytes, .. } = &mut *chunks;
        map.retain(|(f, index), data| {
            let keep = *f != file || *index < from;
            if !keep {
                *bytes -= data.len();
            }
            keep
        });
    }
}

impl std::fmt::Debug for ChunkCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkCache")
            .field("capacity_bytes", &self.capacity_bytes)
            .finish_non_exhaustive()
    }
}

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
    /// Bytes on disk: the header and every frame.
    pub physical_bytes: u64,
    /// Whole chunks stored.
    pub chunks: u64,
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

/// The current sizes of one open compressed file, shared with the
/// [`CompressionTotals`] of its opener.
#[derive(Debug, Default)]
struct FileSizes {
    logical: AtomicU64,
    physical: AtomicU64,
    chunks: AtomicU64,
}

/// The sizes of every file a [`CompressedOpener`] has opened (and not
/// removed), summed: the compression ratio of a whole database, as `STATS`
/// shows it. Each file updates its own entry after every write, so reading
/// the totals costs one pass over the open files, not over the data.
/// Clones share the totals.
#[derive(Debug, Clone, Default)]
pub struct CompressionTotals {
    files: Arc<Mutex<HashMap<PathBuf, Arc<FileSizes>>>>,
}

impl CompressionTotals {
    /// The sums over the files.
    pub fn stats(&self) -> CompressionStats {
        let files = self.files.lock();
        let mut stats = CompressionStats {
            logical_bytes: 0,
            physical_bytes: 0,
            chunks: 0,
        };
        for sizes in files.values() {
            stats.logical_bytes += sizes.logical.load(Ordering::Relaxed);
            stats.physical_bytes += sizes.physical.load(Ordering::Relaxed);
            stats.chunks += sizes.chunks.load(Ordering::Relaxed);
        }
        stats
    }

    /// A fresh entry for the file at `path` (replacing an older one).
    fn register(&self, path: &Path) -> Arc<FileSizes> {
        let sizes = Arc::new(FileSizes::default());
        self.files
            .lock()
            .insert(path.to_path_buf(), Arc::clone(&sizes));
        sizes
    }
}

/// The frames of one chunk: (logical end in the chunk, physical end in the
/// file) of each.
type FrameEnds = Vec<(usize, u64)>;

#[derive(Debug)]
struct State {
    header_written: bool,
    chunk_size: usize,
    /// The seek table: where the first frame of each whole chunk starts.
    /// Chunk `i` ends where chunk `i + 1` (or the tail chunk) starts.
    chunk_starts: Vec<u64>,
    /// Where the first frame of the partial last chunk starts (or will).
    tail_start: u64,
    /// The partial last chunk, uncompressed (the next append's dictionary).
    tail: Vec<u8>,
    /// The frames of the partial chunk: (logical end in the chunk, physical
    /// end in the file), so that `set_len` can cut between frames.
    tail_frames: FrameEnds,
    /// Where the next frame goes.
    physical_end: u64,
    /// The inner file may hold bytes past `physical_end` (a dropped tail, a
    /// failed write): cut them before anything else is written or synced.
    trim_needed: bool,
}

impl State {
    fn len(&self) -> u64 {
        self.chunk_starts.len() as u64 * self.chunk_size as u64 + self.tail.len() as u64
    }

    /// The physical range of whole chunk `index`.
    fn chunk_range(&self, index: usize) -> (u64, u64) {
        let start = self.chunk_starts[index];
        let end = self
            .chunk_starts
            .get(index + 1)
            .copied()
            .unwrap_or(self.tail_start);
        (start, end)
    }
}

/// A [`File`] stored as lz4-compressed frames (see the module docs).
pub struct CompressedFile<F> {
    inner: F,
    state: RwLock<State>,
    /// The last chunk decompressed (or its first frames), for runs of small
    /// sequential reads.
    cache: Mutex<Option<(usize, Arc<Vec<u8>>)>>,
    /// Decoded whole chunks (shared with the opener's other files), and
    /// this file's key in it.
    shared: Option<Arc<ChunkCache>>,
    serial: u64,
    dropped_tail: Option<DroppedTail>,
    /// Where this file's sizes are published for its opener's totals.
    sizes: Option<Arc<FileSizes>>,
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

/// The bytes of `chunk_prefix` a frame after it may refer to.
fn dictionary(chunk_prefix: &[u8], max: usize) -> &[u8] {
    &chunk_prefix[chunk_prefix.len().saturating_sub(max)..]
}

/// Encodes `piece` as a frame appended to `out`, compressed against `dict`
/// (the chunk's bytes before it), or raw if lz4 does not shrink it.
fn encode_frame(piece: &[u8], dict: &[u8], offset: u64, out: &mut Vec<u8>) {
    let compressed = lz4_flex::block::compress_with_dict(piece, dictionary(dict, APPEND_DICT_LEN));
    let (word, payload) = if compressed.len() < piece.len() {
        (compressed.len() as u32 | CODEC_LZ4_BIT, &compressed[..])
    } else {
        (piece.len() as u32, piece)
    };
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&word.to_le_bytes());
    out.extend_from_slice(&(piece.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
    let crc = frame_crc(offset, &out[start + 4..]);
    out[start..start + 4].copy_from_slice(&crc.to_le_bytes());
}

/// The CRC-32 of a frame written at `offset`: over the offset (u64 LE, not
/// stored) and the frame's bytes after the CRC. Binding the offset means a
/// frame verifies only where it was written, so the bytes of a frame inside
/// a payload (a value that is itself a compressed file) are never taken for
/// a frame when a torn tail is searched for valid data.
fn frame_crc(offset: u64, rest: &[u8]) -> u32 {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&offset.to_le_bytes());
    crc.update(rest);
    crc.finalize()
}

/// A frame found in a byte slice.
#[derive(Debug, Clone, Copy)]
struct FrameAt {
    /// Bytes of the frame, header included.
    len: usize,
    /// Uncompressed bytes.
    uncompressed: usize,
    lz4: bool,
}

/// Checks the frame at the start of `bytes`: complete, checksum right,
/// lengths possible for a frame that may hold up to `room` more bytes of
/// its chunk.
fn check_frame(
    bytes: &[u8],
    room: usize,
    offset: u64,
) -> std::result::Result<FrameAt, &'static str> {
    if bytes.len() < FRAME_HEADER_LEN {
        return Err("frame header cut short");
    }
    let word = le_u32(bytes, 4);
    let stored = (word & !CODEC_LZ4_BIT) as usize;
    let lz4 = word & CODEC_LZ4_BIT != 0;
    let uncompressed = le_u32(bytes, 8) as usize;
    let possible = uncompressed >= 1
        && uncompressed <= room
        && if lz4 {
            stored >= 1 && stored <= lz4_flex::block::get_maximum_output_size(uncompressed)
        } else {
            stored == uncompressed
        };
    if !possible {
        return Err("frame header holds impossible lengths");
    }
    let len = FRAME_HEADER_LEN + stored;
    if bytes.len() < len {
        return Err("frame cut short");
    }
    if frame_crc(offset, &bytes[4..len]) != le_u32(bytes, 0) {
        return Err("frame checksum mismatch");
    }
    Ok(FrameAt {
        len,
        uncompressed,
        lz4,
    })
}

/// Decodes the frames in `bytes` into `chunk` (which holds the chunk's
/// bytes before them), returning each frame's (logical end in the chunk,
/// end offset in `bytes`). Stops after the frame that takes the chunk to
/// `stop_at` bytes or more.
fn decode_frames(
    bytes: &[u8],
    offset: u64,
    chunk: &mut Vec<u8>,
    chunk_size: usize,
    stop_at: usize,
) -> std::result::Result<Vec<(usize, usize)>, (usize, &'static str)> {
    let mut pos = 0;
    let mut ends = Vec::new();
    while pos < bytes.len() && chunk.len() < stop_at {
        let frame = check_frame(&bytes[pos..], chunk_size - chunk.len(), offset + pos as u64)
            .map_err(|r| (pos, r))?;
        let payload = &bytes[pos + FRAME_HEADER_LEN..pos + frame.len];
        let start = chunk.len();
        chunk.resize(start + frame.uncompressed, 0);
        if frame.lz4 {
            let (before, out) = chunk.split_at_mut(start);
            match lz4_flex::block::decompress_into_with_dict(
                payload,
                out,
                dictionary(before, LZ4_WINDOW),
            ) {
                Ok(n) if n == frame.uncompressed => {}
                _ => return Err((pos, "lz4 frame does not decompress to its recorded length")),
            }
        } else {
            chunk[start..].copy_from_slice(payload);
        }
        pos += frame.len;
        ends.push((chunk.len(), pos));
    }
    Ok(ends)
}

impl<F: File> CompressedFile<F> {
    /// Wraps `inner` with the default chunk size for a new file.
    pub fn open(inner: F) -> Result<Self> {
        Self::open_with_chunk_size(inner, DEFAULT_CHUNK_SIZE)
    }

    /// Wraps `inner`; `chunk_size` applies if the file is new (an existing
    /// file keeps the chunk size in its header).
    ///
    /// Walks and checks every frame to build the seek table; writes
    /// nothing.
    pub fn open_with_chunk_size(inner: F, chunk_size: usize) -> Result<Self> {
        if !valid_chunk_size(chunk_size) {
            return Err(Error::Unsupported {
                path: inner.path().to_path_buf(),
                reason: format!(
                    "chunk size {chunk_size} outside {MIN_CHUNK_SIZE}..={MAX_CHUNK_SIZE}"
                ),
            });
        }
        let physical = inner.len()?;
        let mut state = State {
            header_written: false,
            chunk_size,
            chunk_starts: Vec::new(),
            tail_start: COMPRESSED_HEADER_LEN as u64,
            tail: Vec::new(),
            tail_frames: Vec::new(),
            physical_end: 0,
            trim_needed: physical > 0,
        };
        let mut dropped_tail = None;
        if physical >= COMPRESSED_HEADER_LEN as u64 {
            let mut header = [0u8; COMPRESSED_HEADER_LEN];
            inner.read_at(0, &mut header)?;
            state.chunk_size = check_header(&header, inner.path())?;
            state.header_written = true;
            dropped_tail = walk_frames(&inner, &mut state, physical)?;
            state.trim_needed = dropped_tail.is_some();
        }
        Ok(Self {
            inner,
            state: RwLock::new(state),
            cache: Mutex::new(None),
            shared: None,
            serial: NEXT_FILE_SERIAL.fetch_add(1, Ordering::Relaxed),
            dropped_tail,
            sizes: None,
        })
    }

    /// Keeps decoded whole chunks in `cache` (see [`ChunkCache`]).
    pub fn with_chunk_cache(mut self, cache: Option<Arc<ChunkCache>>) -> Self {
        self.shared = cache;
        self
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
        CompressionStats {
            logical_bytes: state.len(),
            physical_bytes: state.physical_end,
            chunks: state.chunk_starts.len() as u64,
        }
    }

    /// Publishes the sizes in `state` to the opener's totals.
    fn publish(&self, state: &State) {
        if let Some(sizes) = &self.sizes {
            sizes.logical.store(state.len(), Ordering::Relaxed);
            sizes.physical.store(state.physical_end, Ordering::Relaxed);
            sizes
                .chunks
                .store(state.chunk_starts.len() as u64, Ordering::Relaxed);
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

    /// Reads and decodes whole chunk `index`, with its frame boundaries.
    fn decode_chunk(&self, state: &State, index: usize) -> Result<(Vec<u8>, FrameEnds)> {
        self.decode_chunk_prefix(state, index, state.chunk_size)
    }

    /// Reads chunk `index` and decodes its frames up to the one that holds
    /// byte `upto - 1` (all of them for `upto == chunk_size`).
    fn decode_chunk_prefix(
        &self,
        state: &State,
        index: usize,
        upto: usize,
    ) -> Result<(Vec<u8>, FrameEnds)> {
        let (start, end) = state.chunk_range(index);
        let mut bytes = vec![0u8; (end - start) as usize];
        self.inner.read_at(start, &mut bytes).map_err(|e| match e {
            Error::ReadPastEnd { .. } => self.corrupted(start, "chunk past end of file"),
            other => other,
        })?;
        let mut chunk = Vec::with_capacity(state.chunk_size);
        let ends = decode_frames(&bytes, start, &mut chunk, state.chunk_size, upto)
            .map_err(|(at, reason)| self.corrupted(start + at as u64, reason))?;
        // Every frame was decoded, or the decoding stopped early past `upto`.
        let all = ends.last().is_some_and(|(_, end)| *end == bytes.len());
        if (all && chunk.len() != state.chunk_size) || chunk.len() < upto.min(state.chunk_size) {
            return Err(self.corrupted(start, "whole chunk decodes to the wrong length"));
        }
        let ends = ends
            .into_iter()
            .map(|(logical, at)| (logical, start + at as u64))
            .collect();
        Ok((chunk, ends))
    }

    /// The first `upto` bytes (or more) of whole chunk `index`, from the
    /// cache or decoded.
    fn sealed_chunk(&self, state: &State, index: usize, upto: usize) -> Result<Arc<Vec<u8>>> {
        if let Some(shared) = &self.shared {
            // With a shared cache, a miss decodes the whole chunk, for the
            // reads that follow in it.
            if let Some(hit) = shared.get(self.serial, index) {
                return Ok(hit);
            }
            let data = Arc::new(self.decode_chunk(state, index)?.0);
            shared.insert(self.serial, index, &data);
            return Ok(data);
        }
        if let Some((cached, data)) = &*self.cache.lock()
            && *cached == index
            && data.len() >= upto
        {
            return Ok(Arc::clone(data));
        }
        let data = Arc::new(self.decode_chunk_prefix(state, index, upto)?.0);
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
        state.physical_end = COMPRESSED_HEADER_LEN as u64;
        state.tail_start = state.physical_end;
        Ok(())
    }

    fn trim(&self, state: &mut State) -> Result<()> {
        if state.trim_needed {
            self.inner.set_len(state.physical_end)?;
            state.trim_needed = false;
        }
        Ok(())
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
        // Encode every frame first, then write them with one call: the
        // state changes only once the bytes are in the file. Only the first
        // piece continues a chunk; every later one starts a new chunk.
        let mut out = Vec::with_capacity(data.len() / 2 + 2 * FRAME_HEADER_LEN);
        let mut pieces = Vec::new();
        let mut in_chunk = state.tail.len();
        let mut rest = data;
        while !rest.is_empty() {
            let take = (state.chunk_size - in_chunk).min(rest.len());
            let dict: &[u8] = if pieces.is_empty() { &state.tail } else { &[] };
            let at = state.physical_end + out.len() as u64;
            encode_frame(&rest[..take], dict, at, &mut out);
            in_chunk = (in_chunk + take) % state.chunk_size;
            pieces.push((take, out.len()));
            rest = &rest[take..];
        }
        if let Err(err) = self.inner.write_at(state.physical_end, &out) {
            // A prefix of `out` may be in the file: cut it before the next
            // write. The state still describes the file before the append.
            state.trim_needed = true;
            return Err(err);
        }
        let base = state.physical_end;
        let mut consumed = 0;
        for (take, end_in_out) in pieces {
            let piece = &data[consumed..consumed + take];
            consumed += take;
            let physical = base + end_in_out as u64;
            state.tail.extend_from_slice(piece);
            if state.tail.len() == state.chunk_size {
                state.chunk_starts.push(state.tail_start);
                state.tail_start = physical;
                state.tail.clear();
                state.tail_frames.clear();
            } else {
                state.tail_frames.push((state.tail.len(), physical));
            }
        }
        state.physical_end = base + out.len() as u64;
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
        let index = (new_len / chunk) as usize;
        let keep = (new_len % chunk) as usize;
        if index < state.chunk_starts.len() {
            // The cut is inside a whole chunk: it becomes the partial one.
            let (data, ends) = self.decode_chunk(state, index)?;
            *self.cache.lock() = None;
            if let Some(shared) = &self.shared {
                shared.remove_from(self.serial, index);
            }
            state.tail_start = state.chunk_starts[index];
            state.chunk_starts.truncate(index);
            state.tail = data;
            state.tail_frames = ends;
        }
        // Keep the frames that end at or before the cut; the bytes of a frame
        // the cut goes through are appended again as a new frame.
        let kept = state
            .tail_frames
            .iter()
            .take_while(|(end, _)| *end <= keep)
            .count();
        let (kept_len, kept_end) = match kept {
            0 => (0, state.tail_start),
            n => state.tail_frames[n - 1],
        };
        let again = state.tail[kept_len..keep].to_vec();
        state.tail.truncate(kept_len);
        state.tail_frames.truncate(kept);
        state.physical_end = kept_end;
        state.trim_needed = true;
        self.trim(state)?;
        self.append_locked(state, &again).map(|_| ())
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

/// Walks and checks the frames after the header, filling the seek table
/// and the partial chunk. Returns the torn tail, if one was found.
fn walk_frames<F: File>(
    inner: &F,
    state: &mut State,
    physical: u64,
) -> Result<Option<DroppedTail>> {
    let chunk_size = state.chunk_size;
    let mut pos = COMPRESSED_HEADER_LEN as u64;
    let mut in_chunk = 0usize;
    state.tail_start = pos;
    let mut window = Vec::new();
    let mut window_start = pos;
    let mut bad = None;
    let max_frame = FRAME_HEADER_LEN + lz4_flex::block::get_maximum_output_size(chunk_size);
    while pos < physical {
        // Keep at least one whole frame (or the rest of the file) in the
        // window.
        let need = (physical - pos).min(max_frame as u64);
        if pos < window_start || window_start + (window.len() as u64) < pos + need {
            let want = (physical - pos).min(WALK_READ.max(max_frame) as u64) as usize;
            window = vec![0u8; want];
            inner.read_at(pos, &mut window)?;
            window_start = pos;
        }
        let at = (pos - window_start) as usize;
        match check_frame(&window[at..], chunk_size - in_chunk, pos) {
            Ok(frame) => {
                pos += frame.len as u64;
                in_chunk += frame.uncompressed;
                if in_chunk == chunk_size {
                    state.chunk_starts.push(state.tail_start);
                    state.tail_start = pos;
                    in_chunk = 0;
                }
            }
            Err(reason) => {
                bad = Some(reason);
                break;
            }
        }
    }
    state.physical_end = pos;
    if let Some(reason) = bad {
        check_nothing_valid_follows(inner, pos, physical, chunk_size)?;
        // The partial chunk is decoded from the frames before the tear.
        load_tail(inner, state)?;
        return Ok(Some(DroppedTail {
            offset: pos,
            stored_len: physical - pos,
            reason,
        }));
    }
    load_tail(inner, state)?;
    Ok(None)
}

/// Decodes the partial chunk's frames (already checked) into the state.
fn load_tail<F: File>(inner: &F, state: &mut State) -> Result<()> {
    let mut bytes = vec![0u8; (state.physical_end - state.tail_start) as usize];
    inner.read_at(state.tail_start, &mut bytes)?;
    let mut tail = Vec::new();
    let start = state.tail_start;
    let ends = decode_frames(&bytes, start, &mut tail, state.chunk_size, usize::MAX).map_err(
        |(at, reason)| Error::Corrupted {
            path: inner.path().to_path_buf(),
            offset: start + at as u64,
            reason: reason.to_string(),
        },
    )?;
    state.tail_frames = ends
        .into_iter()
        .map(|(logical, at)| (logical, state.tail_start + at as u64))
        .collect();
    state.tail = tail;
    Ok(())
}

/// A bad frame is a torn tail only if no valid frame follows it: appends
/// only add at the end, so valid data after damage means the damage is not
/// from an interrupted append.
fn check_nothing_valid_follows<F: File>(
    inner: &F,
    bad_at: u64,
    physical: u64,
    chunk_size: usize,
) -> Result<()> {
    let corrupted = |reason: &str| Error::Corrupted {
        path: inner.path().to_path_buf(),
        offset: bad_at,
        reason: reason.to_string(),
    };
    let rest = physical - bad_at;
    if rest > MAX_TAIL_SCAN {
        return Err(corrupted(
            "damaged frame followed by more bytes than any torn append leaves",
        ));
    }
    let mut bytes = vec![0u8; rest as usize];
    inner.read_at(bad_at, &mut bytes)?;
    for at in 1..bytes.len() {
        if check_frame(&bytes[at..], chunk_size, bad_at + at as u64).is_ok() {
            return Err(corrupted("damaged frame followed by valid frames"));
        }
    }
    Ok(())
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
            let bytes: &[u8] = if index < state.chunk_starts.len() {
                let upto = (end - start).min(chunk) as usize;
                sealed = self.sealed_chunk(&state, index, upto)?;
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
        let result = self.append_locked(&mut state, data).map(|_| ());
        self.publish(&state);
        result
    }

    fn append(&self, data: &[u8]) -> Result<u64> {
        let mut state = self.state.write();
        let result = self.append_locked(&mut state, data);
        self.publish(&state);
        result
    }

    fn set_len(&self, len: u64) -> Result<()> {
        let mut state = self.state.write();
        let result = self.set_len_locked(&mut state, len);
        self.publish(&state);
        result
    }

    fn sync_data(&self) -> Result<()> {
        if self.state.read().trim_needed {
            let mut state = self.state.write();
            self.trim(&mut state)?;
        }
        // Every append is in the file when it returns: no lock across the
        // fsync, so appends go on meanwhile.
        self.inner.sync_data()
    }
}

/// Opens [`CompressedFile`]s over the files of another opener. Directory
/// operations go to the inner opener unchanged.
#[derive(Debug, Clone)]
pub struct CompressedOpener<O> {
    inner: O,
    chunk_size: usize,
    totals: CompressionTotals,
    cache: Option<Arc<ChunkCache>>,
}

impl<O> CompressedOpener<O> {
    /// Compresses the files of `inner` with the default chunk size.
    pub fn new(inner: O) -> Self {
        Self::with_chunk_size(inner, DEFAULT_CHUNK_SIZE)
    }

    /// Compresses the new files of `inner` with `chunk_size`-byte chunks.
    pub fn with_chunk_size(inner: O, chunk_size: usize) -> Self {
        Self {
            inner,
            chunk_size,
            totals: CompressionTotals::default(),
            cache: Some(Arc::new(ChunkCache::new(DEFAULT_CHUNK_CACHE_BYTES))),
        }
    }

    /// Shares a cache of `bytes` of decoded chunks among the files it opens
    /// (0: none). Default [`DEFAULT_CHUNK_CACHE_BYTES`].
    pub fn with_chunk_cache_bytes(mut self, bytes: usize) -> Self {
        self.cache = (bytes > 0).then(|| Arc::new(ChunkCache::new(bytes)));
        self
    }

    /// The shared chunk cache, if any.
    pub fn chunk_cache(&self) -> Option<&Arc<ChunkCache>> {
        self.cache.as_ref()
    }

    /// The summed sizes of the files this opener opened: shared, so it can
    /// be kept after the opener is handed to an engine.
    pub fn totals(&self) -> CompressionTotals {
        self.totals.clone()
    }

    /// The wrapped opener.
    pub fn inner(&self) -> &O {
        &self.inner
    }
}

impl<O: FileOpener> FileOpener for CompressedOpener<O> {
    type File = CompressedFile<O::File>;

    fn open(&self, path: &Path, create: bool) -> Result<Self::File> {
        let mut file =
            CompressedFile::open_with_chunk_size(self.inner.open(path, create)?, self.chunk_size)?
                .with_chunk_cache(self.cache.clone());
        file.sizes = Some(self.totals.register(path));
        file.publish(&file.state.read());
        Ok(file)
    }

    fn remove(&self, path: &Path) -> Result<()> {
        self.inner.remove(path)?;
        self.totals.files.lock().remove(path);
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        self.inner.rename(from, to)?;
        let mut files = self.totals.files.lock();
        if let Some(sizes) = files.remove(from) {
            files.insert(to.to_path_buf(), sizes);
        }
        Ok(())
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

    #[test]
    fn a_random_read_decodes_only_the_frames_up_to_what_it_wants() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = open(&path, 4096);
        let data = compressible(8192 + 100, 3);
        for piece in data.chunks(256) {
            file.append(piece).unwrap();
        }
        let mut buf = [0u8; 16];
        file.read_at(100, &mut buf).unwrap();
        assert_eq!(&buf, &data[100..116]);
        // The cache holds the first frames of chunk 0 only.
        let cached = file.cache.lock().as_ref().map(|(i, d)| (*i, d.len()));
        assert_eq!(cached, Some((0, 256)));
        // A read further in decodes further, and the prefix is reused
        // for reads before it.
        file.read_at(3000, &mut buf).unwrap();
        assert_eq!(&buf, &data[3000..3016]);
        assert_eq!(file.cache.lock().as_ref().map(|(_, d)| d.len()), Some(3072));
        file.read_at(4090, &mut buf).unwrap();
        assert_eq!(&buf, &data[4090..4106]);
        assert_eq!(read_all(&file), data);
    }

    #[test]
    fn the_chunk_cache_serves_repeated_reads_and_forgets_cut_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let opener = CompressedOpener::with_chunk_size(crate::MonolithicOpener, 1024)
            .with_chunk_cache_bytes(2048);
        let cache = Arc::clone(opener.chunk_cache().unwrap());
        let file = opener.open(&path, true).unwrap();
        let data = compressible(4 * 1024 + 10, 5);
        file.append(&data).unwrap();
        let mut buf = [0u8; 8];
        file.read_at(10, &mut buf).unwrap();
        assert_eq!(&buf, &data[10..18]);
        assert_eq!(cache.hits_and_misses(), (0, 1));
        // The miss decoded the whole chunk: a read at its end is a hit.
        file.read_at(1000, &mut buf).unwrap();
        assert_eq!(&buf, &data[1000..1008]);
        assert_eq!(cache.hits_and_misses(), (1, 1));
        // Cut into chunk 0 and write other bytes: the cached chunk is gone.
        file.set_len(500).unwrap();
        let other = compressible(2000, 9);
        file.append(&other).unwrap();
        file.read_at(1000, &mut buf).unwrap();
        assert_eq!(&buf, &other[500..508]);
        assert_eq!(cache.hits_and_misses(), (1, 2));
        // Bounded: a cache of two chunks' bytes holds two chunks.
        file.append(&data).unwrap();
        let mut all = data[..500].to_vec();
        all.extend_from_slice(&other);
        all.extend_from_slice(&data);
        for index in 0..4 {
            file.read_at(index * 1024, &mut buf).unwrap();
            let at = index as usize * 1024;
            assert_eq!(&buf, &all[at..at + 8]);
        }
        assert!(cache.chunks.lock().bytes <= 2048);
        assert_eq!(read_all(&file), all);
    }

    #[test]
    fn the_opener_totals_follow_appends_renames_and_removals() {
        let dir = tempfile::tempdir().unwrap();
        let opener = CompressedOpener::with_chunk_size(crate::MonolithicOpener, 1024);
        let totals = opener.totals();
        let a = opener.open(&dir.path().join("a"), true).unwrap();
        a.append(&compressible(5000, 1)).unwrap();
        let b = opener.open(&dir.path().join("b"), true).unwrap();
        b.append(&compressible(3000, 2)).unwrap();
        let sum = totals.stats();
        assert_eq!(sum.logical_bytes, 8000);
        assert_eq!(
            sum.physical_bytes,
            std::fs::metadata(dir.path().join("a")).unwrap().len()
                + std::fs::metadata(dir.path().join("b")).unwrap().len()
        );
        assert!(sum.ratio() < 0.6, "{sum:?}");
        assert_eq!(sum.chunks, 4 + 2);
        opener
            .rename(&dir.path().join("b"), &dir.path().join("c"))
            .unwrap();
        b.append(&compressible(100, 3)).unwrap();
        assert_eq!(totals.stats().logical_bytes, 8100);
        drop(a);
        opener.remove(&dir.path().join("a")).unwrap();
        assert_eq!(totals.stats().logical_bytes, 3100);
        // Reopening a file replaces its entry instead of counting it twice.
        drop(b);
        let _c = opener.open(&dir.path().join("c"), false).unwrap();
        assert_eq!(totals.stats().logical_bytes, 3100);
    }

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
        // One append: a frame for the whole chunk, a frame for the rest.
        file.append(&data).unwrap();
        let raw = std::fs::read(&path).unwrap();
        assert_eq!(&raw[..8], b"PYDBLZ4F");
        assert_eq!(raw[8..12], 1u32.to_le_bytes());
        assert_eq!(raw[12..16], 4096u32.to_le_bytes());
        assert_eq!(raw[20..24], crc32fast::hash(&raw[..20]).to_le_bytes());
        let frame = &raw[24..];
        let word = le_u32(frame, 4);
        assert_ne!(word & CODEC_LZ4_BIT, 0, "lz4");
        let stored = (word & !CODEC_LZ4_BIT) as usize;
        assert_eq!(le_u32(frame, 8), 4096);
        assert!(stored < 4096 / 2, "{stored}");
        assert_eq!(le_u32(frame, 0), frame_crc(24, &frame[4..12 + stored]));
        let second = &frame[12 + stored..];
        assert_eq!(le_u32(second, 8), 100);
        assert_eq!(
            12 + (le_u32(second, 4) & !CODEC_LZ4_BIT) as usize,
            second.len()
        );
        assert_eq!(file.stats().physical_bytes, raw.len() as u64);
        assert_eq!(file.stats().chunks, 1);
        drop(file);
        assert_eq!(read_all(&open(&path, 4096)), data);
    }

    #[test]
    fn every_append_is_in_the_file_when_it_returns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = open(&path, 4096);
        let mut want = Vec::new();
        for i in 0..100u32 {
            let record = format!("record {i}: alpha beta gamma delta alpha beta;");
            file.append(record.as_bytes()).unwrap();
            want.extend_from_slice(record.as_bytes());
            // Another handle (a reopen) sees it at once, without a sync.
            assert_eq!(read_all(&open(&path, 4096)), want);
        }
        // Small appends compress against the chunk before them: alone,
        // each ~48-byte record would be stored raw (ratio above 1.2).
        let ratio = file.stats().ratio();
        assert!(ratio < 0.7, "{ratio}");
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
        let stats = file.stats();
        assert_eq!(stats.logical_bytes, 1 << 20);
        assert_eq!(stats.chunks, ((1 << 20) / DEFAULT_CHUNK_SIZE) as u64);
        assert_eq!(
            stats.physical_bytes,
            std::fs::metadata(file.path()).unwrap().len()
        );
        assert!(stats.ratio() < 0.55, "{}", stats.ratio());
        // Incompressible data is stored raw: 12 bytes per frame more.
        let noise = open(&dir.path().join("g"), DEFAULT_CHUNK_SIZE);
        let bytes: Vec<u8> = (0..1u32 << 18)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        noise.append(&bytes).unwrap();
        assert!(noise.stats().ratio() < 1.001, "{}", noise.stats().ratio());
    }

    #[test]
    fn set_len_truncates_between_and_inside_frames_and_extends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = open(&path, 256);
        let data = compressible(2000, 3);
        for piece in data.chunks(90) {
            file.append(piece).unwrap();
        }
        // Inside a whole chunk, inside a frame.
        file.set_len(700).unwrap();
        assert_eq!(read_all(&file), data[..700]);
        assert_eq!(read_all(&open(&path, 256)), data[..700]);
        // At a frame boundary (90 * 7 = 630): a plain cut.
        let before = std::fs::metadata(&path).unwrap().len();
        file.set_len(630).unwrap();
        assert!(std::fs::metadata(&path).unwrap().len() < before);
        assert_eq!(read_all(&open(&path, 256)), data[..630]);
        file.set_len(1000).unwrap();
        file.append(b"end").unwrap();
        let mut want = data[..630].to_vec();
        want.resize(1000, 0);
        want.extend_from_slice(b"end");
        assert_eq!(read_all(&file), want);
        assert_eq!(read_all(&open(&path, 256)), want);
        file.set_len(0).unwrap();
        assert_eq!(file.len().unwrap(), 0);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 24);
    }

    #[test]
    fn a_torn_last_frame_is_left_out_and_damage_before_valid_frames_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = open(&path, 256);
        let data = compressible(1000, 5);
        file.append(&data[..900]).unwrap();
        file.append(&data[900..]).unwrap();
        drop(file);
        let raw = std::fs::read(&path).unwrap();
        for cut in 1..20 {
            std::fs::write(&path, &raw[..raw.len() - cut]).unwrap();
            let file = open(&path, 256);
            assert_eq!(file.len().unwrap(), 900, "cut {cut}");
            assert!(file.dropped_tail().is_some());
            assert_eq!(read_all(&file), data[..900]);
            // The next append cuts the torn frame off first.
            file.append(b"!").unwrap();
            drop(file);
            let mut want = data[..900].to_vec();
            want.push(b'!');
            assert_eq!(read_all(&open(&path, 256)), want);
        }
        // A flipped byte in the first frame, with valid frames after it.
        let mut bad = raw.clone();
        bad[24 + 20] ^= 0x10;
        std::fs::write(&path, &bad).unwrap();
        let err = CompressedFile::open(MonolithicFile::open(&path, false).unwrap()).unwrap_err();
        assert!(
            matches!(&err, Error::Corrupted { offset: 24, reason, .. } if reason.contains("followed by valid")),
            "{err}"
        );
    }
}

#[cfg(test)]
mod pinned {
    use super::*;
    use crate::MonolithicFile;

    /// The example of docs/formats.md, byte for byte.
    #[test]
    fn the_documented_example_is_what_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = CompressedFile::open_with_chunk_size(MonolithicFile::create(&path).unwrap(), 64)
            .unwrap();
        file.append(b"abcabcabcabcabcabcabcabc").unwrap();
        file.append(b"xyz").unwrap();
        drop(file);
        let hex: Vec<String> = std::fs::read(&path)
            .unwrap()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let documented = "50 59 44 42 4c 5a 34 46 01 00 00 00 40 00 00 00 \
                          00 00 00 00 59 3f 5d 1f \
                          1e 99 03 c4 0d 00 00 80 18 00 00 00 \
                          3b 61 62 63 03 00 60 61 62 63 61 62 63 \
                          c0 1b e9 84 03 00 00 00 03 00 00 00 78 79 7a";
        assert_eq!(
            hex.join(" "),
            documented.split_whitespace().collect::<Vec<_>>().join(" ")
        );
    }
}
