//! The lexer: SQL text to tokens.
//!
//! A hand-written scanner over the bytes of the text. It knows the shapes
//! of SQL's tokens and nothing of the grammar: keywords, names, numbers,
//! strings, parameters and operators. Whitespace and comments (`-- ...` to
//! the end of the line, `/* ... */`) separate tokens and are dropped.
//!
//! Every token carries the [`Span`] of bytes it was cut from, so that the
//! parser (and later the binder) can point at the text with a caret. The
//! lexer works on bytes but only ever cuts at ASCII characters, so every
//! span starts and ends on a UTF-8 character boundary.
//!
//! Rules worth knowing, all as SQLite has them:
//! - Keywords are matched without regard to case; a word that is not a
//!   keyword is a name. Whether a keyword may still serve as a name (a
//!   column called `key`) is the parser's decision.
//! - A name may be quoted as `"name"` (standard SQL), `[name]` or
//!   `` `name` `` (SQLite accepts both); a doubled quote inside stands for
//!   one.
//! - `'text'` is a string; `''` inside stands for one quote.
//! - An integer too large for 64 bits is read as a REAL. `1.5`, `.5`,
//!   `1e10` and `1.`are reals.
//! - `?` is the next parameter; `$3` and `?3` name parameter 3.

use std::fmt;

use crate::ast::Span;
use crate::error::{Error, Result};

/// One token of SQL text.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    /// What it is.
    pub kind: TokenKind,
    /// Where it was written.
    pub span: Span,
}

/// The kinds of token.
#[derive(Debug, Clone, PartialEq)]
pub enum TokenKind {
    /// A reserved or non-reserved word of SQL.
    Keyword(Keyword),
    /// A name: unquoted (`quoted == false`) or in `"..."`, `[...]` or
    /// `` `...` `` (without the quotes).
    Ident {
        /// The name, quotes removed.
        value: String,
        /// Whether it was quoted.
        quoted: bool,
    },
    /// An integer literal that fits in an `i64`.
    Integer(i64),
    /// A literal with a fraction or an exponent, or an integer too large
    /// for an `i64` (the parser needs to know which, to read
    /// `-9223372036854775808` as an integer).
    Real {
        /// The value.
        value: f64,
        /// Whether it was written as an integer (no `.`, no exponent).
        integer_form: bool,
    },
    /// `'text'`, with `''` turned into `'`.
    String(String),
    /// `X'0A1B'`: a blob literal (hex digits as written).
    Blob(String),
    /// `?` (`None`: the next number), `?3` or `$3`.
    Parameter(Option<u32>),
    /// `=` or `==`.
    Eq,
    /// `<>` or `!=`.
    NotEq,
    /// `<`.
    Lt,
    /// `<=`.
    LtEq,
    /// `>`.
    Gt,
    /// `>=`.
    GtEq,
    /// `+`.
    Plus,
    /// `-`.
    Minus,
    /// `*`.
    Star,
    /// `/`.
    Slash,
    /// `%`.
    Percent,
    /// `||`.
    Concat,
    /// `&`.
    Ampersand,
    /// `|`.
    Pipe,
    /// `<<`.
    ShiftLeft,
    /// `>>`.
    ShiftRight,
    /// `~`.
    Tilde,
    /// `(`.
    LParen,
    /// `)`.
    RParen,
    /// `,`.
    Comma,
    /// `;`.
    Semicolon,
    /// `.`.
    Dot,
    /// The end of the text.
    Eof,
}

