//! `pydb inspect` for the files of the B+tree engine: the page file page by
//! page, and the redo records inside its WAL segments.
//!
//! The page file has no magic at offset 0 (every page starts with its
//! checksum), so it is recognized by the meta magic `PYDBTREE` at byte 20 of
//! page 0, or by its name `pages` when copy 0 is the damaged one. Its page
//! size comes from the meta copies, read with the engine's own
//! [`read_meta_copies`]; every page is then decoded with the engine's
//! public page decoder ([`page::decode`]), so the tool and the engine can
//! never disagree about a layout.
//!
//! What counts as damage follows what recovery does on the next open:
//! - one invalid meta copy is *not* damage: a checkpoint interrupted while
//!   writing it leaves exactly that, recovery starts from the other copy
//!   (whose WAL is kept), and the next checkpoint rewrites it. It is
//!   reported as a note. Two invalid copies are damage: nothing tells where
//!   the tree starts.
//! - a data page that fails its checks is *not* damage if a WAL segment
//!   replayed on open (from the current checkpoint on) holds a full image
//!   of it: recovery installs the image without reading the page, which is
//!   why images are logged (a torn page write). Otherwise it is damage, at
//!   the page's offset (`page number * page size`).

use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;

use pydb_file::MonolithicFile;
use pydb_storage::btree::meta::{
    CHECKPOINT_LSN_OFFSET, FREE_COUNT_OFFSET, FREE_HEAD_OFFSET, GENERATION_OFFSET, HEIGHT_OFFSET,
    KEYS_OFFSET, LIVE_BYTES_OFFSET, MAGIC_OFFSET, META_LEN, META_MAGIC, PAGE_COUNT_OFFSET,
    PAGE_SIZE_OFFSET, ROOT_OFFSET, VERSION_OFFSET,
};
use pydb_storage::btree::page::{
    self, CELLS_START_OFFSET, CRC_OFFSET, Content, FIRST_DATA_PAGE, HEADER_LEN, Node,
    PAGE_ID_OFFSET, PageId, PageType, SLOT_LEN, TYPE_OFFSET, Value,
};
use pydb_storage::btree::wal::{
    PageOp, REC_HEADER_LEN, WAL_DIR, WalRecord, decode_record as decode_redo, lsn_offset,
    lsn_segment,
};
use pydb_storage::btree::{MetaCopies, PAGE_FILE_NAME, describe_page, read_meta_copies};

use super::{Damage, FileKind, Report, Source, hex_dump, show};
use pydb::EngineKind;
use pydb::meta;
use pydb::{Error, Result};

/// Whether a file whose first bytes are `head` is a B+tree page file: the
/// meta magic sits at byte 20 of copy 0, or (copy 0 damaged) the file is
/// named like the engine names its page file.
pub(super) fn is_page_file(path: &Path, head: &[u8]) -> bool {
    head.get(MAGIC_OFFSET..MAGIC_OFFSET + META_MAGIC.len()) == Some(&META_MAGIC[..])
        || path.file_name().is_some_and(|n| n == PAGE_FILE_NAME)
}

/// What the walk over a page file found, beyond the common [`Report`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageFileReport {
    /// Pages that verified (`records`) and damage.
    pub report: Report,
    /// The page size, if a valid meta copy gave it.
    pub page_size: Option<u32>,
    /// Pages that fail their checks but that recovery rewrites from a full
    /// page image in the WAL (torn page writes): not damage.
    pub restored: Vec<PageId>,
    /// Findings that are not damage (one invalid meta copy).
    pub notes: Vec<String>,
}

/// `lsn` as `pydb inspect` prints it: hex, then its segment and offset.
fn lsn_text(lsn: u64) -> String {
    if lsn == 0 {
        "0 (never logged)".into()
    } else {
        format!(
            "{lsn:#x} (segment {}, offset {})",
            lsn_segment(lsn),
            lsn_offset(lsn)
        )
    }
}

fn type_name(byte: Option<u8>) -> String {
    match byte.and_then(PageType::from_byte) {
        Some(PageType::Meta) => "meta".into(),
        Some(PageType::Leaf) => "leaf".into(),
        Some(PageType::Internal) => "internal".into(),
        Some(PageType::Overflow) => "overflow".into(),
        Some(PageType::Free) => "free".into(),
        None => match byte {
            Some(b) => format!("unknown type {b}"),
            None => "no type byte".into(),
        },
    }
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    page::get_u32(buf, at).unwrap_or_default()
}

