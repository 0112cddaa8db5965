//! `pydb sql`: a psql-like shell for SQL.
//!
//! Lines are collected until a statement is complete (its last token is a
//! `;` outside strings and comments; see
//! [`pydb::query::lexer::is_complete`]), then the statements
//! run one by one in one [`Session`], so that `BEGIN` on one line and
//! `COMMIT` three lines later form one transaction. A line that starts with
//! a backslash, typed where a statement would start, is a meta-command:
//!
//! | command            | what it does                                       |
//! |--------------------|----------------------------------------------------|
//! | `\d`               | list the tables and views                          |
//! | `\dt`, `\dv`       | list the tables, the views                         |
//! | `\d NAME`          | describe a table (columns, types, nullability, indexes) or a view |
//! | `\timing [on|off]` | print how long each statement took                 |
//! | `\?`               | list the meta-commands                             |
//! | `\q`               | leave                                              |
//!
//! Two output formats:
//! - [`Format::Aligned`] (a terminal, `-c`, `-f`): psql's default, a table
//!   with a header, `|` between columns, numbers aligned right, and a
//!   `(N rows)` footer; other statements print their command tag
//!   (`CREATE TABLE`, `INSERT 0 3`, `UPDATE 2`).
//! - [`Format::Plain`] (stdin is a pipe or a file): rows only, one per line,
//!   values separated by `|`, no header, footer or tags, as `psql -A -t -q`
//!   and `sqlite3`'s list mode print them, for other programs to read.
//!
//! In both, NULL prints as nothing (as psql and sqlite3 do) and an error
//! prints to the error stream as `ERROR:  ...`, with a caret under the
//! fault for syntax errors; the shell goes on with the next statement, as
//! psql does. [`SqlShell::had_errors`] tells the caller whether any
//! statement failed (the binary then exits with status 1).

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use pydb::query::catalog::{Table, View};
use pydb::query::describe::{CatalogListing, catalog};
use pydb::query::lexer::{is_complete, split_statements};
use pydb::query::plan::stats::TableStats;
use pydb::{Db, Output, ResultColumn, Rows, Session, Value};

use crate::{Error, Result};

/// The history file of the terminal loop, in the user's home directory (as
/// psql keeps `~/.psql_history`), so the database directory holds only the
/// database.
pub const SQL_HISTORY_FILE_NAME: &str = ".pydb_sql_history";

/// How query results are printed (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A table with a header and a `(N rows)` footer, and command tags.
    Aligned,
    /// Rows only, values separated by `|`.
    Plain,
}

/// Whether the shell goes on after a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Read the next line.
    Continue,
    /// `\q`: leave.
    Quit,
}

/// The shell's state: a session on the database, the lines of the
/// statement being typed, and the settings.
pub struct SqlShell<'a> {
    db: &'a Db,
    session: Session,
    format: Format,
    timing: bool,
    /// The lines typed since the last complete statement.
    buffer: String,
    had_errors: bool,
}

impl std::fmt::Debug for SqlShell<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlShell")
            .field("format", &self.format)
            .field("timing", &self.timing)
            .field("buffer", &self.buffer)
            .field("had_errors", &self.had_errors)
            .finish_non_exhaustive()
    }
}

impl<'a> SqlShell<'a> {
    /// A shell with a new session on `db`.
    pub fn new(db: &'a Db, format: Format) -> Self {
        SqlShell {
            db,
            session: db.sql_session(),
            format,
            timing: false,
            buffer: String::new(),
            had_errors: false,
        }
    }

    /// Whether a statement is half typed (the prompt shows `->`).
    pub fn is_continuation(&self) -> bool {
        !self.buffer.trim().is_empty()
    }

    /// Whether an explicit transaction is open (the prompt shows `*`).
    pub fn in_transaction(&self) -> bool {
        self.session.in_transaction()
    }

    /// Whether any statement or meta-command failed.
    pub fn had_errors(&self) -> bool {
        self.had_errors
    }

    /// Forgets a half-typed statement (Ctrl-C on the terminal).
    pub fn reset_buffer(&mut self) {
        self.buffer.clear();
    }

