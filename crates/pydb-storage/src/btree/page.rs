//! Page layout: the common header, slotted leaf and internal pages,
//! overflow pages and free pages.
//!
//! Every page of the page file is `page_size` bytes (a power of two between
//! [`MIN_PAGE_SIZE`] and [`MAX_PAGE_SIZE`]) and starts with the same
//! 32-byte header:
//!
//! ```text
//!  0  u32  CRC-32 of bytes 4..page_size (written when the page goes to disk)
//!  4  u8   page type: 1 meta, 2 leaf, 3 internal, 4 overflow, 5 free
//!  5  u8   reserved (0)
//!  6  u16  cell count (leaf, internal), 0 otherwise
//!  8  u64  page LSN: the WAL position of the last change to this page
//! 16  u32  the page's own number (catches a page written to the wrong place)
//! 20  u16  leaf/internal: offset of the lowest cell; overflow: bytes of data
//! 22  u16  reserved (0)
//! 24  u32  leaf: previous leaf; internal: leftmost child; others 0
//! 28  u32  leaf: next leaf; overflow: next page of the chain; free: next free page
//! 32  ...  slot array (leaf, internal) or data (overflow)
//! ```
//!
//! ## Slotted pages
//!
//! A leaf or internal page is a *slotted page*: an array of `u16` cell
//! offsets grows up from the header, the cells themselves grow down from the
//! end of the page, and the free space is the gap in the middle. Slots are in
//! key order, cells are wherever they landed, so a lookup binary-searches
//! the slots and follows one offset per probe:
//!
//! ```text
//! +--------+-----------------+------------------+------+------+------+
//! | header | s0 s1 s2 ...  ->|    free space    | c2   | c0   | c1   |
//! +--------+-----------------+------------------+------+------+------+
//! 0        32                cells_start  <-                page_size
//! ```
//!
//! A page never has holes, so it needs no fragmentation bookkeeping: the
//! cells fill `cells_start..page_size` exactly. The common edits keep it so
//! in place, without decoding ([`leaf_put_in_place`],
//! [`leaf_delete_in_place`]): an insert shifts the slots after its position
//! and writes the cell just below the others; a delete (or a replacement of
//! another size) slides the cells below the old one up by its length and
//! fixes their slots. Freed bytes are zeroed, so the free gap is all zeros
//! (the WAL leaves it out of page images). Splits and merges decode the page
//! into a [`Node`], edit the vectors and encode it again. Reads never decode
//! a whole page: [`PageView`] binary-searches the slots in place (and the
//! buffer pool keeps an in-memory array of key prefixes beside each cached
//! page, [`heads`](super::heads), so that most probes compare integers).
//!
//! Cells:
//!
//! ```text
//! leaf cell, inline value:    u16 key_len | u8 0 | u32 value_len | key | value
//! leaf cell, overflow value:  u16 key_len | u8 1 | u32 value_len | key | u32 first overflow page
//! internal cell:              u16 key_len | u32 child | key
//! ```
//!
//! An internal page with cells `(k1, c1) .. (kn, cn)` and leftmost child
//! `c0` sends a key `k` to `c0` if `k < k1`, else to the `ci` with the
//! largest `ki <= k`.
//!
//! ## Untrusted bytes
//!
//! Everything read from a page is checked before it is used: slot offsets
//! against the cell area, cell lengths against the page end, keys for
//! strictly ascending order when a page is decoded. A failed check is a
//! [`PageError`] that the caller turns into `Error::Corrupted` with the
//! page's file offset. Nothing here indexes a slice without a bound check.

use bytes::Bytes;

/// A page number. Pages 0 and 1 are the two meta pages, so 0 doubles as
/// "no page" in links.
pub type PageId = u32;

/// "No page": the end of a sibling list, chain or free list.
pub const NO_PAGE: PageId = 0;
/// The first page that can hold tree data (0 and 1 are meta pages).
pub const FIRST_DATA_PAGE: PageId = 2;

/// Smallest page size accepted.
pub const MIN_PAGE_SIZE: usize = 512;
/// Largest page size accepted (slot offsets are `u16`).
pub const MAX_PAGE_SIZE: usize = 32 * 1024;
/// Default page size: the usual OS page and SSD sector multiple.
pub const DEFAULT_PAGE_SIZE: usize = 4096;

/// Offset of the page checksum.
pub const CRC_OFFSET: usize = 0;
/// Offset of the page type byte.
pub const TYPE_OFFSET: usize = 4;
/// Offset of the cell count.
pub const COUNT_OFFSET: usize = 6;
/// Offset of the page LSN.
pub const LSN_OFFSET: usize = 8;
/// Offset of the page's own number.
pub const PAGE_ID_OFFSET: usize = 16;
/// Offset of the lowest cell (leaf, internal) or the data length (overflow).
pub const CELLS_START_OFFSET: usize = 20;
/// Offset of the left link: previous leaf or leftmost child.
pub const LEFT_OFFSET: usize = 24;
/// Offset of the right link: next leaf, next overflow page, next free page.
pub const RIGHT_OFFSET: usize = 28;
/// Length of the common header; slots or data start here.
pub const HEADER_LEN: usize = 32;
/// Length of one slot (a `u16` cell offset).
pub const SLOT_LEN: usize = 2;

/// Bytes of a leaf cell before the key.
pub const LEAF_CELL_HEADER: usize = 7;
/// Bytes of an internal cell before the key.
pub const INTERNAL_CELL_HEADER: usize = 6;
/// Leaf cell kind: the value follows the key.
pub const VALUE_INLINE: u8 = 0;
/// Leaf cell kind: a `u32` overflow page number follows the key.
pub const VALUE_OVERFLOW: u8 = 1;

/// The type of a page, from its header byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageType {
    /// One of the two meta pages.
    Meta = 1,
    /// A B+tree leaf: keys and values.
    Leaf = 2,
    /// A B+tree internal node: separator keys and child pointers.
    Internal = 3,
    /// A piece of a value too large for a leaf.
    Overflow = 4,
    /// A page on the free list.
    Free = 5,
}

impl PageType {
    /// The type for a header byte, if it is one.
    pub fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(PageType::Meta),
            2 => Some(PageType::Leaf),
            3 => Some(PageType::Internal),
            4 => Some(PageType::Overflow),
            5 => Some(PageType::Free),
            _ => None,
        }
    }
}

/// A failed check on the bytes of one page: where in the page and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageError {
    /// Offset inside the page.
    pub offset: usize,
    /// What check failed.
    pub reason: &'static str,
}

/// The result of a check on page bytes.
pub type PResult<T> = std::result::Result<T, PageError>;

fn bad<T>(offset: usize, reason: &'static str) -> PResult<T> {
    Err(PageError { offset, reason })
}

/// Reads a little-endian `u16` at `at`, bounds-checked.
pub fn get_u16(buf: &[u8], at: usize) -> PResult<u16> {
    match buf.get(at..at.saturating_add(2)) {
        Some(b) => Ok(u16::from_le_bytes([b[0], b[1]])),
        None => bad(at, "u16 past the end of the page"),
    }
}

