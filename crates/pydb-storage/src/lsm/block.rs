//! Blocks: the unit an SSTable is read in.
//!
//! A table is a sequence of *blocks*. Each block is read, checked and
//! cached as a whole, so its size (about 4 KiB for data blocks) is the
//! granularity of every read the engine issues against a table.
//!
//! ## Framing (every block, whatever it holds)
//!
//! ```text
//! +----------------------+-------------+-------------+
//! | body (len bytes)     | compression | crc32       |
//! |                      | u8          | u32 LE      |
//! +----------------------+-------------+-------------+
//! ```
//!
//! `compression` is 0 (none) or 1 (lz4, the body being the compressed
//! bytes prefixed by their decompressed length as lz4_flex writes it). The
//! CRC-32 covers the body and the compression byte, so a flipped bit
//! anywhere in a block is caught before a single entry is decoded. A
//! [`BlockHandle`] (offset, body length) names a block inside its table.
//!
//! ## Entries (data and index blocks, after decompression)
//!
//! ```text
//! entry*  restart (u32 LE)*  restart_count (u32 LE)
//! entry = shared varint | unshared varint | value_len+1 varint (0 = tombstone)
//!         | seq varint | key[shared..] (unshared bytes) | value bytes
//! ```
//!
//! Neighbouring keys in a sorted block share long prefixes (`user:1041`,
//! `user:1042`): an entry stores only the bytes its key does not share with
//! the previous key. Every `restart_interval` entries the prefix is reset
//! (`shared = 0`) and the offset of that entry is written to the restart
//! array, so a seek can binary-search the restart points (whose keys are
//! whole) and decode at most one interval linearly.
//!
//! Entries are sorted by key ascending, then by sequence number descending:
//! the newest version of a key comes first.
//!
//! Decoding never trusts a length: every read is bounds-checked and a bad
//! block is reported as a message; the table layer adds file and offset.

use bytes::Bytes;

use super::memtable::Entry;

/// Bytes after a block's body: compression byte and CRC-32.
pub(crate) const BLOCK_TRAILER_LEN: usize = 5;
/// Compression byte: the body is stored as is.
pub(crate) const COMPRESSION_NONE: u8 = 0;
/// Compression byte: the body is lz4 (lz4_flex, size-prepended).
pub(crate) const COMPRESSION_LZ4: u8 = 1;
/// The largest decompressed block we accept: guards the allocation a
/// damaged size prefix could ask for.
pub(crate) const MAX_BLOCK_LEN: usize = 64 << 20;

/// Where a block lies in its table: offset of the body and its length
/// (without the trailer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockHandle {
    /// Offset of the body from the start of the table.
    pub offset: u64,
    /// Length of the body, trailer excluded.
    pub len: u32,
}

/// The encoded length of a handle.
pub(crate) const HANDLE_LEN: usize = 12;

impl BlockHandle {
    /// Appends the 12-byte encoding: offset u64 LE, len u32 LE.
    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.len.to_le_bytes());
    }

    /// Decodes a handle from exactly 12 bytes.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, String> {
        let offset = read_u64(bytes, 0).ok_or("block handle too short")?;
        let len = read_u32(bytes, 8).ok_or("block handle too short")?;
        if bytes.len() != HANDLE_LEN {
            return Err(format!("block handle of {} bytes", bytes.len()));
        }
        Ok(Self { offset, len })
    }

    /// Offset just past the block's trailer.
    pub(crate) fn end(&self) -> u64 {
        self.offset + u64::from(self.len) + BLOCK_TRAILER_LEN as u64
    }
}

pub(crate) fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(b.try_into().ok()?))
}

pub(crate) fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    let b = bytes.get(at..at.checked_add(8)?)?;
    Some(u64::from_le_bytes(b.try_into().ok()?))
}

