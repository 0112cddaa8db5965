//! How SQL values become bytes: an order-preserving *key* encoding for
//! primary keys and index entries, and a compact *row* encoding for the
//! values stored under them.
//!
//! # Keys: memcomparable
//!
//! An engine sorts keys by their bytes (`memcmp`). If a tuple of values is
//! encoded so that comparing the bytes gives the same answer as comparing
//! the values, then "rows with `a` between 3 and 7" is one engine range, and
//! an index scan is a plain engine scan. Each value starts with a tag byte
//! that orders the kinds (NULL first, then numbers, then text, as SQLite
//! sorts them); the payload after it is ordered within the kind:
//!
//! ```text
//! NULL      0x01
//! number    0x02 | f64 as ordered bytes (8) | residual as i16, sign flipped (2)
//! TEXT      0x03 | UTF-8 with 0x00 escaped as 0x00 0xFF | 0x00 0x01
//! ```
//!
//! - **Numbers.** INTEGER and REAL share one tag and compare by value, as
//!   SQL compares them: `1`, `1.0` and `1.5` sort `1 = 1.0 < 1.5`, and the
//!   planner may bound an index range with either type. A number is written
//!   as the nearest `f64` (rounding is monotone, so the order holds) in the
//!   usual ordered form (flip the sign bit of a positive float, every bit
//!   of a negative one), then the *residual*: the integer minus that float,
//!   which is 0 below 2^53 and at most ±512 above it, so that two large
//!   integers with the same nearest float still sort, and still differ.
//!   `-0.0` is written as `0.0` and every NaN as one NaN, after +∞.
//!   BOOLEANs are the numbers 0 and 1, as in SQLite (and in
//!   `Value::total_cmp`). A key therefore does not remember whether a
//!   number was INTEGER, REAL or BOOLEAN: [`decode_key`] gives an INTEGER
//!   when the number is a whole one that fits in 64 bits. The row holds
//!   the typed value.
//! - **Text** sorts by its bytes (SQLite's BINARY collation). The
//!   terminator `0x00 0x01` is below every byte a longer text could
//!   continue with (a 0x00 in the text is written `0x00 0xFF`), so a text
//!   sorts before the texts it is a prefix of, and no encoded value is a
//!   prefix of another: a tuple is the plain concatenation of its values.
//!
//! # Rows: compact
//!
//! A row is not compared, only stored, so it is written for size:
//!
//! ```text
//! row      = 0x01 (format version) | column count (varint) | value*
//! value    = 0x00                         NULL
//!          | 0x01 | zigzag varint         INTEGER
//!          | 0x02 | f64 little-endian (8) REAL
//!          | 0x03 | length varint | UTF-8 TEXT
//!          | 0x04 | 0x05                  BOOLEAN false | true
//! varint   = LEB128: 7 bits per byte, low first, high bit = more follows
//! ```
//!
//! The engine and the WAL checksum every record, so the row carries no
//! checksum of its own; it is still decoded as untrusted bytes: every
//! length is checked, and a bad byte is an [`Error::Corrupted`] saying what
//! and where, never a panic.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::value::{Row, Value};

/// Key tag of NULL (lowest: NULLs sort first).
const KEY_NULL: u8 = 0x01;
/// Key tag of a number (INTEGER, REAL, or BOOLEAN as 0 and 1).
const KEY_NUMBER: u8 = 0x02;
/// Key tag of TEXT.
const KEY_TEXT: u8 = 0x03;
/// In key text, 0x00 is followed by this byte when it is part of the text…
const TEXT_ESCAPED_ZERO: u8 = 0xFF;
/// …and by this one when it ends the text.
const TEXT_END: u8 = 0x01;

/// The row format version written first in every row.
const ROW_VERSION: u8 = 0x01;
/// Row tag of NULL.
const ROW_NULL: u8 = 0x00;
/// Row tag of an INTEGER (zigzag varint).
const ROW_INTEGER: u8 = 0x01;
/// Row tag of a REAL (8 bytes little-endian).
const ROW_REAL: u8 = 0x02;
/// Row tag of TEXT (varint length, then the bytes).
const ROW_TEXT: u8 = 0x03;
/// Row tag of FALSE.
const ROW_FALSE: u8 = 0x04;
/// Row tag of TRUE.
const ROW_TRUE: u8 = 0x05;

/// The most columns a row may declare (a guard against a corrupted count
/// asking for a huge allocation).
const MAX_COLUMNS: u64 = 1 << 16;

// ---------------------------------------------------------------- keys

/// Appends the key encoding of `value` to `out`.
pub fn encode_key_value(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.push(KEY_NULL),
        Value::Boolean(b) => encode_number(f64::from(u8::from(*b)), 0, out),
        Value::Integer(i) => {
            let nearest = *i as f64;
            // Exact in i128: |i| < 2^63 and the float is an integer there.
            let residual = i128::from(*i) - nearest as i128;
            encode_number(nearest, residual, out);
        }
        Value::Real(r) => encode_number(*r, 0, out),
        Value::Text(text) => {
            out.push(KEY_TEXT);
            for &byte in text.as_bytes() {
                out.push(byte);
                if byte == 0 {
                    out.push(TEXT_ESCAPED_ZERO);
                }
            }
            out.extend_from_slice(&[0, TEXT_END]);
        }
    }
}

/// The length of `value`'s key encoding ([`encode_key_value`]), for a
/// caller that sizes a key's buffer exactly before encoding into it.
pub(crate) fn encoded_key_len(value: &Value) -> usize {
    match value {
        Value::Null => 1,
        // The tag, the ordered float and the residual.
        Value::Boolean(_) | Value::Integer(_) | Value::Real(_) => 1 + 8 + 2,
        Value::Text(text) => {
            let zeros = text.bytes().filter(|&b| b == 0).count();
            1 + text.len() + zeros + 2
        }
    }
}

fn encode_number(float: f64, residual: i128, out: &mut Vec<u8>) {
    let float = if float == 0.0 {
        0.0 // -0.0 == 0.0
    } else if float.is_nan() {
        f64::NAN
    } else {
        float
    };
    let bits = float.to_bits();
    let ordered = if bits >> 63 == 0 {
        bits | (1 << 63)
    } else {
        !bits
    };
    // |residual| <= 512 by construction (half the float spacing at 2^63).
    let residual = i16::try_from(residual).unwrap_or(0);
    out.push(KEY_NUMBER);
    out.extend_from_slice(&ordered.to_be_bytes());
    out.extend_from_slice(&((residual as u16) ^ 0x8000).to_be_bytes());
}

/// The key encoding of a tuple: its values' encodings, concatenated.
pub fn encode_key(values: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for value in values {
        encode_key_value(value, &mut out);
    }
    out
}

