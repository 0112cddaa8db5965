//! The salvage plan of `pydb repair` for a B+tree page file: which pairs to
//! keep when pages are damaged.
//!
//! The engine refuses to read a page whose checksum fails, so one flipped
//! byte makes every key under it unreadable, and garbage in both meta pages
//! makes the whole file unopenable. Repair accepts that loss explicitly: it
//! keeps every pair of every leaf whose checksum verifies and that still
//! belongs to the tree, and the CLI writes them into a new tree with the
//! engine's own API. This module only reads; [`plan`] decides.
//!
//! ## Rules
//!
//! - **Walk from the root when the structure verifies.** With a valid meta
//!   page, the tree is walked from its root. A leaf reached this way is
//!   live by definition; a damaged leaf loses exactly its own pairs.
//! - **Scan only what the walk cannot reach.** Below a damaged internal
//!   page the walk cannot know which pages were its children, so every
//!   page of the file that the walk did not reach and that is not on the
//!   free list is read, and a leaf that verifies contributes the pairs
//!   whose keys lie between the separators around the damaged page. Without
//!   a valid meta page the whole file is scanned with no bounds.
//! - **Stale leaves must not resurrect deleted keys.** A freed page is
//!   rewritten as a free page, so an old leaf on it is gone; and the bounds
//!   above keep a stray leaf from adding keys outside the damaged range.
//!   When two leaves claim the same key, the one with the higher page LSN
//!   (the WAL position of its last change) wins: it is the newer copy.
//! - **Overflow chains are followed and checked.** Every page of a chain
//!   must verify as an overflow page, the chain is bounded by the page
//!   count, and its pieces must add up to the length in the leaf cell. A
//!   pair whose chain is damaged is skipped and reported, never returned
//!   with a wrong value.
//!
//! Bytes from the file are untrusted throughout: every page is verified
//! (checksum, own page number, type) before it is decoded, and the decoder
//! checks every offset.

use std::collections::{BTreeMap, HashSet};

use bytes::Bytes;
use pydb_file::File;

use super::meta::{MetaPage, read_meta_copies};
use super::page::{
    self, Content, FIRST_DATA_PAGE, MAX_PAGE_SIZE, MIN_PAGE_SIZE, NO_PAGE, Node, PageId, PageType,
    Value,
};
use crate::Result;

/// A page that could not be used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadPage {
    /// The page number.
    pub page: PageId,
    /// Its file offset.
    pub offset: u64,
    /// What check failed.
    pub reason: String,
}

/// A pair whose value could not be read back whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostValue {
    /// The key.
    pub key: Bytes,
    /// The leaf holding it.
    pub leaf: PageId,
    /// What was wrong with its overflow chain.
    pub reason: String,
}

/// What [`plan`] decided to keep.
#[derive(Debug, Clone, Default)]
pub struct SalvagePlan {
    /// The page size of the file (from the meta page, or guessed from the
    /// pages that verify when both meta copies are damaged).
    pub page_size: usize,
    /// Whether a meta copy was valid, so the tree was walked from its root.
    pub walked_from_root: bool,
    /// Pages the file holds.
    pub pages: u64,
    /// Leaves whose pairs were kept.
    pub leaves_kept: u64,
    /// Pages found damaged where the tree (or the scan) needed them.
    pub damaged: Vec<BadPage>,
    /// Pairs dropped because their overflow chain is damaged.
    pub lost_values: Vec<LostValue>,
    /// Pages read by the page-by-page scan (0 when the walk reached all).
    pub scanned: u64,
    /// The pairs to keep, in key order, with the page LSN they came from.
    pub pairs: BTreeMap<Bytes, (u64, Bytes)>,
}

impl SalvagePlan {
    /// Whether nothing was found damaged.
    pub fn is_clean(&self) -> bool {
        self.walked_from_root && self.damaged.is_empty() && self.lost_values.is_empty()
    }
}

/// A key range `[lower, upper)` that a damaged internal page covered.
type Range = (Option<Bytes>, Option<Bytes>);

struct Planner<'a, F: File> {
    file: &'a F,
    page_size: usize,
    page_count: u32,
    plan: SalvagePlan,
    /// Pages the walk reached (tree, overflow) or found on the free list.
    reached: HashSet<PageId>,
    /// Key ranges whose pages must be found by scanning.
    lost_ranges: Vec<Range>,
}