fn u64_at(buf: &[u8], at: usize) -> u64 {
    page::get_u64(buf, at).unwrap_or_default()
}

/// `stored` and the verdict against the checksum of `buf`.
fn crc_text(buf: &[u8]) -> (bool, String) {
    let stored = u32_at(buf, CRC_OFFSET);
    let computed = page::compute_checksum(buf);
    if stored == computed {
        (true, format!("{stored:#010x} ok"))
    } else {
        (
            false,
            format!("{stored:#010x} BAD (computed {computed:#010x})"),
        )
    }
}

/// Writes `text` to `sink` and empties it: a page file can be large, so its
/// description is written page by page rather than held whole.
fn flush(sink: &mut dyn Write, text: &mut String) -> Result<()> {
    sink.write_all(text.as_bytes())
        .map_err(|e| Error::io("<stdout>", e))?;
    text.clear();
    Ok(())
}

/// Prints the page file at `path` to `sink`: both meta copies, then every
/// page (or only page `only`), and returns what the walk found.
pub fn inspect_page_file(
    path: &Path,
    only: Option<PageId>,
    sink: &mut dyn Write,
) -> Result<PageFileReport> {
    let mut text = String::new();
    let out = &mut text;
    let file = MonolithicFile::open_read_only(path).map_err(pydb_storage::Error::from)?;
    let mut source = Source::open(path)?;
    let file_len = source.len;
    let mut result = PageFileReport {
        report: Report::new(path, FileKind::BTreePages),
        page_size: None,
        restored: Vec::new(),
        notes: Vec::new(),
    };
    let copies = read_meta_copies(&file)?;
    let Some(current) = copies.current() else {
        let reason = format!(
            "no valid meta page (copy 0: {}; copy 1: {})",
            copies.copy0.as_ref().err().map_or("ok", String::as_str),
            copies.copy1.as_ref().err().map_or("ok", String::as_str)
        );
        let _ = writeln!(out, "B+tree page file, {file_len} bytes");
        hex_dump(0, source.bytes(0, META_LEN)?, out);
        let _ = writeln!(
            out,
            "DAMAGED: {reason}; the page size is unknown, pages not read"
        );
        result.report.damage.push(Damage { offset: 0, reason });
        flush(sink, out)?;
        return Ok(result);
    };
    let page_size = current.page_size;
    result.page_size = Some(page_size);
    let ps = u64::from(page_size);
    let file_pages = file_len.div_ceil(ps);
    let _ = writeln!(
        out,
        "B+tree page file, {file_len} bytes: page size {page_size}, {file_pages} pages"
    );
    for (copy, found) in [(0u32, &copies.copy0), (1, &copies.copy1)] {
        let line = meta_summary(copy, found, &copies);
        let _ = writeln!(out, "{line}");
        if let Err(reason) = found {
            result.notes.push(format!(
                "meta copy {copy} at offset {} is invalid ({reason}); recovery uses copy {} \
                 and the next checkpoint rewrites it",
                u64::from(copy) * ps,
                current.copy
            ));
        }
    }

    // Past the file end, pages up to the meta's page count must still be
    // found: in the WAL, or they are lost.
    let last_page = file_pages.max(u64::from(current.tree.page_count));
    let pages: Vec<u64> = match only {
        Some(id) if u64::from(id) < last_page => vec![u64::from(id)],
        Some(id) => {
            return Err(Error::InvalidArgument(format!(
                "--page {id}: the file has pages 0 to {}",
                last_page.saturating_sub(1)
            )));
        }
        None => (0..last_page).collect(),
    };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let images = pydb_storage::btree::verify::pages_with_wal_images(
        dir,
        lsn_segment(current.checkpoint_lsn),
        page_size as usize,
    );
    for id in pages {
        let offset = id * ps;
        let buf = source.bytes(offset, page_size as usize)?.to_vec();
        let Ok(id) = PageId::try_from(id) else { break };
        if id < FIRST_DATA_PAGE {
            let found = if id == 0 {
                &copies.copy0
            } else {
                &copies.copy1
            };
            show_meta_page(id, offset, &buf, found, &copies, out);
            if found.is_ok() {
                result.report.records += 1;
            }
            continue;
        }
        match show_data_page(id, offset, &buf, page_size as usize, out) {
            None => result.report.records += 1,
            Some(_) if images.contains(&id) => {
                let _ = writeln!(
                    out,
                    "  the WAL holds a full image of page {id}: recovery rewrites it on open \
                     (a torn page write, not damage)"
                );
                result.restored.push(id);
            }
            Some(reason) => {
                let _ = writeln!(out, "DAMAGED: page {id}: {reason}");
                result.report.damage.push(Damage {
                    offset,
                    reason: format!("page {id}: {reason}"),
                });
            }
        }
        flush(sink, out)?;
    }
    let _ = writeln!(
        out,
        "summary: {} pages ok, {} restored from the WAL, {} damaged",
        result.report.records,
        result.restored.len(),
        result.report.damage.len()
    );
    flush(sink, out)?;
    Ok(result)
}