/// A cursor over untrusted bytes that names what it was reading when they
/// run out.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8], what: &'static str) -> Self {
        Reader {
            bytes,
            pos: 0,
            what,
        }
    }

    fn corrupted(&self, detail: impl std::fmt::Display) -> Error {
        Error::Corrupted(format!("{} at byte {}: {detail}", self.what, self.pos))
    }

    fn is_empty(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    fn byte(&mut self) -> Result<u8> {
        let byte = *self
            .bytes
            .get(self.pos)
            .ok_or_else(|| self.corrupted("ends early"))?;
        self.pos += 1;
        Ok(byte)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| self.corrupted(format!("ends early (wanted {n} more bytes)")))?;
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let slice = self.take(N)?;
        let mut array = [0; N];
        array.copy_from_slice(slice);
        Ok(array)
    }

    /// An LEB128 varint. Read off the remaining slice rather than byte by
    /// byte through [`Reader::byte`], and inlined: a row scan reads about
    /// one per column (integers, lengths), and the call cost more than the
    /// reading. The errors (and the position they name) are those of the
    /// byte-by-byte reading, built out of line ([`Reader::bad_varint`]).
    #[inline(always)]
    fn varint(&mut self) -> Result<u64> {
        let rest = self.bytes.get(self.pos..).unwrap_or_default();
        let mut value: u64 = 0;
        for (i, &byte) in rest.iter().take(10).enumerate() {
            let bits = u64::from(byte & 0x7F);
            if i == 9 && bits > 1 {
                return Err(self.bad_varint());
            }
            value |= bits << (7 * i);
            if byte & 0x80 == 0 {
                self.pos += i + 1;
                return Ok(value);
            }
        }
        Err(self.bad_varint())
    }

    /// The error of the damaged varint at the reader's position, which it
    /// moves where reading byte by byte would have stopped.
    #[cold]
    #[inline(never)]
    fn bad_varint(&mut self) -> Error {
        let rest = self.bytes.len().saturating_sub(self.pos);
        if rest < 10 {
            self.pos = self.bytes.len();
            return self.corrupted("ends early");
        }
        self.pos += 10;
        let last = self.bytes.get(self.pos - 1).copied().unwrap_or_default();
        if last & 0x7F > 1 {
            self.corrupted("varint overflows 64 bits")
        } else {
            self.corrupted("varint longer than 10 bytes")
        }
    }

    #[inline]
    fn len(&mut self) -> Result<usize> {
        let len = self.varint()?;
        usize::try_from(len)
            .ok()
            .filter(|&len| len <= self.bytes.len().saturating_sub(self.pos))
            .ok_or_else(|| self.corrupted(format!("length {len} runs past the end")))
    }

    /// A length-prefixed UTF-8 text, borrowed from the bytes.
    fn str(&mut self) -> Result<&'a str> {
        let len = self.len()?;
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes).map_err(|_| self.corrupted("text is not UTF-8"))
    }

    fn string(&mut self) -> Result<String> {
        let len = self.len()?;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| self.corrupted("text is not UTF-8"))
    }

    fn key_value(&mut self) -> Result<Value> {
        match self.byte()? {
            KEY_NULL => Ok(Value::Null),
            KEY_NUMBER => {
                let ordered = u64::from_be_bytes(self.array()?);
                let bits = if ordered >> 63 == 1 {
                    ordered & !(1 << 63)
                } else {
                    !ordered
                };
                let float = f64::from_bits(bits);
                let residual = i128::from((u16::from_be_bytes(self.array()?) ^ 0x8000) as i16);
                if !float.is_finite() || float.fract() != 0.0 {
                    if residual != 0 {
                        return Err(self.corrupted("a fractional number with a residual"));
                    }
                    return Ok(Value::Real(float));
                }
                // A whole float below 2^64 in magnitude is exact in i128.
                if float.abs() > 1e19 {
                    if residual != 0 {
                        return Err(self.corrupted("a huge number with a residual"));
                    }
                    return Ok(Value::Real(float));
                }
                match i64::try_from(float as i128 + residual) {
                    Ok(i) if i as f64 == float => Ok(Value::Integer(i)),
                    _ if residual == 0 => Ok(Value::Real(float)),
                    _ => Err(self.corrupted("number residual does not match its float")),
                }
            }
            KEY_TEXT => {
                let mut text = Vec::new();
                loop {
                    match self.byte()? {
                        0 => match self.byte()? {
                            TEXT_END => break,
                            TEXT_ESCAPED_ZERO => text.push(0),
                            other => {
                                return Err(
                                    self.corrupted(format!("text escape 0x00 {other:#04x}"))
                                );
                            }
                        },
                        byte => text.push(byte),
                    }
                }
                let text =
                    String::from_utf8(text).map_err(|_| self.corrupted("key text is not UTF-8"))?;
                Ok(Value::Text(Arc::from(text)))
            }
            tag => Err(self.corrupted(format!("unknown key tag {tag:#04x}"))),
        }
    }
}

/// Decodes `count` key-encoded values from the front of `bytes`, returning
/// them with the bytes that follow (an index entry's row key, say).
pub fn decode_key_prefix(bytes: &[u8], count: usize) -> Result<(Vec<Value>, &[u8])> {
    let mut reader = Reader::new(bytes, "SQL key");
    let mut values = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        values.push(reader.key_value()?);
    }
    Ok((values, &bytes[reader.pos..]))
}

/// Decodes a whole key-encoded tuple. A number comes back as an INTEGER
/// when it is a whole number that fits in 64 bits, as a REAL otherwise.
pub fn decode_key(bytes: &[u8]) -> Result<Vec<Value>> {
    let mut reader = Reader::new(bytes, "SQL key");
    let mut values = Vec::new();
    while !reader.is_empty() {
        values.push(reader.key_value()?);
    }
    Ok(values)
}

/// The smallest byte string greater than every string that starts with
/// `prefix` (`None` if there is none: the prefix is all 0xFF). Turns "all
/// keys starting with P" into the engine range `P..successor(P)`.
pub fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

// ---------------------------------------------------------------- rows

/// Appends `value` as an LEB128 varint.
pub(crate) fn put_varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Appends a length-prefixed string.
pub(crate) fn put_string(s: &str, out: &mut Vec<u8>) {
    put_varint(s.len() as u64, out);
    out.extend_from_slice(s.as_bytes());
}

fn put_row_value(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.push(ROW_NULL),
        Value::Integer(i) => {
            out.push(ROW_INTEGER);
            put_varint(((i << 1) ^ (i >> 63)) as u64, out);
        }
        Value::Real(r) => {
            out.push(ROW_REAL);
            out.extend_from_slice(&r.to_le_bytes());
        }
        Value::Text(t) => {
            out.push(ROW_TEXT);
            put_string(t, out);
        }
        Value::Boolean(false) => out.push(ROW_FALSE),
        Value::Boolean(true) => out.push(ROW_TRUE),
    }
}

