//! Estimates against known distributions: the estimated rows are compared
//! with the rows that really match, counted from the same data.

use std::ops::Bound;
use std::sync::Arc;

use super::*;
use crate::catalog::{Column, Index};
use crate::plan::stats::collect;
use crate::value::Row;

fn table(id: u64, columns: &[(&str, DataType)], pk: Vec<usize>) -> Arc<Table> {
    Arc::new(Table {
        name: format!("t{id}"),
        id,
        columns: columns
            .iter()
            .map(|(name, ty)| Column {
                name: (*name).into(),
                ty: *ty,
                nullable: true,
                default: Value::Null,
            })
            .collect(),
        primary_key: pk,
        indexes: vec![],
    })
}

fn int(i: i64) -> Expr {
    Expr::Literal(Value::Integer(i))
}

fn cmp(op: BinaryOp, col: usize, v: Expr) -> Expr {
    Expr::Binary(op, Box::new(Expr::col(col)), Box::new(v))
}

fn filter(input: Plan, predicate: Expr) -> Plan {
    Plan::Filter {
        input: Box::new(input),
        predicate,
    }
}

/// Column 0: 500 ones, 100 NULLs, 2..=401 once each (skewed, 10% NULL);
/// column 1: i % 10; column 2: text "k0000".."k0999".
fn skewed_rows() -> Vec<Row> {
    let mut first: Vec<Value> = Vec::new();
    first.extend((0..500).map(|_| Value::Integer(1)));
    first.extend((0..100).map(|_| Value::Null));
    first.extend((2..=401).map(Value::Integer));
    first
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            vec![
                v,
                Value::Integer(i as i64 % 10),
                Value::text(&format!("k{i:04}")),
            ]
        })
        .collect()
}

fn skewed() -> (Arc<Table>, Vec<Row>, Estimator<'static>) {
    let t = table(
        1,
        &[
            ("a", DataType::Integer),
            ("b", DataType::Integer),
            ("c", DataType::Text),
        ],
        vec![],
    );
    let rows = skewed_rows();
    let est = Estimator::with_stats([(1, collect(rows.clone(), 3))]);
    (t, rows, est)
}

/// The rows of `rows` for which `predicate` holds, really.
fn actual(rows: &[Row], predicate: &Expr) -> f64 {
    let store = crate::exec::eval::NoStore;
    let ctx = crate::exec::ExecContext::default();
    let env = crate::exec::eval::Env::new(&store, &ctx);
    rows.iter()
        .filter(|r| crate::exec::eval::eval_predicate(predicate, r, &env).unwrap())
        .count() as f64
}

#[test]
fn filters_on_a_skewed_column_are_estimated_within_a_few_percent() {
    let (t, rows, est) = skewed();
    let scan = Plan::Scan {
        table: t,
        columns: None,
    };
    let predicates = [
        cmp(BinaryOp::Eq, 0, int(1)),
        cmp(BinaryOp::NotEq, 0, int(1)),
        cmp(BinaryOp::Lt, 0, int(101)),
        cmp(BinaryOp::GtEq, 0, int(201)),
        cmp(BinaryOp::Gt, 0, int(0)),
        Expr::IsNull(Box::new(Expr::col(0)), false),
        Expr::IsNull(Box::new(Expr::col(0)), true),
        Expr::InList {
            expr: Box::new(Expr::col(0)),
            list: vec![int(1), int(7), int(9)],
            negated: false,
        },
        Expr::Between {
            expr: Box::new(Expr::col(0)),
            low: Box::new(int(50)),
            high: Box::new(int(149)),
            negated: false,
        },
        cmp(BinaryOp::Eq, 1, int(3)),
        cmp(BinaryOp::Lt, 1, int(3)),
        cmp(BinaryOp::Lt, 2, Expr::Literal(Value::text("k0500"))),
        cmp(BinaryOp::GtEq, 2, Expr::Literal(Value::text("k0250"))),
        Expr::Binary(
            BinaryOp::And,
            Box::new(cmp(BinaryOp::Eq, 1, int(3))),
            Box::new(cmp(BinaryOp::Lt, 2, Expr::Literal(Value::text("k0500")))),
        ),
        Expr::Binary(
            BinaryOp::Or,
            Box::new(cmp(BinaryOp::Eq, 1, int(3))),
            Box::new(cmp(BinaryOp::Eq, 1, int(4))),
        ),
    ];
    for p in predicates {
        let estimated = est.estimate(&filter(scan.clone(), p.clone())).rows;
        let real = actual(&rows, &p);
        let ratio = estimated / real;
        assert!(
            (0.9..=1.1).contains(&ratio),
            "{p:?}: estimated {estimated}, actual {real}"
        );
    }
}

