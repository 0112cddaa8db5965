//! Running sqllogictest scripts against pydb (cargo feature `slt`).
//!
//! [sqllogictest] is SQLite's format for checking a SQL engine against
//! expected answers: a script of `statement ok|error` and `query <types>
//! <sort>` records, each query followed by its expected values, one per
//! line. The `sqllogictest` crate parses and runs the format; this module is
//! pydb's side of it, written once and used by both `cargo xtask slt` and
//! the crate's tests (`tests/slt.rs`):
//!
//! - [`SltDb`] implements the crate's `DB` trait over a [`Session`]. Its
//!   engine name, for `skipif`/`onlyif`, is [`ENGINE_NAME`].
//! - [`format_value`] turns a [`Value`] into the text SQLite's own harness
//!   prints, *as the expected column type asks*: in an `I` column a REAL
//!   prints truncated and a TEXT prints the integer it starts with, in an
//!   `R` column every number prints with three decimals (`%.3f`). NULL is
//!   `NULL`, empty text `(empty)`, and every byte outside the printable
//!   ASCII range `@`. BOOLEAN, which SQLite does not have, prints `1` or `0`
//!   as SQLite's comparisons do.
//! - [`run_script`] runs a whole script against a fresh [`Database`] and
//!   counts the records that passed, failed or were skipped, instead of
//!   stopping at the first failure as the crate's own `run_file` does.
//!
//! SQLite's scripts list the expected values one per line; the crate's own
//! scripts list one row per line, its values separated by spaces. The
//! validator here (`results_match`) accepts either layout, so pydb's own
//! scripts can show a row on a line.
//!
//! The crate's `DB::run` sees only the SQL, not the record's type letters.
//! [`run_script`] therefore hands each query's expected types to the
//! connection through a shared cell before it runs the record.
//!
//! Two things the crate's parser does not do the way SQLite's scripts need
//! are done here on the text before it is parsed: a comment after a
//! condition (`onlyif sqlite # empty RHS`) is removed, and a `halt` under a
//! condition (`onlyif mssql` then `halt`) ends the script only when the
//! condition holds for pydb, and is otherwise turned into comments (the
//! crate would halt unconditionally and pass the condition on to the next
//! record). Lines are never removed, so messages give the file's line
//! numbers.
//!
//! [sqllogictest]: https://sqlite.org/sqllogictest/doc/trunk/about.wiki

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;
use sqllogictest::{DBOutput, DefaultColumnType, QueryExpect, Record, RecordOutput, Runner};

use crate::error::{Error, Result};
use crate::output::Output;
use crate::session::{Database, Session};
use crate::value::{DataType, Value};

/// The name `skipif` and `onlyif` records use for pydb.
pub const ENGINE_NAME: &str = "pydb";

/// How many failures of a file a [`FileReport`] keeps in full.
pub const KEPT_FAILURES: usize = 5;

/// The column types the next query record expects, shared between
/// [`run_script_with`] and the connections it makes.
pub type ExpectedTypes = Arc<Mutex<Vec<DefaultColumnType>>>;

/// A sqllogictest connection: one [`Session`] of a database.
pub struct SltDb {
    session: Session,
    expected: ExpectedTypes,
}

impl SltDb {
    /// A connection that formats every value by its own type (no expected
    /// column types), for running SQL outside [`run_script`].
    pub fn new(session: Session) -> Self {
        SltDb {
            session,
            expected: ExpectedTypes::default(),
        }
    }
}

impl sqllogictest::DB for SltDb {
    type Error = Error;
    type ColumnType = DefaultColumnType;

    fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>> {
        // A record holds one statement; if it holds several, the last one's
        // output is the record's.
        let output = self.session.execute(sql)?.pop();
        Ok(match output {
            Some(Output::Rows(rows)) => {
                let expected = self.expected.lock().clone();
                let types = rows
                    .columns
                    .iter()
                    .map(|c| column_type(c.ty))
                    .collect::<Vec<_>>();
                let rows = rows
                    .rows
                    .iter()
                    .map(|row| {
                        row.iter()
                            .enumerate()
                            .map(|(i, v)| format_value(v, expected.get(i)))
                            .collect()
                    })
                    .collect();
                DBOutput::Rows { types, rows }
            }
            Some(Output::Affected { count, .. }) => DBOutput::StatementComplete(count),
            Some(Output::Done(_)) | None => DBOutput::StatementComplete(0),
        })
    }