    /// Takes one line of input (without its newline): a meta-command, or a
    /// piece of SQL that runs once its statement is complete. Results go
    /// to `out`, errors to `err`.
    pub fn feed_line(
        &mut self,
        line: &str,
        out: &mut dyn Write,
        err: &mut dyn Write,
    ) -> std::io::Result<Flow> {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if !self.is_continuation() && line.trim_start().starts_with('\\') {
            self.buffer.clear();
            return self.meta(line.trim(), out, err);
        }
        self.buffer.push_str(line);
        self.buffer.push('\n');
        if is_complete(&self.buffer) {
            self.run_buffer(out, err)?;
        }
        Ok(Flow::Continue)
    }

    /// The end of the input: runs a last statement that has no `;`.
    pub fn finish(&mut self, out: &mut dyn Write, err: &mut dyn Write) -> std::io::Result<()> {
        if self.is_continuation() {
            self.run_buffer(out, err)?;
        }
        self.buffer.clear();
        Ok(())
    }

    /// Runs a whole script (the text of `-c` or `-f`), line by line.
    pub fn run_script(
        &mut self,
        script: &str,
        out: &mut dyn Write,
        err: &mut dyn Write,
    ) -> std::io::Result<Flow> {
        for line in script.lines() {
            if self.feed_line(line, out, err)? == Flow::Quit {
                return Ok(Flow::Quit);
            }
        }
        self.finish(out, err)?;
        Ok(Flow::Continue)
    }

    /// Runs the statements of the buffer one by one, stopping at the
    /// first error (as a multi-statement query does in psql).
    fn run_buffer(&mut self, out: &mut dyn Write, err: &mut dyn Write) -> std::io::Result<()> {
        let script = std::mem::take(&mut self.buffer);
        let spans = match split_statements(&script) {
            Ok(spans) => spans,
            Err(e) => return self.report(&e, err),
        };
        for span in spans {
            let Some(text) = script.get(span.start..span.end) else {
                continue;
            };
            let started = Instant::now();
            let result = self.session.execute(text);
            let elapsed = started.elapsed();
            match result {
                Ok(outputs) => {
                    for output in outputs {
                        self.print_output(&output, out)?;
                        // Printed: the session may fill it again (see
                        // `Session::recycle`), as the server does.
                        self.session.recycle(output);
                    }
                    if self.timing {
                        writeln!(out, "Time: {}", format_duration(elapsed))?;
                    }
                }
                Err(e) => {
                    self.report(&e, err)?;
                    break;
                }
            }
        }
        out.flush()
    }

    fn report(&mut self, e: &dyn std::fmt::Display, err: &mut dyn Write) -> std::io::Result<()> {
        self.had_errors = true;
        writeln!(err, "ERROR:  {e}")?;
        err.flush()
    }

    fn print_output(&self, output: &Output, out: &mut dyn Write) -> std::io::Result<()> {
        match (output, self.format) {
            (Output::Rows(rows), Format::Aligned) => {
                out.write_all(render_table(rows, true).as_bytes())?;
                writeln!(out)
            }
            (Output::Rows(rows), Format::Plain) => {
                for row in &rows.rows {
                    let cells: Vec<String> = row.iter().map(cell).collect();
                    writeln!(out, "{}", cells.join("|"))?;
                }
                Ok(())
            }
            (_, Format::Plain) => Ok(()),
            (Output::Affected { verb, count }, Format::Aligned) => {
                // PostgreSQL's tags: INSERT carries a (meaningless) OID.
                if *verb == "INSERT" {
                    writeln!(out, "INSERT 0 {count}")
                } else {
                    writeln!(out, "{verb} {count}")
                }
            }
            (Output::Done(tag), Format::Aligned) => writeln!(out, "{tag}"),
        }
    }

