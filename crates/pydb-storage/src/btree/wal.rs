//! The B+tree's write-ahead log: redo records, LSNs, segments and recovery.
//!
//! ## Records
//!
//! Every committed batch is one batch of `pydb-wal` records (all or
//! nothing after a crash). Each record says how to redo a change to one page:
//!
//! ```text
//! page image   u8 1 | u32 page | [u8; page_size]  the whole page after the change
//! image, gap   u8 5 | u32 page | u16 gap start | u16 gap len
//!                              | page bytes before the gap | page bytes after it
//! leaf put     u8 2 | u32 page | leaf cell         put this key/value into the leaf
//! leaf delete  u8 3 | u32 page | key               remove this key from the leaf
//! truncate     u8 6 | u32 page | key               drop the leaf's entries from key on
//! leaf links   u8 7 | u32 page | u32 prev | u32 next  set the leaf's sibling links
//! child insert u8 8 | u32 page | u16 pos | u32 child | key
//!                                                  insert (key, child) as entry pos
//! tree meta    u8 4 | u32 0    | u32 root | u32 height | u32 free head
//!                              | u32 free count | u32 page count
//!                              | u64 live keys | u64 live bytes
//! ```
//!
//! A put or delete is *physiological*: physical about which page, logical
//! about what happens inside it (the slot layout is rebuilt). A leaf split
//! is too, except for its new page: the new right leaf is an image, and the
//! pages around it get a truncate, new sibling links and a child insert
//! (kinds 6 to 8 in `docs/formats.md`), each redone on the page as it was.
//! Merges, internal splits, a new root, overflow pages and free-list pages
//! are logged as full page images: they rewrite whole pages anyway, and
//! images make their redo trivially right.
//!
//! ## Why full page images
//!
//! A page write is not atomic: a power cut can leave half of a 4 KiB page
//! new and half old (a *torn page*). A physiological record cannot be redone
//! on a torn page, since it needs the page's previous content. So the first
//! time a page changes after a checkpoint, the whole page is logged instead
//! (PostgreSQL's `full_page_writes`). Recovery starts from that image, which
//! it installs without even reading the page from disk, and every later
//! record for the page builds on it. A page that has not changed since the
//! checkpoint was written and synced by that checkpoint, so it is whole.
//!
//! pydb writes the second form ("image, gap"): the page without its free
//! gap, which is all zeros (between the slot array and the cells of a leaf
//! or internal page, after the data of an overflow page, after the header
//! of a free page). Replay puts the zeros back. A half-full leaf then logs
//! about half a page; this is PostgreSQL's "hole" in its full-page images.
//! The first form is still read, and only the bytes outside the gap are
//! stored, so the zeros that are left out are those of the page itself.
//!
//! ## LSNs
//!
//! The WAL is a sequence of segment files `wal/<n>.log`; a checkpoint starts
//! a new one and deletes the old ones. A log sequence number names a place
//! in that sequence: `segment << 40 | offset`. The LSN of a batch is the
//! offset just past its last record, and every page it changes gets that
//! LSN. Then:
//!
//! - the write-ahead rule is "sync the WAL up to the page's LSN before the
//!   page is written" ([`super::pool`]);
//! - recovery redoes a record for a page only if the page's LSN is below the
//!   record's, so running recovery twice (a crash during recovery) changes
//!   nothing the second time: replay is idempotent.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use parking_lot::RwLock;
use pydb_file::File;
use pydb_wal::{LogWriter, Scanner};

use super::meta::TreeMeta;
use super::page::{self, Content, FIRST_DATA_PAGE, Node, PageId, Value};
use super::pool::{BufferPool, WriteAhead};
use crate::{Error, Result};