/// Reads a little-endian `u32` at `at`, bounds-checked.
pub fn get_u32(buf: &[u8], at: usize) -> PResult<u32> {
    match buf.get(at..at.saturating_add(4)) {
        Some(b) => Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        None => bad(at, "u32 past the end of the page"),
    }
}

/// Reads a little-endian `u64` at `at`, bounds-checked.
pub fn get_u64(buf: &[u8], at: usize) -> PResult<u64> {
    match buf.get(at..at.saturating_add(8)) {
        Some(b) => {
            let mut w = [0u8; 8];
            w.copy_from_slice(b);
            Ok(u64::from_le_bytes(w))
        }
        None => bad(at, "u64 past the end of the page"),
    }
}

/// Writes `bytes` at `at`; the caller built `buf` and knows it is long enough,
/// but a short buffer is still an error rather than a panic.
fn put(buf: &mut [u8], at: usize, bytes: &[u8]) -> PResult<()> {
    match buf.get_mut(at..at.saturating_add(bytes.len())) {
        Some(dst) => {
            dst.copy_from_slice(bytes);
            Ok(())
        }
        None => bad(at, "write past the end of the page"),
    }
}

/// The page LSN stored in a page's header (0 for a buffer too short).
pub fn page_lsn(buf: &[u8]) -> u64 {
    get_u64(buf, LSN_OFFSET).unwrap_or(0)
}

/// Stores `lsn` in the page header.
pub fn set_page_lsn(buf: &mut [u8], lsn: u64) {
    // A buffer shorter than a header cannot be a page; nothing to do.
    let _ = put(buf, LSN_OFFSET, &lsn.to_le_bytes());
}

/// The checksum a page should carry: CRC-32 of everything after the field.
pub fn compute_checksum(buf: &[u8]) -> u32 {
    crc32fast::hash(buf.get(CRC_OFFSET + 4..).unwrap_or(&[]))
}

/// Writes the page checksum; done just before a page goes to disk.
pub fn seal(buf: &mut [u8]) {
    let crc = compute_checksum(buf);
    let _ = put(buf, CRC_OFFSET, &crc.to_le_bytes());
}

/// Whether the stored checksum matches the page's bytes.
pub fn checksum_ok(buf: &[u8]) -> bool {
    get_u32(buf, CRC_OFFSET).is_ok_and(|stored| stored == compute_checksum(buf))
}

/// Checks a page just read from disk: checksum, own page number, known type.
pub fn verify(buf: &[u8], id: PageId) -> PResult<PageType> {
    if !checksum_ok(buf) {
        return bad(CRC_OFFSET, "page checksum mismatch");
    }
    if get_u32(buf, PAGE_ID_OFFSET)? != id {
        return bad(PAGE_ID_OFFSET, "page holds another page's number");
    }
    match buf.get(TYPE_OFFSET).copied().and_then(PageType::from_byte) {
        Some(t) => Ok(t),
        None => bad(TYPE_OFFSET, "unknown page type"),
    }
}

/// Whether a page size is one pydb accepts.
pub fn valid_page_size(size: usize) -> bool {
    size.is_power_of_two() && (MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&size)
}

/// The largest leaf or internal cell (slot included) a page of this size
/// accepts: a quarter of the space after the header. With cells this small a
/// full page that splits in two always leaves both halves fitting, and at
/// least four entries fit in every page.
pub fn max_cell_len(page_size: usize) -> usize {
    (page_size - HEADER_LEN) / 4
}

/// The longest key a page of this size accepts: its largest leaf cell holds
/// the key and an overflow pointer.
pub fn max_key_len_for(page_size: usize) -> usize {
    max_cell_len(page_size) - SLOT_LEN - LEAF_CELL_HEADER - 4
}

/// How many value bytes one overflow page holds.
pub fn overflow_capacity(page_size: usize) -> usize {
    page_size - HEADER_LEN
}

// ---------------------------------------------------------------------------
// Decoded nodes
// ---------------------------------------------------------------------------

/// Where a value lives: in the leaf cell or in a chain of overflow pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// The value bytes, stored in the cell.
    Inline(Bytes),
    /// A value of `len` bytes in the overflow chain starting at `first`.
    Overflow {
        /// Total length of the value.
        len: u32,
        /// First page of the chain.
        first: PageId,
    },
}

/// One key and its value in a leaf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafEntry {
    /// The key.
    pub key: Bytes,
    /// The value or where it lives.
    pub value: Value,
}

impl LeafEntry {
    /// Bytes of this entry's cell, slot included.
    pub fn cell_len(&self) -> usize {
        SLOT_LEN + leaf_cell_len(self.key.len(), &self.value)
    }
}

/// Bytes of a leaf cell (no slot) with this key length and value.
pub fn leaf_cell_len(key_len: usize, value: &Value) -> usize {
    LEAF_CELL_HEADER
        + key_len
        + match value {
            Value::Inline(v) => v.len(),
            Value::Overflow { .. } => 4,
        }
}

/// A decoded leaf page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leaf {
    /// The previous leaf in key order, or [`NO_PAGE`].
    pub prev: PageId,
    /// The next leaf in key order, or [`NO_PAGE`].
    pub next: PageId,
    /// Entries in strictly ascending key order.
    pub entries: Vec<LeafEntry>,
}

impl Leaf {
    /// Bytes the page needs, header included.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.entries.iter().map(LeafEntry::cell_len).sum::<usize>()
    }

    /// Sets `key` to `value`; returns the value it replaced.
    pub fn put(&mut self, key: Bytes, value: Value) -> Option<Value> {
        match self.entries.binary_search_by(|e| e.key.as_ref().cmp(&key)) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].value, value)),
            Err(i) => {
                self.entries.insert(i, LeafEntry { key, value });
                None
            }
        }
    }

    /// Removes `key`; returns its value if it was there.
    pub fn remove(&mut self, key: &[u8]) -> Option<Value> {
        match self.entries.binary_search_by(|e| e.key.as_ref().cmp(key)) {
            Ok(i) => Some(self.entries.remove(i).value),
            Err(_) => None,
        }
    }
}

/// A decoded internal page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Internal {
    /// The child for keys below the first separator.
    pub leftmost: PageId,
    /// Separators with the child holding keys `>=` the separator.
    pub entries: Vec<(Bytes, PageId)>,
}

impl Internal {
    /// Bytes the page needs, header included.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN
            + self
                .entries
                .iter()
                .map(|(k, _)| internal_cell_len(k.len()))
                .sum::<usize>()
    }

    /// Which child `key` belongs to: 0 is the leftmost child, `i` the child
    /// of separator `i - 1`.
    pub fn child_pos(&self, key: &[u8]) -> usize {
        self.entries.partition_point(|(k, _)| k.as_ref() <= key)
    }

    /// The child at position `pos` (see [`Internal::child_pos`]).
    pub fn child_at(&self, pos: usize) -> Option<PageId> {
        match pos {
            0 => Some(self.leftmost),
            p => self.entries.get(p - 1).map(|(_, c)| *c),
        }
    }

    /// The number of children.
    pub fn children(&self) -> usize {
        self.entries.len() + 1
    }
}

