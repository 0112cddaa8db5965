//! The `SET`s a connection has read but not applied yet: they wait for the
//! event loop's one commit per turn (see `conn.rs`, "Pipelined SETs share
//! one commit, across clients").
//!
//! ```text
//!   bytes:  k1 v1 k2 v2 k3 v3 ...      every key and value, back to back
//!   ends:   (end of k1, end of v1), (end of k2, end of v2), ...
//! ```
//!
//! Why not a [`pydb::WriteBatch`]: a batch holds each key and value as its
//! own `Bytes`, so a `SET` cost a copy of its request and a list of its
//! arguments on the way in, and a clone of each into the turn's batch on
//! the way to the commit, which copies them again into the transaction. A
//! server answering `SET`s one round trip at a time spent more of its own
//! (user-space) time on those allocations than on the commit. Here a
//! `SET` is two `extend_from_slice` into buffers that keep their memory
//! from turn to turn, and the commit reads the keys and values in place
//! ([`PendingSets::write_into`]).
//!
//! Invariants: `ends` is ascending, each pair's key end is at most its
//! value end, and the last value end is `bytes.len()`.

use pydb::Transaction;

/// Above this many bytes, the buffer is given back once its `SET`s are
/// applied (after a pipeline of large values), as the output buffer is.
const KEEP_AT_MOST: usize = 1 << 20;

/// The pending `SET`s of one connection, in request order.
#[derive(Debug, Default)]
pub(crate) struct PendingSets {
    /// Every key and value, back to back.
    bytes: Vec<u8>,
    /// Per `SET`: where its key and its value end in `bytes`.
    ends: Vec<(usize, usize)>,
}

impl PendingSets {
    /// Adds `SET key value` after the others.
    pub(crate) fn push(&mut self, key: &[u8], value: &[u8]) {
        self.bytes.extend_from_slice(key);
        let key_end = self.bytes.len();
        self.bytes.extend_from_slice(value);
        self.ends.push((key_end, self.bytes.len()));
    }

    /// How many `SET`s wait.
    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether none waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The pending keys and values, in request order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let mut start = 0;
        self.ends.iter().map(move |&(key_end, value_end)| {
            let key = self.bytes.get(start..key_end).unwrap_or_default();
            let value = self.bytes.get(key_end..value_end).unwrap_or_default();
            start = value_end;
            (key, value)
        })
    }

    /// Writes every pending `SET` into `tx`, in request order.
    pub(crate) fn write_into(&self, tx: &mut Transaction) -> pydb::txn::Result<()> {
        for (key, value) in self.iter() {
            tx.set(key, value)?;
        }
        Ok(())
    }

    /// Forgets the pending `SET`s (they were applied), keeping the memory
    /// for the next ones unless it grew large.
    pub(crate) fn clear(&mut self) {
        if self.bytes.capacity() > KEEP_AT_MOST {
            *self = Self::default();
        } else {
            self.bytes.clear();
            self.ends.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_come_back_in_order_with_empty_values_and_after_a_clear() {
        let mut pending = PendingSets::default();
        assert!(pending.is_empty());
        pending.push(b"k1", b"v1");
        pending.push(b"k2", b"");
        pending.push(b"key3", b"a longer value");
        assert_eq!(pending.len(), 3);
        let all: Vec<(&[u8], &[u8])> = pending.iter().collect();
        assert_eq!(
            all,
            [
                (&b"k1"[..], &b"v1"[..]),
                (b"k2", b""),
                (b"key3", b"a longer value")
            ]
        );
        pending.clear();
        assert!(pending.is_empty());
        assert_eq!(pending.iter().count(), 0);
        pending.push(b"k", b"v");
        assert_eq!(pending.iter().collect::<Vec<_>>(), [(&b"k"[..], &b"v"[..])]);
    }

    #[test]
    fn a_large_buffer_is_given_back_on_clear() {
        let mut pending = PendingSets::default();
        pending.push(b"k", &vec![7; KEEP_AT_MOST + 1]);
        pending.clear();
        assert_eq!(pending.bytes.capacity(), 0);
        pending.push(b"k", b"v");
        pending.clear();
        assert!(pending.bytes.capacity() > 0);
    }
}
