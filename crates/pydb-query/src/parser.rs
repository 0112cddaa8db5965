//! The parser: tokens to the [`ast`](crate::ast).
//!
//! A hand-written recursive-descent parser: one method per grammar rule
//! (`statement`, `query`, `select`, `table_ref`, ...), each consuming the
//! tokens of its rule from the [`lexer`](crate::lexer)'s output. Hand
//! written rather than generated so that a student can step through it and
//! so that every error can say, with a caret, what was expected where.
//!
//! Expressions use *precedence climbing*: `Parser::expr_at` parses an
//! operand, then keeps folding in infix operators while they bind at least
//! as tightly as its `min` level, parsing each right operand one level
//! tighter (which makes the operators left-associative). The levels are
//! SQLite's, loosest first:
//!
//! ```text
//! 1 OR
//! 2 AND
//! 3 NOT x                                   (prefix)
//! 4 = == != <> IS [NOT] [NOT] IN [NOT] LIKE [NOT] BETWEEN ISNULL NOTNULL
//! 5 < <= > >=
//! 6 & | << >>
//! 7 + -
//! 8 * / %
//! 9 ||
//! 10 - + ~ x                                (prefix)
//! ```
//!
//! so `NOT a = b` is `NOT (a = b)`, `-a * b` is `(-a) * b`, and
//! `a < b = c < d` is `(a < b) = (c < d)`.
//!
//! Invariants:
//! - The parser never panics, whatever the text: every unexpected token is
//!   an [`Error::Syntax`] carrying the span and the caret rendering.
//! - Nesting (parentheses, subqueries, prefix operators) is capped at
//!   [`MAX_DEPTH`], so that a hostile statement gets an error rather than
//!   a stack overflow.
//! - SQL that is valid for SQLite but that pydb does not run (triggers,
//!   `WITH`, `PRAGMA`, ...) is refused with [`Error::Invalid`], naming it.

use crate::ast::*;
use crate::error::{Error, Result};
use crate::lexer::{Keyword, MAX_PARAMETER, Token, TokenKind, syntax_error, tokenize};
use crate::value::DataType;

pub use crate::lexer::render_span;

/// How deeply expressions and queries may nest (parentheses, subqueries,
/// chains of prefix operators) before the parser gives up with an error.
///
/// A parenthesis costs one level, a subquery two. An unoptimized build
/// uses about 14 KiB of stack per level, so the whole limit fits in the
/// 2 MiB a Rust thread gets by default (tested); an optimized build needs
/// far less. SQLite allows 1000 levels, but no real query comes near.
pub const MAX_DEPTH: usize = 100;

/// Parses a script of `;`-separated statements. Spans are byte offsets in
/// `sql`. Empty statements (`;;`) are skipped.
pub fn parse(sql: &str) -> Result<Vec<Statement>> {
    let mut parser = Parser::new(sql)?;
    let mut statements = Vec::new();
    loop {
        while parser.eat(&TokenKind::Semicolon) {}
        if parser.at(&TokenKind::Eof) {
            return Ok(statements);
        }
        statements.push(parser.statement()?);
        if !parser.at(&TokenKind::Eof) {
            parser.expect(&TokenKind::Semicolon)?;
        }
    }
}

/// Parses one expression (the whole text must be that expression).
pub fn parse_expr(sql: &str) -> Result<Expr> {
    let mut parser = Parser::new(sql)?;
    let expr = parser.expr()?;
    parser.expect(&TokenKind::Eof)?;
    Ok(expr)
}

/// Maps a declared column type to one of pydb's types, by SQLite's
/// affinity rules applied in order to the type name in upper case:
///
/// 1. contains `INT` → INTEGER;
/// 2. contains `CHAR`, `CLOB` or `TEXT` → TEXT;
/// 3. contains `BOOL` → BOOLEAN (pydb's own type; SQLite has none);
/// 4. contains `REAL`, `FLOA` or `DOUB` → REAL;
/// 5. anything else (`NUMERIC`, `DECIMAL`, `BLOB`, no type at all) →
///    INTEGER.
///
/// Rule 5 differs from SQLite, which keeps such columns "numeric" or
/// untyped and stores whatever comes: pydb's columns hold one type, and
/// the corpus stores whole numbers in its untyped columns, so INTEGER is
/// the nearest. (The value layer decides what a REAL stored there becomes.)
pub fn type_affinity(name: &str) -> DataType {
    let upper = name.to_ascii_uppercase();
    if upper.contains("INT") {
        DataType::Integer
    } else if ["CHAR", "CLOB", "TEXT"].iter().any(|s| upper.contains(s)) {
        DataType::Text
    } else if upper.contains("BOOL") {
        DataType::Boolean
    } else if ["REAL", "FLOA", "DOUB"].iter().any(|s| upper.contains(s)) {
        DataType::Real
    } else {
        DataType::Integer
    }
}

/// The binding levels of the expression grammar (see the module docs).
mod prec {
    pub const OR: u8 = 1;
    pub const AND: u8 = 2;
    pub const NOT: u8 = 3;
    pub const EQUALITY: u8 = 4;
    pub const COMPARISON: u8 = 5;
    pub const BITWISE: u8 = 6;
    pub const ADDITIVE: u8 = 7;
    pub const MULTIPLICATIVE: u8 = 8;
    pub const CONCAT: u8 = 9;
    pub const UNARY: u8 = 10;
}

/// The parser's state: the tokens, the position, and counters.
struct Parser<'a> {
    sql: &'a str,
    tokens: Vec<Token>,
    pos: usize,
    /// The current nesting depth (see [`MAX_DEPTH`]).
    depth: usize,
    /// The highest parameter number seen, so that a bare `?` takes the
    /// next one (SQLite's rule).
    max_param: u32,
}

impl<'a> Parser<'a> {
    fn new(sql: &'a str) -> Result<Self> {
        Ok(Parser {
            sql,
            tokens: tokenize(sql)?,
            pos: 0,
            depth: 0,
            max_param: 0,
        })
    }

    // ---- Token plumbing -------------------------------------------------

    /// The current token. The token list always ends with `Eof`, and the
    /// parser never steps past it.
    fn peek(&self) -> &Token {
        self.peek_at(0)
    }

    /// The token `n` places ahead (the final `Eof` past the end).
    fn peek_at(&self, n: usize) -> &Token {
        let i = (self.pos + n).min(self.tokens.len() - 1);
        &self.tokens[i]
    }

    /// Steps over the current token (never past `Eof`) and returns it.
    fn advance(&mut self) -> Token {
        let token = self.peek().clone();
        if self.pos + 1 < self.tokens.len() {
            self.pos += 1;
        }
        token
    }

    /// The span of the token before the current one (the end of what was
    /// parsed so far).
    fn prev_span(&self) -> Span {
        self.tokens[self.pos.saturating_sub(1)].span
    }

    fn at(&self, kind: &TokenKind) -> bool {
        &self.peek().kind == kind
    }

    fn at_keyword(&self, k: Keyword) -> bool {
        self.peek().kind == TokenKind::Keyword(k)
    }

    fn eat(&mut self, kind: &TokenKind) -> bool {
        let yes = self.at(kind);
        if yes {
            self.advance();
        }
        yes
    }

    fn eat_keyword(&mut self, k: Keyword) -> bool {
        self.eat(&TokenKind::Keyword(k))
    }

    /// Whether the next tokens are these keywords; consumes them if so.
    fn eat_keywords(&mut self, ks: &[Keyword]) -> bool {
        let yes = ks
            .iter()
            .enumerate()
            .all(|(i, k)| self.peek_at(i).kind == TokenKind::Keyword(*k));
        if yes {
            for _ in ks {
                self.advance();
            }
        }
        yes
    }

    fn expect(&mut self, kind: &TokenKind) -> Result<Span> {
        if self.at(kind) {
            Ok(self.advance().span)
        } else {
            Err(self.unexpected(&kind.to_string()))
        }
    }

    fn expect_keyword(&mut self, k: Keyword) -> Result<Span> {
        if self.at_keyword(k) {
            Ok(self.advance().span)
        } else {
            Err(self.unexpected(k.as_str()))
        }
    }

    /// "expected X, found Y" at the current token.
    fn unexpected(&self, expected: &str) -> Error {
        let token = self.peek();
        self.error_at(
            token.span,
            format!("expected {expected}, found {}", token.kind),
        )
    }

    fn error_at(&self, span: Span, message: impl Into<String>) -> Error {
        syntax_error(self.sql, span, message)
    }

    /// Refuses valid SQL that pydb does not run.
    fn unsupported(&self, what: &str) -> Error {
        Error::Invalid(format!("{what} is not supported by pydb"))
    }

    /// Enters one level of nesting; [`Parser::leave`] must follow.
    fn enter(&mut self) -> Result<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            let span = self.peek().span;
            return Err(self.error_at(
                span,
                format!("expression or query nested more than {MAX_DEPTH} levels deep"),
            ));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    /// A name: an unquoted word that is not a reserved keyword, or any
    /// quoted name.
    fn ident(&mut self, what: &str) -> Result<Ident> {
        match self.peek_ident() {
            Some(ident) => {
                self.advance();
                Ok(ident)
            }
            None => Err(self.unexpected(what)),
        }
    }

    /// The current token as a name, if it can be one.
    fn peek_ident(&self) -> Option<Ident> {
        let token = self.peek();
        match &token.kind {
            TokenKind::Ident { value, quoted } => Some(Ident {
                value: value.clone(),
                quoted: *quoted,
                span: token.span,
            }),
            TokenKind::Keyword(k) if !k.is_reserved() => Some(Ident {
                value: self.sql[token.span.start..token.span.end].to_string(),
                quoted: false,
                span: token.span,
            }),
            _ => None,
        }
    }

    /// `(name, name, ...)`.
    fn ident_list(&mut self, what: &str) -> Result<Vec<Ident>> {
        self.expect(&TokenKind::LParen)?;
        let mut names = vec![self.ident(what)?];
        while self.eat(&TokenKind::Comma) {
            names.push(self.ident(what)?);
        }
        self.expect(&TokenKind::RParen)?;
        Ok(names)
    }

    // ---- Statements -----------------------------------------------------

    fn statement(&mut self) -> Result<Statement> {
        let token = self.peek().clone();
        let TokenKind::Keyword(k) = token.kind else {
            if token.kind == TokenKind::LParen {
                return Ok(Statement::Query(Box::new(self.query()?)));
            }
            return Err(self.unexpected("a statement"));
        };
        match k {
            Keyword::SELECT | Keyword::VALUES => Ok(Statement::Query(Box::new(self.query()?))),
            Keyword::INSERT | Keyword::REPLACE => self.insert().map(Statement::Insert),
            Keyword::UPDATE => self.update().map(Statement::Update),
            Keyword::DELETE => self.delete().map(Statement::Delete),
            Keyword::CREATE => self.create(),
            Keyword::DROP => self.drop_statement().map(Statement::Drop),
            Keyword::BEGIN | Keyword::START => self.begin(),
            Keyword::COMMIT | Keyword::END => {
                self.advance();
                self.eat_keyword(Keyword::TRANSACTION);
                Ok(Statement::Commit)
            }
            Keyword::ROLLBACK => {
                self.advance();
                self.eat_keyword(Keyword::TRANSACTION);
                if self.at_keyword(Keyword::TO) {
                    return Err(self.unsupported("ROLLBACK TO (savepoints)"));
                }
                Ok(Statement::Rollback)
            }
            Keyword::EXPLAIN => {
                self.advance();
                let analyze = self.eat_keyword(Keyword::ANALYZE);
                // SQLite's `EXPLAIN QUERY PLAN` is what pydb's EXPLAIN is.
                if !analyze {
                    self.eat_keywords(&[Keyword::QUERY, Keyword::PLAN]);
                }
                if self.at_keyword(Keyword::EXPLAIN) {
                    return Err(self.unexpected("a statement to explain"));
                }
                let statement = Box::new(self.statement()?);
                Ok(Statement::Explain { analyze, statement })
            }
            Keyword::ANALYZE => {
                self.advance();
                let table = match self.peek_ident() {
                    Some(_) => Some(self.ident("a table name")?),
                    None => None,
                };
                Ok(Statement::Analyze { table })
            }
            Keyword::WITH => Err(self.unsupported("WITH (common table expressions)")),
            Keyword::REINDEX => {
                self.advance();
                let name = match self.peek_ident() {
                    Some(_) => Some(self.ident("an index or table name")?),
                    None => None,
                };
                Ok(Statement::Reindex { name })
            }
            Keyword::PRAGMA => Err(self.unsupported("PRAGMA")),
            Keyword::VACUUM => Err(self.unsupported("VACUUM")),
            Keyword::SAVEPOINT | Keyword::RELEASE => Err(self.unsupported("SAVEPOINT")),
            _ => Err(self.unexpected("a statement")),
        }
    }