/// Bytes of an internal cell (slot included) with a key of this length.
pub fn internal_cell_len(key_len: usize) -> usize {
    SLOT_LEN + INTERNAL_CELL_HEADER + key_len
}

/// A decoded leaf or internal page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A leaf.
    Leaf(Leaf),
    /// An internal node.
    Internal(Internal),
}

impl Node {
    /// Bytes the page needs, header included.
    pub fn encoded_len(&self) -> usize {
        match self {
            Node::Leaf(l) => l.encoded_len(),
            Node::Internal(i) => i.encoded_len(),
        }
    }
}

/// The content of any page other than a meta page, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// A tree node.
    Node(Node),
    /// A piece of an overflow chain.
    Overflow {
        /// The next page of the chain or [`NO_PAGE`].
        next: PageId,
        /// The bytes this page holds.
        data: Bytes,
    },
    /// A free page and the next one on the free list.
    Free {
        /// The next free page or [`NO_PAGE`].
        next: PageId,
    },
}

fn header(buf: &mut [u8], ty: PageType, count: u16, id: PageId) -> PResult<()> {
    put(buf, TYPE_OFFSET, &[ty as u8])?;
    put(buf, COUNT_OFFSET, &count.to_le_bytes())?;
    put(buf, PAGE_ID_OFFSET, &id.to_le_bytes())
}

fn count_u16(n: usize) -> PResult<u16> {
    u16::try_from(n).map_err(|_| PageError {
        offset: COUNT_OFFSET,
        reason: "too many cells for a page",
    })
}

/// Encodes `content` as page `id` of `page_size` bytes. LSN and checksum
/// are left zero: the LSN is set when the change is logged, the checksum
/// when the page is written to disk. Fails if the content does not fit.
pub fn encode(content: &Content, id: PageId, page_size: usize) -> PResult<Vec<u8>> {
    let mut buf = vec![0u8; page_size];
    match content {
        Content::Node(node) => {
            if node.encoded_len() > page_size {
                return bad(HEADER_LEN, "node does not fit in a page");
            }
            let mut cell_end = page_size;
            let mut slot = HEADER_LEN;
            match node {
                Node::Leaf(leaf) => {
                    header(&mut buf, PageType::Leaf, count_u16(leaf.entries.len())?, id)?;
                    put(&mut buf, LEFT_OFFSET, &leaf.prev.to_le_bytes())?;
                    put(&mut buf, RIGHT_OFFSET, &leaf.next.to_le_bytes())?;
                    for e in &leaf.entries {
                        // Straight into the page: no buffer per cell.
                        let len = leaf_cell_len(e.key.len(), &e.value);
                        cell_end -= len;
                        match buf.get_mut(cell_end..cell_end + len) {
                            Some(dst) => write_leaf_cell(dst, &e.key, &e.value)?,
                            None => return bad(cell_end, "cell past the end of the page"),
                        }
                        put(&mut buf, slot, &(cell_end as u16).to_le_bytes())?;
                        slot += SLOT_LEN;
                    }
                }
                Node::Internal(node) => {
                    header(
                        &mut buf,
                        PageType::Internal,
                        count_u16(node.entries.len())?,
                        id,
                    )?;
                    put(&mut buf, LEFT_OFFSET, &node.leftmost.to_le_bytes())?;
                    for (key, child) in &node.entries {
                        let klen = key_len_u16(key.len())?;
                        let len = INTERNAL_CELL_HEADER + key.len();
                        cell_end -= len;
                        put(&mut buf, cell_end, &klen.to_le_bytes())?;
                        put(&mut buf, cell_end + 2, &child.to_le_bytes())?;
                        put(&mut buf, cell_end + INTERNAL_CELL_HEADER, key)?;
                        put(&mut buf, slot, &(cell_end as u16).to_le_bytes())?;
                        slot += SLOT_LEN;
                    }
                }
            }
            // The lowest cell offset; `page_size` itself fits in u16 only up
            // to 32 KiB, which is why that is the largest page size.
            put(
                &mut buf,
                CELLS_START_OFFSET,
                &(cell_end as u16).to_le_bytes(),
            )?;
        }
        Content::Overflow { next, data } => {
            if data.len() > overflow_capacity(page_size) {
                return bad(HEADER_LEN, "overflow data does not fit in a page");
            }
            header(&mut buf, PageType::Overflow, 0, id)?;
            put(
                &mut buf,
                CELLS_START_OFFSET,
                &(data.len() as u16).to_le_bytes(),
            )?;
            put(&mut buf, RIGHT_OFFSET, &next.to_le_bytes())?;
            put(&mut buf, HEADER_LEN, data)?;
        }
        Content::Free { next } => {
            header(&mut buf, PageType::Free, 0, id)?;
            put(&mut buf, RIGHT_OFFSET, &next.to_le_bytes())?;
        }
    }
    Ok(buf)
}

fn key_len_u16(len: usize) -> PResult<u16> {
    u16::try_from(len).map_err(|_| PageError {
        offset: 0,
        reason: "key longer than 65535 bytes",
    })
}

/// The bytes of one leaf cell (no slot): also the payload of a logged put.
pub fn encode_leaf_cell(key: &[u8], value: &Value) -> PResult<Vec<u8>> {
    let mut cell = Vec::new();
    append_leaf_cell(&mut cell, key, value)?;
    Ok(cell)
}

/// Appends the bytes of one leaf cell to `out` (a logged put's record is
/// built this way, without a buffer for the cell alone).
pub fn append_leaf_cell(out: &mut Vec<u8>, key: &[u8], value: &Value) -> PResult<()> {
    let start = out.len();
    out.resize(start + leaf_cell_len(key.len(), value), 0);
    match out.get_mut(start..) {
        Some(dst) => write_leaf_cell(dst, key, value),
        None => bad(start, "cell past the end of the buffer"),
    }
}

