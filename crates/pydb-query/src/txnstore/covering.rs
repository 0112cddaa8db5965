//! Covering (index-only) scans: rows rebuilt from index entries alone.
//!
//! An index entry (see [`super::layout`]) is the key encoding of the
//! indexed columns followed, in the entry's value, by the row key: the key
//! encoding of the primary-key columns (or of the hidden row id). So an
//! entry already holds every indexed column and every primary-key column
//! of its row. A query that reads nothing else of the table can be
//! answered from the index without one row fetch per entry, which is what
//! PostgreSQL calls an *Index Only Scan*.
//!
//! The key encoding forgets a number's type (INTEGER, REAL and BOOLEAN
//! share one tag so that they compare by value; a whole REAL `2.0` decodes
//! as the INTEGER `2`). The stored row holds the typed value, so each
//! decoded value is given back its type here, from the column's declared
//! type and the affinity rules every stored value went through
//! ([`Value::apply_affinity`]):
//!
//! - in an INTEGER, REAL or BOOLEAN column, a value converts to the
//!   column's type exactly as it did when it was stored;
//! - in a TEXT column, every number was stored as text, so a number found
//!   in the key can only have been a BOOLEAN (kept as such, since TEXT
//!   affinity leaves booleans alone): it decodes back to one.
//!
//! Invariant: the row has the table's width; columns the entry does not
//! hold are NULL. The planner only reads the entry's columns.

use bytes::Bytes;

use crate::catalog::{Index, Table};
use crate::encoding::{decode_key, decode_key_prefix};
use crate::error::{Error, Result};
use crate::store::{IndexRange, RowIter, RowKey};
use crate::value::{DataType, Row, Value};

use super::{Transaction, layout, space_scan};

/// Bytes before an index entry's key values: the section and the index id.
const ENTRY_PREFIX: usize = 9;

/// The entries of `index` in `range` as rows of `table` (see the module
/// docs), in index order, or backward.
pub(crate) fn index_only_rows<'a>(
    tx: &Transaction,
    table: &Table,
    index: &Index,
    range: &IndexRange,
    reverse: bool,
) -> Result<RowIter<'a>> {
    let items = space_scan(tx, layout::index_range(index.id, &range.start, &range.end))?;
    let table = table.clone();
    let index = index.clone();
    let decode = move |(entry, row_key): (Bytes, Bytes)| entry_row(&table, &index, &entry, row_key);
    Ok(if reverse {
        Box::new(items.into_iter().rev().map(decode))
    } else {
        Box::new(items.into_iter().map(decode))
    })
}

/// The row an index entry describes (`row_key` is the entry's value).
fn entry_row(table: &Table, index: &Index, entry: &[u8], row_key: Bytes) -> Result<(RowKey, Row)> {
    let corrupted = |what: &str| {
        Error::Corrupted(format!(
            "index {} of table {}: entry {entry:?} {what}",
            index.name, table.name
        ))
    };
    let body = entry
        .get(ENTRY_PREFIX..)
        .ok_or_else(|| corrupted("is shorter than its prefix"))?;
    let (values, _) = decode_key_prefix(body, index.columns.len())?;
    let pk = if table.primary_key.is_empty() {
        Vec::new()
    } else {
        decode_key(&row_key)?
    };
    if pk.len() != table.primary_key.len() {
        return Err(corrupted("has a row key of the wrong length"));
    }
    let mut row = vec![Value::Null; table.columns.len()];
    let pairs = index.columns.iter().zip(values);
    for (&col, value) in pairs.chain(table.primary_key.iter().zip(pk)) {
        let (Some(slot), Some(column)) = (row.get_mut(col), table.columns.get(col)) else {
            return Err(corrupted("names a column the table lacks"));
        };
        *slot = typed(value, column.ty);
    }
    Ok((RowKey(row_key), row))
}

/// A value decoded from a key, with the type it had in a column of type
/// `ty` (see the module docs).
pub(crate) fn typed(value: Value, ty: DataType) -> Value {
    match (ty, &value) {
        (DataType::Text, Value::Integer(i)) => Value::Boolean(*i != 0),
        _ => value.apply_affinity(ty),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::{encode_key, encode_row};

    /// A key round trip gives back every value a column of each type can
    /// hold, typed as stored (a REAL 2.0 is not an INTEGER 2).
    #[test]
    fn key_values_get_their_column_type_back() {
        let cases = [
            (DataType::Real, Value::Real(2.0)),
            (DataType::Real, Value::Real(-0.5)),
            (DataType::Integer, Value::Integer(7)),
            (DataType::Integer, Value::Real(1.5)),
            (DataType::Integer, Value::text("x")),
            (DataType::Boolean, Value::Boolean(true)),
            (DataType::Boolean, Value::Boolean(false)),
            (DataType::Text, Value::text("2")),
            (DataType::Text, Value::Boolean(true)),
            (DataType::Real, Value::Null),
        ];
        for (ty, input) in cases {
            let stored = input.apply_affinity(ty);
            let decoded = decode_key(&encode_key(std::slice::from_ref(&stored))).unwrap();
            let back = typed(decoded[0].clone(), ty);
            // Compare the stored bytes: `==` on values would call 2 and 2.0 equal.
            assert_eq!(
                encode_row(&[back]),
                encode_row(std::slice::from_ref(&stored)),
                "{ty} {stored:?}"
            );
        }
    }
}
