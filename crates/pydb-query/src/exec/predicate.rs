//! Filter predicates compiled once per execution.
//!
//! A filter runs its predicate for every row it sees: q6 of the SQL bench
//! tests four comparisons on each of 60,000 line items and keeps 2% of
//! them. Walking the expression tree for that ([`eval`]) costs, per
//! comparison, a dispatch on the node, a lookup of the column, a
//! `Result<Value>` built and taken apart, and again for the AND above it.
//! [`Predicate::compile`] does the walking once, when the operator is
//! built, and keeps what the row loop needs:
//!
//! - an AND chain, however it nests (`(a AND b) AND c`), becomes one flat
//!   list of conjuncts, tested left to right;
//! - `column op constant` and `constant op column` (`=`, `<>`, `<`, `<=`,
//!   `>`, `>=`; a constant is a literal or a statement parameter) and
//!   `column [NOT] BETWEEN constant AND constant` compare the row's value
//!   with the constant where both stand;
//! - anything else is evaluated by [`eval`], as before.
//!
//! The invariant: a compiled predicate gives exactly what
//! [`eval_predicate`](super::eval::eval_predicate) gives for every row, and
//! the same error when there is one. Each comparison gives what
//! [`Value::sql_cmp`] gives (two integers or two reals are compared
//! inline, anything else calls it) with its operands in the order `eval` uses, so
//! NULLs (unknown), numbers of both types and text compare as they do
//! there. An AND chain follows three-valued logic and stops at the first
//! FALSE conjunct, as the nested ANDs do: the conjuncts `eval` would have
//! evaluated, and only those, are evaluated, so a conjunct that fails
//! (an overflow, a subquery returning an error) fails here exactly when it
//! fails there. The tests below compare both on many rows.

use std::cmp::Ordering;

use crate::ast::BinaryOp;
use crate::encoding::Tested;
use crate::error::Result;
use crate::exec::eval::{Env, eval};
use crate::plan::Expr;
use crate::value::Value;

/// A predicate ready to be tested on rows (see the module docs).
#[derive(Debug)]
pub struct Predicate<'a> {
    /// Conjuncts, all of which must hold; in the order `eval` meets them.
    conjuncts: Vec<Test<'a>>,
}

/// One conjunct.
#[derive(Debug)]
enum Test<'a> {
    /// `row[column] op constant`, or `constant op row[column]` when
    /// `constant_first` (the operands are compared in their written order).
    Compare {
        column: usize,
        constant: &'a Value,
        constant_first: bool,
        holds: fn(Ordering) -> bool,
    },
    /// `row[column] [NOT] BETWEEN low AND high`.
    Between {
        column: usize,
        low: &'a Value,
        high: &'a Value,
        negated: bool,
    },
    /// Any other expression, evaluated by [`eval`].
    Expr(&'a Expr),
}

impl<'a> Predicate<'a> {
    /// Compiles `e` for rows of the operator's input; `env` supplies the
    /// statement's parameters, which are constants for the whole run.
    pub fn compile(e: &'a Expr, env: &Env<'a>) -> Predicate<'a> {
        let mut conjuncts = Vec::new();
        flatten(e, env, &mut conjuncts);
        Predicate { conjuncts }
    }

    /// Whether the predicate holds for `row` (NULL counts as not holding).
    pub fn holds(&self, row: &[Value], env: &Env<'_>) -> Result<bool> {
        Ok(self.truth(row, env)? == Some(true))
    }

    /// The predicate's three-valued truth for `row`.
    fn truth(&self, row: &[Value], env: &Env<'_>) -> Result<Option<bool>> {
        let mut unknown = false;
        for test in &self.conjuncts {
            match test.truth(row, env)? {
                Some(false) => return Ok(Some(false)),
                None => unknown = true,
                Some(true) => {}
            }
        }
        Ok(if unknown { None } else { Some(true) })
    }
}