impl Reader<'_> {
    fn row_value(&mut self) -> Result<Value> {
        match self.byte()? {
            ROW_NULL => Ok(Value::Null),
            ROW_INTEGER => Ok(Value::Integer(unzigzag(self.varint()?))),
            ROW_REAL => Ok(Value::Real(f64::from_le_bytes(self.array()?))),
            // One allocation: straight from the bytes into the shared text.
            ROW_TEXT => Ok(Value::Text(Arc::from(self.str()?))),
            ROW_FALSE => Ok(Value::Boolean(false)),
            ROW_TRUE => Ok(Value::Boolean(true)),
            tag => Err(self.corrupted(format!("unknown value tag {tag:#04x}"))),
        }
    }

    /// [`Reader::row_value`] into `slot`, keeping the text there when it
    /// equals the one read (no allocation). Numbers, what a scan reads
    /// most, are read here without the call.
    #[inline]
    fn row_value_into(&mut self, slot: &mut Value) -> Result<()> {
        match self.bytes.get(self.pos) {
            Some(&ROW_INTEGER) => {
                self.pos += 1;
                *slot = Value::Integer(unzigzag(self.varint()?));
            }
            Some(&ROW_REAL) => {
                self.pos += 1;
                *slot = Value::Real(f64::from_le_bytes(self.array()?));
            }
            Some(&ROW_TEXT) => {
                self.pos += 1;
                let text = self.str()?;
                store_text(slot, text);
            }
            _ => *slot = self.row_value()?,
        }
        Ok(())
    }

    /// Steps over one value of the row format without building it: the
    /// tag and the length are checked as [`Reader::row_value`] checks
    /// them, but a text is not checked to be UTF-8 (nobody will read it).
    fn skip_row_value(&mut self) -> Result<()> {
        match self.byte()? {
            ROW_NULL | ROW_FALSE | ROW_TRUE => Ok(()),
            ROW_INTEGER => self.varint().map(drop),
            ROW_REAL => self.take(8).map(drop),
            ROW_TEXT => {
                let len = self.len()?;
                self.take(len).map(drop)
            }
            tag => Err(self.corrupted(format!("unknown value tag {tag:#04x}"))),
        }
    }
}

/// Encodes a row in the compact row format.
pub fn encode_row(row: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_row_into(row, &mut out);
    out
}

/// [`encode_row`] into `out`, replacing what it held. A writer that keeps
/// `out` from row to row and copies each row out of it at its exact size
/// (`Bytes::copy_from_slice`) allocates once per row: a vector sized by
/// an upper bound and turned into `Bytes` allocates twice, as `Bytes`
/// shares a vector whose length is not its capacity through a second,
/// small allocation.
pub fn encode_row_into(row: &[Value], out: &mut Vec<u8>) {
    // An upper bound of the encoded size (tag, varint length, bytes), so
    // that the row is written into one allocation.
    let size: usize = row
        .iter()
        .map(|v| match v {
            Value::Text(t) => 1 + 10 + t.len(),
            _ => 1 + 10,
        })
        .sum();
    out.clear();
    out.reserve(1 + 10 + size);
    out.push(ROW_VERSION);
    put_varint(row.len() as u64, out);
    for value in row {
        put_row_value(value, out);
    }
}

/// Decodes a row written by [`encode_row`]; every byte must be used.
pub fn decode_row(bytes: &[u8]) -> Result<Row> {
    decode_row_columns(bytes, &[])
}

/// Decodes the values of a row written by [`encode_row`] that `wanted`
/// marks, and puts NULL in place of the others: projection pushdown, a
/// scan builds only the values its query reads (a column past the end of
/// `wanted` is wanted). The values skipped are still walked, tag and
/// length checked, and every byte must be used, so a damaged row is an
/// error whichever columns are asked for.
pub fn decode_row_columns(bytes: &[u8], wanted: &[bool]) -> Result<Row> {
    let mut row = Vec::new();
    decode_row_columns_into(bytes, wanted, &mut row)?;
    Ok(row)
}

/// [`decode_row_columns`] into `row`, whose old values are replaced: a scan
/// decodes every row into one buffer, and allocates only when the row is
/// wider than any before it. A text equal to the one already in its
/// column (the previous row's) is kept rather than built again, so a
/// column that repeats from row to row (a flag, a status) costs no
/// allocation; it is the same value either way.
///
/// A row is first read by `decode_common_row`, the walk of the common
/// case; only a row it does not take (a new buffer, a damaged row, an
/// uncommon shape) is read by the general walk, which names the error.
#[inline]
pub fn decode_row_columns_into(bytes: &[u8], wanted: &[bool], row: &mut Row) -> Result<()> {
    if decode_common_row(bytes, wanted, row) {
        return Ok(());
    }
    decode_row_general(bytes, wanted, row)
}

/// The general walk of [`decode_row_columns_into`]: any row, and the
/// exact error (what is wrong, at which byte) of a damaged one. Not
/// inlined, so that the common case does not pay for its stack frame.
#[inline(never)]
fn decode_row_general(bytes: &[u8], wanted: &[bool], row: &mut Row) -> Result<()> {
    let mut reader = Reader::new(bytes, "SQL row");
    let version = reader.byte()?;
    if version != ROW_VERSION {
        return Err(reader.corrupted(format!("row format version {version}, expected 1")));
    }
    let count = reader.varint()?;
    if count > MAX_COLUMNS {
        return Err(reader.corrupted(format!("{count} columns")));
    }
    let count = count as usize;
    if row.len() != count {
        row.truncate(count);
        row.resize(count, Value::Null);
    }
    for (column, slot) in row.iter_mut().enumerate() {
        if wanted.get(column).copied().unwrap_or(true) {
            reader.row_value_into(slot)?;
        } else {
            reader.skip_row_value()?;
            if !slot.is_null() {
                *slot = Value::Null;
            }
        }
    }
    if !reader.is_empty() {
        return Err(reader.corrupted("trailing bytes after the last column"));
    }
    Ok(())
}

/// Stores a decoded TEXT in `slot`, allocating only when it must: an
/// equal text already there is kept, and an old text that nobody else
/// holds and that has the new one's length is overwritten in place (a
/// point select into a recycled row, a scan's batch row).
#[inline]
fn store_text(slot: &mut Value, text: &str) {
    match slot {
        Value::Text(old) if **old == *text => {}
        Value::Text(old) => match Arc::get_mut(old) {
            Some(kept) if kept.len() == text.len() => overwrite_str(kept, text),
            _ => *old = Arc::from(text),
        },
        _ => *slot = Value::Text(Arc::from(text)),
    }
}

/// Overwrites `kept` with `text`, which has its length in bytes.
#[expect(
    unsafe_code,
    reason = "str has no safe way to overwrite its bytes with another str's"
)]
fn overwrite_str(kept: &mut str, text: &str) {
    // SAFETY: every byte of `kept` is overwritten by `text`'s, a valid
    // `str` of the same length (`copy_from_slice` panics, writing nothing,
    // if it is not), so `kept` is valid UTF-8 again before the borrow
    // ends; nothing reads it in between.
    unsafe { kept.as_bytes_mut() }.copy_from_slice(text.as_bytes());
}