/// Appends `v` as a LEB128 varint (7 bits per byte, low bits first).
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a varint at `*pos`, advancing it; `None` if cut short or longer
/// than 10 bytes.
pub(crate) fn get_varint(bytes: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Frames `body` for disk: optionally lz4-compressed (kept only when it
/// saves at least an eighth), then the compression byte and the CRC.
pub(crate) fn frame(body: &[u8], lz4: bool) -> Vec<u8> {
    let mut out;
    let mut kind = COMPRESSION_NONE;
    if lz4 {
        let packed = lz4_flex::compress_prepend_size(body);
        if packed.len() < body.len() - body.len() / 8 {
            out = packed;
            kind = COMPRESSION_LZ4;
        } else {
            out = body.to_vec();
        }
    } else {
        out = body.to_vec();
    }
    out.push(kind);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Checks a framed block (body + trailer) and returns the decompressed
/// body. Errors carry the offset of the problem relative to the block.
pub(crate) fn unframe(framed: &[u8]) -> Result<Bytes, (u64, String)> {
    let body_len = framed
        .len()
        .checked_sub(BLOCK_TRAILER_LEN)
        .ok_or((0, "block shorter than its trailer".to_string()))?;
    let stored = read_u32(framed, body_len + 1).ok_or((body_len as u64, "no crc".into()))?;
    let actual = crc32fast::hash(&framed[..body_len + 1]);
    if stored != actual {
        return Err((
            body_len as u64 + 1,
            format!("block checksum mismatch (stored {stored:#010x}, computed {actual:#010x})"),
        ));
    }
    let body = &framed[..body_len];
    match framed[body_len] {
        COMPRESSION_NONE => Ok(Bytes::copy_from_slice(body)),
        COMPRESSION_LZ4 => {
            let len = read_u32(body, 0).ok_or((0, "lz4 block without size".to_string()))?;
            if len as usize > MAX_BLOCK_LEN {
                return Err((0, format!("lz4 block claims {len} bytes")));
            }
            lz4_flex::decompress_size_prepended(body)
                .map(Bytes::from)
                .map_err(|e| (0, format!("lz4: {e}")))
        }
        other => Err((body_len as u64, format!("unknown compression {other}"))),
    }
}

/// Builds the body of a data or index block.
#[derive(Debug)]
pub(crate) struct BlockBuilder {
    buf: Vec<u8>,
    restarts: Vec<u32>,
    restart_interval: usize,
    since_restart: usize,
    last_key: Vec<u8>,
    entries: usize,
}

impl BlockBuilder {
    pub(crate) fn new(restart_interval: usize) -> Self {
        Self {
            buf: Vec::new(),
            restarts: Vec::new(),
            restart_interval: restart_interval.max(1),
            since_restart: 0,
            last_key: Vec::new(),
            entries: 0,
        }
    }

    /// Adds an entry; entries must come in block order.
    pub(crate) fn add(&mut self, key: &[u8], seq: u64, value: Option<&[u8]>) {
        let shared = if self.entries == 0 || self.since_restart == self.restart_interval {
            self.restarts.push(self.buf.len() as u32);
            self.since_restart = 0;
            0
        } else {
            self.last_key
                .iter()
                .zip(key)
                .take_while(|(a, b)| a == b)
                .count()
        };
        put_varint(&mut self.buf, shared as u64);
        put_varint(&mut self.buf, (key.len() - shared) as u64);
        put_varint(&mut self.buf, value.map_or(0, |v| v.len() as u64 + 1));
        put_varint(&mut self.buf, seq);
        self.buf.extend_from_slice(&key[shared..]);
        if let Some(v) = value {
            self.buf.extend_from_slice(v);
        }
        self.last_key.clear();
        self.last_key.extend_from_slice(key);
        self.since_restart += 1;
        self.entries += 1;
    }

    /// The body size so far, restart array included.
    pub(crate) fn estimated_len(&self) -> usize {
        self.buf.len() + 4 * self.restarts.len() + 4
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// The finished body; the builder is reset.
    pub(crate) fn finish(&mut self) -> Vec<u8> {
        let mut body = std::mem::take(&mut self.buf);
        for r in &self.restarts {
            body.extend_from_slice(&r.to_le_bytes());
        }
        body.extend_from_slice(&(self.restarts.len() as u32).to_le_bytes());
        self.restarts.clear();
        self.since_restart = 0;
        self.last_key.clear();
        self.entries = 0;
        body
    }
}

/// A decoded (decompressed, checked) block body.
#[derive(Debug, Clone)]
pub(crate) struct Block {
    data: Bytes,
    /// Where the entries end and the restart array begins.
    entries_end: usize,
    restarts: Vec<u32>,
}

impl Block {
    /// Parses the restart array. Entries are decoded lazily, with checks.
    pub(crate) fn parse(data: Bytes) -> Result<Self, (u64, String)> {
        let len = data.len();
        let count_at = len
            .checked_sub(4)
            .ok_or((0, "block body shorter than its restart count".to_string()))?;
        let count = read_u32(&data, count_at).unwrap_or(0) as usize;
        let entries_end = count
            .checked_mul(4)
            .and_then(|n| count_at.checked_sub(n))
            .ok_or((count_at as u64, format!("restart count {count} too large")))?;
        let mut restarts = Vec::with_capacity(count);
        let mut prev = None;
        for i in 0..count {
            let r = read_u32(&data, entries_end + 4 * i).unwrap_or(u32::MAX);
            if r as usize >= entries_end.max(1) || prev.is_some_and(|p| r <= p) {
                return Err((
                    (entries_end + 4 * i) as u64,
                    format!("bad restart point {r}"),
                ));
            }
            prev = Some(r);
            restarts.push(r);
        }
        if entries_end > 0 && restarts.first() != Some(&0) {
            return Err((entries_end as u64, "first restart point is not 0".into()));
        }
        Ok(Self {
            data,
            entries_end,
            restarts,
        })
    }

    /// The number of restart points.
    pub(crate) fn restart_count(&self) -> usize {
        self.restarts.len()
    }

    /// The body length.
    pub(crate) fn len(&self) -> usize {
        self.data.len()
    }

    /// Decodes the entry at `*pos` without copying anything: where its key
    /// suffix and value lie in the block. `prev_len` is the length of the
    /// previous key (the shared prefix may not be longer); advances `*pos`.
    fn decode_raw(&self, pos: &mut usize, prev_len: usize) -> Result<RawEntry, (u64, String)> {
        let at = *pos as u64;
        let bad = |what: &str| (at, format!("bad entry: {what}"));
        let d = &self.data[..self.entries_end];
        let shared = get_varint(d, pos).ok_or_else(|| bad("shared length"))? as usize;
        let unshared = get_varint(d, pos).ok_or_else(|| bad("key length"))? as usize;
        let vlen = get_varint(d, pos).ok_or_else(|| bad("value length"))?;
        let seq = get_varint(d, pos).ok_or_else(|| bad("sequence number"))?;
        if shared > prev_len {
            return Err(bad("shared prefix longer than the previous key"));
        }
        let key_end = pos
            .checked_add(unshared)
            .filter(|&e| e <= d.len())
            .ok_or_else(|| bad("key past the end of the block"))?;
        if shared + unshared == 0 {
            return Err(bad("empty key"));
        }
        let suffix = *pos..key_end;
        *pos = key_end;
        let value = if vlen == 0 {
            None
        } else {
            let vlen = usize::try_from(vlen - 1).map_err(|_| bad("value length"))?;
            let end = pos
                .checked_add(vlen)
                .filter(|&e| e <= d.len())
                .ok_or_else(|| bad("value past the end of the block"))?;
            let v = *pos..end;
            *pos = end;
            Some(v)
        };
        Ok(RawEntry {
            shared,
            suffix,
            seq,
            value,
        })
    }

    /// Decodes the entry at `*pos`, given the previous key (for the shared
    /// prefix); advances `*pos`.
    fn decode_at(&self, pos: &mut usize, prev_key: &[u8]) -> Result<Entry, (u64, String)> {
        let raw = self.decode_raw(pos, prev_key.len())?;
        let mut key = Vec::with_capacity(raw.shared + raw.suffix.len());
        key.extend_from_slice(&prev_key[..raw.shared]);
        key.extend_from_slice(&self.data[raw.suffix]);
        Ok(Entry {
            key: Bytes::from(key),
            seq: raw.seq,
            value: raw.value.map(|v| self.data.slice(v)),
        })
    }

    /// Every entry, in order, checking that they are sorted.
    pub(crate) fn entries(&self) -> Result<Vec<Entry>, (u64, String)> {
        let mut out: Vec<Entry> = Vec::new();
        let mut pos = 0;
        let mut restart_idx = 0;
        while pos < self.entries_end {
            let is_restart = self.restarts.get(restart_idx) == Some(&(pos as u32));
            if is_restart {
                restart_idx += 1;
            }
            let at = pos as u64;
            let prev: &[u8] = match (is_restart, out.last()) {
                (true, _) | (_, None) => &[],
                (false, Some(e)) => &e.key,
            };
            let entry = self.decode_at(&mut pos, prev)?;
            if let Some(last) = out.last()
                && !last.precedes(&entry)
            {
                return Err((at, "entries out of order".into()));
            }
            out.push(entry);
        }
        if restart_idx != self.restarts.len() {
            return Err((
                self.entries_end as u64,
                "restart point inside an entry".into(),
            ));
        }
        Ok(out)
    }

    /// The versions of `key`, newest first, found by a binary search over
    /// the restart points and a linear decode of one or two intervals.
    ///
    /// This is the hot path of a point read, so nothing is allocated until
    /// the key is found: restart keys are compared where they lie in the
    /// block (their prefix is never shared), and the linear walk rebuilds
    /// each key in one reused buffer.
    pub(crate) fn versions_of(&self, key: &[u8]) -> Result<Vec<Entry>, (u64, String)> {
        // The last restart whose (whole) key is < key: the key's versions
        // start at or after it.
        let mut lo = 0usize;
        let mut hi = self.restarts.len();
        while lo < hi {
            let mid = (lo + hi) / 2;
            let mut pos = self.restarts[mid] as usize;
            let raw = self.decode_raw(&mut pos, 0)?;
            if &self.data[raw.suffix] < key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let start = lo.saturating_sub(1);
        let mut pos = self
            .restarts
            .get(start)
            .map_or(self.entries_end, |&r| r as usize);
        let mut next_restart = start;
        let mut current: Vec<u8> = Vec::with_capacity(key.len());
        let mut out = Vec::new();
        while pos < self.entries_end {
            if self.restarts.get(next_restart) == Some(&(pos as u32)) {
                current.clear();
                next_restart += 1;
            }
            let raw = self.decode_raw(&mut pos, current.len())?;
            current.truncate(raw.shared);
            current.extend_from_slice(&self.data[raw.suffix]);
            match current.as_slice().cmp(key) {
                std::cmp::Ordering::Less => {}
                std::cmp::Ordering::Equal => out.push(Entry {
                    key: Bytes::copy_from_slice(&current),
                    seq: raw.seq,
                    value: raw.value.map(|v| self.data.slice(v)),
                }),
                std::cmp::Ordering::Greater => break,
            }
        }
        Ok(out)
    }
}

/// An entry as positions inside its block (see [`Block::decode_raw`]).
struct RawEntry {
    /// Bytes taken from the previous key.
    shared: usize,
    /// Where the rest of the key lies.
    suffix: std::ops::Range<usize>,
    seq: u64,
    /// Where the value lies; `None` for a tombstone.
    value: Option<std::ops::Range<usize>>,
}

/// Checks and decodes one framed data or index block (body and trailer):
/// every entry as (key, seq, value or `None` for a tombstone). The decoder
/// the table reader uses, exposed for describers and fuzz targets; errors
/// give the offset inside the block.
#[expect(
    clippy::type_complexity,
    reason = "a plain tuple list for callers outside the crate"
)]
pub fn decode_block(framed: &[u8]) -> Result<Vec<(Bytes, u64, Option<Bytes>)>, (u64, String)> {
    let body = unframe(framed)?;
    let block = Block::parse(body)?;
    Ok(block
        .entries()?
        .into_iter()
        .map(|e| (e.key, e.seq, e.value))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (key, seq, value) of a test entry.
    type Raw<'a> = (&'a [u8], u64, Option<&'a [u8]>);

    fn build(entries: &[Raw<'_>], interval: usize) -> Block {
        let mut b = BlockBuilder::new(interval);
        for (k, s, v) in entries {
            b.add(k, *s, *v);
        }
        let framed = frame(&b.finish(), true);
        Block::parse(unframe(&framed).unwrap()).unwrap()
    }

    #[test]
    fn entries_round_trip_with_prefixes_and_restarts() {
        let keys: Vec<Vec<u8>> = (0..100u32)
            .map(|i| format!("user:{i:05}").into_bytes())
            .collect();
        let entries: Vec<Raw<'_>> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.as_slice(), i as u64, (i % 7 != 0).then_some(k.as_slice())))
            .collect();
        let block = build(&entries, 16);
        assert_eq!(block.restart_count(), 7);
        let decoded = block.entries().unwrap();
        assert_eq!(decoded.len(), 100);
        for (d, (k, s, v)) in decoded.iter().zip(&entries) {
            assert_eq!(d.key.as_ref(), *k);
            assert_eq!(d.seq, *s);
            assert_eq!(d.value.as_deref(), *v);
        }
        for (k, s, _) in &entries {
            let found = block.versions_of(k).unwrap();
            assert_eq!(found.len(), 1);
            assert_eq!(found[0].seq, *s);
        }
        assert!(block.versions_of(b"user:00010x").unwrap().is_empty());
        assert!(block.versions_of(b"a").unwrap().is_empty());
        assert!(block.versions_of(b"z").unwrap().is_empty());
    }

    /// The example of docs/formats.md, byte for byte.
    #[test]
    fn layout_is_pinned_byte_by_byte() {
        let mut b = BlockBuilder::new(16);
        b.add(b"ab", 2, Some(b"x"));
        b.add(b"ac", 1, None);
        let framed = frame(&b.finish(), false);
        let expected: &[u8] = &[
            0x00, 0x02, 0x02, 0x02, b'a', b'b',
            b'x', // shared 0, unshared 2, value 1+1, seq 2
            0x01, 0x01, 0x00, 0x01, b'c', // shared 1, unshared 1, tombstone, seq 1
            0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, // restart [0], count 1
            0x00, 0x07, 0x8d, 0x7a, 0xff, // no compression, crc32 0xff7a8d07
        ];
        assert_eq!(framed, expected);
    }

    #[test]
    fn versions_come_newest_first() {
        let block = build(
            &[
                (b"a", 9, Some(b"a9")),
                (b"b", 8, None),
                (b"b", 5, Some(b"b5")),
                (b"b", 2, Some(b"b2")),
                (b"c", 1, Some(b"c1")),
            ],
            2,
        );
        let b = block.versions_of(b"b").unwrap();
        assert_eq!(b.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![8, 5, 2]);
        assert_eq!(b[0].value, None);
    }

    #[test]
    fn every_flipped_byte_is_caught_by_the_crc() {
        let mut b = BlockBuilder::new(4);
        for i in 0..20u32 {
            b.add(&i.to_be_bytes(), u64::from(i), Some(b"value"));
        }
        let framed = frame(&b.finish(), false);
        for i in 0..framed.len() {
            let mut bad = framed.clone();
            bad[i] ^= 0x40;
            assert!(unframe(&bad).is_err(), "flip at {i} not caught");
        }
    }

    #[test]
    fn garbage_bodies_are_errors_not_panics() {
        for seed in 0..2000u32 {
            let len = (seed % 64) as usize;
            let body: Vec<u8> = (0..len)
                .map(|i| (seed.wrapping_mul(31) ^ i as u32) as u8)
                .collect();
            if let Ok(block) = Block::parse(Bytes::from(body)) {
                let _ = block.entries();
                let _ = block.versions_of(b"k");
            }
        }
    }
}