    fn engine_name(&self) -> &str {
        ENGINE_NAME
    }

    fn error_sql_state(err: &Error) -> Option<String> {
        Some(err.sqlstate().to_string())
    }
}

/// The sqllogictest letter of a result column's type.
fn column_type(ty: Option<DataType>) -> DefaultColumnType {
    match ty {
        Some(DataType::Integer | DataType::Boolean) => DefaultColumnType::Integer,
        Some(DataType::Real) => DefaultColumnType::FloatingPoint,
        Some(DataType::Text) => DefaultColumnType::Text,
        None => DefaultColumnType::Any,
    }
}

/// The text SQLite's sqllogictest harness prints for `value` in a column
/// whose expected type is `expected` (`None`: the value's own type).
pub fn format_value(value: &Value, expected: Option<&DefaultColumnType>) -> String {
    let text = match (value, expected) {
        (Value::Null, _) => return "NULL".to_string(),
        (_, Some(DefaultColumnType::Integer)) => as_integer(value).to_string(),
        (_, Some(DefaultColumnType::FloatingPoint)) => fixed3(as_real(value)),
        (Value::Integer(i), _) => i.to_string(),
        (Value::Boolean(b), _) => i64::from(*b).to_string(),
        (Value::Real(r), Some(DefaultColumnType::Text)) => real_as_text(*r),
        (Value::Real(r), _) => fixed3(*r),
        (Value::Text(t), _) => t.to_string(),
    };
    if text.is_empty() {
        return "(empty)".to_string();
    }
    // SQLite's harness replaces bytes, so a character of several bytes
    // becomes as many `@`.
    text.bytes()
        .map(|b| {
            if (b' '..=b'~').contains(&b) {
                char::from(b)
            } else {
                '@'
            }
        })
        .collect()
}