/// [`decode_row_columns_into`] for a scan that tests its rows as it
/// decodes them (a filter's integer bounds, a hash join's key bits) and
/// drops the ones a test rejects: `rejects(i, value)` is asked of the
/// value of each column of `stops` (ascending), `i` its place in
/// `stops`, as soon as it is decoded, and the first `true` ends the
/// decoding. `Ok(true)`: the row was decoded whole and no test rejected
/// it; `Ok(false)`: a test rejected it, and `row` holds only the columns
/// up to that one (the others are left as they were: the caller decodes
/// its next row over it).
///
/// Why stop there: q3 of the SQL bench drops most of `lineitem` by the
/// key bits of `l_orderkey`, its second column; walking the eight
/// columns after it only to drop the row was about half of the scan's
/// decoding. The price: the bytes after the rejecting column of a
/// rejected row are not read, so damage there is not reported by this
/// scan (it is by any scan that keeps the row, by
/// [`decode_row_columns_into`], and by `pydb check`; the engine and the
/// WAL checksum every record). What was read is checked as in the full
/// walk, and a row the common walk cannot take (damaged before the
/// rejecting column, uncommon) goes to the general walk whole and then
/// to the tests: the same error, or the same answer, as a decoding
/// followed by the tests.
pub(crate) fn decode_row_columns_tested_into(
    bytes: &[u8],
    wanted: &[bool],
    row: &mut Row,
    stops: &[usize],
    mut rejects: impl FnMut(usize, &Value) -> bool,
) -> Result<bool> {
    if let Some((values, wanted)) = common_row_values(bytes, wanted, row.len()) {
        match decode_tested_columns(values, wanted, row, stops, &mut rejects) {
            CommonRow::Kept => return Ok(true),
            CommonRow::Rejected => return Ok(false),
            CommonRow::Uncommon => {}
        }
    }
    general_then_tested(bytes, wanted, row, stops, rejects)
}

/// [`decode_common_columns`] for a scan with tests, as one call.
#[inline(never)]
fn decode_tested_columns(
    values: &[u8],
    wanted: &[bool],
    row: &mut [Value],
    stops: &[usize],
    rejects: &mut impl FnMut(usize, &Value) -> bool,
) -> CommonRow {
    decode_common_columns(values, wanted, row, stops, rejects)
}

/// The fallback of [`decode_row_columns_tested_into`]: the whole row by
/// the general walk (its exact error), then every test.
#[inline(never)]
fn general_then_tested(
    bytes: &[u8],
    wanted: &[bool],
    row: &mut Row,
    stops: &[usize],
    mut rejects: impl FnMut(usize, &Value) -> bool,
) -> Result<bool> {
    decode_row_general(bytes, wanted, row)?;
    Ok(!stops
        .iter()
        .enumerate()
        .any(|(i, &column)| row.get(column).is_some_and(|value| rejects(i, value))))
}

/// The mask of a decoding that wants every column (`wanted` empty).
static EVERY_COLUMN: [bool; 0x80] = [true; 0x80];

/// The header of a row the common walk takes: this format version and a
/// one-byte column count equal to `width` (the buffer a scan decodes
/// every row into). Gives the bytes of the values and `wanted` as long as
/// the row (an empty one: every column); `None` for anything else, left
/// to the general walk, as is a `wanted` shorter than the row but not
/// empty, which no scan makes.
#[inline(always)]
fn common_row_values<'a, 'w>(
    bytes: &'a [u8],
    wanted: &'w [bool],
    width: usize,
) -> Option<(&'a [u8], &'w [bool])> {
    let [ROW_VERSION, count, ref values @ ..] = *bytes else {
        return None;
    };
    if count >= 0x80 || usize::from(count) != width {
        return None;
    }
    let wanted = if wanted.is_empty() {
        EVERY_COLUMN.get(..width)?
    } else {
        wanted.get(..width)?
    };
    Some((values, wanted))
}

/// The common case of [`decode_row_columns_into`], read in one pass that
/// keeps its position in registers and has no `Result` to carry: a row
/// of this format version whose column count is one byte and equals
/// `row.len()` (the buffer a scan decodes every row into), each varint
/// in it (integers, text lengths) at most nine bytes long. It says
/// whether it decoded the row; `false` (any damage, a ten-byte varint, a
/// buffer of another width, a `wanted` shorter than the row but not
/// empty, which no scan makes) leaves the row to the general walk, which
/// sets every slot again, so what this wrote on the way is overwritten.
/// It accepts only rows the general walk accepts, with the same values:
/// every value's tag and length are checked, a wanted text is checked to
/// be UTF-8, and every byte must be used.
///
/// Why a second walk: a table scan decodes each of its rows here, and
/// the general walk's reader (its position in memory, a `Result` at
/// every step, the error's context kept live across the loop) cost about
/// 50 instructions a column. Here a column is its tag's dispatch and its
/// length, and a wanted one its value; a skipped one never builds its
/// value.
#[inline]
fn decode_common_row(bytes: &[u8], wanted: &[bool], row: &mut [Value]) -> bool {
    let Some((values, wanted)) = common_row_values(bytes, wanted, row.len()) else {
        return false;
    };
    matches!(
        decode_common_columns(values, wanted, row, &[], &mut |_, _| false),
        CommonRow::Kept
    )
}

/// What the common walk made of a row.
enum CommonRow {
    /// Decoded whole, and no test rejected it.
    Kept,
    /// A test rejected it; the decoding stopped there.
    Rejected,
    /// A row the general walk must read.
    Uncommon,
}

