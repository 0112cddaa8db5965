//! Where SQL data lives among the keys of the transaction layer.
//!
//! Every SQL key starts with a one-byte *section*, so that each kind of
//! data is one contiguous engine range:
//!
//! ```text
//! 0x00 | 0x01                          -> next id (u64 LE): tables and indexes
//! 0x00 | 0x02                          -> catalog version (u64 LE), bumped by DDL
//! 0x01 | 0x01 | table name             -> table record   (see catalog)
//! 0x01 | 0x02 | view name              -> view record
//! 0x01 | 0x03 | table name             -> statistics record (ANALYZE)
//! 0x02 | table id (8, BE) | row key    -> row            (encoding::encode_row)
//! 0x03 | index id (8, BE) | index key  -> row key
//! ```
//!
//! A *row key* is the key encoding of the primary key values, or of the
//! hidden row id (an INTEGER) when the table has no primary key. The big-
//! endian id keeps one table's rows together and in key order.
//!
//! An *index key* is the key encoding of the indexed columns, followed by
//! the row key, so that rows with equal values still have distinct entries
//! and an index range over a prefix of the columns is one engine range.
//! A UNIQUE index leaves the row key out when no indexed value is NULL:
//! two rows with the same values then write the *same* engine key, so that
//! two concurrent transactions inserting the same value collide in the
//! transaction layer's write-write check instead of both committing. (Rows
//! with a NULL never collide, as in SQL, so they keep the row key.) The
//! entry's value is always the row key, so readers need not know which
//! form an entry has.
//!
//! Ids come from one counter and are never reused, so a new table of a
//! dropped table's name never sees its rows, and a dropped table's keys
//! can be removed in the same transaction without a race.

use std::ops::Bound;

use crate::encoding::{encode_key, encode_key_value, prefix_successor};
use crate::value::Value;

/// Section of counters and versions.
pub(crate) const META: u8 = 0x00;
/// Section of catalog records.
pub(crate) const CATALOG: u8 = 0x01;
/// Section of table rows.
pub(crate) const ROWS: u8 = 0x02;
/// Section of index entries.
pub(crate) const INDEXES: u8 = 0x03;

/// `META` key of the next table or index id.
pub(crate) const NEXT_ID: [u8; 2] = [META, 0x01];
/// `META` key of the catalog version.
pub(crate) const CATALOG_VERSION: [u8; 2] = [META, 0x02];

/// `CATALOG` sub-section of tables.
pub(crate) const CATALOG_TABLE: u8 = 0x01;
/// `CATALOG` sub-section of views.
pub(crate) const CATALOG_VIEW: u8 = 0x02;
/// `CATALOG` sub-section of table statistics (written by ANALYZE).
pub(crate) const CATALOG_STATS: u8 = 0x03;

/// The key of a catalog record of `kind` (`CATALOG_TABLE`, `CATALOG_VIEW`,
/// `CATALOG_STATS`).
pub(crate) fn catalog_key(kind: u8, name: &str) -> Vec<u8> {
    let mut key = vec![CATALOG, kind];
    key.extend_from_slice(name.as_bytes());
    key
}

/// The prefix of every row of table `id` (or entry of index `id`).
pub(crate) fn object_prefix(section: u8, id: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(9);
    key.push(section);
    key.extend_from_slice(&id.to_be_bytes());
    key
}

/// The engine key of a row: [`row_prefix`], then the row key.
pub(crate) fn row_key(table_id: u64, row_key: &[u8]) -> Vec<u8> {
    let prefix = row_prefix(table_id);
    let mut key = Vec::with_capacity(prefix.len() + row_key.len());
    key.extend_from_slice(&prefix);
    key.extend_from_slice(row_key);
    key
}

/// What the engine key of every row of table `table_id` starts with:
/// `ROWS | be64(id)`. On the stack, for a caller that holds a row's
/// engine key as this prefix and the row key (an INSERT, whose index
/// entries name their row as their owner that way).
pub(crate) fn row_prefix(table_id: u64) -> [u8; 9] {
    let mut prefix = [ROWS; 9];
    prefix[1..].copy_from_slice(&table_id.to_be_bytes());
    prefix
}

/// [`row_key`] of the primary key values `pk`, encoded straight into
/// `key` (its old contents dropped): a point read needs no vector of the
/// values, and its caller keeps `key` between reads, so that it allocates
/// nothing for the key.
pub(crate) fn row_key_into<'v>(
    table_id: u64,
    pk: impl IntoIterator<Item = &'v Value>,
    key: &mut Vec<u8>,
) {
    key.clear();
    key.push(ROWS);
    key.extend_from_slice(&table_id.to_be_bytes());
    for value in pk {
        encode_key_value(value, key);
    }
}

/// The engine key of an index entry.
pub(crate) fn index_key(index_id: u64, unique: bool, values: &[Value], row_key: &[u8]) -> Vec<u8> {
    index_key_of(index_id, unique, values.iter(), row_key)
}

/// [`index_key`] of the values `values` yields, encoded straight into the
/// key (an insert builds its entries from the row's values, uncopied).
pub(crate) fn index_key_of<'v>(
    index_id: u64,
    unique: bool,
    values: impl Iterator<Item = &'v Value>,
    row_key: &[u8],
) -> Vec<u8> {
    let mut key = Vec::with_capacity(INDEX_KEY_ROOM + row_key.len());
    index_key_into(index_id, unique, values, row_key, &mut key);
    key
}

