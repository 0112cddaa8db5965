//! Catalog records: how a table or view definition is written under its
//! catalog key (see `layout`).
//!
//! ```text
//! table  = 0x01 (version) | name | id | column count | column*
//!          | pk count | pk position* | index count | index*
//! column = name | type (1 INTEGER, 2 REAL, 3 TEXT, 4 BOOLEAN)
//!          | nullable (0 or 1) | default (a value in the row format)
//! index  = name | id | column count | column position* | unique (0 or 1)
//! view   = 0x01 (version) | name | has column list (0 or 1)
//!          | [count | name*] | sql
//! name, sql = length varint | UTF-8;   id, count, position = varint
//! ```
//!
//! Decoding checks what the store relies on: the name matches the key it
//! was found under, positions point at existing columns, and every byte is
//! used. Anything else is [`Error::Corrupted`].

use crate::catalog::{Column, Index, Table, View};
use crate::encoding::{RecordReader, RecordWriter};
use crate::error::{Error, Result};
use crate::value::DataType;

/// The format version of catalog records.
const RECORD_VERSION: u8 = 0x01;

fn type_byte(ty: DataType) -> u8 {
    match ty {
        DataType::Integer => 1,
        DataType::Real => 2,
        DataType::Text => 3,
        DataType::Boolean => 4,
    }
}

/// Encodes a table definition.
pub(crate) fn encode_table(table: &Table) -> Vec<u8> {
    let mut w = RecordWriter::new(RECORD_VERSION);
    w.string(&table.name);
    w.u64(table.id);
    w.u64(table.columns.len() as u64);
    for column in &table.columns {
        w.string(&column.name);
        w.byte(type_byte(column.ty));
        w.byte(u8::from(column.nullable));
        w.value(&column.default);
    }
    w.u64(table.primary_key.len() as u64);
    for &position in &table.primary_key {
        w.u64(position as u64);
    }
    w.u64(table.indexes.len() as u64);
    for index in &table.indexes {
        w.string(&index.name);
        w.u64(index.id);
        w.u64(index.columns.len() as u64);
        for &position in &index.columns {
            w.u64(position as u64);
        }
        w.byte(u8::from(index.unique));
    }
    w.out
}

fn bool_byte(r: &mut RecordReader<'_>) -> Result<bool> {
    match r.byte()? {
        0 => Ok(false),
        1 => Ok(true),
        other => Err(r.corrupted(format!("flag byte {other}"))),
    }
}

fn positions(r: &mut RecordReader<'_>, columns: usize) -> Result<Vec<usize>> {
    let count = r.count()?;
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let position = r.usize()?;
        if position >= columns {
            return Err(r.corrupted(format!(
                "column position {position} in a table of {columns} columns"
            )));
        }
        out.push(position);
    }
    Ok(out)
}

/// Decodes a table record found under the key of table `key_name`.
pub(crate) fn decode_table(key_name: &str, bytes: &[u8]) -> Result<Table> {
    let mut r = RecordReader::new(bytes, "SQL table record", RECORD_VERSION)?;
    let name = r.string()?;
    if name != key_name {
        return Err(Error::Corrupted(format!(
            "table record under the name {key_name:?} is for {name:?}"
        )));
    }
    let id = r.u64()?;
    let count = r.count()?;
    let mut columns = Vec::with_capacity(count);
    for _ in 0..count {
        let name = r.string()?;
        let ty = match r.byte()? {
            1 => DataType::Integer,
            2 => DataType::Real,
            3 => DataType::Text,
            4 => DataType::Boolean,
            other => return Err(r.corrupted(format!("column type {other}"))),
        };
        let nullable = bool_byte(&mut r)?;
        let default = r.value()?;
        columns.push(Column {
            name,
            ty,
            nullable,
            default,
        });
    }
    let primary_key = positions(&mut r, columns.len())?;
    let count = r.count()?;
    let mut indexes = Vec::with_capacity(count);
    for _ in 0..count {
        let index_name = r.string()?;
        let index_id = r.u64()?;
        let index_columns = positions(&mut r, columns.len())?;
        let unique = bool_byte(&mut r)?;
        indexes.push(Index {
            name: index_name,
            id: index_id,
            table: name.clone(),
            columns: index_columns,
            unique,
        });
    }
    r.finish()?;
    Ok(Table {
        name,
        id,
        columns,
        primary_key,
        indexes,
    })
}

/// Encodes a view definition.
pub(crate) fn encode_view(view: &View) -> Vec<u8> {
    let mut w = RecordWriter::new(RECORD_VERSION);
    w.string(&view.name);
    match &view.columns {
        None => w.byte(0),
        Some(columns) => {
            w.byte(1);
            w.u64(columns.len() as u64);
            for column in columns {
                w.string(column);
            }
        }
    }
    w.string(&view.sql);
    w.out
}

/// Decodes a view record found under the key of view `key_name`.
pub(crate) fn decode_view(key_name: &str, bytes: &[u8]) -> Result<View> {
    let mut r = RecordReader::new(bytes, "SQL view record", RECORD_VERSION)?;
    let name = r.string()?;
    if name != key_name {
        return Err(Error::Corrupted(format!(
            "view record under the name {key_name:?} is for {name:?}"
        )));
    }
    let columns = if bool_byte(&mut r)? {
        let count = r.count()?;
        let mut columns = Vec::with_capacity(count);
        for _ in 0..count {
            columns.push(r.string()?);
        }
        Some(columns)
    } else {
        None
    };
    let sql = r.string()?;
    r.finish()?;
    Ok(View { name, columns, sql })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Value;

    fn table() -> Table {
        Table {
            name: "t".into(),
            id: 7,
            columns: vec![
                Column {
                    name: "a".into(),
                    ty: DataType::Integer,
                    nullable: false,
                    default: Value::Null,
                },
                Column {
                    name: "b".into(),
                    ty: DataType::Text,
                    nullable: true,
                    default: Value::Text("x".into()),
                },
            ],
            primary_key: vec![0],
            indexes: vec![Index {
                name: "t_b".into(),
                id: 8,
                table: "t".into(),
                columns: vec![1],
                unique: true,
            }],
        }
    }

    #[test]
    fn table_and_view_round_trip() {
        let t = table();
        assert_eq!(decode_table("t", &encode_table(&t)).unwrap(), t);
        let v = View {
            name: "v".into(),
            columns: Some(vec!["x".into()]),
            sql: "SELECT 1".into(),
        };
        assert_eq!(decode_view("v", &encode_view(&v)).unwrap(), v);
    }

    #[test]
    fn damaged_records_are_corrupted_not_panics() {
        let bytes = encode_table(&table());
        for len in 0..bytes.len() {
            assert!(matches!(
                decode_table("t", &bytes[..len]),
                Err(Error::Corrupted(_))
            ));
        }
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut flipped = bytes.clone();
                flipped[i] ^= 1 << bit;
                // Either still a valid table or a Corrupted error.
                if let Err(e) = decode_table("t", &flipped) {
                    assert!(matches!(e, Error::Corrupted(_)), "{e}");
                }
            }
        }
        assert!(matches!(
            decode_table("u", &bytes),
            Err(Error::Corrupted(_))
        ));
    }
}