impl Test<'_> {
    fn truth(&self, row: &[Value], env: &Env<'_>) -> Result<Option<bool>> {
        Ok(match self {
            Test::Compare { column, .. } | Test::Between { column, .. } => {
                self.column_truth(column_of(row, *column)?)
            }
            Test::Expr(e) => eval(e, row, env)?.truth(),
        })
    }

    /// The column of a test that reads one column and cannot fail, which
    /// a scan may run on the column as soon as it is decoded
    /// ([`ScanFilter`]).
    fn pushable_column(&self) -> Option<usize> {
        match *self {
            Test::Compare { column, .. } | Test::Between { column, .. } => Some(column),
            Test::Expr(_) => None,
        }
    }

    /// The truth of a `Compare` or `Between` test on its column's `value`
    /// (`None` for an `Expr`, which is never asked).
    #[inline]
    fn column_truth(&self, value: &Value) -> Option<bool> {
        match *self {
            Test::Compare {
                constant,
                constant_first,
                holds,
                ..
            } => {
                let order = if constant_first {
                    sql_cmp(constant, value)
                } else {
                    sql_cmp(value, constant)
                };
                order.map(holds)
            }
            Test::Between {
                low, high, negated, ..
            } => {
                let ge = sql_cmp(value, low).map(|o| o != Ordering::Less);
                let le = sql_cmp(value, high).map(|o| o != Ordering::Greater);
                let r = match (ge, le) {
                    (Some(false), _) | (_, Some(false)) => Some(false),
                    (Some(true), Some(true)) => Some(true),
                    _ => None,
                };
                if negated { r.map(|b| !b) } else { r }
            }
            Test::Expr(_) => None,
        }
    }
}

/// A hash join's test of a probe row's key, which a scan runs as soon as
/// the key's columns are decoded: a row whose key has no match in the
/// build side is dropped there, and its other columns are not decoded
/// (q5 joins 75 of 60,000 line items). It is a hint: a cursor may ignore
/// it, and the join looks every row up anyway. It is only handed to a
/// scan for a join that drops a row without a match (not a LEFT join),
/// and only when the filter of the probe side is pushed whole, so that
/// dropping the row early skips nothing that could fail.
pub trait KeyProbe {
    /// The last column of the key in the row (the one after which the key
    /// is tested); `None`: no test.
    fn last_column(&self) -> Option<usize>;
    /// Whether a row whose columns up to the key's last are `row` may
    /// have a match (`false`: certainly none).
    fn may_match(&mut self, row: &[Value]) -> bool;
}

/// A filter split for a table scan that tests rows as it decodes them
/// (lazy decoding, [`crate::encoding::decode_row_tested_into`]).
///
/// The *pushed* conjuncts are the longest prefix of the predicate's
/// conjuncts that compare a column of the row with constants (`Compare`,
/// `Between`): such a test cannot fail, so the scan may run it as soon as
/// its column is decoded, in the order of the row's columns, and drop the
/// row at the first false one without decoding the rest. The *residual*
/// conjuncts, the ones after that prefix, run on the decoded row, as the
/// predicate would run them. Only a prefix is pushed: `eval` stops at the
/// first false conjunct, so a false pushed conjunct means that no
/// conjunct after it was ever evaluated (nor could fail), and the
/// conjuncts before it cannot fail; a row's answer, error included, is
/// therefore [`Predicate::holds`]'s (the property test
/// `a_scan_filter_is_the_predicate` below checks it on encoded rows).
pub struct ScanFilter<'a> {
    predicate: Predicate<'a>,
    env: Env<'a>,
    /// How many of the predicate's conjuncts are pushed.
    pushed: usize,
    /// The pushed conjuncts' (column, index), by column.
    by_column: Vec<(usize, usize)>,
    /// Whether each column has a pushed conjunct.
    tested: Vec<bool>,
}

impl<'a> ScanFilter<'a> {
    /// Splits `predicate` for a scan of rows `width` columns wide (a
    /// conjunct on a column past it is not pushed: the row would not
    /// hold it, and `eval` fails there).
    pub fn new(predicate: Predicate<'a>, env: &Env<'a>, width: usize) -> Self {
        let pushed = predicate
            .conjuncts
            .iter()
            .take_while(|t| t.pushable_column().is_some_and(|c| c < width))
            .count();
        let mut by_column: Vec<(usize, usize)> = predicate.conjuncts[..pushed]
            .iter()
            .enumerate()
            .filter_map(|(i, t)| Some((t.pushable_column()?, i)))
            .collect();
        by_column.sort_unstable();
        let mut tested = vec![false; width];
        for &(c, _) in &by_column {
            tested[c] = true;
        }
        ScanFilter {
            predicate,
            env: env.clone(),
            pushed,
            by_column,
            tested,
        }
    }

    /// The filter of a scan without one: every row passes.
    pub fn everything(env: &Env<'a>, width: usize) -> Self {
        ScanFilter::new(
            Predicate {
                conjuncts: Vec::new(),
            },
            env,
            width,
        )
    }