/// The loop of the common walk ([`decode_common_row`],
/// [`decode_row_columns_tested_into`]): the values in `values` (the row
/// after its header) into `row`, one a slot, `wanted` (as long as `row`)
/// saying which are built; a column of `stops` is tested as soon as its
/// value is built. The next stop is held as a column number (past every
/// column when there is none left), so a scan without tests pays one
/// comparison a column. Inlined into its two callers: a tested scan's
/// (not inlined further, [`decode_tested_columns`], so that its loop gets
/// the registers to itself) and [`decode_common_row`], which a point read
/// inlines whole (a call here cost a point select about 100
/// instructions, session 19).
#[inline(always)]
fn decode_common_columns(
    values: &[u8],
    wanted: &[bool],
    row: &mut [Value],
    stops: &[usize],
    rejects: &mut impl FnMut(usize, &Value) -> bool,
) -> CommonRow {
    let mut rest = values;
    let mut stop = 0;
    let mut next_stop = stops.first().copied().unwrap_or(usize::MAX);
    for (column, (slot, &want)) in row.iter_mut().zip(wanted).enumerate() {
        let Some((&tag, payload)) = rest.split_first() else {
            return CommonRow::Uncommon;
        };
        let len = if want {
            let built = match tag {
                ROW_INTEGER => common_varint(payload).map(|(zigzag, len)| {
                    *slot = Value::Integer(unzigzag(zigzag));
                    len
                }),
                ROW_REAL => payload.first_chunk::<8>().map(|real| {
                    *slot = Value::Real(f64::from_le_bytes(*real));
                    8
                }),
                ROW_TEXT => common_text(payload).and_then(|(text, len)| {
                    let text = std::str::from_utf8(text).ok()?;
                    store_text(slot, text);
                    Some(len)
                }),
                ROW_NULL => {
                    *slot = Value::Null;
                    Some(0)
                }
                ROW_FALSE | ROW_TRUE => {
                    *slot = Value::Boolean(tag == ROW_TRUE);
                    Some(0)
                }
                _ => None,
            };
            let Some(len) = built else {
                return CommonRow::Uncommon;
            };
            len
        } else {
            let skipped = match tag {
                ROW_INTEGER => match payload {
                    [first, ..] if *first < 0x80 => Some(1),
                    [_, second, ..] if *second < 0x80 => Some(2),
                    _ => common_varint(payload).map(|(_, len)| len),
                },
                ROW_REAL => Some(8),
                // Not checked to be UTF-8, as the general skip: nobody reads it.
                ROW_TEXT => common_text(payload).map(|(_, len)| len),
                ROW_NULL | ROW_FALSE | ROW_TRUE => Some(0),
                _ => None,
            };
            let Some(len) = skipped else {
                return CommonRow::Uncommon;
            };
            if !slot.is_null() {
                *slot = Value::Null;
            }
            len
        };
        let Some(next) = payload.get(len..) else {
            return CommonRow::Uncommon;
        };
        rest = next;
        if column == next_stop {
            if rejects(stop, slot) {
                return CommonRow::Rejected;
            }
            stop += 1;
            next_stop = stops.get(stop).copied().unwrap_or(usize::MAX);
        }
    }
    if rest.is_empty() {
        CommonRow::Kept
    } else {
        CommonRow::Uncommon
    }
}

/// The INTEGER a row's zigzag varint holds (0, -1, 1, -2, ... are 0, 1,
/// 2, 3, ...): the one decoding of both walks.
#[inline(always)]
fn unzigzag(zigzag: u64) -> i64 {
    ((zigzag >> 1) as i64) ^ -((zigzag & 1) as i64)
}

/// A varint of at most nine bytes at the start of `bytes` (it cannot
/// overflow 64 bits: only a tenth byte can) and its length; `None` when
/// the bytes end first or it is longer (for the general walk). One to
/// three bytes, the integers and lengths a row holds most (a table's keys
/// past 8,191 take three), without the loop; the loop is a plain index
/// walk, not `enumerate().take().skip()`, whose `nth` call per varint was
/// about 25 instructions (q3's `l_id` and `l_orderkey` are three bytes).
#[inline(always)]
fn common_varint(bytes: &[u8]) -> Option<(u64, usize)> {
    let first = u64::from(*bytes.first()?);
    if first < 0x80 {
        return Some((first, 1));
    }
    let second = u64::from(*bytes.get(1)?);
    let mut value = (first & 0x7F) | (second & 0x7F) << 7;
    if second < 0x80 {
        return Some((value, 2));
    }
    let third = u64::from(*bytes.get(2)?);
    value |= (third & 0x7F) << 14;
    if third < 0x80 {
        return Some((value, 3));
    }
    let mut i = 3;
    while i < 9 {
        let byte = u64::from(*bytes.get(i)?);
        value |= (byte & 0x7F) << (7 * i);
        if byte < 0x80 {
            return Some((value, i + 1));
        }
        i += 1;
    }
    None
}

/// A text's bytes after its tag (a [`common_varint`] length, then the
/// bytes) and the length of both; `None` if the bytes end first.
#[inline(always)]
fn common_text(payload: &[u8]) -> Option<(&[u8], usize)> {
    let (len, start) = common_varint(payload)?;
    let text = payload.get(start..)?.get(..usize::try_from(len).ok()?)?;
    Some((text, start + text.len()))
}

// ------------------------------------------------ catalog records' pieces

/// Writes the pieces of catalog records (see `store::catalog`).
pub(crate) struct RecordWriter {
    pub(crate) out: Vec<u8>,
}

impl RecordWriter {
    pub(crate) fn new(version: u8) -> Self {
        RecordWriter { out: vec![version] }
    }
    pub(crate) fn u64(&mut self, v: u64) {
        put_varint(v, &mut self.out);
    }
    pub(crate) fn byte(&mut self, b: u8) {
        self.out.push(b);
    }
    pub(crate) fn string(&mut self, s: &str) {
        put_string(s, &mut self.out);
    }
    pub(crate) fn value(&mut self, v: &Value) {
        put_row_value(v, &mut self.out);
    }
    /// An f64, 8 bytes little-endian.
    pub(crate) fn f64(&mut self, v: f64) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }
}

/// Reads the pieces of catalog records.
pub(crate) struct RecordReader<'a>(Reader<'a>);

impl<'a> RecordReader<'a> {
    pub(crate) fn new(bytes: &'a [u8], what: &'static str, version: u8) -> Result<Self> {
        let mut reader = Reader::new(bytes, what);
        let found = reader.byte()?;
        if found != version {
            return Err(reader.corrupted(format!("format version {found}, expected {version}")));
        }
        Ok(RecordReader(reader))
    }
    pub(crate) fn u64(&mut self) -> Result<u64> {
        self.0.varint()
    }
    /// A count of items that each take at least one byte (so a corrupted
    /// count cannot ask for more memory than the record holds).
    pub(crate) fn count(&mut self) -> Result<usize> {
        self.0.len()
    }
    pub(crate) fn usize(&mut self) -> Result<usize> {
        let v = self.0.varint()?;
        usize::try_from(v).map_err(|_| self.0.corrupted(format!("{v} is too large")))
    }
    pub(crate) fn byte(&mut self) -> Result<u8> {
        self.0.byte()
    }
    pub(crate) fn string(&mut self) -> Result<String> {
        self.0.string()
    }
    pub(crate) fn value(&mut self) -> Result<Value> {
        self.0.row_value()
    }
    /// An f64 written by [`RecordWriter::f64`].
    pub(crate) fn f64(&mut self) -> Result<f64> {
        Ok(f64::from_le_bytes(self.0.array()?))
    }
    pub(crate) fn corrupted(&self, detail: impl std::fmt::Display) -> Error {
        self.0.corrupted(detail)
    }
    pub(crate) fn finish(self) -> Result<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self.0.corrupted("trailing bytes"))
        }
    }
}

