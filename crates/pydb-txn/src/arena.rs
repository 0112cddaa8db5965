//! A byte arena: small byte strings copied into shared chunks, each
//! handed out as a `Bytes` share of its chunk.
//!
//! Why: a transaction's write buffer keeps, for every write, a key and a
//! value made for that write alone. As vectors of their own they cost an
//! allocation each when the statement makes them and a free each when
//! the commit drops the buffer (the commit copies every key and value
//! into what it hands the engine): for SQL's INSERT of a row with one
//! index, four allocations and four frees a row, the largest part of
//! what the write buffer cost. Copied into a chunk shared by many
//! writes, each is a copy of its bytes and a reference count taken and
//! later dropped.
//!
//! The invariants:
//! - A share is never written again: the chunk is split off
//!   (`BytesMut::split`) before it is handed out, and the arena writes
//!   only past it.
//! - A chunk is freed when its last share is dropped. Every share lives
//!   as long as what holds it: the write buffer's until the commit drops
//!   it, a reader's copy (a scan of the transaction's own writes, a row
//!   key a statement returns) until the reader drops it. Anything kept
//!   for longer than a transaction (the engine's keys and values, garbage
//!   collection's marks, SSI's read sets) is copied out of the arena,
//!   so that a small key never keeps a whole chunk alive.
//! - A chunk is never grown (a reallocation would copy it): when the
//!   next string does not fit, the chunk is let go and the next one is
//!   twice as large, from [`FIRST_CHUNK`] up to [`MAX_CHUNK`] (or the
//!   string's length, if larger): a bulk load makes a few allocations per
//!   thousand writes.
//! - The first [`OWN_ALLOCATIONS`] strings get an allocation each (a
//!   `Bytes` that owns a vector of their exact length, as without an
//!   arena): a chunk costs two allocations (its bytes, and the shared
//!   reference count made when its first share is split off) and two
//!   frees, more than the few strings of a short transaction (an UPDATE
//!   of one row in autocommit) cost on their own.

use bytes::{Bytes, BytesMut};

/// The first chunk's size, in bytes.
pub(crate) const FIRST_CHUNK: u32 = 1 << 10;

/// The largest chunk made for strings shorter than it (below the
/// allocator's `mmap` threshold).
pub(crate) const MAX_CHUNK: u32 = 64 << 10;

/// Strings an arena copies into allocations of their own before its
/// first chunk.
pub(crate) const OWN_ALLOCATIONS: u32 = 8;

/// Byte strings copied into shared chunks (see the module docs).
#[derive(Debug, Default)]
pub struct ByteArena {
    /// The rest of the current chunk: empty, with the room left.
    chunk: BytesMut,
    /// The size the current chunk was made with (0 before the first).
    size: u32,
    /// Strings copied so far, counted up to [`OWN_ALLOCATIONS`].
    copied: u32,
}

impl ByteArena {
    /// An arena with no chunk yet (it allocates nothing until used).
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of `bytes`, as a share of the current chunk.
    #[inline]
    pub fn copy(&mut self, bytes: &[u8]) -> Bytes {
        self.copy_parts(&[bytes])
    }

    /// A copy of the concatenation of `parts`, as a share of the current
    /// chunk.
    #[inline]
    pub fn copy_parts(&mut self, parts: &[&[u8]]) -> Bytes {
        let len = parts.iter().map(|p| p.len()).sum();
        if self.copied < OWN_ALLOCATIONS {
            self.copied += 1;
            // Sized exactly, so that the `Bytes` owns the vector as it is.
            let mut own = Vec::with_capacity(len);
            for part in parts {
                own.extend_from_slice(part);
            }
            return Bytes::from(own);
        }
        if self.chunk.capacity() < len {
            self.size = (2 * self.size).clamp(FIRST_CHUNK, MAX_CHUNK);
            self.chunk = BytesMut::with_capacity((self.size as usize).max(len));
        }
        for part in parts {
            self.chunk.extend_from_slice(part);
        }
        self.chunk.split().freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_hold_their_bytes_across_chunks() {
        let mut arena = ByteArena::new();
        let mut kept = Vec::new();
        for i in 0..5_000u32 {
            let bytes: Vec<u8> = (0..(i % 97) as u8).map(|b| b ^ i as u8).collect();
            kept.push((arena.copy(&bytes), bytes));
        }
        // A string larger than any chunk gets one of its own.
        let big = vec![7u8; 3 * MAX_CHUNK as usize];
        kept.push((arena.copy(&big), big));
        kept.push((arena.copy(b""), Vec::new()));
        kept.push((arena.copy_parts(&[b"ab", b"", b"c"]), b"abc".to_vec()));
        for (share, bytes) in &kept {
            assert_eq!(&share[..], &bytes[..]);
        }
    }

    #[test]
    fn chunks_double_up_to_the_largest() {
        let mut arena = ByteArena::new();
        for _ in 0..OWN_ALLOCATIONS {
            arena.copy(b"own");
        }
        assert_eq!(arena.size, 0, "no chunk before {OWN_ALLOCATIONS} strings");
        let first = arena.copy(b"a");
        assert_eq!(arena.size, FIRST_CHUNK);
        let mut sizes = vec![arena.size];
        for _ in 0..4 * MAX_CHUNK / 100 {
            arena.copy(&[1u8; 100]);
            if arena.size != *sizes.last().unwrap() {
                sizes.push(arena.size);
            }
        }
        let doubling: Vec<u32> = (0..=6).map(|i| FIRST_CHUNK << i).collect();
        assert_eq!(sizes, doubling);
        assert_eq!(doubling.last(), Some(&MAX_CHUNK));
        assert_eq!(&first[..], b"a");
    }
}
