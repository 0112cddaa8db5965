//! The meta page: where the tree starts, written in two alternating copies.
//!
//! Pages 0 and 1 both hold a meta page. A checkpoint writes the next
//! generation into the copy that does *not* hold the current one, so a torn
//! write can only damage the copy being written: the other still holds the
//! previous checkpoint, whose WAL has not been deleted yet (segments are
//! removed only after the new meta page is durable). On open, the valid copy
//! (magic, page size and checksum check out) with the higher generation wins.
//!
//! ```text
//!  0  u32      CRC-32 of bytes 4..page_size
//!  4  u8       page type (1 = meta)
//!  5  [u8; 11] zero (the LSN and cell count of other pages are unused)
//! 16  u32      page number (0 or 1)
//! 20  [u8; 8]  magic "PYDBTREE"
//! 28  u32      format version (1)
//! 32  u32      page size in bytes
//! 36  u32      zero
//! 40  u64      generation (incremented by every checkpoint)
//! 48  u32      root page
//! 52  u32      tree height (1 = the root is a leaf)
//! 56  u32      free list head (0 = empty)
//! 60  u32      free page count
//! 64  u32      page count (pages 0..count exist)
//! 68  u32      zero
//! 72  u64      checkpoint LSN: recovery replays the WAL from here
//! 80  u64      live keys
//! 88  u64      live bytes (keys + values)
//! 96  ...      zero up to page_size
//! ```
//!
//! The page size lives in the meta page itself, so it is read first from
//! the header of copy 0. If copy 0 is damaged, copy 1 is looked for at every
//! page size pydb accepts (there are seven).

use std::path::Path;

use pydb_file::File;

use super::page::{self, FIRST_DATA_PAGE, MAX_PAGE_SIZE, MIN_PAGE_SIZE, PageId, PageType};
use crate::{Error, Result};

/// The magic bytes of a meta page.
pub const META_MAGIC: [u8; 8] = *b"PYDBTREE";
/// The page file format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Offset of the magic.
pub const MAGIC_OFFSET: usize = 20;
/// Offset of the format version.
pub const VERSION_OFFSET: usize = 28;
/// Offset of the page size.
pub const PAGE_SIZE_OFFSET: usize = 32;
/// Offset of the generation.
pub const GENERATION_OFFSET: usize = 40;
/// Offset of the root page number.
pub const ROOT_OFFSET: usize = 48;
/// Offset of the tree height.
pub const HEIGHT_OFFSET: usize = 52;
/// Offset of the free list head.
pub const FREE_HEAD_OFFSET: usize = 56;
/// Offset of the free page count.
pub const FREE_COUNT_OFFSET: usize = 60;
/// Offset of the page count.
pub const PAGE_COUNT_OFFSET: usize = 64;
/// Offset of the checkpoint LSN.
pub const CHECKPOINT_LSN_OFFSET: usize = 72;
/// Offset of the live key count.
pub const KEYS_OFFSET: usize = 80;
/// Offset of the live byte count.
pub const LIVE_BYTES_OFFSET: usize = 88;
/// Bytes of a meta page that carry information.
pub const META_LEN: usize = 96;

/// The deepest tree pydb accepts. A tree of 4 KiB pages with the smallest
/// fan-out (4) holding 2^32 pages is 16 levels deep; anything deeper is a
/// corrupted meta page or a cycle of pages, and is refused before any
/// recursion or loop trusts it.
pub const MAX_BTREE_DEPTH: u32 = 32;

/// The shape of the tree: what a meta page and a WAL meta record hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeMeta {
    /// The root page.
    pub root: PageId,
    /// Levels of the tree; 1 when the root is a leaf.
    pub height: u32,
    /// First page of the free list, or 0.
    pub free_head: PageId,
    /// Pages on the free list.
    pub free_count: u32,
    /// Pages in the file (allocated pages are below this number).
    pub page_count: u32,
    /// Keys in the tree.
    pub keys: u64,
    /// Bytes of keys and values in the tree.
    pub live_bytes: u64,
}

impl TreeMeta {
    /// Checks the fields against each other; `Err` carries the reason.
    pub fn check(&self) -> std::result::Result<(), &'static str> {
        if self.page_count < FIRST_DATA_PAGE + 1 {
            return Err("page count too small");
        }
        if self.root < FIRST_DATA_PAGE || self.root >= self.page_count {
            return Err("root page out of range");
        }
        if self.height == 0 || self.height > MAX_BTREE_DEPTH {
            return Err("tree height out of range");
        }
        if self.free_head != 0
            && (self.free_head < FIRST_DATA_PAGE || self.free_head >= self.page_count)
        {
            return Err("free list head out of range");
        }
        if self.free_count >= self.page_count {
            return Err("free page count out of range");
        }
        Ok(())
    }
}