/// Record kind: a full page image.
pub const REC_PAGE_IMAGE: u8 = 1;
/// Record kind: put a key into a leaf.
pub const REC_LEAF_PUT: u8 = 2;
/// Record kind: delete a key from a leaf.
pub const REC_LEAF_DELETE: u8 = 3;
/// Record kind: the tree's meta fields changed.
pub const REC_META: u8 = 4;
/// Record kind: a full page image without its free gap.
pub const REC_PAGE_IMAGE_GAP: u8 = 5;
/// Record kind: drop a leaf's entries from a key on.
pub const REC_LEAF_TRUNCATE: u8 = 6;
/// Record kind: set a leaf's sibling links.
pub const REC_LEAF_LINK: u8 = 7;
/// Record kind: insert a separator and child into an internal page.
pub const REC_INTERNAL_INSERT: u8 = 8;
/// Bytes of the gap description at the start of a `REC_PAGE_IMAGE_GAP`
/// body: `u16` gap start, `u16` gap length.
pub const GAP_HEADER_LEN: usize = 4;
/// Bytes before a record's body: kind and page number.
pub const REC_HEADER_LEN: usize = 5;
/// Bytes of a meta record's body.
pub const META_BODY_LEN: usize = 36;

/// Bits of an LSN that hold the offset inside a segment.
pub const SEGMENT_SHIFT: u32 = 40;
/// The largest offset a segment may reach.
pub const MAX_SEGMENT_LEN: u64 = (1 << SEGMENT_SHIFT) - 1;
/// The directory of WAL segments inside a database directory.
pub const WAL_DIR: &str = "wal";

/// The LSN of `offset` in segment `segment`.
pub fn lsn(segment: u64, offset: u64) -> u64 {
    (segment << SEGMENT_SHIFT) | (offset & MAX_SEGMENT_LEN)
}

/// The segment an LSN points into.
pub fn lsn_segment(lsn: u64) -> u64 {
    lsn >> SEGMENT_SHIFT
}

/// The offset inside its segment an LSN points to.
pub fn lsn_offset(lsn: u64) -> u64 {
    lsn & MAX_SEGMENT_LEN
}

/// The path of WAL segment `segment` in database directory `dir`.
pub fn segment_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(WAL_DIR).join(format!("{segment:010}.log"))
}

/// A change inside one page, logged physiologically: which page is
/// physical, what happens inside it is logical (the slots are rebuilt).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageOp {
    /// Set a key in a leaf.
    Put {
        /// The key.
        key: Bytes,
        /// The value or its overflow chain.
        value: Value,
    },
    /// Remove a key from a leaf.
    Delete {
        /// The key.
        key: Bytes,
    },
    /// Drop every entry of a leaf from this key on: the left half of a
    /// split keeps what is below the first key of the new right half.
    Truncate {
        /// The first key dropped.
        from: Bytes,
    },
    /// Set a leaf's sibling links: a split links the new leaf in between.
    Link {
        /// The previous leaf, or [`page::NO_PAGE`].
        prev: PageId,
        /// The next leaf, or [`page::NO_PAGE`].
        next: PageId,
    },
    /// Insert a separator and the child right of it into an internal page,
    /// at entry `pos`: what a split below tells its parent.
    InsertChild {
        /// Where among the page's entries.
        pos: u16,
        /// The separator: a key between the child's left sibling's keys and
        /// its own (a prefix of its first key).
        key: Bytes,
        /// The new child.
        child: PageId,
    },
}

impl PageOp {
    /// Applies the op to a page, as the original change did. `Err` when the
    /// op does not fit the page (a leaf op on an internal page, a position
    /// past the end): the log and the page disagree, which is damage.
    pub fn apply(&self, node: &mut Node) -> std::result::Result<(), &'static str> {
        match (self, node) {
            (PageOp::Put { key, value }, Node::Leaf(leaf)) => {
                leaf.put(key.clone(), value.clone());
            }
            (PageOp::Delete { key }, Node::Leaf(leaf)) => {
                leaf.remove(key);
            }
            (PageOp::Truncate { from }, Node::Leaf(leaf)) => {
                let keep = leaf.entries.partition_point(|e| e.key < *from);
                leaf.entries.truncate(keep);
            }
            (PageOp::Link { prev, next }, Node::Leaf(leaf)) => {
                (leaf.prev, leaf.next) = (*prev, *next);
            }
            (PageOp::InsertChild { pos, key, child }, Node::Internal(node)) => {
                let pos = usize::from(*pos);
                if pos > node.entries.len() {
                    return Err("internal insert past the page's entries");
                }
                node.entries.insert(pos, (key.clone(), *child));
            }
            (PageOp::InsertChild { .. }, Node::Leaf(_)) => {
                return Err("internal insert for a leaf");
            }
            (_, Node::Internal(_)) => return Err("leaf op for an internal page"),
        }
        Ok(())
    }
}