impl<F: File> Planner<'_, F> {
    fn offset(&self, id: PageId) -> u64 {
        u64::from(id) * self.page_size as u64
    }

    /// Reads and verifies page `id`; a damaged page is `Err(reason)`.
    fn read(&self, id: PageId) -> Result<std::result::Result<(Vec<u8>, PageType), String>> {
        if id < FIRST_DATA_PAGE || id >= self.page_count {
            return Ok(Err(format!("page number {id} out of range")));
        }
        let mut buf = vec![0u8; self.page_size];
        match self.file.read_at(self.offset(id), &mut buf) {
            Ok(()) => {}
            // A decorator's damage (an encrypted block that fails its tag)
            // is this page's damage, as a bad checksum is.
            Err(e) if e.is_corruption() => return Ok(Err(e.to_string())),
            Err(e) => return Err(e.into()),
        }
        Ok(match page::verify(&buf, id) {
            Ok(t) => Ok((buf, t)),
            Err(e) => Err(e.reason.to_string()),
        })
    }

    fn damaged(&mut self, id: PageId, reason: String) {
        let offset = self.offset(id);
        self.plan.damaged.push(BadPage {
            page: id,
            offset,
            reason,
        });
    }

    /// Walks the subtree at `id`, whose keys lie in `[lower, upper)`.
    fn walk(
        &mut self,
        id: PageId,
        depth: u32,
        lower: Option<Bytes>,
        upper: Option<Bytes>,
    ) -> Result<()> {
        if depth > super::meta::MAX_BTREE_DEPTH || !self.reached.insert(id) {
            self.damaged(id, "page reached twice or too deep".into());
            return Ok(());
        }
        let (buf, kind) = match self.read(id)? {
            Ok(found) => found,
            Err(reason) => {
                self.damaged(id, reason);
                // Whatever lay under it may be a leaf or an internal page:
                // find its leaves by scanning, bounded by its separators.
                self.lost_ranges.push((lower, upper));
                return Ok(());
            }
        };
        match (kind, page::decode(&buf)) {
            (PageType::Leaf, Ok(Content::Node(Node::Leaf(_)))) => {
                self.take_leaf(id, &buf, &(lower, upper))?;
            }
            (PageType::Internal, Ok(Content::Node(Node::Internal(node)))) => {
                let mut low = lower;
                let mut child = node.leftmost;
                for (k, next_child) in node.entries {
                    self.walk(child, depth + 1, low, Some(k.clone()))?;
                    low = Some(k);
                    child = next_child;
                }
                self.walk(child, depth + 1, low, upper)?;
            }
            (_, Err(e)) => {
                self.damaged(id, e.reason.to_string());
                self.lost_ranges.push((lower, upper));
            }
            _ => {
                self.damaged(
                    id,
                    "the tree points to a page that is not a tree page".into(),
                );
                self.lost_ranges.push((lower, upper));
            }
        }
        Ok(())
    }

    /// Keeps the pairs of the verified leaf in `buf` whose keys lie in
    /// `range`; the higher page LSN wins a key claimed twice.
    fn take_leaf(&mut self, id: PageId, buf: &[u8], range: &Range) -> Result<bool> {
        let Ok(Content::Node(Node::Leaf(leaf))) = page::decode(buf) else {
            return Ok(false);
        };
        let lsn = page::page_lsn(buf);
        let mut took = false;
        for entry in leaf.entries {
            if !in_range(&entry.key, range) {
                continue;
            }
            took = true;
            if self
                .plan
                .pairs
                .get(&entry.key)
                .is_some_and(|(old, _)| *old >= lsn)
            {
                continue;
            }
            let value = match entry.value {
                Value::Inline(v) => v,
                Value::Overflow { len, first } => match self.read_chain(first, len)? {
                    Ok(v) => v,
                    Err(reason) => {
                        self.plan.lost_values.push(LostValue {
                            key: entry.key,
                            leaf: id,
                            reason,
                        });
                        continue;
                    }
                },
            };
            self.plan.pairs.insert(entry.key, (lsn, value));
        }
        if took {
            self.plan.leaves_kept += 1;
        }
        Ok(took)
    }

    /// The value in the overflow chain at `first`, or why it is unreadable.
    fn read_chain(
        &mut self,
        first: PageId,
        len: u32,
    ) -> Result<std::result::Result<Bytes, String>> {
        let mut value = Vec::with_capacity(len as usize);
        let mut id = first;
        let mut steps = 0u32;
        while id != NO_PAGE {
            steps += 1;
            if steps > self.page_count {
                return Ok(Err("the overflow chain has a cycle".into()));
            }
            self.reached.insert(id);
            match self.read(id)? {
                Ok((buf, PageType::Overflow)) => match page::decode(&buf) {
                    Ok(Content::Overflow { next, data }) => {
                        value.extend_from_slice(&data);
                        id = next;
                    }
                    Ok(_) => return Ok(Err(format!("page {id} is not an overflow page"))),
                    Err(e) => return Ok(Err(format!("overflow page {id}: {}", e.reason))),
                },
                Ok(_) => return Ok(Err(format!("page {id} is not an overflow page"))),
                Err(reason) => return Ok(Err(format!("overflow page {id}: {reason}"))),
            }
            if value.len() > len as usize {
                break;
            }
        }
        if value.len() != len as usize {
            return Ok(Err(format!(
                "the overflow chain holds {} of {len} bytes",
                value.len()
            )));
        }
        Ok(Ok(Bytes::from(value)))
    }

    /// Marks the free list as reached, so the scan does not read it. A page
    /// that a verified link names is free whatever it holds now (an old
    /// leaf image on it is stale); the walk stops where a page no longer
    /// verifies as free, since its link cannot be trusted, and at a loop.
    fn mark_free_list(&mut self, head: PageId) -> Result<()> {
        let mut id = head;
        while id != NO_PAGE && id < self.page_count && self.reached.insert(id) {
            match self.read(id)? {
                Ok((buf, PageType::Free)) => match page::decode(&buf) {
                    Ok(Content::Free { next }) => id = next,
                    _ => break,
                },
                _ => break,
            }
        }
        Ok(())
    }

    /// Reads every page not reached and keeps the pairs of the verified
    /// leaves that fall in a lost range.
    fn scan(&mut self) -> Result<()> {
        for id in FIRST_DATA_PAGE..self.page_count {
            if self.reached.contains(&id) {
                continue;
            }
            self.plan.scanned += 1;
            if let Ok((buf, PageType::Leaf)) = self.read(id)? {
                for range in self.lost_ranges.clone() {
                    self.take_leaf(id, &buf, &range)?;
                }
            }
        }
        Ok(())
    }
}

