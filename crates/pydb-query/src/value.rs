//! SQL values and their types.
//!
//! pydb has five kinds of value: NULL, INTEGER (64-bit, signed), REAL
//! (64-bit float), TEXT (UTF-8) and BOOLEAN. The rules that combine them
//! (three-valued logic, comparison across types, arithmetic, casts) follow
//! what SQLite's sqllogictest corpus expects.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use crate::error::{Error, Result};

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

/// How a value reads as a number when arithmetic needs one: SQLite's
/// conversion of text takes the longest prefix that looks like a number
/// (`'12abc'` is 12, `'abc'` is 0).
fn text_to_number(text: &str) -> Value {
    let t = text.trim_start();
    let bytes = t.as_bytes();
    let mut end = 0;
    if end < bytes.len() && (bytes[end] == b'+' || bytes[end] == b'-') {
        end += 1;
    }
    let digits_start = end;
    while end < bytes.len() && bytes[end].is_ascii_digit() {
        end += 1;
    }
    let int_end = end;
    let mut is_real = false;
    if end < bytes.len() && bytes[end] == b'.' {
        let mut e = end + 1;
        while e < bytes.len() && bytes[e].is_ascii_digit() {
            e += 1;
        }
        if e > end + 1 || int_end > digits_start {
            is_real = e > end + 1 || int_end > digits_start;
            end = e;
        }
    }
    if end == digits_start {
        return Value::Integer(0);
    }
    if end < bytes.len() && (bytes[end] == b'e' || bytes[end] == b'E') {
        let mut e = end + 1;
        if e < bytes.len() && (bytes[e] == b'+' || bytes[e] == b'-') {
            e += 1;
        }
        let exp_digits = e;
        while e < bytes.len() && bytes[e].is_ascii_digit() {
            e += 1;
        }
        if e > exp_digits {
            is_real = true;
            end = e;
        }
    }
    let number = &t[..end];
    if !is_real && let Ok(i) = number.parse::<i64>() {
        return Value::Integer(i);
    }
    Value::Real(number.parse::<f64>().unwrap_or(0.0))
}

/// Whether `text` is, in full, a number (what SQLite's numeric affinity
/// asks before it converts text stored into a numeric column).
fn text_as_exact_number(text: &str) -> Option<Value> {
    let t = text.trim();
    if t.is_empty() {
        return None;
    }
    if let Ok(i) = t.parse::<i64>() {
        return Some(Value::Integer(i));
    }
    let looks_numeric = t
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'));
    if looks_numeric && let Ok(f) = t.parse::<f64>() {
        return Some(Value::Real(f));
    }
    None
}

/// The rank of a value's storage class in SQLite's cross-type order:
/// NULL, then numbers (booleans count as 0 and 1), then text.
fn class_rank(v: &Value) -> u8 {
    match v {
        Value::Null => 0,
        Value::Integer(_) | Value::Real(_) | Value::Boolean(_) => 1,
        Value::Text(_) => 2,
    }
}

/// Compares an integer with a float exactly (no rounding of large
/// integers through `as f64` deciding equality wrongly).
fn cmp_int_real(i: i64, r: f64) -> Ordering {
    if r.is_nan() {
        return Ordering::Greater;
    }
    // Every i64 lies in [-2^63, 2^63): compare with the bounds first.
    if r >= 9_223_372_036_854_775_808.0 {
        return Ordering::Less;
    }
    if r < -9_223_372_036_854_775_808.0 {
        return Ordering::Greater;
    }
    let t = r.trunc();
    // `t` is integral and in range, so the cast is exact.
    let ti = t as i64;
    match i.cmp(&ti) {
        Ordering::Equal => {
            if r > t {
                Ordering::Less
            } else if r < t {
                Ordering::Greater
            } else {
                Ordering::Equal
            }
        }
        other => other,
    }
}

/// The arithmetic operators, for [`Value::arith`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithOp {
    /// `+`.
    Add,
    /// `-`.
    Sub,
    /// `*`.
    Mul,
    /// `/`.
    Div,
    /// `%`.
    Rem,
}

