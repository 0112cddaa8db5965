//! The SQL verifier: are the tables, their indexes and the catalog
//! consistent with each other?
//!
//! The store keeps three things in step inside every transaction: the
//! catalog records, each table's rows, and each index's entries. A bug in
//! that bookkeeping (or damage the engine's checksums missed) shows up as
//! an index that answers with the wrong rows, which no query would ever
//! report. [`check`] reads everything at one snapshot and verifies:
//!
//! - every catalog record decodes, and no two tables or indexes share an
//!   id; every statistics record (ANALYZE) decodes and belongs to a table
//!   of the catalog;
//! - every row decodes, has one value per column, and is stored under the
//!   key its primary key (or a hidden row id) gives;
//! - every row has exactly the index entries its values call for, and
//!   every index entry points to a row with those values (no entry is
//!   missing, none is left over, and no UNIQUE index holds a duplicate);
//! - no row or entry belongs to a table or index the catalog does not
//!   know (what a dropped table must leave behind: nothing).
//!
//! Problems are collected, not returned as the first error, so one run
//! reports every damage it finds.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use pydb_txn::{Isolation, Transaction};

use crate::catalog::Table;
use crate::encoding::decode_key;
use crate::error::Result;
use crate::session::Database;
use crate::txnstore::{Catalog, decode_table_row, index_values, layout, pk_row_key, space_scan};
use crate::value::Value;

/// What [`check`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Tables in the catalog.
    pub tables: usize,
    /// Indexes in the catalog.
    pub indexes: usize,
    /// Rows read.
    pub rows: u64,
    /// Index entries read.
    pub index_entries: u64,
    /// Every inconsistency, one line each.
    pub problems: Vec<String>,
}

impl CheckReport {
    /// Whether nothing is wrong.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Verifies the SQL data of `db` at the latest commit.
pub fn check(db: &Database) -> Result<CheckReport> {
    let tx = db.txn_manager().begin_read_only(Isolation::Snapshot)?;
    let report = check_transaction(&tx);
    tx.rollback();
    report
}

/// Verifies the SQL data that `tx` sees. Engine and transaction-layer
/// errors are returned; inconsistencies are reported.
pub fn check_transaction(tx: &Transaction) -> Result<CheckReport> {
    let mut report = CheckReport::default();
    let catalog = match Catalog::load(tx) {
        Ok(catalog) => catalog,
        Err(e) => {
            report.problems.push(format!("catalog: {e}"));
            return Ok(report);
        }
    };
    report.tables = catalog.tables.len();
    for (name, stats) in &catalog.stats {
        if let Err(damage) = stats {
            report.problems.push(format!("table {name}: {damage}"));
        }
    }
    // Which table owns each id, and which (table, index position) each
    // index id is.
    let mut tables_by_id: HashMap<u64, &Table> = HashMap::new();
    let mut indexes_by_id: HashMap<u64, (&Table, usize)> = HashMap::new();
    for table in catalog.tables.values() {
        if tables_by_id.insert(table.id, table).is_some() {
            report
                .problems
                .push(format!("table id {} is used twice", table.id));
        }
        for (position, index) in table.indexes.iter().enumerate() {
            report.indexes += 1;
            if tables_by_id.contains_key(&index.id)
                || indexes_by_id.insert(index.id, (table, position)).is_some()
            {
                report
                    .problems
                    .push(format!("index id {} is used twice", index.id));
            }
        }
    }

    // The index entries the rows call for: engine key -> row key.
    let mut expected: BTreeMap<Vec<u8>, Bytes> = BTreeMap::new();
    for (key, value) in space_scan(tx, layout::prefix_range(vec![layout::ROWS]))? {
        report.rows += 1;
        let Some((id, row_key)) = split_id(&key) else {
            report
                .problems
                .push(format!("row key {key:?} is too short"));
            continue;
        };
        let Some(&table) = tables_by_id.get(&id) else {
            report
                .problems
                .push(format!("row {key:?} belongs to no table (id {id})"));
            continue;
        };
        let row = match decode_table_row(table, &value) {
            Ok(row) => row,
            Err(e) => {
                report
                    .problems
                    .push(format!("table {}: row {row_key:?}: {e}", table.name));
                continue;
            }
        };
        let key_ok = if table.primary_key.is_empty() {
            matches!(decode_key(row_key).as_deref(), Ok([Value::Integer(_)]))
        } else {
            pk_row_key(table, &row).0 == row_key
        };
        if !key_ok {
            report.problems.push(format!(
                "table {}: row {row:?} is stored under key {row_key:?}, which is not its primary key",
                table.name
            ));
        }
        for index in &table.indexes {
            let values = index_values(index, &row);
            let entry = layout::index_key(index.id, index.unique, &values, row_key);
            if let Some(other) = expected.insert(entry, Bytes::copy_from_slice(row_key)) {
                report.problems.push(format!(
                    "table {}: rows {other:?} and {row_key:?} have the same {:?} in UNIQUE index {}",
                    table.name, values, index.name
                ));
            }
        }
    }

    for (key, value) in space_scan(tx, layout::prefix_range(vec![layout::INDEXES]))? {
        report.index_entries += 1;
        let Some((id, _)) = split_id(&key) else {
            report
                .problems
                .push(format!("index entry key {key:?} is too short"));
            continue;
        };
        let Some((table, position)) = indexes_by_id.get(&id) else {
            report
                .problems
                .push(format!("index entry {key:?} belongs to no index (id {id})"));
            continue;
        };
        let index = &table.indexes[*position];
        match expected.remove(&key[..]) {
            Some(row_key) if row_key == value => {}
            Some(row_key) => report.problems.push(format!(
                "index {}: entry {key:?} points to row {value:?}, expected {row_key:?}",
                index.name
            )),
            None => report.problems.push(format!(
                "index {} on {}: entry {key:?} (row {value:?}) matches no row with those values",
                index.name, table.name
            )),
        }
    }
    for (entry, row_key) in expected {
        let name = split_id(&entry)
            .and_then(|(id, _)| indexes_by_id.get(&id))
            .map_or("?", |(t, p)| t.indexes[*p].name.as_str());
        report.problems.push(format!(
            "index {name}: row {row_key:?} has no entry {entry:?}"
        ));
    }
    Ok(report)
}

/// Splits `section | id (8, BE) | rest`.
fn split_id(key: &[u8]) -> Option<(u64, &[u8])> {
    let id: [u8; 8] = key.get(1..9)?.try_into().ok()?;
    Some((u64::from_be_bytes(id), &key[9..]))
}
