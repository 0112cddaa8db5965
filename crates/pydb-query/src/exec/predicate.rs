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
use crate::error::Result;
use crate::exec::eval::{Env, eval};
use crate::plan::Expr;
use crate::store::IntegerBound;
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

    /// Integer ranges that a row must meet to pass: for each conjunct
    /// `column op integer` (`=`, `<`, `<=`, `>`, `>=`, either way round)
    /// or `column BETWEEN integer AND integer` among the leading conjuncts
    /// that cannot fail (before the first evaluated by `eval`), the
    /// integers of the column for which it holds; one bound a column (the
    /// ranges of its conjuncts intersected). A row whose column holds an
    /// integer outside its bound has a FALSE conjunct, and no conjunct
    /// before it could have failed, so the predicate is FALSE for it and
    /// testing it gives no error: a scan may drop it unseen (see
    /// [`IntegerBound`]).
    pub fn integer_bounds(&self) -> Vec<IntegerBound> {
        let mut bounds: Vec<IntegerBound> = Vec::new();
        for test in &self.conjuncts {
            let (column, low, high) = match *test {
                Test::Compare {
                    column,
                    constant: &Value::Integer(c),
                    constant_first,
                    holds,
                } => {
                    // The orderings of `value` against `c` that hold.
                    let holds_for =
                        |o: Ordering| holds(if constant_first { o.reverse() } else { o });
                    let (less, equal, greater) = (
                        holds_for(Ordering::Less),
                        holds_for(Ordering::Equal),
                        holds_for(Ordering::Greater),
                    );
                    let range = match (less, equal, greater) {
                        // `<>`: not a range.
                        (true, _, true) => continue,
                        (true, true, false) => Some((i64::MIN, c)),
                        (true, false, false) => c.checked_sub(1).map(|high| (i64::MIN, high)),
                        (false, true, true) => Some((c, i64::MAX)),
                        (false, false, true) => c.checked_add(1).map(|low| (low, i64::MAX)),
                        (false, true, false) => Some((c, c)),
                        (false, false, false) => None,
                    };
                    // `None`: no integer (`< i64::MIN`, say).
                    let (low, high) = range.unwrap_or((i64::MAX, i64::MIN));
                    (column, low, high)
                }
                Test::Between {
                    column,
                    low: &Value::Integer(low),
                    high: &Value::Integer(high),
                    negated: false,
                } => (column, low, high),
                Test::Compare { .. } | Test::Between { .. } => continue,
                Test::Expr(_) => break,
            };
            match bounds.iter_mut().find(|b| b.column == column) {
                Some(b) => {
                    b.low = b.low.max(low);
                    b.high = b.high.min(high);
                }
                None => bounds.push(IntegerBound { column, low, high }),
            }
        }
        bounds
    }

    /// Whether testing the predicate can never fail: every conjunct is a
    /// comparison with a constant (no `eval`), which has an answer for
    /// any values. A row may then be dropped before the predicate is
    /// tested without hiding an error it would have raised.
    pub fn cannot_fail(&self) -> bool {
        !self.conjuncts.iter().any(|t| matches!(t, Test::Expr(_)))
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
        Ok(match *self {
            Test::Compare {
                column,
                constant,
                constant_first,
                holds,
            } => {
                let value = column_of(row, column)?;
                let order = if constant_first {
                    sql_cmp(constant, value)
                } else {
                    sql_cmp(value, constant)
                };
                order.map(holds)
            }
            Test::Between {
                column,
                low,
                high,
                negated,
            } => {
                let value = column_of(row, column)?;
                let ge = sql_cmp(value, low).map(|o| o != Ordering::Less);
                let le = sql_cmp(value, high).map(|o| o != Ordering::Greater);
                let r = match (ge, le) {
                    (Some(false), _) | (_, Some(false)) => Some(false),
                    (Some(true), Some(true)) => Some(true),
                    _ => None,
                };
                if negated { r.map(|b| !b) } else { r }
            }
            Test::Expr(e) => eval(e, row, env)?.truth(),
        })
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

    /// The six comparison operators (`=`, `<>`, `<`, `<=`, `>`, `>=`).
    fn comparison() -> impl Strategy<Value = BinaryOp> {
        prop_oneof![
            Just(BinaryOp::Eq),
            Just(BinaryOp::NotEq),
            Just(BinaryOp::Lt),
            Just(BinaryOp::LtEq),
            Just(BinaryOp::Gt),
            Just(BinaryOp::GtEq),
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
        let op = prop_oneof![6 => comparison(), 1 => Just(BinaryOp::Is)];
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

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]
        /// A scan drops a row by the predicate's integer bounds only when
        /// the predicate is FALSE for it (not NULL, not an error: the
        /// filter would have returned the error).
        #[test]
        fn integer_bounds_reject_only_rows_the_predicate_rejects(
            e in proptest::collection::vec(prop_oneof![
                predicate(),
                // Integer comparisons and BETWEENs, either way round.
                (
                    comparison(),
                    0usize..3,
                    prop_oneof![-2i64..4, Just(i64::MIN), Just(i64::MAX)],
                    any::<bool>(),
                )
                    .prop_map(|(op, c, i, flip)| if flip {
                        bin(op, lit(Value::Integer(i)), col(c))
                    } else {
                        bin(op, col(c), lit(Value::Integer(i)))
                    }),
                (0usize..3, -2i64..4, -2i64..4, any::<bool>()).prop_map(|(c, low, high, negated)| {
                    Expr::Between {
                        expr: Box::new(col(c)),
                        low: Box::new(lit(Value::Integer(low))),
                        high: Box::new(lit(Value::Integer(high))),
                        negated,
                    }
                }),
            ], 1..5)
                .prop_map(|conjuncts| conjuncts
                    .into_iter()
                    .reduce(|a, b| bin(BinaryOp::And, a, b))
                    .unwrap()),
            row in proptest::collection::vec(prop_oneof![
                value(),
                (-2i64..4).prop_map(Value::Integer),
                Just(Value::Integer(i64::MIN)),
                Just(Value::Integer(i64::MAX - 1)),
            ], 3),
            param in prop_oneof![value(), Just(Value::Integer(i64::MIN))],
        ) {
            let ctx = ExecContext { params: vec![param], ..ExecContext::default() };
            let store = NoStore;
            let env = Env::new(&store, &ctx);
            let bounds = Predicate::compile(&e, &env).integer_bounds();
            if bounds.iter().any(|b| b.rejects(&row)) {
                let tree = eval_predicate(&e, &row, &env).map_err(|e| e.to_string());
                prop_assert_eq!(tree, Ok(false), "{:?} rejected by {:?}", row, bounds);
            }
        }
    }

    #[test]
    fn integer_bounds_are_the_leading_integer_comparisons() {
        let ctx = ExecContext::default();
        let store = NoStore;
        let env = Env::new(&store, &ctx);
        let int = |i| lit(Value::Integer(i));
        // q6's shape: two bounds on one column, a BETWEEN of reals (not
        // an integer bound), one more column; `<>` and the conjuncts
        // after an `eval` one give none.
        let e = [
            bin(BinaryOp::GtEq, col(2), int(730)),
            bin(BinaryOp::Lt, col(2), int(1095)),
            Expr::Between {
                expr: Box::new(col(1)),
                low: Box::new(lit(Value::Real(0.05))),
                high: Box::new(lit(Value::Real(0.07))),
                negated: false,
            },
            bin(BinaryOp::Gt, int(24), col(0)),
            bin(BinaryOp::NotEq, col(1), int(3)),
            bin(BinaryOp::Gt, bin(BinaryOp::Add, col(1), int(1)), int(0)),
            bin(BinaryOp::Eq, col(1), int(7)),
        ]
        .into_iter()
        .reduce(|a, b| bin(BinaryOp::And, a, b))
        .unwrap();
        let bounds = Predicate::compile(&e, &env).integer_bounds();
        assert_eq!(
            bounds,
            [
                IntegerBound {
                    column: 2,
                    low: 730,
                    high: 1094
                },
                IntegerBound {
                    column: 0,
                    low: i64::MIN,
                    high: 23
                },
            ]
        );
        let below = bin(BinaryOp::Lt, col(0), int(i64::MIN));
        assert_eq!(
            Predicate::compile(&below, &env).integer_bounds(),
            [IntegerBound {
                column: 0,
                low: i64::MAX,
                high: i64::MIN
            }]
        );
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
