//! The abstract syntax tree: what the parser builds and the binder reads.
//!
//! Every node that a user can get wrong carries a [`Span`], the byte range
//! of the statement text it came from, so that an error can point at it
//! with a caret. Names are kept as written ([`Ident`]); SQL compares
//! unquoted names without regard to case, and the binder does that.

use crate::value::DataType;

/// A byte range `start..end` in the text of one statement (or script).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Span {
    /// The first byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

impl Span {
    /// The span from `start` to `end`.
    pub fn new(start: usize, end: usize) -> Self {
        Span { start, end }
    }

    /// The smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        Span {
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }
}

/// A name: of a table, column, index, view, alias or function.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Ident {
    /// The name as written, without quotes.
    pub value: String,
    /// Whether it was written in double quotes.
    pub quoted: bool,
    /// Where it was written.
    pub span: Span,
}

impl Ident {
    /// Whether this name denotes `other` (ASCII case-insensitive).
    pub fn matches(&self, other: &str) -> bool {
        self.value.eq_ignore_ascii_case(other)
    }

    /// The name in the form the catalog stores: lower case.
    pub fn normalized(&self) -> String {
        self.value.to_ascii_lowercase()
    }
}

/// One SQL statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    /// `SELECT ...`, `VALUES ...`, or a compound of them.
    Query(Box<Query>),
    /// `INSERT INTO ...`.
    Insert(Insert),
    /// `UPDATE ... SET ... [WHERE ...]`.
    Update(Update),
    /// `DELETE FROM ... [WHERE ...]`.
    Delete(Delete),
    /// `CREATE TABLE ...`.
    CreateTable(CreateTable),
    /// `CREATE [UNIQUE] INDEX ...`.
    CreateIndex(CreateIndex),
    /// `CREATE VIEW name [(columns)] AS query`.
    CreateView(CreateView),
    /// `DROP TABLE|INDEX|VIEW [IF EXISTS] name`.
    Drop(Drop),
    /// `BEGIN [TRANSACTION] [ISOLATION LEVEL ...] [READ ONLY|READ WRITE]`
    /// (also `START TRANSACTION`).
    Begin {
        /// The isolation level asked for, if any.
        isolation: Option<IsolationLevel>,
        /// `READ ONLY`.
        read_only: bool,
    },
    /// `COMMIT` or `END`.
    Commit,
    /// `ROLLBACK`.
    Rollback,
    /// `EXPLAIN [ANALYZE] statement`.
    Explain {
        /// `EXPLAIN ANALYZE`: run it and report actual rows and times.
        analyze: bool,
        /// The statement explained.
        statement: Box<Statement>,
    },
    /// `REINDEX [name]`: rebuilds the entries of one index, of every index
    /// of one table, or (without a name) of every index.
    Reindex {
        /// An index or a table.
        name: Option<Ident>,
    },
    /// `ANALYZE [table]`: collect statistics for the optimizer.
    Analyze {
        /// One table, or every table.
        table: Option<Ident>,
    },
}

/// The isolation levels SQL can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsolationLevel {
    /// `READ UNCOMMITTED` (runs as read committed, as in PostgreSQL).
    ReadUncommitted,
    /// `READ COMMITTED`.
    ReadCommitted,
    /// `REPEATABLE READ` (snapshot isolation, as in PostgreSQL).
    RepeatableRead,
    /// `SNAPSHOT`.
    Snapshot,
    /// `SERIALIZABLE`.
    Serializable,
}

/// A query: a body with ORDER BY, LIMIT and OFFSET.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// The rows: a SELECT, VALUES, or a compound.
    pub body: SetExpr,
    /// `ORDER BY` items (an integer literal names an output column).
    pub order_by: Vec<OrderByItem>,
    /// `LIMIT n` (also the second number of SQLite's `LIMIT offset, n`).
    pub limit: Option<Expr>,
    /// `OFFSET n` (also the first number of `LIMIT offset, n`).
    pub offset: Option<Expr>,
    /// The whole query.
    pub span: Span,
}