    /// `BEGIN [DEFERRED|IMMEDIATE|EXCLUSIVE] [TRANSACTION]` or
    /// `START TRANSACTION`, then transaction modes.
    fn begin(&mut self) -> Result<Statement> {
        if self.eat_keyword(Keyword::START) {
            self.expect_keyword(Keyword::TRANSACTION)?;
        } else {
            self.expect_keyword(Keyword::BEGIN)?;
            // SQLite's locking modes mean nothing under MVCC.
            let _ = self.eat_keyword(Keyword::DEFERRED)
                || self.eat_keyword(Keyword::IMMEDIATE)
                || self.eat_keyword(Keyword::EXCLUSIVE);
            self.eat_keyword(Keyword::TRANSACTION);
        }
        let mut isolation = None;
        let mut read_only = false;
        loop {
            if self.eat_keywords(&[Keyword::ISOLATION, Keyword::LEVEL]) {
                isolation = Some(self.isolation_level()?);
            } else if self.eat_keywords(&[Keyword::READ, Keyword::ONLY]) {
                read_only = true;
            } else if self.eat_keywords(&[Keyword::READ, Keyword::WRITE]) {
                read_only = false;
            } else {
                break;
            }
            self.eat(&TokenKind::Comma);
        }
        Ok(Statement::Begin {
            isolation,
            read_only,
        })
    }

    /// `READ UNCOMMITTED | READ COMMITTED | REPEATABLE READ | SNAPSHOT |
    /// SERIALIZABLE` (the last words are not keywords elsewhere, so they
    /// come as names).
    fn isolation_level(&mut self) -> Result<IsolationLevel> {
        let word = |p: &Parser, n: usize| -> String {
            let t = p.peek_at(n);
            match &t.kind {
                TokenKind::Ident { value, .. } => value.to_ascii_uppercase(),
                TokenKind::Keyword(k) => k.as_str().to_string(),
                _ => String::new(),
            }
        };
        let (level, words) = match (word(self, 0).as_str(), word(self, 1).as_str()) {
            ("READ", "UNCOMMITTED") => (IsolationLevel::ReadUncommitted, 2),
            ("READ", "COMMITTED") => (IsolationLevel::ReadCommitted, 2),
            ("REPEATABLE", "READ") => (IsolationLevel::RepeatableRead, 2),
            ("SNAPSHOT", _) => (IsolationLevel::Snapshot, 1),
            ("SERIALIZABLE", _) => (IsolationLevel::Serializable, 1),
            _ => return Err(self.unexpected("an isolation level")),
        };
        for _ in 0..words {
            self.advance();
        }
        Ok(level)
    }

    /// `INSERT [OR REPLACE] INTO t [(cols)] VALUES ... | query | DEFAULT
    /// VALUES`, or `REPLACE INTO ...`.
    fn insert(&mut self) -> Result<Insert> {
        let start = self.peek().span;
        let replace = if self.eat_keyword(Keyword::REPLACE) {
            true
        } else {
            self.expect_keyword(Keyword::INSERT)?;
            if self.eat_keyword(Keyword::OR) {
                self.conflict_clause()?
            } else {
                false
            }
        };
        self.expect_keyword(Keyword::INTO)?;
        let table = self.ident("a table name")?;
        if self.at_keyword(Keyword::AS) {
            return Err(self.unsupported("an alias on INSERT's table"));
        }
        let columns = if self.at(&TokenKind::LParen) {
            Some(self.ident_list("a column name")?)
        } else {
            None
        };
        let source = if self.eat_keywords(&[Keyword::DEFAULT, Keyword::VALUES]) {
            None
        } else if self.at_keyword(Keyword::SELECT)
            || self.at_keyword(Keyword::VALUES)
            || self.at(&TokenKind::LParen)
        {
            Some(Box::new(self.query()?))
        } else {
            return Err(self.unexpected("VALUES, SELECT or DEFAULT VALUES"));
        };
        if self.at_keyword(Keyword::ON) || self.at_ident("RETURNING") {
            return Err(self.unsupported("ON CONFLICT / RETURNING"));
        }
        Ok(Insert {
            table,
            columns,
            source,
            replace,
            span: start.to(self.prev_span()),
        })
    }

    /// Whether the current token is the (non-keyword) word `word`.
    fn at_ident(&self, word: &str) -> bool {
        matches!(&self.peek().kind, TokenKind::Ident { value, quoted: false } if value.eq_ignore_ascii_case(word))
    }

    /// After `INSERT OR` / `UPDATE OR`: `REPLACE` (true) or `ABORT`
    /// (false, the default behaviour); the others are refused.
    fn conflict_clause(&mut self) -> Result<bool> {
        if self.eat_keyword(Keyword::REPLACE) {
            Ok(true)
        } else if self.eat_keyword(Keyword::ABORT) {
            Ok(false)
        } else if [Keyword::IGNORE, Keyword::FAIL, Keyword::ROLLBACK]
            .iter()
            .any(|k| self.at_keyword(*k))
        {
            Err(self.unsupported("OR IGNORE / OR FAIL / OR ROLLBACK"))
        } else {
            Err(self.unexpected("REPLACE, ABORT, IGNORE, FAIL or ROLLBACK"))
        }
    }

    /// `UPDATE t SET col = expr, ... [WHERE expr]`.
    fn update(&mut self) -> Result<Update> {
        let start = self.expect_keyword(Keyword::UPDATE)?;
        if self.eat_keyword(Keyword::OR) && self.conflict_clause()? {
            return Err(self.unsupported("UPDATE OR REPLACE"));
        }
        let table = self.ident("a table name")?;
        self.skip_index_hint()?;
        self.expect_keyword(Keyword::SET)?;
        let mut assignments = Vec::new();
        loop {
            let column = self.ident("a column name")?;
            self.expect(&TokenKind::Eq)?;
            assignments.push((column, self.expr()?));
            if !self.eat(&TokenKind::Comma) {
                break;
            }
        }
        let selection = self.where_clause()?;
        Ok(Update {
            table,
            assignments,
            selection,
            span: start.to(self.prev_span()),
        })
    }

    /// `DELETE FROM t [WHERE expr]`.
    fn delete(&mut self) -> Result<Delete> {
        let start = self.expect_keyword(Keyword::DELETE)?;
        self.expect_keyword(Keyword::FROM)?;
        let table = self.ident("a table name")?;
        self.skip_index_hint()?;
        let selection = self.where_clause()?;
        Ok(Delete {
            table,
            selection,
            span: start.to(self.prev_span()),
        })
    }

    fn where_clause(&mut self) -> Result<Option<Expr>> {
        if self.eat_keyword(Keyword::WHERE) {
            Ok(Some(self.expr()?))
        } else {
            Ok(None)
        }
    }

    /// SQLite's `INDEXED BY name` and `NOT INDEXED` after a table name:
    /// hints to its planner that change no result, so they are read and
    /// dropped.
    fn skip_index_hint(&mut self) -> Result<()> {
        if self.eat_keywords(&[Keyword::INDEXED, Keyword::BY]) {
            self.ident("an index name")?;
        } else {
            self.eat_keywords(&[Keyword::NOT, Keyword::INDEXED]);
        }
        Ok(())
    }

    /// `CREATE TABLE | [UNIQUE] INDEX | VIEW ...`.
    fn create(&mut self) -> Result<Statement> {
        let start = self.expect_keyword(Keyword::CREATE)?;
        if self.at_keyword(Keyword::TEMP) || self.at_keyword(Keyword::TEMPORARY) {
            return Err(self.unsupported("TEMP tables and views"));
        }
        if self.eat_keyword(Keyword::TABLE) {
            self.create_table(start).map(Statement::CreateTable)
        } else if self.at_keyword(Keyword::UNIQUE) || self.at_keyword(Keyword::INDEX) {
            self.create_index(start).map(Statement::CreateIndex)
        } else if self.eat_keyword(Keyword::VIEW) {
            self.create_view(start).map(Statement::CreateView)
        } else if self.at_keyword(Keyword::TRIGGER) {
            Err(self.unsupported("CREATE TRIGGER"))
        } else if self.at_ident("VIRTUAL") {
            Err(self.unsupported("CREATE VIRTUAL TABLE"))
        } else {
            Err(self.unexpected("TABLE, INDEX or VIEW"))
        }
    }