/// One decoded redo record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalRecord {
    /// The whole page.
    Image {
        /// The page.
        page: PageId,
        /// Its bytes (LSN and checksum fields not yet set).
        bytes: Bytes,
    },
    /// A change inside one page.
    Op {
        /// The page.
        page: PageId,
        /// The change.
        op: PageOp,
    },
    /// New tree meta fields.
    Meta(TreeMeta),
}

fn header(out: &mut Vec<u8>, kind: u8, page: PageId) {
    out.push(kind);
    out.extend_from_slice(&page.to_le_bytes());
}

/// Encodes a full page image record, leaving out the page's free gap
/// when it is all zeros (it is, for every page pydb builds).
pub fn encode_image(page: PageId, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(REC_HEADER_LEN + GAP_HEADER_LEN + bytes.len());
    append_image(&mut out, page, bytes);
    out
}

/// [`encode_image`], appended to `out`: a commit builds all its records
/// in one buffer (one allocation per batch, not one per record).
pub fn append_image(out: &mut Vec<u8>, page: PageId, bytes: &[u8]) {
    let (start, len) = page::free_gap(bytes);
    let gap = bytes.get(start..start + len).unwrap_or_default();
    let (Ok(start16), Ok(len16)) = (u16::try_from(start), u16::try_from(len)) else {
        return append_whole_image(out, page, bytes);
    };
    if !gap.iter().all(|b| *b == 0) {
        return append_whole_image(out, page, bytes);
    }
    header(out, REC_PAGE_IMAGE_GAP, page);
    out.extend_from_slice(&start16.to_le_bytes());
    out.extend_from_slice(&len16.to_le_bytes());
    out.extend_from_slice(bytes.get(..start).unwrap_or_default());
    out.extend_from_slice(bytes.get(start + len..).unwrap_or_default());
}

/// Encodes a page image record of the first form: every byte.
pub fn encode_whole_image(page: PageId, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(REC_HEADER_LEN + bytes.len());
    append_whole_image(&mut out, page, bytes);
    out
}

fn append_whole_image(out: &mut Vec<u8>, page: PageId, bytes: &[u8]) {
    header(out, REC_PAGE_IMAGE, page);
    out.extend_from_slice(bytes);
}

/// Encodes a page op record.
pub fn encode_op(page: PageId, op: &PageOp) -> std::result::Result<Vec<u8>, page::PageError> {
    let mut out = Vec::new();
    append_op(&mut out, page, op)?;
    Ok(out)
}

/// [`encode_op`], appended to `out` (see [`append_image`]). On error `out`
/// may hold part of the record: the caller drops the whole buffer.
pub fn append_op(
    out: &mut Vec<u8>,
    page: PageId,
    op: &PageOp,
) -> std::result::Result<(), page::PageError> {
    match op {
        PageOp::Put { key, value } => {
            header(out, REC_LEAF_PUT, page);
            page::append_leaf_cell(out, key, value)?;
        }
        PageOp::Delete { key } => {
            header(out, REC_LEAF_DELETE, page);
            out.extend_from_slice(key);
        }
        PageOp::Truncate { from } => {
            header(out, REC_LEAF_TRUNCATE, page);
            out.extend_from_slice(from);
        }
        PageOp::Link { prev, next } => {
            header(out, REC_LEAF_LINK, page);
            out.extend_from_slice(&prev.to_le_bytes());
            out.extend_from_slice(&next.to_le_bytes());
        }
        PageOp::InsertChild { pos, key, child } => {
            header(out, REC_INTERNAL_INSERT, page);
            out.extend_from_slice(&pos.to_le_bytes());
            out.extend_from_slice(&child.to_le_bytes());
            out.extend_from_slice(key);
        }
    }
    Ok(())
}