/// The body of a query.
#[derive(Debug, Clone, PartialEq)]
pub enum SetExpr {
    /// One SELECT.
    Select(Box<Select>),
    /// `VALUES (..), (..)`.
    Values(Vec<Vec<Expr>>),
    /// `left UNION|INTERSECT|EXCEPT [ALL] right` (left-associative, as
    /// SQLite evaluates compounds).
    SetOp {
        /// The operator.
        op: SetOperator,
        /// `ALL`: keep duplicates.
        all: bool,
        /// The left side.
        left: Box<SetExpr>,
        /// The right side.
        right: Box<SetExpr>,
    },
    /// A parenthesized query used as a compound operand.
    Query(Box<Query>),
}

/// A set operator of a compound query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetOperator {
    /// `UNION`.
    Union,
    /// `INTERSECT`.
    Intersect,
    /// `EXCEPT`.
    Except,
}

/// `SELECT [DISTINCT|ALL] items [FROM ...] [WHERE ...] [GROUP BY ...] [HAVING ...]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Select {
    /// `DISTINCT`.
    pub distinct: bool,
    /// The output items.
    pub projection: Vec<SelectItem>,
    /// The FROM list; comma-separated entries are a cross join.
    pub from: Vec<TableRef>,
    /// `WHERE`.
    pub selection: Option<Expr>,
    /// `GROUP BY` expressions (an integer literal names an output column).
    pub group_by: Vec<Expr>,
    /// `HAVING`.
    pub having: Option<Expr>,
    /// The whole SELECT.
    pub span: Span,
}

/// One item of a SELECT list.
#[derive(Debug, Clone, PartialEq)]
pub enum SelectItem {
    /// `*`.
    Wildcard(Span),
    /// `table.*`.
    QualifiedWildcard(Ident),
    /// `expr [[AS] alias]`.
    Expr {
        /// The expression.
        expr: Expr,
        /// The alias.
        alias: Option<Ident>,
    },
}

/// One entry of a FROM clause.
#[derive(Debug, Clone, PartialEq)]
pub enum TableRef {
    /// A table or view by name, with an optional alias.
    Table {
        /// The name.
        name: Ident,
        /// `[AS] alias`.
        alias: Option<Ident>,
    },
    /// `(query) [AS] alias`.
    Subquery {
        /// The query.
        query: Box<Query>,
        /// The alias.
        alias: Option<Ident>,
    },
    /// `left [INNER|LEFT [OUTER]|CROSS] JOIN right [ON expr | USING (cols)]`.
    Join {
        /// The left input.
        left: Box<TableRef>,
        /// The right input.
        right: Box<TableRef>,
        /// The kind of join.
        kind: JoinKind,
        /// How the rows match.
        constraint: JoinConstraint,
    },
}

/// The kind of a join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    /// `[INNER] JOIN`.
    Inner,
    /// `LEFT [OUTER] JOIN`.
    Left,
    /// `CROSS JOIN` (or a comma).
    Cross,
}

/// How the rows of a join match.
#[derive(Debug, Clone, PartialEq)]
pub enum JoinConstraint {
    /// `ON expr`.
    On(Expr),
    /// `USING (a, b)`.
    Using(Vec<Ident>),
    /// `NATURAL JOIN`: the columns both sides name.
    Natural,
    /// No constraint (a cross join).
    None,
}

/// One item of ORDER BY.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderByItem {
    /// The expression (an integer literal names an output column).
    pub expr: Expr,
    /// `DESC`.
    pub desc: bool,
    /// `NULLS FIRST` (`Some(true)`) or `NULLS LAST` (`Some(false)`); when
    /// absent, NULL sorts first ascending and last descending, as in SQLite.
    pub nulls_first: Option<bool>,
}

/// `INSERT [OR REPLACE] INTO table [(columns)] VALUES ... | SELECT ... | DEFAULT VALUES`.
#[derive(Debug, Clone, PartialEq)]
pub struct Insert {
    /// The table.
    pub table: Ident,
    /// The columns named, if any.
    pub columns: Option<Vec<Ident>>,
    /// The rows: `SetExpr::Values` for VALUES, any query for INSERT ...
    /// SELECT; `None` for `DEFAULT VALUES`.
    pub source: Option<Box<Query>>,
    /// `INSERT OR REPLACE` / `REPLACE INTO`: a row that collides on a
    /// unique key replaces the old one.
    pub replace: bool,
    /// The whole statement.
    pub span: Span,
}