/// Writes one leaf cell into `dst`, which is exactly its length.
fn write_leaf_cell(dst: &mut [u8], key: &[u8], value: &Value) -> PResult<()> {
    let klen = key_len_u16(key.len())?;
    put(dst, 0, &klen.to_le_bytes())?;
    match value {
        Value::Inline(v) => {
            let vlen = u32::try_from(v.len()).map_err(|_| PageError {
                offset: 0,
                reason: "value longer than 4 GiB",
            })?;
            put(dst, 2, &[VALUE_INLINE])?;
            put(dst, 3, &vlen.to_le_bytes())?;
            put(dst, LEAF_CELL_HEADER, key)?;
            put(dst, LEAF_CELL_HEADER + key.len(), v)?;
        }
        Value::Overflow { len, first } => {
            put(dst, 2, &[VALUE_OVERFLOW])?;
            put(dst, 3, &len.to_le_bytes())?;
            put(dst, LEAF_CELL_HEADER, key)?;
            put(dst, LEAF_CELL_HEADER + key.len(), &first.to_le_bytes())?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Editing a leaf in place
// ---------------------------------------------------------------------------

/// What an in-place edit replaced or removed: enough to update the tree's
/// byte count and to free an overflow chain, without copying the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OldValue {
    /// The value's length.
    pub len: u32,
    /// The first page of its overflow chain, if it had one.
    pub overflow: Option<PageId>,
}

impl From<ValueRef<'_>> for OldValue {
    fn from(v: ValueRef<'_>) -> Self {
        match v {
            ValueRef::Inline(b) => OldValue {
                len: b.len() as u32,
                overflow: None,
            },
            ValueRef::Overflow { len, first } => OldValue {
                len,
                overflow: Some(first),
            },
        }
    }
}

impl From<&Value> for OldValue {
    fn from(v: &Value) -> Self {
        match v {
            Value::Inline(b) => OldValue {
                len: b.len() as u32,
                overflow: None,
            },
            Value::Overflow { len, first } => OldValue {
                len: *len,
                overflow: Some(*first),
            },
        }
    }
}

/// Bytes a leaf or internal page uses: header, slots and cells. Pages are
/// kept without holes (see the module docs), so this is what
/// [`Node::encoded_len`] would say of the decoded page.
pub fn node_used_len(buf: &[u8]) -> PResult<usize> {
    let count = get_u16(buf, COUNT_OFFSET)? as usize;
    let cells_start = get_u16(buf, CELLS_START_OFFSET)? as usize;
    match buf.len().checked_sub(cells_start) {
        Some(cells) => Ok(HEADER_LEN + count * SLOT_LEN + cells),
        None => bad(CELLS_START_OFFSET, "cell area starts past the page end"),
    }
}

/// Removes the cell of `len` bytes at `off` from the cell area, sliding
/// the cells below it up so that the area stays without holes, and fixing
/// the slots that pointed at moved cells. The slot of the removed cell is
/// left for the caller. Returns the new start of the cell area.
fn remove_cell(buf: &mut [u8], count: usize, off: usize, len: usize) -> PResult<usize> {
    let cells_start = get_u16(buf, CELLS_START_OFFSET)? as usize;
    let end = off.checked_add(len).filter(|e| *e <= buf.len());
    if off < cells_start || end.is_none() {
        return bad(CELLS_START_OFFSET, "cell outside the cell area");
    }
    buf.copy_within(cells_start..off, cells_start + len);
    buf[cells_start..cells_start + len].fill(0);
    for j in 0..count {
        let at = HEADER_LEN + j * SLOT_LEN;
        let slot = get_u16(buf, at)? as usize;
        if slot < off {
            // slot + len <= off + len <= page size <= 32 KiB: fits a u16.
            put(buf, at, &((slot + len) as u16).to_le_bytes())?;
        }
    }
    let start = cells_start + len;
    put(buf, CELLS_START_OFFSET, &(start as u16).to_le_bytes())?;
    Ok(start)
}

/// Sets `key` to `value` in the leaf page `buf`, in place: the slot array
/// and cell area are edited, nothing is decoded. Returns `None` (and leaves
/// the page untouched) when the page has no room, so the caller splits;
/// `Some(old)` otherwise, with the value replaced, if any.
///
/// The fit rule is the one the decoded path uses (`encoded_len <= page
/// size`), so both paths split at the same moment.
pub fn leaf_put_in_place(
    buf: &mut [u8],
    key: &[u8],
    value: &Value,
) -> PResult<Option<Option<OldValue>>> {
    let view = PageView::new(buf, PageType::Leaf)?;
    let count = view.count();
    let found = view.search_leaf(key)?;
    let new_len = leaf_cell_len(key.len(), value);
    let slots_end = HEADER_LEN + count * SLOT_LEN;
    let cells_start = get_u16(buf, CELLS_START_OFFSET)? as usize;
    // PageView::new checked slots_end <= cells_start <= page size.
    let gap = cells_start - slots_end;
    match found {
        Ok(i) => {
            let (cell, off) = view.cell(i)?;
            let (_, old, old_len) = decode_leaf_cell(cell, off)?;
            let old = OldValue::from(old);
            if new_len == old_len {
                // Same size (an overwrite of a fixed-size value): in place.
                let dst = buf.get_mut(off..off + old_len);
                write_leaf_cell(dst.unwrap_or_default(), key, value)?;
                return Ok(Some(Some(old)));
            }
            if gap + old_len < new_len {
                return Ok(None);
            }
            let start = remove_cell(buf, count, off, old_len)?;
            let new_off = start - new_len;
            let dst = buf.get_mut(new_off..start).unwrap_or_default();
            write_leaf_cell(dst, key, value)?;
            put(
                buf,
                HEADER_LEN + i * SLOT_LEN,
                &(new_off as u16).to_le_bytes(),
            )?;
            put(buf, CELLS_START_OFFSET, &(new_off as u16).to_le_bytes())?;
            Ok(Some(Some(old)))
        }
        Err(i) => {
            if gap < new_len + SLOT_LEN {
                return Ok(None);
            }
            let slot_at = HEADER_LEN + i * SLOT_LEN;
            buf.copy_within(slot_at..slots_end, slot_at + SLOT_LEN);
            let new_off = cells_start - new_len;
            let dst = buf.get_mut(new_off..cells_start).unwrap_or_default();
            write_leaf_cell(dst, key, value)?;
            put(buf, slot_at, &(new_off as u16).to_le_bytes())?;
            put(buf, CELLS_START_OFFSET, &(new_off as u16).to_le_bytes())?;
            put(buf, COUNT_OFFSET, &count_u16(count + 1)?.to_le_bytes())?;
            Ok(Some(None))
        }
    }
}

/// Removes `key` from the leaf page `buf`, in place; returns the value it
/// had, or `None` if it was not there.
pub fn leaf_delete_in_place(buf: &mut [u8], key: &[u8]) -> PResult<Option<OldValue>> {
    let view = PageView::new(buf, PageType::Leaf)?;
    let count = view.count();
    let Ok(i) = view.search_leaf(key)? else {
        return Ok(None);
    };
    let (cell, off) = view.cell(i)?;
    let (_, old, old_len) = decode_leaf_cell(cell, off)?;
    let old = OldValue::from(old);
    remove_cell(buf, count, off, old_len)?;
    let slot_at = HEADER_LEN + i * SLOT_LEN;
    let slots_end = HEADER_LEN + count * SLOT_LEN;
    buf.copy_within(slot_at + SLOT_LEN..slots_end, slot_at);
    put(buf, slots_end - SLOT_LEN, &[0, 0])?;
    put(buf, COUNT_OFFSET, &count_u16(count - 1)?.to_le_bytes())?;
    Ok(Some(old))
}

/// The free gap of a page, as `(start, len)`: the bytes a page image in
/// the WAL leaves out because they are zero (see `wal.rs`). Slotted pages:
/// between the slot array and the cells; overflow pages: after the data;
/// free pages: everything after the header. `(page size, 0)` for anything
/// else or a header that does not add up.
pub fn free_gap(buf: &[u8]) -> (usize, usize) {
    let none = (buf.len(), 0);
    let ty = buf.get(TYPE_OFFSET).copied().and_then(PageType::from_byte);
    let (start, end) = match ty {
        Some(PageType::Leaf | PageType::Internal) => {
            let (Ok(count), Ok(cells_start)) =
                (get_u16(buf, COUNT_OFFSET), get_u16(buf, CELLS_START_OFFSET))
            else {
                return none;
            };
            (HEADER_LEN + count as usize * SLOT_LEN, cells_start as usize)
        }
        Some(PageType::Overflow) => match get_u16(buf, CELLS_START_OFFSET) {
            Ok(len) => (HEADER_LEN + len as usize, buf.len()),
            Err(_) => return none,
        },
        Some(PageType::Free) => (HEADER_LEN, buf.len()),
        _ => return none,
    };
    if start > end || end > buf.len() {
        return none;
    }
    (start, end - start)
}

/// A leaf cell read in place: key and value (or where the value lives).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueRef<'a> {
    /// The value, in the page.
    Inline(&'a [u8]),
    /// A value in an overflow chain.
    Overflow {
        /// Total length.
        len: u32,
        /// First page of the chain.
        first: PageId,
    },
}

impl ValueRef<'_> {
    /// An owned [`Value`].
    pub fn to_value(self) -> Value {
        match self {
            ValueRef::Inline(v) => Value::Inline(Bytes::copy_from_slice(v)),
            ValueRef::Overflow { len, first } => Value::Overflow { len, first },
        }
    }
}