    /// Runs a meta-command line (`\d`, `\timing`, ...).
    fn meta(
        &mut self,
        line: &str,
        out: &mut dyn Write,
        err: &mut dyn Write,
    ) -> std::io::Result<Flow> {
        let mut words = line.split_whitespace();
        let command = words.next().unwrap_or("");
        let arg = words.next();
        match (command, arg) {
            ("\\q", _) => return Ok(Flow::Quit),
            ("\\?", _) => out.write_all(HELP.as_bytes())?,
            ("\\timing", arg) => {
                self.timing = match arg {
                    Some("on") => true,
                    Some("off") => false,
                    None => !self.timing,
                    Some(other) => {
                        self.report(
                            &format!("\\timing: unrecognized value \"{other}\": on or off"),
                            err,
                        )?;
                        return Ok(Flow::Continue);
                    }
                };
                let state = if self.timing { "on" } else { "off" };
                writeln!(out, "Timing is {state}.")?;
            }
            ("\\d" | "\\dt" | "\\dv", None) => match catalog(self.db.sql_database()) {
                Ok(listing) => {
                    let rows = relations(&listing, command);
                    out.write_all(render_table(&rows, true).as_bytes())?;
                    writeln!(out)?;
                }
                Err(e) => self.report(&e, err)?,
            },
            ("\\d", Some(name)) => match catalog(self.db.sql_database()) {
                Ok(listing) => {
                    let name = name.trim_matches('"');
                    if let Some(table) = listing
                        .tables
                        .iter()
                        .find(|t| t.name.eq_ignore_ascii_case(name))
                    {
                        out.write_all(describe_table(table).as_bytes())?;
                        if let Some(stats) = listing.stats.get(&table.name) {
                            out.write_all(describe_stats(table, stats).as_bytes())?;
                        }
                    } else if let Some(view) = listing
                        .views
                        .iter()
                        .find(|v| v.name.eq_ignore_ascii_case(name))
                    {
                        out.write_all(describe_view(view).as_bytes())?;
                    } else {
                        self.report(&format!("Did not find any relation named \"{name}\"."), err)?;
                    }
                }
                Err(e) => self.report(&e, err)?,
            },
            _ => self.report(&format!("invalid command {line}. Try \\? for help."), err)?,
        }
        out.flush()?;
        Ok(Flow::Continue)
    }
}

/// What `\?` prints.
const HELP: &str = "\
SQL statements end with a semicolon and may span several lines.
Meta-commands:
  \\d          list tables and views
  \\dt         list tables
  \\dv         list views
  \\d NAME     describe a table or view
  \\timing     toggle printing the time each statement takes
  \\?          show this help
  \\q          quit
";

/// A value as a table cell: NULL is empty, as in psql.
fn cell(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// `1.234 ms`, as psql's `\timing` prints it.
fn format_duration(elapsed: Duration) -> String {
    format!("{:.3} ms", elapsed.as_secs_f64() * 1000.0)
}

/// Rows as psql's aligned format: a centered header, a `-+-` rule, cells
/// padded to the widest value (numbers to the right), and, if `footer`,
/// `(N rows)`. Trailing spaces are trimmed.
pub fn render_table(rows: &Rows, footer: bool) -> String {
    let width = |s: &str| s.chars().count();
    let cells: Vec<Vec<String>> = rows
        .rows
        .iter()
        .map(|row| row.iter().map(cell).collect())
        .collect();
    let mut widths: Vec<usize> = rows.columns.iter().map(|c| width(&c.name)).collect();
    for row in &cells {
        for (i, value) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(width(value));
            }
        }
    }
    let mut text = String::new();
    let mut line = |parts: Vec<String>, sep: &str| {
        text.push_str(parts.join(sep).trim_end());
        text.push('\n');
    };
    line(
        rows.columns
            .iter()
            .zip(&widths)
            .map(|(c, &w)| {
                let pad = w - width(&c.name);
                format!(
                    " {}{}{} ",
                    " ".repeat(pad / 2),
                    c.name,
                    " ".repeat(pad - pad / 2)
                )
            })
            .collect(),
        "|",
    );
    line(widths.iter().map(|w| "-".repeat(w + 2)).collect(), "+");
    for (row, values) in cells.iter().zip(&rows.rows) {
        line(
            row.iter()
                .zip(&widths)
                .zip(values)
                .map(|((s, &w), v)| {
                    let pad = " ".repeat(w.saturating_sub(width(s)));
                    if matches!(v, Value::Integer(_) | Value::Real(_)) {
                        format!(" {pad}{s} ")
                    } else {
                        format!(" {s}{pad} ")
                    }
                })
                .collect(),
            "|",
        );
    }
    if footer {
        let n = rows.rows.len();
        text.push_str(&format!("({n} row{})\n", if n == 1 { "" } else { "s" }));
    }
    text
}

