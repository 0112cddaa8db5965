//! The catalog as tools see it: what `pydb sql`'s `\d` lists.
//!
//! Statements read the catalog inside their own transaction, through the
//! [`Store`](crate::store::Store). A tool that only wants to show what
//! exists reads it here instead, at the latest commit, in a read-only
//! snapshot transaction of its own: what another session has created but
//! not committed is not shown, as in PostgreSQL.

use std::collections::BTreeMap;
use std::sync::Arc;

use pydb_txn::Isolation;

use crate::catalog::{Table, View};
use crate::error::Result;
use crate::plan::stats::TableStats;
use crate::session::Database;
use crate::txnstore::Catalog;

/// The tables and views of a database, each sorted by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CatalogListing {
    /// The tables, with their columns and indexes.
    pub tables: Vec<Arc<Table>>,
    /// The views.
    pub views: Vec<Arc<View>>,
    /// The statistics ANALYZE stored, by table name (tables never
    /// analyzed, or whose record is damaged, have none).
    pub stats: BTreeMap<String, Arc<TableStats>>,
}

/// Reads the catalog of `db` as of the latest commit.
pub fn catalog(db: &Database) -> Result<CatalogListing> {
    let tx = db.txn_manager().begin_read_only(Isolation::Snapshot)?;
    let catalog = Catalog::load(&tx);
    tx.rollback();
    let catalog = catalog?;
    // The catalog's maps are keyed by name, so these come sorted.
    Ok(CatalogListing {
        tables: catalog.tables.into_values().collect(),
        views: catalog.views.into_values().collect(),
        stats: catalog
            .stats
            .into_iter()
            .filter_map(|(name, stats)| Some((name, stats.ok()?)))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_committed_tables_and_views_with_their_definitions() {
        let engine = Arc::new(pydb_storage::MemoryStorage::new());
        let mgr = pydb_txn::TxnManager::open(engine, pydb_txn::Options::default()).unwrap();
        let db = Database::new(Arc::new(mgr)).unwrap();
        assert_eq!(catalog(&db).unwrap(), CatalogListing::default());
        let mut session = db.session();
        session
            .execute(
                "CREATE TABLE b(x INTEGER PRIMARY KEY, y TEXT NOT NULL); \
                 CREATE TABLE a(z REAL); CREATE UNIQUE INDEX by ON b(y); \
                 CREATE VIEW v AS SELECT x FROM b",
            )
            .unwrap();
        // Uncommitted DDL of an open transaction is not listed.
        session.execute("BEGIN; CREATE TABLE c(w INTEGER)").unwrap();
        let listing = catalog(&db).unwrap();
        let names: Vec<&str> = listing.tables.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(listing.tables[1].primary_key, vec![0]);
        assert!(!listing.tables[1].columns[1].nullable);
        assert!(
            listing.tables[1]
                .indexes
                .iter()
                .any(|i| i.name == "by" && i.unique)
        );
        assert_eq!(listing.views.len(), 1);
        assert_eq!(listing.views[0].sql, "SELECT x FROM b");
        session.execute("COMMIT").unwrap();
        assert_eq!(catalog(&db).unwrap().tables.len(), 3);
        assert!(catalog(&db).unwrap().stats.is_empty());
        session
            .execute("INSERT INTO b VALUES (1, 'x'); ANALYZE b")
            .unwrap();
        let listing = catalog(&db).unwrap();
        let names: Vec<&str> = listing.stats.keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["b"]);
        assert_eq!(listing.stats["b"].row_count, 1);
    }
}
