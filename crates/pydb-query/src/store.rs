//! The seam between the executor and the storage: tables and indexes in
//! one transaction.
//!
//! The executor sees a database only through [`Store`]: it asks for a
//! table's definition, scans its rows or an index range, and inserts,
//! updates and deletes rows. The store keeps the secondary indexes in step
//! with the rows and checks NOT NULL, UNIQUE and PRIMARY KEY, all inside the
//! same transaction, so that a rolled-back statement leaves nothing behind.

use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;

use crate::catalog::{Index, Table, View};
use crate::error::{Error, Result};
use crate::plan::stats::TableStats;
use crate::value::{Row, Value};

/// Which catalog (tables, indexes, views, statistics) a store shows: two
/// tokens are the same exactly when they stand for the same immutable,
/// decoded catalog. A prepared statement keeps the token of the catalog
/// it was planned against and plans again when the store shows another
/// one (see [`crate::session`]): a different token may still be the
/// same catalog (a plan is then made again for nothing), but the same
/// token is never a different catalog.
#[derive(Clone)]
pub struct CatalogToken(pub Arc<dyn std::any::Any + Send + Sync>);

impl CatalogToken {
    /// Whether both tokens stand for the same catalog (pointer identity:
    /// the token keeps its catalog alive, so the address cannot be
    /// reused by another one).
    pub fn same(&self, other: &CatalogToken) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl std::fmt::Debug for CatalogToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CatalogToken({:p})", Arc::as_ptr(&self.0))
    }
}

/// The storage key of a row: the encoded primary key, or the hidden row
/// id. Opaque to the executor; it hands it back to update or delete.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RowKey(pub Bytes);

/// Rows with their keys, in key order (for an index scan: in index order).
pub type RowIter<'a> = Box<dyn Iterator<Item = Result<(RowKey, Row)>> + 'a>;

/// Rows without their keys, in key order: what a query's table scan reads.
pub type RowsIter<'a> = Box<dyn Iterator<Item = Result<Row>> + 'a>;

/// A table scan that decodes each row into a buffer its caller keeps
/// ([`Store::scan_cursor`]): a filter above it tests the row where it was
/// decoded and drops it without a `Vec` allocated and freed for it.
pub trait RowCursor {
    /// Replaces the contents of `row` by the next row; `false` (and `row`
    /// unspecified) at the end.
    fn next_into(&mut self, row: &mut Row) -> Result<bool>;

    /// Lets the cursor drop, from here on, the rows whose column `column`
    /// holds an INTEGER that `keys` proves absent (see [`KeyBits`]): the
    /// caller (a hash join's probe, once its build side is complete)
    /// would reject them unseen. Only a hint: a cursor may hand such rows
    /// up all the same (the default ignores it), and the caller still
    /// tests every row it gets.
    fn drop_absent_keys(&mut self, column: usize, keys: KeyBits) {
        let _ = (column, keys);
    }
}

/// A set of integers as bits, one bit a member (Fibonacci hashing: the
/// high bits of a multiplication by 2^64 / phi): a Bloom filter with one
/// hash. A clear bit proves its integers absent; a set bit proves
/// nothing. A hash join builds one per key column over its build keys
/// (`exec::join_table`) and tests each probe key against it before its
/// hash lookup, and hands it to the probe's scan
/// ([`RowCursor::drop_absent_keys`]), which drops a row by it where it
/// decoded it.
///
/// Why the scan: q3 of the SQL bench probes the 32,000 `lineitem` rows
/// its date filter keeps against about 1,300 orders, and joins about 230
/// of them; each of the others was swapped out of the scan's batch,
/// handed up through the cursors, tested by the filter and looked up,
/// only to be dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyBits {
    words: Arc<[u64]>,
    /// 64 less the bit count's log2.
    shift: u32,
}

impl KeyBits {
    /// The bits of `members`: about eight bits a member, 64 at least.
    pub fn of(members: impl ExactSizeIterator<Item = i64>) -> Self {
        let bits = members.len().saturating_mul(8).next_power_of_two().max(64);
        let shift = 64 - bits.trailing_zeros();
        let mut words = vec![0u64; bits / 64];
        for n in members {
            let at = Self::bit(n, shift);
            if let Some(word) = words.get_mut(at / 64) {
                *word |= 1 << (at % 64);
            }
        }
        KeyBits {
            words: words.into(),
            shift,
        }
    }