/// Decodes a leaf cell at the start of `cell` (which may run on to the page
/// end); `at` is its offset in the page, for error reports. Returns the key,
/// the value and the cell's length.
///
/// `#[inline]`: a cursor decodes one cell per entry it hands out, and once
/// the cursor became generic over its bounds (session 11) the compiler
/// stopped inlining this on its own; the call and the result passed
/// through memory cost `scanrandom` 13% more instructions.
#[inline]
pub fn decode_leaf_cell(cell: &[u8], at: usize) -> PResult<(&[u8], ValueRef<'_>, usize)> {
    // Every cursor step decodes a cell, so the header is read in one
    // checked step (a fixed-size chunk) and each part after it is split off
    // with one length check.
    let Some((header, rest)) = cell.split_first_chunk::<LEAF_CELL_HEADER>() else {
        return bad(at, "leaf cell header past the page end");
    };
    let [k0, k1, kind, v0, v1, v2, v3] = *header;
    let klen = usize::from(u16::from_le_bytes([k0, k1]));
    let vlen = u32::from_le_bytes([v0, v1, v2, v3]);
    let Some((key, rest)) = rest.split_at_checked(klen) else {
        return bad(at, "leaf key past the page end");
    };
    let key_end = LEAF_CELL_HEADER + klen;
    match kind {
        VALUE_INLINE => match rest.get(..vlen as usize) {
            Some(v) => Ok((key, ValueRef::Inline(v), key_end + v.len())),
            None => bad(at, "leaf value past the page end"),
        },
        VALUE_OVERFLOW => match rest.first_chunk::<4>() {
            Some(first) => Ok((
                key,
                ValueRef::Overflow {
                    len: vlen,
                    first: u32::from_le_bytes(*first),
                },
                key_end + 4,
            )),
            None => bad(at, "overflow pointer past the page end"),
        },
        _ => bad(at + 2, "unknown leaf cell kind"),
    }
}

/// The lines from a cell's start that a leaf search prefetches: all of a
/// cell of up to 129 bytes, wherever it starts in its line (a 16-byte key
/// and a 100-byte value make 123).
pub const CELL_PREFETCH_LINES: usize = 3;

/// A read-only view of a leaf or internal page, searched in place.
#[derive(Debug, Clone, Copy)]
pub struct PageView<'a> {
    buf: &'a [u8],
    count: usize,
    /// The lowest cell offset, checked against the slot array and the page.
    cells_start: usize,
    /// Leaf or internal, as checked by [`PageView::new`].
    kind: PageType,
}

impl<'a> PageView<'a> {
    /// Checks the header of a slotted page (type `expected`) and wraps it.
    pub fn new(buf: &'a [u8], expected: PageType) -> PResult<Self> {
        let ty = buf.get(TYPE_OFFSET).copied().and_then(PageType::from_byte);
        if ty != Some(expected) {
            return bad(TYPE_OFFSET, "unexpected page type");
        }
        let count = get_u16(buf, COUNT_OFFSET)? as usize;
        let slots_end = HEADER_LEN + count * SLOT_LEN;
        let cells_start = get_u16(buf, CELLS_START_OFFSET)? as usize;
        if slots_end > cells_start || cells_start > buf.len() {
            return bad(CELLS_START_OFFSET, "slot array overlaps the cells");
        }
        Ok(Self {
            buf,
            count,
            cells_start,
            kind: expected,
        })
    }

    /// The number of cells.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The offset of the lowest cell: the cells fill `cells_start()..` to
    /// the page end, and no slot points below it.
    pub fn cells_start(&self) -> usize {
        self.cells_start
    }

    /// The end of the slot array (checked to be at most `cells_start()`).
    pub fn slots_end(&self) -> usize {
        HEADER_LEN + self.count * SLOT_LEN
    }

    /// The left link: previous leaf or leftmost child.
    pub fn left(&self) -> PResult<PageId> {
        get_u32(self.buf, LEFT_OFFSET)
    }

    /// The right link: next leaf.
    pub fn right(&self) -> PResult<PageId> {
        get_u32(self.buf, RIGHT_OFFSET)
    }

    /// The bytes from cell `i` to the page end, and the cell's offset.
    fn cell(&self, i: usize) -> PResult<(&'a [u8], usize)> {
        if i >= self.count {
            return bad(HEADER_LEN, "slot index out of range");
        }
        let slot_at = HEADER_LEN + i * SLOT_LEN;
        let offset = get_u16(self.buf, slot_at)? as usize;
        if offset < self.cells_start {
            return bad(slot_at, "slot points outside the cell area");
        }
        match self.buf.get(offset..) {
            Some(cell) if !cell.is_empty() => Ok((cell, offset)),
            _ => bad(slot_at, "slot points past the page end"),
        }
    }