/// One line about one meta copy.
fn meta_summary(
    copy: u32,
    found: &std::result::Result<pydb_storage::btree::MetaPage, String>,
    copies: &MetaCopies,
) -> String {
    match found {
        Ok(m) => format!(
            "meta copy {copy}: ok, generation {}, checkpoint LSN {}{}",
            m.generation,
            lsn_text(m.checkpoint_lsn),
            if copies.current().is_some_and(|c| c.copy == copy) {
                ", current"
            } else {
                ""
            }
        ),
        Err(reason) => format!("meta copy {copy}: INVALID ({reason})"),
    }
}

/// Prints meta page `id` field by field (its raw bytes, so a damaged copy
/// still shows what it holds).
fn show_meta_page(
    id: PageId,
    offset: u64,
    buf: &[u8],
    found: &std::result::Result<pydb_storage::btree::MetaPage, String>,
    copies: &MetaCopies,
    out: &mut String,
) {
    let (_, crc) = crc_text(buf);
    let _ = writeln!(out, "page {id} at offset {offset}: meta copy {id}");
    hex_dump(offset, buf.get(..META_LEN).unwrap_or(buf), out);
    let field = |out: &mut String, at: usize, name: &str, value: String| {
        let _ = writeln!(out, "{at:>6}  {name:<15} {value}");
    };
    field(out, CRC_OFFSET, "crc32", crc);
    field(
        out,
        TYPE_OFFSET,
        "page_type",
        format!(
            "{} ({})",
            buf.get(TYPE_OFFSET).copied().unwrap_or_default(),
            type_name(buf.get(TYPE_OFFSET).copied())
        ),
    );
    field(
        out,
        PAGE_ID_OFFSET,
        "copy",
        u32_at(buf, PAGE_ID_OFFSET).to_string(),
    );
    field(
        out,
        MAGIC_OFFSET,
        "magic",
        pydb_server::tokenize::quote(buf.get(MAGIC_OFFSET..MAGIC_OFFSET + 8).unwrap_or(&[])),
    );
    for (at, name) in [
        (VERSION_OFFSET, "format_version"),
        (PAGE_SIZE_OFFSET, "page_size"),
    ] {
        field(out, at, name, u32_at(buf, at).to_string());
    }
    field(
        out,
        GENERATION_OFFSET,
        "generation",
        u64_at(buf, GENERATION_OFFSET).to_string(),
    );
    for (at, name) in [
        (ROOT_OFFSET, "root"),
        (HEIGHT_OFFSET, "height"),
        (FREE_HEAD_OFFSET, "free_head"),
        (FREE_COUNT_OFFSET, "free_count"),
        (PAGE_COUNT_OFFSET, "page_count"),
    ] {
        field(out, at, name, u32_at(buf, at).to_string());
    }
    field(
        out,
        CHECKPOINT_LSN_OFFSET,
        "checkpoint_lsn",
        lsn_text(u64_at(buf, CHECKPOINT_LSN_OFFSET)),
    );
    for (at, name) in [(KEYS_OFFSET, "keys"), (LIVE_BYTES_OFFSET, "live_bytes")] {
        field(out, at, name, u64_at(buf, at).to_string());
    }
    let verdict = match found {
        Ok(_) if copies.current().is_some_and(|c| c.copy == id) => "ok (current)".to_string(),
        Ok(_) => "ok".to_string(),
        Err(reason) => format!("INVALID ({reason})"),
    };
    let _ = writeln!(out, "  verdict: {verdict}");
}