impl fmt::Display for TokenKind {
    /// How an error message names the token: `keyword FROM`, `name "t1"`,
    /// `","`, `end of input`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self {
            TokenKind::Keyword(k) => return write!(f, "keyword {}", k.as_str()),
            TokenKind::Ident { value, .. } => return write!(f, "name \"{value}\""),
            TokenKind::Integer(i) => return write!(f, "number {i}"),
            TokenKind::Real { value, .. } => return write!(f, "number {value}"),
            TokenKind::String(s) => return write!(f, "string '{s}'"),
            TokenKind::Blob(s) => return write!(f, "blob X'{s}'"),
            TokenKind::Parameter(Some(n)) => return write!(f, "parameter ${n}"),
            TokenKind::Parameter(None) => "?",
            TokenKind::Eof => return f.write_str("end of input"),
            TokenKind::Eq => "=",
            TokenKind::NotEq => "<>",
            TokenKind::Lt => "<",
            TokenKind::LtEq => "<=",
            TokenKind::Gt => ">",
            TokenKind::GtEq => ">=",
            TokenKind::Plus => "+",
            TokenKind::Minus => "-",
            TokenKind::Star => "*",
            TokenKind::Slash => "/",
            TokenKind::Percent => "%",
            TokenKind::Concat => "||",
            TokenKind::Ampersand => "&",
            TokenKind::Pipe => "|",
            TokenKind::ShiftLeft => "<<",
            TokenKind::ShiftRight => ">>",
            TokenKind::Tilde => "~",
            TokenKind::LParen => "(",
            TokenKind::RParen => ")",
            TokenKind::Comma => ",",
            TokenKind::Semicolon => ";",
            TokenKind::Dot => ".",
        };
        write!(f, "\"{op}\"")
    }
}

/// Declares the keyword enum with its spelling, in one list.
macro_rules! keywords {
    ($($name:ident),* $(,)?) => {
        /// The words SQL gives a meaning to. Matched without regard to
        /// case; see [`Keyword::is_reserved`] for which may still be names.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[allow(missing_docs, reason = "each variant is the keyword it spells")]
        pub enum Keyword {
            $($name),*
        }

        /// Every keyword, in alphabetical order (for lookup).
        const KEYWORDS: &[Keyword] = &[$(Keyword::$name),*];

        impl Keyword {
            /// The keyword in upper case, as SQL writes it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Keyword::$name => stringify!($name)),*
                }
            }
        }
    };
}

keywords! {
    ABORT, ALL, ANALYZE, AND, AS, ASC, AUTOINCREMENT, BEGIN, BETWEEN, BY,
    CASE, CAST, CHECK, COLLATE, COMMIT, CONSTRAINT, CREATE, CROSS, DEFAULT,
    DEFERRED, DELETE, DESC, DISTINCT, DROP, ELSE, END, ESCAPE, EXCEPT,
    EXCLUSIVE, EXISTS, EXPLAIN, FAIL, FALSE, FIRST, FOREIGN, FROM, FULL, GLOB,
    GROUP, HAVING, IF, IGNORE, IMMEDIATE, IN, INDEX, INDEXED, INNER, INSERT,
    INTERSECT, INTO, IS, ISNULL, ISOLATION, JOIN, KEY, LAST, LEFT, LEVEL, LIKE,
    LIMIT, MATCH, NATURAL, NOT, NOTNULL, NULL, NULLS, OF, OFFSET, ON, ONLY,
    OR, ORDER, OUTER, PLAN, PRAGMA, PRIMARY, QUERY, READ, REFERENCES, REGEXP,
    REINDEX, RELEASE, REPLACE, RIGHT, ROLLBACK, SAVEPOINT, SELECT, SET,
    START, TABLE, TEMP, TEMPORARY, THEN, TO, TRANSACTION, TRIGGER, TRUE,
    UNION, UNIQUE, UPDATE, USING, VACUUM, VALUES, VIEW, WHEN, WHERE, WITH,
    WRITE,
}