/// Rows of text columns named `names`.
fn text_rows(names: &[&str], rows: Vec<Vec<String>>) -> Rows {
    Rows {
        columns: names
            .iter()
            .map(|n| ResultColumn {
                name: (*n).to_string(),
                ty: Some(pydb::query::DataType::Text),
            })
            .collect(),
        rows: rows
            .into_iter()
            .map(|row| row.into_iter().map(|s| Value::Text(s.into())).collect())
            .collect(),
    }
}

/// The listing of `\d` (tables and views), `\dt` or `\dv`.
fn relations(listing: &CatalogListing, command: &str) -> Rows {
    let mut rows = Vec::new();
    if command != "\\dv" {
        for t in &listing.tables {
            rows.push(vec![t.name.clone(), "table".to_string()]);
        }
    }
    if command != "\\dt" {
        for v in &listing.views {
            rows.push(vec![v.name.clone(), "view".to_string()]);
        }
    }
    rows.sort();
    text_rows(&["Name", "Type"], rows)
}

/// What `\d table` adds for an analyzed table: the statistics the
/// optimizer estimates with (see `pydb_query::plan::stats`).
fn describe_stats(table: &Table, stats: &TableStats) -> String {
    let rows = table
        .columns
        .iter()
        .zip(&stats.columns)
        .map(|(c, s)| {
            let mcv = s
                .mcv
                .iter()
                .take(3)
                .map(|(v, f)| format!("{v} ({:.1}%)", f * 100.0))
                .collect::<Vec<_>>()
                .join(", ");
            let more = s.mcv.len().saturating_sub(3);
            vec![
                c.name.clone(),
                s.distinct.to_string(),
                format!("{:.1}%", s.null_frac * 100.0),
                if more > 0 {
                    format!("{mcv}, +{more}")
                } else {
                    mcv
                },
                s.histogram.len().saturating_sub(1).to_string(),
            ]
        })
        .collect();
    let mut text = format!(
        "Statistics (ANALYZE): {} rows, {} bytes per row\n",
        stats.row_count, stats.avg_row_bytes
    );
    text.push_str(&render_table(
        &text_rows(
            &["Column", "Distinct", "Nulls", "Most common", "Buckets"],
            rows,
        ),
        false,
    ));
    text.push('\n');
    text
}