/// `UPDATE table SET col = expr, ... [WHERE expr]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    /// The table.
    pub table: Ident,
    /// The assignments, in order.
    pub assignments: Vec<(Ident, Expr)>,
    /// `WHERE`.
    pub selection: Option<Expr>,
    /// The whole statement.
    pub span: Span,
}

/// `DELETE FROM table [WHERE expr]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Delete {
    /// The table.
    pub table: Ident,
    /// `WHERE`.
    pub selection: Option<Expr>,
    /// The whole statement.
    pub span: Span,
}

/// `CREATE TABLE [IF NOT EXISTS] name (columns, constraints)`.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateTable {
    /// The table's name.
    pub name: Ident,
    /// `IF NOT EXISTS`.
    pub if_not_exists: bool,
    /// The columns, in order.
    pub columns: Vec<ColumnDef>,
    /// Table constraints: `PRIMARY KEY (a, b)`, `UNIQUE (a, b)`.
    pub constraints: Vec<TableConstraint>,
    /// The whole statement.
    pub span: Span,
}

/// One column of CREATE TABLE.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnDef {
    /// The column's name.
    pub name: Ident,
    /// Its type (a missing type or an unknown type name maps to the
    /// nearest of the five, by SQLite's affinity rules).
    pub ty: DataType,
    /// `PRIMARY KEY`.
    pub primary_key: bool,
    /// `NOT NULL`.
    pub not_null: bool,
    /// `UNIQUE`.
    pub unique: bool,
    /// `DEFAULT expr`.
    pub default: Option<Expr>,
    /// Where it was written.
    pub span: Span,
}

/// A table constraint of CREATE TABLE.
#[derive(Debug, Clone, PartialEq)]
pub enum TableConstraint {
    /// `PRIMARY KEY (columns)`.
    PrimaryKey(Vec<Ident>),
    /// `UNIQUE (columns)`.
    Unique(Vec<Ident>),
}

/// `CREATE [UNIQUE] INDEX [IF NOT EXISTS] name ON table (col [ASC|DESC], ...)`.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateIndex {
    /// The index's name.
    pub name: Ident,
    /// The table.
    pub table: Ident,
    /// The columns, with `DESC` marked `true`.
    pub columns: Vec<(Ident, bool)>,
    /// `UNIQUE`.
    pub unique: bool,
    /// `IF NOT EXISTS`.
    pub if_not_exists: bool,
    /// The whole statement.
    pub span: Span,
}

/// `CREATE VIEW [IF NOT EXISTS] name [(columns)] AS query`.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateView {
    /// The view's name.
    pub name: Ident,
    /// `IF NOT EXISTS`.
    pub if_not_exists: bool,
    /// Column names, if given.
    pub columns: Option<Vec<Ident>>,
    /// The query.
    pub query: Box<Query>,
    /// The query's text, as stored in the catalog.
    pub sql: String,
    /// The whole statement.
    pub span: Span,
}

/// What a DROP statement drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// `DROP TABLE`.
    Table,
    /// `DROP INDEX`.
    Index,
    /// `DROP VIEW`.
    View,
}

/// `DROP TABLE|INDEX|VIEW [IF EXISTS] name`.
#[derive(Debug, Clone, PartialEq)]
pub struct Drop {
    /// What kind of object.
    pub kind: ObjectKind,
    /// `IF EXISTS`.
    pub if_exists: bool,
    /// The name.
    pub name: Ident,
    /// The whole statement.
    pub span: Span,
}

/// An expression with the span it was written at.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    /// What it is.
    pub kind: ExprKind,
    /// Where it was written.
    pub span: Span,
}

