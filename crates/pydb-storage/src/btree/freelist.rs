//! The free list: pages given back by merges and deletes, reused before the
//! file grows.
//!
//! Free pages form a singly linked list through their right link, with the
//! head and the length in the tree meta:
//!
//! ```text
//! meta.free_head -> [free 9 | next 4] -> [free 4 | next 12] -> [free 12 | next 0]
//! ```
//!
//! Allocation pops the head; freeing pushes a page on the head. Both are
//! ordinary page changes inside a write transaction, logged as full images
//! of the free page plus a meta record, so the list is as crash-safe as the
//! tree. Every walk of the list is bounded by the page count, so a damaged
//! link that forms a cycle is an error, not a hang.

use pydb_file::File;

use super::page::{Content, NO_PAGE, PageId};
use super::tree::{Txn, check_page_id};
use crate::{Error, Result};

impl<F: File> Txn<'_, F> {
    /// A page for new content: the head of the free list, or a new page at
    /// the end of the file. The caller writes the page before reading it.
    pub fn alloc(&mut self) -> Result<PageId> {
        self.meta_changed = true;
        let head = self.meta.free_head;
        if head == NO_PAGE {
            let id = self.meta.page_count;
            self.meta.page_count = id.checked_add(1).ok_or_else(|| {
                Error::corrupted(self.pool.file().path(), 0, "page file has 2^32 pages")
            })?;
            return Ok(id);
        }
        let next = match self.content(head)? {
            Content::Free { next } => next,
            _ => {
                return Err(Error::corrupted(
                    self.pool.file().path(),
                    self.pool.offset_of(head),
                    format!("page {head} is on the free list but is not free"),
                ));
            }
        };
        if next != NO_PAGE {
            check_page_id(self.pool.file().path(), &self.meta, next)?;
        }
        self.meta.free_head = next;
        self.meta.free_count = self.meta.free_count.checked_sub(1).ok_or_else(|| {
            Error::corrupted(
                self.pool.file().path(),
                0,
                "free list longer than its count",
            )
        })?;
        Ok(head)
    }

    /// Puts page `id` on the free list.
    pub fn free(&mut self, id: PageId) -> Result<()> {
        let next = self.meta.free_head;
        self.write(id, Content::Free { next }, None);
        self.meta.free_head = id;
        self.meta.free_count += 1;
        self.meta_changed = true;
        Ok(())
    }
}
