//! `check_invariants`: walks the whole tree and checks every structural rule.
//!
//! Tests call it after splits, merges, recovery and crashes. It checks that
//! - every page decodes (checksum, bounds, keys strictly ascending);
//! - every key of a subtree lies between the separators around it;
//! - all leaves sit at the same depth, the tree's height;
//! - only the root may be an empty leaf, and an internal root has a separator;
//! - the leaf sibling links visit the leaves in key order, both ways;
//! - overflow chains are overflow pages whose pieces add up to the length;
//! - the free list holds free pages only, as many as the meta says;
//! - the key and byte counts in the meta match the leaves;
//! - every page below the page count is used exactly once: by the tree, an
//!   overflow chain or the free list. A page in two places, or in none (a
//!   leak), is a violation.

use bytes::Bytes;
use pydb_file::FileOpener;

use super::BTreeStorage;
use super::meta::TreeMeta;
use super::page::{self, Content, FIRST_DATA_PAGE, NO_PAGE, Node, PageId};
use super::pool::BufferPool;
use crate::{Error, Result};

/// What the walk counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TreeShape {
    /// Levels of the tree.
    pub height: u32,
    /// Leaf pages.
    pub leaves: u64,
    /// Internal pages.
    pub internal: u64,
    /// Overflow pages.
    pub overflow: u64,
    /// Free pages.
    pub free: u64,
    /// Keys in the tree.
    pub keys: u64,
    /// Bytes of keys and values.
    pub live_bytes: u64,
    /// Separators in the internal pages.
    pub separators: u64,
    /// Bytes of those separators: a leaf split keeps only as much of the
    /// right half's first key as tells it from the left half's last.
    pub separator_bytes: u64,
}

struct Checker<'a, F: pydb_file::File> {
    pool: &'a BufferPool<F>,
    meta: TreeMeta,
    seen: Vec<bool>,
    /// Leaves in key order with their (prev, next) links.
    leaves: Vec<(PageId, PageId, PageId)>,
    shape: TreeShape,
}

impl<F: pydb_file::File> Checker<'_, F> {
    fn violation(&self, id: PageId, reason: String) -> Error {
        Error::corrupted(
            self.pool.file().path(),
            self.pool.offset_of(id),
            format!("invariant violated at page {id}: {reason}"),
        )
    }

    fn mark(&mut self, id: PageId) -> Result<()> {
        if id < FIRST_DATA_PAGE || id >= self.meta.page_count {
            return Err(self.violation(id, "page number out of range".into()));
        }
        let seen = &mut self.seen[id as usize];
        if *seen {
            return Err(self.violation(id, "page reached twice".into()));
        }
        *seen = true;
        Ok(())
    }

    fn content(&self, id: PageId) -> Result<Content> {
        let page = self.pool.fetch(id)?;
        page::decode(&page).map_err(|e| {
            super::tree::corrupt_at(self.pool.file().path(), self.pool.page_size(), id, e)
        })
    }

    fn walk(
        &mut self,
        id: PageId,
        depth: u32,
        lower: Option<Bytes>,
        upper: Option<Bytes>,
    ) -> Result<()> {
        if depth > self.meta.height {
            return Err(self.violation(id, format!("deeper than the height {}", self.meta.height)));
        }
        self.mark(id)?;
        let in_bounds = |k: &Bytes| {
            lower.as_ref().is_none_or(|l| k >= l) && upper.as_ref().is_none_or(|u| k < u)
        };
        match self.content(id)? {
            Content::Node(Node::Leaf(leaf)) => {
                if depth != self.meta.height {
                    return Err(self.violation(id, format!("leaf at depth {depth}")));
                }
                if leaf.entries.is_empty() && id != self.meta.root {
                    return Err(self.violation(id, "empty leaf that is not the root".into()));
                }
                for e in &leaf.entries {
                    self.shape.live_bytes += (e.key.len()
                        + match &e.value {
                            page::Value::Inline(v) => v.len(),
                            page::Value::Overflow { len, .. } => *len as usize,
                        }) as u64;
                    if !in_bounds(&e.key) {
                        return Err(
                            self.violation(id, format!("key {:?} outside its separators", e.key))
                        );
                    }
                    if let page::Value::Overflow { len, first } = e.value {
                        self.walk_overflow(first, len)?;
                    }
                }
                self.shape.leaves += 1;
                self.shape.keys += leaf.entries.len() as u64;
                self.leaves.push((id, leaf.prev, leaf.next));
            }
            Content::Node(Node::Internal(node)) => {
                if depth == self.meta.height {
                    return Err(self.violation(id, "internal page at the leaf level".into()));
                }
                if node.entries.is_empty() && id == self.meta.root {
                    return Err(self.violation(id, "internal root with a single child".into()));
                }
                for (k, _) in &node.entries {
                    if !in_bounds(k) {
                        return Err(
                            self.violation(id, format!("separator {k:?} outside its parent's"))
                        );
                    }
                }
                self.shape.internal += 1;
                self.shape.separators += node.entries.len() as u64;
                self.shape.separator_bytes += node
                    .entries
                    .iter()
                    .map(|(k, _)| k.len() as u64)
                    .sum::<u64>();
                let mut low = lower.clone();
                let mut child = node.leftmost;
                for (k, next_child) in &node.entries {
                    self.walk(child, depth + 1, low, Some(k.clone()))?;
                    low = Some(k.clone());
                    child = *next_child;
                }
                self.walk(child, depth + 1, low, upper)?;
            }
            _ => return Err(self.violation(id, "tree points to a non-tree page".into())),
        }
        Ok(())
    }

    fn walk_overflow(&mut self, first: PageId, len: u32) -> Result<()> {
        let mut id = first;
        let mut total = 0usize;
        while id != NO_PAGE {
            self.mark(id)?;
            match self.content(id)? {
                Content::Overflow { next, data } => {
                    total += data.len();
                    id = next;
                }
                _ => {
                    return Err(
                        self.violation(id, "overflow chain reaches a non-overflow page".into())
                    );
                }
            }
            self.shape.overflow += 1;
        }
        if total != len as usize {
            return Err(self.violation(
                first,
                format!("overflow chain holds {total} of {len} bytes"),
            ));
        }
        Ok(())
    }
}

