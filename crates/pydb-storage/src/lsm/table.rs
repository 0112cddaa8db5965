//! SSTables: sorted, immutable files of entries.
//!
//! A table is written once, front to back, by a flush or a compaction, and
//! never changed; it is deleted when a compaction has merged it into new
//! tables and no reader uses it any more.
//!
//! ## Layout
//!
//! ```text
//! +--------------+-----+--------------+--------+------------+-------+--------+
//! | data block 0 | ... | data block n | filter | properties | index | footer |
//! +--------------+-----+--------------+--------+------------+-------+--------+
//! ```
//!
//! Every block is framed as [`super::block`] describes (CRC-32 on each,
//! optional lz4). Data blocks hold the entries; the versions of one key
//! never straddle two blocks (a block is only cut between two keys), so a
//! point read needs exactly one data block. The index block has one entry
//! per data block: its last key, and as value the block's 12-byte handle.
//! The filter block is the [`BloomFilter`] over the table's keys. The
//! properties block holds counts, the key range and the sequence range.
//!
//! The footer is fixed-size, at the very end, so a reader finds everything
//! from the file length alone:
//!
//! ```text
//! offset  size  field
//!      0    12  index handle       (offset u64 LE, len u32 LE)
//!     12    12  filter handle
//!     24    12  properties handle
//!     36     4  format version     u32 LE (1)
//!     40     8  magic              b"pydbSST\0"
//!     48     4  crc32 of bytes 0..48
//! ```
//!
//! ## Reading
//!
//! Opening a table reads and checks footer, index, filter and properties
//! and keeps them in memory. A point read of key `k` asks the filter
//! first; if the filter says "maybe", it binary-searches the index for the
//! first block whose last key is `>= k`, fetches that block through the
//! block cache, and looks `k` up inside it.

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use pydb_file::File;

use super::block::{
    BLOCK_TRAILER_LEN, Block, BlockBuilder, BlockHandle, HANDLE_LEN, frame, get_varint, put_varint,
    read_u32, unframe,
};
use super::bloom::{BloomFilter, hash};
use super::cache::ClockCache;
use super::memtable::Entry;
use crate::{Error, Result};

/// The footer length.
pub const FOOTER_LEN: usize = 52;
/// The footer magic.
pub const TABLE_MAGIC: [u8; 8] = *b"pydbSST\0";
/// The table format version this code writes and reads.
pub const TABLE_VERSION: u32 = 1;

/// The block cache: decoded blocks by (table number, block offset).
pub(crate) type BlockCache = ClockCache<(u64, u64), Block>;

/// How tables are built.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TableOptions {
    pub(crate) block_size: usize,
    pub(crate) restart_interval: usize,
    pub(crate) bloom_bits_per_key: usize,
    pub(crate) lz4: bool,
}

/// What the properties block records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableProperties {
    /// Entries (versions), tombstones included.
    pub entries: u64,
    /// Tombstones.
    pub tombstones: u64,
    /// Data blocks.
    pub data_blocks: u64,
    /// The smallest sequence number.
    pub min_seq: u64,
    /// The largest sequence number.
    pub max_seq: u64,
    /// The smallest key.
    pub smallest: Bytes,
    /// The largest key.
    pub largest: Bytes,
}

impl TableProperties {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for v in [
            self.entries,
            self.tombstones,
            self.data_blocks,
            self.min_seq,
            self.max_seq,
        ] {
            put_varint(&mut out, v);
        }
        for k in [&self.smallest, &self.largest] {
            put_varint(&mut out, k.len() as u64);
            out.extend_from_slice(k);
        }
        out
    }

    fn decode(body: &[u8]) -> std::result::Result<Self, String> {
        let mut pos = 0;
        let mut next = || get_varint(body, &mut pos).ok_or("properties cut short");
        let (entries, tombstones, data_blocks, min_seq, max_seq) =
            (next()?, next()?, next()?, next()?, next()?);
        let mut key = || -> std::result::Result<Bytes, String> {
            let len = get_varint(body, &mut pos).ok_or("properties cut short")? as usize;
            let end = pos
                .checked_add(len)
                .filter(|&e| e <= body.len())
                .ok_or("property key past the end")?;
            let k = Bytes::copy_from_slice(&body[pos..end]);
            pos = end;
            Ok(k)
        };
        let smallest = key()?;
        let largest = key()?;
        if pos != body.len() {
            return Err("trailing bytes in properties".into());
        }
        if smallest > largest || min_seq > max_seq || tombstones > entries {
            return Err("inconsistent properties".into());
        }
        Ok(Self {
            entries,
            tombstones,
            data_blocks,
            min_seq,
            max_seq,
            smallest,
            largest,
        })
    }
}