impl Value {
    /// A text value.
    pub fn text(s: &str) -> Value {
        Value::Text(Arc::from(s))
    }

    /// The truth of a value in a WHERE clause or a logical operator:
    /// `None` for NULL (unknown), numbers are true when not zero, text is
    /// read as a number first (so `'abc'` is false), as SQLite does.
    pub fn truth(&self) -> Option<bool> {
        match self {
            Value::Null => None,
            Value::Boolean(b) => Some(*b),
            Value::Integer(i) => Some(*i != 0),
            Value::Real(r) => Some(*r != 0.0),
            Value::Text(t) => text_to_number(t).truth(),
        }
    }

    /// The value as a number for arithmetic: NULL stays NULL, booleans are
    /// 0 and 1, text takes its numeric prefix.
    pub fn to_number(&self) -> Value {
        match self {
            Value::Null => Value::Null,
            Value::Integer(_) | Value::Real(_) => self.clone(),
            Value::Boolean(b) => Value::Integer(i64::from(*b)),
            Value::Text(t) => text_to_number(t),
        }
    }

    /// SQL comparison: `None` when either side is NULL (the result is
    /// unknown). Integers and reals compare by numeric value; across
    /// storage classes numbers sort before text, as in SQLite.
    pub fn sql_cmp(&self, other: &Value) -> Option<Ordering> {
        if self.is_null() || other.is_null() {
            return None;
        }
        Some(self.total_cmp(other))
    }

    /// A total order over all values, for ORDER BY, DISTINCT and GROUP BY:
    /// NULL first, then numbers by value, then text by bytes. Two NULLs are
    /// equal here (they group together), unlike in [`Value::sql_cmp`].
    pub fn total_cmp(&self, other: &Value) -> Ordering {
        let (ra, rb) = (class_rank(self), class_rank(other));
        if ra != rb {
            return ra.cmp(&rb);
        }
        // Compare without cloning: booleans read as the integers 0 and 1.
        let int = |v: &Value| match v {
            Value::Integer(i) => Some(*i),
            Value::Boolean(b) => Some(i64::from(*b)),
            _ => None,
        };
        match (self, other) {
            (Value::Text(a), Value::Text(b)) => a.as_bytes().cmp(b.as_bytes()),
            // -0.0 and 0.0 are one value, as in SQLite (f64::total_cmp
            // would tell them apart); NaN never reaches a row (it is NULL).
            (Value::Real(x), Value::Real(y)) => x.partial_cmp(y).unwrap_or_else(|| x.total_cmp(y)),
            (Value::Real(x), b) => {
                int(b).map_or(Ordering::Equal, |y| cmp_int_real(y, *x).reverse())
            }
            (a, Value::Real(y)) => int(a).map_or(Ordering::Equal, |x| cmp_int_real(x, *y)),
            (a, b) => match (int(a), int(b)) {
                (Some(x), Some(y)) => x.cmp(&y),
                _ => Ordering::Equal,
            },
        }
    }

    /// The number inside a numeric value (booleans as 0 and 1), or `None`
    /// for NULL and text.
    fn to_number_exact(&self) -> Option<Value> {
        match self {
            Value::Integer(_) | Value::Real(_) => Some(self.clone()),
            Value::Boolean(b) => Some(Value::Integer(i64::from(*b))),
            _ => None,
        }
    }

