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
//! stats  = 0x01 (version) | table id | row count | average row bytes
//!          | column count | column stats*
//! column stats = distinct | null fraction (f64)
//!          | MCV count | (value | frequency (f64))* | bound count | value*
//! name, sql = length varint | UTF-8;   id, count, position = varint
//! f64 = 8 bytes little-endian;   value = a value in the row format
//! ```
//!
//! A stats record (what `ANALYZE` stores, [`TableStats`]) lives under the
//! table's name, like the table record, and names the table's id, so that
//! statistics never describe another table of the same name.
//!
//! Decoding checks what the store relies on: the name matches the key it
//! was found under, positions point at existing columns, and every byte is
//! used. Anything else is [`Error::Corrupted`].

use crate::catalog::{Column, Index, Table, View};
use crate::encoding::{RecordReader, RecordWriter};
use crate::error::{Error, Result};
use crate::plan::stats::{ColumnStats, TableStats};
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

/// Encodes the statistics of the table with id `table_id`.
pub(crate) fn encode_stats(table_id: u64, stats: &TableStats) -> Vec<u8> {
    let mut w = RecordWriter::new(RECORD_VERSION);
    w.u64(table_id);
    w.u64(stats.row_count);
    w.u64(stats.avg_row_bytes);
    w.u64(stats.columns.len() as u64);
    for column in &stats.columns {
        w.u64(column.distinct);
        w.f64(column.null_frac);
        w.u64(column.mcv.len() as u64);
        for (value, frequency) in &column.mcv {
            w.value(value);
            w.f64(*frequency);
        }
        w.u64(column.histogram.len() as u64);
        for bound in &column.histogram {
            w.value(bound);
        }
    }
    w.out
}

/// A fraction between 0 and 1, or a corruption.
fn fraction(r: &mut RecordReader<'_>) -> Result<f64> {
    let f = r.f64()?;
    if (0.0..=1.0).contains(&f) {
        Ok(f)
    } else {
        Err(r.corrupted(format!("fraction {f} is not between 0 and 1")))
    }
}

/// Decodes a stats record found under the key of `table`: it must name
/// the table's id and have one entry per column.
pub(crate) fn decode_stats(table: &Table, bytes: &[u8]) -> Result<TableStats> {
    let mut r = RecordReader::new(bytes, "SQL stats record", RECORD_VERSION)?;
    let id = r.u64()?;
    if id != table.id {
        return Err(Error::Corrupted(format!(
            "stats record of table {} (id {}) is for table id {id}",
            table.name, table.id
        )));
    }
    let row_count = r.u64()?;
    let avg_row_bytes = r.u64()?;
    let count = r.count()?;
    if count != table.columns.len() {
        return Err(r.corrupted(format!(
            "{count} columns of stats for table {} of {} columns",
            table.name,
            table.columns.len()
        )));
    }
    let mut columns = Vec::with_capacity(count);
    for _ in 0..count {
        let distinct = r.u64()?;
        let null_frac = fraction(&mut r)?;
        let n = r.count()?;
        let mut mcv = Vec::with_capacity(n);
        for _ in 0..n {
            let value = r.value()?;
            mcv.push((value, fraction(&mut r)?));
        }
        let n = r.count()?;
        let mut histogram = Vec::with_capacity(n);
        for _ in 0..n {
            histogram.push(r.value()?);
        }
        columns.push(ColumnStats {
            distinct,
            null_frac,
            mcv,
            histogram,
        });
    }
    r.finish()?;
    Ok(TableStats {
        row_count,
        avg_row_bytes,
        columns,
    })
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

    fn stats() -> TableStats {
        TableStats {
            row_count: 3,
            avg_row_bytes: 9,
            columns: vec![
                ColumnStats {
                    distinct: 3,
                    null_frac: 0.0,
                    mcv: vec![],
                    histogram: vec![Value::Integer(1), Value::Integer(3)],
                },
                ColumnStats {
                    distinct: 1,
                    null_frac: 0.5,
                    mcv: vec![(Value::Text("x".into()), 0.5)],
                    histogram: vec![],
                },
            ],
        }
    }

    fn hex(bytes: &[u8]) -> String {
        bytes
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The example of docs/formats.md ("SQL statistics record").
    #[test]
    fn stats_documented_example() {
        let bytes = encode_stats(7, &stats());
        assert_eq!(
            hex(&bytes),
            "01 07 03 09 02 \
             03 00 00 00 00 00 00 00 00 00 02 01 02 01 06 \
             01 00 00 00 00 00 00 e0 3f 01 03 01 78 00 00 00 00 00 00 e0 3f 00"
        );
        assert_eq!(decode_stats(&table(), &bytes).unwrap(), stats());
    }

    #[test]
    fn damaged_stats_records_are_corrupted_not_panics() {
        let bytes = encode_stats(7, &stats());
        for len in 0..bytes.len() {
            assert!(matches!(
                decode_stats(&table(), &bytes[..len]),
                Err(Error::Corrupted(_))
            ));
        }
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut flipped = bytes.clone();
                flipped[i] ^= 1 << bit;
                if let Err(e) = decode_stats(&table(), &flipped) {
                    assert!(matches!(e, Error::Corrupted(_)), "{e}");
                }
            }
        }
        // Another table's statistics are refused.
        let mut other = table();
        other.id = 8;
        assert!(matches!(
            decode_stats(&other, &bytes),
            Err(Error::Corrupted(_))
        ));
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