/// Writes a table to a file, entry by entry, in table order.
pub(crate) struct TableBuilder<F: File> {
    file: F,
    opts: TableOptions,
    offset: u64,
    block: BlockBuilder,
    index: BlockBuilder,
    hashes: Vec<u64>,
    props: TableProperties,
    last_key: Option<Bytes>,
}

impl<F: File> TableBuilder<F> {
    /// A builder writing to `file`, which must be empty.
    pub(crate) fn new(file: F, opts: TableOptions) -> Self {
        Self {
            file,
            opts,
            offset: 0,
            block: BlockBuilder::new(opts.restart_interval),
            index: BlockBuilder::new(1),
            hashes: Vec::new(),
            props: TableProperties {
                min_seq: u64::MAX,
                ..TableProperties::default()
            },
            last_key: None,
        }
    }

    /// Adds an entry; entries must come in table order.
    pub(crate) fn add(&mut self, e: &Entry) -> Result<()> {
        let new_key = self.last_key.as_ref() != Some(&e.key);
        if new_key && !self.block.is_empty() && self.block.estimated_len() >= self.opts.block_size {
            self.finish_block()?;
        }
        if new_key {
            self.hashes.push(hash(&e.key));
            if self.props.entries == 0 {
                self.props.smallest = e.key.clone();
            }
            self.last_key = Some(e.key.clone());
        }
        self.block.add(&e.key, e.seq, e.value.as_deref());
        self.props.entries += 1;
        self.props.tombstones += u64::from(e.value.is_none());
        self.props.min_seq = self.props.min_seq.min(e.seq);
        self.props.max_seq = self.props.max_seq.max(e.seq);
        Ok(())
    }

    /// Bytes written so far plus the open block.
    pub(crate) fn estimated_len(&self) -> u64 {
        self.offset + self.block.estimated_len() as u64
    }

    pub(crate) fn entries(&self) -> u64 {
        self.props.entries
    }

    /// Whether the last entry added has key `key`.
    pub(crate) fn last_key_is(&self, key: &[u8]) -> bool {
        self.last_key.as_deref() == Some(key)
    }

    fn write_block(&mut self, body: &[u8], lz4: bool) -> Result<BlockHandle> {
        let framed = frame(body, lz4);
        let handle = BlockHandle {
            offset: self.offset,
            len: (framed.len() - BLOCK_TRAILER_LEN) as u32,
        };
        self.file.append(&framed)?;
        self.offset += framed.len() as u64;
        Ok(handle)
    }

    fn finish_block(&mut self) -> Result<()> {
        let body = self.block.finish();
        let handle = self.write_block(&body, self.opts.lz4)?;
        let mut value = Vec::with_capacity(HANDLE_LEN);
        handle.encode_into(&mut value);
        let last = self.last_key.clone().unwrap_or_default();
        self.index.add(&last, 0, Some(&value));
        self.props.data_blocks += 1;
        Ok(())
    }

    /// Writes filter, properties, index and footer, syncs the file, and
    /// returns it with the properties and the table's size.
    pub(crate) fn finish(mut self) -> Result<(F, TableProperties, u64)> {
        if !self.block.is_empty() {
            self.finish_block()?;
        }
        if let Some(last) = &self.last_key {
            self.props.largest = last.clone();
        }
        if self.props.entries == 0 {
            self.props.min_seq = 0;
        }
        let filter = BloomFilter::build(&self.hashes, self.opts.bloom_bits_per_key);
        let filter_handle = self.write_block(&filter.encode(), false)?;
        let props_handle = self.write_block(&self.props.encode(), false)?;
        let index_body = self.index.finish();
        let index_handle = self.write_block(&index_body, false)?;
        let mut footer = Vec::with_capacity(FOOTER_LEN);
        index_handle.encode_into(&mut footer);
        filter_handle.encode_into(&mut footer);
        props_handle.encode_into(&mut footer);
        footer.extend_from_slice(&TABLE_VERSION.to_le_bytes());
        footer.extend_from_slice(&TABLE_MAGIC);
        let crc = crc32fast::hash(&footer);
        footer.extend_from_slice(&crc.to_le_bytes());
        self.file.append(&footer)?;
        self.offset += footer.len() as u64;
        self.file.sync_data()?;
        Ok((self.file, self.props, self.offset))
    }
}