    /// Whether each column has a pushed conjunct (`width` flags).
    pub fn tested(&self) -> &[bool] {
        &self.tested
    }

    /// Whether every conjunct is pushed (none is left to run on the
    /// decoded row): then a join's key test may reject a row before the
    /// filter has seen all of it ([`KeyProbe`]).
    pub fn is_pushed_whole(&self) -> bool {
        self.pushed == self.predicate.conjuncts.len()
    }

    /// A tester for one row: called with each tested column in ascending
    /// order and the row decoded up to it, it gives the pushed conjuncts'
    /// truth on the column (false as soon as one is false), then, at the
    /// last column of `key`'s, false if the key has no match.
    #[inline]
    pub fn row_tester<'t, 'k: 't>(
        &'t self,
        mut key: Option<&'t mut (dyn KeyProbe + 'k)>,
    ) -> impl FnMut(usize, &[Value]) -> Option<bool> + 't {
        let mut next = 0;
        move |column, row| {
            let mut truth = Some(true);
            let value = row.last()?;
            while let Some(&(c, i)) = self.by_column.get(next) {
                if c != column {
                    break;
                }
                next += 1;
                match self.predicate.conjuncts[i].column_truth(value) {
                    Some(false) => return Some(false),
                    None => truth = None,
                    Some(true) => {}
                }
            }
            if let Some(key) = key.as_deref_mut()
                && key.last_column() == Some(column)
                && !key.may_match(row)
            {
                return Some(false);
            }
            truth
        }
    }

    /// Whether the whole predicate holds for a decoded `row` (what a scan
    /// that does not test while decoding runs).
    pub fn holds(&self, row: &[Value]) -> Result<bool> {
        self.predicate.holds(row, &self.env)
    }

    /// Whether the row holds, given what its pushed conjuncts said
    /// (`tested`) while the scan decoded it into `row`: the residual
    /// conjuncts are run when `eval` would have run them.
    pub fn holds_after(&self, tested: Tested, row: &[Value]) -> Result<bool> {
        let pushed_truth = match tested {
            Tested::Failed => return Ok(false),
            Tested::Unknown => None,
            Tested::Passed => Some(true),
        };
        let mut truth = pushed_truth;
        for test in &self.predicate.conjuncts[self.pushed..] {
            match test.truth(row, &self.env)? {
                Some(false) => return Ok(false),
                None => truth = None,
                Some(true) => {}
            }
        }
        Ok(truth == Some(true))
    }
}

/// [`Value::sql_cmp`], with what a filter compares most (two integers, two
/// reals) done here, without the call and its classing of both operands;
/// the answer is `sql_cmp`'s.
#[inline]
fn sql_cmp(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Integer(x), Value::Integer(y)) => Some(x.cmp(y)),
        (Value::Real(x), Value::Real(y)) => x.partial_cmp(y).or_else(|| a.sql_cmp(b)),
        _ => a.sql_cmp(b),
    }
}

/// The value of column `index` of `row`, with `eval`'s error when the row
/// is too short (a planner bug, never a user's).
fn column_of(row: &[Value], index: usize) -> Result<&Value> {
    row.get(index)
        .ok_or_else(|| crate::error::Error::Invalid(format!("column #{index} is out of the row")))
}

/// Appends the conjuncts of `e` to `out`, AND chains flattened.
fn flatten<'a>(e: &'a Expr, env: &Env<'a>, out: &mut Vec<Test<'a>>) {
    if let Expr::Binary(BinaryOp::And, a, b) = e {
        flatten(a, env, out);
        flatten(b, env, out);
        return;
    }
    out.push(test_of(e, env));
}

/// The column index of `e` if it is a column of the current row.
fn column(e: &Expr) -> Option<usize> {
    match e {
        Expr::Column { depth: 0, index } => Some(*index),
        _ => None,
    }
}

/// The value of `e` if it is the same for every row of the statement: a
/// literal, or a parameter that has a value (one without stays an `Expr`,
/// so that `eval` reports it missing when it is reached).
fn constant<'a>(e: &'a Expr, env: &Env<'a>) -> Option<&'a Value> {
    match e {
        Expr::Literal(v) => Some(v),
        Expr::Param(i) => env.ctx.params.get(*i),
        _ => None,
    }
}