/// One decoded meta page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetaPage {
    /// Which copy (0 or 1).
    pub copy: u32,
    /// The page size of the file.
    pub page_size: u32,
    /// Format version.
    pub version: u32,
    /// Incremented by every checkpoint; the higher valid copy wins.
    pub generation: u64,
    /// The tree.
    pub tree: TreeMeta,
    /// Recovery replays the WAL from this LSN.
    pub checkpoint_lsn: u64,
}

impl MetaPage {
    /// Encodes the meta page as copy `self.copy`.
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = vec![0u8; self.page_size as usize];
        let fields: [(usize, &[u8]); 15] = [
            (page::TYPE_OFFSET, &[PageType::Meta as u8]),
            (page::PAGE_ID_OFFSET, &self.copy.to_le_bytes()),
            (MAGIC_OFFSET, &META_MAGIC),
            (VERSION_OFFSET, &self.version.to_le_bytes()),
            (PAGE_SIZE_OFFSET, &self.page_size.to_le_bytes()),
            (GENERATION_OFFSET, &self.generation.to_le_bytes()),
            (ROOT_OFFSET, &self.tree.root.to_le_bytes()),
            (HEIGHT_OFFSET, &self.tree.height.to_le_bytes()),
            (FREE_HEAD_OFFSET, &self.tree.free_head.to_le_bytes()),
            (FREE_COUNT_OFFSET, &self.tree.free_count.to_le_bytes()),
            (PAGE_COUNT_OFFSET, &self.tree.page_count.to_le_bytes()),
            (CHECKPOINT_LSN_OFFSET, &self.checkpoint_lsn.to_le_bytes()),
            (36, &0u32.to_le_bytes()),
            (KEYS_OFFSET, &self.tree.keys.to_le_bytes()),
            (LIVE_BYTES_OFFSET, &self.tree.live_bytes.to_le_bytes()),
        ];
        for (at, bytes) in fields {
            if let Some(dst) = buf.get_mut(at..at + bytes.len()) {
                dst.copy_from_slice(bytes);
            }
        }
        page::seal(&mut buf);
        buf
    }

    /// Decodes and checks a meta page; `Err` carries the reason.
    pub fn decode(buf: &[u8]) -> std::result::Result<Self, &'static str> {
        let field = |r: std::result::Result<u32, page::PageError>| r.map_err(|e| e.reason);
        if buf.get(MAGIC_OFFSET..MAGIC_OFFSET + 8) != Some(&META_MAGIC[..]) {
            return Err("not a pydb B+tree meta page (bad magic)");
        }
        let page_size = field(page::get_u32(buf, PAGE_SIZE_OFFSET))?;
        if !page::valid_page_size(page_size as usize) || buf.len() != page_size as usize {
            return Err("meta page size mismatch");
        }
        if !page::checksum_ok(buf) {
            return Err("meta page checksum mismatch");
        }
        if buf.get(page::TYPE_OFFSET) != Some(&(PageType::Meta as u8)) {
            return Err("meta page has the wrong type");
        }
        let version = field(page::get_u32(buf, VERSION_OFFSET))?;
        if version != FORMAT_VERSION {
            return Err("unsupported page file format version");
        }
        let tree = TreeMeta {
            root: field(page::get_u32(buf, ROOT_OFFSET))?,
            height: field(page::get_u32(buf, HEIGHT_OFFSET))?,
            free_head: field(page::get_u32(buf, FREE_HEAD_OFFSET))?,
            free_count: field(page::get_u32(buf, FREE_COUNT_OFFSET))?,
            page_count: field(page::get_u32(buf, PAGE_COUNT_OFFSET))?,
            keys: page::get_u64(buf, KEYS_OFFSET).map_err(|e| e.reason)?,
            live_bytes: page::get_u64(buf, LIVE_BYTES_OFFSET).map_err(|e| e.reason)?,
        };
        tree.check()?;
        Ok(Self {
            copy: field(page::get_u32(buf, page::PAGE_ID_OFFSET))?,
            page_size,
            version,
            generation: page::get_u64(buf, GENERATION_OFFSET).map_err(|e| e.reason)?,
            tree,
            checkpoint_lsn: page::get_u64(buf, CHECKPOINT_LSN_OFFSET).map_err(|e| e.reason)?,
        })
    }
}

/// Both meta copies as found in a page file, for `pydb inspect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaCopies {
    /// Copy 0, or why it is unusable.
    pub copy0: std::result::Result<MetaPage, String>,
    /// Copy 1, or why it is unusable.
    pub copy1: std::result::Result<MetaPage, String>,
}

impl MetaCopies {
    /// The copy recovery uses: the valid one with the higher generation.
    pub fn current(&self) -> Option<MetaPage> {
        match (&self.copy0, &self.copy1) {
            (Ok(a), Ok(b)) => Some(if b.generation > a.generation { *b } else { *a }),
            (Ok(a), Err(_)) => Some(*a),
            (Err(_), Ok(b)) => Some(*b),
            (Err(_), Err(_)) => None,
        }
    }
}