impl Keyword {
    /// The keyword spelled `word` (any case), if it is one.
    pub fn lookup(word: &str) -> Option<Keyword> {
        // Upper-case into a small buffer (no keyword is longer than 16
        // bytes) and search the sorted list.
        let mut upper = [0u8; 16];
        let buf = upper.get_mut(..word.len())?;
        buf.copy_from_slice(word.as_bytes());
        buf.make_ascii_uppercase();
        KEYWORDS
            .binary_search_by(|k| k.as_str().as_bytes().cmp(buf))
            .ok()
            .map(|i| KEYWORDS[i])
    }

    /// Whether the keyword can never be a name without quotes. The others
    /// (`KEY`, `FIRST`, `REPLACE`, `TEMP`, ...) are names wherever the
    /// grammar expects one, as in SQLite, so that `replace(x, y, z)` and a
    /// column called `key` work.
    pub fn is_reserved(self) -> bool {
        use Keyword::*;
        matches!(
            self,
            ALL | AND
                | AS
                | BETWEEN
                | CASE
                | CAST
                | CHECK
                | COLLATE
                | CONSTRAINT
                | CREATE
                | CROSS
                | DEFAULT
                | DELETE
                | DISTINCT
                | DROP
                | ELSE
                | END
                | ESCAPE
                | EXCEPT
                | EXISTS
                | FALSE
                | FOREIGN
                | FROM
                | FULL
                | GLOB
                | GROUP
                | HAVING
                | IN
                | INDEXED
                | INNER
                | INSERT
                | INTERSECT
                | INTO
                | IS
                | ISNULL
                | JOIN
                | LEFT
                | LIKE
                | LIMIT
                | MATCH
                | NATURAL
                | NOT
                | NOTNULL
                | NULL
                | OFFSET
                | ON
                | OR
                | ORDER
                | OUTER
                | PRIMARY
                | REFERENCES
                | REGEXP
                | RIGHT
                | SELECT
                | SET
                | THEN
                | TRUE
                | UNION
                | UNIQUE
                | UPDATE
                | USING
                | VALUES
                | WHEN
                | WHERE
                | WITH
        )
    }
}

/// Cuts `sql` into tokens, ending with one [`TokenKind::Eof`] whose span is
/// the empty span at the end of the text.
pub fn tokenize(sql: &str) -> Result<Vec<Token>> {
    Lexer::new(sql).run()
}

/// Whether `sql` holds a whole statement a shell can run: its last token
/// is `;`. Text that ends inside a string, a quoted name or a `/* */`
/// comment is not complete (the next line may close it); text with any
/// other lexical error is, so that the error is shown at once.
pub fn is_complete(sql: &str) -> bool {
    let mut lexer = Lexer::new(sql);
    match lexer.run() {
        Ok(tokens) => tokens.len() >= 2 && tokens[tokens.len() - 2].kind == TokenKind::Semicolon,
        Err(_) => !lexer.ran_off_end,
    }
}

/// The spans of the statements of a script, without their `;`, leaving out
/// empty ones: `"SELECT 1; ;SELECT 2"` gives the spans of `SELECT 1` and
/// `SELECT 2`. A shell runs them one by one, to time each and to stop at
/// the first error.
pub fn split_statements(sql: &str) -> Result<Vec<Span>> {
    let tokens = tokenize(sql)?;
    let mut spans = Vec::new();
    let mut start: Option<Span> = None;
    let mut last = Span::default();
    for token in &tokens {
        match token.kind {
            TokenKind::Semicolon | TokenKind::Eof => {
                if let Some(first) = start.take() {
                    spans.push(first.to(last));
                }
            }
            _ => {
                start.get_or_insert(token.span);
                last = token.span;
            }
        }
    }
    Ok(spans)
}

/// The scanner's state: the text and the byte it is at.
struct Lexer<'a> {
    sql: &'a str,
    bytes: &'a [u8],
    pos: usize,
    /// Whether the text ended inside a string, quoted name or comment.
    ran_off_end: bool,
}

impl<'a> Lexer<'a> {
    fn new(sql: &'a str) -> Self {
        Lexer {
            sql,
            bytes: sql.as_bytes(),
            pos: 0,
            ran_off_end: false,
        }
    }