#[test]
fn an_equality_off_the_mcvs_spreads_the_rest_over_the_other_values() {
    let (t, _, est) = skewed();
    let scan = Plan::Scan {
        table: t,
        columns: None,
    };
    // (1 - 0.5 - 0.1) / (401 - 1) = 0.001.
    let s = est.selectivity(&scan, &cmp(BinaryOp::Eq, 0, int(7)));
    assert!((s - 0.001).abs() < 1e-9, "{s}");
    assert_eq!(est.selectivity(&scan, &cmp(BinaryOp::Eq, 0, int(1))), 0.5);
    // Through a projection that moves the column.
    let project = Plan::Project {
        input: Box::new(scan),
        exprs: vec![Expr::col(2), Expr::col(0)],
    };
    assert_eq!(
        est.selectivity(&project, &cmp(BinaryOp::Eq, 1, int(1))),
        0.5
    );
}

#[test]
fn without_statistics_the_defaults_apply() {
    let t = table(
        2,
        &[("a", DataType::Integer), ("b", DataType::Integer)],
        vec![0],
    );
    let est = Estimator::without_stats();
    let scan = Plan::Scan {
        table: t,
        columns: None,
    };
    assert_eq!(est.estimate(&scan).rows, DEFAULT_TABLE_ROWS);
    assert_eq!(
        est.selectivity(&scan, &cmp(BinaryOp::Eq, 1, int(1))),
        DEFAULT_EQ_SEL
    );
    assert_eq!(
        est.selectivity(&scan, &cmp(BinaryOp::Gt, 1, int(1))),
        DEFAULT_RANGE_SEL
    );
    // The primary key is unique: one row.
    assert_eq!(
        est.selectivity(&scan, &cmp(BinaryOp::Eq, 0, int(1))),
        1.0 / DEFAULT_TABLE_ROWS
    );
}

/// t3(x) holds 0..1000 once each; t4(y, z) holds 10000 rows, y = i % 1000
/// and z = i % 7.
fn two_tables() -> (Arc<Table>, Arc<Table>, Estimator<'static>) {
    let t3 = table(3, &[("x", DataType::Integer)], vec![0]);
    let t4 = table(
        4,
        &[("y", DataType::Integer), ("z", DataType::Integer)],
        vec![],
    );
    let r3 = (0..1000).map(|i| vec![Value::Integer(i)]);
    let r4 = (0..10_000).map(|i| vec![Value::Integer(i % 1000), Value::Integer(i % 7)]);
    let est = Estimator::with_stats([(3, collect(r3, 1)), (4, collect(r4, 2))]);
    (t3, t4, est)
}

#[test]
fn equi_joins_use_the_larger_distinct_count() {
    let (t3, t4, est) = two_tables();
    let hash = Plan::HashJoin {
        left: Box::new(Plan::Scan {
            table: t4.clone(),
            columns: None,
        }),
        right: Box::new(Plan::Scan {
            table: t3.clone(),
            columns: None,
        }),
        kind: JoinKind::Inner,
        left_keys: vec![Expr::col(0)],
        right_keys: vec![Expr::col(0)],
        residual: None,
    };
    // Every t4 row finds its one t3 row.
    assert_eq!(est.estimate(&hash).rows, 10_000.0);
    let nested = Plan::Join {
        left: Box::new(Plan::Scan {
            table: t3.clone(),
            columns: None,
        }),
        right: Box::new(Plan::Scan {
            table: t4.clone(),
            columns: None,
        }),
        kind: JoinKind::Inner,
        on: Some(cmp(BinaryOp::Eq, 1, Expr::col(0))),
    };
    assert_eq!(est.estimate(&nested).rows, 10_000.0);
    // A filter on one side keeps its share of the pairs: x < 10 keeps 10
    // rows, which match 100 rows of t4.
    let small = filter(
        Plan::Scan {
            table: t3,
            columns: None,
        },
        cmp(BinaryOp::Lt, 0, int(10)),
    );
    let hash = Plan::HashJoin {
        left: Box::new(Plan::Scan {
            table: t4,
            columns: None,
        }),
        right: Box::new(small),
        kind: JoinKind::Inner,
        left_keys: vec![Expr::col(0)],
        right_keys: vec![Expr::col(0)],
        residual: None,
    };
    let rows = est.estimate(&hash).rows;
    assert!((50.0..=200.0).contains(&rows), "{rows}");
}

#[test]
fn groups_come_from_the_distinct_counts_capped_by_the_input() {
    let (_, t4, est) = two_tables();
    let scan = Plan::Scan {
        table: t4,
        columns: None,
    };
    let agg = |group_by: Vec<Expr>| Plan::Aggregate {
        input: Box::new(scan.clone()),
        group_by,
        aggs: vec![],
    };
    assert_eq!(est.estimate(&agg(vec![Expr::col(1)])).rows, 7.0);
    assert_eq!(est.estimate(&agg(vec![Expr::col(0)])).rows, 1000.0);
    // 1000 x 7 = 7000 combinations; really 7000 too (1000 and 7 coprime).
    assert_eq!(
        est.estimate(&agg(vec![Expr::col(0), Expr::col(1)])).rows,
        7000.0
    );
    assert_eq!(est.estimate(&agg(vec![])).rows, 1.0);
    let distinct = Plan::Distinct {
        input: Box::new(Plan::Project {
            input: Box::new(scan),
            exprs: vec![Expr::col(1)],
        }),
        key_width: 1,
    };
    assert_eq!(est.estimate(&distinct).rows, 7.0);
}