    fn if_not_exists(&mut self) -> bool {
        self.eat_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS])
    }

    fn create_table(&mut self, start: Span) -> Result<CreateTable> {
        let if_not_exists = self.if_not_exists();
        let name = self.ident("a table name")?;
        if self.at_keyword(Keyword::AS) {
            return Err(self.unsupported("CREATE TABLE ... AS SELECT"));
        }
        self.expect(&TokenKind::LParen)?;
        let mut columns = Vec::new();
        let mut constraints = Vec::new();
        loop {
            if self.at_keyword(Keyword::CONSTRAINT)
                || self.at_keyword(Keyword::PRIMARY)
                || self.at_keyword(Keyword::UNIQUE)
                || self.at_keyword(Keyword::CHECK)
                || self.at_keyword(Keyword::FOREIGN)
            {
                constraints.push(self.table_constraint()?);
            } else if constraints.is_empty() {
                columns.push(self.column_def()?);
            } else {
                return Err(self.unexpected("a table constraint"));
            }
            if !self.eat(&TokenKind::Comma) {
                break;
            }
        }
        self.expect(&TokenKind::RParen)?;
        if self.at_ident("WITHOUT") || self.at_ident("STRICT") {
            return Err(self.unsupported("WITHOUT ROWID / STRICT tables"));
        }
        Ok(CreateTable {
            name,
            if_not_exists,
            columns,
            constraints,
            span: start.to(self.prev_span()),
        })
    }

    /// `name [type] [constraints]`.
    fn column_def(&mut self) -> Result<ColumnDef> {
        let name = self.ident("a column name")?;
        // The type is every name up to a constraint, a comma or `)`:
        // `DOUBLE PRECISION`, `VARCHAR(8)` (the size is read and ignored,
        // as SQLite does).
        let mut type_name = String::new();
        while let Some(word) = self.peek_ident() {
            self.advance();
            if !type_name.is_empty() {
                type_name.push(' ');
            }
            type_name.push_str(&word.value);
        }
        if !type_name.is_empty() && self.eat(&TokenKind::LParen) {
            self.signed_number()?;
            if self.eat(&TokenKind::Comma) {
                self.signed_number()?;
            }
            self.expect(&TokenKind::RParen)?;
        }
        let mut column = ColumnDef {
            ty: type_affinity(&type_name),
            name,
            primary_key: false,
            not_null: false,
            unique: false,
            default: None,
            span: Span::default(),
        };
        loop {
            if self.eat_keyword(Keyword::CONSTRAINT) {
                self.ident("a constraint name")?;
            }
            if self.eat_keywords(&[Keyword::PRIMARY, Keyword::KEY]) {
                column.primary_key = true;
                let _ = self.eat_keyword(Keyword::ASC) || self.eat_keyword(Keyword::DESC);
                self.on_conflict()?;
                self.eat_keyword(Keyword::AUTOINCREMENT);
            } else if self.eat_keywords(&[Keyword::NOT, Keyword::NULL]) {
                column.not_null = true;
                self.on_conflict()?;
            } else if self.eat_keyword(Keyword::NULL) {
                // Nullable is the default.
            } else if self.eat_keyword(Keyword::UNIQUE) {
                column.unique = true;
                self.on_conflict()?;
            } else if self.eat_keyword(Keyword::DEFAULT) {
                column.default = Some(self.default_value()?);
            } else if self.at_keyword(Keyword::COLLATE) {
                self.collate()?;
            } else if self.at_keyword(Keyword::CHECK) {
                return Err(self.unsupported("CHECK constraints"));
            } else if self.at_keyword(Keyword::REFERENCES) {
                return Err(self.unsupported("REFERENCES (foreign keys)"));
            } else {
                break;
            }
        }
        column.span = column.name.span.to(self.prev_span());
        Ok(column)
    }

    /// SQLite's `ON CONFLICT ...` after a constraint: refused, since pydb
    /// always aborts the statement.
    fn on_conflict(&mut self) -> Result<()> {
        if self.at_keyword(Keyword::ON) {
            return Err(self.unsupported("ON CONFLICT clauses"));
        }
        Ok(())
    }

    /// `COLLATE name`: only the default, BINARY, is accepted (and dropped),
    /// since pydb compares text byte by byte.
    fn collate(&mut self) -> Result<()> {
        self.expect_keyword(Keyword::COLLATE)?;
        let name = self.ident("a collation name")?;
        if !name.matches("binary") {
            return Err(self.unsupported(&format!("COLLATE {}", name.value)));
        }
        Ok(())
    }

    /// `[+|-] number`, as in `VARCHAR(8)`.
    fn signed_number(&mut self) -> Result<()> {
        let _ = self.eat(&TokenKind::Plus) || self.eat(&TokenKind::Minus);
        match self.peek().kind {
            TokenKind::Integer(_) | TokenKind::Real { .. } => {
                self.advance();
                Ok(())
            }
            _ => Err(self.unexpected("a number")),
        }
    }

    /// After DEFAULT: a literal, a signed number, or `(expr)`.
    fn default_value(&mut self) -> Result<Expr> {
        if self.at(&TokenKind::LParen) {
            return self.primary();
        }
        let start = self.peek().span;
        let negative = self.eat(&TokenKind::Minus);
        let signed = negative || self.eat(&TokenKind::Plus);
        let literal = match self.peek().kind {
            TokenKind::Integer(_) | TokenKind::Real { .. } => self.number(negative)?,
            TokenKind::String(_)
            | TokenKind::Keyword(Keyword::NULL | Keyword::TRUE | Keyword::FALSE)
                if !signed =>
            {
                self.literal()?
            }
            TokenKind::Blob(_) if !signed => self.literal()?,
            _ => return Err(self.unexpected("a literal or (expression)")),
        };
        // The span covers the sign; `+5` is just `5`.
        Ok(Expr {
            span: start.to(literal.span),
            ..literal
        })
    }

    /// `[CONSTRAINT name] PRIMARY KEY (cols) | UNIQUE (cols)`.
    fn table_constraint(&mut self) -> Result<TableConstraint> {
        if self.eat_keyword(Keyword::CONSTRAINT) {
            self.ident("a constraint name")?;
        }
        let constraint = if self.eat_keywords(&[Keyword::PRIMARY, Keyword::KEY]) {
            TableConstraint::PrimaryKey(self.indexed_columns()?)
        } else if self.eat_keyword(Keyword::UNIQUE) {
            TableConstraint::Unique(self.indexed_columns()?)
        } else if self.at_keyword(Keyword::CHECK) {
            return Err(self.unsupported("CHECK constraints"));
        } else if self.at_keyword(Keyword::FOREIGN) {
            return Err(self.unsupported("FOREIGN KEY constraints"));
        } else {
            return Err(self.unexpected("PRIMARY KEY or UNIQUE"));
        };
        self.on_conflict()?;
        Ok(constraint)
    }

    /// `(col [ASC|DESC], ...)` of a table constraint (the order is dropped:
    /// it changes no result).
    fn indexed_columns(&mut self) -> Result<Vec<Ident>> {
        Ok(self
            .index_columns()?
            .into_iter()
            .map(|(name, _)| name)
            .collect())
    }

    /// `(col [COLLATE BINARY] [ASC|DESC], ...)`.
    fn index_columns(&mut self) -> Result<Vec<(Ident, bool)>> {
        self.expect(&TokenKind::LParen)?;
        let mut columns = Vec::new();
        loop {
            let name = self.ident("a column name")?;
            if self.at(&TokenKind::LParen) {
                return Err(self.unsupported("indexes on expressions or prefixes"));
            }
            if self.at_keyword(Keyword::COLLATE) {
                self.collate()?;
            }
            let desc = if self.eat_keyword(Keyword::DESC) {
                true
            } else {
                self.eat_keyword(Keyword::ASC);
                false
            };
            columns.push((name, desc));
            if !self.eat(&TokenKind::Comma) {
                break;
            }
        }
        self.expect(&TokenKind::RParen)?;
        Ok(columns)
    }

    /// `[UNIQUE] INDEX [IF NOT EXISTS] name ON table (columns)`.
    fn create_index(&mut self, start: Span) -> Result<CreateIndex> {
        let unique = self.eat_keyword(Keyword::UNIQUE);
        self.expect_keyword(Keyword::INDEX)?;
        let if_not_exists = self.if_not_exists();
        let name = self.ident("an index name")?;
        self.expect_keyword(Keyword::ON)?;
        let table = self.ident("a table name")?;
        let columns = self.index_columns()?;
        if self.at_keyword(Keyword::WHERE) {
            return Err(self.unsupported("partial indexes (CREATE INDEX ... WHERE)"));
        }
        Ok(CreateIndex {
            name,
            table,
            columns,
            unique,
            if_not_exists,
            span: start.to(self.prev_span()),
        })
    }

    /// `VIEW [IF NOT EXISTS] name [(columns)] AS query`.
    fn create_view(&mut self, start: Span) -> Result<CreateView> {
        let if_not_exists = self.if_not_exists();
        let name = self.ident("a view name")?;
        let columns = if self.at(&TokenKind::LParen) {
            Some(self.ident_list("a column name")?)
        } else {
            None
        };
        self.expect_keyword(Keyword::AS)?;
        let query = self.query()?;
        let sql = self.sql[query.span.start..query.span.end].to_string();
        Ok(CreateView {
            name,
            if_not_exists,
            columns,
            query: Box::new(query),
            sql,
            span: start.to(self.prev_span()),
        })
    }

    /// `DROP TABLE|INDEX|VIEW [IF EXISTS] name`.
    fn drop_statement(&mut self) -> Result<Drop> {
        let start = self.expect_keyword(Keyword::DROP)?;
        let kind = if self.eat_keyword(Keyword::TABLE) {
            ObjectKind::Table
        } else if self.eat_keyword(Keyword::INDEX) {
            ObjectKind::Index
        } else if self.eat_keyword(Keyword::VIEW) {
            ObjectKind::View
        } else if self.at_keyword(Keyword::TRIGGER) {
            return Err(self.unsupported("DROP TRIGGER"));
        } else {
            return Err(self.unexpected("TABLE, INDEX or VIEW"));
        };
        let if_exists = self.eat_keywords(&[Keyword::IF, Keyword::EXISTS]);
        let name = self.ident("a name")?;
        if self.at(&TokenKind::Dot) {
            return Err(self.unsupported("schema-qualified names"));
        }
        Ok(Drop {
            kind,
            if_exists,
            name,
            span: start.to(self.prev_span()),
        })
    }

    // ---- Queries --------------------------------------------------------

    /// A query: a compound body, then ORDER BY and LIMIT, which apply to
    /// the whole compound.
    fn query(&mut self) -> Result<Query> {
        self.enter()?;
        let result = self.query_inner();
        self.leave();
        result
    }

    fn query_inner(&mut self) -> Result<Query> {
        let start = self.peek().span;
        let mut body = self.set_operand()?;
        loop {
            let op = if self.eat_keyword(Keyword::UNION) {
                SetOperator::Union
            } else if self.eat_keyword(Keyword::INTERSECT) {
                SetOperator::Intersect
            } else if self.eat_keyword(Keyword::EXCEPT) {
                SetOperator::Except
            } else {
                break;
            };
            let all = self.eat_keyword(Keyword::ALL);
            let right = self.set_operand()?;
            body = SetExpr::SetOp {
                op,
                all,
                left: Box::new(body),
                right: Box::new(right),
            };
        }
        let mut order_by = Vec::new();
        if self.eat_keywords(&[Keyword::ORDER, Keyword::BY]) {
            loop {
                order_by.push(self.order_by_item()?);
                if !self.eat(&TokenKind::Comma) {
                    break;
                }
            }
        }
        let (mut limit, mut offset) = (None, None);
        if self.eat_keyword(Keyword::LIMIT) {
            let first = self.expr()?;
            if self.eat_keyword(Keyword::OFFSET) {
                limit = Some(first);
                offset = Some(self.expr()?);
            } else if self.eat(&TokenKind::Comma) {
                // SQLite's `LIMIT offset, count`.
                offset = Some(first);
                limit = Some(self.expr()?);
            } else {
                limit = Some(first);
            }
        }
        Ok(Query {
            body,
            order_by,
            limit,
            offset,
            span: start.to(self.prev_span()),
        })
    }

    /// One operand of a compound: `SELECT ...`, `VALUES ...` or
    /// `(query)`.
    fn set_operand(&mut self) -> Result<SetExpr> {
        if self.at_keyword(Keyword::SELECT) {
            Ok(SetExpr::Select(Box::new(self.select()?)))
        } else if self.eat_keyword(Keyword::VALUES) {
            let mut rows = Vec::new();
            loop {
                self.expect(&TokenKind::LParen)?;
                rows.push(self.expr_list()?);
                self.expect(&TokenKind::RParen)?;
                if !self.eat(&TokenKind::Comma) {
                    break;
                }
            }
            Ok(SetExpr::Values(rows))
        } else if self.eat(&TokenKind::LParen) {
            let query = self.query()?;
            self.expect(&TokenKind::RParen)?;
            Ok(SetExpr::Query(Box::new(query)))
        } else if self.at_keyword(Keyword::WITH) {
            Err(self.unsupported("WITH (common table expressions)"))
        } else {
            Err(self.unexpected("SELECT or VALUES"))
        }
    }

    /// `expr [ASC|DESC] [NULLS FIRST|LAST]`.
    fn order_by_item(&mut self) -> Result<OrderByItem> {
        let expr = self.expr()?;
        if self.at_keyword(Keyword::COLLATE) {
            self.collate()?;
        }
        let desc = if self.eat_keyword(Keyword::DESC) {
            true
        } else {
            self.eat_keyword(Keyword::ASC);
            false
        };
        let nulls_first = if self.eat_keywords(&[Keyword::NULLS, Keyword::FIRST]) {
            Some(true)
        } else if self.eat_keywords(&[Keyword::NULLS, Keyword::LAST]) {
            Some(false)
        } else {
            None
        };
        Ok(OrderByItem {
            expr,
            desc,
            nulls_first,
        })
    }

    fn select(&mut self) -> Result<Select> {
        let start = self.expect_keyword(Keyword::SELECT)?;
        let distinct = if self.eat_keyword(Keyword::DISTINCT) {
            true
        } else {
            self.eat_keyword(Keyword::ALL);
            false
        };
        let mut projection = Vec::new();
        loop {
            projection.push(self.select_item()?);
            if !self.eat(&TokenKind::Comma) {
                break;
            }
        }
        let mut from = Vec::new();
        if self.eat_keyword(Keyword::FROM) {
            loop {
                from.push(self.table_ref()?);
                if !self.eat(&TokenKind::Comma) {
                    break;
                }
            }
        }
        let selection = self.where_clause()?;
        let mut group_by = Vec::new();
        if self.eat_keywords(&[Keyword::GROUP, Keyword::BY]) {
            group_by = self.expr_list()?;
        }
        let having = if self.eat_keyword(Keyword::HAVING) {
            Some(self.expr()?)
        } else {
            None
        };
        if self.at_ident("WINDOW") {
            return Err(self.unsupported("window functions"));
        }
        Ok(Select {
            distinct,
            projection,
            from,
            selection,
            group_by,
            having,
            span: start.to(self.prev_span()),
        })
    }

    /// `*`, `t.*`, or `expr [[AS] alias]`.
    fn select_item(&mut self) -> Result<SelectItem> {
        if self.at(&TokenKind::Star) {
            return Ok(SelectItem::Wildcard(self.advance().span));
        }
        if self.peek_at(1).kind == TokenKind::Dot
            && self.peek_at(2).kind == TokenKind::Star
            && let Some(table) = self.peek_ident()
        {
            for _ in 0..3 {
                self.advance();
            }
            return Ok(SelectItem::QualifiedWildcard(table));
        }
        let expr = self.expr()?;
        let alias = self.alias()?;
        Ok(SelectItem::Expr { expr, alias })
    }

    /// `[AS] name` after an expression or a table. Without AS the name
    /// must not be a reserved keyword, so that `FROM t1 LEFT JOIN ...` or
    /// `SELECT a FROM t` is not read as an alias (no non-reserved keyword
    /// can follow a select item or a table, so `SELECT a key` is safe).
    /// SQLite also takes a string as an alias (`AS 'x'`).
    fn alias(&mut self) -> Result<Option<Ident>> {
        if self.eat_keyword(Keyword::AS) {
            if let TokenKind::String(s) = &self.peek().kind {
                let ident = Ident {
                    value: s.clone(),
                    quoted: true,
                    span: self.peek().span,
                };
                self.advance();
                return Ok(Some(ident));
            }
            return self.ident("an alias").map(Some);
        }
        if self.peek_ident().is_some() {
            return self.ident("an alias").map(Some);
        }
        Ok(None)
    }

    /// One FROM entry: a table, a subquery or a parenthesized join, then
    /// any joins that follow.
    fn table_ref(&mut self) -> Result<TableRef> {
        let mut left = self.table_factor()?;
        loop {
            let natural = self.eat_keyword(Keyword::NATURAL);
            let kind = if self.eat_keyword(Keyword::JOIN) {
                JoinKind::Inner
            } else if self.eat_keyword(Keyword::INNER) {
                self.expect_keyword(Keyword::JOIN)?;
                JoinKind::Inner
            } else if self.eat_keyword(Keyword::CROSS) {
                self.expect_keyword(Keyword::JOIN)?;
                JoinKind::Cross
            } else if self.eat_keyword(Keyword::LEFT) {
                self.eat_keyword(Keyword::OUTER);
                self.expect_keyword(Keyword::JOIN)?;
                JoinKind::Left
            } else if self.at_keyword(Keyword::RIGHT) || self.at_keyword(Keyword::FULL) {
                return Err(self.unsupported("RIGHT and FULL joins"));
            } else if natural {
                return Err(self.unexpected("JOIN"));
            } else {
                return Ok(left);
            };
            let right = self.table_factor()?;
            let constraint = if natural {
                JoinConstraint::Natural
            } else if self.eat_keyword(Keyword::ON) {
                JoinConstraint::On(self.expr()?)
            } else if self.eat_keyword(Keyword::USING) {
                JoinConstraint::Using(self.ident_list("a column name")?)
            } else {
                JoinConstraint::None
            };
            left = TableRef::Join {
                left: Box::new(left),
                right: Box::new(right),
                kind,
                constraint,
            };
        }
    }

    /// `name [[AS] alias]`, `(query) [[AS] alias]` or `(joins)`.
    fn table_factor(&mut self) -> Result<TableRef> {
        if self.eat(&TokenKind::LParen) {
            self.enter()?;
            let result = self.parenthesized_table_factor();
            self.leave();
            return result;
        }
        let name = self.ident("a table name")?;
        if self.at(&TokenKind::Dot) {
            return Err(self.unsupported("schema-qualified names"));
        }
        if self.at(&TokenKind::LParen) {
            return Err(self.unsupported("table-valued functions"));
        }
        let alias = self.alias()?;
        self.skip_index_hint()?;
        Ok(TableRef::Table { name, alias })
    }

    /// After `(` in FROM.
    fn parenthesized_table_factor(&mut self) -> Result<TableRef> {
        if self.at_keyword(Keyword::SELECT)
            || self.at_keyword(Keyword::VALUES)
            || self.at_keyword(Keyword::WITH)
        {
            let query = Box::new(self.query()?);
            self.expect(&TokenKind::RParen)?;
            let alias = self.alias()?;
            return Ok(TableRef::Subquery { query, alias });
        }
        let inner = self.table_ref()?;
        self.expect(&TokenKind::RParen)?;
        Ok(inner)
    }

    // ---- Expressions ----------------------------------------------------

    /// An expression.
    fn expr(&mut self) -> Result<Expr> {
        self.expr_at(prec::OR)
    }

    /// `expr, expr, ...` (at least one).
    fn expr_list(&mut self) -> Result<Vec<Expr>> {
        let mut list = vec![self.expr()?];
        while self.eat(&TokenKind::Comma) {
            list.push(self.expr()?);
        }
        Ok(list)
    }

    /// An expression whose infix operators all bind at least at level
    /// `min` (precedence climbing; see the module docs).
    fn expr_at(&mut self, min: u8) -> Result<Expr> {
        self.enter()?;
        let result = self.expr_at_inner(min);
        self.leave();
        result
    }

    fn expr_at_inner(&mut self, min: u8) -> Result<Expr> {
        // Every frame of this function, and of `prefix` and `primary`, is
        // on the stack once per nesting level, so they stay small: the
        // work of building nodes is done in helpers that return first.
        let mut left = self.prefix()?;
        loop {
            if let Some((level, op)) = binary_operator(&self.peek().kind) {
                if level < min {
                    break;
                }
                self.advance();
                let right = self.expr_at(level + 1)?;
                left = binary_expr(op, left, right);
            } else if min <= prec::EQUALITY && self.at_predicate() {
                left = self.predicate(left)?;
            } else {
                break;
            }
        }
        Ok(left)
    }

    /// Whether a level-4 operator other than `=` and `<>` comes next:
    /// `IS`, `ISNULL`, `NOTNULL`, `[NOT] IN|LIKE|BETWEEN|NULL|GLOB...`.
    fn at_predicate(&self) -> bool {
        let predicate = |kind: &TokenKind| {
            matches!(
                kind,
                TokenKind::Keyword(
                    Keyword::IN
                        | Keyword::LIKE
                        | Keyword::BETWEEN
                        | Keyword::GLOB
                        | Keyword::MATCH
                        | Keyword::REGEXP
                )
            )
        };
        let kind = &self.peek().kind;
        predicate(kind)
            || matches!(
                kind,
                TokenKind::Keyword(Keyword::IS | Keyword::ISNULL | Keyword::NOTNULL)
            )
            || (*kind == TokenKind::Keyword(Keyword::NOT)
                && (predicate(&self.peek_at(1).kind)
                    || self.peek_at(1).kind == TokenKind::Keyword(Keyword::NULL)))
    }

    /// The level-4 operators that are not plain binary ones, applied to
    /// `left` ([`Parser::at_predicate`] said one comes next).
    fn predicate(&mut self, left: Expr) -> Result<Expr> {
        let negated = self.eat_keyword(Keyword::NOT);
        let keyword = self.advance();
        let TokenKind::Keyword(k) = keyword.kind else {
            return Err(self.error_at(keyword.span, "expected an operator"));
        };
        let (kind, end) = match k {
            Keyword::IS => {
                let is_not = self.eat_keyword(Keyword::NOT);
                let right = self.expr_at(prec::EQUALITY + 1)?;
                if right.kind == ExprKind::Literal(Literal::Null) {
                    let end = right.span;
                    (
                        ExprKind::IsNull {
                            expr: Box::new(left.clone()),
                            negated: is_not,
                        },
                        end,
                    )
                } else {
                    let op = if is_not {
                        BinaryOp::IsNot
                    } else {
                        BinaryOp::Is
                    };
                    return Ok(binary_expr(op, left, right));
                }
            }
            // `x ISNULL`, `x NOTNULL`, `x NOT NULL`.
            Keyword::ISNULL | Keyword::NOTNULL | Keyword::NULL => (
                ExprKind::IsNull {
                    expr: Box::new(left.clone()),
                    negated: negated || k == Keyword::NOTNULL,
                },
                keyword.span,
            ),
            Keyword::BETWEEN => {
                let low = self.expr_at(prec::EQUALITY + 1)?;
                self.expect_keyword(Keyword::AND)?;
                let high = self.expr_at(prec::EQUALITY + 1)?;
                let end = high.span;
                (
                    ExprKind::Between {
                        expr: Box::new(left.clone()),
                        low: Box::new(low),
                        high: Box::new(high),
                        negated,
                    },
                    end,
                )
            }
            Keyword::LIKE => {
                let pattern = self.expr_at(prec::EQUALITY + 1)?;
                if self.at_keyword(Keyword::ESCAPE) {
                    return Err(self.unsupported("LIKE ... ESCAPE"));
                }
                let end = pattern.span;
                (
                    ExprKind::Like {
                        expr: Box::new(left.clone()),
                        pattern: Box::new(pattern),
                        negated,
                    },
                    end,
                )
            }
            Keyword::IN => return self.in_rhs(left, negated),
            _ => return Err(self.unsupported(k.as_str())),
        };
        Ok(Expr {
            kind,
            span: left.span.to(end),
        })
    }

    /// After `x [NOT] IN`: `(list)`, `(query)`, or a table name (SQLite's
    /// `x IN t`, read as `x IN (SELECT * FROM t)`).
    fn in_rhs(&mut self, left: Expr, negated: bool) -> Result<Expr> {
        if let Some(table) = self.peek_ident() {
            self.advance();
            let span = table.span;
            let query = Query {
                body: SetExpr::Select(Box::new(Select {
                    distinct: false,
                    projection: vec![SelectItem::Wildcard(span)],
                    from: vec![TableRef::Table {
                        name: table,
                        alias: None,
                    }],
                    selection: None,
                    group_by: Vec::new(),
                    having: None,
                    span,
                })),
                order_by: Vec::new(),
                limit: None,
                offset: None,
                span,
            };
            return Ok(Expr {
                span: left.span.to(span),
                kind: ExprKind::InSubquery {
                    expr: Box::new(left),
                    query: Box::new(query),
                    negated,
                },
            });
        }
        self.expect(&TokenKind::LParen)?;
        let kind = if self.at_keyword(Keyword::SELECT)
            || self.at_keyword(Keyword::VALUES)
            || self.at_keyword(Keyword::WITH)
        {
            ExprKind::InSubquery {
                expr: Box::new(left.clone()),
                query: Box::new(self.query()?),
                negated,
            }
        } else if self.at(&TokenKind::RParen) {
            ExprKind::InList {
                expr: Box::new(left.clone()),
                list: Vec::new(),
                negated,
            }
        } else {
            ExprKind::InList {
                expr: Box::new(left.clone()),
                list: self.expr_list()?,
                negated,
            }
        };
        let end = self.expect(&TokenKind::RParen)?;
        Ok(Expr {
            kind,
            span: left.span.to(end),
        })
    }

    /// A prefix operator with its operand, or a primary expression.
    fn prefix(&mut self) -> Result<Expr> {
        let token = self.peek().clone();
        let (op, level) = match token.kind {
            TokenKind::Keyword(Keyword::NOT) => {
                if self.peek_at(1).kind == TokenKind::Keyword(Keyword::EXISTS) {
                    self.advance();
                    return self.exists(token.span, true);
                }
                (UnaryOp::Not, prec::NOT)
            }
            TokenKind::Minus => {
                // `-9223372036854775808` is the smallest integer, though
                // its digits alone do not fit: read the sign with them.
                if let TokenKind::Real {
                    integer_form: true, ..
                } = self.peek_at(1).kind
                {
                    self.advance();
                    let literal = self.number(true)?;
                    return Ok(Expr {
                        span: token.span.to(literal.span),
                        ..literal
                    });
                }
                (UnaryOp::Neg, prec::UNARY)
            }
            TokenKind::Plus => (UnaryOp::Plus, prec::UNARY),
            TokenKind::Tilde => (UnaryOp::BitNot, prec::UNARY),
            _ => return self.primary(),
        };
        self.advance();
        let operand = self.expr_at(level)?;
        Ok(Expr {
            span: token.span.to(operand.span),
            kind: ExprKind::Unary {
                op,
                expr: Box::new(operand),
            },
        })
    }

    /// A number literal at the current token; `negative` when a `-` came
    /// before it (only used to read `-9223372036854775808` as an integer,
    /// every other negative literal stays `-(literal)`).
    fn number(&mut self, negative: bool) -> Result<Expr> {
        let token = self.advance();
        let literal = match token.kind {
            TokenKind::Integer(i) if negative => {
                return Ok(Expr {
                    kind: ExprKind::Unary {
                        op: UnaryOp::Neg,
                        expr: Box::new(Expr {
                            kind: ExprKind::Literal(Literal::Integer(i)),
                            span: token.span,
                        }),
                    },
                    span: token.span,
                });
            }
            TokenKind::Integer(i) => Literal::Integer(i),
            TokenKind::Real {
                integer_form: true, ..
            } if negative
                && &self.sql[token.span.start..token.span.end] == "9223372036854775808" =>
            {
                return Ok(Expr {
                    kind: ExprKind::Literal(Literal::Integer(i64::MIN)),
                    span: token.span,
                });
            }
            TokenKind::Real { value, .. } if negative => {
                return Ok(Expr {
                    kind: ExprKind::Unary {
                        op: UnaryOp::Neg,
                        expr: Box::new(Expr {
                            kind: ExprKind::Literal(Literal::Real(value)),
                            span: token.span,
                        }),
                    },
                    span: token.span,
                });
            }
            TokenKind::Real { value, .. } => Literal::Real(value),
            _ => {
                return Err(self.error_at(
                    token.span,
                    format!("expected a number, found {}", token.kind),
                ));
            }
        };
        Ok(Expr {
            kind: ExprKind::Literal(literal),
            span: token.span,
        })
    }

    /// `[NOT] EXISTS (query)`, at EXISTS.
    fn exists(&mut self, start: Span, negated: bool) -> Result<Expr> {
        self.expect_keyword(Keyword::EXISTS)?;
        self.expect(&TokenKind::LParen)?;
        let query = self.query()?;
        let end = self.expect(&TokenKind::RParen)?;
        Ok(Expr {
            kind: ExprKind::Exists {
                query: Box::new(query),
                negated,
            },
            span: start.to(end),
        })
    }

    /// Literals, names, function calls, CASE, CAST, EXISTS, parameters,
    /// and parenthesized expressions or subqueries.
    fn primary(&mut self) -> Result<Expr> {
        // A dispatcher only (see `expr_at_inner` on frame sizes).
        let expr = match self.peek().kind {
            TokenKind::Integer(_) | TokenKind::Real { .. } => self.number(false)?,
            TokenKind::String(_)
            | TokenKind::Keyword(Keyword::NULL | Keyword::TRUE | Keyword::FALSE) => {
                self.literal()?
            }
            TokenKind::Blob(_) => self.literal()?,
            TokenKind::Parameter(_) => self.parameter()?,
            TokenKind::LParen => self.parenthesized()?,
            TokenKind::Keyword(Keyword::CASE) => self.case()?,
            TokenKind::Keyword(Keyword::CAST) => self.cast()?,
            TokenKind::Keyword(Keyword::EXISTS) => {
                let start = self.peek().span;
                self.exists(start, false)?
            }
            _ => match self.peek_ident() {
                Some(name) => {
                    self.advance();
                    self.name_or_call(name)?
                }
                None => return Err(self.unexpected("an expression")),
            },
        };
        self.postfix(expr)
    }

    /// A string, NULL, TRUE or FALSE.
    fn literal(&mut self) -> Result<Expr> {
        let token = self.advance();
        let literal = match token.kind {
            TokenKind::String(s) => Literal::Text(s),
            TokenKind::Keyword(Keyword::NULL) => Literal::Null,
            TokenKind::Keyword(Keyword::TRUE) => Literal::Boolean(true),
            TokenKind::Keyword(Keyword::FALSE) => Literal::Boolean(false),
            // pydb has no BLOB type: a blob literal is the text its bytes
            // spell, and one whose bytes are not UTF-8 is refused.
            TokenKind::Blob(hex) => match blob_text(&hex) {
                Some(text) => Literal::Text(text),
                None => {
                    return Err(self.error_at(
                        token.span,
                        "a blob literal must spell UTF-8 text (pydb has no BLOB type)",
                    ));
                }
            },
            other => {
                return Err(self.error_at(token.span, format!("expected a literal, found {other}")));
            }
        };
        Ok(Expr {
            kind: ExprKind::Literal(literal),
            span: token.span,
        })
    }

    /// `?`, `?N` or `$N`.
    fn parameter(&mut self) -> Result<Expr> {
        let token = self.advance();
        let n = match token.kind {
            TokenKind::Parameter(Some(n)) => n,
            TokenKind::Parameter(None) if self.max_param < MAX_PARAMETER => self.max_param + 1,
            _ => return Err(self.error_at(token.span, "too many parameters")),
        };
        self.max_param = self.max_param.max(n);
        Ok(Expr {
            kind: ExprKind::Parameter(n),
            span: token.span,
        })
    }

    /// `(expr)` or `(query)`.
    fn parenthesized(&mut self) -> Result<Expr> {
        let start = self.expect(&TokenKind::LParen)?;
        if self.at_keyword(Keyword::SELECT)
            || self.at_keyword(Keyword::VALUES)
            || self.at_keyword(Keyword::WITH)
        {
            let query = self.query()?;
            let end = self.expect(&TokenKind::RParen)?;
            return Ok(Expr {
                kind: ExprKind::Subquery(Box::new(query)),
                span: start.to(end),
            });
        }
        let inner = self.expr()?;
        if self.at(&TokenKind::Comma) {
            return Err(self.unsupported("row values ((a, b))"));
        }
        let end = self.expect(&TokenKind::RParen)?;
        // The parentheses become part of the span, so that a caret under
        // `(a + b)` covers them.
        Ok(Expr {
            span: start.to(end),
            ..inner
        })
    }

    /// `expr COLLATE name`, which binds tightest of all.
    fn postfix(&mut self, expr: Expr) -> Result<Expr> {
        if self.at_keyword(Keyword::COLLATE) {
            self.collate()?;
            return Ok(Expr {
                span: expr.span.to(self.prev_span()),
                ..expr
            });
        }
        Ok(expr)
    }

    /// After a name: `name(args)`, `table.column`, or `column`.
    fn name_or_call(&mut self, name: Ident) -> Result<Expr> {
        if self.eat(&TokenKind::LParen) {
            let mut distinct = false;
            let mut star = false;
            let mut args = Vec::new();
            if self.eat(&TokenKind::Star) {
                star = true;
            } else if !self.at(&TokenKind::RParen) {
                distinct = self.eat_keyword(Keyword::DISTINCT);
                if !distinct {
                    self.eat_keyword(Keyword::ALL);
                }
                args = self.expr_list()?;
            }
            let end = self.expect(&TokenKind::RParen)?;
            if self.at_ident("FILTER") || self.at_ident("OVER") {
                return Err(self.unsupported("FILTER and OVER (window functions)"));
            }
            return Ok(Expr {
                span: name.span.to(end),
                kind: ExprKind::Function {
                    name,
                    args,
                    distinct,
                    star,
                },
            });
        }
        if self.eat(&TokenKind::Dot) {
            let column = self.ident("a column name")?;
            if self.at(&TokenKind::Dot) {
                return Err(self.unsupported("schema-qualified names"));
            }
            return Ok(Expr {
                span: name.span.to(column.span),
                kind: ExprKind::Column {
                    table: Some(name),
                    column,
                },
            });
        }
        Ok(Expr {
            span: name.span,
            kind: ExprKind::Column {
                table: None,
                column: name,
            },
        })
    }

    /// `CASE [operand] WHEN a THEN b ... [ELSE c] END`.
    fn case(&mut self) -> Result<Expr> {
        let start = self.expect_keyword(Keyword::CASE)?;
        let operand = if self.at_keyword(Keyword::WHEN) {
            None
        } else {
            Some(Box::new(self.expr()?))
        };
        let mut branches = Vec::new();
        while self.eat_keyword(Keyword::WHEN) {
            let when = self.expr()?;
            self.expect_keyword(Keyword::THEN)?;
            branches.push((when, self.expr()?));
        }
        if branches.is_empty() {
            return Err(self.unexpected("WHEN"));
        }
        let else_result = if self.eat_keyword(Keyword::ELSE) {
            Some(Box::new(self.expr()?))
        } else {
            None
        };
        let end = self.expect_keyword(Keyword::END)?;
        Ok(Expr {
            kind: ExprKind::Case {
                operand,
                branches,
                else_result,
            },
            span: start.to(end),
        })
    }

    /// `CAST(expr AS type)`.
    fn cast(&mut self) -> Result<Expr> {
        let start = self.expect_keyword(Keyword::CAST)?;
        self.expect(&TokenKind::LParen)?;
        let expr = self.expr()?;
        self.expect_keyword(Keyword::AS)?;
        let mut type_name = self.ident("a type name")?.value;
        while let Some(word) = self.peek_ident() {
            self.advance();
            type_name.push(' ');
            type_name.push_str(&word.value);
        }
        if self.eat(&TokenKind::LParen) {
            self.signed_number()?;
            if self.eat(&TokenKind::Comma) {
                self.signed_number()?;
            }
            self.expect(&TokenKind::RParen)?;
        }
        let end = self.expect(&TokenKind::RParen)?;
        Ok(Expr {
            kind: ExprKind::Cast {
                expr: Box::new(expr),
                ty: type_affinity(&type_name),
            },
            span: start.to(end),
        })
    }
}

