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