/// The kinds of expression.
#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    /// A constant.
    Literal(Literal),
    /// `column` or `table.column`.
    Column {
        /// The table or alias, if qualified.
        table: Option<Ident>,
        /// The column.
        column: Ident,
    },
    /// `$n` or `?` (numbered from 1 in order of appearance): a parameter
    /// of a prepared statement.
    Parameter(u32),
    /// A prefix operator.
    Unary {
        /// The operator.
        op: UnaryOp,
        /// Its operand.
        expr: Box<Expr>,
    },
    /// An infix operator.
    Binary {
        /// The operator.
        op: BinaryOp,
        /// The left operand.
        left: Box<Expr>,
        /// The right operand.
        right: Box<Expr>,
    },
    /// `expr IS [NOT] NULL` (also `ISNULL`, `NOTNULL`).
    IsNull {
        /// The operand.
        expr: Box<Expr>,
        /// `IS NOT NULL`.
        negated: bool,
    },
    /// `expr [NOT] BETWEEN low AND high`.
    Between {
        /// The operand.
        expr: Box<Expr>,
        /// The lower bound (inclusive).
        low: Box<Expr>,
        /// The upper bound (inclusive).
        high: Box<Expr>,
        /// `NOT BETWEEN`.
        negated: bool,
    },
    /// `expr [NOT] IN (a, b, ...)`; the list may be empty, as SQLite allows.
    InList {
        /// The operand.
        expr: Box<Expr>,
        /// The list.
        list: Vec<Expr>,
        /// `NOT IN`.
        negated: bool,
    },
    /// `expr [NOT] IN (query)`.
    InSubquery {
        /// The operand.
        expr: Box<Expr>,
        /// The query (one column).
        query: Box<Query>,
        /// `NOT IN`.
        negated: bool,
    },
    /// `[NOT] EXISTS (query)`.
    Exists {
        /// The query.
        query: Box<Query>,
        /// `NOT EXISTS`.
        negated: bool,
    },
    /// `(query)` used as a value: one column, at most one row.
    Subquery(Box<Query>),
    /// `CASE [operand] WHEN .. THEN .. [ELSE ..] END`.
    Case {
        /// The operand of a simple CASE.
        operand: Option<Box<Expr>>,
        /// The WHEN and THEN pairs, in order.
        branches: Vec<(Expr, Expr)>,
        /// `ELSE`.
        else_result: Option<Box<Expr>>,
    },
    /// `CAST(expr AS type)`.
    Cast {
        /// The operand.
        expr: Box<Expr>,
        /// The target type.
        ty: DataType,
    },
    /// `name(args)`, `name(DISTINCT arg)`, `name(*)`: scalar functions
    /// and aggregates alike; the binder tells them apart.
    Function {
        /// The function's name.
        name: Ident,
        /// The arguments.
        args: Vec<Expr>,
        /// `DISTINCT` inside the parentheses.
        distinct: bool,
        /// `(*)`, as in `COUNT(*)`.
        star: bool,
    },
    /// `expr [NOT] LIKE pattern`.
    Like {
        /// The operand.
        expr: Box<Expr>,
        /// The pattern (`%` any run, `_` one character).
        pattern: Box<Expr>,
        /// `NOT LIKE`.
        negated: bool,
    },
}

/// A constant written in the statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// `NULL`.
    Null,
    /// An integer that fits in 64 bits.
    Integer(i64),
    /// A number with a fraction or exponent, or an integer too large for
    /// 64 bits.
    Real(f64),
    /// `'text'`.
    Text(String),
    /// `TRUE` or `FALSE`.
    Boolean(bool),
}

/// Prefix operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnaryOp {
    /// `-x`.
    Neg,
    /// `+x`.
    Plus,
    /// `NOT x`.
    Not,
    /// `~x` (bitwise not).
    BitNot,
}

/// Infix operators, from the loosest binding to the tightest: OR; AND;
/// comparisons `= == <> != IS [NOT]`; `< <= > >=`; `& | << >>`; `+ -`;
/// `* / %`; `||`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    /// `OR`.
    Or,
    /// `AND`.
    And,
    /// `=` or `==`.
    Eq,
    /// `<>` or `!=`.
    NotEq,
    /// `IS`: equality where NULL equals NULL.
    Is,
    /// `IS NOT`.
    IsNot,
    /// `<`.
    Lt,
    /// `<=`.
    LtEq,
    /// `>`.
    Gt,
    /// `>=`.
    GtEq,
    /// `+`.
    Add,
    /// `-`.
    Sub,
    /// `*`.
    Mul,
    /// `/` (integer division truncates toward zero).
    Div,
    /// `%`.
    Mod,
    /// `||`: text concatenation.
    Concat,
    /// `&`.
    BitAnd,
    /// `|`.
    BitOr,
    /// `<<`.
    ShiftLeft,
    /// `>>`.
    ShiftRight,
}