    /// Key of cell `i`, leaf or internal.
    pub fn key(&self, i: usize) -> PResult<&'a [u8]> {
        match self.kind {
            PageType::Internal => self.internal_key(i),
            _ => self.leaf_key(i),
        }
    }

    /// The first [`CELL_PREFETCH_LINES`] lines of cell `i`, as far as
    /// they are in the page (none if its slot is out of range): what
    /// [`Self::prefetch_cell`] asks for.
    pub fn cell_lines(&self, i: usize) -> impl Iterator<Item = *const u8> + use<'a> {
        let buf = self.buf;
        let start = self.cell(i).ok().map(|(_, at)| at);
        // Clamped to the page's last byte: a cell near the end of the page
        // has fewer lines (and then one is asked for twice, harmlessly).
        (0..CELL_PREFETCH_LINES).filter_map(move |k| {
            let at = start?.saturating_add(k * 64).min(buf.len().checked_sub(1)?);
            buf.get(at..).map(<[u8]>::as_ptr)
        })
    }

    /// Asks the CPU to start loading cell `i` (its key and its value, up
    /// to [`CELL_PREFETCH_LINES`] lines), without waiting for it. A leaf
    /// search calls this for the cell its heads point at before it reads
    /// the key there: the value's lines, on the next line or two, are
    /// then on their way with the key's instead of after it.
    pub fn prefetch_cell(&self, i: usize) {
        for line in self.cell_lines(i) {
            super::pool::prefetch_line(line);
        }
    }

    /// Key and value of leaf cell `i`.
    pub fn leaf_entry(&self, i: usize) -> PResult<(&'a [u8], ValueRef<'a>)> {
        let (cell, at) = self.cell(i)?;
        let (key, value, _) = decode_leaf_cell(cell, at)?;
        Ok((key, value))
    }

    /// Key of leaf cell `i` (the value is not looked at: this is what a
    /// binary search probes).
    pub fn leaf_key(&self, i: usize) -> PResult<&'a [u8]> {
        let (cell, at) = self.cell(i)?;
        let klen = get_u16(cell, 0).map_err(|_| PageError {
            offset: at,
            reason: "leaf cell header past the page end",
        })? as usize;
        match cell.get(LEAF_CELL_HEADER..LEAF_CELL_HEADER + klen) {
            Some(key) => Ok(key),
            None => bad(at, "leaf key past the page end"),
        }
    }

    /// Key and child of internal cell `i`.
    pub fn internal_entry(&self, i: usize) -> PResult<(&'a [u8], PageId)> {
        let (cell, at) = self.cell(i)?;
        let klen = get_u16(cell, 0).map_err(|_| PageError {
            offset: at,
            reason: "internal cell past the page end",
        })? as usize;
        let child = get_u32(cell, 2).map_err(|_| PageError {
            offset: at,
            reason: "internal cell past the page end",
        })?;
        match cell.get(INTERNAL_CELL_HEADER..INTERNAL_CELL_HEADER + klen) {
            Some(key) => Ok((key, child)),
            None => bad(at, "internal key past the page end"),
        }
    }

    /// Binary search of a leaf: `Ok(i)` if cell `i` holds `key`, `Err(i)`
    /// for the slot where it would go.
    pub fn search_leaf(&self, key: &[u8]) -> PResult<Result<usize, usize>> {
        let (mut lo, mut hi) = (0, self.count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.leaf_key(mid)?.cmp(key) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Ok(Ok(mid)),
            }
        }
        Ok(Err(lo))
    }

    /// Separator key of internal cell `i` (the child is not decoded: this
    /// is what a binary search probes).
    fn internal_key(&self, i: usize) -> PResult<&'a [u8]> {
        let (cell, at) = self.cell(i)?;
        let klen = get_u16(cell, 0).map_err(|_| PageError {
            offset: at,
            reason: "internal cell past the page end",
        })? as usize;
        match cell.get(INTERNAL_CELL_HEADER..INTERNAL_CELL_HEADER + klen) {
            Some(key) => Ok(key),
            None => bad(at, "internal key past the page end"),
        }
    }

    /// The position of the child of an internal page that `key` belongs to
    /// (the number of separators `<= key`; 0 is the leftmost child).
    pub fn child_pos_for(&self, key: &[u8]) -> PResult<usize> {
        let (mut lo, mut hi) = (0, self.count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.internal_key(mid)? <= key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }

    /// The child of an internal page that `key` belongs to.
    pub fn child_for(&self, key: &[u8]) -> PResult<PageId> {
        self.child_at(self.child_pos_for(key)?)
    }

    /// The child at position `pos` (0 = leftmost).
    pub fn child_at(&self, pos: usize) -> PResult<PageId> {
        match pos {
            0 => self.left(),
            p => Ok(self.internal_entry(p - 1)?.1),
        }
    }
}

/// Decodes a page of any type but meta, checking every slot, every cell and
/// the key order.
pub fn decode(buf: &[u8]) -> PResult<Content> {
    decode_with(buf, Bytes::copy_from_slice)
}

/// [`decode`] whose keys and values are slices of `buf` rather than copies:
/// one buffer for the page instead of an allocation per key and value (a
/// write transaction decodes a page it splits; a split leaf holds about a
/// hundred entries). The slices keep the whole page alive while any of
/// them is held.
pub fn decode_shared(buf: &Bytes) -> PResult<Content> {
    decode_with(buf, |part| buf.slice_ref(part))
}

/// [`decode`], with `bytes_of` making the `Bytes` of each key and value
/// (always a slice of `buf`).
fn decode_with(buf: &[u8], bytes_of: impl Fn(&[u8]) -> Bytes) -> PResult<Content> {
    match buf.get(TYPE_OFFSET).copied().and_then(PageType::from_byte) {
        Some(PageType::Leaf) => {
            let view = PageView::new(buf, PageType::Leaf)?;
            let mut leaf = Leaf {
                prev: view.left()?,
                next: view.right()?,
                entries: Vec::with_capacity(view.count()),
            };
            for i in 0..view.count() {
                let (key, value) = view.leaf_entry(i)?;
                if let Some(last) = leaf.entries.last()
                    && last.key.as_ref() >= key
                {
                    return bad(HEADER_LEN + i * SLOT_LEN, "leaf keys out of order");
                }
                let value = match value {
                    ValueRef::Inline(v) => Value::Inline(bytes_of(v)),
                    ValueRef::Overflow { len, first } => Value::Overflow { len, first },
                };
                leaf.entries.push(LeafEntry {
                    key: bytes_of(key),
                    value,
                });
            }
            Ok(Content::Node(Node::Leaf(leaf)))
        }
        Some(PageType::Internal) => {
            let view = PageView::new(buf, PageType::Internal)?;
            let mut node = Internal {
                leftmost: view.left()?,
                entries: Vec::with_capacity(view.count()),
            };
            for i in 0..view.count() {
                let (key, child) = view.internal_entry(i)?;
                if let Some((last, _)) = node.entries.last()
                    && last.as_ref() >= key
                {
                    return bad(HEADER_LEN + i * SLOT_LEN, "separators out of order");
                }
                node.entries.push((bytes_of(key), child));
            }
            Ok(Content::Node(Node::Internal(node)))
        }
        Some(PageType::Overflow) => {
            let len = get_u16(buf, CELLS_START_OFFSET)? as usize;
            match buf.get(HEADER_LEN..HEADER_LEN + len) {
                Some(data) => Ok(Content::Overflow {
                    next: get_u32(buf, RIGHT_OFFSET)?,
                    data: bytes_of(data),
                }),
                None => bad(CELLS_START_OFFSET, "overflow length past the page end"),
            }
        }
        Some(PageType::Free) => Ok(Content::Free {
            next: get_u32(buf, RIGHT_OFFSET)?,
        }),
        Some(PageType::Meta) => bad(TYPE_OFFSET, "meta page where a data page belongs"),
        None => bad(TYPE_OFFSET, "unknown page type"),
    }
}

