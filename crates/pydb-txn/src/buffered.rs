//! The key of a transaction's write buffer: a spaced key with its first
//! [`ABBREV_LEN`] bytes kept beside it as three big-endian integers.
//!
//! Why: the write buffer is a `BTreeMap`, whose nodes are searched
//! linearly, about twenty key comparisons per insert in a buffer of a
//! thousand SQL rows. With `Bytes` keys each comparison was a `memcmp`
//! call behind two pointers, on keys that share their first 10-16 bytes
//! (space, table or index id, the integer's high bytes): about 40
//! instructions, two thirds of the buffer's cost per insert. Compared by
//! their abbreviations, two keys are decided by at most three integer
//! comparisons, inline, without reading the keys' bytes.
//!
//! The invariant that makes it correct (as for `BPlusTreeIndex`'s
//! abbreviated keys in pydb-index, and PostgreSQL's abbreviated sort
//! keys): the abbreviation is the key's first [`ABBREV_LEN`] bytes,
//! zero-padded, read as three big-endian `u64`s (compared one after the
//! other, inline: as a slice they went through a loop, and as a `u128`
//! and a `u64` the key grew to 64 bytes with its alignment), so abbreviation order agrees with key order (if `a < b`
//! then `abbrev(a) <= abbrev(b)`). When two abbreviations are equal and
//! both keys are at most [`ABBREV_LEN`] bytes long, the keys are the same
//! bytes up to some trailing zeros that one of them lacks: the shorter
//! sorts first. Only keys longer than that which tie on their first
//! [`ABBREV_LEN`] bytes compare their bytes. So the order is exactly the
//! bytes' order, and a lookup by plain bytes (through `Borrow<[u8]>`)
//! finds the same entries.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::ops::Deref;

use bytes::Bytes;

use crate::transaction::Write;

/// Bytes of a key kept as its abbreviation: a SQL row's spaced key (19
/// bytes) whole, an index entry's (28) up to the start of its row key.
pub(crate) const ABBREV_LEN: usize = 24;

/// A transaction's buffered writes, by spaced key.
pub(crate) type Writes = BTreeMap<BufferedKey, Write>;

/// A spaced key in the write buffer, ordered as its bytes (see the module
/// docs).
#[derive(Debug, Clone)]
pub(crate) struct BufferedKey {
    /// Bytes 0..8, 8..16 and 16..24 of the key, zero-padded, big-endian.
    abbrev: [u64; 3],
    key: Bytes,
}

impl BufferedKey {
    pub(crate) fn new(key: Bytes) -> Self {
        Self {
            abbrev: abbreviate(&key),
            key,
        }
    }

    /// The spaced key.
    pub(crate) fn bytes(&self) -> &Bytes {
        &self.key
    }
}

/// `key`'s first [`ABBREV_LEN`] bytes, zero-padded, as big-endian
/// integers.
fn abbreviate(key: &[u8]) -> [u64; 3] {
    let mut padded = [0u8; ABBREV_LEN];
    let n = key.len().min(ABBREV_LEN);
    padded[..n].copy_from_slice(&key[..n]);
    let word = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&padded[8 * i..8 * i + 8]);
        u64::from_be_bytes(w)
    };
    [word(0), word(1), word(2)]
}

impl Ord for BufferedKey {
    fn cmp(&self, other: &Self) -> Ordering {
        let (a, b) = (&self.abbrev, &other.abbrev);
        let abbrevs = if a[0] != b[0] {
            a[0].cmp(&b[0])
        } else if a[1] != b[1] {
            a[1].cmp(&b[1])
        } else {
            a[2].cmp(&b[2])
        };
        match abbrevs {
            Ordering::Equal if self.key.len() <= ABBREV_LEN && other.key.len() <= ABBREV_LEN => {
                self.key.len().cmp(&other.key.len())
            }
            Ordering::Equal => self.key[..].cmp(&other.key[..]),
            decided => decided,
        }
    }
}

impl PartialOrd for BufferedKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for BufferedKey {
    fn eq(&self, other: &Self) -> bool {
        self.abbrev == other.abbrev && self.key == other.key
    }
}

impl Eq for BufferedKey {}

impl Deref for BufferedKey {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.key
    }
}

/// Lookups by plain bytes: the order is the bytes' order (module docs).
impl Borrow<[u8]> for BufferedKey {
    fn borrow(&self) -> &[u8] {
        &self.key
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Keys that share long prefixes, have zero bytes at the end, and are
    /// shorter and longer than the abbreviation: where the length rule and
    /// the fallback to the bytes decide.
    fn key() -> impl Strategy<Value = Vec<u8>> {
        (
            0usize..3,
            proptest::collection::vec(prop_oneof![Just(0u8), Just(1u8), any::<u8>()], 0..12),
        )
            .prop_map(|(shared, tail)| {
                let mut k = vec![7u8; [0, 16, 24][shared]];
                k.extend(tail);
                k
            })
    }

    proptest! {
        #[test]
        fn buffered_keys_order_as_their_bytes(a in key(), b in key()) {
            let (ka, kb) = (
                BufferedKey::new(Bytes::from(a.clone())),
                BufferedKey::new(Bytes::from(b.clone())),
            );
            prop_assert_eq!(ka.cmp(&kb), a.cmp(&b));
            prop_assert_eq!(ka == kb, a == b);
        }

        #[test]
        fn a_buffer_finds_keys_by_their_bytes(keys in proptest::collection::vec(key(), 0..40)) {
            let mut map = BTreeMap::new();
            let mut model = BTreeMap::new();
            for (i, k) in keys.iter().enumerate() {
                map.insert(BufferedKey::new(Bytes::from(k.clone())), i);
                model.insert(k.clone(), i);
            }
            let found: Vec<_> = map.iter().map(|(k, v)| (k.to_vec(), *v)).collect();
            let expected: Vec<_> = model.iter().map(|(k, v)| (k.clone(), *v)).collect();
            prop_assert_eq!(found, expected);
            for k in &keys {
                prop_assert_eq!(map.get(&k[..]), model.get(k));
            }
        }
    }

    #[test]
    fn zero_padding_does_not_equate_keys() {
        let short = BufferedKey::new(Bytes::from_static(b"ab"));
        let padded = BufferedKey::new(Bytes::from_static(b"ab\0"));
        assert!(short < padded);
        assert_ne!(short, padded);
        let long = BufferedKey::new(Bytes::from(vec![0u8; 30]));
        let longer = BufferedKey::new(Bytes::from(vec![0u8; 31]));
        assert!(long < longer);
    }
}