    /// The bit of `n`.
    #[inline]
    fn bit(n: i64, shift: u32) -> usize {
        ((n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> shift) as usize
    }

    /// Whether `n` may be a member (`false`: it is not).
    #[inline]
    pub fn may_hold(&self, n: i64) -> bool {
        let at = Self::bit(n, self.shift);
        self.words
            .get(at / 64)
            .is_some_and(|w| (w >> (at % 64)) & 1 == 1)
    }

    /// Whether `row`'s column `column` holds an INTEGER that is no member
    /// (any other value, or no such column: `false`).
    #[inline]
    pub fn rejects(&self, row: &[Value], column: usize) -> bool {
        matches!(row.get(column), Some(Value::Integer(n)) if !self.may_hold(*n))
    }
}

/// A test a table scan may run on each row before handing it up
/// ([`Store::scan_cursor`]): a row whose column `column` holds an INTEGER
/// outside `low..=high` is one the filter above the scan rejects, so the
/// scan may drop it where it decoded it. It is only ever a *necessary*
/// condition of the filter (made by the executor's
/// `Predicate::integer_bounds` from conjuncts that cannot fail): the filter still tests every row the
/// scan keeps, and a value of another type (NULL, REAL, TEXT) is kept.
///
/// Why: q6 of the SQL bench keeps 2% of `lineitem`, and handing each of
/// the other 98% up to the filter (the batch's swap, the cursors' calls,
/// the predicate's four conjuncts) cost about 170 instructions a row,
/// where this test costs a few.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IntegerBound {
    /// The column tested.
    pub column: usize,
    /// The smallest integer kept.
    pub low: i64,
    /// The largest integer kept (below `low`: no integer is).
    pub high: i64,
}

impl IntegerBound {
    /// Whether `row` is one the filter rejects by this bound.
    #[inline]
    pub fn rejects(&self, row: &[Value]) -> bool {
        matches!(row.get(self.column), Some(Value::Integer(v)) if *v < self.low || *v > self.high)
    }
}

/// A [`RowCursor`] in a box, borrowing the store for `'a`.
pub type RowCursorBox<'a> = Box<dyn RowCursor + 'a>;

/// The [`RowCursor`] of a [`RowsIter`]: each row is moved into the buffer.
struct RowsCursor<'a>(RowsIter<'a>);