/// Encodes a meta record.
pub fn encode_meta(meta: &TreeMeta) -> Vec<u8> {
    let mut out = Vec::with_capacity(REC_HEADER_LEN + META_BODY_LEN);
    append_meta(&mut out, meta);
    out
}

/// [`encode_meta`], appended to `out` (see [`append_image`]).
pub fn append_meta(out: &mut Vec<u8>, meta: &TreeMeta) {
    header(out, REC_META, 0);
    for v in [
        meta.root,
        meta.height,
        meta.free_head,
        meta.free_count,
        meta.page_count,
    ] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&meta.keys.to_le_bytes());
    out.extend_from_slice(&meta.live_bytes.to_le_bytes());
}

/// Decodes a record payload; `Err` carries the reason. The payload passed
/// the WAL's checksum, but its fields are still checked before use.
pub fn decode_record(
    payload: &[u8],
    page_size: usize,
) -> std::result::Result<WalRecord, &'static str> {
    let kind = *payload.first().ok_or("empty B+tree WAL record")?;
    let page = page::get_u32(payload, 1).map_err(|_| "B+tree WAL record too short")?;
    let body = payload.get(REC_HEADER_LEN..).unwrap_or(&[]);
    if kind != REC_META && page < FIRST_DATA_PAGE {
        return Err("WAL record for a meta page");
    }
    match kind {
        REC_PAGE_IMAGE => {
            if body.len() != page_size {
                return Err("page image of the wrong size");
            }
            Ok(WalRecord::Image {
                page,
                bytes: Bytes::copy_from_slice(body),
            })
        }
        REC_PAGE_IMAGE_GAP => {
            let start = page::get_u16(body, 0).map_err(|_| "page image record too short")?;
            let len = page::get_u16(body, 2).map_err(|_| "page image record too short")?;
            let (start, len) = (usize::from(start), usize::from(len));
            let kept = body.get(GAP_HEADER_LEN..).unwrap_or_default();
            if start + len > page_size || kept.len() + len != page_size {
                return Err("page image of the wrong size");
            }
            // In bounds: start + len <= page_size = kept.len() + len.
            let mut bytes = vec![0u8; page_size];
            bytes[..start].copy_from_slice(&kept[..start]);
            bytes[start + len..].copy_from_slice(&kept[start..]);
            Ok(WalRecord::Image {
                page,
                bytes: Bytes::from(bytes),
            })
        }
        REC_LEAF_PUT => {
            let (key, value, len) = page::decode_leaf_cell(body, 0).map_err(|e| e.reason)?;
            if len != body.len() {
                return Err("leaf put record has trailing bytes");
            }
            let op = PageOp::Put {
                key: Bytes::copy_from_slice(key),
                value: value.to_value(),
            };
            Ok(WalRecord::Op { page, op })
        }
        REC_LEAF_DELETE => {
            let key = Bytes::copy_from_slice(body);
            Ok(WalRecord::Op {
                page,
                op: PageOp::Delete { key },
            })
        }
        REC_LEAF_TRUNCATE => {
            let from = Bytes::copy_from_slice(body);
            Ok(WalRecord::Op {
                page,
                op: PageOp::Truncate { from },
            })
        }
        REC_LEAF_LINK => {
            let field = |at| page::get_u32(body, at).map_err(|_| "leaf link record too short");
            if body.len() != 8 {
                return Err("leaf link record of the wrong length");
            }
            let op = PageOp::Link {
                prev: field(0)?,
                next: field(4)?,
            };
            Ok(WalRecord::Op { page, op })
        }
        REC_INTERNAL_INSERT => {
            let pos = page::get_u16(body, 0).map_err(|_| "internal insert record too short")?;
            let child = page::get_u32(body, 2).map_err(|_| "internal insert record too short")?;
            let key = Bytes::copy_from_slice(body.get(6..).unwrap_or_default());
            if key.is_empty() {
                return Err("internal insert record without a key");
            }
            if child < FIRST_DATA_PAGE {
                return Err("internal insert of a meta page");
            }
            Ok(WalRecord::Op {
                page,
                op: PageOp::InsertChild { pos, key, child },
            })
        }
        REC_META => {
            let field = |i: usize| page::get_u32(body, i * 4).map_err(|_| "meta record too short");
            let meta = TreeMeta {
                root: field(0)?,
                height: field(1)?,
                free_head: field(2)?,
                free_count: field(3)?,
                page_count: field(4)?,
                keys: page::get_u64(body, 20).map_err(|_| "meta record too short")?,
                live_bytes: page::get_u64(body, 28).map_err(|_| "meta record too short")?,
            };
            if body.len() != META_BODY_LEN {
                return Err("meta record of the wrong length");
            }
            meta.check()?;
            Ok(WalRecord::Meta(meta))
        }
        _ => Err("unknown B+tree WAL record kind"),
    }
}