/// Prints data page `id` (its header as a hex dump, then its cells or
/// links); returns why it fails its checks, if it does.
fn show_data_page(
    id: PageId,
    offset: u64,
    buf: &[u8],
    page_size: usize,
    out: &mut String,
) -> Option<String> {
    if buf.is_empty() {
        let _ = writeln!(
            out,
            "page {id} at offset {offset}: past the end of the file"
        );
        return Some("past the end of the file (the meta page counts it)".into());
    }
    let type_byte = buf.get(TYPE_OFFSET).copied();
    let (crc_ok, crc) = crc_text(buf);
    let _ = writeln!(
        out,
        "page {id} at offset {offset}: {}, crc32 {crc}",
        type_name(type_byte)
    );
    hex_dump(offset, buf.get(..HEADER_LEN).unwrap_or(buf), out);
    if buf.len() < page_size {
        return Some(format!(
            "cut short: {} of {page_size} bytes in the file",
            buf.len()
        ));
    }
    let lsn = lsn_text(page::page_lsn(buf));
    let stored_id = u32_at(buf, PAGE_ID_OFFSET);
    let count = page::get_u16(buf, page::COUNT_OFFSET).unwrap_or_default();
    let cells_start = page::get_u16(buf, CELLS_START_OFFSET).unwrap_or_default();
    let decoded = page::decode(buf);
    match &decoded {
        Ok(Content::Node(Node::Leaf(leaf))) => {
            let _ = writeln!(
                out,
                "  lsn {lsn}, page number {stored_id}, {count} cells from byte {cells_start}, \
                 prev leaf {}, next leaf {}",
                leaf.prev, leaf.next
            );
            for (i, entry) in leaf.entries.iter().enumerate() {
                let value = match &entry.value {
                    Value::Inline(v) => format!("value {}", show(v)),
                    Value::Overflow { len, first } => {
                        format!("value of {len} bytes in the overflow chain from page {first}")
                    }
                };
                let _ = writeln!(
                    out,
                    "  {}: key {}, {value}",
                    slot_text(buf, i),
                    show(&entry.key)
                );
            }
        }
        Ok(Content::Node(Node::Internal(node))) => {
            let _ = writeln!(
                out,
                "  lsn {lsn}, page number {stored_id}, {count} cells from byte {cells_start}, \
                 leftmost child {}",
                node.leftmost
            );
            for (i, (key, child)) in node.entries.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "  {}: key {}, child {child}",
                    slot_text(buf, i),
                    show(key)
                );
            }
        }
        Ok(Content::Overflow { next, data }) => {
            let _ = writeln!(
                out,
                "  lsn {lsn}, page number {stored_id}, {} bytes of data, next page {next}",
                data.len()
            );
            let _ = writeln!(out, "  data {}", show(data));
        }
        Ok(Content::Free { next }) => {
            let _ = writeln!(
                out,
                "  lsn {lsn}, page number {stored_id}, next free page {next}"
            );
        }
        Err(_) => {
            let _ = writeln!(out, "  lsn {lsn}, page number {stored_id}");
        }
    }
    // The checks of the engine's read path (page::verify), then the decode.
    if !crc_ok {
        return Some(format!(
            "page checksum mismatch (stored {:#010x}, computed {:#010x})",
            u32_at(buf, CRC_OFFSET),
            page::compute_checksum(buf)
        ));
    }
    if stored_id != id {
        return Some(format!(
            "holds page number {stored_id} (a page written to the wrong place)"
        ));
    }
    match decoded {
        Ok(_) => None,
        Err(e) => Some(format!("at byte {}: {}", e.offset, e.reason)),
    }
}

/// "slot i (byte b) -> cell at byte c" for slot `i` of a slotted page.
fn slot_text(buf: &[u8], i: usize) -> String {
    let at = HEADER_LEN + i * SLOT_LEN;
    let cell = page::get_u16(buf, at).unwrap_or_default();
    format!("slot {i} (byte {at}) -> cell at byte {cell}")
}

/// How to read the payloads of a B+tree WAL segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RedoContext {
    /// The page size from the page file next to the `wal` directory, if it
    /// can be read; page images are checked against it.
    pub page_size: Option<usize>,
}