    /// Every token, up to and including `Eof`.
    fn run(&mut self) -> Result<Vec<Token>> {
        let mut tokens = Vec::new();
        loop {
            let token = self.next_token()?;
            let end = token.kind == TokenKind::Eof;
            tokens.push(token);
            if end {
                return Ok(tokens);
            }
        }
    }

    /// The byte `ahead` places after the current one, or 0 past the end
    /// (0 is never part of a token, so it ends every loop below).
    fn peek(&self, ahead: usize) -> u8 {
        self.bytes.get(self.pos + ahead).copied().unwrap_or(0)
    }

    /// A syntax error over `start..self.pos`.
    fn error(&self, start: usize, message: impl Into<String>) -> Error {
        syntax_error(self.sql, Span::new(start, self.pos.max(start)), message)
    }

    /// Skips whitespace and comments.
    fn skip_trivia(&mut self) -> Result<()> {
        loop {
            match (self.peek(0), self.peek(1)) {
                (b' ' | b'\t' | b'\n' | b'\r' | 0x0c, _) => self.pos += 1,
                (b'-', b'-') => {
                    while !matches!(self.peek(0), b'\n' | 0) {
                        self.pos += 1;
                    }
                }
                (b'/', b'*') => {
                    let start = self.pos;
                    self.pos += 2;
                    loop {
                        match (self.peek(0), self.peek(1)) {
                            (b'*', b'/') => {
                                self.pos += 2;
                                break;
                            }
                            (0, _) if self.pos >= self.bytes.len() => {
                                self.ran_off_end = true;
                                return Err(self.error(start, "unterminated /* comment"));
                            }
                            _ => self.pos += 1,
                        }
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    /// The next token.
    fn next_token(&mut self) -> Result<Token> {
        self.skip_trivia()?;
        let start = self.pos;
        if start >= self.bytes.len() {
            return Ok(Token {
                kind: TokenKind::Eof,
                span: Span::new(start, start),
            });
        }
        let c = self.peek(0);
        let kind = match c {
            b'\'' => TokenKind::String(self.quoted(b'\'', "string")?),
            b'"' => self.quoted_ident(b'"')?,
            b'`' => self.quoted_ident(b'`')?,
            b'[' => {
                // `[name]`: no escape inside, it ends at the first `]`.
                self.pos += 1;
                let body = self.pos;
                while !matches!(self.peek(0), b']' | 0) {
                    self.pos += 1;
                }
                if self.peek(0) != b']' {
                    self.ran_off_end = true;
                    return Err(self.error(start, "unterminated [name]"));
                }
                let value = self.sql[body..self.pos].to_string();
                self.pos += 1;
                TokenKind::Ident {
                    value,
                    quoted: true,
                }
            }
            b'x' | b'X' if self.peek(1) == b'\'' => {
                self.pos += 1;
                let hex = self.quoted(b'\'', "blob")?;
                if hex.len() % 2 != 0 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(
                        self.error(start, "a blob literal needs an even number of hex digits")
                    );
                }
                TokenKind::Blob(hex)
            }
            b'0'..=b'9' => self.number(start)?,
            b'.' if self.peek(1).is_ascii_digit() => self.number(start)?,
            b'?' | b'$' => {
                self.pos += 1;
                let digits = self.pos;
                while self.peek(0).is_ascii_digit() {
                    self.pos += 1;
                }
                if digits == self.pos {
                    if c == b'$' {
                        return Err(self.error(start, "expected a number after $"));
                    }
                    TokenKind::Parameter(None)
                } else {
                    match self.sql[digits..self.pos].parse::<u32>() {
                        Ok(n) if (1..=MAX_PARAMETER).contains(&n) => TokenKind::Parameter(Some(n)),
                        _ => {
                            return Err(self.error(
                                start,
                                format!("parameter numbers go from 1 to {MAX_PARAMETER}"),
                            ));
                        }
                    }
                }
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 => {
                // Non-ASCII letters may be part of names, as in SQLite.
                while matches!(self.peek(0), b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'$')
                    || self.peek(0) >= 0x80
                {
                    self.pos += 1;
                }
                let word = &self.sql[start..self.pos];
                match Keyword::lookup(word) {
                    Some(k) => TokenKind::Keyword(k),
                    None => TokenKind::Ident {
                        value: word.to_string(),
                        quoted: false,
                    },
                }
            }
            _ => self.operator(start)?,
        };
        Ok(Token {
            kind,
            span: Span::new(start, self.pos),
        })
    }

    /// `"name"` or `` `name` ``.
    fn quoted_ident(&mut self, quote: u8) -> Result<TokenKind> {
        Ok(TokenKind::Ident {
            value: self.quoted(quote, "quoted name")?,
            quoted: true,
        })
    }

    /// The body of a literal that starts at the current byte (`quote`),
    /// with doubled quotes turned into one.
    fn quoted(&mut self, quote: u8, what: &str) -> Result<String> {
        let start = self.pos;
        self.pos += 1;
        let mut value = String::new();
        let mut run = self.pos;
        loop {
            if self.pos >= self.bytes.len() {
                self.ran_off_end = true;
                return Err(self.error(start, format!("unterminated {what}")));
            }
            if self.peek(0) == quote {
                value.push_str(&self.sql[run..self.pos]);
                if self.peek(1) == quote {
                    value.push(quote as char);
                    self.pos += 2;
                    run = self.pos;
                } else {
                    self.pos += 1;
                    return Ok(value);
                }
            } else {
                self.pos += 1;
            }
        }
    }

    /// An integer or a real: `12`, `1.5`, `.5`, `1.`, `1e10`, `2.5E-3`.
    fn number(&mut self, start: usize) -> Result<TokenKind> {
        let mut integer_form = true;
        while self.peek(0).is_ascii_digit() {
            self.pos += 1;
        }
        if self.peek(0) == b'.' {
            integer_form = false;
            self.pos += 1;
            while self.peek(0).is_ascii_digit() {
                self.pos += 1;
            }
        }
        if matches!(self.peek(0), b'e' | b'E') {
            let sign = usize::from(matches!(self.peek(1), b'+' | b'-'));
            if self.peek(1 + sign).is_ascii_digit() {
                integer_form = false;
                self.pos += 1 + sign;
                while self.peek(0).is_ascii_digit() {
                    self.pos += 1;
                }
            }
        }
        // `12abc` is not a number followed by a name.
        if self.peek(0).is_ascii_alphabetic() || self.peek(0) == b'_' {
            while self.peek(0).is_ascii_alphanumeric() || self.peek(0) == b'_' {
                self.pos += 1;
            }
            return Err(self.error(start, "malformed number"));
        }
        let text = &self.sql[start..self.pos];
        if integer_form && let Ok(i) = text.parse::<i64>() {
            return Ok(TokenKind::Integer(i));
        }
        match text.parse::<f64>() {
            Ok(value) => Ok(TokenKind::Real {
                value,
                integer_form,
            }),
            Err(_) => Err(self.error(start, "malformed number")),
        }
    }

    /// An operator or punctuation.
    fn operator(&mut self, start: usize) -> Result<TokenKind> {
        let (kind, len) = match (self.peek(0), self.peek(1)) {
            (b'=', b'=') => (TokenKind::Eq, 2),
            (b'=', _) => (TokenKind::Eq, 1),
            (b'<', b'>') | (b'!', b'=') => (TokenKind::NotEq, 2),
            (b'<', b'=') => (TokenKind::LtEq, 2),
            (b'<', b'<') => (TokenKind::ShiftLeft, 2),
            (b'<', _) => (TokenKind::Lt, 1),
            (b'>', b'=') => (TokenKind::GtEq, 2),
            (b'>', b'>') => (TokenKind::ShiftRight, 2),
            (b'>', _) => (TokenKind::Gt, 1),
            (b'|', b'|') => (TokenKind::Concat, 2),
            (b'|', _) => (TokenKind::Pipe, 1),
            (b'+', _) => (TokenKind::Plus, 1),
            (b'-', _) => (TokenKind::Minus, 1),
            (b'*', _) => (TokenKind::Star, 1),
            (b'/', _) => (TokenKind::Slash, 1),
            (b'%', _) => (TokenKind::Percent, 1),
            (b'&', _) => (TokenKind::Ampersand, 1),
            (b'~', _) => (TokenKind::Tilde, 1),
            (b'(', _) => (TokenKind::LParen, 1),
            (b')', _) => (TokenKind::RParen, 1),
            (b',', _) => (TokenKind::Comma, 1),
            (b';', _) => (TokenKind::Semicolon, 1),
            (b'.', _) => (TokenKind::Dot, 1),
            _ => {
                // Step over one whole character, so the span stays on a
                // character boundary.
                let width = self.sql[start..].chars().next().map_or(1, char::len_utf8);
                self.pos += width;
                return Err(self.error(start, "unexpected character"));
            }
        };
        self.pos += len;
        Ok(kind)
    }
}

/// The largest parameter number (`$32766`), as in SQLite.
pub const MAX_PARAMETER: u32 = 32766;

/// A [`Error::Syntax`] at `span` of `sql`, with the caret rendering.
pub fn syntax_error(sql: &str, span: Span, message: impl Into<String>) -> Error {
    Error::Syntax {
        message: message.into(),
        span,
        rendered: render_span(sql, span),
    }
}

/// Shows where `span` is in `sql`: a `line L, column C` header, the line,
/// and carets under the span's part of that line. Columns count characters
/// from 1. The binder uses it too, for names it cannot resolve.
///
/// ```text
/// line 1, column 8
/// SELECT FROM t
///        ^^^^
/// ```
pub fn render_span(sql: &str, span: Span) -> String {
    // Clamp to the text and to character boundaries: a span from another
    // text must not make this panic.
    let mut start = span.start.min(sql.len());
    while !sql.is_char_boundary(start) {
        start -= 1;
    }
    let line_start = sql[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = sql[start..].find('\n').map_or(sql.len(), |i| start + i);
    let line = sql[line_start..line_end].trim_end_matches('\r');
    let line_no = sql[..line_start].matches('\n').count() + 1;
    let before = &sql[line_start..start];
    let column = before.chars().count() + 1;
    // The caret stops at the end of the line, but never before `start`
    // (which may sit in the `\r`s trimmed off the line).
    let end = span.end.min(line_start + line.len()).max(start);
    let width = sql.get(start..end).map_or(0, |s| s.chars().count()).max(1);
    // Keep tabs in the padding so the caret lines up under a tab-indented
    // line.
    let pad: String = before
        .chars()
        .map(|c| if c == '\t' { '\t' } else { ' ' })
        .collect();
    format!(
        "line {line_no}, column {column}\n{line}\n{pad}{}",
        "^".repeat(width)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(sql: &str) -> Vec<TokenKind> {
        tokenize(sql).unwrap().into_iter().map(|t| t.kind).collect()
    }

    fn ident(s: &str, quoted: bool) -> TokenKind {
        TokenKind::Ident {
            value: s.into(),
            quoted,
        }
    }

    #[test]
    fn the_keyword_list_is_sorted_for_binary_search() {
        assert!(KEYWORDS.windows(2).all(|w| w[0].as_str() < w[1].as_str()));
        for k in KEYWORDS {
            assert!(k.as_str().len() <= 16);
            assert_eq!(Keyword::lookup(&k.as_str().to_ascii_lowercase()), Some(*k));
        }
        assert_eq!(Keyword::lookup("selectx"), None);
        assert_eq!(Keyword::lookup("a_name_longer_than_sixteen_bytes"), None);
    }

    #[test]
    fn keywords_are_case_insensitive_and_names_are_kept_as_written() {
        assert_eq!(
            kinds("select From tAbLe1"),
            vec![
                TokenKind::Keyword(Keyword::SELECT),
                TokenKind::Keyword(Keyword::FROM),
                ident("tAbLe1", false),
                TokenKind::Eof
            ]
        );
    }

    #[test]
    fn quoted_names_in_three_styles() {
        assert_eq!(
            kinds(r#""se""lect" [a b] `c`"#),
            vec![
                ident("se\"lect", true),
                ident("a b", true),
                ident("c", true),
                TokenKind::Eof
            ]
        );
    }

    #[test]
    fn numbers() {
        assert_eq!(
            kinds("12 1.5 .5 1e10 2.5E-3 1. 9223372036854775807 9223372036854775808"),
            vec![
                TokenKind::Integer(12),
                TokenKind::Real {
                    value: 1.5,
                    integer_form: false
                },
                TokenKind::Real {
                    value: 0.5,
                    integer_form: false
                },
                TokenKind::Real {
                    value: 1e10,
                    integer_form: false
                },
                TokenKind::Real {
                    value: 2.5e-3,
                    integer_form: false
                },
                TokenKind::Real {
                    value: 1.0,
                    integer_form: false
                },
                TokenKind::Integer(i64::MAX),
                TokenKind::Real {
                    value: 9223372036854775808.0,
                    integer_form: true
                },
                TokenKind::Eof
            ]
        );
    }

    #[test]
    fn strings_with_doubled_quotes() {
        assert_eq!(
            kinds("'it''s' ''"),
            vec![
                TokenKind::String("it's".into()),
                TokenKind::String(String::new()),
                TokenKind::Eof
            ]
        );
    }

    #[test]
    fn every_operator() {
        use TokenKind::*;
        assert_eq!(
            kinds("= == <> != < <= > >= + - * / % || & | << >> ~ ( ) , ; ."),
            vec![
                Eq, Eq, NotEq, NotEq, Lt, LtEq, Gt, GtEq, Plus, Minus, Star, Slash, Percent,
                Concat, Ampersand, Pipe, ShiftLeft, ShiftRight, Tilde, LParen, RParen, Comma,
                Semicolon, Dot, Eof
            ]
        );
    }

    #[test]
    fn parameters() {
        assert_eq!(
            kinds("? $1 ?12"),
            vec![
                TokenKind::Parameter(None),
                TokenKind::Parameter(Some(1)),
                TokenKind::Parameter(Some(12)),
                TokenKind::Eof
            ]
        );
        assert!(tokenize("$0").is_err());
        assert!(tokenize("$99999999999").is_err());
        assert!(tokenize("$").is_err());
    }

    #[test]
    fn comments_are_dropped_and_spans_point_at_tokens() {
        let tokens = tokenize("-- hi\n/* a\n b */ x -- end").unwrap();
        assert_eq!(tokens.len(), 2);
        assert_eq!(tokens[0].kind, ident("x", false));
        assert_eq!(tokens[0].span, Span::new(17, 18));
        assert_eq!(tokens[1].span, Span::new(25, 25));
    }

    #[test]
    fn minus_minus_inside_an_expression_starts_a_comment() {
        assert_eq!(kinds("1--2"), vec![TokenKind::Integer(1), TokenKind::Eof]);
    }

    #[test]
    fn lexical_errors_are_syntax_errors_with_a_caret() {
        for (sql, message) in [
            ("SELECT 'abc", "unterminated string"),
            ("SELECT \"abc", "unterminated quoted name"),
            ("SELECT [abc", "unterminated [name]"),
            ("SELECT 1 /* x", "unterminated /* comment"),
            ("SELECT 12abc", "malformed number"),
            ("SELECT 1 # 2", "unexpected character"),
            ("SELECT 1 ! 2", "unexpected character"),
        ] {
            match tokenize(sql) {
                Err(Error::Syntax {
                    message: m,
                    rendered,
                    ..
                }) => {
                    assert_eq!(m, message, "{sql}");
                    assert!(rendered.contains('^'), "{rendered}");
                }
                other => panic!("{sql}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_statement_is_complete_at_a_semicolon_outside_strings_and_comments() {
        assert!(is_complete("SELECT 1;"));
        assert!(is_complete("SELECT 1; -- done\n"));
        assert!(is_complete("SELECT 1\n  FROM t;  "));
        assert!(!is_complete("SELECT 1"));
        assert!(!is_complete(""));
        assert!(!is_complete("SELECT ';"));
        assert!(!is_complete("SELECT 1 /* ; "));
        assert!(!is_complete("SELECT \"a;"));
        assert!(!is_complete("SELECT 1; SELECT 2"));
        // Any other lexical error is complete: the shell shows it now.
        assert!(is_complete("SELECT 1 # 2"));
    }

    #[test]
    fn statements_split_at_semicolons() {
        let sql = "SELECT 1; ;\n SELECT ';' -- x\n;INSERT INTO t VALUES (1)";
        let parts: Vec<&str> = split_statements(sql)
            .unwrap()
            .into_iter()
            .map(|s| &sql[s.start..s.end])
            .collect();
        assert_eq!(
            parts,
            ["SELECT 1", "SELECT ';'", "INSERT INTO t VALUES (1)"]
        );
        assert!(split_statements("  -- nothing\n").unwrap().is_empty());
        assert!(split_statements("SELECT 'x").is_err());
    }

    #[test]
    fn non_ascii_letters_make_names() {
        assert_eq!(kinds("café"), vec![ident("café", false), TokenKind::Eof]);
    }

    #[test]
    fn render_span_marks_the_span_on_its_line() {
        let sql = "SELECT a,\n  FROM t";
        assert_eq!(
            render_span(sql, Span::new(12, 16)),
            "line 2, column 3\n  FROM t\n  ^^^^"
        );
        // At the end of the text: one caret after the last character.
        assert_eq!(
            render_span("SELECT", Span::new(6, 6)),
            "line 1, column 7\nSELECT\n      ^"
        );
        // A span running past its line is cut at the line's end.
        assert_eq!(
            render_span("ab\ncd", Span::new(1, 5)),
            "line 1, column 2\nab\n ^"
        );
        // A span starting in the `\r` of a CRLF line (found by the fuzzer:
        // the caret's end was clamped below its start).
        assert_eq!(
            render_span("ab\r\r\ncd", Span::new(3, 1)),
            "line 1, column 4\nab\n   ^"
        );
        // Spans outside the text or inside a character do not panic.
        assert!(render_span("é", Span::new(1, 99)).starts_with("line 1, column 1"));
        assert!(render_span("", Span::new(5, 9)).starts_with("line 1, column 1"));
    }

    proptest::proptest! {
        /// Any span over any text renders without panicking.
        #[test]
        fn render_span_never_panics(
            sql in "[a\\t\\r\\n é€;]{0,30}",
            start in 0usize..40,
            end in 0usize..40,
        ) {
            let rendered = render_span(&sql, Span::new(start, end));
            proptest::prop_assert!(rendered.contains('^'));
        }
    }

    #[test]
    fn render_span_counts_characters_not_bytes() {
        assert_eq!(
            render_span("'é' x", Span::new(5, 6)),
            "line 1, column 5\n'é' x\n    ^"
        );
        assert_eq!(
            render_span("\tx y", Span::new(3, 4)),
            "line 1, column 4\n\tx y\n\t  ^"
        );
    }
}