/// The decoded footer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footer {
    /// The index block.
    pub index: BlockHandle,
    /// The filter block.
    pub filter: BlockHandle,
    /// The properties block.
    pub properties: BlockHandle,
    /// The format version.
    pub version: u32,
}

/// Decodes a footer from its 52 bytes; errors give the offset within it.
pub fn decode_footer(bytes: &[u8]) -> std::result::Result<Footer, (u64, String)> {
    if bytes.len() != FOOTER_LEN {
        return Err((0, format!("footer of {} bytes", bytes.len())));
    }
    let stored = read_u32(bytes, 48).unwrap_or(0);
    if crc32fast::hash(&bytes[..48]) != stored {
        return Err((48, "footer checksum mismatch".into()));
    }
    if bytes[40..48] != TABLE_MAGIC {
        return Err((40, "not a pydb table (bad magic)".into()));
    }
    let version = read_u32(bytes, 36).unwrap_or(0);
    if version != TABLE_VERSION {
        return Err((36, format!("unsupported table version {version}")));
    }
    let h =
        |at: usize| BlockHandle::decode(&bytes[at..at + HANDLE_LEN]).map_err(|e| (at as u64, e));
    Ok(Footer {
        index: h(0)?,
        filter: h(12)?,
        properties: h(24)?,
        version,
    })
}

/// Counters a table read updates.
#[derive(Debug, Default)]
pub(crate) struct ReadCounters {
    pub(crate) bloom_checks: AtomicU64,
    pub(crate) bloom_negatives: AtomicU64,
    pub(crate) bloom_false_positives: AtomicU64,
    pub(crate) blocks_read: AtomicU64,
}

/// An open table: file, index, filter and properties in memory.
#[derive(Debug)]
pub(crate) struct Table<F: File> {
    pub(crate) number: u64,
    file: F,
    size: u64,
    /// (last key of the block, handle), in key order.
    index: Vec<(Bytes, BlockHandle)>,
    filter: BloomFilter,
    pub(crate) props: TableProperties,
}

/// Reads and checks the framed block at `handle` of `file`; errors name the
/// file and the absolute offset. `limit` is where blocks must end.
pub(crate) fn read_block<F: File>(file: &F, handle: BlockHandle, limit: u64) -> Result<Bytes> {
    let path = file.path();
    if handle.end() > limit {
        return Err(Error::corrupted(
            path,
            handle.offset,
            format!("block of {} bytes runs past offset {limit}", handle.len),
        ));
    }
    let mut framed = vec![0u8; handle.len as usize + BLOCK_TRAILER_LEN];
    file.read_at(handle.offset, &mut framed)?;
    unframe(&framed).map_err(|(at, reason)| Error::corrupted(path, handle.offset + at, reason))
}

fn corrupt_block(path: &Path, handle: BlockHandle) -> impl Fn((u64, String)) -> Error + '_ {
    move |(at, reason)| Error::corrupted(path, handle.offset + at, reason)
}

/// A table's footer and index: where its data blocks are and the last key
/// of each. What [`Table::open`] reads first, and all that repair needs to
/// find the data blocks (it reads neither filter nor properties: the data
/// blocks are the truth).
pub(crate) struct TableIndex {
    pub(crate) footer: Footer,
    /// Where the footer starts: every block must end before it.
    pub(crate) footer_at: u64,
    /// Per data block, in order: its last key and its handle.
    pub(crate) index: Vec<(Bytes, BlockHandle)>,
}