fn read_meta_at<F: File>(
    file: &F,
    copy: u64,
    page_size: usize,
) -> std::result::Result<MetaPage, String> {
    let mut buf = vec![0u8; page_size];
    file.read_at(copy * page_size as u64, &mut buf)
        .map_err(|e| e.to_string())?;
    let meta = MetaPage::decode(&buf).map_err(str::to_string)?;
    if meta.copy as u64 != copy {
        return Err("meta page holds the other copy's number".into());
    }
    Ok(meta)
}

/// Reads both meta copies of a page file (`pydb inspect` and open use this).
pub fn read_meta_copies<F: File>(file: &F) -> Result<MetaCopies> {
    let mut head = [0u8; META_LEN];
    let copy0 = match file.read_at(0, &mut head) {
        Ok(()) => match page::get_u32(&head, PAGE_SIZE_OFFSET) {
            Ok(size) if page::valid_page_size(size as usize) => {
                read_meta_at(file, 0, size as usize)
            }
            _ => Err("meta page 0 has an invalid page size".to_string()),
        },
        Err(e) => Err(e.to_string()),
    };
    let copy1 = match &copy0 {
        Ok(m) => read_meta_at(file, 1, m.page_size as usize),
        Err(_) => {
            // Copy 0 cannot tell the page size: try every size pydb accepts.
            let mut found = Err("no valid meta page 1 at any page size".to_string());
            let mut size = MIN_PAGE_SIZE;
            while size <= MAX_PAGE_SIZE {
                if let Ok(m) = read_meta_at(file, 1, size) {
                    found = Ok(m);
                    break;
                }
                size *= 2;
            }
            found
        }
    };
    Ok(MetaCopies { copy0, copy1 })
}

/// The current meta page of a page file, or `Corrupted` if neither copy is
/// valid.
pub fn read_current<F: File>(file: &F, path: &Path) -> Result<MetaPage> {
    let copies = read_meta_copies(file)?;
    copies.current().ok_or_else(|| {
        Error::corrupted(
            path,
            0,
            format!(
                "no valid meta page (copy 0: {}; copy 1: {})",
                copies.copy0.err().unwrap_or_default(),
                copies.copy1.err().unwrap_or_default()
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(copy: u32, generation: u64) -> MetaPage {
        MetaPage {
            copy,
            page_size: 512,
            version: FORMAT_VERSION,
            generation,
            tree: TreeMeta {
                root: 2,
                height: 1,
                free_head: 0,
                free_count: 0,
                page_count: 3,
                keys: 0,
                live_bytes: 0,
            },
            checkpoint_lsn: 1 << 40,
        }
    }

    #[test]
    fn meta_round_trips_and_offsets_are_pinned() {
        let meta = sample(1, 7);
        let buf = meta.encode();
        assert_eq!(MetaPage::decode(&buf), Ok(meta));
        assert_eq!(&buf[MAGIC_OFFSET..MAGIC_OFFSET + 8], b"PYDBTREE");
        assert_eq!(
            &buf[PAGE_SIZE_OFFSET..PAGE_SIZE_OFFSET + 4],
            &512u32.to_le_bytes()
        );
        assert_eq!(buf[GENERATION_OFFSET], 7);
        assert_eq!(buf[ROOT_OFFSET], 2);
        assert_eq!(
            &buf[CHECKPOINT_LSN_OFFSET..CHECKPOINT_LSN_OFFSET + 8],
            &(1u64 << 40).to_le_bytes()
        );
    }

    #[test]
    fn higher_valid_generation_wins_and_damage_falls_back() {
        let dir = tempfile::tempdir().unwrap();
        let file = pydb_file::MonolithicFile::create(dir.path().join("p")).unwrap();
        file.write_at(0, &sample(0, 4).encode()).unwrap();
        file.write_at(512, &sample(1, 5).encode()).unwrap();
        assert_eq!(read_current(&file, dir.path()).unwrap().generation, 5);
        // Tear copy 1: copy 0 takes over.
        file.write_at(512 + 40, &[0xff; 8]).unwrap();
        assert_eq!(read_current(&file, dir.path()).unwrap().generation, 4);
        // Damage copy 0 too: nothing valid is left.
        file.write_at(60, &[0xff]).unwrap();
        assert!(read_current(&file, dir.path()).unwrap_err().is_corruption());
        // Copy 1 alone is found even though copy 0 cannot tell the page size.
        file.write_at(512, &sample(1, 6).encode()).unwrap();
        file.write_at(PAGE_SIZE_OFFSET as u64, &[0xff; 4]).unwrap();
        assert_eq!(read_current(&file, dir.path()).unwrap().generation, 6);
    }
}