fn test_of<'a>(e: &'a Expr, env: &Env<'a>) -> Test<'a> {
    match e {
        Expr::Binary(op, a, b) => {
            let holds: fn(Ordering) -> bool = match op {
                BinaryOp::Eq => |o| o == Ordering::Equal,
                BinaryOp::NotEq => |o| o != Ordering::Equal,
                BinaryOp::Lt => |o| o == Ordering::Less,
                BinaryOp::LtEq => |o| o != Ordering::Greater,
                BinaryOp::Gt => |o| o == Ordering::Greater,
                BinaryOp::GtEq => |o| o != Ordering::Less,
                _ => return Test::Expr(e),
            };
            if let (Some(column), Some(constant)) = (column(a), constant(b, env)) {
                return Test::Compare {
                    column,
                    constant,
                    constant_first: false,
                    holds,
                };
            }
            if let (Some(constant), Some(column)) = (constant(a, env), column(b)) {
                return Test::Compare {
                    column,
                    constant,
                    constant_first: true,
                    holds,
                };
            }
            Test::Expr(e)
        }
        Expr::Between {
            expr,
            low,
            high,
            negated,
        } => match (column(expr), constant(low, env), constant(high, env)) {
            (Some(column), Some(low), Some(high)) => Test::Between {
                column,
                low,
                high,
                negated: *negated,
            },
            _ => Test::Expr(e),
        },
        _ => Test::Expr(e),
    }
}

#[cfg(test)]
mod tests {
    //! The compiled predicate against the tree-walking evaluator.

    use proptest::prelude::*;

    use super::*;
    use crate::ast::UnaryOp;
    use crate::exec::ExecContext;
    use crate::exec::eval::{NoStore, eval_predicate};

    fn col(index: usize) -> Expr {
        Expr::Column { depth: 0, index }
    }
    fn lit(v: Value) -> Expr {
        Expr::Literal(v)
    }
    fn bin(op: BinaryOp, a: Expr, b: Expr) -> Expr {
        Expr::Binary(op, Box::new(a), Box::new(b))
    }

    fn value() -> impl Strategy<Value = Value> {
        // Few distinct values, so that a row's value often equals a
        // constant (the edges of `<=` and BETWEEN), across types too
        // (1 = 1.0 = TRUE).
        prop_oneof![
            1 => Just(Value::Null),
            4 => (0i64..3).prop_map(Value::Integer),
            1 => Just(Value::Integer(i64::MAX)),
            2 => (0i32..3).prop_map(|x| Value::Real(f64::from(x) / 2.0)),
            1 => Just(Value::Real(-0.0)),
            1 => prop_oneof![Just("a"), Just("1"), Just("")].prop_map(Value::text),
            1 => any::<bool>().prop_map(Value::Boolean),
        ]
    }