/// `\d table`: its columns, then its primary key and indexes.
fn describe_table(table: &Table) -> String {
    let rows = table
        .columns
        .iter()
        .map(|c| {
            let default = match &c.default {
                Value::Null => String::new(),
                Value::Text(t) => format!("'{}'", t.replace('\'', "''")),
                other => other.to_string(),
            };
            vec![
                c.name.clone(),
                c.ty.to_string(),
                if c.nullable { "" } else { "not null" }.to_string(),
                default,
            ]
        })
        .collect();
    let mut text = format!("Table \"{}\"\n", table.name);
    text.push_str(&render_table(
        &text_rows(&["Column", "Type", "Nullable", "Default"], rows),
        false,
    ));
    let names = |positions: &[usize]| -> String {
        positions
            .iter()
            .map(|&i| table.columns.get(i).map_or("?", |c| c.name.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !table.primary_key.is_empty() || !table.indexes.is_empty() {
        text.push_str("Indexes:\n");
    }
    if !table.primary_key.is_empty() {
        text.push_str(&format!(
            "    PRIMARY KEY ({})\n",
            names(&table.primary_key)
        ));
    }
    for index in &table.indexes {
        let unique = if index.unique { " UNIQUE" } else { "" };
        text.push_str(&format!(
            "    \"{}\"{unique} ({})\n",
            index.name,
            names(&index.columns)
        ));
    }
    text.push('\n');
    text
}

/// `\d view`: its column names, if given, and its query.
fn describe_view(view: &View) -> String {
    let mut text = format!("View \"{}\"\n", view.name);
    if let Some(columns) = &view.columns {
        text.push_str(&format!("Columns: {}\n", columns.join(", ")));
    }
    text.push_str(&format!("Definition:\n {}\n\n", view.sql));
    text
}

/// Runs the shell on stdin: the terminal loop if stdin is a terminal, the
/// pipe loop otherwise.
pub fn run(db: &Db, banner: &str) -> Result<bool> {
    if std::io::stdin().is_terminal() {
        run_terminal(db, banner)
    } else {
        let stdin = std::io::stdin().lock();
        run_pipe(db, stdin, &mut std::io::stdout(), &mut std::io::stderr())
    }
}

/// The pipe loop: lines from `input`, plain output. Returns whether every
/// statement succeeded.
pub fn run_pipe(
    db: &Db,
    input: impl BufRead,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<bool> {
    let mut shell = SqlShell::new(db, Format::Plain);
    let io = |e| Error::io("<stdout>", e);
    for line in input.lines() {
        let line = line.map_err(|e| Error::io("<stdin>", e))?;
        if shell.feed_line(&line, out, err).map_err(io)? == Flow::Quit {
            return Ok(!shell.had_errors());
        }
    }
    shell.finish(out, err).map_err(io)?;
    Ok(!shell.had_errors())
}

/// Runs `script` (the text of `-c` or of `-f`'s file) with aligned output.
/// Returns whether every statement succeeded.
pub fn run_script(db: &Db, script: &str, out: &mut dyn Write, err: &mut dyn Write) -> Result<bool> {
    let mut shell = SqlShell::new(db, Format::Aligned);
    shell
        .run_script(script, out, err)
        .map_err(|e| Error::io("<stdout>", e))?;
    Ok(!shell.had_errors())
}

/// The terminal loop: rustyline with history, psql's prompts (`pydb=>`,
/// `pydb->` inside a statement, `pydb=*>` inside a transaction). Ctrl-C
/// forgets the statement being typed; Ctrl-D leaves.
pub fn run_terminal(db: &Db, banner: &str) -> Result<bool> {
    use rustyline::error::ReadlineError;

    let terminal_err = |e: ReadlineError| Error::io("<terminal>", std::io::Error::other(e));
    let mut editor = rustyline::DefaultEditor::new().map_err(terminal_err)?;
    let history: Option<PathBuf> =
        std::env::var_os("HOME").map(|home| PathBuf::from(home).join(SQL_HISTORY_FILE_NAME));
    if let Some(path) = &history {
        // A missing history file is the normal first run.
        let _ = editor.load_history(path);
    }
    println!("{banner}");
    println!("Type \\? for help, \\q to leave. Statements end with a semicolon.");
    let mut shell = SqlShell::new(db, Format::Aligned);
    let mut typed = String::new();
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    let io = |e| Error::io("<stdout>", e);
    loop {
        let prompt = match (shell.is_continuation(), shell.in_transaction()) {
            (true, _) => "pydb-> ",
            (false, true) => "pydb=*> ",
            (false, false) => "pydb=> ",
        };
        match editor.readline(prompt) {
            Ok(line) => {
                if !typed.is_empty() {
                    typed.push('\n');
                }
                typed.push_str(&line);
                let flow = shell.feed_line(&line, &mut out, &mut err).map_err(io)?;
                // A statement goes into the history whole, once complete.
                if !shell.is_continuation() {
                    if !typed.trim().is_empty() {
                        let _ = editor.add_history_entry(typed.as_str());
                    }
                    typed.clear();
                }
                if flow == Flow::Quit {
                    break;
                }
            }
            Err(ReadlineError::Interrupted) => {
                shell.reset_buffer();
                typed.clear();
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(terminal_err(e)),
        }
    }
    if let Some(path) = &history
        && let Err(e) = editor.save_history(path)
    {
        eprintln!(
            "warning: could not save the history to {}: {e}",
            path.display()
        );
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(format: Format, script: &str) -> (String, String, bool) {
        let db = Db::memory().unwrap();
        let mut shell = SqlShell::new(&db, format);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        shell.run_script(script, &mut out, &mut err).unwrap();
        (
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
            shell.had_errors(),
        )
    }

    #[test]
    fn aligned_tables_have_a_header_and_a_footer() {
        let (out, err, failed) = run(
            Format::Aligned,
            "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT);\n\
             INSERT INTO t VALUES (1, 'one'), (22, NULL);\n\
             SELECT id, name AS long_name FROM t ORDER BY id;",
        );
        assert_eq!(err, "");
        assert!(!failed);
        assert_eq!(
            out,
            "CREATE TABLE\n\
             INSERT 0 2\n \
             id | long_name\n\
             ----+-----------\n  \
             1 | one\n \
             22 |\n\
             (2 rows)\n\n"
        );
    }

    /// EXPLAIN's one text column prints as psql prints it: a centered
    /// `QUERY PLAN` header, one line per plan line with its indentation
    /// kept, and the row count.
    #[test]
    fn explain_prints_the_plan_as_a_table() {
        let (out, err, failed) = run(
            Format::Aligned,
            "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT);\n\
             INSERT INTO t VALUES (1, 'one'), (2, 'two');\n\
             EXPLAIN ANALYZE SELECT name FROM t WHERE name > 'a' ORDER BY name;",
        );
        assert_eq!(err, "");
        assert!(!failed);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[2].trim(), "QUERY PLAN");
        assert!(lines[3].chars().all(|c| c == '-'), "{out}");
        assert!(lines[4].starts_with(" Sort  (cost="), "{out}");
        assert!(lines[4].ends_with("rows=2 loops=1)"), "{out}");
        assert!(
            lines[6].starts_with("   ->  Seq Scan on t  (cost="),
            "{out}"
        );
        assert!(
            lines.iter().any(|l| l.starts_with(" Execution Time: ")),
            "{out}"
        );
        assert_eq!(lines.last(), Some(&""));
        assert!(
            lines[7].starts_with("         Filter: (t.name > 'a')"),
            "{out}"
        );
        assert!(out.ends_with("\n(7 rows)\n\n"), "{out}");
    }

    #[test]
    fn point_selects_with_changing_results_print_the_right_rows() {
        // Each output is handed back to the session after it is printed;
        // the next results must not show any of its values.
        let mut script = String::from("CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT);\n");
        let mut expected = String::new();
        for k in 0..6 {
            script += &format!("INSERT INTO kv VALUES ({k}, 'v{k}');\n");
        }
        for round in 0..3 {
            for k in 0..8 {
                script += &format!("UPDATE kv SET v = 'r{round}-{k}' WHERE k = {k};\n");
                script += &format!("SELECT k, v FROM kv WHERE k = {k};\n");
                if k < 6 {
                    expected += &format!("{k}|r{round}-{k}\n");
                }
            }
            script += "SELECT COUNT(*) FROM kv;\n";
            expected += "6\n";
        }
        let (out, err, failed) = run(Format::Plain, &script);
        assert_eq!((err.as_str(), failed), ("", false));
        assert_eq!(out, expected);
    }

    #[test]
    fn plain_output_is_rows_only() {
        let (out, _, _) = run(
            Format::Plain,
            "CREATE TABLE t(a INTEGER, b TEXT); INSERT INTO t VALUES (1, 'x'), (2, NULL);\n\
             SELECT a, b FROM t ORDER BY a;",
        );
        assert_eq!(out, "1|x\n2|\n");
    }

    #[test]
    fn statements_span_lines_until_a_semicolon() {
        let (out, err, _) = run(Format::Plain, "SELECT\n  1\n  + 1\n;\nSELECT 'a;b'\n;");
        assert_eq!(err, "");
        assert_eq!(out, "2\na;b\n");
    }

    #[test]
    fn a_last_statement_without_semicolon_runs_at_the_end() {
        assert_eq!(run(Format::Plain, "SELECT 7").0, "7\n");
    }

    #[test]
    fn errors_show_the_caret_and_the_shell_goes_on() {
        let (out, err, failed) = run(Format::Plain, "SELECT 1 +;\nSELECT 2;");
        assert!(failed);
        assert_eq!(out, "2\n");
        assert_eq!(
            err,
            "ERROR:  syntax error: expected an expression, found end of input\n\
             line 1, column 11\nSELECT 1 +\n          ^\n"
        );
    }

    #[test]
    fn transactions_span_statements() {
        let (out, err, _) = run(
            Format::Aligned,
            "CREATE TABLE t(a INTEGER);\nBEGIN;\nINSERT INTO t VALUES (1);\nROLLBACK;\n\
             SELECT count(*) FROM t;",
        );
        assert_eq!(err, "");
        assert!(out.contains("BEGIN\nINSERT 0 1\nROLLBACK\n"), "{out}");
        assert!(out.ends_with("     0\n(1 row)\n\n"), "{out}");
    }

    #[test]
    fn timing_prints_a_time_per_statement() {
        let (out, _, _) = run(
            Format::Plain,
            "\\timing\nSELECT 1;\n\\timing off\nSELECT 2;",
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "Timing is on.");
        assert_eq!(lines[1], "1");
        assert!(
            lines[2].starts_with("Time: ") && lines[2].ends_with(" ms"),
            "{out}"
        );
        assert_eq!(&lines[3..], ["Timing is off.", "2"]);
    }

    #[test]
    fn backslash_d_lists_and_describes() {
        let (out, err, failed) = run(
            Format::Aligned,
            "CREATE TABLE t1(id INTEGER PRIMARY KEY, name VARCHAR(10) NOT NULL DEFAULT 'x', score REAL);\n\
             CREATE UNIQUE INDEX t1_name ON t1(name);\n\
             CREATE VIEW v1 AS SELECT id FROM t1;\n\
             \\d\n\\dt\n\\d t1\n\\d v1\n\\d nope",
        );
        assert!(failed);
        assert_eq!(err, "ERROR:  Did not find any relation named \"nope\".\n");
        let expected = "CREATE TABLE\nCREATE INDEX\nCREATE VIEW\n \
            Name | Type\n------+-------\n t1   | table\n v1   | view\n(2 rows)\n\n \
            Name | Type\n------+-------\n t1   | table\n(1 row)\n\n\
            Table \"t1\"\n \
            Column |  Type   | Nullable | Default\n\
            --------+---------+----------+---------\n \
            id     | INTEGER | not null |\n \
            name   | TEXT    | not null | 'x'\n \
            score  | REAL    |          |\n\
            Indexes:\n    PRIMARY KEY (id)\n    \"t1_name\" UNIQUE (name)\n\n\
            View \"v1\"\nDefinition:\n SELECT id FROM t1\n\n";
        assert_eq!(out, expected);
    }

    #[test]
    fn backslash_d_shows_the_statistics_of_an_analyzed_table() {
        let (out, _, failed) = run(
            Format::Aligned,
            "CREATE TABLE t(a INTEGER, b TEXT);\n\
             INSERT INTO t VALUES (1, 'x'), (1, NULL), (2, 'y'), (3, NULL);\n\
             \\d t\nANALYZE t;\n\\d t",
        );
        assert!(!failed, "{out}");
        assert_eq!(
            out.matches("Statistics (ANALYZE): 4 rows").count(),
            1,
            "{out}"
        );
        assert!(
            out.contains(" a      | 3        | 0.0%  | 1 (50.0%), 2 (25.0%), 3 (25.0%) |"),
            "{out}"
        );
        assert!(out.contains(" b      | 2        | 50.0% |"), "{out}");
    }

    #[test]
    fn meta_commands_quit_help_and_unknown() {
        let (out, err, failed) = run(Format::Plain, "\\?\n\\nope\n\\q\nSELECT 1;");
        assert!(out.starts_with("SQL statements end with a semicolon"));
        assert!(!out.contains("\n1\n"), "nothing runs after \\q");
        assert!(failed);
        assert_eq!(err, "ERROR:  invalid command \\nope. Try \\? for help.\n");
    }

    #[test]
    fn a_backslash_inside_a_statement_is_sql() {
        let (out, _, _) = run(Format::Plain, "SELECT\n'\\d';");
        assert_eq!(out, "\\d\n");
    }

    #[test]
    fn render_table_of_no_rows() {
        let rows = text_rows(&["a"], Vec::new());
        assert_eq!(render_table(&rows, true), " a\n---\n(0 rows)\n");
    }
}