/// The binary operator a token spells, with its level; `None` for the
/// level-4 keywords (`IS`, `IN`, ...), which [`Parser::predicate`] reads.
fn binary_operator(kind: &TokenKind) -> Option<(u8, BinaryOp)> {
    Some(match kind {
        TokenKind::Keyword(Keyword::OR) => (prec::OR, BinaryOp::Or),
        TokenKind::Keyword(Keyword::AND) => (prec::AND, BinaryOp::And),
        TokenKind::Eq => (prec::EQUALITY, BinaryOp::Eq),
        TokenKind::NotEq => (prec::EQUALITY, BinaryOp::NotEq),
        TokenKind::Lt => (prec::COMPARISON, BinaryOp::Lt),
        TokenKind::LtEq => (prec::COMPARISON, BinaryOp::LtEq),
        TokenKind::Gt => (prec::COMPARISON, BinaryOp::Gt),
        TokenKind::GtEq => (prec::COMPARISON, BinaryOp::GtEq),
        TokenKind::Ampersand => (prec::BITWISE, BinaryOp::BitAnd),
        TokenKind::Pipe => (prec::BITWISE, BinaryOp::BitOr),
        TokenKind::ShiftLeft => (prec::BITWISE, BinaryOp::ShiftLeft),
        TokenKind::ShiftRight => (prec::BITWISE, BinaryOp::ShiftRight),
        TokenKind::Plus => (prec::ADDITIVE, BinaryOp::Add),
        TokenKind::Minus => (prec::ADDITIVE, BinaryOp::Sub),
        TokenKind::Star => (prec::MULTIPLICATIVE, BinaryOp::Mul),
        TokenKind::Slash => (prec::MULTIPLICATIVE, BinaryOp::Div),
        TokenKind::Percent => (prec::MULTIPLICATIVE, BinaryOp::Mod),
        TokenKind::Concat => (prec::CONCAT, BinaryOp::Concat),
        _ => return None,
    })
}