/// Bytes an index key is given room for besides its row key: the section,
/// the index id and a few values.
const INDEX_KEY_ROOM: usize = 32;

/// [`index_key_of`] appended to `key` (an INSERT builds its entries in
/// one buffer kept from row to row: `pydb_txn::SpacedKey`).
pub(crate) fn index_key_into<'v>(
    index_id: u64,
    unique: bool,
    values: impl Iterator<Item = &'v Value>,
    row_key: &[u8],
    key: &mut Vec<u8>,
) {
    key.push(INDEXES);
    key.extend_from_slice(&index_id.to_be_bytes());
    let mut has_null = false;
    for value in values {
        has_null |= value.is_null();
        encode_key_value(value, key);
    }
    if !unique || has_null {
        key.extend_from_slice(row_key);
    }
}

/// The range of keys that start with `prefix`.
pub(crate) fn prefix_range(prefix: Vec<u8>) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let end = match prefix_successor(&prefix) {
        Some(end) => Bound::Excluded(end),
        None => Bound::Unbounded,
    };
    (Bound::Included(prefix), end)
}

/// The engine range of index `index_id`'s entries whose leading columns
/// fall between `start` and `end`.
pub(crate) fn index_range(
    index_id: u64,
    start: &Bound<Vec<Value>>,
    end: &Bound<Vec<Value>>,
) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let base = object_prefix(INDEXES, index_id);
    let with = |values: &[Value]| {
        let mut key = base.clone();
        key.extend_from_slice(&encode_key(values));
        key
    };
    let after = |key: Vec<u8>| match prefix_successor(&key) {
        Some(next) => Bound::Excluded(next),
        None => Bound::Unbounded,
    };
    // Every entry whose leading values equal `v` starts with `with(v)`
    // (no encoded value is a prefix of another), so "after every such
    // entry" is the prefix's successor.
    let lower = match start {
        Bound::Included(v) => Bound::Included(with(v)),
        Bound::Excluded(v) => {
            let key = with(v);
            match prefix_successor(&key) {
                Some(next) => Bound::Included(next),
                // Unreachable: the key starts with the section byte 0x03.
                None => Bound::Excluded(key),
            }
        }
        Bound::Unbounded => Bound::Included(base.clone()),
    };
    let upper = match end {
        Bound::Included(v) => after(with(v)),
        Bound::Excluded(v) => Bound::Excluded(with(v)),
        Bound::Unbounded => after(base.clone()),
    };
    (lower, upper)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The example of docs/formats.md ("SQL rows, indexes and catalog").
    #[test]
    fn documented_example() {
        let pk = encode_key(&[Value::Integer(-2)]);
        assert_eq!(
            hex(&row_key(1, &pk)),
            "02 00 00 00 00 00 00 00 01 02 3f ff ff ff ff ff ff ff 80 00"
        );
        let row_key_of = |table_id, pk: &[Value]| {
            // A buffer that held a longer key: its old contents must go.
            let mut key = vec![0xAA; 64];
            row_key_into(table_id, pk, &mut key);
            key
        };
        assert_eq!(row_key_of(1, &[Value::Integer(-2)]), row_key(1, &pk));
        // A key longer than the first allocation, of several values.
        let long = [Value::Text("x".repeat(40).into()), Value::Integer(3)];
        assert_eq!(row_key_of(9, &long), row_key(9, &encode_key(&long)));
        assert_eq!(
            hex(&index_key(2, false, &[Value::Text("hi".into())], &pk)),
            "03 00 00 00 00 00 00 00 02 03 68 69 00 01 02 3f ff ff ff ff ff ff ff 80 00"
        );
        // A UNIQUE index leaves the row key out when no value is NULL.
        assert_eq!(
            hex(&index_key(2, true, &[Value::Text("hi".into())], &pk)),
            "03 00 00 00 00 00 00 00 02 03 68 69 00 01"
        );
    }

    /// A row's engine key built from its prefix, as an INSERT builds it,
    /// is its `row_key`.
    #[test]
    fn a_row_key_from_its_prefix_is_the_row_key() {
        let pk = encode_key(&[Value::Integer(7)]);
        let mut from_prefix = row_prefix(3).to_vec();
        from_prefix.extend_from_slice(&pk);
        assert_eq!(from_prefix, row_key(3, &pk));
    }

    /// A UNIQUE entry with a NULL keeps the row key (rows with a NULL in
    /// the key never collide), whichever way its values are passed.
    #[test]
    fn a_unique_entry_with_a_null_keeps_the_row_key() {
        let pk = encode_key(&[Value::Integer(7)]);
        let values = [Value::Integer(1), Value::Null];
        let mut expected = object_prefix(INDEXES, 5);
        expected.extend_from_slice(&encode_key(&values));
        expected.extend_from_slice(&pk);
        assert_eq!(index_key(5, true, &values, &pk), expected);
        assert_eq!(index_key_of(5, true, values.iter(), &pk), expected);
        assert_eq!(
            index_key_of(5, true, values[..1].iter(), &pk),
            index_key(5, true, &values[..1], &pk)
        );
        assert!(index_key(5, true, &values[..1], &pk).len() < expected.len());
    }
}
