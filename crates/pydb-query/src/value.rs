//! SQL values and their types.
//!
//! pydb has five kinds of value: NULL, INTEGER (64-bit, signed), REAL
//! (64-bit float), TEXT (UTF-8) and BOOLEAN. The rules that combine them
//! (three-valued logic, comparison across types, arithmetic, casts) follow
//! what SQLite's sqllogictest corpus expects.

use std::fmt;
use std::sync::Arc;

/// The type of a column or of an expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    /// 64-bit signed integers (`INTEGER`, `INT`, `BIGINT`, ...).
    Integer,
    /// 64-bit floats (`REAL`, `FLOAT`, `DOUBLE`, `NUMERIC`, `DECIMAL`).
    Real,
    /// UTF-8 text (`TEXT`, `VARCHAR(n)`, `CHAR(n)`, ...).
    Text,
    /// `TRUE` or `FALSE` (`BOOLEAN`, `BOOL`).
    Boolean,
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DataType::Integer => "INTEGER",
            DataType::Real => "REAL",
            DataType::Text => "TEXT",
            DataType::Boolean => "BOOLEAN",
        })
    }
}

/// One SQL value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// The unknown value.
    Null,
    /// A 64-bit signed integer.
    Integer(i64),
    /// A 64-bit float.
    Real(f64),
    /// UTF-8 text, shared so that copying a row is cheap.
    Text(Arc<str>),
    /// A truth value.
    Boolean(bool),
}

impl Value {
    /// The value's type, or `None` for NULL.
    pub fn data_type(&self) -> Option<DataType> {
        match self {
            Value::Null => None,
            Value::Integer(_) => Some(DataType::Integer),
            Value::Real(_) => Some(DataType::Real),
            Value::Text(_) => Some(DataType::Text),
            Value::Boolean(_) => Some(DataType::Boolean),
        }
    }

    /// Whether this is NULL.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
}

/// A row: one value per column.
pub type Row = Vec<Value>;
