//! Scalar expressions compiled once per execution.
//!
//! An aggregation evaluates its GROUP BY keys and the arguments of its
//! aggregates for every input row: q1 of the SQL bench computes
//! `l_extendedprice * (1 - l_discount) * (1 + l_tax)` and seven other
//! values for each of 60,000 line items. Walking the expression tree for
//! that ([`eval`]) costs, per node, a dispatch over every kind of
//! expression, and each column it reads is *copied* out of the row (for
//! text, a shared reference count touched twice). [`Scalar::compile`]
//! keeps only what the row loop needs, as [`super::predicate`] does for
//! filters:
//!
//! - a column of the current row and a constant (a literal, or a statement
//!   parameter that has a value) are *borrowed* where they stand;
//! - `+`, `-`, `*`, `/`, `%` and unary `-` and `+` over compiled operands
//!   call the same [`Value::arith`] and [`Value::neg`] as `eval`;
//! - anything else is evaluated by [`eval`], as before.
//!
//! The invariant: [`Scalar::value`] gives exactly what [`eval`] gives for
//! every row, and the same error when there is one. Operands are evaluated
//! left to right, as `eval` does, so the first error met is the same
//! error; the tests below compare both on random expressions and rows
//! (NULLs, mixed types, integer overflow, division by zero).

use std::borrow::Cow;

use crate::ast::{BinaryOp, UnaryOp};
use crate::error::{Error, Result};
use crate::exec::eval::{Env, eval};
use crate::plan::Expr;
use crate::value::{ArithOp, Value};

/// An expression ready to be evaluated on rows (see the module docs).
#[derive(Debug)]
pub enum Scalar<'a> {
    /// Column `.0` of the current row.
    Column(usize),
    /// The same value for every row.
    Constant(&'a Value),
    /// `left op right`.
    Arith(ArithOp, Box<Scalar<'a>>, Box<Scalar<'a>>),
    /// Unary minus.
    Neg(Box<Scalar<'a>>),
    /// Any other expression, evaluated by [`eval`].
    Expr(&'a Expr),
}

impl<'a> Scalar<'a> {
    /// Compiles `e` for rows of the operator's input; `env` supplies the
    /// statement's parameters, which are constants for the whole run.
    pub fn compile(e: &'a Expr, env: &Env<'a>) -> Scalar<'a> {
        match e {
            Expr::Column { depth: 0, index } => Scalar::Column(*index),
            Expr::Literal(v) => Scalar::Constant(v),
            // A parameter without a value stays an `Expr`, so that `eval`
            // reports it missing when (and only when) it is reached.
            Expr::Param(i) => match env.ctx.params.get(*i) {
                Some(v) => Scalar::Constant(v),
                None => Scalar::Expr(e),
            },
            Expr::Binary(op, a, b) => {
                let op = match op {
                    BinaryOp::Add => ArithOp::Add,
                    BinaryOp::Sub => ArithOp::Sub,
                    BinaryOp::Mul => ArithOp::Mul,
                    BinaryOp::Div => ArithOp::Div,
                    BinaryOp::Mod => ArithOp::Rem,
                    _ => return Scalar::Expr(e),
                };
                Scalar::Arith(
                    op,
                    Box::new(Scalar::compile(a, env)),
                    Box::new(Scalar::compile(b, env)),
                )
            }
            Expr::Unary(UnaryOp::Neg, x) => Scalar::Neg(Box::new(Scalar::compile(x, env))),
            // `+x` is `x` itself in `eval` (no conversion to a number).
            Expr::Unary(UnaryOp::Plus, x) => Scalar::compile(x, env),
            _ => Scalar::Expr(e),
        }
    }

    /// The value of the expression for `row`, borrowed from the row or the
    /// statement when it is a column or a constant.
    pub fn value<'r>(&'r self, row: &'r [Value], env: &Env<'_>) -> Result<Cow<'r, Value>> {
        Ok(match self {
            Scalar::Column(index) => match row.get(*index) {
                Some(v) => Cow::Borrowed(v),
                None => return Err(Error::Invalid(format!("column #{index} is out of the row"))),
            },
            Scalar::Constant(v) => Cow::Borrowed(*v),
            Scalar::Arith(op, a, b) => {
                let l = a.value(row, env)?;
                let r = b.value(row, env)?;
                Cow::Owned(l.arith(*op, &r)?)
            }
            Scalar::Neg(x) => Cow::Owned(x.value(row, env)?.neg()?),
            Scalar::Expr(e) => Cow::Owned(eval(e, row, env)?),
        })
    }
}

#[cfg(test)]
mod tests {
    //! The compiled expression against the tree-walking evaluator.

    use proptest::prelude::*;