fn binary_expr(op: BinaryOp, left: Expr, right: Expr) -> Expr {
    Expr {
        span: left.span.to(right.span),
        kind: ExprKind::Binary {
            op,
            left: Box::new(left),
            right: Box::new(right),
        },
    }
}

/// The text a blob literal's hex digits spell, if it is UTF-8 (the lexer
/// has checked that the digits are hex and even in number).
fn blob_text(hex: &str) -> Option<String> {
    let bytes = hex
        .as_bytes()
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(sql: &str) -> Statement {
        let mut statements = parse(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert_eq!(statements.len(), 1, "{sql}");
        statements.remove(0)
    }

    fn query(sql: &str) -> Query {
        match one(sql) {
            Statement::Query(q) => *q,
            other => panic!("not a query: {other:?}"),
        }
    }

    fn select(sql: &str) -> Select {
        match query(sql).body {
            SetExpr::Select(s) => *s,
            other => panic!("not a SELECT: {other:?}"),
        }
    }

    /// Prints an expression fully parenthesized, so that tests can state
    /// the tree the parser built in one readable string.
    fn show(e: &Expr) -> String {
        match &e.kind {
            ExprKind::Literal(Literal::Null) => "NULL".into(),
            ExprKind::Literal(Literal::Integer(i)) => i.to_string(),
            ExprKind::Literal(Literal::Real(r)) => format!("{r:?}"),
            ExprKind::Literal(Literal::Text(s)) => format!("'{s}'"),
            ExprKind::Literal(Literal::Boolean(b)) => b.to_string(),
            ExprKind::Column { table, column } => match table {
                Some(t) => format!("{}.{}", t.value, column.value),
                None => column.value.clone(),
            },
            ExprKind::Parameter(n) => format!("${n}"),
            ExprKind::Unary { op, expr } => format!("({op:?} {})", show(expr)),
            ExprKind::Binary { op, left, right } => {
                format!("({} {op:?} {})", show(left), show(right))
            }
            ExprKind::IsNull { expr, negated } => {
                format!(
                    "({} {})",
                    show(expr),
                    if *negated { "NOTNULL" } else { "ISNULL" }
                )
            }
            ExprKind::Between {
                expr,
                low,
                high,
                negated,
            } => format!(
                "({} {}BETWEEN {} {})",
                show(expr),
                if *negated { "NOT " } else { "" },
                show(low),
                show(high)
            ),
            ExprKind::InList {
                expr,
                list,
                negated,
            } => format!(
                "({} {}IN [{}])",
                show(expr),
                if *negated { "NOT " } else { "" },
                list.iter().map(show).collect::<Vec<_>>().join(", ")
            ),
            ExprKind::InSubquery { expr, negated, .. } => format!(
                "({} {}IN subquery)",
                show(expr),
                if *negated { "NOT " } else { "" }
            ),
            ExprKind::Exists { negated, .. } => {
                format!("({}EXISTS subquery)", if *negated { "NOT " } else { "" })
            }
            ExprKind::Subquery(_) => "subquery".into(),
            ExprKind::Case {
                operand,
                branches,
                else_result,
            } => {
                let mut s = "(CASE".to_string();
                if let Some(o) = operand {
                    s += &format!(" {}", show(o));
                }
                for (w, t) in branches {
                    s += &format!(" WHEN {} THEN {}", show(w), show(t));
                }
                if let Some(e) = else_result {
                    s += &format!(" ELSE {}", show(e));
                }
                s + ")"
            }
            ExprKind::Cast { expr, ty } => format!("CAST({} AS {ty})", show(expr)),
            ExprKind::Function {
                name,
                args,
                distinct,
                star,
            } => format!(
                "{}({}{}{})",
                name.value,
                if *distinct { "DISTINCT " } else { "" },
                if *star { "*" } else { "" },
                args.iter().map(show).collect::<Vec<_>>().join(", ")
            ),
            ExprKind::Like {
                expr,
                pattern,
                negated,
            } => format!(
                "({} {}LIKE {})",
                show(expr),
                if *negated { "NOT " } else { "" },
                show(pattern)
            ),
        }
    }

    fn expr(sql: &str) -> String {
        show(&parse_expr(sql).unwrap_or_else(|e| panic!("{sql}: {e}")))
    }

    #[test]
    fn precedence_follows_sqlite() {
        let cases = [
            ("1 + 2 * 3", "(1 Add (2 Mul 3))"),
            ("1 - 2 - 3", "((1 Sub 2) Sub 3)"),
            ("a * b || c", "(a Mul (b Concat c))"),
            ("-a * b", "((Neg a) Mul b)"),
            ("-a || b", "((Neg a) Concat b)"),
            ("~a + 1", "((BitNot a) Add 1)"),
            ("a + b & c", "((a Add b) BitAnd c)"),
            ("a & b < c", "((a BitAnd b) Lt c)"),
            ("a < b = c < d", "((a Lt b) Eq (c Lt d))"),
            ("a = b AND c <> d OR e", "(((a Eq b) And (c NotEq d)) Or e)"),
            ("a OR b AND c", "(a Or (b And c))"),
            ("NOT a = b", "(Not (a Eq b))"),
            ("NOT a AND b", "((Not a) And b)"),
            ("NOT NOT a", "(Not (Not a))"),
            ("a == b != c", "((a Eq b) NotEq c)"),
            (
                "a << 2 >> 1 | 4",
                "(((a ShiftLeft 2) ShiftRight 1) BitOr 4)",
            ),
            ("a % b / c", "((a Mod b) Div c)"),
            ("(1 + 2) * 3", "((1 Add 2) Mul 3)"),
            ("- - 1", "(Neg (Neg 1))"),
            ("+a", "(Plus a)"),
        ];
        for (sql, tree) in cases {
            assert_eq!(expr(sql), tree, "{sql}");
        }
    }

    #[test]
    fn postfix_predicates() {
        let cases = [
            ("a IS NULL", "(a ISNULL)"),
            ("a IS NOT NULL", "(a NOTNULL)"),
            ("a ISNULL", "(a ISNULL)"),
            ("a NOTNULL", "(a NOTNULL)"),
            ("a NOT NULL", "(a NOTNULL)"),
            ("a IS b", "(a Is b)"),
            ("a IS NOT b + 1", "(a IsNot (b Add 1))"),
            ("a BETWEEN 1 AND 2 AND b", "((a BETWEEN 1 2) And b)"),
            (
                "a NOT BETWEEN b + 1 AND c * 2",
                "(a NOT BETWEEN (b Add 1) (c Mul 2))",
            ),
            ("a IN (1, 2)", "(a IN [1, 2])"),
            ("a NOT IN ()", "(a NOT IN [])"),
            ("a IN (SELECT 1)", "(a IN subquery)"),
            ("a NOT IN (SELECT 1 UNION SELECT 2)", "(a NOT IN subquery)"),
            ("a IN t1", "(a IN subquery)"),
            ("a LIKE 'x%'", "(a LIKE 'x%')"),
            ("a NOT LIKE 'x' || b", "(a NOT LIKE ('x' Concat b))"),
            ("EXISTS (SELECT 1)", "(EXISTS subquery)"),
            (
                "NOT EXISTS (SELECT 1) AND a",
                "((NOT EXISTS subquery) And a)",
            ),
            ("NOT a IN (1)", "(Not (a IN [1]))"),
            ("a = 1 IS NULL", "((a Eq 1) ISNULL)"),
            ("a < 1 IS NOT NULL", "((a Lt 1) NOTNULL)"),
            ("NOT a IS NULL", "(Not (a ISNULL))"),
        ];
        for (sql, tree) in cases {
            assert_eq!(expr(sql), tree, "{sql}");
        }
    }

    #[test]
    fn primaries() {
        let cases = [
            ("NULL", "NULL"),
            ("TRUE", "true"),
            ("false", "false"),
            ("'it''s'", "'it's'"),
            ("1.5", "1.5"),
            ("9223372036854775808", "9.223372036854776e18"),
            ("-9223372036854775808", "-9223372036854775808"),
            ("-9223372036854775809", "(Neg 9.223372036854776e18)"),
            ("-5", "(Neg 5)"),
            ("t.a", "t.a"),
            ("\"Mixed Case\"", "Mixed Case"),
            ("count(*)", "count(*)"),
            ("count(DISTINCT a)", "count(DISTINCT a)"),
            ("coalesce(a, b, 1)", "coalesce(a, b, 1)"),
            ("replace(a, 'x', 'y')", "replace(a, 'x', 'y')"),
            ("random()", "random()"),
            ("? + ? + $5 + ?", "((($1 Add $2) Add $5) Add $6)"),
            (
                "CASE WHEN a THEN 1 ELSE 2 END",
                "(CASE WHEN a THEN 1 ELSE 2)",
            ),
            (
                "CASE a WHEN 1 THEN 'x' WHEN 2 THEN 'y' END",
                "(CASE a WHEN 1 THEN 'x' WHEN 2 THEN 'y')",
            ),
            ("CAST(a AS VARCHAR(10))", "CAST(a AS TEXT)"),
            ("CAST(a AS BIGINT) + 1", "(CAST(a AS INTEGER) Add 1)"),
            ("(SELECT 1)", "subquery"),
            ("a COLLATE binary = b", "(a Eq b)"),
        ];
        for (sql, tree) in cases {
            assert_eq!(expr(sql), tree, "{sql}");
        }
    }

    #[test]
    fn spans_cover_the_expression_text() {
        let sql = "a + (b * 2)";
        let e = parse_expr(sql).unwrap();
        assert_eq!(e.span, Span::new(0, sql.len()));
        let ExprKind::Binary { right, .. } = e.kind else {
            panic!("{e:?}")
        };
        assert_eq!(&sql[right.span.start..right.span.end], "(b * 2)");
    }

    #[test]
    fn select_clauses() {
        let s = select(
            "SELECT DISTINCT a, t.*, b AS x, c y, * FROM t1 AS t, t2 WHERE a > 1 \
             GROUP BY a, 2 HAVING count(*) > 1",
        );
        assert!(s.distinct);
        assert_eq!(s.projection.len(), 5);
        assert!(matches!(&s.projection[1], SelectItem::QualifiedWildcard(t) if t.value == "t"));
        assert!(
            matches!(&s.projection[2], SelectItem::Expr { alias: Some(a), .. } if a.value == "x")
        );
        assert!(
            matches!(&s.projection[3], SelectItem::Expr { alias: Some(a), .. } if a.value == "y")
        );
        let keywords = select("SELECT a key, b AS first FROM t1 temp");
        assert!(
            matches!(&keywords.projection[0], SelectItem::Expr { alias: Some(a), .. } if a.value == "key")
        );
        assert!(
            matches!(&keywords.from[0], TableRef::Table { alias: Some(a), .. } if a.value == "temp")
        );
        assert!(matches!(&s.projection[4], SelectItem::Wildcard(_)));
        assert_eq!(s.from.len(), 2);
        assert!(
            matches!(&s.from[0], TableRef::Table { name, alias: Some(a) } if name.value == "t1" && a.value == "t")
        );
        assert!(s.selection.is_some());
        assert_eq!(s.group_by.len(), 2);
        assert!(s.having.is_some());
    }

    #[test]
    fn select_without_from() {
        let s = select("SELECT 1, 'a'");
        assert!(s.from.is_empty());
        assert_eq!(s.projection.len(), 2);
    }

    #[test]
    fn joins_nest_to_the_left() {
        let s = select(
            "SELECT * FROM a JOIN b ON a.x = b.x LEFT OUTER JOIN c USING (y, z) \
             CROSS JOIN d NATURAL JOIN e NOT INDEXED, (SELECT 1) AS s, (f INNER JOIN g ON 1)",
        );
        assert_eq!(s.from.len(), 3);
        let TableRef::Join {
            left,
            kind: JoinKind::Inner,
            constraint: JoinConstraint::Natural,
            ..
        } = &s.from[0]
        else {
            panic!("{:?}", s.from[0])
        };
        let TableRef::Join {
            left,
            kind: JoinKind::Cross,
            constraint: JoinConstraint::None,
            ..
        } = &**left
        else {
            panic!("{left:?}")
        };
        let TableRef::Join {
            left,
            kind: JoinKind::Left,
            constraint: JoinConstraint::Using(cols),
            ..
        } = &**left
        else {
            panic!("{left:?}")
        };
        assert_eq!(cols.len(), 2);
        assert!(matches!(
            &**left,
            TableRef::Join {
                kind: JoinKind::Inner,
                constraint: JoinConstraint::On(_),
                ..
            }
        ));
        assert!(matches!(&s.from[1], TableRef::Subquery { alias: Some(a), .. } if a.value == "s"));
        assert!(matches!(&s.from[2], TableRef::Join { .. }));
    }

    #[test]
    fn compound_queries_are_left_associative_and_share_order_and_limit() {
        let q = query(
            "SELECT a FROM t UNION ALL SELECT b FROM u EXCEPT SELECT 1 \
             ORDER BY 1 DESC NULLS LAST, 2 LIMIT 5 OFFSET 2",
        );
        let SetExpr::SetOp {
            op: SetOperator::Except,
            all: false,
            left,
            ..
        } = q.body
        else {
            panic!("{:?}", q.body)
        };
        assert!(matches!(
            *left,
            SetExpr::SetOp {
                op: SetOperator::Union,
                all: true,
                ..
            }
        ));
        assert_eq!(q.order_by.len(), 2);
        assert!(q.order_by[0].desc);
        assert_eq!(q.order_by[0].nulls_first, Some(false));
        assert!(!q.order_by[1].desc);
        assert_eq!(q.order_by[1].nulls_first, None);
        assert_eq!(q.limit.map(|e| show(&e)).as_deref(), Some("5"));
        assert_eq!(q.offset.map(|e| show(&e)).as_deref(), Some("2"));

        let q = query("SELECT 1 INTERSECT SELECT 2 ORDER BY 1 ASC NULLS FIRST");
        assert!(matches!(
            q.body,
            SetExpr::SetOp {
                op: SetOperator::Intersect,
                ..
            }
        ));
        assert_eq!(q.order_by[0].nulls_first, Some(true));
    }

    #[test]
    fn limit_with_a_comma_puts_the_offset_first() {
        let q = query("SELECT 1 LIMIT 10, 3");
        assert_eq!(q.limit.map(|e| show(&e)).as_deref(), Some("3"));
        assert_eq!(q.offset.map(|e| show(&e)).as_deref(), Some("10"));
    }

    #[test]
    fn values_query() {
        let q = query("VALUES (1, 2), (3, 4)");
        let SetExpr::Values(rows) = q.body else {
            panic!()
        };
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].len(), 2);
    }

    #[test]
    fn insert_forms() {
        let Statement::Insert(i) = one("INSERT INTO t1(a, b) VALUES (1, 'x'), (2, NULL)") else {
            panic!()
        };
        assert_eq!(i.table.value, "t1");
        assert_eq!(i.columns.as_ref().map(Vec::len), Some(2));
        assert!(!i.replace);
        assert!(
            matches!(i.source.as_deref(), Some(Query { body: SetExpr::Values(rows), .. }) if rows.len() == 2)
        );

        let Statement::Insert(i) = one("INSERT INTO t1 SELECT * FROM t2") else {
            panic!()
        };
        assert!(i.columns.is_none());
        assert!(matches!(
            i.source.as_deref(),
            Some(Query {
                body: SetExpr::Select(_),
                ..
            })
        ));

        let Statement::Insert(i) = one("INSERT INTO t1 DEFAULT VALUES") else {
            panic!()
        };
        assert!(i.source.is_none());

        for sql in [
            "INSERT OR REPLACE INTO t1 VALUES (1)",
            "REPLACE INTO t1 VALUES (1)",
        ] {
            let Statement::Insert(i) = one(sql) else {
                panic!()
            };
            assert!(i.replace, "{sql}");
        }
        assert!(matches!(
            parse("INSERT OR IGNORE INTO t1 VALUES (1)"),
            Err(Error::Invalid(_))
        ));
    }

    #[test]
    fn update_and_delete() {
        let Statement::Update(u) = one("UPDATE t1 SET a = a + 1, b = 'x' WHERE c IS NULL") else {
            panic!()
        };
        assert_eq!(u.table.value, "t1");
        assert_eq!(u.assignments.len(), 2);
        assert_eq!(show(&u.assignments[0].1), "(a Add 1)");
        assert!(u.selection.is_some());

        let Statement::Delete(d) = one("DELETE FROM t1") else {
            panic!()
        };
        assert!(d.selection.is_none());
        let Statement::Delete(d) = one("DELETE FROM t1 WHERE a = 1") else {
            panic!()
        };
        assert!(d.selection.is_some());
    }

    #[test]
    fn create_table_with_types_constraints_and_defaults() {
        let sql = "CREATE TABLE IF NOT EXISTS t1(a INTEGER PRIMARY KEY, b VARCHAR(8) NOT NULL, \
             c DOUBLE PRECISION DEFAULT -1.5, d BOOLEAN DEFAULT (1 + 1), e, f NUMERIC(10, 2) UNIQUE, \
             g TEXT DEFAULT 'x' COLLATE BINARY, h CLOB NULL DEFAULT NULL, \
             CONSTRAINT pk UNIQUE (b, c DESC))";
        let Statement::CreateTable(t) = one(sql) else {
            panic!()
        };
        assert!(t.if_not_exists);
        let types: Vec<DataType> = t.columns.iter().map(|c| c.ty).collect();
        assert_eq!(
            types,
            vec![
                DataType::Integer,
                DataType::Text,
                DataType::Real,
                DataType::Boolean,
                DataType::Integer,
                DataType::Integer,
                DataType::Text,
                DataType::Text
            ]
        );
        assert!(t.columns[0].primary_key);
        assert!(t.columns[1].not_null);
        assert_eq!(
            t.columns[2].default.as_ref().map(show).as_deref(),
            Some("(Neg 1.5)")
        );
        assert_eq!(
            t.columns[3].default.as_ref().map(show).as_deref(),
            Some("(1 Add 1)")
        );
        assert!(t.columns[5].unique);
        assert_eq!(
            t.columns[6].default.as_ref().map(show).as_deref(),
            Some("'x'")
        );
        assert_eq!(
            t.columns[7].default.as_ref().map(show).as_deref(),
            Some("NULL")
        );
        assert!(!t.columns[7].not_null);
        assert_eq!(t.constraints.len(), 1);
        assert!(matches!(&t.constraints[0], TableConstraint::Unique(cols) if cols.len() == 2));
    }

    #[test]
    fn type_names_follow_sqlite_affinity() {
        for (name, ty) in [
            ("INT", DataType::Integer),
            ("BIGINT", DataType::Integer),
            ("TINYINT", DataType::Integer),
            ("VARCHAR", DataType::Text),
            ("NCHAR", DataType::Text),
            ("CLOB", DataType::Text),
            ("text", DataType::Text),
            ("REAL", DataType::Real),
            ("FLOAT", DataType::Real),
            ("DOUBLE PRECISION", DataType::Real),
            ("BOOLEAN", DataType::Boolean),
            ("BOOL", DataType::Boolean),
            ("NUMERIC", DataType::Integer),
            ("DECIMAL", DataType::Integer),
            ("", DataType::Integer),
        ] {
            assert_eq!(type_affinity(name), ty, "{name}");
        }
    }

    #[test]
    fn table_primary_key_constraint() {
        let Statement::CreateTable(t) = one("CREATE TABLE t(a, b, PRIMARY KEY (a, b))") else {
            panic!()
        };
        assert!(matches!(&t.constraints[0], TableConstraint::PrimaryKey(cols) if cols.len() == 2));
    }

    #[test]
    fn create_index_view_and_drop() {
        let Statement::CreateIndex(i) =
            one("CREATE UNIQUE INDEX IF NOT EXISTS i1 ON t1(a DESC, b)")
        else {
            panic!()
        };
        assert!(i.unique && i.if_not_exists);
        assert_eq!(i.columns.len(), 2);
        assert!(i.columns[0].1 && !i.columns[1].1);

        let sql = "CREATE VIEW v1 (x, y) AS SELECT a, b FROM t1 WHERE a > 0;";
        let Statement::CreateView(v) = one(sql) else {
            panic!()
        };
        assert_eq!(v.sql, "SELECT a, b FROM t1 WHERE a > 0");
        assert_eq!(v.columns.as_ref().map(Vec::len), Some(2));

        for (sql, kind, if_exists) in [
            ("DROP TABLE t1", ObjectKind::Table, false),
            ("DROP INDEX IF EXISTS i1", ObjectKind::Index, true),
            ("DROP VIEW v1", ObjectKind::View, false),
        ] {
            let Statement::Drop(d) = one(sql) else {
                panic!()
            };
            assert_eq!((d.kind, d.if_exists), (kind, if_exists), "{sql}");
        }
    }

    #[test]
    fn transactions_explain_and_analyze() {
        for sql in [
            "BEGIN",
            "BEGIN TRANSACTION",
            "BEGIN IMMEDIATE",
            "START TRANSACTION",
        ] {
            assert_eq!(
                one(sql),
                Statement::Begin {
                    isolation: None,
                    read_only: false
                },
                "{sql}"
            );
        }
        assert_eq!(
            one("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"),
            Statement::Begin {
                isolation: Some(IsolationLevel::RepeatableRead),
                read_only: true
            }
        );
        assert_eq!(
            one("START TRANSACTION ISOLATION LEVEL SERIALIZABLE"),
            Statement::Begin {
                isolation: Some(IsolationLevel::Serializable),
                read_only: false
            }
        );
        for sql in ["COMMIT", "END", "END TRANSACTION", "commit transaction"] {
            assert_eq!(one(sql), Statement::Commit, "{sql}");
        }
        assert_eq!(one("ROLLBACK"), Statement::Rollback);
        assert!(matches!(
            one("EXPLAIN ANALYZE SELECT 1"),
            Statement::Explain { analyze: true, .. }
        ));
        assert!(matches!(
            one("EXPLAIN QUERY PLAN SELECT 1"),
            Statement::Explain { analyze: false, .. }
        ));
        assert_eq!(one("ANALYZE"), Statement::Analyze { table: None });
        assert!(
            matches!(one("ANALYZE t1"), Statement::Analyze { table: Some(t) } if t.value == "t1")
        );
    }

    #[test]
    fn scripts_split_on_semicolons() {
        let statements = parse(";; SELECT 1; SELECT 2;\n-- done\n").unwrap();
        assert_eq!(statements.len(), 2);
        assert!(parse("").unwrap().is_empty());
        assert!(parse("SELECT 1 SELECT 2").is_err());
    }

    #[test]
    fn unsupported_statements_are_clean_errors() {
        for sql in [
            "CREATE TRIGGER t1r1 UPDATE ON t1 BEGIN SELECT 1; END",
            "DROP TRIGGER t1r1",
            "PRAGMA foo",
            "WITH x AS (SELECT 1) SELECT * FROM x",
            "CREATE TEMP VIEW v AS SELECT 1",
            "SELECT a FROM t RIGHT JOIN u",
            "CREATE TABLE t(a CHECK (a > 0))",
            "SELECT a COLLATE nocase FROM t",
            "SELECT a GLOB 'x'",
        ] {
            let err = parse(sql).expect_err(sql);
            assert!(matches!(err, Error::Invalid(_)), "{sql}: {err:?}");
        }
    }

    #[test]
    fn blob_literals_are_the_text_their_bytes_spell() {
        let Statement::Query(q) = &parse("SELECT x'303132'").unwrap()[0] else {
            panic!("not a query");
        };
        let SetExpr::Select(select) = &q.body else {
            panic!("not a select");
        };
        let SelectItem::Expr { expr, .. } = &select.projection[0] else {
            panic!("not an expression");
        };
        assert_eq!(expr.kind, ExprKind::Literal(Literal::Text("012".into())));
        assert!(matches!(parse("SELECT x'ff00'"), Err(Error::Syntax { .. })));
        assert_eq!(
            parse("REINDEX t1i1").unwrap(),
            vec![Statement::Reindex {
                name: Some(Ident {
                    value: "t1i1".into(),
                    quoted: false,
                    span: Span::new(8, 12),
                })
            }]
        );
        assert_eq!(
            parse("REINDEX").unwrap(),
            vec![Statement::Reindex { name: None }]
        );
    }

    fn syntax(sql: &str) -> (String, Span, String) {
        match parse(sql) {
            Err(Error::Syntax {
                message,
                span,
                rendered,
            }) => (message, span, rendered),
            other => panic!("{sql}: {other:?}"),
        }
    }

    #[test]
    fn syntax_errors_point_at_the_offending_token() {
        let (message, span, rendered) = syntax("SELECT a FROM WHERE b");
        assert_eq!(message, "expected a table name, found keyword WHERE");
        assert_eq!(span, Span::new(14, 19));
        assert_eq!(
            rendered,
            "line 1, column 15\nSELECT a FROM WHERE b\n              ^^^^^"
        );

        let (message, _, rendered) = syntax("SELECT a,\n  b +\nFROM t");
        assert_eq!(message, "expected an expression, found keyword FROM");
        assert_eq!(rendered, "line 3, column 1\nFROM t\n^^^^");

        let (message, _, rendered) = syntax("SELECT (1 + 2");
        assert_eq!(message, "expected \")\", found end of input");
        assert_eq!(rendered, "line 1, column 14\nSELECT (1 + 2\n             ^");

        let (message, ..) = syntax("INSERT INTO t1 VALUES (1,)");
        assert_eq!(message, "expected an expression, found \")\"");
        let (message, ..) = syntax("SELEC 1");
        assert_eq!(message, "expected a statement, found name \"SELEC\"");
        let (message, ..) = syntax("SELECT 1 FROM t ORDER a");
        assert_eq!(message, "expected \";\", found keyword ORDER");
    }

    #[test]
    fn the_display_of_a_syntax_error_includes_the_caret() {
        let err = parse("DROP TABLE").expect_err("no name");
        let text = err.to_string();
        assert!(
            text.starts_with("syntax error: expected a name, found end of input\n"),
            "{text}"
        );
        assert!(text.ends_with("DROP TABLE\n          ^"), "{text}");
        assert_eq!(err.sqlstate(), "42601");
    }

    /// Statements nested far past [`MAX_DEPTH`], in every way the grammar
    /// recurses.
    fn too_deep() -> Vec<String> {
        let depth = MAX_DEPTH * 50;
        vec![
            format!("SELECT {}1{}", "(".repeat(depth), ")".repeat(depth)),
            format!("SELECT {}1", "- ".repeat(depth)),
            format!("SELECT {}1", "NOT ".repeat(depth)),
            format!("SELECT {}1", "(SELECT ".repeat(depth)),
            format!("SELECT * FROM {}t", "(".repeat(depth)),
            "SELECT 1 IN (".repeat(depth),
            format!("SELECT {}", "CASE WHEN ".repeat(depth)),
            format!("SELECT {}", "count(".repeat(depth)),
            format!("SELECT {}", "(SELECT 1 UNION SELECT ".repeat(depth)),
        ]
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        for sql in too_deep() {
            let (message, ..) = syntax(&sql);
            assert!(message.contains("nested more than"), "{message}");
        }
    }

    #[test]
    fn the_depth_limit_fits_in_a_default_thread_stack() {
        let worker = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(|| too_deep().iter().all(|sql| parse(sql).is_err()))
            .expect("spawn");
        assert!(worker.join().expect("no stack overflow"));
    }

    #[test]
    fn nesting_up_to_the_limit_parses() {
        // The statement's query and its select item take two levels.
        let depth = MAX_DEPTH - 2;
        let sql = format!("SELECT {}1{}", "(".repeat(depth), ")".repeat(depth));
        parse(&sql).unwrap();
        let sql = format!("SELECT {}1", "- ".repeat(MAX_DEPTH - 2));
        parse(&sql).unwrap();
    }

    proptest::proptest! {
        /// Like the `sql_parse` fuzz target, on every `cargo test`: text
        /// made of SQL's own tokens, shuffled, never panics the parser, and
        /// its syntax errors point inside the text.
        #[test]
        fn shuffled_tokens_never_panic(words in proptest::collection::vec(
            proptest::sample::select(vec![
                "SELECT", "FROM", "WHERE", "(", ")", ",", "a", "t1", "1", "2.5", "'x'", "NOT",
                "IN", "BETWEEN", "AND", "OR", "IS", "NULL", "+", "-", "*", "||", "CASE", "WHEN",
                "THEN", "END", "UNION", "ORDER", "BY", "LIMIT", "JOIN", "ON", "INSERT", "INTO",
                "VALUES", "CREATE", "TABLE", "INTEGER", "PRIMARY", "KEY", ";", "?", "$2", "EXISTS",
                "COLLATE", ".", "\"q\"", "é", "/*", "--", "'",
            ]),
            0..40,
        )) {
            let sql = words.join(" ");
            if let Err(Error::Syntax { span, rendered, .. }) = parse(&sql) {
                proptest::prop_assert!(span.start <= span.end && span.end <= sql.len());
                proptest::prop_assert!(rendered.contains('^'));
            }
        }
    }

    #[test]
    fn long_operator_chains_do_not_nest() {
        let sql = format!("SELECT 1{}", " + 1".repeat(10 * MAX_DEPTH));
        parse(&sql).unwrap();
        let sql = format!("SELECT 1 WHERE a{}", " AND a".repeat(10 * MAX_DEPTH));
        parse(&sql).unwrap();
    }
}