/// The segment being written and its writer.
#[derive(Debug)]
pub struct ActiveSegment<F: File> {
    /// Segment number.
    pub segment: u64,
    /// Appends to it.
    pub writer: LogWriter<F>,
}

/// The WAL as the pool and the engine share it. `None` during recovery,
/// when the records replayed come from segments already synced.
#[derive(Debug)]
pub struct WalHandle<F: File> {
    /// The active segment.
    pub active: RwLock<Option<ActiveSegment<F>>>,
}

impl<F: File> WriteAhead for WalHandle<F> {
    fn make_durable(&self, lsn: u64) -> Result<()> {
        let active = self.active.read();
        let Some(active) = active.as_ref() else {
            return Ok(());
        };
        let segment = lsn_segment(lsn);
        if segment < active.segment {
            // Older segments were synced in full before the switch.
            return Ok(());
        }
        if segment > active.segment {
            return Err(Error::corrupted(
                active.writer.file().path(),
                lsn_offset(lsn),
                format!("page LSN {lsn:#x} is ahead of the WAL"),
            ));
        }
        active.writer.sync_to(lsn_offset(lsn))?;
        Ok(())
    }
}

/// What replaying one segment found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayOutcome {
    /// Complete batches replayed.
    pub batches: u64,
    /// Where the valid log ends.
    pub valid_end: u64,
    /// Bytes after that: a torn tail.
    pub torn_bytes: u64,
}