impl RowCursor for RowsCursor<'_> {
    fn next_into(&mut self, row: &mut Row) -> Result<bool> {
        match self.0.next() {
            Some(next) => {
                *row = next?;
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

/// A range over an index, on a prefix of its columns: `start` and `end`
/// hold values for the first one or more indexed columns.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexRange {
    /// The lower bound.
    pub start: Bound<Vec<Value>>,
    /// The upper bound.
    pub end: Bound<Vec<Value>>,
}

/// Tables, indexes and views, read and written in one transaction.
pub trait Store {
    /// The table named `name` (case-insensitive), if any.
    fn table(&self, name: &str) -> Result<Option<Arc<Table>>>;
    /// The view named `name`, if any.
    fn view(&self, name: &str) -> Result<Option<Arc<View>>>;
    /// Every table, by name.
    fn tables(&self) -> Result<Vec<Arc<Table>>>;
    /// Every view, by name.
    fn views(&self) -> Result<Vec<Arc<View>>>;

    /// Creates a table (its `id` and its indexes' ids are assigned here).
    /// Fails if a table or view of that name exists.
    fn create_table(&mut self, table: Table) -> Result<Arc<Table>>;
    /// Drops a table with its rows and indexes.
    fn drop_table(&mut self, name: &str) -> Result<()>;
    /// Creates an index and fills it from the table's rows; a UNIQUE index
    /// over rows that collide fails.
    fn create_index(&mut self, index: Index) -> Result<()>;
    /// Drops an index.
    fn drop_index(&mut self, name: &str) -> Result<()>;
    /// Creates a view.
    fn create_view(&mut self, view: View) -> Result<()>;
    /// Drops a view.
    fn drop_view(&mut self, name: &str) -> Result<()>;

    /// Every row of `table`, in key order.
    fn scan(&self, table: &Table) -> Result<RowIter<'_>>;
    /// The rows of [`Store::scan`] without their keys, with only the
    /// columns `columns` marks (one flag per column of `table`; empty:
    /// all) holding their values; the others are unspecified (NULL, or
    /// the stored values). What a query's table scan reads
    /// ([`crate::plan::Plan::Scan`]): a store that decodes rows builds
    /// only the values the query reads, and no key, which the operators
    /// above a scan never look at. The default reads whole rows.
    fn scan_columns(&self, table: &Table, columns: &[bool]) -> Result<RowsIter<'_>> {
        let _ = columns;
        Ok(Box::new(
            self.scan(table)?.map(|item| item.map(|(_, row)| row)),
        ))
    }
    /// The rows of [`Store::scan_columns`] as a [`RowCursor`], which
    /// decodes each into the caller's buffer, less rows that `bounds`
    /// reject if the store chooses to test them (see [`IntegerBound`]).
    /// The default moves the rows of `scan_columns` into it, all of them.
    fn scan_cursor(
        &self,
        table: &Table,
        columns: &[bool],
        bounds: &[IntegerBound],
    ) -> Result<RowCursorBox<'_>> {
        let _ = bounds;
        Ok(Box::new(RowsCursor(self.scan_columns(table, columns)?)))
    }

    /// The rows whose `index` key falls in `range`, in index order.
    fn index_scan(&self, table: &Table, index: &Index, range: &IndexRange) -> Result<RowIter<'_>>;
    /// The entries of `index` in `range`, in index order (descending if
    /// `reverse`), as rows of `table` built from the entries alone: the
    /// indexed columns and the primary-key columns hold their values, the
    /// other columns are unspecified (NULL, or the stored values). What a
    /// covering ([`crate::plan::Plan::IndexOnlyScan`]) scan reads. The
    /// default fetches the rows, as [`Store::index_scan`] does.
    fn index_only_scan(
        &self,
        table: &Table,
        index: &Index,
        range: &IndexRange,
        reverse: bool,
    ) -> Result<RowIter<'_>> {
        if reverse {
            self.index_scan_backward(table, index, range)
        } else {
            self.index_scan(table, index, range)
        }
    }
    /// The rows of [`Store::index_scan`], in descending index order. The
    /// default reads the range forward and hands it out backward: the
    /// transaction layer scans forward only, and reads a range whole.
    fn index_scan_backward(
        &self,
        table: &Table,
        index: &Index,
        range: &IndexRange,
    ) -> Result<RowIter<'_>> {
        let rows = self
            .index_scan(table, index, range)?
            .collect::<Result<Vec<_>>>()?;
        Ok(Box::new(rows.into_iter().rev().map(Ok)))
    }
    /// Every row of `table`, in descending key order (read forward, then
    /// handed out backward, as for [`Store::index_scan_backward`]).
    fn scan_backward(&self, table: &Table) -> Result<RowIter<'_>> {
        let rows = self.scan(table)?.collect::<Result<Vec<_>>>()?;
        Ok(Box::new(rows.into_iter().rev().map(Ok)))
    }
    /// The row with this primary key, if any (`pk` in primary-key column
    /// order).
    fn get_by_pk(&self, table: &Table, pk: &[Value]) -> Result<Option<(RowKey, Row)>>;

    /// Inserts a row (one value per column, defaults already applied).
    /// Checks NOT NULL, PRIMARY KEY and UNIQUE, and adds index entries.
    fn insert(&mut self, table: &Table, row: Row) -> Result<RowKey>;
    /// Replaces the row stored under `key` (whose current values are
    /// `old`) by `new`, keeping the indexes in step. The key changes when
    /// the primary key does.
    fn update(&mut self, table: &Table, key: &RowKey, old: &Row, new: Row) -> Result<RowKey>;
    /// Deletes the row stored under `key`, with its index entries.
    fn delete(&mut self, table: &Table, key: &RowKey, row: &Row) -> Result<()>;

    /// The catalog this store shows, as a token a cached plan can be
    /// checked against; `None` (the default): plans made on this store
    /// are not kept.
    fn catalog_token(&self) -> Result<Option<CatalogToken>> {
        Ok(None)
    }

    /// The statistics `ANALYZE` last stored for `table`, if any.
    fn table_stats(&self, table: &Table) -> Result<Option<Arc<TableStats>>> {
        let _ = table;
        Ok(None)
    }
    /// Stores statistics for `table` (what `ANALYZE` does), replacing the
    /// earlier ones, in the same transaction as everything else.
    fn set_table_stats(&mut self, table: &Table, stats: TableStats) -> Result<()> {
        let _ = (table, stats);
        Err(Error::Invalid("this store keeps no statistics".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Key bits never prove a member absent, and reject only INTEGERs:
    /// a REAL, a TEXT or a NULL is left to the join, which decides what
    /// it equals.
    #[test]
    fn key_bits_hold_every_member_and_reject_only_integers() {
        let members: Vec<i64> = (0..500)
            .map(|i| i * 7919 - 1_000_000)
            .chain([i64::MIN, i64::MAX])
            .collect();
        let bits = KeyBits::of(members.iter().copied());
        for &m in &members {
            assert!(bits.may_hold(m), "{m}");
            assert!(!bits.rejects(&[Value::Integer(m)], 0));
        }
        let absent: Vec<i64> = (0..10_000).filter(|n| !bits.may_hold(*n)).collect();
        // About eight bits a member: most non-members are proved absent.
        assert!(absent.len() > 8_000, "{}", absent.len());
        let n = absent[0];
        assert!(bits.rejects(&[Value::Null, Value::Integer(n)], 1));
        for other in [
            Value::Real(n as f64),
            Value::text(&n.to_string()),
            Value::Null,
        ] {
            assert!(!bits.rejects(std::slice::from_ref(&other), 0), "{other:?}");
        }
        assert!(!bits.rejects(&[Value::Integer(n)], 1), "no such column");
        let none = KeyBits::of(std::iter::empty());
        assert!(!none.may_hold(0) && !none.may_hold(-1));
    }
}
