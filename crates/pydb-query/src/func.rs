//! Scalar functions and LIKE.
//!
//! Each function takes already-evaluated arguments and follows SQLite: most
//! return NULL when an argument is NULL (COALESCE and IFNULL exist to
//! handle NULL and do not), text functions count characters, not bytes.

use crate::error::{Error, Result};
use crate::value::{DataType, Value};

/// A scalar function the binder recognised by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalarFunc {
    /// `abs(x)`.
    Abs,
    /// `coalesce(a, b, ...)`: the first argument that is not NULL.
    Coalesce,
    /// `ifnull(a, b)`: coalesce of two.
    IfNull,
    /// `nullif(a, b)`: NULL when `a = b`, else `a`.
    NullIf,
    /// `length(x)`: characters of text, or of a number's printed form.
    Length,
    /// `upper(x)`.
    Upper,
    /// `lower(x)`.
    Lower,
    /// `substr(x, start [, length])`, 1-based; a negative start counts from
    /// the end.
    Substr,
    /// `round(x [, digits])`.
    Round,
    /// `min(a, b, ...)` with two or more arguments: the smallest; NULL if any is NULL.
    Min,
    /// `max(a, b, ...)` with two or more arguments.
    Max,
    /// `typeof(x)`.
    TypeOf,
}

impl ScalarFunc {
    /// The function named `name` taking `argc` arguments, if pydb has it.
    pub fn lookup(name: &str, argc: usize) -> Option<ScalarFunc> {
        let f = match name.to_ascii_lowercase().as_str() {
            "abs" if argc == 1 => ScalarFunc::Abs,
            "coalesce" if argc >= 2 => ScalarFunc::Coalesce,
            "ifnull" if argc == 2 => ScalarFunc::IfNull,
            "nullif" if argc == 2 => ScalarFunc::NullIf,
            "length" if argc == 1 => ScalarFunc::Length,
            "upper" if argc == 1 => ScalarFunc::Upper,
            "lower" if argc == 1 => ScalarFunc::Lower,
            "substr" | "substring" if argc == 2 || argc == 3 => ScalarFunc::Substr,
            "round" if argc == 1 || argc == 2 => ScalarFunc::Round,
            "min" if argc >= 2 => ScalarFunc::Min,
            "max" if argc >= 2 => ScalarFunc::Max,
            "typeof" if argc == 1 => ScalarFunc::TypeOf,
            _ => return None,
        };
        Some(f)
    }

    /// The function's name, for EXPLAIN.
    pub fn name(self) -> &'static str {
        match self {
            ScalarFunc::Abs => "abs",
            ScalarFunc::Coalesce => "coalesce",
            ScalarFunc::IfNull => "ifnull",
            ScalarFunc::NullIf => "nullif",
            ScalarFunc::Length => "length",
            ScalarFunc::Upper => "upper",
            ScalarFunc::Lower => "lower",
            ScalarFunc::Substr => "substr",
            ScalarFunc::Round => "round",
            ScalarFunc::Min => "min",
            ScalarFunc::Max => "max",
            ScalarFunc::TypeOf => "typeof",
        }
    }

    /// Applies the function.
    pub fn call(self, args: &[Value]) -> Result<Value> {
        let arg = |i: usize| args.get(i).cloned().unwrap_or(Value::Null);
        Ok(match self {
            ScalarFunc::Abs => match arg(0) {
                Value::Null => Value::Null,
                Value::Integer(i) => Value::Integer(i.checked_abs().ok_or(Error::IntegerOverflow)?),
                Value::Real(r) => Value::Real(r.abs()),
                Value::Boolean(b) => Value::Integer(i64::from(b)),
                Value::Text(t) => match Value::text(&t).to_number() {
                    Value::Integer(i) => Value::Real((i as f64).abs()),
                    Value::Real(r) => Value::Real(r.abs()),
                    _ => Value::Real(0.0),
                },
            },
            ScalarFunc::Coalesce | ScalarFunc::IfNull => args
                .iter()
                .find(|v| !v.is_null())
                .cloned()
                .unwrap_or(Value::Null),
            ScalarFunc::NullIf => {
                let (a, b) = (arg(0), arg(1));
                if a.sql_cmp(&b) == Some(std::cmp::Ordering::Equal) {
                    Value::Null
                } else {
                    a
                }
            }
            ScalarFunc::Length => match arg(0) {
                Value::Null => Value::Null,
                v => Value::Integer(v.to_string().chars().count() as i64),
            },
            ScalarFunc::Upper => map_text(&arg(0), |s| s.to_uppercase()),
            ScalarFunc::Lower => map_text(&arg(0), |s| s.to_lowercase()),
            ScalarFunc::Substr => substr(&arg(0), &arg(1), args.get(2)),
            ScalarFunc::Round => {
                let x = arg(0);
                if x.is_null() {
                    return Ok(Value::Null);
                }
                let digits = match args.get(1) {
                    Some(Value::Null) => return Ok(Value::Null),
                    Some(d) => match d.cast(DataType::Integer) {
                        Value::Integer(i) => i.clamp(0, 30) as i32,
                        _ => 0,
                    },
                    None => 0,
                };
                let r = x.to_number().as_f64().unwrap_or(0.0);
                let scale = 10f64.powi(digits);
                Value::Real((r * scale).round() / scale)
            }
            ScalarFunc::Min | ScalarFunc::Max => {
                if args.iter().any(Value::is_null) {
                    return Ok(Value::Null);
                }
                let mut best = arg(0);
                for v in &args[1..] {
                    let o = v.total_cmp(&best);
                    let better = if self == ScalarFunc::Min {
                        o.is_lt()
                    } else {
                        o.is_gt()
                    };
                    if better {
                        best = v.clone();
                    }
                }
                best
            }
            ScalarFunc::TypeOf => Value::text(match arg(0) {
                Value::Null => "null",
                Value::Integer(_) | Value::Boolean(_) => "integer",
                Value::Real(_) => "real",
                Value::Text(_) => "text",
            }),
        })
    }
}