#[test]
fn an_index_wins_for_few_rows_and_a_scan_for_many() {
    let (_, t4, est) = two_tables();
    let mut t = (*t4).clone();
    t.indexes.push(Index {
        name: "t4_y".into(),
        id: 9,
        table: t.name.clone(),
        columns: vec![0],
        unique: false,
    });
    let t = Arc::new(t);
    let index = t.indexes[0].clone();
    let index_scan = |start: Bound<Vec<Value>>, end: Bound<Vec<Value>>| Plan::IndexScan {
        table: t.clone(),
        index: index.clone(),
        range: IndexRange { start, end },
        reverse: false,
    };
    let seq = |p: Expr| {
        est.estimate(&filter(
            Plan::Scan {
                table: t.clone(),
                columns: None,
            },
            p,
        ))
    };
    // y = 5: 10 rows.
    let point = est.estimate(&index_scan(
        Bound::Included(vec![Value::Integer(5)]),
        Bound::Included(vec![Value::Integer(5)]),
    ));
    assert_eq!(point.rows, 10.0);
    let scanned = seq(cmp(BinaryOp::Eq, 0, int(5)));
    assert_eq!(scanned.rows, 10.0);
    assert!(point.cost < scanned.cost, "{point:?} vs {scanned:?}");
    // y < 900: 90% of the table.
    let wide = est.estimate(&index_scan(
        Bound::Unbounded,
        Bound::Excluded(vec![Value::Integer(900)]),
    ));
    assert!((8500.0..=9500.0).contains(&wide.rows), "{wide:?}");
    let scanned = seq(cmp(BinaryOp::Lt, 0, int(900)));
    assert!(scanned.cost < wide.cost, "{scanned:?} vs {wide:?}");
}

#[test]
fn sorting_costs_more_than_a_top_n_and_hashing_less_than_nested_loops() {
    let (t3, t4, est) = two_tables();
    let keys = vec![crate::plan::SortKey {
        expr: Expr::col(0),
        desc: false,
        nulls_first: false,
    }];
    let scan = Plan::Scan {
        table: t4.clone(),
        columns: None,
    };
    let sort = est.estimate(&Plan::Sort {
        input: Box::new(scan.clone()),
        keys: keys.clone(),
    });
    let top = est.estimate(&Plan::TopN {
        input: Box::new(scan),
        keys,
        limit: 10,
        offset: 0,
    });
    assert_eq!(top.rows, 10.0);
    assert!(top.cost < sort.cost);
    let hash = est.estimate(&Plan::HashJoin {
        left: Box::new(Plan::Scan {
            table: t4.clone(),
            columns: None,
        }),
        right: Box::new(Plan::Scan {
            table: t3.clone(),
            columns: None,
        }),
        kind: JoinKind::Inner,
        left_keys: vec![Expr::col(0)],
        right_keys: vec![Expr::col(0)],
        residual: None,
    });
    let nested = est.estimate(&Plan::Join {
        left: Box::new(Plan::Scan {
            table: t4,
            columns: None,
        }),
        right: Box::new(Plan::Scan {
            table: t3,
            columns: None,
        }),
        kind: JoinKind::Inner,
        on: Some(cmp(BinaryOp::Eq, 0, Expr::col(2))),
    });
    assert_eq!(hash.rows, nested.rows);
    assert!(hash.cost < nested.cost);
}

#[test]
fn two_bounds_on_one_column_are_one_range() {
    // `a >= 50 AND a < 150` is a range, as BETWEEN is: taken as two
    // independent terms it would be estimated at (rows >= 50) x (rows <
    // 150), several times the real count. A third term on another column
    // still multiplies, and bounds written constant-first pair too.
    let (t, rows, est) = skewed();
    let scan = Plan::Scan {
        table: t,
        columns: None,
    };
    let and = |a: Expr, b: Expr| Expr::Binary(BinaryOp::And, Box::new(a), Box::new(b));
    let predicates = [
        and(
            cmp(BinaryOp::GtEq, 0, int(50)),
            cmp(BinaryOp::Lt, 0, int(150)),
        ),
        and(
            cmp(BinaryOp::Lt, 0, int(150)),
            cmp(BinaryOp::Gt, 0, int(49)),
        ),
        and(
            Expr::Binary(BinaryOp::LtEq, Box::new(int(250)), Box::new(Expr::col(0))),
            cmp(BinaryOp::LtEq, 0, int(349)),
        ),
        and(
            and(
                cmp(BinaryOp::GtEq, 0, int(50)),
                cmp(BinaryOp::Eq, 1, int(3)),
            ),
            cmp(BinaryOp::Lt, 0, int(150)),
        ),
    ];
    for p in predicates {
        let estimated = est.estimate(&filter(scan.clone(), p.clone())).rows;
        let real = actual(&rows, &p);
        let ratio = estimated / real;
        assert!(
            (0.85..=1.15).contains(&ratio),
            "{p:?}: estimated {estimated}, actual {real}"
        );
    }
}