    /// Predicates over a row of 3 columns, with the shapes `compile`
    /// specialises and others it leaves to `eval` (arithmetic that can
    /// overflow, OR, NOT, IS), nested in ANDs.
    fn predicate() -> impl Strategy<Value = Expr> {
        let operand = prop_oneof![
            3 => (0usize..3).prop_map(col),
            3 => value().prop_map(lit),
            1 => Just(Expr::Param(0)),
        ];
        let op = prop_oneof![
            Just(BinaryOp::Eq),
            Just(BinaryOp::NotEq),
            Just(BinaryOp::Lt),
            Just(BinaryOp::LtEq),
            Just(BinaryOp::Gt),
            Just(BinaryOp::GtEq),
            Just(BinaryOp::Is),
        ];
        let leaf = prop_oneof![
            (op, operand.clone(), operand.clone()).prop_map(|(op, a, b)| bin(op, a, b)),
            (
                operand.clone(),
                operand.clone(),
                operand.clone(),
                any::<bool>()
            )
                .prop_map(|(expr, low, high, negated)| Expr::Between {
                    expr: Box::new(expr),
                    low: Box::new(low),
                    high: Box::new(high),
                    negated,
                }),
            // An error in the middle of a chain: i64::MAX + 1 overflows.
            (0usize..3).prop_map(|c| bin(
                BinaryOp::Gt,
                bin(BinaryOp::Add, col(c), lit(Value::Integer(1))),
                lit(Value::Integer(0))
            )),
            operand,
        ];
        leaf.prop_recursive(3, 12, 2, |inner| {
            prop_oneof![
                (inner.clone(), inner.clone()).prop_map(|(a, b)| bin(BinaryOp::And, a, b)),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| bin(BinaryOp::Or, a, b)),
                inner.prop_map(|a| Expr::Unary(UnaryOp::Not, Box::new(a))),
            ]
        })
    }

    /// Both ways of testing `e` on `row`, errors compared by their text.
    fn both(e: &Expr, row: &[Value], params: Vec<Value>) -> (String, String) {
        let ctx = ExecContext {
            params,
            ..ExecContext::default()
        };
        let store = NoStore;
        let env = Env::new(&store, &ctx);
        let tree = eval_predicate(e, row, &env).map_err(|e| e.to_string());
        let compiled = Predicate::compile(e, &env)
            .holds(row, &env)
            .map_err(|e| e.to_string());
        (format!("{tree:?}"), format!("{compiled:?}"))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn compiled_predicate_agrees_with_eval(
            e in predicate(),
            row in proptest::collection::vec(value(), 3),
            param in value(),
        ) {
            let (tree, compiled) = both(&e, &row, vec![param]);
            prop_assert_eq!(tree, compiled);
        }
    }

    /// An AND chain of one to four conjuncts, most of them comparisons of
    /// a column with a constant (what a scan tests while decoding), the
    /// others any predicate (which stop the pushed prefix).
    fn conjunction() -> impl Strategy<Value = Expr> {
        let constant = prop_oneof![3 => value().prop_map(lit), 1 => Just(Expr::Param(0))];
        let op = prop_oneof![
            Just(BinaryOp::Eq),
            Just(BinaryOp::NotEq),
            Just(BinaryOp::Lt),
            Just(BinaryOp::LtEq),
            Just(BinaryOp::Gt),
            Just(BinaryOp::GtEq),
        ];
        let conjunct = prop_oneof![
            4 => (op, 0usize..3, constant.clone(), any::<bool>()).prop_map(|(op, c, k, flip)| {
                if flip { bin(op, k, col(c)) } else { bin(op, col(c), k) }
            }),
            2 => (0usize..3, constant.clone(), constant, any::<bool>()).prop_map(
                |(c, low, high, negated)| Expr::Between {
                    expr: Box::new(col(c)),
                    low: Box::new(low),
                    high: Box::new(high),
                    negated,
                }
            ),
            1 => predicate(),
        ];
        proptest::collection::vec(conjunct, 1..5).prop_map(|conjuncts| {
            conjuncts
                .into_iter()
                .reduce(|a, b| bin(BinaryOp::And, a, b))
                .unwrap_or(lit(Value::Boolean(true)))
        })
    }

    /// A join's key: the rows whose key columns hold integers that are
    /// all in `keys` match.
    struct TestProbe {
        columns: Vec<usize>,
        keys: Vec<i64>,
    }

    impl TestProbe {
        fn matches(&self, row: &[Value]) -> bool {
            self.columns
                .iter()
                .all(|&c| matches!(row.get(c), Some(Value::Integer(i)) if self.keys.contains(i)))
        }
    }

    impl KeyProbe for TestProbe {
        fn last_column(&self) -> Option<usize> {
            self.columns.iter().copied().max()
        }
        fn may_match(&mut self, row: &[Value]) -> bool {
            self.matches(row)
        }
    }

    /// A stored value: those of the predicates' tests, and more text.
    fn stored() -> impl Strategy<Value = Value> {
        prop_oneof![3 => value(), 1 => "[a-z]{1,3}".prop_map(|s: String| Value::text(&s))]
    }

    /// A table of three columns, the width the predicates above read.
    fn three_columns() -> crate::catalog::Table {
        let column = |name: &str| crate::catalog::Column {
            name: name.into(),
            ty: crate::value::DataType::Integer,
            nullable: true,
            default: Value::Null,
        };
        crate::catalog::Table {
            name: "t".into(),
            id: 1,
            columns: vec![column("a"), column("b"), column("c")],
            primary_key: Vec::new(),
            indexes: Vec::new(),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]
        /// Lazy decoding with the filter pushed into it gives what decoding
        /// the whole row and then testing it gives: the same answer, the
        /// same error (by its text) on a damaged row or one of the wrong
        /// width, and the same values in the wanted columns of a row that
        /// passes. Values of every type and NULL; rows changed at a byte
        /// or cut short; the buffer holds another row's values before.
        /// (The model wants the tested columns: the planner never prunes
        /// a column its filter reads.)
        #[test]
        fn a_scan_filter_is_the_predicate(
            e in conjunction(),
            values in prop_oneof![
                3 => proptest::collection::vec(stored(), 3),
                1 => proptest::collection::vec(stored(), 2..5),
            ],
            wanted in proptest::collection::vec(any::<bool>(), 3),
            param in value(),
            // Bytes from 0x80 up break a text's UTF-8.
            damage in proptest::option::of(
                (any::<prop::sample::Index>(), prop_oneof![any::<u8>(), 0x80u8..])
            ),
            cut in proptest::option::weighted(0.2, any::<prop::sample::Index>()),
            before in proptest::collection::vec(value(), 0..5),
            key in proptest::option::of((
                proptest::collection::btree_set(0usize..3, 1..3),
                proptest::collection::vec(0i64..3, 0..3),
            )),
        ) {
            use crate::encoding::encode_row;
            use crate::txnstore::{column_reads, decode_table_columns_into, filtered_row};
            let mut bytes = encode_row(&values);
            if let Some((at, byte)) = damage {
                let at = at.index(bytes.len());
                bytes[at] = byte;
            }
            if let Some(cut) = cut {
                bytes.truncate(cut.index(bytes.len() + 1));
            }
            let table = three_columns();
            let ctx = ExecContext {
                params: vec![param],
                ..ExecContext::default()
            };
            let store = NoStore;
            let env = Env::new(&store, &ctx);
            let filter = ScanFilter::new(Predicate::compile(&e, &env), &env, 3);

            // A join's key test, as a hash join hands it over: only with
            // a filter pushed whole, over columns the scan wants.
            let mut probe = key
                .filter(|_| filter.is_pushed_whole())
                .map(|(columns, keys)| TestProbe {
                    columns: columns.into_iter().collect(),
                    keys,
                });
            let key_columns = probe.as_ref().map_or(&[][..], |p| &p.columns[..]);
            let wanted: Vec<bool> = (0..3).map(|c| wanted[c] || key_columns.contains(&c)).collect();
            let model_wanted: Vec<bool> = wanted
                .iter()
                .zip(filter.tested())
                .map(|(w, t)| *w || *t)
                .collect();
            let mut whole = before.clone();
            let model = decode_table_columns_into(&table, &bytes, &model_wanted, &mut whole)
                .and_then(|()| Predicate::compile(&e, &env).holds(&whole, &env))
                .map(|holds| holds && probe.as_ref().is_none_or(|p| p.matches(&whole)));

            let key_column = probe.as_ref().and_then(|p| p.last_column());
            let reads = column_reads(&wanted, filter.tested(), key_column, 3);
            let mut lazy_row = before;
            let key = probe.as_mut().map(|p| p as &mut dyn KeyProbe);
            let lazy = filtered_row(&table, &bytes, &reads, &filter, key, &mut lazy_row);
            prop_assert_eq!(format!("{lazy:?}"), format!("{model:?}"), "{:?} on {:?}", e, bytes);
            if matches!(lazy, Ok(true)) {
                for (c, w) in model_wanted.iter().enumerate() {
                    if *w {
                        prop_assert_eq!(format!("{:?}", lazy_row[c]), format!("{:?}", whole[c]));
                    }
                }
            }
        }
    }

    #[test]
    fn only_a_prefix_of_column_tests_is_pushed() {
        let ctx = ExecContext::default();
        let store = NoStore;
        let env = Env::new(&store, &ctx);
        let gt = |c| bin(BinaryOp::Gt, col(c), lit(Value::Integer(1)));
        let sum = bin(
            BinaryOp::Gt,
            bin(BinaryOp::Add, col(0), col(1)),
            lit(Value::Integer(0)),
        );
        // q6's shape: every conjunct is pushed, tested by column.
        let e = bin(BinaryOp::And, bin(BinaryOp::And, gt(2), gt(0)), gt(2));
        let f = ScanFilter::new(Predicate::compile(&e, &env), &env, 3);
        assert_eq!(f.pushed, 3);
        assert_eq!(f.by_column, [(0, 1), (2, 0), (2, 2)]);
        assert_eq!(f.tested(), [true, false, true]);
        // An expression stops the prefix: what follows it stays residual.
        let e = bin(BinaryOp::And, bin(BinaryOp::And, gt(1), sum), gt(2));
        let f = ScanFilter::new(Predicate::compile(&e, &env), &env, 3);
        assert_eq!(f.pushed, 1);
        assert_eq!(f.tested(), [false, true, false]);
        // So does a column past the row's width.
        let e = bin(BinaryOp::And, gt(3), gt(0));
        let f = ScanFilter::new(Predicate::compile(&e, &env), &env, 3);
        assert_eq!(f.pushed, 0);
        assert_eq!(f.tested(), [false, false, false]);
    }

    #[test]
    fn comparisons_with_a_column_are_specialised() {
        let ctx = ExecContext::default();
        let store = NoStore;
        let env = Env::new(&store, &ctx);
        let e = bin(
            BinaryOp::And,
            bin(
                BinaryOp::And,
                bin(BinaryOp::GtEq, col(0), lit(Value::Integer(730))),
                bin(BinaryOp::Lt, lit(Value::Integer(5)), col(1)),
            ),
            Expr::Between {
                expr: Box::new(col(2)),
                low: Box::new(lit(Value::Real(0.05))),
                high: Box::new(lit(Value::Real(0.07))),
                negated: false,
            },
        );
        let p = Predicate::compile(&e, &env);
        assert_eq!(p.conjuncts.len(), 3);
        assert!(matches!(
            p.conjuncts[0],
            Test::Compare {
                column: 0,
                constant_first: false,
                ..
            }
        ));
        assert!(matches!(
            p.conjuncts[1],
            Test::Compare {
                column: 1,
                constant_first: true,
                ..
            }
        ));
        assert!(matches!(p.conjuncts[2], Test::Between { column: 2, .. }));
        let row = [Value::Integer(800), Value::Integer(6), Value::Real(0.06)];
        assert!(p.holds(&row, &env).unwrap());
        let row = [Value::Integer(800), Value::Null, Value::Real(0.06)];
        assert!(!p.holds(&row, &env).unwrap());
    }

    #[test]
    fn between_and_comparisons_include_their_edges() {
        let between = |negated| Expr::Between {
            expr: Box::new(col(0)),
            low: Box::new(lit(Value::Integer(1))),
            high: Box::new(lit(Value::Real(2.0))),
            negated,
        };
        for v in [
            Value::Integer(1),
            Value::Real(1.0),
            Value::Boolean(true),
            Value::Integer(2),
            Value::Real(2.0),
            Value::Integer(0),
            Value::Integer(3),
            Value::Null,
        ] {
            for e in [
                between(false),
                between(true),
                bin(BinaryOp::LtEq, col(0), lit(Value::Integer(1))),
                bin(BinaryOp::GtEq, lit(Value::Integer(1)), col(0)),
                bin(BinaryOp::Lt, lit(Value::Integer(1)), col(0)),
            ] {
                let (tree, compiled) = both(&e, std::slice::from_ref(&v), Vec::new());
                assert_eq!(tree, compiled, "{e:?} on {v:?}");
            }
        }
    }

    #[test]
    fn a_missing_parameter_is_the_same_error() {
        let e = bin(BinaryOp::Eq, col(0), Expr::Param(3));
        let (tree, compiled) = both(&e, &[Value::Integer(1)], Vec::new());
        assert!(tree.contains("parameter"), "{tree}");
        assert_eq!(tree, compiled);
    }

    #[test]
    fn a_false_conjunct_stops_the_chain_before_an_error() {
        // FALSE AND (i64::MAX + 1 > 0): eval never reaches the overflow.
        let overflow = bin(
            BinaryOp::Gt,
            bin(BinaryOp::Add, col(0), lit(Value::Integer(1))),
            lit(Value::Integer(0)),
        );
        let e = bin(
            BinaryOp::And,
            bin(BinaryOp::Lt, col(0), lit(Value::Integer(0))),
            overflow.clone(),
        );
        let (tree, compiled) = both(&e, &[Value::Integer(i64::MAX)], Vec::new());
        assert_eq!(tree, "Ok(false)");
        assert_eq!(tree, compiled);
        // NULL AND overflow: the overflow is reached, and fails both ways.
        let e = bin(
            BinaryOp::And,
            bin(BinaryOp::Lt, lit(Value::Null), col(0)),
            overflow,
        );
        let (tree, compiled) = both(&e, &[Value::Integer(i64::MAX)], Vec::new());
        assert!(tree.starts_with("Err"), "{tree}");
        assert_eq!(tree, compiled);
    }
}