/// Reads and checks the footer and the index block of the table in `file`:
/// the index must tile the data blocks from offset 0 up to the filter.
pub(crate) fn read_index<F: File>(file: &F) -> Result<TableIndex> {
    let path = file.path().to_path_buf();
    let size = file.len()?;
    if size < FOOTER_LEN as u64 {
        return Err(Error::corrupted(
            &path,
            0,
            format!("table of {size} bytes has no footer"),
        ));
    }
    let footer_at = size - FOOTER_LEN as u64;
    let mut footer = [0u8; FOOTER_LEN];
    file.read_at(footer_at, &mut footer)?;
    let footer =
        decode_footer(&footer).map_err(|(at, r)| Error::corrupted(&path, footer_at + at, r))?;
    let index_body = read_block(file, footer.index, footer_at)?;
    let index_block = Block::parse(index_body).map_err(corrupt_block(&path, footer.index))?;
    let mut index = Vec::new();
    let mut data_end = 0u64;
    for e in index_block
        .entries()
        .map_err(corrupt_block(&path, footer.index))?
    {
        let handle = e
            .value
            .as_deref()
            .ok_or("index entry without handle".to_string())
            .and_then(BlockHandle::decode)
            .map_err(|r| Error::corrupted(&path, footer.index.offset, r))?;
        if handle.offset != data_end {
            return Err(Error::corrupted(
                &path,
                footer.index.offset,
                format!(
                    "index names a block at {} where one should start at {data_end}",
                    handle.offset
                ),
            ));
        }
        data_end = handle.end();
        index.push((e.key, handle));
    }
    if footer.filter.offset != data_end || data_end > footer_at {
        return Err(Error::corrupted(
            &path,
            footer_at,
            "footer handles do not tile the file",
        ));
    }
    Ok(TableIndex {
        footer,
        footer_at,
        index,
    })
}

/// Reads, checks and decodes data block `handle` of `file`, whose index
/// names `last_key` as its last key. Errors name the file and the offset.
pub(crate) fn read_data_block<F: File>(
    file: &F,
    handle: BlockHandle,
    last_key: &[u8],
    limit: u64,
) -> Result<Vec<Entry>> {
    let path = file.path();
    let body = read_block(file, handle, limit)?;
    let block = Block::parse(body).map_err(corrupt_block(path, handle))?;
    checked_entries(path, handle, &block, last_key)
}

/// The entries of data block `block` (at `handle`), whose last key must be
/// the one the index names for it.
fn checked_entries(
    path: &Path,
    handle: BlockHandle,
    block: &Block,
    last_key: &[u8],
) -> Result<Vec<Entry>> {
    let entries = block.entries().map_err(corrupt_block(path, handle))?;
    if entries.last().map(|e| e.key.as_ref()) != Some(last_key) {
        return Err(Error::corrupted(
            path,
            handle.offset,
            "block's last key differs from the index",
        ));
    }
    Ok(entries)
}