fn map_text(v: &Value, f: impl Fn(&str) -> String) -> Value {
    match v {
        Value::Null => Value::Null,
        v => Value::text(&f(&v.to_string())),
    }
}

/// SQLite's substr: 1-based; start 0 counts as a position before the first
/// character; a negative start counts from the end; a negative length
/// takes the characters before start.
fn substr(x: &Value, start: &Value, len: Option<&Value>) -> Value {
    if x.is_null() || start.is_null() || len.is_some_and(Value::is_null) {
        return Value::Null;
    }
    let chars: Vec<char> = x.to_string().chars().collect();
    let n = chars.len() as i64;
    let as_int = |v: &Value| match v.cast(DataType::Integer) {
        Value::Integer(i) => i,
        _ => 0,
    };
    // Saturating arithmetic: the arguments are user input and may be
    // anywhere in the 64-bit range.
    let mut p1 = as_int(start);
    let no_len = len.is_none();
    let mut p2 = len.map(as_int).unwrap_or(n);
    if p1 < 0 {
        p1 = p1.saturating_add(n);
        if p1 < 0 {
            if !no_len {
                p2 = p2.saturating_add(p1);
            }
            p1 = 0;
        }
    } else if p1 > 0 {
        p1 -= 1;
    } else if p2 > 0 {
        p2 -= 1;
    }
    if p2 < 0 {
        if p2 < p1.saturating_neg() {
            p2 = p1;
            p1 = 0;
        } else {
            p1 = p1.saturating_add(p2);
            p2 = p2.saturating_neg();
        }
    }
    let from = p1.clamp(0, n) as usize;
    let to = p1.saturating_add(p2).clamp(0, n) as usize;
    if from >= to {
        return Value::text("");
    }
    Value::text(&chars[from..to].iter().collect::<String>())
}

/// `text LIKE pattern`: `%` matches any run of characters, `_` exactly one;
/// ASCII letters match regardless of case, as in SQLite.
pub fn like(text: &str, pattern: &str) -> bool {
    let t: Vec<char> = text.chars().collect();
    let p: Vec<char> = pattern.chars().collect();
    // Iterative matching with backtracking to the last `%`.
    let (mut ti, mut pi) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == '%' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && (p[pi] == '_' || p[pi].eq_ignore_ascii_case(&t[ti])) {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '%' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(f: &str, args: &[Value]) -> Value {
        ScalarFunc::lookup(f, args.len())
            .unwrap()
            .call(args)
            .unwrap()
    }

    #[test]
    fn like_matches_runs_and_single_characters() {
        assert!(like("hello", "h%o"));
        assert!(like("hello", "H_LLO"));
        assert!(like("", "%"));
        assert!(!like("hello", "h_o"));
        assert!(like("abcabc", "%bc"));
        assert!(!like("abcab", "%bc"));
    }

    #[test]
    fn functions_follow_sqlite() {
        let t = Value::text;
        assert_eq!(call("abs", &[Value::Integer(-3)]), Value::Integer(3));
        assert_eq!(call("abs", &[Value::Null]), Value::Null);
        assert!(ScalarFunc::Abs.call(&[Value::Integer(i64::MIN)]).is_err());
        assert_eq!(
            call("coalesce", &[Value::Null, Value::Integer(2)]),
            Value::Integer(2)
        );
        assert_eq!(
            call("nullif", &[Value::Integer(2), Value::Real(2.0)]),
            Value::Null
        );
        assert_eq!(call("length", &[t("héllo")]), Value::Integer(5));
        assert_eq!(call("upper", &[t("abc")]), t("ABC"));
        assert_eq!(
            call(
                "substr",
                &[t("hello"), Value::Integer(2), Value::Integer(3)]
            ),
            t("ell")
        );
        assert_eq!(call("substr", &[t("hello"), Value::Integer(-3)]), t("llo"));
        assert_eq!(
            call(
                "substr",
                &[t("hello"), Value::Integer(0), Value::Integer(2)]
            ),
            t("h")
        );
        assert_eq!(
            call("round", &[Value::Real(2.567), Value::Integer(2)]),
            Value::Real(2.57)
        );
        assert_eq!(
            call(
                "max",
                &[Value::Integer(1), Value::Integer(5), Value::Integer(3)]
            ),
            Value::Integer(5)
        );
    }
}