    /// `self op other` with SQLite's rules: NULL in, NULL out; integer op
    /// integer stays integer (division truncates toward zero) and fails
    /// with [`Error::IntegerOverflow`] when it does not fit; a real on
    /// either side makes the result real; division or remainder by zero is
    /// NULL.
    pub fn arith(&self, op: ArithOp, other: &Value) -> Result<Value> {
        let (a, b) = (self.to_number(), other.to_number());
        match (a, b) {
            (Value::Null, _) | (_, Value::Null) => Ok(Value::Null),
            (Value::Integer(x), Value::Integer(y)) => {
                let r = match op {
                    ArithOp::Add => x.checked_add(y),
                    ArithOp::Sub => x.checked_sub(y),
                    ArithOp::Mul => x.checked_mul(y),
                    ArithOp::Div => {
                        if y == 0 {
                            return Ok(Value::Null);
                        }
                        x.checked_div(y)
                    }
                    ArithOp::Rem => {
                        if y == 0 {
                            return Ok(Value::Null);
                        }
                        // i64::MIN % -1 is 0 mathematically.
                        Some(x.checked_rem(y).unwrap_or(0))
                    }
                };
                r.map(Value::Integer).ok_or(Error::IntegerOverflow)
            }
            (a, b) => {
                let x = a.as_f64().unwrap_or(0.0);
                let y = b.as_f64().unwrap_or(0.0);
                let r = match op {
                    ArithOp::Add => x + y,
                    ArithOp::Sub => x - y,
                    ArithOp::Mul => x * y,
                    ArithOp::Div => {
                        if y == 0.0 {
                            return Ok(Value::Null);
                        }
                        x / y
                    }
                    ArithOp::Rem => {
                        // SQLite takes the remainder of the integer parts.
                        let (xi, yi) = (x as i64, y as i64);
                        if yi == 0 {
                            return Ok(Value::Null);
                        }
                        return Ok(Value::Real(xi.checked_rem(yi).unwrap_or(0) as f64));
                    }
                };
                if r.is_nan() {
                    Ok(Value::Null)
                } else {
                    Ok(Value::Real(r))
                }
            }
        }
    }

    /// Unary minus.
    pub fn neg(&self) -> Result<Value> {
        match self.to_number() {
            Value::Null => Ok(Value::Null),
            Value::Integer(i) => i
                .checked_neg()
                .map(Value::Integer)
                .ok_or(Error::IntegerOverflow),
            Value::Real(r) => Ok(Value::Real(-r)),
            _ => Ok(Value::Null),
        }
    }

    /// The value as an `f64`, if it is a number (booleans as 0 and 1).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Integer(i) => Some(*i as f64),
            Value::Real(r) => Some(*r),
            Value::Boolean(b) => Some(f64::from(u8::from(*b))),
            _ => None,
        }
    }

    /// `CAST(self AS ty)` with SQLite's rules: text to a number takes the
    /// numeric prefix (`'12abc'` is 12, `'abc'` is 0); a real to INTEGER
    /// truncates toward zero (saturating); anything to TEXT is its printed
    /// form; to BOOLEAN is its truth. NULL stays NULL.
    pub fn cast(&self, ty: DataType) -> Value {
        if self.is_null() {
            return Value::Null;
        }
        match ty {
            DataType::Integer => match self.to_number() {
                Value::Real(r) => Value::Integer(real_to_int(r)),
                other => other,
            },
            DataType::Real => match self.to_number() {
                Value::Integer(i) => Value::Real(i as f64),
                other => other,
            },
            DataType::Text => match self {
                Value::Text(_) => self.clone(),
                other => Value::text(&other.to_string()),
            },
            DataType::Boolean => match self.truth() {
                Some(b) => Value::Boolean(b),
                None => Value::Null,
            },
        }
    }

    /// The value stored into a column of type `ty`, converted as SQLite's
    /// column affinity does: text that is exactly a number becomes one in
    /// a numeric column, a real with no fraction becomes an integer in an
    /// INTEGER column, an integer becomes a real in a REAL column, numbers
    /// become text in a TEXT column. Values that do not convert are kept.
    pub fn apply_affinity(&self, ty: DataType) -> Value {
        match (ty, self) {
            (_, Value::Null) => Value::Null,
            (DataType::Integer, Value::Real(r)) => {
                if r.fract() == 0.0
                    && *r >= -9.223_372_036_854_775e18
                    && *r <= 9.223_372_036_854_775e18
                {
                    Value::Integer(*r as i64)
                } else {
                    self.clone()
                }
            }
            (DataType::Integer, Value::Text(t)) => match text_as_exact_number(t) {
                Some(n) => n.apply_affinity(DataType::Integer),
                None => self.clone(),
            },
            (DataType::Integer, Value::Boolean(b)) => Value::Integer(i64::from(*b)),
            (DataType::Real, Value::Integer(i)) => Value::Real(*i as f64),
            (DataType::Real, Value::Boolean(b)) => Value::Real(f64::from(u8::from(*b))),
            (DataType::Real, Value::Text(t)) => match text_as_exact_number(t) {
                Some(n) => n.apply_affinity(DataType::Real),
                None => self.clone(),
            },
            (DataType::Text, Value::Integer(_) | Value::Real(_)) => Value::text(&self.to_string()),
            (DataType::Boolean, Value::Integer(i)) => Value::Boolean(*i != 0),
            (DataType::Boolean, Value::Real(r)) => Value::Boolean(*r != 0.0),
            _ => self.clone(),
        }
    }

    /// `self || other`: the printed forms joined; NULL if either is NULL.
    pub fn concat(&self, other: &Value) -> Value {
        if self.is_null() || other.is_null() {
            return Value::Null;
        }
        Value::text(&format!("{self}{other}"))
    }

    /// A rough count of the bytes this value holds, for memory budgets.
    pub fn size_estimate(&self) -> usize {
        std::mem::size_of::<Value>()
            + match self {
                Value::Text(t) => t.len(),
                _ => 0,
            }
    }
}