/// Replays every complete batch of one segment into the pool and `meta`.
///
/// Page images are installed unconditionally: the disk page may be torn.
/// A page op is applied only if the page's LSN is below the batch's; the
/// decision is taken once per page and batch, because a batch may carry
/// several ops for one page that all share the batch LSN.
pub fn replay_segment<F: File>(
    file: &F,
    segment: u64,
    pool: &BufferPool<F>,
    meta: &mut TreeMeta,
) -> Result<ReplayOutcome> {
    let page_size = pool.page_size();
    let mut scanner = Scanner::new(file)?;
    let mut outcome = ReplayOutcome::default();
    while let Some(batch) = scanner.next_batch()? {
        let Some(last) = batch.last() else { continue };
        let batch_lsn = lsn(segment, last.offset + last.encoded_len());
        let mut apply: HashMap<PageId, bool> = HashMap::new();
        for record in &batch {
            let corrupt = |reason: &str| {
                Error::corrupted(
                    file.path(),
                    record.offset,
                    format!("B+tree WAL record: {reason}"),
                )
            };
            match decode_record(&record.payload, page_size).map_err(corrupt)? {
                WalRecord::Image { page, bytes } => {
                    let mut bytes = bytes.to_vec();
                    page::set_page_lsn(&mut bytes, batch_lsn);
                    pool.install(page, &bytes)?;
                    apply.insert(page, false);
                }
                WalRecord::Op { page, op } => {
                    let current = pool.fetch(page)?;
                    let redo = *apply
                        .entry(page)
                        .or_insert_with(|| page::page_lsn(&current) < batch_lsn);
                    if !redo {
                        continue;
                    }
                    let mut node = match page::decode(&current) {
                        Ok(Content::Node(node)) => node,
                        Ok(_) => return Err(corrupt("page op for a page that is not a node")),
                        Err(e) => return Err(corrupt(e.reason)),
                    };
                    drop(current);
                    op.apply(&mut node).map_err(corrupt)?;
                    let mut bytes = page::encode(&Content::Node(node), page, page_size)
                        .map_err(|e| corrupt(e.reason))?;
                    page::set_page_lsn(&mut bytes, batch_lsn);
                    pool.install(page, &bytes)?;
                }
                WalRecord::Meta(m) => *meta = m,
            }
        }
        outcome.batches += 1;
    }
    let tail = scanner.tail();
    outcome.valid_end = tail.valid_end;
    outcome.torn_bytes = tail.torn_bytes();
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::page::Leaf;
    use super::*;

    #[test]
    fn split_ops_redo_a_split_and_refuse_the_wrong_page() {
        let entry = |k: &'static [u8]| page::LeafEntry {
            key: Bytes::from_static(k),
            value: Value::Inline(Bytes::from_static(b"v")),
        };
        let mut node = Node::Leaf(Leaf {
            prev: 4,
            next: 8,
            entries: vec![entry(b"a"), entry(b"c"), entry(b"m"), entry(b"x")],
        });
        let ops = [
            PageOp::Truncate {
                from: Bytes::from_static(b"m"),
            },
            PageOp::Put {
                key: Bytes::from_static(b"b"),
                value: Value::Inline(Bytes::from_static(b"v")),
            },
            PageOp::Link { prev: 4, next: 9 },
        ];
        for op in &ops {
            op.apply(&mut node).unwrap();
        }
        let expected = Leaf {
            prev: 4,
            next: 9,
            entries: vec![entry(b"a"), entry(b"b"), entry(b"c")],
        };
        assert_eq!(node, Node::Leaf(expected));
        let insert = PageOp::InsertChild {
            pos: 1,
            key: Bytes::from_static(b"m"),
            child: 9,
        };
        assert!(insert.apply(&mut node).is_err(), "a child insert on a leaf");
        let mut internal = Node::Internal(page::Internal {
            leftmost: 2,
            entries: vec![(Bytes::from_static(b"g"), 3), (Bytes::from_static(b"t"), 5)],
        });
        insert.apply(&mut internal).unwrap();
        let Node::Internal(n) = &internal else {
            unreachable!()
        };
        assert_eq!(n.entries[1], (Bytes::from_static(b"m"), 9));
        assert!(
            ops[0].apply(&mut internal).is_err(),
            "a leaf op on an internal page"
        );
        let past = PageOp::InsertChild {
            pos: 9,
            key: Bytes::from_static(b"z"),
            child: 9,
        };
        assert!(
            past.apply(&mut internal).is_err(),
            "a position past the entries"
        );
    }

    #[test]
    fn records_round_trip_and_layouts_are_pinned() {
        let put = PageOp::Put {
            key: Bytes::from_static(b"k"),
            value: Value::Inline(Bytes::from_static(b"vv")),
        };
        let rec = encode_op(7, &put).unwrap();
        assert_eq!(rec, [2, 7, 0, 0, 0, 1, 0, 0, 2, 0, 0, 0, b'k', b'v', b'v']);
        assert_eq!(
            decode_record(&rec, 512),
            Ok(WalRecord::Op { page: 7, op: put })
        );
        let del = encode_op(
            9,
            &PageOp::Delete {
                key: Bytes::from_static(b"ab"),
            },
        )
        .unwrap();
        assert_eq!(del, [3, 9, 0, 0, 0, b'a', b'b']);
        // The three records a leaf split logs instead of page images.
        let truncate = PageOp::Truncate {
            from: Bytes::from_static(b"m"),
        };
        let rec = encode_op(6, &truncate).unwrap();
        assert_eq!(rec, [6, 6, 0, 0, 0, b'm']);
        assert_eq!(
            decode_record(&rec, 512),
            Ok(WalRecord::Op {
                page: 6,
                op: truncate
            })
        );
        let link = PageOp::Link { prev: 5, next: 9 };
        let rec = encode_op(6, &link).unwrap();
        assert_eq!(rec, [7, 6, 0, 0, 0, 5, 0, 0, 0, 9, 0, 0, 0]);
        assert_eq!(
            decode_record(&rec, 512),
            Ok(WalRecord::Op { page: 6, op: link })
        );
        let insert = PageOp::InsertChild {
            pos: 2,
            key: Bytes::from_static(b"m"),
            child: 9,
        };
        let rec = encode_op(3, &insert).unwrap();
        assert_eq!(rec, [8, 3, 0, 0, 0, 2, 0, 9, 0, 0, 0, b'm']);
        assert_eq!(
            decode_record(&rec, 512),
            Ok(WalRecord::Op {
                page: 3,
                op: insert
            })
        );
        // Damaged bodies are refused, not applied.
        assert!(decode_record(&[7, 6, 0, 0, 0, 5, 0, 0], 512).is_err());
        assert!(decode_record(&[8, 3, 0, 0, 0, 2, 0, 9, 0, 0, 0], 512).is_err());
        assert!(decode_record(&[8, 3, 0, 0, 0, 2, 0, 1, 0, 0, 0, b'm'], 512).is_err());
        let meta = TreeMeta {
            root: 2,
            height: 1,
            free_head: 0,
            free_count: 0,
            page_count: 3,
            keys: 7,
            live_bytes: 99,
        };
        let rec = encode_meta(&meta);
        assert_eq!(rec.len(), REC_HEADER_LEN + META_BODY_LEN);
        assert_eq!(decode_record(&rec, 512), Ok(WalRecord::Meta(meta)));
        // A leaf with one cell: the image leaves out the gap between its
        // slot array and its cell, and replay restores it byte for byte.
        let leaf = Leaf {
            prev: 0,
            next: 0,
            entries: vec![page::LeafEntry {
                key: Bytes::from_static(b"k"),
                value: Value::Inline(Bytes::from_static(b"vv")),
            }],
        };
        let bytes = page::encode(&Content::Node(Node::Leaf(leaf)), 6, 512).unwrap();
        let rec = encode_image(6, &bytes);
        let cell_at = 512 - 10;
        let gap_len = (cell_at - 34) as u16;
        let mut expected = vec![5, 6, 0, 0, 0, 34, 0];
        expected.extend_from_slice(&gap_len.to_le_bytes());
        expected.extend_from_slice(&bytes[..34]);
        expected.extend_from_slice(&[1, 0, 0, 2, 0, 0, 0, b'k', b'v', b'v']);
        assert_eq!(rec, expected);
        assert_eq!(
            decode_record(&rec, 512),
            Ok(WalRecord::Image {
                page: 6,
                bytes: Bytes::from(bytes.clone())
            })
        );
        assert!(decode_record(&rec, 1024).is_err());
        assert!(decode_record(&rec[..rec.len() - 1], 512).is_err());
        // A gap that is not zero is logged whole, so nothing is lost.
        let mut dirty = bytes.clone();
        dirty[100] = 1;
        let rec = encode_image(6, &dirty);
        assert_eq!(rec.len(), REC_HEADER_LEN + 512);
        assert_eq!(rec[0], REC_PAGE_IMAGE);
        assert!(matches!(
            decode_record(&rec, 512),
            Ok(WalRecord::Image { page: 6, bytes }) if bytes == dirty
        ));
        let image = encode_image(5, &[0u8; 512]);
        assert!(matches!(
            decode_record(&image, 512),
            Ok(WalRecord::Image { page: 5, .. })
        ));
        assert!(decode_record(&image, 1024).is_err());
        assert!(decode_record(&[9, 2, 0, 0, 0], 512).is_err());
        assert!(
            decode_record(&[2, 1, 0, 0, 0], 512).is_err(),
            "meta page target"
        );
    }

    #[test]
    fn lsn_packs_segment_and_offset() {
        let l = lsn(3, 12345);
        assert_eq!(lsn_segment(l), 3);
        assert_eq!(lsn_offset(l), 12345);
        assert!(lsn(3, 0) > lsn(2, MAX_SEGMENT_LEN));
    }
}