/// Whether the record log at `path` is a segment of a B+tree WAL, whose
/// payloads are redo records: named `<10 digits>.log` in a `wal` directory
/// whose parent holds a B+tree page file or a `PYDB` naming the B+tree.
pub(super) fn redo_context(path: &Path) -> Option<RedoContext> {
    let stem = path.file_stem()?.to_str()?;
    let named_as_segment = path.extension().is_some_and(|e| e == "log")
        && stem.len() == 10
        && stem.bytes().all(|b| b.is_ascii_digit());
    let wal_dir = path.parent()?;
    if !named_as_segment || wal_dir.file_name().is_none_or(|n| n != WAL_DIR) {
        return None;
    }
    let dir = match wal_dir.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let pages = dir.join(PAGE_FILE_NAME);
    let page_size = MonolithicFile::open_read_only(&pages)
        .ok()
        .and_then(|f| read_meta_copies(&f).ok())
        .and_then(|c| c.current())
        .map(|m| m.page_size as usize);
    let btree_dir = matches!(meta::read(dir), Ok(Some(m)) if m.engine == EngineKind::BTree);
    (page_size.is_some() || btree_dir).then_some(RedoContext { page_size })
}

/// Prints the redo record in `payload`; returns why it is not one, if so.
pub(super) fn describe_redo(payload: &[u8], ctx: RedoContext, out: &mut String) -> Option<String> {
    // Without the page file (missing, or encrypted), take an image's size
    // from the record itself: a whole image is a page long; an image with
    // its free gap cut out decodes at one page size only.
    let page_size = ctx.page_size.unwrap_or_else(|| {
        let whole = payload.len().saturating_sub(REC_HEADER_LEN);
        std::iter::successors(Some(pydb_storage::btree::page::MIN_PAGE_SIZE), |s| {
            (*s < pydb_storage::btree::page::MAX_PAGE_SIZE).then_some(s * 2)
        })
        .find(|&size| decode_redo(payload, size).is_ok())
        .unwrap_or(whole)
    });
    match decode_redo(payload, page_size) {
        Ok(WalRecord::Image { page, bytes }) => {
            let info = describe_page(&bytes);
            let _ = writeln!(
                out,
                "  redo: full page image of page {page} ({}, cell count {})",
                type_name(bytes.get(TYPE_OFFSET).copied()),
                info.slot_count
            );
            None
        }
        Ok(WalRecord::Op { page, op }) => {
            match op {
                PageOp::Put { key, value } => {
                    let value = match value {
                        Value::Inline(v) => format!("value {}", show(&v)),
                        Value::Overflow { len, first } => {
                            format!("value of {len} bytes in the overflow chain from page {first}")
                        }
                    };
                    let _ = writeln!(
                        out,
                        "  redo: leaf put into page {page}: key {}, {value}",
                        show(&key)
                    );
                }
                PageOp::Delete { key } => {
                    let _ = writeln!(
                        out,
                        "  redo: leaf delete from page {page}: key {}",
                        show(&key)
                    );
                }
                PageOp::Truncate { from } => {
                    let _ = writeln!(
                        out,
                        "  redo: leaf truncate of page {page}: entries from key {} dropped",
                        show(&from)
                    );
                }
                PageOp::Link { prev, next } => {
                    let _ = writeln!(
                        out,
                        "  redo: leaf links of page {page}: prev {prev}, next {next}"
                    );
                }
                PageOp::InsertChild { pos, key, child } => {
                    let _ = writeln!(
                        out,
                        "  redo: internal insert into page {page} at entry {pos}: key {}, child {child}",
                        show(&key)
                    );
                }
            }
            None
        }
        Ok(WalRecord::Meta(m)) => {
            let _ = writeln!(
                out,
                "  redo: tree meta: root {}, height {}, free head {}, free count {}, \
                 page count {}, keys {}, live bytes {}",
                m.root, m.height, m.free_head, m.free_count, m.page_count, m.keys, m.live_bytes
            );
            None
        }
        Err(reason) => {
            let _ = writeln!(out, "  redo: BAD ({reason})");
            Some(format!(
                "record holds no valid B+tree redo record: {reason}"
            ))
        }
    }
}