/// A float converted to an integer as SQLite's CAST does: toward zero,
/// saturating at the ends of the 64-bit range.
fn real_to_int(r: f64) -> i64 {
    if r.is_nan() {
        0
    } else {
        // `as` saturates for out-of-range floats.
        r as i64
    }
}

/// Prints a float as SQLite does (`%!.15g`): 15 significant digits,
/// trailing zeros removed but at least one digit after the point, and an
/// exponent outside `1e-4 .. 1e15`.
fn format_real(r: f64, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    if r.is_nan() {
        return f.write_str("NaN");
    }
    if r.is_infinite() {
        return f.write_str(if r > 0.0 { "Inf" } else { "-Inf" });
    }
    if r == 0.0 {
        return f.write_str("0.0");
    }
    // Round to 15 significant digits through the exponent form.
    let sci = format!("{:.14e}", r);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    let digits = digits.trim_end_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    if (-4..15).contains(&exp) {
        if exp < 0 {
            out.push_str("0.");
            for _ in 0..(-exp - 1) {
                out.push('0');
            }
            out.push_str(digits);
        } else {
            let int_len = exp as usize + 1;
            if digits.len() <= int_len {
                out.push_str(digits);
                for _ in digits.len()..int_len {
                    out.push('0');
                }
                out.push_str(".0");
            } else {
                out.push_str(&digits[..int_len]);
                out.push('.');
                out.push_str(&digits[int_len..]);
            }
        }
    } else {
        out.push_str(&digits[..1]);
        out.push('.');
        if digits.len() > 1 {
            out.push_str(&digits[1..]);
        } else {
            out.push('0');
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        out.push_str(&format!("{:02}", exp.abs()));
    }
    f.write_str(&out)
}

/// How the shell and the sqllogictest adapter print a value: NULL as
/// `NULL`, integers plainly, reals as SQLite prints them (`1.0`, `0.5`,
/// `1.0e+20`), text as is, booleans as `1` and `0` (SQLite has no
/// boolean type, and its test corpus expects numbers).
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("NULL"),
            Value::Integer(i) => write!(f, "{i}"),
            Value::Real(r) => format_real(*r, f),
            Value::Text(t) => f.write_str(t),
            Value::Boolean(b) => f.write_str(if *b { "1" } else { "0" }),
        }
    }
}

/// A row used as a grouping key (GROUP BY, DISTINCT, set operations, hash
/// joins): equality and hashing follow [`Value::total_cmp`], so NULLs group
/// together and `1` and `1.0` are the same key.
#[derive(Debug, Clone)]
pub struct GroupKey(pub Row);