impl<F: File> Table<F> {
    /// Opens the table in `file`, checking footer, index, filter and
    /// properties.
    pub(crate) fn open(file: F, number: u64) -> Result<Self> {
        let path = file.path().to_path_buf();
        let size = file.len()?;
        let TableIndex {
            footer,
            footer_at,
            index,
        } = read_index(&file)?;
        let filter_body = read_block(&file, footer.filter, footer_at)?;
        let filter = BloomFilter::decode(&filter_body)
            .map_err(|r| Error::corrupted(&path, footer.filter.offset, r))?;
        let props_body = read_block(&file, footer.properties, footer_at)?;
        let props = TableProperties::decode(&props_body)
            .map_err(|r| Error::corrupted(&path, footer.properties.offset, r))?;
        if props.data_blocks != index.len() as u64
            || index.last().map(|(k, _)| k) != (props.entries > 0).then_some(&props.largest)
        {
            return Err(Error::corrupted(
                &path,
                footer.properties.offset,
                "properties disagree with the index",
            ));
        }
        Ok(Self {
            number,
            file,
            size,
            index,
            filter,
            props,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        self.file.path()
    }

    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// Data block `i`, through the cache if one is given. A compaction
    /// reads without it: it reads each input block once, and filling the
    /// cache with them would evict the blocks that point reads need (as
    /// RocksDB's `fill_cache = false` does for its compactions).
    fn block(
        &self,
        i: usize,
        cache: Option<&BlockCache>,
        counters: &ReadCounters,
    ) -> Result<Arc<Block>> {
        let Some(&(_, handle)) = self.index.get(i) else {
            return Err(Error::corrupted(
                self.path(),
                0,
                format!("no data block {i}"),
            ));
        };
        if let Some(b) = cache.and_then(|c| c.get(&(self.number, handle.offset))) {
            return Ok(b);
        }
        counters.blocks_read.fetch_add(1, Ordering::Relaxed);
        let body = read_block(&self.file, handle, self.size)?;
        let block = Arc::new(Block::parse(body).map_err(corrupt_block(self.path(), handle))?);
        if let Some(cache) = cache {
            cache.insert(
                (self.number, handle.offset),
                block.clone(),
                block.len() + 64,
            );
        }
        Ok(block)
    }

    /// The versions of `key` in this table, newest first (empty if none).
    /// `key_hash` is [`hash`] of the key, computed once per read rather
    /// than once per table probed.
    pub(crate) fn versions_of(
        &self,
        key: &[u8],
        key_hash: u64,
        cache: &BlockCache,
        counters: &ReadCounters,
    ) -> Result<Vec<Entry>> {
        if key < self.props.smallest.as_ref() || key > self.props.largest.as_ref() {
            return Ok(Vec::new());
        }
        counters.bloom_checks.fetch_add(1, Ordering::Relaxed);
        if !self.filter.may_contain(key_hash) {
            counters.bloom_negatives.fetch_add(1, Ordering::Relaxed);
            return Ok(Vec::new());
        }
        let i = self.index.partition_point(|(last, _)| last.as_ref() < key);
        if i >= self.index.len() {
            counters
                .bloom_false_positives
                .fetch_add(1, Ordering::Relaxed);
            return Ok(Vec::new());
        }
        let handle = self.index[i].1;
        let block = self.block(i, Some(cache), counters)?;
        let found = block
            .versions_of(key)
            .map_err(corrupt_block(self.path(), handle))?;
        if found.is_empty() {
            counters
                .bloom_false_positives
                .fetch_add(1, Ordering::Relaxed);
        }
        Ok(found)
    }

    /// The index of the first block that may hold keys `>= start`.
    fn first_block(&self, start: Bound<&[u8]>) -> usize {
        match start {
            Bound::Unbounded => 0,
            Bound::Included(s) | Bound::Excluded(s) => {
                self.index.partition_point(|(last, _)| last.as_ref() < s)
            }
        }
    }

    /// Every entry of block `i`, checked for order.
    fn block_entries(
        &self,
        i: usize,
        cache: Option<&BlockCache>,
        counters: &ReadCounters,
    ) -> Result<Vec<Entry>> {
        // `block` fails first for a block the index does not name.
        let block = self.block(i, cache, counters)?;
        let Some((last_key, handle)) = self.index.get(i) else {
            return Err(Error::corrupted(
                self.path(),
                0,
                format!("no data block {i}"),
            ));
        };
        checked_entries(self.path(), *handle, &block, last_key)
    }

    pub(crate) fn block_count(&self) -> usize {
        self.index.len()
    }
}

/// Iterates a table's entries in table order, one block at a time.
pub(crate) struct TableIter<F: File> {
    table: Arc<Table<F>>,
    /// `None` for a compaction's reads (see [`Table::block`]).
    cache: Option<Arc<BlockCache>>,
    counters: Arc<ReadCounters>,
    next_block: usize,
    start: Bound<Bytes>,
    end: Bound<Bytes>,
    buf: std::vec::IntoIter<Entry>,
    done: bool,
}

impl<F: File> TableIter<F> {
    pub(crate) fn new(
        table: Arc<Table<F>>,
        cache: Option<Arc<BlockCache>>,
        counters: Arc<ReadCounters>,
        start: Bound<Bytes>,
        end: Bound<Bytes>,
    ) -> Self {
        let next_block = table.first_block(start.as_ref().map(|b| b.as_ref()));
        Self {
            table,
            cache,
            counters,
            next_block,
            start,
            end,
            buf: Vec::new().into_iter(),
            done: false,
        }
    }
}

impl<F: File> Iterator for TableIter<F> {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Result<Entry>> {
        loop {
            if self.done {
                return None;
            }
            if let Some(e) = self.buf.next() {
                let (start, end) = (
                    self.start.as_ref().map(|b| b.as_ref()),
                    self.end.as_ref().map(|b| b.as_ref()),
                );
                let below = match start {
                    Bound::Included(s) => e.key.as_ref() < s,
                    Bound::Excluded(s) => e.key.as_ref() <= s,
                    Bound::Unbounded => false,
                };
                if below {
                    continue;
                }
                let above = match end {
                    Bound::Included(s) => e.key.as_ref() > s,
                    Bound::Excluded(s) => e.key.as_ref() >= s,
                    Bound::Unbounded => false,
                };
                if above {
                    self.done = true;
                    return None;
                }
                return Some(Ok(e));
            }
            if self.next_block >= self.table.block_count() {
                self.done = true;
                return None;
            }
            match self
                .table
                .block_entries(self.next_block, self.cache.as_deref(), &self.counters)
            {
                Ok(entries) => {
                    self.next_block += 1;
                    self.buf = entries.into_iter();
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

/// What a check of one table found: a description for `pydb inspect`.
#[derive(Debug, Clone)]
pub struct TableReport {
    /// The table file.
    pub path: PathBuf,
    /// The footer.
    pub footer: Footer,
    /// The properties.
    pub properties: TableProperties,
    /// Bits and hash functions of the filter.
    pub filter_bits: usize,
    /// The filter's `k`.
    pub filter_k: u8,
    /// Per data block: handle, restart points, entries.
    pub blocks: Vec<(BlockHandle, usize, usize)>,
}

impl std::fmt::Display for TableReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "table {}", self.path.display())?;
        writeln!(
            f,
            "  footer: version {}, index @{}+{}, filter @{}+{}, properties @{}+{}, checksum ok",
            self.footer.version,
            self.footer.index.offset,
            self.footer.index.len,
            self.footer.filter.offset,
            self.footer.filter.len,
            self.footer.properties.offset,
            self.footer.properties.len
        )?;
        let p = &self.properties;
        writeln!(
            f,
            "  properties: {} entries ({} tombstones), seq {}..={}, keys {:?}..={:?}",
            p.entries,
            p.tombstones,
            p.min_seq,
            p.max_seq,
            String::from_utf8_lossy(&p.smallest),
            String::from_utf8_lossy(&p.largest)
        )?;
        writeln!(
            f,
            "  filter: {} bits, k = {}, checksum ok",
            self.filter_bits, self.filter_k
        )?;
        for (i, (h, restarts, entries)) in self.blocks.iter().enumerate() {
            writeln!(
                f,
                "  block {i}: @{} {} bytes, {} restart points, {} entries, checksum ok",
                h.offset, h.len, restarts, entries
            )?;
        }
        Ok(())
    }
}

/// Decodes and checks every block of the table in `file`: the describer
/// and verifier of the table format. The first damage found is an error
/// naming file and offset.
pub fn describe_table<F: File>(file: F) -> Result<TableReport> {
    let path = file.path().to_path_buf();
    let size = file.len()?;
    let table = Table::open(file, 0)?;
    let footer_at = size - FOOTER_LEN as u64;
    let mut raw = [0u8; FOOTER_LEN];
    table.file.read_at(footer_at, &mut raw)?;
    let footer =
        decode_footer(&raw).map_err(|(at, r)| Error::corrupted(&path, footer_at + at, r))?;
    let counters = ReadCounters::default();
    let mut blocks = Vec::new();
    let mut entries = 0u64;
    let mut last: Option<Entry> = None;
    for i in 0..table.block_count() {
        let block = table.block(i, None, &counters)?;
        let es = table.block_entries(i, None, &counters)?;
        let handle = table.index[i].1;
        if let (Some(prev), Some(first)) = (&last, es.first())
            && !prev.precedes(first)
        {
            return Err(Error::corrupted(
                &path,
                handle.offset,
                "blocks out of order",
            ));
        }
        for e in &es {
            if !table.filter.may_contain(hash(&e.key)) {
                return Err(Error::corrupted(
                    &path,
                    footer.filter.offset,
                    "filter misses a key",
                ));
            }
        }
        entries += es.len() as u64;
        last = es.last().cloned();
        blocks.push((handle, block.restart_count(), es.len()));
    }
    if entries != table.props.entries {
        return Err(Error::corrupted(
            &path,
            footer.properties.offset,
            format!(
                "properties count {} entries, blocks hold {entries}",
                table.props.entries
            ),
        ));
    }
    Ok(TableReport {
        path,
        footer,
        properties: table.props.clone(),
        filter_bits: table.filter.bit_len(),
        filter_k: table.filter.k(),
        blocks,
    })
}