/// What `pydb inspect` shows about one page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageInfo {
    /// The page type, if the type byte is known.
    pub page_type: Option<PageType>,
    /// The page LSN.
    pub lsn: u64,
    /// The page number stored in the page.
    pub page_id: u32,
    /// The slot count from the header.
    pub slot_count: u16,
    /// Whether the stored checksum matches.
    pub checksum_ok: bool,
    /// Leaf: the keys; internal: the separators.
    pub keys: Vec<Bytes>,
    /// Internal: the children, leftmost first.
    pub children: Vec<PageId>,
    /// Leaf: previous leaf; others 0.
    pub prev: PageId,
    /// Leaf: next leaf; overflow: next page; free: next free page.
    pub next: PageId,
    /// Why the page could not be decoded, if it could not.
    pub error: Option<String>,
}

/// Describes one raw page (as read from the page file) for `pydb inspect`.
/// Never fails: a damaged page is described with its error.
pub fn describe_page(buf: &[u8]) -> PageInfo {
    let mut info = PageInfo {
        page_type: buf.get(TYPE_OFFSET).copied().and_then(PageType::from_byte),
        lsn: page_lsn(buf),
        page_id: get_u32(buf, PAGE_ID_OFFSET).unwrap_or(0),
        slot_count: get_u16(buf, COUNT_OFFSET).unwrap_or(0),
        checksum_ok: checksum_ok(buf),
        keys: Vec::new(),
        children: Vec::new(),
        prev: NO_PAGE,
        next: NO_PAGE,
        error: None,
    };
    if info.page_type == Some(PageType::Meta) {
        return info;
    }
    match decode(buf) {
        Ok(Content::Node(Node::Leaf(leaf))) => {
            info.prev = leaf.prev;
            info.next = leaf.next;
            info.keys = leaf.entries.into_iter().map(|e| e.key).collect();
        }
        Ok(Content::Node(Node::Internal(node))) => {
            info.children.push(node.leftmost);
            for (k, c) in node.entries {
                info.keys.push(k);
                info.children.push(c);
            }
        }
        Ok(Content::Overflow { next, .. }) | Ok(Content::Free { next }) => info.next = next,
        Err(e) => info.error = Some(format!("at byte {}: {}", e.offset, e.reason)),
    }
    info
}