/// `r` as SQLite's `printf("%.3f")` prints it: three decimals, and no more
/// than 16 significant digits (the rest are zeros), so that 2^63 prints as
/// `9223372036854776000.000`, as the corpus expects.
fn fixed3(r: f64) -> String {
    if !r.is_finite() || r.abs() < 1e13 {
        // Below 10^13, 16 significant digits cover the three decimals.
        return format!("{r:.3}");
    }
    // 16 significant digits: d.ddddddddddddddde<exp>.
    let sci = format!("{:.15e}", r.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let exp: usize = exp.parse().unwrap_or(0);
    // `exp` is at least 13 here, so the integer part has exp + 1 digits.
    let padded = format!("{digits:0<width$}", width = exp + 4);
    let (int, frac) = padded.split_at(exp + 1);
    let sign = if r < 0.0 { "-" } else { "" };
    format!("{sign}{int}.{}", &frac[..3])
}

/// A value read as SQLite's `sqlite3_column_int64` reads it: reals
/// truncated toward zero (saturating), text by its numeric prefix.
fn as_integer(value: &Value) -> i64 {
    match value {
        Value::Null => 0,
        Value::Integer(i) => *i,
        Value::Boolean(b) => i64::from(*b),
        // `as` truncates toward zero, saturates, and maps NaN to 0.
        Value::Real(r) => *r as i64,
        Value::Text(t) => {
            let prefix = numeric_prefix(t);
            if prefix.contains(['.', 'e', 'E']) {
                prefix.parse::<f64>().map_or(0, |r| r as i64)
            } else {
                prefix.parse::<i64>().unwrap_or_else(|_| {
                    // Too many digits for 64 bits: SQLite saturates.
                    if prefix.starts_with('-') {
                        i64::MIN
                    } else if prefix.is_empty() || prefix == "+" {
                        0
                    } else {
                        i64::MAX
                    }
                })
            }
        }
    }
}

/// A value read as SQLite's `sqlite3_column_double` reads it.
fn as_real(value: &Value) -> f64 {
    match value {
        Value::Null => 0.0,
        Value::Integer(i) => *i as f64,
        Value::Boolean(b) => f64::from(u8::from(*b)),
        Value::Real(r) => *r,
        Value::Text(t) => numeric_prefix(t).parse().unwrap_or(0.0),
    }
}

/// The longest prefix of `text` (after leading spaces) that reads as a
/// number: `[+-]digits[.digits][e[+-]digits]`.
fn numeric_prefix(text: &str) -> &str {
    let text = text.trim_start();
    let bytes = text.as_bytes();
    let digits = |mut i: usize| {
        while bytes.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        i
    };
    let mut end = usize::from(matches!(bytes.first(), Some(b'+' | b'-')));
    let int_end = digits(end);
    let mut any_digit = int_end > end;
    end = int_end;
    if bytes.get(end) == Some(&b'.') {
        let frac_end = digits(end + 1);
        if frac_end > end + 1 || any_digit {
            any_digit |= frac_end > end + 1;
            end = frac_end;
        }
    }
    if !any_digit {
        return "";
    }
    if matches!(bytes.get(end), Some(b'e' | b'E')) {
        let sign = usize::from(matches!(bytes.get(end + 1), Some(b'+' | b'-')));
        let exp_end = digits(end + 1 + sign);
        if exp_end > end + 1 + sign {
            end = exp_end;
        }
    }
    // Every byte up to `end` is ASCII, so `end` is a character boundary.
    text.get(..end).unwrap_or("")
}

/// A REAL as SQLite turns it into text (`%!.15g`): 15 significant digits,
/// and `.0` after a whole number.
fn real_as_text(r: f64) -> String {
    if !r.is_finite() {
        return if r.is_nan() {
            String::new()
        } else if r > 0.0 {
            "Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if r == r.trunc() && r.abs() < 1e15 {
        return format!("{r:.1}");
    }
    // Rounded to 15 significant digits, then the shortest text of that.
    let rounded: f64 = format!("{r:.14e}").parse().unwrap_or(r);
    let plain = rounded.to_string();
    if (1e-5..1e15).contains(&rounded.abs()) {
        plain
    } else {
        format!("{rounded:e}")
    }
}

/// What running one script gave.
#[derive(Debug, Clone, Default)]
pub struct FileReport {
    /// The script's name (its path).
    pub name: String,
    /// Statements and queries that ran and matched.
    pub passed: u64,
    /// Statements and queries that ran and did not match (or failed).
    pub failed: u64,
    /// Statements and queries skipped by `skipif`/`onlyif`.
    pub skipped: u64,
    /// The first [`KEPT_FAILURES`] failures: location, SQL, expected, got.
    pub failures: Vec<String>,
}

impl FileReport {
    /// `PATH: N passed, M failed (K skipped)`, then the kept failures.
    pub fn summary(&self) -> String {
        let mut out = format!(
            "{}: {} passed, {} failed ({} skipped)",
            self.name, self.passed, self.failed, self.skipped
        );
        for failure in &self.failures {
            let _ = write!(out, "\n  {}", failure.trim_end().replace('\n', "\n  "));
        }
        out
    }
}

/// Runs the script file at `path` against `database` (fresh for the file:
/// the script creates its tables). Fails only if the file cannot be read or
/// parsed; failing records are counted in the report.
pub fn run_file(path: &Path, database: &Database) -> std::result::Result<FileReport, String> {
    let script = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    run_script(&path.display().to_string(), &script, database)
}

/// Runs `script` (named `name` in messages) against `database`. Every
/// `connection` the script names is a new session of the same database.
pub fn run_script(
    name: &str,
    script: &str,
    database: &Database,
) -> std::result::Result<FileReport, String> {
    let database = database.clone();
    run_script_with(name, script, ENGINE_NAME, move |expected| {
        Ok::<_, Error>(SltDb {
            session: database.session(),
            expected,
        })
    })
}

/// Runs `script` against the connections `connect` makes (one per
/// `connection` the script names) to the engine named `engine` (what its
/// `engine_name` answers, for conditions on `halt`); each connection
/// formats values by the expected types in the cell it is given. [`run_script`] connects to pydb;
/// the tests also connect to SQLite, to check this harness itself against
/// the corpus.
pub fn run_script_with<D, E>(
    name: &str,
    script: &str,
    engine: &str,
    mut connect: impl FnMut(ExpectedTypes) -> std::result::Result<D, E>,
) -> std::result::Result<FileReport, String>
where
    D: sqllogictest::DB<ColumnType = DefaultColumnType, Error = E> + Send,
    E: std::error::Error + Send + Sync + 'static,
{
    let script = prepare(script, engine);
    let records = sqllogictest::parse_with_name::<DefaultColumnType>(&script, name)
        .map_err(|e| format!("{name}: {e}"))?;
    let expected = ExpectedTypes::default();
    let make = {
        let expected = Arc::clone(&expected);
        move || std::future::ready(connect(Arc::clone(&expected)))
    };
    let mut runner = Runner::new(make);
    runner.with_validator(results_match);
    let mut report = FileReport {
        name: name.to_string(),
        ..FileReport::default()
    };
    for record in records {
        let counted = match &record {
            Record::Query {
                expected: QueryExpect::Results { types, results, .. },
                ..
            } => {
                *expected.lock() = types.clone();
                runner.with_hash_threshold(hash_threshold(results));
                true
            }
            Record::Query { .. } | Record::Statement { .. } => {
                expected.lock().clear();
                true
            }
            Record::Halt { .. } => break,
            _ => false,
        };
        match runner.run(record) {
            Ok(RecordOutput::Nothing) if counted => report.skipped += 1,
            Ok(_) if counted => report.passed += 1,
            Ok(_) => {}
            Err(e) => {
                report.failed += 1;
                if report.failures.len() < KEPT_FAILURES {
                    report.failures.push(e.display(false).to_string());
                }
            }
        }
    }
    runner.shutdown();
    Ok(report)
}

/// The hash threshold for a query whose expected results are `results`.
///
/// SQLite's harness hashes a result of more values than its threshold
/// (`hash-threshold` records, or a command-line default of 8 that
/// select1.test relies on without saying). Rather than guess the threshold,
/// each query gets the one its expected text implies: `N values hashing to
/// ...` means hash when there are more than N - 1 values; anything else
/// means never hash. A result of any other size then fails, as it should.
fn hash_threshold(results: &[String]) -> usize {
    let [line] = results else { return 0 };
    let mut words = line.split_whitespace();
    match (
        words.next().map(str::parse::<usize>),
        words.next(),
        words.next(),
    ) {
        (Some(Ok(n)), Some("values"), Some("hashing")) => n.saturating_sub(1).max(1),
        _ => 0,
    }
}

/// Whether the actual rows match the expected lines, either one value per
/// line (SQLite's layout) or one row per line with its values separated by
/// spaces (the crate's layout). Whitespace runs compare equal, as in the
/// crate's default normalizer.
fn results_match(
    normalizer: sqllogictest::Normalizer,
    actual: &[Vec<String>],
    expected: &[String],
) -> bool {
    let expected: Vec<String> = expected.iter().map(normalizer).collect();
    let values = actual.iter().flatten().map(normalizer);
    if values.clone().eq(expected.iter().cloned()) {
        return true;
    }
    let rows = actual
        .iter()
        .map(|row| row.iter().map(normalizer).collect::<Vec<_>>().join(" "));
    rows.eq(expected.iter().cloned())
}

/// Rewrites the conditions and halts of SQLite's scripts into what the
/// crate's parser runs correctly (see the module docs).
fn prepare(script: &str, engine: &str) -> String {
    let mut out = String::with_capacity(script.len());
    // Condition lines waiting for the record they apply to.
    let mut pending: Vec<&str> = Vec::new();
    // Whether the pending conditions let pydb run the record.
    let mut applies = true;
    for line in script.lines() {
        let words: Vec<&str> = line
            .split('#')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        match words.as_slice() {
            ["onlyif", label] => {
                applies &= *label == engine;
                pending.push(line);
            }
            ["skipif", label] => {
                applies &= *label != engine;
                pending.push(line);
            }
            ["halt"] => {
                if applies {
                    break;
                }
                // Kept as comments, so that line numbers in messages stay
                // those of the file.
                for dropped in pending.drain(..).chain([line]) {
                    out.push_str("# ");
                    out.push_str(dropped);
                    out.push('\n');
                }
                applies = true;
            }
            _ => {
                for condition in pending.drain(..) {
                    let words: Vec<&str> = condition
                        .split('#')
                        .next()
                        .unwrap_or("")
                        .split_whitespace()
                        .collect();
                    out.push_str(&words.join(" "));
                    out.push('\n');
                }
                applies = true;
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// Opens a fresh database for one script: the engine `engine` (`memory`,
/// `log`, `btree`, `lsm`, ...) in `dir` (ignored by `memory`).
pub fn open_database(engine: &str, dir: &Path) -> Result<Database> {
    let config = pydb_storage::EngineConfig::from_name(engine)?;
    let engine = pydb_storage::open_engine(dir, &config)?;
    let mgr = pydb_txn::TxnManager::open(engine, pydb_txn::Options::default())?;
    Database::new(Arc::new(mgr))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Value {
        Value::Text(s.into())
    }

    #[test]
    fn values_print_as_the_expected_column_type_asks() {
        use DefaultColumnType::{Any, FloatingPoint as R, Integer as I, Text as T};
        let cases: &[(Value, DefaultColumnType, &str)] = &[
            (Value::Null, I, "NULL"),
            (Value::Null, T, "NULL"),
            (Value::Integer(-7), I, "-7"),
            (Value::Integer(7), R, "7.000"),
            (Value::Real(2.5), R, "2.500"),
            (Value::Real(-2.9), I, "-2"),
            (Value::Real(1e300), I, &i64::MAX.to_string()),
            (Value::Real(2.0), T, "2.0"),
            (Value::Real(0.1), T, "0.1"),
            (Value::Real(1.0 / 3.0), Any, "0.333"),
            (
                Value::Real(-9.223_372_036_854_776e18),
                R,
                "-9223372036854776000.000",
            ),
            (
                Value::Real(-1.844_674_407_370_955e19),
                R,
                "-18446744073709550000.000",
            ),
            (Value::Real(12_345_678_901_234.567), R, "12345678901234.570"),
            (Value::Real(1_234_567_890_123.456), R, "1234567890123.456"),
            (text(""), T, "(empty)"),
            (text("a\tb"), T, "a@b"),
            (text("é"), T, "@@"),
            (text(" 12abc"), I, "12"),
            (text("-3.9x"), I, "-3"),
            (text("abc"), I, "0"),
            (text("1e2"), R, "100.000"),
            (text(".5"), R, "0.500"),
            (Value::Boolean(true), I, "1"),
            (Value::Boolean(false), T, "0"),
        ];
        for (value, ty, want) in cases {
            assert_eq!(format_value(value, Some(ty)), *want, "{value:?} as {ty:?}");
        }
        assert_eq!(format_value(&Value::Integer(3), None), "3");
    }

    #[test]
    fn conditions_lose_their_comments_and_guard_halts() {
        let script = "onlyif mssql\nhalt\n\nonlyif sqlite # why\nquery I\nSELECT 1\n";
        assert_eq!(
            prepare(script, ENGINE_NAME),
            "# onlyif mssql\n# halt\n\nonlyif sqlite\nquery I\nSELECT 1\n",
            "a halt for another engine is commented out with its condition"
        );
        assert_eq!(
            prepare(
                "statement ok\nSELECT 1\n\nskipif mysql\nhalt\nx\n",
                ENGINE_NAME
            ),
            "statement ok\nSELECT 1\n\n"
        );
        assert_eq!(prepare("onlyif pydb\nhalt\nx\n", ENGINE_NAME), "");
    }

    #[test]
    fn hashing_follows_the_expected_text() {
        let one = |s: &str| vec![s.to_string()];
        assert_eq!(
            hash_threshold(&one(
                "24 values hashing to 425542fc8d1ec04f89534ae98d59a74d"
            )),
            23
        );
        assert_eq!(hash_threshold(&one("24")), 0);
        assert_eq!(hash_threshold(&[]), 0);
        assert_eq!(hash_threshold(&[one("1").remove(0), one("2").remove(0)]), 0);
    }

    #[test]
    fn results_match_one_value_or_one_row_per_line() {
        let n = sqllogictest::default_normalizer;
        let actual = vec![
            vec!["1".to_string(), "a  b".to_string()],
            vec!["2".into(), "c".into()],
        ];
        let lines = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(results_match(n, &actual, &lines(&["1", "a b", "2", "c"])));
        assert!(results_match(n, &actual, &lines(&["1 a b", "2 c"])));
        assert!(!results_match(n, &actual, &lines(&["1", "a b", "2"])));
        assert!(!results_match(n, &actual, &lines(&["2 c", "1 a b"])));
        assert!(!results_match(n, &[], &lines(&["1"])));
        assert!(results_match(n, &[], &[]));
    }
}
