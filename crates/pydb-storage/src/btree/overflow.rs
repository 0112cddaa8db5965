//! Overflow chains: values too large to sit in a leaf.
//!
//! A value whose leaf cell would be larger than a quarter of a page (see
//! [`super::page::max_cell_len`]) is cut into page-sized pieces stored in a
//! chain of overflow pages; the leaf cell keeps the key, the total length
//! and the first page:
//!
//! ```text
//! leaf cell [key | len 10000 | first 31] -> [ovf 31 | 4064 bytes | next 32]
//!                                        -> [ovf 32 | 4064 bytes | next 40]
//!                                        -> [ovf 40 | 1872 bytes | next 0]
//! ```
//!
//! Every overflow page carries the common header, so it is checksummed like
//! any other page. Readers check that the pieces add up to the length in
//! the cell and bound the walk by the page count (see `tree::read_overflow`).
//! Overwriting or deleting the key frees the whole chain.

use bytes::Bytes;
use pydb_file::File;

use super::page::{self, Content, NO_PAGE, PageId};
use super::tree::Txn;
use crate::{Error, Result};

impl<F: File> Txn<'_, F> {
    /// Stores `value` in a new overflow chain; returns its first page.
    pub fn write_overflow(&mut self, value: &[u8]) -> Result<PageId> {
        let cap = page::overflow_capacity(self.pool.page_size());
        let chunks: Vec<&[u8]> = value.chunks(cap).collect();
        let ids = chunks
            .iter()
            .map(|_| self.alloc())
            .collect::<Result<Vec<PageId>>>()?;
        for (i, chunk) in chunks.iter().enumerate() {
            let next = ids.get(i + 1).copied().unwrap_or(NO_PAGE);
            self.write(
                ids[i],
                Content::Overflow {
                    next,
                    data: Bytes::copy_from_slice(chunk),
                },
                None,
            );
        }
        ids.first()
            .copied()
            .ok_or_else(|| Error::corrupted(self.pool.file().path(), 0, "empty overflow value"))
    }

    /// Frees every page of the chain starting at `first`.
    pub fn free_overflow(&mut self, first: PageId) -> Result<()> {
        let mut id = first;
        let mut steps = 0u32;
        while id != NO_PAGE {
            steps += 1;
            if steps > self.meta.page_count {
                return Err(Error::corrupted(
                    self.pool.file().path(),
                    0,
                    "overflow chain has a cycle",
                ));
            }
            let next = match self.content(id)? {
                Content::Overflow { next, .. } => next,
                _ => {
                    return Err(Error::corrupted(
                        self.pool.file().path(),
                        self.pool.offset_of(id),
                        format!("page {id} in an overflow chain is not an overflow page"),
                    ));
                }
            };
            self.free(id)?;
            id = next;
        }
        Ok(())
    }
}