/// A full 4 KiB leaf page `id` as the benchmark's `readrandom` fills
/// them: 32 cells of a 16-byte key and a 100-byte value (for the tests of
/// what a leaf search reads, here and in `pool.rs`).
#[cfg(test)]
pub(crate) fn benchmark_leaf(id: PageId) -> Vec<u8> {
    let mut l = Leaf::default();
    for i in 0..32u64 {
        let mut key = i.to_be_bytes().to_vec();
        key.extend_from_slice(&i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes());
        l.put(
            Bytes::from(key),
            Value::Inline(Bytes::from(vec![i as u8; 100])),
        );
    }
    encode(&Content::Node(Node::Leaf(l)), id, 4096).expect("a full leaf fits its page")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cell_prefetch_covers_every_byte_of_a_benchmark_cell() {
        // 16-byte keys and 100-byte values (123-byte cells) at every
        // alignment a full 4 KiB leaf gives them, the last one ending at
        // the page's end: every byte a lookup reads from the cell is on a
        // line the prefetch asks for, and no line lies outside the page.
        let buf = benchmark_leaf(9);
        let view = PageView::new(&buf, PageType::Leaf).unwrap();
        let base = buf.as_ptr() as usize;
        let mut offsets = std::collections::BTreeSet::new();
        for i in 0..view.count() {
            let (cell, at) = view.cell(i).unwrap();
            let (_, _, len) = decode_leaf_cell(cell, at).unwrap();
            assert_eq!(len, 123);
            let lines: Vec<usize> = view.cell_lines(i).map(|p| p as usize - base).collect();
            assert!(lines.iter().all(|&l| l < buf.len()));
            for byte in at..at + len {
                assert!(
                    lines.iter().any(|l| l / 64 == byte / 64),
                    "cell {i} at {at}: byte {byte} not prefetched ({lines:?})"
                );
            }
            offsets.insert(at % 64);
        }
        // Cells started at many places in their lines, the page's end too.
        assert!(offsets.len() > 10, "{offsets:?}");
        assert!((0..view.count()).any(|i| view.cell(i).unwrap().1 + 123 == buf.len()));
        // A slot past the cells has no lines.
        assert_eq!(view.cell_lines(view.count()).count(), 0);
    }

    fn leaf(keys: &[&str]) -> Leaf {
        Leaf {
            prev: 7,
            next: 9,
            entries: keys
                .iter()
                .map(|k| LeafEntry {
                    key: Bytes::copy_from_slice(k.as_bytes()),
                    value: Value::Inline(Bytes::from(format!("v-{k}"))),
                })
                .collect(),
        }
    }

    #[test]
    fn leaf_round_trips_and_is_searched_in_place() {
        let mut node = leaf(&["apple", "kiwi", "pear"]);
        node.entries.push(LeafEntry {
            key: Bytes::from_static(b"zz"),
            value: Value::Overflow {
                len: 100_000,
                first: 42,
            },
        });
        let content = Content::Node(Node::Leaf(node.clone()));
        let mut buf = encode(&content, 5, 512).unwrap();
        seal(&mut buf);
        assert_eq!(verify(&buf, 5), Ok(PageType::Leaf));
        assert_eq!(decode(&buf).unwrap(), content);
        let view = PageView::new(&buf, PageType::Leaf).unwrap();
        assert_eq!(view.search_leaf(b"kiwi").unwrap(), Ok(1));
        assert_eq!(view.search_leaf(b"banana").unwrap(), Err(1));
        assert_eq!(
            view.leaf_entry(3).unwrap().1,
            ValueRef::Overflow {
                len: 100_000,
                first: 42
            }
        );
        assert_eq!(buf.len(), 512);
        assert_eq!(
            node.encoded_len(),
            512 - get_u16(&buf, CELLS_START_OFFSET).unwrap() as usize + HEADER_LEN + 2 * 4
        );
    }

    #[test]
    fn internal_routes_keys_to_children() {
        let node = Internal {
            leftmost: 10,
            entries: vec![
                (Bytes::from_static(b"m"), 11),
                (Bytes::from_static(b"t"), 12),
            ],
        };
        let buf = encode(&Content::Node(Node::Internal(node.clone())), 3, 512).unwrap();
        let view = PageView::new(&buf, PageType::Internal).unwrap();
        for (key, child) in [("a", 10), ("m", 11), ("n", 11), ("t", 12), ("z", 12)] {
            assert_eq!(view.child_for(key.as_bytes()).unwrap(), child, "{key}");
            assert_eq!(node.child_at(node.child_pos(key.as_bytes())), Some(child));
        }
    }

    #[test]
    fn header_offsets_are_pinned() {
        let buf = encode(&Content::Free { next: 0x0102_0304 }, 0x0a0b_0c0d, 512).unwrap();
        assert_eq!(buf[TYPE_OFFSET], 5);
        assert_eq!(&buf[16..20], &[0x0d, 0x0c, 0x0b, 0x0a]);
        assert_eq!(&buf[28..32], &[0x04, 0x03, 0x02, 0x01]);
        let cell = encode_leaf_cell(b"ab", &Value::Inline(Bytes::from_static(b"xyz"))).unwrap();
        assert_eq!(cell, [2, 0, 0, 3, 0, 0, 0, b'a', b'b', b'x', b'y', b'z']);
    }

    #[test]
    fn a_shared_decode_equals_the_copying_decode() {
        let leaf = Leaf {
            prev: 3,
            next: 9,
            entries: (0..40u8)
                .map(|i| LeafEntry {
                    key: Bytes::from(vec![b'k', i, i]),
                    value: if i % 7 == 3 {
                        Value::Overflow {
                            len: 5000,
                            first: u32::from(i),
                        }
                    } else {
                        Value::Inline(Bytes::from(vec![i; usize::from(i % 5)]))
                    },
                })
                .collect(),
        };
        let internal = Internal {
            leftmost: 4,
            entries: (0..40u8)
                .map(|i| (Bytes::from(vec![b's', i]), u32::from(i) + 10))
                .collect(),
        };
        for content in [
            Content::Node(Node::Leaf(leaf)),
            Content::Node(Node::Internal(internal)),
            Content::Overflow {
                next: 7,
                data: Bytes::from_static(b"overflow bytes"),
            },
            Content::Free { next: 5 },
        ] {
            let buf = encode(&content, 2, 4096).unwrap();
            let copied = decode(&buf).unwrap();
            assert_eq!(copied, content);
            assert_eq!(decode_shared(&Bytes::from(buf)).unwrap(), copied);
        }
        // A damaged page is an error either way, never a panic.
        let mut buf = encode(&Content::Node(Node::Leaf(Leaf::default())), 2, 512).unwrap();
        buf[TYPE_OFFSET] = 0xee;
        assert!(decode_shared(&Bytes::from(buf)).is_err());
    }

    #[test]
    fn empty_root_leaf_matches_docs_formats() {
        // The hex dump in docs/formats.md, "B+tree page file".
        let buf = encode(&Content::Node(Node::Leaf(Leaf::default())), 2, 512).unwrap();
        let mut expected = [0u8; 32];
        expected[4] = 2;
        expected[16] = 2;
        expected[21] = 2;
        assert_eq!(buf[..32], expected);
        assert!(buf[32..].iter().all(|b| *b == 0));
    }

    #[test]
    fn every_bit_flip_is_caught_by_the_checksum() {
        let mut buf = encode(&Content::Node(Node::Leaf(leaf(&["a", "b"]))), 2, 512).unwrap();
        seal(&mut buf);
        for byte in 0..buf.len() {
            let mut bad = buf.clone();
            bad[byte] ^= 0x10;
            assert!(
                verify(&bad, 2).is_err(),
                "flip in byte {byte} went unnoticed"
            );
        }
    }

    #[test]
    fn in_place_edits_match_the_decoded_model() {
        // Random puts (new keys, same-size and resized replacements) and
        // deletes, done in place on the bytes and on a decoded Leaf: the
        // page must always decode to the model and stay without holes.
        let mut model = leaf(&[]);
        let mut buf = encode(&Content::Node(Node::Leaf(model.clone())), 4, 512).unwrap();
        let mut state = 0x2545_f491_u32;
        let mut rand = move || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state
        };
        let (mut no_room, mut deleted) = (0, 0);
        for _ in 0..3000 {
            let key = Bytes::from(format!("k{:02}", rand() % 40));
            let r = rand();
            if r % 5 == 0 {
                let old = leaf_delete_in_place(&mut buf, &key).unwrap();
                let expected = model.remove(&key);
                assert_eq!(old, expected.as_ref().map(OldValue::from));
                deleted += usize::from(old.is_some());
            } else {
                let value = if r % 7 == 0 {
                    Value::Overflow {
                        len: r,
                        first: r % 100,
                    }
                } else {
                    Value::Inline(Bytes::from(vec![r as u8; (r >> 8) as usize % 24]))
                };
                let before = buf.clone();
                match leaf_put_in_place(&mut buf, &key, &value).unwrap() {
                    Some(old) => {
                        let expected = model.put(key, value);
                        assert_eq!(old, expected.as_ref().map(OldValue::from));
                    }
                    None => {
                        no_room += 1;
                        assert_eq!(buf, before, "a put without room changed the page");
                        let mut bigger = model.clone();
                        bigger.put(key, value);
                        assert!(bigger.encoded_len() > 512);
                    }
                }
            }
            assert_eq!(
                decode(&buf).unwrap(),
                Content::Node(Node::Leaf(model.clone()))
            );
            assert_eq!(node_used_len(&buf).unwrap(), model.encoded_len());
            let (start, len) = free_gap(&buf);
            assert!(buf[start..start + len].iter().all(|b| *b == 0));
        }
        assert!(no_room > 0 && deleted > 0, "{no_room} {deleted}");
    }

    #[test]
    fn garbage_never_panics() {
        // Slot offsets, counts and lengths pointing anywhere must give errors.
        let mut state = 0x9e37_79b9_u32;
        for _ in 0..2000 {
            let mut buf = vec![0u8; 512];
            for b in buf.iter_mut() {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                *b = state as u8;
            }
            buf[TYPE_OFFSET] = 2 + (state % 2) as u8;
            buf[COUNT_OFFSET] = (state >> 8) as u8 % 20;
            buf[COUNT_OFFSET + 1] = 0;
            let _ = decode(&buf);
            let _ = describe_page(&buf);
            let _ = free_gap(&buf);
            let mut edited = buf.clone();
            let _ = leaf_put_in_place(&mut edited, b"key", &Value::Inline(Bytes::new()));
            let _ = leaf_delete_in_place(&mut edited, b"key");
            if let Ok(v) = PageView::new(&buf, PageType::Leaf) {
                let _ = v.search_leaf(b"key");
            }
        }
    }
}