/// Parses every statement and query of SQLite's sqllogictest corpus (the
/// select and evidence scripts, kept outside the repository in
/// `../shared/sqllogictest`, or where `PYDB_SLT_DIR` says): this is how we
/// know the grammar covers what the corpus runs.
#[cfg(test)]
mod corpus {
    use super::*;
    use std::path::{Path, PathBuf};

    /// The SQL of each record of an slt script, with its line and whether
    /// it expects an error (`statement error`), skipping the records meant
    /// for other engines (`onlyif mysql`, ...).
    fn records(text: &str) -> Vec<(usize, String, bool)> {
        let mut out = Vec::new();
        let mut lines = text.lines().enumerate().peekable();
        let mut other_engine = false;
        while let Some((_, line)) = lines.next() {
            let line = line.trim_end();
            if let Some(engine) = line.strip_prefix("onlyif ") {
                let engine = engine.split_whitespace().next().unwrap_or("");
                other_engine = engine != "sqlite" && engine != "pydb";
                continue;
            }
            if !(line.starts_with("statement ") || line.starts_with("query ")) {
                if line.is_empty() {
                    other_engine = false;
                }
                continue;
            }
            let expects_error = line.starts_with("statement error");
            let mut sql = String::new();
            let mut first = None;
            while let Some((n, l)) = lines.peek() {
                if l.trim().is_empty() || l.trim_end() == "----" {
                    break;
                }
                first.get_or_insert(n + 1);
                sql.push_str(l);
                sql.push('\n');
                lines.next();
            }
            if !other_engine && let Some(first) = first {
                out.push((first, sql, expects_error));
            }
            other_engine = false;
        }
        out
    }

