//! The catalog: the tables, indexes and views a database holds.
//!
//! The catalog is stored in the engine, in the same transactions as the
//! rows, so DDL is transactional: a `CREATE TABLE` rolled back leaves no
//! table behind. How the definitions are encoded is the store's business
//! (see [`store`](crate::store)); this module holds what they say.

use crate::value::{DataType, Value};

/// A column of a table.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// The name, lower case.
    pub name: String,
    /// The declared type.
    pub ty: DataType,
    /// Whether NULL is allowed (false for NOT NULL and PRIMARY KEY
    /// columns).
    pub nullable: bool,
    /// The DEFAULT value (a constant, evaluated when the table was
    /// created); NULL when there is none.
    pub default: Value,
}

/// A table.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// The name, lower case.
    pub name: String,
    /// A number unique in the database, never reused, that prefixes the
    /// table's row keys (so that renaming or dropping is cheap and a new
    /// table of the same name never sees old rows).
    pub id: u64,
    /// The columns, in order.
    pub columns: Vec<Column>,
    /// The positions of the PRIMARY KEY columns; empty when the table has
    /// none, and rows are then keyed by a hidden, increasing row id.
    pub primary_key: Vec<usize>,
    /// The secondary indexes, including the ones that enforce UNIQUE.
    pub indexes: Vec<Index>,
}

impl Table {
    /// The position of the column named `name` (case-insensitive).
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns
            .iter()
            .position(|c| c.name.eq_ignore_ascii_case(name))
    }
}

/// A secondary index.
#[derive(Debug, Clone, PartialEq)]
pub struct Index {
    /// The name, lower case (an index made for a UNIQUE constraint gets a
    /// generated name).
    pub name: String,
    /// A number unique in the database that prefixes the index's entries.
    pub id: u64,
    /// The table's name.
    pub table: String,
    /// The positions of the indexed columns in the table, in index order.
    pub columns: Vec<usize>,
    /// Whether two rows may not share a key (rows with a NULL in the key
    /// never collide, as in SQL).
    pub unique: bool,
}

/// A view: a named query.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    /// The name, lower case.
    pub name: String,
    /// Column names given in CREATE VIEW, if any.
    pub columns: Option<Vec<String>>,
    /// The query's text, parsed again when the view is used.
    pub sql: String,
}