/// Orders two values as the key encoding does (NULL < numbers < TEXT;
/// numbers, booleans as 0 and 1, by value; text by bytes). Tests use it as
/// the model.
#[cfg(test)]
fn model_cmp(a: &Value, b: &Value) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Null => 0,
            Value::Boolean(_) | Value::Integer(_) | Value::Real(_) => 1,
            Value::Text(_) => 2,
        }
    }
    // Exact comparison of an integer and a float.
    fn cmp_int_real(i: i64, r: f64) -> Ordering {
        if r.is_nan() {
            return Ordering::Less;
        }
        if r >= 9.3e18 {
            return Ordering::Less;
        }
        if r <= -9.3e18 {
            return Ordering::Greater;
        }
        let floor = r.floor();
        match (i128::from(i)).cmp(&(floor as i128)) {
            Ordering::Equal if r > floor => Ordering::Less,
            other => other,
        }
    }
    let number = |v: &Value| match v {
        Value::Boolean(b) => Value::Integer(i64::from(*b)),
        other => other.clone(),
    };
    let (a, b) = (&number(a), &number(b));
    match (a, b) {
        (Value::Integer(x), Value::Integer(y)) => x.cmp(y),
        (Value::Real(x), Value::Real(y)) => match (x.is_nan(), y.is_nan()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) => x.partial_cmp(y).unwrap_or(Ordering::Equal),
        },
        (Value::Integer(i), Value::Real(r)) => cmp_int_real(*i, *r),
        (Value::Real(r), Value::Integer(i)) => cmp_int_real(*i, *r).reverse(),
        (Value::Text(x), Value::Text(y)) => x.as_bytes().cmp(y.as_bytes()),
        _ => rank(a).cmp(&rank(b)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::cmp::Ordering;

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Boolean),
            any::<i64>().prop_map(Value::Integer),
            prop_oneof![
                (-5i64..5).prop_map(Value::Integer),
                (i64::MAX - 3..=i64::MAX).prop_map(Value::Integer),
                (i64::MIN..i64::MIN + 3).prop_map(Value::Integer),
                ((1i64 << 53) - 3..(1i64 << 53) + 1500).prop_map(Value::Integer),
            ],
            any::<f64>().prop_map(Value::Real),
            prop_oneof![
                (-5i32..5).prop_map(|i| Value::Real(f64::from(i) / 2.0)),
                Just(Value::Real(9.223372036854776e18)),
                Just(Value::Real(-9.223372036854776e18)),
                Just(Value::Real(9007199254740992.0)),
                Just(Value::Real(f64::INFINITY)),
                Just(Value::Real(-0.0)),
            ],
            "[a-c\\x00\u{e9}]{0,4}".prop_map(|s| Value::Text(Arc::from(s))),
        ]
    }

    /// What a key decodes to: whole numbers in range become INTEGER.
    fn normalized(v: &Value) -> Value {
        match v {
            Value::Boolean(b) => Value::Integer(i64::from(*b)),
            Value::Real(r) if r.is_nan() => Value::Real(f64::NAN),
            Value::Real(r) if *r == 0.0 => Value::Integer(0),
            Value::Real(r)
                if r.fract() == 0.0 && *r >= -9.223372036854776e18 && *r < 9.223372036854776e18 =>
            {
                Value::Integer(*r as i64)
            }
            other => other.clone(),
        }
    }

    fn same(a: &Value, b: &Value) -> bool {
        match (a, b) {
            (Value::Real(x), Value::Real(y)) => x.to_bits() == y.to_bits(),
            _ => a == b,
        }
    }

    /// `bytes` with one byte replaced and then cut short, where the
    /// property test drew a place for each.
    fn damaged(
        mut bytes: Vec<u8>,
        damage: Option<(prop::sample::Index, u8)>,
        cut: Option<prop::sample::Index>,
    ) -> Vec<u8> {
        if let (Some((at, byte)), false) = (damage, bytes.is_empty()) {
            let at = at.index(bytes.len());
            bytes[at] = byte;
        }
        if let Some(cut) = cut {
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        bytes
    }

    proptest! {
        #[test]
        fn key_round_trip(values in proptest::collection::vec(value(), 0..4)) {
            let decoded = decode_key(&encode_key(&values)).unwrap();
            prop_assert_eq!(decoded.len(), values.len());
            for (d, v) in decoded.iter().zip(&values) {
                prop_assert!(same(d, &normalized(v)), "{:?} decoded as {:?}", v, d);
            }
        }

        #[test]
        fn key_order_is_value_order(a in value(), b in value()) {
            let (ea, eb) = (encode_key(std::slice::from_ref(&a)), encode_key(std::slice::from_ref(&b)));
            prop_assert_eq!(ea.cmp(&eb), model_cmp(&a, &b), "{:?} vs {:?}", a, b);
        }

        /// The executor sorts and compares with `Value::total_cmp`; an index
        /// must hand it rows in that same order (NaN, which SQL never
        /// produces, and the sign of zero, which SQL ignores, aside).
        #[test]
        fn key_order_is_the_executors_order(a in value(), b in value()) {
            let clean = |v: &Value| match v {
                Value::Real(r) if r.is_nan() => None,
                Value::Real(r) if *r == 0.0 => Some(Value::Real(0.0)),
                other => Some(other.clone()),
            };
            if let (Some(a), Some(b)) = (clean(&a), clean(&b)) {
                let (ea, eb) = (encode_key(std::slice::from_ref(&a)), encode_key(std::slice::from_ref(&b)));
                prop_assert_eq!(ea.cmp(&eb), a.total_cmp(&b), "{:?} vs {:?}", a, b);
            }
        }

        #[test]
        fn tuple_order_is_lexicographic(
            a in proptest::collection::vec(value(), 0..3),
            b in proptest::collection::vec(value(), 0..3),
        ) {
            let model = a.iter().zip(&b).map(|(x, y)| model_cmp(x, y))
                .find(|o| *o != Ordering::Equal)
                .unwrap_or(a.len().cmp(&b.len()));
            prop_assert_eq!(encode_key(&a).cmp(&encode_key(&b)), model);
        }

        #[test]
        fn row_round_trip(row in proptest::collection::vec(value(), 0..6)) {
            let decoded = decode_row(&encode_row(&row)).unwrap();
            prop_assert_eq!(decoded.len(), row.len());
            for (d, v) in decoded.iter().zip(&row) {
                prop_assert!(same(d, v), "{:?} decoded as {:?}", v, d);
            }
        }

        /// Projection pushdown: the wanted values decode as in a whole
        /// row, the others are NULL, and the row keeps its width.
        #[test]
        fn row_columns_decode_only_the_wanted(
            row in proptest::collection::vec(value(), 0..6),
            wanted in proptest::collection::vec(any::<bool>(), 0..8),
        ) {
            let decoded = decode_row_columns(&encode_row(&row), &wanted).unwrap();
            prop_assert_eq!(decoded.len(), row.len());
            for (i, (d, v)) in decoded.iter().zip(&row).enumerate() {
                if wanted.get(i).copied().unwrap_or(true) {
                    prop_assert!(same(d, v), "{:?} decoded as {:?}", v, d);
                } else {
                    prop_assert_eq!(d, &Value::Null);
                }
            }
        }

        /// A skipped value is still checked: a truncated row is an error
        /// even when no column is wanted.
        #[test]
        fn truncated_rows_are_corrupted_with_columns_skipped(
            row in proptest::collection::vec(value(), 1..4),
        ) {
            let bytes = encode_row(&row);
            let none = vec![false; row.len()];
            for len in 0..bytes.len() {
                prop_assert!(matches!(
                    decode_row_columns(&bytes[..len], &none),
                    Err(Error::Corrupted(_))
                ));
            }
        }

        /// The varint read off the slice is the byte-by-byte reading: the
        /// same value and position, or the same error at the same byte.
        #[test]
        fn varints_read_as_byte_by_byte(
            bytes in proptest::collection::vec(prop_oneof![any::<u8>(), Just(0x80u8), Just(0xFFu8), Just(0x81u8), Just(1u8)], 0..14),
            start in 0usize..3,
        ) {
            fn byte_by_byte(reader: &mut Reader<'_>) -> Result<u64> {
                let mut value: u64 = 0;
                for shift in (0..64).step_by(7) {
                    let byte = reader.byte()?;
                    let bits = u64::from(byte & 0x7F);
                    if shift == 63 && bits > 1 {
                        return Err(reader.corrupted("varint overflows 64 bits"));
                    }
                    value |= bits << shift;
                    if byte & 0x80 == 0 {
                        return Ok(value);
                    }
                }
                Err(reader.corrupted("varint longer than 10 bytes"))
            }
            let start = start.min(bytes.len());
            let (mut fast, mut slow) = (Reader::new(&bytes, "v"), Reader::new(&bytes, "v"));
            fast.pos = start;
            slow.pos = start;
            let (a, b) = (fast.varint(), byte_by_byte(&mut slow));
            prop_assert_eq!(format!("{a:?}"), format!("{b:?}"));
            prop_assert_eq!(fast.pos, slow.pos);
        }

        /// The common walk ([`decode_common_row`]) takes only rows the
        /// general walk takes, with the same values, and takes every
        /// common row; through [`decode_row_columns_into`] a row gives
        /// exactly the general walk's result, values and error text,
        /// whatever the buffer held before. Encoded rows (integers
        /// leaning to short and ten-byte varints, texts to long lengths)
        /// cut short or with a byte changed, and raw bytes with the tags
        /// and the varint's continuation bit likely.
        #[test]
        fn a_common_decoding_is_the_general_one(
            row in proptest::collection::vec(prop_oneof![
                value(),
                any::<u64>().prop_map(|z| Value::Integer(((z >> 1) as i64) ^ -((z & 1) as i64))),
                (-300i64..300).prop_map(Value::Integer),
                (-3_000_000i64..3_000_000).prop_map(Value::Integer),
                "[a\u{e9}]{120,140}".prop_map(|s| Value::Text(Arc::from(s))),
            ], 0..6),
            raw in proptest::collection::vec(prop_oneof![0u8..7, Just(0x80u8), Just(0x7F), any::<u8>()], 0..24),
            damage in proptest::option::of((any::<prop::sample::Index>(), any::<u8>())),
            cut in proptest::option::of(any::<prop::sample::Index>()),
            encoded in any::<bool>(),
            wanted in proptest::collection::vec(any::<bool>(), 0..8),
            stale in proptest::collection::vec(value(), 0..7),
            same_width in any::<bool>(),
        ) {
            let bytes = damaged(if encoded { encode_row(&row) } else { raw }, damage, cut);
            let mut buffer = stale;
            if same_width {
                buffer.resize(row.len(), Value::Text(Arc::from("stale")));
            }
            let mut general = buffer.clone();
            let general_result = decode_row_general(&bytes, &wanted, &mut general);
            let mut through = buffer.clone();
            let through_result = decode_row_columns_into(&bytes, &wanted, &mut through);
            prop_assert_eq!(
                through_result.as_ref().map_err(ToString::to_string),
                general_result.as_ref().map_err(ToString::to_string)
            );
            if general_result.is_ok() {
                prop_assert_eq!(through.len(), general.len());
                for (t, g) in through.iter().zip(&general) {
                    prop_assert!(same(t, g), "{:?} decoded as {:?}", g, t);
                }
            }
            let mut common = buffer.clone();
            if decode_common_row(&bytes, &wanted, &mut common) {
                prop_assert!(general_result.is_ok(), "common took {:?}: {:?}", bytes, general_result);
                prop_assert_eq!(common.len(), general.len());
                for (c, g) in common.iter().zip(&general) {
                    prop_assert!(same(c, g), "{:?} decoded as {:?}", g, c);
                }
            } else if encoded
                && damage.is_none()
                && cut.is_none()
                && same_width
                && (wanted.is_empty() || wanted.len() >= row.len())
            {
                // Only a ten-byte varint is not common in a sound row
                // (with a mask of every column, as a scan's).
                let ten_bytes = row.iter().any(|v| {
                    matches!(v, Value::Integer(i) if ((i << 1) ^ (i >> 63)) as u64 >> 63 != 0)
                });
                prop_assert!(ten_bytes, "{:?} not taken", row);
            }
        }

        /// A tested decoding (a scan's, with its bounds and key bits) is a
        /// decoding followed by the tests: a row the general walk decodes
        /// gives exactly the tests' answer (and its values, if kept); a
        /// damaged row is the general walk's error, unless the tests
        /// reject it by a column before the damage, which the model (the
        /// general reader, column by column, up to the first rejection)
        /// reads soundly.
        #[test]
        fn a_tested_decoding_is_a_decoding_then_the_tests(
            row in proptest::collection::vec(prop_oneof![
                value(),
                (-300i64..300).prop_map(Value::Integer),
                (-3_000_000i64..3_000_000).prop_map(Value::Integer),
            ], 0..7),
            raw in proptest::collection::vec(prop_oneof![0u8..7, Just(0x80u8), any::<u8>()], 0..24),
            damage in proptest::option::of((any::<prop::sample::Index>(), any::<u8>())),
            cut in proptest::option::of(any::<prop::sample::Index>()),
            encoded in prop::bool::weighted(0.9),
            wanted in proptest::collection::vec(any::<bool>(), 0..8),
            stops in proptest::collection::btree_set(0usize..8, 0..4),
            (modulus, remainder) in (1i64..4, 0i64..3),
            stale in proptest::collection::vec(value(), 0..7),
            same_width in any::<bool>(),
        ) {
            let bytes = damaged(if encoded { encode_row(&row) } else { raw }, damage, cut);
            let stops: Vec<usize> = stops.into_iter().collect();
            // Each stop rejects its own residue, so the place matters.
            let rejects = |i: usize, value: &Value| {
                matches!(value, Value::Integer(n)
                    if (n.rem_euclid(modulus) + i as i64) % modulus == remainder % modulus)
            };
            let mut buffer = stale;
            if same_width {
                buffer.resize(row.len(), Value::Text(Arc::from("stale")));
            }
            let mut full = buffer.clone();
            let full_result = decode_row_general(&bytes, &wanted, &mut full);
            let full_rejected = stops
                .iter()
                .enumerate()
                .any(|(i, &column)| full.get(column).is_some_and(|v| rejects(i, v)));
            let mut tested = buffer.clone();
            let result = decode_row_columns_tested_into(&bytes, &wanted, &mut tested, &stops, rejects);
            match (&result, &full_result) {
                (Ok(kept), Ok(())) => {
                    prop_assert_eq!(*kept, !full_rejected);
                    if *kept {
                        prop_assert_eq!(tested.len(), full.len());
                        for (t, f) in tested.iter().zip(&full) {
                            prop_assert!(same(t, f), "{:?} decoded as {:?}", f, t);
                        }
                    }
                }
                (Ok(kept), Err(err)) => {
                    prop_assert!(!kept, "{:?} kept: {}", bytes, err);
                    prop_assert!(
                        prefix_rejected(&bytes, &wanted, &stops, rejects),
                        "{:?} rejected, not by a sound prefix: {}", bytes, err
                    );
                }
                (Err(err), Ok(())) => prop_assert!(false, "{:?}: {}", bytes, err),
                (Err(err), Err(expected)) => {
                    prop_assert_eq!(err.to_string(), expected.to_string());
                }
            }
        }

        /// A scan decodes row after row into one buffer: each comes out as
        /// if decoded alone, whatever the row before left there.
        #[test]
        fn rows_decoded_into_one_buffer_are_decoded_alone(
            rows in proptest::collection::vec(proptest::collection::vec(value(), 0..6), 1..5),
            wanted in proptest::collection::vec(any::<bool>(), 0..8),
        ) {
            let mut buffer = Vec::new();
            for row in &rows {
                let bytes = encode_row(row);
                decode_row_columns_into(&bytes, &wanted, &mut buffer).unwrap();
                let alone = decode_row_columns(&bytes, &wanted).unwrap();
                prop_assert_eq!(buffer.len(), alone.len());
                for (d, v) in buffer.iter().zip(&alone) {
                    prop_assert!(same(d, v), "{:?} decoded as {:?}", v, d);
                }
            }
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = decode_key(&bytes);
            let _ = decode_row(&bytes);
            let _ = decode_row_columns(&bytes, &[false, true]);
            let _ = decode_key_prefix(&bytes, 2);
        }

        #[test]
        fn truncated_rows_are_corrupted(row in proptest::collection::vec(value(), 1..4)) {
            let bytes = encode_row(&row);
            for len in 0..bytes.len() {
                prop_assert!(matches!(decode_row(&bytes[..len]), Err(Error::Corrupted(_))));
            }
        }
    }

    /// The model of a tested decoding's early rejection: the general
    /// reader walks the row column by column and, at each stop, asks the
    /// tests of the value read (NULL for a column not wanted); `true` if a
    /// test rejects one before anything fails to read.
    fn prefix_rejected(
        bytes: &[u8],
        wanted: &[bool],
        stops: &[usize],
        rejects: impl Fn(usize, &Value) -> bool,
    ) -> bool {
        let mut reader = Reader::new(bytes, "SQL row");
        let (Ok(ROW_VERSION), Ok(count)) = (reader.byte(), reader.varint()) else {
            return false;
        };
        for column in 0..count.min(MAX_COLUMNS) as usize {
            let value = if wanted.get(column).copied().unwrap_or(true) {
                match reader.row_value() {
                    Ok(value) => value,
                    Err(_) => return false,
                }
            } else if reader.skip_row_value().is_err() {
                return false;
            } else {
                Value::Null
            };
            if let Some(i) = stops.iter().position(|&stop| stop == column)
                && rejects(i, &value)
            {
                return true;
            }
        }
        false
    }

    #[test]
    fn integer_and_real_share_a_key() {
        assert_eq!(
            encode_key(&[Value::Integer(3)]),
            encode_key(&[Value::Real(3.0)])
        );
        assert!(encode_key(&[Value::Integer(3)]) < encode_key(&[Value::Real(3.5)]));
        // Above 2^53 neighbouring integers share a float; the residual
        // still tells them apart.
        let big = 1i64 << 60;
        assert!(encode_key(&[Value::Integer(big)]) < encode_key(&[Value::Integer(big + 1)]));
    }

    #[test]
    fn text_prefix_sorts_first() {
        let t = |s: &str| encode_key(&[Value::Text(Arc::from(s))]);
        assert!(t("ab") < t("abc"));
        assert!(t("a") < t("a\0"));
        assert!(t("") < t("\0"));
    }

    /// The example of docs/formats.md ("SQL rows, indexes and catalog").
    #[test]
    fn documented_example() {
        let values = [
            Value::Integer(-2),
            Value::Text(Arc::from("hi")),
            Value::Null,
        ];
        assert_eq!(
            hex(&encode_key(&values)),
            "02 3f ff ff ff ff ff ff ff 80 00 03 68 69 00 01 01"
        );
        let row = [
            Value::Integer(-2),
            Value::Text(Arc::from("hi")),
            Value::Null,
            Value::Real(1.5),
            Value::Boolean(true),
        ];
        assert_eq!(
            hex(&encode_row(&row)),
            "01 05 01 03 03 02 68 69 00 02 00 00 00 00 00 00 f8 3f 05"
        );
    }

    fn hex(bytes: &[u8]) -> String {
        bytes
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn bad_bytes_say_what_and_where() {
        let err = decode_row(&[1, 1, 9]).unwrap_err();
        assert!(err.to_string().contains("unknown value tag 0x09"), "{err}");
        assert!(err.to_string().contains("byte 3"), "{err}");
        assert!(matches!(
            decode_key(&[0x03, b'a']),
            Err(Error::Corrupted(_))
        ));
    }

    /// A TEXT decoded over a TEXT of its length reuses the old value's
    /// allocation only when nobody else holds it.
    #[test]
    fn a_text_decoded_over_another_keeps_its_allocation_only_when_unshared() {
        let text_ptr = |v: &Value| match v {
            Value::Text(t) => Arc::as_ptr(t).cast::<u8>(),
            other => panic!("{other:?}"),
        };
        let decode = |text: &str, row: &mut Row| {
            decode_row_columns_into(&encode_row(&[Value::text(text)]), &[], row).unwrap();
        };
        let mut row = vec![Value::text("aaaa")];
        let shared = row[0].clone();
        decode("bbbb", &mut row);
        assert_eq!(row, [Value::text("bbbb")]);
        assert_eq!(shared, Value::text("aaaa"), "the sharer's text changed");
        let unshared = text_ptr(&row[0]);
        decode("c\u{e9}c", &mut row);
        assert_eq!(row, [Value::text("c\u{e9}c")]);
        assert_eq!(text_ptr(&row[0]), unshared, "a new allocation");
        decode("dd", &mut row);
        assert_eq!(row, [Value::text("dd")]);
        decode("", &mut row);
        assert_eq!(row, [Value::text("")]);
    }
}
