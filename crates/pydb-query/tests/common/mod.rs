//! Helpers shared by the tests that compare pydb's rows with SQLite's
//! (through rusqlite): a cell both databases print alike, and each side's
//! rows for one query.

#![allow(dead_code)]

use std::cmp::Ordering;

use pydb_query::{Output, Value};

/// A value as both databases print it, for comparison.
#[derive(Debug, Clone, PartialEq, PartialOrd)]
pub enum Cell {
    Null,
    Num(f64),
    Text(String),
}

impl Cell {
    /// A number; -0.0 is 0.0 (SQLite's `abs(-0.0)` keeps the sign, pydb's
    /// does not, and both print as zero).
    pub fn num(r: f64) -> Cell {
        Cell::Num(if r == 0.0 { 0.0 } else { r })
    }

    pub fn cmp(&self, other: &Cell) -> Ordering {
        match (self, other) {
            (Cell::Null, Cell::Null) => Ordering::Equal,
            (Cell::Null, _) => Ordering::Less,
            (_, Cell::Null) => Ordering::Greater,
            (Cell::Num(a), Cell::Num(b)) => a.total_cmp(b),
            (Cell::Num(_), Cell::Text(_)) => Ordering::Less,
            (Cell::Text(_), Cell::Num(_)) => Ordering::Greater,
            (Cell::Text(a), Cell::Text(b)) => a.cmp(b),
        }
    }

    pub fn same(&self, other: &Cell) -> bool {
        match (self, other) {
            (Cell::Num(a), Cell::Num(b)) => {
                a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
            }
            _ => self == other,
        }
    }
}

/// pydb's rows for the last statement of `sql`.
pub fn pydb_rows(session: &mut pydb_query::Session, sql: &str) -> Result<Vec<Vec<Cell>>, String> {
    let outputs = session.execute(sql).map_err(|e| e.to_string())?;
    match outputs.into_iter().last() {
        Some(Output::Rows(rows)) => Ok(rows
            .rows
            .into_iter()
            .map(|row| {
                row.into_iter()
                    .map(|v| match v {
                        Value::Null => Cell::Null,
                        Value::Integer(i) => Cell::Num(i as f64),
                        Value::Real(r) => Cell::num(r),
                        Value::Boolean(b) => Cell::Num(f64::from(u8::from(b))),
                        Value::Text(t) => Cell::Text(t.to_string()),
                    })
                    .collect()
            })
            .collect()),
        other => Err(format!("not rows: {other:?}")),
    }
}

/// SQLite's rows for `sql`.
pub fn sqlite_rows(conn: &rusqlite::Connection, sql: &str) -> Result<Vec<Vec<Cell>>, String> {
    let mut stmt = conn.prepare(sql).map_err(|e| e.to_string())?;
    let columns = stmt.column_count();
    let mut rows = stmt.query([]).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(|e| e.to_string())? {
        let mut cells = Vec::with_capacity(columns);
        for i in 0..columns {
            cells.push(match row.get_ref(i).map_err(|e| e.to_string())? {
                rusqlite::types::ValueRef::Null => Cell::Null,
                rusqlite::types::ValueRef::Integer(i) => Cell::Num(i as f64),
                rusqlite::types::ValueRef::Real(r) => Cell::num(r),
                rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
                    Cell::Text(String::from_utf8_lossy(t).into_owned())
                }
            });
        }
        out.push(cells);
    }
    Ok(out)
}