impl PartialEq for GroupKey {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for GroupKey {}

impl PartialOrd for GroupKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for GroupKey {
    fn cmp(&self, other: &Self) -> Ordering {
        for (a, b) in self.0.iter().zip(other.0.iter()) {
            match a.total_cmp(b) {
                Ordering::Equal => continue,
                o => return o,
            }
        }
        self.0.len().cmp(&other.0.len())
    }
}

impl Hash for GroupKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        for v in &self.0 {
            hash_group_value(v, state);
        }
    }
}

/// Feeds one value of a [`GroupKey`] to `state`, as the key's `Hash` does
/// for each of its values: values equal under [`Value::total_cmp`] hash
/// alike. For code that hashes a key where its values stand (in a row)
/// without building the key.
pub(crate) fn hash_group_value<H: Hasher>(v: &Value, state: &mut H) {
    match v {
        Value::Null => 0u8.hash(state),
        Value::Text(t) => {
            2u8.hash(state);
            t.hash(state);
        }
        number => {
            // Equal numbers must hash alike: an integral float
            // in range hashes as the integer it equals.
            1u8.hash(state);
            match number.to_number_exact() {
                Some(Value::Integer(i)) => i.hash(state),
                Some(Value::Real(r)) => {
                    if r.fract() == 0.0 && (-9.2e18..9.2e18).contains(&r) {
                        (r as i64).hash(state)
                    } else {
                        r.to_bits().hash(state)
                    }
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Value {
        Value::text(s)
    }

    #[test]
    fn negative_zero_groups_with_zero() {
        assert_eq!(
            Value::Real(-0.0).total_cmp(&Value::Real(0.0)),
            Ordering::Equal
        );
        assert_eq!(
            GroupKey(vec![Value::Real(-0.0)]),
            GroupKey(vec![Value::Real(0.0)])
        );
    }

    #[test]
    fn comparison_is_unknown_with_null_and_numeric_across_types() {
        assert_eq!(Value::Null.sql_cmp(&Value::Integer(1)), None);
        assert_eq!(Value::Integer(1).sql_cmp(&Value::Null), None);
        assert_eq!(
            Value::Integer(1).sql_cmp(&Value::Real(1.0)),
            Some(Ordering::Equal)
        );
        assert_eq!(
            Value::Integer(2).sql_cmp(&Value::Real(1.5)),
            Some(Ordering::Greater)
        );
        assert_eq!(
            Value::Real(-0.5).sql_cmp(&Value::Integer(0)),
            Some(Ordering::Less)
        );
        // Numbers sort before text, whatever the text says.
        assert_eq!(Value::Integer(99).sql_cmp(&t("1")), Some(Ordering::Less));
        assert_eq!(t("abc").sql_cmp(&t("abd")), Some(Ordering::Less));
        // Large integers are not rounded through f64.
        assert_eq!(
            Value::Integer(i64::MAX).sql_cmp(&Value::Real(9.223_372_036_854_776e18)),
            Some(Ordering::Less)
        );
    }

    #[test]
    fn total_order_puts_null_first_and_groups_nulls() {
        let mut v = vec![
            t("b"),
            Value::Real(2.5),
            Value::Null,
            Value::Integer(1),
            Value::Null,
        ];
        v.sort_by(|a, b| a.total_cmp(b));
        assert_eq!(
            v,
            vec![
                Value::Null,
                Value::Null,
                Value::Integer(1),
                Value::Real(2.5),
                t("b")
            ]
        );
        let mut set = std::collections::HashSet::new();
        set.insert(GroupKey(vec![Value::Integer(1), Value::Null]));
        assert!(set.contains(&GroupKey(vec![Value::Real(1.0), Value::Null])));
        assert!(!set.contains(&GroupKey(vec![Value::Integer(2), Value::Null])));
    }

    #[test]
    fn truth_is_three_valued() {
        assert_eq!(Value::Null.truth(), None);
        assert_eq!(Value::Integer(0).truth(), Some(false));
        assert_eq!(Value::Real(0.1).truth(), Some(true));
        assert_eq!(t("abc").truth(), Some(false));
        assert_eq!(t("2x").truth(), Some(true));
    }

    #[test]
    fn arithmetic_follows_sqlite() {
        let i = Value::Integer;
        assert_eq!(i(7).arith(ArithOp::Div, &i(2)).unwrap(), i(3));
        assert_eq!(i(-7).arith(ArithOp::Div, &i(2)).unwrap(), i(-3));
        assert_eq!(i(-7).arith(ArithOp::Rem, &i(3)).unwrap(), i(-1));
        assert_eq!(i(7).arith(ArithOp::Div, &i(0)).unwrap(), Value::Null);
        assert_eq!(i(7).arith(ArithOp::Rem, &i(0)).unwrap(), Value::Null);
        assert_eq!(
            i(1).arith(ArithOp::Add, &Value::Real(0.5)).unwrap(),
            Value::Real(1.5)
        );
        assert_eq!(t("12").arith(ArithOp::Add, &i(1)).unwrap(), i(13));
        assert_eq!(t("abc").arith(ArithOp::Mul, &i(5)).unwrap(), i(0));
        assert_eq!(
            t("1.5").arith(ArithOp::Mul, &i(2)).unwrap(),
            Value::Real(3.0)
        );
        assert_eq!(Value::Null.arith(ArithOp::Add, &i(1)).unwrap(), Value::Null);
        assert!(matches!(
            i(i64::MAX).arith(ArithOp::Add, &i(1)),
            Err(Error::IntegerOverflow)
        ));
        assert!(matches!(
            i(i64::MIN).arith(ArithOp::Div, &i(-1)),
            Err(Error::IntegerOverflow)
        ));
        assert!(matches!(i(i64::MIN).neg(), Err(Error::IntegerOverflow)));
        assert_eq!(i(5).neg().unwrap(), i(-5));
    }

    #[test]
    fn casts_follow_sqlite() {
        assert_eq!(t("12abc").cast(DataType::Integer), Value::Integer(12));
        assert_eq!(t("abc").cast(DataType::Integer), Value::Integer(0));
        assert_eq!(t("1.9").cast(DataType::Integer), Value::Integer(1));
        assert_eq!(
            Value::Real(-2.7).cast(DataType::Integer),
            Value::Integer(-2)
        );
        assert_eq!(
            Value::Real(1e30).cast(DataType::Integer),
            Value::Integer(i64::MAX)
        );
        assert_eq!(Value::Integer(3).cast(DataType::Real), Value::Real(3.0));
        assert_eq!(Value::Real(3.0).cast(DataType::Text), t("3.0"));
        assert_eq!(
            Value::Integer(0).cast(DataType::Boolean),
            Value::Boolean(false)
        );
        assert_eq!(Value::Null.cast(DataType::Integer), Value::Null);
    }

    #[test]
    fn affinity_converts_what_sqlite_converts() {
        assert_eq!(
            Value::Real(1.0).apply_affinity(DataType::Integer),
            Value::Integer(1)
        );
        assert_eq!(
            Value::Real(1.5).apply_affinity(DataType::Integer),
            Value::Real(1.5)
        );
        assert_eq!(t("5").apply_affinity(DataType::Integer), Value::Integer(5));
        assert_eq!(t("5x").apply_affinity(DataType::Integer), t("5x"));
        assert_eq!(
            Value::Integer(5).apply_affinity(DataType::Real),
            Value::Real(5.0)
        );
        assert_eq!(Value::Integer(5).apply_affinity(DataType::Text), t("5"));
    }

    #[test]
    fn reals_print_as_sqlite_prints_them() {
        let p = |r: f64| Value::Real(r).to_string();
        assert_eq!(p(1.0), "1.0");
        assert_eq!(p(0.5), "0.5");
        assert_eq!(p(-2.25), "-2.25");
        assert_eq!(p(1e20), "1.0e+20");
        assert_eq!(p(1.5e-7), "1.5e-07");
        assert_eq!(p(0.1 + 0.2), "0.3");
        assert_eq!(p(123456.789), "123456.789");
        assert_eq!(Value::Integer(-3).to_string(), "-3");
        assert_eq!(Value::Null.to_string(), "NULL");
    }
}