    use super::*;
    use crate::exec::ExecContext;
    use crate::exec::eval::NoStore;

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
        // Edges of integer arithmetic (overflow, division by zero, MIN/-1),
        // reals, numeric and non-numeric text, booleans and NULL.
        prop_oneof![
            1 => Just(Value::Null),
            4 => (-3i64..4).prop_map(Value::Integer),
            1 => prop_oneof![Just(i64::MAX), Just(i64::MIN), Just(-1)].prop_map(Value::Integer),
            2 => (-2i32..3).prop_map(|x| Value::Real(f64::from(x) / 2.0)),
            1 => prop_oneof![Just(f64::MAX), Just(-0.0), Just(1e300)].prop_map(Value::Real),
            1 => prop_oneof![Just("a"), Just("12"), Just("1.5x"), Just("")].prop_map(Value::text),
            1 => any::<bool>().prop_map(Value::Boolean),
        ]
    }

    /// Expressions over a row of 3 columns: the shapes `compile`
    /// specialises (arithmetic, negation, columns, constants, parameters,
    /// one of them missing) nested with shapes it leaves to `eval`
    /// (comparisons, CASE-free functions of values, concatenation).
    fn expression() -> impl Strategy<Value = Expr> {
        let leaf = prop_oneof![
            3 => (0usize..4).prop_map(col),
            3 => value().prop_map(lit),
            1 => Just(Expr::Param(0)),
            1 => Just(Expr::Param(1)),
        ];
        let op = prop_oneof![
            4 => Just(BinaryOp::Add),
            4 => Just(BinaryOp::Sub),
            4 => Just(BinaryOp::Mul),
            3 => Just(BinaryOp::Div),
            2 => Just(BinaryOp::Mod),
            1 => Just(BinaryOp::Lt),
            1 => Just(BinaryOp::Concat),
            1 => Just(BinaryOp::And),
        ];
        leaf.prop_recursive(4, 16, 2, move |inner| {
            prop_oneof![
                4 => (op.clone(), inner.clone(), inner.clone()).prop_map(|(op, a, b)| bin(op, a, b)),
                1 => inner.clone().prop_map(|a| Expr::Unary(UnaryOp::Neg, Box::new(a))),
                1 => inner.clone().prop_map(|a| Expr::Unary(UnaryOp::Plus, Box::new(a))),
                1 => inner.prop_map(|a| Expr::IsNull(Box::new(a), false)),
            ]
        })
    }

    /// Both ways of evaluating `e` on `row`, errors compared by their text
    /// and values by their debug form (so `1` and `1.0` differ).
    fn both(e: &Expr, row: &[Value], params: Vec<Value>) -> (String, String) {
        let ctx = ExecContext {
            params,
            ..ExecContext::default()
        };
        let store = NoStore;
        let env = Env::new(&store, &ctx);
        let tree = eval(e, row, &env).map_err(|e| e.to_string());
        let compiled = Scalar::compile(e, &env)
            .value(row, &env)
            .map(Cow::into_owned)
            .map_err(|e| e.to_string());
        (format!("{tree:?}"), format!("{compiled:?}"))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]
        #[test]
        fn compiled_expression_agrees_with_eval(
            e in expression(),
            row in proptest::collection::vec(value(), 3),
            param in value(),
        ) {
            // Column 3 is out of the row and parameter 1 has no value:
            // both must fail the same way where they are reached.
            let (tree, compiled) = both(&e, &row, vec![param]);
            prop_assert_eq!(tree, compiled);
        }
    }

    #[test]
    fn q1_arguments_are_compiled_and_computed() {
        let ctx = ExecContext::default();
        let store = NoStore;
        let env = Env::new(&store, &ctx);
        // l_extendedprice * (1 - l_discount) * (1 + l_tax)
        let e = bin(
            BinaryOp::Mul,
            bin(
                BinaryOp::Mul,
                col(0),
                bin(BinaryOp::Sub, lit(Value::Integer(1)), col(1)),
            ),
            bin(BinaryOp::Add, lit(Value::Integer(1)), col(2)),
        );
        let s = Scalar::compile(&e, &env);
        assert!(
            !format!("{s:?}").contains("Expr("),
            "q1's argument fell back to eval: {s:?}"
        );
        let row = [Value::Real(100.0), Value::Real(0.5), Value::Real(1.0)];
        assert_eq!(
            s.value(&row, &env).unwrap().into_owned(),
            Value::Real(100.0)
        );
        let row = [Value::Real(100.0), Value::Null, Value::Real(1.0)];
        assert_eq!(s.value(&row, &env).unwrap().into_owned(), Value::Null);
    }

    #[test]
    fn overflow_and_division_by_zero_match_eval() {
        for e in [
            bin(BinaryOp::Add, col(0), lit(Value::Integer(1))),
            bin(BinaryOp::Mul, col(0), lit(Value::Integer(2))),
            bin(BinaryOp::Div, col(0), lit(Value::Integer(0))),
            bin(BinaryOp::Mod, col(0), lit(Value::Integer(0))),
            Expr::Unary(UnaryOp::Neg, Box::new(col(1))),
            bin(BinaryOp::Div, col(1), lit(Value::Integer(-1))),
        ] {
            let row = [Value::Integer(i64::MAX), Value::Integer(i64::MIN)];
            let (tree, compiled) = both(&e, &row, Vec::new());
            assert_eq!(tree, compiled, "{e:?}");
        }
        let (tree, _) = both(
            &bin(BinaryOp::Add, col(0), lit(Value::Integer(1))),
            &[Value::Integer(i64::MAX)],
            Vec::new(),
        );
        assert!(tree.starts_with("Err"), "{tree}");
    }
}