    fn corpus_dir() -> Option<PathBuf> {
        let dir = std::env::var_os("PYDB_SLT_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/sqllogictest")
            });
        dir.is_dir().then_some(dir)
    }

    /// What pydb refuses on purpose: triggers and TEMP views.
    const REFUSED: &[&str] = &["TRIGGER", "TEMP"];

    #[test]
    fn every_corpus_statement_parses() {
        let Some(dir) = corpus_dir() else {
            eprintln!("sqllogictest corpus not found; skipping");
            return;
        };
        let mut files: Vec<PathBuf> = Vec::new();
        for d in [dir.clone(), dir.join("evidence")] {
            for entry in std::fs::read_dir(&d).expect("read corpus dir") {
                let path = entry.expect("dir entry").path();
                if path.extension().is_some_and(|e| e == "test") {
                    files.push(path);
                }
            }
        }
        files.sort();
        assert!(!files.is_empty());
        let (mut parsed, mut refused, mut failures) = (0, 0, Vec::new());
        for file in &files {
            let text = std::fs::read_to_string(file).expect("read script");
            for (line, sql, expects_error) in records(&text) {
                match parse(&sql) {
                    Ok(statements) if !statements.is_empty() => parsed += 1,
                    // `count(DISTINCT *)`: SQLite calls it a syntax error too.
                    Err(Error::Syntax { .. }) if expects_error => refused += 1,
                    Err(Error::Invalid(_)) if REFUSED.iter().any(|r| sql.contains(r)) => {
                        refused += 1
                    }
                    other => {
                        failures.push(format!("{}:{line}: {sql}\n  -> {other:?}", file.display()))
                    }
                }
            }
        }
        eprintln!("corpus: {parsed} parsed, {refused} refused (on purpose or as expected)");
        assert!(parsed > 10_000, "only {parsed} statements found");
        assert!(
            failures.is_empty(),
            "{} failures:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
}