fn in_range(key: &Bytes, (lower, upper): &Range) -> bool {
    lower.as_ref().is_none_or(|l| key >= l) && upper.as_ref().is_none_or(|u| key < u)
}

/// The page size of a file whose meta pages are both damaged: the size at
/// which the most of the first pages verify.
fn guess_page_size<F: File>(file: &F, file_len: u64) -> Result<Option<usize>> {
    let mut best = (0usize, None);
    let mut size = MIN_PAGE_SIZE;
    while size <= MAX_PAGE_SIZE {
        let pages = file_len / size as u64;
        let mut ok = 0usize;
        let mut buf = vec![0u8; size];
        for id in u64::from(FIRST_DATA_PAGE)..pages.min(66) {
            match file.read_at(id * size as u64, &mut buf) {
                Ok(()) => {}
                Err(e) if e.is_corruption() => continue,
                Err(e) => return Err(e.into()),
            }
            let id = PageId::try_from(id).unwrap_or(NO_PAGE);
            if page::verify(&buf, id).is_ok() {
                ok += 1;
            }
        }
        if ok > best.0 {
            best = (ok, Some(size));
        }
        size *= 2;
    }
    Ok(best.1)
}

/// Decides what to keep from the page file `file` (see the module docs).
/// Reads only. Errors are I/O errors; damage is in the plan.
pub fn plan<F: File>(file: &F) -> Result<SalvagePlan> {
    let file_len = file.len()?;
    let meta: Option<MetaPage> = read_meta_copies(file)?.current();
    let page_size = match meta {
        Some(m) => m.page_size as usize,
        None => match guess_page_size(file, file_len)? {
            Some(size) => size,
            None => {
                return Ok(SalvagePlan {
                    page_size: page::DEFAULT_PAGE_SIZE,
                    pages: file_len / page::DEFAULT_PAGE_SIZE as u64,
                    ..SalvagePlan::default()
                });
            }
        },
    };
    let pages_in_file = u32::try_from(file_len / page_size as u64).unwrap_or(u32::MAX);
    let page_count = meta.map_or(pages_in_file, |m| m.tree.page_count.min(pages_in_file));
    let mut planner = Planner {
        file,
        page_size,
        page_count,
        plan: SalvagePlan {
            page_size,
            walked_from_root: meta.is_some(),
            pages: u64::from(pages_in_file),
            ..SalvagePlan::default()
        },
        reached: HashSet::new(),
        lost_ranges: Vec::new(),
    };
    match meta {
        Some(m) => {
            planner.mark_free_list(m.tree.free_head)?;
            planner.walk(m.tree.root, 1, None, None)?;
        }
        None => planner.lost_ranges.push((None, None)),
    }
    if !planner.lost_ranges.is_empty() {
        planner.scan()?;
    }
    Ok(planner.plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StorageEngine;
    use crate::btree::{BTreeOptions, BTreeStorage, PAGE_FILE_NAME};
    use pydb_file::MonolithicFile;

    fn options() -> BTreeOptions {
        BTreeOptions {
            page_size: 512,
            ..BTreeOptions::default()
        }
    }

    fn build(dir: &std::path::Path, n: u32) {
        let db = BTreeStorage::open(dir, options()).unwrap();
        for i in 0..n {
            db.set(format!("k{i:05}").as_bytes(), format!("v{i}").as_bytes())
                .unwrap();
        }
        db.set(b"big", &vec![7u8; 3000]).unwrap();
        db.checkpoint().unwrap();
    }

    fn plan_of(dir: &std::path::Path) -> SalvagePlan {
        let file = MonolithicFile::open_read_only(dir.join(PAGE_FILE_NAME)).unwrap();
        plan(&file).unwrap()
    }

    fn corrupt(dir: &std::path::Path, offset: u64) {
        let path = dir.join(PAGE_FILE_NAME);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[offset as usize] ^= 0x40;
        std::fs::write(&path, bytes).unwrap();
    }

    #[test]
    fn a_clean_file_is_kept_whole() {
        let dir = tempfile::tempdir().unwrap();
        build(dir.path(), 500);
        let plan = plan_of(dir.path());
        assert!(plan.is_clean(), "{plan:?}");
        assert_eq!(plan.pairs.len(), 501);
        assert_eq!(plan.scanned, 0);
        assert_eq!(plan.pairs[&Bytes::from_static(b"big")].1, vec![7u8; 3000]);
    }

    #[test]
    fn both_meta_pages_damaged_are_rebuilt_from_a_scan() {
        let dir = tempfile::tempdir().unwrap();
        build(dir.path(), 500);
        corrupt(dir.path(), 30);
        corrupt(dir.path(), 512 + 30);
        let plan = plan_of(dir.path());
        assert!(!plan.walked_from_root);
        assert_eq!(plan.page_size, 512);
        assert_eq!(plan.pairs.len(), 501, "every leaf verifies");
    }

    #[test]
    fn a_damaged_overflow_chain_loses_its_pair_only() {
        let dir = tempfile::tempdir().unwrap();
        build(dir.path(), 50);
        let file = MonolithicFile::open_read_only(dir.path().join(PAGE_FILE_NAME)).unwrap();
        let count = file.len().unwrap() / 512;
        let overflow = (2..count)
            .find(|&id| {
                let buf = crate::btree::read_raw_page(&file, 512, id as PageId).unwrap();
                matches!(page::verify(&buf, id as PageId), Ok(PageType::Overflow))
            })
            .unwrap();
        drop(file);
        corrupt(dir.path(), overflow * 512 + 100);
        let plan = plan_of(dir.path());
        assert_eq!(plan.lost_values.len(), 1, "{plan:?}");
        assert_eq!(plan.lost_values[0].key, Bytes::from_static(b"big"));
        assert_eq!(plan.pairs.len(), 50);
    }
}