impl<O: FileOpener + 'static> BTreeStorage<O>
where
    O::File: 'static,
{
    /// Walks the whole tree and checks its invariants (see [`check`](self)).
    /// Holds the writer lock meanwhile.
    pub fn check_invariants(&self) -> Result<TreeShape> {
        let _writer = self.writer.lock();
        let meta = *self.tree.read();
        let mut checker = Checker {
            pool: &self.pool,
            meta,
            seen: vec![false; meta.page_count as usize],
            leaves: Vec::new(),
            shape: TreeShape {
                height: meta.height,
                ..TreeShape::default()
            },
        };
        checker.walk(meta.root, 1, None, None)?;
        for (i, &(id, prev, next)) in checker.leaves.iter().enumerate() {
            let want_prev = if i == 0 {
                NO_PAGE
            } else {
                checker.leaves[i - 1].0
            };
            let want_next = checker.leaves.get(i + 1).map_or(NO_PAGE, |l| l.0);
            if prev != want_prev || next != want_next {
                return Err(checker.violation(
                    id,
                    format!("sibling links ({prev}, {next}), expected ({want_prev}, {want_next})"),
                ));
            }
        }
        let mut id = meta.free_head;
        while id != NO_PAGE {
            checker.mark(id)?;
            match checker.content(id)? {
                Content::Free { next } => id = next,
                _ => return Err(checker.violation(id, "non-free page on the free list".into())),
            }
            checker.shape.free += 1;
        }
        if checker.shape.free != u64::from(meta.free_count) {
            return Err(checker.violation(
                meta.free_head,
                format!(
                    "free list has {} pages, meta says {}",
                    checker.shape.free, meta.free_count
                ),
            ));
        }
        if (checker.shape.keys, checker.shape.live_bytes) != (meta.keys, meta.live_bytes) {
            return Err(checker.violation(
                meta.root,
                format!(
                    "tree holds {} keys / {} bytes, meta says {} / {}",
                    checker.shape.keys, checker.shape.live_bytes, meta.keys, meta.live_bytes
                ),
            ));
        }
        if let Some(leaked) =
            (FIRST_DATA_PAGE..meta.page_count).find(|&p| !checker.seen[p as usize])
        {
            return Err(checker.violation(leaked, "page used by nothing (leaked)".into()));
        }
        Ok(checker.shape)
    }
}
